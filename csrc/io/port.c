/* port.c: the port infrastructure (see port.h for how a port type plugs in).
 *
 * The runtime's io state (rt->io) is made when the first port opens: one lock
 * over two hash tables (owner pid -> ports, port id -> port) touched only when a
 * port opens, closes, changes hands or its owner exits, never per message; and
 * one mb_io_loop_t per scheduler that ever held a port, made on its own thread:
 * a locked queue of commands and closures from other threads plus the uv_async
 * that tells the loop to run them, and the list of the loop's open ports. */
#include <ctype.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include "core/msg.h"
#include "core/runtime.h"
#include "io/port.h"

#define NBUCKETS 4096

/* Port numbers are unique in the OS process, not just in one runtime: a VM
 * that outlives a runtime (mb.run twice) keeps its cached port values, which
 * must never be mistaken for a later runtime's ports. */
static _Atomic uint64_t next_port_number = 1;

struct mb_io_loop {
  mb_sched_t *sched;
  uv_async_t async;
  pthread_mutex_t lock;
  mb_port_cmd_t *qhead, **qtail; /* under lock */
  int closed;                    /* under lock: no more posts */
  mb_port_t *ports;              /* loop thread: open ports */
  void *scratch;                 /* loop thread: SCRATCH bytes, made on first use */
};
#define SCRATCH 65536

typedef struct mb_io {
  pthread_mutex_t lock;
  mb_port_t *by_owner[NBUCKETS];
  mb_port_t *by_id[NBUCKETS];
  int nloops;
  _Atomic(mb_io_loop_t *) *loops;
} mb_io_t;

/* A closure posted to a loop: a command with op POST_OP and no port. */
#define POST_OP (-1)
typedef struct post {
  mb_port_cmd_t c;
  void (*fn)(void *);
  void *arg;
} post_t;

static unsigned hash64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return (unsigned)(x & (NBUCKETS - 1));
}

/* ---- io state ---- */

static void io_proc_exit(mb_proc_t *proc);
static void io_loop_close(mb_sched_t *s);
static void io_free(mb_runtime_t *rt);

static mb_io_t *get_io(mb_runtime_t *rt) {
  _Atomic(void *) *slot = &rt->io;
  mb_io_t *io = atomic_load_explicit(slot, memory_order_acquire);
  if (io) return io;
  io = calloc(1, sizeof *io);
  if (!io) return NULL;
  io->nloops = rt->nsched;
  io->loops = calloc((size_t)rt->nsched, sizeof *io->loops);
  if (!io->loops) {
    free(io);
    return NULL;
  }
  pthread_mutex_init(&io->lock, NULL);
  void *expected = NULL;
  /* hooks are set before rt->io is published; readers reach them after a
   * process's owns_ports (set later, seq_cst) or after the threads are joined */
  static pthread_mutex_t hook_lock = PTHREAD_MUTEX_INITIALIZER;
  pthread_mutex_lock(&hook_lock);
  if (atomic_compare_exchange_strong_explicit(slot, &expected, io, memory_order_acq_rel,
                                              memory_order_acquire)) {
    rt->io_proc_exit = io_proc_exit;
    rt->io_loop_close = io_loop_close;
    rt->io_free = io_free;
    pthread_mutex_unlock(&hook_lock);
    /* a write to a socket its peer closed must fail with EPIPE, not kill the
     * process: SIGPIPE is ignored unless the host handles it */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
    return io;
  }
  pthread_mutex_unlock(&hook_lock);
  pthread_mutex_destroy(&io->lock);
  free(io->loops);
  free(io);
  return expected;
}

mb_sched_t *mb_port_sched_here(mb_runtime_t *rt) {
  mb_sched_t *s = mb_sched_current();
  return s && s->rt == rt ? s : NULL;
}

static void run_queue(uv_async_t *h);

static mb_io_loop_t *loop_of(mb_runtime_t *rt, mb_sched_t *s, int make) {
  mb_io_t *io = get_io(rt);
  if (!io) return NULL;
  mb_io_loop_t *l = atomic_load_explicit(&io->loops[s->index], memory_order_acquire);
  if (l || !make) return l;
  /* only s's own thread makes its loop state */
  l = calloc(1, sizeof *l);
  if (!l) return NULL;
  l->sched = s;
  pthread_mutex_init(&l->lock, NULL);
  l->qtail = &l->qhead;
  if (uv_async_init(&s->loop, &l->async, run_queue)) {
    pthread_mutex_destroy(&l->lock);
    free(l);
    return NULL;
  }
  l->async.data = l;
  atomic_store_explicit(&io->loops[s->index], l, memory_order_release);
  return l;
}

uv_loop_t *mb_port_loop(mb_runtime_t *rt) {
  mb_sched_t *s = mb_port_sched_here(rt);
  if (!s || !loop_of(rt, s, 1)) return NULL;
  return &s->loop;
}

void *mb_port_scratch(mb_port_t *p, size_t *len) {
  mb_io_loop_t *l = loop_of(p->rt, p->sched, 0);
  if (!l->scratch) l->scratch = malloc(SCRATCH);
  *len = l->scratch ? SCRATCH : 0;
  return l->scratch;
}

int mb_port_here(const mb_port_t *p) { return mb_sched_current() == p->sched; }

/* ---- references ---- */

void mb_port_ref(mb_port_t *p) { atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed); }

void mb_port_unref(mb_port_t *p) {
  if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1) p->type->free(p);
}

/* ---- tables ---- */

static void owner_link(mb_io_t *io, mb_port_t *p) {
  mb_port_t **b = &io->by_owner[hash64(atomic_load(&p->owner))];
  p->onext = *b;
  if (*b) (*b)->oprev = &p->onext;
  p->oprev = b;
  *b = p;
}

static void owner_unlink(mb_port_t *p) {
  *p->oprev = p->onext;
  if (p->onext) p->onext->oprev = p->oprev;
  p->onext = NULL;
  p->oprev = NULL;
}

static void unlist(mb_port_t *p) {
  mb_io_t *io = p->rt->io;
  pthread_mutex_lock(&io->lock);
  if (p->listed) {
    owner_unlink(p);
    mb_port_t **h = &io->by_id[hash64(p->id)];
    while (*h != p) h = &(*h)->hnext;
    *h = p->hnext;
    p->listed = 0;
  }
  pthread_mutex_unlock(&io->lock);
}

/* Marks the owner (any thread) so its exit closes its ports; 0 if it is dead. */
static int mark_owner(mb_runtime_t *rt, mb_pid_t pid) {
  mb_proc_t *proc = mb_proc_acquire(rt, pid);
  if (!proc) return 0;
  atomic_store_explicit(&proc->owns_ports, 1, memory_order_seq_cst);
  mb_proc_release(proc);
  return 1;
}

int mb_port_init(mb_port_t *p, const mb_port_type_t *type, mb_runtime_t *rt, mb_pid_t owner) {
  mb_sched_t *s = mb_port_sched_here(rt);
  if (!s) return MB_EINVAL;
  mb_io_t *io = get_io(rt);
  if (!io || !loop_of(rt, s, 1)) return MB_ENOMEM;
  p->type = type;
  p->rt = rt;
  p->sched = s;
  p->id = atomic_fetch_add_explicit(&next_port_number, 1, memory_order_relaxed) & 0x00ffffffffffffffull;
  atomic_init(&p->owner, owner);
  atomic_init(&p->refs, 1);
  atomic_init(&p->state, MB_PORT_OPEN);
  p->onext = p->hnext = NULL;
  p->oprev = NULL;
  p->listed = 0;
  p->close_ran = 0;
  /* on the loop's list until its handles are closed: a loop that ends closes
   * whatever is still there */
  mb_io_loop_t *l = loop_of(rt, s, 0);
  p->lnext = l->ports;
  if (l->ports) l->ports->lprev = &p->lnext;
  p->lprev = &l->ports;
  l->ports = p;
  return 0;
}

int mb_port_open(mb_port_t *p) {
  mb_io_t *io = p->rt->io;
  pthread_mutex_lock(&io->lock);
  owner_link(io, p);
  mb_port_t **h = &io->by_id[hash64(p->id)];
  p->hnext = *h;
  *h = p;
  p->listed = 1;
  pthread_mutex_unlock(&io->lock);
  /* the owner may have exited between its last look at owns_ports and now */
  if (!mark_owner(p->rt, mb_port_owner(p))) {
    mb_port_close(p);
    return MB_ENOPROC;
  }
  return 0;
}

mb_port_t *mb_port_lookup(mb_runtime_t *rt, uint64_t id) {
  mb_io_t *io = atomic_load_explicit(&rt->io, memory_order_acquire);
  if (!io) return NULL;
  pthread_mutex_lock(&io->lock);
  mb_port_t *p = io->by_id[hash64(id)];
  while (p && p->id != id) p = p->hnext;
  if (p) mb_port_ref(p);
  pthread_mutex_unlock(&io->lock);
  return p;
}

mb_pid_t mb_port_owner(mb_port_t *p) { return atomic_load_explicit(&p->owner, memory_order_acquire); }

int mb_port_is_open(mb_port_t *p) {
  return atomic_load_explicit(&p->state, memory_order_acquire) == MB_PORT_OPEN;
}

int mb_port_set_owner(mb_port_t *p, mb_pid_t pid) {
  mb_io_t *io = p->rt->io;
  if (!mb_alive(p->rt, pid)) return MB_ENOPROC;
  pthread_mutex_lock(&io->lock);
  if (!p->listed) {
    pthread_mutex_unlock(&io->lock);
    return MB_ESTOPPED;
  }
  owner_unlink(p);
  atomic_store_explicit(&p->owner, pid, memory_order_release);
  owner_link(io, p);
  pthread_mutex_unlock(&io->lock);
  if (!mark_owner(p->rt, pid)) mb_port_close(p); /* it died meanwhile: as its exit would */
  return 0;
}

/* ---- closing ---- */

static void close_here(mb_port_t *p) {
  if (p->close_ran) return;
  p->close_ran = 1;
  p->type->close(p);
}

static void close_posted(void *arg) {
  mb_port_t *p = arg;
  close_here(p);
  mb_port_unref(p);
}

void mb_port_close(mb_port_t *p) {
  int open = MB_PORT_OPEN;
  if (!atomic_compare_exchange_strong_explicit(&p->state, &open, MB_PORT_CLOSED,
                                               memory_order_acq_rel, memory_order_acquire))
    return;
  unlist(p);
  if (mb_port_here(p)) {
    close_here(p);
    return;
  }
  mb_port_ref(p);
  if (mb_port_post(p->sched, close_posted, p)) mb_port_unref(p); /* its loop closed it already */
}

void mb_port_closed(mb_port_t *p) {
  if (p->lprev) {
    *p->lprev = p->lnext;
    if (p->lnext) p->lnext->lprev = p->lprev;
    p->lprev = NULL;
    p->lnext = NULL;
  }
  mb_port_unref(p);
}

/* The owner exits: close every port it owns (its own thread). */
static void io_proc_exit(mb_proc_t *proc) {
  mb_io_t *io = proc->rt->io;
  mb_port_t *stack[16], **mine = stack;
  size_t n = 0, cap = 16;
  pthread_mutex_lock(&io->lock);
  for (mb_port_t *p = io->by_owner[hash64(proc->pid)]; p; p = p->onext) {
    if (atomic_load_explicit(&p->owner, memory_order_relaxed) != proc->pid) continue;
    if (n == cap) {
      mb_port_t **bigger = malloc(cap * 2 * sizeof *bigger);
      if (!bigger) break;
      memcpy(bigger, mine, n * sizeof *mine);
      if (mine != stack) free(mine);
      mine = bigger;
      cap *= 2;
    }
    mb_port_ref(p);
    mine[n++] = p;
  }
  pthread_mutex_unlock(&io->lock);
  for (size_t i = 0; i < n; i++) {
    mb_port_close(mine[i]);
    mb_port_unref(mine[i]);
  }
  if (mine != stack) free(mine);
}

/* ---- events ---- */

void mb_port_enc(mb_port_t *p, mb_enc_t *e, const char *tag, uint32_t arity) {
  mb_enc_init(e, p->rt->nodes, MB_MSG_HDR);
  mb_enc_tuple(e, arity);
  mb_enc_atom(e, tag, strlen(tag));
  mb_enc_port(e, p->id);
}

void mb_port_send(mb_port_t *p, mb_enc_t *e) { mb_send_enc(p->rt, 0, mb_port_owner(p), e); }

/* ---- commands ---- */

mb_port_cmd_t *mb_port_cmd_new(mb_runtime_t *rt, int op, mb_pid_t caller, mb_ref_t ref) {
  mb_port_cmd_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->rt = rt;
  c->op = op;
  c->caller = caller;
  c->ref = ref;
  mb_enc_init(&c->res, rt->nodes, MB_MSG_HDR);
  return c;
}

void mb_port_cmd_free(mb_port_cmd_t *c) {
  if (!c) return;
  if (c->extra && c->extra_free) c->extra_free(c->extra);
  free(c->owned);
  mb_enc_discard(&c->res);
  free(c);
}

int mb_port_cmd_own(mb_port_cmd_t *c) {
  if (c->owned || !c->len) return 0;
  c->owned = malloc(c->len);
  if (!c->owned) return MB_ENOMEM;
  memcpy(c->owned, c->data, c->len);
  c->data = c->owned;
  return 0;
}

static void res_reset(mb_port_cmd_t *c) {
  mb_nodes_t *nodes = c->res.nodes;
  mb_enc_discard(&c->res);
  mb_enc_init(&c->res, nodes, MB_MSG_HDR);
}

void mb_port_res_error(mb_port_cmd_t *c, const char *reason) {
  res_reset(c);
  mb_enc_tuple(&c->res, 2);
  mb_enc_atom(&c->res, "nil", 3);
  mb_enc_binary(&c->res, reason, strlen(reason));
}

void mb_port_res_ok(mb_port_cmd_t *c) {
  res_reset(c);
  mb_enc_tuple(&c->res, 1);
  mb_enc_atom(&c->res, "true", 4);
}

const char *mb_port_errname(int uverr, char *buf, size_t cap) {
  const char *n = uv_err_name(uverr);
  size_t i = 0;
  for (; n[i] && i + 1 < cap; i++) buf[i] = (char)tolower((unsigned char)n[i]);
  buf[i] = 0;
  return buf;
}

void mb_port_reply(mb_port_cmd_t *c) {
  mb_runtime_t *rt = c->rt;
  size_t total;
  uint8_t *block = mb_enc_finish(&c->res, &total);
  if (!block) { /* the type failed to encode its result: say so rather than hang the caller */
    mb_enc_init(&c->res, NULL, MB_MSG_HDR);
    mb_port_res_error(c, "enomem");
    block = mb_enc_finish(&c->res, &total);
  }
  if (block && rt) {
    mb_msg_t *m = mb_msg_from_block(block, total, 0);
    m->kind = MB_K_REPLY;
    m->ref = c->ref;
    mb_deliver(rt, c->caller, m);
  } else {
    free(block);
  }
  mb_port_t *p = c->port;
  c->port = NULL;
  mb_port_cmd_free(c);
  if (p) mb_port_unref(p);
}

static void enqueue(mb_io_loop_t *l, mb_port_cmd_t *c, int *ok) {
  pthread_mutex_lock(&l->lock);
  *ok = !l->closed;
  if (*ok) {
    c->next = NULL;
    *l->qtail = c;
    l->qtail = &c->next;
  }
  pthread_mutex_unlock(&l->lock);
  if (*ok) uv_async_send(&l->async);
}

int mb_port_submit(mb_port_t *p, mb_port_cmd_t *c) {
  if (!mb_port_is_open(p)) {
    mb_port_res_error(c, "closed");
    return MB_PORT_DONE;
  }
  if (mb_port_here(p)) {
    c->queued = 0;
    return p->type->command(p, c);
  }
  if (mb_port_cmd_own(c)) {
    mb_port_res_error(c, "enomem");
    return MB_PORT_DONE;
  }
  c->queued = 1;
  c->port = p;
  mb_port_ref(p);
  int ok;
  enqueue(loop_of(p->rt, p->sched, 0), c, &ok);
  if (!ok) {
    c->port = NULL;
    mb_port_unref(p);
    mb_port_res_error(c, "closed");
    return MB_PORT_DONE;
  }
  return MB_PORT_PENDING;
}

int mb_port_post(mb_sched_t *s, void (*fn)(void *arg), void *arg) {
  if (mb_sched_current() == s) {
    fn(arg);
    return 0;
  }
  mb_io_loop_t *l = loop_of(s->rt, s, 0);
  if (!l) return MB_ESTOPPED;
  post_t *po = calloc(1, sizeof *po);
  if (!po) return MB_ENOMEM;
  po->c.op = POST_OP;
  po->fn = fn;
  po->arg = arg;
  int ok;
  enqueue(l, &po->c, &ok);
  if (!ok) {
    free(po);
    return MB_ESTOPPED;
  }
  return 0;
}

static void run_one(mb_port_cmd_t *c) {
  if (c->op == POST_OP) {
    post_t *po = (post_t *)c;
    po->fn(po->arg);
    free(po);
    return;
  }
  mb_port_t *p = c->port;
  if (!mb_port_is_open(p)) {
    mb_port_res_error(c, "closed");
    mb_port_reply(c);
    return;
  }
  if (p->type->command(p, c) == MB_PORT_DONE) mb_port_reply(c);
  /* PENDING: the type replies later (mb_port_reply drops c->port's reference) */
}

static void drain(mb_io_loop_t *l) {
  for (;;) {
    pthread_mutex_lock(&l->lock);
    mb_port_cmd_t *c = l->qhead;
    l->qhead = NULL;
    l->qtail = &l->qhead;
    pthread_mutex_unlock(&l->lock);
    if (!c) return;
    while (c) {
      mb_port_cmd_t *next = c->next;
      run_one(c);
      c = next;
    }
  }
}

static void run_queue(uv_async_t *h) { drain(h->data); }

/* Before s's loop closes (the freeing thread, every scheduler stopped): run
 * what was queued, close every port still open, stop taking posts. */
static void io_loop_close(mb_sched_t *s) {
  mb_io_t *io = s->rt->io;
  mb_io_loop_t *l = atomic_load(&io->loops[s->index]);
  if (!l) return;
  drain(l);
  /* this thread stands in for the loop's: close directly; a port whose close
   * ran but lingers (flushing) is closed again, which makes it let go now */
  size_t n = 0;
  for (mb_port_t *p = l->ports; p; p = p->lnext) n++;
  mb_port_t **all = n ? malloc(n * sizeof *all) : NULL;
  n = 0;
  for (mb_port_t *p = l->ports; p && all; p = p->lnext) {
    mb_port_ref(p);
    all[n++] = p;
  }
  for (size_t i = 0; i < n; i++) {
    mb_port_t *p = all[i];
    int open = MB_PORT_OPEN;
    if (atomic_compare_exchange_strong(&p->state, &open, MB_PORT_CLOSED)) unlist(p);
    if (p->close_ran) {
      if (p->lprev) p->type->close(p);
    } else {
      close_here(p);
    }
  }
  for (size_t i = 0; i < n; i++) mb_port_unref(all[i]);
  free(all);
  pthread_mutex_lock(&l->lock);
  l->closed = 1;
  pthread_mutex_unlock(&l->lock);
  drain(l);
  uv_close((uv_handle_t *)&l->async, NULL);
}

static void io_free(mb_runtime_t *rt) {
  mb_io_t *io = rt->io;
  if (!io) return;
  for (int i = 0; i < io->nloops; i++) {
    mb_io_loop_t *l = atomic_load(&io->loops[i]);
    if (!l) continue;
    pthread_mutex_destroy(&l->lock);
    free(l->scratch);
    free(l);
  }
  pthread_mutex_destroy(&io->lock);
  free(io->loops);
  free(io);
  rt->io = NULL;
}
