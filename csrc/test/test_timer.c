/* test_timer.c: mb_send_after and mb_cancel_timer: on time (never early, a few
 * ms late at most), in deadline order, cancellable exactly once, usable from
 * any thread and from inside processes, harmless towards dead processes, and
 * freed with the runtime. Arrival times are taken by the receiving probe. */
#include <stdatomic.h>
#include <math.h>
#include "mb_test.h"
#include "testkit.h"

#define WAIT_MS 2000
#define MS 1000000ull

MB_TEST(send_after_fires_on_time) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *pr = tk_probe(rt, NULL);
  tk_term t = tk_atom("tick");
  int early = 0, late = 0;
  uint64_t worst = 0;
  for (int i = 0; i < 5; i++) {
    uint64_t t0 = tk_now_ns();
    mb_timer_t tm = 0;
    MB_CHECK_EQ_INT(mb_send_after(rt, 0, pr->pid, 50, t.p, t.n, &tm), 0);
    MB_CHECK(tm != 0);
    tk_item_t *it = tk_wait(pr, WAIT_MS);
    MB_REQUIRE(it != NULL);
    MB_CHECK(tk_is_atom(it->data, it->len, "tick"));
    uint64_t dt = it->at_ns - t0;
    early += dt < 50 * MS;
    late += dt > (50 + (uint64_t)tk_slack_ms()) * MS;
    if (dt > worst) worst = dt;
    free(it);
  }
  MB_CHECK_EQ_INT(early, 0);
  MB_CHECK_EQ_INT(late, 0);
  printf("  (50 ms timer: latest arrival %.2f ms)\n", worst / 1e6);
  /* 0 ms: at once */
  uint64_t t0 = tk_now_ns();
  MB_CHECK_EQ_INT(mb_send_after(rt, 0, pr->pid, 0, t.p, t.n, NULL), 0);
  tk_item_t *it = tk_wait(pr, WAIT_MS);
  MB_REQUIRE(it != NULL);
  MB_CHECK(it->at_ns - t0 < (uint64_t)tk_slack_ms() * MS);
  free(it);
  tk_free(t);
  mb_runtime_free(rt);
  tk_probe_free(pr);
}

/* Keeps its scheduler busy: runs ~50 us and yields, until told to stop. */
static int spin_run(mb_proc_t *self, void *st) {
  (void)self;
  uint64_t end = tk_now_ns() + 50000;
  while (tk_now_ns() < end) {
  }
  return atomic_load((atomic_int *)st) ? MB_RUN_EXIT : MB_RUN_YIELD;
}

static const mb_behaviour_t spin_beh = {spin_run, NULL, NULL, NULL};

MB_TEST(send_after_never_early_on_a_busy_scheduler) {
  /* A busy scheduler fires timers between slices instead of sleeping until
   * them: the deadline must still not be earlier than asked. */
  mb_runtime_t *rt = tk_runtime(2);
  mb_spawn_opts_t o = {0};
  o.scheduler = 1;
  atomic_int stop;
  atomic_init(&stop, 0);
  mb_pid_t spinner;
  MB_REQUIRE(mb_spawn(rt, &spin_beh, &stop, &o, &spinner) == 0);
  tk_probe_t *pr = tk_probe_on(rt, 0, 0);
  tk_term t = tk_atom("tick");
  int early = 0, late = 0, n = 20;
  uint64_t min = UINT64_MAX, max = 0;
  for (int i = 0; i < n; i++) {
    tk_sleep_us(137 * i % 1000); /* spread the start over the millisecond */
    uint64_t t0 = tk_now_ns();
    MB_CHECK_EQ_INT(mb_send_after(rt, 0, pr->pid, 10, t.p, t.n, NULL), 0);
    tk_item_t *it = tk_wait(pr, WAIT_MS);
    MB_REQUIRE(it != NULL);
    uint64_t dt = it->at_ns - t0;
    early += dt < 10 * MS;
    late += dt > (10 + (uint64_t)tk_slack_ms()) * MS;
    if (dt < min) min = dt;
    if (dt > max) max = dt;
    free(it);
  }
  MB_CHECK_EQ_INT(early, 0);
  MB_CHECK_EQ_INT(late, 0);
  printf("  (10 ms timers on a busy scheduler: %.2f .. %.2f ms)\n", min / 1e6, max / 1e6);
  atomic_store(&stop, 1);
  TK_WAIT_UNTIL(!mb_alive(rt, spinner), WAIT_MS);
  tk_free(t);
  mb_runtime_free(rt);
  tk_probe_free(pr);
}

MB_TEST(timers_fire_in_deadline_order) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *pr = tk_probe(rt, NULL);
  static const int delay[] = {30, 10, 20, 10, 0, 25};
  static const int want[] = {4, 1, 3, 2, 5, 0}; /* indexes, by deadline then creation */
  for (int i = 0; i < 6; i++) {
    tk_term t = tk_int(i);
    MB_CHECK_EQ_INT(mb_send_after(rt, 0, pr->pid, (uint64_t)delay[i], t.p, t.n, NULL), 0);
    tk_free(t);
  }
  for (int i = 0; i < 6; i++) {
    tk_item_t *it = tk_wait(pr, WAIT_MS);
    MB_REQUIRE(it != NULL);
    MB_CHECK_EQ_INT(tk_get_int(it->data, it->len), want[i]);
    free(it);
  }
  mb_runtime_free(rt);
  tk_probe_free(pr);
}

MB_TEST(cancel_returns_time_left_and_the_message_never_comes) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *pr = tk_probe(rt, NULL);
  tk_term a = tk_atom("cancelled"), m = tk_atom("marker");
  mb_timer_t tm;
  MB_REQUIRE(mb_send_after(rt, 0, pr->pid, 100, a.p, a.n, &tm) == 0);
  int64_t left = mb_cancel_timer(rt, tm);
  MB_CHECK(left > 90 && left <= 100);
  MB_CHECK_EQ_INT(mb_cancel_timer(rt, tm), MB_ENOENT); /* twice */
  /* a later timer to the same process is the first thing it gets */
  MB_REQUIRE(mb_send_after(rt, 0, pr->pid, 130, m.p, m.n, NULL) == 0);
  tk_item_t *it = tk_wait(pr, WAIT_MS);
  MB_REQUIRE(it != NULL);
  MB_CHECK(tk_is_atom(it->data, it->len, "marker"));
  free(it);
  /* ms left shrinks with time */
  MB_REQUIRE(mb_send_after(rt, 0, pr->pid, 200, a.p, a.n, &tm) == 0);
  tk_sleep_ms(60);
  left = mb_cancel_timer(rt, tm);
  MB_CHECK(left >= 100 && left <= 140);
  /* a fired timer cannot be cancelled */
  MB_REQUIRE(mb_send_after(rt, 0, pr->pid, 1, m.p, m.n, &tm) == 0);
  it = tk_wait(pr, WAIT_MS);
  MB_CHECK(it != NULL);
  free(it);
  MB_CHECK_EQ_INT(mb_cancel_timer(rt, tm), MB_ENOENT);
  /* ids that were never handed out */
  MB_CHECK_EQ_INT(mb_cancel_timer(rt, 0), MB_ENOENT);
  MB_CHECK_EQ_INT(mb_cancel_timer(rt, ~(mb_timer_t)0), MB_ENOENT);
  MB_CHECK_EQ_INT(mb_cancel_timer(rt, tm + 1000), MB_ENOENT);
  MB_CHECK_EQ_INT(tk_sync(rt, pr, WAIT_MS), 0);
  tk_free(a);
  tk_free(m);
  mb_runtime_free(rt);
  tk_probe_free(pr);
}

/* ---- many timers from threads and from processes ---- */

#define THREADS 4
#define PER_THREAD 50

typedef struct tstart {
  mb_runtime_t *rt;
  mb_pid_t to;
  int id;
  uint64_t t0[PER_THREAD];
  mb_timer_t timers[PER_THREAD];
  int fails;
} tstart_t;

/* {Thread, Seq, DelayMs} */
static tk_term label(int thread, int seq, int delay) {
  mb_enc_t e;
  mb_enc_init(&e, NULL, 0);
  mb_enc_tuple(&e, 3);
  mb_enc_int(&e, thread);
  mb_enc_int(&e, seq);
  mb_enc_int(&e, delay);
  return tk_finish(&e);
}

static void *arm_thread(void *arg) {
  tstart_t *ts = arg;
  for (int i = 0; i < PER_THREAD; i++) {
    /* even: fire within 40 ms; odd: far off, cancelled by another thread */
    int delay = i & 1 ? 500 + i : (i * 7 + ts->id * 3) % 40;
    tk_term t = label(ts->id, i, delay);
    ts->t0[i] = tk_now_ns();
    if (mb_send_after(ts->rt, 0, ts->to, (uint64_t)delay, t.p, t.n, &ts->timers[i])) ts->fails++;
    tk_free(t);
  }
  return NULL;
}

/* Cancels every odd timer of another thread's batch: ids are good anywhere. */
static void *cancel_thread(void *arg) {
  tstart_t *ts = arg;
  for (int i = 1; i < PER_THREAD; i += 2)
    if (mb_cancel_timer(ts->rt, ts->timers[i]) < 0) ts->fails++;
  return NULL;
}

/* A process that, on {arm, To}, starts PER_THREAD timers to To from inside
 * (they live on its own scheduler) and cancels the odd ones itself. */
typedef struct armer {
  uint64_t t0[PER_THREAD];
  int fails, sched_ok;
} armer_t;

static int armer_fn(mb_proc_t *self, const mb_msg_t *m, void *ud) {
  armer_t *a = ud;
  if (!m) return 0;
  size_t n;
  const uint8_t *p = mb_msg_data(m, &n);
  mb_pid_t to = tk_elem_pid(p, n, 1);
  mb_runtime_t *rt = mb_proc_runtime(self);
  mb_timer_t ids[PER_THREAD];
  a->sched_ok = mb_runtime_current_sched(rt) == mb_proc_sched(self);
  for (int i = 0; i < PER_THREAD; i++) {
    int delay = i & 1 ? 500 + i : (i * 11) % 40;
    tk_term t = label(THREADS, i, delay);
    a->t0[i] = tk_now_ns();
    if (mb_send_after(rt, mb_self(self), to, (uint64_t)delay, t.p, t.n, &ids[i])) a->fails++;
    tk_free(t);
  }
  for (int i = 1; i < PER_THREAD; i += 2)
    if (mb_cancel_timer(rt, ids[i]) < 0) a->fails++;
  return 1;
}

MB_TEST(timers_from_threads_and_processes) {
  mb_runtime_t *rt = tk_runtime(3);
  tk_probe_t *pr = tk_probe(rt, NULL);
  tstart_t ts[THREADS];
  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++) {
    memset(&ts[i], 0, sizeof ts[i]);
    ts[i].rt = rt;
    ts[i].to = pr->pid;
    ts[i].id = i;
    pthread_create(&th[i], NULL, arm_thread, &ts[i]);
  }
  armer_t arm;
  memset(&arm, 0, sizeof arm);
  mb_pid_t armer;
  MB_REQUIRE(mb_spawn_native(rt, armer_fn, NULL, &arm, NULL, &armer) == 0);
  tk_term cmd = tk_cmd_pid("arm", pr->pid);
  mb_send(rt, 0, armer, cmd.p, cmd.n);
  tk_free(cmd);
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  /* thread i+1 cancels the odd timers of thread i */
  for (int i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, cancel_thread, &ts[(i + 1) % THREADS]);
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  TK_WAIT_UNTIL(!mb_alive(rt, armer), WAIT_MS);
  for (int i = 0; i < THREADS; i++) MB_CHECK_EQ_INT(ts[i].fails, 0);
  MB_CHECK_EQ_INT(arm.fails, 0);
  MB_CHECK(arm.sched_ok);
  int seen[THREADS + 1][PER_THREAD];
  memset(seen, 0, sizeof seen);
  int got = 0, early = 0, odd = 0;
  /* the longest kept delay is 40 ms: 200 ms of silence means all came, and the
   * cancelled ones (500 ms) are checked by the runtime's exit freeing them */
  for (;;) {
    tk_item_t *it = tk_wait(pr, 200);
    if (!it) break;
    int th_ = (int)tk_elem_int(it->data, it->len, 0);
    int seq = (int)tk_elem_int(it->data, it->len, 1);
    int delay = (int)tk_elem_int(it->data, it->len, 2);
    if (th_ < 0 || th_ > THREADS || seq < 0 || seq >= PER_THREAD) {
      free(it);
      early++;
      continue;
    }
    uint64_t t0 = th_ < THREADS ? ts[th_].t0[seq] : arm.t0[seq];
    if (it->at_ns < t0 + (uint64_t)delay * MS) early++;
    if (seq & 1) odd++;
    seen[th_][seq]++;
    got++;
    free(it);
  }
  MB_CHECK_EQ_INT(early, 0);
  MB_CHECK_EQ_INT(odd, 0); /* every odd timer was cancelled before its deadline */
  int even_missing = 0, dup = 0;
  for (int i = 0; i <= THREADS; i++)
    for (int s = 0; s < PER_THREAD; s++) {
      if (!(s & 1) && seen[i][s] != 1) even_missing++;
      if (seen[i][s] > 1) dup++;
    }
  MB_CHECK_EQ_INT(even_missing, 0);
  MB_CHECK_EQ_INT(dup, 0);
  MB_CHECK_EQ_INT(got, (THREADS + 1) * PER_THREAD / 2);
  mb_runtime_free(rt);
  tk_probe_free(pr);
}

/* Arms timers from inside a process, then exits: nothing else will ever wake
 * its scheduler, so the scheduler's own sleep must end at the deadlines. */
static int arm_and_exit(mb_proc_t *self, const mb_msg_t *m, void *ud) {
  if (m) return 0;
  mb_pid_t to = *(mb_pid_t *)ud;
  for (int i = 0; i < 3; i++) {
    tk_term t = tk_int(i);
    mb_send_after(mb_proc_runtime(self), mb_self(self), to, (uint64_t)(i * 10), t.p, t.n, NULL);
    tk_free(t);
  }
  return 1;
}

MB_TEST(timers_from_a_process_fire_on_an_idle_scheduler) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *pr = tk_probe_on(rt, 0, 0);
  mb_spawn_opts_t o = {0};
  o.scheduler = 2; /* alone on scheduler 1, which goes to sleep when it exits */
  mb_pid_t pid;
  MB_REQUIRE(mb_spawn_native(rt, arm_and_exit, NULL, &pr->pid, &o, &pid) == 0);
  for (int i = 0; i < 3; i++) {
    tk_item_t *it = tk_wait(pr, 500);
    MB_REQUIRE(it != NULL);
    MB_CHECK_EQ_INT(tk_get_int(it->data, it->len), i);
    MB_CHECK_EQ_INT(it->from, pid);
    free(it);
  }
  mb_runtime_free(rt);
  tk_probe_free(pr);
}

MB_TEST(timer_to_a_dead_process_is_harmless) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *gone = tk_probe(rt, NULL), *live = tk_probe(rt, NULL);
  tk_term t = tk_atom("late");
  /* a process that dies before its timer fires */
  MB_CHECK_EQ_INT(mb_send_after(rt, 0, gone->pid, 10, t.p, t.n, NULL), 0);
  tk_cmd_exit(rt, gone, "normal");
  MB_CHECK(tk_wait_exit(gone, WAIT_MS));
  /* one already dead, one that never was */
  MB_CHECK_EQ_INT(mb_send_after(rt, 0, gone->pid, 5, t.p, t.n, NULL), 0);
  MB_CHECK_EQ_INT(mb_send_after(rt, 0, mb_pid_make(0, 99999, 5), 5, t.p, t.n, NULL), 0);
  /* all fired by the time a later one reaches a live process */
  tk_term m = tk_atom("marker");
  MB_CHECK_EQ_INT(mb_send_after(rt, 0, live->pid, 40, m.p, m.n, NULL), 0);
  tk_item_t *it = tk_wait(live, WAIT_MS);
  MB_CHECK(it && tk_is_atom(it->data, it->len, "marker"));
  free(it);
  MB_CHECK(gone->head == NULL);
  mb_stats_t st;
  TK_WAIT_UNTIL((mb_runtime_stats(rt, -1, &st), st.processes == 1), WAIT_MS);
  MB_CHECK_EQ_INT(st.processes, 1);
  MB_CHECK_EQ_INT(st.exited, 1);
  tk_free(t);
  tk_free(m);
  mb_runtime_free(rt);
  tk_probe_free(gone);
  tk_probe_free(live);
}

MB_TEST(runtime_freed_with_pending_timers_leaks_nothing) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *pr = tk_probe(rt, NULL);
  tk_term t = tk_atom("never");
  for (int i = 0; i < 200; i++) {
    MB_CHECK_EQ_INT(mb_send_after(rt, 0, pr->pid, 10000 + (uint64_t)i, t.p, t.n, NULL), 0);
    MB_CHECK_EQ_INT(mb_send_after(rt, 0, mb_pid_make(0, 4242, 1), 10000, t.p, t.n, NULL), 0);
  }
  tk_free(t);
  uint64_t t0 = tk_now_ns();
  mb_runtime_free(rt); /* ASan's leak check covers the 400 messages */
  MB_CHECK(tk_now_ns() - t0 < 1000 * MS);
  MB_CHECK(pr->head == NULL);
  tk_probe_free(pr);
}

MB_TEST(send_after_arguments) {
  mb_runtime_t *rt = tk_runtime(1);
  tk_probe_t *pr = tk_probe(rt, NULL);
  tk_term t = tk_atom("x");
  MB_CHECK_EQ_INT(mb_send_after(rt, 0, pr->pid, 1, NULL, 0, NULL), MB_EBADTERM);
  MB_CHECK_EQ_INT(mb_send_after(rt, 0, pr->pid, 1, t.p, 1, NULL), MB_EBADTERM);
  /* the sender is who the caller says */
  MB_CHECK_EQ_INT(mb_send_after(rt, pr->pid, pr->pid, 1, t.p, t.n, NULL), 0);
  tk_item_t *it = tk_wait(pr, WAIT_MS);
  MB_REQUIRE(it != NULL);
  MB_CHECK_EQ_INT(it->from, pr->pid);
  free(it);
  mb_runtime_stop(rt);
  MB_CHECK_EQ_INT(mb_send_after(rt, 0, pr->pid, 1, t.p, t.n, NULL), MB_ESTOPPED);
  tk_free(t);
  mb_runtime_free(rt);
  tk_probe_free(pr);
}

MB_TEST(huge_and_infinite_delays_never_fire) {
  mb_runtime_t *rt = tk_runtime(1);
  tk_probe_t *pr = tk_probe(rt, NULL);
  tk_term t = tk_atom("too_soon");
  uint64_t ms;
  /* the double a Lua number gives: NaN and negative rejected, huge means never */
  MB_CHECK_EQ_INT(mb_timer_ms(NAN, &ms), MB_EINVAL);
  MB_CHECK_EQ_INT(mb_timer_ms(-1.0, &ms), MB_EINVAL);
  MB_CHECK_EQ_INT(mb_timer_ms(-INFINITY, &ms), MB_EINVAL);
  MB_CHECK(mb_timer_ms(12.9, &ms) == 0 && ms == 12);
  const double huge[] = {INFINITY, 18446744073709551616.0 /* 2^64 */, 1e300, 9.3e18};
  mb_timer_t ids[8];
  int n = 0;
  for (int i = 0; i < 4; i++) {
    MB_CHECK(mb_timer_ms(huge[i], &ms) == 0 && ms == UINT64_MAX);
    MB_CHECK_EQ_INT(mb_send_after(rt, 0, pr->pid, ms, t.p, t.n, &ids[n++]), 0);
  }
  /* integer delays whose deadline would overflow */
  MB_CHECK_EQ_INT(mb_send_after(rt, 0, pr->pid, UINT64_MAX - 5, t.p, t.n, &ids[n++]), 0);
  MB_CHECK_EQ_INT(mb_send_after(rt, 0, pr->pid, (uint64_t)1 << 63, t.p, t.n, &ids[n++]), 0);
  MB_CHECK_EQ_INT(mb_send_after(rt, 0, pr->pid, (uint64_t)1 << 62, t.p, t.n, &ids[n++]), 0);
  tk_term m = tk_atom("marker");
  MB_CHECK_EQ_INT(mb_send_after(rt, 0, pr->pid, 30, m.p, m.n, NULL), 0);
  tk_item_t *it = tk_wait(pr, WAIT_MS);
  MB_CHECK(it && tk_is_atom(it->data, it->len, "marker"));
  free(it);
  MB_CHECK(tk_wait(pr, 50) == NULL);
  /* still pending: cancelling reports a huge time left, never a negative one */
  for (int i = 0; i < n; i++) MB_CHECK(mb_cancel_timer(rt, ids[i]) > ((int64_t)1 << 61));
  tk_free(t);
  tk_free(m);
  mb_runtime_free(rt);
  tk_probe_free(pr);
}

MB_TEST(send_after_to_a_name_resolves_at_delivery) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_term t = tk_atom("hello");
  mb_timer_t id = 0;
  /* nothing is registered yet: no error, the timer waits */
  MB_CHECK_EQ_INT(mb_send_after_name(rt, 0, "late\0x", 6, 60, t.p, t.n, &id), 0);
  MB_CHECK(id != 0);
  tk_probe_t *other = tk_probe(rt, NULL), *pr = tk_probe(rt, NULL);
  MB_CHECK_EQ_INT(mb_register(rt, "late", other->pid), 0); /* a different name */
  MB_CHECK_EQ_INT(mb_register_n(rt, "late\0x", 6, pr->pid), 0);
  tk_item_t *it = tk_wait(pr, WAIT_MS);
  MB_CHECK(it && tk_is_atom(it->data, it->len, "hello"));
  free(it);
  MB_CHECK(tk_wait(other, 50) == NULL);
  /* a name nobody holds when it fires: dropped silently */
  MB_CHECK_EQ_INT(mb_send_after_name(rt, 0, "nobody", 6, 5, t.p, t.n, NULL), 0);
  tk_sleep_ms(30);
  MB_CHECK_EQ_INT(mb_send_after_name(rt, 0, "", 0, 5, t.p, t.n, NULL), MB_EINVAL);
  /* and it can be cancelled like any timer */
  MB_CHECK_EQ_INT(mb_send_after_name(rt, 0, "late", 4, 10000, t.p, t.n, &id), 0);
  MB_CHECK(mb_cancel_timer(rt, id) > 0);
  MB_CHECK(tk_wait(other, 50) == NULL);
  tk_free(t);
  mb_runtime_free(rt);
  tk_probe_free(pr);
  tk_probe_free(other);
}

int main(void) {
  MB_RUN(send_after_fires_on_time);
  MB_RUN(send_after_never_early_on_a_busy_scheduler);
  MB_RUN(timers_fire_in_deadline_order);
  MB_RUN(cancel_returns_time_left_and_the_message_never_comes);
  MB_RUN(timers_from_threads_and_processes);
  MB_RUN(timers_from_a_process_fire_on_an_idle_scheduler);
  MB_RUN(timer_to_a_dead_process_is_harmless);
  MB_RUN(runtime_freed_with_pending_timers_leaks_nothing);
  MB_RUN(send_after_arguments);
  MB_RUN(huge_and_infinite_delays_never_fire);
  MB_RUN(send_after_to_a_name_resolves_at_delivery);
  return mb_test_summary();
}
