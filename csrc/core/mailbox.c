/* mailbox.c: a process's private queue and selective receive.
 *
 * Messages reach a process through its lock-free inbox (proc.c); the owner moves
 * them, oldest first, into the private queue when it drains, applying signals
 * on the way (signal.c). Scanning state: `scan` is the slot holding the next
 * message to look at, `cur` the slot holding the one last returned. A scan that
 * reaches the end and is resumed after a wait goes on from there, so a process
 * waiting for one reply does not rescan messages it has already rejected. */
#include <stdlib.h>
#include "runtime.h"

void mb_queue_append(mb_proc_t *p, mb_msg_t *m) {
  m->next = NULL;
  *p->qtail = m;
  p->qtail = &m->next;
  atomic_store_explicit(&p->qlen, atomic_load_explicit(&p->qlen, memory_order_relaxed) + 1,
                        memory_order_relaxed);
  atomic_store_explicit(&p->qbytes,
                        atomic_load_explicit(&p->qbytes, memory_order_relaxed) + mb_msg_size(m),
                        memory_order_relaxed);
}

/* Unlinks the message in `slot`, keeping qtail right; returns it. */
static mb_msg_t *unlink_at(mb_proc_t *p, mb_msg_t **slot) {
  mb_msg_t *m = *slot;
  *slot = m->next;
  if (p->qtail == &m->next) p->qtail = slot;
  m->next = NULL;
  atomic_store_explicit(&p->qlen, atomic_load_explicit(&p->qlen, memory_order_relaxed) - 1,
                        memory_order_relaxed);
  atomic_store_explicit(&p->qbytes,
                        atomic_load_explicit(&p->qbytes, memory_order_relaxed) - mb_msg_size(m),
                        memory_order_relaxed);
  return m;
}

void mb_queue_reset_scan(mb_proc_t *p) {
  p->scan = &p->qhead;
  p->cur = NULL;
  p->mark = NULL;
}

const mb_msg_t *mb_mailbox_next(mb_proc_t *self) {
  if (self->exit_pending) return NULL;
  if (!*self->scan) {
    mb_proc_drain(self);
    if (self->exit_pending || !*self->scan) return NULL;
  }
  mb_msg_t *m = *self->scan;
  self->cur = self->scan;
  self->scan = &m->next;
  return m;
}

mb_msg_t *mb_mailbox_take(mb_proc_t *self) {
  if (!self->cur || !*self->cur) return NULL;
  mb_msg_t *m = unlink_at(self, self->cur);
  mb_queue_reset_scan(self);
  mb_sched_t *s = self->sched;
  atomic_store_explicit(&s->received, atomic_load_explicit(&s->received, memory_order_relaxed) + 1,
                        memory_order_relaxed);
  return m;
}

void mb_mailbox_rewind(mb_proc_t *self) {
  self->scan = self->mark ? self->mark : &self->qhead;
  self->mark = NULL;
  self->cur = NULL;
}

void mb_mailbox_mark(mb_proc_t *self) {
  mb_proc_drain(self);
  self->mark = self->qtail;
}

size_t mb_mailbox_len(mb_proc_t *self) {
  mb_proc_drain(self);
  return atomic_load_explicit(&self->qlen, memory_order_relaxed);
}

int mb_queue_remove_kind(mb_proc_t *p, int kind, mb_ref_t ref) {
  int n = 0;
  for (mb_msg_t **slot = &p->qhead; *slot;) {
    if ((*slot)->kind == kind && mb_ref_equal((*slot)->ref, ref)) {
      mb_msg_free(unlink_at(p, slot));
      n++;
    } else {
      slot = &(*slot)->next;
    }
  }
  if (n) mb_queue_reset_scan(p);
  return n;
}

void mb_queue_free_all(mb_proc_t *p) {
  mb_msg_t *m = p->qhead;
  while (m) {
    mb_msg_t *next = m->next;
    mb_msg_free(m);
    m = next;
  }
  p->qhead = NULL;
  p->qtail = &p->qhead;
  mb_queue_reset_scan(p);
  atomic_store_explicit(&p->qlen, 0, memory_order_relaxed);
  atomic_store_explicit(&p->qbytes, 0, memory_order_relaxed);
}
