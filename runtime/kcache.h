/* The in-process kernel cache: compiled variants of kernels, keyed by everything that
 * determines their code.
 *
 * A key is a string built by the runtime (runtime/api.c): the mixc version, the target,
 * the mixer's symbol table and canonical recurrence IR, every dim's size, the strategy,
 * and the variant's tensor dtypes and optional tensors. Equal keys mean interchangeable
 * code, so two kernels of two modules with the same mixer text share their variants.
 * Keys are hashed with FNV-1a (64 bits) into buckets and compared in full.
 *
 * An entry owns an arena holding its KernelPlan and KModule (the lowering writes into it
 * in place, so an entry is allocated before its lowering), the compiled functions and
 * their scratch size. Entries live until the cache is destroyed (with its context); the
 * machine code itself belongs to the JIT, which the context also owns. A CUDA entry holds its
 * loaded module instead (gpu), freed with the entry: the cache must go before the devices.
 * The key of a CUDA variant names the device (ordinal, name, architecture, NVRTC), since a
 * loaded module belongs to one device's context.
 *
 * Thread-safe: find and insert take the cache's mutex; a value, once inserted, is never
 * changed or moved, so callers keep pointers to it without a lock. No global state. */
#ifndef MIXC_KCACHE_H
#define MIXC_KCACHE_H
#include <stddef.h>
#include <stdint.h>

#include "../compiler/arena.h"
#include "../compiler/lower.h"

/* A kernel function (kir.h's one signature; the same type as backends/llvm's MixcKernelFn). */
typedef void (*KCacheFn)(void *const *ptrs, const int64_t *ints, int64_t begin, int64_t end,
                         float *scratch);

typedef struct KCacheEntry {
  char *key; /* malloc'd, NUL-terminated (keylen bytes before the NUL) */
  size_t keylen;
  uint64_t hash;
  Arena arena; /* the plan's and the module's memory */
  KernelPlan plan;
  KCacheFn *fns; /* plan.mod->nfuncs functions, in the module's order (in arena) */
  int nfns;
  int64_t scratch_floats; /* the largest KFunc.scratch_floats */
  double compile_ms;      /* lowering + code generation */
  /* CUDA variants (runtime/cuda_exec.c): the module loaded for the device named in the key,
   * its kernels and their launch settings; freed with the entry by gpu_free. NULL on the CPU. */
  void *gpu;
  void (*gpu_free)(void *gpu);
  struct KCacheEntry *next;
} KCacheEntry;

typedef struct KCache KCache;

uint64_t kcache_hash(const char *key, size_t len); /* FNV-1a 64 */

KCache *kcache_create(void); /* NULL when out of memory */
void kcache_destroy(KCache *c);

/* A new, unlinked entry with a copy of key and an empty arena; NULL when out of memory. */
KCacheEntry *kcache_entry_new(const char *key, size_t len);
/* Frees an entry that was never inserted. */
void kcache_entry_free(KCacheEntry *e);

/* The entry for key, or NULL. */
const KCacheEntry *kcache_find(KCache *c, const char *key, size_t len);
/* Inserts e and returns it; when another thread inserted the same key meanwhile, frees e
 * and returns that entry instead. */
const KCacheEntry *kcache_insert(KCache *c, KCacheEntry *e);
size_t kcache_count(KCache *c);

#endif
