/* msg.c: message allocation. */
#include <stdlib.h>
#include <string.h>
#include "msg.h"

const uint8_t mb_atom_normal[] = {131, 119, 6, 'n', 'o', 'r', 'm', 'a', 'l'};
const uint8_t mb_atom_kill[] = {131, 119, 4, 'k', 'i', 'l', 'l'};
const uint8_t mb_atom_killed[] = {131, 119, 6, 'k', 'i', 'l', 'l', 'e', 'd'};
const uint8_t mb_atom_noproc[] = {131, 119, 6, 'n', 'o', 'p', 'r', 'o', 'c'};
const uint8_t mb_atom_shutdown[] = {131, 119, 8, 's', 'h', 'u', 't', 'd', 'o', 'w', 'n'};
const size_t mb_atom_normal_len = sizeof mb_atom_normal;
const size_t mb_atom_kill_len = sizeof mb_atom_kill;
const size_t mb_atom_killed_len = sizeof mb_atom_killed;
const size_t mb_atom_noproc_len = sizeof mb_atom_noproc;
const size_t mb_atom_shutdown_len = sizeof mb_atom_shutdown;

mb_msg_t *mb_msg_new(mb_kind_t kind, mb_pid_t from, const uint8_t *term, size_t len) {
  mb_msg_t *m = malloc(MB_MSG_HDR + len);
  if (!m) return NULL;
  uint8_t *data = (uint8_t *)m + MB_MSG_HDR;
  if (len) memcpy(data, term, len);
  m->next = NULL;
  m->from = from;
  m->data = data;
  m->shared = NULL;
  m->len = (uint32_t)len;
  m->kind = (uint8_t)kind;
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
  memset(&m->ref, 0, sizeof m->ref);
  return m;
}

mb_shared_t *mb_shared_new(const uint8_t *term, size_t len, unsigned refs) {
  mb_shared_t *sh = malloc(sizeof *sh + len);
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
  mb_msg_t *m = malloc(MB_MSG_HDR);
  if (!m) return NULL;
  m->next = NULL;
  m->from = from;
  m->data = sh->data;
  m->shared = sh;
  m->len = sh->len;
  m->kind = MB_K_MSG;
  memset(&m->ref, 0, sizeof m->ref);
  return m;
}

void mb_msg_free(mb_msg_t *m) {
  if (!m) return;
  if (m->shared) mb_shared_release(m->shared);
  free(m);
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
