-- Client features in one view: phx-keydown with phx-key, phx-focus/phx-blur,
-- phx-debounce, a JS hook (pushEvent with a reply, handleEvent), live patch
-- (a link and push_patch) with handle_params, live navigation, page title.
local live = require "moonbeam.live"

local M = {}

M.render = live.template[[
<h1 id="tab">Tab <%= @tab %></h1>
<input id="key" phx-keydown="key" phx-key="Enter">
<p id="last-key"><%= @last_key %></p>
<input id="focus" phx-focus="focused" phx-blur="blurred">
<p id="focus-state"><%= @focus %></p>
<form id="search-form" phx-change="search">
  <input id="q" name="q" phx-debounce="300" autocomplete="off">
</form>
<p id="query"><%= @query %></p><p id="searches"><%= @searches %></p>
<div id="hook" phx-hook="Pinger" data-reply=""></div>
<p id="pings"><%= @pings %></p>
<a id="patch" data-phx-link="patch" data-phx-link-state="push" href="/features?tab=two">tab two</a>
<button id="server-patch" phx-click="tab3">tab three</button>
<a id="nav" data-phx-link="redirect" data-phx-link-state="push" href="/counter/5">counter at 5</a>
<p id="flash"><%= @flash.info %></p>
<button id="flash-redirect" phx-click="flash_redirect">flash, then redirect</button>
<button id="flash-navigate" phx-click="flash_navigate">flash, then navigate</button>
]]

function M.mount(_params, _session, socket)
  return "ok", live.assign(socket, {tab = "one", last_key = "", focus = "none", query = "", searches = 0, pings = 0})
end

function M.handle_params(params, _uri, socket)
  local tab = params.tab or "one"
  return "noreply", live.assign(socket, {tab = tab, page_title = "Features " .. tab})
end

function M.handle_event(event, params, socket)
  local a = socket.assigns
  if event == "key" then
    live.assign(socket, "last_key", params.key .. ":" .. (params.value or ""))
  elseif event == "focused" or event == "blurred" then
    live.assign(socket, "focus", event)
  elseif event == "search" then
    live.assign(socket, {query = params.q or "", searches = a.searches + 1})
  elseif event == "ping" then
    live.assign(socket, "pings", a.pings + 1)
    live.push_event(socket, "pong", {n = params.n})
    return "reply", {pong = (params.n or 0) + 1}, socket
  elseif event == "flash_redirect" then      -- the flash survives the page load
    live.put_flash(socket, "info", "redirected")
    live.redirect(socket, {to = "/features?tab=r"})
  elseif event == "flash_navigate" then      -- and the live navigation
    live.put_flash(socket, "info", "navigated")
    live.push_navigate(socket, {to = "/features?tab=n"})
  elseif event == "tab3" then
    live.push_patch(socket, {to = "/features?tab=three"})
  end
  return "noreply", socket
end

return M
