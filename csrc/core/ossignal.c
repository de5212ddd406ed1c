/* ossignal.c: OS signals (SIGINT, SIGTERM, ...) delivered as messages
 * {signal, 'SIGTERM'} to a chosen process. Handles are libuv signal watchers on
 * scheduler 0's loop; since a loop may only be touched by its own thread, a
 * request only records the wanted pid and marks the table dirty, and scheduler
 * 0 starts or stops its watchers on its next pass (mb_ossignal_sync). */
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

int mb_signal_notify(mb_runtime_t *rt, int signum, mb_pid_t pid) {
  if (signum <= 0 || signum >= MB_NSIG || !signame(signum)) return MB_EINVAL;
  atomic_store(&rt->sig_pids[signum], pid);
  atomic_store(&rt->sig_dirty, 1);
  if (mb_sched_current() == &rt->scheds[0]) mb_ossignal_sync(&rt->scheds[0]); /* effective now */
  else mb_sched_kick(&rt->scheds[0]);
  return 0;
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

void mb_ossignal_sync(mb_sched_t *s) {
  mb_runtime_t *rt = s->rt;
  if (!atomic_exchange(&rt->sig_dirty, 0)) return;
  for (int i = 1; i < MB_NSIG; i++) {
    int want = atomic_load(&rt->sig_pids[i]) != 0;
    if (want && !rt->sig_handles[i]) {
      uv_signal_t *h = malloc(sizeof *h);
      if (!h) continue;
      uv_signal_init(&s->loop, h);
      h->data = rt;
      uv_signal_start(h, on_signal, i);
      rt->sig_handles[i] = h;
    } else if (!want && rt->sig_handles[i]) {
      uv_close((uv_handle_t *)rt->sig_handles[i], (uv_close_cb)free);
      rt->sig_handles[i] = NULL;
    }
  }
}

void mb_ossignal_close(mb_runtime_t *rt) {
  for (int i = 1; i < MB_NSIG; i++) {
    if (rt->sig_handles[i]) {
      uv_close((uv_handle_t *)rt->sig_handles[i], (uv_close_cb)free);
      rt->sig_handles[i] = NULL;
    }
  }
}
