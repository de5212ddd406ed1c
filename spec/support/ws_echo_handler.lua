-- A WebSocket handler for the specs: echoes frames (with the state's prefix on
-- text), answers "count" with how many messages it saw, "flood:N" with N binary
-- frames of 64 KB, "stop" by closing, "info" by asking itself for a handle_info,
-- and reports terminate to the process registered as "ws_spec_observer".
local mb = require "moonbeam"
local M = {}

function M.init(state)
  state.n = 0
  return "ok", state
end

function M.handle_in(frame, state)
  local kind, data = frame[1], frame[2]
  if kind ~= "text" and kind ~= "binary" then return "ok", state end
  state.n = state.n + 1
  if kind == "text" then
    if data == "count" then return "reply", {"text", tostring(state.n)}, state end
    if data == "stop" then return "stop", state end
    if data == "info" then
      mb.send(mb.self(), {"hello from info"})
      return "ok", state
    end
    if data == "crash" then error("ws handler crash on purpose") end
    local n = data:match("^flood:(%d+)$")
    if n then
      -- one frame per handle_info, so sending interleaves with input
      for _ = 1, tonumber(n) do mb.send(mb.self(), {"$flood_one"}) end
      return "ok", state
    end
    return "reply", {"text", state.prefix .. data}, state
  end
  return "reply", {"binary", data}, state
end

function M.handle_info(msg, state)
  if msg[1] == "$flood_one" then return "reply", {"binary", ("f"):rep(65536)}, state end
  return "reply", {"text", "info:" .. tostring(msg[1])}, state
end

function M.terminate(reason, state)
  local obs = mb.whereis("ws_spec_observer")
  if obs then mb.send(obs, {"terminated", mb.format(reason), state and state.n}) end
end

return M
