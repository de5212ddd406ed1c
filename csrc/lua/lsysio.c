/* lsysio.c: waiting for the reply to a request (see lsysio.h), and the one
 * registration call luaopen_moonbeam_core makes for files, subprocesses and
 * mb.blocking. */
#include "lsysio.h"
#include "lterm.h"

/* Takes the reply tagged ref if it has come; pushes its values after the ref
 * and returns their count, or -1 if it has not come yet. */
static int scan(lua_State *L, mbl_proc_t *lp, mb_ref_t ref) {
  const mb_msg_t *m;
  mb_ref_t tag;
  while ((m = mb_mailbox_next(lp->self))) {
    if (mb_msg_kind(m, &tag) != MB_MSG_REPLY || !mb_ref_equal(tag, ref)) continue;
    mb_msg_t *msg = mb_mailbox_take(lp->self);
    size_t len;
    const uint8_t *data = mb_msg_data(msg, &len);
    mb_dec_t d;
    uint32_t arity = 0;
    int bad = mb_dec_init(&d, mb_runtime_nodes(lp->vm->brt->rt), data, len) ||
              mb_dec_tuple(&d, &arity) || arity < 1 || mb_dec_skip(&d);
    lua_settop(L, 0);
    if (!bad) luaL_checkstack(L, (int)arity, "too many results");
    for (uint32_t i = 1; !bad && i < arity; i++) bad = mb_lterm_decode(L, &d);
    mb_msg_free(msg);
    if (bad) luaL_error(L, "malformed reply to an I/O request");
    return (int)arity - 1;
  }
  return -1;
}

static int await_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  mbl_proc_t *lp = mbl_self(L, 1);
  mb_ref_t ref;
  mb_lterm_toref(L, 1, &ref);
  mb_proc_timed_out(lp->self);
  int n = scan(L, lp, ref);
  if (n >= 0) return n;
  mb_proc_set_timeout(lp->self, -1);
  lp->yield_why = MBL_YIELD_WAIT;
  return lua_yieldk(L, 0, 0, await_k);
}

int mbl_await(lua_State *L, mbl_proc_t *lp, mb_ref_t ref) {
  lua_settop(L, 0);
  mb_lterm_pushref(L, ref); /* index 1 across yields */
  mb_mailbox_rewind(lp->self); /* scan from the mark */
  return await_k(L, LUA_OK, 0);
}

void mbl_open_sysio(lua_State *L) {
  mbl_open_blocking(L);
  mbl_open_file(L);
  mbl_open_subprocess(L);
}
