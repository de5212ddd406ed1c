-- A chat room: each connected view subscribes to the room's PubSub topic, so
-- two browsers see each other's messages (examples/live_chat.lua).
local live = require "moonbeam.live"
local pubsub = require "moonbeam.pubsub"

local PUBSUB, TOPIC = "live_examples", "chat:lobby"

local M = {}

M.render = live.template[[
<h1>Chat</h1>
<ul id="messages"><% for _, m in ipairs(@messages) do %>
  <li class="msg"><b><%= m.from %></b>: <%= m.text %></li><% end %></ul>
<form id="chat-form" phx-submit="send">
  <input id="nick" name="nick" value="<%= @nick %>">
  <input id="text" name="text" value="" autocomplete="off">
  <button id="send" type="submit">Send</button>
</form>
<p id="count"><%= #@messages %> messages</p>
]]

function M.mount(params, _session, socket)
  if live.connected(socket) then pubsub.subscribe(PUBSUB, TOPIC) end
  return "ok", live.assign(socket, {messages = {}, nick = params.nick or "anon", page_title = "Chat"})
end

function M.handle_event(event, params, socket)
  if event == "send" and params.text and params.text ~= "" then
    pubsub.broadcast(PUBSUB, TOPIC, {"chat_msg", params.nick or "anon", params.text})
    live.assign(socket, "nick", params.nick)
  end
  return "noreply", socket
end

function M.handle_info(msg, socket)
  if msg[1] == "chat_msg" then
    local list = {table.unpack(socket.assigns.messages)}
    list[#list + 1] = {from = msg[2], text = msg[3]}
    live.assign(socket, "messages", list)
  end
  return "noreply", socket
end

return M
