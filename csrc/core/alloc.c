/* alloc.c: the core's allocator and its failure injection (alloc.h). */
#include <stdatomic.h>
#include <stdlib.h>
#include "alloc.h"

static atomic_int fail_all;
static atomic_long fail_countdown, failures;

static int injected(void) {
  if (atomic_load_explicit(&fail_all, memory_order_relaxed)) {
    atomic_fetch_add_explicit(&failures, 1, memory_order_relaxed);
    return 1;
  }
  if (atomic_load_explicit(&fail_countdown, memory_order_relaxed) > 0 &&
      atomic_fetch_sub_explicit(&fail_countdown, 1, memory_order_relaxed) == 1) {
    atomic_fetch_add_explicit(&failures, 1, memory_order_relaxed);
    return 1;
  }
  return 0;
}

void *mb_malloc(size_t n) { return injected() ? NULL : malloc(n); }
void *mb_calloc(size_t n, size_t size) { return injected() ? NULL : calloc(n, size); }
void *mb_realloc(void *p, size_t n) { return injected() ? NULL : realloc(p, n); }

void mb_alloc_fail_all(int on) { atomic_store(&fail_all, on != 0); }
void mb_alloc_fail_next(long n) { atomic_store(&fail_countdown, n > 0 ? n : 0); }
long mb_alloc_failures(void) { return atomic_load(&failures); }
