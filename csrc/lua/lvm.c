/* lvm.c: one Lua VM per scheduler, and starting/stopping a runtime from Lua. */
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lmb.h"
#include "lsysio.h"
#include "lterm.h"

static const char VM_KEY = 0;

static const char BOX_KEY = 0;

mbl_box_t *mbl_box(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &BOX_KEY) != LUA_TUSERDATA) {
    lua_pop(L, 1);
    mbl_box_t *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->vm = NULL;
    b->pid_mt = NULL;
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &BOX_KEY);
  }
  mbl_box_t *b = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return b;
}

void mbl_push_weak(lua_State *L, const void *key, const char *mode) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushstring(L, mode);
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

void mbl_push_box(lua_State *L) {
  mbl_box(L);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &BOX_KEY);
}

mbl_vm_t *mbl_vm(lua_State *L) {
  /* the module's functions carry the VM's box as upvalue 1: no table lookup */
  mbl_box_t *b = lua_touserdata(L, lua_upvalueindex(1));
  if (b) return b->vm;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &VM_KEY);
  mbl_vm_t *vm = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return vm;
}

mbl_vm_t *mbl_vm_of(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &VM_KEY);
  mbl_vm_t *vm = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return vm;
}

mb_runtime_t *mbl_rt(lua_State *L) {
  mbl_vm_t *vm = mbl_vm(L);
  if (!vm) luaL_error(L, "moonbeam is not running (use mb.run or mb.start)");
  return vm->brt->rt;
}

mbl_proc_t *mbl_self(lua_State *L, int strict) {
  mbl_vm_t *vm = mbl_vm(L);
  mbl_proc_t *lp = vm ? vm->running : NULL;
  if (!lp) luaL_error(L, "not called from inside a moonbeam process");
  if (strict && lp->co != L)
    luaL_error(L, "cannot wait inside a nested coroutine: call it from the process itself");
  return lp;
}

static char *dup_field(lua_State *L, const char *field, int *oom) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, field);
  const char *s = lua_tostring(L, -1);
  char *copy = s ? strdup(s) : NULL;
  if (s && !copy) *oom = 1;
  lua_pop(L, 2);
  return copy;
}

static void set_field(lua_State *L, const char *field, const char *value) {
  if (!value) return;
  lua_getglobal(L, "package");
  lua_pushstring(L, value);
  lua_setfield(L, -2, field);
  lua_pop(L, 1);
}

static void attach(lua_State *L, mbl_vm_t *vm, mb_runtime_t *rt) {
  lua_pushlightuserdata(L, vm);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &VM_KEY);
  mbl_box(L)->vm = vm;
  mb_lterm_open(L, mb_runtime_nodes(rt));
  mbl_coroutine_open(L);
}

/* [vm, rt]: the VM's libraries and moonbeam's state (may raise: protected) */
static int vm_setup_p(lua_State *L) {
  mbl_vm_t *vm = lua_touserdata(L, 1);
  mb_runtime_t *rt = lua_touserdata(L, 2);
  lua_settop(L, 0);
  if (vm->owned) {
    luaL_openlibs(L);
    set_field(L, "path", vm->brt->path);
    set_field(L, "cpath", vm->brt->cpath);
    mbl_preload_install(L, vm->brt->preload);
  }
  attach(L, vm, rt);
  return 0;
}

/* Scheduler hook, on the scheduler's own thread, before any process runs. A
 * VM that cannot be made (no memory) is left out: processes placed on its
 * scheduler end with reason out_of_memory. */
static void on_sched_init(mb_runtime_t *rt, int sched, void *ud) {
  mbl_rt_t *brt = ud;
  mbl_vm_t *vm = calloc(1, sizeof *vm);
  if (!vm) {
    fprintf(stderr, "moonbeam: no memory for the Lua VM of scheduler %d\n", sched + 1);
    return;
  }
  vm->brt = brt;
  vm->sched = sched;
  if (sched == 0) {
    vm->L = brt->main_L;
  } else {
    vm->L = luaL_newstate();
    if (!vm->L) {
      fprintf(stderr, "moonbeam: no memory for the Lua VM of scheduler %d\n", sched + 1);
      free(vm);
      return;
    }
    vm->owned = 1;
  }
  mbl_heap_attach(vm);
  /* the starting VM may grow by the limit beyond what it holds already */
  vm->max_memory = !brt->vm_memory ? 0 : vm->owned ? brt->vm_memory : vm->used + brt->vm_memory;
  /* brt->rt is set by the starting thread once mb_runtime_new returns, before
   * any process exists; hooks use their rt argument */
  int top = lua_gettop(vm->L);
  lua_pushcfunction(vm->L, vm_setup_p);
  lua_pushlightuserdata(vm->L, vm);
  lua_pushlightuserdata(vm->L, rt);
  if (lua_pcall(vm->L, 2, 0, 0) != LUA_OK) {
    fprintf(stderr, "moonbeam: cannot set up the Lua VM of scheduler %d: %s\n", sched + 1,
            lua_type(vm->L, -1) == LUA_TSTRING ? lua_tostring(vm->L, -1) : "error");
    lua_settop(vm->L, top);
    lua_pushnil(vm->L);
    lua_rawsetp(vm->L, LUA_REGISTRYINDEX, &VM_KEY);
    mbl_box(vm->L)->vm = NULL;
    if (vm->owned) lua_close(vm->L);
    else mbl_heap_detach(vm);
    free(vm);
    return;
  }
  mb_sched_set_data(rt, sched, vm);
}

/* Scheduler hook, after its last process is gone. */
static void on_sched_fini(mb_runtime_t *rt, int sched, void *ud) {
  (void)ud;
  mbl_vm_t *vm = mb_sched_data(rt, sched);
  if (!vm) return;
  if (vm->owned) {
    lua_close(vm->L);
  } else {
    lua_pushnil(vm->L);
    lua_rawsetp(vm->L, LUA_REGISTRYINDEX, &VM_KEY);
    mbl_box(vm->L)->vm = NULL;
    mbl_heap_detach(vm);
  }
  mb_sched_set_data(rt, sched, NULL);
  free(vm);
}

static mbl_rt_t *new_runtime(lua_State *L, int opts_idx, int host) {
  if (mbl_vm(L)) luaL_error(L, "moonbeam is already running in this Lua state");
  int nsched = 0;
  int64_t vm_memory = mbl_default_vm_memory();
  if (lua_istable(L, opts_idx)) {
    lua_getfield(L, opts_idx, "schedulers");
    if (!lua_isnil(L, -1)) {
      lua_Integer n = luaL_checkinteger(L, -1);
      luaL_argcheck(L, n >= 1 && n <= 1024, opts_idx, "schedulers must be 1..1024");
      nsched = (int)n;
    }
    lua_pop(L, 1);
    lua_getfield(L, opts_idx, "vm_memory");
    if (!lua_isnil(L, -1)) {
      lua_Number m = luaL_checknumber(L, -1);
      luaL_argcheck(L, m >= 0, opts_idx, "vm_memory must be a number of bytes >= 0 (0: no limit)");
      vm_memory = m >= 9e18 ? 0 : (int64_t)m;
    }
    lua_pop(L, 1);
  } else if (!lua_isnoneornil(L, opts_idx)) {
    luaL_typeerror(L, opts_idx, "table");
  }
  int pool_size = mbl_blocking_opt(L, opts_idx); /* opts.blocking_pool (lblocking.c) */
  mbl_rt_t *brt = calloc(1, sizeof *brt);
  if (!brt) luaL_error(L, "out of memory");
  brt->pool_size = pool_size;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  brt->main_L = lua_tothread(L, -1);
  lua_pop(L, 1);
  int oom = 0;
  brt->path = dup_field(L, "path", &oom);
  brt->cpath = dup_field(L, "cpath", &oom);
  brt->preload = mbl_preload_capture(L);
  brt->host = host;
  brt->main_ref = LUA_NOREF;
  atomic_init(&brt->crash_logger, mbl_has_logger_handler(L));
  brt->vm_memory = vm_memory;
  static const mb_sched_hooks_t hooks_tmpl = {on_sched_init, on_sched_fini, NULL};
  mb_sched_hooks_t *hooks = malloc(sizeof *hooks);
  if (!hooks || oom) {
    free(hooks);
    free(brt->path);
    free(brt->cpath);
    mbl_preload_free(brt->preload);
    free(brt);
    luaL_error(L, "not enough memory");
  }
  *hooks = hooks_tmpl;
  hooks->ud = brt;
  mb_runtime_opts_t o;
  memset(&o, 0, sizeof o);
  o.schedulers = nsched;
  o.host_driven = 1;
  o.preempt = 1;
  o.hooks = hooks;
  mb_runtime_t *rt;
  int r = mb_runtime_new(&o, &rt);
  free(hooks); /* the runtime keeps a copy */
  if (r) {
    free(brt->path);
    free(brt->cpath);
    mbl_preload_free(brt->preload);
    free(brt);
    luaL_error(L, "cannot start moonbeam: %s", mb_strerror(r));
  }
  brt->rt = rt;
  return brt;
}

static void free_runtime(mbl_rt_t *brt) {
  mbl_blocking_shutdown(brt);
  mb_runtime_free(brt->rt);
  free(brt->path);
  free(brt->cpath);
  mbl_preload_free(brt->preload);
  free(brt);
}

/* mb.run(main, opts): main runs as the first process; returns its results. */
int mbl_run(lua_State *L) {
  luaL_checkany(L, 1);
  if (!lua_isfunction(L, 1)) luaL_typeerror(L, 1, "function");
  mbl_rt_t *brt = new_runtime(L, 2, 0);
  int top = lua_gettop(L);
  lua_pushvalue(L, 1);
  mb_pid_t pid;
  int r = mbl_spawn_direct(L, brt->rt, top + 1, 0, 1, &pid);
  lua_settop(L, top);
  if (r) {
    free_runtime(brt);
    return luaL_error(L, "cannot spawn main: %s", mb_strerror(r));
  }
  mb_runtime_run(brt->rt);
  int ok = brt->main_ok, ref = brt->main_ref;
  free_runtime(brt);
  lua_settop(L, top);
  if (ref == LUA_NOREF) return luaL_error(L, "main process did not finish");
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  int t = lua_gettop(L);
  lua_Integer n = luaL_len(L, t);
  if (!ok) {
    lua_rawgeti(L, t, 1);
    return lua_error(L);
  }
  for (lua_Integer i = 1; i <= n; i++) lua_rawgeti(L, t, i);
  return (int)n;
}

/* Keeps the runtime of mb.start in the registry of the starting VM. */
static const char HOST_KEY = 0;

static mbl_rt_t *host_rt(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &HOST_KEY);
  mbl_rt_t *brt = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return brt;
}

int mbl_start(lua_State *L) {
  mbl_rt_t *brt = new_runtime(L, 1, 1);
  lua_pushlightuserdata(L, brt);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &HOST_KEY);
  lua_pushinteger(L, mb_runtime_schedulers(brt->rt));
  return 1;
}

/* mb.step and mb.stop drive the runtime from the host, outside it: from a
 * process they would re-enter or free the scheduler running it. */
static void check_host(lua_State *L, const char *fn) {
  mbl_vm_t *vm = mbl_vm(L);
  if (vm && (vm->running || mb_runtime_current_sched(vm->brt->rt) >= 0))
    luaL_error(L, "%s cannot be called from inside a process (only the host that called mb.start can)", fn);
}

int mbl_step(lua_State *L) {
  check_host(L, "mb.step");
  mbl_rt_t *brt = host_rt(L);
  if (!brt) return luaL_error(L, "mb.step: no runtime started with mb.start");
  lua_Number ms = luaL_optnumber(L, 1, 1);
  luaL_argcheck(L, ms >= 0, 1, "must not be negative");
  int r = mb_runtime_step(brt->rt, (unsigned)(ms * 1000));
  lua_pushboolean(L, r == 0);
  return 1;
}

int mbl_stop(lua_State *L) {
  check_host(L, "mb.stop");
  mbl_rt_t *brt = host_rt(L);
  if (!brt) return 0;
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &HOST_KEY);
  free_runtime(brt);
  return 0;
}
