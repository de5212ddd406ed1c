/* lmb.h: internals of the Lua binding (luaopen_moonbeam_core).
 *
 * One Lua VM per scheduler: scheduler 0 uses the VM that started the runtime,
 * the others get a fresh VM each, made and closed on their own thread by the
 * scheduler hooks. A Lua process is a coroutine of its scheduler's VM, anchored
 * in that VM's registry, touched only by that scheduler's thread. */
#ifndef MB_LMB_H
#define MB_LMB_H

#include <lauxlib.h>
#include <lua.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include "moonbeam.h"

typedef struct mbl_vm mbl_vm_t;
typedef struct mbl_proc mbl_proc_t;
typedef struct mbl_preload mbl_preload_t;

/* Shared by every VM of one runtime. */
typedef struct mbl_rt {
  mb_runtime_t *rt;
  char *path, *cpath;      /* package paths of the starting VM */
  mbl_preload_t *preload;  /* its package.preload, packed (lspawn.c) */
  lua_State *main_L;       /* the starting VM (scheduler 0) */
  int host;                /* started by mb.start (host-driven steps), not mb.run */
  /* mb.run's main process: its results (registry ref in main_L) or its error */
  int main_done, main_ok, main_ref;
  /* a VM installed moonbeam.logger's crash handler: every VM without a handler
   * loads it before its first crash report (one report format everywhere) */
  atomic_int crash_logger;   /* any VM set the logger's crash handler: written by any scheduler thread */
  int64_t vm_memory;       /* limit of each VM's Lua heap (bytes), 0: none */
  struct mb_pool *pool;    /* mb.blocking's workers (lblocking.c), made on first use */
  int pool_size;           /* opts.blocking_pool, 0: the default */
} mbl_rt_t;

struct mbl_vm {
  lua_State *L;            /* main thread of this VM */
  mbl_rt_t *brt;
  int sched;
  int owned;               /* 1: made by us, closed at scheduler end */
  mbl_proc_t *running;     /* the process being resumed, or NULL */
  /* the coroutine of `running` that runs now: its own, or a nested one resumed
   * through moonbeam's coroutine.resume/wrap (read by the preemption signal) */
  lua_State *volatile cur;
  /* lheap.c: the allocator this VM forwards to, its total and its limit */
  lua_Alloc base_f;
  void *base_ud;
  int64_t used, max_memory;
};

enum { MBL_YIELD_NONE = 0, MBL_YIELD_WAIT, MBL_YIELD_PREEMPT };

struct mbl_proc {
  mbl_vm_t *vm;            /* set when it first runs */
  mb_proc_t *self;
  lua_State *co;           /* NULL until started */
  int co_ref;
  uint8_t *blob;           /* spawn payload until started */
  size_t blob_len;
  int start_ref;           /* or: same-VM start, registry ref to {fn, args...} */
  int nargs;               /* pending arguments for the next resume */
  int yield_why;
  uint64_t deadline_ms;    /* receive deadline while waiting, 0: none */
  mb_ref_t await_ref;      /* the call being waited for (mbl_call) */
  volatile sig_atomic_t armed; /* preemption hook set, on `hooked` */
  lua_State *volatile hooked;
  /* the user's hook on `hooked` (debug.sethook), chained while armed */
  lua_Hook user_hook;
  int user_mask, user_count;
  int user_every, user_ticks; /* its count hook runs every user_every of ours */
  int env_ref;             /* its own globals (a table reading through to _G) */
  int is_main;
  int finished;            /* its function returned: the coroutine can be reused */
  int exposed;             /* coroutine.running() gave out its coroutine: never pool it */
  int in_match;            /* running a receive predicate */
  int64_t heap;            /* bytes allocated minus freed while it ran (lheap.c) */
  int64_t max_heap;        /* spawn_opt's max_heap_size, 0: none */
  int heap_over;           /* 1: past max_heap (to confirm), 2: past twice it */
};

/* Per-VM box holding the VM record (NULL outside a runtime): upvalue 1 of
 * every function of moonbeam.core, so they find their VM without a lookup. */
typedef struct mbl_box {
  mbl_vm_t *vm;
  const void *pid_mt;      /* the pid metatable, to recognise pids cheaply */
} mbl_box_t;

/* The pid at idx, or 0: the hot path's check (one metatable compare). */
static inline mb_pid_t mbl_topid(lua_State *L, int idx) {
  mbl_box_t *b = (mbl_box_t *)lua_touserdata(L, lua_upvalueindex(1));
  if (!b || !b->pid_mt || lua_type(L, idx) != LUA_TUSERDATA) return 0;
  if (!lua_getmetatable(L, idx)) return 0;
  int is = lua_topointer(L, -1) == b->pid_mt;
  lua_pop(L, 1);
  return is ? *(const mb_pid_t *)lua_touserdata(L, idx) : 0;
}
mbl_box_t *mbl_box(lua_State *L);
/* Pushes the registry table at key, made weak (`mode` "k" or "v") on first use. */
void mbl_push_weak(lua_State *L, const void *key, const char *mode);
/* Pushes the box (for luaopen_moonbeam_core). */
void mbl_push_box(lua_State *L);

/* The VM record of L's VM, or NULL outside a runtime. mbl_vm is for the
 * functions of moonbeam.core (upvalue 1: the box); mbl_vm_of for any caller. */
mbl_vm_t *mbl_vm(lua_State *L);
mbl_vm_t *mbl_vm_of(lua_State *L);
/* The running process of L's VM (raises if none, or if L is not its coroutine
 * when strict). */
mbl_proc_t *mbl_self(lua_State *L, int strict);
/* The runtime of L's VM (raises if none). */
mb_runtime_t *mbl_rt(lua_State *L);

/* lvm.c: runtime start/stop for mb.run and mb.start/step/stop */
int mbl_run(lua_State *L);
int mbl_start(lua_State *L);
int mbl_step(lua_State *L);
int mbl_stop(lua_State *L);

static inline uint64_t mbl_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* lproc.c: processes (the behaviour run by the scheduler) */
extern const mb_behaviour_t mbl_behaviour;
/* A zeroed process record (refs LUA_NOREF), or NULL. */
mbl_proc_t *mbl_proc_new(void);
/* lpreempt.c: the behaviour's preempt entry (async-signal context); removes
 * an armed preemption hook (the user's hook is put back); installs moonbeam's
 * coroutine.resume/wrap/running in L's VM (they track the running coroutine
 * so preemption reaches nested coroutines). */
void mbl_preempt(void *st);
void mbl_disarm(mbl_proc_t *lp);
void mbl_coroutine_open(lua_State *L);

/* Pushes the globals of the process L's VM is starting or running: its own
 * table, made on first use (reads go through to the VM's globals, writes stay
 * in the process); the VM's globals outside a process. For the spawn
 * unpacker: a closure's _ENV upvalue becomes this table. */
void mbl_process_env(lua_State *L);
/* lheap.c: the VM's allocator (ud: the VM record); installs it on vm->L
 * (forwarding to the allocator L had), and puts that back; after a run:
 * whether the process is past its max_heap_size (a full collection confirms);
 * at a process's end: gives back what it held. */
void *mbl_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
void mbl_heap_attach(mbl_vm_t *vm);
void mbl_heap_detach(mbl_vm_t *vm);
int mbl_heap_check(mbl_proc_t *lp);
void mbl_heap_release(mbl_proc_t *lp);
/* 3/4 of the machine's memory: the default limit of one VM */
int64_t mbl_default_vm_memory(void);
/* lpool.c: pushes a coroutine (reused or new) and returns it; keeps a finished one */
lua_State *mbl_pool_take(lua_State *L);
void mbl_pool_put(lua_State *L, lua_State *co);
/* lspawnopt.c, lreceive.c, lcall.c */
int mbl_spawn_opt(lua_State *L);
int mbl_spawn(lua_State *L);
int mbl_spawn_link(lua_State *L);
int mbl_spawn_monitor(lua_State *L);
int mbl_flush(lua_State *L);
int mbl_sleep(lua_State *L);
int mbl_receive(lua_State *L);
/* Raises if lp is running a receive predicate (no receive or call there). */
void mbl_check_not_in_match(lua_State *L, mbl_proc_t *lp);
int mbl_call(lua_State *L);
/* Spawns a process running the function at stack index fidx with nargs args
 * that follow it, in this same VM without copying (mb.run's main). */
int mbl_spawn_direct(lua_State *L, mb_runtime_t *rt, int fidx, int nargs, int is_main,
                     mb_pid_t *pid);

/* lspawn.c: closures across VMs. Encodes the function at fidx (with its
 * upvalues, copied) and nargs arguments after it; on error pushes a message. */
int mbl_pack(lua_State *L, int fidx, int nargs, mb_enc_t *e);
/* Decodes what mbl_pack made: pushes the function and its arguments, returns
 * how many arguments, or -1 with an error message pushed. */
int mbl_unpack(lua_State *L, const uint8_t *blob, size_t len);
/* core.pack(value [, where]) and core.unpack(packed): gen.pack, gen.unpack. */
int mbl_l_pack(lua_State *L);
int mbl_l_unpack(lua_State *L);
/* Pushes "chunk:line: " of the innermost caller outside moonbeam's own Lua
 * files (or ""): where an API error points. */
void mbl_push_where(lua_State *L);
/* package.preload of the starting VM for every VM: packed once when the
 * runtime starts (entries that cannot travel are left out), found by a
 * package.searchers entry installed in each other VM. */
mbl_preload_t *mbl_preload_capture(lua_State *L);
void mbl_preload_install(lua_State *L, mbl_preload_t *p);
void mbl_preload_free(mbl_preload_t *p);

/* lclone.c: pushes a fresh closure of the function dumped in code[0..len)
 * (upvalues nil), sharing one loaded prototype per VM; -1 if it cannot (then
 * nothing is pushed and the caller loads the chunk itself). */
int mbl_load_closure(lua_State *L, const uint8_t *code, size_t len, lua_Integer hash);
/* The bytecode of the Lua function at fidx and its hash (0 on a miss: then
 * computed), dumped once per closure and remembered for closures made by
 * mbl_load_closure; the string stays valid while the function lives. */
int mbl_code_of(lua_State *L, int fidx, const char **code, size_t *len, lua_Integer *hash);

/* Encodes the value at idx as a message term (raises a Lua error naming the
 * path on failure). The block has room for a message header. */
void mbl_encode_msg(lua_State *L, int idx, mb_enc_t *e, const char *what);

/* Encodes an exit reason: a string becomes an atom ("normal", "kill",
 * "shutdown" are atoms to the core and to Erlang), anything else as a message.
 * Returns 0, or an MB_E* code with err filled. */
int mbl_encode_reason(lua_State *L, int idx, mb_enc_t *e, char *err, size_t errlen);

/* lcrash.c: crash reports. Reports the crash of lp (the error value at
 * erridx, its traceback string at tbidx, both on the VM's main thread L)
 * through the VM's crash handler, or prints it. Never raises. */
void mbl_report_crash(lua_State *L, mbl_proc_t *lp, int erridx, int tbidx);
/* A readable string for the error value at idx (never raises: a failing
 * __tostring is reported in the text); pushes it. */
const char *mbl_error_text(lua_State *L, int idx);
int mbl_set_crash_handler(lua_State *L);
/* Whether the VM of L has moonbeam.logger's crash handler. */
int mbl_has_logger_handler(lua_State *L);

/* lhttp.c, lcrypto.c: core.http (parser, WebSocket codec) and core.crypto, set
 * in the table on top of the stack. */
void mbl_open_http(lua_State *L);
void mbl_open_crypto(lua_State *L);

#endif
