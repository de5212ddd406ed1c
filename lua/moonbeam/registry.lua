--- moonbeam.registry: Elixir's Registry, a local key-value process registry.
---
--- A registry is a process registered under its name. Processes register
--- themselves under keys (unique or duplicate) with a value; the registry
--- monitors every registrant and drops its entries when it exits. Every
--- operation is a gen call to the registry process, so it is correct whichever
--- scheduler (Lua VM) the caller runs on. See docs/registry.md.
local mb = require "moonbeam"

local registry = {}

---@alias moonbeam.registry.name string|moonbeam.pid A registry's registered name, or its pid.
---@alias moonbeam.registry.entry {[1]: moonbeam.pid, [2]: any} `{pid, value}`

local LABEL = "moonbeam.registry"

local function gen() return require "moonbeam.gen" end

-- ------------------------------------------------------------------ keys
-- Keys are any sendable value; the server indexes them by a canonical string,
-- so that equal tuples ({"room", 1}) are the same key wherever they come from.

local canon

local function canon_table(t)
  local parts = {}
  for k, v in pairs(t) do parts[#parts + 1] = canon(k) .. canon(v) end
  table.sort(parts)
  return table.concat(parts)
end

canon = function(v)
  local ty = type(v)
  local s
  if ty == "string" then s = "s" .. v
  elseif math.type(v) == "integer" then s = "i" .. string.format("%d", v)
  elseif ty == "number" then s = "f" .. string.format("%.17g", v)
  elseif ty == "boolean" then s = v and "T" or "F"
  elseif ty == "table" then s = "t" .. canon_table(v)
  elseif mb.is_pid(v) then s = "p" .. tostring(v)
  else s = "u" .. tostring(v) -- refs, atoms: their printed form is unique
  end
  return #s .. ":" .. s
end

-- ------------------------------------------------------------------ server
-- State: entries[ks] = {key = key, list = {{pid, value}, ...}} in registration
-- order; procs[pid] = {ref = monitor, keys = {ks, ...}} (a key once per entry).

local function remove_entries(st, pid, ks)
  local e = st.entries[ks]
  if not e then return 0 end
  local kept, removed = {}, 0
  for _, pv in ipairs(e.list) do
    if pv[1] == pid then removed = removed + 1 else kept[#kept + 1] = pv end
  end
  if #kept == 0 then st.entries[ks] = nil else e.list = kept end
  st.count = st.count - removed
  return removed
end

local function drop_process(st, pid)
  local p = st.procs[pid]
  if not p then return end
  for _, ks in ipairs(p.keys) do remove_entries(st, pid, ks) end
  st.procs[pid] = nil
  mb.demonitor(p.ref, {flush = true})
end

-- Entries of ks whose process is still alive (a DOWN may not be handled yet).
local function live_entries(st, ks)
  local e = st.entries[ks]
  local out = {}
  if not e then return out end
  for _, pv in ipairs(e.list) do
    if mb.alive(pv[1]) then out[#out + 1] = {pv[1], pv[2]} end
  end
  return out
end

local handlers = {}

function handlers.register(st, pid, key, value)
  local ks = canon(key)
  if st.unique then
    local e = st.entries[ks]
    if e then
      local owner = e.list[1][1]
      if mb.alive(owner) then return {"error", {"already_registered", owner}} end
      drop_process(st, owner)
    end
  end
  local p = st.procs[pid]
  if not p then
    p = {ref = mb.monitor(pid), keys = {}}
    st.procs[pid] = p
  end
  local e = st.entries[ks]
  if not e then
    e = {key = key, list = {}}
    st.entries[ks] = e
  end
  e.list[#e.list + 1] = {pid, value}
  p.keys[#p.keys + 1] = ks
  st.count = st.count + 1
  return {"ok", mb.self()}
end

function handlers.unregister(st, pid, key)
  local ks = canon(key)
  local p = st.procs[pid]
  if not p then return "ok" end
  remove_entries(st, pid, ks)
  local kept = {}
  for _, k in ipairs(p.keys) do if k ~= ks then kept[#kept + 1] = k end end
  p.keys = kept
  if #kept == 0 then drop_process(st, pid) end
  return "ok"
end

function handlers.lookup(st, _, key)
  return live_entries(st, canon(key))
end

function handlers.whereis(st, _, key)
  if not st.unique then return {"error", "duplicate"} end
  local list = live_entries(st, canon(key))
  return list[1] and list[1][1] or false
end

function handlers.values(st, _, key, pid)
  local out = {}
  for _, pv in ipairs(live_entries(st, canon(key))) do
    if pv[1] == pid then out[#out + 1] = pv[2] end
  end
  return out
end

function handlers.update_value(st, pid, key, value)
  if not st.unique then return {"error", "duplicate"} end
  local e = st.entries[canon(key)]
  if not e or e.list[1][1] ~= pid then return {"error", "not_owner"} end
  local old = e.list[1][2]
  e.list[1][2] = value
  return {"ok", old}
end

function handlers.keys(st, _, pid)
  local p = st.procs[pid]
  local out = {}
  if not p or not mb.alive(pid) then return out end
  for _, ks in ipairs(p.keys) do out[#out + 1] = st.entries[ks].key end
  return out
end

function handlers.count(st)
  return st.count
end

function handlers.count_key(st, _, key)
  return #live_entries(st, canon(key))
end

function handlers.meta(st, _, k)
  local ks = canon(k)
  if st.meta[ks] == nil then return {"error"} end
  return {"ok", st.meta[ks][2]}
end

function handlers.put_meta(st, _, k, v)
  st.meta[canon(k)] = {k, v}
  return "ok"
end

function handlers.info(st)
  return {keys = st.unique and "unique" or "duplicate", name = st.name}
end

--- The registry's process body (internal: started by `start_link`).
---@param opts {keys: string, name: string, meta?: table}
function registry._server(opts)
  local st = {unique = opts.keys == "unique", name = opts.name, entries = {}, procs = {},
              count = 0, meta = {}}
  for k, v in pairs(opts.meta or {}) do st.meta[canon(k)] = {k, v} end
  while true do
    local msg = mb.receive()
    local tag = type(msg) == "table" and msg[1]
    if tag == "$gen_call" then
      local from, req = msg[2], msg[3]
      local h = type(req) == "table" and handlers[req[1]]
      local reply
      if h then
        reply = h(st, from[1], req[2], req[3], req[4])
      else
        reply = {"error", "unknown_call"}
      end
      gen().reply(from, reply)
    elseif tag == "DOWN" then
      drop_process(st, msg[4])
    elseif tag == "$gen_stop" then
      mb.exit(msg[2])
    end
    -- anything else (casts, stray messages) is dropped
  end
end

-- ------------------------------------------------------------------ client

local function check_name(registry_name, fn)
  if type(registry_name) == "string" then
    if registry_name == "" then gen().error("registry." .. fn .. ": empty registry name") end
    return registry_name
  end
  if mb.is_pid(registry_name) then return registry_name end
  gen().error(string.format("registry.%s: registry name or pid expected, got %s", fn,
                      type(registry_name)))
end

local function call(registry_name, fn, ...)
  check_name(registry_name, fn)
  local pid = registry_name
  if type(registry_name) == "string" then
    pid = mb.whereis(registry_name)
    if not pid then
      gen().error(string.format("registry.%s: unknown registry '%s' (not started or not running)", fn,
                          registry_name))
    end
  end
  return gen().call(pid, {...}, 5000, LABEL)
end

local function check_key(key, fn)
  if key == nil then gen().error("registry." .. fn .. ": key must not be nil") end
end

local START_OPTS = {"keys", "name", "meta"}

local function check_start_opts(opts, who)
  if type(opts) ~= "table" then gen().error(who .. ": options table expected") end
  gen().check_keys(opts, START_OPTS, who)
  if opts.keys ~= "unique" and opts.keys ~= "duplicate" then
    gen().error(who .. ": keys must be \"unique\" or \"duplicate\", got " .. mb.format(opts.keys))
  end
  if type(opts.name) ~= "string" or opts.name == "" then
    gen().error(who .. ": name must be a non-empty string")
  end
  if opts.meta ~= nil and type(opts.meta) ~= "table" then
    gen().error(who .. ": meta must be a table")
  end
end

--- Starts a registry process, linked to the caller and registered under `name`.
--- `keys` is "unique" (a key has at most one entry) or "duplicate".
--- `meta` is an optional table of metadata read with `meta`.
---@param opts {keys: "unique"|"duplicate", name: string, meta?: table}
---@return moonbeam.pid|nil pid
---@return any err `{"already_started", pid}` when the name is taken
function registry.start_link(opts)
  check_start_opts(opts, "registry.start_link")
  local cfg = {keys = opts.keys, name = opts.name, meta = opts.meta}
  local ok, pid = pcall(mb.spawn_opt, {link = true, name = opts.name},
                        {"moonbeam.registry", "_server"}, cfg)
  if not ok then
    local other = mb.whereis(opts.name)
    if other then return nil, {"already_started", other} end
    error(pid, 0)
  end
  return pid
end

--- A child spec for a supervisor: `{id, start = {"moonbeam.registry", "start_link", {opts}}}`.
---@param opts {keys: "unique"|"duplicate", name: string, meta?: table}
---@return table
function registry.child_spec(opts)
  check_start_opts(opts, "registry.child_spec")
  return {id = opts.name, start = {"moonbeam.registry", "start_link", {opts}},
          type = "supervisor"}
end

--- Registers the CALLER under `key` with `value`. In a unique registry a key
--- already taken by a live process returns `nil, {"already_registered", pid}`
--- (the caller's own pid if it registered the key before). In a duplicate
--- registry a process may register the same key more than once.
---@param registry_name moonbeam.registry.name
---@param key any
---@param value? any
---@return moonbeam.pid|nil owner the registry's pid on success
---@return any err `{"already_registered", pid}`
function registry.register(registry_name, key, value)
  check_key(key, "register")
  local r = call(registry_name, "register", "register", key, value)
  if r[1] == "ok" then return r[2] end
  return nil, r[2]
end

--- Removes every entry of `key` that belongs to the caller (no error if none).
---@param registry_name moonbeam.registry.name
---@param key any
---@return true
function registry.unregister(registry_name, key)
  check_key(key, "unregister")
  call(registry_name, "unregister", "unregister", key)
  return true
end

--- The entries under `key`: a list of `{pid, value}` (empty if none), in
--- registration order.
---@param registry_name moonbeam.registry.name
---@param key any
---@return moonbeam.registry.entry[]
function registry.lookup(registry_name, key)
  check_key(key, "lookup")
  return call(registry_name, "lookup", "lookup", key)
end

--- Looks `key` up and calls `fn(entries)` in the caller when there is at least
--- one entry (never with an empty list), as Elixir's Registry.dispatch/3.
---@param registry_name moonbeam.registry.name
---@param key any
---@param fn fun(entries: moonbeam.registry.entry[])
---@return true
function registry.dispatch(registry_name, key, fn)
  check_key(key, "dispatch")
  if type(fn) ~= "function" then gen().error("registry.dispatch: function expected") end
  local entries = call(registry_name, "dispatch", "lookup", key)
  if #entries > 0 then fn(entries) end
  return true
end

--- The keys `pid` is registered under, in registration order (a key repeats
--- when a duplicate registry holds it more than once); empty if none.
---@param registry_name moonbeam.registry.name
---@param pid moonbeam.pid
---@return any[]
function registry.keys(registry_name, pid)
  if not mb.is_pid(pid) then gen().error("registry.keys: pid expected") end
  return call(registry_name, "keys", "keys", pid)
end

--- The values `pid` registered under `key` (a list; at most one in a unique registry).
---@param registry_name moonbeam.registry.name
---@param key any
---@param pid moonbeam.pid
---@return any[]
function registry.values(registry_name, key, pid)
  check_key(key, "values")
  if not mb.is_pid(pid) then gen().error("registry.values: pid expected") end
  return call(registry_name, "values", "values", key, pid)
end

--- Unique registries: replaces the value of the caller's entry under `key`
--- with `fn(old)`. Returns `new, old`, or `nil, "error"` if the caller does
--- not own the key (Elixir's `:error`).
---@param registry_name moonbeam.registry.name
---@param key any
---@param fn fun(old: any): any
---@return any new
---@return any old
function registry.update_value(registry_name, key, fn)
  check_key(key, "update_value")
  if type(fn) ~= "function" then gen().error("registry.update_value: function expected") end
  -- Only the owner changes its own entry, so reading then writing cannot race.
  local self = mb.self()
  local mine = call(registry_name, "update_value", "values", key, self)
  if #mine == 0 then return nil, "error" end
  local new = fn(mine[1])
  local r = call(registry_name, "update_value", "update_value", key, new)
  if r[1] == "ok" then return new, r[2] end
  if r[2] == "duplicate" then gen().error("registry.update_value: only for unique registries") end
  return nil, "error"
end

--- Number of entries in the registry.
---@param registry_name moonbeam.registry.name
---@return integer
function registry.count(registry_name)
  return call(registry_name, "count", "count")
end

--- Number of live entries under `key`.
---@param registry_name moonbeam.registry.name
---@param key any
---@return integer
function registry.count_key(registry_name, key)
  check_key(key, "count_key")
  return call(registry_name, "count_key", "count_key", key)
end

--- Registry metadata set with `start_link{meta = ...}` or `put_meta`: the
--- value, or `nil, "error"` if absent.
---@param registry_name moonbeam.registry.name
---@param k any
---@return any value
---@return string? err
function registry.meta(registry_name, k)
  check_key(k, "meta")
  local r = call(registry_name, "meta", "meta", k)
  if r[1] == "ok" then return r[2] end
  return nil, "error"
end

--- Stores registry metadata.
---@param registry_name moonbeam.registry.name
---@param k any
---@param v any
---@return true
function registry.put_meta(registry_name, k, v)
  check_key(k, "put_meta")
  call(registry_name, "put_meta", "put_meta", k, v)
  return true
end

-- ------------------------------------------------------------------ via names
-- `{"via", registry_name, key}` is accepted wherever a server name is
-- (moonbeam.gen resolves it with whereis_name). Unique registries only.
-- Elixir's shape works too: `{"via", registry, {registry_name, key}}` with
-- `registry` this module, which gen then calls as a via module:
-- whereis_name({registry_name, key}), register_name({registry_name, key}, pid),
-- unregister_name({registry_name, key}), send({registry_name, key}, msg).

-- Elixir's {registry_name, key} as the only name argument: registry_name, key, rest...
local function via_args(registry_name, ...)
  if type(registry_name) == "table" and not mb.is_pid(registry_name) then
    return registry_name[1], registry_name[2], ...
  end
  return registry_name, ...
end

--- The pid registered under `key` in a unique registry, or nil.
--- Raises for a duplicate registry.
---@param registry_name moonbeam.registry.name
---@param key any
---@return moonbeam.pid?
function registry.whereis_name(registry_name, key)
  if key == nil then registry_name, key = via_args(registry_name) end
  check_key(key, "whereis_name")
  local r = call(registry_name, "whereis_name", "whereis", key)
  if type(r) == "table" then
    gen().error("registry.whereis_name: via names need a unique registry, '" ..
          tostring(registry_name) .. "' has duplicate keys")
  end
  return r or nil
end

--- Registers `pid` (which must be the caller) under `key` with value nil, for
--- via names. Returns true, or `nil, {"already_registered", pid}`.
---@param registry_name moonbeam.registry.name
---@param key any
---@param pid? moonbeam.pid default: the caller
---@return true|nil
---@return any err
function registry.register_name(registry_name, key, pid)
  if type(registry_name) == "table" and not mb.is_pid(registry_name) then
    registry_name, key, pid = via_args(registry_name, key)
  end
  if pid ~= nil and pid ~= mb.self() then
    gen().error("registry.register_name: a process can only register itself")
  end
  local owner, err = registry.register(registry_name, key, nil)
  if owner then return true end
  return nil, err
end

--- Unregisters the caller's via name `key`.
---@param registry_name moonbeam.registry.name
---@param key any
---@return true
function registry.unregister_name(registry_name, key)
  if key == nil then registry_name, key = via_args(registry_name) end
  return registry.unregister(registry_name, key)
end

--- Sends `msg` to the process registered under `key` (unique registries);
--- raises if there is none, as sending to an unregistered name does.
---@param registry_name moonbeam.registry.name
---@param key any
---@param msg any
---@return true
function registry.send(registry_name, key, msg)
  if type(registry_name) == "table" and not mb.is_pid(registry_name) then
    registry_name, key, msg = via_args(registry_name, key)
  end
  local pid = registry.whereis_name(registry_name, key)
  if not pid then
    gen().error("registry.send: no process registered under " .. mb.format(key, 1) .. " in '" ..
          tostring(registry_name) .. "'")
  end
  return mb.send(pid, msg)
end

return registry
