/* lspawnopt.c: mb.spawn_opt: spawn options, packing, placement. */
#include <stdlib.h>
#include <string.h>
#include "lmb.h"
#include "lterm.h"

static int opt_bool(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* mb.spawn_opt(opts, fn, ...) -> pid [, ref] */
int mbl_spawn_opt(lua_State *L) {
  mb_runtime_t *rt = mbl_rt(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  int nargs = lua_gettop(L) - 2;
  mbl_vm_t *vm = mbl_vm(L);
  mb_spawn_opts_t o;
  memset(&o, 0, sizeof o);
  o.link = opt_bool(L, 1, "link");
  o.monitor = opt_bool(L, 1, "monitor");
  o.trap_exit = opt_bool(L, 1, "trap_exit");
  mb_ref_t ref;
  o.mon_ref = &ref;
  if (o.link || o.monitor) {
    mbl_proc_t *lp = vm ? vm->running : NULL;
    if (!lp) return luaL_error(L, "spawn with link or monitor must be called from a process");
    o.parent = lp->self;
  } else if (vm && vm->running) {
    o.parent = vm->running->self;
  }
  lua_getfield(L, 1, "name");
  const char *name = lua_tolstring(L, -1, &o.name_len);
  if (!lua_isnil(L, -1) && !name) return luaL_error(L, "spawn: opts.name must be a string");
  o.name = name;
  lua_getfield(L, 1, "scheduler");
  if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "here") == 0) {
    o.scheduler = MB_SCHED_HERE;
  } else if (!lua_isnil(L, -1)) {
    int isint;
    lua_Integer s = lua_tointegerx(L, -1, &isint);
    if (!isint || s < 1 || s > mb_runtime_schedulers(rt))
      return luaL_error(L, "spawn: opts.scheduler must be 1..%d or \"here\"", mb_runtime_schedulers(rt));
    o.scheduler = (int)s;
  }
  lua_pop(L, 1);
  /* max_heap_size (bytes, Erlang's option): past it the process ends with
   * reason "max_heap_size" (lheap.c) */
  int64_t max_heap = 0;
  lua_getfield(L, 1, "max_heap_size");
  if (!lua_isnil(L, -1)) {
    int isnum;
    lua_Number m = lua_tonumberx(L, -1, &isnum);
    if (!isnum || !(m >= 0)) return luaL_error(L, "spawn: opts.max_heap_size must be a number of bytes >= 0 (0: no limit)");
    max_heap = m >= 4e18 ? 0 : (int64_t)m;
  }
  lua_pop(L, 1);
  mb_enc_t e;
  mb_enc_init(&e, mb_runtime_nodes(rt), 0);
  if (mbl_pack(L, 2, nargs, &e)) {
    mb_enc_discard(&e);
    return lua_error(L); /* the packer's message names the caller's line */
  }
  mbl_proc_t *lp = mbl_proc_new();
  if (!lp) {
    mb_enc_discard(&e);
    return luaL_error(L, "not enough memory");
  }
  lp->blob = mb_enc_finish(&e, &lp->blob_len);
  if (!lp->blob) {
    free(lp);
    return luaL_error(L, "not enough memory");
  }
  lp->max_heap = max_heap;
  mb_pid_t pid;
  int r = mb_spawn(rt, &mbl_behaviour, lp, &o, &pid);
  if (r) {
    free(lp->blob);
    free(lp);
    if (r == MB_EEXIST) return luaL_error(L, "spawn: name '%s' is already registered", name);
    return luaL_error(L, "spawn: %s", mb_strerror(r));
  }
  lua_pop(L, 1); /* name */
  mb_lterm_pushpid(L, pid);
  if (o.monitor) {
    mb_lterm_pushref(L, ref);
    return 2;
  }
  return 1;
}

/* mb.spawn(fn, ...), mb.spawn_link, mb.spawn_monitor: spawn_opt with fixed
 * options, called from the caller's frame (errors name the caller's line) */
static int spawn_with(lua_State *L, const char *opt) {
  lua_createtable(L, 0, 1);
  if (opt) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, opt);
  }
  lua_insert(L, 1);
  return mbl_spawn_opt(L);
}

int mbl_spawn(lua_State *L) { return spawn_with(L, NULL); }
int mbl_spawn_link(lua_State *L) { return spawn_with(L, "link"); }
int mbl_spawn_monitor(lua_State *L) { return spawn_with(L, "monitor"); }
