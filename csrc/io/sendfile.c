/* sendfile.c: see sendfile.h. Invariants: `poll` is initialised only while
 * `watch_fd` >= 0 (a dup of the socket); once `finished` is set no further
 * sendfile(2) runs and the state is freed by the poll handle's close callback
 * (or at once when no poll handle was ever made). */
#include "io/sendfile.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <unistd.h>

struct mb_sendfile {
  uv_poll_t poll;
  uv_loop_t *loop;
  int sock_fd, file_fd, watch_fd;
  int polling, finished;
  int64_t off, left;
  mb_sendfile_done done;
  void *ud;
};

mb_sendfile_t *mb_sendfile_new(uv_loop_t *loop, int sock_fd, int file_fd, int64_t offset,
                               int64_t length, mb_sendfile_done done, void *ud, int *err) {
  mb_sendfile_t *s = calloc(1, sizeof *s);
  if (!s) {
    close(file_fd);
    *err = UV_ENOMEM;
    return NULL;
  }
  s->loop = loop;
  s->sock_fd = sock_fd;
  s->file_fd = file_fd;
  s->watch_fd = -1;
  s->off = offset;
  s->left = length;
  s->done = done;
  s->ud = ud;
  return s;
}

int64_t mb_sendfile_left(const mb_sendfile_t *s) { return s->left; }

static void on_poll_closed(uv_handle_t *h) {
  mb_sendfile_t *s = h->data;
  close(s->watch_fd);
  free(s);
}

/* Ends the transfer: the file is closed, the state goes away. */
static void finish(mb_sendfile_t *s) {
  s->finished = 1;
  close(s->file_fd);
  s->file_fd = -1;
  if (s->watch_fd >= 0) uv_close((uv_handle_t *)&s->poll, on_poll_closed);
  else free(s);
}

static void on_writable(uv_poll_t *h, int status, int events) {
  (void)events;
  mb_sendfile_t *s = h->data;
  if (status < 0) {
    mb_sendfile_done done = s->done;
    void *ud = s->ud;
    finish(s);
    done(ud, status);
    return;
  }
  mb_sendfile_go(s);
}

/* Waits for the socket to take more. Returns 0 or a libuv error. */
static int wait_writable(mb_sendfile_t *s) {
  if (s->watch_fd < 0) {
    int fd = dup(s->sock_fd);
    if (fd < 0) return uv_translate_sys_error(errno);
    int r = uv_poll_init(s->loop, &s->poll, fd);
    if (r) {
      close(fd);
      return r;
    }
    s->watch_fd = fd;
    s->poll.data = s;
  }
  if (!s->polling) {
    int r = uv_poll_start(&s->poll, UV_WRITABLE, on_writable);
    if (r) return r;
    s->polling = 1;
  }
  return 0;
}

void mb_sendfile_go(mb_sendfile_t *s) {
  int err = 0;
  uint64_t slice = 0;
  while (s->left > 0) {
    if (slice >= MB_SENDFILE_SLICE) break; /* let the loop breathe: go on when writable */
    size_t want = s->left > (int64_t)(MB_SENDFILE_SLICE - slice) ? MB_SENDFILE_SLICE - slice
                                                                 : (size_t)s->left;
    off_t off = (off_t)s->off;
    ssize_t n = sendfile(s->sock_fd, s->file_fd, &off, want);
    if (n > 0) {
      s->off += n;
      s->left -= n;
      slice += (uint64_t)n;
      continue;
    }
    if (n == 0) {
      err = MB_SENDFILE_TRUNCATED;
      break;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      slice = MB_SENDFILE_SLICE;
      break;
    }
    err = uv_translate_sys_error(errno);
    break;
  }
  if (!err && s->left > 0) {
    err = wait_writable(s);
    if (!err) return;
  }
  if (s->polling) {
    uv_poll_stop(&s->poll);
    s->polling = 0;
  }
  mb_sendfile_done done = s->done;
  void *ud = s->ud;
  finish(s);
  done(ud, err);
}

void mb_sendfile_cancel(mb_sendfile_t *s) {
  if (s->finished) return;
  if (s->polling) uv_poll_stop(&s->poll);
  s->polling = 0;
  finish(s);
}
