/* test_reply.c: gen call replies as alias monitors (a reply is kept only while
 * its ref is an active monitor of the receiver: no second reply, no late reply
 * after any number of abandoned calls), and call/demonitor costs that do not
 * grow with unrelated queued messages. */
#include "mb_test.h"
#include "testkit.h"

#define WAIT_MS 2000
#define MAXREFS 512

/* A caller: on 'monitor' monitors target (keeping the ref), on 'abandon' /
 * 'abandon_keep' abandons every ref (with or without demonitor); forwards
 * anything else to out, so the test sees what reached its mailbox. */
typedef struct caller {
  mb_pid_t out, target;
  pthread_mutex_t mu;
  mb_ref_t refs[MAXREFS];
  int nrefs;
} caller_t;

static int caller_fn(mb_proc_t *self, const mb_msg_t *msg, void *ud) {
  caller_t *c = ud;
  if (!msg) return 0;
  mb_runtime_t *rt = mb_proc_runtime(self);
  size_t n;
  const uint8_t *p = mb_msg_data(msg, &n);
  if (tk_is_atom(p, n, "monitor")) {
    mb_ref_t r;
    mb_monitor(self, c->target, &r);
    pthread_mutex_lock(&c->mu);
    c->refs[c->nrefs++] = r;
    pthread_mutex_unlock(&c->mu);
  } else if (tk_is_atom(p, n, "abandon") || tk_is_atom(p, n, "abandon_keep")) {
    int keep = tk_is_atom(p, n, "abandon_keep");
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < c->nrefs; i++) {
      mb_abandon_reply(self, c->refs[i]);
      if (!keep) mb_demonitor(self, c->refs[i], 1);
    }
    pthread_mutex_unlock(&c->mu);
  } else {
    mb_send(rt, mb_self(self), c->out, p, n);
    return 0;
  }
  tk_send_atom(rt, mb_self(self), c->out, "done");
  return 0;
}

typedef struct fixture {
  mb_runtime_t *rt;
  tk_probe_t *out, *target;
  caller_t c;
  mb_pid_t pid;
} fixture_t;

static void setup(fixture_t *f) {
  f->rt = tk_runtime(2);
  f->out = tk_probe_on(f->rt, 1, 0);
  f->target = tk_probe_on(f->rt, 1, 0);
  memset(&f->c, 0, sizeof f->c);
  pthread_mutex_init(&f->c.mu, NULL);
  f->c.out = f->out->pid;
  f->c.target = f->target->pid;
  mb_spawn_opts_t o = {0};
  o.scheduler = 1;
  if (mb_spawn_native(f->rt, caller_fn, NULL, &f->c, &o, &f->pid)) abort();
}

static void teardown(fixture_t *f) {
  mb_runtime_free(f->rt);
  tk_probe_free(f->out);
  tk_probe_free(f->target);
  pthread_mutex_destroy(&f->c.mu);
}

/* Sends 'cmd' to the caller and waits for its 'done'. */
static int command(fixture_t *f, const char *cmd) {
  tk_send_atom(f->rt, 0, f->pid, cmd);
  tk_item_t *it = tk_wait(f->out, WAIT_MS);
  int ok = it && tk_is_atom(it->data, it->len, "done");
  free(it);
  return ok;
}

static mb_ref_t ref_at(fixture_t *f, int i) {
  pthread_mutex_lock(&f->c.mu);
  mb_ref_t r = f->c.refs[i];
  pthread_mutex_unlock(&f->c.mu);
  return r;
}

/* The target replies {Ref, V} to the caller. */
static void reply(fixture_t *f, mb_ref_t ref, int64_t v) {
  mb_enc_t e;
  mb_enc_init(&e, mb_runtime_nodes(f->rt), 0);
  mb_enc_tuple(&e, 2);
  mb_enc_ref(&e, ref);
  mb_enc_int(&e, v);
  tk_term t = tk_finish(&e);
  MB_CHECK_EQ_INT(mb_send_reply(f->rt, f->target->pid, f->pid, ref, t.p, t.n), 0);
  tk_free(t);
}

/* The next thing the caller forwarded is the atom `end` (nothing came before it). */
static int next_is_end(fixture_t *f) {
  tk_send_atom(f->rt, 0, f->pid, "end");
  tk_item_t *it = tk_wait(f->out, WAIT_MS);
  int ok = it && tk_is_atom(it->data, it->len, "end");
  free(it);
  return ok;
}

MB_TEST(first_reply_is_kept_a_second_is_dropped) {
  fixture_t f;
  setup(&f);
  MB_REQUIRE(command(&f, "monitor"));
  mb_ref_t ref = ref_at(&f, 0);
  reply(&f, ref, 1);
  reply(&f, ref, 2);
  tk_item_t *it = tk_wait(f.out, WAIT_MS);
  mb_ref_t got;
  MB_CHECK(it && tk_elem_ref(it->data, it->len, 0, &got) == 0 && mb_ref_equal(got, ref) &&
           tk_elem_int(it->data, it->len, 1) == 1);
  free(it);
  MB_CHECK(next_is_end(&f));
  /* a reply tagged with a ref that is no monitor of the caller is dropped too */
  reply(&f, mb_make_ref(f.rt), 3);
  MB_CHECK(next_is_end(&f));
  teardown(&f);
}

MB_TEST(late_replies_dropped_after_hundreds_of_timeouts) {
  fixture_t f;
  setup(&f);
  for (int i = 0; i < 300; i++) MB_REQUIRE(command(&f, "monitor"));
  MB_REQUIRE(command(&f, "abandon")); /* each call timed out: abandon, demonitor */
  for (int i = 0; i < 300; i++) reply(&f, ref_at(&f, i), i);
  MB_CHECK(next_is_end(&f));
  teardown(&f);
}

MB_TEST(abandoned_reply_dropped_while_the_monitor_stays) {
  fixture_t f;
  setup(&f);
  for (int i = 0; i < 100; i++) MB_REQUIRE(command(&f, "monitor"));
  MB_REQUIRE(command(&f, "abandon_keep"));
  for (int i = 0; i < 100; i++) reply(&f, ref_at(&f, i), i);
  MB_CHECK(next_is_end(&f));
  MB_CHECK_EQ_INT(tk_monitors(f.rt, f.pid), 100);
  teardown(&f);
}

MB_TEST(reply_after_the_down_is_dropped) {
  fixture_t f;
  setup(&f);
  MB_REQUIRE(command(&f, "monitor"));
  mb_ref_t ref = ref_at(&f, 0);
  tk_cmd_exit(f.rt, f.target, "boom");
  tk_item_t *it = tk_wait(f.out, WAIT_MS);
  MB_CHECK(tk_is_down(it, ref, f.target->pid, "boom"));
  free(it);
  reply(&f, ref, 1);
  MB_CHECK(next_is_end(&f));
  teardown(&f);
}

/* ---- cost with a long queue ---- */

#define QUEUED 1000000
#define CALLS 101

/* A behaviour that waits until QUEUED messages are queued, then makes CALLS
 * gen-style calls to an echo server (mark, monitor, send, wait for the reply
 * by its ref, take it, demonitor with flush), timing each, and then flushes
 * a DOWN queued behind everything. */
typedef struct bench {
  mb_pid_t server;
  int phase, done_calls;
  mb_ref_t ref;
  uint64_t t0;
  uint64_t call_ns[CALLS], flush_ns[CALLS], down_flush_ns;
  size_t queued_after;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int finished;
} bench_t;

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void start_call(mb_proc_t *self, bench_t *b) {
  mb_runtime_t *rt = mb_proc_runtime(self);
  b->t0 = tk_now_ns();
  mb_mailbox_mark(self);
  mb_monitor(self, b->server, &b->ref);
  mb_enc_t e;
  mb_enc_init(&e, mb_runtime_nodes(rt), mb_msg_prefix());
  mb_enc_tuple(&e, 2);
  mb_enc_pid(&e, mb_self(self));
  mb_enc_ref(&e, b->ref);
  mb_send_enc(rt, mb_self(self), b->server, &e);
  mb_mailbox_rewind(self);
}

static int bench_run(mb_proc_t *self, void *st) {
  bench_t *b = st;
  if (b->phase == 0) {
    if (mb_mailbox_len(self) < QUEUED) return MB_RUN_WAIT;
    b->phase = 1;
    start_call(self, b);
  }
  for (;;) {
    const mb_msg_t *m;
    mb_ref_t tag;
    int found = 0;
    while ((m = mb_mailbox_next(self)))
      if (mb_msg_kind(m, &tag) == MB_MSG_REPLY && mb_ref_equal(tag, b->ref)) { found = 1; break; }
    if (!found) return MB_RUN_WAIT;
    mb_msg_free(mb_mailbox_take(self));
    uint64_t t1 = tk_now_ns();
    mb_demonitor(self, b->ref, 1);
    uint64_t t2 = tk_now_ns();
    b->call_ns[b->done_calls] = t2 - b->t0;
    b->flush_ns[b->done_calls] = t2 - t1;
    if (++b->done_calls < CALLS) {
      start_call(self, b);
      continue;
    }
    break;
  }
  /* a DOWN behind a million messages (the monitored pid is dead: noproc) */
  mb_ref_t r;
  mb_monitor(self, mb_pid_make(0, 0xFFFFF0, 1), &r);
  while (mb_mailbox_len(self) < QUEUED + 1) tk_sleep_us(100);
  uint64_t t = tk_now_ns();
  mb_demonitor(self, r, 1);
  b->down_flush_ns = tk_now_ns() - t;
  b->queued_after = mb_mailbox_len(self);
  pthread_mutex_lock(&b->mu);
  b->finished = 1;
  pthread_cond_broadcast(&b->cv);
  pthread_mutex_unlock(&b->mu);
  return MB_RUN_EXIT;
}

static void bench_destroy(mb_proc_t *self, void *st, const uint8_t *r, size_t n) {
  (void)self, (void)st, (void)r, (void)n;
}

static const mb_behaviour_t bench_behaviour = {bench_run, bench_destroy, NULL, NULL};

static int echo_fn(mb_proc_t *self, const mb_msg_t *msg, void *ud) {
  (void)ud;
  if (!msg) return 0;
  size_t n;
  const uint8_t *p = mb_msg_data(msg, &n);
  mb_pid_t to = tk_elem_pid(p, n, 0);
  mb_ref_t ref;
  if (!to || tk_elem_ref(p, n, 1, &ref)) return 0;
  mb_runtime_t *rt = mb_proc_runtime(self);
  mb_enc_t e;
  mb_enc_init(&e, mb_runtime_nodes(rt), 0);
  mb_enc_tuple(&e, 2);
  mb_enc_ref(&e, ref);
  mb_enc_atom(&e, "ok", 2);
  tk_term t = tk_finish(&e);
  mb_send_reply(rt, mb_self(self), to, ref, t.p, t.n);
  tk_free(t);
  return 0;
}

MB_TEST(call_and_flush_cost_independent_of_queued_messages) {
  mb_runtime_t *rt = tk_runtime(2);
  bench_t *b = calloc(1, sizeof *b);
  pthread_mutex_init(&b->mu, NULL);
  pthread_cond_init(&b->cv, NULL);
  mb_spawn_opts_t o = {0};
  o.scheduler = 2;
  MB_REQUIRE(mb_spawn_native(rt, echo_fn, NULL, NULL, &o, &b->server) == 0);
  o.scheduler = 1;
  mb_pid_t pid;
  MB_REQUIRE(mb_spawn(rt, &bench_behaviour, b, &o, &pid) == 0);
  tk_term t = tk_int(7);
  for (int i = 0; i < QUEUED; i++) mb_send(rt, 0, pid, t.p, t.n);
  tk_free(t);
  struct timespec ts;
  tk_deadline(&ts, 120000);
  pthread_mutex_lock(&b->mu);
  while (!b->finished)
    if (pthread_cond_timedwait(&b->cv, &b->mu, &ts)) break;
  int finished = b->finished;
  pthread_mutex_unlock(&b->mu);
  MB_REQUIRE(finished);
  qsort(b->call_ns, CALLS, sizeof b->call_ns[0], cmp_u64);
  qsort(b->flush_ns, CALLS, sizeof b->flush_ns[0], cmp_u64);
  double call_med = b->call_ns[CALLS / 2] / 1e3, flush_med = b->flush_ns[CALLS / 2] / 1e3;
  printf("  (%d queued: call median %.1f us, demonitor flush median %.2f us, "
         "flush of a DOWN behind them %.2f us)\n",
         QUEUED, call_med, flush_med, b->down_flush_ns / 1e3);
  /* a walk of the queue costs milliseconds; the bounds are generous for load */
  MB_CHECK(flush_med < 1000.0);
  MB_CHECK(call_med < 1000.0);
  MB_CHECK(b->down_flush_ns < 5000000u);
  MB_CHECK_EQ_INT(b->queued_after, QUEUED);
  mb_runtime_free(rt);
  pthread_mutex_destroy(&b->mu);
  pthread_cond_destroy(&b->cv);
  free(b);
}

int main(void) {
  MB_RUN(first_reply_is_kept_a_second_is_dropped);
  MB_RUN(late_replies_dropped_after_hundreds_of_timeouts);
  MB_RUN(abandoned_reply_dropped_while_the_monitor_stays);
  MB_RUN(reply_after_the_down_is_dropped);
  MB_RUN(call_and_flush_cost_independent_of_queued_messages);
  return mb_test_summary();
}
