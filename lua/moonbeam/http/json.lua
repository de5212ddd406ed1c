--- moonbeam.http.json: JSON through Debian's lua-cjson (a fresh instance per VM,
--- so settings of one module never leak into another's), with errors as values.
local cjson = require("cjson").new()

cjson.decode_max_depth(128)
cjson.encode_max_depth(128)

local M = {null = cjson.null}

--- The JSON text of `v`, or nil and an error message.
function M.encode(v)
  local ok, s = pcall(cjson.encode, v)
  if ok then return s end
  return nil, s
end

-- lua-cjson 2.1 decodes every number as a float: integral ones become integers.
local tointeger = math.tointeger
local function integers(v)
  if type(v) == "number" then return tointeger(v) or v end
  if type(v) == "table" then
    for k, x in pairs(v) do
      local tx = type(x)
      if tx == "number" then
        local i = tointeger(x)
        if i then v[k] = i end
      elseif tx == "table" then
        integers(x)
      end
    end
  end
  return v
end

--- The value of JSON text `s`, or nil and an error message. JSON null is
--- `json.null`; integral numbers are Lua integers.
function M.decode(s)
  local ok, v = pcall(cjson.decode, s)
  if ok then return integers(v) end
  return nil, v
end

return M
