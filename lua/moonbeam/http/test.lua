--- moonbeam.http.test: run handlers without a socket, as Plug.Test.
---
---   local t = require "moonbeam.http.test"
---   local conn = t.call(handler, "POST", "/users?x=1", {headers = {...}, body = "..."})
---   conn.sent.status, conn.sent.headers["content-type"], conn.sent.body
---
--- The adapter records what the conn sends: sent.status, sent.headers (map;
--- set-cookie values in sent.cookies, by name), sent.body (chunks joined),
--- sent.chunks, sent.file, sent.upgrade.
local conn_mod = require "moonbeam.http.conn"
local plug = require "moonbeam.http.plug"

local M = {}

local function record(conn, status, headers)
  local s = conn.sent
  s.status = status
  s.headers, s.cookies = {}, {}
  for _, h in ipairs(headers) do
    if h[1] == "set-cookie" then
      local name = h[2]:match("^([^=]+)=")
      s.cookies[name] = h[2]
    else
      s.headers[h[1]] = h[2]
    end
  end
end

local adapter = {
  read_body = function(conn, max)
    local body = conn.private.test_body or ""
    if max and #body > max then return nil, "too_large" end
    return body
  end,
  send_resp = function(conn, status, headers, body)
    record(conn, status, headers)
    conn.sent.body = conn.method == "HEAD" and "" or body
    return true
  end,
  send_chunked = function(conn, status, headers)
    record(conn, status, headers)
    conn.sent.chunks = {}
    conn.sent.body = ""
    return true
  end,
  chunk = function(conn, data)
    table.insert(conn.sent.chunks, data)
    conn.sent.body = conn.sent.body .. data
    return true
  end,
  send_file = function(conn, status, headers, path, offset, length)
    record(conn, status, headers)
    local f = assert(io.open(path, "rb"))
    f:seek("set", offset)
    conn.sent.body = conn.method == "HEAD" and "" or f:read(length or "a") or ""
    f:close()
    conn.sent.file = path
    return conn
  end,
  upgrade = function() return true end,
}

--- A conn for `method` `target` (path with query); opts: headers (any case),
--- body, peer, cookies (a table sent as the Cookie header).
function M.conn(method, target, opts)
  opts = opts or {}
  local headers = {}
  for k, v in pairs(opts.headers or {}) do headers[k:lower()] = v end
  if opts.body and not headers["content-length"] then headers["content-length"] = tostring(#opts.body) end
  if opts.cookies then
    local parts = {}
    for k, v in pairs(opts.cookies) do parts[#parts + 1] = k .. "=" .. v end
    table.sort(parts)
    headers.cookie = table.concat(parts, "; ")
  end
  headers.host = headers.host or "www.example.com"
  local c = conn_mod.new({method = method, url = target, headers = headers, version = "1.1"},
    adapter, {peer = opts.peer or {address = "127.0.0.1", port = 1}})
  c.private.test_body = opts.body
  c.sent = {}
  return c
end

--- Calls handler (any plug form) on a test conn; returns the conn.
function M.call(handler, method, target, opts)
  local c = M.conn(method, target, opts)
  local r = plug.resolve(handler)(c)
  if type(r) == "table" and r.sent then c = r end
  if c.state == "set" then c:send() end
  return c
end

--- The value of response cookie `name` as the next request sends it.
function M.cookie_value(conn, name)
  local sc = conn.sent.cookies and conn.sent.cookies[name]
  return sc and sc:match("^[^=]+=([^;]*)")
end

return M
