-- Streams (moonbeam.live.stream) at the wire level: the "stream" annotation
-- of the comprehension as Phoenix sends it ([ref, inserts, deletes, reset]),
-- only new entries in each diff, and no entry kept on the server.
package.path = package.path .. ";spec/support/?.lua;examples/?.lua"
local live = require "moonbeam.live"
local json = require "moonbeam.http.json"
local channel = require "moonbeam.channel"

local null = json.null
local View = {render = live.template[[
<ul id="items" phx-update="stream"><% for _, e in ipairs(@streams.items) do %><li id="<%= e.id %>"><%= e.item.name %></li><% end %></ul><p><%= @n %></p>]]}
local S = {'<li id="', '">', "</li>"}

local function socket()
  local s = live.new_socket{connected = true}
  live.assign(s, "n", 0)
  return live.stream(s, "items", {{id = 1, name = "a"}, {id = 2, name = "b"}})
end
local function frame(out) return channel.encode_frame(nil, nil, "t", "diff", out) end

describe("live streams", function()
  it("sends the inserts once, with Phoenix's stream annotation, and keeps none", function()
    local s = socket()
    local out = live.render(View, s, true)
    assert.same({stream = {"0", {{"items-2", -1, null, null}, {"items-1", -1, null, null}}, "\0[]"},
      s = S, k = {kc = 2, ["0"] = {["0"] = "items-1", ["1"] = "a"}, ["1"] = {["0"] = "items-2", ["1"] = "b"}}},
      out["0"])
    assert.truthy(frame(out):find('"stream":["0",[["items-2",-1,null,null],["items-1",-1,null,null]],[]]', 1, true))
    -- the kept tree and the stream hold no entry any more
    assert.same({}, s.private.tree.d[1].e)
    assert.same({}, s.assigns.streams.items.inserts)
    -- an unrelated change: the stream is not in the diff
    live.assign(s, "n", 1)
    assert.same({["1"] = "1"}, (live.render(View, s, false)))
    -- one insert at the top with a limit: only that entry, no statics
    live.stream_insert(s, "items", {id = 3, name = "<c>"}, {at = 0, limit = 10})
    out = live.render(View, s, false)
    assert.same({stream = {"0", {{"items-3", 0, 10, null}}, "\0[]"},
      k = {kc = 1, ["0"] = {["0"] = "items-3", ["1"] = "&lt;c&gt;"}}}, out["0"])
    -- an insert of an id twice in one render: the latest wins, sent once
    live.stream_insert(s, "items", {id = 4, name = "x"})
    live.stream_insert(s, "items", {id = 4, name = "y"}, {update_only = true})
    out = live.render(View, s, false)
    assert.same({kc = 1, ["0"] = {["0"] = "items-4", ["1"] = "y"}}, out["0"].k)
    assert.same({{"items-4", -1, null, true}, {"items-4", -1, null, null}}, out["0"].stream[2])
    -- deletes and a reset
    live.stream_delete(s, "items", {id = 3})
    live.stream_delete_by_dom_id(s, "items", "items-1")
    out = live.render(View, s, false)
    assert.same({stream = {"0", "\0[]", {"items-3", "items-1"}}, k = {kc = 0}}, out["0"])
    assert.truthy(frame(out):find('"stream":["0",[],["items-3","items-1"]]', 1, true))
    live.stream(s, "items", {{id = 9, name = "z"}}, {reset = true})
    out = live.render(View, s, false)
    assert.same({"0", {{"items-9", -1, null, null}}, "\0[]", true}, out["0"].stream)
    assert.is_nil((live.render(View, s, false)))            -- nothing pending: no diff
  end)

  it("renders the stream's items in the dead render, then forgets them", function()
    local s = live.new_socket{}
    live.assign(s, "n", 0)
    live.stream(s, "items", {{id = 1, name = "a"}}, {dom_id = function(it) return "row" .. it.id end})
    local _, _, html = live.render(View, s, true, nil, nil, true)
    assert.truthy(html:find('<li id="row1">a</li>', 1, true))
    assert.same({}, s.private.tree.d[1].e)
  end)

  it("refuses an item without id when no dom_id is given", function()
    local s = live.new_socket{}
    local ok, err = pcall(live.stream, s, "items", {{name = "no id"}})
    assert.is_false(ok)
    assert.matches("needs an id", err)
  end)
end)
