--- moonbeam.dns: name lookups that never block a scheduler (getaddrinfo in
--- libuv's thread pool; the calling process waits, nothing else does).
--- See docs/io.md.
local core = require "moonbeam.core"

local dns = {}

--- The addresses of `host` as text ("127.0.0.1", "::1"), in the resolver's
--- order, without duplicates. `family`: 4 or 6 for one family only.
---@param host string
---@param family? 4|6
---@return string[]|nil addresses
---@return string? reason "nxdomain", ...
function dns.resolve(host, family) return core.dns_resolve(host, family) end

return dns
