/* scheduler.h: schedulers. One per OS thread, each with its own uv loop, a local run
 * queue touched only by its thread, and a lock-free stack through which other
 * threads hand it processes they woke. */
#ifndef MB_SCHED_H
#define MB_SCHED_H

#include <uv.h>
#include "proc.h"
#include "timer.h"

struct mb_sched {
  mb_runtime_t *rt;
  int index;
  uv_loop_t loop;
  uv_async_t wake;
  uv_timer_t sleep_timer;
  pthread_t thread;                     /* created by the runtime */
  int has_thread;
  pthread_t tid;                        /* whichever thread runs it (the watchdog signals it) */
  atomic_int has_tid;
  int inited;
  atomic_int finished;                  /* set once shutdown is done (read by mb_runtime_free) */
  mb_proc_t *rq_head, *rq_tail;         /* owner only */
  atomic_size_t rq_len;
  _Atomic(mb_proc_t *) remote;          /* woken by other threads, newest first */
  atomic_int sleeping;                  /* 1 while blocked in uv_run; cleared by who wakes it */
  mb_timers_t timers;
  atomic_int nprocs;                    /* load, for placement */
  /* preemption: the watchdog compares run_seq across ticks */
  _Atomic(mb_proc_t *) current;
  _Atomic mb_pid_t current_pid;         /* current's pid, for the watchdog's reports */
  _Atomic uint64_t run_seq;
  uint64_t seen_seq, warned_seq;        /* watchdog's view */
  uint64_t busy_since_ns;               /* watchdog: when the current run was first seen */
  /* counters (relaxed atomics: read by other threads) */
  _Atomic uint64_t spawned, exited, sent, received, reductions, runs, busy_ns, idle_ns;
  uint64_t last_poll_ns;
  void *data;                           /* embedder's (the Lua VM) */
};

/* Makes p (RUNNABLE) run on its scheduler. */
void mb_sched_enqueue(mb_proc_t *p);
/* Wakes s if it sleeps (any thread). */
void mb_sched_kick(mb_sched_t *s);
/* The scheduler of the calling thread, or NULL. */
mb_sched_t *mb_sched_current(void);

int mb_sched_init(mb_sched_t *s, mb_runtime_t *rt, int index);
/* Thread body / host loop: runs until the runtime stops, then shuts down. */
void mb_sched_main(mb_sched_t *s);
/* One bounded pass (host-driven); returns 0, or MB_ESTOPPED after shutdown. */
int mb_sched_step(mb_sched_t *s, uint64_t budget_ns);
/* Ends every process of s and releases its loop (its own thread). */
void mb_sched_shutdown(mb_sched_t *s);

/* Monotonic nanoseconds (vDSO clock). */
uint64_t mb_now_ns(void);

#endif
