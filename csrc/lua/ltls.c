/* ltls.c: TLS contexts as Lua values (moonbeam.tls builds on these and on
 * the TCP functions, which take a context). */
#include <stdlib.h>
#include <string.h>
#include "io/io.h"
#include "io/tls.h"
#include "lmb.h"
#include "lport.h"

#define CTX_MT "moonbeam.tls_context"

typedef struct ctx_ud {
  mb_tls_ctx_t *ctx;
} ctx_ud;

static int ctx_gc(lua_State *L) {
  ctx_ud *u = luaL_checkudata(L, 1, CTX_MT);
  mb_tls_ctx_unref(u->ctx);
  u->ctx = NULL;
  return 0;
}

static const char *opt_str(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  const char *s = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
  lua_pop(L, 1); /* the table keeps the string alive */
  return s;
}

/* tls_context(opts, server) -> context | nil, reason */
static int l_context(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int server = lua_toboolean(L, 2);
  mb_tls_opts_t o;
  memset(&o, 0, sizeof o);
  lua_getfield(L, 1, "verify");
  o.verify = lua_isnil(L, -1) ? !server : lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, 1, "verify_peer");
  o.verify_peer = lua_toboolean(L, -1);
  if (o.verify_peer) o.verify = 1;
  lua_pop(L, 1);
  o.certfile = opt_str(L, 1, "certfile");
  o.keyfile = opt_str(L, 1, "keyfile");
  o.cafile = opt_str(L, 1, "cafile");
  lua_getfield(L, 1, "alpn");
  if (!lua_isnil(L, -1)) {
    luaL_checktype(L, -1, LUA_TTABLE);
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) != LUA_TNIL; i++) {
      size_t n;
      const char *p = luaL_checklstring(L, -1, &n);
      if (n == 0 || n > 255 || o.alpn_len + 1 + n > sizeof o.alpn) luaL_error(L, "alpn: bad protocol name");
      o.alpn[o.alpn_len++] = (unsigned char)n;
      memcpy(o.alpn + o.alpn_len, p, n);
      o.alpn_len += (unsigned)n;
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  char err[256];
  mb_tls_ctx_t *c = mb_tls_ctx_new(server, &o, err, sizeof err);
  if (!c) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  ctx_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->ctx = c;
  if (luaL_newmetatable(L, CTX_MT)) {
    lua_pushcfunction(L, ctx_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return 1;
}

mb_tls_ctx_t *mbl_tls_optctx(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return NULL;
  ctx_ud *u = luaL_checkudata(L, idx, CTX_MT);
  return u->ctx;
}

static const mb_port_type_t *const sock_types[] = {&mb_tcp_type, NULL};

static int l_tlsinfo(lua_State *L) {
  mb_port_t *p = mbl_port_check(L, 1, sock_types);
  if (!p) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  return mbl_port_run(L, p, mbl_port_cmd(L, MB_TCP_TLSINFO));
}

void mbl_open_tls(lua_State *L) {
  static const luaL_Reg fns[] = {{"tls_context", l_context}, {"tls_info", l_tlsinfo}, {NULL, NULL}};
  mbl_push_box(L);
  luaL_setfuncs(L, fns, 1);
}
