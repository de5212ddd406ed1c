-- moonbeam.tcp: TCP ports with gen_tcp's model, against real loopback sockets.
local mb = require "moonbeam"
local tcp = require "moonbeam.tcp"
package.path = package.path .. ";spec/support/?.lua"
local spin = require("spin").spin
-- Spawned functions are copied with their upvalues: locals, not busted's globals.
local type, assert, error, ipairs, table, string, tostring, rawequal, tonumber =
  type, assert, error, ipairs, table, string, tostring, rawequal, tonumber

local function run(fn) return mb.run(fn, {schedulers = 2}) end

local function recv(match, ms)
  local m, err = mb.receive(match, ms or 5000)
  if err then error("timed out waiting for a message", 2) end
  return m
end

local function tagged(tag, sock)
  return function(m) return type(m) == "table" and m[1] == tag and (sock == nil or m[2] == sock) end
end

-- A listener on a free loopback port: listener, port.
local function listener(opts)
  opts = opts or {}
  opts.address = opts.address or "127.0.0.1"
  local l = assert(tcp.listen(0, opts))
  local _, port = tcp.sockname(l)
  return l, port
end

-- A connected pair: client (owned by the caller), server socket (owned by the caller too).
local function pair(server_opts, client_opts)
  local l, port = listener(server_opts)
  local c = assert(tcp.connect("127.0.0.1", port, client_opts or {active = false}, 5000))
  local s = assert(tcp.accept(l, 5000))
  tcp.close(l)
  return c, s
end

-- Reads exactly n bytes in passive mode.
local function read_n(sock, n)
  local parts, got = {}, 0
  while got < n do
    local d, err = tcp.recv(sock, 0, 5000)
    if not d then error("recv: " .. tostring(err), 2) end
    parts[#parts + 1] = d
    got = got + #d
  end
  return table.concat(parts)
end

describe("moonbeam.tcp", function()
  describe("ports", function()
    it("print as #Port<0.N>, are interned (table keys) and survive a trip through a message", function()
      run(function()
        local c, s = pair()
        assert.matches("^#Port<0%.%d+>$", tostring(c))
        assert.is_true(tcp.is_port(c))
        assert.is_false(tcp.is_port({}))
        mb.send(mb.self(), {"sock", c})
        local m = recv(tagged("sock"))
        assert.is_true(rawequal(m[2], c))
        local t = {[c] = "client", [s] = "server"}
        assert.are.equal("client", t[m[2]])
        assert.are.equal(mb.self(), tcp.owner(c))
        tcp.close(c)
        tcp.close(s)
      end)
    end)
  end)

  describe("listen", function()
    it("picks a free port with 0 and reports it; a port in use is eaddrinuse", function()
      run(function()
        local l, port = listener()
        assert.is_true(port > 0)
        local l2, err = tcp.listen(port, {address = "127.0.0.1"})
        assert.is_nil(l2)
        assert.are.equal("eaddrinuse", err)
        -- reuseport lets a second listener share it
        local a = assert(tcp.listen(0, {address = "127.0.0.1", reuseport = true}))
        local _, pa = tcp.sockname(a)
        local b = assert(tcp.listen(pa, {address = "127.0.0.1", reuseport = true}))
        tcp.close(a)
        tcp.close(b)
        tcp.close(l)
      end)
    end)

    it("listens on IPv6 loopback and accepts an IPv6 client", function()
      run(function()
        local l, err = tcp.listen(0, {address = "::1", ipv6 = true, active = false})
        if not l then pending("no IPv6 here: " .. tostring(err)) return end
        local ip, port = tcp.sockname(l)
        assert.are.equal("::1", ip)
        local c = assert(tcp.connect("::1", port, {active = false}, 5000))
        local s = assert(tcp.accept(l, 5000))
        assert.are.equal("::1", (tcp.peername(s)))
        assert(tcp.send(c, "v6"))
        assert.are.equal("v6", tcp.recv(s, 2, 5000))
        tcp.close(c); tcp.close(s); tcp.close(l)
      end)
    end)

    it("rejects unknown options and bad values (misuse raises)", function()
      run(function()
        assert.has_error(function() tcp.listen(0, {bogus = 1}) end, "unknown socket option 'bogus'")
        assert.has_error(function() tcp.listen(0, {packet = 3}) end)
        assert.has_error(function() tcp.listen(70000) end)
      end)
    end)
  end)

  describe("accept", function()
    it("times out with nil, 'timeout'; 0 does not wait", function()
      run(function()
        local l = listener()
        local t0 = mb.clock()
        local s, err = tcp.accept(l, 100)
        assert.is_nil(s)
        assert.are.equal("timeout", err)
        assert.is_true(mb.clock() - t0 >= 0.09)
        assert.are.same({nil, "timeout"}, {tcp.accept(l, 0)})
        tcp.close(l)
      end)
    end)

    it("serves several acceptor processes waiting on one listener, each once", function()
      run(function()
        local l, port = listener({active = false})
        local me = mb.self()
        for i = 1, 4 do
          mb.spawn_opt({scheduler = (i % 2) + 1}, function()
            local s = assert(tcp.accept(l, 5000))
            mb.send(me, {"accepted", i, tcp.owner(s) == mb.self()})
            local d = tcp.recv(s, 0, 5000)
            assert(tcp.send(s, "acceptor " .. i .. " got " .. d))
            mb.receive(nil, 1000)
          end)
        end
        mb.sleep(100) -- every acceptor waits now
        local clients, answers = {}, {}
        for i = 1, 4 do
          clients[i] = assert(tcp.connect("127.0.0.1", port, {active = false}, 5000))
          assert(tcp.send(clients[i], "c" .. i))
        end
        local seen = {}
        for _ = 1, 4 do
          local m = recv(tagged("accepted"))
          assert.is_true(m[3])
          seen[m[2]] = true
        end
        for i = 1, 4 do
          assert.is_true(seen[i])
          answers[i] = tcp.recv(clients[i], 0, 5000)
          assert.matches("^acceptor %d got c" .. i .. "$", answers[i])
        end
        tcp.close(l)
      end)
    end)

    it("skips an acceptor that died waiting: the connection goes to a live one", function()
      run(function()
        local l, port = listener({active = false})
        local me = mb.self()
        local dead = mb.spawn(function() tcp.accept(l) end)
        mb.sleep(50)
        mb.exit(dead, "kill")
        mb.spawn(function()
          local s = assert(tcp.accept(l, 5000))
          mb.send(me, {"live", tcp.recv(s, 0, 5000)})
        end)
        mb.sleep(50)
        local c = assert(tcp.connect("127.0.0.1", port, nil, 5000))
        assert(tcp.send(c, "to the living"))
        assert.are.equal("to the living", recv(tagged("live"))[2])
        tcp.close(c); tcp.close(l)
      end)
    end)

    it("wakes a waiting acceptor with nil, 'closed' when the listener closes", function()
      run(function()
        local l = listener()
        local me = mb.self()
        mb.spawn(function() mb.send(me, {"result", tcp.accept(l)}) end)
        mb.sleep(50)
        tcp.close(l)
        local m = recv(tagged("result"))
        assert.are.equal("closed", m[3])
      end)
    end)
  end)

  describe("connect", function()
    it("fails with econnrefused on a closed port", function()
      run(function()
        local l, port = listener()
        tcp.close(l)
        mb.sleep(20)
        local s, err = tcp.connect("127.0.0.1", port, nil, 5000)
        assert.is_nil(s)
        assert.are.equal("econnrefused", err)
      end)
    end)

    it("resolves a name ('localhost') without blocking the scheduler", function()
      run(function()
        local l, port = listener()
        local c = assert(tcp.connect("localhost", port, {active = false}, 5000))
        local s = assert(tcp.accept(l, 5000))
        local ip = tcp.peername(c)
        assert.are.equal("127.0.0.1", ip)
        tcp.close(c); tcp.close(s); tcp.close(l)
        local none, err = tcp.connect("no-such-host.invalid", 80, nil, 5000)
        assert.is_nil(none)
        assert.is_string(err)
      end)
    end)

    it("gives up after its timeout", function()
      run(function()
        -- timers run before I/O in a loop pass: 0 ms expires before any answer
        local l, port = listener()
        assert.are.same({nil, "timeout"}, {tcp.connect("127.0.0.1", port, nil, 0)})
        -- and a name lookup that is cut short is a timeout too
        assert.are.same({nil, "timeout"}, {tcp.connect("localhost.localdomain", port, nil, 0)})
        local c = assert(tcp.connect("127.0.0.1", port, nil, 5000))
        tcp.close(c)
        tcp.close(l)
      end)
    end)
  end)

  describe("passive mode", function()
    it("recv(sock, n) returns exactly n bytes, recv(sock, 0) what is there, and times out", function()
      run(function()
        local c, s = pair({active = false})
        assert(tcp.send(c, "hello world"))
        assert.are.equal("hello", tcp.recv(s, 5, 5000))
        assert.are.equal(" world", read_n(s, 6))
        local d, err = tcp.recv(s, 0, 50)
        assert.is_nil(d)
        assert.are.equal("timeout", err)
        assert(tcp.send(c, ""))   -- an empty send is fine and sends nothing
        assert(tcp.send(c, "x"))
        assert.are.equal("x", tcp.recv(s, 0, 5000))
        tcp.close(c)
        assert.are.same({nil, "closed"}, {tcp.recv(s, 0, 5000)})
        tcp.close(s)
      end)
    end)

    it("refuses recv on an active socket with einval", function()
      run(function()
        local c, s = pair({active = true})
        assert.are.same({nil, "einval"}, {tcp.recv(s, 0, 10)})
        tcp.close(c); tcp.close(s)
      end)
    end)

    it("works from a process on another scheduler (commands queued to the port's loop)", function()
      run(function()
        local c, s = pair({active = false})
        local me = mb.self()
        mb.spawn_opt({scheduler = 2}, function()
          assert(tcp.send(c, "from sched 2"))
          local d = tcp.recv(c, 0, 5000)
          local ip, port = tcp.sockname(c)
          mb.send(me, {"done", d, ip, port})
        end)
        assert.are.equal("from sched 2", read_n(s, 12))
        assert(tcp.send(s, "back"))
        local m = recv(tagged("done"))
        assert.are.equal("back", m[2])
        assert.are.equal("127.0.0.1", m[3])
        tcp.close(c); tcp.close(s)
      end)
    end)
  end)

  describe("active mode", function()
    it("delivers {'tcp', sock, data} and then {'tcp_closed', sock}", function()
      run(function()
        local c, s = pair({active = true})
        assert(tcp.send(c, "ping"))
        local m = recv(tagged("tcp", s))
        assert.are.equal("ping", m[3])
        tcp.close(c)
        recv(tagged("tcp_closed", s))
        tcp.close(s)
      end)
    end)

    it("active once: one message, then nothing until re-armed, even under a flood", function()
      run(function()
        local c, s = pair({active = "once", packet = 2}, {active = false, packet = 2})
        local me = mb.self()
        mb.spawn(function()
          for i = 1, 2000 do assert(tcp.send(c, "msg" .. i)) end
          mb.send(me, "flooded")
        end)
        recv(function(m) return m == "flooded" end, 10000)
        local got = 0
        while got < 2000 do
          local m = recv(tagged("tcp", s))
          got = got + 1
          assert.are.equal("msg" .. got, m[3])
          -- never more than the allowance in the mailbox
          assert.is_nil((mb.receive(tagged("tcp", s), 0)))
          assert.are.equal(false, tcp.getopts(s).active)
          tcp.setopts(s, {active = "once"})
        end
        tcp.close(c); tcp.close(s)
      end)
    end)

    it("active n: at most n messages, then {'tcp_passive', sock}; n adds up", function()
      run(function()
        local c, s = pair({active = 5, packet = 4}, {active = false, packet = 4})
        for i = 1, 100 do assert(tcp.send(c, string.rep("z", i))) end
        mb.sleep(100)
        for i = 1, 5 do assert.are.equal(i, #recv(tagged("tcp", s))[3]) end
        recv(tagged("tcp_passive", s))
        assert.is_nil((mb.receive(tagged("tcp", s), 100)))
        assert.are.equal(false, tcp.getopts(s).active)
        tcp.setopts(s, {active = 10})
        tcp.setopts(s, {active = 5}) -- adds: 15 in all
        for i = 6, 20 do assert.are.equal(i, #recv(tagged("tcp", s))[3]) end
        recv(tagged("tcp_passive", s))
        assert.is_nil((mb.receive(tagged("tcp", s), 100)))
        -- the rest still arrives in passive mode
        for i = 21, 100 do assert.are.equal(i, #tcp.recv(s, 0, 5000)) end
        tcp.close(c); tcp.close(s)
      end)
    end)

    it("stops reading when the allowance is spent, so the peer's sends back up", function()
      run(function()
        local c, s = pair({active = 1}, {active = false, high_watermark = 65536, low_watermark = 16384})
        local me = mb.self()
        local chunk = string.rep("x", 65536)
        local sender = mb.spawn(function()
          local sent = 0
          while sent < 64 * 1024 * 1024 do
            assert(tcp.send(c, chunk))
            sent = sent + #chunk
            mb.send(me, {"sent", sent})
          end
        end)
        recv(tagged("tcp", s))
        recv(tagged("tcp_passive", s))
        mb.sleep(300)
        -- the sender is stuck in send (waiting), well short of 64 MB
        local last = 0
        while true do
          local m = mb.receive(tagged("sent"), 0)
          if not m then break end
          last = m[2]
        end
        assert.is_true(last < 32 * 1024 * 1024, "sent " .. last)
        assert.are.equal("waiting", mb.info(sender).status)
        local st = tcp.stats(c)
        assert.is_true(st.send_queue <= 65536 + #chunk, "queue " .. st.send_queue)
        assert.is_false(tcp.stats(s).reading)
        mb.exit(sender, "kill")
        tcp.close(c); tcp.close(s)
      end)
    end)
  end)

  describe("packets", function()
    it("frames packet 1, 2 and 4 with a big-endian length", function()
      run(function()
        for _, n in ipairs{1, 2, 4} do
          local c, s = pair({active = false, packet = n}, {active = false, packet = n})
          assert(tcp.send(c, "abc"))
          assert(tcp.send(c, ""))
          assert(tcp.send(c, string.rep("q", 200)))
          assert.are.equal("abc", tcp.recv(s, 0, 5000))
          assert.are.equal("", tcp.recv(s, 0, 5000))
          assert.are.equal(200, #tcp.recv(s, 0, 5000))
          -- the raw bytes carry the header
          tcp.setopts(s, {packet = "raw"})
          assert(tcp.send(c, "hi"))
          local raw = read_n(s, n + 2)
          assert.are.equal(string.rep("\0", n - 1) .. "\2hi", raw)
          tcp.close(c); tcp.close(s)
        end
      end)
    end)

    it("refuses a packet 1 send of more than 255 bytes with emsgsize", function()
      run(function()
        local c, s = pair(nil, {packet = 1, active = false})
        assert.are.same({nil, "emsgsize"}, {tcp.send(c, string.rep("a", 256))})
        tcp.close(c); tcp.close(s)
      end)
    end)

    it("splits lines in line mode, keeping the newline; a last partial line comes at close", function()
      run(function()
        local c, s = pair({active = true, packet = "line"})
        assert(tcp.send(c, "one\ntwo\nthr"))
        assert(tcp.send(c, "ee\nfour"))
        assert.are.equal("one\n", recv(tagged("tcp", s))[3])
        assert.are.equal("two\n", recv(tagged("tcp", s))[3])
        assert.are.equal("three\n", recv(tagged("tcp", s))[3])
        tcp.close(c)
        assert.are.equal("four", recv(tagged("tcp", s))[3])
        recv(tagged("tcp_closed", s))
        tcp.close(s)
      end)
    end)

    it("cuts a line longer than buffer", function()
      run(function()
        local c, s = pair({active = false, packet = "line", buffer = 8})
        assert(tcp.send(c, "0123456789abc\n"))
        assert.are.equal("01234567", tcp.recv(s, 0, 5000))
        assert.are.equal("89abc\n", tcp.recv(s, 0, 5000))
        tcp.close(c); tcp.close(s)
      end)
    end)

    it("reports a packet past packet_size as an error", function()
      run(function()
        local c, s = pair({active = false, packet = 2, packet_size = 10}, {packet = 2, active = false})
        assert(tcp.send(c, string.rep("b", 11)))
        assert.are.same({nil, "emsgsize"}, {tcp.recv(s, 0, 5000)})
        tcp.close(c); tcp.close(s)
      end)
    end)
  end)

  describe("options", function()
    it("getopts reports what setopts set", function()
      run(function()
        local c, s = pair()
        assert(tcp.setopts(c, {nodelay = true, keepalive = true, buffer = 4096, packet = "line"}))
        local o = tcp.getopts(c)
        assert.are.same({true, true, 4096, "line", false},
          {o.nodelay, o.keepalive, o.buffer, o.packet, o.active})
        assert(tcp.setopts(c, {active = "once"}))
        assert.are.equal("once", tcp.getopts(c, {"active"}).active)
        assert(tcp.setopts(c, {active = 3}))
        assert.are.equal(3, tcp.getopts(c).active)
        tcp.close(c); tcp.close(s)
      end)
    end)

    it("accepted sockets inherit the listener's options", function()
      run(function()
        local c, s = pair({active = "once", packet = 4})
        local o = tcp.getopts(s)
        assert.are.equal("once", o.active)
        assert.are.equal(4, o.packet)
        tcp.close(c); tcp.close(s)
      end)
    end)
  end)

  describe("ownership", function()
    it("closes a port when its owner exits", function()
      run(function()
        local l, port = listener()
        local me = mb.self()
        local pid = mb.spawn(function()
          local c = assert(tcp.connect("127.0.0.1", port, nil, 5000))
          mb.send(me, {"client", c})
          mb.receive()
        end)
        local s = assert(tcp.accept(l, 5000))
        local c = recv(tagged("client"))[2]
        mb.exit(pid, "kill")
        recv(tagged("tcp_closed", s), 5000)
        assert.are.same({nil, "closed"}, {tcp.send(c, "x")})
        assert.are.same({nil, "closed"}, {tcp.owner(c)})
        tcp.close(s); tcp.close(l)
      end)
    end)

    it("controlling_process hands a socket over, with the messages already queued", function()
      run(function()
        local c, s = pair({active = true})
        assert(tcp.send(c, "early"))
        mb.sleep(100) -- let "early" arrive in our mailbox
        local me = mb.self()
        local heir = mb.spawn_opt({scheduler = 2}, function()
          local m = mb.receive(function(x) return x == "go" end)
          local a = recv(tagged("tcp"))
          local b = recv(tagged("tcp"))
          local closed = recv(tagged("tcp_closed"))
          mb.send(me, {"heir", a[3], b[3], closed[2] == a[2], tcp.owner(a[2]) == mb.self(), m})
        end)
        mb.spawn(function()
          mb.send(me, {"stranger", tcp.controlling_process(s, mb.self())})
        end)
        local m = recv(tagged("stranger"))
        assert.are.same({"stranger", nil, "not_owner"}, {m[1], m[2], m[3]})
        assert(tcp.controlling_process(s, heir))
        assert.are.equal(heir, tcp.owner(s))
        assert.is_nil((mb.receive(tagged("tcp"), 50)))
        assert(tcp.send(c, "late"))
        mb.sleep(50)
        tcp.close(c)
        assert.are.same({nil, "not_owner"}, {tcp.controlling_process(s, me)})
        mb.send(heir, "go")
        local r = recv(tagged("heir"))
        assert.are.same({"early", "late", true, true}, {r[2], r[3], r[4], r[5]})
      end)
    end)

    it("controlling_process hands over a listener too: its new owner's exit closes it", function()
      run(function()
        local l, port = listener()
        local me = mb.self()
        local heir = mb.spawn(function() mb.receive() end)
        assert(tcp.controlling_process(l, heir))
        assert.are.equal(heir, tcp.owner(l))
        mb.exit(heir, "kill")
        mb.sleep(50)
        assert.are.same({nil, "closed"}, {tcp.owner(l)})
        assert.are.same({nil, "econnrefused"}, {tcp.connect("127.0.0.1", port, nil, 2000)})
        assert.are.equal(me, mb.self())
      end)
    end)

    it("controlling_process to a dead process fails with noproc", function()
      run(function()
        local c, s = pair()
        local dead = mb.spawn(function() end)
        mb.sleep(20)
        assert.are.same({nil, "noproc"}, {tcp.controlling_process(s, dead)})
        assert.are.equal(mb.self(), tcp.owner(s))
        tcp.close(c); tcp.close(s)
      end)
    end)
  end)

  describe("bad input and limits", function()
    it("closed ports give nil, 'closed'; a foreign value raises", function()
      run(function()
        local c, s = pair()
        tcp.close(c)
        assert.are.same({nil, "closed"}, {tcp.close(c)})
        assert.are.same({nil, "closed"}, {tcp.send(c, "x")})
        assert.are.same({nil, "closed"}, {tcp.recv(c, 0, 10)})
        assert.are.same({nil, "closed"}, {tcp.setopts(c, {active = true})})
        assert.are.same({nil, "closed"}, {tcp.peername(c)})
        assert.has_error(function() tcp.send({}, "x") end)
        assert.has_error(function() tcp.send(s) end)
        local l = listener()
        assert.has_error(function() tcp.send(l, "x") end) -- a listener is not a socket
        tcp.close(l); tcp.close(s)
      end)
    end)

    it("a peer that resets: recv and send report it", function()
      run(function()
        local c, s = pair({active = false})
        -- closing with unread input makes the kernel send a reset
        assert(tcp.send(c, "unread"))
        mb.sleep(50)
        tcp.close(s)
        mb.sleep(50)
        local d, err = tcp.recv(c, 0, 2000)
        assert.is_nil(d)
        assert.is_true(err == "econnreset" or err == "closed", err)
        local ok, serr = tcp.send(c, "more")
        if ok then ok, serr = tcp.send(c, "more") end
        assert.is_nil(ok)
        assert.is_true(serr == "econnreset" or serr == "epipe", serr)
        tcp.close(c)
      end)
    end)

    it("an active socket reports a reset as tcp_error then tcp_closed", function()
      run(function()
        local c, s = pair({active = false}, {active = true})
        assert(tcp.send(c, "unread"))
        mb.sleep(50)
        tcp.close(s)
        local e = recv(tagged("tcp_error", c))
        assert.are.equal("econnreset", e[3])
        recv(tagged("tcp_closed", c))
        tcp.close(c)
      end)
    end)

    it("out of descriptors (EMFILE): the acceptor backs off and keeps serving", function()
      -- a child lua5.4 with a low descriptor limit runs spec/support/emfile.lua
      local p = assert(io.popen(("ulimit -n 48 && timeout 60 %s spec/support/emfile.lua 2>&1")
        :format(os.getenv("MB_LUA") or "lua5.4")))
      local out = p:read("a")
      p:close()
      local why, accepted, total, served = out:match("connect stopped with (%w+); accepted (%d+) of (%d+), then served: (%w+)")
      assert.are.equal("emfile", why, out)
      assert.is_true(tonumber(total) > 0, out)
      assert.are.equal(total, accepted, out)
      assert.are.equal("yes", served, out)
      assert.matches("accepted while out of descriptors: 0", out, 1, true)
    end)

    it("sends 100 MB in one call", function()
      run(function()
        local c, s = pair({active = false})
        local me = mb.self()
        local size = 100 * 1024 * 1024
        mb.spawn(function()
          local got = 0
          while got < size do
            local d = assert(tcp.recv(s, 0, 10000))
            got = got + #d
          end
          mb.send(me, {"got", got})
        end)
        assert(tcp.send(c, string.rep("m", size)))
        assert.are.equal(size, recv(tagged("got"), 60000)[2])
        tcp.close(c); tcp.close(s)
      end)
    end)

    it("closing flushes what was queued", function()
      run(function()
        -- a high-water mark above the size, so the send returns with it queued
        local c, s = pair({active = false}, {active = false, high_watermark = 32 * 1024 * 1024})
        local size = 8 * 1024 * 1024
        assert(tcp.send(c, string.rep("f", size)))
        tcp.close(c)
        assert.are.equal(size, #read_n(s, size))
        assert.are.same({nil, "closed"}, {tcp.recv(s, 0, 2000)})
        tcp.close(s)
      end)
    end)

    it("shutdown(write) ends the peer's input but keeps reading", function()
      run(function()
        local c, s = pair({active = false})
        assert(tcp.send(c, "last words"))
        assert(tcp.shutdown(c, "write"))
        assert.are.equal("last words", read_n(s, 10))
        assert.are.same({nil, "closed"}, {tcp.recv(s, 0, 2000)})
        assert(tcp.send(s, "reply"))
        assert.are.equal("reply", tcp.recv(c, 0, 2000))
        assert.are.same({nil, "closed"}, {tcp.send(c, "more")})
        tcp.close(c); tcp.close(s)
      end)
    end)
  end)

  describe("examples", function()
    local function selftest(file)
      local p = assert(io.popen(("timeout 60 %s %s --selftest 2>&1"):format(os.getenv("MB_LUA") or "lua5.4", file)))
      local out = p:read("a")
      p:close()
      return out
    end
    it("examples/echo.lua serves 50 clients through its acceptor pool", function()
      assert.matches("echo selftest: 50/50 clients echoed", selftest("examples/echo.lua"))
    end)
    it("examples/tcp_chat.lua: nicknames, rooms, /who, /msg and /join over real sockets", function()
      local out = selftest("examples/tcp_chat.lua")
      assert.matches("tcp_chat selftest: ok", out)
      assert.matches("#lobby <joe> hello, ada", out, 1, true)
    end)
  end)

  describe("latency under load", function()
    it("a spinning process on the owner's scheduler adds about a slice to a socket's latency", function()
      run(function()
        local l, port = listener({active = true})
        local me = mb.self()
        -- the echo side lives on scheduler 1 with a spinner; the client on 2
        local echo = mb.spawn_opt({scheduler = 1}, function()
          local sock = assert(tcp.accept(l, 5000))
          while true do
            local x = mb.receive()
            if x[1] == "tcp" then tcp.send(sock, x[3]) elseif x == "stop" then return end
          end
        end)
        local spinner = mb.spawn_opt({scheduler = 1}, spin)
        mb.spawn_opt({scheduler = 2}, function()
          local c = assert(tcp.connect("127.0.0.1", port, {active = false}, 5000))
          local times = {}
          for i = 1, 100 do
            local t0 = mb.clock()
            assert(tcp.send(c, "p"))
            assert(tcp.recv(c, 1, 5000))
            times[i] = (mb.clock() - t0) * 1000
          end
          table.sort(times)
          mb.send(me, {"times", times[50], times[95]})
        end)
        local r = recv(tagged("times"), 30000)
        mb.exit(spinner, "kill")
        mb.send(echo, "stop")
        tcp.close(l)
        -- a slice is 1 ms; generous bounds for a loaded machine
        assert.is_true(r[2] < 10, "median " .. r[2] .. " ms")
        assert.is_true(r[3] < 50, "p95 " .. r[3] .. " ms")
      end)
    end)
  end)
end)
