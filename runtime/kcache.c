/* The kernel cache (kcache.h). */
#define _POSIX_C_SOURCE 200809L
#include "kcache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct KCache {
  pthread_mutex_t mu;
  KCacheEntry **buckets;
  size_t nbuckets; /* a power of two */
  size_t count;
};

uint64_t kcache_hash(const char *key, size_t len) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)key[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

KCache *kcache_create(void) {
  KCache *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->nbuckets = 64;
  c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
  if (!c->buckets || pthread_mutex_init(&c->mu, NULL)) {
    free(c->buckets);
    free(c);
    return NULL;
  }
  return c;
}

void kcache_entry_free(KCacheEntry *e) {
  if (!e) return;
  if (e->gpu_free) e->gpu_free(e->gpu);
  arena_free(&e->arena);
  free(e->key);
  free(e);
}

void kcache_destroy(KCache *c) {
  if (!c) return;
  for (size_t b = 0; b < c->nbuckets; b++) {
    KCacheEntry *e = c->buckets[b];
    while (e) {
      KCacheEntry *next = e->next;
      kcache_entry_free(e);
      e = next;
    }
  }
  pthread_mutex_destroy(&c->mu);
  free(c->buckets);
  free(c);
}

KCacheEntry *kcache_entry_new(const char *key, size_t len) {
  KCacheEntry *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  e->key = malloc(len + 1);
  if (!e->key) {
    free(e);
    return NULL;
  }
  memcpy(e->key, key, len);
  e->key[len] = 0;
  e->keylen = len;
  e->hash = kcache_hash(key, len);
  arena_init(&e->arena);
  return e;
}

static KCacheEntry *lookup(const KCache *c, uint64_t h, const char *key, size_t len) {
  for (KCacheEntry *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->next)
    if (e->hash == h && e->keylen == len && !memcmp(e->key, key, len)) return e;
  return NULL;
}

const KCacheEntry *kcache_find(KCache *c, const char *key, size_t len) {
  uint64_t h = kcache_hash(key, len);
  pthread_mutex_lock(&c->mu);
  const KCacheEntry *e = lookup(c, h, key, len);
  pthread_mutex_unlock(&c->mu);
  return e;
}

/* Doubles the bucket array when the table is full; keeps the old one when out of memory. */
static void grow(KCache *c) {
  size_t n = c->nbuckets * 2;
  KCacheEntry **b = calloc(n, sizeof *b);
  if (!b) return;
  for (size_t i = 0; i < c->nbuckets; i++) {
    KCacheEntry *e = c->buckets[i];
    while (e) {
      KCacheEntry *next = e->next;
      e->next = b[e->hash & (n - 1)];
      b[e->hash & (n - 1)] = e;
      e = next;
    }
  }
  free(c->buckets);
  c->buckets = b;
  c->nbuckets = n;
}

const KCacheEntry *kcache_insert(KCache *c, KCacheEntry *e) {
  pthread_mutex_lock(&c->mu);
  KCacheEntry *old = lookup(c, e->hash, e->key, e->keylen);
  if (old) {
    pthread_mutex_unlock(&c->mu);
    kcache_entry_free(e);
    return old;
  }
  if (c->count >= c->nbuckets) grow(c);
  KCacheEntry **slot = &c->buckets[e->hash & (c->nbuckets - 1)];
  e->next = *slot;
  *slot = e;
  c->count++;
  pthread_mutex_unlock(&c->mu);
  return e;
}

size_t kcache_count(KCache *c) {
  pthread_mutex_lock(&c->mu);
  size_t n = c->count;
  pthread_mutex_unlock(&c->mu);
  return n;
}
