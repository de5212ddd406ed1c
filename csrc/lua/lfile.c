/* lfile.c: moonbeam.file's C side: every operation is a request to file.c on
 * the caller's scheduler loop, answered by a reply the caller waits for
 * (mbl_await), so the caller yields and its scheduler runs the others while the
 * disk works. Failures return nil, reason; misuse raises. A stream is a
 * "moonbeam.file" userdata holding one reference to its mb_file_t. */
#include <string.h>
#include "io/file.h"
#include "lsysio.h"
#include "lterm.h"

#define FILE_MT "moonbeam.file"

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

/* ---- streams ---- */

static mb_file_t *check_file(lua_State *L, int idx) {
  mb_file_t **u = luaL_checkudata(L, idx, FILE_MT);
  return *u;
}

/* file_new() -> a closed stream object */
static int l_new(lua_State *L) {
  mb_file_t **u = lua_newuserdatauv(L, sizeof *u, 0);
  *u = NULL;
  luaL_setmetatable(L, FILE_MT);
  if (!(*u = mb_file_new())) return luaL_error(L, "out of memory");
  return 1;
}

/* file_open(stream, path, mode) -> true | nil, reason */
static int l_open(lua_State *L) {
  mb_file_t *f = check_file(L, 1);
  const char *path = path_arg(L, 2);
  const char *mode = luaL_optstring(L, 3, "r");
  if (mb_file_is_open(f)) return luaL_argerror(L, 1, "already open");
  call_t c = begin(L);
  int r = mb_file_open(c.rt, c.self, c.ref, f, path, mode);
  if (r == MB_EINVAL) {
    mb_mailbox_rewind(c.lp->self);
    return luaL_argerror(L, 3, "bad mode (r, w, a, r+, w+, a+, with b ignored and x after w)");
  }
  return finish(L, &c, r, "einval");
}

/* The open stream at 1, or NULL after pushing nil, "closed". */
static mb_file_t *open_file(lua_State *L) {
  mb_file_t *f = check_file(L, 1);
  if (mb_file_is_open(f)) return f;
  lua_pushnil(L);
  lua_pushliteral(L, "closed");
  return NULL;
}

static int m_read(lua_State *L) {
  mb_file_t *f = open_file(L);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0 && n <= (1 << 30), 2, "size must be 0..2^30");
  if (!f) return 2;
  if (n == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  call_t c = begin(L);
  return finish(L, &c, mb_file_read(c.rt, c.self, c.ref, f, (size_t)n), "closed");
}

static int m_write(lua_State *L) {
  mb_file_t *f = open_file(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (!f) return 2;
  call_t c = begin(L);
  return finish(L, &c, mb_file_write(c.rt, c.self, c.ref, f, data, len), "closed");
}

static int m_seek(lua_State *L) {
  static const char *const whences[] = {"set", "cur", "end", NULL};
  mb_file_t *f = open_file(L);
  int whence = luaL_checkoption(L, 2, "cur", whences);
  lua_Integer off = luaL_optinteger(L, 3, 0);
  if (!f) return 2;
  call_t c = begin(L);
  return finish(L, &c, mb_file_seek(c.rt, c.self, c.ref, f, whence, off), "closed");
}

static int m_close(lua_State *L) {
  mb_file_t *f = open_file(L);
  if (!f) return 2;
  call_t c = begin(L);
  return finish(L, &c, mb_file_close(c.rt, c.self, c.ref, f), "closed");
}

static int m_gc(lua_State *L) {
  mb_file_t **u = luaL_checkudata(L, 1, FILE_MT);
  mb_file_release(*u);
  *u = NULL;
  return 0;
}

static int m_toclose(lua_State *L) {
  mb_file_t **u = luaL_checkudata(L, 1, FILE_MT);
  if (*u) mb_file_close_now(*u);
  return 0;
}

static int m_tostring(lua_State *L) {
  mb_file_t **u = luaL_checkudata(L, 1, FILE_MT);
  lua_pushfstring(L, "file (%s, %p)", *u && mb_file_is_open(*u) ? "open" : "closed", (void *)*u);
  return 1;
}

static const luaL_Reg funcs[] = {
  {"file_read", l_read}, {"file_write", l_write}, {"file_stat", l_stat}, {"file_list", l_list},
  {"file_rename", l_rename}, {"file_remove", l_remove}, {"file_mkdir", l_mkdir},
  {"file_rmdir", l_rmdir}, {"file_new", l_new}, {"file_open", l_open}, {NULL, NULL}
};

static const luaL_Reg methods[] = {
  {"read", m_read}, {"write", m_write}, {"seek", m_seek}, {"close", m_close}, {NULL, NULL}
};

void mbl_open_file(lua_State *L) {
  mbl_push_box(L);
  luaL_setfuncs(L, funcs, 1);
  if (luaL_newmetatable(L, FILE_MT)) {
    lua_createtable(L, 0, 4);
    mbl_push_box(L);
    luaL_setfuncs(L, methods, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, m_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, m_toclose);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, m_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
}
