-- The server of bench/live.lua: the live examples app on a port, printing
-- "ready PORT" once it listens.
package.path = package.path .. ";examples/?.lua"
local mb = require "moonbeam"
local http = require "moonbeam.http"
mb.run(function()
  require("moonbeam.pubsub").start_link{name = "live_examples"}
  -- every connected dashboard gets a PubSub update a second
  require("live_views.metrics").start_link{interval = 1000}
  local srv = assert(http.start("live_views.app", {port = tonumber(arg[1]) or 0, log = false,
                                                    max_connections = 65536}))
  io.stdout:write("ready ", srv.port, "\n")
  io.stdout:flush()
  mb.receive()
end)
