-- A worker pool on a DynamicSupervisor.
--
--   bin/moonbeam examples/worker_pool.lua [--workers N] [--jobs N]
--   (or LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" lua5.4 examples/worker_pool.lua)
--
--   pool.sup  (one_for_one)
--   ├── pool.workers   DynamicSupervisor, max_children = N: the workers
--   └── pool           gen_server: hands jobs to idle workers, queues the rest
--
-- Clients call the pool; it answers later (a deferred reply) when a worker
-- has done the job. A "poison" job crashes its worker: the pool answers that
-- client with an error, and the DynamicSupervisor restarts the worker, which
-- checks in with the pool again. The jobs run in parallel on every scheduler.
local mb = require "moonbeam"
local gen_server = require "moonbeam.gen_server"
local supervisor = require "moonbeam.supervisor"
local dynamic_supervisor = require "moonbeam.dynamic_supervisor"
local logger = require "moonbeam.logger"

local n_workers, n_jobs = 4, 24
do
  local i = 1
  while arg and arg[i] do
    if arg[i] == "--workers" then i = i + 1; n_workers = tonumber(arg[i]) or n_workers
    elseif arg[i] == "--jobs" then i = i + 1; n_jobs = tonumber(arg[i]) or n_jobs
    else io.stderr:write("usage: worker_pool.lua [--workers N] [--jobs N]\n"); os.exit(2) end
    i = i + 1
  end
end

-- ------------------------------------------------------------------ a worker

local Worker = {}

function Worker.init()
  gen_server.cast("pool", {"checkin", mb.self()})
  return "ok", {}
end

local function count_primes(n)
  local count = 0
  for k = 2, n do
    local prime = true
    for d = 2, math.floor(math.sqrt(k)) do
      if k % d == 0 then prime = false; break end
    end
    if prime then count = count + 1 end
  end
  return count
end

function Worker.handle_cast(msg, st)
  if msg[1] == "job" then
    local id, n = msg[2], msg[3]
    if n < 0 then error("job " .. id .. " was poison") end
    gen_server.cast("pool", {"done", mb.self(), {n = n, primes = count_primes(n), scheduler = mb.scheduler()}})
  end
  return "noreply", st
end

-- ------------------------------------------------------------------ the pool

local Pool = {}

function Pool.init()
  -- idle: workers waiting for a job; busy[pid] = {from, id}; queue: jobs waiting
  return "ok", {idle = {}, busy = {}, queue = {}, head = 1, tail = 0, known = {}, restarts = -n_workers}
end

local function dispatch(st)
  while #st.idle > 0 and st.head <= st.tail do
    local job = st.queue[st.head]
    st.queue[st.head] = nil
    st.head = st.head + 1
    local worker = table.remove(st.idle)
    st.busy[worker] = {job.from, job.id}
    gen_server.cast(worker, {"job", job.id, job.n})
  end
end

function Pool.handle_call(req, from, st)
  if req[1] == "run" then
    st.tail = st.tail + 1
    st.queue[st.tail] = {from = from, id = req[2], n = req[3]}
    dispatch(st)
    return "noreply", st -- the reply comes when a worker is done
  elseif req[1] == "stats" then
    return "reply", {idle = #st.idle, waiting = st.tail - st.head + 1, restarts = st.restarts}, st
  end
end

function Pool.handle_cast(msg, st)
  if msg[1] == "checkin" then
    local worker = msg[2]
    if not st.known[worker] then
      st.known[worker] = mb.monitor(worker)
      st.restarts = st.restarts + 1 -- the first n_workers are starts, not restarts
    end
    st.idle[#st.idle + 1] = worker
  elseif msg[1] == "done" then
    local worker, result = msg[2], msg[3]
    local job = st.busy[worker]
    st.busy[worker] = nil
    result.worker = worker
    gen_server.reply(job[1], {"ok", result})
    st.idle[#st.idle + 1] = worker
  end
  dispatch(st)
  return "noreply", st
end

function Pool.handle_info(msg, st)
  if type(msg) == "table" and msg[1] == "DOWN" then
    local worker, reason = msg[4], msg[5]
    st.known[worker] = nil
    for i = #st.idle, 1, -1 do if st.idle[i] == worker then table.remove(st.idle, i) end end
    local job = st.busy[worker]
    if job then
      st.busy[worker] = nil
      local why = type(reason) == "table" and reason[2] or reason
      gen_server.reply(job[1], {"crashed", worker, (tostring(why):gsub("^[^:]*:%d+: ", ""))})
    end
  end
  return "noreply", st
end

-- ------------------------------------------------------------------ main

mb.run(function()
  logger.set_level("none") -- this example prints the crashes itself
  local sup = assert(supervisor.start_link({
    dynamic_supervisor.child_spec({name = "pool.workers", max_children = n_workers,
                                   max_restarts = 100, max_seconds = 1}),
    {id = "pool", start = {"moonbeam.gen_server", "start_link", {Pool, 0, {name = "pool"}}}},
  }, {strategy = "one_for_one", name = "pool.sup"}))

  for _ = 1, n_workers do
    assert(dynamic_supervisor.start_child("pool.workers", gen_server.child_spec(Worker, 0)))
  end
  print(("a pool of %d workers on %d schedulers; one more worker? %s"):format(n_workers, mb.schedulers(),
        select(2, dynamic_supervisor.start_child("pool.workers", gen_server.child_spec(Worker, 0)))))

  -- every client is its own process: they all wait on the pool at once
  local main = mb.self()
  for id = 1, n_jobs do
    local n = (id % 7 == 0) and -1 or math.random(20000, 60000)
    mb.spawn(function()
      local r = gen_server.call("pool", {"run", id, n}, 30000)
      mb.send(main, {"result", id, n, r})
    end)
  end

  local done, crashed, per_worker, per_sched = 0, 0, {}, {}
  for _ = 1, n_jobs do
    local m = mb.receive(function(x) return type(x) == "table" and x[1] == "result" end)
    local id, r = m[2], m[4]
    if r[1] == "ok" then
      done = done + 1
      local res = r[2]
      per_worker[tostring(res.worker)] = (per_worker[tostring(res.worker)] or 0) + 1
      per_sched[res.scheduler] = (per_sched[res.scheduler] or 0) + 1
      print(("job %2d: %5d primes below %d  (worker %s, scheduler %d)"):format(id, res.primes, res.n,
            tostring(res.worker), res.scheduler))
    else
      crashed = crashed + 1
      print(("job %2d: crashed worker %s (%s); the supervisor restarts it"):format(id, tostring(r[2]), r[3]))
    end
  end

  -- a restarted worker checks in asynchronously: give the last one a moment
  local stats
  for _ = 1, 100 do
    stats = gen_server.call("pool", {"stats"})
    if stats.idle == n_workers then break end
    mb.sleep(5)
  end
  local counts = dynamic_supervisor.count_children("pool.workers")
  print(string.rep("-", 64))
  print(("%d jobs: %d done, %d crashed their worker"):format(n_jobs, done, crashed))
  print(("workers: %d running under pool.workers, %d restarts, %d idle now"):format(counts.active,
        stats.restarts, stats.idle))
  local scheds = {}
  for s, k in pairs(per_sched) do scheds[#scheds + 1] = ("scheduler %d: %d"):format(s, k) end
  table.sort(scheds)
  print("jobs per scheduler: " .. table.concat(scheds, ", "))
  supervisor.stop(sup)
end)
