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
