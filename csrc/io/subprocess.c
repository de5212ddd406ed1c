/* subprocess.c: the subprocess port (subprocess.h).
 *
 * Lifetime: `handles` counts the uv handles initialised (process, pipes); the
 * port's close closes each pipe at once and the process handle once the program
 * has exited (killed first if still running, so it is always reaped); the last
 * close callback calls mb_port_closed. exit_status is sent only while the port
 * is open, after the exit and the end of both output pipes (so no data follows
 * it), and then the port closes itself. Everything runs on the loop thread. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include "io/subprocess.h"

#define READ_CHUNK 65536
#define MAX_LINE (1u << 20) /* a longer line is delivered in pieces of this size */

typedef struct line_buf {
  char *p;
  size_t len, cap;
} line_buf_t;

typedef struct subproc {
  mb_port_t base;                 /* first: the port */
  uv_process_t proc;
  uv_pipe_t in, out, err;
  int has_err;                    /* err is a pipe of its own */
  int err_as_out;                 /* its data is tagged "stdout" */
  int in_open, out_open, err_open;
  int spawned;                    /* uv_spawn succeeded: proc.pid is the child's */
  int exited;
  int64_t status;
  int lines;
  int handles;                    /* initialised and not yet closed */
  int closing;                    /* the port's close has run */
  line_buf_t out_line, err_line;
} subproc_t;

typedef struct write_req {
  uv_write_t w;
  mb_port_cmd_t *c;
} write_req_t;

static void on_handle_closed(uv_handle_t *h) {
  subproc_t *sp = h->data;
  /* the last one drops the open reference (also when the spawn failed and the
   * port was never opened: then it is the only one, and sp goes with it) */
  if (--sp->handles == 0) mb_port_closed(&sp->base);
}

static void close_handle(uv_handle_t *h) {
  if (!uv_is_closing(h)) uv_close(h, on_handle_closed);
}

/* ---- output ---- */

static void send_data(subproc_t *sp, const char *tag, const char *p, size_t n) {
  if (!mb_port_is_open(&sp->base)) return;
  mb_enc_t e;
  mb_port_enc(&sp->base, &e, tag, 3);
  mb_enc_binary(&e, p, n);
  mb_port_send(&sp->base, &e);
}

static int line_add(line_buf_t *b, const char *p, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) return -1;
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
  return 0;
}

/* Line mode: sends each complete line of buf + p[0..n), keeps the rest. */
static void send_lines(subproc_t *sp, const char *tag, line_buf_t *b, const char *p, size_t n) {
  while (n) {
    const char *nl = memchr(p, '\n', n);
    size_t take = nl ? (size_t)(nl - p) : n;
    if (b->len + take >= MAX_LINE) take = MAX_LINE - b->len;
    if (b->len == 0 && nl && take == (size_t)(nl - p)) {
      send_data(sp, tag, p, take); /* the whole line is here: no copy */
    } else {
      if (line_add(b, p, take)) take = n; /* no memory: drop the rest of this chunk */
      if ((nl && take == (size_t)(nl - p)) || b->len >= MAX_LINE) {
        send_data(sp, tag, b->p, b->len);
        b->len = 0;
      }
    }
    if (nl && take == (size_t)(nl - p)) take++; /* the "\n" */
    p += take;
    n -= take;
  }
}

static void maybe_finish(subproc_t *sp) {
  if (!sp->exited || sp->out_open || sp->err_open || sp->closing) return;
  if (mb_port_is_open(&sp->base)) {
    mb_enc_t e;
    mb_port_enc(&sp->base, &e, "exit_status", 3);
    mb_enc_int(&e, sp->status);
    mb_port_send(&sp->base, &e);
  }
  mb_port_close(&sp->base); /* done: as Erlang's port after exit_status */
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  char *p = malloc(READ_CHUNK);
  *buf = uv_buf_init(p, p ? READ_CHUNK : 0);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  subproc_t *sp = s->data;
  int is_err = s == (uv_stream_t *)&sp->err;
  const char *tag = is_err && !sp->err_as_out ? "stderr" : "stdout";
  line_buf_t *lb = is_err ? &sp->err_line : &sp->out_line;
  if (n > 0) {
    if (sp->lines) send_lines(sp, tag, lb, buf->base, (size_t)n);
    else send_data(sp, tag, buf->base, (size_t)n);
  }
  free(buf->base);
  if (n >= 0 || n == UV_ENOBUFS) return;
  /* the end (or an error, which ends it too) */
  uv_read_stop(s);
  if (sp->lines && lb->len) {
    send_data(sp, tag, lb->p, lb->len);
    lb->len = 0;
  }
  if (is_err) sp->err_open = 0;
  else sp->out_open = 0;
  maybe_finish(sp);
}

static void on_child_exit(uv_process_t *proc, int64_t status, int term_signal) {
  subproc_t *sp = proc->data;
  sp->exited = 1;
  sp->status = term_signal ? 128 + term_signal : status;
  if (sp->closing) close_handle((uv_handle_t *)&sp->proc);
  else maybe_finish(sp);
}

/* ---- the port type ---- */

static void on_write(uv_write_t *w, int status) {
  write_req_t *wr = (write_req_t *)w;
  char buf[32];
  if (status == 0) mb_port_res_ok(wr->c);
  else mb_port_res_error(wr->c, status == UV_ECANCELED ? "closed" : mb_port_errname(status, buf, sizeof buf));
  mb_port_reply(wr->c);
  free(wr);
}

static int sp_command(mb_port_t *p, mb_port_cmd_t *c) {
  subproc_t *sp = (subproc_t *)p;
  char buf[32];
  switch (c->op) {
  case MB_SUBPROC_WRITE: {
    if (!sp->in_open) {
      mb_port_res_error(c, "closed");
      return MB_PORT_DONE;
    }
    if (c->len == 0) {
      mb_port_res_ok(c);
      return MB_PORT_DONE;
    }
    write_req_t *wr = malloc(sizeof *wr);
    if (!wr || mb_port_cmd_own(c)) {
      free(wr);
      mb_port_res_error(c, "enomem");
      return MB_PORT_DONE;
    }
    wr->c = c;
    uv_buf_t b = uv_buf_init((char *)c->data, (unsigned)c->len);
    int r = uv_write(&wr->w, (uv_stream_t *)&sp->in, &b, 1, on_write);
    if (r) {
      free(wr);
      mb_port_res_error(c, mb_port_errname(r, buf, sizeof buf));
      return MB_PORT_DONE;
    }
    return MB_PORT_PENDING;
  }
  case MB_SUBPROC_CLOSE_STDIN:
    if (sp->in_open) {
      sp->in_open = 0;
      close_handle((uv_handle_t *)&sp->in); /* pending writes end with "closed" */
    }
    mb_port_res_ok(c);
    return MB_PORT_DONE;
  case MB_SUBPROC_KILL: {
    int r = sp->exited || !sp->spawned || sp->proc.pid <= 0 ? UV_ESRCH : uv_process_kill(&sp->proc, (int)c->arg[0]);
    if (r) mb_port_res_error(c, mb_port_errname(r, buf, sizeof buf));
    else mb_port_res_ok(c);
    return MB_PORT_DONE;
  }
  case MB_SUBPROC_OS_PID:
    mb_enc_discard(&c->res);
    mb_enc_init(&c->res, NULL, mb_msg_prefix());
    mb_enc_tuple(&c->res, 1);
    mb_enc_int(&c->res, sp->proc.pid);
    return MB_PORT_DONE;
  default:
    mb_port_res_error(c, "einval");
    return MB_PORT_DONE;
  }
}

/* May run twice (port.h: the loop ends while the port lingers): everything
 * here is idempotent, and the program was killed the first time. */
static void sp_close(mb_port_t *p) {
  subproc_t *sp = (subproc_t *)p;
  sp->closing = 1;
  /* never kill pid 0 (that is our own process group): only a spawned child */
  if (sp->spawned && !sp->exited && sp->proc.pid > 0) uv_process_kill(&sp->proc, SIGKILL);
  sp->in_open = sp->out_open = sp->err_open = 0;
  close_handle((uv_handle_t *)&sp->in);
  close_handle((uv_handle_t *)&sp->out);
  if (sp->has_err) close_handle((uv_handle_t *)&sp->err);
  if (sp->exited || !sp->spawned) close_handle((uv_handle_t *)&sp->proc);
  /* else on_child_exit closes it once the program is reaped */
}

static void sp_free(mb_port_t *p) {
  subproc_t *sp = (subproc_t *)p;
  free(sp->out_line.p);
  free(sp->err_line.p);
  free(sp);
}

const mb_port_type_t mb_subproc_type = {"subprocess", sp_command, sp_close, sp_free};

/* Writing to a program that has exited must fail with EPIPE, not kill us: a
 * SIGPIPE left at its default is ignored from the first subprocess on (as the
 * BEAM does); a handler the host installed is left alone. */
static void ignore_sigpipe_once(void) {
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
}

static void ignore_sigpipe(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, ignore_sigpipe_once);
}

int mb_subproc_spawn(mb_runtime_t *rt, mb_pid_t owner, const mb_subproc_opts_t *o, mb_port_t **out) {
  uv_loop_t *loop = mb_port_loop(rt);
  if (!loop) return UV_EINVAL;
  subproc_t *sp = calloc(1, sizeof *sp);
  if (!sp) return UV_ENOMEM;
  int r = mb_port_init(&sp->base, &mb_subproc_type, rt, owner);
  if (r) {
    free(sp); /* not initialised: nothing knows it */
    return r == MB_EINVAL ? UV_EINVAL : UV_ENOMEM;
  }
  ignore_sigpipe();
  sp->lines = o->lines;
  uv_pipe_t *pipes[3] = {&sp->in, &sp->out, &sp->err};
  /* stderr into stdout: a pipe of its own whose data is tagged "stdout" (libuv
   * cannot point the child's fd 2 at its fd 1) */
  int npipes = o->stderr_mode == MB_SUBPROC_STDERR_MESSAGE || o->stderr_mode == MB_SUBPROC_STDERR_STDOUT ? 3 : 2;
  sp->has_err = npipes == 3;
  sp->err_as_out = o->stderr_mode == MB_SUBPROC_STDERR_STDOUT;
  for (int i = 0; i < npipes; i++) {
    uv_pipe_init(loop, pipes[i], 0);
    pipes[i]->data = sp;
    sp->handles++;
  }
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
  stdio[0].data.stream = (uv_stream_t *)&sp->in;
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *)&sp->out;
  switch (o->stderr_mode) {
  case MB_SUBPROC_STDERR_MESSAGE:
  case MB_SUBPROC_STDERR_STDOUT:
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&sp->err;
    break;
  case MB_SUBPROC_STDERR_INHERIT:
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = 2;
    break;
  default:
    stdio[2].flags = UV_IGNORE;
    break;
  }
  uv_process_options_t po;
  memset(&po, 0, sizeof po);
  po.exit_cb = on_child_exit;
  po.file = o->file;
  po.args = o->args;
  po.env = o->env;
  po.cwd = o->cwd;
  po.stdio_count = 3;
  po.stdio = stdio;
  sp->proc.data = sp;
  r = uv_spawn(loop, &sp->proc, &po);
  sp->handles++; /* the process handle is initialised even when the spawn fails */
  if (r) {
    for (int i = 0; i < npipes; i++) close_handle((uv_handle_t *)pipes[i]);
    close_handle((uv_handle_t *)&sp->proc); /* the last close frees sp */
    return r;
  }
  sp->spawned = 1;
  sp->in_open = sp->out_open = 1;
  sp->err_open = sp->has_err;
  uv_read_start((uv_stream_t *)&sp->out, on_alloc, on_read);
  if (sp->has_err) uv_read_start((uv_stream_t *)&sp->err, on_alloc, on_read);
  if (mb_port_open(&sp->base)) return UV_ESRCH; /* the owner is gone: the port closed itself */
  *out = &sp->base;
  return 0;
}
