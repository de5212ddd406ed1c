--- A small module for specs that spawn `{module_name, function_name}`: it is
--- required by name in whichever scheduler's VM the process lands on.
local mb = require "moonbeam"

local M = {}

--- Loaded once per VM: a child sees its own VM's copy.
M.loads = (M.loads or 0) + 1

--- Sends `{tag, self, scheduler, extra...}` to `parent` and ends.
---@param parent moonbeam.pid
---@param tag string
function M.hello(parent, tag, ...)
  mb.send(parent, {tag, mb.self(), mb.scheduler(), ...})
end

--- Echoes `{from, msg}` back to `from` as `{"echo", msg}` until told "stop".
function M.echo()
  while true do
    local m = mb.receive()
    if m == "stop" then return end
    mb.send(m[1], {"echo", m[2]})
  end
end

return M
