-- bench/sysio.lua: figures for mb.blocking, moonbeam.file and subprocess ports.
-- Not part of `make bench` (run it alone):
--   env LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;;" LUA_CPATH="$PWD/build/?.so;;" lua5.4 bench/sysio.lua
-- Prints lines "RESULT<TAB>workload<TAB>figure<TAB>value<TAB>unit<TAB>schedulers".
local mb = require "moonbeam"
local file = require "moonbeam.file"
local port = require "moonbeam.port"

local clock = mb.clock
local SCHEDS = 2

local function result(workload, figure, value, unit)
  io.write(string.format("RESULT\t%s\t%s\t%.6g\t%s\t%d\n", workload, figure, value, unit, SCHEDS))
  io.flush()
end

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p '" .. dir .. "'"))
local small, big = dir .. "/small", dir .. "/big"
do
  local f = assert(io.open(small, "w")) f:write(string.rep("x", 4096)) f:close()
  f = assert(io.open(big, "w")) f:write(string.rep("0123456789abcdef", 1024 * 1024)) f:close() -- 16 MB
end

mb.run(function()
  -- mb.blocking: a trivial job, one caller
  local n = 20000
  local t0 = clock()
  for i = 1, n do mb.blocking(function(x) return x end, i) end
  result("blocking", "round trip, trivial job, 1 caller", (clock() - t0) / n * 1e6, "us")

  -- 4 callers at once on a pool of 4
  local me, per = mb.self(), 5000
  t0 = clock()
  for _ = 1, 4 do
    mb.spawn(function()
      for i = 1, per do mb.blocking(function(x) return x end, i) end
      mb.send(me, "done")
    end)
  end
  for _ = 1, 4 do mb.receive(function(m) return m == "done" end) end
  result("blocking", "jobs per second, 4 callers", 4 * per / (clock() - t0), "jobs/s")

  -- whole-file read of 4 KB, against io.open in the same process (which blocks the scheduler)
  n = 5000
  t0 = clock()
  for _ = 1, n do assert(file.read_file(small)) end
  result("file", "read_file 4 KB", (clock() - t0) / n * 1e6, "us")
  t0 = clock()
  for _ = 1, n do local f = io.open(small) f:read("a") f:close() end
  result("file", "io.open+read+close 4 KB (blocking, for reference)", (clock() - t0) / n * 1e6, "us")

  -- streaming 16 MB in 64 KB reads
  t0 = clock()
  local f = assert(file.open(big))
  local total = 0
  while true do
    local s = file.read(f, 65536)
    if not s then break end
    total = total + #s
  end
  file.close(f)
  assert(total == 16 * 1024 * 1024)
  result("file", "stream read, 64 KB reads", total / (clock() - t0) / 1e6, "MB/s")

  -- subprocess: spawn `true` and wait for its exit status
  n = 200
  t0 = clock()
  for _ = 1, n do
    local p = assert(port.spawn("true"))
    mb.receive(function(m) return m[1] == "exit_status" and m[2] == p end)
  end
  result("subprocess", "spawn `true` until exit_status", (clock() - t0) / n * 1e3, "ms")
end, {schedulers = SCHEDS})

os.execute("rm -rf '" .. dir .. "'")
