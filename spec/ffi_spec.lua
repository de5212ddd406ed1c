-- spec/ffi_spec.lua: moonbeam.ffi, the C API for a LuaJIT host. Runs under
-- `luajit /usr/bin/busted` (make ffi-spec); under lua5.4 it only checks that
-- the generated cdef matches the header.

local function sh(cmd)
  local ok, how, code = os.execute(cmd)
  if type(ok) == "number" then return ok == 0 end -- Lua 5.1 / LuaJIT
  return ok == true and how == "exit" and code == 0
end

describe("moonbeam.ffi cdef", function()
  it("is what tools/gen_ffi.lua makes of csrc/include/moonbeam.h", function()
    assert.is_true(sh("lua5.4 tools/gen_ffi.lua --check >/dev/null"))
  end)

  it("the check fails when the header and the cdef differ", function()
    local tmp = os.tmpname()
    local src = assert(io.open("lua/moonbeam/ffi_cdef.lua", "rb")):read("*a")
    -- a header change the cdef has not followed: one declaration differs
    local stale = src:gsub("int mb_supervisor_stop%(", "int mb_supervisor_halt(")
    assert.are_not.equal(src, stale)
    local f = assert(io.open(tmp, "wb"))
    f:write(stale)
    f:close()
    local same = sh("lua5.4 tools/gen_ffi.lua --check " .. tmp .. " 2>/dev/null")
    local good = sh("cp lua/moonbeam/ffi_cdef.lua " .. tmp .. " && lua5.4 tools/gen_ffi.lua --check " .. tmp .. " >/dev/null")
    os.remove(tmp)
    assert.is_false(same)
    assert.is_true(good)
  end)
end)

if not jit then return end -- the rest needs LuaJIT's FFI

local ffi = require "ffi"
local mbffi = require "moonbeam.ffi"
local C = mbffi.C

-- Steps rt until cond() holds or ms pass; returns cond().
local function step_until(rt, cond, ms)
  local t0 = os.clock()
  local deadline = os.time() + math.ceil((ms or 3000) / 1000) + 1
  while not cond() and os.time() <= deadline do rt:step(1000) end
  return cond()
end

describe("moonbeam.ffi terms", function()
  it("round-trips numbers, strings, atoms, tuples, lists, maps, booleans", function()
    local v = mbffi.decode(mbffi.encode(mbffi.tuple(mbffi.atom("ok"), 42, -7, 1.5, "bin",
      {1, 2, 3}, {a = 1}, true, false, {})))
    assert.is_true(mbffi.is_tuple(v))
    assert.equal(10, v.n)
    assert.equal("ok", v[1])
    assert.equal(42, v[2])
    assert.equal(-7, v[3])
    assert.equal(1.5, v[4])
    assert.equal("bin", v[5])
    assert.same({1, 2, 3}, v[6])
    assert.same({a = 1}, v[7])
    assert.is_true(v[8])
    assert.is_false(v[9])
    assert.same({}, v[10])
  end)

  it("keeps 64-bit integers exact as int64_t cdata", function()
    local big = ffi.new("int64_t", 2 ^ 53) + 1 -- 2^53 + 1 has no double
    local v = mbffi.decode(mbffi.encode(big))
    assert.equal("cdata", type(v))
    assert.is_true(v == big)
    assert.equal("9007199254740993LL", tostring(v))
  end)

  it("encodes integral numbers as ETF integers", function()
    local s = mbffi.encode(3)
    assert.equal(string.char(131, 97, 3), s) -- SMALL_INTEGER_EXT
  end)

  it("reads what a C encoder built", function()
    local e = ffi.new("mb_enc_t")
    C.mb_enc_init(e, nil, 0)
    C.mb_enc_tuple(e, 2)
    C.mb_enc_atom(e, "reply", 5)
    C.mb_enc_int(e, -123456789)
    local len = ffi.new("size_t[1]")
    local buf = C.mb_enc_finish(e, len)
    local v = mbffi.decode(buf, len[0])
    ffi.C.free(buf)
    assert.same({"reply", -123456789}, {v[1], v[2]})
  end)

  it("refuses malformed and truncated input without crashing", function()
    local good = mbffi.encode(mbffi.tuple("a", {1, 2}))
    for i = 0, #good - 1 do
      local v, err = mbffi.decode(good:sub(1, i))
      assert.is_nil(v)
      assert.is_string(err)
    end
    assert.is_nil((mbffi.decode("\131\255garbage")))
    assert.is_nil((mbffi.decode("")))
  end)

  it("raises a clear error for values it cannot encode", function()
    assert.has_error(function() mbffi.encode(function() end) end, "cannot encode a function")
  end)
end)

describe("moonbeam.ffi runtime", function()
  local rt
  before_each(function() rt = mbffi.runtime({schedulers = 2}) end)
  after_each(function() if rt then rt:free() end end)

  it("runs a host process's Lua handler on the host thread, inside step", function()
    local got, sched_seen = {}, {}
    local pid = rt:spawn(function(proc, msg)
      sched_seen[#sched_seen + 1] = C.mb_runtime_current_sched(rt.rt)
      if msg ~= nil then got[#got + 1] = msg end
    end)
    assert.is_true(rt:alive(pid))
    rt:send(pid, "one")
    rt:send(pid, mbffi.tuple(mbffi.atom("two"), 2))
    assert.equal(0, #got) -- nothing runs outside step
    assert.is_true(step_until(rt, function() return #got == 2 end))
    assert.equal("one", got[1])
    assert.same({"two", 2}, {got[2][1], got[2][2]})
    for _, s in ipairs(sched_seen) do assert.equal(0, s) end
    assert.is_true(#sched_seen == 3) -- start + 2 messages
  end)

  it("ping-pongs between host processes, with the sender's pid", function()
    local rounds, done = 0, false
    local pong = rt:spawn(function(proc, msg, from)
      if msg ~= nil then proc:send(from, msg + 1) end
    end)
    rt:spawn(function(proc, msg)
      if msg == nil then proc:send(pong, 0) return end
      rounds = rounds + 1
      if msg >= 1000 then done = true return true end
      proc:send(pong, msg + 1)
    end)
    assert.is_true(step_until(rt, function() return done end))
    assert.equal(501, rounds) -- it gets 1, 3, ..., 1001
  end)

  it("sends by registered name; an unknown name returns false", function()
    local got
    rt:spawn(function(_, msg) if msg ~= nil then got = msg end end, {name = "host_box"})
    assert.is_truthy(rt:whereis("host_box"))
    assert.is_true(rt:send("host_box", "hello"))
    assert.is_false(rt:send("nobody_here", "x"))
    assert.is_true(step_until(rt, function() return got ~= nil end))
    assert.equal("hello", got)
  end)

  it("an error in a handler ends that process with {error, Message}", function()
    local reason
    local pid = rt:spawn(function(_, msg) if msg == "boom" then error("kaboom") end end,
      {on_exit = function(r) reason = r end})
    rt:send(pid, "boom")
    assert.is_true(step_until(rt, function() return reason ~= nil end))
    assert.equal("error", reason[1])
    assert.matches("kaboom", reason[2])
    assert.is_false(rt:alive(pid))
  end)

  it("traps a linked process's exit as {'EXIT', Pid, Reason}", function()
    local seen
    local worker = rt:spawn(function(proc, msg)
      if msg == "die" then proc:exit(mbffi.atom("crashed")) return true end
    end)
    rt:spawn(function(proc, msg)
      if msg == nil then proc:trap_exit(true) proc:link(worker) return end
      if mbffi.is_tuple(msg) and msg[1] == "EXIT" then seen = msg end
    end)
    rt:step(1000)
    rt:send(worker, "die")
    assert.is_true(step_until(rt, function() return seen ~= nil end))
    assert.is_true(seen[2] == worker)
    assert.equal("crashed", seen[3])
  end)

  it("on_exit runs for every host process when the runtime is freed, on this thread", function()
    local ended, scheds = 0, {}
    local r0 = rt.rt
    for _ = 1, 3 do
      rt:spawn(function() end, {on_exit = function()
        ended = ended + 1
        scheds[#scheds + 1] = C.mb_runtime_current_sched(r0)
      end})
    end
    rt:step(1000)
    rt:free()
    rt = nil
    assert.equal(3, ended)
    for _, sc in ipairs(scheds) do assert.equal(0, sc) end
  end)

  it("supervises host processes with Lua start functions (one_for_all, intensity)", function()
    local started = {}
    local function worker(name)
      return function()
        started[#started + 1] = name
        return rt:spawn(function(proc, msg)
          if msg == "crash" then proc:exit(mbffi.atom("crash")) return true end
        end)
      end
    end
    local sup = rt:supervisor{strategy = "one_for_all", max_restarts = 1, max_seconds = 10,
      children = {{id = "a", start = worker("a")}, {id = "b", start = worker("b"), shutdown = "brutal_kill"}}}
    assert.is_true(step_until(rt, function() return #started == 2 end))
    local kids = rt:which_children(sup)
    assert.equal(2, #kids)
    assert.same({"a", "b"}, {kids[1].id, kids[2].id})
    rt:send(kids[2].pid, "crash")
    assert.is_true(step_until(rt, function() return #started == 4 end))
    assert.equal("abab", table.concat(started))
    local again = rt:which_children(sup)
    assert.is_false(again[1].pid == kids[1].pid)
    assert.is_false(rt:alive(kids[1].pid))
    -- a second crash within the window: more than max_restarts, the supervisor gives up
    rt:send(again[1].pid, "crash")
    assert.is_true(step_until(rt, function() return not rt:alive(sup) end))
    assert.is_false(rt:alive(again[2].pid))
    assert.equal(4, #started)
  end)
end)
