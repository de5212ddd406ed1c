/* blocking.c: the worker pool behind mb.blocking (see blocking.h).
 *
 * One mutex guards the queue and the worker table; workers sleep on `work`.
 * A worker's slot is `used` from its start until it is joined, and `done` once
 * it no longer touches the pool (after its thread_fini), so joining a done
 * worker never waits on the lock. Done workers are joined at the next submit,
 * resize or free (reap). */
#include <pthread.h>
#include <stdlib.h>
#include "moonbeam.h"
#include "io/blocking.h"

typedef struct worker {
  pthread_t thread;
  int used, done;
} worker_t;

struct mb_pool {
  pthread_mutex_t lock;
  pthread_cond_t work;       /* a job was queued, the size shrank, or the pool stops */
  mb_pool_hooks_t hooks;
  mb_pool_job_t *head, **tail;
  int size;                  /* most workers */
  int workers;               /* started and not done */
  int idle;                  /* waiting on `work` */
  int queued;                /* jobs in the queue */
  int starting;              /* workers started, not yet looking for jobs */
  int quit;
  worker_t slot[MB_POOL_MAX];
};

typedef struct start_arg {
  mb_pool_t *pool;
  int index;
} start_arg_t;

static void *worker_main(void *arg) {
  mb_pool_t *p = ((start_arg_t *)arg)->pool;
  int index = ((start_arg_t *)arg)->index;
  free(arg);
  void *data = p->hooks.thread_init ? p->hooks.thread_init(p->hooks.ud) : NULL;
  pthread_mutex_lock(&p->lock);
  p->starting--;
  for (;;) {
    while (!p->head && !p->quit && p->workers <= p->size) {
      p->idle++;
      pthread_cond_wait(&p->work, &p->lock);
      p->idle--;
    }
    if (p->quit || p->workers > p->size) break;
    mb_pool_job_t *job = p->head;
    p->head = job->next;
    if (!p->head) p->tail = &p->head;
    p->queued--;
    pthread_mutex_unlock(&p->lock);
    job->next = NULL;
    job->run(data, job);
    pthread_mutex_lock(&p->lock);
  }
  p->workers--; /* counted as gone now, so a shrink ends exactly the extra ones */
  pthread_mutex_unlock(&p->lock);
  if (p->hooks.thread_fini) p->hooks.thread_fini(data, p->hooks.ud);
  pthread_mutex_lock(&p->lock);
  p->slot[index].done = 1;
  pthread_mutex_unlock(&p->lock);
  return NULL;
}

/* Joins the workers that have ended. Lock held. */
static void reap(mb_pool_t *p) {
  for (int i = 0; i < MB_POOL_MAX; i++) {
    if (p->slot[i].used && p->slot[i].done) {
      pthread_join(p->slot[i].thread, NULL);
      p->slot[i].used = p->slot[i].done = 0;
    }
  }
}

/* Starts a worker if more jobs wait than workers are free to take them (idle,
 * or started and not yet looking: an idle worker signalled but not yet awake
 * still counts as idle, so the count of jobs is what tells) and the size
 * allows. Lock held. */
static int maybe_start(mb_pool_t *p) {
  if (p->queued <= p->idle + p->starting || p->workers >= p->size) return 0;
  int i = 0;
  while (i < MB_POOL_MAX && p->slot[i].used) i++;
  if (i == MB_POOL_MAX) return MB_ELIMIT; /* ended workers not reaped yet: rare */
  start_arg_t *a = malloc(sizeof *a);
  if (!a) return MB_ENOMEM;
  a->pool = p;
  a->index = i;
  if (pthread_create(&p->slot[i].thread, NULL, worker_main, a)) {
    free(a);
    return MB_ENOMEM;
  }
  p->slot[i].used = 1;
  p->slot[i].done = 0;
  p->workers++;
  p->starting++;
  return 0;
}

int mb_pool_new(const mb_pool_hooks_t *hooks, int size, mb_pool_t **out) {
  if (size < 1 || size > MB_POOL_MAX) return MB_EINVAL;
  mb_pool_t *p = calloc(1, sizeof *p);
  if (!p) return MB_ENOMEM;
  if (pthread_mutex_init(&p->lock, NULL)) {
    free(p);
    return MB_ENOMEM;
  }
  if (pthread_cond_init(&p->work, NULL)) {
    pthread_mutex_destroy(&p->lock);
    free(p);
    return MB_ENOMEM;
  }
  if (hooks) p->hooks = *hooks;
  p->tail = &p->head;
  p->size = size;
  *out = p;
  return 0;
}

int mb_pool_submit(mb_pool_t *p, mb_pool_job_t *job) {
  pthread_mutex_lock(&p->lock);
  if (p->quit) {
    pthread_mutex_unlock(&p->lock);
    return MB_ESTOPPED;
  }
  reap(p);
  job->next = NULL;
  *p->tail = job;
  p->tail = &job->next;
  p->queued++;
  int r = maybe_start(p);
  if (r && p->workers == 0) { /* no worker will ever take it: take it back */
    mb_pool_job_t **s = &p->head;
    while (*s != job) s = &(*s)->next;
    *s = NULL;
    p->tail = s;
    p->queued--;
    pthread_mutex_unlock(&p->lock);
    return r;
  }
  pthread_cond_signal(&p->work);
  pthread_mutex_unlock(&p->lock);
  return 0;
}

int mb_pool_resize(mb_pool_t *p, int size) {
  if (size < 1 || size > MB_POOL_MAX) return MB_EINVAL;
  pthread_mutex_lock(&p->lock);
  if (p->quit) {
    pthread_mutex_unlock(&p->lock);
    return MB_ESTOPPED;
  }
  int old = p->size;
  p->size = size;
  reap(p);
  /* queued jobs may now start more workers */
  while (p->queued > p->idle + p->starting && p->workers < p->size)
    if (maybe_start(p)) break;
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->lock);
  return old;
}

int mb_pool_size(mb_pool_t *p, int *workers) {
  pthread_mutex_lock(&p->lock);
  int size = p->size;
  if (workers) *workers = p->workers;
  pthread_mutex_unlock(&p->lock);
  return size;
}

void mb_pool_free(mb_pool_t *p) {
  if (!p) return;
  pthread_mutex_lock(&p->lock);
  p->quit = 1;
  mb_pool_job_t *queued = p->head;
  p->head = NULL;
  p->tail = &p->head;
  p->queued = 0;
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->lock);
  while (queued) {
    mb_pool_job_t *next = queued->next;
    queued->drop(queued);
    queued = next;
  }
  /* workers end once their job returns; join them all (no one else does now) */
  for (int i = 0; i < MB_POOL_MAX; i++)
    if (p->slot[i].used) pthread_join(p->slot[i].thread, NULL);
  pthread_cond_destroy(&p->work);
  pthread_mutex_destroy(&p->lock);
  free(p);
}
