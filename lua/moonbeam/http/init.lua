--- moonbeam.http: HTTP/1.1 and WebSocket. See docs/http.md.
---
--- The pieces load on first use: http.router, http.plug, http.conn,
--- http.cookie, http.session, http.csrf, http.multipart, http.json, http.util,
--- http.status, http.test, http.static.
local M = {}

local parts = {router = true, plug = true, conn = true, cookie = true, session = true,
  csrf = true, multipart = true, json = true, util = true, status = true, test = true,
  static = true, server = true, client = true}

setmetatable(M, {__index = function(t, k)
  if parts[k] then
    local m = require("moonbeam.http." .. k)
    rawset(t, k, m)
    return m
  end
end})

return M
