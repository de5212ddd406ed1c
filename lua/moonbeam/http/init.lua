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

--- Sends a request (see moonbeam.http.client).
function M.request(method, url, opts) return M.client.request(method, url, opts) end

--- Starts a server (see moonbeam.http.server).
function M.start(handler, opts) return M.server.start(handler, opts) end
function M.start_link(handler, opts) return M.server.start_link(handler, opts) end
function M.stop(srv) return M.server.stop(srv) end

return M
