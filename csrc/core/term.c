/* term.c: Erlang External Term Format codec and the node table.
 * Invariants: every byte is read only after checking it lies before `end`; a length
 * or count from the wire is never used to allocate, and a container whose count
 * exceeds the bytes left (each child takes at least one) is rejected at once;
 * an encoder's first error sticks and later calls write nothing. */
#include "term.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define BAD MB_EBADTERM
#define NODES_MAX 256 /* node indexes fit the pid's 8 node bits */
#define SERIAL_MAX 0xFFFFFFu /* a pid's serial has 24 bits */
#define REF_WORDS_MAX 5 /* as many id words as Erlang sends */

/* ---------------------------------------------------------------- UTF-8 */

long mb_utf8_chars(const uint8_t *s, size_t n)
{
  long chars = 0;
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    size_t k, j;
    uint32_t cp, min;
    chars++;
    if (c < 0x80) { i++; continue; }
    if ((c & 0xE0) == 0xC0) { k = 1; cp = c & 0x1Fu; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { k = 2; cp = c & 0x0Fu; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { k = 3; cp = c & 0x07u; min = 0x10000; }
    else return -1;
    if (n - i - 1 < k) return -1;
    for (j = 1; j <= k; j++) {
      if ((s[i + j] & 0xC0) != 0x80) return -1;
      cp = cp << 6 | (s[i + j] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
    i += k + 1;
  }
  return chars;
}

/* ---------------------------------------------------------------- node table */

typedef struct node_ent {
  char *name;
  size_t len;
  uint32_t creation;
} node_ent;

struct mb_nodes {
  pthread_mutex_t lock;   /* serialises appends */
  _Atomic uint32_t count; /* entries [0, count) are immutable once published */
  node_ent ent[NODES_MAX];
};

mb_nodes_t *mb_nodes_new(const char *name, uint32_t creation)
{
  mb_nodes_t *t;
  size_t len;
  if (!name) name = MB_NONODE;
  len = strlen(name);
  if (len > 255 || !(t = calloc(1, sizeof *t))) return NULL;
  if (!(t->ent[0].name = malloc(len + 1))) { free(t); return NULL; }
  memcpy(t->ent[0].name, name, len + 1);
  t->ent[0].len = len;
  t->ent[0].creation = creation;
  pthread_mutex_init(&t->lock, NULL);
  atomic_init(&t->count, 1);
  return t;
}

void mb_nodes_free(mb_nodes_t *t)
{
  uint32_t i, n;
  if (!t) return;
  n = atomic_load(&t->count);
  for (i = 0; i < n; i++) free(t->ent[i].name);
  pthread_mutex_destroy(&t->lock);
  free(t);
}

static int node_find(const mb_nodes_t *t, uint32_t from, uint32_t to, const char *name,
                     size_t len, uint32_t creation)
{
  uint32_t i;
  for (i = from; i < to; i++) {
    const node_ent *e = &t->ent[i];
    if (e->creation == creation && e->len == len && !memcmp(e->name, name, len)) return (int)i;
  }
  return -1;
}

/* A NULL table knows only nonode@nohost (creation 0), as index 0. */
int mb_nodes_index(mb_nodes_t *t, const char *name, size_t len, uint32_t creation)
{
  uint32_t seen, n;
  int i;
  if (!name || len > 255) return MB_EINVAL;
  if (!t) {
    if (creation == 0 && len == sizeof MB_NONODE - 1 && !memcmp(name, MB_NONODE, len)) return 0;
    return MB_ELIMIT;
  }
  seen = atomic_load_explicit(&t->count, memory_order_acquire);
  if ((i = node_find(t, 0, seen, name, len, creation)) >= 0) return i;
  pthread_mutex_lock(&t->lock);
  n = atomic_load_explicit(&t->count, memory_order_relaxed);
  if ((i = node_find(t, seen, n, name, len, creation)) < 0) {
    char *copy = n < NODES_MAX ? malloc(len + 1) : NULL;
    i = n < NODES_MAX ? MB_ENOMEM : MB_ELIMIT;
    if (copy) {
      memcpy(copy, name, len);
      copy[len] = 0;
      t->ent[n].name = copy;
      t->ent[n].len = len;
      t->ent[n].creation = creation;
      atomic_store_explicit(&t->count, n + 1, memory_order_release);
      i = (int)n;
    }
  }
  pthread_mutex_unlock(&t->lock);
  return i;
}

const char *mb_nodes_name(mb_nodes_t *t, uint32_t index, size_t *len, uint32_t *creation)
{
  const node_ent *e;
  if (!t) {
    if (index) return NULL;
    if (len) *len = sizeof MB_NONODE - 1;
    if (creation) *creation = 0;
    return MB_NONODE;
  }
  /* entry 0 is set before the table is shared; later ones are published by count */
  if (index && index >= atomic_load_explicit(&t->count, memory_order_acquire)) return NULL;
  e = &t->ent[index];
  if (len) *len = e->len;
  if (creation) *creation = e->creation;
  return e->name;
}

/* ---------------------------------------------------------------- encoder */

static int enc_fail(mb_enc_t *e, int err)
{
  if (!e->err) e->err = err;
  return e->err;
}

/* Makes room for n more bytes, doubling; the encoder must have been started. */
static int enc_grow(mb_enc_t *e, size_t n)
{
  size_t cap = e->cap;
  uint8_t *b;
  if (!e->buf) return enc_fail(e, MB_EINVAL);
  if (n > SIZE_MAX - e->len) return enc_fail(e, MB_ENOMEM);
  while (cap - e->len < n) {
    if (cap > SIZE_MAX / 2) { cap = e->len + n; break; }
    cap *= 2;
  }
  if (!(b = realloc(e->buf, cap))) return enc_fail(e, MB_ENOMEM);
  e->buf = b;
  e->cap = cap;
  return 0;
}

/* Pointer to n writable bytes at the end (e->len not yet advanced), NULL on error. */
static inline uint8_t *enc_room(mb_enc_t *e, size_t n)
{
  if (e->err) return NULL;
  if (e->cap - e->len < n && enc_grow(e, n)) return NULL;
  return e->buf + e->len;
}

int mb_enc_init(mb_enc_t *e, mb_nodes_t *nodes, size_t prefix)
{
  e->nodes = nodes;
  e->prefix = prefix;
  e->len = e->cap = 0;
  e->err = 0;
  e->buf = NULL;
  if (prefix > SIZE_MAX - 64 || !(e->buf = malloc(prefix + 64))) return enc_fail(e, MB_ENOMEM);
  e->cap = prefix + 64;
  e->buf[prefix] = MB_ETF_VERSION;
  e->len = prefix + 1;
  return 0;
}

/* Writes an atom's tag, length and text; len already checked <= 255 * 4. */
static void put_atom(uint8_t *p, const char *s, size_t len, size_t *n)
{
  if (len < 256) {
    p[0] = MB_ETF_SMALL_ATOM_UTF8;
    p[1] = (uint8_t)len;
    memcpy(p + 2, s, len);
    *n = 2 + len;
  } else {
    p[0] = MB_ETF_ATOM_UTF8;
    mb_put16(p + 1, (uint16_t)len);
    memcpy(p + 3, s, len);
    *n = 3 + len;
  }
}

/* Erlang atoms are at most 255 characters of valid UTF-8. */
static int atom_text_ok(const char *s, size_t len)
{
  long c;
  if (len > 255 * 4) return 0;
  c = mb_utf8_chars((const uint8_t *)s, len);
  return c >= 0 && c <= 255;
}

int mb_enc_atom(mb_enc_t *e, const char *s, size_t len)
{
  uint8_t *p;
  size_t n;
  if (e->err) return e->err;
  if (!s || !atom_text_ok(s, len)) return enc_fail(e, MB_EINVAL);
  if (!(p = enc_room(e, 3 + len))) return e->err;
  put_atom(p, s, len, &n);
  e->len += n;
  return 0;
}

int mb_enc_int(mb_enc_t *e, int64_t v)
{
  uint8_t *p = enc_room(e, 11);
  uint64_t mag;
  int n = 0;
  if (!p) return e->err;
  if (v >= 0 && v <= 255) {
    p[0] = MB_ETF_SMALL_INT;
    p[1] = (uint8_t)v;
    e->len += 2;
  } else if (v >= INT32_MIN && v <= INT32_MAX) {
    p[0] = MB_ETF_INT;
    mb_put32(p + 1, (uint32_t)(int32_t)v);
    e->len += 5;
  } else {
    /* magnitude of INT64_MIN is 2^63, computed without overflow */
    mag = v < 0 ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v;
    p[0] = MB_ETF_SMALL_BIG;
    p[2] = v < 0;
    while (mag) { p[3 + n++] = (uint8_t)mag; mag >>= 8; }
    p[1] = (uint8_t)n;
    e->len += 3 + (size_t)n;
  }
  return 0;
}

int mb_enc_float(mb_enc_t *e, double v)
{
  uint8_t *p = enc_room(e, 9);
  uint64_t u;
  if (!p) return e->err;
  memcpy(&u, &v, 8);
  p[0] = MB_ETF_NEW_FLOAT;
  mb_put32(p + 1, (uint32_t)(u >> 32));
  mb_put32(p + 5, (uint32_t)u);
  e->len += 9;
  return 0;
}

int mb_enc_binary(mb_enc_t *e, const void *s, size_t len)
{
  uint8_t *p;
  if (e->err) return e->err;
  if (len > UINT32_MAX || (!s && len)) return enc_fail(e, MB_EINVAL);
  if (!(p = enc_room(e, 5 + len))) return e->err;
  p[0] = MB_ETF_BINARY;
  mb_put32(p + 1, (uint32_t)len);
  if (len) memcpy(p + 5, s, len);
  e->len += 5 + len;
  return 0;
}

/* A one-byte tag and a 32-bit count. */
static int enc_head32(mb_enc_t *e, uint8_t tag, uint32_t n)
{
  uint8_t *p = enc_room(e, 5);
  if (!p) return e->err;
  p[0] = tag;
  mb_put32(p + 1, n);
  e->len += 5;
  return 0;
}

int mb_enc_tuple(mb_enc_t *e, uint32_t arity)
{
  uint8_t *p;
  if (arity > 255) return enc_head32(e, MB_ETF_LARGE_TUPLE, arity);
  if (!(p = enc_room(e, 2))) return e->err;
  p[0] = MB_ETF_SMALL_TUPLE;
  p[1] = (uint8_t)arity;
  e->len += 2;
  return 0;
}

int mb_enc_list(mb_enc_t *e, uint32_t n)
{
  if (e->err) return e->err;
  if (!n) return enc_fail(e, MB_EINVAL);
  return enc_head32(e, MB_ETF_LIST, n);
}

int mb_enc_nil(mb_enc_t *e)
{
  uint8_t *p = enc_room(e, 1);
  if (!p) return e->err;
  p[0] = MB_ETF_NIL;
  e->len += 1;
  return 0;
}

int mb_enc_map(mb_enc_t *e, uint32_t pairs) { return enc_head32(e, MB_ETF_MAP, pairs); }

/* hdr[0..hn), then the atom naming node index `node`, then room for `more` bytes,
 * which start at *pp. */
static int enc_node(mb_enc_t *e, const uint8_t *hdr, size_t hn, uint32_t node, size_t more,
                    uint8_t **pp, uint32_t *creation)
{
  size_t len, n;
  const char *name;
  uint8_t *p;
  if (e->err) return e->err;
  if (!(name = mb_nodes_name(e->nodes, node, &len, creation))) return enc_fail(e, MB_EINVAL);
  if (!(p = enc_room(e, hn + 3 + len + more))) return e->err;
  memcpy(p, hdr, hn);
  put_atom(p + hn, name, len, &n);
  *pp = p + hn + n;
  e->len += hn + n + more;
  return 0;
}

int mb_enc_pid(mb_enc_t *e, mb_pid_t pid)
{
  static const uint8_t hdr[1] = {MB_ETF_NEW_PID};
  uint8_t *p;
  uint32_t cr;
  int r = enc_node(e, hdr, 1, mb_pid_node(pid), 12, &p, &cr);
  if (r) return r;
  mb_put32(p, mb_pid_index(pid));
  mb_put32(p + 4, mb_pid_serial(pid));
  mb_put32(p + 8, cr);
  return 0;
}

int mb_enc_ref(mb_enc_t *e, mb_ref_t ref)
{
  static const uint8_t hdr[3] = {MB_ETF_NEWER_REF, 0, 3};
  uint8_t *p;
  uint32_t cr;
  int r = enc_node(e, hdr, 3, ref.node, 16, &p, &cr);
  if (r) return r;
  mb_put32(p, cr);
  mb_put32(p + 4, ref.id[0]);
  mb_put32(p + 8, ref.id[1]);
  mb_put32(p + 12, ref.id[2]);
  return 0;
}

int mb_enc_port(mb_enc_t *e, uint64_t id)
{
  uint64_t num = id & 0x00ffffffffffffffull;
  int v4 = num > UINT32_MAX;
  const uint8_t hdr[1] = {v4 ? MB_ETF_V4_PORT : MB_ETF_NEW_PORT};
  uint8_t *p;
  uint32_t cr;
  int r = enc_node(e, hdr, 1, (uint32_t)(id >> 56), v4 ? 12 : 8, &p, &cr);
  if (r) return r;
  if (v4) {
    mb_put32(p, (uint32_t)(num >> 32));
    p += 4;
  }
  mb_put32(p, (uint32_t)num);
  mb_put32(p + 4, cr);
  return 0;
}

int mb_enc_term(mb_enc_t *e, const uint8_t *term, size_t len)
{
  uint8_t *p;
  int r;
  if (e->err) return e->err;
  if (!term || (r = mb_term_validate(term, len, MB_TERM_MAX_DEPTH)))
    return enc_fail(e, term ? r : MB_EINVAL);
  if (!(p = enc_room(e, len - 1))) return e->err;
  memcpy(p, term + 1, len - 1);
  e->len += len - 1;
  return 0;
}

uint8_t *mb_enc_finish(mb_enc_t *e, size_t *len)
{
  uint8_t *b = e->err ? NULL : e->buf;
  if (len) *len = b ? e->len : 0;
  if (!b) free(e->buf);
  e->buf = NULL;
  e->len = e->cap = 0;
  e->err = 0;
  return b;
}

void mb_enc_discard(mb_enc_t *e)
{
  free(e->buf);
  e->buf = NULL;
  e->len = e->cap = 0;
  e->err = 0;
}

/* ---------------------------------------------------------------- parsing */

/* A pid's or reference's parts as on the wire. */
typedef struct ident {
  const char *node;
  size_t nlen;
  uint32_t creation;
  uint32_t w[REF_WORDS_MAX]; /* pid: id, serial; ref: id words */
  size_t nw;
} ident_t;

/* The atom at p: text in *s, *n, *next past it. Latin-1 atoms (ATOM_EXT,
 * SMALL_ATOM_EXT) must be ASCII so their text is UTF-8 too; every atom has at
 * most 255 characters. */
static int atom_at(const uint8_t *p, const uint8_t *end, const char **s, size_t *n,
                   const uint8_t **next)
{
  size_t avail = (size_t)(end - p), hl, len, i;
  if (avail < 2) return BAD;
  switch (p[0]) {
  case MB_ETF_SMALL_ATOM: case MB_ETF_SMALL_ATOM_UTF8: hl = 2; len = p[1]; break;
  case MB_ETF_ATOM: case MB_ETF_ATOM_UTF8:
    if (avail < 3) return BAD;
    hl = 3;
    len = mb_be16(p + 1);
    break;
  default: return BAD;
  }
  if (avail - hl < len) return BAD;
  if (p[0] == MB_ETF_ATOM || p[0] == MB_ETF_SMALL_ATOM) {
    if (len > 255) return BAD;
    for (i = 0; i < len; i++)
      if (p[hl + i] & 0x80) return BAD;
  } else if (!atom_text_ok((const char *)p + hl, len)) {
    return BAD;
  }
  *s = (const char *)p + hl;
  *n = len;
  *next = p + hl + len;
  return 0;
}

/* The pid (PID_EXT, NEW_PID_EXT) or reference (NEW_REFERENCE_EXT,
 * NEWER_REFERENCE_EXT) at p. */
static int ident_at(const uint8_t *p, const uint8_t *end, ident_t *id, const uint8_t **next)
{
  const uint8_t *q;
  size_t i, crn, avail;
  uint8_t tag = p[0];
  id->nw = tag == MB_ETF_PORT || tag == MB_ETF_NEW_PORT ? 1 : 2;
  if (tag == MB_ETF_NEW_REF || tag == MB_ETF_NEWER_REF) {
    if (end - p < 3) return BAD;
    id->nw = mb_be16(p + 1);
    if (id->nw < 1 || id->nw > REF_WORDS_MAX) return BAD;
    p += 2;
  }
  if (atom_at(p + 1, end, &id->node, &id->nlen, &q)) return BAD;
  crn = tag == MB_ETF_PID || tag == MB_ETF_NEW_REF || tag == MB_ETF_PORT ? 1 : 4;
  avail = (size_t)(end - q);
  if (avail < crn + 4 * id->nw) return BAD;
  if (tag == MB_ETF_NEWER_REF || tag == MB_ETF_NEW_REF) {
    id->creation = crn == 1 ? q[0] : mb_be32(q);
    q += crn;
  }
  for (i = 0; i < id->nw; i++, q += 4) id->w[i] = mb_be32(q);
  if (tag == MB_ETF_NEW_PID || tag == MB_ETF_PID) {
    id->creation = crn == 1 ? q[0] : mb_be32(q);
    q += crn;
    if (id->w[1] > SERIAL_MAX) return BAD;
  } else if (tag == MB_ETF_PORT || tag == MB_ETF_NEW_PORT || tag == MB_ETF_V4_PORT) {
    id->creation = crn == 1 ? q[0] : mb_be32(q);
    q += crn;
    if (tag == MB_ETF_V4_PORT && id->w[0] > 0x00ffffffu) return BAD; /* 56-bit numbers */
  }
  *next = q;
  return 0;
}

/* Sizes the term at p (p < end): *next is past its own bytes, children excluded;
 * *kids is how many child terms follow; *box is 1 for a container. */
static int term_head(const uint8_t *p, const uint8_t *end, const uint8_t **next,
                     uint64_t *kids, int *box)
{
  uint64_t avail = (uint64_t)(end - p), need;
  const char *s;
  size_t n;
  ident_t id;
  *kids = 0;
  *box = 0;
  switch (p[0]) {
  case MB_ETF_SMALL_INT: need = 2; break;
  case MB_ETF_INT: need = 5; break;
  case MB_ETF_NEW_FLOAT: need = 9; break;
  case MB_ETF_NIL: need = 1; break;
  case MB_ETF_SMALL_BIG:
    if (avail < 3 || p[2] > 1) return BAD;
    need = 3 + (uint64_t)p[1];
    break;
  case MB_ETF_LARGE_BIG:
    if (avail < 6 || p[5] > 1) return BAD;
    need = 6 + (uint64_t)mb_be32(p + 1);
    break;
  case MB_ETF_BINARY:
    if (avail < 5) return BAD;
    need = 5 + (uint64_t)mb_be32(p + 1);
    break;
  case MB_ETF_STRING:
    if (avail < 3) return BAD;
    need = 3 + (uint64_t)mb_be16(p + 1);
    break;
  case MB_ETF_ATOM: case MB_ETF_SMALL_ATOM: case MB_ETF_ATOM_UTF8: case MB_ETF_SMALL_ATOM_UTF8:
    return atom_at(p, end, &s, &n, next);
  case MB_ETF_NEW_PID: case MB_ETF_PID: case MB_ETF_NEWER_REF: case MB_ETF_NEW_REF:
  case MB_ETF_PORT: case MB_ETF_NEW_PORT: case MB_ETF_V4_PORT:
    return ident_at(p, end, &id, next);
  case MB_ETF_SMALL_TUPLE:
    if (avail < 2) return BAD;
    need = 2;
    *kids = p[1];
    *box = 1;
    break;
  case MB_ETF_LARGE_TUPLE: case MB_ETF_LIST: case MB_ETF_MAP:
    if (avail < 5) return BAD;
    need = 5;
    *kids = mb_be32(p + 1);
    if (p[0] == MB_ETF_LIST) *kids += 1; /* the tail */
    if (p[0] == MB_ETF_MAP) *kids *= 2;
    *box = 1;
    break;
  default: return BAD;
  }
  if (need > avail || *kids > avail - need) return BAD;
  *next = p + need;
  return 0;
}

/* Walks one whole term at p without recursion; containers nest at most max_depth
 * deep (a scalar alone is depth 0, [[x]] is 2). rem[d] counts the terms still
 * due in the container open at depth d; rem[0] is the top-level term. */
static int walk(const uint8_t *p, const uint8_t *end, int max_depth, const uint8_t **out)
{
  uint64_t rem[MB_TERM_MAX_DEPTH + 1], kids;
  int depth = 0, box, r;
  if (max_depth > MB_TERM_MAX_DEPTH) max_depth = MB_TERM_MAX_DEPTH;
  rem[0] = 1;
  for (;;) {
    while (rem[depth] == 0) {
      if (depth == 0) { *out = p; return 0; }
      depth--;
    }
    rem[depth]--;
    if (p >= end) return BAD;
    if ((r = term_head(p, end, &p, &kids, &box))) return r;
    if (box) {
      if (depth >= max_depth) return MB_EDEPTH;
      if (kids) rem[++depth] = kids;
    }
  }
}

int mb_term_validate(const uint8_t *data, size_t len, int max_depth)
{
  const uint8_t *end = data + len, *q;
  int r;
  if (!data || len < 2 || data[0] != MB_ETF_VERSION) return BAD;
  if ((r = walk(data + 1, end, max_depth, &q))) return r;
  return q == end ? 0 : BAD;
}

/* ---------------------------------------------------------------- decoder */

int mb_dec_init(mb_dec_t *d, mb_nodes_t *nodes, const uint8_t *data, size_t len)
{
  d->nodes = nodes;
  d->p = d->end = data;
  if (!data || len < 1 || data[0] != MB_ETF_VERSION) return BAD;
  d->p = data + 1;
  d->end = data + len;
  return 0;
}

int mb_dec_type(const mb_dec_t *d)
{
  if (d->p >= d->end) return BAD;
  switch (d->p[0]) {
  case MB_ETF_SMALL_INT: case MB_ETF_INT: case MB_ETF_SMALL_BIG: case MB_ETF_LARGE_BIG:
    return MB_T_INT;
  case MB_ETF_NEW_FLOAT: return MB_T_FLOAT;
  case MB_ETF_ATOM: case MB_ETF_SMALL_ATOM: case MB_ETF_ATOM_UTF8: case MB_ETF_SMALL_ATOM_UTF8:
    return MB_T_ATOM;
  case MB_ETF_BINARY: return MB_T_BINARY;
  case MB_ETF_SMALL_TUPLE: case MB_ETF_LARGE_TUPLE: return MB_T_TUPLE;
  case MB_ETF_LIST: return MB_T_LIST;
  case MB_ETF_NIL: return MB_T_NIL;
  case MB_ETF_STRING: return MB_T_STRING;
  case MB_ETF_MAP: return MB_T_MAP;
  case MB_ETF_NEW_PID: case MB_ETF_PID: return MB_T_PID;
  case MB_ETF_NEWER_REF: case MB_ETF_NEW_REF: return MB_T_REF;
  case MB_ETF_PORT: case MB_ETF_NEW_PORT: case MB_ETF_V4_PORT: return MB_T_PORT;
  default: return BAD;
  }
}

int mb_dec_atom(mb_dec_t *d, const char **s, size_t *len)
{
  const uint8_t *q;
  if (d->p >= d->end || atom_at(d->p, d->end, s, len, &q)) return BAD;
  d->p = q;
  return 0;
}

int mb_dec_int(mb_dec_t *d, int64_t *v)
{
  const uint8_t *p = d->p, *dg;
  size_t avail = (size_t)(d->end - p), nd, hl, i;
  uint64_t mag = 0;
  if (!avail) return BAD;
  switch (p[0]) {
  case MB_ETF_SMALL_INT:
    if (avail < 2) return BAD;
    *v = p[1];
    d->p += 2;
    return 0;
  case MB_ETF_INT:
    if (avail < 5) return BAD;
    *v = (int32_t)mb_be32(p + 1);
    d->p += 5;
    return 0;
  case MB_ETF_SMALL_BIG:
    if (avail < 3) return BAD;
    hl = 3;
    nd = p[1];
    break;
  case MB_ETF_LARGE_BIG:
    if (avail < 6) return BAD;
    hl = 6;
    nd = mb_be32(p + 1);
    break;
  default: return BAD;
  }
  if (avail - hl < nd || p[hl - 1] > 1) return BAD;
  dg = p + hl; /* little-endian magnitude */
  for (i = nd; i-- > 0;) {
    if (i >= 8) {
      if (dg[i]) return MB_ERANGE;
    } else {
      mag = mag << 8 | dg[i];
    }
  }
  if (p[hl - 1]) {
    if (mag > (uint64_t)INT64_MAX + 1) return MB_ERANGE;
    *v = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
  } else {
    if (mag > (uint64_t)INT64_MAX) return MB_ERANGE;
    *v = (int64_t)mag;
  }
  d->p = dg + nd;
  return 0;
}

int mb_dec_float(mb_dec_t *d, double *v)
{
  uint64_t u;
  if (d->end - d->p < 9 || d->p[0] != MB_ETF_NEW_FLOAT) return BAD;
  u = (uint64_t)mb_be32(d->p + 1) << 32 | mb_be32(d->p + 5);
  memcpy(v, &u, 8);
  d->p += 9;
  return 0;
}

int mb_dec_binary(mb_dec_t *d, const uint8_t **p, size_t *len)
{
  size_t n;
  if (d->end - d->p < 5 || d->p[0] != MB_ETF_BINARY) return BAD;
  n = mb_be32(d->p + 1);
  if ((size_t)(d->end - d->p) - 5 < n) return BAD;
  *p = d->p + 5;
  *len = n;
  d->p += 5 + n;
  return 0;
}

int mb_dec_string(mb_dec_t *d, const uint8_t **p, size_t *len)
{
  size_t n;
  if (d->end - d->p < 3 || d->p[0] != MB_ETF_STRING) return BAD;
  n = mb_be16(d->p + 1);
  if ((size_t)(d->end - d->p) - 3 < n) return BAD;
  *p = d->p + 3;
  *len = n;
  d->p += 3 + n;
  return 0;
}

/* A container header with tag in {t1, t2}: its child count, checked against the
 * bytes left. */
static int dec_box(mb_dec_t *d, uint8_t t1, uint8_t t2, uint64_t *kids)
{
  const uint8_t *q;
  int box;
  if (d->p >= d->end || (d->p[0] != t1 && d->p[0] != t2)) return BAD;
  if (term_head(d->p, d->end, &q, kids, &box)) return BAD;
  d->p = q;
  return 0;
}

int mb_dec_tuple(mb_dec_t *d, uint32_t *arity)
{
  uint64_t k;
  int r = dec_box(d, MB_ETF_SMALL_TUPLE, MB_ETF_LARGE_TUPLE, &k);
  if (!r) *arity = (uint32_t)k;
  return r;
}

int mb_dec_list(mb_dec_t *d, uint32_t *n)
{
  uint64_t k;
  int r = dec_box(d, MB_ETF_LIST, MB_ETF_LIST, &k);
  if (!r) *n = (uint32_t)(k - 1);
  return r;
}

int mb_dec_map(mb_dec_t *d, uint32_t *pairs)
{
  uint64_t k;
  int r = dec_box(d, MB_ETF_MAP, MB_ETF_MAP, &k);
  if (!r) *pairs = (uint32_t)(k / 2);
  return r;
}

int mb_dec_nil(mb_dec_t *d)
{
  if (d->p >= d->end || d->p[0] != MB_ETF_NIL) return BAD;
  d->p++;
  return 0;
}

/* The pid or reference at the cursor, its node looked up (added) in the table. */
static int dec_ident(mb_dec_t *d, uint8_t t1, uint8_t t2, ident_t *id, int *node)
{
  const uint8_t *q;
  size_t i;
  if (d->p >= d->end || (d->p[0] != t1 && d->p[0] != t2)) return BAD;
  if (ident_at(d->p, d->end, id, &q)) return BAD;
  for (i = 3; i < id->nw; i++) /* only three id words fit mb_ref_t */
    if (id->w[i]) return BAD;
  *node = mb_nodes_index(d->nodes, id->node, id->nlen, id->creation);
  if (*node < 0) return *node == MB_EINVAL ? BAD : *node;
  d->p = q;
  return 0;
}

int mb_dec_pid(mb_dec_t *d, mb_pid_t *pid)
{
  ident_t id;
  int node, r = dec_ident(d, MB_ETF_NEW_PID, MB_ETF_PID, &id, &node);
  if (!r) *pid = mb_pid_make((uint32_t)node, id.w[0], id.w[1]);
  return r;
}

int mb_dec_port(mb_dec_t *d, uint64_t *id)
{
  ident_t ident;
  int node, r;
  uint8_t t = d->p < d->end ? d->p[0] : 0;
  if (t != MB_ETF_PORT && t != MB_ETF_NEW_PORT && t != MB_ETF_V4_PORT) return BAD;
  r = dec_ident(d, t, t, &ident, &node);
  if (r) return r;
  uint64_t num = t == MB_ETF_V4_PORT ? (uint64_t)ident.w[0] << 32 | ident.w[1] : ident.w[0];
  *id = (uint64_t)node << 56 | num;
  return 0;
}

/* Only three id words fit mb_ref_t: more must be zero (else MB_EBADTERM). */
int mb_dec_ref(mb_dec_t *d, mb_ref_t *ref)
{
  ident_t id;
  size_t i;
  int node, r = dec_ident(d, MB_ETF_NEWER_REF, MB_ETF_NEW_REF, &id, &node);
  if (r) return r;
  ref->node = (uint32_t)node;
  for (i = 0; i < 3; i++) ref->id[i] = i < id.nw ? id.w[i] : 0;
  return 0;
}

int mb_dec_skip(mb_dec_t *d)
{
  const uint8_t *q;
  int r = walk(d->p, d->end, MB_TERM_MAX_DEPTH, &q);
  if (!r) d->p = q;
  return r;
}

int mb_term_is_atom(const uint8_t *term, size_t len, const char *name)
{
  mb_dec_t d;
  const char *s;
  size_t n;
  if (!name || mb_dec_init(&d, NULL, term, len) || mb_dec_atom(&d, &s, &n)) return 0;
  return d.p == d.end && n == strlen(name) && !memcmp(s, name, n);
}
