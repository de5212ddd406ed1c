/* watchdog.c: preemption. One thread ticks every half slice; a scheduler whose
 * run_seq has not moved since the last tick while a process is current has run
 * that process for at least half a slice, and gets SIGURG. The handler, on that
 * scheduler's own thread, asks the running behaviour to yield soon (the Lua
 * binding arms a count hook: async-signal-safe by Lua's manual). Nothing runs
 * per message; a run that ends before the tick costs nothing. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include "runtime.h"

static void on_preempt(int sig) {
  (void)sig;
  int saved = errno;
  mb_sched_t *s = mb_sched_current();
  if (s) {
    mb_proc_t *p = atomic_load_explicit(&s->current, memory_order_acquire);
    if (p && p->beh->preempt) p->beh->preempt(p->bstate);
  }
  errno = saved;
}

void mb_watchdog_install_handler(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_preempt;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGURG, &sa, NULL);
}

static void *watchdog_main(void *arg) {
  mb_runtime_t *rt = arg;
  pthread_mutex_lock(&rt->wd_lock);
  while (!atomic_load(&rt->wd_quit)) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* ticks every half slice: a run that spans a whole tick is preempted, so
     * a slice lasts between one half and one full slice_ns */
    ts.tv_nsec += (long)(rt->slice_ns / 2);
    while (ts.tv_nsec >= 1000000000L) {
      ts.tv_nsec -= 1000000000L;
      ts.tv_sec++;
    }
    pthread_cond_timedwait(&rt->wd_cond, &rt->wd_lock, &ts);
    for (int i = 0; i < rt->nsched; i++) {
      mb_sched_t *s = &rt->scheds[i];
      uint64_t seq = atomic_load_explicit(&s->run_seq, memory_order_acquire);
      int busy = atomic_load_explicit(&s->current, memory_order_acquire) != NULL;
      if (busy && seq == s->seen_seq && atomic_load_explicit(&s->has_tid, memory_order_acquire))
        pthread_kill(s->tid, SIGURG);
      s->seen_seq = seq;
    }
  }
  pthread_mutex_unlock(&rt->wd_lock);
  return NULL;
}

int mb_watchdog_start(mb_runtime_t *rt) {
  mb_watchdog_install_handler();
  pthread_mutex_init(&rt->wd_lock, NULL);
  pthread_cond_init(&rt->wd_cond, NULL);
  if (pthread_create(&rt->watchdog, NULL, watchdog_main, rt)) return MB_ENOMEM;
  rt->has_watchdog = 1;
  return 0;
}

void mb_watchdog_stop(mb_runtime_t *rt) {
  pthread_mutex_lock(&rt->wd_lock);
  atomic_store(&rt->wd_quit, 1);
  pthread_cond_signal(&rt->wd_cond);
  pthread_mutex_unlock(&rt->wd_lock);
  pthread_join(rt->watchdog, NULL);
  rt->has_watchdog = 0;
  pthread_cond_destroy(&rt->wd_cond);
  pthread_mutex_destroy(&rt->wd_lock);
}
