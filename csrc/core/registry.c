/* registry.c: unique process names. A name maps to a pid under names_lock; the
 * process keeps its own name (p->name, under the same lock) so its exit can
 * remove it. A process has at most one name, a name at most one process. */
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

#define NAME_MAX_LEN 255

int mb_register(mb_runtime_t *rt, const char *name, mb_pid_t pid) {
  if (!name || !*name || strlen(name) > NAME_MAX_LEN) return MB_EINVAL;
  mb_proc_t *p = mb_proc_acquire(rt, pid);
  if (!p) return MB_ENOPROC;
  int err = 0;
  pthread_mutex_lock(&rt->names_lock);
  /* Liveness is checked again under names_lock: an exiting process clears
   * ALIVE before mb_registry_drop takes this lock, so either we see it dead
   * here, or its drop comes after us and removes the name we add. (Our ref
   * only keeps the slot; checked before the lock, the process could drop its
   * name between the check and the lock and leave ours pointing at a dead pid.) */
  if (!(atomic_load_explicit(&p->ctl, memory_order_acquire) & MB_CTL_ALIVE)) {
    err = MB_ENOPROC;
  } else if (p->name || mb_strmap_get(&rt->names, name)) {
    err = MB_EEXIST;
  } else {
    char *copy = strdup(name);
    mb_strent_t *e = copy ? mb_strmap_put(&rt->names, name) : NULL;
    if (!e) {
      free(copy);
      err = MB_ENOMEM;
    } else {
      e->value = (void *)(uintptr_t)pid;
      p->name = copy;
    }
  }
  pthread_mutex_unlock(&rt->names_lock);
  mb_proc_release(p);
  return err;
}

int mb_unregister(mb_runtime_t *rt, const char *name) {
  if (!name) return MB_EINVAL;
  pthread_mutex_lock(&rt->names_lock);
  mb_strent_t *e = mb_strmap_get(&rt->names, name);
  if (!e) {
    pthread_mutex_unlock(&rt->names_lock);
    return MB_ENOENT;
  }
  mb_pid_t pid = (mb_pid_t)(uintptr_t)e->value;
  mb_strmap_remove(&rt->names, name);
  mb_proc_t *p = mb_proc_acquire(rt, pid);
  if (p) {
    free(p->name);
    p->name = NULL;
    mb_proc_release(p);
  }
  pthread_mutex_unlock(&rt->names_lock);
  return 0;
}

mb_pid_t mb_whereis(mb_runtime_t *rt, const char *name) {
  if (!name) return 0;
  pthread_mutex_lock(&rt->names_lock);
  mb_strent_t *e = mb_strmap_get(&rt->names, name);
  mb_pid_t pid = e ? (mb_pid_t)(uintptr_t)e->value : 0;
  pthread_mutex_unlock(&rt->names_lock);
  return pid;
}

size_t mb_registered_name(mb_runtime_t *rt, mb_pid_t pid, char *buf, size_t cap) {
  size_t n = 0;
  if (cap) buf[0] = 0;
  mb_proc_t *p = mb_proc_acquire(rt, pid);
  if (!p) return 0;
  pthread_mutex_lock(&rt->names_lock);
  if (p->name && cap) {
    n = strlen(p->name);
    if (n >= cap) n = cap - 1;
    memcpy(buf, p->name, n);
    buf[n] = 0;
  }
  pthread_mutex_unlock(&rt->names_lock);
  mb_proc_release(p);
  return n;
}

void mb_registry_drop(mb_runtime_t *rt, mb_proc_t *p) {
  pthread_mutex_lock(&rt->names_lock);
  if (p->name) {
    mb_strent_t *e = mb_strmap_get(&rt->names, p->name);
    if (e && (mb_pid_t)(uintptr_t)e->value == p->pid) mb_strmap_remove(&rt->names, p->name);
    free(p->name);
    p->name = NULL;
  }
  pthread_mutex_unlock(&rt->names_lock);
}
