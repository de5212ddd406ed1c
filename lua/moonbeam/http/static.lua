--- moonbeam.http.static: files from a directory, as Plug.Static.
---
---   static.plug{at = "/assets", from = "priv/static", max_age = 3600}
---
--- Serves GET and HEAD for paths under `at` from files under `from` (other
--- requests pass through to the next plug). Sends ETag (size and mtime) and
--- Last-Modified; answers If-None-Match / If-Modified-Since with 304; a Range
--- of bytes (one range: "bytes=a-b", "a-", "-n") with 206 or 416. Paths with
--- ".." segments, NUL bytes or backslashes are refused (400). The body goes
--- out through the connection's send_file. Content types come from the
--- extension (opts.types adds more).
local util = require "moonbeam.http.util"

local M = {}

M.types = {
  html = "text/html", htm = "text/html", css = "text/css", js = "text/javascript",
  mjs = "text/javascript", json = "application/json", txt = "text/plain", svg = "image/svg+xml",
  png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif",
  webp = "image/webp", ico = "image/x-icon", wasm = "application/wasm", pdf = "application/pdf",
  woff = "font/woff", woff2 = "font/woff2", xml = "application/xml", map = "application/json",
}

-- size and mtime of a regular file, through one stat in a shell-free way:
-- io.open and seek give the size; the mtime comes from `lfs` if installed, else
-- the size alone makes the validator (weak ETag).
local function stat(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local size = f:seek("end")
  f:close()
  if not size then return nil end       -- a directory
  local mtime
  local ok, lfs = pcall(require, "lfs")
  if ok then
    local attr = lfs.attributes(path)
    if not attr or attr.mode ~= "file" then return nil end
    mtime = attr.modification
  end
  return size, mtime
end

local function parse_range(h, size)
  local a, b = h:match("^bytes=(%d*)%-(%d*)$")
  if not a or (a == "" and b == "") then return nil end
  local first, last
  if a == "" then
    local n = tonumber(b)
    if n == 0 then return false end
    first, last = math.max(0, size - n), size - 1
  else
    first = tonumber(a)
    last = b == "" and size - 1 or math.min(tonumber(b), size - 1)
  end
  if first > last or first >= size then return false end
  return first, last
end

function M.plug(opts)
  assert(opts and opts.at and opts.from, "static.plug needs at and from")
  local prefix = {}
  for seg in opts.at:gmatch("[^/]+") do prefix[#prefix + 1] = seg end
  local types = setmetatable(opts.types or {}, {__index = M.types})
  return function(conn)
    if conn.method ~= "GET" and conn.method ~= "HEAD" then return conn end
    local info = conn.path_info
    for i, seg in ipairs(prefix) do if info[i] ~= seg then return conn end end
    local rel = {}
    for i = #prefix + 1, #info do
      local seg = info[i]
      if seg == ".." or seg == "." or seg:find("[%z\\]") or seg:find("/") then
        conn:put_resp_content_type("text/plain")
        conn:send_resp(400, "bad path\n")
        return conn:halt()
      end
      rel[#rel + 1] = seg
    end
    if #rel == 0 then return conn end
    local path = opts.from .. "/" .. table.concat(rel, "/")
    local function send(c, status, p, offset, length)
      local ok, err = c:send_file(status, p, offset, length)
      if not ok and c.state == "unset" then
        -- gone or changed between the stat and the open: nothing was sent
        for _, h in ipairs({"etag", "last-modified", "accept-ranges", "cache-control", "content-range"}) do
          c:delete_resp_header(h)
        end
        c:put_resp_content_type("text/plain")
        c:send_resp(err == "changed" and 503 or 404, err == "changed" and "file changed, retry\n" or "not found\n")
      end
      return c:halt()
    end
    local size, mtime = stat(path)
    if not size then return conn end
    local etag = mtime and ('"%x-%x"'):format(size, mtime) or ('W/"%x"'):format(size)
    conn:put_resp_header("etag", etag)
    if mtime then conn:put_resp_header("last-modified", util.http_date(mtime)) end
    conn:put_resp_header("accept-ranges", "bytes")
    if opts.max_age then conn:put_resp_header("cache-control", "public, max-age=" .. opts.max_age) end
    local ext = path:match("%.([%w]+)$")
    conn:put_resp_content_type(ext and types[ext:lower()] or "application/octet-stream")
    local inm = conn.headers["if-none-match"]
    local ims = util.parse_http_date(conn.headers["if-modified-since"])
    if (inm and (inm == "*" or inm:find(etag, 1, true))) or (not inm and ims and mtime and mtime <= ims) then
      conn:send_resp(304, "")
      return conn:halt()
    end
    local range = conn.headers.range
    if range then
      local first, last = parse_range(range, size)
      if first == false then
        conn:put_resp_header("content-range", "bytes */" .. size)
        conn:send_resp(416, "")
        return conn:halt()
      elseif first then
        conn:put_resp_header("content-range", ("bytes %d-%d/%d"):format(first, last, size))
        return send(conn, 206, path, first, last - first + 1)
      end
    end
    return send(conn, 200, path, 0, size)
  end
end

return M
