/* lfile.c: moonbeam.file's C side: every operation is a request to file.c on
 * the caller's scheduler loop, answered by a reply the caller waits for
 * (mbl_await), so the caller yields and its scheduler runs the others while the
 * disk works. Failures return nil, reason; misuse raises. An open file is a
 * port (file.c's mb_file_type), driven by lport.c's command runner. */
#include <string.h>
#include "io/file.h"
#include "lport.h"
#include "lsysio.h"
#include "lterm.h"

static const char *path_arg(lua_State *L, int idx) {
  size_t len;
  const char *p = luaL_checklstring(L, idx, &len);
  luaL_argcheck(L, len > 0 && strlen(p) == len, idx, "path must be non-empty, without NUL bytes");
  return p;
}

typedef struct call {
  mbl_proc_t *lp;
  mb_runtime_t *rt;
  mb_pid_t self;
  mb_ref_t ref;
} call_t;

/* Starts a request: a fresh ref, the mailbox marked before the request. */
static call_t begin(lua_State *L) {
  call_t c;
  c.lp = mbl_self(L, 1);
  c.rt = mb_proc_runtime(c.lp->self);
  c.self = mb_self(c.lp->self);
  c.ref = mb_make_ref(c.rt);
  mb_mailbox_mark(c.lp->self);
  return c;
}

/* Waits for the reply, or returns nil, reason if the request was refused. */
static int finish(lua_State *L, call_t *c, int r, const char *refused) {
  if (r == 0) return mbl_await(L, c->lp, c->ref);
  mb_mailbox_rewind(c->lp->self);
  lua_pushnil(L);
  lua_pushstring(L, r == MB_ENOMEM ? "enomem" : refused);
  return 2;
}

static int l_read(lua_State *L) {
  const char *path = path_arg(L, 1);
  call_t c = begin(L);
  return finish(L, &c, mb_file_read_all(c.rt, c.self, c.ref, path), "einval");
}

static int l_write(lua_State *L) {
  const char *path = path_arg(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  int append = lua_toboolean(L, 3);
  call_t c = begin(L);
  return finish(L, &c, mb_file_write_all(c.rt, c.self, c.ref, path, data, len, append), "einval");
}

static int l_stat(lua_State *L) {
  const char *path = path_arg(L, 1);
  int nofollow = lua_toboolean(L, 2);
  call_t c = begin(L);
  return finish(L, &c, mb_file_stat(c.rt, c.self, c.ref, path, nofollow), "einval");
}

static int l_list(lua_State *L) {
  const char *path = path_arg(L, 1);
  call_t c = begin(L);
  return finish(L, &c, mb_file_list(c.rt, c.self, c.ref, path), "einval");
}

static int l_rename(lua_State *L) {
  const char *from = path_arg(L, 1), *dest = path_arg(L, 2);
  call_t c = begin(L);
  return finish(L, &c, mb_file_rename(c.rt, c.self, c.ref, from, dest), "einval");
}

static int l_remove(lua_State *L) {
  const char *path = path_arg(L, 1);
  call_t c = begin(L);
  return finish(L, &c, mb_file_remove(c.rt, c.self, c.ref, path), "einval");
}

static int l_mkdir(lua_State *L) {
  const char *path = path_arg(L, 1);
  lua_Integer mode = luaL_optinteger(L, 2, 0777);
  luaL_argcheck(L, mode >= 0 && mode <= 07777, 2, "mode must be 0..0o7777");
  call_t c = begin(L);
  return finish(L, &c, mb_file_mkdir(c.rt, c.self, c.ref, path, (int)mode), "einval");
}

static int l_rmdir(lua_State *L) {
  const char *path = path_arg(L, 1);
  call_t c = begin(L);
  return finish(L, &c, mb_file_rmdir(c.rt, c.self, c.ref, path), "einval");
}

/* ---- streams: file ports ---- */

static const mb_port_type_t *const file_types[] = {&mb_file_type, NULL};

/* file_open(path, mode) -> port | nil, reason */
static int l_open(lua_State *L) {
  const char *path = path_arg(L, 1);
  const char *mode = luaL_optstring(L, 2, "r");
  call_t c = begin(L);
  int r = mb_file_open(c.rt, c.self, c.ref, path, mode);
  if (r == MB_EINVAL) {
    mb_mailbox_rewind(c.lp->self);
    return luaL_argerror(L, 2, "bad mode (r, w, a, r+, w+, a+, with b ignored and x after w)");
  }
  return finish(L, &c, r, "einval");
}

static int closed(lua_State *L) {
  lua_pushnil(L);
  lua_pushliteral(L, "closed");
  return 2;
}

static int l_sread(lua_State *L) {
  mb_port_t *p = mbl_port_check(L, 1, file_types);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0 && n <= (1 << 30), 2, "size must be 0..2^30");
  if (!p) return closed(L);
  mb_port_cmd_t *c = mbl_port_cmd(L, MB_FILE_READ);
  c->arg[0] = n;
  return mbl_port_run(L, p, c);
}

static int l_swrite(lua_State *L) {
  mb_port_t *p = mbl_port_check(L, 1, file_types);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (!p) return closed(L);
  mb_port_cmd_t *c = mbl_port_cmd(L, MB_FILE_WRITE);
  c->data = (const uint8_t *)data;
  c->len = len;
  return mbl_port_run(L, p, c);
}

static int l_sseek(lua_State *L) {
  static const char *const whences[] = {"set", "cur", "end", NULL};
  mb_port_t *p = mbl_port_check(L, 1, file_types);
  int whence = luaL_checkoption(L, 2, "cur", whences);
  lua_Integer off = luaL_optinteger(L, 3, 0);
  if (!p) return closed(L);
  mb_port_cmd_t *c = mbl_port_cmd(L, MB_FILE_SEEK);
  c->arg[0] = whence;
  c->arg[1] = off;
  return mbl_port_run(L, p, c);
}

static int l_sreadline(lua_State *L) {
  mb_port_t *p = mbl_port_check(L, 1, file_types);
  if (!p) return closed(L);
  return mbl_port_run(L, p, mbl_port_cmd(L, MB_FILE_READ_LINE));
}

static int l_sclose(lua_State *L) {
  mb_port_t *p = mbl_port_check(L, 1, file_types);
  if (!p) return closed(L);
  return mbl_port_run(L, p, mbl_port_cmd(L, MB_FILE_CLOSE));
}

static const luaL_Reg funcs[] = {
  {"file_read", l_read}, {"file_write", l_write}, {"file_stat", l_stat}, {"file_list", l_list},
  {"file_rename", l_rename}, {"file_remove", l_remove}, {"file_mkdir", l_mkdir},
  {"file_rmdir", l_rmdir}, {"file_open", l_open}, {"file_sread", l_sread},
  {"file_swrite", l_swrite}, {"file_sseek", l_sseek}, {"file_sclose", l_sclose},
  {"file_sreadline", l_sreadline}, {NULL, NULL}
};

void mbl_open_file(lua_State *L) {
  mbl_push_box(L);
  luaL_setfuncs(L, funcs, 1);
}
