--- moonbeam.ffi: moonbeam's C API (csrc/include/moonbeam.h) for a LuaJIT host,
--- through LuaJIT's FFI. See docs/embedding.md.
---
--- The cdef is lua/moonbeam/ffi_cdef.lua, generated from the header by
--- tools/gen_ffi.lua (`make ffi-check` fails when they differ).
---
--- Threads: the host thread is scheduler 0 of a host-driven runtime. Native
--- processes spawned here run their Lua handler on scheduler 0 only, that is
--- inside rt:step() / rt:run() on the host thread: LuaJIT callbacks are never
--- entered from another thread. Every other scheduler is a thread of the
--- runtime's own that runs C or moonbeam Lua processes, never this LuaJIT state.
local ffi = require "ffi"

local M = {}

ffi.cdef(require "moonbeam.ffi_cdef")

-- ------------------------------------------------------------------ the library

--- Where libmoonbeam.so is looked for, in order: $MOONBEAM_LIB; build/ next to
--- this module's repository (lua/moonbeam/ffi.lua -> build/libmoonbeam.so);
--- each package.cpath template with ? = libmoonbeam; the system's search path.
local function readable(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function find_lib()
  local env = os.getenv("MOONBEAM_LIB")
  if env and env ~= "" then return env end
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/[^/]*$")
  if dir then
    local p = dir .. "/../../build/libmoonbeam.so"
    if readable(p) then return p end
  end
  for tmpl in package.cpath:gmatch("[^;]+") do
    local p = tmpl:gsub("%?", "libmoonbeam")
    if readable(p) then return p end
  end
  return "moonbeam"
end

M.library = find_lib()
local C = ffi.load(M.library)
M.C = C

local function check(r, what)
  if r < 0 then error((what or "moonbeam") .. ": " .. ffi.string(C.mb_strerror(r)), 3) end
  return r
end

-- ------------------------------------------------------------------ values

--- Atoms: M.atom("ok") encodes as the atom ok; decoded atoms are Lua strings
--- (true and false are booleans), as in the moonbeam Lua binding.
local ATOM = {__tostring = function(a) return a.name end}
function M.atom(name)
  assert(type(name) == "string", "atom name must be a string")
  return setmetatable({name = name}, ATOM)
end

--- Tuples: M.tuple(a, b, ...) encodes as a tuple; decoded tuples are tables
--- with this metatable (M.is_tuple) and their arity in field n.
local TUPLE = {}
function M.tuple(...) return setmetatable({n = select("#", ...), ...}, TUPLE) end
function M.is_tuple(v) return getmetatable(v) == TUPLE end

--- Pids are mb_pid_box cdata (equal pids compare ==; .id is the uint64 mb_pid_t).
ffi.cdef "typedef struct mb_pid_box { mb_pid_t id; } mb_pid_box;"
local Pid = ffi.metatype("mb_pid_box", {
  __eq = function(a, b) return ffi.istype("mb_pid_box", b) and a.id == b.id end,
  __tostring = function(p)
    return ("<%d.%d.%d>"):format(C.mb_pid_node(p.id), C.mb_pid_index(p.id), C.mb_pid_serial(p.id))
  end,
})
function M.pid(id) return Pid(id) end
local function pid_of(v)
  if ffi.istype("mb_pid_box", v) then return v.id end
  if type(v) == "userdata" then return ffi.cast("mb_pid_t *", v)[0] end -- a Lua binding pid
  return v
end

local int64 = ffi.typeof("int64_t")
local enc_t = ffi.typeof("mb_enc_t")

local encode_value
local function enc_str(e, s) return C.mb_enc_binary(e, s, #s) end

function encode_value(e, v, depth)
  if depth > 64 then error("term nested too deep", 0) end
  local t = type(v)
  if t == "number" then
    if v == math.floor(v) and v >= -2^63 and v < 2^63 then C.mb_enc_int(e, v)
    else C.mb_enc_float(e, v) end
  elseif t == "string" then enc_str(e, v)
  elseif t == "boolean" then local a = v and "true" or "false"; C.mb_enc_atom(e, a, #a)
  elseif t == "nil" then C.mb_enc_atom(e, "nil", 3)
  elseif t == "cdata" then
    if ffi.istype("mb_pid_box", v) then C.mb_enc_pid(e, v.id)
    elseif ffi.istype("mb_ref_t", v) then C.mb_enc_ref(e, v)
    elseif ffi.istype(int64, v) or ffi.istype("uint64_t", v) then C.mb_enc_int(e, v)
    else error("cannot encode cdata " .. tostring(ffi.typeof(v)), 0) end
  elseif t == "table" then
    local mt = getmetatable(v)
    if mt == ATOM then C.mb_enc_atom(e, v.name, #v.name)
    elseif mt == TUPLE then
      local n = v.n or #v
      C.mb_enc_tuple(e, n)
      for i = 1, n do encode_value(e, v[i], depth + 1) end
    else
      local n, count = #v, 0
      for _ in pairs(v) do count = count + 1 end
      if count == 0 then C.mb_enc_nil(e)
      elseif count == n then
        C.mb_enc_list(e, n)
        for i = 1, n do encode_value(e, v[i], depth + 1) end
        C.mb_enc_nil(e)
      else
        C.mb_enc_map(e, count)
        for k, x in pairs(v) do
          encode_value(e, k, depth + 1)
          encode_value(e, x, depth + 1)
        end
      end
    end
  else
    error("cannot encode a " .. t, 0)
  end
end

--- Encodes a Lua value as ETF into a new encoder with `prefix` bytes reserved
--- (mb_msg_prefix() for mb_send_enc). Raises on a value it cannot encode.
local function encoder(v, prefix)
  local e = enc_t()
  C.mb_enc_init(e, nil, prefix or 0)
  local ok, err = pcall(encode_value, e, v, 0)
  if not ok or e.err ~= 0 then
    local code = e.err
    C.mb_enc_discard(e)
    error(ok and ("encode: " .. ffi.string(C.mb_strerror(code))) or err, 3)
  end
  return e
end

--- Encodes a Lua value: returns the ETF bytes as a Lua string.
function M.encode(v)
  local e = encoder(v, 0)
  local len = ffi.new("size_t[1]")
  local buf = C.mb_enc_finish(e, len)
  local s = ffi.string(buf, len[0])
  ffi.C.free(buf)
  return s
end
pcall(ffi.cdef, "void free(void *);") -- may be declared already

local dec_t = ffi.typeof("mb_dec_t")
local decode_next
local sp, lenp = ffi.new("const char *[1]"), ffi.new("size_t[1]")
local bp = ffi.new("const uint8_t *[1]")
local u32 = ffi.new("uint32_t[1]")
local i64 = ffi.new("int64_t[1]")
local dbl = ffi.new("double[1]")
local pidp = ffi.new("mb_pid_t[1]")
local u64 = ffi.new("uint64_t[1]")

local function bad() error("malformed term", 0) end

function decode_next(d)
  local ty = C.mb_dec_type(d)
  if ty == C.MB_T_ATOM then
    if C.mb_dec_atom(d, sp, lenp) ~= 0 then bad() end
    local s = ffi.string(sp[0], lenp[0])
    if s == "true" then return true elseif s == "false" then return false end
    return s
  elseif ty == C.MB_T_INT then
    local r = C.mb_dec_int(d, i64)
    if r ~= 0 then error("integer out of range", 0) end
    local v = i64[0]
    if v >= -2^53 and v <= 2^53 then return tonumber(v) end
    return int64(v)
  elseif ty == C.MB_T_FLOAT then
    if C.mb_dec_float(d, dbl) ~= 0 then bad() end
    return dbl[0]
  elseif ty == C.MB_T_BINARY or ty == C.MB_T_STRING then
    local f = ty == C.MB_T_BINARY and C.mb_dec_binary or C.mb_dec_string
    if f(d, bp, lenp) ~= 0 then bad() end
    return ffi.string(bp[0], lenp[0])
  elseif ty == C.MB_T_TUPLE then
    if C.mb_dec_tuple(d, u32) ~= 0 then bad() end
    local n = u32[0]
    local t = setmetatable({n = n}, TUPLE)
    for i = 1, n do t[i] = decode_next(d) end
    return t
  elseif ty == C.MB_T_LIST then
    if C.mb_dec_list(d, u32) ~= 0 then bad() end
    local t = {}
    for i = 1, u32[0] do t[i] = decode_next(d) end
    if C.mb_dec_type(d) == C.MB_T_NIL then C.mb_dec_nil(d) else decode_next(d) end
    return t
  elseif ty == C.MB_T_NIL then
    C.mb_dec_nil(d)
    return {}
  elseif ty == C.MB_T_MAP then
    if C.mb_dec_map(d, u32) ~= 0 then bad() end
    local t = {}
    for _ = 1, u32[0] do
      local k = decode_next(d)
      t[k] = decode_next(d)
    end
    return t
  elseif ty == C.MB_T_PID then
    if C.mb_dec_pid(d, pidp) ~= 0 then bad() end
    return Pid(pidp[0])
  elseif ty == C.MB_T_REF then
    local r = ffi.new("mb_ref_t")
    if C.mb_dec_ref(d, r) ~= 0 then bad() end
    return r
  elseif ty == C.MB_T_PORT then
    if C.mb_dec_port(d, u64) ~= 0 then bad() end
    return u64[0]
  end
  bad()
end

--- Decodes ETF bytes (a Lua string, or a pointer and a length) into a Lua value.
--- Returns nil and a message for malformed input.
function M.decode(data, len)
  len = len or #data
  local d = dec_t()
  if C.mb_dec_init(d, nil, data, len) ~= 0 then return nil, "malformed term" end
  local ok, v = pcall(decode_next, d)
  if not ok then return nil, v end
  return v
end

-- ------------------------------------------------------------------ runtimes

local Runtime = {}
Runtime.__index = Runtime

--- A host-driven runtime: this thread is scheduler 0 (rt:step from the
--- host's frame), opts.schedulers - 1 more are threads of their own.
---@param opts? {schedulers?: integer, preempt?: boolean, node_name?: string}
function M.runtime(opts)
  opts = opts or {}
  local o = ffi.new("mb_runtime_opts_t")
  o.schedulers = opts.schedulers or 0
  o.host_driven = 1
  o.preempt = opts.preempt and 1 or 0
  if opts.node_name then o.node_name = opts.node_name end
  local out = ffi.new("mb_runtime_t *[1]")
  check(C.mb_runtime_new(o, out), "mb_runtime_new")
  return setmetatable({rt = out[0], handlers = {}, next_id = 1, live = 0}, Runtime)
end

--- Attaches to the runtime that `require "moonbeam"`'s mb.start() made in
--- this LuaJIT state, so the host gets both: Lua processes (mb.spawn, one
--- LuaJIT VM per scheduler, this state being scheduler 0's) and the C API
--- (host processes with Lua handlers, terms, sends). The C API is then called
--- through the loaded moonbeam/core.so itself (found with package.searchpath),
--- not libmoonbeam.so, so there is one copy of the core in the process; call
--- attach before M.runtime. rt:free() then is mb.stop().
function M.attach()
  local core = require "moonbeam.core"
  local handle = core.runtime_handle()
  local path = assert(package.searchpath("moonbeam.core", package.cpath), "moonbeam.core not found")
  M.library = path
  C = ffi.load(path)
  M.C = C
  return setmetatable({rt = ffi.cast("mb_runtime_t *", handle), attached = core,
                       handlers = {}, live = 0}, Runtime)
end

--- The mb_pid_t of a pid of the Lua binding (its userdata's payload), boxed.
function M.from_lua_pid(pid)
  return Pid(ffi.cast("mb_pid_t *", pid)[0])
end

--- Runs scheduler 0 on this thread for at most budget_us microseconds
--- (default 1000): timers, host-pinned native processes (their Lua handlers
--- run here), I/O. Returns false once the runtime has stopped.
function Runtime:step(budget_us)
  return C.mb_runtime_step(self.rt, budget_us or 1000) == 0
end

function Runtime:schedulers() return C.mb_runtime_schedulers(self.rt) end
function Runtime:stop() C.mb_runtime_stop(self.rt) end

--- Stops and frees the runtime (from the host thread): every process ends,
--- host processes' on_exit handlers run here.
function Runtime:free()
  if not self.rt then return end
  if self.attached then self.attached.stop() else C.mb_runtime_free(self.rt) end
  self.rt = nil
end

-- One callback for every host process (LuaJIT callbacks are a scarce
-- resource): userdata is the process's slot in the runtime's handler table.
local by_key = {}

local Proc = {}
Proc.__index = Proc

function Proc:pid() return Pid(C.mb_self(self.p)) end
function Proc:send(to, v) return self.owner:send(to, v, C.mb_self(self.p)) end
function Proc:trap_exit(on) return C.mb_trap_exit(self.p, on and 1 or 0) == 1 end
function Proc:link(pid) return check(C.mb_link(self.p, pid_of(pid)), "link") end
function Proc:unlink(pid) return check(C.mb_unlink(self.p, pid_of(pid)), "unlink") end
function Proc:monitor(pid)
  local r = ffi.new("mb_ref_t")
  check(C.mb_monitor(self.p, pid_of(pid), r), "monitor")
  return r
end
--- Sets the exit reason (any encodable value) used when the handler returns true.
function Proc:exit(reason)
  local s = M.encode(reason)
  check(C.mb_proc_exit(self.p, s, #s), "exit")
end

local function key_of(ud) return tonumber(ffi.cast("intptr_t", ud)) end

local native_cb = ffi.cast("mb_native_fn", function(p, msg, ud)
  local h = by_key[key_of(ud)]
  if not h then return 1 end
  local proc = h.proc
  proc.p = p
  local value, from
  if msg ~= nil then
    local len = ffi.new("size_t[1]")
    local data = C.mb_msg_data(msg, len)
    local err
    value, err = M.decode(data, len[0])
    if err then value = nil end
    local s = C.mb_msg_sender(msg)
    from = s ~= 0 and Pid(s) or nil
  end
  local ok, stop = pcall(h.fn, proc, value, from)
  proc.p = nil
  if not ok then
    -- an error ends the process with {error, Message}, as a crash
    local s = M.encode(M.tuple(M.atom("error"), tostring(stop)))
    C.mb_proc_exit(p, s, #s)
    return 1
  end
  return stop and 1 or 0
end)

local exit_cb = ffi.cast("mb_native_exit_fn", function(ud, reason, len)
  local k = key_of(ud)
  local h = by_key[k]
  by_key[k] = nil
  if not h then return end
  h.owner.live = h.owner.live - 1
  if h.on_exit then pcall(h.on_exit, (M.decode(reason, len))) end
end)

local next_key = 1

--- Spawns a native process pinned to scheduler 0, whose handler is the Lua
--- function fn(proc, msg, from): called with msg = nil once at start, then
--- for each message (decoded) in order, always on the host thread inside
--- rt:step. Return true to exit (reason normal, or what proc:exit set); an
--- error exits with {error, Message}. opts: name (register), link_to (none),
--- trap_exit, on_exit(reason).
function Runtime:spawn(fn, opts)
  assert(type(fn) == "function", "spawn: handler must be a function")
  opts = opts or {}
  local key = next_key
  next_key = next_key + 1
  local h = {fn = fn, on_exit = opts.on_exit, owner = self}
  h.proc = setmetatable({owner = self}, Proc)
  local o = ffi.new("mb_spawn_opts_t")
  o.scheduler = 1 -- scheduler index 0: the host thread
  o.trap_exit = opts.trap_exit and 1 or 0
  if opts.name then o.name = opts.name; o.name_len = #opts.name end
  local pid = ffi.new("mb_pid_t[1]")
  by_key[key] = h
  local r = C.mb_spawn_native(self.rt, native_cb, exit_cb, ffi.cast("void *", key), o, pid)
  if r < 0 then
    by_key[key] = nil
    check(r, "spawn")
  end
  self.live = self.live + 1
  return Pid(pid[0])
end

--- Sends a value to a pid or a registered name (from: a pid, or outside any
--- process). Sending to a dead pid succeeds, as in Erlang; an unregistered
--- name returns false.
function Runtime:send(to, v, from)
  from = pid_of(from) or 0
  if type(to) == "string" then
    local s = M.encode(v)
    local r = C.mb_send_name(self.rt, from, to, s, #s)
    if r == C.MB_ENOENT then return false end
    check(r, "send")
    return true
  end
  local e = encoder(v, C.mb_msg_prefix())
  check(C.mb_send_enc(self.rt, from, pid_of(to), e), "send")
  return true
end

--- Sends a value to every subscriber of topic (one shared copy); returns how many.
function Runtime:broadcast(topic, v)
  local s = M.encode(v)
  return check(C.mb_broadcast(self.rt, 0, topic, 0, s, #s), "broadcast")
end
function Runtime:subscribers(topic) return C.mb_subscribers(self.rt, topic) end

function Runtime:whereis(name)
  local p = C.mb_whereis(self.rt, name)
  return p ~= 0 and Pid(p) or nil
end
function Runtime:register(name, pid) return check(C.mb_register(self.rt, name, pid_of(pid)), "register") end
function Runtime:alive(pid) return C.mb_alive(self.rt, pid_of(pid)) == 1 end
function Runtime:exit(pid, reason)
  local s = M.encode(reason)
  return check(C.mb_exit_signal(self.rt, 0, pid_of(pid), s, #s), "exit")
end

-- ------------------------------------------------------------------ supervisors

local STRATEGY = {one_for_one = 0, one_for_all = 1, rest_for_one = 2}
local RESTART = {permanent = 0, transient = 1, temporary = 2}

-- One callback for every child start: arg is the child's key in by_key.
local start_keys = {}
local start_cb = ffi.cast("mb_child_start_fn", function(sup, arg, pidp)
  local c = start_keys[key_of(arg)]
  if not c then return C.MB_EINVAL end
  local ok, pid = pcall(c.start, Pid(C.mb_self(sup)))
  if not ok or pid == nil then return ok and 0 or C.MB_EINVAL end
  pidp[0] = pid_of(pid)
  return 0
end)

--- Starts a supervisor (mb_supervisor_start) on the host's scheduler, so the
--- children's Lua start functions run on the host thread inside rt:step.
--- spec: {strategy = "one_for_one"|"one_for_all"|"rest_for_one",
---   max_restarts?, max_seconds?, children = {{id = "a", start = function(sup_pid)
---   return rt:spawn(...) end, restart? = "permanent"|..., shutdown? = ms |
---   "brutal_kill" | "infinity"}, ...}}. start returns the child's pid, or nil
--- for OTP's ignore; an error is a failed start.
function Runtime:supervisor(spec)
  local n = #spec.children
  local cs = ffi.new("mb_child_spec_t[?]", math.max(n, 1))
  local keep = {cs = cs}
  for i, c in ipairs(spec.children) do
    local key = next_key
    next_key = next_key + 1
    start_keys[key] = {start = c.start}
    keep[#keep + 1] = c.id
    local s = cs[i - 1]
    s.id = c.id
    s.start = start_cb
    s.arg = ffi.cast("void *", key)
    s.restart = RESTART[c.restart or "permanent"] or error("bad restart type " .. tostring(c.restart))
    local sd = c.shutdown
    s.shutdown_ms = sd == "brutal_kill" and C.MB_SHUTDOWN_BRUTAL_KILL or sd == "infinity" and
                    C.MB_SHUTDOWN_INFINITY or sd or 0
  end
  local o = ffi.new("mb_spawn_opts_t")
  o.scheduler = 1
  local sp = ffi.new("mb_sup_spec_t")
  sp.strategy = STRATEGY[spec.strategy or "one_for_one"] or error("bad strategy " .. tostring(spec.strategy))
  sp.max_restarts = spec.max_restarts == 0 and C.MB_SUP_NO_RESTARTS or spec.max_restarts or 0
  sp.max_seconds = spec.max_seconds or 0
  sp.children = cs
  sp.nchildren = n
  sp.spawn = o
  local pid = ffi.new("mb_pid_t[1]")
  check(C.mb_supervisor_start(self.rt, sp, pid), "supervisor")
  return Pid(pid[0])
end

--- The children of a supervisor: {{id = , pid = (nil if not running)}, ...}.
function Runtime:which_children(sup)
  local info = ffi.new("mb_child_info_t[64]")
  local n = check(C.mb_supervisor_which_children(self.rt, pid_of(sup), info, 64), "which_children")
  local out = {}
  for i = 0, math.min(n, 64) - 1 do
    out[#out + 1] = {id = ffi.string(info[i].id), pid = info[i].pid ~= 0 and Pid(info[i].pid) or nil}
  end
  return out
end

function Runtime:stop_supervisor(sup) return check(C.mb_supervisor_stop(self.rt, pid_of(sup)), "stop_supervisor") end

-- A C function that calls a LuaJIT callback must not be called from a JIT
-- trace ("bad callback"): the functions that run handlers stay interpreted.
jit.off(Runtime.step)
jit.off(Runtime.free)
jit.off(Runtime.supervisor) -- nothing calls back here, but children start inside steps

return M
