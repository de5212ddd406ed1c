/* lapi.c: luaopen_moonbeam_core, the functions moonbeam/init.lua builds on.
 * Conventions (DESIGN.md): misuse raises; what can fail in normal operation
 * returns nil, err. Scheduler indexes are 1-based on the Lua side. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "lmb.h"
#include "lport.h"
#include "lsysio.h"
#include "lterm.h"

static mb_pid_t self_pid(lua_State *L) {
  mbl_vm_t *vm = mbl_vm(L);
  return vm && vm->running ? mb_self(vm->running->self) : 0;
}

void mbl_encode_msg(lua_State *L, int idx, mb_enc_t *e, const char *what) {
  char err[256];
  mb_enc_init(e, mb_runtime_nodes(mbl_rt(L)), mb_msg_prefix());
  if (mb_lterm_encode(L, idx, e, what, err, sizeof err)) {
    mb_enc_discard(e);
    luaL_error(L, "%s", err);
  }
}

int mbl_encode_reason(lua_State *L, int idx, mb_enc_t *e, char *err, size_t errlen) {
  size_t len;
  if (lua_type(L, idx) == LUA_TSTRING && (lua_tolstring(L, idx, &len), len <= 255))
    return mb_enc_atom(e, lua_tostring(L, idx), len);
  return mb_lterm_encode(L, idx, e, "reason", err, errlen);
}

/* A pid from a pid value or a registered name; raises on anything else. */
static mb_pid_t dest_pid(lua_State *L, mb_runtime_t *rt, int idx, const char *fn) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t nl;
    const char *nm = lua_tolstring(L, idx, &nl);
    mb_pid_t pid = mb_whereis_n(rt, nm, nl);
    if (!pid) luaL_error(L, "%s: no process registered as '%s'", fn, lua_tostring(L, idx));
    return pid;
  }
  mb_pid_t pid = mbl_topid(L, idx);
  if (!pid) pid = mb_lterm_topid(L, idx);
  if (!pid) luaL_error(L, "%s: bad destination (pid or registered name expected, got %s)", fn,
                       luaL_typename(L, idx));
  return pid;
}

static int l_self(lua_State *L) {
  mb_lterm_pushpid(L, mb_self(mbl_self(L, 0)->self));
  return 1;
}

static int l_send(lua_State *L) {
  mb_runtime_t *rt = mbl_rt(L);
  if (lua_gettop(L) != 2) return luaL_error(L, "send: expected a destination and one message");
  mb_pid_t to = dest_pid(L, rt, 1, "send");
  mb_enc_t e;
  mbl_encode_msg(L, 2, &e, "msg");
  int r = mb_send_enc(rt, self_pid(L), to, &e);
  if (r) return luaL_error(L, "send: %s", mb_strerror(r));
  lua_pushboolean(L, 1);
  return 1;
}

static int l_link(lua_State *L) {
  mbl_proc_t *lp = mbl_self(L, 0);
  int r = mb_link(lp->self, mb_lterm_checkpid(L, 1));
  if (r) return luaL_error(L, "link: %s", mb_strerror(r));
  lua_pushboolean(L, 1);
  return 1;
}

static int l_unlink(lua_State *L) {
  mbl_proc_t *lp = mbl_self(L, 0);
  mb_unlink(lp->self, mb_lterm_checkpid(L, 1));
  lua_pushboolean(L, 1);
  return 1;
}

static int l_monitor(lua_State *L) {
  mbl_proc_t *lp = mbl_self(L, 0);
  mb_pid_t pid = dest_pid(L, mb_proc_runtime(lp->self), 1, "monitor");
  mb_ref_t ref;
  int r = mb_monitor(lp->self, pid, &ref);
  if (r) return luaL_error(L, "monitor: %s", mb_strerror(r));
  mb_lterm_pushref(L, ref);
  return 1;
}

static int l_demonitor(lua_State *L) {
  mbl_proc_t *lp = mbl_self(L, 0);
  mb_ref_t ref;
  if (!mb_lterm_toref(L, 1, &ref)) return luaL_typeerror(L, 1, "ref");
  int flush = 0;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "flush");
    flush = lua_toboolean(L, -1);
  }
  lua_pushboolean(L, mb_demonitor(lp->self, ref, flush));
  return 1;
}

/* exit_signal(pid, reason): Erlang's exit/2 */
static int l_exit_signal(lua_State *L) {
  mb_runtime_t *rt = mbl_rt(L);
  mb_pid_t to = dest_pid(L, rt, 1, "exit");
  luaL_checkany(L, 2);
  mb_enc_t e;
  char err[256];
  mb_enc_init(&e, mb_runtime_nodes(rt), 0);
  if (mbl_encode_reason(L, 2, &e, err, sizeof err)) {
    mb_enc_discard(&e);
    return luaL_error(L, "exit: %s", err);
  }
  size_t len;
  uint8_t *b = mb_enc_finish(&e, &len);
  if (!b) return luaL_error(L, "exit: out of memory");
  mb_exit_signal(rt, self_pid(L), to, b, len);
  free(b);
  lua_pushboolean(L, 1);
  return 1;
}

/* exit(reason): raises an exit error (pcall can catch it; the process ends
 * with reason); exit(pid, reason): an exit signal */
static int l_exit(lua_State *L) {
  if (lua_gettop(L) > 1) return l_exit_signal(L);
  lua_settop(L, 1);
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "reason");
  luaL_setmetatable(L, "moonbeam.exit");
  return lua_error(L);
}

static int l_trap_exit(lua_State *L) {
  mbl_proc_t *lp = mbl_self(L, 0);
  if (lua_gettop(L) != 1) return luaL_error(L, "trap_exit: expected one boolean");
  lua_pushboolean(L, mb_trap_exit(lp->self, lua_toboolean(L, 1)));
  return 1;
}

static int l_register(lua_State *L) {
  mb_runtime_t *rt = mbl_rt(L);
  size_t nl;
  const char *name = luaL_checklstring(L, 1, &nl);
  mb_pid_t pid = lua_isnoneornil(L, 2) ? mb_self(mbl_self(L, 0)->self) : mb_lterm_checkpid(L, 2);
  int r = mb_register_n(rt, name, nl, pid);
  if (r == MB_EINVAL) return luaL_argerror(L, 1, "name must be 1..255 bytes");
  if (r) {
    lua_pushnil(L);
    lua_pushstring(L, r == MB_EEXIST ? "already_registered" : r == MB_ENOPROC ? "noproc" : mb_strerror(r));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_unregister(lua_State *L) {
  size_t nl;
  const char *name = luaL_checklstring(L, 1, &nl);
  int r = mb_unregister_n(mbl_rt(L), name, nl);
  if (r) {
    lua_pushnil(L);
    lua_pushliteral(L, "not_registered");
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_whereis(lua_State *L) {
  size_t nl;
  const char *name = luaL_checklstring(L, 1, &nl);
  mb_pid_t pid = mb_whereis_n(mbl_rt(L), name, nl);
  if (pid) mb_lterm_pushpid(L, pid);
  else lua_pushnil(L);
  return 1;
}

static int l_send_after(lua_State *L) {
  mb_runtime_t *rt = mbl_rt(L);
  uint64_t ms;
  luaL_argcheck(L, mb_timer_ms(luaL_checknumber(L, 1), &ms) == 0, 1, "delay must be >= 0 ms");
  size_t nl = 0;
  const char *nm = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &nl) : NULL;
  mb_pid_t to = nm ? 0 : dest_pid(L, rt, 2, "send_after"); /* a name is resolved at delivery */
  luaL_checkany(L, 3);
  mb_enc_t e;
  char err[256];
  mb_enc_init(&e, mb_runtime_nodes(rt), 0);
  if (mb_lterm_encode(L, 3, &e, "msg", err, sizeof err)) {
    mb_enc_discard(&e);
    return luaL_error(L, "%s", err);
  }
  size_t len;
  uint8_t *b = mb_enc_finish(&e, &len);
  mb_timer_t t = 0;
  int r = !b ? MB_ENOMEM
          : nm ? mb_send_after_name(rt, self_pid(L), nm, nl, ms, b, len, &t)
               : mb_send_after(rt, self_pid(L), to, ms, b, len, &t);
  free(b);
  /* the runtime is stopping: every process is about to end, the timer with it */
  if (r == MB_ESTOPPED) t = 0;
  else if (r) return luaL_error(L, "send_after: %s", mb_strerror(r));
  lua_pushinteger(L, (lua_Integer)t);
  return 1;
}

static int l_cancel_timer(lua_State *L) {
  int64_t left = mb_cancel_timer(mbl_rt(L), (mb_timer_t)luaL_checkinteger(L, 1));
  if (left < 0) lua_pushboolean(L, 0);
  else lua_pushinteger(L, left);
  return 1;
}

/* reply(pid, ref, value): sends {ref, value} as a reply to a gen call */
static int l_reply(lua_State *L) {
  mb_runtime_t *rt = mbl_rt(L);
  mb_pid_t to = mb_lterm_checkpid(L, 1);
  mb_ref_t ref;
  if (!mb_lterm_toref(L, 2, &ref)) return luaL_typeerror(L, 2, "ref");
  luaL_checkany(L, 3);
  mb_enc_t e;
  char err[256];
  mb_enc_init(&e, mb_runtime_nodes(rt), 0);
  mb_enc_tuple(&e, 2);
  mb_enc_ref(&e, ref);
  if (mb_lterm_encode(L, 3, &e, "reply", err, sizeof err)) {
    mb_enc_discard(&e);
    return luaL_error(L, "%s", err);
  }
  size_t len;
  uint8_t *b = mb_enc_finish(&e, &len);
  int r = b ? mb_send_reply(rt, self_pid(L), to, ref, b, len) : MB_ENOMEM;
  free(b);
  if (r) return luaL_error(L, "reply: %s", mb_strerror(r));
  lua_pushboolean(L, 1);
  return 1;
}

/* abandon(ref): a reply tagged ref will be dropped */
static int l_abandon(lua_State *L) {
  mbl_proc_t *lp = mbl_self(L, 0);
  mb_ref_t ref;
  if (!mb_lterm_toref(L, 1, &ref)) return luaL_typeerror(L, 1, "ref");
  mb_abandon_reply(lp->self, ref);
  return 0;
}

/* on_signal(name, [pid], [deadline_ms]): deliver the OS signal as {"signal",
 * name} to pid (the caller by default); on_signal(name, false) restores the
 * default. With deadline_ms, the signal's arrival also arms the runtime's exit
 * deadline from the signal thread (mb_signal_exit_deadline, exit status 1), so
 * a runner whose own VM is stuck in C still ends. */
static int l_on_signal(lua_State *L) {
  static const char *const names[] = {"SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", NULL};
  static const int nums[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  mb_runtime_t *rt = mbl_rt(L);
  int i = luaL_checkoption(L, 1, NULL, names);
  mb_pid_t pid;
  if (lua_isboolean(L, 2) && !lua_toboolean(L, 2)) pid = 0;
  else if (lua_isnoneornil(L, 2)) pid = mb_self(mbl_self(L, 0)->self);
  else pid = mb_lterm_checkpid(L, 2);
  if (!lua_isnoneornil(L, 3)) {
    lua_Number t = luaL_checknumber(L, 3);
    luaL_argcheck(L, t >= 0, 3, "must be >= 0 ms");
    mb_signal_exit_deadline(rt, nums[i], t >= 1.8e19 ? UINT64_MAX : (uint64_t)t, 1);
  }
  mb_signal_notify(rt, nums[i], pid);
  lua_pushboolean(L, 1);
  return 1;
}

/* shutdown_deadline(ms, [code], [what]): if the runtime has not finished
 * ms from now, the watchdog thread logs what did not stop (each process
 * holding a scheduler, each one still alive) and ends the OS process with
 * _exit(code) (default 1); works even when every scheduler is stuck in a C
 * call. ms = nil, false or math.huge disarms it. For a runner's shutdown
 * timeout (application.shutdown_timeout). */
static int l_shutdown_deadline(lua_State *L) {
  mb_runtime_t *rt = mbl_rt(L);
  uint64_t ms = UINT64_MAX;
  if (!lua_isnoneornil(L, 1) && !(lua_isboolean(L, 1) && !lua_toboolean(L, 1))) {
    lua_Number t = luaL_checknumber(L, 1);
    luaL_argcheck(L, t >= 0, 1, "must be >= 0 ms");
    if (t < 1.8e19) ms = (uint64_t)t;
  }
  lua_Integer code = luaL_optinteger(L, 2, 1);
  luaL_argcheck(L, code >= 0 && code <= 255, 2, "exit code must be 0..255");
  const char *what = luaL_optstring(L, 3, NULL);
  int r = mb_runtime_exit_deadline(rt, ms, (int)code, what);
  if (r) return luaL_error(L, "shutdown_deadline: %s", mb_strerror(r));
  lua_pushboolean(L, 1);
  return 1;
}

/* clock(): monotonic seconds (a vDSO read, no system call) */
static int l_clock(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
  return 1;
}

static int l_is_pid(lua_State *L) {
  lua_pushboolean(L, mb_lterm_topid(L, 1) != 0);
  return 1;
}

static int l_make_ref(lua_State *L) {
  mb_lterm_pushref(L, mb_make_ref(mbl_rt(L)));
  return 1;
}

static int l_alive(lua_State *L) {
  lua_pushboolean(L, mb_alive(mbl_rt(L), mb_lterm_checkpid(L, 1)));
  return 1;
}

static const char *status_name(int s) {
  switch (s) {
  case MB_STATUS_RUNNING: return "running";
  case MB_STATUS_WAITING: return "waiting";
  case MB_STATUS_EXITING: return "exiting";
  default: return "runnable";
  }
}

static int l_info(lua_State *L) {
  mb_runtime_t *rt = mbl_rt(L);
  mb_pid_t pid = mb_lterm_checkpid(L, 1);
  mb_proc_info_t info;
  if (mb_proc_info(rt, pid, &info)) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 10);
  lua_pushstring(L, status_name(info.status));
  lua_setfield(L, -2, "status");
  lua_pushinteger(L, (lua_Integer)info.mailbox_len);
  lua_setfield(L, -2, "mailbox_len");
  /* the control block and queue as counted by the core, plus the coroutine */
  lua_pushinteger(L, (lua_Integer)(info.memory + sizeof(mbl_proc_t) + 1000));
  lua_setfield(L, -2, "memory");
  lua_pushinteger(L, (lua_Integer)info.reductions);
  lua_setfield(L, -2, "reductions");
  lua_pushinteger(L, info.scheduler + 1);
  lua_setfield(L, -2, "scheduler");
  lua_pushboolean(L, info.trap_exit);
  lua_setfield(L, -2, "trap_exit");
  lua_pushinteger(L, (lua_Integer)info.monitors);
  lua_setfield(L, -2, "monitors");
  lua_pushinteger(L, (lua_Integer)info.monitored_by);
  lua_setfield(L, -2, "monitored_by");
  if (info.name[0]) {
    lua_pushstring(L, info.name);
    lua_setfield(L, -2, "name");
  }
  mb_pid_t links[256];
  int n = mb_proc_links(rt, pid, links, 256);
  lua_createtable(L, n > 0 ? n : 0, 0);
  for (int i = 0; i < n && i < 256; i++) {
    mb_lterm_pushpid(L, links[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "links");
  return 1;
}

static int l_processes(lua_State *L) {
  mb_runtime_t *rt = mbl_rt(L);
  size_t cap = 1024;
  mb_pid_t *pids = NULL;
  size_t n;
  for (;;) {
    mb_pid_t *np = realloc(pids, cap * sizeof *np);
    if (!np) { free(pids); return luaL_error(L, "out of memory"); }
    pids = np;
    n = mb_processes(rt, pids, cap);
    if (n <= cap) break;
    cap = n + 1024;
  }
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    mb_lterm_pushpid(L, pids[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  free(pids);
  return 1;
}

static void push_stats(lua_State *L, const mb_stats_t *s) {
  lua_createtable(L, 0, 11);
#define F(name) lua_pushinteger(L, (lua_Integer)s->name); lua_setfield(L, -2, #name);
  F(processes) F(spawned) F(exited) F(sent) F(received) F(reductions) F(runs) F(runq)
  F(busy_ns) F(idle_ns) F(memory)
#undef F
}

static int l_stats(lua_State *L) {
  mb_runtime_t *rt = mbl_rt(L);
  mb_stats_t s;
  mb_runtime_stats(rt, -1, &s);
  push_stats(L, &s);
  int n = mb_runtime_schedulers(rt);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    mb_runtime_stats(rt, i, &s);
    push_stats(L, &s);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "schedulers");
  return 1;
}

static int l_schedulers(lua_State *L) {
  lua_pushinteger(L, mb_runtime_schedulers(mbl_rt(L)));
  return 1;
}

static int l_scheduler(lua_State *L) {
  mbl_vm_t *vm = mbl_vm(L);
  if (!vm) return luaL_error(L, "moonbeam is not running");
  lua_pushinteger(L, vm->sched + 1);
  return 1;
}

static int l_subscribe(lua_State *L) {
  mb_runtime_t *rt = mbl_rt(L);
  size_t tl;
  const char *topic = luaL_checklstring(L, 1, &tl);
  mb_pid_t pid = lua_isnoneornil(L, 2) ? mb_self(mbl_self(L, 0)->self) : mb_lterm_checkpid(L, 2);
  int r = mb_subscribe_n(rt, topic, tl, pid);
  if (r) {
    lua_pushnil(L);
    lua_pushstring(L, r == MB_ENOPROC ? "noproc" : mb_strerror(r));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_unsubscribe(lua_State *L) {
  mb_runtime_t *rt = mbl_rt(L);
  size_t tl;
  const char *topic = luaL_checklstring(L, 1, &tl);
  mb_pid_t pid = lua_isnoneornil(L, 2) ? mb_self(mbl_self(L, 0)->self) : mb_lterm_checkpid(L, 2);
  mb_unsubscribe_n(rt, topic, tl, pid);
  lua_pushboolean(L, 1);
  return 1;
}

/* broadcast(topic, msg, [skip_pid]) -> number delivered */
static int l_broadcast(lua_State *L) {
  mb_runtime_t *rt = mbl_rt(L);
  size_t tl;
  const char *topic = luaL_checklstring(L, 1, &tl);
  luaL_checkany(L, 2);
  mb_pid_t skip = lua_isnoneornil(L, 3) ? 0 : mb_lterm_checkpid(L, 3);
  mb_enc_t e;
  char err[256];
  mb_enc_init(&e, mb_runtime_nodes(rt), 0);
  if (mb_lterm_encode(L, 2, &e, "msg", err, sizeof err)) {
    mb_enc_discard(&e);
    return luaL_error(L, "%s", err);
  }
  size_t len;
  uint8_t *b = mb_enc_finish(&e, &len);
  int n = b ? mb_broadcast_n(rt, self_pid(L), topic, tl, skip, b, len) : MB_ENOMEM;
  free(b);
  if (n < 0) return luaL_error(L, "broadcast: %s", mb_strerror(n));
  lua_pushinteger(L, n);
  return 1;
}

static int l_subscribers(lua_State *L) {
  size_t tl;
  const char *topic = luaL_checklstring(L, 1, &tl);
  lua_pushinteger(L, mb_subscribers_n(mbl_rt(L), topic, tl));
  return 1;
}

/* runtime_handle() -> lightuserdata: the running runtime's mb_runtime_t *, for
 * a host that also uses the C API on it (a C host, moonbeam.ffi's attach). A
 * pid userdata holds its mb_pid_t as its payload (lua_touserdata, ffi.cast). */
static int l_runtime_handle(lua_State *L) {
  lua_pushlightuserdata(L, mbl_rt(L));
  return 1;
}

static const luaL_Reg funcs[] = {
  {"runtime_handle", l_runtime_handle},
  {"run", mbl_run}, {"start", mbl_start}, {"step", mbl_step}, {"stop", mbl_stop},
  {"spawn_opt", mbl_spawn_opt}, {"receive", mbl_receive}, {"call", mbl_call},
  {"spawn", mbl_spawn}, {"spawn_link", mbl_spawn_link}, {"spawn_monitor", mbl_spawn_monitor},
  {"flush", mbl_flush}, {"sleep", mbl_sleep}, {"exit", l_exit},
  {"self", l_self}, {"send", l_send},
  {"link", l_link}, {"unlink", l_unlink}, {"monitor", l_monitor}, {"demonitor", l_demonitor},
  {"exit_signal", l_exit_signal}, {"trap_exit", l_trap_exit},
  {"register", l_register}, {"unregister", l_unregister}, {"whereis", l_whereis},
  {"send_after", l_send_after}, {"cancel_timer", l_cancel_timer},
  {"make_ref", l_make_ref}, {"is_pid", l_is_pid}, {"reply", l_reply}, {"clock", l_clock}, {"shutdown_deadline", l_shutdown_deadline}, {"on_signal", l_on_signal}, {"abandon", l_abandon}, {"alive", l_alive}, {"info", l_info}, {"processes", l_processes},
  {"stats", l_stats}, {"schedulers", l_schedulers}, {"scheduler", l_scheduler},
  {"subscribe", l_subscribe}, {"unsubscribe", l_unsubscribe}, {"broadcast", l_broadcast},
  {"subscribers", l_subscribers},
  {"set_crash_handler", mbl_set_crash_handler},
  {"atom", mb_lterm_atom}, {"tuple", mb_lterm_tuple}, {"pack", mbl_l_pack}, {"unpack", mbl_l_unpack},
  {NULL, NULL}
};

int luaopen_moonbeam_core(lua_State *L) {
  mb_lterm_open(L, NULL);
  luaL_newlibtable(L, funcs);
  mbl_push_box(L);
  luaL_getmetatable(L, MB_LTERM_PID);
  ((mbl_box_t *)lua_touserdata(L, -2))->pid_mt = lua_topointer(L, -1);
  lua_pop(L, 1);
  luaL_setfuncs(L, funcs, 1);
  mbl_open_io(L); /* ports: lport.c */
  mbl_open_sysio(L);
  luaL_newmetatable(L, "moonbeam.exit");
  lua_setfield(L, -2, "exit_mt");
  mbl_open_http(L);
  return 1;
}
