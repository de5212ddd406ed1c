/* lproc.c: Lua processes: coroutines run by the scheduler (the behaviour).
 *
 * A process waits by yielding its coroutine with yield_why = WAIT; the
 * scheduler resumes it when a message, a signal or its timeout arrives;
 * preemption (lpreempt.c) yields it with PREEMPT. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lmb.h"
#include "lterm.h"

#if LUA_VERSION_NUM < 504
#error "moonbeam needs Lua 5.4"
#endif

/* Shared metatable of process environments: reads fall through to the VM's
 * globals. */
static const char ENV_MT_KEY = 0;

void mbl_process_env(lua_State *L) {
  mbl_vm_t *vm = mbl_vm_of(L);
  mbl_proc_t *lp = vm ? vm->running : NULL;
  if (!lp || lp->is_main) {
    lua_pushglobaltable(L);
    return;
  }
  if (lp->env_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, lp->env_ref);
    return;
  }
  lua_createtable(L, 0, 0);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &ENV_MT_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushglobaltable(L);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ENV_MT_KEY);
  }
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lp->env_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* [lp]: pushes the function and its arguments; returns how many arguments */
static int start_p(lua_State *L) {
  mbl_proc_t *lp = lua_touserdata(L, 1);
  lua_settop(L, 0);
  int n;
  if (lp->blob) {
    n = mbl_unpack(L, lp->blob, lp->blob_len);
    if (n < 0) return lua_error(L);
  } else {
    lua_rawgeti(L, LUA_REGISTRYINDEX, lp->start_ref);
    n = (int)lua_rawlen(L, 1) - 1;
    luaL_checkstack(L, n + 2, "too many arguments");
    for (int i = 1; i <= n + 1; i++) lua_rawgeti(L, 1, i);
    lua_remove(L, 1);
  }
  lua_pushinteger(L, n);
  return n + 2;
}

/* Makes the coroutine with the function and its arguments on it; -1 with an
 * error value on the coroutine if the function cannot be made (anything the
 * unpacker runs, require or a module's __index, runs protected). */
static int start(mbl_proc_t *lp) {
  lua_State *L = lp->vm->L;
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 4)) return -2;
  lp->co = mbl_pool_take(L);
  lp->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, start_p);
  lua_pushlightuserdata(L, lp);
  lp->vm->running = lp; /* for mbl_process_env */
  int st = lua_pcall(L, 1, LUA_MULTRET, 0);
  lp->vm->running = NULL;
  free(lp->blob);
  lp->blob = NULL;
  if (lp->start_ref != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, lp->start_ref);
    lp->start_ref = LUA_NOREF;
  }
  if (st != LUA_OK) { /* the error as the "error" of the coroutine */
    lua_xmove(L, lp->co, 1);
    lua_settop(L, top);
    return -1;
  }
  int n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (!lua_checkstack(lp->co, n + 1)) {
    lua_settop(L, top);
    lua_pushliteral(lp->co, "spawn: too many arguments");
    return -1;
  }
  lua_xmove(L, lp->co, n + 1);
  lp->nargs = n;
  return 0;
}

static void save_main_result(mbl_proc_t *lp, int ok, int nres) {
  mbl_rt_t *brt = lp->vm->brt;
  lua_State *L = lp->vm->L, *co = lp->co;
  lua_createtable(L, nres, 0);
  int t = lua_gettop(L);
  if (ok) {
    lua_xmove(co, L, nres); /* now at t+1 .. t+nres */
    for (int i = nres; i >= 1; i--) lua_rawseti(L, t, i);
  }
  brt->main_ok = ok;
  brt->main_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static int is_exit_object(lua_State *L, int idx) {
  if (!lua_istable(L, idx) || !lua_getmetatable(L, idx)) return 0;
  luaL_getmetatable(L, "moonbeam.exit");
  int is = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return is;
}

typedef struct {
  mbl_proc_t *lp;
  uint8_t *reason;
  size_t len;
} reason_out_t;

/* [out, error value, coroutine]: the exit reason for an error, the crash
 * report. A string error stays a string, a table without __tostring (a
 * structured error) stays a value when it can be sent, anything else is
 * rendered (its __tostring runs here, protected). */
static int error_reason_p(lua_State *L) {
  reason_out_t *o = lua_touserdata(L, 1);
  mbl_proc_t *lp = o->lp;
  lua_State *co = lua_tothread(L, 3);
  mb_nodes_t *nodes = mb_runtime_nodes(lp->vm->brt->rt);
  char msg[200];
  mb_enc_t e;
  if (is_exit_object(L, 2)) { /* mb.exit(reason): its reason is the exit reason */
    lua_pushliteral(L, "reason");
    lua_rawget(L, 2);
    mb_enc_init(&e, nodes, 0);
    if (mbl_encode_reason(L, 4, &e, msg, sizeof msg) == 0) {
      o->reason = mb_enc_finish(&e, &o->len);
      if (o->reason) return 0;
    }
    mb_enc_discard(&e);
    lua_settop(L, 3);
  }
  luaL_traceback(L, co, NULL, 0); /* 4 */
  /* main's error is raised again by mb.run: a crash report would say it twice */
  if (!lp->is_main) mbl_report_crash(L, lp, 2, 4);
  size_t tl;
  const char *tb = lua_tolstring(L, 4, &tl);
  /* a table with __tostring is meant to be printed: its string form */
  int structured = lua_type(L, 2) == LUA_TTABLE && luaL_getmetafield(L, 2, "__tostring") == LUA_TNIL;
  lua_settop(L, 4);
  for (;; structured = 0) {
    mb_enc_init(&e, nodes, 0);
    mb_enc_list(&e, 3);
    mb_enc_binary(&e, "error", 5);
    if (structured) {
      mb_lterm_encode(L, 2, &e, "reason", msg, sizeof msg);
    } else {
      size_t ml;
      mbl_error_text(L, 2);
      const char *m = lua_tolstring(L, -1, &ml);
      mb_enc_binary(&e, m, ml);
    }
    mb_enc_binary(&e, tb, tl);
    mb_enc_nil(&e);
    o->reason = mb_enc_finish(&e, &o->len);
    if (o->reason || !structured) return 0;
  }
}

/* Sets the exit reason for the error value on co's top (popped), and reports
 * the crash. Runs nothing unprotected on the scheduler. */
static void set_error_reason(mbl_proc_t *lp) {
  /* if even the fallback cannot be made (no memory), the reason says so */
  static const uint8_t oom[] = {131, 119, 13, 'o', 'u', 't', '_', 'o', 'f', '_', 'm', 'e', 'm', 'o', 'r', 'y'};
  lua_State *L = lp->vm->L, *co = lp->co;
  reason_out_t o = {lp, NULL, 0};
  int top = lua_gettop(L);
  if (lua_checkstack(L, 8)) {
    lua_pushcfunction(L, error_reason_p);
    lua_pushlightuserdata(L, &o);
    lua_xmove(co, L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lp->co_ref);
    if (lua_pcall(L, 3, 0, 0) != LUA_OK && !o.reason) {
      /* the error could not be handled (no memory): its reason, plainly */
      const char *why = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "unprintable error";
      mb_enc_t e;
      mb_enc_init(&e, mb_runtime_nodes(lp->vm->brt->rt), 0);
      mb_enc_list(&e, 3);
      mb_enc_binary(&e, "error", 5);
      mb_enc_binary(&e, why, strlen(why));
      mb_enc_binary(&e, "", 0);
      mb_enc_nil(&e);
      o.reason = mb_enc_finish(&e, &o.len);
    }
  } else {
    lua_pop(co, 1);
  }
  lua_settop(L, top);
  if (!o.reason || mb_proc_exit(lp->self, o.reason, o.len)) mb_proc_exit(lp->self, oom, sizeof oom);
  free(o.reason);
}

/* mb.run's main ended with an error, or was killed: the value mb.run raises */
static void save_main_error(mbl_vm_t *vm, lua_State *co) {
  lua_State *L = vm->L;
  lua_createtable(L, 1, 0);
  if (lua_type(co, -1) == LUA_TSTRING) { /* mb.run raises it with main's traceback */
    luaL_traceback(L, co, lua_tostring(co, -1), 0);
  } else {
    lua_pushvalue(co, -1);
    lua_xmove(co, L, 1);
  }
  lua_rawseti(L, -2, 1);
  vm->brt->main_ok = 0;
  vm->brt->main_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static int lproc_run(mb_proc_t *self, void *st) {
  mbl_proc_t *lp = st;
  if (!lp->vm) {
    lp->vm = mb_sched_data(mb_proc_runtime(self), mb_proc_sched(self));
    lp->self = self;
  }
  mbl_vm_t *vm = lp->vm;
  if (!lp->co) {
    int r = start(lp);
    if (r == -2) {
      static const uint8_t oom[] = {131, 119, 13, 'o', 'u', 't', '_', 'o', 'f', '_', 'm', 'e', 'm', 'o', 'r', 'y'};
      mb_proc_exit(self, oom, sizeof oom);
      return MB_RUN_EXIT;
    }
    if (r < 0) {
      if (lp->is_main) save_main_error(vm, lp->co);
      set_error_reason(lp);
      return MB_RUN_EXIT;
    }
  }
  if (lp->armed) mbl_disarm(lp);
  lp->yield_why = MBL_YIELD_NONE;
  vm->running = lp;
  vm->cur = lp->co;
  int nres = 0;
  int status = lua_resume(lp->co, vm->L, lp->nargs, &nres);
  vm->cur = NULL;
  vm->running = NULL;
  lp->nargs = 0;
  /* reductions: one a run, one a message looked at (scan), 4000 a full slice */
  mb_proc_add_reductions(self, lp->yield_why == MBL_YIELD_PREEMPT ? 4000 : 1);
  if (status == LUA_YIELD) {
    if (lp->yield_why == MBL_YIELD_WAIT) return MB_RUN_WAIT;
    lua_pop(lp->co, nres); /* preempted, or a plain coroutine.yield: run again later */
    return MB_RUN_YIELD;
  }
  if (status == LUA_OK) {
    if (lp->is_main) save_main_result(lp, 1, nres);
    lp->finished = 1;
    return MB_RUN_EXIT;
  }
  if (lp->is_main) save_main_error(vm, lp->co);
  set_error_reason(lp);
  return MB_RUN_EXIT;
}

/* [reason bytes as a light userdata, length]: main was ended by an exit
 * signal (killed): mb.run raises an exit error with the reason, as for
 * mb.exit(reason) */
static int main_exit_p(lua_State *L) {
  const uint8_t *reason = lua_touserdata(L, 1);
  size_t len = (size_t)lua_tointeger(L, 2);
  lua_createtable(L, 1, 0);
  lua_createtable(L, 0, 1);
  mb_dec_t d;
  if (reason && len && mb_dec_init(&d, mb_lterm_nodes(L), reason, len) == 0 && mb_lterm_decode(L, &d) == 0)
    lua_setfield(L, -2, "reason");
  luaL_setmetatable(L, "moonbeam.exit");
  lua_rawseti(L, -2, 1);
  return 1;
}

static void save_main_exit(mbl_vm_t *vm, const uint8_t *reason, size_t len) {
  lua_State *L = vm->L;
  if (!lua_checkstack(L, 4)) return;
  lua_pushcfunction(L, main_exit_p);
  lua_pushlightuserdata(L, (void *)reason);
  lua_pushinteger(L, (lua_Integer)len);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
    lua_pop(L, 1);
    return;
  }
  vm->brt->main_ok = 0;
  vm->brt->main_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static void lproc_destroy(mb_proc_t *self, void *st, const uint8_t *reason, size_t len) {
  (void)self;
  mbl_proc_t *lp = st;
  if (lp->vm) {
    lua_State *L = lp->vm->L;
    if (lp->armed) mbl_disarm(lp);
    /* a coroutine reused by the next process must not carry anything of this
     * one: not its identity (given out by coroutine.running), nor a hook */
    if (lp->co && lp->finished && !lp->exposed && !lua_gethook(lp->co)) mbl_pool_put(L, lp->co);
    if (lp->co_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, lp->co_ref);
    if (lp->start_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, lp->start_ref);
    if (lp->env_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, lp->env_ref);
    if (lp->is_main) {
      if (lp->vm->brt->main_ref == LUA_NOREF) save_main_exit(lp->vm, reason, len);
      mb_runtime_stop(lp->vm->brt->rt);
    }
  }
  free(lp->blob);
  free(lp);
}

static size_t lproc_memory(void *st) {
  mbl_proc_t *lp = st;
  /* a coroutine's base cost in Lua 5.4: the thread object, its CallInfo and
   * its initial stack of 2 * LUA_MINSTACK slots */
  return sizeof *lp + (lp->co ? 208 + 64 + 45 * 16 : lp->blob_len);
}

const mb_behaviour_t mbl_behaviour = {lproc_run, lproc_destroy, lproc_memory, mbl_preempt};

mbl_proc_t *mbl_proc_new(void) {
  mbl_proc_t *lp = calloc(1, sizeof *lp);
  if (!lp) return NULL;
  lp->co_ref = LUA_NOREF;
  lp->start_ref = LUA_NOREF;
  lp->env_ref = LUA_NOREF;
  return lp;
}

int mbl_spawn_direct(lua_State *L, mb_runtime_t *rt, int fidx, int nargs, int is_main, mb_pid_t *pid) {
  mbl_proc_t *lp = mbl_proc_new();
  if (!lp) return MB_ENOMEM;
  lua_createtable(L, nargs + 1, 0);
  for (int i = 0; i <= nargs; i++) {
    lua_pushvalue(L, fidx + i);
    lua_rawseti(L, -2, i + 1);
  }
  lp->start_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lp->is_main = is_main;
  mb_spawn_opts_t o;
  memset(&o, 0, sizeof o);
  o.scheduler = mb_runtime_current_sched(rt) >= 0 ? MB_SCHED_HERE : 1;
  int r = mb_spawn(rt, &mbl_behaviour, lp, &o, pid);
  if (r) {
    luaL_unref(L, LUA_REGISTRYINDEX, lp->start_ref);
    free(lp);
  }
  return r;
}
