-- bench/run.lua: runs every workload of bench/workloads.lua in its own process
-- and, alternately, the same workload of bench/beam/workloads.erl in its own
-- erl; prints one table (workload, figure, moonbeam, BEAM, unit, schedulers,
-- the ratio, target) and writes it to docs/benchmarks.md with the machine and
-- the command.
-- Usage: lua5.4 bench/run.lua [--quick] [--out docs/benchmarks.md]
local quick, out = false, "docs/benchmarks.md"
local i = 1
while arg[i] do
  if arg[i] == "--quick" then quick = true
  elseif arg[i] == "--out" then i = i + 1; out = arg[i] end
  i = i + 1
end

-- workload, arguments (full size), arguments (quick); S: BEAM's +S for its
-- side of the pair (nil: BEAM's default, one scheduler per CPU), matching the
-- schedulers the Lua workload runs on
local runs = {
  {"spawn", "1000000", "100000", S = 1},
  {"idle", "100000", "20000"},
  {"ring", "1000 1000 1", "1000 100 1", S = 1},
  {"ring", "1000 1000", "1000 100"},
  {"pingpong", "500000", "100000", S = 1},
  {"pingpong", "100000 across", "20000 across"},
  {"pingpong", "100000 default", "20000 default"},
  {"gen_call", "200000", "50000", S = 1},
  {"gen_call", "50000 across", "10000 across"},
  {"gen_call", "50000 default", "10000 default"},
  {"fanout", "10000 100", "10000 20"},
  {"throughput", "1000000 here", "200000 here", S = 1},
  {"throughput", "1000000", "200000"},
  {"multicore", "40000000", "10000000"},
  {"preempt", "200", "50", S = 1},
  {"tree", "100000 10", "100000 10"},
  {"tree", "1000000 10", "300000 10"},
}

-- target per figure (prefix match on "workload|figure"): comparison and value
local targets = {
  {"spawn|", "<=", 1.0},
  {"idle memory|RSS", "<=", 1500},
  {"ring|", "<=", 0.30, sched = 1},
  {"ping-pong|same", "<=", 0.5},
  {"ping-pong|different", "<=", 5},
  {"GenServer.call|same", "<=", 1.5},
  {"pubsub fan-out|", ">=", 5000000},
  {"send throughput|", ">=", 6000000},
  {"multi-core|", ">=", 1.8},
  {"preemption latency|p99", "<=", 5},
  {"spawn tree|", "<=", 1.0},
}

local function target_for(workload, figure, scheds)
  local key = workload .. "|" .. figure
  for _, t in ipairs(targets) do
    if key:sub(1, #t[1]) == t[1] and (not t.sched or tostring(t.sched) == scheds) then
      return t[2], t[3]
    end
  end
end

local function sh(cmd)
  local p = io.popen(cmd)
  local s = p:read("a")
  p:close()
  return s
end

local lua = arg[-1] or "lua5.4"

-- BEAM's side: bench/beam/*.erl compiled into build/beam when erlc is here
local beam_dir = "build/beam"
local have_beam = sh("command -v erlc erl 2>/dev/null"):find("erl") ~= nil
if have_beam then
  os.execute("mkdir -p " .. beam_dir)
  have_beam = os.execute("erlc -o " .. beam_dir .. " bench/beam/workloads.erl bench/beam/bench_echo.erl")
end
if not have_beam then io.stderr:write("no erlc/erl: the BEAM column stays empty (apt-get install erlang-nox)\n") end

local function parse(output, into)
  local got = false
  for line in output:gmatch("[^\n]+") do
    local w, fig, val, unit, sc = line:match("^RESULT\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)$")
    if w then
      got = true
      into[#into + 1] = {w = w, fig = fig, v = tonumber(val), unit = unit, sc = sc}
    end
  end
  return got
end

-- lower is better for times and bytes, higher for rates and speed-ups
local function higher_is_better(unit) return unit:find("/s$") ~= nil or unit == "x" end

local function versus(ours, theirs, unit)
  if not theirs or theirs ~= theirs or theirs == 0 or ours ~= ours or ours == 0 then return "" end
  local r = higher_is_better(unit) and ours / theirs or theirs / ours
  if r >= 1 then return string.format("%.2fx ahead", r) end
  return string.format("%.2fx behind", 1 / r)
end

local rows = {}
for _, r in ipairs(runs) do
  local args = quick and r[3] or r[2]
  -- alternate the two sides of a pair: moonbeam first, then BEAM
  io.stderr:write("running ", r[1], " ", args, "\n")
  local ours = {}
  local output = sh(string.format("%s bench/workloads.lua %s %s 2>&1", lua, r[1], args))
  if not parse(output, ours) then
    ours[1] = {w = r[1], fig = "failed: " .. (output:match("[^\n]*$") or "?"), v = 0 / 0, unit = "", sc = ""}
  end
  local theirs = {}
  if have_beam then
    local out_b = sh(string.format("erl -noshell -pa %s %s -run workloads main %s %s 2>&1",
                                   beam_dir, r.S and ("+S " .. r.S) or "", r[1], args))
    if not parse(out_b, theirs) then io.stderr:write("BEAM ", r[1], " failed: ", out_b, "\n") end
  end
  for k, o in ipairs(ours) do
    local b = theirs[k]
    if b and b.fig ~= o.fig then b = nil end
    local cmp, tv = target_for(o.w, o.fig, o.sc)
    local met = ""
    if cmp then
      local ok = (cmp == "<=" and o.v <= tv) or (cmp == ">=" and o.v >= tv)
      met = string.format("%s %s %s", cmp, tostring(tv), ok and "met" or "NOT met")
    end
    rows[#rows + 1] = {o.w, o.fig, o.v, b and b.v or 0 / 0, o.unit, o.sc, b and b.sc or "",
                       versus(o.v, b and b.v, o.unit), met}
  end
end

local function fmt(v)
  if v ~= v then return "-" end
  if v >= 1e5 then return string.format("%.3g", v) end
  if v >= 100 then return string.format("%.0f", v) end
  return string.format("%.3g", v)
end

local lines = {"| workload | figure | moonbeam | BEAM | unit | schedulers (ours / BEAM) | moonbeam vs BEAM | target |",
               "|---|---|---|---|---|---|---|---|"}
for _, r in ipairs(rows) do
  lines[#lines + 1] = string.format("| %s | %s | %s | %s | %s | %s / %s | %s | %s |",
                                    r[1], r[2], fmt(r[3]), fmt(r[4]), r[5], r[6], r[7], r[8], r[9])
end
local table_md = table.concat(lines, "\n")
print(table_md)

local cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"):gsub("^%s+", ""):gsub("%s+$", "")
local cores = sh("nproc"):gsub("%s+", "")
local date = os.date("!%Y-%m-%d")
local cmdline = "make bench" .. (quick and " BENCH_ARGS=--quick" or "")
if out and out ~= "" then
  local f = assert(io.open(out, "w"))
  f:write("# Benchmarks\n\n")
  f:write(string.format("Measured %s on %s cores (%s) with `%s`", date, cores, cpu, cmdline))
  f:write(" (bench/run.lua runs each workload of bench/workloads.lua in its own lua5.4 process,\n")
  f:write("then the same workload of bench/beam/workloads.erl in its own `erl` (Erlang/OTP ")
  f:write((sh("erl -noshell -eval 'io:put_chars(erlang:system_info(otp_release)), halt().' 2>/dev/null")), "), alternately).\n")
  f:write("Timings drift on these machines: compare ratios from one run.\n\n")
  f:write(table_md, "\n")
  local extra = io.open("bench/NOTES.md")
  if extra then
    f:write("\n", extra:read("a"))
    extra:close()
  end
  f:close()
  io.stderr:write("wrote ", out, "\n")
end
