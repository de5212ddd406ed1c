/* proc.h: process control blocks and the process table.
 *
 * Lifetime: a slot's `ctl` word is serial << 32 | ALIVE | refs. The owning
 * scheduler holds one ref while the process lives; anyone else touching a
 * process by pid first takes a ref with mb_proc_acquire, which fails once ALIVE
 * is clear or the serial differs. When ALIVE is clear and refs reach 0 the slot
 * is reclaimed: its serial is bumped and it goes to the back of the free list
 * (FIFO, so a slot waits for every other free slot before it is reused, and
 * its 32-bit serial wraps only after 2^32 spawns through it). So a stale pid
 * never reaches a new process and no pointer outlives its process. */
#ifndef MB_PROC_H
#define MB_PROC_H

#include <pthread.h>
#include <stdatomic.h>
#include "moonbeam.h"
#include "msg.h"

typedef struct mb_sched mb_sched_t;

#define MB_CTL_ALIVE ((uint64_t)1 << 31)
#define MB_CTL_REFS ((uint64_t)0x7fffffff)

/* Scheduling state; transitions WAITING -> RUNNABLE are made by whoever wins a CAS. */
enum { MB_PS_FREE = 0, MB_PS_RUNNABLE, MB_PS_RUNNING, MB_PS_WAITING, MB_PS_EXITING };

/* Inbox sentinel: the process is gone; pushes fail. */
#define MB_INBOX_CLOSED ((mb_msg_t *)(uintptr_t)1)

typedef struct mb_monitor {
  mb_ref_t ref;
  mb_pid_t pid;     /* the other side */
  uint8_t watching; /* 1: we monitor pid; 0: pid monitors us */
  uint8_t alias;    /* watching: a REPLY tagged ref is accepted (until the first one, or abandon) */
} mb_monitor_t;

struct mb_proc {
  /* shared between threads */
  _Atomic uint64_t ctl;
  atomic_int state;
  _Atomic(mb_msg_t *) inbox;      /* Treiber stack, newest first */
  mb_proc_t *rq_next;             /* run queue or remote wake stack link */
  atomic_uint lock;               /* spinlock: links/monitors/counters seen by inspectors */
  _Atomic uint64_t reductions;
  atomic_size_t qlen;             /* messages in the private queue */
  atomic_size_t qbytes;
  /* fixed while alive */
  mb_runtime_t *rt;
  mb_sched_t *sched;
  mb_pid_t pid;
  const mb_behaviour_t *beh;
  void *bstate;
  /* owner thread only */
  mb_msg_t *qhead;                /* private queue, oldest first */
  mb_msg_t **qtail;               /* &last->next, or &qhead */
  mb_msg_t **scan;                /* slot holding the next message to scan */
  mb_msg_t **cur;                 /* slot holding the message last scanned, or NULL */
  mb_msg_t **mark;                /* next receive starts here, or NULL */
  mb_pid_t *links;
  uint32_t nlinks, caplinks;
  mb_monitor_t *mons;
  uint32_t nmons, capmons;
  const uint8_t *reason;          /* exit reason (ETF), NULL: normal */
  size_t reason_len;
  void *reason_mem;               /* what holds it: a malloc'd copy, the signal message, or NULL (static) */
  uint8_t reason_is_msg;
  int64_t timeout_ms;             /* for the next wait, < 0: none */
  mb_timer_t wait_timer;          /* receive-timeout timer, 0: none */
  uint32_t wait_seq;              /* which wait a timeout belongs to */
  mb_msg_t **kidx;                /* queued DOWN and REPLY messages by (kind, ref): open addressing */
  uint32_t kcap, kfill, kn;       /* slots, used slots (tombstones too), live entries */
  uint8_t klossy;                 /* an insert failed: lookups fall back to walking the queue */
  atomic_int trap_exit;            /* written by the owner, read by inspectors */
  uint8_t timed_out, exit_pending;
  atomic_int owns_ports;           /* set (never cleared) once it owned a port: exit closes them */
  /* registry and pubsub, under their locks */
  char *name;                     /* name_len bytes and a NUL */
  size_t name_len;
  struct mb_topic_key **topics;   /* pubsub.c: length and bytes of each topic */
  uint32_t ntopics, captopics;
  uint32_t free_next;             /* free list link */
};

/* The process table. Slots live in chunks that are never moved or freed before
 * the runtime, so a slot pointer stays valid; chunk pointers are published with
 * release stores. */
#define MB_CHUNK_BITS 12
#define MB_CHUNK_SIZE (1u << MB_CHUNK_BITS)
#define MB_MAX_CHUNKS 4096 /* 16 M processes */

typedef struct mb_ptable {
  _Atomic(mb_proc_t *) chunks[MB_MAX_CHUNKS];
  atomic_uint nslots;
  pthread_mutex_t lock;           /* free list and growth */
  uint32_t free_head, free_tail;  /* FIFO; UINT32_MAX: empty */
  uint32_t serial_seed;           /* first serial of a fresh slot, mixed with its index */
  atomic_size_t live;
} mb_ptable_t;

int mb_ptable_init(mb_ptable_t *t, uint32_t serial_seed);
void mb_ptable_destroy(mb_ptable_t *t);
/* Slot at index, or NULL. */
mb_proc_t *mb_ptable_slot(mb_ptable_t *t, uint32_t index);
/* Takes a free slot (ctl: its serial and one ref, not ALIVE), or NULL. The
 * caller sets ALIVE with a release once the block is initialised. */
mb_proc_t *mb_ptable_alloc(mb_ptable_t *t);

/* A ref on the live process named by pid, or NULL. */
mb_proc_t *mb_proc_acquire(mb_runtime_t *rt, mb_pid_t pid);
/* Drops a ref; the last one on a dead process reclaims its slot. */
void mb_proc_release(mb_proc_t *p);
/* Clears ALIVE: new acquires fail from now on. */
void mb_proc_mark_dead(mb_proc_t *p);

/* Pushes m onto p's inbox and wakes p. Returns 0, or MB_ENOPROC (m not
 * taken: the caller still owns it) when p is gone. */
int mb_proc_push(mb_proc_t *p, mb_msg_t *m);
/* Delivers m to pid: messages to dead processes are freed silently; LINK and
 * MONITOR signals to dead processes are answered with noproc. */
void mb_deliver(mb_runtime_t *rt, mb_pid_t to, mb_msg_t *m);
/* Makes p runnable if it waits. */
void mb_proc_wake(mb_proc_t *p);

/* Sets p's exit reason to a static term (owner thread). */
void mb_proc_reason_static(mb_proc_t *p, const uint8_t *reason, size_t len);
/* Answers a LINK or MONITOR that reached no process with noproc. */
void mb_answer_noproc(mb_runtime_t *rt, mb_pid_t to, mb_msg_t *m);

/* Applies signals that arrived (owner thread). */
void mb_proc_drain(mb_proc_t *p);
/* Ends p: notifies links and monitors (unless shutdown), frees its queue,
 * names, topics and behaviour state, and marks it dead (owner thread). */
void mb_proc_terminate(mb_proc_t *p, int shutdown);

/* The spinlock guarding what inspectors read. */
void mb_proc_lock(mb_proc_t *p);
void mb_proc_unlock(mb_proc_t *p);

/* Links and monitors kept in the block (owner thread). */
int mb_links_add(mb_proc_t *p, mb_pid_t pid);
int mb_links_remove(mb_proc_t *p, mb_pid_t pid);
int mb_links_has(const mb_proc_t *p, mb_pid_t pid);
int mb_mons_add(mb_proc_t *p, mb_ref_t ref, mb_pid_t pid, int watching);
/* The entry of monitor ref held by (watching 1) or on (watching 0) p, or NULL. */
mb_monitor_t *mb_mons_find(mb_proc_t *p, mb_ref_t ref, int watching);
/* Removes that entry; returns 1 and a copy in *out if it was there. */
int mb_mons_remove(mb_proc_t *p, mb_ref_t ref, int watching, mb_monitor_t *out);



/* Replies of the runtime's own I/O (ports, file requests, the blocking pool):
 * each request gets exactly one, kept whether or not the ref is an alias
 * monitor of `to` (MB_MF_IO_REPLY). The caller waits for it by ref. */
int mb_send_io_reply(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, const uint8_t *term, size_t len);

/* Private queue (mailbox.c, owner thread). */
void mb_queue_append(mb_proc_t *p, mb_msg_t *m);
void mb_queue_reset_scan(mb_proc_t *p);
/* Removes the queued message of kind (DOWN, REPLY) tagged ref, found through
 * the queue's index (no walk); returns how many were removed. */
int mb_queue_remove_kind(mb_proc_t *p, int kind, mb_ref_t ref);
void mb_queue_free_all(mb_proc_t *p);
#endif
