--- moonbeam.task: run a function in a process of its own and collect its result,
--- as Elixir's Task. See docs/task.md.
---
--- A task is a plain table `{pid = pid, ref = ref, owner = pid}`: `ref` monitors
--- the task from its owner and tags the result, which travels back as the
--- message `{ref, result}`; a task that ends without a result shows up as
--- `{"DOWN", ref, "process", pid, reason}`. Only the owner may await, yield or
--- shut down a task. A task's result is the first value its function returns.
local mb = require "moonbeam"
local gen = require "moonbeam.gen"

local task = {}

local STREAM_OPTS = {"max_concurrency", "ordered", "timeout", "on_timeout"}

---@class moonbeam.task
---@field pid moonbeam.pid the task's process
---@field ref moonbeam.ref monitor of the task, and the tag of its result message
---@field owner moonbeam.pid the process that started it

---@alias moonbeam.task_fn function|string[] a function, or {module_name, function_name}


-- Runs in the task's process: waits for the ref its owner monitors it with
-- (the first message from the owner), runs fn and sends {ref, result}.
local function run(owner, fn, ...)
  local msg = mb.receive(function(m)
    return type(m) == "table" and m[1] == "$task_ref"
  end)
  local result = task._call(fn, ...)
  mb.send(owner, {msg[2], result})
end

local function check_fn(fn, who)
  if type(fn) == "function" then return end
  if type(fn) == "table" and type(fn[1]) == "string" and type(fn[2]) == "string" then return end
  gen.error(string.format("%s: expected a function or {module_name, function_name}, got %s",
    who, type(fn)))
end

local function check_task(t, who)
  if type(t) ~= "table" or not mb.is_pid(t.pid) or t.ref == nil then
    gen.error(string.format("%s: expected a task (from task.async), got %s", who, mb.format(t)))
  end
  if t.owner ~= mb.self() then
    gen.error(string.format("%s: task %s belongs to %s, not to the calling process %s",
      who, tostring(t.pid), tostring(t.owner), tostring(mb.self())))
  end
end

local function check_timeout(timeout, who, default)
  if timeout == nil then return default end
  if timeout == "infinity" then return nil end
  if math.type(timeout) == nil or timeout < 0 then
    gen.error(string.format("%s: timeout must be a number of ms >= 0 or \"infinity\", got %s",
      who, mb.format(timeout)))
  end
  return timeout
end

-- mb.spawn_opt: its packer moves tables of functions and shared upvalues too
-- (the one gen.pack uses), so there is nothing to fall back to.
local function spawn(opts, f, ...) return mb.spawn_opt(opts, f, ...) end
task._spawn = spawn

-- Spawns a task linked (when `link`) and monitored from the caller.
local function spawn_task(link, fn, ...)
  local pid, ref = spawn({link = link, monitor = true}, run, mb.self(), fn, ...)
  mb.send(pid, {"$task_ref", ref})
  return {pid = pid, ref = ref, owner = mb.self()}
end

--- Starts `fn(...)` in a new process linked to and monitored by the caller; the
--- result comes back as the message `{task.ref, result}`. A crash in the task
--- crashes the caller through the link (unless the caller traps exits), and an
--- abnormal exit of the caller kills the task.
---@param fn moonbeam.task_fn
---@return moonbeam.task
function task.async(fn, ...)
  check_fn(fn, "task.async")
  return spawn_task(true, fn, ...)
end

--- Like `async`, but not linked: a crash of the task reaches the caller only
--- as a DOWN message (and `{"exit", reason}` from `yield`). Used by
--- moonbeam.task_supervisor; prefer `async` otherwise.
---@param fn moonbeam.task_fn
---@return moonbeam.task
function task.async_nolink(fn, ...)
  check_fn(fn, "task.async_nolink")
  return spawn_task(false, fn, ...)
end

local function is_reply(ref)
  return function(m)
    return type(m) == "table" and m[1] == ref
  end
end

local function is_down(ref)
  return function(m)
    return type(m) == "table" and m[1] == "DOWN" and m[2] == ref
  end
end

local function reply_or_down(ref)
  return function(m)
    return type(m) == "table" and (m[1] == ref or (m[1] == "DOWN" and m[2] == ref))
  end
end

--- Waits for the task's result and returns it. Fails (an exit, as `mb.exit`)
--- with `{"timeout", {"task", "await", {task, timeout}}}` when none arrives
--- within `timeout` ms (default 5000; the task keeps running, and dies with
--- the caller through their link), or with `{reason, {"task", "await", ...}}`
--- when the task ended without a result (seen only when the caller traps exits
--- or the task is not linked). Only the owner may await.
---@param t moonbeam.task
---@param timeout? number|"infinity" ms, default 5000
---@return any result
function task.await(t, timeout)
  check_task(t, "task.await")
  local ms = check_timeout(timeout, "task.await", 5000)
  local msg = mb.receive(reply_or_down(t.ref), ms)
  if msg == nil then
    mb.demonitor(t.ref, {flush = true})
    mb.exit({"timeout", {"task", "await", {t, timeout or 5000}}})
  end
  if msg[1] == "DOWN" then
    mb.exit({msg[5], {"task", "await", {t, timeout or 5000}}})
  end
  mb.demonitor(t.ref, {flush = true})
  return msg[2]
end

--- Waits for every task, in order, and returns their results as a list; fails
--- as `await` (with "await_many" in the reason) if one of them crashes or all
--- are not done within `timeout` ms (default 5000) in total.
---@param tasks moonbeam.task[]
---@param timeout? number|"infinity" ms, default 5000
---@return any[] results
function task.await_many(tasks, timeout)
  if type(tasks) ~= "table" then
    gen.error("task.await_many: expected a list of tasks, got " .. type(tasks))
  end
  for i = 1, #tasks do check_task(tasks[i], "task.await_many") end
  local ms = check_timeout(timeout, "task.await_many", 5000)
  local results, pending, by_ref = {}, #tasks, {}
  for i, t in ipairs(tasks) do by_ref[t.ref] = i end
  local deadline_timer, tag
  if ms then
    tag = mb.make_ref()
    deadline_timer = mb.send_after(ms, mb.self(), {"$task_await_many", tag})
  end
  local done = {}
  while pending > 0 do
    local msg = mb.receive(function(m)
      if type(m) ~= "table" then return false end
      if m[1] == "DOWN" then return by_ref[m[2]] ~= nil and not done[m[2]] end
      if m[1] == "$task_await_many" then return m[2] == tag end
      return by_ref[m[1]] ~= nil and not done[m[1]]
    end)
    if msg[1] == "$task_await_many" then
      for _, t in ipairs(tasks) do mb.demonitor(t.ref, {flush = true}) end
      mb.exit({"timeout", {"task", "await_many", {tasks, timeout or 5000}}})
    elseif msg[1] == "DOWN" then
      if deadline_timer and not mb.cancel_timer(deadline_timer) then
        mb.receive(function(m) return type(m) == "table" and m[2] == tag end, 0)
      end
      mb.exit({msg[5], {"task", "await_many", {tasks, timeout or 5000}}})
    else
      local ref = msg[1]
      results[by_ref[ref]] = msg[2]
      done[ref] = true
      mb.demonitor(ref, {flush = true})
      pending = pending - 1
    end
  end
  if deadline_timer and not mb.cancel_timer(deadline_timer) then
    mb.receive(function(m) return type(m) == "table" and m[1] == "$task_await_many" and m[2] == tag end, 0)
  end
  return results
end

--- Waits up to `timeout` ms (default 5000) for the task: `{"ok", result}` if
--- it replied, `{"exit", reason}` if it ended without a result, nil on timeout
--- (the task keeps running; yield or await it again, or shut it down).
---@param t moonbeam.task
---@param timeout? number|"infinity" ms, default 5000
---@return {[1]: "ok"|"exit", [2]: any}?
function task.yield(t, timeout)
  check_task(t, "task.yield")
  local ms = check_timeout(timeout, "task.yield", 5000)
  local msg = mb.receive(reply_or_down(t.ref), ms)
  if msg == nil then return nil end
  if msg[1] == "DOWN" then return {"exit", msg[5]} end
  mb.demonitor(t.ref, {flush = true})
  return {"ok", msg[2]}
end

--- Yields on several tasks at once, within `timeout` ms in total (default
--- 5000): a list with, for each task in order, `{"ok", v}`, `{"exit", reason}`
--- or `false` if it was still running.
---@param tasks moonbeam.task[]
---@param timeout? number|"infinity" ms, default 5000
---@return ({[1]: "ok"|"exit", [2]: any}|false)[]
function task.yield_many(tasks, timeout)
  if type(tasks) ~= "table" then
    gen.error("task.yield_many: expected a list of tasks, got " .. type(tasks))
  end
  for i = 1, #tasks do check_task(tasks[i], "task.yield_many") end
  local ms = check_timeout(timeout, "task.yield_many", 5000)
  local results, pending, by_ref = {}, #tasks, {}
  for i, t in ipairs(tasks) do
    by_ref[t.ref] = i
    results[i] = false
  end
  local tag, timer = mb.make_ref(), nil
  if ms then timer = mb.send_after(ms, mb.self(), {"$task_yield_many", tag}) end
  while pending > 0 do
    local msg = mb.receive(function(m)
      if type(m) ~= "table" then return false end
      if m[1] == "$task_yield_many" then return m[2] == tag end
      if m[1] == "DOWN" then return by_ref[m[2]] ~= nil and not results[by_ref[m[2]]] end
      return by_ref[m[1]] ~= nil and not results[by_ref[m[1]]]
    end)
    if msg[1] == "$task_yield_many" then
      timer = nil
      break
    elseif msg[1] == "DOWN" then
      results[by_ref[msg[2]]] = {"exit", msg[5]}
    else
      results[by_ref[msg[1]]] = {"ok", msg[2]}
      mb.demonitor(msg[1], {flush = true})
    end
    pending = pending - 1
  end
  if timer and not mb.cancel_timer(timer) then
    mb.receive(function(m) return type(m) == "table" and m[1] == "$task_yield_many" and m[2] == tag end, 0)
  end
  return results
end

-- After the task's DOWN: its result if it sent one before ending.
local function flush_reply(ref)
  local msg = mb.receive(is_reply(ref), 0)
  if msg then return {"ok", msg[2]} end
  return nil
end

--- Unlinks and stops the task: exit signal "shutdown", then "kill" if it has
--- not ended after `timeout` ms (default 5000); `"brutal_kill"` kills at once.
--- Returns `{"ok", result}` if the result arrived before it ended,
--- `{"exit", reason}` if it ended for another reason than the shutdown (killed
--- after the timeout: `{"exit", "killed"}`; already awaited or shut down:
--- `{"exit", "noproc"}`), nil otherwise. The task's DOWN and result are removed
--- from the mailbox.
---@param t moonbeam.task
---@param timeout? number|"infinity"|"brutal_kill" default 5000
---@return {[1]: "ok"|"exit", [2]: any}?
function task.shutdown(t, timeout)
  check_task(t, "task.shutdown")
  local brutal = timeout == "brutal_kill"
  local ms = nil
  if not brutal then ms = check_timeout(timeout, "task.shutdown", 5000) end
  local expected = brutal and "killed" or "shutdown"
  local mon = mb.monitor(t.pid)
  mb.unlink(t.pid)
  mb.exit(t.pid, brutal and "kill" or "shutdown")
  local msg = mb.receive(is_down(mon), ms)
  if msg == nil then
    mb.exit(t.pid, "kill")
    msg = mb.receive(is_down(mon))
  end
  local reason = msg[5]
  if reason == "noproc" then
    -- it had ended already: its own DOWN may be queued
    local down = mb.receive(is_down(t.ref), 0)
    local result = flush_reply(t.ref)
    if result then return result end
    if down == nil then
      mb.demonitor(t.ref, {flush = true})
      return {"exit", "noproc"}
    end
    reason = down[5]
  else
    mb.demonitor(t.ref, {flush = true})
    local result = flush_reply(t.ref)
    if result then return result end
  end
  if reason == expected then return nil end
  return {"exit", reason}
end

--- Starts `fn(...)` in a new process not linked to the caller, for side
--- effects only; returns its pid.
---@param fn moonbeam.task_fn
---@return moonbeam.pid
function task.start(fn, ...)
  check_fn(fn, "task.start")
  return (spawn({}, task._call, fn, ...))
end

--- Starts `fn(...)` in a new process linked to the caller, for side effects
--- only (as a supervised worker); returns its pid.
---@param fn moonbeam.task_fn
---@return moonbeam.pid
function task.start_link(fn, ...)
  check_fn(fn, "task.start_link")
  return (spawn({link = true}, task._call, fn, ...))
end

--- Internal: calls a task function given as a function or {module, name}.
function task._call(fn, ...)
  if type(fn) == "table" then
    local name = fn[1] .. "." .. fn[2]
    fn = require(fn[1])[fn[2]]
    if type(fn) ~= "function" then error("task: " .. name .. " is not a function") end
  end
  return (fn(...))
end

------------------------------------------------------------------ async_stream

---@class moonbeam.task_stream_opts
---@field max_concurrency? integer tasks running at once (default: schedulers)
---@field ordered? boolean results in input order (default true)
---@field timeout? number|"infinity" ms each task may run (default 5000)
---@field on_timeout? "exit"|"kill_task" default "exit"

local function stream_kill(state)
  for _, r in pairs(state.running) do
    mb.unlink(r.pid)
    mb.exit(r.pid, "kill")
    if r.timer then mb.cancel_timer(r.timer) end
  end
  for ref in pairs(state.running) do
    mb.receive(is_down(ref))
    mb.receive(is_reply(ref), 0)
  end
  local tag = state.tag
  while mb.receive(function(m)
    return type(m) == "table" and m[1] == "$task_stream_timeout" and m[2] == tag
  end, 0) do end
  state.running = {}
  state.count = 0
  state.finished = true
end

local stream_close_mt = {__close = function(self) if not self.state.finished then stream_kill(self.state) end end}

--- Runs `fn(item)` for every item in a task of its own, at most
--- `max_concurrency` at once, and returns an iterator over the results, each
--- `{"ok", value}` or `{"exit", reason}` (a task that crashed while the caller
--- traps exits, or `{"exit", "timeout"}` with `on_timeout = "kill_task"`).
--- Lazy, as Elixir's stream: tasks start as the loop pulls results. Use it in
--- a generic for; leaving the loop early (break, error) kills the tasks still
--- running. Tasks are linked to the caller. A task running longer than
--- `timeout` makes the caller exit with `{"timeout", {"task", "async_stream",
--- {timeout}}}` (after killing every task) unless `on_timeout = "kill_task"`.
--- `items` is a list or an iterator function (ending at nil).
---@param items any[]|fun(): any
---@param fn function|string[]
---@param opts? moonbeam.task_stream_opts
---@return fun(): {[1]: "ok"|"exit", [2]: any}? iterator
---@return nil
---@return nil
---@return table closer to-be-closed value that kills unfinished tasks
function task.async_stream(items, fn, opts)
  return task._stream("task.async_stream", items, fn, opts, nil)
end

-- Starts a stream's task for one item: pid and ref, the ref already sent.
local function stream_start(me, fn, item)
  local pid, ref = spawn({link = true, monitor = true}, run, me, fn, item)
  mb.send(pid, {"$task_ref", ref})
  return pid, ref
end

--- (internal) async_stream, with `starter(owner, fn, item) -> pid, ref` to
--- start each task (monitored by ref, which the task knows); errors name `who`
--- and point at the caller's caller.
function task._stream(who, items, fn, opts, starter)
  starter = starter or stream_start
  check_fn(fn, who)
  opts = gen.check_opts(opts, STREAM_OPTS, who)
  local next_item
  if type(items) == "table" then
    local i, n = 0, #items
    next_item = function()
      if i >= n then return false end
      i = i + 1
      return true, items[i]
    end
  elseif type(items) == "function" then
    next_item = function()
      local v = items()
      if v == nil then return false end
      return true, v
    end
  else
    gen.error(who .. ": items must be a list or an iterator function, got " .. type(items))
  end
  local max = opts.max_concurrency or mb.schedulers()
  if math.type(max) ~= "integer" or max < 1 then
    gen.error(who .. ": max_concurrency must be an integer >= 1")
  end
  local ordered = opts.ordered ~= false
  local timeout = check_timeout(opts.timeout, who, 5000)
  local on_timeout = opts.on_timeout or "exit"
  if on_timeout ~= "exit" and on_timeout ~= "kill_task" then
    gen.error(who .. ": on_timeout must be \"exit\" or \"kill_task\"")
  end
  local state = {
    running = {}, count = 0, finished = false, tag = mb.make_ref(),
    next_in = 0, next_out = 1, buffer = {}, queue = {}, qhead = 1, qtail = 0, exhausted = false,
  }
  local me = mb.self()
  local function emit(index, result)
    if ordered then
      state.buffer[index] = result
    else
      state.qtail = state.qtail + 1
      state.queue[state.qtail] = result
    end
  end
  local function finish(ref)
    local r = state.running[ref]
    state.running[ref] = nil
    state.count = state.count - 1
    if r.timer and not mb.cancel_timer(r.timer) then
      mb.receive(function(m)
        return type(m) == "table" and m[1] == "$task_stream_timeout" and m[2] == state.tag and m[3] == ref
      end, 0)
    end
    return r
  end
  local function iterator()
    if state.finished then return nil end
    if me ~= mb.self() then gen.error(who .. ": the stream belongs to another process") end
    while true do
      while not state.exhausted and state.count < max do
        local more, item = next_item()
        if not more then
          state.exhausted = true
        else
          state.next_in = state.next_in + 1
          local pid, ref = starter(me, fn, item)
          local timer = timeout and mb.send_after(timeout, me, {"$task_stream_timeout", state.tag, ref})
          state.running[ref] = {pid = pid, index = state.next_in, timer = timer}
          state.count = state.count + 1
        end
      end
      if ordered then
        local r = state.buffer[state.next_out]
        if r then
          state.buffer[state.next_out] = nil
          state.next_out = state.next_out + 1
          return r
        end
      elseif state.qhead <= state.qtail then
        local r = state.queue[state.qhead]
        state.queue[state.qhead] = nil
        state.qhead = state.qhead + 1
        return r
      end
      if state.count == 0 and state.exhausted then
        state.finished = true
        return nil
      end
      local running, tag = state.running, state.tag
      local msg = mb.receive(function(m)
        if type(m) ~= "table" then return false end
        local k = m[1]
        if k == "DOWN" then return running[m[2]] ~= nil end
        if k == "$task_stream_timeout" then return m[2] == tag and running[m[3]] ~= nil end
        return running[k] ~= nil
      end)
      if msg[1] == "DOWN" then
        emit(finish(msg[2]).index, {"exit", msg[5]})
      elseif msg[1] == "$task_stream_timeout" then
        local ref = msg[3]
        if on_timeout == "exit" then
          stream_kill(state)
          mb.exit({"timeout", {"task", "async_stream", {timeout}}})
        end
        local r = state.running[ref]
        r.timer = nil
        mb.unlink(r.pid)
        mb.exit(r.pid, "kill")
        mb.receive(is_down(ref))
        local late = mb.receive(is_reply(ref), 0)
        finish(ref)
        emit(r.index, late and {"ok", late[2]} or {"exit", "timeout"})
      else
        local ref = msg[1]
        mb.demonitor(ref, {flush = true})
        emit(finish(ref).index, {"ok", msg[2]})
      end
    end
  end
  return iterator, nil, nil, setmetatable({state = state}, stream_close_mt)
end

--- Collects an `async_stream` into a list of its results, in the order the
--- stream gives them.
---@param items any[]|fun(): any
---@param fn function|string[]
---@param opts? moonbeam.task_stream_opts
---@return {[1]: "ok"|"exit", [2]: any}[]
function task.async_stream_list(items, fn, opts)
  local out = {}
  for r in task.async_stream(items, fn, opts) do out[#out + 1] = r end
  return out
end

return task
