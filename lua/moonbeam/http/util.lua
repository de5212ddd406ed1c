--- moonbeam.http.util: URL decoding, query strings and header value helpers.
local M = {}

local function unhex(h) return string.char(tonumber(h, 16)) end

--- Percent-decodes `s`; with `plus`, "+" is a space (forms and query strings).
function M.decode(s, plus)
  if plus then s = s:gsub("+", " ") end
  return (s:gsub("%%(%x%x)", unhex))
end

--- Percent-encodes everything but RFC 3986's unreserved characters.
function M.encode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

--- Decodes "a=1&b=2&l[]=x&l[]=y" into {a="1", b="2", l={"x","y"}}. A repeated key
--- without [] keeps the last value, as Plug does.
function M.decode_query(qs)
  local out = {}
  if not qs or qs == "" then return out end
  for pair in qs:gmatch("[^&;]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k = M.decode(k, true)
    v = M.decode(v, true)
    if k ~= "" then
      local list = k:match("^(.-)%[%]$")
      if list then
        local t = out[list]
        if type(t) ~= "table" then t = {} out[list] = t end
        t[#t + 1] = v
      else
        out[k] = v
      end
    end
  end
  return out
end

--- Encodes a flat table (lists as k[]=) as a query string, keys sorted.
function M.encode_query(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = t[k]
    if type(v) == "table" then
      for _, x in ipairs(v) do parts[#parts + 1] = M.encode(k) .. "[]=" .. M.encode(x) end
    else
      parts[#parts + 1] = M.encode(k) .. "=" .. M.encode(v)
    end
  end
  return table.concat(parts, "&")
end

--- Splits a header value like `text/html; charset=utf-8; q=1` into the lower-cased
--- main value and a table of lower-cased parameter names to values (quotes removed).
function M.parse_params(value)
  if not value then return nil, {} end
  local main, rest = value:match("^%s*([^;]*)(.*)$")
  main = main:gsub("%s+$", ""):lower()
  local params = {}
  for k, v in rest:gmatch(';%s*([^=;%s]+)%s*=%s*("?[^";]*"?)') do
    params[k:lower()] = v:gsub('^"(.*)"$', "%1")
  end
  return main, params
end

--- Formats a time (seconds since the epoch) as an HTTP date (IMF-fixdate).
function M.http_date(t)
  return os.date("!%a, %d %b %Y %H:%M:%S GMT", t or os.time())
end

local months = {Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8,
  Sep = 9, Oct = 10, Nov = 11, Dec = 12}

--- Parses an IMF-fixdate into seconds since the epoch, or nil.
function M.parse_http_date(s)
  if not s then return nil end
  local d, mon, y, h, mi, sec = s:match("^%a+, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if not d or not months[mon] then return nil end
  -- days from civil (proleptic Gregorian), no local time zone involved
  y, d = tonumber(y), tonumber(d)
  local m = months[mon]
  if m <= 2 then y = y - 1 end
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = (153 * mp + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  local days = era * 146097 + doe - 719468
  return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec)
end

return M
