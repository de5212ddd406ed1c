/* lsubprocess.c: moonbeam.port.spawn and the subprocess port's commands
 * (csrc/io/subprocess.c), on lport.c's port values and command runner. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include "io/subprocess.h"
#include "lmb.h"
#include "lport.h"
#include "lsysio.h"
#include "lterm.h"

extern char **environ;

static const mb_port_type_t *const types[] = {&mb_subproc_type, NULL};

typedef struct strv {
  char **v;
  size_t n, cap;
} strv_t;

static int strv_add(strv_t *s, const char *p, size_t len) {
  if (s->n + 2 > s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 16;
    char **nv = realloc(s->v, cap * sizeof *nv);
    if (!nv) return -1;
    s->v = nv;
    s->cap = cap;
  }
  char *c = malloc(len + 1);
  if (!c) return -1;
  memcpy(c, p, len);
  c[len] = 0;
  s->v[s->n++] = c;
  s->v[s->n] = NULL;
  return 0;
}

static void strv_free(strv_t *s) {
  for (size_t i = 0; i < s->n; i++) free(s->v[i]);
  free(s->v);
}

/* The environment: this process's, with opts.env's names set (a string) or
 * removed (false). The opts.env table is at idx. */
static int build_env(lua_State *L, int idx, strv_t *env) {
  for (char **e = environ; e && *e; e++) {
    const char *eq = strchr(*e, '=');
    if (!eq) continue;
    lua_pushlstring(L, *e, (size_t)(eq - *e));
    int overridden = lua_rawget(L, idx) != LUA_TNIL;
    lua_pop(L, 1);
    if (!overridden && strv_add(env, *e, strlen(*e))) return -1;
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    size_t kl, vl; /* check_args made sure of the types */
    const char *k = lua_tolstring(L, -2, &kl);
    if (lua_type(L, -1) == LUA_TBOOLEAN) {
      lua_pop(L, 1);
      continue;
    }
    const char *v = lua_tolstring(L, -1, &vl);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, k, kl);
    luaL_addchar(&b, '=');
    luaL_addlstring(&b, v, vl);
    luaL_pushresult(&b);
    size_t len;
    const char *kv = lua_tolstring(L, -1, &len);
    int bad = strv_add(env, kv, len);
    lua_pop(L, 2);
    if (bad) return -1;
  }
  return 0;
}

/* Raises on a malformed args list or opts, before anything is allocated. */
static void check_args(lua_State *L) {
  if (lua_istable(L, 2)) {
    lua_Integer n = luaL_len(L, 2);
    for (lua_Integer i = 1; i <= n; i++) {
      int t = lua_rawgeti(L, 2, i);
      if (t != LUA_TSTRING && t != LUA_TNUMBER) luaL_error(L, "port.spawn: args[%d] must be a string", (int)i);
      lua_pop(L, 1);
    }
  }
  if (!lua_istable(L, 3)) return;
  lua_getfield(L, 3, "cwd");
  if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "port.spawn: opts.cwd must be a string");
  lua_pop(L, 1);
  lua_getfield(L, 3, "stderr");
  if (!lua_isnil(L, -1)) {
    const char *m = lua_tostring(L, -1);
    if (!m || (strcmp(m, "message") && strcmp(m, "stdout") && strcmp(m, "ignore") && strcmp(m, "inherit")))
      luaL_error(L, "port.spawn: opts.stderr must be \"message\", \"stdout\", \"ignore\" or \"inherit\"");
  }
  lua_pop(L, 1);
  if (lua_getfield(L, 3, "env") == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      size_t kl;
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &kl) : NULL;
      if (!k) luaL_error(L, "port.spawn: env keys must be strings");
      if (!kl || memchr(k, '=', kl)) luaL_error(L, "port.spawn: bad environment name '%s'", k);
      int t = lua_type(L, -1);
      if (!(t == LUA_TSTRING || t == LUA_TNUMBER || (t == LUA_TBOOLEAN && !lua_toboolean(L, -1))))
        luaL_error(L, "port.spawn: env.%s must be a string or false", k);
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, -1)) {
    luaL_error(L, "port.spawn: opts.env must be a table");
  }
  lua_pop(L, 1);
}

/* subprocess_spawn(file, args, opts) -> port | nil, reason */
static int l_spawn(lua_State *L) {
  mbl_proc_t *lp = mbl_self(L, 0);
  mb_runtime_t *rt = mb_proc_runtime(lp->self);
  size_t flen;
  const char *file = luaL_checklstring(L, 1, &flen);
  luaL_argcheck(L, flen > 0 && strlen(file) == flen, 1, "program must be non-empty, without NUL bytes");
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  check_args(L);
  mb_subproc_opts_t o;
  memset(&o, 0, sizeof o);
  o.file = file;
  strv_t args = {0}, env = {0};
  int nomem = strv_add(&args, file, flen);
  if (lua_istable(L, 2)) {
    lua_Integer n = luaL_len(L, 2);
    for (lua_Integer i = 1; i <= n && !nomem; i++) {
      lua_rawgeti(L, 2, i);
      size_t len;
      const char *a = lua_tolstring(L, -1, &len);
      nomem = strv_add(&args, a, len);
      lua_pop(L, 1);
    }
  }
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "cwd");
    o.cwd = lua_tostring(L, -1); /* anchored in opts */
    lua_pop(L, 1);
    lua_getfield(L, 3, "lines");
    o.lines = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 3, "stderr");
    static const char *const modes[] = {"message", "stdout", "ignore", "inherit", NULL};
    if (!lua_isnil(L, -1)) {
      const char *m = lua_tostring(L, -1);
      int i = 0;
      while (modes[i] && strcmp(modes[i], m)) i++;
      o.stderr_mode = i;
    }
    lua_pop(L, 1);
    lua_getfield(L, 3, "env");
    if (lua_istable(L, -1)) {
      if (!nomem) nomem = build_env(L, lua_gettop(L), &env);
      o.env = env.v;
    }
    lua_pop(L, 1);
  }
  if (nomem) {
    strv_free(&args);
    strv_free(&env);
    return luaL_error(L, "port.spawn: out of memory");
  }
  o.args = args.v;
  mb_port_t *p = NULL;
  int r = mb_subproc_spawn(rt, mb_self(lp->self), &o, &p);
  strv_free(&args);
  strv_free(&env);
  if (r) {
    char buf[32];
    lua_pushnil(L);
    lua_pushstring(L, mb_port_errname(r, buf, sizeof buf));
    return 2;
  }
  mbl_port_push(L, p);
  return 1;
}

static int closed(lua_State *L) {
  lua_pushnil(L);
  lua_pushliteral(L, "closed");
  return 2;
}

static int l_write(lua_State *L) {
  mb_port_t *p = mbl_port_check(L, 1, types);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (!p) return closed(L);
  mb_port_cmd_t *c = mbl_port_cmd(L, MB_SUBPROC_WRITE);
  c->data = (const uint8_t *)data;
  c->len = len;
  return mbl_port_run(L, p, c);
}

static int l_close_stdin(lua_State *L) {
  mb_port_t *p = mbl_port_check(L, 1, types);
  if (!p) return closed(L);
  return mbl_port_run(L, p, mbl_port_cmd(L, MB_SUBPROC_CLOSE_STDIN));
}

static int l_kill(lua_State *L) {
  static const char *const names[] = {"SIGTERM", "SIGKILL", "SIGINT", "SIGHUP", "SIGQUIT",
                                      "SIGUSR1", "SIGUSR2", "SIGSTOP", "SIGCONT", NULL};
  static const int nums[] = {SIGTERM, SIGKILL, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGSTOP, SIGCONT};
  mb_port_t *p = mbl_port_check(L, 1, types);
  int sig;
  if (lua_isinteger(L, 2)) {
    lua_Integer n = lua_tointeger(L, 2);
    luaL_argcheck(L, n >= 0 && n < 65, 2, "bad signal number");
    sig = (int)n;
  } else {
    sig = nums[luaL_checkoption(L, 2, "SIGTERM", names)];
  }
  if (!p) return closed(L);
  mb_port_cmd_t *c = mbl_port_cmd(L, MB_SUBPROC_KILL);
  c->arg[0] = sig;
  return mbl_port_run(L, p, c);
}

static int l_os_pid(lua_State *L) {
  mb_port_t *p = mbl_port_check(L, 1, types);
  if (!p) return closed(L);
  return mbl_port_run(L, p, mbl_port_cmd(L, MB_SUBPROC_OS_PID));
}

void mbl_open_subprocess(lua_State *L) {
  static const luaL_Reg fns[] = {{"subprocess_spawn", l_spawn},
                                 {"subprocess_write", l_write},
                                 {"subprocess_close_stdin", l_close_stdin},
                                 {"subprocess_kill", l_kill},
                                 {"subprocess_os_pid", l_os_pid},
                                 {NULL, NULL}};
  mbl_push_box(L);
  luaL_setfuncs(L, fns, 1);
}
