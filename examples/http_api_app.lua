-- The modules of examples/http_api.lua: a GenServer store and the router.
-- (Named by module so the server builds the router in whichever VM runs a
-- connection, and the supervisor can restart the store anywhere.)
local gen_server = require "moonbeam.gen_server"
local router = require "moonbeam.http.router"
local plug = require "moonbeam.http.plug"

local M = {}

-- ------------------------------------------------------------ the store

local Store = {}

function Store.init() return "ok", {} end

function Store.handle_call(req, _, items)
  local op, key, value = req[1], req[2], req[3]
  if op == "get" then return "reply", items[key], items end
  if op == "all" then return "reply", items, items end
  if op == "put" then
    local existed = items[key] ~= nil
    items[key] = value
    return "reply", existed, items
  end
  if op == "delete" then
    local existed = items[key] ~= nil
    items[key] = nil
    return "reply", existed, items
  end
end

function M.start_store()
  return gen_server.start_link(Store, nil, {name = "http_api_store"})
end

local function store(...) return gen_server.call("http_api_store", {...}) end

-- ------------------------------------------------------------ the API

local r = router.new()
local json_body = {plug.parsers()}

r:get("/items", function(conn) return conn:json(200, store("all")) end)

r:get("/items/:key", function(conn)
  local v = store("get", conn.params.key)
  if v == nil then return conn:json(404, {error = "not found"}) end
  return conn:json(200, {key = conn.params.key, value = v})
end)

r:put("/items/:key", json_body, function(conn)
  local value = conn.params.value
  if value == nil then return conn:json(422, {error = "value missing"}) end
  local existed = store("put", conn.params.key, value)
  return conn:json(existed and 200 or 201, {key = conn.params.key, value = value})
end)

r:delete("/items/:key", function(conn)
  if not store("delete", conn.params.key) then return conn:json(404, {error = "not found"}) end
  return conn:send_resp(204, "")
end)

M.router = r

-- The module is the plug: the server calls it with each conn.
return setmetatable(M, {__call = function(_, conn) return r:call(conn) end})
