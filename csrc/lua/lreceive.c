/* lreceive.c: mb.receive: selective receive with a timeout.
 *
 * The scan resumes where the last one stopped (the mailbox's cursor); waiting
 * yields the coroutine with WAIT and the continuation scans again. */
#include <stdio.h>
#include "lmb.h"
#include "lterm.h"

void mbl_check_not_in_match(lua_State *L, mbl_proc_t *lp) {
  /* the scan in progress holds the mailbox's cursor: a nested scan would
   * deliver its messages twice */
  if (lp->in_match)
    luaL_error(L, "receive, flush and call cannot be used inside a receive predicate "
                  "(the predicate only decides whether a message matches)");
}

/* Scans for the first acceptable message; returns results pushed, or -1 if none. */
static int scan(lua_State *L, mbl_proc_t *lp, int has_match) {
  const mb_msg_t *m;
  mb_nodes_t *nodes = mb_runtime_nodes(lp->vm->brt->rt);
  while ((m = mb_mailbox_next(lp->self))) {
    mb_proc_add_reductions(lp->self, 1);
    size_t len;
    const uint8_t *data = mb_msg_data(m, &len);
    mb_dec_t d;
    if (mb_dec_init(&d, nodes, data, len) || mb_lterm_decode(L, &d)) {
      /* a malformed term (only C senders can make one): drop it, loudly */
      mb_msg_free(mb_mailbox_take(lp->self));
      fprintf(stderr, "moonbeam: dropped a malformed message from %s\n", "a native sender");
      continue;
    }
    if (has_match) {
      lua_pushvalue(L, 1);
      lua_pushvalue(L, -2);
      lp->in_match = 1;
      int st = lua_pcall(L, 1, 1, 0);
      lp->in_match = 0;
      if (st != LUA_OK) {
        mb_mailbox_rewind(lp->self);
        return lua_error(L); /* the predicate's error, as it raised it */
      }
      int ok = lua_toboolean(L, -1);
      lua_pop(L, 1);
      if (!ok) {
        lua_pop(L, 1);
        continue;
      }
    }
    mb_msg_free(mb_mailbox_take(lp->self));
    return 1;
  }
  return -1;
}

static int receive_k(lua_State *L, int status, lua_KContext ctx);

static int wait_or_timeout(lua_State *L, mbl_proc_t *lp, int has_match) {
  int64_t left = -1;
  if (lp->deadline_ms) {
    uint64_t now = mbl_now_ms();
    if (now >= lp->deadline_ms) {
      lp->deadline_ms = 0;
      mb_mailbox_rewind(lp->self);
      lua_pushnil(L);
      lua_pushliteral(L, "timeout");
      return 2;
    }
    left = (int64_t)(lp->deadline_ms - now);
  }
  mb_proc_set_timeout(lp->self, left);
  lp->yield_why = MBL_YIELD_WAIT;
  return lua_yieldk(L, 0, (lua_KContext)has_match, receive_k);
}

static int receive_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  mbl_proc_t *lp = mbl_self(L, 1);
  int has_match = (int)ctx;
  mb_proc_timed_out(lp->self);
  int n = scan(L, lp, has_match);
  if (n > 0) {
    lp->deadline_ms = 0;
    return n;
  }
  return wait_or_timeout(L, lp, has_match);
}

/* mb.receive([match], [timeout_ms]) | mb.receive(timeout_ms) -> msg | nil, "timeout" */
int mbl_receive(lua_State *L) {
  mbl_proc_t *lp = mbl_self(L, 1);
  mbl_check_not_in_match(L, lp);
  /* receive(500): a number alone is the timeout */
  int targ = 2; /* the timeout's argument number, for errors */
  if (lua_type(L, 1) == LUA_TNUMBER && lua_isnoneornil(L, 2)) {
    lua_settop(L, 1);
    lua_pushnil(L);
    lua_insert(L, 1);
    targ = 1;
  }
  int has_match = !lua_isnoneornil(L, 1);
  if (has_match) luaL_checktype(L, 1, LUA_TFUNCTION);
  lp->deadline_ms = 0;
  int64_t timeout = -1;
  if (!lua_isnoneornil(L, 2)) {
    lua_Number t = luaL_checknumber(L, 2);
    luaL_argcheck(L, t >= 0, targ, "timeout must be >= 0 ms");
    timeout = (int64_t)t;
  }
  lua_settop(L, 2);
  mb_mailbox_rewind(lp->self);
  int n = scan(L, lp, has_match);
  if (n > 0) return n;
  if (timeout == 0) {
    mb_mailbox_rewind(lp->self);
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    return 2;
  }
  if (timeout > 0) lp->deadline_ms = mbl_now_ms() + (uint64_t)timeout;
  return wait_or_timeout(L, lp, has_match);
}

/* mb.flush() -> how many messages it removed */
int mbl_flush(lua_State *L) {
  mbl_proc_t *lp = mbl_self(L, 1);
  mbl_check_not_in_match(L, lp);
  lua_Integer n = 0;
  mb_mailbox_rewind(lp->self);
  while (mb_mailbox_next(lp->self)) {
    mb_msg_free(mb_mailbox_take(lp->self));
    n++;
  }
  lua_pushinteger(L, n);
  return 1;
}

static int never(lua_State *L) {
  lua_pushboolean(L, 0);
  return 1;
}

/* mb.sleep(ms): a receive that accepts nothing */
int mbl_sleep(lua_State *L) {
  lua_Number ms = luaL_checknumber(L, 1);
  luaL_argcheck(L, ms >= 0, 1, "timeout must be >= 0 ms");
  lua_settop(L, 1);
  lua_pushcfunction(L, never);
  lua_insert(L, 1);
  mbl_receive(L);
  return 0;
}
