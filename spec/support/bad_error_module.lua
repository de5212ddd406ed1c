--- A module whose loading fails with an error object whose __tostring itself
--- raises: whoever reports the failure must not run it unprotected.
error(setmetatable({}, {__tostring = function() error("__tostring raised") end}))
