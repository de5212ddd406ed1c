-- A TCP chat server: one process per connection, rooms over PubSub, nicknames
-- in a Registry, everything under a supervisor.
--
--   bin/moonbeam examples/tcp_chat.lua [--port 4040] [--selftest]
--   (or LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" lua5.4 examples/tcp_chat.lua)
--
-- Then join from other terminals with `nc localhost 4040`: the server asks for
-- a nickname, puts you in #lobby, and every line you type goes to the room.
-- Commands: /join ROOM, /who, /msg NICK TEXT, /rooms, /quit.
-- --selftest starts the server, chats through two real TCP clients, prints
-- the transcript and exits (what the examples check runs).
--
--   root (one_for_one)
--   ├── chat       PubSub: one topic per room
--   ├── nicks      Registry (unique): nickname -> session process
--   ├── rooms      Registry (duplicate): room -> its members' nicknames
--   └── listener   owns the listening socket and an acceptor pool (linked to
--                  it); each acceptor accepts, spawns a session process (one
--                  per connection, temporary: never restarted) and hands it
--                  the socket with controlling_process
--
-- A session that crashes takes only its own connection down (its socket
-- closes with it, its nickname and rooms go away with its registrations).
local mb = require "moonbeam"
local tcp = require "moonbeam.tcp"
local pubsub = require "moonbeam.pubsub"
local registry = require "moonbeam.registry"
local supervisor = require "moonbeam.supervisor"

local port, selftest = 4040, false
do
  local i = 1
  while arg and arg[i] do
    if arg[i] == "--port" then i = i + 1; port = tonumber(arg[i]) or port
    elseif arg[i] == "--selftest" then selftest = true; port = 0
    else io.stderr:write("usage: tcp_chat.lua [--port N] [--selftest]\n"); os.exit(2) end
    i = i + 1
  end
end

local ACCEPTORS = 4

-- One connected user. Started by the sessions supervisor; gets its socket
-- from the acceptor that accepted it ({"socket", sock}).
local function session()
  do
    local m = mb.receive(function(x) return type(x) == "table" and x[1] == "socket" end, 5000)
    if not m then return end
    local sock = m[2]
    local function say(line) tcp.send(sock, line .. "\r\n") end
    -- lines, one message at a time: a flooding client cannot fill our mailbox
    tcp.setopts(sock, {packet = "line", active = "once", buffer = 1024})
    local nick, room
    local function join(r)
      if room then
        pubsub.broadcast_from("chat", mb.self(), room, {"event", room, nick .. " left"})
        pubsub.unsubscribe("chat", room)
        registry.unregister("rooms", room)
      end
      room = r
      pubsub.subscribe("chat", room)
      registry.register("rooms", room, nick)
      pubsub.broadcast_from("chat", mb.self(), room, {"event", room, nick .. " joined"})
      say("* you are in #" .. room)
    end
    say("welcome! your nickname?")
    while true do
      local msg = mb.receive()
      local tag = msg[1]
      if tag == "tcp" then
        local line = msg[3]:gsub("[\r\n]+$", "")
        if not nick then
          if line:match("^[%w_%-]+$") and registry.register("nicks", line) then
            nick = line
            join("lobby")
          else
            say("* taken or not a nickname (letters, digits, _ and -); another?")
          end
        elseif line == "/quit" then
          say("* bye")
          break
        elseif line == "/who" then
          local here = {}
          for _, e in ipairs(registry.lookup("rooms", room)) do here[#here + 1] = e[2] end
          table.sort(here)
          say("* in #" .. room .. ": " .. table.concat(here, ", "))
        elseif line == "/rooms" then
          local seen, list = {}, {}
          for _, k in ipairs(registry.keys("rooms", mb.self())) do seen[k] = true end
          for k in pairs(seen) do list[#list + 1] = k end
          say("* your rooms: " .. table.concat(list, ", "))
        elseif line:match("^/join ") then
          local r = line:match("^/join #?([%w_%-]+)$")
          if r then join(r) else say("* /join ROOM") end
        elseif line:match("^/msg ") then
          local to, text = line:match("^/msg (%S+) (.+)$")
          local pid = to and registry.whereis_name("nicks", to)
          if pid then mb.send(pid, {"dm", nick, text}) else say("* no such nick") end
        elseif line ~= "" then
          pubsub.broadcast_from("chat", mb.self(), room, {"say", room, nick, line})
        end
        tcp.setopts(sock, {active = "once"})
      elseif tag == "say" then
        say(("#%s <%s> %s"):format(msg[2], msg[3], msg[4]))
      elseif tag == "event" then
        say(("* #%s: %s"):format(msg[2], msg[3]))
      elseif tag == "dm" then
        say(("*%s* %s"):format(msg[2], msg[3]))
      elseif tag == "tcp_closed" or tag == "tcp_error" then
        break
      end
    end
    if room then pubsub.broadcast_from("chat", mb.self(), room, {"event", room, nick .. " left"}) end
    tcp.close(sock)
  end
end

-- Owns the listening socket; its acceptors are linked to it, so they stop
-- (and the supervisor restarts the whole listener) together.
local function listener(listen_port, report_to)
  return mb.spawn_link(function()
    local l = assert(tcp.listen(listen_port, {reuseaddr = true, active = false}))
    local _, bound = tcp.sockname(l)
    if report_to then mb.send(report_to, {"listening", bound}) end
    print(("tcp_chat: listening on port %d (nc localhost %d)"):format(bound, bound))
    for _ = 1, ACCEPTORS do
      mb.spawn_link(function()
        while true do
          local sock, err = tcp.accept(l)
          if not sock then error("accept: " .. tostring(err)) end
          local pid = mb.spawn(session)
          if tcp.controlling_process(sock, pid) then
            mb.send(pid, {"socket", sock})
          else
            tcp.close(sock)
          end
        end
      end)
    end
    mb.receive(function() return false end) -- holds the socket for its acceptors
  end)
end

local function start_tree(report_to)
  return assert(supervisor.start_link({
    pubsub.child_spec{name = "chat"},
    registry.child_spec{keys = "unique", name = "nicks"},
    registry.child_spec{keys = "duplicate", name = "rooms"},
    {id = "listener", start = {{start_link = listener}, "start_link", {port, report_to}}},
  }, {strategy = "one_for_one", name = "chat_sup"}))
end

-- Reads lines from a client socket until `pattern` shows up (or a timeout).
local function expect(sock, pattern, out)
  while true do
    local line, err = tcp.recv(sock, 0, 3000)
    if not line then error("waiting for " .. pattern .. ": " .. tostring(err)) end
    line = line:gsub("[\r\n]+$", "")
    out[#out + 1] = line
    if line:find(pattern) then return line end
  end
end

mb.run(function()
  if not selftest then
    start_tree()
    mb.receive(function() return false end)
    return
  end
  start_tree(mb.self())
  local m = mb.receive(function(x) return type(x) == "table" and x[1] == "listening" end, 5000)
  local bound = m[2]
  local function client()
    return assert(tcp.connect("127.0.0.1", bound, {active = false, packet = "line"}, 3000))
  end
  local log = {}
  local ada, joe = client(), client()
  expect(ada, "nickname", log)
  tcp.send(ada, "ada\n")
  expect(ada, "you are in #lobby", log)
  expect(joe, "nickname", log)
  tcp.send(joe, "ada\n")
  expect(joe, "taken", log)
  tcp.send(joe, "joe\n")
  expect(joe, "you are in #lobby", log)
  expect(ada, "joe joined", log)
  tcp.send(joe, "hello, ada\n")
  expect(ada, "<joe> hello, ada", log)
  tcp.send(ada, "/who\n")
  expect(ada, "in #lobby: ada, joe", log)
  tcp.send(ada, "/msg joe psst\n")
  expect(joe, "%*ada%* psst", log)
  tcp.send(joe, "/join lua\n")
  expect(joe, "you are in #lua", log)
  expect(ada, "joe left", log)
  tcp.send(joe, "/quit\n")
  expect(joe, "bye", log)
  tcp.close(ada)
  tcp.close(joe)
  for _, line in ipairs(log) do print(line) end
  print("tcp_chat selftest: ok")
end)
