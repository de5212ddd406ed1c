/* inspect.c: counters and per-process inspection, readable from any thread.
 * Counters are relaxed atomics written by their owner; process data is read
 * under a ref (the slot cannot be reused meanwhile) and, for links and
 * monitors, the process's spinlock. */
#include <string.h>
#include "runtime.h"

static uint64_t ld(_Atomic uint64_t *c) { return atomic_load_explicit(c, memory_order_relaxed); }

static void add_sched(mb_sched_t *s, mb_stats_t *o) {
  o->spawned += ld(&s->spawned);
  o->exited += ld(&s->exited);
  o->processes += (uint64_t)atomic_load_explicit(&s->nprocs, memory_order_relaxed);
  o->sent += ld(&s->sent);
  o->received += ld(&s->received);
  o->reductions += ld(&s->reductions);
  o->runs += ld(&s->runs);
  o->runq += atomic_load_explicit(&s->rq_len, memory_order_relaxed);
  o->busy_ns += ld(&s->busy_ns);
  o->idle_ns += ld(&s->idle_ns);
}

int mb_runtime_stats(mb_runtime_t *rt, int sched, mb_stats_t *out) {
  if (!out || sched >= rt->nsched) return MB_EINVAL;
  memset(out, 0, sizeof *out);
  for (int i = 0; i < rt->nsched; i++)
    if (sched < 0 || sched == i) add_sched(&rt->scheds[i], out);
  /* memory: control blocks of live processes and their queued messages */
  uint32_t n = atomic_load(&rt->procs.nslots);
  for (uint32_t i = 1; i < n; i++) {
    mb_proc_t *p = mb_ptable_slot(&rt->procs, i);
    if (!p || !(atomic_load_explicit(&p->ctl, memory_order_relaxed) & MB_CTL_ALIVE)) continue;
    mb_pid_t pid = mb_pid_make(0, i, (uint32_t)(atomic_load(&p->ctl) >> 32));
    mb_proc_t *q = mb_proc_acquire(rt, pid);
    if (!q) continue;
    if (sched < 0 || q->sched->index == sched)
      out->memory += sizeof(mb_proc_t) + atomic_load_explicit(&q->qbytes, memory_order_relaxed);
    mb_proc_release(q);
  }
  return 0;
}

int mb_proc_info(mb_runtime_t *rt, mb_pid_t pid, mb_proc_info_t *info) {
  if (!info) return MB_EINVAL;
  mb_proc_t *p = mb_proc_acquire(rt, pid);
  if (!p) return MB_ENOPROC;
  memset(info, 0, sizeof *info);
  switch (atomic_load_explicit(&p->state, memory_order_relaxed)) {
  case MB_PS_RUNNING: info->status = MB_STATUS_RUNNING; break;
  case MB_PS_WAITING: info->status = MB_STATUS_WAITING; break;
  case MB_PS_EXITING: info->status = MB_STATUS_EXITING; break;
  default: info->status = MB_STATUS_RUNNABLE; break;
  }
  info->scheduler = p->sched->index;
  info->mailbox_len = atomic_load_explicit(&p->qlen, memory_order_relaxed);
  info->reductions = atomic_load_explicit(&p->reductions, memory_order_relaxed);
  info->memory = sizeof(mb_proc_t) + atomic_load_explicit(&p->qbytes, memory_order_relaxed);
  mb_proc_lock(p);
  info->links = p->nlinks;
  /* as Erlang's process_info: monitors it holds, and monitors held on it */
  for (uint32_t i = 0; i < p->nmons; i++) {
    if (p->mons[i].watching) info->monitors++;
    else info->monitored_by++;
  }
  info->memory += p->caplinks * sizeof(mb_pid_t) + p->capmons * sizeof(mb_monitor_t);
  mb_proc_unlock(p);
  info->trap_exit = atomic_load_explicit(&p->trap_exit, memory_order_relaxed);
  mb_proc_release(p);
  mb_registered_name(rt, pid, info->name, sizeof info->name);
  return 0;
}

int mb_proc_links(mb_runtime_t *rt, mb_pid_t pid, mb_pid_t *out, size_t cap) {
  mb_proc_t *p = mb_proc_acquire(rt, pid);
  if (!p) return MB_ENOPROC;
  mb_proc_lock(p);
  int n = (int)p->nlinks;
  for (uint32_t i = 0; i < p->nlinks && i < cap; i++) out[i] = p->links[i];
  mb_proc_unlock(p);
  mb_proc_release(p);
  return n;
}

size_t mb_processes(mb_runtime_t *rt, mb_pid_t *out, size_t cap) {
  size_t count = 0;
  uint32_t n = atomic_load(&rt->procs.nslots);
  for (uint32_t i = 1; i < n; i++) {
    mb_proc_t *p = mb_ptable_slot(&rt->procs, i);
    uint64_t v = p ? atomic_load_explicit(&p->ctl, memory_order_acquire) : 0;
    if (!(v & MB_CTL_ALIVE)) continue;
    if (count < cap) out[count] = mb_pid_make(0, i, (uint32_t)(v >> 32));
    count++;
  }
  return count;
}
