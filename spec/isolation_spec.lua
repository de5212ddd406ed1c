-- Isolation: processes share no mutable Lua state, whichever scheduler they run on.
package.path = package.path .. ";spec/support/?.lua"
local mb = require "moonbeam"
local echo_mod = require "echo_mod"

local OPTS = {schedulers = 2}

local function recv(match, ms)
  local m, err = mb.receive(match, ms or 2000)
  if err then error("timed out waiting for a message", 2) end
  return m
end

local function tagged(tag)
  return function(m) return type(m) == "table" and m[1] == tag end
end

-- both placements: the caller's VM and another VM
local PLACES = {{"the same scheduler", "here"}, {"another scheduler", 2}}

describe("isolation", function()
  for _, place in ipairs(PLACES) do
    local where, sched = place[1], place[2]

    it("a child mutating a captured table does not affect the parent (" .. where .. ")", function()
      mb.run(function()
        local me = mb.self()
        local shared = {count = 1, list = {1, 2}}
        mb.spawn_opt({scheduler = sched}, function()
          shared.count = shared.count + 100
          shared.list[3] = 3
          shared.added = true
          mb.send(me, {"child", shared})
        end)
        local m = recv(tagged "child")
        assert.are.same({count = 101, list = {1, 2, 3}, added = true}, m[2])
        assert.are.same({count = 1, list = {1, 2}}, shared)
      end, OPTS)
    end)

    it("the parent mutating a captured table after spawn does not affect the child (" .. where .. ")", function()
      mb.run(function()
        local me = mb.self()
        local t = {v = "before"}
        local pid = mb.spawn_opt({scheduler = sched}, function()
          mb.receive()
          mb.send(me, {"seen", t.v})
        end)
        t.v = "after"
        mb.send(pid, "go")
        assert.are.equal("before", recv(tagged "seen")[2])
      end, OPTS)
    end)

    it("a captured scalar assigned in the child stays the parent's (" .. where .. ")", function()
      mb.run(function()
        local me = mb.self()
        local n = 1
        mb.spawn_opt({scheduler = sched}, function() n = n + 1; mb.send(me, {"n", n}) end)
        assert.are.equal(2, recv(tagged "n")[2])
        assert.are.equal(1, n)
      end, OPTS)
    end)

    it("spawn arguments are copied (" .. where .. ")", function()
      mb.run(function()
        local me = mb.self()
        local arg = {1, {2}}
        mb.spawn_opt({scheduler = sched}, function(a)
          a[1] = "changed"
          a[2][1] = "changed"
          mb.send(me, "done")
        end, arg)
        recv()
        assert.are.same({1, {2}}, arg)
      end, OPTS)
    end)

    it("two children capturing one table get a copy each (" .. where .. ")", function()
      mb.run(function()
        local me = mb.self()
        local counter = {n = 0}
        local function bump()
          counter.n = counter.n + 1
          mb.send(me, {"n", counter.n})
        end
        mb.spawn_opt({scheduler = sched}, bump)
        mb.spawn_opt({scheduler = sched}, bump)
        assert.are.equal(1, recv(tagged "n")[2])
        assert.are.equal(1, recv(tagged "n")[2])
        assert.are.equal(0, counter.n)
      end, OPTS)
    end)
  end

  it("closures copied together keep sharing their upvalues inside the child", function()
    mb.run(function()
      local me = mb.self()
      local n = 0
      local function inc() n = n + 1 end
      local function get() return n end
      for _, s in ipairs({1, 2}) do
        mb.spawn_opt({scheduler = s}, function()
          inc()
          inc()
          mb.send(me, {"count", get(), n})
        end)
        assert.are.same({"count", 2, 2}, recv(tagged "count"))
      end
      assert.are.equal(0, n)
    end, OPTS)
  end)

  it("a closure passed as an argument shares upvalues with the spawned function", function()
    mb.run(function()
      local me = mb.self()
      local state = 10
      local function add(k) state = state + k end
      mb.spawn_opt({scheduler = 2}, function(f)
        f(5)
        mb.send(me, {"state", state})
      end, add)
      assert.are.equal(15, recv(tagged "state")[2])
      assert.are.equal(10, state)
    end, OPTS)
  end)

  it("recursive local functions and C functions of loaded modules work in the child", function()
    mb.run(function()
      local me = mb.self()
      local function fact(k) if k <= 1 then return 1 end return k * fact(k - 1) end
      local fmt, concat = string.format, table.concat
      mb.spawn_opt({scheduler = 2}, function()
        mb.send(me, {"r", fact(6), fmt("%03d", 7), concat({"a", "b"}, "-")})
      end)
      assert.are.same({"r", 720, "007", "a-b"}, recv(tagged "r"))
    end, OPTS)
  end)

  it("a captured module is re-required by name in the child's VM, not copied", function()
    mb.run(function()
      local me = mb.self()
      echo_mod.mark = "parent's"
      mb.spawn_opt({scheduler = 2}, function()
        local same = rawequal(echo_mod, require "echo_mod")
        local mark = echo_mod.mark
        echo_mod.mark = "child's"
        mb.send(me, {"mod", same, mark, type(echo_mod.hello)})
      end)
      local m = recv(tagged "mod")
      assert.is_true(m[2]) -- the child's upvalue is its VM's loaded module
      assert.is_nil(m[3]) -- a fresh instance: the parent's mark is not there
      assert.are.equal("function", m[4])
      assert.are.equal("parent's", echo_mod.mark)
      echo_mod.mark = nil
    end, OPTS)
  end)

  it("on the caller's scheduler a captured module is the very same table (module state is per VM)", function()
    mb.run(function()
      local me = mb.self()
      mb.spawn_opt({scheduler = "here"}, function()
        mb.send(me, {"mod", rawequal(echo_mod, require "echo_mod")})
      end)
      assert.is_true(recv(tagged "mod")[2])
      assert.are.equal(echo_mod, package.loaded.echo_mod)
    end, OPTS)
  end)

  it("globals set by a child on another scheduler are not the parent's", function()
    mb.run(function()
      local me = mb.self()
      mb.spawn_opt({scheduler = 2}, function()
        leaked_global = "child" -- luacheck: ignore
        mb.send(me, {"set", leaked_global}) -- its own globals (not rawget(_G, ...): that is the VM's)
      end)
      assert.are.equal("child", recv(tagged "set")[2])
      assert.is_nil(rawget(_G, "leaked_global"))
    end, OPTS)
  end)

  it("a received message is the receiver's own copy", function()
    mb.run(function()
      local me = mb.self()
      local pid = mb.spawn_opt({scheduler = 2}, function()
        local t = mb.receive()
        t.x = "changed by the child"
        mb.send(me, {"back", t})
        mb.send(me, {"again", t})
      end)
      local msg = {x = "original"}
      mb.send(pid, msg)
      local back = recv(tagged "back")[2]
      assert.are.equal("changed by the child", back.x)
      assert.are.equal("original", msg.x)
      local again = recv(tagged "again")[2]
      assert.are_not.equal(back, again) -- each message is a fresh table
    end, OPTS)
  end)

  describe("the same program on 1 and 4 schedulers", function()
    --- Fan-out, a ring and a shared-nothing counter: a deterministic result.
    local function program()
      local me = mb.self()
      local base = {k = 3}
      -- fan out: workers each mutate their copy of `base`
      for i = 1, 16 do
        mb.spawn(function()
          base.k = base.k + i
          local s = 0
          for j = 1, 1000 do s = s + j * i end
          mb.send(me, {"w", i, s, base.k})
        end)
      end
      local work = {}
      for _ = 1, 16 do
        local m = recv(tagged "w")
        work[m[2]] = m[3] + m[4]
      end
      -- a ring of 30 processes passing a list that grows
      local function node(nxt)
        local m = mb.receive()
        m[#m + 1] = mb.scheduler() > 0 and #m or -1
        mb.send(nxt, m)
      end
      local nxt = me
      for _ = 1, 30 do nxt = mb.spawn(node, nxt) end
      mb.send(nxt, {0})
      local ring = recv(function(m) return type(m) == "table" and m[1] == 0 end)
      -- a counter process: state lives in one process only
      local counter = mb.spawn(function()
        local n = 0
        while true do
          local m = mb.receive()
          if m[1] == "add" then n = n + m[2]
          else mb.send(m[2], {"total", n}); return end
        end
      end)
      for i = 1, 50 do mb.send(counter, {"add", i}) end
      mb.send(counter, {"get", me})
      local total = recv(tagged "total")[2]
      return table.concat(work, ",") .. "|" .. table.concat(ring, ",") .. "|" .. total .. "|" .. base.k
    end

    it("gives the same result", function()
      local one = mb.run(program, {schedulers = 1})
      local four = mb.run(program, {schedulers = 4})
      assert.are.equal(one, four)
      local expected = {}
      for i = 1, 16 do expected[i] = 500500 * i + 3 + i end
      local ring = {}
      for i = 0, 30 do ring[#ring + 1] = i end
      assert.are.equal(table.concat(expected, ",") .. "|" .. table.concat(ring, ",") .. "|1275|3", four)
    end)
  end)

  it("messages between schedulers keep their order per sender", function()
    mb.run(function()
      local me = mb.self()
      local N, SENDERS = 500, 8
      local function receiver(report, total)
        local last, count = {}, 0
        while count < total do
          local m = mb.receive()
          local from, i = m[1], m[2]
          if i ~= (last[from] or 0) + 1 then
            mb.send(report, {"bad", from, last[from], i})
            return
          end
          last[from] = i
          count = count + 1
        end
        mb.send(report, {"ok", mb.scheduler()})
      end
      local receivers = {}
      for s = 1, 4 do receivers[s] = mb.spawn_opt({scheduler = s}, receiver, me, N * SENDERS) end
      for k = 1, SENDERS do
        mb.spawn_opt({scheduler = (k % 4) + 1}, function(rs)
          for i = 1, N do
            for _, r in ipairs(rs) do mb.send(r, {k, i}) end
          end
        end, receivers)
      end
      local seen = {}
      for _ = 1, 4 do
        local m = recv(function(x) return x[1] == "ok" or x[1] == "bad" end, 10000)
        assert.are.same("ok", m[1], mb.format(m))
        seen[m[2]] = true
      end
      assert.are.same({true, true, true, true}, seen)
    end, {schedulers = 4})
  end)
end)
