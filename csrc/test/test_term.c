/* test_term.c: the ETF codec (csrc/core/term.c) and identifiers (csrc/core/ids.c).
 * Expected bytes are written out by hand from the ETF specification. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../core/term.h"
#include "mb_test.h"

#define B(...) (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})
#define NONODE_ATOM 100, 0, 13, 'n', 'o', 'n', 'o', 'd', 'e', '@', 'n', 'o', 'h', 'o', 's', 't'
#define NONODE_SATOM 119, 13, 'n', 'o', 'n', 'o', 'd', 'e', '@', 'n', 'o', 'h', 'o', 's', 't'

/* 1 when e's finished term (no prefix) equals want[0..n); frees it. */
static int enc_is(mb_enc_t *e, const uint8_t *want, size_t n)
{
  size_t len;
  uint8_t *b = mb_enc_finish(e, &len);
  int ok = b && len == n && !memcmp(b, want, n);
  if (!ok && b) {
    size_t i;
    printf("  got:");
    for (i = 0; i < len; i++) printf(" %u", b[i]);
    printf("\n");
  }
  free(b);
  return ok;
}

/* Re-encodes the term at d into e through the cursor API. STRING_EXT becomes a list. */
static int copy_term(mb_dec_t *d, mb_enc_t *e)
{
  const char *s;
  const uint8_t *p;
  size_t n, i;
  int64_t v;
  double f;
  uint32_t k;
  mb_pid_t pid;
  mb_ref_t ref;
  int r;
  switch (mb_dec_type(d)) {
  case MB_T_ATOM: return (r = mb_dec_atom(d, &s, &n)) ? r : mb_enc_atom(e, s, n);
  case MB_T_INT: return (r = mb_dec_int(d, &v)) ? r : mb_enc_int(e, v);
  case MB_T_FLOAT: return (r = mb_dec_float(d, &f)) ? r : mb_enc_float(e, f);
  case MB_T_BINARY: return (r = mb_dec_binary(d, &p, &n)) ? r : mb_enc_binary(e, p, n);
  case MB_T_NIL: return (r = mb_dec_nil(d)) ? r : mb_enc_nil(e);
  case MB_T_PID: return (r = mb_dec_pid(d, &pid)) ? r : mb_enc_pid(e, pid);
  case MB_T_REF: return (r = mb_dec_ref(d, &ref)) ? r : mb_enc_ref(e, ref);
  case MB_T_STRING:
    if ((r = mb_dec_string(d, &p, &n))) return r;
    if (n && mb_enc_list(e, (uint32_t)n)) return e->err;
    for (i = 0; i < n; i++) mb_enc_int(e, p[i]);
    return mb_enc_nil(e);
  case MB_T_TUPLE:
    if ((r = mb_dec_tuple(d, &k)) || (r = mb_enc_tuple(e, k))) return r;
    for (i = 0; i < k; i++)
      if ((r = copy_term(d, e))) return r;
    return 0;
  case MB_T_LIST:
    if ((r = mb_dec_list(d, &k)) || (r = mb_enc_list(e, k))) return r;
    for (i = 0; i <= k; i++) /* elements and tail */
      if ((r = copy_term(d, e))) return r;
    return 0;
  case MB_T_MAP:
    if ((r = mb_dec_map(d, &k)) || (r = mb_enc_map(e, k))) return r;
    for (i = 0; i < 2 * (size_t)k; i++)
      if ((r = copy_term(d, e))) return r;
    return 0;
  default: return MB_EBADTERM;
  }
}

/* Decodes data with the cursor API and re-encodes it; 1 if the bytes come back. */
static int roundtrips(mb_nodes_t *nodes, const uint8_t *data, size_t len)
{
  mb_dec_t d;
  mb_enc_t e;
  if (mb_term_validate(data, len, MB_TERM_MAX_DEPTH)) return 0;
  if (mb_dec_init(&d, nodes, data, len) || mb_enc_init(&e, nodes, 0)) return 0;
  if (copy_term(&d, &e) || d.p != d.end) { mb_enc_discard(&e); return 0; }
  return enc_is(&e, data, len);
}

static int64_t dec_int(const uint8_t *data, size_t len, int *err)
{
  mb_dec_t d;
  int64_t v = 0;
  *err = mb_dec_init(&d, NULL, data, len);
  if (!*err) *err = mb_dec_int(&d, &v);
  return v;
}

MB_TEST(ids)
{
  mb_pid_t p = mb_pid_make(3, 0xFFFFFFFFu, 0xABCDEF);
  mb_ref_t a = {1, {2, 3, 4}}, b = a;
  MB_CHECK_EQ_INT(mb_pid_node(p), 3);
  MB_CHECK_EQ_INT(mb_pid_index(p), 0xFFFFFFFFu);
  MB_CHECK_EQ_INT(mb_pid_serial(p), 0xABCDEF);
  MB_CHECK_EQ_INT(mb_pid_serial(mb_pid_make(0, 1, 0x1000001)), 1);
  MB_CHECK(mb_pid_make(0, 0, 0) == 0);
  MB_CHECK(mb_ref_equal(a, b));
  b.id[2] = 5;
  MB_CHECK(!mb_ref_equal(a, b));
  MB_CHECK_EQ_STR(mb_strerror(MB_EBADTERM), "malformed, truncated or unsupported term");
  MB_CHECK_EQ_STR(mb_strerror(-999), "unknown error");
}

MB_TEST(ints_exact_bytes)
{
  static const struct { int64_t v; uint8_t b[12]; size_t n; } cases[] = {
    {0, {131, 97, 0}, 3},
    {255, {131, 97, 255}, 3},
    {256, {131, 98, 0, 0, 1, 0}, 6},
    {-1, {131, 98, 255, 255, 255, 255}, 6},
    {INT32_MAX, {131, 98, 127, 255, 255, 255}, 6},
    {INT32_MIN, {131, 98, 128, 0, 0, 0}, 6},
    {(int64_t)INT32_MAX + 1, {131, 110, 4, 0, 0, 0, 0, 128}, 8},
    {(int64_t)INT32_MIN - 1, {131, 110, 4, 1, 1, 0, 0, 128}, 8},
    {(int64_t)1 << 32, {131, 110, 5, 0, 0, 0, 0, 0, 1}, 9},
    {INT64_MAX, {131, 110, 8, 0, 255, 255, 255, 255, 255, 255, 255, 127}, 12},
    {INT64_MIN, {131, 110, 8, 1, 0, 0, 0, 0, 0, 0, 0, 128}, 12},
  };
  size_t i;
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    mb_enc_t e;
    int err;
    MB_CHECK_EQ_INT(mb_enc_init(&e, NULL, 0), 0);
    MB_CHECK_EQ_INT(mb_enc_int(&e, cases[i].v), 0);
    MB_CHECK(enc_is(&e, cases[i].b, cases[i].n));
    MB_CHECK(dec_int(cases[i].b, cases[i].n, &err) == cases[i].v);
    MB_CHECK_EQ_INT(err, 0);
    MB_CHECK_EQ_INT(mb_term_validate(cases[i].b, cases[i].n, 0), 0);
  }
}

MB_TEST(bigs_decode)
{
  int err;
  mb_dec_t d;
  int64_t v;
  /* 2^64: valid, skippable, out of range */
  static const uint8_t two64[] = {131, 110, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  MB_CHECK_EQ_INT(mb_term_validate(two64, sizeof two64, 1), 0);
  mb_dec_init(&d, NULL, two64, sizeof two64);
  MB_CHECK_EQ_INT(mb_dec_int(&d, &v), MB_ERANGE);
  MB_CHECK(d.p == two64 + 1); /* unmoved */
  MB_CHECK_EQ_INT(mb_dec_skip(&d), 0);
  MB_CHECK(d.p == d.end);
  /* 2^63 positive does not fit; negative is INT64_MIN */
  dec_int(B(131, 110, 8, 0, 0, 0, 0, 0, 0, 0, 0, 128), &err);
  MB_CHECK_EQ_INT(err, MB_ERANGE);
  MB_CHECK(dec_int(B(131, 110, 8, 1, 0, 0, 0, 0, 0, 0, 0, 128), &err) == INT64_MIN);
  MB_CHECK_EQ_INT(err, 0);
  /* non-canonical forms Erlang may not make but the spec allows */
  MB_CHECK_EQ_INT(dec_int(B(131, 110, 9, 1, 7, 0, 0, 0, 0, 0, 0, 0, 0), &err), -7);
  MB_CHECK_EQ_INT(err, 0);
  MB_CHECK_EQ_INT(dec_int(B(131, 111, 0, 0, 0, 1, 0, 5), &err), 5);
  MB_CHECK_EQ_INT(err, 0);
  MB_CHECK_EQ_INT(dec_int(B(131, 110, 0, 1), &err), 0);
  MB_CHECK_EQ_INT(err, 0);
  /* a 300-byte LARGE_BIG validates and skips, but does not decode */
  {
    uint8_t big[1 + 6 + 300] = {131, 111, 0, 0, 1, 44, 1};
    big[sizeof big - 1] = 1;
    MB_CHECK_EQ_INT(mb_term_validate(big, sizeof big, 0), 0);
    dec_int(big, sizeof big, &err);
    MB_CHECK_EQ_INT(err, MB_ERANGE);
  }
  /* bad sign byte */
  MB_CHECK_EQ_INT(mb_term_validate(B(131, 110, 1, 2, 5), 0), MB_EBADTERM);
  dec_int(B(131, 110, 1, 2, 5), &err);
  MB_CHECK_EQ_INT(err, MB_EBADTERM);
}

MB_TEST(floats)
{
  double vals[] = {0.0, -0.0, 1.5, -2.25e300, 5e-324, INFINITY, -INFINITY, NAN};
  size_t i;
  mb_enc_t e;
  mb_enc_init(&e, NULL, 0);
  mb_enc_float(&e, 1.5);
  MB_CHECK(enc_is(&e, B(131, 70, 63, 248, 0, 0, 0, 0, 0, 0)));
  for (i = 0; i < sizeof vals / sizeof vals[0]; i++) {
    size_t len;
    uint8_t *b;
    mb_dec_t d;
    double out = 42;
    mb_enc_init(&e, NULL, 0);
    mb_enc_float(&e, vals[i]);
    b = mb_enc_finish(&e, &len);
    MB_REQUIRE(b);
    MB_CHECK_EQ_INT(mb_term_validate(b, len, 0), 0);
    MB_CHECK_EQ_INT(mb_dec_init(&d, NULL, b, len), 0);
    MB_CHECK_EQ_INT(mb_dec_type(&d), MB_T_FLOAT);
    MB_CHECK_EQ_INT(mb_dec_float(&d, &out), 0);
    MB_CHECK(isnan(vals[i]) ? isnan(out) : out == vals[i]);
    MB_CHECK(signbit(out) == signbit(vals[i]));
    free(b);
  }
}

MB_TEST(binaries)
{
  mb_enc_t e;
  uint8_t big[1000], *b;
  size_t len, n;
  const uint8_t *p;
  mb_dec_t d;
  mb_enc_init(&e, NULL, 0);
  mb_enc_binary(&e, "", 0);
  MB_CHECK(enc_is(&e, B(131, 109, 0, 0, 0, 0)));
  mb_enc_init(&e, NULL, 0);
  mb_enc_binary(&e, "abc", 3);
  MB_CHECK(enc_is(&e, B(131, 109, 0, 0, 0, 3, 'a', 'b', 'c')));
  memset(big, 7, sizeof big);
  mb_enc_init(&e, NULL, 0);
  mb_enc_binary(&e, big, sizeof big);
  b = mb_enc_finish(&e, &len);
  MB_REQUIRE(b);
  MB_CHECK_EQ_INT(len, 1 + 5 + sizeof big);
  mb_dec_init(&d, NULL, b, len);
  MB_CHECK_EQ_INT(mb_dec_binary(&d, &p, &n), 0);
  MB_CHECK(n == sizeof big && !memcmp(p, big, n));
  free(b);
}

MB_TEST(atoms)
{
  char s[1100];
  mb_enc_t e;
  size_t len;
  uint8_t *b;
  const char *t;
  mb_dec_t d;
  int i;
  mb_enc_init(&e, NULL, 0);
  mb_enc_atom(&e, "ok", 2);
  MB_CHECK(enc_is(&e, B(131, 119, 2, 'o', 'k')));
  mb_enc_init(&e, NULL, 0);
  mb_enc_atom(&e, "", 0);
  MB_CHECK(enc_is(&e, B(131, 119, 0)));
  /* 255 characters fit, 256 do not */
  memset(s, 'a', 256);
  mb_enc_init(&e, NULL, 0);
  MB_CHECK_EQ_INT(mb_enc_atom(&e, s, 255), 0);
  b = mb_enc_finish(&e, &len);
  MB_REQUIRE(b);
  MB_CHECK(len == 258 && b[1] == 119 && b[2] == 255);
  MB_CHECK(roundtrips(NULL, b, len));
  free(b);
  mb_enc_init(&e, NULL, 0);
  MB_CHECK_EQ_INT(mb_enc_atom(&e, s, 256), MB_EINVAL);
  MB_CHECK_EQ_INT(mb_enc_int(&e, 1), MB_EINVAL); /* sticky */
  MB_CHECK(mb_enc_finish(&e, &len) == NULL);
  /* 200 two-byte characters: 400 bytes, so ATOM_UTF8_EXT */
  for (i = 0; i < 256; i++) { s[2 * i] = (char)0xC3; s[2 * i + 1] = (char)0xA9; }
  mb_enc_init(&e, NULL, 0);
  MB_CHECK_EQ_INT(mb_enc_atom(&e, s, 400), 0);
  b = mb_enc_finish(&e, &len);
  MB_REQUIRE(b);
  MB_CHECK(len == 404 && b[1] == 118 && b[2] == 1 && b[3] == 144);
  MB_CHECK(roundtrips(NULL, b, len));
  mb_dec_init(&d, NULL, b, len);
  MB_CHECK(mb_dec_atom(&d, &t, &len) == 0 && len == 400 && !memcmp(t, s, 400));
  free(b);
  mb_enc_init(&e, NULL, 0);
  MB_CHECK_EQ_INT(mb_enc_atom(&e, s, 512), MB_EINVAL); /* 256 characters */
  mb_enc_discard(&e);
  mb_enc_init(&e, NULL, 0);
  MB_CHECK_EQ_INT(mb_enc_atom(&e, "\xC3", 1), MB_EINVAL); /* not UTF-8 */
  mb_enc_discard(&e);
  mb_enc_init(&e, NULL, 0);
  MB_CHECK_EQ_INT(mb_enc_atom(&e, "\xED\xA0\x80", 3), MB_EINVAL); /* surrogate */
  mb_enc_discard(&e);
  mb_enc_init(&e, NULL, 0);
  MB_CHECK_EQ_INT(mb_enc_atom(&e, "\xC0\xAF", 2), MB_EINVAL); /* overlong */
  mb_enc_discard(&e);
}

MB_TEST(atoms_erlang_forms)
{
  static const struct { uint8_t b[8]; size_t n; } ok[] = {
    {{131, 100, 0, 3, 'f', 'o', 'o'}, 7}, /* ATOM_EXT (OTP 25 term_to_binary) */
    {{131, 115, 3, 'f', 'o', 'o'}, 6},    /* SMALL_ATOM_EXT */
    {{131, 118, 0, 3, 'f', 'o', 'o'}, 7}, /* ATOM_UTF8_EXT */
    {{131, 119, 3, 'f', 'o', 'o'}, 6},    /* SMALL_ATOM_UTF8_EXT (OTP 26) */
  };
  size_t i, n;
  const char *s;
  for (i = 0; i < 4; i++) {
    mb_dec_t d;
    MB_CHECK_EQ_INT(mb_term_validate(ok[i].b, ok[i].n, 0), 0);
    mb_dec_init(&d, NULL, ok[i].b, ok[i].n);
    MB_CHECK_EQ_INT(mb_dec_type(&d), MB_T_ATOM);
    MB_CHECK(mb_dec_atom(&d, &s, &n) == 0 && n == 3 && !memcmp(s, "foo", 3));
    MB_CHECK(mb_term_is_atom(ok[i].b, ok[i].n, "foo"));
    MB_CHECK(!mb_term_is_atom(ok[i].b, ok[i].n, "fo"));
  }
  /* Latin-1 atoms must be ASCII (their text is handed out as UTF-8) */
  MB_CHECK_EQ_INT(mb_term_validate(B(131, 100, 0, 1, 0xE9), 0), MB_EBADTERM);
  MB_CHECK_EQ_INT(mb_term_validate(B(131, 119, 1, 0xE9), 0), MB_EBADTERM);
  MB_CHECK(!mb_term_is_atom(B(131, 119, 1, 'a', 97, 1), "a")); /* trailing */
  MB_CHECK(mb_term_is_atom(B(131, 119, 6, 'n', 'o', 'r', 'm', 'a', 'l'), "normal"));
}

MB_TEST(containers)
{
  mb_enc_t e;
  size_t len, i;
  uint8_t *b;
  mb_enc_init(&e, NULL, 0);
  mb_enc_tuple(&e, 0);
  MB_CHECK(enc_is(&e, B(131, 104, 0)));
  mb_enc_init(&e, NULL, 0);
  mb_enc_list(&e, 2);
  mb_enc_int(&e, 1);
  mb_enc_int(&e, 2);
  mb_enc_nil(&e);
  MB_CHECK(enc_is(&e, B(131, 108, 0, 0, 0, 2, 97, 1, 97, 2, 106)));
  mb_enc_init(&e, NULL, 0);
  mb_enc_map(&e, 1);
  mb_enc_atom(&e, "a", 1);
  mb_enc_int(&e, 1);
  MB_CHECK(enc_is(&e, B(131, 116, 0, 0, 0, 1, 119, 1, 'a', 97, 1)));
  mb_enc_init(&e, NULL, 0);
  MB_CHECK_EQ_INT(mb_enc_list(&e, 0), MB_EINVAL);
  mb_enc_discard(&e);
  /* a 300-tuple is LARGE_TUPLE_EXT */
  mb_enc_init(&e, NULL, 0);
  mb_enc_tuple(&e, 300);
  for (i = 0; i < 300; i++) mb_enc_int(&e, (int64_t)i);
  b = mb_enc_finish(&e, &len);
  MB_REQUIRE(b);
  MB_CHECK(b[1] == 105 && mb_be32(b + 2) == 300);
  MB_CHECK(roundtrips(NULL, b, len));
  free(b);
  /* #{list => [{1, <<"x">>}, #{}], tup => {ok, [nil | improper]}, neg => -5.5} */
  mb_enc_init(&e, NULL, 0);
  mb_enc_map(&e, 3);
  mb_enc_atom(&e, "list", 4);
  mb_enc_list(&e, 2);
  mb_enc_tuple(&e, 2);
  mb_enc_int(&e, 1);
  mb_enc_binary(&e, "x", 1);
  mb_enc_map(&e, 0);
  mb_enc_nil(&e);
  mb_enc_atom(&e, "tup", 3);
  mb_enc_tuple(&e, 2);
  mb_enc_atom(&e, "ok", 2);
  mb_enc_list(&e, 1);
  mb_enc_atom(&e, "nil", 3);
  mb_enc_atom(&e, "improper", 8);
  mb_enc_binary(&e, "neg", 3);
  mb_enc_float(&e, -5.5);
  b = mb_enc_finish(&e, &len);
  MB_REQUIRE(b);
  MB_CHECK(roundtrips(NULL, b, len));
  free(b);
}

MB_TEST(erlang_bytes)
{
  mb_dec_t d;
  const uint8_t *p;
  size_t n;
  uint32_t k;
  int64_t v;
  mb_pid_t pid;
  mb_ref_t ref;
  /* term_to_binary([1,2,3]) is STRING_EXT */
  static const uint8_t str[] = {131, 107, 0, 3, 1, 2, 3};
  MB_CHECK_EQ_INT(mb_term_validate(str, sizeof str, 0), 0);
  mb_dec_init(&d, NULL, str, sizeof str);
  MB_CHECK_EQ_INT(mb_dec_type(&d), MB_T_STRING);
  MB_CHECK(mb_dec_string(&d, &p, &n) == 0 && n == 3 && p[2] == 3 && d.p == d.end);
  /* term_to_binary({ok, <<"hi">>}) in OTP 25 */
  static const uint8_t tup[] = {131, 104, 2, 100, 0, 2, 'o', 'k', 109, 0, 0, 0, 2, 'h', 'i'};
  MB_CHECK_EQ_INT(mb_term_validate(tup, sizeof tup, 1), 0);
  MB_CHECK_EQ_INT(mb_term_validate(tup, sizeof tup, 0), MB_EDEPTH);
  mb_dec_init(&d, NULL, tup, sizeof tup);
  MB_CHECK(mb_dec_tuple(&d, &k) == 0 && k == 2);
  MB_CHECK(mb_term_is_atom(B(131, 100, 0, 2, 'o', 'k'), "ok"));
  MB_CHECK_EQ_INT(mb_dec_skip(&d), 0);
  MB_CHECK(mb_dec_binary(&d, &p, &n) == 0 && n == 2 && d.p == d.end);
  /* term_to_binary([a|b]): an improper list is well formed */
  static const uint8_t imp[] = {131, 108, 0, 0, 0, 1, 119, 1, 'a', 119, 1, 'b'};
  MB_CHECK_EQ_INT(mb_term_validate(imp, sizeof imp, 1), 0);
  MB_CHECK(roundtrips(NULL, imp, sizeof imp));
  /* a LIST_EXT of no elements is just its tail (Erlang accepts it) */
  mb_dec_init(&d, NULL, B(131, 108, 0, 0, 0, 0, 106));
  MB_CHECK(mb_dec_list(&d, &k) == 0 && k == 0 && mb_dec_nil(&d) == 0 && d.p == d.end);
  /* term_to_binary(<<>>), term_to_binary("") */
  MB_CHECK_EQ_INT(mb_term_validate(B(131, 109, 0, 0, 0, 0), 0), 0);
  MB_CHECK_EQ_INT(mb_term_validate(B(131, 106), 0), 0);
  /* term_to_binary(-300) */
  MB_CHECK_EQ_INT(dec_int(B(131, 98, 255, 255, 254, 212), &(int){0}), -300);
  /* term_to_binary(self()) on nonode@nohost, OTP 25: <0.80.0> */
  static const uint8_t pid25[] = {131, 88, NONODE_ATOM, 0, 0, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0};
  MB_CHECK_EQ_INT(mb_term_validate(pid25, sizeof pid25, 0), 0);
  mb_dec_init(&d, NULL, pid25, sizeof pid25);
  MB_CHECK_EQ_INT(mb_dec_type(&d), MB_T_PID);
  MB_CHECK_EQ_INT(mb_dec_pid(&d, &pid), 0);
  MB_CHECK(pid == mb_pid_make(0, 80, 0) && d.p == d.end);
  /* old PID_EXT: <0.38.2>, creation byte */
  static const uint8_t oldpid[] = {131, 103, NONODE_ATOM, 0, 0, 0, 38, 0, 0, 0, 2, 0};
  mb_dec_init(&d, NULL, oldpid, sizeof oldpid);
  MB_CHECK(mb_dec_pid(&d, &pid) == 0 && pid == mb_pid_make(0, 38, 2) && d.p == d.end);
  /* make_ref(): NEWER_REFERENCE_EXT, 3 words */
  static const uint8_t ref25[] = {131, 90, 0, 3, NONODE_ATOM, 0, 0, 0, 0,
                                  0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3};
  MB_CHECK_EQ_INT(mb_term_validate(ref25, sizeof ref25, 0), 0);
  mb_dec_init(&d, NULL, ref25, sizeof ref25);
  MB_CHECK_EQ_INT(mb_dec_type(&d), MB_T_REF);
  MB_CHECK(mb_dec_ref(&d, &ref) == 0 && ref.node == 0 && ref.id[0] == 1 && ref.id[2] == 3);
  /* NEW_REFERENCE_EXT: creation byte, 2 words (padded with zero) */
  static const uint8_t oldref[] = {131, 114, 0, 2, NONODE_SATOM, 0, 0, 0, 0, 9, 0, 0, 0, 8};
  mb_dec_init(&d, NULL, oldref, sizeof oldref);
  MB_CHECK(mb_dec_ref(&d, &ref) == 0 && ref.id[0] == 9 && ref.id[1] == 8 && ref.id[2] == 0);
  /* 5 words: fine if the last two are zero, else mb_ref_t cannot hold it */
  static const uint8_t ref5[] = {131, 90, 0, 5, NONODE_SATOM, 0, 0, 0, 0, 0, 0, 0, 1,
                                 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0};
  uint8_t ref5b[sizeof ref5];
  mb_dec_init(&d, NULL, ref5, sizeof ref5);
  MB_CHECK(mb_dec_ref(&d, &ref) == 0 && ref.id[2] == 3 && d.p == d.end);
  memcpy(ref5b, ref5, sizeof ref5);
  ref5b[sizeof ref5b - 1] = 1;
  MB_CHECK_EQ_INT(mb_term_validate(ref5b, sizeof ref5b, 0), 0);
  mb_dec_init(&d, NULL, ref5b, sizeof ref5b);
  MB_CHECK_EQ_INT(mb_dec_ref(&d, &ref), MB_EBADTERM);
  MB_CHECK(d.p == ref5b + 1);
  (void)v;
}

MB_TEST(pids_refs_nodes)
{
  mb_nodes_t *t = mb_nodes_new("a@h", 7), *t2 = mb_nodes_new("c@h", 1);
  mb_enc_t e;
  mb_dec_t d;
  uint8_t *b;
  size_t len;
  const char *name;
  uint32_t cr;
  mb_pid_t pid;
  mb_ref_t ref = {1, {10, 20, 30}}, ref2;
  char nm[16];
  size_t nlen;
  int i;
  MB_REQUIRE(t && t2);
  name = mb_nodes_name(t, 0, &len, &cr);
  MB_CHECK(name && len == 3 && !memcmp(name, "a@h", 3) && cr == 7);
  MB_CHECK_EQ_INT(mb_nodes_index(t, "a@h", 3, 7), 0);
  MB_CHECK_EQ_INT(mb_nodes_index(t, "b@h", 3, 3), 1);
  MB_CHECK_EQ_INT(mb_nodes_index(t, "b@h", 3, 3), 1);
  MB_CHECK_EQ_INT(mb_nodes_index(t, "b@h", 3, 4), 2); /* a restarted node is another */
  MB_CHECK(mb_nodes_name(t, 3, &len, &cr) == NULL);
  /* local pid: a@h, creation 7 */
  mb_enc_init(&e, t, 0);
  mb_enc_pid(&e, mb_pid_make(0, 5, 6));
  MB_CHECK(enc_is(&e, B(131, 88, 119, 3, 'a', '@', 'h', 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0, 7)));
  /* remote pid and ref round trip in the same table and across tables */
  mb_enc_init(&e, t, 0);
  mb_enc_tuple(&e, 2);
  mb_enc_pid(&e, mb_pid_make(1, 0xFFFFFFFFu, 0xFFFFFF));
  mb_enc_ref(&e, ref);
  b = mb_enc_finish(&e, &len);
  MB_REQUIRE(b);
  MB_CHECK(roundtrips(t, b, len));
  MB_CHECK(b[3] == 88 && b[5] == 3 && !memcmp(b + 6, "b@h", 3) && mb_be32(b + 17) == 3);
  mb_dec_init(&d, t2, b, len);
  mb_dec_tuple(&d, &(uint32_t){0});
  MB_CHECK_EQ_INT(mb_dec_pid(&d, &pid), 0);
  MB_CHECK(mb_pid_node(pid) == 1 && mb_pid_index(pid) == 0xFFFFFFFFu && mb_pid_serial(pid) == 0xFFFFFF);
  MB_CHECK(mb_dec_ref(&d, &ref2) == 0 && ref2.node == 1 && ref2.id[1] == 20);
  name = mb_nodes_name(t2, 1, &nlen, &cr);
  MB_CHECK(name && nlen == 3 && !memcmp(name, "b@h", 3) && cr == 3);
  /* NULL table: only nonode@nohost; remote pids cannot be encoded or decoded */
  mb_dec_init(&d, NULL, b, len);
  mb_dec_tuple(&d, &(uint32_t){0});
  MB_CHECK_EQ_INT(mb_dec_pid(&d, &pid), MB_ELIMIT);
  MB_CHECK(d.p == b + 3);
  free(b);
  mb_enc_init(&e, NULL, 0);
  MB_CHECK_EQ_INT(mb_enc_pid(&e, mb_pid_make(1, 1, 1)), MB_EINVAL);
  mb_enc_discard(&e);
  mb_enc_init(&e, t, 0);
  MB_CHECK_EQ_INT(mb_enc_ref(&e, (mb_ref_t){9, {1, 2, 3}}), MB_EINVAL); /* no node 9 */
  mb_enc_discard(&e);
  mb_enc_init(&e, NULL, 0);
  mb_enc_ref(&e, (mb_ref_t){0, {1, 2, 3}});
  MB_CHECK(enc_is(&e, B(131, 90, 0, 3, NONODE_SATOM, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3)));
  MB_CHECK(mb_nodes_name(NULL, 0, &len, &cr) && len == 13 && cr == 0);
  MB_CHECK(mb_nodes_name(NULL, 1, &len, &cr) == NULL);
  MB_CHECK_EQ_INT(mb_nodes_index(NULL, "nonode@nohost", 13, 0), 0);
  MB_CHECK_EQ_INT(mb_nodes_index(NULL, "x@y", 3, 0), MB_ELIMIT);
  /* a serial past 24 bits is not a pid we can hold */
  MB_CHECK_EQ_INT(mb_term_validate(B(131, 88, NONODE_SATOM, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0), 0),
                  MB_EBADTERM);
  /* 256 nodes at most */
  for (i = 3; i < 256; i++) {
    snprintf(nm, sizeof nm, "n%d@h", i);
    MB_CHECK_EQ_INT(mb_nodes_index(t, nm, strlen(nm), 0), i);
  }
  MB_CHECK_EQ_INT(mb_nodes_index(t, "z@h", 3, 0), MB_ELIMIT);
  MB_CHECK_EQ_INT(mb_nodes_index(t, "n100@h", 6, 0), 100);
  mb_nodes_free(t);
  mb_nodes_free(t2);
}

static mb_nodes_t *shared_nodes;
static int thread_idx[4][20];

static void *add_nodes(void *arg)
{
  int *out = arg, i;
  char nm[16];
  for (i = 0; i < 20; i++) {
    snprintf(nm, sizeof nm, "t%d@h", i);
    out[i] = mb_nodes_index(shared_nodes, nm, strlen(nm), 1);
  }
  return NULL;
}

MB_TEST(nodes_threads)
{
  pthread_t th[4];
  int i, j;
  shared_nodes = mb_nodes_new(NULL, 0);
  MB_REQUIRE(shared_nodes);
  for (i = 0; i < 4; i++) pthread_create(&th[i], NULL, add_nodes, thread_idx[i]);
  for (i = 0; i < 4; i++) pthread_join(th[i], NULL);
  for (j = 0; j < 20; j++) {
    MB_CHECK(thread_idx[0][j] > 0 && thread_idx[0][j] <= 20);
    for (i = 1; i < 4; i++) MB_CHECK_EQ_INT(thread_idx[i][j], thread_idx[0][j]);
  }
  MB_CHECK(mb_nodes_name(shared_nodes, 21, NULL, NULL) == NULL);
  mb_nodes_free(shared_nodes);
}

MB_TEST(encoder_buffer)
{
  mb_enc_t e;
  uint8_t *b, inner[] = {131, 104, 1, 119, 2, 'h', 'i'};
  size_t len;
  int i;
  MB_CHECK_EQ_INT(mb_enc_init(&e, NULL, 16), 0);
  MB_CHECK(e.len == 17 && e.cap == 16 + 64 && e.buf[16] == 131);
  mb_enc_list(&e, 100);
  for (i = 0; i < 100; i++) mb_enc_int(&e, 1000 + i); /* grows past the first block */
  mb_enc_nil(&e);
  b = mb_enc_finish(&e, &len);
  MB_REQUIRE(b);
  MB_CHECK_EQ_INT(len, 16 + 1 + 5 + 500 + 1);
  MB_CHECK(e.buf == NULL && e.len == 0);
  MB_CHECK_EQ_INT(mb_term_validate(b + 16, len - 16, 1), 0);
  free(b);
  /* embedding an encoded term */
  mb_enc_init(&e, NULL, 0);
  mb_enc_tuple(&e, 2);
  mb_enc_atom(&e, "EXIT", 4);
  MB_CHECK_EQ_INT(mb_enc_term(&e, inner, sizeof inner), 0);
  MB_CHECK(enc_is(&e, B(131, 104, 2, 119, 4, 'E', 'X', 'I', 'T', 104, 1, 119, 2, 'h', 'i')));
  mb_enc_init(&e, NULL, 0);
  MB_CHECK_EQ_INT(mb_enc_term(&e, inner, sizeof inner - 1), MB_EBADTERM);
  MB_CHECK_EQ_INT(mb_enc_nil(&e), MB_EBADTERM);
  MB_CHECK(mb_enc_finish(&e, &len) == NULL && len == 0);
  /* an encoder that was finished refuses to write until started again */
  MB_CHECK_EQ_INT(mb_enc_nil(&e), MB_EINVAL);
  mb_enc_discard(&e);
}

/* A term using every type the encoder makes, for truncation tests. */
static uint8_t *complex_term(size_t *len)
{
  mb_enc_t e;
  mb_enc_init(&e, NULL, 0);
  mb_enc_map(&e, 2);
  mb_enc_atom(&e, "k", 1);
  mb_enc_list(&e, 6);
  mb_enc_int(&e, 7);
  mb_enc_int(&e, -70000);
  mb_enc_int(&e, INT64_MIN);
  mb_enc_float(&e, 0.5);
  mb_enc_tuple(&e, 2);
  mb_enc_pid(&e, mb_pid_make(0, 3, 4));
  mb_enc_ref(&e, (mb_ref_t){0, {1, 2, 3}});
  mb_enc_binary(&e, "xyz", 3);
  mb_enc_nil(&e);
  mb_enc_binary(&e, "b", 1);
  mb_enc_map(&e, 0);
  return mb_enc_finish(&e, len);
}

MB_TEST(truncation)
{
  size_t len, k;
  uint8_t *full = complex_term(&len);
  MB_REQUIRE(full);
  MB_CHECK_EQ_INT(mb_term_validate(full, len, 3), 0);
  MB_CHECK(roundtrips(NULL, full, len));
  for (k = 0; k < len; k++) {
    /* an exact-size copy so ASan sees any read past the end */
    uint8_t *cut = malloc(k ? k : 1);
    mb_dec_t d;
    mb_enc_t e;
    memcpy(cut, full, k);
    MB_CHECK(mb_term_validate(cut, k, 3) != 0);
    if (k && !mb_dec_init(&d, NULL, cut, k)) {
      MB_CHECK(mb_dec_skip(&d) != 0);
      mb_dec_init(&d, NULL, cut, k);
      mb_enc_init(&e, NULL, 0);
      MB_CHECK(copy_term(&d, &e) != 0);
      mb_enc_discard(&e);
    }
    free(cut);
  }
  /* and one trailing byte too many */
  full = realloc(full, len + 1);
  full[len] = 106;
  MB_CHECK_EQ_INT(mb_term_validate(full, len + 1, 3), MB_EBADTERM);
  free(full);
}

/* Ports: NEW_PORT_EXT for 32-bit numbers, V4_PORT_EXT past them; PORT_EXT,
 * NEW_PORT_EXT and V4_PORT_EXT all decode. */
MB_TEST(ports)
{
  mb_enc_t e;
  mb_dec_t d;
  size_t len;
  uint64_t id = 0;
  uint8_t *b;
  MB_REQUIRE(mb_enc_init(&e, NULL, 0) == 0);
  mb_enc_port(&e, 12);
  b = mb_enc_finish(&e, &len);
  MB_REQUIRE(b != NULL);
  MB_CHECK_EQ_INT(b[1], 89);
  MB_CHECK_EQ_INT(mb_term_validate(b, len, 4), 0);
  mb_dec_init(&d, NULL, b, len);
  MB_CHECK_EQ_INT(mb_dec_type(&d), MB_T_PORT);
  MB_CHECK_EQ_INT(mb_dec_port(&d, &id), 0);
  MB_CHECK(id == 12);
  MB_CHECK(d.p == d.end);
  free(b);
  mb_enc_init(&e, NULL, 0);
  mb_enc_port(&e, 0x123456789aull);
  b = mb_enc_finish(&e, &len);
  MB_REQUIRE(b != NULL);
  MB_CHECK_EQ_INT(b[1], 120);
  mb_dec_init(&d, NULL, b, len);
  MB_CHECK_EQ_INT(mb_dec_port(&d, &id), 0);
  MB_CHECK(id == 0x123456789aull);
  free(b);
  /* PORT_EXT: node 'a@b', id 7, creation 1 byte */
  static const uint8_t old[] = {131, 102, 119, 3, 'a', '@', 'b', 0, 0, 0, 7, 2};
  MB_CHECK_EQ_INT(mb_term_validate(old, sizeof old, 4), 0);
  mb_dec_init(&d, mb_nodes_new("me@host", 1), old, sizeof old);
  MB_CHECK_EQ_INT(mb_dec_port(&d, &id), 0);
  MB_CHECK((id & 0xffffffffu) == 7 && (id >> 56) == 1);
  mb_nodes_free(d.nodes);
  /* truncated, and not a port */
  MB_CHECK_EQ_INT(mb_term_validate(old, sizeof old - 1, 4), MB_EBADTERM);
  mb_dec_init(&d, NULL, B(131, 106));
  MB_CHECK_EQ_INT(mb_dec_port(&d, &id), MB_EBADTERM);
}

MB_TEST(malformed)
{
  static const uint8_t unknown[] = {80, 117, 112, 113, 77, 99, 101, 0, 255, 131};
  size_t i;
  mb_dec_t d;
  uint32_t n;
  const uint8_t *p;
  size_t len;
  /* bad version, empty */
  MB_CHECK_EQ_INT(mb_term_validate(B(130, 106), 0), MB_EBADTERM);
  MB_CHECK_EQ_INT(mb_dec_init(&d, NULL, B(130, 106)), MB_EBADTERM);
  MB_CHECK_EQ_INT(mb_term_validate(B(131), 0), MB_EBADTERM);
  MB_CHECK_EQ_INT(mb_term_validate(NULL, 0, 0), MB_EBADTERM);
  /* unknown or unsupported tags: compressed, fun, bit binary, export, FLOAT_EXT */
  for (i = 0; i < sizeof unknown; i++) {
    uint8_t t[10] = {131, unknown[i], 0, 0, 0, 0, 0, 0, 0, 0};
    MB_CHECK_EQ_INT(mb_term_validate(t, sizeof t, 4), MB_EBADTERM);
    mb_dec_init(&d, NULL, t, sizeof t);
    MB_CHECK_EQ_INT(mb_dec_type(&d), MB_EBADTERM);
    MB_CHECK_EQ_INT(mb_dec_skip(&d), MB_EBADTERM);
  }
  /* huge declared lengths fail fast */
  MB_CHECK_EQ_INT(mb_term_validate(B(131, 108, 255, 255, 255, 255, 106, 106, 106, 106), 1), MB_EBADTERM);
  MB_CHECK_EQ_INT(mb_term_validate(B(131, 116, 255, 255, 255, 255, 106, 106), 1), MB_EBADTERM);
  MB_CHECK_EQ_INT(mb_term_validate(B(131, 105, 255, 255, 255, 255, 106), 1), MB_EBADTERM);
  MB_CHECK_EQ_INT(mb_term_validate(B(131, 109, 255, 255, 255, 255, 1), 1), MB_EBADTERM);
  MB_CHECK_EQ_INT(mb_term_validate(B(131, 111, 255, 255, 255, 255, 0, 1), 1), MB_EBADTERM);
  MB_CHECK_EQ_INT(mb_term_validate(B(131, 107, 255, 255, 1), 1), MB_EBADTERM);
  MB_CHECK_EQ_INT(mb_term_validate(B(131, 90, 255, 255, 119, 0, 0, 0, 0, 0), 1), MB_EBADTERM);
  MB_CHECK_EQ_INT(mb_term_validate(B(131, 90, 0, 0, NONODE_SATOM, 0, 0, 0, 0), 1), MB_EBADTERM);
  mb_dec_init(&d, NULL, B(131, 108, 255, 255, 255, 255, 106, 106, 106, 106));
  MB_CHECK_EQ_INT(mb_dec_list(&d, &n), MB_EBADTERM);
  MB_CHECK(d.p[0] == 108); /* unmoved */
  mb_dec_init(&d, NULL, B(131, 109, 255, 255, 255, 255, 1));
  MB_CHECK_EQ_INT(mb_dec_binary(&d, &p, &len), MB_EBADTERM);
  /* type mismatches leave the cursor */
  mb_dec_init(&d, NULL, B(131, 97, 1));
  MB_CHECK_EQ_INT(mb_dec_nil(&d), MB_EBADTERM);
  MB_CHECK_EQ_INT(mb_dec_tuple(&d, &n), MB_EBADTERM);
  MB_CHECK_EQ_INT(mb_dec_binary(&d, &p, &len), MB_EBADTERM);
  MB_CHECK(d.p[0] == 97);
  /* reading past the end */
  mb_dec_init(&d, NULL, B(131, 106));
  MB_CHECK_EQ_INT(mb_dec_nil(&d), 0);
  MB_CHECK_EQ_INT(mb_dec_type(&d), MB_EBADTERM);
  MB_CHECK_EQ_INT(mb_dec_nil(&d), MB_EBADTERM);
  MB_CHECK_EQ_INT(mb_dec_skip(&d), MB_EBADTERM);
}

/* n nested one-element lists around nil. */
static uint8_t *nested(int n, size_t *len)
{
  mb_enc_t e;
  int i;
  mb_enc_init(&e, NULL, 0);
  for (i = 0; i < n; i++) mb_enc_list(&e, 1);
  mb_enc_nil(&e);
  for (i = 0; i < n; i++) mb_enc_nil(&e);
  return mb_enc_finish(&e, len);
}

MB_TEST(depth)
{
  size_t len;
  uint8_t *b = nested(MB_TERM_MAX_DEPTH, &len);
  mb_dec_t d;
  MB_REQUIRE(b);
  MB_CHECK_EQ_INT(mb_term_validate(b, len, MB_TERM_MAX_DEPTH), 0);
  MB_CHECK_EQ_INT(mb_term_validate(b, len, 1000), 0); /* clamped to MB_TERM_MAX_DEPTH */
  MB_CHECK_EQ_INT(mb_term_validate(b, len, MB_TERM_MAX_DEPTH - 1), MB_EDEPTH);
  MB_CHECK(roundtrips(NULL, b, len));
  free(b);
  b = nested(MB_TERM_MAX_DEPTH + 1, &len);
  MB_REQUIRE(b);
  MB_CHECK_EQ_INT(mb_term_validate(b, len, MB_TERM_MAX_DEPTH), MB_EDEPTH);
  MB_CHECK_EQ_INT(mb_term_validate(b, len, 1000), MB_EDEPTH);
  mb_dec_init(&d, NULL, b, len);
  MB_CHECK_EQ_INT(mb_dec_skip(&d), MB_EDEPTH);
  free(b);
  /* an empty container counts as a level: {{}} is depth 2 */
  MB_CHECK_EQ_INT(mb_term_validate(B(131, 104, 1, 104, 0), 1), MB_EDEPTH);
  MB_CHECK_EQ_INT(mb_term_validate(B(131, 104, 1, 104, 0), 2), 0);
  MB_CHECK_EQ_INT(mb_term_validate(B(131, 116, 0, 0, 0, 0), 0), MB_EDEPTH);
}

int main(void)
{
  MB_RUN(ids);
  MB_RUN(ints_exact_bytes);
  MB_RUN(bigs_decode);
  MB_RUN(floats);
  MB_RUN(binaries);
  MB_RUN(atoms);
  MB_RUN(atoms_erlang_forms);
  MB_RUN(containers);
  MB_RUN(erlang_bytes);
  MB_RUN(pids_refs_nodes);
  MB_RUN(nodes_threads);
  MB_RUN(encoder_buffer);
  MB_RUN(truncation);
  MB_RUN(ports);
  MB_RUN(malformed);
  MB_RUN(depth);
  return mb_test_summary();
}
