-- Live view benchmark: resident memory of the server per connected counter
-- view (each with its own WebSocket, as browser tabs), and click-to-patch
-- round trips (event -> phx_reply with the diff) with all of them connected.
-- Needs node, npm's ws (spec/support/node_modules) and a build.
-- With --path /dashboard --event refresh every view also gets a PubSub
-- update a second from the metrics GenServer while the clicks are timed.
--   lua5.4 bench/live.lua [--views N] [--clicks N] [--path /dashboard --event refresh]
local views, clicks, path, event = 2000, 500, "/", "inc"
do
  local i = 1
  while arg[i] do
    if arg[i] == "--views" then i = i + 1 views = tonumber(arg[i])
    elseif arg[i] == "--clicks" then i = i + 1 clicks = tonumber(arg[i])
    elseif arg[i] == "--path" then i = i + 1 path = arg[i]
    elseif arg[i] == "--event" then i = i + 1 event = arg[i] end
    i = i + 1
  end
end
local function sh(cmd) local p = io.popen(cmd) local out = p:read("a") p:close() return out end
local tmp = sh("mktemp -d"):gsub("%s+$", "")
local lua = os.getenv("MB_LUA") or "lua5.4"
local function rss_kb(pid)
  local f = io.open("/proc/" .. pid .. "/status")
  if not f then return 0 end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s+(%d+)")) or 0
end
local function wait_for(file, pat, secs)
  for _ = 1, secs * 10 do
    local f = io.open(file)
    if f then
      local s = f:read("a")
      f:close()
      local m = s:match(pat)
      if m then return m, s end
    end
    os.execute("sleep 0.1")
  end
end
local env = 'LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;"'
local pid = sh(("%s %s bench/live_server.lua 0 > %s/server.log 2>&1 & echo $!"):format(env, lua, tmp)):gsub("%s+$", "")
local port = assert(wait_for(tmp .. "/server.log", "ready (%d+)", 20), "server did not start")
os.execute("sleep 1")
local before = rss_kb(pid)
os.execute(("NODE_PATH=spec/support/node_modules node bench/live_clients.js %s %d %d %s %s > %s/clients.log 2>&1 &")
  :format(port, views, clicks, path, event, tmp))
assert(wait_for(tmp .. "/clients.log", "(joined)", 600), "clients did not join")
os.execute("sleep 2")
local after = rss_kb(pid)
local line = wait_for(tmp .. "/clients.log", "\n(%b{})", 600)
os.execute("kill " .. pid)
local ok, r = pcall(require("cjson").decode, line or "")
if not ok or type(r) ~= "table" then r = {} end
print(("%-40s %12s %s"):format("figure", "value", "unit"))
print(("%-40s %12d %s"):format("connected views of " .. path, views, ""))
print(("%-40s %12.1f %s"):format("server RSS per connected view", (after - before) / views, "KB"))
print(("%-40s %12.2f %s"):format("click-to-patch p50", r.p50 or -1, "ms"))
print(("%-40s %12.2f %s"):format("click-to-patch p99", r.p99 or -1, "ms"))
os.execute("rm -rf " .. tmp)
