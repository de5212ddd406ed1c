/* testkit.h: helpers for the core's C tests: runtimes, terms, and "probe"
 * processes that record what they receive for the test thread to wait on, and
 * obey command messages ({'$link', Pid}, ...) so a test can make a real process
 * link, monitor or trap exits from inside. */
#ifndef MB_TESTKIT_H
#define MB_TESTKIT_H

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "moonbeam.h"

static inline mb_runtime_t *tk_runtime(int nsched) {
  mb_runtime_opts_t o;
  memset(&o, 0, sizeof o);
  o.schedulers = nsched;
  mb_runtime_t *rt = NULL;
  if (mb_runtime_new(&o, &rt)) abort();
  return rt;
}

typedef struct tk_term {
  uint8_t *p;
  size_t n;
} tk_term;

static inline tk_term tk_finish(mb_enc_t *e) {
  tk_term t;
  t.p = mb_enc_finish(e, &t.n);
  if (!t.p) abort();
  return t;
}

static inline tk_term tk_atom(const char *s) {
  mb_enc_t e;
  mb_enc_init(&e, NULL, 0);
  mb_enc_atom(&e, s, strlen(s));
  return tk_finish(&e);
}

static inline tk_term tk_int(int64_t v) {
  mb_enc_t e;
  mb_enc_init(&e, NULL, 0);
  mb_enc_int(&e, v);
  return tk_finish(&e);
}

/* {Atom, Pid} */
static inline tk_term tk_cmd_pid(const char *cmd, mb_pid_t pid) {
  mb_enc_t e;
  mb_enc_init(&e, NULL, 0);
  mb_enc_tuple(&e, 2);
  mb_enc_atom(&e, cmd, strlen(cmd));
  mb_enc_pid(&e, pid);
  return tk_finish(&e);
}

/* {Atom, Term} */
static inline tk_term tk_cmd_term(const char *cmd, tk_term arg) {
  mb_enc_t e;
  mb_enc_init(&e, NULL, 0);
  mb_enc_tuple(&e, 2);
  mb_enc_atom(&e, cmd, strlen(cmd));
  mb_enc_term(&e, arg.p, arg.n);
  return tk_finish(&e);
}

static inline void tk_free(tk_term t) { free(t.p); }

/* Integer value of a term (abort if not an integer). */
static inline int64_t tk_get_int(const uint8_t *p, size_t n) {
  mb_dec_t d;
  int64_t v = 0;
  if (mb_dec_init(&d, NULL, p, n) || mb_dec_int(&d, &v)) abort();
  return v;
}

/* Is it a tuple whose first element is atom `tag`? Then *arity is set. */
static inline int tk_is_tagged(const uint8_t *p, size_t n, const char *tag, uint32_t *arity) {
  mb_dec_t d;
  const char *s;
  size_t len;
  uint32_t a;
  if (mb_dec_init(&d, NULL, p, n) || mb_dec_tuple(&d, &a) || a < 1) return 0;
  if (mb_dec_atom(&d, &s, &len) || len != strlen(tag) || memcmp(s, tag, len)) return 0;
  if (arity) *arity = a;
  return 1;
}

/* The reason (last element) of an EXIT or DOWN tuple, as an atom, into buf. */
static inline int tk_reason_atom(const uint8_t *p, size_t n, char *buf, size_t cap) {
  mb_dec_t d;
  uint32_t a;
  const char *s;
  size_t len;
  if (mb_dec_init(&d, NULL, p, n) || mb_dec_tuple(&d, &a)) return -1;
  for (uint32_t i = 0; i + 1 < a; i++)
    if (mb_dec_skip(&d)) return -1;
  if (mb_dec_atom(&d, &s, &len) || len >= cap) return -1;
  memcpy(buf, s, len);
  buf[len] = 0;
  return 0;
}

/* Monotonic nanoseconds (the clock the core's timers use). */
static inline uint64_t tk_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- probes ---- */

typedef struct tk_item {
  struct tk_item *next;
  mb_pid_t from;
  size_t len;
  uint64_t at_ns;  /* CLOCK_MONOTONIC when the probe's handler got it */
  uint8_t data[];
} tk_item_t;

typedef struct tk_probe {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  tk_item_t *head, **tail;
  mb_pid_t pid;
  mb_ref_t last_ref;
  int last_demonitor;
  int exited;
  char reason[64]; /* exit reason if an atom */
} tk_probe_t;

static inline int tk_probe_cmd(mb_proc_t *self, tk_probe_t *pr, const mb_msg_t *m) {
  size_t n;
  const uint8_t *p = mb_msg_data(m, &n);
  mb_dec_t d;
  uint32_t a;
  const char *s;
  size_t len;
  if (mb_dec_init(&d, NULL, p, n) || mb_dec_tuple(&d, &a) || a != 2) return 0;
  if (mb_dec_atom(&d, &s, &len) || len < 2 || s[0] != '$') return 0;
  char cmd[32];
  if (len >= sizeof cmd) return 0;
  memcpy(cmd, s, len);
  cmd[len] = 0;
  mb_pid_t pid = 0;
  if (mb_dec_type(&d) == MB_T_PID) mb_dec_pid(&d, &pid);
  if (!strcmp(cmd, "$link")) mb_link(self, pid);
  else if (!strcmp(cmd, "$unlink")) mb_unlink(self, pid);
  else if (!strcmp(cmd, "$monitor")) {
    mb_ref_t r;
    mb_monitor(self, pid, &r);
    pthread_mutex_lock(&pr->mu);
    pr->last_ref = r;
    pthread_mutex_unlock(&pr->mu);
  } else if (!strcmp(cmd, "$demonitor") || !strcmp(cmd, "$demonitor_flush")) {
    pthread_mutex_lock(&pr->mu);
    mb_ref_t r = pr->last_ref;
    pthread_mutex_unlock(&pr->mu);
    int active = mb_demonitor(self, r, cmd[10] == '_');
    pthread_mutex_lock(&pr->mu);
    pr->last_demonitor = active;
    pthread_mutex_unlock(&pr->mu);
  } else if (!strcmp(cmd, "$trap")) mb_trap_exit(self, 1);
  else if (!strcmp(cmd, "$exit")) {
    /* the rest of the tuple is the reason's body: give it back its version byte */
    size_t rest = (size_t)(d.end - d.p);
    uint8_t *r = malloc(rest + 1);
    r[0] = 131;
    memcpy(r + 1, d.p, rest);
    mb_proc_exit(self, r, rest + 1);
    free(r);
    return 2;
  } else return 0;
  return 1;
}

static inline int tk_probe_fn(mb_proc_t *self, const mb_msg_t *m, void *ud) {
  tk_probe_t *pr = ud;
  if (!m) return 0;
  int c = tk_probe_cmd(self, pr, m);
  if (c == 2) return 1;
  if (c == 1) return 0;
  size_t n;
  const uint8_t *p = mb_msg_data(m, &n);
  tk_item_t *it = malloc(sizeof *it + n);
  it->next = NULL;
  it->from = mb_msg_sender(m);
  it->len = n;
  it->at_ns = tk_now_ns();
  memcpy(it->data, p, n);
  pthread_mutex_lock(&pr->mu);
  *pr->tail = it;
  pr->tail = &it->next;
  pthread_cond_broadcast(&pr->cv);
  pthread_mutex_unlock(&pr->mu);
  return 0;
}

static inline void tk_probe_exit(void *ud, const uint8_t *reason, size_t len) {
  tk_probe_t *pr = ud;
  mb_dec_t d;
  const char *s;
  size_t n;
  pthread_mutex_lock(&pr->mu);
  pr->exited = 1;
  if (!mb_dec_init(&d, NULL, reason, len) && !mb_dec_atom(&d, &s, &n) && n < sizeof pr->reason) {
    memcpy(pr->reason, s, n);
    pr->reason[n] = 0;
  } else {
    strcpy(pr->reason, "?");
  }
  pthread_cond_broadcast(&pr->cv);
  pthread_mutex_unlock(&pr->mu);
}

static inline tk_probe_t *tk_probe_new(void) {
  tk_probe_t *pr = calloc(1, sizeof *pr);
  pthread_mutex_init(&pr->mu, NULL);
  pthread_cond_init(&pr->cv, NULL);
  pr->tail = &pr->head;
  return pr;
}

/* Spawns a probe process; opts may be NULL. */
static inline tk_probe_t *tk_probe(mb_runtime_t *rt, const mb_spawn_opts_t *opts) {
  tk_probe_t *pr = tk_probe_new();
  if (mb_spawn_native(rt, tk_probe_fn, tk_probe_exit, pr, opts, &pr->pid)) abort();
  return pr;
}

static inline void tk_deadline(struct timespec *ts, int ms) {
  clock_gettime(CLOCK_REALTIME, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

/* Next recorded message (free() it), or NULL after ms. */
static inline tk_item_t *tk_wait(tk_probe_t *pr, int ms) {
  struct timespec ts;
  tk_deadline(&ts, ms);
  pthread_mutex_lock(&pr->mu);
  while (!pr->head)
    if (pthread_cond_timedwait(&pr->cv, &pr->mu, &ts)) break;
  tk_item_t *it = pr->head;
  if (it) {
    pr->head = it->next;
    if (!pr->head) pr->tail = &pr->head;
  }
  pthread_mutex_unlock(&pr->mu);
  return it;
}

/* Waits for the probe to exit; returns 1 if it did within ms. */
static inline int tk_wait_exit(tk_probe_t *pr, int ms) {
  struct timespec ts;
  tk_deadline(&ts, ms);
  pthread_mutex_lock(&pr->mu);
  while (!pr->exited)
    if (pthread_cond_timedwait(&pr->cv, &pr->mu, &ts)) break;
  int e = pr->exited;
  pthread_mutex_unlock(&pr->mu);
  return e;
}

/* Frees a probe after its process is gone (or the runtime freed). */
static inline void tk_probe_free(tk_probe_t *pr) {
  tk_item_t *it = pr->head;
  while (it) {
    tk_item_t *n = it->next;
    free(it);
    it = n;
  }
  pthread_mutex_destroy(&pr->mu);
  pthread_cond_destroy(&pr->cv);
  free(pr);
}

/* Sends a command and lets it take effect: commands are processed in order, so
 * a ping answered after it proves it ran. */
static inline void tk_cmd(mb_runtime_t *rt, tk_probe_t *pr, tk_term t) {
  mb_send(rt, 0, pr->pid, t.p, t.n);
  tk_free(t);
}

static inline void tk_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* ---- waiting on state, signals, tuple fields (test_signal, test_registry, ...) ---- */

static inline void tk_sleep_us(int us) {
  struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000L};
  nanosleep(&ts, NULL);
}

/* Polls `cond` every 0.2 ms until it holds or `ms` pass; check cond afterwards.
 * For state that no message announces (link counts seen from the other side,
 * counters); anything a message announces is awaited with tk_wait instead. */
#define TK_WAIT_UNTIL(cond, ms)                                               \
  do {                                                                        \
    uint64_t tk_end_ = tk_now_ns() + (uint64_t)(ms) * 1000000u;               \
    while (!(cond) && tk_now_ns() < tk_end_) tk_sleep_us(200);                \
  } while (0)

/* A probe on scheduler index `sched` (0-based; -1: any), trapping exits if trap. */
static inline tk_probe_t *tk_probe_on(mb_runtime_t *rt, int sched, int trap) {
  mb_spawn_opts_t o;
  memset(&o, 0, sizeof o);
  o.scheduler = sched < 0 ? MB_SCHED_ANY : sched + 1;
  o.trap_exit = trap;
  return tk_probe(rt, &o);
}

static inline int tk_send_int(mb_runtime_t *rt, mb_pid_t from, mb_pid_t to, int64_t v) {
  tk_term t = tk_int(v);
  int r = mb_send(rt, from, to, t.p, t.n);
  tk_free(t);
  return r;
}

static inline int tk_send_atom(mb_runtime_t *rt, mb_pid_t from, mb_pid_t to, const char *a) {
  tk_term t = tk_atom(a);
  int r = mb_send(rt, from, to, t.p, t.n);
  tk_free(t);
  return r;
}

/* Exit signal with an atom reason. */
static inline int tk_exit(mb_runtime_t *rt, mb_pid_t from, mb_pid_t to, const char *reason) {
  tk_term t = tk_atom(reason);
  int r = mb_exit_signal(rt, from, to, t.p, t.n);
  tk_free(t);
  return r;
}

/* Sends a probe command {Cmd, Pid}. */
static inline void tk_cmd_with(mb_runtime_t *rt, tk_probe_t *pr, const char *cmd, mb_pid_t pid) {
  tk_cmd(rt, pr, tk_cmd_pid(cmd, pid));
}

/* Sends {'$exit', Atom}: the probe exits with reason Atom. */
static inline void tk_cmd_exit(mb_runtime_t *rt, tk_probe_t *pr, const char *reason) {
  tk_term r = tk_atom(reason);
  tk_cmd(rt, pr, tk_cmd_term("$exit", r));
  tk_free(r);
}

/* Link and monitor counts as mb_proc_info reports them; -1 if not alive. */
static inline long tk_links(mb_runtime_t *rt, mb_pid_t pid) {
  mb_proc_info_t i;
  return mb_proc_info(rt, pid, &i) ? -1 : (long)i.links;
}
static inline long tk_monitors(mb_runtime_t *rt, mb_pid_t pid) {
  mb_proc_info_t i;
  return mb_proc_info(rt, pid, &i) ? -1 : (long)i.monitors;
}

/* Puts d on element idx (0-based) of the tuple term[0..n); 0 on success. */
static inline int tk_elem(const uint8_t *p, size_t n, uint32_t idx, mb_dec_t *d) {
  uint32_t a;
  if (mb_dec_init(d, NULL, p, n) || mb_dec_tuple(d, &a) || idx >= a) return -1;
  for (uint32_t i = 0; i < idx; i++)
    if (mb_dec_skip(d)) return -1;
  return 0;
}
static inline mb_pid_t tk_elem_pid(const uint8_t *p, size_t n, uint32_t idx) {
  mb_dec_t d;
  mb_pid_t pid = 0;
  if (tk_elem(p, n, idx, &d) || mb_dec_pid(&d, &pid)) return 0;
  return pid;
}
static inline int tk_elem_ref(const uint8_t *p, size_t n, uint32_t idx, mb_ref_t *r) {
  mb_dec_t d;
  return tk_elem(p, n, idx, &d) || mb_dec_ref(&d, r) ? -1 : 0;
}
static inline int64_t tk_elem_int(const uint8_t *p, size_t n, uint32_t idx) {
  mb_dec_t d;
  int64_t v = INT64_MIN;
  if (tk_elem(p, n, idx, &d) || mb_dec_int(&d, &v)) return INT64_MIN;
  return v;
}
static inline int tk_elem_is_atom(const uint8_t *p, size_t n, uint32_t idx, const char *name) {
  mb_dec_t d;
  const char *s;
  size_t len;
  if (tk_elem(p, n, idx, &d) || mb_dec_atom(&d, &s, &len)) return 0;
  return len == strlen(name) && !memcmp(s, name, len);
}
/* Is the term the atom `name`? */
static inline int tk_is_atom(const uint8_t *p, size_t n, const char *name) {
  return mb_term_is_atom(p, n, name);
}

/* 1 if it is {'EXIT', from, reason} with an atom reason. */
static inline int tk_is_exit(const tk_item_t *it, mb_pid_t from, const char *reason) {
  uint32_t a;
  return it && tk_is_tagged(it->data, it->len, "EXIT", &a) && a == 3 &&
         tk_elem_pid(it->data, it->len, 1) == from && tk_elem_is_atom(it->data, it->len, 2, reason);
}

/* 1 if it is {'DOWN', ref, process, pid, reason} with an atom reason. */
static inline int tk_is_down(const tk_item_t *it, mb_ref_t ref, mb_pid_t pid, const char *reason) {
  uint32_t a;
  mb_ref_t r;
  return it && tk_is_tagged(it->data, it->len, "DOWN", &a) && a == 5 &&
         !tk_elem_ref(it->data, it->len, 1, &r) && mb_ref_equal(r, ref) &&
         tk_elem_is_atom(it->data, it->len, 2, "process") &&
         tk_elem_pid(it->data, it->len, 3) == pid && tk_elem_is_atom(it->data, it->len, 4, reason);
}

/* Sends the atom '$sync' to the probe and waits for it: everything sent to the
 * probe before it (from this thread, or pushed before this call) has then been
 * handled. Returns how many other messages were recorded before it (freed), or
 * -1 if it did not come within ms. */
static inline int tk_sync(mb_runtime_t *rt, tk_probe_t *pr, int ms) {
  tk_send_atom(rt, 0, pr->pid, "$sync");
  int before = 0;
  for (;;) {
    tk_item_t *it = tk_wait(pr, ms);
    if (!it) return -1;
    int mark = tk_is_atom(it->data, it->len, "$sync");
    free(it);
    if (mark) return before;
    before++;
  }
}

/* Waits for the probe to exit; 1 if it did within ms with atom reason `reason`. */
static inline int tk_exited_with(tk_probe_t *pr, const char *reason, int ms) {
  if (!tk_wait_exit(pr, ms)) return 0;
  pthread_mutex_lock(&pr->mu);
  int ok = strcmp(pr->reason, reason) == 0;
  pthread_mutex_unlock(&pr->mu);
  return ok;
}

/* The ref of the probe's last '$monitor', and the result of its last '$demonitor'. */
static inline mb_ref_t tk_last_ref(tk_probe_t *pr) {
  pthread_mutex_lock(&pr->mu);
  mb_ref_t r = pr->last_ref;
  pthread_mutex_unlock(&pr->mu);
  return r;
}
static inline int tk_last_demonitor(tk_probe_t *pr) {
  pthread_mutex_lock(&pr->mu);
  int r = pr->last_demonitor;
  pthread_mutex_unlock(&pr->mu);
  return r;
}

/* Milliseconds of slack allowed for "arrives on time" checks: MB_TEST_SLACK_MS,
 * default 30 (sanitizers and loaded machines). Never used for "not early". */
static inline int tk_slack_ms(void) {
  const char *s = getenv("MB_TEST_SLACK_MS");
  int v = s ? atoi(s) : 0;
  return v > 0 ? v : 30;
}

#endif
