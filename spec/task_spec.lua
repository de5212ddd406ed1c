-- busted runs this file in an environment of its own, which a spawned function
-- does not carry to its process: globals used there are captured as locals.
local error, pcall, ipairs = error, pcall, ipairs
local mb = require "moonbeam"
local task = require "moonbeam.task"

local function run(fn)
  return mb.run(fn, {schedulers = 2})
end

-- The exit reason raised by f(...), or fails if f returns normally.
local function exit_of(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an exit")
  local reason = mb.exit_reason(err)
  assert(reason ~= nil, "expected an exit, got error: " .. tostring(err))
  return reason
end

describe("task", function()
  describe("async and await", function()
    it("returns the result of the function, run in another process", function()
      run(function()
        local me = mb.self()
        local t = task.async(function(a, b)
          return {sum = a + b, other = mb.self() ~= me}
        end, 2, 3)
        local r = task.await(t)
        assert.are.equal(5, r.sum)
        assert.is_true(r.other)
        -- the monitor and the result message are gone
        assert.are.equal(0, mb.flush())
      end)
    end)

    it("accepts {module_name, function_name}", function()
      run(function()
        local t = task.async({"string", "rep"}, "ab", 3)
        assert.are.equal("ababab", task.await(t))
      end)
    end)

    it("async links and monitors: the task is linked to the caller", function()
      run(function()
        local t = task.async(function() mb.receive() end)
        local info = mb.info(mb.self())
        local linked = false
        for _, p in ipairs(info.links or {}) do if p == t.pid then linked = true end end
        assert.is_true(linked)
        assert.are.equal(mb.self(), t.owner)
        assert.is_not_nil(t.ref)
        task.shutdown(t, "brutal_kill")
      end)
    end)

    it("the result travels as a message tagged with the task's ref", function()
      run(function()
        local t = task.async(function() return "hello" end)
        local msg = mb.receive(function(m) return m[1] == t.ref end, 2000)
        assert.are.same({t.ref, "hello"}, msg)
        local down = mb.receive(function(m) return m[1] == "DOWN" end, 2000)
        assert.are.same({"DOWN", t.ref, "process", t.pid, "normal"}, down)
      end)
    end)

    it("a function closing over a table of functions is copied into the task", function()
      run(function()
        local ops = {double = function(x) return 2 * x end}
        local t = task.async(function(x) return ops.double(x) end, 21)
        assert.are.equal(42, task.await(t))
      end)
    end)

    it("a nil result is returned as nil", function()
      run(function()
        assert.is_nil(task.await(task.async(function() end)))
      end)
    end)

    it("await fails with a timeout naming the task after the timeout (and the task keeps running)", function()
      run(function()
        local t = task.async(function() mb.sleep(500) return "late" end)
        local reason = exit_of(task.await, t, 30)
        assert.are.equal("timeout", reason[1])
        assert.are.equal("task", reason[2][1])
        assert.are.equal("await", reason[2][2])
        assert.are.equal(t.pid, reason[2][3][1].pid)
        assert.are.equal(30, reason[2][3][2])
        assert.is_true(mb.alive(t.pid))
        mb.unlink(t.pid)
        mb.exit(t.pid, "kill")
      end)
    end)

    it("await's default timeout is 5000 ms", function()
      run(function()
        local t = task.async(function() mb.receive() end)
        local reason = exit_of(task.await, t)
        assert.are.equal("timeout", reason[1])
        assert.are.equal(5000, reason[2][3][2])
        task.shutdown(t, "brutal_kill")
      end)
    end)

    it("the task is killed with the caller when the caller fails to await in time", function()
      run(function()
        local me = mb.self()
        local caller = mb.spawn(function()
          local t = task.async(function() mb.receive() end)
          mb.send(me, t.pid)
          task.await(t, 20)
        end)
        local cref = mb.monitor(caller)
        local tpid = mb.receive(function(m) return mb.is_pid(m) end, 2000)
        local tref = mb.monitor(tpid)
        local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == cref end, 2000)
        assert.are.equal("timeout", down[5][1])
        down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == tref end, 2000)
        assert.are.equal("timeout", down[5][1])
      end)
    end)

    it("the task is killed with the caller when the caller crashes", function()
      run(function()
        local me = mb.self()
        local caller = mb.spawn(function()
          local t = task.async(function() mb.receive() end)
          mb.send(me, t.pid)
          mb.receive(nil, 20)
          error("caller boom")
        end)
        local tpid = mb.receive(function(m) return mb.is_pid(m) end, 2000)
        local tref = mb.monitor(tpid)
        local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == tref end, 2000)
        assert.are.equal("error", down[5][1])
        assert.matches("caller boom", down[5][2])
        assert.is_false(mb.alive(caller))
      end)
    end)

    it("a crashed task crashes the caller through the link", function()
      run(function()
        local me = mb.self()
        local caller = mb.spawn(function()
          local t = task.async(function() error("task boom") end)
          task.await(t)
          mb.send(me, "not reached")
        end)
        local cref = mb.monitor(caller)
        local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == cref end, 2000)
        assert.are.equal("error", down[5][1])
        assert.matches("task boom", down[5][2])
        assert.is_nil(mb.receive(function(m) return m == "not reached" end, 0))
      end)
    end)

    it("a caller that traps exits gets the task's reason from await", function()
      run(function()
        mb.trap_exit(true)
        local t = task.async(function() mb.exit("bad") end)
        local reason = exit_of(task.await, t, 2000)
        assert.are.same({"bad", {"task", "await", {t, 2000}}}, {reason[1], {reason[2][1], reason[2][2], {reason[2][3][1], reason[2][3][2]}}})
        local ex = mb.receive(function(m) return m[1] == "EXIT" end, 2000)
        assert.are.same({"EXIT", t.pid, "bad"}, ex)
      end)
    end)

    it("await_many returns the results in order", function()
      run(function()
        local ts = {}
        for i = 1, 5 do
          ts[i] = task.async(function(n) mb.sleep((6 - n) * 5) return n * n end, i)
        end
        assert.are.same({1, 4, 9, 16, 25}, task.await_many(ts))
        assert.are.equal(0, mb.flush())
      end)
    end)

    it("await_many fails with a timeout when one task is too slow", function()
      run(function()
        local fast = task.async(function() return 1 end)
        local slow = task.async(function() mb.receive() end)
        local reason = exit_of(task.await_many, {fast, slow}, 50)
        assert.are.equal("timeout", reason[1])
        assert.are.equal("await_many", reason[2][2])
        task.shutdown(slow, "brutal_kill")
      end)
    end)
  end)

  describe("yield", function()
    it("returns nil on timeout and leaves the task running", function()
      run(function()
        local t = task.async(function() mb.receive(function(m) return m == "go" end) return 42 end)
        assert.is_nil(task.yield(t, 20))
        assert.is_true(mb.alive(t.pid))
        mb.send(t.pid, "go")
        assert.are.same({"ok", 42}, task.yield(t, 2000))
      end)
    end)

    it("returns {\"exit\", reason} when the task ended without a result", function()
      run(function()
        local t = task.async_nolink(function() mb.exit("gone") end)
        assert.are.same({"exit", "gone"}, task.yield(t, 2000))
      end)
    end)

    it("yield_many gives each task's outcome, false for the ones still running", function()
      run(function()
        local a = task.async(function() return "a" end)
        local b = task.async_nolink(function() error("b broke") end)
        local c = task.async(function() mb.receive() end)
        local rs = task.yield_many({a, b, c}, 200)
        assert.are.same({"ok", "a"}, rs[1])
        assert.are.equal("exit", rs[2][1])
        assert.matches("b broke", rs[2][2][2])
        assert.is_false(rs[3])
        assert.is_nil(task.shutdown(c))
      end)
    end)
  end)

  describe("shutdown", function()
    it("stops a running task and returns nil", function()
      run(function()
        local t = task.async(function() mb.receive() end)
        assert.is_nil(task.shutdown(t))
        assert.is_false(mb.alive(t.pid))
        assert.are.equal(0, mb.flush())
      end)
    end)

    it("returns the result if the task replied before being shut down", function()
      run(function()
        local t = task.async(function() return "done" end)
        local ref = mb.monitor(t.pid)
        mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 2000)
        assert.are.same({"ok", "done"}, task.shutdown(t))
        assert.are.equal(0, mb.flush())
      end)
    end)

    it("returns {\"exit\", reason} if the task had crashed", function()
      run(function()
        local t = task.async_nolink(function() mb.exit("crashed") end)
        mb.sleep(30)
        assert.are.same({"exit", "crashed"}, task.shutdown(t))
      end)
    end)

    it("kills a task that traps exits once the timeout passes", function()
      run(function()
        local t = task.async(function()
          mb.trap_exit(true)
          mb.receive(function(m) return m == "never" end)
        end)
        mb.sleep(20)
        local ref = mb.monitor(t.pid)
        assert.are.same({"exit", "killed"}, task.shutdown(t, 50))
        local down = mb.receive(function(m) return m[2] == ref end, 2000)
        assert.are.equal("killed", down[5])
      end)
    end)

    it("a task already awaited gives {\"exit\", \"noproc\"}", function()
      run(function()
        local t = task.async(function() return 1 end)
        assert.are.equal(1, task.await(t))
        assert.are.same({"exit", "noproc"}, task.shutdown(t))
      end)
    end)

    it("\"brutal_kill\" kills at once", function()
      run(function()
        local t = task.async(function() mb.trap_exit(true) mb.receive(function() return false end) end)
        assert.is_nil(task.shutdown(t, "brutal_kill"))
        assert.is_false(mb.alive(t.pid))
      end)
    end)

    it("does not kill the caller (the task is unlinked first)", function()
      run(function()
        local t = task.async(function() mb.receive() end)
        task.shutdown(t)
        mb.sleep(10)
        assert.are.equal("alive", "alive")
      end)
    end)
  end)

  describe("start and start_link", function()
    it("start_link runs the function for its side effects, linked", function()
      run(function()
        local me = mb.self()
        local pid = task.start_link(function(x) mb.send(me, {"side", x}) end, 7)
        assert.is_true(mb.is_pid(pid))
        assert.are.same({"side", 7}, mb.receive(nil, 2000))
      end)
    end)

    it("start is not linked", function()
      run(function()
        local pid = task.start(function() mb.sleep(10) error("unlinked boom") end)
        local ref = mb.monitor(pid)
        local down = mb.receive(function(m) return m[2] == ref end, 2000)
        assert.are.equal("error", down[5][1])
      end)
    end)
  end)

  describe("async_stream", function()
    it("returns {\"ok\", v} results in input order when ordered", function()
      run(function()
        local out = {}
        for r in task.async_stream({5, 1, 4, 2, 3}, function(n) mb.sleep(n * 5) return n * 10 end) do
          out[#out + 1] = r
        end
        assert.are.same({{"ok", 50}, {"ok", 10}, {"ok", 40}, {"ok", 20}, {"ok", 30}}, out)
        assert.are.equal(0, mb.flush())
      end)
    end)

    it("ordered = false gives results as they complete", function()
      run(function()
        local out = {}
        for r in task.async_stream({60, 1}, function(n) mb.sleep(n) return n end,
            {ordered = false, max_concurrency = 2}) do
          out[#out + 1] = r[2]
        end
        assert.are.same({1, 60}, out)
      end)
    end)

    it("runs at most max_concurrency tasks at once", function()
      run(function()
        local counter = mb.spawn(function()
          local now, peak = 0, 0
          while true do
            local m = mb.receive()
            if m[1] == "in" then
              now = now + 1
              if now > peak then peak = now end
            elseif m[1] == "out" then
              now = now - 1
            else
              mb.send(m[2], peak)
            end
          end
        end)
        local items = {}
        for i = 1, 12 do items[i] = i end
        local n = 0
        for r in task.async_stream(items, function(i)
          mb.send(counter, {"in"})
          mb.sleep(5)
          mb.send(counter, {"out"})
          return i
        end, {max_concurrency = 3}) do
          n = n + 1
          assert.are.same({"ok", n}, r)
        end
        assert.are.equal(12, n)
        mb.send(counter, {"peak", mb.self()})
        local peak = mb.receive(nil, 2000)
        assert.is_true(peak <= 3 and peak >= 2, "peak " .. tostring(peak))
        mb.exit(counter, "kill")
      end)
    end)

    it("max_concurrency defaults to the number of schedulers", function()
      run(function()
        local me = mb.self()
        local iter = task.async_stream({1, 2, 3, 4}, function(i)
          mb.send(me, {"started", i})
          mb.receive(function(m) return m == "never" end)
        end, {timeout = 100, on_timeout = "kill_task"})
        local first = iter()
        assert.are.same({"exit", "timeout"}, first)
        -- two tasks started before the first result, then one more
        local started = {}
        while true do
          local m = mb.receive(function(m) return m[1] == "started" end, 0)
          if not m then break end
          started[#started + 1] = m[2]
        end
        assert.is_true(#started <= 3, "started " .. #started)
        for _ in iter do end
      end)
    end)

    it("accepts an iterator function as input and is lazy", function()
      run(function()
        local pulled = 0
        local function gen()
          if pulled >= 100 then return nil end
          pulled = pulled + 1
          return pulled
        end
        local sum = 0
        for r in task.async_stream(gen, function(i) return i end, {max_concurrency = 2}) do
          sum = sum + r[2]
          if r[2] == 3 then break end
        end
        assert.are.equal(6, sum)
        assert.is_true(pulled <= 6, "pulled " .. pulled)
      end)
    end)

    it("breaking out of the loop kills the tasks still running", function()
      run(function()
        local me = mb.self()
        local pids = {}
        for r in task.async_stream({1, 2, 3}, function(i)
          if i > 1 then
            mb.send(me, {"pid", mb.self()})
            mb.receive(function() return false end)
          end
          return i
        end, {max_concurrency = 3}) do
          assert.are.same({"ok", 1}, r)
          for _ = 1, 2 do
            pids[#pids + 1] = mb.receive(function(m) return m[1] == "pid" end, 2000)[2]
          end
          break
        end
        assert.are.equal(2, #pids)
        for _, p in ipairs(pids) do assert.is_false(mb.alive(p)) end
        assert.are.equal(0, mb.flush())
      end)
    end)

    it("on_timeout = \"exit\" (the default): the caller exits and the tasks are killed", function()
      run(function()
        local me = mb.self()
        local reason = exit_of(function()
          for _ in task.async_stream({1, 2}, function(i)
            mb.send(me, {"pid", mb.self()})
            if i == 2 then mb.receive(function() return false end) end
            return i
          end, {timeout = 200}) do end
        end)
        assert.are.same({"timeout", {"task", "async_stream", {200}}}, reason)
        for _ = 1, 2 do
          local pid = mb.receive(function(m) return m[1] == "pid" end, 2000)[2]
          assert.is_false(mb.alive(pid))
        end
      end)
    end)

    it("on_timeout = \"kill_task\" gives {\"exit\", \"timeout\"} for that item and goes on", function()
      run(function()
        local list = task.async_stream_list({1, 2, 3}, function(i)
          if i == 2 then mb.sleep(5000) end
          return i
        end, {timeout = 300, on_timeout = "kill_task"})
        assert.are.same({{"ok", 1}, {"exit", "timeout"}, {"ok", 3}}, list)
        assert.are.equal(0, mb.flush())
      end)
    end)

    it("a crashing task crashes the caller through the link", function()
      run(function()
        local me = mb.self()
        local caller = mb.spawn(function()
          for _ in task.async_stream({1, 2}, function(i)
            if i == 2 then error("stream boom") end
            return i
          end) do end
          mb.send(me, "not reached")
        end)
        local ref = mb.monitor(caller)
        local down = mb.receive(function(m) return m[2] == ref end, 2000)
        assert.matches("stream boom", down[5][2])
      end)
    end)

    it("a caller that traps exits gets {\"exit\", reason} for a crashed task", function()
      run(function()
        mb.trap_exit(true)
        local list = task.async_stream_list({1, 2}, function(i)
          if i == 2 then mb.exit("bad item") end
          return i
        end)
        assert.are.same({{"ok", 1}, {"exit", "bad item"}}, list)
      end)
    end)

    it("an empty input gives no results", function()
      run(function()
        assert.are.same({}, task.async_stream_list({}, function(i) return i end))
      end)
    end)
  end)

  describe("bad input", function()
    it("async rejects a non-function", function()
      run(function()
        assert.has_error(function() task.async(42) end,
          "task.async: expected a function or {module_name, function_name}, got number")
      end)
    end)

    it("await rejects something that is not a task", function()
      run(function()
        local ok, err = pcall(task.await, {pid = 1})
        assert.is_false(ok)
        assert.matches("task.await: expected a task", err)
      end)
    end)

    it("await by another process than the owner raises", function()
      run(function()
        local t = task.async(function() mb.receive() end)
        local me = mb.self()
        mb.spawn(function()
          local ok, err = pcall(task.await, t, 10)
          mb.send(me, {ok, err})
        end)
        local r = mb.receive(nil, 2000)
        assert.is_false(r[1])
        assert.matches("belongs to", r[2])
        task.shutdown(t, "brutal_kill")
      end)
    end)

    it("await rejects a bad timeout", function()
      run(function()
        local t = task.async(function() return 1 end)
        assert.has_error(function() task.await(t, -1) end)
        assert.has_error(function() task.await(t, "soon") end)
        assert.are.equal(1, task.await(t, "infinity"))
      end)
    end)

    it("async_stream rejects bad options", function()
      run(function()
        local f = function(x) return x end
        assert.has_error(function() task.async_stream(42, f) end)
        assert.has_error(function() task.async_stream({}, f, {max_concurrency = 0}) end)
        assert.has_error(function() task.async_stream({}, f, {on_timeout = "ignore"}) end)
      end)
    end)
  end)
end)

describe("task: options (issue 8 items 17, 18)", function()
  local function raised(fn)
    local ok, err = pcall(fn)
    assert.is_false(ok, "expected an error")
    assert.are.equal("string", type(err), "expected an error message, got " .. tostring(err))
    return err
  end

  it("async_stream's unknown options raise naming the key and the valid ones, at the caller's line", function()
    run(function()
      local line = debug.getinfo(1, "l").currentline
      local err = raised(function() task.async_stream({1}, function(x) return x end, {max_concurency = 2}) end)
      assert.matches("task_spec.lua:" .. (line + 1) .. ": task.async_stream: unknown option 'max_concurency' "
                     .. "(valid options: max_concurrency, ordered, timeout, on_timeout)", err, 1, true)
      err = raised(function() task.await({}, 10) end) -- line + 4
      assert.matches("task_spec.lua:" .. (line + 4) .. ": task.await: expected a task", err, 1, true)
      err = raised(function() task.async(42) end) -- line + 6
      assert.matches("task_spec.lua:" .. (line + 6) .. ": task.async: expected a function", err, 1, true)
    end)
  end)
end)
