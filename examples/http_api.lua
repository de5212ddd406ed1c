-- A JSON API: a router over a GenServer-backed key-value store, both under a
-- supervisor. Try it with curl while it runs:
--
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
--     lua5.4 examples/http_api.lua [--port 8080] [--seconds N]
--   curl -s localhost:8080/items                        -> {}
--   curl -s -X PUT -H 'content-type: application/json' -d '{"value": 42}' localhost:8080/items/answer
--   curl -s localhost:8080/items/answer                 -> {"key":"answer","value":42}
--   curl -s -X DELETE localhost:8080/items/answer
--
-- With --self-test (what `make examples-lua` style runs do) it calls itself
-- through moonbeam's HTTP client and prints the answers.
local mb = require "moonbeam"
local supervisor = require "moonbeam.supervisor"
local http = require "moonbeam.http"

local port, seconds, self_test = 8080, nil, false
do
  local i = 1
  while arg and arg[i] do
    if arg[i] == "--port" then i = i + 1 port = tonumber(arg[i])
    elseif arg[i] == "--seconds" then i = i + 1 seconds = tonumber(arg[i])
    elseif arg[i] == "--self-test" then self_test = true port = 0
    else io.stderr:write("usage: http_api.lua [--port N] [--seconds N] [--self-test]\n") os.exit(2) end
    i = i + 1
  end
end

package.path = package.path .. ";examples/?.lua"

mb.run(function()
  mb.register("http_api_main", mb.self())
  local root = assert(supervisor.start_link({
    {id = "store", start = {"http_api_app", "start_store", {}}},
    http.server.child_spec("http_api_app", {port = port, on_start = "http_api_main"}),
  }, {strategy = "rest_for_one", name = "http_api_sup"}))
  local m = mb.receive(function(x) return type(x) == "table" and x[1] == "http_started" end, 5000)
  local url = "http://127.0.0.1:" .. m[2]
  print("listening on " .. url)
  if self_test then
    local function show(method, path, body)
      local res = assert(http.request(method, url .. path, body and {json = body} or nil))
      print(method .. " " .. path .. " -> " .. res.status .. " " .. res.body)
    end
    show("PUT", "/items/answer", {value = 42})
    show("PUT", "/items/moon", {value = "beam"})
    show("GET", "/items/answer")
    show("GET", "/items")
    show("DELETE", "/items/moon")
    show("GET", "/items/moon")
    show("POST", "/items/x", {value = 1})
  elseif seconds then
    mb.sleep(seconds * 1000)
  else
    mb.receive()
  end
  supervisor.stop(root)
end)
