-- A module whose missing fields raise (a "strict" module), for spec/hardening_spec.lua.
return setmetatable({}, {__index = function(_, k) error("strict: no field " .. tostring(k)) end})
