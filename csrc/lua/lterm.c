/* lterm.c: Lua values <-> ETF terms, and the pid, ref, atom and tuple values.
 * Invariants: pids, refs and atoms are interned per VM (a weak-valued cache maps
 * each value to its one live userdata), so rawequal is value equality; encoding
 * neither allocates Lua objects nor builds strings unless it fails; both
 * directions restore the Lua stack they were given on every path. */
#include "lterm.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/term.h"
#include "lport.h"

/* Registry keys (addresses). */
static const char k_nodes, k_kinds, k_pids, k_refs, k_atoms;

/* What a metatable makes a table or userdata; k_kinds maps metatable -> kind. */
enum { K_PLAIN = 0, K_PID, K_REF, K_ATOM, K_TUPLE };

/* ---------------------------------------------------------------- values */

/* Pushes cache[k] for the cache at registry[key] (string key k[0..klen) if k,
 * else integer key ik), the cache left below it. */
static int cache_get(lua_State *L, const void *key, const void *k, size_t klen, lua_Integer ik)
{
  lua_rawgetp(L, LUA_REGISTRYINDEX, key);
  if (!k) return lua_rawgeti(L, -1, ik);
  lua_pushlstring(L, k, klen);
  return lua_rawget(L, -2);
}

/* cache, value on the stack: cache[k] = value; leaves only value. */
static void cache_put(lua_State *L, const void *k, size_t klen, lua_Integer ik)
{
  if (k) {
    lua_pushlstring(L, k, klen);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
  } else {
    lua_pushvalue(L, -1);
    lua_rawseti(L, -3, ik);
  }
  lua_remove(L, -2);
}

void mb_lterm_pushpid(lua_State *L, mb_pid_t pid)
{
  if (cache_get(L, &k_pids, NULL, 0, (lua_Integer)pid) != LUA_TNIL) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  *(mb_pid_t *)lua_newuserdatauv(L, sizeof pid, 0) = pid;
  luaL_setmetatable(L, MB_LTERM_PID);
  cache_put(L, NULL, 0, (lua_Integer)pid);
}

mb_pid_t mb_lterm_topid(lua_State *L, int idx)
{
  const mb_pid_t *p = luaL_testudata(L, idx, MB_LTERM_PID);
  return p ? *p : 0;
}

mb_pid_t mb_lterm_checkpid(lua_State *L, int idx)
{
  const mb_pid_t *p = luaL_testudata(L, idx, MB_LTERM_PID);
  if (!p) luaL_typeerror(L, idx, "pid");
  return *p;
}

void mb_lterm_pushref(lua_State *L, mb_ref_t ref)
{
  if (cache_get(L, &k_refs, &ref, sizeof ref, 0) != LUA_TNIL) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  *(mb_ref_t *)lua_newuserdatauv(L, sizeof ref, 0) = ref;
  luaL_setmetatable(L, MB_LTERM_REF);
  cache_put(L, &ref, sizeof ref, 0);
}

int mb_lterm_toref(lua_State *L, int idx, mb_ref_t *out)
{
  const mb_ref_t *r = luaL_testudata(L, idx, MB_LTERM_REF);
  if (r && out) *out = *r;
  return r != NULL;
}

/* An atom is a userdata whose bytes are its UTF-8 text. */
static void push_atom(lua_State *L, const char *s, size_t len)
{
  if (cache_get(L, &k_atoms, s, len, 0) != LUA_TNIL) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  memcpy(lua_newuserdatauv(L, len, 0), s, len);
  luaL_setmetatable(L, MB_LTERM_ATOM);
  cache_put(L, s, len, 0);
}

int mb_lterm_atom(lua_State *L)
{
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  long chars = len <= 255 * 4 ? mb_utf8_chars((const uint8_t *)s, len) : -1;
  luaL_argcheck(L, chars >= 0 && chars <= 255, 1, "atom must be UTF-8, at most 255 characters");
  push_atom(L, s, len);
  return 1;
}

int mb_lterm_tuple(lua_State *L)
{
  int n = lua_gettop(L), i;
  lua_createtable(L, n, 1);
  for (i = 1; i <= n; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, -2, i);
  }
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "n");
  luaL_setmetatable(L, MB_LTERM_TUPLE);
  return 1;
}

static int pid_tostring(lua_State *L)
{
  mb_pid_t p = mb_lterm_checkpid(L, 1);
  lua_pushfstring(L, "<%d.%I.%I>", (int)mb_pid_node(p), (lua_Integer)mb_pid_index(p),
                  (lua_Integer)mb_pid_serial(p));
  return 1;
}

static int pid_eq(lua_State *L)
{
  const mb_pid_t *a = luaL_testudata(L, 1, MB_LTERM_PID), *b = luaL_testudata(L, 2, MB_LTERM_PID);
  lua_pushboolean(L, a && b && *a == *b);
  return 1;
}

/* Erlang's order: the most significant id word first. */
static int ref_tostring(lua_State *L)
{
  const mb_ref_t *r = luaL_checkudata(L, 1, MB_LTERM_REF);
  lua_pushfstring(L, "#Ref<%I.%I.%I.%I>", (lua_Integer)r->node, (lua_Integer)r->id[2],
                  (lua_Integer)r->id[1], (lua_Integer)r->id[0]);
  return 1;
}

static int ref_eq(lua_State *L)
{
  mb_ref_t a, b;
  lua_pushboolean(L, mb_lterm_toref(L, 1, &a) && mb_lterm_toref(L, 2, &b) && mb_ref_equal(a, b));
  return 1;
}

static int atom_tostring(lua_State *L)
{
  const char *s = luaL_checkudata(L, 1, MB_LTERM_ATOM);
  lua_pushlstring(L, s, lua_rawlen(L, 1));
  return 1;
}

/* Makes metatable `name` with the given metamethods; kinds[mt] = kind. */
static void new_mt(lua_State *L, const char *name, const luaL_Reg *fns, int kind)
{
  luaL_newmetatable(L, name);
  luaL_setfuncs(L, fns, 0);
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable"); /* user code cannot swap or read it */
  lua_pushinteger(L, kind);
  lua_rawset(L, -3);
}

static void new_cache(lua_State *L, const void *key, const char *mode)
{
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushstring(L, mode);
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

void mb_lterm_open(lua_State *L, mb_nodes_t *nodes)
{
  static const luaL_Reg pid_fns[] = {{"__tostring", pid_tostring}, {"__eq", pid_eq}, {NULL, NULL}};
  static const luaL_Reg ref_fns[] = {{"__tostring", ref_tostring}, {"__eq", ref_eq}, {NULL, NULL}};
  static const luaL_Reg atom_fns[] = {{"__tostring", atom_tostring}, {NULL, NULL}};
  static const luaL_Reg no_fns[] = {{NULL, NULL}};
  lua_pushlightuserdata(L, nodes);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &k_nodes);
  lua_newtable(L); /* kinds */
  new_mt(L, MB_LTERM_PID, pid_fns, K_PID);
  new_mt(L, MB_LTERM_REF, ref_fns, K_REF);
  new_mt(L, MB_LTERM_ATOM, atom_fns, K_ATOM);
  new_mt(L, MB_LTERM_TUPLE, no_fns, K_TUPLE);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &k_kinds);
  new_cache(L, &k_pids, "v");
  new_cache(L, &k_refs, "v");
  new_cache(L, &k_atoms, "v");
}

mb_nodes_t *mb_lterm_nodes(lua_State *L)
{
  mb_nodes_t *n;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &k_nodes);
  n = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return n;
}

/* ---------------------------------------------------------------- encode */

#define DEPTH MB_TERM_MAX_DEPTH
#define PATH_SHOWN 60 /* path characters shown before "..." */

typedef struct enc_state {
  lua_State *L;
  mb_enc_t *e;
  int kinds;                  /* stack slot of the kinds table, nil until needed */
  int kinds_loaded;
  int depth;                  /* tables on the current path */
  const void *tables[DEPTH];  /* those tables, for cycle detection */
  /* failure only: path[0..fail_depth) are the steps, reason the leaf's complaint */
  int fail_depth;
  char reason[80];
  char path[DEPTH][40];
} enc_state;

static int enc_value(enc_state *s, int idx);

/* Records a failure at the current depth. */
static int fail(enc_state *s, int err, const char *reason, const char *detail)
{
  snprintf(s->reason, sizeof s->reason, "%s%s%s%s", reason, detail ? " (" : "",
           detail ? detail : "", detail ? ")" : "");
  s->fail_depth = s->depth;
  if (!s->e->err) s->e->err = err;
  return err;
}

/* An encoder call failed (e->err set). */
static int fail_enc(enc_state *s, int err)
{
  return fail(s, err, mb_strerror(err), NULL);
}

/* The kind of the table or userdata at idx, from its metatable. */
static int kind_of(enc_state *s, int idx)
{
  lua_State *L = s->L;
  int k;
  if (!lua_getmetatable(L, idx)) return K_PLAIN;
  if (!s->kinds_loaded) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &k_kinds);
    lua_replace(L, s->kinds);
    s->kinds_loaded = 1;
  }
  lua_rawget(L, s->kinds);
  k = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return k;
}

static int is_ident(const char *k, size_t n)
{
  size_t i;
  if (!n || (k[0] >= '0' && k[0] <= '9')) return 0;
  for (i = 0; i < n; i++)
    if (!(k[i] == '_' || (k[i] >= 'a' && k[i] <= 'z') || (k[i] >= 'A' && k[i] <= 'Z') ||
          (k[i] >= '0' && k[i] <= '9')))
      return 0;
  return 1;
}

/* Writes the path step for key (at idx) into path[level]; as_key: the key itself
 * failed, so it is named by type. */
static void step(enc_state *s, int level, int idx, int as_key)
{
  lua_State *L = s->L;
  char *out = s->path[level];
  size_t n, cap = sizeof s->path[0];
  const char *k;
  if (as_key) {
    snprintf(out, cap, "[<%s>]", luaL_typename(L, idx));
  } else if (lua_type(L, idx) == LUA_TSTRING || luaL_testudata(L, idx, MB_LTERM_ATOM)) {
    if (lua_type(L, idx) == LUA_TSTRING) k = lua_tolstring(L, idx, &n);
    else k = lua_touserdata(L, idx), n = lua_rawlen(L, idx);
    if (is_ident(k, n) && n < cap - 1) snprintf(out, cap, ".%.*s", (int)n, k);
    else snprintf(out, cap, "[\"%.*s%s\"]", (int)(n > 24 ? 24 : n), k, n > 24 ? "..." : "");
  } else if (lua_isinteger(L, idx)) {
    snprintf(out, cap, "[%lld]", (long long)lua_tointeger(L, idx));
  } else if (lua_type(L, idx) == LUA_TNUMBER) {
    snprintf(out, cap, "[%.14g]", lua_tonumber(L, idx));
  } else if (lua_type(L, idx) == LUA_TBOOLEAN) {
    snprintf(out, cap, "[%s]", lua_toboolean(L, idx) ? "true" : "false");
  } else {
    snprintf(out, cap, "[<%s>]", luaL_typename(L, idx));
  }
}

/* 1 when the table's keys are exactly 1..n. */
static int is_list(lua_State *L, int idx, lua_Unsigned n)
{
  lua_Unsigned count = 0;
  lua_Integer k;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    k = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
    if (k < 1 || (lua_Unsigned)k > n) {
      lua_pop(L, 1);
      return 0;
    }
    count++;
  }
  return count == n;
}

static int enc_list(enc_state *s, int idx, uint32_t n)
{
  lua_State *L = s->L;
  uint32_t i;
  int r;
  if ((r = mb_enc_list(s->e, n))) return fail_enc(s, r);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    r = enc_value(s, lua_gettop(L));
    lua_pop(L, 1);
    if (r) {
      snprintf(s->path[s->depth - 1], sizeof s->path[0], "[%" PRIu32 "]", i);
      return r;
    }
  }
  return (r = mb_enc_nil(s->e)) ? fail_enc(s, r) : 0;
}

/* A tuple: fields 1..n, nil where absent. */
static int enc_tuple(enc_state *s, int idx)
{
  lua_State *L = s->L;
  lua_Integer n, i;
  int r;
  lua_getfield(L, idx, "n"); /* raw enough: the tuple metatable has no __index */
  n = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : -1;
  lua_pop(L, 1);
  if (n < 0 || n > (lua_Integer)UINT32_MAX) return fail(s, MB_EINVAL, "tuple without a valid n", NULL);
  if ((r = mb_enc_tuple(s->e, (uint32_t)n))) return fail_enc(s, r);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    r = enc_value(s, lua_gettop(L));
    lua_pop(L, 1);
    if (r) {
      snprintf(s->path[s->depth - 1], sizeof s->path[0], "[%lld]", (long long)i);
      return r;
    }
  }
  return 0;
}

/* A map: the pair count is patched in after the walk, so one pass suffices. */
static int enc_map(enc_state *s, int idx)
{
  lua_State *L = s->L;
  size_t at = s->e->len;
  uint32_t pairs = 0;
  int r, top;
  if ((r = mb_enc_map(s->e, 0))) return fail_enc(s, r);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    top = lua_gettop(L);
    /* the key names the step; a key that failed itself is named by its type */
    if ((r = enc_value(s, top - 1))) step(s, s->depth - 1, top - 1, 1);
    else if ((r = enc_value(s, top))) step(s, s->depth - 1, top - 1, 0);
    if (r) {
      lua_pop(L, 2);
      return r;
    }
    lua_pop(L, 1);
    if (++pairs == 0) return fail(s, MB_ELIMIT, "table too large", NULL);
  }
  mb_put32(s->e->buf + at + 1, pairs);
  return 0;
}

static int enc_table(enc_state *s, int idx)
{
  lua_State *L = s->L;
  const void *t = lua_topointer(L, idx);
  lua_Unsigned n;
  int i, r, kind;
  if (s->depth >= DEPTH) return fail(s, MB_EDEPTH, "nested deeper than 64", NULL);
  for (i = 0; i < s->depth; i++)
    if (s->tables[i] == t) return fail(s, MB_EINVAL, "table cycle", NULL);
  kind = kind_of(s, idx);
  s->tables[s->depth++] = t;
  if (kind == K_TUPLE) {
    r = enc_tuple(s, idx);
  } else if ((n = lua_rawlen(L, idx)) > 0 && n <= UINT32_MAX && is_list(L, idx, n)) {
    r = enc_list(s, idx, (uint32_t)n);
  } else {
    r = enc_map(s, idx);
  }
  s->depth--;
  return r;
}

static int enc_userdata(enc_state *s, int idx)
{
  lua_State *L = s->L;
  void *u = lua_touserdata(L, idx);
  const char *name;
  int r;
  switch (kind_of(s, idx)) {
  case K_PID: r = mb_enc_pid(s->e, *(mb_pid_t *)u); break;
  case K_REF: r = mb_enc_ref(s->e, *(mb_ref_t *)u); break;
  case K_ATOM: r = mb_enc_atom(s->e, u, lua_rawlen(L, idx)); break;
  default:
    if (mbl_port_is(L, idx, NULL)) return mbl_port_encode(L, idx, s->e); /* lport.c */
    name = luaL_getmetafield(L, idx, "__name") == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    r = fail(s, MB_EINVAL, "cannot send a userdata", name);
    if (name) lua_pop(L, 1);
    return r;
  }
  return r ? fail_enc(s, r) : 0;
}

static int enc_value(enc_state *s, int idx)
{
  lua_State *L = s->L;
  mb_enc_t *e = s->e;
  const char *p;
  size_t n;
  int r;
  switch (lua_type(L, idx)) {
  case LUA_TNIL: r = mb_enc_atom(e, "nil", 3); break;
  case LUA_TBOOLEAN: r = lua_toboolean(L, idx) ? mb_enc_atom(e, "true", 4) : mb_enc_atom(e, "false", 5); break;
  case LUA_TNUMBER:
    r = lua_isinteger(L, idx) ? mb_enc_int(e, lua_tointeger(L, idx)) : mb_enc_float(e, lua_tonumber(L, idx));
    break;
  case LUA_TSTRING:
    p = lua_tolstring(L, idx, &n);
    if (n > UINT32_MAX) return fail(s, MB_EINVAL, "string longer than 4 GB", NULL);
    r = mb_enc_binary(e, p, n);
    break;
  case LUA_TTABLE: return enc_table(s, idx);
  case LUA_TUSERDATA: return enc_userdata(s, idx);
  case LUA_TFUNCTION: return fail(s, MB_EINVAL, "cannot send a function", NULL);
  case LUA_TTHREAD: return fail(s, MB_EINVAL, "cannot send a coroutine", NULL);
  case LUA_TLIGHTUSERDATA: return fail(s, MB_EINVAL, "cannot send a light userdata", NULL);
  default: return fail(s, MB_EINVAL, "cannot send a value of type", luaL_typename(L, idx));
  }
  return r ? fail_enc(s, r) : 0;
}

int mb_lterm_encode(lua_State *L, int idx, mb_enc_t *e, const char *root, char *err, size_t errlen)
{
  enc_state s;
  int top = lua_gettop(L), r, i;
  size_t used;
  idx = lua_absindex(L, idx);
  /* scalars, the commonest messages, need none of the walk's set-up */
  if (!e->err) {
    int t = lua_type(L, idx);
    if (t == LUA_TNUMBER || t == LUA_TBOOLEAN || t == LUA_TNIL) {
      if (t == LUA_TNUMBER)
        r = lua_isinteger(L, idx) ? mb_enc_int(e, (int64_t)lua_tointeger(L, idx))
                                  : mb_enc_float(e, (double)lua_tonumber(L, idx));
      else if (t == LUA_TNIL)
        r = mb_enc_atom(e, "nil", 3);
      else
        r = lua_toboolean(L, idx) ? mb_enc_atom(e, "true", 4) : mb_enc_atom(e, "false", 5);
      if (r && err && errlen) snprintf(err, errlen, "%s: %s", root ? root : "value", mb_strerror(r));
      return r;
    }
  }
  s.L = L;
  s.e = e;
  s.depth = 0;
  s.fail_depth = 0;
  s.kinds_loaded = 0;
  if (e->err) {
    r = fail_enc(&s, e->err);
  } else if (!lua_checkstack(L, 2 * DEPTH + 8)) {
    r = fail(&s, MB_ENOMEM, "out of memory (Lua stack)", NULL);
  } else {
    lua_pushnil(L);
    s.kinds = lua_gettop(L);
    r = enc_value(&s, idx);
  }
  lua_settop(L, top);
  if (r && err && errlen) {
    used = (size_t)snprintf(err, errlen, "%s", root ? root : "value");
    for (i = 0; i < s.fail_depth && used < errlen; i++) {
      if (used + strlen(s.path[i]) > PATH_SHOWN + (root ? strlen(root) : 5)) {
        used += (size_t)snprintf(err + used, errlen - used, "...");
        break;
      }
      used += (size_t)snprintf(err + used, errlen - used, "%s", s.path[i]);
    }
    if (used < errlen) snprintf(err + used, errlen - used, ": %s", s.reason);
  }
  return r;
}

/* ---------------------------------------------------------------- decode */

static int dec_value(lua_State *L, mb_dec_t *d, int depth);

/* count values follow; each is stored at t[i] for the table on top. */
static int dec_seq(lua_State *L, mb_dec_t *d, int depth, uint32_t count)
{
  uint32_t i;
  int r;
  for (i = 1; i <= count; i++) {
    if ((r = dec_value(L, d, depth))) return r;
    lua_rawseti(L, -2, i);
  }
  return 0;
}

static int dec_value(lua_State *L, mb_dec_t *d, int depth)
{
  const char *s;
  const uint8_t *p;
  size_t n, i;
  int64_t v;
  double f;
  uint32_t k;
  mb_pid_t pid;
  mb_ref_t ref;
  int r, t = mb_dec_type(d);
  /* every Lua table counts, [] and strings too, so whatever decodes re-encodes */
  if ((t == MB_T_TUPLE || t == MB_T_LIST || t == MB_T_MAP || t == MB_T_NIL || t == MB_T_STRING) &&
      depth >= DEPTH)
    return MB_EDEPTH;
  switch (t) {
  case MB_T_ATOM:
    if ((r = mb_dec_atom(d, &s, &n))) return r;
    if (n == 3 && !memcmp(s, "nil", 3)) lua_pushnil(L);
    else if (n == 4 && !memcmp(s, "true", 4)) lua_pushboolean(L, 1);
    else if (n == 5 && !memcmp(s, "false", 5)) lua_pushboolean(L, 0);
    else lua_pushlstring(L, s, n);
    return 0;
  case MB_T_INT:
    if ((r = mb_dec_int(d, &v))) return r;
    lua_pushinteger(L, (lua_Integer)v);
    return 0;
  case MB_T_FLOAT:
    if ((r = mb_dec_float(d, &f))) return r;
    lua_pushnumber(L, f);
    return 0;
  case MB_T_BINARY:
    if ((r = mb_dec_binary(d, &p, &n))) return r;
    lua_pushlstring(L, (const char *)p, n);
    return 0;
  case MB_T_STRING:
    if ((r = mb_dec_string(d, &p, &n))) return r;
    lua_createtable(L, (int)n, 0);
    for (i = 0; i < n; i++) {
      lua_pushinteger(L, p[i]);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 0;
  case MB_T_NIL:
    if ((r = mb_dec_nil(d))) return r;
    lua_newtable(L);
    return 0;
  case MB_T_PID:
    if ((r = mb_dec_pid(d, &pid))) return r;
    mb_lterm_pushpid(L, pid);
    return 0;
  case MB_T_PORT: {
    uint64_t port;
    if ((r = mb_dec_port(d, &port))) return r;
    mbl_port_push_id(L, port); /* lport.c */
    return 0;
  }
  case MB_T_REF:
    if ((r = mb_dec_ref(d, &ref))) return r;
    mb_lterm_pushref(L, ref);
    return 0;
  case MB_T_TUPLE:
    if ((r = mb_dec_tuple(d, &k))) return r;
    lua_createtable(L, k > INT32_MAX ? 0 : (int)k, 0);
    return dec_seq(L, d, depth + 1, k);
  case MB_T_LIST:
    if ((r = mb_dec_list(d, &k))) return r;
    lua_createtable(L, k > INT32_MAX ? 0 : (int)k, 0);
    if ((r = dec_seq(L, d, depth + 1, k))) return r;
    return mb_dec_nil(d); /* an improper list has no Lua form */
  case MB_T_MAP:
    if ((r = mb_dec_map(d, &k))) return r;
    lua_createtable(L, 0, k > INT32_MAX ? 0 : (int)k);
    while (k--) {
      if ((r = dec_value(L, d, depth + 1))) return r;
      if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TNUMBER && isnan(lua_tonumber(L, -1))))
        return MB_EBADTERM; /* no Lua table can hold this key */
      if ((r = dec_value(L, d, depth + 1))) return r;
      lua_rawset(L, -3);
    }
    return 0;
  default: return t < 0 ? t : MB_EBADTERM;
  }
}

int mb_lterm_decode(lua_State *L, mb_dec_t *d)
{
  int top = lua_gettop(L), r;
  const uint8_t *start = d->p;
  if (!lua_checkstack(L, 2 * DEPTH + 8)) return MB_ENOMEM;
  if ((r = dec_value(L, d, 0))) {
    lua_settop(L, top);
    d->p = start;
  }
  return r;
}
