/* file.h: files through uv_fs on the calling scheduler's loop (csrc/io).
 *
 * Every request is made on a scheduler's thread (MB_EINVAL elsewhere) and is
 * answered by one reply message tagged ref (mb_send_io_reply) to `to`: the term
 * {Ref, Value...} on success, {Ref, nil, Reason} on failure, where Reason is
 * the lower-case errno name ("enoent", "eacces", "emfile") or "eof". The disk
 * work runs on libuv's thread pool; no scheduler waits for the disk. */
#ifndef MB_IO_FILE_H
#define MB_IO_FILE_H

#include <stddef.h>
#include <stdint.h>
#include "moonbeam.h"

/* Whole-file and directory operations. Replies: read_all {Ref, Data};
 * write_all, rename, remove, mkdir, rmdir {Ref, true}; list {Ref, [Name...]};
 * stat {Ref, #{size, type, mode, mtime, atime, ctime, uid, gid, nlink, ino}}. */
int mb_file_read_all(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, const char *path);
int mb_file_write_all(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, const char *path,
                      const void *data, size_t len, int append);
int mb_file_stat(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, const char *path, int nofollow);
int mb_file_list(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, const char *path);
int mb_file_rename(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, const char *from, const char *dest);
int mb_file_remove(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, const char *path);
int mb_file_mkdir(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, const char *path, int mode);
int mb_file_rmdir(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, const char *path);

/* Streams: an open file is a port of type mb_file_type ("file"), owned by the
 * process that opened it and closed when it exits. Its commands run one at a
 * time in the order they come (later ones wait in the port):
 *   MB_FILE_READ   arg[0] = most bytes (0: "") -> {Data} | {nil, "eof"}
 *   MB_FILE_WRITE  data, len: all of it, at the position (at the end in append
 *                  modes) -> {true}
 *   MB_FILE_SEEK   arg[0] = whence (0 set, 1 cur, 2 end), arg[1] = offset
 *                  -> {NewPosition} | {nil, "einval"} (before the start) |
 *                  {nil, "espipe"} (a pipe or device has no positions)
 *   MB_FILE_READ_LINE  the next line without its "\n" -> {Line} | {nil, "eof"}
 *                  (a last line without "\n" comes whole); on a pipe the bytes
 *                  read past the line are kept for the next read
 *   MB_FILE_CLOSE  closes the port -> {true} once the descriptor is closed
 *                  (or {nil, Reason} from close(2))
 * Closing the port otherwise (mb_port_close, the owner's exit) closes the
 * descriptor once a command in flight is done. */
enum { MB_FILE_READ = 1, MB_FILE_WRITE, MB_FILE_SEEK, MB_FILE_CLOSE, MB_FILE_READ_LINE };
extern const struct mb_port_type mb_file_type;

/* Opens path with Lua's io.open modes ("r", "w", "a", "r+", "w+", "a+"; "b"
 * ignored; "x" after w: fail if it exists) as a port owned by `to`, on the
 * calling scheduler's loop: replies {Ref, Port} or {Ref, nil, Reason}.
 * MB_EINVAL for a bad mode or off a scheduler thread. */
int mb_file_open(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, const char *path, const char *mode);

#endif
