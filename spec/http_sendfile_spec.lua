-- sendfile(2) for static files and conn:send_file: the TCP layer
-- (tcp.sendfile) and the HTTP server over real loopback sockets: a large file,
-- ranges, HEAD, keep-alive after a file, a client that stops reading (no
-- memory queued in the process), a file deleted or truncated while it is sent,
-- and files that are gone or changed before anything is sent.
package.path = package.path .. ";spec/support/?.lua"
local mb = require "moonbeam"
local tcp = require "moonbeam.tcp"
local H = require "http_helper"

local BLOCK = 65536
-- A file of `blocks` 64 KB blocks, each starting with its number, so a byte
-- out of place shows where it came from.
local function make_file(path, blocks)
  local f = assert(io.open(path, "wb"))
  local filler = ("abcdefghijklmnopqrstuvwxyz0123456789"):rep(BLOCK // 36 + 1)
  for b = 0, blocks - 1 do
    local tag = ("[%08d]"):format(b)
    f:write(tag, filler:sub(1, BLOCK - #tag))
  end
  f:close()
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- Reads one response (content-length body) from a passive socket: status,
-- headers (lower-case), body, and whether the peer closed before its end.
-- Bytes past the response stay in carry[s] for the next call.
local carry = setmetatable({}, {__mode = "k"})
local function read_response(s, timeout, no_body)
  local buf = carry[s] or ""
  carry[s] = nil
  while not buf:find("\r\n\r\n", 1, true) do
    local d, err = tcp.recv(s, 0, timeout or 5000)
    if not d then return nil, err end
    buf = buf .. d
  end
  local hend = buf:find("\r\n\r\n", 1, true)
  local head = buf:sub(1, hend - 1)
  local status = tonumber(head:match("^HTTP/1%.1 (%d+)"))
  local headers = {}
  for k, v in head:gmatch("\r\n([^:\r\n]+): ([^\r\n]*)") do headers[k:lower()] = v end
  local want = no_body and 0 or tonumber(headers["content-length"] or 0)
  local parts, have = {buf:sub(hend + 4)}, #buf - hend - 3
  local closed = false
  while have < want do
    local d = tcp.recv(s, 0, timeout or 5000)
    if not d then closed = true break end
    parts[#parts + 1] = d
    have = have + #d
  end
  local body = table.concat(parts)
  if #body > want then carry[s] = body:sub(want + 1) end
  return {status = status, headers = headers, body = body:sub(1, want), closed = closed}
end

local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)
local BIG = dir .. "/big.bin"
local BLOCKS = 768 -- 48 MB: more than loopback's socket buffers hold
make_file(BIG, BLOCKS)
local big = slurp(BIG)

-- the server: static files from `d`, and /raw/<name> through conn:send_file
local function app(d)
  return function(conn)
    if conn.path_info[1] == "raw" then
      local ok, err = conn:send_file(200, d .. "/" .. conn.path_info[2])
      if not ok and conn.state == "unset" then return conn:text(404, "no: " .. tostring(err)) end
      return conn
    end
    return require("moonbeam.http.static").plug({at = "/s", from = d})(conn)
  end
end

local function get(path, extra)
  return "GET " .. path .. " HTTP/1.1\r\nHost: t\r\n" .. (extra or "") .. "\r\n"
end

describe("tcp.sendfile", function()
  it("sends a head and a file range, and refuses bad files before sending anything", function()
    local r = mb.run(function()
      local l = assert(tcp.listen(0, {active = false}))
      local _, port = tcp.sockname(l)
      local c = assert(tcp.connect("127.0.0.1", port, {active = false}, 2000))
      local s = assert(tcp.accept(l, 2000))
      local out = {}
      out.missing = {tcp.sendfile(s, "x", dir .. "/nope", 0, 1)}
      out.dir = {tcp.sendfile(s, "x", dir, 0, 1)}
      out.long = {tcp.sendfile(s, "x", BIG, #big - 10, 11)}
      out.ok = {tcp.sendfile(s, "HEAD|", BIG, BLOCK, 100)}
      out.empty = {tcp.sendfile(s, "|", BIG, 0, 0)}
      out.sent = H.read_until(c, "|$", 2000)
      tcp.close(s) tcp.close(c) tcp.close(l)
      return out
    end)
    assert.same({nil, "enoent"}, r.missing)
    assert.same({nil, "eisdir"}, r.dir)
    assert.same({nil, "changed"}, r.long)
    assert.same({true}, r.ok)
    assert.same({true}, r.empty)
    assert.equal("HEAD|" .. big:sub(BLOCK + 1, BLOCK + 100) .. "|", r.sent)
  end)

  it("keeps nothing queued in the process while the peer does not read", function()
    local r = mb.run(function()
      local l = assert(tcp.listen(0, {active = false}))
      local _, port = tcp.sockname(l)
      local c = assert(tcp.connect("127.0.0.1", port, {active = false}, 2000))
      local s = assert(tcp.accept(l, 2000))
      local me = mb.self()
      mb.spawn(function()
        local ok, err = tcp.sendfile(s, "", BIG, 0, #big)
        mb.send(me, {"sent", ok, err})
      end)
      -- the first bytes say the transfer runs; then the buffers fill up again
      local first = assert(tcp.recv(c, 0, 10000))
      mb.sleep(300)
      local early = mb.receive(function(m) return type(m) == "table" and m[1] == "sent" end, 0)
      local stats = tcp.stats(s)
      local busy = {tcp.send(s, "x")}
      -- now read it all
      local parts, n = {first}, #first
      while n < #big do
        local d = tcp.recv(c, 0, 5000)
        if not d then break end
        parts[#parts + 1] = d
        n = n + #d
      end
      local done = mb.receive(function(m) return type(m) == "table" and m[1] == "sent" end, 5000)
      tcp.close(s) tcp.close(c) tcp.close(l)
      return {early = early, queue = stats.send_queue, busy = busy, body = table.concat(parts), done = done}
    end)
    assert.is_nil(r.early)              -- 48 MB do not fit in the socket buffers
    assert.equal(0, r.queue)            -- and none of it waits in user space
    assert.same({nil, "ebusy"}, r.busy) -- a send meanwhile would reorder bytes
    assert.is_true(r.body == big)
    assert.same({"sent", true}, r.done)
  end)
end)

describe("http server sendfile", function()
  it("serves a large file whole, a range of it, HEAD, and keeps the connection", function()
    local r = H.with_server({}, function(port)
      local s = H.connect(port)
      tcp.send(s, get("/s/big.bin") .. get("/s/big.bin", "Range: bytes=1000000-2999999\r\n") ..
        "HEAD /s/big.bin HTTP/1.1\r\nHost: t\r\n\r\n" .. get("/raw/big.bin", "Range: bytes=0-0\r\n"))
      local a = read_response(s)
      local b = read_response(s)
      local c = read_response(s, nil, true)
      local d = read_response(s)
      tcp.close(s)
      return {a, b, c, d}
    end, app(dir))
    local a, b, c, d = r[1], r[2], r[3], r[4]
    assert.equal(200, a.status)
    assert.equal(tostring(#big), a.headers["content-length"])
    assert.is_true(a.body == big)
    assert.equal(206, b.status)
    assert.equal("bytes 1000000-2999999/" .. #big, b.headers["content-range"])
    assert.is_true(b.body == big:sub(1000001, 3000000))
    assert.equal(200, c.status)
    assert.equal(tostring(#big), c.headers["content-length"])
    -- HEAD sent no body: the next response follows the head at once
    assert.equal(200, d.status)
    assert.equal(#big, #d.body)
    assert.is_true(d.body == big)
  end)

  it("serves curl a large file and a range", function()
    local out = os.tmpname()
    local code = H.with_server({}, function(port)
      local done = os.tmpname()
      os.execute(("(env -u LD_PRELOAD curl -s -m 20 -o %s http://127.0.0.1:%d/s/big.bin; echo $? > %s) &")
        :format(out, port, done))
      for _ = 1, 200 do
        mb.sleep(100)
        local f = io.open(done)
        local x = f and f:read("a")
        if f then f:close() end
        if x and x ~= "" then os.remove(done) return tonumber(x) end
      end
    end, app(dir))
    assert.equal(0, code)
    assert.is_true(slurp(out) == big)
    os.remove(out)
  end)

  it("sends the whole file when it is deleted while it is sent", function()
    local path = dir .. "/doomed.bin"
    make_file(path, BLOCKS)
    local r = H.with_server({}, function(port)
      local s = H.connect(port)
      tcp.send(s, get("/s/doomed.bin"))
      mb.sleep(300) -- the server is blocked on the full socket
      os.remove(path)
      return read_response(s, 5000)
    end, app(dir))
    assert.equal(200, r.status)
    assert.is_false(r.closed)
    assert.is_true(r.body == big)
  end)

  it("closes the connection when the file shrinks while it is sent", function()
    local path = dir .. "/shrinks.bin"
    make_file(path, BLOCKS)
    local r = H.with_server({}, function(port)
      local s = H.connect(port)
      tcp.send(s, get("/s/shrinks.bin") .. get("/s/big.bin", "Range: bytes=0-9\r\n"))
      mb.sleep(300)
      os.execute("truncate -s 1048576 " .. path)
      local res = read_response(s, 3000)
      local after = {tcp.recv(s, 0, 1000)}
      tcp.close(s)
      res.after = after
      return res
    end, app(dir))
    os.remove(path)
    assert.equal(200, r.status)
    assert.equal(tostring(#big), r.headers["content-length"])
    assert.is_true(r.closed)
    assert.is_true(#r.body < #big)
    assert.is_true(r.body == big:sub(1, #r.body)) -- what came is the file's start
    assert.is_nil(r.after[1])                     -- the pipelined request was not answered
  end)

  it("answers 404 when the file is gone before it is opened", function()
    local out = H.with_server({}, function(port)
      return H.raw(port, get("/raw/none.bin", "Connection: close\r\n"))
    end, app(dir))
    assert.matches("^HTTP/1.1 404 .-\r\n\r\nno: ", out)
  end)
end)
