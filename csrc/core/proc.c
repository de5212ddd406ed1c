/* proc.c: the process table, process references, and pushing into mailboxes. */
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

int mb_ptable_init(mb_ptable_t *t, uint32_t serial_seed) {
  for (int i = 0; i < MB_MAX_CHUNKS; i++) atomic_init(&t->chunks[i], NULL);
  atomic_init(&t->nslots, 0);
  atomic_init(&t->live, 0);
  t->free_head = t->free_tail = UINT32_MAX;
  t->serial_seed = serial_seed;
  return pthread_mutex_init(&t->lock, NULL) ? MB_ENOMEM : 0;
}

void mb_ptable_destroy(mb_ptable_t *t) {
  for (int i = 0; i < MB_MAX_CHUNKS; i++) free(atomic_load(&t->chunks[i]));
  pthread_mutex_destroy(&t->lock);
}

mb_proc_t *mb_ptable_slot(mb_ptable_t *t, uint32_t index) {
  if (index >= atomic_load_explicit(&t->nslots, memory_order_acquire)) return NULL;
  mb_proc_t *chunk = atomic_load_explicit(&t->chunks[index >> MB_CHUNK_BITS], memory_order_acquire);
  return chunk ? &chunk[index & (MB_CHUNK_SIZE - 1)] : NULL;
}

mb_proc_t *mb_ptable_alloc(mb_ptable_t *t) {
  pthread_mutex_lock(&t->lock);
  if (t->free_head == UINT32_MAX) {
    uint32_t n = atomic_load_explicit(&t->nslots, memory_order_relaxed);
    uint32_t c = n >> MB_CHUNK_BITS;
    if (c >= MB_MAX_CHUNKS) { pthread_mutex_unlock(&t->lock); return NULL; }
    mb_proc_t *chunk = calloc(MB_CHUNK_SIZE, sizeof *chunk);
    if (!chunk) { pthread_mutex_unlock(&t->lock); return NULL; }
    for (uint32_t i = 0; i < MB_CHUNK_SIZE; i++) {
      /* slot 0 of chunk 0 is never used: pid 0 means "no process" */
      chunk[i].free_next = (i + 1 < MB_CHUNK_SIZE) ? n + i + 1 : UINT32_MAX;
      /* serials start where the runtime's seed says, so the pids of an
       * earlier runtime in this OS process are unlikely to name ours */
      uint32_t serial = (t->serial_seed ^ (n + i)) * 2654435761u;
      atomic_init(&chunk[i].ctl, (uint64_t)serial << 32);
      chunk[i].pid = mb_pid_make(0, n + i, serial);
    }
    atomic_store_explicit(&t->chunks[c], chunk, memory_order_release);
    atomic_store_explicit(&t->nslots, n + MB_CHUNK_SIZE, memory_order_release);
    t->free_head = n == 0 ? 1 : n;
    t->free_tail = n + MB_CHUNK_SIZE - 1;
  }
  uint32_t idx = t->free_head;
  mb_proc_t *p = mb_ptable_slot(t, idx);
  t->free_head = p->free_next;
  if (t->free_head == UINT32_MAX) t->free_tail = UINT32_MAX;
  pthread_mutex_unlock(&t->lock);
  uint64_t serial = atomic_load_explicit(&p->ctl, memory_order_relaxed) >> 32;
  p->pid = mb_pid_make(0, idx, (uint32_t)serial);
  /* not ALIVE yet: acquirers and inspectors must not see the block before the
   * spawner has filled it in and published it (spawn.c) */
  atomic_store_explicit(&p->ctl, (serial << 32) | 1, memory_order_release);
  atomic_fetch_add_explicit(&t->live, 1, memory_order_relaxed);
  return p;
}

mb_proc_t *mb_proc_acquire(mb_runtime_t *rt, mb_pid_t pid) {
  if (mb_pid_node(pid) != 0) return NULL;
  mb_proc_t *p = mb_ptable_slot(&rt->procs, mb_pid_index(pid));
  if (!p) return NULL;
  uint64_t want = mb_pid_serial(pid);
  uint64_t v = atomic_load_explicit(&p->ctl, memory_order_acquire);
  for (;;) {
    if ((v >> 32) != want || !(v & MB_CTL_ALIVE)) return NULL;
    if (atomic_compare_exchange_weak_explicit(&p->ctl, &v, v + 1, memory_order_acq_rel,
                                              memory_order_acquire))
      return p;
  }
}

static void reclaim(mb_proc_t *p) {
  mb_ptable_t *t = &p->rt->procs;
  /* every 32-bit serial is a valid pid: the index is never 0 */
  uint64_t serial = (uint32_t)((atomic_load_explicit(&p->ctl, memory_order_relaxed) >> 32) + 1);
  atomic_store_explicit(&p->state, MB_PS_FREE, memory_order_relaxed);
  atomic_store_explicit(&p->ctl, serial << 32, memory_order_release);
  uint32_t idx = mb_pid_index(p->pid);
  pthread_mutex_lock(&t->lock);
  p->free_next = UINT32_MAX;
  if (t->free_tail == UINT32_MAX) t->free_head = idx;
  else mb_ptable_slot(t, t->free_tail)->free_next = idx;
  t->free_tail = idx;
  pthread_mutex_unlock(&t->lock);
}

void mb_proc_release(mb_proc_t *p) {
  uint64_t v = atomic_fetch_sub_explicit(&p->ctl, 1, memory_order_acq_rel);
  if ((v & MB_CTL_REFS) == 1 && !(v & MB_CTL_ALIVE)) reclaim(p);
}

void mb_proc_mark_dead(mb_proc_t *p) {
  atomic_fetch_and_explicit(&p->ctl, ~MB_CTL_ALIVE, memory_order_acq_rel);
  atomic_fetch_sub_explicit(&p->rt->procs.live, 1, memory_order_relaxed);
}

void mb_proc_wake(mb_proc_t *p) {
  int st = atomic_load_explicit(&p->state, memory_order_seq_cst);
  if (st == MB_PS_WAITING &&
      atomic_compare_exchange_strong_explicit(&p->state, &st, MB_PS_RUNNABLE,
                                              memory_order_seq_cst, memory_order_seq_cst))
    mb_sched_enqueue(p);
}

int mb_proc_push(mb_proc_t *p, mb_msg_t *m) {
  mb_msg_t *head = atomic_load_explicit(&p->inbox, memory_order_relaxed);
  do {
    if (head == MB_INBOX_CLOSED) return MB_ENOPROC;
    m->next = head;
  } while (!atomic_compare_exchange_weak_explicit(&p->inbox, &head, m, memory_order_seq_cst,
                                                  memory_order_relaxed));
  mb_sched_t *cur = mb_sched_current();
  if (cur && cur->rt == p->rt)
    atomic_store_explicit(&cur->sent, atomic_load_explicit(&cur->sent, memory_order_relaxed) + 1,
                          memory_order_relaxed);
  mb_proc_wake(p);
  return 0;
}

/* A LINK or MONITOR that reached no process gets its noproc answer. */
static void answer_noproc(mb_runtime_t *rt, mb_pid_t to, mb_msg_t *m) {
  mb_pid_t asker = m->from;
  if (m->kind == MB_K_LINK) {
    mb_msg_t *r = mb_msg_new(MB_K_EXIT_LINK, to, mb_atom_noproc, mb_atom_noproc_len);
    if (r) mb_deliver(rt, asker, r);
  } else if (m->kind == MB_K_MONITOR) {
    mb_enc_t e;
    mb_enc_init(&e, rt->nodes, MB_MSG_HDR);
    mb_enc_tuple(&e, 5);
    mb_enc_atom(&e, "DOWN", 4);
    mb_enc_ref(&e, m->ref);
    mb_enc_atom(&e, "process", 7);
    mb_enc_pid(&e, to);
    mb_enc_atom(&e, "noproc", 6);
    size_t total;
    uint8_t *block = mb_enc_finish(&e, &total);
    if (block) {
      mb_msg_t *r = mb_msg_from_block(block, total, to);
      r->kind = MB_K_DOWN;
      r->ref = m->ref;
      mb_deliver(rt, asker, r);
    }
  }
}

void mb_deliver(mb_runtime_t *rt, mb_pid_t to, mb_msg_t *m) {
  mb_proc_t *p = mb_proc_acquire(rt, to);
  if (p) {
    int r = mb_proc_push(p, m);
    mb_proc_release(p);
    if (r == 0) return;
  }
  if (m->kind == MB_K_LINK || m->kind == MB_K_MONITOR) answer_noproc(rt, to, m);
  mb_msg_free(m);
}

void mb_proc_lock(mb_proc_t *p) {
  unsigned expected = 0;
  while (!atomic_compare_exchange_weak_explicit(&p->lock, &expected, 1, memory_order_acquire,
                                                memory_order_relaxed))
    expected = 0;
}

void mb_proc_unlock(mb_proc_t *p) { atomic_store_explicit(&p->lock, 0, memory_order_release); }

int mb_links_has(const mb_proc_t *p, mb_pid_t pid) {
  for (uint32_t i = 0; i < p->nlinks; i++)
    if (p->links[i] == pid) return 1;
  return 0;
}

/* Makes room for one more element in an array inspectors read (links or
 * monitors): a fresh array is swapped in under the lock, so an inspector never
 * sees freed memory. */
static int grow_shared(mb_proc_t *p, void **arr, uint32_t n, uint32_t *cap, size_t elem) {
  if (n < *cap) return 0;
  uint32_t ncap = *cap ? *cap * 2 : 4;
  void *fresh = malloc(ncap * elem), *old = *arr;
  if (!fresh) return MB_ENOMEM;
  if (n) memcpy(fresh, old, n * elem);
  mb_proc_lock(p);
  *arr = fresh;
  *cap = ncap;
  mb_proc_unlock(p);
  free(old);
  return 0;
}

int mb_links_add(mb_proc_t *p, mb_pid_t pid) {
  if (mb_links_has(p, pid)) return 0;
  if (grow_shared(p, (void **)&p->links, p->nlinks, &p->caplinks, sizeof *p->links)) return MB_ENOMEM;
  mb_proc_lock(p);
  p->links[p->nlinks++] = pid;
  mb_proc_unlock(p);
  return 0;
}

int mb_links_remove(mb_proc_t *p, mb_pid_t pid) {
  for (uint32_t i = 0; i < p->nlinks; i++) {
    if (p->links[i] == pid) {
      mb_proc_lock(p);
      p->links[i] = p->links[--p->nlinks];
      mb_proc_unlock(p);
      return 1;
    }
  }
  return 0;
}

int mb_mons_add(mb_proc_t *p, mb_ref_t ref, mb_pid_t pid, int watching) {
  if (grow_shared(p, (void **)&p->mons, p->nmons, &p->capmons, sizeof *p->mons)) return MB_ENOMEM;
  mb_proc_lock(p);
  p->mons[p->nmons++] = (mb_monitor_t){ref, pid, (uint8_t)(watching != 0), (uint8_t)(watching != 0)};
  mb_proc_unlock(p);
  return 0;
}

mb_monitor_t *mb_mons_find(mb_proc_t *p, mb_ref_t ref, int watching) {
  for (uint32_t i = 0; i < p->nmons; i++)
    if (p->mons[i].watching == (watching != 0) && mb_ref_equal(p->mons[i].ref, ref)) return &p->mons[i];
  return NULL;
}

int mb_mons_remove(mb_proc_t *p, mb_ref_t ref, int watching, mb_monitor_t *out) {
  mb_monitor_t *mo = mb_mons_find(p, ref, watching);
  if (!mo) return 0;
  if (out) *out = *mo;
  mb_proc_lock(p);
  *mo = p->mons[--p->nmons];
  mb_proc_unlock(p);
  return 1;
}
