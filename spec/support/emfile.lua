-- Run with a low descriptor limit (ulimit -n): opens client connections to its
-- own listener until connect fails, so the acceptor's accept hits EMFILE, then
-- frees descriptors; prints "accepted N of M, then served: yes" once the
-- acceptor (which backs off, never crashes) has taken every connection.
local mb = require "moonbeam"
local tcp = require "moonbeam.tcp"
print(mb.run(function()
  local l = assert(tcp.listen(0, {address = "127.0.0.1", active = false, backlog = 256}))
  local _, port = tcp.sockname(l)
  local me = mb.self()
  mb.spawn(function()
    local n = 0
    while true do
      local s, err = tcp.accept(l, 5000)
      if not s then mb.send(me, {"acceptor", n, err}) return end
      n = n + 1
      mb.send(me, {"accepted", n})
      tcp.close(s)
    end
  end)
  local clients, why = {}, nil
  while true do
    local c, err = tcp.connect("127.0.0.1", port, {active = false}, 2000)
    if not c then why = err break end
    clients[#clients + 1] = c
    if #clients > 500 then break end
  end
  mb.sleep(300) -- the acceptor meets EMFILE and backs off meanwhile
  for _, c in ipairs(clients) do tcp.close(c) end
  local accepted = 0
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
