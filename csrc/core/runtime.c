/* runtime.c: creating, driving and freeing a runtime; sending; timers; refs. */
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "runtime.h"

static void *sched_thread(void *arg) {
  mb_sched_main(arg);
  return NULL;
}

int mb_runtime_new(const mb_runtime_opts_t *opts, mb_runtime_t **out) {
  mb_runtime_opts_t o = opts ? *opts : (mb_runtime_opts_t){0};
  if (!out || o.schedulers < 0 || o.schedulers > 1024) return MB_EINVAL;
  if (o.schedulers == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    o.schedulers = n > 0 ? (int)n : 1;
  }
  mb_runtime_t *rt = calloc(1, sizeof *rt);
  if (!rt) return MB_ENOMEM;
  rt->nsched = o.schedulers;
  rt->host_driven = o.host_driven;
  rt->preempt = o.preempt;
  rt->slice_ns = (uint64_t)(o.slice_us ? o.slice_us : 1000) * 1000u;
  if (o.hooks) rt->hooks = *o.hooks;
  atomic_init(&rt->ref_counter, 1);
  rt->nodes = mb_nodes_new(o.node_name ? o.node_name : "nonode@nohost", o.creation);
  rt->scheds = calloc((size_t)rt->nsched, sizeof *rt->scheds);
  if (!rt->nodes || !rt->scheds || mb_ptable_init(&rt->procs)) goto fail;
  pthread_mutex_init(&rt->names_lock, NULL);
  pthread_mutex_init(&rt->topics_lock, NULL);
  mb_strmap_init(&rt->names);
  mb_strmap_init(&rt->topics);
  for (int i = 0; i < rt->nsched; i++)
    if (mb_sched_init(&rt->scheds[i], rt, i)) goto fail;
  if (rt->preempt && mb_watchdog_start(rt)) goto fail;
  for (int i = rt->host_driven ? 1 : 0; i < rt->nsched; i++) {
    if (pthread_create(&rt->scheds[i].thread, NULL, sched_thread, &rt->scheds[i])) {
      mb_runtime_free(rt);
      return MB_ENOMEM;
    }
    rt->scheds[i].has_thread = 1;
  }
  if (rt->host_driven) mb_sched_step(&rt->scheds[0], 0); /* runs scheduler 0's init hook here */
  *out = rt;
  return 0;
fail:
  mb_runtime_free(rt);
  return MB_ENOMEM;
}

int mb_runtime_run(mb_runtime_t *rt) {
  if (!rt->host_driven) return MB_EINVAL;
  mb_sched_main(&rt->scheds[0]);
  return 0;
}

int mb_runtime_step(mb_runtime_t *rt, unsigned budget_us) {
  if (!rt->host_driven) return MB_EINVAL;
  return mb_sched_step(&rt->scheds[0], (uint64_t)budget_us * 1000u);
}

void mb_runtime_stop(mb_runtime_t *rt) {
  atomic_store_explicit(&rt->stopping, 1, memory_order_seq_cst);
  for (int i = 0; i < rt->nsched; i++) mb_sched_kick(&rt->scheds[i]);
}

static void close_loop(mb_sched_t *s) {
  if (!s->rt) return; /* never initialised */
  if (s->index == 0) mb_ossignal_close(s->rt);
  if (s->rt->io_loop_close) s->rt->io_loop_close(s);
  uv_close((uv_handle_t *)&s->wake, NULL);
  uv_close((uv_handle_t *)&s->sleep_timer, NULL);
  uv_run(&s->loop, UV_RUN_DEFAULT);
  uv_loop_close(&s->loop);
  mb_timers_destroy(&s->timers);
}

void mb_runtime_free(mb_runtime_t *rt) {
  if (!rt) return;
  if (rt->scheds) {
    mb_runtime_stop(rt);
    /* a process still running keeps its scheduler until the watchdog preempts
     * it, so the watchdog outlives every scheduler's shutdown; and since it
     * signals scheduler threads, it ends before any of them is joined */
    for (int i = 0; i < rt->nsched; i++)
      while (rt->scheds[i].has_thread && !atomic_load(&rt->scheds[i].finished)) sched_yield();
    if (rt->has_watchdog) mb_watchdog_stop(rt);
    if (rt->host_driven && rt->scheds[0].rt) mb_sched_shutdown(&rt->scheds[0]);
    for (int i = 0; i < rt->nsched; i++)
      if (rt->scheds[i].has_thread) pthread_join(rt->scheds[i].thread, NULL);
  }
  if (rt->scheds) {
    for (int i = 0; i < rt->nsched; i++) close_loop(&rt->scheds[i]);
    free(rt->scheds);
  }
  if (rt->io_free) rt->io_free(rt);
  mb_ptable_destroy(&rt->procs);
  mb_strmap_destroy(&rt->names, NULL);
  mb_strmap_destroy(&rt->topics, free);
  pthread_mutex_destroy(&rt->names_lock);
  pthread_mutex_destroy(&rt->topics_lock);
  if (rt->nodes) mb_nodes_free(rt->nodes);
  free(rt);
}

int mb_runtime_schedulers(const mb_runtime_t *rt) { return rt->nsched; }
mb_nodes_t *mb_runtime_nodes(mb_runtime_t *rt) { return rt->nodes; }

int mb_runtime_current_sched(const mb_runtime_t *rt) {
  mb_sched_t *s = mb_sched_current();
  return s && s->rt == rt ? s->index : -1;
}

void mb_sched_set_data(mb_runtime_t *rt, int sched, void *data) {
  if (sched >= 0 && sched < rt->nsched) rt->scheds[sched].data = data;
}

void *mb_sched_data(const mb_runtime_t *rt, int sched) {
  return sched >= 0 && sched < rt->nsched ? rt->scheds[sched].data : NULL;
}

mb_ref_t mb_make_ref(mb_runtime_t *rt) {
  uint64_t n = atomic_fetch_add_explicit(&rt->ref_counter, 1, memory_order_relaxed);
  mb_ref_t r = {0, {(uint32_t)n & 0x3ffff, (uint32_t)(n >> 18), (uint32_t)(n >> 50)}};
  return r;
}

/* ---- process accessors ---- */

mb_pid_t mb_self(const mb_proc_t *self) { return self->pid; }
mb_runtime_t *mb_proc_runtime(const mb_proc_t *self) { return self->rt; }
int mb_proc_sched(const mb_proc_t *self) { return self->sched->index; }
void mb_proc_set_timeout(mb_proc_t *self, int64_t ms) { self->timeout_ms = ms < 0 ? -1 : ms; }

void mb_proc_add_reductions(mb_proc_t *self, uint32_t n) {
  atomic_store_explicit(&self->reductions,
                        atomic_load_explicit(&self->reductions, memory_order_relaxed) + n,
                        memory_order_relaxed);
  _Atomic uint64_t *c = &self->sched->reductions;
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

int mb_proc_timed_out(mb_proc_t *self) {
  int t = self->timed_out;
  self->timed_out = 0;
  return t;
}

int mb_alive(mb_runtime_t *rt, mb_pid_t pid) {
  mb_proc_t *p = mb_proc_acquire(rt, pid);
  if (!p) return 0;
  mb_proc_release(p);
  return 1;
}

/* ---- sending ---- */

int mb_send(mb_runtime_t *rt, mb_pid_t from, mb_pid_t to, const uint8_t *term, size_t len) {
  if (!term || len < 2 || len > UINT32_MAX) return MB_EBADTERM;
  mb_proc_t *p = mb_proc_acquire(rt, to);
  if (!p) return 0;
  mb_msg_t *m = mb_msg_new(MB_K_MSG, from, term, len);
  int r = MB_ENOMEM;
  if (m) {
    r = 0;
    if (mb_proc_push(p, m)) mb_msg_free(m);
  }
  mb_proc_release(p);
  return r;
}

int mb_send_name(mb_runtime_t *rt, mb_pid_t from, const char *name, const uint8_t *term, size_t len) {
  mb_pid_t to = mb_whereis(rt, name);
  if (!to) return MB_ENOENT;
  return mb_send(rt, from, to, term, len);
}

int mb_send_enc(mb_runtime_t *rt, mb_pid_t from, mb_pid_t to, mb_enc_t *e) {
  if (e->prefix != MB_MSG_HDR) {
    mb_enc_discard(e);
    return MB_EINVAL;
  }
  size_t total;
  uint8_t *block = mb_enc_finish(e, &total);
  if (!block) return MB_EBADTERM;
  mb_msg_t *m = mb_msg_from_block(block, total, from);
  mb_proc_t *p = mb_proc_acquire(rt, to);
  if (!p || mb_proc_push(p, m)) mb_msg_free(m);
  if (p) mb_proc_release(p);
  return 0;
}

/* ---- timers ---- */

static mb_sched_t *timer_home(mb_runtime_t *rt, mb_pid_t to) {
  mb_sched_t *cur = mb_sched_current();
  if (cur && cur->rt == rt) return cur;
  mb_proc_t *p = mb_proc_acquire(rt, to);
  mb_sched_t *s = p ? p->sched : &rt->scheds[0];
  if (p) mb_proc_release(p);
  return s;
}

int mb_send_after(mb_runtime_t *rt, mb_pid_t from, mb_pid_t to, uint64_t ms, const uint8_t *term,
                  size_t len, mb_timer_t *timer) {
  if (!term || len < 2 || len > UINT32_MAX) return MB_EBADTERM;
  if (atomic_load(&rt->stopping)) return MB_ESTOPPED;
  mb_msg_t *m = mb_msg_new(MB_K_MSG, from, term, len);
  if (!m) return MB_ENOMEM;
  mb_sched_t *s = timer_home(rt, to);
  uint64_t deadline = mb_timer_deadline(mb_now_ns(), ms);
  mb_timer_t id = mb_timers_add(&s->timers, deadline, to, m, 0);
  if (!id) return MB_ENOMEM;
  if (timer) *timer = id;
  if (s != mb_sched_current()) mb_sched_kick(s); /* it may sleep past the new deadline */
  return 0;
}

int64_t mb_cancel_timer(mb_runtime_t *rt, mb_timer_t timer) {
  int s = mb_timer_sched(timer);
  if (s < 0 || s >= rt->nsched) return MB_ENOENT;
  return mb_timers_cancel(&rt->scheds[s].timers, timer, mb_ceil_ms(mb_now_ns()));
}
