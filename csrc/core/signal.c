/* signal.c: links, monitors and exit signals, with Erlang's semantics.
 *
 * Signals travel through the same inbox as messages and are applied by the
 * receiving process's own thread when it drains (mb_proc_drain), so they keep
 * their order relative to messages from the same sender. Each side keeps its
 * own view (links, monitors); a signal that no longer matches the receiver's
 * view (an EXIT_LINK after unlink, a DOWN after demonitor) is dropped, so after
 * unlink/demonitor returns nothing caused by the old link/monitor arrives. */
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

static void set_exit(mb_proc_t *p, const uint8_t *reason, size_t len) {
  if (p->exit_pending) return;
  uint8_t *copy = malloc(len ? len : 1);
  if (copy) memcpy(copy, reason, len);
  free(p->reason);
  p->reason = copy;
  p->reason_len = copy ? len : 0;
  p->exit_pending = 1;
}

/* Builds a message into a block with room for the header. */
static mb_msg_t *finish_msg(mb_enc_t *e, mb_pid_t from, mb_kind_t kind) {
  size_t total;
  uint8_t *block = mb_enc_finish(e, &total);
  if (!block) return NULL;
  mb_msg_t *m = mb_msg_from_block(block, total, from);
  m->kind = (uint8_t)kind;
  return m;
}

static mb_msg_t *exit_message(mb_runtime_t *rt, mb_pid_t from, const uint8_t *reason, size_t len) {
  mb_enc_t e;
  mb_enc_init(&e, rt->nodes, MB_MSG_HDR);
  mb_enc_tuple(&e, 3);
  mb_enc_atom(&e, "EXIT", 4);
  mb_enc_pid(&e, from);
  mb_enc_term(&e, reason, len);
  return finish_msg(&e, from, MB_K_MSG);
}

static mb_msg_t *down_message(mb_runtime_t *rt, mb_ref_t ref, mb_pid_t who, const uint8_t *reason,
                              size_t len) {
  mb_enc_t e;
  mb_enc_init(&e, rt->nodes, MB_MSG_HDR);
  mb_enc_tuple(&e, 5);
  mb_enc_atom(&e, "DOWN", 4);
  mb_enc_ref(&e, ref);
  mb_enc_atom(&e, "process", 7);
  mb_enc_pid(&e, who);
  mb_enc_term(&e, reason, len);
  mb_msg_t *m = finish_msg(&e, who, MB_K_DOWN);
  if (m) m->ref = ref;
  return m;
}

static void send_signal(mb_runtime_t *rt, mb_kind_t kind, mb_pid_t from, mb_pid_t to, mb_ref_t ref,
                        const uint8_t *payload, size_t len) {
  mb_msg_t *m = mb_msg_new(kind, from, payload, len);
  if (!m) return;
  m->ref = ref;
  mb_deliver(rt, to, m);
}

static const mb_ref_t no_ref;

/* An exit signal reached p: kill it, turn it into a message, or ignore it. */
static void exit_signal(mb_proc_t *p, mb_pid_t from, const uint8_t *reason, size_t len, int linked) {
  if (p->exit_pending) return;
  if (!linked && mb_term_is_atom(reason, len, "kill")) {
    set_exit(p, mb_atom_killed, mb_atom_killed_len);
  } else if (atomic_load_explicit(&p->trap_exit, memory_order_relaxed)) {
    mb_msg_t *m = exit_message(p->rt, from, reason, len);
    if (m) mb_queue_append(p, m);
  } else if (mb_term_is_atom(reason, len, "normal")) {
    if (!linked && from == p->pid) set_exit(p, reason, len);
  } else {
    set_exit(p, reason, len);
  }
}

/* 1 if ref was abandoned (and forgets it: one reply per ref). */
static int take_abandoned(mb_proc_t *p, mb_ref_t ref) {
  uint32_t n = p->nabandoned < MB_ABANDONED ? p->nabandoned : MB_ABANDONED;
  for (uint32_t i = 0; i < n; i++) {
    if (mb_ref_equal(p->abandoned[i], ref)) {
      memset(&p->abandoned[i], 0, sizeof p->abandoned[i]);
      return 1;
    }
  }
  return 0;
}

static void apply(mb_proc_t *p, mb_msg_t *m) {
  mb_monitor_t mon;
  switch ((mb_kind_t)m->kind) {
  case MB_K_MSG:
    mb_queue_append(p, m);
    return;
  case MB_K_REPLY:
    if (!take_abandoned(p, m->ref)) {
      mb_queue_append(p, m);
      return;
    }
    break;
  case MB_K_DOWN:
    if (mb_mons_remove(p, m->ref, &mon)) {
      mb_queue_append(p, m);
      return;
    }
    break;
  case MB_K_EXIT:
    exit_signal(p, m->from, m->data, m->len, 0);
    break;
  case MB_K_EXIT_LINK:
    if (mb_links_remove(p, m->from)) exit_signal(p, m->from, m->data, m->len, 1);
    break;
  case MB_K_LINK:
    mb_links_add(p, m->from);
    break;
  case MB_K_UNLINK:
    mb_links_remove(p, m->from);
    break;
  case MB_K_MONITOR:
    mb_mons_add(p, m->ref, m->from, 0);
    break;
  case MB_K_DEMONITOR:
    mb_mons_remove(p, m->ref, NULL);
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
      mb_msg_t *d = down_message(rt, late->ref, p->pid, reason, rlen);
      if (d) mb_deliver(rt, late->from, d);
    } else if (late->kind == MB_K_UNLINK) {
      mb_links_remove(p, late->from);
    } else if (late->kind == MB_K_DEMONITOR) {
      mb_mons_remove(p, late->ref, NULL);
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
        mb_msg_t *d = down_message(rt, mo->ref, p->pid, reason, rlen);
        if (d) mb_deliver(rt, mo->pid, d);
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
  free(p->reason);
  p->reason = NULL;
  free(p->abandoned);
  p->abandoned = NULL;
  p->nabandoned = 0;
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
  int active = mb_mons_remove(self, ref, &mon) && mon.watching;
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
  send_signal(rt, MB_K_REPLY, from, to, ref, term, len);
  return 0;
}

int mb_abandon_reply(mb_proc_t *self, mb_ref_t ref) {
  if (!self->abandoned && !(self->abandoned = calloc(MB_ABANDONED, sizeof(mb_ref_t))))
    return MB_ENOMEM;
  self->abandoned[self->nabandoned++ % MB_ABANDONED] = ref;
  /* a reply already queued is dropped now: later ones at arrival */
  mb_proc_drain(self);
  for (mb_msg_t **slot = &self->qhead; *slot; slot = &(*slot)->next) {
    if ((*slot)->kind == MB_K_REPLY && mb_ref_equal((*slot)->ref, ref)) {
      take_abandoned(self, ref);
      mb_queue_remove_kind(self, MB_K_REPLY, ref);
      break;
    }
  }
  return 0;
}

int mb_exit_signal(mb_runtime_t *rt, mb_pid_t from, mb_pid_t to, const uint8_t *reason, size_t len) {
  if (!reason || mb_term_validate(reason, len, MB_TERM_MAX_DEPTH)) return MB_EBADTERM;
  send_signal(rt, MB_K_EXIT, from, to, no_ref, reason, len);
  return 0;
}

int mb_proc_exit(mb_proc_t *self, const uint8_t *reason, size_t len) {
  if (!reason || mb_term_validate(reason, len, MB_TERM_MAX_DEPTH)) return MB_EBADTERM;
  /* Once an exit signal has been applied (exit_pending) its reason is final:
   * a kill must end the process as killed whatever it asks for afterwards. */
  if (self->exit_pending) return 0;
  uint8_t *copy = malloc(len);
  if (!copy) return MB_ENOMEM;
  memcpy(copy, reason, len);
  free(self->reason);
  self->reason = copy;
  self->reason_len = len;
  return 0;
}

int mb_trap_exit(mb_proc_t *self, int on) {
  return atomic_exchange_explicit(&self->trap_exit, on ? 1 : 0, memory_order_relaxed);
}
