/*
 * mb_test.h: a header-only test framework for moonbeam's C tests.
 *
 *   #include "mb_test.h"
 *
 *   MB_TEST(encode_small_int) {
 *     MB_CHECK_EQ_INT(encoded_len(1), 3);
 *   }
 *
 *   int main(void) {
 *     MB_RUN(encode_small_int);
 *     return mb_test_summary();
 *   }
 *
 * Output (stdout, flushed line by line so it survives a crash):
 *   FAIL name: file:line: expr [details]   for each failed check, when it fails
 *   ok name | FAIL name                     for each test, when it ends
 *   N passed, N failed                      once, from mb_test_summary (N = tests)
 *
 * Semantics:
 *   - A failed check marks the running test failed, prints its line and the test
 *     CONTINUES, so one run reports every broken check. Use MB_REQUIRE(cond) when
 *     the rest of the test cannot run without cond (e.g. a NULL pointer): it
 *     returns from the test function, so it may only appear in an MB_TEST body.
 *   - Checks may run on any thread (e.g. inside a native process handler on a
 *     scheduler thread); the failure goes to the test MB_RUN is running. A check
 *     that fails while no test runs counts as one extra failed test, "(outside)".
 *   - Nothing is caught: a crash ends the binary, and `make test` counts it.
 *   - All state is static inside this header, so each test binary has its own.
 *   - A test's function is named mb_test_<name>, so test names may be any
 *     identifier (link, send, ...) without clashing with libc.
 */
#ifndef MB_TEST_H
#define MB_TEST_H

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

typedef struct mb_test_state {
  int passed, failed;       /* tests, counted by MB_RUN */
  _Atomic(const char *) current; /* the running test's name, NULL between tests */
  atomic_int current_failed;/* checks failed in the running test */
  atomic_int outside_failed;/* checks failed while no test ran */
} mb_test_state_t;

static inline mb_test_state_t *mb_test_state_(void) {
  static mb_test_state_t state;
  return &state;
}

static inline void mb_test_fail_(const char *file, int line, const char *expr,
                                 const char *detail) {
  mb_test_state_t *s = mb_test_state_();
  const char *name = atomic_load(&s->current);
  if (name) {
    atomic_fetch_add(&s->current_failed, 1);
  } else {
    atomic_fetch_add(&s->outside_failed, 1);
    name = "(outside)";
  }
  /* One fprintf per line: stdio locks the stream, so lines from threads do not
   * interleave. */
  fprintf(stdout, "FAIL %s: %s:%d: %s%s%s\n", name, file, line, expr,
          detail ? " " : "", detail ? detail : "");
  fflush(stdout);
}

static inline void mb_test_run_(const char *name, void (*fn)(void)) {
  mb_test_state_t *s = mb_test_state_();
  atomic_store(&s->current_failed, 0);
  atomic_store(&s->current, name);
  fn();
  atomic_store(&s->current, (const char *)NULL);
  if (atomic_load(&s->current_failed) == 0) {
    s->passed++;
    fprintf(stdout, "ok %s\n", name);
  } else {
    s->failed++;
    fprintf(stdout, "FAIL %s\n", name);
  }
  fflush(stdout);
}

static inline int mb_test_check_int_(long long a, long long b, const char *file,
                                     int line, const char *expr) {
  if (a == b) return 1;
  char detail[96];
  snprintf(detail, sizeof detail, "(%lld != %lld)", a, b);
  mb_test_fail_(file, line, expr, detail);
  return 0;
}

static inline int mb_test_check_str_(const char *a, const char *b, const char *file,
                                     int line, const char *expr) {
  if (a == b || (a && b && strcmp(a, b) == 0)) return 1;
  char detail[256];
  snprintf(detail, sizeof detail, "(%s%s%s != %s%s%s)", a ? "\"" : "", a ? a : "NULL",
           a ? "\"" : "", b ? "\"" : "", b ? b : "NULL", b ? "\"" : "");
  mb_test_fail_(file, line, expr, detail);
  return 0;
}

/* Prints "N passed, N failed" (tests) and returns non-zero if any failed. */
static inline int mb_test_summary(void) {
  mb_test_state_t *s = mb_test_state_();
  int failed = s->failed + (atomic_load(&s->outside_failed) > 0 ? 1 : 0);
  if (atomic_load(&s->outside_failed) > 0) fprintf(stdout, "FAIL (outside)\n");
  fprintf(stdout, "%d passed, %d failed\n", s->passed, failed);
  fflush(stdout);
  return failed != 0;
}

/* Defines a test; run it with MB_RUN(name). */
#define MB_TEST(name) static void mb_test_##name(void)
/* Runs a test and prints its ok/FAIL line. */
#define MB_RUN(name) mb_test_run_(#name, mb_test_##name)

/* Each check evaluates its arguments once and yields nothing; the test goes on. */
#define MB_CHECK(cond)                                                        \
  do {                                                                        \
    if (!(cond)) mb_test_fail_(__FILE__, __LINE__, #cond, NULL);              \
  } while (0)
#define MB_CHECK_EQ_INT(a, b)                                                 \
  ((void)mb_test_check_int_((long long)(a), (long long)(b), __FILE__, __LINE__, \
                            #a " == " #b))
#define MB_CHECK_EQ_STR(a, b)                                                 \
  ((void)mb_test_check_str_((a), (b), __FILE__, __LINE__, #a " == " #b))
/* Like MB_CHECK, but returns from the test on failure (MB_TEST bodies only). */
#define MB_REQUIRE(cond)                                                      \
  do {                                                                        \
    if (!(cond)) {                                                            \
      mb_test_fail_(__FILE__, __LINE__, #cond, NULL);                         \
      return;                                                                 \
    }                                                                         \
  } while (0)

#endif /* MB_TEST_H */
