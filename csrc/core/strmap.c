/* strmap.c: chained hash map keyed by byte strings (FNV-1a), compared by length. */
#include <stdlib.h>
#include <string.h>
#include "strmap.h"

static uint64_t hash_str(const char *s, size_t len) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

static int same(const mb_strent_t *e, uint64_t h, const char *key, size_t len) {
  return e->hash == h && e->len == len && memcmp(e->key, key, len) == 0;
}

void mb_strmap_init(mb_strmap_t *m) {
  m->buckets = NULL;
  m->nbuckets = 0;
  m->count = 0;
}

void mb_strmap_destroy(mb_strmap_t *m, void (*free_value)(void *)) {
  for (size_t i = 0; i < m->nbuckets; i++) {
    mb_strent_t *e = m->buckets[i];
    while (e) {
      mb_strent_t *next = e->next;
      if (free_value) free_value(e->value);
      free(e);
      e = next;
    }
  }
  free(m->buckets);
  mb_strmap_init(m);
}

mb_strent_t *mb_strmap_get(const mb_strmap_t *m, const char *key, size_t len) {
  if (!m->nbuckets) return NULL;
  uint64_t h = hash_str(key, len);
  for (mb_strent_t *e = m->buckets[h & (m->nbuckets - 1)]; e; e = e->next)
    if (same(e, h, key, len)) return e;
  return NULL;
}

static int grow(mb_strmap_t *m) {
  size_t n = m->nbuckets ? m->nbuckets * 2 : 16;
  mb_strent_t **b = calloc(n, sizeof *b);
  if (!b) return -1;
  for (size_t i = 0; i < m->nbuckets; i++) {
    mb_strent_t *e = m->buckets[i];
    while (e) {
      mb_strent_t *next = e->next;
      e->next = b[e->hash & (n - 1)];
      b[e->hash & (n - 1)] = e;
      e = next;
    }
  }
  free(m->buckets);
  m->buckets = b;
  m->nbuckets = n;
  return 0;
}

mb_strent_t *mb_strmap_put(mb_strmap_t *m, const char *key, size_t len) {
  mb_strent_t *e = mb_strmap_get(m, key, len);
  if (e) return e;
  if (m->count >= m->nbuckets * 3 / 4 && grow(m)) return NULL;
  e = malloc(sizeof *e + len + 1);
  if (!e) return NULL;
  e->hash = hash_str(key, len);
  e->value = NULL;
  e->len = len;
  memcpy(e->key, key, len);
  e->key[len] = 0;
  e->next = m->buckets[e->hash & (m->nbuckets - 1)];
  m->buckets[e->hash & (m->nbuckets - 1)] = e;
  m->count++;
  return e;
}

void *mb_strmap_remove(mb_strmap_t *m, const char *key, size_t len) {
  if (!m->nbuckets) return NULL;
  uint64_t h = hash_str(key, len);
  for (mb_strent_t **pe = &m->buckets[h & (m->nbuckets - 1)]; *pe; pe = &(*pe)->next) {
    mb_strent_t *e = *pe;
    if (same(e, h, key, len)) {
      void *v = e->value;
      *pe = e->next;
      free(e);
      m->count--;
      return v;
    }
  }
  return NULL;
}
