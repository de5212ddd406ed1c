/* ws.c: WebSocket framing over libwslay (see ws.h).
 *
 * libwslay pulls input through recv_cb and pushes output through send_cb; here
 * both are memory: `in`/`in_len` is the slice being fed (recv_cb returns
 * WOULDBLOCK when it is used up), and send_cb appends to `out`, which never
 * refuses, so libwslay's own queue empties on every take_output. A failure seen
 * in a callback that returns nothing (frame too large, bad UTF-8) is stored in
 * `fail`, the close is queued there, and the next recv_cb says there is no more
 * input, which makes wslay_event_recv stop. */
#include "http/ws.h"

#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

struct mb_ws {
  wslay_event_context_ptr ctx;
  mb_ws_limits_t lim;
  const uint8_t *in;
  size_t in_len;
  uint8_t *out;
  size_t out_len, out_cap;
  int fail;            /* close code of a failure, 0: none */
  int oom;
  mb_ws_on_msg cb;
  void *ud;
};

int mb_ws_utf8_valid(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c < 0x80) { i++; continue; }
    size_t k;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) { k = 1; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { k = 2; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { k = 3; cp = c & 0x07; }
    else return 0;
    if (n - i <= k) return 0;
    for (size_t j = 1; j <= k; j++) {
      uint8_t d = s[i + j];
      if ((d & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (d & 0x3f);
    }
    if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000)) return 0;   /* overlong */
    if (cp >= 0xd800 && cp <= 0xdfff) return 0;                          /* surrogate */
    if (cp > 0x10ffff) return 0;
    i += k + 1;
  }
  return 1;
}

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user) {
  (void)flags;
  mb_ws_t *ws = user;
  if (ws->fail || ws->in_len == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  size_t n = len < ws->in_len ? len : ws->in_len;
  memcpy(buf, ws->in, n);
  ws->in += n;
  ws->in_len -= n;
  return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user) {
  (void)flags;
  mb_ws_t *ws = user;
  if (ws->out_len + len > ws->out_cap) {
    size_t cap = ws->out_cap ? ws->out_cap : 1024;
    while (cap < ws->out_len + len) cap *= 2;
    uint8_t *nb = realloc(ws->out, cap);
    if (!nb) {
      ws->oom = 1;
      wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
      return -1;
    }
    ws->out = nb;
    ws->out_cap = cap;
  }
  memcpy(ws->out + ws->out_len, data, len);
  ws->out_len += len;
  return (ssize_t)len;
}

static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user) {
  (void)user;
  if (RAND_bytes(buf, (int)len) != 1) {
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  return 0;
}

static void frame_start_cb(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *arg, void *user) {
  (void)ctx;
  mb_ws_t *ws = user;
  if (arg->payload_length > ws->lim.max_frame && !ws->fail) {
    ws->fail = 1009;
    wslay_event_queue_close(ctx, 1009, NULL, 0);
  }
}

static void msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *user) {
  mb_ws_t *ws = user;
  if (ws->fail) return;
  if (arg->opcode == WSLAY_TEXT_FRAME && !mb_ws_utf8_valid(arg->msg, arg->msg_length)) {
    ws->fail = 1007;
    wslay_event_queue_close(ctx, 1007, NULL, 0);
    return;
  }
  if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
    const uint8_t *reason = arg->msg_length >= 2 ? arg->msg + 2 : arg->msg;
    size_t rlen = arg->msg_length >= 2 ? arg->msg_length - 2 : 0;
    ws->cb(ws->ud, MB_WS_CLOSE, reason, rlen, arg->status_code ? arg->status_code : 1005);
    return;
  }
  ws->cb(ws->ud, arg->opcode, arg->msg, arg->msg_length, 0);
}

static const struct wslay_event_callbacks callbacks = {
  .recv_callback = recv_cb,
  .send_callback = send_cb,
  .genmask_callback = genmask_cb,
  .on_frame_recv_start_callback = frame_start_cb,
  .on_msg_recv_callback = msg_cb,
};

mb_ws_t *mb_ws_new(int client, const mb_ws_limits_t *limits) {
  mb_ws_t *ws = calloc(1, sizeof *ws);
  if (!ws) return NULL;
  int r = client ? wslay_event_context_client_init(&ws->ctx, &callbacks, ws)
                 : wslay_event_context_server_init(&ws->ctx, &callbacks, ws);
  if (r != 0) {
    free(ws);
    return NULL;
  }
  ws->lim.max_message = limits && limits->max_message ? limits->max_message : (16u << 20);
  ws->lim.max_frame = limits && limits->max_frame ? limits->max_frame : ws->lim.max_message;
  wslay_event_config_set_max_recv_msg_length(ws->ctx, ws->lim.max_message);
  return ws;
}

void mb_ws_free(mb_ws_t *ws) {
  if (!ws) return;
  wslay_event_context_free(ws->ctx);
  free(ws->out);
  free(ws);
}

static void noop_cb(void *ud, int op, const uint8_t *d, size_t n, int code) {
  (void)ud; (void)op; (void)d; (void)n; (void)code;
}

int mb_ws_feed(mb_ws_t *ws, const uint8_t *data, size_t len, mb_ws_on_msg cb, void *ud) {
  if (ws->oom) return -1;
  if (ws->fail) return -ws->fail;
  if (!wslay_event_get_read_enabled(ws->ctx)) return 0;   /* closing: input ignored */
  ws->in = data;
  ws->in_len = len;
  ws->cb = cb ? cb : noop_cb;
  ws->ud = ud;
  int r = wslay_event_recv(ws->ctx);
  ws->in = NULL;
  ws->in_len = 0;
  ws->cb = noop_cb;
  if (ws->fail) {
    wslay_event_shutdown_read(ws->ctx);   /* the close is queued by the callback */
    return -ws->fail;
  }
  if (r == WSLAY_ERR_NOMEM || ws->oom) {
    ws->oom = 1;
    return -1;
  }
  if (r != 0 || (!wslay_event_get_read_enabled(ws->ctx) &&
                 !wslay_event_get_close_received(ws->ctx))) {
    /* libwslay stopped reading on a protocol error, bad UTF-8 or a message too
     * big, and queued its close: frame it now to learn the code it chose */
    if (wslay_event_want_write(ws->ctx)) wslay_event_send(ws->ctx);
    ws->fail = wslay_event_get_status_code_sent(ws->ctx);
    if (ws->fail == 0 || ws->fail == 1005 || ws->fail == 1006) {
      ws->fail = 1002;
      wslay_event_queue_close(ws->ctx, 1002, NULL, 0);
    }
    return -ws->fail;
  }
  return 0;
}

int mb_ws_send(mb_ws_t *ws, int opcode, const uint8_t *data, size_t len) {
  struct wslay_event_msg m = {(uint8_t)opcode, data, len};
  return wslay_event_queue_msg(ws->ctx, &m);
}

int mb_ws_close(mb_ws_t *ws, int code, const uint8_t *reason, size_t len) {
  return wslay_event_queue_close(ws->ctx, (uint16_t)code, reason, len);
}

const uint8_t *mb_ws_take_output(mb_ws_t *ws, size_t *len) {
  if (!ws->oom && wslay_event_want_write(ws->ctx)) wslay_event_send(ws->ctx);
  *len = ws->out_len;
  ws->out_len = 0;   /* the bytes stay in place until the next append */
  return ws->out;
}

size_t mb_ws_pending(mb_ws_t *ws) {
  return wslay_event_get_queued_msg_length(ws->ctx);
}

int mb_ws_close_sent(mb_ws_t *ws) { return wslay_event_get_close_sent(ws->ctx); }
int mb_ws_close_received(mb_ws_t *ws) { return wslay_event_get_close_received(ws->ctx); }

int mb_ws_done(mb_ws_t *ws) {
  if (ws->oom) return 1;
  int sent = wslay_event_get_close_sent(ws->ctx);
  if (!sent) return 0;
  return wslay_event_get_close_received(ws->ctx) || !wslay_event_get_read_enabled(ws->ctx);
}
