-- A gen_server for spec/hardening_spec.lua: traps exits, writes the reason it
-- terminates with to a file; calls get_state on itself when asked.
local mb = require "moonbeam"
local gen_server = require "moonbeam.gen_server"

local M = {}

function M.init(path)
  mb.trap_exit(true)
  return "ok", {path = path}
end

function M.handle_call(req, _from, state)
  if req == "get_state_of_self" then
    local t0 = mb.clock()
    local ok, err = pcall(gen_server.get_state, mb.self(), 2000)
    return "reply", {ok, mb.exit_reason(err), mb.clock() - t0}, state
  end
  return "reply", req, state
end

function M.terminate(reason, state)
  if state.path then
    mb.sleep(50) -- a terminate that takes a while is waited for
    local f = assert(io.open(state.path, "w"))
    f:write(mb.format(reason))
    f:close()
  end
end

return M
