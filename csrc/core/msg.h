/* msg.h: messages and signals. A message is one allocation: this header
 * followed by its ETF payload, except broadcast copies, whose payload lives in
 * one refcounted buffer shared by every receiver. */
#ifndef MB_MSG_H
#define MB_MSG_H

#include <pthread.h>
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
  uint8_t flags;        /* MB_MF_* */
  mb_ref_t ref;         /* DOWN, MONITOR, DEMONITOR, REPLY */
};

enum {
  MB_MF_RESERVE = 1, /* a block of a runtime's reserve: freeing gives it back */
  MB_MF_IO_REPLY = 2 /* a REPLY from the runtime's own I/O (ports, files, the blocking
                      * pool): exactly one per request, kept without an alias monitor */
};

/* The signal reserve: fixed-size message blocks set aside when a runtime
 * starts, taken when malloc fails for a signal that must not be lost. */
#define MB_RESERVE_BLOCK 512   /* bytes a block holds, its message header included */
#define MB_RESERVE_COUNT 256
typedef struct mb_rblock {
  struct mb_reserve *pool;
  struct mb_rblock *next;
} mb_rblock_t;
typedef struct mb_reserve {
  pthread_mutex_t lock;
  mb_rblock_t *free;             /* given back */
  unsigned fresh;                /* blocks never handed out start here (untouched memory) */
  void *mem;
  atomic_uint taken;            /* blocks out now (observability, tests) */
} mb_reserve_t;

int mb_reserve_init(mb_reserve_t *r);
void mb_reserve_destroy(mb_reserve_t *r);
/* A free block's message area (MB_RESERVE_BLOCK bytes), or NULL if none is left. */
uint8_t *mb_reserve_take(mb_reserve_t *r);
/* A signal message like mb_msg_new, from the reserve if malloc fails; NULL
 * only if both fail (or it does not fit a block). */
mb_msg_t *mb_msg_signal(mb_reserve_t *r, mb_kind_t kind, mb_pid_t from, const uint8_t *term,
                        size_t len);
/* Turns a block from mb_reserve_take holding an encoded term of `total`
 * bytes (header room included) into a message. */
mb_msg_t *mb_msg_from_reserve(uint8_t *block, size_t total, mb_pid_t from);

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
    mb_atom_noproc[], mb_atom_shutdown[], mb_atom_enomem[];
extern const size_t mb_atom_normal_len, mb_atom_kill_len, mb_atom_killed_len,
    mb_atom_noproc_len, mb_atom_shutdown_len, mb_atom_enomem_len;

#endif
