-- The counter live view (examples/live_counter.lua, docs/live.md).
local live = require "moonbeam.live"

local M = {}

M.render = live.template[[
<div class="counter">
  <h1>Count: <span id="count"><%= @count %></span></h1>
  <button id="inc" phx-click="inc">+</button>
  <button id="dec" phx-click="dec">-</button>
  <button id="add" phx-click="add" phx-value-by="10">+10</button>
  <% if @count < 0 then %><p id="neg" class="error">below zero</p><% end %>
</div>
]]

function M.mount(params, _session, socket)
  return "ok", live.assign(socket, {count = tonumber(params.start) or 0, page_title = "Counter"})
end

function M.handle_event(event, params, socket)
  if event == "inc" then
    live.update(socket, "count", function(n) return n + 1 end)
  elseif event == "dec" then
    live.update(socket, "count", function(n) return n - 1 end)
  elseif event == "add" then
    live.update(socket, "count", function(n) return n + (tonumber(params.by) or 0) end)
  else
    -- as a Phoenix view with no matching clause: the view crashes, the
    -- client shows the error and rejoins, mount starts it again
    error("counter: unknown event " .. tostring(event))
  end
  live.assign(socket, "page_title", "Count " .. socket.assigns.count)
  return "noreply", socket
end

return M
