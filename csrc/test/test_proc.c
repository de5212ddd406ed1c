/* test_proc.c: spawning, sending, placement, pid generations, host-driven mode. */
#include "mb_test.h"
#include "testkit.h"

MB_TEST(spawn_and_send) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *pr = tk_probe(rt, NULL);
  MB_CHECK(mb_alive(rt, pr->pid));
  tk_term t = tk_int(42);
  MB_CHECK_EQ_INT(mb_send(rt, 0, pr->pid, t.p, t.n), 0);
  tk_free(t);
  tk_item_t *it = tk_wait(pr, 2000);
  MB_REQUIRE(it != NULL);
  MB_CHECK_EQ_INT(tk_get_int(it->data, it->len), 42);
  MB_CHECK_EQ_INT(it->from, 0);
  free(it);
  mb_runtime_free(rt);
  MB_CHECK(pr->exited);
  MB_CHECK_EQ_STR(pr->reason, "shutdown");
  tk_probe_free(pr);
}

MB_TEST(fifo_per_sender_many_messages) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *pr = tk_probe(rt, NULL);
  for (int i = 0; i < 10000; i++) {
    tk_term t = tk_int(i);
    mb_send(rt, 0, pr->pid, t.p, t.n);
    tk_free(t);
  }
  int ok = 1;
  for (int i = 0; i < 10000 && ok; i++) {
    tk_item_t *it = tk_wait(pr, 2000);
    ok = it && tk_get_int(it->data, it->len) == i;
    free(it);
  }
  MB_CHECK(ok);
  mb_runtime_free(rt);
  tk_probe_free(pr);
}

MB_TEST(send_to_dead_or_bogus_pid_is_silent) {
  mb_runtime_t *rt = tk_runtime(1);
  tk_term t = tk_int(1);
  MB_CHECK_EQ_INT(mb_send(rt, 0, mb_pid_make(0, 999999, 3), t.p, t.n), 0);
  MB_CHECK_EQ_INT(mb_send(rt, 0, mb_pid_make(7, 1, 1), t.p, t.n), 0);
  MB_CHECK_EQ_INT(mb_send(rt, 0, 0, t.p, t.n), 0);
  MB_CHECK_EQ_INT(mb_send(rt, 0, 1, NULL, 0), MB_EBADTERM);
  tk_free(t);
  mb_runtime_free(rt);
}

static int stop_on_first(mb_proc_t *self, const mb_msg_t *m, void *ud) {
  (void)self;
  (void)ud;
  return m != NULL; /* exit normally at the first message */
}

MB_TEST(stale_pid_never_reaches_new_process) {
  mb_runtime_t *rt = tk_runtime(1);
  mb_pid_t old;
  MB_REQUIRE(mb_spawn_native(rt, stop_on_first, NULL, NULL, NULL, &old) == 0);
  tk_term t = tk_int(1);
  mb_send(rt, 0, old, t.p, t.n);
  for (int i = 0; i < 200 && mb_alive(rt, old); i++) tk_sleep_ms(5);
  MB_CHECK(!mb_alive(rt, old));
  /* slots are reused in FIFO order: the next spawn takes another slot */
  tk_probe_t *pr = tk_probe(rt, NULL);
  MB_CHECK(mb_pid_index(pr->pid) != mb_pid_index(old));
  mb_send(rt, 0, old, t.p, t.n);
  MB_CHECK(tk_wait(pr, 100) == NULL);
  tk_free(t);
  mb_runtime_free(rt);
  tk_probe_free(pr);
}

MB_TEST(placement_spreads_and_pins) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *a[8];
  int on[2] = {0, 0};
  for (int i = 0; i < 8; i++) {
    a[i] = tk_probe(rt, NULL);
    mb_proc_info_t info;
    MB_REQUIRE(mb_proc_info(rt, a[i]->pid, &info) == 0);
    on[info.scheduler]++;
  }
  MB_CHECK(on[0] >= 3 && on[1] >= 3);
  mb_spawn_opts_t o = {0};
  o.scheduler = 2;
  tk_probe_t *pinned = tk_probe(rt, &o);
  mb_proc_info_t info;
  MB_CHECK_EQ_INT(mb_proc_info(rt, pinned->pid, &info), 0);
  MB_CHECK_EQ_INT(info.scheduler, 1);
  o.scheduler = 3;
  mb_pid_t bad;
  MB_CHECK_EQ_INT(mb_spawn_native(rt, stop_on_first, NULL, NULL, &o, &bad), MB_EINVAL);
  mb_runtime_free(rt);
  for (int i = 0; i < 8; i++) tk_probe_free(a[i]);
  tk_probe_free(pinned);
}

/* ping-pong: two natives bounce a counter down to zero, then report */
typedef struct pp {
  mb_pid_t peer, report;
} pp_t;

static int pp_fn(mb_proc_t *self, const mb_msg_t *m, void *ud) {
  pp_t *st = ud;
  if (!m) return 0;
  size_t n;
  const uint8_t *p = mb_msg_data(m, &n);
  int64_t v = tk_get_int(p, n);
  tk_term t = tk_int(v - 1);
  mb_send(mb_proc_runtime(self), mb_self(self), v > 0 ? st->peer : st->report, t.p, t.n);
  tk_free(t);
  return 0;
}

static void pingpong(int sched_a, int sched_b) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *pr = tk_probe(rt, NULL);
  pp_t a = {0, pr->pid}, b = {0, pr->pid};
  mb_spawn_opts_t oa = {0}, ob = {0};
  oa.scheduler = sched_a;
  ob.scheduler = sched_b;
  mb_pid_t pa, pb;
  /* peers are set before the first message, which is what starts them */
  MB_CHECK_EQ_INT(mb_spawn_native(rt, pp_fn, NULL, &a, &oa, &pa), 0);
  MB_CHECK_EQ_INT(mb_spawn_native(rt, pp_fn, NULL, &b, &ob, &pb), 0);
  a.peer = pb;
  b.peer = pa;
  tk_sleep_ms(10);
  tk_term t = tk_int(20000);
  mb_send(rt, 0, pa, t.p, t.n);
  tk_free(t);
  tk_item_t *it = tk_wait(pr, 10000);
  MB_REQUIRE(it != NULL);
  MB_CHECK_EQ_INT(tk_get_int(it->data, it->len), -1);
  free(it);
  mb_stats_t st;
  mb_runtime_stats(rt, -1, &st);
  MB_CHECK(st.sent >= 20000);
  MB_CHECK(st.received >= 20000);
  mb_runtime_free(rt);
  tk_probe_free(pr);
}

MB_TEST(pingpong_same_scheduler) { pingpong(1, 1); }
MB_TEST(pingpong_across_schedulers) { pingpong(1, 2); }

MB_TEST(host_driven_step) {
  mb_runtime_opts_t o = {0};
  o.schedulers = 1;
  o.host_driven = 1;
  mb_runtime_t *rt;
  MB_REQUIRE(mb_runtime_new(&o, &rt) == 0);
  tk_probe_t *pr = tk_probe(rt, NULL);
  tk_term t = tk_int(7);
  mb_send(rt, 0, pr->pid, t.p, t.n);
  tk_free(t);
  /* nothing runs until the host steps */
  MB_CHECK(tk_wait(pr, 20) == NULL);
  MB_CHECK_EQ_INT(mb_runtime_step(rt, 1000), 0);
  tk_item_t *it = tk_wait(pr, 10);
  MB_REQUIRE(it != NULL);
  MB_CHECK_EQ_INT(tk_get_int(it->data, it->len), 7);
  free(it);
  mb_runtime_stop(rt);
  MB_CHECK_EQ_INT(mb_runtime_step(rt, 1000), MB_ESTOPPED);
  MB_CHECK(pr->exited);
  mb_runtime_free(rt);
  tk_probe_free(pr);
}

MB_TEST(spawn_after_stop_fails) {
  mb_runtime_t *rt = tk_runtime(1);
  mb_runtime_stop(rt);
  mb_pid_t p;
  MB_CHECK_EQ_INT(mb_spawn_native(rt, stop_on_first, NULL, NULL, NULL, &p), MB_ESTOPPED);
  mb_runtime_free(rt);
}

MB_TEST(bad_arguments) {
  mb_runtime_t *rt;
  mb_runtime_opts_t o = {0};
  o.schedulers = -1;
  MB_CHECK_EQ_INT(mb_runtime_new(&o, &rt), MB_EINVAL);
  rt = tk_runtime(1);
  mb_pid_t p;
  MB_CHECK_EQ_INT(mb_spawn_native(rt, NULL, NULL, NULL, NULL, &p), MB_EINVAL);
  mb_spawn_opts_t so = {0};
  so.link = 1; /* link needs a parent process */
  MB_CHECK_EQ_INT(mb_spawn_native(rt, stop_on_first, NULL, NULL, &so, &p), MB_EINVAL);
  MB_CHECK(strlen(mb_strerror(MB_ENOPROC)) > 0);
  mb_runtime_free(rt);
}

int main(void) {
  MB_RUN(spawn_and_send);
  MB_RUN(fifo_per_sender_many_messages);
  MB_RUN(send_to_dead_or_bogus_pid_is_silent);
  MB_RUN(stale_pid_never_reaches_new_process);
  MB_RUN(placement_spreads_and_pins);
  MB_RUN(pingpong_same_scheduler);
  MB_RUN(pingpong_across_schedulers);
  MB_RUN(host_driven_step);
  MB_RUN(spawn_after_stop_fails);
  MB_RUN(bad_arguments);
  return mb_test_summary();
}
