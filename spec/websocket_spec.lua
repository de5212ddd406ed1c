-- WebSocket framing: core.http.ws (csrc/http/ws.c over libwslay), a client and a
-- server codec talking through memory.
local core = require("moonbeam.core")
local http = core.http

local function pair(server_limits, client_limits)
  return http.ws(false, server_limits), http.ws(true, client_limits)
end

-- Moves c's output into s and returns s's events (and failure code).
local function pass(from, to)
  local out = from:output()
  if not out then return {} end
  return to:feed(out)
end

describe("websocket codec", function()
  it("carries text and binary messages both ways, masked from the client", function()
    local s, c = pair()
    c:send("text", "héllo")
    c:send("binary", "\0\1\2")
    local out = c:output()
    assert.equal(0x80, out:byte(2) & 0x80)          -- client frames are masked
    local ev = s:feed(out)
    assert.same({{"text", "héllo"}, {"binary", "\0\1\2"}}, ev)
    s:send("text", "back")
    local sout = s:output()
    assert.equal(0, sout:byte(2) & 0x80)            -- server frames are not
    assert.same({{"text", "back"}}, c:feed(sout))
  end)

  it("reassembles a message split into fragments with a ping between them", function()
    local s = http.ws(false)
    -- text "Hel" (no FIN), ping "p", continuation "lo" (FIN); client frames with zero masks
    local bytes = "\x01\x83\0\0\0\0Hel" .. "\x89\x81\0\0\0\0p" .. "\x80\x82\0\0\0\0lo"
    local ev = s:feed(bytes)
    assert.same({{"ping", "p"}, {"text", "Hello"}}, ev)
    -- the pong was queued by the codec
    assert.equal("\x8a\x01p", s:output())
  end)

  it("parses input fed one byte at a time", function()
    local s, c = pair()
    c:send("binary", ("z"):rep(70000))              -- 64-bit length form
    local out = c:output()
    local got = {}
    for i = 1, #out, 997 do
      for _, e in ipairs(s:feed(out:sub(i, i + 996))) do got[#got + 1] = e end
    end
    assert.equal(1, #got)
    assert.equal(70000, #got[1][2])
  end)

  it("carries 1 MB messages", function()
    local s, c = pair()
    local big = core.crypto.random(1 << 20)
    c:send("binary", big)
    local ev = pass(c, s)
    assert.equal(big, ev[1][2])
  end)

  it("closes with 1007 on a text message that is not UTF-8", function()
    for _, bad in ipairs({"\xff", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "ab\xe2\x82"}) do
      local s, c = pair()
      c:send("text", bad)
      local ev, code = pass(c, s)
      assert.equal(0, #ev)
      assert.equal(1007, code)
      local close = c:feed(s:output())
      assert.same({"close", 1007, ""}, close[1])
    end
    assert.is_true(http.utf8_valid("plain ascii, é, 漢字, 😀"))
  end)

  it("closes with 1009 on a frame over max_frame and a message over max_message", function()
    local s, c = pair({max_frame = 1000})
    c:send("binary", ("x"):rep(1001))
    local _, code = pass(c, s)
    assert.equal(1009, code)
    assert.same({"close", 1009, ""}, c:feed(s:output())[1])

    s = http.ws(false, {max_message = 1000, max_frame = 600})
    -- two fragments of 600: each frame fits, the message does not
    local frame = function(op, fin, data)
      return string.char((fin and 0x80 or 0) | op, 0x80 | 126, #data >> 8, #data & 255, 0, 0, 0, 0) .. data
    end
    local _, code2 = s:feed(frame(2, false, ("y"):rep(600)) .. frame(0, true, ("y"):rep(600)))
    assert.equal(1009, code2)
  end)

  it("closes with 1002 on a protocol error (unmasked client frame)", function()
    local s = http.ws(false)
    local _, code = s:feed("\x81\x02hi")
    assert.equal(1002, code)
    assert.equal("\x88\x02\x03\xea", s:output())
  end)

  it("runs the close handshake: code and reason, echoed, then done", function()
    local s, c = pair()
    assert.is_true(s:close(1001, "going away"))
    assert.is_false(s:done())
    local ev = pass(s, c)
    assert.same({"close", 1001, "going away"}, ev[1])
    assert.is_true(c:close_received())
    ev = pass(c, s)                                 -- the client's echo
    assert.equal("close", ev[1][1])
    assert.is_true(s:done())
    assert.is_true(c:done())
    assert.is_nil(select(1, s:send("text", "late")))
  end)

  it("reports a close without a status code as 1005", function()
    local s = http.ws(false)
    local ev = s:feed("\x88\x80\0\0\0\0")
    assert.same({"close", 1005, ""}, ev[1])
  end)
end)

-- The server side over real sockets: moonbeam's client, raw frames and Node's ws.
package.path = package.path .. ";spec/support/?.lua"
local mb = require "moonbeam"
local tcp = require "moonbeam.tcp"
local websocket = require "moonbeam.websocket"
local H = require "http_helper"

-- Runs fn(port) with the spec app served and a process registered as
-- "ws_spec_observer" receiving the handler's terminate reports (passed as
-- `terminated()`, which waits for the next one).
local function with_ws(fn, opts)
  return H.with_server(opts or {}, function(port)
    mb.register("ws_spec_observer", mb.self())
    local function terminated(timeout)
      local m = mb.receive(function(x) return type(x) == "table" and x[1] == "terminated" end, timeout or 5000)
      return m and m[2], m and m[3]
    end
    return fn(port, terminated)
  end)
end

local function handshake(port, path, extra)
  local s = H.connect(port)
  tcp.send(s, "GET " .. (path or "/ws") .. " HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n" ..
    "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" ..
    (extra or "") .. "\r\n")
  return s, H.read_until(s, "\r\n\r\n")
end

-- A masked client frame (zero mask) with opcode, fin and payload.
local function frame(op, fin, data)
  local n = #data
  local len
  if n < 126 then len = string.char(0x80 | n)
  elseif n < 65536 then len = string.char(0x80 | 126, n >> 8, n & 255)
  else len = string.char(0x80 | 127, 0, 0, 0, 0, (n >> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255) end
  return string.char((fin and 0x80 or 0) | op) .. len .. "\0\0\0\0" .. data
end

describe("websocket server", function()
  it("accepts the handshake with RFC 6455's accept key", function()
    local head = with_ws(function(port)
      local s, h = handshake(port)
      tcp.close(s)
      return h
    end)
    assert.matches("^HTTP/1.1 101 Switching Protocols\r\n", head)
    assert.matches("sec%-websocket%-accept: s3pPLMBiTxaQ9kYGzzhZRbK%+xOo=\r\n", head)
  end)

  it("refuses a bad handshake (400), an old version (426) and a foreign origin (403)", function()
    local a, b, c = with_ws(function(port)
      local x = H.raw(port, "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
        "Sec-WebSocket-Version: 13\r\n\r\n")
      local y = H.raw(port, "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
        "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
      local s, h = handshake(port, "/ws?origin=http://good", "Origin: http://evil\r\n")
      tcp.close(s)
      return x, y, h
    end)
    assert.matches("^HTTP/1.1 400 ", a)
    assert.matches("^HTTP/1.1 426 .-sec%-websocket%-version: 13", b)
    assert.matches("^HTTP/1.1 403 ", c)
  end)

  it("echoes text and binary, 1 MB messages, and calls handle_info", function()
    local r = with_ws(function(port)
      local c = assert(websocket.connect("ws://127.0.0.1:" .. port .. "/ws?prefix=re:"))
      local res = {}
      c:send("text", "hi") res.text = c:recv(3000)
      c:send("binary", "\0\1\2") res.binary = c:recv(3000)
      local big = ("m"):rep(1 << 20)
      c:send("binary", big) res.big = c:recv(5000)[2] == big
      c:send("text", "info") res.info = c:recv(3000)
      c:close()
      return res
    end)
    assert.same({"text", "re:hi"}, r.text)
    assert.same({"binary", "\0\1\2"}, r.binary)
    assert.is_true(r.big)
    assert.same({"text", "info:hello from info"}, r.info)
  end)

  it("reassembles fragmented frames, answers ping with pong, and runs the close handshake", function()
    local out, reason = with_ws(function(port, terminated)
      local s = handshake(port)
      tcp.send(s, frame(1, false, "frag") .. frame(9, true, "p1") .. frame(0, false, "men") ..
        frame(0, true, "ted"))
      local got = H.read_until(s, "fragmented")
      tcp.send(s, frame(8, true, "\3\232bye"))
      local rest = H.read_all(s, 3000)
      return got .. rest, terminated()
    end)
    assert.matches("^\x8a\x02p1", out)                       -- the pong first
    assert.matches("\x81\x0afragmented", out)
    assert.matches("\x88\x05\x03\xe8bye$", out)              -- the close echoed
    assert.equal("normal", reason)
  end)

  it("closes with 1009 on a message over max_message, 1007 on bad UTF-8", function()
    local a, ra, b, rb = with_ws(function(port, terminated)
      local s = handshake(port, "/ws?max_message=1000")
      tcp.send(s, frame(2, true, ("x"):rep(2000)))
      local x = H.read_all(s, 3000)
      local r1 = terminated()
      local s2 = handshake(port)
      tcp.send(s2, frame(1, true, "\xff\xfe"))
      local y = H.read_all(s2, 3000)
      return x, r1, y, terminated()
    end)
    assert.equal("\x88\x02\x03\xf1", a)
    assert.equal('{"error", 1009}', ra)
    assert.equal("\x88\x02\x03\xef", b)
    assert.equal('{"error", 1007}', rb)
  end)

  it("closes an idle connection after idle_timeout and terminates with timeout", function()
    local frames, reason = with_ws(function(port, terminated)
      local c = assert(websocket.connect("ws://127.0.0.1:" .. port .. "/ws?idle=300"))
      local f = c:recv(3000)
      return f, terminated()
    end)
    assert.equal("close", frames[1])
    assert.equal(1000, frames[2])
    assert.equal("timeout", reason)
  end)

  it("stops from the handler with a close frame, and reports a crash with 1011", function()
    local a, ra, b, rb = with_ws(function(port, terminated)
      local c = assert(websocket.connect("ws://127.0.0.1:" .. port .. "/ws"))
      c:send("text", "stop")
      local f1 = c:recv(3000)
      local r1 = terminated()
      local c2 = assert(websocket.connect("ws://127.0.0.1:" .. port .. "/ws"))
      c2:send("text", "crash")
      local f2 = c2:recv(3000)
      return f1, r1, f2, terminated()
    end)
    assert.same({"close", 1000, ""}, a)
    assert.equal("stop", ra)
    assert.same({"close", 1011, ""}, b)
    assert.matches("crash", rb)
  end)

  it("never buffers without bound for a client that stops reading", function()
    local r = with_ws(function(port, terminated)
      local c = assert(websocket.connect("ws://127.0.0.1:" .. port .. "/ws?hwm=262144"))
      -- ask for 400 frames of 64 KB (25 MB) and read none of them for a while
      c:send("text", "flood:400")
      mb.sleep(1500)
      local total_mem = 0
      for _, pid in ipairs(mb.processes()) do
        local info = mb.info(pid)
        if info and info.memory then total_mem = math.max(total_mem, info.memory) end
      end
      -- now read everything: it all arrives, in order
      local got = 0
      while got < 400 do
        local f = c:recv(10000)
        if not f then break end
        if f[1] == "binary" then got = got + 1 end
      end
      c:close()
      terminated()
      return {max_proc_mem = total_mem, got = got}
    end)
    assert.equal(400, r.got)
    assert.is_true(r.max_proc_mem < 8 * 1024 * 1024, "a process held " .. r.max_proc_mem .. " bytes")
  end)

  it("talks to Node's ws package: text, binary, 1 MB, fragments, ping, close", function()
    local node_ws = io.open("spec/support/node_modules/ws/package.json")
    assert(node_ws, "npm's ws is missing: run `npm install` in spec/support (make check does)")
    node_ws:close()
    local line = with_ws(function(port)
      local file = os.tmpname()
      os.execute(("env -u LD_PRELOAD node spec/support/ws_client.js ws://127.0.0.1:%d/ws > %s 2>&1 &"):format(port, file))
      local out = ""
      for _ = 1, 200 do
        mb.sleep(100)
        local f = io.open(file)
        out = f:read("a")
        f:close()
        if out:find("\n") then break end
      end
      os.remove(file)
      return out
    end)
    local r = require("moonbeam.http.json").decode(line)
    assert.is_table(r, line)
    assert.is_nil(r.error)
    assert.equal("hello", r.text)
    assert.equal("0,1,2,255", r.binary)
    assert.is_true(r.big)
    assert.equal("fragmented", r.fragmented)
    assert.equal("pingdata", r.pong)
    assert.equal("5", r.count)
    assert.equal(4000, r.close_code)
  end)
end)
