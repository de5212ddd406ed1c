-- moonbeam.gen: the shared protocol (call, cast, reply, stop, whereis), the
-- start helper with its init acknowledgement, and gen.pack/gen.unpack moving
-- functions and tables of functions between processes on any scheduler.
local mb = require "moonbeam"
local gen = require "moonbeam.gen"

local function run(fn) return mb.run(fn, {schedulers = 2}) end

local function logger_quiet() require("moonbeam.logger").remove_backend("console") end

local function exit_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected the call to fail")
  return mb.exit_reason(err)
end

local function tagged(tag)
  return function(m) return type(m) == "table" and m[1] == tag end
end

-- A bare server speaking the protocol by hand.
local function echo_server()
  while true do
    local m = mb.receive()
    if m[1] == "$gen_call" then
      local req = m[3]
      if type(req) == "table" and req[1] == "sleep" then mb.sleep(req[2]) end
      if req == "die" then mb.exit("died") end
      gen.reply(m[2], {"echo", req})
    elseif m[1] == "$gen_cast" then
      mb.send(m[2][1], {"cast", m[2][2]})
    elseif m[1] == "$gen_stop" then
      mb.exit(m[2])
    end
  end
end

describe("gen.pack / gen.unpack", function()
  it("passes plain data through unchanged", function()
    local v = {1, "two", {three = 3}, true}
    assert.are.same(v, gen.unpack(gen.pack(v)))
    assert.is_nil(gen.unpack(gen.pack(nil)))
  end)

  it("moves closures with their upvalues, keeping shared cells, cycles and self-references", function()
    local count = 0
    local M = {}
    function M.inc() count = count + 1 return count end
    function M.get() return count end
    M.me = M
    local copy = gen.unpack(gen.pack(M))
    assert.are_not.equal(M, copy)
    assert.are.equal(copy, copy.me)
    copy.inc()
    copy.inc()
    assert.are.equal(2, copy.get()) -- inc and get still share one counter
    assert.are.equal(0, count)      -- the original's is untouched
  end)

  it("re-requires loaded modules and their fields instead of copying them", function()
    local fmt = string.format
    local f = function(x) return fmt("%d", x), gen end
    local g = gen.unpack(gen.pack(f))
    local s, m = g(7)
    assert.are.equal("7", s)
    assert.are.equal(gen, m)
  end)

  it("works across schedulers: a table module runs in a process on another VM", function()
    run(function()
      local M = {n = 10}
      function M.add(x) M.n = M.n + x return M.n end
      local me = mb.self()
      for s = 1, 2 do
        gen.spawn({scheduler = s}, function(mod)
          mb.send(me, {"r", mb.scheduler(), mod.add(5), M.add(1)})
        end, M)
      end
      local got = {}
      for _ = 1, 2 do
        local r = mb.receive(tagged("r"), 2000)
        got[r[2]] = {r[3], r[4]}
      end
      -- the argument and the upvalue are the same table: one copy
      assert.are.same({15, 16}, got[1])
      assert.are.same({15, 16}, got[2])
      assert.are.equal(10, M.n)
    end)
  end)

  it("keeps tuples and refuses coroutines and unknown C functions", function()
    run(function()
      local t = mb.tuple("a", 1)
      local back = gen.unpack(gen.pack({t, function() return t end}))
      assert.are.same({"a", 1}, {back[1][1], back[1][2]})
      assert.has_error(function() gen.pack({coroutine.create(function() end)}) end)
    end)
  end)
end)

describe("gen protocol", function()
  it("whereis resolves pids, names and via names", function()
    run(function()
      local pid = gen.spawn({}, echo_server)
      assert.are.equal(pid, gen.whereis(pid))
      assert.is_nil(gen.whereis("nobody"))
      mb.register("echo", pid)
      assert.are.equal(pid, gen.whereis("echo"))
      local Via = {names = {}}
      function Via.whereis_name(key) return key == "k" and pid or nil end
      assert.are.equal(pid, gen.whereis({"via", Via, "k"}))
      assert.is_nil(gen.whereis({"via", Via, "other"}))
      assert.has_error(function() gen.whereis(12) end,
        "bad server: a pid, a registered name or {\"via\", registry, key} expected, got number")
    end)
  end)

  it("call returns the reply; its failures name the label, the server and the request", function()
    run(function()
      local pid = gen.spawn({}, echo_server)
      assert.are.same({"echo", "hi"}, gen.call(pid, "hi"))
      assert.are.same({"timeout", {"my_behaviour", "call", {pid, {"sleep", 100}}}},
                      exit_of(gen.call, pid, {"sleep", 100}, 10, "my_behaviour"))
      mb.sleep(150)
      assert.are.equal(0, mb.flush()) -- the late reply was dropped
      assert.are.same({"died", {"gen", "call", {pid, "die"}}}, exit_of(gen.call, pid, "die"))
      assert.are.same({"noproc", {"gen", "call", {pid, "x"}}}, exit_of(gen.call, pid, "x"))
      assert.are.same({"calling_self", {"gen", "call", {mb.self(), "x"}}}, exit_of(gen.call, mb.self(), "x"))
      local pid2 = gen.spawn({}, echo_server)
      assert.are.same({"echo", "slow"}, gen.call(pid2, "slow", "infinity"))
      assert.has_error(function() gen.call(pid2, "x", -5) end)
    end)
  end)

  it("cast always returns ok; reply answers a call; stop waits for the exit", function()
    run(function()
      local pid = gen.spawn({}, echo_server)
      assert.are.equal("ok", gen.cast(pid, {mb.self(), "c"}))
      assert.are.same({"cast", "c"}, mb.receive(tagged("cast"), 2000))
      assert.are.equal("ok", gen.cast("nobody", 1))
      assert.are.equal("ok", gen.stop(pid, {"shutdown", "bye"}))
      assert.is_false(mb.alive(pid))
      assert.are.equal("ok", gen.cast(pid, 1))
      assert.are.same({"noproc", {"gen", "stop", {pid, "normal"}}}, exit_of(gen.stop, pid))
      assert.has_error(function() gen.reply({"not a pid"}, 1) end)
    end)
  end)

  it("start waits for the ack: ok, ignore, error, early exit, timeout and taken names", function()
    run(function()
      local body = function(st, how)
        if how == "ok" then
          gen.init_ack(st, "ok")
          mb.receive()
        elseif how == "ignore" then
          gen.init_ack(st, "ignore")
        elseif how == "error" then
          gen.init_ack(st, "error", "bad")
        elseif how == "crash" then
          mb.exit("early")
        else
          mb.sleep(5000)
        end
      end
      local pid = gen.start(body, {args = {"ok"}, name = "started_one"})
      assert.is_true(mb.is_pid(pid))
      assert.are.equal(pid, mb.whereis("started_one"))
      assert.are.same({nil, {"already_started", pid}}, {gen.start(body, {args = {"ok"}, name = "started_one"})})
      assert.are.equal("ignore", gen.start(body, {args = {"ignore"}}))
      assert.are.same({nil, "bad"}, {gen.start(body, {args = {"error"}})})
      assert.are.same({nil, "early"}, {gen.start(body, {args = {"crash"}})})
      assert.are.same({nil, "timeout"}, {gen.start(body, {args = {"hang"}, timeout = 30})})
      mb.trap_exit(true)
      assert.are.same({nil, "bad"}, {gen.start(body, {args = {"error"}, link = true})})
      assert.is_nil(mb.receive(tagged("EXIT"), 20))
    end)
  end)

  it("classifies clean exit reasons", function()
    assert.is_true(gen.is_clean_exit("normal"))
    assert.is_true(gen.is_clean_exit("shutdown"))
    assert.is_true(gen.is_clean_exit({"shutdown", {1}}))
    assert.is_false(gen.is_clean_exit("killed"))
    assert.is_false(gen.is_clean_exit({"error", "x", "tb"}))
  end)
end)

describe("gen: argument checks and error positions (issue 8 items 17, 18, 32)", function()
  local function raised(fn)
    local ok, err = pcall(fn)
    assert.is_false(ok, "expected an error")
    assert.are.equal("string", type(err), "expected an error message, got " .. tostring(err))
    return err
  end

  it("gen.start checks its function and options, raising at the caller's line", function()
    run(function()
      local line = debug.getinfo(1, "l").currentline
      local err = raised(function() gen.start(42) end) -- line + 1
      assert.matches("gen_spec.lua:" .. (line + 1) .. ": gen.start: expected a function or {module, function_name}, "
                     .. "got number", err, 1, true)
      assert.matches("gen.start: unknown option 'lnk' (valid options: link, name, timeout, args, scheduler)",
                     raised(function() gen.start(function() end, {lnk = true}) end), 1, true)
      assert.matches("gen.start: opts must be a table, got string",
                     raised(function() gen.start(function() end, "x") end), 1, true)
      assert.matches("gen.start: opts.args must be a list, got number",
                     raised(function() gen.start(function() end, {args = 1}) end), 1, true)
      assert.matches("gen.start: timeout must be", raised(function() gen.start(function() end, {timeout = -5}) end),
                     1, true)
      assert.matches("spawn: opts must be a table, got number",
                     raised(function() gen.spawn(5, function() end) end), 1, true)
    end)
  end)

  it("gen.init_ack checks the starter and the status", function()
    run(function()
      assert.matches("gen.init_ack: starter must be the table given to the started function, got nil",
                     raised(function() gen.init_ack(nil, "ok") end), 1, true)
      assert.matches("gen.init_ack: starter must be the table given to the started function, got {}",
                     raised(function() gen.init_ack({}, "ok") end), 1, true)
      local got, reason = gen.start(function(st)
        local ok, err = pcall(gen.init_ack, st, "okay")
        gen.init_ack(st, "error", ok or err)
      end)
      assert.is_nil(got)
      assert.matches("gen.init_ack: status must be \"ok\", \"ignore\" or \"error\", got \"okay\"", reason, 1, true)
    end)
  end)

  it("gen.error raises at the first frame outside moonbeam's modules", function()
    local line = debug.getinfo(1, "l").currentline
    local ok, err = pcall(function() gen.error("boom") end) -- line + 1
    assert.is_false(ok)
    assert.are.equal("spec/gen_spec.lua:" .. (line + 1) .. ": boom", err)
    -- through another module's helper (gen.check_keys calls gen.error)
    ok, err = pcall(function() gen.check_keys({b = 1, a = 2}, {"x"}, "f") end) -- line + 5
    assert.is_false(ok)
    assert.are.equal("spec/gen_spec.lua:" .. (line + 5) .. ": f: unknown option 'a' (valid options: x)", err)
    assert.is_nil(gen.unknown_key({x = 1}, {"x"}, "f"))
  end)
end)

-- issue 8 item 32: no OTP function answers bad arguments with Lua internals
-- ("attempt to index a nil value (local 'opts')") or an error located in
-- moonbeam's own files.
describe("every public function of the OTP modules, given bad arguments", function()
  it("fails with a clear error, an exit or a result, never with Lua internals", function()
    local mods = {"gen", "gen_server", "gen_statem", "supervisor", "dynamic_supervisor", "task", "task_supervisor",
                  "agent", "registry", "pubsub", "logger", "application"}
    local argsets = {{n = 0}, {42, n = 1}, {"x", n = 1}, {{}, n = 1}, {nil, 42, n = 2}, {"x", 42, n = 2},
                     {{}, {}, n = 2}, {"x", "y", 5, n = 3}, {{}, {}, {}, n = 3}, {"x", {}, 5, 7, n = 4},
                     {1, "y", {}, {}, n = 4}}
    local bad = {}
    run(function()
      logger_quiet()
      local me = mb.self()
      for _, m in ipairs(mods) do
        local names = {}
        for k, v in pairs(require("moonbeam." .. m)) do
          if type(v) == "function" and k:sub(1, 1) ~= "_" and k ~= "console" then names[#names + 1] = k end
        end
        table.sort(names)
        for _, fname in ipairs(names) do
          for _, a in ipairs(argsets) do
            local pid = mb.spawn(function()
              mb.trap_exit(true)
              local ok, err = pcall(require("moonbeam." .. m)[fname], table.unpack(a, 1, a.n))
              mb.send(me, {"r", not ok and mb.exit_reason(err) == nil and tostring(err) or "fine"})
            end)
            local r = mb.receive(function(x) return type(x) == "table" and x[1] == "r" end, 2000)
            local what = m .. "." .. fname .. "(" .. mb.format(a):sub(2, -2) .. ")"
            if not r then
              mb.exit(pid, "kill")
              bad[#bad + 1] = what .. ": no answer"
            elseif r[2]:find("attempt to") or r[2]:find("bad argument #") or r[2]:find("/moonbeam/[%w_]+%.lua:%d+:") then
              bad[#bad + 1] = what .. ": " .. r[2]:sub(1, 200)
            end
          end
        end
      end
    end)
    assert.are.same({}, bad)
  end)
end)
