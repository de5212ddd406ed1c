--- moonbeam.http.plug: composing handlers, as Plug.Builder.
---
--- A plug is a function `fn(conn)` or a module/table with `call(conn, opts)`
--- (and optionally `init(opts)`, run once when the pipeline is built), or the
--- pair `{module_or_name, opts}`. A plug may return a conn or nothing; the
--- pipeline stops once a plug halts the conn or sends a response.
local M = {}

local function resolve(p)
  if type(p) == "function" then return p end
  local mt = getmetatable(p)
  if type(p) == "table" and mt and mt.__call then return function(conn) return p(conn) end end
  local mod, opts = p, nil
  if type(p) == "table" and p.call == nil and p[1] ~= nil then mod, opts = p[1], p[2] end
  if type(mod) == "string" then mod = require(mod) end
  if type(mod) == "function" then
    return function(conn) return mod(conn, opts) end
  end
  if type(mod) ~= "table" or type(mod.call) ~= "function" then
    error("a plug is a function or a table with call(conn, opts)", 3)
  end
  local state = opts
  if mod.init then state = mod.init(opts) end
  return function(conn) return mod.call(conn, state) end
end

local function done(conn)
  return conn.halted or conn.state ~= "unset" and conn.state ~= "set"
end

--- Builds one plug from a list of plugs, run in order.
function M.pipeline(list)
  local fns = {}
  for i, p in ipairs(list) do fns[i] = resolve(p) end
  return function(conn)
    for _, fn in ipairs(fns) do
      local r = fn(conn)
      if type(r) == "table" and getmetatable(r) == getmetatable(conn) then conn = r end
      if done(conn) then break end
    end
    return conn
  end
end

--- Wraps any plug form as a function fn(conn).
M.resolve = resolve

--- Parses query strings and bodies (urlencoded, multipart, JSON) into
--- conn.params; an unreadable or unsupported body gets its status (400, 413, 415)
--- and halts. opts: length (max body bytes), pass (accept unknown types),
--- parsers ({urlencoded=true, multipart=true, json=true}).
function M.parsers(opts)
  return function(conn)
    conn:fetch_query_params()
    local ok, status, err = conn:parse_body(opts)
    if not ok then
      conn:put_resp_content_type("text/plain")
      conn:send_resp(status, err .. "\n")
      conn:halt()
    end
    return conn
  end
end

--- Calls `fn(conn)` and turns an error raised inside into a 500 response (if
--- nothing was sent yet); the error is logged and re-raised only when
--- opts.reraise is set.
function M.rescue(fn, opts)
  fn = resolve(fn)
  return function(conn)
    local ok, r = xpcall(fn, debug.traceback, conn)
    if ok then return r end
    if opts and opts.log then opts.log(r) end
    if conn.state == "unset" or conn.state == "set" then
      conn.state = "unset"
      conn:put_resp_content_type("text/plain")
      conn:send_resp(500, "Internal Server Error\n")
    end
    if opts and opts.reraise then error(r, 0) end
    return conn
  end
end

return M
