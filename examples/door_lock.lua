-- A door with a code lock, as a gen_statem (state functions + state enter).
--
--   bin/moonbeam examples/door_lock.lua
--   (or LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" lua5.4 examples/door_lock.lua)
--
--   locked  --right code-->  open  --1 s (state timeout) or "lock"-->  locked
--   locked  --3 wrong codes-->  lockout  --1.5 s (state timeout)-->  locked
--   In "locked", digits typed so far are forgotten after 1 s without a key
--   press (an event timeout: any event cancels it).
--
-- A visitor script drives it with calls; the door tells an observer about
-- every change of state from its state enter calls.
local mb = require "moonbeam"
local gen_statem = require "moonbeam.gen_statem"

local Door = {}

function Door.callback_mode() return "state_functions", "state_enter" end

function Door.init(arg)
  return "ok", "locked", {code = arg.code, input = "", wrong = 0, observer = arg.observer}
end

local function notify(data, ...)
  mb.send(data.observer, {"door", ...})
end

local function is_call(event_type) return type(event_type) == "table" and event_type[1] == "call" end

function Door.locked(event_type, content, data)
  if event_type == "enter" then
    data.input = ""
    notify(data, "locked")
    return "keep_state", data
  elseif is_call(event_type) then
    local from = event_type[2]
    if type(content) == "table" and content[1] == "press" then
      data.input = data.input .. content[2]
      if #data.input < #data.code then
        -- forget a half-typed code after 1 s without a key press
        return "keep_state", data, {{"reply", from, "beep"}, {"timeout", 1000, "forget"}}
      end
      if data.input == data.code then
        data.wrong = 0
        return "next_state", "open", data, {{"reply", from, "click"}}
      end
      data.input, data.wrong = "", data.wrong + 1
      if data.wrong >= 3 then
        data.wrong = 0
        return "next_state", "lockout", data, {{"reply", from, "buzz: third wrong code"}}
      end
      return "keep_state", data, {{"reply", from, "buzz: wrong code " .. data.wrong .. " of 3"}}
    end
    return "keep_state_and_data", {{"reply", from, "locked"}}
  elseif event_type == "timeout" and content == "forget" then
    notify(data, "forgot", data.input)
    data.input = ""
    return "keep_state", data
  end
  return "keep_state_and_data"
end

function Door.open(event_type, content, data)
  if event_type == "enter" then
    notify(data, "open")
    return "keep_state_and_data", {{"state_timeout", 1000, "relock"}}
  elseif event_type == "state_timeout" then
    return "next_state", "locked", data
  elseif is_call(event_type) then
    local from = event_type[2]
    if content == "lock" then return "next_state", "locked", data, {{"reply", from, "locked it"}} end
    return "keep_state_and_data", {{"reply", from, "open"}}
  end
  return "keep_state_and_data"
end

function Door.lockout(event_type, _, data)
  if event_type == "enter" then
    notify(data, "lockout")
    return "keep_state_and_data", {{"state_timeout", 1500, "release"}}
  elseif event_type == "state_timeout" then
    return "next_state", "locked", data
  elseif is_call(event_type) then
    return "keep_state_and_data", {{"reply", event_type[2], "ignored: locked out"}}
  end
  return "keep_state_and_data"
end

mb.run(function()
  local door = assert(gen_statem.start_link(Door, {code = "1234", observer = mb.self()}, {name = "door"}))

  -- prints what the door reported so far
  local function drain(wait_ms)
    while true do
      local m = mb.receive(function(x) return type(x) == "table" and x[1] == "door" end, wait_ms or 0)
      if not m then return end
      if m[2] == "forgot" then print(("   door: forgot \"%s\" (1 s without a key)"):format(m[3]))
      else print("   door: now " .. m[2]) end
      wait_ms = 0
    end
  end

  local function press(keys)
    for d in keys:gmatch("%d") do
      print(("visitor presses %s -> %s"):format(d, gen_statem.call("door", {"press", d})))
      drain()
    end
  end

  local function pause(ms, why)
    print(("visitor waits %.1f s%s"):format(ms / 1000, why and (" (" .. why .. ")") or ""))
    mb.sleep(ms)
    drain()
  end

  drain()
  print("== a wrong code")
  press("9999")
  print("== half a code, then a pause")
  press("12")
  pause(1200, "the event timeout fires")
  print("== the right code: the door opens, then locks itself after 1 s")
  press("1234")
  print("visitor asks: " .. gen_statem.call("door", "status"))
  pause(1200, "the state timeout fires")
  print("== three wrong codes: locked out for 1.5 s")
  press("0000")
  press("1111")
  press("2222")
  print("visitor presses 1 -> " .. gen_statem.call("door", {"press", "1"}))
  pause(1600, "the lockout's state timeout fires")
  print("== the right code, then lock it by hand")
  press("1234")
  print("visitor says lock -> " .. gen_statem.call("door", "lock"))
  drain()
  local state = gen_statem.get_state("door")
  print("final state: " .. tostring(state))
  gen_statem.stop(door)
end)
