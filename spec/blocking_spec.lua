-- mb.blocking: functions that must block run on the worker pool, not on the
-- caller's scheduler. Globals used inside processes are captured as locals
-- (busted's environment does not travel with a spawned function).
local error, pcall, type, string = error, pcall, type, string
local mb = require "moonbeam"

local TMP = os.tmpname()
os.remove(TMP)
assert(os.execute("mkdir -p '" .. TMP .. "'"))

-- Waits about `s` seconds inside a worker without a system call that could
-- fork (make tsan): moonbeam.core's clock needs no runtime.
local function busy_wait(s)
  local clock = require("moonbeam.core").clock
  local t = clock() + s
  while clock() < t do end
  return s
end

local function recv(match, ms)
  local m, err = mb.receive(match, ms or 5000)
  if err then error("timed out waiting for a message", 2) end
  return m
end

describe("mb.blocking", function()
  teardown(function() os.execute("rm -rf '" .. TMP .. "'") end)

  it("returns the function's results, nil among them, with upvalues copied", function()
    mb.run(function()
      local base = 40
      local a, b, c, d = mb.blocking(function(x) return base + x, nil, "s", {k = 1} end, 2)
      assert.are.equal(42, a)
      assert.is_nil(b)
      assert.are.equal("s", c)
      assert.are.same({k = 1}, d)
      assert.are.equal(0, select("#", mb.blocking(function() end)))
    end)
  end)

  it("accepts {module_name, function_name}", function()
    mb.run(function()
      assert.are.equal("ababab", mb.blocking({"string", "rep"}, "ab", 3))
      local ok, err = pcall(mb.blocking, {"string", "nope"})
      assert.is_false(ok)
      assert.matches("module 'string' has no function 'nope'", err)
      ok, err = pcall(mb.blocking, {"no_such_module_here", "f"})
      assert.is_false(ok)
      assert.matches("no_such_module_here", err)
    end)
  end)

  it("raises an error of the function in the caller, with its message", function()
    mb.run(function()
      local ok, err = pcall(mb.blocking, function() error("disk on fire") end)
      assert.is_false(ok)
      assert.matches("blocking_spec.lua:%d+: disk on fire", err)
      -- an error value that can travel comes back as it is
      ok, err = pcall(mb.blocking, function() error({code = 7}) end)
      assert.is_false(ok)
      assert.are.same({code = 7}, err)
      -- results that cannot travel
      ok, err = pcall(mb.blocking, function() return 1, coroutine.create(print) end)
      assert.is_false(ok)
      assert.matches("result 2", err)
      -- the pool still works after errors
      assert.are.equal(3, mb.blocking(function() return 3 end))
    end)
  end)

  it("raises on misuse: not a function, unsendable arguments, outside a process", function()
    mb.run(function()
      assert.has_error(function() mb.blocking(42) end,
        "blocking: expected a function or {module_name, function_name}, got number")
      assert.has_error(function() mb.blocking({1, 2}) end)
      local ok, err = pcall(mb.blocking, function() end, coroutine.create(print))
      assert.is_false(ok)
      assert.matches("cannot send", err)
    end)
    assert.has_error(function() mb.blocking(function() end) end)
  end)

  it("does not hold the caller's scheduler: a neighbour keeps running while it blocks", function()
    -- The job blocks in a C call (open of a FIFO, until a writer comes) on the
    -- one scheduler's runtime; the writer and a ticking neighbour are
    -- processes of that same scheduler, so if the job held the scheduler
    -- neither could run.
    local fifo = TMP .. "/fifo"
    assert(os.execute("mkfifo '" .. fifo .. "'")) -- forked before the runtime starts
    mb.run(function()
      local me = mb.self()
      local ticker = mb.spawn(function()
        local last, worst, ticks = mb.clock(), 0, 0
        while true do
          local m = mb.receive(nil, 5)
          local now = mb.clock()
          if now - last > worst then worst = now - last end
          last, ticks = now, ticks + 1
          if m == "stop" then mb.send(me, {"ticks", ticks, worst}) return end
        end
      end)
      mb.spawn(function()
        mb.sleep(300)
        local f = assert(io.open(fifo, "w"))
        f:write("released")
        f:close()
      end)
      local t0 = mb.clock()
      local got = mb.blocking(function(path)
        local f = assert(io.open(path, "r")) -- blocks this worker until the writer opens
        local s = f:read("a")
        f:close()
        return s
      end, fifo)
      local took = mb.clock() - t0
      mb.send(ticker, "stop")
      local m = recv(function(m) return type(m) == "table" and m[1] == "ticks" end)
      assert.are.equal("released", got)
      assert.is_true(took >= 0.25, "the job returned before the writer came: " .. took)
      -- ticks every 5 ms for ~300 ms: generous bounds for a loaded machine
      assert.is_true(m[2] >= 10, "the neighbour ticked only " .. m[2] .. " times")
      assert.is_true(m[3] < 0.2, string.format("the neighbour was held up %.0f ms", m[3] * 1000))
    end, {schedulers = 1})
  end)

  it("runs at most the pool's size at once; mb.blocking_pool sets it", function()
    mb.run(function()
      local me = mb.self()
      local old = mb.blocking_pool(1)
      assert.are.equal(4, old) -- the default: the schedulers, at least 4
      local function burst(n, s)
        local t0 = mb.clock()
        for i = 1, n do
          mb.spawn(function() mb.send(me, {"done", i, mb.blocking(busy_wait, s)}) end)
        end
        for _ = 1, n do recv(function(m) return type(m) == "table" and m[1] == "done" end) end
        return mb.clock() - t0
      end
      -- one worker: three jobs of 0.1 s run one after the other
      assert.is_true(burst(3, 0.1) >= 0.29)
      local size, workers = mb.blocking_pool()
      assert.are.equal(1, size)
      assert.are.equal(1, workers)
      -- three workers: three jobs at once start three workers
      mb.blocking_pool(3)
      burst(3, 0.2)
      size, workers = mb.blocking_pool()
      assert.are.equal(3, size)
      assert.are.equal(3, workers)
      assert.has_error(function() mb.blocking_pool(0) end)
      assert.has_error(function() mb.blocking_pool(257) end)
    end, {schedulers = 2})
  end)

  it("takes the pool's size from the runtime option blocking_pool", function()
    mb.run(function()
      assert.are.equal(2, mb.blocking_pool())
      assert.are.equal(7, mb.blocking(function() return 7 end))
    end, {schedulers = 1, blocking_pool = 2})
    assert.has_error(function() mb.run(function() end, {blocking_pool = 0}) end,
      "opts.blocking_pool must be 1..256")
    assert.has_error(function() mb.run(function() end, {blocking_pool = "many"}) end)
  end)

  it("gives the workers' VMs the runtime's package.path and cpath", function()
    package.path = package.path .. ";" .. TMP .. "/?.lua"
    local f = assert(io.open(TMP .. "/blocking_helper_mod.lua", "w"))
    f:write("return {twice = function(x) return 2 * x end}\n")
    f:close()
    local path, cpath = package.path, package.cpath
    mb.run(function()
      local p, c = mb.blocking(function() return package.path, package.cpath end)
      assert.are.equal(path, p)
      assert.are.equal(cpath, c)
      assert.are.equal(42, mb.blocking({"blocking_helper_mod", "twice"}, 21))
    end)
  end)

  it("a job may send messages; a caller killed while its job runs loses nothing else", function()
    mb.run(function()
      local me = mb.self()
      assert.are.equal("sent", mb.blocking(function(to)
        require("moonbeam").send(to, "from the pool")
        return "sent"
      end, me))
      assert.are.equal("from the pool", recv())
      local pid = mb.spawn(function() mb.blocking(busy_wait, 0.2) end)
      mb.sleep(50)
      mb.exit(pid, "kill")
      -- the reply goes to a dead pid; the pool serves the next job
      assert.are.equal(5, mb.blocking(function() return 5 end))
      mb.sleep(250)
      assert.are.equal(6, mb.blocking(function() return 6 end))
      assert.are.equal(0, mb.flush())
    end)
  end)

  it("the runtime's end waits for a running job and drops queued ones", function()
    local clock = require("moonbeam.core").clock
    local t0 = clock()
    mb.run(function()
      mb.blocking_pool(1)
      for _ = 1, 3 do mb.spawn(function() mb.blocking(busy_wait, 0.2) end) end
      mb.sleep(50) -- the first job runs, two are queued: main ends now
    end)
    local took = clock() - t0
    assert.is_true(took >= 0.19, "did not wait for the running job: " .. took)
    assert.is_true(took < 0.55, "ran the queued jobs too: " .. took)
  end)
end)
