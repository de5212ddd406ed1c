/* lproc.c: Lua processes: coroutines run by the scheduler, receive, spawn.
 *
 * A process waits by yielding its coroutine with yield_why = WAIT; the
 * scheduler resumes it when a message, a signal or its timeout arrives. The
 * watchdog's signal arms a count hook (armed = 1) that yields with PREEMPT at
 * the next yieldable instruction; the hook is removed before the next resume,
 * so no hook runs while a process is within its slice. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "lmb.h"
#include "lterm.h"

#if LUA_VERSION_NUM < 504
#error "moonbeam needs Lua 5.4"
#endif

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- preemption ---- */

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
static void lproc_preempt(void *st) {
  mbl_proc_t *lp = st;
  if (lp->co && !lp->armed) {
    lp->armed = 1;
    lua_sethook(lp->co, preempt_hook, LUA_MASKCOUNT, 100);
  }
}

/* ---- running ---- */

/* Creates the coroutine and pushes the function and its arguments onto it. */
/* Finished coroutines are kept for reuse (a spawn then allocates no thread
 * and no stack): a sequence in the VM's registry, at most POOL_MAX long. */
#define POOL_MAX 1024
static const char POOL_KEY = 0;

static int push_pool(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &POOL_KEY) == LUA_TTABLE) return lua_gettop(L);
  lua_pop(L, 1);
  lua_createtable(L, 64, 0);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &POOL_KEY);
  return lua_gettop(L);
}

static lua_State *new_coroutine(lua_State *L) {
  int pool = push_pool(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, pool);
  lua_State *co;
  if (n > 0) {
    lua_rawgeti(L, pool, n);
    co = lua_tothread(L, -1);
    lua_pushnil(L);
    lua_rawseti(L, pool, n);
  } else {
    co = lua_newthread(L);
  }
  lua_remove(L, pool);
  return co; /* on the stack */
}

/* Keeps a coroutine that returned normally (empty, no call in progress). */
static void pool_coroutine(lua_State *L, lua_State *co) {
  if (lua_status(co) != LUA_OK) return;
  lua_Debug ar;
  if (lua_getstack(co, 0, &ar)) return; /* still inside a call: never reuse */
  lua_settop(co, 0);
  int pool = push_pool(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, pool);
  if (n < POOL_MAX) {
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    lua_rawseti(L, pool, n + 1);
  }
  lua_pop(L, 1);
}

static int start(mbl_proc_t *lp) {
  lua_State *L = lp->vm->L;
  lp->co = new_coroutine(L);
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
      pool_coroutine(L, lp->co);
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

const mb_behaviour_t mbl_behaviour = {lproc_run, lproc_destroy, lproc_memory, lproc_preempt};

static mbl_proc_t *new_lproc(void) {
  mbl_proc_t *lp = calloc(1, sizeof *lp);
  if (!lp) return NULL;
  lp->co_ref = LUA_NOREF;
  lp->start_ref = LUA_NOREF;
  return lp;
}

int mbl_spawn_direct(lua_State *L, mb_runtime_t *rt, int fidx, int nargs, int is_main, mb_pid_t *pid) {
  mbl_proc_t *lp = new_lproc();
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

/* ---- spawn ---- */

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
  mb_enc_t e;
  mb_enc_init(&e, mb_runtime_nodes(rt), 0);
  if (mbl_pack(L, 2, nargs, &e)) {
    mb_enc_discard(&e);
    return lua_error(L);
  }
  mbl_proc_t *lp = new_lproc();
  if (!lp) {
    mb_enc_discard(&e);
    return luaL_error(L, "out of memory");
  }
  lp->blob = mb_enc_finish(&e, &lp->blob_len);
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

/* ---- receive ---- */

/* Scans for the first acceptable message; returns results pushed, or -1 if none. */
static int scan(lua_State *L, mbl_proc_t *lp, int has_match) {
  const mb_msg_t *m;
  mb_nodes_t *nodes = mb_runtime_nodes(lp->vm->brt->rt);
  while ((m = mb_mailbox_next(lp->self))) {
    mb_proc_add_reductions(lp->self, 1);
    size_t len;
    const uint8_t *data = mb_msg_data(m, &len);
    mb_dec_t d;
    if (mb_dec_init(&d, nodes, data, len) || mb_lterm_decode(L, &d)) {
      /* a malformed term (only C senders can make one): drop it, loudly */
      mb_msg_free(mb_mailbox_take(lp->self));
      fprintf(stderr, "moonbeam: dropped a malformed message from %s\n", "a native sender");
      continue;
    }
    if (has_match) {
      lua_pushvalue(L, 1);
      lua_pushvalue(L, -2);
      lua_call(L, 1, 1);
      int ok = lua_toboolean(L, -1);
      lua_pop(L, 1);
      if (!ok) {
        lua_pop(L, 1);
        continue;
      }
    }
    mb_msg_free(mb_mailbox_take(lp->self));
    return 1;
  }
  return -1;
}

static int receive_k(lua_State *L, int status, lua_KContext ctx);

static int wait_or_timeout(lua_State *L, mbl_proc_t *lp, int has_match) {
  int64_t left = -1;
  if (lp->deadline_ms) {
    uint64_t now = now_ms();
    if (now >= lp->deadline_ms) {
      lp->deadline_ms = 0;
      mb_mailbox_rewind(lp->self);
      lua_pushnil(L);
      lua_pushliteral(L, "timeout");
      return 2;
    }
    left = (int64_t)(lp->deadline_ms - now);
  }
  mb_proc_set_timeout(lp->self, left);
  lp->yield_why = MBL_YIELD_WAIT;
  return lua_yieldk(L, 0, (lua_KContext)has_match, receive_k);
}

static int receive_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  mbl_proc_t *lp = mbl_self(L, 1);
  int has_match = (int)ctx;
  mb_proc_timed_out(lp->self);
  int n = scan(L, lp, has_match);
  if (n > 0) {
    lp->deadline_ms = 0;
    return n;
  }
  return wait_or_timeout(L, lp, has_match);
}

/* mb.receive([match], [timeout_ms]) -> msg | nil, "timeout" */
int mbl_receive(lua_State *L) {
  mbl_proc_t *lp = mbl_self(L, 1);
  int has_match = !lua_isnoneornil(L, 1);
  if (has_match) luaL_checktype(L, 1, LUA_TFUNCTION);
  lp->deadline_ms = 0;
  int64_t timeout = -1;
  if (!lua_isnoneornil(L, 2)) {
    lua_Number t = luaL_checknumber(L, 2);
    luaL_argcheck(L, t >= 0, 2, "timeout must be >= 0 ms");
    timeout = (int64_t)t;
  }
  lua_settop(L, 2);
  mb_mailbox_rewind(lp->self);
  int n = scan(L, lp, has_match);
  if (n > 0) return n;
  if (timeout == 0) {
    mb_mailbox_rewind(lp->self);
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    return 2;
  }
  if (timeout > 0) lp->deadline_ms = now_ms() + (uint64_t)timeout;
  return wait_or_timeout(L, lp, has_match);
}

/* ---- gen calls ---- */

/* Looks among the messages queued since the call began for its reply or the
 * DOWN of its monitor, by their headers: nothing else is decoded. Pushes the
 * results and returns their count, or -1 if neither is there yet. */
static int scan_reply(lua_State *L, mbl_proc_t *lp) {
  const mb_msg_t *m;
  mb_ref_t tag;
  while ((m = mb_mailbox_next(lp->self))) {
    int kind = mb_msg_kind(m, &tag);
    if (kind == MB_MSG_PLAIN || !mb_ref_equal(tag, lp->await_ref)) continue;
    mb_msg_t *msg = mb_mailbox_take(lp->self);
    size_t len;
    const uint8_t *data = mb_msg_data(msg, &len);
    mb_dec_t d;
    uint32_t arity;
    int bad = mb_dec_init(&d, mb_runtime_nodes(lp->vm->brt->rt), data, len) || mb_dec_tuple(&d, &arity);
    /* reply {Ref, Value}; DOWN {'DOWN', Ref, process, Pid, Reason} */
    for (uint32_t i = 1; !bad && i < arity; i++) bad = mb_dec_skip(&d);
    if (!bad) bad = mb_lterm_decode(L, &d);
    mb_msg_free(msg);
    if (bad) luaL_error(L, "call: malformed %s", kind == MB_MSG_REPLY ? "reply" : "DOWN");
    if (kind == MB_MSG_REPLY) {
      mb_demonitor(lp->self, lp->await_ref, 1);
      lua_pushboolean(L, 1);
      lua_insert(L, -2);
      return 2;
    }
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "down");
    lua_rotate(L, -3, 2);
    return 3;
  }
  return -1;
}

static int call_k(lua_State *L, int status, lua_KContext ctx);

static int call_wait(lua_State *L, mbl_proc_t *lp) {
  int64_t left = -1;
  if (lp->deadline_ms) {
    uint64_t now = now_ms();
    if (now >= lp->deadline_ms) {
      lp->deadline_ms = 0;
      mb_abandon_reply(lp->self, lp->await_ref);
      mb_demonitor(lp->self, lp->await_ref, 1);
      mb_mailbox_rewind(lp->self);
      lua_pushboolean(L, 0);
      lua_pushliteral(L, "timeout");
      return 2;
    }
    left = (int64_t)(lp->deadline_ms - now);
  }
  mb_proc_set_timeout(lp->self, left);
  lp->yield_why = MBL_YIELD_WAIT;
  return lua_yieldk(L, 0, 0, call_k);
}

static int call_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  mbl_proc_t *lp = mbl_self(L, 1);
  mb_proc_timed_out(lp->self);
  int n = scan_reply(L, lp);
  if (n > 0) {
    lp->deadline_ms = 0;
    return n;
  }
  return call_wait(L, lp);
}

/* call(pid, request, [timeout_ms]) -> true, reply | false, "down", reason |
 * false, "timeout". Monitors pid, sends {'$gen_call', {Self, Ref}, Request},
 * waits for the reply tagged Ref or the monitor's DOWN; a reply arriving after
 * the timeout is dropped on arrival (mb_abandon_reply). */
int mbl_call(lua_State *L) {
  mbl_proc_t *lp = mbl_self(L, 1);
  mb_runtime_t *rt = mb_proc_runtime(lp->self);
  mb_pid_t to = mb_lterm_checkpid(L, 1);
  luaL_checkany(L, 2);
  int64_t timeout = -1;
  if (!lua_isnoneornil(L, 3)) {
    lua_Number t = luaL_checknumber(L, 3);
    luaL_argcheck(L, t >= 0, 3, "timeout must be >= 0 ms");
    timeout = (int64_t)t;
  }
  mb_enc_t e;
  char err[256];
  mb_enc_init(&e, mb_runtime_nodes(rt), mb_msg_prefix());
  mb_enc_tuple(&e, 3);
  mb_enc_atom(&e, "$gen_call", 9);
  mb_enc_tuple(&e, 2);
  mb_enc_pid(&e, mb_self(lp->self));
  size_t ref_at = e.len;
  mb_enc_ref(&e, (mb_ref_t){0, {0, 0, 0}}); /* placeholder: the monitor's ref goes here */
  if (mb_lterm_encode(L, 2, &e, "request", err, sizeof err)) {
    mb_enc_discard(&e);
    return luaL_error(L, "%s", err);
  }
  /* messages queued before this point cannot hold the reply */
  mb_mailbox_mark(lp->self);
  mb_ref_t ref;
  int r = mb_monitor(lp->self, to, &ref);
  if (r) {
    mb_enc_discard(&e);
    return luaL_error(L, "call: %s", mb_strerror(r));
  }
  /* patch the ref in place: same node, same length */
  size_t tail = e.len;
  e.len = ref_at;
  mb_enc_ref(&e, ref);
  e.len = tail;
  mb_send_enc(rt, mb_self(lp->self), to, &e);
  lp->await_ref = ref;
  lp->deadline_ms = timeout > 0 ? now_ms() + (uint64_t)timeout : 0;
  mb_mailbox_rewind(lp->self); /* scan from the mark */
  lua_settop(L, 0);
  int n = scan_reply(L, lp);
  if (n > 0) {
    lp->deadline_ms = 0;
    return n;
  }
  if (timeout == 0) {
    lp->deadline_ms = 1; /* already due */
  }
  return call_wait(L, lp);
}
