/*
 * moonbeam.h: the public C API of moonbeam, Erlang/OTP-style processes for C and Lua.
 *
 * Conventions (as libuv): functions that can fail return 0 or a negative MB_E*
 * code, mb_strerror() names it; handles are opaque; no macro is needed to call
 * anything, so LuaJIT's ffi.cdef can take this header with the #-lines removed.
 *
 * Threads: every function here may be called from any thread unless it takes an
 * `mb_proc_t *self`, which is only valid inside that process's own callback.
 */
#ifndef MOONBEAM_H
#define MOONBEAM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- errors */

enum {
  MB_EINVAL = -1,     /* invalid argument */
  MB_ENOMEM = -2,     /* out of memory */
  MB_ENOPROC = -3,    /* no such process (dead, stale or never existed) */
  MB_EBADTERM = -4,   /* malformed, truncated or unsupported term */
  MB_EDEPTH = -5,     /* term nested deeper than MB_TERM_MAX_DEPTH */
  MB_EEXIST = -6,     /* name already registered, or process already has a name */
  MB_ENOENT = -7,     /* no such name, timer or monitor */
  MB_ETIMEDOUT = -8,  /* a timeout expired */
  MB_ESTOPPED = -9,   /* the runtime is stopping or stopped */
  MB_ELIMIT = -10,    /* a fixed limit was reached (process table, node table) */
  MB_ERANGE = -11     /* integer out of the 64-bit range */
};

/* Returns a static, human-readable description of an MB_E* code. */
const char *mb_strerror(int err);

/* ---------------------------------------------------------------- identifiers */

/* A process id: bits 56-63 node index (0 = this node). A local pid has its slot
 * index in bits 0-23 and its serial (slot generation, 32 bits) in 24-55, so a
 * pid repeats only after 2^32 spawns through one slot (and slots are reused in
 * FIFO order); a remote pid keeps the other node's 32-bit id in bits 0-31 and
 * a 24-bit serial in 32-55. 0 is never a valid pid. */
typedef uint64_t mb_pid_t;

/* Builds a pid from its parts. */
mb_pid_t mb_pid_make(uint32_t node, uint32_t index, uint32_t serial);
/* The node index of a pid (0 = local). */
uint32_t mb_pid_node(mb_pid_t pid);
/* The slot index of a pid. */
uint32_t mb_pid_index(mb_pid_t pid);
/* The serial (generation) of a pid. */
uint32_t mb_pid_serial(mb_pid_t pid);

/* A reference (Erlang's newer reference): node index and three id words.
 * All-zero is "no reference". */
typedef struct mb_ref {
  uint32_t node;
  uint32_t id[3];
} mb_ref_t;

/* 1 when two references are the same. */
int mb_ref_equal(mb_ref_t a, mb_ref_t b);

/* ---------------------------------------------------------------- terms (ETF) */

/* Terms are Erlang's External Term Format: version byte 131 then one term. */
#define MB_TERM_MAX_DEPTH 64

/* Node table: maps node index <-> (node name atom, creation). Index 0 is the
 * local node. Shared by a runtime's encoders and decoders; thread-safe. */
typedef struct mb_nodes mb_nodes_t;

/* Makes a node table whose local node (index 0) is `name` with `creation`. */
mb_nodes_t *mb_nodes_new(const char *name, uint32_t creation);
/* Frees a node table. */
void mb_nodes_free(mb_nodes_t *nodes);
/* Index of node (name, creation), adding it if new; MB_ELIMIT past 255 nodes. */
int mb_nodes_index(mb_nodes_t *nodes, const char *name, size_t len, uint32_t creation);
/* Name (not NUL-terminated, *len set) and creation of node `index`, NULL if none. */
const char *mb_nodes_name(mb_nodes_t *nodes, uint32_t index, size_t *len, uint32_t *creation);

/* Encoder: appends terms to a growable heap buffer. `prefix` bytes are reserved
 * before the version byte (room for a message header, so a message is one
 * allocation). Errors are sticky: once one call fails every later call returns
 * the same error, and mb_enc_finish returns NULL. */
typedef struct mb_enc {
  uint8_t *buf;       /* prefix + term bytes */
  size_t len, cap;    /* bytes used (including prefix), bytes allocated */
  size_t prefix;
  mb_nodes_t *nodes;  /* NULL: only node 0, named "nonode@nohost", creation 0 */
  int err;            /* first error, 0 if none */
  int fixed;          /* internal: buf is the caller's, never grown nor freed */
} mb_enc_t;

/* Starts an encoder and writes the version byte. */
int mb_enc_init(mb_enc_t *e, mb_nodes_t *nodes, size_t prefix);
/* Atom (UTF-8 text, at most 255 characters as Erlang allows). */
int mb_enc_atom(mb_enc_t *e, const char *s, size_t len);
/* Integer: small integer, integer or small big as needed (full int64 range). */
int mb_enc_int(mb_enc_t *e, int64_t v);
/* Float (NEW_FLOAT_EXT). */
int mb_enc_float(mb_enc_t *e, double v);
/* Binary (BINARY_EXT). */
int mb_enc_binary(mb_enc_t *e, const void *p, size_t len);
/* Tuple header; the caller then encodes `arity` elements. */
int mb_enc_tuple(mb_enc_t *e, uint32_t arity);
/* List header (n > 0); the caller then encodes n elements and a tail (mb_enc_nil). */
int mb_enc_list(mb_enc_t *e, uint32_t n);
/* The empty list, also the tail of a proper list. */
int mb_enc_nil(mb_enc_t *e);
/* Map header; the caller then encodes `pairs` key, value pairs. */
int mb_enc_map(mb_enc_t *e, uint32_t pairs);
/* Pid (NEW_PID_EXT), naming its node through the node table. */
int mb_enc_pid(mb_enc_t *e, mb_pid_t pid);
/* Reference (NEWER_REFERENCE_EXT). */
int mb_enc_ref(mb_enc_t *e, mb_ref_t ref);
/* Port (NEW_PORT_EXT, or V4_PORT_EXT when the number needs more than 32 bits):
 * id = node index << 56 | port number, as mb_port_id_t. */
int mb_enc_port(mb_enc_t *e, uint64_t id);
/* Appends an already encoded term (with its version byte), e.g. an exit reason. */
int mb_enc_term(mb_enc_t *e, const uint8_t *term, size_t len);
/* Ends encoding: returns the buffer (prefix + term; free() it) and its total
 * length in *len, or NULL after an error. The encoder is reset. */
uint8_t *mb_enc_finish(mb_enc_t *e, size_t *len);
/* Frees an encoder's buffer without finishing (after an error). */
void mb_enc_discard(mb_enc_t *e);

/* Term types as the decoder reports them. */
typedef enum mb_type {
  MB_T_ATOM = 1, MB_T_INT, MB_T_FLOAT, MB_T_BINARY, MB_T_TUPLE, MB_T_LIST,
  MB_T_NIL, MB_T_STRING, MB_T_MAP, MB_T_PID, MB_T_REF, MB_T_PORT
} mb_type_t;

/* Checks that data[0..len) is exactly one well-formed term of supported types,
 * nested at most `max_depth` deep. Never reads out of bounds. */
int mb_term_validate(const uint8_t *data, size_t len, int max_depth);

/* Decoder: a cursor over a term. Reading functions check the type and bounds and
 * return MB_EBADTERM on a mismatch without moving the cursor. */
typedef struct mb_dec {
  const uint8_t *p, *end;
  mb_nodes_t *nodes;
} mb_dec_t;

/* Starts decoding data[0..len); checks the version byte. */
int mb_dec_init(mb_dec_t *d, mb_nodes_t *nodes, const uint8_t *data, size_t len);
/* Type of the next term (an mb_type_t), or MB_EBADTERM. */
int mb_dec_type(const mb_dec_t *d);
/* Atom text (not NUL-terminated). */
int mb_dec_atom(mb_dec_t *d, const char **s, size_t *len);
/* Integer; MB_ERANGE if it does not fit int64 (the cursor does not move). */
int mb_dec_int(mb_dec_t *d, int64_t *v);
/* Float. */
int mb_dec_float(mb_dec_t *d, double *v);
/* Binary: pointer into the term and its length. */
int mb_dec_binary(mb_dec_t *d, const uint8_t **p, size_t *len);
/* STRING_EXT (a list of bytes Erlang sends compactly): pointer and length. */
int mb_dec_string(mb_dec_t *d, const uint8_t **p, size_t *len);
/* Tuple header: arity; elements follow. */
int mb_dec_tuple(mb_dec_t *d, uint32_t *arity);
/* List header: element count; elements then the tail follow. */
int mb_dec_list(mb_dec_t *d, uint32_t *n);
/* The empty list (NIL_EXT). */
int mb_dec_nil(mb_dec_t *d);
/* Map header: pair count; key, value pairs follow. */
int mb_dec_map(mb_dec_t *d, uint32_t *pairs);
/* Pid; its node name is looked up (and added) in the node table. */
int mb_dec_pid(mb_dec_t *d, mb_pid_t *pid);
/* Port (PORT_EXT, NEW_PORT_EXT or V4_PORT_EXT): node index << 56 | number. */
int mb_dec_port(mb_dec_t *d, uint64_t *id);
/* Reference (NEWER_REFERENCE_EXT or NEW_REFERENCE_EXT). */
int mb_dec_ref(mb_dec_t *d, mb_ref_t *ref);
/* Skips one whole term. */
int mb_dec_skip(mb_dec_t *d);

/* 1 when the term is the atom `name` (a convenience for reasons like "normal"). */
int mb_term_is_atom(const uint8_t *term, size_t len, const char *name);

/* ---------------------------------------------------------------- messages */

typedef struct mb_msg mb_msg_t;

/* The ETF bytes of a message (version byte included). */
const uint8_t *mb_msg_data(const mb_msg_t *m, size_t *len);
/* The sending process, 0 when sent from outside any process. */
mb_pid_t mb_msg_sender(const mb_msg_t *m);
/* Kinds of message that mb_msg_kind tells apart without decoding. */
enum { MB_MSG_PLAIN = 0, MB_MSG_REPLY, MB_MSG_DOWN };
/* What a message is: MB_MSG_REPLY (from mb_send_reply; *ref = its tag),
 * MB_MSG_DOWN (a monitor's DOWN; *ref = the monitor) or MB_MSG_PLAIN. */
int mb_msg_kind(const mb_msg_t *m, mb_ref_t *ref);
/* Frees a message taken with mb_mailbox_take. */
void mb_msg_free(mb_msg_t *m);

/* ---------------------------------------------------------------- runtime */

typedef struct mb_runtime mb_runtime_t;
typedef struct mb_proc mb_proc_t;

/* Called on each scheduler's own thread: init before it runs any process,
 * fini after its last process is gone. Used by the Lua binding to own a VM per
 * scheduler. In host-driven mode scheduler 0's hooks run on the host thread. */
typedef struct mb_sched_hooks {
  void (*init)(mb_runtime_t *rt, int sched, void *ud);
  void (*fini)(mb_runtime_t *rt, int sched, void *ud);
  void *ud;
} mb_sched_hooks_t;

typedef struct mb_runtime_opts {
  int schedulers;        /* 0: the machine's available parallelism */
  int host_driven;       /* 1: scheduler 0 runs on the thread calling mb_runtime_run/_step */
  unsigned slice_us;     /* time slice before preemption; 0: 1000 */
  int preempt;           /* 1: a watchdog signals schedulers whose process overruns its slice */
  const char *node_name; /* NULL: "nonode@nohost" */
  uint32_t creation;     /* 0: a fresh random one, so each start is a new incarnation */
  const mb_sched_hooks_t *hooks; /* may be NULL */
  unsigned long_schedule_ms; /* a process holding its scheduler longer is logged; 0: 100 */
} mb_runtime_opts_t;

/* Makes a runtime and starts its scheduler threads (all of them, or 1..N-1 when
 * host-driven). */
int mb_runtime_new(const mb_runtime_opts_t *opts, mb_runtime_t **out);
/* Host-driven: runs scheduler 0 on this thread until the runtime stops. */
int mb_runtime_run(mb_runtime_t *rt);
/* Host-driven: runs scheduler 0 for at most about budget_us (timers, ready
 * processes, I/O) and returns; MB_ESTOPPED once the runtime has stopped. */
int mb_runtime_step(mb_runtime_t *rt, unsigned budget_us);
/* Asks every scheduler to end all its processes and stop; returns at once. */
void mb_runtime_stop(mb_runtime_t *rt);
/* Stops (if not yet), ends every process, joins every thread and frees all.
 * Host-driven: call from the host thread. */
void mb_runtime_free(mb_runtime_t *rt);
/* Where the runtime's own warnings and errors go (long_schedule, a passed exit
 * deadline): called on the runtime's watchdog thread, never on a scheduler, so
 * it must not call into a Lua VM. NULL restores the default, stderr. */
enum { MB_LOG_WARNING = 1, MB_LOG_ERROR = 2 };
typedef void (*mb_log_fn)(void *ud, int level, const char *msg);
void mb_runtime_set_log(mb_runtime_t *rt, mb_log_fn fn, void *ud);
/* Arms an exit deadline, for a runner's shutdown timeout: if it is still armed
 * ms from now (mb_runtime_free has not returned, or a process is stuck), the
 * runtime logs "<what> did not finish within <ms> ms", naming each process
 * holding a scheduler and the processes still alive (pid and registered
 * name), and ends the OS process with _exit(code). The watchdog thread does
 * this, so processes stuck in C calls cannot delay it. ms = UINT64_MAX
 * disarms it; calling again re-arms it. `what` may be NULL ("shutdown"). */
int mb_runtime_exit_deadline(mb_runtime_t *rt, uint64_t ms, int code, const char *what);
/* Number of schedulers. */
int mb_runtime_schedulers(const mb_runtime_t *rt);
/* The runtime's creation (its incarnation: pids and refs it makes carry it). */
uint32_t mb_runtime_creation(const mb_runtime_t *rt);
/* The runtime's node table. */
mb_nodes_t *mb_runtime_nodes(mb_runtime_t *rt);
/* Index of the scheduler running on this thread, or -1 on another thread. */
int mb_runtime_current_sched(const mb_runtime_t *rt);
/* Per-scheduler pointer for the embedder (the Lua binding keeps its VM here). */
void mb_sched_set_data(mb_runtime_t *rt, int sched, void *data);
/* Gets what mb_sched_set_data stored. */
void *mb_sched_data(const mb_runtime_t *rt, int sched);

/* ---------------------------------------------------------------- processes */

/* What a process runs. The core calls these on the process's own scheduler
 * thread only, never two at once for one process. */
enum { MB_RUN_WAIT = 0, MB_RUN_YIELD = 1, MB_RUN_EXIT = 2 };
typedef struct mb_behaviour {
  /* Runs one slice: returns MB_RUN_WAIT (blocked until a message, a signal or
   * its timeout), MB_RUN_YIELD (still ready: preempted or out of budget) or
   * MB_RUN_EXIT (finished; the reason was set with mb_proc_exit, else normal). */
  int (*run)(mb_proc_t *self, void *state);
  /* The process is gone (any reason, runtime shutdown included): free state. */
  void (*destroy)(mb_proc_t *self, void *state, const uint8_t *reason, size_t len);
  /* Optional: bytes the state holds, for inspection. */
  size_t (*memory)(void *state);
  /* Optional, called from a signal handler on the process's thread while it
   * runs past its slice: must only do async-signal-safe work (lua_sethook). */
  void (*preempt)(void *state);
} mb_behaviour_t;

/* Scheduler choice in mb_spawn_opts_t.scheduler. */
enum { MB_SCHED_ANY = 0, MB_SCHED_HERE = -1 }; /* n > 0 pins to scheduler n-1 */

typedef struct mb_spawn_opts {
  mb_proc_t *parent;   /* the spawning process (for link/monitor), or NULL */
  int scheduler;       /* MB_SCHED_ANY (least loaded), MB_SCHED_HERE, or index+1 */
  int link;            /* link parent and child atomically */
  int monitor;         /* parent monitors the child; the ref goes to *mon_ref */
  mb_ref_t *mon_ref;   /* required with monitor */
  int trap_exit;       /* child starts trapping exits */
  const char *name;    /* register the child under this name (MB_EEXIST if taken) */
  size_t name_len;     /* bytes of name; 0: strlen(name) */
} mb_spawn_opts_t;

/* Spawns a process running behaviour `b` with `state`. On failure `state` is
 * not touched. `opts` may be NULL. */
int mb_spawn(mb_runtime_t *rt, const mb_behaviour_t *b, void *state,
             const mb_spawn_opts_t *opts, mb_pid_t *pid);

/* A native C process: handler gets msg == NULL once at start, then each message
 * in order. Return 0 to go on, non-zero to exit (reason normal unless
 * mb_proc_exit set one). on_exit, if set, runs once when the process is gone. */
typedef int (*mb_native_fn)(mb_proc_t *self, const mb_msg_t *msg, void *userdata);
typedef void (*mb_native_exit_fn)(void *userdata, const uint8_t *reason, size_t len);
/* Spawns a native process. */
int mb_spawn_native(mb_runtime_t *rt, mb_native_fn handler, mb_native_exit_fn on_exit,
                    void *userdata, const mb_spawn_opts_t *opts, mb_pid_t *pid);

/* The process's own pid. */
mb_pid_t mb_self(const mb_proc_t *self);
/* The runtime a process belongs to. */
mb_runtime_t *mb_proc_runtime(const mb_proc_t *self);
/* Index of the scheduler that owns the process. */
int mb_proc_sched(const mb_proc_t *self);
/* Sets the reason the process exits with when its behaviour returns MB_RUN_EXIT
 * (native: non-zero). The term is copied. */
int mb_proc_exit(mb_proc_t *self, const uint8_t *reason, size_t len);
/* Turns exit trapping on or off; returns the old value. */
int mb_trap_exit(mb_proc_t *self, int on);
/* Adds to the process's reduction count (work done, for fairness and stats). */
void mb_proc_add_reductions(mb_proc_t *self, uint32_t n);
/* Arms a timeout for the next MB_RUN_WAIT (ms; negative: none). */
void mb_proc_set_timeout(mb_proc_t *self, int64_t ms);
/* 1 if the process was woken by its timeout (cleared when read). */
int mb_proc_timed_out(mb_proc_t *self);
/* 1 if the pid names a live process. */
int mb_alive(mb_runtime_t *rt, mb_pid_t pid);

/* ---------------------------------------------------------------- mailbox */

/* Next message not yet scanned in the current receive, applying any signals
 * that arrived first; NULL when every queued message has been scanned. */
const mb_msg_t *mb_mailbox_next(mb_proc_t *self);
/* Removes the message last returned by mb_mailbox_next and gives it to the
 * caller (mb_msg_free it); the next scan starts again at the oldest message. */
mb_msg_t *mb_mailbox_take(mb_proc_t *self);
/* Restarts scanning at the oldest message (a new receive, or after a timeout). */
void mb_mailbox_rewind(mb_proc_t *self);
/* Marks the current end of the queue: the next scan starts there (messages
 * queued before the mark cannot hold a reference made after it). */
void mb_mailbox_mark(mb_proc_t *self);
/* Number of queued messages (signals applied). */
size_t mb_mailbox_len(mb_proc_t *self);

/* ---------------------------------------------------------------- sending */

/* Sends a copy of term[0..len) from `from` (0: outside any process) to `to`.
 * Sending to a dead process is a silent success, as in Erlang. */
int mb_send(mb_runtime_t *rt, mb_pid_t from, mb_pid_t to, const uint8_t *term, size_t len);
/* Sends to a registered name; MB_ENOENT if the name is not registered. */
int mb_send_name(mb_runtime_t *rt, mb_pid_t from, const char *name, const uint8_t *term, size_t len);
/* Sends a term built with an encoder started with prefix mb_msg_prefix(); takes
 * ownership of the buffer (no copy) whatever the outcome. */
int mb_send_enc(mb_runtime_t *rt, mb_pid_t from, mb_pid_t to, mb_enc_t *e);
/* The encoder prefix mb_send_enc needs. */
size_t mb_msg_prefix(void);

/* ---------------------------------------------------------------- signals */

/* Links self and pid (idempotent). A dead pid: self gets exit signal noproc. */
int mb_link(mb_proc_t *self, mb_pid_t pid);
/* Removes the link on both sides (idempotent). */
int mb_unlink(mb_proc_t *self, mb_pid_t pid);
/* Monitors pid: one {'DOWN', Ref, process, Pid, Reason} when it exits (noproc
 * at once if it is dead). */
int mb_monitor(mb_proc_t *self, mb_pid_t pid, mb_ref_t *ref);
/* Removes a monitor self holds; with flush, also a DOWN for it already queued
 * (found through an index: the cost does not depend on the queue's length).
 * Returns 1 if the monitor was active, 0 if not (already fired or unknown). A
 * monitor another process holds on self is not self's to remove: it stays and
 * 0 is returned. */
int mb_demonitor(mb_proc_t *self, mb_ref_t ref, int flush);
/* Sends an exit signal to `to` as Erlang's exit/2 (from 0: outside any process):
 * normal is ignored unless trapped or sent to itself; kill cannot be trapped. */
int mb_exit_signal(mb_runtime_t *rt, mb_pid_t from, mb_pid_t to, const uint8_t *reason, size_t len);

/* Sends a reply tagged ref (a gen call's answer). As OTP's alias monitors,
 * ref must be a monitor the receiver holds (mb_monitor's ref, which a call
 * sends with its request): the receiver keeps the first reply tagged ref that
 * arrives while that monitor is active and not abandoned, and drops any other
 * (a late reply after a timeout, a second reply, a reply after the DOWN or
 * after mb_demonitor). */
int mb_send_reply(mb_runtime_t *rt, mb_pid_t from, mb_pid_t to, mb_ref_t ref, const uint8_t *term,
                  size_t len);
/* Gives up waiting for the reply tagged ref (a call timed out): a queued one is
 * removed and every later one dropped on arrival; nothing is remembered beyond
 * the monitor itself, so any number of calls may be abandoned. */
int mb_abandon_reply(mb_proc_t *self, mb_ref_t ref);

/* ---------------------------------------------------------------- refs, timers */

/* A reference unique in this runtime. */
mb_ref_t mb_make_ref(mb_runtime_t *rt);

typedef uint64_t mb_timer_t;
/* Sends term to `to` after ms milliseconds. The timer lives on the calling
 * thread's scheduler, or on the destination's when called from another thread.
 * A delay of 2^62 ms or more (UINT64_MAX: infinity) never fires: the timer
 * waits until cancelled (mb_cancel_timer then reports INT64_MAX ms left). */
int mb_send_after(mb_runtime_t *rt, mb_pid_t from, mb_pid_t to, uint64_t ms,
                  const uint8_t *term, size_t len, mb_timer_t *timer);
/* Same, to the process registered as name[0..nlen) (1..255 bytes, any bytes)
 * at the time of delivery, as erlang:send_after/3 with a name: nothing needs to
 * be registered when it is called, and the message is dropped if nothing is
 * when it fires. The timer lives on the calling thread's scheduler, else 0's. */
int mb_send_after_name(mb_runtime_t *rt, mb_pid_t from, const char *name, size_t nlen, uint64_t ms,
                       const uint8_t *term, size_t len, mb_timer_t *timer);
/* Converts a delay given as a double (a Lua number) for mb_send_after and
 * timeouts without an undefined cast: NaN and negative delays are MB_EINVAL;
 * infinity and anything from 2^62 ms up give UINT64_MAX (never); otherwise
 * the delay rounded down. */
int mb_timer_ms(double ms, uint64_t *out);
/* Cancels a timer: returns the milliseconds that were left (>= 0), or MB_ENOENT
 * if it already fired or was cancelled. */
int64_t mb_cancel_timer(mb_runtime_t *rt, mb_timer_t timer);

/* ---------------------------------------------------------------- registry, pubsub */

/* Names and topics are byte strings compared by length: the _n functions take
 * any bytes ("a\0b" is not "a"); the others take a NUL-terminated string. */

/* Registers pid under name (1..255 bytes); MB_EEXIST if the name is taken or
 * pid has a name, MB_ENOPROC if pid is dead. The name goes away when the
 * process exits. */
int mb_register(mb_runtime_t *rt, const char *name, mb_pid_t pid);
int mb_register_n(mb_runtime_t *rt, const char *name, size_t len, mb_pid_t pid);
/* Removes a name; MB_ENOENT if not registered. */
int mb_unregister(mb_runtime_t *rt, const char *name);
int mb_unregister_n(mb_runtime_t *rt, const char *name, size_t len);
/* The pid registered under name, or 0. */
mb_pid_t mb_whereis(mb_runtime_t *rt, const char *name);
mb_pid_t mb_whereis_n(mb_runtime_t *rt, const char *name, size_t len);
/* Copies pid's registered name into buf (NUL-terminated after its bytes, which
 * may hold NULs); returns its length (cut to cap - 1), 0 if none. */
size_t mb_registered_name(mb_runtime_t *rt, mb_pid_t pid, char *buf, size_t cap);

/* Subscribes pid to topic (idempotent); removed when pid exits. */
int mb_subscribe(mb_runtime_t *rt, const char *topic, mb_pid_t pid);
int mb_subscribe_n(mb_runtime_t *rt, const char *topic, size_t len, mb_pid_t pid);
/* Unsubscribes pid from topic (idempotent). */
int mb_unsubscribe(mb_runtime_t *rt, const char *topic, mb_pid_t pid);
int mb_unsubscribe_n(mb_runtime_t *rt, const char *topic, size_t len, mb_pid_t pid);
/* Sends term to every subscriber of topic except `skip` (0: none), sharing one
 * copy of the term; returns the number of subscribers it was sent to. */
int mb_broadcast(mb_runtime_t *rt, mb_pid_t from, const char *topic, mb_pid_t skip,
                 const uint8_t *term, size_t len);
int mb_broadcast_n(mb_runtime_t *rt, mb_pid_t from, const char *topic, size_t tlen, mb_pid_t skip,
                   const uint8_t *term, size_t len);
/* Number of subscribers of topic. */
int mb_subscribers(mb_runtime_t *rt, const char *topic);
int mb_subscribers_n(mb_runtime_t *rt, const char *topic, size_t len);

/* Delivers the OS signal signum (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1,
 * SIGUSR2) to pid as the message {signal, 'SIGTERM'} instead of its default
 * action; pid 0 restores the default. Watched by a thread of the runtime's own
 * that runs no process, so delivery does not wait for any scheduler. */
int mb_signal_notify(mb_runtime_t *rt, int signum, mb_pid_t pid);
/* For a runner: when signum (delivered with mb_signal_notify) arrives, also
 * arm mb_runtime_exit_deadline(rt, ms, code, "shutdown after SIGTERM"), on the
 * signal thread itself, so a shutdown that stalls (every scheduler held by a
 * process stuck in C, the receiver included) still ends, naming what did not
 * stop. A later signal does not push an armed deadline back. ms = UINT64_MAX
 * turns it off. */
int mb_signal_exit_deadline(mb_runtime_t *rt, int signum, uint64_t ms, int code);

/* ---------------------------------------------------------------- supervisors */

/* OTP supervisors for native processes (csrc/core/supervisor.c, docs/embedding.md).
 * A supervisor is itself a process that traps exits: it starts its children in
 * order, restarts them by strategy and restart type, gives up after more than
 * max_restarts restarts within max_seconds (it then stops every child, in
 * reverse order, and exits with reason shutdown) and stops its children in
 * reverse order when it is stopped or its parent exits. Zeroed fields take
 * OTP's defaults. */
enum { MB_SUP_ONE_FOR_ONE = 0, MB_SUP_ONE_FOR_ALL = 1, MB_SUP_REST_FOR_ONE = 2 };
enum { MB_CHILD_PERMANENT = 0, MB_CHILD_TRANSIENT = 1, MB_CHILD_TEMPORARY = 2 };
/* mb_child_spec_t.shutdown_ms: > 0 waits that long after exit(shutdown) then
 * kills; 0: the default 5000; these two: */
enum { MB_SHUTDOWN_INFINITY = -1, MB_SHUTDOWN_BRUTAL_KILL = -2 };
/* mb_sup_spec_t.max_restarts: > 0 as given; 0: the default 3; this: none allowed. */
enum { MB_SUP_NO_RESTARTS = -1 };

/* Starts one child, called on the supervisor's own thread with the supervisor
 * as `sup`: spawn the child (linking it with mb_spawn_opts_t.parent = sup and
 * link = 1, or the supervisor links it after) and set *pid; return 0, or a
 * negative code for a failed start. 0 with *pid = 0 is OTP's ignore: the child
 * is kept, not running. */
typedef int (*mb_child_start_fn)(mb_proc_t *sup, void *arg, mb_pid_t *pid);

typedef struct mb_child_spec {
  const char *id;          /* copied; unique within the supervisor; at most 63 bytes */
  mb_child_start_fn start;
  void *arg;               /* passed to start on every (re)start */
  int restart;             /* MB_CHILD_PERMANENT (0), _TRANSIENT or _TEMPORARY */
  int64_t shutdown_ms;     /* see MB_SHUTDOWN_*; 0: 5000 */
} mb_child_spec_t;

typedef struct mb_sup_spec {
  int strategy;            /* MB_SUP_ONE_FOR_ONE (0), _ONE_FOR_ALL, _REST_FOR_ONE */
  int max_restarts;        /* 0: 3; MB_SUP_NO_RESTARTS: 0 */
  int max_seconds;         /* 0: 5 */
  const mb_child_spec_t *children; /* copied */
  size_t nchildren;
  const mb_spawn_opts_t *spawn;    /* how the supervisor itself is spawned (parent,
                                      link, scheduler, name); may be NULL. An exit
                                      from its parent stops it with that reason. */
} mb_sup_spec_t;

/* Spawns a supervisor; it starts its children in its first slice, so this
 * returns at once (from any thread, the host thread of a host-driven runtime
 * included). If a child fails to start, the ones started are stopped and the
 * supervisor exits with {shutdown, {failed_to_start_child, Id, Code}}. */
int mb_supervisor_start(mb_runtime_t *rt, const mb_sup_spec_t *spec, mb_pid_t *pid);
/* Asks a supervisor to stop its children (reverse order) and exit with shutdown. */
int mb_supervisor_stop(mb_runtime_t *rt, mb_pid_t sup);

typedef struct mb_child_info {
  char id[64];
  mb_pid_t pid;            /* 0: not running (ignored, transient that ended, restarting) */
  int restart;
} mb_child_info_t;
/* Copies up to cap children, in start order, into out; returns how many the
 * supervisor has, or MB_ENOPROC if sup is not a live supervisor. Any thread. */
int mb_supervisor_which_children(mb_runtime_t *rt, mb_pid_t sup, mb_child_info_t *out, size_t cap);

typedef struct mb_sup_counts {
  int specs;               /* children the supervisor knows */
  int active;              /* of those, running */
} mb_sup_counts_t;
/* As supervisor:count_children; MB_ENOPROC if sup is not a live supervisor. */
int mb_supervisor_count_children(mb_runtime_t *rt, mb_pid_t sup, mb_sup_counts_t *out);

/* ---------------------------------------------------------------- observability */

typedef struct mb_stats {
  uint64_t processes;      /* live processes */
  uint64_t spawned, exited;
  uint64_t sent, received; /* messages pushed by / taken by processes of the scheduler */
  uint64_t reductions;
  uint64_t runs;           /* process slices run */
  uint64_t runq;           /* ready processes waiting */
  uint64_t busy_ns, idle_ns;
  uint64_t memory;         /* bytes held by processes, their mailboxes and states */
} mb_stats_t;

/* Counters of scheduler `sched`, or of all schedulers when sched < 0. */
int mb_runtime_stats(mb_runtime_t *rt, int sched, mb_stats_t *out);

enum { MB_STATUS_RUNNABLE = 1, MB_STATUS_RUNNING, MB_STATUS_WAITING, MB_STATUS_EXITING };

typedef struct mb_proc_info {
  int status;              /* MB_STATUS_* */
  int scheduler;
  int trap_exit;
  size_t mailbox_len;      /* messages queued, not counting signals in flight */
  size_t memory;           /* bytes: control block, queued messages, state */
  uint64_t reductions;
  size_t links;            /* linked processes */
  size_t monitors;         /* monitors this process holds on others */
  size_t monitored_by;     /* monitors others hold on this process */
  char name[64];           /* registered name, "" if none */
} mb_proc_info_t;

/* Inspects a live process; MB_ENOPROC if it is not alive. */
int mb_proc_info(mb_runtime_t *rt, mb_pid_t pid, mb_proc_info_t *info);
/* Copies up to cap linked pids of pid into out; returns how many it has. */
int mb_proc_links(mb_runtime_t *rt, mb_pid_t pid, mb_pid_t *out, size_t cap);
/* Copies up to cap live pids into out; returns the number of live processes. */
size_t mb_processes(mb_runtime_t *rt, mb_pid_t *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif /* MOONBEAM_H */
