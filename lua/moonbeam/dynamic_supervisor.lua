--- moonbeam.dynamic_supervisor: Elixir's DynamicSupervisor. See
--- docs/dynamic_supervisor.md.
---
--- A supervisor that starts with no children and gets them one by one with
--- start_child(sup, child). Strategy one_for_one only; each child is restarted
--- by its own restart type; children are not ordered and are shut down
--- concurrently; max_children bounds how many it holds.
local mb = require "moonbeam"
local gen = require "moonbeam.gen"
local gen_server = require "moonbeam.gen_server"
local supervisor = require "moonbeam.supervisor"

local dynamic_supervisor = {}

local LABEL = "dynamic_supervisor"
local FLAG_KEYS = {"max_restarts", "max_seconds", "max_children", "extra_arguments"}
local fmt = string.format

-- ------------------------------------------------------------------ the supervisor process

local cb = {}
dynamic_supervisor._callbacks = cb

local function sup_name(st) return st.name or mb.self() end

local function add(st, pid, spec)
  st.seq = st.seq + 1
  spec.seq = st.seq
  st.children[pid] = spec
  st.count = st.count + 1
end

local function is_tagged(tag, set)
  return function(m) return type(m) == "table" and m[1] == tag and set[m[2]] ~= nil end
end

-- Stops the given {pid = spec} children all at once; waits for every one.
local function stop_children(st, children)
  local pending, n = {}, 0
  for pid, spec in pairs(children) do
    local ref, already = supervisor._shutdown_begin(spec, pid)
    if ref then
      local timer
      if math.type(spec.shutdown) == "integer" then
        local ok, t = pcall(mb.send_after, spec.shutdown, mb.self(), {"$dsup_kill", ref})
        if ok then timer = t else mb.exit(pid, "kill") end -- no timers: the runtime is stopping
      end
      pending[ref] = {spec = spec, pid = pid, timer = timer}
      n = n + 1
    elseif not supervisor._expected_shutdown(spec, already) then
      supervisor._report(sup_name(st), "shutdown_error", already, spec, pid)
    end
  end
  local downs, kills = is_tagged("DOWN", pending), is_tagged("$dsup_kill", pending)
  local either = function(m) return downs(m) or kills(m) end
  while n > 0 do
    local m = mb.receive(either)
    local p = pending[m[2]]
    if m[1] == "DOWN" then
      if p.timer then mb.cancel_timer(p.timer) end
      if not supervisor._expected_shutdown(p.spec, m[5]) then
        supervisor._report(sup_name(st), "shutdown_error", m[5], p.spec, p.pid)
      end
      pending[m[2]] = nil
      n = n - 1
    else
      mb.exit(p.pid, "kill")
    end
  end
  -- timers that fired just before their child's DOWN
  while mb.receive(function(m) return type(m) == "table" and m[1] == "$dsup_kill" end, 0) do end
end

local function stop_all(st)
  stop_children(st, st.children)
  st.children, st.count, st.restarting = {}, 0, {}
end

local function give_up(st)
  supervisor._report(sup_name(st), "reached_max_restart_intensity", "shutdown")
  stop_all(st)
  return "stop", "shutdown", st
end

local function restart(st, spec)
  if supervisor._add_restart(st, {"$dsup_expire"}) then return give_up(st) end
  local pid, reason = supervisor._start_proc(spec, st.extra)
  if mb.is_pid(pid) then
    add(st, pid, spec)
  elseif pid == nil then
    supervisor._report(sup_name(st), "start_error", reason, spec)
    st.seq = st.seq + 1
    st.restarting[st.seq] = spec
    st.count = st.count + 1
    mb.send(mb.self(), {"$dsup_try_again", st.seq})
  end
  return "noreply", st
end

function cb.init(arg)
  mb.trap_exit(true)
  local flags = arg.flags
  if arg.module ~= nil then
    local mod = type(arg.module) == "string" and require(arg.module) or arg.module
    local r = table.pack(mod.init(arg.arg))
    if r[1] == "ignore" then return "ignore" end
    if r[1] ~= "ok" or type(r[2]) ~= "table" then return "stop", {"bad_return", mb.format(r[1], 1)} end
    flags = r[2]
    local ok, err = pcall(supervisor._check_flags, flags, "dynamic_supervisor init")
    if not ok then return "stop", {"bad_flags", (tostring(err):gsub("^[^:]*:%d+: ", ""))} end
    local bad = gen.unknown_key(flags, FLAG_KEYS, "dynamic_supervisor init")
    if bad then return "stop", {"bad_flags", bad} end
  end
  local max = flags.max_children
  return "ok", {name = arg.name, intensity = flags.max_restarts or 3,
                period_ms = supervisor._window_ms(flags.max_seconds), restarts = 0,
                max_children = (max == nil or max == "infinity") and math.huge or max,
                extra = flags.extra_arguments or {}, children = {}, count = 0, restarting = {}, seq = 0}
end

function cb.handle_info(msg, st)
  if type(msg) ~= "table" then return "noreply", st end
  local tag = msg[1]
  if tag == "EXIT" then
    local spec = st.children[msg[2]]
    if not spec then return "noreply", st end
    st.children[msg[2]] = nil
    st.count = st.count - 1
    local reason = msg[3]
    local clean = gen.is_clean_exit(reason)
    if spec.restart == "permanent" or not clean then
      supervisor._report(sup_name(st), "child_terminated", reason, spec, msg[2])
    end
    if spec.restart == "temporary" or (spec.restart == "transient" and clean) then return "noreply", st end
    return restart(st, spec)
  elseif tag == "$dsup_expire" then
    st.restarts = st.restarts - 1
  elseif tag == "$dsup_try_again" then
    local spec = st.restarting[msg[2]]
    if spec then
      st.restarting[msg[2]] = nil
      st.count = st.count - 1
      return restart(st, spec)
    end
  end
  return "noreply", st
end

local calls = {}

function calls.start_child(st, packed)
  if st.count >= st.max_children then return {nil, "max_children"} end
  local spec = gen.unpack(packed)
  local pid, reason = supervisor._start_proc(spec, st.extra)
  if pid == nil then
    supervisor._report(sup_name(st), "start_error", reason, spec)
    return {nil, reason}
  end
  if mb.is_pid(pid) then add(st, pid, spec) end
  return {pid}
end

function calls.terminate_child(st, pid)
  local spec = mb.is_pid(pid) and st.children[pid]
  if not spec then return {nil, "not_found"} end
  st.children[pid] = nil
  st.count = st.count - 1
  stop_children(st, {[pid] = spec})
  return {"ok"}
end

function calls.which_children(st)
  local list = {}
  for pid, spec in pairs(st.children) do list[#list + 1] = {spec.seq, pid, spec} end
  for seq, spec in pairs(st.restarting) do list[#list + 1] = {seq, "restarting", spec} end
  table.sort(list, function(a, b) return a[1] < b[1] end)
  local out = {}
  for i, e in ipairs(list) do out[i] = {"undefined", e[2], e[3].type, e[3].modules} end
  return out
end

function calls.count_children(st)
  local c = {specs = st.count, active = 0, supervisors = 0, workers = 0}
  local function tally(spec)
    if spec.type == "supervisor" then c.supervisors = c.supervisors + 1 else c.workers = c.workers + 1 end
  end
  for _, spec in pairs(st.children) do
    c.active = c.active + 1
    tally(spec)
  end
  for _, spec in pairs(st.restarting) do tally(spec) end
  return c
end

function cb.handle_call(req, _, st)
  local f = type(req) == "table" and calls[req[1]]
  if not f then return "reply", {nil, "unknown_call"}, st end
  return "reply", f(st, req[2]), st
end

function cb.terminate(_, st)
  stop_all(st)
end

-- ------------------------------------------------------------------ API

---@class moonbeam.dynamic_supervisor.opts
---@field strategy? "one_for_one" the only strategy
---@field max_restarts? integer default 3
---@field max_seconds? number default 5
---@field max_children? integer|"infinity" default "infinity"
---@field extra_arguments? table put before every child's start arguments
---@field name? string|table a registered name or {"via", registry, key}
---@field timeout? number|"infinity"

local START_OPTS = {"strategy", "max_restarts", "max_seconds", "max_children", "extra_arguments", "name", "timeout"}
local MODULE_OPTS = {"name", "timeout"}
local INIT_OPTS = {"strategy", "max_restarts", "max_seconds", "max_children", "extra_arguments"}
local CHILD_SPEC_OPTS = {"id", "restart", "shutdown", "strategy", "max_restarts", "max_seconds", "max_children",
                         "extra_arguments", "name", "timeout"}

local function check_opts(opts, who, valid)
  opts = gen.check_opts(opts, valid, who)
  if opts.strategy ~= nil and opts.strategy ~= "one_for_one" then
    gen.error(fmt("%s: the only strategy is one_for_one, got %s", who, mb.format(opts.strategy, 1)))
  end
  local mc = opts.max_children
  if mc ~= nil and mc ~= "infinity" and not (math.type(mc) == "integer" and mc >= 0) then
    gen.error(fmt("%s: max_children must be an integer >= 0 or \"infinity\", got %s", who, mb.format(mc, 1)))
  end
  if opts.extra_arguments ~= nil and type(opts.extra_arguments) ~= "table" then
    gen.error(fmt("%s: extra_arguments must be a list", who))
  end
  supervisor._check_flags(opts, who)
  gen.check_name(opts.name, who)
  return opts
end

local function flags_of(opts)
  return {max_restarts = opts.max_restarts, max_seconds = opts.max_seconds,
          max_children = opts.max_children, extra_arguments = opts.extra_arguments}
end

--- Starts a dynamic supervisor, linked to the caller, with no children:
--- `start_link(opts)`, or `start_link(module, arg, opts)` with a callback
--- module whose `init(arg)` returns `dynamic_supervisor.init(opts)` or
--- "ignore". Returns its pid, "ignore", or nil and a reason
--- (`{"already_started", pid}`).
---@param opts_or_module? moonbeam.dynamic_supervisor.opts|string|table
---@param arg? any
---@param module_opts? moonbeam.dynamic_supervisor.opts
---@return moonbeam.pid|"ignore"|nil
---@return any reason
function dynamic_supervisor.start_link(opts_or_module, arg, module_opts)
  local first = opts_or_module
  local state, opts
  if type(first) == "string" or (type(first) == "table" and type(first.init) == "function") then
    opts = check_opts(module_opts, "dynamic_supervisor.start_link", MODULE_OPTS)
    gen.require_module(first, "dynamic_supervisor.start_link")
    state = {module = first, arg = arg, name = opts.name}
  else
    opts = check_opts(first, "dynamic_supervisor.start_link", START_OPTS)
    state = {flags = flags_of(opts), name = opts.name}
  end
  return gen_server.start_link(cb, state, {name = opts.name, timeout = opts.timeout})
end

--- For module-based dynamic supervisors: what init(arg) returns.
---@param opts? moonbeam.dynamic_supervisor.opts
---@return "ok"
---@return table flags
function dynamic_supervisor.init(opts)
  opts = check_opts(opts, "dynamic_supervisor.init", INIT_OPTS)
  return "ok", flags_of(opts)
end

--- A child spec that starts a dynamic supervisor (type "supervisor",
--- shutdown "infinity"); id: opts.id, else opts.name, else "dynamic_supervisor".
---@param opts? moonbeam.dynamic_supervisor.opts|{id?: any, restart?: string}
---@return moonbeam.child_spec
function dynamic_supervisor.child_spec(opts)
  opts = check_opts(opts, "dynamic_supervisor.child_spec", CHILD_SPEC_OPTS)
  local start_opts = {}
  for k, v in pairs(opts) do
    if k ~= "id" and k ~= "restart" and k ~= "shutdown" then start_opts[k] = v end
  end
  local id = opts.id
  if id == nil then id = type(opts.name) == "string" and opts.name or "dynamic_supervisor" end
  return {id = id, start = {"moonbeam.dynamic_supervisor", "start_link", {start_opts}},
          type = "supervisor", restart = opts.restart or "permanent", shutdown = opts.shutdown or "infinity"}
end

--- Starts a child under the supervisor: a child spec (its id is not needed
--- and is ignored), a module with child_spec(arg), or {module, arg}. The
--- supervisor's extra_arguments go before the spec's arguments. Returns the
--- pid, "ignore", or nil and a reason: "max_children" when the supervisor is
--- full, else what the start returned. A malformed child raises.
---@param sup moonbeam.server
---@param child moonbeam.child
---@return moonbeam.pid|"ignore"|nil
---@return any err
function dynamic_supervisor.start_child(sup, child)
  if type(child) == "table" and child.start ~= nil and child.id == nil then
    local copy = {}
    for k, v in pairs(child) do copy[k] = v end
    copy.id = false
    child = copy
  end
  local spec, err = supervisor._normalize(child)
  if not spec then gen.error("dynamic_supervisor.start_child: " .. err) end
  local r = gen.call(sup, {"start_child", gen.pack(spec, "child")}, "infinity", LABEL)
  return r[1], r[2]
end

--- Stops the child `pid` (by its shutdown) and forgets it: "ok", or nil,
--- "not_found".
---@param sup moonbeam.server
---@param pid moonbeam.pid
---@return "ok"|nil
---@return string? err
function dynamic_supervisor.terminate_child(sup, pid)
  if not mb.is_pid(pid) then gen.error("dynamic_supervisor.terminate_child: expected a pid, got " .. type(pid)) end
  local r = gen.call(sup, {"terminate_child", pid}, "infinity", LABEL)
  return r[1], r[2]
end

--- The children, in the order they started: a list of
--- `{"undefined", pid | "restarting", type, modules}`.
---@param sup moonbeam.server
---@return table[]
function dynamic_supervisor.which_children(sup)
  return gen.call(sup, {"which_children"}, "infinity", LABEL)
end

--- Counts: `{specs = n, active = n, supervisors = n, workers = n}`.
---@param sup moonbeam.server
---@return {specs: integer, active: integer, supervisors: integer, workers: integer}
function dynamic_supervisor.count_children(sup)
  return gen.call(sup, {"count_children"}, "infinity", LABEL)
end

--- Stops the supervisor and all its children (concurrently), synchronously.
---@param sup moonbeam.server
---@param reason? any default "normal"
---@param timeout? number|"infinity" default "infinity"
---@return "ok"
function dynamic_supervisor.stop(sup, reason, timeout)
  return gen.stop(sup, reason, timeout, LABEL)
end

return dynamic_supervisor
