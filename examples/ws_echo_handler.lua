-- The handler of examples/ws_echo.lua (cowboy_websocket's callbacks).
local mb = require "moonbeam"

-- Echoes text and binary, counts messages, and
-- pushes a tick every 5 s through handle_info.
local Echo = {}
function Echo.init(state)
  mb.send_after(5000, mb.self(), {"tick"})
  return "ok", state
end
function Echo.handle_in(frame, state)
  if frame[1] == "text" or frame[1] == "binary" then
    state.n = state.n + 1
    return "reply", {frame[1], frame[1] == "text" and ("echo #" .. state.n .. ": " .. frame[2]) or frame[2]}, state
  end
  return "ok", state
end
function Echo.handle_info(msg, state)
  if msg[1] == "tick" then
    mb.send_after(5000, mb.self(), {"tick"})
    return "reply", {"text", "tick (" .. state.n .. " messages so far)"}, state
  end
  return "ok", state
end
function Echo.terminate(reason, state)
  print(("websocket closed (%s) after %d messages"):format(mb.format(reason), state.n))
end

return Echo
