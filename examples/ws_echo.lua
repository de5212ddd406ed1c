-- A WebSocket echo server with a page to try it in a browser, and a self-test
-- through moonbeam's WebSocket client.
--
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
--     lua5.4 examples/ws_echo.lua [--port 8080] [--self-test]
--   then open http://localhost:8080/ (or: node -e "..." with the ws package)
local mb = require "moonbeam"
local http = require "moonbeam.http"
local websocket = require "moonbeam.websocket"

local port, self_test = 8080, false
for i = 1, #(arg or {}) do
  if arg[i] == "--port" then port = tonumber(arg[i + 1])
  elseif arg[i] == "--self-test" then self_test = true port = 0 end
end

-- The WebSocket handler is a module (examples/ws_echo_handler.lua), so each
-- VM loads it by name.
package.path = package.path .. ";examples/?.lua"

local PAGE = [[<!doctype html><meta charset="utf-8"><title>moonbeam ws echo</title>
<input id="m" value="hello"><button id="b">send</button><pre id="o"></pre>
<script>
const o = document.getElementById('o');
const ws = new WebSocket(`ws://${location.host}/ws`);
ws.onmessage = (e) => { o.textContent += e.data + "\n"; };
document.getElementById('b').onclick = () => ws.send(document.getElementById('m').value);
</script>]]

-- The app is a function whose upvalues can be sent (a string), so it is
-- copied into every connection's VM.
local function app(conn)
  if conn.path == "/ws" then
    return conn:upgrade_websocket("ws_echo_handler", {n = 0}, {idle_timeout = 120000})
  end
  if conn.path == "/" then return conn:html(200, PAGE) end
  return conn:text(404, "not found")
end

mb.run(function()
  local srv = assert(http.start(app, {port = port}))
  print("open http://127.0.0.1:" .. srv.port .. "/")
  if self_test then
    local c = assert(websocket.connect("ws://127.0.0.1:" .. srv.port .. "/ws"))
    for _, msg in ipairs({"hello", "moonbeam"}) do
      c:send("text", msg)
      print("got: " .. c:recv(3000)[2])
    end
    c:send("binary", "\1\2\3")
    print("got binary of " .. #c:recv(3000)[2] .. " bytes")
    c:close(1000, "bye")
    mb.sleep(100)
    http.stop(srv)
  else
    mb.receive()
  end
end)
