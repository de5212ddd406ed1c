--- moonbeam.http.server: the HTTP/1.1 server, one process per connection.
---
---   local srv = server.start("myapp.web", {port = 8080})   -- or start_link
---   srv.port, server.stop(srv)
---
--- The handler is a plug (see moonbeam.http.plug) given so that any VM can
--- build it: a module name whose module is a plug (a function, a router, a table
--- with call), {module_name, opts}, or a function whose upvalues can be sent.
---
--- Processes: a listener process owns the listening socket and starts one
--- acceptor per scheduler (opts.acceptors); each acceptor accepts, spawns the
--- connection's process on its own scheduler and hands it the socket. An
--- acceptor that has max_connections / acceptors live connections stops
--- accepting until one ends: further clients wait in the kernel's backlog
--- (backpressure, not a crash). A connection process reads with an active
--- allowance of opts.active_n messages (32: one setopts per 32 reads; at most
--- 32 reads, 2 MB, wait in its mailbox), parses in C, answers
--- requests in order (keep-alive, pipelining), and may become a WebSocket
--- (moonbeam.websocket).
---
--- Options and defaults: port (0 = any), address ("any"), backlog (1024),
--- acceptors (schedulers), max_connections (16384), max_head (16384 bytes: 431),
--- max_headers (100: 431), max_body (8 MB: 413), header_timeout (10000 ms from a
--- request's first byte to the end of its head: 408), body_timeout (30000 ms for
--- the whole body: 408), idle_timeout (60000 ms between keep-alive requests),
--- max_keepalive (1000 requests a connection), drain_timeout (5000 ms),
--- active_n (32 socket messages an allowance), tls
--- (HTTPS: {certfile =, keyfile =, ...} as moonbeam.tls.listen takes), log
--- (where handler errors go: moonbeam.logger by default, false for nowhere, or
--- the name of a module with log(msg)).
local core = require "moonbeam.core"
local mb = require "moonbeam"
local tcp = require "moonbeam.tcp"
local conn_mod = require "moonbeam.http.conn"
local plug = require "moonbeam.http.plug"
local status_mod = require "moonbeam.http.status"
local util = require "moonbeam.http.util"

local M = {}

local DEFAULTS = {
  port = 0, address = "any", backlog = 1024, max_connections = 16384,
  max_head = 16384, max_headers = 100, max_body = 8 * 1024 * 1024,
  header_timeout = 10000, body_timeout = 30000, idle_timeout = 60000,
  max_keepalive = 1000, active_n = 32,
}

local function with_defaults(opts)
  local o = {}
  for k, v in pairs(DEFAULTS) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  return o
end

-- ------------------------------------------------------------ handler cache
-- A handler named by module is built once per VM.
local built = setmetatable({}, {__mode = "k"})
local by_name = {}

local function build(handler)
  if type(handler) == "string" then
    local h = by_name[handler]
    if not h then
      h = plug.resolve(require(handler))
      by_name[handler] = h
    end
    return h
  end
  if type(handler) == "table" then
    local h = built[handler]
    if not h then
      h = plug.resolve(handler)
      built[handler] = h
    end
    return h
  end
  return plug.resolve(handler)
end

-- ------------------------------------------------------------ response wire

local date_cache, date_at = "", -1
local function http_date()
  local now = os.time()
  if now ~= date_at then
    date_at = now
    date_cache = util.http_date(now)
  end
  return date_cache
end

local function no_body_status(s) return s < 200 or s == 204 or s == 304 end

local function is_drain(m) return type(m) == "table" and m[1] == "$http_drain" end

-- "HTTP/1.1 200 OK\r\n" per status, made once per VM.
local status_lines = setmetatable({}, {__index = function(t, st)
  local line = "HTTP/1.1 " .. tostring(st) .. " " .. status_mod.reason(st) .. "\r\n"
  if math.type(st) == "integer" and st >= 100 and st <= 999 then t[st] = line end
  return line
end})

-- The status line and headers; `extra` are the lines the server adds.
local function head_bytes(status, headers, extra)
  local parts = {status_lines[status]}
  local n = 1
  for _, h in ipairs(headers) do
    parts[n + 1] = h[1]
    parts[n + 2] = ": "
    parts[n + 3] = h[2]
    parts[n + 4] = "\r\n"
    n = n + 4
  end
  for i = 1, #extra do n = n + 1 parts[n] = extra[i] end
  parts[n + 1] = "\r\n"
  return table.concat(parts)
end

-- "content-length: N\r\n" for small N, made once per VM.
local length_lines = setmetatable({}, {__index = function(t, n)
  local line = "content-length: " .. n .. "\r\n"
  if n < 4096 then t[n] = line end
  return line
end})

local date_line, date_line_at = "", nil
local function date_header()
  local d = http_date()
  if d ~= date_line_at then
    date_line_at = d
    date_line = "date: " .. d .. "\r\n"
  end
  return date_line
end

-- The header lines of a map (sorted by name).
local function header_block(rh)
  local k1, v1 = next(rh)
  if k1 == nil then return "" end
  if next(rh, k1) == nil then return k1 .. ": " .. v1 .. "\r\n" end
  local names, nn = {}, 0
  for k in pairs(rh) do nn = nn + 1 names[nn] = k end
  table.sort(names)
  local parts = {}
  for i = 1, nn do
    local k = names[i]
    parts[i] = k .. ": " .. rh[k] .. "\r\n"
  end
  return table.concat(parts)
end

-- The head of a conn's response followed by `body` (may be ""): its
-- resp_headers sorted by name, one set-cookie per cookie (sorted by cookie
-- name), then the lines the server adds: date, content-length (body_len,
-- unless the handler set one or the status has no body), transfer-encoding
-- (te), connection. Keeps to the order resp_header_list gives. Sets
-- x.keep_alive false when the connection ends after this response.
local function conn_head(conn, status, x, body_len, te, body)
  local rh = conn.resp_headers
  local cookies = ""
  local rc = conn.resp_cookies
  if next(rc) then
    local cn = {}
    for k in pairs(rc) do cn[#cn + 1] = k end
    table.sort(cn)
    for i, k in ipairs(cn) do cn[i] = "set-cookie: " .. rc[k] .. "\r\n" end
    cookies = table.concat(cn)
  end
  local date = rh.date and "" or date_header()
  local len = ""
  if body_len and not no_body_status(status) and not rh["content-length"] then len = length_lines[body_len] end
  local c = x.c
  local want_close = rh.connection == "close"
  if not c.draining and mb.receive(is_drain, 0) then c.draining = true end
  if want_close or c.draining or c.requests >= c.opts.max_keepalive or x.force_close then
    x.keep_alive = false
  end
  local conn_line = ""
  if not x.keep_alive then
    if not want_close then conn_line = "connection: close\r\n" end
  elseif conn.version == "1.0" then
    conn_line = "connection: keep-alive\r\n"
  end
  return status_lines[status] .. header_block(rh) .. cookies .. date .. len .. (te or "") .. conn_line ..
    "\r\n" .. (body or "")
end

-- ------------------------------------------------------------ connection
-- The state of one connection's process: the socket, the parser, the events
-- parsed and not yet used (heads, body pieces, ends of messages), and where
-- the connection is (reading a head, a body, or idle between requests).

local Conn = {}
Conn.__index = Conn

-- TLS sockets tag their messages "ssl": both read the same
local KIND = {tcp = "tcp", ssl = "tcp", tcp_closed = "tcp_closed", ssl_closed = "tcp_closed",
  tcp_error = "tcp_error", ssl_error = "tcp_error", tcp_passive = "tcp_passive",
  ssl_passive = "tcp_passive", ["$http_drain"] = "$http_drain"}
M.KIND = KIND

local function new_connection(sock, opts, srv_id)
  local c = setmetatable({
    sock = sock, opts = opts, srv_id = srv_id,
    parser = core.http.parser("request", opts),
    events = {}, ev_i = 1, ev_n = 0,
    error = nil, upgrade_rest = nil,
    closed = false, draining = false,
    requests = 0,
  }, Conn)
  -- the messages this connection reads: its socket's, and the drain
  c.mine = function(x) return type(x) == "table" and (x[2] == sock or x[1] == "$http_drain") end
  local ip, port = tcp.peername(sock)
  c.peer = ip and {address = ip, port = port} or nil
  return c
end

-- Waits for socket data until `deadline` (mb.clock seconds; nil: none) and feeds
-- it. Returns true, or nil and "timeout" / "closed" / "drain".
function Conn:fill(deadline, idle)
  if self.closed then return nil, "closed" end
  if self.error or self.upgrade_rest then return nil, "closed" end
  local sock = self.sock
  while true do
    -- an allowance of several messages: one setopts per active_n reads; the
    -- socket says tcp_passive when it is used up
    if not self.armed then
      tcp.setopts(sock, {active = self.opts.active_n})
      self.armed = true
    end
    local timeout
    if deadline then
      timeout = math.floor((deadline - mb.clock()) * 1000)
      if timeout < 0 then timeout = 0 end
    end
    local m = mb.receive(self.mine, timeout)
    if not m then return nil, "timeout" end
    local kind = KIND[m[1]]
    if kind == "tcp" then
      local ev = self.parser:feed(m[3])
      if self.ev_i > self.ev_n then  -- all used (the usual case): take the parser's list
        self.events, self.ev_i, self.ev_n = ev, 1, #ev
      else
        for i = 1, #ev do self.ev_n = self.ev_n + 1 self.events[self.ev_n] = ev[i] end
      end
      if ev.error then
        self.error = ev.error
      elseif ev.upgrade then
        self.upgrade_rest = ev.upgrade
      end
      return true
    elseif kind == "$http_drain" then
      self.draining = true
      if idle then return nil, "drain" end
    elseif kind == "tcp_closed" or kind == "tcp_error" then
      self.closed = true
      return nil, "closed"
    elseif kind == "tcp_passive" then
      self.armed = false
    end
  end
end

-- The next event, reading as needed; nil, why at a timeout, close or error.
function Conn:next_event(deadline, idle)
  while self.ev_i > self.ev_n do
    self.ev_i, self.ev_n = 1, 0
    if self.error or self.upgrade_rest then return nil, "stop" end
    local ok, why = self:fill(deadline, idle)
    if not ok then return nil, why end
  end
  local e = self.events[self.ev_i]
  self.events[self.ev_i] = nil
  self.ev_i = self.ev_i + 1
  return e
end

function Conn:has_event() return self.ev_i <= self.ev_n end

function Conn:send(data)
  if self.closed then return nil, "closed" end
  local ok, err = tcp.send(self.sock, data)
  if not ok then self.closed = true end
  return ok, err
end

function Conn:close()
  if not self.sock then return end
  tcp.close(self.sock)
  self.closed = true
  self.sock = nil
end

-- An error response that ends the connection. The close lingers: our side is
-- shut for writing and what the client still sends is read and dropped for a
-- moment (at most 1 s, 256 KB), so the kernel does not answer it with a reset
-- that would destroy the response before the client reads it.
function Conn:fail(status)
  local ok = self:send(head_bytes(status, {}, {"content-length: 0\r\n", "connection: close\r\n",
    "date: ", http_date(), "\r\n"}))
  if ok and not self.closed then
    local sock = self.sock
    tcp.shutdown(sock, "write")
    local deadline, left = mb.clock() + 1, 256 * 1024
    while left > 0 do
      local t = math.floor((deadline - mb.clock()) * 1000)
      if t <= 0 then break end
      tcp.setopts(sock, {active = "once"})
      local m = mb.receive(function(x) return type(x) == "table" and x[2] == sock end, t)
      if not m or KIND[m[1]] ~= "tcp" then break end
      left = left - #m[3]
    end
  end
  self:close()
end

-- ------------------------------------------------------------ the adapter
-- conn.private.http is {c = connection, head = parsed head, body_state =
-- "unread" | "reading" | "done", keep_alive = bool}.

local adapter = {}

local function body_events(x, sink)
  local c = x.c
  if x.body_state == "done" then return true end
  if x.expect_continue and x.body_state == "unread" then
    c:send("HTTP/1.1 100 Continue\r\n\r\n")
  end
  x.body_state = "reading"
  local deadline = mb.clock() + c.opts.body_timeout / 1000
  while true do
    local e, why = c:next_event(deadline)
    if e == nil then
      x.keep_alive = false
      if why == "timeout" then return nil, "timeout" end
      if c.error == 413 then return nil, "too_large" end
      return nil, why == "stop" and "bad_request" or "closed"
    end
    if e == false then
      x.body_state = "done"
      return true
    end
    if type(e) == "string" then
      local ok, err = sink(e)
      if not ok then return nil, err end
    end
  end
end

function adapter.read_body(conn, max)
  local x = conn.private.http
  local parts, n = {}, 0
  local ok, err = body_events(x, function(piece)
    n = n + #piece
    if max and n > max then return nil, "too_large" end
    parts[#parts + 1] = piece
    return true
  end)
  if not ok then
    if err == "too_large" then x.keep_alive = false end
    return nil, err
  end
  return table.concat(parts)
end

function adapter.send_resp(conn, status, _, body)
  local x = conn.private.http
  body = body or ""
  if conn.method == "HEAD" or no_body_status(status) then return x.c:send(conn_head(conn, status, x, #body)) end
  -- one write for head and body (a small body is copied once, into the head)
  if #body < 65536 then return x.c:send(conn_head(conn, status, x, #body, nil, body)) end
  local ok, err = x.c:send(conn_head(conn, status, x, #body))
  if not ok then return nil, err end
  return x.c:send(body)
end

function adapter.send_chunked(conn, status)
  local x = conn.private.http
  local te
  if conn.method == "HEAD" then
    x.chunk_mode = "none"
  elseif conn.version == "1.0" then
    x.chunk_mode = "raw"       -- HTTP/1.0 has no chunks: the body ends at close
    x.force_close = true
  else
    x.chunk_mode = "chunked"
    te = "transfer-encoding: chunked\r\n"
  end
  return x.c:send(conn_head(conn, status, x, nil, te))
end

function adapter.chunk(conn, data)
  local x = conn.private.http
  if x.chunk_mode == "none" then return true end
  if x.chunk_mode == "raw" then return x.c:send(data) end
  return x.c:send(("%x\r\n"):format(#data) .. data .. "\r\n")
end

-- A file's range: the head and the bytes with sendfile(2) on plain TCP; on
-- TLS (encryption happens in user space) read and sent in 64 KB pieces. A
-- file that is gone or shorter than the range when it is opened fails before
-- anything is sent (the handler may still answer); one that shrinks while it
-- is sent ends the connection (the client sees fewer bytes than announced).
local function send_file_pieces(c, head, path, offset, length)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local ok, serr = c:send(head)
  f:seek("set", offset)
  local left = length
  while left > 0 and ok do
    local piece = f:read(math.min(left, 65536))
    if not piece then ok, serr = nil, "truncated" break end
    left = left - #piece
    ok, serr = c:send(piece)
  end
  f:close()
  return ok, serr
end

function adapter.send_file(conn, status, _, path, offset, length)
  local x = conn.private.http
  local c = x.c
  local function unsent(err)   -- nothing went out: the handler may answer otherwise
    conn.state = "unset"
    conn.status = nil
    return nil, err
  end
  if not length then
    local f, err = io.open(path, "rb")
    if not f then return unsent(err) end
    length = f:seek("end") - offset
    f:close()
    if length < 0 then return unsent("changed") end
  end
  local head = conn_head(conn, status, x, length)
  if c.closed then return nil, "closed" end
  local ok, err
  if conn.method == "HEAD" then
    ok, err = c:send(head)
  else
    ok, err = tcp.sendfile(c.sock, head, path, offset, length)
    if not ok and err == "enotsup" then ok, err = send_file_pieces(c, head, path, offset, length) end
  end
  if not ok then
    if err == "changed" or err == "enoent" or err == "eisdir" then return unsent(err) end
    x.keep_alive = false
    c.closed = true
    return nil, err
  end
  return conn
end

function adapter.upgrade() return true end
adapter.raw_headers = true   -- send_* read conn.resp_headers themselves

-- ------------------------------------------------------------ one request

local function log_error(opts, msg)
  if opts.log == false then return end
  if type(opts.log) == "string" then
    require(opts.log).log(msg)
  else
    local ok, logger = pcall(require, "moonbeam.logger")
    if ok and logger.error then pcall(logger.error, msg) else io.stderr:write(msg, "\n") end
  end
end

-- Runs the handler on one request; returns true to go on with the connection.
local function serve(c, head, handler)
  c.requests = c.requests + 1
  local x = {c = c, head = head, body_state = "unread", keep_alive = head.keep_alive}
  local expect = head.headers.expect
  if expect then
    if expect:lower() ~= "100-continue" then
      c:fail(417)
      return false
    end
    x.expect_continue = true
  end
  if not head.content_length and not head.chunked then x.body_state = "done_pending" end
  local conn = conn_mod.new(head, adapter, {peer = c.peer})
  conn.private.http = x
  if x.body_state == "done_pending" then
    -- no body: the end of the message is the next event
    local e = c:next_event(mb.clock() + c.opts.body_timeout / 1000)
    x.body_state = "done"
    if e ~= false then return false end
    conn.body = ""
  end
  local ok, r = xpcall(handler, debug.traceback, conn)
  if ok and type(r) == "table" and getmetatable(r) == conn_mod.Conn then conn = r end
  if not ok then
    log_error(c.opts, "http handler error: " .. tostring(r))
    if conn.state == "unset" or conn.state == "set" then
      conn.state = "unset"
      conn.resp_headers = {}
      x.keep_alive = false
      conn:put_resp_content_type("text/plain")
      conn:send_resp(500, "Internal Server Error\n")
    else
      c:close()
      return false
    end
  end
  if conn.state == "set" then conn:send() end
  if conn.state == "unset" then
    log_error(c.opts, "http handler sent no response for " .. head.method .. " " .. head.url)
    conn:put_resp_content_type("text/plain")
    conn:send_resp(500, "Internal Server Error\n")
  elseif conn.state == "chunked" and x.chunk_mode == "chunked" then
    c:send("0\r\n\r\n")
  elseif conn.state == "upgraded" then
    return "upgrade", conn
  end
  if x.chunk_mode == "raw" then return false end
  if c.closed then return false end
  -- an unread body: drop it if it is announced as small, else close
  if x.body_state ~= "done" then
    if x.expect_continue and x.body_state == "unread" then return false end
    local okb = body_events(x, function() return true end)
    if not okb then return false end
  end
  return x.keep_alive
end

--- The connection process: serves requests until the connection ends.
function M.connection(sock, handler_spec, opts, srv_id)
  local handler = build(handler_spec)
  local c = new_connection(sock, opts, srv_id)
  while true do
    -- idle: waiting for the first byte of a request
    local deadline = mb.clock() + (c.requests == 0 and opts.header_timeout or opts.idle_timeout) / 1000
    if not c:has_event() then
      if c.draining then break end
      local ok = c:fill(deadline, true)
      if not ok then
        if c.error then c:fail(c.error) return end
        break
      end
    end
    -- the head: at most header_timeout from its first byte
    deadline = mb.clock() + opts.header_timeout / 1000
    local e, why = c:next_event(deadline)
    if e == nil then
      if c.error then c:fail(c.error) return end
      if why == "timeout" and not c.parser:idle() then c:fail(408) return end
      break
    end
    if type(e) ~= "table" then break end        -- cannot happen: a message starts with its head
    local go, conn = serve(c, e, handler)
    if go == "upgrade" then
      local ws = require "moonbeam.websocket"
      local rest = c.upgrade_rest or ""
      c.upgrade_rest = nil
      -- the HTTP side's state is not needed any more: a WebSocket may live long
      c.parser:close()
      c.parser, c.events = nil, nil
      conn.private.http = nil
      conn.adapter = nil
      return ws.run_upgraded(c, conn, rest)
    end
    if not go then break end
    if c.error and not c:has_event() then c:fail(c.error) return end
  end
  c:close()
end

-- ------------------------------------------------------------ acceptors

function M._acceptor(listener, handler_spec, opts, srv_id, limit)
  local live, n = {}, 0
  local function reap(timeout)
    local m = mb.receive(function(x) return type(x) == "table" and x[1] == "DOWN" and live[x[2]] end, timeout)
    if m then live[m[2]] = nil n = n - 1 return true end
    return false
  end
  local draining = false
  local function stop_asked(m) return m == "$http_stop" end
  while not draining do
    while reap(0) do end
    -- at the limit: wait for a connection to end (or for the stop)
    while n >= limit and not draining do
      local m = mb.receive(function(x)
        return x == "$http_stop" or type(x) == "table" and x[1] == "DOWN" and live[x[2]] ~= nil
      end)
      if m == "$http_stop" then draining = true else live[m[2]] = nil n = n - 1 end
    end
    if draining then break end
    local sock, err = tcp.accept(listener, 1000)
    if sock then
      local pid, ref = mb.spawn_opt({monitor = true, scheduler = "here"},
        {"moonbeam.http.server", "connection_entry"},
        sock, handler_spec, opts, srv_id)
      local ok = tcp.controlling_process(sock, pid)
      if not ok then tcp.close(sock) end
      mb.send(pid, {"$http_sock", sock})
      live[ref] = pid
      n = n + 1
    elseif err ~= "timeout" then
      draining = true
    end
    if mb.receive(stop_asked, 0) then draining = true end
  end
  -- graceful drain: tell every connection, wait for them, then end
  for _, pid in pairs(live) do mb.send(pid, {"$http_drain"}) end
  local deadline = mb.clock() + (opts.drain_timeout or 5000) / 1000
  while n > 0 do
    local left = math.floor((deadline - mb.clock()) * 1000)
    if left <= 0 or not reap(left) then break end
  end
  for _, pid in pairs(live) do mb.exit(pid, "kill") end
end

-- The first thing a connection process does: wait until the socket is its own.
function M.connection_entry(sock, handler_spec, opts, srv_id)
  mb.receive(function(x) return type(x) == "table" and x[1] == "$http_sock" and x[2] == sock end, 5000)
  return M.connection(sock, handler_spec, opts, srv_id)
end

function M._listener(parent, handler_spec, opts)
  local lopts = {address = opts.address, backlog = opts.backlog,
    reuseaddr = true, active = false, nodelay = true, high_watermark = opts.high_watermark}
  local listener, err
  if opts.tls then
    for k, v in pairs(opts.tls) do lopts[k] = v end
    listener, err = require("moonbeam.tls").listen(opts.port, lopts)
  else
    listener, err = tcp.listen(opts.port, lopts)
  end
  if not listener then
    mb.send(parent, {"$http_started", nil, err})
    return
  end
  local _, port = tcp.sockname(listener)
  local n = opts.acceptors or mb.schedulers()
  local limit = math.max(1, math.ceil(opts.max_connections / n))
  local acceptors = {}
  for i = 1, n do
    local pid, ref = mb.spawn_opt({monitor = true, scheduler = ((i - 1) % mb.schedulers()) + 1},
      {"moonbeam.http.server", "_acceptor"}, listener, handler_spec, opts, tostring(mb.self()), limit)
    acceptors[ref] = pid
  end
  mb.send(parent, {"$http_started", port})
  local m = mb.receive(function(x) return type(x) == "table" and x[1] == "$http_stop" end)
  -- stop accepting, then let the acceptors drain their connections
  for _, pid in pairs(acceptors) do mb.send(pid, "$http_stop") end
  tcp.close(listener)
  local left = 0
  for _ in pairs(acceptors) do left = left + 1 end
  while left > 0 do
    local d = mb.receive(function(x) return type(x) == "table" and x[1] == "DOWN" and acceptors[x[2]] end,
      (opts.drain_timeout or 5000) + 2000)
    if not d then break end
    left = left - 1
  end
  if m[2] then mb.send(m[2], {"$http_stopped", m[3]}) end
end

local function start(linked, handler, opts)
  opts = with_defaults(opts)
  local me = mb.self()
  local pid = mb.spawn_opt({link = linked}, {"moonbeam.http.server", "_listener"}, me, handler, opts)
  local m = mb.receive(function(x) return type(x) == "table" and x[1] == "$http_started" end, 10000)
  if not m then return nil, "timeout" end
  if not m[2] then return nil, m[3] end
  return {pid = pid, port = m[2]}
end

--- Starts a server; returns {pid = listener process, port = bound port}, or nil
--- and a reason ("eaddrinuse"...).
function M.start(handler, opts) return start(false, handler, opts) end

--- Same, linked to the caller (for supervisors).
function M.start_link(handler, opts) return start(true, handler, opts) end

--- A child spec for a supervisor: the listener is the child (its pid is what
--- the supervisor sees); opts.id names it (default "http").
function M.child_spec(handler, opts)
  return {id = opts and opts.id or "http", start = {"moonbeam.http.server", "_start_child", {handler, opts}}}
end

function M._start_child(handler, opts)
  local srv, err = start(true, handler, opts)
  if not srv then return nil, err end
  if opts and opts.on_start then
    mb.send(mb.whereis(opts.on_start) or opts.on_start, {"http_started", srv.port})
  end
  return "ok", srv.pid
end

--- Graceful stop: stop accepting, let requests in flight finish (idle
--- connections close at once), close what is left after opts.drain_timeout.
function M.stop(srv)
  local ref = mb.make_ref()
  mb.send(srv.pid, {"$http_stop", mb.self(), ref})
  mb.receive(function(x) return type(x) == "table" and x[1] == "$http_stopped" and x[2] == ref end, 30000)
  return true
end

return M
