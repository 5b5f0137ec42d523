/* The thread pool (pool.h). */
#define _POSIX_C_SOURCE 200809L
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

typedef struct Worker {
  struct Pool *pool;
  int index; /* 1..nworkers */
} Worker;

struct Pool {
  int nworkers;
  pthread_t *threads;
  Worker *workers;
  pthread_mutex_t run_mu; /* one pool_run at a time */
  pthread_mutex_t mu;     /* the fields below */
  pthread_cond_t work_cv, done_cv;
  uint64_t gen; /* bumped for every job */
  int stop;
  PoolFn fn;
  void *ctx;
  int64_t n;
  int64_t grain;
  int nranges;
  int pending;         /* workers of the current job still running */
  _Atomic int64_t next; /* the current job's first item not yet taken */
};

/* The items a job hands out at a time: one, unless there are many per thread (short
 * items, e.g. decode steps over many heads), then about an eighth of a thread's share. */
static int64_t grain_of(int64_t n, int threads) {
  int64_t g = n / ((int64_t)threads * 8);
  return g < 1 ? 1 : g;
}

/* Take items from the job's counter until none are left. */
static void take_items(Pool *p, PoolFn fn, void *ctx, int thread, int64_t n, int64_t grain) {
  for (;;) {
    int64_t b = atomic_fetch_add_explicit(&p->next, grain, memory_order_relaxed);
    if (b >= n) break;
    fn(ctx, thread, b, n - b < grain ? n : b + grain);
  }
}

static void *worker_main(void *arg) {
  Worker *w = arg;
  Pool *p = w->pool;
  uint64_t seen = 0; /* gen starts at 0, so no job is missed */
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->stop && p->gen == seen) pthread_cond_wait(&p->work_cv, &p->mu);
    if (p->stop) break;
    seen = p->gen;
    if (w->index >= p->nranges) continue; /* not needed for this job */
    PoolFn fn = p->fn;
    void *ctx = p->ctx;
    int64_t n = p->n, grain = p->grain;
    pthread_mutex_unlock(&p->mu);
    take_items(p, fn, ctx, w->index, n, grain);
    pthread_mutex_lock(&p->mu);
    if (--p->pending == 0) pthread_cond_signal(&p->done_cv);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

Pool *pool_create(int threads) {
  if (threads < 1) threads = 1;
  Pool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  int want = threads - 1;
  if (want > 0) {
    p->threads = calloc((size_t)want, sizeof *p->threads);
    p->workers = calloc((size_t)want, sizeof *p->workers);
    if (!p->threads || !p->workers) {
      free(p->threads);
      free(p->workers);
      free(p);
      return NULL;
    }
  }
  if (pthread_mutex_init(&p->run_mu, NULL)) goto fail0;
  if (pthread_mutex_init(&p->mu, NULL)) goto fail1;
  if (pthread_cond_init(&p->work_cv, NULL)) goto fail2;
  if (pthread_cond_init(&p->done_cv, NULL)) goto fail3;
  for (int i = 0; i < want; i++) {
    p->workers[i].pool = p;
    p->workers[i].index = i + 1;
    if (pthread_create(&p->threads[i], NULL, worker_main, &p->workers[i])) break;
    p->nworkers++;
  }
  return p;
fail3:
  pthread_cond_destroy(&p->work_cv);
fail2:
  pthread_mutex_destroy(&p->mu);
fail1:
  pthread_mutex_destroy(&p->run_mu);
fail0:
  free(p->threads);
  free(p->workers);
  free(p);
  return NULL;
}

void pool_destroy(Pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  pthread_cond_broadcast(&p->work_cv);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->nworkers; i++) pthread_join(p->threads[i], NULL);
  pthread_cond_destroy(&p->done_cv);
  pthread_cond_destroy(&p->work_cv);
  pthread_mutex_destroy(&p->mu);
  pthread_mutex_destroy(&p->run_mu);
  free(p->threads);
  free(p->workers);
  free(p);
}

int pool_threads(const Pool *p) { return p ? p->nworkers + 1 : 1; }

int pool_ranges(const Pool *p, int64_t n) {
  int t = pool_threads(p);
  if (n <= 0) return 0;
  return n < t ? (int)n : t;
}

void pool_run(Pool *p, int64_t n, PoolFn fn, void *ctx) {
  if (n <= 0) return;
  int nranges = pool_ranges(p, n);
  if (!p || nranges == 1) { /* one range: no hand-off */
    fn(ctx, 0, 0, n);
    return;
  }
  pthread_mutex_lock(&p->run_mu);
  pthread_mutex_lock(&p->mu);
  p->fn = fn;
  p->ctx = ctx;
  p->n = n;
  p->grain = grain_of(n, nranges);
  p->nranges = nranges;
  p->pending = nranges - 1;
  atomic_store_explicit(&p->next, 0, memory_order_relaxed);
  p->gen++;
  pthread_cond_broadcast(&p->work_cv);
  pthread_mutex_unlock(&p->mu);
  take_items(p, fn, ctx, 0, n, p->grain);
  pthread_mutex_lock(&p->mu);
  while (p->pending > 0) pthread_cond_wait(&p->done_cv, &p->mu);
  pthread_mutex_unlock(&p->mu);
  pthread_mutex_unlock(&p->run_mu);
}
