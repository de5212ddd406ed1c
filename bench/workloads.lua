-- bench/workloads.lua: one benchmark workload per run, in a fresh process so
-- memory figures start clean. Usage: lua5.4 bench/workloads.lua NAME [args...]
-- Prints lines "RESULT<TAB>workload<TAB>figure<TAB>value<TAB>unit<TAB>schedulers".
local mb = require "moonbeam"

local clock = mb.clock

local function result(workload, figure, value, unit, scheds)
  io.write(string.format("RESULT\t%s\t%s\t%.6g\t%s\t%s\n", workload, figure, value, unit, tostring(scheds)))
  io.flush()
end

local function rss_bytes()
  local f = io.open("/proc/self/statm")
  local _, res = f:read("n", "n")
  f:close()
  return res * 4096
end

local W = {}

function W.spawn(n)
  n = tonumber(n) or 1000000
  mb.run(function()
    local me = mb.self()
    local t0 = clock()
    for _ = 1, n do
      mb.spawn_opt({scheduler = "here"}, function() mb.send(me, 1) end)
      mb.receive()
    end
    local dt = clock() - t0
    result("spawn", "spawn + message back, serial", dt / n * 1e6, "us", 1)
  end, {schedulers = 1})
end

function W.idle(n)
  n = tonumber(n) or 100000
  mb.run(function()
    collectgarbage()
    local before = rss_bytes()
    local mem0 = mb.stats().memory
    for _ = 1, n do
      mb.spawn(function() mb.receive() end)
    end
    -- let every process start and block in receive
    while mb.stats().processes < n + 1 do mb.sleep(10) end
    mb.sleep(50)
    collectgarbage()
    local after = rss_bytes()
    local mem1 = mb.stats().memory
    result("idle memory", "RSS per process blocked in receive", (after - before) / n, "bytes", mb.schedulers())
    result("idle memory", "runtime accounting per process", (mem1 - mem0) / n, "bytes", mb.schedulers())
  end)
end

function W.ring(n, laps, scheds)
  n, laps = tonumber(n) or 1000, tonumber(laps) or 1000
  scheds = tonumber(scheds)
  mb.run(function()
    -- build the ring backwards: each process gets its successor (the one
    -- spawned before it, the first one main) copied in at spawn
    local nxt = mb.self()
    for _ = 1, n do
      nxt = mb.spawn(function()
        while true do
          local m = mb.receive()
          mb.send(nxt, m)
          if m <= 0 then return end
        end
      end)
    end
    local head = nxt
    local hops = n * laps
    local t0 = clock()
    mb.send(head, laps)
    while true do
      local m = mb.receive()
      if m <= 1 then break end
      mb.send(head, m - 1)
    end
    local dt = clock() - t0
    mb.send(head, 0)
    result("ring", string.format("%d processes x %d laps", n, laps), dt / hops * 1e6, "us/hop", mb.schedulers())
  end, {schedulers = scheds})
end

-- where: nil (both on one scheduler), "across" (the peer pinned to the other
-- scheduler) or "default" (the peer placed as spawn places it by default)
local function placement(where)
  if where == "across" then return {scheduler = 2}, "different schedulers", 2 end
  if where == "default" then return {}, "default placement", "default" end
  return {scheduler = "here"}, "same scheduler", 1
end

function W.pingpong(rounds, where)
  rounds = tonumber(rounds) or 200000
  local opts, figure, scheds = placement(where)
  mb.run(function()
    local me = mb.self()
    local peer = mb.spawn_opt(opts, function()
      while true do
        local m = mb.receive()
        if m == false then return end
        mb.send(me, m)
      end
    end)
    local t0 = clock()
    for i = 1, rounds do
      mb.send(peer, i)
      mb.receive()
    end
    local dt = clock() - t0
    mb.send(peer, false)
    result("ping-pong", figure, dt / rounds * 1e6, "us/round trip", scheds == "default" and mb.schedulers() or scheds)
  end, {schedulers = where == "default" and nil or 2})
end

-- where: nil (the receiver on the other of 2 schedulers) or "here" (1 scheduler)
function W.throughput(n, where)
  n = tonumber(n) or 1000000
  local scheds = where == "here" and 1 or 2
  mb.run(function()
    local me = mb.self()
    local sink = mb.spawn_opt({scheduler = scheds}, function()
      local count = 0
      while true do
        local m = mb.receive()
        count = count + 1
        if m == false then mb.send(me, count) return end
      end
    end)
    local t0 = clock()
    for i = 1, n do mb.send(sink, i) end
    mb.send(sink, false)
    local got = mb.receive()
    local dt = clock() - t0
    assert(got == n + 1)
    result("send throughput", "1 sender -> 1 receiver", n / dt, "msgs/s", scheds)
  end, {schedulers = scheds})
end

function W.fanout(subs, casts)
  subs, casts = tonumber(subs) or 10000, tonumber(casts) or 100
  mb.run(function()
    local me = mb.self()
    for _ = 1, subs do
      mb.spawn(function()
        mb.subscribe("bench")
        mb.send(me, "ready")
        for _ = 1, casts do mb.receive() end
        mb.send(me, "done")
      end)
    end
    for _ = 1, subs do mb.receive(function(m) return m == "ready" end) end
    local t0 = clock()
    for i = 1, casts do mb.broadcast("bench", i) end
    for _ = 1, subs do mb.receive(function(m) return m == "done" end) end
    local dt = clock() - t0
    result("pubsub fan-out", string.format("%d subscribers x %d broadcasts", subs, casts),
           subs * casts / dt, "deliveries/s", mb.schedulers())
  end)
end

local function burn(iters)
  local x = 0
  for i = 1, iters do x = (x + i * 7) % 1000003 end
  return x
end

function W.multicore(iters)
  iters = tonumber(iters) or 20000000
  local function run(scheds)
    local dt
    mb.run(function()
      local me = mb.self()
      local n = 4 * mb.schedulers()
      local per = iters // n
      local t0 = clock()
      for _ = 1, n do
        mb.spawn(function() mb.send(me, burn(per)) end)
      end
      for _ = 1, n do mb.receive() end
      dt = clock() - t0
    end, {schedulers = scheds})
    return dt
  end
  local one = run(1)
  local all = run(nil)
  local n = mb.run(function() return mb.schedulers() end)
  result("multi-core", "speed-up of all schedulers over one", one / all, "x", n)
end

function W.preempt(samples)
  samples = tonumber(samples) or 200
  mb.run(function()
    local me = mb.self()
    local spinner = mb.spawn_opt({scheduler = "here"}, function() while true do end end)
    local echo = mb.spawn_opt({scheduler = "here"}, function()
      while true do
        local m = mb.receive()
        mb.send(me, m)
      end
    end)
    local lat = {}
    for i = 1, samples do
      local t0 = clock()
      mb.send(echo, i)
      mb.receive()
      lat[i] = (clock() - t0) * 1000
      mb.sleep(1)
    end
    mb.exit(spinner, "kill")
    table.sort(lat)
    result("preemption latency", "p50, spinner on the same scheduler", lat[math.ceil(samples * 0.5)], "ms", 1)
    result("preemption latency", "p99, spinner on the same scheduler", lat[math.ceil(samples * 0.99)], "ms", 1)
  end, {schedulers = 1})
end

function W.tree(leaves, fanout)
  leaves, fanout = tonumber(leaves) or 1000000, tonumber(fanout) or 10
  local function node(parent, lo, hi)
    if hi - lo + 1 <= 1 then
      mb.send(parent, lo)
      return
    end
    local me = mb.self()
    local step = math.ceil((hi - lo + 1) / fanout)
    local kids = 0
    local a = lo
    while a <= hi do
      local b = math.min(a + step - 1, hi)
      mb.spawn(node, me, a, b)
      kids = kids + 1
      a = b + 1
    end
    local sum = 0
    for _ = 1, kids do sum = sum + mb.receive() end
    mb.send(parent, sum)
  end
  mb.run(function()
    local t0 = clock()
    mb.spawn(node, mb.self(), 1, leaves)
    local sum = mb.receive()
    local dt = clock() - t0
    assert(sum == leaves * (leaves + 1) // 2, "wrong sum " .. tostring(sum))
    result("spawn tree", string.format("%d-way tree, %d leaves", fanout, leaves), dt, "s", mb.schedulers())
  end)
end

W.gen_call = function(rounds, where)
  rounds = tonumber(rounds) or 100000
  local ok, gen_server = pcall(require, "moonbeam.gen_server")
  if not ok then io.stderr:write("gen_server not available\n") return end
  local opts, figure, scheds = placement(where)
  mb.run(function()
    local mod = {
      init = function() return "ok", 0 end,
      handle_call = function(req, _, state) return "reply", req, state end,
    }
    local pid = assert(gen_server.start(mod, nil, opts))
    local t0 = clock()
    for i = 1, rounds do gen_server.call(pid, i) end
    local dt = clock() - t0
    result("GenServer.call", figure, dt / rounds * 1e6, "us", scheds == "default" and mb.schedulers() or scheds)
    gen_server.stop(pid)
  end, {schedulers = where == "default" and nil or 2})
end

local name = arg[1]
assert(W[name], "unknown workload " .. tostring(name))
W[name](table.unpack(arg, 2))
