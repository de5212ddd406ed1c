/* timer.h: a scheduler's timers: a binary min-heap by deadline plus an id index
 * for cancellation, under a mutex (other threads may add and cancel). Only the
 * owning scheduler fires them. */
#ifndef MB_TIMER_H
#define MB_TIMER_H

#include <pthread.h>
#include <stdatomic.h>
#include "moonbeam.h"
#include "msg.h"

typedef struct mb_timer_ent {
  uint64_t deadline_ms;
  mb_timer_t id;
  mb_pid_t to;
  mb_msg_t *msg;        /* send_after: the message; NULL: a receive timeout */
  char *name;           /* send_after to a name: resolved when it fires (malloc'd), else NULL */
  uint32_t nlen;
  uint32_t wait_seq;    /* receive timeout: which wait */
  uint32_t heap_idx;
} mb_timer_ent_t;

typedef struct mb_timers {
  pthread_mutex_t lock;
  mb_timer_ent_t **heap;
  uint32_t n, cap;
  mb_timer_ent_t **index;  /* open addressing by id; NULL empty, TOMB deleted */
  uint32_t icap, iused;
  uint64_t next_seq;
  int sched;
  atomic_uint_fast64_t earliest; /* deadline of heap top, UINT64_MAX if none */
} mb_timers_t;

int mb_timers_init(mb_timers_t *t, int sched);
/* Frees every pending timer and its message. */
void mb_timers_destroy(mb_timers_t *t);
/* Deadline of a timer that never fires (an infinite or huge delay): it waits
 * in the heap until cancelled or the runtime ends. */
#define MB_TIMER_NEVER (UINT64_MAX - 1)

/* Adds a timer; takes msg. Returns its id (0 on out of memory; msg freed). */
mb_timer_t mb_timers_add(mb_timers_t *t, uint64_t deadline_ms, mb_pid_t to, mb_msg_t *msg,
                         uint32_t wait_seq);
/* Same, to the process registered as name[0..nlen) when it fires; takes msg
 * and name (a malloc'd copy). */
mb_timer_t mb_timers_add_named(mb_timers_t *t, uint64_t deadline_ms, char *name, uint32_t nlen,
                               mb_msg_t *msg);
/* Frees a popped or cancelled entry with its message and name. */
void mb_timers_free_ent(mb_timer_ent_t *e);
/* Removes a timer: ms left (>= 0), or MB_ENOENT. */
int64_t mb_timers_cancel(mb_timers_t *t, mb_timer_t id, uint64_t now_ms);
/* Pops the earliest timer due at now_ms, or NULL; the caller frees it. */
mb_timer_ent_t *mb_timers_pop_due(mb_timers_t *t, uint64_t now_ms);
/* Scheduler index encoded in a timer id. */
int mb_timer_sched(mb_timer_t id);

/* Millisecond tick a timer of `ms` started at now_ns is due at. Timers fire once
 * floor(now / 1 ms) >= deadline, so the start is rounded up: a timer is never
 * early (it may be up to 1 ms late). Use the same rounding for "ms left". */
static inline uint64_t mb_ceil_ms(uint64_t now_ns) { return (now_ns + 999999u) / 1000000u; }
/* Saturates: a delay past 2^62 ms (a hundred million years) never fires. */
static inline uint64_t mb_timer_deadline(uint64_t now_ns, uint64_t ms)
{
  return ms >= (1ull << 62) ? MB_TIMER_NEVER : mb_ceil_ms(now_ns) + ms;
}

#endif
