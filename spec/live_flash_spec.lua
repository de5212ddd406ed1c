-- Flash across navigation at the wire level: a redirect or navigate reply
-- carries the view's flash as a signed token; the next dead render reads the
-- __phoenix_flash__ cookie once (and deletes it), a join reads its "flash";
-- forged and expired tokens are ignored.
package.path = package.path .. ";spec/support/?.lua;examples/?.lua"
local mb = require "moonbeam"
local pubsub = require "moonbeam.pubsub"
local ws = require "moonbeam.websocket"
local http = require "moonbeam.http"
local json = require "moonbeam.http.json"
local channel = require "moonbeam.channel"
local live = require "moonbeam.live"
local session = require "moonbeam.http.session"

local SECRET = "moonbeam live examples: not a secret, 32+ bytes long"

local function with_app(fn)
  return mb.run(function()
    pubsub.start_link{name = "live_examples"}
    local server = require "moonbeam.http.server"
    local srv = assert(server.start("live_views.app", {port = 0, log = false}))
    local res = table.pack(pcall(fn, srv.port))
    server.stop(srv)
    http.client.close_idle()
    if not res[1] then error(res[2], 0) end
    return table.unpack(res, 2, res.n)
  end)
end

local function unescape(s)
  return (s:gsub("&quot;", '"'):gsub("&#39;", "'"):gsub("&lt;", "<"):gsub("&gt;", ">"):gsub("&amp;", "&"))
end

-- GET a live page: returns {id, session, csrf, cookie, body}.
local function page(port, path)
  local res = assert(http.request("GET", ("http://127.0.0.1:%d%s"):format(port, path)))
  assert.equal(200, res.status)
  local body = res.body
  local p = {body = body}
  p.id = body:match('<div id="(phx%-[%x]+)" data%-phx%-main')
  p.session = unescape(body:match('data%-phx%-session="([^"]*)"'))
  p.csrf = body:match('<meta name="csrf%-token" content="([^"]*)"')
  local sc = res.headers["set-cookie"]
  p.cookie = sc and sc:match("^([^;]+)")
  return p
end

local function connect(port, p, csrf)
  return ws.connect(("ws://127.0.0.1:%d/live/websocket?_csrf_token=%s&_mounts=0&vsn=2.0.0")
    :format(port, csrf or p.csrf), {headers = {cookie = p.cookie}})
end

local function send(c, ...) assert(c:send("text", channel.encode_frame(...))) end
local function recv(c)
  local f, err = c:recv(5000)
  assert(f, err)
  assert(f[1] == "text", "frame " .. tostring(f[1]) .. " " .. tostring(f[2]))
  return json.decode(f[2])
end

local function join(c, port, p, ref, extra)
  local payload = {url = ("http://127.0.0.1:%d/"):format(port), params = {_csrf_token = p.csrf, _mounts = 0},
                   session = p.session, static = json.null, sticky = false}
  for k, v in pairs(extra or {}) do payload[k] = v end
  send(c, ref, ref, "lv:" .. p.id, "phx_join", payload)
  return recv(c)
end


local function get(port, path, cookie)
  return assert(http.request("GET", ("http://127.0.0.1:%d%s"):format(port, path), {headers = {cookie = cookie}}))
end
local function flash_p(body) return body:match('<p id="flash">(.-)</p>') end

describe("live flash", function()
  it("a redirect carries the flash; the cookie is read once by the next dead render", function()
    with_app(function(port)
      local p = page(port, "/features")
      local c = assert(connect(port, p))
      join(c, port, p, "1", {url = ("http://127.0.0.1:%d/features"):format(port)})
      send(c, "1", "2", "lv:" .. p.id, "event", {type = "click", event = "flash_redirect", value = {}})
      local resp = recv(c)[5].response
      assert.equal("/features?tab=r", resp.redirect.to)
      local token = resp.redirect.flash
      assert.same({info = "redirected"}, live.flash_of({secret_key_base = SECRET}, token))
      -- the client stores it as the cookie; the next page shows it and deletes the cookie
      local res = get(port, "/features?tab=r", p.cookie .. "; __phoenix_flash__=" .. token)
      assert.equal("redirected", flash_p(res.body))
      assert.truthy(tostring(res.headers["set-cookie"]):find("__phoenix_flash__=;", 1, true))
      -- and that page's session token brings it to the connected mount
      local session_token = unescape(res.body:match('data%-phx%-session="([^"]*)"'))
      local id = res.body:match('<div id="(phx%-[%x]+)" data%-phx%-main')
      local r = join(c, port, {id = id, session = session_token, csrf = p.csrf}, "3",
        {url = ("http://127.0.0.1:%d/features?tab=r"):format(port)})
      assert.equal("ok", r[5].status)
      assert.truthy(json.encode(r[5].response.rendered):find("redirected", 1, true))
      -- forged and expired tokens: no flash, no error
      assert.equal("", flash_p(get(port, "/features", p.cookie .. "; __phoenix_flash__=x" .. token).body))
      local old = session.sign(SECRET, "moonbeam live flash", {info = "old"})
      local real_time = os.time
      os.time = function() return real_time() + 61 end          -- luacheck: ignore
      local expired = live.flash_of({secret_key_base = SECRET}, old)
      os.time = real_time                                         -- luacheck: ignore
      assert.is_nil(expired)
      c:close(1000)
    end)
  end)

  it("a navigate carries the flash to the next join", function()
    with_app(function(port)
      local p = page(port, "/features")
      local c = assert(connect(port, p))
      join(c, port, p, "1", {url = ("http://127.0.0.1:%d/features"):format(port)})
      send(c, "1", "2", "lv:" .. p.id, "event", {type = "click", event = "flash_navigate", value = {}})
      local nav = recv(c)[5].response.live_redirect
      assert.equal("/features?tab=n", nav.to)
      send(c, "1", "3", "lv:" .. p.id, "phx_leave", {})
      recv(c)
      -- the client's join after a navigate: redirect instead of url, and the flash
      send(c, "4", "4", "lv:" .. p.id, "phx_join", {redirect = ("http://127.0.0.1:%d/features?tab=n"):format(port),
        params = {_csrf_token = p.csrf, _mounts = 0}, session = p.session, flash = nav.flash})
      local r = recv(c)
      assert.equal("ok", r[5].status)
      assert.truthy(json.encode(r[5].response.rendered):find("navigated", 1, true))
      -- no flash, no token
      send(c, "4", "5", "lv:" .. p.id, "event", {type = "click", event = "tab3", value = {}})
      assert.is_nil(recv(c)[5].response.redirect)
      c:close(1000)
    end)
  end)
end)
