/* udp.c: UDP sockets as ports (gen_udp's model). Datagrams arrive as
 * {"udp", Sock, Ip, Port, Data} within the active allowance, as gen_tcp; with
 * the allowance spent (or passive with no recv waiting) the socket stops
 * receiving and the kernel's buffer fills (then drops, as UDP does). A send
 * goes out at once (uv_udp_try_send) or is queued with its own copy. */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "io/io.h"

typedef struct udp {
  mb_port_t base;
  uv_udp_t h;
  uv_timer_t timer;
  int handles, active, once, receiving;
  size_t buffer;
  mb_port_cmd_t *recv;
} udp_t;

typedef struct usend {
  uv_udp_send_t req;
  uint8_t data[];
} usend_t;

static void udp_want(udp_t *u);

static void udp_passive_msg(udp_t *u) {
  mb_enc_t e;
  mb_port_enc(&u->base, &e, "udp_passive", 2);
  mb_port_send(&u->base, &e);
}

static void udp_set_active(udp_t *u, const mb_sockopts_t *o) {
  if (o->active == MB_ACTIVE_TRUE || o->active == 0 || o->once) {
    u->active = o->active;
    u->once = o->once;
    return;
  }
  int64_t n = (u->active > 0 && !u->once ? u->active : 0) + (int64_t)o->active;
  u->once = 0;
  if (n <= 0) {
    u->active = 0;
    udp_passive_msg(u);
  } else {
    u->active = n > 0x7fffffff ? 0x7fffffff : (int)n;
  }
}

static int udp_apply(udp_t *u, const mb_sockopts_t *o) {
  int r = 0;
  if (o->set & MB_SO_ACTIVE) udp_set_active(u, o);
  if (o->set & MB_SO_BUFFER) u->buffer = o->buffer;
  if (o->set & MB_SO_BROADCAST) r = r ? r : uv_udp_set_broadcast(&u->h, o->broadcast);
  if (o->set & MB_SO_MULTICAST_TTL) r = r ? r : uv_udp_set_multicast_ttl(&u->h, o->multicast_ttl);
  if (o->set & MB_SO_MULTICAST_LOOP) r = r ? r : uv_udp_set_multicast_loop(&u->h, o->multicast_loop);
  return r;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  udp_t *u = h->data;
  size_t n;
  void *s = mb_port_scratch(&u->base, &n);
  if (n > u->buffer) n = u->buffer;
  *buf = uv_buf_init(s, s ? (unsigned)n : 0);
}

static void enc_from(mb_enc_t *e, const struct sockaddr *addr) {
  char ip[64] = "";
  int port = 0;
  if (addr) mb_sockaddr_text(addr, ip, sizeof ip, &port);
  mb_enc_binary(e, ip, strlen(ip));
  mb_enc_int(e, port);
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                    unsigned flags) {
  (void)flags;
  udp_t *u = h->data;
  if (nread == 0 && !addr) return; /* nothing more for now */
  if (nread < 0) {
    if (u->recv) {
      char name[32];
      mb_port_cmd_t *c = u->recv;
      u->recv = NULL;
      uv_timer_stop(&u->timer);
      mb_port_res_error(c, mb_port_errname((int)nread, name, sizeof name));
      mb_port_reply(c);
    }
    udp_want(u);
    return;
  }
  if (u->recv) {
    mb_port_cmd_t *c = u->recv;
    u->recv = NULL;
    uv_timer_stop(&u->timer);
    mb_enc_tuple(&c->res, 3);
    enc_from(&c->res, addr);
    mb_enc_binary(&c->res, buf->base, (size_t)nread);
    mb_port_reply(c);
  } else if (u->active != 0) {
    mb_enc_t e;
    mb_port_enc(&u->base, &e, "udp", 5);
    enc_from(&e, addr);
    mb_enc_binary(&e, buf->base, (size_t)nread);
    mb_port_send(&u->base, &e);
    if (u->active > 0 && --u->active == 0 && !u->once) udp_passive_msg(u);
  }
  udp_want(u);
}

static void udp_want(udp_t *u) {
  int want = mb_port_is_open(&u->base) && (u->active != 0 || u->recv);
  if (want && !u->receiving) {
    if (uv_udp_recv_start(&u->h, on_alloc, on_recv) == 0) u->receiving = 1;
  } else if (!want && u->receiving) {
    uv_udp_recv_stop(&u->h);
    u->receiving = 0;
  }
}

static void on_timeout(uv_timer_t *t) {
  udp_t *u = t->data;
  if (!u->recv) return;
  mb_port_cmd_t *c = u->recv;
  u->recv = NULL;
  mb_port_res_error(c, "timeout");
  mb_port_reply(c);
  udp_want(u);
}

static void on_sent(uv_udp_send_t *req, int status) {
  (void)status; /* UDP: a lost datagram is not reported to the sender */
  free(req);
}

static int udp_command(mb_port_t *p, mb_port_cmd_t *c) {
  udp_t *u = (udp_t *)p;
  char name[32];
  switch (c->op) {
  case MB_UDP_SEND: {
    /* extra: the destination (struct sockaddr_storage) */
    const struct sockaddr *to = c->extra;
    uv_buf_t b = uv_buf_init((char *)c->data, (unsigned)c->len);
    int r = uv_udp_try_send(&u->h, &b, 1, to);
    if (r == UV_EAGAIN) {
      usend_t *s = malloc(sizeof *s + c->len);
      if (!s) {
        mb_port_res_error(c, "enomem");
        return MB_PORT_DONE;
      }
      memcpy(s->data, c->data, c->len);
      b = uv_buf_init((char *)s->data, (unsigned)c->len);
      r = uv_udp_send(&s->req, &u->h, &b, 1, to, on_sent);
      if (r) free(s);
    }
    if (r < 0) mb_port_res_error(c, mb_port_errname(r, name, sizeof name));
    else mb_port_res_ok(c);
    return MB_PORT_DONE;
  }
  case MB_UDP_RECV:
    if (u->recv || u->active != 0) {
      mb_port_res_error(c, u->recv ? "ealready" : "einval");
      return MB_PORT_DONE;
    }
    if (c->arg[1] == 0) {
      mb_port_res_error(c, "timeout");
      return MB_PORT_DONE;
    }
    u->recv = c;
    if (c->arg[1] > 0) {
      uv_update_time(u->h.loop);
      uv_timer_start(&u->timer, on_timeout, (uint64_t)c->arg[1], 0);
    }
    udp_want(u);
    return MB_PORT_PENDING;
  case MB_UDP_SETOPTS: {
    int r = c->extra ? udp_apply(u, c->extra) : 0;
    udp_want(u);
    if (r) mb_port_res_error(c, mb_port_errname(r, name, sizeof name));
    else mb_port_res_ok(c);
    return MB_PORT_DONE;
  }
  case MB_UDP_GETOPTS:
    mb_enc_tuple(&c->res, 1);
    mb_enc_map(&c->res, 2);
    mb_enc_binary(&c->res, "active", 6);
    if (u->active == MB_ACTIVE_TRUE) mb_enc_atom(&c->res, "true", 4);
    else if (u->active == 0) mb_enc_atom(&c->res, "false", 5);
    else if (u->once) mb_enc_binary(&c->res, "once", 4);
    else mb_enc_int(&c->res, u->active);
    mb_enc_binary(&c->res, "buffer", 6);
    mb_enc_int(&c->res, (int64_t)u->buffer);
    return MB_PORT_DONE;
  case MB_UDP_SOCKNAME: {
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    int r = uv_udp_getsockname(&u->h, (struct sockaddr *)&ss, &sl);
    if (r) {
      mb_port_res_error(c, mb_port_errname(r, name, sizeof name));
      return MB_PORT_DONE;
    }
    mb_enc_tuple(&c->res, 2);
    enc_from(&c->res, (struct sockaddr *)&ss);
    return MB_PORT_DONE;
  }
  case MB_UDP_MEMBERSHIP: {
    /* data: "group\0interface"; arg[0]: 1 join, 0 leave */
    const char *group = (const char *)c->data;
    const char *ifc = memchr(c->data, 0, c->len) ? group + strlen(group) + 1 : "";
    int r = uv_udp_set_membership(&u->h, group, *ifc ? ifc : NULL,
                                  c->arg[0] ? UV_JOIN_GROUP : UV_LEAVE_GROUP);
    if (r) mb_port_res_error(c, mb_port_errname(r, name, sizeof name));
    else mb_port_res_ok(c);
    return MB_PORT_DONE;
  }
  default:
    mb_port_res_error(c, "einval");
    return MB_PORT_DONE;
  }
}

static void on_closed(uv_handle_t *h) {
  udp_t *u = h->data;
  if (--u->handles == 0) mb_port_closed(&u->base);
}

static void udp_close(mb_port_t *p) {
  udp_t *u = (udp_t *)p;
  if (uv_is_closing((uv_handle_t *)&u->h)) return;
  if (u->recv) {
    mb_port_cmd_t *c = u->recv;
    u->recv = NULL;
    mb_port_res_error(c, "closed");
    mb_port_reply(c);
  }
  uv_close((uv_handle_t *)&u->h, on_closed);
  uv_close((uv_handle_t *)&u->timer, on_closed);
}

static void udp_free(mb_port_t *p) { free(p); }

const mb_port_type_t mb_udp_type = {"udp", udp_command, udp_close, udp_free};

int mb_udp_open(mb_runtime_t *rt, mb_pid_t owner, int port, const mb_sockopts_t *o, mb_port_t **out) {
  struct sockaddr_storage ss;
  int r = mb_sockaddr_parse(o->address, port, o->family, &ss);
  if (r) return r;
  uv_loop_t *loop = mb_port_loop(rt);
  if (!loop) return UV_ENOMEM;
  udp_t *u = calloc(1, sizeof *u);
  if (!u) return UV_ENOMEM;
  if ((r = uv_udp_init(loop, &u->h))) {
    free(u);
    return r;
  }
  unsigned flags = (o->reuseaddr || o->reuseport) ? UV_UDP_REUSEADDR : 0;
  if (ss.ss_family == AF_INET6 && (o->set & MB_SO_IPV6ONLY) && o->ipv6only) flags |= UV_UDP_IPV6ONLY;
  r = uv_udp_bind(&u->h, (struct sockaddr *)&ss, flags);
  if (mb_port_init(&u->base, &mb_udp_type, rt, owner)) {
    /* cannot happen after mb_port_loop succeeded; close the handle anyway */
    uv_close((uv_handle_t *)&u->h, NULL);
    return UV_ENOMEM;
  }
  uv_timer_init(loop, &u->timer);
  u->h.data = u;
  u->timer.data = u;
  u->handles = 2;
  u->active = MB_ACTIVE_TRUE;
  u->buffer = 65536;
  if (!r) r = udp_apply(u, o);
  if (r) {
    mb_port_close(&u->base);
    return r;
  }
  mb_port_ref(&u->base);
  if (mb_port_open(&u->base)) {
    mb_port_unref(&u->base);
    return UV_ECANCELED;
  }
  udp_want(u);
  *out = &u->base;
  return 0;
}
