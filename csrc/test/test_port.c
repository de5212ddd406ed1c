/* test_port.c: the port infrastructure (csrc/io/port.c) with a port type made
 * for the test, and TCP ports (csrc/io/tcp.c) driven from native processes:
 * direct and queued commands, replies, owner exit, hand-over, closing at
 * runtime end; run under ASan's leak check by `make asan`. */
#include <pthread.h>
#include <stdatomic.h>
#include "io/io.h"
#include "io/port.h"
#include "mb_test.h"
#include "testkit.h"

/* ---- a port type for the test: op 1 doubles arg[0] now; op 2 waits for op 3 ---- */

typedef struct dummy {
  mb_port_t base;
  mb_port_cmd_t *held;
  atomic_int *closes, *frees;
} dummy_t;

static int dummy_command(mb_port_t *p, mb_port_cmd_t *c) {
  dummy_t *d = (dummy_t *)p;
  if (c->op == 1) {
    mb_enc_tuple(&c->res, 2);
    mb_enc_int(&c->res, c->arg[0] * 2);
    mb_enc_int(&c->res, c->queued);
    return MB_PORT_DONE;
  }
  if (c->op == 2) {
    d->held = c;
    return MB_PORT_PENDING;
  }
  if (c->op == 3 && d->held) {
    mb_port_cmd_t *h = d->held;
    d->held = NULL;
    mb_enc_tuple(&h->res, 1);
    mb_enc_int(&h->res, 42);
    mb_port_reply(h);
  }
  mb_port_res_ok(c);
  return MB_PORT_DONE;
}

static void dummy_close(mb_port_t *p) {
  dummy_t *d = (dummy_t *)p;
  atomic_fetch_add(d->closes, 1);
  if (d->held) {
    mb_port_cmd_t *h = d->held;
    d->held = NULL;
    mb_port_res_error(h, "closed");
    mb_port_reply(h);
  }
  mb_port_closed(p); /* no handles to wait for */
}

static void dummy_free(mb_port_t *p) {
  dummy_t *d = (dummy_t *)p;
  atomic_fetch_add(d->frees, 1);
  free(d);
}

static const mb_port_type_t dummy_type = {"dummy", dummy_command, dummy_close, dummy_free};

/* ---- actors: native processes that run a script step on each message ---- */

typedef struct actor actor_t;
typedef int (*step_fn)(actor_t *a, mb_proc_t *self, const mb_msg_t *m);
struct actor {
  step_fn step;
  mb_runtime_t *rt;
  mb_port_t *port;        /* a reference */
  mb_pid_t peer;
  int64_t result[4];
  int nresult;
  char reason[32];
  uint64_t got_port;      /* a port id from a reply or message */
  char data[64];
  atomic_int done, exited, closed_seen;
  int phase;
};

static int actor_fn(mb_proc_t *self, const mb_msg_t *m, void *ud) { return ((actor_t *)ud)->step(ud, self, m); }
static void actor_exit(void *ud, const uint8_t *r, size_t n) {
  (void)r;
  (void)n;
  atomic_store(&((actor_t *)ud)->exited, 1);
}

static mb_pid_t actor_spawn(mb_runtime_t *rt, actor_t *a, int sched) {
  mb_spawn_opts_t o;
  memset(&o, 0, sizeof o);
  o.scheduler = sched + 1;
  a->rt = rt;
  mb_pid_t pid;
  if (mb_spawn_native(rt, actor_fn, actor_exit, a, &o, &pid)) abort();
  return pid;
}

/* Decodes a result tuple of integers, or {nil, reason}, or {Port}, into a. */
static void take_result(actor_t *a, const uint8_t *p, size_t n) {
  mb_dec_t d;
  uint32_t ar;
  a->nresult = 0;
  a->reason[0] = 0;
  if (mb_dec_init(&d, NULL, p, n) || mb_dec_tuple(&d, &ar)) return;
  for (uint32_t i = 0; i < ar && i < 4; i++) {
    int t = mb_dec_type(&d);
    if (t == MB_T_INT) {
      mb_dec_int(&d, &a->result[a->nresult++]);
    } else if (t == MB_T_PORT) {
      mb_dec_port(&d, &a->got_port);
    } else if (t == MB_T_BINARY) {
      const uint8_t *b;
      size_t bl;
      mb_dec_binary(&d, &b, &bl);
      if (bl >= sizeof a->reason) bl = sizeof a->reason - 1;
      memcpy(a->reason, b, bl);
      a->reason[bl] = 0;
    } else {
      mb_dec_skip(&d);
    }
  }
}

static void take_reply(actor_t *a, const mb_msg_t *m) {
  size_t n;
  const uint8_t *p = mb_msg_data(m, &n);
  take_result(a, p, n);
}

/* Runs a command from self, taking a direct result at once. Returns 1 if done now. */
static int run_cmd(actor_t *a, mb_proc_t *self, mb_port_t *p, int op, int64_t arg) {
  mb_port_cmd_t *c = mb_port_cmd_new(a->rt, op, mb_self(self), mb_make_ref(a->rt));
  c->arg[0] = arg;
  c->arg[1] = -1; /* accept: no timeout */
  if (mb_port_submit(p, c) == MB_PORT_DONE) {
    size_t n;
    uint8_t *b = mb_enc_finish(&c->res, &n);
    take_result(a, b + mb_msg_prefix(), n - mb_msg_prefix());
    free(b);
    mb_port_cmd_free(c);
    return 1;
  }
  return 0;
}

static atomic_int closes, frees;

static mb_port_t *dummy_new(mb_runtime_t *rt, mb_pid_t owner) {
  dummy_t *d = calloc(1, sizeof *d);
  d->closes = &closes;
  d->frees = &frees;
  if (mb_port_init(&d->base, &dummy_type, rt, owner)) abort();
  mb_port_ref(&d->base); /* the test's */
  if (mb_port_open(&d->base)) abort();
  return &d->base;
}

/* owner: makes a port, runs op 1 directly, then waits for "stop". */
static int owner_step(actor_t *a, mb_proc_t *self, const mb_msg_t *m) {
  if (!m) {
    a->port = dummy_new(a->rt, mb_self(self));
    MB_CHECK(mb_port_here(a->port));
    MB_CHECK(run_cmd(a, self, a->port, 1, 21));
    atomic_store(&a->done, 1);
    return 0;
  }
  size_t n;
  const uint8_t *p = mb_msg_data(m, &n);
  return tk_is_atom(p, n, "stop");
}

/* user: on another scheduler, runs op 1 (queued) and op 2 (held until op 3). */
static int user_step(actor_t *a, mb_proc_t *self, const mb_msg_t *m) {
  if (!m) {
    MB_CHECK(!mb_port_here(a->port));
    MB_CHECK(!run_cmd(a, self, a->port, 1, 5));
    return 0;
  }
  mb_ref_t ref;
  if (mb_msg_kind(m, &ref) == MB_MSG_REPLY) {
    take_reply(a, m);
    a->phase++;
    if (a->phase == 1) {
      MB_CHECK_EQ_INT(a->nresult, 2);
      MB_CHECK(a->result[0] == 10 && a->result[1] == 1); /* queued */
      MB_CHECK(!run_cmd(a, self, a->port, 2, 0));
      MB_CHECK(!run_cmd(a, self, a->port, 3, 0)); /* releases op 2 */
    } else if (a->phase == 3) {
      atomic_store(&a->done, 1);
    }
    return 0;
  }
  size_t n;
  const uint8_t *p = mb_msg_data(m, &n);
  return tk_is_atom(p, n, "stop");
}

MB_TEST(commands_direct_and_queued) {
  mb_runtime_t *rt = tk_runtime(2);
  atomic_store(&closes, 0);
  atomic_store(&frees, 0);
  actor_t own, use;
  memset(&own, 0, sizeof own);
  memset(&use, 0, sizeof use);
  own.step = owner_step;
  mb_pid_t op = actor_spawn(rt, &own, 0);
  TK_WAIT_UNTIL(atomic_load(&own.done), 5000);
  MB_CHECK(own.nresult == 2 && own.result[0] == 42 && own.result[1] == 0); /* direct */
  use.step = user_step;
  use.port = own.port;
  mb_pid_t up = actor_spawn(rt, &use, 1);
  TK_WAIT_UNTIL(atomic_load(&use.done), 5000);
  MB_CHECK(atomic_load(&use.done));
  /* the looked-up port is the same; its owner's exit closes it */
  mb_port_t *found = mb_port_lookup(rt, own.port->id);
  MB_CHECK(found == own.port);
  if (found) mb_port_unref(found);
  MB_CHECK(mb_port_owner(own.port) == op);
  tk_send_atom(rt, 0, op, "stop");
  TK_WAIT_UNTIL(atomic_load(&closes) == 1, 5000);
  MB_CHECK_EQ_INT(atomic_load(&closes), 1);
  MB_CHECK(!mb_port_is_open(own.port));
  MB_CHECK(mb_port_lookup(rt, own.port->id) == NULL);
  MB_CHECK_EQ_INT(atomic_load(&frees), 0); /* the test still holds a reference */
  mb_port_unref(own.port);
  MB_CHECK_EQ_INT(atomic_load(&frees), 1);
  tk_send_atom(rt, 0, up, "stop");
  mb_runtime_free(rt);
}

MB_TEST(handover_and_runtime_end) {
  mb_runtime_t *rt = tk_runtime(2);
  atomic_store(&closes, 0);
  atomic_store(&frees, 0);
  actor_t a, b, c;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  memset(&c, 0, sizeof c);
  a.step = owner_step;
  b.step = owner_step;
  c.step = owner_step;
  mb_pid_t pa = actor_spawn(rt, &a, 0);
  mb_pid_t pb = actor_spawn(rt, &b, 1);
  TK_WAIT_UNTIL(atomic_load(&a.done) && atomic_load(&b.done), 5000);
  /* a's port goes to b (another scheduler): a's exit leaves it open, b's closes it */
  MB_CHECK_EQ_INT(mb_port_set_owner(a.port, pb), 0);
  MB_CHECK(mb_port_owner(a.port) == pb);
  tk_send_atom(rt, 0, pa, "stop");
  TK_WAIT_UNTIL(atomic_load(&a.exited), 5000);
  tk_sleep_ms(20);
  MB_CHECK(mb_port_is_open(a.port));
  MB_CHECK_EQ_INT(atomic_load(&closes), 0);
  tk_send_atom(rt, 0, pb, "stop");
  TK_WAIT_UNTIL(atomic_load(&closes) == 2, 5000); /* a's (now b's) and b's own */
  MB_CHECK_EQ_INT(atomic_load(&closes), 2);
  /* to a dead process: noproc; a closed port: stopped */
  MB_CHECK_EQ_INT(mb_port_set_owner(a.port, pa), MB_ENOPROC);
  MB_CHECK_EQ_INT(mb_port_set_owner(a.port, pb), MB_ENOPROC);
  /* c's port is still open when the runtime ends: closed and freed then */
  actor_spawn(rt, &c, 1);
  TK_WAIT_UNTIL(atomic_load(&c.done), 5000);
  mb_port_unref(a.port);
  mb_port_unref(b.port);
  mb_runtime_free(rt);
  MB_CHECK_EQ_INT(atomic_load(&closes), 3);
  MB_CHECK(mb_port_is_open(c.port) == 0);
  mb_port_unref(c.port);
  MB_CHECK_EQ_INT(atomic_load(&frees), 3);
}

/* ---- TCP from native processes ---- */

static atomic_int tcp_port_no;

/* server: listens, accepts (waits), then collects {"tcp", Sock, Data}. */
static int server_step(actor_t *a, mb_proc_t *self, const mb_msg_t *m) {
  if (!m) {
    mb_sockopts_t o;
    mb_sockopts_default(&o);
    strcpy(o.address, "127.0.0.1");
    if (mb_tcp_listen(a->rt, mb_self(self), 0, &o, NULL, &a->port)) abort();
    mb_port_cmd_t *c = mb_port_cmd_new(a->rt, MB_TCP_SOCKNAME, mb_self(self), mb_make_ref(a->rt));
    MB_CHECK(mb_port_submit(a->port, c) == MB_PORT_DONE);
    size_t n;
    uint8_t *b = mb_enc_finish(&c->res, &n);
    mb_dec_t d;
    uint32_t ar;
    const uint8_t *ip;
    size_t il;
    int64_t portno = 0;
    mb_dec_init(&d, NULL, b + mb_msg_prefix(), n - mb_msg_prefix());
    mb_dec_tuple(&d, &ar);
    mb_dec_binary(&d, &ip, &il);
    mb_dec_int(&d, &portno);
    free(b);
    mb_port_cmd_free(c);
    atomic_store(&tcp_port_no, (int)portno);
    MB_CHECK(!run_cmd(a, self, a->port, MB_TCP_ACCEPT, 0)); /* waits: nobody connected yet */
    return 0;
  }
  size_t n;
  const uint8_t *p = mb_msg_data(m, &n);
  mb_ref_t ref;
  uint32_t ar;
  if (mb_msg_kind(m, &ref) == MB_MSG_REPLY) {
    take_reply(a, m); /* {Sock} */
    return 0;
  }
  if (tk_is_tagged(p, n, "tcp", &ar)) {
    mb_dec_t d;
    const uint8_t *b;
    size_t bl;
    uint64_t id;
    mb_dec_init(&d, NULL, p, n);
    mb_dec_tuple(&d, &ar);
    mb_dec_skip(&d);
    mb_dec_port(&d, &id);
    MB_CHECK(id == a->got_port);
    mb_dec_binary(&d, &b, &bl);
    size_t have = strlen(a->data);
    if (have + bl < sizeof a->data) memcpy(a->data + have, b, bl), a->data[have + bl] = 0;
    if (strlen(a->data) >= 5) atomic_store(&a->done, 1);
    return 0;
  }
  if (tk_is_tagged(p, n, "tcp_closed", &ar)) {
    atomic_store(&a->closed_seen, 1);
    return 0;
  }
  return tk_is_atom(p, n, "stop");
}

/* client: connects, sends "hello", then waits for "stop" (its exit closes the socket). */
static int client_step(actor_t *a, mb_proc_t *self, const mb_msg_t *m) {
  if (!m) {
    mb_port_cmd_t *c = mb_port_cmd_new(a->rt, 0, mb_self(self), mb_make_ref(a->rt));
    mb_sockopts_t o;
    mb_sockopts_default(&o);
    o.set = 0;
    MB_CHECK(mb_tcp_connect(c, "127.0.0.1", atomic_load(&tcp_port_no), &o, 5000, NULL, NULL) == MB_PORT_PENDING);
    return 0;
  }
  size_t n;
  const uint8_t *p = mb_msg_data(m, &n);
  mb_ref_t ref;
  if (mb_msg_kind(m, &ref) == MB_MSG_REPLY) {
    take_reply(a, m);
    if (a->phase++ == 0) {
      a->port = mb_port_lookup(a->rt, a->got_port);
      if (!a->port) abort();
      mb_port_cmd_t *c = mb_port_cmd_new(a->rt, MB_TCP_SEND, mb_self(self), mb_make_ref(a->rt));
      c->data = (const uint8_t *)"hello";
      c->len = 5;
      MB_CHECK(mb_port_submit(a->port, c) == MB_PORT_DONE);
      mb_port_cmd_free(c);
      atomic_store(&a->done, 1);
    }
    return 0;
  }
  return tk_is_atom(p, n, "stop");
}

MB_TEST(tcp_native) {
  mb_runtime_t *rt = tk_runtime(2);
  actor_t s, c;
  memset(&s, 0, sizeof s);
  memset(&c, 0, sizeof c);
  s.step = server_step;
  c.step = client_step;
  atomic_store(&tcp_port_no, 0);
  mb_pid_t sp = actor_spawn(rt, &s, 0);
  TK_WAIT_UNTIL(atomic_load(&tcp_port_no) != 0, 5000);
  mb_pid_t cp = actor_spawn(rt, &c, 1);
  TK_WAIT_UNTIL(atomic_load(&s.done), 5000);
  MB_CHECK(strcmp(s.data, "hello") == 0);
  MB_CHECK(s.got_port != 0);
  /* the client's exit closes its socket: the server sees tcp_closed */
  tk_send_atom(rt, 0, cp, "stop");
  TK_WAIT_UNTIL(atomic_load(&s.closed_seen), 5000);
  MB_CHECK_EQ_INT(atomic_load(&s.closed_seen), 1);
  MB_CHECK(!mb_port_is_open(c.port));
  mb_port_unref(c.port);
  /* the server's listener and socket stay open: the runtime's end closes them */
  (void)sp;
  mb_port_unref(s.port);
  mb_runtime_free(rt);
}

int main(void) {
  MB_RUN(commands_direct_and_queued);
  MB_RUN(handover_and_runtime_end);
  MB_RUN(tcp_native);
  return mb_test_summary();
}
