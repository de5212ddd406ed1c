-- HTTPS and WSS: moonbeam's server with tls options, its client and its
-- WebSocket client through moonbeam.tls, and curl; a self-signed certificate
-- made here with the openssl command.
package.path = package.path .. ";spec/support/?.lua"
local mb = require "moonbeam"
local http = require "moonbeam.http"
local websocket = require "moonbeam.websocket"
local H = require "http_helper"

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))
assert(os.execute("cd " .. dir .. " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1" ..
  " -nodes -keyout key.pem -out cert.pem -days 2 -subj /CN=localhost" ..
  " -addext subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1"))
local TLS = {certfile = dir .. "/cert.pem", keyfile = dir .. "/key.pem"}
local CA = {cafile = dir .. "/cert.pem"}

describe("https", function()
  it("serves HTTPS to moonbeam's client (verified against the certificate) with keep-alive", function()
    local a, b, bad = H.with_server({tls = TLS}, function(port)
      local base = "https://localhost:" .. port
      local r1 = http.request("GET", base .. "/pid", {tls = CA})
      local r2 = http.request("POST", base .. "/echo", {tls = CA, body = "over tls"})
      local r3 = http.request("GET", base .. "/pid", {tls = CA})
      local _, err = http.request("GET", base .. "/", {pool = false})    -- unknown CA
      http.client.close_idle()
      return {r1.status, r1.body, r3.body}, r2.body, err
    end)
    assert.equal(200, a[1])
    assert.equal(a[2], a[3])                       -- the same connection
    assert.equal("over tls", b)
    assert.matches("verify", bad)
  end)

  it("serves curl over HTTPS", function()
    local out = H.with_server({tls = TLS}, function(port)
      local file = os.tmpname()
      os.execute(("env -u LD_PRELOAD curl -s -m 10 --cacert %s -w '|%%{http_code}\\n' https://localhost:%d/ > %s 2>&1 &")
        :format(CA.cafile, port, file))
      local o = ""
      for _ = 1, 100 do
        mb.sleep(100)
        local f = io.open(file)
        o = f:read("a")
        f:close()
        if o:find("\n") then break end
      end
      os.remove(file)
      return o
    end)
    assert.equal("hello|200\n", out)
  end)

  it("sends static files over HTTPS (read and sent: sendfile cannot encrypt)", function()
    local d = dir
    local f = io.open(d .. "/file.bin", "wb")
    local blob = ("0123456789abcdef"):rep(20000) -- 320 KB: several 64 KB pieces
    f:write(blob) f:close()
    local whole, part = H.with_server({tls = TLS}, function(port)
      local base = "https://localhost:" .. port .. "/s/file.bin"
      local r1 = http.request("GET", base, {tls = CA})
      local r2 = http.request("GET", base, {tls = CA, headers = {range = "bytes=100000-100015"}})
      http.client.close_idle()
      return r1, r2
    end, function(conn)
      return require("moonbeam.http.static").plug({at = "/s", from = d})(conn)
    end)
    assert.equal(200, whole.status)
    assert.is_true(whole.body == blob)
    assert.equal(206, part.status)
    assert.equal(blob:sub(100001, 100016), part.body)
  end)

  it("upgrades to WebSocket over TLS (wss)", function()
    local f1, f2 = H.with_server({tls = TLS}, function(port)
      local c = assert(websocket.connect("wss://localhost:" .. port .. "/ws?prefix=s:", {tls = CA}))
      c:send("text", "secure")
      local x = c:recv(3000)
      c:send("binary", ("b"):rep(100000))
      local y = c:recv(3000)
      c:close()
      return x, y
    end)
    assert.same({"text", "s:secure"}, f1)
    assert.equal(100000, #f2[2])
  end)
end)
