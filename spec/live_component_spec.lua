-- Stateful components (moonbeam.live.component) at the wire level: the cids
-- in the rendered tree, "c" with full nodes ("s", "r": 1) the first time and
-- dynamics-only diffs later, events with a cid, send_update, and the
-- two-step removal (cids_will_destroy, cids_destroyed) as Phoenix does it.
package.path = package.path .. ";spec/support/?.lua;examples/?.lua"
local mb = require "moonbeam"
local pubsub = require "moonbeam.pubsub"
local ws = require "moonbeam.websocket"
local http = require "moonbeam.http"
local json = require "moonbeam.http.json"
local channel = require "moonbeam.channel"
local live = require "moonbeam.live"
local template = require "moonbeam.live.template"

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


local function recv_raw(c)
  local f, err = c:recv(5000)
  assert(f, err)
  return f[2]
end

-- the comprehension of the components view (dynamic 1 of the root)
local function ev(c, p, ref, event, extra)
  local payload = {type = "click", event = event, value = {value = ""}}
  for k, v in pairs(extra or {}) do payload[k] = v end
  send(c, "1", ref, "lv:" .. p.id, "event", payload)
  return recv(c)[5]
end

describe("live components", function()
  it("renders components inline in the dead render", function()
    with_app(function(port)
      local p = page(port, "/components")
      assert.truthy(p.body:find('<div id="item-1" class="item">', 1, true))
      assert.truthy(p.body:find('<span class="label">counter 2</span>', 1, true))
      assert.truthy(p.body:find('phx-target="2"', 1, true))          -- @myself renders as the cid
    end)
  end)

  it("sends cids in the tree and the components under c, then only what changed", function()
    with_app(function(port)
      local p = page(port, "/components")
      local c = assert(connect(port, p))
      local r = join(c, port, p, "1", {url = ("http://127.0.0.1:%d/components"):format(port)})
      local rendered = r[5].response.rendered
      assert.equal("counters: 2", "counters: " .. rendered["0"])
      assert.same({kc = 2, ["0"] = {["0"] = 1}, ["1"] = {["0"] = 2}}, rendered["1"].k)
      local c1 = rendered.c["1"]
      assert.equal(1, c1.r)
      assert.is_table(c1.s)
      assert.equal("1", c1["0"]) ; assert.equal("counter 1", c1["1"]) ; assert.equal("0", c1["3"])
      assert.equal("1", c1["5"])                                      -- phx-target="<%= @myself %>"
      assert.equal("", c1["6"])
      assert.equal("counter 2", rendered.c["2"]["1"])
      -- a click aimed at component 2: only its changed dynamic, nothing of the view
      local resp = ev(c, p, "2", "inc", {cid = 2})
      assert.same({status = "ok", response = {diff = {c = {["2"] = {["3"] = "1"}}}}}, resp)
      ev(c, p, "3", "inc", {cid = 2})
      resp = ev(c, p, "4", "inc", {cid = 2})
      assert.same({["3"] = "3", ["6"] = {s = {'<b id="many-', '">many</b>'}, ["0"] = "2"}}, resp.response.diff.c["2"])
      -- the view adds a counter: a new entry holding cid 3, and component 3 in full
      resp = ev(c, p, "5", "add")
      local d = resp.response.diff
      assert.equal("3", d["0"])
      assert.same({kc = 3, ["2"] = {["0"] = 3}}, d["1"].k)
      assert.equal(1, d.c["3"].r)
      assert.is_table(d.c["3"].s)
      assert.equal("0", d.c["3"]["3"])
      assert.is_nil(d.c["1"])          -- updated with the same assigns: nothing changed
      -- send_update from the view: every counter resets, pushed as a diff
      resp = ev(c, p, "6", "reset")
      assert.same({status = "ok", response = {}}, resp)
      -- only counter 2 was not 0: one pushed diff; 1 and 3 did not change, so nothing
      local f = recv(c)
      assert.same({"1", json.null, "lv:" .. p.id, "diff", {c = {["2"] = {["3"] = "0", ["6"] = ""}}}}, f)
      send(c, nil, "7", "phoenix", "heartbeat", {})
      assert.same({json.null, "7", "phoenix", "phx_reply", {status = "ok", response = {}}}, recv(c))
      c:close(1000)
    end)
  end)

  it("removes a component only after cids_will_destroy and cids_destroyed; a reused one is revived", function()
    with_app(function(port)
      local p = page(port, "/components")
      local c = assert(connect(port, p))
      join(c, port, p, "1", {url = ("http://127.0.0.1:%d/components"):format(port)})
      local resp = ev(c, p, "2", "remove")
      assert.same({kc = 1}, resp.response.diff["1"].k)
      send(c, "1", "3", "lv:" .. p.id, "cids_will_destroy", {cids = {2}})
      assert.same({status = "ok", response = {}}, recv(c)[5])
      send(c, "1", "4", "lv:" .. p.id, "cids_destroyed", {cids = {2}})
      assert.same({status = "ok", response = {cids = {2}}}, recv(c)[5])
      -- an event for the removed cid: a no-op reply
      assert.same({status = "ok", response = {}}, ev(c, p, "5", "inc", {cid = 2}))
      -- destroyed again: nothing left to delete, an empty JSON list
      send(c, "1", "6", "lv:" .. p.id, "cids_destroyed", {cids = {2}})
      assert.truthy(recv_raw(c):find('"response":{"cids":[]}', 1, true))
      -- component 1 is marked, then rendered again before cids_destroyed: it stays
      send(c, "1", "7", "lv:" .. p.id, "cids_will_destroy", {cids = {1}})
      recv(c)
      resp = ev(c, p, "8", "add")                       -- new counter id 3 gets cid 3
      local d = resp.response.diff
      assert.is_table(d.c["1"].s)                        -- revived: sent in full again
      assert.equal(1, d.c["3"].r)
      send(c, "1", "9", "lv:" .. p.id, "cids_destroyed", {cids = {1}})
      assert.truthy(recv_raw(c):find('"cids":[]', 1, true))
      assert.same({status = "ok", response = {diff = {c = {["1"] = {["3"] = "1"}}}}}, ev(c, p, "10", "inc", {cid = 1}))
      c:close(1000)
    end)
  end)

  it("answers malformed component frames without harm", function()
    with_app(function(port)
      local p = page(port, "/components")
      local c = assert(connect(port, p))
      join(c, port, p, "1", {url = ("http://127.0.0.1:%d/components"):format(port)})
      assert.same({status = "ok", response = {}}, ev(c, p, "2", "inc", {cid = "abc"}))
      assert.same({status = "ok", response = {}}, ev(c, p, "3", "inc", {cid = 99}))
      send(c, "1", "4", "lv:" .. p.id, "cids_will_destroy", {cids = "x"})
      assert.same({status = "ok", response = {}}, recv(c)[5])
      send(c, "1", "5", "lv:" .. p.id, "cids_destroyed", {cids = {"x", 7}})
      assert.truthy(recv_raw(c):find('"cids":[]', 1, true))
      -- the components still work
      assert.same({status = "ok", response = {diff = {c = {["1"] = {["3"] = "1"}}}}}, ev(c, p, "6", "inc", {cid = 1}))
      c:close(1000)
    end)
  end)

  it("refuses a component without id, a duplicate id and a render without a root element", function()
    local Bad = {render = live.template[[text <%= @id %>]]}
    local Ok = {render = live.template[[<i><%= @id %></i>]]}
    local function render(src, assigns)
      local view = {render = live.template(src, {env = {live = live, Bad = Bad, Ok = Ok}})}
      local s = live.new_socket{connected = true}
      live.assign(s, assigns or {})
      return pcall(live.render, view, s, true)
    end
    local ok, err = render([[<div><%= live.component(Ok, {label = 1}) %></div>]])
    assert.is_false(ok) ; assert.matches("need an id", err)
    ok, err = render([[<div><%= live.component(Ok, {id = 1}) %><%= live.component(Ok, {id = 1}) %></div>]])
    assert.is_false(ok) ; assert.matches("duplicate id 1", err)
    ok, err = render([[<div><%= live.component(Bad, {id = 1}) %></div>]])
    assert.is_false(ok) ; assert.matches("one root HTML element", err)
    -- outside a live view render the call is an error, not a crash
    ok, err = pcall(template.compile([[<%= live.component(Ok, {id = 1}) %>]], {env = {live = live, Ok = Ok}}), {})
    assert.is_false(ok) ; assert.matches("outside a live view render", err)
    -- after those failures a good render works: the render state was reset
    local good, out = render([[<div><%= live.component(Ok, {id = 7}) %></div>]])
    assert.is_true(good)
    assert.same({["0"] = 1, s = {"<div>", "</div>"}, c = {["1"] = {s = {"<i>", "</i>"}, ["0"] = "7", r = 1}}}, out)
  end)
end)
