-- A metrics dashboard (a Phoenix LiveView dashboard translated to Lua):
-- counters pushed by a GenServer over PubSub, refresh and reset buttons,
-- memory formatting, a chart drawn by a JS hook from push_event, and the
-- time of the last update (examples/live_dashboard.lua).
local mb = require "moonbeam"
local live = require "moonbeam.live"
local pubsub = require "moonbeam.pubsub"
local gen_server = require "moonbeam.gen_server"
local metrics = require "live_views.metrics"

local M = {}

local function format_bytes(n)
  if n < 1024 then return ("%d B"):format(n) end
  if n < 1024 * 1024 then return ("%.1f KB"):format(n / 1024) end
  return ("%.1f MB"):format(n / (1024 * 1024))
end

M.render = live.template([[
<h1>Metrics</h1>
<dl>
  <dt>Requests</dt><dd id="requests"><%= @m.requests %></dd>
  <dt>Errors</dt><dd id="errors"><%= @m.errors %></dd>
  <dt>Memory</dt><dd id="memory"><%= format_bytes(@m.memory) %></dd>
  <dt>Processes</dt><dd id="processes"><%= @m.processes %></dd>
</dl>
<p>Last updated: <span id="updated"><%= os.date("!%H:%M:%S", @m.at) %></span>
  (<span id="updates"><%= @updates %></span> updates)</p>
<button id="refresh" phx-click="refresh">Refresh</button>
<button id="reset" phx-click="reset">Reset</button>
<pre id="chart" phx-hook="Chart" phx-update="ignore"></pre>
]], {env = {format_bytes = format_bytes}})

local function empty() return {requests = 0, errors = 0, memory = 0, processes = 0, at = os.time(), history = {}} end

local function show(socket, m)
  live.assign(socket, {m = m, updates = (socket.assigns.updates or 0) + 1})
  return live.push_event(socket, "points", {points = m.history})
end

function M.mount(_params, _session, socket)
  live.assign(socket, {page_title = "Dashboard", updates = 0})
  if live.connected(socket) and mb.whereis(metrics.NAME) then
    pubsub.subscribe(metrics.PUBSUB, metrics.TOPIC)
    return "ok", live.assign(socket, "m", gen_server.call(metrics.NAME, "snapshot"))
  end
  local m = mb.whereis(metrics.NAME) and gen_server.call(metrics.NAME, "snapshot") or empty()
  return "ok", live.assign(socket, "m", m)
end

function M.handle_event(event, _params, socket)
  if event == "refresh" then return "noreply", show(socket, gen_server.call(metrics.NAME, "snapshot")) end
  if event == "reset" then return "noreply", show(socket, gen_server.call(metrics.NAME, "reset")) end
  return "noreply", socket
end

function M.handle_info(msg, socket)
  if msg[1] == "metrics" then show(socket, msg[2]) end
  return "noreply", socket
end

M.format_bytes = format_bytes
return M
