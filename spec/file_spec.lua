-- moonbeam.file: files through uv_fs on the scheduler's loop. Globals used in
-- processes are captured as locals (busted's environment does not travel).
local type, string, tostring = type, string, tostring
local mb = require "moonbeam"
local file = require "moonbeam.file"
local port = require "moonbeam.port"

local DIR = os.tmpname()
os.remove(DIR)
assert(os.execute("mkdir -p '" .. DIR .. "'"))

local function run(fn) return mb.run(fn, {schedulers = 2}) end

-- Runs a Lua script in a fresh lua5.4 under `sh_prefix` (e.g. "ulimit -n 64;");
-- returns its output and whether it exited with 0.
local function run_script(sh_prefix, src)
  local path = DIR .. "/script.lua"
  local f = assert(io.open(path, "w"))
  f:write(src)
  f:close()
  local env = ("LUA_PATH=%q LUA_PATH_5_4=%q LUA_CPATH=%q LUA_CPATH_5_4=%q"):format(
    package.path, package.path, package.cpath, package.cpath)
  local cmd = ("%s %s timeout 20 %s %q 2>&1"):format(sh_prefix, env, os.getenv("MB_LUA") or "lua5.4", path)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok = p:close()
  return out, ok == true
end

describe("moonbeam.file", function()
  teardown(function() os.execute("rm -rf '" .. DIR .. "'") end)

  describe("whole files", function()
    it("writes and reads back text, binary data, an empty file and 5 MB", function()
      run(function()
        local p = DIR .. "/a.txt"
        assert.is_true(file.write_file(p, "hello\n"))
        assert.are.equal("hello\n", file.read_file(p))
        local bin = "\0\1\2\255\0end"
        assert.is_true(file.write_file(p, bin))
        assert.are.equal(bin, file.read_file(p))
        assert.is_true(file.write_file(p, ""))
        assert.are.equal("", file.read_file(p))
        local big = string.rep("0123456789abcdef", 5 * 65536)
        assert.is_true(file.write_file(DIR .. "/big", big))
        local back = file.read_file(DIR .. "/big")
        assert.are.equal(#big, #back)
        assert.is_true(back == big)
      end)
    end)

    it("appends with {append = true}", function()
      run(function()
        local p = DIR .. "/log.txt"
        assert.is_true(file.write_file(p, "one\n"))
        assert.is_true(file.write_file(p, "two\n", {append = true}))
        assert.is_true(file.write_file(DIR .. "/new-by-append", "x", {append = true}))
        assert.are.equal("one\ntwo\n", file.read_file(p))
        assert.are.equal("x", file.read_file(DIR .. "/new-by-append"))
      end)
    end)

    it("reads what has no size in stat (/proc files) whole", function()
      run(function()
        local s = assert(file.read_file("/proc/self/status"))
        assert.matches("Name:", s)
      end)
    end)

    it("returns nil, reason for a missing file, a directory, a missing parent", function()
      run(function()
        local v, err = file.read_file(DIR .. "/missing")
        assert.is_nil(v)
        assert.are.equal("enoent", err)
        v, err = file.read_file(DIR)
        assert.is_nil(v)
        assert.are.equal("eisdir", err)
        v, err = file.write_file(DIR .. "/no/such/dir/f", "x")
        assert.is_nil(v)
        assert.are.equal("enoent", err)
      end)
    end)

    it("raises on misuse: a bad path, or outside a process", function()
      run(function()
        assert.has_error(function() file.read_file({}) end)
        assert.has_error(function() file.read_file() end)
        assert.has_error(function() file.read_file("") end)
        assert.has_error(function() file.read_file("a\0b") end)
        assert.has_error(function() file.write_file(DIR .. "/x", {}) end)
      end)
      assert.has_error(function() file.read_file(DIR .. "/a.txt") end)
    end)
  end)

  describe("directories and metadata", function()
    it("stat describes files, directories and (with link) symbolic links", function()
      local p = DIR .. "/st.txt"
      assert(os.execute(("printf 12345 > '%s' && chmod 640 '%s' && ln -sf '%s' '%s/st.link'"):format(p, p, p, DIR)))
      run(function()
        local st = assert(file.stat(p))
        assert.are.equal(5, st.size)
        assert.are.equal("file", st.type)
        assert.are.equal(0x1a0, st.mode) -- 0640
        assert.is_true(math.abs(st.mtime - os.time()) < 120)
        assert.are.equal(1, st.nlink)
        assert.is_true(st.ino > 0)
        assert.are.equal("directory", file.stat(DIR).type)
        assert.are.equal("file", file.stat(DIR .. "/st.link").type)
        assert.are.equal("symlink", file.stat(DIR .. "/st.link", {link = true}).type)
        local v, err = file.stat(DIR .. "/nothing")
        assert.is_nil(v)
        assert.are.equal("enoent", err)
      end)
    end)

    it("mkdir, list (sorted), rename, remove and rmdir, and their failures", function()
      run(function()
        local d = DIR .. "/tree"
        assert.is_true(file.mkdir(d))
        local v, err = file.mkdir(d)
        assert.is_nil(v)
        assert.are.equal("eexist", err)
        assert.are.same({}, file.list(d))
        for _, n in ipairs({"c", "a", "b"}) do assert.is_true(file.write_file(d .. "/" .. n, n)) end
        assert.is_true(file.mkdir(d .. "/sub", 448)) -- 0700
        assert.are.equal(448, file.stat(d .. "/sub").mode)
        assert.are.same({"a", "b", "c", "sub"}, file.list(d))
        assert.is_true(file.rename(d .. "/a", d .. "/z"))
        assert.are.same({"b", "c", "sub", "z"}, file.list(d))
        assert.are.equal("a", file.read_file(d .. "/z"))
        v, err = file.rename(d .. "/a", d .. "/y")
        assert.is_nil(v)
        assert.are.equal("enoent", err)
        v, err = file.rmdir(d)
        assert.is_nil(v)
        assert.are.equal("enotempty", err)
        v, err = file.list(d .. "/z")
        assert.is_nil(v)
        assert.are.equal("enotdir", err)
        v, err = file.list(d .. "/missing")
        assert.is_nil(v)
        assert.are.equal("enoent", err)
        for _, n in ipairs({"b", "c", "z"}) do assert.is_true(file.remove(d .. "/" .. n)) end
        v, err = file.remove(d .. "/b")
        assert.is_nil(v)
        assert.are.equal("enoent", err)
        v, err = file.remove(d .. "/sub")
        assert.is_nil(v)
        assert.are.equal("eisdir", err)
        assert.is_true(file.rmdir(d .. "/sub"))
        assert.is_true(file.rmdir(d))
        assert.is_nil(file.stat(d))
      end)
    end)
  end)

  describe("streams", function()
    it("open, read, write, seek and close", function()
      run(function()
        local p = DIR .. "/s.txt"
        local f = assert(file.open(p, "w+"))
        assert.matches("^#Port<0%.%d+>$", tostring(f))
        assert.are.equal("file", port.info(f).type)
        assert.are.equal(mb.self(), port.info(f).owner)
        assert.is_true(file.write(f, "hello "))
        assert.is_true(file.write(f, "world"))
        assert.is_true(file.write(f, ""))
        assert.are.equal(0, file.seek(f, "set"))
        assert.are.equal("hello", file.read(f, 5))
        assert.are.equal(5, file.seek(f)) -- "cur", 0
        assert.are.equal(" world", file.read(f, 100))
        local v, err = file.read(f, 10)
        assert.is_nil(v)
        assert.are.equal("eof", err)
        assert.are.equal("", file.read(f, 0))
        assert.are.equal(6, file.seek(f, "set", 6))
        assert.is_true(file.write(f, "WORLD"))
        assert.are.equal(8, file.seek(f, "end", -3))
        assert.are.equal("RLD", file.read(f, 3))
        assert.are.equal(7, file.seek(f, "cur", -4))
        v, err = file.seek(f, "set", -1)
        assert.is_nil(v)
        assert.are.equal("einval", err)
        assert.is_true(file.close(f))
        local v2, err2 = port.info(f)
        assert.is_nil(v2)
        assert.are.equal("closed", err2)
        assert.are.equal("hello WORLD", file.read_file(p))
      end)
    end)

    it("read_line and lines: lines without their newline, positions kept for read and seek", function()
      run(function()
        local p = DIR .. "/lines.txt"
        assert.is_true(file.write_file(p, "a\nbb\n\n" .. string.rep("z", 10000) .. "\nlast"))
        local f = assert(file.open(p))
        assert.are.equal("a", file.read_line(f))
        assert.are.equal("bb", file.read(f, 2))
        assert.are.equal("", file.read_line(f)) -- the rest of "bb"'s line
        assert.are.equal("", file.read_line(f))
        assert.are.equal(10000, #file.read_line(f)) -- longer than one read
        assert.are.equal("last", file.read_line(f))
        local v, err = file.read_line(f)
        assert.is_nil(v)
        assert.are.equal("eof", err)
        assert.are.equal(0, file.seek(f, "set"))
        local all = {}
        for line in file.lines(f) do all[#all + 1] = #line end
        assert.are.same({1, 2, 0, 10000, 4}, all)
        file.close(f)
        v, err = file.read_line(f)
        assert.is_nil(v)
        assert.are.equal("closed", err)
      end)
    end)

    it("read_line on a pipe keeps what it read past the line for the next read", function()
      local fifo = DIR .. "/lines.fifo"
      assert(os.execute("mkfifo '" .. fifo .. "'"))
      run(function()
        mb.spawn(function()
          local w = assert(file.open(fifo, "w"))
          file.write(w, "x\ny\nzz")
          file.close(w)
        end)
        local r = assert(file.open(fifo))
        assert.are.equal("x", file.read_line(r))
        assert.are.equal("y\n", file.read(r, 2))
        assert.are.equal("zz", file.read_line(r))
        local v, err = file.read_line(r)
        assert.is_nil(v)
        assert.are.equal("eof", err)
        file.close(r)
      end)
    end)

    it("modes: r reads only, a appends, wx refuses an existing file; bad modes raise", function()
      run(function()
        local p = DIR .. "/m.txt"
        assert.is_true(file.write_file(p, "abc"))
        local r = assert(file.open(p))
        local v, err = file.write(r, "x")
        assert.is_nil(v)
        assert.are.equal("ebadf", err)
        assert.are.equal("abc", file.read(r, 10))
        file.close(r)
        local a = assert(file.open(p, "a"))
        assert.is_true(file.write(a, "def"))
        file.close(a)
        assert.are.equal("abcdef", file.read_file(p))
        v, err = file.open(p, "wx")
        assert.is_nil(v)
        assert.are.equal("eexist", err)
        local x = assert(file.open(DIR .. "/fresh", "wxb"))
        file.close(x)
        assert.has_error(function() file.open(p, "q") end)
        assert.has_error(function() file.open(p, "r++") end)
        v, err = file.open(DIR .. "/missing")
        assert.is_nil(v)
        assert.are.equal("enoent", err)
      end)
    end)

    it("a closed stream answers nil, \"closed\" to everything", function()
      run(function()
        local f = assert(file.open(DIR .. "/c.txt", "w"))
        assert.is_true(file.close(f))
        for _, call in ipairs({
          function() return file.read(f, 1) end, function() return file.write(f, "x") end,
          function() return file.seek(f, "set", 0) end, function() return file.close(f) end,
        }) do
          local v, err = call()
          assert.is_nil(v)
          assert.are.equal("closed", err)
        end
        assert.has_error(function() file.read(f, -1) end)
        assert.has_error(function() file.seek(f, "sideways") end)
        -- not a stream: a path, or a port of another kind
        assert.has_error(function() file.read(DIR .. "/c.txt", 1) end)
        local cat = assert(port.spawn("cat"))
        assert.has_error(function() file.write(cat, "x") end)
        port.close(cat)
      end)
    end)

    it("close waits for the descriptor; it closes when its owner exits; controlling_process hands it over", function()
      run(function()
        local function fds()
          return #assert(file.list("/proc/self/fd"))
        end
        local function settle(want)
          for _ = 1, 200 do
            if fds() == want then return true end
            mb.sleep(10)
          end
          return false
        end
        local before = fds()
        -- close returns once the descriptor is closed
        for _ = 1, 20 do
          local f = assert(file.open(DIR .. "/owned.txt", "w"))
          assert.are.equal(before + 1, fds())
          assert.is_true(file.close(f))
          assert.are.equal(before, fds())
        end
        -- a process that dies holding open streams: they close with it
        local me = mb.self()
        local pid = mb.spawn(function()
          for _ = 1, 5 do assert(file.open(DIR .. "/owned.txt", "w")) end
          mb.send(me, "opened")
          mb.receive()
        end)
        mb.receive(function(m) return m == "opened" end, 5000)
        assert.are.equal(before + 5, fds())
        mb.exit(pid, "kill")
        assert.is_true(settle(before), "the streams of a dead owner stayed open")
        -- handed over: the new owner's exit closes it, and it can use it
        local f = assert(file.open(DIR .. "/owned.txt", "w+"))
        local heir = mb.spawn(function()
          local s = mb.receive(function(m) return port.is_port(m) end)
          assert(file.write(s, "from the heir"))
          mb.send(me, "written")
          mb.receive()
        end)
        assert.is_true(port.controlling_process(f, heir))
        mb.send(heir, f)
        assert.are.equal("written", mb.receive(nil, 5000))
        assert.are.equal(0, file.seek(f, "set"))
        assert.are.equal("from the heir", file.read(f, 100))
        mb.exit(heir, "kill")
        assert.is_true(settle(before))
        local v, err = file.read(f, 1)
        assert.is_nil(v)
        assert.are.equal("closed", err)
      end)
    end)

    it("commands from several processes run one at a time, in order", function()
      run(function()
        local f = assert(file.open(DIR .. "/shared.txt", "a+"))
        local me = mb.self()
        for i = 1, 4 do
          mb.spawn(function()
            for j = 1, 25 do assert(file.write(f, string.format("%d.%02d\n", i, j))) end
            mb.send(me, "done")
          end)
        end
        for _ = 1, 4 do mb.receive(function(m) return m == "done" end, 5000) end
        assert.is_true(file.close(f))
        local text = assert(file.read_file(DIR .. "/shared.txt"))
        local lines = {}
        for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
        assert.are.equal(100, #lines)
        local last = {}
        for _, l in ipairs(lines) do
          local i, j = l:match("^(%d)%.(%d%d)$")
          assert.is_not_nil(i, l)
          assert.is_true((last[i] or 0) < tonumber(j)) -- each writer's lines in its order
          last[i] = tonumber(j)
        end
      end)
    end)

    it("a pipe has no positions: reads and writes go in order, seek says espipe", function()
      local fifo = DIR .. "/pipe"
      assert(os.execute("mkfifo '" .. fifo .. "'"))
      run(function()
        local me = mb.self()
        mb.spawn(function()
          local w = assert(file.open(fifo, "w"))
          file.write(w, "through the pipe")
          file.close(w)
          mb.send(me, "written")
        end)
        local r = assert(file.open(fifo, "r"))
        local v, err = file.seek(r, "set", 0)
        assert.is_nil(v)
        assert.are.equal("espipe", err)
        local got = {}
        while true do
          local s = file.read(r, 7)
          if not s then break end
          got[#got + 1] = s
        end
        assert.are.equal("through the pipe", table.concat(got))
        file.close(r)
        assert.are.equal("written", mb.receive(nil, 5000))
      end)
    end)
  end)

  it("does not hold the scheduler: a neighbour runs while a read waits", function()
    -- reading a FIFO waits (in libuv's thread pool) until a writer comes; the
    -- writer and a ticking neighbour share the reader's only scheduler
    local fifo = DIR .. "/slow"
    assert(os.execute("mkfifo '" .. fifo .. "'"))
    mb.run(function()
      local me = mb.self()
      local ticker = mb.spawn(function()
        local last, worst, ticks = mb.clock(), 0, 0
        while true do
          local m = mb.receive(nil, 5)
          local now = mb.clock()
          if now - last > worst then worst = now - last end
          last, ticks = now, ticks + 1
          if m == "stop" then mb.send(me, {ticks, worst}) return end
        end
      end)
      mb.spawn(function()
        mb.sleep(300)
        assert(file.write_file(fifo, "late data"))
      end)
      local t0 = mb.clock()
      local data = file.read_file(fifo)
      local took = mb.clock() - t0
      mb.send(ticker, "stop")
      local m = mb.receive(function(m) return type(m) == "table" end, 5000)
      assert.are.equal("late data", data)
      assert.is_true(took >= 0.25, "the read returned before the writer came: " .. took)
      assert.is_true(m[1] >= 10, "the neighbour ticked only " .. m[1] .. " times")
      assert.is_true(m[2] < 0.2, string.format("the neighbour was held up %.0f ms", m[2] * 1000))
    end, {schedulers = 1})
  end)

  it("too many open files: nil, \"emfile\" (open, read_file, port.spawn), and it works again once one is closed", function()
    local out, ok = run_script("ulimit -n 64;", [[
      local mb = require "moonbeam"
      local file = require "moonbeam.file"
      local port = require "moonbeam.port" -- loaded before the descriptors run out
      mb.run(function()
        local open = {}
        local err
        for _ = 1, 100 do
          local f, e = file.open("/dev/null")
          if not f then err = e break end
          open[#open + 1] = f
        end
        assert(err == "emfile", "expected emfile, got " .. tostring(err))
        local v, e2 = file.read_file("/etc/hostname")
        assert(v == nil and e2 == "emfile", "read: " .. tostring(e2))
        local sp, e3 = port.spawn("true")
        assert(sp == nil and e3 == "emfile", "spawn: " .. tostring(e3))
        assert(file.close(table.remove(open)))
        assert(file.close(table.remove(open)))
        assert(file.open("/dev/null"), "could not open again")
        for _ = 1, 10 do assert(file.close(table.remove(open))) end -- a spawn needs several
        assert(port.spawn("true"), "could not spawn again")
        assert(file.read_file("/proc/self/status"), "could not read again")
        print("EMFILE-OK " .. #open)
      end, {schedulers = 1})
    ]])
    assert.is_true(ok, out)
    assert.matches("EMFILE%-OK %d+", out)
  end)
end)
