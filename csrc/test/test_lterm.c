/* test_lterm.c: Lua value <-> term conversion (csrc/lua/lterm.c) in a real lua_State.
 * Lua-side checks run as chunks through helpers registered below:
 *   enc(v) -> bytes | nil, err      dec(bytes) -> v | error      rt(v) -> dec(enc(v)) */
#include <lualib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/term.h"
#include "../lua/lterm.h"
#include "mb_test.h"

#define B(...) (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})

static mb_nodes_t *nodes;
static char last_err[256];

/* Encodes the value at idx (root "msg"); the term bytes (no prefix) or NULL. */
static uint8_t *encode(lua_State *L, int idx, size_t *len, int *rc)
{
  mb_enc_t e;
  uint8_t *b;
  mb_enc_init(&e, nodes, 4);
  last_err[0] = 0;
  *rc = mb_lterm_encode(L, idx, &e, "msg", last_err, sizeof last_err);
  if (*rc) {
    if (mb_enc_finish(&e, len) != NULL) *rc = 12345; /* the error must stick */
    return NULL;
  }
  b = mb_enc_finish(&e, len);
  memmove(b, b + 4, *len - 4); /* the prefix is the caller's: drop it */
  *len -= 4;
  return b;
}

static int l_enc(lua_State *L)
{
  size_t len;
  int rc, top = lua_gettop(L);
  uint8_t *b = encode(L, 1, &len, &rc);
  if (lua_gettop(L) != top) return luaL_error(L, "encode changed the stack");
  if (!b) {
    lua_pushnil(L);
    lua_pushstring(L, last_err);
    lua_pushinteger(L, rc);
    return 3;
  }
  if (mb_term_validate(b, len, MB_TERM_MAX_DEPTH)) return luaL_error(L, "encoding does not validate");
  lua_pushlstring(L, (const char *)b, len);
  free(b);
  return 1;
}

static int l_dec(lua_State *L)
{
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  mb_dec_t d;
  int rc, top = lua_gettop(L);
  if (mb_dec_init(&d, nodes, (const uint8_t *)s, len)) return luaL_error(L, "bad version");
  rc = mb_lterm_decode(L, &d);
  if (rc) {
    if (lua_gettop(L) != top) return luaL_error(L, "decode failed but pushed");
    return luaL_error(L, "decode: %d", rc);
  }
  if (lua_gettop(L) != top + 1) return luaL_error(L, "decode pushed %d values", lua_gettop(L) - top);
  if (d.p != d.end) return luaL_error(L, "trailing bytes");
  return 1;
}

static int l_rt(lua_State *L)
{
  lua_settop(L, 1);
  lua_pushcfunction(L, l_enc);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 2);
  if (lua_isnil(L, -2)) return luaL_error(L, "%s", lua_tostring(L, -1));
  lua_pop(L, 1);
  lua_remove(L, 1); /* the bytes alone at 1 */
  return l_dec(L);
}

static int l_pid(lua_State *L)
{
  mb_lterm_pushpid(L, mb_pid_make((uint32_t)luaL_checkinteger(L, 1), (uint32_t)luaL_checkinteger(L, 2),
                                  (uint32_t)luaL_checkinteger(L, 3)));
  return 1;
}

static int l_ref(lua_State *L)
{
  mb_ref_t r = {(uint32_t)luaL_checkinteger(L, 1),
                {(uint32_t)luaL_checkinteger(L, 2), (uint32_t)luaL_checkinteger(L, 3),
                 (uint32_t)luaL_checkinteger(L, 4)}};
  mb_lterm_pushref(L, r);
  return 1;
}

static int l_checkpid(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)mb_lterm_checkpid(L, 1));
  return 1;
}

/* packed(bytes) -> packed value; blob(v) -> its bytes, or nil if not packed */
static int l_packed(lua_State *L)
{
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  mb_lterm_pushpacked(L, (const uint8_t *)s, len);
  return 1;
}

static int l_blob(lua_State *L)
{
  size_t len;
  const uint8_t *b = mb_lterm_topacked(L, 1, &len);
  if (b) lua_pushlstring(L, (const char *)b, len);
  else lua_pushnil(L);
  return 1;
}

/* Deep equality in Lua, NaN equal to NaN. */
static const char *prelude =
    "function deq(a, b)\n"
    "  if a ~= a and b ~= b then return true end\n"
    "  if type(a) ~= 'table' or type(b) ~= 'table' then\n"
    "    return a == b and math.type(a) == math.type(b)\n"
    "  end\n"
    "  for k, v in pairs(a) do if not deq(v, b[k]) then return false end end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "function hex(s) return (s:gsub('.', function(c) return string.format('%d ', c:byte()) end)) end\n";

static lua_State *new_state(void)
{
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  mb_lterm_open(L, nodes);
  lua_newtable(L);
  lua_pushcfunction(L, mb_lterm_atom);
  lua_setfield(L, -2, "atom");
  lua_pushcfunction(L, mb_lterm_tuple);
  lua_setfield(L, -2, "tuple");
  lua_setglobal(L, "mb");
  lua_register(L, "enc", l_enc);
  lua_register(L, "dec", l_dec);
  lua_register(L, "rt", l_rt);
  lua_register(L, "pid", l_pid);
  lua_register(L, "ref", l_ref);
  lua_register(L, "checkpid", l_checkpid);
  lua_register(L, "packed", l_packed);
  lua_register(L, "blob", l_blob);
  if (luaL_dostring(L, prelude)) printf("prelude: %s\n", lua_tostring(L, -1));
  return L;
}

/* Runs a chunk; 1 if it ran without error (else prints the error). */
static int run(lua_State *L, const char *code)
{
  if (luaL_dostring(L, code) == LUA_OK) {
    lua_settop(L, 0);
    return 1;
  }
  printf("  lua: %s\n", lua_tostring(L, -1));
  lua_settop(L, 0);
  return 0;
}

/* The error message for encoding the value of expression `expr`. */
static const char *enc_error(lua_State *L, const char *expr, int *rc)
{
  char code[512];
  size_t len;
  int top;
  uint8_t *b;
  snprintf(code, sizeof code, "return %s", expr);
  *rc = 0;
  last_err[0] = 0;
  if (luaL_dostring(L, code)) return lua_tostring(L, -1);
  top = lua_gettop(L);
  if ((b = encode(L, -1, &len, rc))) {
    free(b);
    lua_settop(L, 0);
    return "(no error)";
  }
  if (lua_gettop(L) != top) return "(stack changed)";
  lua_settop(L, 0);
  return last_err;
}

MB_TEST(roundtrip_scalars)
{
  lua_State *L = new_state();
  MB_CHECK(run(L,
    "for _, v in ipairs{true, false, 0, 255, 256, -1, 2^31 | 0, -(2^31 | 0) - 1,\n"
    "  math.maxinteger, math.mininteger, 1.5, -0.0, 1/0, -1/0, 1e300, 5e-324, 3.0,\n"
    "  '', 'abc', '\\0bin\\255ary'} do\n"
    "  local back = rt(v)\n"
    "  assert(back == v and math.type(back) == math.type(v), tostring(v))\n"
    "end\n"
    "assert(rt(nil) == nil)\n"
    "local n = rt(0/0); assert(n ~= n)\n"
    "assert(1/rt(-0.0) == -1/0)\n"
    "assert(#rt(string.rep('x', 100000)) == 100000)\n"));
  lua_close(L);
}

MB_TEST(roundtrip_tables)
{
  lua_State *L = new_state();
  MB_CHECK(run(L,
    "local cases = {\n"
    "  {}, {1, 2, 3}, {a = 1, b = {c = {}}}, {[1] = 1, [3] = 3}, {1, 2, x = 3},\n"
    "  {{a = {1, {2, {3}}}}, {b = 'x'}}, {[true] = 1, [1.5] = 2, [-7] = 3, [0] = 4},\n"
    "  {[{1}] = 'tablekey'}, {'a', {}, {{}}}, {false, false},\n"
    "}\n"
    "for i, v in ipairs(cases) do\n"
    "  local back = rt(v)\n"
    "  assert(getmetatable(back) == nil)\n"
    "  if i == 8 then assert(deq(next(back), {1}) and select(2, next(back)) == 'tablekey')\n"
    "  else assert(deq(back, v), 'case ' .. i) end\n"
    "end\n"
    "-- the same table twice in sibling positions is copied twice, not a cycle\n"
    "local shared = {1}\n"
    "local b = rt({shared, shared, k = shared})\n"
    "assert(deq(b, {{1}, {1}, k = {1}}) and b[1] ~= b[2])\n"
    "-- keys 1..n exactly make a list, anything else a map\n"
    "assert(enc({1, 2}):byte(2) == 108)\n"
    "assert(enc({}):byte(2) == 116)\n"
    "assert(enc({1, nil, 3}):byte(2) == 116)\n"
    "assert(enc({[2] = 2}):byte(2) == 116)\n"
    "assert(enc({1, [1.5] = 1}):byte(2) == 116)\n"
    "assert(enc(setmetatable({1, 2}, {__len = function() return 5 end})):byte(2) == 108)\n"));
  lua_close(L);
}

MB_TEST(exact_bytes)
{
  lua_State *L = new_state();
  MB_CHECK(run(L,
    "local function is(v, ...)\n"
    "  local want = string.char(131, ...)\n"
    "  local got = enc(v)\n"
    "  assert(got == want, hex(got) .. '~= ' .. hex(want))\n"
    "end\n"
    "is(nil, 119, 3, 110, 105, 108)\n"
    "is(true, 119, 4, 116, 114, 117, 101)\n"
    "is(false, 119, 5, 102, 97, 108, 115, 101)\n"
    "is(7, 97, 7)\n"
    "is(-1, 98, 255, 255, 255, 255)\n"
    "is(math.mininteger, 110, 8, 1, 0, 0, 0, 0, 0, 0, 0, 128)\n"
    "is(1.5, 70, 63, 248, 0, 0, 0, 0, 0, 0)\n"
    "is('ab', 109, 0, 0, 0, 2, 97, 98)\n"
    "is({1, 2}, 108, 0, 0, 0, 2, 97, 1, 97, 2, 106)\n"
    "is({}, 116, 0, 0, 0, 0)\n"
    "is({a = 1}, 116, 0, 0, 0, 1, 109, 0, 0, 0, 1, 97, 97, 1)\n"
    "is(mb.atom'ok', 119, 2, 111, 107)\n"
    "is(mb.tuple(), 104, 0)\n"
    "is(mb.tuple(mb.atom'ok', 1), 104, 2, 119, 2, 111, 107, 97, 1)\n"
    "is(mb.tuple(1, nil, 3), 104, 3, 97, 1, 119, 3, 110, 105, 108, 97, 3)\n"
    "is({[mb.atom'k'] = mb.atom'v'}, 116, 0, 0, 0, 1, 119, 1, 107, 119, 1, 118)\n"
    "is(pid(0, 5, 6), 88, 119, 4, 97, 64, 104, 111, 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0, 9)\n"
    "is(ref(0, 1, 2, 3), 90, 0, 3, 119, 4, 97, 64, 104, 111, 0, 0, 0, 9,\n"
    "   0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3)\n"));
  lua_close(L);
}

MB_TEST(atoms_tuples)
{
  lua_State *L = new_state();
  MB_CHECK(run(L,
    "local a = mb.atom'hello'\n"
    "assert(rawequal(a, mb.atom('hel' .. 'lo')))\n"
    "assert(tostring(a) == 'hello' and type(a) == 'userdata')\n"
    "assert(rt(a) == 'hello')\n"
    "assert(rt(mb.atom'nil') == nil and rt(mb.atom'true') == true)\n"
    "assert(#enc(mb.atom(string.rep('a', 255))) == 258)\n"
    "assert(not pcall(mb.atom, string.rep('a', 256)))\n"
    "assert(pcall(mb.atom, string.rep('\\u{e9}', 255)))\n"
    "assert(not pcall(mb.atom, '\\xff'))\n"
    "local ok, err = pcall(mb.atom, {})\n"
    "assert(not ok and err:find('string expected'))\n"
    "local t = mb.tuple(1, 'x', nil, {2})\n"
    "assert(t.n == 4 and t[2] == 'x')\n"
    "local back = rt(t)\n"
    "assert(getmetatable(back) == nil and deq(back, {1, 'x', nil, {2}}) and back.n == nil)\n"
    "assert(deq(rt(mb.tuple()), {}))\n"
    "assert(deq(rt({mb.tuple(mb.atom'ok', 1)}), {{'ok', 1}}))\n"));
  lua_close(L);
}

MB_TEST(pids_refs)
{
  lua_State *L = new_state();
  MB_CHECK(run(L,
    "local p = pid(0, 42, 1)\n"
    "assert(rawequal(p, pid(0, 42, 1)) and p == pid(0, 42, 1) and p ~= pid(0, 42, 2))\n"
    "assert(tostring(p) == '<0.42.1>')\n"
    "assert(tostring(pid(3, 4294967295, 16777215)) == '<3.4294967295.16777215>')\n"
    "assert(getmetatable(p) == false)\n"
    "local t = {[p] = 'x'}\n"
    "assert(t[pid(0, 42, 1)] == 'x')\n"
    "assert(rawequal(rt(p), p))\n"
    "collectgarbage(); collectgarbage()\n"
    "assert(t[pid(0, 42, 1)] == 'x')  -- still interned while referenced\n"
    "local r = ref(0, 1, 2, 3)\n"
    "assert(rawequal(r, ref(0, 1, 2, 3)) and r ~= ref(0, 1, 2, 4))\n"
    "assert(tostring(r) == '#Ref<0.3.2.1>')\n"
    "assert(rawequal(rt(r), r))\n"
    "local m = rt({from = p, tag = r, [p] = r})\n"
    "assert(m.from == p and m.tag == r and m[p] == r)\n"
    "assert(checkpid(p) > 0)\n"
    "local ok, err = pcall(checkpid, {})\n"
    "assert(not ok and err:find('pid expected, got table'), err)\n"
    "ok, err = pcall(checkpid, r)\n"
    "assert(not ok and err:find('pid expected, got moonbeam.ref'), err)\n"));
  /* the C accessors */
  mb_lterm_pushpid(L, mb_pid_make(0, 9, 9));
  mb_lterm_pushref(L, (mb_ref_t){0, {7, 8, 9}});
  lua_newtable(L);
  {
    mb_ref_t r;
    MB_CHECK(mb_lterm_topid(L, 1) == mb_pid_make(0, 9, 9));
    MB_CHECK(mb_lterm_topid(L, 2) == 0 && mb_lterm_topid(L, 3) == 0);
    MB_CHECK(mb_lterm_toref(L, 2, &r) == 1 && r.id[0] == 7 && r.id[2] == 9);
    MB_CHECK(mb_lterm_toref(L, 1, &r) == 0 && mb_lterm_toref(L, -1, &r) == 0);
    MB_CHECK(mb_lterm_nodes(L) == nodes);
  }
  lua_close(L);
}

MB_TEST(decode_erlang)
{
  lua_State *L = new_state();
  MB_CHECK(run(L,
    "local function d(...) return dec(string.char(131, ...)) end\n"
    "assert(deq(d(107, 0, 3, 1, 2, 3), {1, 2, 3}))                 -- [1,2,3] as STRING_EXT\n"
    "assert(deq(d(106), {}))                                       -- []\n"
    "assert(d(100, 0, 5, 104, 101, 108, 108, 111) == 'hello')      -- ATOM_EXT\n"
    "assert(d(115, 4, 116, 114, 117, 101) == true)                 -- SMALL_ATOM_EXT true\n"
    "assert(d(100, 0, 3, 110, 105, 108) == nil)\n"
    "assert(deq(d(104, 2, 119, 2, 111, 107, 97, 1), {'ok', 1}))    -- {ok, 1}\n"
    "assert(getmetatable(d(104, 0)) == nil)\n"
    "assert(deq(d(116, 0, 0, 0, 1, 119, 1, 97, 97, 1), {a = 1}))   -- #{a => 1}\n"
    "assert(d(110, 8, 1, 0, 0, 0, 0, 0, 0, 0, 128) == math.mininteger)\n"
    "assert(deq(d(108, 0, 0, 0, 1, 104, 0, 106), {{}}))\n"
    "assert(deq(d(108, 0, 0, 0, 0, 106), {}))                      -- 0-element LIST_EXT\n"
    "assert(deq(d(108, 0, 0, 0, 2, 119, 3, 110, 105, 108, 97, 2, 106), {nil, 2}))\n"));
  lua_close(L);
}

/* Decodes bytes; returns the code, checks nothing was pushed and the cursor is back. */
static int dec_rc(lua_State *L, const uint8_t *b, size_t len)
{
  mb_dec_t d;
  int top = lua_gettop(L), rc;
  mb_dec_init(&d, nodes, b, len);
  rc = mb_lterm_decode(L, &d);
  if (rc && (lua_gettop(L) != top || d.p != b + 1)) return 9999;
  lua_settop(L, top);
  return rc;
}

MB_TEST(decode_errors)
{
  lua_State *L = new_state();
  uint8_t deep[1 + 5 * 65 + 1 + 65];
  size_t i, n;
  MB_CHECK_EQ_INT(dec_rc(L, B(131, 110, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)), MB_ERANGE);
  MB_CHECK_EQ_INT(dec_rc(L, B(131, 110, 8, 0, 0, 0, 0, 0, 0, 0, 0, 128)), MB_ERANGE);
  MB_CHECK_EQ_INT(dec_rc(L, B(131, 108, 0, 0, 0, 1, 110, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 106)), MB_ERANGE);
  /* improper list [a|b] */
  MB_CHECK_EQ_INT(dec_rc(L, B(131, 108, 0, 0, 0, 1, 119, 1, 'a', 119, 1, 'b')), MB_EBADTERM);
  /* map keys nil and NaN */
  MB_CHECK_EQ_INT(dec_rc(L, B(131, 116, 0, 0, 0, 1, 119, 3, 'n', 'i', 'l', 97, 1)), MB_EBADTERM);
  MB_CHECK_EQ_INT(dec_rc(L, B(131, 116, 0, 0, 0, 1, 70, 127, 248, 0, 0, 0, 0, 0, 0, 97, 1)), MB_EBADTERM);
  /* truncated, unknown tag, huge count */
  MB_CHECK_EQ_INT(dec_rc(L, B(131, 104, 2, 97, 1)), MB_EBADTERM);
  MB_CHECK_EQ_INT(dec_rc(L, B(131, 117, 0, 0)), MB_EBADTERM);
  MB_CHECK_EQ_INT(dec_rc(L, B(131, 108, 255, 255, 255, 255, 106, 106)), MB_EBADTERM);
  /* 65 nested lists fail, 64 decode; [] is a Lua table, so it counts as a level */
  for (int levels = 65; levels >= 63; levels--) {
    n = 0;
    deep[n++] = 131;
    for (i = 0; i < (size_t)levels; i++) {
      deep[n++] = 108;
      deep[n++] = 0; deep[n++] = 0; deep[n++] = 0; deep[n++] = 1;
    }
    deep[n++] = 106;
    for (i = 0; i < (size_t)levels; i++) deep[n++] = 106;
    MB_CHECK_EQ_INT(dec_rc(L, deep, n), levels >= 64 ? MB_EDEPTH : 0);
    if (levels == 64) { /* with the innermost [] as an integer instead */
      deep[1 + 5 * 64] = 97;
      memmove(deep + 1 + 5 * 64 + 2, deep + 1 + 5 * 64 + 1, 64);
      deep[1 + 5 * 64 + 1] = 0;
      MB_CHECK_EQ_INT(dec_rc(L, deep, n + 1), 0);
    }
  }
  MB_CHECK_EQ_INT(lua_gettop(L), 0);
  lua_close(L);
}

MB_TEST(encode_errors)
{
  lua_State *L = new_state();
  int rc;
  MB_CHECK(run(L, "co = coroutine.create(print)\n"
                  "cyc = {1, 2, {}}; cyc[3].x = cyc\n"
                  "self = {}; self.me = self\n"
                  "deep = {}; local t = deep; for i = 1, 64 do t.a = {}; t = t.a end\n"
                  "ok64 = {}; t = ok64; for i = 1, 63 do t.a = {}; t = t.a end\n"));
  MB_CHECK_EQ_STR(enc_error(L, "{handler = print}", &rc), "msg.handler: cannot send a function");
  MB_CHECK_EQ_INT(rc, MB_EINVAL);
  MB_CHECK_EQ_STR(enc_error(L, "{1, 2, {x = co}}", &rc), "msg[3].x: cannot send a coroutine");
  MB_CHECK_EQ_STR(enc_error(L, "print", &rc), "msg: cannot send a function");
  MB_CHECK_EQ_STR(enc_error(L, "cyc", &rc), "msg[3].x: table cycle");
  MB_CHECK_EQ_INT(rc, MB_EINVAL);
  MB_CHECK_EQ_STR(enc_error(L, "self", &rc), "msg.me: table cycle");
  MB_CHECK_EQ_STR(enc_error(L, "{['two words'] = {[7] = {[true] = print}}}", &rc),
                  "msg[\"two words\"][7][true]: cannot send a function");
  MB_CHECK_EQ_STR(enc_error(L, "{[print] = 1}", &rc), "msg[<function>]: cannot send a function");
  MB_CHECK_EQ_STR(enc_error(L, "{[{f = print}] = 1}", &rc), "msg[<table>].f: cannot send a function");
  MB_CHECK_EQ_STR(enc_error(L, "{[mb.atom'k'] = co}", &rc), "msg.k: cannot send a coroutine");
  MB_CHECK_EQ_STR(enc_error(L, "{f = io.stdout}", &rc), "msg.f: cannot send a userdata (FILE*)");
  MB_CHECK_EQ_STR(enc_error(L, "mb.tuple(1, print)", &rc), "msg[2]: cannot send a function");
  MB_CHECK_EQ_STR(enc_error(L, "{x = {1, 2.5, co}}", &rc), "msg.x[3]: cannot send a coroutine");
  MB_CHECK_EQ_STR(enc_error(L, "ok64", &rc), "(no error)");
  {
    const char *m = enc_error(L, "deep", &rc);
    const char *tail = "...: nested deeper than 64";
    MB_CHECK_EQ_INT(rc, MB_EDEPTH);
    MB_CHECK(strncmp(m, "msg.a.a.a", 9) == 0);
    MB_CHECK(strlen(m) > strlen(tail) && strcmp(m + strlen(m) - strlen(tail), tail) == 0);
    MB_CHECK(strlen(m) < 100);
  }
  /* light userdata */
  lua_pushlightuserdata(L, &rc);
  {
    size_t len;
    MB_CHECK(encode(L, 1, &len, &rc) == NULL);
    MB_CHECK_EQ_STR(last_err, "msg: cannot send a light userdata");
  }
  /* a root name and a short buffer */
  lua_settop(L, 0);
  lua_getglobal(L, "print");
  {
    mb_enc_t e;
    char small[8];
    mb_enc_init(&e, NULL, 0);
    MB_CHECK_EQ_INT(mb_lterm_encode(L, 1, &e, "reply", small, sizeof small), MB_EINVAL);
    MB_CHECK_EQ_STR(small, "reply: ");
    MB_CHECK_EQ_INT(e.err, MB_EINVAL);
    mb_enc_discard(&e);
  }
  MB_CHECK_EQ_INT(lua_gettop(L), 1);
  lua_close(L);
}

MB_TEST(remote_nodes)
{
  lua_State *L = new_state();
  mb_enc_t e;
  mb_dec_t d;
  uint8_t *b;
  size_t len;
  int idx = mb_nodes_index(nodes, "far@host", 8, 5);
  MB_REQUIRE(idx > 0);
  mb_lterm_pushpid(L, mb_pid_make((uint32_t)idx, 1, 2));
  MB_CHECK(run(L, "")); /* clears the stack */
  mb_lterm_pushpid(L, mb_pid_make((uint32_t)idx, 1, 2));
  luaL_tolstring(L, 1, NULL);
  MB_CHECK_EQ_STR(lua_tostring(L, -1), "<1.1.2>");
  lua_pop(L, 1);
  /* a remote pid cannot be encoded without the node table */
  mb_enc_init(&e, NULL, 0);
  MB_CHECK_EQ_INT(mb_lterm_encode(L, 1, &e, "msg", last_err, sizeof last_err), MB_EINVAL);
  mb_enc_discard(&e);
  mb_enc_init(&e, nodes, 0);
  MB_CHECK_EQ_INT(mb_lterm_encode(L, 1, &e, "msg", last_err, sizeof last_err), 0);
  b = mb_enc_finish(&e, &len);
  MB_REQUIRE(b);
  mb_dec_init(&d, nodes, b, len);
  MB_CHECK_EQ_INT(mb_lterm_decode(L, &d), 0);
  MB_CHECK(lua_rawequal(L, 1, 2));
  mb_dec_init(&d, NULL, b, len);
  MB_CHECK_EQ_INT(mb_lterm_decode(L, &d), MB_ELIMIT);
  MB_CHECK_EQ_INT(lua_gettop(L), 2);
  free(b);
  lua_close(L);
}

/* A packed value crosses a message as itself only with its keyed hash: the
 * same shape built by hand, or with one byte changed, decodes as plain data. */
MB_TEST(packed_values)
{
  lua_State *L = new_state();
  MB_CHECK(run(L,
    "local p = packed('\\131bytecode here')\n"
    "assert(type(p) == 'userdata' and blob(p) == '\\131bytecode here')\n"
    "assert(getmetatable(p) == false)\n"
    "local back = rt({p, 1})\n"
    "assert(blob(back[1]) == '\\131bytecode here' and back[2] == 1)\n"
    "local bytes = enc(p)\n"
    "-- {'$packed', <<mac:8>>, <<blob>>}: 131, 104 3, 119 7 $packed, 109 0 0 0 8 mac, 109 len blob\n"
    "assert(bytes:sub(1, 12) == '\\131\\104\\3\\119\\7$packed')\n"
    "local mac = bytes:sub(18, 25)\n"
    "local forged = mb.tuple(mb.atom'$packed', mac, '\\131bytecode HERE')\n"
    "local f = rt(forged)\n"
    "assert(blob(f) == nil and type(f) == 'table' and f[1] == '$packed' and f[3] == '\\131bytecode HERE')\n"
    "local wrong = bytes:sub(1, 24) .. string.char((bytes:byte(25) + 1) % 256) .. bytes:sub(26)\n"
    "local w = dec(wrong)\n"
    "assert(type(w) == 'table' and w[2] == wrong:sub(18, 25))\n"
    "assert(blob(dec(bytes)) == '\\131bytecode here')\n"
    "assert(blob(rt(packed(''))) == '')\n"
    "local long = string.rep('x', 1000)\n"
    "assert(blob(rt(packed(long))) == long)\n"));
  lua_close(L);
}

/* A tuple whose n was raised far past its fields is refused, not encoded as
 * millions of nils; trailing nils within the slack still travel. */
MB_TEST(tuple_forged_n)
{
  lua_State *L = new_state();
  int rc;
  MB_CHECK_EQ_STR(enc_error(L, "(function() local t = mb.tuple(1, 2) t.n = 100000000 return t end)()", &rc),
                  "msg: tuple n larger than its elements (n = 100000000, 2 fields)");
  MB_CHECK_EQ_INT(rc, MB_EINVAL);
  MB_CHECK_EQ_STR(enc_error(L, "{x = (function() local t = mb.tuple(1) t.n = 5000 return t end)()}", &rc),
                  "msg.x: tuple n larger than its elements (n = 5000, 1 fields)");
  MB_CHECK(run(L,
    "local t = mb.tuple(1, 2) t.n = 1026\n"
    "local back = rt(t)\n"
    "assert(back[1] == 1 and back[2] == 2 and #enc(t) > 1026)\n"));
  lua_close(L);
}

int main(void)
{
  nodes = mb_nodes_new("a@ho", 9);
  MB_RUN(roundtrip_scalars);
  MB_RUN(roundtrip_tables);
  MB_RUN(exact_bytes);
  MB_RUN(atoms_tuples);
  MB_RUN(pids_refs);
  MB_RUN(decode_erlang);
  MB_RUN(decode_errors);
  MB_RUN(encode_errors);
  MB_RUN(remote_nodes);
  MB_RUN(packed_values);
  MB_RUN(tuple_forged_n);
  mb_nodes_free(nodes);
  return mb_test_summary();
}
