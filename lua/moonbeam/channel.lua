--- moonbeam.channel: Phoenix.Channel's model over moonbeam's WebSocket server.
---
--- A socket endpoint (`channel.endpoint(def)`, a plug for the route
--- "<path>/websocket") speaks Phoenix's v2 JSON serializer: every frame is the
--- text of `[join_ref, ref, topic, event, payload]`. The connection's process
--- (the transport) answers heartbeats on topic "phoenix", routes `phx_join` to
--- the channel module whose pattern matches the topic, and spawns one process
--- per joined channel. A channel process monitors its transport (it ends with
--- the connection); the transport monitors each channel, so a crash in one
--- channel sends `phx_error` for that topic only and the client rejoins it.
--- Broadcasts go through moonbeam.pubsub: each channel process subscribes to
--- its topic. See docs/channels.md.
local mb = require "moonbeam"
local json = require "moonbeam.http.json"
local util = require "moonbeam.http.util"
local pubsub = require "moonbeam.pubsub"

local M = {}

local null = json.null
local function jv(v) if v == nil then return null end return v end
local function nn(v) if v == null then return nil end return v end

--- A value that encodes as the empty JSON list `[]` (lua-cjson 2.1 writes
--- an empty table as `{}`). It is a string no client sends: "\0[]".
M.EMPTY_LIST = "\0[]"
local EMPTY_JSON = '"\\u0000[]"'

--- The JSON text of one v2 frame.
function M.encode_frame(join_ref, ref, topic, event, payload)
  local s, err = json.encode({jv(join_ref), jv(ref), topic, event, payload or {}})
  if not s then error("channel: payload cannot be encoded as JSON: " .. tostring(err), 3) end
  if s:find(EMPTY_JSON, 1, true) then s = s:gsub('"\\u0000%[%]"', "[]") end
  return s
end

-- JSON null cannot travel in a message (it is a light userdata): it becomes nil.
local function strip_nulls(t, depth)
  if depth > 64 then return end
  for k, v in pairs(t) do
    if v == null then t[k] = nil
    elseif type(v) == "table" then strip_nulls(v, depth + 1) end
  end
end

--- Decodes a v2 frame: join_ref, ref, topic, event, payload; or nil, why.
function M.decode_frame(text)
  local v, err = json.decode(text)
  if not v then return nil, "invalid JSON: " .. tostring(err) end
  if type(v) ~= "table" or #v ~= 5 then return nil, "not a 5-element array" end
  local join_ref, ref, topic, event, payload = nn(v[1]), nn(v[2]), v[3], v[4], v[5]
  if type(topic) ~= "string" or type(event) ~= "string" then return nil, "topic and event must be strings" end
  if join_ref ~= nil and type(join_ref) ~= "string" then join_ref = tostring(join_ref) end
  if ref ~= nil and type(ref) ~= "string" then ref = tostring(ref) end
  if type(payload) ~= "table" then payload = {} end
  strip_nulls(payload, 0)
  return join_ref, ref, topic, event, payload
end

-- ------------------------------------------------------------ socket values

--- `socket.assigns[k] = v`, returns the socket (also `assign(socket, {k=v})`).
function M.assign(socket, k, v)
  if type(k) == "table" then
    for kk, vv in pairs(k) do socket.assigns[kk] = vv end
  else
    socket.assigns[k] = v
  end
  return socket
end

local function out(socket, text)
  mb.send(socket.transport, {"$chan_out", text})
end

--- Pushes `event` with `payload` to this channel's client.
function M.push(socket, event, payload)
  out(socket, M.encode_frame(socket.join_ref, nil, socket.topic, event, payload))
end

local function check_pubsub(socket, fn)
  if not socket.pubsub then error("channel." .. fn .. ": the endpoint has no pubsub", 3) end
end

--- Sends `event`/`payload` to every client joined to the socket's topic.
function M.broadcast(socket, event, payload)
  check_pubsub(socket, "broadcast")
  pubsub.broadcast(socket.pubsub, socket.topic, {"$chan_broadcast", event, payload or {}})
end

--- As broadcast, except to the calling channel's own client.
function M.broadcast_from(socket, event, payload)
  check_pubsub(socket, "broadcast_from")
  pubsub.broadcast_from(socket.pubsub, mb.self(), socket.topic, {"$chan_broadcast", event, payload or {}})
end

--- Broadcast from any process (Endpoint.broadcast): PubSub name, topic.
function M.broadcast_to(pubsub_name, topic, event, payload)
  pubsub.broadcast(pubsub_name, topic, {"$chan_broadcast", event, payload or {}})
end

--- A reference to the event being handled, for a later `reply`.
function M.socket_ref(socket)
  if not socket.ref then error("channel.socket_ref: only inside handle_in of an event with a ref", 2) end
  return {socket.transport, socket.join_ref, socket.ref, socket.topic}
end

--- Replies later to the event of `socket_ref`: status "ok"/"error", payload.
function M.reply(socket_ref, status, payload)
  mb.send(socket_ref[1], {"$chan_out", M.encode_frame(socket_ref[2], socket_ref[3], socket_ref[4],
    "phx_reply", {status = status, response = payload or {}})})
end

-- ------------------------------------------------------------ the channel process

local function reply_frame(socket, ref, status, response)
  out(socket, M.encode_frame(socket.join_ref, ref, socket.topic, "phx_reply",
    {status = status, response = response or {}}))
end

-- A handle_in reply value: "ok", "error", or {status, payload}.
local function split_reply(r)
  if type(r) == "table" then return r[1], r[2] end
  return r, nil
end

local function terminate(mod, reason, socket)
  if mod.terminate then
    local ok, err = pcall(mod.terminate, reason, socket)
    if not ok then mb.exit({"error", tostring(err)}) end
  end
end

local function stop(mod, reason, socket)
  terminate(mod, reason, socket)
  if reason == "normal" or reason == "shutdown" or (type(reason) == "table" and reason[1] == "shutdown") then
    return mb.exit("normal")
  end
  mb.exit(reason)
end

-- Handles a callback's result; returns the socket to go on with.
local function result(mod, socket, kind, ref, a, b, c)
  if kind == "noreply" then return a end
  if kind == "reply" then
    local status, payload = split_reply(a)
    reply_frame(b, ref, status, payload)
    return b
  end
  if kind == "stop" then
    if c ~= nil then -- "stop", reason, reply, socket
      local status, payload = split_reply(b)
      reply_frame(c, ref, status, payload)
      socket = c
    else
      socket = b or socket
    end
    return stop(mod, a, socket)
  end
  error(("channel %s: callback returned %s (want \"reply\", \"noreply\" or \"stop\")")
    :format(socket.topic, tostring(kind)), 0)
end

--- Process body of one joined channel (internal: spawned by the transport).
function M._run(modname, topic, join_ref, ref, payload, info)
  local mod = require(modname)
  local socket = {topic = topic, join_ref = join_ref, assigns = info.assigns or {},
                  transport = info.transport, pubsub = info.pubsub, endpoint = info.endpoint,
                  params = info.params, joined = false, channel = modname}
  local tref = mb.monitor(info.transport)
  local okj, kind, a, b = pcall(mod.join, topic, payload, socket)
  if not okj then
    require("moonbeam.logger").error(("channel %s: join crashed: %s"):format(topic, tostring(kind)))
    reply_frame(socket, ref, "error", {reason = "join crashed"})
    return mb.exit("normal")
  end
  if kind == "ok" then
    if b ~= nil then socket = b; a = a else socket = a or socket; a = {} end
    socket.joined = true
    if socket.pubsub then pubsub.subscribe(socket.pubsub, topic) end
    reply_frame(socket, ref, "ok", a)
    if mod.after_join then socket = mod.after_join(socket) or socket end
  else
    reply_frame(socket, ref, "error", kind == "error" and a or {reason = "join crashed"})
    return mb.exit("normal")
  end
  while true do
    local msg = mb.receive()
    local tag = type(msg) == "table" and msg[1]
    if tag == "$chan_in" then
      local event, p, r = msg[2], msg[3], msg[4]
      if not mod.handle_in then error(("channel %s: no handle_in for event %q"):format(topic, event), 0) end
      socket.ref = r
      local k, x, y, z = mod.handle_in(event, p, socket)
      socket = result(mod, socket, k, r, x, y, z)
      socket.ref = nil
    elseif tag == "$chan_broadcast" then
      if mod.handle_out then
        local k, x, y = mod.handle_out(msg[2], msg[3], socket)
        socket = result(mod, socket, k, nil, x, y)
      else
        M.push(socket, msg[2], msg[3])
      end
    elseif tag == "$chan_leave" then
      reply_frame(socket, msg[2], "ok", {})
      terminate(mod, {"shutdown", "left"}, socket)
      return mb.exit("normal")
    elseif tag == "$chan_close" then
      terminate(mod, {"shutdown", "closed"}, socket)
      return mb.exit("normal")
    elseif tag == "DOWN" and msg[2] == tref then
      terminate(mod, {"shutdown", "closed"}, socket)
      return mb.exit("normal")
    elseif mod.handle_info then
      local k, x, y = mod.handle_info(msg, socket)
      socket = result(mod, socket, k, nil, x, y)
    end
  end
end

-- ------------------------------------------------------------ the transport

local function match_channel(def, topic)
  for _, entry in ipairs(def.channels or {}) do
    local pat, mod = entry[1], entry[2]
    if pat == topic then return mod end
    local prefix = pat:match("^(.*)%*$")
    if prefix and topic:sub(1, #prefix) == prefix then return mod end
  end
end

local Transport = {}

function Transport.init(state)
  state.channels = {}   -- topic -> {pid, join_ref, mref}
  state.by_mref = {}    -- monitor ref -> topic
  state.self = mb.self()
  return "ok", state
end

local function text(s) return {"text", s} end

local function drop(state, topic, how)
  local ch = state.channels[topic]
  if not ch then return end
  state.channels[topic] = nil
  state.by_mref[ch.mref] = nil
  mb.demonitor(ch.mref, {flush = true})
  if how then mb.send(ch.pid, how) end
end

local function join(state, join_ref, ref, topic, payload)
  local modname = match_channel(state.def, topic)
  if not modname then
    return text(M.encode_frame(join_ref, ref, topic, "phx_reply",
      {status = "error", response = {reason = "unmatched topic"}}))
  end
  -- a second join of a joined topic replaces the first channel (Phoenix)
  if state.channels[topic] then drop(state, topic, {"$chan_close"}) end
  local max = state.def.max_channels or 100
  local n = 0
  for _ in pairs(state.channels) do n = n + 1 end
  if n >= max then
    return text(M.encode_frame(join_ref, ref, topic, "phx_reply",
      {status = "error", response = {reason = "too many channels joined"}}))
  end
  local info = {assigns = state.assigns, transport = state.self, pubsub = state.def.pubsub,
                endpoint = state.def.config, params = state.params}
  local pid, mref = mb.spawn_monitor(function(...) return require("moonbeam.channel")._run(...) end,
    modname, topic, join_ref, ref, payload, info)
  state.channels[topic] = {pid = pid, join_ref = join_ref, mref = mref}
  state.by_mref[mref] = topic
end

function Transport.handle_in(frame, state)
  if frame[1] ~= "text" then return "ok", state end
  local join_ref, ref, topic, event, payload = M.decode_frame(frame[2])
  if topic == nil then
    -- malformed frame: ignored (Phoenix logs it); the connection stays up
    if state.def.log_errors ~= false then
      require("moonbeam.logger").warning("channel: dropped a malformed frame: " .. tostring(ref))
    end
    return "ok", state
  end
  if type(payload) ~= "table" then payload = {} end
  if topic == "phoenix" and event == "heartbeat" then
    return "reply", text(M.encode_frame(nil, ref, "phoenix", "phx_reply", {status = "ok", response = {}})), state
  end
  if event == "phx_join" then
    local r = join(state, join_ref, ref, topic, payload)
    if r then return "reply", r, state end
    return "ok", state
  end
  local ch = state.channels[topic]
  if event == "phx_leave" then
    if ch then
      mb.send(ch.pid, {"$chan_leave", ref})
      drop(state, topic)
      return "ok", state
    end
    return "reply", text(M.encode_frame(join_ref, ref, topic, "phx_reply", {status = "ok", response = {}})), state
  end
  if ch and ch.join_ref == join_ref then
    mb.send(ch.pid, {"$chan_in", event, payload, ref})
    return "ok", state
  end
  return "reply", text(M.encode_frame(join_ref, ref, topic, "phx_reply",
    {status = "error", response = {reason = "unmatched topic"}})), state
end

function Transport.handle_info(msg, state)
  if type(msg) ~= "table" then return "ok", state end
  if msg[1] == "$chan_out" then return "reply", text(msg[2]), state end
  if msg[1] == "DOWN" then
    local topic = state.by_mref[msg[2]]
    if not topic then return "ok", state end
    local ch = state.channels[topic]
    state.channels[topic] = nil
    state.by_mref[msg[2]] = nil
    local reason = msg[5]
    if reason == "normal" then return "ok", state end
    return "reply", text(M.encode_frame(ch.join_ref, ch.join_ref, topic, "phx_error", {})), state
  end
  return "ok", state
end

function Transport.terminate(_, state)
  for topic in pairs(state.channels or {}) do drop(state, topic, {"$chan_close"}) end
end

M.transport = Transport

--- A plug for the route "<path>/websocket": checks `vsn` (2.x), runs the
--- definition's `connect(params, socket, connect_info)` ("ok", socket or
--- "error"), then upgrades. `def` is a table (or a module name giving one):
--- `channels` = {{"room:*", "myapp.room_channel"}, ...}, `pubsub` (a PubSub
--- name), optional `connect`, `config` (a sendable table given to channels
--- as socket.endpoint), `websocket` (websocket options), `max_channels`.
function M.endpoint(def)
  return function(conn)
    local d = type(def) == "string" and require(def) or def
    conn:fetch_query_params()
    local params = conn.query_params or {}
    local vsn = params.vsn or "2.0.0"
    if not tostring(vsn):match("^2%.") then
      return conn:text(400, "unsupported serializer version " .. tostring(vsn) .. "\n")
    end
    params.vsn = nil
    local socket = {assigns = {}, params = params}
    if d.connect then
      local kind, s = d.connect(params, socket, {peer = conn.peer, headers = conn.headers, conn = conn})
      if kind ~= "ok" then return conn:text(403, "connection refused\n") end
      socket = s or socket
    end
    local ws_opts = d.websocket or {}
    return conn:upgrade_websocket(Transport,
      {def = d, assigns = socket.assigns, params = params}, ws_opts)
  end
end

--- Parses a URL-encoded form as Plug does (`a[b]=1` nests, `a[]=` lists).
function M.decode_form(s)
  local form = {}
  for pair in (s or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k, v = util.decode(k, true), util.decode(v, true)
    local head, rest = k:match("^([^%[]+)(.*)$")
    if head then
      local t, key = form, head
      for part in rest:gmatch("%[([^%]]*)%]") do
        if type(t[key]) ~= "table" then t[key] = {} end
        t = t[key]
        key = part == "" and #t + 1 or part
      end
      t[key] = v
    end
  end
  return form
end

return M
