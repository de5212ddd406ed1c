/* spawn.c: creating processes, and native C processes. */
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

static mb_sched_t *place(mb_runtime_t *rt, const mb_spawn_opts_t *o) {
  int want = o ? o->scheduler : MB_SCHED_ANY;
  if (want == MB_SCHED_HERE) {
    mb_sched_t *cur = mb_sched_current();
    if (cur && cur->rt == rt) return cur;
    if (o && o->parent) return o->parent->sched;
    return NULL;
  }
  if (want > 0) return want <= rt->nsched ? &rt->scheds[want - 1] : NULL;
  if (want != MB_SCHED_ANY) return NULL;
  /* least loaded; ties rotate so equal schedulers fill evenly */
  unsigned start = atomic_fetch_add_explicit(&rt->next_sched, 1, memory_order_relaxed);
  mb_sched_t *best = NULL;
  int best_load = 0;
  for (int i = 0; i < rt->nsched; i++) {
    mb_sched_t *s = &rt->scheds[(start + (unsigned)i) % (unsigned)rt->nsched];
    int load = atomic_load_explicit(&s->nprocs, memory_order_relaxed) +
               (int)atomic_load_explicit(&s->rq_len, memory_order_relaxed);
    if (!best || load < best_load) {
      best = s;
      best_load = load;
    }
  }
  return best;
}

int mb_spawn(mb_runtime_t *rt, const mb_behaviour_t *b, void *state, const mb_spawn_opts_t *o,
             mb_pid_t *pid_out) {
  if (!rt || !b || !b->run) return MB_EINVAL;
  mb_proc_t *parent = o ? o->parent : NULL;
  if (o && (o->link || o->monitor) && !parent) return MB_EINVAL;
  if (o && o->monitor && !o->mon_ref) return MB_EINVAL;
  if (parent && mb_sched_current() != parent->sched) return MB_EINVAL;
  atomic_fetch_add_explicit(&rt->spawning, 1, memory_order_seq_cst);
  int err = 0;
  if (atomic_load_explicit(&rt->stopping, memory_order_seq_cst)) { err = MB_ESTOPPED; goto out; }
  mb_sched_t *s = place(rt, o);
  if (!s) { err = MB_EINVAL; goto out; }
  mb_proc_t *p = mb_ptable_alloc(&rt->procs);
  if (!p) { err = MB_ELIMIT; goto out; }
  atomic_store_explicit(&p->state, MB_PS_RUNNABLE, memory_order_relaxed);
  atomic_store_explicit(&p->inbox, NULL, memory_order_relaxed);
  atomic_store_explicit(&p->reductions, 0, memory_order_relaxed);
  atomic_store_explicit(&p->qlen, 0, memory_order_relaxed);
  atomic_store_explicit(&p->qbytes, 0, memory_order_relaxed);
  p->rt = rt;
  p->sched = s;
  p->beh = b;
  p->bstate = state;
  p->qhead = NULL;
  p->qtail = &p->qhead;
  mb_queue_reset_scan(p);
  p->reason = NULL;
  p->timeout_ms = -1;
  p->wait_timer = 0;
  atomic_store_explicit(&p->trap_exit, o && o->trap_exit, memory_order_relaxed);
  p->timed_out = p->exit_pending = 0;
  atomic_store_explicit(&p->owns_ports, 0, memory_order_relaxed);
  /* Published only now: from here mb_proc_acquire succeeds, and anyone who
   * gets a ref (a sender, mb_runtime_stats, mb_proc_info) sees the fields above. */
  atomic_fetch_or_explicit(&p->ctl, MB_CTL_ALIVE, memory_order_release);
  if (o && o->name && (err = mb_register(rt, o->name, p->pid))) {
    mb_proc_mark_dead(p);
    mb_proc_release(p);
    goto out;
  }
  if (o && o->link) {
    mb_links_add(p, parent->pid);
    mb_links_add(parent, p->pid);
  }
  if (o && o->monitor) {
    *o->mon_ref = mb_make_ref(rt);
    mb_mons_add(p, *o->mon_ref, parent->pid, 0);
    mb_mons_add(parent, *o->mon_ref, p->pid, 1);
  }
  if (pid_out) *pid_out = p->pid;
  atomic_fetch_add_explicit(&s->nprocs, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->spawned, 1, memory_order_relaxed);
  mb_sched_enqueue(p); /* from here on p belongs to its scheduler */
out:
  atomic_fetch_sub_explicit(&rt->spawning, 1, memory_order_seq_cst);
  return err;
}

/* ---- native processes ---- */

typedef struct native {
  mb_native_fn fn;
  mb_native_exit_fn on_exit;
  void *ud;
  int started;
} native_t;

#define NATIVE_BUDGET 1000 /* messages per slice */

static int native_run(mb_proc_t *self, void *st) {
  native_t *n = st;
  if (!n->started) {
    n->started = 1;
    if (n->fn(self, NULL, n->ud)) return MB_RUN_EXIT;
  }
  for (int i = 0; i < NATIVE_BUDGET; i++) {
    mb_mailbox_rewind(self);
    if (!mb_mailbox_next(self)) return MB_RUN_WAIT;
    mb_msg_t *m = mb_mailbox_take(self);
    int stop = n->fn(self, m, n->ud);
    mb_msg_free(m);
    mb_proc_add_reductions(self, 1);
    if (stop) return MB_RUN_EXIT;
  }
  return MB_RUN_YIELD;
}

static void native_destroy(mb_proc_t *self, void *st, const uint8_t *reason, size_t len) {
  (void)self;
  native_t *n = st;
  if (n->on_exit) n->on_exit(n->ud, reason, len);
  free(n);
}

static size_t native_memory(void *st) { (void)st; return sizeof(native_t); }

static const mb_behaviour_t native_behaviour = {native_run, native_destroy, native_memory, NULL};

int mb_spawn_native(mb_runtime_t *rt, mb_native_fn handler, mb_native_exit_fn on_exit, void *userdata,
                    const mb_spawn_opts_t *opts, mb_pid_t *pid) {
  if (!handler) return MB_EINVAL;
  native_t *n = malloc(sizeof *n);
  if (!n) return MB_ENOMEM;
  *n = (native_t){handler, on_exit, userdata, 0};
  int r = mb_spawn(rt, &native_behaviour, n, opts, pid);
  if (r) free(n);
  return r;
}
