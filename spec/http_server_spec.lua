-- moonbeam.http.server over real sockets on loopback: raw bytes for each
-- feature and limit, and curl.
package.path = package.path .. ";spec/support/?.lua"
local mb = require "moonbeam"
local tcp = require "moonbeam.tcp"
local H = require "http_helper"

local function get(path, extra)
  return "GET " .. path .. " HTTP/1.1\r\nHost: t\r\n" .. (extra or "") .. "\r\n"
end

describe("http server", function()
  it("answers a GET with status, date and content-length", function()
    local out, closed = H.with_server({}, function(port)
      local s = H.connect(port)
      tcp.send(s, get("/"))
      local r = H.read_until(s, "hello")
      return r, select(2, H.read_all(s, 300))
    end)
    assert.matches("^HTTP/1.1 200 OK\r\n", out)
    assert.matches("\r\ncontent%-length: 5\r\n", out)
    assert.matches("\r\ndate: %a%a%a, ", out)
    assert.is_false(closed)                       -- kept alive
  end)

  it("serves keep-alive requests on one connection process", function()
    local a, b = H.with_server({}, function(port)
      local s = H.connect(port)
      tcp.send(s, get("/pid"))
      local r1 = H.read_until(s, "<[%d.]+>")
      tcp.send(s, get("/pid"))
      local r2 = H.read_until(s, "<[%d.]+>")
      tcp.close(s)
      return r1:match("<[%d.]+>"), r2:match("<[%d.]+>")
    end)
    assert.is_string(a)
    assert.equal(a, b)
  end)

  it("answers pipelined requests in order", function()
    local out = H.with_server({}, function(port)
      local s = H.connect(port)
      tcp.send(s, get("/slow?ms=200") .. get("/n/2") .. get("/n/3"))
      return H.read_until(s, "n=3")
    end)
    local rs = H.responses(out)
    assert.equal(3, #rs)
    assert.same({"slow done", "n=2", "n=3"}, {rs[1].body, rs[2].body, rs[3].body})
  end)

  it("reads chunked request bodies and streams chunked responses", function()
    local echo, stream = H.with_server({}, function(port)
      local s = H.connect(port)
      tcp.send(s, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" ..
        "5\r\nhello\r\n")
      mb.sleep(50)
      tcp.send(s, "6\r\n world\r\n0\r\n\r\n")
      local r1 = H.read_until(s, "hello world")
      tcp.send(s, get("/stream"))
      local r2 = H.read_until(s, "0\r\n\r\n$")
      return r1, r2
    end)
    assert.equal("hello world", H.responses(echo)[1].body)
    assert.matches("transfer%-encoding: chunked", stream)
    assert.equal("part1;part2;part3;", H.responses(stream)[1].body)
  end)

  it("sends 100 Continue when the handler reads the body, and closes if it does not", function()
    local cont, rest, ignored, closed = H.with_server({}, function(port)
      local s = H.connect(port)
      tcp.send(s, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
      local c = H.read_until(s, "\r\n\r\n")
      tcp.send(s, "body")
      local r = H.read_until(s, "body")
      local s2 = H.connect(port)
      tcp.send(s2, "POST /ignore HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
      local out, cl = H.read_all(s2, 2000)
      return c, r, out, cl
    end)
    assert.equal("HTTP/1.1 100 Continue\r\n\r\n", cont)
    assert.equal("body", H.responses(rest)[1].body)
    assert.matches("^HTTP/1.1 200 OK", ignored)
    assert.not_matches("100 Continue", ignored)
    assert.is_true(closed)
  end)

  it("answers HEAD with the headers and no body", function()
    local out = H.with_server({}, function(port)
      local s = H.connect(port)
      tcp.send(s, "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n" .. get("/n/9"))
      return H.read_until(s, "n=9")
    end)
    assert.matches("^HTTP/1.1 200 OK\r\n.-content%-length: 5\r\n\r\nHTTP/1.1 200 OK", out)
    assert.not_matches("hello", out)
  end)

  it("closes after Connection: close, after HTTP/1.0, and when the handler says so", function()
    local a, b, c = H.with_server({}, function(port)
      return {H.raw(port, get("/", "Connection: close\r\n"))},
        {H.raw(port, "GET / HTTP/1.0\r\n\r\n")},
        {H.raw(port, get("/close"))}
    end)
    for _, r in ipairs({a, b, c}) do
      assert.is_true(r[2])
      assert.matches("connection: close\r\n", r[1])
    end
    assert.matches("hello$", a[1])
  end)

  it("answers 500 to a crashing handler or one that sends nothing", function()
    local a, b = H.with_server({log = false}, function(port)
      return H.raw(port, get("/crash")), H.raw(port, get("/nothing"))
    end)
    assert.matches("^HTTP/1.1 500 ", a)
    assert.matches("^HTTP/1.1 500 ", b)
  end)

  it("parses JSON bodies through the router and plug.parsers", function()
    local out = H.with_server({}, function(port)
      local body = '{"name":"moon","n":3}'
      return H.raw(port, "POST /json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" ..
        "Content-Type: application/json\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body)
    end)
    local json = require "moonbeam.http.json"
    assert.same({name = "moon", n = 3}, json.decode(H.responses(out)[1].body))
  end)
end)

describe("http server limits", function()
  it("answers 431 to a head over max_head, and closes", function()
    local out, closed = H.with_server({max_head = 2048}, function(port)
      return H.raw(port, get("/", "X-Big: " .. ("a"):rep(4000) .. "\r\n"))
    end)
    assert.matches("^HTTP/1.1 431 ", out)
    assert.is_true(closed)
  end)

  it("answers 431 to a request line over max_head", function()
    local out, closed = H.with_server({max_head = 2048}, function(port)
      return H.raw(port, get("/" .. ("a"):rep(4000)))
    end)
    assert.matches("^HTTP/1.1 431 ", out)
    assert.is_true(closed)
  end)

  it("answers 431 to more headers than max_headers", function()
    local lines = {}
    for i = 1, 30 do lines[i] = "X-H" .. i .. ": v\r\n" end
    local out, closed = H.with_server({max_headers = 20}, function(port)
      return H.raw(port, get("/", table.concat(lines)))
    end)
    assert.matches("^HTTP/1.1 431 ", out)
    assert.is_true(closed)
  end)

  it("answers 413 to a Content-Length over max_body without reading it", function()
    local out, closed = H.with_server({max_body = 1000}, function(port)
      return H.raw(port, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n")
    end)
    assert.matches("^HTTP/1.1 413 ", out)
    assert.is_true(closed)
  end)

  it("answers 413 to a chunked body growing over max_body", function()
    local out, closed = H.with_server({max_body = 1000}, function(port)
      local chunk = ("%x\r\n%s\r\n"):format(600, ("z"):rep(600))
      return H.raw(port, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" ..
        chunk .. chunk .. chunk .. "0\r\n\r\n")
    end)
    assert.matches("^HTTP/1.1 413 ", out)
    assert.is_true(closed)
  end)

  it("answers 400 to a malformed request and closes", function()
    local a, ca, b, cb = H.with_server({}, function(port)
      local x, y = H.raw(port, "NOT HTTP AT ALL\r\n\r\n")
      local z, w = H.raw(port, "GET / HTTP/1.1\r\nHost t\r\n\r\n")
      return x, y, z, w
    end)
    assert.matches("^HTTP/1.1 400 ", a)
    assert.is_true(ca)
    assert.matches("^HTTP/1.1 400 ", b)
    assert.is_true(cb)
  end)

  it("answers a request before a malformed one it was pipelined with", function()
    local out = H.with_server({}, function(port)
      return H.raw(port, get("/n/1") .. "BROKEN\r\n\r\n")
    end)
    assert.matches("^HTTP/1.1 200 OK.-n=1HTTP/1.1 400 ", out)
  end)

  it("drops a client that sends its head too slowly (slowloris): 408", function()
    local out, closed, took = H.with_server({header_timeout = 400}, function(port)
      local s = H.connect(port)
      local t0 = mb.clock()
      tcp.send(s, "GET / HTTP/1.1\r\n")
      for _ = 1, 10 do
        mb.sleep(100)
        if not tcp.send(s, "X-A: b\r\n") then break end
      end
      local o, c = H.read_all(s, 3000)
      return o, c, mb.clock() - t0
    end)
    assert.matches("^HTTP/1.1 408 ", out)
    assert.is_true(closed)
    assert.is_true(took < 3)
  end)

  it("closes a connection that never sends a byte after header_timeout", function()
    local out, closed = H.with_server({header_timeout = 300}, function(port)
      local s = H.connect(port)
      return H.read_all(s, 3000)
    end)
    assert.equal("", out)
    assert.is_true(closed)
  end)

  it("drops a body that arrives too slowly: body_timeout", function()
    local out, closed = H.with_server({body_timeout = 400}, function(port)
      local s = H.connect(port)
      tcp.send(s, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
      return H.read_all(s, 3000)
    end)
    assert.matches("^HTTP/1.1 400 ", out)    -- the handler saw read_body fail ("timeout")
    assert.matches("timeout", out)
    assert.is_true(closed)
  end)

  it("closes an idle keep-alive connection after idle_timeout", function()
    local first, closed, took = H.with_server({idle_timeout = 300}, function(port)
      local s = H.connect(port)
      tcp.send(s, get("/"))
      local r = H.read_until(s, "hello")
      local t0 = mb.clock()
      local _, c = H.read_all(s, 3000)
      return r, c, mb.clock() - t0
    end)
    assert.matches("hello$", first)
    assert.is_true(closed)
    assert.is_true(took < 2.5)
  end)

  it("holds connections over max_connections in the backlog until one ends", function()
    local early, late = H.with_server({max_connections = 2, acceptors = 1}, function(port)
      local a, b = H.connect(port), H.connect(port)
      tcp.send(a, get("/")) H.read_until(a, "hello")
      tcp.send(b, get("/")) H.read_until(b, "hello")
      local c = H.connect(port)               -- the kernel accepts it; the server does not yet
      tcp.send(c, get("/n/3"))
      local e = H.read_until(c, "n=3", 600)
      tcp.close(a)
      local l = H.read_until(c, "n=3", 5000)
      return e, l
    end)
    assert.equal("", early)
    assert.matches("n=3$", late)
  end)
end)

describe("http server shutdown", function()
  it("drains: requests in flight finish, idle connections close, no new ones", function()
    local res = mb.run(function()
      local server = require "moonbeam.http.server"
      local srv = assert(server.start("http_app", {}))
      local me = mb.self()
      local idle = H.connect(srv.port)
      mb.spawn(function()
        local s = H.connect(srv.port)
        tcp.send(s, get("/slow?ms=500"))
        local out, closed = H.read_all(s, 5000)
        mb.send(me, {"inflight", out, closed})
      end)
      mb.sleep(150)
      local t0 = mb.clock()
      server.stop(srv)
      local took = mb.clock() - t0
      local m = mb.receive(function(x) return x[1] == "inflight" end, 5000)
      local _, idle_closed = H.read_all(idle, 2000)
      local again = tcp.connect("127.0.0.1", srv.port, {active = false}, 1000)
      return {inflight = m[2], closed = m[3], idle_closed = idle_closed, refused = again == nil,
        took = took}
    end)
    assert.matches("^HTTP/1.1 200 OK.-connection: close.-slow done$", res.inflight)
    assert.is_true(res.closed)
    assert.is_true(res.idle_closed)
    assert.is_true(res.refused)
    assert.is_true(res.took < 4)
  end)
end)

describe("http server shutdown at max_connections", function()
  it("stops promptly while an acceptor waits for a connection to end", function()
    local took, idle_closed = mb.run(function()
      local server = require "moonbeam.http.server"
      local srv = assert(server.start("http_app", {max_connections = 1, acceptors = 1}))
      local a = H.connect(srv.port)
      tcp.send(a, get("/"))
      H.read_until(a, "hello")
      local b = H.connect(srv.port)            -- waits in the backlog
      tcp.send(b, get("/"))
      mb.sleep(100)
      local t0 = mb.clock()
      server.stop(srv)
      local t = mb.clock() - t0
      local _, closed = H.read_all(a, 2000)
      tcp.close(b)
      return t, closed
    end)
    assert.is_true(took < 3, "stop took " .. took .. " s")
    assert.is_true(idle_closed)
  end)
end)

describe("http server with curl", function()
  local function curl(port, args)
    local file = os.tmpname()
    -- (without a sanitizer runtime the specs may preload for lua5.4)
    os.execute(("env -u LD_PRELOAD curl -s -m 10 %s > %s 2>&1 &"):format(args:gsub("PORT", tostring(port)), file))
    local out
    for _ = 1, 100 do
      mb.sleep(100)
      local f = io.open(file)
      out = f:read("a")
      f:close()
      if out:find("\n$") or out:find("END") then break end
    end
    os.remove(file)
    return out
  end

  it("serves curl: GET, POST, keep-alive reuse, chunked upload", function()
    local a, b, c, d = H.with_server({}, function(port)
      return curl(port, "-w '|%{http_code}\\n' http://127.0.0.1:PORT/"),
        curl(port, "-d 'x=1&y=2' -w '|%{http_code}\\n' http://127.0.0.1:PORT/echo"),
        curl(port, "-w '%{num_connects}\\n' http://127.0.0.1:PORT/ http://127.0.0.1:PORT/n/2 -o /dev/null -o /dev/null"),
        curl(port, "-H 'Transfer-Encoding: chunked' --data-binary 'streamed' -w '|%{http_code}\\n' http://127.0.0.1:PORT/echo")
    end)
    assert.equal("hello|200\n", a)
    assert.equal("x=1&y=2|200\n", b)
    assert.equal("1\n0\n", c)                  -- the second request reused the connection
    assert.equal("streamed|200\n", d)
  end)
end)
