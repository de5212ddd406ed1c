/* msg.h: messages and signals. A message is one allocation: this header
 * followed by its ETF payload, except broadcast copies, whose payload lives in
 * one refcounted buffer shared by every receiver. */
#ifndef MB_MSG_H
#define MB_MSG_H

#include <stdatomic.h>
#include "moonbeam.h"

/* What travels through a mailbox. Signals share the queue with messages so
 * that order between any two processes holds for both. */
typedef enum mb_kind {
  MB_K_MSG = 0,     /* ordinary message */
  MB_K_DOWN,        /* DOWN message; ref = monitor; dropped if no longer monitored */
  MB_K_EXIT,        /* exit/2 signal; payload = reason */
  MB_K_EXIT_LINK,   /* exit signal because a linked process ended; payload = reason */
  MB_K_LINK,        /* from wants a link */
  MB_K_UNLINK,      /* from removed its link */
  MB_K_MONITOR,     /* from monitors the receiver under ref */
  MB_K_DEMONITOR,   /* from dropped monitor ref */
  MB_K_REPLY,       /* a reply tagged with ref; kept only while ref is the receiver's active alias */
  MB_K_DEAD         /* a queued DOWN or REPLY flushed in place; unlinked by the next scan over it */
} mb_kind_t;

typedef struct mb_shared {
  atomic_uint refs;
  uint32_t len;
  uint8_t data[];
} mb_shared_t;

struct mb_msg {
  mb_msg_t *next;       /* queue link; owned by whoever holds the message */
  mb_pid_t from;
  const uint8_t *data;  /* inline payload, or shared->data */
  mb_shared_t *shared;  /* NULL for an inline payload */
  uint32_t len;
  uint8_t kind;         /* mb_kind_t */
  mb_ref_t ref;         /* DOWN, MONITOR, DEMONITOR, REPLY */
};

/* Header size, rounded so the payload after it stays aligned. */
#define MB_MSG_HDR ((sizeof(mb_msg_t) + 7) & ~(size_t)7)

/* A message of `kind` holding a copy of term[0..len) (len may be 0). */
mb_msg_t *mb_msg_new(mb_kind_t kind, mb_pid_t from, const uint8_t *term, size_t len);
/* A message over a block from an encoder started with prefix MB_MSG_HDR. */
mb_msg_t *mb_msg_from_block(uint8_t *block, size_t total, mb_pid_t from);
/* A message whose payload is a shared buffer; takes one reference of it. */
mb_msg_t *mb_msg_new_shared(mb_shared_t *sh, mb_pid_t from);
/* A shared buffer holding a copy of term with `refs` references. */
mb_shared_t *mb_shared_new(const uint8_t *term, size_t len, unsigned refs);
/* Drops one reference of a shared buffer. */
void mb_shared_release(mb_shared_t *sh);
/* Bytes a queued message holds. */
size_t mb_msg_size(const mb_msg_t *m);

/* Encoded atoms used as exit reasons. */
extern const uint8_t mb_atom_normal[], mb_atom_kill[], mb_atom_killed[],
    mb_atom_noproc[], mb_atom_shutdown[];
extern const size_t mb_atom_normal_len, mb_atom_kill_len, mb_atom_killed_len,
    mb_atom_noproc_len, mb_atom_shutdown_len;

#endif
