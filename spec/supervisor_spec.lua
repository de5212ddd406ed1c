-- moonbeam.supervisor: every Supervisor case of OTP-SEMANTICS.md (strategies,
-- start order and failure, stop order, restart types, shutdown, intensity),
-- then the child management API, nested and module-based supervisors,
-- reports and bad input.
local mb = require "moonbeam"
local gen = require "moonbeam.gen"
local gen_server = require "moonbeam.gen_server"
local supervisor = require "moonbeam.supervisor"
local logger = require "moonbeam.logger"

local unpack = table.unpack

local function run(fn) return mb.run(fn, {schedulers = 2}) end

local function tagged(tag)
  return function(m) return type(m) == "table" and m[1] == tag end
end

local function quiet()
  logger.remove_backend("console")
end

-- Routes supervisor reports to the caller as {"$report", context, line}.
local function capture_reports()
  local me = mb.self()
  logger.remove_backend("console")
  logger.add_backend("capture", function(line, event)
    if event.kind == "supervisor_report" then mb.send(me, {"$report", event.report.context, line}) end
  end)
end

-- A worker telling the test process `arg.test` when it starts and terminates.
local Worker = {}
function Worker.init(arg)
  if arg.trap then mb.trap_exit(true) end
  if arg.init_sleep then mb.sleep(arg.init_sleep) end
  local seen = {}
  for _, other in ipairs(arg.check_alive or {}) do seen[#seen + 1] = mb.whereis(other) ~= nil end
  mb.send(arg.test, {"started", arg.id, mb.self(), seen})
  if arg.fail then return "stop", arg.fail end
  if arg.ignore then return "ignore" end
  return "ok", arg
end
function Worker.handle_call(req, _, s)
  if req == "ping" then return "reply", "pong", s end
  return "reply", nil, s
end
function Worker.handle_cast(req, s)
  if req == "crash" then error("worker " .. s.id .. " crashed") end
  if type(req) == "table" and req[1] == "stop" then return "stop", req[2], s end
  return "noreply", s
end
function Worker.handle_info(msg, s)
  -- a worker told to ignore shutdown keeps running when its parent asks it to stop
  if type(msg) == "table" and msg[1] == "EXIT" and s.ignore_shutdown then return "noreply", s end
  return "noreply", s
end
function Worker.terminate(reason, s)
  if s.slow_terminate then mb.sleep(s.slow_terminate) end
  mb.send(s.test, {"terminated", s.id, reason})
end

-- A worker that ignores its parent's exit signal: a plain process trapping exits.
local function stubborn_start(test, id)
  local pid = gen.spawn({link = true}, function()
    mb.trap_exit(true)
    mb.send(test, {"started", id, mb.self(), {}})
    while true do mb.receive() end
  end)
  return pid
end
Worker.stubborn_start = stubborn_start

local function worker(id, extra, spec)
  local arg = {id = id, test = mb.self()}
  for k, v in pairs(extra or {}) do arg[k] = v end
  local s = {id = id, start = {"moonbeam.gen_server", "start_link", {Worker, arg, {name = id}}}}
  for k, v in pairs(spec or {}) do s[k] = v end
  return s
end

local function started(timeout)
  return mb.receive(tagged("started"), timeout or 2000)
end

local function terminated(timeout)
  return mb.receive(tagged("terminated"), timeout or 2000)
end

-- {id = pid} of the running children.
local function pids(sup)
  local out = {}
  for _, c in ipairs(supervisor.which_children(sup)) do out[c[1]] = c[2] end
  return out
end

-- Waits for `n` starts; returns the ids in order.
local function starts(n)
  local ids = {}
  for i = 1, n do ids[i] = started()[2] end
  return ids
end

describe("supervisor (OTP-SEMANTICS: Supervisor)", function()
  it("one_for_one restarts only the failed child", function()
    run(function()
      quiet()
      local sup = assert(supervisor.start_link({worker("a"), worker("b"), worker("c")},
                                               {strategy = "one_for_one"}))
      starts(3)
      local before = pids(sup)
      gen_server.cast("b", "crash")
      assert.are.same({"started", "b"}, {unpack(started(), 1, 2)})
      local after = pids(sup)
      assert.are.equal(before.a, after.a)
      assert.are.equal(before.c, after.c)
      assert.are_not.equal(before.b, after.b)
      assert.is_true(mb.alive(after.b))
      assert.is_nil(mb.receive(tagged("started"), 50))
    end)
  end)

  it("one_for_all stops every other child and restarts all", function()
    run(function()
      quiet()
      local sup = assert(supervisor.start_link({worker("a", {trap = true}), worker("b", {trap = true}),
                                                worker("c", {trap = true})}, {strategy = "one_for_all"}))
      starts(3)
      local before = pids(sup)
      gen_server.cast("b", "crash")
      -- the others are stopped in reverse order, then all start in order
      local t1, t2, t3 = terminated(), terminated(), terminated()
      assert.are.same({"b", "c", "a"}, {t1[2], t2[2], t3[2]})
      assert.are.same({"shutdown", "shutdown"}, {t2[3], t3[3]})
      assert.are.same({"a", "b", "c"}, starts(3))
      local after = pids(sup)
      for _, id in ipairs({"a", "b", "c"}) do
        assert.are_not.equal(before[id], after[id])
        assert.is_true(mb.alive(after[id]))
      end
    end)
  end)

  it("rest_for_one restarts the failed child and every child started after it", function()
    run(function()
      quiet()
      local sup = assert(supervisor.start_link({worker("a", {trap = true}), worker("b", {trap = true}),
                                                worker("c", {trap = true}), worker("d", {trap = true})},
                                               {strategy = "rest_for_one"}))
      starts(4)
      local before = pids(sup)
      gen_server.cast("b", "crash")
      assert.are.same({"b", "d", "c"}, {terminated()[2], terminated()[2], terminated()[2]})
      assert.are.same({"b", "c", "d"}, starts(3))
      local after = pids(sup)
      assert.are.equal(before.a, after.a)
      for _, id in ipairs({"b", "c", "d"}) do assert.are_not.equal(before[id], after[id]) end
      assert.is_nil(mb.receive(tagged("terminated"), 50))
    end)
  end)

  it("starts children in list order, one at a time, each start waited for", function()
    run(function()
      quiet()
      local sup = assert(supervisor.start_link({
        worker("a", {init_sleep = 30}),
        worker("b", {init_sleep = 30, check_alive = {"a"}}),
        worker("c", {check_alive = {"a", "b"}}),
      }))
      local a, b, c = started(), started(), started()
      assert.are.same({"a", "b", "c"}, {a[2], b[2], c[2]})
      assert.are.same({true}, b[4])
      assert.are.same({true, true}, c[4])
      -- start_link returned only once every child was up
      assert.are.equal(3, supervisor.count_children(sup).active)
    end)
  end)

  it("when a child fails to start, the ones started are stopped and the start fails", function()
    run(function()
      capture_reports()
      mb.trap_exit(true)
      local pid, reason = supervisor.start_link({worker("a", {trap = true}), worker("b", {trap = true}),
                                                 worker("c", {fail = "no_db"}), worker("d")})
      assert.is_nil(pid)
      assert.are.same({"shutdown", {"failed_to_start_child", "c", "no_db"}}, reason)
      assert.are.same({"a", "b", "c"}, starts(3))
      assert.is_nil(mb.receive(tagged("started"), 50)) -- d never starts
      assert.are.same({"b", "a"}, {terminated()[2], terminated()[2]})
      assert.is_nil(mb.whereis("a"))
      assert.are.equal("start_error", mb.receive(tagged("$report"), 2000)[2])
    end)
  end)

  it("stops children in reverse start order", function()
    run(function()
      local sup = assert(supervisor.start_link({worker("a", {trap = true}), worker("b", {trap = true}),
                                                worker("c", {trap = true})}))
      starts(3)
      supervisor.stop(sup)
      local order = {}
      for i = 1, 3 do
        local t = terminated()
        order[i] = t[2]
        assert.are.equal("shutdown", t[3])
      end
      assert.are.same({"c", "b", "a"}, order)
      assert.is_false(mb.alive(sup))
    end)
  end)

  it("restart permanent: always restarted, even after a normal exit", function()
    run(function()
      quiet()
      local sup = assert(supervisor.start_link({worker("p", nil, {restart = "permanent"})},
                                               {max_restarts = 10}))
      starts(1)
      for _, reason in ipairs({"normal", "shutdown", "boom"}) do
        gen_server.cast("p", {"stop", reason})
        assert.are.equal("p", started()[2])
      end
      assert.are.equal(1, supervisor.count_children(sup).active)
    end)
  end)

  it("restart transient: only after an abnormal exit (not normal, shutdown, {'shutdown', _})", function()
    run(function()
      quiet()
      local sup = assert(supervisor.start_link({worker("t", nil, {restart = "transient"})},
                                               {max_restarts = 10}))
      starts(1)
      gen_server.cast("t", "crash")
      assert.are.equal("t", started()[2])
      gen_server.cast("t", {"stop", "boom"})
      assert.are.equal("t", started()[2])
      for _, reason in ipairs({"normal", "shutdown", {"shutdown", "done"}}) do
        gen_server.cast("t", {"stop", reason})
        terminated()
        assert.is_nil(mb.receive(tagged("started"), 50))
        assert.are.same({{"t", "undefined", "worker", {"moonbeam.gen_server"}}}, supervisor.which_children(sup))
        -- start it again by hand for the next reason
        assert(supervisor.restart_child(sup, "t"))
        assert.are.equal("t", started()[2])
      end
    end)
  end)

  it("restart temporary: never restarted, under any strategy, and forgotten", function()
    run(function()
      quiet()
      for _, strategy in ipairs({"one_for_one", "one_for_all", "rest_for_one"}) do
        local sup = assert(supervisor.start_link({worker("a"), worker("tmp", nil, {restart = "temporary"}),
                                                  worker("c")}, {strategy = strategy}))
        starts(3)
        -- the temporary child crashing restarts nothing
        gen_server.cast("tmp", "crash")
        terminated()
        assert.is_nil(mb.receive(tagged("started"), 50))
        assert.are.equal(2, supervisor.count_children(sup).specs)
        supervisor.stop(sup)
        while mb.receive(tagged("terminated"), 50) do end
        -- a sibling crashing never brings a temporary child back
        sup = assert(supervisor.start_link({worker("a"), worker("tmp", nil, {restart = "temporary"}),
                                            worker("c")}, {strategy = strategy}))
        starts(3)
        gen_server.cast("a", "crash")
        local restarted = {}
        while true do
          local s = mb.receive(tagged("started"), 200)
          if not s then break end
          restarted[#restarted + 1] = s[2]
        end
        for _, id in ipairs(restarted) do assert.are_not.equal("tmp", id) end
        if strategy ~= "one_for_one" then assert.is_nil(mb.whereis("tmp")) end
        local ids = {}
        for _, c in ipairs(supervisor.which_children(sup)) do ids[#ids + 1] = c[1] end
        assert.are.same(strategy == "one_for_one" and {"a", "tmp", "c"} or {"a", "c"}, ids)
        supervisor.stop(sup)
        while mb.receive(tagged("terminated"), 50) do end
        mb.flush()
      end
    end)
  end)

  it("shutdown integer: sends exit shutdown, and kills after that many ms", function()
    run(function()
      quiet()
      local sup = assert(supervisor.start_link({
        worker("polite", {trap = true}, {shutdown = 1000}),
        {id = "stubborn", start = {Worker, "stubborn_start", {mb.self(), "stubborn"}}, shutdown = 100},
      }))
      local stubborn = starts(2) and pids(sup).stubborn
      local ref = mb.monitor(stubborn)
      -- the stubborn one ignores "shutdown" and is killed after 100 ms
      mb.send_after(80, mb.self(), "t80")
      assert.are.equal("ok", supervisor.terminate_child(sup, "stubborn"))
      local down = mb.receive(tagged("DOWN"), 0)
      assert.are.equal(ref, down[2])
      assert.are.equal("killed", down[5])
      assert.are.equal("t80", mb.receive(function(m) return m == "t80" end, 0))
      -- the polite one traps, gets "shutdown" and runs terminate
      assert.are.equal("ok", supervisor.terminate_child(sup, "polite"))
      assert.are.same({"terminated", "polite", "shutdown"}, terminated(0))
    end)
  end)

  it("shutdown brutal_kill: kills at once (terminate does not run)", function()
    run(function()
      local sup = assert(supervisor.start_link({worker("w", {trap = true}, {shutdown = "brutal_kill"})}))
      local pid = started()[3]
      local ref = mb.monitor(pid)
      supervisor.terminate_child(sup, "w")
      local down = mb.receive(tagged("DOWN"), 0)
      assert.are.equal(ref, down[2])
      assert.are.equal("killed", down[5])
      assert.is_nil(mb.receive(tagged("terminated"), 50))
    end)
  end)

  it("shutdown infinity: waits for the child however long it takes", function()
    run(function()
      local sup = assert(supervisor.start_link({
        worker("slow", {trap = true, slow_terminate = 300}, {shutdown = "infinity"})}))
      starts(1)
      mb.send_after(250, mb.self(), "t250")
      supervisor.terminate_child(sup, "slow")
      assert.are.same({"terminated", "slow", "shutdown"}, terminated(0))
      assert.are.equal("t250", mb.receive(function(m) return m == "t250" end, 0))
    end)
  end)

  it("shutdown defaults: 5000 for a worker, infinity for a supervisor", function()
    local w = supervisor._normalize({id = "w", start = {"m", "f", {}}})
    assert.are.equal(5000, w.shutdown)
    assert.are.equal("permanent", w.restart)
    assert.are.equal("worker", w.type)
    local s = supervisor._normalize({id = "s", start = {"m", "f", {}}, type = "supervisor"})
    assert.are.equal("infinity", s.shutdown)
  end)

  it("more than max_restarts in max_seconds: stops all children and exits shutdown", function()
    run(function()
      capture_reports()
      mb.trap_exit(true)
      local sup = assert(supervisor.start_link({worker("a"), worker("b")}, {max_restarts = 2, max_seconds = 5}))
      starts(2)
      local ref = mb.monitor(sup)
      for _ = 1, 2 do
        gen_server.cast("b", "crash")
        assert.are.equal("b", started()[2])
      end
      gen_server.cast("b", "crash") -- the third restart in 5 s is one too many
      local down = mb.receive(tagged("DOWN"), 2000)
      assert.are.equal(ref, down[2])
      assert.are.equal("shutdown", down[5])
      assert.are.same({"EXIT", sup, "shutdown"}, mb.receive(tagged("EXIT"), 0))
      assert.is_nil(mb.whereis("a"))
      local contexts = {}
      while true do
        local r = mb.receive(tagged("$report"), 200)
        if not r then break end
        contexts[#contexts + 1] = r[2]
      end
      assert.are.same({"child_terminated", "child_terminated", "child_terminated",
                       "reached_max_restart_intensity"}, contexts)
    end)
  end)

  it("restarts further apart than max_seconds do not add up", function()
    run(function()
      quiet()
      local sup = assert(supervisor.start_link({worker("a")}, {max_restarts = 1, max_seconds = 0.2}))
      starts(1)
      for _ = 1, 3 do
        gen_server.cast("a", "crash")
        assert.are.equal("a", started()[2])
        mb.sleep(300)
      end
      assert.is_true(mb.alive(sup))
    end)
  end)

  it("a supervisor giving up exits shutdown, which its own supervisor sees and acts on", function()
    run(function()
      quiet()
      local inner = supervisor.child_spec({worker("leaf")}, {id = "inner", name = "inner", max_restarts = 0})
      local top = assert(supervisor.start_link({inner, worker("sibling")}, {strategy = "one_for_one"}))
      starts(2)
      local inner1 = mb.whereis("inner")
      local ref = mb.monitor(inner1)
      gen_server.cast("leaf", "crash") -- max_restarts 0: the inner supervisor gives up at once
      local down = mb.receive(tagged("DOWN"), 2000)
      assert.are.equal(ref, down[2])
      assert.are.equal("shutdown", down[5])
      -- the top supervisor restarted it (permanent), which started its leaf again
      assert.are.equal("leaf", started()[2])
      local inner2 = pids(top).inner
      assert.are_not.equal(inner1, inner2)
      assert.are.equal(inner2, mb.whereis("inner"))
      assert.are.same({"supervisor", "worker"},
                      {supervisor.which_children(top)[1][3], supervisor.which_children(top)[2][3]})
    end)
  end)

  it("which_children, count_children, terminate_child, restart_child, delete_child, start_child", function()
    run(function()
      quiet()
      local sup = assert(supervisor.start_link({worker("a", {trap = true}), worker("b")}))
      starts(2)
      local kids = supervisor.which_children(sup)
      assert.are.equal(2, #kids)
      assert.are.same({"a", mb.whereis("a"), "worker", {"moonbeam.gen_server"}}, kids[1])
      assert.are.same({specs = 2, active = 2, supervisors = 0, workers = 2}, supervisor.count_children(sup))

      assert.are.equal("ok", supervisor.terminate_child(sup, "a"))
      assert.are.same({"terminated", "a", "shutdown"}, terminated())
      assert.are.same({"a", "undefined", "worker", {"moonbeam.gen_server"}}, supervisor.which_children(sup)[1])
      assert.are.same({specs = 2, active = 1, supervisors = 0, workers = 2}, supervisor.count_children(sup))
      assert.are.same({nil, "not_found"}, {supervisor.terminate_child(sup, "zz")})

      local pid = assert(supervisor.restart_child(sup, "a"))
      assert.are.equal(pid, started()[3])
      assert.are.same({nil, "running"}, {supervisor.restart_child(sup, "a")})
      assert.are.same({nil, "not_found"}, {supervisor.restart_child(sup, "zz")})

      assert.are.same({nil, "running"}, {supervisor.delete_child(sup, "b")})
      supervisor.terminate_child(sup, "b")
      assert.are.equal("ok", supervisor.delete_child(sup, "b"))
      assert.are.same({nil, "not_found"}, {supervisor.delete_child(sup, "b")})
      assert.are.equal(1, supervisor.count_children(sup).specs)

      local c = assert(supervisor.start_child(sup, worker("c")))
      assert.are.equal(c, started()[3])
      assert.are.same({nil, {"already_started", c}}, {supervisor.start_child(sup, worker("c"))})
      supervisor.terminate_child(sup, "c")
      assert.are.same({nil, "already_present"}, {supervisor.start_child(sup, worker("c"))})
      local none, reason = supervisor.start_child(sup, worker("d", {fail = "nope"}))
      assert.is_nil(none)
      assert.are.equal("nope", reason)
      local ids = {}
      for _, k in ipairs(supervisor.which_children(sup)) do ids[#ids + 1] = k[1] end
      assert.are.same({"a", "c"}, ids)
    end)
  end)
end)

describe("supervisor", function()
  it("accepts children as module names, {module, arg} and module tables with child_spec", function()
    run(function()
      local Mod = {init = Worker.init, handle_cast = Worker.handle_cast, terminate = Worker.terminate}
      function Mod.child_spec(arg)
        arg = arg or {id = "default"}
        return gen_server.child_spec(Mod, arg, {id = arg.id})
      end
      local me = mb.self()
      local sup = assert(supervisor.start_link({{Mod, {id = "one", test = me}}, {Mod, {id = "two", test = me}}}))
      assert.are.same({"one", "two"}, starts(2))
      assert.are.equal(2, supervisor.count_children(sup).active)
      local ok, err = pcall(supervisor.start_link, {"moonbeam.logger"})
      assert.is_false(ok)
      assert.matches("child module moonbeam.logger has no child_spec", err)
    end)
  end)

  it("nests supervisors; stopping the top stops the whole tree, leaves last", function()
    run(function()
      local inner = supervisor.child_spec({worker("x", {trap = true}), worker("y", {trap = true})},
                                          {id = "inner"})
      local top = assert(supervisor.start_link({worker("first", {trap = true}), inner,
                                                worker("last", {trap = true})}))
      assert.are.same({"first", "x", "y", "last"}, starts(4))
      assert.are.same({specs = 3, active = 3, supervisors = 1, workers = 2}, supervisor.count_children(top))
      supervisor.stop(top)
      local order = {}
      for i = 1, 4 do order[i] = terminated()[2] end
      assert.are.same({"last", "y", "x", "first"}, order)
    end)
  end)

  it("runs a callback module: init(arg) returns supervisor.init(children, opts)", function()
    run(function()
      local MySup = {}
      function MySup.init(arg)
        return supervisor.init({worker("m1", {test = arg}), worker("m2", {test = arg})},
                               {strategy = "one_for_all"})
      end
      local sup = assert(supervisor.start_link(MySup, mb.self(), {name = "my_sup"}))
      assert.are.equal(sup, mb.whereis("my_sup"))
      assert.are.same({"m1", "m2"}, starts(2))
      quiet()
      gen_server.cast("m2", "crash")
      assert.are.same({"m1", "m2"}, starts(2))
      local Ignore = {init = function() return "ignore" end}
      assert.are.equal("ignore", supervisor.start_link(Ignore))
    end)
  end)

  it("reports a child's abnormal end and its restart through the logger", function()
    run(function()
      capture_reports()
      local sup = assert(supervisor.start_link({worker("r")}, {name = "reporting_sup"}))
      starts(1)
      gen_server.cast("r", "crash")
      local report = mb.receive(tagged("$report"), 2000)
      assert.are.equal("child_terminated", report[2])
      assert.matches("Child r of Supervisor reporting_sup terminated", report[3])
      assert.matches("worker r crashed", report[3])
      assert.matches("Restart: permanent", report[3])
      assert.are.equal("r", started()[2])
      assert.is_true(mb.alive(sup))
    end)
  end)

  it("keeps a child whose start returns ignore, as undefined", function()
    run(function()
      local sup = assert(supervisor.start_link({worker("i", {ignore = true}), worker("j")}))
      starts(2)
      assert.are.same({"i", "undefined", "worker", {"moonbeam.gen_server"}}, supervisor.which_children(sup)[1])
      assert.are.equal("ignore", supervisor.start_child(sup, worker("k", {ignore = true})))
    end)
  end)

  it("retries a child that fails to restart, counting each try, and gives up", function()
    run(function()
      quiet()
      mb.trap_exit(true)
      -- the child's start fails once it has been started the first time
      local Flaky = {}
      function Flaky.start(test)
        local n = (Flaky.count or 0) + 1
        Flaky.count = n
        if n > 1 then return nil, "down" end
        return gen_server.start_link(Worker, {id = "flaky", test = test})
      end
      local sup = assert(supervisor.start_link({{id = "flaky", start = {Flaky, "start", {mb.self()}}}},
                                               {max_restarts = 3}))
      starts(1)
      local ref = mb.monitor(sup)
      gen_server.cast(pids(sup).flaky, "crash")
      local down = mb.receive(tagged("DOWN"), 2000)
      assert.are.equal(ref, down[2])
      assert.are.equal("shutdown", down[5])
    end)
  end)

  it("rejects bad input with clear errors", function()
    run(function()
      assert.has_error(function() supervisor.start_link(42) end,
        "supervisor.start_link: expected a list of children or a module, got number")
      assert.has_error(function() supervisor.start_link({}, {strategy = "one_for_some"}) end,
        "supervisor.start_link: strategy must be one_for_one, one_for_all or rest_for_one, got \"one_for_some\"")
      assert.has_error(function() supervisor.start_link({}, {max_restarts = -1}) end,
        "supervisor.start_link: max_restarts must be an integer >= 0, got -1")
      assert.has_error(function() supervisor.start_link({{start = {"m", "f"}}}) end)
      assert.has_error(function() supervisor.start_link({{id = 1, start = "nope"}}) end,
        "supervisor.start_link: child 1: start must be {module, function_name, args}, got \"nope\"")
      assert.has_error(function() supervisor.start_link({{id = 1, start = {"m", "f"}, restart = "sometimes"}}) end,
        "supervisor.start_link: child 1: restart must be permanent, transient or temporary, got \"sometimes\"")
      assert.has_error(function() supervisor.start_link({{id = 1, start = {"m", "f"}, shutdown = "later"}}) end)
      assert.has_error(function() supervisor.start_link({{id = 1, start = {"m", "f"}, type = "boss"}}) end)
      assert.has_error(function() supervisor.start_link({17}) end)
      mb.trap_exit(true)
      local pid, reason = supervisor.start_link({worker("same"), worker("same")})
      assert.is_nil(pid)
      assert.are.same({"duplicate_child_name", "same"}, reason)
      local sup = assert(supervisor.start_link({}))
      assert.has_error(function() supervisor.start_child(sup, {id = "x"}) end)
      local ok, err = pcall(supervisor.which_children, "no_such_sup")
      assert.is_false(ok)
      assert.are.same({"noproc", {"supervisor", "call", {"no_such_sup", {"which_children"}}}},
                      mb.exit_reason(err))
    end)
  end)
end)

describe("supervisor: options, child specs and intensity (issue 8)", function()
  local function raised(fn)
    local ok, err = pcall(fn)
    assert.is_false(ok, "expected an error")
    assert.are.equal("string", type(err), "expected an error message, got " .. tostring(err))
    return err
  end

  it("unknown keys in a child spec raise, naming the key and the valid ones, at the caller's line", function()
    run(function()
      local spec = worker("w", nil, {restarts = "temporary"})
      local line = debug.getinfo(1, "l").currentline
      local err = raised(function() supervisor.start_link({spec}) end) -- line + 1
      assert.matches("supervisor_spec.lua:" .. (line + 1) .. ": supervisor.start_link: child \"w\": unknown child "
                     .. "spec key 'restarts' (valid child spec keys: id, start, restart, shutdown, type, modules)",
                     err, 1, true)
      local sup = assert(supervisor.start_link({}))
      err = raised(function() supervisor.start_child(sup, worker("x", nil, {shutdwn = 10})) end)
      assert.matches("supervisor.start_child: child \"x\": unknown child spec key 'shutdwn'", err, 1, true)
      assert.are.same({}, supervisor.which_children(sup))
    end)
  end)

  it("unknown options raise: start_link, init, child_spec", function()
    run(function()
      local line = debug.getinfo(1, "l").currentline
      local err = raised(function() supervisor.start_link({}, {max_restart = 10}) end) -- line + 1
      assert.matches("supervisor_spec.lua:" .. (line + 1) .. ": supervisor.start_link: unknown option 'max_restart' "
                     .. "(valid options: strategy, max_restarts, max_seconds, name, timeout)", err, 1, true)
      assert.matches("supervisor.start_link: unknown option 'strategy'",
                     raised(function() supervisor.start_link({init = function() end}, nil, {strategy = "x"}) end),
                     1, true)
      assert.matches("supervisor.init: unknown option 'name' (valid options: strategy, max_restarts, max_seconds)",
                     raised(function() supervisor.init({}, {name = "x"}) end), 1, true)
      assert.matches("supervisor.child_spec: unknown option 'restarts'",
                     raised(function() supervisor.child_spec({}, {restarts = "temporary"}) end), 1, true)
    end)
  end)

  it("a module's init returning unknown flags fails the start with bad_flags", function()
    run(function()
      quiet()
      mb.trap_exit(true)
      local Mod = {init = function() return "ok", {}, {max_restart = 10} end}
      local none, reason = supervisor.start_link(Mod, nil)
      assert.is_nil(none)
      assert.are.equal("bad_flags", reason[1])
      assert.matches("unknown option 'max_restart'", reason[2], 1, true)
    end)
  end)

  it("bad arguments to child_spec and init raise clearly", function()
    run(function()
      assert.matches("supervisor.child_spec: expected a list of children, got nil",
                     raised(function() supervisor.child_spec(nil) end), 1, true)
      assert.matches("supervisor.child_spec: opts must be a table, got string",
                     raised(function() supervisor.child_spec({}, "x") end), 1, true)
      assert.matches("supervisor.init: expected a list of children, got number",
                     raised(function() supervisor.init(5) end), 1, true)
    end)
  end)

  -- issue 8 item 25: math.huge / "infinity" is a window that never ends
  for _, forever in ipairs({math.huge, "infinity", 1e300}) do
    it("max_seconds = " .. tostring(forever) .. " still gives up after more than max_restarts restarts", function()
      run(function()
        quiet()
        mb.trap_exit(true)
        local sup = assert(supervisor.start_link({worker("c")}, {max_restarts = 2, max_seconds = forever}))
        local ref = mb.monitor(sup)
        assert(started())
        for _ = 1, 2 do
          mb.sleep(30) -- an expiry timer that fired at once would have forgotten the restart by now
          gen_server.cast("c", "crash")
          assert(started(), "not restarted")
        end
        mb.sleep(30)
        gen_server.cast("c", "crash")
        local down = mb.receive(function(m) return type(m) == "table" and m[1] == "DOWN" and m[2] == ref end, 3000)
        assert(down, "the supervisor never gave up")
        assert.are.equal("shutdown", down[5])
      end)
    end)
  end

  it("max_seconds: negative, zero, NaN and non-numbers raise", function()
    run(function()
      for _, bad in ipairs({-1, 0, 0 / 0, "5", true}) do
        assert.matches("max_seconds must be a number > 0 or \"infinity\"",
                       raised(function() supervisor.start_link({}, {max_seconds = bad}) end), 1, true)
      end
    end)
  end)
end)
