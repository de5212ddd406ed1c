/* lblocking.c: mb.blocking, functions run on the worker pool of csrc/io/blocking.c.
 *
 * Each worker owns a Lua VM of its own (made on its thread, closed there), with
 * the standard libraries and the runtime's package.path and package.cpath. A
 * job is the function and arguments packed as spawn packs them (mbl_pack), the
 * caller's pid and a ref; the worker unpacks and calls it and replies
 * {Ref, true, Result...} or {Ref, false, Error} (mb_send_io_reply) while the caller
 * waits in mbl_await, so the caller's scheduler runs its other processes. A
 * caller that died meanwhile gets nothing: sending to a dead pid is a no-op.
 * The pool is made on first use and lives in the runtime's mbl_rt_t. */
#include <lualib.h>
#include <stdlib.h>
#include <string.h>
#include "core/proc.h"
#include "io/blocking.h"
#include "lsysio.h"
#include "lterm.h"

typedef struct job {
  mb_pool_job_t hdr;
  mbl_rt_t *brt;
  mb_pid_t caller;
  mb_ref_t ref;
  uint8_t *blob;
  size_t len;
} job_t;

int mbl_blocking_opt(lua_State *L, int idx) {
  if (!lua_istable(L, idx)) return 0;
  lua_getfield(L, idx, "blocking_pool");
  int n = 0;
  if (!lua_isnil(L, -1)) {
    int isint;
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < 1 || v > MB_POOL_MAX) luaL_error(L, "opts.blocking_pool must be 1..%d", MB_POOL_MAX);
    n = (int)v;
  }
  lua_pop(L, 1);
  return n;
}

static int default_size(mbl_rt_t *brt) {
  if (brt->pool_size > 0) return brt->pool_size;
  int n = mb_runtime_schedulers(brt->rt);
  return n < 4 ? 4 : n > MB_POOL_MAX ? MB_POOL_MAX : n;
}

static void set_path(lua_State *L, const char *field, const char *value) {
  if (!value) return;
  lua_getglobal(L, "package");
  lua_pushstring(L, value);
  lua_setfield(L, -2, field);
  lua_pop(L, 1);
}

/* A worker's VM: like a scheduler's, but with no process ever running in it
 * (mb.send works there, mb.receive raises). */
static void *thread_init(void *ud) {
  mbl_rt_t *brt = ud;
  mbl_vm_t *vm = calloc(1, sizeof *vm);
  if (!vm) return NULL;
  vm->L = luaL_newstate();
  if (!vm->L) {
    free(vm);
    return NULL;
  }
  vm->brt = brt;
  vm->sched = -1;
  vm->owned = 1;
  luaL_openlibs(vm->L);
  set_path(vm->L, "path", brt->path);
  set_path(vm->L, "cpath", brt->cpath);
  mb_lterm_open(vm->L, mb_runtime_nodes(brt->rt));
  mbl_box(vm->L)->vm = vm;
  return vm;
}

static void thread_fini(void *data, void *ud) {
  (void)ud;
  mbl_vm_t *vm = data;
  if (!vm) return;
  lua_close(vm->L);
  free(vm);
}

static void free_job(job_t *j) {
  free(j->blob);
  free(j);
}

static void drop_job(mb_pool_job_t *hdr) { free_job((job_t *)hdr); }

/* In the worker's VM, protected: unpacks and calls the job, leaving its results. */
static int call_job(lua_State *L) {
  job_t *j = lua_touserdata(L, 1);
  lua_settop(L, 0);
  int n = mbl_unpack(L, j->blob, j->len);
  if (n < 0) return lua_error(L);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}

static void reply(job_t *j, const uint8_t *term, size_t len) {
  mb_send_io_reply(j->brt->rt, j->caller, j->ref, term, len);
}

/* {Ref, false, Message} */
static void reply_error(job_t *j, const char *msg, size_t mlen) {
  mb_enc_t e;
  mb_enc_init(&e, mb_runtime_nodes(j->brt->rt), 0);
  mb_enc_tuple(&e, 3);
  mb_enc_ref(&e, j->ref);
  mb_enc_atom(&e, "false", 5);
  mb_enc_binary(&e, msg, mlen);
  size_t len;
  uint8_t *b = mb_enc_finish(&e, &len);
  if (b) reply(j, b, len);
  free(b);
}

static void run_job(void *data, mb_pool_job_t *hdr) {
  job_t *j = (job_t *)hdr;
  mbl_vm_t *vm = data;
  if (!vm) {
    reply_error(j, "blocking: cannot make a Lua VM for the pool", 43);
    free_job(j);
    return;
  }
  lua_State *L = vm->L;
  lua_settop(L, 0);
  mbl_push_box(L);
  lua_pushcclosure(L, call_job, 1); /* the box as upvalue 1: mbl_vm finds this VM */
  lua_pushlightuserdata(L, j);
  int status = lua_pcall(L, 1, LUA_MULTRET, 0);
  int n = lua_gettop(L);
  mb_enc_t e;
  char err[256];
  if (status != LUA_OK) {
    /* the error value itself when it can travel (error{...}), else its text */
    mb_enc_init(&e, mb_runtime_nodes(vm->brt->rt), 0);
    mb_enc_tuple(&e, 3);
    mb_enc_ref(&e, j->ref);
    mb_enc_atom(&e, "false", 5);
    size_t len;
    uint8_t *b = NULL;
    if (mb_lterm_encode(L, 1, &e, "error", err, sizeof err) == 0) b = mb_enc_finish(&e, &len);
    else mb_enc_discard(&e);
    if (b) {
      reply(j, b, len);
      free(b);
    } else {
      size_t mlen;
      const char *msg = luaL_tolstring(L, 1, &mlen);
      reply_error(j, msg, mlen);
    }
  } else {
    mb_enc_init(&e, mb_runtime_nodes(vm->brt->rt), 0);
    mb_enc_tuple(&e, (uint32_t)n + 2);
    mb_enc_ref(&e, j->ref);
    mb_enc_atom(&e, "true", 4);
    int bad = 0;
    for (int i = 1; i <= n && !bad; i++) {
      char root[48];
      snprintf(root, sizeof root, "blocking: result %d", i);
      bad = mb_lterm_encode(L, i, &e, root, err, sizeof err);
    }
    if (bad) {
      mb_enc_discard(&e);
      reply_error(j, err, strlen(err));
    } else {
      size_t len;
      uint8_t *b = mb_enc_finish(&e, &len);
      if (b) reply(j, b, len);
      else reply_error(j, "blocking: out of memory", 23);
      free(b);
    }
  }
  lua_settop(L, 0);
  free_job(j);
}

/* brt->pool after mbl_blocking_shutdown: no pool is made again. */
static char closed_marker;
#define POOL_CLOSED ((mb_pool_t *)&closed_marker)

/* The runtime's pool, made on first use (two schedulers may race: one wins);
 * NULL with *err set if there is none. */
static mb_pool_t *get_pool(mbl_rt_t *brt, int *err) {
  mb_pool_t *p = __atomic_load_n(&brt->pool, __ATOMIC_ACQUIRE);
  if (p == POOL_CLOSED) {
    *err = MB_ESTOPPED;
    return NULL;
  }
  if (p) return p;
  mb_pool_hooks_t hooks = {thread_init, thread_fini, brt};
  if ((*err = mb_pool_new(&hooks, default_size(brt), &p))) return NULL;
  mb_pool_t *expected = NULL;
  if (!__atomic_compare_exchange_n(&brt->pool, &expected, p, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    mb_pool_free(p);
    if (expected == POOL_CLOSED) {
      *err = MB_ESTOPPED;
      return NULL;
    }
    return expected;
  }
  return p;
}

static const char *pool_error(int err) {
  return err == MB_ESTOPPED ? "the runtime is stopping" : mb_strerror(err);
}

/* blocking(fn, ...) -> true, results... | false, message (waits in the pool) */
static int l_blocking(lua_State *L) {
  mbl_proc_t *lp = mbl_self(L, 1);
  mbl_rt_t *brt = lp->vm->brt;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  int nargs = lua_gettop(L) - 1;
  int r;
  mb_pool_t *pool = get_pool(brt, &r);
  if (!pool) return luaL_error(L, "blocking: %s", pool_error(r));
  mb_enc_t e;
  mb_enc_init(&e, mb_runtime_nodes(brt->rt), 0);
  if (mbl_pack(L, 1, nargs, &e)) {
    mb_enc_discard(&e);
    return luaL_error(L, "blocking: %s", lua_tostring(L, -1));
  }
  job_t *j = calloc(1, sizeof *j);
  if (!j) {
    mb_enc_discard(&e);
    return luaL_error(L, "blocking: out of memory");
  }
  j->blob = mb_enc_finish(&e, &j->len);
  if (!j->blob) {
    free(j);
    return luaL_error(L, "blocking: out of memory");
  }
  j->hdr.run = run_job;
  j->hdr.drop = drop_job;
  j->brt = brt;
  j->caller = mb_self(lp->self);
  j->ref = mb_make_ref(brt->rt);
  mb_ref_t ref = j->ref;
  mb_mailbox_mark(lp->self);
  r = mb_pool_submit(pool, &j->hdr);
  if (r) {
    free_job(j);
    mb_mailbox_rewind(lp->self);
    return luaL_error(L, "blocking: %s", pool_error(r));
  }
  return mbl_await(L, lp, ref);
}

/* blocking_pool([n]) -> old size, workers now: sets the pool's size when n is given */
static int l_blocking_pool(lua_State *L) {
  mbl_rt(L); /* raises outside a runtime */
  int r;
  mb_pool_t *pool = get_pool(mbl_vm(L)->brt, &r);
  if (!pool) return luaL_error(L, "blocking_pool: %s", pool_error(r));
  int workers;
  int old = mb_pool_size(pool, &workers);
  if (!lua_isnoneornil(L, 1)) {
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 1 && n <= MB_POOL_MAX, 1, "pool size must be 1..256");
    r = mb_pool_resize(pool, (int)n);
    if (r < 0) return luaL_error(L, "blocking_pool: %s", mb_strerror(r));
  }
  lua_pushinteger(L, old);
  lua_pushinteger(L, workers);
  return 2;
}

void mbl_blocking_shutdown(mbl_rt_t *brt) {
  mb_pool_t *p = __atomic_exchange_n(&brt->pool, POOL_CLOSED, __ATOMIC_ACQ_REL);
  if (!p || p == POOL_CLOSED) return; /* never used: nothing to stop */
  mb_runtime_stop(brt->rt); /* no process waits for a job any more */
  mb_pool_free(p);
}

static const luaL_Reg funcs[] = {
  {"blocking", l_blocking}, {"blocking_pool", l_blocking_pool}, {NULL, NULL}
};

void mbl_open_blocking(lua_State *L) {
  mbl_push_box(L);
  luaL_setfuncs(L, funcs, 1);
}
