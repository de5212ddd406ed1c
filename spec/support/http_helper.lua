-- Helpers for the HTTP and WebSocket specs: a server for the length of one
-- mb.run, and raw sockets that send exact bytes.
local mb = require "moonbeam"
local tcp = require "moonbeam.tcp"
local server = require "moonbeam.http.server"

local H = {}

-- Runs fn(port, srv) inside mb.run with spec/support/http_app.lua (or
-- `handler`) served with opts; returns what fn returns.
function H.with_server(opts, fn, handler)
  return mb.run(function()
    local srv = assert(server.start(handler or "http_app", opts))
    local res = table.pack(pcall(fn, srv.port, srv))
    server.stop(srv)
    if not res[1] then error(res[2], 0) end
    return table.unpack(res, 2, res.n)
  end)
end

function H.connect(port)
  return assert(tcp.connect("127.0.0.1", port, {active = false}, 5000))
end

-- Reads from sock until it closes or `timeout` ms pass without data; returns
-- everything read and whether the peer closed.
function H.read_all(sock, timeout)
  local parts = {}
  while true do
    local data, err = tcp.recv(sock, 0, timeout or 3000)
    if not data then return table.concat(parts), err ~= "timeout" end
    parts[#parts + 1] = data
  end
end

-- Reads until `pattern` matches what was read (or timeout); returns it all.
function H.read_until(sock, pattern, timeout)
  local buf = ""
  local deadline = mb.clock() + (timeout or 5000) / 1000
  while not buf:find(pattern) do
    local left = math.floor((deadline - mb.clock()) * 1000)
    if left <= 0 then return buf, "timeout" end
    local data, err = tcp.recv(sock, 0, left)
    if not data then return buf, err end
    buf = buf .. data
  end
  return buf
end

-- Sends `bytes` on a new connection and returns all it gets back until close.
function H.raw(port, bytes, timeout)
  local s = H.connect(port)
  assert(tcp.send(s, bytes))
  local out, closed = H.read_all(s, timeout)
  tcp.close(s)
  return out, closed
end

-- Splits a byte string of responses into {status=, headers=, body=} (content-
-- length or chunked bodies).
function H.responses(bytes)
  local core = require "moonbeam.core"
  local p = core.http.parser("response")
  local ev = p:feed(bytes)
  local out = {}
  local cur
  for _, e in ipairs(ev) do
    if type(e) == "table" then
      cur = {status = e.status, headers = e.headers, body = ""}
      out[#out + 1] = cur
    elseif type(e) == "string" then
      cur.body = cur.body .. e
    end
  end
  if ev.error then out.error = ev.error end
  return out
end

return H
