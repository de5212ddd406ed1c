-- luarocks --lua-version=5.4 make moonbeam-scm-1.rockspec   (from the checkout)
rockspec_format = "3.0"
package = "moonbeam"
version = "scm-1"

source = {
  url = "git+file://.",
}

description = {
  summary = "Erlang/OTP-style processes, supervisors and messaging for Lua 5.4, on every core",
  detailed = [[
moonbeam is a runtime written in C over libuv that gives Lua programs lightweight
processes with mailboxes, links, monitors, a registry and PubSub, scheduled
preemptively on every core, with OTP's behaviours (GenServer, Supervisor, Task,
Agent, gen_statem) written in Lua on top.
]],
  license = "MIT",
  labels = { "actors", "concurrency", "otp", "erlang", "libuv" },
}

dependencies = {
  "lua >= 5.4",
}

external_dependencies = {
  LIBUV = { header = "uv.h", library = "uv" },
  OPENSSL = { header = "openssl/ssl.h", library = "ssl" },
}

-- The Makefile is the one build: `make rock` builds build/moonbeam/core.so and
-- `make install-rock` installs it, lua/moonbeam/ and bin/moonbeam.
build = {
  type = "make",
  build_target = "rock",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LIBUV_INCDIR = "$(LIBUV_INCDIR)",
    LIBUV_LIBDIR = "$(LIBUV_LIBDIR)",
    OPENSSL_INCDIR = "$(OPENSSL_INCDIR)",
    OPENSSL_LIBDIR = "$(OPENSSL_LIBDIR)",
  },
  install_target = "install-rock",
  install_variables = {
    LIBDIR = "$(LIBDIR)",
    LUADIR = "$(LUADIR)",
    BINDIR = "$(BINDIR)",
  },
}

test = {
  type = "command",
  command = "make test",
}
