-- HTTP hello-world benchmark: moonbeam vs nginx + lua-nginx-module vs Node.js
-- http, keep-alive, with wrk on loopback (make bench-http). Prints a table of
-- requests/s and p99 latency per server and connection count. Needs wrk,
-- nginx with libnginx-mod-http-lua, and node (Debian: wrk nginx
-- libnginx-mod-http-lua nodejs). Not a test: it never fails the build.
--   lua5.4 bench/http.lua [--seconds N] [--conns 2,100]
local seconds, conns = 5, {2, 100}
do
  local i = 1
  while arg[i] do
    if arg[i] == "--seconds" then i = i + 1 seconds = tonumber(arg[i])
    elseif arg[i] == "--conns" then
      i = i + 1 conns = {}
      for n in arg[i]:gmatch("%d+") do conns[#conns + 1] = tonumber(n) end
    end
    i = i + 1
  end
end

local function sh(cmd) local p = io.popen(cmd) local out = p:read("a") p:close() return out end
local function have(bin) return sh("command -v " .. bin .. " 2>/dev/null") ~= "" end
local tmp = sh("mktemp -d"):gsub("%s+$", "")

local function wait_port(port)
  for _ = 1, 100 do
    if os.execute(("curl -s -o /dev/null http://127.0.0.1:%d/"):format(port)) then return true end
    os.execute("sleep 0.1")
  end
  return false
end

local servers = {}
local lua = os.getenv("MB_LUA") or "lua5.4"
servers[#servers + 1] = {name = "moonbeam", port = 8091,
  start = ("%s bench/http_server.lua 8091 > %s/mb.log 2>&1 & echo $!"):format(lua, tmp)}
if have("nginx") then
  local conf = tmp .. "/nginx.conf"
  local f = assert(io.open(conf, "w"))
  f:write(([[
load_module /usr/share/nginx/modules/ndk_http_module.so;
load_module /usr/share/nginx/modules/ngx_http_lua_module.so;
worker_processes auto;
pid %s/nginx.pid;
error_log %s/nginx-error.log;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000000;
  client_body_temp_path %s;
  proxy_temp_path %s; fastcgi_temp_path %s; uwsgi_temp_path %s; scgi_temp_path %s;
  server {
    listen 127.0.0.1:8093;
    location / {
      default_type text/plain;
      content_by_lua_block { ngx.print("Hello, World!") }
    }
  }
}
]]):format(tmp, tmp, tmp, tmp, tmp, tmp, tmp))
  f:close()
  servers[#servers + 1] = {name = "nginx+lua", port = 8093,
    start = ("nginx -c %s -p %s > %s/nginx.out 2>&1 & echo $!"):format(conf, tmp, tmp)}
end
if have("node") then
  servers[#servers + 1] = {name = "node http", port = 8092,
    start = ("node bench/http_node.js 8092 > %s/node.log 2>&1 & echo $!"):format(tmp)}
end

local function to_ms(v, unit)
  v = tonumber(v)
  if unit == "us" then return v / 1000 elseif unit == "s" then return v * 1000 end
  return v
end

local rows = {}
if not have("wrk") then
  print("bench/http.lua: wrk is not installed (apt-get install wrk)")
  os.exit(0)
end
for _, s in ipairs(servers) do
  local pid = sh(s.start):gsub("%s+$", "")
  if wait_port(s.port) then
    for _, c in ipairs(conns) do
      local threads = math.min(c, 2)
      local out = sh(("wrk -t%d -c%d -d%ds --latency http://127.0.0.1:%d/ 2>&1"):format(threads, c, seconds, s.port))
      local rps = out:match("Requests/sec:%s+([%d.]+)")
      local p99, unit = out:match("99%%%s+([%d.]+)(%a+)")
      rows[#rows + 1] = {s.name, c, tonumber(rps) or 0, p99 and to_ms(p99, unit) or 0}
    end
  else
    print(s.name .. ": did not start")
  end
  os.execute("kill " .. pid .. " 2>/dev/null; sleep 0.3")
end
os.execute("rm -rf " .. tmp)

print(("%-10s %6s %12s %10s"):format("server", "conns", "req/s", "p99 ms"))
for _, r in ipairs(rows) do print(("%-10s %6d %12.0f %10.2f"):format(r[1], r[2], r[3], r[4])) end
