--- moonbeam.pubsub: Phoenix.PubSub's API over the core's topics.
---
--- A PubSub instance is a process registered under its name; it namespaces its
--- topics (topic "room:1" of instance "chat" is the core topic "chat:room:1"),
--- so two instances never see each other's messages. Subscriptions live in the
--- core and end with the subscriber; a broadcast encodes the message once and
--- shares it among all receivers. Single node for now: the instance process is
--- where other nodes' broadcasts will arrive once nodes form clusters.
--- See docs/pubsub.md.
local mb = require "moonbeam"

local pubsub = {}

---@alias moonbeam.pubsub.name string A PubSub instance's registered name.

--- The name of this node. Until distribution exists every runtime is the
--- single, unnamed node, as Erlang's `node()` is when not distributed.
local LOCAL_NODE = "nonode@nohost"

local function gen() return require "moonbeam.gen" end

local function check(name, topic, fn)
  if type(name) ~= "string" or name == "" then
    gen().error(string.format("pubsub.%s: PubSub name (non-empty string) expected, got %s", fn,
                              type(name) == "string" and "\"\"" or type(name)))
  end
  if topic ~= false and type(topic) ~= "string" then
    gen().error(string.format("pubsub.%s: topic must be a string, got %s", fn, type(topic)))
  end
  if not mb.whereis(name) then
    gen().error(string.format("pubsub.%s: unknown PubSub '%s' (not started or not running)", fn, name))
  end
  return topic and name .. ":" .. topic
end

--- The instance's process body (internal: started by `start_link`). It
--- relays `{"$pubsub_forward", topic, msg, skip}` to local subscribers (what
--- other nodes will send it), answers gen calls for its node name, and stops
--- on `{"$gen_stop", reason}`.
---@param name string
function pubsub._server(name)
  while true do
    local msg = mb.receive()
    local tag = type(msg) == "table" and msg[1]
    if tag == "$pubsub_forward" then
      mb.broadcast(name .. ":" .. msg[2], msg[3], mb.is_pid(msg[4]) and msg[4] or nil)
    elseif tag == "$gen_call" then
      local reply = msg[3] == "node_name" and LOCAL_NODE or {"error", "unknown_call"}
      require("moonbeam.gen").reply(msg[2], reply)
    elseif tag == "$gen_stop" then
      mb.exit(msg[2])
    end
  end
end

--- Starts a PubSub instance linked to the caller and registered under `name`.
---@param opts {name: string}
---@return moonbeam.pid|nil pid
---@return any err `{"already_started", pid}` if the name is taken
local START_OPTS = {"name"}

local function check_start_opts(opts, who)
  if type(opts) ~= "table" then gen().error(who .. ": options table expected") end
  gen().check_keys(opts, START_OPTS, who)
  if type(opts.name) ~= "string" or opts.name == "" then
    gen().error(who .. ": name must be a non-empty string")
  end
end

function pubsub.start_link(opts)
  check_start_opts(opts, "pubsub.start_link")
  local ok, pid = pcall(mb.spawn_opt, {link = true, name = opts.name},
                        {"moonbeam.pubsub", "_server"}, opts.name)
  if not ok then
    local other = mb.whereis(opts.name)
    if other then return nil, {"already_started", other} end
    error(pid, 0)
  end
  return pid
end

--- A child spec for a supervisor: `{id, start = {"moonbeam.pubsub", "start_link", {opts}}}`.
---@param opts {name: string}
---@return table
function pubsub.child_spec(opts)
  check_start_opts(opts, "pubsub.child_spec")
  return {id = opts.name, start = {"moonbeam.pubsub", "start_link", {opts}}}
end

--- Subscribes the caller to `topic`. Subscribing twice is the same as once
--- (Phoenix would deliver each message twice). The subscription ends when the
--- caller exits.
---@param name moonbeam.pubsub.name
---@param topic string
---@return true
function pubsub.subscribe(name, topic)
  local ok, err = mb.subscribe(check(name, topic, "subscribe"))
  if not ok then gen().error("pubsub.subscribe: " .. tostring(err)) end
  return true
end

--- Unsubscribes the caller from `topic` (no error if it was not subscribed).
---@param name moonbeam.pubsub.name
---@param topic string
---@return true
function pubsub.unsubscribe(name, topic)
  return mb.unsubscribe(check(name, topic, "unsubscribe"))
end

--- Sends `msg` to every subscriber of `topic` on every node, the caller
--- included if it subscribed. Single node for now: this node's subscribers.
---@param name moonbeam.pubsub.name
---@param topic string
---@param msg any
---@return true
function pubsub.broadcast(name, topic, msg)
  mb.broadcast(check(name, topic, "broadcast"), msg)
  return true
end

--- As `broadcast`, but skips the subscriber `from` (usually `mb.self()`).
---@param name moonbeam.pubsub.name
---@param from moonbeam.pid
---@param topic string
---@param msg any
---@return true
function pubsub.broadcast_from(name, from, topic, msg)
  if not mb.is_pid(from) then gen().error("pubsub.broadcast_from: from must be a pid") end
  mb.broadcast(check(name, topic, "broadcast_from"), msg, from)
  return true
end

--- Sends `msg` to this node's subscribers of `topic` only.
---@param name moonbeam.pubsub.name
---@param topic string
---@param msg any
---@return true
function pubsub.local_broadcast(name, topic, msg)
  mb.broadcast(check(name, topic, "local_broadcast"), msg)
  return true
end

--- As `local_broadcast`, but skips `from`.
---@param name moonbeam.pubsub.name
---@param from moonbeam.pid
---@param topic string
---@param msg any
---@return true
function pubsub.local_broadcast_from(name, from, topic, msg)
  if not mb.is_pid(from) then gen().error("pubsub.local_broadcast_from: from must be a pid") end
  mb.broadcast(check(name, topic, "local_broadcast_from"), msg, from)
  return true
end

--- Sends `msg` to the subscribers of `topic` on node `node` only. Single node
--- for now: `node` must be this node (`pubsub.node_name(name)`); any other
--- node returns `nil, {"nodedown", node}`.
---@param node string
---@param name moonbeam.pubsub.name
---@param topic string
---@param msg any
---@return true|nil
---@return any err
function pubsub.direct_broadcast(node, name, topic, msg)
  if type(node) ~= "string" then gen().error("pubsub.direct_broadcast: node name expected") end
  local core_topic = check(name, topic, "direct_broadcast")
  if node ~= LOCAL_NODE then return nil, {"nodedown", node} end
  mb.broadcast(core_topic, msg)
  return true
end

--- Number of this node's subscribers of `topic`.
---@param name moonbeam.pubsub.name
---@param topic string
---@return integer
function pubsub.subscribers(name, topic)
  return mb.subscribers(check(name, topic, "subscribers"))
end

--- The node this instance runs on ("nonode@nohost" until distribution exists).
---@param name moonbeam.pubsub.name
---@return string
function pubsub.node_name(name)
  check(name, false, "node_name")
  return LOCAL_NODE
end

return pubsub
