/* watchdog.c: one thread that watches the schedulers and never runs a process.
 *
 * Preemption: it ticks every half slice; a scheduler whose run_seq has not
 * moved since the last tick while a process is current has run that process
 * for at least half a slice, and gets SIGURG. The handler, on that
 * scheduler's own thread, asks the running behaviour to yield soon (the Lua
 * binding arms a count hook: async-signal-safe by Lua's manual). Nothing runs
 * per message; a run that ends before the tick costs nothing.
 *
 * long_schedule: a run that has lasted past long_schedule_ms (100) is logged
 * once, naming the process and its registered name, as BEAM's system monitor
 * does; a process stuck in C (where no hook fires) is thus named while stuck.
 *
 * Exit deadline: once set (mb_runtime_exit_deadline), passing it logs the
 * processes holding schedulers and those still alive, then _exit()s. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
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

/* ---- logging ---- */

static void log_stderr(void *ud, int level, const char *msg) {
  (void)ud;
  fprintf(stderr, "moonbeam: %s: %s\n", level == MB_LOG_ERROR ? "error" : "warning", msg);
  fflush(stderr);
}

void mb_runtime_set_log(mb_runtime_t *rt, mb_log_fn fn, void *ud) {
  pthread_mutex_lock(&rt->wd_lock);
  rt->log = fn ? fn : log_stderr;
  rt->log_ud = fn ? ud : NULL;
  pthread_mutex_unlock(&rt->wd_lock);
}

/* "<0.12.3> (name)" or "<0.12.3>" into buf. */
static void describe(mb_runtime_t *rt, mb_pid_t pid, char *buf, size_t cap) {
  char name[64];
  size_t n = mb_registered_name(rt, pid, name, sizeof name);
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)name[i] < 32) name[i] = '?'; /* a name may hold any bytes */
  snprintf(buf, cap, "<%u.%u.%u>%s%s%s", mb_pid_node(pid), mb_pid_index(pid), mb_pid_serial(pid),
           n ? " (" : "", n ? name : "", n ? ")" : "");
}

/* ---- the thread ---- */

static void long_schedule(mb_runtime_t *rt, mb_sched_t *s, mb_pid_t pid, uint64_t ms) {
  char who[96], msg[256];
  describe(rt, pid, who, sizeof who);
  snprintf(msg, sizeof msg,
           "long_schedule: process %s has held scheduler %d for %" PRIu64
           " ms without yielding (a blocking C call?)",
           who, s->index + 1, ms);
  rt->log(rt->log_ud, MB_LOG_WARNING, msg);
}

static void deadline_passed(mb_runtime_t *rt, uint64_t now) {
  char msg[1024], who[96];
  size_t off = 0;
  off += (size_t)snprintf(msg, sizeof msg, "%s did not finish within %" PRIu64 " ms;", rt->deadline_what,
                          rt->deadline_ms);
  int held = 0;
  for (int i = 0; i < rt->nsched && off < sizeof msg; i++) {
    mb_sched_t *s = &rt->scheds[i];
    mb_pid_t pid = atomic_load_explicit(&s->current_pid, memory_order_acquire);
    if (!pid || !atomic_load_explicit(&s->current, memory_order_acquire)) continue;
    describe(rt, pid, who, sizeof who);
    off += (size_t)snprintf(msg + off, sizeof msg - off, " process %s holds scheduler %d (for %" PRIu64 " ms);",
                            who, i + 1, (now - s->busy_since_ns) / 1000000u);
    held++;
  }
  mb_pid_t pids[16];
  size_t alive = mb_processes(rt, pids, 16);
  if (off < sizeof msg)
    off += (size_t)snprintf(msg + off, sizeof msg - off, " %zu process%s still alive%s", alive,
                            alive == 1 ? "" : "es", alive ? ":" : "");
  for (size_t i = 0; i < alive && i < 16 && off < sizeof msg; i++) {
    describe(rt, pids[i], who, sizeof who);
    off += (size_t)snprintf(msg + off, sizeof msg - off, " %s", who);
  }
  if (alive > 16 && off < sizeof msg) off += (size_t)snprintf(msg + off, sizeof msg - off, " ...");
  if (off < sizeof msg) snprintf(msg + off, sizeof msg - off, "; exiting with code %d", rt->deadline_code);
  (void)held;
  rt->log(rt->log_ud, MB_LOG_ERROR, msg);
  _exit(rt->deadline_code);
}

static void *watchdog_main(void *arg) {
  mb_runtime_t *rt = arg;
  /* preempting: every half slice; otherwise often enough for long_schedule */
  uint64_t tick_ns = rt->preempt ? rt->slice_ns / 2 : 10000000u;
  pthread_mutex_lock(&rt->wd_lock);
  while (!atomic_load(&rt->wd_quit)) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)tick_ns;
    while (ts.tv_nsec >= 1000000000L) {
      ts.tv_nsec -= 1000000000L;
      ts.tv_sec++;
    }
    pthread_cond_timedwait(&rt->wd_cond, &rt->wd_lock, &ts);
    if (atomic_load(&rt->wd_quit)) break;
    uint64_t now = mb_now_ns();
    for (int i = 0; i < rt->nsched; i++) {
      mb_sched_t *s = &rt->scheds[i];
      uint64_t seq = atomic_load_explicit(&s->run_seq, memory_order_acquire);
      int busy = atomic_load_explicit(&s->current, memory_order_acquire) != NULL;
      if (!busy || seq != s->seen_seq) {
        /* a new run began since the last tick (or none runs) */
        s->seen_seq = seq;
        s->busy_since_ns = now;
        continue;
      }
      if (rt->preempt && atomic_load_explicit(&s->has_tid, memory_order_acquire))
        pthread_kill(s->tid, SIGURG);
      uint64_t ms = (now - s->busy_since_ns) / 1000000u;
      if (ms >= rt->long_schedule_ms && s->warned_seq != seq) {
        s->warned_seq = seq;
        long_schedule(rt, s, atomic_load_explicit(&s->current_pid, memory_order_acquire), ms);
      }
    }
    uint64_t dl = atomic_load(&rt->deadline_ns);
    if (dl && now >= dl) deadline_passed(rt, now);
  }
  pthread_mutex_unlock(&rt->wd_lock);
  return NULL;
}

int mb_runtime_exit_deadline(mb_runtime_t *rt, uint64_t ms, int code, const char *what) {
  if (!rt) return MB_EINVAL;
  pthread_mutex_lock(&rt->wd_lock);
  if (ms == UINT64_MAX) {
    atomic_store(&rt->deadline_ns, 0);
  } else {
    rt->deadline_ms = ms;
    rt->deadline_code = code;
    snprintf(rt->deadline_what, sizeof rt->deadline_what, "%s", what && *what ? what : "shutdown");
    uint64_t d = mb_now_ns() + (ms > UINT64_MAX / 2000000u ? UINT64_MAX / 2 : ms * 1000000u);
    atomic_store(&rt->deadline_ns, d ? d : 1);
  }
  pthread_mutex_unlock(&rt->wd_lock);
  return 0;
}

int mb_watchdog_start(mb_runtime_t *rt) {
  if (rt->preempt) mb_watchdog_install_handler();
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
}
