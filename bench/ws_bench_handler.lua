-- Echo handler for bench/ws_server.lua.
local M = {}
function M.handle_in(frame, state)
  if frame[1] == "text" or frame[1] == "binary" then return "reply", frame, state end
  return "ok", state
end
return M
