--- moonbeam.http.csrf: CSRF protection, as Plug.CSRFProtection.
---
--- csrf.plug() (after session.plug and the parsers) refuses POST, PUT, PATCH
--- and DELETE with 403 unless they carry a valid token in the `_csrf_token`
--- param or the `x-csrf-token` header. csrf.token(conn) gives the token to embed
--- in a form or meta tag: a per-session secret, masked with fresh random bytes
--- each time (so it differs on every page and resists BREACH).
local core = require "moonbeam.core"
local crypto = core.crypto

local M = {}
local SESSION_KEY = "_csrf_secret"
local LEN = 18

local function secret(conn, create)
  local s = conn:get_session(SESSION_KEY)
  local raw = type(s) == "string" and crypto.unbase64(s, true)
  if raw and #raw == LEN then return raw end
  if not create then return nil end
  raw = crypto.random(LEN)
  conn:put_session(SESSION_KEY, crypto.base64(raw, true))
  return raw
end

local function xor(a, b)
  local out = {}
  for i = 1, #a do out[i] = string.char(a:byte(i) ~ b:byte(i)) end
  return table.concat(out)
end

--- A masked token for this session (creates the session's secret on first use).
function M.token(conn)
  local s = secret(conn, true)
  local mask = crypto.random(LEN)
  return crypto.base64(mask .. xor(mask, s), true)
end

--- True if `token` belongs to this conn's session.
function M.valid(conn, token)
  if type(token) ~= "string" then return false end
  local s = secret(conn, false)
  if not s then return false end
  local raw = crypto.unbase64(token, true)
  if not raw or #raw ~= 2 * LEN then return false end
  return crypto.equal(xor(raw:sub(1, LEN), raw:sub(LEN + 1)), s)
end

local unsafe = {POST = true, PUT = true, PATCH = true, DELETE = true}

function M.plug()
  return function(conn)
    if not unsafe[conn.method] then return conn end
    local token = conn.headers["x-csrf-token"]
    if not token then
      if not conn.body_params then conn:parse_body({pass = true}) end
      token = conn.params._csrf_token
    end
    if not M.valid(conn, token) then
      conn:put_resp_content_type("text/plain")
      conn:send_resp(403, "invalid CSRF token\n")
      conn:halt()
    end
    return conn
  end
end

return M
