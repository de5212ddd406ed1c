-- A stateful component (moonbeam.live.component): one counter of the list in
-- live_views.components. Its count is its own state: clicks aimed at it
-- (phx-target="<%= @myself %>") run its handle_event, and only its part of
-- the page is sent. The parent's "reset all" reaches it through
-- live.send_update.
local live = require "moonbeam.live"
local M = {}

M.render = live.template[[
<div id="item-<%= @id %>" class="item">
  <span class="label"><%= @label %></span>: <span class="n" id="n-<%= @id %>"><%= @count %></span>
  <button id="inc-<%= @id %>" phx-click="inc" phx-target="<%= @myself %>">+</button>
  <% if @count >= 3 then %><b id="many-<%= @id %>">many</b><% end %>
</div>
]]

function M.mount(socket)
  return "ok", live.assign(socket, "count", 0)
end

-- The parent passes id and label on each render; send_update passes count.
function M.update(assigns, socket)
  return "ok", live.assign(socket, assigns)
end

function M.handle_event(event, _params, socket)
  if event == "inc" then live.update(socket, "count", function(n) return n + 1 end)
  else error("counter component: unknown event " .. tostring(event)) end
  return "noreply", socket
end

return M
