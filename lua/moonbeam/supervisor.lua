--- moonbeam.supervisor: OTP's supervisor, as Elixir's Supervisor.
--- See docs/supervisor.md.
---
--- A supervisor is a gen_server that traps exits, starts its children in
--- order, restarts them by strategy (one_for_one, one_for_all, rest_for_one)
--- and restart type (permanent, transient, temporary), gives up after more
--- than max_restarts restarts in max_seconds (it then stops every child and
--- exits with "shutdown"), and stops its children in reverse order.
---
--- A child spec is a table:
---   {id = any, start = {module, function_name, args}, restart = "permanent"
---    | "transient" | "temporary", shutdown = ms | "brutal_kill" | "infinity",
---    type = "worker" | "supervisor", modules = {...}}
--- where module is a module name or a table; or a module (name or table)
--- with a child_spec(arg) function, given alone or as {module, arg}.
local mb = require "moonbeam"
local gen = require "moonbeam.gen"
local gen_server = require "moonbeam.gen_server"

local supervisor = {}

local LABEL = "supervisor"
local fmt = string.format
local unpack = table.unpack

local function logger() return require "moonbeam.logger" end

---@class moonbeam.child_spec
---@field id any
---@field start {[1]: string|table, [2]: string, [3]?: table} module, function name, arguments
---@field restart? "permanent"|"transient"|"temporary" default "permanent"
---@field shutdown? integer|"brutal_kill"|"infinity" default 5000 for a worker, "infinity" for a supervisor
---@field type? "worker"|"supervisor" default "worker"
---@field modules? table

---@alias moonbeam.child moonbeam.child_spec|string|table a spec, a module, or {module, arg}

-- ------------------------------------------------------------------ child specs (shared with dynamic_supervisor)

local RESTARTS = {permanent = true, transient = true, temporary = true}
local TYPES = {worker = true, supervisor = true}
local SPEC_KEYS = {"id", "start", "restart", "shutdown", "type", "modules"}

local function load_module(m)
  if type(m) == "string" then return require(m) end
  return m
end

--- (internal) Turns a child (spec, module, or {module, arg}) into a checked
--- spec with every field filled. Returns nil and a message on bad input.
---@param child any
---@return moonbeam.child_spec|nil spec
---@return string? err
function supervisor._normalize(child)
  local spec
  local t = type(child)
  if t == "string" or (t == "table" and child.start == nil and child[1] ~= nil) or
     (t == "table" and child.start == nil and type(child.child_spec) == "function") then
    local module, arg
    if t == "string" or child[1] == nil then module = child else module, arg = child[1], child[2] end
    local ok, mod = true, module
    if type(module) == "string" then ok, mod = pcall(require, module) end
    if not ok then return nil, fmt("cannot load child module %s: %s", mb.format(module, 1), tostring(mod)) end
    if type(mod) ~= "table" or type(mod.child_spec) ~= "function" then
      return nil, fmt("child module %s has no child_spec(arg) function",
                      type(module) == "string" and module or mb.format(module))
    end
    local got
    ok, got = pcall(mod.child_spec, arg)
    if not ok then return nil, "child_spec failed: " .. tostring(got) end
    if type(got) ~= "table" or got.start == nil then
      return nil, fmt("child_spec of %s did not return a child spec", mb.format(module, 1))
    end
    spec = got
  elseif t == "table" then
    spec = child
  else
    return nil, "a child must be a child spec, a module or {module, arg}, got " .. t
  end
  local id = spec.id
  if id == nil then return nil, "child spec without an id: " .. mb.format(spec) end
  local bad = gen.unknown_key(spec, SPEC_KEYS, "child " .. mb.format(id, 1), "child spec key")
  if bad then return nil, bad end
  local start = spec.start
  if type(start) ~= "table" or (type(start[1]) ~= "string" and type(start[1]) ~= "table")
     or type(start[2]) ~= "string" or (start[3] ~= nil and type(start[3]) ~= "table") then
    return nil, fmt("child %s: start must be {module, function_name, args}, got %s",
                    mb.format(id, 1), mb.format(start, 1))
  end
  local restart = spec.restart or "permanent"
  if not RESTARTS[restart] then
    return nil, fmt("child %s: restart must be permanent, transient or temporary, got %s",
                    mb.format(id, 1), mb.format(restart, 1))
  end
  local kind = spec.type or "worker"
  if not TYPES[kind] then
    return nil, fmt("child %s: type must be worker or supervisor, got %s", mb.format(id, 1), mb.format(kind, 1))
  end
  local shutdown = spec.shutdown
  if shutdown == nil then shutdown = kind == "supervisor" and "infinity" or 5000 end
  if not (shutdown == "brutal_kill" or shutdown == "infinity" or
          (math.type(shutdown) == "integer" and shutdown >= 0)) then
    return nil, fmt("child %s: shutdown must be ms >= 0, \"brutal_kill\" or \"infinity\", got %s",
                    mb.format(id, 1), mb.format(shutdown, 1))
  end
  local modules = spec.modules
  if modules == nil then modules = type(start[1]) == "string" and {start[1]} or "dynamic" end
  return {id = id, start = {start[1], start[2], start[3] or {}}, restart = restart,
          shutdown = shutdown, type = kind, modules = modules}
end

local function traceback(err)
  if mb.exit_reason(err) ~= nil then return {exit = mb.exit_reason(err)} end
  return {error = {"error", type(err) == "string" and err or mb.format(err), debug.traceback(nil, 2)}}
end

--- (internal) Runs a child's start function in the calling supervisor:
--- returns its pid (now linked), "ignore", or nil and a reason.
---@param spec moonbeam.child_spec
---@param extra? table arguments put before the spec's own (dynamic_supervisor's extra_arguments)
---@return moonbeam.pid|"ignore"|nil
---@return any reason
function supervisor._start_proc(spec, extra)
  local start = spec.start
  local args = start[3]
  if extra and #extra > 0 then
    local all = {}
    for i = 1, #extra do all[i] = extra[i] end
    for i = 1, args.n or #args do all[#extra + i] = args[i] end
    all.n = #extra + (args.n or #args)
    args = all
  end
  local r = table.pack(xpcall(function()
    local mod = load_module(start[1])
    local f = type(mod) == "table" and mod[start[2]]
    if type(f) ~= "function" then
      error(fmt("%s.%s is not a function", type(start[1]) == "string" and start[1] or "<module>", start[2]), 0)
    end
    return f(unpack(args, 1, args.n or #args))
  end, traceback))
  if not r[1] then
    local f = r[2]
    if type(f) == "table" and f.error then return nil, f.error end
    return nil, type(f) == "table" and f.exit or f
  end
  local a, b = r[2], r[3]
  if mb.is_pid(a) then
    mb.link(a)
    return a
  end
  if a == "ok" and mb.is_pid(b) then
    mb.link(b)
    return b
  end
  if a == "ignore" then return "ignore" end
  if a == nil or a == "error" then return nil, b end
  return nil, {"bad_return", mb.format(a, 1)}
end

local function is_down(ref)
  return function(m) return type(m) == "table" and m[1] == "DOWN" and m[2] == ref end
end

--- (internal) Begins stopping a child: monitors and unlinks it, then sends
--- the exit signal its shutdown asks for. Returns the monitor ref, or the
--- reason it already died with (nil ref).
function supervisor._shutdown_begin(spec, pid)
  local ref = mb.monitor(pid)
  mb.unlink(pid)
  -- died before the unlink: its EXIT is queued, its DOWN follows
  local exited = mb.receive(function(m) return type(m) == "table" and m[1] == "EXIT" and m[2] == pid end, 0)
  if exited then
    mb.receive(is_down(ref))
    return nil, exited[3]
  end
  mb.exit(pid, spec.shutdown == "brutal_kill" and "kill" or "shutdown")
  return ref
end

--- (internal) Whether `reason` is what a child stopped by its supervisor
--- should end with.
function supervisor._expected_shutdown(spec, reason)
  if spec.shutdown == "brutal_kill" then return reason == "killed" end
  if reason == "shutdown" then return true end
  return reason == "normal" and spec.restart ~= "permanent"
end

--- (internal) Stops a child and waits until it is gone; returns the reason.
function supervisor._shutdown(spec, pid)
  local ref, already = supervisor._shutdown_begin(spec, pid)
  if not ref then return already end
  local timeout = math.type(spec.shutdown) == "integer" and spec.shutdown or nil
  local down = mb.receive(is_down(ref), timeout)
  if not down then
    mb.exit(pid, "kill")
    down = mb.receive(is_down(ref))
  end
  return down[5]
end

-- A module table shows as "<module>" in reports.
local function brief(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do
    if type(x) == "function" then return "<module>" end
    out[k] = brief(x)
  end
  return out
end

--- (internal) Logs a supervisor report.
function supervisor._report(sup_name, context, reason, spec, pid)
  local child
  if spec then
    child = {id = spec.id, pid = pid, start = {spec.start[1], spec.start[2], brief(spec.start[3])},
             restart = spec.restart, shutdown = spec.shutdown, type = spec.type}
    if type(child.start[1]) ~= "string" then child.start[1] = "<module>" end
  end
  logger().supervisor_report({supervisor = sup_name, context = context, reason = reason, child = child})
end

--- (internal) Checks the restart intensity options; raises naming `who`.
--- max_seconds may be math.huge or "infinity": a window that never ends.
function supervisor._check_flags(opts, who)
  local mr, ms = opts.max_restarts, opts.max_seconds
  if mr ~= nil and not (math.type(mr) == "integer" and mr >= 0) then
    gen.error(fmt("%s: max_restarts must be an integer >= 0, got %s", who, mb.format(mr, 1)))
  end
  if ms ~= nil and ms ~= "infinity" and not (type(ms) == "number" and ms > 0) then
    gen.error(fmt("%s: max_seconds must be a number > 0 or \"infinity\", got %s", who, mb.format(ms, 1)))
  end
end

-- Past this many ms (about 285,000 years) a window is forever: a restart is
-- never forgotten, and no timer is set (a timer cannot hold such a delay).
local FOREVER_MS = 2 ^ 53

--- (internal) The restart window in ms for max_seconds (nil: default 5), or
--- nil when it never ends.
---@param max_seconds number|"infinity"|nil
---@return number?
function supervisor._window_ms(max_seconds)
  if max_seconds == "infinity" then return nil end
  local ms = (max_seconds or 5) * 1000
  if ms >= FOREVER_MS then return nil end
  return ms
end

--- (internal) Counts a restart in `st` (fields restarts, intensity,
--- period_ms); the restart is forgotten when the window ends (the supervisor
--- gets `expire_msg`). Returns true if that was one restart too many.
function supervisor._add_restart(st, expire_msg)
  st.restarts = st.restarts + 1
  if st.period_ms then pcall(mb.send_after, math.ceil(st.period_ms), mb.self(), expire_msg) end
  return st.restarts > st.intensity
end

-- ------------------------------------------------------------------ the supervisor process

local STRATEGIES = {one_for_one = true, one_for_all = true, rest_for_one = true}
local FLAG_KEYS = {"strategy", "max_restarts", "max_seconds"}
local LIST_OPTS = {"strategy", "max_restarts", "max_seconds", "name", "timeout"}
local MODULE_OPTS = {"name", "timeout"}
local CHILD_SPEC_OPTS = {"id", "restart", "shutdown", "strategy", "max_restarts", "max_seconds", "name", "timeout"}

local cb = {}
supervisor._callbacks = cb

local function sup_name(st) return st.name or mb.self() end

local function find(st, id)
  for i, ch in ipairs(st.children) do
    if gen.equal(ch.id, id) then return ch, i end
  end
end

local function find_pid(st, pid)
  for i, ch in ipairs(st.children) do
    if ch.pid == pid then return ch, i end
  end
end

local function remove(st, ch)
  for i, c in ipairs(st.children) do
    if c == ch then
      table.remove(st.children, i)
      return
    end
  end
end

-- Stops one child (if running) and reports an unexpected end.
local function stop_child(st, ch)
  if mb.is_pid(ch.pid) then
    local reason = supervisor._shutdown(ch, ch.pid)
    if not supervisor._expected_shutdown(ch, reason) then
      supervisor._report(sup_name(st), "shutdown_error", reason, ch, ch.pid)
    end
  end
  ch.pid = nil
end

-- Stops children[first..last] in reverse order; temporary ones are forgotten.
local function stop_range(st, first, last)
  for i = last, first, -1 do
    local ch = st.children[i]
    stop_child(st, ch)
  end
  for i = last, first, -1 do
    if st.children[i].restart == "temporary" then table.remove(st.children, i) end
  end
end

-- Starts children[first..]; returns nil, or the failed child and reason.
local function start_from(st, first)
  for i = first, #st.children do
    local ch = st.children[i]
    local pid, reason = supervisor._start_proc(ch)
    if pid == nil then
      supervisor._report(sup_name(st), "start_error", reason, ch)
      return ch, reason, i
    end
    ch.pid = mb.is_pid(pid) and pid or nil
  end
end

local function give_up(st)
  supervisor._report(sup_name(st), "reached_max_restart_intensity", "shutdown")
  stop_range(st, 1, #st.children)
  return "stop", "shutdown", st
end

-- Counts a restart; true if that was one too many.
local function add_restart(st)
  return supervisor._add_restart(st, {"$sup_expire"})
end

-- Restarts after `ch` ended (or failed to restart), by strategy.
local function restart(st, ch)
  if add_restart(st) then return give_up(st) end
  local _, index = find(st, ch.id)
  local first = index
  if st.strategy == "one_for_all" then
    first = 1
    -- stop the others, the failed child's place included, in reverse order
    for i = #st.children, 1, -1 do
      local c = st.children[i]
      if c ~= ch then stop_child(st, c) end
    end
    for i = #st.children, 1, -1 do
      local c = st.children[i]
      if c ~= ch and c.restart == "temporary" then table.remove(st.children, i) end
    end
  elseif st.strategy == "rest_for_one" then
    for i = #st.children, index + 1, -1 do stop_child(st, st.children[i]) end
    for i = #st.children, index + 1, -1 do
      if st.children[i].restart == "temporary" then table.remove(st.children, i) end
    end
  end
  local last = st.strategy == "one_for_one" and index or #st.children
  for i = first, last do
    local c = st.children[i]
    if not mb.is_pid(c.pid) then
      local pid, reason = supervisor._start_proc(c)
      if pid == nil then
        supervisor._report(sup_name(st), "start_error", reason, c)
        c.pid = "restarting"
        for j = i + 1, last do st.children[j].pid = nil end
        mb.send(mb.self(), {"$sup_try_again", c.id})
        return "noreply", st
      end
      c.pid = mb.is_pid(pid) and pid or nil
    end
  end
  return "noreply", st
end

local function child_exited(st, ch, reason)
  local clean = gen.is_clean_exit(reason)
  if ch.restart == "permanent" or not clean then
    supervisor._report(sup_name(st), "child_terminated", reason, ch, ch.pid)
  end
  ch.pid = nil
  if ch.restart == "temporary" then
    remove(st, ch)
    return "noreply", st
  end
  if ch.restart == "transient" and clean then return "noreply", st end
  return restart(st, ch)
end

function cb.init(arg)
  mb.trap_exit(true)
  local children, flags = arg.children, arg.flags
  if arg.module ~= nil then
    local mod = load_module(arg.module)
    local r = table.pack(mod.init(arg.arg))
    if r[1] == "ignore" then return "ignore" end
    if r[1] ~= "ok" or type(r[2]) ~= "table" then
      return "stop", {"bad_return", mb.format(r[1], 1)}
    end
    children, flags = r[2], r[3] or {}
    local specs = {}
    for i, child in ipairs(children) do
      local spec, err = supervisor._normalize(child)
      if not spec then return "stop", {"bad_child_spec", err} end
      specs[i] = spec
    end
    children = specs
    if type(flags) ~= "table" then return "stop", {"bad_flags", "flags must be a table, got " .. type(flags)} end
    local bad = gen.unknown_key(flags, FLAG_KEYS, "supervisor init")
    if bad then return "stop", {"bad_flags", bad} end
    local ok, err = pcall(supervisor._check_flags, flags, "supervisor init")
    if not ok then return "stop", {"bad_flags", (tostring(err):gsub("^[^:]*:%d+: ", ""))} end
    if flags.strategy ~= nil and not STRATEGIES[flags.strategy] then
      return "stop", {"bad_flags", "unknown strategy " .. mb.format(flags.strategy, 1)}
    end
  end
  local seen = {}
  for _, spec in ipairs(children) do
    for _, other in ipairs(seen) do
      if gen.equal(other, spec.id) then return "stop", {"duplicate_child_name", spec.id} end
    end
    seen[#seen + 1] = spec.id
  end
  local st = {name = arg.name, strategy = flags.strategy or "one_for_one",
              intensity = flags.max_restarts or 3, period_ms = supervisor._window_ms(flags.max_seconds),
              children = children, restarts = 0}
  local failed, reason, index = start_from(st, 1)
  if failed then
    stop_range(st, 1, index - 1)
    return "stop", {"shutdown", {"failed_to_start_child", failed.id, reason}}
  end
  -- children whose start returned "ignore" and that are temporary are not kept
  for i = #st.children, 1, -1 do
    local c = st.children[i]
    if c.pid == nil and c.restart == "temporary" then table.remove(st.children, i) end
  end
  return "ok", st
end

function cb.handle_info(msg, st)
  if type(msg) ~= "table" then return "noreply", st end
  local tag = msg[1]
  if tag == "EXIT" then
    local ch = find_pid(st, msg[2])
    if ch then return child_exited(st, ch, msg[3]) end
  elseif tag == "$sup_expire" then
    st.restarts = st.restarts - 1
  elseif tag == "$sup_try_again" then
    local ch = find(st, msg[2])
    if ch and ch.pid == "restarting" then return restart(st, ch) end
  end
  return "noreply", st
end

local function status_of(ch)
  if mb.is_pid(ch.pid) then return ch.pid end
  if ch.pid == "restarting" then return "restarting" end
  return "undefined"
end

local calls = {}

function calls.which_children(st)
  local out = {}
  for i, ch in ipairs(st.children) do out[i] = {ch.id, status_of(ch), ch.type, ch.modules} end
  return out
end

function calls.count_children(st)
  local c = {specs = #st.children, active = 0, supervisors = 0, workers = 0}
  for _, ch in ipairs(st.children) do
    if mb.is_pid(ch.pid) then c.active = c.active + 1 end
    if ch.type == "supervisor" then c.supervisors = c.supervisors + 1 else c.workers = c.workers + 1 end
  end
  return c
end

function calls.terminate_child(st, id)
  local ch = find(st, id)
  if not ch then return {nil, "not_found"} end
  stop_child(st, ch)
  if ch.restart == "temporary" then remove(st, ch) end
  return {"ok"}
end

function calls.restart_child(st, id)
  local ch = find(st, id)
  if not ch then return {nil, "not_found"} end
  if mb.is_pid(ch.pid) then return {nil, "running"} end
  if ch.pid == "restarting" then return {nil, "restarting"} end
  local pid, reason = supervisor._start_proc(ch)
  if pid == nil then return {nil, reason} end
  ch.pid = mb.is_pid(pid) and pid or nil
  return {pid}
end

function calls.delete_child(st, id)
  local ch = find(st, id)
  if not ch then return {nil, "not_found"} end
  if mb.is_pid(ch.pid) then return {nil, "running"} end
  if ch.pid == "restarting" then return {nil, "restarting"} end
  remove(st, ch)
  return {"ok"}
end

function calls.start_child(st, packed)
  local spec = gen.unpack(packed)
  local ch = find(st, spec.id)
  if ch then
    if mb.is_pid(ch.pid) then return {nil, {"already_started", ch.pid}} end
    return {nil, "already_present"}
  end
  local pid, reason = supervisor._start_proc(spec)
  if pid == nil then
    supervisor._report(sup_name(st), "start_error", reason, spec)
    return {nil, reason}
  end
  spec.pid = mb.is_pid(pid) and pid or nil
  if spec.pid or spec.restart ~= "temporary" then st.children[#st.children + 1] = spec end
  return {pid}
end

function cb.handle_call(req, _, st)
  local f = type(req) == "table" and calls[req[1]]
  if not f then return "reply", {nil, "unknown_call"}, st end
  return "reply", f(st, req[2]), st
end

function cb.terminate(_, st)
  stop_range(st, 1, #st.children)
end

-- ------------------------------------------------------------------ API

---@class moonbeam.supervisor.opts
---@field strategy? "one_for_one"|"one_for_all"|"rest_for_one" default "one_for_one"
---@field max_restarts? integer default 3
---@field max_seconds? number default 5
---@field name? string|table a registered name or {"via", registry, key}
---@field timeout? number|"infinity" how long starting may take

local function check_opts(opts, who, valid)
  opts = gen.check_opts(opts, valid, who)
  if opts.strategy ~= nil and not STRATEGIES[opts.strategy] then
    gen.error(fmt("%s: strategy must be one_for_one, one_for_all or rest_for_one, got %s",
                  who, mb.format(opts.strategy, 1)))
  end
  supervisor._check_flags(opts, who)
  gen.check_name(opts.name, who)
  return opts
end

--- Starts a supervisor linked to the caller, either with a list of children
--- and options, `start_link(children, opts)`, or with a callback module,
--- `start_link(module, arg, opts)` whose `init(arg)` returns
--- `"ok", children, flags` (see supervisor.init) or `"ignore"`.
---
--- Returns the pid, or nil and a reason: `{"shutdown", {"failed_to_start_child",
--- id, reason}}` when a child fails to start (the children already started
--- are stopped first), `{"duplicate_child_name", id}`, `{"already_started", pid}`.
--- As with gen_server.start_link, a caller that does not trap exits fails
--- with that reason too. Malformed children raise in the caller.
---@param children_or_module moonbeam.child[]|string|table
---@param opts_or_arg? moonbeam.supervisor.opts|any
---@param module_opts? moonbeam.supervisor.opts
---@return moonbeam.pid|"ignore"|nil
---@return any reason
function supervisor.start_link(children_or_module, opts_or_arg, module_opts)
  local first = children_or_module
  local is_module = type(first) == "string" or (type(first) == "table" and type(first.init) == "function")
  local arg, opts
  if is_module then
    opts = check_opts(module_opts, "supervisor.start_link", MODULE_OPTS)
    gen.require_module(first, "supervisor.start_link")
    arg = {module = first, arg = opts_or_arg, name = opts.name}
  else
    if type(first) ~= "table" then
      gen.error("supervisor.start_link: expected a list of children or a module, got " .. type(first))
    end
    opts = check_opts(opts_or_arg, "supervisor.start_link", LIST_OPTS)
    local specs = {}
    for i, child in ipairs(first) do
      local spec, err = supervisor._normalize(child)
      if not spec then gen.error("supervisor.start_link: " .. err) end
      specs[i] = spec
    end
    arg = {children = specs, name = opts.name,
           flags = {strategy = opts.strategy, max_restarts = opts.max_restarts, max_seconds = opts.max_seconds}}
  end
  return gen_server.start_link(cb, arg, {name = opts.name, timeout = opts.timeout})
end

--- For module-based supervisors: what init(arg) returns, as Elixir's
--- Supervisor.init(children, opts).
---@param children moonbeam.child[]
---@param opts? moonbeam.supervisor.opts
---@return "ok"
---@return moonbeam.child[]
---@return table flags
function supervisor.init(children, opts)
  if type(children) ~= "table" then
    gen.error("supervisor.init: expected a list of children, got " .. type(children))
  end
  opts = check_opts(opts, "supervisor.init", FLAG_KEYS)
  return "ok", children, {strategy = opts.strategy, max_restarts = opts.max_restarts,
                          max_seconds = opts.max_seconds}
end

--- A child spec that starts a supervisor (type "supervisor", shutdown
--- "infinity"). `opts.id` defaults to opts.name, else "supervisor".
---@param children moonbeam.child[]
---@param opts? moonbeam.supervisor.opts|{id?: any, restart?: string}
---@return moonbeam.child_spec
function supervisor.child_spec(children, opts)
  if type(children) ~= "table" then
    gen.error("supervisor.child_spec: expected a list of children, got " .. type(children))
  end
  opts = check_opts(opts, "supervisor.child_spec", CHILD_SPEC_OPTS)
  local start_opts = {}
  for k, v in pairs(opts) do
    if k ~= "id" and k ~= "restart" and k ~= "shutdown" then start_opts[k] = v end
  end
  local id = opts.id
  if id == nil then id = type(opts.name) == "string" and opts.name or "supervisor" end
  return {id = id, start = {"moonbeam.supervisor", "start_link", {children, start_opts}},
          type = "supervisor", restart = opts.restart or "permanent", shutdown = opts.shutdown or "infinity"}
end

local function call(sup, req)
  return gen.call(sup, req, "infinity", LABEL)
end

--- The children: a list of `{id, pid | "restarting" | "undefined", type, modules}`.
---@param sup moonbeam.server
---@return table[]
function supervisor.which_children(sup)
  return call(sup, {"which_children"})
end

--- Counts: `{specs = n, active = n, supervisors = n, workers = n}`.
---@param sup moonbeam.server
---@return {specs: integer, active: integer, supervisors: integer, workers: integer}
function supervisor.count_children(sup)
  return call(sup, {"count_children"})
end

--- Stops a child by id (its spec stays, unless it is temporary): "ok", or
--- nil, "not_found".
---@param sup moonbeam.server
---@param id any
---@return "ok"|nil
---@return string? err
function supervisor.terminate_child(sup, id)
  local r = call(sup, {"terminate_child", id})
  return r[1], r[2]
end

--- Starts again a child that was terminated: its pid ("ignore" if its start
--- returned ignore), or nil and "running", "restarting", "not_found" or the
--- start's reason.
---@param sup moonbeam.server
---@param id any
---@return moonbeam.pid|"ignore"|nil
---@return any err
function supervisor.restart_child(sup, id)
  local r = call(sup, {"restart_child", id})
  return r[1], r[2]
end

--- Removes the spec of a child that is not running: "ok", or nil and
--- "running", "restarting" or "not_found".
---@param sup moonbeam.server
---@param id any
---@return "ok"|nil
---@return string? err
function supervisor.delete_child(sup, id)
  local r = call(sup, {"delete_child", id})
  return r[1], r[2]
end

--- Adds and starts a child (last in start order): its pid ("ignore" if its
--- start returned ignore), or nil and `{"already_started", pid}`,
--- "already_present" (same id, not running) or the start's reason. A
--- malformed child raises.
---@param sup moonbeam.server
---@param child moonbeam.child
---@return moonbeam.pid|"ignore"|nil
---@return any err
function supervisor.start_child(sup, child)
  local spec, err = supervisor._normalize(child)
  if not spec then gen.error("supervisor.start_child: " .. err) end
  local r = call(sup, {"start_child", gen.pack(spec, "child")})
  return r[1], r[2]
end

--- Stops the supervisor (and its children, in reverse order) synchronously.
---@param sup moonbeam.server
---@param reason? any default "normal"
---@param timeout? number|"infinity" default "infinity"
---@return "ok"
function supervisor.stop(sup, reason, timeout)
  return gen.stop(sup, reason, timeout, LABEL)
end

return supervisor
