-- moonbeam.http.static: files with ETag, Last-Modified, Range; through the
-- test adapter and through the server.
package.path = package.path .. ";spec/support/?.lua"
local t = require "moonbeam.http.test"
local static = require "moonbeam.http.static"
local plug = require "moonbeam.http.plug"

local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir .. "/sub")
local f = io.open(dir .. "/hello.txt", "wb") f:write("0123456789") f:close()
f = io.open(dir .. "/sub/page.html", "wb") f:write("<h1>hi</h1>") f:close()

local app = plug.pipeline({static.plug({at = "/static", from = dir, max_age = 60}),
  function(conn) return conn:text(404, "fallthrough") end})

describe("static files", function()
  it("serves a file with content type, ETag, Last-Modified and caching", function()
    local c = t.call(app, "GET", "/static/hello.txt")
    assert.equal(200, c.sent.status)
    assert.equal("0123456789", c.sent.body)
    assert.equal("text/plain; charset=utf-8", c.sent.headers["content-type"])
    assert.is_string(c.sent.headers.etag)
    assert.matches("GMT$", c.sent.headers["last-modified"])
    assert.equal("public, max-age=60", c.sent.headers["cache-control"])
    c = t.call(app, "GET", "/static/sub/page.html")
    assert.equal("<h1>hi</h1>", c.sent.body)
    assert.matches("^text/html", c.sent.headers["content-type"])
  end)

  it("answers 304 to a matching If-None-Match or If-Modified-Since", function()
    local c = t.call(app, "GET", "/static/hello.txt")
    local etag, lm = c.sent.headers.etag, c.sent.headers["last-modified"]
    assert.equal(304, t.call(app, "GET", "/static/hello.txt", {headers = {["if-none-match"] = etag}}).sent.status)
    assert.equal(304, t.call(app, "GET", "/static/hello.txt", {headers = {["if-modified-since"] = lm}}).sent.status)
    assert.equal(200, t.call(app, "GET", "/static/hello.txt", {headers = {["if-none-match"] = '"other"'}}).sent.status)
  end)

  it("serves byte ranges with 206 and refuses unsatisfiable ones with 416", function()
    local c = t.call(app, "GET", "/static/hello.txt", {headers = {range = "bytes=2-4"}})
    assert.equal(206, c.sent.status)
    assert.equal("234", c.sent.body)
    assert.equal("bytes 2-4/10", c.sent.headers["content-range"])
    c = t.call(app, "GET", "/static/hello.txt", {headers = {range = "bytes=-3"}})
    assert.equal("789", c.sent.body)
    c = t.call(app, "GET", "/static/hello.txt", {headers = {range = "bytes=7-"}})
    assert.equal("789", c.sent.body)
    c = t.call(app, "GET", "/static/hello.txt", {headers = {range = "bytes=20-30"}})
    assert.equal(416, c.sent.status)
    assert.equal("bytes */10", c.sent.headers["content-range"])
  end)

  it("refuses .. and passes unknown files and other methods through", function()
    assert.equal(400, t.call(app, "GET", "/static/../etc/passwd").sent.status)
    assert.equal(400, t.call(app, "GET", "/static/sub/%2e%2e/hello.txt").sent.status)
    assert.equal("fallthrough", t.call(app, "GET", "/static/missing.txt").sent.body)
    assert.equal("fallthrough", t.call(app, "GET", "/static/sub").sent.body)
    assert.equal("fallthrough", t.call(app, "POST", "/static/hello.txt").sent.body)
    assert.equal("fallthrough", t.call(app, "GET", "/other/hello.txt").sent.body)
  end)

  it("sends files and ranges over a real connection", function()
    local H = require "http_helper"
    local tcp = require "moonbeam.tcp"
    -- a handler built from a function whose upvalue (the directory) can be sent
    local d = dir
    local out = H.with_server({}, function(port)
      local s = H.connect(port)
      tcp.send(s, "GET /static/hello.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=1-3\r\n\r\n" ..
        "HEAD /static/hello.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /static/hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
      return H.read_until(s, "0123456789")
    end, function(conn)
      return require("moonbeam.http.static").plug({at = "/static", from = d})(conn)
    end)
    assert.matches("^HTTP/1.1 206 .-content%-length: 3\r\n\r\n123HTTP/1.1 200 .-content%-length: 10\r\n\r\n" ..
      "HTTP/1.1 200 .-\r\n\r\n0123456789$", out)
  end)
end)
