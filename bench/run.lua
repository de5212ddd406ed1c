-- bench/run.lua: runs every workload of bench/workloads.lua in its own process,
-- prints one table (workload, figure, value, unit, schedulers, target) and
-- writes it to docs/benchmarks.md with the machine and the command.
-- Usage: lua5.4 bench/run.lua [--quick] [--out docs/benchmarks.md]
local quick, out = false, "docs/benchmarks.md"
local i = 1
while arg[i] do
  if arg[i] == "--quick" then quick = true
  elseif arg[i] == "--out" then i = i + 1; out = arg[i] end
  i = i + 1
end

-- workload, arguments (full size), arguments (quick)
local runs = {
  {"spawn", "1000000", "100000"},
  {"idle", "100000", "20000"},
  {"ring", "1000 1000 1", "1000 100 1"},
  {"ring", "1000 1000", "1000 100"},
  {"pingpong", "500000", "100000"},
  {"pingpong", "100000 across", "20000 across"},
  {"gen_call", "200000", "50000"},
  {"gen_call", "50000 across", "10000 across"},
  {"fanout", "10000 100", "10000 20"},
  {"throughput", "1000000", "200000"},
  {"multicore", "40000000", "10000000"},
  {"preempt", "200", "50"},
  {"tree", "1000000 10", "100000 10"},
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
local rows = {}
for _, r in ipairs(runs) do
  local args = quick and r[3] or r[2]
  local cmd = string.format("%s bench/workloads.lua %s %s 2>&1", lua, r[1], args)
  io.stderr:write("running ", r[1], " ", args, "\n")
  local output = sh(cmd)
  local got = false
  for line in output:gmatch("[^\n]+") do
    local w, fig, val, unit, sc = line:match("^RESULT\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)$")
    if w then
      got = true
      local cmp, tv = target_for(w, fig, sc)
      local v = tonumber(val)
      local met = ""
      if cmp then
        local ok = (cmp == "<=" and v <= tv) or (cmp == ">=" and v >= tv)
        met = string.format("%s %s %s", cmp, tostring(tv), ok and "met" or "NOT met")
      end
      rows[#rows + 1] = {w, fig, v, unit, sc, met}
    end
  end
  if not got then
    rows[#rows + 1] = {r[1], "failed: " .. (output:match("[^\n]*$") or "?"), 0 / 0, "", "", ""}
  end
end

local function fmt(v)
  if v ~= v then return "-" end
  if v >= 1e5 then return string.format("%.3g", v) end
  if v >= 100 then return string.format("%.0f", v) end
  return string.format("%.3g", v)
end

local lines = {"| workload | figure | value | unit | schedulers | target |", "|---|---|---|---|---|---|"}
for _, r in ipairs(rows) do
  lines[#lines + 1] = string.format("| %s | %s | %s | %s | %s | %s |", r[1], r[2], fmt(r[3]), r[4], r[5], r[6])
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
  f:write(" (bench/run.lua runs each workload of bench/workloads.lua in its own lua5.4 process).\n")
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
