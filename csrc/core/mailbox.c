/* mailbox.c: a process's private queue and selective receive.
 *
 * Messages reach a process through its lock-free inbox (proc.c); the owner moves
 * them, oldest first, into the private queue when it drains, applying signals
 * on the way (signal.c). Scanning state: `scan` is the slot holding the next
 * message to look at, `cur` the slot holding the one last returned. A scan that
 * reaches the end and is resumed after a wait goes on from there, so a process
 * waiting for one reply does not rescan messages it has already rejected.
 *
 * Queued DOWN and REPLY messages are also indexed by (kind, ref), so a
 * demonitor with flush or an abandoned call finds its message without walking
 * the queue: the message is turned into MB_K_DEAD in place (no longer counted)
 * and unlinked by the next scan that passes over it, where its slot is known. */
#include <stdlib.h>
#include "runtime.h"

#define KTOMB ((mb_msg_t *)(uintptr_t)1)

static int indexed(const mb_msg_t *m) { return m->kind == MB_K_DOWN || m->kind == MB_K_REPLY; }

static uint32_t khash(int kind, mb_ref_t r) {
  uint64_t h = ((uint64_t)r.id[0] | (uint64_t)r.id[1] << 32) * 0x9E3779B97F4A7C15ull;
  h ^= ((uint64_t)r.id[2] << 16 | (uint64_t)r.node << 4 | (uint64_t)kind) * 0xC2B2AE3D27D4EB4Full;
  return (uint32_t)(h >> 32) ^ (uint32_t)h;
}

static int kidx_grow(mb_proc_t *p) {
  uint32_t ncap = 8;
  while (ncap < (p->kn + 1) * 4) ncap *= 2;
  mb_msg_t **ni = calloc(ncap, sizeof *ni);
  if (!ni) return -1;
  for (uint32_t i = 0; i < p->kcap; i++) {
    mb_msg_t *e = p->kidx[i];
    if (!e || e == KTOMB) continue;
    uint32_t s = khash(e->kind, e->ref) & (ncap - 1);
    while (ni[s]) s = (s + 1) & (ncap - 1);
    ni[s] = e;
  }
  free(p->kidx);
  p->kidx = ni;
  p->kcap = ncap;
  p->kfill = p->kn;
  return 0;
}

static void kidx_add(mb_proc_t *p, mb_msg_t *m) {
  if (p->klossy || ((p->kfill + 1) * 2 > p->kcap && kidx_grow(p))) {
    p->klossy = 1; /* out of memory: remove_kind walks the queue until it is empty */
    return;
  }
  uint32_t s = khash(m->kind, m->ref) & (p->kcap - 1);
  while (p->kidx[s] && p->kidx[s] != KTOMB) s = (s + 1) & (p->kcap - 1);
  if (!p->kidx[s]) p->kfill++;
  p->kidx[s] = m;
  p->kn++;
}

/* Slot of the entry for (kind, ref), or of m itself when m is given. */
static int64_t kidx_find(mb_proc_t *p, int kind, mb_ref_t ref, const mb_msg_t *m) {
  if (!p->kcap) return -1;
  uint32_t s = khash(kind, ref) & (p->kcap - 1);
  for (uint32_t probes = 0; probes < p->kcap; probes++, s = (s + 1) & (p->kcap - 1)) {
    mb_msg_t *e = p->kidx[s];
    if (!e) return -1;
    if (e == KTOMB) continue;
    if (m ? e == m : (e->kind == kind && mb_ref_equal(e->ref, ref))) return s;
  }
  return -1;
}

static void kidx_del(mb_proc_t *p, const mb_msg_t *m) {
  int64_t s = kidx_find(p, m->kind, m->ref, m);
  if (s < 0) return;
  p->kidx[s] = KTOMB;
  p->kn--;
}

static void kidx_reset(mb_proc_t *p) {
  free(p->kidx);
  p->kidx = NULL;
  p->kcap = p->kfill = p->kn = 0;
  p->klossy = 0;
}

static void count(mb_proc_t *p, long n, long bytes) {
  atomic_store_explicit(&p->qlen, atomic_load_explicit(&p->qlen, memory_order_relaxed) + (size_t)n,
                        memory_order_relaxed);
  atomic_store_explicit(&p->qbytes,
                        atomic_load_explicit(&p->qbytes, memory_order_relaxed) + (size_t)bytes,
                        memory_order_relaxed);
}

void mb_queue_append(mb_proc_t *p, mb_msg_t *m) {
  if (indexed(m)) kidx_add(p, m);
  m->next = NULL;
  *p->qtail = m;
  p->qtail = &m->next;
  count(p, 1, (long)mb_msg_size(m));
}

/* Unlinks the message in `slot`, keeping qtail right; returns it. */
static mb_msg_t *unlink_at(mb_proc_t *p, mb_msg_t **slot) {
  mb_msg_t *m = *slot;
  *slot = m->next;
  if (p->qtail == &m->next) p->qtail = slot;
  m->next = NULL;
  if (indexed(m)) kidx_del(p, m);
  count(p, -1, -(long)mb_msg_size(m));
  if (!p->qhead && p->klossy) kidx_reset(p); /* empty: the index is exact again */
  return m;
}

/* Unlinks and frees the dead message in `slot` (already uncounted), moving
 * any scan position that pointed past it back to its slot. */
static void drop_dead(mb_proc_t *p, mb_msg_t **slot) {
  mb_msg_t *m = *slot;
  *slot = m->next;
  if (p->qtail == &m->next) p->qtail = slot;
  if (p->mark == &m->next) p->mark = slot;
  if (p->cur == &m->next) p->cur = slot;
  if (p->scan == &m->next) p->scan = slot;
  mb_msg_free(m);
}

void mb_queue_reset_scan(mb_proc_t *p) {
  p->scan = &p->qhead;
  p->cur = NULL;
  p->mark = NULL;
}

const mb_msg_t *mb_mailbox_next(mb_proc_t *self) {
  if (self->exit_pending) return NULL;
  for (;;) {
    if (!*self->scan) {
      mb_proc_drain(self);
      if (self->exit_pending || !*self->scan) return NULL;
    }
    if ((*self->scan)->kind != MB_K_DEAD) break;
    drop_dead(self, self->scan);
  }
  mb_msg_t *m = *self->scan;
  self->cur = self->scan;
  self->scan = &m->next;
  return m;
}

mb_msg_t *mb_mailbox_take(mb_proc_t *self) {
  if (!self->cur || !*self->cur || (*self->cur)->kind == MB_K_DEAD) return NULL;
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
  if (!p->klossy) {
    int64_t s = kidx_find(p, kind, ref, NULL);
    if (s < 0) return 0;
    mb_msg_t *m = p->kidx[s];
    p->kidx[s] = KTOMB;
    p->kn--;
    count(p, -1, -(long)mb_msg_size(m));
    m->kind = MB_K_DEAD;
    if (m->shared) { /* the payload can go now; the header waits for its unlink */
      mb_shared_release(m->shared);
      m->shared = NULL;
      m->len = 0;
    }
    return 1;
  }
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
  kidx_reset(p);
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
