/*
 * ring.c: a ring of native moonbeam processes passing a token, using only the
 * public API (moonbeam.h).
 *
 * The runtime gets one scheduler per core. RING_SIZE processes are spawned in
 * contiguous blocks, one block pinned to each scheduler, so the token runs
 * within a scheduler and crosses to the next one once per block (as a real
 * program keeps chatty processes together). Process i forwards the token to
 * process i+1 (the last to the first). The token is an integer: the hops still to go.
 * After LAPS laps it is back at process 0 with 0 hops left, and process 0 wakes
 * the main thread, which prints the time per hop and frees the runtime.
 *
 *   make run                      (builds and runs this)
 *   build/examples/ring [size] [laps]
 */
#include <moonbeam.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { RING_SIZE = 1000, LAPS = 100, WAIT_SECONDS = 60 };

typedef struct ring ring_t;

/* One ring member: its position and the ring it belongs to. */
typedef struct member {
  ring_t *ring;
  int index;
  int sched; /* scheduler it runs on, recorded when it starts */
} member_t;

struct ring {
  mb_runtime_t *rt;
  int size;
  mb_pid_t *pids;     /* written before the token is sent, read-only after */
  member_t *members;
  pthread_mutex_t lock;
  pthread_cond_t done_cv;
  int done;           /* 1 when the token has made every lap; under lock */
  int error;          /* first MB_E* a member hit; under lock */
};

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void finish(ring_t *r, int err) {
  pthread_mutex_lock(&r->lock);
  if (err && !r->error) r->error = err;
  r->done = 1;
  pthread_cond_signal(&r->done_cv);
  pthread_mutex_unlock(&r->lock);
}

/* Sends the integer `hops` from `from` to `to`, encoding straight into a message
 * buffer (mb_send_enc takes it without a copy). */
static int send_hops(mb_runtime_t *rt, mb_pid_t from, mb_pid_t to, int64_t hops) {
  mb_enc_t e;
  int err = mb_enc_init(&e, mb_runtime_nodes(rt), mb_msg_prefix());
  if (err == 0) err = mb_enc_int(&e, hops);
  if (err != 0) {
    mb_enc_discard(&e);
    return err;
  }
  return mb_send_enc(rt, from, to, &e);
}

/* A member's handler: NULL once at start, then each token. */
static int member_run(mb_proc_t *self, const mb_msg_t *msg, void *userdata) {
  member_t *m = userdata;
  ring_t *r = m->ring;
  if (msg == NULL) {
    m->sched = mb_proc_sched(self);
    return 0;
  }
  size_t len;
  const uint8_t *data = mb_msg_data(msg, &len);
  mb_dec_t d;
  int64_t hops;
  int err = mb_dec_init(&d, mb_runtime_nodes(r->rt), data, len);
  if (err == 0) err = mb_dec_int(&d, &hops);
  if (err != 0) {
    finish(r, err);
    return 0;
  }
  if (hops == 0) {
    finish(r, 0);
    return 0;
  }
  mb_pid_t next = r->pids[(m->index + 1) % r->size];
  err = send_hops(r->rt, mb_self(self), next, hops - 1);
  if (err != 0) finish(r, err);
  return 0;
}

static int fail(const char *what, int err) {
  fprintf(stderr, "ring: %s: %s\n", what, mb_strerror(err));
  return 1;
}

int main(int argc, char **argv) {
  int size = argc > 1 ? atoi(argv[1]) : RING_SIZE;
  int laps = argc > 2 ? atoi(argv[2]) : LAPS;
  if (size < 1 || laps < 1) {
    fprintf(stderr, "usage: %s [size >= 1] [laps >= 1]\n", argv[0]);
    return 2;
  }

  ring_t r = {.size = size};
  pthread_mutex_init(&r.lock, NULL);
  pthread_cond_init(&r.done_cv, NULL);
  r.pids = calloc((size_t)size, sizeof *r.pids);
  r.members = calloc((size_t)size, sizeof *r.members);
  if (!r.pids || !r.members) return fail("allocating the ring", MB_ENOMEM);

  mb_runtime_opts_t opts = {0}; /* schedulers = 0: one per core */
  int err = mb_runtime_new(&opts, &r.rt);
  if (err != 0) return fail("mb_runtime_new", err);
  int nsched = mb_runtime_schedulers(r.rt);

  double t0 = now_seconds();
  for (int i = 0; i < size; i++) {
    r.members[i] = (member_t){.ring = &r, .index = i, .sched = -1};
    /* Block placement: process i on scheduler i * nsched / size. */
    mb_spawn_opts_t so = {.scheduler = (int)((int64_t)i * nsched / size) + 1};
    err = mb_spawn_native(r.rt, member_run, NULL, &r.members[i], &so, &r.pids[i]);
    if (err != 0) {
      mb_runtime_free(r.rt);
      return fail("mb_spawn_native", err);
    }
  }
  double t1 = now_seconds();

  int64_t hops = (int64_t)size * laps;
  err = send_hops(r.rt, 0, r.pids[0], hops);
  if (err != 0) {
    mb_runtime_free(r.rt);
    return fail("sending the token", err);
  }

  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += WAIT_SECONDS;
  pthread_mutex_lock(&r.lock);
  while (!r.done && err == 0)
    err = pthread_cond_timedwait(&r.done_cv, &r.lock, &deadline);
  int done = r.done, ring_err = r.error;
  pthread_mutex_unlock(&r.lock);
  double t2 = now_seconds();

  mb_stats_t st = {0};
  mb_runtime_stats(r.rt, -1, &st);
  mb_runtime_free(r.rt);

  if (!done) {
    fprintf(stderr, "ring: the token did not come back within %d s\n", WAIT_SECONDS);
    return 1;
  }
  if (ring_err != 0) return fail("passing the token", ring_err);

  int *per_sched = calloc((size_t)nsched, sizeof *per_sched);
  for (int i = 0; per_sched && i < size; i++)
    if (r.members[i].sched >= 0 && r.members[i].sched < nsched) per_sched[r.members[i].sched]++;
  int used = 0; /* schedulers holding part of the ring */
  for (int s = 0; per_sched && s < nsched; s++) used += per_sched[s] > 0;

  printf("ring: %d native processes on %d schedulers (", size, nsched);
  for (int s = 0; per_sched && s < nsched; s++) printf("%s%d", s ? " + " : "", per_sched[s]);
  printf("), %d scheduler crossings per lap\n", used > 1 ? used : 0);
  printf("spawn: %.3f ms, %.2f us per process\n", (t1 - t0) * 1e3, (t1 - t0) * 1e6 / size);
  printf("token: %d laps, %lld hops in %.3f ms, %.1f ns per hop\n", laps, (long long)hops,
         (t2 - t1) * 1e3, (t2 - t1) * 1e9 / (double)hops);
  printf("runtime: %llu messages sent, %llu received\n", (unsigned long long)st.sent,
         (unsigned long long)st.received);

  free(per_sched);
  free(r.members);
  free(r.pids);
  pthread_cond_destroy(&r.done_cv);
  pthread_mutex_destroy(&r.lock);
  return 0;
}
