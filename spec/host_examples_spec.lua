-- spec/host_examples_spec.lua: examples/host/game.c (a C host stepping the
-- runtime each frame while Lua processes on every scheduler report back) is
-- built by `make examples` and run briefly here, so it cannot rot.

-- the build directory holding examples/game: the work tree's build/ (make
-- check builds the examples there even when the specs load moonbeam from an
-- installed rock, as .ci/run does), else where package.cpath finds core.so
local function build_dir()
  local dirs = {os.getenv("MB_BUILD_DIR") or "build"}
  for tmpl in package.cpath:gmatch("[^;]+") do
    dirs[#dirs + 1] = tmpl:match("^(.*)/%?%.so$")
  end
  for _, dir in ipairs(dirs) do
    local f = io.open(dir .. "/examples/game", "rb")
    if f then f:close() return dir end
  end
  return "build"
end

local function run(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  return out, tonumber(out:match("rc=(%d+)%s*$"))
end

describe("examples/host/game.c", function()
  local game = build_dir() .. "/examples/game"

  it("runs frames while every entity answers every tick, and shuts down", function()
    local out, rc = run(game .. " 500 20 2000")
    assert.are.equal(0, rc, out)
    assert.matches("500 entities on %d+ schedulers ready", out)
    assert.matches("20 frames, budget 2000 us, entities on every scheduler: mb_runtime_step p50 %d+ us, p99 %d+ us", out)
    assert.matches("10000 of 10000 reports", out)
    assert.matches(", 0 malformed", out)
  end)

  it("keeps the entities off the host's scheduler when asked", function()
    local out, rc = run(game .. " 300 10 2000 off-host")
    assert.are.equal(0, rc, out)
    assert.matches("entities off the host scheduler", out)
    assert.matches("3000 of 3000 reports", out)
  end)

  it("refuses bad arguments", function()
    local out, rc = run(game .. " 0 10")
    assert.are.equal(2, rc, out)
    assert.matches("usage: game", out)
  end)
end)
