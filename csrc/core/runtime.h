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
  pthread_mutex_t wd_lock;
  pthread_cond_t wd_cond;
  int freed_sched0;
  /* OS signals forwarded as messages (ossignal.c); handles owned by scheduler 0 */
  _Atomic mb_pid_t sig_pids[MB_NSIG];
  atomic_int sig_dirty;
  uv_signal_t *sig_handles[MB_NSIG];
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
/* OS signal watchers: started/stopped by scheduler 0 on its thread. */
void mb_ossignal_sync(mb_sched_t *s);
void mb_ossignal_close(mb_runtime_t *rt);
/* Preemption watchdog. */
int mb_watchdog_start(mb_runtime_t *rt);
void mb_watchdog_stop(mb_runtime_t *rt);
void mb_watchdog_install_handler(void);

#endif
