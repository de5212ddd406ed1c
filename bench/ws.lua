-- WebSocket benchmark: moonbeam vs Node.js + ws: echo round trip on one
-- connection, and the server's resident memory with 10,000 idle connections.
-- Needs node and npm's ws (spec/support/node_modules, `make spec-deps`).
--   lua5.4 bench/ws.lua [--seconds N] [--idle N]
local seconds, idle = 5, 10000
do
  local i = 1
  while arg[i] do
    if arg[i] == "--seconds" then i = i + 1 seconds = tonumber(arg[i])
    elseif arg[i] == "--idle" then i = i + 1 idle = tonumber(arg[i]) end
    i = i + 1
  end
end
local function sh(cmd) local p = io.popen(cmd) local out = p:read("a") p:close() return out end
local tmp = sh("mktemp -d"):gsub("%s+$", "")
local node_path = "NODE_PATH=spec/support/node_modules"
local lua = os.getenv("MB_LUA") or "lua5.4"

local function rss_kb(pid)
  local f = io.open("/proc/" .. pid .. "/status")
  if not f then return 0 end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s+(%d+)")) or 0
end

local function wait_ready(log)
  for _ = 1, 100 do
    local f = io.open(log)
    if f then
      local s = f:read("a")
      f:close()
      if s:find("ready") then return true end
    end
    os.execute("sleep 0.1")
  end
end

local servers = {
  {name = "moonbeam", port = 8094, cmd = lua .. " bench/ws_server.lua 8094"},
  {name = "node+ws", port = 8095, cmd = node_path .. " node bench/ws_node_server.js 8095"},
}
local rows = {}
for _, s in ipairs(servers) do
  local log = tmp .. "/" .. s.port .. ".log"
  local pid = sh(("ulimit -n $(ulimit -Hn); %s > %s 2>&1 & echo $!"):format(s.cmd, log)):gsub("%s+$", "")
  if wait_ready(log) then
    local url = "ws://127.0.0.1:" .. s.port .. "/"
    local base = rss_kb(pid)
    local r = sh(("%s node bench/ws_client.js %s rtt %d"):format(node_path, url, seconds))
    local n, rate, mean, p99 = r:match('"n":(%d+),"rate":([%d.]+),"mean":([%d.]+),"p99":([%d.]+)')
    local cpid = sh(("ulimit -n $(ulimit -Hn); %s node bench/ws_client.js %s idle %d > %s/idle.log 2>&1 & echo $!")
      :format(node_path, url, idle, tmp)):gsub("%s+$", "")
    local opened = false
    for _ = 1, 600 do
      local f = io.open(tmp .. "/idle.log")
      local out = f and f:read("a") or ""
      if f then f:close() end
      if out:find("open") or out:find("error") then opened = out:find("open") ~= nil break end
      os.execute("sleep 0.1")
    end
    os.execute("sleep 1")
    local with_idle = rss_kb(pid)
    os.execute("kill " .. cpid .. " 2>/dev/null")
    rows[#rows + 1] = {s.name, tonumber(rate) or 0, tonumber(mean) or 0, tonumber(p99) or 0,
      opened and (with_idle - base) / idle or -1, base, with_idle, n}
  else
    print(s.name .. ": did not start")
  end
  os.execute("kill " .. pid .. " 2>/dev/null; sleep 0.5")
end
os.execute("rm -rf " .. tmp)
print(("%-9s %10s %10s %10s %14s %10s %10s"):format("server", "echo/s", "mean µs", "p99 µs",
  "KB/idle conn", "base KB", "idle KB"))
for _, r in ipairs(rows) do
  print(("%-9s %10.0f %10.1f %10.1f %14.2f %10d %10d"):format(r[1], r[2], r[3], r[4], r[5], r[6], r[7]))
end
