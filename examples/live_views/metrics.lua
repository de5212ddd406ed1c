-- The metrics GenServer of the dashboard: counts requests and errors (here
-- simulated), samples the runtime's memory and process count, and
-- broadcasts a snapshot over PubSub every `interval` ms.
local mb = require "moonbeam"
local gen_server = require "moonbeam.gen_server"
local pubsub = require "moonbeam.pubsub"

local M = {}
M.NAME, M.PUBSUB, M.TOPIC = "live_views.metrics", "live_examples", "metrics"

local function snapshot(st)
  local history = {}
  for i, v in ipairs(st.history) do history[i] = v end
  return {requests = st.requests, errors = st.errors, memory = math.floor(collectgarbage("count") * 1024),
          processes = #mb.processes(), at = os.time(), history = history}
end

local function publish(st)
  pubsub.broadcast(M.PUBSUB, M.TOPIC, {"metrics", snapshot(st)})
end

function M.start_link(opts)
  return gen_server.start_link(M, opts or {}, {name = M.NAME})
end

function M.init(opts)
  local st = {requests = 0, errors = 0, history = {}, interval = opts.interval or 1000}
  mb.send_after(st.interval, mb.self(), "tick")
  return "ok", st
end

function M.handle_call(req, _from, st)
  if req == "snapshot" then return "reply", snapshot(st), st end
  if req == "reset" then
    st.requests, st.errors, st.history = 0, 0, {}
    publish(st)
    return "reply", snapshot(st), st
  end
  return "reply", nil, st
end

function M.handle_info(msg, st)
  if msg == "tick" then
    local n = math.random(1, 5)
    st.requests = st.requests + n
    if math.random() < 0.2 then st.errors = st.errors + 1 end
    st.history[#st.history + 1] = n
    if #st.history > 20 then table.remove(st.history, 1) end
    publish(st)
    mb.send_after(st.interval, mb.self(), "tick")
  end
  return "noreply", st
end

return M
