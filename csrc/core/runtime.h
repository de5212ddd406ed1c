/* runtime.h: the runtime object. Everything moonbeam keeps lives here: no global
 * state outside it (the only thread-local is "which scheduler is this thread"). */
#ifndef MB_RUNTIME_H
#define MB_RUNTIME_H

#include "proc.h"
#include "scheduler.h"
#include "strmap.h"

#define MB_NSIG 32

struct mb_runtime {
  int nsched;
  mb_sched_t *scheds;
  int host_driven;
  int preempt;
  uint64_t slice_ns;
  mb_sched_hooks_t hooks;
  mb_nodes_t *nodes;
  mb_ptable_t procs;
  atomic_int stopping;
  atomic_int spawning;                 /* spawns in flight; shutdown waits for 0 */
  _Atomic uint64_t ref_counter;
  atomic_uint next_sched;              /* tie-break for placement */
  pthread_mutex_t names_lock;          /* registry */
  mb_strmap_t names;
  pthread_mutex_t topics_lock;         /* pubsub */
  mb_strmap_t topics;
  pthread_t watchdog;
  int has_watchdog;
  atomic_int wd_quit;                  /* ends the watchdog (not stopping: it must outlive shutdown) */
  pthread_mutex_t wd_lock;             /* also guards log and the deadline's fields */
  pthread_cond_t wd_cond;
  int has_wd_lock;
  uint64_t long_schedule_ms;           /* a run longer than this is logged (100) */
  mb_log_fn log;
  void *log_ud;
  _Atomic uint64_t deadline_ns;        /* mb_runtime_exit_deadline: 0 none */
  uint64_t deadline_ms;
  int deadline_code;
  char deadline_what[64];
  int freed_sched0;
  uint32_t creation;                   /* this runtime's (fresh unless opts gave one) */
  pthread_mutex_t fin_lock;            /* mb_runtime_free waits on fin_cond for schedulers */
  pthread_cond_t fin_cond;
  int has_fin, has_sig;
  mb_reserve_t reserve;                /* message blocks for signals when malloc fails */
  /* OS signals forwarded as messages (ossignal.c), watched by a thread of their own */
  _Atomic mb_pid_t sig_pids[MB_NSIG];
  _Atomic uint64_t sig_deadline_ms[MB_NSIG]; /* mb_signal_exit_deadline: 0 none */
  atomic_int sig_deadline_code[MB_NSIG];
  atomic_int sig_dirty, sig_quit;
  uv_signal_t *sig_handles[MB_NSIG];   /* signal thread only */
  pthread_mutex_t sig_lock;            /* starting and ending the signal thread; requests */
  pthread_cond_t sig_cond;             /* a request was applied: sig_done caught up */
  uint64_t sig_req, sig_done;
  int sig_started;
  pthread_t sig_thread;
  uv_loop_t sig_loop;
  uv_async_t sig_async;
  /* ports (csrc/io/port.c), set when the first port opens: closes a process's
   * ports as it exits, a loop's ports before the loop closes, then frees */
  _Atomic(void *) io;
  void (*io_proc_exit)(mb_proc_t *p);
  void (*io_loop_close)(mb_sched_t *s);
  void (*io_free)(mb_runtime_t *rt);
};

/* Registry and pubsub cleanup for an exiting process. */
void mb_registry_drop(mb_runtime_t *rt, mb_proc_t *p);
void mb_pubsub_drop(mb_runtime_t *rt, mb_proc_t *p);
/* OS signal watchers: the lock at runtime start; the thread (if started) ends
 * with mb_ossignal_close. */
void mb_ossignal_init(mb_runtime_t *rt);
void mb_ossignal_close(mb_runtime_t *rt);
/* Preemption watchdog. */
int mb_watchdog_start(mb_runtime_t *rt);
void mb_watchdog_stop(mb_runtime_t *rt);
void mb_watchdog_install_handler(void);

#endif
