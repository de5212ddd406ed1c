-- moonbeam.dynamic_supervisor: the DynamicSupervisor case of OTP-SEMANTICS.md
-- (one_for_one only, start_child returns the pid, max_children, concurrent
-- shutdown), restart types, intensity, the rest of the API and bad input.
local mb = require "moonbeam"
local gen_server = require "moonbeam.gen_server"
local dynamic_supervisor = require "moonbeam.dynamic_supervisor"
local logger = require "moonbeam.logger"

local function run(fn) return mb.run(fn, {schedulers = 2}) end

local function tagged(tag)
  return function(m) return type(m) == "table" and m[1] == tag end
end

local function quiet() logger.remove_backend("console") end

local Worker = {}
function Worker.init(arg)
  if arg.trap then mb.trap_exit(true) end
  mb.send(arg.test, {"started", arg.id, mb.self(), arg.extra})
  if arg.fail then return "stop", arg.fail end
  if arg.ignore then return "ignore" end
  return "ok", arg
end
function Worker.handle_call(req, _, s)
  if req == "id" then return "reply", s.id, s end
end
function Worker.handle_cast(req, s)
  if req == "crash" then error("worker " .. tostring(s.id) .. " crashed") end
  if type(req) == "table" and req[1] == "stop" then return "stop", req[2], s end
  return "noreply", s
end
function Worker.handle_info(_, s) return "noreply", s end
function Worker.terminate(reason, s)
  if s.slow_terminate then mb.sleep(s.slow_terminate) end
  mb.send(s.test, {"terminated", s.id, reason})
end
-- start_link(extra, arg): what extra_arguments make of start_link(arg)
function Worker.start_with_extra(extra, arg)
  arg.extra = extra
  return gen_server.start_link(Worker, arg)
end
function Worker.child_spec(arg)
  return {id = arg.id, start = {"moonbeam.gen_server", "start_link", {Worker, arg}}}
end

local function worker(id, extra, spec)
  local arg = {id = id, test = mb.self()}
  for k, v in pairs(extra or {}) do arg[k] = v end
  local s = {start = {"moonbeam.gen_server", "start_link", {Worker, arg}}}
  for k, v in pairs(spec or {}) do s[k] = v end
  return s
end

local function started() return mb.receive(tagged("started"), 2000) end

describe("dynamic_supervisor (OTP-SEMANTICS: DynamicSupervisor)", function()
  it("supports one_for_one only", function()
    run(function()
      assert.has_error(function() dynamic_supervisor.start_link({strategy = "one_for_all"}) end,
        "dynamic_supervisor.start_link: the only strategy is one_for_one, got \"one_for_all\"")
      assert(dynamic_supervisor.start_link({strategy = "one_for_one"}))
    end)
  end)

  it("start_child returns the pid of the new child, which it supervises", function()
    run(function()
      quiet()
      local sup = assert(dynamic_supervisor.start_link())
      local pid = assert(dynamic_supervisor.start_child(sup, worker("a")))
      assert.is_true(mb.is_pid(pid))
      assert.are.equal(pid, started()[3])
      assert.are.equal("a", gen_server.call(pid, "id"))
      local linked = false
      for _, l in ipairs(mb.info(pid).links) do linked = linked or l == sup end
      assert.is_true(linked)
      -- only the failed child is restarted
      local b = assert(dynamic_supervisor.start_child(sup, worker("b")))
      started()
      gen_server.cast(pid, "crash")
      assert.are.equal("a", started()[2])
      assert.is_true(mb.alive(b))
      assert.are.equal(2, dynamic_supervisor.count_children(sup).active)
    end)
  end)

  it("max_children exceeded returns nil, 'max_children'", function()
    run(function()
      local sup = assert(dynamic_supervisor.start_link({max_children = 2}))
      local a = assert(dynamic_supervisor.start_child(sup, worker("a")))
      assert(dynamic_supervisor.start_child(sup, worker("b")))
      local none, reason = dynamic_supervisor.start_child(sup, worker("c"))
      assert.is_nil(none)
      assert.are.equal("max_children", reason)
      assert.are.equal(2, dynamic_supervisor.count_children(sup).specs)
      dynamic_supervisor.terminate_child(sup, a)
      assert(dynamic_supervisor.start_child(sup, worker("c")))
    end)
  end)

  it("shuts its children down concurrently", function()
    run(function()
      local sup = assert(dynamic_supervisor.start_link())
      for i = 1, 4 do
        assert(dynamic_supervisor.start_child(sup, worker(i, {trap = true, slow_terminate = 300},
                                                          {shutdown = 2000})))
      end
      -- one after another they would take 1.2 s; together about 0.3 s
      mb.send_after(900, mb.self(), "t900")
      dynamic_supervisor.stop(sup)
      assert.is_nil(mb.receive(function(m) return m == "t900" end, 0))
      local seen = {}
      for _ = 1, 4 do
        local t = mb.receive(tagged("terminated"), 0)
        assert.are.equal("shutdown", t[3])
        seen[t[2]] = true
      end
      assert.are.same({true, true, true, true}, seen)
    end)
  end)

  it("children are not ordered: which_children lists them as undefined ids", function()
    run(function()
      local sup = assert(dynamic_supervisor.start_link())
      local a = assert(dynamic_supervisor.start_child(sup, worker("a")))
      local b = assert(dynamic_supervisor.start_child(sup, worker("b", nil, {type = "supervisor"})))
      assert.are.same({{"undefined", a, "worker", {"moonbeam.gen_server"}},
                       {"undefined", b, "supervisor", {"moonbeam.gen_server"}}},
                      dynamic_supervisor.which_children(sup))
      assert.are.same({specs = 2, active = 2, supervisors = 1, workers = 1},
                      dynamic_supervisor.count_children(sup))
    end)
  end)
end)

describe("dynamic_supervisor", function()
  it("restarts children by their restart type", function()
    run(function()
      quiet()
      local sup = assert(dynamic_supervisor.start_link({max_restarts = 10}))
      local p = assert(dynamic_supervisor.start_child(sup, worker("p")))
      local t = assert(dynamic_supervisor.start_child(sup, worker("t", nil, {restart = "transient"})))
      local tmp = assert(dynamic_supervisor.start_child(sup, worker("tmp", nil, {restart = "temporary"})))
      for _ = 1, 3 do started() end
      -- permanent: back even after a normal exit
      gen_server.cast(p, {"stop", "normal"})
      assert.are.equal("p", started()[2])
      -- transient: back after a crash, not after shutdown
      gen_server.cast(t, "crash")
      local t2 = started()
      assert.are.equal("t", t2[2])
      gen_server.cast(t2[3], {"stop", "shutdown"})
      -- temporary: never
      gen_server.cast(tmp, "crash")
      assert.is_nil(mb.receive(tagged("started"), 100))
      local c = dynamic_supervisor.count_children(sup)
      assert.are.equal(1, c.specs)
      assert.are.equal(1, c.active)
    end)
  end)

  it("gives up after more than max_restarts in max_seconds: stops the children, exits shutdown", function()
    run(function()
      quiet()
      mb.trap_exit(true)
      local sup = assert(dynamic_supervisor.start_link({max_restarts = 1}))
      local other = assert(dynamic_supervisor.start_child(sup, worker("other")))
      local pid = assert(dynamic_supervisor.start_child(sup, worker("c")))
      started()
      started()
      local ref = mb.monitor(sup)
      gen_server.cast(pid, "crash")
      pid = started()[3]
      gen_server.cast(pid, "crash")
      local down = mb.receive(tagged("DOWN"), 2000)
      assert.are.equal(ref, down[2])
      assert.are.equal("shutdown", down[5])
      assert.is_false(mb.alive(other))
    end)
  end)

  it("terminate_child stops a child by pid and forgets it", function()
    run(function()
      local sup = assert(dynamic_supervisor.start_link())
      local pid = assert(dynamic_supervisor.start_child(sup, worker("a", {trap = true})))
      assert.are.equal("ok", dynamic_supervisor.terminate_child(sup, pid))
      assert.are.same({"terminated", "a", "shutdown"}, mb.receive(tagged("terminated"), 0))
      assert.is_false(mb.alive(pid))
      assert.are.same({}, dynamic_supervisor.which_children(sup))
      assert.are.same({nil, "not_found"}, {dynamic_supervisor.terminate_child(sup, pid)})
      assert.are.same({nil, "not_found"}, {dynamic_supervisor.terminate_child(sup, mb.self())})
    end)
  end)

  it("honours each child's shutdown: brutal_kill, and a kill after the timeout", function()
    run(function()
      quiet()
      local sup = assert(dynamic_supervisor.start_link())
      local brutal = assert(dynamic_supervisor.start_child(sup, worker("b", {trap = true}, {shutdown = "brutal_kill"})))
      local ref = mb.monitor(brutal)
      dynamic_supervisor.terminate_child(sup, brutal)
      local d = mb.receive(tagged("DOWN"), 0)
      assert.are.equal(ref, d[2])
      assert.are.equal("killed", d[5])
      assert.is_nil(mb.receive(tagged("terminated"), 50))
      local slow = assert(dynamic_supervisor.start_child(sup, worker("s", {trap = true, slow_terminate = 2000},
                                                                      {shutdown = 50})))
      local ref2 = mb.monitor(slow)
      dynamic_supervisor.terminate_child(sup, slow)
      local down = mb.receive(tagged("DOWN"), 0)
      assert.are.equal(ref2, down[2])
      assert.are.equal("killed", down[5])
    end)
  end)

  it("puts extra_arguments before each child's own arguments", function()
    run(function()
      local sup = assert(dynamic_supervisor.start_link({extra_arguments = {"shared"}}))
      local arg = {id = "x", test = mb.self()}
      assert(dynamic_supervisor.start_child(sup, {start = {Worker, "start_with_extra", {arg}}}))
      assert.are.equal("shared", started()[4])
    end)
  end)

  it("accepts {module, arg} and modules with child_spec; reports ignore and failed starts", function()
    run(function()
      quiet()
      local sup = assert(dynamic_supervisor.start_link())
      local pid = assert(dynamic_supervisor.start_child(sup, {Worker, {id = "m", test = mb.self()}}))
      assert.are.equal("m", gen_server.call(pid, "id"))
      assert.are.equal("ignore", dynamic_supervisor.start_child(sup, worker("i", {ignore = true})))
      local none, reason = dynamic_supervisor.start_child(sup, worker("f", {fail = "cannot"}))
      assert.is_nil(none)
      assert.are.equal("cannot", reason)
      assert.are.equal(1, dynamic_supervisor.count_children(sup).specs)
    end)
  end)

  it("runs a callback module and can be a child of a supervisor", function()
    run(function()
      local Mine = {init = function(max) return dynamic_supervisor.init({max_children = max}) end}
      local sup = assert(dynamic_supervisor.start_link(Mine, 1, {name = "mine"}))
      assert.are.equal(sup, mb.whereis("mine"))
      assert(dynamic_supervisor.start_child("mine", worker("one")))
      assert.are.same({nil, "max_children"}, {dynamic_supervisor.start_child("mine", worker("two"))})
      local supervisor = require "moonbeam.supervisor"
      local top = assert(supervisor.start_link({dynamic_supervisor.child_spec({name = "dyn"})}))
      assert.are.same({"dyn", mb.whereis("dyn"), "supervisor", {"moonbeam.dynamic_supervisor"}},
                      supervisor.which_children(top)[1])
      assert(dynamic_supervisor.start_child("dyn", worker("under_dyn")))
    end)
  end)

  it("rejects bad input with clear errors", function()
    run(function()
      assert.has_error(function() dynamic_supervisor.start_link({max_children = -1}) end,
        "dynamic_supervisor.start_link: max_children must be an integer >= 0 or \"infinity\", got -1")
      local ok0, err0 = pcall(dynamic_supervisor.start_link, "no_such_module_here")
      assert.is_false(ok0)
      assert.matches("dynamic_supervisor.start_link: module 'no_such_module_here' not found", err0)
      assert.has_error(function() dynamic_supervisor.start_link({extra_arguments = 1}) end,
        "dynamic_supervisor.start_link: extra_arguments must be a list")
      local sup = assert(dynamic_supervisor.start_link())
      assert.has_error(function() dynamic_supervisor.start_child(sup, {start = "x"}) end)
      assert.has_error(function() dynamic_supervisor.start_child(sup, 5) end)
      assert.has_error(function() dynamic_supervisor.terminate_child(sup, "a") end,
        "dynamic_supervisor.terminate_child: expected a pid, got string")
      local ok, err = pcall(dynamic_supervisor.count_children, "gone")
      assert.is_false(ok)
      assert.are.same({"noproc", {"dynamic_supervisor", "call", {"gone", {"count_children"}}}}, mb.exit_reason(err))
    end)
  end)
end)

describe("dynamic_supervisor: options (issue 8 items 17, 18, 25)", function()
  local function raised(fn)
    local ok, err = pcall(fn)
    assert.is_false(ok, "expected an error")
    assert.are.equal("string", type(err), "expected an error message, got " .. tostring(err))
    return err
  end

  it("unknown options raise naming the key and the valid ones, at the caller's line", function()
    run(function()
      local line = debug.getinfo(1, "l").currentline
      local err = raised(function() dynamic_supervisor.start_link({max_child = 2}) end) -- line + 1
      assert.matches("dynamic_supervisor_spec.lua:" .. (line + 1) .. ": dynamic_supervisor.start_link: unknown option "
                     .. "'max_child' (valid options: strategy, max_restarts, max_seconds, max_children, "
                     .. "extra_arguments, name, timeout)", err, 1, true)
      assert.matches("dynamic_supervisor.init: unknown option 'name'",
                     raised(function() dynamic_supervisor.init({name = "x"}) end), 1, true)
      assert.matches("dynamic_supervisor.child_spec: unknown option 'restarts'",
                     raised(function() dynamic_supervisor.child_spec({restarts = "temporary"}) end), 1, true)
      assert.matches("dynamic_supervisor.child_spec: opts must be a table, got number",
                     raised(function() dynamic_supervisor.child_spec(3) end), 1, true)
      local sup = assert(dynamic_supervisor.start_link())
      assert.matches("dynamic_supervisor.start_child: child false: unknown child spec key 'restarts'",
                     raised(function()
                       dynamic_supervisor.start_child(sup, {start = {"m", "f", {}}, restarts = "temporary"})
                     end), 1, true)
    end)
  end)

  it("a module's init returning unknown flags fails the start", function()
    run(function()
      logger.remove_backend("console")
      mb.trap_exit(true)
      local none, reason = dynamic_supervisor.start_link({init = function() return "ok", {partitions = 2} end})
      assert.is_nil(none)
      assert.are.equal("bad_flags", reason[1])
      assert.matches("unknown option 'partitions'", reason[2], 1, true)
    end)
  end)

  it("max_seconds = math.huge still gives up after more than max_restarts restarts", function()
    run(function()
      logger.remove_backend("console")
      mb.trap_exit(true)
      local sup = assert(dynamic_supervisor.start_link({max_restarts = 1, max_seconds = math.huge}))
      local ref = mb.monitor(sup)
      local function crasher()
        return mb.spawn_link(function() mb.sleep(30); mb.exit("boom") end)
      end
      local Crash = {crasher = crasher}
      assert(dynamic_supervisor.start_child(sup, {start = {Crash, "crasher", {}}}))
      local down = mb.receive(function(m) return type(m) == "table" and m[1] == "DOWN" and m[2] == ref end, 3000)
      assert(down, "the supervisor never gave up")
      assert.are.equal("shutdown", down[5])
    end)
  end)
end)
