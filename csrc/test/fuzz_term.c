/* fuzz_term.c: libFuzzer target for the ETF codec. A term mb_term_validate accepts
 * must decode through the cursor API (except values no C type holds: integers past
 * int64, refs with non-zero words past the third, nodes the table cannot take), and
 * its re-encoding must validate and decode the same way. */
#include <stdlib.h>
#include <string.h>

#include "../core/term.h"

#define ASSERT(c) do { if (!(c)) abort(); } while (0)

/* 1 when the ref at d has more than three id words (mb_ref_t holds three). */
static int wide_ref(const mb_dec_t *d)
{
  return d->end - d->p >= 3 && (d->p[0] == 90 || d->p[0] == 114) && mb_be16(d->p + 1) > 3;
}

/* Copies the term at d into e; returns 0, or 1 if a value did not fit (skipped). */
static int copy(mb_dec_t *d, mb_enc_t *e)
{
  const char *s;
  const uint8_t *p;
  size_t n, i;
  int64_t v;
  double f;
  uint32_t k;
  mb_pid_t pid;
  mb_ref_t ref;
  uint64_t port;
  int r, t = mb_dec_type(d), odd = 0;
  ASSERT(t > 0);
  switch (t) {
  case MB_T_ATOM: ASSERT(!mb_dec_atom(d, &s, &n)); mb_enc_atom(e, s, n); break;
  case MB_T_INT:
    r = mb_dec_int(d, &v);
    if (r == MB_ERANGE) { ASSERT(!mb_dec_skip(d)); return 1; }
    ASSERT(!r);
    mb_enc_int(e, v);
    break;
  case MB_T_FLOAT: ASSERT(!mb_dec_float(d, &f)); mb_enc_float(e, f); break;
  case MB_T_BINARY: ASSERT(!mb_dec_binary(d, &p, &n)); mb_enc_binary(e, p, n); break;
  case MB_T_NIL: ASSERT(!mb_dec_nil(d)); mb_enc_nil(e); break;
  case MB_T_STRING:
    ASSERT(!mb_dec_string(d, &p, &n));
    mb_enc_binary(e, p, n);
    break;
  case MB_T_PID:
    r = mb_dec_pid(d, &pid);
    if (r == MB_ELIMIT) { ASSERT(!mb_dec_skip(d)); return 1; }
    ASSERT(!r);
    mb_enc_pid(e, pid);
    break;
  case MB_T_REF:
    r = mb_dec_ref(d, &ref);
    if (r == MB_ELIMIT || (r == MB_EBADTERM && wide_ref(d))) { ASSERT(!mb_dec_skip(d)); return 1; }
    ASSERT(!r);
    mb_enc_ref(e, ref);
    break;
  case MB_T_PORT: /* re-encoded in the newest form: not byte-for-byte, so odd */
    if (mb_dec_port(d, &port)) { ASSERT(!mb_dec_skip(d)); return 1; }
    mb_enc_port(e, port);
    odd = 1;
    break;
  case MB_T_TUPLE:
    ASSERT(!mb_dec_tuple(d, &k));
    mb_enc_tuple(e, k);
    for (i = 0; i < k; i++) odd |= copy(d, e);
    break;
  case MB_T_LIST:
    ASSERT(!mb_dec_list(d, &k));
    if (k) mb_enc_list(e, k); /* a 0-element LIST_EXT is just its tail */
    for (i = 0; i <= k; i++) odd |= copy(d, e);
    break;
  case MB_T_MAP:
    ASSERT(!mb_dec_map(d, &k));
    mb_enc_map(e, k);
    for (i = 0; i < 2 * (size_t)k; i++) odd |= copy(d, e);
    break;
  default: ASSERT(0);
  }
  return odd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static mb_nodes_t *nodes;
  mb_dec_t d, d2;
  mb_enc_t e, e2;
  uint8_t *out, *out2;
  size_t len, len2, i;
  int odd, r;
  const uint8_t *q;
  if (!nodes) nodes = mb_nodes_new("fuzz@host", 1);
  r = mb_term_validate(data, size, MB_TERM_MAX_DEPTH);
  if (size && data[0] == 131) { /* skip agrees with validate on the first term */
    mb_dec_init(&d, NULL, data, size);
    q = d.p;
    if (mb_dec_skip(&d) == 0) ASSERT(r || d.p == d.end);
    else ASSERT(r && d.p == q);
  }
  if (r) return 0;
  ASSERT(!mb_dec_init(&d, size & 1 ? nodes : NULL, data, size));
  ASSERT(!mb_enc_init(&e, d.nodes, size & 2 ? 8 : 0));
  odd = copy(&d, &e);
  ASSERT(d.p == d.end);
  if (odd) { mb_enc_discard(&e); return 0; }
  out = mb_enc_finish(&e, &len);
  ASSERT(out);
  ASSERT(!mb_term_validate(out + (size & 2 ? 8 : 0), len - (size & 2 ? 8 : 0), MB_TERM_MAX_DEPTH));
  /* the re-encoding is canonical: copying it again gives the same bytes */
  ASSERT(!mb_dec_init(&d2, d.nodes, out + (size & 2 ? 8 : 0), len - (size & 2 ? 8 : 0)));
  ASSERT(!mb_enc_init(&e2, d.nodes, 0));
  ASSERT(!copy(&d2, &e2));
  out2 = mb_enc_finish(&e2, &len2);
  ASSERT(out2 && len2 == len - (size & 2 ? 8 : 0));
  for (i = 0; i < len2; i++) ASSERT(out2[i] == out[i + (size & 2 ? 8 : 0)]);
  free(out);
  free(out2);
  return 0;
}
