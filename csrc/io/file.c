/* file.c: whole-file, directory and stream operations over uv_fs (file.h).
 *
 * A request (req_t) lives from its submission to its reply. A one-step
 * operation (stat, rename...) is one asynchronous uv_fs call on the
 * scheduler's loop; a whole-file read or write is one job on libuv's thread
 * pool running the synchronous uv_fs calls in turn (a failure after the open
 * still closes the descriptor). Streams are ports (below). Callbacks run on
 * the loop's thread, or on the thread that drains the loop when the runtime is
 * freed; they touch no Lua state. */
#include <ctype.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#include "core/scheduler.h"
#include "io/file.h"
#include "io/port.h"

typedef enum { OP_READ_ALL, OP_WRITE_ALL, OP_STAT, OP_LIST, OP_RENAME, OP_REMOVE, OP_MKDIR,
               OP_RMDIR } op_t;

typedef struct req {
  uv_fs_t fs;
  uv_work_t work;    /* whole-file ops */
  char *path;
  op_t op;
  mb_runtime_t *rt;
  mb_pid_t to;
  mb_ref_t ref;
  int err;           /* the first failure (uv code), replied after the close */
  uint8_t *buf;
  size_t len, cap;   /* bytes in buf, bytes allocated */
  size_t done;       /* bytes written so far */
} req_t;

/* ---- replies ---- */

static void send_reply(req_t *r, mb_enc_t *e) {
  size_t len;
  uint8_t *b = mb_enc_finish(e, &len);
  if (b) mb_send_io_reply(r->rt, r->to, r->ref, b, len);
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
  r->fs.data = r;
  return r;
}

static void free_req(req_t *r) {
  uv_fs_req_cleanup(&r->fs);
  free(r->buf);
  free(r);
}

/* uv_fs_* returned an error at submission (its callback will not run). */
static int failed(req_t *r, int uverr) {
  r->fs.data = NULL;
  free_req(r);
  return uverr == UV_ENOMEM ? MB_ENOMEM : MB_EINVAL;
}

/* ---- whole-file operations ----
 *
 * One job on libuv's thread pool each (uv_queue_work): the open, fstat,
 * reads or writes and close run there one after the other as synchronous
 * uv_fs calls, and the loop thread only sends the reply: one round trip
 * through the pool instead of one a step. */

static int grow(req_t *r, size_t want) {
  if (want <= r->cap) return 0;
  uint8_t *b = realloc(r->buf, want);
  if (!b) return UV_ENOMEM;
  r->buf = b;
  r->cap = want;
  return 0;
}

static void whole_work(uv_work_t *w) {
  req_t *r = w->data;
  uv_fs_t fs;
  int flags = r->op == OP_READ_ALL ? O_RDONLY | O_CLOEXEC
            : O_WRONLY | O_CREAT | O_CLOEXEC | (r->done ? O_APPEND : O_TRUNC);
  r->done = 0;
  int fd = uv_fs_open(NULL, &fs, r->path, flags, 0666, NULL);
  uv_fs_req_cleanup(&fs);
  if (fd < 0) {
    r->err = fd;
    return;
  }
  int e = 0;
  if (r->op == OP_READ_ALL) {
    if (uv_fs_fstat(NULL, &fs, fd, NULL) == 0 && fs.statbuf.st_size > 0)
      e = grow(r, (size_t)fs.statbuf.st_size + 1); /* + 1: the read that sees the end */
    uv_fs_req_cleanup(&fs);
    while (!e) {
      if (r->len == r->cap && (e = grow(r, r->cap ? 2 * r->cap : 65536))) break;
      size_t room = r->cap - r->len;
      uv_buf_t b = uv_buf_init((char *)r->buf + r->len, (unsigned)(room > 1u << 30 ? 1u << 30 : room));
      ssize_t n = uv_fs_read(NULL, &fs, fd, &b, 1, -1, NULL);
      uv_fs_req_cleanup(&fs);
      if (n < 0) e = (int)n;
      else if (n == 0) break;
      else r->len += (size_t)n;
    }
  } else {
    while (!e && r->done < r->len) {
      size_t left = r->len - r->done;
      uv_buf_t b = uv_buf_init((char *)r->buf + r->done, (unsigned)(left > 1u << 30 ? 1u << 30 : left));
      ssize_t n = uv_fs_write(NULL, &fs, fd, &b, 1, -1, NULL);
      uv_fs_req_cleanup(&fs);
      if (n < 0) e = (int)n;
      else r->done += (size_t)n;
    }
  }
  int c = uv_fs_close(NULL, &fs, fd, NULL);
  uv_fs_req_cleanup(&fs);
  r->err = e ? e : c < 0 ? c : 0;
}

static void whole_done(uv_work_t *w, int status) {
  req_t *r = w->data;
  if (status < 0) r->err = status;
  if (r->err) reply_error(r, r->err);
  else if (r->op == OP_READ_ALL) reply_data(r);
  else reply_true(r);
  free(r->buf);
  free(r->path);
  free(r);
}

static int whole(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, op_t op, const char *path,
                 const void *data, size_t len, int append) {
  uv_loop_t *loop = loop_of(rt);
  if (!loop) return MB_EINVAL;
  req_t *r = new_req(rt, to, ref, op);
  if (!r) return MB_ENOMEM;
  r->path = strdup(path);
  if (!r->path || (len && !(r->buf = malloc(len)))) {
    free(r->path);
    free(r);
    return MB_ENOMEM;
  }
  if (len) memcpy(r->buf, data, len);
  r->len = len;
  r->done = (size_t)append; /* the work reads it as the append flag, then counts bytes in it */
  r->work.data = r;
  if (uv_queue_work(loop, &r->work, whole_work, whole_done)) {
    free(r->buf);
    free(r->path);
    free(r);
    return MB_EINVAL;
  }
  return 0;
}

int mb_file_read_all(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, const char *path) {
  return whole(rt, to, ref, OP_READ_ALL, path, NULL, 0, 0);
}

int mb_file_write_all(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, const char *path,
                      const void *data, size_t len, int append) {
  return whole(rt, to, ref, OP_WRITE_ALL, path, data, len, append);
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

/* ---- streams: the file port ----
 *
 * One uv_fs_t per port and one request in flight at a time: commands that come
 * while one runs wait in the port's queue, in order. The port's close fails
 * the waiting ones, lets the running one finish, then closes the descriptor;
 * the close callback drops the open reference. */

typedef struct fport {
  mb_port_t base;            /* first: the port */
  uv_fs_t fs;
  uv_file fd;
  int seekable, append;
  int64_t pos;
  mb_port_cmd_t *cur;        /* the command in flight */
  mb_port_cmd_t *qhead, **qtail;
  int closing;
  int opening;               /* the open (and its fstat) is in flight */
  int close_started;         /* the descriptor's close was issued */
  mb_port_cmd_t *close_cmd;  /* MB_FILE_CLOSE: answered once the descriptor is closed */
  char *rbuf;                /* no positions: bytes read_line read past its line */
  size_t rlen;
  /* the open, before the port is listed: who asked */
  mb_pid_t opener;
  mb_ref_t open_ref;
  uv_loop_t *loop;
} fport_t;

static void fp_start_next(fport_t *fp);

/* read_line's bytes so far (c->tdata; one allocation, freed with free()). */
typedef struct line_acc {
  size_t len, cap;
  char data[];
} line_acc_t;
#define LINE_CHUNK 4096

static void res_values(mb_port_cmd_t *c, mb_runtime_t *rt) {
  mb_enc_discard(&c->res);
  mb_enc_init(&c->res, mb_runtime_nodes(rt), mb_msg_prefix());
}

static void res_uv_error(mb_port_cmd_t *c, int uverr) {
  char buf[32];
  mb_port_res_error(c, uverr == UV_EOF ? "eof" : mb_port_errname(uverr, buf, sizeof buf));
}

static void fp_do_close(fport_t *fp);

/* The running command is answered: reply, then the next or the close. */
static void fp_done(fport_t *fp) {
  mb_port_cmd_t *c = fp->cur;
  fp->cur = NULL;
  free(c->tdata);
  c->tdata = NULL;
  mb_port_reply(c);
  if (fp->closing) fp_do_close(fp);
  else fp_start_next(fp);
}

static int fp_line_more(fport_t *fp, mb_port_cmd_t *c);

static void on_fp(uv_fs_t *fs) {
  fport_t *fp = fs->data;
  mb_port_cmd_t *c = fp->cur;
  ssize_t res = fs->result;
  switch (c->op) {
  case MB_FILE_READ:
    if (res < 0) res_uv_error(c, (int)res);
    else if (res == 0) mb_port_res_error(c, "eof");
    else {
      if (fp->seekable) fp->pos += res;
      res_values(c, fp->base.rt);
      mb_enc_tuple(&c->res, 1);
      mb_enc_binary(&c->res, c->tdata, (size_t)res);
    }
    break;
  case MB_FILE_WRITE:
    if (res < 0) {
      res_uv_error(c, (int)res);
      break;
    }
    c->arg[1] += res; /* bytes written so far */
    if (fp->seekable && !fp->append) fp->pos += res;
    if ((size_t)c->arg[1] < c->len) {
      size_t left = c->len - (size_t)c->arg[1];
      uv_buf_t b = uv_buf_init((char *)c->data + c->arg[1], (unsigned)(left > 1u << 30 ? 1u << 30 : left));
      uv_fs_req_cleanup(fs);
      int e = uv_fs_write(fs->loop, fs, fp->fd, &b, 1, fp->seekable && !fp->append ? fp->pos : -1, on_fp);
      if (e == 0) return;
      res_uv_error(c, e);
      break;
    }
    mb_port_res_ok(c);
    break;
  case MB_FILE_READ_LINE: {
    line_acc_t *a = c->tdata;
    if (res < 0) {
      res_uv_error(c, (int)res);
      break;
    }
    if (res == 0) { /* the end: what there is is the last line */
      if (a->len == 0) {
        mb_port_res_error(c, "eof");
        break;
      }
      if (fp->seekable) fp->pos += (int64_t)a->len;
      res_values(c, fp->base.rt);
      mb_enc_tuple(&c->res, 1);
      mb_enc_binary(&c->res, a->data, a->len);
      break;
    }
    size_t from = a->len;
    a->len += (size_t)res;
    char *nl = memchr(a->data + from, '\n', a->len - from);
    if (!nl) {
      uv_fs_req_cleanup(fs);
      if (fp_line_more(fp, c) == 0) return;
      res_uv_error(c, UV_ENOMEM);
      break;
    }
    size_t line = (size_t)(nl - a->data);
    if (fp->seekable) {
      fp->pos += (int64_t)line + 1;
    } else if (a->len > line + 1) { /* keep what follows for the next read */
      fp->rlen = a->len - line - 1;
      fp->rbuf = malloc(fp->rlen);
      if (fp->rbuf) memcpy(fp->rbuf, nl + 1, fp->rlen);
      else fp->rlen = 0;
    }
    res_values(c, fp->base.rt);
    mb_enc_tuple(&c->res, 1);
    mb_enc_binary(&c->res, a->data, line);
    break;
  }
  case MB_FILE_SEEK: /* "end": fstat done */
    if (res < 0) {
      res_uv_error(c, (int)res);
    } else if ((int64_t)fs->statbuf.st_size + c->arg[1] < 0) {
      mb_port_res_error(c, "einval");
    } else {
      fp->pos = (int64_t)fs->statbuf.st_size + c->arg[1];
      res_values(c, fp->base.rt);
      mb_enc_tuple(&c->res, 1);
      mb_enc_int(&c->res, fp->pos);
    }
    break;
  default:
    mb_port_res_error(c, "einval");
    break;
  }
  uv_fs_req_cleanup(fs);
  fp_done(fp);
}

/* read_line: reads the next chunk after what c holds; 0 or a uv error. */
static int fp_line_more(fport_t *fp, mb_port_cmd_t *c) {
  line_acc_t *a = c->tdata;
  if (a->cap - a->len < LINE_CHUNK) {
    if (a->cap > (1u << 30)) return UV_ENOMEM;
    line_acc_t *b = realloc(a, sizeof *a + 2 * a->cap);
    if (!b) return UV_ENOMEM;
    b->cap = 2 * b->cap;
    c->tdata = a = b;
  }
  uv_buf_t buf = uv_buf_init(a->data + a->len, LINE_CHUNK);
  return uv_fs_read(fp->loop, &fp->fs, fp->fd, &buf, 1, fp->seekable ? fp->pos + (int64_t)a->len : -1, on_fp);
}

/* Starts c; MB_PORT_DONE when it is answered already (in c->res). */
static int fp_start(fport_t *fp, mb_port_cmd_t *c) {
  uv_loop_t *loop = fp->loop;
  int e = 0;
  switch (c->op) {
  case MB_FILE_READ: {
    size_t n = (size_t)c->arg[0];
    if (n == 0) {
      res_values(c, fp->base.rt);
      mb_enc_tuple(&c->res, 1);
      mb_enc_binary(&c->res, "", 0);
      return MB_PORT_DONE;
    }
    if (fp->rlen) { /* read ahead by read_line: those bytes come first */
      size_t k = n < fp->rlen ? n : fp->rlen;
      res_values(c, fp->base.rt);
      mb_enc_tuple(&c->res, 1);
      mb_enc_binary(&c->res, fp->rbuf, k);
      memmove(fp->rbuf, fp->rbuf + k, fp->rlen - k);
      fp->rlen -= k;
      return MB_PORT_DONE;
    }
    if (!(c->tdata = malloc(n))) {
      mb_port_res_error(c, "enomem");
      return MB_PORT_DONE;
    }
    uv_buf_t b = uv_buf_init(c->tdata, (unsigned)n);
    e = uv_fs_read(loop, &fp->fs, fp->fd, &b, 1, fp->seekable ? fp->pos : -1, on_fp);
    break;
  }
  case MB_FILE_WRITE: {
    if (c->len == 0) {
      mb_port_res_ok(c);
      return MB_PORT_DONE;
    }
    if (mb_port_cmd_own(c)) {
      mb_port_res_error(c, "enomem");
      return MB_PORT_DONE;
    }
    c->arg[1] = 0;
    size_t first = c->len > 1u << 30 ? 1u << 30 : c->len;
    uv_buf_t b = uv_buf_init((char *)c->data, (unsigned)first);
    e = uv_fs_write(loop, &fp->fs, fp->fd, &b, 1, fp->seekable && !fp->append ? fp->pos : -1, on_fp);
    break;
  }
  case MB_FILE_READ_LINE: {
    size_t have = fp->rlen;
    line_acc_t *a = malloc(sizeof *a + 2 * LINE_CHUNK + have);
    if (!a) {
      mb_port_res_error(c, "enomem");
      return MB_PORT_DONE;
    }
    a->cap = 2 * LINE_CHUNK + have;
    a->len = have;
    if (have) memcpy(a->data, fp->rbuf, have);
    free(fp->rbuf);
    fp->rbuf = NULL;
    fp->rlen = 0;
    c->tdata = a;
    char *nl = have ? memchr(a->data, '\n', have) : NULL;
    if (nl) { /* a whole line was read ahead already */
      size_t line = (size_t)(nl - a->data);
      if (have > line + 1 && (fp->rbuf = malloc(have - line - 1))) {
        fp->rlen = have - line - 1;
        memcpy(fp->rbuf, nl + 1, fp->rlen);
      }
      res_values(c, fp->base.rt);
      mb_enc_tuple(&c->res, 1);
      mb_enc_binary(&c->res, a->data, line);
      free(c->tdata);
      c->tdata = NULL;
      return MB_PORT_DONE;
    }
    e = fp_line_more(fp, c);
    break;
  }
  case MB_FILE_CLOSE:
    /* the port closes now (later commands get "closed"); the answer waits for
     * the descriptor's close, so its error (EIO...) is seen and the descriptor
     * is free when the caller goes on */
    fp->close_cmd = c;
    mb_port_close(&fp->base);
    return MB_PORT_PENDING;
  case MB_FILE_SEEK: {
    int whence = (int)c->arg[0];
    if (!fp->seekable) {
      mb_port_res_error(c, "espipe");
      return MB_PORT_DONE;
    }
    if (whence == 2) {
      e = uv_fs_fstat(loop, &fp->fs, fp->fd, on_fp);
      break;
    }
    int64_t base = whence == 0 ? 0 : fp->pos;
    if (base + c->arg[1] < 0) {
      mb_port_res_error(c, "einval");
      return MB_PORT_DONE;
    }
    fp->pos = base + c->arg[1];
    res_values(c, fp->base.rt);
    mb_enc_tuple(&c->res, 1);
    mb_enc_int(&c->res, fp->pos);
    return MB_PORT_DONE;
  }
  default:
    mb_port_res_error(c, "einval");
    return MB_PORT_DONE;
  }
  if (e) {
    free(c->tdata);
    c->tdata = NULL;
    res_uv_error(c, e);
    return MB_PORT_DONE;
  }
  fp->cur = c;
  return MB_PORT_PENDING;
}

/* Starts queued commands until one is in flight. */
static void fp_start_next(fport_t *fp) {
  while (!fp->cur && fp->qhead) {
    mb_port_cmd_t *c = fp->qhead;
    fp->qhead = c->next;
    if (!fp->qhead) fp->qtail = &fp->qhead;
    c->next = NULL;
    if (fp_start(fp, c) == MB_PORT_DONE) mb_port_reply(c);
  }
}

static int fp_command(mb_port_t *p, mb_port_cmd_t *c) {
  fport_t *fp = (fport_t *)p;
  if (fp->closing) {
    mb_port_res_error(c, "closed");
    return MB_PORT_DONE;
  }
  if (fp->cur || fp->qhead) { /* behind the one in flight, in order */
    if (mb_port_cmd_own(c)) {
      mb_port_res_error(c, "enomem");
      return MB_PORT_DONE;
    }
    c->next = NULL;
    *fp->qtail = c;
    fp->qtail = &c->next;
    return MB_PORT_PENDING;
  }
  return fp_start(fp, c);
}

static void on_fp_closed(uv_fs_t *fs) {
  fport_t *fp = fs->data;
  if (fp->close_cmd) {
    if (fs->result < 0) res_uv_error(fp->close_cmd, (int)fs->result);
    else mb_port_res_ok(fp->close_cmd);
    mb_port_reply(fp->close_cmd);
    fp->close_cmd = NULL;
  }
  uv_fs_req_cleanup(fs);
  mb_port_closed(&fp->base);
}

static void fp_do_close(fport_t *fp) {
  if (fp->close_started) return;
  fp->close_started = 1;
  uv_file fd = fp->fd;
  fp->fd = -1;
  if (fd < 0 || uv_fs_close(fp->loop, &fp->fs, fd, on_fp_closed)) {
    if (fp->close_cmd) {
      mb_port_res_ok(fp->close_cmd);
      mb_port_reply(fp->close_cmd);
      fp->close_cmd = NULL;
    }
    mb_port_closed(&fp->base);
  }
}

/* May run twice (port.h: the loop ends while the port lingers): the second
 * time finds nothing queued and the close already issued, or a command still in
 * flight whose end issues it. */
static void fp_close(mb_port_t *p) {
  fport_t *fp = (fport_t *)p;
  fp->closing = 1;
  while (fp->qhead) {
    mb_port_cmd_t *c = fp->qhead;
    fp->qhead = c->next;
    c->next = NULL;
    mb_port_res_error(c, "closed");
    mb_port_reply(c);
  }
  fp->qtail = &fp->qhead;
  /* else once the running command is answered, or the open has ended */
  if (!fp->cur && !fp->opening) fp_do_close(fp);
}

static void fp_free(mb_port_t *p) {
  free(((fport_t *)p)->rbuf);
  free(p);
}

const mb_port_type_t mb_file_type = {"file", fp_command, fp_close, fp_free};

/* ---- opening ---- */

static void open_reply_error(fport_t *fp, int uverr) {
  req_t r; /* the reply helpers only read rt, to and ref */
  memset(&r, 0, sizeof r);
  r.rt = fp->base.rt;
  r.to = fp->opener;
  r.ref = fp->open_ref;
  reply_error(&r, uverr);
}

/* The port's close came while opening (the loop is ending): end here. */
static int open_closing(fport_t *fp) {
  if (!fp->closing) return 0;
  fp->opening = 0;
  open_reply_error(fp, UV_ECANCELED);
  fp_do_close(fp); /* closes the descriptor if the open got one, then lets go */
  return 1;
}

static void on_open(uv_fs_t *fs) {
  fport_t *fp = fs->data;
  ssize_t res = fs->result;
  uv_fs_req_cleanup(fs);
  if (fs->fs_type == UV_FS_OPEN) {
    if (res >= 0) fp->fd = (uv_file)res;
    if (open_closing(fp)) return;
    if (res < 0) {
      open_reply_error(fp, (int)res);
      mb_port_closed(&fp->base); /* never opened: the only reference, fp goes */
      return;
    }
    if (uv_fs_fstat(fs->loop, fs, fp->fd, on_open) == 0) return;
    /* no fstat: treat as a pipe (no positions) */
  } else {
    fp->seekable = res == 0 && (S_ISREG(fs->statbuf.st_mode) || S_ISBLK(fs->statbuf.st_mode));
    uv_fs_req_cleanup(fs);
    if (open_closing(fp)) return;
  }
  fp->opening = 0;
  fp->qtail = &fp->qhead;
  if (mb_port_open(&fp->base)) return; /* the opener died: the port closed itself */
  /* {Ref, Port} */
  mb_enc_t e;
  mb_enc_init(&e, mb_runtime_nodes(fp->base.rt), 0);
  mb_enc_tuple(&e, 2);
  mb_enc_ref(&e, fp->open_ref);
  mb_enc_port(&e, fp->base.id);
  size_t len;
  uint8_t *b = mb_enc_finish(&e, &len);
  if (b) mb_send_io_reply(fp->base.rt, fp->opener, fp->open_ref, b, len);
  free(b);
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

int mb_file_open(mb_runtime_t *rt, mb_pid_t to, mb_ref_t ref, const char *path, const char *mode) {
  int append, flags = mode_flags(mode, &append);
  if (flags < 0) return MB_EINVAL;
  uv_loop_t *loop = mb_port_loop(rt);
  if (!loop) return MB_EINVAL;
  fport_t *fp = calloc(1, sizeof *fp);
  if (!fp) return MB_ENOMEM;
  int r = mb_port_init(&fp->base, &mb_file_type, rt, to);
  if (r) {
    free(fp);
    return r;
  }
  fp->fd = -1;
  fp->append = append;
  fp->opener = to;
  fp->open_ref = ref;
  fp->qtail = &fp->qhead;
  fp->loop = loop;
  fp->opening = 1;
  fp->fs.data = fp;
  int e = uv_fs_open(loop, &fp->fs, path, flags, 0666, on_open);
  if (e) {
    uv_fs_req_cleanup(&fp->fs);
    mb_port_closed(&fp->base);
    return e == UV_ENOMEM ? MB_ENOMEM : MB_EINVAL;
  }
  return 0;
}
