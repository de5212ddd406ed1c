/* alloc.h: the core's allocator, with allocation-failure injection for tests.
 *
 * Every allocation of the core goes through these. Tests make them fail with
 * mb_alloc_fail_all (every allocation fails while on) or mb_alloc_fail_next
 * (the nth next one fails): one relaxed load of a process-wide counter per
 * allocation, the only state outside a runtime object, and only tests set it.
 *
 * The reserve: a runtime keeps a few hundred small preallocated message
 * blocks (mb_msg_signal) so that the signals that must not be lost (LINK,
 * EXIT, DOWN and their kin) still go out when malloc fails. */
#ifndef MB_ALLOC_H
#define MB_ALLOC_H

#include <stddef.h>
#include <stdlib.h>

void *mb_malloc(size_t n);
void *mb_calloc(size_t n, size_t size);
void *mb_realloc(void *p, size_t n);
static inline void mb_free(void *p) { free(p); }

/* Test hooks. */
void mb_alloc_fail_all(int on);
void mb_alloc_fail_next(long n);  /* the nth allocation from now fails (1: the next); 0: off */
long mb_alloc_failures(void);     /* allocations failed by injection so far */

#endif
