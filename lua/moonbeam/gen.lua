--- moonbeam.gen: the protocol every OTP-style server speaks (docs/gen_protocol.md),
--- and what the behaviours share to start their processes.
---
--- The five functions other modules build on keep these signatures:
---
---   gen.whereis(server)                      -> pid | nil
---       server: a pid (returned as is), a registered name (string), or
---       {"via", registry, key}: resolved with
---       require("moonbeam.registry").whereis_name(registry, key), or with
---       registry.whereis_name(key) when `registry` is a table (a custom via
---       module with whereis_name/register_name).
---   gen.call(server, request, timeout, label) -> reply
---       timeout: ms or "infinity" (nil: 5000). label names the behaviour in
---       the exit reason (nil: "gen"). Fails (mb.exit) with
---       {reason, {label, "call", {server, request}}}: reason is "noproc" for a
---       dead or unknown server, the server's exit reason if it dies during the
---       call, "timeout" after the timeout (the late reply is then dropped and
---       never reaches the caller's mailbox), "calling_self" for a call to itself.
---   gen.cast(server, request)                 -> "ok"
---       Always "ok", even to a dead or unknown server.
---   gen.reply(from, value)                    -> "ok"
---       from: the {pid, ref} a server got with a call.
---   gen.stop(server, reason, timeout, label)  -> "ok"
---       Sends {"$gen_stop", reason} and waits for the server to exit (reason
---       nil: "normal", timeout nil: "infinity"). Fails with
---       {"noproc" | "timeout" | other_exit_reason, {label, "stop", {server, reason}}}.
---
--- Starting (used by gen_server, supervisor, dynamic_supervisor, and open to
--- any behaviour): `gen.start(fn, opts)` spawns a process running
--- `fn(starter, ...)`, registers its name first when `opts.name` is given, and
--- waits until `fn` calls `gen.init_ack(starter, status, value)`.
---
--- Functions and tables of functions cannot travel in messages. `gen.pack(value)`
--- turns any value made of data, tables (cycles, sharing and metatables kept),
--- Lua functions (with their upvalues, shared cells kept) and module references
--- into an opaque packed value that messages carry, and `gen.unpack(packed)`
--- rebuilds it in another process, on any scheduler. It is mb.spawn's packer:
--- a loaded module travels as its name and is re-required on the other side; a
--- C function, or a function or table that cannot be copied, as its place in a
--- loaded module.
local mb = require "moonbeam"
local core = require "moonbeam.core"

local gen = {}

local unpack = table.unpack
local fmt = string.format

-- ------------------------------------------------------------------ packing

--- Turns `value` into a packed value that mb.send and mb.spawn can carry:
--- tables of functions, closures (with their upvalues), cycles and shared
--- tables are all kept (the same packer as mb.spawn's, in C). Rebuild it with
--- `gen.unpack`, in any process. Raises naming the part that cannot travel.
---@param value any
---@param where? string what to name in an error (default "value")
---@return userdata packed
function gen.pack(value, where)
  if where ~= nil and type(where) ~= "string" then
    gen.error("gen.pack: where must be a string, got " .. type(where))
  end
  return core.pack(value, where)
end

--- Rebuilds a value made by `gen.pack` (in this process's VM).
---@param data userdata a packed value
---@return any
function gen.unpack(data) return core.unpack(data) end

-- ------------------------------------------------------------------ errors

-- The directory of moonbeam's own Lua modules ("@/path/to/moonbeam/").
local HERE = debug.getinfo(1, "S").source:match("^(@.*[/\\])[^/\\]*$")

local function internal(info)
  return info.what == "C" or (HERE ~= nil and info.source:sub(1, #HERE) == HERE)
end

--- Raises `msg` at the line of the code that called into moonbeam: the
--- first frame on the stack that is neither a C function nor in one of
--- moonbeam's own modules (so an error names the user's file:line, whatever
--- the depth of the helpers that found the mistake).
---@param msg any
function gen.error(msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if info == nil then
      level = 0
      break
    end
    if not internal(info) then break end
    level = level + 1
  end
  error(msg, level)
end

--- The message for the first key of `t` (in sorted order) that is not in
--- `valid`, naming it and the valid ones: `who: unknown option 'x' (valid
--- options: a, b)`; nil when every key is valid. `what` replaces "option".
---@param t table
---@param valid string[] the valid keys, in the order to list them
---@param who string
---@param what? string default "option"
---@return string?
function gen.unknown_key(t, valid, who, what)
  if type(t) ~= "table" or type(valid) ~= "table" then
    gen.error(fmt("gen.unknown_key: expected a table and a list of valid keys, got %s and %s", type(t), type(valid)))
  end
  who = who or "?"
  local bad
  for k in next, t do
    local found = false
    for i = 1, #valid do
      if valid[i] == k then
        found = true
        break
      end
    end
    if not found and (bad == nil or tostring(k) < tostring(bad)) then bad = k end
  end
  if bad == nil then return nil end
  what = what or "option"
  return fmt("%s: unknown %s %s (valid %ss: %s)", who, what,
             type(bad) == "string" and ("'" .. bad .. "'") or mb.format(bad, 1),
             what, table.concat(valid, ", "))
end

--- Raises (with gen.error) the message of gen.unknown_key, if any.
---@param t table
---@param valid string[]
---@param who string
---@param what? string
function gen.check_keys(t, valid, who, what)
  local msg = gen.unknown_key(t, valid, who, what)
  if msg then gen.error(msg) end
end

--- Raises (with gen.error) unless `opts` is nil or a table; returns it (an
--- empty table for nil) after checking its keys against `valid`.
---@param opts any
---@param valid string[]
---@param who string
---@return table
function gen.check_opts(opts, valid, who)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    gen.error(fmt("%s: opts must be a table, got %s", who, type(opts)))
  end
  gen.check_keys(opts, valid, who)
  return opts
end

-- ------------------------------------------------------------------ names

local function registry_mod() return require "moonbeam.registry" end

local function is_via(server)
  return type(server) == "table" and server[1] == "via" and server[2] ~= nil and server[3] ~= nil
end

--- Checks a server name given to a start function: nil, a string, or
--- {"via", registry, key}. Raises on anything else.
---@param name any
---@param who string the function to name in the error
function gen.check_name(name, who)
  if name == nil or is_via(name) then return end
  if type(name) == "string" then
    if #name == 0 or #name > 255 then gen.error(who .. ": a name must be 1..255 bytes") end
    return
  end
  gen.error(fmt("%s: opts.name must be a string or {\"via\", registry, key}, got %s",
                who, mb.format(name)))
end

--- A server reference as it can travel in an exit reason: a via name whose
--- registry is a module table names the module instead (its functions
--- cannot be sent).
---@param server any
---@return any
function gen.server_term(server)
  if is_via(server) and type(server[2]) == "table" then
    local name = "<module>"
    for n, m in next, package.loaded do
      if m == server[2] and type(n) == "string" then
        name = n
        break
      end
    end
    return {"via", name, server[3]}
  end
  return server
end

--- The pid behind a server reference, or nil if there is none.
---@param server moonbeam.pid|string|table a pid, a registered name or {"via", registry, key}
---@return moonbeam.pid?
function gen.whereis(server)
  if mb.is_pid(server) then return server end
  local t = type(server)
  if t == "string" then return mb.whereis(server) end
  if is_via(server) then
    local reg, key = server[2], server[3]
    local pid
    if type(reg) == "table" and type(reg.whereis_name) == "function" then
      pid = reg.whereis_name(key)
    else
      pid = registry_mod().whereis_name(reg, key)
    end
    if mb.is_pid(pid) then return pid end
    return nil
  end
  gen.error(fmt("bad server: a pid, a registered name or {\"via\", registry, key} expected, got %s",
                t == "table" and mb.format(server) or t))
end

--- Registers the calling process under `name` (string or via).
---@param name string|table
---@return true|nil ok
---@return moonbeam.pid? existing the process that holds the name when it is taken
function gen.register_name(name)
  if not (type(name) == "string" or is_via(name)) then
    gen.error("gen.register_name: a name must be a string or {\"via\", registry, key}, got " .. mb.format(name, 1))
  end
  if type(name) == "string" then
    if mb.register(name) then return true end
    return nil, mb.whereis(name)
  end
  local reg, key = name[2], name[3]
  local ok, err
  if type(reg) == "table" and type(reg.register_name) == "function" then
    ok, err = reg.register_name(key, mb.self())
  else
    ok, err = registry_mod().register_name(reg, key, mb.self())
  end
  if ok and ok ~= "no" then return true end
  if type(err) == "table" and mb.is_pid(err[2]) then return nil, err[2] end
  return nil, gen.whereis(name)
end

--- Whether an exit reason is a clean one: "normal", "shutdown" or {"shutdown", _}.
---@param reason any
---@return boolean
function gen.is_clean_exit(reason)
  return reason == "normal" or reason == "shutdown"
      or (type(reason) == "table" and reason[1] == "shutdown" and #reason == 2)
end

--- Structural equality of two values (tables compared key by key), as
--- Erlang's `==` on terms: what arrives in a message is a copy.
---@param a any
---@param b any
---@return boolean
function gen.equal(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in next, a do
    if not gen.equal(v, b[k]) then return false end
  end
  for k in next, b do
    if a[k] == nil then return false end
  end
  return true
end

-- ------------------------------------------------------------------ call, cast, reply, stop

local function check_timeout(timeout, who, default)
  if timeout == nil then return default end
  if timeout == "infinity" then return nil end
  if type(timeout) ~= "number" or timeout < 0 or timeout ~= timeout then
    gen.error(fmt("%s: timeout must be a number of ms >= 0 or \"infinity\", got %s",
                  who, mb.format(timeout)))
  end
  return timeout
end
--- Checks a timeout argument: ms >= 0 or "infinity" (returned as nil);
--- nil gives `default`. Raises, naming `who`, on anything else.
---@param timeout any
---@param who string
---@param default? number
---@return number?
function gen.check_timeout(timeout, who, default)
  return check_timeout(timeout, who, default)
end

--- Calls a server: sends {"$gen_call", {self, ref}, request} and waits for the
--- reply. See the file header for the failures.
---@param server moonbeam.pid|string|table
---@param request any
---@param timeout? number|"infinity" default 5000
---@param label? string the behaviour named in an exit reason (default "gen")
---@return any reply
function gen.call(server, request, timeout, label)
  label = label or "gen"
  if type(label) ~= "string" then gen.error("gen.call: label must be a string, got " .. type(label)) end
  local ms = check_timeout(timeout, label .. ".call", 5000)
  local pid = gen.whereis(server)
  server = gen.server_term(server)
  if not pid then mb.exit({"noproc", {label, "call", {server, request}}}) end
  local me = mb.self()
  if pid == me then mb.exit({"calling_self", {label, "call", {server, request}}}) end
  -- core.call monitors pid, sends {"$gen_call", {me, ref}, request} and waits
  -- for the reply tagged ref or the monitor's DOWN, looking only at messages
  -- queued since (by their headers); a late reply is dropped on arrival.
  local ok, got, reason = core.call(pid, request, ms)
  if ok then return got end
  if got == "timeout" then mb.exit({"timeout", {label, "call", {server, request}}}) end
  mb.exit({reason, {label, "call", {server, request}}})
end

--- Casts a request: {"$gen_cast", request}, no reply. Always "ok".
---@param server moonbeam.pid|string|table
---@param request any
---@return "ok"
function gen.cast(server, request)
  local ok, pid = pcall(gen.whereis, server)
  if not ok then gen.error("cast: " .. tostring(pid)) end
  if pid then
    local sent, err = pcall(mb.send, pid, {"$gen_cast", request})
    if not sent then gen.error("cast: " .. tostring(err)) end
  end
  return "ok"
end

--- Replies to a call: `from` is the {pid, ref} the server got with it.
---@param from {[1]: moonbeam.pid, [2]: moonbeam.ref}
---@param value any
---@return "ok"
function gen.reply(from, value)
  if type(from) ~= "table" or not mb.is_pid(from[1]) or from[2] == nil then
    gen.error("reply: from must be the {pid, ref} given with the call, got " .. mb.format(from))
  end
  core.reply(from[1], from[2], value)
  return "ok"
end

--- Stops a server synchronously: it runs its terminate callback and exits
--- with `reason`; returns "ok" once it is gone.
---@param server moonbeam.pid|string|table
---@param reason? any default "normal"
---@param timeout? number|"infinity" default "infinity"
---@param label? string default "gen"
---@return "ok"
function gen.stop(server, reason, timeout, label)
  label = label or "gen"
  if type(label) ~= "string" then gen.error("gen.stop: label must be a string, got " .. type(label)) end
  if reason == nil then reason = "normal" end
  local ms = check_timeout(timeout, label .. ".stop", nil)
  local pid = gen.whereis(server)
  server = gen.server_term(server)
  if not pid then mb.exit({"noproc", {label, "stop", {server, reason}}}) end
  if pid == mb.self() then mb.exit({"calling_self", {label, "stop", {server, reason}}}) end
  local ref = mb.monitor(pid)
  mb.send(pid, {"$gen_stop", reason})
  local msg = mb.receive(function(m)
    return type(m) == "table" and m[1] == "DOWN" and m[2] == ref
  end, ms)
  if msg == nil then
    mb.demonitor(ref, {flush = true})
    mb.exit({"timeout", {label, "stop", {server, reason}}})
  end
  local got = msg[5]
  if gen.equal(got, reason) then return "ok" end
  mb.exit({got, {label, "stop", {server, reason}}})
end

-- ------------------------------------------------------------------ spawning and starting

--- Spawns `fn(...)` like mb.spawn_opt (kept for callers written when mb.spawn
--- could not move tables of functions; both use the same packer now).
---@param opts table mb.spawn_opt's options
---@param fn function|string[]
---@return moonbeam.pid pid
---@return moonbeam.ref? ref
function gen.spawn(opts, fn, ...)
  if type(fn) ~= "function" and not (type(fn) == "table" and type(fn[1]) == "string") then
    gen.error("spawn: expected a function or {module_name, function_name}, got " .. type(fn))
  end
  if opts ~= nil and type(opts) ~= "table" then gen.error("spawn: opts must be a table, got " .. type(opts)) end
  return core.spawn_opt(opts or {}, fn, ...)
end

local function resolve_fn(fn)
  if type(fn) == "table" then
    local mod = type(fn[1]) == "string" and require(fn[1]) or fn[1]
    local f = mod[fn[2]]
    if type(f) ~= "function" then error(fmt("%s.%s is not a function", mb.format(fn[1]), fn[2])) end
    return f
  end
  return fn
end

---@class moonbeam.start_opts
---@field link? boolean link the new process to the caller
---@field name? string|table a name to register, or {"via", registry, key}
---@field timeout? number|"infinity" how long to wait for the ack (default "infinity")
---@field args? table the arguments after `starter` (a list; `n` for trailing nils)
---@field scheduler? integer|"here" as mb.spawn_opt

---@class moonbeam.starter
---@field starter moonbeam.pid the process waiting in gen.start
---@field parent moonbeam.pid the starter if linked, else the process itself (OTP's parent)
---@field ref moonbeam.ref tags the acknowledgement
---@field name? string|table the name the process registered

--- (internal) The body of a process started by gen.start.
function gen._start_body(fn, args, st)
  if not st.linked then st.parent = mb.self() end
  if st.name ~= nil then
    local ok, existing = gen.register_name(st.name)
    if not ok then gen.init_ack(st, "error", {"already_started", existing}, "normal") end
  end
  return resolve_fn(fn)(st, unpack(args, 1, args.n))
end

--- Acknowledges the start, from the started process: `"ok"` lets it run on
--- (gen.start returns its pid); `"ignore"` ends it normally (gen.start returns
--- "ignore"); `"error", reason` ends it with `reason`, or with `exit_reason`
--- when given (gen.start returns nil, reason).
---@param starter moonbeam.starter
---@param status "ok"|"ignore"|"error"
---@param value? any the reason, for "error"
---@param exit_reason? any
local ACK_STATUS = {ok = true, ignore = true, error = true}

function gen.init_ack(starter, status, value, exit_reason)
  if type(starter) ~= "table" or not mb.is_pid(starter.starter) or starter.ref == nil then
    gen.error("gen.init_ack: starter must be the table given to the started function, got "
              .. (type(starter) == "table" and mb.format(starter, 1) or type(starter)))
  end
  if not ACK_STATUS[status] then
    gen.error("gen.init_ack: status must be \"ok\", \"ignore\" or \"error\", got " .. mb.format(status, 1))
  end
  mb.send(starter.starter, {"$gen_ack", starter.ref, status, value})
  if status == "ignore" then mb.exit("normal") end
  if status ~= "ok" then
    if exit_reason == nil then exit_reason = value end
    if exit_reason == nil then exit_reason = "normal" end
    mb.exit(exit_reason)
  end
end

local function trapping()
  local info = mb.info(mb.self())
  return info and info.trap_exit
end

local function flush_exit(pid)
  mb.receive(function(m) return type(m) == "table" and m[1] == "EXIT" and m[2] == pid end, 0)
end

--- Checks that `module` can be a behaviour's callback module (a module name,
--- or a table with an init function or a metatable); raises naming `who`.
---@param module any
---@param who string e.g. "gen_server.start"
function gen.check_module(module, who)
  local t = type(module)
  if t == "string" then return end
  if t == "table" and (type(module.init) == "function" or getmetatable(module) ~= nil) then return end
  gen.error(fmt("%s: module must be a module name or a table with an init function, got %s",
                who, t == "table" and mb.format(module) or t))
end

--- Checks, in the caller, that a callback module given by name loads and has
--- an init function; a table passes through. Raises naming `who` at the
--- caller's caller (so a bad module name fails where it is written).
---@param module string|table
---@param who string e.g. "supervisor.start_link"
function gen.require_module(module, who)
  if type(module) ~= "string" then return end
  if type(who) ~= "string" then who = "gen.require_module" end
  local ok, mod = pcall(require, module)
  if not ok or type(mod) ~= "table" or type(mod.init) ~= "function" then
    gen.error(who .. ": " .. (ok and ("module '" .. module .. "' has no init function") or tostring(mod)))
  end
end

--- Starts a behaviour's process: checks `module` and `opts` (name, timeout,
--- scheduler), then runs `require("moonbeam." .. label)._init_it(module, arg)`
--- through gen.start. Errors name `label.who` at the caller's caller.
---@param label string "gen_server", "gen_statem"
---@param link boolean
---@param module string|table
---@param arg any
---@param opts? table
---@param who string "start" or "start_link"
---@return moonbeam.pid|"ignore"|nil
---@return any reason
local BEHAVIOUR_OPTS = {"name", "timeout", "scheduler"}

function gen.start_behaviour(label, link, module, arg, opts, who)
  if type(label) ~= "string" or type(who) ~= "string" then
    gen.error("gen.start_behaviour: label and who must be strings (e.g. \"gen_server\", \"start\")")
  end
  local name = label .. "." .. who
  gen.check_module(module, name)
  opts = gen.check_opts(opts, BEHAVIOUR_OPTS, name)
  gen.check_name(opts.name, name)
  gen.check_timeout(opts.timeout, name)
  return gen.start({"moonbeam." .. label, "_init_it"},
                   {link = link, name = opts.name, timeout = opts.timeout, scheduler = opts.scheduler,
                    args = {module, arg, n = 2}})
end

local START_OPTS = {"link", "name", "timeout", "args", "scheduler"}

--- Starts a process running `fn(starter, ...opts.args)` and waits until it
--- calls `gen.init_ack`. When `opts.name` is given the new process registers
--- it before fn runs; a taken name makes the start fail with
--- `{"already_started", pid}`.
---
--- Returns the pid (ack "ok"), "ignore", or nil and a reason: the ack's
--- reason, the process's exit reason if it ends before acknowledging, or
--- "timeout" (the process is then killed). With `opts.link` the process is
--- linked to the caller from the start, as proc_lib:start_link: if it fails
--- abnormally a caller that does not trap exits fails too; a trapping caller
--- gets no stray EXIT for it.
---@param fn function|table a function or {module, function_name}
---@param opts? moonbeam.start_opts
---@return moonbeam.pid|"ignore"|nil
---@return any reason
function gen.start(fn, opts)
  if type(fn) ~= "function" and not (type(fn) == "table" and (type(fn[1]) == "string" or type(fn[1]) == "table")
                                     and type(fn[2]) == "string") then
    gen.error("gen.start: expected a function or {module, function_name}, got "
              .. (type(fn) == "table" and mb.format(fn) or type(fn)))
  end
  opts = gen.check_opts(opts, START_OPTS, "gen.start")
  gen.check_name(opts.name, "gen.start")
  local ms = check_timeout(opts.timeout, "gen.start", nil)
  if opts.args ~= nil and type(opts.args) ~= "table" then
    gen.error("gen.start: opts.args must be a list, got " .. type(opts.args))
  end
  local me = mb.self()
  local ref = mb.make_ref()
  local args = table.pack(unpack(opts.args or {}, 1, (opts.args or {}).n or #(opts.args or {})))
  local st = {starter = me, parent = me, ref = ref, name = opts.name, linked = opts.link and true or false}
  local pid, mref = core.spawn_opt({link = opts.link, monitor = true, scheduler = opts.scheduler},
                                   {"moonbeam.gen", "_start_body"}, fn, args, st)
  local msg = mb.receive(function(m)
    return type(m) == "table" and ((m[1] == "$gen_ack" and m[2] == ref) or (m[1] == "DOWN" and m[2] == mref))
  end, ms)
  if msg == nil then
    if opts.link then mb.unlink(pid) end
    mb.exit(pid, "kill")
    mb.demonitor(mref, {flush = true})
    if opts.link and trapping() then flush_exit(pid) end
    return nil, "timeout"
  end
  if msg[1] == "$gen_ack" and msg[3] == "ok" then
    mb.demonitor(mref, {flush = true})
    return pid
  end
  if msg[1] == "$gen_ack" then
    -- the process exits right after a failed ack: wait for it, so that a
    -- name it held is free and no stray EXIT is left behind
    mb.receive(function(m) return type(m) == "table" and m[1] == "DOWN" and m[2] == mref end)
  end
  -- a link's EXIT travels before the monitor's DOWN: it is queued by now
  if opts.link and trapping() then flush_exit(pid) end
  if msg[1] == "DOWN" then return nil, msg[5] end
  if msg[3] == "ignore" then return "ignore" end
  return nil, msg[4]
end

return gen
