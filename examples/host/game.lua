-- examples/host/game.lua: examples/host/game.c's frame loop in a LuaJIT host,
-- through moonbeam.ffi (docs/embedding.md).
--
--   luajit examples/host/game.lua [entities=10000] [frames=600] [budget_us=2000]
--
-- mb.start() makes this LuaJIT state scheduler 0's VM of a host-driven
-- runtime; the entities are Lua processes on every scheduler; moonbeam.ffi's
-- attach gives the C API on that same runtime: each frame the host broadcasts
-- {tick, Frame}, steps the runtime with the frame's budget (rt:step, which
-- also runs the collector's Lua handler, here, on this thread), and sleeps to
-- the next 1/60 s. Exits 1 unless every entity answered every tick.
local mb = require "moonbeam"
local mbffi = require "moonbeam.ffi"
local ffi = require "ffi"

local entities = tonumber(arg[1]) or 10000
local frames = tonumber(arg[2]) or 600
local budget_us = tonumber(arg[3]) or 2000

pcall(ffi.cdef, [[
  struct timespec { long tv_sec; long tv_nsec; };
  int clock_gettime(int clk, struct timespec *ts);
  int nanosleep(const struct timespec *req, struct timespec *rem);
]])
local ts = ffi.new("struct timespec")
local function now_ns()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1e9 + tonumber(ts.tv_nsec)
end
local function sleep_ns(ns)
  local req = ffi.new("struct timespec", math.floor(ns / 1e9), math.floor(ns % 1e9))
  ffi.C.nanosleep(req, nil)
end

local nsched = mb.start()
local rt = mbffi.attach()

for i = 1, entities do
  mb.spawn(function()
    mb.subscribe("tick")
    local x, v = 0, i % 7 + 1
    while true do
      local m = mb.receive()
      if m == "quit" then return end
      x = x + v
      mb.send("game", {i, m[2], x})
    end
  end)
end

local reports, bad, frame = 0, 0, 0
rt:spawn(function(_, msg)
  if msg == nil then return end
  if type(msg) == "table" and #msg == 3 then reports = reports + 1 else bad = bad + 1 end
end, {name = "game"})

local t0 = now_ns()
while rt:subscribers("tick") < entities do
  rt:step(1000)
  if now_ns() - t0 > 60e9 then error("only " .. rt:subscribers("tick") .. " entities subscribed") end
end
print(("game.lua: %d entities on %d schedulers ready in %.0f ms"):format(entities, nsched, (now_ns() - t0) / 1e6))

local frame_ns = 1e9 / 60
local steps = {}
local tick = mbffi.tuple(mbffi.atom("tick"), 0)
local next_t = now_ns()
for f = 1, frames do
  frame = f
  tick[2] = f
  rt:broadcast("tick", tick)
  local s = now_ns()
  rt:step(budget_us)
  steps[f] = now_ns() - s
  next_t = next_t + frame_ns
  local t = now_ns()
  if t < next_t then sleep_ns(next_t - t) else next_t = t end
end
local want = entities * frames
t0 = now_ns()
while reports < want and now_ns() - t0 < 10e9 do rt:step(2000) end

table.sort(steps)
print(("game.lua: %d frames, budget %d us: rt:step p50 %.0f us, p99 %.0f us, max %.0f us"):format(
  frames, budget_us, steps[math.floor(frames / 2) + 1] / 1e3,
  steps[math.floor((frames - 1) * 0.99) + 1] / 1e3, steps[frames] / 1e3))
print(("game.lua: %d of %d reports, %d malformed"):format(reports, want, bad))
rt:free()
os.exit(reports == want and bad == 0 and 0 or 1)
