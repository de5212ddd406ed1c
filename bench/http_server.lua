-- The moonbeam side of bench/http.lua: a hello-world handler, keep-alive.
--   lua5.4 bench/http_server.lua PORT [SCHEDULERS]
local mb = require "moonbeam"
local http = require "moonbeam.http"
local port = tonumber(arg[1]) or 8091
local function hello(conn)
  conn.resp_headers["content-type"] = "text/plain"
  return conn:send_resp(200, "Hello, World!")
end
mb.run(function()
  assert(http.start(hello, {port = port, max_keepalive = 1000000000}))
  io.stdout:write("ready\n")
  io.stdout:flush()
  mb.receive()
end, {schedulers = tonumber(arg[2])})
