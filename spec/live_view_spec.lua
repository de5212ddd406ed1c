-- moonbeam.live: the dead render over HTTP and the connected view over the
-- "lv:<id>" channel, at the wire level (LIVEVIEW-PROTOCOL.md 1, 2, 4, 6):
-- frames as the official client sends them, through moonbeam's clients.
package.path = package.path .. ";spec/support/?.lua;examples/?.lua"
local mb = require "moonbeam"
local pubsub = require "moonbeam.pubsub"
local ws = require "moonbeam.websocket"
local http = require "moonbeam.http"
local json = require "moonbeam.http.json"
local channel = require "moonbeam.channel"

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

describe("live view", function()
  it("renders the dead page with the bundles, a signed session and a CSRF token", function()
    with_app(function(port)
      local p = page(port, "/")
      assert.truthy(p.id)
      assert.truthy(p.session:find("%."))
      assert.truthy(#p.csrf > 20)
      assert.truthy(p.body:find('<span id="count">0</span>', 1, true))
      assert.truthy(p.body:find("<title>Counter</title>", 1, true))
      assert.truthy(p.body:find('src="/assets/phoenix_live_view.min.js"', 1, true))
      local js = assert(http.request("GET", ("http://127.0.0.1:%d/assets/phoenix_live_view.min.js"):format(port)))
      assert.equal(200, js.status)
      assert.truthy(js.body:find("LiveSocket", 1, true))
      -- path params reach mount
      assert.truthy(page(port, "/counter/41").body:find('<span id="count">41</span>', 1, true))
    end)
  end)

  it("mounts connected over lv:<id> and answers clicks with diffs of the changed dynamics", function()
    with_app(function(port)
      local p = page(port, "/")
      local c = assert(connect(port, p))
      local r = join(c, port, p, "4")
      assert.same({"4", "4", "lv:" .. p.id, "phx_reply"}, {r[1], r[2], r[3], r[4]})
      assert.equal("ok", r[5].status)
      local rendered = r[5].response.rendered
      assert.equal("1.2.12", r[5].response.liveview_version)
      assert.equal("0", rendered["0"])
      assert.equal("Counter", rendered.t)
      assert.is_table(rendered.s)
      send(c, "4", "8", "lv:" .. p.id, "event", {type = "click", event = "inc", value = {value = ""}})
      r = recv(c)
      assert.same({"4", "8", "lv:" .. p.id, "phx_reply",
        {status = "ok", response = {diff = {["0"] = "1", t = "Count 1"}}}}, r)
      send(c, "4", "9", "lv:" .. p.id, "event", {type = "click", event = "add", value = {by = "-12", value = ""}})
      r = recv(c)
      -- the if block appears: a node with its statics
      assert.same({["0"] = "-11", ["1"] = {s = {'<p id="neg" class="error">below zero</p>'}}, t = "Count -11"},
        r[5].response.diff)
      send(c, nil, "16", "phoenix", "heartbeat", {})
      assert.same({json.null, "16", "phoenix", "phx_reply", {status = "ok", response = {}}}, recv(c))
      c:close(1000)
    end)
  end)

  it("patches: push_patch in an event reply, a client live_patch, a patch to another view", function()
    with_app(function(port)
      local p = page(port, "/features")
      local c = assert(connect(port, p))
      local r = join(c, port, p, "1", {url = ("http://127.0.0.1:%d/features?tab=two"):format(port)})
      assert.equal("two", r[5].response.rendered["0"])             -- handle_params saw the URL's query
      send(c, "1", "2", "lv:" .. p.id, "event", {type = "click", event = "tab3", value = {}})
      local resp = recv(c)[5].response
      assert.same({to = "/features?tab=three", kind = "push"}, resp.live_patch)
      assert.equal("three", resp.diff["0"])
      assert.equal("Features three", resp.diff.t)
      send(c, "1", "3", "lv:" .. p.id, "live_patch", {url = ("http://127.0.0.1:%d/features?tab=four"):format(port)})
      resp = recv(c)[5].response
      assert.same({["0"] = "four", t = "Features four"}, resp.diff)
      send(c, "1", "4", "lv:" .. p.id, "live_patch", {url = ("http://127.0.0.1:%d/form"):format(port)})
      assert.same({link_redirect = true}, recv(c)[5].response)
      -- a hook's pushEvent: the reply value is "r" in the diff, push_event is "e"
      send(c, "1", "5", "lv:" .. p.id, "event", {type = "hook", event = "ping", value = {n = 1}})
      resp = recv(c)[5].response
      assert.same({pong = 2}, resp.diff.r)
      assert.same({{"pong", {n = 1}}}, resp.diff.e)
      c:close(1000)
    end)
  end)

  it("refuses a forged session, a wrong id, a missing view and a bad CSRF token; the connection lives on", function()
    with_app(function(port)
      local p = page(port, "/")
      assert.is_nil((connect(port, p, "forged")))               -- CSRF checked at connect
      local c = assert(connect(port, p))
      local forged = {id = p.id, session = p.session:gsub("^.", function(ch) return ch == "A" and "B" or "A" end),
                      csrf = p.csrf, cookie = p.cookie}
      local r = join(c, port, forged, "1")
      assert.same({status = "error", response = {reason = "stale"}}, r[5])
      local other = {id = "phx-other", session = p.session, csrf = p.csrf}
      r = join(c, port, other, "2")
      assert.same({status = "error", response = {reason = "stale"}}, r[5])
      -- a correctly signed token for a view module that does not exist
      local secret = "moonbeam live examples: not a secret, 32+ bytes long"
      local token = require("moonbeam.http.session").sign(secret, "live view",
        {id = "phx-ghost", view = "live_views.no_such_view", session = {}})
      r = join(c, port, {id = "phx-ghost", session = token, csrf = p.csrf}, "4")
      assert.same({status = "error", response = {reason = "stale"}}, r[5])
      -- a join without url or redirect
      send(c, "5", "5", "lv:" .. p.id, "phx_join", {session = p.session})
      assert.same({status = "error", response = {reason = "stale"}}, recv(c)[5])
      r = join(c, port, p, "3")
      assert.equal("ok", r[5].status)
      c:close(1000)
    end)
  end)

  it("an event the view does not handle crashes only that view; it rejoins", function()
    with_app(function(port)
      local p1, p2 = page(port, "/"), page(port, "/")
      local c = assert(connect(port, p1))
      assert.equal("ok", join(c, port, p1, "1")[5].status)
      assert.equal("ok", join(c, port, p2, "2")[5].status)
      send(c, "1", "5", "lv:" .. p1.id, "event", {type = "click", event = "inc", value = {}})
      assert.equal("1", recv(c)[5].response.diff["0"])
      send(c, "1", "6", "lv:" .. p1.id, "event", {type = "click", event = "nosuch", value = {}})
      assert.same({"1", "1", "lv:" .. p1.id, "phx_error", {}}, recv(c))
      -- the other view on the same connection is untouched
      send(c, "2", "7", "lv:" .. p2.id, "event", {type = "click", event = "inc", value = {}})
      assert.equal("1", recv(c)[5].response.diff["0"])
      -- the rejoin (new join_ref, same session) mounts again from scratch
      local r = join(c, port, p1, "9", {params = {_mounts = 1}})
      assert.equal("ok", r[5].status)
      assert.equal("0", r[5].response.rendered["0"])
      send(c, "9", "10", "lv:" .. p1.id, "event", {type = "click", event = "inc", value = {}})
      assert.equal("1", recv(c)[5].response.diff["0"])
      -- a leave of the view, then events for it get "unmatched topic"
      send(c, "9", "11", "lv:" .. p1.id, "phx_leave", {})
      assert.same({status = "ok", response = {}}, recv(c)[5])
      send(c, "9", "12", "lv:" .. p1.id, "event", {type = "click", event = "inc", value = {}})
      assert.same({status = "error", response = {reason = "unmatched topic"}}, recv(c)[5])
      c:close(1000)
    end)
  end)
end)
