-- A supervision tree whose workers crash at random and are restarted, while
-- the logger shows each crash and restart. Ends after a few seconds with a
-- summary (this is `make run`).
--
--   bin/moonbeam examples/supervision_tree.lua [--seconds N] [--forever] [--quiet]
--   (or LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" lua5.4 examples/supervision_tree.lua)
--
--   root (one_for_one)
--   ├── stats      gen_server: counts starts and jobs per worker
--   ├── workers    supervisor, one_for_one: worker_1 .. worker_4 crash at random;
--   │              only the one that crashed is restarted
--   └── pipeline   supervisor, rest_for_one: producer -> consumer; a producer
--                  crash restarts the consumer too, a consumer crash only itself
--
-- Every worker is a gen_server given as a table of functions: the supervisor
-- moves the callbacks into each new process, on whichever scheduler it lands.
local mb = require "moonbeam"
local gen_server = require "moonbeam.gen_server"
local supervisor = require "moonbeam.supervisor"
local logger = require "moonbeam.logger"

local seconds, forever, quiet = 4, false, false
do
  local i = 1
  while arg and arg[i] do
    if arg[i] == "--seconds" then i = i + 1; seconds = tonumber(arg[i]) or seconds
    elseif arg[i] == "--forever" then forever = true
    elseif arg[i] == "--quiet" then quiet = true
    else io.stderr:write("usage: supervision_tree.lua [--seconds N] [--forever] [--quiet]\n"); os.exit(2) end
    i = i + 1
  end
end

-- ------------------------------------------------------------------ stats

local Stats = {}

function Stats.start_link()
  return gen_server.start_link(Stats, nil, {name = "stats"})
end

function Stats.init()
  return "ok", {starts = {}, jobs = {}}
end

function Stats.handle_cast(msg, st)
  local kind, who = msg[1], msg[2]
  st[kind][who] = (st[kind][who] or 0) + 1
  return "noreply", st
end

function Stats.handle_call(msg, _, st)
  if msg == "report" then return "reply", st, st end
end

-- ------------------------------------------------------------------ workers

-- A worker does a job every 40..160 ms; a job fails with probability
-- `crash_rate`, which crashes the worker (an error in its callback).
local Worker = {}

function Worker.start_link(name, crash_rate)
  return gen_server.start_link(Worker, {name = name, crash_rate = crash_rate}, {name = name})
end

function Worker.init(arg)
  gen_server.cast("stats", {"starts", arg.name})
  mb.send_after(math.random(40, 160), mb.self(), "job")
  return "ok", {name = arg.name, crash_rate = arg.crash_rate, done = 0}
end

function Worker.handle_info(msg, st)
  if msg == "job" then
    if math.random() < st.crash_rate then
      error(string.format("%s: job %d went wrong", st.name, st.done + 1))
    end
    st.done = st.done + 1
    gen_server.cast("stats", {"jobs", st.name})
    mb.send_after(math.random(40, 160), mb.self(), "job")
  end
  return "noreply", st
end

-- The pipeline: the producer sends items to the consumer, found by name.
local Producer = {}

function Producer.start_link()
  return gen_server.start_link(Producer, nil, {name = "producer"})
end

function Producer.init()
  gen_server.cast("stats", {"starts", "producer"})
  mb.send_after(50, mb.self(), "produce")
  return "ok", 0
end

function Producer.handle_info(msg, n)
  if msg == "produce" then
    if math.random() < 0.02 then error("producer: out of raw material") end
    n = n + 1
    gen_server.cast("stats", {"jobs", "producer"})
    -- the consumer starts after the producer (rest_for_one order): it may not be up yet
    if mb.whereis("consumer") then gen_server.cast("consumer", {"item", n}) end
    mb.send_after(50, mb.self(), "produce")
  end
  return "noreply", n
end

local Consumer = {}

function Consumer.start_link()
  return gen_server.start_link(Consumer, nil, {name = "consumer"})
end

function Consumer.init()
  gen_server.cast("stats", {"starts", "consumer"})
  return "ok", 0
end

function Consumer.handle_cast(msg, n)
  if msg[1] == "item" then
    if math.random() < 0.02 then error("consumer: could not digest item " .. msg[2]) end
    gen_server.cast("stats", {"jobs", "consumer"})
    return "noreply", n + 1
  end
  return "noreply", n
end

-- ------------------------------------------------------------------ the tree

local WORKERS = {"worker_1", "worker_2", "worker_3", "worker_4"}

local function tree()
  local workers = {}
  for i, name in ipairs(WORKERS) do
    workers[i] = {id = name, start = {Worker, "start_link", {name, 0.01 * i}}}
  end
  return {
    {id = "stats", start = {Stats, "start_link", {}}},
    supervisor.child_spec(workers, {id = "workers", name = "workers", strategy = "one_for_one",
                                    max_restarts = 1000, max_seconds = 1}),
    supervisor.child_spec({
      {id = "producer", start = {Producer, "start_link", {}}},
      {id = "consumer", start = {Consumer, "start_link", {}}},
    }, {id = "pipeline", name = "pipeline", strategy = "rest_for_one", max_restarts = 1000, max_seconds = 1}),
  }
end

-- The logger shows the tree at work: one line per supervisor report (a child
-- terminated and is being restarted), without the crash report and traceback
-- that precede it.
local function tree_backend(_, event)
  if event.kind == "crash_report" then return end
  local msg = event.message or ""
  local first = msg:match("^[^\n]*")
  local err = msg:match("\n%*%* %(%a+%) ([^\n]*)")
  if err then err = err:gsub("^[^:]*:%d+: ", "") end
  local child, sup = first:match("^Child (%S+) of Supervisor (%S+) terminated")
  local line
  if child then
    line = string.format("%s: %s crashed (%s), restarting it%s", sup, child, err or "?",
                         child == "producer" and " and the consumer (rest_for_one)" or "")
  else
    line = first .. (err and (": " .. err) or "")
  end
  io.stderr:write(os.date("%H:%M:%S ", event.time), "[", event.level, "] ", line, "\n")
end

mb.run(function()
  logger.remove_backend("console")
  if not quiet then logger.add_backend("tree", tree_backend) end
  local started = os.time()
  local root = assert(supervisor.start_link(tree(), {strategy = "one_for_one", name = "root"}))
  print(string.format("supervision tree up on %d schedulers: root -> stats, workers (%d), pipeline",
                      mb.schedulers(), #WORKERS))
  if forever then
    print("running until Ctrl-C (SIGINT) or SIGTERM")
    mb.on_signal("SIGINT")
    mb.on_signal("SIGTERM")
    mb.receive(function(m) return type(m) == "table" and m[1] == "signal" end)
  else
    mb.sleep(seconds * 1000)
  end

  local st = gen_server.call("stats", "report")
  supervisor.stop(root)
  logger.flush()

  print(string.rep("-", 64))
  print(string.format("after %d s:", os.time() - started))
  print(string.format("%-10s %6s %10s", "process", "jobs", "restarts"))
  local total_restarts, total_jobs = 0, 0
  local names = {table.unpack(WORKERS)}
  names[#names + 1] = "producer"
  names[#names + 1] = "consumer"
  for _, name in ipairs(names) do
    local restarts = math.max((st.starts[name] or 1) - 1, 0)
    total_restarts = total_restarts + restarts
    total_jobs = total_jobs + (st.jobs[name] or 0)
    print(string.format("%-10s %6d %10d", name, st.jobs[name] or 0, restarts))
  end
  print(string.format("%-10s %6d %10d", "total", total_jobs, total_restarts))
  print(string.format("the consumer restarted %d times: its own crashes, and each producer crash (rest_for_one)",
                      math.max((st.starts.consumer or 1) - 1, 0)))
  print("the tree was stopped in reverse order: pipeline, workers, stats")
end)
