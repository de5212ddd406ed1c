local mb = require "moonbeam"
local task = require "moonbeam.task"
local task_supervisor = require "moonbeam.task_supervisor"
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

local function recv(match, timeout)
  local m = mb.receive(match, timeout or 2000)
  assert(m ~= nil, "no message within the timeout")
  return m
end

local function contains(list, x)
  for _, v in ipairs(list) do if v == x then return true end end
  return false
end

local function linked(a, b)
  return contains(mb.info(a).links or {}, b)
end

describe("task_supervisor", function()
  describe("async", function()
    it("runs the task under the supervisor and await returns its result", function()
      run(function()
        local sup = assert(task_supervisor.start_link())
        local t = task_supervisor.async(sup, function(a, b) return a * b end, 6, 7)
        assert.are.equal(42, task.await(t))
        assert.are.equal(0, mb.flush())
      end)
    end)

    it("the task is a child of the supervisor, linked to the caller and monitored", function()
      run(function()
        local sup = assert(task_supervisor.start_link({name = "tsup"}))
        local t = task_supervisor.async("tsup", function() mb.receive(function(m) return m == "go" end) return "done" end)
        assert.is_true(contains(task_supervisor.children(sup), t.pid))
        assert.is_true(linked(t.pid, sup))
        assert.is_true(linked(t.pid, mb.self()))
        assert.are.equal(mb.self(), t.owner)
        mb.send(t.pid, "go")
        assert.are.same({"ok", "done"}, task.yield(t, 2000))
      end)
    end)

    it("a crash in the task crashes the caller through the link", function()
      run(function()
        local sup = assert(task_supervisor.start_link())
        local me = mb.self()
        local caller = mb.spawn(function()
          local t = task_supervisor.async(sup, function() error("linked boom") end)
          task.await(t)
          mb.send(me, "not reached")
        end)
        local ref = mb.monitor(caller)
        local down = recv(function(m) return m[1] == "DOWN" and m[2] == ref end)
        assert.matches("linked boom", down[5][2])
        assert.is_nil(mb.receive(function(m) return m == "not reached" end, 0))
        assert.is_true(mb.alive(sup))
      end)
    end)

    it("the task dies with its caller", function()
      run(function()
        local sup = assert(task_supervisor.start_link())
        local me = mb.self()
        mb.spawn(function()
          local t = task_supervisor.async(sup, function() mb.receive(function() return false end) end)
          mb.send(me, {"task", t.pid})
          mb.receive(nil, 20)
          mb.exit("caller_gone")
        end)
        local pid = recv(function(m) return m[1] == "task" end)[2]
        local ref = mb.monitor(pid)
        assert.are.equal("caller_gone", recv(function(m) return m[2] == ref end)[5])
      end)
    end)
  end)

  describe("async_nolink", function()
    it("a crash in the task reaches the caller as {\"exit\", reason} from yield, not as an exit signal", function()
      run(function()
        local sup = assert(task_supervisor.start_link())
        local t = task_supervisor.async_nolink(sup, function() error("nolink boom") end)
        assert.is_false(linked(mb.self(), t.pid) and mb.alive(t.pid))
        local r = task.yield(t, 2000)
        assert.are.equal("exit", r[1])
        assert.matches("nolink boom", r[2][2])
        mb.sleep(20)
        assert.are.equal(0, mb.flush())  -- no EXIT, nothing left
      end)
    end)

    it("a crash reaches the caller as a DOWN message tagged with the task's ref", function()
      run(function()
        local sup = assert(task_supervisor.start_link())
        local t = task_supervisor.async_nolink(sup, function() mb.exit("went_wrong") end)
        local down = recv(function(m) return m[1] == "DOWN" end)
        assert.are.same({"DOWN", t.ref, "process", t.pid, "went_wrong"}, down)
      end)
    end)

    it("await fails with the task's reason, as an exit the caller can catch", function()
      run(function()
        local sup = assert(task_supervisor.start_link())
        local t = task_supervisor.async_nolink(sup, function() mb.exit("bad") end)
        local r = exit_of(task.await, t, 2000)
        assert.are.equal("bad", r[1])
        assert.are.equal("await", r[2][2])
      end)
    end)

    it("a result arrives as {ref, result}", function()
      run(function()
        local sup = assert(task_supervisor.start_link())
        local t = task_supervisor.async_nolink(sup, function() return {answer = 42} end)
        local msg = recv(function(m) return m[1] == t.ref end)
        assert.are.same({t.ref, {answer = 42}}, msg)
        mb.demonitor(t.ref, {flush = true})
      end)
    end)

    it("the task keeps running when its caller dies", function()
      run(function()
        local sup = assert(task_supervisor.start_link())
        local me = mb.self()
        mb.spawn(function()
          local t = task_supervisor.async_nolink(sup, function()
            mb.receive(function(m) return m == "go" end)
            mb.send(me, "task finished")
          end)
          mb.send(me, {"task", t.pid})
          mb.exit("caller_gone")
        end)
        local pid = recv(function(m) return m[1] == "task" end)[2]
        mb.sleep(20)
        assert.is_true(mb.alive(pid))
        mb.send(pid, "go")
        assert.are.equal("task finished", recv(function(m) return m == "task finished" end))
      end)
    end)

    it("task.shutdown stops a supervised task", function()
      run(function()
        local sup = assert(task_supervisor.start_link())
        local t = task_supervisor.async_nolink(sup, function() mb.receive(function() return false end) end)
        assert.is_nil(task.shutdown(t, "brutal_kill"))
        assert.is_false(mb.alive(t.pid))
        mb.sleep(10)
        assert.are.same({}, task_supervisor.children(sup))
      end)
    end)
  end)

  describe("start_child", function()
    it("runs the function under the supervisor and returns its pid", function()
      run(function()
        local sup = assert(task_supervisor.start_link())
        local me = mb.self()
        local pid = task_supervisor.start_child(sup, function(x) mb.send(me, {"ran", x, mb.self()}) end, "arg")
        assert.is_true(mb.is_pid(pid))
        local m = recv(function(m) return m[1] == "ran" end)
        assert.are.same({"ran", "arg", pid}, m)
      end)
    end)

    it("is temporary: a crashed task is not restarted", function()
      run(function()
        local sup = assert(task_supervisor.start_link())
        local me = mb.self()
        task_supervisor.start_child(sup, function() mb.send(me, "started") error("once") end)
        recv(function(m) return m == "started" end)
        assert.is_nil(mb.receive(function(m) return m == "started" end, 100))
        assert.are.same({}, task_supervisor.children(sup))
      end)
    end)

    it("start_child_opt with restart = \"transient\" runs the function again after a crash", function()
      run(function()
        local sup = assert(task_supervisor.start_link())
        local me = mb.self()
        local counter = mb.spawn(function()
          local n = 0
          while true do
            local m = mb.receive()
            n = n + 1
            mb.send(m, n)
          end
        end)
        task_supervisor.start_child_opt(sup, {restart = "transient"}, function()
          mb.send(counter, mb.self())
          local n = mb.receive()
          mb.send(me, {"run", n})
          if n < 3 then error("again") end
        end)
        assert.are.same({"run", 1}, recv(function(m) return m[1] == "run" end))
        assert.are.same({"run", 2}, recv(function(m) return m[1] == "run" end))
        assert.are.same({"run", 3}, recv(function(m) return m[1] == "run" end))
        assert.is_nil(mb.receive(function(m) return m[1] == "run" end, 100))
        mb.exit(counter, "kill")
      end)
    end)
  end)

  describe("the supervisor", function()
    it("max_children: start_child returns nil, \"max_children\" and async raises", function()
      run(function()
        local sup = assert(task_supervisor.start_link({max_children = 1}))
        local block = function() mb.receive(function() return false end) end
        assert.is_true(mb.is_pid(task_supervisor.start_child(sup, block)))
        local pid, err = task_supervisor.start_child(sup, block)
        assert.is_nil(pid)
        assert.are.equal("max_children", err)
        local ok, msg = pcall(task_supervisor.async, sup, block)
        assert.is_false(ok)
        assert.matches("could not start the task: max_children", msg)
      end)
    end)

    it("children and terminate_child", function()
      run(function()
        local sup = assert(task_supervisor.start_link())
        local block = function() mb.receive(function() return false end) end
        local a = task_supervisor.start_child(sup, block)
        local b = task_supervisor.start_child(sup, block)
        local kids = task_supervisor.children(sup)
        assert.are.equal(2, #kids)
        assert.is_true(contains(kids, a) and contains(kids, b))
        assert.are.equal("ok", task_supervisor.terminate_child(sup, a))
        assert.is_false(mb.alive(a))
        assert.are.same({b}, task_supervisor.children(sup))
        local r, err = task_supervisor.terminate_child(sup, a)
        assert.is_nil(r)
        assert.are.equal("not_found", err)
      end)
    end)

    it("stopping the supervisor shuts its tasks down", function()
      run(function()
        local sup = assert(task_supervisor.start_link())
        mb.unlink(sup)
        local t = task_supervisor.async_nolink(sup, function() mb.receive(function() return false end) end)
        task_supervisor.stop(sup)
        local down = recv(function(m) return m[1] == "DOWN" and m[2] == t.ref end)
        assert.are.equal("shutdown", down[5])
      end)
    end)

    it("child_spec describes a supervisor starting with start_link", function()
      run(function()
        local spec = task_supervisor.child_spec({name = "tasks"})
        assert.are.equal("tasks", spec.id)
        assert.are.equal("supervisor", spec.type)
        local pid = task_supervisor.start_link(spec.start[3][1])
        assert.are.equal(pid, mb.whereis("tasks"))
      end)
    end)
  end)

  describe("async_stream", function()
    it("runs the items under the supervisor, results in order", function()
      run(function()
        local sup = assert(task_supervisor.start_link())
        local out = {}
        for r in task_supervisor.async_stream(sup, {3, 1, 2}, function(n) mb.sleep(n * 10) return n * n end,
                                              {max_concurrency = 3}) do
          out[#out + 1] = r
        end
        assert.are.same({{"ok", 9}, {"ok", 1}, {"ok", 4}}, out)
        assert.are.equal(0, mb.flush())
      end)
    end)

    it("async_stream_nolink gives {\"exit\", reason} for a crashed item", function()
      run(function()
        local sup = assert(task_supervisor.start_link())
        local out = {}
        for r in task_supervisor.async_stream_nolink(sup, {1, 2, 3}, function(n)
          if n == 2 then mb.exit("two") end
          return n
        end) do
          out[#out + 1] = r
        end
        assert.are.same({{"ok", 1}, {"exit", "two"}, {"ok", 3}}, out)
      end)
    end)
  end)

  describe("bad input", function()
    it("async rejects a non-function and a bad supervisor", function()
      run(function()
        local sup = assert(task_supervisor.start_link())
        assert.has_error(function() task_supervisor.async(sup, 42) end,
          "task_supervisor.async: expected a function or {module_name, function_name}, got number")
        assert.has_error(function() task_supervisor.async(42, function() end) end)
        assert.has_error(function() task_supervisor.start_link("opts") end)
      end)
    end)

    it("async to an unknown supervisor fails with noproc", function()
      run(function()
        local r = exit_of(task_supervisor.async, "no_such_tsup", function() end)
        assert.are.equal("noproc", r[1])
      end)
    end)
  end)
end)

describe("task_supervisor: options (issue 8 items 17, 18)", function()
  local function raised(fn)
    local ok, err = pcall(fn)
    assert.is_false(ok, "expected an error")
    assert.are.equal("string", type(err), "expected an error message, got " .. tostring(err))
    return err
  end

  it("unknown options raise naming the key and the valid ones, at the caller's line", function()
    run(function()
      local line = debug.getinfo(1, "l").currentline
      local err = raised(function() task_supervisor.start_link({max_child = 1}) end) -- line + 1
      assert.matches("task_supervisor_spec.lua:" .. (line + 1) .. ": task_supervisor.start_link: unknown option "
                     .. "'max_child' (valid options: name, max_children, max_restarts, max_seconds)", err, 1, true)
      assert.matches("task_supervisor.child_spec: unknown option 'shutdown'",
                     raised(function() task_supervisor.child_spec({shutdown = 5}) end), 1, true)
      local sup = assert(task_supervisor.start_link())
      assert.matches("task_supervisor.start_child_opt: unknown option 'restarts' (valid options: restart, shutdown)",
                     raised(function()
                       task_supervisor.start_child_opt(sup, {restarts = "transient"}, function() end)
                     end), 1, true)
      err = raised(function() task_supervisor.async(42, function() end) end) -- line + 11
      assert.matches("task_supervisor_spec.lua:" .. (line + 11) .. ": task_supervisor.async: expected a supervisor",
                     err, 1, true)
    end)
  end)
end)
