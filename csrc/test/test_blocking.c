/* test_blocking.c: the worker pool behind mb.blocking (csrc/io/blocking.c):
 * every job runs exactly once or is dropped, never both; workers start on
 * demand up to the size and each runs its thread hooks once; a shrink ends the
 * extra workers; free drops what is queued and waits for what runs. Run under
 * ASan (make asan) for the leak check. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#include "moonbeam.h"
#include "io/blocking.h"
#include "mb_test.h"

typedef struct counts {
  atomic_int ran, dropped, inits, finis, running, max_running;
  atomic_int release; /* jobs that wait spin until this is set */
} counts_t;

typedef struct tjob {
  mb_pool_job_t hdr;
  counts_t *k;
  int wait;           /* 1: hold the worker until k->release */
  int *thread_tag;    /* set to the worker's data, to check the hooks' data arrives */
} tjob_t;

static void *t_init(void *ud) {
  counts_t *k = ud;
  atomic_fetch_add(&k->inits, 1);
  return k; /* the worker's data */
}

static void t_fini(void *data, void *ud) {
  (void)data;
  atomic_fetch_add(&((counts_t *)ud)->finis, 1);
}

static void t_run(void *data, mb_pool_job_t *hdr) {
  tjob_t *j = (tjob_t *)hdr;
  counts_t *k = j->k;
  if (data != k) abort();
  int now = atomic_fetch_add(&k->running, 1) + 1;
  int m = atomic_load(&k->max_running);
  while (now > m && !atomic_compare_exchange_weak(&k->max_running, &m, now)) {}
  while (j->wait && !atomic_load(&k->release)) sched_yield();
  atomic_fetch_sub(&k->running, 1);
  atomic_fetch_add(&k->ran, 1);
  free(j);
}

static void t_drop(mb_pool_job_t *hdr) {
  tjob_t *j = (tjob_t *)hdr;
  atomic_fetch_add(&j->k->dropped, 1);
  free(j);
}

static tjob_t *job(counts_t *k, int wait) {
  tjob_t *j = calloc(1, sizeof *j);
  j->hdr.run = t_run;
  j->hdr.drop = t_drop;
  j->k = k;
  j->wait = wait;
  return j;
}

static int wait_for(atomic_int *v, int want) {
  for (int i = 0; i < 5000; i++) {
    if (atomic_load(v) == want) return 1;
    usleep(1000);
  }
  return 0;
}

MB_TEST(jobs_run_once_each_on_workers_started_on_demand) {
  counts_t k = {0};
  mb_pool_hooks_t h = {t_init, t_fini, &k};
  mb_pool_t *p;
  MB_REQUIRE(mb_pool_new(&h, 4, &p) == 0);
  int workers = -1;
  MB_CHECK_EQ_INT(mb_pool_size(p, &workers), 4);
  MB_CHECK_EQ_INT(workers, 0); /* none until a job comes */
  for (int i = 0; i < 1000; i++) MB_REQUIRE(mb_pool_submit(p, &job(&k, 0)->hdr) == 0);
  MB_CHECK(wait_for(&k.ran, 1000));
  mb_pool_size(p, &workers);
  MB_CHECK(workers >= 1 && workers <= 4);
  MB_CHECK(atomic_load(&k.max_running) <= 4);
  mb_pool_free(p);
  MB_CHECK_EQ_INT(atomic_load(&k.ran), 1000);
  MB_CHECK_EQ_INT(atomic_load(&k.dropped), 0);
  MB_CHECK_EQ_INT(atomic_load(&k.inits), atomic_load(&k.finis));
}

MB_TEST(at_most_size_jobs_at_once_and_a_resize_takes_effect) {
  counts_t k = {0};
  mb_pool_hooks_t h = {t_init, t_fini, &k};
  mb_pool_t *p;
  MB_REQUIRE(mb_pool_new(&h, 2, &p) == 0);
  for (int i = 0; i < 6; i++) mb_pool_submit(p, &job(&k, 1)->hdr);
  MB_CHECK(wait_for(&k.running, 2));
  usleep(20000);
  MB_CHECK_EQ_INT(atomic_load(&k.running), 2); /* the others wait */
  MB_CHECK_EQ_INT(mb_pool_resize(p, 5), 2);
  MB_CHECK(wait_for(&k.running, 5)); /* queued jobs start workers up to the new size */
  atomic_store(&k.release, 1);
  MB_CHECK(wait_for(&k.ran, 6));
  /* shrink: the extra workers end once idle */
  MB_CHECK_EQ_INT(mb_pool_resize(p, 1), 5);
  int workers = 0;
  for (int i = 0; i < 5000; i++) {
    mb_pool_size(p, &workers);
    if (workers == 1) break;
    usleep(1000);
  }
  MB_CHECK_EQ_INT(workers, 1);
  MB_CHECK(wait_for(&k.finis, 4));
  MB_CHECK_EQ_INT(mb_pool_resize(p, 0), MB_EINVAL);
  MB_CHECK_EQ_INT(mb_pool_resize(p, MB_POOL_MAX + 1), MB_EINVAL);
  mb_pool_free(p);
  MB_CHECK_EQ_INT(atomic_load(&k.inits), atomic_load(&k.finis));
}

MB_TEST(jobs_submitted_at_once_get_a_worker_each_even_with_one_idle) {
  /* one idle worker, then three jobs at once: the idle worker is signalled but
   * may not be awake when the next two come, which must start workers anyway */
  for (int round = 0; round < 20; round++) {
    counts_t k = {0};
    mb_pool_hooks_t h = {t_init, t_fini, &k};
    mb_pool_t *p;
    MB_REQUIRE(mb_pool_new(&h, 3, &p) == 0);
    mb_pool_submit(p, &job(&k, 0)->hdr);
    MB_REQUIRE(wait_for(&k.ran, 1));
    usleep(2000); /* it waits for work again */
    for (int i = 0; i < 3; i++) mb_pool_submit(p, &job(&k, 1)->hdr);
    MB_CHECK(wait_for(&k.running, 3));
    atomic_store(&k.release, 1);
    mb_pool_free(p);
    MB_CHECK_EQ_INT(atomic_load(&k.ran), 4);
    int workers = atomic_load(&k.inits);
    MB_CHECK(workers == 3);
  }
}

static void *release_later(void *arg) {
  usleep(50000);
  atomic_store((atomic_int *)arg, 1);
  return NULL;
}

/* A job that, once released, tries to submit another: refused while freeing. */
typedef struct resubmit {
  mb_pool_job_t hdr;
  mb_pool_t *pool;
  counts_t *k;
  atomic_int *result;
} resubmit_t;

static void resubmit_run(void *data, mb_pool_job_t *hdr) {
  (void)data;
  resubmit_t *j = (resubmit_t *)hdr;
  while (!atomic_load(&j->k->release)) sched_yield();
  tjob_t *other = job(j->k, 0);
  int r = mb_pool_submit(j->pool, &other->hdr);
  if (r) free(other);
  atomic_store(j->result, r);
  atomic_fetch_add(&j->k->ran, 1);
  free(j);
}

static void resubmit_drop(mb_pool_job_t *hdr) { free(hdr); }

MB_TEST(free_drops_queued_jobs_waits_for_running_ones_and_refuses_new_ones) {
  counts_t k = {0};
  mb_pool_hooks_t h = {t_init, t_fini, &k};
  mb_pool_t *p;
  MB_REQUIRE(mb_pool_new(&h, 1, &p) == 0);
  atomic_int result = 1;
  resubmit_t *first = calloc(1, sizeof *first);
  first->hdr.run = resubmit_run;
  first->hdr.drop = resubmit_drop;
  first->pool = p;
  first->k = &k;
  first->result = &result;
  MB_REQUIRE(mb_pool_submit(p, &first->hdr) == 0);
  for (int i = 0; i < 9; i++) MB_REQUIRE(mb_pool_submit(p, &job(&k, 1)->hdr) == 0);
  usleep(20000); /* the first job is running (one worker), nine wait */
  pthread_t t;
  pthread_create(&t, NULL, release_later, &k.release);
  mb_pool_free(p); /* returns only after the running job did */
  pthread_join(t, NULL);
  MB_CHECK_EQ_INT(atomic_load(&k.ran), 1);
  MB_CHECK_EQ_INT(atomic_load(&k.dropped), 9);
  MB_CHECK_EQ_INT(atomic_load(&result), MB_ESTOPPED);
  MB_CHECK_EQ_INT(atomic_load(&k.inits), atomic_load(&k.finis));
}

static mb_pool_t *shared;
static counts_t shared_k;

static void *submitter(void *arg) {
  (void)arg;
  for (int i = 0; i < 500; i++) mb_pool_submit(shared, &job(&shared_k, 0)->hdr);
  return NULL;
}

MB_TEST(submits_from_many_threads) {
  mb_pool_hooks_t h = {t_init, t_fini, &shared_k};
  MB_REQUIRE(mb_pool_new(&h, 3, &shared) == 0);
  pthread_t th[4];
  for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, submitter, NULL);
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  MB_CHECK(wait_for(&shared_k.ran, 2000));
  mb_pool_free(shared);
  MB_CHECK_EQ_INT(atomic_load(&shared_k.ran), 2000);
}

MB_TEST(bad_sizes_are_refused) {
  MB_CHECK_EQ_INT(mb_pool_new(NULL, 0, &shared), MB_EINVAL);
  MB_CHECK_EQ_INT(mb_pool_new(NULL, MB_POOL_MAX + 1, &shared), MB_EINVAL);
}

int main(void) {
  MB_RUN(jobs_run_once_each_on_workers_started_on_demand);
  MB_RUN(at_most_size_jobs_at_once_and_a_resize_takes_effect);
  MB_RUN(jobs_submitted_at_once_get_a_worker_each_even_with_one_idle);
  MB_RUN(free_drops_queued_jobs_waits_for_running_ones_and_refuses_new_ones);
  MB_RUN(submits_from_many_threads);
  MB_RUN(bad_sizes_are_refused);
  return mb_test_summary();
}
