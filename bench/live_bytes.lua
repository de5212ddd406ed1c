-- Payload bytes of the live examples' updates (docs/live.md "Bytes per update"):
-- the join of the counter, a click, a component click and a stream insert.
--   lua5.4 bench/live_bytes.lua   (after make)
package.path = "lua/?.lua;lua/?/init.lua;examples/?.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local live = require "moonbeam.live"
local channel = require "moonbeam.channel"
local function n(out) return #channel.encode_frame(nil, nil, "x", "x", out) - #channel.encode_frame(nil, nil, "x", "x", {}) + 2 end
local v = require "live_views.counter"
local s = live.new_socket{connected = false}
s = live.callback(v, "mount", s, {}, {}, s)
print("counter join", n(live.render(v, s, true)))
live.callback(v, "handle_event", s, "inc", {}, s)
local d = live.render(v, s, false)
print("counter click", n(d), channel.encode_frame(nil,nil,"x","x",d))
local c = require "live_views.components"
s = live.new_socket{connected = false}
s = live.callback(c, "mount", s, {}, {}, s)
live.render(c, s, true)
local comp = require("moonbeam.live.component").find(s.private.comps, 2)
live.callback(comp.module, "handle_event", comp.socket, "inc", {}, comp.socket)
d = live.render(c, s, false, {comp})
print("component click", n(d), channel.encode_frame(nil,nil,"x","x",d))
local sc = require "live_views.stream_chat"
s = live.new_socket{connected = false}
s = live.callback(sc, "mount", s, {}, {}, s)
live.render(sc, s, true)
live.callback(sc, "handle_info", s, {"chat_msg", "a1b2c3d4e5f6", "ann", "hello"}, s)
d = live.render(sc, s, false)
print("stream insert", n(d), channel.encode_frame(nil,nil,"x","x",d))
