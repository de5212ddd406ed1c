--- moonbeam.live.template: templates compiled to Phoenix's rendered structure.
---
--- Syntax: text, `<%= expr %>` (escaped output; `raw(s)` is not escaped),
--- `<% lua code %>` (statements, and blocks: `if ... then`, `elseif`, `else`,
--- `for ... do`, `while ... do`, `end`), `<%# comment %>`; `@name` is
--- `assigns.name`. A template compiles once (cached per VM by source) into a
--- Lua function that returns a *node*: the statics of the template (`s`) and
--- its dynamics, one per `<%= %>` or block. A block is itself a node (the
--- branch that ran, with its own statics: its fingerprint is the branch) or,
--- for a loop, a comprehension (entries sharing the body's statics).
---
--- Change tracking: while a top-level dynamic is evaluated, reads of the
--- assigns are recorded for it; `render(assigns, changed, reads)` evaluates
--- only the dynamics that read a changed assign. `diff(old, new)` gives
--- Phoenix's wire diff (only changed dynamics; `s` only where the template
--- changed) and `wire(node)` the full tree. See docs/live.md.
local M = {}

-- metatable of nodes: {t = tid, s = statics, d = dynamics}, or comprehensions (c = true, e = entries)
local Node = {}
local Safe = {}     -- metatable of raw (already safe) strings
local Component = {} -- metatable of `live.component(Module, assigns)` calls: {module, assigns}
local CID = {}       -- metatable of `@myself`: {cid = n}; renders as the number's text
M.Node, M.Safe, M.Component, M.CID = Node, Safe, Component, CID

--- Set by moonbeam.live while it renders a view: turns a component call into
--- its cid (an integer, the wire form of a component in a dynamic).
M.on_component = nil

-- ------------------------------------------------------------ values

local escapes = {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;"}

--- HTML-escapes a string.
function M.escape(s) return (tostring(s):gsub("[&<>\"']", escapes)) end

--- Marks `s` as safe HTML: output as is.
function M.raw(s) return setmetatable({tostring(s)}, Safe) end

local function value(x)
  local tx = type(x)
  if tx == "string" then return (x:gsub("[&<>\"']", escapes)) end
  if tx == "number" then
    if math.type(x) == "integer" then return tostring(x) end
    if x == math.floor(x) and x > -1e15 and x < 1e15 then return string.format("%d", x) end
    return string.format("%.14g", x)
  end
  if x == nil or x == false then return "" end
  if x == true then return "true" end
  if tx == "table" then
    local mt = getmetatable(x)
    if mt == Node then return x end
    if mt == Safe then return x[1] end
    if mt == CID then return tostring(x.cid) end
    if mt == Component then
      if not M.on_component then error("template: live.component outside a live view render", 0) end
      return M.on_component(x)
    end
    -- a list renders its items one after another
    local parts = {}
    for i = 1, #x do
      local v = value(x[i])
      parts[i] = type(v) == "string" and v or M.html(v)
    end
    return table.concat(parts)
  end
  error("template: cannot render a " .. tx, 0)
end
M.value = value

-- ------------------------------------------------------------ rendering runtime

local stack = {}       -- collectors of open blocks: {loop = bool, t = tid, s = statics, [i] = node}
local slot             -- the top-level dynamic being evaluated by a tracked render
local nest = 0         -- > 0 inside an untracked call (a component): slots are the caller's

local function open(loop, tid, statics)
  stack[#stack + 1] = {loop = loop, t = tid, s = statics}
end

local function emit(tid, statics, d)
  local c = stack[#stack]
  c[#c + 1] = setmetatable({t = tid, s = statics, d = d}, Node)
end

--- Called by a stream (moonbeam.live.stream) when a loop iterates it: the
--- loop's comprehension carries `annotation` as its "stream".
function M.mark_stream(annotation)
  local c = stack[#stack]
  if c and c.loop then c.stream = annotation end
end

--- A value that encodes as the empty JSON list (see moonbeam.channel).
M.EMPTY_LIST = "\0[]"

local function close()
  local c = table.remove(stack)
  if c.loop then
    local entries = {}
    for i = 1, #c do entries[i] = c[i].d end
    return setmetatable({t = c.t, s = c.s, c = true, e = entries, stream = c.stream}, Node)
  end
  if #c == 0 then return "" end
  if #c == 1 then return c[1] end
  local parts = {}
  for i = 1, #c do parts[i] = M.html(c[i]) end
  return table.concat(parts)
end

local function setslot(k) if nest == 0 then slot = k end end

-- ------------------------------------------------------------ parsing

local function tokenize(src)
  local toks, pos = {}, 1
  while true do
    local a, b, mark = src:find("<%%([=#]?)", pos)
    if not a then
      toks[#toks + 1] = {"text", src:sub(pos)}
      break
    end
    toks[#toks + 1] = {"text", src:sub(pos, a - 1)}
    local c, d = src:find("%%>", b + 1)
    if not c then error("template: unclosed <% at byte " .. a, 0) end
    local code = src:sub(b + 1, c - 1)
    if mark == "=" then toks[#toks + 1] = {"expr", code}
    elseif mark == "" then toks[#toks + 1] = {"code", code} end
    pos = d + 1
  end
  return toks
end

-- Rewrites @name to assigns.name outside string literals and counts block
-- keywords; returns the code and its net block depth change.
local function lex(code)
  local out, i, n, depth = {}, 1, #code, 0
  while i <= n do
    local ch = code:sub(i, i)
    if ch == '"' or ch == "'" then
      local j = i + 1
      while j <= n and code:sub(j, j) ~= ch do
        if code:sub(j, j) == "\\" then j = j + 1 end
        j = j + 1
      end
      out[#out + 1] = code:sub(i, j)
      i = j + 1
    elseif code:sub(i, i + 1) == "[[" or code:match("^%[=+%[", i) then
      local eq = code:match("^%[(=*)%[", i)
      local _, e = code:find("]" .. eq .. "]", i, true)
      e = e or n
      out[#out + 1] = code:sub(i, e)
      i = e + 1
    elseif code:sub(i, i + 1) == "--" then
      local e = code:find("\n", i, true) or n
      i = e + 1
    elseif ch == "@" then
      local name = code:match("^@([%a_][%w_]*)", i)
      if not name then error("template: '@' must be followed by a name in: " .. code, 0) end
      out[#out + 1] = "assigns." .. name
      i = i + 1 + #name
    elseif ch:match("[%a_]") then
      local w = code:match("^[%w_]+", i)
      if w == "function" or w == "do" or w == "then" or w == "repeat" then depth = depth + 1
      elseif w == "end" or w == "until" or w == "elseif" then depth = depth - 1 end
      out[#out + 1] = w
      i = i + #w
    else
      out[#out + 1] = ch
      i = i + 1
    end
  end
  return table.concat(out), depth
end

local function first_word(code) return code:match("^%s*([%a_]+)") end

-- Parses tokens from i into a sequence until a middle/close code tag (returned).
local function parse_seq(toks, i)
  local seq = {}
  while i <= #toks do
    local tok = toks[i]
    if tok[1] == "text" then
      seq[#seq + 1] = {"text", tok[2]}
      i = i + 1
    elseif tok[1] == "expr" then
      seq[#seq + 1] = {"expr", (lex(tok[2]))}
      i = i + 1
    else
      local code, depth = lex(tok[2])
      local w = first_word(code)
      if depth < 0 or (depth == 0 and (w == "else" or w == "elseif")) then
        return seq, i, code, depth
      elseif depth > 0 then
        local block = {"block", loop = (w == "for" or w == "while" or w == "repeat"), code}
        i = i + 1
        while true do
          local inner, j, mcode, mdepth = parse_seq(toks, i)
          if not mcode then error("template: block without end: " .. code, 0) end
          block[#block + 1] = inner
          block[#block + 1] = mcode
          i = j + 1
          if mdepth < 0 then break end
        end
        seq[#seq + 1] = block
      else
        seq[#seq + 1] = {"stmt", code}
        i = i + 1
      end
    end
  end
  return seq, i
end

-- ------------------------------------------------------------ code generation

local function gen(seq, ctx, root)
  -- statics of this sequence, and the code filling __d
  local statics, cur, body, k = {}, {}, {}, 0
  for _, item in ipairs(seq) do
    local kind = item[1]
    if kind == "text" then
      cur[#cur + 1] = item[2]
    elseif kind == "stmt" then
      body[#body + 1] = item[2]
    else
      statics[#statics + 1] = table.concat(cur)
      cur = {}
      k = k + 1
      local code
      if kind == "expr" then
        code = ("__d[%d] = __value(%s)"):format(k, item[2])
      else
        local parts = {}
        local loop_tid, loop_s = "nil", "nil"
        for j = 3, #item, 2 do
          local t, sv = gen(item[j], ctx, false)
          parts[#parts + 1] = t
          if item.loop then loop_tid, loop_s = sv.tid, sv.name end
          parts[#parts + 1] = item[j + 1]
        end
        code = ("__open(%s, %s, %s) %s\n%s\n__d[%d] = __close()")
          :format(tostring(item.loop), loop_tid, loop_s, item[2], table.concat(parts, "\n"), k)
      end
      if root then
        code = ("if not __need or __need[%d] then __slot(%d) %s end"):format(k, k, code)
      end
      body[#body + 1] = code
    end
  end
  statics[#statics + 1] = table.concat(cur)
  ctx.n = ctx.n + 1
  local tid = ctx.base + ctx.n
  local name = "__S" .. ctx.n
  ctx.decls[#ctx.decls + 1] = ("local %s = %s"):format(name, ctx.quote(statics))
  ctx.statics[tid] = statics
  local sv = {tid = tid, name = name, count = k}
  if root then return table.concat(body, "\n"), sv end
  return ("do local __d = {}\n%s\n__emit(%d, %s, __d) end"):format(table.concat(body, "\n"), tid, name), sv
end

local function quote_list(t)
  local parts = {}
  for i, s in ipairs(t) do parts[i] = string.format("%q", s) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local cache = setmetatable({}, {__mode = "v"})
local next_base = 0

local Template = {}
Template.__index = Template

--- Compiles `src`; opts: `name` (chunk name), `env` (a table of helpers the
--- template sees besides the globals). Returns a template: call it with
--- assigns for a node.
function M.compile(src, opts)
  opts = opts or {}
  local key = src
  if not opts.env and cache[key] then return cache[key] end
  local seq, _, stray = parse_seq(tokenize(src), 1)
  if stray then error("template: unexpected '" .. stray .. "'", 2) end
  local ctx = {n = 0, base = next_base, decls = {}, statics = {}, quote = quote_list}
  local body, sv = gen(seq, ctx, true)
  next_base = next_base + ctx.n + 1
  local code = table.concat({
    "local __value, __open, __close, __emit, __slot = ...",
    table.concat(ctx.decls, "\n"),
    "return function(assigns, __need)",
    "local __d = {}",
    "__slot(0)",
    body,
    "__slot(nil)",
    ("return __d, %d, %s"):format(sv.tid, sv.name),
    "end"}, "\n")
  local env = setmetatable({}, {__index = function(_, k)
    if opts.env and opts.env[k] ~= nil then return opts.env[k] end
    if k == "raw" then return M.raw end
    return _G[k]
  end})
  local chunk, err = load(code, "=" .. (opts.name or "template"), "t", env)
  if not chunk then error("template: " .. err, 2) end
  local fn = chunk(value, open, close, emit, setslot)
  local tpl = setmetatable({fn = fn, count = sv.count, tid = sv.tid, source = src}, Template)
  if not opts.env then cache[key] = tpl end
  return tpl
end

--- A full node for `assigns` (no tracking).
function Template:__call(assigns)
  local depth = #stack
  nest = nest + 1
  local ok, d, tid, statics = pcall(self.fn, assigns or {}, nil)
  nest = nest - 1
  while #stack > depth do table.remove(stack) end
  if not ok then error(d, 0) end
  return setmetatable({t = tid, s = statics, d = d}, Node)
end

--- Renders with change tracking. `prev` is the previous node (or nil),
--- `changed` a set of assign keys (nil: everything), `state.reads` the
--- per-dynamic read sets kept between renders. Returns the new node.
function Template:render(assigns, prev, changed, state)
  local need
  if prev and changed then
    need = {}
    local r = state.reads or {}
    local all = false
    for key in pairs(r[0] or {}) do if changed[key] then all = true end end
    for k = 1, self.count do
      local set = r[k]
      if all or not set then need[k] = true
      else
        for key in pairs(set) do if changed[key] then need[k] = true break end end
      end
    end
  end
  local newreads = {}
  if need then
    for k, set in pairs(state.reads or {}) do if not need[k] and k ~= 0 then newreads[k] = set end end
  end
  local proxy = setmetatable({}, {__index = function(_, key)
    local s = slot or 0
    local set = newreads[s]
    if not set then set = {} newreads[s] = set end
    set[key] = true
    return assigns[key]
  end, __newindex = function(_, key, v) assigns[key] = v end,
     __pairs = function() return next, assigns, nil end})
  local depth, saved_nest = #stack, nest
  nest = 0
  local ok, d, tid, statics = pcall(self.fn, proxy, need)
  slot, nest = nil, saved_nest
  while #stack > depth do table.remove(stack) end
  if not ok then error(d, 0) end
  if need then
    for k = 1, self.count do if not need[k] then d[k] = prev.d[k] end end
  end
  state.reads = newreads
  return setmetatable({t = tid, s = statics, d = d}, Node)
end

function M.is_template(v) return getmetatable(v) == Template end

--- Empties the stream comprehensions of a rendered tree (after they were
--- sent: the client keeps stream entries, the server does not).
function M.prune_streams(v)
  if type(v) ~= "table" then return end
  if v.c then
    if v.stream then v.e, v.stream = {}, nil return end
    for _, d in ipairs(v.e) do for i = 1, #v.s - 1 do M.prune_streams(d[i]) end end
  elseif v.d then
    for i = 1, #v.s - 1 do M.prune_streams(v.d[i]) end
  end
end

-- ------------------------------------------------------------ output

--- The HTML of a value (a node, a comprehension or a string). A component
--- (a cid) becomes `resolve(cid)`; without `resolve`, M.component_html.
function M.html(v, resolve)
  local tv = type(v)
  if tv == "string" then return v end
  if tv == "number" then
    resolve = resolve or M.component_html
    if not resolve then error("template: component " .. v .. " outside a live view", 0) end
    return resolve(v)
  end
  local parts = {}
  local s = v.s
  local function one(d)
    for i = 1, #s do
      parts[#parts + 1] = s[i]
      if i < #s then parts[#parts + 1] = M.html(d[i], resolve) end
    end
  end
  if v.c then for _, d in ipairs(v.e) do one(d) end else one(v.d) end
  return table.concat(parts)
end

local function dyn_wire(d, n, out)
  for i = 1, n do out[tostring(i - 1)] = M.wire(d[i]) end
  return out
end

--- The full wire form (Phoenix's rendered JSON) of a value.
function M.wire(v)
  local tv = type(v)
  if tv == "string" or tv == "number" then return v end
  local n = #v.s - 1
  if v.c then
    local k = {kc = #v.e}
    for i, d in ipairs(v.e) do k[tostring(i - 1)] = dyn_wire(d, n, {}) end
    return {s = v.s, k = k, stream = v.stream}
  end
  return dyn_wire(v.d, n, {s = v.s})
end

local function diff_dyn(od, nd, n)
  local out
  for i = 1, n do
    local x = M.diff(od[i], nd[i])
    if x ~= nil then
      out = out or {}
      out[tostring(i - 1)] = x
    end
  end
  return out
end

--- The wire diff from `old` to `new`, or nil when nothing changed. A node
--- without `s` is sent only where the client holds a node of the same
--- template (LIVEVIEW-PROTOCOL.md 3.2).
function M.diff(old, new)
  local tn = type(new)
  if tn == "string" or tn == "number" then
    if old == new then return nil end
    return new
  end
  if type(old) ~= "table" or old.t ~= new.t or (old.c or false) ~= (new.c or false) then
    return M.wire(new)
  end
  if old == new then return nil end
  local n = #new.s - 1
  if not new.c then return diff_dyn(old.d, new.d, n) end
  if new.stream then
    -- the client emptied its entries after the last render: all are new
    local st = new.stream
    if #new.e == 0 and st[3] == M.EMPTY_LIST and not st[4] then return nil end
    local k = {kc = #new.e}
    for i, d in ipairs(new.e) do k[tostring(i - 1)] = dyn_wire(d, n, {}) end
    return {k = k, stream = st}
  end
  local k, any = {}, #old.e ~= #new.e
  for i, d in ipairs(new.e) do
    local od = old.e[i]
    local x
    if od then x = diff_dyn(od, d, n) else x = dyn_wire(d, n, {}) end
    if x then k[tostring(i - 1)] = x any = true end
  end
  if not any then return nil end
  k.kc = #new.e
  return {k = k}
end

return M
