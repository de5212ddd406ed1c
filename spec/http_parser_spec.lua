-- core.http.parser (csrc/http/parser.c over libhttp-parser) and core.crypto.
local core = require("moonbeam.core")
local http, crypto = core.http, core.crypto

-- Splits events into {heads, bodies (per message), dones}.
local function collect(evs, acc)
  acc = acc or {heads = {}, bodies = {}, done = 0}
  for _, e in ipairs(evs) do
    if type(e) == "table" then
      acc.heads[#acc.heads + 1] = e
      acc.bodies[#acc.heads] = ""
    elseif type(e) == "string" then
      acc.bodies[#acc.heads] = acc.bodies[#acc.heads] .. e
    else
      acc.done = acc.done + 1
    end
  end
  return acc
end

describe("http parser", function()
  it("parses a request head: method, target, version, lower-cased headers", function()
    local p = http.parser("request")
    local ev = p:feed("GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example\r\nX-Thing: One\r\n\r\n")
    assert.is_nil(ev.error)
    local r = collect(ev)
    assert.equal(1, #r.heads)
    assert.equal(1, r.done)
    local h = r.heads[1]
    assert.equal("GET", h.method)
    assert.equal("/a/b?x=1&y=2", h.url)
    assert.equal("1.1", h.version)
    assert.is_true(h.keep_alive)
    assert.equal("example", h.headers.host)
    assert.equal("One", h.headers["x-thing"])
    assert.is_nil(h.content_length)
    assert.is_true(p:idle())
  end)

  it("joins repeated headers (cookies with '; ')", function()
    local h = collect(http.parser():feed(
      "GET / HTTP/1.1\r\nAccept: a\r\nAccept: b\r\nCookie: x=1\r\nCookie: y=2\r\n\r\n")).heads[1]
    assert.equal("a, b", h.headers.accept)
    assert.equal("x=1; y=2", h.headers.cookie)
  end)

  it("reports pipelined requests in order, with their bodies", function()
    local p = http.parser("request")
    local r = collect(p:feed("POST /1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc" ..
      "GET /2 HTTP/1.1\r\n\r\nPOST /3 HTTP/1.1\r\nContent-Length: 2\r\n\r\nxy"))
    assert.same({"/1", "/2", "/3"}, {r.heads[1].url, r.heads[2].url, r.heads[3].url})
    assert.same({"abc", "", "xy"}, r.bodies)
    assert.equal(3, r.done)
  end)

  it("gives the same result when fed one byte at a time", function()
    local req = "PUT /up HTTP/1.1\r\nHost: h\r\nLong-Header-Name: some value here\r\n" ..
      "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    local p = http.parser("request")
    local acc
    for i = 1, #req do
      local ev = p:feed(req:sub(i, i))
      assert.is_nil(ev.error)
      acc = collect(ev, acc)
    end
    assert.equal(1, #acc.heads)
    assert.is_true(acc.heads[1].chunked)
    assert.equal("some value here", acc.heads[1].headers["long-header-name"])
    assert.equal("hello world", acc.bodies[1])
    assert.equal(1, acc.done)
  end)

  it("says when the connection is not kept alive", function()
    local h = collect(http.parser():feed("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")).heads[1]
    assert.is_false(h.keep_alive)
    h = collect(http.parser():feed("GET / HTTP/1.0\r\n\r\n")).heads[1]
    assert.is_false(h.keep_alive)
    assert.equal("1.0", h.version)
    h = collect(http.parser():feed("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")).heads[1]
    assert.is_true(h.keep_alive)
  end)

  it("stops at an upgrade and hands back the bytes that follow", function()
    local ev = http.parser():feed("GET /ws HTTP/1.1\r\nConnection: Upgrade\r\n" ..
      "Upgrade: websocket\r\n\r\n\x81\x05hello")
    local h = collect(ev).heads[1]
    assert.is_true(h.upgrade)
    assert.equal("\x81\x05hello", ev.upgrade)
  end)

  it("rejects malformed requests with 400 and refuses more input", function()
    local p = http.parser()
    local ev = p:feed("GARBAGE / HTTP/1.1\r\n\r\n")
    assert.equal(400, ev.error)
    assert.is_string(ev.reason)
    assert.equal(400, p:feed("GET / HTTP/1.1\r\n\r\n").error)
    assert.equal(400, http.parser():feed("GET / HTTP/1.1\r\nBad Header\r\n\r\n").error)
    assert.equal(400, http.parser():feed("GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n").error)
    assert.equal(400, http.parser():feed(
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").error)
  end)

  it("answers 413 to a Content-Length over max_body before any body arrives", function()
    local p = http.parser("request", {max_body = 100})
    local ev = p:feed("POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n")
    assert.equal(413, ev.error)
    assert.equal(0, #collect(ev).heads)
    -- exactly the limit is fine
    ev = http.parser("request", {max_body = 100}):feed(
      "POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n" .. ("x"):rep(100))
    assert.is_nil(ev.error)
    assert.equal(100, #collect(ev).bodies[1])
  end)

  it("answers 413 when chunks add up to more than max_body", function()
    local p = http.parser("request", {max_body = 10})
    local ev = p:feed("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n")
    assert.is_nil(ev.error)
    ev = p:feed("8\r\n12345678\r\n")
    assert.equal(413, ev.error)
  end)

  it("answers 431 to a head larger than max_head", function()
    local p = http.parser("request", {max_head = 1024})
    local ev = p:feed("GET / HTTP/1.1\r\nX-Big: " .. ("a"):rep(2000) .. "\r\n\r\n")
    assert.equal(431, ev.error)
    -- a long request line counts too
    ev = http.parser("request", {max_head = 1024}):feed("GET /" .. ("a"):rep(2000) .. " HTTP/1.1\r\n")
    assert.equal(431, ev.error)
    -- and a head arriving in small pieces
    p = http.parser("request", {max_head = 1024})
    p:feed("GET / HTTP/1.1\r\n")
    local got
    for _ = 1, 200 do
      ev = p:feed("X-A: 0123456789\r\n")
      if ev.error then got = ev.error break end
    end
    assert.equal(431, got)
  end)

  it("answers 431 to more headers than max_headers", function()
    local lines = {}
    for i = 1, 11 do lines[i] = "H" .. i .. ": v\r\n" end
    local ev = http.parser("request", {max_headers = 10}):feed(
      "GET / HTTP/1.1\r\n" .. table.concat(lines) .. "\r\n")
    assert.equal(431, ev.error)
    ev = http.parser("request", {max_headers = 11}):feed(
      "GET / HTTP/1.1\r\n" .. table.concat(lines) .. "\r\n")
    assert.is_nil(ev.error)
  end)

  it("parses responses: status, a length-less body ended by EOF, HEAD replies", function()
    local p = http.parser("response")
    local r = collect(p:feed("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: a=1\r\n" ..
      "Set-Cookie: b=2\r\n\r\nok"))
    assert.equal(200, r.heads[1].status)
    assert.equal("a=1\nb=2", r.heads[1].headers["set-cookie"])
    assert.equal("ok", r.bodies[1])
    p = http.parser("response")
    r = collect(p:feed("HTTP/1.0 200 OK\r\n\r\nsome"))
    assert.equal(0, r.done)
    r = collect(p:eof(), r)
    assert.equal("some", r.bodies[1])
    assert.equal(1, r.done)
    p = http.parser("response")
    p:no_body(true)
    r = collect(p:feed("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"))
    assert.equal(1, r.done)
    assert.equal("", r.bodies[1])
  end)

  it("reports a response cut short by EOF as an error", function()
    local p = http.parser("response")
    p:feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert.equal(400, p:eof().error)
  end)
end)

describe("crypto", function()
  it("computes the WebSocket accept key of RFC 6455's example", function()
    local key = "dGhlIHNhbXBsZSBub25jZQ=="
    assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
      crypto.base64(crypto.sha1(key .. "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")))
  end)

  it("computes HMAC-SHA256 (RFC 4231 test case 2)", function()
    local mac = crypto.hmac("sha256", "Jefe", "what do ya want for nothing?")
    assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
      (mac:gsub(".", function(c) return ("%02x"):format(c:byte()) end)))
  end)

  it("seals and opens with AES-256-GCM, and refuses forged data", function()
    local key, iv = crypto.random(32), crypto.random(12)
    local sealed = crypto.seal(key, iv, "secret", "aad")
    assert.equal(#"secret" + 16, #sealed)
    assert.equal("secret", crypto.open(key, iv, sealed, "aad"))
    assert.is_nil(crypto.open(key, iv, sealed, "other"))
    local bad = sealed:sub(1, 1) .. string.char(sealed:byte(2) ~ 1) .. sealed:sub(3)
    assert.is_nil(crypto.open(key, iv, bad, "aad"))
    assert.is_nil(crypto.open(crypto.random(32), iv, sealed, "aad"))
    assert.is_nil(crypto.open(key, iv, "short", "aad"))
    assert.has_error(function() crypto.seal("short", iv, "x") end)
  end)

  it("encodes base64 both alphabets and rejects bad input", function()
    for _, s in ipairs({"", "a", "ab", "abc", "abcd", "\255\254\253\252"}) do
      assert.equal(s, crypto.unbase64(crypto.base64(s)))
      assert.equal(s, crypto.unbase64(crypto.base64(s, true), true))
      assert.is_nil(crypto.base64(s, true):find("[=+/]"))
    end
    assert.equal("YWI=", crypto.base64("ab"))
    assert.is_nil(crypto.unbase64("a$b="))
  end)

  it("derives keys with PBKDF2 and compares in constant time", function()
    local k = crypto.pbkdf2("secret", "salt", 1000, 32)
    assert.equal(32, #k)
    assert.equal(k, crypto.pbkdf2("secret", "salt", 1000, 32))
    assert.not_equal(k, crypto.pbkdf2("secret", "pepper", 1000, 32))
    assert.is_true(crypto.equal("abc", "abc"))
    assert.is_false(crypto.equal("abc", "abd"))
    assert.is_false(crypto.equal("abc", "ab"))
    assert.equal(16, #crypto.random(16))
    assert.not_equal(crypto.random(16), crypto.random(16))
  end)
end)
