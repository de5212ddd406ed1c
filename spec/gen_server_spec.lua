-- moonbeam.gen_server: every GenServer case of OTP-SEMANTICS.md, then the rest
-- of the API (names, start options, defaults, code_change, child_spec) and
-- bad input. Servers are table modules moved into their process by gen.pack,
-- or module names required in the server's VM.
local mb = require "moonbeam"
local gen_server = require "moonbeam.gen_server"
local logger = require "moonbeam.logger"

local function run(fn) return mb.run(fn, {schedulers = 2}) end

-- The exit reason `fn(...)` fails with.
local function exit_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected the call to fail")
  local reason = mb.exit_reason(err)
  assert(reason ~= nil, "expected an exit, got the error " .. tostring(err))
  return reason
end

local function tagged(tag)
  return function(m) return type(m) == "table" and m[1] == tag end
end

-- Routes log events to the calling process as {"$log", kind, level, line}.
local function capture_logs()
  local me = mb.self()
  logger.remove_backend("console")
  logger.add_backend("capture", function(line, event)
    mb.send(me, {"$log", event.kind, event.level, line})
  end)
end

-- A server reporting what happens to it to the test process `s.test`.
local Probe = {}
function Probe.init(arg)
  if arg.trap then mb.trap_exit(true) end
  if arg.init then return arg.init(arg) end
  return "ok", {test = arg.test, n = arg.n or 0}, arg.extra
end
function Probe.handle_call(req, from, s)
  if req == "get" then return "reply", s.n, s end
  if req == "pid" then return "reply", mb.self(), s end
  if type(req) == "table" and req[1] == "sleep" then
    mb.sleep(req[2])
    return "reply", "slept", s
  end
  if req == "crash" then error("crash in handle_call") end
  if type(req) == "table" and req[1] == "exit" then mb.exit(req[2]) end
  if type(req) == "table" and req[1] == "stop" then return "stop", req[2], "stopping", s end
  if type(req) == "table" and req[1] == "stop_noreply" then return "stop", req[2], s end
  if req == "defer" then
    s.deferred = from
    return "noreply", s
  end
  if type(req) == "table" and req[1] == "timeout" then return "reply", "armed", s, req[2] end
  if req == "hibernate" then return "reply", "zzz", s, "hibernate" end
  if type(req) == "table" and req[1] == "continue" then return "reply", "later", s, {"continue", req[2]} end
  if req == "bad" then return "what", s end
  return "reply", {"echo", req}, s
end
function Probe.handle_cast(req, s)
  if type(req) == "table" and req[1] == "add" then
    s.n = s.n + req[2]
    return "noreply", s
  end
  if req == "release" then
    gen_server.reply(s.deferred, "deferred reply")
    return "noreply", s
  end
  if type(req) == "table" and req[1] == "stop" then return "stop", req[2], s end
  if req == "crash" then error("crash in handle_cast") end
  return "noreply", s
end
function Probe.handle_info(msg, s)
  mb.send(s.test, {"info", msg})
  if msg == "crash" then error("crash in handle_info") end
  return "noreply", s
end
function Probe.handle_continue(arg, s)
  mb.send(s.test, {"continue", arg})
  return "noreply", s
end
function Probe.terminate(reason, s)
  mb.send(s.test, {"terminate", reason})
end

local function start_probe(extra, opts)
  local arg = {test = mb.self()}
  for k, v in pairs(extra or {}) do arg[k] = v end
  return gen_server.start(Probe, arg, opts)
end

describe("gen_server (OTP-SEMANTICS: GenServer)", function()
  it("call times out after 5000 ms by default, naming the server and the request", function()
    run(function()
      local pid = assert(start_probe())
      -- timers as a clock: the call must fail after 4.8 s and before 5.6 s
      mb.send_after(4800, mb.self(), "t4800")
      mb.send_after(5600, mb.self(), "t5600")
      local reason = exit_of(gen_server.call, pid, {"sleep", 7000})
      assert.are.same({"timeout", {"gen_server", "call", {pid, {"sleep", 7000}}}}, reason)
      assert.are.equal("t4800", mb.receive(function(m) return m == "t4800" end, 0))
      assert.is_nil(mb.receive(function(m) return m == "t5600" end, 0))
    end)
  end)

  it("call timeout: the server is not told, and a late reply never reaches the caller", function()
    run(function()
      local pid = assert(start_probe())
      local reason = exit_of(gen_server.call, pid, {"sleep", 200}, 50)
      assert.are.same({"timeout", {"gen_server", "call", {pid, {"sleep", 200}}}}, reason)
      -- the server carries on: its next reply comes after the late one was sent
      assert.are.equal(0, gen_server.call(pid, "get"))
      assert.is_true(mb.alive(pid))
      mb.sleep(50)
      assert.are.equal(0, mb.flush())
    end)
  end)

  it("call to a dead or unknown server fails at once with noproc", function()
    run(function()
      local pid = assert(start_probe())
      gen_server.stop(pid)
      assert.are.same({"noproc", {"gen_server", "call", {pid, "get"}}}, exit_of(gen_server.call, pid, "get"))
      assert.are.same({"noproc", {"gen_server", "call", {"nobody", "get"}}},
                      exit_of(gen_server.call, "nobody", "get", 60000))
      local via = {"via", "no_such_registry", "k"}
      local ok, err = pcall(gen_server.call, via, "get")
      assert.is_false(ok)
      assert.is_not_nil(err)
    end)
  end)

  it("a server that dies during the call fails the caller with its exit reason", function()
    run(function()
      local pid = assert(start_probe())
      assert.are.same({"boom", {"gen_server", "call", {pid, {"exit", "boom"}}}},
                      exit_of(gen_server.call, pid, {"exit", "boom"}))
      local pid2 = assert(start_probe())
      local reason = exit_of(gen_server.call, pid2, "crash")
      assert.are.equal("error", reason[1][1])
      assert.matches("crash in handle_call", reason[1][2])
      assert.matches("stack traceback", reason[1][3])
    end)
  end)

  it("cast always returns ok, even to a dead or unknown server", function()
    run(function()
      local pid = assert(start_probe())
      assert.are.equal("ok", gen_server.cast(pid, {"add", 2}))
      assert.are.equal(2, gen_server.call(pid, "get"))
      gen_server.stop(pid)
      assert.are.equal("ok", gen_server.cast(pid, {"add", 2}))
      assert.are.equal("ok", gen_server.cast("nobody", {"add", 2}))
    end)
  end)

  it("a returned timeout gives handle_info('timeout') when no message comes first", function()
    run(function()
      local pid = assert(start_probe())
      assert.are.equal("armed", gen_server.call(pid, {"timeout", 30}))
      assert.are.same({"info", "timeout"}, mb.receive(tagged("info"), 2000))
      -- from init too
      assert(start_probe({extra = 30}))
      assert.are.same({"info", "timeout"}, mb.receive(tagged("info"), 2000))
    end)
  end)

  it("a message arriving before the timeout cancels it", function()
    run(function()
      local pid = assert(start_probe())
      assert.are.equal("armed", gen_server.call(pid, {"timeout", 300}))
      mb.send(pid, "hello")
      assert.are.same({"info", "hello"}, mb.receive(tagged("info"), 2000))
      assert.is_nil(mb.receive(tagged("info"), 500))
    end)
  end)

  it("{'continue', x} runs handle_continue before any other message", function()
    run(function()
      -- init queues a message to itself, then asks to continue: continue comes first
      local pid = assert(start_probe({init = function(arg)
        mb.send(mb.self(), "queued before continue")
        return "ok", {test = arg.test, n = 0}, {"continue", "from init"}
      end}))
      assert.are.same({"continue", "from init"}, mb.receive(function(m)
        return type(m) == "table" and (m[1] == "continue" or m[1] == "info") end, 2000))
      assert.are.same({"info", "queued before continue"}, mb.receive(tagged("info"), 2000))
      -- from a callback: runs before the cast already queued behind the call
      assert.are.equal("later", gen_server.call(pid, {"continue", "from call"}))
      assert.are.same({"continue", "from call"}, mb.receive(tagged("continue"), 2000))
    end)
  end)

  it("deferred replies: handle_call returns noreply and replies later with gen_server.reply", function()
    run(function()
      local pid = assert(start_probe())
      local me = mb.self()
      require("moonbeam.gen").spawn({}, function()
        mb.send(me, {"got", gen_server.call(pid, "defer")})
      end)
      mb.sleep(50)
      assert.is_nil(mb.receive(tagged("got"), 0))
      gen_server.cast(pid, "release")
      assert.are.same({"got", "deferred reply"}, mb.receive(tagged("got"), 2000))
    end)
  end)

  it("terminate runs when a callback returns stop", function()
    run(function()
      local pid = assert(start_probe())
      assert.are.equal("stopping", gen_server.call(pid, {"stop", "normal"}))
      assert.are.same({"terminate", "normal"}, mb.receive(tagged("terminate"), 2000))
      local pid2 = assert(start_probe())
      gen_server.cast(pid2, {"stop", "shutdown"})
      assert.are.same({"terminate", "shutdown"}, mb.receive(tagged("terminate"), 2000))
    end)
  end)

  it("terminate runs when a callback raises", function()
    run(function()
      capture_logs()
      local pid = assert(start_probe())
      gen_server.cast(pid, "crash")
      local t = mb.receive(tagged("terminate"), 2000)
      assert.are.equal("error", t[2][1])
      assert.matches("crash in handle_cast", t[2][2])
    end)
  end)

  it("terminate runs when it traps exits and its parent sends an exit signal", function()
    run(function()
      local me = mb.self()
      local gen = require "moonbeam.gen"
      gen.spawn({}, function()
        local pid = gen_server.start_link(Probe, {test = me, trap = true})
        mb.send(me, {"server", pid})
        mb.exit(pid, "shutdown")
        mb.receive()
      end)
      local pid = mb.receive(tagged("server"), 2000)[2]
      assert.are.same({"terminate", "shutdown"}, mb.receive(tagged("terminate"), 2000))
      mb.sleep(20)
      assert.is_false(mb.alive(pid))
      -- the parent exiting does the same through the link
      gen.spawn({}, function()
        gen_server.start_link(Probe, {test = me, trap = true})
        mb.exit("going")
      end)
      assert.are.same({"terminate", "going"}, mb.receive(tagged("terminate"), 2000))
    end)
  end)

  it("terminate does not run on kill", function()
    run(function()
      local pid = assert(start_probe({trap = true}))
      local ref = mb.monitor(pid)
      mb.exit(pid, "kill")
      local down = mb.receive(tagged("DOWN"), 2000)
      assert.are.equal(ref, down[2])
      assert.are.equal("killed", down[5])
      assert.is_nil(mb.receive(tagged("terminate"), 100))
    end)
  end)

  it("terminate does not run on an untrapped exit from a linked process", function()
    run(function()
      local pid = assert(start_probe())
      local ref = mb.monitor(pid)
      local gen = require "moonbeam.gen"
      gen.spawn({}, function()
        mb.link(pid)
        mb.exit("linked crash")
      end)
      local down = mb.receive(tagged("DOWN"), 2000)
      assert.are.equal(ref, down[2])
      assert.are.equal("linked crash", down[5])
      assert.is_nil(mb.receive(tagged("terminate"), 100))
    end)
  end)

  it("a trapping server gets exits from linked processes other than its parent in handle_info", function()
    run(function()
      local pid = assert(start_probe({trap = true}))
      local gen = require "moonbeam.gen"
      local other = gen.spawn({}, function()
        mb.link(pid)
        mb.exit("bye")
      end)
      local info = mb.receive(tagged("info"), 2000)
      assert.are.same({"EXIT", other, "bye"}, info[2])
      assert.is_true(mb.alive(pid))
    end)
  end)

  it("stop is synchronous and runs terminate", function()
    run(function()
      local pid = assert(start_probe())
      assert.are.equal("ok", gen_server.stop(pid, "shutdown"))
      assert.is_false(mb.alive(pid))
      assert.are.same({"terminate", "shutdown"}, mb.receive(tagged("terminate"), 0))
      local pid2 = assert(start_probe())
      assert.are.equal("ok", gen_server.stop(pid2))
      assert.are.same({"terminate", "normal"}, mb.receive(tagged("terminate"), 0))
    end)
  end)

  it("stop with normal, shutdown or {'shutdown', _} logs nothing; any other reason is logged as a crash", function()
    run(function()
      capture_logs()
      for _, reason in ipairs({"normal", "shutdown", {"shutdown", "done"}}) do
        gen_server.stop(assert(start_probe()), reason)
      end
      logger.flush()
      mb.sleep(20)
      logger.flush()
      assert.is_nil(mb.receive(tagged("$log"), 0))
      gen_server.stop(assert(start_probe(nil, {name = "doomed"})), "bad_thing")
      local log = mb.receive(tagged("$log"), 2000)
      assert.are.equal("crash_report", log[2])
      assert.are.equal("error", log[3])
      assert.matches("GenServer <[%d.]+> %(doomed%) terminating", log[4])
      assert.matches("bad_thing", log[4])
    end)
  end)

  it("init returning 'ignore' makes start return 'ignore'", function()
    run(function()
      assert.are.equal("ignore", start_probe({init = function() return "ignore" end}))
      assert.are.equal("ignore", gen_server.start_link(Probe, {init = function() return "ignore" end}))
    end)
  end)

  it("init returning 'stop', reason makes start return nil, reason", function()
    run(function()
      local pid, reason = start_probe({init = function() return "stop", "no_way" end})
      assert.is_nil(pid)
      assert.are.equal("no_way", reason)
      -- start_link: as in OTP the server exits with the reason, so a trapping caller
      -- gets the result and no stray EXIT
      mb.trap_exit(true)
      pid, reason = gen_server.start_link(Probe, {init = function() return "stop", {"bad", 1} end})
      assert.is_nil(pid)
      assert.are.same({"bad", 1}, reason)
      assert.is_nil(mb.receive(tagged("EXIT"), 50))
    end)
  end)
end)

describe("gen_server", function()
  it("runs a module given by name, required in the server's VM", function()
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    local f = assert(io.open(dir .. "/gs_named_counter.lua", "w"))
    f:write([[
      local M = {}
      function M.init(n) return "ok", n end
      function M.handle_call(req, _, n)
        if req == "inc" then return "reply", n + 1, n + 1 end
        return "reply", require("moonbeam").scheduler(), n
      end
      return M
    ]])
    f:close()
    local old = package.path
    package.path = dir .. "/?.lua;" .. package.path
    local ok, err = pcall(run, function()
      local pids = {}
      for i = 1, 4 do pids[i] = assert(gen_server.start("gs_named_counter", i * 10)) end
      for i = 1, 4 do assert.are.equal(i * 10 + 1, gen_server.call(pids[i], "inc")) end
    end)
    package.path = old
    os.remove(dir .. "/gs_named_counter.lua")
    os.remove(dir)
    assert(ok, err)
  end)

  it("registers a name; a second start with it returns already_started", function()
    run(function()
      local pid = assert(start_probe(nil, {name = "probe"}))
      assert.are.equal(pid, mb.whereis("probe"))
      assert.are.equal(pid, gen_server.whereis("probe"))
      assert.are.equal(0, gen_server.call("probe", "get"))
      local again, reason = start_probe(nil, {name = "probe"})
      assert.is_nil(again)
      assert.are.same({"already_started", pid}, reason)
      gen_server.stop("probe")
      assert.is_nil(mb.whereis("probe"))
    end)
  end)

  it("accepts a via name through moonbeam.registry", function()
    run(function()
      local registry = require "moonbeam.registry"
      assert(registry.start_link({keys = "unique", name = "gs_reg"}))
      local name = {"via", "gs_reg", "worker1"}
      local pid = assert(start_probe(nil, {name = name}))
      assert.are.equal(pid, gen_server.whereis(name))
      gen_server.cast(name, {"add", 5})
      assert.are.equal(5, gen_server.call(name, "get"))
      local again, reason = start_probe(nil, {name = name})
      assert.is_nil(again)
      assert.are.same({"already_started", pid}, reason)
      gen_server.stop(name)
      assert.are.same({"noproc", {"gen_server", "call", {name, "get"}}}, exit_of(gen_server.call, name, "get"))
    end)
  end)

  it("start fails with timeout when init takes longer than opts.timeout, and the server is killed", function()
    run(function()
      local pid, reason = start_probe({init = function(arg)
        mb.send(arg.test, {"init_pid", mb.self()})
        mb.sleep(5000)
        return "ok", arg
      end}, {timeout = 50})
      assert.is_nil(pid)
      assert.are.equal("timeout", reason)
      local server = mb.receive(tagged("init_pid"), 0)[2]
      mb.sleep(20)
      assert.is_false(mb.alive(server))
    end)
  end)

  it("init that raises makes start return nil and the error, and logs a crash report", function()
    run(function()
      capture_logs()
      local pid, reason = start_probe({init = function() error("init failed") end})
      assert.is_nil(pid)
      assert.are.equal("error", reason[1])
      assert.matches("init failed", reason[2])
      local log = mb.receive(tagged("$log"), 2000)
      assert.are.equal("crash_report", log[2])
      assert.matches("init failed", log[4])
    end)
  end)

  it("a linked caller that does not trap exits fails with init's stop reason, as in OTP", function()
    run(function()
      local me = mb.self()
      local gen = require "moonbeam.gen"
      local _, ref = gen.spawn({monitor = true}, function()
        gen_server.start_link(Probe, {init = function() return "stop", "bad_init" end})
        mb.send(me, "survived")
      end)
      local down = mb.receive(tagged("DOWN"), 2000)
      assert.are.equal(ref, down[2])
      assert.are.equal("bad_init", down[5])
      assert.is_nil(mb.receive(function(m) return m == "survived" end, 0))
    end)
  end)

  it("a callback's bad return value stops the server with bad_return_value", function()
    run(function()
      capture_logs()
      local pid = assert(start_probe())
      local reason = exit_of(gen_server.call, pid, "bad")
      assert.are.equal("bad_return_value", reason[1][1])
      assert.matches("what", reason[1][2])
    end)
  end)

  it("handle_call and handle_cast default to raising; handle_info defaults to logging the message", function()
    run(function()
      capture_logs()
      local Bare = {init = function() return "ok", 0 end}
      local pid = assert(gen_server.start(Bare))
      mb.send(pid, "stray")
      local log = mb.receive(tagged("$log"), 2000)
      assert.are.equal("error", log[3])
      assert.matches("unexpected message in handle_info: \"stray\"", log[4])
      local reason = exit_of(gen_server.call, pid, "hi")
      assert.matches("no handle_call", reason[1][2])
      local pid2 = assert(gen_server.start(Bare))
      local ref = mb.monitor(pid2)
      gen_server.cast(pid2, "hi")
      local down = mb.receive(tagged("DOWN"), 2000)
      assert.are.equal(ref, down[2])
      assert.matches("no handle_cast", down[5][2])
    end)
  end)

  it("a crash in handle_info runs terminate and is logged with the last message and state", function()
    run(function()
      capture_logs()
      local pid = assert(start_probe())
      mb.send(pid, "crash")
      assert.are.equal("error", mb.receive(tagged("terminate"), 2000)[2][1])
      local log = mb.receive(tagged("$log"), 2000)
      assert.matches("crash in handle_info", log[4])
      assert.matches("Last message: \"crash\"", log[4])
      assert.matches("State: ", log[4])
      assert.matches("stack traceback", log[4])
    end)
  end)

  it("accepts 'hibernate' and keeps serving", function()
    run(function()
      local pid = assert(start_probe())
      assert.are.equal("zzz", gen_server.call(pid, "hibernate"))
      gen_server.cast(pid, {"add", 1})
      assert.are.equal(1, gen_server.call(pid, "get"))
    end)
  end)

  it("stop with a reply answers the caller after terminate", function()
    run(function()
      local pid = assert(start_probe())
      local ref = mb.monitor(pid)
      assert.are.equal("stopping", gen_server.call(pid, {"stop", "normal"}))
      assert.are.same({"terminate", "normal"}, mb.receive(tagged("terminate"), 0))
      assert.are.equal(ref, mb.receive(tagged("DOWN"), 2000)[2])
    end)
  end)

  it("stop without a reply fails the caller with the stop reason", function()
    run(function()
      local pid = assert(start_probe())
      assert.are.same({"normal", {"gen_server", "call", {pid, {"stop_noreply", "normal"}}}},
                      exit_of(gen_server.call, pid, {"stop_noreply", "normal"}))
    end)
  end)

  it("stop of a dead server fails with noproc, and stop can time out", function()
    run(function()
      local pid = assert(start_probe())
      gen_server.stop(pid)
      assert.are.same({"noproc", {"gen_server", "stop", {pid, "normal"}}}, exit_of(gen_server.stop, pid))
      local Slow = {init = function() return "ok", 0 end,
                    terminate = function() mb.sleep(500) end}
      local spid = assert(gen_server.start(Slow))
      assert.are.same({"timeout", {"gen_server", "stop", {spid, "normal"}}},
                      exit_of(gen_server.stop, spid, "normal", 50))
    end)
  end)

  it("get_state and code_change", function()
    run(function()
      local V1 = {init = function(n) return "ok", n end,
                  handle_call = function(_, _, n) return "reply", "v1:" .. n, n end}
      local V2 = {handle_call = function(_, _, s) return "reply", "v2:" .. s.count, s end,
                  code_change = function(old, n, extra) return "ok", {count = n, old = old, extra = extra} end}
      local pid = assert(gen_server.start(V1, 7))
      assert.are.equal(7, gen_server.get_state(pid))
      assert.are.equal("v1:7", gen_server.call(pid, "x"))
      assert.are.equal("ok", gen_server.code_change(pid, V2, "1.0", "e"))
      assert.are.equal("v2:7", gen_server.call(pid, "x"))
      assert.are.same({count = 7, old = "1.0", extra = "e"}, gen_server.get_state(pid))
      local Bad = {code_change = function() return "error", "nope" end}
      local ok, reason = gen_server.code_change(pid, Bad, "2.0")
      assert.is_nil(ok)
      assert.are.equal("nope", reason)
      assert.are.equal("v2:7", gen_server.call(pid, "x"))
    end)
  end)

  it("child_spec describes how a supervisor starts the server", function()
    local spec = gen_server.child_spec("moonbeam.logger", 1, {restart = "transient"})
    assert.are.same({id = "moonbeam.logger", start = {"moonbeam.gen_server", "start_link", {"moonbeam.logger", 1}},
                     restart = "transient", shutdown = 5000, type = "worker"}, spec)
    spec = gen_server.child_spec(Probe, {n = 1}, {id = "probe"})
    assert.are.same({id = "probe", start = {"moonbeam.gen_server", "start_link", {Probe, {n = 1}}},
                     restart = "permanent", shutdown = 5000, type = "worker"}, spec)
    local WithStart = {init = function() end, start_link = function() end}
    spec = gen_server.child_spec(WithStart, 3, {id = "w", name = "w"})
    assert.are.same({"moonbeam.gen_server", "start_link", {WithStart, 3, {name = "w"}}}, spec.start)
    spec = gen_server.child_spec(WithStart, 3, {id = "w"})
    assert.are.same({WithStart, "start_link", {3}}, spec.start)
  end)

  it("servers spread over schedulers and keep working from any of them", function()
    run(function()
      local pids = {}
      for i = 1, 8 do pids[i] = assert(start_probe({n = i})) end
      local where = {}
      for i = 1, 8 do
        assert.are.equal(i, gen_server.call(pids[i], "get"))
        where[mb.info(pids[i]).scheduler] = true
      end
      assert.is_true(where[1] and where[2])
    end)
  end)

  it("rejects bad input with clear errors", function()
    run(function()
      assert.has_error(function() gen_server.start(42) end,
        "gen_server.start: module must be a module name or a table with an init function, got number")
      assert.has_error(function() gen_server.start(Probe, {}, "opts") end,
        "gen_server.start: opts must be a table, got string")
      assert.has_error(function() gen_server.start(Probe, {}, {name = 5}) end)
      assert.has_error(function() gen_server.start(Probe, {}, {timeout = -1}) end)
      assert.has_error(function() gen_server.call(42, "x") end)
      assert.has_error(function() gen_server.call("x", "y", "soon") end)
      local pid = assert(start_probe())
      assert.has_error(function() gen_server.call(pid, function() end) end)
      assert.has_error(function() gen_server.reply("nobody", 1) end)
      assert.are.equal(0, gen_server.call(pid, "get"))
      capture_logs()
      local none, reason = gen_server.start("no.such.module.anywhere", 1)
      assert.is_nil(none)
      assert.matches("module 'no.such.module.anywhere' not found", reason[2])
    end)
  end)

  -- issue 8 item 16: a return without the state, or with an unknown tag,
  -- stops the server at once with {"bad_return_value", ...}
  describe("callback return values are checked as OTP does", function()
    local Bad = {}
    function Bad.init(how)
      if how == "ok_no_state" then return "ok" end
      return "ok", {n = 0}
    end
    function Bad.handle_call(req, _, s)
      if req == "reply_no_state" then return "reply", 42 end
      if req == "unknown_tag" then return "replied", 1, s end
      if req == "noreply_no_state" then return "noreply" end
      return "reply", s.n, s
    end
    function Bad.handle_cast(req, s)
      if req == "no_state" then return "noreply" end
      if req == "reply" then return "reply", 1, s end
      return "noreply", s
    end
    function Bad.handle_info(_, _) return "noreply" end

    local function down_of(pid, poke)
      local ref = mb.monitor(pid)
      poke()
      local down = mb.receive(function(m) return type(m) == "table" and m[1] == "DOWN" and m[2] == ref end, 2000)
      assert(down, "the server did not stop")
      return down[5]
    end

    it("\"reply\", v without the state stops the server; the caller fails with the reason", function()
      run(function()
        capture_logs()
        local pid = assert(gen_server.start(Bad, nil))
        local ref = mb.monitor(pid)
        local reason = exit_of(gen_server.call, pid, "reply_no_state")
        assert.are.same({"bad_return_value", "{\"reply\", 42}"}, reason[1])
        local down = mb.receive(function(m) return type(m) == "table" and m[1] == "DOWN" and m[2] == ref end, 2000)
        assert.are.same({"bad_return_value", "{\"reply\", 42}"}, down[5])
      end)
    end)

    it("an unknown tag, a noreply without state, from handle_call, handle_cast and handle_info", function()
      run(function()
        capture_logs()
        local pid = assert(gen_server.start(Bad, nil))
        assert.are.same({"bad_return_value", "{\"replied\", 1, {n = 0}}"},
                        exit_of(gen_server.call, pid, "unknown_tag")[1])
        pid = assert(gen_server.start(Bad, nil))
        assert.are.same({"bad_return_value", "{\"noreply\"}"}, exit_of(gen_server.call, pid, "noreply_no_state")[1])
        pid = assert(gen_server.start(Bad, nil))
        assert.are.same({"bad_return_value", "{\"noreply\"}"},
                        down_of(pid, function() gen_server.cast(pid, "no_state") end))
        pid = assert(gen_server.start(Bad, nil))
        assert.are.same({"bad_return_value", "{\"reply\", 1, {n = 0}}"},
                        down_of(pid, function() gen_server.cast(pid, "reply") end))
        pid = assert(gen_server.start(Bad, nil))
        assert.are.same({"bad_return_value", "{\"noreply\"}"}, down_of(pid, function() mb.send(pid, "hi") end))
      end)
    end)

    it("init returning \"ok\" without a state fails the start", function()
      run(function()
        capture_logs()
        local none, reason = gen_server.start(Bad, "ok_no_state")
        assert.is_nil(none)
        assert.are.same({"bad_return_value", "{\"ok\"}"}, reason)
      end)
    end)

    it("an explicit nil state is a state", function()
      run(function()
        local Nil = {init = function() return "ok", nil end,
                     handle_call = function(_, _, s) return "reply", s == nil, nil end}
        local pid = assert(gen_server.start(Nil))
        assert.is_true(gen_server.call(pid, "x"))
        assert.is_true(gen_server.call(pid, "x"))
      end)
    end)
  end)

  -- issue 8 item 33: calling yourself fails at once
  it("get_state, code_change and call on the calling process fail at once with calling_self", function()
    run(function()
      local t0 = mb.clock()
      local reason = exit_of(gen_server.get_state, mb.self())
      assert.are.same({"calling_self", {"gen_server", "call", {mb.self(), {"get_state"}}}}, reason)
      assert.are.equal("calling_self", exit_of(gen_server.call, mb.self(), "x")[1])
      assert.are.equal("calling_self", exit_of(gen_server.code_change, mb.self(), nil, 1, nil)[1])
      assert.is_true(mb.clock() - t0 < 1, "it waited for a timeout")
      -- from inside a server, calling itself by name
      local Selfish = {init = function() return "ok", 0 end,
                       handle_call = function(req, _, s)
                         local ok, err = pcall(gen_server.get_state, req)
                         return "reply", mb.exit_reason(err) or ok, s
                       end}
      local pid = assert(gen_server.start(Selfish, nil, {name = "selfish"}))
      assert.are.equal("calling_self", gen_server.call(pid, "selfish")[1])
    end)
  end)

  -- issue 8 items 17, 18, 32: options, child specs and arguments
  describe("bad options and arguments raise clearly, at the caller's line", function()
    local here = "gen_server_spec.lua:"
    local function raised(fn, ...)
      local ok, err = pcall(fn, ...)
      assert.is_false(ok, "expected an error")
      assert.are.equal("string", type(err), "expected an error message, got " .. tostring(err))
      return err
    end

    it("unknown start options name the key and the valid ones", function()
      run(function()
        local err = raised(gen_server.start, Probe, {}, {nmae = "x"})
        assert.matches("gen_server.start: unknown option 'nmae' %(valid options: name, timeout, scheduler%)", err)
        err = raised(gen_server.start_link, Probe, {}, {timeout = 10, spawn_opt = {}})
        assert.matches("gen_server.start_link: unknown option 'spawn_opt'", err)
        err = raised(gen_server.child_spec, Probe, {}, {restarts = "temporary"})
        assert.matches("gen_server.child_spec: unknown option 'restarts' %(valid options: id, restart, shutdown, "
                       .. "name, timeout%)", err)
      end)
    end)

    it("errors point at the caller's file and line, not at moonbeam's modules", function()
      run(function()
        local line = debug.getinfo(1, "l").currentline
        local err = raised(function() gen_server.start(Probe, {}, {nmae = "x"}) end) -- line + 1
        assert.matches(here .. (line + 1) .. ": ", err, 1, true)
        err = raised(function() gen_server.start(Probe, {}, {name = 5}) end) -- line + 3
        assert.matches(here .. (line + 3) .. ": gen_server.start: opts.name must be", err, 1, true)
        err = raised(function() gen_server.call(42, "x") end) -- line + 5
        assert.matches(here .. (line + 5) .. ": bad server", err, 1, true)
        err = raised(function() gen_server.call("x", "y", "soon") end) -- line + 7
        assert.matches(here .. (line + 7) .. ": gen_server.call: timeout must be", err, 1, true)
        err = raised(function() gen_server.reply("nobody", 1) end) -- line + 9
        assert.matches(here .. (line + 9) .. ": reply: from must be", err, 1, true)
        err = raised(function() gen_server.child_spec(42) end) -- line + 11
        assert.matches(here .. (line + 11) .. ": gen_server.child_spec: module must be", err, 1, true)
        err = raised(function() gen_server.get_state(mb.self(), "soon") end) -- line + 13
        assert.matches(here .. (line + 13) .. ": gen_server.get_state: timeout must be", err, 1, true)
        assert.is_nil(err:find("moonbeam/", 1, true))
      end)
    end)

    it("child_spec checks its module and options", function()
      run(function()
        assert.matches("^[^\n]*gen_server_spec.lua:%d+: gen_server.child_spec: module 'no.such.mod.here' not found",
                       raised(gen_server.child_spec, "no.such.mod.here"))
        assert.matches("gen_server.child_spec: opts must be a table, got number",
                       raised(gen_server.child_spec, Probe, {}, 5))
        assert.matches("gen_server.child_spec: module must be a module name",
                       raised(gen_server.child_spec, nil))
      end)
    end)
  end)
end)
