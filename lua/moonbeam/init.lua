--- moonbeam: Erlang/OTP-style processes for Lua.
--- The process API over the C module `moonbeam.core`. See docs/processes.md.
local core = require "moonbeam.core"

local mb = {}

---@alias moonbeam.pid userdata A process id (`<0.42.1>`); equal pids are the same value.
---@alias moonbeam.ref userdata A unique reference.
---@alias moonbeam.dest moonbeam.pid|string A pid or a registered name.

local exit_mt = core.exit_mt
exit_mt.__tostring = function(e) return "exit: " .. mb.format(e.reason) end

--- Starts the runtime, runs `main(...)` as the first process on scheduler 1 and
--- returns main's results once it ends, after stopping every other process.
--- An error in main is raised again here with the process's traceback.
---@param main function
---@param opts? {schedulers?: integer, blocking_pool?: integer}
---@return any ...
function mb.run(main, opts)
  return core.run(main, opts)
end

--- Starts the runtime driven from the host's own loop: call `mb.step` each frame.
---@param opts? {schedulers?: integer}
---@return integer schedulers
function mb.start(opts) return core.start(opts) end

--- Runs scheduler 1 (the host's thread) for about `ms` milliseconds.
---@param ms? number default 1
---@return boolean running false once the runtime has stopped
function mb.step(ms) return core.step(ms) end

--- Stops the runtime started with `mb.start`, ending every process.
function mb.stop() return core.stop() end

--- Spawns a process running `fn(...)`. `fn` is copied into the new process with
--- its upvalues (modules are re-required by name); it may also be
--- `{module_name, function_name}`.
---@param fn function|string[]
---@return moonbeam.pid
function mb.spawn(fn, ...) return core.spawn_opt({}, fn, ...) end

--- Spawns and links atomically.
---@param fn function|string[]
---@return moonbeam.pid
function mb.spawn_link(fn, ...) return core.spawn_opt({link = true}, fn, ...) end

--- Spawns and monitors atomically.
---@param fn function|string[]
---@return moonbeam.pid pid
---@return moonbeam.ref ref
function mb.spawn_monitor(fn, ...) return core.spawn_opt({monitor = true}, fn, ...) end

--- Spawns with options: `link`, `monitor` (then returns pid, ref), `name`
--- (register it), `trap_exit`, `scheduler` (1..N or "here").
---@param opts {link?: boolean, monitor?: boolean, name?: string, trap_exit?: boolean, scheduler?: integer|"here"}
---@param fn function|string[]
---@return moonbeam.pid pid
---@return moonbeam.ref? ref
function mb.spawn_opt(opts, fn, ...) return core.spawn_opt(opts, fn, ...) end

--- The calling process's pid.
---@return moonbeam.pid
function mb.self() return core.self() end

--- Sends a copy of `msg` to a pid or registered name. Sending to a dead pid
--- does nothing; an unregistered name raises. Unsendable values raise, naming
--- where they are (`msg.handler: cannot send a function`), and nothing is sent.
---@param dest moonbeam.dest
---@param ... any the message (exactly one; nil is a message too)
---@return true
function mb.send(dest, ...)
  if select("#", ...) ~= 1 then error("send: expected a destination and one message", 2) end
  return core.send(dest, ...)
end

--- Returns the first message `match` accepts (any message without `match`),
--- leaving the others queued in order; `nil, "timeout"` after `timeout_ms`.
---@param match? fun(msg: any): boolean
---@param timeout_ms? number
---@return any msg
---@return string? err "timeout"
function mb.receive(match, timeout_ms) return core.receive(match, timeout_ms) end

--- Removes every queued message; returns how many.
---@return integer
function mb.flush()
  local n = 0
  while true do
    local _, err = core.receive(nil, 0)
    if err then return n end
    n = n + 1
  end
end

--- Links the calling process and `pid` (idempotent). A dead pid sends the
--- caller an exit signal with reason "noproc".
---@param pid moonbeam.pid
---@return true
function mb.link(pid) return core.link(pid) end

--- Removes a link on both sides (idempotent).
---@param pid moonbeam.pid
---@return true
function mb.unlink(pid) return core.unlink(pid) end

--- Monitors a process: one `{"DOWN", ref, "process", pid, reason}` when it ends
--- ("noproc" at once if it is not alive).
---@param pid moonbeam.dest
---@return moonbeam.ref
function mb.monitor(pid) return core.monitor(pid) end

--- Removes a monitor; `{flush = true}` also removes its DOWN if already queued.
---@param ref moonbeam.ref
---@param opts? {flush?: boolean}
---@return boolean active whether the monitor was still active
function mb.demonitor(ref, opts) return core.demonitor(ref, opts) end

--- `mb.exit(reason)` ends the calling process with `reason` (raised as an exit
--- error that pcall can catch, as Erlang's exit/1). `mb.exit(pid, reason)`
--- sends an exit signal: "normal" is ignored unless trapped, "kill" cannot be
--- trapped and ends the process with "killed".
---@param a any reason, or a pid
---@param b? any reason when `a` is a pid
function mb.exit(...)
  if select("#", ...) <= 1 then
    error(setmetatable({reason = (...)}, exit_mt), 2)
  end
  local pid, reason = ...
  return core.exit_signal(pid, reason)
end

--- The reason carried by an exit error (from `mb.exit(reason)`), or nil.
---@param err any
---@return any reason
function mb.exit_reason(err)
  if getmetatable(err) == exit_mt then return err.reason end
  return nil
end

--- Turns exit trapping on or off: exit signals then arrive as
--- `{"EXIT", from, reason}` messages. Returns the old value.
---@param ... boolean on
---@return boolean old
function mb.trap_exit(...)
  if select("#", ...) ~= 1 then error("trap_exit: expected one boolean", 2) end
  return core.trap_exit(...)
end

--- Registers a name for a process (the caller by default).
---@param name string
---@param pid? moonbeam.pid
---@return true|nil ok
---@return string? err "already_registered" | "noproc"
function mb.register(name, pid) return core.register(name, pid) end

--- Removes a registered name.
---@param name string
---@return true|nil ok
---@return string? err "not_registered"
function mb.unregister(name) return core.unregister(name) end

--- The pid registered under `name`, or nil.
---@param name string
---@return moonbeam.pid?
function mb.whereis(name) return core.whereis(name) end

--- Sends `msg` to `dest` after `ms` milliseconds; returns a timer.
---@param ms number
---@param dest moonbeam.dest
---@param msg any
---@return integer timer
function mb.send_after(ms, dest, msg) return core.send_after(ms, dest, msg) end

--- Cancels a timer: the milliseconds that were left, or false if it already
--- fired or was cancelled.
---@param timer integer
---@return integer|false
function mb.cancel_timer(timer) return core.cancel_timer(timer) end

local never = function() return false end

--- Suspends the calling process for `ms` milliseconds; messages stay queued.
---@param ms number
function mb.sleep(ms) core.receive(never, ms) end

--- A reference unique within the runtime.
---@return moonbeam.ref
function mb.make_ref() return core.make_ref() end

--- Whether `pid` names a live process.
---@param pid moonbeam.pid
---@return boolean
function mb.alive(pid) return core.alive(pid) end

--- Inspects a process: status, mailbox_len, memory, reductions, scheduler,
--- links, monitors (held by it), monitored_by, name, trap_exit; nil if it is
--- not alive.
---@param pid moonbeam.pid
---@return table?
function mb.info(pid) return core.info(pid) end

--- Every live process.
---@return moonbeam.pid[]
function mb.processes() return core.processes() end

--- Runtime counters, in total and per scheduler (`.schedulers[i]`).
---@return table
function mb.stats() return core.stats() end

--- Number of schedulers.
---@return integer
function mb.schedulers() return core.schedulers() end

--- Index (1-based) of the scheduler running the caller.
---@return integer
function mb.scheduler() return core.scheduler() end

--- An atom, for talking to Erlang (`mb.atom"ok"`); atoms arrive as strings.
---@param s string
---@return userdata
function mb.atom(s) return core.atom(s) end

--- A tuple, for talking to Erlang; tuples arrive as sequences.
---@return table
function mb.tuple(...) return core.tuple(...) end

--- Subscribes a process (the caller by default) to a topic of the core's
--- PubSub; the subscription ends with the process.
---@param topic string
---@param pid? moonbeam.pid
---@return true|nil
function mb.subscribe(topic, pid) return core.subscribe(topic, pid) end

--- Unsubscribes (idempotent).
---@param topic string
---@param pid? moonbeam.pid
---@return true
function mb.unsubscribe(topic, pid) return core.unsubscribe(topic, pid) end

--- Sends `msg` to every subscriber of `topic` but `skip`, encoding it once;
--- returns how many it reached.
---@param topic string
---@param msg any
---@param skip? moonbeam.pid
---@return integer
function mb.broadcast(topic, msg, skip) return core.broadcast(topic, msg, skip) end

--- Number of subscribers of a topic.
---@param topic string
---@return integer
function mb.subscribers(topic) return core.subscribers(topic) end

--- Delivers an OS signal ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1",
--- "SIGUSR2") to a process (the caller by default) as the message
--- `{"signal", name}` instead of its default action; `false` restores it.
---@param name string
---@param pid? moonbeam.pid|false
---@return true
function mb.on_signal(name, pid) return core.on_signal(name, pid) end

--- Monotonic time in seconds (sub-microsecond resolution), for measuring.
---@return number
function mb.clock() return core.clock() end

--- Whether `v` is a pid.
---@param v any
---@return boolean
function mb.is_pid(v) return core.is_pid(v) end

--- A readable rendering of any value (for logs and reasons).
---@param v any
---@return string
function mb.format(v, depth)
  depth = depth or 0
  if type(v) == "string" then return depth == 0 and v or string.format("%q", v) end
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

--- The logger called with crash reports: `fn(pid, name, message, traceback)`.
--- It runs in the crashed process's VM; set it from a module every process
--- loads (moonbeam.logger does) to cover all schedulers.
---@param fn? fun(pid: moonbeam.pid, name: string?, message: string, traceback: string)
function mb.set_crash_handler(fn) core.set_crash_handler(fn) end

mb.blocking, mb.blocking_pool = require("moonbeam.blocking").run, require("moonbeam.blocking").pool

return mb
