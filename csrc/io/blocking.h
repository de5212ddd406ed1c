/* blocking.h: a pool of worker threads for work that must block (BEAM's dirty
 * schedulers). Generic C: the Lua binding (lblocking.c) gives each worker a Lua
 * VM through the thread hooks and runs mb.blocking's jobs on it.
 *
 * Workers are started on demand, one per submitted job while none is idle, up to
 * the pool's size; they then stay until the pool shrinks or is freed. A job is an
 * intrusive header at the start of the caller's own struct: exactly one of run
 * (on a worker) or drop (never run: the pool was freed first) is called for it,
 * and that call owns the job. */
#ifndef MB_IO_BLOCKING_H
#define MB_IO_BLOCKING_H

#define MB_POOL_MAX 256 /* most workers a pool may have */

typedef struct mb_pool mb_pool_t;
typedef struct mb_pool_job mb_pool_job_t;

struct mb_pool_job {
  mb_pool_job_t *next;                              /* the pool's queue */
  void (*run)(void *thread_data, mb_pool_job_t *job);
  void (*drop)(mb_pool_job_t *job);
};

typedef struct mb_pool_hooks {
  /* On each worker thread before its first job: returns that thread's data. */
  void *(*thread_init)(void *ud);
  /* On each worker thread after its last job. */
  void (*thread_fini)(void *thread_data, void *ud);
  void *ud;
} mb_pool_hooks_t;

/* Makes a pool of at most `size` (1..MB_POOL_MAX) workers; none started yet. */
int mb_pool_new(const mb_pool_hooks_t *hooks, int size, mb_pool_t **out);
/* Queues a job (any thread); MB_ESTOPPED once mb_pool_free has begun,
 * MB_ENOMEM if no worker could be started and none exists. */
int mb_pool_submit(mb_pool_t *p, mb_pool_job_t *job);
/* Sets the most workers (1..MB_POOL_MAX); workers over it end once idle.
 * Returns the old size, MB_EINVAL or MB_ESTOPPED. */
int mb_pool_resize(mb_pool_t *p, int size);
/* The most workers, and how many exist now (started, not yet ended). */
int mb_pool_size(mb_pool_t *p, int *workers);
/* Drops the queued jobs, waits for the running ones to return, joins every
 * worker and frees the pool. A job blocked forever blocks this forever: a
 * thread inside a C call cannot be interrupted safely. */
void mb_pool_free(mb_pool_t *p);

#endif
