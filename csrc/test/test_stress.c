/* test_stress.c: everything at once on a multi-scheduler runtime.
 *
 *   - 4 OS threads and 2 sender processes each send {Sender, Seq}, Seq = 0..M-1,
 *     to each of 200 receiver processes; every receiver checks that each
 *     sender's numbers come in order with no gap and no repeat;
 *   - one receiver in ten is killed half way (it must have seen an unbroken
 *     prefix of each sender's numbers); the others must get all of them;
 *   - two spawner processes (trapping exits) keep spawning children with
 *     link + monitor from inside their handler, while a killer thread ends those
 *     children by kill, by other reasons, by a message, or by normal-then-kill,
 *     and sends to them after; each spawner must see exactly one EXIT and one
 *     DOWN per child;
 *   - the killer thread also spawns named, subscribed processes from outside and
 *     kills them, broadcasting to their topic meanwhile: no name or subscription
 *     may outlive them;
 *   - an inspector thread reads stats, the process list, process info and links
 *     the whole time.
 * At the end the runtime's counters must add up and the runtime is freed (ASan
 * checks for leaks).
 *
 * Scale: argv[1] or MB_STRESS_SCALE (default 5; M = 100 * scale messages per
 * sender and receiver, 200 * scale children per spawner, 200 * scale named
 * processes). MB_STRESS_SCHEDULERS sets the schedulers (default 3). The
 * default is sized to finish well under a minute under TSan. */
#include <stdatomic.h>
#include "mb_test.h"
#include "testkit.h"

#define RECEIVERS 200
#define THREAD_SENDERS 4
#define PROC_SENDERS 2
#define SENDERS (THREAD_SENDERS + PROC_SENDERS)
#define SPAWNERS 2
#define VICTIM_EVERY 10
#define LONG_WAIT_MS 120000

static int scale = 5, nsched = 3;
static int M;          /* messages per sender per receiver */
static int CHILDREN;   /* per spawner */
static int NAMED;      /* named processes the killer spawns */

static mb_runtime_t *rt;

/* ---------------------------------------------------------------- receivers */

typedef struct recv {
  mb_pid_t pid;
  int victim;
  uint32_t next[SENDERS];
  uint64_t count;
  int errors;
  /* published to the test thread */
  atomic_int reported, exited;
  uint64_t final_count;
  int final_errors;
  char reason[32];
} recv_t;

static recv_t recvs[RECEIVERS];

static int recv_fn(mb_proc_t *self, const mb_msg_t *m, void *ud) {
  (void)self;
  recv_t *r = ud;
  if (!m) return 0;
  size_t n;
  const uint8_t *p = mb_msg_data(m, &n);
  mb_dec_t d;
  uint32_t a;
  int64_t s, seq;
  if (!mb_dec_init(&d, NULL, p, n) && !mb_dec_tuple(&d, &a) && a == 2 && !mb_dec_int(&d, &s) &&
      !mb_dec_int(&d, &seq)) {
    if (s < 0 || s >= SENDERS || seq != (int64_t)r->next[s]) r->errors++;
    else r->next[s]++;
    r->count++;
    return 0;
  }
  if (tk_is_atom(p, n, "report")) {
    r->final_count = r->count;
    r->final_errors = r->errors;
    atomic_store_explicit(&r->reported, 1, memory_order_release);
    return 0;
  }
  r->errors++; /* nothing else is ever sent to a receiver */
  return 0;
}

static void recv_exit(void *ud, const uint8_t *reason, size_t len) {
  recv_t *r = ud;
  mb_dec_t d;
  const char *s;
  size_t n;
  r->final_count = r->count;
  r->final_errors = r->errors;
  if (!mb_dec_init(&d, NULL, reason, len) && !mb_dec_atom(&d, &s, &n) && n < sizeof r->reason) {
    memcpy(r->reason, s, n);
    r->reason[n] = 0;
  }
  atomic_store_explicit(&r->exited, 1, memory_order_release);
}

/* ---------------------------------------------------------------- senders */

static atomic_long sent_total; /* progress, for the killer */

static void send_seq(mb_pid_t from, mb_pid_t to, int sender, int seq) {
  mb_enc_t e;
  mb_enc_init(&e, NULL, mb_msg_prefix());
  mb_enc_tuple(&e, 2);
  mb_enc_int(&e, sender);
  mb_enc_int(&e, seq);
  mb_send_enc(rt, from, to, &e);
}

static void *thread_sender(void *arg) {
  int idx = (int)(intptr_t)arg;
  for (int seq = 0; seq < M; seq++) {
    for (int r = 0; r < RECEIVERS; r++) send_seq(0, recvs[r].pid, idx, seq);
    atomic_fetch_add(&sent_total, RECEIVERS);
  }
  return NULL;
}

/* A sender process: one round (one message to every receiver) per handler
 * call, then a message to itself for the next round, so it shares its
 * scheduler with others. */
typedef struct psender {
  int idx, seq;
  atomic_int done;
} psender_t;

static psender_t psenders[PROC_SENDERS];

static int psender_fn(mb_proc_t *self, const mb_msg_t *m, void *ud) {
  psender_t *ps = ud;
  if (!m) return 0;
  for (int r = 0; r < RECEIVERS; r++) send_seq(mb_self(self), recvs[r].pid, ps->idx, ps->seq);
  atomic_fetch_add(&sent_total, RECEIVERS);
  if (++ps->seq == M) {
    atomic_store(&ps->done, 1);
    return 1;
  }
  tk_send_atom(rt, mb_self(self), mb_self(self), "next");
  return 0;
}

/* ---------------------------------------------------------------- spawners */

/* Children handed to the killer. */
static pthread_mutex_t ring_mu = PTHREAD_MUTEX_INITIALIZER;
static mb_pid_t *ring;
static int ring_head, ring_tail;

typedef struct spawner {
  int spawned, exits, downs, spawn_errors, strays;
  mb_ref_t ref;
  atomic_int done;
  int final_spawned, final_exits, final_downs, final_errors, final_strays;
} spawner_t;

static spawner_t spawners[SPAWNERS];

static int child_fn(mb_proc_t *self, const mb_msg_t *m, void *ud) {
  (void)self, (void)ud;
  if (!m) return 0;
  size_t n;
  const uint8_t *p = mb_msg_data(m, &n);
  return tk_is_atom(p, n, "stop");
}

static void spawner_check_done(spawner_t *s) {
  if (s->spawned == CHILDREN && s->exits == CHILDREN && s->downs == CHILDREN) {
    s->final_spawned = s->spawned;
    s->final_exits = s->exits;
    s->final_downs = s->downs;
    s->final_errors = s->spawn_errors;
    s->final_strays = s->strays;
    atomic_store_explicit(&s->done, 1, memory_order_release);
  }
}

static int spawner_fn(mb_proc_t *self, const mb_msg_t *m, void *ud) {
  spawner_t *s = ud;
  if (!m) return 0;
  size_t n;
  const uint8_t *p = mb_msg_data(m, &n);
  uint32_t a;
  if (tk_is_atom(p, n, "tick")) {
    if (s->spawned < CHILDREN) {
      mb_spawn_opts_t o = {0};
      o.parent = self;
      o.link = 1;
      o.monitor = 1;
      o.mon_ref = &s->ref;
      mb_pid_t child;
      if (mb_spawn_native(rt, child_fn, NULL, NULL, &o, &child)) {
        s->spawn_errors++;
      } else {
        s->spawned++;
        pthread_mutex_lock(&ring_mu);
        ring[ring_tail++] = child;
        pthread_mutex_unlock(&ring_mu);
      }
      tk_send_atom(rt, mb_self(self), mb_self(self), "tick");
    }
  } else if (tk_is_tagged(p, n, "EXIT", &a) && a == 3) {
    s->exits++;
  } else if (tk_is_tagged(p, n, "DOWN", &a) && a == 5) {
    s->downs++;
  } else {
    s->strays++;
  }
  spawner_check_done(s);
  return 0;
}

/* ---------------------------------------------------------------- killer */

static atomic_int killer_done;
static int killer_kills, named_spawned, named_failed;

static int idle_fn(mb_proc_t *self, const mb_msg_t *m, void *ud) {
  (void)self, (void)m, (void)ud;
  return 0;
}

static void end_child(mb_pid_t pid, int how) {
  switch (how & 3) {
  case 0: tk_exit(rt, 0, pid, "kill"); break;
  case 1: tk_exit(rt, 0, pid, "boom"); break;
  case 2: tk_send_atom(rt, 0, pid, "stop"); break;
  default:
    tk_exit(rt, 0, pid, "normal"); /* ignored: it does not trap */
    tk_exit(rt, 0, pid, "shutdown");
    break;
  }
  tk_send_atom(rt, 0, pid, "late"); /* to a dying or dead process: dropped */
}

static void *killer(void *arg) {
  (void)arg;
  int total_children = SPAWNERS * CHILDREN, ended = 0, victims_killed = 0, named = 0;
  long half = (long)SENDERS * M * RECEIVERS / 2;
  tk_term t = tk_int(1);
  while (ended < total_children || named < NAMED || !victims_killed) {
    int progressed = 0;
    mb_pid_t pid = 0;
    pthread_mutex_lock(&ring_mu);
    if (ring_head < ring_tail) pid = ring[ring_head++];
    pthread_mutex_unlock(&ring_mu);
    if (pid) {
      end_child(pid, ended++);
      killer_kills++;
      progressed = 1;
    }
    if (named < NAMED) {
      char name[32];
      snprintf(name, sizeof name, "churn%d", named);
      mb_spawn_opts_t o = {0};
      o.name = name;
      mb_pid_t np;
      if (mb_spawn_native(rt, idle_fn, NULL, NULL, &o, &np) == 0) {
        named_spawned++;
        if (mb_whereis(rt, name) != np) named_failed++;
        if (mb_subscribe(rt, "churn", np)) named_failed++;
        mb_broadcast(rt, 0, "churn", 0, t.p, t.n);
        tk_exit(rt, 0, np, named & 1 ? "kill" : "boom");
      } else {
        named_failed++;
      }
      named++;
      progressed = 1;
    }
    if (!victims_killed && atomic_load(&sent_total) >= half) {
      for (int r = 0; r < RECEIVERS; r++)
        if (recvs[r].victim) tk_exit(rt, 0, recvs[r].pid, r & 1 ? "kill" : "boom");
      victims_killed = 1;
      progressed = 1;
    }
    if (!progressed) tk_sleep_us(100);
  }
  tk_free(t);
  atomic_store(&killer_done, 1);
  return NULL;
}

/* ---------------------------------------------------------------- inspector */

static atomic_int inspect_stop;
static long inspections, inspect_errors;

static void *inspector(void *arg) {
  (void)arg;
  mb_pid_t *pids = malloc(4096 * sizeof *pids);
  while (!atomic_load(&inspect_stop)) {
    mb_stats_t st;
    mb_runtime_stats(rt, -1, &st);
    for (int s = 0; s < nsched; s++) mb_runtime_stats(rt, s, &st);
    size_t n = mb_processes(rt, pids, 4096);
    if (n > 4096) n = 4096;
    for (size_t i = 0; i < n; i += 7) {
      mb_proc_info_t info;
      mb_pid_t links[8];
      if (mb_proc_info(rt, pids[i], &info) == 0 &&
          (info.scheduler < 0 || info.scheduler >= nsched || info.status < MB_STATUS_RUNNABLE ||
           info.status > MB_STATUS_EXITING))
        inspect_errors++;
      mb_proc_links(rt, pids[i], links, 8);
    }
    mb_subscribers(rt, "churn");
    inspections++;
    tk_sleep_us(200); /* leave the CPUs to the schedulers most of the time */
  }
  free(pids);
  return NULL;
}

/* ---------------------------------------------------------------- the test */

static int all_reported(void) {
  for (int r = 0; r < RECEIVERS; r++)
    if (!recvs[r].victim && !atomic_load_explicit(&recvs[r].reported, memory_order_acquire)) return 0;
  return 1;
}

static int victims_exited(void) {
  for (int r = 0; r < RECEIVERS; r++)
    if (recvs[r].victim && !atomic_load_explicit(&recvs[r].exited, memory_order_acquire)) return 0;
  return 1;
}

static int spawners_done(void) {
  for (int i = 0; i < SPAWNERS; i++)
    if (!atomic_load_explicit(&spawners[i].done, memory_order_acquire)) return 0;
  return 1;
}

static int psenders_done(void) {
  for (int i = 0; i < PROC_SENDERS; i++)
    if (!atomic_load(&psenders[i].done)) return 0;
  return 1;
}

static int counters_settled(long alive) {
  mb_stats_t st;
  mb_runtime_stats(rt, -1, &st);
  return st.spawned == st.exited + st.processes && (long)st.processes == alive;
}

MB_TEST(stress_send_spawn_kill) {
  M = 100 * scale;
  CHILDREN = 200 * scale;
  NAMED = 200 * scale;
  mb_runtime_opts_t o;
  memset(&o, 0, sizeof o);
  o.schedulers = nsched;
  MB_REQUIRE(mb_runtime_new(&o, &rt) == 0);
  ring = calloc((size_t)SPAWNERS * CHILDREN, sizeof *ring);
  uint64_t t0 = tk_now_ns();

  for (int r = 0; r < RECEIVERS; r++) {
    recvs[r].victim = r % VICTIM_EVERY == VICTIM_EVERY - 1;
    MB_REQUIRE(mb_spawn_native(rt, recv_fn, recv_exit, &recvs[r], NULL, &recvs[r].pid) == 0);
  }
  mb_pid_t sp_pids[SPAWNERS], ps_pids[PROC_SENDERS];
  for (int i = 0; i < SPAWNERS; i++) {
    mb_spawn_opts_t so = {0};
    so.trap_exit = 1;
    MB_REQUIRE(mb_spawn_native(rt, spawner_fn, NULL, &spawners[i], &so, &sp_pids[i]) == 0);
  }
  for (int i = 0; i < PROC_SENDERS; i++) {
    psenders[i].idx = THREAD_SENDERS + i;
    MB_REQUIRE(mb_spawn_native(rt, psender_fn, NULL, &psenders[i], NULL, &ps_pids[i]) == 0);
  }
  pthread_t senders[THREAD_SENDERS], kth, ith;
  pthread_create(&ith, NULL, inspector, NULL);
  pthread_create(&kth, NULL, killer, NULL);
  for (int i = 0; i < SPAWNERS; i++) tk_send_atom(rt, 0, sp_pids[i], "tick");
  for (int i = 0; i < PROC_SENDERS; i++) tk_send_atom(rt, 0, ps_pids[i], "go");
  for (int i = 0; i < THREAD_SENDERS; i++)
    pthread_create(&senders[i], NULL, thread_sender, (void *)(intptr_t)i);

  for (int i = 0; i < THREAD_SENDERS; i++) pthread_join(senders[i], NULL);
  TK_WAIT_UNTIL(psenders_done(), LONG_WAIT_MS);
  MB_CHECK(psenders_done());
  pthread_join(kth, NULL);
  uint64_t t_sent = tk_now_ns();
  /* every sender's last push is done: a report queued now comes after them */
  for (int r = 0; r < RECEIVERS; r++)
    if (!recvs[r].victim) tk_send_atom(rt, 0, recvs[r].pid, "report");
  TK_WAIT_UNTIL(all_reported() && victims_exited() && spawners_done(), LONG_WAIT_MS);
  uint64_t t_done = tk_now_ns();
  MB_CHECK(all_reported());
  MB_CHECK(victims_exited());
  MB_CHECK(spawners_done());

  /* receivers */
  long got = 0, missing = 0, errors = 0, victim_got = 0, victims = 0, bad_reason = 0;
  for (int r = 0; r < RECEIVERS; r++) {
    recv_t *rc = &recvs[r];
    errors += rc->final_errors;
    if (rc->victim) {
      victims++;
      victim_got += (long)rc->final_count;
      if (strcmp(rc->reason, r & 1 ? "killed" : "boom")) bad_reason++;
      if (rc->final_count > (uint64_t)SENDERS * M) errors++;
    } else {
      got += (long)rc->final_count;
      missing += (long)SENDERS * M - (long)rc->final_count;
    }
  }
  MB_CHECK_EQ_INT(errors, 0);
  MB_CHECK_EQ_INT(missing, 0);
  MB_CHECK_EQ_INT(bad_reason, 0);
  /* spawners */
  for (int i = 0; i < SPAWNERS; i++) {
    spawner_t *s = &spawners[i];
    MB_CHECK_EQ_INT(s->final_spawned, CHILDREN);
    MB_CHECK_EQ_INT(s->final_exits, CHILDREN);
    MB_CHECK_EQ_INT(s->final_downs, CHILDREN);
    MB_CHECK_EQ_INT(s->final_errors, 0);
    MB_CHECK_EQ_INT(s->final_strays, 0);
  }
  /* killer's named processes: nothing of them is left */
  MB_CHECK_EQ_INT(named_spawned, NAMED);
  MB_CHECK_EQ_INT(named_failed, 0);
  TK_WAIT_UNTIL(mb_subscribers(rt, "churn") == 0, LONG_WAIT_MS);
  MB_CHECK_EQ_INT(mb_subscribers(rt, "churn"), 0);
  int names_left = 0;
  for (int i = 0; i < NAMED; i++) {
    char name[32];
    snprintf(name, sizeof name, "churn%d", i);
    names_left += mb_whereis(rt, name) != 0;
  }
  MB_CHECK_EQ_INT(names_left, 0);
  /* counters */
  atomic_store(&inspect_stop, 1);
  pthread_join(ith, NULL);
  MB_CHECK(inspections > 0);
  MB_CHECK_EQ_INT(inspect_errors, 0);
  /* alive: the non-victim receivers and the spawners (the last children may
   * still be finishing their exit: wait for the counters to settle) */
  long alive_want = RECEIVERS - victims + SPAWNERS;
  TK_WAIT_UNTIL(counters_settled(alive_want), LONG_WAIT_MS);
  mb_stats_t st;
  mb_runtime_stats(rt, -1, &st);
  MB_CHECK_EQ_INT(st.spawned, st.exited + st.processes);
  MB_CHECK_EQ_INT(st.processes, alive_want);
  MB_CHECK_EQ_INT(mb_processes(rt, NULL, 0), alive_want);
  long want_spawned = RECEIVERS + SPAWNERS + PROC_SENDERS + SPAWNERS * CHILDREN + NAMED;
  MB_CHECK_EQ_INT(st.spawned, want_spawned);
  MB_CHECK(st.received >= (uint64_t)got);

  mb_runtime_free(rt);
  uint64_t t_end = tk_now_ns();
  long total = (long)SENDERS * M * RECEIVERS;
  printf("  stress: scale %d, %d schedulers; %d receivers x %d senders x %d messages = %ld "
         "messages (%ld delivered, %ld to victims before they died); %ld processes spawned, "
         "%d ended by the killer; %ld inspections\n",
         scale, nsched, RECEIVERS, SENDERS, M, total, got + victim_got, victim_got,
         want_spawned, killer_kills, inspections);
  printf("  stress: sent in %.2f s, all delivered in %.2f s (%.0f messages/s), total %.2f s\n",
         (t_sent - t0) / 1e9, (t_done - t0) / 1e9, (got + victim_got) / ((t_done - t0) / 1e9),
         (t_end - t0) / 1e9);
  free(ring);
}

int main(int argc, char **argv) {
  const char *s = argc > 1 ? argv[1] : getenv("MB_STRESS_SCALE");
  if (s && atoi(s) > 0) scale = atoi(s);
  const char *ns = getenv("MB_STRESS_SCHEDULERS");
  if (ns && atoi(ns) > 0) nsched = atoi(ns);
  MB_RUN(stress_send_spawn_kill);
  return mb_test_summary();
}
