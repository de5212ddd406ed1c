--- moonbeam.websocket: WebSocket (RFC 6455) connections, server and client.
---
--- Server side, from an HTTP handler:
---   return conn:upgrade_websocket("myapp.ws_handler", initial_state, opts)
--- The handler module has Cowboy's cowboy_websocket callbacks, all optional
--- but handle_in:
---   init(state, conn)           after the handshake, in the connection's process
---   handle_in(frame, state)     frame = {"text", data} | {"binary", data} |
---                               {"ping", data} | {"pong", data}
---   handle_info(msg, state)     any other message to the process
---   terminate(reason, state)    reason: "normal" (closed by either side),
---                               "timeout", "closed" (socket lost), "stop",
---                               {"error", close_code}, {"crash", err}
--- Each of init, handle_in and handle_info returns "ok", state |
--- "reply", frames, state | "stop", state, where frames is a frame or a list
--- of frames ({"text", s}, {"binary", s}, {"ping", s}, {"close", code, reason}).
--- Pings are answered and a received close is echoed by the codec.
---
--- opts: max_frame (default max_message), max_message (16 MB): 1009;
--- idle_timeout (60000 ms without input: close 1000 and terminate "timeout");
--- send_hwm (1 MB: the socket's send queue above which sending waits, so a
--- client that stops reading never grows memory without bound);
--- check_origin (a function(origin, conn) -> boolean, or a list of allowed
--- origins: 403 otherwise); protocol (a Sec-WebSocket-Protocol to accept).
---
--- Client side: ws.connect(url, opts) (see below).
local core = require "moonbeam.core"
local mb = require "moonbeam"
local tcp = require "moonbeam.tcp"

local M = {}

-- socket message tags, TLS ("ssl") read as TCP
local KIND = {tcp = "tcp", ssl = "tcp", tcp_closed = "tcp_closed", ssl_closed = "tcp_closed",
  tcp_error = "tcp_error", ssl_error = "tcp_error", tcp_passive = "tcp_passive", ssl_passive = "tcp_passive"}

local GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

--- The Sec-WebSocket-Accept value for a Sec-WebSocket-Key.
function M.accept_key(key)
  return core.crypto.base64(core.crypto.sha1(key .. GUID))
end

local function has_token(value, token)
  if not value then return false end
  for t in value:gmatch("[^,%s]+") do if t:lower() == token then return true end end
  return false
end

--- Checks a request's handshake headers; returns true or nil, status, why.
function M.check_request(conn)
  local h = conn.headers
  if conn.method ~= "GET" then return nil, 400, "websocket upgrade needs GET" end
  if not has_token(h.upgrade, "websocket") or not has_token(h.connection, "upgrade") then
    return nil, 400, "not a websocket upgrade"
  end
  if h["sec-websocket-version"] ~= "13" then return nil, 426, "websocket version 13 only" end
  local key = h["sec-websocket-key"]
  local raw = key and core.crypto.unbase64(key)
  if not raw or #raw ~= 16 then return nil, 400, "bad Sec-WebSocket-Key" end
  return true
end

local function origin_ok(check, conn)
  if not check then return true end
  local origin = conn.headers.origin
  if type(check) == "function" then return check(origin, conn) and true or false end
  for _, o in ipairs(check) do if o == origin then return true end end
  return false
end

local function resolve(handler)
  if type(handler) == "string" then return require(handler) end
  return handler
end

-- Queues the frames of a "reply"; returns true if one was a close.
local function queue(ws, frames)
  if type(frames) ~= "table" then return false end
  if type(frames[1]) ~= "table" then frames = {frames} end
  local closing = false
  for _, f in ipairs(frames) do
    if f[1] == "close" then
      ws:close(f[2] or 1000, f[3] or "")
      closing = true
    else
      ws:send(f[1], f[2] or "")
    end
  end
  return closing
end

-- The server side's loop; c is the HTTP connection (moonbeam.http.server).
function M.run_upgraded(c, conn, rest)
  local up = conn.upgrade
  local opts = up.opts or {}
  local ok, status, why = M.check_request(conn)
  if ok and not origin_ok(opts.check_origin, conn) then ok, status, why = nil, 403, "origin refused" end
  if not ok then
    local extra = status == 426 and "sec-websocket-version: 13\r\n" or ""
    c:send(("HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n%sconnection: close\r\n\r\n%s")
      :format(status, status == 403 and "Forbidden" or status == 426 and "Upgrade Required" or "Bad Request",
        #why, extra, why))
    c:close()
    return
  end
  local handler = resolve(up.handler)
  local lines = {"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n",
    "sec-websocket-accept: ", M.accept_key(conn.headers["sec-websocket-key"]), "\r\n"}
  if opts.protocol then lines[#lines + 1] = "sec-websocket-protocol: " .. opts.protocol .. "\r\n" end
  lines[#lines + 1] = "\r\n"
  if not c:send(table.concat(lines)) then c:close() return end
  tcp.setopts(c.sock, {high_watermark = opts.send_hwm or 1024 * 1024,
    low_watermark = (opts.send_hwm or 1024 * 1024) // 2})
  return M.loop(c.sock, handler, up.state, opts, conn, rest, false)
end

-- Runs handler callbacks over a connected socket (server or client side).
function M.loop(sock, handler, state, opts, conn, rest, client)
  local ws = core.http.ws(client, {max_frame = opts.max_frame, max_message = opts.max_message})
  local idle = opts.idle_timeout or 60000
  local reason
  local stopping = false

  local function flush()
    local out = ws:output()
    if out then
      local okk = tcp.send(sock, out)
      if not okk then reason = reason or "closed" return false end
    end
    return true
  end

  -- applies a callback's result; false once the connection is to end
  local function apply(r1, r2, r3)
    if r1 == "ok" then
      state = r2
    elseif r1 == "reply" then
      state = r3
      if queue(ws, r2) then stopping = true reason = reason or "stop" end
    elseif r1 == "stop" then
      state = r2
      ws:close(1000, "")
      stopping = true
      reason = reason or "stop"
    else
      error("websocket callback returned " .. tostring(r1) .. " (ok, reply or stop expected)", 0)
    end
    return true
  end

  local function call(name, a)
    local fn = handler[name]
    if not fn then return true end
    local okc, r1, r2, r3 = pcall(fn, a, state, conn)
    if not okc then
      reason = {"crash", r1}
      ws:close(1011, "")
      flush()
      return false
    end
    return apply(r1, r2, r3)
  end

  local function handle_input(data)
    local ev, code = ws:feed(data)
    for _, e in ipairs(ev) do
      if e[1] == "close" then
        reason = reason or "normal"
      elseif not call("handle_in", e) then
        return false
      end
    end
    if code then reason = reason or {"error", code} end
    return true
  end

  local alive = true
  if handler.init then
    local okc, r1, r2, r3 = pcall(handler.init, state, conn)
    if not okc then
      reason = {"crash", r1}
      ws:close(1011, "")
      alive = false
    else
      apply(r1, r2, r3)
    end
  end
  if alive and rest and rest ~= "" then alive = handle_input(rest) end
  if alive then alive = flush() end

  local close_deadline
  local armed = false
  while alive and not ws:done() do
    if stopping and not close_deadline then close_deadline = mb.clock() + 5 end
    -- an allowance of 8 socket messages: one setopts per 8 reads
    if not armed then
      tcp.setopts(sock, {active = 8})
      armed = true
    end
    local timeout = idle
    if close_deadline then timeout = math.max(0, math.floor((close_deadline - mb.clock()) * 1000)) end
    local m = mb.receive(nil, timeout)
    if m == nil then
      if close_deadline then break end
      reason = "timeout"
      ws:close(1000, "idle")
      stopping = true
      flush()
    elseif type(m) == "table" and m[2] == sock and KIND[m[1]] == "tcp" then
      alive = handle_input(m[3])
      if alive then alive = flush() end
    elseif type(m) == "table" and m[2] == sock and (KIND[m[1]] == "tcp_closed" or KIND[m[1]] == "tcp_error") then
      reason = reason or "closed"
      alive = false
    elseif type(m) == "table" and m[2] == sock and KIND[m[1]] == "tcp_passive" then
      armed = false  -- the allowance is used up: re-armed at the top of the loop
    elseif type(m) == "table" and m[1] == "$http_drain" then
      if not stopping then
        ws:close(1001, "")
        stopping = true
        reason = reason or "normal"
        flush()
      end
    else
      if not stopping then alive = call("handle_info", m) end
      if alive then alive = flush() end
    end
  end
  tcp.close(sock)
  ws:free()
  if handler.terminate then pcall(handler.terminate, reason or "normal", state, conn) end
  return reason
end

-- ------------------------------------------------------------ client

local Client = {}
Client.__index = Client

local function parse_ws_url(url)
  local scheme, host, port, path = url:match("^(wss?)://([^:/]+):?(%d*)(.*)$")
  if not scheme then return nil end
  return host, tonumber(port) or (scheme == "wss" and 443 or 80), path ~= "" and path or "/", scheme == "wss"
end

--- Connects to a ws:// or wss:// URL (wss through moonbeam.tls; opts.tls as
--- tls.connect takes, e.g. cafile or verify = false); returns a client or nil,
--- reason. opts: headers
--- (extra request headers, e.g. origin), timeout (10000 ms for connect and
--- handshake), max_frame, max_message, protocol. The client lives in the
--- calling process: client:send(kind, data), client:recv(timeout) -> frame
--- ({"text", s}, {"binary", s}, {"pong", s}, {"close", code, reason}) or nil,
--- reason, client:ping(data), client:close(code, reason).
function M.connect(url, opts)
  opts = opts or {}
  local host, port, path, secure = parse_ws_url(url)
  if not host then return nil, port or "bad url" end
  local timeout = opts.timeout or 10000
  local sock, err
  if secure then
    local topts = {active = false, nodelay = true}
    for k, v in pairs(opts.tls or {}) do topts[k] = v end
    sock, err = require("moonbeam.tls").connect(host, port, topts, timeout)
  else
    sock, err = tcp.connect(host, port, {active = false, nodelay = true}, timeout)
  end
  if not sock then return nil, err end
  local key = core.crypto.base64(core.crypto.random(16))
  local req = {"GET ", path, " HTTP/1.1\r\nhost: ", host, ":", tostring(port),
    "\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-version: 13\r\n",
    "sec-websocket-key: ", key, "\r\n"}
  if opts.protocol then req[#req + 1] = "sec-websocket-protocol: " .. opts.protocol .. "\r\n" end
  for k, v in pairs(opts.headers or {}) do req[#req + 1] = k .. ": " .. v .. "\r\n" end
  req[#req + 1] = "\r\n"
  local ok, serr = tcp.send(sock, table.concat(req))
  if not ok then tcp.close(sock) return nil, serr end
  local p = core.http.parser("response")
  local head, rest
  local deadline = mb.clock() + timeout / 1000
  while not head or rest == nil do
    local left = math.max(1, math.floor((deadline - mb.clock()) * 1000))
    local data, rerr = tcp.recv(sock, 0, left)
    if not data then tcp.close(sock) return nil, rerr end
    local ev = p:feed(data)
    if ev.error then tcp.close(sock) return nil, "bad handshake response" end
    for _, e in ipairs(ev) do if type(e) == "table" then head = e end end
    if head and head.status ~= 101 then tcp.close(sock) return nil, "status " .. head.status end
    rest = ev.upgrade
    if head and rest == nil and not head.upgrade then tcp.close(sock) return nil, "no upgrade" end
  end
  if head.headers["sec-websocket-accept"] ~= M.accept_key(key) then
    tcp.close(sock)
    return nil, "bad Sec-WebSocket-Accept"
  end
  local ws = core.http.ws(true, {max_frame = opts.max_frame, max_message = opts.max_message})
  local c = setmetatable({sock = sock, ws = ws, queue = {}, qi = 1, qn = 0, headers = head.headers}, Client)
  if rest ~= "" then c:_input(rest) end
  return c
end

function Client:_flush()
  local out = self.ws:output()
  if out then return tcp.send(self.sock, out) end
  return true
end

function Client:_input(data)
  local ev, code = self.ws:feed(data)
  for _, e in ipairs(ev) do
    self.qn = self.qn + 1
    self.queue[self.qn] = e
  end
  if code then self.failed = code end
  self:_flush()
end

--- Sends a "text" or "binary" message.
function Client:send(kind, data)
  local ok, err = self.ws:send(kind, data)
  if not ok then return nil, err end
  return self:_flush()
end

function Client:ping(data) return self:send("ping", data or "") end

--- The next frame, waiting up to timeout ms (nil: forever).
function Client:recv(timeout)
  local deadline = timeout and mb.clock() + timeout / 1000
  while self.qi > self.qn do
    if self.closed then return nil, "closed" end
    if self.failed then return nil, self.failed end
    local left = deadline and math.max(0, math.floor((deadline - mb.clock()) * 1000))
    if left == 0 then return nil, "timeout" end
    local data, err = tcp.recv(self.sock, 0, left)
    if not data then
      if err ~= "timeout" then self.closed = true end
      return nil, err
    end
    self:_input(data)
  end
  local e = self.queue[self.qi]
  self.queue[self.qi] = nil
  self.qi = self.qi + 1
  return e
end

--- Starts the close handshake and waits (up to timeout ms, 5000) for the reply.
function Client:close(code, reason, timeout)
  if self.closed then return true end
  self.ws:close(code or 1000, reason or "")
  self:_flush()
  local deadline = mb.clock() + (timeout or 5000) / 1000
  while not self.ws:done() do
    local left = math.floor((deadline - mb.clock()) * 1000)
    if left <= 0 then break end
    local data = tcp.recv(self.sock, 0, left)
    if not data then break end
    self:_input(data)
  end
  self.closed = true
  tcp.close(self.sock)
  return true
end

--- The socket (for tests that misbehave on purpose).
function Client:socket() return self.sock end

return M
