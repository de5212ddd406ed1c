/* timer.c: per-scheduler timer heap with cancellation by id.
 * Invariants: heap[i]->heap_idx == i; every entry in the heap is in the index
 * and vice versa; `earliest` mirrors heap[0]'s deadline (read without the lock
 * by the owner to skip locking when nothing is due). */
#include <stdint.h>
#include <stdlib.h>
#include "timer.h"

#define TOMB ((mb_timer_ent_t *)(uintptr_t)1)
#define SCHED_SHIFT 48

int mb_timer_sched(mb_timer_t id) { return (int)(id >> SCHED_SHIFT) - 1; }

int mb_timers_init(mb_timers_t *t, int sched) {
  if (pthread_mutex_init(&t->lock, NULL)) return MB_ENOMEM;
  t->heap = NULL;
  t->n = t->cap = 0;
  t->index = NULL;
  t->icap = t->iused = 0;
  t->next_seq = 1;
  t->sched = sched;
  atomic_init(&t->earliest, UINT64_MAX);
  return 0;
}

void mb_timers_free_ent(mb_timer_ent_t *e) {
  mb_msg_free(e->msg);
  free(e->name);
  free(e);
}

void mb_timers_destroy(mb_timers_t *t) {
  for (uint32_t i = 0; i < t->n; i++) mb_timers_free_ent(t->heap[i]);
  free(t->heap);
  free(t->index);
  pthread_mutex_destroy(&t->lock);
}

static uint32_t slot_of(mb_timer_t id, uint32_t cap) {
  uint64_t h = id * 0x9E3779B97F4A7C15ull;
  return (uint32_t)(h >> 32) & (cap - 1);
}

static int index_grow(mb_timers_t *t) {
  /* sized for the live count, so tombstones never make it grow without bound */
  uint32_t ncap = 64;
  while (ncap < (t->n + 1) * 4) ncap *= 2;
  mb_timer_ent_t **ni = calloc(ncap, sizeof *ni);
  if (!ni) return -1;
  for (uint32_t i = 0; i < t->icap; i++) {
    mb_timer_ent_t *e = t->index[i];
    if (!e || e == TOMB) continue;
    uint32_t s = slot_of(e->id, ncap);
    while (ni[s]) s = (s + 1) & (ncap - 1);
    ni[s] = e;
  }
  free(t->index);
  t->index = ni;
  t->icap = ncap;
  t->iused = t->n;
  return 0;
}

static uint32_t *index_find(mb_timers_t *t, mb_timer_t id, uint32_t *out) {
  if (!t->icap) return NULL;
  uint32_t s = slot_of(id, t->icap);
  for (uint32_t probes = 0; probes < t->icap; probes++) {
    mb_timer_ent_t *e = t->index[s];
    if (!e) return NULL;
    if (e != TOMB && e->id == id) { *out = s; return out; }
    s = (s + 1) & (t->icap - 1);
  }
  return NULL;
}

static void swap(mb_timers_t *t, uint32_t a, uint32_t b) {
  mb_timer_ent_t *x = t->heap[a];
  t->heap[a] = t->heap[b];
  t->heap[b] = x;
  t->heap[a]->heap_idx = a;
  t->heap[b]->heap_idx = b;
}

static int less(const mb_timer_ent_t *a, const mb_timer_ent_t *b) {
  return a->deadline_ms < b->deadline_ms || (a->deadline_ms == b->deadline_ms && a->id < b->id);
}

static void sift_up(mb_timers_t *t, uint32_t i) {
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (!less(t->heap[i], t->heap[p])) break;
    swap(t, i, p);
    i = p;
  }
}

static void sift_down(mb_timers_t *t, uint32_t i) {
  for (;;) {
    uint32_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < t->n && less(t->heap[l], t->heap[m])) m = l;
    if (r < t->n && less(t->heap[r], t->heap[m])) m = r;
    if (m == i) return;
    swap(t, i, m);
    i = m;
  }
}

static void publish_earliest(mb_timers_t *t) {
  atomic_store_explicit(&t->earliest, t->n ? t->heap[0]->deadline_ms : UINT64_MAX,
                        memory_order_release);
}

/* Removes heap entry i and its index slot s. */
static void remove_at(mb_timers_t *t, uint32_t i, uint32_t s) {
  t->index[s] = TOMB;
  t->n--;
  if (i != t->n) {
    swap(t, i, t->n);
    sift_down(t, i);
    sift_up(t, i);
  }
  publish_earliest(t);
}

static mb_timer_t add(mb_timers_t *t, uint64_t deadline_ms, mb_pid_t to, mb_msg_t *msg,
                      uint32_t wait_seq, char *name, uint32_t nlen) {
  mb_timer_ent_t *e = malloc(sizeof *e);
  if (!e) { mb_msg_free(msg); free(name); return 0; }
  e->deadline_ms = deadline_ms;
  e->to = to;
  e->msg = msg;
  e->name = name;
  e->nlen = nlen;
  e->wait_seq = wait_seq;
  pthread_mutex_lock(&t->lock);
  if (t->n == t->cap) {
    uint32_t ncap = t->cap ? t->cap * 2 : 16;
    mb_timer_ent_t **nh = realloc(t->heap, ncap * sizeof *nh);
    if (!nh) goto oom;
    t->heap = nh;
    t->cap = ncap;
  }
  if ((t->iused + 1) * 2 > t->icap && index_grow(t)) goto oom;
  e->id = ((uint64_t)(t->sched + 1) << SCHED_SHIFT) | (t->next_seq++ & ((1ull << SCHED_SHIFT) - 1));
  uint32_t s = slot_of(e->id, t->icap);
  while (t->index[s] && t->index[s] != TOMB) s = (s + 1) & (t->icap - 1);
  if (!t->index[s]) t->iused++;
  t->index[s] = e;
  e->heap_idx = t->n;
  t->heap[t->n++] = e;
  sift_up(t, e->heap_idx);
  publish_earliest(t);
  mb_timer_t id = e->id; /* once unlocked, the owner may fire and free e at any time */
  pthread_mutex_unlock(&t->lock);
  return id;
oom:
  pthread_mutex_unlock(&t->lock);
  mb_timers_free_ent(e);
  return 0;
}

mb_timer_t mb_timers_add(mb_timers_t *t, uint64_t deadline_ms, mb_pid_t to, mb_msg_t *msg,
                         uint32_t wait_seq) {
  return add(t, deadline_ms, to, msg, wait_seq, NULL, 0);
}

mb_timer_t mb_timers_add_named(mb_timers_t *t, uint64_t deadline_ms, char *name, uint32_t nlen,
                               mb_msg_t *msg) {
  return add(t, deadline_ms, 0, msg, 0, name, nlen);
}

int64_t mb_timers_cancel(mb_timers_t *t, mb_timer_t id, uint64_t now_ms) {
  uint32_t s;
  pthread_mutex_lock(&t->lock);
  if (!index_find(t, id, &s)) {
    pthread_mutex_unlock(&t->lock);
    return MB_ENOENT;
  }
  mb_timer_ent_t *e = t->index[s];
  remove_at(t, e->heap_idx, s);
  pthread_mutex_unlock(&t->lock);
  uint64_t d = e->deadline_ms > now_ms ? e->deadline_ms - now_ms : 0;
  int64_t left = d > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)d;
  mb_timers_free_ent(e);
  return left;
}

mb_timer_ent_t *mb_timers_pop_due(mb_timers_t *t, uint64_t now_ms) {
  if (atomic_load_explicit(&t->earliest, memory_order_acquire) > now_ms) return NULL;
  mb_timer_ent_t *e = NULL;
  pthread_mutex_lock(&t->lock);
  if (t->n && t->heap[0]->deadline_ms <= now_ms) {
    uint32_t s;
    e = t->heap[0];
    if (index_find(t, e->id, &s)) remove_at(t, 0, s);
  }
  pthread_mutex_unlock(&t->lock);
  return e;
}
