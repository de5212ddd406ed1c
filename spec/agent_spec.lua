local mb = require "moonbeam"
local agent = require "moonbeam.agent"
local logger = require "moonbeam.logger"

local function run(fn)
  return mb.run(function()
    logger.set_level("none") -- the crashes below are expected
    return fn()
  end, {schedulers = 2})
end

-- The exit reason raised by f(...), or fails if f returns normally.
local function exit_of(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an exit")
  local reason = mb.exit_reason(err)
  assert(reason ~= nil, "expected an exit, got error: " .. tostring(err))
  return reason
end

describe("agent", function()
  it("start_link runs the function in the agent process and keeps its result as the state", function()
    run(function()
      local me = mb.self()
      local pid = agent.start_link(function() return {owner = me, pid = mb.self()} end)
      assert.is_true(mb.is_pid(pid))
      local st = agent.get(pid, function(s) return s end)
      assert.are.equal(me, st.owner)
      assert.are.equal(pid, st.pid)
    end)
  end)

  it("get, update, get_and_update run the function inside the agent process", function()
    run(function()
      local pid = agent.start_link(function() return 1 end)
      assert.are.equal(pid, agent.get(pid, function() return mb.self() end))
      assert.are.equal("ok", agent.update(pid, function(n) return n + 10 end))
      assert.are.equal(11, agent.get(pid, function(n) return n end))
      assert.are.equal(11, agent.get_and_update(pid, function(n) return n, n * 2 end))
      assert.are.equal(22, agent.get(pid, function(n) return n end))
    end)
  end)

  it("upvalues are copied into the agent: the caller's variables are not changed", function()
    run(function()
      local counter = 0
      local step = 5
      local pid = agent.start_link(function() return 0 end)
      agent.update(pid, function(n) counter = counter + 1 return n + step end)
      assert.are.equal(0, counter)
      assert.are.equal(5, agent.get(pid, function(n) return n end))
      step = 7
      agent.update(pid, function(n) return n + step end)
      assert.are.equal(12, agent.get(pid, function(n) return n end))
    end)
  end)

  it("functions closing over tables of functions work", function()
    run(function()
      local ops = {add = function(a, b) return a + b end}
      local pid = agent.start_link(function() return ops.add(1, 2) end)
      agent.update(pid, function(n) return ops.add(n, 4) end)
      assert.are.equal(7, agent.get(pid, function(n) return n end))
    end)
  end)

  it("accepts {module_name, function_name, args...}", function()
    run(function()
      local pid = agent.start_link({"string", "rep", "ab", 2})
      assert.are.equal("abab", agent.get(pid, function(s) return s end))
      assert.are.equal("ABAB", agent.get(pid, {"string", "upper"}))
      agent.update(pid, {"string", "sub", 1, 3})
      assert.are.equal("aba", agent.get(pid, {"string", "rep", 1}))
    end)
  end)

  it("cast is asynchronous and returns ok", function()
    run(function()
      local pid = agent.start_link(function() return {} end)
      local me = mb.self()
      assert.are.equal("ok", agent.cast(pid, function(s)
        mb.receive(function(m) return m == "go" end)
        s.done = true
        mb.send(me, "cast ran")
        return s
      end))
      -- the caller was not blocked
      mb.send(pid, "go")
      assert.are.equal("cast ran", mb.receive(nil, 2000))
      assert.is_true(agent.get(pid, function(s) return s.done end))
    end)
  end)

  it("cast to a dead agent returns ok", function()
    run(function()
      local pid = agent.start(function() return 0 end)
      agent.stop(pid)
      assert.are.equal("ok", agent.cast(pid, function(s) return s end))
    end)
  end)

  it("get, update and get_and_update time out after 5000 ms by default", function()
    run(function()
      local pid = agent.start_link(function() return 0 end)
      agent.cast(pid, function(s) mb.sleep(6000) return s end)
      local r = exit_of(agent.get, pid, function(s) return s end)
      assert.are.same({"timeout", {"agent", "get", {pid, 5000}}}, r)
      mb.unlink(pid)
      mb.exit(pid, "kill")
    end)
  end)

  it("a timeout can be given", function()
    run(function()
      local pid = agent.start_link(function() return 0 end)
      agent.cast(pid, function(s) mb.sleep(500) return s end)
      assert.are.same({"timeout", {"agent", "update", {pid, 30}}},
        exit_of(agent.update, pid, function(s) return s end, 30))
      assert.are.same({"timeout", {"agent", "get_and_update", {pid, 30}}},
        exit_of(agent.get_and_update, pid, function(s) return s, s end, 30))
      assert.are.equal(0, agent.get(pid, function(s) return s end, "infinity"))
    end)
  end)

  it("a raising function crashes the agent, and the caller fails with its reason", function()
    run(function()
      local pid = agent.start(function() return 0 end)
      local ref = mb.monitor(pid)
      local r = exit_of(agent.get, pid, function() error("oops") end)
      assert.are.equal("error", r[1][1])
      assert.matches("oops", r[1][2])
      assert.are.equal("get", r[2][2])
      local down = mb.receive(function(m) return m[2] == ref end, 2000)
      assert.matches("oops", down[5][2])
    end)
  end)

  it("start fails with nil, reason when the function raises", function()
    run(function()
      local pid, reason = agent.start(function() error("no state") end)
      assert.is_nil(pid)
      assert.matches("no state", reason[2])
    end)
  end)

  it("names the agent", function()
    run(function()
      local pid = agent.start_link(function() return "named" end, {name = "agent_a"})
      assert.are.equal(pid, mb.whereis("agent_a"))
      assert.are.equal(pid, agent.whereis("agent_a"))
      assert.are.equal("named", agent.get("agent_a", function(s) return s end))
      local again, reason = agent.start(function() return 1 end, {name = "agent_a"})
      assert.is_nil(again)
      assert.are.same({"already_started", pid}, reason)
    end)
  end)

  it("stop is synchronous", function()
    run(function()
      local pid = agent.start(function() return 0 end)
      assert.are.equal("ok", agent.stop(pid))
      assert.is_false(mb.alive(pid))
    end)
  end)

  it("calls to an unknown or dead agent fail with noproc", function()
    run(function()
      assert.are.same({"noproc", {"agent", "get", {"no_agent", 5000}}},
        exit_of(agent.get, "no_agent", function(s) return s end))
      local pid = agent.start(function() return 0 end)
      agent.stop(pid)
      assert.are.equal("noproc", exit_of(agent.update, pid, function(s) return s end)[1])
      assert.are.equal("noproc", exit_of(agent.stop, pid)[1])
    end)
  end)

  it("child_spec starts the agent with start_link", function()
    run(function()
      local spec = agent.child_spec({"string", "rep", "x", 3}, {id = "a1"})
      assert.are.equal("a1", spec.id)
      assert.are.same({"moonbeam.agent", "start_link"}, {spec.start[1], spec.start[2]})
      local pid = agent.start_link(spec.start[3][1], spec.start[3][2])
      assert.are.equal("xxx", agent.get(pid, function(s) return s end))
    end)
  end)

  describe("bad input", function()
    it("start_link rejects something that is not a function", function()
      run(function()
        assert.has_error(function() agent.start_link(42) end,
          "agent.start_link: expected a function or {module_name, function_name, args...}, got number")
        assert.has_error(function() agent.start_link(function() end, "opts") end)
      end)
    end)

    it("get rejects a bad function, a bad timeout and a bad agent reference", function()
      run(function()
        local pid = agent.start_link(function() return 0 end)
        assert.has_error(function() agent.get(pid, "nope") end)
        assert.has_error(function() agent.get(pid, function(s) return s end, -1) end)
        assert.has_error(function() agent.get(42, function(s) return s end) end)
        assert.has_error(function() agent.cast(pid, 42) end)
      end)
    end)

    it("a module function that does not exist crashes the agent with a clear reason", function()
      run(function()
        local pid = agent.start(function() return 0 end)
        local r = exit_of(agent.get, pid, {"string", "no_such_fn"})
        assert.matches("string.no_such_fn is not a function", r[1][2])
      end)
    end)
  end)
end)

describe("agent: options and returns (issue 8 items 16, 17, 32)", function()
  local function raised(fn)
    local ok, err = pcall(fn)
    assert.is_false(ok, "expected an error")
    assert.are.equal("string", type(err), "expected an error message, got " .. tostring(err))
    return err
  end

  it("unknown options raise naming the key and the valid ones, at the caller's line", function()
    run(function()
      local line = debug.getinfo(1, "l").currentline
      local err = raised(function() agent.start_link(function() return 0 end, {nmae = "a"}) end) -- line + 1
      assert.matches("agent_spec.lua:" .. (line + 1) .. ": agent.start_link: unknown option 'nmae' "
                     .. "(valid options: name, timeout, scheduler)", err, 1, true)
      assert.matches("agent.child_spec: unknown option 'restarts' (valid options: id, restart, shutdown, name, "
                     .. "timeout, scheduler)",
                     raised(function() agent.child_spec(function() return 0 end, {restarts = "temporary"}) end),
                     1, true)
      assert.matches("agent.start: opts must be a table, got string",
                     raised(function() agent.start(function() return 0 end, "x") end), 1, true)
    end)
  end)

  it("a bad function raises at the caller's line, whatever the operation", function()
    run(function()
      local pid = assert(agent.start(function() return 1 end))
      local line = debug.getinfo(1, "l").currentline
      local err = raised(function() agent.get(pid, 42) end) -- line + 1
      assert.matches("agent_spec.lua:" .. (line + 1) .. ": agent.get: expected a function", err, 1, true)
      err = raised(function() agent.start(42) end) -- line + 3
      assert.matches("agent_spec.lua:" .. (line + 3) .. ": agent.start: expected a function", err, 1, true)
      local co = coroutine.create(function() end)
      err = raised(function() agent.update(pid, function() return co end) end) -- line + 6
      assert.matches("agent_spec.lua:" .. (line + 6) .. ": agent.update: function: upvalue 'co': cannot send a coroutine",
                     err, 1, true)
    end)
  end)

  it("get_and_update with a function that does not return two values crashes the agent clearly", function()
    run(function()
      logger.remove_backend("console")
      local pid = assert(agent.start(function() return 1 end))
      local ok, err = pcall(agent.get_and_update, pid, function(s) return s end)
      assert.is_false(ok)
      local reason = mb.exit_reason(err)
      assert.are.equal("error", reason[1][1])
      assert.matches("agent.get_and_update: the function must return two values %(the reply and the new state%), "
                     .. "got 1", reason[1][2])
      assert.is_false(mb.alive(pid))
    end)
  end)
end)
