/* signal.c: links, monitors and exit signals, with Erlang's semantics.
 *
 * Signals travel through the same inbox as messages and are applied by the
 * receiving process's own thread when it drains (mb_proc_drain), so they keep
 * their order relative to messages from the same sender. Each side keeps its
 * own view (links, monitors); a signal that no longer matches the receiver's
 * view (an EXIT_LINK after unlink, a DOWN after demonitor) is dropped, so after
 * unlink/demonitor returns nothing caused by the old link/monitor arrives. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "runtime.h"
#include "alloc.h"
#include "term.h"

/* ---- exit reasons: a static atom, a malloc'd copy, or the signal message
 * that carried it (kept, so setting a reason never allocates: a kill cannot
 * turn into a normal exit for want of memory) ---- */

static void reason_clear(mb_proc_t *p) {
  if (p->reason_mem) {
    if (p->reason_is_msg) mb_msg_free(p->reason_mem);
    else free(p->reason_mem);
  }
  p->reason = NULL;
  p->reason_len = 0;
  p->reason_mem = NULL;
  p->reason_is_msg = 0;
}

void mb_proc_reason_static(mb_proc_t *p, const uint8_t *reason, size_t len) {
  reason_clear(p);
  p->reason = reason;
  p->reason_len = len;
}

static void reason_from_msg(mb_proc_t *p, mb_msg_t *m) {
  reason_clear(p);
  p->reason = m->data;
  p->reason_len = m->len;
  p->reason_mem = m;
  p->reason_is_msg = 1;
}

/* The static atom for a reason if there is one (no copy needed). */
static const uint8_t *static_reason(const uint8_t *r, size_t len, size_t *out) {
  static const struct { const uint8_t *a; const size_t *n; } atoms[] = {
      {mb_atom_killed, &mb_atom_killed_len}, {mb_atom_normal, &mb_atom_normal_len},
      {mb_atom_shutdown, &mb_atom_shutdown_len}, {mb_atom_noproc, &mb_atom_noproc_len},
      {mb_atom_enomem, &mb_atom_enomem_len}};
  for (size_t i = 0; i < sizeof atoms / sizeof atoms[0]; i++)
    if (len == *atoms[i].n && !memcmp(r, atoms[i].a, len)) {
      *out = len;
      return atoms[i].a;
    }
  return NULL;
}

/* p exits with the reason carried by signal m (taken); or with a static atom. */
static void set_exit_msg(mb_proc_t *p, mb_msg_t *m) {
  if (p->exit_pending) { mb_msg_free(m); return; }
  reason_from_msg(p, m);
  p->exit_pending = 1;
}

static void set_exit_static(mb_proc_t *p, const uint8_t *reason, size_t len) {
  if (p->exit_pending) return;
  mb_proc_reason_static(p, reason, len);
  p->exit_pending = 1;
}

static const mb_ref_t no_ref;

/* ---- building signals: malloc, else the runtime's reserve ---- */

typedef struct down_ctx {
  mb_ref_t ref;
  mb_pid_t who;
  const uint8_t *reason;
  size_t len;
  int exit; /* {'EXIT', who, reason} instead of {'DOWN', ref, process, who, reason} */
} down_ctx_t;

static void fill(mb_enc_t *e, const down_ctx_t *c) {
  if (c->exit) {
    mb_enc_tuple(e, 3);
    mb_enc_atom(e, "EXIT", 4);
  } else {
    mb_enc_tuple(e, 5);
    mb_enc_atom(e, "DOWN", 4);
    mb_enc_ref(e, c->ref);
    mb_enc_atom(e, "process", 7);
  }
  mb_enc_pid(e, c->who);
  mb_enc_term(e, c->reason, c->len);
}

static mb_msg_t *build(mb_runtime_t *rt, const down_ctx_t *c) {
  mb_enc_t e;
  size_t total;
  mb_enc_init(&e, rt->nodes, MB_MSG_HDR);
  fill(&e, c);
  uint8_t *block = mb_enc_finish(&e, &total);
  mb_msg_t *m = NULL;
  if (block) {
    m = mb_msg_from_block(block, total, c->who);
  } else if ((block = mb_reserve_take(&rt->reserve))) {
    mb_enc_init_fixed(&e, rt->nodes, block, MB_RESERVE_BLOCK, MB_MSG_HDR);
    fill(&e, c);
    m = mb_msg_from_reserve(block, e.err ? MB_MSG_HDR : e.len, c->who);
    if (e.err) { /* a reason too big for a block */
      mb_msg_free(m);
      return NULL;
    }
  }
  if (m && !c->exit) {
    m->kind = MB_K_DOWN;
    m->ref = c->ref;
  }
  return m;
}

static void lost(mb_runtime_t *rt, const char *what, mb_pid_t to) {
  char msg[160];
  snprintf(msg, sizeof msg, "out of memory: %s for <%u.%u.%u> could not be built: dropped", what,
           mb_pid_node(to), mb_pid_index(to), mb_pid_serial(to));
  pthread_mutex_lock(&rt->wd_lock);
  rt->log(rt->log_ud, MB_LOG_ERROR, msg);
  pthread_mutex_unlock(&rt->wd_lock);
}

#define RETRIES 200 /* 1 ms apart: memory a moment later is better than a lost signal */

static void nap(void) {
  struct timespec ts = {0, 1000000};
  nanosleep(&ts, NULL);
}

/* A DOWN or EXIT message that must go out: malloc, the reserve, the reason
 * replaced by enomem if it is too big for a block, a wait for memory, and
 * only then a logged loss. */
static mb_msg_t *must_build(mb_runtime_t *rt, down_ctx_t c, mb_pid_t to) {
  for (int i = 0; i <= RETRIES; i++) {
    mb_msg_t *m = build(rt, &c);
    if (m) return m;
    if (c.len + 128 > MB_RESERVE_BLOCK) {
      c.reason = mb_atom_enomem;
      c.len = mb_atom_enomem_len;
      continue;
    }
    if (i < RETRIES) nap();
  }
  lost(rt, c.exit ? "an EXIT message" : "a DOWN message", to);
  return NULL;
}

static mb_msg_t *exit_message(mb_runtime_t *rt, mb_pid_t to, mb_pid_t from, const uint8_t *reason,
                              size_t len) {
  return must_build(rt, (down_ctx_t){{0, {0, 0, 0}}, from, reason, len, 1}, to);
}

static void send_down(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, mb_pid_t who, const uint8_t *reason,
                      size_t len) {
  mb_msg_t *m = must_build(rt, (down_ctx_t){ref, who, reason, len, 0}, to);
  if (m) mb_deliver(rt, to, m);
}

/* Sends a signal; the ones that must not be lost (all but REPLY) use the
 * reserve and wait for memory. 0 or MB_ENOMEM. */
static int send_signal(mb_runtime_t *rt, mb_kind_t kind, mb_pid_t from, mb_pid_t to, mb_ref_t ref,
                       const uint8_t *payload, size_t len) {
  mb_msg_t *m = NULL;
  if (kind == MB_K_REPLY) {
    m = mb_msg_new(kind, from, payload, len);
  } else {
    for (int i = 0; i <= RETRIES && !m; i++) {
      if ((kind == MB_K_EXIT || kind == MB_K_EXIT_LINK) && MB_MSG_HDR + len > MB_RESERVE_BLOCK && i) {
        payload = mb_atom_enomem; /* a reason too big for a block, memory short */
        len = mb_atom_enomem_len;
      }
      if (!(m = mb_msg_signal(&rt->reserve, kind, from, payload, len)) && i < RETRIES) nap();
    }
    if (!m) lost(rt, "a link or monitor signal", to);
  }
  if (!m) return MB_ENOMEM;
  m->ref = ref;
  mb_deliver(rt, to, m);
  return 0;
}

/* A LINK or MONITOR that reached no process gets its noproc answer (proc.c). */
void mb_answer_noproc(mb_runtime_t *rt, mb_pid_t to, mb_msg_t *m) {
  if (m->kind == MB_K_LINK)
    send_signal(rt, MB_K_EXIT_LINK, to, m->from, no_ref, mb_atom_noproc, mb_atom_noproc_len);
  else if (m->kind == MB_K_MONITOR)
    send_down(rt, m->from, m->ref, to, mb_atom_noproc, mb_atom_noproc_len);
}

/* An exit signal reached p: kill it, turn it into a message, or ignore it.
 * Returns 1 if it kept the signal (as the holder of p's exit reason). */
static int exit_signal(mb_proc_t *p, mb_msg_t *sig, int linked) {
  mb_pid_t from = sig->from;
  const uint8_t *reason = sig->data;
  size_t len = sig->len;
  if (p->exit_pending) return 0;
  if (!linked && mb_term_is_atom(reason, len, "kill")) {
    set_exit_static(p, mb_atom_killed, mb_atom_killed_len);
  } else if (atomic_load_explicit(&p->trap_exit, memory_order_relaxed)) {
    mb_msg_t *m = exit_message(p->rt, p->pid, from, reason, len);
    if (m) mb_queue_append(p, m);
  } else if (mb_term_is_atom(reason, len, "normal")) {
    if (!linked && from == p->pid) set_exit_static(p, mb_atom_normal, mb_atom_normal_len);
  } else {
    size_t n;
    const uint8_t *st = static_reason(reason, len, &n);
    if (st) {
      set_exit_static(p, st, n);
    } else {
      set_exit_msg(p, sig);
      return 1;
    }
  }
  return 0;
}

/* p could not record a link or monitor asked for by m->from (out of memory):
 * rather than break the promise silently, p exits with reason enomem and the
 * asker, which already counts on the link or monitor, is told so at once. */
static void cannot_record(mb_proc_t *p, mb_msg_t *m) {
  if (m->kind == MB_K_LINK)
    send_signal(p->rt, MB_K_EXIT_LINK, p->pid, m->from, no_ref, mb_atom_enomem, mb_atom_enomem_len);
  else
    send_down(p->rt, m->from, m->ref, p->pid, mb_atom_enomem, mb_atom_enomem_len);
  set_exit_static(p, mb_atom_enomem, mb_atom_enomem_len);
}

static void apply(mb_proc_t *p, mb_msg_t *m) {
  mb_monitor_t mon;
  switch ((mb_kind_t)m->kind) {
  case MB_K_MSG:
    mb_queue_append(p, m);
    return;
  case MB_K_REPLY: {
    /* As OTP's alias monitors: a reply is kept only while its ref is an
     * active alias of the receiver, i.e. a monitor it holds that has not
     * fired, been removed or abandoned, nor already taken a reply. So a late
     * or second reply never reaches the mailbox, and no ref list is kept. */
    if (m->flags & MB_MF_IO_REPLY) { /* one per request: nothing late or second */
      mb_queue_append(p, m);
      return;
    }
    mb_monitor_t *mo = mb_mons_find(p, m->ref, 1);
    if (mo && mo->alias) {
      mo->alias = 0;
      mb_queue_append(p, m);
      return;
    }
    break;
  }
  case MB_K_DOWN:
    if (mb_mons_remove(p, m->ref, 1, &mon)) {
      mb_queue_append(p, m);
      return;
    }
    break;
  case MB_K_EXIT:
    if (exit_signal(p, m, 0)) return;
    break;
  case MB_K_EXIT_LINK:
    if (mb_links_remove(p, m->from) && exit_signal(p, m, 1)) return;
    break;
  case MB_K_LINK:
    if (mb_links_add(p, m->from)) cannot_record(p, m);
    break;
  case MB_K_UNLINK:
    mb_links_remove(p, m->from);
    break;
  case MB_K_MONITOR:
    if (mb_mons_add(p, m->ref, m->from, 0)) cannot_record(p, m);
    break;
  case MB_K_DEMONITOR: {
    /* only the process that holds a monitor removes it */
    mb_monitor_t *mo = mb_mons_find(p, m->ref, 0);
    if (mo && mo->pid == m->from) mb_mons_remove(p, m->ref, 0, NULL);
    break;
  }
  case MB_K_DEAD:
    break;
  }
  mb_msg_free(m);
}

/* Takes the whole inbox (newest first) and returns it oldest first. */
static mb_msg_t *take_inbox(mb_proc_t *p, mb_msg_t *replacement) {
  mb_msg_t *m = atomic_exchange_explicit(&p->inbox, replacement, memory_order_acq_rel);
  mb_msg_t *prev = NULL;
  while (m && m != MB_INBOX_CLOSED) {
    mb_msg_t *next = m->next;
    m->next = prev;
    prev = m;
    m = next;
  }
  return prev;
}

void mb_proc_drain(mb_proc_t *p) {
  if (!atomic_load_explicit(&p->inbox, memory_order_relaxed)) return;
  mb_msg_t *m = take_inbox(p, NULL);
  while (m) {
    mb_msg_t *next = m->next;
    apply(p, m);
    m = next;
  }
}

void mb_proc_terminate(mb_proc_t *p, int shutdown) {
  mb_runtime_t *rt = p->rt;
  const uint8_t *reason = p->reason ? p->reason : mb_atom_normal;
  size_t rlen = p->reason ? p->reason_len : mb_atom_normal_len;
  mb_proc_mark_dead(p);
  atomic_store_explicit(&p->state, MB_PS_EXITING, memory_order_release);
  mb_msg_t *late = take_inbox(p, MB_INBOX_CLOSED);
  mb_registry_drop(rt, p);
  mb_pubsub_drop(rt, p);
  /* Links and monitors asked for before we closed are answered with our reason. */
  while (late) {
    mb_msg_t *next = late->next;
    if (!shutdown && late->kind == MB_K_LINK) {
      send_signal(rt, MB_K_EXIT_LINK, p->pid, late->from, no_ref, reason, rlen);
    } else if (!shutdown && late->kind == MB_K_MONITOR) {
      send_down(rt, late->from, late->ref, p->pid, reason, rlen);
    } else if (late->kind == MB_K_UNLINK) {
      mb_links_remove(p, late->from);
    } else if (late->kind == MB_K_DEMONITOR) {
      mb_monitor_t *mo = mb_mons_find(p, late->ref, 0);
      if (mo && mo->pid == late->from) mb_mons_remove(p, late->ref, 0, NULL);
    }
    mb_msg_free(late);
    late = next;
  }
  if (!shutdown) {
    for (uint32_t i = 0; i < p->nlinks; i++)
      send_signal(rt, MB_K_EXIT_LINK, p->pid, p->links[i], no_ref, reason, rlen);
    for (uint32_t i = 0; i < p->nmons; i++) {
      mb_monitor_t *mo = &p->mons[i];
      if (mo->watching) {
        send_signal(rt, MB_K_DEMONITOR, p->pid, mo->pid, mo->ref, NULL, 0);
      } else {
        send_down(rt, mo->pid, mo->ref, p->pid, reason, rlen);
      }
    }
  }
  if (atomic_load_explicit(&p->owns_ports, memory_order_seq_cst) && rt->io_proc_exit)
    rt->io_proc_exit(p);
  mb_queue_free_all(p);
  if (p->wait_timer) {
    mb_timers_cancel(&p->sched->timers, p->wait_timer, 0);
    p->wait_timer = 0;
  }
  if (p->beh->destroy) p->beh->destroy(p, p->bstate, reason, rlen);
  mb_proc_lock(p);
  free(p->links);
  free(p->mons);
  p->links = NULL;
  p->mons = NULL;
  p->nlinks = p->caplinks = p->nmons = p->capmons = 0;
  mb_proc_unlock(p);
  reason_clear(p);
  p->bstate = NULL;
  mb_sched_t *s = p->sched;
  atomic_fetch_sub_explicit(&s->nprocs, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->exited, 1, memory_order_relaxed);
  mb_proc_release(p);
}

/* ---- the public API ---- */

int mb_link(mb_proc_t *self, mb_pid_t pid) {
  if (!pid) return MB_EINVAL;
  if (pid == self->pid || mb_links_has(self, pid)) return 0;
  int r = mb_links_add(self, pid);
  if (r) return r;
  send_signal(self->rt, MB_K_LINK, self->pid, pid, no_ref, NULL, 0);
  return 0;
}

int mb_unlink(mb_proc_t *self, mb_pid_t pid) {
  if (!pid) return MB_EINVAL;
  if (mb_links_remove(self, pid)) send_signal(self->rt, MB_K_UNLINK, self->pid, pid, no_ref, NULL, 0);
  return 0;
}

int mb_monitor(mb_proc_t *self, mb_pid_t pid, mb_ref_t *ref) {
  if (!pid || !ref) return MB_EINVAL;
  *ref = mb_make_ref(self->rt);
  int r = mb_mons_add(self, *ref, pid, 1);
  if (r) return r;
  send_signal(self->rt, MB_K_MONITOR, self->pid, pid, *ref, NULL, 0);
  return 0;
}

int mb_demonitor(mb_proc_t *self, mb_ref_t ref, int flush) {
  mb_monitor_t mon;
  /* a monitor held on self by another process is not self's to remove */
  int active = mb_mons_remove(self, ref, 1, &mon);
  if (active) send_signal(self->rt, MB_K_DEMONITOR, self->pid, mon.pid, ref, NULL, 0);
  if (flush) {
    mb_proc_drain(self);
    mb_queue_remove_kind(self, MB_K_DOWN, ref);
  }
  return active;
}

int mb_send_reply(mb_runtime_t *rt, mb_pid_t from, mb_pid_t to, mb_ref_t ref, const uint8_t *term,
                  size_t len) {
  if (!term || len < 2 || len > UINT32_MAX) return MB_EBADTERM;
  return send_signal(rt, MB_K_REPLY, from, to, ref, term, len);
}

int mb_send_io_reply(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, const uint8_t *term, size_t len) {
  if (!term || len < 2 || len > UINT32_MAX) return MB_EBADTERM;
  mb_msg_t *m = mb_msg_new(MB_K_REPLY, 0, term, len);
  if (!m) return MB_ENOMEM;
  m->ref = ref;
  m->flags |= MB_MF_IO_REPLY;
  mb_deliver(rt, to, m);
  return 0;
}

int mb_abandon_reply(mb_proc_t *self, mb_ref_t ref) {
  mb_monitor_t *mo = mb_mons_find(self, ref, 1);
  if (mo) mo->alias = 0; /* later replies are dropped on arrival */
  mb_proc_drain(self);
  mb_queue_remove_kind(self, MB_K_REPLY, ref); /* one already queued goes now */
  return 0;
}

int mb_exit_signal(mb_runtime_t *rt, mb_pid_t from, mb_pid_t to, const uint8_t *reason, size_t len) {
  if (!reason || mb_term_validate(reason, len, MB_TERM_MAX_DEPTH)) return MB_EBADTERM;
  return send_signal(rt, MB_K_EXIT, from, to, no_ref, reason, len);
}

int mb_proc_exit(mb_proc_t *self, const uint8_t *reason, size_t len) {
  if (!reason || mb_term_validate(reason, len, MB_TERM_MAX_DEPTH)) return MB_EBADTERM;
  /* Once an exit signal has been applied (exit_pending) its reason is final:
   * a kill must end the process as killed whatever it asks for afterwards. */
  if (self->exit_pending) return 0;
  size_t n;
  const uint8_t *st = static_reason(reason, len, &n);
  if (st) {
    mb_proc_reason_static(self, st, n);
    return 0;
  }
  uint8_t *copy = mb_malloc(len);
  if (!copy) {
    /* the process still exits abnormally, never as normal for want of memory */
    mb_proc_reason_static(self, mb_atom_enomem, mb_atom_enomem_len);
    return MB_ENOMEM;
  }
  memcpy(copy, reason, len);
  reason_clear(self);
  self->reason = copy;
  self->reason_len = len;
  self->reason_mem = copy;
  return 0;
}

int mb_trap_exit(mb_proc_t *self, int on) {
  return atomic_exchange_explicit(&self->trap_exit, on ? 1 : 0, memory_order_relaxed);
}
