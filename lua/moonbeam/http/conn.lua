--- moonbeam.http.conn: the connection a handler gets, as Plug.Conn.
---
--- Request fields: method, path (decoded), path_info (its segments),
--- query_string, headers (lower-case names), peer ({address, port}), scheme,
--- version, host, port. Filled on demand: query_params (fetch_query_params),
--- body_params (parse_body), cookies (fetch_cookies), params (all of them with the
--- router's path parameters), assigns (assign). Response: status, resp_headers,
--- resp_body, state ("unset", "set", "sent", "chunked", "upgraded"), halted.
---
--- The server (or moonbeam.http.test) gives each conn an adapter with
--- read_body(conn, max), send_resp(conn, status, headers, body),
--- send_chunked(conn, status, headers), chunk(conn, data),
--- send_file(conn, status, headers, path, offset, length) and
--- upgrade(conn, kind, handler, state, opts); headers is the list
--- resp_header_list() gives, or nil when the adapter sets raw_headers (it then
--- reads conn.resp_headers and conn.resp_cookies).
local cookie = require "moonbeam.http.cookie"
local json = require "moonbeam.http.json"
local multipart = require "moonbeam.http.multipart"
local util = require "moonbeam.http.util"

local Conn = {}
Conn.__index = Conn

local M = {Conn = Conn}

-- before_send until a function is registered (never written: register copies)
local EMPTY = setmetatable({}, {__newindex = function() error("conn.before_send is read-only: use register_before_send", 2) end})

--- Makes a conn from a parsed head (method, url, headers, version) and an adapter.
function M.new(head, adapter, extra)
  local url = head.url or "/"
  local raw_path, qs
  if url:find("[?#]") then
    raw_path, qs = url:match("^([^?#]*)%??([^#]*)")
    if raw_path == "" then raw_path = "/" end
  else
    raw_path, qs = url == "" and "/" or url, ""
  end
  local path_info = {}
  local decode = raw_path:find("%", 1, true) and util.decode
  if raw_path ~= "/" then
    local n = 0
    for seg in raw_path:gmatch("[^/]+") do
      n = n + 1
      path_info[n] = decode and decode(seg) or seg
    end
  end
  local headers = head.headers or {}
  local host, port = headers.host or "", nil
  if host:find(":", 1, true) then
    host, port = host:match("^([^:]*):?(%d*)$")
    port = tonumber(port)
  end
  return setmetatable({
    method = head.method or "GET",
    url = url,
    request_path = raw_path,
    path = decode and decode(raw_path) or raw_path,
    path_info = path_info,
    query_string = qs,
    headers = headers,
    version = head.version or "1.1",
    host = host or "",
    port = port,
    scheme = extra and extra.scheme or "http",
    peer = extra and extra.peer,
    params = {},
    path_params = {},
    assigns = {},
    private = {},
    status = nil,
    resp_headers = {},
    resp_cookies = {},
    resp_body = nil,
    state = "unset",
    halted = false,
    adapter = adapter,
    before_send = EMPTY,
  }, Conn)
end

-- ---------------------------------------------------------------- request

--- The value of request header `name` (any case), or nil.
function Conn:get_req_header(name) return self.headers[name:lower()] end

--- Decodes the query string into self.query_params (merged into params).
function Conn:fetch_query_params()
  if not self.query_params then
    self.query_params = util.decode_query(self.query_string)
    for k, v in pairs(self.query_params) do
      if self.params[k] == nil then self.params[k] = v end
    end
  end
  return self
end

--- Reads the whole request body (at most opts.length bytes, the server's limit
--- otherwise); returns it, or nil and an error ("too_large", "timeout", "closed").
function Conn:read_body(opts)
  if self.body ~= nil then return self.body end
  if not self.adapter or not self.adapter.read_body then
    self.body = ""
    return ""
  end
  local body, err = self.adapter.read_body(self, opts and opts.length)
  if not body then return nil, err end
  self.body = body
  return body
end

--- Parses the body by its content type into self.body_params (merged into
--- params): urlencoded forms, multipart/form-data and JSON. A JSON value that is
--- not an object lands in body_params._json. Returns the conn, or nil, status
--- (400, 413, 415) and an error message.
function Conn:parse_body(opts)
  if self.body_params then return self end
  local ctype, cparams = util.parse_params(self.headers["content-type"])
  local has_body = self.headers["content-length"] or self.headers["transfer-encoding"]
  if not ctype or not has_body then
    self.body_params = {}
    return self
  end
  local accept = opts and opts.parsers
  local body, err = self:read_body(opts)
  if not body then return nil, err == "too_large" and 413 or 400, err end
  local bp
  if ctype == "application/x-www-form-urlencoded" and (not accept or accept.urlencoded) then
    bp = util.decode_query(body)
  elseif ctype == "multipart/form-data" and (not accept or accept.multipart) then
    local perr
    bp, perr = multipart.parse(body, cparams.boundary, opts)
    if not bp then return nil, 400, "multipart: " .. perr end
  elseif (ctype == "application/json" or ctype:match("^application/[%w%.%-]+%+json$"))
      and (not accept or accept.json) then
    local v, jerr = json.decode(body)
    if v == nil then return nil, 400, "json: " .. tostring(jerr) end
    if type(v) == "table" and (next(v) == nil or v[1] == nil) then bp = v else bp = {_json = v} end
  elseif opts and opts.pass then
    bp = {}
  else
    return nil, 415, "unsupported content type " .. ctype
  end
  self.body_params = bp
  for k, v in pairs(bp) do self.params[k] = v end
  return self
end

--- Parses the Cookie header into self.cookies (request cookies).
function Conn:fetch_cookies()
  if not self.cookies then self.cookies = cookie.parse(self.headers.cookie) end
  return self
end

--- Stores a value for later plugs and the handler.
function Conn:assign(key, value)
  self.assigns[key] = value
  return self
end

-- ---------------------------------------------------------------- response

local function check_unsent(c)
  if c.state == "sent" or c.state == "chunked" or c.state == "upgraded" then
    error("the response was already sent", 3)
  end
end

--- Sets response header `name` (lower-cased) to `value`.
function Conn:put_resp_header(name, value)
  check_unsent(self)
  self.resp_headers[name:lower()] = tostring(value)
  return self
end

function Conn:delete_resp_header(name)
  check_unsent(self)
  self.resp_headers[name:lower()] = nil
  return self
end

function Conn:get_resp_header(name) return self.resp_headers[name:lower()] end

--- Sets Content-Type; text types get "; charset=utf-8" unless charset is false.
function Conn:put_resp_content_type(ctype, charset)
  if charset ~= false and (ctype:match("^text/") or ctype == "application/json"
      or ctype == "application/javascript") and not ctype:find("charset") then
    ctype = ctype .. "; charset=" .. (charset or "utf-8")
  end
  return self:put_resp_header("content-type", ctype)
end

function Conn:put_status(status)
  check_unsent(self)
  self.status = status
  return self
end

--- Adds a Set-Cookie (see moonbeam.http.cookie.serialize for opts).
function Conn:put_resp_cookie(name, value, opts)
  check_unsent(self)
  self.resp_cookies[name] = cookie.serialize(name, value, opts)
  return self
end

--- Tells the client to drop cookie `name` (same path/domain opts as when set).
function Conn:delete_resp_cookie(name, opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.max_age, o.expires = 0, 0
  return self:put_resp_cookie(name, "", o)
end

--- Registers fn(conn) to run just before the response head is sent (last
--- registered runs first, as Plug).
function Conn:register_before_send(fn)
  check_unsent(self)
  if self.before_send == EMPTY then self.before_send = {} end
  table.insert(self.before_send, 1, fn)
  return self
end

local function run_before_send(c)
  local fns = c.before_send
  if fns[1] == nil then return end
  c.before_send = EMPTY
  for _, fn in ipairs(fns) do fn(c) end
end

--- The header list to send: resp_headers (sorted by name) plus one set-cookie
--- per cookie (sorted by cookie name).
function Conn:resp_header_list()
  local names = {}
  for k in pairs(self.resp_headers) do names[#names + 1] = k end
  table.sort(names)
  local list = {}
  for i, k in ipairs(names) do list[i] = {k, self.resp_headers[k]} end
  if next(self.resp_cookies) then
    names = {}
    for k in pairs(self.resp_cookies) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do list[#list + 1] = {"set-cookie", self.resp_cookies[k]} end
  end
  return list
end

-- The header list for the adapter; an adapter with raw_headers reads
-- conn.resp_headers and conn.resp_cookies itself (the server: no list to build).
local function header_list(c)
  if c.adapter.raw_headers then return nil end
  return c:resp_header_list()
end

--- Sets status and body without sending (send() sends them).
function Conn:resp(status, body)
  check_unsent(self)
  self.status = status
  self.resp_body = body or ""
  self.state = "set"
  return self
end

--- Sends the response set by resp().
function Conn:send()
  if self.state ~= "set" then error("no response set (call resp first)", 2) end
  run_before_send(self)
  local body = self.resp_body
  self.state = "sent"
  local ok, err = true, nil
  if self.adapter then ok, err = self.adapter.send_resp(self, self.status, header_list(self), body) end
  if not ok then self.send_error = err end
  return self
end

--- Sends status and body now.
function Conn:send_resp(status, body)
  self:resp(status, body)
  return self:send()
end

--- Sends `body` as text/plain.
function Conn:text(status, body)
  if not self.resp_headers["content-type"] then self:put_resp_content_type("text/plain") end
  return self:send_resp(status, body)
end

--- Sends `body` as text/html.
function Conn:html(status, body)
  if not self.resp_headers["content-type"] then self:put_resp_content_type("text/html") end
  return self:send_resp(status, body)
end

--- Sends `value` encoded as JSON.
function Conn:json(status, value)
  local body, err = json.encode(value)
  if not body then error("json: " .. err, 2) end
  self:put_resp_content_type("application/json")
  return self:send_resp(status, body)
end

--- Redirects to `to` (302 unless status is given).
function Conn:redirect(to, status)
  self:put_resp_header("location", to)
  return self:html(status or 302, "<html><body>You are being redirected.</body></html>")
end

--- Starts a chunked (streamed) response; send pieces with chunk().
function Conn:send_chunked(status)
  check_unsent(self)
  self.status = status
  run_before_send(self)
  self.state = "chunked"
  if self.adapter then
    local ok, err = self.adapter.send_chunked(self, status, header_list(self))
    if not ok then return nil, err end
  end
  return self
end

--- Sends one piece of a chunked response; returns the conn, or nil and an
--- error ("closed") when the client has gone.
function Conn:chunk(data)
  if self.state ~= "chunked" then error("chunk needs send_chunked first", 2) end
  if data == "" then return self end
  if self.adapter then
    local ok, err = self.adapter.chunk(self, data)
    if not ok then return nil, err end
  end
  return self
end

--- Sends a file (or its byte range) with sendfile where the transport has it.
function Conn:send_file(status, path, offset, length)
  check_unsent(self)
  self.status = status
  run_before_send(self)
  self.state = "sent"
  return self.adapter.send_file(self, status, header_list(self), path, offset or 0, length)
end

--- Stops the plug pipeline after this plug.
function Conn:halt()
  self.halted = true
  return self
end

--- Turns this connection into a WebSocket run by `handler` (a module table or
--- name with init, handle_in, handle_info, terminate) from `state`; opts:
--- max_frame, max_message, idle_timeout, send_hwm, check_origin. The
--- upgrade happens once the handler returns.
function Conn:upgrade_websocket(handler, state, opts)
  check_unsent(self)
  if not self.adapter or not self.adapter.upgrade then error("this connection cannot upgrade", 2) end
  self.upgrade = {kind = "websocket", handler = handler, state = state, opts = opts or {}}
  self.state = "upgraded"
  return self
end

return M
