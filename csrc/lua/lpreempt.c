/* lpreempt.c: preemption of Lua processes, nested coroutines included.
 *
 * The watchdog's signal, on the process's own thread, arms a count hook
 * (armed = 1) on the coroutine that runs now (vm->cur: the process's own, or
 * a nested one resumed through moonbeam's coroutine.resume/wrap). At the next
 * yieldable count or line event the hook yields with PREEMPT; each
 * coroutine.resume between it and the process passes that yield on (yields
 * itself, and resumes the inner coroutine when it is resumed), so the process
 * yields to the scheduler and an exit signal (kill) can end it. A hook the
 * user set (debug.sethook) is saved when ours goes on and chained while it is
 * on; it is put back when ours comes off. Invariants: at most one coroutine
 * of a process carries our hook (`hooked`), and only while armed; the hook is
 * removed before each resume of the process, so none runs within a slice. */
#include <string.h>
#include "lmb.h"

#define PREEMPT_COUNT 100

static void preempt_hook(lua_State *L, lua_Debug *ar);

/* Puts our hook on t, saving t's own hook. Async-signal-safe (lua_gethook*
 * read fields; lua_sethook is allowed by the manual). */
static void arm(mbl_proc_t *lp, lua_State *t) {
  lua_Hook h = lua_gethook(t);
  if (h != preempt_hook) {
    lp->user_hook = h;
    lp->user_mask = h ? lua_gethookmask(t) : 0;
    lp->user_count = h ? lua_gethookcount(t) : 0;
  }
  lp->hooked = t;
  lp->armed = 1;
  /* a user count hook keeps its own period: ours then runs on its events */
  int count = (lp->user_mask & LUA_MASKCOUNT) && lp->user_count > 0 ? lp->user_count : PREEMPT_COUNT;
  lua_sethook(t, preempt_hook, lp->user_mask | LUA_MASKCOUNT, count);
}

void mbl_disarm(mbl_proc_t *lp) {
  lua_State *t = lp->hooked;
  lp->armed = 0;
  lp->hooked = NULL;
  /* a hook the user set meanwhile (debug.sethook replaced ours) stays */
  if (t && lua_gethook(t) == preempt_hook) lua_sethook(t, lp->user_hook, lp->user_mask, lp->user_count);
  lp->user_hook = NULL;
}

/* The preemption moves with the running coroutine (not async-signal context). */
static void move_hook(mbl_proc_t *lp, lua_State *to) {
  if (!lp->armed || lp->hooked == to) return;
  mbl_disarm(lp);
  arm(lp, to);
}

static void preempt_hook(lua_State *L, lua_Debug *ar) {
  mbl_vm_t *vm = mbl_vm_of(L);
  mbl_proc_t *lp = vm ? vm->running : NULL;
  if (!lp || lp->hooked != L) { /* stale: its process is not running */
    lua_sethook(L, NULL, 0, 0);
    return;
  }
  if (lp->user_hook) {
    /* the user's hook gets the events it asked for */
    int bit = ar->event == LUA_HOOKTAILCALL ? LUA_MASKCALL : (1 << ar->event);
    if (lp->user_mask & bit) lp->user_hook(L, ar);
    if (lp->hooked != L) return; /* the user's hook changed hooks */
  }
  if (!lp->armed) {
    mbl_disarm(lp);
    return;
  }
  /* only count and line hooks may yield; only where a resume we track waits */
  if ((ar->event == LUA_HOOKCOUNT || ar->event == LUA_HOOKLINE) && L == vm->cur && lua_isyieldable(L)) {
    mbl_disarm(lp);
    lp->yield_why = MBL_YIELD_PREEMPT;
    lua_yield(L, 0);
  }
  /* not yieldable here (inside a C call): try again at the next event */
}

/* Async-signal context. */
void mbl_preempt(void *st) {
  mbl_proc_t *lp = st;
  mbl_vm_t *vm = lp->vm;
  lua_State *t = vm && vm->cur ? vm->cur : lp->co;
  if (!t) return;
  /* armed but without our hook on t (the user's debug.sethook replaced it, or
   * this signal came in the middle of a move): arm again */
  if (lp->armed && lua_gethook(t) == preempt_hook) return;
  arm(lp, t);
}

/* ---- coroutine.resume, coroutine.wrap, coroutine.running ---- */

enum { MODE_RESUME = 0, MODE_WRAP = 1 };

/* Results of a finished lua_resume of co (status st, nres results on co). */
static int resume_done(lua_State *L, lua_State *co, int st, int nres, int mode) {
  if (st == LUA_OK || st == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      if (mode == MODE_WRAP) return luaL_error(L, "too many results to resume");
      lua_pushboolean(L, 0);
      lua_pushliteral(L, "too many results to resume");
      return 2;
    }
    if (mode == MODE_RESUME) lua_pushboolean(L, 1);
    lua_xmove(co, L, nres);
    return mode == MODE_RESUME ? nres + 1 : nres;
  }
  lua_xmove(co, L, 1); /* the error (a no-op when co is L: resuming itself) */
  if (mode == MODE_RESUME) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  /* wrap: an error inside the coroutine closes its to-be-closed variables
   * (which may raise anew); a string gets the caller's position, as with
   * Lua's own wrap */
  int cst = lua_status(co);
  if (cst != LUA_OK && cst != LUA_YIELD) {
#if LUA_VERSION_RELEASE_NUM >= 50406
    cst = lua_closethread(co, L);
#else
    cst = lua_resetthread(co);
#endif
    lua_xmove(co, L, 1);
    lua_remove(L, -2);
  }
  if (cst != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

static int resume_k(lua_State *L, int status, lua_KContext ctx);

/* Resumes co with nargs values already moved onto it; passes a preemption of
 * co on to the caller's coroutine. */
static int resume_loop(lua_State *L, lua_State *co, int nargs, int mode) {
  mbl_vm_t *vm = mbl_vm(L);
  mbl_proc_t *lp = vm ? vm->running : NULL;
  for (;;) {
    int nres = 0;
    if (lp) {
      vm->cur = co;
      move_hook(lp, co);
    }
    int st = lua_resume(co, L, nargs, &nres);
    if (lp) {
      vm->cur = L;
      move_hook(lp, L);
    }
    if (st == LUA_YIELD && lp && lp->yield_why == MBL_YIELD_PREEMPT) {
      lua_pop(co, nres);
      if (lua_isyieldable(L)) return lua_yieldk(L, 0, (lua_KContext)mode, resume_k);
      /* cannot pass it on from here: go on, the next tick tries again */
      lp->yield_why = MBL_YIELD_NONE;
      nargs = 0;
      continue;
    }
    return resume_done(L, co, st, nres, mode);
  }
}

static lua_State *the_coroutine(lua_State *L, int mode) {
  return mode == MODE_WRAP ? lua_tothread(L, lua_upvalueindex(2)) : lua_tothread(L, 1);
}

static int resume_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  int mode = (int)ctx;
  mbl_vm_t *vm = mbl_vm(L);
  if (vm && vm->running) vm->running->yield_why = MBL_YIELD_NONE;
  return resume_loop(L, the_coroutine(L, mode), 0, mode);
}

static int start_resume(lua_State *L, lua_State *co, int first, int mode) {
  int nargs = lua_gettop(L) - first + 1;
  if (!lua_checkstack(co, nargs)) {
    if (mode == MODE_WRAP) return luaL_error(L, "too many arguments to resume");
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "too many arguments to resume");
    return 2;
  }
  lua_xmove(L, co, nargs);
  return resume_loop(L, co, nargs, mode);
}

static int co_resume(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "coroutine");
  return start_resume(L, co, 2, MODE_RESUME);
}

static int co_wrapped(lua_State *L) {
  return start_resume(L, lua_tothread(L, lua_upvalueindex(2)), 1, MODE_WRAP);
}

static int co_wrap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushvalue(L, lua_upvalueindex(1)); /* the box: upvalue 1, as for every function of ours */
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, co_wrapped, 2);
  return 1;
}

/* A process's coroutine that was given out has an identity others could see
 * if it were reused: it is not pooled. */
static int co_running(lua_State *L) {
  int ismain = lua_pushthread(L);
  mbl_vm_t *vm = mbl_vm(L);
  if (vm && vm->running && vm->running->co == L) vm->running->exposed = 1;
  lua_pushboolean(L, ismain);
  return 2;
}

void mbl_coroutine_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"resume", co_resume}, {"wrap", co_wrap}, {"running", co_running}, {NULL, NULL}};
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "coroutine") == LUA_TTABLE) {
    mbl_push_box(L);
    luaL_setfuncs(L, fns, 1);
  }
  lua_pop(L, 2);
}
