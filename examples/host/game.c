/* examples/host/game.c: a C host (a game's main loop) embedding moonbeam.
 *
 *   build/examples/game [entities=10000] [frames=600] [budget_us=2000] [all|off-host]
 *
 * The host thread is scheduler 1 of a host-driven runtime: each frame it
 * broadcasts {tick, Frame} to the entities, calls mb_runtime_step with the
 * frame's budget, and sleeps to the next 1/60 s. The entities are Lua
 * processes on every scheduler (the other ones are threads of the runtime's
 * own; with off-host, only on those); each answers every tick with [Id, Frame, X] to the registered name
 * "game", a native C process pinned to the host's scheduler, so its handler
 * runs only inside mb_runtime_step, on this thread, and needs no lock.
 *
 * Lua VMs: the host makes its own lua_State and calls mb.start: the runtime
 * makes a VM per other scheduler, and the host's state is scheduler 1's VM.
 * The binary links build/moonbeam/core.so itself, so the module every VM
 * requires is that same loaded object (one copy of the core), and
 * core.runtime_handle() gives its mb_runtime_t * for the C API.
 *
 * Prints the time mb_runtime_step added to each frame (p50, p99, max) and
 * checks that every entity answered every tick; exits 1 if not. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "moonbeam.h"

static const char SETUP[] =
    "local mb = require 'moonbeam'\n"
    "local n, off_host = ...\n"
    "local ns = mb.start()\n"
    "for i = 1, n do\n"
    "  local where = off_host and ns > 1 and {scheduler = 2 + i % (ns - 1)} or {}\n"
    "  mb.spawn_opt(where, function()\n"
    "    mb.subscribe('tick')\n"
    "    local x, v = 0, i % 7 + 1\n"
    "    while true do\n"
    "      local m = mb.receive()\n"
    "      if m == 'quit' then return end\n"
    "      x = x + v\n"
    "      mb.send('game', {i, m[2], x})\n"
    "    end\n"
    "  end)\n"
    "end\n"
    "return require('moonbeam.core').runtime_handle()\n";

typedef struct game {
  long reports, bad;
  long frame_reports; /* reports whose frame is the current one */
  int64_t frame;
} game_t;

/* The collector: [Id, Frame, X] from each entity, each tick. */
static int collect(mb_proc_t *self, const mb_msg_t *msg, void *ud) {
  (void)self;
  game_t *g = ud;
  if (!msg) return 0;
  size_t len;
  const uint8_t *p = mb_msg_data(msg, &len);
  mb_dec_t d;
  uint32_t n;
  int64_t id, frame, x;
  if (mb_dec_init(&d, NULL, p, len) || mb_dec_list(&d, &n) || n != 3 || mb_dec_int(&d, &id) ||
      mb_dec_int(&d, &frame) || mb_dec_int(&d, &x)) {
    g->bad++;
    return 0;
  }
  g->reports++;
  if (frame == g->frame) g->frame_reports++;
  return 0;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static int broadcast_tick(mb_runtime_t *rt, int64_t frame) {
  mb_enc_t e;
  mb_enc_init(&e, NULL, 0);
  mb_enc_tuple(&e, 2);
  mb_enc_atom(&e, "tick", 4);
  mb_enc_int(&e, frame);
  size_t len;
  uint8_t *t = mb_enc_finish(&e, &len);
  if (!t) return MB_ENOMEM;
  int n = mb_broadcast(rt, 0, "tick", 0, t, len);
  free(t);
  return n;
}

int main(int argc, char **argv) {
  int entities = argc > 1 ? atoi(argv[1]) : 10000;
  int frames = argc > 2 ? atoi(argv[2]) : 600;
  unsigned budget_us = argc > 3 ? (unsigned)atoi(argv[3]) : 2000;
  int off_host = argc > 4 && !strcmp(argv[4], "off-host");
  if (entities < 1 || frames < 1) {
    fprintf(stderr, "usage: game [entities] [frames] [budget_us]\n");
    return 2;
  }
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  if (luaL_loadbuffer(L, SETUP, sizeof SETUP - 1, "=game") ||
      (lua_pushinteger(L, entities), lua_pushboolean(L, off_host), lua_pcall(L, 2, 1, 0))) {
    fprintf(stderr, "game: %s\n", lua_tostring(L, -1));
    return 1;
  }
  mb_runtime_t *rt = lua_touserdata(L, -1);
  lua_pop(L, 1);

  game_t g = {0};
  mb_spawn_opts_t o = {0};
  o.scheduler = 1; /* the host's scheduler: the handler runs inside mb_runtime_step */
  o.name = "game";
  mb_pid_t collector;
  if (mb_spawn_native(rt, collect, NULL, &g, &o, &collector)) return 1;

  /* the entities subscribe as they first run */
  uint64_t t0 = now_ns();
  while (mb_subscribers(rt, "tick") < entities) {
    mb_runtime_step(rt, 1000);
    if (now_ns() - t0 > 60ull * 1000000000ull) {
      fprintf(stderr, "game: only %d of %d entities subscribed\n", mb_subscribers(rt, "tick"), entities);
      return 1;
    }
  }
  printf("game: %d entities on %d schedulers ready in %.0f ms\n", entities, mb_runtime_schedulers(rt),
         (double)(now_ns() - t0) / 1e6);

  const uint64_t frame_ns = 1000000000ull / 60;
  uint64_t *step_ns = calloc((size_t)frames, sizeof *step_ns);
  long on_time = 0;
  uint64_t next = now_ns();
  for (int f = 1; f <= frames; f++) {
    g.frame = f;
    g.frame_reports = 0;
    broadcast_tick(rt, f);
    uint64_t s = now_ns();
    mb_runtime_step(rt, budget_us);
    step_ns[f - 1] = now_ns() - s;
    /* the game's own work would go here */
    next += frame_ns;
    uint64_t t = now_ns();
    if (t < next) {
      /* the rest of the frame: later reports are taken by the next step */
      struct timespec ts = {(time_t)((next - t) / 1000000000ull), (long)((next - t) % 1000000000ull)};
      nanosleep(&ts, NULL);
    } else {
      next = t; /* a late frame: do not try to catch up */
    }
    on_time += g.frame_reports;
  }
  /* drain: every tick must have been answered */
  uint64_t want = (uint64_t)entities * (uint64_t)frames;
  t0 = now_ns();
  while ((uint64_t)g.reports < want && now_ns() - t0 < 10ull * 1000000000ull) mb_runtime_step(rt, 2000);

  qsort(step_ns, (size_t)frames, sizeof *step_ns, cmp_u64);
  double p50 = (double)step_ns[frames / 2] / 1e3;
  double p99 = (double)step_ns[(size_t)((frames - 1) * 0.99)] / 1e3;
  double max = (double)step_ns[frames - 1] / 1e3;
  printf("game: %d frames, budget %u us, entities %s: mb_runtime_step p50 %.0f us, p99 %.0f us, max %.0f us\n",
         frames, budget_us, off_host ? "off the host scheduler" : "on every scheduler", p50, p99, max);
  printf("game: %ld of %llu reports (%.1f%% within their own frame's step), %ld malformed\n",
         g.reports, (unsigned long long)want, 100.0 * (double)on_time / (double)want, g.bad);
  free(step_ns);
  int ok = (uint64_t)g.reports == want && g.bad == 0;

  /* shutdown: mb.stop ends every process and joins the schedulers */
  if (luaL_dostring(L, "require('moonbeam').stop()")) fprintf(stderr, "game: %s\n", lua_tostring(L, -1));
  lua_close(L);
  if (!ok) fprintf(stderr, "game: FAILED: not every tick was answered\n");
  return ok ? 0 : 1;
}
