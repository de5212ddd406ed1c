--- moonbeam.udp: UDP sockets as ports, with gen_udp's model. See docs/io.md.
---
--- Datagrams come to the owner as `{"udp", sock, ip, port, data}` within the
--- socket's `active` allowance (true by default; "once", n, false as in
--- moonbeam.tcp, with `{"udp_passive", sock}` when n is spent); in passive
--- mode `udp.recv` takes them one at a time. Closed when its owner exits.
local core = require "moonbeam.core"
local dns = require "moonbeam.dns"
local tcp = require "moonbeam.tcp"

local udp = {}

--- Opens a socket bound to `port` (0 or nil: any). Options: address, ipv6,
--- ipv6_v6only, reuseaddr, active, buffer (largest datagram read), broadcast,
--- multicast_ttl, multicast_loop.
---@return moonbeam.port|nil sock
---@return string? reason
function udp.open(port, opts) return core.udp_open(port or 0, opts) end

--- Sends one datagram to ip:port (a host name is resolved first).
---@return true|nil ok
---@return string? reason
function udp.send(sock, host, port, data)
  local ok, err = core.udp_send(sock, host, port, data)
  if ok or err ~= "einval" then return ok, err end
  local addrs, derr = dns.resolve(host)
  if not addrs then return nil, derr end
  return core.udp_send(sock, addrs[1], port, data)
end

--- Passive mode: the next datagram within `timeout` ms (nil: forever).
---@return string|nil ip
---@return integer|string port_or_reason
---@return string? data
function udp.recv(sock, timeout) return core.udp_recv(sock, timeout) end

function udp.setopts(sock, opts) return core.udp_setopts(sock, opts) end

function udp.getopts(sock, names)
  local all, err = core.udp_getopts(sock)
  if not all or not names then return all, err end
  local some = {}
  for _, n in ipairs(names) do some[n] = all[n] end
  return some
end

--- The local address and port.
function udp.sockname(sock) return core.udp_sockname(sock) end

--- Joins / leaves a multicast group (on `interface`, an address; nil: default).
function udp.add_membership(sock, group, interface) return core.udp_membership(sock, group, interface, true) end
function udp.drop_membership(sock, group, interface) return core.udp_membership(sock, group, interface, false) end

function udp.close(sock) return core.port_close(sock) end
function udp.owner(sock) return core.port_owner(sock) end

--- Hands the socket to `pid` (only its owner may), moving its queued messages.
function udp.controlling_process(sock, pid)
  local mb = require "moonbeam"
  local owner = core.port_owner(sock)
  if not owner then return nil, "closed" end
  if owner ~= mb.self() then return nil, "not_owner" end
  local opts = core.udp_getopts(sock)
  local active = opts and opts.active
  if active ~= false then core.udp_setopts(sock, {active = false}) end
  local moved = {}
  while true do
    local m = mb.receive(function(m)
      return type(m) == "table" and m[2] == sock and (m[1] == "udp" or m[1] == "udp_passive")
    end, 0)
    if not m then break end
    moved[#moved + 1] = m
  end
  local ok, err = core.port_set_owner(sock, pid)
  local to = ok and pid or mb.self()
  for _, m in ipairs(moved) do mb.send(to, m) end
  if active ~= false then core.udp_setopts(sock, {active = active}) end
  if not ok then return nil, err end
  return true
end

udp.is_port = tcp.is_port

return udp
