--- moonbeam.agent: state kept in a process and changed by functions run in
--- that process, as Elixir's Agent. See docs/agent.md.
---
--- The functions travel to the agent's process: a Lua function is copied
--- there with gen.pack, upvalues included (a copy: changing an upvalue inside
--- the function changes the agent's copy, not the caller's variable; modules
--- are re-required by name). A function may also be given as
--- `{module_name, function_name, extra_args...}`, called as
--- `module.function_name(state, extra_args...)` (for start_link: without the
--- state), which sends only data.
---
--- Built on moonbeam.gen_server: an agent is a gen_server, so it can be
--- supervised, named and stopped like one.
local mb = require "moonbeam"
local gen = require "moonbeam.gen"
local gen_server = require "moonbeam.gen_server"

local agent = {}

local fmt = string.format
local unpack = table.unpack

---@alias moonbeam.agent moonbeam.pid|string|table a pid, a registered name or {"via", registry, key}
---@alias moonbeam.agent_fn function|table a function, or {module_name, function_name, extra_args...}

-- ------------------------------------------------------------------ in the agent's process

-- Calls a packed function with `...` before its extra arguments.
local function apply(packed, ...)
  local f = gen.unpack(packed)
  if type(f) == "function" then return f(...) end
  local mod = require(f[1])
  local fn = mod[f[2]]
  if type(fn) ~= "function" then error(fmt("agent: %s.%s is not a function", f[1], f[2]), 0) end
  local n = select("#", ...)
  local args = {...}
  for i = 3, #f do args[n + i - 2] = f[i] end
  return fn(unpack(args, 1, n + #f - 2))
end

--- (internal) The gen_server callbacks of an agent.
agent._server = {}

function agent._server.init(packed)
  return "ok", (apply(packed))
end

function agent._server.handle_call(req, _, state)
  local op = req[1]
  if op == "get" then
    return "reply", (apply(req[2], state)), state
  elseif op == "get_and_update" then
    local r = table.pack(apply(req[2], state))
    if r.n ~= 2 then
      -- as Elixir's Agent: the function must return {value, new_state}
      error(fmt("agent.get_and_update: the function must return two values (the reply and the new state), "
                .. "got %d", r.n), 0)
    end
    return "reply", r[1], r[2]
  elseif op == "update" then
    return "reply", "ok", (apply(req[2], state))
  end
  error("agent: unknown request " .. mb.format(op), 0)
end

function agent._server.handle_cast(req, state)
  return "noreply", (apply(req[2], state))
end

-- ------------------------------------------------------------------ API

local function pack_fn(fn, who)
  local t = type(fn)
  if t == "function" then
    return gen.pack(fn, who .. ": function") -- its errors name the caller's line
  end
  if t == "table" and type(fn[1]) == "string" and type(fn[2]) == "string" then
    return gen.pack(fn)
  end
  gen.error(fmt("%s: expected a function or {module_name, function_name, args...}, got %s",
                who, t == "table" and mb.format(fn) or t))
end

local function call(op, ag, fn, timeout)
  local who = "agent." .. op
  local packed = pack_fn(fn, who)
  gen.check_timeout(timeout, who, 5000)
  if timeout == nil then timeout = 5000 end
  local ok, res = pcall(gen.call, ag, {op, packed}, timeout, "agent")
  if ok then return res end
  local reason = mb.exit_reason(res)
  if type(reason) == "table" and type(reason[2]) == "table" and reason[2][1] == "agent" then
    -- name the agent and the operation, not the packed function
    mb.exit({reason[1], {"agent", op, {ag, timeout}}})
  end
  error(res, 0)
end

---@class moonbeam.agent.opts
---@field name? string|table register the agent: a string or {"via", registry, key}
---@field timeout? number|"infinity" how long `fn` may take (default 5000); then start returns nil, "timeout"
---@field scheduler? integer|"here" where to run the agent

local START_OPTS = {"name", "timeout", "scheduler"}
local CHILD_SPEC_OPTS = {"id", "restart", "shutdown", "name", "timeout", "scheduler"}

local function do_start(link, fn, opts, who)
  local packed = pack_fn(fn, "agent." .. who)
  opts = gen.check_opts(opts, START_OPTS, "agent." .. who)
  local sopts = {name = opts.name, timeout = opts.timeout or 5000, scheduler = opts.scheduler}
  if link then return gen_server.start_link(agent._server, packed, sopts) end
  return gen_server.start(agent._server, packed, sopts)
end

--- Starts an agent linked to the caller; its state is `fn()`, run in the
--- agent's process. Returns the pid, or nil and a reason (fn raised, took
--- longer than opts.timeout, or the name is taken: `{"already_started", pid}`).
---@param fn moonbeam.agent_fn
---@param opts? moonbeam.agent.opts
---@return moonbeam.pid|nil
---@return any reason
function agent.start_link(fn, opts)
  return do_start(true, fn, opts, "start_link")
end

--- Starts an agent not linked to the caller; see `start_link`.
---@param fn moonbeam.agent_fn
---@param opts? moonbeam.agent.opts
---@return moonbeam.pid|nil
---@return any reason
function agent.start(fn, opts)
  return do_start(false, fn, opts, "start")
end

--- Returns `fn(state)`, computed in the agent. Fails (an exit) with
--- `{reason, {"agent", "get", {agent, timeout}}}`: "noproc", "timeout" after
--- `timeout` ms (default 5000), or the agent's exit reason (fn raised: the
--- agent crashes with the error).
---@param ag moonbeam.agent
---@param fn moonbeam.agent_fn
---@param timeout? number|"infinity" default 5000
---@return any
function agent.get(ag, fn, timeout)
  return call("get", ag, fn, timeout)
end

--- Replaces the state with `fn(state)`, computed in the agent; returns "ok"
--- once done. Fails as `get`.
---@param ag moonbeam.agent
---@param fn moonbeam.agent_fn
---@param timeout? number|"infinity" default 5000
---@return "ok"
function agent.update(ag, fn, timeout)
  return call("update", ag, fn, timeout)
end

--- Runs `fn(state)`, which returns two values: the value to return and the
--- new state. Fails as `get`.
---@param ag moonbeam.agent
---@param fn moonbeam.agent_fn
---@param timeout? number|"infinity" default 5000
---@return any
function agent.get_and_update(ag, fn, timeout)
  return call("get_and_update", ag, fn, timeout)
end

--- Replaces the state with `fn(state)` without waiting. Always "ok", even to
--- a dead agent.
---@param ag moonbeam.agent
---@param fn moonbeam.agent_fn
---@return "ok"
function agent.cast(ag, fn)
  return gen.cast(ag, {"cast", pack_fn(fn, "agent.cast")})
end

--- Stops the agent synchronously with `reason` (default "normal"), waiting
--- up to `timeout` (default "infinity").
---@param ag moonbeam.agent
---@param reason? any
---@param timeout? number|"infinity"
---@return "ok"
function agent.stop(ag, reason, timeout)
  return gen.stop(ag, reason, timeout, "agent")
end

--- The pid of an agent, or nil.
---@param ag moonbeam.agent
---@return moonbeam.pid?
function agent.whereis(ag)
  return gen.whereis(ag)
end

--- A child spec for a supervisor, starting `agent.start_link(fn, opts)`.
---@param fn moonbeam.agent_fn
---@param opts? moonbeam.agent.opts|{id?: any, restart?: string, shutdown?: number|string}
---@return table spec
function agent.child_spec(fn, opts)
  pack_fn(fn, "agent.child_spec")
  opts = gen.check_opts(opts, CHILD_SPEC_OPTS, "agent.child_spec")
  local start_opts = {name = opts.name, timeout = opts.timeout, scheduler = opts.scheduler}
  return {id = opts.id == nil and "agent" or opts.id, start = {"moonbeam.agent", "start_link", {fn, start_opts}},
          restart = opts.restart or "permanent", shutdown = opts.shutdown or 5000, type = "worker"}
end

return agent
