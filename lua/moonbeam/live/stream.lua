--- moonbeam.live.stream: streams (Phoenix.LiveView.stream/4's model), lists
--- the client keeps in the DOM (`phx-update="stream"`) and the server sends
--- once and forgets.
---
--- `socket.assigns.streams[name]` is a stream: between two renders it holds
--- only the pending operations (inserts, deletes, reset). A template loops
--- over it with `ipairs`, getting `{id = dom_id, item = item}` for each
--- pending insert (the latest insert of an id wins, in insert order). The
--- loop becomes a comprehension annotated with Phoenix's
--- `"stream": [ref, [[dom_id, at, limit, update_only], ...], [deleted dom ids], true?]`
--- (the last element only on reset), and after each render the stream and
--- the comprehension in the kept tree are emptied: the server keeps no entry.
local json = require "moonbeam.http.json"
local template = require "moonbeam.live.template"

local M = {}

local null = json.null
local function jv(v) if v == nil then return null end return v end

local Stream = {}
M.Stream = Stream

-- The entries to render: pending inserts, unique by dom id (latest wins).
local function entries(s)
  local seen, out = {}, {}
  for i = #s.inserts, 1, -1 do
    local ins = s.inserts[i]
    if not seen[ins.id] then
      seen[ins.id] = true
      out[#out + 1] = {id = ins.id, item = ins.item}
    end
  end
  -- out is latest first: reverse to insert order
  local n = #out
  for i = 1, n // 2 do out[i], out[n - i + 1] = out[n - i + 1], out[i] end
  return out
end

-- The "stream" value of the comprehension the stream renders into.
local function annotation(s)
  local ins = {}
  for i = #s.inserts, 1, -1 do          -- Phoenix lists them latest first
    local x = s.inserts[i]
    ins[#ins + 1] = {x.id, x.at, jv(x.limit), jv(x.update_only)}
  end
  local a = {s.ref, #ins > 0 and ins or template.EMPTY_LIST,
             #s.deletes > 0 and {table.unpack(s.deletes)} or template.EMPTY_LIST}
  if s.reset then a[4] = true end
  return a
end

-- Indexing a stream (what ipairs does) renders its pending inserts, and
-- tells the loop being rendered that it is this stream's comprehension.
Stream.__index = function(s, i)
  if type(i) ~= "number" then return nil end
  local list = rawget(s, "_entries")
  if not list then
    list = entries(s)
    rawset(s, "_entries", list)
    template.mark_stream(annotation(s))
  end
  return list[i]
end
Stream.__len = function(s) return #entries(s) end

local function default_dom_id(name)
  return function(item)
    if type(item) ~= "table" or item.id == nil then
      error(("live.stream %s: an item needs an id (or give opts.dom_id)"):format(name), 0)
    end
    return name .. "-" .. tostring(item.id)
  end
end

local function get(socket, name, opts)
  local all = socket.assigns.streams
  if not all then all = {} socket.assigns.streams = all end
  local s = all[name]
  if not s then
    local p = socket.private
    local ref = p.stream_ref or 0
    p.stream_ref = ref + 1
    local ref_s = socket.cid and (socket.cid .. "-" .. ref) or tostring(ref)
    s = setmetatable({name = name, ref = ref_s, inserts = {}, deletes = {}, reset = false,
                      dom_id = (opts and opts.dom_id) or default_dom_id(name)}, Stream)
    all[name] = s
  end
  socket.changed.streams = true
  rawset(s, "_entries", nil)
  return s
end

local function insert(s, item, at, limit, update_only)
  s.inserts[#s.inserts + 1] = {id = s.dom_id(item), item = item, at = at or -1, limit = limit,
                               update_only = update_only}
end

--- Defines or adds to stream `name`: inserts `items` (at opts.at, default
--- -1, the end; opts.limit keeps at most that many in the DOM, negative
--- from the end); opts.reset empties the client's list first; opts.dom_id
--- (first call only) gives an item's DOM id (default "<name>-<item.id>").
function M.stream(socket, name, items, opts)
  opts = opts or {}
  local s = get(socket, name, opts)
  if opts.reset then s.reset = true end
  for _, item in ipairs(items or {}) do insert(s, item, opts.at, opts.limit) end
  return socket
end

--- Inserts (or updates, by DOM id) one item: opts.at, opts.limit, opts.update_only.
function M.insert(socket, name, item, opts)
  opts = opts or {}
  insert(get(socket, name), item, opts.at, opts.limit, opts.update_only)
  return socket
end

--- Removes an item (by its DOM id) from the client's list.
function M.delete(socket, name, item)
  local s = get(socket, name)
  s.deletes[#s.deletes + 1] = s.dom_id(item)
  return socket
end

--- Removes the element with DOM id `id` from the client's list.
function M.delete_by_dom_id(socket, name, id)
  local s = get(socket, name)
  s.deletes[#s.deletes + 1] = id
  return socket
end

--- After a render: forgets the pending operations of every stream.
function M.prune(socket)
  for _, s in pairs(socket.assigns.streams or {}) do
    s.inserts, s.deletes, s.reset = {}, {}, false
    rawset(s, "_entries", nil)
  end
end

return M
