/* proc.h: process control blocks and the process table.
 *
 * Lifetime: a slot's `ctl` word is serial << 32 | ALIVE | refs. The owning
 * scheduler holds one ref while the process lives; anyone else touching a
 * process by pid first takes a ref with mb_proc_acquire, which fails once ALIVE
 * is clear or the serial differs. When ALIVE is clear and refs reach 0 the slot
 * is reclaimed: its serial is bumped and it goes back on the free list. So a
 * stale pid never reaches a new process and no pointer outlives its process. */
#ifndef MB_PROC_H
#define MB_PROC_H

#include <pthread.h>
#include <stdatomic.h>
#include "moonbeam.h"
#include "msg.h"

typedef struct mb_sched mb_sched_t;

#define MB_CTL_ALIVE ((uint64_t)1 << 31)
#define MB_CTL_REFS ((uint64_t)0x7fffffff)
#define MB_SERIAL_MASK 0xffffffu
#define MB_ABANDONED 64

/* Scheduling state; transitions WAITING -> RUNNABLE are made by whoever wins a CAS. */
enum { MB_PS_FREE = 0, MB_PS_RUNNABLE, MB_PS_RUNNING, MB_PS_WAITING, MB_PS_EXITING };

/* Inbox sentinel: the process is gone; pushes fail. */
#define MB_INBOX_CLOSED ((mb_msg_t *)(uintptr_t)1)

typedef struct mb_monitor {
  mb_ref_t ref;
  mb_pid_t pid;     /* the other side */
  int watching;     /* 1: we monitor pid; 0: pid monitors us */
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
  uint8_t *reason;                /* exit reason (malloc'd ETF), NULL: normal */
  size_t reason_len;
  int64_t timeout_ms;             /* for the next wait, < 0: none */
  mb_timer_t wait_timer;          /* receive-timeout timer, 0: none */
  uint32_t wait_seq;              /* which wait a timeout belongs to */
  mb_ref_t *abandoned;            /* ring of MB_ABANDONED refs whose replies are dropped */
  uint32_t nabandoned;
  atomic_int trap_exit;            /* written by the owner, read by inspectors */
  uint8_t timed_out, exit_pending;
  atomic_int owns_ports;           /* set (never cleared) once it owned a port: exit closes them */
  /* registry and pubsub, under their locks */
  char *name;
  char **topics;
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
  uint32_t free_head;             /* UINT32_MAX: empty */
  atomic_size_t live;
} mb_ptable_t;

int mb_ptable_init(mb_ptable_t *t);
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
/* Removes monitor ref; returns 1 and its entry in *out if it was there. */
int mb_mons_remove(mb_proc_t *p, mb_ref_t ref, mb_monitor_t *out);



/* Private queue (mailbox.c, owner thread). */
void mb_queue_append(mb_proc_t *p, mb_msg_t *m);
void mb_queue_reset_scan(mb_proc_t *p);
/* Removes queued messages of kind (DOWN, REPLY) tagged ref; returns how many. */
int mb_queue_remove_kind(mb_proc_t *p, int kind, mb_ref_t ref);
void mb_queue_free_all(mb_proc_t *p);
#endif
