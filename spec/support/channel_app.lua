-- The app of spec/channel_spec.lua: a socket endpoint at /socket with the
-- channel spec/support/room_channel.lua on "room:*".
local channel = require "moonbeam.channel"
local router = require "moonbeam.http.router"

local r = router.new()
r:get("/socket/websocket", channel.endpoint{
  pubsub = "chan_spec",
  channels = {{"room:*", "room_channel"}},
  connect = function(params, socket)
    if params.token ~= "letmein" then return "error" end
    return "ok", channel.assign(socket, "user", params.user or "anon")
  end,
  websocket = {idle_timeout = 60000},
})
return r
