/* Arena allocation: every compilation owns one arena, and everything the front end
 * and the analyses build lives in it, so one arena_free releases a whole compilation.
 * Allocation failure is reported as NULL and latched in `failed`, so callers can check
 * once at the end of a phase instead of after every node. */
#ifndef MIXC_ARENA_H
#define MIXC_ARENA_H
#include <stddef.h>

typedef struct ArenaBlock ArenaBlock;
typedef struct Arena {
  ArenaBlock *head;
  size_t total;   /* bytes handed out, for limits */
  int failed;     /* an allocation failed: the phase must report out of memory */
} Arena;

void arena_init(Arena *a);
void arena_free(Arena *a);
void *arena_alloc(Arena *a, size_t size);               /* zeroed, 16-byte aligned */
void *arena_array(Arena *a, size_t n, size_t elem);     /* zeroed, overflow-checked */
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_strdup(Arena *a, const char *s);
char *arena_printf(Arena *a, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#endif
