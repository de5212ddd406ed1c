--- moonbeam: Erlang/OTP-style processes for Lua.
--- The process API over the C module `moonbeam.core`. See docs/processes.md.
local core = require "moonbeam.core"

local mb = {}

---@alias moonbeam.pid userdata A process id (`<0.42.1>`); equal pids are the same value.
---@alias moonbeam.ref userdata A unique reference.
---@alias moonbeam.dest moonbeam.pid|string A pid or a registered name.

local exit_mt = core.exit_mt
exit_mt.__tostring = function(e) return "exit: " .. mb.format(e.reason) end

local DEFAULT_SHUTDOWN_MS = 5000

--- Main's end, as OTP's shutdown of a tree: every linked process that traps
--- exits gets main's exit signal (`{"EXIT", main, "normal"}`) and is waited for,
--- up to `ms` in all, before the runtime stops the rest.
local function shut_down_links(ms)
  local me = core.self()
  local info = core.info(me)
  local refs = {}
  for _, pid in ipairs(info and info.links or {}) do
    local pi = core.info(pid)
    if pi and pi.trap_exit then
      refs[#refs + 1] = core.monitor(pid)
      core.unlink(pid) -- the signal below stands for the link's: no second EXIT
      core.exit_signal(pid, "normal")
    end
  end
  if #refs == 0 then return end
  local deadline = core.clock() + ms / 1000
  local pending = #refs
  local function is_down(m)
    if type(m) ~= "table" or m[1] ~= "DOWN" then return false end
    for i = 1, #refs do if refs[i] == m[2] then return true end end
    return false
  end
  while pending > 0 do
    local left = (deadline - core.clock()) * 1000
    if left <= 0 or not core.receive(is_down, left) then return end
    pending = pending - 1
  end
end

local function ended(ms, ...)
  shut_down_links(ms)
  return ...
end

--- Starts the runtime, runs `main(...)` as the first process on scheduler 1 and
--- returns main's results once it ends. When main returns, its linked processes
--- that trap exits get its exit signal and have `opts.shutdown` ms (default
--- 5000) to finish (a gen_server or supervisor started with start_link runs its
--- terminate); then every other process is stopped.
--- An error in main is raised again here with the process's traceback; if main
--- is ended by an exit signal, an exit error with that reason is raised
--- (`mb.exit_reason(err)`, e.g. "killed").
---@param main function
---@param opts? {schedulers?: integer, shutdown?: number, blocking_pool?: integer}
---@return any ...
function mb.run(main, opts)
  -- misuse raises at the caller's line
  if type(main) ~= "function" then
    error(("bad argument #1 to 'run' (function expected, got %s)"):format(type(main)), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error(("bad argument #2 to 'run' (table expected, got %s)"):format(type(opts)), 2)
  end
  local n = opts and opts.schedulers
  if n ~= nil and (math.type(n) ~= "integer" or n < 1 or n > 1024) then
    error("bad argument #2 to 'run' (schedulers must be 1..1024)", 2)
  end
  if pcall(core.schedulers) then error("moonbeam is already running in this Lua state", 2) end
  local ms = DEFAULT_SHUTDOWN_MS
  if type(opts) == "table" and opts.shutdown ~= nil then
    ms = opts.shutdown
    if type(ms) ~= "number" or ms < 0 or ms ~= ms then
      error("run: opts.shutdown must be a number of ms >= 0", 2)
    end
  end
  return core.run(function(...) return ended(ms, main(...)) end, opts)
end

--- Starts the runtime driven from the host's own loop: call `mb.step` each frame.
---@type fun(opts?: {schedulers?: integer}): integer
mb.start = core.start

--- Runs scheduler 1 (the host's thread) for about `ms` milliseconds.
---@type fun(ms?: number): boolean
mb.step = core.step

--- Stops the runtime started with `mb.start`, ending every process.
---@type fun()
mb.stop = core.stop

--- Spawns a process running `fn(...)`. `fn` is copied into the new process with
--- its upvalues (modules are re-required by name); it may also be
--- `{module_name, function_name}`.
---@type fun(fn: function|string[], ...: any): moonbeam.pid
mb.spawn = core.spawn

--- Spawns and links atomically.
---@type fun(fn: function|string[], ...: any): moonbeam.pid
mb.spawn_link = core.spawn_link

--- Spawns and monitors atomically.
---@type fun(fn: function|string[], ...: any): moonbeam.pid, moonbeam.ref
mb.spawn_monitor = core.spawn_monitor

--- Spawns with options: `link`, `monitor` (then returns pid, ref), `name`
--- (register it), `trap_exit`, `scheduler` (1..N or "here"), `max_heap_size`
--- (bytes: past it the process ends with reason "max_heap_size").
---@class moonbeam.spawn_opts
---@field link? boolean
---@field monitor? boolean
---@field name? string
---@field trap_exit? boolean
---@field scheduler? integer|"here"
---@field max_heap_size? integer
---@type fun(opts: moonbeam.spawn_opts, fn: function|string[], ...: any): moonbeam.pid, moonbeam.ref?
mb.spawn_opt = core.spawn_opt

--- The calling process's pid.
---@type fun(): moonbeam.pid
mb.self = core.self

--- Sends a copy of `msg` to a pid or registered name. Sending to a dead pid
--- does nothing; an unregistered name raises. Unsendable values raise, naming
--- where they are (`msg.handler: cannot send a function`), and nothing is sent.
---@type fun(dest: moonbeam.dest, msg: any): true
mb.send = core.send

--- Returns the first message `match` accepts (any message without `match`),
--- leaving the others queued in order; `nil, "timeout"` after `timeout_ms`.
--- A number alone is the timeout: `mb.receive(500)`. Inside `match` no
--- receive, flush or call may be used (it raises).
---@type fun(match?: (fun(msg: any): boolean)|number, timeout_ms?: number): any, string?
mb.receive = core.receive

--- Removes every queued message; returns how many.
---@type fun(): integer
mb.flush = core.flush

--- Links the calling process and `pid` (idempotent). A dead pid sends the
--- caller an exit signal with reason "noproc".
---@type fun(pid: moonbeam.pid): true
mb.link = core.link

--- Removes a link on both sides (idempotent).
---@type fun(pid: moonbeam.pid): true
mb.unlink = core.unlink

--- Monitors a process: one `{"DOWN", ref, "process", pid, reason}` when it ends
--- ("noproc" at once if it is not alive).
---@type fun(pid: moonbeam.dest): moonbeam.ref
mb.monitor = core.monitor

--- Removes a monitor; `{flush = true}` also removes its DOWN if already queued.
---@type fun(ref: moonbeam.ref, opts?: {flush?: boolean}): boolean
mb.demonitor = core.demonitor

--- `mb.exit(reason)` ends the calling process with `reason` (raised as an exit
--- error that pcall can catch, as Erlang's exit/1). `mb.exit(pid, reason)`
--- sends an exit signal: "normal" is ignored unless trapped, "kill" cannot be
--- trapped and ends the process with "killed".
---@type fun(a: any, b?: any)
mb.exit = core.exit

--- The reason carried by an exit error (from `mb.exit(reason)`), or nil.
---@param err any
---@return any reason
function mb.exit_reason(err)
  if getmetatable(err) == exit_mt then return err.reason end
  return nil
end

--- Turns exit trapping on or off: exit signals then arrive as
--- `{"EXIT", from, reason}` messages. Returns the old value.
---@type fun(on: boolean): boolean
mb.trap_exit = core.trap_exit

--- Registers a name for a process (the caller by default).
---@type fun(name: string, pid?: moonbeam.pid): true|nil, string?
mb.register = core.register

--- Removes a registered name.
---@type fun(name: string): true|nil, string?
mb.unregister = core.unregister

--- The pid registered under `name`, or nil.
---@type fun(name: string): moonbeam.pid?
mb.whereis = core.whereis

--- Sends `msg` to `dest` after `ms` milliseconds; returns a timer.
---@type fun(ms: number, dest: moonbeam.dest, msg: any): integer
mb.send_after = core.send_after

--- Cancels a timer: the milliseconds that were left, or false if it already
--- fired or was cancelled.
---@type fun(timer: integer): integer|false
mb.cancel_timer = core.cancel_timer

--- Suspends the calling process for `ms` milliseconds; messages stay queued.
---@type fun(ms: number)
mb.sleep = core.sleep

--- A reference unique within the runtime.
---@type fun(): moonbeam.ref
mb.make_ref = core.make_ref

--- Whether `pid` names a live process.
---@type fun(pid: moonbeam.pid): boolean
mb.alive = core.alive

--- Inspects a process: status, mailbox_len, memory, reductions, scheduler,
--- links, monitors (held by it), monitored_by, name, trap_exit; nil if it is
--- not alive.
---@type fun(pid: moonbeam.pid): table?
mb.info = core.info

--- Every live process.
---@type fun(): moonbeam.pid[]
mb.processes = core.processes

--- Runtime counters, in total and per scheduler (`.schedulers[i]`).
---@type fun(): table
mb.stats = core.stats

--- Number of schedulers.
---@type fun(): integer
mb.schedulers = core.schedulers

--- Index (1-based) of the scheduler running the caller.
---@type fun(): integer
mb.scheduler = core.scheduler

--- An atom, for talking to Erlang (`mb.atom"ok"`); atoms arrive as strings.
---@type fun(s: string): userdata
mb.atom = core.atom

--- A tuple, for talking to Erlang; tuples arrive as sequences.
---@type fun(...: any): table
mb.tuple = core.tuple

--- Subscribes a process (the caller by default) to a topic of the core's
--- PubSub; the subscription ends with the process.
---@type fun(topic: string, pid?: moonbeam.pid): true|nil
mb.subscribe = core.subscribe

--- Unsubscribes (idempotent).
---@type fun(topic: string, pid?: moonbeam.pid): true
mb.unsubscribe = core.unsubscribe

--- Sends `msg` to every subscriber of `topic` but `skip`, encoding it once;
--- returns how many it reached.
---@type fun(topic: string, msg: any, skip?: moonbeam.pid): integer
mb.broadcast = core.broadcast

--- Number of subscribers of a topic.
---@type fun(topic: string): integer
mb.subscribers = core.subscribers

--- Delivers an OS signal ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1",
--- "SIGUSR2") to a process (the caller by default) as the message
--- `{"signal", name}` instead of its default action; `false` restores it.
--- With `deadline_ms`, the signal's arrival also arms the runtime's exit
--- deadline: if the runtime has not ended that long after the signal, the
--- program logs what did not stop and exits 1, even with every scheduler stuck.
---@type fun(name: string, pid?: moonbeam.pid|false, deadline_ms?: number): true
mb.on_signal = core.on_signal

--- Monotonic time in seconds (sub-microsecond resolution), for measuring.
---@type fun(): number
mb.clock = core.clock

--- Whether `v` is a pid.
---@type fun(v: any): boolean
mb.is_pid = core.is_pid

local ESCAPES = {['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\n", ["\t"] = "\t", ["\r"] = "\\r"}

--- A quoted string that stays readable: newlines and tabs as they are (a
--- traceback inside a reason reads as a traceback), other control bytes escaped.
local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return ESCAPES[c] or string.format("\\%03d", c:byte()) end) .. '"'
end

--- A readable rendering of any value (for logs and reasons).
---@param v any
---@return string
function mb.format(v, depth)
  depth = depth or 0
  if type(v) == "string" then return depth == 0 and v or quote(v) end
  if type(v) ~= "table" or depth > 4 then return tostring(v) end
  local parts, n = {}, #v
  for i = 1, n do parts[#parts + 1] = mb.format(v[i], depth + 1) end
  for k, val in pairs(v) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then
      parts[#parts + 1] = tostring(k) .. " = " .. mb.format(val, depth + 1)
    end
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

--- The logger called with crash reports: `fn(pid, name, message, traceback, value)`
--- (message: the error as text; value: the error value itself, a table stays a table).
--- It runs in the crashed process's VM; set it from a module every process
--- loads (moonbeam.logger does) to cover all schedulers.
---@type fun(fn?: fun(pid: moonbeam.pid, name: string?, message: string, traceback: string, value: any))
mb.set_crash_handler = core.set_crash_handler

mb.blocking, mb.blocking_pool = require("moonbeam.blocking").run, require("moonbeam.blocking").pool

return mb
