-- The runtime hardening of issue 8 seen from Lua (the C core's items; each is
-- also covered by a C test under csrc/test/): replies as alias monitors,
-- demonitor by the watcher only, huge delays, send_after to a name, names by
-- length, and one runtime's pids and refs not naming the next one's processes.
local mb = require "moonbeam"
local gen_server = require "moonbeam.gen_server"

local OPTS = {schedulers = 2}

local function run(fn) return mb.run(fn, OPTS) end

local function tagged(tag)
  return function(m) return type(m) == "table" and m[1] == tag end
end

-- A server that answers "twice" with two replies to the same call.
local Twice = {}
function Twice.init(arg) return "ok", arg end
function Twice.handle_call(req, from, s)
  if req == "twice" then
    gen_server.reply(from, 1)
    gen_server.reply(from, 2)
    return "noreply", s
  end
  return "reply", req, s
end

describe("runtime hardening (issue 8, core)", function()
  it("a second GenServer.reply to the same call never reaches the caller's mailbox", function()
    run(function()
      local pid = assert(gen_server.start(Twice, {}))
      assert.are.equal(1, gen_server.call(pid, "twice"))
      assert.are.equal("ping", gen_server.call(pid, "ping")) -- the server is past both replies
      local stray, err = mb.receive(nil, 100)
      assert.is_nil(stray)
      assert.are.equal("timeout", err)
    end)
  end)

  it("a process cannot remove a monitor held on it by someone else", function()
    run(function()
      local me = mb.self()
      local pid = mb.spawn(function()
        local ref = mb.receive(function(m) return type(m) == "table" and m[1] == "ref" end)[2]
        mb.send(me, {"demonitor", mb.demonitor(ref, {flush = true})})
        mb.receive(nil, 50) -- then it ends
      end)
      local ref = mb.monitor(pid)
      mb.send(pid, {"ref", ref})
      assert.are.same({"demonitor", false}, mb.receive(tagged("demonitor"), 2000))
      local down = mb.receive(function(m) return type(m) == "table" and m[1] == "DOWN" and m[2] == ref end, 2000)
      assert.is_table(down)
      assert.are.equal(pid, down[4])
    end)
  end)

  it("send_after with math.huge, 2^64 or 1e300 never fires", function()
    run(function()
      local me = mb.self()
      local timers = {}
      for _, ms in ipairs({math.huge, 2 ^ 64, 1e300}) do
        timers[#timers + 1] = mb.send_after(ms, me, "too_soon")
      end
      assert.is_nil(mb.receive(function(m) return m == "too_soon" end, 100))
      for _, t in ipairs(timers) do assert.is_true(mb.cancel_timer(t) > 2 ^ 60) end
    end)
  end)

  it("send_after to a name resolves it at delivery", function()
    run(function()
      local me = mb.self()
      mb.send_after(50, "late_comer", "hello") -- nobody holds the name yet
      local pid = mb.spawn(function()
        mb.send(me, {"got", mb.receive(nil, 2000)})
      end)
      assert.is_true(mb.register("late_comer", pid))
      assert.are.same({"got", "hello"}, mb.receive(tagged("got"), 2000))
      mb.send_after(10, "nobody_at_all", "lost") -- dropped, no error
      mb.sleep(30)
    end)
  end)

  it("names and topics compare by length: 'a\\0b' is not 'a'", function()
    run(function()
      local me = mb.self()
      assert.is_true(mb.register("a\0b", me))
      assert.is_nil(mb.whereis("a"))
      assert.are.equal(me, mb.whereis("a\0b"))
      assert.is_true(mb.unregister("a\0b"))
      assert.is_true(mb.subscribe("t\0x"))
      assert.are.equal(0, mb.subscribers("t"))
      assert.are.equal(0, mb.broadcast("t", "wrong"))
      assert.are.equal(1, mb.broadcast("t\0x", "right"))
      assert.are.equal("right", mb.receive(nil, 2000))
      local pid = mb.spawn_opt({name = "n\0m"}, function() mb.receive() end)
      assert.are.equal(pid, mb.whereis("n\0m"))
      assert.is_nil(mb.whereis("n"))
      mb.exit(pid, "kill")
    end)
  end)

  it("pids and refs of an earlier run name nothing in the next one", function()
    local old_pid, old_ref = run(function()
      return mb.spawn(function() mb.receive() end), mb.make_ref()
    end)
    run(function()
      local me = mb.self()
      local pid = mb.spawn(function() mb.send(me, {"got", (mb.receive(nil, 300))}) end)
      assert.are_not.equal(old_pid, pid)
      assert.is_false(mb.alive(old_pid))
      mb.send(old_pid, "for the old process")
      assert.are.same({"got"}, mb.receive(tagged("got"), 2000))
      assert.are_not.equal(old_ref, mb.make_ref())
    end)
  end)
end)
