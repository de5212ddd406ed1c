/* lspawn.c: moving a function to another VM for spawn.
 *
 * Processes share no mutable Lua state, so spawn(fn, ...) copies fn: its
 * bytecode, and each upvalue by value. Upvalues that are functions are copied
 * the same way (a function met twice, e.g. a recursive local, is copied once);
 * the globals table stays the target VM's globals; a loaded module is
 * re-required by name; a C function is found again by its place in a loaded
 * module. The result is an ETF term:
 *   {'$spawn', Fn, [Arg...]}
 *   Fn = {'$fn', Id, Bytecode, [Upvalue...]} | {'$fnref', Id}
 *      | {'$mfa', Module, Function} | {'$cfn', Module, Field}
 *   and, as values, {'$G'} and {'$mod', Name}; an upvalue shared with a
 *   function met before is {'$upref', FnId, UpvalueIndex} (joined, not copied). */
#include <stdlib.h>
#include <string.h>
#include "lmb.h"
#include "lterm.h"

typedef struct packer {
  lua_State *L;
  mb_enc_t *e;
  int memo;     /* stack index: function -> id */
  int next_id;
} packer_t;



static void atom(mb_enc_t *e, const char *s) { mb_enc_atom(e, s, strlen(s)); }

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

/* Finds the C function at idx in a loaded module: pushes module name and field. */
static int cfunction_place(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  int loaded = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, loaded)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1)) {
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

static int pack_value(packer_t *pk, int idx, const char *where, const char *upname);

/* The path named in errors: "<where>: upvalue '<name>'", built only when needed. */
static const char *path(char *buf, size_t cap, const char *where, const char *upname) {
  if (!upname) return where;
  snprintf(buf, cap, "%s: upvalue '%s'", where, *upname ? upname : "?");
  return buf;
}

/* An _ENV upvalue that is a table with a metatable (an environment inheriting
 * from the globals, as busted's or a sandbox's with __index = _G), and not a
 * loaded module: its metatable cannot travel, so a copy would lose every
 * global; the function gets the target VM's globals instead, as with _G. */
static int inherited_env(lua_State *L, int idx, const char *name) {
  if (!name || strcmp(name, "_ENV") || lua_type(L, idx) != LUA_TTABLE) return 0;
  if (!lua_getmetatable(L, idx)) return 0;
  lua_pop(L, 1);
  if (module_name(L, idx)) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

static int pack_function(packer_t *pk, int idx, const char *where) {
  lua_State *L = pk->L;
  mb_enc_t *e = pk->e;
  idx = lua_absindex(L, idx);
  if (lua_iscfunction(L, idx)) {
    if (!cfunction_place(L, idx)) {
      lua_pushfstring(L, "%s: cannot send a C function that is not in a loaded module", where);
      return -1;
    }
    mb_enc_tuple(e, 3);
    atom(e, "$cfn");
    mb_enc_binary(e, lua_tostring(L, -2), lua_rawlen(L, -2));
    mb_enc_binary(e, lua_tostring(L, -1), lua_rawlen(L, -1));
    lua_pop(L, 2);
    return 0;
  }
  lua_pushvalue(L, idx);
  if (lua_rawget(L, pk->memo) == LUA_TNUMBER) {
    mb_enc_tuple(e, 2);
    atom(e, "$fnref");
    mb_enc_int(e, lua_tointeger(L, -1));
    lua_pop(L, 1);
    return 0;
  }
  lua_pop(L, 1);
  int id = ++pk->next_id;
  lua_pushvalue(L, idx);
  lua_pushinteger(L, id);
  lua_rawset(L, pk->memo);
  const char *code;
  size_t clen;
  lua_Integer hash;
  if (mbl_code_of(L, idx, &code, &clen, &hash)) {
    lua_pushfstring(L, "%s: cannot dump this function", where);
    return -1;
  }
  int nup = 0;
  while (lua_getupvalue(L, idx, nup + 1)) {
    lua_pop(L, 1);
    nup++;
  }
  mb_enc_tuple(e, 5);
  atom(e, "$fn");
  mb_enc_int(e, id);
  mb_enc_binary(e, code, clen);
  mb_enc_int(e, hash);
  if (nup) mb_enc_list(e, (uint32_t)nup);
  for (int i = 1; i <= nup; i++) {
    /* an upvalue shared with a function met before stays shared in the copy */
    lua_pushlightuserdata(L, lua_upvalueid(L, idx, i));
    if (lua_rawget(L, pk->memo) == LUA_TNUMBER) {
      lua_Integer where_id = lua_tointeger(L, -1);
      lua_pop(L, 1);
      mb_enc_tuple(e, 3);
      atom(e, "$upref");
      mb_enc_int(e, where_id >> 8);
      mb_enc_int(e, where_id & 0xff);
      continue;
    }
    lua_pop(L, 1);
    lua_pushlightuserdata(L, lua_upvalueid(L, idx, i));
    lua_pushinteger(L, ((lua_Integer)id << 8) | i);
    lua_rawset(L, pk->memo);
    const char *name = lua_getupvalue(L, idx, i);
    int rr = 0;
    if (inherited_env(L, -1, name)) {
      mb_enc_tuple(e, 1);
      atom(e, "$G");
    } else {
      rr = pack_value(pk, -1, where, name ? name : "");
    }
    if (rr) {
      lua_remove(L, -2); /* the upvalue; the error message stays on top */
      return rr;
    }
    lua_pop(L, 1);
  }
  mb_enc_nil(e);
  return 0;
}

static int pack_value(packer_t *pk, int idx, const char *where, const char *upname) {
  lua_State *L = pk->L;
  mb_enc_t *e = pk->e;
  char buf[192];
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
  case LUA_TFUNCTION:
    return pack_function(pk, idx, path(buf, sizeof buf, where, upname));
  case LUA_TTABLE:
    lua_pushglobaltable(L);
    if (lua_rawequal(L, -1, idx)) {
      lua_pop(L, 1);
      mb_enc_tuple(e, 1);
      atom(e, "$G");
      return 0;
    }
    lua_pop(L, 1);
    if (module_name(L, idx)) {
      mb_enc_tuple(e, 2);
      atom(e, "$mod");
      mb_enc_binary(e, lua_tostring(L, -1), lua_rawlen(L, -1));
      lua_pop(L, 1);
      return 0;
    }
    break;
  default:
    break;
  }
  char err[256];
  if (mb_lterm_encode(L, idx, e, upname ? "" : where, err, sizeof err)) {
    /* the encoder names the place below the root: put the root in front */
    if (upname) lua_pushfstring(L, "%s: upvalue '%s'%s", where, *upname ? upname : "?", err);
    else lua_pushstring(L, err);
    return -1;
  }
  return 0;
}

int mbl_pack(lua_State *L, int fidx, int nargs, mb_enc_t *e) {
  fidx = lua_absindex(L, fidx);
  lua_createtable(L, 0, 8); /* presized: a spawn's few functions and upvalues */
  packer_t pk = {L, e, lua_gettop(L), 0};
  mb_enc_tuple(e, 3);
  atom(e, "$spawn");
  int r;
  if (lua_istable(L, fidx)) { /* {module_name, function_name} */
    lua_rawgeti(L, fidx, 1);
    lua_rawgeti(L, fidx, 2);
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
      lua_pop(L, 3);
      lua_pushstring(L, "spawn: expected a function or {module_name, function_name}");
      return -1;
    }
    mb_enc_tuple(e, 3);
    atom(e, "$mfa");
    mb_enc_binary(e, lua_tostring(L, -2), lua_rawlen(L, -2));
    mb_enc_binary(e, lua_tostring(L, -1), lua_rawlen(L, -1));
    lua_pop(L, 2);
    r = 0;
  } else if (lua_isfunction(L, fidx)) {
    r = pack_function(&pk, fidx, "spawn: function");
  } else {
    lua_pop(L, 1);
    lua_pushfstring(L, "spawn: expected a function or {module_name, function_name}, got %s",
                    luaL_typename(L, fidx));
    return -1;
  }
  if (r == 0) {
    if (nargs) mb_enc_list(e, (uint32_t)nargs);
    for (int i = 1; i <= nargs && r == 0; i++) {
      r = pack_value(&pk, fidx + i, "spawn: argument", NULL);
      if (r) { /* name which argument */
        lua_pushfstring(L, "%s", lua_tostring(L, -1));
        const char *m = lua_tostring(L, -1);
        const char *rest = strncmp(m, "spawn: argument", 15) == 0 ? m + 15 : m;
        lua_pushfstring(L, "spawn: argument #%d%s", i, rest);
        lua_remove(L, -2);
        lua_remove(L, -2);
      }
    }
    mb_enc_nil(e);
  }
  if (r) {
    lua_remove(L, pk.memo); /* leaves the message */
    return -1;
  }
  lua_pop(L, 1);
  if (e->err) {
    lua_pushfstring(L, "spawn: %s", mb_strerror(e->err));
    return -1;
  }
  return 0;
}

/* ---- unpacking, in the target VM ---- */

typedef struct unpacker {
  lua_State *L;
  mb_dec_t *d;
  int memo;     /* id -> function */
  char why[256]; /* what went wrong, if known */
} unpacker_t;

typedef struct chunk {
  const uint8_t *p;
  size_t n;
} chunk_t;

static const char *reader(lua_State *L, void *ud, size_t *size) {
  (void)L;
  chunk_t *c = ud;
  if (!c->n) return NULL;
  *size = c->n;
  c->n = 0;
  return (const char *)c->p;
}

/* Reads a binary as a Lua string pushed; -1 on error. */
static int push_binary(lua_State *L, mb_dec_t *d) {
  const uint8_t *p;
  size_t n;
  if (mb_dec_binary(d, &p, &n)) return -1;
  lua_pushlstring(L, (const char *)p, n);
  return 0;
}

/* If the next term is a tuple tagged with a '$' atom, returns the tag. */
static int peek_tag(const mb_dec_t *d, char *tag, size_t cap) {
  mb_dec_t pk = *d;
  uint32_t arity;
  const char *s;
  size_t len;
  if (mb_dec_type(&pk) != MB_T_TUPLE || mb_dec_tuple(&pk, &arity) || arity < 1) return 0;
  if (mb_dec_type(&pk) != MB_T_ATOM || mb_dec_atom(&pk, &s, &len)) return 0;
  if (len < 2 || s[0] != '$' || len >= cap) return 0;
  memcpy(tag, s, len);
  tag[len] = 0;
  return 1;
}

static int unpack_value(unpacker_t *u);

static int skip_tag(mb_dec_t *d, uint32_t *arity) {
  const char *s;
  size_t len;
  return mb_dec_tuple(d, arity) || mb_dec_atom(d, &s, &len);
}

static int unpack_fn(unpacker_t *u) {
  lua_State *L = u->L;
  mb_dec_t *d = u->d;
  uint32_t arity, n = 0;
  int64_t id;
  const uint8_t *code;
  size_t clen;
  int64_t hash;
  if (skip_tag(d, &arity) || arity != 5 || mb_dec_int(d, &id) || mb_dec_binary(d, &code, &clen) ||
      mb_dec_int(d, &hash))
    return -1;
  chunk_t c = {code, clen};
  /* a fresh closure sharing the VM's copy of the prototype, else a full load */
  if (mbl_load_closure(L, code, clen, (lua_Integer)hash) != 0 && lua_load(L, reader, &c, "=spawn", "b") != LUA_OK)
    return -1;
  int f = lua_gettop(L);
  lua_pushvalue(L, f);
  lua_rawseti(L, u->memo, id);
  if (mb_dec_type(d) == MB_T_LIST && mb_dec_list(d, &n)) return -1;
  for (uint32_t i = 1; i <= n; i++) {
    char tag[16];
    if (peek_tag(d, tag, sizeof tag) && !strcmp(tag, "$upref")) {
      int64_t gid, gi;
      if (skip_tag(d, &arity) || arity != 3 || mb_dec_int(d, &gid) || mb_dec_int(d, &gi)) return -1;
      if (lua_rawgeti(L, u->memo, gid) != LUA_TFUNCTION || lua_iscfunction(L, -1) ||
          gi < 1 || gi > 255 || !lua_getupvalue(L, -1, (int)gi) || !lua_getupvalue(L, f, (int)i))
        return -1;
      lua_pop(L, 2);
      lua_upvaluejoin(L, f, (int)i, -1, (int)gi);
      lua_pop(L, 1);
      continue;
    }
    if (unpack_value(u)) return -1;
    if (!lua_setupvalue(L, f, (int)i)) lua_pop(L, 1);
  }
  return mb_dec_nil(d);
}

static int unpack_value(unpacker_t *u) {
  lua_State *L = u->L;
  mb_dec_t *d = u->d;
  char tag[16];
  uint32_t arity;
  if (!peek_tag(d, tag, sizeof tag)) return mb_lterm_decode(L, d) ? -1 : 0;
  if (!strcmp(tag, "$fn")) return unpack_fn(u);
  if (skip_tag(d, &arity)) return -1;
  if (!strcmp(tag, "$fnref")) {
    int64_t id;
    if (mb_dec_int(d, &id)) return -1;
    lua_rawgeti(L, u->memo, id);
    return 0;
  }
  if (!strcmp(tag, "$G")) {
    mbl_process_env(L); /* the new process's own globals */
    return 0;
  }
  if (!strcmp(tag, "$mod") || !strcmp(tag, "$cfn") || !strcmp(tag, "$mfa")) {
    const uint8_t *mp;
    size_t ml;
    if (mb_dec_binary(d, &mp, &ml)) return -1;
    char mod[64];
    snprintf(mod, sizeof mod, "%.*s", (int)ml, (const char *)mp);
    /* already loaded in this VM (the usual case): no call to require */
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushlstring(L, (const char *)mp, ml);
    int loaded = lua_rawget(L, -2) != LUA_TNIL;
    lua_remove(L, -2);
    if (!loaded) {
      lua_pop(L, 1);
      lua_getglobal(L, "require");
      lua_pushlstring(L, (const char *)mp, ml);
    }
    if (!loaded && lua_pcall(L, 1, 1, 0) != LUA_OK) {
      snprintf(u->why, sizeof u->why, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "require failed");
      lua_remove(L, -1);
      return -1;
    }
    if (tag[1] == 'm' && tag[2] == 'o') return 0;
    if (!lua_istable(L, -1)) {
      snprintf(u->why, sizeof u->why, "module '%s' is not a table", mod);
      return -1;
    }
    if (push_binary(L, d)) return -1;
    lua_pushvalue(L, -1);
    lua_gettable(L, -3);
    if (!strcmp(tag, "$mfa") && !lua_isfunction(L, -1)) {
      snprintf(u->why, sizeof u->why, "module '%s' has no function '%s'", mod, lua_tostring(L, -2));
      return -1;
    }
    lua_remove(L, -2);
    lua_remove(L, -2);
    return 0;
  }
  return -1;
}

int mbl_unpack(lua_State *L, const uint8_t *blob, size_t len) {
  mb_dec_t d;
  int top = lua_gettop(L);
  lua_newtable(L);
  unpacker_t u = {L, &d, lua_gettop(L), ""};
  uint32_t arity, n = 0;
  if (mb_dec_init(&d, mbl_vm(L) ? mb_runtime_nodes(mbl_vm(L)->brt->rt) : NULL, blob, len) ||
      skip_tag(&d, &arity) || arity != 3 || unpack_value(&u))
    goto bad;
  if (lua_isnil(L, -1)) goto bad;
  if (mb_dec_type(&d) == MB_T_LIST && mb_dec_list(&d, &n)) goto bad;
  for (uint32_t i = 0; i < n; i++)
    if (unpack_value(&u)) goto bad;
  if (mb_dec_nil(&d)) goto bad;
  lua_remove(L, u.memo);
  return (int)n;
bad:
  lua_settop(L, top);
  if (u.why[0]) lua_pushfstring(L, "spawn: cannot start the function in this scheduler's VM: %s", u.why);
  else lua_pushliteral(L, "spawn: cannot start the function in this scheduler's VM");
  return -1;
}
