--- moonbeam.port: subprocesses as ports (Erlang's spawn_executable ports), and
--- the functions every port has. See docs/subprocess.md.
---
--- A subprocess port sends its owner (the process that spawned it, or the one
--- it was handed to):
---   {"stdout", port, data}       output as it comes (one line a message,
---                                without its "\n", with lines = true)
---   {"stderr", port, data}       the same for stderr (opts.stderr = "message")
---   {"exit_status", port, code}  last, once the program has exited and its
---                                output ended: its exit code, 128 + N if it
---                                was killed by signal N; the port then closes
--- Closing the port, or the exit of its owner, kills a program still running.
local core = require "moonbeam.core"

local M = {}

--- Starts `program` (a path, or a name looked up in PATH) with the strings of
--- `args`. Options: `cwd` (directory), `env` (table: a string sets a variable,
--- false removes it; the rest is inherited), `lines` (one message per line),
--- `stderr` = "message" (default: {"stderr", ...} messages), "stdout" (as
--- stdout messages; their order against stdout's is not kept), "ignore" or
--- "inherit" (this process's stderr). Returns the port, or nil, reason
--- ("enoent" for a program that does not exist, "eacces", "emfile").
---@param program string
---@param args? string[]
---@param opts? {cwd?: string, env?: table<string, string|false>, lines?: boolean, stderr?: string}
---@return userdata|nil port
---@return string? reason
function M.spawn(program, args, opts) return core.subprocess_spawn(program, args, opts) end

--- Writes `data` to the program's stdin; returns once it is written (the
--- caller waits while the pipe is full). nil, "closed" after close_stdin or
--- the port's end; nil, "epipe" if the program no longer reads.
---@return true|nil ok
---@return string? reason
function M.write(port, data) return core.subprocess_write(port, data) end

--- Closes the program's stdin: it reads end of file.
---@return true|nil ok
---@return string? reason
function M.close_stdin(port) return core.subprocess_close_stdin(port) end

--- Sends a signal ("SIGTERM" by default, "SIGKILL", "SIGINT", "SIGHUP",
--- "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGSTOP", "SIGCONT", or a number); the
--- exit_status message follows if it ends the program.
---@return true|nil ok
---@return string? reason "esrch" once the program has exited
function M.kill(port, signal) return core.subprocess_kill(port, signal) end

--- The program's OS process id.
---@return integer|nil pid
---@return string? reason
function M.os_pid(port) return core.subprocess_os_pid(port) end

--- Closes any port (a subprocess is killed if still running); nil, "closed"
--- if it was closed already.
function M.close(port) return core.port_close(port) end

--- Hands the port to `pid`: its messages go there from now on, and its exit
--- closes the port. Only the owner may; nil, "not_owner" / "closed" / "noproc".
function M.controlling_process(port, pid) return core.port_set_owner(port, pid) end

--- {type, owner, id} of an open port, or nil, "closed".
function M.info(port) return core.port_info(port) end

--- Whether `v` is a port.
function M.is_port(v) return core.is_port(v) end

return M
