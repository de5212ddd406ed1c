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
#include "moonbeam.h"

typedef struct mbl_vm mbl_vm_t;
typedef struct mbl_proc mbl_proc_t;

/* Shared by every VM of one runtime. */
typedef struct mbl_rt {
  mb_runtime_t *rt;
  char *path, *cpath;      /* package paths of the starting VM */
  lua_State *main_L;       /* the starting VM (scheduler 0) */
  int host;                /* started by mb.start (host-driven steps), not mb.run */
  /* mb.run's main process: its results (registry ref in main_L) or its error */
  int main_done, main_ok, main_ref;
} mbl_rt_t;

struct mbl_vm {
  lua_State *L;            /* main thread of this VM */
  mbl_rt_t *brt;
  int sched;
  int owned;               /* 1: made by us, closed at scheduler end */
  mbl_proc_t *running;     /* the process being resumed, or NULL */
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
  volatile sig_atomic_t armed; /* preemption hook set */
  int is_main;
  int finished;            /* its function returned: the coroutine can be reused */
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

/* The VM record of L's VM, or NULL outside a runtime. */
mbl_vm_t *mbl_vm(lua_State *L);
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

/* lproc.c: processes */
extern const mb_behaviour_t mbl_behaviour;
int mbl_spawn_opt(lua_State *L);
int mbl_receive(lua_State *L);
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

/* Crash reports: calls the VM's reporter (set by moonbeam/init.lua) or prints. */
void mbl_report_crash(mbl_vm_t *vm, mbl_proc_t *lp, int erridx);

/* lhttp.c, lcrypto.c: core.http (parser, WebSocket codec) and core.crypto, set
 * in the table on top of the stack. */
void mbl_open_http(lua_State *L);
void mbl_open_crypto(lua_State *L);

#endif
