-- The moonbeam side of bench/ws.lua: a WebSocket echo server.
--   lua5.4 bench/ws_server.lua PORT
package.path = package.path .. ";bench/?.lua"
local mb = require "moonbeam"
local http = require "moonbeam.http"
local port = tonumber(arg[1]) or 8094
local function app(conn)
  return conn:upgrade_websocket("ws_bench_handler", {}, {idle_timeout = 600000})
end
mb.run(function()
  assert(http.start(app, {port = port, max_connections = 100000, backlog = 4096}))
  io.stdout:write("ready\n")
  io.stdout:flush()
  mb.receive()
end)
