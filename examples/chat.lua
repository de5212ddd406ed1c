-- A terminal chat over PubSub: a few bots talk in rooms for a few seconds.
--
--   bin/moonbeam examples/chat.lua [--seconds N] [--stdin]
--   (or LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" lua5.4 examples/chat.lua)
--
-- Each room is a topic of the PubSub instance "chat"; a message is broadcast
-- once and reaches every member of the room (broadcast_from: not the sender).
-- Nicknames live in a unique Registry ("nicks": a bot can be messaged by nick),
-- room membership in a duplicate one ("members": /who). A bot that leaves
-- simply exits: its subscriptions and registrations go with it.
-- With --stdin you chat too: type a line to talk in your room, "/join ROOM",
-- "/who", "/msg NICK TEXT" or "/quit".
local mb = require "moonbeam"
local pubsub = require "moonbeam.pubsub"
local registry = require "moonbeam.registry"

local seconds, use_stdin = 4, false
do
  local i = 1
  while arg and arg[i] do
    if arg[i] == "--seconds" then i = i + 1; seconds = tonumber(arg[i]) or seconds
    elseif arg[i] == "--stdin" then use_stdin = true
    else io.stderr:write("usage: chat.lua [--seconds N] [--stdin]\n"); os.exit(2) end
    i = i + 1
  end
end

local ROOMS = {"lobby", "lua", "beam"}

local BOTS = {
  {nick = "ada", rooms = {"lobby", "lua"},
   lines = {"coroutines are just one-shot continuations", "who broke the build?",
            "string.pack is underrated", "ok, I'll review it"}},
  {nick = "joe", rooms = {"lobby", "beam"},
   lines = {"let it crash", "a supervisor will restart it", "links are bidirectional",
            "mailboxes are ordered per sender"}},
  {nick = "rob", rooms = {"lua", "beam"},
   lines = {"tables all the way down", "pcall is our try", "how many schedulers do you run?",
            "message passing beats locks"}},
  {nick = "kim", rooms = {"lobby"},
   lines = {"good morning!", "coffee first", "brb", "anyone up for lunch?"}},
}

local REPLIES = {"agreed", "hmm, not sure", "good point", "say more?", "+1", "lol"}

-- Prints one line per event; the only process that writes to stdout, so lines
-- never interleave. Counts what it shows for the summary.
local function display(main)
  for _, room in ipairs(ROOMS) do pubsub.subscribe("chat", room) end
  pubsub.subscribe("chat", "$system")
  mb.send(main, "display_ready")
  local counts, by_nick = {}, {}
  while true do
    local m = mb.receive()
    if m[1] == "say" then
      local _, room, nick, text = m[1], m[2], m[3], m[4]
      counts[room] = (counts[room] or 0) + 1
      by_nick[nick] = (by_nick[nick] or 0) + 1
      io.write(string.format("%s #%-5s <%s> %s\n", os.date("%H:%M:%S"), room, nick, text))
    elseif m[1] == "event" then
      io.write(string.format("%s #%-5s -- %s\n", os.date("%H:%M:%S"), m[2], m[3]))
    elseif m[1] == "summary" then
      mb.send(m[2], {"summary", counts, by_nick})
      return
    end
    io.flush()
  end
end

local function say(room, nick, text)
  pubsub.broadcast_from("chat", mb.self(), room, {"say", room, nick, text})
end

local function join(room, nick)
  pubsub.subscribe("chat", room)
  registry.register("members", room, nick)
  pubsub.broadcast("chat", room, {"event", room, nick .. " joined"})
end

local function bot(spec, main)
  local nick = spec.nick
  if not registry.register("nicks", nick) then return end
  for _, room in ipairs(spec.rooms) do join(room, nick) end
  mb.send(main, {"bot_ready", nick})
  local said, leave_after = 0, (nick == "kim") and 3 or math.huge
  while true do
    local m = mb.receive(nil, math.random(250, 900))
    if m == nil then
      -- quiet for a while: say something in one of my rooms
      local room = spec.rooms[math.random(#spec.rooms)]
      say(room, nick, spec.lines[math.random(#spec.lines)])
      said = said + 1
      if said >= leave_after then
        pubsub.broadcast("chat", room, {"event", room, nick .. " left"})
        return -- exiting drops the subscriptions and the registry entries
      end
    elseif m[1] == "say" and m[3] ~= nick and math.random() < 0.25 then
      mb.sleep(math.random(50, 200))
      say(m[2], nick, "@" .. m[3] .. " " .. REPLIES[math.random(#REPLIES)])
    elseif m[1] == "dm" then
      mb.sleep(math.random(50, 150))
      local sender = registry.whereis_name("nicks", m[2])
      if sender then mb.send(sender, {"dm", nick, "thanks for the message!"}) end
    elseif m == "stop" then
      return
    end
  end
end

-- --stdin: a background `cat` copies stdin into a file that this process
-- polls, so reading never blocks a scheduler.
local function human(main, room)
  local nick = "you"
  registry.register("nicks", nick)
  join(room, nick)
  local path = os.tmpname()
  local p = io.popen("exec 3<&0; cat <&3 >'" .. path .. "' & echo $!", "r")
  local cat_pid = p:read("l")
  p:close()
  local f = assert(io.open(path, "r"))
  local pending = ""
  mb.send(main, {"bot_ready", nick})
  local function quit()
    os.execute("kill " .. cat_pid .. " 2>/dev/null")
    f:close()
    os.remove(path)
  end
  while true do
    local chunk = f:read("a")
    if chunk and #chunk > 0 then pending = pending .. chunk end
    f:seek("cur") -- clears EOF so the next read sees what cat appends
    for line in pending:gmatch("([^\n]*)\n") do
      local cmd, rest = line:match("^/(%S+)%s*(.*)$")
      if cmd == "quit" then quit(); mb.send(main, "quit"); return
      elseif cmd == "join" and rest ~= "" then room = rest; join(room, nick)
      elseif cmd == "who" then
        local nicks = {}
        for _, e in ipairs(registry.lookup("members", room)) do nicks[#nicks + 1] = e[2] end
        pubsub.broadcast("chat", "$system", {"event", room, "here: " .. table.concat(nicks, ", ")})
      elseif cmd == "msg" then
        local to, text = rest:match("^(%S+)%s+(.+)$")
        local pid = to and registry.whereis_name("nicks", to)
        if pid then mb.send(pid, {"dm", nick, text}) end
      elseif line ~= "" then
        pubsub.broadcast("chat", room, {"say", room, nick, line})
      end
    end
    pending = pending:match("[^\n]*$")
    local m = mb.receive(nil, 50)
    if m == "stop" then quit(); return end
    if type(m) == "table" and m[1] == "dm" then
      pubsub.broadcast("chat", "$system", {"event", "dm", m[2] .. " -> you: " .. m[3]})
    end
  end
end

mb.run(function()
  pubsub.start_link{name = "chat"}
  registry.start_link{keys = "unique", name = "nicks"}
  registry.start_link{keys = "duplicate", name = "members"}
  local main = mb.self()
  registry.register("nicks", "moderator")
  local shown = mb.spawn(display, main)
  mb.receive(function(m) return m == "display_ready" end)

  local people = {}
  for _, spec in ipairs(BOTS) do people[#people + 1] = mb.spawn(bot, spec, main) end
  if use_stdin then people[#people + 1] = mb.spawn(human, main, "lobby") end
  for _ = 1, #people do mb.receive(function(m) return type(m) == "table" and m[1] == "bot_ready" end) end

  -- one private message through the registry: find a nick, send to its pid
  mb.send_after(1000, main, "dm")
  mb.send_after(seconds * 1000, main, "time_up")
  local ended_by
  while true do
    local m = mb.receive(function(x)
      return x == "dm" or x == "time_up" or x == "quit" or (type(x) == "table" and x[1] == "dm")
    end)
    if m == "dm" then
      local joe = registry.whereis_name("nicks", "joe")
      if joe then
        pubsub.broadcast("chat", "$system", {"event", "dm", "moderator -> joe: ping"})
        mb.send(joe, {"dm", "moderator", "ping"})
      end
    elseif type(m) == "table" then
      pubsub.broadcast("chat", "$system", {"event", "dm", m[2] .. " -> moderator: " .. m[3]})
    else
      ended_by = m
      break
    end
  end

  local online = {}
  for _, room in ipairs(ROOMS) do
    local nicks = {}
    for _, e in ipairs(registry.lookup("members", room)) do nicks[#nicks + 1] = e[2] end
    online[#online + 1] = string.format("#%s: %s", room, #nicks > 0 and table.concat(nicks, ", ") or "-")
  end
  for _, pid in ipairs(people) do mb.send(pid, "stop") end
  mb.send(shown, {"summary", main})
  local s = mb.receive(function(m) return type(m) == "table" and m[1] == "summary" end)
  local total = 0
  local rooms, nicks = {}, {}
  for _, room in ipairs(ROOMS) do
    rooms[#rooms + 1] = room .. " " .. (s[2][room] or 0)
    total = total + (s[2][room] or 0)
  end
  for nick, n in pairs(s[3]) do nicks[#nicks + 1] = nick .. " " .. n end
  table.sort(nicks)
  print(string.rep("-", 60))
  print(string.format("%d messages %s; by room: %s", total,
                      ended_by == "quit" and "until /quit" or ("in " .. seconds .. " s"),
                      table.concat(rooms, ", ")))
  print("by nick: " .. table.concat(nicks, ", "))
  print("still in the rooms at the end: " .. table.concat(online, "; "))
end)
