/* ltcp.c: the Lua binding of TCP ports (moonbeam.tcp builds on these).
 * Errors in normal operation are nil, reason (gen_tcp's atoms as strings:
 * "closed", "timeout", "econnrefused"); misuse (a bad option) raises. */
#include <stdlib.h>
#include <string.h>
#include "io/io.h"
#include "lmb.h"
#include "lport.h"
#include "lterm.h"

static const mb_port_type_t *const sock_types[] = {&mb_tcp_type, NULL};
static const mb_port_type_t *const listen_types[] = {&mb_tcp_listen_type, NULL};
static const mb_port_type_t *const any_types[] = {&mb_tcp_type, &mb_tcp_listen_type, NULL};

static int push_fail(lua_State *L, const char *why) {
  lua_pushnil(L);
  lua_pushstring(L, why);
  return 2;
}

static int push_uverr(lua_State *L, int err) {
  char name[32];
  return push_fail(L, mb_port_errname(err, name, sizeof name));
}

static size_t opt_size(lua_State *L, const char *k) {
  int isnum;
  lua_Integer v = lua_tointegerx(L, -1, &isnum);
  if (!isnum || v < 0) luaL_error(L, "option %s must be an integer >= 0", k);
  return (size_t)v;
}

/* Reads the option table at idx into o (on top of its defaults). */
void mbl_sockopts(lua_State *L, int idx, mb_sockopts_t *o) {
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "options are named (got a %s key)", luaL_typename(L, -2));
    const char *k = lua_tostring(L, -2);
    int t = lua_type(L, -1);
    if (!strcmp(k, "active")) {
      o->set |= MB_SO_ACTIVE;
      o->once = 0;
      if (t == LUA_TBOOLEAN) o->active = lua_toboolean(L, -1) ? MB_ACTIVE_TRUE : 0;
      else if (t == LUA_TSTRING && !strcmp(lua_tostring(L, -1), "once")) o->active = 1, o->once = 1;
      else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= -32767 && lua_tointeger(L, -1) <= 32767)
        o->active = (int)lua_tointeger(L, -1);
      else luaL_error(L, "option active must be true, false, \"once\" or an integer in -32767..32767");
    } else if (!strcmp(k, "packet")) {
      o->set |= MB_SO_PACKET;
      if (t == LUA_TSTRING && !strcmp(lua_tostring(L, -1), "raw")) o->packet = 0;
      else if (t == LUA_TSTRING && !strcmp(lua_tostring(L, -1), "line")) o->packet = MB_PACKET_LINE;
      else if (lua_isinteger(L, -1) && (lua_tointeger(L, -1) == 0 || lua_tointeger(L, -1) == 1 ||
                                        lua_tointeger(L, -1) == 2 || lua_tointeger(L, -1) == 4))
        o->packet = (int)lua_tointeger(L, -1);
      else luaL_error(L, "option packet must be \"raw\", 1, 2, 4 or \"line\"");
    } else if (!strcmp(k, "nodelay")) {
      o->set |= MB_SO_NODELAY;
      o->nodelay = lua_toboolean(L, -1);
    } else if (!strcmp(k, "keepalive")) {
      o->set |= MB_SO_KEEPALIVE;
      o->keepalive = lua_toboolean(L, -1);
    } else if (!strcmp(k, "reuseaddr")) {
      o->set |= MB_SO_REUSEADDR;
      o->reuseaddr = lua_toboolean(L, -1);
    } else if (!strcmp(k, "reuseport")) {
      o->set |= MB_SO_REUSEPORT;
      o->reuseport = lua_toboolean(L, -1);
    } else if (!strcmp(k, "broadcast")) {
      o->set |= MB_SO_BROADCAST;
      o->broadcast = lua_toboolean(L, -1);
    } else if (!strcmp(k, "multicast_loop")) {
      o->set |= MB_SO_MULTICAST_LOOP;
      o->multicast_loop = lua_toboolean(L, -1);
    } else if (!strcmp(k, "multicast_ttl")) {
      o->set |= MB_SO_MULTICAST_TTL;
      o->multicast_ttl = (int)opt_size(L, k);
    } else if (!strcmp(k, "ipv6_v6only")) {
      o->set |= MB_SO_IPV6ONLY;
      o->ipv6only = lua_toboolean(L, -1);
    } else if (!strcmp(k, "ipv6") || !strcmp(k, "inet6")) {
      if (lua_toboolean(L, -1)) o->family = 6;
    } else if (!strcmp(k, "ipv4") || !strcmp(k, "inet")) {
      if (lua_toboolean(L, -1)) o->family = 4;
    } else if (!strcmp(k, "buffer")) {
      o->set |= MB_SO_BUFFER;
      o->buffer = opt_size(L, k);
      if (o->buffer == 0) luaL_error(L, "option buffer must be > 0");
    } else if (!strcmp(k, "backlog")) {
      o->set |= MB_SO_BACKLOG;
      o->backlog = (int)opt_size(L, k);
    } else if (!strcmp(k, "high_watermark")) {
      o->set |= MB_SO_HIGH_WATERMARK;
      o->high_watermark = opt_size(L, k);
    } else if (!strcmp(k, "low_watermark")) {
      o->set |= MB_SO_LOW_WATERMARK;
      o->low_watermark = opt_size(L, k);
    } else if (!strcmp(k, "packet_size")) {
      o->set |= MB_SO_PACKET_SIZE;
      o->packet_size = opt_size(L, k);
    } else if (!strcmp(k, "address") || !strcmp(k, "ip") || !strcmp(k, "ifaddr")) {
      size_t n;
      const char *a = luaL_checklstring(L, -1, &n);
      if (n >= sizeof o->address) luaL_error(L, "option %s is too long", k);
      memcpy(o->address, a, n + 1);
    } else {
      luaL_error(L, "unknown socket option '%s'", k);
    }
    lua_pop(L, 1);
  }
}

static int64_t opt_timeout(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return -1;
  lua_Number t = luaL_checknumber(L, idx);
  luaL_argcheck(L, t >= 0, idx, "timeout must be >= 0 ms");
  return (int64_t)t;
}

/* tcp_listen(port, opts[, tls_context]) -> listener | nil, reason */
static int l_listen(lua_State *L) {
  lua_Integer port = luaL_checkinteger(L, 1);
  luaL_argcheck(L, port >= 0 && port <= 65535, 1, "port must be 0..65535");
  mb_sockopts_t o;
  mb_sockopts_default(&o);
  mbl_sockopts(L, 2, &o);
  mb_tls_ctx_t *tls = mbl_tls_optctx(L, 3);
  mbl_proc_t *lp = mbl_self(L, 0);
  mb_port_t *p;
  int r = mb_tcp_listen(mb_proc_runtime(lp->self), mb_self(lp->self), (int)port, &o, tls, &p);
  if (r) return push_uverr(L, r);
  mbl_port_push(L, p);
  mb_port_unref(p);
  return 1;
}

/* tcp_accept(listener, timeout) -> socket | nil, reason */
static int l_accept(lua_State *L) {
  mb_port_t *p = mbl_port_check(L, 1, listen_types);
  int64_t timeout = opt_timeout(L, 2);
  if (!p) return push_fail(L, "closed");
  mbl_proc_t *lp = mbl_self(L, 1);
  if (!mb_port_loop(mb_proc_runtime(lp->self))) return push_fail(L, "enomem"); /* our loop adopts it */
  mb_port_cmd_t *c = mbl_port_cmd(L, MB_TCP_ACCEPT);
  c->arg[1] = timeout;
  return mbl_port_run(L, p, c);
}

/* tcp_connect(host, port, opts, timeout[, tls_context, server_name]) -> socket | nil, reason */
static int l_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  luaL_argcheck(L, port > 0 && port <= 65535, 2, "port must be 1..65535");
  mb_sockopts_t o;
  mb_sockopts_default(&o);
  o.set = 0;
  mbl_sockopts(L, 3, &o);
  int64_t timeout = opt_timeout(L, 4);
  mb_tls_ctx_t *tls = mbl_tls_optctx(L, 5);
  const char *sni = luaL_optstring(L, 6, NULL);
  mb_port_cmd_t *c = mbl_port_cmd(L, 0);
  mbl_port_prepare_wait(L, c->ref);
  int r = mb_tcp_connect(c, host, (int)port, &o, timeout, tls, sni);
  return mbl_port_finish(L, c, r);
}

/* tcp_send(socket, data) -> true | nil, reason */
static int l_send(lua_State *L) {
  mb_port_t *p = mbl_port_check(L, 1, sock_types);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (!p) return push_fail(L, "closed");
  mb_port_cmd_t *c = mbl_port_cmd(L, MB_TCP_SEND);
  c->data = (const uint8_t *)data;
  c->len = len;
  return mbl_port_run(L, p, c);
}

/* tcp_sendfile(socket, head, path, offset, length) -> true | nil, reason: the
 * head bytes, then the file's range with sendfile(2) (see io/sendfile.h).
 * "enotsup" for TLS sockets (nothing sent: the caller reads and sends);
 * "changed" / "enoent" / "eisdir" before anything is sent; "truncated" when
 * the file shrank mid-send (the connection must be closed). */
static int l_sendfile(lua_State *L) {
  mb_port_t *p = mbl_port_check(L, 1, sock_types);
  size_t hl, pl;
  const char *head = luaL_checklstring(L, 2, &hl);
  const char *path = luaL_checklstring(L, 3, &pl);
  lua_Integer off = luaL_checkinteger(L, 4), len = luaL_checkinteger(L, 5);
  luaL_argcheck(L, off >= 0, 4, "offset must be >= 0");
  luaL_argcheck(L, len >= 0, 5, "length must be >= 0");
  luaL_argcheck(L, pl > 0 && pl < 4096 && strlen(path) == pl, 3, "bad path");
  if (!p) return push_fail(L, "closed");
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_concat(L, 2); /* one bytes argument: head .. path (kept on the stack) */
  size_t n;
  const char *data = lua_tolstring(L, -1, &n);
  mb_port_cmd_t *c = mbl_port_cmd(L, MB_TCP_SENDFILE);
  c->data = (const uint8_t *)data;
  c->len = n;
  c->arg[0] = off;
  c->arg[1] = len;
  c->arg[2] = (int64_t)hl;
  (void)head;
  return mbl_port_run(L, p, c);
}

/* tcp_recv(socket, length, timeout) -> data | nil, reason */
static int l_recv(lua_State *L) {
  mb_port_t *p = mbl_port_check(L, 1, sock_types);
  lua_Integer len = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, len >= 0, 2, "length must be >= 0");
  int64_t timeout = opt_timeout(L, 3);
  if (!p) return push_fail(L, "closed");
  mb_port_cmd_t *c = mbl_port_cmd(L, MB_TCP_RECV);
  c->arg[0] = len;
  c->arg[1] = timeout;
  return mbl_port_run(L, p, c);
}

/* tcp_setopts(socket | listener, opts) -> true | nil, reason */
static int l_setopts(lua_State *L) {
  mb_port_t *p = mbl_port_check(L, 1, any_types);
  mb_sockopts_t tmp;
  memset(&tmp, 0, sizeof tmp);
  mbl_sockopts(L, 2, &tmp); /* may raise: nothing is allocated yet */
  if (!p) return push_fail(L, "closed");
  mb_sockopts_t *o = malloc(sizeof *o);
  if (!o) return luaL_error(L, "out of memory");
  *o = tmp;
  mb_port_cmd_t *c = mbl_port_cmd(L, MB_TCP_SETOPTS);
  c->extra = o;
  c->extra_free = free;
  return mbl_port_run(L, p, c);
}

static int simple(lua_State *L, const mb_port_type_t *const *types, int op) {
  mb_port_t *p = mbl_port_check(L, 1, types);
  if (!p) return push_fail(L, "closed");
  return mbl_port_run(L, p, mbl_port_cmd(L, op));
}

static int l_getopts(lua_State *L) { return simple(L, sock_types, MB_TCP_GETOPTS); }
static int l_peername(lua_State *L) { return simple(L, sock_types, MB_TCP_PEERNAME); }
static int l_sockname(lua_State *L) { return simple(L, any_types, MB_TCP_SOCKNAME); }
static int l_stats(lua_State *L) { return simple(L, sock_types, MB_TCP_STATS); }

/* tcp_shutdown(socket, "read" | "write" | "read_write") */
static int l_shutdown(lua_State *L) {
  static const char *const hows[] = {"read", "write", "read_write", NULL};
  mb_port_t *p = mbl_port_check(L, 1, sock_types);
  int how = luaL_checkoption(L, 2, "write", hows) + 1;
  if (!p) return push_fail(L, "closed");
  mb_port_cmd_t *c = mbl_port_cmd(L, MB_TCP_SHUTDOWN);
  c->arg[0] = how;
  return mbl_port_run(L, p, c);
}

/* dns_resolve(host, family) -> {addr, ...} | nil, reason */
static int l_resolve(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer fam = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, fam == 0 || fam == 4 || fam == 6, 2, "family must be 4, 6 or nil");
  mb_port_cmd_t *c = mbl_port_cmd(L, 0);
  mbl_port_prepare_wait(L, c->ref);
  int r = mb_dns_resolve(c, host, (int)fam);
  return mbl_port_finish(L, c, r);
}

void mbl_open_tcp(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"tcp_listen", l_listen},     {"tcp_accept", l_accept},     {"tcp_connect", l_connect},
      {"tcp_send", l_send},         {"tcp_sendfile", l_sendfile},         {"tcp_recv", l_recv},         {"tcp_setopts", l_setopts},
      {"tcp_getopts", l_getopts},   {"tcp_peername", l_peername}, {"tcp_sockname", l_sockname},
      {"tcp_shutdown", l_shutdown}, {"tcp_stats", l_stats},       {"dns_resolve", l_resolve},
      {NULL, NULL}};
  mbl_push_box(L);
  luaL_setfuncs(L, fns, 1);
}
