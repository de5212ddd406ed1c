/* port.h: ports, Erlang's model of I/O. A port is a C object living on one
 * scheduler's uv loop (the thread that created it), owned by one process (its
 * controlling process), which gets the port's data and events as messages.
 *
 * How a port type plugs in:
 *
 *   1. Embed mb_port_t as the FIRST member of the type's struct and give it an
 *      mb_port_type_t (ops table): `command`, `close`, `free`.
 *   2. Create it ON ITS LOOP'S THREAD (a process's own scheduler, or from a
 *      command handler) with mb_port_init(&x->base, &type, rt, owner), after the
 *      type's uv handles are initialised on mb_port_loop(). The port starts with
 *      one reference, held by "being open"; mb_port_open adds it to the tables.
 *   3. Commands (send, setopts, close...): the binding allocates an
 *      mb_port_cmd_t (mb_port_cmd_new: op, caller, reply ref, integer and byte
 *      arguments, `extra` for the type) and calls mb_port_submit. On the port's
 *      own thread the type's `command` runs at once; from any other thread the
 *      command is queued (its bytes copied) to the port's loop, which runs it
 *      in its uv_async callback. `command` returns:
 *        MB_PORT_DONE     the result is in c->res (an encoder holding a tuple of
 *                         return values); the caller gets it directly, or as a
 *                         reply message when the command was queued;
 *        MB_PORT_PENDING  the type keeps c and later calls mb_port_reply(c)
 *                         once c->res holds the result (exactly once; c is then
 *                         freed). c->data is borrowed from the caller for a
 *                         direct command: call mb_port_cmd_own(c) to keep it.
 *      Replies are MB_MSG_REPLY messages tagged c->ref, sent to c->caller.
 *   4. Events go to the owner with mb_port_send (an encoder started by
 *      mb_port_enc: {tag, Port, ...}). The type keeps to its active allowance.
 *   5. Closing: mb_port_close(p) (any thread: queued to the port's loop)
 *      marks the port closed once, takes it out of the tables and calls the
 *      type's `close` on the loop thread; `close` replies to every command it
 *      holds (e.g. {nil, "closed"}), uv_close()s its handles and, when the last
 *      close callback ran, calls mb_port_closed(p), which drops the open
 *      reference. `close` may run a second time when the loop ends while the
 *      port still lingers (e.g. flushing): then it must close its handles at
 *      once. When the last reference goes, `free` frees the memory (any
 *      thread; it must not touch the loop or the runtime).
 *   6. The owner: mb_port_owner(p) (any thread). When the owner exits every
 *      port it owns is closed (the runtime's io_proc_exit hook);
 *      mb_port_set_owner hands a port over (controlling_process).
 *   7. Other threads keep a port alive with mb_port_ref/mb_port_unref (the Lua
 *      userdata holds one); mb_port_lookup finds an open port by its id.
 *
 * Threads: a port's fields other than owner, refs and state are touched only on
 * its loop's thread. A port id is never reused (a 56-bit counter per runtime),
 * so a stale id never reaches a new port. */
#ifndef MB_PORT_H
#define MB_PORT_H

#include <stdatomic.h>
#include <uv.h>
#include "moonbeam.h"

typedef struct mb_port mb_port_t;
typedef struct mb_port_cmd mb_port_cmd_t;
typedef struct mb_sched mb_sched_t;
typedef struct mb_io_loop mb_io_loop_t;

enum { MB_PORT_DONE = 0, MB_PORT_PENDING = 1 };
enum { MB_PORT_OPEN = 0, MB_PORT_CLOSED = 1 };

typedef struct mb_port_type {
  const char *name;                                   /* "tcp", "tcp_listen", "udp"... */
  int (*command)(mb_port_t *p, mb_port_cmd_t *c);     /* loop thread */
  void (*close)(mb_port_t *p);                        /* loop thread, once */
  void (*free)(mb_port_t *p);                         /* any thread, last reference */
} mb_port_type_t;

struct mb_port {
  const mb_port_type_t *type;
  mb_runtime_t *rt;
  mb_sched_t *sched;            /* the loop it lives on */
  uint64_t id;                  /* node 0 << 56 | number */
  _Atomic uint64_t owner;       /* mb_pid_t */
  atomic_uint refs;
  atomic_int state;             /* MB_PORT_OPEN, MB_PORT_CLOSED */
  /* under the io lock */
  mb_port_t *onext, **oprev;    /* owner bucket chain */
  mb_port_t *hnext;             /* id bucket chain */
  int listed;
  /* loop thread */
  mb_port_t *lnext, **lprev;    /* every port of the loop whose handles are not closed */
  int close_ran;                /* the type's close has run */
};

/* Commands: the binding fills op, arg, data/len, extra; the port answers in res. */
typedef void (*mb_port_extra_free)(void *extra);
struct mb_port_cmd {
  mb_port_cmd_t *next;          /* queue link; the type may use it while it holds c */
  mb_runtime_t *rt;
  mb_port_t *port;              /* a reference while the command is queued */
  int op;
  int queued;                   /* 1: came through the queue (reply by message) */
  mb_pid_t caller;
  mb_ref_t ref;
  int64_t arg[4];
  const uint8_t *data;          /* bytes argument */
  size_t len;
  uint8_t *owned;               /* data's own copy, or NULL while borrowed */
  void *extra;                  /* the type's, freed with extra_free */
  mb_port_extra_free extra_free;
  mb_enc_t res;                 /* the result: a tuple of return values */
  void *tdata;                  /* free for the type while it holds c */
};

/* ---- ports ---- */

/* Initialises p (one reference: "open") owned by owner, on the calling thread's
 * scheduler, which must be one of rt's. MB_EINVAL outside a scheduler thread. */
int mb_port_init(mb_port_t *p, const mb_port_type_t *type, mb_runtime_t *rt, mb_pid_t owner);
/* Lists p (tables, owner, loop); after this it can be found, handed over, closed
 * by its owner's exit. MB_ENOPROC (p closed again at once) if the owner died. */
int mb_port_open(mb_port_t *p);
/* The calling scheduler thread's loop (its io state made on first use), or NULL. */
uv_loop_t *mb_port_loop(mb_runtime_t *rt);
/* 1 when the calling thread is p's loop thread. */
int mb_port_here(const mb_port_t *p);
void mb_port_ref(mb_port_t *p);
void mb_port_unref(mb_port_t *p);
/* The open port with this id, with a reference taken, or NULL. */
mb_port_t *mb_port_lookup(mb_runtime_t *rt, uint64_t id);
mb_pid_t mb_port_owner(mb_port_t *p);
/* Hands p to pid. MB_ENOPROC if pid is dead, MB_ESTOPPED if p is closed. */
int mb_port_set_owner(mb_port_t *p, mb_pid_t pid);
int mb_port_is_open(mb_port_t *p);
/* Closes p (any thread; idempotent). */
void mb_port_close(mb_port_t *p);
/* The type's handles are closed: drops the open reference (loop thread). */
void mb_port_closed(mb_port_t *p);

/* ---- events ---- */

/* Starts e (message prefix) with a tuple header of `arity` and the atom tag;
 * the port itself follows as element 2. */
void mb_port_enc(mb_port_t *p, mb_enc_t *e, const char *tag, uint32_t arity);
/* Sends what e holds to the owner (takes the buffer). */
void mb_port_send(mb_port_t *p, mb_enc_t *e);

/* ---- commands ---- */

/* A new command (calloc'd; res started with a message prefix); NULL: no memory. */
mb_port_cmd_t *mb_port_cmd_new(mb_runtime_t *rt, int op, mb_pid_t caller, mb_ref_t ref);
void mb_port_cmd_free(mb_port_cmd_t *c);
/* Makes c->data c's own copy. Returns 0 or MB_ENOMEM. */
int mb_port_cmd_own(mb_port_cmd_t *c);
/* Runs c on p: MB_PORT_DONE (result in c->res; the caller frees c), or
 * MB_PORT_PENDING (a reply tagged c->ref will come; c belongs to the port). */
int mb_port_submit(mb_port_t *p, mb_port_cmd_t *c);
/* Sends c->res to c->caller tagged c->ref and frees c (loop thread). */
void mb_port_reply(mb_port_cmd_t *c);
/* Result helpers: tuple {nil, reason} / {true} in c->res (resetting it). */
void mb_port_res_error(mb_port_cmd_t *c, const char *reason);
void mb_port_res_ok(mb_port_cmd_t *c);
/* The lowercase errno name of a libuv error ("econnrefused"), in buf. */
const char *mb_port_errname(int uverr, char *buf, size_t cap);

/* Runs fn(arg) on scheduler s's loop thread (now if this is it, else queued).
 * s's io state must exist (a port lives there, or it called mb_port_loop).
 * MB_ESTOPPED (fn not run) once that loop is closing. */
int mb_port_post(mb_sched_t *s, void (*fn)(void *arg), void *arg);
/* A scratch buffer of the port's loop (64 KB, loop thread), e.g. for reads
 * that are consumed in their callback; NULL without memory. */
void *mb_port_scratch(mb_port_t *p, size_t *len);
/* The calling thread's scheduler (NULL if none). */
mb_sched_t *mb_port_sched_here(mb_runtime_t *rt);

#endif
