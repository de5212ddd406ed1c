/* tcp.c: TCP sockets and listeners as ports, with gen_tcp's model.
 *
 * A socket reads only while someone wants data: its owner's active allowance
 * (true, n, once) is left, or a passive recv waits. With the allowance spent,
 * reading stops and the kernel's buffers push back on the peer, so the owner's
 * mailbox never holds more than the allowance. Input is framed per `packet`
 * (raw, 1/2/4-byte big-endian length, line) from the socket's own buffer;
 * raw active reads go straight from the loop's scratch buffer into messages.
 * A send writes what the kernel takes at once (uv_try_write) and queues the
 * rest; past the high-water mark the sender waits for its reply until the
 * queue drains below the low-water mark. A sendfile (sendfile.c) sends its
 * head through the queue, starts once the queue is empty, and holds the
 * socket's output until it ends: other sends meanwhile get "ebusy".
 *
 * A listener is a non-blocking socket watched with uv_poll only while an
 * acceptor waits. Accepted descriptors are opened as sockets on the
 * ACCEPTOR's loop (posted there), so a connection's I/O runs on the thread of
 * the process that owns it. EMFILE / ENFILE: the listener stops polling for a
 * while (backs off) and keeps its waiting acceptors. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/runtime.h"
#include "io/io.h"
#include "io/sendfile.h"
#include "io/tls.h"

#define DEFAULT_BUFFER 65536
#define DEFAULT_HWM (256 * 1024)
#define DEFAULT_LWM (64 * 1024)
#define BACKOFF_MS 100
#define HANDSHAKE_MS 15000

typedef struct tcp {
  mb_port_t base;
  uv_tcp_t h;
  uv_timer_t *timer;         /* recv timeout (made on first use) */
  int handles;               /* uv handles not yet closed */
  int active, once, packet;
  size_t buffer, hwm, lwm, packet_size;
  int reading, eof, err, closed_sent, rd_shut, shutting, shut_pending, closing;
  uint8_t *buf;              /* buffered input: buf[off .. off+len) */
  size_t off, len, cap;
  mb_port_cmd_t *recv;       /* the waiting passive recv */
  mb_port_cmd_t *sendq, **sendq_tail; /* sends waiting for the queue to drain */
  int nodelay, keepalive;
  mb_tls_t *tls;             /* TLS over this socket (tls.c), or NULL */
  int handshaking;
  mb_port_cmd_t *hs_cmd;     /* the connect or accept answered when the handshake ends */
  mb_sendfile_t *sf;         /* a file being sent, or NULL; sf_cmd waits for its end */
  mb_port_cmd_t *sf_cmd;
  int sf_started, sf_inline, sf_inline_done;
} tcp_t;

enum { TAG_DATA, TAG_CLOSED, TAG_ERROR, TAG_PASSIVE };
static const char *tag(const tcp_t *t, int which) {
  static const char *const names[2][4] = {{"tcp", "tcp_closed", "tcp_error", "tcp_passive"},
                                          {"ssl", "ssl_closed", "ssl_error", "ssl_passive"}};
  return names[t->tls != NULL][which];
}

typedef struct wreq {
  uv_write_t req;
  tcp_t *t;
  size_t len;
  uint8_t data[];
} wreq_t;

static void tcp_pump(tcp_t *t);

void mb_sockopts_default(mb_sockopts_t *o) {
  memset(o, 0, sizeof *o);
  o->active = MB_ACTIVE_TRUE;
  o->buffer = DEFAULT_BUFFER;
  o->high_watermark = DEFAULT_HWM;
  o->low_watermark = DEFAULT_LWM;
  o->backlog = 128;
  o->multicast_loop = 1;
  o->multicast_ttl = 1;
}

/* ---- addresses ---- */

int mb_sockaddr_text(const struct sockaddr *sa, char *ip, size_t cap, int *port) {
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const void *)sa;
    *port = ntohs(a->sin6_port);
    return uv_ip6_name(a, ip, cap);
  }
  const struct sockaddr_in *a = (const void *)sa;
  *port = ntohs(a->sin_port);
  return uv_ip4_name(a, ip, cap);
}

int mb_sockaddr_parse(const char *ip, int port, int family, struct sockaddr_storage *out) {
  memset(out, 0, sizeof *out);
  if (!ip || !*ip || !strcmp(ip, "any")) ip = family == 6 ? "::" : "0.0.0.0";
  else if (!strcmp(ip, "localhost") || !strcmp(ip, "loopback")) ip = family == 6 ? "::1" : "127.0.0.1";
  if (family != 6 && uv_ip4_addr(ip, port, (struct sockaddr_in *)out) == 0) return 0;
  if (family != 4 && uv_ip6_addr(ip, port, (struct sockaddr_in6 *)out) == 0) return 0;
  return UV_EINVAL;
}

static void res_addr(mb_port_cmd_t *c, const struct sockaddr *sa) {
  char ip[64];
  int port;
  mb_enc_t *e = &c->res;
  if (mb_sockaddr_text(sa, ip, sizeof ip, &port)) {
    mb_port_res_error(c, "einval");
    return;
  }
  mb_enc_tuple(e, 2);
  mb_enc_binary(e, ip, strlen(ip));
  mb_enc_int(e, port);
}

static void res_uverr(mb_port_cmd_t *c, int err) {
  char name[32];
  mb_port_res_error(c, mb_port_errname(err, name, sizeof name));
}

/* ---- sockets ---- */

static void apply_opts(tcp_t *t, const mb_sockopts_t *o) {
  if (o->set & MB_SO_PACKET) t->packet = o->packet;
  if (o->set & MB_SO_BUFFER) t->buffer = o->buffer ? o->buffer : DEFAULT_BUFFER;
  if (o->set & MB_SO_HIGH_WATERMARK) t->hwm = o->high_watermark;
  if (o->set & MB_SO_LOW_WATERMARK) t->lwm = o->low_watermark;
  if (t->lwm > t->hwm) t->lwm = t->hwm;
  if (o->set & MB_SO_PACKET_SIZE) t->packet_size = o->packet_size;
  if (o->set & MB_SO_NODELAY) {
    t->nodelay = o->nodelay;
    uv_tcp_nodelay(&t->h, o->nodelay);
  }
  if (o->set & MB_SO_KEEPALIVE) {
    t->keepalive = o->keepalive;
    uv_tcp_keepalive(&t->h, o->keepalive, 60);
  }
  if (o->set & MB_SO_ACTIVE) {
    if (o->active == MB_ACTIVE_TRUE || o->active == 0 || o->once) {
      t->active = o->active;
      t->once = o->once;
    } else { /* {active, N} adds to the counter, as in gen_tcp */
      int64_t n = (t->active > 0 && !t->once ? t->active : 0) + (int64_t)o->active;
      t->once = 0;
      if (n <= 0) {
        t->active = 0;
        mb_enc_t e;
        mb_port_enc(&t->base, &e, tag(t, TAG_PASSIVE), 2);
        mb_port_send(&t->base, &e);
      } else {
        t->active = n > 0x7fffffff ? 0x7fffffff : (int)n;
      }
    }
  }
}

static void tcp_defaults(tcp_t *t) {
  t->active = MB_ACTIVE_TRUE;
  t->buffer = DEFAULT_BUFFER;
  t->hwm = DEFAULT_HWM;
  t->lwm = DEFAULT_LWM;
  t->sendq_tail = &t->sendq;
}

static void on_handle_closed(uv_handle_t *h) {
  tcp_t *t = h->data;
  if (--t->handles == 0) mb_port_closed(&t->base);
}

static void tcp_free(mb_port_t *p) {
  tcp_t *t = (tcp_t *)p;
  free(t->buf);
  free(t->timer);
  mb_tls_free(t->tls);
  free(t);
}

/* Makes a socket port on the calling thread's loop (not listed yet). */
static tcp_t *tcp_new(mb_runtime_t *rt, mb_pid_t owner) {
  uv_loop_t *loop = mb_port_loop(rt);
  if (!loop) return NULL;
  tcp_t *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  if (mb_port_init(&t->base, &mb_tcp_type, rt, owner) || uv_tcp_init(loop, &t->h)) {
    free(t);
    return NULL;
  }
  t->h.data = t;
  t->handles = 1;
  tcp_defaults(t);
  return t;
}

/* ---- input ---- */

static int buf_reserve(tcp_t *t, size_t more) {
  if (t->off && t->off + t->len + more > t->cap) { /* slide down first */
    memmove(t->buf, t->buf + t->off, t->len);
    t->off = 0;
  }
  if (t->len + more <= t->cap) return 0;
  size_t cap = t->cap ? t->cap : 4096;
  while (cap < t->len + more) cap *= 2;
  uint8_t *b = realloc(t->buf, cap);
  if (!b) return UV_ENOBUFS;
  t->buf = b;
  t->cap = cap;
  return 0;
}

static void buf_consume(tcp_t *t, size_t n) {
  t->off += n;
  t->len -= n;
  if (t->len == 0) {
    t->off = 0;
    if (t->cap > 65536) { /* a burst is over: give the memory back */
      free(t->buf);
      t->buf = NULL;
      t->cap = 0;
    }
  }
}

/* The next complete packet in b[0..len): returns 1 with *skip header bytes
 * and *n payload bytes, 0 if incomplete, or UV_E2BIG past packet_size. At the
 * end of input an incomplete line or raw tail counts as a packet. */
int mb_packet_next(int packet, size_t buffer, size_t packet_size, int at_end, const uint8_t *b,
                   size_t len, size_t want, size_t *skip, size_t *n) {
  *skip = 0;
  if (len == 0) return 0;
  switch (packet) {
  case 0:
    if (want == 0) {
      *n = len;
      return 1;
    }
    if (len >= want || at_end) {
      *n = len < want ? len : want;
      return 1;
    }
    return 0;
  case 1: case 2: case 4: {
    size_t h = (size_t)packet, plen = 0;
    if (len < h) return 0;
    for (size_t i = 0; i < h; i++) plen = plen << 8 | b[i];
    if (packet_size && plen > packet_size) return UV_E2BIG;
    if (len - h < plen) return 0;
    *skip = h;
    *n = plen;
    return 1;
  }
  default: { /* line */
    if (buffer == 0) buffer = 1;
    size_t lim = len < buffer ? len : buffer;
    const uint8_t *nl = memchr(b, '\n', lim);
    if (nl) {
      *n = (size_t)(nl - b) + 1;
      return 1;
    }
    if (len >= buffer || at_end) { /* longer than the buffer, or the last one */
      *n = lim;
      return 1;
    }
    return 0;
  }
  }
}

static int next_packet(tcp_t *t, size_t want, size_t *skip, size_t *n) {
  return mb_packet_next(t->packet, t->buffer, t->packet_size, t->eof || t->err, t->buf + t->off,
                        t->len, want, skip, n);
}

static void send_data(tcp_t *t, const uint8_t *data, size_t n) {
  mb_enc_t e;
  mb_port_enc(&t->base, &e, tag(t, TAG_DATA), 3);
  mb_enc_binary(&e, data, n);
  mb_port_send(&t->base, &e);
}

/* One message delivered in active mode: counts it against the allowance. */
static void spend(tcp_t *t) {
  if (t->active == MB_ACTIVE_TRUE) return;
  if (--t->active == 0 && !t->once) {
    mb_enc_t e;
    mb_port_enc(&t->base, &e, tag(t, TAG_PASSIVE), 2);
    mb_port_send(&t->base, &e);
  }
}

static void fail_input(tcp_t *t, int err) {
  if (!t->err) t->err = err;
}

static void want_reading(tcp_t *t);

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  tcp_t *t = h->data;
  size_t n;
  /* raw active reads with nothing buffered go straight into messages, and
   * TLS's ciphertext straight into its BIO */
  if (t->tls || (t->packet == 0 && t->active != 0 && t->len == 0 && !t->recv)) {
    void *s = mb_port_scratch(&t->base, &n);
    if (s) {
      *buf = uv_buf_init(s, (unsigned)(n < t->buffer ? n : t->buffer));
      return;
    }
  }
  n = t->buffer < 65536 ? t->buffer : 65536;
  if (buf_reserve(t, n)) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init((char *)t->buf + t->off + t->len, (unsigned)(t->cap - t->off - t->len));
}

static void tls_input(tcp_t *t, const char *data, size_t n);
static void hs_done(tcp_t *t, const char *err);

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  tcp_t *t = s->data;
  if (nread == 0) return;
  if (nread < 0) {
    if (nread == UV_EOF) t->eof = 1;
    else fail_input(t, (int)nread);
    uv_read_stop(s);
    t->reading = 0;
    if (t->handshaking) {
      char name[32];
      hs_done(t, nread == UV_EOF ? "closed" : mb_port_errname((int)nread, name, sizeof name));
      return;
    }
    tcp_pump(t);
    return;
  }
  if (t->tls) {
    tls_input(t, buf->base, (size_t)nread);
    return;
  }
  if (t->buf && (uint8_t *)buf->base == t->buf + t->off + t->len) {
    t->len += (size_t)nread;
  } else if (t->packet == 0 && t->active != 0 && t->len == 0 && !t->recv) {
    send_data(t, (const uint8_t *)buf->base, (size_t)nread);
    spend(t);
  } else { /* scratch read whose plan changed: keep the bytes */
    if (buf_reserve(t, (size_t)nread)) {
      fail_input(t, UV_ENOBUFS);
    } else {
      memcpy(t->buf + t->off + t->len, buf->base, (size_t)nread);
      t->len += (size_t)nread;
    }
  }
  tcp_pump(t);
}

static void want_reading(tcp_t *t) {
  int want = !t->eof && !t->err && !t->rd_shut && mb_port_is_open(&t->base) &&
             (t->active != 0 || t->recv || t->handshaking);
  if (want && !t->reading) {
    if (uv_read_start((uv_stream_t *)&t->h, on_alloc, on_read) == 0) t->reading = 1;
  } else if (!want && t->reading) {
    uv_read_stop((uv_stream_t *)&t->h);
    t->reading = 0;
  }
}

static void stop_timer(tcp_t *t) {
  if (t->timer) uv_timer_stop(t->timer);
}

static void reply_recv_data(tcp_t *t, size_t skip, size_t n) {
  mb_port_cmd_t *c = t->recv;
  t->recv = NULL;
  stop_timer(t);
  mb_enc_tuple(&c->res, 1);
  mb_enc_binary(&c->res, t->buf + t->off + skip, n);
  buf_consume(t, skip + n);
  mb_port_reply(c);
}

static const char *err_text(int err, char *buf, size_t cap) {
  if (err == UV_E2BIG) return "emsgsize";
  return mb_port_errname(err, buf, cap);
}

/* Moves buffered input to whoever wants it, then reports the end. */
static void tcp_pump(tcp_t *t) {
  size_t skip, n;
  char name[32];
  for (;;) {
    if (!t->recv && t->active == 0) break;
    int r = next_packet(t, t->recv ? (size_t)t->recv->arg[0] : 0, &skip, &n);
    if (r < 0) {
      fail_input(t, r);
      t->len = 0;
      t->off = 0;
      break;
    }
    if (r == 0) break;
    if (t->recv) {
      reply_recv_data(t, skip, n);
      continue;
    }
    send_data(t, t->buf + t->off + skip, n);
    buf_consume(t, skip + n);
    spend(t);
  }
  if ((t->eof || t->err) && t->len == 0) {
    if (t->recv) {
      mb_port_cmd_t *c = t->recv;
      t->recv = NULL;
      stop_timer(t);
      if (t->err) mb_port_res_error(c, err_text(t->err, name, sizeof name));
      else mb_port_res_error(c, "closed");
      mb_port_reply(c);
    } else if (t->active != 0 && !t->closed_sent) {
      mb_enc_t e;
      t->closed_sent = 1;
      if (t->err) {
        mb_port_enc(&t->base, &e, tag(t, TAG_ERROR), 3);
        const char *why = err_text(t->err, name, sizeof name);
        mb_enc_atom(&e, why, strlen(why));
        mb_port_send(&t->base, &e);
      }
      mb_port_enc(&t->base, &e, tag(t, TAG_CLOSED), 2);
      mb_port_send(&t->base, &e);
    }
  }
  want_reading(t);
}

static void on_recv_timeout(uv_timer_t *h) {
  tcp_t *t = h->data;
  if (!t->recv) return;
  mb_port_cmd_t *c = t->recv;
  t->recv = NULL;
  mb_port_res_error(c, "timeout");
  mb_port_reply(c);
  want_reading(t);
}

static int cmd_recv(tcp_t *t, mb_port_cmd_t *c) {
  size_t skip, n;
  char name[32];
  if (t->recv) {
    mb_port_res_error(c, "ealready");
    return MB_PORT_DONE;
  }
  if (t->active != 0) {
    mb_port_res_error(c, "einval"); /* gen_tcp: recv on an active socket */
    return MB_PORT_DONE;
  }
  if (c->arg[0] < 0 || (c->arg[0] > 0 && t->packet != 0)) {
    mb_port_res_error(c, "einval");
    return MB_PORT_DONE;
  }
  t->recv = c; /* next_packet reads the wanted length from here */
  int r = next_packet(t, (size_t)c->arg[0], &skip, &n);
  t->recv = NULL;
  if (r < 0) {
    fail_input(t, r);
    t->len = t->off = 0;
  } else if (r == 1) {
    mb_enc_tuple(&c->res, 1);
    mb_enc_binary(&c->res, t->buf + t->off + skip, n);
    buf_consume(t, skip + n);
    return MB_PORT_DONE;
  }
  if (t->eof || t->err || t->rd_shut) {
    if (t->err) mb_port_res_error(c, err_text(t->err, name, sizeof name));
    else mb_port_res_error(c, "closed");
    return MB_PORT_DONE;
  }
  if (c->arg[1] == 0) {
    mb_port_res_error(c, "timeout");
    return MB_PORT_DONE;
  }
  t->recv = c;
  if (c->arg[1] > 0) {
    if (!t->timer) {
      t->timer = malloc(sizeof *t->timer);
      if (!t->timer || uv_timer_init(t->h.loop, t->timer)) {
        free(t->timer);
        t->timer = NULL;
        t->recv = NULL;
        mb_port_res_error(c, "enomem");
        return MB_PORT_DONE;
      }
      t->timer->data = t;
      t->handles++;
    }
    uv_update_time(t->h.loop);
    uv_timer_start(t->timer, on_recv_timeout, (uint64_t)c->arg[1], 0);
  }
  want_reading(t);
  return MB_PORT_PENDING;
}

/* ---- TLS ---- */

static void on_write(uv_write_t *req, int status);

/* Sends the ciphertext TLS produced. */
static int tls_flush(tcp_t *t) {
  size_t n = mb_tls_pending(t->tls);
  if (!n) return 0;
  wreq_t *w = malloc(sizeof *w + n);
  if (!w) return UV_ENOMEM;
  w->t = t;
  w->len = mb_tls_take(t->tls, w->data, n);
  uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
  int r = uv_write(&w->req, (uv_stream_t *)&t->h, &b, 1, on_write);
  if (r) free(w);
  return r;
}

static void ensure_timer(tcp_t *t) {
  if (t->timer) return;
  t->timer = malloc(sizeof *t->timer);
  if (t->timer && uv_timer_init(t->h.loop, t->timer) == 0) {
    t->timer->data = t;
    t->handles++;
  } else {
    free(t->timer);
    t->timer = NULL;
  }
}

static void on_hs_timeout(uv_timer_t *h) { hs_done(h->data, "timeout"); }

/* Starts the handshake of a socket just connected or accepted; c is answered
 * with {Sock} when it ends well, else with {nil, reason} (and it closes). */
static void hs_start(tcp_t *t, mb_tls_ctx_t *ctx, const char *host, mb_port_cmd_t *c, int64_t ms) {
  char err[200];
  t->tls = mb_tls_new(ctx, host);
  if (!t->tls) {
    mb_port_res_error(c, "enomem");
    mb_port_reply(c);
    mb_port_close(&t->base);
    return;
  }
  t->handshaking = 1;
  t->hs_cmd = c;
  ensure_timer(t);
  if (t->timer) {
    uv_update_time(t->h.loop);
    uv_timer_start(t->timer, on_hs_timeout, (uint64_t)(ms >= 0 ? ms : HANDSHAKE_MS), 0);
  }
  int r = mb_tls_handshake(t->tls, err, sizeof err);
  tls_flush(t);
  if (r < 0) hs_done(t, err);
  else want_reading(t);
}

static void hs_done(tcp_t *t, const char *err) {
  if (!t->handshaking) return;
  t->handshaking = 0;
  stop_timer(t);
  mb_port_cmd_t *c = t->hs_cmd;
  t->hs_cmd = NULL;
  if (err) {
    mb_port_res_error(c, err);
    mb_port_reply(c);
    mb_port_close(&t->base);
    return;
  }
  mb_enc_tuple(&c->res, 1);
  mb_enc_port(&c->res, t->base.id);
  mb_port_reply(c);
  tcp_pump(t);
}

static void tls_input(tcp_t *t, const char *data, size_t n) {
  char err[200];
  if (mb_tls_feed(t->tls, data, n)) {
    fail_input(t, UV_ENOMEM);
  } else if (t->handshaking) {
    int r = mb_tls_handshake(t->tls, err, sizeof err);
    tls_flush(t);
    if (r < 0) {
      hs_done(t, err);
      return;
    }
    if (r == 1) hs_done(t, NULL);
    if (t->handshaking || !mb_port_is_open(&t->base)) return;
  }
  for (;;) { /* plaintext into the input buffer, framed by tcp_pump */
    if (buf_reserve(t, 16384)) {
      fail_input(t, UV_ENOBUFS);
      break;
    }
    int r = mb_tls_read(t->tls, t->buf + t->off + t->len, t->cap - t->off - t->len, err, sizeof err);
    if (r > 0) {
      t->len += (size_t)r;
      continue;
    }
    if (r == MB_TLS_CLOSED) t->eof = 1;
    else if (r == MB_TLS_ERROR) fail_input(t, UV_EPROTO);
    break;
  }
  tls_flush(t); /* alerts, session tickets */
  tcp_pump(t);
}

/* ---- output ---- */

static size_t queued(tcp_t *t) { return uv_stream_get_write_queue_size((uv_stream_t *)&t->h); }

static void release_senders(tcp_t *t, const char *err) {
  while (t->sendq) {
    mb_port_cmd_t *c = t->sendq;
    t->sendq = c->next;
    if (err) mb_port_res_error(c, err);
    else mb_port_res_ok(c);
    mb_port_reply(c);
  }
  t->sendq_tail = &t->sendq;
}

static void sf_abort(tcp_t *t, const char *err);

static void on_write(uv_write_t *req, int status) {
  wreq_t *w = (wreq_t *)req;
  tcp_t *t = w->t;
  free(w);
  if (status < 0 && status != UV_ECANCELED) {
    fail_input(t, status);
    char name[32];
    release_senders(t, mb_port_errname(status, name, sizeof name));
    sf_abort(t, mb_port_errname(status, name, sizeof name));
    tcp_pump(t);
    return;
  }
  if (t->sendq && queued(t) <= t->lwm) release_senders(t, NULL);
  if (t->sf && !t->sf_started && queued(t) == 0) {
    t->sf_started = 1;
    mb_sendfile_go(t->sf);
  }
}

static int cmd_send(tcp_t *t, mb_port_cmd_t *c) {
  char name[32];
  uint8_t hdr[4];
  size_t hl = 0;
  if (t->err && t->err != UV_EOF) {
    mb_port_res_error(c, err_text(t->err, name, sizeof name));
    return MB_PORT_DONE;
  }
  if (t->shutting) {
    mb_port_res_error(c, "closed");
    return MB_PORT_DONE;
  }
  if (t->sf) { /* a file is being sent: its bytes come first */
    mb_port_res_error(c, "ebusy");
    return MB_PORT_DONE;
  }
  if (t->packet == 1 || t->packet == 2 || t->packet == 4) {
    hl = (size_t)t->packet;
    if (hl < 4 && c->len >> (8 * hl)) {
      mb_port_res_error(c, "emsgsize");
      return MB_PORT_DONE;
    }
    for (size_t i = 0; i < hl; i++) hdr[i] = (uint8_t)(c->len >> (8 * (hl - 1 - i)));
  }
  if (hl == 0 && c->len == 0) { /* nothing to send */
    mb_port_res_ok(c);
    return MB_PORT_DONE;
  }
  if (t->tls) {
    char err[200];
    if (t->handshaking || (hl && mb_tls_write(t->tls, hdr, hl, err, sizeof err)) ||
        mb_tls_write(t->tls, c->data, c->len, err, sizeof err)) {
      mb_port_res_error(c, t->handshaking ? "einval" : "eproto");
      return MB_PORT_DONE;
    }
    int r = tls_flush(t);
    if (r) {
      mb_port_res_error(c, mb_port_errname(r, name, sizeof name));
      return MB_PORT_DONE;
    }
    goto watermark;
  }
  uv_buf_t bufs[2];
  int nb = 0;
  if (hl) bufs[nb++] = uv_buf_init((char *)hdr, (unsigned)hl);
  size_t total = hl + c->len, done = 0;
  /* uv_buf_t lengths are unsigned int: a huge send goes through the queue */
  if (c->len && c->len <= 0x40000000u) bufs[nb++] = uv_buf_init((char *)c->data, (unsigned)c->len);
  if (queued(t) == 0 && (c->len <= 0x40000000u)) {
    int r = uv_try_write((uv_stream_t *)&t->h, bufs, (unsigned)nb);
    if (r >= 0) done = (size_t)r;
    else if (r != UV_EAGAIN) {
      fail_input(t, r);
      tcp_pump(t);
      mb_port_res_error(c, mb_port_errname(r, name, sizeof name));
      return MB_PORT_DONE;
    }
  }
  if (done < total) {
    size_t rest = total - done;
    wreq_t *w = malloc(sizeof *w + rest);
    if (!w) {
      mb_port_res_error(c, "enomem");
      return MB_PORT_DONE;
    }
    w->t = t;
    w->len = rest;
    size_t at = 0;
    if (done < hl) {
      memcpy(w->data, hdr + done, hl - done);
      at = hl - done;
      memcpy(w->data + at, c->data, c->len);
    } else {
      memcpy(w->data, c->data + (done - hl), rest);
    }
    /* chunks of at most 1 GB each (uv_buf_t's length is an unsigned int) */
    size_t left = rest, pos = 0;
    uv_buf_t wb[8];
    unsigned nw = 0;
    while (left && nw < 8) {
      size_t k = left < 0x40000000u ? left : 0x40000000u;
      wb[nw++] = uv_buf_init((char *)w->data + pos, (unsigned)k);
      pos += k;
      left -= k;
    }
    int r = uv_write(&w->req, (uv_stream_t *)&t->h, wb, nw, on_write);
    if (r) {
      free(w);
      mb_port_res_error(c, mb_port_errname(r, name, sizeof name));
      return MB_PORT_DONE;
    }
  }
watermark:
  if (queued(t) > t->hwm) { /* the sender waits until the queue drains */
    c->data = NULL; /* the bytes are in the write request: drop the borrow */
    c->len = 0;
    c->next = NULL;
    *t->sendq_tail = c;
    t->sendq_tail = &c->next;
    return MB_PORT_PENDING;
  }
  mb_port_res_ok(c);
  return MB_PORT_DONE;
}

/* ---- sendfile ---- */

/* Ends the file transfer's command with err (NULL: ok). */
static void sf_answer(tcp_t *t, const char *err) {
  mb_port_cmd_t *c = t->sf_cmd;
  t->sf = NULL;
  t->sf_cmd = NULL;
  t->sf_started = 0;
  if (err) mb_port_res_error(c, err);
  else mb_port_res_ok(c);
  if (t->sf_inline) t->sf_inline_done = 1; /* cmd_sendfile answers directly */
  else mb_port_reply(c);
}

static void sf_done(void *ud, int err) {
  tcp_t *t = ud;
  char name[32];
  if (err && err != MB_SENDFILE_TRUNCATED) fail_input(t, err);
  sf_answer(t, !err ? NULL : err == MB_SENDFILE_TRUNCATED ? "truncated"
                                                        : mb_port_errname(err, name, sizeof name));
  if (err && err != MB_SENDFILE_TRUNCATED) tcp_pump(t);
}

/* The socket failed or closes: a transfer in progress ends with err. */
static void sf_abort(tcp_t *t, const char *err) {
  if (!t->sf) return;
  mb_sendfile_cancel(t->sf);
  sf_answer(t, err);
}

/* Queues raw bytes behind what is queued (copying what the kernel does not
 * take at once). 0 or a libuv error. */
static int queue_raw(tcp_t *t, const uint8_t *data, size_t len) {
  size_t done = 0;
  if (len > 0x40000000u) return UV_E2BIG;
  if (len == 0) return 0;
  if (queued(t) == 0) {
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int r = uv_try_write((uv_stream_t *)&t->h, &b, 1);
    if (r >= 0) done = (size_t)r;
    else if (r != UV_EAGAIN) return r;
  }
  if (done == len) return 0;
  wreq_t *w = malloc(sizeof *w + (len - done));
  if (!w) return UV_ENOMEM;
  w->t = t;
  w->len = len - done;
  memcpy(w->data, data + done, len - done);
  uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)(len - done));
  int r = uv_write(&w->req, (uv_stream_t *)&t->h, &b, 1, on_write);
  if (r) free(w);
  return r;
}

/* sendfile(head, path, offset, length): the head, then the file's range.
 * Refused before anything is sent when the file cannot be opened, is not a
 * regular file or is shorter than offset + length ("changed"). Answers when
 * the last byte is with the kernel; "truncated" when the file shrank while
 * being sent (the peer got less than announced: close the connection). */
static int cmd_sendfile(tcp_t *t, mb_port_cmd_t *c) {
  char name[32], path[4096];
  int64_t off = c->arg[0], len = c->arg[1], hl = c->arg[2];
  if (t->err && t->err != UV_EOF) {
    mb_port_res_error(c, err_text(t->err, name, sizeof name));
    return MB_PORT_DONE;
  }
  if (t->shutting) {
    mb_port_res_error(c, "closed");
    return MB_PORT_DONE;
  }
  if (t->tls || t->packet != 0) { /* TLS encrypts in user space; packets need headers */
    mb_port_res_error(c, "enotsup");
    return MB_PORT_DONE;
  }
  if (t->sf) {
    mb_port_res_error(c, "ebusy");
    return MB_PORT_DONE;
  }
  if (off < 0 || len < 0 || hl < 0 || (size_t)hl > c->len || c->len - (size_t)hl >= sizeof path) {
    mb_port_res_error(c, "einval");
    return MB_PORT_DONE;
  }
  memcpy(path, c->data + hl, c->len - (size_t)hl);
  path[c->len - (size_t)hl] = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    int e = errno;
    if (fd >= 0) close(fd);
    mb_port_res_error(c, mb_port_errname(uv_translate_sys_error(e), name, sizeof name));
    return MB_PORT_DONE;
  }
  if (!S_ISREG(st.st_mode) || st.st_size < off || st.st_size - off < len) {
    close(fd);
    mb_port_res_error(c, S_ISREG(st.st_mode) ? "changed" : "eisdir");
    return MB_PORT_DONE;
  }
  uv_os_fd_t sock;
  int r = uv_fileno((uv_handle_t *)&t->h, &sock);
  if (r) close(fd);
  mb_sendfile_t *sf = r ? NULL : mb_sendfile_new(t->h.loop, sock, fd, off, len, sf_done, t, &r);
  if (!sf) {
    mb_port_res_error(c, mb_port_errname(r, name, sizeof name));
    return MB_PORT_DONE;
  }
  r = queue_raw(t, c->data, (size_t)hl);
  if (r) {
    mb_sendfile_cancel(sf);
    fail_input(t, r);
    tcp_pump(t);
    mb_port_res_error(c, mb_port_errname(r, name, sizeof name));
    return MB_PORT_DONE;
  }
  c->data = NULL; /* the head is sent or copied: drop the borrow */
  c->len = 0;
  t->sf = sf;
  t->sf_cmd = c;
  t->sf_inline = 1;
  t->sf_inline_done = 0;
  if (queued(t) == 0) {
    t->sf_started = 1;
    mb_sendfile_go(sf);
  }
  t->sf_inline = 0;
  return t->sf_inline_done ? MB_PORT_DONE : MB_PORT_PENDING;
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  tcp_t *t = req->data;
  free(req);
  t->shut_pending = 0;
  if (t->closing && !uv_is_closing((uv_handle_t *)&t->h))
    uv_close((uv_handle_t *)&t->h, on_handle_closed);
}

static int cmd_shutdown(tcp_t *t, mb_port_cmd_t *c) {
  int how = (int)c->arg[0]; /* 1 read, 2 write, 3 both */
  if (how & 1) {
    t->rd_shut = 1;
    want_reading(t);
  }
  if ((how & 2) && !t->shutting) {
    uv_shutdown_t *req = malloc(sizeof *req);
    if (!req) {
      mb_port_res_error(c, "enomem");
      return MB_PORT_DONE;
    }
    req->data = t;
    int r = uv_shutdown(req, (uv_stream_t *)&t->h, on_shutdown);
    if (r) {
      free(req);
      res_uverr(c, r);
      return MB_PORT_DONE;
    }
    t->shutting = 1;
    t->shut_pending = 1;
  }
  mb_port_res_ok(c);
  return MB_PORT_DONE;
}

static void enc_active(mb_enc_t *e, int active, int once) {
  if (active == MB_ACTIVE_TRUE) mb_enc_atom(e, "true", 4);
  else if (active == 0) mb_enc_atom(e, "false", 5);
  else if (once) mb_enc_binary(e, "once", 4);
  else mb_enc_int(e, active);
}

static void enc_packet(mb_enc_t *e, int packet) {
  if (packet == 0) mb_enc_binary(e, "raw", 3);
  else if (packet == MB_PACKET_LINE) mb_enc_binary(e, "line", 4);
  else mb_enc_int(e, packet);
}

static void enc_kv_int(mb_enc_t *e, const char *k, int64_t v) {
  mb_enc_binary(e, k, strlen(k));
  mb_enc_int(e, v);
}

static void enc_kv_bool(mb_enc_t *e, const char *k, int v) {
  mb_enc_binary(e, k, strlen(k));
  mb_enc_atom(e, v ? "true" : "false", v ? 4 : 5);
}

static int tcp_command(mb_port_t *p, mb_port_cmd_t *c) {
  tcp_t *t = (tcp_t *)p;
  struct sockaddr_storage ss;
  int sl = sizeof ss, r;
  switch (c->op) {
  case MB_TCP_SEND: return cmd_send(t, c);
  case MB_TCP_SENDFILE: return cmd_sendfile(t, c);
  case MB_TCP_RECV: return cmd_recv(t, c);
  case MB_TCP_SETOPTS:
    if (c->extra) apply_opts(t, c->extra);
    tcp_pump(t);
    mb_port_res_ok(c);
    return MB_PORT_DONE;
  case MB_TCP_GETOPTS: {
    mb_enc_t *e = &c->res;
    mb_enc_tuple(e, 1);
    mb_enc_map(e, 8);
    mb_enc_binary(e, "active", 6);
    enc_active(e, t->active, t->once);
    mb_enc_binary(e, "packet", 6);
    enc_packet(e, t->packet);
    enc_kv_bool(e, "nodelay", t->nodelay);
    enc_kv_bool(e, "keepalive", t->keepalive);
    enc_kv_int(e, "buffer", (int64_t)t->buffer);
    enc_kv_int(e, "high_watermark", (int64_t)t->hwm);
    enc_kv_int(e, "low_watermark", (int64_t)t->lwm);
    enc_kv_int(e, "packet_size", (int64_t)t->packet_size);
    return MB_PORT_DONE;
  }
  case MB_TCP_SHUTDOWN: return cmd_shutdown(t, c);
  case MB_TCP_PEERNAME:
  case MB_TCP_SOCKNAME:
    r = c->op == MB_TCP_PEERNAME ? uv_tcp_getpeername(&t->h, (struct sockaddr *)&ss, &sl)
                                 : uv_tcp_getsockname(&t->h, (struct sockaddr *)&ss, &sl);
    if (r) res_uverr(c, r);
    else res_addr(c, (struct sockaddr *)&ss);
    return MB_PORT_DONE;
  case MB_TCP_TLSINFO: {
    mb_enc_t *e = &c->res;
    if (!t->tls) {
      mb_port_res_error(c, "einval");
      return MB_PORT_DONE;
    }
    size_t al;
    const char *alpn = mb_tls_alpn(t->tls, &al);
    const char *sni = mb_tls_server_name(t->tls);
    const char *ver = mb_tls_version(t->tls);
    mb_enc_tuple(e, 1);
    mb_enc_map(e, 3);
    mb_enc_binary(e, "alpn", 4);
    if (alpn) mb_enc_binary(e, alpn, al);
    else mb_enc_atom(e, "nil", 3);
    mb_enc_binary(e, "server_name", 11);
    if (sni) mb_enc_binary(e, sni, strlen(sni));
    else mb_enc_atom(e, "nil", 3);
    mb_enc_binary(e, "version", 7);
    mb_enc_binary(e, ver, strlen(ver));
    return MB_PORT_DONE;
  }
  case MB_TCP_STATS: {
    mb_enc_t *e = &c->res;
    mb_enc_tuple(e, 1);
    mb_enc_map(e, 4);
    enc_kv_int(e, "send_queue", (int64_t)queued(t));
    enc_kv_int(e, "buffered", (int64_t)t->len);
    enc_kv_bool(e, "reading", t->reading);
    enc_kv_int(e, "buffer_capacity", (int64_t)t->cap);
    return MB_PORT_DONE;
  }
  default:
    mb_port_res_error(c, "einval");
    return MB_PORT_DONE;
  }
}

static void tcp_close(mb_port_t *p) {
  tcp_t *t = (tcp_t *)p;
  int stopping = atomic_load(&p->rt->stopping);
  if (t->closing) { /* again, as its loop ends: let go now */
    if (!uv_is_closing((uv_handle_t *)&t->h)) uv_close((uv_handle_t *)&t->h, on_handle_closed);
    return;
  }
  t->closing = 1;
  if (t->hs_cmd) {
    mb_port_cmd_t *c = t->hs_cmd;
    t->hs_cmd = NULL;
    t->handshaking = 0;
    mb_port_res_error(c, "closed");
    mb_port_reply(c);
  }
  if (t->tls && !t->err && !t->eof && !stopping) { /* a close_notify, flushed below */
    mb_tls_close_notify(t->tls);
    tls_flush(t);
  }
  if (t->recv) {
    mb_port_cmd_t *c = t->recv;
    t->recv = NULL;
    mb_port_res_error(c, "closed");
    mb_port_reply(c);
  }
  release_senders(t, "closed");
  sf_abort(t, "closed");
  if (t->reading) uv_read_stop((uv_stream_t *)&t->h);
  t->reading = 0;
  if (t->timer) uv_close((uv_handle_t *)t->timer, on_handle_closed);
  /* flush what is queued first (as the kernel would after close), unless the
   * runtime is going away or the connection is broken */
  if (queued(t) && !t->err && !t->shutting && !stopping) {
    uv_shutdown_t *req = malloc(sizeof *req);
    if (req) {
      req->data = t;
      if (uv_shutdown(req, (uv_stream_t *)&t->h, on_shutdown) == 0) {
        t->shutting = t->shut_pending = 1;
        return;
      }
      free(req);
    }
  }
  if (t->shut_pending && !stopping) return; /* on_shutdown closes it */
  uv_close((uv_handle_t *)&t->h, on_handle_closed);
}

const mb_port_type_t mb_tcp_type = {"tcp", tcp_command, tcp_close, tcp_free};

/* ---- connect ---- */

typedef struct connecting {
  tcp_t *t;
  mb_port_cmd_t *c;
  uv_connect_t req;
  uv_getaddrinfo_t gai;
  uv_timer_t timer;
  struct addrinfo *ai, *next;
  int port, timed_out, pending, done, timer_on;
  int64_t timeout_ms;
  mb_sockopts_t opts;
  mb_tls_ctx_t *tls;         /* a reference, or NULL */
  char host[256];
} connecting_t;

static void conn_maybe_free(connecting_t *k) {
  if (k->pending == 0 && !k->timer_on) {
    if (k->ai) uv_freeaddrinfo(k->ai);
    mb_tls_ctx_unref(k->tls);
    free(k);
  }
}

static void on_conn_timer_closed(uv_handle_t *h) {
  connecting_t *k = h->data;
  k->timer_on = 0;
  conn_maybe_free(k);
}

/* The end of a connect: success (r == 0) or failure. */
static void conn_finish(connecting_t *k, int r) {
  if (k->done) return;
  k->done = 1;
  if (k->timer_on && !uv_is_closing((uv_handle_t *)&k->timer))
    uv_close((uv_handle_t *)&k->timer, on_conn_timer_closed);
  tcp_t *t = k->t;
  mb_port_cmd_t *c = k->c;
  if (r == 0) {
    apply_opts(t, &k->opts);
    if (mb_port_open(&t->base) == 0 && k->tls) {
      hs_start(t, k->tls, k->host, c, k->timeout_ms);
      return;
    }
    if (mb_port_is_open(&t->base)) {
      mb_enc_tuple(&c->res, 1);
      mb_enc_port(&c->res, t->base.id);
      mb_port_reply(c);
      tcp_pump(t);
      return;
    }
    r = UV_ECANCELED; /* the caller died: the port is closed already */
    mb_port_res_error(c, "noproc");
    mb_port_reply(c);
    return;
  }
  if (k->timed_out) mb_port_res_error(c, "timeout");
  else res_uverr(c, r);
  mb_port_reply(c);
  mb_port_close(&t->base);
}

static void try_next(connecting_t *k);

static void on_connect(uv_connect_t *req, int status) {
  connecting_t *k = req->data;
  k->pending--;
  if (k->done) {
    conn_maybe_free(k);
    return;
  }
  if (status == 0) {
    conn_finish(k, 0);
  } else if (k->next && !k->timed_out) {
    /* a socket whose connect failed is spent: the next address gets a new one */
    tcp_t *fresh = tcp_new(k->c->rt, k->c->caller);
    if (!fresh) {
      conn_finish(k, status);
    } else {
      tcp_t *old = k->t;
      k->t = fresh;
      mb_port_close(&old->base);
      try_next(k);
    }
  } else {
    conn_finish(k, status);
  }
  conn_maybe_free(k);
}

static void try_next(connecting_t *k) {
  while (k->next) {
    struct addrinfo *a = k->next;
    k->next = a->ai_next;
    if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
    if (k->opts.family == 4 && a->ai_family != AF_INET) continue;
    if (k->opts.family == 6 && a->ai_family != AF_INET6) continue;
    struct sockaddr_storage ss;
    memcpy(&ss, a->ai_addr, a->ai_addrlen);
    if (a->ai_family == AF_INET) ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)k->port);
    else ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)k->port);
    int r = uv_tcp_connect(&k->req, &k->t->h, (struct sockaddr *)&ss, on_connect);
    if (r == 0) {
      k->pending++;
      return;
    }
    if (!k->next) {
      conn_finish(k, r);
      return;
    }
  }
  conn_finish(k, UV_EHOSTUNREACH);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  connecting_t *k = req->data;
  k->pending--;
  k->ai = res;
  k->next = res;
  if (k->done) {
    conn_maybe_free(k);
    return;
  }
  if (status < 0) conn_finish(k, status == UV_ECANCELED && k->timed_out ? UV_ETIMEDOUT : status);
  else try_next(k);
  conn_maybe_free(k);
}

static void on_conn_timeout(uv_timer_t *h) {
  connecting_t *k = h->data;
  k->timed_out = 1;
  uv_cancel((uv_req_t *)&k->gai); /* a lookup still running ends as cancelled */
  conn_finish(k, UV_ETIMEDOUT);
}

int mb_tcp_connect(mb_port_cmd_t *c, const char *host, int port, const mb_sockopts_t *o,
                   int64_t timeout_ms, mb_tls_ctx_t *tls, const char *server_name) {
  tcp_t *t = tcp_new(c->rt, c->caller);
  if (!t) {
    mb_port_res_error(c, "enomem");
    return MB_PORT_DONE;
  }
  connecting_t *k = calloc(1, sizeof *k);
  if (!k) {
    mb_port_close(&t->base);
    mb_port_res_error(c, "enomem");
    return MB_PORT_DONE;
  }
  k->t = t;
  k->c = c;
  k->port = port;
  k->opts = *o;
  k->timeout_ms = timeout_ms;
  if (tls) {
    mb_tls_ctx_ref(tls);
    k->tls = tls;
    snprintf(k->host, sizeof k->host, "%s", server_name ? server_name : host);
  }
  k->req.data = k;
  k->gai.data = k;
  uv_loop_t *loop = t->h.loop;
  if (timeout_ms >= 0) {
    uv_timer_init(loop, &k->timer);
    k->timer.data = k;
    k->timer_on = 1;
    uv_update_time(loop);
    uv_timer_start(&k->timer, on_conn_timeout, (uint64_t)timeout_ms, 0);
  }
  struct sockaddr_storage ss;
  if (mb_sockaddr_parse(host, port, o->family, &ss) == 0 && host && *host &&
      strcmp(host, "any") != 0) {
    int r = uv_tcp_connect(&k->req, &t->h, (struct sockaddr *)&ss, on_connect);
    if (r) {
      conn_finish(k, r);
      conn_maybe_free(k);
      return MB_PORT_PENDING;
    }
    k->pending++;
    return MB_PORT_PENDING;
  }
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = o->family == 4 ? AF_INET : o->family == 6 ? AF_INET6 : AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int r = uv_getaddrinfo(loop, &k->gai, on_resolved, host, NULL, &hints);
  if (r) {
    conn_finish(k, r);
    conn_maybe_free(k);
    return MB_PORT_PENDING;
  }
  k->pending++;
  return MB_PORT_PENDING;
}

/* ---- listeners ---- */

typedef struct listener {
  mb_port_t base;
  uv_poll_t poll;
  uv_timer_t timer;          /* accept timeouts and EMFILE back-off */
  int fd, handles, polling, backoff;
  mb_sockopts_t opts;        /* inherited by accepted sockets */
  mb_port_cmd_t *waiting, **waiting_tail; /* acceptors, oldest first; arg[2]: deadline ms */
  mb_tls_ctx_t *tls;         /* accepted sockets speak TLS (a reference), or NULL */
} listener_t;

typedef struct adopt {
  mb_port_cmd_t *c;
  int fd;
  mb_sockopts_t opts;
  mb_tls_ctx_t *tls;         /* a reference, or NULL */
} adopt_t;

static void listener_arm(listener_t *l);

/* On the acceptor's loop: the descriptor becomes its socket. */
static void adopt_fd(void *arg) {
  adopt_t *a = arg;
  mb_port_cmd_t *c = a->c;
  tcp_t *t = tcp_new(c->rt, c->caller);
  if (!t) {
    close(a->fd);
    mb_port_res_error(c, "enomem");
  } else if (uv_tcp_open(&t->h, a->fd)) {
    close(a->fd);
    mb_port_close(&t->base);
    mb_port_res_error(c, "einval");
  } else {
    a->opts.set |= MB_SO_ACTIVE | MB_SO_PACKET | MB_SO_BUFFER | MB_SO_HIGH_WATERMARK |
                   MB_SO_LOW_WATERMARK | MB_SO_PACKET_SIZE;
    apply_opts(t, &a->opts);
    if (mb_port_open(&t->base) == 0) {
      if (a->tls) {
        hs_start(t, a->tls, NULL, c, -1);
        mb_tls_ctx_unref(a->tls);
        free(a);
        return;
      }
      mb_enc_tuple(&c->res, 1);
      mb_enc_port(&c->res, t->base.id);
      tcp_pump(t);
    } else {
      mb_port_res_error(c, "noproc");
    }
  }
  mb_tls_ctx_unref(a->tls);
  free(a);
  mb_port_reply(c);
}

static void on_listener_closed(uv_handle_t *h) {
  listener_t *l = h->data;
  if (--l->handles == 0) mb_port_closed(&l->base);
}

static void listener_free(mb_port_t *p) {
  mb_tls_ctx_unref(((listener_t *)p)->tls);
  free(p);
}

static void listener_close(mb_port_t *p) {
  listener_t *l = (listener_t *)p;
  if (l->fd < 0) return; /* closing already */
  while (l->waiting) {
    mb_port_cmd_t *c = l->waiting;
    l->waiting = c->next;
    mb_port_res_error(c, "closed");
    mb_port_reply(c);
  }
  l->waiting_tail = &l->waiting;
  uv_close((uv_handle_t *)&l->poll, on_listener_closed);
  uv_close((uv_handle_t *)&l->timer, on_listener_closed);
  close(l->fd);
  l->fd = -1;
}

/* Hands fd to acceptor c: on this loop directly, else posted to the acceptor's. */
static void hand_over(listener_t *l, mb_port_cmd_t *c, int fd) {
  adopt_t *a = malloc(sizeof *a);
  mb_proc_t *proc = mb_proc_acquire(l->base.rt, c->caller);
  if (!a || !proc) {
    free(a);
    if (proc) mb_proc_release(proc);
    close(fd);
    mb_port_res_error(c, proc ? "enomem" : "noproc");
    mb_port_reply(c);
    return;
  }
  mb_sched_t *s = proc->sched;
  mb_proc_release(proc);
  a->c = c;
  a->fd = fd;
  a->opts = l->opts;
  a->tls = l->tls;
  if (a->tls) mb_tls_ctx_ref(a->tls);
  if (mb_port_post(s, adopt_fd, a)) {
    close(fd);
    mb_tls_ctx_unref(a->tls);
    free(a);
    mb_port_res_error(c, "closed");
    mb_port_reply(c);
  }
}

/* The loop's clock, brought up to date: a busy scheduler may not have run its
 * loop for a while, and timers count from this clock. */
static uint64_t now_ms(mb_port_t *p) {
  uv_update_time(&p->sched->loop);
  return uv_now(&p->sched->loop);
}

/* Accepts while connections and acceptors are both there. */
static void accept_some(listener_t *l) {
  while (l->waiting && !l->backoff) {
    if (!mb_alive(l->base.rt, l->waiting->caller)) { /* an acceptor that died waiting */
      mb_port_cmd_t *gone = l->waiting;
      l->waiting = gone->next;
      if (!l->waiting) l->waiting_tail = &l->waiting;
      mb_port_res_error(gone, "noproc");
      mb_port_reply(gone);
      continue;
    }
    int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        l->backoff = 1; /* out of descriptors: wait, keep the acceptors */
      }
      break;
    }
    mb_port_cmd_t *c = l->waiting;
    l->waiting = c->next;
    if (!l->waiting) l->waiting_tail = &l->waiting;
    hand_over(l, c, fd);
  }
  listener_arm(l);
}

static void on_listener_io(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  accept_some(h->data);
}

static void on_listener_timer(uv_timer_t *h) {
  listener_t *l = h->data;
  if (l->backoff) {
    l->backoff = 0;
  }
  uint64_t now = now_ms(&l->base);
  mb_port_cmd_t **pc = &l->waiting;
  while (*pc) { /* expire acceptors past their deadline */
    mb_port_cmd_t *c = *pc;
    if (c->arg[2] && (uint64_t)c->arg[2] <= now) {
      *pc = c->next;
      mb_port_res_error(c, "timeout");
      mb_port_reply(c);
    } else {
      pc = &c->next;
    }
  }
  l->waiting_tail = &l->waiting;
  while (*l->waiting_tail) l->waiting_tail = &(*l->waiting_tail)->next;
  accept_some(l);
}

/* Polls while someone waits (and not backing off); the timer runs until the
 * next acceptor deadline or the end of the back-off. */
static void listener_arm(listener_t *l) {
  int want = l->waiting && !l->backoff;
  if (want && !l->polling) {
    uv_poll_start(&l->poll, UV_READABLE, on_listener_io);
    l->polling = 1;
  } else if (!want && l->polling) {
    uv_poll_stop(&l->poll);
    l->polling = 0;
  }
  uint64_t next = 0, now = now_ms(&l->base);
  for (mb_port_cmd_t *c = l->waiting; c; c = c->next)
    if (c->arg[2] && (!next || (uint64_t)c->arg[2] < next)) next = (uint64_t)c->arg[2];
  if (l->backoff) {
    uint64_t b = now + BACKOFF_MS;
    if (!next || b < next) next = b;
  }
  if (next) uv_timer_start(&l->timer, on_listener_timer, next > now ? next - now : 0, 0);
  else uv_timer_stop(&l->timer);
}

static int listener_command(mb_port_t *p, mb_port_cmd_t *c) {
  listener_t *l = (listener_t *)p;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  switch (c->op) {
  case MB_TCP_ACCEPT: {
    /* arg[1]: timeout ms (< 0 none) */
    if (!c->queued && !l->waiting && !l->backoff) { /* try now, on this very thread */
      int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        adopt_t *a = malloc(sizeof *a);
        if (!a) {
          close(fd);
          mb_port_res_error(c, "enomem");
          return MB_PORT_DONE;
        }
        a->c = c;
        a->fd = fd;
        a->opts = l->opts;
        a->tls = l->tls;
        if (a->tls) mb_tls_ctx_ref(a->tls);
        adopt_fd(a); /* replies by message: the caller waits for it */
        return MB_PORT_PENDING;
      }
      if (errno == EMFILE || errno == ENFILE) {
        l->backoff = 1;
      }
    }
    if (c->arg[1] == 0) {
      mb_port_res_error(c, "timeout");
      return MB_PORT_DONE;
    }
    c->arg[2] = c->arg[1] > 0 ? (int64_t)(now_ms(p) + (uint64_t)c->arg[1]) : 0;
    c->next = NULL;
    *l->waiting_tail = c;
    l->waiting_tail = &c->next;
    listener_arm(l);
    return MB_PORT_PENDING;
  }
  case MB_TCP_SOCKNAME:
    if (getsockname(l->fd, (struct sockaddr *)&ss, &sl)) res_uverr(c, -errno);
    else res_addr(c, (struct sockaddr *)&ss);
    return MB_PORT_DONE;
  case MB_TCP_SETOPTS:
    if (c->extra) {
      const mb_sockopts_t *o = c->extra;
      mb_sockopts_t *d = &l->opts;
      if (o->set & MB_SO_ACTIVE) {
        d->active = o->active;
        d->once = o->once;
      }
      if (o->set & MB_SO_PACKET) d->packet = o->packet;
      if (o->set & MB_SO_BUFFER) d->buffer = o->buffer;
      if (o->set & MB_SO_NODELAY) d->nodelay = o->nodelay;
      if (o->set & MB_SO_KEEPALIVE) d->keepalive = o->keepalive;
      d->set |= o->set & (MB_SO_NODELAY | MB_SO_KEEPALIVE);
    }
    mb_port_res_ok(c);
    return MB_PORT_DONE;
  default:
    mb_port_res_error(c, "einval");
    return MB_PORT_DONE;
  }
}

const mb_port_type_t mb_tcp_listen_type = {"tcp_listen", listener_command, listener_close,
                                           listener_free};

int mb_tcp_listen(mb_runtime_t *rt, mb_pid_t owner, int port, const mb_sockopts_t *o,
                  mb_tls_ctx_t *tls, mb_port_t **out) {
  struct sockaddr_storage ss;
  int r = mb_sockaddr_parse(o->address, port, o->family, &ss);
  if (r) return r;
  uv_loop_t *loop = mb_port_loop(rt);
  if (!loop) return UV_ENOMEM;
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  if (o->reuseaddr && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one)) goto fail;
  if (o->reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one)) goto fail;
  if (ss.ss_family == AF_INET6 && (o->set & MB_SO_IPV6ONLY)) {
    int v = o->ipv6only;
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v, sizeof v)) goto fail;
  }
  socklen_t sl = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  if (bind(fd, (struct sockaddr *)&ss, sl)) goto fail;
  if (listen(fd, o->backlog > 0 ? o->backlog : 128)) goto fail;
  listener_t *l = calloc(1, sizeof *l);
  if (!l) {
    close(fd);
    return UV_ENOMEM;
  }
  if (mb_port_init(&l->base, &mb_tcp_listen_type, rt, owner) || uv_poll_init(loop, &l->poll, fd)) {
    free(l);
    close(fd);
    return UV_ENOMEM;
  }
  uv_timer_init(loop, &l->timer);
  l->poll.data = l;
  l->timer.data = l;
  l->handles = 2;
  l->fd = fd;
  l->opts = *o;
  l->waiting_tail = &l->waiting;
  if (tls) mb_tls_ctx_ref(tls);
  l->tls = tls;
  mb_port_ref(&l->base); /* the caller's */
  if (mb_port_open(&l->base)) {
    mb_port_unref(&l->base);
    return UV_ECANCELED;
  }
  *out = &l->base;
  return 0;
fail:
  r = -errno;
  close(fd);
  return r;
}
