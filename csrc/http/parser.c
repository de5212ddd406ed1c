/* parser.c: one connection's HTTP/1.1 parser (see parser.h).
 *
 * The head is collected into one buffer `buf`: the URL (or status text is
 * dropped), then each header's name and value, each NUL-terminated, located by
 * offsets (the buffer moves as it grows). It is emptied after every head, so an
 * idle keep-alive connection holds only its last capacity, never more than
 * max_head plus the per-header terminators. Callbacks of libhttp-parser may
 * split any field across feeds; `last` says whether the previous piece was a
 * name or a value, which is how a new header is recognised. */
#include "http/parser.h"

#include <http_parser.h>
#include <stdlib.h>
#include <string.h>

typedef struct hdr_off {
  size_t name, name_len, value, value_len;
} hdr_off_t;

enum { LAST_NONE = 0, LAST_URL, LAST_NAME, LAST_VALUE };

struct mb_http_parser {
  http_parser hp;            /* first: callbacks cast back from it */
  mb_http_limits_t lim;
  char *buf;
  size_t len, cap;
  hdr_off_t *hdrs;
  size_t n_hdrs, cap_hdrs;
  mb_http_header_t *view;    /* built for on_head, same capacity as hdrs */
  size_t url_len;
  int last;
  int in_message;
  int error;                 /* HTTP status of the error, 0: none */
  const char *reason;
  uint64_t body_seen;
  const mb_http_sink_t *sink;
  void *ud;
};

static int fail(mb_http_parser_t *p, int status, const char *reason) {
  if (!p->error) {
    p->error = status;
    p->reason = reason;
  }
  return -1;
}

static int append(mb_http_parser_t *p, const char *at, size_t n) {
  if (p->len + n + 1 > p->lim.max_head + 2 * p->lim.max_headers + 2)
    return fail(p, 431, "request head too large");
  if (p->len + n + 1 > p->cap) {
    size_t cap = p->cap ? p->cap : 512;
    while (cap < p->len + n + 1) cap *= 2;
    char *nb = realloc(p->buf, cap);
    if (!nb) return fail(p, 500, "out of memory");
    p->buf = nb;
    p->cap = cap;
  }
  memcpy(p->buf + p->len, at, n);
  p->len += n;
  return 0;
}

/* Ends the piece being collected (url, name or value) with a NUL. */
static int terminate(mb_http_parser_t *p) {
  if (p->last == LAST_NONE) return 0;
  if (append(p, "", 0) < 0) return -1;
  p->buf[p->len++] = '\0';
  return 0;
}

#define P(hp) ((mb_http_parser_t *)(hp))

static int cb_begin(http_parser *hp) {
  mb_http_parser_t *p = P(hp);
  p->len = 0;
  p->n_hdrs = 0;
  p->url_len = 0;
  p->last = LAST_NONE;
  p->in_message = 1;
  p->body_seen = 0;
  return 0;
}

static int cb_url(http_parser *hp, const char *at, size_t n) {
  mb_http_parser_t *p = P(hp);
  if (p->last == LAST_NONE) p->last = LAST_URL;
  p->url_len += n;
  return append(p, at, n);
}

static int cb_field(http_parser *hp, const char *at, size_t n) {
  mb_http_parser_t *p = P(hp);
  if (p->last != LAST_NAME) {
    if (terminate(p) < 0) return -1;
    if (p->n_hdrs == p->lim.max_headers) return fail(p, 431, "too many headers");
    if (p->n_hdrs == p->cap_hdrs) {
      size_t cap = p->cap_hdrs ? p->cap_hdrs * 2 : 16;
      hdr_off_t *nh = realloc(p->hdrs, cap * sizeof *nh);
      if (!nh) return fail(p, 500, "out of memory");
      p->hdrs = nh;
      mb_http_header_t *nv = realloc(p->view, cap * sizeof *nv);
      if (!nv) return fail(p, 500, "out of memory");
      p->view = nv;
      p->cap_hdrs = cap;
    }
    hdr_off_t *h = &p->hdrs[p->n_hdrs++];
    h->name = p->len;
    h->name_len = 0;
    h->value = p->len;
    h->value_len = 0;
    p->last = LAST_NAME;
  }
  size_t off = p->len;
  if (append(p, at, n) < 0) return -1;
  for (size_t i = off; i < p->len; i++) {
    char c = p->buf[i];
    if (c >= 'A' && c <= 'Z') p->buf[i] = (char)(c + 32);
  }
  p->hdrs[p->n_hdrs - 1].name_len += n;
  return 0;
}

static int cb_value(http_parser *hp, const char *at, size_t n) {
  mb_http_parser_t *p = P(hp);
  if (p->n_hdrs == 0) return 0;     /* cannot happen: a value follows a name */
  hdr_off_t *h = &p->hdrs[p->n_hdrs - 1];
  if (p->last != LAST_VALUE) {
    if (terminate(p) < 0) return -1;
    h->value = p->len;
    p->last = LAST_VALUE;
  }
  if (append(p, at, n) < 0) return -1;
  h->value_len += n;
  return 0;
}

static int cb_headers_complete(http_parser *hp) {
  mb_http_parser_t *p = P(hp);
  if (p->last == LAST_NONE) p->last = LAST_URL;   /* a response without headers */
  if (terminate(p) < 0) return -1;
  for (size_t i = 0; i < p->n_hdrs; i++) {
    hdr_off_t *h = &p->hdrs[i];
    p->view[i] = (mb_http_header_t){p->buf + h->name, p->buf + h->value, h->name_len,
                                    h->value_len};
  }
  mb_http_head_t head = {0};
  if (hp->type == HTTP_REQUEST) {
    head.method = http_method_str((enum http_method)hp->method);
    head.url = p->buf;
    head.url_len = p->url_len;
  } else {
    head.status = (int)hp->status_code;
    head.url = "";
  }
  head.version_major = hp->http_major;
  head.version_minor = hp->http_minor;
  head.keep_alive = http_should_keep_alive(hp);
  head.upgrade = hp->upgrade;
  head.chunked = (hp->flags & F_CHUNKED) != 0;
  head.has_length = (hp->flags & F_CONTENTLENGTH) != 0;
  head.content_length = head.has_length ? hp->content_length : 0;
  head.n_headers = p->n_hdrs;
  head.headers = p->view;
  if (p->lim.max_body && head.has_length && head.content_length > p->lim.max_body)
    return fail(p, 413, "body too large");
  int r = p->sink->on_head ? p->sink->on_head(p->ud, &head) : 0;
  if (r == MB_HTTP_SKIP_BODY) return 1;
  if (r) return fail(p, r, "refused by handler");
  return 0;
}

static int cb_body(http_parser *hp, const char *at, size_t n) {
  mb_http_parser_t *p = P(hp);
  p->body_seen += n;
  if (p->lim.max_body && p->body_seen > p->lim.max_body) return fail(p, 413, "body too large");
  if (p->sink->on_body && p->sink->on_body(p->ud, at, n)) return fail(p, 500, "body refused");
  return 0;
}

static int cb_complete(http_parser *hp) {
  mb_http_parser_t *p = P(hp);
  p->in_message = 0;
  /* drop the head's memory if it grew beyond a typical request */
  if (p->cap > 4096) {
    free(p->buf);
    p->buf = NULL;
    p->cap = 0;
  }
  p->len = 0;
  if (p->sink->on_done && p->sink->on_done(p->ud)) return fail(p, 500, "refused");
  return 0;
}

static const http_parser_settings settings = {
  .on_message_begin = cb_begin,
  .on_url = cb_url,
  .on_header_field = cb_field,
  .on_header_value = cb_value,
  .on_headers_complete = cb_headers_complete,
  .on_body = cb_body,
  .on_message_complete = cb_complete,
};

mb_http_parser_t *mb_http_parser_new(int type, const mb_http_limits_t *limits) {
  mb_http_parser_t *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  http_parser_init(&p->hp, type == MB_HTTP_RESPONSE ? HTTP_RESPONSE : HTTP_REQUEST);
  p->lim.max_head = limits && limits->max_head ? limits->max_head : MB_HTTP_DEFAULT_MAX_HEAD;
  p->lim.max_headers = limits && limits->max_headers ? limits->max_headers
                                                     : MB_HTTP_DEFAULT_MAX_HEADERS;
  p->lim.max_body = limits ? limits->max_body : MB_HTTP_DEFAULT_MAX_BODY;
  return p;
}

void mb_http_parser_free(mb_http_parser_t *p) {
  if (!p) return;
  free(p->buf);
  free(p->hdrs);
  free(p->view);
  free(p);
}

static int status_of(enum http_errno e) {
  switch (e) {
  case HPE_HEADER_OVERFLOW: return 431;
  case HPE_INVALID_VERSION: return 505;
  default: return 400;
  }
}

int mb_http_parser_feed(mb_http_parser_t *p, const char *data, size_t len, size_t *used,
                        const mb_http_sink_t *sink, void *ud) {
  *used = 0;
  if (p->error) return -p->error;
  if (len == 0) return 0;
  p->sink = sink;
  p->ud = ud;
  size_t n = http_parser_execute(&p->hp, &settings, data, len);
  *used = n;
  if (p->error) return -p->error;
  enum http_errno e = HTTP_PARSER_ERRNO(&p->hp);
  if (e != HPE_OK) {
    p->error = status_of(e);
    p->reason = http_errno_description(e);
    return -p->error;
  }
  if (p->hp.upgrade) return MB_HTTP_UPGRADED;
  return 0;
}

int mb_http_parser_eof(mb_http_parser_t *p, const mb_http_sink_t *sink, void *ud) {
  if (p->error) return -p->error;
  p->sink = sink;
  p->ud = ud;
  int was = p->in_message;
  http_parser_execute(&p->hp, &settings, NULL, 0);
  if (p->error) return -p->error;
  if (HTTP_PARSER_ERRNO(&p->hp) != HPE_OK || (was && p->in_message)) {
    p->error = 400;
    p->reason = "connection closed inside a message";
    return -400;
  }
  return 0;
}

const char *mb_http_parser_reason(const mb_http_parser_t *p) {
  return p->error ? p->reason : NULL;
}

int mb_http_parser_idle(const mb_http_parser_t *p) {
  return !p->in_message && !p->error;
}
