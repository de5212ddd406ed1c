--- moonbeam.gen_statem: OTP's generic state machine, as Erlang's gen_statem.
--- See docs/gen_statem.md.
---
--- A callback module is a module name (a string, required in the server's
--- VM) or a table of functions (moved into the server with gen.pack).
---
---   callback_mode()  -> "state_functions" | "handle_event_function" [, "state_enter"]
---                       (or a table {mode, "state_enter"}, or a plain string field)
---   init(arg)        -> "ok", state, data [, actions] | "ignore" | "stop", reason
---   state_functions:        module[state](event_type, content, data)
---   handle_event_function:  module.handle_event(event_type, content, state, data)
---   terminate(reason, state, data)   (optional; its result is ignored)
---
--- A state callback returns, as multiple values:
---
---   "next_state", new_state, new_data [, actions]
---   "keep_state", new_data [, actions]
---   "keep_state_and_data" [, actions]
---   "repeat_state", new_data [, actions]
---   "repeat_state_and_data" [, actions]
---   "stop", reason [, new_data]
---   "stop_and_reply", reason, replies [, new_data]
---
--- Event types: {"call", from}, "cast", "info", "timeout" (event timeout),
--- "state_timeout", {"timeout", name} (generic timeout), "internal", "enter".
---
--- Actions (a list, or one action; a single generic timeout must be in a
--- list): "postpone", "hibernate",
--- {"reply", from, value}, {"next_event", event_type, content},
--- a number n (event timeout, content n), {"timeout", time, content},
--- {"state_timeout", time, content}, {{"timeout", name}, time, content};
--- time is ms, "infinity", "cancel" or "update" (new content, same timer).
local mb = require "moonbeam"
local core = require "moonbeam.core"
local gen = require "moonbeam.gen"

local gen_statem = {}

local LABEL = "gen_statem"
local exit_mt = core.exit_mt
local pack = table.pack
local fmt = string.format
local tinsert, tremove = table.insert, table.remove

local function logger() return require "moonbeam.logger" end

---@alias moonbeam.statem_server moonbeam.pid|string|table a pid, a registered name or {"via", registry, key}
---@alias moonbeam.statem_from {[1]: moonbeam.pid, [2]: moonbeam.ref} who called, for {"reply", from, value}

-- ------------------------------------------------------------------ failures

-- An xpcall message handler: exits keep their reason, errors become
-- {"error", message, traceback} without the server's own frames.
local function on_error(err)
  if getmetatable(err) == exit_mt then return {exit = err.reason} end
  local msg = type(err) == "string" and err or mb.format(err)
  local tb = debug.traceback(nil, 2)
  local cut = tb:find("\n\t%[C%]: in function 'xpcall'")
  if cut then tb = tb:sub(1, cut - 1) end
  return {error = {"error", msg, tb}}
end

local function failure_reason(f)
  if type(f) == "table" then
    if f.error then return f.error end
    if f.exit ~= nil then return f.exit end
    if next(f) == nil then return "normal" end
  end
  return f
end

local function render_return(r, first)
  local parts = {}
  for i = first, r.n do parts[#parts + 1] = mb.format(r[i], 1) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function module_label(s)
  return type(s.module) == "string" and s.module or "module"
end

-- Runs terminate(reason, state, data) when defined, logs a crash unless the
-- reason is clean, and exits with the reason.
local function terminate(s, reason, last)
  local tb
  if type(reason) == "table" and reason[1] == "error" then tb = reason[3] end
  local term = s.mod.terminate
  if type(term) == "function" then
    local r = pack(xpcall(term, on_error, reason, s.state, s.data))
    if not r[1] then reason = failure_reason(r[2]) end
  end
  if not gen.is_clean_exit(reason) then
    logger().crash_report({what = "gen_statem", pid = mb.self(), name = s.name, reason = reason,
                           last_message = last, state = {s.state, s.data}, traceback = tb})
  end
  mb.exit(reason)
end

-- ------------------------------------------------------------------ timers

-- A running or enqueued timeout: {kind = "event"|"state"|"generic", name,
-- ref, timer (nil when enqueued as already expired), content}. Timer
-- messages and enqueued timeout events carry the ref; one whose ref is no
-- longer in s.by_ref was cancelled and is dropped.

local function event_type_of(t)
  if t.kind == "event" then return "timeout" end
  if t.kind == "state" then return "state_timeout" end
  return {"timeout", t.name}
end

local function drop_timer(s, t)
  s.by_ref[t.ref] = nil
  if t.timer then mb.cancel_timer(t.timer) end
  if t.kind == "event" then
    s.event_timer = nil
  else
    for i, x in ipairs(s.timers) do
      if x == t then
        tremove(s.timers, i)
        break
      end
    end
  end
end

local function find_timer(s, kind, name)
  if kind == "event" then return s.event_timer end
  for _, t in ipairs(s.timers) do
    if t.kind == kind and (kind == "state" or gen.equal(t.name, name)) then return t end
  end
  return nil
end

local function add_timer(s, kind, name, time, content)
  local t = {kind = kind, name = name, ref = mb.make_ref(), content = content}
  s.by_ref[t.ref] = t
  if kind == "event" then s.event_timer = t else s.timers[#s.timers + 1] = t end
  if time == 0 then
    -- expired already: enqueued after the events queued so far, before any
    -- message not yet received
    s.queue[#s.queue + 1] = {event_type_of(t), nil, tref = t.ref}
  else
    t.timer = mb.send_after(time, mb.self(), {"$statem_timeout", t.ref})
  end
end

local function set_timeout(s, kind, name, time, content)
  local old = find_timer(s, kind, name)
  if time == "update" then
    if old then
      old.content = content
      return
    end
    time = 0
  elseif old then
    drop_timer(s, old)
  end
  if time == "cancel" or time == "infinity" then return end
  add_timer(s, kind, name, time, content)
end

-- ------------------------------------------------------------------ callbacks

local function call_state(s, etype, content)
  if s.handle_event then
    return pack(xpcall(s.handle_event, on_error, etype, content, s.state, s.data))
  end
  local f = type(s.state) == "string" and s.mod[s.state] or nil
  if type(f) ~= "function" then
    return {false, {error = {"error", fmt("undef_state_function: %s has no function for state %s",
                                           module_label(s), mb.format(s.state, 1)), ""}}, n = 2}
  end
  return pack(xpcall(f, on_error, etype, content, s.data))
end

local function valid_time(t)
  return t == "infinity" or t == "cancel" or t == "update" or (math.type(t) ~= nil and t >= 0)
end

local function valid_event_type(e)
  if e == "cast" or e == "info" or e == "internal" or e == "timeout" or e == "state_timeout" then
    return true
  end
  return type(e) == "table" and ((e[1] == "call" and type(e[2]) == "table" and mb.is_pid(e[2][1]))
                                  or (e[1] == "timeout" and #e <= 2))
end

-- Normalises actions to a list; nil if malformed. A table is one action when
-- it starts with "reply", "next_event", "timeout" or "state_timeout", or is
-- {"postpone"|"hibernate", boolean}; any other table is a list of actions (a
-- list's string elements can only be "postpone" or "hibernate").
local function action_list(a)
  if a == nil then return {} end
  local t = type(a)
  if t == "string" or t == "number" then return {a} end
  if t == "table" then
    local head = a[1]
    if head == "reply" or head == "next_event" or head == "timeout" or head == "state_timeout" then
      return {a}
    end
    if (head == "postpone" or head == "hibernate") and #a <= 2
       and (a[2] == nil or type(a[2]) == "boolean") then
      return {a}
    end
    return a
  end
  return nil
end

-- Applies a list of actions to the transition being built: replies are sent
-- at once; postpone, hibernate, next events and timeouts are collected in acc.
-- Returns nil, or an exit reason for a bad action.
local function apply_actions(_, actions, acc, context)
  local list = action_list(actions)
  local bad = context == "enter" and "bad_state_enter_action_from_state_function"
              or "bad_action_from_state_function"
  if list == nil then return {bad, mb.format(actions, 1)} end
  for i = 1, #list do
    local a = list[i]
    local ta, head = type(a), type(a) == "table" and a[1] or nil
    if a == "postpone" or head == "postpone" then
      if context ~= "event" then return {bad, mb.format(a, 1)} end
      acc.postpone = (a == "postpone") or a[2] ~= false
    elseif a == "hibernate" or head == "hibernate" then
      acc.hibernate = (a == "hibernate") or a[2] ~= false
    elseif head == "reply" then
      if type(a[2]) ~= "table" or not mb.is_pid(a[2][1]) then return {bad, mb.format(a, 1)} end
      gen.reply(a[2], a[3])
    elseif head == "next_event" then
      if context == "enter" or not valid_event_type(a[2]) then return {bad, mb.format(a, 1)} end
      acc.next_events[#acc.next_events + 1] = {a[2], a[3]}
    elseif ta == "number" then
      if a < 0 then return {bad, mb.format(a, 1)} end
      acc.timeouts[#acc.timeouts + 1] = {"event", nil, a, a}
    elseif head == "timeout" or head == "state_timeout" then
      if not valid_time(a[2]) then return {bad, mb.format(a, 1)} end
      acc.timeouts[#acc.timeouts + 1] = {head == "timeout" and "event" or "state", nil, a[2], a[3]}
    elseif type(head) == "table" and head[1] == "timeout" then
      if not valid_time(a[2]) then return {bad, mb.format(a, 1)} end
      acc.timeouts[#acc.timeouts + 1] = {"generic", head[2], a[2], a[3]}
    else
      return {bad, mb.format(a, 1)}
    end
  end
  return nil
end

-- Reads a callback's result. Returns a transition {state, data, actions,
-- repeat_enter} or {stop = reason, data, replies}; nil and a reason if malformed.
local function parse_result(s, r)
  local tag, n = r[2], r.n
  if tag == "next_state" and n >= 4 and n <= 5 then
    return {state = r[3], data = r[4], actions = r[5]}
  elseif tag == "keep_state" and n >= 3 and n <= 4 then
    return {state = s.state, data = r[3], actions = r[4]}
  elseif tag == "keep_state_and_data" and n <= 3 then
    return {state = s.state, data = s.data, actions = r[3]}
  elseif tag == "repeat_state" and n >= 3 and n <= 4 then
    return {state = s.state, data = r[3], actions = r[4], repeat_enter = true}
  elseif tag == "repeat_state_and_data" and n <= 3 then
    return {state = s.state, data = s.data, actions = r[3], repeat_enter = true}
  elseif tag == "stop" and n >= 3 and n <= 4 then
    return {stop = r[3], data = n == 4 and r[4] or s.data, stop_data = n == 4}
  elseif tag == "stop_and_reply" and n >= 4 and n <= 5 then
    return {stop = r[3], data = n == 5 and r[5] or s.data, replies = r[4]}
  end
  return nil
end

local function stop_with(s, tr, last)
  s.data = tr.data
  if tr.replies ~= nil then
    local list = action_list(tr.replies) or {}
    for _, a in ipairs(list) do
      if type(a) == "table" and a[1] == "reply" and type(a[2]) == "table" and mb.is_pid(a[2][1]) then
        gen.reply(a[2], a[3])
      else
        return terminate(s, {"bad_action_from_state_function", mb.format(a, 1)}, last)
      end
    end
  end
  return terminate(s, tr.stop, last)
end

-- Applies a callback result `r` for `event` (nil when r comes from init).
local function transition(s, r, event, last)
  if not r[1] then return terminate(s, failure_reason(r[2]), last) end
  local tr = parse_result(s, r)
  if tr == nil then
    return terminate(s, {"bad_return_from_state_function", render_return(r, 2)}, last)
  end
  if tr.stop ~= nil then return stop_with(s, tr, last) end
  local acc = {postpone = false, hibernate = false, next_events = {}, timeouts = {}}
  local bad = apply_actions(s, tr.actions, acc, event and "event" or "init")
  if bad then
    s.data = tr.data
    return terminate(s, bad, last)
  end
  local old = s.state
  local changed = event == nil or not gen.equal(tr.state, old)
  s.data = tr.data
  if acc.postpone then s.postponed[#s.postponed + 1] = event end
  if changed and event ~= nil then
    local st = find_timer(s, "state")
    if st then drop_timer(s, st) end
    if #s.postponed > 0 then
      -- the postponed events are retried first, in the order they came
      local q = s.postponed
      for _, e in ipairs(s.queue) do q[#q + 1] = e end
      s.queue, s.postponed = q, {}
    end
  end
  s.state = tr.state
  local enter = s.state_enter and (changed or tr.repeat_enter)
  while enter do
    local er = call_state(s, "enter", old)
    if not er[1] then return terminate(s, failure_reason(er[2]), last) end
    local etr = parse_result(s, er)
    if etr == nil then
      return terminate(s, {"bad_return_from_state_function", render_return(er, 2)}, last)
    end
    if etr.stop ~= nil then return stop_with(s, etr, last) end
    if not gen.equal(etr.state, s.state) then
      s.data = etr.data
      return terminate(s, {"bad_state_enter_return_from_state_function", render_return(er, 2)}, last)
    end
    s.data = etr.data
    bad = apply_actions(s, etr.actions, acc, "enter")
    if bad then return terminate(s, bad, last) end
    enter = etr.repeat_enter
  end
  -- next events go first, in the order given
  local ne = acc.next_events
  for i = #ne, 1, -1 do tinsert(s.queue, 1, ne[i]) end
  local event_timeout
  for _, t in ipairs(acc.timeouts) do
    if t[1] == "event" then
      event_timeout = t
    else
      set_timeout(s, t[1], t[2], t[3], t[4])
    end
  end
  -- an event timeout starts only when no event is waiting: any event cancels it
  if event_timeout and #s.queue == 0 then
    set_timeout(s, "event", nil, event_timeout[3], event_timeout[4])
  end
  s.hibernate = acc.hibernate
end

-- ------------------------------------------------------------------ the loop

local function system(s, msg)
  local from, req = msg[2], msg[3]
  local kind = type(req) == "table" and req[1]
  if kind == "get_state" then
    gen.reply(from, {s.state, s.data})
  else
    gen.reply(from, {nil, "unknown_system_message"})
  end
end

-- The next event: from the internal queue first, then the mailbox.
local function next_event(s)
  while true do
    local ev = tremove(s.queue, 1)
    if ev then
      if ev.tref then
        local t = s.by_ref[ev.tref]
        if t then
          drop_timer(s, t)
          ev[2] = t.content
          if t.kind ~= "event" and s.event_timer then drop_timer(s, s.event_timer) end
          return ev, ev
        end
      else
        if s.event_timer then drop_timer(s, s.event_timer) end
        return ev, ev
      end
    else
      if s.hibernate then
        s.hibernate = false
        collectgarbage()
      end
      local msg = mb.receive()
      local tag = type(msg) == "table" and msg[1] or nil
      ev = nil
      if tag == "$gen_call" then
        ev = {{"call", msg[2]}, msg[3]}
      elseif tag == "$gen_cast" then
        ev = {"cast", msg[2]}
      elseif tag == "$gen_stop" then
        terminate(s, msg[2], msg)
      elseif tag == "$gen_system" then
        system(s, msg)
      elseif tag == "EXIT" and msg[2] == s.parent then
        terminate(s, msg[3], msg)
      elseif tag == "$statem_timeout" then
        local t = s.by_ref[msg[2]]
        if t then
          t.timer = nil
          drop_timer(s, t)
          if t.kind ~= "event" and s.event_timer then drop_timer(s, s.event_timer) end
          return {event_type_of(t), t.content}, msg
        end
      else
        ev = {"info", msg}
      end
      if ev then
        if s.event_timer then drop_timer(s, s.event_timer) end
        return ev, msg
      end
    end
  end
end

local function loop(s)
  while true do
    local ev, last = next_event(s)
    transition(s, call_state(s, ev[1], ev[2]), ev, last)
  end
end

local function load_module(module)
  if type(module) == "string" then return require(module) end
  return module
end

-- The callback mode: mode, state_enter; nil and a reason if it is not valid.
local function callback_mode(mod)
  local cm = mod.callback_mode
  local a, b
  if type(cm) == "function" then
    local r = pack(xpcall(cm, on_error))
    if not r[1] then return nil, failure_reason(r[2]) end
    a, b = r[2], r[3]
  else
    a = cm
  end
  if type(a) == "table" then a, b = a[1], a[2] end
  if (a == "state_functions" or a == "handle_event_function") and (b == nil or b == "state_enter") then
    return a, b == "state_enter"
  end
  return nil, {"bad_callback_mode", mb.format(cm, 1)}
end

--- (internal) The body of a gen_statem process, started by gen.start.
---@param starter moonbeam.starter
function gen_statem._init_it(starter, module, arg)
  local ok, mod = pcall(load_module, module)
  if not ok or type(mod) ~= "table" then
    local reason = {"error", ok and ("module " .. mb.format(module) .. " is not a table") or tostring(mod), ""}
    logger().crash_report({what = "gen_statem", pid = mb.self(), name = starter.name, reason = reason})
    gen.init_ack(starter, "error", reason)
  end
  if type(mod.init) ~= "function" then
    gen.init_ack(starter, "error", {"error", "the callback module has no init function", ""})
  end
  local r = pack(xpcall(mod.init, on_error, arg))
  if not r[1] then
    local reason = failure_reason(r[2])
    if not gen.is_clean_exit(reason) then
      logger().crash_report({what = "gen_statem", pid = mb.self(), name = starter.name, reason = reason})
    end
    gen.init_ack(starter, "error", reason)
  end
  local tag = r[2]
  if tag == "ignore" and r.n == 2 then gen.init_ack(starter, "ignore") end
  if tag == "stop" and r.n == 3 then gen.init_ack(starter, "error", r[3]) end
  if tag ~= "ok" or r.n < 4 or r.n > 5 then
    gen.init_ack(starter, "error", {"bad_return_from_init", render_return(r, 2)})
  end
  local mode, enter = callback_mode(mod)
  if not mode then gen.init_ack(starter, "error", enter) end
  if mode == "handle_event_function" and type(mod.handle_event) ~= "function" then
    gen.init_ack(starter, "error", {"error", "callback mode handle_event_function needs a handle_event function", ""})
  end
  local s = {
    mod = mod, module = module, parent = starter.parent, name = starter.name,
    handle_event = mode == "handle_event_function" and mod.handle_event or nil,
    state_enter = enter, state = nil, data = nil,
    queue = {}, postponed = {}, timers = {}, by_ref = {}, event_timer = nil, hibernate = false,
  }
  gen.init_ack(starter, "ok")
  -- init's result is a transition into the first state, with its enter call
  -- (old state = the first state itself)
  s.state = r[3]
  transition(s, {true, "next_state", r[3], r[4], r[5], n = 5}, nil, nil)
  return loop(s)
end

-- ------------------------------------------------------------------ API

---@class moonbeam.gen_statem.opts
---@field name? string|table register the server: a string or {"via", registry, key}
---@field timeout? number|"infinity" how long init may take (default "infinity"); then start returns nil, "timeout"
---@field scheduler? integer|"here" where to run the server

--- Starts a state machine (not linked). Returns its pid; "ignore" if init
--- returned "ignore"; nil and a reason if init returned "stop", raised, returned
--- something else, took longer than opts.timeout, or the name is taken
--- (`{"already_started", pid}`).
---@param module string|table
---@param arg any passed to init
---@param opts? moonbeam.gen_statem.opts
---@return moonbeam.pid|"ignore"|nil
---@return any reason
function gen_statem.start(module, arg, opts)
  return gen.start_behaviour("gen_statem", false, module, arg, opts, "start")
end

--- Starts a state machine linked to the caller; see `start`.
---@param module string|table
---@param arg any
---@param opts? moonbeam.gen_statem.opts
---@return moonbeam.pid|"ignore"|nil
---@return any reason
function gen_statem.start_link(module, arg, opts)
  return gen.start_behaviour("gen_statem", true, module, arg, opts, "start_link")
end

--- Calls the state machine: the event `{"call", from}, request`, answered by a
--- `{"reply", from, value}` action. `timeout` defaults to "infinity", as in
--- Erlang. Fails (an exit) with {reason, {"gen_statem", "call", {server,
--- request}}}: "noproc", the server's exit reason, or "timeout".
---@param server moonbeam.statem_server
---@param request any
---@param timeout? number|"infinity" default "infinity"
---@return any reply
function gen_statem.call(server, request, timeout)
  if timeout == nil then timeout = "infinity" end
  return gen.call(server, request, timeout, LABEL)
end

--- Sends the event `"cast", request`. Always "ok", even to a dead server.
---@param server moonbeam.statem_server
---@param request any
---@return "ok"
function gen_statem.cast(server, request)
  return gen.cast(server, request)
end

--- Replies to a call outside of an action: `reply(from, value)`, or
--- `reply({"reply", from, value})`, or a list of such actions.
---@param from moonbeam.statem_from|table
---@param value? any
---@return "ok"
function gen_statem.reply(from, value)
  if type(from) == "table" and from[1] == "reply" then
    return gen.reply(from[2], from[3])
  end
  if type(from) == "table" and type(from[1]) == "table" and from[1][1] == "reply" then
    for _, a in ipairs(from) do gen.reply(a[2], a[3]) end
    return "ok"
  end
  return gen.reply(from, value)
end

--- Stops the state machine synchronously: terminate(reason, state, data) runs
--- and it exits with reason (default "normal"); timeout default "infinity".
---@param server moonbeam.statem_server
---@param reason? any
---@param timeout? number|"infinity"
---@return "ok"
function gen_statem.stop(server, reason, timeout)
  return gen.stop(server, reason, timeout, LABEL)
end

--- The pid of a state machine, or nil.
---@param server moonbeam.statem_server
---@return moonbeam.pid?
function gen_statem.whereis(server)
  return gen.whereis(server)
end

--- The state machine's current state and data (for debugging, as
--- :sys.get_state, which returns {State, Data}).
---@param server moonbeam.statem_server
---@param timeout? number|"infinity" default 5000
---@return any state
---@return any data
function gen_statem.get_state(server, timeout)
  local ms = gen.check_timeout(timeout, "gen_statem.get_state", 5000)
  local pid = gen.whereis(server)
  server = gen.server_term(server)
  if not pid then mb.exit({"noproc", {LABEL, "get_state", {server}}}) end
  if pid == mb.self() then mb.exit({"calling_self", {LABEL, "get_state", {server}}}) end
  local ref = mb.monitor(pid)
  mb.send(pid, {"$gen_system", {mb.self(), ref}, {"get_state"}})
  local msg = mb.receive(function(m)
    return type(m) == "table" and (m[1] == ref or (m[1] == "DOWN" and m[2] == ref))
  end, ms)
  if msg == nil then
    core.abandon(ref)
    mb.demonitor(ref, {flush = true})
    mb.exit({"timeout", {LABEL, "get_state", {server}}})
  end
  if msg[1] == "DOWN" then mb.exit({msg[5], {LABEL, "get_state", {server}}}) end
  mb.demonitor(ref, {flush = true})
  return msg[2][1], msg[2][2]
end

--- A child spec for a supervisor: the machine starts with the module's own
--- start_link(arg) when it has one, else gen_statem.start_link(module, arg,
--- {name = opts.name}).
---@param module string|table
---@param arg any
---@param opts? {id?: any, restart?: string, shutdown?: number|string, name?: string|table}
---@return table spec
local CHILD_SPEC_OPTS = {"id", "restart", "shutdown", "name"}

function gen_statem.child_spec(module, arg, opts)
  gen.check_module(module, "gen_statem.child_spec")
  opts = gen.check_opts(opts, CHILD_SPEC_OPTS, "gen_statem.child_spec")
  local ok, mod = true, module
  if type(module) == "string" then ok, mod = pcall(require, module) end
  if not ok then gen.error("gen_statem.child_spec: " .. tostring(mod)) end
  if type(mod) ~= "table" then
    gen.error("gen_statem.child_spec: module " .. mb.format(module, 1) .. " is not a table")
  end
  local id = opts.id
  if id == nil then
    id = type(module) == "string" and module or (type(mod.name) == "string" and mod.name) or "gen_statem"
  end
  local start
  if type(mod.start_link) == "function" and opts.name == nil then
    start = {module, "start_link", {arg}}
  else
    start = {"moonbeam.gen_statem", "start_link", {module, arg, opts.name ~= nil and {name = opts.name} or nil}}
  end
  return {id = id, start = start, restart = opts.restart or "permanent",
          shutdown = opts.shutdown or 5000, type = "worker"}
end

return gen_statem
