/* test_alloc.c: allocation failure (injected with core/alloc.h) never turns a
 * kill into a normal exit, never loses a LINK, EXIT or DOWN, and never leaves
 * a receive waiting for ever. */
#include "mb_test.h"
#include "testkit.h"
#include "core/alloc.h"
#include "core/runtime.h"

#define WAIT_MS 3000

static void settle(mb_runtime_t *rt, tk_probe_t *a, tk_probe_t *b) {
  tk_sync(rt, a, WAIT_MS);
  tk_sync(rt, b, WAIT_MS);
}

static int reserve_back(mb_runtime_t *rt) { return atomic_load(&rt->reserve.taken) == 0; }

/* target T, a trapping probe W linked to it, a probe M monitoring it; then an
 * exit signal `reason` reaches T while every allocation fails. */
static void exit_without_memory(const char *reason, size_t big, const char *want) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *t = tk_probe_on(rt, 0, 0), *w = tk_probe_on(rt, 1, 1), *m = tk_probe_on(rt, 1, 0);
  tk_cmd_with(rt, w, "$link", t->pid);
  tk_cmd_with(rt, m, "$monitor", t->pid);
  settle(rt, w, t);
  settle(rt, m, t);
  mb_ref_t ref = tk_last_ref(m);
  tk_term r;
  if (big) { /* a reason too big for a reserve block: {atom, <<big bytes>>} */
    uint8_t *bytes = calloc(1, big);
    mb_enc_t e;
    mb_enc_init(&e, NULL, 0);
    mb_enc_tuple(&e, 2);
    mb_enc_atom(&e, reason, strlen(reason));
    mb_enc_binary(&e, bytes, big);
    r = tk_finish(&e);
    free(bytes);
  } else {
    r = tk_atom(reason);
  }
  long before = mb_alloc_failures();
  mb_alloc_fail_all(1);
  MB_CHECK_EQ_INT(mb_exit_signal(rt, 0, t->pid, r.p, r.n), 0);
  int exited = tk_wait_exit(t, WAIT_MS);
  tk_item_t *ex = tk_wait(w, WAIT_MS), *down = tk_wait(m, WAIT_MS);
  mb_alloc_fail_all(0);
  MB_CHECK(mb_alloc_failures() > before);
  MB_CHECK(exited);
  if (!big) MB_CHECK_EQ_STR(t->reason, want);
  MB_CHECK(tk_is_exit(ex, t->pid, want));
  MB_CHECK(tk_is_down(down, ref, t->pid, want));
  free(ex);
  free(down);
  tk_free(r);
  TK_WAIT_UNTIL(reserve_back(rt), WAIT_MS); /* the blocks went back as the messages were freed */
  MB_CHECK(reserve_back(rt));
  mb_runtime_free(rt);
  tk_probe_free(t);
  tk_probe_free(w);
  tk_probe_free(m);
}

MB_TEST(kill_without_memory_is_still_killed_and_told) { exit_without_memory("kill", 0, "killed"); }
MB_TEST(exit_reason_without_memory_reaches_links_and_monitors) { exit_without_memory("boom", 0, "boom"); }
MB_TEST(reason_too_big_without_memory_still_signals) { exit_without_memory("huge", 4000, "enomem"); }

MB_TEST(more_downs_than_the_reserve_holds_all_arrive) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *t = tk_probe_on(rt, 0, 0), *m = tk_probe_on(rt, 1, 0);
  enum { N = MB_RESERVE_COUNT + 150 };
  for (int i = 0; i < N; i++) tk_cmd_with(rt, m, "$monitor", t->pid);
  settle(rt, m, t);
  MB_REQUIRE(tk_monitors(rt, m->pid) == N);
  tk_term r = tk_atom("boom");
  mb_alloc_fail_all(1);
  MB_CHECK_EQ_INT(mb_exit_signal(rt, 0, t->pid, r.p, r.n), 0);
  int downs = 0;
  for (int i = 0; i < N; i++) {
    tk_item_t *it = tk_wait(m, WAIT_MS);
    if (!it) break;
    uint32_t a;
    downs += tk_is_tagged(it->data, it->len, "DOWN", &a) && tk_elem_is_atom(it->data, it->len, 4, "boom");
    free(it); /* the probe already gave its block back when it took the message */
  }
  mb_alloc_fail_all(0);
  MB_CHECK_EQ_INT(downs, N);
  TK_WAIT_UNTIL(reserve_back(rt), WAIT_MS);
  MB_CHECK(reserve_back(rt));
  tk_free(r);
  mb_runtime_free(rt);
  tk_probe_free(t);
  tk_probe_free(m);
}

MB_TEST(link_that_cannot_be_recorded_is_not_silent) {
  mb_runtime_t *rt = tk_runtime(1);
  tk_probe_t *a = tk_probe(rt, NULL), *b = tk_probe(rt, NULL), *dummy = tk_probe(rt, NULL);
  tk_cmd_with(rt, a, "$trap", 0);
  tk_cmd_with(rt, a, "$link", dummy->pid); /* a's own link array exists now */
  settle(rt, a, dummy);
  tk_term cmd = tk_cmd_pid("$link", b->pid);
  /* 1: the command message, 2: a's LINK signal, 3: b's link array: fails */
  mb_alloc_fail_next(3);
  long before = mb_alloc_failures();
  mb_send(rt, 0, a->pid, cmd.p, cmd.n);
  tk_free(cmd);
  MB_CHECK(tk_exited_with(b, "enomem", WAIT_MS));
  tk_item_t *it = tk_wait(a, WAIT_MS);
  MB_CHECK(tk_is_exit(it, b->pid, "enomem"));
  free(it);
  MB_CHECK_EQ_INT(mb_alloc_failures() - before, 1);
  mb_alloc_fail_next(0);
  mb_runtime_free(rt);
  tk_probe_free(a);
  tk_probe_free(b);
  tk_probe_free(dummy);
}

/* A process that waits for a message with a 40 ms timeout, and exits when it
 * times out. */
typedef struct waiter {
  atomic_int done, runs;
} waiter_t;

static int waiter_run(mb_proc_t *self, void *st) {
  waiter_t *w = st;
  atomic_fetch_add(&w->runs, 1);
  if (mb_proc_timed_out(self)) {
    atomic_store(&w->done, 1);
    return MB_RUN_EXIT;
  }
  mb_proc_set_timeout(self, 40);
  return MB_RUN_WAIT;
}

static void waiter_destroy(mb_proc_t *self, void *st, const uint8_t *r, size_t n) {
  (void)self, (void)st, (void)r, (void)n;
}

static const mb_behaviour_t waiter_behaviour = {waiter_run, waiter_destroy, NULL, NULL};

MB_TEST(receive_timeout_fires_after_allocation_failures) {
  mb_runtime_t *rt = tk_runtime(1);
  waiter_t w;
  atomic_init(&w.done, 0);
  atomic_init(&w.runs, 0);
  tk_probe_t *first = tk_probe(rt, NULL); /* the process table's first chunk exists now */
  mb_alloc_fail_all(1);
  mb_pid_t pid;
  MB_CHECK_EQ_INT(mb_spawn(rt, &waiter_behaviour, &w, NULL, &pid), 0); /* no allocation */
  tk_sleep_ms(100); /* its timer cannot be armed meanwhile */
  mb_alloc_fail_all(0);
  TK_WAIT_UNTIL(atomic_load(&w.done), WAIT_MS);
  MB_CHECK(atomic_load(&w.done));
  MB_CHECK(atomic_load(&w.runs) > 2); /* it kept trying rather than wait for ever */
  mb_runtime_free(rt);
  tk_probe_free(first);
}

MB_TEST(exit_reason_set_without_memory_is_not_normal) {
  mb_runtime_t *rt = tk_runtime(1);
  tk_probe_t *p = tk_probe(rt, NULL), *m = tk_probe(rt, NULL);
  tk_cmd_with(rt, m, "$monitor", p->pid);
  settle(rt, m, p);
  tk_term r = tk_atom("custom_reason");
  tk_term cmd = tk_cmd_term("$exit", r);
  /* 1: the command message, 2: the copy of the reason mb_proc_exit makes */
  mb_alloc_fail_next(2);
  mb_send(rt, 0, p->pid, cmd.p, cmd.n);
  MB_CHECK(tk_exited_with(p, "enomem", WAIT_MS));
  tk_item_t *it = tk_wait(m, WAIT_MS);
  MB_CHECK(tk_is_down(it, tk_last_ref(m), p->pid, "enomem"));
  free(it);
  mb_alloc_fail_next(0);
  tk_free(r);
  tk_free(cmd);
  mb_runtime_free(rt);
  tk_probe_free(p);
  tk_probe_free(m);
}

int main(void) {
  MB_RUN(kill_without_memory_is_still_killed_and_told);
  MB_RUN(exit_reason_without_memory_reaches_links_and_monitors);
  MB_RUN(reason_too_big_without_memory_still_signals);
  MB_RUN(more_downs_than_the_reserve_holds_all_arrive);
  MB_RUN(link_that_cannot_be_recorded_is_not_silent);
  MB_RUN(receive_timeout_fires_after_allocation_failures);
  MB_RUN(exit_reason_set_without_memory_is_not_normal);
  return mb_test_summary();
}
