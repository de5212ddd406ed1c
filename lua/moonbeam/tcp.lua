--- moonbeam.tcp: TCP sockets as ports, with gen_tcp's model. See docs/io.md.
---
--- A socket is owned by the process that opened (or accepted) it; its data and
--- events come to that process as messages `{"tcp", sock, data}`,
--- `{"tcp_closed", sock}`, `{"tcp_error", sock, reason}` and
--- `{"tcp_passive", sock}`, as far as its `active` allowance goes. It closes
--- when its owner exits. Functions that can fail return nil, reason.
local core = require "moonbeam.core"
local mb = require "moonbeam"

local tcp = {}

-- The messages a socket sends its owner (TCP and TLS), moved by controlling_process.
local TAGS = {tcp = true, tcp_closed = true, tcp_error = true, tcp_passive = true,
              ssl = true, ssl_closed = true, ssl_error = true, ssl_passive = true}

---@alias moonbeam.port userdata A port (`#Port<0.12>`); equal ports are the same value.

--- Listens on `port` (0: any free port; `tcp.sockname` tells which).
--- Options: address ("any", "localhost", a literal IPv4 or IPv6 address), ipv6
--- (true: an IPv6 socket), ipv6_v6only, backlog (128), reuseaddr, reuseport,
--- and the socket options accepted sockets inherit (active, packet, buffer,
--- nodelay, keepalive, high_watermark, low_watermark, packet_size).
---@param port integer
---@param opts? table
---@return moonbeam.port|nil listener
---@return string? reason e.g. "eaddrinuse"
function tcp.listen(port, opts) return core.tcp_listen(port, opts) end

--- Waits up to `timeout` ms (nil: forever) for a connection on `listener`; the
--- socket belongs to the caller. Several processes may wait on one listener:
--- connections go to them in the order they asked.
---@return moonbeam.port|nil sock
---@return string? reason "timeout", "closed"
function tcp.accept(listener, timeout) return core.tcp_accept(listener, timeout) end

--- Connects to host:port (a name is resolved without blocking) within
--- `timeout` ms (nil: no limit). Options: as for sockets, plus ipv4/ipv6 to
--- choose the family of a name's addresses.
---@return moonbeam.port|nil sock
---@return string? reason "econnrefused", "timeout", "enotfound"...
function tcp.connect(host, port, opts, timeout) return core.tcp_connect(host, port, opts, timeout) end

--- Sends `data` (with its length header in packet 1/2/4 mode). Waits while
--- the socket's send queue is past its high-water mark.
---@return true|nil ok
---@return string? reason
function tcp.send(sock, data) return core.tcp_send(sock, data) end

--- Sends `head` (bytes, may be "") and then `length` bytes of the file at
--- `path` from `offset` with sendfile(2): the file's bytes go from the page
--- cache to the socket without passing through Lua or a user-space buffer.
--- Returns when the last byte is with the kernel. Raw plain-TCP sockets only:
--- "enotsup" for TLS (nothing sent). Before anything is sent: "enoent",
--- "eisdir", "changed" (the file is shorter than offset + length). "truncated":
--- the file shrank while it was sent; the peer got fewer bytes than announced.
---@return true|nil ok
---@return string? reason
function tcp.sendfile(sock, head, path, offset, length)
  return core.tcp_sendfile(sock, head or "", path, offset or 0, length)
end

--- Passive mode (active = false) only: the next `length` bytes (0: what is
--- there, or the next packet in packet mode) within `timeout` ms (nil: forever).
---@return string|nil data
---@return string? reason "timeout", "closed", "econnreset"...
function tcp.recv(sock, length, timeout) return core.tcp_recv(sock, length or 0, timeout) end

--- Sets socket options: active = false | "once" | n | true (n adds to the
--- allowance; at 0 the owner gets {"tcp_passive", sock}), packet = "raw" | 1 |
--- 2 | 4 | "line", nodelay, keepalive, buffer, high_watermark, low_watermark,
--- packet_size.
function tcp.setopts(sock, opts) return core.tcp_setopts(sock, opts) end

--- The socket's options as a table, or only those named in `names`.
---@param names? string[]
function tcp.getopts(sock, names)
  local all, err = core.tcp_getopts(sock)
  if not all then return nil, err end
  if not names then return all end
  local some = {}
  for _, n in ipairs(names) do some[n] = all[n] end
  return some
end

--- Shuts down "write" (default), "read" or "read_write".
function tcp.shutdown(sock, how) return core.tcp_shutdown(sock, how or "write") end

--- Closes a socket or listener; what was queued to send is still flushed.
function tcp.close(sock) return core.port_close(sock) end

--- The address and port of the other end.
---@return string|nil ip
---@return integer|string port_or_reason
function tcp.peername(sock) return core.tcp_peername(sock) end

--- The local address and port.
function tcp.sockname(sock) return core.tcp_sockname(sock) end

--- The owning process.
function tcp.owner(sock) return core.port_owner(sock) end

--- Send queue and input buffer sizes (for tests and observability).
function tcp.stats(sock) return core.tcp_stats(sock) end

--- Makes `pid` the socket's owner (only the owner may). Messages of the socket
--- already in the caller's mailbox move to `pid`, in order, as gen_tcp does.
---@return true|nil ok
---@return string? reason "not_owner", "closed", "noproc"
function tcp.controlling_process(sock, pid)
  local owner = core.port_owner(sock)
  if not owner then return nil, "closed" end
  if owner ~= mb.self() then return nil, "not_owner" end
  if pid == owner then return true end
  local info = core.port_info(sock)
  if info and info.type ~= "tcp" then return core.port_set_owner(sock, pid) end -- a listener
  local opts = core.tcp_getopts(sock)
  local active = opts and opts.active
  if opts and active ~= false then core.tcp_setopts(sock, {active = false}) end
  -- every message the socket sent before it went passive is queued by now
  local function mine(m)
    return type(m) == "table" and m[2] == sock and
      (TAGS[m[1]] == true)
  end
  local moved = {}
  while true do
    local m = mb.receive(mine, 0)
    if not m then break end
    moved[#moved + 1] = m
  end
  local ok, err = core.port_set_owner(sock, pid)
  if not ok then
    for _, m in ipairs(moved) do mb.send(mb.self(), m) end
    return nil, err
  end
  for _, m in ipairs(moved) do mb.send(pid, m) end
  if opts and active ~= false then
    -- the allowance left goes with the socket (n counts from zero again)
    core.tcp_setopts(sock, {active = active})
  end
  return true
end

--- True if `v` is a port.
function tcp.is_port(v) return core.is_port(v) end

return tcp
