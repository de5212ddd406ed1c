--- moonbeam.blocking: run a function that must block (a C library with no
--- asynchronous API, a CPU-heavy parse, os.execute) on a pool of worker threads,
--- each with a Lua VM of its own (BEAM's dirty schedulers), while the caller
--- waits as in a receive: its scheduler keeps running every other process.
--- See docs/blocking.md.
local core = require "moonbeam.core"

local M = {}

local function finish(ok, ...)
  if ok then return ... end
  error((...), 0)
end

-- Runs module_name.function_name(...) in the worker's VM.
local function run_mfa(module_name, function_name, ...)
  local mod = require(module_name)
  local fn = type(mod) == "table" and mod[function_name]
  if type(fn) ~= "function" then
    error(string.format("blocking: module '%s' has no function '%s'", module_name, function_name), 0)
  end
  return fn(...)
end

--- Calls `fn(...)` on a worker and returns its results; an error in it is
--- raised here with its message. `fn` is copied to the worker as spawn copies a
--- function (upvalues by value, modules re-required by name), or given as
--- `{module_name, function_name}`. Arguments and results are copied as
--- messages are. Only a process may call it.
---@param fn function|string[]
---@return any ...
function M.run(fn, ...)
  if type(fn) == "table" then
    local m, f = fn[1], fn[2]
    if type(m) ~= "string" or type(f) ~= "string" then
      error("blocking: expected a function or {module_name, function_name}", 2)
    end
    return finish(core.blocking(run_mfa, m, f, ...))
  end
  if type(fn) ~= "function" then
    error("blocking: expected a function or {module_name, function_name}, got " .. type(fn), 2)
  end
  return finish(core.blocking(fn, ...))
end

--- Sets the most worker threads the pool may have (1..256; default the runtime
--- option blocking_pool, else the number of schedulers, at least 4) when `n`
--- is given. Returns the size before the
--- call and the number of workers started now (they start on demand).
---@param n? integer
---@return integer old_size
---@return integer workers
function M.pool(n)
  return core.blocking_pool(n)
end

return M
