-- moonbeam.dns: lookups on the loop (libuv's thread pool), never blocking a scheduler.
local mb = require "moonbeam"
local dns = require "moonbeam.dns"
local type, assert, ipairs = type, assert, ipairs

local function run(fn) return mb.run(fn, {schedulers = 2}) end

local function has(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

describe("moonbeam.dns", function()
  it("resolves localhost, literal addresses and one family on request", function()
    run(function()
      local all = assert(dns.resolve("localhost"))
      assert.is_true(has(all, "127.0.0.1") or has(all, "::1"))
      local v4 = assert(dns.resolve("localhost", 4))
      assert.is_true(has(v4, "127.0.0.1"))
      for _, a in ipairs(v4) do assert.is_nil(a:find(":", 1, true)) end
      assert.are.same({"10.1.2.3"}, dns.resolve("10.1.2.3"))
      assert.are.same({"::1"}, dns.resolve("::1", 6))
    end)
  end)

  it("fails with nil, reason for a name that does not exist", function()
    run(function()
      local r, err = dns.resolve("no-such-host.invalid")
      assert.is_nil(r)
      assert.is_string(err)
      assert.has_error(function() dns.resolve("localhost", 5) end)
    end)
  end)

  it("answers many concurrent lookups from processes on every scheduler", function()
    run(function()
      local me = mb.self()
      for i = 1, 20 do
        mb.spawn_opt({scheduler = (i % 2) + 1}, function()
          local r = dns.resolve("localhost", 4)
          mb.send(me, {"resolved", type(r) == "table" and r[1]})
        end)
      end
      -- the caller keeps running meanwhile: its scheduler is not blocked
      local ticks = 0
      mb.spawn_opt({scheduler = 1}, function() for _ = 1, 5 do mb.sleep(1) end mb.send(me, "ticked") end)
      for _ = 1, 21 do
        local m = assert(mb.receive(nil, 10000))
        if m == "ticked" then ticks = ticks + 1 else assert.are.equal("127.0.0.1", m[2]) end
      end
      assert.are.equal(1, ticks)
    end)
  end)
end)
