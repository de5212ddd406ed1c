/* test_signal.c: exit signals, links and monitors, case by case as
 * OTP-SEMANTICS.md "Exit signals, links, monitors" lists them (node loss aside).
 * Processes are probes (testkit.h) spread over two schedulers so that signals
 * cross threads; a few cases need a process doing several things in one
 * handler and use a small native process of their own. */
#include <stdatomic.h>
#include "mb_test.h"
#include "testkit.h"

#define WAIT_MS 2000

static mb_pid_t dead_pid(mb_runtime_t *rt) {
  tk_probe_t *pr = tk_probe(rt, NULL);
  mb_pid_t pid = pr->pid;
  tk_cmd_exit(rt, pr, "normal");
  tk_wait_exit(pr, WAIT_MS);
  tk_probe_free(pr);
  return pid;
}

/* Waits until `to` has applied the signals `from` sent it while handling the
 * commands queued so far: once from answers a sync, its signals are in to's
 * inbox ahead of the sync we send to next. (Used instead of counts seen from
 * the other side, which for monitors is a matter of definition.) */
static void settle(mb_runtime_t *rt, tk_probe_t *from, tk_probe_t *to) {
  tk_sync(rt, from, WAIT_MS);
  tk_sync(rt, to, WAIT_MS);
}

/* ---------------------------------------------------------------- normal */

MB_TEST(normal_exit_signal_ignored_unless_trapping) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *a = tk_probe_on(rt, 0, 0), *b = tk_probe_on(rt, 1, 0);
  /* from another process and from outside any process: ignored */
  MB_CHECK_EQ_INT(tk_exit(rt, b->pid, a->pid, "normal"), 0);
  MB_CHECK_EQ_INT(tk_exit(rt, 0, a->pid, "normal"), 0);
  MB_CHECK_EQ_INT(tk_sync(rt, a, WAIT_MS), 0); /* nothing recorded, and it still answers */
  MB_CHECK(mb_alive(rt, a->pid));
  /* once trapping, the same signal is a message (signals are applied when
   * they arrive, not when earlier messages are handled: wait for the $trap) */
  tk_cmd_with(rt, a, "$trap", 0);
  MB_CHECK_EQ_INT(tk_sync(rt, a, WAIT_MS), 0);
  tk_exit(rt, b->pid, a->pid, "normal");
  tk_item_t *it = tk_wait(a, WAIT_MS);
  MB_CHECK(tk_is_exit(it, b->pid, "normal"));
  free(it);
  MB_CHECK(mb_alive(rt, a->pid));
  mb_proc_info_t info;
  MB_CHECK_EQ_INT(mb_proc_info(rt, a->pid, &info), 0);
  MB_CHECK_EQ_INT(info.trap_exit, 1);
  mb_runtime_free(rt);
  tk_probe_free(a);
  tk_probe_free(b);
}

MB_TEST(exit_self_normal_kills) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *a = tk_probe_on(rt, 0, 0), *w = tk_probe_on(rt, 1, 1);
  tk_cmd_with(rt, w, "$link", a->pid);
  TK_WAIT_UNTIL(tk_links(rt, a->pid) == 1, WAIT_MS);
  MB_REQUIRE(tk_links(rt, a->pid) == 1);
  /* exit(self(), normal): from == to */
  MB_CHECK_EQ_INT(tk_exit(rt, a->pid, a->pid, "normal"), 0);
  MB_CHECK(tk_exited_with(a, "normal", WAIT_MS));
  MB_CHECK(!mb_alive(rt, a->pid));
  /* its link sees normal; a trapping linked process gets it as a message */
  tk_item_t *it = tk_wait(w, WAIT_MS);
  MB_CHECK(tk_is_exit(it, a->pid, "normal"));
  free(it);
  /* a trapping process that signals itself normal gets the message, as in Erlang */
  tk_exit(rt, w->pid, w->pid, "normal");
  it = tk_wait(w, WAIT_MS);
  MB_CHECK(tk_is_exit(it, w->pid, "normal"));
  free(it);
  MB_CHECK(mb_alive(rt, w->pid));
  mb_runtime_free(rt);
  tk_probe_free(a);
  tk_probe_free(w);
}

/* ---------------------------------------------------------------- kill */

MB_TEST(kill_is_untrappable_and_links_see_killed) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *a = tk_probe_on(rt, 0, 1);  /* trapping: kill still kills */
  tk_probe_t *b = tk_probe_on(rt, 1, 0);  /* linked, not trapping: dies killed */
  tk_probe_t *c = tk_probe_on(rt, 1, 1);  /* linked, trapping: gets EXIT killed */
  tk_probe_t *m = tk_probe_on(rt, 0, 0);  /* monitors: DOWN killed */
  tk_cmd_with(rt, b, "$link", a->pid);
  tk_cmd_with(rt, c, "$link", a->pid);
  tk_cmd_with(rt, m, "$monitor", a->pid);
  settle(rt, b, a);
  settle(rt, c, a);
  settle(rt, m, a);
  MB_REQUIRE(tk_links(rt, a->pid) == 2 && tk_monitors(rt, m->pid) == 1);
  MB_CHECK_EQ_INT(tk_exit(rt, 0, a->pid, "kill"), 0);
  MB_CHECK(tk_exited_with(a, "killed", WAIT_MS));
  MB_CHECK(tk_exited_with(b, "killed", WAIT_MS));
  tk_item_t *it = tk_wait(c, WAIT_MS);
  MB_CHECK(tk_is_exit(it, a->pid, "killed"));
  free(it);
  it = tk_wait(m, WAIT_MS);
  MB_CHECK(tk_is_down(it, tk_last_ref(m), a->pid, "killed"));
  free(it);
  /* the trapping process never saw a message for the kill itself */
  MB_CHECK(a->head == NULL);
  MB_CHECK(mb_alive(rt, c->pid));
  mb_runtime_free(rt);
  tk_probe_free(a);
  tk_probe_free(b);
  tk_probe_free(c);
  tk_probe_free(m);
}

MB_TEST(exit_reason_kill_through_a_link_is_trappable) {
  /* A process that itself exits with reason kill sends `kill` along its links
   * as an ordinary reason: trapping processes get {'EXIT', A, kill}, others die
   * with kill (only exit/2's kill is untrappable). */
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *a = tk_probe_on(rt, 0, 0), *t = tk_probe_on(rt, 1, 1), *n = tk_probe_on(rt, 1, 0);
  tk_cmd_with(rt, t, "$link", a->pid);
  tk_cmd_with(rt, n, "$link", a->pid);
  TK_WAIT_UNTIL(tk_links(rt, a->pid) == 2, WAIT_MS);
  MB_REQUIRE(tk_links(rt, a->pid) == 2);
  tk_cmd_exit(rt, a, "kill");
  MB_CHECK(tk_exited_with(a, "kill", WAIT_MS));
  tk_item_t *it = tk_wait(t, WAIT_MS);
  MB_CHECK(tk_is_exit(it, a->pid, "kill"));
  free(it);
  MB_CHECK(tk_exited_with(n, "kill", WAIT_MS));
  mb_runtime_free(rt);
  tk_probe_free(a);
  tk_probe_free(t);
  tk_probe_free(n);
}

/* A behaviour that, while it runs, has a kill applied (by draining its inbox
 * through mb_mailbox_len) and then tries to exit with its own reason: the kill
 * must win, its links must see killed. */
typedef struct shutdown_ignorer {
  atomic_int running, go;
  char reason[32];
  atomic_int destroyed;
} shutdown_ignorer_t;

static int shutdown_ignorer_run(mb_proc_t *self, void *st) {
  shutdown_ignorer_t *s = st;
  atomic_store(&s->running, 1);
  uint64_t end = tk_now_ns() + 2000000000ull;
  while (!atomic_load(&s->go) && tk_now_ns() < end) tk_sleep_us(100);
  (void)mb_mailbox_len(self); /* applies the LINK and then the kill */
  tk_term boom = tk_atom("boom");
  mb_proc_exit(self, boom.p, boom.n);
  tk_free(boom);
  return MB_RUN_EXIT;
}

static void shutdown_ignorer_destroy(mb_proc_t *self, void *st, const uint8_t *reason, size_t len) {
  (void)self;
  shutdown_ignorer_t *s = st;
  mb_dec_t d;
  const char *a;
  size_t n;
  if (!mb_dec_init(&d, NULL, reason, len) && !mb_dec_atom(&d, &a, &n) && n < sizeof s->reason) {
    memcpy(s->reason, a, n);
    s->reason[n] = 0;
  }
  atomic_store(&s->destroyed, 1);
}

static const mb_behaviour_t shutdown_ignorer_beh = {shutdown_ignorer_run, shutdown_ignorer_destroy, NULL, NULL};

MB_TEST(kill_wins_over_reason_set_later) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *w = tk_probe_on(rt, 0, 1);
  shutdown_ignorer_t s;
  memset(&s, 0, sizeof s);
  mb_spawn_opts_t o = {0};
  o.scheduler = 2;
  mb_pid_t pid;
  MB_REQUIRE(mb_spawn(rt, &shutdown_ignorer_beh, &s, &o, &pid) == 0);
  TK_WAIT_UNTIL(atomic_load(&s.running), WAIT_MS);
  MB_REQUIRE(atomic_load(&s.running));
  tk_cmd_with(rt, w, "$link", pid);
  TK_WAIT_UNTIL(tk_links(rt, w->pid) == 1, WAIT_MS);
  tk_exit(rt, 0, pid, "kill");
  atomic_store(&s.go, 1);
  tk_item_t *it = tk_wait(w, WAIT_MS);
  MB_CHECK(tk_is_exit(it, pid, "killed"));
  free(it);
  TK_WAIT_UNTIL(atomic_load(&s.destroyed), WAIT_MS);
  MB_CHECK_EQ_STR(s.reason, "killed");
  mb_runtime_free(rt);
  tk_probe_free(w);
}

/* ---------------------------------------------------------------- other reasons */

MB_TEST(reason_propagates_along_a_chain_of_links) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *a = tk_probe_on(rt, 0, 0), *b = tk_probe_on(rt, 1, 0), *c = tk_probe_on(rt, 0, 0);
  tk_probe_t *d = tk_probe_on(rt, 1, 1); /* trapping, linked to the end of the chain */
  tk_cmd_with(rt, a, "$link", b->pid);
  tk_cmd_with(rt, b, "$link", c->pid);
  tk_cmd_with(rt, d, "$link", c->pid);
  TK_WAIT_UNTIL(tk_links(rt, a->pid) == 1 && tk_links(rt, b->pid) == 2 &&
                    tk_links(rt, c->pid) == 2 && tk_links(rt, d->pid) == 1,
                WAIT_MS);
  MB_REQUIRE(tk_links(rt, b->pid) == 2 && tk_links(rt, c->pid) == 2);
  MB_CHECK_EQ_INT(tk_exit(rt, 0, a->pid, "boom"), 0);
  MB_CHECK(tk_exited_with(a, "boom", WAIT_MS));
  MB_CHECK(tk_exited_with(b, "boom", WAIT_MS));
  MB_CHECK(tk_exited_with(c, "boom", WAIT_MS));
  tk_item_t *it = tk_wait(d, WAIT_MS);
  MB_CHECK(tk_is_exit(it, c->pid, "boom"));
  free(it);
  MB_CHECK(mb_alive(rt, d->pid));
  MB_CHECK_EQ_INT(tk_links(rt, d->pid), 0); /* the EXIT consumed the link */
  mb_runtime_free(rt);
  tk_probe_free(a);
  tk_probe_free(b);
  tk_probe_free(c);
  tk_probe_free(d);
}

MB_TEST(trapping_process_gets_exit_message) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *a = tk_probe_on(rt, 0, 0), *t = tk_probe_on(rt, 1, 1);
  /* exit/2 from a process */
  tk_exit(rt, a->pid, t->pid, "boom");
  tk_item_t *it = tk_wait(t, WAIT_MS);
  MB_CHECK(tk_is_exit(it, a->pid, "boom"));
  free(it);
  /* and through a link */
  tk_cmd_with(rt, t, "$link", a->pid);
  TK_WAIT_UNTIL(tk_links(rt, a->pid) == 1, WAIT_MS);
  tk_cmd_exit(rt, a, "shutdown");
  it = tk_wait(t, WAIT_MS);
  MB_CHECK(tk_is_exit(it, a->pid, "shutdown"));
  free(it);
  MB_CHECK(mb_alive(rt, t->pid));
  /* a tuple reason arrives whole */
  mb_enc_t e;
  mb_enc_init(&e, NULL, 0);
  mb_enc_tuple(&e, 2);
  mb_enc_atom(&e, "bad", 3);
  mb_enc_int(&e, 42);
  tk_term r = tk_finish(&e);
  MB_CHECK_EQ_INT(mb_exit_signal(rt, a->pid, t->pid, r.p, r.n), 0);
  it = tk_wait(t, WAIT_MS);
  MB_REQUIRE(it != NULL);
  mb_dec_t d;
  MB_CHECK(tk_elem(it->data, it->len, 2, &d) == 0);
  MB_CHECK_EQ_INT((size_t)(d.end - d.p), r.n - 1);
  MB_CHECK(memcmp(d.p, r.p + 1, r.n - 1) == 0);
  free(it);
  tk_free(r);
  /* a malformed reason is refused */
  uint8_t bad[] = {131, 200};
  MB_CHECK_EQ_INT(mb_exit_signal(rt, 0, t->pid, bad, sizeof bad), MB_EBADTERM);
  MB_CHECK_EQ_INT(mb_exit_signal(rt, 0, t->pid, NULL, 0), MB_EBADTERM);
  mb_runtime_free(rt);
  tk_probe_free(a);
  tk_probe_free(t);
}

/* ---------------------------------------------------------------- links */

MB_TEST(links_are_bidirectional_and_idempotent) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *a = tk_probe_on(rt, 0, 1), *b = tk_probe_on(rt, 1, 1);
  tk_cmd_with(rt, a, "$link", b->pid);
  tk_cmd_with(rt, a, "$link", b->pid);
  tk_cmd_with(rt, b, "$link", a->pid);
  MB_CHECK_EQ_INT(tk_sync(rt, a, WAIT_MS), 0);
  MB_CHECK_EQ_INT(tk_sync(rt, b, WAIT_MS), 0);
  TK_WAIT_UNTIL(tk_links(rt, a->pid) == 1 && tk_links(rt, b->pid) == 1, WAIT_MS);
  MB_CHECK_EQ_INT(tk_links(rt, a->pid), 1);
  MB_CHECK_EQ_INT(tk_links(rt, b->pid), 1);
  mb_pid_t got[4] = {0};
  MB_CHECK_EQ_INT(mb_proc_links(rt, a->pid, got, 4), 1);
  MB_CHECK_EQ_INT(got[0], b->pid);
  MB_CHECK_EQ_INT(mb_proc_links(rt, b->pid, got, 4), 1);
  MB_CHECK_EQ_INT(got[0], a->pid);
  /* a link signal in flight cannot make it 2 later */
  MB_CHECK_EQ_INT(tk_sync(rt, a, WAIT_MS), 0);
  MB_CHECK_EQ_INT(tk_links(rt, a->pid), 1);
  /* one unlink removes both sides */
  tk_cmd_with(rt, a, "$unlink", b->pid);
  MB_CHECK_EQ_INT(tk_sync(rt, a, WAIT_MS), 0);
  MB_CHECK_EQ_INT(tk_links(rt, a->pid), 0);
  TK_WAIT_UNTIL(tk_links(rt, b->pid) == 0, WAIT_MS);
  MB_CHECK_EQ_INT(tk_links(rt, b->pid), 0);
  /* unlink is idempotent */
  tk_cmd_with(rt, a, "$unlink", b->pid);
  tk_cmd_with(rt, b, "$unlink", a->pid);
  MB_CHECK_EQ_INT(tk_sync(rt, a, WAIT_MS), 0);
  MB_CHECK_EQ_INT(tk_sync(rt, b, WAIT_MS), 0);
  /* and nothing is linked any more: b's exit reaches no one */
  tk_cmd_exit(rt, b, "boom");
  MB_CHECK(tk_exited_with(b, "boom", WAIT_MS));
  MB_CHECK_EQ_INT(tk_sync(rt, a, WAIT_MS), 0);
  MB_CHECK(mb_alive(rt, a->pid));
  mb_runtime_free(rt);
  tk_probe_free(a);
  tk_probe_free(b);
}

MB_TEST(link_to_dead_pid_gives_noproc) {
  mb_runtime_t *rt = tk_runtime(2);
  mb_pid_t dead = dead_pid(rt);
  MB_REQUIRE(!mb_alive(rt, dead));
  /* trapping: {'EXIT', Dead, noproc}, and no link remains */
  tk_probe_t *t = tk_probe_on(rt, 1, 1);
  tk_cmd_with(rt, t, "$link", dead);
  tk_item_t *it = tk_wait(t, WAIT_MS);
  MB_CHECK(tk_is_exit(it, dead, "noproc"));
  free(it);
  MB_CHECK_EQ_INT(tk_links(rt, t->pid), 0);
  /* a pid that never existed behaves the same */
  mb_pid_t never = mb_pid_make(0, 123456, 77);
  tk_cmd_with(rt, t, "$link", never);
  it = tk_wait(t, WAIT_MS);
  MB_CHECK(tk_is_exit(it, never, "noproc"));
  free(it);
  /* not trapping: dies with noproc */
  tk_probe_t *n = tk_probe_on(rt, 0, 0);
  tk_cmd_with(rt, n, "$link", dead);
  MB_CHECK(tk_exited_with(n, "noproc", WAIT_MS));
  mb_runtime_free(rt);
  tk_probe_free(t);
  tk_probe_free(n);
}

/* ---------------------------------------------------------------- monitors */

MB_TEST(monitor_dead_pid_gives_immediate_noproc_down) {
  mb_runtime_t *rt = tk_runtime(2);
  mb_pid_t dead = dead_pid(rt);
  tk_probe_t *m = tk_probe_on(rt, 1, 0);
  tk_cmd_with(rt, m, "$monitor", dead);
  tk_item_t *it = tk_wait(m, WAIT_MS);
  mb_ref_t ref = tk_last_ref(m);
  MB_CHECK(ref.id[0] || ref.id[1] || ref.id[2]);
  MB_CHECK(tk_is_down(it, ref, dead, "noproc"));
  free(it);
  MB_CHECK_EQ_INT(tk_monitors(rt, m->pid), 0); /* the monitor is spent */
  /* demonitoring a fired monitor reports it was not active */
  tk_cmd_with(rt, m, "$demonitor", 0);
  MB_CHECK_EQ_INT(tk_sync(rt, m, WAIT_MS), 0);
  MB_CHECK_EQ_INT(tk_last_demonitor(m), 0);
  mb_runtime_free(rt);
  tk_probe_free(m);
}

MB_TEST(monitor_fires_with_exit_reason) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *m = tk_probe_on(rt, 0, 0), *t = tk_probe_on(rt, 1, 0);
  tk_cmd_with(rt, m, "$monitor", t->pid);
  settle(rt, m, t);
  mb_ref_t ref = tk_last_ref(m);
  MB_CHECK_EQ_INT(tk_monitors(rt, m->pid), 1); /* the monitor m holds */
  tk_cmd_exit(rt, t, "boom");
  tk_item_t *it = tk_wait(m, WAIT_MS);
  MB_CHECK(tk_is_down(it, ref, t->pid, "boom"));
  free(it);
  MB_CHECK_EQ_INT(tk_monitors(rt, m->pid), 0);
  /* a monitor is one-way: the watcher did not die */
  MB_CHECK(mb_alive(rt, m->pid));
  /* two monitors on one process: two DOWNs with their own refs */
  tk_probe_t *u = tk_probe_on(rt, 1, 0);
  tk_cmd_with(rt, m, "$monitor", u->pid);
  MB_CHECK_EQ_INT(tk_sync(rt, m, WAIT_MS), 0);
  mb_ref_t r1 = tk_last_ref(m);
  tk_cmd_with(rt, m, "$monitor", u->pid);
  MB_CHECK_EQ_INT(tk_sync(rt, m, WAIT_MS), 0);
  mb_ref_t r2 = tk_last_ref(m);
  MB_CHECK(!mb_ref_equal(r1, r2));
  MB_CHECK_EQ_INT(tk_monitors(rt, m->pid), 2);
  settle(rt, m, u);
  tk_exit(rt, 0, u->pid, "kill");
  tk_item_t *d1 = tk_wait(m, WAIT_MS), *d2 = tk_wait(m, WAIT_MS);
  MB_CHECK((tk_is_down(d1, r1, u->pid, "killed") && tk_is_down(d2, r2, u->pid, "killed")) ||
           (tk_is_down(d1, r2, u->pid, "killed") && tk_is_down(d2, r1, u->pid, "killed")));
  free(d1);
  free(d2);
  mb_runtime_free(rt);
  tk_probe_free(m);
  tk_probe_free(t);
  tk_probe_free(u);
}

MB_TEST(demonitor_without_flush_reports_active) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *m = tk_probe_on(rt, 0, 0), *t = tk_probe_on(rt, 1, 0);
  /* active monitor: 1, then 0 for the same ref */
  tk_cmd_with(rt, m, "$monitor", t->pid);
  settle(rt, m, t);
  MB_CHECK_EQ_INT(tk_monitors(rt, m->pid), 1);
  tk_cmd_with(rt, m, "$demonitor", 0);
  MB_CHECK_EQ_INT(tk_sync(rt, m, WAIT_MS), 0);
  MB_CHECK_EQ_INT(tk_last_demonitor(m), 1);
  MB_CHECK_EQ_INT(tk_monitors(rt, m->pid), 0);
  tk_cmd_with(rt, m, "$demonitor", 0);
  MB_CHECK_EQ_INT(tk_sync(rt, m, WAIT_MS), 0);
  MB_CHECK_EQ_INT(tk_last_demonitor(m), 0);
  /* after demonitor, the target's exit sends no DOWN */
  tk_cmd_exit(rt, t, "boom");
  MB_CHECK(tk_exited_with(t, "boom", WAIT_MS));
  MB_CHECK_EQ_INT(tk_sync(rt, m, WAIT_MS), 0);
  /* a monitor whose DOWN was delivered: 0 */
  tk_probe_t *u = tk_probe_on(rt, 1, 0);
  tk_cmd_with(rt, m, "$monitor", u->pid);
  MB_CHECK_EQ_INT(tk_sync(rt, m, WAIT_MS), 0);
  tk_cmd_exit(rt, u, "boom");
  tk_item_t *it = tk_wait(m, WAIT_MS);
  MB_CHECK(tk_is_down(it, tk_last_ref(m), u->pid, "boom"));
  free(it);
  tk_cmd_with(rt, m, "$demonitor", 0);
  MB_CHECK_EQ_INT(tk_sync(rt, m, WAIT_MS), 0);
  MB_CHECK_EQ_INT(tk_last_demonitor(m), 0);
  /* an unknown ref: 0 */
  tk_cmd_with(rt, m, "$demonitor_flush", 0);
  MB_CHECK_EQ_INT(tk_sync(rt, m, WAIT_MS), 0);
  MB_CHECK_EQ_INT(tk_last_demonitor(m), 0);
  mb_runtime_free(rt);
  tk_probe_free(m);
  tk_probe_free(t);
  tk_probe_free(u);
}

/* A process that, in one handler run, monitors a target, kills it, waits until
 * the target is gone (so the DOWN is in its own inbox), optionally drains its
 * inbox (so the DOWN is queued as a message), then demonitors. It reports
 * {Result, LenBefore, LenAfter} to `out`, then handles what is left. */
enum { FL_INBOX, FL_QUEUED, FL_QUEUED_NOFLUSH };

typedef struct flusher {
  mb_pid_t out;
  tk_probe_t *target;
  int variant;
} flusher_t;

static int flusher_fn(mb_proc_t *self, const mb_msg_t *msg, void *ud) {
  flusher_t *f = ud;
  if (!msg) return 0;
  mb_runtime_t *rt = mb_proc_runtime(self);
  size_t n;
  const uint8_t *p = mb_msg_data(msg, &n);
  if (!tk_is_atom(p, n, "go")) { /* anything else goes to out as it is */
    mb_send(rt, mb_self(self), f->out, p, n);
    return 0;
  }
  mb_ref_t ref;
  mb_monitor(self, f->target->pid, &ref);
  tk_exit(rt, mb_self(self), f->target->pid, "boom");
  tk_wait_exit(f->target, WAIT_MS); /* its DOWN went out before its on_exit ran */
  size_t before = 0;
  if (f->variant != FL_INBOX) {
    uint64_t end = tk_now_ns() + 2000000000ull;
    while ((before = mb_mailbox_len(self)) == 0 && tk_now_ns() < end) tk_sleep_us(100);
  }
  int r = mb_demonitor(self, ref, f->variant != FL_QUEUED_NOFLUSH);
  size_t after = mb_mailbox_len(self);
  mb_enc_t e;
  mb_enc_init(&e, NULL, mb_msg_prefix());
  mb_enc_tuple(&e, 3);
  mb_enc_int(&e, r);
  mb_enc_int(&e, (int64_t)before);
  mb_enc_int(&e, (int64_t)after);
  mb_send_enc(rt, mb_self(self), f->out, &e);
  return 0;
}

static void demonitor_case(int variant, int want_r, int want_before, int want_after) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *out = tk_probe_on(rt, 1, 0);
  flusher_t f = {out->pid, tk_probe_on(rt, 1, 0), variant};
  mb_spawn_opts_t o = {0};
  o.scheduler = 1; /* the target dies on the other scheduler while this one waits */
  mb_pid_t pid;
  MB_REQUIRE(mb_spawn_native(rt, flusher_fn, NULL, &f, &o, &pid) == 0);
  tk_send_atom(rt, 0, pid, "go");
  tk_item_t *it = tk_wait(out, WAIT_MS);
  MB_REQUIRE(it != NULL);
  MB_CHECK_EQ_INT(tk_elem_int(it->data, it->len, 0), want_r);
  MB_CHECK_EQ_INT(tk_elem_int(it->data, it->len, 1), want_before);
  MB_CHECK_EQ_INT(tk_elem_int(it->data, it->len, 2), want_after);
  free(it);
  /* what is left in the flusher's mailbox is forwarded: a DOWN only without flush */
  tk_send_atom(rt, 0, pid, "end");
  it = tk_wait(out, WAIT_MS);
  MB_REQUIRE(it != NULL);
  if (variant == FL_QUEUED_NOFLUSH) {
    uint32_t a;
    MB_CHECK(tk_is_tagged(it->data, it->len, "DOWN", &a));
    free(it);
    it = tk_wait(out, WAIT_MS);
    MB_REQUIRE(it != NULL);
  }
  MB_CHECK(tk_is_atom(it->data, it->len, "end"));
  free(it);
  mb_runtime_free(rt);
  tk_probe_free(out);
  tk_probe_free(f.target);
}

MB_TEST(only_the_watcher_can_demonitor) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *w = tk_probe_on(rt, 0, 0), *t = tk_probe_on(rt, 1, 0);
  tk_cmd_with(rt, w, "$monitor", t->pid);
  settle(rt, w, t);
  mb_ref_t ref = tk_last_ref(w);
  /* the monitored process demonitors, with the watcher's ref: nothing changes */
  pthread_mutex_lock(&t->mu);
  t->last_ref = ref;
  pthread_mutex_unlock(&t->mu);
  tk_cmd_with(rt, t, "$demonitor_flush", 0);
  MB_CHECK_EQ_INT(tk_sync(rt, t, WAIT_MS), 0);
  MB_CHECK_EQ_INT(tk_last_demonitor(t), 0);
  mb_proc_info_t info;
  MB_CHECK(mb_proc_info(rt, t->pid, &info) == 0 && info.monitored_by == 1);
  MB_CHECK_EQ_INT(tk_monitors(rt, w->pid), 1);
  /* and the watcher still gets its DOWN */
  tk_cmd_exit(rt, t, "boom");
  tk_item_t *it = tk_wait(w, WAIT_MS);
  MB_CHECK(tk_is_down(it, ref, t->pid, "boom"));
  free(it);
  mb_runtime_free(rt);
  tk_probe_free(w);
  tk_probe_free(t);
}

MB_TEST(demonitor_flush_removes_queued_down) {
  /* DOWN already moved into the mailbox: the monitor had fired (0), flush drops it */
  demonitor_case(FL_QUEUED, 0, 1, 0);
}

MB_TEST(demonitor_flush_drops_down_still_in_flight) {
  /* DOWN pushed but not yet applied: still active in our view (1); it never shows */
  demonitor_case(FL_INBOX, 1, 0, 0);
}

MB_TEST(demonitor_without_flush_keeps_queued_down) {
  demonitor_case(FL_QUEUED_NOFLUSH, 0, 1, 1);
}

/* ---------------------------------------------------------------- spawn options */

/* A probe that also obeys {'$spawn', link | monitor | link_monitor} by spawning
 * a child probe with those options from inside its handler. */
typedef struct spawner {
  tk_probe_t *pr;
  tk_probe_t *child;
  mb_ref_t mon_ref;
  int spawn_err;
} spawner_t;

static int spawner_fn(mb_proc_t *self, const mb_msg_t *msg, void *ud) {
  spawner_t *sp = ud;
  if (msg) {
    size_t n;
    const uint8_t *p = mb_msg_data(msg, &n);
    if (tk_is_tagged(p, n, "$spawn", NULL)) {
      mb_spawn_opts_t o = {0};
      o.parent = self;
      o.link = tk_elem_is_atom(p, n, 1, "link") || tk_elem_is_atom(p, n, 1, "link_monitor");
      o.monitor = tk_elem_is_atom(p, n, 1, "monitor") || tk_elem_is_atom(p, n, 1, "link_monitor");
      o.mon_ref = &sp->mon_ref;
      o.scheduler = 2; /* the child on the other scheduler */
      tk_probe_t *c = tk_probe_new();
      int r = mb_spawn_native(mb_proc_runtime(self), tk_probe_fn, tk_probe_exit, c, &o, &c->pid);
      pthread_mutex_lock(&sp->pr->mu);
      sp->child = c;
      sp->spawn_err = r;
      pthread_mutex_unlock(&sp->pr->mu);
    }
  }
  return tk_probe_fn(self, msg, sp->pr); /* records the $spawn command as the ack */
}

static void spawner_exit(void *ud, const uint8_t *reason, size_t len) {
  spawner_t *sp = ud;
  tk_probe_exit(sp->pr, reason, len);
}

static spawner_t *spawner_new(mb_runtime_t *rt, int trap) {
  spawner_t *sp = calloc(1, sizeof *sp);
  sp->pr = tk_probe_new();
  mb_spawn_opts_t o = {0};
  o.scheduler = 1;
  o.trap_exit = trap;
  if (mb_spawn_native(rt, spawner_fn, spawner_exit, sp, &o, &sp->pr->pid)) abort();
  return sp;
}

static tk_probe_t *spawn_child(mb_runtime_t *rt, spawner_t *sp, const char *how) {
  tk_term a = tk_atom(how);
  tk_cmd(rt, sp->pr, tk_cmd_term("$spawn", a));
  tk_free(a);
  tk_item_t *ack = tk_wait(sp->pr, WAIT_MS);
  free(ack);
  pthread_mutex_lock(&sp->pr->mu);
  tk_probe_t *c = sp->spawn_err ? NULL : sp->child;
  pthread_mutex_unlock(&sp->pr->mu);
  return ack ? c : NULL;
}

static void spawner_free(spawner_t *sp) {
  tk_probe_free(sp->pr);
  free(sp);
}

MB_TEST(spawn_link_option) {
  mb_runtime_t *rt = tk_runtime(2);
  /* trapping parent: the child's exit is a message */
  spawner_t *sp = spawner_new(rt, 1);
  tk_probe_t *c = spawn_child(rt, sp, "link");
  MB_REQUIRE(c != NULL);
  /* linked atomically at spawn: both sides already know */
  MB_CHECK_EQ_INT(tk_links(rt, sp->pr->pid), 1);
  MB_CHECK_EQ_INT(tk_links(rt, c->pid), 1);
  MB_CHECK_EQ_INT(tk_monitors(rt, c->pid), 0);
  tk_cmd_exit(rt, c, "boom");
  tk_item_t *it = tk_wait(sp->pr, WAIT_MS);
  MB_CHECK(tk_is_exit(it, c->pid, "boom"));
  free(it);
  MB_CHECK(tk_exited_with(c, "boom", WAIT_MS)); /* its on_exit is done: c can go */
  tk_probe_free(c);
  /* the child dies with its parent */
  tk_probe_t *c2 = spawn_child(rt, sp, "link");
  MB_REQUIRE(c2 != NULL);
  tk_exit(rt, 0, sp->pr->pid, "kill");
  MB_CHECK(tk_exited_with(sp->pr, "killed", WAIT_MS));
  MB_CHECK(tk_exited_with(c2, "killed", WAIT_MS));
  tk_probe_free(c2);
  spawner_free(sp);
  /* non-trapping parent dies with its child's reason */
  sp = spawner_new(rt, 0);
  c = spawn_child(rt, sp, "link");
  MB_REQUIRE(c != NULL);
  tk_cmd_exit(rt, c, "boom");
  MB_CHECK(tk_exited_with(sp->pr, "boom", WAIT_MS));
  mb_runtime_free(rt);
  tk_probe_free(c);
  spawner_free(sp);
}

MB_TEST(spawn_monitor_option) {
  mb_runtime_t *rt = tk_runtime(2);
  spawner_t *sp = spawner_new(rt, 0);
  tk_probe_t *c = spawn_child(rt, sp, "monitor");
  MB_REQUIRE(c != NULL);
  mb_ref_t ref = sp->mon_ref;
  MB_CHECK(ref.id[0] || ref.id[1] || ref.id[2]);
  MB_CHECK_EQ_INT(tk_monitors(rt, sp->pr->pid), 1); /* set up at spawn, before the ack */
  MB_CHECK_EQ_INT(tk_links(rt, c->pid), 0);
  MB_CHECK_EQ_INT(tk_links(rt, sp->pr->pid), 0);
  tk_cmd_exit(rt, c, "boom");
  tk_item_t *it = tk_wait(sp->pr, WAIT_MS);
  MB_CHECK(tk_is_down(it, ref, c->pid, "boom"));
  free(it);
  MB_CHECK(mb_alive(rt, sp->pr->pid)); /* not linked: the parent lives */
  MB_CHECK(tk_exited_with(c, "boom", WAIT_MS));
  tk_probe_free(c);
  /* both at once: a trapping parent gets an EXIT and a DOWN */
  spawner_t *sp2 = spawner_new(rt, 1);
  c = spawn_child(rt, sp2, "link_monitor");
  MB_REQUIRE(c != NULL);
  ref = sp2->mon_ref;
  MB_CHECK_EQ_INT(tk_links(rt, c->pid), 1);
  MB_CHECK_EQ_INT(tk_monitors(rt, sp2->pr->pid), 1);
  tk_exit(rt, 0, c->pid, "kill");
  tk_item_t *a = tk_wait(sp2->pr, WAIT_MS), *b = tk_wait(sp2->pr, WAIT_MS);
  MB_CHECK((tk_is_exit(a, c->pid, "killed") && tk_is_down(b, ref, c->pid, "killed")) ||
           (tk_is_down(a, ref, c->pid, "killed") && tk_is_exit(b, c->pid, "killed")));
  free(a);
  free(b);
  mb_runtime_free(rt);
  tk_probe_free(c);
  spawner_free(sp);
  spawner_free(sp2);
}

MB_TEST(spawn_link_or_monitor_needs_a_parent) {
  mb_runtime_t *rt = tk_runtime(1);
  mb_spawn_opts_t o = {0};
  mb_ref_t ref;
  mb_pid_t pid;
  o.link = 1;
  MB_CHECK_EQ_INT(mb_spawn_native(rt, tk_probe_fn, NULL, NULL, &o, &pid), MB_EINVAL);
  o.link = 0;
  o.monitor = 1;
  o.mon_ref = &ref;
  MB_CHECK_EQ_INT(mb_spawn_native(rt, tk_probe_fn, NULL, NULL, &o, &pid), MB_EINVAL);
  mb_stats_t st;
  mb_runtime_stats(rt, -1, &st);
  MB_CHECK_EQ_INT(st.spawned, 0);
  mb_runtime_free(rt);
}

/* ---------------------------------------------------------------- unlink */


/* The racy version: the peer dies while the unlink is being made. As in
 * Erlang, an {'EXIT', ...} already queued when unlink is called may still be
 * handled after it; nothing caused by the link may be queued after it. The
 * unlinker counts what was queued at the unlink (`allowed`) and the EXITs it
 * handles after it (`after`): they must match. */
typedef struct unlinker {
  mb_pid_t peer, out;
  int unlinked, before, after, allowed;
  tk_probe_t *peer_pr; /* for "kill_then_unlink" */
} unlinker_t;

static int unlinker_fn(mb_proc_t *self, const mb_msg_t *msg, void *ud) {
  unlinker_t *u = ud;
  if (!msg) return 0;
  size_t n;
  const uint8_t *p = mb_msg_data(msg, &n);
  if (tk_is_atom(p, n, "link")) {
    mb_link(self, u->peer);
  } else if (tk_is_atom(p, n, "unlink")) {
    /* count the EXITs queued now (peeking: the native loop rewinds after us) */
    mb_mailbox_rewind(self);
    for (const mb_msg_t *q; (q = mb_mailbox_next(self));) {
      size_t qn;
      const uint8_t *qp = mb_msg_data(q, &qn);
      u->allowed += tk_is_tagged(qp, qn, "EXIT", NULL);
    }
    mb_mailbox_rewind(self);
    mb_unlink(self, u->peer);
    u->unlinked = 1;
  } else if (tk_is_atom(p, n, "kill_then_unlink")) {
    /* the peer dies while we are busy: its EXIT_LINK waits in our inbox, not yet
     * applied, when we unlink; applying it afterwards must drop it */
    tk_exit(mb_proc_runtime(self), mb_self(self), u->peer, "boom");
    tk_wait_exit(u->peer_pr, WAIT_MS);
    mb_unlink(self, u->peer);
    u->unlinked = 1;
    u->allowed = 0;
  } else if (tk_is_tagged(p, n, "EXIT", NULL)) {
    if (u->unlinked) u->after++;
    else u->before++;
  } else if (tk_is_atom(p, n, "report")) {
    mb_enc_t e;
    mb_enc_init(&e, NULL, mb_msg_prefix());
    mb_enc_tuple(&e, 3);
    mb_enc_int(&e, u->before);
    mb_enc_int(&e, u->after);
    mb_enc_int(&e, u->allowed);
    mb_send_enc(mb_proc_runtime(self), mb_self(self), u->out, &e);
    return 1;
  }
  return 0;
}

MB_TEST(no_exit_after_unlink) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *a = tk_probe_on(rt, 0, 1), *b = tk_probe_on(rt, 1, 0);
  tk_cmd_with(rt, a, "$link", b->pid);
  TK_WAIT_UNTIL(tk_links(rt, b->pid) == 1, WAIT_MS);
  MB_REQUIRE(tk_links(rt, b->pid) == 1);
  tk_cmd_with(rt, a, "$unlink", b->pid);
  MB_CHECK_EQ_INT(tk_sync(rt, a, WAIT_MS), 0);
  tk_cmd_exit(rt, b, "boom");
  MB_CHECK(tk_exited_with(b, "boom", WAIT_MS));
  /* b's exit signals, if any, were pushed before its on_exit ran */
  MB_CHECK_EQ_INT(tk_sync(rt, a, WAIT_MS), 0);
  /* the EXIT is already on its way (pushed, not applied) when unlink is called */
  tk_probe_t *out = tk_probe_on(rt, 1, 0), *c = tk_probe_on(rt, 1, 0);
  unlinker_t u = {c->pid, out->pid, 0, 0, 0, 0, c};
  mb_spawn_opts_t o = {0};
  o.scheduler = 1;
  o.trap_exit = 1;
  mb_pid_t pid;
  MB_REQUIRE(mb_spawn_native(rt, unlinker_fn, NULL, &u, &o, &pid) == 0);
  tk_send_atom(rt, 0, pid, "link");
  TK_WAIT_UNTIL(tk_links(rt, c->pid) == 1, WAIT_MS);
  MB_REQUIRE(tk_links(rt, c->pid) == 1);
  tk_send_atom(rt, 0, pid, "kill_then_unlink");
  MB_CHECK(tk_exited_with(c, "boom", WAIT_MS));
  tk_send_atom(rt, 0, pid, "report"); /* queued behind c's EXIT_LINK */
  tk_item_t *it = tk_wait(out, WAIT_MS);
  MB_REQUIRE(it != NULL);
  MB_CHECK_EQ_INT(tk_elem_int(it->data, it->len, 0), 0); /* before */
  MB_CHECK_EQ_INT(tk_elem_int(it->data, it->len, 1), 0); /* after */
  free(it);
  TK_WAIT_UNTIL(!mb_alive(rt, pid), WAIT_MS);
  mb_runtime_free(rt);
  tk_probe_free(a);
  tk_probe_free(b);
  tk_probe_free(c);
  tk_probe_free(out);
}

MB_TEST(no_exit_after_unlink_racing_the_exit) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *out = tk_probe_on(rt, 1, 0);
  int iters = 200, bad = 0, exits_seen = 0, done = 0;
  for (int i = 0; i < iters; i++) {
    tk_probe_t *b = tk_probe_on(rt, 1, 0);
    unlinker_t u = {b->pid, out->pid, 0, 0, 0, 0, NULL};
    mb_spawn_opts_t o = {0};
    o.scheduler = 1;
    o.trap_exit = 1;
    mb_pid_t pid;
    if (mb_spawn_native(rt, unlinker_fn, NULL, &u, &o, &pid)) break;
    tk_send_atom(rt, 0, pid, "link");
    TK_WAIT_UNTIL(tk_links(rt, b->pid) == 1, WAIT_MS);
    if (i & 1) {
      tk_cmd_exit(rt, b, "boom");
      for (int k = 0; k < (i % 7) * 500; k++) atomic_signal_fence(memory_order_seq_cst);
      tk_send_atom(rt, 0, pid, "unlink");
    } else {
      tk_send_atom(rt, 0, pid, "unlink");
      for (int k = 0; k < (i % 7) * 500; k++) atomic_signal_fence(memory_order_seq_cst);
      tk_cmd_exit(rt, b, "boom");
    }
    tk_wait_exit(b, WAIT_MS);
    tk_send_atom(rt, 0, pid, "report");
    tk_item_t *it = tk_wait(out, WAIT_MS);
    if (!it) break;
    int before = (int)tk_elem_int(it->data, it->len, 0);
    int after = (int)tk_elem_int(it->data, it->len, 1);
    int allowed = (int)tk_elem_int(it->data, it->len, 2);
    free(it);
    exits_seen += before + after;
    if (after != allowed || before + after > 1) bad++;
    TK_WAIT_UNTIL(!mb_alive(rt, pid), WAIT_MS); /* u lives on this stack */
    if (mb_alive(rt, pid)) break;
    tk_probe_free(b);
    done++;
  }
  MB_CHECK_EQ_INT(done, iters);
  MB_CHECK_EQ_INT(bad, 0);
  printf("  (%d of %d iterations got the EXIT before the unlink)\n", exits_seen, iters);
  mb_runtime_free(rt);
  tk_probe_free(out);
}

/* ---------------------------------------------------------------- order */

MB_TEST(exit_signal_keeps_order_with_messages_from_outside) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *t = tk_probe_on(rt, 1, 1);
  enum { N = 1000 };
  for (int i = 1; i <= N; i++) tk_send_int(rt, 0, t->pid, i);
  tk_exit(rt, 0, t->pid, "boom");
  int ok = 1;
  for (int i = 1; i <= N && ok; i++) {
    tk_item_t *it = tk_wait(t, WAIT_MS);
    ok = it && tk_get_int(it->data, it->len) == i;
    free(it);
  }
  MB_CHECK(ok);
  tk_item_t *it = tk_wait(t, WAIT_MS);
  MB_CHECK(tk_is_exit(it, 0, "boom"));
  free(it);
  mb_runtime_free(rt);
  tk_probe_free(t);
}

/* Sends 1..n to `to`, then an exit signal (go) or ends linked to it (die). */
typedef struct burster {
  mb_pid_t to;
  int n;
} burster_t;

static int burster_fn(mb_proc_t *self, const mb_msg_t *msg, void *ud) {
  burster_t *b = ud;
  if (!msg) return 0;
  size_t n;
  const uint8_t *p = mb_msg_data(msg, &n);
  mb_runtime_t *rt = mb_proc_runtime(self);
  if (tk_is_atom(p, n, "link")) {
    mb_link(self, b->to);
    return 0;
  }
  for (int i = 1; i <= b->n; i++) tk_send_int(rt, mb_self(self), b->to, i);
  if (tk_is_atom(p, n, "go")) {
    tk_exit(rt, mb_self(self), b->to, "boom");
    return 0;
  }
  tk_term r = tk_atom("boom");
  mb_proc_exit(self, r.p, r.n);
  tk_free(r);
  return 1; /* die: the link carries boom after the messages */
}

static int expect_ints_then_exit(tk_probe_t *t, int n, mb_pid_t from) {
  for (int i = 1; i <= n; i++) {
    tk_item_t *it = tk_wait(t, WAIT_MS);
    int ok = it && tk_get_int(it->data, it->len) == i && it->from == from;
    free(it);
    if (!ok) return 0;
  }
  tk_item_t *it = tk_wait(t, WAIT_MS);
  int ok = tk_is_exit(it, from, "boom");
  free(it);
  return ok;
}

MB_TEST(exit_signal_keeps_order_with_messages_from_a_process) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *t = tk_probe_on(rt, 1, 1);
  burster_t b = {t->pid, 2000};
  mb_spawn_opts_t o = {0};
  o.scheduler = 1;
  mb_pid_t pid;
  MB_REQUIRE(mb_spawn_native(rt, burster_fn, NULL, &b, &o, &pid) == 0);
  /* exit/2 after the messages */
  tk_send_atom(rt, 0, pid, "go");
  MB_CHECK(expect_ints_then_exit(t, b.n, pid));
  /* a link's exit after the messages */
  tk_send_atom(rt, 0, pid, "link");
  TK_WAIT_UNTIL(tk_links(rt, t->pid) == 1, WAIT_MS);
  MB_REQUIRE(tk_links(rt, t->pid) == 1);
  tk_send_atom(rt, 0, pid, "die");
  MB_CHECK(expect_ints_then_exit(t, b.n, pid));
  TK_WAIT_UNTIL(!mb_alive(rt, pid), WAIT_MS);
  mb_runtime_free(rt);
  tk_probe_free(t);
}

int main(void) {
  MB_RUN(normal_exit_signal_ignored_unless_trapping);
  MB_RUN(exit_self_normal_kills);
  MB_RUN(kill_is_untrappable_and_links_see_killed);
  MB_RUN(exit_reason_kill_through_a_link_is_trappable);
  MB_RUN(kill_wins_over_reason_set_later);
  MB_RUN(reason_propagates_along_a_chain_of_links);
  MB_RUN(trapping_process_gets_exit_message);
  MB_RUN(links_are_bidirectional_and_idempotent);
  MB_RUN(link_to_dead_pid_gives_noproc);
  MB_RUN(monitor_dead_pid_gives_immediate_noproc_down);
  MB_RUN(monitor_fires_with_exit_reason);
  MB_RUN(demonitor_without_flush_reports_active);
  MB_RUN(only_the_watcher_can_demonitor);
  MB_RUN(demonitor_flush_removes_queued_down);
  MB_RUN(demonitor_flush_drops_down_still_in_flight);
  MB_RUN(demonitor_without_flush_keeps_queued_down);
  MB_RUN(spawn_link_option);
  MB_RUN(spawn_monitor_option);
  MB_RUN(spawn_link_or_monitor_needs_a_parent);
  MB_RUN(no_exit_after_unlink);
  MB_RUN(no_exit_after_unlink_racing_the_exit);
  MB_RUN(exit_signal_keeps_order_with_messages_from_outside);
  MB_RUN(exit_signal_keeps_order_with_messages_from_a_process);
  return mb_test_summary();
}
