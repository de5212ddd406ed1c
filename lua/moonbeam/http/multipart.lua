--- moonbeam.http.multipart: multipart/form-data bodies (RFC 7578).
--- A field without a filename becomes a string param; a file becomes
--- {filename=, content_type=, data=, headers=}.
local util = require "moonbeam.http.util"

local M = {}

local function parse_part(raw)
  local head_end = raw:find("\r\n\r\n", 1, true)
  local head, data
  if head_end then
    head, data = raw:sub(1, head_end - 1), raw:sub(head_end + 4)
  elseif raw:sub(1, 2) == "\r\n" then
    head, data = "", raw:sub(3)
  else
    return nil, "part without a header end"
  end
  local headers = {}
  for line in (head .. "\r\n"):gmatch("(.-)\r\n") do
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k then headers[k:lower()] = v end
  end
  local disp, params = util.parse_params(headers["content-disposition"])
  if disp ~= "form-data" or not params.name then return nil, "part without form-data name" end
  return {name = params.name, filename = params.filename, headers = headers,
          content_type = headers["content-type"], data = data}
end

--- Splits `body` along `boundary`; returns params (name = string, or a file
--- table) or nil and an error. Repeated names ending in [] collect into a list.
--- opts.max_parts (default 1000) bounds the number of parts.
function M.parse(body, boundary, opts)
  local max_parts = opts and opts.max_parts or 1000
  if not boundary or boundary == "" or #boundary > 200 then return nil, "bad boundary" end
  local delim = "--" .. boundary
  local params, n = {}, 0
  local pos = body:find(delim, 1, true)
  if not pos then return nil, "no boundary in body" end
  pos = pos + #delim
  while true do
    if body:sub(pos, pos + 1) == "--" then return params end   -- final delimiter
    if body:sub(pos, pos + 1) ~= "\r\n" then return nil, "malformed delimiter" end
    pos = pos + 2
    local nxt = body:find("\r\n" .. delim, pos, true)
    if not nxt then return nil, "unterminated part" end
    n = n + 1
    if n > max_parts then return nil, "too many parts" end
    local part, err = parse_part(body:sub(pos, nxt - 1))
    if not part then return nil, err end
    local value = part.filename and part or part.data
    local list = part.name:match("^(.-)%[%]$")
    if list then
      local t = params[list]
      if type(t) ~= "table" or t.data then t = {} params[list] = t end
      t[#t + 1] = value
    else
      params[part.name] = value
    end
    pos = nxt + 2 + #delim
  end
end

--- Builds a multipart body from {name = string | {filename=, content_type=, data=}};
--- returns body, content-type header value (for the client and tests).
function M.encode(fields, boundary)
  boundary = boundary or ("moonbeam" .. tostring(math.random(1e9)) .. tostring(os.time()))
  local out = {}
  local names = {}
  for k in pairs(fields) do names[#names + 1] = k end
  table.sort(names)
  for _, name in ipairs(names) do
    local v = fields[name]
    out[#out + 1] = "--" .. boundary .. "\r\n"
    if type(v) == "table" then
      out[#out + 1] = ('Content-Disposition: form-data; name="%s"; filename="%s"\r\n'):format(
        name, v.filename or "file")
      out[#out + 1] = "Content-Type: " .. (v.content_type or "application/octet-stream") .. "\r\n\r\n"
      out[#out + 1] = v.data
    else
      out[#out + 1] = ('Content-Disposition: form-data; name="%s"\r\n\r\n'):format(name)
      out[#out + 1] = tostring(v)
    end
    out[#out + 1] = "\r\n"
  end
  out[#out + 1] = "--" .. boundary .. "--\r\n"
  return table.concat(out), "multipart/form-data; boundary=" .. boundary
end

return M
