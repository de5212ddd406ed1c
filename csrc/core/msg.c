/* msg.c: message allocation. */
#include <stdlib.h>
#include <string.h>
#include "msg.h"
#include "alloc.h"

const uint8_t mb_atom_normal[] = {131, 119, 6, 'n', 'o', 'r', 'm', 'a', 'l'};
const uint8_t mb_atom_kill[] = {131, 119, 4, 'k', 'i', 'l', 'l'};
const uint8_t mb_atom_killed[] = {131, 119, 6, 'k', 'i', 'l', 'l', 'e', 'd'};
const uint8_t mb_atom_noproc[] = {131, 119, 6, 'n', 'o', 'p', 'r', 'o', 'c'};
const uint8_t mb_atom_shutdown[] = {131, 119, 8, 's', 'h', 'u', 't', 'd', 'o', 'w', 'n'};
const uint8_t mb_atom_enomem[] = {131, 119, 6, 'e', 'n', 'o', 'm', 'e', 'm'};
const size_t mb_atom_enomem_len = sizeof mb_atom_enomem;
const size_t mb_atom_normal_len = sizeof mb_atom_normal;
const size_t mb_atom_kill_len = sizeof mb_atom_kill;
const size_t mb_atom_killed_len = sizeof mb_atom_killed;
const size_t mb_atom_noproc_len = sizeof mb_atom_noproc;
const size_t mb_atom_shutdown_len = sizeof mb_atom_shutdown;

mb_msg_t *mb_msg_new(mb_kind_t kind, mb_pid_t from, const uint8_t *term, size_t len) {
  mb_msg_t *m = mb_malloc(MB_MSG_HDR + len);
  if (!m) return NULL;
  uint8_t *data = (uint8_t *)m + MB_MSG_HDR;
  if (len) memcpy(data, term, len);
  m->next = NULL;
  m->from = from;
  m->data = data;
  m->shared = NULL;
  m->len = (uint32_t)len;
  m->kind = (uint8_t)kind;
  m->flags = 0;
  memset(&m->ref, 0, sizeof m->ref);
  return m;
}

mb_msg_t *mb_msg_from_block(uint8_t *block, size_t total, mb_pid_t from) {
  mb_msg_t *m = (mb_msg_t *)block;
  m->next = NULL;
  m->from = from;
  m->data = block + MB_MSG_HDR;
  m->shared = NULL;
  m->len = (uint32_t)(total - MB_MSG_HDR);
  m->kind = MB_K_MSG;
  m->flags = 0;
  memset(&m->ref, 0, sizeof m->ref);
  return m;
}

mb_shared_t *mb_shared_new(const uint8_t *term, size_t len, unsigned refs) {
  mb_shared_t *sh = mb_malloc(sizeof *sh + len);
  if (!sh) return NULL;
  atomic_init(&sh->refs, refs);
  sh->len = (uint32_t)len;
  memcpy(sh->data, term, len);
  return sh;
}

void mb_shared_release(mb_shared_t *sh) {
  if (atomic_fetch_sub_explicit(&sh->refs, 1, memory_order_acq_rel) == 1) free(sh);
}

mb_msg_t *mb_msg_new_shared(mb_shared_t *sh, mb_pid_t from) {
  mb_msg_t *m = mb_malloc(MB_MSG_HDR);
  if (!m) return NULL;
  m->next = NULL;
  m->from = from;
  m->data = sh->data;
  m->shared = sh;
  m->len = sh->len;
  m->kind = MB_K_MSG;
  m->flags = 0;
  memset(&m->ref, 0, sizeof m->ref);
  return m;
}

/* ---- the reserve ---- */

#define RB_STRIDE (sizeof(mb_rblock_t) + MB_RESERVE_BLOCK)

int mb_reserve_init(mb_reserve_t *r) {
  /* not mb_malloc: made before any test fault; its pages are only touched
   * when a block is first used */
  r->mem = malloc(RB_STRIDE * MB_RESERVE_COUNT);
  r->free = NULL;
  r->fresh = 0;
  atomic_init(&r->taken, 0);
  if (!r->mem) return MB_ENOMEM;
  pthread_mutex_init(&r->lock, NULL);
  return 0;
}

void mb_reserve_destroy(mb_reserve_t *r) {
  if (!r->mem) return;
  pthread_mutex_destroy(&r->lock);
  free(r->mem);
  r->mem = NULL;
}

uint8_t *mb_reserve_take(mb_reserve_t *r) {
  if (!r || !r->mem) return NULL;
  pthread_mutex_lock(&r->lock);
  mb_rblock_t *b = r->free;
  if (b) {
    r->free = b->next;
  } else if (r->fresh < MB_RESERVE_COUNT) {
    b = (mb_rblock_t *)((char *)r->mem + r->fresh++ * RB_STRIDE);
    b->pool = r;
  }
  pthread_mutex_unlock(&r->lock);
  if (!b) return NULL;
  atomic_fetch_add_explicit(&r->taken, 1, memory_order_relaxed);
  return (uint8_t *)(b + 1);
}

static void reserve_put(uint8_t *area) {
  mb_rblock_t *b = (mb_rblock_t *)area - 1;
  mb_reserve_t *r = b->pool;
  pthread_mutex_lock(&r->lock);
  b->next = r->free;
  r->free = b;
  pthread_mutex_unlock(&r->lock);
  atomic_fetch_sub_explicit(&r->taken, 1, memory_order_relaxed);
}

mb_msg_t *mb_msg_from_reserve(uint8_t *block, size_t total, mb_pid_t from) {
  mb_msg_t *m = mb_msg_from_block(block, total, from);
  m->flags = MB_MF_RESERVE;
  return m;
}

mb_msg_t *mb_msg_signal(mb_reserve_t *r, mb_kind_t kind, mb_pid_t from, const uint8_t *term,
                        size_t len) {
  mb_msg_t *m = mb_msg_new(kind, from, term, len);
  if (m || MB_MSG_HDR + len > MB_RESERVE_BLOCK) return m;
  uint8_t *block = mb_reserve_take(r);
  if (!block) return NULL;
  if (len) memcpy(block + MB_MSG_HDR, term, len);
  m = mb_msg_from_reserve(block, MB_MSG_HDR + len, from);
  m->kind = (uint8_t)kind;
  return m;
}

void mb_msg_free(mb_msg_t *m) {
  if (!m) return;
  if (m->shared) mb_shared_release(m->shared);
  if (m->flags & MB_MF_RESERVE) reserve_put((uint8_t *)m);
  else free(m);
}

size_t mb_msg_size(const mb_msg_t *m) {
  return MB_MSG_HDR + (m->shared ? 0 : m->len);
}

const uint8_t *mb_msg_data(const mb_msg_t *m, size_t *len) {
  if (len) *len = m->len;
  return m->data;
}

mb_pid_t mb_msg_sender(const mb_msg_t *m) { return m->from; }

size_t mb_msg_prefix(void) { return MB_MSG_HDR; }

int mb_msg_kind(const mb_msg_t *m, mb_ref_t *ref) {
  int k = m->kind == MB_K_REPLY ? MB_MSG_REPLY : m->kind == MB_K_DOWN ? MB_MSG_DOWN : MB_MSG_PLAIN;
  if (ref && k != MB_MSG_PLAIN) *ref = m->ref;
  return k;
}
