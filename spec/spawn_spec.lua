-- The spawn packer (csrc/lua/lspawn.c), shared by mb.spawn and gen.pack:
-- deep closures, errors while unpacking, what each accepts, forged internal
-- tags, package.preload in every VM, tuples with a forged n, error lines.
package.path = package.path .. ";spec/support/?.lua"
local mb = require "moonbeam"
local gen = require "moonbeam.gen"
local gen_server = require "moonbeam.gen_server"
local task = require "moonbeam.task"
local agent = require "moonbeam.agent"

local OPTS = {schedulers = 2}
local PLACES = {{"the same scheduler", "here"}, {"another scheduler", 2}}

local function recv(match, ms)
  local m, err = mb.receive(match, ms or 5000)
  if err then error("timed out waiting for a message", 2) end
  return m
end

local function tagged(tag)
  return function(m) return type(m) == "table" and m[1] == tag end
end

local function down(ref)
  return recv(function(m) return type(m) == "table" and m[1] == "DOWN" and m[2] == ref end)
end

-- A chain of `depth` closures, each calling the next through an upvalue.
local function chain(depth)
  local f = function() return "bottom" end
  for _ = 2, depth do
    local inner = f
    f = function() return inner() end
  end
  return f
end

local function quiet(fn)
  local prev = mb.set_crash_handler(function() end)
  local ok, err = pcall(fn)
  mb.set_crash_handler(prev)
  if not ok then error(err, 0) end
end

describe("spawn packer: deep closures", function()
  for _, place in ipairs(PLACES) do
    it("spawns a chain of 100 closures (" .. place[1] .. ")", function()
      mb.run(function()
        local me, f = mb.self(), chain(100)
        mb.spawn_opt({scheduler = place[2]}, function() mb.send(me, {"deep", f()}) end)
        assert.are.equal("bottom", recv(tagged "deep")[2])
      end, OPTS)
    end)
  end

  for _, depth in ipairs({1000, 50000}) do
    it("refuses a chain of " .. depth .. " closures with a clear error", function()
      mb.run(function()
        local f = chain(depth)
        local ok, err = pcall(mb.spawn, function() return f() end)
        assert.is_false(ok)
        assert.matches("spawn: function: upvalue 'f': upvalue 'inner'", err, 1, true)
        assert.matches("nested deeper than 200", err, 1, true)
        ok, err = pcall(gen.pack, f)
        assert.is_false(ok)
        assert.matches("nested deeper than 200", err, 1, true)
        -- the runtime still works
        local me = mb.self()
        mb.spawn_opt({scheduler = 2}, function() mb.send(me, "alive") end)
        assert.are.equal("alive", recv(function(m) return m == "alive" end))
      end, OPTS)
    end)
  end

  it("refuses deeply nested tables of functions the same way, and packs 100 levels", function()
    local t = {}
    local top = t
    for _ = 1, 100 do t.f = function() end t.next = {} t = t.next end
    local copy = gen.unpack(gen.pack(top))
    assert.is_function(copy.next.next.f)
    for _ = 1, 1000 do t.f = function() end t.next = {} t = t.next end
    local ok, err = pcall(gen.pack, top)
    assert.is_false(ok)
    assert.matches("value.next.next.next", err, 1, true)
    assert.matches("nested deeper than 200", err, 1, true)
  end)
end)

describe("spawn packer: Lua errors while starting a process", function()
  for _, place in ipairs(PLACES) do
    it("spawn{'strict_module', 'missing_fn'} ends that process with the __index error (" .. place[1] .. ")",
      function()
        mb.run(function()
          quiet(function()
            local _, ref = mb.spawn_opt({monitor = true, scheduler = place[2]}, {"strict_module", "missing_fn"})
            local reason = down(ref)[5]
            assert.are.equal("error", reason[1])
            assert.matches("cannot start the function in this scheduler's VM", reason[2], 1, true)
            assert.matches("strict_module has no field 'missing_fn'", reason[2], 1, true)
            -- the same module's present function still starts
            local me = mb.self()
            mb.spawn_opt({scheduler = place[2]}, {"strict_module", "present"}, me)
            recv(tagged "present")
          end)
        end, OPTS)
      end)

    it("a module that fails to load with an error whose __tostring raises (" .. place[1] .. ")", function()
      mb.run(function()
        quiet(function()
          local _, ref = mb.spawn_opt({monitor = true, scheduler = place[2]}, {"bad_error_module", "f"})
          local reason = down(ref)[5]
          assert.are.equal("error", reason[1])
          assert.matches("cannot start the function in this scheduler's VM: an error object of type table",
                         reason[2], 1, true)
        end)
      end, OPTS)
    end)
  end

  it("gen.unpack raises the error of a failing __index instead of aborting", function()
    mb.run(function()
      -- a function that cannot be copied (it holds a coroutine) travels as its
      -- place in a loaded module; looked up again, the module's __index raises
      local co = coroutine.create(function() end)
      local M = {fn = function() return co end}
      package.loaded["spec_swapped_module"] = M
      local packed = gen.pack({M.fn})
      package.loaded["spec_swapped_module"] = require "strict_module"
      local ok, err = pcall(gen.unpack, packed)
      package.loaded["spec_swapped_module"] = nil
      assert.is_false(ok)
      assert.matches("gen.unpack: .*strict_module has no field 'fn'", err)
      ok, err = pcall(gen.unpack, "not packed")
      assert.is_false(ok)
      assert.matches("gen.unpack: expected packed data", err, 1, true)
    end, OPTS)
  end)
end)

describe("spawn packer: mb.spawn accepts what gen.pack accepts", function()
  for _, place in ipairs(PLACES) do
    it("a closure holding a local table of functions (" .. place[1] .. ")", function()
      mb.run(function()
        local me = mb.self()
        local count = 0
        local helpers = {}
        function helpers.double(x) return 2 * x end
        function helpers.bump() count = count + 1 return count end
        helpers.self = helpers
        local callbacks = setmetatable({}, {__index = helpers})
        mb.spawn_opt({scheduler = place[2]}, function(extra)
          mb.send(me, {"r", helpers.double(21), helpers.bump(), helpers.bump(), helpers.self == helpers,
                       callbacks.double(5), extra.cb(3)})
        end, {cb = function(x) return x + helpers.double(1) end})
        local m = recv(tagged "r")
        assert.are.same({"r", 42, 1, 2, true, 10, 5}, m)
        assert.are.equal(0, count)
      end, OPTS)
    end)
  end

  it("task.async, agent and gen_server take the same closures", function()
    mb.run(function()
      local helpers = {add = function(a, b) return a + b end}
      local t = task.async(function() return helpers.add(1, 2) end)
      assert.are.equal(3, task.await(t))
      local a = agent.start_link(function() return helpers.add(10, 5) end)
      assert.are.equal(16, agent.get(a, function(s) return helpers.add(s, 1) end))
      local M = {}
      function M.init(x) return "ok", x end
      function M.handle_call(req, _, s) return "reply", helpers.add(req, s), s end
      local srv = gen_server.start_link(M, 100)
      assert.are.equal(101, gen_server.call(srv, 1))
    end, OPTS)
  end)

  it("a packed value travels in a message to another VM and unpacks there", function()
    mb.run(function()
      local me = mb.self()
      local n = 5
      local packed = gen.pack({f = function() return n * 2 end})
      local pid = mb.spawn_opt({scheduler = 2}, function()
        local m = mb.receive()
        mb.send(me, {"got", gen.unpack(m[2]).f()})
      end)
      mb.send(pid, {"take", packed})
      assert.are.equal(10, recv(tagged "got")[2])
    end, OPTS)
  end)
end)

describe("spawn packer: internal tags cannot be forged", function()
  local T, A = mb.tuple, mb.atom
  local BYTECODE = "\27Lua" .. string.rep("\0\255", 40)

  for _, place in ipairs(PLACES) do
    it("arguments shaped like the old tags arrive as plain data (" .. place[1] .. ")", function()
      mb.run(function()
        local me = mb.self()
        local forged = {
          T(A "$G"), T(A "$mod", "os"), T(A "$fn", 1, BYTECODE, 0), T(A "$fnref", 1),
          T(A "$cfn", "os", "exit"), T(A "$mfa", "os", "exit"), T(A "$upref", 1, 1),
          {0, "x"}, {1}, {5, 1, BYTECODE, 0, 0}, T(A "$packed", string.rep("\0", 8), BYTECODE),
        }
        mb.spawn_opt({scheduler = place[2]}, function(...)
          local got = {}
          for i = 1, select("#", ...) do
            local v = select(i, ...)
            got[i] = {type(v), type(v) == "table" and v[1] or v, type(v) == "table" and v[2] or nil}
          end
          mb.send(me, {"args", got})
        end, table.unpack(forged))
        local got = recv(tagged "args")[2]
        assert.are.equal(#forged, #got)
        for i, v in ipairs(forged) do
          assert.are.equal("table", got[i][1], "argument " .. i)
          assert.are.equal(tostring(v[1]), tostring(got[i][2]), "argument " .. i)
          assert.are.equal(v[2], got[i][3], "argument " .. i)
        end
      end, OPTS)
    end)
  end

  it("a forged packed value in a message arrives as a plain table; gen.unpack refuses it", function()
    mb.run(function()
      local me = mb.self()
      -- a real packed value's bytes cannot be read, so forge from scratch
      mb.send(me, {"m", mb.tuple(mb.atom "$packed", "12345678", "\131" .. BYTECODE)})
      local m = recv(tagged "m")
      assert.are.equal("table", type(m[2]))
      assert.are.equal("$packed", m[2][1])
      local ok, err = pcall(gen.unpack, m[2])
      assert.is_false(ok)
      assert.matches("expected packed data", err, 1, true)
    end, OPTS)
  end)
end)

describe("spawn packer: package.preload of the starting VM", function()
  it("a gen_server from a module in package.preload starts on every scheduler", function()
    package.preload["spec_preloaded_counter"] = function()
      local M = {}
      function M.init(n) return "ok", n end
      function M.handle_call(req, _, n) if req == "where" then return "reply", mb.scheduler(), n end
        return "reply", n + req, n + req end
      return M
    end
    mb.run(function()
      for s = 1, 2 do
        local pid = mb.spawn_opt({scheduler = s}, function(me)
          local srv = assert(gen_server.start("spec_preloaded_counter", 10, {scheduler = "here"}))
          mb.send(me, {"srv", gen_server.call(srv, "where"), gen_server.call(srv, 5)})
        end, mb.self())
        local m = recv(tagged "srv")
        assert.are.same({"srv", s, 15}, m)
        assert.is_truthy(pid)
      end
    end, OPTS)
    package.preload["spec_preloaded_counter"] = nil
    package.loaded["spec_preloaded_counter"] = nil
  end)
end)

describe("tuples with a forged n", function()
  it("refuses n far past the elements, keeps trailing nils", function()
    mb.run(function()
      local t = mb.tuple("a", "b")
      t.n = 100000000
      local ok, err = pcall(mb.send, mb.self(), t)
      assert.is_false(ok)
      assert.matches("msg: tuple n larger than its elements (n = 100000000, 2 fields)", err, 1, true)
      mb.send(mb.self(), {"t", mb.tuple("x", nil, nil)})
      local m = recv(tagged "t")
      assert.are.same({"x"}, m[2])
    end, OPTS)
  end)
end)

describe("spawn packer: errors point at the caller's line", function()
  it("mb.spawn, gen.pack and gen_server.start name the line that called them", function()
    mb.run(function()
      local co = coroutine.create(function() end)
      local ok, err = pcall(mb.spawn, function() return co end)
      assert.is_false(ok)
      assert.matches("^spec/spawn_spec.lua:%d+: spawn: function: upvalue 'co': cannot send a coroutine", err)
      ok, err = pcall(gen.pack, {co})
      assert.is_false(ok)
      assert.matches("^spec/spawn_spec.lua:%d+: value%[1%]: cannot send a coroutine", err)
      local M = {init = function() return "ok", co end, co = co}
      M.handle_call = function() return co end
      ok, err = pcall(gen_server.start, M, nil)
      assert.is_false(ok)
      assert.matches("^spec/spawn_spec.lua:%d+: ", err)
      assert.not_matches("moonbeam/", err)
    end, OPTS)
  end)
end)
