/* test_supervisor.c: mb_supervisor_start for native children: each strategy,
 * each restart type, shutdown timeouts and brutal kill, restart intensity,
 * start failures, stop order, which_children / count_children, bad specs. */
#include "mb_test.h"
#include "testkit.h"

#define WAIT_MS 3000

/* A worker: exits with reason crash on 'crash', normal on 'normal'. With trap,
 * it traps exits: on {'EXIT', _, shutdown} it exits shutdown, unless
 * ignore_shutdown, when it keeps running (only kill ends it). */
typedef struct worker {
  const char *name;
  int trap, ignore_shutdown;
  int fail_start; /* start returns this instead of spawning */
} worker_t;

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char start_log[256], stop_log[256];
static char last_reason[64];
static atomic_int nstarts;

static void log_add(char *log, const char *name) {
  pthread_mutex_lock(&log_mu);
  strncat(log, name, 255 - strlen(log));
  pthread_mutex_unlock(&log_mu);
}

static void reset_logs(void) {
  pthread_mutex_lock(&log_mu);
  start_log[0] = stop_log[0] = last_reason[0] = 0;
  pthread_mutex_unlock(&log_mu);
  atomic_store(&nstarts, 0);
}

static int log_is(char *log, const char *want) {
  pthread_mutex_lock(&log_mu);
  int eq = !strcmp(log, want);
  pthread_mutex_unlock(&log_mu);
  return eq;
}

static int worker_fn(mb_proc_t *self, const mb_msg_t *m, void *ud) {
  worker_t *w = ud;
  (void)self;
  if (!m) return 0; /* trapping is set at spawn, so no exit can come first */
  size_t n;
  const uint8_t *p = mb_msg_data(m, &n);
  if (tk_is_atom(p, n, "crash")) {
    tk_term r = tk_atom("crash");
    mb_proc_exit(self, r.p, r.n);
    tk_free(r);
    return 1;
  }
  if (tk_is_atom(p, n, "normal")) return 1;
  char reason[32];
  if (tk_is_tagged(p, n, "EXIT", NULL) && !tk_reason_atom(p, n, reason, sizeof reason) &&
      !strcmp(reason, "shutdown") && !w->ignore_shutdown) {
    tk_term r = tk_atom("shutdown");
    mb_proc_exit(self, r.p, r.n);
    tk_free(r);
    return 1;
  }
  return 0;
}

static void worker_exit(void *ud, const uint8_t *reason, size_t len) {
  worker_t *w = ud;
  log_add(stop_log, w->name);
  mb_dec_t d;
  const char *s;
  size_t n;
  pthread_mutex_lock(&log_mu);
  if (!mb_dec_init(&d, NULL, reason, len) && !mb_dec_atom(&d, &s, &n) && n < sizeof last_reason) {
    memcpy(last_reason, s, n);
    last_reason[n] = 0;
  }
  pthread_mutex_unlock(&log_mu);
}

static int worker_start(mb_proc_t *sup, void *arg, mb_pid_t *pid) {
  worker_t *w = arg;
  if (w->fail_start) return w->fail_start;
  mb_spawn_opts_t o = {0};
  o.parent = sup;
  o.link = 1;
  o.trap_exit = w->trap;
  int r = mb_spawn_native(mb_proc_runtime(sup), worker_fn, worker_exit, w, &o, pid);
  if (!r) {
    log_add(start_log, w->name);
    atomic_fetch_add(&nstarts, 1);
  }
  return r;
}

static worker_t wa = {"a", 0, 0, 0}, wb = {"b", 0, 0, 0}, wc = {"c", 0, 0, 0};

static mb_child_spec_t child(worker_t *w, int restart) {
  mb_child_spec_t c = {0};
  c.id = w->name;
  c.start = worker_start;
  c.arg = w;
  c.restart = restart;
  return c;
}

/* The pids of a supervisor's children, in order; returns their number. */
static int pids(mb_runtime_t *rt, mb_pid_t sup, mb_pid_t *out, int cap) {
  mb_child_info_t info[8];
  int n = mb_supervisor_which_children(rt, sup, info, 8);
  for (int i = 0; i < n && i < cap; i++) out[i] = info[i].pid;
  return n;
}

/* Waits until all n children run (a pid each) and differ from `old` where given. */
static int wait_running(mb_runtime_t *rt, mb_pid_t sup, int n, mb_pid_t *now) {
  uint64_t end = tk_now_ns() + (uint64_t)WAIT_MS * 1000000u;
  while (tk_now_ns() < end) {
    mb_sup_counts_t c;
    if (mb_supervisor_count_children(rt, sup, &c) == 0 && c.active == n && c.specs == n) {
      pids(rt, sup, now, n);
      int ok = 1;
      for (int i = 0; i < n; i++) ok = ok && now[i] && mb_alive(rt, now[i]);
      if (ok) return 1;
    }
    tk_sleep_us(200);
  }
  return 0;
}

static mb_pid_t start_sup(mb_runtime_t *rt, int strategy, mb_child_spec_t *ch, size_t n) {
  mb_sup_spec_t s = {0};
  s.strategy = strategy;
  s.children = ch;
  s.nchildren = n;
  mb_pid_t sup = 0;
  if (mb_supervisor_start(rt, &s, &sup)) abort();
  return sup;
}

/* Crashes child i and waits until the supervisor has restarted what it must. */
static void crash(mb_runtime_t *rt, mb_pid_t pid, int expect_starts) {
  tk_send_atom(rt, 0, pid, "crash");
  TK_WAIT_UNTIL(atomic_load(&nstarts) >= expect_starts, WAIT_MS);
}

static void strategy_case(int strategy, const int *same) {
  reset_logs();
  mb_runtime_t *rt = tk_runtime(2);
  mb_child_spec_t ch[3] = {child(&wa, 0), child(&wb, 0), child(&wc, 0)};
  mb_pid_t sup = start_sup(rt, strategy, ch, 3), before[3], after[3];
  MB_REQUIRE(wait_running(rt, sup, 3, before));
  MB_CHECK(log_is(start_log, "abc"));
  int restarted = 3 - same[0] - same[1] - same[2];
  crash(rt, before[1], 3 + restarted);
  MB_CHECK(wait_running(rt, sup, 3, after));
  tk_sleep_ms(20); /* nothing more restarts */
  MB_CHECK_EQ_INT(atomic_load(&nstarts), 3 + restarted);
  pids(rt, sup, after, 3);
  for (int i = 0; i < 3; i++) {
    MB_CHECK_EQ_INT(after[i] == before[i], same[i]);
    MB_CHECK_EQ_INT(mb_alive(rt, before[i]), same[i]);
  }
  mb_runtime_free(rt);
}

MB_TEST(one_for_one_restarts_only_the_crashed_child) {
  const int same[3] = {1, 0, 1};
  strategy_case(MB_SUP_ONE_FOR_ONE, same);
  MB_CHECK(log_is(start_log, "abcb"));
}

MB_TEST(one_for_all_restarts_every_child_in_order) {
  const int same[3] = {0, 0, 0};
  strategy_case(MB_SUP_ONE_FOR_ALL, same);
  /* the others stop in reverse order (c, a), then all start in order */
  MB_CHECK(log_is(start_log, "abcabc"));
  MB_CHECK(!strncmp(stop_log, "bca", 3));
}

MB_TEST(rest_for_one_restarts_the_child_and_those_after_it) {
  const int same[3] = {1, 0, 0};
  strategy_case(MB_SUP_REST_FOR_ONE, same);
  MB_CHECK(log_is(start_log, "abcbc"));
  MB_CHECK(!strncmp(stop_log, "bc", 2));
}

MB_TEST(transient_child_restarts_only_after_an_abnormal_exit) {
  reset_logs();
  mb_runtime_t *rt = tk_runtime(2);
  mb_child_spec_t ch[1] = {child(&wa, MB_CHILD_TRANSIENT)};
  mb_pid_t sup = start_sup(rt, MB_SUP_ONE_FOR_ONE, ch, 1), p[1];
  MB_REQUIRE(wait_running(rt, sup, 1, p));
  crash(rt, p[0], 2);
  MB_CHECK_EQ_INT(atomic_load(&nstarts), 2);
  MB_REQUIRE(wait_running(rt, sup, 1, p));
  tk_send_atom(rt, 0, p[0], "normal");
  mb_sup_counts_t c = {0};
  TK_WAIT_UNTIL(mb_supervisor_count_children(rt, sup, &c) == 0 && c.active == 0, WAIT_MS);
  MB_CHECK_EQ_INT(c.specs, 1); /* kept, not running */
  MB_CHECK_EQ_INT(c.active, 0);
  tk_sleep_ms(20);
  MB_CHECK_EQ_INT(atomic_load(&nstarts), 2);
  mb_child_info_t info[2];
  MB_CHECK_EQ_INT(mb_supervisor_which_children(rt, sup, info, 2), 1);
  MB_CHECK_EQ_STR(info[0].id, "a");
  MB_CHECK(info[0].pid == 0);
  MB_CHECK_EQ_INT(info[0].restart, MB_CHILD_TRANSIENT);
  mb_runtime_free(rt);
}

MB_TEST(temporary_child_is_never_restarted_and_leaves_the_table) {
  reset_logs();
  mb_runtime_t *rt = tk_runtime(2);
  mb_child_spec_t ch[2] = {child(&wa, MB_CHILD_TEMPORARY), child(&wb, MB_CHILD_PERMANENT)};
  mb_pid_t sup = start_sup(rt, MB_SUP_ONE_FOR_ALL, ch, 2), p[2];
  MB_REQUIRE(wait_running(rt, sup, 2, p));
  tk_send_atom(rt, 0, p[0], "crash");
  mb_sup_counts_t c = {0};
  TK_WAIT_UNTIL(mb_supervisor_count_children(rt, sup, &c) == 0 && c.specs == 1, WAIT_MS);
  MB_CHECK_EQ_INT(c.specs, 1);
  MB_CHECK_EQ_INT(c.active, 1);
  tk_sleep_ms(20);
  /* not restarted, and its exit does not restart its sibling (one_for_all) */
  MB_CHECK_EQ_INT(atomic_load(&nstarts), 2);
  MB_CHECK(mb_alive(rt, p[1]));
  mb_child_info_t info[2];
  MB_CHECK_EQ_INT(mb_supervisor_which_children(rt, sup, info, 2), 1);
  MB_CHECK_EQ_STR(info[0].id, "b");
  mb_runtime_free(rt);
}

/* A probe monitoring the supervisor: returns the DOWN reason atom in buf. */
static int sup_down_reason(mb_runtime_t *rt, tk_probe_t *pr, char *buf, size_t cap) {
  (void)rt;
  tk_item_t *it = tk_wait(pr, WAIT_MS);
  if (!it) return -1;
  int r = tk_is_tagged(it->data, it->len, "DOWN", NULL) ? tk_reason_atom(it->data, it->len, buf, cap) : -1;
  free(it);
  return r;
}

MB_TEST(intensity_exceeded_stops_children_and_exits_shutdown) {
  reset_logs();
  mb_runtime_t *rt = tk_runtime(2);
  mb_child_spec_t ch[2] = {child(&wa, 0), child(&wb, 0)};
  mb_sup_spec_t s = {0};
  s.max_restarts = 2;
  s.max_seconds = 10;
  s.children = ch;
  s.nchildren = 2;
  mb_pid_t sup, p[2];
  MB_REQUIRE(mb_supervisor_start(rt, &s, &sup) == 0);
  tk_probe_t *pr = tk_probe_on(rt, -1, 0);
  tk_cmd(rt, pr, tk_cmd_pid("$monitor", sup));
  for (int i = 0; i < 2; i++) {
    MB_REQUIRE(wait_running(rt, sup, 2, p));
    crash(rt, p[1], 3 + i);
  }
  MB_REQUIRE(wait_running(rt, sup, 2, p));
  MB_CHECK(mb_alive(rt, sup)); /* 2 restarts: within the intensity */
  tk_send_atom(rt, 0, p[1], "crash"); /* the third in the window: too many */
  char reason[32] = "";
  MB_CHECK_EQ_INT(sup_down_reason(rt, pr, reason, sizeof reason), 0);
  MB_CHECK_EQ_STR(reason, "shutdown");
  MB_CHECK(!mb_alive(rt, p[0]));
  MB_CHECK_EQ_INT(atomic_load(&nstarts), 4);
  MB_CHECK_EQ_INT(mb_supervisor_which_children(rt, sup, NULL, 0), MB_ENOPROC);
  mb_runtime_free(rt);
  tk_probe_free(pr);
}

MB_TEST(restarts_outside_the_window_are_forgotten) {
  reset_logs();
  mb_runtime_t *rt = tk_runtime(2);
  mb_child_spec_t ch[1] = {child(&wa, 0)};
  mb_sup_spec_t s = {0};
  s.max_restarts = 1;
  s.max_seconds = 1;
  s.children = ch;
  s.nchildren = 1;
  mb_pid_t sup, p[1];
  MB_REQUIRE(mb_supervisor_start(rt, &s, &sup) == 0);
  for (int i = 0; i < 3; i++) {
    MB_REQUIRE(wait_running(rt, sup, 1, p));
    crash(rt, p[0], 2 + i);
    if (i < 2) tk_sleep_ms(1100);
  }
  MB_CHECK(wait_running(rt, sup, 1, p));
  MB_CHECK(mb_alive(rt, sup));
  MB_CHECK_EQ_INT(atomic_load(&nstarts), 4);
  mb_runtime_free(rt);
}

MB_TEST(no_restarts_allowed_exits_at_the_first_crash) {
  reset_logs();
  mb_runtime_t *rt = tk_runtime(1);
  mb_child_spec_t ch[1] = {child(&wa, 0)};
  mb_sup_spec_t s = {0};
  s.max_restarts = MB_SUP_NO_RESTARTS;
  s.children = ch;
  s.nchildren = 1;
  mb_pid_t sup, p[1];
  MB_REQUIRE(mb_supervisor_start(rt, &s, &sup) == 0);
  MB_REQUIRE(wait_running(rt, sup, 1, p));
  tk_send_atom(rt, 0, p[0], "crash");
  TK_WAIT_UNTIL(!mb_alive(rt, sup), WAIT_MS);
  MB_CHECK(!mb_alive(rt, sup));
  MB_CHECK_EQ_INT(atomic_load(&nstarts), 1);
  mb_runtime_free(rt);
}

MB_TEST(stop_ends_children_in_reverse_order_with_shutdown) {
  reset_logs();
  worker_t ta = {"a", 1, 0, 0}, tb = {"b", 1, 0, 0}, tc = {"c", 1, 0, 0};
  mb_runtime_t *rt = tk_runtime(2);
  mb_child_spec_t ch[3] = {child(&ta, 0), child(&tb, 0), child(&tc, 0)};
  mb_pid_t sup = start_sup(rt, MB_SUP_ONE_FOR_ONE, ch, 3), p[3];
  MB_REQUIRE(wait_running(rt, sup, 3, p));
  tk_probe_t *pr = tk_probe_on(rt, -1, 0);
  tk_cmd(rt, pr, tk_cmd_pid("$monitor", sup));
  MB_CHECK_EQ_INT(mb_supervisor_stop(rt, sup), 0);
  char reason[32] = "";
  MB_CHECK_EQ_INT(sup_down_reason(rt, pr, reason, sizeof reason), 0);
  MB_CHECK_EQ_STR(reason, "shutdown");
  TK_WAIT_UNTIL(log_is(stop_log, "cba"), WAIT_MS);
  MB_CHECK(log_is(stop_log, "cba"));
  MB_CHECK(log_is(last_reason, "shutdown")); /* they trapped and chose to exit */
  MB_CHECK_EQ_INT(atomic_load(&nstarts), 3); /* none restarted while stopping */
  MB_CHECK_EQ_INT(mb_supervisor_stop(rt, sup), MB_ENOPROC);
  mb_runtime_free(rt);
  tk_probe_free(pr);
}

static void shutdown_case(int64_t shutdown_ms, int min_ms, int max_ms) {
  reset_logs();
  worker_t stubborn = {"s", 1, 1, 0};
  mb_runtime_t *rt = tk_runtime(2);
  mb_child_spec_t ch[1] = {child(&stubborn, 0)};
  ch[0].shutdown_ms = shutdown_ms;
  mb_pid_t sup = start_sup(rt, MB_SUP_ONE_FOR_ONE, ch, 1), p[1];
  MB_REQUIRE(wait_running(rt, sup, 1, p));
  uint64_t t0 = tk_now_ns();
  mb_supervisor_stop(rt, sup);
  TK_WAIT_UNTIL(!mb_alive(rt, sup), WAIT_MS);
  uint64_t ms = (tk_now_ns() - t0) / 1000000u;
  MB_CHECK(!mb_alive(rt, sup));
  MB_CHECK(!mb_alive(rt, p[0]));
  MB_CHECK(log_is(last_reason, "killed"));
  MB_CHECK((int)ms >= min_ms);
  MB_CHECK((int)ms < max_ms);
  mb_runtime_free(rt);
}

MB_TEST(shutdown_timeout_then_kill) { shutdown_case(150, 150, 2000); }

MB_TEST(brutal_kill_does_not_wait) { shutdown_case(MB_SHUTDOWN_BRUTAL_KILL, 0, 140); }

MB_TEST(failed_start_stops_started_children_and_exits) {
  reset_logs();
  worker_t bad = {"bad", 0, 0, MB_ENOMEM};
  worker_t ta = {"a", 1, 0, 0};
  mb_runtime_t *rt = tk_runtime(2);
  mb_child_spec_t ch[3] = {child(&ta, 0), child(&bad, 0), child(&wc, 0)};
  /* a probe spawns nothing: watch the supervisor from a probe via its pid */
  mb_sup_spec_t s = {0};
  s.children = ch;
  s.nchildren = 3;
  tk_probe_t *pr = tk_probe_on(rt, 0, 0);
  mb_spawn_opts_t so = {0};
  so.scheduler = 2; /* scheduler 1: the probe on 0 monitors it before it runs long */
  s.spawn = &so;
  mb_pid_t sup;
  MB_REQUIRE(mb_supervisor_start(rt, &s, &sup) == 0);
  tk_cmd(rt, pr, tk_cmd_pid("$monitor", sup));
  tk_item_t *it = tk_wait(pr, WAIT_MS);
  MB_REQUIRE(it != NULL);
  /* {'DOWN', Ref, process, Pid, {shutdown, {failed_to_start_child, bad, -2}}}
   * (or noproc if it was already gone: then check the child log only) */
  mb_dec_t d;
  uint32_t a;
  const char *txt;
  size_t n;
  int64_t code = 0;
  MB_CHECK(mb_dec_init(&d, NULL, it->data, it->len) == 0 && mb_dec_tuple(&d, &a) == 0 && a == 5);
  for (int i = 0; i < 4; i++) mb_dec_skip(&d);
  if (mb_dec_type(&d) == MB_T_TUPLE) {
    MB_CHECK(mb_dec_tuple(&d, &a) == 0 && a == 2);
    MB_CHECK(mb_dec_atom(&d, &txt, &n) == 0 && n == 8 && !memcmp(txt, "shutdown", 8));
    MB_CHECK(mb_dec_tuple(&d, &a) == 0 && a == 3);
    MB_CHECK(mb_dec_atom(&d, &txt, &n) == 0 && n == 21);
    MB_CHECK(mb_dec_atom(&d, &txt, &n) == 0 && n == 3 && !memcmp(txt, "bad", 3));
    MB_CHECK(mb_dec_int(&d, &code) == 0 && code == MB_ENOMEM);
  }
  free(it);
  TK_WAIT_UNTIL(log_is(stop_log, "a"), WAIT_MS);
  MB_CHECK(log_is(start_log, "a")); /* c never started */
  MB_CHECK(log_is(stop_log, "a"));
  mb_runtime_free(rt);
  tk_probe_free(pr);
}

/* A parent process that starts a supervisor linked to itself on its first
 * message, then exits with reason 'boom' on 'die'. */
typedef struct parent_ctx {
  mb_child_spec_t ch[2];
  atomic_ullong sup;
} parent_ctx_t;

static int parent_fn(mb_proc_t *self, const mb_msg_t *m, void *ud) {
  parent_ctx_t *c = ud;
  if (!m) {
    mb_spawn_opts_t o = {0};
    o.parent = self;
    o.link = 1;
    mb_sup_spec_t s = {0};
    s.children = c->ch;
    s.nchildren = 2;
    s.spawn = &o;
    mb_pid_t sup = 0;
    if (mb_supervisor_start(mb_proc_runtime(self), &s, &sup)) return 1;
    atomic_store(&c->sup, sup);
    return 0;
  }
  size_t n;
  const uint8_t *p = mb_msg_data(m, &n);
  if (tk_is_atom(p, n, "die")) {
    tk_term r = tk_atom("boom");
    mb_proc_exit(self, r.p, r.n);
    tk_free(r);
    return 1;
  }
  return 0;
}

MB_TEST(parent_exit_stops_the_supervisor_with_its_reason) {
  reset_logs();
  worker_t ta = {"a", 1, 0, 0}, tb = {"b", 1, 0, 0};
  mb_runtime_t *rt = tk_runtime(2);
  parent_ctx_t c = {{child(&ta, 0), child(&tb, 0)}, 0};
  mb_pid_t parent;
  MB_REQUIRE(mb_spawn_native(rt, parent_fn, NULL, &c, NULL, &parent) == 0);
  TK_WAIT_UNTIL(atomic_load(&c.sup) != 0, WAIT_MS);
  mb_pid_t sup = atomic_load(&c.sup), p[2];
  MB_REQUIRE(sup != 0);
  MB_REQUIRE(wait_running(rt, sup, 2, p));
  tk_probe_t *pr = tk_probe_on(rt, -1, 0);
  tk_cmd(rt, pr, tk_cmd_pid("$monitor", sup));
  tk_send_atom(rt, 0, parent, "die");
  char reason[32] = "";
  MB_CHECK_EQ_INT(sup_down_reason(rt, pr, reason, sizeof reason), 0);
  MB_CHECK_EQ_STR(reason, "boom");
  TK_WAIT_UNTIL(log_is(stop_log, "ba"), WAIT_MS);
  MB_CHECK(log_is(stop_log, "ba"));
  mb_runtime_free(rt);
  tk_probe_free(pr);
}

MB_TEST(bad_specs_are_refused) {
  mb_runtime_t *rt = tk_runtime(1);
  mb_pid_t sup;
  mb_child_spec_t ch[2] = {child(&wa, 0), child(&wa, 0)};
  mb_sup_spec_t s = {0};
  s.children = ch;
  s.nchildren = 2; /* duplicate id */
  MB_CHECK_EQ_INT(mb_supervisor_start(rt, &s, &sup), MB_EINVAL);
  s.nchildren = 1;
  s.strategy = 7;
  MB_CHECK_EQ_INT(mb_supervisor_start(rt, &s, &sup), MB_EINVAL);
  s.strategy = 0;
  ch[0].restart = 9;
  MB_CHECK_EQ_INT(mb_supervisor_start(rt, &s, &sup), MB_EINVAL);
  ch[0].restart = 0;
  ch[0].start = NULL;
  MB_CHECK_EQ_INT(mb_supervisor_start(rt, &s, &sup), MB_EINVAL);
  ch[0].start = worker_start;
  ch[0].id = "an id that is much too long for the sixty-four byte id field of the table";
  MB_CHECK_EQ_INT(mb_supervisor_start(rt, &s, &sup), MB_EINVAL);
  ch[0].id = "a";
  s.max_restarts = -5;
  MB_CHECK_EQ_INT(mb_supervisor_start(rt, &s, &sup), MB_EINVAL);
  MB_CHECK_EQ_INT(mb_supervisor_start(rt, NULL, &sup), MB_EINVAL);
  MB_CHECK_EQ_INT(mb_supervisor_which_children(rt, 12345, NULL, 0), MB_ENOPROC);
  mb_sup_counts_t c;
  MB_CHECK_EQ_INT(mb_supervisor_count_children(rt, 12345, &c), MB_ENOPROC);
  mb_runtime_free(rt);
}

int main(void) {
  MB_RUN(one_for_one_restarts_only_the_crashed_child);
  MB_RUN(one_for_all_restarts_every_child_in_order);
  MB_RUN(rest_for_one_restarts_the_child_and_those_after_it);
  MB_RUN(transient_child_restarts_only_after_an_abnormal_exit);
  MB_RUN(temporary_child_is_never_restarted_and_leaves_the_table);
  MB_RUN(intensity_exceeded_stops_children_and_exits_shutdown);
  MB_RUN(restarts_outside_the_window_are_forgotten);
  MB_RUN(no_restarts_allowed_exits_at_the_first_crash);
  MB_RUN(stop_ends_children_in_reverse_order_with_shutdown);
  MB_RUN(shutdown_timeout_then_kill);
  MB_RUN(brutal_kill_does_not_wait);
  MB_RUN(failed_start_stops_started_children_and_exits);
  MB_RUN(parent_exit_stops_the_supervisor_with_its_reason);
  MB_RUN(bad_specs_are_refused);
  return mb_test_summary();
}
