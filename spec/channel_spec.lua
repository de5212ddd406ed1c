-- moonbeam.channel: Phoenix's v2 JSON serializer over the WebSocket server,
-- driven by the official `phoenix` client under Node.js and by raw frames.
package.path = package.path .. ";spec/support/?.lua"
local mb = require "moonbeam"
local pubsub = require "moonbeam.pubsub"
local ws = require "moonbeam.websocket"
local json = require "moonbeam.http.json"
local channel = require "moonbeam.channel"

local function with_app(fn)
  return mb.run(function()
    pubsub.start_link{name = "chan_spec"}
    local server = require "moonbeam.http.server"
    local srv = assert(server.start("channel_app", {port = 0, log = false}))
    local res = table.pack(pcall(fn, srv.port))
    server.stop(srv)
    if not res[1] then error(res[2], 0) end
    return table.unpack(res, 2, res.n)
  end)
end

-- Runs a node script with args and returns its one JSON line, decoded.
local function node(script, ...)
  local file = os.tmpname()
  local args = table.concat({...}, " ")
  os.execute(("env -u LD_PRELOAD node %s %s > %s 2>&1 &"):format(script, args, file))
  local out = ""
  for _ = 1, 400 do
    mb.sleep(100)
    local f = io.open(file)
    out = f:read("a")
    f:close()
    if out:find("\n") then break end
  end
  os.remove(file)
  local v = json.decode(out)
  assert(type(v) == "table", "node printed: " .. out)
  return v, out
end

local function frame(c, ...) assert(c:send("text", channel.encode_frame(...))) end
local function recv(c)
  local f, err = c:recv(3000)
  assert(f, err)
  assert.equal("text", f[1])
  return json.decode(f[2])
end

describe("channel frames", function()
  it("encodes and decodes the v2 array with nulls", function()
    assert.equal('[null,"1","phoenix","heartbeat",{}]', channel.encode_frame(nil, "1", "phoenix", "heartbeat", {}))
    local jr, r, t, e, p = channel.decode_frame('["4","5","room:1","ev",{"a":1}]')
    assert.same({"4", "5", "room:1", "ev", {a = 1}}, {jr, r, t, e, p})
    jr, r = channel.decode_frame('[null,null,"t","e",null]')
    assert.is_nil(jr)
    assert.is_nil(r)
    assert.is_nil((channel.decode_frame('{"a":1}')))
    assert.is_nil((channel.decode_frame('[1,2,3]')))
    assert.is_nil((channel.decode_frame('not json')))
  end)

  it("decodes forms as Plug does", function()
    assert.same({user = {name = "José", tags = {"a", "b"}}, k = ""},
      channel.decode_form("user%5Bname%5D=Jos%C3%A9&user[tags][]=a&user[tags][]=b&k="))
  end)
end)

describe("channel endpoint", function()
  it("drives channels from the official phoenix client under Node.js", function()
    assert(io.open("spec/support/node_modules/phoenix/package.json"), "npm phoenix missing: make spec-deps")
    local r, raw = with_app(function(port) return node("spec/support/phoenix_client.js", port) end)
    assert.is_nil(r.error, raw)
    assert.equal("error", r.bad)                                        -- connect refused
    assert.same({ok = {user = "ada", topic = "room:lobby"}}, r.joinA)   -- join reply payload
    assert.same({ok = {user = "bob", topic = "room:lobby"}}, r.joinB)
    assert.same({ok = {pong = 41, user = "ada"}}, r.ping)               -- reply with payload
    assert.same({error = {reason = "nope"}}, r.refuse)
    assert.same({error = {reason = "unknown event whatever"}}, r.unknown)
    assert.same({ok = {late = true}}, r.later)                          -- socket_ref + reply
    -- broadcast reaches both, broadcast_from skips the sender, push reaches one
    assert.same({{from = "B", text = "hi all"}, {pushed = 7}}, r.seenA)
    assert.same({{from = "B", text = "hi all"}, {from = "A", text = "not me"}}, r.seenB)
    assert.equal(1, r.crash.errors)                                     -- phx_error, then rejoin
    assert.equal("joined", r.crash.rejoined)
    assert.same({ok = {pong = 1, user = "ada"}}, r.afterCrash)          -- the others unaffected
    assert.same({ok = {pong = 2, user = "ada"}}, r.crashPing)           -- the rejoined one works
    assert.same({error = {reason = "unmatched topic"}}, r.unmatched)
    assert.same({error = {reason = "refused"}}, r.refused)
    assert.same({error = {reason = "join crashed"}}, r.joincrash)
    assert.equal("ok", r.leave)
    assert.is_true(r.heartbeats >= 2)
    assert.is_true(r.connected)
  end)

  it("answers raw frames: heartbeat, unjoined leave, malformed input, unknown topics", function()
    with_app(function(port)
      local c = assert(ws.connect(("ws://127.0.0.1:%d/socket/websocket?token=letmein&vsn=2.0.0"):format(port)))
      frame(c, nil, "16", "phoenix", "heartbeat", {})
      assert.same({json.null, "16", "phoenix", "phx_reply", {status = "ok", response = {}}}, recv(c))
      frame(c, nil, "2", "lv:", "phx_leave", {})
      assert.same({json.null, "2", "lv:", "phx_reply", {status = "ok", response = {}}}, recv(c))
      c:send("text", "garbage")
      c:send("text", '{"not":"an array"}')
      c:send("text", '[1,2]')
      frame(c, "9", "10", "room:x", "ping", {x = 1})     -- not joined
      assert.same({"9", "10", "room:x", "phx_reply",
        {status = "error", response = {reason = "unmatched topic"}}}, recv(c))
      frame(c, "11", "11", "room:x", "phx_join", {})
      assert.same({"11", "11", "room:x", "phx_reply",
        {status = "ok", response = {user = "anon", topic = "room:x"}}}, recv(c))
      -- a second join of the same topic replaces the first
      frame(c, "12", "12", "room:x", "phx_join", {})
      assert.same("12", recv(c)[1])
      frame(c, "11", "13", "room:x", "ping", {x = 1})    -- the old join_ref is gone
      assert.equal("error", recv(c)[5].status)
      frame(c, "12", "14", "room:x", "ping", {x = 2})
      assert.same({"12", "14", "room:x", "phx_reply", {status = "ok", response = {pong = 2, user = "anon"}}}, recv(c))
      frame(c, "12", "15", "room:x", "bye", {})          -- stop with a reply, normal: no phx_error
      assert.same({"12", "15", "room:x", "phx_reply", {status = "ok", response = {}}}, recv(c))
      frame(c, nil, "17", "phoenix", "heartbeat", {})
      assert.same("17", recv(c)[2])
      c:close(1000)
    end)
  end)

  it("refuses a bad serializer version and a refused connect", function()
    with_app(function(port)
      local c, err = ws.connect(("ws://127.0.0.1:%d/socket/websocket?token=letmein&vsn=1.0.0"):format(port))
      assert.is_nil(c)
      assert.truthy(tostring(err):find("400"))
      c, err = ws.connect(("ws://127.0.0.1:%d/socket/websocket?token=bad&vsn=2.0.0"):format(port))
      assert.is_nil(c)
      assert.truthy(tostring(err):find("403"))
    end)
  end)
end)
