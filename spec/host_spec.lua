-- Driving the runtime from a host loop: mb.start, mb.step, mb.stop.
-- Scheduler 1 runs on the host's thread, inside mb.step, in the host's own Lua
-- VM: a process there shares that VM's loaded modules with the host, which is
-- how these specs hand results back (spec/support/echo_mod.lua is the box).
package.path = package.path .. ";spec/support/?.lua"
local mb = require "moonbeam"
local box = require "echo_mod"

--- Steps until cond() is true; fails after `limit_s` seconds.
local function step_until(cond, limit_s)
  local deadline = mb.clock() + (limit_s or 5)
  while not cond() do
    assert.is_true(mb.step(1), "the runtime stopped")
    if mb.clock() > deadline then error("condition not met while stepping", 2) end
  end
end

--- Starts a runtime for one spec and always stops it.
local function hosted(opts, body)
  local n = mb.start(opts)
  local ok, err = pcall(body, n)
  mb.stop()
  for k in pairs(box) do
    if type(box[k]) ~= "function" then box[k] = nil end
  end
  if not ok then error(err, 0) end
end

describe("host loop", function()
  it("mb.start returns the number of schedulers; mb.step returns true while it runs", function()
    hosted({schedulers = 2}, function(n)
      assert.are.equal(2, n)
      assert.are.equal(2, mb.schedulers())
      assert.is_true(mb.step())
      assert.is_true(mb.step(0))
      assert.is_true(mb.step(2.5))
    end)
  end)

  it("spawns a process, steps until it has replied, stops", function()
    hosted({schedulers = 2}, function()
      -- a server on the other scheduler, a client on the host's scheduler
      local server = mb.spawn_opt({scheduler = 2}, function()
        while true do
          local m = mb.receive()
          mb.send(m.from, {"reply", m.n * 2, mb.scheduler()})
        end
      end)
      local client = mb.spawn_opt({scheduler = 1}, function()
        mb.send(server, {from = mb.self(), n = 21})
        local r = mb.receive()
        box.reply = r -- the host's VM: the host sees it
      end)
      assert.is_nil(box.reply)
      step_until(function() return box.reply ~= nil end)
      assert.are.same({"reply", 42, 2}, box.reply)
      step_until(function() return not mb.alive(client) end)
      assert.is_true(mb.alive(server))
    end)
  end)

  it("processes on the host's scheduler run only inside mb.step", function()
    hosted({schedulers = 2}, function()
      box.count = 0
      mb.spawn_opt({scheduler = 1}, function()
        while true do
          box.count = box.count + 1
          mb.receive()
        end
      end)
      assert.are.equal(0, box.count) -- spawned, not run yet
      step_until(function() return box.count == 1 end)
    end)
  end)

  it("the host can send to a process by pid and by name", function()
    hosted({schedulers = 2}, function()
      box.got = {}
      local pid = mb.spawn_opt({scheduler = 1, name = "host_target"}, function()
        while true do
          local m = mb.receive()
          box.got[#box.got + 1] = m
        end
      end)
      assert.is_true(mb.send(pid, "by pid"))
      assert.is_true(mb.send("host_target", {"by name"}))
      step_until(function() return #box.got == 2 end)
      assert.are.same({"by pid", {"by name"}}, box.got)
      assert.are.equal(pid, mb.whereis("host_target"))
    end)
  end)

  it("timers fire while the host steps", function()
    hosted({schedulers = 1}, function()
      mb.spawn_opt({scheduler = 1}, function()
        mb.send_after(20, mb.self(), "tick")
        local t0 = mb.clock()
        box.tick = mb.receive()
        box.waited = mb.clock() - t0
      end)
      step_until(function() return box.tick ~= nil end)
      assert.are.equal("tick", box.tick)
      assert.is_true(box.waited >= 0.019, "waited " .. box.waited)
    end)
  end)

  it("mb.step(ms) returns after about ms even with a spinner on the host's scheduler", function()
    hosted({schedulers = 1}, function()
      local spinner = mb.spawn_opt({scheduler = 1}, require("spin").spin) -- `while true do end`
      box.pings = 0
      mb.spawn_opt({scheduler = 1}, function()
        for _ = 1, 3 do
          box.pings = box.pings + 1
          mb.sleep(1)
        end
      end)
      local worst = 0
      for _ = 1, 20 do
        local t0 = mb.clock()
        assert.is_true(mb.step(2))
        worst = math.max(worst, mb.clock() - t0)
      end
      assert.is_true(worst < 0.05, ("a step of 2 ms took %.1f ms"):format(worst * 1000))
      step_until(function() return box.pings == 3 end)
      mb.exit(spinner, "kill")
      step_until(function() return not mb.alive(spinner) end)
    end)
  end)

  it("mb.stop ends every process; the runtime can be started again", function()
    local pid
    hosted({schedulers = 2}, function()
      pid = mb.spawn_opt({scheduler = 2}, function() mb.receive() end)
      mb.spawn_opt({scheduler = 1}, function() mb.receive() end)
      step_until(function() return #mb.processes() == 2 end)
    end)
    assert.has_error(function() mb.alive(pid) end, "moonbeam is not running (use mb.run or mb.start)")
    assert.has_error(function() mb.step() end, "mb.step: no runtime started with mb.start")
    hosted({schedulers = 1}, function()
      assert.are.same({}, mb.processes())
    end)
    assert.are.equal("again", mb.run(function() return "again" end, {schedulers = 2}))
  end)

  it("mb.stop without a started runtime does nothing; mb.start twice raises", function()
    mb.stop()
    hosted({schedulers = 1}, function()
      assert.has_error(function() mb.start() end, "moonbeam is already running in this Lua state")
      assert.has_error(function() mb.run(print) end, "moonbeam is already running in this Lua state")
    end)
  end)

  it("bad arguments to mb.start and mb.step raise", function()
    assert.has_error(function() mb.start(5) end)
    assert.has_error(function() mb.start({schedulers = 0}) end)
    hosted({schedulers = 1}, function()
      assert.has_error(function() mb.step(-1) end)
      assert.has_error(function() mb.step("x") end)
    end)
  end)

  it("mb.self() in the host raises, it is not a process", function()
    hosted({schedulers = 1}, function()
      assert.has_error(function() mb.self() end, "not called from inside a moonbeam process")
      assert.has_error(function() mb.receive(nil, 0) end, "not called from inside a moonbeam process")
    end)
  end)
end)
