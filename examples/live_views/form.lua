-- A form with validation: phx-change validates as the user types, phx-submit
-- saves and shows a flash (examples/live_form.lua, docs/live.md).
local live = require "moonbeam.live"

local M = {}

M.render = live.template[[
<h1>Sign up</h1>
<% if @flash.info then %><p id="flash" class="flash"><%= @flash.info %></p><% end %>
<form id="user-form" phx-change="validate" phx-submit="save">
  <label>Name <input id="name" name="user[name]" value="<%= @user.name %>"></label>
  <% if @errors.name then %><span id="name-error" class="error"><%= @errors.name %></span><% end %>
  <label>Email <input id="email" name="user[email]" value="<%= @user.email %>"></label>
  <% if @errors.email then %><span id="email-error" class="error"><%= @errors.email %></span><% end %>
  <button id="save" type="submit"<% if next(@errors) then %> disabled<% end %>>Save</button>
</form>
<ul id="saved"><% for _, u in ipairs(@saved) do %><li><%= u.name %> &lt;<%= u.email %>&gt;</li><% end %></ul>
]]

-- Errors of the fields the user has touched (all of them on submit).
local function validate(user, touched)
  local errors = {}
  local name, email = user.name or "", user.email or ""
  if touched.name and #name < 2 then errors.name = "name: at least 2 characters" end
  if touched.email and not email:match("^[^@%s]+@[^@%s]+%.[^@%s]+$") then errors.email = "email: not an address" end
  return errors
end

function M.mount(_params, _session, socket)
  return "ok", live.assign(socket, {user = {name = "", email = ""}, errors = {}, saved = {},
                                    page_title = "Sign up"})
end

function M.handle_event(event, params, socket)
  local user = params.user or {}
  if event == "validate" then
    -- fields not yet typed into also come as user[_unused_<field>]: no error for them
    local touched = {name = user._unused_name == nil, email = user._unused_email == nil}
    live.assign(socket, {user = user, errors = validate(user, touched)})
  elseif event == "save" then
    local errors = validate(user, {name = true, email = true})
    if next(errors) then
      live.assign(socket, {user = user, errors = errors})
    else
      local saved = {table.unpack(socket.assigns.saved)}
      saved[#saved + 1] = user
      live.assign(socket, {saved = saved, user = {name = "", email = ""}, errors = {}})
      live.put_flash(socket, "info", "Saved " .. user.name)
    end
  end
  return "noreply", socket
end

return M
