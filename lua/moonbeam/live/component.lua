--- moonbeam.live.component: stateful components (Phoenix.LiveComponent's
--- model) inside a live view's process.
---
--- A component module has `render(assigns)` (a template) and optionally
--- `mount(socket)`, `update(assigns, socket)` (default: assign them all) and
--- `handle_event(event, params, socket)`. A template calls
--- `live.component(Module, {id = ..., ...})`; the pair (module, id) names one
--- component for the life of the view. The first call gives it a cid (1, 2,
--- ...), an own socket whose assigns hold `myself` (renders as the cid, for
--- `phx-target="<%= @myself %>"`) and runs mount then update; each later
--- render of the call runs update again. The view's diff then carries the
--- cid (a JSON number) where the component sits and, under the top-level
--- "c", `{cid: node}`: the full node with "s" and "r": 1 the first time,
--- later only the dynamics that changed (LIVEVIEW-PROTOCOL.md 3.1).
---
--- Invariants: a cid is never reused within a view; a component leaves the
--- registry only on the client's `cids_destroyed` after `cids_will_destroy`
--- (Phoenix's two-step removal), and one that is rendered again in between
--- is revived and sent in full (the client reset it on cids_will_destroy).
local template = require "moonbeam.live.template"

local M = {}

--- A fresh registry: kept in the view socket's `private.comps`, created by
--- the first component call (a view without components carries none).
function M.registry()
  return {next = 1, by_cid = {}, by_key = {}, pending = nil, queued = nil}
end

-- The registry of `parent` ready for a render pass (created when missing).
local function active(parent)
  local reg = parent.private.comps
  if not reg then reg = M.registry() parent.private.comps = reg end
  if not reg.pending then reg.pending, reg.queued, reg.seen = {}, {}, {} end
  return reg
end

-- The name of a module (a string, or a loaded module table).
local function module_name(mod)
  if type(mod) == "string" then return mod end
  for name, m in pairs(package.loaded) do if m == mod then return name end end
  return tostring(mod)
end

local function module_of(mod)
  if type(mod) == "string" then return require(mod) end
  return mod
end

local function key_of(name, id) return name .. "\0" .. tostring(id) end

local function queue(reg, comp)
  if not reg.queued[comp.cid] then
    reg.queued[comp.cid] = true
    reg.pending[#reg.pending + 1] = comp
  end
end

-- Runs update (or assigns everything) on the component's socket.
local function update(live, comp, assigns)
  local mod = comp.module
  if mod.update then
    comp.socket = live.callback(mod, "update", comp.socket, assigns, comp.socket)
  else
    live.assign(comp.socket, assigns)
  end
end

--- Begins a render pass of the view owning `reg`: component calls met by
--- the templates go through `M.use` until `M.finish`.
function M.begin(live, parent)
  local reg = parent.private.comps
  if reg then reg.pending, reg.queued, reg.seen = nil, nil, nil end
  template.on_component = function(call) return M.use(live, active(parent), call, parent) end
end

--- The cid of a component call met during a render (creating, reviving or
--- updating the component). Errors on a missing id or a duplicate id.
function M.use(live, reg, call, parent)
  local assigns = call.assigns
  if type(assigns) ~= "table" or assigns.id == nil then
    error("live.component: assigns need an id", 0)
  end
  local name = module_name(call.module)
  local key = key_of(name, assigns.id)
  if reg.seen[key] then
    error(("live.component: duplicate id %s for component %s in one render"):format(tostring(assigns.id), name), 0)
  end
  reg.seen[key] = true
  local cid = reg.by_key[key]
  local comp = cid and reg.by_cid[cid]
  if not comp then
    cid = reg.next
    reg.next = cid + 1
    local mod = module_of(call.module)
    if type(mod) ~= "table" or not mod.render then
      error(("live.component: %s is not a component module (no render)"):format(name), 0)
    end
    comp = {cid = cid, module = mod, name = name, id = assigns.id, fresh = true, track = {}}
    local s = live.new_socket{connected = parent.connected, cid = cid, endpoint = parent.endpoint,
                              id = parent.id}
    s.assigns.flash = nil
    s.assigns.myself = setmetatable({cid = cid}, template.CID)
    comp.socket = live.callback(mod, "mount", s, s)
    reg.by_cid[cid], reg.by_key[key] = comp, cid
  elseif comp.marked then
    comp.marked, comp.fresh, comp.track = nil, true, {}
  end
  local a = {}
  for k, v in pairs(assigns) do a[k] = v end
  update(live, comp, a)
  queue(reg, comp)
  return cid
end

-- Renders one component: its wire node (full when fresh) or diff, or nil.
local function render_one(live, comp, full)
  local s = comp.socket
  local r = comp.module.render
  local fresh = full or comp.fresh or not comp.tree
  local node
  if template.is_template(r) then
    node = r:render(s.assigns, (not fresh) and comp.tree or nil, (not fresh) and s.changed or nil, comp.track)
  else
    node = r(s.assigns)
    if getmetatable(node) ~= template.Node then
      error(("live.component %s: render must return a template node"):format(comp.name), 0)
    end
  end
  if type(node.s[1]) ~= "string" or not node.s[1]:match("^%s*<[%a]") then
    error(("live.component %s: render must produce one root HTML element"):format(comp.name), 0)
  end
  local out
  if fresh then
    out = template.wire(node)
    out.r = 1
  else
    out = template.diff(comp.tree, node)
  end
  comp.tree, comp.fresh = node, nil
  s.changed = {}
  return out
end

--- Ends a render pass: renders every queued component (and those their
--- templates call in turn, and `extra`, a list of components to render
--- regardless) into `out.c`; moves their pushed events and navigation to
--- `parent`. Returns out (created when needed).
function M.finish(live, parent, out, full, extra)
  local reg = parent.private.comps
  if not reg or (not reg.pending and not extra) then
    template.on_component = nil
    return out
  end
  reg = active(parent)
  for _, comp in ipairs(extra or {}) do queue(reg, comp) end
  local ok, err = pcall(function()
    local i = 1
    while i <= #reg.pending do
      local comp = reg.pending[i]
      local cd = render_one(live, comp, full)
      if cd ~= nil then
        out = out or {}
        out.c = out.c or {}
        out.c[tostring(comp.cid)] = cd
      end
      local cs = comp.socket
      for _, e in ipairs(cs.events) do parent.events[#parent.events + 1] = e end
      cs.events = {}
      parent.redirect_to = parent.redirect_to or cs.redirect_to
      parent.navigate = parent.navigate or cs.navigate
      parent.patch = parent.patch or cs.patch
      cs.redirect_to, cs.navigate, cs.patch = nil, nil, nil
      i = i + 1
    end
  end)
  template.on_component = nil
  reg.pending, reg.queued, reg.seen = nil, nil, nil
  if not ok then error(err, 0) end
  return out
end

--- Ends a render pass that failed (the view's render raised).
function M.abort(parent)
  template.on_component = nil
  local reg = parent.private.comps
  if reg then reg.pending, reg.queued, reg.seen = nil, nil, nil end
end

--- The HTML of component `cid` (for the dead render).
function M.html(reg, cid)
  local comp = reg.by_cid[cid]
  if not comp or not comp.tree then error("live: no component for cid " .. tostring(cid), 0) end
  return template.html(comp.tree, function(c) return M.html(reg, c) end)
end

--- Finds a component by cid, or by module and id.
function M.find(reg, cid_or_module, id)
  if id == nil then return reg.by_cid[tonumber(cid_or_module)] end
  local cid = reg.by_key[key_of(module_name(cid_or_module), id)]
  return cid and reg.by_cid[cid]
end

--- The client's `cids_will_destroy`: marks them (a later render revives).
function M.mark(reg, cids)
  for _, cid in ipairs(cids) do
    local comp = reg.by_cid[tonumber(cid)]
    if comp then comp.marked = true end
  end
end

--- The client's `cids_destroyed`: removes those still marked; returns the
--- list of removed cids.
function M.delete(reg, cids)
  local gone = {}
  for _, cid in ipairs(cids) do
    local comp = reg.by_cid[tonumber(cid)]
    if comp and comp.marked then
      reg.by_cid[comp.cid] = nil
      reg.by_key[key_of(comp.name, comp.id)] = nil
      gone[#gone + 1] = comp.cid
    end
  end
  return gone
end

--- The number of live components in the registry.
function M.count(reg)
  local n = 0
  for _ in pairs(reg.by_cid) do n = n + 1 end
  return n
end

return M
