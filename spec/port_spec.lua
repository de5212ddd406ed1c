-- moonbeam.port: subprocesses as ports. Globals used in processes are captured
-- as locals (busted's environment does not travel with a spawned function).
local error, type, string, table, tostring = error, type, string, table, tostring
local mb = require "moonbeam"
local port = require "moonbeam.port"
local file = require "moonbeam.file"

local DIR = os.tmpname()
os.remove(DIR)
assert(os.execute("mkdir -p '" .. DIR .. "'"))

local function run(fn) return mb.run(fn, {schedulers = 2}) end

local function recv(match, ms)
  local m, err = mb.receive(match, ms or 5000)
  if err then error("timed out waiting for a message", 2) end
  return m
end

-- Every message of port p until its exit_status: {stdout = {...}, stderr = {...},
-- status = code, order = {tag...}}.
local function collect(p)
  local r = {stdout = {}, stderr = {}, order = {}}
  while true do
    local m = recv(function(m) return type(m) == "table" and m[2] == p end)
    r.order[#r.order + 1] = m[1]
    if m[1] == "exit_status" then r.status = m[3] return r end
    table.insert(r[m[1]], m[3])
  end
end

-- Runs a Lua script in a fresh lua5.4 in a session of its own (setsid: a signal
-- it sends to its process group cannot reach busted); returns its output and
-- whether it exited with 0.
local function run_script(src)
  local path = DIR .. "/script.lua"
  local f = assert(io.open(path, "w"))
  f:write(src)
  f:close()
  local env = ("LUA_PATH=%q LUA_PATH_5_4=%q LUA_CPATH=%q LUA_CPATH_5_4=%q"):format(
    package.path, package.path, package.cpath, package.cpath)
  local p = assert(io.popen(("%s setsid -w timeout 20 %s %q 2>&1"):format(env, os.getenv("MB_LUA") or "lua5.4", path)))
  local out = p:read("a")
  local ok = p:close()
  return out, ok == true
end

-- Whether the OS process `pid` is gone (reaped), polling for up to 3 s.
local function gone(pid)
  for _ = 1, 300 do
    if not file.stat("/proc/" .. pid) then return true end
    mb.sleep(10)
  end
  return false
end

describe("moonbeam.port.spawn", function()
  teardown(function() os.execute("rm -rf '" .. DIR .. "'") end)

  it("delivers stdout as messages, then the exit status last", function()
    run(function()
      local p = assert(port.spawn("sh", {"-c", "printf hello; exit 7"}))
      assert.is_true(port.is_port(p))
      assert.matches("^#Port<0%.%d+>$", tostring(p))
      local r = collect(p)
      assert.are.equal("hello", table.concat(r.stdout))
      assert.are.equal(7, r.status)
      -- a lot of output: all of it, in order, and nothing after exit_status
      p = assert(port.spawn("seq", {"1", "20000"}))
      r = collect(p)
      local want = {}
      for i = 1, 20000 do want[i] = i .. "\n" end
      assert.is_true(table.concat(r.stdout) == table.concat(want))
      assert.are.equal(0, r.status)
      assert.are.equal("exit_status", r.order[#r.order])
      mb.sleep(50)
      assert.are.equal(0, mb.flush())
      -- the port closed after its exit status
      local v, err = port.write(p, "x")
      assert.is_nil(v)
      assert.are.equal("closed", err)
    end)
  end)

  it("stderr: messages of its own, into stdout, or ignored", function()
    run(function()
      local script = "echo out; echo err >&2"
      local r = collect(assert(port.spawn("sh", {"-c", script})))
      assert.are.same({"out\n"}, r.stdout)
      assert.are.same({"err\n"}, r.stderr)
      r = collect(assert(port.spawn("sh", {"-c", script}, {stderr = "stdout", lines = true})))
      table.sort(r.stdout)
      assert.are.same({"err", "out"}, r.stdout)
      assert.are.same({}, r.stderr)
      r = collect(assert(port.spawn("sh", {"-c", script}, {stderr = "ignore"})))
      assert.are.same({"out\n"}, r.stdout)
      assert.are.same({}, r.stderr)
    end)
  end)

  it("line mode: one message per line without its newline, the last partial line at the end", function()
    run(function()
      local r = collect(assert(port.spawn("printf", {"one\ntwo\n\nthree"}, {lines = true})))
      assert.are.same({"one", "two", "", "three"}, r.stdout)
    end)
  end)

  it("writes to stdin; close_stdin gives the program end of file", function()
    run(function()
      local p = assert(port.spawn("cat", {}, {lines = true}))
      assert.is_true(port.write(p, "first\nsec"))
      assert.is_true(port.write(p, "ond\n"))
      assert.is_true(port.write(p, ""))
      assert.are.equal("first", recv(function(m) return m[1] == "stdout" end)[3])
      assert.are.equal("second", recv(function(m) return m[1] == "stdout" end)[3])
      assert.is_true(port.close_stdin(p))
      local v, err = port.write(p, "late")
      assert.is_nil(v)
      assert.are.equal("closed", err)
      assert.are.equal(0, collect(p).status)
      -- 1 MB through cat and back
      p = assert(port.spawn("cat"))
      local big = string.rep("x", 1024 * 1024)
      assert.is_true(port.write(p, big))
      assert.is_true(port.close_stdin(p))
      local r = collect(p)
      assert.are.equal(#big, #table.concat(r.stdout))
    end)
  end)

  it("kill sends a signal: the exit status is 128 + its number", function()
    run(function()
      local p = assert(port.spawn("sleep", {"30"}))
      assert.is_true(port.os_pid(p) > 0)
      assert.is_true(port.kill(p))
      assert.are.equal(128 + 15, collect(p).status)
      p = assert(port.spawn("sleep", {"30"}))
      assert.is_true(port.kill(p, "SIGKILL"))
      assert.are.equal(128 + 9, collect(p).status)
      local v, err = port.kill(p)
      assert.is_nil(v)
      assert.are.equal("closed", err)
      assert.has_error(function() port.kill(p, "SIGNOPE") end)
    end)
  end)

  it("cwd and env options", function()
    run(function()
      local p = assert(port.spawn("sh", {"-c", "pwd; echo \"$MB_SPEC_VAR\"; echo \"${HOME-unset}\""},
        {cwd = DIR, env = {MB_SPEC_VAR = "from the spec", HOME = false}, lines = true}))
      local r = collect(p)
      local real = assert(io.popen("cd '" .. DIR .. "' && pwd -P")):read("l")
      assert.is_true(r.stdout[1] == DIR or r.stdout[1] == real, r.stdout[1])
      assert.are.equal("from the spec", r.stdout[2])
      assert.are.equal("unset", r.stdout[3])
      -- without env the environment is inherited
      r = collect(assert(port.spawn("sh", {"-c", "echo \"${PATH:+has path}\""}, {lines = true})))
      assert.are.same({"has path"}, r.stdout)
    end)
  end)

  it("a program that does not exist or cannot run: nil, reason", function()
    local noexec = DIR .. "/noexec"
    assert(os.execute("printf 'echo hi' > '" .. noexec .. "' && chmod 644 '" .. noexec .. "'"))
    run(function()
      local v, err = port.spawn("/no/such/program")
      assert.is_nil(v)
      assert.are.equal("enoent", err)
      v, err = port.spawn("no-such-program-in-path-either")
      assert.is_nil(v)
      assert.are.equal("enoent", err)
      v, err = port.spawn(noexec)
      assert.is_nil(v)
      assert.are.equal("eacces", err)
      v, err = port.spawn("sh", {"-c", "true"}, {cwd = DIR .. "/missing"})
      assert.is_nil(v)
      assert.are.equal("enoent", err)
      assert.are.equal(0, mb.flush())
    end)
  end)

  it("a spawn that fails just before the runtime ends: the program ends normally", function()
    -- the failed port is still closing its handles when the loop ends
    local out, ok = run_script([[
      local mb = require "moonbeam"
      local port = require "moonbeam.port"
      print(mb.run(function() return port.spawn("/no/such/program") end, {schedulers = 1}))
      print(mb.run(function() return port.spawn("/no/such/program") end, {schedulers = 2}))
      print("survived")
    ]])
    assert.is_true(ok, out)
    assert.matches("nil\tenoent\nnil\tenoent\nsurvived", out)
  end)

  it("raises on misuse", function()
    run(function()
      assert.has_error(function() port.spawn() end)
      assert.has_error(function() port.spawn("") end)
      assert.has_error(function() port.spawn("sh", {{}}) end)
      assert.has_error(function() port.spawn("sh", {}, {stderr = "loud"}) end)
      assert.has_error(function() port.spawn("sh", {}, {env = {["A=B"] = "x"}}) end)
      assert.has_error(function() port.spawn("sh", {}, {env = {A = {}}}) end)
      assert.has_error(function() port.spawn("sh", {}, {cwd = 5 > 4}) end)
      assert.has_error(function() port.write("not a port", "x") end)
      local p = assert(port.spawn("cat"))
      assert.has_error(function() port.write(p, {}) end)
      port.close(p)
    end)
    assert.has_error(function() port.spawn("true") end) -- outside a process
  end)

  it("writing to a program that stopped reading: nil, \"epipe\" (no SIGPIPE)", function()
    run(function()
      local p = assert(port.spawn("sh", {"-c", "exec 0<&-; echo ready; sleep 5"}, {lines = true}))
      assert.are.equal("ready", recv(function(m) return m[1] == "stdout" end)[3])
      local v, err
      for _ = 1, 50 do -- the first write may still fit in the pipe
        v, err = port.write(p, string.rep("y", 65536))
        if not v then break end
      end
      assert.is_nil(v)
      assert.are.equal("epipe", err)
      port.close(p)
    end)
  end)

  it("closing the port, or its owner's exit, kills the program and reaps it", function()
    run(function()
      local p = assert(port.spawn("sleep", {"30"}))
      local pid = port.os_pid(p)
      assert.is_true(port.close(p))
      assert.is_true(gone(pid))
      local v, err = port.close(p)
      assert.is_nil(v)
      assert.are.equal("closed", err)
      -- the owner dies: its port closes and its program goes
      local me = mb.self()
      local owner = mb.spawn(function()
        local q = assert(port.spawn("sleep", {"30"}))
        mb.send(me, {"spawned", q, port.os_pid(q)})
        mb.receive()
      end)
      local m = recv(function(m) return m[1] == "spawned" end)
      mb.exit(owner, "kill")
      assert.is_true(gone(m[3]))
      v, err = port.info(m[2])
      assert.is_nil(v)
      assert.are.equal("closed", err)
      assert.are.equal(0, mb.flush())
    end)
  end)

  it("controlling_process hands the port over; commands work from another scheduler", function()
    run(function()
      local me = mb.self()
      local p = assert(port.spawn("cat", {}, {lines = true}))
      local other = mb.spawn_opt({scheduler = mb.scheduler() == 1 and 2 or 1}, function()
        local q = mb.receive(function(m) return port.is_port(m) end)
        -- this process runs on the other scheduler: the write is queued to the port's loop
        assert(port.write(q, "via the new owner\n"))
        local line = mb.receive(function(m) return m[1] == "stdout" end)
        assert(port.close_stdin(q))
        local st = mb.receive(function(m) return m[1] == "exit_status" end)
        mb.send(me, {"got", line[3], st[3], mb.scheduler()})
      end)
      local dead, ref = mb.spawn_monitor(function() end)
      recv(function(m) return m[1] == "DOWN" and m[2] == ref end)
      local v, err = port.controlling_process(p, dead)
      assert.is_nil(v)
      assert.are.equal("noproc", err)
      assert.is_true(port.controlling_process(p, other))
      assert.are.equal(other, port.info(p).owner)
      v, err = port.controlling_process(p, me)
      assert.is_nil(v)
      assert.are.equal("not_owner", err)
      mb.send(other, p)
      local m = recv(function(m) return m[1] == "got" end)
      assert.are.equal("via the new owner", m[2])
      assert.are.equal(0, m[3])
      assert.are_not.equal(mb.scheduler(), m[4])
      assert.are.equal(0, mb.flush())
    end)
  end)
end)
