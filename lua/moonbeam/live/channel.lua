--- moonbeam.live.channel: the channel "lv:<id>" of a connected live view (a
--- moonbeam.channel module; one process per view). It checks the signed
--- session of the dead render, mounts the view connected, and turns client
--- events, live patches and the view's messages into diffs
--- (LIVEVIEW-PROTOCOL.md sections 2 to 5).
local live = require "moonbeam.live"
local channel = require "moonbeam.channel"
local session = require "moonbeam.http.session"
local component = require "moonbeam.live.component"

local M = {}

local TWO_WEEKS = 14 * 24 * 3600

-- Navigation fields of a reply/push, from what the view asked for; a
-- redirect or navigate carries the view's flash (moonbeam.live.flash_token).
local function navigation(socket, resp)
  if socket.redirect_to then
    resp.redirect = socket.redirect_to
    resp.redirect.flash = live.flash_token(socket.endpoint, socket)
    socket.redirect_to = nil
    return "redirect"
  elseif socket.navigate then
    resp.live_redirect = socket.navigate
    resp.live_redirect.flash = live.flash_token(socket.endpoint, socket)
    socket.navigate = nil
    return "live_redirect"
  elseif socket.patch then
    resp.live_patch = socket.patch
    return "live_patch"
  end
end

-- A push_patch runs handle_params for the new URL (Phoenix does the same).
local function apply_patch(st)
  local lv = st.lv
  local patch = lv.patch
  if not patch then return end
  local url = patch.to
  if not url:match("^%a[%w+.-]*://") then url = (st.origin or "") .. url end
  local params = live.url_params(st.cfg, url, lv.view)
  st.url = url
  lv.patch = nil
  lv = live.callback(st.view, "handle_params", lv, params, url, lv)
  st.lv = lv
  return patch
end

function M.join(topic, payload, csocket)
  local cfg = csocket.endpoint
  local id = topic:sub(4)
  local data = session.verify(cfg.secret_key_base, cfg.signing_salt or "moonbeam live", payload.session,
    cfg.max_age or TWO_WEEKS)
  if type(data) ~= "table" or data.id ~= id or type(data.view) ~= "string" then
    return "error", {reason = "stale"}
  end
  local url = payload.url or payload.redirect
  if type(url) ~= "string" then return "error", {reason = "stale"} end
  local view_name = data.view
  local params
  if payload.redirect then
    local p, v = live.url_params(cfg, url)
    if not v then return "error", {reason = "unauthorized"} end
    params, view_name = p, v
  else
    params = live.url_params(cfg, url, view_name)
  end
  local okv, view = pcall(require, view_name)
  if not okv or type(view) ~= "table" then return "error", {reason = "stale"} end
  local lv = live.new_socket{id = id, view = view_name, connected = true, endpoint = cfg,
    transport = csocket.transport, topic = topic, join_ref = csocket.join_ref,
    connect_params = payload.params}
  -- a navigate's flash, or the one the dead render read from the cookie
  lv.assigns.flash = live.flash_of(cfg, payload.flash) or (type(data.flash) == "table" and data.flash) or {}
  lv = live.callback(view, "mount", lv, params, data.session or {}, lv)
  local st = {lv = lv, view = view, cfg = cfg, url = url, origin = url:match("^(%a[%w+.-]*://[^/]*)")}
  local resp = {}
  if lv.redirect_to or lv.navigate then
    navigation(lv, resp)
    return "error", resp
  end
  st.lv = live.callback(view, "handle_params", lv, params, url, lv)
  local patch = apply_patch(st)
  if st.lv.redirect_to or st.lv.navigate then
    navigation(st.lv, resp)
    return "error", resp
  end
  local rendered = live.render(view, st.lv, true)
  resp.rendered = rendered
  resp.liveview_version = live.LIVEVIEW_VERSION
  if patch then resp.live_patch = patch end
  csocket.live = st
  return "ok", resp, csocket
end

-- The response of an event: diff, reply value, navigation.
local function response(st, reply, comps)
  local patch = apply_patch(st)
  local lv = st.lv
  local resp = {}
  navigation(lv, resp)
  if patch then resp.live_patch = patch end
  -- after a component's event only its components render, unless handle_params ran
  local diff = live.render(st.view, lv, false, comps, patch ~= nil or not comps)
  if reply ~= nil then
    diff = diff or {}
    diff.r = reply
  end
  if diff then resp.diff = diff end
  return resp
end

local function event_params(payload)
  local v = payload.value
  if payload.type == "form" then
    local p = channel.decode_form(type(v) == "string" and v or "")
    for k, x in pairs(type(payload.meta) == "table" and payload.meta or {}) do
      if k == "_target" then
        local path = {}
        for part in tostring(x):gmatch("[^%[%]]+") do path[#path + 1] = part end
        p._target = path
      else
        p[k] = x
      end
    end
    return p
  end
  if type(v) ~= "table" then return {value = v} end
  return v
end

function M.handle_in(event, payload, csocket)
  local st = csocket.live
  if event == "event" then
    if payload.cid ~= nil then
      -- an event aimed at a component (phx-target): its handle_event, its diff
      local comp = component.find(st.lv.private.comps or component.registry(), payload.cid)
      if not comp then return "reply", {"ok", {}}, csocket end   -- removed meanwhile (Phoenix: a no-op)
      local mod = comp.module
      if not mod.handle_event then
        error(("live component %s has no handle_event for %q"):format(comp.name, tostring(payload.event)), 0)
      end
      local cs, reply = live.callback(mod, "handle_event", comp.socket, payload.event, event_params(payload),
        comp.socket)
      comp.socket = cs
      local lv = st.lv           -- a component navigates for its view
      lv.redirect_to, lv.navigate, lv.patch = lv.redirect_to or cs.redirect_to, lv.navigate or cs.navigate,
        lv.patch or cs.patch
      cs.redirect_to, cs.navigate, cs.patch = nil, nil, nil
      return "reply", {"ok", response(st, reply, {comp})}, csocket
    end
    local view = st.view
    if not view.handle_event then
      error(("live view %s has no handle_event for %q"):format(st.lv.view, tostring(payload.event)), 0)
    end
    local lv, reply = live.callback(view, "handle_event", st.lv, payload.event, event_params(payload), st.lv)
    st.lv = lv
    return "reply", {"ok", response(st, reply)}, csocket
  elseif event == "live_patch" then
    local url = payload.url
    local params, v = live.url_params(st.cfg, url)
    if v and v ~= st.lv.view then return "reply", {"ok", {link_redirect = true}}, csocket end
    params = params or live.url_params(st.cfg, url, st.lv.view)
    st.url = url
    st.lv = live.callback(st.view, "handle_params", st.lv, params, url, st.lv)
    return "reply", {"ok", response(st)}, csocket
  elseif event == "cids_will_destroy" then
    local reg = st.lv.private.comps
    if reg and type(payload.cids) == "table" then component.mark(reg, payload.cids) end
    return "reply", {"ok", {}}, csocket
  elseif event == "cids_destroyed" then
    local reg = st.lv.private.comps
    local gone = (reg and type(payload.cids) == "table") and component.delete(reg, payload.cids) or {}
    if #gone == 0 then gone = channel.EMPTY_LIST end
    return "reply", {"ok", {cids = gone}}, csocket
  end
  return "reply", {"ok", {}}, csocket
end

function M.handle_info(msg, csocket)
  local st = csocket.live
  local resp
  if type(msg) == "table" and msg[1] == "$live_send_update" then
    local comp = component.find(st.lv.private.comps or component.registry(), msg[2], (msg[3] or {}).id)
    if not comp then return "noreply", csocket end    -- removed meanwhile (Phoenix only warns)
    local a = {}
    for k, v in pairs(msg[3]) do a[k] = v end
    if comp.module.update then
      comp.socket = live.callback(comp.module, "update", comp.socket, a, comp.socket)
    else
      live.assign(comp.socket, a)
    end
    resp = response(st, nil, {comp})
  else
    st.lv = live.callback(st.view, "handle_info", st.lv, msg, st.lv)
    resp = response(st)
  end
  if resp.redirect then channel.push(csocket, "redirect", resp.redirect) end
  if resp.live_redirect then channel.push(csocket, "live_redirect", resp.live_redirect) end
  if resp.live_patch then channel.push(csocket, "live_patch", resp.live_patch) end
  if resp.diff then channel.push(csocket, "diff", resp.diff) end
  return "noreply", csocket
end

function M.terminate(reason, csocket)
  local st = csocket.live
  if st and st.view.terminate then st.view.terminate(reason, st.lv) end
end

return M
