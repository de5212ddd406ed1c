local mb = require "moonbeam"
local gen_statem = require "moonbeam.gen_statem"
local logger = require "moonbeam.logger"

local function run(fn)
  return mb.run(function()
    logger.set_level("none") -- the crashes below are expected
    return fn()
  end, {schedulers = 2})
end

-- The exit reason raised by f(...), or fails if f returns normally.
local function exit_of(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an exit")
  local reason = mb.exit_reason(err)
  assert(reason ~= nil, "expected an exit, got error: " .. tostring(err))
  return reason
end

local function recv(match, timeout)
  local m = mb.receive(match, timeout or 2000)
  assert(m ~= nil, "no message within the timeout")
  return m
end

local function tagged(tag)
  return function(m) return type(m) == "table" and m[1] == tag end
end

-- Starts `module` (not linked) and returns the pid.
local function start(module, arg)
  local pid, err = gen_statem.start(module, arg)
  assert(mb.is_pid(pid), "start failed: " .. mb.format(err))
  return pid
end

-- Casts `request` to a machine expected to die of it; returns its exit reason.
local function cast_and_down(pid, request)
  local ref = mb.monitor(pid)
  gen_statem.cast(pid, request)
  return recv(function(m) return m[1] == "DOWN" and m[2] == ref end)[5]
end

-- A door with a code, in state_functions mode (Erlang's classic example):
-- "locked" accepts digits by cast, opens on the right code, relocks after a
-- state timeout.
local function door(open_ms)
  return {
    callback_mode = function() return "state_functions", "state_enter" end,
    init = function(arg)
      return "ok", "locked", {code = arg.code, input = "", owner = arg.owner}
    end,
    locked = function(etype, content, data)
      if etype == "enter" then
        mb.send(data.owner, {"enter", "locked", content})
        return "keep_state", {code = data.code, input = "", owner = data.owner}
      elseif etype == "cast" then
        local input = data.input .. content
        data.input = input
        if input == data.code then
          return "next_state", "open", data
        end
        return "keep_state", data
      elseif type(etype) == "table" and etype[1] == "call" then
        return "keep_state_and_data", {{"reply", etype[2], "locked"}}
      end
      return "keep_state_and_data"
    end,
    open = function(etype, content, data)
      if etype == "enter" then
        mb.send(data.owner, {"enter", "open", content})
        return "keep_state_and_data", {{"state_timeout", open_ms, "lock"}}
      elseif etype == "state_timeout" then
        mb.send(data.owner, {"state_timeout", content})
        return "next_state", "locked", data
      elseif type(etype) == "table" and etype[1] == "call" then
        return "keep_state_and_data", {"reply", etype[2], "open"}
      end
      return "keep_state_and_data"
    end,
  }
end

describe("gen_statem", function()
  describe("callback mode state_functions", function()
    it("calls the function named by the state, with state enter calls", function()
      run(function()
        local me = mb.self()
        local pid = start(door(100), {code = "123", owner = me})
        -- the first enter call has the first state as old state
        assert.are.same({"enter", "locked", "locked"}, recv(tagged("enter")))
        assert.are.equal("locked", gen_statem.call(pid, "status"))
        gen_statem.cast(pid, "1")
        gen_statem.cast(pid, "2")
        gen_statem.cast(pid, "3")
        assert.are.same({"enter", "open", "locked"}, recv(tagged("enter")))
        assert.are.equal("open", gen_statem.call(pid, "status"))
        assert.are.same({"state_timeout", "lock"}, recv(tagged("state_timeout")))
        assert.are.same({"enter", "locked", "open"}, recv(tagged("enter")))
        assert.are.equal("locked", gen_statem.call(pid, "status"))
        gen_statem.stop(pid)
      end)
    end)

    it("works with a callback module given by name", function()
      local dir = os.tmpname()
      os.remove(dir)
      os.execute("mkdir -p " .. dir)
      local f = assert(io.open(dir .. "/statem_toggle.lua", "w"))
      f:write([[
        local M = {}
        M.callback_mode = "state_functions"
        function M.init(n) return "ok", "off", n end
        function M.off(etype, content, data)
          if content == "flip" then return "next_state", "on", data + 1 end
          return "keep_state_and_data", {{"reply", etype[2], {"off", data}}}
        end
        function M.on(etype, content, data)
          if content == "flip" then return "next_state", "off", data + 1 end
          return "keep_state_and_data", {{"reply", etype[2], {"on", data}}}
        end
        return M
      ]])
      f:close()
      local old = package.path
      package.path = dir .. "/?.lua;" .. package.path
      local ok, err = pcall(run, function()
        local pid = start("statem_toggle", 0)
        assert.are.same({"off", 0}, gen_statem.call(pid, "get"))
        gen_statem.cast(pid, "flip")
        assert.are.same({"on", 1}, gen_statem.call(pid, "get"))
        gen_statem.cast(pid, "flip")
        assert.are.same({"off", 2}, gen_statem.call(pid, "get"))
      end)
      package.path = old
      os.remove(dir .. "/statem_toggle.lua")
      os.remove(dir)
      assert(ok, err)
    end)

    it("a state without a function crashes the machine with an undef_state_function error", function()
      run(function()
        local pid = start({
          callback_mode = "state_functions",
          init = function() return "ok", "nowhere", nil end,
        })
        local reason = cast_and_down(pid, "x")
        assert.are.equal("error", reason[1])
        assert.matches("undef_state_function", reason[2])
      end)
    end)
  end)

  describe("callback mode handle_event_function", function()
    it("calls handle_event(event_type, content, state, data) with any state value", function()
      run(function()
        local pid = start({
          callback_mode = function() return "handle_event_function" end,
          init = function() return "ok", {"count", 0}, "d" end,
          handle_event = function(etype, content, state, data)
            if etype == "cast" then
              return "next_state", {"count", state[2] + content}, data .. "+"
            elseif type(etype) == "table" and etype[1] == "call" then
              return "keep_state_and_data", {{"reply", etype[2], {state, data}}}
            elseif etype == "info" then
              return "keep_state", data .. "i"
            end
          end,
        })
        gen_statem.cast(pid, 2)
        gen_statem.cast(pid, 3)
        mb.send(pid, "hello")
        assert.are.same({{"count", 5}, "d++i"}, gen_statem.call(pid, "get"))
        local state, data = gen_statem.get_state(pid)
        assert.are.same({"count", 5}, state)
        assert.are.equal("d++i", data)
      end)
    end)

    it("state enter calls with handle_event: \"enter\" with the old state, on change and on repeat_state only", function()
      run(function()
        local me = mb.self()
        local pid = start({
          callback_mode = {"handle_event_function", "state_enter"},
          init = function() return "ok", 1, nil end,
          handle_event = function(etype, content, state, data)
            if etype == "enter" then
              mb.send(me, {"enter", content, state})
              return "keep_state_and_data"
            elseif content == "same" then
              return "next_state", state, data
            elseif content == "keep" then
              return "keep_state", data
            elseif content == "repeat" then
              return "repeat_state", data
            elseif content == "repeat2" then
              return "repeat_state_and_data"
            end
            return "next_state", state + 1, data
          end,
        })
        assert.are.same({"enter", 1, 1}, recv(tagged("enter")))
        gen_statem.cast(pid, "same")
        gen_statem.cast(pid, "keep")
        gen_statem.cast(pid, "next")
        assert.are.same({"enter", 1, 2}, recv(tagged("enter")))
        gen_statem.cast(pid, "repeat")
        assert.are.same({"enter", 2, 2}, recv(tagged("enter")))
        gen_statem.cast(pid, "repeat2")
        assert.are.same({"enter", 2, 2}, recv(tagged("enter")))
        assert.is_nil(mb.receive(tagged("enter"), 50))
      end)
    end)

    it("a missing handle_event makes start fail", function()
      run(function()
        local pid, reason = gen_statem.start({
          callback_mode = "handle_event_function",
          init = function() return "ok", 1, nil end,
        })
        assert.is_nil(pid)
        assert.matches("handle_event", reason[2])
      end)
    end)
  end)

  describe("timeouts", function()
    -- A machine reporting every event to its owner; casts are commands:
    -- {"actions", list} returns keep_state_and_data with them; {"goto", s,
    -- list} changes state.
    local function reporter(owner)
      return {
        callback_mode = "handle_event_function",
        init = function() return "ok", "a", owner end,
        handle_event = function(etype, content, state, data)
          if etype == "cast" and type(content) == "table" and content[1] == "actions" then
            return "keep_state_and_data", content[2]
          elseif etype == "cast" and type(content) == "table" and content[1] == "goto" then
            return "next_state", content[2], data, content[3]
          end
          mb.send(data, {"event", etype, content, state})
          return "keep_state_and_data"
        end,
      }
    end

    it("an event timeout fires when no event comes first", function()
      run(function()
        local pid = start(reporter(mb.self()))
        gen_statem.cast(pid, {"actions", {{"timeout", 30, "idle"}}})
        assert.are.same({"event", "timeout", "idle", "a"}, recv(tagged("event")))
      end)
    end)

    it("a number as an action is an event timeout whose content is the number", function()
      run(function()
        local pid = start(reporter(mb.self()))
        gen_statem.cast(pid, {"actions", 20})
        assert.are.same({"event", "timeout", 20, "a"}, recv(tagged("event")))
      end)
    end)

    it("an event timeout is cancelled by any event", function()
      run(function()
        local pid = start(reporter(mb.self()))
        gen_statem.cast(pid, {"actions", {{"timeout", 150, "idle"}}})
        mb.send(pid, "poke")
        assert.are.same({"event", "info", "poke", "a"}, recv(tagged("event")))
        assert.is_nil(mb.receive(tagged("event"), 400))
      end)
    end)

    it("an event timeout of 0 fires at once when no event is queued", function()
      run(function()
        local pid = start(reporter(mb.self()))
        gen_statem.cast(pid, {"actions", {{"timeout", 0, "now"}}})
        assert.are.same({"event", "timeout", "now", "a"}, recv(tagged("event")))
      end)
    end)

    it("a state timeout fires in the same state, whatever other events come", function()
      run(function()
        local pid = start(reporter(mb.self()))
        gen_statem.cast(pid, {"actions", {{"state_timeout", 100, "st"}}})
        mb.send(pid, "one")
        mb.send(pid, "two")
        assert.are.same({"event", "info", "one", "a"}, recv(tagged("event")))
        assert.are.same({"event", "info", "two", "a"}, recv(tagged("event")))
        assert.are.same({"event", "state_timeout", "st", "a"}, recv(tagged("event")))
      end)
    end)

    it("a state timeout is cancelled by a change of state", function()
      run(function()
        local pid = start(reporter(mb.self()))
        gen_statem.cast(pid, {"actions", {{"state_timeout", 100, "st"}}})
        gen_statem.cast(pid, {"goto", "b"})
        assert.is_nil(mb.receive(tagged("event"), 300))
      end)
    end)

    it("a state timeout set with the change of state runs in the new state", function()
      run(function()
        local pid = start(reporter(mb.self()))
        gen_statem.cast(pid, {"actions", {{"state_timeout", 500, "old"}}})
        gen_statem.cast(pid, {"goto", "b", {{"state_timeout", 30, "new"}}})
        assert.are.same({"event", "state_timeout", "new", "b"}, recv(tagged("event")))
        assert.is_nil(mb.receive(tagged("event"), 600))
      end)
    end)

    it("a state timeout is cancelled by {\"state_timeout\", \"cancel\"}", function()
      run(function()
        local pid = start(reporter(mb.self()))
        gen_statem.cast(pid, {"actions", {{"state_timeout", 100, "st"}}})
        gen_statem.cast(pid, {"actions", {{"state_timeout", "cancel"}}})
        assert.is_nil(mb.receive(tagged("event"), 300))
      end)
    end)

    it("a generic timeout survives changes of state and other events", function()
      run(function()
        local pid = start(reporter(mb.self()))
        gen_statem.cast(pid, {"actions", {{{"timeout", "t1"}, 100, "g"}}})
        gen_statem.cast(pid, {"goto", "b"})
        mb.send(pid, "poke")
        gen_statem.cast(pid, {"goto", "c"})
        assert.are.same({"event", "info", "poke", "b"}, recv(tagged("event")))
        assert.are.same({"event", {"timeout", "t1"}, "g", "c"}, recv(tagged("event")))
      end)
    end)

    it("a generic timeout is cancelled only by cancelling it or setting it again", function()
      run(function()
        local pid = start(reporter(mb.self()))
        gen_statem.cast(pid, {"actions", {{{"timeout", "x"}, 100, "x1"}, {{"timeout", "y"}, 100, "y1"}}})
        gen_statem.cast(pid, {"actions", {{{"timeout", "x"}, "cancel"}}})
        gen_statem.cast(pid, {"actions", {{{"timeout", "y"}, 150, "y2"}}})
        assert.are.same({"event", {"timeout", "y"}, "y2", "a"}, recv(tagged("event")))
        assert.is_nil(mb.receive(tagged("event"), 300))
      end)
    end)

    it("\"update\" changes a running timeout's content, keeping its time", function()
      run(function()
        local pid = start(reporter(mb.self()))
        gen_statem.cast(pid, {"actions", {{{"timeout", "u"}, 80, "before"}}})
        gen_statem.cast(pid, {"actions", {{{"timeout", "u"}, "update", "after"}}})
        assert.are.same({"event", {"timeout", "u"}, "after", "a"}, recv(tagged("event")))
        assert.is_nil(mb.receive(tagged("event"), 200))
      end)
    end)

    it("init may set timeouts", function()
      run(function()
        local me = mb.self()
        start({
          callback_mode = "handle_event_function",
          init = function() return "ok", "s", nil, {{"state_timeout", 20, "from init"}} end,
          handle_event = function(etype, content)
            mb.send(me, {"event", etype, content})
            return "keep_state_and_data"
          end,
        })
        assert.are.same({"event", "state_timeout", "from init"}, recv(tagged("event")))
      end)
    end)

    it("an event timeout does not start while inserted events are waiting", function()
      run(function()
        local me = mb.self()
        local pid = start({
          callback_mode = "handle_event_function",
          init = function() return "ok", "s", nil end,
          handle_event = function(etype, content)
            mb.send(me, {"event", etype, content})
            if content == "go" then
              return "keep_state_and_data", {{"next_event", "internal", "inserted"}, {"timeout", 0, "t"}}
            end
            return "keep_state_and_data"
          end,
        })
        gen_statem.cast(pid, "go")
        assert.are.same({"event", "cast", "go"}, recv(tagged("event")))
        assert.are.same({"event", "internal", "inserted"}, recv(tagged("event")))
        assert.is_nil(mb.receive(tagged("event"), 100))
      end)
    end)

    it("hibernate is accepted and the machine goes on", function()
      run(function()
        local pid = start(reporter(mb.self()))
        gen_statem.cast(pid, {"actions", {"hibernate", {"timeout", 10, "after nap"}}})
        assert.are.same({"event", "timeout", "after nap", "a"}, recv(tagged("event")))
      end)
    end)

    it("a timeout set to \"infinity\" never fires and replaces a running one", function()
      run(function()
        local pid = start(reporter(mb.self()))
        gen_statem.cast(pid, {"actions", {{"state_timeout", 60, "st"}}})
        gen_statem.cast(pid, {"actions", {{"state_timeout", "infinity", "st"}}})
        assert.is_nil(mb.receive(tagged("event"), 200))
      end)
    end)
  end)

  describe("postpone and next_event", function()
    -- "busy" postpones every cast; a call switches to "free", which handles them.
    local function postponer(owner)
      return {
        callback_mode = "state_functions",
        init = function() return "ok", "busy", owner end,
        busy = function(etype, content, data)
          if etype == "cast" then
            mb.send(data, {"postponing", content})
            return "keep_state_and_data", "postpone"
          elseif content == "free" then
            return "next_state", "free", data, {{"reply", etype[2], "ok"}}
          elseif content == "stay" then
            return "keep_state", data, {{"reply", etype[2], "ok"}}
          end
          return "keep_state_and_data"
        end,
        free = function(etype, content, data)
          mb.send(data, {"handled", etype, content})
          if content == "busy" then return "next_state", "busy", data end
          return "keep_state_and_data"
        end,
      }
    end

    it("postpone keeps the event until the next change of state, then delivers it again, in order", function()
      run(function()
        local pid = start(postponer(mb.self()))
        gen_statem.cast(pid, "c1")
        gen_statem.cast(pid, "c2")
        assert.are.same({"postponing", "c1"}, recv(tagged("postponing")))
        assert.are.same({"postponing", "c2"}, recv(tagged("postponing")))
        -- no change of state: nothing is retried
        assert.are.equal("ok", gen_statem.call(pid, "stay"))
        assert.is_nil(mb.receive(tagged("handled"), 50))
        assert.are.equal("ok", gen_statem.call(pid, "free"))
        assert.are.same({"handled", "cast", "c1"}, recv(tagged("handled")))
        assert.are.same({"handled", "cast", "c2"}, recv(tagged("handled")))
      end)
    end)

    it("a postponed event is retried before events that came after it", function()
      run(function()
        local pid = start(postponer(mb.self()))
        gen_statem.cast(pid, "early")
        recv(tagged("postponing"))
        mb.send(pid, "late-info")   -- busy ignores infos
        gen_statem.call(pid, "free")
        mb.send(pid, "later")
        assert.are.same({"handled", "cast", "early"}, recv(tagged("handled")))
        assert.are.same({"handled", "info", "later"}, recv(tagged("handled")))
      end)
    end)

    it("a postponed call is answered once handled in the next state", function()
      run(function()
        local me = mb.self()
        local pid = start({
          callback_mode = "state_functions",
          init = function() return "ok", "closed", nil end,
          closed = function(etype, content, data)
            if content == "open" then return "next_state", "opened", data end
            return "keep_state_and_data", "postpone"
          end,
          opened = function(etype, content, data)
            return "keep_state_and_data", {{"reply", etype[2], "answer to " .. content}}
          end,
        })
        mb.spawn(function() mb.send(me, {"got", gen_statem.call(pid, "q")}) end)
        mb.sleep(30)
        gen_statem.cast(pid, "open")
        assert.are.same({"got", "answer to q"}, recv(tagged("got")))
      end)
    end)

    it("next_event inserts events before the queued ones, in the order given", function()
      run(function()
        local me = mb.self()
        local pid = start({
          callback_mode = "handle_event_function",
          init = function() return "ok", "s", nil end,
          handle_event = function(etype, content, state, data)
            mb.send(me, {"ev", etype, content})
            if content == "block" then
              mb.receive(function(m) return m == "go" end)
              return "keep_state_and_data", {{"next_event", "internal", "i1"}, {"next_event", "cast", "i2"}}
            end
            return "keep_state_and_data"
          end,
        })
        gen_statem.cast(pid, "block")
        gen_statem.cast(pid, "queued")
        mb.sleep(20)
        mb.send(pid, "go")
        assert.are.same({"ev", "cast", "block"}, recv(tagged("ev")))
        assert.are.same({"ev", "internal", "i1"}, recv(tagged("ev")))
        assert.are.same({"ev", "cast", "i2"}, recv(tagged("ev")))
        assert.are.same({"ev", "cast", "queued"}, recv(tagged("ev")))
      end)
    end)

    it("next_event from init is the first event", function()
      run(function()
        local me = mb.self()
        local pid = start({
          callback_mode = "handle_event_function",
          init = function() return "ok", "s", nil, {{"next_event", "internal", "boot"}} end,
          handle_event = function(etype, content)
            mb.send(me, {"ev", etype, content})
            return "keep_state_and_data"
          end,
        })
        gen_statem.cast(pid, "after")
        assert.are.same({"ev", "internal", "boot"}, recv(tagged("ev")))
        assert.are.same({"ev", "cast", "after"}, recv(tagged("ev")))
      end)
    end)

    it("events inserted with next_event come before postponed events retried on a change of state", function()
      run(function()
        local me = mb.self()
        local pid = start({
          callback_mode = "handle_event_function",
          init = function() return "ok", "wait", nil end,
          handle_event = function(etype, content, state, data)
            if state == "wait" then
              if content == "go" then
                return "next_state", "run", data, {{"next_event", "internal", "inserted"}}
              end
              return "keep_state_and_data", "postpone"
            end
            mb.send(me, {"ev", etype, content})
            return "keep_state_and_data"
          end,
        })
        gen_statem.cast(pid, "p")
        gen_statem.cast(pid, "go")
        assert.are.same({"ev", "internal", "inserted"}, recv(tagged("ev")))
        assert.are.same({"ev", "cast", "p"}, recv(tagged("ev")))
      end)
    end)
  end)

  describe("state enter calls", function()
    local function entering(actions_or_state)
      return {
        callback_mode = {"state_functions", "state_enter"},
        init = function() return "ok", "a", nil end,
        a = function(etype)
          if etype == "enter" then return "keep_state_and_data" end
          return "next_state", "b", nil
        end,
        b = function(etype)
          if etype == "enter" then
            if actions_or_state == "change" then return "next_state", "a", nil end
            return "keep_state_and_data", actions_or_state
          end
          return "keep_state_and_data"
        end,
      }
    end

    it("cannot change the state", function()
      run(function()
        local pid = start(entering("change"))
        local reason = cast_and_down(pid, "go")
        assert.are.equal("bad_state_enter_return_from_state_function", reason[1])
      end)
    end)

    it("cannot postpone", function()
      run(function()
        local pid = start(entering({"postpone"}))
        local reason = cast_and_down(pid, "go")
        assert.are.equal("bad_state_enter_action_from_state_function", reason[1])
      end)
    end)

    it("cannot insert events", function()
      run(function()
        local pid = start(entering({{"next_event", "internal", "x"}}))
        local reason = cast_and_down(pid, "go")
        assert.are.equal("bad_state_enter_action_from_state_function", reason[1])
      end)
    end)

    it("may set timeouts and reply", function()
      run(function()
        local me = mb.self()
        local pid = start({
          callback_mode = {"state_functions", "state_enter"},
          init = function() return "ok", "a", nil end,
          a = function(etype, content, data)
            if etype == "enter" then return "keep_state_and_data" end
            return "next_state", "b", etype[2]
          end,
          b = function(etype, content, from)
            if etype == "enter" then
              return "keep_state_and_data", {{"reply", from, "entered b"}, {"state_timeout", 20, "t"}}
            end
            mb.send(me, {"b", etype, content})
            return "keep_state_and_data"
          end,
        })
        assert.are.equal("entered b", gen_statem.call(pid, "go"))
        assert.are.same({"b", "state_timeout", "t"}, recv(tagged("b")))
      end)
    end)
  end)

  describe("replies", function()
    it("travel as the {\"reply\", from, value} action, one or many", function()
      run(function()
        local pid = start({
          callback_mode = "handle_event_function",
          init = function() return "ok", "s", {} end,
          handle_event = function(etype, content, state, waiting)
            if content == "wait" then
              waiting[#waiting + 1] = etype[2]
              return "keep_state", waiting
            elseif content == "release" then
              local actions = {}
              for i, from in ipairs(waiting) do actions[i] = {"reply", from, i} end
              actions[#actions + 1] = {"reply", etype[2], #waiting}
              return "keep_state", {}, actions
            end
          end,
        })
        local me = mb.self()
        for i = 1, 3 do
          mb.spawn(function() mb.send(me, {"got", gen_statem.call(pid, "wait")}) end)
        end
        mb.sleep(30)
        assert.are.equal(3, gen_statem.call(pid, "release"))
        local got = {}
        for _ = 1, 3 do got[#got + 1] = recv(tagged("got"))[2] end
        table.sort(got)
        assert.are.same({1, 2, 3}, got)
      end)
    end)

    it("gen_statem.reply answers a call later, outside of an action", function()
      run(function()
        local pid = start({
          callback_mode = "handle_event_function",
          init = function() return "ok", "s", nil end,
          handle_event = function(etype, content, state, from)
            if content == "ask" then return "keep_state", etype[2] end
            if content == "answer" then
              gen_statem.reply(from, "late answer")
              return "keep_state", nil
            end
          end,
        })
        local me = mb.self()
        mb.spawn(function() mb.send(me, {"got", gen_statem.call(pid, "ask")}) end)
        mb.sleep(20)
        gen_statem.cast(pid, "answer")
        assert.are.same({"got", "late answer"}, recv(tagged("got")))
      end)
    end)
  end)

  describe("stop and terminate", function()
    local function stopper(owner)
      return {
        callback_mode = "handle_event_function",
        init = function() return "ok", "s", "data0" end,
        handle_event = function(etype, content, state, data)
          if content == "stop" then return "stop", "normal", "data1" end
          if content == "stop_keep" then return "stop", {"shutdown", "bye"} end
          if content == "stop_and_reply" then
            return "stop_and_reply", "normal", {{"reply", etype[2], "bye"}}, "data2"
          end
          if content == "crash" then error("boom") end
          return "keep_state_and_data"
        end,
        terminate = function(reason, state, data)
          mb.send(owner, {"terminate", reason, state, data})
        end,
      }
    end

    it("\"stop\" runs terminate(reason, state, data) and exits with the reason", function()
      run(function()
        local pid = start(stopper(mb.self()))
        local ref = mb.monitor(pid)
        gen_statem.cast(pid, "stop")
        assert.are.same({"terminate", "normal", "s", "data1"}, recv(tagged("terminate")))
        assert.are.equal("normal", recv(function(m) return m[2] == ref end)[5])
      end)
    end)

    it("\"stop\" without data keeps the data", function()
      run(function()
        local pid = start(stopper(mb.self()))
        gen_statem.cast(pid, "stop_keep")
        assert.are.same({"terminate", {"shutdown", "bye"}, "s", "data0"}, recv(tagged("terminate")))
      end)
    end)

    it("\"stop_and_reply\" replies, then terminates", function()
      run(function()
        local pid = start(stopper(mb.self()))
        assert.are.equal("bye", gen_statem.call(pid, "stop_and_reply"))
        assert.are.same({"terminate", "normal", "s", "data2"}, recv(tagged("terminate")))
      end)
    end)

    it("a raising callback runs terminate with {\"error\", message, traceback}", function()
      run(function()
        local pid = start(stopper(mb.self()))
        local ref = mb.monitor(pid)
        gen_statem.cast(pid, "crash")
        local t = recv(tagged("terminate"))
        assert.are.equal("error", t[2][1])
        assert.matches("boom", t[2][2])
        assert.matches("boom", recv(function(m) return m[2] == ref end)[5][2])
      end)
    end)

    it("gen_statem.stop is synchronous and runs terminate", function()
      run(function()
        local pid = start(stopper(mb.self()))
        assert.are.equal("ok", gen_statem.stop(pid, "shutdown"))
        assert.is_false(mb.alive(pid))
        assert.are.same({"terminate", "shutdown", "s", "data0"}, recv(tagged("terminate"), 0))
      end)
    end)

    it("terminate runs when a trapping machine's parent sends an exit signal", function()
      run(function()
        local me = mb.self()
        mb.trap_exit(true)
        local mod = stopper(me)
        local init = mod.init
        mod.init = function(arg)
          mb.trap_exit(true)
          return init(arg)
        end
        local pid = assert(gen_statem.start_link(mod))
        mb.exit(pid, "shutdown")
        assert.are.same({"terminate", "shutdown", "s", "data0"}, recv(tagged("terminate")))
        assert.are.same({"EXIT", pid, "shutdown"}, recv(tagged("EXIT")))
      end)
    end)

    it("a bad return value stops the machine with bad_return_from_state_function", function()
      run(function()
        local pid = start({
          callback_mode = "handle_event_function",
          init = function() return "ok", "s", nil end,
          handle_event = function() return "what" end,
        })
        assert.are.equal("bad_return_from_state_function", cast_and_down(pid, "x")[1])
      end)
    end)

    it("a bad action stops the machine with bad_action_from_state_function", function()
      run(function()
        local pid = start({
          callback_mode = "handle_event_function",
          init = function() return "ok", "s", nil end,
          handle_event = function() return "keep_state_and_data", {{"dance"}} end,
        })
        assert.are.equal("bad_action_from_state_function", cast_and_down(pid, "x")[1])
      end)
    end)
  end)

  describe("start", function()
    local function simple(state)
      return {
        callback_mode = "state_functions",
        init = function(arg)
          if arg == "ignore" then return "ignore" end
          if arg == "stop" then return "stop", "no_way" end
          if arg == "raise" then error("init failed") end
          if arg == "bad" then return "okay" end
          return "ok", "idle", arg
        end,
        idle = function(etype, content, data)
          return "keep_state_and_data", {{"reply", etype[2], data}}
        end,
      }
    end

    it("start returns the pid, and registers a name", function()
      run(function()
        local pid = gen_statem.start(simple(), 7, {name = "statem_a"})
        assert.is_true(mb.is_pid(pid))
        assert.are.equal(pid, mb.whereis("statem_a"))
        assert.are.equal(pid, gen_statem.whereis("statem_a"))
        assert.are.equal(7, gen_statem.call("statem_a", "get"))
        local again, reason = gen_statem.start(simple(), 8, {name = "statem_a"})
        assert.is_nil(again)
        assert.are.same({"already_started", pid}, reason)
      end)
    end)

    it("start_link links the machine to the caller", function()
      run(function()
        local pid = gen_statem.start_link(simple(), 1)
        local linked = false
        for _, p in ipairs(mb.info(mb.self()).links or {}) do if p == pid then linked = true end end
        assert.is_true(linked)
      end)
    end)

    it("init returning \"ignore\" makes start return \"ignore\"", function()
      run(function()
        assert.are.equal("ignore", gen_statem.start(simple(), "ignore"))
      end)
    end)

    it("init returning \"stop\", reason makes start return nil, reason", function()
      run(function()
        local pid, reason = gen_statem.start(simple(), "stop")
        assert.is_nil(pid)
        assert.are.equal("no_way", reason)
      end)
    end)

    it("init raising or returning something else makes start fail", function()
      run(function()
        local pid, reason = gen_statem.start(simple(), "raise")
        assert.is_nil(pid)
        assert.matches("init failed", reason[2])
        pid, reason = gen_statem.start(simple(), "bad")
        assert.is_nil(pid)
        assert.are.equal("bad_return_from_init", reason[1])
      end)
    end)

    it("a bad callback mode makes start fail", function()
      run(function()
        local pid, reason = gen_statem.start({
          callback_mode = "sometimes",
          init = function() return "ok", "s", nil end,
        })
        assert.is_nil(pid)
        assert.are.equal("bad_callback_mode", reason[1])
      end)
    end)

    it("child_spec starts the machine with start_link", function()
      run(function()
        local spec = gen_statem.child_spec(simple(), 3, {id = "m"})
        assert.are.equal("m", spec.id)
        assert.are.same({"moonbeam.gen_statem", "start_link"}, {spec.start[1], spec.start[2]})
      end)
    end)
  end)

  describe("calls and casts", function()
    it("call to an unknown or dead server fails at once with noproc", function()
      run(function()
        local r = exit_of(gen_statem.call, "no_such_statem", "x")
        assert.are.same({"noproc", {"gen_statem", "call", {"no_such_statem", "x"}}}, r)
        local pid = mb.spawn(function() end)
        mb.sleep(10)
        assert.are.equal("noproc", exit_of(gen_statem.call, pid, "x")[1])
      end)
    end)

    it("call fails with the server's reason if it dies during the call", function()
      run(function()
        local pid = start({
          callback_mode = "handle_event_function",
          init = function() return "ok", "s", nil end,
          handle_event = function() return "stop", "went_away" end,
        })
        assert.are.equal("went_away", exit_of(gen_statem.call, pid, "x", 2000)[1])
      end)
    end)

    it("call with a timeout fails with timeout when no reply comes", function()
      run(function()
        local pid = start({
          callback_mode = "handle_event_function",
          init = function() return "ok", "s", nil end,
          handle_event = function() return "keep_state_and_data" end,
        })
        local r = exit_of(gen_statem.call, pid, "x", 30)
        assert.are.same({"timeout", {"gen_statem", "call", {pid, "x"}}}, r)
      end)
    end)

    it("cast returns ok, even to a dead server", function()
      run(function()
        local pid = mb.spawn(function() end)
        mb.sleep(10)
        assert.are.equal("ok", gen_statem.cast(pid, "x"))
        assert.are.equal("ok", gen_statem.cast("nobody_here", "x"))
      end)
    end)
  end)

  describe("bad input", function()
    it("start rejects a module that is neither a name nor a table with init", function()
      run(function()
        assert.has_error(function() gen_statem.start(42) end,
          "gen_statem.start: module must be a module name or a table with an init function, got number")
        assert.has_error(function() gen_statem.start({}, nil, "opts") end)
      end)
    end)

    it("start with an unknown module name fails with the require error", function()
      run(function()
        local pid, reason = gen_statem.start("no.such.statem.module")
        assert.is_nil(pid)
        assert.matches("no.such.statem.module", reason[2])
      end)
    end)

    it("call rejects a bad server reference and a bad timeout", function()
      run(function()
        assert.has_error(function() gen_statem.call(42, "x") end)
        assert.has_error(function() gen_statem.call("x", "x", -5) end)
      end)
    end)
  end)
end)

describe("gen_statem: returns, calling_self, options (issue 8 items 16, 17, 18, 33)", function()
  local function raised(fn)
    local ok, err = pcall(fn)
    assert.is_false(ok, "expected an error")
    assert.are.equal("string", type(err), "expected an error message, got " .. tostring(err))
    return err
  end

  it("a state callback's return without its data, or with an unknown tag, stops the machine at once", function()
    run(function()
      logger.remove_backend("console")
      local function machine(ret)
        return start({
          callback_mode = "handle_event_function",
          init = function() return "ok", "s", 0 end,
          handle_event = function() return table.unpack(ret, 1, ret.n) end,
        })
      end
      for _, ret in ipairs({table.pack("next_state", "t"), table.pack("keep_state"), table.pack("next_stat", "t", 1),
                            table.pack("repeat_state")}) do
        local reason = cast_and_down(machine(ret), "x")
        assert.are.equal("bad_return_from_state_function", reason[1])
      end
      local none, reason = gen_statem.start({callback_mode = "state_functions", init = function() return "ok", "s" end})
      assert.is_nil(none)
      assert.are.same({"bad_return_from_init", "{\"ok\", \"s\"}"}, reason)
    end)
  end)

  it("get_state and call on the calling process fail at once with calling_self", function()
    run(function()
      local t0 = mb.clock()
      assert.are.same({"calling_self", {"gen_statem", "get_state", {mb.self()}}}, exit_of(gen_statem.get_state, mb.self()))
      assert.are.equal("calling_self", exit_of(gen_statem.call, mb.self(), "x")[1])
      assert.is_true(mb.clock() - t0 < 1, "it waited for a timeout")
    end)
  end)

  it("unknown options raise naming the key and the valid ones, at the caller's line", function()
    run(function()
      local M = {callback_mode = "state_functions", init = function() return "ok", "s", 0 end}
      local line = debug.getinfo(1, "l").currentline
      local err = raised(function() gen_statem.start(M, nil, {hibernate_after = 10}) end) -- line + 1
      assert.matches("gen_statem_spec.lua:" .. (line + 1) .. ": gen_statem.start: unknown option 'hibernate_after' "
                     .. "(valid options: name, timeout, scheduler)", err, 1, true)
      assert.matches("gen_statem.child_spec: unknown option 'restarts' (valid options: id, restart, shutdown, name)",
                     raised(function() gen_statem.child_spec(M, nil, {restarts = "temporary"}) end), 1, true)
      assert.matches("gen_statem.child_spec: module 'no.such.statem' not found",
                     raised(function() gen_statem.child_spec("no.such.statem") end), 1, true)
    end)
  end)
end)
