-- The live examples in a real browser: headless Chromium (Debian's chromium,
-- driven by npm's playwright-core) with the official phoenix and
-- phoenix_live_view bundles: the counter (clicks, title), the form
-- (phx-change validation, phx-submit, flash) and the chat between two pages
-- through PubSub. Skipped with a clear line when no browser is installed.
package.path = package.path .. ";spec/support/?.lua;examples/?.lua"
local mb = require "moonbeam"
local pubsub = require "moonbeam.pubsub"
local json = require "moonbeam.http.json"

local function have(path) local f = io.open(path) if f then f:close() return true end return false end
local missing
if not have(os.getenv("CHROMIUM") or "/usr/bin/chromium") then
  missing = "no chromium (apt-get install -y chromium; make deps installs it)"
elseif not have("spec/support/node_modules/playwright-core/package.json")
    or not have("spec/support/node_modules/phoenix_live_view/package.json") then
  missing = "npm packages missing (make spec-deps)"
end

local result
local function run()
  if result then return result end
  result = mb.run(function()
    pubsub.start_link{name = "live_examples"}
    require("live_views.metrics").start_link{interval = 200}
    local server = require "moonbeam.http.server"
    local srv = assert(server.start("live_views.app", {port = 0, log = false}))
    local file = os.tmpname()
    os.execute(("env -u LD_PRELOAD node spec/browser/live.js http://127.0.0.1:%d > %s 2>&1 &"):format(srv.port, file))
    local out = ""
    for _ = 1, 1800 do
      mb.sleep(100)
      local f = io.open(file)
      out = f:read("a")
      f:close()
      if out:find("\n") then break end
    end
    os.remove(file)
    server.stop(srv)
    local v = json.decode(out)
    return type(v) == "table" and v or {error = "node printed: " .. out}
  end)
  return result
end

describe("live views in Chromium", function()
  if missing then
    print("# SKIP live browser tests: " .. missing)
    pending("live browser tests skipped: " .. missing)
    return
  end

  it("counter: clicks patch the count and the page title", function()
    local r = run()
    assert.is_nil(r.error, r.error)
    assert.is_nil(r.counterError, r.counterError)
    assert.same({count = "12", title = "Count 12", negative = "below zero"}, r.counter)
  end)

  it("form: phx-change shows validation errors, phx-submit saves and flashes", function()
    local r = run()
    assert.is_nil(r.formError, r.formError)
    assert.same({nameError = "name: at least 2 characters", emailErrorShown = false,
                 emailError = "email: not an address", disabled = true,
                 flash = "Saved ada", saved = "ada <ada@example.org>"}, r.form)
  end)

  it("chat: two pages see each other's messages through PubSub", function()
    local r = run()
    assert.is_nil(r.chatError, r.chatError)
    assert.same({"ann: hello from ann", "bob: hi ann"}, r.chat.p1)
    assert.same(r.chat.p1, r.chat.p2)
    assert.equal("Chat", r.chat.title)
  end)

  it("dashboard: GenServer updates over PubSub, reset, refresh, memory, chart hook, last updated", function()
    local r = run()
    assert.is_nil(r.dashboardError, r.dashboardError)
    assert.same({grew = true, reset = true, memory = true, updated = true, chart = true, title = "Dashboard"},
      r.dashboard)
  end)

  it("features: keydown, focus/blur, debounce, hook pushEvent reply and handleEvent, patch, navigate", function()
    local r = run()
    assert.is_nil(r.featuresError, r.featuresError)
    local f = r.features
    assert.equal("1", f.pings)
    assert.equal("Enter:ab", f.key)
    assert.equal("ok", f.focus)
    assert.is_true(f.searches >= 1 and f.searches < 4, "debounced searches: " .. tostring(f.searches))
    assert.equal("?tab=two", f.patchUrl)
    assert.equal("Features two", f.patchTitle)
    assert.equal("?tab=three", f.serverPatchUrl)
    assert.equal("/counter/5", f.navigatePath)
    assert.is_true(f.noReload)
    assert.equal("6", f.afterNavigate)
  end)

  it("components: own state, phx-target=@myself, send_update, removal in two steps", function()
    local r = run()
    assert.is_nil(r.error, r.error)
    assert.is_nil(r.componentsError, r.componentsError)
    assert.same({attr = "1", first = {"0", "3"}, afterAdd = {"0", "3", "1"}, willDestroy = true,
                 destroyedReply = true, last = {"1", "0", "counters: 2"}}, r.components)
  end)

  it("stream chat: messages appended through a stream, deleted, cleared by a reset", function()
    local r = run()
    assert.is_nil(r.error, r.error)
    assert.is_nil(r.streamChatError, r.streamChatError)
    local s = r.streamChat
    assert.same({"server: welcome", "ann: one", "bob: two"}, s.p1)
    assert.same(s.p1, s.p2)
    assert.same({"messages-*", "messages-*", "messages-*"}, s.ids)
    assert.same({"server: welcome", "bob: two"}, s.afterDelete)
    assert.same({"bob: three"}, s.afterClear)
    assert.same({"server: welcome", "ann: one", "bob: two", "bob: three"}, s.p2Last)
    assert.equal("3 received", s.received)
  end)

  it("flash: kept across a redirect (the __phoenix_flash__ cookie, read once) and a live navigation", function()
    local r = run()
    assert.is_nil(r.error, r.error)
    assert.is_nil(r.flashError, r.flashError)
    assert.same({afterRedirect = "redirected", tab = "Tab r", cookieLeft = false, afterReload = "",
                 afterNavigate = "navigated", noReload = true}, r.flash)
  end)

  it("reconnects after a server restart; mount rebuilds the state", function()
    local r = mb.run(function()
      pubsub.start_link{name = "live_examples"}
      local server = require "moonbeam.http.server"
      local srv = assert(server.start("live_views.app", {port = 0, log = false}))
      local port = srv.port
      local file, marker = os.tmpname(), os.tmpname()
      os.remove(marker)
      os.execute(("env -u LD_PRELOAD node spec/browser/live.js http://127.0.0.1:%d reconnect %s > %s 2>&1 &")
        :format(port, marker, file))
      local out, restarted = "", false
      for _ = 1, 1800 do
        mb.sleep(100)
        if not restarted and io.open(marker) then
          server.stop(srv)                        -- WebSockets get 1001: the client reconnects
          mb.sleep(300)
          srv = assert(server.start("live_views.app", {port = port, log = false}))
          restarted = true
        end
        local f = io.open(file)
        out = f:read("a")
        f:close()
        if out:find("\n") then break end
      end
      os.remove(file)
      os.remove(marker)
      server.stop(srv)
      return json.decode(out) or {error = out}
    end)
    assert.is_nil(r.error, r.error)
    assert.is_nil(r.reconnectError, r.reconnectError)
    assert.same({lost = true, count = "1", reloaded = false}, r.reconnect)
  end)

  it("the client logged no errors or warnings", function()
    assert.same({}, run().console)
  end)
end)
