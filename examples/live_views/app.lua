-- The web app of the live examples (examples/live_*.lua and the browser specs):
-- a cookie session, the live socket at /live, the client bundles at /assets,
-- and one live route per example view.
local plug = require "moonbeam.http.plug"
local router = require "moonbeam.http.router"
local session = require "moonbeam.http.session"
local live = require "moonbeam.live"

-- A development secret: a real app reads its own from the environment.
local SECRET = os.getenv("MOONBEAM_SECRET") or "moonbeam live examples: not a secret, 32+ bytes long"

local cfg = {
  secret_key_base = SECRET,
  signing_salt = "live view",
  pubsub = "live_examples",
  assets = os.getenv("MOONBEAM_NODE_MODULES") or "spec/support/node_modules",
  title = "moonbeam live",
  head = "<style>body{font-family:sans-serif;margin:2em} .error{color:#b00}"
    .. " .flash{background:#efe;padding:.5em}</style>\n",
  script = [[
window.Hooks = {
  Chart: {
    mounted() { this.handleEvent("points", ({points}) => {
      // lua-cjson sends an empty Lua table as {}: no points yet
      points = Array.isArray(points) ? points : [];
      this.el.dataset.points = points.join(",");
      this.el.textContent = points.map((p) => "#".repeat(p)).join("\n");
    }); }
  },
  Pinger: {
    mounted() {
      this.handleEvent("pong", ({n}) => { this.el.dataset.pong = String(n); });
      this.pushEvent("ping", {n: 41}, (reply) => { this.el.dataset.reply = String(reply.pong); });
    }
  }
};
]],
}

local r = router.new()
live.mount(r, cfg)
live.live(r, "/", "live_views.counter", cfg)
live.live(r, "/counter/:start", "live_views.counter", cfg)
live.live(r, "/form", "live_views.form", cfg)
live.live(r, "/chat", "live_views.chat", cfg)
live.live(r, "/dashboard", "live_views.dashboard", cfg)
live.live(r, "/features", "live_views.features", cfg)
live.live(r, "/components", "live_views.components", cfg)
live.live(r, "/stream_chat", "live_views.stream_chat", cfg)

return plug.pipeline{
  session.plug{key = "_moonbeam_live", secret_key_base = SECRET, signing_salt = "cookie"},
  r,
}
