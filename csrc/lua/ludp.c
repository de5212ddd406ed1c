/* ludp.c: the Lua binding of UDP ports (moonbeam.udp builds on these). */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "io/io.h"
#include "lmb.h"
#include "lport.h"

static const mb_port_type_t *const udp_types[] = {&mb_udp_type, NULL};

static int push_fail(lua_State *L, const char *why) {
  lua_pushnil(L);
  lua_pushstring(L, why);
  return 2;
}

/* udp_open(port, opts) -> sock | nil, reason */
static int l_open(lua_State *L) {
  lua_Integer port = luaL_optinteger(L, 1, 0);
  luaL_argcheck(L, port >= 0 && port <= 65535, 1, "port must be 0..65535");
  mb_sockopts_t o;
  mb_sockopts_default(&o);
  o.set = 0;
  mbl_sockopts(L, 2, &o);
  mbl_proc_t *lp = mbl_self(L, 0);
  mb_port_t *p;
  int r = mb_udp_open(mb_proc_runtime(lp->self), mb_self(lp->self), (int)port, &o, &p);
  if (r) {
    char name[32];
    return push_fail(L, mb_port_errname(r, name, sizeof name));
  }
  mbl_port_push(L, p);
  mb_port_unref(p);
  return 1;
}

/* udp_send(sock, ip, port, data) -> true | nil, reason */
static int l_send(lua_State *L) {
  mb_port_t *p = mbl_port_check(L, 1, udp_types);
  const char *ip = luaL_checkstring(L, 2);
  lua_Integer port = luaL_checkinteger(L, 3);
  luaL_argcheck(L, port > 0 && port <= 65535, 3, "port must be 1..65535");
  size_t len;
  const char *data = luaL_checklstring(L, 4, &len);
  if (!p) return push_fail(L, "closed");
  struct sockaddr_storage *to = malloc(sizeof *to);
  if (!to) return luaL_error(L, "out of memory");
  if (mb_sockaddr_parse(ip, (int)port, 0, to)) {
    free(to);
    return push_fail(L, "einval");
  }
  mb_port_cmd_t *c = mbl_port_cmd(L, MB_UDP_SEND);
  c->extra = to;
  c->extra_free = free;
  c->data = (const uint8_t *)data;
  c->len = len;
  return mbl_port_run(L, p, c);
}

/* udp_recv(sock, timeout) -> ip, port, data | nil, reason */
static int l_recv(lua_State *L) {
  mb_port_t *p = mbl_port_check(L, 1, udp_types);
  int64_t timeout = -1;
  if (!lua_isnoneornil(L, 2)) {
    lua_Number t = luaL_checknumber(L, 2);
    luaL_argcheck(L, t >= 0, 2, "timeout must be >= 0 ms");
    timeout = (int64_t)t;
  }
  if (!p) return push_fail(L, "closed");
  mb_port_cmd_t *c = mbl_port_cmd(L, MB_UDP_RECV);
  c->arg[1] = timeout;
  return mbl_port_run(L, p, c);
}

static int l_setopts(lua_State *L) {
  mb_port_t *p = mbl_port_check(L, 1, udp_types);
  mb_sockopts_t tmp;
  memset(&tmp, 0, sizeof tmp);
  mbl_sockopts(L, 2, &tmp);
  if (!p) return push_fail(L, "closed");
  mb_sockopts_t *o = malloc(sizeof *o);
  if (!o) return luaL_error(L, "out of memory");
  *o = tmp;
  mb_port_cmd_t *c = mbl_port_cmd(L, MB_UDP_SETOPTS);
  c->extra = o;
  c->extra_free = free;
  return mbl_port_run(L, p, c);
}

static int simple(lua_State *L, int op) {
  mb_port_t *p = mbl_port_check(L, 1, udp_types);
  if (!p) return push_fail(L, "closed");
  return mbl_port_run(L, p, mbl_port_cmd(L, op));
}
static int l_getopts(lua_State *L) { return simple(L, MB_UDP_GETOPTS); }
static int l_sockname(lua_State *L) { return simple(L, MB_UDP_SOCKNAME); }

/* udp_membership(sock, group, interface, join) */
static int l_membership(lua_State *L) {
  mb_port_t *p = mbl_port_check(L, 1, udp_types);
  size_t gl, il;
  const char *g = luaL_checklstring(L, 2, &gl);
  const char *i = luaL_optlstring(L, 3, "", &il);
  int join = lua_toboolean(L, 4);
  if (!p) return push_fail(L, "closed");
  lua_pushlstring(L, g, gl);
  lua_pushlstring(L, "\0", 1);
  lua_pushlstring(L, i, il);
  lua_concat(L, 3);
  size_t len;
  const char *both = lua_tolstring(L, -1, &len);
  mb_port_cmd_t *c = mbl_port_cmd(L, MB_UDP_MEMBERSHIP);
  c->data = (const uint8_t *)both;
  c->len = len + 1; /* with the final NUL */
  c->arg[0] = join;
  return mbl_port_run(L, p, c);
}

void mbl_open_udp(lua_State *L) {
  static const luaL_Reg fns[] = {{"udp_open", l_open},         {"udp_send", l_send},
                                 {"udp_recv", l_recv},         {"udp_setopts", l_setopts},
                                 {"udp_getopts", l_getopts},   {"udp_sockname", l_sockname},
                                 {"udp_membership", l_membership}, {NULL, NULL}};
  mbl_push_box(L);
  luaL_setfuncs(L, fns, 1);
}
