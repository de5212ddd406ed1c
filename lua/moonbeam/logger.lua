--- moonbeam.logger: levels, metadata, formatting, replaceable backends, crash
--- and supervisor reports. See docs/logger.md.
---
--- Design (correct across schedulers): every scheduler runs its own Lua VM, so
--- module state is per VM. The configuration (level, formatter, backends)
--- therefore lives in one process, registered as "moonbeam.logger" and started
--- on demand by the first process that logs or configures. Logging sends the
--- event to that process, which filters it by level, formats it and hands it to
--- every backend; configuration calls are synchronous gen calls, so a process
--- that sets the level and then logs sees its own change. Formatters and
--- backends are functions moved into the logger process with gen.pack (or
--- module names, re-required there). Loading this module in a VM also makes it
--- that VM's crash handler (mb.set_crash_handler), so a Lua error that ends a
--- process is reported through the logger.
local mb = require "moonbeam"
local core = require "moonbeam.core"

local logger = {}

local NAME = "moonbeam.logger"
local fmt = string.format

---@alias moonbeam.log_level "debug"|"info"|"notice"|"warning"|"error"

local LEVELS = {debug = 1, info = 2, notice = 3, warning = 4, error = 5}
local LEVEL_NAMES = {"debug", "info", "notice", "warning", "error"}
logger.levels = LEVEL_NAMES

local function gen() return require "moonbeam.gen" end

---@class moonbeam.log_event
---@field level moonbeam.log_level
---@field message string
---@field time integer seconds since the epoch (os.time())
---@field pid? moonbeam.pid the process that logged
---@field name? string its registered name
---@field metadata? table what the caller passed
---@field kind "log"|"crash_report"|"supervisor_report"
---@field report? table the report's fields, for crash and supervisor reports

--- Compares two levels: "lt", "eq" or "gt", as Elixir's Logger.compare_levels.
---@param a moonbeam.log_level
---@param b moonbeam.log_level
---@return "lt"|"eq"|"gt"
function logger.compare_levels(a, b)
  local x, y = LEVELS[a], LEVELS[b]
  if not x then gen().error("logger.compare_levels: unknown level " .. mb.format(a, 1)) end
  if not y then gen().error("logger.compare_levels: unknown level " .. mb.format(b, 1)) end
  return x < y and "lt" or x == y and "eq" or "gt"
end

--- The default formatter: "2024-05-01 10:00:00 [error] <0.7.2> name: message".
---@param event moonbeam.log_event
---@return string
function logger.format(event)
  if type(event) ~= "table" then gen().error("logger.format: expected an event table, got " .. type(event)) end
  local who = ""
  if event.pid ~= nil then
    who = tostring(event.pid) .. (event.name and (" " .. event.name) or "") .. ": "
  elseif event.name then
    who = event.name .. ": "
  end
  return fmt("%s [%s] %s%s", os.date("%Y-%m-%d %H:%M:%S", event.time or os.time()),
             event.level, who, event.message)
end

--- The default backend: the formatted line on stderr.
---@param line string
---@param event moonbeam.log_event
function logger.console(line, event)
  local _ = event
  io.stderr:write(line, "\n")
  io.stderr:flush()
end

-- ------------------------------------------------------------------ the logger process

local function resolve_callable(v, field)
  if type(v) == "string" then
    local ok, mod = pcall(require, v)
    if not ok then error(tostring(mod), 0) end
    if type(mod) == "function" then return mod end
    if type(mod) == "table" and type(mod[field]) == "function" then return mod[field] end
    error(fmt("module '%s' is not a function and has no %s function", v, field))
  end
  return v
end

local handlers = {}

local function run_backends(st, event)
  local ok, line = pcall(st.formatter, event)
  if not ok or type(line) ~= "string" then
    line = logger.format(event) .. (ok and "" or (" (formatter failed: " .. tostring(line) .. ")"))
  end
  for i = 1, #st.order do
    local name = st.order[i]
    local fn = st.backends[name]
    if fn then
      local done, err = pcall(fn, line, event)
      if not done then
        -- a failing backend is removed, as Erlang's logger removes a failing handler
        handlers.remove_backend(st, name)
        io.stderr:write(fmt("moonbeam.logger: backend '%s' failed and was removed: %s\n",
                            tostring(name), tostring(err)))
      end
    end
  end
end

function handlers.configure(st, opts)
  if opts.level ~= nil then st.level = opts.level end
  if opts.formatter ~= nil then
    st.formatter = resolve_callable(gen().unpack(opts.formatter), "format")
  end
  return "ok"
end

function handlers.add_backend(st, name, fn)
  if st.backends[name] then return nil, "already_present" end
  st.backends[name] = resolve_callable(gen().unpack(fn), "log")
  local present = false
  for i = 1, #st.order do if st.order[i] == name then present = true end end
  if not present then st.order[#st.order + 1] = name end
  return "ok"
end

function handlers.remove_backend(st, name)
  if not st.backends[name] then return nil, "not_found" end
  st.backends[name] = nil
  for i = #st.order, 1, -1 do if st.order[i] == name then table.remove(st.order, i) end end
  return "ok"
end

function handlers.backends(st)
  local names = {}
  for i = 1, #st.order do names[i] = st.order[i] end
  return names
end

function handlers.level(st) return st.level end

function handlers.flush() return "ok" end

--- (internal) The logger process.
function logger._server()
  local st = {level = "debug", formatter = logger.format, backends = {console = logger.console},
              order = {"console"}}
  while true do
    local msg = mb.receive()
    if type(msg) == "table" then
      local tag = msg[1]
      if tag == "$log" then
        local event = msg[2]
        if type(event) == "table" and LEVELS[event.level] and st.level ~= "none"
            and LEVELS[event.level] >= LEVELS[st.level] then
          run_backends(st, event)
        end
      elseif tag == "$gen_call" then
        local req = msg[3]
        local h = type(req) == "table" and handlers[req[1]]
        if h then
          local ok, a, b = pcall(h, st, table.unpack(req, 2))
          if ok then gen().reply(msg[2], {a, b}) else gen().reply(msg[2], {nil, tostring(a)}) end
        else
          gen().reply(msg[2], {nil, "unknown_request"})
        end
      elseif tag == "$gen_stop" then
        mb.exit(msg[2])
      end
    end
  end
end

-- ------------------------------------------------------------------ clients

local function in_process()
  return (pcall(mb.self))
end

local function logger_pid()
  local pid = mb.whereis(NAME)
  if pid then return pid end
  local ok, p = pcall(mb.spawn_opt, {name = NAME}, {"moonbeam.logger", "_server"})
  if ok then return p end
  return mb.whereis(NAME)
end

--- The logger process's pid (started if it is not running yet).
---@return moonbeam.pid
function logger.whereis() return logger_pid() end

local function request(who, ...)
  if not in_process() then gen().error("logger." .. who .. ": must be called from a moonbeam process") end
  local r = gen().call(logger_pid(), {...}, "infinity", "logger")
  return r[1], r[2]
end

local function send_event(event)
  local running, pid = pcall(logger_pid)
  if not running or pid == nil then
    -- no runtime (or it is stopping): write it here with the default format
    io.stderr:write(logger.format(event), "\n")
    return
  end
  local ok = pcall(mb.send, pid, {"$log", event})
  if not ok then
    -- unsendable metadata or report: send it formatted
    local safe = {}
    for k, v in pairs(event) do
      safe[k] = (type(v) == "table") and mb.format(v) or v
    end
    if mb.is_pid(event.pid) then safe.pid = event.pid end
    pcall(mb.send, pid, {"$log", safe})
  end
end

local function self_meta()
  if not in_process() then return nil, nil end
  local pid = mb.self()
  local info = mb.info(pid)
  return pid, info and info.name
end

local function check_level(level, who)
  if not LEVELS[level] then
    gen().error(fmt("logger.%s: unknown level %s (debug, info, notice, warning, error)",
                    who, mb.format(level, 1)))
  end
end

local function log_at(level, message, metadata)
  if metadata ~= nil and type(metadata) ~= "table" then
    gen().error("logger." .. level .. ": metadata must be a table, got " .. type(metadata))
  end
  local pid, name = self_meta()
  send_event({level = level, message = type(message) == "string" and message or mb.format(message),
              time = os.time(), pid = pid, name = name, metadata = metadata, kind = "log"})
end

--- Logs `message` at `level`. A non-string message is rendered with mb.format.
--- `metadata` is an optional table of plain data passed to backends.
---@param level moonbeam.log_level
---@param message any
---@param metadata? table
function logger.log(level, message, metadata)
  check_level(level, "log")
  log_at(level, message, metadata)
end

--- Logs at level debug.
---@param message any
---@param metadata? table
function logger.debug(message, metadata) log_at("debug", message, metadata) end

--- Logs at level info.
---@param message any
---@param metadata? table
function logger.info(message, metadata) log_at("info", message, metadata) end

--- Logs at level notice.
---@param message any
---@param metadata? table
function logger.notice(message, metadata) log_at("notice", message, metadata) end

--- Logs at level warning.
---@param message any
---@param metadata? table
function logger.warning(message, metadata) log_at("warning", message, metadata) end

--- Logs at level error.
---@param message any
---@param metadata? table
function logger.error(message, metadata) log_at("error", message, metadata) end

--- Sets the minimum level logged ("debug" .. "error", or "none" to log
--- nothing). Default "debug".
---@param level moonbeam.log_level|"none"
---@return "ok"
function logger.set_level(level)
  if level ~= "none" then check_level(level, "set_level") end
  return (request("set_level", "configure", {level = level}))
end

--- The current minimum level.
---@return moonbeam.log_level|"none"
function logger.level()
  return (request("level", "level"))
end

--- Configures the logger: `level`, and `formatter`, a function(event) ->
--- string or a module name (its `format` function), which runs in the logger
--- process.
---@param opts {level?: moonbeam.log_level|"none", formatter?: function|string}
---@return "ok"
function logger.configure(opts)
  if type(opts) ~= "table" then gen().error("logger.configure: opts must be a table") end
  gen().check_keys(opts, {"level", "formatter"}, "logger.configure")
  if opts.level ~= nil and opts.level ~= "none" then check_level(opts.level, "configure") end
  local f = opts.formatter
  if f ~= nil and type(f) ~= "function" and type(f) ~= "string" then
    gen().error("logger.configure: formatter must be a function or a module name")
  end
  local packed = f ~= nil and gen().pack(f, "formatter") or nil
  local ok, err = request("configure", "configure", {level = opts.level, formatter = packed})
  if not ok then gen().error("logger.configure: " .. tostring(err)) end
  return ok
end

--- Adds a backend: `fn(line, event)` gets every event logged at or above the
--- level, with its formatted line. It runs in the logger process (moved there
--- with gen.pack: it may close over pids and data); a module name stands for
--- that module's `log` function. A backend that raises is removed.
---@param name string
---@param fn fun(line: string, event: moonbeam.log_event)|string
---@return "ok"|nil
---@return string? err "already_present"
function logger.add_backend(name, fn)
  if type(name) ~= "string" then gen().error("logger.add_backend: name must be a string") end
  if type(fn) ~= "function" and type(fn) ~= "string" then
    gen().error("logger.add_backend: backend must be a function or a module name")
  end
  local ok, err = request("add_backend", "add_backend", name, gen().pack(fn, "backend"))
  if ok == nil and err ~= "already_present" then gen().error("logger.add_backend: " .. tostring(err)) end
  return ok, err
end

--- Removes a backend ("console" is the default one).
---@param name string
---@return "ok"|nil
---@return string? err "not_found"
function logger.remove_backend(name)
  return request("remove_backend", "remove_backend", name)
end

--- The names of the installed backends, in the order they run.
---@return string[]
function logger.backends()
  return (request("backends", "backends"))
end

--- Waits until every event this process logged before has been handled.
---@return "ok"
function logger.flush()
  return (request("flush", "flush"))
end

-- ------------------------------------------------------------------ reports

local function render(v)
  if type(v) == "string" then return v end
  return mb.format(v)
end

local function is_error_triple(v)
  return type(v) == "table" and v[1] == "error" and type(v[2]) == "string" and type(v[3]) == "string"
      and rawlen(v) == 3
end

-- A reason as one line, each {"error", message, traceback} inside it shown
-- as {"error", message, <traceback N>}; returns the line and the tracebacks,
-- to be printed below it as they are (mb.format would escape their tabs and
-- newlines). A plain string is the line itself.
local function describe(reason)
  if type(reason) == "string" then return reason, {} end
  local tbs = {}
  local function strip(v, depth)
    if type(v) ~= "table" or depth > 32 then return v end
    if is_error_triple(v) then
      if v[3] == "" then return {"error", v[2]} end
      tbs[#tbs + 1] = v[3]
      return {"error", v[2], "<traceback:" .. #tbs .. ">"}
    end
    local out = {}
    for k, x in next, v do out[k] = strip(x, depth + 1) end
    return setmetatable(out, getmetatable(v))
  end
  local line = mb.format(strip(reason, 0)):gsub('"<traceback:(%d+)>"', "<traceback %1>")
  return line, tbs
end

-- Appends the "** (error)" or "** (exit)" line of `reason` and returns the
-- tracebacks to print after the report's other lines.
local function reason_lines(lines, reason)
  if is_error_triple(reason) then
    lines[#lines + 1] = "** (error) " .. reason[2]
    return reason[3] ~= "" and {reason[3]} or {}
  end
  local line, tbs = describe(reason)
  lines[#lines + 1] = "** (exit) " .. line
  if #tbs == 1 then return tbs end
  for i = 1, #tbs do tbs[i] = "<traceback " .. i .. ">\n" .. tbs[i] end
  return tbs
end

-- Plain data as it is; anything mb.send could not carry as its text.
local function as_value(v)
  if v == nil then return nil end
  local t = type(v)
  if t == "function" or t == "thread" or (t == "userdata" and not mb.is_pid(v)) then return render(v) end
  return v
end

---@class moonbeam.crash_report
---@field what? string e.g. "GenServer" (default "Process")
---@field pid? moonbeam.pid default: the caller
---@field name? any the registered name
---@field reason any the exit reason
---@field last_message? any
---@field state? any
---@field traceback? string

--- Logs a crash report at level error: `what` (e.g. "GenServer"), the process,
--- its name, the exit reason, the last message and state when known, and the
--- Lua traceback.
---@param report moonbeam.crash_report
function logger.crash_report(report)
  if type(report) ~= "table" then
    gen().error("logger.crash_report: report must be a table {reason = ..., what?, pid?, name?, ...}, got "
                .. type(report))
  end
  if report.pid ~= nil and not mb.is_pid(report.pid) then
    gen().error("logger.crash_report: report.pid must be a pid, got " .. mb.format(report.pid, 1))
  end
  if report.traceback ~= nil and type(report.traceback) ~= "string" then
    gen().error("logger.crash_report: report.traceback must be a string, got " .. type(report.traceback))
  end
  local pid = report.pid
  if pid == nil and in_process() then pid = mb.self() end
  local reason = report.reason
  local lines = {}
  lines[#lines + 1] = fmt("%s %s%s terminating", report.what or "Process", tostring(pid),
                          report.name and (" (" .. render(report.name) .. ")") or "")
  local tbs = reason_lines(lines, reason)
  if report.last_message ~= nil then lines[#lines + 1] = "Last message: " .. mb.format(report.last_message, 1) end
  if report.state ~= nil then lines[#lines + 1] = "State: " .. mb.format(report.state, 1) end
  local tb = report.traceback
  if tb ~= nil then tbs = tb ~= "" and {tb} or {} end
  for i = 1, #tbs do lines[#lines + 1] = tbs[i] end
  if tb == nil and is_error_triple(reason) then tb = reason[3] end
  send_event({level = "error", message = table.concat(lines, "\n"), time = os.time(), pid = pid,
              name = type(report.name) == "string" and report.name or nil, kind = "crash_report",
              report = {what = report.what, reason = as_value(reason),
                        last_message = report.last_message ~= nil and render(report.last_message) or nil,
                        state = report.state ~= nil and render(report.state) or nil,
                        traceback = type(tb) == "string" and tb or nil}})
end

--- Logs a supervisor report at level error. `context` is one of
--- "child_terminated", "start_error", "shutdown_error",
--- "reached_max_restart_intensity"; `child` describes the child (id, pid,
--- start, restart) when there is one.
---@param report {supervisor: any, context: string, reason: any, child?: table, restart?: string}
function logger.supervisor_report(report)
  if type(report) ~= "table" then
    gen().error("logger.supervisor_report: report must be a table {supervisor = ..., context = ..., "
                .. "reason?, child?}, got " .. type(report))
  end
  if type(report.context) ~= "string" then
    gen().error("logger.supervisor_report: report.context must be a string, got " .. type(report.context))
  end
  if report.child ~= nil and type(report.child) ~= "table" then
    gen().error("logger.supervisor_report: report.child must be a table, got " .. type(report.child))
  end
  local sup = render(report.supervisor)
  local child = report.child or {}
  local lines = {}
  local ctx = report.context
  if ctx == "child_terminated" then
    lines[1] = fmt("Child %s of Supervisor %s terminated", render(child.id), sup)
  elseif ctx == "start_error" then
    lines[1] = fmt("Child %s of Supervisor %s failed to start", render(child.id), sup)
  elseif ctx == "shutdown_error" then
    lines[1] = fmt("Child %s of Supervisor %s shut down abnormally", render(child.id), sup)
  elseif ctx == "reached_max_restart_intensity" then
    lines[1] = fmt("Supervisor %s reached its maximum restart intensity and is shutting down", sup)
  else
    lines[1] = fmt("Supervisor %s: %s", sup, tostring(ctx))
  end
  local reason = report.reason
  local tbs = reason ~= nil and reason_lines(lines, reason) or {}
  if child.pid ~= nil then lines[#lines + 1] = "Pid: " .. tostring(child.pid) end
  if child.start ~= nil then
    local s = child.start
    lines[#lines + 1] = fmt("Start Call: %s.%s(%s)", render(type(s[1]) == "string" and s[1] or "<module>"),
                            tostring(s[2]), type(s[3]) == "table" and mb.format(s[3]):sub(2, -2) or "")
  end
  if child.restart ~= nil then lines[#lines + 1] = "Restart: " .. tostring(child.restart) end
  if child.shutdown ~= nil then lines[#lines + 1] = "Shutdown: " .. tostring(child.shutdown) end
  if child.type ~= nil then lines[#lines + 1] = "Type: " .. tostring(child.type) end
  for i = 1, #tbs do lines[#lines + 1] = tbs[i] end
  local pid, name = self_meta()
  send_event({level = "error", message = table.concat(lines, "\n"), time = os.time(), pid = pid,
              name = name, kind = "supervisor_report",
              report = {supervisor = sup, context = ctx, reason = as_value(reason),
                        child_id = child.id ~= nil and render(child.id) or nil,
                        child_pid = mb.is_pid(child.pid) and child.pid or nil}})
end

-- ------------------------------------------------------------------ crash handler

--- (internal) The crash handler installed in every VM that loads this module:
--- a Lua error that ends a process becomes a crash report.
function logger._on_crash(pid, name, message, traceback, value)
  local ok, lp = pcall(mb.whereis, NAME)
  if ok and lp ~= nil and lp == pid then
    io.stderr:write(fmt("moonbeam.logger: the logger process crashed: %s\n%s\n", message, traceback))
    return
  end
  local text, tbs = describe(message)
  local lines = {fmt("Process %s%s crashed", tostring(pid), name and (" (" .. name .. ")") or ""),
                 "** (error) " .. text}
  for i = 1, #tbs do lines[#lines + 1] = tbs[i] end
  if type(traceback) == "string" and traceback ~= "" then lines[#lines + 1] = traceback end
  send_event({level = "error", message = table.concat(lines, "\n"), time = os.time(), pid = pid,
              name = name, kind = "crash_report",
              report = {what = "Process", reason = as_value(value ~= nil and value or message),
                        traceback = traceback}})
end

core.set_crash_handler(logger._on_crash)

return logger
