/* lpool.c: the coroutine pool of a VM. */
#include "lmb.h"

/* Finished coroutines are kept for reuse (a spawn then allocates no thread
 * and no stack): a sequence in the VM's registry, at most POOL_MAX long. */
#define POOL_MAX 1024
static const char POOL_KEY = 0;

static int push_pool(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &POOL_KEY) == LUA_TTABLE) return lua_gettop(L);
  lua_pop(L, 1);
  lua_createtable(L, 64, 0);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &POOL_KEY);
  return lua_gettop(L);
}

lua_State *mbl_pool_take(lua_State *L) {
  int pool = push_pool(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, pool);
  lua_State *co;
  if (n > 0) {
    lua_rawgeti(L, pool, n);
    co = lua_tothread(L, -1);
    lua_pushnil(L);
    lua_rawseti(L, pool, n);
  } else {
    co = lua_newthread(L);
  }
  lua_remove(L, pool);
  return co; /* on the stack */
}

/* Keeps a coroutine that returned normally (empty, no call in progress). */
void mbl_pool_put(lua_State *L, lua_State *co) {
  if (lua_status(co) != LUA_OK) return;
  lua_Debug ar;
  if (lua_getstack(co, 0, &ar)) return; /* still inside a call: never reuse */
  lua_settop(co, 0);
  int pool = push_pool(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, pool);
  if (n < POOL_MAX) {
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    lua_rawseti(L, pool, n + 1);
  }
  lua_pop(L, 1);
}
