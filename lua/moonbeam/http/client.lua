--- moonbeam.http.client: HTTP/1.1 requests, as Finch/Mint.
---
---   local res, err = http.request("GET", "http://127.0.0.1:8080/users/1", opts)
---   res.status, res.headers (lower-case names), res.body
---
--- opts: headers (table), body (string) or json (a value sent as JSON),
--- timeout (15000 ms for the whole exchange), connect_timeout (5000),
--- redirects (how many 301/302/303/307/308 to follow, default 0),
--- stream (fn(piece) gets the body as it arrives; res.body is then nil),
--- pool (false: a fresh connection closed after the response), tls (for
--- https: options of moonbeam.tls.connect, e.g. cafile, verify = false).
---
--- Keep-alive: connections stay open per host and port for the next request of
--- the same process (a socket belongs to its process), at most
--- MAX_IDLE_PER_HOST of them; a pooled connection that the server closed in
--- the meantime is replaced and the request sent again once, when nothing of
--- the response had arrived. https:// goes through moonbeam.tls (the server's
--- certificate and host name are verified unless tls.verify is false).
local core = require "moonbeam.core"
local mb = require "moonbeam"
local tcp = require "moonbeam.tcp"
local json = require "moonbeam.http.json"

local M = {MAX_IDLE_PER_HOST = 8}

local pools = setmetatable({}, {__mode = "k"})   -- pid -> {["host:port"] = {socks}}

local function pool_of()
  local me = mb.self()
  local p = pools[me]
  if not p then p = {} pools[me] = p end
  return p
end

--- Splits an http(s) URL into host, port, target (path and query), is_https.
function M.parse_url(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "not an absolute URL" end
  scheme = scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then return nil, "unsupported scheme " .. scheme end
  local authority, target = rest:match("^([^/?#]*)(.*)$")
  local host, port = authority:match("^%[(.+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]*):?(%d*)$") end
  if not host or host == "" then return nil, "no host" end
  if target == "" then target = "/" end
  target = target:gsub("#.*$", "")
  return host, tonumber(port) or (scheme == "https" and 443 or 80), target, scheme == "https"
end

local function checkout(key, host, port, timeout, use_pool, secure, tls_opts)
  if use_pool then
    local idle = pool_of()[key]
    if idle and #idle > 0 then return table.remove(idle), true end
  end
  local sock, err
  if secure then
    local o = {active = false, nodelay = true}
    for k, v in pairs(tls_opts or {}) do o[k] = v end
    sock, err = require("moonbeam.tls").connect(host, port, o, timeout)
  else
    sock, err = tcp.connect(host, port, {active = false, nodelay = true}, timeout)
  end
  if not sock then return nil, err end
  return sock, false
end

local function checkin(key, sock)
  local p = pool_of()
  local idle = p[key]
  if not idle then idle = {} p[key] = idle end
  if #idle >= M.MAX_IDLE_PER_HOST then tcp.close(sock) return end
  idle[#idle + 1] = sock
end

--- Closes this process's idle connections.
function M.close_idle()
  local p = pools[mb.self()]
  if not p then return end
  for _, socks in pairs(p) do for _, s in ipairs(socks) do tcp.close(s) end end
  pools[mb.self()] = nil
end

local function build_request(method, host, port, target, headers, body)
  local lines = {method, " ", target, " HTTP/1.1\r\n"}
  local have = {}
  for k, v in pairs(headers) do
    have[k:lower()] = true
    lines[#lines + 1] = k .. ": " .. tostring(v) .. "\r\n"
  end
  if not have.host then lines[#lines + 1] = "host: " .. host .. (port ~= 80 and ":" .. port or "") .. "\r\n" end
  if not have["user-agent"] then lines[#lines + 1] = "user-agent: moonbeam\r\n" end
  if body and not have["content-length"] and not have["transfer-encoding"] then
    lines[#lines + 1] = "content-length: " .. #body .. "\r\n"
  end
  lines[#lines + 1] = "\r\n"
  if body then lines[#lines + 1] = body end
  return table.concat(lines)
end

-- One exchange on one connection. Returns res, or nil, err, retryable.
local function exchange(sock, method, bytes, deadline, stream)
  local ok, err = tcp.send(sock, bytes)
  if not ok then return nil, err, true end
  local p = core.http.parser("response")
  if method == "HEAD" then p:no_body(true) end
  local res, parts, done, got_any = nil, {}, false, false
  while not done do
    local left = math.floor((deadline - mb.clock()) * 1000)
    if left <= 0 then return nil, "timeout" end
    local data, rerr = tcp.recv(sock, 0, left)
    local ev
    if not data then
      if rerr == "timeout" then return nil, "timeout" end
      if not got_any then return nil, rerr, true end
      ev = p:eof()
      if not ev.error and not res then return nil, "closed" end
      done = true
    else
      got_any = true
      ev = p:feed(data)
    end
    if ev.error then return nil, "bad response (" .. tostring(ev.reason) .. ")" end
    for _, e in ipairs(ev) do
      if type(e) == "table" then
        if e.status >= 100 and e.status < 200 and e.status ~= 101 then
          -- an interim response (100 Continue): the real one follows
          res = nil
        else
          res = {status = e.status, headers = e.headers, keep_alive = e.keep_alive, version = e.version}
        end
      elseif type(e) == "string" then
        if stream then stream(e) else parts[#parts + 1] = e end
      elseif res then
        done = true
      end
    end
  end
  if not stream then res.body = table.concat(parts) end
  return res
end

local redirect_codes = {[301] = true, [302] = true, [303] = true, [307] = true, [308] = true}

--- Sends a request; returns the response table or nil and a reason
--- ("timeout", "econnrefused", "closed", "bad response", ...).
function M.request(method, url, opts)
  opts = opts or {}
  method = method:upper()
  local headers = {}
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  local body = opts.body
  if opts.json ~= nil then
    local err
    body, err = json.encode(opts.json)
    if not body then return nil, "json: " .. err end
    headers["content-type"] = headers["content-type"] or "application/json"
  end
  local redirects = opts.redirects or 0
  local deadline = mb.clock() + (opts.timeout or 15000) / 1000
  local use_pool = opts.pool ~= false
  while true do
    local host, port, target, secure = M.parse_url(url)
    if not host then return nil, port end
    local key = (secure and "https://" or "http://") .. host .. ":" .. port
    if not use_pool then headers.connection = "close" end
    local bytes = build_request(method, host, port, target, headers, body)
    local res, err
    for attempt = 1, 2 do
      local sock, pooled = checkout(key, host, port, opts.connect_timeout or 5000, use_pool and attempt == 1,
        secure, opts.tls)
      if not sock then return nil, pooled end
      local retry
      res, err, retry = exchange(sock, method, bytes, deadline, opts.stream)
      if res then
        if use_pool and res.keep_alive then checkin(key, sock) else tcp.close(sock) end
        break
      end
      tcp.close(sock)
      if not (pooled and retry) then return nil, err end
    end
    if not res then return nil, err end
    local loc = res.headers.location
    if redirects > 0 and redirect_codes[res.status] and loc then
      redirects = redirects - 1
      if loc:sub(1, 1) == "/" then
        local h, p, _, sec = M.parse_url(url)
        loc = (sec and "https://" or "http://") .. h .. ":" .. p .. loc
      end
      url = loc
      if res.status == 303 or ((res.status == 301 or res.status == 302) and method == "POST") then
        method, body = "GET", nil
        headers["content-type"], headers["content-length"] = nil, nil
      end
    else
      res.keep_alive = nil
      return res
    end
  end
end

for _, m in ipairs({"get", "head", "delete", "options"}) do
  M[m] = function(url, opts) return M.request(m:upper(), url, opts) end
end
for _, m in ipairs({"post", "put", "patch"}) do
  M[m] = function(url, body, opts)
    opts = opts or {}
    opts.body = body
    return M.request(m:upper(), url, opts)
  end
end

return M
