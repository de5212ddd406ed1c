-- Live view example: stateful components: a list of counters, each with its own state.
-- The view is examples/live_views/components.lua; the web app (session, live socket,
-- bundles, routes of all the live examples) is examples/live_views/app.lua.
--
--   make && (cd spec/support && npm install)     # the phoenix / phoenix_live_view bundles
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
--     lua5.4 examples/live_chat.lua [--port 4000]
--   then open http://localhost:4000/components
--   (MOONBEAM_NODE_MODULES=dir points at another node_modules with the bundles)
local mb = require "moonbeam"
local http = require "moonbeam.http"
local pubsub = require "moonbeam.pubsub"

package.path = package.path .. ";examples/?.lua"

local port = 4000
for i = 1, #(arg or {}) do
  if arg[i] == "--port" then port = tonumber(arg[i + 1]) end
end

mb.run(function()
  pubsub.start_link{name = "live_examples"}
  require("live_views.metrics").start_link{interval = 1000}
  local srv = assert(http.start("live_views.app", {port = port}))
  print(("live example on http://localhost:%d/components (Ctrl-C to stop)"):format(srv.port))
  mb.receive()
end)
