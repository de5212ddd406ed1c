/* file.h: files through uv_fs on the calling scheduler's loop (csrc/io).
 *
 * Every request is made on a scheduler's thread (MB_EINVAL elsewhere) and is
 * answered by one reply message tagged ref (mb_send_reply) to `to`: the term
 * {Ref, Value...} on success, {Ref, nil, Reason} on failure, where Reason is
 * the lower-case errno name ("enoent", "eacces", "emfile") or "eof". The disk
 * work runs on libuv's thread pool; no scheduler waits for the disk.
 *
 * An open file (mb_file_t) is reference-counted: its owner (the Lua handle)
 * holds one reference and each request in flight one more, so the owner may
 * go away at any time; the descriptor is closed with the last reference. Only
 * one request at a time per file (its owner waits for each reply). */
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

/* Streams. */
typedef struct mb_file mb_file_t;

/* A file object, not yet open, with one reference (the caller's). */
mb_file_t *mb_file_new(void);
/* Drops a reference; the last one closes the descriptor if still open. */
void mb_file_release(mb_file_t *f);
/* Closes f's descriptor now with a plain close(2) (no request may be in
 * flight: its owner is not waiting for one). For Lua's __close. */
void mb_file_close_now(mb_file_t *f);
/* 1 while f is open (or being opened), 0 once closed or never opened. */
int mb_file_is_open(const mb_file_t *f);

/* Opens path into f with Lua's io.open modes ("r", "w", "a", "r+", "w+",
 * "a+", "b" ignored, "x": fail if it exists): {Ref, true}. MB_EINVAL for a bad
 * mode or an f already used. */
int mb_file_open(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, mb_file_t *f, const char *path,
                 const char *mode);
/* Reads up to n bytes (n > 0) at the file's position: {Ref, Data}, or
 * {Ref, nil, "eof"} at the end. */
int mb_file_read(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, mb_file_t *f, size_t n);
/* Writes all of data at the position (at the end in append modes): {Ref, true}. */
int mb_file_write(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, mb_file_t *f, const void *data,
                  size_t len);
/* Moves the position: whence 0 set, 1 cur, 2 end: {Ref, NewPosition};
 * {Ref, nil, "einval"} before the start, "espipe" on a pipe. */
int mb_file_seek(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, mb_file_t *f, int whence,
                 int64_t offset);
/* Closes: {Ref, true}. f is closed at once for every later request. */
int mb_file_close(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, mb_file_t *f);

#endif
