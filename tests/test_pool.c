/* test_pool.c: the thread pool (runtime/pool.h) hands out every item exactly once, to
 * threads numbered below pool_ranges, with no two calls of one thread overlapping, over many
 * pool sizes and item counts (grain 1 and larger), from several calling threads sharing one
 * pool, and with one thread slowed down so that the other threads must take more of the
 * items (the shared counter, not a fixed split). Counts are integers: nothing random to draw
 * except the slow thread's delays. Clean under ASan/UBSan and under TSan
 * (gcc -fsanitize=thread -I. tests/test_pool.c runtime/pool.c -lpthread). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "runtime/pool.h"

static _Atomic int g_passed, g_failed;

#define CHECK_MAX_SHOWN 20 /* the first 20 failures printed */
#include "check.h"

#define MAXT 16

typedef struct Job {
  int64_t n;
  int nthreads;                /* pool_ranges(p, n) */
  _Atomic int *hits;           /* per item */
  _Atomic int busy[MAXT];      /* a thread index inside fn */
  _Atomic int64_t taken[MAXT]; /* items per thread index */
  _Atomic int bad_thread, bad_range, overlap;
  int slow;                    /* thread 0 sleeps this many microseconds per item */
} Job;

static void sleep_us(int us) {
  struct timespec ts = {0, (long)us * 1000};
  nanosleep(&ts, NULL);
}

static void job_fn(void *ctx, int thread, int64_t begin, int64_t end) {
  Job *j = ctx;
  if (thread < 0 || thread >= j->nthreads || thread >= MAXT) {
    atomic_fetch_add(&j->bad_thread, 1);
    return;
  }
  if (begin < 0 || end > j->n || begin >= end) atomic_fetch_add(&j->bad_range, 1);
  if (atomic_fetch_add(&j->busy[thread], 1) != 0) atomic_fetch_add(&j->overlap, 1);
  for (int64_t i = begin; i < end && i >= 0 && i < j->n; i++) {
    atomic_fetch_add(&j->hits[i], 1);
    if (j->slow && thread == 0) sleep_us(j->slow);
  }
  atomic_fetch_add(&j->taken[thread], end - begin);
  atomic_fetch_sub(&j->busy[thread], 1);
}

/* One pool_run of n items; checks every item ran once. Returns thread 0's items. */
static int64_t run_and_check(Pool *p, int64_t n, int slow, const char *what) {
  Job *j = calloc(1, sizeof *j);
  _Atomic int *hits = calloc((size_t)(n > 0 ? n : 1), sizeof *hits);
  if (!j || !hits) {
    CHECK(0, "out of memory");
    free(j);
    free(hits);
    return 0;
  }
  j->n = n;
  j->nthreads = pool_ranges(p, n);
  j->hits = hits;
  j->slow = slow;
  pool_run(p, n, job_fn, j);
  int64_t once = 0, sum = 0;
  for (int64_t i = 0; i < n; i++) once += atomic_load(&hits[i]) == 1;
  for (int t = 0; t < MAXT; t++) sum += atomic_load(&j->taken[t]);
  CHECK(once == n, "%s: n %lld threads %d: %lld of the items ran exactly once", what,
        (long long)n, pool_threads(p), (long long)once);
  CHECK(sum == n, "%s: n %lld: %lld items taken", what, (long long)n, (long long)sum);
  CHECK(atomic_load(&j->bad_thread) == 0, "%s: thread index out of range", what);
  CHECK(atomic_load(&j->bad_range) == 0, "%s: a range outside [0, n) or empty", what);
  CHECK(atomic_load(&j->overlap) == 0, "%s: one thread index in fn twice at once", what);
  int64_t t0 = atomic_load(&j->taken[0]);
  free(hits);
  free(j);
  return t0;
}

static void test_sizes(void) {
  const int threads[] = {1, 2, 3, 4, 8, 16};
  const int64_t ns[] = {0, 1, 2, 3, 5, 7, 16, 31, 64, 100, 257, 1000, 4099, 100000};
  for (size_t a = 0; a < sizeof threads / sizeof threads[0]; a++) {
    Pool *p = pool_create(threads[a]);
    CHECK(p != NULL, "pool_create(%d)", threads[a]);
    if (!p) continue;
    for (size_t b = 0; b < sizeof ns / sizeof ns[0]; b++)
      for (int rep = 0; rep < 3; rep++) run_and_check(p, ns[b], 0, "sizes");
    pool_destroy(p);
  }
  /* no pool at all: the caller runs everything */
  run_and_check(NULL, 37, 0, "no pool");
}

/* The caller's thread (0) sleeps per item: the workers must take most items. A static split
 * would give it n / threads of them. */
static void test_slow_thread(void) {
  Pool *p = pool_create(4);
  CHECK(p != NULL, "pool_create(4)");
  if (!p) return;
  int64_t n = 64;
  int64_t t0 = run_and_check(p, n, 2000, "slow thread"); /* 2 ms per item of thread 0 */
  CHECK(pool_threads(p) < 2 || t0 < n / pool_threads(p),
        "the slow thread took %lld of %lld items on %d threads", (long long)t0, (long long)n,
        pool_threads(p));
  pool_destroy(p);
}

typedef struct Caller {
  Pool *p;
} Caller;

static void *caller_main(void *arg) {
  Caller *c = arg;
  for (int rep = 0; rep < 50; rep++) run_and_check(c->p, 1 + rep * 13, 0, "shared pool");
  return NULL;
}

/* Several threads call pool_run on one pool at once (a context shared by threads). */
static void test_shared(void) {
  Pool *p = pool_create(3);
  CHECK(p != NULL, "pool_create(3)");
  if (!p) return;
  pthread_t th[3];
  Caller c = {p};
  int started = 0;
  for (int i = 0; i < 3; i++) started += pthread_create(&th[i], NULL, caller_main, &c) == 0;
  for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
  CHECK(started == 3, "started %d caller threads", started);
  pool_destroy(p);
}

int main(void) {
  test_sizes();
  test_slow_thread();
  test_shared();
  printf("test_pool: %d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
