--- moonbeam.tls: TLS over TCP ports (OpenSSL), with moonbeam.tcp's API and
--- messages tagged "ssl": `{"ssl", sock, data}`, `{"ssl_closed", sock}`,
--- `{"ssl_error", sock, reason}`, `{"ssl_passive", sock}`. See docs/io.md.
---
--- Clients verify the server's certificate chain (the system's CAs, or
--- `cafile`) and its host name by default; `verify = false` turns both off.
--- `server_name` (default: the host connected to) is sent as SNI and checked.
--- `alpn = {"h2", "http/1.1"}` offers protocols; `tls.info(sock).alpn` says
--- which one was chosen. accept and connect return once the handshake is over.
local core = require "moonbeam.core"
local tcp = require "moonbeam.tcp"

local tls = {}

local TLS_KEYS = {certfile = true, keyfile = true, cafile = true, alpn = true, verify = true,
                  verify_peer = true, server_name = true, context = true}

-- Splits options into TLS ones and socket ones.
local function split(opts)
  local t, s = {}, {}
  for k, v in pairs(opts or {}) do
    if TLS_KEYS[k] then t[k] = v else s[k] = v end
  end
  return t, s
end

-- Client contexts are cached by their options (loading CAs costs milliseconds).
local cache = setmetatable({}, {__mode = "v"})
local function key(t)
  local parts = {}
  for _, k in ipairs{"certfile", "keyfile", "cafile", "verify", "verify_peer"} do
    parts[#parts + 1] = tostring(t[k])
  end
  parts[#parts + 1] = table.concat(t.alpn or {}, ",")
  return table.concat(parts, "|")
end

--- A context for many connections: opts as for connect (server: certfile and
--- keyfile required; verify_peer asks clients for certificates).
---@return userdata|nil context
---@return string? reason
function tls.context(opts, server) return core.tls_context(opts or {}, server) end

local function client_context(t)
  if t.context then return t.context end
  local k = key(t)
  local c = cache[k]
  if c then return c end
  local err
  c, err = core.tls_context(t, false)
  if not c then return nil, err end
  cache[k] = c
  return c
end

--- Listens like tcp.listen; accepted sockets speak TLS. Needs certfile and keyfile.
function tls.listen(port, opts)
  local t, s = split(opts)
  local ctx, err = t.context, nil
  if not ctx then ctx, err = core.tls_context(t, true) end
  if not ctx then return nil, err end
  return core.tcp_listen(port, s, ctx)
end

--- Waits for a connection and its handshake (a failed handshake: nil, reason).
function tls.accept(listener, timeout) return core.tcp_accept(listener, timeout) end

--- Connects and completes the handshake within `timeout` ms (each of the two).
---@return moonbeam.port|nil sock
---@return string? reason e.g. "tls: certificate verify failed (self-signed certificate)"
function tls.connect(host, port, opts, timeout)
  local t, s = split(opts)
  local ctx, err = client_context(t)
  if not ctx then return nil, err end
  return core.tcp_connect(host, port, s, timeout, ctx, t.server_name)
end

--- The negotiated ALPN protocol (or nil), the server name a client asked
--- for (SNI; on the server side) and the protocol version.
---@return {alpn: string?, server_name: string?, version: string}|nil
function tls.info(sock) return core.tls_info(sock) end

tls.send, tls.recv, tls.setopts, tls.getopts = tcp.send, tcp.recv, tcp.setopts, tcp.getopts
tls.shutdown, tls.close, tls.peername, tls.sockname = tcp.shutdown, tcp.close, tcp.peername, tcp.sockname
tls.owner, tls.controlling_process, tls.is_port = tcp.owner, tcp.controlling_process, tcp.is_port

return tls
