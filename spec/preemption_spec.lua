-- Preemption: a process that never waits does not stop the others on its scheduler.
local mb = require "moonbeam"
package.path = package.path .. ";spec/support/?.lua"
local spin = require("spin").spin -- `while true do end` (see spec/support/spin.lua for TSan)

local PINGS, MAX_SECONDS = 300, 3 -- fewer pings if they are slow: the file stays fast
-- DESIGN.md: "a spinning process must not delay others on its scheduler by more
-- than a few slices" (a slice is about 1 ms). Generous bounds for a loaded machine.
local P50_BOUND_MS, P99_BOUND_MS = 10, 50

local function recv(match, ms)
  local m, err = mb.receive(match, ms or 5000)
  if err then error("timed out waiting for a message", 2) end
  return m
end


local function answerer()
  while true do
    local m = mb.receive()
    if m == "stop" then return end
    mb.send(m[1], {"pong", m[2]})
  end
end

--- Pings `pid` PINGS times; returns the round-trip times in ms, sorted.
local function measure(pid)
  local me = mb.self()
  local times = {}
  local stop = mb.clock() + MAX_SECONDS
  for i = 1, PINGS do
    if mb.clock() > stop and i > 20 then break end
    local t0 = mb.clock()
    mb.send(pid, {me, i})
    recv(function(m) return type(m) == "table" and m[1] == "pong" and m[2] == i end)
    times[i] = (mb.clock() - t0) * 1000
  end
  table.sort(times)
  return times
end

--- The body gets a `spinning(pid)` to note spinners; they are killed afterwards
--- even when an assertion fails, so main never ends with a spinner running.
local function guarded(body)
  return function()
    local spinners = {}
    local ok, err = pcall(body, function(pid, ...) spinners[#spinners + 1] = pid; return pid, ... end)
    for _, pid in ipairs(spinners) do
      -- wait for the end: a runtime stopped while a process spins does not return
      local ref = mb.monitor(pid)
      mb.exit(pid, "kill")
      mb.receive(function(m) return type(m) == "table" and m[1] == "DOWN" and m[2] == ref end, 2000)
    end
    if not ok then error(err, 0) end
  end
end

local function pct(sorted, p)
  return sorted[math.max(1, math.ceil(#sorted * p))]
end

local function report(label, times)
  print(("\n%s: %d pings, p50 %.3f ms, p99 %.3f ms, max %.3f ms"):format(
    label, #times, pct(times, 0.5), pct(times, 0.99), times[#times]))
end

--- Runs a Lua script in a fresh lua5.4 with this VM's paths, for at most
--- `seconds`; returns whether it exited with 0, its exit code and its output.
local function run_script(src, seconds)
  local file = os.tmpname()
  local f = assert(io.open(file, "w"))
  f:write(src)
  f:close()
  local env = ("LUA_PATH=%q LUA_PATH_5_4=%q LUA_CPATH=%q LUA_CPATH_5_4=%q"):format(
    package.path, package.path, package.cpath, package.cpath)
  local p = assert(io.popen(("%s timeout %d %s %q 2>&1"):format(env, seconds, os.getenv("MB_LUA") or "lua5.4", file)))
  local out = p:read("a")
  local ok, _, code = p:close()
  os.remove(file)
  return ok == true, code, out
end

describe("preemption", function()
  it("a `while true do end` process does not stop another on the same scheduler from answering pings", function()
    mb.run(guarded(function(spinning)
      local spinner, sref = mb.spawn_opt({scheduler = 2, monitor = true}, spin)
      spinning(spinner)
      local pid = mb.spawn_opt({scheduler = 2}, answerer)
      assert.are.equal(mb.info(spinner).scheduler, mb.info(pid).scheduler)
      local times = measure(pid)
      report("spinner and answerer on scheduler 2, pinger on 1", times)
      assert.is_true(pct(times, 0.5) < P50_BOUND_MS, "p50 " .. pct(times, 0.5) .. " ms")
      assert.is_true(pct(times, 0.99) < P99_BOUND_MS, "p99 " .. pct(times, 0.99) .. " ms")
      assert.is_true(mb.alive(spinner))
      mb.exit(spinner, "kill")
      assert.are.same({"DOWN", sref, "process", spinner, "killed"}, recv(function(m) return m[1] == "DOWN" end))
      mb.send(pid, "stop")
    end), {schedulers = 2})
  end)

  it("with one scheduler, the spinner, the answerer and the pinger all share it", function()
    mb.run(guarded(function(spinning)
      local spinner, sref = mb.spawn_opt({scheduler = "here", monitor = true}, spin)
      spinning(spinner)
      local pid = mb.spawn_opt({scheduler = "here"}, answerer)
      local times = measure(pid)
      report("everything on one scheduler", times)
      assert.is_true(pct(times, 0.5) < P50_BOUND_MS, "p50 " .. pct(times, 0.5) .. " ms")
      assert.is_true(pct(times, 0.99) < P99_BOUND_MS, "p99 " .. pct(times, 0.99) .. " ms")
      mb.exit(spinner, "kill")
      assert.are.equal("killed", recv(function(m) return m[1] == "DOWN" and m[2] == sref end)[5])
      mb.send(pid, "stop")
    end), {schedulers = 1})
  end)

  it("mb.exit(pid, \"kill\") ends a spinner at once, even one that traps exits", function()
    mb.run(guarded(function(spinning)
      local spinner, ref = spinning(mb.spawn_opt({scheduler = "here", monitor = true, trap_exit = true}, spin))
      mb.sleep(5) -- let it spin
      local t0 = mb.clock()
      mb.exit(spinner, "kill")
      local m = recv(function(x) return x[1] == "DOWN" end)
      local ms = (mb.clock() - t0) * 1000
      print(("\nkill of a spinner: DOWN after %.3f ms"):format(ms))
      assert.are.same({"DOWN", ref, "process", spinner, "killed"}, m)
      assert.is_true(ms < P99_BOUND_MS, ms .. " ms")
      assert.is_false(mb.alive(spinner))
    end), {schedulers = 1})
  end)

  it("other exit signals end a non-trapping spinner too", function()
    mb.run(guarded(function(spinning)
      local spinner, ref = spinning(mb.spawn_opt({scheduler = "here", monitor = true}, spin))
      mb.sleep(2)
      mb.exit(spinner, "shutdown")
      assert.are.equal("shutdown", recv(function(x) return x[1] == "DOWN" and x[2] == ref end)[5])
    end), {schedulers = 1})
  end)

  it("a spinner inside pcall is preempted as well", function()
    mb.run(guarded(function(spinning)
      local spinner, ref = mb.spawn_opt({scheduler = "here", monitor = true}, function()
        pcall(spin)
      end)
      spinning(spinner)
      local pid = mb.spawn_opt({scheduler = "here"}, answerer)
      local me = mb.self()
      for i = 1, 20 do
        mb.send(pid, {me, i})
        recv(function(m) return m[1] == "pong" and m[2] == i end, 2000)
      end
      mb.exit(spinner, "kill")
      assert.are.equal("killed", recv(function(x) return x[1] == "DOWN" and x[2] == ref end)[5])
      mb.send(pid, "stop")
    end), {schedulers = 1})
  end)

  it("several spinners on one scheduler each get time, and so do the others", function()
    mb.run(guarded(function(spinning)
      local me = mb.self()
      local counters = {}
      for i = 1, 3 do
        counters[i] = spinning(mb.spawn_opt({scheduler = "here"}, function()
          local n = 0
          while true do
            n = n + 1
            if n % 100000 == 0 then
              local m = mb.receive(nil, 0)
              if m then mb.send(m, {"count", i, n}); return end
            end
          end
        end))
      end
      mb.sleep(30)
      for i = 1, 3 do mb.send(counters[i], me) end
      for _ = 1, 3 do
        local m = recv(function(x) return x[1] == "count" end)
        assert.is_true(m[3] > 0)
      end
    end), {schedulers = 1})
  end)

  it("mb.run returns when main ends while processes spin (the runtime stops them)", function()
    local ok, code, out = run_script([[
      local mb = require "moonbeam"
      local function spinners()
        mb.spawn_opt({scheduler = 2}, require("spin").spin)
        local pid = mb.spawn_opt({scheduler = 2}, function()
          while true do mb.send(mb.receive(), "pong") end
        end)
        for _ = 1, 5 do mb.send(pid, mb.self()); mb.receive() end
      end
      for _ = 1, 30 do -- the stop races the watchdog: try it a few times
        assert(mb.run(function() spinners(); return "ok" end, {schedulers = 2}) == "ok")
        assert(not pcall(mb.run, function() spinners(); error("main fails") end, {schedulers = 2}))
        assert(mb.run(function()
          mb.spawn_opt({scheduler = "here"}, require("spin").spin)
          mb.sleep(5)
          return "ok"
        end, {schedulers = 1}) == "ok")
      end
    ]], os.getenv("MB_SANITIZER") == "tsan" and 60 or 30) -- 90 runtime starts: 1-4 s on a loaded machine, more under TSan
    assert.are_not.equal(124, code, "mb.run did not return: it hangs when the runtime stops while a process spins")
    assert.is_true(ok, "exit code " .. tostring(code) .. ": " .. out)
  end)
end)
