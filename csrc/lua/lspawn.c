/* lspawn.c: the one packer that moves Lua values to another VM (or process).
 *
 * Processes share no mutable Lua state, so spawn(fn, ...) copies fn and its
 * arguments, and gen.pack copies any value the same way: a Lua function as its
 * bytecode and each upvalue by value (an upvalue cell shared by two functions
 * stays shared in the copy); a table field by field, its metatable too, with
 * sharing and cycles kept; a loaded module by its name (re-required on the
 * other side); the globals table as the target VM's globals; a C function, or
 * a function or table that cannot be copied, by its place in a loaded module.
 *
 * The result is a stream of ETF terms in which every value is a slot: a small
 * integer kind written by the packer, then its payload. Plain data (numbers,
 * strings, pids, refs, atoms, packed values) is a PLAIN slot decoded by the
 * message decoder, so whatever a program passes, however it is shaped, comes
 * back as the data it was: only kinds mark functions, modules or globals, and
 * no value can write a kind. Bytecode is loaded only from these streams, which
 * reach the unpacker from the packer itself (spawn, package.preload) or from a
 * packed value, whose bytes are checked with a keyed hash when they arrive in
 * a message (lterm.c).
 *
 *   slot  = PLAIN term | G | MOD name | FIELD module key | MFA module function
 *         | FN id code hash nup upslot*nup | FNREF id
 *         | TABLE id metaslot (slot slot)* END | TREF id | NOMT | TUPLEMT
 *   upslot = UPREF fn_id index | slot
 *   spawn = slot(fn) nargs slot*nargs;  gen.pack = slot
 *
 * Both directions recurse at most PACK_DEPTH tables and functions deep and
 * check the Lua stack at each level; unpacking runs under lua_pcall, since it
 * runs Lua (require, __index, the closure factories) on a VM's main thread. */
#include <stdlib.h>
#include <string.h>
#include "lmb.h"
#include "lterm.h"

enum {
  S_PLAIN = 0, S_G, S_MOD, S_FIELD, S_MFA, S_FN, S_FNREF, S_TABLE, S_TREF, S_END,
  S_NOMT, S_TUPLEMT, S_UPREF,
  S_ENV /* a function's _ENV: the unpacking process's own globals (mbl_process_env) */
};

#define PACK_DEPTH 200 /* tables and functions nested in one packed value */
#define PATH_STEPS 12  /* steps of a failing path named in the error */

/* ---- where errors point: the caller's line, outside moonbeam's own files ---- */

/* 1 if the chunk is a file of the moonbeam library (…/moonbeam/x.lua or
 * …/moonbeam/sub/x.lua). */
static int library_source(const char *src) {
  if (src[0] != '@') return 0;
  size_t n = strlen(src);
  if (n < 4 || strcmp(src + n - 4, ".lua")) return 0;
  const char *slash[3] = {NULL, NULL, NULL}; /* the last three '/' */
  for (const char *p = src; *p; p++)
    if (*p == '/') {
      slash[2] = slash[1];
      slash[1] = slash[0];
      slash[0] = p;
    }
  for (int i = 1; i <= 2; i++) {
    const char *end = slash[i - 1], *start = slash[i] ? slash[i] + 1 : src + 1;
    if (end && end - start == 8 && !memcmp(start, "moonbeam", 8)) return 1;
  }
  return 0;
}

void mbl_push_where(lua_State *L) {
  lua_Debug ar;
  for (int level = 1; lua_getstack(L, level, &ar); level++) {
    if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0 || library_source(ar.source)) continue;
    lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
    return;
  }
  lua_pushliteral(L, "");
}

/* Replaces the message on top with where .. message. */
static void prefix_where(lua_State *L) {
  mbl_push_where(L);
  lua_insert(L, -2);
  lua_concat(L, 2);
}

/* ---- modules ---- */

static const char MODCACHE_KEY = 0; /* weak-keyed: module table -> its name */

/* Name of the loaded module whose table is at idx, pushed; 0 if none. Names
 * found are cached (and checked against package.loaded on every use). */
static int module_name(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  int loaded = lua_gettop(L);
  mbl_push_weak(L, &MODCACHE_KEY, "k");
  int cache = lua_gettop(L);
  lua_pushvalue(L, idx);
  if (lua_rawget(L, cache) == LUA_TSTRING) {
    lua_pushvalue(L, -1);
    lua_rawget(L, loaded);
    int still = lua_rawequal(L, -1, idx);
    lua_pop(L, 1);
    if (still) {
      lua_replace(L, loaded);
      lua_settop(L, loaded);
      return 1;
    }
  }
  lua_pop(L, 1);
  lua_pushnil(L);
  while (lua_next(L, loaded)) {
    if (lua_rawequal(L, -1, idx) && lua_type(L, -2) == LUA_TSTRING) {
      lua_pop(L, 1);                /* loaded, cache, name */
      lua_pushvalue(L, idx);
      lua_pushvalue(L, -2);
      lua_rawset(L, cache);
      lua_replace(L, loaded);
      lua_settop(L, loaded);
      return 1;
    }
    lua_pop(L, 1);
  }
  lua_settop(L, loaded - 1);
  return 0;
}

/* Finds the value at idx as a field of a loaded module (not _G's own Lua
 * values, which are the caller's globals): pushes module name and field. */
static int field_place(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  int lua_fn = lua_type(L, idx) != LUA_TFUNCTION || !lua_iscfunction(L, idx);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  int loaded = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, loaded)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1) &&
        !(lua_fn && !strcmp(lua_tostring(L, -2), "_G"))) {
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        if (lua_rawequal(L, -1, idx) && lua_type(L, -2) == LUA_TSTRING) {
          /* stack: loaded, modname, modtable, field, value */
          lua_pop(L, 1);
          lua_remove(L, -2);
          lua_remove(L, loaded);
          return 1; /* modname, field */
        }
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 0;
}

/* ---- packing ---- */

typedef struct packer {
  lua_State *L;
  mb_enc_t *e;
  int memo;      /* stack index: table, function or upvalue id -> id */
  int next_id;
  int depth;     /* tables and functions on the current path */
  int tuple_mt;  /* stack index of the tuple metatable, 0 until needed */
  int fatal;     /* a failure no other way of sending can mend (nesting, memory) */
  /* failure only: the steps path[0..fail_depth) and what went wrong */
  int fail_depth;
  char reason[208];
  char path[PATH_STEPS][48];
} packer_t;

static int pack_slot(packer_t *pk, int idx);

static void kind(packer_t *pk, int k) { mb_enc_int(pk->e, k); }

static int fail(packer_t *pk, const char *reason) {
  snprintf(pk->reason, sizeof pk->reason, "%s", reason);
  pk->fail_depth = pk->depth;
  return -1;
}

static int is_ident(const char *k, size_t n) {
  if (!n || (k[0] >= '0' && k[0] <= '9')) return 0;
  for (size_t i = 0; i < n; i++)
    if (!(k[i] == '_' || (k[i] >= 'a' && k[i] <= 'z') || (k[i] >= 'A' && k[i] <= 'Z') ||
          (k[i] >= '0' && k[i] <= '9')))
      return 0;
  return 1;
}

/* Names the step below the current level, once a value under it failed. */
static void step(packer_t *pk, const char *fmt, const char *s, size_t n) {
  if (pk->depth < 1 || pk->depth > PATH_STEPS) return;
  snprintf(pk->path[pk->depth - 1], sizeof pk->path[0], fmt, (int)(n > 24 ? 24 : n), s,
           n > 24 ? "..." : "");
}

static void key_step(packer_t *pk, int kidx, int as_key) {
  lua_State *L = pk->L;
  char b[32];
  size_t n;
  if (!as_key && lua_type(L, kidx) == LUA_TSTRING) {
    const char *k = lua_tolstring(L, kidx, &n);
    step(pk, is_ident(k, n) && n <= 24 ? ".%.*s%s" : "[\"%.*s%s\"]", k, n);
  } else if (!as_key && lua_isinteger(L, kidx)) {
    snprintf(b, sizeof b, "%lld", (long long)lua_tointeger(L, kidx));
    step(pk, "[%.*s%s]", b, strlen(b));
  } else {
    const char *t = luaL_typename(L, kidx);
    step(pk, "[<%.*s%s>]", t, strlen(t));
  }
}

static int enter(packer_t *pk) {
  if (pk->depth >= PACK_DEPTH || !lua_checkstack(pk->L, 8)) {
    pk->fatal = 1;
    return fail(pk, pk->depth >= PACK_DEPTH ? "nested deeper than 200 (tables and functions)"
                                             : "out of memory (Lua stack)");
  }
  pk->depth++;
  return 0;
}

static int is_tuple_mt(packer_t *pk, int mt) {
  lua_State *L = pk->L;
  if (!pk->tuple_mt) {
    luaL_getmetatable(L, MB_LTERM_TUPLE);
    lua_replace(L, pk->tuple_mt = pk->memo + 1);
  }
  return lua_rawequal(L, mt, pk->tuple_mt);
}

/* An _ENV upvalue that is a table with a metatable (an environment inheriting
 * from the globals, as busted's or a sandbox's with __index = _G), and not a
 * loaded module: its metatable cannot travel, so a copy would lose every
 * global; the function gets the target VM's globals instead, as with _G. */
static int inherited_env(lua_State *L, int idx, const char *name) {
  if (!name || strcmp(name, "_ENV") || lua_type(L, idx) != LUA_TTABLE) return 0;
  lua_pushglobaltable(L);
  int is_g = lua_rawequal(L, -1, idx < 0 ? idx - 1 : idx);
  lua_pop(L, 1);
  if (is_g) return 1;
  if (!lua_getmetatable(L, idx)) return 0;
  lua_pop(L, 1);
  if (module_name(L, idx)) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

static int pack_function(packer_t *pk, int idx) {
  lua_State *L = pk->L;
  mb_enc_t *e = pk->e;
  lua_pushvalue(L, idx);
  if (lua_rawget(L, pk->memo) == LUA_TNUMBER) {
    kind(pk, S_FNREF);
    mb_enc_int(e, lua_tointeger(L, -1));
    lua_pop(L, 1);
    return 0;
  }
  lua_pop(L, 1);
  if (lua_iscfunction(L, idx)) return fail(pk, "cannot send a C function that is not in a loaded module");
  const char *code;
  size_t clen;
  lua_Integer hash;
  if (mbl_code_of(L, idx, &code, &clen, &hash)) return fail(pk, "cannot dump this function");
  if (enter(pk)) return -1;
  int id = ++pk->next_id;
  lua_pushvalue(L, idx);
  lua_pushinteger(L, id);
  lua_rawset(L, pk->memo);
  int nup = 0;
  while (lua_getupvalue(L, idx, nup + 1)) {
    lua_pop(L, 1);
    nup++;
  }
  kind(pk, S_FN);
  mb_enc_int(e, id);
  mb_enc_binary(e, code, clen);
  mb_enc_int(e, hash);
  mb_enc_int(e, nup);
  for (int i = 1; i <= nup; i++) {
    /* an upvalue shared with a function met before stays shared in the copy */
    lua_pushlightuserdata(L, lua_upvalueid(L, idx, i));
    if (lua_rawget(L, pk->memo) == LUA_TNUMBER) {
      lua_Integer at = lua_tointeger(L, -1);
      lua_pop(L, 1);
      kind(pk, S_UPREF);
      mb_enc_int(e, at >> 8);
      mb_enc_int(e, at & 0xff);
      continue;
    }
    lua_pop(L, 1);
    lua_pushlightuserdata(L, lua_upvalueid(L, idx, i));
    lua_pushinteger(L, ((lua_Integer)id << 8) | i);
    lua_rawset(L, pk->memo);
    const char *name = lua_getupvalue(L, idx, i);
    int r = 0;
    if (inherited_env(L, -1, name)) kind(pk, S_ENV);
    else if ((r = pack_slot(pk, -1)) != 0) step(pk, ": upvalue '%.*s%s'", *name ? name : "?", *name ? strlen(name) : 1);
    lua_pop(L, 1);
    if (r) return r;
  }
  pk->depth--;
  return 0;
}

static int pack_table(packer_t *pk, int idx) {
  lua_State *L = pk->L;
  mb_enc_t *e = pk->e;
  lua_pushvalue(L, idx);
  if (lua_rawget(L, pk->memo) == LUA_TNUMBER) {
    kind(pk, S_TREF);
    mb_enc_int(e, lua_tointeger(L, -1));
    lua_pop(L, 1);
    return 0;
  }
  lua_pop(L, 1);
  lua_pushglobaltable(L);
  int is_g = lua_rawequal(L, -1, idx);
  lua_pop(L, 1);
  if (is_g) {
    kind(pk, S_G);
    return 0;
  }
  if (module_name(L, idx)) {
    kind(pk, S_MOD);
    mb_enc_binary(e, lua_tostring(L, -1), lua_rawlen(L, -1));
    lua_pop(L, 1);
    return 0;
  }
  if (enter(pk)) return -1;
  int id = ++pk->next_id;
  lua_pushvalue(L, idx);
  lua_pushinteger(L, id);
  lua_rawset(L, pk->memo);
  kind(pk, S_TABLE);
  mb_enc_int(e, id);
  int r = 0;
  if (!lua_getmetatable(L, idx)) {
    kind(pk, S_NOMT);
  } else {
    if (is_tuple_mt(pk, lua_gettop(L))) kind(pk, S_TUPLEMT);
    else if ((r = pack_slot(pk, -1)) != 0) step(pk, "%.*s%s", " (metatable)", 12);
    lua_pop(L, 1);
    if (r) return r;
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int top = lua_gettop(L);
    if ((r = pack_slot(pk, top - 1)) != 0) key_step(pk, top - 1, 1);
    else if ((r = pack_slot(pk, top)) != 0) key_step(pk, top - 1, 0);
    lua_pop(L, 1);
    if (r) {
      lua_pop(L, 1);
      return r;
    }
  }
  kind(pk, S_END);
  pk->depth--;
  return 0;
}

/* Forgets what packing from id `from` on remembered (a failed attempt). */
static void forget_from(packer_t *pk, int from) {
  lua_State *L = pk->L;
  lua_pushnil(L);
  while (lua_next(L, pk->memo)) {
    lua_Integer v = lua_tointeger(L, -1);
    if (lua_type(L, -2) == LUA_TLIGHTUSERDATA) v >>= 8;
    lua_pop(L, 1);
    if (v > from) { /* clearing a field during traversal is allowed */
      lua_pushvalue(L, -1);
      lua_pushnil(L);
      lua_rawset(L, pk->memo);
    }
  }
  pk->next_id = from;
}

/* Pids, refs, atoms, packed values; the message encoder refuses the rest.
 * Apart from pack_slot so that its buffer is not on every level's frame. */
static __attribute__((noinline)) int pack_other(packer_t *pk, int idx) {
  char err[200];
  kind(pk, S_PLAIN);
  if (mb_lterm_encode(pk->L, idx, pk->e, "", err, sizeof err)) {
    pk->e->err = 0; /* the packer reports it (a retry above may still succeed) */
    return fail(pk, err[0] == ':' ? err + 2 : err);
  }
  return 0;
}

static int pack_slot(packer_t *pk, int idx) {
  lua_State *L = pk->L;
  mb_enc_t *e = pk->e;
  idx = lua_absindex(L, idx);
  int t = lua_type(L, idx);
  switch (t) {
  case LUA_TNIL:
    kind(pk, S_PLAIN);
    mb_enc_atom(e, "nil", 3);
    return 0;
  case LUA_TBOOLEAN:
    kind(pk, S_PLAIN);
    if (lua_toboolean(L, idx)) mb_enc_atom(e, "true", 4);
    else mb_enc_atom(e, "false", 5);
    return 0;
  case LUA_TNUMBER:
    kind(pk, S_PLAIN);
    if (lua_isinteger(L, idx)) mb_enc_int(e, lua_tointeger(L, idx));
    else mb_enc_float(e, lua_tonumber(L, idx));
    return 0;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    if (n > UINT32_MAX) return fail(pk, "string longer than 4 GB");
    kind(pk, S_PLAIN);
    mb_enc_binary(e, s, n);
    return 0;
  }
  case LUA_TFUNCTION:
  case LUA_TTABLE: {
    /* what cannot be copied may still travel as a field of a loaded module */
    size_t at = e->len;
    int err = e->err, id = pk->next_id, depth = pk->depth;
    int r = t == LUA_TTABLE ? pack_table(pk, idx) : pack_function(pk, idx);
    if (r == 0) return 0;
    pk->depth = depth; /* unwinding: the caller names its step at its own depth */
    if (err || e->err || pk->fatal || !field_place(L, idx)) return r;
    e->len = at;
    forget_from(pk, id);
    kind(pk, S_FIELD);
    mb_enc_binary(e, lua_tostring(L, -2), lua_rawlen(L, -2));
    mb_enc_binary(e, lua_tostring(L, -1), lua_rawlen(L, -1));
    lua_pop(L, 2);
    pk->reason[0] = 0;
    pk->fail_depth = 0;
    return 0;
  }
  default: return pack_other(pk, idx);
  }
}

/* Pushes the packer's error: "<root><path>: <reason>". */
static void push_error(packer_t *pk, const char *root) {
  lua_State *L = pk->L;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, root);
  int shown = pk->fail_depth < PATH_STEPS ? pk->fail_depth : PATH_STEPS;
  for (int i = 0; i < shown; i++) luaL_addstring(&b, pk->path[i]);
  if (pk->fail_depth > PATH_STEPS) luaL_addstring(&b, "...");
  luaL_addstring(&b, ": ");
  luaL_addstring(&b, pk->reason);
  luaL_pushresult(&b);
}

/* Sets up a packer with its memo table (and a slot for the tuple metatable)
 * pushed. */
static void packer_init(packer_t *pk, lua_State *L, mb_enc_t *e) {
  lua_createtable(L, 0, 8); /* presized: a spawn's few functions and upvalues */
  pk->L = L;
  pk->e = e;
  pk->memo = lua_gettop(L);
  lua_pushnil(L);
  pk->next_id = 0;
  pk->depth = 0;
  pk->tuple_mt = 0;
  pk->fatal = 0;
  pk->fail_depth = 0;
  pk->reason[0] = 0;
}

/* Ends packing: pops the memo; on failure pushes the message (with the
 * caller's line) and returns -1. */
static int packer_end(packer_t *pk, int r, const char *root) {
  lua_State *L = pk->L;
  lua_settop(L, pk->memo - 1);
  if (r) push_error(pk, root);
  else if (pk->e->err) lua_pushfstring(L, "%s: %s", root, mb_strerror(pk->e->err));
  else return 0;
  prefix_where(L);
  return -1;
}

int mbl_pack(lua_State *L, int fidx, int nargs, mb_enc_t *e) {
  fidx = lua_absindex(L, fidx);
  packer_t pk;
  packer_init(&pk, L, e);
  int r;
  const char *root = "spawn: function";
  if (lua_istable(L, fidx)) { /* {module_name, function_name} */
    lua_rawgeti(L, fidx, 1);
    lua_rawgeti(L, fidx, 2);
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
      lua_settop(L, pk.memo - 1);
      lua_pushstring(L, "spawn: expected a function or {module_name, function_name}");
      prefix_where(L);
      return -1;
    }
    kind(&pk, S_MFA);
    mb_enc_binary(e, lua_tostring(L, -2), lua_rawlen(L, -2));
    mb_enc_binary(e, lua_tostring(L, -1), lua_rawlen(L, -1));
    lua_pop(L, 2);
    r = 0;
  } else if (lua_isfunction(L, fidx)) {
    r = pack_slot(&pk, fidx);
  } else {
    lua_settop(L, pk.memo - 1);
    lua_pushfstring(L, "spawn: expected a function or {module_name, function_name}, got %s",
                    luaL_typename(L, fidx));
    prefix_where(L);
    return -1;
  }
  char argroot[40];
  if (r == 0) {
    mb_enc_int(e, nargs);
    for (int i = 1; i <= nargs && r == 0; i++)
      if ((r = pack_slot(&pk, fidx + i)) != 0) {
        snprintf(argroot, sizeof argroot, "spawn: argument #%d", i);
        root = argroot;
      }
  }
  return packer_end(&pk, r, root);
}

/* ---- unpacking, in the target VM ---- */

typedef struct unpacker {
  lua_State *L;
  mb_dec_t d;
  int memo;     /* id -> table or function */
  int depth;
} unpacker_t;

static void bad(unpacker_t *u) { luaL_error(u->L, "malformed packed data"); }

static int64_t dec_int(unpacker_t *u) {
  int64_t v;
  if (mb_dec_int(&u->d, &v)) bad(u);
  return v;
}

static const char *dec_bin(unpacker_t *u, size_t *n) {
  const uint8_t *p;
  if (mb_dec_binary(&u->d, &p, n)) bad(u);
  return (const char *)p;
}

typedef struct chunk {
  const char *p;
  size_t n;
} chunk_t;

static const char *reader(lua_State *L, void *ud, size_t *size) {
  (void)L;
  chunk_t *c = ud;
  if (!c->n) return NULL;
  *size = c->n;
  c->n = 0;
  return c->p;
}

/* Pushes the module named by the next binary (its name in *name, *n): from
 * package.loaded when there, else require'd. */
static void push_module(unpacker_t *u, const char **name, size_t *n) {
  lua_State *L = u->L;
  *name = dec_bin(u, n);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushlstring(L, *name, *n);
  if (lua_rawget(L, -2) != LUA_TNIL) { /* the usual case: no call to require */
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 2);
  lua_getglobal(L, "require");
  lua_pushlstring(L, *name, *n);
  lua_call(L, 1, 1);
}

/* A module, then the field named by the next binary: pushes module[field]. */
static void push_field(unpacker_t *u, int need_function) {
  lua_State *L = u->L;
  const char *mod, *k;
  size_t ml, kl;
  push_module(u, &mod, &ml);
  k = dec_bin(u, &kl);
  if (!lua_istable(L, -1)) {
    lua_pushlstring(L, mod, ml);
    luaL_error(L, "module '%s' is not a table", lua_tostring(L, -1));
  }
  lua_pushlstring(L, k, kl);
  lua_gettable(L, -2); /* __index may run, and raise: unpacking is protected */
  if (need_function && !lua_isfunction(L, -1)) {
    lua_pushlstring(L, mod, ml);
    lua_pushlstring(L, k, kl);
    luaL_error(L, "module '%s' has no function '%s'", lua_tostring(L, -2), lua_tostring(L, -1));
  }
  lua_remove(L, -2);
}

static void unpack_kind(unpacker_t *u, int64_t k);

static void unpack_value(unpacker_t *u) { unpack_kind(u, dec_int(u)); }

static void enter_u(unpacker_t *u) {
  if (++u->depth > PACK_DEPTH) luaL_error(u->L, "nested deeper than 200");
  luaL_checkstack(u->L, 8, "unpacking");
}

static void unpack_fn(unpacker_t *u) {
  lua_State *L = u->L;
  enter_u(u);
  int64_t id = dec_int(u);
  size_t clen;
  const char *code = dec_bin(u, &clen);
  int64_t hash = dec_int(u), nup = dec_int(u);
  /* a fresh closure sharing the VM's copy of the prototype, else a full load */
  if (mbl_load_closure(L, (const uint8_t *)code, clen, (lua_Integer)hash) != 0) {
    chunk_t c = {code, clen};
    if (lua_load(L, reader, &c, "=spawn", "b") != LUA_OK) lua_error(L);
  }
  int f = lua_gettop(L);
  lua_pushvalue(L, f);
  lua_rawseti(L, u->memo, id);
  for (int64_t i = 1; i <= nup; i++) {
    int64_t k = dec_int(u);
    if (k == S_UPREF) {
      int64_t gid = dec_int(u), gi = dec_int(u);
      if (lua_rawgeti(L, u->memo, gid) != LUA_TFUNCTION || lua_iscfunction(L, -1) || gi < 1 || gi > 255 ||
          i > 255 || !lua_getupvalue(L, -1, (int)gi) || !lua_getupvalue(L, f, (int)i))
        bad(u);
      lua_pop(L, 2);
      lua_upvaluejoin(L, f, (int)i, -1, (int)gi);
      lua_pop(L, 1);
      continue;
    }
    unpack_kind(u, k);
    if (i > 255 || !lua_setupvalue(L, f, (int)i)) lua_pop(L, 1);
  }
  u->depth--;
}

static void unpack_table(unpacker_t *u) {
  lua_State *L = u->L;
  enter_u(u);
  int64_t id = dec_int(u);
  lua_newtable(L);
  int t = lua_gettop(L);
  lua_pushvalue(L, t);
  lua_rawseti(L, u->memo, id);
  unpack_value(u); /* the metatable, or nil */
  for (;;) {
    int64_t k = dec_int(u);
    if (k == S_END) break;
    unpack_kind(u, k);
    if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) != lua_tonumber(L, -1))) bad(u);
    unpack_value(u);
    lua_rawset(L, t);
  }
  if (!lua_isnil(L, -1)) { /* set last, as the original got it once filled */
    if (!lua_istable(L, -1)) bad(u);
    lua_setmetatable(L, t);
  } else {
    lua_pop(L, 1);
  }
  u->depth--;
}

static void unpack_kind(unpacker_t *u, int64_t k) {
  lua_State *L = u->L;
  int r;
  switch (k) {
  case S_PLAIN:
    if ((r = mb_lterm_decode(L, &u->d)) != 0) luaL_error(L, "cannot decode a value: %s", mb_strerror(r));
    return;
  case S_G: lua_pushglobaltable(L); return;
  case S_ENV: mbl_process_env(L); return;
  case S_MOD: {
    const char *name;
    size_t n;
    push_module(u, &name, &n);
    return;
  }
  case S_FIELD: push_field(u, 0); return;
  case S_MFA: push_field(u, 1); return;
  case S_FN: unpack_fn(u); return;
  case S_TABLE: unpack_table(u); return;
  case S_FNREF:
    if (lua_rawgeti(L, u->memo, dec_int(u)) != LUA_TFUNCTION) bad(u);
    return;
  case S_TREF:
    if (lua_rawgeti(L, u->memo, dec_int(u)) != LUA_TTABLE) bad(u);
    return;
  case S_NOMT: lua_pushnil(L); return;
  case S_TUPLEMT: luaL_getmetatable(L, MB_LTERM_TUPLE); return;
  default: bad(u);
  }
}

typedef struct unpack_job {
  const uint8_t *blob;
  size_t len;
  int spawn; /* a spawn stream (function, count, arguments), else one value */
} unpack_job_t;

/* lua_CFunction run under lua_pcall: pushes what the job's stream holds. */
static int unpack_protected(lua_State *L) {
  unpack_job_t *job = lua_touserdata(L, 1);
  lua_settop(L, 0);
  lua_newtable(L);
  unpacker_t u = {L, {0}, 1, 0};
  if (mb_dec_init(&u.d, mb_lterm_nodes(L), job->blob, job->len)) bad(&u);
  unpack_value(&u);
  if (job->spawn) {
    int64_t n = dec_int(&u);
    if (n < 0 || n > 1000000) bad(&u);
    luaL_checkstack(L, (int)n + 8, "spawn arguments");
    for (int64_t i = 0; i < n; i++) unpack_value(&u);
  }
  if (u.d.p != u.d.end) bad(&u);
  lua_remove(L, 1);
  return lua_gettop(L);
}

/* Runs a job protected: pushes its values and returns how many, or pushes an
 * error message (a string whatever was raised) and returns -1. */
static int run_job(lua_State *L, unpack_job_t *job) {
  int top = lua_gettop(L);
  lua_pushcfunction(L, unpack_protected);
  lua_pushlightuserdata(L, job);
  if (lua_pcall(L, 1, LUA_MULTRET, 0) == LUA_OK) return lua_gettop(L) - top;
  if (lua_type(L, -1) != LUA_TSTRING) { /* no Lua (no __tostring) runs here */
    const char *t = luaL_typename(L, -1);
    lua_pop(L, 1);
    lua_pushfstring(L, "an error object of type %s", t);
  }
  return -1;
}

int mbl_unpack(lua_State *L, const uint8_t *blob, size_t len) {
  unpack_job_t job = {blob, len, 1};
  int n = run_job(L, &job);
  if (n >= 1) return n - 1;
  lua_pushfstring(L, "spawn: cannot start the function in this scheduler's VM: %s", lua_tostring(L, -1));
  lua_remove(L, -2);
  return -1;
}

/* ---- gen.pack, gen.unpack ---- */

/* core.pack(value [, where]) -> packed value */
int mbl_l_pack(lua_State *L) {
  luaL_checkany(L, 1);
  const char *where = luaL_optstring(L, 2, "value");
  lua_settop(L, 2);
  mb_enc_t e;
  mb_enc_init(&e, mb_lterm_nodes(L), 0);
  packer_t pk;
  packer_init(&pk, L, &e);
  int r = pack_slot(&pk, 1);
  if (packer_end(&pk, r, where)) {
    mb_enc_discard(&e);
    return lua_error(L);
  }
  size_t len;
  uint8_t *blob = mb_enc_finish(&e, &len);
  if (!blob) return luaL_error(L, "out of memory");
  mb_lterm_pushpacked(L, blob, len); /* may raise: memory */
  free(blob);
  return 1;
}

/* core.unpack(packed) -> value */
int mbl_l_unpack(lua_State *L) {
  size_t len;
  const uint8_t *blob = mb_lterm_topacked(L, 1, &len);
  if (!blob) {
    lua_pushfstring(L, "gen.unpack: expected packed data (from gen.pack), got %s", luaL_typename(L, 1));
    prefix_where(L);
    return lua_error(L);
  }
  unpack_job_t job = {blob, len, 0};
  if (run_job(L, &job) == 1) return 1;
  lua_pushfstring(L, "gen.unpack: %s", lua_tostring(L, -1));
  prefix_where(L);
  return lua_error(L);
}

/* ---- package.preload of the starting VM, in every VM ---- */

typedef struct preload_entry {
  char *name;
  size_t name_len;
  uint8_t *blob;
  size_t len;
} preload_entry_t;

struct mbl_preload {
  size_t n;
  preload_entry_t e[];
};

mbl_preload_t *mbl_preload_capture(lua_State *L) {
  int top = lua_gettop(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  int pre = lua_gettop(L);
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, pre)) {
    n += lua_type(L, -2) == LUA_TSTRING && lua_isfunction(L, -1);
    lua_pop(L, 1);
  }
  mbl_preload_t *p = n ? calloc(1, sizeof *p + n * sizeof p->e[0]) : NULL;
  if (!p) {
    lua_settop(L, top);
    return NULL;
  }
  lua_pushnil(L);
  while (lua_next(L, pre) && p->n < n) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_isfunction(L, -1)) {
      mb_enc_t e;
      mb_enc_init(&e, NULL, 0);
      packer_t pk;
      packer_init(&pk, L, &e);
      int r = pack_slot(&pk, pre + 2);
      lua_settop(L, pk.memo - 1);
      size_t len, nl;
      const char *name = lua_tolstring(L, -2, &nl);
      uint8_t *blob = r ? NULL : mb_enc_finish(&e, &len);
      char *copy = blob ? malloc(nl + 1) : NULL;
      if (copy) { /* an entry that cannot travel stays in this VM only */
        memcpy(copy, name, nl + 1);
        p->e[p->n++] = (preload_entry_t){copy, nl, blob, len};
      } else {
        free(blob);
        mb_enc_discard(&e);
      }
    }
    lua_pop(L, 1);
  }
  lua_settop(L, top);
  return p;
}

void mbl_preload_free(mbl_preload_t *p) {
  if (!p) return;
  for (size_t i = 0; i < p->n; i++) {
    free(p->e[i].name);
    free(p->e[i].blob);
  }
  free(p);
}

/* A package.searchers entry: finds name among the starting VM's preload. */
static int preload_searcher(lua_State *L) {
  size_t nl;
  const char *name = luaL_checklstring(L, 1, &nl);
  const mbl_preload_t *p = lua_touserdata(L, lua_upvalueindex(1));
  for (size_t i = 0; p && i < p->n; i++) {
    if (p->e[i].name_len != nl || memcmp(p->e[i].name, name, nl)) continue;
    unpack_job_t job = {p->e[i].blob, p->e[i].len, 0};
    if (run_job(L, &job) != 1)
      return luaL_error(L, "package.preload['%s'] of the starting VM: %s", name, lua_tostring(L, -1));
    lua_pushliteral(L, ":preload:");
    return 2;
  }
  lua_pushfstring(L, "no field package.preload['%s'] in the starting VM", name);
  return 1;
}

void mbl_preload_install(lua_State *L, mbl_preload_t *p) {
  if (!p || !p->n) return;
  int top = lua_gettop(L);
  lua_getglobal(L, "package");
  if (lua_istable(L, -1) && lua_getfield(L, -1, "searchers") == LUA_TTABLE) {
    int s = lua_gettop(L);
    lua_Integer n = (lua_Integer)lua_rawlen(L, s);
    for (lua_Integer i = n; i >= 2; i--) { /* make room after the preload searcher */
      lua_rawgeti(L, s, i);
      lua_rawseti(L, s, i + 1);
    }
    lua_pushlightuserdata(L, p);
    lua_pushcclosure(L, preload_searcher, 1);
    lua_rawseti(L, s, n >= 1 ? 2 : 1);
  }
  lua_settop(L, top);
}
