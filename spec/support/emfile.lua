-- Run with a low descriptor limit (ulimit -n): opens client connections to its
-- own listener until connect fails (EMFILE), and only then lets the acceptor
-- accept, so its accept meets EMFILE with connections pending; then frees the
-- descriptors. Prints "accepted N of M, then served: yes" once the acceptor
-- (which backs off, never crashes) has taken every connection and a new one.
local mb = require "moonbeam"
local tcp = require "moonbeam.tcp"
print(mb.run(function()
  local l = assert(tcp.listen(0, {address = "127.0.0.1", active = false, backlog = 256}))
  local _, port = tcp.sockname(l)
  local me = mb.self()
  -- the acceptor starts (loads its modules) before descriptors run out
  mb.spawn_opt({scheduler = 1}, function()
    mb.send(me, {"ready", mb.self()})
    mb.receive(function(m) return m == "go" end) -- once the clients used every descriptor
    local n = 0
    while true do
      local s, err = tcp.accept(l, 5000)
      if not s then mb.send(me, {"acceptor", n, err}) return end
      n = n + 1
      mb.send(me, {"accepted", n})
      tcp.close(s)
    end
  end)
  local acceptor = mb.receive(function(m) return type(m) == "table" and m[1] == "ready" end)[2]
  local clients, why = {}, nil
  while true do
    local c, err = tcp.connect("127.0.0.1", port, {active = false}, 2000)
    if not c then why = err break end
    clients[#clients + 1] = c
    if #clients > 500 then break end
  end
  mb.send(acceptor, "go")
  mb.sleep(300) -- the acceptor meets EMFILE and backs off meanwhile
  local before = 0 -- accepted while descriptors were short
  while mb.receive(function(m) return m[1] == "accepted" end, 0) do before = before + 1 end
  io.write("accepted while out of descriptors: ", before, "\n")
  for _, c in ipairs(clients) do tcp.close(c) end
  local accepted = before
  while accepted < #clients do
    local m = mb.receive(function(m) return m[1] == "accepted" end, 5000)
    if not m then break end
    accepted = m[2]
  end
  -- and it still serves a new client
  local c = tcp.connect("127.0.0.1", port, {active = false}, 2000)
  local served = c and mb.receive(function(m) return m[1] == "accepted" end, 5000) ~= nil
  return ("connect stopped with %s; accepted %d of %d, then served: %s"):format(
    tostring(why), accepted, #clients, served and "yes" or "no")
end, {schedulers = 2}))
