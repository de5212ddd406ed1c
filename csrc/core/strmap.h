/* strmap.h: a string-keyed hash map (chained), for names and topics. Not
 * thread-safe: callers hold their own lock. Keys are copied. */
#ifndef MB_STRMAP_H
#define MB_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct mb_strent {
  struct mb_strent *next;
  uint64_t hash;
  void *value;
  char key[];
} mb_strent_t;

typedef struct mb_strmap {
  mb_strent_t **buckets;
  size_t nbuckets, count;
} mb_strmap_t;

void mb_strmap_init(mb_strmap_t *m);
/* Frees the map; calls free_value on each value if given. */
void mb_strmap_destroy(mb_strmap_t *m, void (*free_value)(void *));
/* Entry for key, or NULL. */
mb_strent_t *mb_strmap_get(const mb_strmap_t *m, const char *key);
/* Entry for key, created with value NULL if absent; NULL on out of memory. */
mb_strent_t *mb_strmap_put(mb_strmap_t *m, const char *key);
/* Removes key; returns its value (NULL if absent). */
void *mb_strmap_remove(mb_strmap_t *m, const char *key);

#endif
