/* strmap.h: a hash map keyed by byte strings (chained), for names and topics.
 * Keys compare by length and bytes, so "a\0b" and "a" are different keys. Not
 * thread-safe: callers hold their own lock. Keys are copied. */
#ifndef MB_STRMAP_H
#define MB_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct mb_strent {
  struct mb_strent *next;
  uint64_t hash;
  void *value;
  size_t len;
  char key[];       /* len bytes, then a NUL for convenience */
} mb_strent_t;

typedef struct mb_strmap {
  mb_strent_t **buckets;
  size_t nbuckets, count;
} mb_strmap_t;

void mb_strmap_init(mb_strmap_t *m);
/* Frees the map; calls free_value on each value if given. */
void mb_strmap_destroy(mb_strmap_t *m, void (*free_value)(void *));
/* Entry for key[0..len), or NULL. */
mb_strent_t *mb_strmap_get(const mb_strmap_t *m, const char *key, size_t len);
/* Entry for key[0..len), created with value NULL if absent; NULL on out of memory. */
mb_strent_t *mb_strmap_put(mb_strmap_t *m, const char *key, size_t len);
/* Removes key[0..len); returns its value (NULL if absent). */
void *mb_strmap_remove(mb_strmap_t *m, const char *key, size_t len);

#endif
