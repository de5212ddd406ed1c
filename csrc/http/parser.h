/* parser.h: HTTP/1.1 message parsing over libhttp-parser, with moonbeam's limits.
 *
 * A parser is fed the bytes of one connection as they arrive and reports each
 * message through three callbacks: on_head (request line or status line and
 * all headers, once), on_body (each piece of the decoded body: chunked framing
 * removed), on_done (the message is complete). Pipelined messages in one feed
 * are reported in order. Header names are lower-cased in place.
 *
 * Limits are checked as bytes arrive, before anything is buffered beyond them:
 * the head (request line plus headers) and the header count give 431, a body
 * longer than max_body (announced by Content-Length or counted in chunks) 413,
 * anything libhttp-parser rejects 400. After an error the parser refuses input. */
#ifndef MB_HTTP_PARSER_H
#define MB_HTTP_PARSER_H

#include <stddef.h>
#include <stdint.h>

typedef struct mb_http_parser mb_http_parser_t;

typedef struct mb_http_limits {
  size_t max_head;      /* request/status line + headers, bytes (431) */
  size_t max_headers;   /* header count (431) */
  uint64_t max_body;    /* decoded body bytes (413); 0: no limit */
} mb_http_limits_t;

#define MB_HTTP_DEFAULT_MAX_HEAD    16384
#define MB_HTTP_DEFAULT_MAX_HEADERS 100
#define MB_HTTP_DEFAULT_MAX_BODY    (8u << 20)

typedef struct mb_http_header {
  const char *name, *value;   /* NUL-terminated; name lower-cased */
  size_t name_len, value_len;
} mb_http_header_t;

typedef struct mb_http_head {
  const char *method;         /* requests: "GET", ...; responses: NULL */
  const char *url;            /* requests: request target, NUL-terminated */
  size_t url_len;
  int status;                 /* responses: status code */
  int version_major, version_minor;
  int keep_alive;             /* the connection may carry another message */
  int upgrade;                /* Connection: upgrade with an Upgrade header */
  int chunked;                /* Transfer-Encoding: chunked */
  int has_length;             /* Content-Length was given */
  uint64_t content_length;
  size_t n_headers;
  const mb_http_header_t *headers;
} mb_http_head_t;

typedef struct mb_http_sink {
  /* Return nonzero from on_head to stop with that status as an error (e.g. 417);
   * return MB_HTTP_SKIP_BODY to say the message has no body (HEAD responses). */
  int (*on_head)(void *ud, const mb_http_head_t *head);
  int (*on_body)(void *ud, const char *data, size_t len);
  int (*on_done)(void *ud);
} mb_http_sink_t;

#define MB_HTTP_SKIP_BODY 1

enum { MB_HTTP_REQUEST = 0, MB_HTTP_RESPONSE = 1 };

/* Feed results: 0 all consumed; MB_HTTP_UPGRADED the message before *used was an
 * upgrade and the rest belongs to the new protocol; a negative value is minus the
 * HTTP status the error calls for (-400, -413, -431). */
#define MB_HTTP_UPGRADED 1

mb_http_parser_t *mb_http_parser_new(int type, const mb_http_limits_t *limits);
void mb_http_parser_free(mb_http_parser_t *p);
int mb_http_parser_feed(mb_http_parser_t *p, const char *data, size_t len, size_t *used,
                        const mb_http_sink_t *sink, void *ud);
/* A response ended by the peer closing (no length, not chunked): call at EOF;
 * reports on_done if a body was in progress; returns 0, or -400 if cut short. */
int mb_http_parser_eof(mb_http_parser_t *p, const mb_http_sink_t *sink, void *ud);
/* Why the last error happened (static string), or NULL. */
const char *mb_http_parser_reason(const mb_http_parser_t *p);
/* 1 while between messages (nothing of the next one seen yet). */
int mb_http_parser_idle(const mb_http_parser_t *p);

#endif
