--- moonbeam.file: files and directories through libuv (uv_fs) on the caller's
--- scheduler loop, with Erlang's file module's names: read_file/write_file for
--- whole files, open/read/write/seek/close for streams (an open file is a port
--- owned by its opener). Each call waits for the disk as a receive waits for a
--- message: the calling process yields, and its scheduler runs the others.
--- Failures return `nil, reason` with the errno name in lower case ("enoent",
--- "eacces", "eexist", "enotdir", "emfile"); misuse raises. Only processes may
--- call these. See docs/file.md.
local core = require "moonbeam.core"

local M = {}

--- The whole content of a file.
---@param path string
---@return string|nil data
---@return string? reason
function M.read_file(path) return core.file_read(path) end

--- Replaces the file's content with `data` (creating it, mode 0666 less the
--- umask); `{append = true}` adds to its end instead.
---@param path string
---@param data string
---@param opts? {append?: boolean}
---@return true|nil ok
---@return string? reason
function M.write_file(path, data, opts)
  return core.file_write(path, data, opts ~= nil and opts.append)
end

--- Information about a file: size, type ("file", "directory", "symlink",
--- "fifo", "socket", "character_device", "block_device"), mode (permission
--- bits), mtime, atime, ctime (seconds, fractional), uid, gid, nlink, ino.
--- `{link = true}` describes a symbolic link itself rather than its target.
---@param path string
---@param opts? {link?: boolean}
---@return table|nil info
---@return string? reason
function M.stat(path, opts)
  return core.file_stat(path, opts ~= nil and opts.link)
end

--- The names in a directory (not "." nor ".."), sorted.
---@param path string
---@return string[]|nil names
---@return string? reason
function M.list(path)
  local names, err = core.file_list(path)
  if names then table.sort(names) end
  return names, err
end

--- Renames (moves) a file or directory, replacing `dest` if it is a file.
---@return true|nil ok
---@return string? reason
function M.rename(from, dest) return core.file_rename(from, dest) end

--- Removes a file (not a directory: see rmdir).
---@return true|nil ok
---@return string? reason
function M.remove(path) return core.file_remove(path) end

--- Makes a directory (mode 0777 less the umask by default); its parent must exist.
---@param path string
---@param mode? integer
---@return true|nil ok
---@return string? reason
function M.mkdir(path, mode) return core.file_mkdir(path, mode) end

--- Removes an empty directory.
---@return true|nil ok
---@return string? reason
function M.rmdir(path) return core.file_rmdir(path) end

--- Opens a stream with io.open's modes ("r" by default, "w", "a", "r+", "w+",
--- "a+"; "b" is ignored; "wx" fails with "eexist" if the file exists). The
--- stream is a port owned by the caller: it closes when the caller exits (or
--- hands it over with moonbeam.port.controlling_process and the new owner exits).
---@param path string
---@param mode? string
---@return userdata|nil stream
---@return string? reason
function M.open(path, mode) return core.file_open(path, mode) end

--- Reads up to `n` bytes at the stream's position: nil, "eof" at the end ("" for n = 0).
---@return string|nil data
---@return string? reason
function M.read(stream, n) return core.file_sread(stream, n) end

--- Reads the next line, without its "\n" (a last line with no "\n" comes
--- whole): nil, "eof" at the end.
---@return string|nil line
---@return string? reason
function M.read_line(stream) return core.file_sreadline(stream) end

--- Iterates over the stream's lines from its position (as io.lines; stops at
--- the end, raises on an error).
---@return fun(): string?
function M.lines(stream)
  return function()
    local line, err = core.file_sreadline(stream)
    if line then return line end
    if err ~= "eof" then error("file.lines: " .. tostring(err), 2) end
    return nil
  end
end

--- Writes all of `data` at the position (at the end in append modes).
---@return true|nil ok
---@return string? reason
function M.write(stream, data) return core.file_swrite(stream, data) end

--- Moves the position: whence "set", "cur" (default) or "end", plus offset
--- (default 0); returns the new position. nil, "einval" before the start,
--- nil, "espipe" on a pipe or device.
---@param whence? "set"|"cur"|"end"
---@param offset? integer
---@return integer|nil position
---@return string? reason
function M.seek(stream, whence, offset) return core.file_sseek(stream, whence, offset) end

--- Closes the stream, after the commands sent before; returns once the
--- descriptor is closed (nil, reason if close(2) failed; nil, "closed" if it
--- was closed already).
---@return true|nil ok
---@return string? reason
function M.close(stream) return core.file_sclose(stream) end

return M
