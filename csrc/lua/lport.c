/* lport.c: ports as Lua values, and running a port command from a process.
 *
 * A port value is a full userdata {id, port} with metatable moonbeam.port,
 * interned per VM (a weak-valued cache by id, as pids), so equal ports are the
 * same value and work as table keys; it holds a reference on the C port while
 * it lives (none for a port that was already closed or is remote).
 *
 * A command (mbl_port_run) runs at once when the port lives on the caller's
 * thread and can answer now; otherwise the process waits, as a gen call does,
 * for the reply tagged with the command's ref, scanning only messages queued
 * since the command and reading their headers only. Every command gets exactly
 * one reply (the port keeps its own timeouts), so nothing is abandoned. */
#include <stdlib.h>
#include <string.h>
#include "io/port.h"
#include "lmb.h"
#include "lport.h"
#include "lterm.h"

static const char k_ports = 0;

typedef struct port_ud {
  uint64_t id;
  mb_port_t *p; /* a reference, or NULL */
} port_ud;

static int port_gc(lua_State *L) {
  port_ud *u = luaL_checkudata(L, 1, MBL_PORT_MT);
  if (u->p) mb_port_unref(u->p);
  u->p = NULL;
  return 0;
}

static int port_tostring(lua_State *L) {
  port_ud *u = luaL_checkudata(L, 1, MBL_PORT_MT);
  lua_pushfstring(L, "#Port<%d.%I>", (int)(u->id >> 56), (lua_Integer)(u->id & 0x00ffffffffffffffull));
  return 1;
}

static int port_eq(lua_State *L) {
  port_ud *a = luaL_testudata(L, 1, MBL_PORT_MT), *b = luaL_testudata(L, 2, MBL_PORT_MT);
  lua_pushboolean(L, a && b && a->id == b->id);
  return 1;
}

static void push_cache(lua_State *L) { mbl_push_weak(L, &k_ports, "v"); }

static void ensure_mt(lua_State *L) {
  if (luaL_newmetatable(L, MBL_PORT_MT)) {
    static const luaL_Reg fns[] = {
        {"__gc", port_gc}, {"__tostring", port_tostring}, {"__eq", port_eq}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
    lua_pushliteral(L, "port");
    lua_setfield(L, -2, "__type");
  }
  lua_pop(L, 1);
}

/* Pushes the value for id; p (a reference is taken) when known, else looked up. */
static void push_port(lua_State *L, uint64_t id, mb_port_t *p) {
  push_cache(L);
  if (lua_rawgeti(L, -1, (lua_Integer)id) == LUA_TUSERDATA) {
    port_ud *u = lua_touserdata(L, -1);
    if (!u->p && p) { /* a value made while the port was unknown here */
      mb_port_ref(p);
      u->p = p;
    }
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  ensure_mt(L);
  port_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->id = id;
  u->p = NULL;
  luaL_setmetatable(L, MBL_PORT_MT);
  if (p) {
    mb_port_ref(p);
    u->p = p;
  } else if (id >> 56 == 0) {
    mbl_vm_t *vm = mbl_vm(L);
    if (vm) u->p = mb_port_lookup(vm->brt->rt, id);
  }
  lua_pushvalue(L, -1);
  lua_rawseti(L, -3, (lua_Integer)id);
  lua_remove(L, -2);
}

void mbl_port_push(lua_State *L, mb_port_t *p) { push_port(L, p->id, p); }
void mbl_port_push_id(lua_State *L, uint64_t id) { push_port(L, id, NULL); }

int mbl_port_is(lua_State *L, int idx, uint64_t *id) {
  port_ud *u = luaL_testudata(L, idx, MBL_PORT_MT);
  if (u && id) *id = u->id;
  return u != NULL;
}

mb_port_t *mbl_port_check(lua_State *L, int idx, const mb_port_type_t *const *types) {
  port_ud *u = luaL_testudata(L, idx, MBL_PORT_MT);
  if (!u) luaL_typeerror(L, idx, "port");
  if (!u->p) return NULL;
  if (types) {
    for (; *types; types++)
      if (u->p->type == *types) return u->p;
    return luaL_argerror(L, idx, lua_pushfstring(L, "wrong kind of port (%s)", u->p->type->name)), NULL;
  }
  return u->p;
}

/* Pushes the values of the result tuple in data[0..len) and frees tofree;
 * returns how many (raises after freeing on a malformed result). */
static int push_result(lua_State *L, const uint8_t *data, size_t len, void *tofree,
                       void (*release)(void *)) {
  mb_dec_t d;
  uint32_t n;
  int bad = mb_dec_init(&d, mb_lterm_nodes(L), data, len) || mb_dec_tuple(&d, &n);
  lua_settop(L, 0);
  if (!bad && !lua_checkstack(L, (int)n + 2)) bad = 1;
  for (uint32_t i = 0; !bad && i < n; i++) bad = mb_lterm_decode(L, &d) != 0;
  release(tofree);
  if (bad) return luaL_error(L, "port: malformed result");
  return (int)n;
}

static void release_msg(void *m) { mb_msg_free(m); }

static int wait_k(lua_State *L, int status, lua_KContext ctx);

static int wait_reply(lua_State *L, mbl_proc_t *lp) {
  const mb_msg_t *m;
  mb_ref_t tag;
  while ((m = mb_mailbox_next(lp->self))) {
    if (mb_msg_kind(m, &tag) != MB_MSG_REPLY || !mb_ref_equal(tag, lp->await_ref)) continue;
    mb_msg_t *msg = mb_mailbox_take(lp->self);
    size_t len;
    const uint8_t *data = mb_msg_data(msg, &len);
    return push_result(L, data, len, msg, release_msg);
  }
  mb_proc_set_timeout(lp->self, -1);
  lp->yield_why = MBL_YIELD_WAIT;
  return lua_yieldk(L, 0, 0, wait_k);
}

static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return wait_reply(L, mbl_self(L, 1));
}

mb_port_cmd_t *mbl_port_cmd(lua_State *L, int op) {
  mbl_proc_t *lp = mbl_self(L, 1); /* it may have to wait: the process itself */
  mb_runtime_t *rt = mb_proc_runtime(lp->self);
  mb_port_cmd_t *c = mb_port_cmd_new(rt, op, mb_self(lp->self), mb_make_ref(rt));
  if (!c) luaL_error(L, "out of memory");
  return c;
}

int mbl_port_finish(lua_State *L, mb_port_cmd_t *c, int r) {
  if (r == MB_PORT_DONE) {
    size_t len;
    uint8_t *block = mb_enc_finish(&c->res, &len);
    mb_port_cmd_free(c);
    if (!block) return luaL_error(L, "port: out of memory");
    size_t pre = mb_msg_prefix();
    return push_result(L, block + pre, len - pre, block, free);
  }
  /* pending: the reply will come tagged with the ref (c belongs to the port now) */
  return wait_reply(L, mbl_self(L, 1));
}

int mbl_port_run(lua_State *L, mb_port_t *p, mb_port_cmd_t *c) {
  mbl_proc_t *lp = mbl_self(L, 0);
  lp->await_ref = c->ref;
  mb_mailbox_mark(lp->self);
  mb_mailbox_rewind(lp->self);
  int r = mb_port_submit(p, c);
  return mbl_port_finish(L, c, r);
}

void mbl_port_prepare_wait(lua_State *L, mb_ref_t ref) {
  mbl_proc_t *lp = mbl_self(L, 0);
  lp->await_ref = ref;
  mb_mailbox_mark(lp->self);
  mb_mailbox_rewind(lp->self);
}

int mbl_port_encode(lua_State *L, int idx, mb_enc_t *e) {
  port_ud *u = luaL_testudata(L, idx, MBL_PORT_MT);
  if (!u) return MB_EINVAL;
  return mb_enc_port(e, u->id);
}

/* ---- generic functions: port.close, port.owner, port.controlling_process ---- */

static int l_port_close(lua_State *L) {
  mb_port_t *p = mbl_port_check(L, 1, NULL);
  if (!p || !mb_port_is_open(p)) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  mb_port_close(p);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_port_owner(lua_State *L) {
  mb_port_t *p = mbl_port_check(L, 1, NULL);
  if (!p || !mb_port_is_open(p)) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  mb_lterm_pushpid(L, mb_port_owner(p));
  return 1;
}

/* port_set_owner(port, pid): the caller must own the port (Erlang's not_owner). */
static int l_port_set_owner(lua_State *L) {
  mb_port_t *p = mbl_port_check(L, 1, NULL);
  mb_pid_t to = mb_lterm_checkpid(L, 2);
  mbl_proc_t *lp = mbl_self(L, 0);
  if (!p || !mb_port_is_open(p)) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  if (mb_port_owner(p) != mb_self(lp->self)) {
    lua_pushnil(L);
    lua_pushliteral(L, "not_owner");
    return 2;
  }
  int r = mb_port_set_owner(p, to);
  if (r) {
    lua_pushnil(L);
    lua_pushstring(L, r == MB_ENOPROC ? "noproc" : "closed");
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_port_info(lua_State *L) {
  port_ud *u = luaL_checkudata(L, 1, MBL_PORT_MT);
  if (!u->p || !mb_port_is_open(u->p)) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  lua_createtable(L, 0, 3);
  lua_pushstring(L, u->p->type->name);
  lua_setfield(L, -2, "type");
  mb_lterm_pushpid(L, mb_port_owner(u->p));
  lua_setfield(L, -2, "owner");
  lua_pushinteger(L, (lua_Integer)(u->id & 0x00ffffffffffffffull));
  lua_setfield(L, -2, "id");
  return 1;
}

static int l_is_port(lua_State *L) {
  lua_pushboolean(L, mbl_port_is(L, 1, NULL));
  return 1;
}

void mbl_open_io(lua_State *L) {
  static const luaL_Reg fns[] = {{"port_close", l_port_close},
                                 {"port_owner", l_port_owner},
                                 {"port_set_owner", l_port_set_owner},
                                 {"port_info", l_port_info},
                                 {"is_port", l_is_port},
                                 {NULL, NULL}};
  ensure_mt(L);
  /* the module table is at -1 and the box is its shared upvalue */
  mbl_push_box(L);
  luaL_setfuncs(L, fns, 1);
  mbl_open_tcp(L);
  mbl_open_udp(L);
  mbl_open_tls(L);
}
