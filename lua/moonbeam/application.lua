--- moonbeam.application: start and stop a supervision tree as one unit.
---
--- An application is a module (found with `require`) with
---
---   start(args)  -> top_supervisor_pid [, state]   or   nil, reason
---   prep_stop(state) -> state     (optional, before the tree is stopped)
---   stop(state)                   (optional, after the tree has stopped)
---
--- `application.start(name, args)` spawns the application's master process
--- (registered as "$app:" .. name), which calls `start(args)`; the top
--- supervisor it returns is linked to the master. `application.stop(name)`
--- sends the tree the exit signal "shutdown" (the supervisors then stop their
--- children in reverse start order, each within its shutdown timeout) and waits
--- for it to end. `application.run(name, args)`, what `moonbeam --app NAME`
--- does, runs an application until SIGINT or SIGTERM. See docs/application.md.
local mb = require "moonbeam"
local core = require "moonbeam.core"

local application = {}

local PREFIX = "$app:"
local LABEL = "application"

--- How long `run` waits for the tree to stop after SIGINT/SIGTERM before it
--- gives up, in ms (as Erlang's init:stop shutdown_time; default 30 s).
--- `run`'s opts.shutdown_timeout and `moonbeam --shutdown-timeout MS`
--- override it.
application.shutdown_timeout = 30000

local function gen() return require "moonbeam.gen" end

local function log(level, message)
  local ok, logger = pcall(require, "moonbeam.logger")
  if ok and type(logger[level]) == "function" and pcall(logger[level], message) then return end
  io.stderr:write(string.format("[%s] %s\n", level, message))
end

-- Waits until the logger has written what was logged so far (before the
-- runtime stops, which would end the logger process too).
local function flush_log()
  local ok, logger = pcall(require, "moonbeam.logger")
  if ok and type(logger.flush) == "function" then pcall(logger.flush) end
end

local function check_name(name, who)
  if type(name) ~= "string" or name == "" then
    gen().error(string.format("application.%s: application name (a module name) expected, got %s", who,
                        type(name) == "string" and "\"\"" or type(name)))
  end
  if #name + #PREFIX > 255 then gen().error("application." .. who .. ": name too long") end
end

-- ------------------------------------------------------------------ the master

-- Calls mod[fname](...) catching errors and exits; returns ok, results...
local function protected(mod, fname, ...)
  return xpcall(mod[fname], function(err)
    local reason = mb.exit_reason(err)
    if reason ~= nil then return reason end
    return {"error", tostring(err), debug.traceback(nil, 2)}
  end, ...)
end

-- Stops the tree: exit signal "shutdown" to the top supervisor, wait for it.
local function stop_tree(name, sup, mod, state)
  if type(mod.prep_stop) == "function" then
    local ok, st = protected(mod, "prep_stop", state)
    if ok then state = st else log("error", name .. ": prep_stop failed: " .. mb.format(st)) end
  end
  if mb.alive(sup) then
    mb.exit(sup, "shutdown")
    mb.receive(function(m) return type(m) == "table" and m[1] == "EXIT" and m[2] == sup end)
  end
  if type(mod.stop) == "function" then
    local ok, err = protected(mod, "stop", state)
    if not ok then log("error", name .. ": stop failed: " .. mb.format(err)) end
  end
end

--- (internal) The application master: starts the application, then waits for
--- a stop request or for its tree to end.
---@param name string
---@param args table
---@param starter moonbeam.pid
---@param ref moonbeam.ref
function application._master(name, args, starter, ref)
  mb.trap_exit(true)
  local mod = require(name)
  local ok, sup, state = protected(mod, "start", args)
  if not ok then
    mb.send(starter, {"$app_ack", ref, false, sup})
    mb.exit("normal")
  end
  if not mb.is_pid(sup) then
    local reason = sup == nil and state or {"bad_return", sup}
    mb.send(starter, {"$app_ack", ref, false, reason})
    mb.exit(sup == nil and "normal" or reason)
  end
  mb.link(sup)
  mb.send(starter, {"$app_ack", ref, true, sup})
  while true do
    local msg = mb.receive()
    local tag = type(msg) == "table" and msg[1]
    if tag == "$gen_stop" then
      stop_tree(name, sup, mod, state)
      mb.exit(msg[2])
    elseif tag == "$gen_call" then
      gen().reply(msg[2], msg[3] == "supervisor" and sup or {"error", "unknown_call"})
    elseif tag == "EXIT" and msg[2] == sup then
      -- the tree ended by itself (its supervisor gave up, or someone killed it)
      local reason = msg[3]
      log(reason == "normal" and "info" or "error",
          string.format("application %s exited: %s", name, mb.format(reason)))
      if type(mod.stop) == "function" then protected(mod, "stop", state) end
      mb.exit(reason)
    end
  end
end

-- ------------------------------------------------------------------ API

--- Starts application `name`: loads the module, spawns its master, which calls
--- `start(args)`, and waits for it. Returns the top supervisor's pid, or nil
--- and a reason: `{"already_started", name}`, what `start` returned after nil,
--- `{"bad_return", value}` when start returned no pid, or the error or exit
--- reason when start raised. A module that cannot be loaded or has no `start`
--- function raises.
---@param name string the application's module name
---@param args? any[] passed to start (default {})
---@return moonbeam.pid|nil sup
---@return any reason
function application.start(name, args)
  check_name(name, "start")
  if args ~= nil and type(args) ~= "table" then
    gen().error("application.start: args must be a table, got " .. type(args))
  end
  local loaded, mod = pcall(require, name)
  if not loaded then
    gen().error(string.format("application.start: cannot load application '%s': %s", name, tostring(mod)))
  end
  if type(mod) ~= "table" or type(mod.start) ~= "function" then
    gen().error(string.format("application.start: module '%s' has no start function", name))
  end
  if mb.whereis(PREFIX .. name) then return nil, {"already_started", name} end
  local ref = mb.make_ref()
  local spawned, pid, mref = pcall(mb.spawn_opt, {monitor = true, name = PREFIX .. name},
                                   {"moonbeam.application", "_master"}, name, args or {}, mb.self(), ref)
  if not spawned then
    if mb.whereis(PREFIX .. name) then return nil, {"already_started", name} end
    error(pid, 0)
  end
  local msg = mb.receive(function(m)
    return type(m) == "table" and ((m[1] == "$app_ack" and m[2] == ref) or (m[1] == "DOWN" and m[2] == mref))
  end)
  if msg[1] == "DOWN" then return nil, msg[5] end
  if not msg[3] then
    mb.receive(function(m) return type(m) == "table" and m[1] == "DOWN" and m[2] == mref end)
    return nil, msg[4]
  end
  mb.demonitor(mref, {flush = true})
  return msg[4]
end

-- application.stop, running `before_kill()` (when given) after the timeout,
-- before the master and the tree are killed. `sup`: the top supervisor, when
-- the caller knows it (asking the master could wait for a master held up).
local function stop(name, timeout, before_kill, sup)
  local master = mb.whereis(PREFIX .. name)
  if not master then return nil, "not_started" end
  sup = sup or application.supervisor(name)
  local ok, err = pcall(gen().stop, master, "normal", timeout or "infinity", LABEL)
  if ok then return true end
  local reason = mb.exit_reason(err)
  if reason == nil then error(err, 0) end
  local why = type(reason) == "table" and reason[1] or reason
  if why == "noproc" then return nil, "not_started" end
  if why == "timeout" then
    if before_kill then before_kill() end
    mb.exit(master, "kill")
    if sup then mb.exit(sup, "kill") end
    return nil, "timeout"
  end
  return nil, why
end

--- Stops application `name`: `prep_stop(state)`, then the exit signal
--- "shutdown" to its top supervisor (which stops its children in reverse
--- order, each within its shutdown timeout), waiting for the tree to end, then
--- `stop(state)`. Returns true once all that is done, `nil, "not_started"`,
--- or `nil, "timeout"` if it took longer than `timeout` ms (the master and its
--- tree are then killed).
---@param name string
---@param timeout? number|"infinity" default "infinity"
---@return true|nil
---@return any err
function application.stop(name, timeout)
  check_name(name, "stop")
  gen().check_timeout(timeout, "application.stop", nil)
  return stop(name, timeout)
end

--- The top supervisor of a started application, or nil.
---@param name string
---@return moonbeam.pid?
function application.supervisor(name)
  check_name(name, "supervisor")
  local master = mb.whereis(PREFIX .. name)
  if not master then return nil end
  local ok, sup = pcall(gen().call, master, "supervisor", 5000, LABEL)
  if ok and mb.is_pid(sup) then return sup end
  return nil
end

--- The names of the running applications, sorted.
---@return string[]
function application.started()
  local names = {}
  for _, pid in ipairs(mb.processes()) do
    local info = mb.info(pid)
    local n = info and info.name
    if n and n:sub(1, #PREFIX) == PREFIX then names[#names + 1] = n:sub(#PREFIX + 1) end
  end
  table.sort(names)
  return names
end

-- ------------------------------------------------------------------ what did not stop

-- The tree under `pid` as it is now: {pid, id, children = {...}} in start
-- order, asking every supervisor (which_children); a process that does not
-- answer within `ms` is a leaf.
local function snapshot(pid, id, ms, depth)
  local node = {pid = pid, id = id, children = {}}
  if depth > 16 then return node end
  local ok, list = pcall(gen().call, pid, {"which_children"}, ms, LABEL)
  if ok and type(list) == "table" then
    for _, c in ipairs(list) do
      if type(c) == "table" and mb.is_pid(c[2]) then
        local child = c[3] == "supervisor" and snapshot(c[2], c[1], ms, depth + 1)
                      or {pid = c[2], id = c[1], children = {}}
        child.parent = pid
        node.children[#node.children + 1] = child
      end
    end
  end
  return node
end

-- The processes of a tree being stopped that hold the stop up: a supervisor
-- stops its children in reverse start order, so under a live supervisor the
-- one it waits for is its last live child (all live ones for a
-- dynamic_supervisor, whose ids are "undefined", stopped at once); a live
-- supervisor with no live child is itself stuck.
local function stuck(node, out)
  if not mb.alive(node.pid) then return out end
  local live = {}
  for _, c in ipairs(node.children) do
    if mb.alive(c.pid) then live[#live + 1] = c end
  end
  if #live == 0 then
    out[#out + 1] = node
  elseif live[#live].id == "undefined" then
    for _, c in ipairs(live) do stuck(c, out) end
  else
    stuck(live[#live], out)
  end
  return out
end

local function describe_pid(pid, info)
  local text = tostring(pid)
  if info and info.name then text = text .. " (" .. info.name .. ")" end
  return text
end

local function holding(info)
  if info and info.status == "running" then
    return ", holding scheduler " .. tostring(info.scheduler) .. " (a blocking C call?)"
  end
  return ""
end

local function describe_stuck(node)
  local info = mb.info(node.pid)
  local text = describe_pid(node.pid, info)
  if node.parent then
    text = text .. ", child " .. mb.format(node.id, 1) .. " of supervisor " .. tostring(node.parent)
  else
    text = text .. ", the top supervisor"
  end
  return text .. holding(info)
end

-- What holds a stop up: the tree's stuck processes, then any other process
-- that holds a scheduler (running in a C call: it also holds up every process
-- of its VM, a supervisor that would answer included).
local function not_stopped(tree)
  local names, seen = {}, {}
  for _, node in ipairs(stuck(tree, {})) do
    names[#names + 1] = describe_stuck(node)
    seen[node.pid] = true
  end
  local me = mb.self()
  for _, pid in ipairs(mb.processes()) do
    local info = mb.info(pid)
    if pid ~= me and not seen[pid] and info and info.status == "running" then
      names[#names + 1] = describe_pid(pid, info) .. holding(info)
    end
  end
  return names
end

-- ------------------------------------------------------------------ run

local RUN_OPTS = {"shutdown_timeout", "halt"}

-- With opts.halt, how long after the shutdown timeout the watchdog thread
-- ends the OS process if `run` itself could not (its VM held by a process
-- stuck in a C call).
local HALT_GRACE_MS = 1000

--- Runs application `name` until SIGINT or SIGTERM (or the message
--- `{"signal", name}` from elsewhere), then stops it; what `moonbeam --app`
--- does. Call it from a process (the main one of `mb.run`). Returns the exit
--- status for the OS: 0 after a signal and a clean stop; 1 if the application
--- failed to start, did not stop within the shutdown timeout, or its tree
--- ended by itself (a supervisor that reached its restart intensity, a
--- crash); 0 if its tree ended by itself with reason "normal".
---
--- `opts.shutdown_timeout` (ms, default application.shutdown_timeout, 30 s)
--- bounds the stop: after it, `run` logs which processes did not stop (on
--- stderr, directly: the logger may be one of them), kills the tree and
--- returns 1; with `opts.halt` it ends the OS process at once with status 1
--- instead (what `moonbeam --app` does: a process stuck in a C call cannot
--- be killed, and would keep the runtime from ending). With opts.halt the
--- core's exit deadline (core.shutdown_deadline) is armed too, 1 s later:
--- should this process be unable to run, the watchdog thread logs the
--- processes that hold a scheduler or are alive and ends the OS process.
---@param name string
---@param args? any[]
---@param opts? {shutdown_timeout?: number|"infinity", halt?: boolean}
---@return integer status
function application.run(name, args, opts)
  check_name(name, "run")
  opts = gen().check_opts(opts, RUN_OPTS, "application.run")
  local timeout = opts.shutdown_timeout
  if timeout == nil then timeout = application.shutdown_timeout end
  gen().check_timeout(timeout, "application.run: shutdown_timeout")
  -- when halting, the signal itself arms the core's exit deadline (from the
  -- runtime's signal thread), so even a runner whose VM is stuck in C ends
  local deadline = (opts.halt and timeout ~= "infinity") and timeout + HALT_GRACE_MS or nil
  mb.on_signal("SIGINT", nil, deadline)
  mb.on_signal("SIGTERM", nil, deadline)
  local sup, err = application.start(name, args)
  if not sup then
    log("error", string.format("application %s failed to start: %s", name, mb.format(err)))
    flush_log()
    return 1
  end
  local master = mb.whereis(PREFIX .. name)
  if not master then -- its tree already ended (and the master logged why)
    flush_log()
    return 1
  end
  local mref = mb.monitor(master)
  local msg = mb.receive(function(m)
    return type(m) == "table" and (m[1] == "signal" or (m[1] == "DOWN" and m[2] == mref))
  end)
  if msg[1] == "DOWN" then
    -- the tree ended by itself (the master already logged why): a top
    -- supervisor that reached its restart intensity exits "shutdown", and
    -- that is a failure of the application, as it is of an OTP node
    flush_log()
    return msg[5] == "normal" and 0 or 1
  end
  -- a second signal during the stop gets the OS's default action
  mb.on_signal("SIGINT", false)
  mb.on_signal("SIGTERM", false)
  mb.demonitor(mref, {flush = true})
  log("info", string.format("%s received, stopping application %s", tostring(msg[2]), name))
  local halting = opts.halt and timeout ~= "infinity" and type(core.shutdown_deadline) == "function"
  if halting then core.shutdown_deadline(timeout + HALT_GRACE_MS, 1, "application " .. name) end
  local limit, t0 = timeout, mb.clock()
  local tree = snapshot(sup, nil, timeout == "infinity" and 1000 or math.max(1, math.min(1000, timeout)), 0)
  if timeout ~= "infinity" then timeout = math.max(0, timeout - math.floor((mb.clock() - t0) * 1000)) end
  local names = {}
  local ok, serr = stop(name, timeout, function() names = not_stopped(tree) end, sup)
  if not ok and serr == "timeout" then
    if #names == 0 then names[1] = "the application master " .. tostring(master) end
    local line = string.format("application %s did not stop within %s ms; not stopped: %s",
                               name, tostring(limit), table.concat(names, "; "))
    local loaded, logger = pcall(require, "moonbeam.logger")
    if loaded then
      line = logger.format({level = "error", message = line, time = os.time(), pid = mb.self()})
    else
      line = "[error] " .. line
    end
    io.stderr:write(line, "\n")
    io.stderr:flush()
    if opts.halt then os.exit(1) end
    return 1
  end
  if halting then core.shutdown_deadline(nil) end
  if not ok and serr ~= "not_started" then
    log("error", string.format("application %s did not stop cleanly: %s", name, mb.format(serr)))
    flush_log()
    return 1
  end
  flush_log()
  return 0
end

return application
