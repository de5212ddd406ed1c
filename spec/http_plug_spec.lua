-- The Plug-like layer: conn, plug pipelines, router, body parsers, cookies,
-- sessions, CSRF, run through moonbeam.http.test (no socket).
local http = require "moonbeam.http"
local t = require "moonbeam.http.test"
local router, plug, session, csrf = http.router, http.plug, http.session, http.csrf
local json = http.json

local SECRET = ("k"):rep(64)

describe("conn", function()
  it("splits the target into path, path_info and query", function()
    local c = t.conn("GET", "/a%20b/c?x=1&y=two+words&l[]=1&l[]=2")
    assert.equal("/a b/c", c.path)
    assert.same({"a b", "c"}, c.path_info)
    assert.equal("x=1&y=two+words&l[]=1&l[]=2", c.query_string)
    c:fetch_query_params()
    assert.same({x = "1", y = "two words", l = {"1", "2"}}, c.query_params)
    assert.equal("1", c.params.x)
    assert.equal("www.example.com", c.host)
  end)

  it("sends text, html and JSON with their content types", function()
    local c = t.call(function(conn) return conn:text(200, "hi") end, "GET", "/")
    assert.equal(200, c.sent.status)
    assert.equal("text/plain; charset=utf-8", c.sent.headers["content-type"])
    assert.equal("hi", c.sent.body)
    c = t.call(function(conn) return conn:json(201, {ok = true}) end, "GET", "/")
    assert.equal(201, c.sent.status)
    assert.equal("application/json; charset=utf-8", c.sent.headers["content-type"])
    assert.same({ok = true}, json.decode(c.sent.body))
    c = t.call(function(conn) conn:resp(404, "nope") end, "GET", "/")
    assert.equal(404, c.sent.status)
  end)

  it("refuses to change a response already sent", function()
    local c = t.call(function(conn) return conn:text(200, "x") end, "GET", "/")
    assert.has_error(function() c:put_resp_header("x", "y") end)
    assert.has_error(function() c:send_resp(200, "again") end)
  end)

  it("streams chunks", function()
    local c = t.call(function(conn)
      conn:send_chunked(200)
      for i = 1, 3 do conn:chunk("part" .. i) end
    end, "GET", "/")
    assert.same({"part1", "part2", "part3"}, c.sent.chunks)
  end)

  it("runs before_send callbacks, last registered first", function()
    local order = {}
    local c = t.call(function(conn)
      conn:register_before_send(function(x) order[#order + 1] = "a" x:put_resp_header("x-a", "1") end)
      conn:register_before_send(function() order[#order + 1] = "b" end)
      return conn:text(200, "")
    end, "GET", "/")
    assert.same({"b", "a"}, order)
    assert.equal("1", c.sent.headers["x-a"])
  end)
end)

describe("body parsers", function()
  local echo = plug.pipeline({plug.parsers(), function(conn) return conn:json(200, conn.params) end})

  it("parses urlencoded forms", function()
    local c = t.call(echo, "POST", "/?q=1", {headers = {["Content-Type"] = "application/x-www-form-urlencoded"},
      body = "name=Ada+L&tags[]=a&tags[]=b&e=%C3%A9"})
    assert.same({q = "1", name = "Ada L", tags = {"a", "b"}, e = "é"}, json.decode(c.sent.body))
  end)

  it("parses JSON objects, and other JSON values into _json", function()
    local c = t.call(echo, "POST", "/", {headers = {["content-type"] = "application/json"},
      body = '{"a": [1, 2], "b": {"c": "d"}}'})
    assert.same({a = {1, 2}, b = {c = "d"}}, json.decode(c.sent.body))
    c = t.call(echo, "POST", "/", {headers = {["content-type"] = "application/json"}, body = "[1,2]"})
    assert.same({_json = {1, 2}}, json.decode(c.sent.body))
  end)

  it("answers 400 to bad JSON and 415 to unknown types", function()
    local c = t.call(echo, "POST", "/", {headers = {["content-type"] = "application/json"}, body = "{bad"})
    assert.equal(400, c.sent.status)
    c = t.call(echo, "POST", "/", {headers = {["content-type"] = "application/x-thing"}, body = "x"})
    assert.equal(415, c.sent.status)
    c = t.call(plug.pipeline({plug.parsers({length = 3}), echo}), "POST", "/",
      {headers = {["content-type"] = "application/json"}, body = '{"a":1}'})
    assert.equal(413, c.sent.status)
  end)

  it("parses multipart forms with files", function()
    local body, ctype = http.multipart.encode({
      title = "hello",
      upload = {filename = "a.txt", content_type = "text/plain", data = "file\r\ncontent--"},
    })
    local got
    t.call(plug.pipeline({plug.parsers(), function(conn) got = conn.params return conn:text(200, "") end}),
      "POST", "/", {headers = {["content-type"] = ctype}, body = body})
    assert.equal("hello", got.title)
    assert.equal("a.txt", got.upload.filename)
    assert.equal("text/plain", got.upload.content_type)
    assert.equal("file\r\ncontent--", got.upload.data)
    assert.is_nil(http.multipart.parse("garbage", "b"))
    assert.is_nil(http.multipart.parse("--b\r\nno header end", "b"))
  end)
end)

describe("plug pipelines", function()
  it("runs plugs in order and stops at a halt", function()
    local seen = {}
    local p = plug.pipeline({
      function(conn) seen[#seen + 1] = 1 conn:assign("user", "ada") end,
      {{init = function(o) return o .. "!" end,
        call = function(conn, o) seen[#seen + 1] = o end}, "two"},
      function(conn) seen[#seen + 1] = 3 conn:text(401, "no") conn:halt() end,
      function() seen[#seen + 1] = 4 end,
    })
    local c = t.call(p, "GET", "/")
    assert.same({1, "two!", 3}, seen)
    assert.equal(401, c.sent.status)
    assert.equal("ada", c.assigns.user)
  end)

  it("turns an error into a 500 with plug.rescue", function()
    local logged
    local c = t.call(plug.rescue(function() error("boom") end, {log = function(e) logged = e end}), "GET", "/")
    assert.equal(500, c.sent.status)
    assert.matches("boom", logged)
  end)
end)

describe("router", function()
  local r = router.new()
  r:get("/", function(conn) return conn:text(200, "root") end)
  r:get("/users/:id", function(conn) return conn:text(200, "user " .. conn.params.id) end)
  r:put("/users/:id", function(conn) return conn:text(200, "put " .. conn.params.id) end)
  r:get("/users/:id/posts/:post", function(conn)
    return conn:text(200, conn.params.id .. "/" .. conn.params.post)
  end)
  r:get("/files/*path", function(conn) return conn:text(200, table.concat(conn.params.path, "|")) end)
  r:post("/guarded", {function(conn) conn:text(403, "no") conn:halt() end},
    function(conn) return conn:text(200, "yes") end)
  local api = router.new()
  api:get("/ping", function(conn) return conn:text(200, "pong") end)
  r:forward("/api/v1", api)

  local function body(method, path) local c = t.call(r, method, path) return c.sent.status, c.sent.body, c end
  local function sb(method, path) local status, b = body(method, path) return {status, b} end

  it("matches literal paths and path parameters", function()
    assert.same({200, "root"}, sb("GET", "/"))
    assert.same({200, "user 42"}, sb("GET", "/users/42"))
    assert.same({200, "put 7"}, sb("PUT", "/users/7"))
    assert.same({200, "3/9"}, sb("GET", "/users/3/posts/9"))
    assert.same({200, "user a b"}, sb("GET", "/users/a%20b"))
  end)

  it("matches globs and forwards to sub-routers", function()
    assert.same({200, "a|b|c.txt"}, sb("GET", "/files/a/b/c.txt"))
    assert.same({200, "pong"}, sb("GET", "/api/v1/ping"))
    assert.equal(404, (body("GET", "/api/v1/nothing")))
  end)

  it("answers 404 for unknown paths and 405 with Allow for wrong methods", function()
    assert.equal(404, (body("GET", "/nothing/here")))
    local status, _, c = body("DELETE", "/users/1")
    assert.equal(405, status)
    assert.equal("GET, HEAD, PUT", c.sent.headers.allow)
  end)

  it("serves HEAD from GET routes without a body", function()
    local status, b = body("HEAD", "/users/1")
    assert.equal(200, status)
    assert.equal("", b)
  end)

  it("runs a route's own plugs first", function()
    assert.same({403, "no"}, sb("POST", "/guarded"))
  end)
end)

describe("cookies", function()
  it("parses the Cookie header and sets response cookies with attributes", function()
    local c = t.call(function(conn)
      conn:fetch_cookies()
      conn:put_resp_cookie("theme", "dark mode", {max_age = 60, secure = true, same_site = "Strict"})
      conn:delete_resp_cookie("old")
      return conn:text(200, conn.cookies.a .. conn.cookies.b)
    end, "GET", "/", {headers = {cookie = 'a=1; b="2"; a=3'}})
    assert.equal("12", c.sent.body)
    local sc = c.sent.cookies.theme
    assert.matches("^theme=dark%%20mode; path=/; max%-age=60; expires=", sc)
    assert.matches("; secure; HttpOnly; SameSite=Strict$", sc)
    assert.matches("^old=; path=/; max%-age=0", c.sent.cookies.old)
    assert.has_error(function() http.cookie.serialize("bad name", "x") end)
  end)
end)

describe("sessions", function()
  for _, mode in ipairs({"signed", "encrypted"}) do
    it("keep values across requests in a " .. mode .. " cookie and refuse tampering", function()
      local sp = session.plug({key = "_s", secret_key_base = SECRET, signing_salt = "sign",
        encryption_salt = mode == "encrypted" and "enc" or nil})
      local app = plug.pipeline({sp, function(conn)
        local n = (conn:get_session("n") or 0) + 1
        conn:put_session("n", n)
        return conn:text(200, tostring(n))
      end})
      local c1 = t.call(app, "GET", "/")
      assert.equal("1", c1.sent.body)
      local v = t.cookie_value(c1, "_s")
      assert.is_string(v)
      -- a signed cookie's payload is readable JSON, an encrypted one's is not
      local all = {}
      for part in v:gmatch("[^.]+") do all[#all + 1] = tostring(require("moonbeam.core").crypto.unbase64(part, true)) end
      assert.equal(mode == "signed", table.concat(all):find('"n":1', 1, true) ~= nil)
      local c2 = t.call(app, "GET", "/", {cookies = {_s = v}})
      assert.equal("2", c2.sent.body)
      -- a changed byte makes the session empty again
      local bad = v:sub(1, 5) .. (v:sub(6, 6) == "A" and "B" or "A") .. v:sub(7)
      local c3 = t.call(app, "GET", "/", {cookies = {_s = bad}})
      assert.equal("1", c3.sent.body)
    end)
  end

  it("signed tokens expire and are bound to their salt", function()
    local tok = session.sign(SECRET, "s1", {user = 5})
    assert.same({user = 5}, session.verify(SECRET, "s1", tok, 60))
    assert.same({nil, "invalid"}, {session.verify(SECRET, "s2", tok)})
    assert.same({nil, "expired"}, {session.verify(SECRET, "s1", tok, -1)})
    local enc = session.encrypt(SECRET, "e", "secret value")
    assert.is_nil(enc:find("secret"))
    assert.equal("secret value", session.decrypt(SECRET, "e", enc))
    assert.is_nil(session.decrypt(SECRET, "other", enc))
  end)

  it("writes no cookie when the session is not changed, and drops it on request", function()
    local sp = session.plug({key = "_s", secret_key_base = SECRET, signing_salt = "x"})
    local c = t.call(plug.pipeline({sp, function(conn) conn:get_session("a") return conn:text(200, "") end}), "GET", "/")
    assert.is_nil(c.sent.cookies._s)
    local tok = session.sign(SECRET, "x", {a = 1})
    c = t.call(plug.pipeline({sp, function(conn) conn:configure_session({drop = true}) return conn:text(200, "") end}),
      "GET", "/", {cookies = {_s = tok}})
    assert.matches("^_s=; ", c.sent.cookies._s)
  end)
end)

describe("csrf", function()
  local sp = session.plug({key = "_s", secret_key_base = SECRET, signing_salt = "x"})
  local token, cookie
  local app = plug.pipeline({sp, plug.parsers(), csrf.plug(), function(conn)
    if conn.method == "GET" then token = csrf.token(conn) end
    return conn:text(200, "ok")
  end})

  it("accepts a form or header token from the session and refuses others with 403", function()
    local c = t.call(app, "GET", "/form")
    cookie = t.cookie_value(c, "_s")
    assert.is_string(token)
    local form = {["content-type"] = "application/x-www-form-urlencoded"}
    c = t.call(app, "POST", "/", {headers = form, body = "_csrf_token=" .. token, cookies = {_s = cookie}})
    assert.equal(200, c.sent.status)
    c = t.call(app, "DELETE", "/", {headers = {["x-csrf-token"] = token}, cookies = {_s = cookie}})
    assert.equal(200, c.sent.status)
    c = t.call(app, "POST", "/", {headers = form, body = "_csrf_token=wrong", cookies = {_s = cookie}})
    assert.equal(403, c.sent.status)
    c = t.call(app, "POST", "/", {headers = form, body = "_csrf_token=" .. token})
    assert.equal(403, c.sent.status)
    c = t.call(app, "POST", "/", {headers = form, body = "", cookies = {_s = cookie}})
    assert.equal(403, c.sent.status)
  end)

  it("masks the token differently each time", function()
    local tokens = {}
    t.call(plug.pipeline({sp, function(conn)
      tokens[1] = csrf.token(conn)
      tokens[2] = csrf.token(conn)
      assert.is_true(csrf.valid(conn, tokens[1]))
      assert.is_true(csrf.valid(conn, tokens[2]))
      return conn:text(200, "")
    end}), "GET", "/")
    assert.not_equal(tokens[1], tokens[2])
  end)
end)

describe("json", function()
  it("loads in every VM of the runtime", function()
    local mb = require "moonbeam"
    local results = mb.run(function()
      local n = mb.schedulers()
      local me = mb.self()
      for i = 1, n do
        mb.spawn_opt({scheduler = i}, function(parent, k)
          local j = require "moonbeam.http.json"
          mb.send(parent, {k, j.encode({k = k}), j.decode('{"v": [1, 2]}').v[2]})
        end, me, i)
      end
      local out = {}
      for _ = 1, n do
        local m = mb.receive(nil, 5000)
        out[#out + 1] = m
      end
      return out
    end)
    assert.is_true(#results >= 1)
    for _, r in ipairs(results) do
      assert.equal('{"k":' .. r[1] .. '}', r[2])
      assert.equal(2, r[3])
    end
  end)

  it("returns errors as values", function()
    assert.same({nil}, {(json.decode("{"))})
    local v, err = json.encode({f = function() end})
    assert.is_nil(v)
    assert.is_string(err)
  end)
end)
