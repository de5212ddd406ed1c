/* lhttp.c: moonbeam.core.http: the HTTP parser and WebSocket codec of csrc/http.
 *
 *   p = http.parser("request" | "response", {max_head=, max_headers=, max_body=})
 *   ev = p:feed(bytes)   ev = p:eof()
 *     ev is a sequence: a table for a head, a string for a piece of body, false
 *     for the end of a message, in the order they were parsed. ev.error is the
 *     HTTP status of a failure (400, 413, 431, 505) and ev.reason why; ev.upgrade
 *     the bytes after an upgrade request's head (they belong to the new protocol).
 *   p:no_body(true)  the next response has no body (a reply to HEAD)
 *   p:idle()         nothing of a next message seen
 *
 *   ws = http.ws(is_client, {max_frame=, max_message=})
 *   ev, code = ws:feed(bytes)  ev: sequence of {kind, data} ("text", "binary",
 *     "ping", "pong") and {"close", code, reason}; code: a failure's close code
 *   ws:send(kind, data)  ws:close(code, reason)  ws:output() -> bytes or nil
 *   ws:pending()  ws:done()  ws:close_sent()  ws:close_received()
 *
 * A head: {method=, url=, status=, version=, keep_alive=, upgrade=, chunked=,
 * content_length= (nil if absent), headers = {lower-case name = value}}. A
 * repeated header's values are joined with ", " ("; " for cookie, "\n" for
 * set-cookie, which cannot be joined with commas). */
#include <lauxlib.h>
#include <lua.h>
#include <string.h>

#include "http/parser.h"
#include "http/ws.h"
#include "lua/lmb.h"

#define PARSER_MT "moonbeam.http.parser"
#define WS_MT "moonbeam.http.ws"

typedef struct lparser {
  mb_http_parser_t *p;
  int no_body;
} lparser_t;

typedef struct sink_ctx {
  lua_State *L;
  int ev;          /* stack index of the events table */
  int n;
  lparser_t *lp;
} sink_ctx_t;

static void push_event(sink_ctx_t *c) { lua_rawseti(c->L, c->ev, ++c->n); }

static int s_head(void *ud, const mb_http_head_t *h) {
  sink_ctx_t *c = ud;
  lua_State *L = c->L;
  lua_createtable(L, 0, 10);
  if (h->method) {
    lua_pushstring(L, h->method);
    lua_setfield(L, -2, "method");
    lua_pushlstring(L, h->url, h->url_len);
    lua_setfield(L, -2, "url");
  } else {
    lua_pushinteger(L, h->status);
    lua_setfield(L, -2, "status");
  }
  if (h->version_major == 1 && h->version_minor == 1) lua_pushliteral(L, "1.1");
  else lua_pushfstring(L, "%d.%d", h->version_major, h->version_minor);
  lua_setfield(L, -2, "version");
  lua_pushboolean(L, h->keep_alive);
  lua_setfield(L, -2, "keep_alive");
  lua_pushboolean(L, h->upgrade);
  lua_setfield(L, -2, "upgrade");
  lua_pushboolean(L, h->chunked);
  lua_setfield(L, -2, "chunked");
  if (h->has_length) {
    lua_pushinteger(L, (lua_Integer)h->content_length);
    lua_setfield(L, -2, "content_length");
  }
  lua_createtable(L, 0, (int)h->n_headers);
  for (size_t i = 0; i < h->n_headers; i++) {
    const mb_http_header_t *x = &h->headers[i];
    lua_pushlstring(L, x->name, x->name_len);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) == LUA_TSTRING) {
      const char *sep = strcmp(x->name, "cookie") == 0       ? "; "
                        : strcmp(x->name, "set-cookie") == 0 ? "\n"
                                                             : ", ";
      lua_pushstring(L, sep);
      lua_pushlstring(L, x->value, x->value_len);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushlstring(L, x->value, x->value_len);
    }
    lua_rawset(L, -3);
  }
  lua_setfield(L, -2, "headers");
  push_event(c);
  if (c->lp->no_body) {
    c->lp->no_body = 0;
    return MB_HTTP_SKIP_BODY;
  }
  return 0;
}

static int s_body(void *ud, const char *data, size_t len) {
  sink_ctx_t *c = ud;
  lua_pushlstring(c->L, data, len);
  push_event(c);
  return 0;
}

static int s_done(void *ud) {
  sink_ctx_t *c = ud;
  lua_pushboolean(c->L, 0);
  push_event(c);
  return 0;
}

static const mb_http_sink_t sink = {s_head, s_body, s_done};

static lua_Integer opt_int(lua_State *L, int t, const char *k, lua_Integer dflt) {
  if (lua_type(L, t) != LUA_TTABLE) return dflt;
  lua_getfield(L, t, k);
  lua_Integer v = lua_isnil(L, -1) ? dflt : luaL_checkinteger(L, -1);
  lua_pop(L, 1);
  if (v < 0) luaL_error(L, "%s must not be negative", k);
  return v;
}

static int l_parser(lua_State *L) {
  static const char *const kinds[] = {"request", "response", NULL};
  int kind = luaL_checkoption(L, 1, "request", kinds);
  mb_http_limits_t lim = {
    (size_t)opt_int(L, 2, "max_head", MB_HTTP_DEFAULT_MAX_HEAD),
    (size_t)opt_int(L, 2, "max_headers", MB_HTTP_DEFAULT_MAX_HEADERS),
    (uint64_t)opt_int(L, 2, "max_body", MB_HTTP_DEFAULT_MAX_BODY),
  };
  lparser_t *lp = lua_newuserdatauv(L, sizeof *lp, 0);
  lp->p = NULL;
  lp->no_body = 0;
  luaL_setmetatable(L, PARSER_MT);
  lp->p = mb_http_parser_new(kind == 1 ? MB_HTTP_RESPONSE : MB_HTTP_REQUEST, &lim);
  if (!lp->p) return luaL_error(L, "out of memory");
  return 1;
}

static lparser_t *check_parser(lua_State *L) {
  lparser_t *lp = luaL_checkudata(L, 1, PARSER_MT);
  if (!lp->p) luaL_error(L, "parser is closed");
  return lp;
}

static void finish(lua_State *L, lparser_t *lp, int r, const char *data, size_t len,
                   size_t used) {
  if (r == MB_HTTP_UPGRADED) {
    lua_pushlstring(L, data + used, len - used);
    lua_setfield(L, -2, "upgrade");
  } else if (r < 0) {
    lua_pushinteger(L, -r);
    lua_setfield(L, -2, "error");
    const char *why = mb_http_parser_reason(lp->p);
    lua_pushstring(L, why ? why : "bad request");
    lua_setfield(L, -2, "reason");
  }
}

static int l_feed(lua_State *L) {
  lparser_t *lp = check_parser(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  lua_settop(L, 2);
  lua_newtable(L);
  sink_ctx_t c = {L, 3, 0, lp};
  size_t used;
  int r = mb_http_parser_feed(lp->p, data, len, &used, &sink, &c);
  finish(L, lp, r, data, len, used);
  return 1;
}

static int l_eof(lua_State *L) {
  lparser_t *lp = check_parser(L);
  lua_settop(L, 1);
  lua_newtable(L);
  sink_ctx_t c = {L, 2, 0, lp};
  int r = mb_http_parser_eof(lp->p, &sink, &c);
  finish(L, lp, r, NULL, 0, 0);
  return 1;
}

static int l_no_body(lua_State *L) {
  lparser_t *lp = check_parser(L);
  lp->no_body = lua_toboolean(L, 2);
  return 0;
}

static int l_idle(lua_State *L) {
  lparser_t *lp = check_parser(L);
  lua_pushboolean(L, mb_http_parser_idle(lp->p));
  return 1;
}

static int l_parser_gc(lua_State *L) {
  lparser_t *lp = luaL_checkudata(L, 1, PARSER_MT);
  mb_http_parser_free(lp->p);
  lp->p = NULL;
  return 0;
}

/* ------------------------------------------------------------------ WebSocket */

typedef struct lws {
  mb_ws_t *ws;
} lws_t;

static int ws_opcode(lua_State *L, int idx) {
  static const char *const names[] = {"text", "binary", "ping", "pong", NULL};
  static const int codes[] = {MB_WS_TEXT, MB_WS_BINARY, MB_WS_PING, MB_WS_PONG};
  return codes[luaL_checkoption(L, idx, NULL, names)];
}

static int l_ws(lua_State *L) {
  int client = lua_toboolean(L, 1);
  mb_ws_limits_t lim = {
    (uint64_t)opt_int(L, 2, "max_frame", 0),
    (uint64_t)opt_int(L, 2, "max_message", 0),
  };
  lws_t *w = lua_newuserdatauv(L, sizeof *w, 0);
  w->ws = NULL;
  luaL_setmetatable(L, WS_MT);
  w->ws = mb_ws_new(client, &lim);
  if (!w->ws) return luaL_error(L, "out of memory");
  return 1;
}

static mb_ws_t *check_ws(lua_State *L) {
  lws_t *w = luaL_checkudata(L, 1, WS_MT);
  if (!w->ws) luaL_error(L, "websocket is closed");
  return w->ws;
}

typedef struct ws_ctx {
  lua_State *L;
  int ev, n;
} ws_ctx_t;

static void ws_msg(void *ud, int op, const uint8_t *data, size_t len, int code) {
  ws_ctx_t *c = ud;
  lua_State *L = c->L;
  lua_createtable(L, 3, 0);
  const char *kind = op == MB_WS_TEXT     ? "text"
                     : op == MB_WS_BINARY ? "binary"
                     : op == MB_WS_PING   ? "ping"
                     : op == MB_WS_PONG   ? "pong"
                                          : "close";
  lua_pushstring(L, kind);
  lua_rawseti(L, -2, 1);
  if (op == MB_WS_CLOSE) {
    lua_pushinteger(L, code);
    lua_rawseti(L, -2, 2);
    lua_pushlstring(L, (const char *)data, len);
    lua_rawseti(L, -2, 3);
  } else {
    lua_pushlstring(L, (const char *)data, len);
    lua_rawseti(L, -2, 2);
  }
  lua_rawseti(L, c->ev, ++c->n);
}

static int l_ws_feed(lua_State *L) {
  mb_ws_t *ws = check_ws(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  lua_settop(L, 2);
  lua_newtable(L);
  ws_ctx_t c = {L, 3, 0};
  int r = mb_ws_feed(ws, (const uint8_t *)data, len, ws_msg, &c);
  if (r < 0) {
    lua_pushinteger(L, r == -1 ? 1011 : -r);
    return 2;
  }
  return 1;
}

static int l_ws_send(lua_State *L) {
  mb_ws_t *ws = check_ws(L);
  int op = ws_opcode(L, 2);
  size_t len;
  const char *data = luaL_optlstring(L, 3, "", &len);
  if (mb_ws_send(ws, op, (const uint8_t *)data, len) != 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_ws_close(lua_State *L) {
  mb_ws_t *ws = check_ws(L);
  lua_Integer code = luaL_optinteger(L, 2, 1000);
  size_t len;
  const char *reason = luaL_optlstring(L, 3, "", &len);
  if (len > 123) return luaL_error(L, "close reason longer than 123 bytes");
  lua_pushboolean(L, mb_ws_close(ws, (int)code, (const uint8_t *)reason, len) == 0);
  return 1;
}

static int l_ws_output(lua_State *L) {
  mb_ws_t *ws = check_ws(L);
  size_t len;
  const uint8_t *out = mb_ws_take_output(ws, &len);
  if (len == 0) lua_pushnil(L);
  else lua_pushlstring(L, (const char *)out, len);
  return 1;
}

static int l_ws_pending(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)mb_ws_pending(check_ws(L)));
  return 1;
}

static int l_ws_done(lua_State *L) {
  lua_pushboolean(L, mb_ws_done(check_ws(L)));
  return 1;
}

static int l_ws_close_sent(lua_State *L) {
  lua_pushboolean(L, mb_ws_close_sent(check_ws(L)));
  return 1;
}

static int l_ws_close_received(lua_State *L) {
  lua_pushboolean(L, mb_ws_close_received(check_ws(L)));
  return 1;
}

static int l_ws_gc(lua_State *L) {
  lws_t *w = luaL_checkudata(L, 1, WS_MT);
  mb_ws_free(w->ws);
  w->ws = NULL;
  return 0;
}

static int l_utf8_valid(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_pushboolean(L, mb_ws_utf8_valid((const uint8_t *)s, len));
  return 1;
}

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods) {
  if (luaL_newmetatable(L, name)) {
    luaL_setfuncs(L, methods, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}

/* Sets core.http and core.crypto in the table on top of the stack. */
void mbl_open_http(lua_State *L) {
  static const luaL_Reg pmeth[] = {
    {"feed", l_feed}, {"eof", l_eof}, {"no_body", l_no_body}, {"idle", l_idle},
    {"close", l_parser_gc}, {"__gc", l_parser_gc}, {NULL, NULL}};
  static const luaL_Reg wmeth[] = {
    {"feed", l_ws_feed}, {"send", l_ws_send}, {"close", l_ws_close},
    {"output", l_ws_output}, {"pending", l_ws_pending}, {"done", l_ws_done},
    {"close_sent", l_ws_close_sent}, {"close_received", l_ws_close_received},
    {"free", l_ws_gc}, {"__gc", l_ws_gc}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {
    {"parser", l_parser}, {"ws", l_ws}, {"utf8_valid", l_utf8_valid}, {NULL, NULL}};
  new_class(L, PARSER_MT, pmeth);
  new_class(L, WS_MT, wmeth);
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "http");
  mbl_open_crypto(L);
}
