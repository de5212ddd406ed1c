-- A live view holding a list of stateful components (live_views.counter_component):
-- add and remove counters, each counting by itself, and reset them all
-- with send_update.
local live = require "moonbeam.live"
local M = {}

M.render = live.template([[
<div id="components">
  <button id="add" phx-click="add">add</button>
  <button id="remove" phx-click="remove">remove last</button>
  <button id="reset" phx-click="reset">reset all</button>
  <p id="total">counters: <%= #@ids %></p>
  <% for _, id in ipairs(@ids) do %><%= live.component("live_views.counter_component", {id = id, label = "counter " .. id}) %><% end %>
</div>
]], {env = {live = live}})

function M.mount(_params, _session, socket)
  return "ok", live.assign(socket, {ids = {1, 2}, next = 3, page_title = "Components"})
end

function M.handle_event(event, _params, socket)
  local a = socket.assigns
  if event == "add" then
    local ids = {table.unpack(a.ids)}
    ids[#ids + 1] = a.next
    live.assign(socket, {ids = ids, next = a.next + 1})
  elseif event == "remove" then
    local ids = {table.unpack(a.ids)}
    ids[#ids] = nil
    live.assign(socket, "ids", ids)
  elseif event == "reset" then
    for _, id in ipairs(a.ids) do live.send_update("live_views.counter_component", {id = id, count = 0}) end
  else
    error("components: unknown event " .. tostring(event))
  end
  return "noreply", socket
end

return M
