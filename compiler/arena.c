/* Arena allocator: a list of blocks, bump allocation inside the newest one. */
#include "arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ARENA_BLOCK = 64 * 1024, ARENA_ALIGN = 16 };

struct ArenaBlock {
  ArenaBlock *next;
  size_t used, cap;
  _Alignas(16) unsigned char data[];
};

void arena_init(Arena *a) { memset(a, 0, sizeof *a); }

void arena_free(Arena *a) {
  ArenaBlock *b = a->head;
  while (b) {
    ArenaBlock *n = b->next;
    free(b);
    b = n;
  }
  memset(a, 0, sizeof *a);
}

static ArenaBlock *arena_grow(Arena *a, size_t need) {
  size_t cap = need > ARENA_BLOCK ? need : ARENA_BLOCK;
  ArenaBlock *b = malloc(sizeof *b + cap);
  if (!b) return NULL;
  b->used = 0;
  b->cap = cap;
  b->next = a->head;
  a->head = b;
  return b;
}

void *arena_alloc(Arena *a, size_t size) {
  if (size > SIZE_MAX / 2) {
    a->failed = 1;
    return NULL;
  }
  size = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
  if (size == 0) size = ARENA_ALIGN;
  ArenaBlock *b = a->head;
  if (!b || b->cap - b->used < size) b = arena_grow(a, size);
  if (!b) {
    a->failed = 1;
    return NULL;
  }
  void *p = b->data + b->used;
  b->used += size;
  a->total += size;
  memset(p, 0, size);
  return p;
}

void *arena_array(Arena *a, size_t n, size_t elem) {
  if (elem && n > SIZE_MAX / 4 / elem) {
    a->failed = 1;
    return NULL;
  }
  return arena_alloc(a, n * elem);
}

char *arena_strndup(Arena *a, const char *s, size_t n) {
  char *p = arena_alloc(a, n + 1);
  if (p) memcpy(p, s, n);
  return p;
}

char *arena_strdup(Arena *a, const char *s) { return arena_strndup(a, s, strlen(s)); }

char *arena_printf(Arena *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return NULL;
  char *p = arena_alloc(a, (size_t)n + 1);
  if (!p) return NULL;
  va_start(ap, fmt);
  vsnprintf(p, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return p;
}
