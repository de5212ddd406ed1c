/* registry.c: unique process names. A name maps to a pid under names_lock; the
 * process keeps its own name (p->name, under the same lock) so its exit can
 * remove it. A process has at most one name, a name at most one process.
 * Names are byte strings compared by length ("a\0b" is not "a"). */
#include <stdlib.h>
#include <string.h>
#include "runtime.h"

#define NAME_MAX_LEN 255

int mb_register_n(mb_runtime_t *rt, const char *name, size_t len, mb_pid_t pid) {
  if (!name || len == 0 || len > NAME_MAX_LEN) return MB_EINVAL;
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
  } else if (p->name || mb_strmap_get(&rt->names, name, len)) {
    err = MB_EEXIST;
  } else {
    char *copy = malloc(len + 1);
    mb_strent_t *e = copy ? mb_strmap_put(&rt->names, name, len) : NULL;
    if (!e) {
      free(copy);
      err = MB_ENOMEM;
    } else {
      memcpy(copy, name, len);
      copy[len] = 0;
      e->value = (void *)(uintptr_t)pid;
      p->name = copy;
      p->name_len = len;
    }
  }
  pthread_mutex_unlock(&rt->names_lock);
  mb_proc_release(p);
  return err;
}

int mb_register(mb_runtime_t *rt, const char *name, mb_pid_t pid) {
  return mb_register_n(rt, name, name ? strlen(name) : 0, pid);
}

int mb_unregister_n(mb_runtime_t *rt, const char *name, size_t len) {
  if (!name) return MB_EINVAL;
  pthread_mutex_lock(&rt->names_lock);
  mb_strent_t *e = mb_strmap_get(&rt->names, name, len);
  if (!e) {
    pthread_mutex_unlock(&rt->names_lock);
    return MB_ENOENT;
  }
  mb_pid_t pid = (mb_pid_t)(uintptr_t)e->value;
  mb_strmap_remove(&rt->names, name, len);
  mb_proc_t *p = mb_proc_acquire(rt, pid);
  if (p) {
    free(p->name);
    p->name = NULL;
    p->name_len = 0;
    mb_proc_release(p);
  }
  pthread_mutex_unlock(&rt->names_lock);
  return 0;
}

int mb_unregister(mb_runtime_t *rt, const char *name) {
  return mb_unregister_n(rt, name, name ? strlen(name) : 0);
}

mb_pid_t mb_whereis_n(mb_runtime_t *rt, const char *name, size_t len) {
  if (!name) return 0;
  pthread_mutex_lock(&rt->names_lock);
  mb_strent_t *e = mb_strmap_get(&rt->names, name, len);
  mb_pid_t pid = e ? (mb_pid_t)(uintptr_t)e->value : 0;
  pthread_mutex_unlock(&rt->names_lock);
  return pid;
}

mb_pid_t mb_whereis(mb_runtime_t *rt, const char *name) {
  return mb_whereis_n(rt, name, name ? strlen(name) : 0);
}

size_t mb_registered_name(mb_runtime_t *rt, mb_pid_t pid, char *buf, size_t cap) {
  size_t n = 0;
  if (cap) buf[0] = 0;
  mb_proc_t *p = mb_proc_acquire(rt, pid);
  if (!p) return 0;
  pthread_mutex_lock(&rt->names_lock);
  if (p->name && cap) {
    n = p->name_len;
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
    mb_strent_t *e = mb_strmap_get(&rt->names, p->name, p->name_len);
    if (e && (mb_pid_t)(uintptr_t)e->value == p->pid) mb_strmap_remove(&rt->names, p->name, p->name_len);
    free(p->name);
    p->name = NULL;
    p->name_len = 0;
  }
  pthread_mutex_unlock(&rt->names_lock);
}
