/* lpreempt.c: preemption of Lua processes.
 *
 * The watchdog's signal arms a count hook (armed = 1) that yields with PREEMPT at
 * the next yieldable instruction; the hook is removed before the next resume,
 * so no hook runs while a process is within its slice. */
#include "lmb.h"

static void preempt_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  mbl_vm_t *vm = mbl_vm(L);
  mbl_proc_t *lp = vm ? vm->running : NULL;
  if (!lp || lp->co != L) {
    lua_sethook(L, NULL, 0, 0);
    return;
  }
  if (lua_isyieldable(L)) {
    lua_sethook(L, NULL, 0, 0);
    lp->armed = 0;
    lp->yield_why = MBL_YIELD_PREEMPT;
    lua_yield(L, 0);
  }
  /* not yieldable here (inside a C call): try again a little later */
}

/* Async-signal context: only lua_sethook (allowed by the manual). */
void mbl_preempt(void *st) {
  mbl_proc_t *lp = st;
  if (lp->co && !lp->armed) {
    lp->armed = 1;
    lua_sethook(lp->co, preempt_hook, LUA_MASKCOUNT, 100);
  }
}
