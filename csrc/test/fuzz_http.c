/* fuzz_http.c: libFuzzer on a connection's byte input to the HTTP parser.
 * The first byte picks request or response parsing and how the rest is split
 * into feeds, so partial reads are exercised as well as whole buffers. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "http/parser.h"

static size_t seen;

static int on_head(void *ud, const mb_http_head_t *h) {
  (void)ud;
  for (size_t i = 0; i < h->n_headers; i++)
    seen += strlen(h->headers[i].name) + strlen(h->headers[i].value);
  seen += h->url_len;
  return 0;
}
static int on_body(void *ud, const char *d, size_t n) {
  (void)ud; (void)d;
  seen += n;
  return 0;
}
static int on_done(void *ud) {
  (void)ud;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t mode = data[0];
  data++, size--;
  mb_http_limits_t lim = {1024, 20, 4096};
  mb_http_parser_t *p = mb_http_parser_new(mode & 1 ? MB_HTTP_RESPONSE : MB_HTTP_REQUEST, &lim);
  mb_http_sink_t sink = {on_head, on_body, on_done};
  size_t step = (mode >> 1) ? (size_t)(mode >> 1) : size;
  for (size_t off = 0; off < size;) {
    size_t n = size - off < step ? size - off : step;
    size_t used;
    int r = mb_http_parser_feed(p, (const char *)data + off, n, &used, &sink, NULL);
    if (r != 0) break;
    off += n;
  }
  mb_http_parser_eof(p, &sink, NULL);
  mb_http_parser_free(p);
  return 0;
}
