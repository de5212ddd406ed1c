-- A channel for spec/channel_spec.lua (see channel_app.lua).
local mb = require "moonbeam"
local channel = require "moonbeam.channel"

local M = {}

function M.join(topic, payload, socket)
  if topic == "room:refuse" then return "error", {reason = "refused"} end
  if topic == "room:joincrash" then error("join crash on purpose") end
  socket = channel.assign(socket, "name", payload.name or "?")
  return "ok", {user = socket.assigns.user, topic = topic}, socket
end

function M.handle_in(event, payload, socket)
  if event == "ping" then
    return "reply", {"ok", {pong = payload.x, user = socket.assigns.user}}, socket
  elseif event == "shout" then
    channel.broadcast(socket, "shout", {from = socket.assigns.name, text = payload.text})
    return "noreply", socket
  elseif event == "shout_from" then
    channel.broadcast_from(socket, "shout", {from = socket.assigns.name, text = payload.text})
    return "reply", "ok", socket
  elseif event == "push_me" then
    channel.push(socket, "pushed", {n = payload.n})
    return "noreply", socket
  elseif event == "later" then
    -- reply from a timer message, through socket_ref
    mb.send_after(50, mb.self(), {"later", channel.socket_ref(socket)})
    return "noreply", socket
  elseif event == "boom" then
    error("channel crash on purpose")
  elseif event == "refuse" then
    return "reply", {"error", {reason = "nope"}}, socket
  elseif event == "bye" then
    return "stop", "normal", "ok", socket
  end
  return "reply", {"error", {reason = "unknown event " .. event}}, socket
end

function M.handle_info(msg, socket)
  if msg[1] == "later" then channel.reply(msg[2], "ok", {late = true}) end
  return "noreply", socket
end

return M
