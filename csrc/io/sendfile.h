/* sendfile.h: a file's byte range sent to a non-blocking socket with
 * sendfile(2), driven by the socket's uv loop (used by tcp.c).
 *
 * The file is opened by the caller (so a file renamed or deleted while it is
 * sent still sends what was opened). mb_sendfile_start sends what the kernel
 * takes at once; when the socket's buffer is full it watches a dup() of the
 * socket's descriptor with uv_poll for writability (libuv's own watcher of the
 * socket stays as it is) and goes on from there. Each wake-up sends at most
 * MB_SENDFILE_SLICE bytes, so one large file never holds the loop for long.
 * The bytes in flight are only the kernel's socket buffer: a client that stops
 * reading costs no memory here.
 *
 * `done` is called exactly once, on the loop thread, unless the transfer is
 * cancelled first: err 0 (all sent), MB_SENDFILE_TRUNCATED (the file ended
 * before the range did: it shrank while being sent), or a libuv error. The
 * state frees itself after `done` or cancel (its poll handle's close
 * callback); it closes the file descriptor. */
#ifndef MB_IO_SENDFILE_H
#define MB_IO_SENDFILE_H

#include <stdint.h>
#include <uv.h>

#define MB_SENDFILE_SLICE (4u << 20)
#define MB_SENDFILE_TRUNCATED (-100000)

typedef struct mb_sendfile mb_sendfile_t;
typedef void (*mb_sendfile_done)(void *ud, int err);

/* A transfer of file_fd[offset, offset+length) to sock_fd. file_fd belongs to
 * the transfer from this call on (closed on failure too); sock_fd stays the
 * caller's (a dup is watched). Nothing is sent and done is not called until
 * mb_sendfile_go. NULL with *err (a libuv error) on failure. */
mb_sendfile_t *mb_sendfile_new(uv_loop_t *loop, int sock_fd, int file_fd, int64_t offset,
                               int64_t length, mb_sendfile_done done, void *ud, int *err);
/* Sends what the socket takes now and, if more is left, waits for
 * writability. May call done (and then the transfer is gone). */
void mb_sendfile_go(mb_sendfile_t *s);
/* Stops the transfer; done is not called. */
void mb_sendfile_cancel(mb_sendfile_t *s);
/* Bytes still to send. */
int64_t mb_sendfile_left(const mb_sendfile_t *s);

#endif
