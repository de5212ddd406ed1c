-- moonbeam.tls: TLS over TCP ports against real loopback sockets; the
-- certificates are made here with the openssl command.
local mb = require "moonbeam"
local tls = require "moonbeam.tls"
local tcp = require "moonbeam.tcp"
local type, assert, error, string = type, assert, error, string

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))

local function sh(cmd)
  local ok = os.execute("cd " .. dir .. " && (" .. cmd .. ") >/dev/null 2>&1")
  if not ok then error("failed: " .. cmd) end
end

local EC = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
sh("openssl req -x509 " .. EC .. " -keyout ca.key -out ca.crt -days 2 -subj /CN=moonbeam-test-ca")
sh("openssl req " .. EC .. " -keyout server.key -out server.csr -subj /CN=localhost")
sh("printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext")
sh("openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile ext")
sh("openssl req -x509 " .. EC .. " -keyout self.key -out self.crt -days 2 -subj /CN=localhost" ..
   " -addext subjectAltName=DNS:localhost,IP:127.0.0.1")
local CA, CERT, KEY = dir .. "/ca.crt", dir .. "/server.crt", dir .. "/server.key"
local SELF, SELFKEY = dir .. "/self.crt", dir .. "/self.key"

local function run(fn) return mb.run(fn, {schedulers = 2}) end

local function recv(match, ms)
  local m, err = mb.receive(match, ms or 5000)
  if err then error("timed out waiting for a message", 2) end
  return m
end

local function tagged(tag, sock)
  return function(m) return type(m) == "table" and m[1] == tag and (sock == nil or m[2] == sock) end
end

-- A TLS server on a free port whose acceptor (another process) echoes in
-- active mode and reports what it saw; returns the port.
local function server(opts)
  opts = opts or {}
  opts.certfile = opts.certfile or CERT
  opts.keyfile = opts.keyfile or KEY
  opts.address = "127.0.0.1"
  local l, lerr = tls.listen(0, opts)
  assert(l, lerr)
  local _, port = tls.sockname(l)
  local me = mb.self()
  mb.spawn_opt({scheduler = 2}, function()
    while true do
      local s, err = tls.accept(l, 5000)
      mb.send(me, {"accepted", s ~= nil, err, s and tls.info(s)})
      if s then
        while true do
          local m = mb.receive(nil, 5000)
          if not m or m[1] ~= "ssl" then break end
          tls.send(s, "echo: " .. m[3])
        end
        tls.close(s)
      end
    end
  end)
  return port
end

describe("moonbeam.tls", function()
  it("connects with verification against a CA, echoes, and tags messages 'ssl'", function()
    run(function()
      local port = server()
      local c = assert(tls.connect("localhost", port, {cafile = CA, active = true}, 5000))
      local a = recv(tagged("accepted"))
      assert.is_true(a[2])
      assert.are.equal("localhost", a[4].server_name) -- SNI reached the server
      assert.matches("^TLSv1", tls.info(c).version)
      assert(tls.send(c, "hello"))
      assert.are.equal("echo: hello", recv(tagged("ssl", c))[3])
      -- passive mode and exact lengths work as over TCP
      assert(tls.setopts(c, {active = false}))
      assert(tls.send(c, "abc"))
      assert.are.equal("echo: abc", tls.recv(c, 9, 5000))
      tls.close(c) -- the one acceptor goes back to accepting
      -- a literal address is checked against the certificate's IP entry
      local c2 = assert(tls.connect("127.0.0.1", port, {cafile = CA, active = false}, 5000))
      recv(tagged("accepted"))
      tls.close(c2)
    end)
  end)

  it("rejects a certificate it cannot verify (self-signed), unless verify = false", function()
    run(function()
      local port = server({certfile = SELF, keyfile = SELFKEY})
      local c, err = tls.connect("localhost", port, {cafile = CA}, 5000)
      assert.is_nil(c)
      assert.matches("certificate verify failed", err)
      local a = recv(tagged("accepted"))
      assert.is_false(a[2]) -- the server's accept saw the failed handshake
      local ok = assert(tls.connect("localhost", port, {verify = false, active = false}, 5000))
      assert(tls.send(ok, "x"))
      recv(tagged("accepted"))
      tls.close(ok)
    end)
  end)

  it("checks the host name: a certificate for localhost is not one for another name", function()
    run(function()
      local port = server()
      local c, err = tls.connect("127.0.0.1", port, {cafile = CA, server_name = "other.example"}, 5000)
      assert.is_nil(c)
      assert.matches("certificate verify failed", err)
    end)
  end)

  it("negotiates ALPN on both sides", function()
    run(function()
      local port = server({alpn = {"http/1.1", "echo/1"}})
      local c = assert(tls.connect("localhost", port, {cafile = CA, alpn = {"h2", "echo/1"}, active = false}, 5000))
      local a = recv(tagged("accepted"))
      assert.are.equal("echo/1", a[4].alpn)
      assert.are.equal("echo/1", tls.info(c).alpn)
      tls.close(c)
    end)
  end)

  it("reports ssl_closed when the peer closes, and frames packets over TLS", function()
    run(function()
      local l = assert(tls.listen(0, {certfile = CERT, keyfile = KEY, address = "127.0.0.1", packet = 2}))
      local _, port = tls.sockname(l)
      local me = mb.self()
      mb.spawn(function()
        local s = assert(tls.accept(l, 5000))
        local m = recv(tagged("ssl", s))
        tls.send(s, m[3] .. "!")
        tls.close(s)
        mb.send(me, "server done")
      end)
      local c = assert(tls.connect("localhost", port, {cafile = CA, packet = 2}, 5000))
      assert(tls.send(c, string.rep("p", 1000)))
      assert.are.equal(1001, #recv(tagged("ssl", c))[3])
      recv(tagged("ssl_closed", c))
      recv(function(m) return m == "server done" end)
      tls.close(c)
      tls.close(l)
    end)
  end)

  it("bad input: a plain TCP peer, missing certificates, closed sockets", function()
    run(function()
      local l, err = tls.listen(0, {address = "127.0.0.1"})
      assert.is_nil(l)
      assert.matches("certfile", err)
      local bad, why = tls.listen(0, {certfile = dir .. "/nope.crt", keyfile = KEY})
      assert.is_nil(bad)
      assert.matches("certfile", why)
      -- a TLS client against a plain TCP server that answers garbage
      local plain = assert(tcp.listen(0, {address = "127.0.0.1", active = false}))
      local _, port = tcp.sockname(plain)
      mb.spawn(function()
        local s = tcp.accept(plain, 5000)
        tcp.send(s, "HTTP/1.0 400 nope\r\n\r\n")
        tcp.close(s)
      end)
      local c, e = tls.connect("localhost", port, {cafile = CA}, 5000)
      assert.is_nil(c)
      assert.is_string(e)
      -- a handshake that never comes times out
      mb.spawn(function() local s = tcp.accept(plain, 5000) mb.receive(nil, 2000) tcp.close(s) end)
      local t0 = mb.clock()
      local c2, e2 = tls.connect("localhost", port, {cafile = CA}, 200)
      assert.is_nil(c2)
      assert.are.equal("timeout", e2)
      assert.is_true(mb.clock() - t0 < 2)
      tcp.close(plain)
    end)
  end)

  teardown(function() os.execute("rm -rf " .. dir) end)
end)
