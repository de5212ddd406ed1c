/* file.c: whole-file, directory and stream operations over uv_fs (file.h).
 *
 * A request (req_t) lives from its submission to its reply: its uv_fs_t runs
 * one step at a time on the scheduler's loop (open, fstat, read..., close for a
 * whole-file read), each step's callback starting the next. A failure after
 * the open still closes the descriptor before replying. Callbacks run on the
 * loop's thread, or on the thread that drains the loop when the runtime is
 * freed; they touch no Lua state. */
#include <ctype.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#include "core/scheduler.h"
#include "io/file.h"

struct mb_file {
  atomic_int refs;
  uv_file fd;        /* -1: not open (yet, or any more) */
  int opening;       /* an open is in flight */
  int seekable;      /* regular file or block device: reads and writes at pos */
  int append;
  int64_t pos;
};

typedef enum { OP_READ_ALL, OP_WRITE_ALL, OP_STAT, OP_LIST, OP_RENAME, OP_REMOVE, OP_MKDIR,
               OP_RMDIR, OP_OPEN, OP_OPEN_STAT, OP_READ, OP_WRITE, OP_SEEK_END, OP_CLOSE } op_t;

typedef struct req {
  uv_fs_t fs;
  op_t op;
  mb_runtime_t *rt;
  mb_pid_t to;
  mb_ref_t ref;
  uv_file fd;        /* whole-file ops: the descriptor they opened */
  int err;           /* the first failure (uv code), replied after the close */
  uint8_t *buf;
  size_t len, cap;   /* bytes in buf, bytes allocated */
  size_t done;       /* bytes written so far */
  int64_t offset;    /* seek: the offset from the end */
  mb_file_t *file;   /* stream ops: a reference held until the reply */
} req_t;

/* ---- replies ---- */

static void send_reply(req_t *r, mb_enc_t *e) {
  size_t len;
  uint8_t *b = mb_enc_finish(e, &len);
  if (b) mb_send_reply(r->rt, 0, r->to, r->ref, b, len);
  free(b);
}

static void begin(req_t *r, mb_enc_t *e, uint32_t values) {
  mb_enc_init(e, mb_runtime_nodes(r->rt), 0);
  mb_enc_tuple(e, values + 1);
  mb_enc_ref(e, r->ref);
}

static void reply_reason(req_t *r, const char *reason) {
  mb_enc_t e;
  begin(r, &e, 2);
  mb_enc_atom(&e, "nil", 3);
  mb_enc_binary(&e, reason, strlen(reason));
  send_reply(r, &e);
}

static void reply_error(req_t *r, int uverr) {
  char name[32];
  const char *n = uverr == UV_EOF ? "eof" : uv_err_name(uverr);
  size_t i = 0;
  for (; n[i] && i < sizeof name - 1; i++) name[i] = (char)tolower((unsigned char)n[i]);
  name[i] = 0;
  reply_reason(r, name);
}

static void reply_true(req_t *r) {
  mb_enc_t e;
  begin(r, &e, 1);
  mb_enc_atom(&e, "true", 4);
  send_reply(r, &e);
}

static void reply_int(req_t *r, int64_t v) {
  mb_enc_t e;
  begin(r, &e, 1);
  mb_enc_int(&e, v);
  send_reply(r, &e);
}

static void reply_data(req_t *r) {
  mb_enc_t e;
  begin(r, &e, 1);
  mb_enc_binary(&e, r->buf, r->len);
  send_reply(r, &e);
}

static void key(mb_enc_t *e, const char *k) { mb_enc_binary(e, k, strlen(k)); }

static double secs(uv_timespec_t t) { return (double)t.tv_sec + (double)t.tv_nsec * 1e-9; }

static void reply_stat(req_t *r, const uv_stat_t *st) {
  const char *type = S_ISREG(st->st_mode) ? "file" : S_ISDIR(st->st_mode) ? "directory"
                   : S_ISLNK(st->st_mode) ? "symlink" : S_ISFIFO(st->st_mode) ? "fifo"
                   : S_ISSOCK(st->st_mode) ? "socket" : S_ISCHR(st->st_mode) ? "character_device"
                   : S_ISBLK(st->st_mode) ? "block_device" : "other";
  mb_enc_t e;
  begin(r, &e, 1);
  mb_enc_map(&e, 10);
  key(&e, "size"); mb_enc_int(&e, (int64_t)st->st_size);
  key(&e, "type"); mb_enc_binary(&e, type, strlen(type));
  key(&e, "mode"); mb_enc_int(&e, (int64_t)(st->st_mode & 07777));
  key(&e, "mtime"); mb_enc_float(&e, secs(st->st_mtim));
  key(&e, "atime"); mb_enc_float(&e, secs(st->st_atim));
  key(&e, "ctime"); mb_enc_float(&e, secs(st->st_ctim));
  key(&e, "uid"); mb_enc_int(&e, (int64_t)st->st_uid);
  key(&e, "gid"); mb_enc_int(&e, (int64_t)st->st_gid);
  key(&e, "nlink"); mb_enc_int(&e, (int64_t)st->st_nlink);
  key(&e, "ino"); mb_enc_int(&e, (int64_t)st->st_ino);
  send_reply(r, &e);
}

/* fs->result is the number of entries; scandir_next frees each entry as it
 * moves to the next, so names are encoded as they come. */
static void reply_list(req_t *r) {
  uv_dirent_t ent;
  uint32_t n = (uint32_t)r->fs.result, i = 0;
  mb_enc_t e;
  begin(r, &e, 1);
  if (n) mb_enc_list(&e, n);
  for (; i < n && uv_fs_scandir_next(&r->fs, &ent) != UV_EOF; i++)
    mb_enc_binary(&e, ent.name, strlen(ent.name));
  for (; i < n; i++) mb_enc_binary(&e, "", 0); /* cannot happen: keeps the term whole */
  mb_enc_nil(&e);
  send_reply(r, &e);
}

/* ---- requests ---- */

static uv_loop_t *loop_of(mb_runtime_t *rt) {
  mb_sched_t *s = mb_sched_current();
  return s && s->rt == rt ? &s->loop : NULL;
}

static req_t *new_req(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, op_t op) {
  req_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->op = op;
  r->rt = rt;
  r->to = to;
  r->ref = ref;
  r->fd = -1;
  r->fs.data = r;
  return r;
}

static void free_req(req_t *r) {
  uv_fs_req_cleanup(&r->fs);
  if (r->file) mb_file_release(r->file);
  free(r->buf);
  free(r);
}

/* uv_fs_* returned an error at submission (its callback will not run). */
static int failed(req_t *r, int uverr) {
  r->fs.data = NULL;
  free_req(r);
  return uverr == UV_ENOMEM ? MB_ENOMEM : MB_EINVAL;
}

/* ---- whole-file operations ---- */

static void on_step(uv_fs_t *fs);

static void finish_whole(req_t *r) {
  if (r->err) reply_error(r, r->err);
  else if (r->op == OP_READ_ALL) reply_data(r);
  else reply_true(r);
  free_req(r);
}

/* Closes the descriptor (if open), then replies. */
static void close_then_reply(req_t *r, uv_loop_t *loop) {
  uv_fs_req_cleanup(&r->fs);
  if (r->fd < 0) {
    finish_whole(r);
    return;
  }
  uv_file fd = r->fd;
  r->fd = -1;
  if (uv_fs_close(loop, &r->fs, fd, on_step)) finish_whole(r);
}

static int grow(req_t *r, size_t want) {
  if (want <= r->cap) return 0;
  uint8_t *b = realloc(r->buf, want);
  if (!b) return UV_ENOMEM;
  r->buf = b;
  r->cap = want;
  return 0;
}

static void next_io(req_t *r, uv_loop_t *loop) {
  uv_fs_req_cleanup(&r->fs);
  int e;
  if (r->op == OP_READ_ALL) {
    if (r->len == r->cap && (e = grow(r, r->cap ? 2 * r->cap : 65536))) goto fail;
    uv_buf_t b = uv_buf_init((char *)r->buf + r->len, (unsigned)(r->cap - r->len > 1u << 30 ? 1u << 30 : r->cap - r->len));
    if ((e = uv_fs_read(loop, &r->fs, r->fd, &b, 1, -1, on_step))) goto fail;
  } else {
    if (r->done == r->len) {
      close_then_reply(r, loop);
      return;
    }
    size_t left = r->len - r->done;
    uv_buf_t b = uv_buf_init((char *)r->buf + r->done, (unsigned)(left > 1u << 30 ? 1u << 30 : left));
    if ((e = uv_fs_write(loop, &r->fs, r->fd, &b, 1, -1, on_step))) goto fail;
  }
  return;
fail:
  r->err = e;
  close_then_reply(r, loop);
}

static void on_step(uv_fs_t *fs) {
  req_t *r = fs->data;
  uv_loop_t *loop = fs->loop;
  ssize_t res = fs->result;
  switch (fs->fs_type) {
  case UV_FS_OPEN:
    if (res < 0) {
      r->err = (int)res;
      break;
    }
    r->fd = (uv_file)res;
    if (r->op == OP_READ_ALL) {
      uv_fs_req_cleanup(fs);
      if (uv_fs_fstat(loop, fs, r->fd, on_step)) next_io(r, loop);
    } else {
      next_io(r, loop);
    }
    return;
  case UV_FS_FSTAT:
    if (res == 0 && fs->statbuf.st_size > 0) {
      int e = grow(r, (size_t)fs->statbuf.st_size + 1); /* + 1: the read that sees the end */
      if (e) {
        r->err = e;
        break;
      }
    }
    next_io(r, loop);
    return;
  case UV_FS_READ:
    if (res < 0) r->err = (int)res;
    else if (res > 0) {
      r->len += (size_t)res;
      next_io(r, loop);
      return;
    }
    break; /* the end */
  case UV_FS_WRITE:
    if (res < 0) r->err = (int)res;
    else {
      r->done += (size_t)res;
      next_io(r, loop);
      return;
    }
    break;
  case UV_FS_CLOSE:
    if (res < 0 && !r->err) r->err = (int)res;
    finish_whole(r);
    return;
  default:
    break;
  }
  close_then_reply(r, loop);
}

int mb_file_read_all(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, const char *path) {
  uv_loop_t *loop = loop_of(rt);
  if (!loop) return MB_EINVAL;
  req_t *r = new_req(rt, to, ref, OP_READ_ALL);
  if (!r) return MB_ENOMEM;
  int e = uv_fs_open(loop, &r->fs, path, O_RDONLY | O_CLOEXEC, 0, on_step);
  return e ? failed(r, e) : 0;
}

int mb_file_write_all(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, const char *path,
                      const void *data, size_t len, int append) {
  uv_loop_t *loop = loop_of(rt);
  if (!loop) return MB_EINVAL;
  req_t *r = new_req(rt, to, ref, OP_WRITE_ALL);
  if (!r) return MB_ENOMEM;
  if (len && (!(r->buf = malloc(len)))) {
    free(r);
    return MB_ENOMEM;
  }
  if (len) memcpy(r->buf, data, len);
  r->len = len;
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC);
  int e = uv_fs_open(loop, &r->fs, path, flags, 0666, on_step);
  return e ? failed(r, e) : 0;
}

/* ---- one-step operations ---- */

static void on_single(uv_fs_t *fs) {
  req_t *r = fs->data;
  if (fs->result < 0) reply_error(r, (int)fs->result);
  else if (r->op == OP_STAT) reply_stat(r, &fs->statbuf);
  else if (r->op == OP_LIST) reply_list(r);
  else reply_true(r);
  free_req(r);
}

static req_t *single(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, op_t op, uv_loop_t **loop) {
  *loop = loop_of(rt);
  return *loop ? new_req(rt, to, ref, op) : NULL;
}

#define SINGLE(op, call)                                    \
  uv_loop_t *loop;                                          \
  req_t *r = single(rt, to, ref, op, &loop);                \
  if (!r) return loop ? MB_ENOMEM : MB_EINVAL;              \
  int e = call;                                             \
  return e ? failed(r, e) : 0

int mb_file_stat(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, const char *path, int nofollow) {
  SINGLE(OP_STAT, nofollow ? uv_fs_lstat(loop, &r->fs, path, on_single)
                           : uv_fs_stat(loop, &r->fs, path, on_single));
}

int mb_file_list(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, const char *path) {
  SINGLE(OP_LIST, uv_fs_scandir(loop, &r->fs, path, 0, on_single));
}

int mb_file_rename(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, const char *from, const char *dest) {
  SINGLE(OP_RENAME, uv_fs_rename(loop, &r->fs, from, dest, on_single));
}

int mb_file_remove(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, const char *path) {
  SINGLE(OP_REMOVE, uv_fs_unlink(loop, &r->fs, path, on_single));
}

int mb_file_mkdir(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, const char *path, int mode) {
  SINGLE(OP_MKDIR, uv_fs_mkdir(loop, &r->fs, path, mode, on_single));
}

int mb_file_rmdir(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, const char *path) {
  SINGLE(OP_RMDIR, uv_fs_rmdir(loop, &r->fs, path, on_single));
}

/* ---- streams ---- */

mb_file_t *mb_file_new(void) {
  mb_file_t *f = calloc(1, sizeof *f);
  if (!f) return NULL;
  atomic_init(&f->refs, 1);
  f->fd = -1;
  return f;
}

void mb_file_release(mb_file_t *f) {
  if (!f || atomic_fetch_sub(&f->refs, 1) != 1) return;
  if (f->fd >= 0) close(f->fd); /* a plain close: nothing waits for it */
  free(f);
}

void mb_file_close_now(mb_file_t *f) {
  if (f->fd >= 0 && !f->opening) {
    close(f->fd);
    f->fd = -1;
  }
}

int mb_file_is_open(const mb_file_t *f) { return f->fd >= 0 || f->opening; }

static req_t *stream_req(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, op_t op, mb_file_t *f,
                         uv_loop_t **loop, int *err) {
  *loop = loop_of(rt);
  *err = MB_EINVAL;
  if (!*loop || f->opening || (op == OP_OPEN) != (f->fd < 0)) return NULL;
  req_t *r = new_req(rt, to, ref, op);
  *err = MB_ENOMEM;
  if (!r) return NULL;
  atomic_fetch_add(&f->refs, 1);
  r->file = f;
  return r;
}

static void on_stream(uv_fs_t *fs) {
  req_t *r = fs->data;
  mb_file_t *f = r->file;
  ssize_t res = fs->result;
  switch (r->op) {
  case OP_OPEN:
    f->opening = 0;
    if (res < 0) {
      reply_error(r, (int)res);
      break;
    }
    f->fd = (uv_file)res;
    /* the fstat that follows says whether the file has positions */
    uv_fs_req_cleanup(fs);
    r->op = OP_OPEN_STAT;
    if (uv_fs_fstat(fs->loop, fs, f->fd, on_stream) == 0) return;
    reply_true(r);
    break;
  case OP_OPEN_STAT:
    f->seekable = res == 0 && (S_ISREG(fs->statbuf.st_mode) || S_ISBLK(fs->statbuf.st_mode));
    reply_true(r);
    break;
  case OP_SEEK_END:
    if (res < 0) {
      reply_error(r, (int)res);
    } else if ((int64_t)fs->statbuf.st_size + r->offset < 0) {
      reply_reason(r, "einval");
    } else {
      f->pos = (int64_t)fs->statbuf.st_size + r->offset;
      reply_int(r, f->pos);
    }
    break;
  case OP_READ:
    if (res < 0) reply_error(r, (int)res);
    else if (res == 0) reply_reason(r, "eof");
    else {
      r->len = (size_t)res;
      if (f->seekable) f->pos += res;
      reply_data(r);
    }
    break;
  case OP_WRITE:
    if (res < 0) {
      reply_error(r, (int)res);
      break;
    }
    r->done += (size_t)res;
    if (f->seekable && !f->append) f->pos += res;
    if (r->done < r->len) {
      size_t left = r->len - r->done;
      uv_buf_t b = uv_buf_init((char *)r->buf + r->done, (unsigned)(left > 1u << 30 ? 1u << 30 : left));
      uv_fs_req_cleanup(fs);
      int e = uv_fs_write(fs->loop, fs, f->fd, &b, 1, f->seekable && !f->append ? f->pos : -1, on_stream);
      if (e == 0) return;
      reply_error(r, e);
      break;
    }
    reply_true(r);
    break;
  case OP_CLOSE:
    if (res < 0) reply_error(r, (int)res);
    else reply_true(r);
    break;
  default:
    break;
  }
  free_req(r);
}

/* Lua's io.open modes to open(2) flags; -1 if malformed. */
static int mode_flags(const char *mode, int *append) {
  int flags, plus = 0, excl = 0;
  *append = 0;
  switch (*mode) {
  case 'r': flags = 0; break;
  case 'w': flags = O_CREAT | O_TRUNC; break;
  case 'a': flags = O_CREAT | O_APPEND; *append = 1; break;
  default: return -1;
  }
  for (const char *p = mode + 1; *p; p++) {
    if (*p == '+' && !plus) plus = 1;
    else if (*p == 'x' && *mode == 'w' && !excl) excl = 1;
    else if (*p != 'b') return -1;
  }
  flags |= plus ? O_RDWR : *mode == 'r' ? O_RDONLY : O_WRONLY;
  if (excl) flags |= O_EXCL;
  return flags | O_CLOEXEC;
}

int mb_file_open(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, mb_file_t *f, const char *path,
                 const char *mode) {
  int append, flags = mode_flags(mode, &append);
  if (flags < 0) return MB_EINVAL;
  uv_loop_t *loop;
  int err;
  req_t *r = stream_req(rt, to, ref, OP_OPEN, f, &loop, &err);
  if (!r) return err;
  f->append = append;
  f->pos = 0;
  f->opening = 1;
  int e = uv_fs_open(loop, &r->fs, path, flags, 0666, on_stream);
  if (e) f->opening = 0;
  return e ? failed(r, e) : 0;
}

int mb_file_read(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, mb_file_t *f, size_t n) {
  if (n == 0 || n > (1u << 30)) return MB_EINVAL;
  uv_loop_t *loop;
  int err;
  req_t *r = stream_req(rt, to, ref, OP_READ, f, &loop, &err);
  if (!r) return err;
  if (!(r->buf = malloc(n))) {
    r->fs.data = NULL;
    free_req(r);
    return MB_ENOMEM;
  }
  r->cap = n;
  uv_buf_t b = uv_buf_init((char *)r->buf, (unsigned)n);
  int e = uv_fs_read(loop, &r->fs, f->fd, &b, 1, f->seekable ? f->pos : -1, on_stream);
  return e ? failed(r, e) : 0;
}

int mb_file_write(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, mb_file_t *f, const void *data,
                  size_t len) {
  uv_loop_t *loop;
  int err;
  req_t *r = stream_req(rt, to, ref, OP_WRITE, f, &loop, &err);
  if (!r) return err;
  if (len == 0) { /* nothing to write: answer at once, in order */
    reply_true(r);
    free_req(r);
    return 0;
  }
  if (!(r->buf = malloc(len))) {
    r->fs.data = NULL;
    free_req(r);
    return MB_ENOMEM;
  }
  memcpy(r->buf, data, len);
  r->len = len;
  size_t first = len > 1u << 30 ? 1u << 30 : len;
  uv_buf_t b = uv_buf_init((char *)r->buf, (unsigned)first);
  int e = uv_fs_write(loop, &r->fs, f->fd, &b, 1, f->seekable && !f->append ? f->pos : -1, on_stream);
  return e ? failed(r, e) : 0;
}

int mb_file_seek(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, mb_file_t *f, int whence,
                 int64_t offset) {
  if (whence < 0 || whence > 2) return MB_EINVAL;
  uv_loop_t *loop;
  int err;
  req_t *r = stream_req(rt, to, ref, OP_SEEK_END, f, &loop, &err);
  if (!r) return err;
  if (!f->seekable) {
    reply_reason(r, "espipe");
  } else if (whence == 2) {
    r->offset = offset;
    int e = uv_fs_fstat(loop, &r->fs, f->fd, on_stream);
    return e ? failed(r, e) : 0;
  } else {
    int64_t base = whence == 0 ? 0 : f->pos;
    if (base + offset < 0) {
      reply_reason(r, "einval");
    } else {
      f->pos = base + offset;
      reply_int(r, f->pos);
    }
  }
  r->fs.data = NULL;
  free_req(r);
  return 0;
}

int mb_file_close(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, mb_file_t *f) {
  uv_loop_t *loop;
  int err;
  req_t *r = stream_req(rt, to, ref, OP_CLOSE, f, &loop, &err);
  if (!r) return err;
  uv_file fd = f->fd;
  f->fd = -1; /* closed for every later request from now */
  int e = uv_fs_close(loop, &r->fs, fd, on_stream);
  return e ? failed(r, e) : 0;
}
