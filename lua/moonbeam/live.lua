--- moonbeam.live: live views (Phoenix.LiveView's model) driven by the
--- official phoenix_live_view client.
---
--- A view is a module with `mount(params, session, socket)`,
--- `handle_params(params, uri, socket)`, `handle_event(event, params, socket)`,
--- `handle_info(msg, socket)`, `terminate(reason, socket)` (all optional) and
--- `render` (a template from `live.template`, or a function of the assigns).
--- The first request renders the view over HTTP ("dead" render) inside a
--- layout that loads the client bundles; the page's LiveSocket then joins the
--- channel "lv:<id>", whose process (moonbeam.live.channel) mounts the view
--- again, connected, and from then on answers events with diffs of the
--- rendered tree. See docs/live.md.
local template = require "moonbeam.live.template"
local channel = require "moonbeam.channel"
local component = require "moonbeam.live.component"
local stream = require "moonbeam.live.stream"

local M = {}

M.LIVEVIEW_VERSION = "1.2.12"
M.template = template.compile
M.raw = template.raw
M.escape = template.escape

-- ------------------------------------------------------------ the socket

--- A new live socket (internal).
function M.new_socket(fields)
  local s = {assigns = {flash = {}}, changed = {}, connected = false, events = {}, private = {}}
  for k, v in pairs(fields or {}) do s[k] = v end
  return s
end

local function set(socket, k, v)
  local a = socket.assigns
  if a[k] ~= v or type(v) == "table" then
    a[k] = v
    socket.changed[k] = true
  end
end

--- Sets assigns: `assign(socket, key, value)` or `assign(socket, {k = v})`.
--- A key whose value changes (a table always counts as changed) is marked
--- for the next diff. Returns the socket.
function M.assign(socket, k, v)
  if type(k) == "table" then
    for kk, vv in pairs(k) do set(socket, kk, vv) end
  else
    set(socket, k, v)
  end
  return socket
end

--- `assign(socket, key, fn(old))`.
function M.update(socket, k, fn) return M.assign(socket, k, fn(socket.assigns[k])) end

--- Assigns `fn(assigns)` under `key` only if it has no value yet.
function M.assign_new(socket, k, fn)
  if socket.assigns[k] == nil then M.assign(socket, k, fn(socket.assigns)) end
  return socket
end

--- True when the view runs over the WebSocket (false in the dead render).
function M.connected(socket) return socket.connected == true end

--- Sends event `name` with `payload` to the client (`phx:<name>` window
--- events and hooks' handleEvent).
function M.push_event(socket, name, payload)
  socket.events[#socket.events + 1] = {name, payload or {}}
  return socket
end

--- Changes the URL of this view without a new mount: handle_params runs.
function M.push_patch(socket, opts)
  socket.patch = {to = opts.to, kind = opts.replace and "replace" or "push"}
  return socket
end

--- Navigates to another live view without a page load.
function M.push_navigate(socket, opts)
  socket.navigate = {to = opts.to, kind = opts.replace and "replace" or "push"}
  return socket
end

--- A full page navigation to `opts.to` (or `opts.external`).
function M.redirect(socket, opts)
  socket.redirect_to = {to = opts.to or opts.external}
  return socket
end

--- Sets `assigns.flash[kind] = message` (rendered with the next diff).
function M.put_flash(socket, kind, message)
  local f = {}
  for k, v in pairs(socket.assigns.flash or {}) do f[k] = v end
  f[kind] = message
  return M.assign(socket, "flash", f)
end

-- ------------------------------------------------------------ flash across navigation
--
-- A redirect or navigate from a view carries its flash as a signed token (as
-- Phoenix does): the client keeps it as the `__phoenix_flash__` cookie (60 s)
-- for a redirect, which the next dead render reads and deletes, or passes it
-- in the next join's `flash` for a navigate. Tokens older than 60 s are refused.

M.FLASH_COOKIE = "__phoenix_flash__"
local FLASH_SALT, FLASH_MAX_AGE = "moonbeam live flash", 60

--- The signed token of `socket`'s flash, or nil when it is empty.
function M.flash_token(cfg, socket)
  local f = socket.assigns.flash
  if type(f) ~= "table" or next(f) == nil then return nil end
  return require("moonbeam.http.session").sign(cfg.secret_key_base, FLASH_SALT, f)
end

--- The flash of a token (nil when missing, forged or expired).
function M.flash_of(cfg, token)
  if type(token) ~= "string" or token == "" then return nil end
  local f = require("moonbeam.http.session").verify(cfg.secret_key_base, FLASH_SALT, token, FLASH_MAX_AGE)
  if type(f) ~= "table" then return nil end
  local out = {}
  for k, v in pairs(f) do if type(k) == "string" and type(v) == "string" then out[k] = v end end
  return out
end

--- Removes the flash of `kind` (all without kind).
function M.clear_flash(socket, kind)
  local f = {}
  if kind then for k, v in pairs(socket.assigns.flash or {}) do if k ~= kind then f[k] = v end end end
  return M.assign(socket, "flash", f)
end

-- ------------------------------------------------------------ rendering

--- Streams (see moonbeam.live.stream): `stream(socket, name, items, opts)`,
--- `stream_insert(socket, name, item, opts)`, `stream_delete(socket, name, item)`,
--- `stream_delete_by_dom_id(socket, name, id)`; the template loops over
--- `@streams[name]` inside an element with `phx-update="stream"` and an id.
M.stream = stream.stream
M.stream_insert = stream.insert
M.stream_delete = stream.delete
M.stream_delete_by_dom_id = stream.delete_by_dom_id

--- A stateful component in a template: `<%= live.component(Module, {id = "x", ...}) %>`
--- (Module: a module table or name). See moonbeam.live.component.
function M.component(mod, assigns)
  return setmetatable({module = mod, assigns = assigns}, template.Component)
end

--- Runs `update(assigns, socket)` of the component (module, id) of the view
--- process `pid` (default: this process), which then pushes the diff.
--- `M.send_update(module, assigns)` or `M.send_update(pid, module, assigns)`;
--- assigns must hold the id. Module must be a name (string) to cross processes.
function M.send_update(pid, mod, assigns)
  local mb = require "moonbeam"
  if assigns == nil then pid, mod, assigns = mb.self(), pid, mod end
  if type(mod) ~= "string" then
    for name, m in pairs(package.loaded) do if m == mod then mod = name break end end
  end
  assert(type(mod) == "string", "live.send_update: module name needed")
  assert(type(assigns) == "table" and assigns.id ~= nil, "live.send_update: assigns need an id")
  mb.send(pid, {"$live_send_update", mod, assigns})
end

-- The view's node for `socket` (tracked when its render is a template).
local function render_view(view, socket, full)
  local p = socket.private
  local r = view.render
  if not r then error("live view has no render", 0) end
  if template.is_template(r) then
    p.track = p.track or {}
    return r:render(socket.assigns, (not full) and p.tree or nil, (not full) and socket.changed or nil, p.track)
  end
  local v = r(socket.assigns)
  if type(v) == "string" then
    return setmetatable({t = "string", s = {"", ""}, d = {v}}, template.Node)
  elseif getmetatable(v) == template.Node then
    return v
  end
  return setmetatable({t = "string", s = {"", ""}, d = {template.value(v)}}, template.Node)
end

--- Renders the view of `socket`: returns the wire form (full when `full`, a
--- diff otherwise, nil when nothing changed) and the node. Keeps the tree in
--- socket.private. `comps`, a list of components of this view, are rendered
--- too (after one of their events or a send_update); the view itself is
--- rendered unless `comps` is given and `with_view` is not true. With
--- `want_html`, also returns the page's HTML (before streams are emptied).
function M.render(view, socket, full, comps, with_view, want_html)
  local p = socket.private
  component.begin(M, socket)
  local out, node
  if comps and not with_view then
    node = p.tree
  else
    local ok, n = pcall(render_view, view, socket, full)
    if not ok then
      component.abort(socket)
      error(n, 0)
    end
    node = n
    if full or not p.tree then out = template.wire(node) else out = template.diff(p.tree, node) end
  end
  out = component.finish(M, socket, out, full, comps)
  local title = socket.assigns.page_title
  if title ~= nil and (full or socket.changed.page_title) then
    out = out or {}
    out.t = tostring(title)
  end
  if #socket.events > 0 then
    out = out or {}
    out.e = socket.events
    socket.events = {}
  end
  p.tree = node
  socket.changed = {}
  local html = want_html and M.html(socket, node) or nil
  if socket.assigns.streams then        -- sent: the server keeps no stream entry
    template.prune_streams(node)
    stream.prune(socket)
  end
  return out, node, html
end

--- The HTML of a rendered node of the view of `socket` (components inlined).
function M.html(socket, node)
  local reg = socket.private.comps
  return template.html(node, reg and function(cid) return component.html(reg, cid) end)
end

-- ------------------------------------------------------------ callbacks

-- Calls view[name](...) if defined; normalises the result to ("noreply"|
-- "reply"|"ok", socket, reply).
function M.callback(view, name, socket, ...)
  local fn = view[name]
  if not fn then return socket end
  local kind, a, b = fn(...)
  if type(kind) == "table" then return kind end           -- returned the socket
  if kind == "ok" or kind == "noreply" then return a or socket end
  if kind == "reply" then return b, a end
  error(("live view %s returned %s (want \"ok\"/\"noreply\", socket)"):format(name, tostring(kind)), 0)
end

-- ------------------------------------------------------------ URLs and routes

--- Splits a URL into path and query string.
function M.split_url(url)
  local rest = url:gsub("^%a[%w+.-]*://[^/]*", "")
  local path, query = rest:match("^([^?#]*)%??([^#]*)")
  if path == "" then path = "/" end
  return path, query
end

local function match_path(pattern, path)
  local ps, xs = {}, {}
  for seg in pattern:gmatch("[^/]+") do ps[#ps + 1] = seg end
  for seg in path:gmatch("[^/]+") do xs[#xs + 1] = seg end
  if #ps ~= #xs then return nil end
  local params = {}
  local util = require "moonbeam.http.util"
  for i, p in ipairs(ps) do
    if p:sub(1, 1) == ":" then params[p:sub(2)] = util.decode(xs[i])
    elseif p ~= xs[i] then return nil end
  end
  return params
end

--- The params of `url` for a view: path parameters of its route and the
--- query. With `view` nil, finds the route's view; returns params, view.
function M.url_params(cfg, url, view)
  local util = require "moonbeam.http.util"
  local path, query = M.split_url(url)
  for _, route in ipairs(cfg.routes or {}) do
    if not view or route[2] == view then
      local p = match_path(route[1], path)
      if p then
        for k, v in pairs(util.decode_query(query)) do if p[k] == nil then p[k] = v end end
        return p, route[2]
      end
    end
  end
  if view then return util.decode_query(query), view end
  return nil
end

-- ------------------------------------------------------------ dead render

local function attr(s) return template.escape(s) end

--- The default layout: a full page with the bundles and the LiveSocket
--- bootstrap. `page` = {title, csrf, container, head, script}.
function M.default_layout(page)
  return table.concat({
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
    "<meta name=\"csrf-token\" content=\"", attr(page.csrf or ""), "\">\n",
    "<link rel=\"icon\" href=\"data:,\">\n",
    "<title>", template.escape(page.title or ""), "</title>\n",
    page.head or "",
    "</head>\n<body>\n", page.container, "\n",
    "<script src=\"/assets/phoenix.min.js\"></script>\n",
    "<script src=\"/assets/phoenix_live_view.min.js\"></script>\n",
    "<script>\n", page.script or "",
    "\nconst csrfToken = document.querySelector(\"meta[name='csrf-token']\").getAttribute(\"content\");\n",
    "window.liveSocket = new LiveView.LiveSocket(\"", page.socket_path or "/live", "\", Phoenix.Socket, ",
    "{params: {_csrf_token: csrfToken}, hooks: window.Hooks || {}});\n",
    "window.liveSocket.connect();\n</script>\n</body>\n</html>\n"})
end

local function session_of(conn)
  local ok, data = pcall(conn.get_session, conn)
  if not ok or type(data) ~= "table" then return {}, false end
  local out = {}
  for k, v in pairs(data) do if not k:match("^_csrf") then out[k] = v end end
  return out, true
end

local function random_id()
  local crypto = require("moonbeam.core").crypto
  local bytes = crypto.random(9)
  return "phx-" .. (bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

--- The HTTP handler of a live route (dead render).
function M.page(view_name, cfg)
  return function(conn)
    local view = require(view_name)
    local sess_mod = require "moonbeam.http.session"
    conn:fetch_query_params()
    local params = {}
    for k, v in pairs(conn.query_params or {}) do params[k] = v end
    for k, v in pairs(conn.path_params or {}) do params[k] = v end
    local session, has_session = session_of(conn)
    local id = random_id()
    local socket = M.new_socket{id = id, view = view_name, endpoint = cfg}
    conn:fetch_cookies()
    local ftoken = conn.cookies and conn.cookies[M.FLASH_COOKIE]
    if ftoken then
      socket.assigns.flash = M.flash_of(cfg, ftoken) or {}
      conn:delete_resp_cookie(M.FLASH_COOKIE, {path = "/"})
    end
    socket = M.callback(view, "mount", socket, params, session, socket)
    local uri = ("http://%s%s%s"):format(conn.headers.host or "localhost", conn.request_path or conn.path,
      (conn.query_string and conn.query_string ~= "") and ("?" .. conn.query_string) or "")
    socket = M.callback(view, "handle_params", socket, params, uri, socket)
    local to = socket.redirect_to or socket.navigate or socket.patch
    if to then return conn:redirect(to.to) end
    local _, _, html = M.render(view, socket, true, nil, nil, true)
    local token = sess_mod.sign(cfg.secret_key_base, cfg.signing_salt or "moonbeam live",
      {id = id, view = view_name, session = session, flash = ftoken and socket.assigns.flash or nil})
    local container = ('<div id="%s" data-phx-main data-phx-session="%s" data-phx-static="">%s</div>')
      :format(id, attr(token), html)
    local csrf = has_session and require("moonbeam.http.csrf").token(conn) or ""
    local layout = cfg.layout and (type(cfg.layout) == "string" and require(cfg.layout) or cfg.layout)
      or M.default_layout
    return conn:html(200, layout{title = socket.assigns.page_title or cfg.title or view_name,
      csrf = csrf, container = container, head = cfg.head, script = cfg.script,
      socket_path = cfg.socket_path})
  end
end

--- Adds a live route: GET `path` renders `view_name` (a module name).
function M.live(router, path, view_name, cfg)
  cfg.routes = cfg.routes or {}
  cfg.routes[#cfg.routes + 1] = {path, view_name}
  if cfg.plugs then
    router:get(path, cfg.plugs, M.page(view_name, cfg))
  else
    router:get(path, M.page(view_name, cfg))
  end
end

local function send_asset(file)
  return function(conn)
    conn:put_resp_content_type("application/javascript")
    conn:put_resp_header("cache-control", "public, max-age=3600")
    local f = io.open(file, "rb")
    if not f then return conn:text(404, "missing " .. file .. " (npm install phoenix phoenix_live_view)\n") end
    local size = f:seek("end")
    f:close()
    return conn:send_file(200, file, 0, size)
  end
end

--- Adds to `router` the socket endpoint (`<socket_path>/websocket`, default
--- /live) and the client bundles (/assets/phoenix.min.js and
--- /assets/phoenix_live_view.min.js from `cfg.assets`, a node_modules folder).
--- `cfg`: secret_key_base (>= 32 bytes), signing_salt, pubsub, title,
--- layout, head, script, check_csrf (default true when a session plug runs).
function M.mount(router, cfg)
  assert(type(cfg.secret_key_base) == "string" and #cfg.secret_key_base >= 32,
    "live.mount: secret_key_base of at least 32 bytes needed")
  local path = cfg.socket_path or "/live"
  cfg.routes = cfg.routes or {}
  local endpoint = channel.endpoint{
    pubsub = cfg.pubsub,
    channels = {{"lv:*", "moonbeam.live.channel"}},
    config = {secret_key_base = cfg.secret_key_base, signing_salt = cfg.signing_salt,
              routes = cfg.routes, pubsub = cfg.pubsub, max_age = cfg.max_age},
    connect = function(params, socket, info)
      if cfg.check_csrf ~= false then
        local conn = info.conn
        local ok, data = pcall(conn.get_session, conn)
        if ok and type(data) == "table" then
          if not require("moonbeam.http.csrf").valid(conn, params._csrf_token) then return "error" end
        end
      end
      return "ok", socket
    end,
    websocket = cfg.websocket or {idle_timeout = 60000},
  }
  if cfg.plugs then router:get(path .. "/websocket", cfg.plugs, endpoint)
  else router:get(path .. "/websocket", endpoint) end
  local dir = cfg.assets or "node_modules"
  router:get("/assets/phoenix.min.js", send_asset(dir .. "/phoenix/priv/static/phoenix.min.js"))
  router:get("/assets/phoenix_live_view.min.js",
    send_asset(dir .. "/phoenix_live_view/priv/static/phoenix_live_view.min.js"))
end

return M
