-- Runtime hardening (issue 8): nothing a Lua program does crashes, hangs or
-- loses a reason. Each `describe` names the item of the issue it covers.
-- luacheck: globals COUNTER SHARED_G (the processes' own globals, item 11)
package.path = package.path .. ";spec/support/?.lua"
local mb = require "moonbeam"
local spin = require("spin").spin

local OPTS = {schedulers = 2}

local function recv(match, ms)
  local m, err = mb.receive(match, ms or 5000)
  if err then error("timed out waiting for a message", 2) end
  return m
end

local function down(ref, ms)
  return recv(function(m) return type(m) == "table" and m[1] == "DOWN" and m[2] == ref end, ms)[5]
end

local function raises(text, f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error containing: " .. text)
  assert.matches(text, tostring(err), 1, true)
  return err
end

--- Runs a Lua script in a fresh lua5.4 with this VM's paths; returns its output
--- (stdout and stderr) and whether it exited with 0.
local function run_script(src)
  local file = os.tmpname()
  local f = assert(io.open(file, "w"))
  f:write(src)
  f:close()
  local env = ("LUA_PATH=%q LUA_PATH_5_4=%q LUA_CPATH=%q LUA_CPATH_5_4=%q"):format(
    package.path, package.path, package.cpath, package.cpath)
  local p = assert(io.popen(("%s timeout 20 %s %q 2>&1"):format(env, os.getenv("MB_LUA") or "lua5.4", file)))
  local out = p:read("a")
  local ok = p:close()
  os.remove(file)
  return out, ok == true
end

--- Whether a process pinned to scheduler `s` gets to run within `ms`.
local function scheduler_responds(s, ms)
  local me = mb.self()
  mb.spawn_opt({scheduler = s}, function() mb.send(me, "still scheduling") end)
  local m = mb.receive(function(x) return x == "still scheduling" end, ms or 3000)
  return m ~= nil
end

describe("item 2: Lua run by the runtime on a scheduler is protected", function()
  it("an error object whose __tostring raises ends only its process, on any scheduler", function()
    mb.run(function()
      mb.set_crash_handler(function() end)
      for s = 1, 2 do
        local _, ref = mb.spawn_opt({monitor = true, scheduler = s}, function()
          mb.set_crash_handler(function() end)
          error(setmetatable({}, {__tostring = function() error("tostring boom") end}))
        end)
        local reason = down(ref)
        assert.are.equal("error", reason[1])
        assert.matches("tostring boom", reason[2], 1, true)
        assert.is_true(scheduler_responds(s))
      end
      mb.set_crash_handler(nil)
    end, OPTS)
  end)

  it("spawn{module, missing_fn} of a module whose __index raises ends only that process", function()
    mb.run(function()
      mb.set_crash_handler(function() end)
      for s = 1, 2 do
        local _, ref = mb.spawn_opt({monitor = true, scheduler = s}, function()
          mb.set_crash_handler(function() end)
        end)
        down(ref)
        local _, ref2 = mb.spawn_opt({monitor = true, scheduler = s}, {"strict_module", "missing_fn"})
        local reason = down(ref2)
        assert.are.equal("error", reason[1])
        assert.matches("strict_module has no field 'missing_fn'", reason[2], 1, true)
        assert.is_true(scheduler_responds(s))
      end
      mb.set_crash_handler(nil)
    end, OPTS)
  end)

  it("a __tostring returning a non-string is reported, not raised through the scheduler", function()
    local out, ok = run_script([[
      local mb = require "moonbeam"
      mb.run(function()
        local _, ref = mb.spawn_opt({monitor = true, scheduler = 2}, function()
          error(setmetatable({}, {__tostring = function() return {} end}))
        end)
        local m = mb.receive(function(m) return m[2] == ref end, 5000)
        print("reason:", m[5][1], m[5][2])
      end, {schedulers = 2})
    ]])
    assert.is_true(ok, out)
    assert.matches("reason:\terror\t%(a table error value: rendering it failed: [^\n]*__tostring", out)
  end)
end)

describe("item 4: preemption reaches nested coroutines", function()
  local function spinner_in(kind)
    if kind == "wrap" then
      return function() coroutine.wrap(function() spin() end)() end
    elseif kind == "resume" then
      return function() coroutine.resume(coroutine.create(function() spin() end)) end
    else -- three levels deep
      return function()
        coroutine.wrap(function() coroutine.wrap(function() coroutine.wrap(spin)() end)() end)()
      end
    end
  end

  for _, kind in ipairs {"wrap", "resume", "nested"} do
    it("a loop in a coroutine (" .. kind .. ") does not freeze its scheduler, and kill ends it", function()
      mb.run(function()
        local pid, ref = mb.spawn_opt({monitor = true, scheduler = 1}, spinner_in(kind))
        assert.is_true(scheduler_responds(1), "the scheduler froze")
        assert.is_true(scheduler_responds(1), "the scheduler froze")
        mb.exit(pid, "kill")
        assert.are.equal("killed", down(ref, 5000))
      end, OPTS)
    end)
  end

  it("coroutines keep Lua's semantics: values, errors, dead coroutines, yields", function()
    mb.run(function()
      local co = coroutine.create(function(a, b)
        local c = coroutine.yield(a + b)
        error("in co " .. c)
      end)
      assert.are.same({true, 3}, {coroutine.resume(co, 1, 2)})
      local ok, err = coroutine.resume(co, "x")
      assert.is_false(ok)
      assert.matches("in co x", err)
      assert.are.same({false, "cannot resume dead coroutine"}, {coroutine.resume(co)})
      local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end return "end" end)
      assert.are.same({1, 2, 3, "end"}, {gen(), gen(), gen(), gen()})
      local bad = coroutine.wrap(function() error("wrapped") end)
      local ok2, err2 = pcall(bad)
      assert.is_false(ok2)
      assert.matches("hardening_spec.lua:%d+: wrapped", err2)
      local tbl = {}
      local ok3, err3 = pcall(coroutine.wrap(function() error(tbl) end))
      assert.is_false(ok3)
      assert.are.equal(tbl, err3)
      assert.are.same({false, "cannot resume non-suspended coroutine"},
        {coroutine.resume(coroutine.running())})
      raises("(coroutine expected, got number)", coroutine.resume, 42)
    end, OPTS)
  end)

  it("a long computation in a nested coroutine still finishes with its result", function()
    mb.run(function()
      local me = mb.self()
      mb.spawn_opt({scheduler = 1}, function()
        local co = coroutine.wrap(function()
          local t0, n = mb.clock(), 0
          while mb.clock() - t0 < 0.05 do n = n + 1 end -- spans many slices
          coroutine.yield("first", n > 0)
          return "second"
        end)
        local a, b = co()
        mb.send(me, {a, b, co(), mb.info(mb.self()).reductions >= 4000})
      end)
      assert.are.same({"first", true, "second", true}, recv(nil, 5000))
    end, OPTS)
  end)
end)

describe("item 5: mb.stop and mb.step inside a process", function()
  it("raise a clear error and leave the process working", function()
    mb.run(function()
      raises("mb.stop cannot be called from inside a process", mb.stop)
      raises("mb.step cannot be called from inside a process", mb.step, 1)
      local me = mb.self()
      assert.is_true(mb.is_pid(me))
      local _, ref = mb.spawn_opt({monitor = true, scheduler = 2}, function()
        local ok1, e1 = pcall(mb.stop)
        local ok2, e2 = pcall(mb.step)
        mb.send(me, {ok1, e1, ok2, e2, mb.self() ~= nil})
      end)
      local m = recv(function(x) return type(x) == "table" and x[5] ~= nil end)
      assert.is_false(m[1])
      assert.matches("mb.stop cannot be called from inside a process", m[2], 1, true)
      assert.is_false(m[3])
      assert.matches("mb.step cannot be called from inside a process", m[4], 1, true)
      assert.is_true(m[5])
      assert.are.equal("normal", down(ref))
    end, OPTS)
  end)

  it("the host still steps and stops its runtime", function()
    mb.start({schedulers = 1})
    assert.is_true(mb.step(1))
    mb.stop()
  end)
end)

describe("item 6: preemption keeps the user's debug hook", function()
  it("a count hook set by the process keeps firing across preemptions", function()
    mb.run(function()
      local me = mb.self()
      mb.spawn_opt({scheduler = 1}, function()
        local hits = 0
        local function hook() hits = hits + 1 end
        debug.sethook(hook, "", 1000)
        local t0 = mb.clock()
        while mb.clock() - t0 < 0.03 do end -- several slices: preempted meanwhile
        local before = hits
        local t1 = mb.clock()
        while mb.clock() - t1 < 0.03 do end
        local same = debug.gethook() == hook
        debug.sethook()
        mb.send(me, {before > 0, hits > before, same, mb.info(mb.self()).reductions >= 4000})
      end)
      assert.are.same({true, true, true, true}, recv(nil, 5000))
    end, OPTS)
  end)

  it("a line hook sees the lines run after a preemption", function()
    mb.run(function()
      local me = mb.self()
      mb.spawn_opt({scheduler = 1}, function()
        local lines = 0
        debug.sethook(function() lines = lines + 1 end, "l")
        local t0 = mb.clock()
        while mb.clock() - t0 < 0.03 do end
        local mid = lines
        for _ = 1, 100 do local _ = 1 end
        debug.sethook()
        mb.send(me, {mid > 0, lines >= mid + 100, mb.info(mb.self()).reductions >= 4000})
      end)
      assert.are.same({true, true, true}, recv(nil, 5000))
    end, OPTS)
  end)
end)

describe("item 7: processes do not observe each other through pooled coroutines", function()
  it("a value stored under coroutine.running() is not seen by the next process", function()
    mb.run(function()
      local me = mb.self()
      for _ = 1, 3 do
        local _, r1 = mb.spawn_opt({monitor = true, scheduler = 2}, function()
          local store = package.loaded["hardening.store"] or setmetatable({}, {__mode = "k"})
          package.loaded["hardening.store"] = store
          store[coroutine.running()] = "secret"
        end)
        assert.are.equal("normal", down(r1))
        local _, r2 = mb.spawn_opt({monitor = true, scheduler = 2}, function()
          local store = package.loaded["hardening.store"]
          mb.send(me, {"seen", store and store[coroutine.running()] or false})
        end)
        assert.are.same({"seen", false}, recv(function(m) return m[1] == "seen" end))
        down(r2)
      end
    end, OPTS)
  end)
end)

describe("item 10: mb.receive(timeout)", function()
  it("a number alone is the timeout", function()
    mb.run(function()
      local t0 = mb.clock()
      local m, err = mb.receive(50)
      assert.is_nil(m)
      assert.are.equal("timeout", err)
      assert.is_true(mb.clock() - t0 >= 0.04)
      mb.send(mb.self(), "here")
      assert.are.equal("here", mb.receive(500))
      assert.are.same({nil, "timeout"}, {mb.receive(0)})
    end, OPTS)
  end)
end)

describe("item 11: each process has its own globals", function()
  it("a global written by a process is that process's alone, on any scheduler", function()
    mb.run(function()
      local me = mb.self()
      for s = 1, 2 do
        local writer = mb.spawn_opt({scheduler = s}, function()
          COUNTER = (COUNTER or 0) + 1
          mb.send(me, {"wrote", COUNTER, type(print), type(string.format)})
          mb.receive()
          mb.send(me, {"still", COUNTER})
        end)
        assert.are.same({"wrote", 1, "function", "function"}, recv(function(m) return m[1] == "wrote" end))
        mb.spawn_opt({scheduler = s}, function() mb.send(me, {"other", COUNTER == nil}) end)
        assert.are.same({"other", true}, recv(function(m) return m[1] == "other" end))
        mb.send(writer, "go")
        assert.are.same({"still", 1}, recv(function(m) return m[1] == "still" end))
      end
      assert.is_nil(rawget(_G, "COUNTER"))
    end, OPTS)
  end)

  it("the functions a closure brings along share the process's globals", function()
    mb.run(function()
      local me = mb.self()
      local function set(v) SHARED_G = v end
      local function get() return SHARED_G end
      mb.spawn_opt({scheduler = 2}, function()
        set("mine")
        mb.send(me, {get(), rawget(_G, "SHARED_G")})
      end)
      assert.are.same({"mine"}, recv())
    end, OPTS)
  end)
end)

describe("item 13: mb.run when main is killed", function()
  it("raises an exit error with the reason", function()
    local ok, err = pcall(mb.run, function()
      local main = mb.self()
      mb.spawn(function() mb.exit(main, "kill") end)
      mb.receive()
    end, OPTS)
    assert.is_false(ok)
    assert.are.equal("killed", mb.exit_reason(err))
  end)

  it("keeps a structured reason from an exit signal", function()
    local ok, err = pcall(mb.run, function()
      local main = mb.self()
      mb.spawn(function() mb.exit(main, {"shutdown", "by peer"}) end)
      mb.receive()
    end, OPTS)
    assert.is_false(ok)
    assert.are.same({"shutdown", "by peer"}, mb.exit_reason(err))
  end)
end)

describe("item 19: structured error values", function()
  it("a table raised as an error stays a value in the exit reason", function()
    mb.run(function()
      local _, ref = mb.spawn_opt({monitor = true, scheduler = 2}, function()
        mb.set_crash_handler(function() end)
        error({code = 42, what = "bad input"})
      end)
      local reason = down(ref)
      assert.are.equal("error", reason[1])
      assert.are.same({code = 42, what = "bad input"}, reason[2])
      assert.matches("stack traceback", reason[3], 1, true)
    end, OPTS)
  end)
end)

describe("item 30: receive inside a receive predicate", function()
  it("receive, flush and call raise, and no message is delivered twice", function()
    mb.run(function()
      local me = mb.self()
      for i = 1, 3 do mb.send(me, i) end
      local errs = {}
      local m = mb.receive(function(x)
        if x == 1 then
          errs[#errs + 1] = select(2, pcall(mb.receive, nil, 0))
          errs[#errs + 1] = select(2, pcall(mb.flush))
          errs[#errs + 1] = select(2, pcall(require("moonbeam.core").call, me, "req", 10))
        end
        return x == 2
      end)
      assert.are.equal(2, m)
      assert.are.equal(3, #errs)
      for _, e in ipairs(errs) do assert.matches("cannot be used inside a receive predicate", e, 1, true) end
      assert.are.equal(1, mb.receive(nil, 0))
      assert.are.equal(3, mb.receive(nil, 0))
      assert.are.same({nil, "timeout"}, {mb.receive(nil, 0)})
    end, OPTS)
  end)

  it("a predicate that raises leaves receive usable", function()
    mb.run(function()
      mb.send(mb.self(), "a")
      raises("predicate failed", mb.receive, function() error("predicate failed") end)
      assert.are.equal("a", mb.receive(nil, 0))
    end, OPTS)
  end)
end)

describe("item 33: crash handlers", function()
  it("a crash handler raising a table is reported readably, not as (null)", function()
    local out, ok = run_script([[
      local mb = require "moonbeam"
      mb.run(function()
        mb.set_crash_handler(function() error({why = "handler table"}) end)
        local _, ref = mb.spawn_opt({monitor = true, scheduler = 1}, function() error("original") end)
        mb.receive(function(m) return m[2] == ref end)
      end, {schedulers = 2})
    ]])
    assert.is_true(ok, out)
    assert.not_matches("(null)", out, 1, true)
    assert.matches("the crash handler failed: {why = \"handler table\"}", out, 1, true)
    assert.matches("crashed: [^\n]*original", out)
  end)
end)

describe("item 12: main's end shuts down its linked trapping processes", function()
  local function read(path)
    local f = io.open(path)
    if not f then return nil end
    local s = f:read("a")
    f:close()
    return s
  end

  it("a trapping gen_server started with start_link runs terminate, on any scheduler", function()
    for s = 1, 2 do
      local path = os.tmpname()
      os.remove(path)
      local r = mb.run(function()
        local gen_server = require "moonbeam.gen_server"
        assert(gen_server.start_link("hardening_server", path, {scheduler = s}))
        return "main done"
      end, OPTS)
      assert.are.equal("main done", r)
      assert.are.equal('normal', read(path))
      os.remove(path)
    end
  end)

  it("waits at most opts.shutdown ms for a process that does not stop", function()
    local t0 = mb.clock()
    local r = mb.run(function()
      mb.spawn_link(function()
        mb.trap_exit(true)
        mb.receive(function() return false end)
      end)
      mb.sleep(10)
      return 1
    end, {schedulers = 2, shutdown = 200})
    local took = mb.clock() - t0
    assert.are.equal(1, r)
    assert.is_true(took >= 0.19, "did not wait: " .. took)
    assert.is_true(took < 3, "waited too long: " .. took)
  end)

  it("does not wait for linked processes that do not trap exits", function()
    local t0 = mb.clock()
    mb.run(function()
      mb.spawn_link(function() mb.receive() end)
      return 1
    end, {schedulers = 2, shutdown = 5000})
    assert.is_true(mb.clock() - t0 < 2)
  end)

  it("rejects a bad shutdown option", function()
    raises("opts.shutdown must be a number of ms >= 0", mb.run, function() end, {shutdown = "soon"})
  end)
end)

describe("item 33: calls to self", function()
  it("gen_server.get_state(self) fails at once with calling_self", function()
    mb.run(function()
      local gen_server = require "moonbeam.gen_server"
      local pid = assert(gen_server.start("hardening_server", false))
      local got = gen_server.call(pid, "get_state_of_self")
      assert.is_false(got[1])
      assert.are.equal("calling_self", got[2][1])
      assert.is_true(got[3] < 1, "waited " .. got[3] .. " s")
      gen_server.stop(pid)
    end, OPTS)
  end)

  it("core.call to the caller itself answers calling_self at once", function()
    mb.run(function()
      local ok, why = require("moonbeam.core").call(mb.self(), "req", 2000)
      assert.is_false(ok)
      assert.are.equal("calling_self", why)
    end, OPTS)
  end)
end)

describe("item 19: one crash-report format, readable reasons", function()
  it("the first crash on a scheduler whose VM has not loaded the logger is a logger report", function()
    local out, ok = run_script([[
      local mb = require "moonbeam"
      local logger = require "moonbeam.logger"
      mb.run(function()
        for s = 2, 1, -1 do -- scheduler 2 first: its VM has not loaded the logger
          local _, ref = mb.spawn_opt({monitor = true, scheduler = s}, function() error("boom on " .. s) end)
          mb.receive(function(m) return m[2] == ref end)
        end
        logger.flush()
      end, {schedulers = 2})
    ]])
    assert.is_true(ok, out)
    assert.not_matches("moonbeam: process", out, 1, true)
    local _, n = out:gsub("%[error%] <[%d.]+>: Process <[%d.]+> crashed\n%*%* %(error%) [^\n]*boom on %d", "")
    assert.are.equal(2, n, out)
  end)

  it("mb.format prints a traceback inside a reason as lines, not escapes", function()
    local s = mb.format({"error", "msg", "stack traceback:\n\t[C]: in ?\n\tx.lua:1: in main chunk"})
    assert.not_matches("\\9", s, 1, true)
    assert.matches('"stack traceback:\n\t[C]: in ?\n\tx.lua:1: in main chunk"', s, 1, true)
    assert.are.equal('{"a\\"b\\\\c\\001"}', mb.format({'a"b\\c\1'}))
  end)
end)

describe("item 18: API errors point at the caller's line", function()
  it("for every kind of misuse, in a process", function()
    mb.run(function()
      local calls = {
        function() mb.send(nil, 1) end,
        function() mb.send(mb.self()) end,
        function() mb.send(mb.self(), print) end,
        function() mb.receive("x") end,
        function() mb.receive(nil, -1) end,
        function() mb.sleep(-1) end,
        function() mb.link("x") end,
        function() mb.monitor(5) end,
        function() mb.demonitor(5) end,
        function() mb.exit(5, "x") end,
        function() mb.trap_exit() end,
        function() mb.spawn(5) end,
        function() mb.spawn_link(5) end,
        function() mb.spawn_opt({scheduler = 99}, function() end) end,
        function() mb.register({}) end,
        function() mb.send_after(-1, mb.self(), 1) end,
        function() mb.cancel_timer("x") end,
        function() mb.info(5) end,
        function() mb.subscribe() end,
        function() mb.on_signal("SIGFOO") end,
        function() mb.stop() end,
        function() mb.run(function() end) end,
      }
      for i, f in ipairs(calls) do
        local ok, err = pcall(f)
        assert.is_false(ok, "call " .. i .. " did not raise")
        assert.matches("^[^:]*hardening_spec%.lua:%d+: ", tostring(err), nil, false)
      end
    end, OPTS)
  end)

  it("outside a process and for mb.run's arguments", function()
    for _, f in ipairs {
      function() mb.run(5) end,
      function() mb.run(function() end, 5) end,
      function() mb.run(function() end, {schedulers = 0}) end,
      function() mb.self() end,
      function() mb.receive() end,
    } do
      local ok, err = pcall(f)
      assert.is_false(ok)
      assert.matches("^[^:]*hardening_spec%.lua:%d+: ", tostring(err), nil, false)
    end
  end)
end)

describe("item 8: core.shutdown_deadline", function()
  it("ends the program after the deadline, naming what did not stop, even with every scheduler stuck in C", function()
    local t0 = mb.clock()
    local out, ok = run_script([[
      local mb = require "moonbeam"
      local core = require "moonbeam.core"
      mb.run(function()
        mb.spawn_opt({scheduler = 2, name = "stuck_worker"}, function() os.execute("exec sleep 5 >/dev/null 2>&1 </dev/null") end)
        mb.sleep(50)
        core.shutdown_deadline(300, 3, "test shutdown")
        os.execute("exec sleep 5 >/dev/null 2>&1 </dev/null")
      end, {schedulers = 2})
    ]])
    assert.is_false(ok)
    assert.is_true(mb.clock() - t0 < 4, "waited for the stuck processes")
    assert.matches("test shutdown did not finish within 300 ms", out, 1, true)
    assert.matches("(stuck_worker)", out, 1, true)
    assert.matches("exiting with code 3", out, 1, true)
  end)

  it("is disarmed with nil, and checks its arguments", function()
    local out, ok = run_script([[
      local mb = require "moonbeam"
      local core = require "moonbeam.core"
      mb.run(function()
        core.shutdown_deadline(100)
        core.shutdown_deadline(nil)
        mb.sleep(300)
        print("finished", pcall(core.shutdown_deadline, -1))
      end, {schedulers = 2})
    ]])
    assert.is_true(ok, out)
    assert.matches("finished\tfalse\t[^\n]*must be >= 0 ms", out)
  end)
end)

describe("item 23: memory limits", function()
  local function runaway()
    mb.set_crash_handler(function() end)
    local t = {}
    while true do t[#t + 1] = string.rep("x", 100) .. #t end
  end

  it("max_heap_size ends a runaway process with reason max_heap_size, on any scheduler", function()
    mb.run(function()
      for s = 1, 2 do
        local _, ref = mb.spawn_opt({monitor = true, scheduler = s, max_heap_size = 4 * 1024 * 1024}, runaway)
        assert.are.equal("max_heap_size", down(ref, 20000))
        assert.is_true(scheduler_responds(s))
      end
    end, OPTS)
  end)

  it("does not end a process that only makes garbage, beside others that do too", function()
    mb.run(function()
      local function churn()
        local t0 = mb.clock()
        while mb.clock() - t0 < 0.3 do
          local t = {} -- luacheck: ignore (garbage on purpose)
          for i = 1, 1000 do t[i] = {i} end
        end
      end
      local _, r1 = mb.spawn_opt({monitor = true, scheduler = 2, max_heap_size = 2 * 1024 * 1024}, churn)
      local _, r2 = mb.spawn_opt({monitor = true, scheduler = 2}, churn)
      local _, r3 = mb.spawn_opt({monitor = true, scheduler = 2}, churn)
      assert.are.equal("normal", down(r1))
      down(r2)
      down(r3)
    end, OPTS)
  end)

  it("checks the option", function()
    mb.run(function()
      raises("opts.max_heap_size must be a number of bytes >= 0", mb.spawn_opt, {max_heap_size = "big"}, function() end)
      raises("opts.max_heap_size must be a number of bytes >= 0", mb.spawn_opt, {max_heap_size = -1}, function() end)
    end, OPTS)
  end)

  it("a runaway without a limit fails in its own VM only (vm_memory), others go on", function()
    mb.run(function()
      local me = mb.self()
      local worker = mb.spawn_opt({scheduler = 1}, function()
        while true do
          local m = mb.receive()
          local t = {} -- luacheck: ignore (garbage on purpose)
          for i = 1, 10000 do t[i] = {i} end -- allocates while the runaway runs
          mb.send(me, {"worked", m})
        end
      end)
      local _, ref = mb.spawn_opt({monitor = true, scheduler = 2}, runaway)
      for i = 1, 20 do
        mb.send(worker, i)
        assert.are.same({"worked", i}, recv(function(m) return m[1] == "worked" end))
      end
      local reason = down(ref, 120000) -- slow under ThreadSanitizer
      assert.are.equal("error", reason[1])
      assert.matches("not enough memory", reason[2], 1, true)
      assert.is_true(scheduler_responds(2))
    end, {schedulers = 2, vm_memory = 32 * 1024 * 1024})
  end)

  it("the memory of a process that held much is given back when it ends", function()
    mb.run(function()
      local me = mb.self()
      local _, ref = mb.spawn_opt({monitor = true, scheduler = 2}, function()
        local t = {} -- luacheck: ignore (held until the process ends)
        for i = 1, 200000 do t[i] = {i} end
        mb.send(me, {"holding", collectgarbage("count")})
      end)
      local holding = recv(function(m) return m[1] == "holding" end)[2]
      down(ref)
      mb.spawn_opt({scheduler = 2}, function() mb.send(me, {"after", collectgarbage("count")}) end)
      local after = recv(function(m) return m[1] == "after" end)[2]
      assert.is_true(holding > 10000, "held " .. holding .. " KB")
      assert.is_true(after < holding / 4, ("still %.0f KB of %.0f"):format(after, holding))
    end, OPTS)
  end)
end)

describe("item 21: allocation failure in the binding", function()
  it("a scheduler VM that cannot be made fails its processes with out_of_memory instead of aborting", function()
    local out, ok = run_script([[
      local mb = require "moonbeam"
      print(pcall(mb.run, function()
        local _, ref = mb.spawn_opt({monitor = true, scheduler = 2}, function() end)
        local m = mb.receive(function(m) return m[2] == ref end, 5000)
        print("reason:", m and m[5])
        return "main ok"
      end, {schedulers = 2, vm_memory = 20000}))
    ]])
    assert.is_true(ok, out)
    assert.matches("reason:\tout_of_memory", out, 1, true)
    assert.matches("true\tmain ok", out, 1, true)
    assert.matches("cannot set up the Lua VM of scheduler 2: not enough memory", out, 1, true)
  end)

  it("a process out of memory gets a Lua memory error it can catch, and the VM goes on", function()
    mb.run(function()
      local me = mb.self()
      mb.spawn_opt({scheduler = 2}, function()
        local ok, err = pcall(function()
          local t = {}
          while true do t[#t + 1] = string.rep("y", 1000) .. #t end
        end)
        collectgarbage()
        mb.send(me, {ok, err, mb.self() ~= nil})
      end)
      local m = recv(nil, 120000)
      assert.is_false(m[1])
      assert.matches("not enough memory", m[2], 1, true)
      assert.is_true(m[3])
      assert.is_true(scheduler_responds(2))
    end, {schedulers = 2, vm_memory = 32 * 1024 * 1024})
  end)
end)
