/* test_watchdog.c: what the watchdog thread does while processes hold their
 * schedulers in C: long_schedule warnings naming the process, OS signals
 * delivered without any scheduler, an exit deadline that names what did not
 * stop, and a shutdown that waits without burning a core. */
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include "mb_test.h"
#include "testkit.h"

#define WAIT_MS 3000

typedef struct logbuf {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  char text[4096];
  int lines;
} logbuf_t;

static void capture(void *ud, int level, const char *msg) {
  logbuf_t *b = ud;
  pthread_mutex_lock(&b->mu);
  size_t n = strlen(b->text);
  snprintf(b->text + n, sizeof b->text - n, "%d %s\n", level, msg);
  b->lines++;
  pthread_cond_broadcast(&b->cv);
  pthread_mutex_unlock(&b->mu);
}

static int wait_lines(logbuf_t *b, int n, int ms) {
  struct timespec ts;
  tk_deadline(&ts, ms);
  pthread_mutex_lock(&b->mu);
  while (b->lines < n)
    if (pthread_cond_timedwait(&b->cv, &b->mu, &ts)) break;
  int got = b->lines;
  pthread_mutex_unlock(&b->mu);
  return got >= n;
}

/* A native process that, on each integer message n, blocks its thread in C
 * for n ms (as a blocking socket call or os.execute("sleep") would). */
static int sleeper(mb_proc_t *self, const mb_msg_t *m, void *ud) {
  (void)self, (void)ud;
  if (!m) return 0;
  size_t n;
  const uint8_t *p = mb_msg_data(m, &n);
  mb_dec_t d;
  int64_t ms;
  if (mb_dec_init(&d, NULL, p, n) || mb_dec_int(&d, &ms)) return 0;
  /* preemption's SIGURG interrupts nanosleep: sleep again, as a blocking call retries */
  uint64_t end = tk_now_ns() + (uint64_t)ms * 1000000u;
  while (tk_now_ns() < end) tk_sleep_ms(1);
  return 0;
}

static mb_pid_t spawn_sleeper(mb_runtime_t *rt, int sched, const char *name) {
  mb_spawn_opts_t o = {0};
  o.scheduler = sched + 1;
  o.name = name;
  mb_pid_t pid = 0;
  if (mb_spawn_native(rt, sleeper, NULL, NULL, &o, &pid)) abort();
  return pid;
}

static mb_runtime_t *runtime_with(int nsched, int preempt) {
  mb_runtime_opts_t o = {0};
  o.schedulers = nsched;
  o.preempt = preempt;
  mb_runtime_t *rt = NULL;
  if (mb_runtime_new(&o, &rt)) abort();
  return rt;
}

static void long_schedule_case(int preempt) {
  mb_runtime_t *rt = runtime_with(2, preempt);
  logbuf_t b = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, "", 0};
  mb_runtime_set_log(rt, capture, &b);
  mb_pid_t quick = spawn_sleeper(rt, 0, NULL), slow = spawn_sleeper(rt, 1, "sleepy\x01");
  tk_send_int(rt, 0, quick, 20); /* well under 100 ms: not reported */
  tk_sleep_ms(60);
  tk_send_int(rt, 0, slow, 400);
  MB_CHECK(wait_lines(&b, 1, WAIT_MS));
  char want[96];
  snprintf(want, sizeof want, "process <0.%u.%u> (sleepy?) has held scheduler 2 for", mb_pid_index(slow),
           mb_pid_serial(slow));
  pthread_mutex_lock(&b.mu);
  MB_CHECK(strstr(b.text, want) != NULL);
  MB_CHECK(strncmp(b.text, "1 long_schedule: ", 17) == 0);
  pthread_mutex_unlock(&b.mu);
  tk_sleep_ms(500); /* the slow run ends: still one warning for it */
  pthread_mutex_lock(&b.mu);
  MB_CHECK_EQ_INT(b.lines, 1);
  if (b.lines != 1) printf("  log: %s", b.text);
  pthread_mutex_unlock(&b.mu);
  mb_runtime_free(rt);
}

MB_TEST(long_schedule_names_the_process) { long_schedule_case(1); }
MB_TEST(long_schedule_without_preemption) { long_schedule_case(0); }

MB_TEST(os_signal_delivered_while_schedulers_are_stuck) {
  mb_runtime_t *rt = runtime_with(2, 1);
  tk_probe_t *pr = tk_probe_on(rt, 1, 0);
  MB_REQUIRE(mb_signal_notify(rt, SIGUSR1, pr->pid) == 0);
  tk_sleep_ms(50); /* the watcher is up */
  /* scheduler 1 (where a runtime used to watch signals) is held for 1.5 s */
  mb_pid_t stuck = spawn_sleeper(rt, 0, NULL);
  tk_send_int(rt, 0, stuck, 1500);
  tk_sleep_ms(50);
  uint64_t t0 = tk_now_ns();
  raise(SIGUSR1);
  tk_item_t *it = tk_wait(pr, 1000);
  MB_CHECK(it && tk_is_tagged(it->data, it->len, "signal", NULL) &&
           tk_elem_is_atom(it->data, it->len, 1, "SIGUSR1"));
  MB_CHECK(tk_now_ns() - t0 < 1000000000ull);
  free(it);
  MB_CHECK_EQ_INT(mb_signal_notify(rt, SIGUSR1, 0), 0);
  mb_runtime_free(rt);
  tk_probe_free(pr);
}

MB_TEST(exit_deadline_names_what_did_not_stop) {
  int fds[2];
  MB_REQUIRE(pipe(fds) == 0);
  pid_t child = fork();
  MB_REQUIRE(child >= 0);
  if (child == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    mb_runtime_t *rt = runtime_with(2, 1);
    mb_pid_t stuck = spawn_sleeper(rt, 0, "stuck_in_c");
    spawn_sleeper(rt, 1, "idle_one");
    tk_send_int(rt, 0, stuck, 20000);
    tk_sleep_ms(50);
    mb_runtime_exit_deadline(rt, 200, 7, "application shutdown");
    mb_runtime_free(rt); /* waits for the stuck process: the deadline ends it */
    _exit(0);
  }
  close(fds[1]);
  char out[4096] = "";
  size_t n = 0;
  uint64_t end = tk_now_ns() + 10000000000ull;
  struct pollfd pf = {fds[0], POLLIN, 0};
  while (n + 1 < sizeof out && tk_now_ns() < end && poll(&pf, 1, 100) >= 0) {
    if (!(pf.revents & (POLLIN | POLLHUP))) continue;
    ssize_t r = read(fds[0], out + n, sizeof out - 1 - n);
    if (r <= 0) break;
    n += (size_t)r;
  }
  out[n] = 0;
  close(fds[0]);
  int status = 0;
  for (int i = 0; i < 100 && waitpid(child, &status, WNOHANG) == 0; i++) tk_sleep_ms(50);
  if (!WIFEXITED(status)) kill(child, SIGKILL), waitpid(child, &status, 0);
  MB_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 7);
  MB_CHECK(strstr(out, "moonbeam: error: application shutdown did not finish within 200 ms") != NULL);
  MB_CHECK(strstr(out, "(stuck_in_c) holds scheduler 1") != NULL);
  /* shutdown had ended the other scheduler's processes: only the stuck one is left */
  MB_CHECK(strstr(out, "1 process still alive: <0.") != NULL && strstr(out, "(idle_one)") == NULL);
  MB_CHECK(strstr(out, "exiting with code 7") != NULL);
  if (!strstr(out, "stuck_in_c")) printf("  child said: %s\n", out);
}

MB_TEST(disarmed_deadline_does_nothing) {
  mb_runtime_t *rt = runtime_with(1, 0);
  MB_CHECK_EQ_INT(mb_runtime_exit_deadline(rt, 50, 9, NULL), 0);
  MB_CHECK_EQ_INT(mb_runtime_exit_deadline(rt, UINT64_MAX, 0, NULL), 0);
  tk_sleep_ms(150); /* still here: it did not _exit(9) */
  MB_CHECK(1);
  mb_runtime_free(rt);
}

MB_TEST(shutdown_waits_without_spinning) {
  mb_runtime_t *rt = runtime_with(2, 1);
  mb_pid_t stuck = spawn_sleeper(rt, 0, NULL);
  tk_send_int(rt, 0, stuck, 400);
  tk_sleep_ms(30);
  struct timespec c0, c1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
  uint64_t t0 = tk_now_ns();
  mb_runtime_free(rt); /* scheduler 1 finishes only after the 400 ms call */
  uint64_t wall = tk_now_ns() - t0;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
  uint64_t cpu = (uint64_t)(c1.tv_sec - c0.tv_sec) * 1000000000ull + (uint64_t)c1.tv_nsec - (uint64_t)c0.tv_nsec;
  printf("  (shutdown waited %.0f ms using %.2f ms of CPU)\n", wall / 1e6, cpu / 1e6);
  MB_CHECK(wall > 250000000ull);
  MB_CHECK(cpu < wall / 10);
}

int main(void) {
  MB_RUN(long_schedule_names_the_process);
  MB_RUN(long_schedule_without_preemption);
  MB_RUN(os_signal_delivered_while_schedulers_are_stuck);
  MB_RUN(exit_deadline_names_what_did_not_stop);
  MB_RUN(disarmed_deadline_does_nothing);
  MB_RUN(shutdown_waits_without_spinning);
  return mb_test_summary();
}
