-- moonbeam.live.template: the rendered tree and diffs on the wire for each
-- construct (LIVEVIEW-PROTOCOL.md section 3): statics and string dynamics,
-- escaping, branches as nodes with their own statics, comprehensions with
-- shared statics and "k"/"kc" diffs, components, change tracking.
local T = require "moonbeam.live.template"

local function track(src, opts)
  local tpl = T.compile(src, opts)
  local st, prev = {}, nil
  return function(assigns, changed)
    local node = tpl:render(assigns, prev, changed, st)
    local out
    if prev then out = T.diff(prev, node) else out = T.wire(node) end
    prev = node
    return out, node
  end
end

describe("live templates", function()
  it("renders statics and escaped string dynamics (never numbers)", function()
    local r = track([[<div><p>Count: <%= @count %></p><button phx-click="inc">+</button></div>]])
    assert.same({s = {"<div><p>Count: ", '</p><button phx-click="inc">+</button></div>'}, ["0"] = "0"},
      r({count = 0}))
    assert.same({["0"] = "1"}, r({count = 1}, {count = true}))       -- LIVEVIEW-PROTOCOL 6
    assert.is_nil((r({count = 1}, {count = true})))                     -- same value: nothing to send
  end)

  it("escapes HTML by default and outputs raw() as is", function()
    local tpl = T.compile([[<%= @x %>|<%= raw(@x) %>|<%= @n %>|<%= @f %>|<%= @no %>|<%= @nothing %>]])
    local w = T.wire(tpl({x = [[<a href="x">'&'</a>]], n = 2.5, f = 3.0, no = false}))
    assert.same({"&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;", [[<a href="x">'&'</a>]], "2.5", "3", "", ""},
      {w["0"], w["1"], w["2"], w["3"], w["4"], w["5"]})
  end)

  it("re-evaluates only the dynamics that read a changed assign", function()
    local calls = 0
    local tpl = T.compile("<%= @a %> <%= count(@b) %>", {env = {count = function(b) calls = calls + 1 return b end}})
    local st = {}
    local n1 = tpl:render({a = 1, b = 2}, nil, nil, st)
    assert.equal(1, calls)
    local n2 = tpl:render({a = 5, b = 2}, n1, {a = true}, st)
    assert.equal(1, calls)                                              -- b's dynamic not evaluated
    assert.same({["0"] = "5"}, T.diff(n1, n2))
    local n3 = tpl:render({a = 5, b = 3}, n2, {b = true}, st)
    assert.equal(2, calls)
    assert.same({["1"] = "3"}, T.diff(n2, n3))
  end)

  it("sends a branch with its statics when it changes, its dynamics alone when it stays", function()
    local r = track([[<% if @on then %><b><%= @name %></b><% else %><i>off</i><% end %>]])
    assert.same({s = {"", ""}, ["0"] = {s = {"<b>", "</b>"}, ["0"] = "ada"}}, r({on = true, name = "ada"}))
    assert.same({["0"] = {["0"] = "bob"}}, r({on = true, name = "bob"}, {name = true}))
    assert.same({["0"] = {s = {"<i>off</i>"}}}, r({on = false, name = "bob"}, {on = true}))
    assert.same({s = {"", ""}, ["0"] = ""}, (track("<% if @on then %>x<% end %>")({on = false})))
  end)

  it("renders a loop as a comprehension with shared statics and keyed diffs", function()
    local r = track([[<ul><% for i, x in ipairs(@items) do %><li id="i<%= i %>"><%= x %></li><% end %></ul>]])
    assert.same({s = {"<ul>", "</ul>"}, ["0"] = {s = {'<li id="i', '">', "</li>"},
      k = {["0"] = {["0"] = "1", ["1"] = "a"}, ["1"] = {["0"] = "2", ["1"] = "b"}, kc = 2}}},
      r({items = {"a", "b"}}))
    -- a changed entry and an appended one; kc always present
    assert.same({["0"] = {k = {["1"] = {["1"] = "B"}, ["2"] = {["0"] = "3", ["1"] = "c"}, kc = 3}}},
      r({items = {"a", "B", "c"}}, {items = true}))
    -- a shorter list only lowers kc
    assert.same({["0"] = {k = {kc = 1}}}, r({items = {"a"}}, {items = true}))
    assert.same({["0"] = {k = {kc = 0}}}, r({items = {}}, {items = true}))
  end)

  it("nests blocks inside loops and loops inside branches", function()
    local tpl = T.compile([[<% for _, u in ipairs(@users) do %><% if u.admin then %>*<% end %><%= u.name %>,<% end %>]])
    assert.equal("*ann,bob,", T.html(tpl({users = {{name = "ann", admin = true}, {name = "bob"}}})))
    local w = T.wire(tpl({users = {{name = "ann", admin = true}}}))
    assert.same({s = {"", "", ","}, k = {["0"] = {["0"] = {s = {"*"}}, ["1"] = "ann"}, kc = 1}}, w["0"])
  end)

  it("calls function components: templates of their own assigns", function()
    local button = T.compile([[<button phx-click="<%= @event %>"><%= @label %></button>]])
    local r = track([[<div><%= button{event = "inc", label = @label} %></div>]], {env = {button = button}})
    local full = r({label = "+"})
    assert.same({s = {'<button phx-click="', '">', "</button>"}, ["0"] = "inc", ["1"] = "+"}, full["0"])
    assert.same({["0"] = {["1"] = "plus"}}, r({label = "plus"}, {label = true}))
  end)

  it("runs statements, comments and @ outside strings only", function()
    local tpl = T.compile([[<% local total = 0 for _, n in ipairs(@ns) do total = total + n end %>]]
      .. [[<%# not output %><%= total %> <%= "@x" %>]])
    assert.equal("6 @x", T.html(tpl({ns = {1, 2, 3}})))
  end)

  it("reports template errors", function()
    assert.has_error(function() T.compile("<% if x then %>a") end)
    assert.has_error(function() T.compile("<%= x ") end)
    assert.has_error(function() T.compile("a<% end %>") end)
  end)
end)
