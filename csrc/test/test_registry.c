/* test_registry.c: unique names (register, whereis, unregister, send by name,
 * removal at exit), pubsub topics (subscribe, unsubscribe, broadcast with a
 * shared buffer, removal at exit) and observability (mb_runtime_stats,
 * mb_proc_info, mb_proc_links, mb_processes). */
#include <stdatomic.h>
#include "mb_test.h"
#include "testkit.h"

#define WAIT_MS 2000

static int exit_on_message(mb_proc_t *self, const mb_msg_t *m, void *ud) {
  (void)self, (void)ud;
  return m != NULL;
}

static uint64_t stat_processes(mb_runtime_t *rt) {
  mb_stats_t s;
  mb_runtime_stats(rt, -1, &s);
  return s.processes;
}

/* ---------------------------------------------------------------- registry */

MB_TEST(register_whereis_unregister) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *p = tk_probe(rt, NULL);
  MB_CHECK_EQ_INT(mb_whereis(rt, "alpha"), 0);
  MB_CHECK_EQ_INT(mb_register(rt, "alpha", p->pid), 0);
  MB_CHECK_EQ_INT(mb_whereis(rt, "alpha"), p->pid);
  char buf[64];
  MB_CHECK_EQ_INT(mb_registered_name(rt, p->pid, buf, sizeof buf), 5);
  MB_CHECK_EQ_STR(buf, "alpha");
  MB_CHECK_EQ_INT(mb_registered_name(rt, p->pid, buf, 3), 2); /* truncated, terminated */
  MB_CHECK_EQ_STR(buf, "al");
  mb_proc_info_t info;
  MB_CHECK_EQ_INT(mb_proc_info(rt, p->pid, &info), 0);
  MB_CHECK_EQ_STR(info.name, "alpha");
  /* send by name */
  tk_term t = tk_int(7);
  MB_CHECK_EQ_INT(mb_send_name(rt, 0, "alpha", t.p, t.n), 0);
  tk_item_t *it = tk_wait(p, WAIT_MS);
  MB_CHECK(it && tk_get_int(it->data, it->len) == 7);
  free(it);
  MB_CHECK_EQ_INT(mb_send_name(rt, 0, "beta", t.p, t.n), MB_ENOENT);
  /* unregister */
  MB_CHECK_EQ_INT(mb_unregister(rt, "alpha"), 0);
  MB_CHECK_EQ_INT(mb_whereis(rt, "alpha"), 0);
  MB_CHECK_EQ_INT(mb_unregister(rt, "alpha"), MB_ENOENT);
  MB_CHECK_EQ_INT(mb_send_name(rt, 0, "alpha", t.p, t.n), MB_ENOENT);
  MB_CHECK_EQ_INT(mb_registered_name(rt, p->pid, buf, sizeof buf), 0);
  MB_CHECK_EQ_STR(buf, "");
  MB_CHECK_EQ_INT(mb_proc_info(rt, p->pid, &info), 0);
  MB_CHECK_EQ_STR(info.name, "");
  /* the process may take a name again, and another one */
  MB_CHECK_EQ_INT(mb_register(rt, "gamma", p->pid), 0);
  MB_CHECK_EQ_INT(mb_whereis(rt, "gamma"), p->pid);
  MB_CHECK_EQ_INT(tk_sync(rt, p, WAIT_MS), 0); /* beta and the unregistered sends went nowhere */
  tk_free(t);
  mb_runtime_free(rt);
  tk_probe_free(p);
}

MB_TEST(register_errors) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *a = tk_probe(rt, NULL), *b = tk_probe(rt, NULL);
  MB_CHECK_EQ_INT(mb_register(rt, "taken", a->pid), 0);
  MB_CHECK_EQ_INT(mb_register(rt, "taken", b->pid), MB_EEXIST);  /* name taken */
  MB_CHECK_EQ_INT(mb_register(rt, "taken", a->pid), MB_EEXIST);  /* same pair again */
  MB_CHECK_EQ_INT(mb_register(rt, "other", a->pid), MB_EEXIST);  /* a has a name */
  MB_CHECK_EQ_INT(mb_whereis(rt, "taken"), a->pid);
  MB_CHECK_EQ_INT(mb_whereis(rt, "other"), 0);
  /* dead, stale and never-existing pids */
  tk_cmd_exit(rt, b, "normal");
  MB_CHECK(tk_wait_exit(b, WAIT_MS));
  MB_CHECK_EQ_INT(mb_register(rt, "b", b->pid), MB_ENOPROC);
  MB_CHECK_EQ_INT(mb_register(rt, "b", mb_pid_make(0, 77777, 3)), MB_ENOPROC);
  MB_CHECK_EQ_INT(mb_register(rt, "b", 0), MB_ENOPROC);
  MB_CHECK_EQ_INT(mb_whereis(rt, "b"), 0);
  /* names */
  tk_probe_t *c = tk_probe(rt, NULL);
  char longname[300];
  memset(longname, 'x', sizeof longname);
  longname[256] = 0;
  MB_CHECK_EQ_INT(mb_register(rt, NULL, c->pid), MB_EINVAL);
  MB_CHECK_EQ_INT(mb_register(rt, "", c->pid), MB_EINVAL);
  MB_CHECK_EQ_INT(mb_register(rt, longname, c->pid), MB_EINVAL);
  longname[255] = 0;
  MB_CHECK_EQ_INT(mb_register(rt, longname, c->pid), 0);
  MB_CHECK_EQ_INT(mb_whereis(rt, longname), c->pid);
  MB_CHECK_EQ_INT(mb_whereis(rt, NULL), 0);
  MB_CHECK_EQ_INT(mb_unregister(rt, NULL), MB_EINVAL);
  mb_runtime_free(rt);
  tk_probe_free(a);
  tk_probe_free(b);
  tk_probe_free(c);
}

MB_TEST(name_goes_away_at_exit_and_can_be_taken_again) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *a = tk_probe(rt, NULL);
  MB_CHECK_EQ_INT(mb_register(rt, "svc", a->pid), 0);
  tk_cmd_exit(rt, a, "boom");
  MB_CHECK(tk_exited_with(a, "boom", WAIT_MS));
  MB_CHECK_EQ_INT(mb_whereis(rt, "svc"), 0); /* gone before its on_exit ran */
  tk_probe_t *b = tk_probe(rt, NULL);
  MB_CHECK_EQ_INT(mb_register(rt, "svc", b->pid), 0);
  MB_CHECK_EQ_INT(mb_whereis(rt, "svc"), b->pid);
  /* killed processes too */
  tk_exit(rt, 0, b->pid, "kill");
  MB_CHECK(tk_exited_with(b, "killed", WAIT_MS));
  MB_CHECK_EQ_INT(mb_whereis(rt, "svc"), 0);
  /* spawn with a name: registered before mb_spawn returns */
  mb_spawn_opts_t o = {0};
  o.name = "svc";
  tk_probe_t *c = tk_probe(rt, &o);
  MB_CHECK_EQ_INT(mb_whereis(rt, "svc"), c->pid);
  /* a taken name fails the spawn, and nothing was started (b's exit finishes
   * counting after its on_exit: let the counters settle first) */
  mb_stats_t before, after;
  TK_WAIT_UNTIL(stat_processes(rt) == 1, WAIT_MS);
  mb_runtime_stats(rt, -1, &before);
  MB_CHECK_EQ_INT(before.processes, 1);
  int state = 12345;
  mb_pid_t pid = 0;
  MB_CHECK_EQ_INT(mb_spawn_native(rt, exit_on_message, NULL, &state, &o, &pid), MB_EEXIST);
  mb_runtime_stats(rt, -1, &after);
  MB_CHECK_EQ_INT(after.spawned, before.spawned);
  MB_CHECK_EQ_INT(after.processes, before.processes);
  MB_CHECK_EQ_INT(mb_whereis(rt, "svc"), c->pid);
  mb_runtime_free(rt);
  tk_probe_free(a);
  tk_probe_free(b);
  tk_probe_free(c);
}

/* Registering (or subscribing) a process while it exits: whichever wins, the
 * name must not be left pointing at the dead process, nor stay attached to its
 * slot. The window is a few instructions wide, so the test aims at it: the
 * victim raises a flag as it returns from its last handler, and the test thread
 * calls mb_register a delay after seeing it. The delay adapts (later after a
 * win, earlier after a loss; negative: the victim waits), which keeps the calls
 * on the boundary between "registered before the exit" and "already dead". */
typedef struct racer {
  atomic_int flag, victim_delay;
} racer_t;

static int racer_fn(mb_proc_t *self, const mb_msg_t *m, void *ud) {
  (void)self;
  racer_t *r = ud;
  if (!m) return 0;
  atomic_store(&r->flag, 1);
  for (volatile int k = 0; k < atomic_load(&r->victim_delay); k++) {
  }
  return 1;
}

typedef int (*race_op)(mb_runtime_t *rt, mb_pid_t pid);   /* 0: it won */
typedef int (*race_left)(mb_runtime_t *rt);               /* 1: something is left */
typedef void (*race_undo)(mb_runtime_t *rt, mb_pid_t pid);

static void race_exit(race_op op, race_left left, race_undo undo, const char *what) {
  mb_runtime_t *rt = tk_runtime(2);
  static racer_t r; /* outlives the runtime's last victim */
  atomic_init(&r.flag, 0);
  atomic_init(&r.victim_delay, 0);
  tk_term t = tk_int(1);
  /* up to 3000 tries or 4 s (sanitizers on a loaded machine), at least 200 */
  int iters = 3000, stale = 0, won = 0, d = 0, done = 0;
  uint64_t end = tk_now_ns() + 4000000000ull;
  for (int i = 0; i < iters && stale == 0 && (i < 200 || tk_now_ns() < end); i++) {
    mb_spawn_opts_t o = {0};
    o.scheduler = 2;
    mb_pid_t pid;
    atomic_store(&r.flag, 0); /* (an earlier victim may still be on its way out) */
    atomic_store(&r.victim_delay, d < 0 ? -d : 0);
    if (mb_spawn_native(rt, racer_fn, NULL, &r, &o, &pid)) break;
    mb_send(rt, 0, pid, t.p, t.n);
    while (!atomic_load(&r.flag)) {
    }
    for (volatile int k = 0; k < d; k++) {
    }
    if (op(rt, pid) == 0) {
      won++;
      d++;
    } else {
      d--;
    }
    /* the exit takes the name or subscription away; give it a moment */
    TK_WAIT_UNTIL(!left(rt), 300);
    if (left(rt)) {
      stale++;
      undo(rt, pid);
    }
    done++;
  }
  MB_CHECK_EQ_INT(stale, 0);
  MB_CHECK(done >= 200);
  printf("  (%d of %d %s won the race)\n", won, done, what);
  tk_free(t);
  mb_runtime_free(rt);
}

static int op_register(mb_runtime_t *rt, mb_pid_t pid) { return mb_register(rt, "racer", pid); }
static int name_left(mb_runtime_t *rt) { return mb_whereis(rt, "racer") != 0; }
static void name_undo(mb_runtime_t *rt, mb_pid_t pid) {
  (void)pid;
  mb_unregister(rt, "racer");
}

MB_TEST(register_racing_exit_leaves_no_stale_name) {
  race_exit(op_register, name_left, name_undo, "registrations");
  /* the slots of the dead racers can be named again */
  mb_runtime_t *rt = tk_runtime(1);
  tk_probe_t *p = tk_probe(rt, NULL);
  MB_CHECK_EQ_INT(mb_register(rt, "racer", p->pid), 0);
  mb_runtime_free(rt);
  tk_probe_free(p);
}

/* ---------------------------------------------------------------- pubsub */

MB_TEST(subscribe_broadcast_unsubscribe) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *p[3];
  for (int i = 0; i < 3; i++) {
    p[i] = tk_probe(rt, NULL);
    MB_CHECK_EQ_INT(mb_subscribe(rt, "news", p[i]->pid), 0);
  }
  MB_CHECK_EQ_INT(mb_subscribers(rt, "news"), 3);
  MB_CHECK_EQ_INT(mb_subscribers(rt, "sports"), 0);
  tk_term t = tk_int(99);
  MB_CHECK_EQ_INT(mb_broadcast(rt, p[0]->pid, "news", 0, t.p, t.n), 3);
  for (int i = 0; i < 3; i++) {
    tk_item_t *it = tk_wait(p[i], WAIT_MS);
    MB_CHECK(it && tk_get_int(it->data, it->len) == 99 && it->from == p[0]->pid);
    free(it);
  }
  /* skip one (broadcast_from) */
  MB_CHECK_EQ_INT(mb_broadcast(rt, p[0]->pid, "news", p[0]->pid, t.p, t.n), 2);
  for (int i = 1; i < 3; i++) {
    tk_item_t *it = tk_wait(p[i], WAIT_MS);
    MB_CHECK(it != NULL);
    free(it);
  }
  MB_CHECK_EQ_INT(tk_sync(rt, p[0], WAIT_MS), 0);
  /* unsubscribe, idempotent; a topic nobody reads */
  MB_CHECK_EQ_INT(mb_unsubscribe(rt, "news", p[1]->pid), 0);
  MB_CHECK_EQ_INT(mb_unsubscribe(rt, "news", p[1]->pid), 0);
  MB_CHECK_EQ_INT(mb_unsubscribe(rt, "nothing", p[1]->pid), 0);
  MB_CHECK_EQ_INT(mb_subscribers(rt, "news"), 2);
  MB_CHECK_EQ_INT(mb_broadcast(rt, 0, "news", 0, t.p, t.n), 2);
  MB_CHECK_EQ_INT(tk_sync(rt, p[1], WAIT_MS), 0);
  MB_CHECK_EQ_INT(tk_sync(rt, p[0], WAIT_MS), 1);
  MB_CHECK_EQ_INT(tk_sync(rt, p[2], WAIT_MS), 1);
  MB_CHECK_EQ_INT(mb_broadcast(rt, 0, "sports", 0, t.p, t.n), 0);
  /* subscribe is idempotent: one copy per broadcast */
  MB_CHECK_EQ_INT(mb_subscribe(rt, "news", p[0]->pid), 0);
  MB_CHECK_EQ_INT(mb_subscribers(rt, "news"), 2);
  MB_CHECK_EQ_INT(mb_broadcast(rt, 0, "news", 0, t.p, t.n), 2);
  MB_CHECK_EQ_INT(tk_sync(rt, p[0], WAIT_MS), 1);
  /* one process, several topics */
  MB_CHECK_EQ_INT(mb_subscribe(rt, "sports", p[0]->pid), 0);
  MB_CHECK_EQ_INT(mb_broadcast(rt, 0, "sports", 0, t.p, t.n), 1);
  MB_CHECK_EQ_INT(tk_sync(rt, p[0], WAIT_MS), 1);
  /* errors */
  MB_CHECK_EQ_INT(mb_subscribe(rt, NULL, p[0]->pid), MB_EINVAL);
  MB_CHECK_EQ_INT(mb_subscribers(rt, NULL), MB_EINVAL);
  MB_CHECK_EQ_INT(mb_broadcast(rt, 0, NULL, 0, t.p, t.n), MB_EINVAL);
  MB_CHECK_EQ_INT(mb_broadcast(rt, 0, "news", 0, NULL, 0), MB_EBADTERM);
  MB_CHECK_EQ_INT(mb_subscribe(rt, "news", mb_pid_make(0, 55555, 2)), MB_ENOPROC);
  MB_CHECK_EQ_INT(mb_subscribers(rt, "news"), 2);
  tk_free(t);
  mb_runtime_free(rt);
  for (int i = 0; i < 3; i++) tk_probe_free(p[i]);
}

MB_TEST(subscriptions_go_away_at_exit) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *a = tk_probe(rt, NULL), *b = tk_probe(rt, NULL);
  MB_CHECK_EQ_INT(mb_subscribe(rt, "t1", a->pid), 0);
  MB_CHECK_EQ_INT(mb_subscribe(rt, "t2", a->pid), 0);
  MB_CHECK_EQ_INT(mb_subscribe(rt, "t3", a->pid), 0);
  MB_CHECK_EQ_INT(mb_subscribe(rt, "t2", b->pid), 0);
  tk_exit(rt, 0, a->pid, "kill");
  MB_CHECK(tk_wait_exit(a, WAIT_MS));
  MB_CHECK_EQ_INT(mb_subscribers(rt, "t1"), 0);
  MB_CHECK_EQ_INT(mb_subscribers(rt, "t2"), 1);
  MB_CHECK_EQ_INT(mb_subscribers(rt, "t3"), 0);
  tk_term t = tk_int(1);
  MB_CHECK_EQ_INT(mb_broadcast(rt, 0, "t2", 0, t.p, t.n), 1);
  MB_CHECK_EQ_INT(mb_broadcast(rt, 0, "t1", 0, t.p, t.n), 0);
  tk_free(t);
  MB_CHECK_EQ_INT(tk_sync(rt, b, WAIT_MS), 1);
  /* a new process in the dead one's slot starts with no subscriptions */
  tk_probe_t *c = tk_probe(rt, NULL);
  MB_CHECK_EQ_INT(mb_subscribe(rt, "t4", c->pid), 0);
  tk_cmd_exit(rt, c, "normal");
  MB_CHECK(tk_wait_exit(c, WAIT_MS));
  MB_CHECK_EQ_INT(mb_subscribers(rt, "t4"), 0);
  MB_CHECK_EQ_INT(mb_subscribers(rt, "t2"), 1);
  mb_runtime_free(rt);
  tk_probe_free(a);
  tk_probe_free(b);
  tk_probe_free(c);
}

static int op_subscribe(mb_runtime_t *rt, mb_pid_t pid) { return mb_subscribe(rt, "race", pid); }
static int sub_left(mb_runtime_t *rt) { return mb_subscribers(rt, "race") != 0; }
static void sub_undo(mb_runtime_t *rt, mb_pid_t pid) { mb_unsubscribe(rt, "race", pid); }

MB_TEST(subscribe_racing_exit_leaves_no_stale_subscriber) {
  race_exit(op_subscribe, sub_left, sub_undo, "subscriptions");
}

/* 10,000 subscribers: each records the payload address it was given. */
#define MANY 10000

typedef struct fan {
  atomic_int got;
  atomic_int bad;
  const uint8_t *seen[MANY];
} fan_t;

typedef struct fan_ud {
  fan_t *fan;
  int idx;
} fan_ud_t;

static int fan_fn(mb_proc_t *self, const mb_msg_t *m, void *ud) {
  (void)self;
  fan_ud_t *f = ud;
  if (!m) return 0;
  size_t n;
  const uint8_t *p = mb_msg_data(m, &n);
  if (n < 2 || tk_get_int(p, n) != 4242) atomic_fetch_add(&f->fan->bad, 1);
  f->fan->seen[f->idx] = p;
  atomic_fetch_add(&f->fan->got, 1);
  return 0;
}

MB_TEST(broadcast_to_ten_thousand_subscribers_shares_one_buffer) {
  mb_runtime_t *rt = tk_runtime(2);
  fan_t *fan = calloc(1, sizeof *fan);
  fan_ud_t *uds = calloc(MANY, sizeof *uds);
  int subscribed = 0;
  for (int i = 0; i < MANY; i++) {
    uds[i].fan = fan;
    uds[i].idx = i;
    mb_pid_t pid;
    if (mb_spawn_native(rt, fan_fn, NULL, &uds[i], NULL, &pid)) break;
    subscribed += mb_subscribe(rt, "all", pid) == 0;
  }
  MB_REQUIRE(subscribed == MANY);
  MB_CHECK_EQ_INT(mb_subscribers(rt, "all"), MANY);
  tk_term t = tk_int(4242);
  uint64_t t0 = tk_now_ns();
  MB_CHECK_EQ_INT(mb_broadcast(rt, 0, "all", 0, t.p, t.n), MANY);
  TK_WAIT_UNTIL(atomic_load(&fan->got) == MANY, 10000);
  uint64_t dt = tk_now_ns() - t0;
  MB_CHECK_EQ_INT(atomic_load(&fan->got), MANY);
  MB_CHECK_EQ_INT(atomic_load(&fan->bad), 0);
  /* every receiver read the same bytes: one copy of the term, shared */
  int distinct = 0;
  for (int i = 1; i < MANY; i++) distinct += fan->seen[i] != fan->seen[0];
  MB_CHECK_EQ_INT(distinct, 0);
  MB_CHECK(fan->seen[0] != t.p);
  printf("  (broadcast to %d processes delivered in %.1f ms)\n", MANY, dt / 1e6);
  tk_free(t);
  mb_runtime_free(rt);
  free(uds);
  free(fan);
}

/* ---------------------------------------------------------------- observability */

/* Forwards every message to `to` (a send from inside a process). */
static int relay_fn(mb_proc_t *self, const mb_msg_t *m, void *ud) {
  if (!m) return 0;
  size_t n;
  const uint8_t *p = mb_msg_data(m, &n);
  mb_send(mb_proc_runtime(self), mb_self(self), *(mb_pid_t *)ud, p, n);
  return 0;
}

static uint64_t stat_of(mb_runtime_t *rt, int which) {
  mb_stats_t s;
  mb_runtime_stats(rt, -1, &s);
  switch (which) {
  case 0: return s.processes;
  case 1: return s.exited;
  case 2: return s.received;
  default: return s.reductions;
  }
}

MB_TEST(runtime_stats_counters_move) {
  mb_runtime_t *rt = tk_runtime(2);
  mb_stats_t s0, s1, per[2];
  MB_CHECK_EQ_INT(mb_runtime_stats(rt, -1, &s0), 0);
  MB_CHECK_EQ_INT(s0.processes, 0);
  MB_CHECK_EQ_INT(s0.spawned, 0);
  MB_CHECK_EQ_INT(s0.sent, 0);
  MB_CHECK_EQ_INT(mb_runtime_stats(rt, 2, &s1), MB_EINVAL);
  MB_CHECK_EQ_INT(mb_runtime_stats(rt, 0, NULL), MB_EINVAL);
  tk_probe_t *a = tk_probe(rt, NULL), *b = tk_probe(rt, NULL);
  mb_pid_t relay;
  MB_REQUIRE(mb_spawn_native(rt, relay_fn, NULL, &a->pid, NULL, &relay) == 0);
  mb_runtime_stats(rt, -1, &s1);
  MB_CHECK_EQ_INT(s1.spawned, 3);
  MB_CHECK_EQ_INT(s1.processes, 3);
  /* 10 messages through the relay: 10 sent by a process, 20 received */
  for (int i = 0; i < 10; i++) tk_send_int(rt, 0, relay, i);
  for (int i = 0; i < 10; i++) {
    tk_item_t *it = tk_wait(a, WAIT_MS);
    MB_CHECK(it != NULL);
    free(it);
  }
  /* received counts at the take, reductions after the handler: wait for both */
  TK_WAIT_UNTIL(stat_of(rt, 2) >= 20 && stat_of(rt, 3) >= 20, WAIT_MS);
  mb_runtime_stats(rt, -1, &s1);
  MB_CHECK_EQ_INT(s1.sent, 10);     /* sends from outside any process do not count */
  MB_CHECK_EQ_INT(s1.received, 20);
  MB_CHECK(s1.reductions >= 20);
  MB_CHECK(s1.runs >= 3);
  MB_CHECK(s1.memory >= 3 * 64);
  /* per scheduler sums to the total */
  mb_runtime_stats(rt, 0, &per[0]);
  mb_runtime_stats(rt, 1, &per[1]);
  MB_CHECK_EQ_INT(per[0].spawned + per[1].spawned, s1.spawned);
  MB_CHECK_EQ_INT(per[0].received + per[1].received, s1.received);
  MB_CHECK_EQ_INT(per[0].processes + per[1].processes, s1.processes);
  /* an exit */
  tk_cmd_exit(rt, b, "normal");
  MB_CHECK(tk_wait_exit(b, WAIT_MS));
  TK_WAIT_UNTIL(stat_of(rt, 1) == 1 && stat_of(rt, 0) == 2, WAIT_MS);
  mb_runtime_stats(rt, -1, &s1);
  MB_CHECK_EQ_INT(s1.exited, 1);
  MB_CHECK_EQ_INT(s1.processes, 2);
  MB_CHECK_EQ_INT(s1.spawned, 3);
  MB_CHECK(s1.busy_ns > 0);
  mb_runtime_free(rt);
  tk_probe_free(a);
  tk_probe_free(b);
}

static int hoard_run(mb_proc_t *self, void *st) {
  atomic_store((atomic_int *)st, (int)mb_mailbox_len(self));
  return MB_RUN_WAIT;
}
static const mb_behaviour_t hoard_beh = {hoard_run, NULL, NULL, NULL};

static int status_of(mb_runtime_t *rt, mb_pid_t pid) {
  mb_proc_info_t i;
  return mb_proc_info(rt, pid, &i) ? -1 : i.status;
}

MB_TEST(proc_info_fields) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *a = tk_probe_on(rt, 1, 1);
  mb_proc_info_t info;
  TK_WAIT_UNTIL(status_of(rt, a->pid) == MB_STATUS_WAITING, WAIT_MS);
  MB_CHECK_EQ_INT(mb_proc_info(rt, a->pid, &info), 0);
  MB_CHECK_EQ_INT(info.status, MB_STATUS_WAITING);
  MB_CHECK_EQ_INT(info.scheduler, 1);
  MB_CHECK_EQ_INT(info.trap_exit, 1);
  MB_CHECK_EQ_INT(info.mailbox_len, 0);
  MB_CHECK_EQ_INT(info.links, 0);
  MB_CHECK_EQ_INT(info.monitors, 0);
  MB_CHECK_EQ_STR(info.name, "");
  MB_CHECK(info.memory > 0);
  uint64_t red0 = info.reductions;
  /* a process with queued messages */
  atomic_int len;
  atomic_init(&len, 0);
  mb_spawn_opts_t o = {0};
  o.scheduler = 1;
  mb_pid_t h;
  MB_REQUIRE(mb_spawn(rt, &hoard_beh, &len, &o, &h) == 0);
  for (int i = 0; i < 4; i++) tk_send_int(rt, 0, h, i);
  TK_WAIT_UNTIL(atomic_load(&len) == 4, WAIT_MS);
  size_t mem_before;
  MB_CHECK_EQ_INT(mb_proc_info(rt, h, &info), 0);
  MB_CHECK_EQ_INT(info.mailbox_len, 4);
  MB_CHECK_EQ_INT(info.trap_exit, 0);
  MB_CHECK_EQ_INT(info.scheduler, 0);
  mem_before = info.memory;
  for (int i = 0; i < 4; i++) tk_send_int(rt, 0, h, i);
  TK_WAIT_UNTIL(atomic_load(&len) == 8, WAIT_MS);
  MB_CHECK_EQ_INT(mb_proc_info(rt, h, &info), 0);
  MB_CHECK_EQ_INT(info.mailbox_len, 8);
  MB_CHECK(info.memory > mem_before);
  /* links, monitors (counted where they are held), name */
  tk_cmd_with(rt, a, "$monitor", h);
  tk_cmd_with(rt, a, "$link", h);
  MB_CHECK_EQ_INT(mb_register(rt, "hoarder", h), 0);
  TK_WAIT_UNTIL(tk_links(rt, h) == 1, WAIT_MS);
  MB_CHECK_EQ_INT(mb_proc_info(rt, h, &info), 0);
  MB_CHECK_EQ_INT(info.links, 1);
  MB_CHECK_EQ_STR(info.name, "hoarder");
  MB_CHECK_EQ_INT(mb_proc_info(rt, a->pid, &info), 0);
  MB_CHECK_EQ_INT(info.links, 1);
  MB_CHECK_EQ_INT(info.monitors, 1);
  MB_CHECK(info.reductions > red0); /* it handled two commands */
  mb_pid_t links[4];
  MB_CHECK_EQ_INT(mb_proc_links(rt, a->pid, links, 4), 1);
  MB_CHECK_EQ_INT(links[0], h);
  MB_CHECK_EQ_INT(mb_proc_links(rt, a->pid, links, 0), 1); /* count without room */
  /* dead and bogus pids */
  tk_exit(rt, 0, h, "kill");
  tk_item_t *it = tk_wait(a, WAIT_MS);
  MB_CHECK(it != NULL);
  free(it);
  TK_WAIT_UNTIL(!mb_alive(rt, h), WAIT_MS);
  MB_CHECK_EQ_INT(mb_proc_info(rt, h, &info), MB_ENOPROC);
  MB_CHECK_EQ_INT(mb_proc_links(rt, h, links, 4), MB_ENOPROC);
  MB_CHECK_EQ_INT(mb_proc_info(rt, 0, &info), MB_ENOPROC);
  MB_CHECK_EQ_INT(mb_proc_info(rt, a->pid, NULL), MB_EINVAL);
  mb_runtime_free(rt);
  tk_probe_free(a);
}

static int listed(const mb_pid_t *pids, size_t n, mb_pid_t pid) {
  for (size_t i = 0; i < n; i++)
    if (pids[i] == pid) return 1;
  return 0;
}

MB_TEST(processes_lists_live_pids) {
  mb_runtime_t *rt = tk_runtime(2);
  mb_pid_t pids[16];
  MB_CHECK_EQ_INT(mb_processes(rt, pids, 16), 0);
  tk_probe_t *p[5];
  for (int i = 0; i < 5; i++) p[i] = tk_probe(rt, NULL);
  size_t n = mb_processes(rt, pids, 16);
  MB_CHECK_EQ_INT(n, 5);
  for (int i = 0; i < 5; i++) MB_CHECK(listed(pids, n, p[i]->pid));
  MB_CHECK_EQ_INT(mb_processes(rt, pids, 2), 5); /* the count, even without room */
  MB_CHECK_EQ_INT(mb_processes(rt, NULL, 0), 5);
  tk_cmd_exit(rt, p[2], "normal");
  MB_CHECK(tk_wait_exit(p[2], WAIT_MS));
  n = mb_processes(rt, pids, 16);
  MB_CHECK_EQ_INT(n, 4);
  MB_CHECK(!listed(pids, n, p[2]->pid));
  MB_CHECK(listed(pids, n, p[4]->pid));
  mb_runtime_free(rt);
  for (int i = 0; i < 5; i++) tk_probe_free(p[i]);
}

MB_TEST(names_and_topics_compare_by_length) {
  mb_runtime_t *rt = tk_runtime(1);
  tk_probe_t *a = tk_probe(rt, NULL), *b = tk_probe(rt, NULL);
  /* "a\0b" and "a" are two names */
  MB_CHECK_EQ_INT(mb_register_n(rt, "a\0b", 3, a->pid), 0);
  MB_CHECK(mb_whereis(rt, "a") == 0);
  MB_CHECK(mb_whereis_n(rt, "a\0b", 3) == a->pid);
  MB_CHECK(mb_whereis_n(rt, "a\0c", 3) == 0);
  MB_CHECK_EQ_INT(mb_register(rt, "a", b->pid), 0);
  MB_CHECK(mb_whereis(rt, "a") == b->pid && mb_whereis_n(rt, "a\0b", 3) == a->pid);
  char buf[16];
  MB_CHECK(mb_registered_name(rt, a->pid, buf, sizeof buf) == 3 && !memcmp(buf, "a\0b", 3));
  mb_proc_info_t info;
  MB_CHECK(mb_proc_info(rt, b->pid, &info) == 0 && !strcmp(info.name, "a"));
  MB_CHECK_EQ_INT(mb_unregister(rt, "a"), 0);
  MB_CHECK(mb_whereis_n(rt, "a\0b", 3) == a->pid);
  MB_CHECK_EQ_INT(mb_unregister_n(rt, "a\0b", 3), 0);
  MB_CHECK(mb_whereis_n(rt, "a\0b", 3) == 0);
  /* topics too */
  MB_CHECK_EQ_INT(mb_subscribe_n(rt, "t\0x", 3, a->pid), 0);
  MB_CHECK_EQ_INT(mb_subscribe(rt, "t", b->pid), 0);
  MB_CHECK_EQ_INT(mb_subscribers(rt, "t"), 1);
  MB_CHECK_EQ_INT(mb_subscribers_n(rt, "t\0x", 3), 1);
  tk_term m = tk_atom("news");
  MB_CHECK_EQ_INT(mb_broadcast_n(rt, 0, "t\0x", 3, 0, m.p, m.n), 1);
  tk_item_t *it = tk_wait(a, WAIT_MS);
  MB_CHECK(it && tk_is_atom(it->data, it->len, "news"));
  free(it);
  MB_CHECK(tk_wait(b, 50) == NULL);
  MB_CHECK_EQ_INT(mb_unsubscribe(rt, "t", a->pid), 0); /* not a's topic: nothing changes */
  MB_CHECK_EQ_INT(mb_subscribers_n(rt, "t\0x", 3), 1);
  MB_CHECK_EQ_INT(mb_unsubscribe_n(rt, "t\0x", 3, a->pid), 0);
  MB_CHECK_EQ_INT(mb_subscribers_n(rt, "t\0x", 3), 0);
  MB_CHECK_EQ_INT(mb_subscribers(rt, "t"), 1);
  /* a name with a NUL given at spawn */
  mb_spawn_opts_t o = {0};
  o.name = "w\0z";
  o.name_len = 3;
  tk_probe_t *c = tk_probe(rt, &o);
  MB_CHECK(mb_whereis_n(rt, "w\0z", 3) == c->pid && mb_whereis(rt, "w") == 0);
  tk_free(m);
  mb_runtime_free(rt);
  tk_probe_free(a);
  tk_probe_free(b);
  tk_probe_free(c);
}

int main(void) {
  MB_RUN(register_whereis_unregister);
  MB_RUN(register_errors);
  MB_RUN(name_goes_away_at_exit_and_can_be_taken_again);
  MB_RUN(register_racing_exit_leaves_no_stale_name);
  MB_RUN(subscribe_broadcast_unsubscribe);
  MB_RUN(subscriptions_go_away_at_exit);
  MB_RUN(subscribe_racing_exit_leaves_no_stale_subscriber);
  MB_RUN(broadcast_to_ten_thousand_subscribers_shares_one_buffer);
  MB_RUN(runtime_stats_counters_move);
  MB_RUN(proc_info_fields);
  MB_RUN(processes_lists_live_pids);
  MB_RUN(names_and_topics_compare_by_length);
  return mb_test_summary();
}
