-- moonbeam.pubsub: Phoenix.PubSub's API (OTP-SEMANTICS.md "PubSub").
local mb = require "moonbeam"
local pubsub = require "moonbeam.pubsub"
-- Spawned functions are copied with their upvalues; under busted a global
-- would resolve in busted's sandbox environment, so they use these locals.
local ipairs, type = ipairs, type

local function run(fn) return mb.run(fn, {schedulers = 2}) end

-- Spawns a subscriber of `topics` on scheduler `sched` that forwards every
-- message to the caller as {"got", self, msg}; returns once it has subscribed.
local function subscriber(ps, topics, sched)
  local parent = mb.self()
  local pid = mb.spawn_opt({scheduler = sched}, function()
    for _, t in ipairs(topics) do pubsub.subscribe(ps, t) end
    mb.send(parent, {"subscribed", mb.self()})
    while true do
      local msg = mb.receive()
      if msg == "stop" then return end
      mb.send(parent, {"got", mb.self(), msg})
    end
  end)
  assert(mb.receive(function(m) return m[1] == "subscribed" and m[2] == pid end, 5000))
  return pid
end

-- The messages forwarded by subscribers within `ms`, as {pid, msg} pairs.
local function collect(ms)
  local out = {}
  while true do
    local m = mb.receive(function(x) return type(x) == "table" and x[1] == "got" end, ms)
    if not m then return out end
    out[#out + 1] = {m[2], m[3]}
  end
end

local function got_by(list, pid)
  local msgs = {}
  for _, e in ipairs(list) do if e[1] == pid then msgs[#msgs + 1] = e[2] end end
  return msgs
end

describe("moonbeam.pubsub", function()
  describe("start_link", function()
    it("starts an instance registered under its name, linked to the caller", function()
      run(function()
        local pid = assert(pubsub.start_link{name = "ps"})
        assert.are.equal(pid, mb.whereis("ps"))
        local linked = false
        for _, l in ipairs(mb.info(mb.self()).links) do if l == pid then linked = true end end
        assert.is_true(linked)
      end)
    end)

    it("returns nil, {already_started, pid} when the name is taken", function()
      run(function()
        local pid = pubsub.start_link{name = "ps"}
        local none, err = pubsub.start_link{name = "ps"}
        assert.is_nil(none)
        assert.are.same({"already_started", pid}, err)
      end)
    end)

    it("rejects bad options", function()
      run(function()
        assert.error_matches(function() pubsub.start_link() end, "options table expected")
        assert.error_matches(function() pubsub.start_link{} end, "name must be a non%-empty string")
        assert.error_matches(function() pubsub.start_link{name = 3} end, "name must be a non%-empty string")
      end)
    end)
  end)

  describe("subscribe(pubsub, topic); subscriptions go away when the subscriber exits", function()
    it("subscribe and unsubscribe the caller", function()
      run(function()
        pubsub.start_link{name = "ps"}
        assert.is_true(pubsub.subscribe("ps", "room:1"))
        assert.is_true(pubsub.subscribe("ps", "room:1")) -- idempotent
        assert.are.equal(1, pubsub.subscribers("ps", "room:1"))
        pubsub.broadcast("ps", "room:1", "hi")
        assert.are.equal("hi", mb.receive(nil, 1000))
        assert.are.same({nil, "timeout"}, {mb.receive(nil, 20)}) -- once, not twice
        assert.is_true(pubsub.unsubscribe("ps", "room:1"))
        assert.is_true(pubsub.unsubscribe("ps", "room:1"))
        assert.are.equal(0, pubsub.subscribers("ps", "room:1"))
        pubsub.broadcast("ps", "room:1", "gone")
        assert.are.same({nil, "timeout"}, {mb.receive(nil, 20)})
      end)
    end)

    it("a subscriber that exits (normally, by crash, by kill) is unsubscribed", function()
      run(function()
        pubsub.start_link{name = "ps"}
        for _, how in ipairs{"normal", "crash", "kill"} do
          local pids = {}
          for s = 1, 2 do pids[s] = subscriber("ps", {"t", "u"}, s) end
          assert.are.equal(2, pubsub.subscribers("ps", "t"))
          for s = 1, 2 do
            local ref = mb.monitor(pids[s])
            if how == "kill" then mb.exit(pids[s], "kill")
            elseif how == "crash" then mb.exit(pids[s], "boom")
            else mb.send(pids[s], "stop") end
            assert(mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000))
          end
          assert.are.equal(0, pubsub.subscribers("ps", "t"))
          assert.are.equal(0, pubsub.subscribers("ps", "u"))
        end
      end)
    end)
  end)

  describe("broadcast reaches every subscriber, the sender included if it subscribed", function()
    it("every subscriber on every scheduler gets the message once; others get nothing", function()
      run(function()
        pubsub.start_link{name = "ps"}
        local subs = {}
        for i = 1, 10 do subs[i] = subscriber("ps", {"news"}, (i % 2) + 1) end
        local outsider = subscriber("ps", {"sports"}, 1)
        pubsub.subscribe("ps", "news")
        assert.is_true(pubsub.broadcast("ps", "news", {headline = "moonbeam 1.0", n = 1}))
        assert.are.same({headline = "moonbeam 1.0", n = 1}, mb.receive(nil, 1000))
        local got = collect(100)
        assert.are.equal(10, #got)
        for i = 1, 10 do
          assert.are.same({{headline = "moonbeam 1.0", n = 1}}, got_by(got, subs[i]))
        end
        assert.are.same({}, got_by(got, outsider))
      end)
    end)

    it("keeps the order of one sender's broadcasts for each subscriber", function()
      run(function()
        pubsub.start_link{name = "ps"}
        local a, b = subscriber("ps", {"seq"}, 1), subscriber("ps", {"seq"}, 2)
        for i = 1, 100 do pubsub.broadcast("ps", "seq", i) end
        local got = collect(200)
        local expect = {}
        for i = 1, 100 do expect[i] = i end
        assert.are.same(expect, got_by(got, a))
        assert.are.same(expect, got_by(got, b))
      end)
    end)

    it("works from any process, subscribed or not", function()
      run(function()
        pubsub.start_link{name = "ps"}
        local sub = subscriber("ps", {"t"}, 1)
        mb.spawn_opt({scheduler = 2}, function() pubsub.broadcast("ps", "t", "from elsewhere") end)
        assert.are.same({"from elsewhere"}, got_by(collect(200), sub))
      end)
    end)

    it("instances namespace their topics", function()
      run(function()
        pubsub.start_link{name = "a"}
        pubsub.start_link{name = "b"}
        local sa = subscriber("a", {"t"}, 1)
        local sb = subscriber("b", {"t"}, 2)
        pubsub.broadcast("a", "t", "for a")
        local got = collect(100)
        assert.are.same({"for a"}, got_by(got, sa))
        assert.are.same({}, got_by(got, sb))
        -- nor do plain core topics of the same name see them
        mb.subscribe("t")
        pubsub.broadcast("b", "t", "for b")
        assert.are.same({"for b"}, got_by(collect(100), sb))
        assert.are.same({nil, "timeout"}, {mb.receive(function(m) return m == "for b" end, 20)})
      end)
    end)
  end)

  describe("broadcast_from skips the sender", function()
    it("every subscriber but `from` gets the message", function()
      run(function()
        pubsub.start_link{name = "ps"}
        local other = subscriber("ps", {"chat"}, 2)
        pubsub.subscribe("ps", "chat")
        assert.is_true(pubsub.broadcast_from("ps", mb.self(), "chat", "hello"))
        assert.are.same({"hello"}, got_by(collect(100), other))
        assert.are.same({nil, "timeout"}, {mb.receive(function(m) return m == "hello" end, 20)})
      end)
    end)

    it("can skip another process", function()
      run(function()
        pubsub.start_link{name = "ps"}
        local a, b = subscriber("ps", {"chat"}, 1), subscriber("ps", {"chat"}, 2)
        pubsub.broadcast_from("ps", a, "chat", "not for a")
        local got = collect(100)
        assert.are.same({}, got_by(got, a))
        assert.are.same({"not for a"}, got_by(got, b))
      end)
    end)
  end)

  describe("local_broadcast stays on this node", function()
    it("reaches this node's subscribers (the only node for now)", function()
      run(function()
        pubsub.start_link{name = "ps"}
        local a = subscriber("ps", {"t"}, 2)
        pubsub.subscribe("ps", "t")
        assert.is_true(pubsub.local_broadcast("ps", "t", "local"))
        assert.are.equal("local", mb.receive(nil, 1000))
        assert.are.same({"local"}, got_by(collect(100), a))
        assert.is_true(pubsub.local_broadcast_from("ps", mb.self(), "t", "local2"))
        assert.are.same({"local2"}, got_by(collect(100), a))
        assert.are.same({nil, "timeout"}, {mb.receive(function(m) return m == "local2" end, 20)})
      end)
    end)
  end)

  describe("direct_broadcast(node, ...) reaches one node", function()
    it("reaches the subscribers of the named node when it is this node", function()
      run(function()
        pubsub.start_link{name = "ps"}
        local a = subscriber("ps", {"t"}, 2)
        local node = pubsub.node_name("ps")
        assert.are.equal("nonode@nohost", node)
        assert.is_true(pubsub.direct_broadcast(node, "ps", "t", "direct"))
        assert.are.same({"direct"}, got_by(collect(100), a))
      end)
    end)

    it("returns nil, {nodedown, node} for any other node (no cluster yet)", function()
      run(function()
        pubsub.start_link{name = "ps"}
        local a = subscriber("ps", {"t"}, 2)
        local ok, err = pubsub.direct_broadcast("other@host", "ps", "t", "x")
        assert.is_nil(ok)
        assert.are.same({"nodedown", "other@host"}, err)
        assert.are.same({}, got_by(collect(50), a))
      end)
    end)
  end)

  describe("the instance process", function()
    it("relays forwarded broadcasts to local subscribers (the path other nodes will use)", function()
      run(function()
        local ps = pubsub.start_link{name = "ps"}
        local a, b = subscriber("ps", {"t"}, 1), subscriber("ps", {"t"}, 2)
        mb.send(ps, {"$pubsub_forward", "t", "remote", b})
        local got = collect(100)
        assert.are.same({"remote"}, got_by(got, a))
        assert.are.same({}, got_by(got, b))
      end)
    end)

    it("stopping it (gen.stop) makes later calls raise unknown PubSub", function()
      local ok, gen = pcall(require, "moonbeam.gen")
      if not ok then return pending("moonbeam.gen is not there yet") end
      run(function()
        pubsub.start_link{name = "ps"}
        mb.trap_exit(true)
        gen.stop("ps", "normal")
        assert.error_matches(function() pubsub.broadcast("ps", "t", 1) end, "unknown PubSub 'ps'")
      end)
    end)
  end)

  describe("bad input", function()
    it("an unknown PubSub raises naming it", function()
      run(function()
        assert.error_matches(function() pubsub.subscribe("nope", "t") end,
                             "pubsub.subscribe: unknown PubSub 'nope'")
        assert.error_matches(function() pubsub.broadcast("nope", "t", 1) end,
                             "pubsub.broadcast: unknown PubSub 'nope'")
      end)
    end)

    it("a PubSub name or topic of the wrong type raises", function()
      run(function()
        pubsub.start_link{name = "ps"}
        assert.error_matches(function() pubsub.subscribe(nil, "t") end,
                             "PubSub name %(non%-empty string%) expected, got nil")
        assert.error_matches(function() pubsub.subscribe("ps", 5) end, "topic must be a string, got number")
        assert.error_matches(function() pubsub.broadcast_from("ps", "me", "t", 1) end, "from must be a pid")
        assert.error_matches(function() pubsub.direct_broadcast(nil, "ps", "t", 1) end, "node name expected")
      end)
    end)

    it("an unsendable message raises and reaches nobody", function()
      run(function()
        pubsub.start_link{name = "ps"}
        local a = subscriber("ps", {"t"}, 2)
        assert.has_error(function() pubsub.broadcast("ps", "t", {f = function() end}) end)
        assert.are.same({}, got_by(collect(50), a))
      end)
    end)
  end)
end)

describe("pubsub: options (issue 8 items 17, 18, 32)", function()
  local function raised(fn)
    local ok, err = pcall(fn)
    assert.is_false(ok, "expected an error")
    return tostring(err)
  end

  it("unknown options raise naming the key and the valid ones, at the caller's line", function()
    run(function()
      local line = debug.getinfo(1, "l").currentline
      local err = raised(function() pubsub.start_link({name = "ps", pool_size = 2}) end) -- line + 1
      assert.matches("pubsub_spec.lua:" .. (line + 1) .. ": pubsub.start_link: unknown option 'pool_size' "
                     .. "(valid options: name)", err, 1, true)
      assert.matches("pubsub.child_spec: options table expected",
                     raised(function() pubsub.child_spec(nil) end), 1, true)
      err = raised(function() pubsub.subscribe("nope", "t") end) -- line + 6
      assert.matches("pubsub_spec.lua:" .. (line + 6) .. ": pubsub.subscribe: unknown PubSub 'nope'", err, 1, true)
    end)
  end)
end)
