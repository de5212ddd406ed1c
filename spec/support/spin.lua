-- A process body that never yields: `while true do end`. Under ThreadSanitizer
-- (make tsan sets MB_SANITIZER=tsan) asynchronous signals reach a thread only
-- when it enters the sanitizer's runtime, so the preemption signal would wait
-- forever behind a pure Lua loop: there the loop calls os.time() (one libc call
-- per iteration, no yield) so the signal is delivered and the hook still has to
-- preempt a loop that never gives up the scheduler itself.
local M = {}
local tsan = os.getenv("MB_SANITIZER") == "tsan"

function M.spin()
  if tsan then
    while true do local _ = os.time() end
  end
  while true do end
end

return M
