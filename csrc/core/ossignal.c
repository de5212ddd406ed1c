/* ossignal.c: OS signals (SIGINT, SIGTERM, ...) delivered as messages
 * {signal, 'SIGTERM'} to a chosen process. The watchers are libuv signal
 * handles on a loop of their own, run by a dedicated thread that never runs a
 * process, so a signal is delivered even while every scheduler is held by a
 * process stuck in a C call. The thread starts with the first request; a
 * request records the wanted pid, marks the table dirty and wakes the thread,
 * which starts or stops its watchers (a loop is only touched by its thread). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

static const char *signame(int signum) {
  switch (signum) {
  case SIGINT: return "SIGINT";
  case SIGTERM: return "SIGTERM";
  case SIGHUP: return "SIGHUP";
  case SIGUSR1: return "SIGUSR1";
  case SIGUSR2: return "SIGUSR2";
  case SIGQUIT: return "SIGQUIT";
  default: return NULL;
  }
}

static void on_signal(uv_signal_t *h, int signum) {
  mb_runtime_t *rt = h->data;
  mb_pid_t pid = atomic_load(&rt->sig_pids[signum]);
  const char *name = signame(signum);
  if (!pid || !name) return;
  mb_enc_t e;
  mb_enc_init(&e, rt->nodes, MB_MSG_HDR);
  mb_enc_tuple(&e, 2);
  mb_enc_atom(&e, "signal", 6);
  mb_enc_atom(&e, name, strlen(name));
  mb_send_enc(rt, 0, pid, &e);
}

static void close_all(mb_runtime_t *rt) {
  for (int i = 1; i < MB_NSIG; i++) {
    if (rt->sig_handles[i]) {
      uv_close((uv_handle_t *)rt->sig_handles[i], (uv_close_cb)free);
      rt->sig_handles[i] = NULL;
    }
  }
}

/* Starts and stops watchers as the table says (signal thread). */
static void on_request(uv_async_t *a) {
  mb_runtime_t *rt = a->data;
  if (atomic_load(&rt->sig_quit)) {
    close_all(rt);
    uv_close((uv_handle_t *)a, NULL);
    return;
  }
  if (!atomic_exchange(&rt->sig_dirty, 0)) return;
  for (int i = 1; i < MB_NSIG; i++) {
    int want = atomic_load(&rt->sig_pids[i]) != 0;
    if (want && !rt->sig_handles[i]) {
      uv_signal_t *h = malloc(sizeof *h);
      if (!h) continue;
      uv_signal_init(a->loop, h);
      h->data = rt;
      uv_signal_start(h, on_signal, i);
      rt->sig_handles[i] = h;
    } else if (!want && rt->sig_handles[i]) {
      uv_close((uv_handle_t *)rt->sig_handles[i], (uv_close_cb)free);
      rt->sig_handles[i] = NULL;
    }
  }
}

static void *signal_thread(void *arg) {
  mb_runtime_t *rt = arg;
  uv_run(&rt->sig_loop, UV_RUN_DEFAULT); /* until on_request closes everything */
  return NULL;
}

/* Starts the signal thread once; 0 or MB_ENOMEM. */
static int ensure_thread(mb_runtime_t *rt) {
  int err = 0;
  pthread_mutex_lock(&rt->sig_lock);
  if (!rt->sig_started) {
    err = MB_ENOMEM;
    if (uv_loop_init(&rt->sig_loop) == 0) {
      if (uv_async_init(&rt->sig_loop, &rt->sig_async, on_request) == 0) {
        rt->sig_async.data = rt;
        if (pthread_create(&rt->sig_thread, NULL, signal_thread, rt) == 0) {
          rt->sig_started = 1;
          err = 0;
        } else {
          uv_close((uv_handle_t *)&rt->sig_async, NULL);
          uv_run(&rt->sig_loop, UV_RUN_DEFAULT);
        }
      }
      if (err) uv_loop_close(&rt->sig_loop);
    }
  }
  pthread_mutex_unlock(&rt->sig_lock);
  return err;
}

int mb_signal_notify(mb_runtime_t *rt, int signum, mb_pid_t pid) {
  if (signum <= 0 || signum >= MB_NSIG || !signame(signum)) return MB_EINVAL;
  int err = ensure_thread(rt);
  if (err) return err;
  atomic_store(&rt->sig_pids[signum], pid);
  atomic_store(&rt->sig_dirty, 1);
  uv_async_send(&rt->sig_async);
  return 0;
}

void mb_ossignal_init(mb_runtime_t *rt) { pthread_mutex_init(&rt->sig_lock, NULL); }

void mb_ossignal_close(mb_runtime_t *rt) {
  pthread_mutex_lock(&rt->sig_lock);
  if (rt->sig_started) {
    atomic_store(&rt->sig_quit, 1);
    uv_async_send(&rt->sig_async);
    pthread_join(rt->sig_thread, NULL);
    uv_loop_close(&rt->sig_loop);
    rt->sig_started = 0;
  }
  pthread_mutex_unlock(&rt->sig_lock);
  pthread_mutex_destroy(&rt->sig_lock);
}
