/* test_mailbox.c: selective receive through the behaviour API (mb_mailbox_rewind,
 * _next, _take, _mark, _len), scanning that resumes where it stopped, and
 * receive timeouts (mb_proc_set_timeout + MB_RUN_WAIT + mb_proc_timed_out).
 * Each test runs a small behaviour written here, which reports to a probe. */
#include <stdarg.h>
#include <stdatomic.h>
#include "mb_test.h"
#include "testkit.h"

#define WAIT_MS 2000

/* Sends {Tag, I1, ..., In} (ints) from self to `to`. */
static void report(mb_proc_t *self, mb_pid_t to, const char *tag, int n, ...) {
  mb_enc_t e;
  mb_enc_init(&e, NULL, mb_msg_prefix());
  mb_enc_tuple(&e, (uint32_t)n + 1);
  mb_enc_atom(&e, tag, strlen(tag));
  va_list ap;
  va_start(ap, n);
  for (int i = 0; i < n; i++) mb_enc_int(&e, va_arg(ap, int64_t));
  va_end(ap);
  mb_send_enc(mb_proc_runtime(self), mb_self(self), to, &e);
}

/* The next report from the probe, checked to carry `tag`; NULL otherwise. */
static tk_item_t *expect(tk_probe_t *out, const char *tag) {
  tk_item_t *it = tk_wait(out, WAIT_MS);
  if (it && !tk_is_tagged(it->data, it->len, tag, NULL)) {
    printf("  expected {%s, ...}, got something else\n", tag);
    free(it);
    return NULL;
  }
  return it;
}

static int64_t field(const tk_item_t *it, uint32_t i) { return tk_elem_int(it->data, it->len, i); }

/* ---- a selective receive built on the behaviour API ---- */

typedef int (*match_fn)(const uint8_t *p, size_t n);

typedef struct sel {
  mb_pid_t out;
  int phase, count, receiving;
  long scanned; /* messages the match function was called on */
  int64_t len_at_go, len_after_evens;
  mb_pid_t echo;
  mb_ref_t ref;
  int64_t expect_next, order_ok;
} sel_t;

/* One step of `receive match`: takes and returns the first queued message that
 * matches, or NULL (the caller returns MB_RUN_WAIT). The scan starts at the
 * oldest message (or at a mark) for a new receive, and carries on where it
 * stopped when the same receive resumes after a wait. */
static mb_msg_t *sel_receive(mb_proc_t *self, sel_t *s, match_fn match) {
  if (!s->receiving) {
    mb_mailbox_rewind(self);
    s->receiving = 1;
  }
  const mb_msg_t *m;
  while ((m = mb_mailbox_next(self))) {
    size_t n;
    const uint8_t *p = mb_msg_data(m, &n);
    s->scanned++;
    if (match(p, n)) {
      s->receiving = 0;
      return mb_mailbox_take(self);
    }
  }
  return NULL;
}

static int is_int(const uint8_t *p, size_t n) {
  mb_dec_t d;
  return !mb_dec_init(&d, NULL, p, n) && (mb_dec_type(&d) == MB_T_INT);
}
static int is_go(const uint8_t *p, size_t n) { return tk_is_atom(p, n, "go"); }
static int is_even(const uint8_t *p, size_t n) { return is_int(p, n) && tk_get_int(p, n) % 2 == 0; }
static int is_any(const uint8_t *p, size_t n) { (void)p; (void)n; return 1; }
static int is_reply(const uint8_t *p, size_t n) { return tk_is_tagged(p, n, "reply", NULL); }

static mb_ref_t want_ref; /* set by the owner before the receive that uses it */
static int is_reply_to_ref(const uint8_t *p, size_t n) {
  mb_ref_t r;
  return tk_is_tagged(p, n, "reply", NULL) && !tk_elem_ref(p, n, 1, &r) && mb_ref_equal(r, want_ref);
}

static void sel_destroy(mb_proc_t *self, void *st, const uint8_t *reason, size_t len) {
  (void)self, (void)st, (void)reason, (void)len;
}

/* Waits for `go`, receives the five even integers first, then the rest. */
static int evens_run(mb_proc_t *self, void *st) {
  sel_t *s = st;
  for (;;) {
    mb_msg_t *m;
    switch (s->phase) {
    case 0:
      if (!(m = sel_receive(self, s, is_go))) return MB_RUN_WAIT;
      mb_msg_free(m);
      s->len_at_go = (int64_t)mb_mailbox_len(self);
      s->phase = 1;
      break;
    case 1:
    case 2:
      if (!(m = sel_receive(self, s, s->phase == 1 ? is_even : is_any))) return MB_RUN_WAIT;
      {
        size_t n;
        const uint8_t *p = mb_msg_data(m, &n);
        report(self, s->out, "got", 1, tk_get_int(p, n));
      }
      mb_msg_free(m);
      if (++s->count == 5) {
        s->phase = 2;
        s->len_after_evens = (int64_t)mb_mailbox_len(self);
      }
      if (s->count == 10) {
        report(self, s->out, "done", 3, s->len_at_go, s->len_after_evens,
               (int64_t)mb_mailbox_len(self));
        return MB_RUN_EXIT;
      }
      break;
    }
  }
}

static const mb_behaviour_t evens_beh = {evens_run, sel_destroy, NULL, NULL};

MB_TEST(selective_receive_takes_matching_first_and_keeps_order) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *out = tk_probe_on(rt, 1, 0);
  sel_t s;
  memset(&s, 0, sizeof s);
  s.out = out->pid;
  mb_spawn_opts_t o = {0};
  o.scheduler = 1;
  mb_pid_t pid;
  MB_REQUIRE(mb_spawn(rt, &evens_beh, &s, &o, &pid) == 0);
  for (int i = 1; i <= 10; i++) tk_send_int(rt, 0, pid, i);
  tk_send_atom(rt, 0, pid, "go");
  static const int want[10] = {2, 4, 6, 8, 10, 1, 3, 5, 7, 9};
  for (int i = 0; i < 10; i++) {
    tk_item_t *it = expect(out, "got");
    MB_REQUIRE(it != NULL);
    MB_CHECK_EQ_INT(field(it, 1), want[i]);
    free(it);
  }
  tk_item_t *it = expect(out, "done");
  MB_REQUIRE(it != NULL);
  MB_CHECK_EQ_INT(field(it, 1), 10); /* all ten queued when go was taken */
  MB_CHECK_EQ_INT(field(it, 2), 5);  /* the odd ones stayed */
  MB_CHECK_EQ_INT(field(it, 3), 0);
  free(it);
  TK_WAIT_UNTIL(!mb_alive(rt, pid), WAIT_MS);
  mb_runtime_free(rt);
  tk_probe_free(out);
}

MB_TEST(selective_receive_waits_for_a_match_that_arrives_later) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *out = tk_probe_on(rt, 1, 0);
  sel_t s;
  memset(&s, 0, sizeof s);
  s.out = out->pid;
  mb_spawn_opts_t o = {0};
  o.scheduler = 1;
  mb_pid_t pid;
  MB_REQUIRE(mb_spawn(rt, &evens_beh, &s, &o, &pid) == 0);
  /* only odd numbers at first: the receive for evens waits */
  for (int i = 1; i <= 9; i += 2) tk_send_int(rt, 0, pid, i);
  tk_send_atom(rt, 0, pid, "go");
  tk_item_t *none = tk_wait(out, 50);
  MB_CHECK(none == NULL);
  free(none);
  /* each even one wakes it and is taken past the odd ones */
  for (int i = 2; i <= 10; i += 2) {
    tk_send_int(rt, 0, pid, i);
    tk_item_t *it = expect(out, "got");
    MB_REQUIRE(it != NULL);
    MB_CHECK_EQ_INT(field(it, 1), i);
    free(it);
  }
  for (int i = 1; i <= 9; i += 2) {
    tk_item_t *it = expect(out, "got");
    MB_REQUIRE(it != NULL);
    MB_CHECK_EQ_INT(field(it, 1), i);
    free(it);
  }
  free(expect(out, "done"));
  TK_WAIT_UNTIL(!mb_alive(rt, pid), WAIT_MS);
  mb_runtime_free(rt);
  tk_probe_free(out);
}

/* ---- resuming a scan; marks ---- */

/* Answers {request, Ref, Pid} with {reply, Ref}. */
static int echo_fn(mb_proc_t *self, const mb_msg_t *m, void *ud) {
  (void)ud;
  if (!m) return 0;
  size_t n;
  const uint8_t *p = mb_msg_data(m, &n);
  mb_ref_t ref;
  mb_pid_t to = tk_elem_pid(p, n, 2);
  if (!tk_is_tagged(p, n, "request", NULL) || tk_elem_ref(p, n, 1, &ref) || !to) return 0;
  mb_enc_t e;
  mb_enc_init(&e, NULL, mb_msg_prefix());
  mb_enc_tuple(&e, 2);
  mb_enc_atom(&e, "reply", 5);
  mb_enc_ref(&e, ref);
  mb_send_enc(mb_proc_runtime(self), mb_self(self), to, &e);
  return 0;
}

/* phase 0: receive go. phase 1: receive {reply, _} past 1000 queued ints,
 * reporting {waiting, Scanned} each time it has to wait. phase 2: mark, send a
 * request to the echo process, receive {reply, Ref}. phase 3: take the rest,
 * checking it is 1, 2, 3, ... in order. */
static int resume_run(mb_proc_t *self, void *st) {
  sel_t *s = st;
  mb_msg_t *m;
  for (;;) {
    switch (s->phase) {
    case 0:
      if (!(m = sel_receive(self, s, is_go))) return MB_RUN_WAIT;
      mb_msg_free(m);
      s->len_at_go = (int64_t)mb_mailbox_len(self);
      s->scanned = 0;
      s->phase = 1;
      break;
    case 1:
      if (!(m = sel_receive(self, s, is_reply))) {
        report(self, s->out, "waiting", 1, (int64_t)s->scanned);
        return MB_RUN_WAIT;
      }
      mb_msg_free(m);
      report(self, s->out, "replied", 2, (int64_t)s->scanned, (int64_t)mb_mailbox_len(self));
      s->phase = 2;
      break;
    case 2:
      /* the ref is made after the mark: no message before the mark can hold it */
      mb_mailbox_mark(self);
      s->ref = mb_make_ref(mb_proc_runtime(self));
      want_ref = s->ref;
      {
        mb_enc_t e;
        mb_enc_init(&e, NULL, mb_msg_prefix());
        mb_enc_tuple(&e, 3);
        mb_enc_atom(&e, "request", 7);
        mb_enc_ref(&e, s->ref);
        mb_enc_pid(&e, mb_self(self));
        mb_send_enc(mb_proc_runtime(self), mb_self(self), s->echo, &e);
      }
      s->scanned = 0;
      s->phase = 3;
      break;
    case 3:
      if (!(m = sel_receive(self, s, is_reply_to_ref))) return MB_RUN_WAIT;
      mb_msg_free(m);
      report(self, s->out, "called", 2, (int64_t)s->scanned, (int64_t)mb_mailbox_len(self));
      s->expect_next = 1;
      s->order_ok = 1;
      s->phase = 4;
      break;
    case 4:
      if (!(m = sel_receive(self, s, is_any))) {
        report(self, s->out, "rest", 2, s->expect_next - 1, s->order_ok);
        return MB_RUN_EXIT;
      }
      {
        size_t n;
        const uint8_t *p = mb_msg_data(m, &n);
        if (!is_int(p, n) || tk_get_int(p, n) != s->expect_next) s->order_ok = 0;
        s->expect_next++;
      }
      mb_msg_free(m);
      break;
    }
  }
}

static const mb_behaviour_t resume_beh = {resume_run, sel_destroy, NULL, NULL};

MB_TEST(scan_resumes_where_it_stopped_and_mark_skips_old_messages) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *out = tk_probe_on(rt, 1, 0);
  mb_pid_t echo;
  mb_spawn_opts_t eo = {0};
  eo.scheduler = 2;
  MB_REQUIRE(mb_spawn_native(rt, echo_fn, NULL, NULL, &eo, &echo) == 0);
  sel_t s;
  memset(&s, 0, sizeof s);
  s.out = out->pid;
  s.echo = echo;
  mb_spawn_opts_t o = {0};
  o.scheduler = 1;
  mb_pid_t pid;
  MB_REQUIRE(mb_spawn(rt, &resume_beh, &s, &o, &pid) == 0);
  enum { N = 1000, LATER = 10 };
  for (int i = 1; i <= N; i++) tk_send_int(rt, 0, pid, i);
  tk_send_atom(rt, 0, pid, "go");
  /* the first wait: every queued message was looked at once */
  tk_item_t *it = expect(out, "waiting");
  MB_REQUIRE(it != NULL);
  MB_CHECK_EQ_INT(field(it, 1), N);
  free(it);
  /* each new message wakes it; it looks at that one only */
  for (int i = 1; i <= LATER; i++) {
    tk_send_int(rt, 0, pid, N + i);
    it = expect(out, "waiting");
    MB_REQUIRE(it != NULL);
    MB_CHECK_EQ_INT(field(it, 1), N + i);
    free(it);
  }
  mb_enc_t e;
  mb_enc_init(&e, NULL, 0);
  mb_enc_tuple(&e, 2);
  mb_enc_atom(&e, "reply", 5);
  mb_enc_int(&e, 0);
  tk_term r = tk_finish(&e);
  mb_send(rt, 0, pid, r.p, r.n);
  tk_free(r);
  it = expect(out, "replied");
  MB_REQUIRE(it != NULL);
  MB_CHECK_EQ_INT(field(it, 1), N + LATER + 1); /* not (N + i) * LATER */
  MB_CHECK_EQ_INT(field(it, 2), N + LATER);
  free(it);
  /* with a mark before the request, the reply is found without looking at the
   * N + LATER older messages */
  it = expect(out, "called");
  MB_REQUIRE(it != NULL);
  MB_CHECK_EQ_INT(field(it, 1), 1);
  MB_CHECK_EQ_INT(field(it, 2), N + LATER);
  free(it);
  /* what was skipped is still there, in order */
  it = expect(out, "rest");
  MB_REQUIRE(it != NULL);
  MB_CHECK_EQ_INT(field(it, 1), N + LATER);
  MB_CHECK_EQ_INT(field(it, 2), 1);
  free(it);
  TK_WAIT_UNTIL(!mb_alive(rt, pid), WAIT_MS);
  mb_runtime_free(rt);
  tk_probe_free(out);
}

/* ---- mailbox length ---- */

/* Never takes anything: reports mb_mailbox_len each time it changes. */
typedef struct hoard {
  mb_pid_t out;
  int64_t last;
} hoard_t;

static int hoard_run(mb_proc_t *self, void *st) {
  hoard_t *h = st;
  int64_t n = (int64_t)mb_mailbox_len(self);
  if (n != h->last) report(self, h->out, "len", 1, n);
  h->last = n;
  return MB_RUN_WAIT;
}

static const mb_behaviour_t hoard_beh = {hoard_run, NULL, NULL, NULL};

MB_TEST(mailbox_len_counts_messages_not_signals) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *out = tk_probe_on(rt, 1, 0);
  hoard_t h = {out->pid, 0};
  mb_spawn_opts_t o = {0};
  o.scheduler = 1;
  o.trap_exit = 1;
  mb_pid_t pid;
  MB_REQUIRE(mb_spawn(rt, &hoard_beh, &h, &o, &pid) == 0);
  for (int i = 0; i < 5; i++) tk_send_int(rt, 0, pid, i);
  int64_t len = -1;
  while (len != 5) {
    tk_item_t *it = expect(out, "len");
    if (!it) break;
    len = field(it, 1);
    free(it);
  }
  MB_CHECK_EQ_INT(len, 5);
  mb_proc_info_t info;
  MB_CHECK_EQ_INT(mb_proc_info(rt, pid, &info), 0);
  MB_CHECK_EQ_INT(info.mailbox_len, 5);
  MB_CHECK(info.memory > 5 * 2); /* queued messages count toward its memory */
  /* a monitor and a link are signals: applied, never queued (the link comes
   * second from the same sender: once it shows, the monitor was applied too) */
  tk_probe_t *p = tk_probe_on(rt, 0, 0);
  tk_cmd_with(rt, p, "$monitor", pid);
  tk_cmd_with(rt, p, "$link", pid);
  TK_WAIT_UNTIL(tk_links(rt, pid) == 1, WAIT_MS);
  MB_CHECK_EQ_INT(tk_links(rt, pid), 1);
  MB_CHECK_EQ_INT(tk_monitors(rt, p->pid), 1);
  MB_CHECK_EQ_INT(mb_proc_info(rt, pid, &info), 0);
  MB_CHECK_EQ_INT(info.mailbox_len, 5);
  /* a trapped exit becomes one more message */
  tk_exit(rt, 0, pid, "boom");
  tk_item_t *it = expect(out, "len");
  MB_REQUIRE(it != NULL);
  MB_CHECK_EQ_INT(field(it, 1), 6);
  free(it);
  mb_runtime_free(rt);
  tk_probe_free(out);
  tk_probe_free(p);
}

/* ---- receive timeouts ---- */

typedef struct tmo {
  mb_pid_t out;
  int phase;
  uint64_t t0;
  int runs;
  int timed_out_seen;
} tmo_t;

/* phase 0: wait 50 ms for nothing -> {timeout, Us}.
 * phase 1: wait up to 100 ms; a message comes first -> {msg, TimedOut, Us}.
 * phase 2: wait with no timeout; a ping -> {pinged, Runs, TimedOutSeen}.
 * phase 3: timeout 0 -> {zero, TimedOut}, and exit. */
static int tmo_run(mb_proc_t *self, void *st) {
  tmo_t *t = st;
  t->runs++;
  uint64_t now = tk_now_ns();
  switch (t->phase) {
  case 0:
    if (t->t0 == 0) {
      t->t0 = now;
      mb_proc_set_timeout(self, 50);
      return MB_RUN_WAIT;
    }
    if (!mb_proc_timed_out(self)) return MB_RUN_WAIT; /* not the timeout: keep waiting */
    report(self, t->out, "timeout", 1, (int64_t)((now - t->t0) / 1000));
    t->phase = 1;
    t->t0 = tk_now_ns();
    mb_proc_set_timeout(self, 100);
    return MB_RUN_WAIT;
  case 1: {
    int to = mb_proc_timed_out(self);
    mb_mailbox_rewind(self);
    if (!mb_mailbox_next(self) && !to) return MB_RUN_WAIT;
    mb_msg_free(mb_mailbox_take(self));
    report(self, t->out, "msg", 2, (int64_t)to, (int64_t)((now - t->t0) / 1000));
    t->phase = 2;
    t->runs = 0;
    return MB_RUN_WAIT; /* no timeout armed */
  }
  case 2:
    t->timed_out_seen |= mb_proc_timed_out(self);
    mb_mailbox_rewind(self);
    if (!mb_mailbox_next(self)) return MB_RUN_WAIT;
    mb_msg_free(mb_mailbox_take(self));
    report(self, t->out, "pinged", 2, (int64_t)t->runs, (int64_t)t->timed_out_seen);
    t->phase = 3;
    mb_proc_set_timeout(self, 0);
    return MB_RUN_WAIT;
  default:
    report(self, t->out, "zero", 1, (int64_t)mb_proc_timed_out(self));
    return MB_RUN_EXIT;
  }
}

static const mb_behaviour_t tmo_beh = {tmo_run, NULL, NULL, NULL};

MB_TEST(receive_timeout_fires_on_time_and_a_message_cancels_it) {
  mb_runtime_t *rt = tk_runtime(2);
  tk_probe_t *out = tk_probe_on(rt, 1, 0);
  tmo_t t;
  memset(&t, 0, sizeof t);
  t.out = out->pid;
  mb_spawn_opts_t o = {0};
  o.scheduler = 1;
  mb_pid_t pid;
  MB_REQUIRE(mb_spawn(rt, &tmo_beh, &t, &o, &pid) == 0);
  tk_item_t *it = expect(out, "timeout");
  MB_REQUIRE(it != NULL);
  int64_t us = field(it, 1);
  free(it);
  MB_CHECK(us >= 50000); /* never early */
  MB_CHECK(us <= 50000 + tk_slack_ms() * 1000);
  printf("  (50 ms receive timeout fired after %.2f ms)\n", us / 1000.0);
  /* a message at ~20 ms beats the 100 ms timeout */
  tk_term m = tk_atom("hello");
  MB_CHECK_EQ_INT(mb_send_after(rt, 0, pid, 20, m.p, m.n, NULL), 0);
  tk_free(m);
  it = expect(out, "msg");
  MB_REQUIRE(it != NULL);
  MB_CHECK_EQ_INT(field(it, 1), 0);
  MB_CHECK(field(it, 2) < 100000);
  free(it);
  /* the cancelled timeout never wakes it: past its deadline, a ping finds it
   * run once (for the ping) and never timed out */
  tk_sleep_ms(130);
  tk_send_atom(rt, 0, pid, "ping");
  it = expect(out, "pinged");
  MB_REQUIRE(it != NULL);
  MB_CHECK_EQ_INT(field(it, 1), 1);
  MB_CHECK_EQ_INT(field(it, 2), 0);
  free(it);
  /* timeout 0: runs again at once, timed out */
  it = expect(out, "zero");
  MB_REQUIRE(it != NULL);
  MB_CHECK_EQ_INT(field(it, 1), 1);
  free(it);
  TK_WAIT_UNTIL(!mb_alive(rt, pid), WAIT_MS);
  mb_runtime_free(rt);
  tk_probe_free(out);
}

/* Waits with a 10 s timeout and never gets anything: freeing the runtime must
 * release the pending receive-timeout timer (ASan checks the leak). */
static int sleeper_run(mb_proc_t *self, void *st) {
  atomic_store((atomic_int *)st, 1);
  mb_proc_set_timeout(self, 10000);
  return MB_RUN_WAIT;
}

static const mb_behaviour_t sleeper_beh = {sleeper_run, NULL, NULL, NULL};

static int count_set(atomic_int *a, int n) {
  int c = 0;
  for (int i = 0; i < n; i++) c += atomic_load(&a[i]);
  return c;
}

MB_TEST(pending_receive_timeouts_are_freed_with_the_runtime) {
  mb_runtime_t *rt = tk_runtime(2);
  atomic_int ran[20];
  for (int i = 0; i < 20; i++) {
    atomic_init(&ran[i], 0);
    mb_pid_t pid;
    MB_REQUIRE(mb_spawn(rt, &sleeper_beh, &ran[i], NULL, &pid) == 0);
  }
  TK_WAIT_UNTIL(count_set(ran, 20) == 20, WAIT_MS);
  MB_CHECK_EQ_INT(count_set(ran, 20), 20);
  uint64_t t0 = tk_now_ns();
  mb_runtime_free(rt);
  MB_CHECK(tk_now_ns() - t0 < 1000000000ull); /* did not wait for the timeouts */
}

int main(void) {
  MB_RUN(selective_receive_takes_matching_first_and_keeps_order);
  MB_RUN(selective_receive_waits_for_a_match_that_arrives_later);
  MB_RUN(scan_resumes_where_it_stopped_and_mark_skips_old_messages);
  MB_RUN(mailbox_len_counts_messages_not_signals);
  MB_RUN(receive_timeout_fires_on_time_and_a_message_cancels_it);
  MB_RUN(pending_receive_timeouts_are_freed_with_the_runtime);
  return mb_test_summary();
}
