/* A small thread pool: persistent worker threads that share a range of work items.
 *
 * pool_run(p, n, fn, ctx) hands out [0, n) to the participating threads (the workers plus
 * the calling thread, never more threads than items) from a shared counter, in runs of
 * `grain` consecutive items (1, or n / (8 x threads) when there are 16 or more items per
 * thread): each thread calls fn(ctx, thread, begin, end) for the next run not yet taken
 * until none are left, so a thread that runs faster (a vCPU with more of the host) takes
 * more items. Every item runs exactly once; which thread runs it, and in which order, is
 * not fixed, so fn's items must be independent of each other. `thread` is 0 for the caller
 * and 1.. for the workers, below pool_ranges(p, n), so fn can index per-thread memory with
 * it (one thread's calls never overlap). The counter lives in the pool, reset per call.
 *
 * pool_run may be called from several threads at once: the calls are serialised by a
 * mutex (one job at a time), so a pool can be shared by a whole context. fn must
 * not call pool_run on the same pool. There is no global state. */
#ifndef MIXC_POOL_H
#define MIXC_POOL_H
#include <stdint.h>

typedef struct Pool Pool;
typedef void (*PoolFn)(void *ctx, int thread, int64_t begin, int64_t end);

/* A pool of `threads` threads in all (threads - 1 workers plus the caller of pool_run);
 * threads < 1 counts as 1. If fewer workers can be started, the pool runs with those it
 * has. Returns NULL only when out of memory. */
Pool *pool_create(int threads);
void pool_destroy(Pool *p);
/* The number of threads a pool_run may use (workers + the caller). */
int pool_threads(const Pool *p);
/* How many threads pool_run(p, n, ...) runs n items on: min(n, pool_threads(p)). */
int pool_ranges(const Pool *p, int64_t n);
void pool_run(Pool *p, int64_t n, PoolFn fn, void *ctx);

#endif
