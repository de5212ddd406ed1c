-- moonbeam.logger: levels, metadata, the default format, backends and
-- formatters living in the logger process (so configuration reaches every
-- scheduler's VM), crash reports through the crash handler, supervisor reports.
local mb = require "moonbeam"
local gen = require "moonbeam.gen"
local logger = require "moonbeam.logger"

local function run(fn) return mb.run(fn, {schedulers = 2}) end

local function tagged(tag)
  return function(m) return type(m) == "table" and m[1] == tag end
end

-- Routes events to the calling process as {"$log", event, line}, instead of stderr.
local function capture()
  local me = mb.self()
  logger.remove_backend("console")
  logger.add_backend("capture", function(line, event) mb.send(me, {"$log", event, line}) end)
end

local function next_log(timeout)
  return mb.receive(tagged("$log"), timeout or 2000)
end

local function no_more_logs()
  logger.flush()
  return mb.receive(tagged("$log"), 0) == nil
end

describe("logger", function()
  it("is a process registered as moonbeam.logger, started by the first process that logs", function()
    run(function()
      assert.is_nil(mb.whereis("moonbeam.logger"))
      logger.remove_backend("console")
      local pid = mb.whereis("moonbeam.logger")
      assert.is_true(mb.is_pid(pid))
      assert.are.equal(pid, logger.whereis())
      -- many first loggers at once start one logger
      local me = mb.self()
      for s = 1, 2 do
        for _ = 1, 5 do
          gen.spawn({scheduler = s}, function() mb.send(me, {"w", logger.whereis()}) end)
        end
      end
      for _ = 1, 10 do assert.are.equal(pid, mb.receive(tagged("w"), 2000)[2]) end
    end)
  end)

  it("logs at five levels, each with a function of its own and through log(level, ...)", function()
    run(function()
      capture()
      for _, level in ipairs({"debug", "info", "notice", "warning", "error"}) do
        logger[level]("at " .. level)
        local ev = next_log()[2]
        assert.are.equal(level, ev.level)
        assert.are.equal("at " .. level, ev.message)
      end
    end)
  end)

  it("passes every event at or above the level; set_level filters the rest", function()
    run(function()
      capture()
      assert.are.equal("debug", logger.level())
      for _, level in ipairs(logger.levels) do
        logger.log(level, "m-" .. level)
        local got = next_log()
        assert.are.equal(level, got[2].level)
        assert.are.equal("m-" .. level, got[2].message)
      end
      assert.are.equal("ok", logger.set_level("warning"))
      assert.are.equal("warning", logger.level())
      logger.debug("no")
      logger.info("no")
      logger.notice("no")
      logger.warning("yes w")
      logger.error("yes e")
      assert.are.equal("yes w", next_log()[2].message)
      assert.are.equal("yes e", next_log()[2].message)
      assert.is_true(no_more_logs())
      logger.set_level("none")
      logger.error("nothing")
      assert.is_true(no_more_logs())
    end)
  end)

  it("formats 'time [level] <pid> name: message' by default", function()
    run(function()
      capture()
      mb.register("the_logger_test")
      logger.info("hello")
      local line = next_log()[3]
      assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d %[info%] <[%d.]+> the_logger_test: hello$", line)
      mb.unregister("the_logger_test")
      logger.warning({"a", 1})
      line = next_log()[3]
      assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d %[warning%] <[%d.]+>: {\"a\", 1}$", line)
      assert.are.equal("2024-05-01 00:00:00 [info] x: m",
        logger.format({time = os.time({year = 2024, month = 5, day = 1, hour = 0}), level = "info",
                       name = "x", message = "m"}))
    end)
  end)

  it("gives backends the metadata: pid, registered name, time and the caller's own", function()
    run(function()
      capture()
      mb.register("meta_test")
      local before = os.time()
      logger.notice("with meta", {request_id = 42, user = "ann"})
      local ev = next_log()[2]
      assert.are.equal(mb.self(), ev.pid)
      assert.are.equal("meta_test", ev.name)
      assert.is_true(ev.time >= before and ev.time <= os.time())
      assert.are.same({request_id = 42, user = "ann"}, ev.metadata)
      assert.are.equal("log", ev.kind)
    end)
  end)

  it("configuration set in one process reaches processes on every scheduler", function()
    run(function()
      capture()
      logger.set_level("error")
      local me = mb.self()
      for s = 1, 2 do
        gen.spawn({scheduler = s}, function()
          logger.info("filtered out")
          logger.error("from scheduler " .. mb.scheduler())
          logger.flush()
          mb.send(me, {"done", mb.scheduler()})
        end)
      end
      local seen = {}
      for _ = 1, 2 do seen[mb.receive(tagged("done"), 2000)[2]] = true end
      assert.is_true(seen[1] and seen[2])
      local got = {}
      for _ = 1, 2 do got[next_log()[2].message] = true end
      assert.is_true(got["from scheduler 1"] and got["from scheduler 2"])
      assert.is_true(no_more_logs())
    end)
  end)

  it("takes a formatter function, run in the logger process", function()
    run(function()
      capture()
      logger.configure({formatter = function(ev) return ev.level:upper() .. "|" .. ev.message end})
      logger.info("x")
      assert.are.equal("INFO|x", next_log()[3])
      -- a formatter that fails falls back to the default format
      logger.configure({formatter = function() error("bad formatter") end})
      logger.info("y")
      local line = next_log()[3]
      assert.matches("%[info%] <[%d.]+>: y %(formatter failed", line)
    end)
  end)

  it("takes a formatter or a backend as a module name", function()
    run(function()
      capture()
      logger.configure({formatter = "moonbeam.logger"}) -- its `format` function
      logger.info("plain")
      assert.matches("%[info%] <[%d.]+>: plain$", next_log()[3])
      local ok, err = pcall(logger.add_backend, "broken", "no.such.backend.module")
      assert.is_false(ok)
      assert.matches("no.such.backend.module", err)
    end)
  end)

  it("adds and removes backends; names are unique", function()
    run(function()
      assert.are.same({"console"}, logger.backends())
      capture()
      assert.are.same({"capture"}, logger.backends())
      local me = mb.self()
      assert.are.equal("ok", logger.add_backend("second", function(_, ev) mb.send(me, {"second", ev.message}) end))
      local again, why = logger.add_backend("second", function() end)
      assert.is_nil(again)
      assert.are.equal("already_present", why)
      logger.info("both")
      assert.are.equal("both", next_log()[2].message)
      assert.are.same({"second", "both"}, mb.receive(tagged("second"), 2000))
      assert.are.equal("ok", logger.remove_backend("second"))
      local none, err = logger.remove_backend("second")
      assert.is_nil(none)
      assert.are.equal("not_found", err)
      logger.info("one")
      assert.are.equal("one", next_log()[2].message)
      logger.flush()
      assert.is_nil(mb.receive(tagged("second"), 0))
    end)
  end)

  it("removes a backend that raises and keeps the others", function()
    run(function()
      capture()
      local real = io.stderr
      logger.add_backend("bad", function() error("backend down") end)
      logger.info("first")
      assert.are.equal("first", next_log()[2].message)
      logger.flush()
      assert.are.same({"capture"}, logger.backends())
      logger.info("second")
      assert.are.equal("second", next_log()[2].message)
      assert.are.equal(real, io.stderr)
    end)
  end)

  it("reports a process that crashes with a Lua error, on every scheduler, with the traceback", function()
    run(function()
      capture()
      for s = 1, 2 do
        local pid = gen.spawn({scheduler = s}, function()
          local _ = logger -- this VM loads the logger, which installs its crash handler
          mb.register("crasher" .. mb.scheduler())
          error("kaboom on " .. mb.scheduler())
        end)
        local got = next_log()
        local ev, line = got[2], got[3]
        assert.are.equal("crash_report", ev.kind)
        assert.are.equal("error", ev.level)
        assert.are.equal(pid, ev.pid)
        assert.are.equal("crasher" .. s, ev.name)
        assert.matches("kaboom on " .. s, line)
        assert.matches("stack traceback", line)
        assert.matches("Process <[%d.]+> %(crasher" .. s .. "%) crashed", line)
      end
    end)
  end)

  it("does not report processes that end with mb.exit", function()
    run(function()
      capture()
      local _, ref = gen.spawn({monitor = true}, function()
        local _ = logger
        mb.exit("quietly")
      end)
      assert.are.equal(ref, mb.receive(tagged("DOWN"), 2000)[2])
      assert.is_true(no_more_logs())
    end)
  end)

  it("writes crash reports and supervisor reports", function()
    run(function()
      capture()
      logger.crash_report({what = "GenServer", name = "srv", reason = {"error", "oops", "stack traceback:\n\tx"},
                           last_message = "msg", state = {1, 2}})
      local got = next_log()
      assert.are.equal("crash_report", got[2].kind)
      assert.matches("GenServer <[%d.]+> %(srv%) terminating\n%*%* %(error%) oops\nLast message: \"msg\"\n" ..
                     "State: {1, 2}\nstack traceback:\n\tx", got[3])
      logger.supervisor_report({supervisor = "app_sup", context = "child_terminated", reason = "boom",
                                child = {id = "worker", pid = mb.self(), start = {"my.worker", "start_link", {1}},
                                         restart = "permanent"}})
      got = next_log()
      assert.are.equal("supervisor_report", got[2].kind)
      assert.are.equal("child_terminated", got[2].report.context)
      assert.matches("Child worker of Supervisor app_sup terminated\n%*%* %(exit%) boom\nPid: <[%d.]+>\n" ..
                     "Start Call: my.worker.start_link%(1%)\nRestart: permanent", got[3])
      logger.supervisor_report({supervisor = "app_sup", context = "reached_max_restart_intensity",
                                reason = "shutdown"})
      assert.matches("Supervisor app_sup reached its maximum restart intensity", next_log()[3])
    end)
  end)

  it("compares levels", function()
    assert.are.equal("lt", logger.compare_levels("debug", "info"))
    assert.are.equal("eq", logger.compare_levels("error", "error"))
    assert.are.equal("gt", logger.compare_levels("warning", "notice"))
  end)

  it("writes to stderr when no runtime is running", function()
    local lines = {}
    local real = io.stderr
    rawset(io, "stderr", {write = function(_, ...) lines[#lines + 1] = table.concat({...}) end,
                          flush = function() end})
    local ok, err = pcall(logger.warning, "outside")
    rawset(io, "stderr", real)
    assert(ok, err)
    assert.matches("%[warning%] outside", lines[1])
  end)

  it("rejects bad input with clear errors", function()
    run(function()
      assert.has_error(function() logger.log("loud", "x") end,
        "logger.log: unknown level \"loud\" (debug, info, notice, warning, error)")
      assert.has_error(function() logger.set_level("verbose") end)
      assert.has_error(function() logger.info("x", "not a table") end,
        "logger.info: metadata must be a table, got string")
      assert.has_error(function() logger.add_backend("b", 42) end,
        "logger.add_backend: backend must be a function or a module name")
      assert.has_error(function() logger.add_backend(1, function() end) end,
        "logger.add_backend: name must be a string")
      assert.has_error(function() logger.configure("debug") end, "logger.configure: opts must be a table")
      assert.has_error(function() logger.configure({formatter = 3}) end)
      assert.has_error(function() logger.compare_levels("x", "info") end)
    end)
    assert.has_error(function() logger.set_level("info") end,
      "logger.set_level: must be called from a moonbeam process")
  end)
end)

describe("logger reports (issue 8 items 19, 32)", function()
  local function raised(fn)
    local ok, err = pcall(fn)
    assert.is_false(ok, "expected an error")
    return tostring(err)
  end

  it("prints a traceback nested in a reason as it is (no escaped \\9), and keeps the reason as a value", function()
    run(function()
      capture()
      local tb = "stack traceback:\n\tworker.lua:3: in function 'f'"
      local reason = {{"error", "worker.lua:3: boom", tb}, {"gen_server", "call", {"srv", "go"}}}
      logger.crash_report({what = "GenServer", name = "caller", reason = reason})
      local got = next_log()
      local line, ev = got[3], got[2]
      assert.matches('** (exit) {{"error", "worker.lua:3: boom", <traceback 1>}, {"gen_server", "call", {"srv", "go"}}}',
                     line, 1, true)
      assert.matches("\n" .. tb, line, 1, true)
      assert.is_nil(line:find("\\9", 1, true))
      assert.is_nil(line:find("\\\n", 1, true))
      assert.are.same(reason, ev.report.reason)
      -- a structured error value stays a table in the report
      logger.crash_report({reason = {"error", {code = 42}, ""}})
      ev = next_log()[2]
      assert.are.same({"error", {code = 42}, ""}, ev.report.reason)
    end)
  end)

  it("a process raising a table is reported with the table as a value, on every scheduler", function()
    run(function()
      capture()
      for s = 1, 2 do
        gen.spawn({scheduler = s}, function()
          local _ = logger
          error({code = 42, why = "bad"})
        end)
        local got = next_log()
        assert.are.equal("crash_report", got[2].kind)
        assert.are.same({code = 42, why = "bad"}, got[2].report.reason)
        assert.matches('** (error) {', got[3], 1, true)
        assert.matches('code = 42', got[3], 1, true)
        assert.is_nil(got[3]:find("table: 0x", 1, true))
        assert.matches("stack traceback:\n\t", got[3], 1, true)
      end
    end)
  end)

  it("supervisor reports print nested tracebacks the same way", function()
    run(function()
      capture()
      local tb = "stack traceback:\n\tw.lua:1: in main chunk"
      logger.supervisor_report({supervisor = "sup", context = "start_error",
                                reason = {"shutdown", {"failed_to_start_child", "w", {"error", "w.lua:1: no", tb}}},
                                child = {id = "w"}})
      local line = next_log()[3]
      assert.matches('** (exit) {"shutdown", {"failed_to_start_child", "w", {"error", "w.lua:1: no", <traceback 1>}}}',
                     line, 1, true)
      assert.matches("\n" .. tb, line, 1, true)
      assert.is_nil(line:find("\\9", 1, true))
    end)
  end)

  it("report functions check their argument, raising at the caller's line", function()
    run(function()
      local line = debug.getinfo(1, "l").currentline
      local err = raised(function() logger.crash_report(nil) end) -- line + 1
      assert.matches("logger_spec.lua:" .. (line + 1) .. ": logger.crash_report: report must be a table", err, 1, true)
      assert.matches("logger.crash_report: report.pid must be a pid, got 5",
                     raised(function() logger.crash_report({pid = 5}) end), 1, true)
      assert.matches("logger.supervisor_report: report must be a table",
                     raised(function() logger.supervisor_report("x") end), 1, true)
      assert.matches("logger.supervisor_report: report.context must be a string, got nil",
                     raised(function() logger.supervisor_report({}) end), 1, true)
      assert.matches("logger.supervisor_report: report.child must be a table, got number",
                     raised(function() logger.supervisor_report({context = "x", child = 1}) end), 1, true)
      assert.matches("logger.configure: unknown option 'levle' (valid options: level, formatter)",
                     raised(function() logger.configure({levle = "info"}) end), 1, true)
      err = raised(function() logger.log("loud", "x") end) -- line + 13
      assert.matches("logger_spec.lua:" .. (line + 13) .. ": logger.log: unknown level \"loud\"", err, 1, true)
    end)
  end)
end)
