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

static int start(mbl_proc_t *lp) {
  lua_State *L = lp->vm->L;
  lp->co = mbl_pool_take(L);
  lp->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  int top = lua_gettop(L);
  int n;
  if (lp->blob) {
    n = mbl_unpack(L, lp->blob, lp->blob_len);
    free(lp->blob);
    lp->blob = NULL;
  } else {
    lua_rawgeti(L, LUA_REGISTRYINDEX, lp->start_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, lp->start_ref);
    lp->start_ref = LUA_NOREF;
    int t = lua_gettop(L);
    n = (int)luaL_len(L, t) - 1;
    for (int i = 1; i <= n + 1; i++) lua_rawgeti(L, t, i);
    lua_remove(L, t);
  }
  if (n < 0) { /* the error message is on L: move it as the "error" of the coroutine */
    lua_xmove(L, lp->co, 1);
    lua_settop(L, top);
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

/* Encodes the reason of an error at co's top into the process's exit reason. */
static void set_error_reason(mbl_proc_t *lp) {
  lua_State *L = lp->vm->L, *co = lp->co;
  int err = lua_gettop(co);
  mb_enc_t e;
  char msg[200];
  /* mb.exit(reason) raised an exit object: its reason is the exit reason */
  if (lua_istable(co, err) && lua_getmetatable(co, err)) {
    luaL_getmetatable(co, "moonbeam.exit");
    int is_exit = lua_rawequal(co, -1, -2);
    lua_pop(co, 2);
    if (is_exit) {
      lua_getfield(co, err, "reason");
      mb_enc_init(&e, mb_runtime_nodes(lp->vm->brt->rt), 0);
      if (mbl_encode_reason(co, -1, &e, msg, sizeof msg) == 0) {
        size_t len;
        uint8_t *b = mb_enc_finish(&e, &len);
        if (b) mb_proc_exit(lp->self, b, len);
        free(b);
        lua_pop(co, 1);
        return;
      }
      mb_enc_discard(&e);
      lua_pop(co, 1);
    }
  }
  /* a Lua error: {"error", message, traceback} */
  /* main's error is raised again by mb.run: a crash report would say it twice */
  if (!lp->is_main) mbl_report_crash(lp->vm, lp, err);
  const char *m = luaL_tolstring(co, err, NULL);
  luaL_traceback(L, co, NULL, 0);
  mb_enc_init(&e, mb_runtime_nodes(lp->vm->brt->rt), 0);
  mb_enc_list(&e, 3);
  mb_enc_binary(&e, "error", 5);
  mb_enc_binary(&e, m, strlen(m));
  size_t tl;
  const char *tb = lua_tolstring(L, -1, &tl);
  mb_enc_binary(&e, tb, tl);
  mb_enc_nil(&e);
  size_t len;
  uint8_t *b = mb_enc_finish(&e, &len);
  if (b) mb_proc_exit(lp->self, b, len);
  free(b);
  lua_pop(L, 1);
  lua_pop(co, 1);
}

static int lproc_run(mb_proc_t *self, void *st) {
  mbl_proc_t *lp = st;
  if (!lp->vm) {
    lp->vm = mb_sched_data(mb_proc_runtime(self), mb_proc_sched(self));
    lp->self = self;
  }
  mbl_vm_t *vm = lp->vm;
  if (!lp->co && start(lp) < 0) {
    if (lp->is_main) save_main_result(lp, 0, 0);
    set_error_reason(lp);
    return MB_RUN_EXIT;
  }
  if (lp->armed) {
    lua_sethook(lp->co, NULL, 0, 0);
    lp->armed = 0;
  }
  lp->yield_why = MBL_YIELD_NONE;
  vm->running = lp;
  int nres = 0;
  int status = lua_resume(lp->co, vm->L, lp->nargs, &nres);
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
  if (lp->is_main) {
    lua_State *L = vm->L;
    lua_createtable(L, 1, 0);
    if (lua_type(lp->co, -1) == LUA_TSTRING) { /* mb.run raises it with main's traceback */
      luaL_traceback(L, lp->co, lua_tostring(lp->co, -1), 0);
    } else {
      lua_pushvalue(lp->co, -1);
      lua_xmove(lp->co, L, 1);
    }
    lua_rawseti(L, -2, 1);
    vm->brt->main_ok = 0;
    vm->brt->main_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  set_error_reason(lp);
  return MB_RUN_EXIT;
}

static void lproc_destroy(mb_proc_t *self, void *st, const uint8_t *reason, size_t len) {
  (void)self;
  (void)reason;
  (void)len;
  mbl_proc_t *lp = st;
  if (lp->vm) {
    lua_State *L = lp->vm->L;
    if (lp->co && lp->finished) {
      if (lp->armed) lua_sethook(lp->co, NULL, 0, 0);
      mbl_pool_put(L, lp->co);
    }
    if (lp->co_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, lp->co_ref);
    if (lp->start_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, lp->start_ref);
    if (lp->is_main) mb_runtime_stop(lp->vm->brt->rt);
  } else if (lp->start_ref != LUA_NOREF && lp->is_main) {
    /* never ran (runtime stopped first) */
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
