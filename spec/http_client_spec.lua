-- moonbeam.http.request against moonbeam's own server on loopback.
package.path = package.path .. ";spec/support/?.lua"
local mb = require "moonbeam"
local http = require "moonbeam.http"
local H = require "http_helper"

local function url(port, path) return "http://127.0.0.1:" .. port .. path end

describe("http client", function()
  it("gets, posts JSON and reads headers", function()
    local a, b = H.with_server({}, function(port)
      return http.request("GET", url(port, "/")),
        http.request("POST", url(port, "/json"), {json = {x = 1, name = "moon"}})
    end)
    assert.equal(200, a.status)
    assert.equal("hello", a.body)
    assert.equal("5", a.headers["content-length"])
    assert.equal(200, b.status)
    assert.same({x = 1, name = "moon"}, http.json.decode(b.body))
  end)

  it("keeps connections alive per host and replaces one the server closed", function()
    local p1, p2, p3 = H.with_server({idle_timeout = 300}, function(port)
      local r1 = http.request("GET", url(port, "/pid"))
      local r2 = http.request("GET", url(port, "/pid"))
      mb.sleep(700)                                  -- the server closes the idle connection
      local r3 = http.request("GET", url(port, "/pid"))
      http.client.close_idle()
      return r1.body, r2.body, r3 and r3.body
    end)
    assert.equal(p1, p2)                             -- same connection process
    assert.is_string(p3)
    assert.not_equal(p1, p3)
  end)

  it("streams a chunked body piece by piece", function()
    local pieces, res = H.with_server({}, function(port)
      local got = {}
      local r = http.request("GET", url(port, "/stream"), {stream = function(p) got[#got + 1] = p end})
      return got, r
    end)
    assert.equal(200, res.status)
    assert.is_nil(res.body)
    assert.equal("part1;part2;part3;", table.concat(pieces))
  end)

  it("times out, reports refused connections, follows redirects on request", function()
    local t, r0, r1, refused = H.with_server({}, function(port)
      local _, err = http.request("GET", url(port, "/slow?ms=2000"), {timeout = 300})
      local no = http.request("GET", url(port, "/redir"))
      local yes = http.request("GET", url(port, "/redir"), {redirects = 3})
      local _, rerr = http.request("GET", "http://127.0.0.1:1/", {timeout = 1000})
      return err, no, yes, rerr
    end)
    assert.equal("timeout", t)
    assert.equal(302, r0.status)
    assert.equal("/n/redirected", r0.headers.location)
    assert.equal("n=redirected", r1.body)
    assert.is_string(refused)
  end)

  it("sends HEAD without waiting for a body; parses http and https URLs", function()
    local res = H.with_server({}, function(port) return http.request("HEAD", url(port, "/big")) end)
    assert.equal(200, res.status)
    assert.equal("200000", res.headers["content-length"])
    assert.equal("", res.body)
    assert.same({"example.com", 443, "/a?b=1", true}, {http.client.parse_url("https://example.com/a?b=1#frag")})
    assert.same({"h", 8080, "/", false}, {http.client.parse_url("http://h:8080")})
    assert.same({"::1", 80, "/x", false}, {http.client.parse_url("http://[::1]/x")})
    assert.is_nil((http.client.parse_url("ftp://h/")))
  end)
end)
