-- A real browser: headless Chromium (Debian's chromium, driven by npm's
-- playwright-core) loads a page from moonbeam's server; the page opens a
-- WebSocket to it and exchanges text, binary and a 100 KB message, then closes.
package.path = package.path .. ";spec/support/?.lua"
local mb = require "moonbeam"
local H = require "http_helper"

describe("browser", function()
  it("Chromium loads a page and talks WebSocket to moonbeam", function()
    assert(io.open("/usr/bin/chromium"), "chromium is missing (apt-get install chromium; make deps does)")
    assert(io.open("spec/support/node_modules/playwright-core/package.json"),
      "playwright-core is missing: make spec-deps")
    local line = H.with_server({}, function(port)
      local file = os.tmpname()
      os.execute(("env -u LD_PRELOAD node spec/support/browser_ws.js http://127.0.0.1:%d/page > %s 2>&1 &")
        :format(port, file))
      local out = ""
      for _ = 1, 600 do
        mb.sleep(100)
        local f = io.open(file)
        out = f:read("a")
        f:close()
        if out:find("\n") then break end
      end
      os.remove(file)
      return out
    end)
    local r = require("moonbeam.http.json").decode(line)
    assert.is_table(r, line)
    assert.is_nil(r.error, line)
    assert.same({"re:hello", "binary:1,2,3", "long:100003", "4"}, r.messages)
    assert.equal(1000, r.close)
  end)
end)
