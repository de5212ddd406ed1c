--- moonbeam.http.session: sessions in signed or encrypted cookies, and the
--- token functions they rest on (also for live views and CSRF).
---
--- Tokens: sign(secret, salt, value) makes "<payload>.<mac>" (URL-safe base64 of
--- the JSON {"d": value, "t": issued-at} and its HMAC-SHA256 under a key derived
--- from secret and salt with PBKDF2); verify(secret, salt, token, max_age) gives
--- the value back, or nil and "invalid" / "expired". encrypt/decrypt do the same
--- with AES-256-GCM ("<iv>.<sealed>"), so the client can read nothing.
---
--- The plug: session.plug{key = "_app_session", secret_key_base = "...(64+ bytes)",
--- signing_salt = "...", encryption_salt = nil | "..." (encrypt when set),
--- max_age = seconds, cookie options (path, domain, secure, same_site)}.
--- Then conn:get_session(k), put_session(k, v), delete_session(k),
--- clear_session(), configure_session{renew=, drop=}.
local core = require "moonbeam.core"
local json = require "moonbeam.http.json"
local Conn = require("moonbeam.http.conn").Conn

local crypto = core.crypto
local M = {}

local ITERATIONS = 1000
local keys = {}   -- derived keys of this VM, by secret .. "\0" .. salt

local function derive(secret, salt)
  if type(secret) ~= "string" or #secret < 32 then
    error("secret_key_base must be a string of at least 32 bytes", 3)
  end
  local id = secret .. "\0" .. salt
  local k = keys[id]
  if not k then
    k = crypto.pbkdf2(secret, salt, ITERATIONS, 32)
    keys[id] = k
  end
  return k
end

local function b64(s) return crypto.base64(s, true) end
local function unb64(s) return crypto.unbase64(s, true) end

local function pack(value)
  local s, err = json.encode({d = value, t = os.time()})
  if not s then error("session value cannot be encoded: " .. err, 3) end
  return s
end

local function unpack_checked(s, max_age)
  local v = json.decode(s)
  if type(v) ~= "table" or type(v.t) ~= "number" then return nil, "invalid" end
  if max_age and os.time() - v.t > max_age then return nil, "expired" end
  return v.d
end

function M.sign(secret, salt, value)
  local key = derive(secret, salt)
  local payload = b64(pack(value))
  return payload .. "." .. b64(crypto.hmac("sha256", key, payload))
end

function M.verify(secret, salt, token, max_age)
  if type(token) ~= "string" then return nil, "invalid" end
  local key = derive(secret, salt)
  local payload, mac = token:match("^([%w%-_]+)%.([%w%-_]+)$")
  if not payload then return nil, "invalid" end
  local want = crypto.hmac("sha256", key, payload)
  local got = unb64(mac)
  if not got or not crypto.equal(want, got) then return nil, "invalid" end
  local s = unb64(payload)
  if not s then return nil, "invalid" end
  return unpack_checked(s, max_age)
end

function M.encrypt(secret, salt, value)
  local key = derive(secret, salt)
  local iv = crypto.random(12)
  return b64(iv) .. "." .. b64(crypto.seal(key, iv, pack(value), "moonbeam.session"))
end

function M.decrypt(secret, salt, token, max_age)
  if type(token) ~= "string" then return nil, "invalid" end
  local key = derive(secret, salt)
  local iv64, sealed64 = token:match("^([%w%-_]+)%.([%w%-_]+)$")
  if not iv64 then return nil, "invalid" end
  local iv, sealed = unb64(iv64), unb64(sealed64)
  if not iv or #iv ~= 12 or not sealed then return nil, "invalid" end
  local s = crypto.open(key, iv, sealed, "moonbeam.session")
  if not s then return nil, "invalid" end
  return unpack_checked(s, max_age)
end

-- ---------------------------------------------------------------- the plug

local function load(conn)
  local st = conn.private.session
  if not st then error("no session: add moonbeam.http.session.plug to the pipeline", 3) end
  if st.data == nil then
    conn:fetch_cookies()
    local raw = conn.cookies[st.opts.key]
    local data
    if raw then
      local o = st.opts
      if o.encryption_salt then
        data = M.decrypt(o.secret_key_base, o.encryption_salt, raw, o.max_age)
      else
        data = M.verify(o.secret_key_base, o.signing_salt, raw, o.max_age)
      end
    end
    if type(data) ~= "table" then data = {} end
    st.data = data
  end
  return st
end

function Conn:get_session(key)
  local st = load(self)
  if key == nil then return st.data end
  return st.data[key]
end

function Conn:put_session(key, value)
  local st = load(self)
  st.data[key] = value
  st.dirty = true
  return self
end

function Conn:delete_session(key)
  return self:put_session(key, nil)
end

function Conn:clear_session()
  local st = load(self)
  st.data = {}
  st.dirty = true
  return self
end

--- opts.drop: send no cookie and forget the session; opts.renew: write it again.
function Conn:configure_session(opts)
  local st = load(self)
  if opts.drop then st.drop = true end
  if opts.renew then st.dirty = true end
  return self
end

local function write(conn)
  local st = conn.private.session
  local o = st.opts
  local copts = {path = o.path or "/", domain = o.domain, secure = o.secure,
    same_site = o.same_site or "Lax", max_age = o.max_age, http_only = o.http_only}
  if st.drop then
    if conn.cookies and conn.cookies[o.key] then conn:delete_resp_cookie(o.key, copts) end
    return
  end
  if not st.dirty then return end
  local value
  if o.encryption_salt then
    value = M.encrypt(o.secret_key_base, o.encryption_salt, st.data)
  else
    value = M.sign(o.secret_key_base, o.signing_salt, st.data)
  end
  if #value > 4096 then error("session cookie larger than 4096 bytes", 0) end
  conn:put_resp_cookie(o.key, value, copts)
end

function M.plug(opts)
  assert(type(opts) == "table" and opts.key and opts.secret_key_base,
    "session.plug needs key and secret_key_base")
  if not opts.encryption_salt and not opts.signing_salt then
    error("session.plug needs signing_salt (or encryption_salt)", 2)
  end
  derive(opts.secret_key_base, opts.encryption_salt or opts.signing_salt)
  return function(conn)
    conn.private.session = {opts = opts}
    conn:register_before_send(write)
    return conn
  end
end

return M
