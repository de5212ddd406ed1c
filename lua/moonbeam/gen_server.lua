--- moonbeam.gen_server: OTP's generic server, as Elixir's GenServer.
--- See docs/gen_server.md.
---
--- A callback module is a module name (a string, required in the server's
--- VM) or a table of functions (moved into the server with gen.pack). Callbacks
--- return OTP's tuples as multiple values:
---
---   init(arg)                          -> "ok", state [, extra] | "ignore" | "stop", reason
---   handle_call(request, from, state)  -> "reply", reply, state [, extra]
---                                       | "noreply", state [, extra]
---                                       | "stop", reason, reply, state | "stop", reason, state
---   handle_cast(request, state)        -> "noreply", state [, extra] | "stop", reason, state
---   handle_info(msg, state)            -> same as handle_cast
---   handle_continue(arg, state)        -> same as handle_cast
---   terminate(reason, state)           -> ignored
---   code_change(old_vsn, state, extra) -> "ok", state | "error", reason
---
--- extra: a timeout in ms (handle_info("timeout", state) if no message comes
--- first), "hibernate", or {"continue", arg} (handle_continue(arg, state) runs
--- before any other message).
local mb = require "moonbeam"
local core = require "moonbeam.core"
local gen = require "moonbeam.gen"

local gen_server = {}

local LABEL = "gen_server"
local exit_mt = core.exit_mt
local pack = table.pack
local fmt = string.format

local function logger() return require "moonbeam.logger" end

---@alias moonbeam.server moonbeam.pid|string|table a pid, a registered name or {"via", registry, key}
---@alias moonbeam.from {[1]: moonbeam.pid, [2]: moonbeam.ref} who called, for gen_server.reply

-- ------------------------------------------------------------------ the server process

local function on_error(err)
  if getmetatable(err) == exit_mt then return {exit = err.reason} end
  local msg = type(err) == "string" and err or mb.format(err)
  local tb = debug.traceback(nil, 2)
  -- the frames below the callback are the server's own loop: leave them out
  local cut = tb:find("\n\t%[C%]: in function 'xpcall'")
  if cut then tb = tb:sub(1, cut - 1) end
  return {error = {"error", msg, tb}}
end

-- The exit reason a failed xpcall stands for.
local function failure_reason(f)
  if type(f) == "table" then
    if f.error then return f.error end
    if f.exit ~= nil then return f.exit end
    if next(f) == nil then return "normal" end -- mb.exit(nil)
  end
  return f
end

local function load_module(module)
  if type(module) == "string" then return require(module) end
  return module
end

local function bad_return(r, first)
  local parts = {}
  for i = first, r.n do parts[#parts + 1] = mb.format(r[i], 1) end
  return {"bad_return_value", "{" .. table.concat(parts, ", ") .. "}"}
end

-- Runs terminate (when defined), logs a crash if the reason is not clean, and
-- exits with the reason. With `from`, replies `reply` after terminate.
local function terminate(s, reason, state, last, from, reply)
  local tb
  if type(reason) == "table" and reason[1] == "error" then tb = reason[3] end
  local term = s.mod.terminate
  if type(term) == "function" then
    local r = pack(xpcall(term, on_error, reason, state))
    if not r[1] then reason = failure_reason(r[2]) end
  end
  if from then gen.reply(from, reply) end
  if not gen.is_clean_exit(reason) then
    logger().crash_report({what = "GenServer", pid = mb.self(), name = s.name, reason = reason,
                           last_message = last, state = state, traceback = tb})
  end
  mb.exit(reason)
end

local defaults = {}

function defaults.handle_call(request, _, _)
  error(fmt("attempted to call GenServer %s but no handle_call was provided (request: %s)",
            tostring(mb.self()), mb.format(request, 1)), 0)
end

function defaults.handle_cast(request, _)
  error(fmt("attempted to cast GenServer %s but no handle_cast was provided (request: %s)",
            tostring(mb.self()), mb.format(request, 1)), 0)
end

function defaults.handle_continue(arg, _)
  error(fmt("GenServer %s returned {\"continue\", %s} but no handle_continue was provided",
            tostring(mb.self()), mb.format(arg, 1)), 0)
end

local function callback(s, name)
  local f = s.mod[name]
  if type(f) == "function" then return f end
  if name == "handle_info" then return nil end
  return defaults[name]
end

local function valid_extra(x)
  return x == nil or x == "hibernate" or (type(x) == "number" and x >= 0)
      or (type(x) == "table" and x[1] == "continue")
end

-- The result of handle_cast, handle_info or handle_continue: returns the new
-- state and extra, or terminates.
local function noreply_result(s, state, r, last)
  if not r[1] then return terminate(s, failure_reason(r[2]), state, last) end
  local tag = r[2]
  if tag == "noreply" and (r.n == 3 or r.n == 4) and valid_extra(r[4]) then return r[3], r[4] end
  if tag == "stop" and r.n == 4 then return terminate(s, r[3], r[4], last) end
  return terminate(s, bad_return(r, 2), state, last)
end

local function handle_call(s, state, msg)
  local from, request = msg[2], msg[3]
  local r = pack(xpcall(callback(s, "handle_call"), on_error, request, from, state))
  if not r[1] then return terminate(s, failure_reason(r[2]), state, msg) end
  local tag = r[2]
  if tag == "reply" and (r.n == 4 or r.n == 5) and valid_extra(r[5]) then
    gen.reply(from, r[3])
    return r[4], r[5]
  elseif tag == "noreply" and (r.n == 3 or r.n == 4) and valid_extra(r[4]) then
    return r[3], r[4]
  elseif tag == "stop" and r.n == 5 then
    return terminate(s, r[3], r[5], msg, from, r[4])
  elseif tag == "stop" and r.n == 4 then
    return terminate(s, r[3], r[4], msg)
  end
  return terminate(s, bad_return(r, 2), state, msg)
end

local function handle_info(s, state, msg)
  local f = callback(s, "handle_info")
  if not f then
    logger().error(fmt("GenServer %s received unexpected message in handle_info: %s",
                       tostring(mb.self()), mb.format(msg, 1)))
    return state, nil
  end
  return noreply_result(s, state, pack(xpcall(f, on_error, msg, state)), msg)
end

local function system(s, state, msg)
  local from, req = msg[2], msg[3]
  local kind = type(req) == "table" and req[1]
  if kind == "get_state" then
    gen.reply(from, {state})
  elseif kind == "code_change" then
    local new, old_vsn, extra = req[2], req[3], req[4]
    local ok, mod = pcall(function()
      if new ~= nil then return load_module(gen.unpack(new)) end
      if type(s.module) == "string" then
        package.loaded[s.module] = nil
        return require(s.module)
      end
      return s.mod
    end)
    if not ok then
      gen.reply(from, {nil, {"error", tostring(mod)}})
      return state
    end
    local cc = mod.code_change
    local r = type(cc) == "function" and pack(xpcall(cc, on_error, old_vsn, state, extra))
              or pack(true, "ok", state)
    if not r[1] then
      gen.reply(from, {nil, failure_reason(r[2])})
    elseif r[2] == "ok" and r.n == 3 then
      s.mod = mod
      if new ~= nil then s.module = gen.unpack(new) end
      gen.reply(from, {"ok"})
      return r[3]
    elseif r[2] == "error" then
      gen.reply(from, {nil, r[3]})
    else
      gen.reply(from, {nil, bad_return(r, 2)})
    end
  else
    gen.reply(from, {nil, "unknown_system_message"})
  end
  return state
end

local function dispatch(s, state, msg)
  if type(msg) == "table" then
    local tag = msg[1]
    if tag == "$gen_call" then return handle_call(s, state, msg) end
    if tag == "$gen_cast" then
      return noreply_result(s, state, pack(xpcall(callback(s, "handle_cast"), on_error, msg[2], state)), msg)
    end
    if tag == "$gen_stop" then return terminate(s, msg[2], state, msg) end
    if tag == "$gen_system" then return system(s, state, msg), nil end
    if tag == "EXIT" and msg[2] == s.parent then return terminate(s, msg[3], state, msg) end
  end
  return handle_info(s, state, msg)
end

local function loop(s, state, extra)
  while true do
    if type(extra) == "table" then -- {"continue", arg}
      local r = pack(xpcall(callback(s, "handle_continue"), on_error, extra[2], state))
      state, extra = noreply_result(s, state, r, extra)
    else
      local timeout
      if extra == "hibernate" then
        collectgarbage("step")
      elseif extra ~= nil then
        timeout = extra
      end
      local msg, err = mb.receive(nil, timeout)
      if err == "timeout" then
        state, extra = handle_info(s, state, "timeout")
      else
        state, extra = dispatch(s, state, msg)
      end
    end
  end
end

--- (internal) The body of a server process, started by gen.start.
---@param starter moonbeam.starter
function gen_server._init_it(starter, module, arg)
  local ok, mod = pcall(load_module, module)
  if not ok or type(mod) ~= "table" then
    local reason = {"error", ok and ("module " .. mb.format(module) .. " is not a table") or tostring(mod), ""}
    logger().crash_report({what = "GenServer", pid = mb.self(), name = starter.name, reason = reason})
    gen.init_ack(starter, "error", reason)
  end
  local s = {mod = mod, module = module, parent = starter.parent, name = starter.name}
  local init = mod.init
  if type(init) ~= "function" then
    gen.init_ack(starter, "error", {"error", "the callback module has no init function", ""})
  end
  local r = pack(xpcall(init, on_error, arg))
  if not r[1] then
    local reason = failure_reason(r[2])
    if not gen.is_clean_exit(reason) then
      logger().crash_report({what = "GenServer", pid = mb.self(), name = starter.name, reason = reason})
    end
    gen.init_ack(starter, "error", reason)
  end
  local tag = r[2]
  if tag == "ok" and (r.n == 3 or r.n == 4) and valid_extra(r[4]) then
    gen.init_ack(starter, "ok")
    return loop(s, r[3], r[4])
  elseif tag == "ignore" and r.n == 2 then
    gen.init_ack(starter, "ignore")
  elseif tag == "stop" and r.n == 3 then
    gen.init_ack(starter, "error", r[3])
  end
  gen.init_ack(starter, "error", bad_return(r, 2))
end

-- ------------------------------------------------------------------ API

---@class moonbeam.gen_server.opts
---@field name? string|table register the server: a string or {"via", registry, key}
---@field timeout? number|"infinity" how long init may take (default "infinity"); then start returns nil, "timeout"
---@field scheduler? integer|"here" where to run the server

--- Starts a server (not linked). Returns its pid; "ignore" if init returned
--- "ignore"; nil and a reason if init returned "stop", raised, took longer
--- than opts.timeout, or the name is taken (`{"already_started", pid}`).
---@param module string|table
---@param arg any passed to init
---@param opts? moonbeam.gen_server.opts
---@return moonbeam.pid|"ignore"|nil
---@return any reason
function gen_server.start(module, arg, opts)
  return gen.start_behaviour("gen_server", false, module, arg, opts, "start")
end

--- Starts a server linked to the caller; see `start`. As in OTP, if init
--- fails the server exits with the reason, which also ends a caller that does
--- not trap exits.
---@param module string|table
---@param arg any
---@param opts? moonbeam.gen_server.opts
---@return moonbeam.pid|"ignore"|nil
---@return any reason
function gen_server.start_link(module, arg, opts)
  return gen.start_behaviour("gen_server", true, module, arg, opts, "start_link")
end

--- Calls the server and waits for its reply (timeout default 5000 ms, or
--- "infinity"). Fails (an exit the caller can catch with pcall, see
--- mb.exit_reason) with {reason, {"gen_server", "call", {server, request}}}:
--- "noproc" if there is no such server, its exit reason if it dies first,
--- "timeout" if it does not reply in time.
---@param server moonbeam.server
---@param request any
---@param timeout? number|"infinity"
---@return any reply
function gen_server.call(server, request, timeout)
  return gen.call(server, request, timeout, LABEL)
end

--- Sends the server a request without waiting. Always "ok".
---@param server moonbeam.server
---@param request any
---@return "ok"
function gen_server.cast(server, request)
  return gen.cast(server, request)
end

--- Replies to a call whose handle_call returned "noreply".
---@param from moonbeam.from
---@param value any
---@return "ok"
function gen_server.reply(from, value)
  return gen.reply(from, value)
end

--- Stops the server synchronously: it runs terminate(reason, state) and exits
--- with reason (default "normal"); timeout default "infinity". Reasons other
--- than normal, shutdown and {"shutdown", _} are logged as crashes.
---@param server moonbeam.server
---@param reason? any
---@param timeout? number|"infinity"
---@return "ok"
function gen_server.stop(server, reason, timeout)
  return gen.stop(server, reason, timeout, LABEL)
end

--- The pid of a server, or nil.
---@param server moonbeam.server
---@return moonbeam.pid?
function gen_server.whereis(server)
  return gen.whereis(server)
end

local function system_call(server, req, timeout, who)
  local ms = gen.check_timeout(timeout, who, 5000)
  local pid = gen.whereis(server)
  server = gen.server_term(server)
  if not pid then mb.exit({"noproc", {LABEL, "call", {server, req}}}) end
  if pid == mb.self() then mb.exit({"calling_self", {LABEL, "call", {server, req}}}) end
  local ref = mb.monitor(pid)
  mb.send(pid, {"$gen_system", {mb.self(), ref}, req})
  local msg = mb.receive(function(m)
    return type(m) == "table" and (m[1] == ref or (m[1] == "DOWN" and m[2] == ref))
  end, ms)
  if msg == nil then
    core.abandon(ref)
    mb.demonitor(ref, {flush = true})
    mb.exit({"timeout", {LABEL, "call", {server, req}}})
  end
  if msg[1] == "DOWN" then mb.exit({msg[5], {LABEL, "call", {server, req}}}) end
  mb.demonitor(ref, {flush = true})
  return msg[2]
end

--- The server's state (for debugging, as :sys.get_state).
---@param server moonbeam.server
---@param timeout? number|"infinity" default 5000
---@return any state
function gen_server.get_state(server, timeout)
  return system_call(server, {"get_state"}, timeout, "gen_server.get_state")[1]
end

--- Upgrades the server's code: loads `module` (a module name or table; nil
--- re-requires the server's own module name in its VM) and calls its
--- code_change(old_vsn, state, extra). Returns "ok", or nil and a reason (the
--- server keeps its old module and state).
---@param server moonbeam.server
---@param module? string|table
---@param old_vsn any
---@param extra any
---@param timeout? number|"infinity"
---@return "ok"|nil
---@return any reason
function gen_server.code_change(server, module, old_vsn, extra, timeout)
  local packed = module ~= nil and gen.pack(module, "module") or nil
  local r = system_call(server, {"code_change", packed, old_vsn, extra}, timeout, "gen_server.code_change")
  return r[1], r[2]
end

--- A child spec for a supervisor: `{id, start, restart, shutdown, type}`.
--- The server starts with the module's own start_link(arg) when it has one,
--- else with gen_server.start_link(module, arg, start_opts). `opts` may set
--- id (default: the module name, or the table's `name` field), restart,
--- shutdown and the start options name and timeout.
---@param module string|table
---@param arg any
---@param opts? {id?: any, restart?: string, shutdown?: number|string, name?: string|table, timeout?: number|"infinity"}
---@return table spec
local CHILD_SPEC_OPTS = {"id", "restart", "shutdown", "name", "timeout"}

function gen_server.child_spec(module, arg, opts)
  gen.check_module(module, "gen_server.child_spec")
  opts = gen.check_opts(opts, CHILD_SPEC_OPTS, "gen_server.child_spec")
  local ok, mod = true, module
  if type(module) == "string" then ok, mod = pcall(require, module) end
  if not ok then gen.error("gen_server.child_spec: " .. tostring(mod)) end
  if type(mod) ~= "table" then
    gen.error("gen_server.child_spec: module " .. mb.format(module, 1) .. " is not a table")
  end
  local id = opts.id
  if id == nil then
    id = type(module) == "string" and module or (type(mod.name) == "string" and mod.name) or "gen_server"
  end
  local start
  if type(mod.start_link) == "function" and opts.name == nil and opts.timeout == nil then
    start = {module, "start_link", {arg}}
  else
    local start_opts = (opts.name ~= nil or opts.timeout ~= nil) and {name = opts.name, timeout = opts.timeout} or nil
    start = {"moonbeam.gen_server", "start_link", {module, arg, start_opts}}
  end
  return {id = id, start = start, restart = opts.restart or "permanent",
          shutdown = opts.shutdown or 5000, type = "worker"}
end

return gen_server
