-- A chat whose messages are a stream (phx-update="stream"): each message is
-- sent to the browser once and then forgotten by the server; the browser's
-- DOM keeps the list. Deleting a message and clearing the list are
-- stream_delete and a stream reset. Two browsers see each other's messages
-- through PubSub.
local live = require "moonbeam.live"
local pubsub = require "moonbeam.pubsub"

local PUBSUB, TOPIC = "live_examples", "chat:stream"

local M = {}

M.render = live.template[[
<h1>Stream chat</h1>
<ul id="messages" phx-update="stream"><% for _, e in ipairs(@streams.messages) do %>
  <li id="<%= e.id %>" class="msg"><b><%= e.item.from %></b>: <%= e.item.text %>
    <button class="del" phx-click="delete" phx-value-id="<%= e.id %>">x</button></li><% end %></ul>
<form id="chat-form" phx-submit="send">
  <input id="nick" name="nick" value="<%= @nick %>">
  <input id="text" name="text" value="" autocomplete="off">
  <button id="send" type="submit">Send</button>
</form>
<button id="clear" phx-click="clear">clear my list</button>
<p id="count"><%= @received %> received</p>
]]

local function new_id()
  local bytes = require("moonbeam.core").crypto.random(6)
  return (bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

function M.mount(params, _session, socket)
  if live.connected(socket) then pubsub.subscribe(PUBSUB, TOPIC) end
  live.assign(socket, {nick = params.nick or "anon", received = 0, page_title = "Stream chat"})
  local welcome = {{id = "welcome", from = "server", text = "welcome"}}
  return "ok", live.stream(socket, "messages", welcome)
end

function M.handle_event(event, params, socket)
  if event == "send" then
    if params.text and params.text ~= "" then
      pubsub.broadcast(PUBSUB, TOPIC, {"chat_msg", new_id(), params.nick or "anon", params.text})
      live.assign(socket, "nick", params.nick)
    end
  elseif event == "delete" then
    live.stream_delete_by_dom_id(socket, "messages", params.id)
  elseif event == "clear" then
    live.stream(socket, "messages", {}, {reset = true})
  else
    error("stream chat: unknown event " .. tostring(event))
  end
  return "noreply", socket
end

function M.handle_info(msg, socket)
  if msg[1] == "chat_msg" then
    live.stream_insert(socket, "messages", {id = msg[2], from = msg[3], text = msg[4]})
    live.update(socket, "received", function(n) return n + 1 end)
  end
  return "noreply", socket
end

return M
