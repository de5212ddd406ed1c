/* supervisor.c: OTP supervisors for native processes (mb_supervisor_start).
 *
 * A supervisor is a process with its own behaviour (selective receive) that
 * traps exits. Its run function is a small state machine:
 *   - normal: take each message; {'EXIT', Child, Reason} restarts by strategy
 *     and restart type, an EXIT from the parent or a stop request stops it;
 *   - terminating: children queued in `termq` are stopped one at a time (OTP's
 *     shutdown: monitor, unlink, exit(shutdown), wait for the DOWN up to
 *     shutdown_ms, then exit(kill)); other messages stay queued meanwhile;
 *     when the queue is empty the pending action runs: restart a range of
 *     children, or exit with a reason.
 * Invariants: only the supervisor's own thread writes the child table, under
 * `mu`, so mb_supervisor_which_children may read it from any thread; a live
 * supervisor is in the `sups` list (lookups hold `sups_mu`, destroy removes
 * it under that lock before freeing). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "moonbeam.h"

#define SUP_BUDGET 256 /* messages per slice */
#define DEFAULT_SHUTDOWN_MS 5000
#define STOP_ATOM "$mb_supervisor_stop"

typedef struct child {
  char id[64];
  mb_child_start_fn start;
  void *arg;
  int restart;
  int64_t shutdown_ms;
  mb_pid_t pid; /* 0: not running */
  int gone;     /* a temporary child that ended: no longer in the table */
} child_t;

enum { AFTER_NONE = 0, AFTER_RESTART, AFTER_EXIT };
enum { T_IDLE = 0, T_WAIT_SHUTDOWN, T_WAIT_KILL };

typedef struct sup {
  struct sup *next; /* in `sups` */
  mb_runtime_t *rt;
  mb_pid_t pid, parent;
  pthread_mutex_t mu;
  int strategy, max_restarts, max_ms;
  child_t *ch;
  size_t n;
  uint64_t *restarts; /* ring of restart times (ms), max_restarts + 1 slots */
  size_t nrestarts, rhead;
  int started;
  /* terminating */
  size_t *termq, tq_len, tq_pos;
  int tphase;
  mb_ref_t tref;
  uint64_t tdeadline_ms; /* UINT64_MAX: wait forever */
  int after;
  size_t restart_from, restart_to; /* AFTER_RESTART: children [from, to) in order */
  uint8_t *exit_reason;
  size_t exit_len;
} sup_t;

static pthread_mutex_t sups_mu = PTHREAD_MUTEX_INITIALIZER;
static sup_t *sups;

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static const uint8_t atom_shutdown[] = {131, 119, 8, 's', 'h', 'u', 't', 'd', 'o', 'w', 'n'};
static const uint8_t atom_kill[] = {131, 119, 4, 'k', 'i', 'l', 'l'};

static void set_exit(sup_t *s, const uint8_t *r, size_t len) {
  free(s->exit_reason);
  s->exit_reason = mb_malloc(len);
  if (s->exit_reason) memcpy(s->exit_reason, r, len);
  s->exit_len = s->exit_reason ? len : 0;
}

/* ---- restart intensity ---- */

/* Counts a restart now; 1 when it is one more than max_restarts in the window. */
static int add_restart(sup_t *s) {
  uint64_t t = now_ms();
  size_t cap = (size_t)s->max_restarts + 1;
  /* forget restarts older than the window (the ring keeps them oldest first) */
  while (s->nrestarts && t - s->restarts[s->rhead] >= (uint64_t)s->max_ms) {
    s->rhead = (s->rhead + 1) % cap;
    s->nrestarts--;
  }
  if (s->nrestarts == cap) return 1;
  s->restarts[(s->rhead + s->nrestarts) % cap] = t;
  s->nrestarts++;
  return s->nrestarts > (size_t)s->max_restarts;
}

/* ---- terminating children ---- */

static void queue_terminate(sup_t *s, size_t from, size_t to) {
  s->tq_len = s->tq_pos = 0;
  for (size_t i = to; i-- > from;)
    if (!s->ch[i].gone && s->ch[i].pid) s->termq[s->tq_len++] = i;
  s->tphase = T_IDLE;
}

static void child_ended(sup_t *s, size_t i) {
  pthread_mutex_lock(&s->mu);
  s->ch[i].pid = 0;
  if (s->ch[i].restart == MB_CHILD_TEMPORARY) s->ch[i].gone = 1;
  pthread_mutex_unlock(&s->mu);
}

/* Is m {'EXIT', pid, _}? Then *reason and *rlen are the reason's bytes (without a
 * version byte) inside the message. */
static int is_exit_from(const mb_msg_t *m, mb_pid_t *pid, const uint8_t **reason, size_t *rlen) {
  size_t n;
  const uint8_t *p = mb_msg_data(m, &n);
  mb_dec_t d;
  uint32_t a;
  const char *s;
  size_t len;
  if (mb_dec_init(&d, NULL, p, n) || mb_dec_tuple(&d, &a) || a != 3) return 0;
  if (mb_dec_atom(&d, &s, &len) || len != 4 || memcmp(s, "EXIT", 4)) return 0;
  if (mb_dec_pid(&d, pid)) return 0;
  if (reason) {
    *reason = d.p;
    *rlen = (size_t)(d.end - d.p);
  }
  return 1;
}

/* Drops a queued {'EXIT', pid, _} (the child died before it was unlinked). */
static void flush_exit(mb_proc_t *self, mb_pid_t pid) {
  mb_mailbox_rewind(self);
  const mb_msg_t *m;
  mb_pid_t from;
  while ((m = mb_mailbox_next(self)))
    if (is_exit_from(m, &from, NULL, NULL) && from == pid) {
      mb_msg_free(mb_mailbox_take(self));
      return;
    }
}

/* Stops the queued children one by one; returns 1 when done, 0 to wait. */
static int terminate_step(mb_proc_t *self, sup_t *s) {
  mb_runtime_t *rt = s->rt;
  while (s->tq_pos < s->tq_len) {
    child_t *c = &s->ch[s->termq[s->tq_pos]];
    if (s->tphase == T_IDLE) {
      mb_monitor(self, c->pid, &s->tref);
      mb_unlink(self, c->pid);
      if (c->shutdown_ms == MB_SHUTDOWN_BRUTAL_KILL) {
        mb_exit_signal(rt, s->pid, c->pid, atom_kill, sizeof atom_kill);
        s->tphase = T_WAIT_KILL;
      } else {
        mb_exit_signal(rt, s->pid, c->pid, atom_shutdown, sizeof atom_shutdown);
        s->tphase = T_WAIT_SHUTDOWN;
        s->tdeadline_ms = c->shutdown_ms == MB_SHUTDOWN_INFINITY
                              ? UINT64_MAX : now_ms() + (uint64_t)c->shutdown_ms;
      }
    }
    /* look for the DOWN of this child's monitor, leaving everything else */
    mb_mailbox_rewind(self);
    const mb_msg_t *m;
    int down = 0;
    while ((m = mb_mailbox_next(self))) {
      mb_ref_t r;
      if (mb_msg_kind(m, &r) == MB_MSG_DOWN && mb_ref_equal(r, s->tref)) {
        mb_msg_free(mb_mailbox_take(self));
        down = 1;
        break;
      }
    }
    if (down) {
      mb_pid_t pid = c->pid;
      flush_exit(self, pid);
      child_ended(s, s->termq[s->tq_pos]);
      s->tq_pos++;
      s->tphase = T_IDLE;
      continue;
    }
    if (s->tphase == T_WAIT_SHUTDOWN) {
      uint64_t t = now_ms();
      if (t >= s->tdeadline_ms) {
        mb_exit_signal(rt, s->pid, c->pid, atom_kill, sizeof atom_kill);
        s->tphase = T_WAIT_KILL;
        continue;
      }
      mb_proc_set_timeout(self, s->tdeadline_ms == UINT64_MAX ? -1 : (int64_t)(s->tdeadline_ms - t));
    } else {
      mb_proc_set_timeout(self, -1);
    }
    return 0;
  }
  return 1;
}

/* Queues stopping every child then exiting with reason. */
static void begin_shutdown(sup_t *s, const uint8_t *reason, size_t len) {
  set_exit(s, reason, len);
  queue_terminate(s, 0, s->n);
  s->after = AFTER_EXIT;
}

/* ---- starting children ---- */

static int start_child(mb_proc_t *self, sup_t *s, size_t i) {
  child_t *c = &s->ch[i];
  mb_pid_t pid = 0;
  int r = c->start(self, c->arg, &pid);
  if (r) return r < 0 ? r : MB_EINVAL;
  if (pid) mb_link(self, pid);
  pthread_mutex_lock(&s->mu);
  c->pid = pid;
  pthread_mutex_unlock(&s->mu);
  return 0;
}

/* Restarts [from, to) in order; a start that fails counts as another restart
 * and is retried until it succeeds or the intensity is exceeded. Returns 1 if
 * the supervisor is now shutting down. */
static int restart_range(mb_proc_t *self, sup_t *s, size_t from, size_t to) {
  for (size_t i = from; i < to; i++) {
    if (s->ch[i].gone || s->ch[i].pid) continue;
    while (start_child(self, s, i)) {
      if (add_restart(s)) {
        begin_shutdown(s, atom_shutdown, sizeof atom_shutdown);
        return 1;
      }
    }
  }
  return 0;
}

/* The first slice: start every child in order. */
static int start_all(mb_proc_t *self, sup_t *s) {
  for (size_t i = 0; i < s->n; i++) {
    int r = start_child(self, s, i);
    if (!r) continue;
    mb_enc_t e;
    mb_enc_init(&e, NULL, 0);
    mb_enc_tuple(&e, 2);
    mb_enc_atom(&e, "shutdown", 8);
    mb_enc_tuple(&e, 3);
    mb_enc_atom(&e, "failed_to_start_child", 21);
    mb_enc_atom(&e, s->ch[i].id, strlen(s->ch[i].id));
    mb_enc_int(&e, r);
    size_t len;
    uint8_t *reason = mb_enc_finish(&e, &len);
    if (reason) begin_shutdown(s, reason, len);
    else begin_shutdown(s, atom_shutdown, sizeof atom_shutdown);
    free(reason);
    return 1;
  }
  return 0;
}

/* ---- messages ---- */

static int is_transient_ok(const uint8_t *r, size_t len) {
  if (mb_term_is_atom(r, len, "normal") || mb_term_is_atom(r, len, "shutdown")) return 1;
  mb_dec_t d;
  uint32_t a;
  const char *s;
  size_t n;
  return !mb_dec_init(&d, NULL, r, len) && !mb_dec_tuple(&d, &a) && a == 2 &&
         !mb_dec_atom(&d, &s, &n) && n == 8 && !memcmp(s, "shutdown", 8);
}

static void on_child_exit(mb_proc_t *self, sup_t *s, size_t i, const uint8_t *r, size_t len) {
  child_t *c = &s->ch[i];
  int restart = c->restart == MB_CHILD_PERMANENT ||
                (c->restart == MB_CHILD_TRANSIENT && !is_transient_ok(r, len));
  child_ended(s, i);
  if (!restart) return;
  if (add_restart(s)) {
    begin_shutdown(s, atom_shutdown, sizeof atom_shutdown);
    return;
  }
  switch (s->strategy) {
  case MB_SUP_ONE_FOR_ALL:
    queue_terminate(s, 0, s->n);
    s->after = AFTER_RESTART;
    s->restart_from = 0;
    s->restart_to = s->n;
    break;
  case MB_SUP_REST_FOR_ONE:
    queue_terminate(s, i + 1, s->n);
    s->after = AFTER_RESTART;
    s->restart_from = i;
    s->restart_to = s->n;
    break;
  default:
    restart_range(self, s, i, i + 1);
  }
}

static void on_message(mb_proc_t *self, sup_t *s, const mb_msg_t *m) {
  mb_pid_t from;
  const uint8_t *r;
  size_t len;
  if (is_exit_from(m, &from, &r, &len)) {
    /* the reason as a term of its own: version byte + its bytes */
    uint8_t small[256], *reason = len + 1 <= sizeof small ? small : mb_malloc(len + 1);
    if (!reason) {
      reason = (uint8_t *)atom_shutdown; /* cannot copy it: treat as shutdown */
      len = sizeof atom_shutdown - 1;
    } else {
      reason[0] = 131;
      memcpy(reason + 1, r, len);
    }
    if (from && from == s->parent) {
      begin_shutdown(s, reason, len + 1);
    } else {
      for (size_t i = 0; i < s->n; i++)
        if (!s->ch[i].gone && s->ch[i].pid == from) {
          on_child_exit(self, s, i, reason, len + 1);
          break;
        }
      /* else an exit from a process that is not (or no longer) a child */
    }
    if (reason != small && reason != atom_shutdown) free(reason);
    return;
  }
  size_t n;
  const uint8_t *p = mb_msg_data(m, &n);
  if (mb_term_is_atom(p, n, STOP_ATOM)) begin_shutdown(s, atom_shutdown, sizeof atom_shutdown);
  /* anything else is dropped, as a supervisor's unexpected messages */
}

static int sup_run(mb_proc_t *self, void *st) {
  sup_t *s = st;
  if (!s->started) {
    s->started = 1;
    start_all(self, s);
  }
  for (int budget = SUP_BUDGET; budget > 0; budget--) {
    if (s->after) {
      if (!terminate_step(self, s)) return MB_RUN_WAIT;
      int after = s->after;
      s->after = AFTER_NONE;
      if (after == AFTER_EXIT) {
        if (s->exit_reason) mb_proc_exit(self, s->exit_reason, s->exit_len);
        return MB_RUN_EXIT;
      }
      restart_range(self, s, s->restart_from, s->restart_to);
      continue;
    }
    mb_proc_set_timeout(self, -1);
    mb_mailbox_rewind(self);
    if (!mb_mailbox_next(self)) return MB_RUN_WAIT;
    mb_msg_t *m = mb_mailbox_take(self);
    on_message(self, s, m);
    mb_msg_free(m);
    mb_proc_add_reductions(self, 1);
  }
  return MB_RUN_YIELD;
}

static void sup_free(sup_t *s) {
  pthread_mutex_destroy(&s->mu);
  free(s->ch);
  free(s->restarts);
  free(s->termq);
  free(s->exit_reason);
  free(s);
}

static void sup_destroy(mb_proc_t *self, void *st, const uint8_t *reason, size_t len) {
  (void)self, (void)reason, (void)len;
  sup_t *s = st;
  pthread_mutex_lock(&sups_mu);
  for (sup_t **pp = &sups; *pp; pp = &(*pp)->next)
    if (*pp == s) {
      *pp = s->next;
      break;
    }
  pthread_mutex_unlock(&sups_mu);
  sup_free(s);
}

static size_t sup_memory(void *st) {
  sup_t *s = st;
  return sizeof *s + s->n * (sizeof(child_t) + sizeof(size_t)) +
         ((size_t)s->max_restarts + 1) * sizeof(uint64_t);
}

static const mb_behaviour_t sup_behaviour = {sup_run, sup_destroy, sup_memory, NULL};

/* ---- API ---- */

int mb_supervisor_start(mb_runtime_t *rt, const mb_sup_spec_t *spec, mb_pid_t *pid) {
  if (!rt || !spec || !pid || (spec->nchildren && !spec->children)) return MB_EINVAL;
  if (spec->strategy < MB_SUP_ONE_FOR_ONE || spec->strategy > MB_SUP_REST_FOR_ONE) return MB_EINVAL;
  if (spec->max_restarts < MB_SUP_NO_RESTARTS || spec->max_seconds < 0) return MB_EINVAL;
  for (size_t i = 0; i < spec->nchildren; i++) {
    const mb_child_spec_t *c = &spec->children[i];
    if (!c->id || !c->start || strlen(c->id) >= sizeof ((child_t *)0)->id) return MB_EINVAL;
    if (c->restart < MB_CHILD_PERMANENT || c->restart > MB_CHILD_TEMPORARY) return MB_EINVAL;
    if (c->shutdown_ms < MB_SHUTDOWN_BRUTAL_KILL) return MB_EINVAL;
    for (size_t j = 0; j < i; j++)
      if (!strcmp(spec->children[j].id, c->id)) return MB_EINVAL;
  }
  sup_t *s = mb_calloc(1, sizeof *s);
  if (!s) return MB_ENOMEM;
  s->rt = rt;
  s->strategy = spec->strategy;
  s->max_restarts = spec->max_restarts == 0 ? 3 : spec->max_restarts < 0 ? 0 : spec->max_restarts;
  s->max_ms = (spec->max_seconds ? spec->max_seconds : 5) * 1000;
  s->n = spec->nchildren;
  s->ch = mb_calloc(s->n ? s->n : 1, sizeof *s->ch);
  s->termq = mb_calloc(s->n ? s->n : 1, sizeof *s->termq);
  s->restarts = mb_calloc((size_t)s->max_restarts + 1, sizeof *s->restarts);
  pthread_mutex_init(&s->mu, NULL);
  if (!s->ch || !s->termq || !s->restarts) {
    sup_free(s);
    return MB_ENOMEM;
  }
  for (size_t i = 0; i < s->n; i++) {
    const mb_child_spec_t *c = &spec->children[i];
    strcpy(s->ch[i].id, c->id);
    s->ch[i].start = c->start;
    s->ch[i].arg = c->arg;
    s->ch[i].restart = c->restart;
    s->ch[i].shutdown_ms = c->shutdown_ms ? c->shutdown_ms : DEFAULT_SHUTDOWN_MS;
  }
  mb_spawn_opts_t o;
  memset(&o, 0, sizeof o);
  if (spec->spawn) o = *spec->spawn;
  o.trap_exit = 1;
  s->parent = o.parent ? mb_self(o.parent) : 0;
  /* listed before it can run, so which_children works from its first slice */
  pthread_mutex_lock(&sups_mu);
  int r = mb_spawn(rt, &sup_behaviour, s, &o, &s->pid);
  if (!r) {
    s->next = sups;
    sups = s;
    *pid = s->pid;
  }
  pthread_mutex_unlock(&sups_mu);
  if (r) sup_free(s);
  return r;
}

int mb_supervisor_stop(mb_runtime_t *rt, mb_pid_t sup) {
  mb_enc_t e;
  mb_enc_init(&e, NULL, mb_msg_prefix());
  mb_enc_atom(&e, STOP_ATOM, strlen(STOP_ATOM));
  if (!mb_alive(rt, sup)) {
    mb_enc_discard(&e);
    return MB_ENOPROC;
  }
  return mb_send_enc(rt, 0, sup, &e);
}

/* Runs fn on the live supervisor sup with sups_mu and its mu held. */
static int with_sup(mb_runtime_t *rt, mb_pid_t pid, void (*fn)(sup_t *, void *), void *ud) {
  int r = MB_ENOPROC;
  pthread_mutex_lock(&sups_mu);
  for (sup_t *s = sups; s; s = s->next)
    if (s->rt == rt && s->pid == pid) {
      pthread_mutex_lock(&s->mu);
      fn(s, ud);
      pthread_mutex_unlock(&s->mu);
      r = 0;
      break;
    }
  pthread_mutex_unlock(&sups_mu);
  return r;
}

typedef struct which_ctx {
  mb_child_info_t *out;
  size_t cap;
  int count;
} which_ctx_t;

static void which_fn(sup_t *s, void *ud) {
  which_ctx_t *w = ud;
  for (size_t i = 0; i < s->n; i++) {
    if (s->ch[i].gone) continue;
    if ((size_t)w->count < w->cap) {
      mb_child_info_t *o = &w->out[w->count];
      memcpy(o->id, s->ch[i].id, sizeof o->id);
      o->pid = s->ch[i].pid;
      o->restart = s->ch[i].restart;
    }
    w->count++;
  }
}

int mb_supervisor_which_children(mb_runtime_t *rt, mb_pid_t sup, mb_child_info_t *out, size_t cap) {
  if (!out && cap) return MB_EINVAL;
  which_ctx_t w = {out, cap, 0};
  int r = with_sup(rt, sup, which_fn, &w);
  return r ? r : w.count;
}

static void count_fn(sup_t *s, void *ud) {
  mb_sup_counts_t *c = ud;
  memset(c, 0, sizeof *c);
  for (size_t i = 0; i < s->n; i++) {
    if (s->ch[i].gone) continue;
    c->specs++;
    if (s->ch[i].pid) c->active++;
  }
}

int mb_supervisor_count_children(mb_runtime_t *rt, mb_pid_t sup, mb_sup_counts_t *out) {
  if (!out) return MB_EINVAL;
  return with_sup(rt, sup, count_fn, out);
}
