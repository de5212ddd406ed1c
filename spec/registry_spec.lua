-- moonbeam.registry: Elixir's Registry (OTP-SEMANTICS.md "Registry").
local mb = require "moonbeam"
local registry = require "moonbeam.registry"
-- Spawned functions are copied with their upvalues; under busted a global
-- would resolve in busted's sandbox environment, so they use these locals.
local ipairs, type = ipairs, type

local function run(fn) return mb.run(fn, {schedulers = 2}) end

-- Spawns a process that registers itself with `key`/`value`, tells `parent`
-- {"registered", owner_or_nil, err}, then waits for "stop".
local function registrant(reg, key, value, opts)
  local parent = mb.self()
  local pid = mb.spawn_opt(opts or {}, function()
    local owner, err = registry.register(reg, key, value)
    mb.send(parent, {"registered", mb.self(), owner or false, err or false})
    mb.receive(function(m) return m == "stop" end)
  end)
  local msg = mb.receive(function(m) return type(m) == "table" and m[1] == "registered" and m[2] == pid end, 5000)
  assert(msg, "registrant did not report")
  return pid, msg[3] or nil, msg[4] or nil
end

local function await_down(ref)
  local msg = mb.receive(function(m) return type(m) == "table" and m[1] == "DOWN" and m[2] == ref end, 5000)
  assert(msg, "no DOWN")
  return msg
end

local function exit_reason_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  return mb.exit_reason(err), err
end

describe("moonbeam.registry", function()
  describe("start_link", function()
    it("starts a registry process registered under its name, linked to the caller", function()
      run(function()
        local pid = assert(registry.start_link{keys = "unique", name = "reg"})
        assert.are.equal(pid, mb.whereis("reg"))
        local info = mb.info(mb.self())
        local linked = false
        for _, l in ipairs(info.links) do if l == pid then linked = true end end
        assert.is_true(linked)
      end)
    end)

    it("returns nil, {already_started, pid} when the name is taken", function()
      run(function()
        local pid = assert(registry.start_link{keys = "duplicate", name = "reg"})
        local none, err = registry.start_link{keys = "duplicate", name = "reg"}
        assert.is_nil(none)
        assert.are.same({"already_started", pid}, err)
      end)
    end)

    it("rejects bad options with a clear error", function()
      run(function()
        assert.has_error(function() registry.start_link() end,
                         "registry.start_link: options table expected")
        assert.error_matches(function() registry.start_link{keys = "many", name = "r"} end,
                             "keys must be \"unique\" or \"duplicate\"")
        assert.error_matches(function() registry.start_link{keys = "unique"} end,
                             "name must be a non%-empty string")
        assert.error_matches(function() registry.start_link{keys = "unique", name = ""} end,
                             "name must be a non%-empty string")
      end)
    end)
  end)

  describe("keys are unique or duplicate; a process registers only itself", function()
    it("unique: register returns the registry's pid and lookup gives {pid, value}", function()
      run(function()
        local reg = registry.start_link{keys = "unique", name = "reg"}
        assert.are.equal(reg, registry.register("reg", "key", {1, 2}))
        assert.are.same({{mb.self(), {1, 2}}}, registry.lookup("reg", "key"))
        assert.are.same({}, registry.lookup("reg", "other"))
      end)
    end)

    it("unique: a taken key returns nil, {already_registered, owner}, for another process and for the owner", function()
      run(function()
        registry.start_link{keys = "unique", name = "reg"}
        local owner = registrant("reg", "key", "first")
        local other, owner2, err = registrant("reg", "key", "second")
        assert.is_nil(owner2)
        assert.are.same({"already_registered", owner}, err)
        -- the owner registering again gets its own pid back as the owner
        assert.truthy(registry.register("reg", "mine"))
        local none, err2 = registry.register("reg", "mine")
        assert.is_nil(none)
        assert.are.same({"already_registered", mb.self()}, err2)
        assert.are.same({{owner, "first"}}, registry.lookup("reg", "key"))
        mb.send(owner, "stop"); mb.send(other, "stop")
      end)
    end)

    it("duplicate: many processes, and one process many times, under one key", function()
      run(function()
        registry.start_link{keys = "duplicate", name = "dup"}
        local a = registrant("dup", "topic", "a")
        local b = registrant("dup", "topic", "b")
        registry.register("dup", "topic", "me1")
        registry.register("dup", "topic", "me2")
        local entries = registry.lookup("dup", "topic")
        assert.are.same({{a, "a"}, {b, "b"}, {mb.self(), "me1"}, {mb.self(), "me2"}}, entries)
        assert.are.same({"topic", "topic"}, registry.keys("dup", mb.self()))
        assert.are.same({"me1", "me2"}, registry.values("dup", "topic", mb.self()))
        assert.are.equal(4, registry.count("dup"))
        assert.are.equal(4, registry.count_key("dup", "topic"))
      end)
    end)

    it("keys may be any sendable value: equal tuples are the same key", function()
      run(function()
        registry.start_link{keys = "unique", name = "reg"}
        registry.register("reg", {"room", 1}, "r1")
        registry.register("reg", 42, "int")
        registry.register("reg", {kind = "map", n = 1}, "map")
        assert.are.same({{mb.self(), "r1"}}, registry.lookup("reg", {"room", 1}))
        assert.are.same({}, registry.lookup("reg", {"room", 2}))
        assert.are.same({{mb.self(), "int"}}, registry.lookup("reg", 42))
        assert.are.same({}, registry.lookup("reg", "42"))
        assert.are.same({{mb.self(), "map"}}, registry.lookup("reg", {n = 1, kind = "map"}))
        local none, err = registry.register("reg", {"room", 1}, "again")
        assert.is_nil(none)
        assert.are.same({"already_registered", mb.self()}, err)
      end)
    end)

    it("unique: of many processes racing for one key on every scheduler, exactly one wins", function()
      run(function()
        registry.start_link{keys = "unique", name = "reg"}
        local parent = mb.self()
        for round = 1, 20 do
          local n = 16
          for i = 1, n do
            mb.spawn_opt({scheduler = (i % 2) + 1}, function()
              local owner, err = registry.register("reg", {"race", round}, i)
              mb.send(parent, {"raced", round, mb.self(), owner and true or false,
                               err and err[1] or false, err and err[2] or false})
              mb.receive(function(m) return m == "stop" end)
            end)
          end
          local winners, losers_saw, pids = {}, {}, {}
          for _ = 1, n do
            local m = mb.receive(function(x) return type(x) == "table" and x[1] == "raced" and x[2] == round end, 5000)
            assert(m, "a racer did not report")
            pids[#pids + 1] = m[3]
            if m[4] then winners[#winners + 1] = m[3]
            else
              assert.are.equal("already_registered", m[5])
              losers_saw[#losers_saw + 1] = m[6]
            end
          end
          assert.are.equal(1, #winners)
          for _, p in ipairs(losers_saw) do assert.are.equal(winners[1], p) end
          assert.are.equal(winners[1], registry.whereis_name("reg", {"race", round}))
          for _, p in ipairs(pids) do mb.send(p, "stop") end
        end
      end)
    end)

    it("register registers the caller, from whichever scheduler it runs on", function()
      run(function()
        registry.start_link{keys = "duplicate", name = "reg"}
        local pids = {}
        for i = 1, 2 do pids[i] = registrant("reg", "k", i, {scheduler = i}) end
        assert.are.same({{pids[1], 1}, {pids[2], 2}}, registry.lookup("reg", "k"))
        for i = 1, 2 do assert.are.same({"k"}, registry.keys("reg", pids[i])) end
        for i = 1, 2 do mb.send(pids[i], "stop") end
      end)
    end)

    it("register_name registers only the caller", function()
      run(function()
        registry.start_link{keys = "unique", name = "reg"}
        local other = mb.spawn(function() mb.receive() end)
        assert.error_matches(function() registry.register_name("reg", "k", other) end,
                             "a process can only register itself")
        assert.is_true(registry.register_name("reg", "k", mb.self()))
        local none, err = registry.register_name("reg", "k")
        assert.is_nil(none)
        assert.are.same({"already_registered", mb.self()}, err)
        assert.are.equal(mb.self(), registry.whereis_name("reg", "k"))
        assert.is_true(registry.unregister_name("reg", "k"))
        assert.is_nil(registry.whereis_name("reg", "k"))
      end)
    end)

    it("unregister removes only the caller's entries under the key", function()
      run(function()
        registry.start_link{keys = "duplicate", name = "dup"}
        local a = registrant("dup", "k", "a")
        registry.register("dup", "k", 1)
        registry.register("dup", "k", 2)
        registry.register("dup", "j", 3)
        assert.is_true(registry.unregister("dup", "k"))
        assert.are.same({{a, "a"}}, registry.lookup("dup", "k"))
        assert.are.same({"j"}, registry.keys("dup", mb.self()))
        assert.is_true(registry.unregister("dup", "never"))
        registry.unregister("dup", "j")
        assert.are.same({}, registry.keys("dup", mb.self()))
        assert.are.equal(1, registry.count("dup"))
        -- once unregistered, a unique key is free again
        registry.start_link{keys = "unique", name = "uni"}
        registry.register("uni", "k")
        registry.unregister("uni", "k")
        local b, owner = registrant("uni", "k", "b")
        assert.truthy(owner)
        assert.are.same({{b, "b"}}, registry.lookup("uni", "k"))
      end)
    end)

    it("update_value replaces the caller's value in a unique registry", function()
      run(function()
        registry.start_link{keys = "unique", name = "reg"}
        registry.register("reg", "counter", 1)
        local new, old = registry.update_value("reg", "counter", function(v) return v + 10 end)
        assert.are.equal(11, new)
        assert.are.equal(1, old)
        assert.are.same({{mb.self(), 11}}, registry.lookup("reg", "counter"))
        local other = registrant("reg", "theirs", 5)
        local none, err = registry.update_value("reg", "theirs", function(v) return v end)
        assert.is_nil(none)
        assert.are.equal("error", err)
        mb.send(other, "stop")
      end)
    end)

    it("meta and put_meta store registry metadata", function()
      run(function()
        registry.start_link{keys = "unique", name = "reg", meta = {custom = "x"}}
        assert.are.equal("x", registry.meta("reg", "custom"))
        local none, err = registry.meta("reg", "missing")
        assert.is_nil(none)
        assert.are.equal("error", err)
        assert.is_true(registry.put_meta("reg", {"a", 1}, {deep = true}))
        assert.are.same({deep = true}, registry.meta("reg", {"a", 1}))
      end)
    end)
  end)

  describe("entries go away when the process exits", function()
    it("after a normal exit, a crash and a kill, on any scheduler", function()
      run(function()
        registry.start_link{keys = "duplicate", name = "reg"}
        for _, how in ipairs{"normal", "crash", "kill"} do
          for s = 1, 2 do
            local pid = registrant("reg", how, s, {scheduler = s})
            registrant("reg", "other", 1) -- survives
            assert.are.same({how}, registry.keys("reg", pid))
            local ref = mb.monitor(pid)
            if how == "kill" then mb.exit(pid, "kill")
            elseif how == "crash" then mb.exit(pid, "boom")
            else mb.send(pid, "stop") end
            await_down(ref)
            assert.are.same({}, registry.lookup("reg", how))
            assert.are.same({}, registry.keys("reg", pid))
          end
        end
        -- the survivors (the helper registrants are still waiting)
        assert.are.equal(6, #registry.lookup("reg", "other"))
      end)
    end)

    it("a unique key is free again once its owner has exited", function()
      run(function()
        registry.start_link{keys = "unique", name = "reg"}
        for _ = 1, 20 do
          local pid = registrant("reg", "slot", "x")
          local ref = mb.monitor(pid)
          mb.send(pid, "stop")
          await_down(ref)
          assert.truthy(registry.register("reg", "slot", "mine"))
          assert.are.same({{mb.self(), "mine"}}, registry.lookup("reg", "slot"))
          registry.unregister("reg", "slot")
        end
      end)
    end)

    it("count drops as registrants exit", function()
      run(function()
        registry.start_link{keys = "duplicate", name = "reg"}
        local pids = {}
        for i = 1, 50 do pids[i] = registrant("reg", i % 5, i) end
        assert.are.equal(50, registry.count("reg"))
        local refs = {}
        for i = 1, 50 do refs[i] = mb.monitor(pids[i]); mb.send(pids[i], "stop") end
        for i = 1, 50 do await_down(refs[i]) end
        -- the registry handles its own DOWNs asynchronously: wait for them
        local deadline = 0
        while registry.count("reg") > 0 and deadline < 500 do mb.sleep(2); deadline = deadline + 1 end
        assert.are.equal(0, registry.count("reg"))
      end)
    end)
  end)

  describe("dispatch(registry, key, fn) calls fn with the entries, in the caller", function()
    it("runs fn in the calling process with every entry", function()
      run(function()
        registry.start_link{keys = "duplicate", name = "reg"}
        local a = registrant("reg", "ev", "handler_a")
        local b = registrant("reg", "ev", "handler_b")
        local seen, ran_in = nil, nil
        assert.is_true(registry.dispatch("reg", "ev", function(entries)
          seen = entries
          ran_in = mb.self()
          for _, e in ipairs(entries) do mb.send(e[1], {"event", e[2]}) end
        end))
        assert.are.equal(mb.self(), ran_in)
        assert.are.same({{a, "handler_a"}, {b, "handler_b"}}, seen)
      end)
    end)

    it("does not call fn when the key has no entries", function()
      run(function()
        registry.start_link{keys = "duplicate", name = "reg"}
        local called = false
        assert.is_true(registry.dispatch("reg", "nobody", function() called = true end))
        assert.is_false(called)
      end)
    end)
  end)

  describe("via names work with unique registries wherever a server name is accepted", function()
    it("whereis_name resolves a unique key to its pid, nil when absent", function()
      run(function()
        registry.start_link{keys = "unique", name = "reg"}
        local pid = registrant("reg", {"worker", 1})
        assert.are.equal(pid, registry.whereis_name("reg", {"worker", 1}))
        assert.is_nil(registry.whereis_name("reg", {"worker", 2}))
        mb.send(pid, "stop")
      end)
    end)

    it("whereis_name on a duplicate registry raises", function()
      run(function()
        registry.start_link{keys = "duplicate", name = "dup"}
        assert.error_matches(function() registry.whereis_name("dup", "k") end,
                             "via names need a unique registry")
      end)
    end)

    it("send delivers to the registered process and raises when nobody is", function()
      run(function()
        registry.start_link{keys = "unique", name = "reg"}
        registry.register("reg", "me")
        registry.send("reg", "me", {"hello"})
        assert.are.same({"hello"}, mb.receive(nil, 1000))
        assert.error_matches(function() registry.send("reg", "nobody", 1) end,
                             "no process registered under")
      end)
    end)

    it("moonbeam.gen resolves {\"via\", registry, key}", function()
      local ok, gen = pcall(require, "moonbeam.gen")
      if not ok then return pending("moonbeam.gen is not there yet") end
      run(function()
        registry.start_link{keys = "unique", name = "reg"}
        local pid = registrant("reg", "svc")
        assert.are.equal(pid, gen.whereis({"via", "reg", "svc"}))
        assert.is_nil(gen.whereis({"via", "reg", "nobody"}))
        mb.send(pid, "stop")
      end)
    end)

    describe("with gen_server", function()
      local ok, gen_server = pcall(require, "moonbeam.gen_server")
      local counter = {
        init = function(n) return "ok", n end,
        handle_call = function(req, _, n)
          if req == "get" then return "reply", n, n end
          if req == "whoami" then return "reply", mb.self(), n end
        end,
        handle_cast = function(req, n)
          if req == "inc" then return "noreply", n + 1 end
          return "noreply", n
        end,
      }

      it("start_link with a via name, then call, cast and stop by that name", function()
        if not ok then return pending("moonbeam.gen_server is not there yet") end
        run(function()
          registry.start_link{keys = "unique", name = "my_reg"}
          local name = {"via", "my_reg", "key"}
          local pid = assert(gen_server.start_link(counter, 41, {name = name}))
          assert.are.equal(pid, registry.whereis_name("my_reg", "key"))
          assert.are.same({{pid, nil}}, registry.lookup("my_reg", "key"))
          gen_server.cast(name, "inc")
          assert.are.equal(42, gen_server.call(name, "get"))
          assert.are.equal(pid, gen_server.call(name, "whoami"))
          local ref = mb.monitor(pid)
          gen_server.stop(name)
          await_down(ref)
          assert.is_nil(registry.whereis_name("my_reg", "key"))
        end)
      end)

      it("a second start with a taken via name fails with already_started", function()
        if not ok then return pending("moonbeam.gen_server is not there yet") end
        run(function()
          registry.start_link{keys = "unique", name = "my_reg"}
          local name = {"via", "my_reg", "key"}
          local pid = assert(gen_server.start_link(counter, 0, {name = name}))
          local none, err = gen_server.start(counter, 0, {name = name})
          assert.is_nil(none)
          assert.are.same({"already_started", pid}, err)
        end)
      end)

      -- issue 8 item 20: Elixir's {:via, Registry, {registry, key}}
      it("accepts Elixir's shape {\"via\", registry_module, {registry_name, key}}", function()
        if not ok then return pending("moonbeam.gen_server is not there yet") end
        run(function()
          registry.start_link{keys = "unique", name = "my_reg"}
          local name = {"via", registry, {"my_reg", "key"}}
          local pid = assert(gen_server.start_link(counter, 41, {name = name}))
          assert.are.equal(pid, registry.whereis_name("my_reg", "key"))
          assert.are.equal(pid, registry.whereis_name({"my_reg", "key"}))
          gen_server.cast(name, "inc")
          assert.are.equal(42, gen_server.call(name, "get"))
          assert.are.equal(pid, gen_server.whereis(name))
          local none, err = gen_server.start(counter, 0, {name = name})
          assert.is_nil(none)
          assert.are.same({"already_started", pid}, err)
          -- the reason names the module, which can travel in an exit reason
          local reason = exit_reason_of(gen_server.call, {"via", registry, {"my_reg", "nobody"}}, "get")
          assert.are.same({"noproc", {"gen_server", "call", {{"via", "moonbeam.registry", {"my_reg", "nobody"}}, "get"}}},
                          reason)
          assert.is_true(registry.send({"my_reg", "key"}, "stray"))
          local ref = mb.monitor(pid)
          gen_server.stop(name)
          await_down(ref)
          assert.is_nil(registry.whereis_name({"my_reg", "key"}))
        end)
      end)

      it("calling an unregistered via name fails with noproc", function()
        if not ok then return pending("moonbeam.gen_server is not there yet") end
        run(function()
          registry.start_link{keys = "unique", name = "my_reg"}
          local reason = exit_reason_of(gen_server.call, {"via", "my_reg", "nobody"}, "get")
          assert.are.equal("noproc", reason[1])
          assert.are.equal("ok", gen_server.cast({"via", "my_reg", "nobody"}, "inc"))
        end)
      end)
    end)
  end)

  describe("bad input", function()
    it("an unknown registry name raises naming it", function()
      run(function()
        assert.error_matches(function() registry.register("nope", "k") end,
                             "registry.register: unknown registry 'nope'")
        assert.error_matches(function() registry.lookup("nope", "k") end,
                             "registry.lookup: unknown registry 'nope'")
        assert.error_matches(function() registry.whereis_name("nope", "k") end,
                             "unknown registry 'nope'")
      end)
    end)

    it("a registry that is not a name or pid raises", function()
      run(function()
        assert.error_matches(function() registry.lookup(42, "k") end,
                             "registry name or pid expected, got number")
        assert.error_matches(function() registry.count({}) end,
                             "registry name or pid expected, got table")
      end)
    end)

    it("a nil key, a non-pid, a non-function raise", function()
      run(function()
        registry.start_link{keys = "unique", name = "reg"}
        assert.error_matches(function() registry.register("reg", nil, 1) end, "key must not be nil")
        assert.error_matches(function() registry.keys("reg", "notapid") end, "pid expected")
        assert.error_matches(function() registry.dispatch("reg", "k", 1) end, "function expected")
      end)
    end)

    it("a dead registry pid makes the call exit with noproc", function()
      run(function()
        mb.trap_exit(true)
        local pid = registry.start_link{keys = "unique", name = "reg"}
        local ref = mb.monitor(pid)
        mb.exit(pid, "kill")
        await_down(ref)
        local reason = exit_reason_of(registry.lookup, pid, "k")
        assert.are.equal("noproc", reason[1])
      end)
    end)

    it("an unsendable value raises at the caller and registers nothing", function()
      run(function()
        registry.start_link{keys = "unique", name = "reg"}
        assert.has_error(function() registry.register("reg", "k", function() end) end)
        assert.are.same({}, registry.lookup("reg", "k"))
      end)
    end)
  end)
end)

describe("registry: options (issue 8 items 17, 18, 32)", function()
  local function raised(fn)
    local ok, err = pcall(fn)
    assert.is_false(ok, "expected an error")
    return tostring(err)
  end

  it("unknown options raise naming the key and the valid ones, at the caller's line", function()
    run(function()
      local line = debug.getinfo(1, "l").currentline
      local err = raised(function() registry.start_link({keys = "unique", name = "r", partitions = 2}) end)
      assert.matches("registry_spec.lua:" .. (line + 1) .. ": registry.start_link: unknown option 'partitions' "
                     .. "(valid options: keys, name, meta)", err, 1, true)
      assert.matches("registry.child_spec: options table expected",
                     raised(function() registry.child_spec(nil) end), 1, true)
      assert.matches("registry.child_spec: unknown option 'listeners'",
                     raised(function() registry.child_spec({keys = "unique", name = "r", listeners = {}}) end),
                     1, true)
      err = raised(function() registry.lookup(42, "k") end) -- line + 9
      assert.matches("registry_spec.lua:" .. (line + 9) .. ": registry.lookup: registry name or pid expected", err,
                     1, true)
    end)
  end)
end)
