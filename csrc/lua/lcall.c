/* lcall.c: gen calls (mb.call): request, monitor, wait for the reply by ref. */
#include "lmb.h"
#include "lterm.h"

/* Looks among the messages queued since the call began for its reply or the
 * DOWN of its monitor, by their headers: nothing else is decoded. Pushes the
 * results and returns their count, or -1 if neither is there yet. */
static int scan_reply(lua_State *L, mbl_proc_t *lp) {
  const mb_msg_t *m;
  mb_ref_t tag;
  while ((m = mb_mailbox_next(lp->self))) {
    int kind = mb_msg_kind(m, &tag);
    if (kind == MB_MSG_PLAIN || !mb_ref_equal(tag, lp->await_ref)) continue;
    mb_msg_t *msg = mb_mailbox_take(lp->self);
    size_t len;
    const uint8_t *data = mb_msg_data(msg, &len);
    mb_dec_t d;
    uint32_t arity;
    int bad = mb_dec_init(&d, mb_runtime_nodes(lp->vm->brt->rt), data, len) || mb_dec_tuple(&d, &arity);
    /* reply {Ref, Value}; DOWN {'DOWN', Ref, process, Pid, Reason} */
    for (uint32_t i = 1; !bad && i < arity; i++) bad = mb_dec_skip(&d);
    if (!bad) bad = mb_lterm_decode(L, &d);
    mb_msg_free(msg);
    if (bad) luaL_error(L, "call: malformed %s", kind == MB_MSG_REPLY ? "reply" : "DOWN");
    if (kind == MB_MSG_REPLY) {
      mb_demonitor(lp->self, lp->await_ref, 1);
      lua_pushboolean(L, 1);
      lua_insert(L, -2);
      return 2;
    }
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "down");
    lua_rotate(L, -3, 2);
    return 3;
  }
  return -1;
}

static int call_k(lua_State *L, int status, lua_KContext ctx);

static int call_wait(lua_State *L, mbl_proc_t *lp) {
  int64_t left = -1;
  if (lp->deadline_ms) {
    uint64_t now = mbl_now_ms();
    if (now >= lp->deadline_ms) {
      lp->deadline_ms = 0;
      mb_abandon_reply(lp->self, lp->await_ref);
      mb_demonitor(lp->self, lp->await_ref, 1);
      mb_mailbox_rewind(lp->self);
      lua_pushboolean(L, 0);
      lua_pushliteral(L, "timeout");
      return 2;
    }
    left = (int64_t)(lp->deadline_ms - now);
  }
  mb_proc_set_timeout(lp->self, left);
  lp->yield_why = MBL_YIELD_WAIT;
  return lua_yieldk(L, 0, 0, call_k);
}

static int call_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  mbl_proc_t *lp = mbl_self(L, 1);
  mb_proc_timed_out(lp->self);
  int n = scan_reply(L, lp);
  if (n > 0) {
    lp->deadline_ms = 0;
    return n;
  }
  return call_wait(L, lp);
}

/* call(pid, request, [timeout_ms]) -> true, reply | false, "down", reason |
 * false, "timeout" | false, "calling_self" (pid is the caller). Monitors pid, sends {'$gen_call', {Self, Ref}, Request},
 * waits for the reply tagged Ref or the monitor's DOWN; a reply arriving after
 * the timeout is dropped on arrival (mb_abandon_reply). */
int mbl_call(lua_State *L) {
  mbl_proc_t *lp = mbl_self(L, 1);
  mbl_check_not_in_match(L, lp);
  mb_runtime_t *rt = mb_proc_runtime(lp->self);
  mb_pid_t to = mb_lterm_checkpid(L, 1);
  luaL_checkany(L, 2);
  if (to == mb_self(lp->self)) { /* nobody would answer: fail at once, as OTP's calling_self */
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "calling_self");
    return 2;
  }
  int64_t timeout = -1;
  if (!lua_isnoneornil(L, 3)) {
    lua_Number t = luaL_checknumber(L, 3);
    luaL_argcheck(L, t >= 0, 3, "timeout must be >= 0 ms");
    timeout = (int64_t)t;
  }
  mb_enc_t e;
  char err[256];
  mb_enc_init(&e, mb_runtime_nodes(rt), mb_msg_prefix());
  mb_enc_tuple(&e, 3);
  mb_enc_atom(&e, "$gen_call", 9);
  mb_enc_tuple(&e, 2);
  mb_enc_pid(&e, mb_self(lp->self));
  size_t ref_at = e.len;
  mb_enc_ref(&e, (mb_ref_t){0, {0, 0, 0}}); /* placeholder: the monitor's ref goes here */
  if (mb_lterm_encode(L, 2, &e, "request", err, sizeof err)) {
    mb_enc_discard(&e);
    return luaL_error(L, "%s", err);
  }
  /* messages queued before this point cannot hold the reply */
  mb_mailbox_mark(lp->self);
  mb_ref_t ref;
  int r = mb_monitor(lp->self, to, &ref);
  if (r) {
    mb_enc_discard(&e);
    return luaL_error(L, "call: %s", mb_strerror(r));
  }
  /* patch the ref in place: same node, same length */
  size_t tail = e.len;
  e.len = ref_at;
  mb_enc_ref(&e, ref);
  e.len = tail;
  mb_send_enc(rt, mb_self(lp->self), to, &e);
  lp->await_ref = ref;
  lp->deadline_ms = timeout > 0 ? mbl_now_ms() + (uint64_t)timeout : 0;
  mb_mailbox_rewind(lp->self); /* scan from the mark */
  lua_settop(L, 0);
  int n = scan_reply(L, lp);
  if (n > 0) {
    lp->deadline_ms = 0;
    return n;
  }
  if (timeout == 0) {
    lp->deadline_ms = 1; /* already due */
  }
  return call_wait(L, lp);
}
