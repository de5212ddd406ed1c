--- moonbeam.task_supervisor: tasks started under a supervisor, as Elixir's
--- Task.Supervisor. See docs/task_supervisor.md.
---
--- A task supervisor is a moonbeam.dynamic_supervisor whose children are
--- tasks (restart "temporary" and shutdown 5000 unless told otherwise). The
--- task's function travels to the supervisor with the child spec (gen.pack,
--- upvalues copied) and from there into the task's own process.
---
--- Tasks from `async` and `async_nolink` are tables as moonbeam.task's, owned
--- by the caller: await, yield and shutdown them with moonbeam.task.
local mb = require "moonbeam"
local task = require "moonbeam.task"
local dynamic_supervisor = require "moonbeam.dynamic_supervisor"
local gen = require "moonbeam.gen"

local task_supervisor = {}

local fmt = string.format
local pack = table.pack

---@alias moonbeam.task_supervisor moonbeam.pid|string|table a pid, a registered name or {"via", registry, key}

-- ------------------------------------------------------------------ in the task's process

--- (internal) The body of a supervised task: links to its owner when asked,
--- waits for the ref its owner monitors it with (ending quietly if the owner
--- is gone first), runs fn(...) and sends {ref, result} to the owner.
function task_supervisor._supervised(owner, link, fn, ...)
  if link then mb.link(owner) end
  local mref = mb.monitor(owner)
  local msg = mb.receive(function(m)
    return type(m) == "table" and (m[1] == "$task_ref" or (m[1] == "DOWN" and m[2] == mref))
  end)
  if msg[1] == "DOWN" then mb.exit("normal") end
  mb.demonitor(mref, {flush = true})
  local result = task._call(fn, ...)
  mb.send(owner, {msg[2], result})
end

-- ------------------------------------------------------------------ in the supervisor's process

--- (internal) Start function of an async task, run by the supervisor.
function task_supervisor._start_async(owner, link, fn, ...)
  return (task._spawn({}, task_supervisor._supervised, owner, link, fn, ...))
end

--- (internal) Start function of a start_child task, run by the supervisor.
function task_supervisor._start_plain(fn, ...)
  return (task._spawn({}, task._call, fn, ...))
end

-- ------------------------------------------------------------------ API

local function check_fn(fn, who)
  if type(fn) == "function" then return end
  if type(fn) == "table" and type(fn[1]) == "string" and type(fn[2]) == "string" then return end
  gen.error(fmt("%s: expected a function or {module_name, function_name}, got %s", who, type(fn)))
end

local function check_sup(sup, who)
  if mb.is_pid(sup) or type(sup) == "string" or (type(sup) == "table" and sup[1] == "via") then return end
  gen.error(fmt("%s: expected a supervisor (pid, name or {\"via\", registry, key}), got %s",
                who, type(sup) == "table" and mb.format(sup) or type(sup)))
end

---@class moonbeam.task_supervisor.opts
---@field name? string|table register the supervisor: a string or {"via", registry, key}
---@field max_children? integer|"infinity" how many tasks at once (default "infinity")
---@field max_restarts? integer default 3
---@field max_seconds? number default 5

--- Starts a task supervisor linked to the caller. Returns its pid, or nil
--- and a reason.
---@param opts? moonbeam.task_supervisor.opts
---@return moonbeam.pid|nil
---@return any reason
local START_OPTS = {"name", "max_children", "max_restarts", "max_seconds"}
local CHILD_SPEC_OPTS = {"id", "restart", "name", "max_children", "max_restarts", "max_seconds"}
local CHILD_OPTS = {"restart", "shutdown"}

function task_supervisor.start_link(opts)
  opts = gen.check_opts(opts, START_OPTS, "task_supervisor.start_link")
  return dynamic_supervisor.start_link({name = opts.name, max_children = opts.max_children,
                                        max_restarts = opts.max_restarts, max_seconds = opts.max_seconds})
end

--- A child spec that starts a task supervisor (type "supervisor").
---@param opts? moonbeam.task_supervisor.opts|{id?: any}
---@return table spec
function task_supervisor.child_spec(opts)
  opts = gen.check_opts(opts, CHILD_SPEC_OPTS, "task_supervisor.child_spec")
  local id = opts.id
  if id == nil then id = type(opts.name) == "string" and opts.name or "task_supervisor" end
  return {id = id, type = "supervisor", restart = opts.restart or "permanent", shutdown = "infinity",
          start = {"moonbeam.task_supervisor", "start_link",
                   {{name = opts.name, max_children = opts.max_children,
                     max_restarts = opts.max_restarts, max_seconds = opts.max_seconds}}}}
end

-- Starts a task child for `owner`: its pid, or raises naming `who`.
local function start_task(sup, who, owner, link, fn, ...)
  local args = pack(owner, link, fn, ...)
  local pid, err = dynamic_supervisor.start_child(sup, {
    start = {"moonbeam.task_supervisor", "_start_async", args},
    restart = "temporary", shutdown = 5000,
  })
  if not mb.is_pid(pid) then
    gen.error(fmt("%s: the supervisor could not start the task: %s", who, mb.format(err)))
  end
  return pid
end

-- Monitors a started task and hands it its ref.
local function adopt(pid)
  local ref = mb.monitor(pid)
  mb.send(pid, {"$task_ref", ref})
  return {pid = pid, ref = ref, owner = mb.self()}
end

--- Starts `fn(...)` as a task under the supervisor, linked to the caller and
--- monitored by it, as moonbeam.task's `async`: await it with `task.await`.
--- A crash of the task crashes the caller through the link. Raises if the
--- supervisor cannot start it (max_children reached).
---@param sup moonbeam.task_supervisor
---@param fn moonbeam.task_fn
---@return moonbeam.task
function task_supervisor.async(sup, fn, ...)
  check_sup(sup, "task_supervisor.async")
  check_fn(fn, "task_supervisor.async")
  return adopt(start_task(sup, "task_supervisor.async", mb.self(), true, fn, ...))
end

--- Starts `fn(...)` as a task under the supervisor, monitored by the caller
--- but not linked to it: a crash of the task reaches the caller as a result
--- (`{"exit", reason}` from task.yield, the DOWN message, or task.await
--- failing with the reason), never as an exit signal.
---@param sup moonbeam.task_supervisor
---@param fn moonbeam.task_fn
---@return moonbeam.task
function task_supervisor.async_nolink(sup, fn, ...)
  check_sup(sup, "task_supervisor.async_nolink")
  check_fn(fn, "task_supervisor.async_nolink")
  return adopt(start_task(sup, "task_supervisor.async_nolink", mb.self(), false, fn, ...))
end

--- Starts `fn(...)` under the supervisor for its side effects (restart
--- "temporary", shutdown 5000); returns the pid, or nil and a reason.
---@param sup moonbeam.task_supervisor
---@param fn moonbeam.task_fn
---@return moonbeam.pid|nil
---@return any reason
function task_supervisor.start_child(sup, fn, ...)
  check_sup(sup, "task_supervisor.start_child")
  check_fn(fn, "task_supervisor.start_child")
  return dynamic_supervisor.start_child(sup, {
    start = {"moonbeam.task_supervisor", "_start_plain", pack(fn, ...)},
    restart = "temporary", shutdown = 5000,
  })
end

--- `start_child` with options: `restart` ("temporary" by default;
--- "transient" or "permanent" run the function again after a crash) and
--- `shutdown` (ms, "brutal_kill" or "infinity"; default 5000).
---@param sup moonbeam.task_supervisor
---@param opts {restart?: "temporary"|"transient"|"permanent", shutdown?: integer|"brutal_kill"|"infinity"}
---@param fn moonbeam.task_fn
---@return moonbeam.pid|nil
---@return any reason
function task_supervisor.start_child_opt(sup, opts, fn, ...)
  check_sup(sup, "task_supervisor.start_child_opt")
  if type(opts) ~= "table" then gen.error("task_supervisor.start_child_opt: opts must be a table") end
  gen.check_keys(opts, CHILD_OPTS, "task_supervisor.start_child_opt")
  check_fn(fn, "task_supervisor.start_child_opt")
  return dynamic_supervisor.start_child(sup, {
    start = {"moonbeam.task_supervisor", "_start_plain", pack(fn, ...)},
    restart = opts.restart or "temporary", shutdown = opts.shutdown or 5000,
  })
end

local function stream_starter(sup, link)
  return function(owner, fn, item)
    local pid = start_task(sup, "task_supervisor.async_stream", owner, link, fn, item)
    local t = adopt(pid)
    return t.pid, t.ref
  end
end

--- moonbeam.task's `async_stream`, each task started under the supervisor
--- and linked to the caller.
---@param sup moonbeam.task_supervisor
---@param items any[]|fun(): any
---@param fn moonbeam.task_fn
---@param opts? moonbeam.task_stream_opts
---@return fun(): {[1]: "ok"|"exit", [2]: any}? iterator
---@return nil
---@return nil
---@return table closer
function task_supervisor.async_stream(sup, items, fn, opts)
  check_sup(sup, "task_supervisor.async_stream")
  return task._stream("task_supervisor.async_stream", items, fn, opts, stream_starter(sup, true))
end

--- `async_stream` with tasks not linked to the caller: a crashed task gives
--- `{"exit", reason}` in the results.
---@param sup moonbeam.task_supervisor
---@param items any[]|fun(): any
---@param fn moonbeam.task_fn
---@param opts? moonbeam.task_stream_opts
---@return fun(): {[1]: "ok"|"exit", [2]: any}? iterator
---@return nil
---@return nil
---@return table closer
function task_supervisor.async_stream_nolink(sup, items, fn, opts)
  check_sup(sup, "task_supervisor.async_stream_nolink")
  return task._stream("task_supervisor.async_stream_nolink", items, fn, opts, stream_starter(sup, false))
end

--- The pids of the supervisor's running tasks.
---@param sup moonbeam.task_supervisor
---@return moonbeam.pid[]
function task_supervisor.children(sup)
  check_sup(sup, "task_supervisor.children")
  local out = {}
  for _, c in ipairs(dynamic_supervisor.which_children(sup)) do
    if mb.is_pid(c[2]) then out[#out + 1] = c[2] end
  end
  return out
end

--- Stops one task of the supervisor: "ok", or nil, "not_found".
---@param sup moonbeam.task_supervisor
---@param pid moonbeam.pid
---@return "ok"|nil
---@return string? err
function task_supervisor.terminate_child(sup, pid)
  check_sup(sup, "task_supervisor.terminate_child")
  return dynamic_supervisor.terminate_child(sup, pid)
end

--- Stops the supervisor and its tasks, synchronously.
---@param sup moonbeam.task_supervisor
---@param reason? any default "normal"
---@param timeout? number|"infinity"
---@return "ok"
function task_supervisor.stop(sup, reason, timeout)
  return dynamic_supervisor.stop(sup, reason, timeout)
end

return task_supervisor
