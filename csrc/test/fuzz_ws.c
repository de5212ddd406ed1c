/* fuzz_ws.c: libFuzzer on the WebSocket frame path: the input is fed to a
 * server codec (masked frames expected) in pieces whose size the first byte
 * picks; every reply it frames is taken, as a connection would write it. */
#include <stddef.h>
#include <stdint.h>

#include "http/ws.h"

static size_t seen;

static void on_msg(void *ud, int op, const uint8_t *d, size_t n, int code) {
  (void)ud; (void)d;
  seen += n + (size_t)op + (size_t)code;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t mode = data[0];
  data++, size--;
  mb_ws_limits_t lim = {8192, 65536};
  mb_ws_t *ws = mb_ws_new(mode & 1, &lim);
  if (!ws) return 0;
  size_t step = (mode >> 1) ? (size_t)(mode >> 1) : size;
  for (size_t off = 0; off < size;) {
    size_t n = size - off < step ? size - off : step;
    int r = mb_ws_feed(ws, data + off, n, on_msg, NULL);
    size_t len;
    mb_ws_take_output(ws, &len);
    if (r != 0 || mb_ws_done(ws)) break;
    off += n;
  }
  mb_ws_free(ws);
  return 0;
}
