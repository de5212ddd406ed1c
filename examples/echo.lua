-- An echo server with an acceptor pool: N processes wait on one listener,
-- each connection is served by its own process in active-once mode (the
-- process never holds more than one chunk of a flooding client).
--
--   bin/moonbeam examples/echo.lua [--port 7000] [--acceptors 8] [--selftest]
--   (or LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" lua5.4 examples/echo.lua)
--
-- Try it with `nc localhost 7000`. --selftest runs 50 clients through it and exits.
local mb = require "moonbeam"
local tcp = require "moonbeam.tcp"

local port, acceptors, selftest = 7000, 8, false
do
  local i = 1
  while arg and arg[i] do
    if arg[i] == "--port" then i = i + 1; port = tonumber(arg[i]) or port
    elseif arg[i] == "--acceptors" then i = i + 1; acceptors = tonumber(arg[i]) or acceptors
    elseif arg[i] == "--selftest" then selftest = true; port = 0
    else io.stderr:write("usage: echo.lua [--port N] [--acceptors N] [--selftest]\n"); os.exit(2) end
    i = i + 1
  end
end

-- Serves one socket until the peer closes it.
local function serve(sock)
  tcp.setopts(sock, {active = "once", nodelay = true})
  while true do
    local m = mb.receive()
    if m[1] == "tcp" then
      tcp.send(sock, m[3])
      tcp.setopts(sock, {active = "once"})
    elseif m[1] == "tcp_closed" or m[1] == "tcp_error" then
      return
    end
  end
end

-- An acceptor: accepts, hands the socket to a fresh process, accepts again.
local function acceptor(l)
  while true do
    local sock, err = tcp.accept(l)
    if not sock then
      if err == "closed" then return end
      mb.sleep(10) -- e.g. out of descriptors: the listener backs off too
    else
      local pid = mb.spawn(function()
        local m = mb.receive(function(x) return type(x) == "table" and x[1] == "go" end)
        serve(m[2])
      end)
      tcp.controlling_process(sock, pid)
      mb.send(pid, {"go", sock})
    end
  end
end

mb.run(function()
  local l = assert(tcp.listen(port, {reuseaddr = true, active = false, backlog = 1024}))
  local _, bound = tcp.sockname(l)
  for _ = 1, acceptors do mb.spawn(acceptor, l) end
  if not selftest then
    print(("echo: listening on port %d with %d acceptors (nc localhost %d)"):format(bound, acceptors, bound))
    mb.receive(function() return false end)
  end
  local me = mb.self()
  for i = 1, 50 do
    mb.spawn(function()
      local c = assert(tcp.connect("127.0.0.1", bound, {active = false}, 3000))
      local text = ("client %d says hi"):format(i)
      assert(tcp.send(c, text))
      local got = assert(tcp.recv(c, #text, 3000))
      tcp.close(c)
      mb.send(me, got == text)
    end)
  end
  local ok = 0
  for _ = 1, 50 do if mb.receive(nil, 5000) == true then ok = ok + 1 end end
  print(("echo selftest: %d/50 clients echoed"):format(ok))
  tcp.close(l)
end)
