/* test_file.c: files (csrc/io/file.c) and subprocesses (csrc/io/subprocess.c)
 * driven by a native process, so ASan's leak check (make asan) covers every
 * request, port and handle, including the ones in flight when their owner
 * exits or the runtime is freed.
 *
 * A "script" process runs steps one at a time: each step issues a request
 * tagged with a fresh ref; the reply (or the port messages a step waits for)
 * is summarised as text ("true", "nil,enoent", "<<hello>>", "port") into the
 * script's log, which the test compares once the script has finished. */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io/file.h"
#include "io/port.h"
#include "io/subprocess.h"
#include "mb_test.h"
#include "testkit.h"

typedef struct script script_t;
typedef void (*step_fn)(script_t *s, mb_proc_t *self);

struct script {
  mb_runtime_t *rt;
  const step_fn *steps;
  int at;
  mb_ref_t ref;          /* the reply awaited */
  int want_exit;         /* waiting for a port's exit_status instead */
  uint64_t port;         /* the last port opened */
  mb_port_t *held;       /* a reference kept past a close */
  int os_pid;
  char log[4096];
  char out[256];         /* stdout/stderr data of the ports, in arrival order */
  char dir[64];
  atomic_int done;
};

static void logf_(script_t *s, const char *text) {
  size_t n = strlen(s->log);
  snprintf(s->log + n, sizeof s->log - n, "%s%s", n ? " " : "", text);
}

/* Appends the values of a term (a tuple, skipping its first `skip` elements). */
static void summarise(script_t *s, const uint8_t *data, size_t len, int skip) {
  mb_dec_t d;
  uint32_t n;
  char out[256] = "";
  if (mb_dec_init(&d, NULL, data, len) || mb_dec_tuple(&d, &n)) {
    logf_(s, "malformed");
    return;
  }
  for (uint32_t i = 0; i < n; i++) {
    char v[96] = "?";
    const char *a;
    const uint8_t *b;
    size_t l;
    int64_t x;
    uint32_t c;
    uint64_t port;
    if ((int)i < skip) {
      mb_dec_skip(&d);
      continue;
    }
    switch (mb_dec_type(&d)) {
    case MB_T_ATOM: mb_dec_atom(&d, &a, &l); snprintf(v, sizeof v, "%.*s", (int)l, a); break;
    case MB_T_BINARY: mb_dec_binary(&d, &b, &l); snprintf(v, sizeof v, "<<%.*s>>", (int)(l > 40 ? 40 : l), (const char *)b); break;
    case MB_T_INT: mb_dec_int(&d, &x); snprintf(v, sizeof v, "%lld", (long long)x); break;
    case MB_T_MAP: mb_dec_map(&d, &c); snprintf(v, sizeof v, "map%u", c); for (uint32_t k = 0; k < 2 * c; k++) mb_dec_skip(&d); break;
    case MB_T_LIST: mb_dec_list(&d, &c); snprintf(v, sizeof v, "list%u", c); for (uint32_t k = 0; k <= c; k++) mb_dec_skip(&d); break;
    case MB_T_NIL: mb_dec_nil(&d); snprintf(v, sizeof v, "list0"); break;
    default:
      if (mb_dec_port(&d, &port) == 0) {
        s->port = port;
        snprintf(v, sizeof v, "port");
      } else {
        mb_dec_skip(&d);
      }
    }
    size_t o = strlen(out);
    snprintf(out + o, sizeof out - o, "%s%s", o ? "," : "", v);
  }
  logf_(s, out);
}

static mb_ref_t next_ref(script_t *s) {
  s->ref = mb_make_ref(s->rt);
  return s->ref;
}

static void path(script_t *s, char *buf, size_t cap, const char *name) {
  snprintf(buf, cap, "%s/%s", s->dir, name);
}

/* Runs a command on the last port opened; a direct answer is logged at once. */
static int port_cmd(script_t *s, mb_proc_t *self, int op, int64_t a0, int64_t a1, const char *data) {
  mb_port_t *p = s->held;
  if (p) mb_port_ref(p);
  else p = mb_port_lookup(s->rt, s->port);
  if (!p) {
    logf_(s, "noport");
    return 0;
  }
  mb_port_cmd_t *c = mb_port_cmd_new(s->rt, op, mb_self(self), next_ref(s));
  c->arg[0] = a0;
  c->arg[1] = a1;
  if (data) {
    c->data = (const uint8_t *)data;
    c->len = strlen(data);
  }
  int r = mb_port_submit(p, c);
  mb_port_unref(p);
  if (r == MB_PORT_DONE) {
    size_t len;
    uint8_t *b = mb_enc_finish(&c->res, &len);
    mb_port_cmd_free(c);
    summarise(s, b + mb_msg_prefix(), len - mb_msg_prefix(), 0);
    free(b);
    return 0;
  }
  return 1; /* a reply will come */
}

static int script_fn(mb_proc_t *self, const mb_msg_t *m, void *ud) {
  script_t *s = ud;
  if (m) {
    size_t len;
    const uint8_t *data = mb_msg_data(m, &len);
    mb_ref_t tag;
    int kind = mb_msg_kind(m, &tag);
    uint32_t arity;
    if (tk_is_tagged(data, len, "stdout", &arity) || tk_is_tagged(data, len, "stderr", &arity)) {
      mb_dec_t d;
      const uint8_t *b;
      size_t l;
      if (!mb_dec_init(&d, NULL, data, len) && !mb_dec_tuple(&d, &arity) && !mb_dec_skip(&d) &&
          !mb_dec_skip(&d) && !mb_dec_binary(&d, &b, &l)) {
        size_t o = strlen(s->out);
        snprintf(s->out + o, sizeof s->out - o, "<<%.*s>>", (int)l, (const char *)b);
      }
      return 0;
    }
    if (s->want_exit) {
      if (!tk_is_tagged(data, len, "exit_status", &arity)) return 0;
      summarise(s, data, len, 2);
      s->want_exit = 0;
    } else {
      if (kind != MB_MSG_REPLY || !mb_ref_equal(tag, s->ref)) return 0; /* not ours */
      /* file.c's replies carry the ref first; a port command's do not */
      mb_dec_t d;
      uint32_t n;
      int has_ref = 0;
      if (!mb_dec_init(&d, NULL, data, len) && !mb_dec_tuple(&d, &n) && n > 0) has_ref = mb_dec_type(&d) == MB_T_REF;
      summarise(s, data, len, has_ref);
    }
  }
  /* run steps until one waits */
  while (s->steps[s->at]) {
    step_fn f = s->steps[s->at++];
    s->ref = (mb_ref_t){0, {0, 0, 0}};
    f(s, self);
    if (s->ref.id[0] || s->ref.id[1] || s->ref.id[2] || s->want_exit) {
      if (s->ref.id[0] || s->ref.id[1] || s->ref.id[2] || s->want_exit) return 0;
    }
  }
  atomic_store(&s->done, 1);
  return 1;
}

/* A step that issued a request leaves s->ref set (or want_exit); one whose
 * answer was direct clears it by logging through port_cmd. */
#define STEP(name) static void name(script_t *s, mb_proc_t *self)

STEP(w_hello) { char p[128]; path(s, p, sizeof p, "a.txt"); mb_file_write_all(s->rt, mb_self(self), next_ref(s), p, "hello", 5, 0); }
STEP(w_append) { char p[128]; path(s, p, sizeof p, "a.txt"); mb_file_write_all(s->rt, mb_self(self), next_ref(s), p, "!", 1, 1); }
STEP(r_hello) { char p[128]; path(s, p, sizeof p, "a.txt"); mb_file_read_all(s->rt, mb_self(self), next_ref(s), p); }
STEP(r_missing) { char p[128]; path(s, p, sizeof p, "missing"); mb_file_read_all(s->rt, mb_self(self), next_ref(s), p); }
STEP(st_file) { char p[128]; path(s, p, sizeof p, "a.txt"); mb_file_stat(s->rt, mb_self(self), next_ref(s), p, 0); }
STEP(mk_sub) { char p[128]; path(s, p, sizeof p, "sub"); mb_file_mkdir(s->rt, mb_self(self), next_ref(s), p, 0700); }
STEP(ls_dir) { mb_file_list(s->rt, mb_self(self), next_ref(s), s->dir); }
STEP(mv_file) {
  char a[128], b[128];
  path(s, a, sizeof a, "a.txt");
  path(s, b, sizeof b, "b.txt");
  mb_file_rename(s->rt, mb_self(self), next_ref(s), a, b);
}
STEP(rm_b) { char p[128]; path(s, p, sizeof p, "b.txt"); mb_file_remove(s->rt, mb_self(self), next_ref(s), p); }
STEP(rm_b_again) { char p[128]; path(s, p, sizeof p, "b.txt"); mb_file_remove(s->rt, mb_self(self), next_ref(s), p); }
STEP(rd_sub) { char p[128]; path(s, p, sizeof p, "sub"); mb_file_rmdir(s->rt, mb_self(self), next_ref(s), p); }
STEP(open_s) { char p[128]; path(s, p, sizeof p, "s.txt"); mb_file_open(s->rt, mb_self(self), next_ref(s), p, "w+"); }
STEP(open_missing) { char p[128]; path(s, p, sizeof p, "nope/x"); mb_file_open(s->rt, mb_self(self), next_ref(s), p, "r"); }
STEP(s_write) { if (!port_cmd(s, self, MB_FILE_WRITE, 0, 0, "streamed")) s->ref = (mb_ref_t){0, {0, 0, 0}}; }
STEP(s_seek0) { if (!port_cmd(s, self, MB_FILE_SEEK, 0, 0, NULL)) s->ref = (mb_ref_t){0, {0, 0, 0}}; }
STEP(s_read) { if (!port_cmd(s, self, MB_FILE_READ, 6, 0, NULL)) s->ref = (mb_ref_t){0, {0, 0, 0}}; }
STEP(s_read_eof) { if (!port_cmd(s, self, MB_FILE_READ, 100, 0, NULL)) s->ref = (mb_ref_t){0, {0, 0, 0}}; }
STEP(s_close) {
  (void)self;
  s->held = mb_port_lookup(s->rt, s->port);
  if (s->held) mb_port_close(s->held);
  logf_(s, s->held ? "closed" : "noport");
}
STEP(s_after_close) {
  if (!port_cmd(s, self, MB_FILE_READ, 1, 0, NULL)) s->ref = (mb_ref_t){0, {0, 0, 0}};
  if (s->held) mb_port_unref(s->held);
  s->held = NULL;
}

STEP(s_read_line) { if (!port_cmd(s, self, MB_FILE_READ_LINE, 0, 0, NULL)) s->ref = (mb_ref_t){0, {0, 0, 0}}; }
STEP(s_cmd_close) { if (!port_cmd(s, self, MB_FILE_CLOSE, 0, 0, NULL)) s->ref = (mb_ref_t){0, {0, 0, 0}}; }

static const step_fn file_steps[] = {w_hello, w_append, r_hello, r_missing, st_file, mk_sub, ls_dir,
                                     mv_file, rm_b, rm_b_again, rd_sub, open_s, open_missing, open_s,
                                     s_write, s_seek0, s_read, s_read_eof, s_read_eof, s_close, s_after_close,
                                     open_s, s_write, s_seek0, s_read_line, s_read_line,
                                     s_cmd_close, s_read, NULL};

static script_t *run_script(mb_runtime_t *rt, const step_fn *steps, const char *dir) {
  script_t *s = calloc(1, sizeof *s);
  s->rt = rt;
  s->steps = steps;
  snprintf(s->dir, sizeof s->dir, "%s", dir);
  mb_pid_t pid;
  if (mb_spawn_native(rt, script_fn, NULL, s, NULL, &pid)) abort();
  for (int i = 0; i < 10000 && !atomic_load(&s->done); i++) usleep(1000);
  return s;
}

static void make_dir(char *dir, size_t cap) {
  snprintf(dir, cap, "/tmp/mb_test_file_XXXXXX");
  if (!mkdtemp(dir)) abort();
}

MB_TEST(file_operations_reply_with_their_values_or_reasons) {
  char dir[64];
  make_dir(dir, sizeof dir);
  mb_runtime_t *rt = tk_runtime(2);
  script_t *s = run_script(rt, file_steps, dir);
  MB_CHECK(atomic_load(&s->done));
  const char *want =
                  "true true <<hello!>> nil,<<enoent>> map10 true list2 true true nil,<<enoent>> true "
                  "port nil,<<enoent>> port true 0 <<stream>> <<ed>> nil,<<eof>> closed nil,<<closed>> "
      "port true 0 <<streamed>> nil,<<eof>> true noport";
  if (strcmp(s->log, want)) fprintf(stderr, "log:  %s\nwant: %s\n", s->log, want);
  MB_CHECK(strcmp(s->log, want) == 0);
  mb_runtime_free(rt);
  free(s);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  MB_CHECK(system(cmd) == 0);
}

/* ---- subprocesses ---- */

STEP(sp_echo) {
  char *args[] = {"sh", "-c", "printf hi; exit 3", NULL};
  mb_subproc_opts_t o = {"sh", args, NULL, NULL, 0, 0};
  mb_port_t *p;
  int r = mb_subproc_spawn(s->rt, mb_self(self), &o, &p);
  logf_(s, r ? "spawn-failed" : "spawned");
  s->want_exit = r == 0;
}
STEP(sp_missing) {
  char *args[] = {"/no/such/program", NULL};
  mb_subproc_opts_t o = {"/no/such/program", args, NULL, NULL, 0, 0};
  mb_port_t *p;
  char buf[32];
  int r = mb_subproc_spawn(s->rt, mb_self(self), &o, &p);
  logf_(s, r ? mb_port_errname(r, buf, sizeof buf) : "spawned");
}
STEP(sp_cat) {
  char *args[] = {"cat", NULL};
  mb_subproc_opts_t o = {"cat", args, NULL, NULL, 1, 0};
  mb_port_t *p;
  if (mb_subproc_spawn(s->rt, mb_self(self), &o, &p) == 0) s->port = p->id;
  logf_(s, "cat");
}
STEP(sp_write) { if (!port_cmd(s, self, MB_SUBPROC_WRITE, 0, 0, "line\n")) s->ref = (mb_ref_t){0, {0, 0, 0}}; }
STEP(sp_eof) {
  port_cmd(s, self, MB_SUBPROC_CLOSE_STDIN, 0, 0, NULL);
  s->ref = (mb_ref_t){0, {0, 0, 0}};
  s->want_exit = 1;
}
STEP(sp_sleep) { /* left running: the owner's exit must kill and reap it */
  char *args[] = {"sleep", "30", NULL};
  mb_subproc_opts_t o = {"sleep", args, NULL, NULL, 0, 0};
  mb_port_t *p;
  if (mb_subproc_spawn(s->rt, mb_self(self), &o, &p) == 0) s->port = p->id;
  if (!port_cmd(s, self, MB_SUBPROC_OS_PID, 0, 0, NULL)) s->ref = (mb_ref_t){0, {0, 0, 0}};
}

static const step_fn sp_steps[] = {sp_echo, sp_missing, sp_cat, sp_write, sp_eof, sp_sleep, NULL};

MB_TEST(subprocesses_deliver_output_and_exit_status_and_die_with_their_owner) {
  mb_runtime_t *rt = tk_runtime(2);
  script_t *s = run_script(rt, sp_steps, "/tmp");
  MB_CHECK(atomic_load(&s->done));
  /* sh's status 3, no such program, cat's write and end of input then its
   * status, the sleep's pid; the output apart (it may come before a reply) */
  const char *log = s->log;
  if (strstr(log, "spawned 3 enoent cat true true 0 ") != log) fprintf(stderr, "log: %s\n", log);
  MB_CHECK(strstr(log, "spawned 3 enoent cat true true 0 ") == log);
  MB_CHECK(strcmp(s->out, "<<hi>><<line>>") == 0);
  int pid = atoi(strrchr(log, ' ') + 1);
  MB_CHECK(pid > 0);
  /* the script ended: its sleep was killed and reaped */
  int gone = 0;
  for (int i = 0; i < 3000 && !gone; i++) {
    char p[64];
    struct stat st;
    snprintf(p, sizeof p, "/proc/%d", pid);
    gone = stat(p, &st) != 0;
    if (!gone) usleep(1000);
  }
  MB_CHECK(gone);
  mb_runtime_free(rt);
  free(s);
}

/* Requests and ports in flight when the runtime is freed: nothing leaks. */
STEP(fl_sleep) {
  char *args[] = {"sleep", "30", NULL};
  mb_subproc_opts_t o = {"sleep", args, NULL, NULL, 0, 0};
  mb_port_t *p;
  mb_subproc_spawn(s->rt, mb_self(self), &o, &p);
  char pth[128];
  path(s, pth, sizeof pth, "f");
  mb_file_open(s->rt, mb_self(self), next_ref(s), pth, "w");
}
STEP(fl_pending) {
  mb_file_read_all(s->rt, mb_self(self), mb_make_ref(s->rt), "/proc/self/status");
  mb_file_list(s->rt, mb_self(self), next_ref(s), "/");
  s->want_exit = 1; /* never comes: the runtime is freed under it */
}
static const step_fn flight_steps[] = {fl_sleep, fl_pending, NULL};

MB_TEST(runtime_freed_with_requests_and_ports_in_flight) {
  char dir[64];
  make_dir(dir, sizeof dir);
  mb_runtime_t *rt = tk_runtime(1);
  script_t *s = calloc(1, sizeof *s);
  s->rt = rt;
  s->steps = flight_steps;
  snprintf(s->dir, sizeof s->dir, "%s", dir);
  mb_pid_t pid;
  MB_REQUIRE(mb_spawn_native(rt, script_fn, NULL, s, NULL, &pid) == 0);
  usleep(100000);
  mb_runtime_free(rt); /* kills the sleep, closes the file, drains the loop */
  free(s);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  MB_CHECK(system(cmd) == 0);
}

int main(void) {
  MB_RUN(file_operations_reply_with_their_values_or_reasons);
  MB_RUN(subprocesses_deliver_output_and_exit_status_and_die_with_their_owner);
  MB_RUN(runtime_freed_with_requests_and_ports_in_flight);
  return mb_test_summary();
}
