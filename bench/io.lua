-- bench/io.lua: TCP figures side by side in one run (never a test).
--
--   lua5.4 bench/io.lua [--quick]        (LUA_PATH/LUA_CPATH as for the specs)
--
-- 1. Echo round trip on loopback, 1 connection, 1-byte messages: moonbeam
--    (server process in active-once mode, client in passive mode, on two
--    schedulers) vs Erlang's gen_tcp (bench/beam/echo_bench.erl, same shape)
--    vs Node.js's net module (bench/node/echo.js).
-- 2. 10,000 concurrent echo connections: a moonbeam server process (one
--    process per connection, acceptor pool) and a moonbeam load generator in
--    another OS process (the descriptor limit is 20,000 here: both ends in one
--    process would not fit). Memory per connection is the server's RSS growth
--    divided by the connections (the kernel's socket buffers are not in RSS);
--    messages per second are echoed round trips over all connections.
-- Internal modes: rtt N | c10k_server | c10k_client PORT CONNS ROUNDS.
local mode = arg[1]
local quick = mode == "--quick"

local function lua_cmd() return os.getenv("MB_LUA") or "lua5.4" end

local function rss_kb(pid)
  local f = io.open("/proc/" .. pid .. "/status")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s+(%d+)"))
end

if mode == "rtt" then
  local mb = require "moonbeam"
  local tcp = require "moonbeam.tcp"
  local n = tonumber(arg[2])
  local scheds = tonumber(arg[3]) or 2
  mb.run(function()
    local l = assert(tcp.listen(0, {address = "127.0.0.1", active = false, nodelay = true}))
    local _, port = tcp.sockname(l)
    mb.spawn_opt({scheduler = scheds}, function()
      local s = assert(tcp.accept(l))
      tcp.setopts(s, {active = "once"})
      while true do
        local m = mb.receive()
        if m[1] ~= "tcp" then return end
        tcp.send(s, m[3])
        tcp.setopts(s, {active = "once"})
      end
    end)
    local c = assert(tcp.connect("127.0.0.1", port, {active = false, nodelay = true}))
    local function loop(k) for _ = 1, k do tcp.send(c, "x"); tcp.recv(c, 1) end end
    loop(1000)
    local t0 = mb.clock()
    loop(n)
    print(("rtt_us %.3f"):format((mb.clock() - t0) / n * 1e6))
    tcp.close(c)
  end, {schedulers = scheds})
  return
end

if mode == "c10k_server" then
  local mb = require "moonbeam"
  local tcp = require "moonbeam.tcp"
  mb.run(function()
    local l = assert(tcp.listen(0, {address = "127.0.0.1", active = false, backlog = 4096}))
    local _, port = tcp.sockname(l)
    collectgarbage()
    io.write("port ", port, "\n")
    io.stdout:flush()
    local function serve(sock)
      tcp.setopts(sock, {active = "once"})
      while true do
        local m = mb.receive()
        if m[1] ~= "tcp" then return end
        tcp.send(sock, m[3])
        tcp.setopts(sock, {active = "once"})
      end
    end
    for _ = 1, 4 do
      mb.spawn(function()
        while true do
          local s = tcp.accept(l)
          if s then
            local pid = mb.spawn(function() serve(mb.receive()[2]) end)
            tcp.controlling_process(s, pid)
            mb.send(pid, {"s", s})
          end
        end
      end)
    end
    mb.receive(function() return false end)
  end, {schedulers = 2})
  return
end

if mode == "c10k_client" then
  local mb = require "moonbeam"
  local tcp = require "moonbeam.tcp"
  local port, conns, rounds = tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])
  mb.run(function()
    -- two driver processes, one per scheduler, each with half the connections
    local me = mb.self()
    local drivers = {}
    for d = 1, 2 do
      drivers[d] = mb.spawn_opt({scheduler = d}, function()
        local socks = {}
        for i = 1, conns // 2 do
          socks[i] = assert(tcp.connect("127.0.0.1", port, {active = true}, 10000))
        end
        mb.send(me, "connected")
        mb.receive(function(m) return m == "go" end)
        for _ = 1, rounds do
          for i = 1, #socks do tcp.send(socks[i], "x") end
          for _ = 1, #socks do mb.receive() end
        end
        mb.send(me, "done")
        mb.receive(function(m) return m == "quit" end)
      end)
    end
    for _ = 1, 2 do mb.receive(function(m) return m == "connected" end) end
    io.write("connected\n")
    io.stdout:flush()
    mb.sleep(1500) -- the orchestrator samples the server's memory now
    local t0 = mb.clock()
    for d = 1, 2 do mb.send(drivers[d], "go") end
    for _ = 1, 2 do mb.receive(function(m) return m == "done" end) end
    local dt = mb.clock() - t0
    io.write(("msgs_per_s %.0f\n"):format(conns // 2 * 2 * rounds / dt))
    io.stdout:flush()
    for d = 1, 2 do mb.send(drivers[d], "quit") end
  end, {schedulers = 2})
  return
end

-- ---- the orchestrator ----
local rows = {}
local function row(figure, value, unit) rows[#rows + 1] = {figure, value, unit} end

local function capture(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local s = p:read("a")
  p:close()
  return s
end

local n = quick and 5000 or 20000
local out = capture(lua_cmd() .. " bench/io.lua rtt " .. n)
row("TCP echo round trip, 1 connection: moonbeam", tonumber(out:match("rtt_us ([%d.]+)")) or out, "µs")

local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. tmp)
out = capture(("erlc -o %s bench/beam/echo_bench.erl && erl -noshell -pa %s -s echo_bench main %d"):format(tmp, tmp, n))
row("TCP echo round trip, 1 connection: Erlang gen_tcp", tonumber(out:match("rtt_us ([%d.]+)")) or out, "µs")
os.execute("rm -rf " .. tmp)

out = capture("node bench/node/echo.js " .. n)
row("TCP echo round trip, 1 connection: Node.js net", tonumber(out:match("rtt_us ([%d.]+)")) or out, "µs")

local conns, rounds = quick and 2000 or 10000, quick and 5 or 20
local server = io.popen(lua_cmd() .. " bench/io.lua c10k_server & echo pid $!", "r")
local pid = server:read("l"):match("pid (%d+)")
local port = server:read("l"):match("port (%d+)")
local base = rss_kb(pid)
local client = io.popen(("%s bench/io.lua c10k_client %s %d %d"):format(lua_cmd(), port, conns, rounds), "r")
local line = client:read("l")
local peak
if line == "connected" then
  os.execute("sleep 1")
  peak = rss_kb(pid)
end
local rest = client:read("a")
client:close()
os.execute("kill " .. pid)
server:close()
local label = ("%d connections: "):format(conns)
if peak and base then
  row(label .. "server memory per connection", ("%.2f"):format((peak - base) / conns), "KB")
else
  row(label .. "server memory per connection", "failed: " .. tostring(line), "")
end
row(label .. "echoed messages per second", tonumber((rest or ""):match("msgs_per_s (%d+)")) or rest, "msg/s")

print(("%-60s %12s %s"):format("figure", "value", "unit"))
for _, r in ipairs(rows) do print(("%-60s %12s %s"):format(r[1], tostring(r[2]), r[3])) end
