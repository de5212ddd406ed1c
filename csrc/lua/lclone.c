/* lclone.c: many closures from one loaded prototype.
 *
 * spawn copies a function into another (or the same) VM as bytecode. Loading the
 * bytecode for every spawn would cost a full undump and a private copy of the
 * prototype per process. Instead each VM keeps, per distinct bytecode, a
 * factory: a tiny function `function(...) local u1..un = ... return <F> end`
 * whose nested prototype is F itself with its upvalue descriptors rewritten to
 * capture the factory's locals. Calling the factory makes a fresh closure of F
 * with fresh upvalue cells (initialised to the arguments), sharing F's
 * prototype. The factory is built by splicing F's dumped prototype into a dumped
 * template compiled for n upvalues, so its instructions come from Lua's own
 * compiler; only the binary chunk layout (stable across Lua 5.4.x, checked by
 * comparing headers) is relied on. Anything unexpected falls back to lua_load.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lmb.h"

#define CACHE_MAX 1024
static const char CACHE_KEY = 0;    /* registry: hash -> {bytecode, factory} */
static const char TEMPLATE_KEY = 0; /* registry: n -> template dump */

typedef struct rd {
  const uint8_t *p, *end;
  int bad;
} rd_t;

static size_t rd_size(rd_t *r) {
  size_t x = 0;
  for (int i = 0; i < 10; i++) {
    if (r->p >= r->end) break;
    uint8_t b = *r->p++;
    x = (x << 7) | (b & 0x7f);
    if (b & 0x80) return x;
  }
  r->bad = 1;
  return 0;
}

static void rd_skip(rd_t *r, size_t n) {
  if ((size_t)(r->end - r->p) < n) {
    r->bad = 1;
    r->p = r->end;
  } else {
    r->p += n;
  }
}

static void rd_string(rd_t *r) {
  size_t n = rd_size(r);
  if (n) rd_skip(r, n - 1);
}

/* Positions within one dumped function. */
typedef struct fn_layout {
  const uint8_t *start, *upvals, *protos, *end;
  size_t nupvals;
} fn_layout_t;

static void skip_function(rd_t *r, fn_layout_t *out, int depth);

static void walk_function(rd_t *r, fn_layout_t *f, int depth) {
  f->start = r->p;
  rd_string(r);                 /* source */
  rd_size(r);                   /* linedefined */
  rd_size(r);                   /* lastlinedefined */
  rd_skip(r, 3);                /* numparams, is_vararg, maxstacksize */
  rd_skip(r, rd_size(r) * 4);   /* code */
  size_t nk = rd_size(r);
  for (size_t i = 0; i < nk && !r->bad; i++) {
    if (r->p >= r->end) { r->bad = 1; break; }
    uint8_t t = *r->p++;
    switch (t) {
    case 0: case 1: case 17: break;          /* nil, false, true */
    case 3: case 19: rd_skip(r, 8); break;   /* integer, float */
    case 4: case 20: rd_string(r); break;    /* short, long string */
    default: r->bad = 1;
    }
  }
  f->upvals = r->p;
  f->nupvals = rd_size(r);
  rd_skip(r, f->nupvals * 3);   /* instack, idx, kind */
  f->protos = r->p;
  size_t np = rd_size(r);
  for (size_t i = 0; i < np && !r->bad; i++) skip_function(r, NULL, depth + 1);
  /* debug: lineinfo, abslineinfo, locvars, upvalue names */
  rd_skip(r, rd_size(r));
  size_t na = rd_size(r);
  for (size_t i = 0; i < na && !r->bad; i++) { rd_size(r); rd_size(r); }
  size_t nl = rd_size(r);
  for (size_t i = 0; i < nl && !r->bad; i++) { rd_string(r); rd_size(r); rd_size(r); }
  size_t nu = rd_size(r);
  for (size_t i = 0; i < nu && !r->bad; i++) rd_string(r);
  f->end = r->p;
}

static void skip_function(rd_t *r, fn_layout_t *out, int depth) {
  fn_layout_t tmp;
  if (depth > 200) { r->bad = 1; return; }
  walk_function(r, out ? out : &tmp, depth);
}

typedef struct buf {
  char *p;
  size_t n, cap;
  int oom;
} buf_t;

static void buf_add(buf_t *b, const void *p, size_t sz) {
  if (b->oom) return;
  if (b->n + sz > b->cap) {
    size_t ncap = b->cap ? b->cap * 2 : 256;
    while (ncap < b->n + sz) ncap *= 2;
    char *np = realloc(b->p, ncap);
    if (!np) { b->oom = 1; return; }
    b->p = np;
    b->cap = ncap;
  }
  memcpy(b->p + b->n, p, sz);
  b->n += sz;
}

static int writer(lua_State *L, const void *p, size_t sz, void *ud) {
  (void)L;
  buf_add(ud, p, sz);
  return ((buf_t *)ud)->oom;
}

/* Length of a dumped chunk's header (signature .. LUAC_NUM) plus the byte of
 * the main closure's upvalue count that follows it. */
static size_t header_len(void) {
  return 4 + 1 + 1 + 6 + 3 + sizeof(lua_Integer) + sizeof(lua_Number) + 1;
}

/* Pushes the template dump for n upvalues (cached). */
static int push_template(lua_State *L, int n) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &TEMPLATE_KEY);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &TEMPLATE_KEY);
  }
  if (lua_rawgeti(L, -1, n) == LUA_TSTRING) {
    lua_remove(L, -2);
    return 0;
  }
  lua_pop(L, 1);
  buf_t src = {0};
  char v[16];
  if (n) {
    buf_add(&src, "local ", 6);
    for (int i = 1; i <= n; i++) buf_add(&src, v, (size_t)snprintf(v, sizeof v, "%su%d", i > 1 ? "," : "", i));
    buf_add(&src, " = ... return function() return ", 32);
    for (int i = 1; i <= n; i++) buf_add(&src, v, (size_t)snprintf(v, sizeof v, "%su%d", i > 1 ? "," : "", i));
    buf_add(&src, " end", 4);
  } else {
    buf_add(&src, "return function() end", 21);
  }
  int r = src.oom ? -1 : luaL_loadbuffer(L, src.p, src.n, "=factory");
  free(src.p);
  if (r != LUA_OK) {
    lua_pop(L, r == -1 ? 1 : 2);
    return -1;
  }
  buf_t b = {0};
  r = lua_dump(L, writer, &b, 1);
  lua_pop(L, 1);
  if (r || b.oom) {
    free(b.p);
    lua_pop(L, 1);
    return -1;
  }
  lua_pushlstring(L, b.p, b.n);
  free(b.p);
  lua_pushvalue(L, -1);
  lua_rawseti(L, -3, n);
  lua_remove(L, -2); /* the template table */
  return 0;
}

/* Builds and pushes the factory for F's bytecode, or returns -1. */
static int build_factory(lua_State *L, const uint8_t *code, size_t len) {
  size_t h = header_len();
  if (len <= h) return -1;
  rd_t rf = {code + h, code + len, 0};
  fn_layout_t f;
  walk_function(&rf, &f, 0);
  if (rf.bad || f.end != code + len || f.nupvals > 200) return -1;
  if (push_template(L, (int)f.nupvals)) return -1;
  size_t tlen;
  const uint8_t *t = (const uint8_t *)lua_tolstring(L, -1, &tlen);
  if (tlen <= h || memcmp(t, code, h - 1)) { /* same VM build: same header */
    lua_pop(L, 1);
    return -1;
  }
  rd_t rt = {t + h, t + tlen, 0};
  fn_layout_t m, nested;
  walk_function(&rt, &m, 0);
  rd_t rn = {m.protos, m.end, 0};
  if (rd_size(&rn) != 1) rt.bad = 1;
  walk_function(&rn, &nested, 1);
  if (rt.bad || rn.bad || nested.nupvals != f.nupvals) {
    lua_pop(L, 1);
    return -1;
  }
  /* factory = template header and main function, with the nested prototype
   * replaced by F whose upvalues capture the factory's registers 0..n-1 */
  buf_t b = {0};
  buf_add(&b, t, (size_t)(nested.start - t));
  buf_add(&b, f.start, (size_t)(f.upvals - f.start));
  rd_t ru = {f.upvals, f.protos, 0};
  rd_size(&ru);
  buf_add(&b, f.upvals, (size_t)(ru.p - f.upvals)); /* the count */
  for (size_t i = 0; i < f.nupvals; i++) {
    char d[3] = {1, (char)i, 0}; /* in the enclosing stack, register i, plain */
    buf_add(&b, d, 3);
  }
  buf_add(&b, f.protos, (size_t)(f.end - f.protos));
  buf_add(&b, nested.end, (size_t)(t + tlen - nested.end));
  lua_pop(L, 1); /* the template */
  int r = b.oom ? -1 : luaL_loadbufferx(L, b.p, b.n, "=factory", "b");
  free(b.p);
  if (r != LUA_OK) {
    if (r != -1) lua_pop(L, 1);
    return -1;
  }
  return 0;
}

/* FNV-1a over the bytecode: the cache key (an entry keeps the bytecode to
 * compare, so a collision only costs a rebuild). */
static lua_Integer hash_code(const uint8_t *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
  return (lua_Integer)(h >> 1);
}

static const char CODEOF_KEY = 0;  /* registry, weak keys: closure -> entry */

/* Pushes the weak table closure -> {bytecode, factory|false, hash}. */
static void push_codeof(lua_State *L) { mbl_push_weak(L, &CODEOF_KEY, "k"); }

int mbl_code_of(lua_State *L, int fidx, const char **code, size_t *len, lua_Integer *hash) {
  fidx = lua_absindex(L, fidx);
  push_codeof(L);
  lua_pushvalue(L, fidx);
  if (lua_rawget(L, -2) != LUA_TTABLE) {
    lua_pop(L, 1);
    buf_t b = {0};
    lua_pushvalue(L, fidx);
    int r = lua_dump(L, writer, &b, 0);
    lua_pop(L, 1);
    if (r || b.oom) {
      free(b.p);
      lua_pop(L, 1);
      return -1;
    }
    lua_createtable(L, 3, 0);
    lua_pushlstring(L, b.p, b.n);
    lua_rawseti(L, -2, 1);
    lua_pushboolean(L, 0);
    lua_rawseti(L, -2, 2);
    lua_pushinteger(L, hash_code((const uint8_t *)b.p, b.n));
    lua_rawseti(L, -2, 3);
    free(b.p);
    lua_pushvalue(L, fidx);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
  }
  /* the entry stays referenced by the closure's cache slot: its string lives on */
  lua_rawgeti(L, -1, 1);
  *code = lua_tolstring(L, -1, len);
  lua_rawgeti(L, -2, 3);
  *hash = lua_tointeger(L, -1);
  lua_pop(L, 4);
  return 0;
}

int mbl_load_closure(lua_State *L, const uint8_t *code, size_t len, lua_Integer key) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &CACHE_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 16);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &CACHE_KEY);
  }
  int cache = lua_gettop(L);
  if (!key) key = hash_code(code, len);
  /* entry: {bytecode, factory, hash} */
  int found = 0;
  if (lua_rawgeti(L, cache, key) == LUA_TTABLE) {
    size_t el;
    lua_rawgeti(L, -1, 1);
    const char *ec = lua_tolstring(L, -1, &el);
    found = ec && el == len && memcmp(ec, code, len) == 0;
    lua_pop(L, 1);
  }
  if (!found) {
    lua_settop(L, cache);
    if (build_factory(L, code, len) != 0) {
      lua_pop(L, 1);
      return -1;
    }
    /* bounded: a program that spawns endless distinct functions starts over */
    lua_getfield(L, cache, "n");
    lua_Integer n = lua_tointeger(L, -1) + 1;
    lua_pop(L, 1);
    if (n > CACHE_MAX) {
      lua_createtable(L, 0, 16);
      lua_replace(L, cache);
      lua_pushvalue(L, cache);
      lua_rawsetp(L, LUA_REGISTRYINDEX, &CACHE_KEY);
      n = 1;
    }
    lua_pushinteger(L, n);
    lua_setfield(L, cache, "n");
    lua_createtable(L, 3, 0);
    lua_pushlstring(L, (const char *)code, len);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, 2);
    lua_pushinteger(L, key);
    lua_rawseti(L, -2, 3);
    lua_pushvalue(L, -1);
    lua_rawseti(L, cache, key);
    lua_remove(L, -2); /* the factory: the entry has it */
  }
  /* stack: cache, entry */
  lua_rawgeti(L, -1, 2);
  lua_call(L, 0, 1); /* upvalues start nil; the caller sets them */
  /* remember where this closure came from: spawning it again needs no dump */
  push_codeof(L);
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -4);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  lua_replace(L, cache);
  lua_settop(L, cache);
  return 0;
}
