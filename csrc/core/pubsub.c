/* pubsub.c: topics. topics_lock guards the topic map (topic -> subscriber
 * array) and every process's list of its topics, which its exit uses to
 * unsubscribe. A broadcast copies the subscriber list under the lock, then
 * pushes outside it, all receivers sharing one refcounted copy of the term.
 * Topics are byte strings compared by length ("a\0b" is not "a"). */
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

/* A topic as a process keeps it in its list. */
typedef struct mb_topic_key {
  size_t len;
  char s[];
} mb_topic_key_t;

typedef struct topic {
  mb_pid_t *pids;
  uint32_t n, cap;
} topic_t;

static void topic_free(void *v) {
  topic_t *t = v;
  if (t) free(t->pids);
  free(t);
}

static int has(const topic_t *t, mb_pid_t pid) {
  for (uint32_t i = 0; i < t->n; i++)
    if (t->pids[i] == pid) return 1;
  return 0;
}

/* Removes pid from topic name; drops the topic when empty. Lock held. */
static void remove_sub(mb_runtime_t *rt, const char *name, size_t len, mb_pid_t pid) {
  mb_strent_t *e = mb_strmap_get(&rt->topics, name, len);
  if (!e) return;
  topic_t *t = e->value;
  for (uint32_t i = 0; i < t->n; i++) {
    if (t->pids[i] == pid) {
      t->pids[i] = t->pids[--t->n];
      break;
    }
  }
  if (!t->n) topic_free(mb_strmap_remove(&rt->topics, name, len));
}

int mb_subscribe_n(mb_runtime_t *rt, const char *topic, size_t len, mb_pid_t pid) {
  if (!topic) return MB_EINVAL;
  mb_proc_t *p = mb_proc_acquire(rt, pid);
  if (!p) return MB_ENOPROC;
  int err = 0;
  mb_strent_t *e = NULL;
  pthread_mutex_lock(&rt->topics_lock);
  /* As in mb_register: an exiting process clears ALIVE before mb_pubsub_drop
   * takes topics_lock, so a subscription added after its drop cannot happen. */
  if (!(atomic_load_explicit(&p->ctl, memory_order_acquire) & MB_CTL_ALIVE)) {
    err = MB_ENOPROC;
    goto out;
  }
  e = mb_strmap_put(&rt->topics, topic, len);
  if (!e) { err = MB_ENOMEM; goto out; }
  if (!e->value && !(e->value = calloc(1, sizeof(topic_t)))) {
    mb_strmap_remove(&rt->topics, topic, len);
    err = MB_ENOMEM;
    goto out;
  }
  topic_t *t = e->value;
  if (has(t, pid)) goto out;
  if (t->n == t->cap) {
    uint32_t ncap = t->cap ? t->cap * 2 : 4;
    mb_pid_t *np = realloc(t->pids, ncap * sizeof *np);
    if (!np) { err = MB_ENOMEM; goto out; }
    t->pids = np;
    t->cap = ncap;
  }
  if (p->ntopics == p->captopics) {
    uint32_t ncap = p->captopics ? p->captopics * 2 : 2;
    mb_topic_key_t **nt = realloc(p->topics, ncap * sizeof *nt);
    if (!nt) { err = MB_ENOMEM; goto out; }
    p->topics = nt;
    p->captopics = ncap;
  }
  mb_topic_key_t *copy = malloc(sizeof *copy + len);
  if (!copy) { err = MB_ENOMEM; goto out; }
  copy->len = len;
  memcpy(copy->s, topic, len);
  p->topics[p->ntopics++] = copy;
  t->pids[t->n++] = pid;
out:
  if (e && e->value && !((topic_t *)e->value)->n) topic_free(mb_strmap_remove(&rt->topics, topic, len));
  pthread_mutex_unlock(&rt->topics_lock);
  mb_proc_release(p);
  return err;
}

int mb_subscribe(mb_runtime_t *rt, const char *topic, mb_pid_t pid) {
  return mb_subscribe_n(rt, topic, topic ? strlen(topic) : 0, pid);
}

int mb_unsubscribe_n(mb_runtime_t *rt, const char *topic, size_t len, mb_pid_t pid) {
  if (!topic) return MB_EINVAL;
  mb_proc_t *p = mb_proc_acquire(rt, pid);
  pthread_mutex_lock(&rt->topics_lock);
  remove_sub(rt, topic, len, pid);
  if (p) {
    for (uint32_t i = 0; i < p->ntopics; i++) {
      if (p->topics[i]->len == len && memcmp(p->topics[i]->s, topic, len) == 0) {
        free(p->topics[i]);
        p->topics[i] = p->topics[--p->ntopics];
        break;
      }
    }
  }
  pthread_mutex_unlock(&rt->topics_lock);
  if (p) mb_proc_release(p);
  return 0;
}

int mb_unsubscribe(mb_runtime_t *rt, const char *topic, mb_pid_t pid) {
  return mb_unsubscribe_n(rt, topic, topic ? strlen(topic) : 0, pid);
}

void mb_pubsub_drop(mb_runtime_t *rt, mb_proc_t *p) {
  pthread_mutex_lock(&rt->topics_lock);
  for (uint32_t i = 0; i < p->ntopics; i++) {
    remove_sub(rt, p->topics[i]->s, p->topics[i]->len, p->pid);
    free(p->topics[i]);
  }
  free(p->topics);
  p->topics = NULL;
  p->ntopics = p->captopics = 0;
  pthread_mutex_unlock(&rt->topics_lock);
}

int mb_subscribers_n(mb_runtime_t *rt, const char *topic, size_t len) {
  if (!topic) return MB_EINVAL;
  pthread_mutex_lock(&rt->topics_lock);
  mb_strent_t *e = mb_strmap_get(&rt->topics, topic, len);
  int n = e ? (int)((topic_t *)e->value)->n : 0;
  pthread_mutex_unlock(&rt->topics_lock);
  return n;
}

int mb_subscribers(mb_runtime_t *rt, const char *topic) {
  return mb_subscribers_n(rt, topic, topic ? strlen(topic) : 0);
}

int mb_broadcast(mb_runtime_t *rt, mb_pid_t from, const char *topic, mb_pid_t skip,
                 const uint8_t *term, size_t len) {
  return mb_broadcast_n(rt, from, topic, topic ? strlen(topic) : 0, skip, term, len);
}

int mb_broadcast_n(mb_runtime_t *rt, mb_pid_t from, const char *topic, size_t tlen, mb_pid_t skip,
                   const uint8_t *term, size_t len) {
  if (!topic) return MB_EINVAL;
  if (!term || len < 2 || len > UINT32_MAX) return MB_EBADTERM;
  mb_pid_t local[64], *pids = local;
  uint32_t n = 0;
  pthread_mutex_lock(&rt->topics_lock);
  mb_strent_t *e = mb_strmap_get(&rt->topics, topic, tlen);
  if (e) {
    topic_t *t = e->value;
    if (t->n > 64 && !(pids = malloc(t->n * sizeof *pids))) {
      pthread_mutex_unlock(&rt->topics_lock);
      return MB_ENOMEM;
    }
    for (uint32_t i = 0; i < t->n; i++)
      if (t->pids[i] != skip) pids[n++] = t->pids[i];
  }
  pthread_mutex_unlock(&rt->topics_lock);
  int sent = 0;
  if (n) {
    /* one reference per receiver plus ours, dropped at the end */
    mb_shared_t *sh = mb_shared_new(term, len, n + 1);
    if (!sh) {
      if (pids != local) free(pids);
      return MB_ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
      mb_msg_t *m = mb_msg_new_shared(sh, from);
      if (!m) {
        mb_shared_release(sh);
        continue;
      }
      mb_proc_t *p = mb_proc_acquire(rt, pids[i]);
      if (p && mb_proc_push(p, m) == 0) sent++;
      else mb_msg_free(m);
      if (p) mb_proc_release(p);
    }
    mb_shared_release(sh);
  }
  if (pids != local) free(pids);
  return sent;
}
