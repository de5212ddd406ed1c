/* lcrash.c: crash reports of processes that end with a Lua error.
 *
 * Everything here can run Lua (a user __tostring, the crash handler, require)
 * and so runs under lua_pcall on the VM's main thread: an error in a report
 * is printed, never raised through the scheduler. One format: a VM with no
 * handler of its own loads moonbeam.logger's once any VM of the runtime uses
 * it, so the first crash on a fresh scheduler reads like every other. */
#include <stdio.h>
#include <string.h>
#include "lmb.h"
#include "lterm.h"

static const char CRASH_KEY = 0;

static int is_logger_fn(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TFUNCTION) return 0;
  lua_Debug ar;
  lua_pushvalue(L, idx);
  lua_getinfo(L, ">S", &ar);
  static const char tail[] = "moonbeam/logger.lua";
  size_t n = strlen(ar.source), t = sizeof tail - 1;
  return ar.source[0] == '@' && n >= t && strcmp(ar.source + n - t, tail) == 0;
}

int mbl_has_logger_handler(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &CRASH_KEY);
  int is = is_logger_fn(L, -1);
  lua_pop(L, 1);
  return is;
}

int mbl_set_crash_handler(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  mbl_vm_t *vm = mbl_vm(L);
  if (vm && is_logger_fn(L, 1)) atomic_store_explicit(&vm->brt->crash_logger, 1, memory_order_relaxed);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &CRASH_KEY);
  return 0;
}

static int tostring_p(lua_State *L) {
  int t = lua_type(L, 1);
  if (t == LUA_TTABLE && !luaL_getmetafield(L, 1, "__tostring")) {
    /* a structured error value: moonbeam's readable rendering when loaded */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "moonbeam");
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1) &&
        lua_getfield(L, -1, "format") == LUA_TFUNCTION) {
      lua_pushvalue(L, 1);
      lua_call(L, 1, 1);
      if (lua_type(L, -1) == LUA_TSTRING) return 1;
    }
    lua_settop(L, 1);
  } else if (t == LUA_TTABLE) {
    lua_pop(L, 1);
  }
  luaL_tolstring(L, 1, NULL);
  return 1;
}

const char *mbl_error_text(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING) {
    lua_pushvalue(L, idx);
    return lua_tostring(L, -1);
  }
  lua_pushcfunction(L, tostring_p);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    const char *why = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1);
    lua_pushfstring(L, "(a %s error value: rendering it failed: %s)", luaL_typename(L, idx), why);
    lua_remove(L, -2);
  }
  return lua_tostring(L, -1);
}

/* [lp, error value, traceback] */
static int report_p(lua_State *L) {
  mbl_proc_t *lp = lua_touserdata(L, 1);
  mb_pid_t pid = mb_self(lp->self);
  char name[64];
  mb_registered_name(mb_proc_runtime(lp->self), pid, name, sizeof name);
  const char *msg = mbl_error_text(L, 2); /* 4 */
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &CRASH_KEY) != LUA_TFUNCTION && atomic_load_explicit(&lp->vm->brt->crash_logger, memory_order_relaxed)) {
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "moonbeam.logger");
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1); /* then the default below */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &CRASH_KEY);
  }
  if (lua_isfunction(L, -1)) {
    mb_lterm_pushpid(L, pid);
    if (name[0]) lua_pushstring(L, name);
    else lua_pushnil(L);
    lua_pushvalue(L, 4);
    lua_pushvalue(L, 3);
    lua_pushvalue(L, 2); /* the error value itself: a table stays a table in the report */
    if (lua_pcall(L, 5, 0, 0) == LUA_OK) return 0;
    fprintf(stderr, "moonbeam: the crash handler failed: %s\n", mbl_error_text(L, -1));
  }
  fprintf(stderr, "moonbeam: process <%u.%u.%u>%s%s crashed: %s\n%s\n", mb_pid_node(pid),
          mb_pid_index(pid), mb_pid_serial(pid), name[0] ? " " : "", name, msg, lua_tostring(L, 3));
  return 0;
}

void mbl_report_crash(lua_State *L, mbl_proc_t *lp, int erridx, int tbidx) {
  int top = lua_gettop(L);
  erridx = lua_absindex(L, erridx);
  tbidx = lua_absindex(L, tbidx);
  if (!lua_checkstack(L, 8)) {
    fputs("moonbeam: a process crashed (no memory to report it)\n", stderr);
    return;
  }
  lua_pushcfunction(L, report_p);
  lua_pushlightuserdata(L, lp);
  lua_pushvalue(L, erridx);
  lua_pushvalue(L, tbidx);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK)
    fprintf(stderr, "moonbeam: a process crashed; reporting it failed: %s\n",
            lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(error object is not a string)");
  lua_settop(L, top);
}
