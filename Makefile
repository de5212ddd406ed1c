# moonbeam: the one entry point.
#
#   make run      installs missing Debian packages, runs the flagship example
#   make test     installs missing Debian packages, runs the C tests and the specs
#   make          builds build/libmoonbeam.{a,so} and the Lua module build/moonbeam/core.so
#   make asan | tsan | fuzz | clean | deps | check (test without the package check)
#
# Every test run ends with one line "N passed, N failed" (tests, not checks) from
# .ci/summarize, and fails if a test failed, crashed, timed out or did not build.
#
# C tests: each csrc/test/test_X.c is one binary $(BUILD)/test/test_X, linked with
# $(BUILD)/libmoonbeam.a, libuv, pthread and libm, and run from the repository root.
# Naming convention: a test whose name starts with "test_l" (test_lterm.c,
# test_lua_*.c) is a Lua binding test and also links the objects of csrc/lua/*.c
# ($(BUILD)/libmoonbeam_lua.a) and liblua5.4. It links with --as-needed, so a
# core test that happens to match (test_link.c) gets nothing it does not use.

SHELL := /bin/bash
.DEFAULT_GOAL := all
.DELETE_ON_ERROR:
.SUFFIXES:

# ------------------------------------------------------------------ toolchain

CC      ?= cc
CFLAGS  ?= -std=c11 -O2 -g -Wall -Wextra -D_GNU_SOURCE -fPIC
LDFLAGS ?=
AR      ?= ar
LIBFLAG ?= -shared
LUA     ?= lua5.4
BUSTED  ?= /usr/bin/busted
BUILD   ?= build

# Flags the code needs whatever CFLAGS says (luarocks passes its own CFLAGS).
REQ_CFLAGS := -std=c11 -D_GNU_SOURCE -fPIC -Icsrc/include -Icsrc -MMD -MP

# luarocks passes LUA_INCDIR and LIBUV_INCDIR/LIBUV_LIBDIR; otherwise pkg-config.
LUA_CFLAGS := $(if $(LUA_INCDIR),-I$(LUA_INCDIR),$(shell pkg-config --cflags lua5.4 2>/dev/null))
LUA_LIBS   := $(shell pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4)
UV_CFLAGS  := $(if $(LIBUV_INCDIR),-I$(LIBUV_INCDIR)) $(if $(OPENSSL_INCDIR),-I$(OPENSSL_INCDIR))
UV_LIBS    := $(if $(LIBUV_LIBDIR),-L$(LIBUV_LIBDIR)) -luv
# luarocks passes OPENSSL_LIBDIR; otherwise pkg-config (TLS: csrc/io/tls.c).
SSL_LIBS   := $(if $(OPENSSL_LIBDIR),-L$(OPENSSL_LIBDIR) -lssl -lcrypto,$(shell pkg-config --libs openssl 2>/dev/null || echo -lssl -lcrypto))
SYS_LIBS   := -lpthread

# ------------------------------------------------------------------ sanitizers
# `make asan` and `make tsan` rerun `check` with SANITIZER set, CC=$(SAN_CC) and
# their own build directory. gcc and clang both work for the C tests; the specs
# under tsan need gcc (clang 14's TSan runtime crashes when preloaded into lua5.4).

SAN_CC       ?= gcc
SAN_IS_CLANG := $(if $(SANITIZER),$(findstring clang,$(shell $(CC) --version 2>/dev/null | head -n1)))
SAN_ARCH     := $(shell uname -m)
SAN_RT_NAME   = $(if $(SAN_IS_CLANG),libclang_rt.$(1)-$(SAN_ARCH).so,lib$(1).so)
SAN_RT        = $(shell $(CC) -print-file-name=$(call SAN_RT_NAME,$(1)))
TSAN_SUPP    := $(CURDIR)/.ci/tsan.supp

ifeq ($(SANITIZER),asan)
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
TEST_ENV  := ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# lua5.4 is not instrumented: preload the runtime; Lua's own allocations are not ours.
SPEC_ENV  := LD_PRELOAD=$(call SAN_RT,asan) ASAN_OPTIONS=detect_leaks=0:halt_on_error=1 \
             UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
else ifeq ($(SANITIZER),tsan)
SAN_FLAGS := -fsanitize=thread -fno-omit-frame-pointer
TEST_ENV  := TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(TSAN_SUPP)
# Shells crash with libtsan preloaded, so the runtime is preloaded through the
# dynamic loader for lua5.4 alone (not through LD_PRELOAD, which os.execute's
# /bin/sh would inherit); specs start their own lua5.4 subprocesses as $MB_LUA.
LUA_BIN   := $(shell command -v $(LUA))
LDSO      := $(shell ldd $(LUA_BIN) 2>/dev/null | awk '/ld-linux/ {print $$1}')
SPEC_LAUNCH := $(LDSO) --preload $(call SAN_RT,tsan)
SPEC_ENV  := MB_SANITIZER=tsan MB_LUA='$(SPEC_LAUNCH) $(LUA_BIN)' \
             TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(TSAN_SUPP)
else ifneq ($(SANITIZER),)
$(error SANITIZER must be asan, tsan or empty, not "$(SANITIZER)")
endif

ALL_CFLAGS  = $(REQ_CFLAGS) $(CFLAGS) $(SAN_FLAGS) $(UV_CFLAGS)
ALL_LDFLAGS = $(LDFLAGS) $(SAN_FLAGS)

# ------------------------------------------------------------------ sources
# Wildcards: files appear in csrc/ as the core is written.

# csrc/io/tls.c is not in the core: it is the moonbeam.tls_core module, the
# one object linked with OpenSSL (loaded by moonbeam.tls when TLS is used).
CORE_SRC := $(sort $(wildcard csrc/core/*.c) $(filter-out csrc/io/tls.c,$(wildcard csrc/io/*.c)))
LUA_SRC  := $(sort $(wildcard csrc/lua/*.c))
TEST_SRC := $(sort $(wildcard csrc/test/test_*.c))
CORE_OBJ := $(CORE_SRC:csrc/%.c=$(BUILD)/obj/%.o)
LUA_OBJ  := $(LUA_SRC:csrc/%.c=$(BUILD)/obj/%.o)
# csrc/http: HTTP/1.1 over libhttp-parser, WebSocket over libwslay; OpenSSL for
# the binding's crypto (lcrypto.c). Linked into the Lua module and its tests.
HTTP_SRC  := $(sort $(wildcard csrc/http/*.c))
HTTP_OBJ  := $(HTTP_SRC:csrc/%.c=$(BUILD)/obj/%.o)
HTTP_LIBS := -lhttp_parser -lwslay -lcrypto

STATIC_LIB := $(BUILD)/libmoonbeam.a
SHARED_LIB := $(BUILD)/libmoonbeam.so
LUA_LIB    := $(BUILD)/libmoonbeam_lua.a
MODULE     := $(BUILD)/moonbeam/core.so
TLS_MODULE := $(BUILD)/moonbeam/tls_core.so

C_TESTS    := $(TEST_SRC:csrc/test/%.c=$(BUILD)/test/%)
LUA_TESTS  := $(filter $(BUILD)/test/test_l%,$(C_TESTS))
CORE_TESTS := $(filter-out $(LUA_TESTS),$(C_TESTS))

LOGS         := $(BUILD)/test-logs
TEST_TIMEOUT ?= 300
SPEC_TIMEOUT ?= 300
# Prefix for each C test command, e.g.
#   make check TEST_WRAP='valgrind -q --error-exitcode=99 --leak-check=full'
TEST_WRAP    ?=

# Where the specs find moonbeam. .ci/run points these at the installed rock.
SPEC_LUA_PATH  ?= $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;
SPEC_LUA_CPATH ?= $(CURDIR)/$(BUILD)/?.so;;
# Set both names: Lua 5.4 prefers LUA_PATH_5_4 when the environment has one.
SPEC_VARS = LUA_PATH='$(SPEC_LUA_PATH)' LUA_PATH_5_4='$(SPEC_LUA_PATH)' \
            LUA_CPATH='$(SPEC_LUA_CPATH)' LUA_CPATH_5_4='$(SPEC_LUA_CPATH)' \
            MB_BUILD_DIR='$(CURDIR)/$(BUILD)'

# ------------------------------------------------------------------ run
# `make run` builds RUN_PREREQS, then runs RUN_CMD. To make a Lua example the
# flagship, set RUN_PREREQS = all and RUN_CMD = env $(SPEC_VARS) $(LUA) examples/<x>.lua

RUN_PREREQS = all
RUN_CMD     = env $(SPEC_VARS) $(LUA) examples/supervision_tree.lua

# ------------------------------------------------------------------ Debian packages

DEB_PACKAGES := build-essential pkg-config lua5.4 liblua5.4-dev libuv1-dev lua-busted \
                luarocks lua-check valgrind clang libclang-rt-14-dev libssl-dev openssl
DEB_PACKAGES += libhttp-parser-dev libwslay-dev lua-cjson curl chromium
# Node.js and npm from Debian only where none is installed (a NodeSource nodejs
# conflicts with Debian's npm)
DEB_PACKAGES += $(if $(shell command -v node),,nodejs) $(if $(shell command -v npm),,npm)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)


.PHONY: _fuzz_http spec-deps bench-http bench-live
.PHONY: all deps test check run _run bench asan tsan fuzz _fuzz rock install-rock c-tests \
        examples lint clean

# ------------------------------------------------------------------ build

all: $(STATIC_LIB) $(SHARED_LIB) $(if $(LUA_SRC),$(MODULE) $(TLS_MODULE))
ifeq ($(LUA_SRC),)
	@echo "note: csrc/lua has no .c files yet; $(MODULE) not built"
endif

$(BUILD)/obj/core/%.o: csrc/core/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/obj/io/%.o: csrc/io/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/obj/tls/tls.o: csrc/io/tls.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(LUA_CFLAGS) -c -o $@ $<

# OpenSSL's TLS for TCP ports (see csrc/io/tls.h): a module of its own.
$(TLS_MODULE): $(BUILD)/obj/tls/tls.o
	@mkdir -p $(@D)
	$(CC) $(LIBFLAG) $(ALL_LDFLAGS) -o $@ $^ $(SSL_LIBS)

$(BUILD)/obj/http/%.o: csrc/http/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/obj/lua/%.o: csrc/lua/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(LUA_CFLAGS) -c -o $@ $<

$(BUILD)/obj/test/%.o: csrc/test/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(LUA_CFLAGS) -Icsrc/test -c -o $@ $<

$(STATIC_LIB): $(CORE_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	$(AR) rcs $@ $^

$(SHARED_LIB): $(CORE_OBJ)
	@mkdir -p $(@D)
	$(CC) -shared $(ALL_LDFLAGS) -o $@ $^ $(UV_LIBS) $(SYS_LIBS)

$(LUA_LIB): $(LUA_OBJ) $(HTTP_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	$(AR) rcs $@ $^

# The module is loaded by lua5.4, which provides the Lua API: never link liblua.
$(MODULE): $(LUA_OBJ) $(CORE_OBJ) $(HTTP_OBJ)
	@mkdir -p $(@D)
	$(CC) $(LIBFLAG) $(ALL_LDFLAGS) -o $@ $^ $(UV_LIBS) $(HTTP_LIBS) $(SYS_LIBS)

$(CORE_TESTS): $(BUILD)/test/%: $(BUILD)/obj/test/%.o $(STATIC_LIB)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(STATIC_LIB) $(UV_LIBS) $(SYS_LIBS) -lm

$(LUA_TESTS): $(BUILD)/test/%: $(BUILD)/obj/test/%.o $(LUA_LIB) $(STATIC_LIB)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -Wl,--as-needed -o $@ $< $(LUA_LIB) $(STATIC_LIB) $(LUA_LIBS) \
	  $(UV_LIBS) $(HTTP_LIBS) $(SYS_LIBS) -lm -ldl

$(BUILD)/examples/%: examples/c/%.c $(STATIC_LIB)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(STATIC_LIB) $(UV_LIBS) $(SYS_LIBS) -lm

c-tests: $(C_TESTS)
examples: $(patsubst examples/c/%.c,$(BUILD)/examples/%,$(wildcard examples/c/*.c))

-include $(wildcard $(BUILD)/obj/*/*.d)

# ------------------------------------------------------------------ packages

# Installs what is missing of DEB_PACKAGES (apt-get update only when needed).
deps:
	@if ! command -v dpkg >/dev/null; then \
	  echo "deps: no dpkg here; install the equivalents of: $(DEB_PACKAGES)"; exit 0; \
	fi; \
	missing=; \
	for p in $(DEB_PACKAGES); do \
	  dpkg -s $$p 2>/dev/null | grep -q '^Status: install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi

# ------------------------------------------------------------------ tests

test: deps
	@$(MAKE) --no-print-directory check

asan: deps
	@$(MAKE) --no-print-directory check SANITIZER=asan BUILD=build-asan CC=$(SAN_CC)

tsan: deps
	@$(MAKE) --no-print-directory check SANITIZER=tsan BUILD=build-tsan CC=$(SAN_CC)

# Builds what it can, runs every C test that built and the specs, then
# .ci/summarize totals them. A build failure is counted, never hidden: the
# libraries and the C examples as "build-all", a test binary under its own name
# (test binaries are relinked each run, so a stale one never stands in for one
# that failed to build).
check:
	@rm -rf $(LOGS) && mkdir -p $(LOGS)/c $(LOGS)/tap
	@$(MAKE) --no-print-directory -k all examples || echo build > $(LOGS)/c/build-all.rc
	@rm -f $(C_TESTS)
	@$(MAKE) --no-print-directory -k c-tests || true
	@for t in $(C_TESTS); do \
	  n=$${t##*/}; \
	  if [ ! -x $$t ]; then \
	    echo "== $$n: did not build"; echo build > $(LOGS)/c/$$n.rc; continue; \
	  fi; \
	  echo "== $$n"; \
	  env $(TEST_ENV) timeout -k 10 $(TEST_TIMEOUT) $(TEST_WRAP) ./$$t 2>&1 | tee $(LOGS)/c/$$n.out; \
	  echo $${PIPESTATUS[0]} > $(LOGS)/c/$$n.rc; \
	done
	@$(MAKE) --no-print-directory spec-deps || echo "spec-deps: npm install failed (the ws specs will fail)"
	@# one busted process per spec file: a crash or hang costs one file, and no
	@# process accumulates the threads of hundreds of runtimes (TSan's limit)
	@echo "== specs (LUA_CPATH=$(SPEC_LUA_CPATH))"; \
	for f in $$(find spec -maxdepth 1 -name '*_spec.lua' | sort); do \
	  n=$$(basename $$f .lua); \
	  timeout -k 10 $(SPEC_TIMEOUT) env $(SPEC_VARS) $(SPEC_ENV) $(SPEC_LAUNCH) $(if $(SPEC_LAUNCH),$(LUA_BIN),$(LUA)) $(BUSTED) -o TAP $$f 2>&1 \
	    | tee $(LOGS)/tap/$$n.out; \
	  echo $${PIPESTATUS[0]} > $(LOGS)/tap/$$n.rc; \
	done
	@echo "== spec/ffi_spec.lua under $(LUAJIT) (moonbeam.ffi needs LuaJIT's FFI)"; \
	$(FFI_SPEC_CMD) 2>&1 | tee $(LOGS)/tap/ffi_spec_luajit.out; \
	echo $${PIPESTATUS[0]} > $(LOGS)/tap/ffi_spec_luajit.rc
	@$(LUA) .ci/summarize $(LOGS)

# JavaScript peers of the specs (npm's ws, playwright-core and the official
# phoenix / phoenix_live_view clients, from
# spec/support/package.json), installed into spec/support/node_modules.
spec-deps:
	@if [ ! -f spec/support/node_modules/ws/package.json ] || \
	    [ ! -f spec/support/node_modules/playwright-core/package.json ] || \
	    [ ! -f spec/support/node_modules/phoenix/package.json ] || \
	    [ ! -f spec/support/node_modules/phoenix_live_view/package.json ]; then \
	  echo "spec-deps: npm install in spec/support"; \
	  cd spec/support && npm install --no-audit --no-fund --silent; \
	fi

# ------------------------------------------------------------------ run

run: deps
	@$(MAKE) --no-print-directory _run

_run: $(RUN_PREREQS)
	$(RUN_CMD)

# ------------------------------------------------------------------ bench
# Benchmarks, never part of `make test`: one table printed and written to
# docs/benchmarks.md. BENCH_ARGS=--quick runs smaller sizes.

BENCH_ARGS ?=

# BEAM's side of each pair (bench/beam/): Debian's erlang-nox, installed here
# because only `make bench` needs it
bench: deps
	@$(MAKE) --no-print-directory deps DEB_PACKAGES=erlang-nox
	@$(MAKE) --no-print-directory all
	env $(SPEC_VARS) $(LUA) bench/run.lua $(BENCH_ARGS)
	@$(MAKE) --no-print-directory bench-game

# HTTP and WebSocket against nginx + lua-nginx-module and Node.js (needs wrk,
# nginx, libnginx-mod-http-lua: apt-get install them; never part of make test).
bench-http: all spec-deps
	env $(SPEC_VARS) $(LUA) bench/http.lua $(BENCH_HTTP_ARGS)
	env $(SPEC_VARS) $(LUA) bench/ws.lua $(BENCH_HTTP_ARGS)

# Live views: memory per connected view and click-to-patch (bench/live.lua,
# BENCH_LIVE_ARGS e.g. "--views 10000 --clicks 500"), and the payload bytes of
# the examples' updates (bench/live_bytes.lua); never part of make test.
BENCH_LIVE_ARGS ?= --views 2000 --clicks 300
bench-live: all spec-deps
	env $(SPEC_VARS) $(LUA) bench/live.lua $(BENCH_LIVE_ARGS)
	env $(SPEC_VARS) $(LUA) bench/live_bytes.lua

# ------------------------------------------------------------------ fuzz
# libFuzzer on the term decoder and on TCP input framing (csrc/io/tcp.c's
# mb_packet_next), FUZZ_SECONDS each; not part of `make test`.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_SRC     := csrc/test/fuzz_term.c csrc/core/term.c csrc/core/ids.c csrc/core/alloc.c
FUZZ_BIN     := $(BUILD)/fuzz_term
FUZZ_PACKET_SRC := csrc/test/fuzz_packet.c $(CORE_SRC)
FUZZ_PACKET_BIN := $(BUILD)/fuzz_packet

fuzz: deps
	@$(MAKE) --no-print-directory _fuzz

_fuzz:
	@for f in $(FUZZ_SRC); do \
	  [ -f $$f ] || { echo "fuzz: $$f does not exist" >&2; exit 1; }; \
	done
	@$(MAKE) --no-print-directory $(FUZZ_BIN)
	rm -rf $(BUILD)/fuzz-corpus && mkdir -p $(BUILD)/fuzz-corpus $(BUILD)/fuzz-artifacts
	if [ -d csrc/test/fuzz_corpus ]; then cp -R csrc/test/fuzz_corpus/. $(BUILD)/fuzz-corpus/; fi
	./$(FUZZ_BIN) -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$(BUILD)/fuzz-artifacts/ \
	  $(BUILD)/fuzz-corpus
	@$(MAKE) --no-print-directory $(FUZZ_PACKET_BIN)
	rm -rf $(BUILD)/fuzz-packet-corpus && mkdir -p $(BUILD)/fuzz-packet-corpus
	./$(FUZZ_PACKET_BIN) -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$(BUILD)/fuzz-artifacts/ \
	  $(BUILD)/fuzz-packet-corpus
	@$(MAKE) --no-print-directory _fuzz_http

$(FUZZ_BIN): $(wildcard $(FUZZ_SRC)) $(wildcard csrc/include/*.h csrc/core/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) -std=c11 -g -O1 -D_GNU_SOURCE -Icsrc/include -Icsrc \
	  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
	  -o $@ $(FUZZ_SRC) $(SYS_LIBS)

# The HTTP request path and the WebSocket frame path (csrc/http), each with its
# own seed corpus csrc/test/fuzz_corpus_<name>.
FUZZ_HTTP_NAMES := http ws
FUZZ_HTTP_BINS  := $(FUZZ_HTTP_NAMES:%=$(BUILD)/fuzz_%)

_fuzz_http: $(FUZZ_HTTP_BINS)
	@for n in $(FUZZ_HTTP_NAMES); do \
	  rm -rf $(BUILD)/fuzz-corpus-$$n && mkdir -p $(BUILD)/fuzz-corpus-$$n $(BUILD)/fuzz-artifacts && \
	  cp -R csrc/test/fuzz_corpus_$$n/. $(BUILD)/fuzz-corpus-$$n/ && \
	  echo "./$(BUILD)/fuzz_$$n -max_total_time=$(FUZZ_SECONDS)" && \
	  ./$(BUILD)/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$(BUILD)/fuzz-artifacts/ \
	    $(BUILD)/fuzz-corpus-$$n || exit 1; \
	done

$(FUZZ_HTTP_BINS): $(BUILD)/fuzz_%: csrc/test/fuzz_%.c $(HTTP_SRC) $(wildcard csrc/http/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) -std=c11 -g -O1 -D_GNU_SOURCE -Icsrc/include -Icsrc \
	  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
	  -o $@ $< $(HTTP_SRC) $(HTTP_LIBS) $(SYS_LIBS)

$(FUZZ_PACKET_BIN): $(wildcard $(FUZZ_PACKET_SRC)) $(wildcard csrc/include/*.h csrc/core/*.h csrc/io/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) -std=c11 -g -O1 -D_GNU_SOURCE -Icsrc/include -Icsrc $(UV_CFLAGS) \
	  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
	  -o $@ $(FUZZ_PACKET_SRC) $(UV_LIBS) $(SYS_LIBS) -lm

# ------------------------------------------------------------------ luarocks
# moonbeam-scm-1.rockspec (build type "make") runs `make rock` with CFLAGS,
# LIBFLAG, LUA_INCDIR and LIBUV_*, then `make install-rock` with LIBDIR, LUADIR
# and BINDIR.

rock:
ifeq ($(LUA_SRC),)
	@echo "rock: csrc/lua has no .c files yet: the Lua module cannot be built" >&2; exit 1
else
	@$(MAKE) --no-print-directory $(MODULE) $(TLS_MODULE)
endif

install-rock:
	@test -n "$(LIBDIR)" && test -n "$(LUADIR)" && test -n "$(BINDIR)" || \
	  { echo "install-rock: set LIBDIR, LUADIR and BINDIR (luarocks does)" >&2; exit 1; }
	install -d '$(LIBDIR)/moonbeam' '$(LUADIR)/moonbeam'
	install -m 755 $(MODULE) '$(LIBDIR)/moonbeam/core.so'
	install -m 755 $(TLS_MODULE) '$(LIBDIR)/moonbeam/tls_core.so'
	@if [ -d lua/moonbeam ]; then \
	  find lua/moonbeam -name '*.lua' | sort | while read -r f; do \
	    echo "install -D -m 644 $$f '$(LUADIR)/$${f#lua/}'"; \
	    install -D -m 644 "$$f" '$(LUADIR)/'"$${f#lua/}" || exit 1; \
	  done; \
	fi
	@if [ -f bin/moonbeam ]; then \
	  echo "install -D -m 755 bin/moonbeam '$(BINDIR)/moonbeam'"; \
	  install -D -m 755 bin/moonbeam '$(BINDIR)/moonbeam'; \
	fi

# ------------------------------------------------------------------ lint

lint:
	luacheck --std lua54 $(wildcard lua bench examples) bin/moonbeam .ci/summarize
	@# specs: callbacks keep OTP's full signatures, and loops that break on
	@# purpose (iterator tests) are the point
	$(if $(wildcard spec),luacheck --std lua54+busted --no-unused-args --max-line-length 150 --ignore 512 -- spec)

# ------------------------------------------------------------------ clean

clean:
	rm -rf build build-asan build-tsan .tree

# ------------------------------------------------------------------ FFI (moonbeam.ffi, docs/embedding.md)
# lua/moonbeam/ffi_cdef.lua is generated from csrc/include/moonbeam.h by
# tools/gen_ffi.lua: `make ffi` regenerates it, `make ffi-check` fails when it
# differs (spec/ffi_spec.lua checks the same in `make check`). `make ffi-spec`
# runs spec/ffi_spec.lua under LuaJIT against $(BUILD)/libmoonbeam.so.

LUAJIT ?= luajit
FFI_LUAJIT = $(if $(SPEC_LAUNCH),$(SPEC_LAUNCH) $(shell command -v $(LUAJIT)),$(LUAJIT))
FFI_SPEC_CMD = timeout -k 10 $(SPEC_TIMEOUT) env $(SPEC_VARS) MOONBEAM_LIB=$(CURDIR)/$(SHARED_LIB) \
               $(SPEC_ENV) $(FFI_LUAJIT) $(BUSTED) -o TAP spec/ffi_spec.lua

.PHONY: ffi ffi-check ffi-spec
ffi:
	$(LUA) tools/gen_ffi.lua

ffi-check:
	$(LUA) tools/gen_ffi.lua --check

ffi-spec: $(SHARED_LIB)
	$(FFI_SPEC_CMD)

# ------------------------------------------------------------------ host examples (examples/host, docs/embedding.md)
# game.c is a C host: it links liblua and the module build/moonbeam/core.so
# itself (by absolute path), so `require "moonbeam.core"` in every VM finds the
# same loaded object: one copy of the core, whose C API the host calls.
# `make game-test` runs it briefly and fails if an entity did not answer a
# tick; `make bench-game` is the frame-time figure.
GAME := $(BUILD)/examples/game
$(GAME): examples/host/game.c $(MODULE)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(LUA_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(CURDIR)/$(MODULE) $(LUA_LIBS) -lm

examples: $(GAME)

.PHONY: game-test bench-game game-lua-test
game-test: $(GAME)
	env $(SPEC_VARS) $(GAME) 2000 30 2000

# examples/host/game.lua: the same loop under LuaJIT through moonbeam.ffi; needs
# moonbeam.core built for LuaJIT (the luajit branch's build).
game-lua-test: all
	env $(SPEC_VARS) $(LUAJIT) examples/host/game.lua 500 30 2000

# both placements, one after the other; a run that cannot answer every tick
# exits 1, which does not stop the other (the figure is what it prints)
bench-game: $(GAME)
	-env $(SPEC_VARS) $(GAME) 10000 600 2000
	-env $(SPEC_VARS) $(GAME) 10000 600 2000 off-host
