--- moonbeam.http.router: method and path matching, as Plug.Router.
---
---   local r = router.new()
---   r:get("/users/:id", function(conn) ... conn.params.id ... end)
---   r:post("/files/*path", handler)       -- glob: the rest of the path
---   r:forward("/api", other_router)      -- a sub-router sees the rest
---   handler = r:plug()                   -- or r(conn)
---
--- A path that matches no route gets 404; one that matches with another method
--- gets 405 and an Allow header. HEAD requests use GET routes. Routes are tried
--- in the order they were added. A route's handler is any plug form; a list of
--- plugs may run first: r:get(path, {plug1, plug2}, handler).
local plug = require "moonbeam.http.plug"

local Router = {}
Router.__index = Router

local M = {}

function M.new(opts)
  return setmetatable({routes = {}, opts = opts or {}}, Router)
end

local function compile(path)
  local segs = {}
  for seg in path:gmatch("[^/]+") do
    local kind, name = seg:sub(1, 1), seg:sub(2)
    if kind == ":" then
      segs[#segs + 1] = {param = name}
    elseif kind == "*" then
      segs[#segs + 1] = {glob = name ~= "" and name or "glob"}
    else
      segs[#segs + 1] = {lit = seg}
    end
  end
  for i, s in ipairs(segs) do
    if s.glob and i ~= #segs then error("a glob must end the path: " .. path, 4) end
  end
  return segs
end

-- Matches compiled segs against path_info from index `from`; returns params or nil.
local function match(segs, info, from, prefix)
  local params = {}
  local i = from
  for _, s in ipairs(segs) do
    if s.glob then
      local rest = {}
      for j = i, #info do rest[#rest + 1] = info[j] end
      params[s.glob] = rest
      return params, #info + 1
    end
    local v = info[i]
    if v == nil then return nil end
    if s.lit then
      if s.lit ~= v then return nil end
    else
      params[s.param] = v
    end
    i = i + 1
  end
  if not prefix and i <= #info then return nil end
  return params, i
end

function Router:match(method, path, ...)
  local n = select("#", ...)
  local handler
  if n == 1 then
    handler = plug.resolve((...))
  else
    local pre, h = ...
    local list = {}
    for _, p in ipairs(pre) do list[#list + 1] = p end
    list[#list + 1] = h
    handler = plug.pipeline(list)
  end
  local methods = nil
  if method ~= "*" then
    methods = {}
    for m in method:gmatch("[^,%s]+") do methods[m:upper()] = true end
  end
  self.routes[#self.routes + 1] = {methods = methods, segs = compile(path), handler = handler,
    path = path}
  return self
end

for _, m in ipairs({"get", "post", "put", "patch", "delete", "options", "head"}) do
  Router[m] = function(self, path, ...) return self:match(m:upper(), path, ...) end
end

--- Any method.
function Router:any(path, ...) return self:match("*", path, ...) end

--- Hands every request under `prefix` to `target` (a router or plug) with
--- conn.path_info shortened to what follows the prefix.
function Router:forward(prefix, target)
  local handler = getmetatable(target) == Router and function(c) return target:call(c) end
    or plug.resolve(target)
  self.routes[#self.routes + 1] = {segs = compile(prefix), handler = handler, forward = true,
    path = prefix}
  return self
end

--- Runs `fn(conn)` when no route matches the path (default: 404 text).
function Router:not_found(fn)
  self.on_not_found = plug.resolve(fn)
  return self
end

local function allowed(route, method)
  if not route.methods then return true end
  return route.methods[method] or (method == "HEAD" and route.methods.GET)
end

function Router:call(conn)
  local info = conn.path_info
  local from = conn.private.router_base or 1
  local allow = {}
  for _, route in ipairs(self.routes) do
    local params, nxt = match(route.segs, info, from, route.forward)
    if params then
      if route.forward then
        for k, v in pairs(params) do conn.path_params[k] = v conn.params[k] = v end
        local saved = conn.private.router_base
        conn.private.router_base = nxt
        local r = route.handler(conn)
        conn.private.router_base = saved
        return r or conn
      elseif allowed(route, conn.method) then
        for k, v in pairs(params) do conn.path_params[k] = v conn.params[k] = v end
        conn.private.route = route.path
        return route.handler(conn) or conn
      else
        for m in pairs(route.methods) do allow[m] = true end
      end
    end
  end
  if next(allow) then
    if allow.GET then allow.HEAD = true end
    local list = {}
    for m in pairs(allow) do list[#list + 1] = m end
    table.sort(list)
    conn:put_resp_header("allow", table.concat(list, ", "))
    conn:put_resp_content_type("text/plain")
    return conn:send_resp(405, "Method Not Allowed\n")
  end
  if self.on_not_found then return self.on_not_found(conn) or conn end
  conn:put_resp_content_type("text/plain")
  return conn:send_resp(404, "Not Found\n")
end

Router.__call = function(self, conn) return self:call(conn) end

--- The router as a plug function.
function Router:plug()
  return function(conn) return self:call(conn) end
end

return M
