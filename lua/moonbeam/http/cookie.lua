--- moonbeam.http.cookie: Cookie request headers and Set-Cookie values (RFC 6265).
local util = require "moonbeam.http.util"

local M = {}

--- Parses a Cookie header ("a=1; b=2") into {a="1", b="2"}; the first of
--- duplicate names wins, as browsers send the most specific first.
function M.parse(header)
  local out = {}
  if not header then return out end
  for pair in header:gmatch("[^;]+") do
    local k, v = pair:match("^%s*([^=]-)%s*=%s*(.-)%s*$")
    if k and k ~= "" and out[k] == nil then
      v = v:gsub('^"(.*)"$', "%1")
      out[k] = util.decode(v)
    end
  end
  return out
end

local function check_token(what, s)
  if s:find("[%c%s;,\"\\]") then error(what .. " has a character not allowed in a cookie: " .. s, 3) end
end

--- Formats a Set-Cookie value. opts: path (default "/"), domain, max_age (seconds),
--- expires (epoch seconds), secure, http_only (default true), same_site ("Lax",
--- "Strict", "None"). The value is percent-encoded where needed.
function M.serialize(name, value, opts)
  opts = opts or {}
  check_token("cookie name", name)
  value = tostring(value):gsub("[^%w%-%._~!#$&'()*+/:<=>?@%[%]^`{|}]", function(c)
    return ("%%%02X"):format(c:byte())
  end)
  local parts = {name .. "=" .. value}
  parts[#parts + 1] = "path=" .. (opts.path or "/")
  if opts.domain then parts[#parts + 1] = "domain=" .. opts.domain end
  if opts.max_age then
    parts[#parts + 1] = "max-age=" .. math.floor(opts.max_age)
    if not opts.expires then
      parts[#parts + 1] = "expires=" .. util.http_date(os.time() + math.floor(opts.max_age))
    end
  end
  if opts.expires then parts[#parts + 1] = "expires=" .. util.http_date(opts.expires) end
  if opts.secure then parts[#parts + 1] = "secure" end
  if opts.http_only ~= false then parts[#parts + 1] = "HttpOnly" end
  if opts.same_site then parts[#parts + 1] = "SameSite=" .. opts.same_site end
  return table.concat(parts, "; ")
end

return M
