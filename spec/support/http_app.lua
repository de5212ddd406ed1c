-- The app the server specs run (spec/http_server_spec.lua, spec/websocket_spec.lua).
local mb = require "moonbeam"
local plug = require "moonbeam.http.plug"
local router = require "moonbeam.http.router"

local r = router.new()
r:get("/", function(conn) return conn:text(200, "hello") end)
r:get("/n/:n", function(conn) return conn:text(200, "n=" .. conn.params.n) end)
r:post("/echo", function(conn)
  local body, err = conn:read_body()
  if not body then return conn:text(err == "too_large" and 413 or 400, err) end
  return conn:text(200, body)
end)
r:post("/ignore", function(conn) return conn:text(200, "ignored") end)
r:post("/json", {plug.parsers()}, function(conn) return conn:json(200, conn.params) end)
r:get("/stream", function(conn)
  conn:send_chunked(200)
  for i = 1, 3 do conn:chunk("part" .. i .. ";") end
end)
r:get("/slow", function(conn)
  mb.sleep(tonumber(conn:fetch_query_params().query_params.ms) or 300)
  return conn:text(200, "slow done")
end)
r:get("/close", function(conn)
  conn:put_resp_header("connection", "close")
  return conn:text(200, "bye")
end)
r:get("/crash", function() error("handler crash on purpose") end)
r:get("/nothing", function() end)
r:get("/big", function(conn) return conn:text(200, ("x"):rep(200000)) end)
local PAGE = [[<!doctype html><meta charset="utf-8"><title>moonbeam</title><body>
<script>
window.result = {messages: []};
const ws = new WebSocket(`ws://${location.host}/ws?prefix=re:`);
ws.binaryType = "arraybuffer";
const steps = [() => ws.send("hello"), () => ws.send(new Uint8Array([1, 2, 3]).buffer),
  () => ws.send("x".repeat(100000)), () => ws.send("count"), () => ws.close(1000, "bye")];
let i = 0;
ws.onopen = () => steps[i++]();
ws.onmessage = (e) => {
  window.result.messages.push(typeof e.data === "string"
    ? (e.data.length > 100 ? "long:" + e.data.length : e.data)
    : "binary:" + Array.from(new Uint8Array(e.data)).join(","));
  steps[i++]();
};
ws.onclose = (e) => { window.result.close = e.code; window.result.done = true; };
ws.onerror = () => { window.result.error = true; };
</script>]]
r:get("/page", function(conn) return conn:html(200, PAGE) end)
r:get("/redir", function(conn) return conn:redirect("/n/redirected") end)
r:get("/pid", function(conn) return conn:text(200, tostring(mb.self())) end)
r:get("/ws", function(conn)
  local q = conn:fetch_query_params().query_params
  return conn:upgrade_websocket("ws_echo_handler", {prefix = q.prefix or ""}, {
    max_message = tonumber(q.max_message) or 2 * 1024 * 1024,
    idle_timeout = tonumber(q.idle) or 10000,
    send_hwm = tonumber(q.hwm),
    check_origin = q.origin and {q.origin} or nil,
  })
end)
return r
