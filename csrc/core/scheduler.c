/* scheduler.c: the scheduler loop.
 *
 * A scheduler repeatedly: takes processes other threads woke, fires due timers,
 * runs ready processes one slice each (up to ~2 ms before looking at timers and
 * I/O again), then sleeps in uv_run(ONCE) when nothing is ready. No system call
 * sits on the per-message path: same-scheduler wake-ups are a list append, and
 * a cross-thread wake-up signals the uv_async only when the target is asleep
 * (`sleeping` is set before the final emptiness check and cleared by whoever
 * wakes it, so either the waker sees it or the sleeper sees the work). */
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "runtime.h"

#define BATCH_NS 2000000ull

static __thread mb_sched_t *tls_sched;

mb_sched_t *mb_sched_current(void) { return tls_sched; }

uint64_t mb_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void counter_add(_Atomic uint64_t *c, uint64_t n) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

static void rq_push(mb_sched_t *s, mb_proc_t *p) {
  p->rq_next = NULL;
  if (s->rq_tail) s->rq_tail->rq_next = p;
  else s->rq_head = p;
  s->rq_tail = p;
  atomic_fetch_add_explicit(&s->rq_len, 1, memory_order_relaxed);
}

static mb_proc_t *rq_pop(mb_sched_t *s) {
  mb_proc_t *p = s->rq_head;
  if (!p) return NULL;
  s->rq_head = p->rq_next;
  if (!s->rq_head) s->rq_tail = NULL;
  atomic_fetch_sub_explicit(&s->rq_len, 1, memory_order_relaxed);
  return p;
}

void mb_sched_kick(mb_sched_t *s) {
  if (atomic_exchange_explicit(&s->sleeping, 0, memory_order_seq_cst)) uv_async_send(&s->wake);
}

void mb_sched_enqueue(mb_proc_t *p) {
  mb_sched_t *s = p->sched;
  if (tls_sched == s) {
    rq_push(s, p);
    return;
  }
  mb_proc_t *head = atomic_load_explicit(&s->remote, memory_order_relaxed);
  do p->rq_next = head;
  while (!atomic_compare_exchange_weak_explicit(&s->remote, &head, p, memory_order_seq_cst,
                                                memory_order_relaxed));
  mb_sched_kick(s);
}

static void take_remote(mb_sched_t *s) {
  if (!atomic_load_explicit(&s->remote, memory_order_relaxed)) return;
  mb_proc_t *p = atomic_exchange_explicit(&s->remote, NULL, memory_order_acquire), *prev = NULL;
  while (p) { /* newest first -> oldest first */
    mb_proc_t *next = p->rq_next;
    p->rq_next = prev;
    prev = p;
    p = next;
  }
  while (prev) {
    mb_proc_t *next = prev->rq_next;
    rq_push(s, prev);
    prev = next;
  }
}

static void fire_timers(mb_sched_t *s, uint64_t now_ns) {
  uint64_t now_ms = now_ns / 1000000u;
  mb_timer_ent_t *e;
  while ((e = mb_timers_pop_due(&s->timers, now_ms))) {
    if (e->msg) {
      mb_deliver(s->rt, e->to, e->msg);
    } else {
      mb_proc_t *p = mb_proc_acquire(s->rt, e->to);
      if (p) {
        if (p->sched == s && p->wait_seq == e->wait_seq && p->wait_timer == e->id) {
          p->timed_out = 1;
          p->wait_timer = 0;
          mb_proc_wake(p);
        }
        mb_proc_release(p);
      }
    }
    free(e);
  }
}

/* Runs p for one slice and puts it where its result says; returns 1 if p ran
 * to the end of its slice (preempted or out of budget), else 0. */
static int run_one(mb_sched_t *s, mb_proc_t *p) {
  atomic_store_explicit(&p->state, MB_PS_RUNNING, memory_order_relaxed);
  if (p->wait_timer) {
    mb_timers_cancel(&s->timers, p->wait_timer, 0);
    p->wait_timer = 0;
  }
  mb_proc_drain(p);
  if (p->exit_pending) {
    mb_proc_terminate(p, 0);
    return 0;
  }
  atomic_store_explicit(&s->current, p, memory_order_release);
  atomic_fetch_add_explicit(&s->run_seq, 1, memory_order_release);
  int r = p->beh->run(p, p->bstate);
  atomic_store_explicit(&s->current, NULL, memory_order_release);
  counter_add(&s->runs, 1);
  if (r == MB_RUN_EXIT || p->exit_pending) {
    mb_proc_terminate(p, 0);
    return 0;
  }
  if (r == MB_RUN_YIELD) {
    atomic_store_explicit(&p->state, MB_PS_RUNNABLE, memory_order_relaxed);
    rq_push(s, p);
    return 1;
  }
  if (p->timeout_ms == 0) {
    p->timeout_ms = -1;
    p->timed_out = 1;
    atomic_store_explicit(&p->state, MB_PS_RUNNABLE, memory_order_relaxed);
    rq_push(s, p);
    return 0;
  }
  if (p->timeout_ms > 0) {
    uint64_t deadline = mb_timer_deadline(mb_now_ns(), (uint64_t)p->timeout_ms);
    p->wait_timer = mb_timers_add(&s->timers, deadline, p->pid, NULL, ++p->wait_seq);
    p->timeout_ms = -1;
  }
  atomic_store_explicit(&p->state, MB_PS_WAITING, memory_order_seq_cst);
  /* a message pushed before WAITING was visible did not wake us: look again */
  if (atomic_load_explicit(&p->inbox, memory_order_seq_cst)) mb_proc_wake(p);
  return 0;
}

static void on_wake(uv_async_t *h) { (void)h; }
/* The sleep timer stops uv_run: libuv 1.44's UV_RUN_ONCE runs timers already
 * due before it polls, and then polls with no timeout at all (the async handle
 * keeps the loop alive), so a due timer must end the run or the scheduler
 * sleeps past every pending timer until something else wakes it. */
static void on_sleep_timer(uv_timer_t *h) { uv_stop(h->loop); }

/* Before blocking, watch for work from other threads for a short while: a
 * scheduler that is woken through the uv_async costs the waker a system call
 * and itself a futex wake-up (tens of microseconds here), while a message
 * exchange between schedulers usually answers within a few microseconds. */
#define SPIN_NS 50000ull

static int spin_for_work(mb_sched_t *s, uint64_t now_ns) {
  uint64_t earliest_ms = atomic_load_explicit(&s->timers.earliest, memory_order_relaxed);
  for (unsigned i = 1;; i++) {
    if (atomic_load_explicit(&s->remote, memory_order_relaxed) ||
        atomic_load_explicit(&s->rt->stopping, memory_order_relaxed))
      return 1;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
    if ((i & 63) == 0) {
      uint64_t t = mb_now_ns();
      if (t / 1000000u >= earliest_ms) return 1;
      if (t - now_ns > SPIN_NS) return 0;
      /* with ports on this loop, their I/O is watched while spinning too
       * (else socket data waits out the spin); it may wake local processes */
      if ((i & 255) == 0 && atomic_load_explicit(&s->rt->io, memory_order_relaxed)) {
        uv_run(&s->loop, UV_RUN_NOWAIT);
        if (s->rq_head) return 1;
      }
    }
  }
}

static void sleep_until_work(mb_sched_t *s, uint64_t now_ns) {
  if (spin_for_work(s, now_ns)) return;
  atomic_store_explicit(&s->sleeping, 1, memory_order_seq_cst);
  if (atomic_load_explicit(&s->remote, memory_order_seq_cst) || s->rq_head ||
      atomic_load_explicit(&s->rt->stopping, memory_order_seq_cst)) {
    atomic_store_explicit(&s->sleeping, 0, memory_order_relaxed);
    return;
  }
  uint64_t earliest = atomic_load_explicit(&s->timers.earliest, memory_order_acquire);
  uint64_t now_ms = now_ns / 1000000u;
  if (earliest != UINT64_MAX)
    uv_timer_start(&s->sleep_timer, on_sleep_timer, earliest > now_ms ? earliest - now_ms : 0, 0);
  uv_run(&s->loop, UV_RUN_ONCE);
  atomic_store_explicit(&s->sleeping, 0, memory_order_relaxed);
  uv_timer_stop(&s->sleep_timer);
  uint64_t after = mb_now_ns();
  counter_add(&s->idle_ns, after - now_ns);
  s->last_poll_ns = after;
}

/* One pass of the loop; blocks only if may_block and nothing is ready. */
static void iteration(mb_sched_t *s, int may_block, uint64_t budget_ns) {
  take_remote(s);
  if (s->index == 0) mb_ossignal_sync(s);
  uint64_t start = mb_now_ns(), now = start;
  fire_timers(s, now);
  unsigned n = 0;
  mb_proc_t *p;
  /* once the runtime stops, no process runs again: shutdown ends them all */
  while (!atomic_load_explicit(&s->rt->stopping, memory_order_relaxed) && (p = rq_pop(s))) {
    int long_run = run_one(s, p);
    /* processes woken by other threads join the queue after every run (one
     * load when there are none), so a spinner delays them by one slice */
    take_remote(s);
    /* the clock is read every 32 short runs, and after every full slice */
    if (long_run || (++n & 31) == 0) {
      now = mb_now_ns();
      if (now - start > budget_ns) break;
      fire_timers(s, now);
      /* I/O is polled at least once a slice, so a spinner delays a socket's
       * data by about one slice (one epoll_wait a slice when busy) */
      if (now - s->last_poll_ns >= s->rt->slice_ns) {
        uv_run(&s->loop, UV_RUN_NOWAIT);
        s->last_poll_ns = now;
      }
    }
  }
  now = mb_now_ns();
  counter_add(&s->busy_ns, now - start);
  if (atomic_load_explicit(&s->rt->stopping, memory_order_acquire)) return;
  if (!s->rq_head && may_block) {
    sleep_until_work(s, now);
  } else if (now - s->last_poll_ns > BATCH_NS) {
    uv_run(&s->loop, UV_RUN_NOWAIT);
    s->last_poll_ns = now;
  }
}

int mb_sched_init(mb_sched_t *s, mb_runtime_t *rt, int index) {
  s->rt = rt;
  s->index = index;
  if (uv_loop_init(&s->loop)) return MB_ENOMEM;
  if (uv_async_init(&s->loop, &s->wake, on_wake)) return MB_ENOMEM;
  uv_timer_init(&s->loop, &s->sleep_timer);
  s->rq_head = s->rq_tail = NULL;
  atomic_init(&s->remote, NULL);
  atomic_init(&s->sleeping, 0);
  atomic_init(&s->current, NULL);
  return mb_timers_init(&s->timers, index);
}

static void enter(mb_sched_t *s) {
  tls_sched = s;
  if (!atomic_load_explicit(&s->has_tid, memory_order_relaxed)) {
    s->tid = pthread_self();
    atomic_store_explicit(&s->has_tid, 1, memory_order_release);
  }
  if (!s->inited) {
    s->inited = 1;
    if (s->rt->hooks.init) s->rt->hooks.init(s->rt, s->index, s->rt->hooks.ud);
  }
}

void mb_sched_main(mb_sched_t *s) {
  enter(s);
  while (!atomic_load_explicit(&s->rt->stopping, memory_order_acquire)) iteration(s, 1, BATCH_NS);
  mb_sched_shutdown(s);
  tls_sched = NULL;
}

int mb_sched_step(mb_sched_t *s, uint64_t budget_ns) {
  if (atomic_load(&s->finished)) return MB_ESTOPPED;
  mb_sched_t *saved = tls_sched;
  enter(s);
  uint64_t start = mb_now_ns();
  do {
    iteration(s, 0, budget_ns);
  } while (s->rq_head && !atomic_load(&s->rt->stopping) && mb_now_ns() - start < budget_ns);
  if (atomic_load(&s->rt->stopping)) mb_sched_shutdown(s);
  tls_sched = saved;
  return atomic_load(&s->finished) ? MB_ESTOPPED : 0;
}

void mb_sched_shutdown(mb_sched_t *s) {
  if (atomic_load(&s->finished)) return;
  mb_runtime_t *rt = s->rt;
  mb_sched_t *saved = tls_sched;
  tls_sched = s;
  /* no spawn is in flight once stopping is set and this reads 0 */
  while (atomic_load_explicit(&rt->spawning, memory_order_seq_cst)) sched_yield();
  s->rq_head = s->rq_tail = NULL;
  atomic_store(&s->rq_len, 0);
  atomic_store(&s->remote, NULL);
  uint32_t n = atomic_load(&rt->procs.nslots);
  for (uint32_t i = 1; i < n; i++) {
    mb_proc_t *p = mb_ptable_slot(&rt->procs, i);
    if (!p || !(atomic_load(&p->ctl) & MB_CTL_ALIVE) || p->sched != s) continue;
    free(p->reason);
    p->reason = malloc(mb_atom_shutdown_len);
    if (p->reason) {
      memcpy(p->reason, mb_atom_shutdown, mb_atom_shutdown_len);
      p->reason_len = mb_atom_shutdown_len;
    }
    mb_proc_terminate(p, 1);
  }
  if (rt->hooks.fini) rt->hooks.fini(rt, s->index, rt->hooks.ud);
  atomic_store(&s->finished, 1);
  tls_sched = saved;
}
