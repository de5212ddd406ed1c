--- A module whose table raises on any missing field (a "strict" module, as
--- some projects make them): spawning {"strict_module", "missing_fn"} must end
--- that process with the error, not the program.
local M = {}

function M.present(parent) require("moonbeam").send(parent, {"present"}) end

return setmetatable(M, {__index = function(_, k) error("strict_module has no field '" .. tostring(k) .. "'", 2) end})
