-- moonbeam.udp: UDP ports against real loopback sockets.
local mb = require "moonbeam"
local udp = require "moonbeam.udp"
local type, assert, error, string = type, assert, error, string

local function run(fn) return mb.run(fn, {schedulers = 2}) end

local function recv(match, ms)
  local m, err = mb.receive(match, ms or 5000)
  if err then error("timed out waiting for a message", 2) end
  return m
end

local function tagged(tag, sock)
  return function(m) return type(m) == "table" and m[1] == tag and (sock == nil or m[2] == sock) end
end

local function open(opts)
  opts = opts or {}
  opts.address = opts.address or "127.0.0.1"
  local s = assert(udp.open(0, opts))
  local _, port = udp.sockname(s)
  return s, port
end

describe("moonbeam.udp", function()
  it("delivers {'udp', sock, ip, port, data} in active mode", function()
    run(function()
      local a, pa = open()
      local b, pb = open()
      assert(udp.send(a, "127.0.0.1", pb, "hi there"))
      local m = recv(tagged("udp", b))
      assert.are.same({"127.0.0.1", pa, "hi there"}, {m[3], m[4], m[5]})
      -- a name works as the destination too
      assert(udp.send(b, "localhost", pa, "back"))
      assert.are.equal("back", recv(tagged("udp", a))[5])
      udp.close(a); udp.close(b)
    end)
  end)

  it("recv takes datagrams one at a time in passive mode, and times out", function()
    run(function()
      local a = open()
      local b, pb = open({active = false})
      assert.are.same({nil, "timeout"}, {udp.recv(b, 50)})
      for i = 1, 3 do assert(udp.send(a, "127.0.0.1", pb, "d" .. i)) end
      for i = 1, 3 do
        local ip, _, data = udp.recv(b, 5000)
        assert.are.equal("127.0.0.1", ip)
        assert.are.equal("d" .. i, data)
      end
      assert.is_nil((mb.receive(tagged("udp"), 50)))
      udp.close(a); udp.close(b)
    end)
  end)

  it("active n: n datagrams, then {'udp_passive', sock}; the rest waits in the kernel", function()
    run(function()
      local a = open()
      local b, pb = open({active = 3})
      for i = 1, 10 do assert(udp.send(a, "127.0.0.1", pb, "n" .. i)) end
      for i = 1, 3 do assert.are.equal("n" .. i, recv(tagged("udp", b))[5]) end
      recv(tagged("udp_passive", b))
      assert.is_nil((mb.receive(tagged("udp", b), 100)))
      assert(udp.setopts(b, {active = "once"}))
      assert.are.equal("n4", recv(tagged("udp", b))[5])
      assert.is_nil((mb.receive(tagged("udp", b), 100)))
      assert.are.equal(false, udp.getopts(b).active)
      udp.close(a); udp.close(b)
    end)
  end)

  it("joins and leaves a multicast group", function()
    run(function()
      local r = assert(udp.open(0, {address = "0.0.0.0", reuseaddr = true, multicast_loop = true}))
      local _, port = udp.sockname(r)
      local ok, err = udp.add_membership(r, "239.255.0.1")
      if not ok then pending("no multicast here: " .. tostring(err)) return end
      local s = assert(udp.open(0, {multicast_loop = true, multicast_ttl = 1}))
      assert(udp.send(s, "239.255.0.1", port, "to the group"))
      local m, why = mb.receive(tagged("udp", r), 2000)
      if not m then pending("multicast loopback not routed here: " .. tostring(why)) return end
      assert.are.equal("to the group", m[5])
      assert(udp.drop_membership(r, "239.255.0.1"))
      assert.are.same({nil, "einval"}, {udp.add_membership(r, "not an address")})
      udp.close(r); udp.close(s)
    end)
  end)

  it("bad input: closed sockets, bad addresses, a port in use, owner exit", function()
    run(function()
      local a, pa = open()
      local ok, bad = udp.send(a, "300.1.1.1", 9, "x") -- not an address, nor a name
      assert.is_nil(ok)
      assert.is_string(bad)
      local dup, err = udp.open(pa, {address = "127.0.0.1"})
      assert.is_nil(dup)
      assert.are.equal("eaddrinuse", err)
      udp.close(a)
      assert.are.same({nil, "closed"}, {udp.send(a, "127.0.0.1", pa, "x")})
      assert.are.same({nil, "closed"}, {udp.recv(a, 10)})
      assert.has_error(function() udp.send(a, "127.0.0.1", 0, "x") end)
      local me = mb.self()
      local pid = mb.spawn(function()
        local s = assert(udp.open(0, {address = "127.0.0.1"}))
        mb.send(me, {"sock", s})
        mb.receive()
      end)
      local s = recv(tagged("sock"))[2]
      mb.exit(pid, "kill")
      mb.sleep(50)
      assert.are.same({nil, "closed"}, {udp.sockname(s)})
      -- a datagram larger than buffer is cut to it
      local b, pb = open({active = false, buffer = 4})
      local c = open()
      assert(udp.send(c, "127.0.0.1", pb, string.rep("z", 10)))
      local _, _, data = udp.recv(b, 5000)
      assert.are.equal("zzzz", data)
      udp.close(b); udp.close(c)
    end)
  end)
end)
