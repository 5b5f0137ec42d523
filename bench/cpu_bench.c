/* cpu_bench: mixc's CPU kernels (chunk and recurrent strategies) on GLA, Gated DeltaNet and
 * Mamba2 at K = V = 128 (Mamba2: N = P = 128), f32, through the public API (mixc.h).
 *
 *   cpu_bench [--examples DIR] [--out DIR] [--B n] [--T n] [--H n] [--runs n]
 *             [--chunk C] [--vtile W] [--mixers gla,gated_delta,mamba2] [--tol x]
 *
 * --chunk and --vtile set the chunk kernel's chunk length and value-tile width (0, the
 * default: the schedule's choice).
 *
 * For each mixer: compile the module, create a CHUNK and a RECURRENT kernel (MIXC_NUM_THREADS
 * threads, default every core), draw f32 inputs the way the project's tests do (runtime/inputs.h:
 * log gates logsigmoid(randn) <= 0, unit-norm per-token vectors, per-token scalars in (0, 1)),
 * time the first call (it compiles the variant) and report mixc_kernel_compile_ms, check the chunk
 * output against the recurrent one (relative error max|x - y| / max|y|), then time each strategy:
 * one warm-up call, then the median of at least --runs full forwards.
 *
 * Throughput is reported in the chunk algorithm's useful FLOPs at C = 64 for every
 * implementation (so GFLOP/s is proportional to 1 / time): per token and head
 * 2 C (K + V) + 4 K V (docs/benchmarks.md).
 *
 * With --out DIR, the inputs, params and the recurrent (reference) and chunk outputs are written
 * as DIR/<mixer>_<name>.npy (float32, C order) for bench/c_loops and bench/numpy_chunk.py,
 * which check themselves against them.
 *
 * With --decode: the decode step instead (mixc_step, one token, fp32 states carried across
 * calls; defaults B = 64, H = 16): each mixer's RECURRENT kernel, checked first against a
 * forward of the same token from the same states (outputs and states, relative error <=
 * 1e-5), then the median time of a call and the state bytes it must move (read + write,
 * 2 B H K V 4 bytes) per second, against the memory bandwidth measured in the same process
 * (the better of an in-place scale x = a x + b over 1 GiB and a copy of 512 MiB, each the
 * median of 11, read + write bytes, on the kernel's thread count; bench/Makefile builds this
 * file with -O3 -march=native so that the scale loop runs at the memory's speed). The calls rotate over as many state sets (separate
 * decode streams) as make 1 GiB, so no call finds its states in a cache.
 *
 * Besides the readable lines, every measurement is one line starting with "RESULT" and
 * made of tab-separated key=value fields (bench/run.sh collects them); a missing strategy is
 * a RESULT line with status=na and the API's message, never a number. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "inputs.h"
#include "mixc.h"

enum { MAX_TENSORS = 8, CHUNK_FOR_FLOPS = 64 };

typedef struct Tensor {
  const char *name;
  int kind;      /* 0 input [B, T, H, (dim)], 1 param [H], 2 output [B, T, H, dim] */
  int dim;       /* 0: scalar per token, 1: the key dim, 2: the value dim */
  InputRole role; /* as mixc_input_roles assigns it for this mixer (see `mixc run`) */
} Tensor;

typedef struct MixerSpec {
  const char *name;   /* mixer and file name: examples/<name>.mix */
  const char *title;
  const char *kdim, *vdim; /* the names of the key and value dims */
  const char *state;       /* its state [kdim, vdim] */
  Tensor t[MAX_TENSORS];
  int nt;
} MixerSpec;

static const MixerSpec MIXERS[] = {
    {"gla", "GLA", "K", "V", "S",
     {{"q", 0, 1, ROLE_UNIT}, {"k", 0, 1, ROLE_UNIT}, {"v", 0, 2, ROLE_UNIT},
      {"g", 0, 1, ROLE_LOG_GATE}, {"o", 2, 2, ROLE_NORMAL}},
     5},
    {"gated_delta", "Gated DeltaNet", "K", "V", "S",
     {{"q", 0, 1, ROLE_UNIT}, {"k", 0, 1, ROLE_UNIT}, {"v", 0, 2, ROLE_UNIT},
      {"g", 0, 0, ROLE_LOG_GATE}, {"beta", 0, 0, ROLE_UNIFORM01}, {"o", 2, 2, ROLE_NORMAL}},
     6},
    {"mamba2", "Mamba2", "N", "P", "h",
     {{"x", 0, 2, ROLE_UNIT}, {"B", 0, 1, ROLE_UNIT}, {"C", 0, 1, ROLE_UNIT},
      {"dt", 0, 0, ROLE_UNIFORM01}, {"A_log", 1, 0, ROLE_LOG_GATE}, {"dt_bias", 1, 0, ROLE_NORMAL},
      {"D", 1, 0, ROLE_NORMAL}, {"y", 2, 2, ROLE_NORMAL}},
     8},
};
enum { NMIXERS = sizeof MIXERS / sizeof MIXERS[0] };

typedef struct Opts {
  const char *examples, *out, *mixers;
  int64_t B, T, H, K, V, chunk, vtile;
  int runs;
  double tol;
  int decode;
} Opts;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = NULL;
  if (fseek(f, 0, SEEK_END) == 0) {
    long n = ftell(f);
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
      *len = fread(buf, 1, (size_t)n, f);
      buf[*len] = 0;
    }
  }
  fclose(f);
  return buf;
}

/* A float32 C-order .npy (format 1.0), as numpy.save writes it. */
static int write_npy(const char *path, const float *x, int ndim, const int64_t *shape) {
  char hdr[256], dims[128] = "";
  size_t n = 1, off = 0;
  for (int i = 0; i < ndim; i++) {
    off += (size_t)snprintf(dims + off, sizeof dims - off, "%lld%s", (long long)shape[i],
                            ndim == 1 ? "," : i + 1 < ndim ? ", " : "");
    n *= (size_t)shape[i];
  }
  int len = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }",
                     dims);
  int total = 10 + len + 1, pad = (64 - total % 64) % 64;
  FILE *f = fopen(path, "wb");
  if (!f) return 1;
  unsigned short hlen = (unsigned short)(len + pad + 1);
  fwrite("\x93NUMPY\x01\x00", 1, 8, f);
  unsigned char hl[2] = {(unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};
  fwrite(hl, 1, 2, f);
  fwrite(hdr, 1, (size_t)len, f);
  for (int i = 0; i < pad; i++) fputc(' ', f);
  fputc('\n', f);
  size_t w = fwrite(x, sizeof *x, n, f);
  return fclose(f) != 0 || w != n;
}

typedef struct Bufs {
  float *data[MAX_TENSORS];
  int64_t shape[MAX_TENSORS][4];
  int ndim[MAX_TENSORS];
  size_t numel[MAX_TENSORS];
} Bufs;

static int64_t dim_size(const Opts *o, int dim) { return dim == 1 ? o->K : o->V; }

static int make_buffers(const MixerSpec *m, const Opts *o, Bufs *b, uint64_t seed) {
  MixcRng rng;
  mixc_rng_seed(&rng, seed);
  for (int i = 0; i < m->nt; i++) {
    const Tensor *t = &m->t[i];
    int nd = 0;
    if (t->kind == 1) {
      b->shape[i][nd++] = o->H;
    } else {
      b->shape[i][nd++] = o->B;
      b->shape[i][nd++] = o->T;
      b->shape[i][nd++] = o->H;
      if (t->dim) b->shape[i][nd++] = dim_size(o, t->dim);
    }
    b->ndim[i] = nd;
    size_t n = 1;
    for (int d = 0; d < nd; d++) n *= (size_t)b->shape[i][d];
    b->numel[i] = n;
    b->data[i] = malloc(n * sizeof(float));
    if (!b->data[i]) return 1;
    if (t->kind == 2) {
      for (size_t j = 0; j < n; j++) b->data[i][j] = NAN;
      continue;
    }
    double *tmp = malloc(n * sizeof(double));
    if (!tmp) return 1;
    mixc_fill(&rng, t->role, tmp, (int64_t)n, t->dim ? dim_size(o, t->dim) : 1);
    for (size_t j = 0; j < n; j++) b->data[i][j] = (float)tmp[j];
    free(tmp);
  }
  return 0;
}

static void free_buffers(const MixerSpec *m, Bufs *b) {
  for (int i = 0; i < m->nt; i++) free(b->data[i]);
}

static double rel_err(const float *x, const float *ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)x[i] - (double)ref[i]);
    if (!(d <= num)) num = isnan(d) ? INFINITY : d;
    if (fabs((double)ref[i]) > den) den = fabs((double)ref[i]);
  }
  return den > 0 ? num / den : num;
}

/* One kernel's state: the output buffer it writes and its arguments. */
typedef struct Run {
  mixc_kernel *k;
  float *out;
  mixc_named_tensor in[MAX_TENSORS], outs[1];
  int nin;
  mixc_args args;
} Run;

static void make_args(const MixerSpec *m, Bufs *b, float *out, Run *r) {
  r->nin = 0;
  for (int i = 0; i < m->nt; i++) {
    const Tensor *t = &m->t[i];
    mixc_tensor ten = mixc_tensor_contiguous(t->kind == 2 ? out : b->data[i], MIXC_F32, b->ndim[i],
                                             b->shape[i]);
    if (t->kind == 2) {
      r->outs[0].name = t->name;
      r->outs[0].tensor = ten;
    } else {
      r->in[r->nin].name = t->name;
      r->in[r->nin].tensor = ten;
      r->nin++;
    }
  }
  memset(&r->args, 0, sizeof r->args);
  r->args.inputs = r->in;
  r->args.ninputs = r->nin;
  r->args.outputs = r->outs;
  r->args.noutputs = 1;
}

static void result_na(const MixerSpec *m, const Opts *o, const char *impl, const char *why) {
  char msg[512];
  snprintf(msg, sizeof msg, "%.500s", why);
  for (char *p = msg; *p; p++)
    if (*p == '\t' || *p == '\n') *p = ' ';
  printf("RESULT\timpl=%s\tmixer=%s\tB=%lld\tH=%lld\tT=%lld\tstatus=na\tmsg=%s\n", impl, m->name,
         (long long)o->B, (long long)o->H, (long long)o->T, msg);
}

static double thread_cpu_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static double median(double *t, int n) {
  qsort(t, (size_t)n, sizeof t[0], cmp_double);
  return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

/* Time full forwards: one warm-up, then at least `runs` timed calls (more while the timed
 * calls total under 0.4 s, at most 51). Returns the median wall time in ms, or -1 on
 * failure; *cpu_ms: the median CPU time of the calling thread (with MIXC_NUM_THREADS=1 the
 * whole kernel, unaffected by the host taking the vCPU away). */
static double time_forward(Run *r, int runs, int *nruns, double *min_ms, double *cpu_ms,
                           mixc_error *err) {
  if (mixc_forward(r->k, &r->args, err) != MIXC_OK) return -1;
  double t[51], c[51], total = 0;
  int n = 0;
  while (n < 51 && (n < runs || total < 400.0)) {
    double c0 = thread_cpu_ms(), t0 = now_ms();
    if (mixc_forward(r->k, &r->args, err) != MIXC_OK) return -1;
    t[n] = now_ms() - t0;
    c[n] = thread_cpu_ms() - c0;
    total += t[n++];
  }
  *nruns = n;
  *cpu_ms = median(c, n);
  double med = median(t, n);
  *min_ms = t[0];
  return med;
}

static double chunk_flops(const Opts *o) {
  double C = CHUNK_FOR_FLOPS, K = (double)o->K, V = (double)o->V;
  return (double)o->B * (double)o->T * (double)o->H * (2 * C * (K + V) + 4 * K * V);
}

/* examples/<mixer>.mix into a new buffer (its path into path), or NULL with a message. */
static char *read_example(const MixerSpec *m, const Opts *o, char *path, size_t n, size_t *len) {
  snprintf(path, n, "%s/%s.mix", o->examples, m->name);
  char *src = read_file(path, len);
  if (!src) fprintf(stderr, "cpu_bench: cannot read %s (pass --examples DIR)\n", path);
  return src;
}

static int bench_mixer(mixc_context *ctx, const MixerSpec *m, const Opts *o) {
  char path[1024];
  size_t len = 0;
  char *src = read_example(m, o, path, sizeof path, &len);
  if (!src) return 1;
  mixc_error err;
  mixc_module *mod = NULL;
  int rc = 1;
  Bufs b;
  memset(&b, 0, sizeof b);
  Run runs[2];
  memset(runs, 0, sizeof runs);
  const char *impl[2] = {"mixc_recurrent", "mixc_chunk"};
  const mixc_strategy strat[2] = {MIXC_STRATEGY_RECURRENT, MIXC_STRATEGY_CHUNK};
  int have[2] = {0, 0};

  printf("\n== %s (%s): B=%lld T=%lld H=%lld %s=%lld %s=%lld, f32 ==\n", m->title, m->name,
         (long long)o->B, (long long)o->T, (long long)o->H, m->kdim, (long long)o->K, m->vdim,
         (long long)o->V);
  double t0 = now_ms();
  if (mixc_module_compile(ctx, src, len, path, &mod, &err) != MIXC_OK) {
    fprintf(stderr, "cpu_bench: %s: %s\n", path, err.message);
    goto out;
  }
  printf("  module compile (front end): %.1f ms\n", now_ms() - t0);
  if (make_buffers(m, o, &b, 20260801u)) {
    fprintf(stderr, "cpu_bench: out of memory\n");
    goto out;
  }
  int oi = m->nt - 1; /* the output is the last tensor */
  mixc_dim dims[2] = {{m->kdim, o->K}, {m->vdim, o->V}};
  double first_ms[2] = {0, 0}, compile_ms[2] = {0, 0};

  for (int s = 0; s < 2; s++) {
    mixc_kernel_options opt;
    memset(&opt, 0, sizeof opt);
    opt.mixer = m->name;
    opt.dims = dims;
    opt.ndims = 2;
    opt.device = MIXC_CPU;
    opt.strategy = strat[s];
    opt.chunk_size = s == 1 ? o->chunk : 0;
    opt.vtile = s == 1 ? o->vtile : 0;
    Run *r = &runs[s];
    if (mixc_kernel_create(mod, &opt, &r->k, &err) != MIXC_OK) {
      printf("  %s: not available (%s: %s)\n", s ? "chunk" : "recurrent",
             mixc_status_name(err.status), err.message);
      result_na(m, o, impl[s], err.message);
      continue;
    }
    r->out = malloc(b.numel[oi] * sizeof(float));
    if (!r->out) goto out;
    for (size_t j = 0; j < b.numel[oi]; j++) r->out[j] = NAN;
    make_args(m, &b, r->out, r);
    double c0 = now_ms();
    if (mixc_forward(r->k, &r->args, &err) != MIXC_OK) {
      printf("  %s: not available (first call: %s: %s)\n", s ? "chunk" : "recurrent",
             mixc_status_name(err.status), err.message);
      result_na(m, o, impl[s], err.message);
      continue;
    }
    first_ms[s] = now_ms() - c0;
    int nv = 0;
    compile_ms[s] = mixc_kernel_compile_ms(r->k, &nv);
    printf("  %-9s first call %.1f ms, of which compiling %.1f ms (%d variant%s)\n",
           s ? "chunk" : "recurrent", first_ms[s], compile_ms[s], nv, nv == 1 ? "" : "s");
    have[s] = 1;
  }
  if (!have[0]) {
    printf("  no recurrent kernel: nothing to check against, no timings reported\n");
    result_na(m, o, impl[1], "no recurrent reference to check against");
    rc = 0;
    goto out;
  }
  /* The recurrent result must be finite; the chunk result must match it. */
  double rec_bad = rel_err(runs[0].out, runs[0].out, b.numel[oi]);
  if (!(rec_bad == 0)) {
    printf("  recurrent output is not finite: no timings reported\n");
    goto out;
  }
  double err_chunk = -1;
  if (have[1]) {
    err_chunk = rel_err(runs[1].out, runs[0].out, b.numel[oi]);
    int ok = err_chunk <= o->tol;
    printf("  check: chunk vs recurrent, rel. error max|x-y|/max|y| = %.3g (tolerance %.0e): %s\n",
           err_chunk, o->tol, ok ? "ok" : "FAILED");
    if (!ok) {
      char why[128];
      snprintf(why, sizeof why, "chunk output differs from the recurrent one: rel. error %.3g",
               err_chunk);
      result_na(m, o, impl[1], why);
      have[1] = 0;
    }
  }
  double flops = chunk_flops(o);
  for (int s = 0; s < 2; s++) {
    if (!have[s]) continue;
    int n = 0;
    double mn = 0, cpu = 0, ms = time_forward(&runs[s], o->runs, &n, &mn, &cpu, &err);
    if (ms < 0) {
      printf("  %s: forward failed: %s\n", impl[s], err.message);
      result_na(m, o, impl[s], err.message);
      continue;
    }
    printf("  %-9s median %8.2f ms (min %.2f, %d runs)  %7.2f GFLOP/s (chunk FLOPs, C=64); "
           "calling thread's CPU %.2f ms\n",
           s ? "chunk" : "recurrent", ms, mn, n, flops / ms * 1e-6, cpu);
    printf("RESULT\timpl=%s\tmixer=%s\tB=%lld\tH=%lld\tT=%lld\tstatus=ok\tms=%.4f\tmin_ms=%.4f"
           "\truns=%d\tgflops=%.3f\tcompile_ms=%.2f\tfirst_call_ms=%.2f\trelerr=%.3g"
           "\tcpu_ms=%.4f\n",
           impl[s], m->name, (long long)o->B, (long long)o->H, (long long)o->T, ms, mn, n,
           flops / ms * 1e-6, compile_ms[s], first_ms[s], s ? err_chunk : 0.0, cpu);
  }
  if (o->out) {
    for (int i = 0; i < m->nt; i++) {
      char p[1200];
      const float *x = b.data[i];
      if (m->t[i].kind == 2) x = runs[0].out;
      snprintf(p, sizeof p, "%s/%s_%s.npy", o->out, m->name, m->t[i].name);
      if (write_npy(p, x, b.ndim[i], b.shape[i])) {
        fprintf(stderr, "cpu_bench: cannot write %s\n", p);
        goto out;
      }
    }
    if (have[1]) {
      char p[1200];
      snprintf(p, sizeof p, "%s/%s_%s_chunk.npy", o->out, m->name, m->t[oi].name);
      if (write_npy(p, runs[1].out, b.ndim[oi], b.shape[oi])) goto out;
    }
  }
  rc = 0;
out:
  for (int s = 0; s < 2; s++) {
    mixc_kernel_destroy(runs[s].k);
    free(runs[s].out);
  }
  free_buffers(m, &b);
  mixc_module_destroy(mod);
  free(src);
  return rc;
}

/* ---- the decode step (--decode) ---- */

typedef struct BwJob {
  float *x, *y; /* y: NULL for the in-place scale */
  size_t n;
} BwJob;

static void *bw_main(void *p) {
  const BwJob *j = p;
  if (j->y)
    memcpy(j->y, j->x, j->n * sizeof(float));
  else
    for (size_t i = 0; i < j->n; i++) j->x[i] = j->x[i] * 0.999f + 1e-3f;
  return NULL;
}

/* Memory bandwidth in GB/s (read + write bytes) on `threads` threads: the better of the
 * medians of 11 in-place scales over 2 `mib` MiB and of 11 copies of `mib` MiB (the statistic
 * the step's time is reported in; this shared host's fastest runs came out up to 1.6x the
 * median); 0 when out of memory. best: the fastest run of either. */
static double memory_bandwidth(int threads, size_t mib, double *scale_gbs, double *copy_gbs,
                               double *best_gbs) {
  size_t n = mib << 18; /* floats */
  float *x = malloc(2 * n * sizeof(float)), *y = malloc(n * sizeof(float));
  enum { MAXT = 64 };
  if (threads > MAXT) threads = MAXT;
  if (!x || !y) {
    free(x);
    free(y);
    return 0;
  }
  for (size_t i = 0; i < 2 * n; i++) x[i] = (float)(i & 1023);
  for (size_t i = 0; i < n; i++) y[i] = (float)(i & 1023);
  double best[2] = {0, 0};
  *best_gbs = 0;
  for (int kind = 0; kind < 2; kind++) {
    size_t len = kind ? n : 2 * n;
    enum { RUNS = 11 };
    double t[RUNS];
    for (int r = 0; r < RUNS; r++) {
      BwJob jobs[MAXT];
      pthread_t th[MAXT];
      int started[MAXT];
      double t0 = now_ms();
      for (int k = 0; k < threads; k++) {
        size_t lo = len / (size_t)threads * (size_t)k,
               hi = k == threads - 1 ? len : lo + len / (size_t)threads;
        jobs[k].x = x + lo;
        jobs[k].y = kind ? y + lo : NULL;
        jobs[k].n = hi - lo;
        started[k] = pthread_create(&th[k], NULL, bw_main, &jobs[k]) == 0;
        if (!started[k]) bw_main(&jobs[k]);
      }
      for (int k = 0; k < threads; k++)
        if (started[k]) pthread_join(th[k], NULL);
      t[r] = now_ms() - t0;
    }
    double bytes = 2.0 * (double)(len * sizeof(float));
    best[kind] = bytes / (median(t, RUNS) * 1e6); /* median sorts t */
    if (bytes / (t[0] * 1e6) > *best_gbs) *best_gbs = bytes / (t[0] * 1e6);
  }
  free(x);
  free(y);
  *scale_gbs = best[0];
  *copy_gbs = best[1];
  return best[0] > best[1] ? best[0] : best[1];
}

static int bench_decode(mixc_context *ctx, const MixerSpec *m, const Opts *o, double bw) {
  char path[1024];
  size_t len = 0;
  char *src = read_example(m, o, path, sizeof path, &len);
  if (!src) return 1;
  mixc_error err;
  mixc_module *mod = NULL;
  mixc_kernel *k = NULL;
  int rc = 1;
  Bufs b;
  memset(&b, 0, sizeof b);
  Opts o1 = *o;
  o1.T = 1;
  int oi = m->nt - 1;
  size_t ns = (size_t)(o->B * o->H * o->K * o->V), sbytes = ns * sizeof(float);
  size_t nsets = ((size_t)1 << 30) / sbytes + 1;
  if (nsets > 1024) nsets = 1024;
  float *s0 = malloc(sbytes), *fin = malloc(sbytes), *st = malloc(sbytes * nsets), *out1 = NULL,
        *out2 = NULL;
  printf("\n== %s (%s) decode step: B=%lld H=%lld %s=%lld %s=%lld, f32 states (%.1f MiB, "
         "%zu sets) ==\n",
         m->title, m->name, (long long)o->B, (long long)o->H, m->kdim, (long long)o->K, m->vdim,
         (long long)o->V, (double)sbytes / (1 << 20), nsets);
  mixc_dim dims[2] = {{m->kdim, o->K}, {m->vdim, o->V}};
  mixc_kernel_options opt;
  memset(&opt, 0, sizeof opt);
  opt.mixer = m->name;
  opt.dims = dims;
  opt.ndims = 2;
  opt.device = MIXC_CPU;
  opt.strategy = MIXC_STRATEGY_RECURRENT;
  if (!s0 || !fin || !st || make_buffers(m, &o1, &b, 20261122u)) {
    fprintf(stderr, "cpu_bench: out of memory\n");
    goto out;
  }
  out1 = malloc(b.numel[oi] * sizeof(float));
  out2 = malloc(b.numel[oi] * sizeof(float));
  if (!out1 || !out2) goto out;
  MixcRng rng;
  mixc_rng_seed(&rng, 7);
  for (size_t i = 0; i < ns; i++) s0[i] = (float)(0.5 * mixc_rng_normal(&rng));
  if (mixc_module_compile(ctx, src, len, path, &mod, &err) != MIXC_OK ||
      mixc_kernel_create(mod, &opt, &k, &err) != MIXC_OK) {
    printf("  recurrent: not available (%s)\n", err.message);
    result_na(m, o, "mixc_decode", err.message);
    rc = 0;
    goto out;
  }
  int64_t sshape[4] = {o->B, o->H, o->K, o->V};
  mixc_named_tensor sref = {m->state, mixc_tensor_contiguous(s0, MIXC_F32, 4, sshape)};
  mixc_named_tensor sfin = {m->state, mixc_tensor_contiguous(fin, MIXC_F32, 4, sshape)};
  mixc_named_tensor scar = {m->state, mixc_tensor_contiguous(st, MIXC_F32, 4, sshape)};
  /* the check: one forward token from s0 against one step from a copy of s0 */
  Run r;
  memset(&r, 0, sizeof r);
  for (size_t j = 0; j < b.numel[oi]; j++) out1[j] = out2[j] = NAN;
  for (size_t i = 0; i < ns; i++) fin[i] = NAN;
  make_args(m, &b, out1, &r);
  r.args.initial_states = &sref;
  r.args.ninitial = 1;
  r.args.final_states = &sfin;
  r.args.nfinal = 1;
  if (mixc_forward(k, &r.args, &err) != MIXC_OK) {
    printf("  forward failed: %s\n", err.message);
    goto out;
  }
  Run rs;
  memset(&rs, 0, sizeof rs);
  make_args(m, &b, out2, &rs);
  memcpy(st, s0, sbytes);
  if (mixc_step(k, &rs.args, &scar, 1, &err) != MIXC_OK) {
    printf("  step failed: %s\n", err.message);
    goto out;
  }
  double eo = rel_err(out2, out1, b.numel[oi]), es = rel_err(st, fin, ns);
  int ok = eo <= 1e-5 && es <= 1e-5;
  printf("  check: step vs forward of the same token, rel. error output %.3g, state %.3g: %s\n",
         eo, es, ok ? "ok" : "FAILED");
  if (!ok) {
    result_na(m, o, "mixc_decode", "the step differs from the forward");
    goto out;
  }
  /* time: steps carrying the states of set c % nsets, a warm-up of 3, then >= 20 calls
   * (until 0.5 s, <= 201) */
  for (size_t c = 1; c < nsets; c++) memcpy(st + c * ns, s0, sbytes);
  enum { MAXC = 201 };
  double t[MAXC], total = 0;
  int n = 0;
  for (int w = 0; w < 3; w++) mixc_step(k, &rs.args, &scar, 1, &err);
  while (n < MAXC && (n < 20 || total < 500.0)) {
    scar.tensor.data = st + (size_t)(n + 3) % nsets * ns;
    double t0 = now_ms();
    if (mixc_step(k, &rs.args, &scar, 1, &err) != MIXC_OK) {
      printf("  step failed: %s\n", err.message);
      goto out;
    }
    t[n] = now_ms() - t0;
    total += t[n++];
  }
  double ms = median(t, n), gbs = 2.0 * (double)sbytes / (ms * 1e6);
  printf("  step median %.1f us (%d calls): state read + write %.2f GB/s, %.0f%% of the measured "
         "%.2f GB/s\n",
         ms * 1e3, n, gbs, bw > 0 ? 100 * gbs / bw : 0.0, bw);
  printf("RESULT\timpl=mixc_decode\tmixer=%s\tB=%lld\tH=%lld\tT=1\tstatus=ok\tus=%.2f\tcalls=%d"
         "\tstate_gbs=%.3f\tmem_gbs=%.3f\tpct=%.1f\n",
         m->name, (long long)o->B, (long long)o->H, ms * 1e3, n, gbs, bw,
         bw > 0 ? 100 * gbs / bw : 0.0);
  rc = 0;
out:
  mixc_kernel_destroy(k);
  mixc_module_destroy(mod);
  free_buffers(m, &b);
  free(s0);
  free(fin);
  free(st);
  free(out1);
  free(out2);
  free(src);
  return rc;
}

static int parse_i64(const char *s, int64_t *v) {
  char *end;
  long long x = strtoll(s, &end, 10);
  if (!*s || *end || x < 0) return 1;
  *v = x;
  return 0;
}

static void usage(void) {
  fprintf(stderr, "usage: cpu_bench [--examples DIR] [--out DIR] [--B n] [--T n] [--H n] "
                  "[--D n] [--runs n] [--chunk C] [--vtile W] [--mixers a,b,...] [--tol x] "
                  "[--decode]\n");
}

int main(int argc, char **argv) {
  Opts o = {"examples", NULL, "gla,gated_delta,mamba2", 1, 4096, 4, 128, 128, 0, 0, 5, 1e-3, 0};
  int setB = 0, setH = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int64_t x = 0;
    if (!strcmp(a, "--decode")) {
      o.decode = 1;
      continue;
    }
    setB |= !strcmp(a, "--B");
    setH |= !strcmp(a, "--H");
    if (!v) {
      usage();
      return 2;
    }
    i++;
    if (!strcmp(a, "--examples")) o.examples = v;
    else if (!strcmp(a, "--out")) o.out = v;
    else if (!strcmp(a, "--mixers")) o.mixers = v;
    else if (!strcmp(a, "--tol")) o.tol = atof(v);
    else if (parse_i64(v, &x)) {
      usage();
      return 2;
    } else if (!strcmp(a, "--B")) o.B = x;
    else if (!strcmp(a, "--T")) o.T = x;
    else if (!strcmp(a, "--H")) o.H = x;
    else if (!strcmp(a, "--D")) o.K = o.V = x;
    else if (!strcmp(a, "--runs")) o.runs = (int)x;
    else if (!strcmp(a, "--chunk")) o.chunk = x;
    else if (!strcmp(a, "--vtile")) o.vtile = x;
    else {
      usage();
      return 2;
    }
  }
  if (o.B < 1 || o.T < 1 || o.H < 1 || o.K < 1 || o.runs < 1) {
    usage();
    return 2;
  }
  if (o.decode) {
    if (!setB) o.B = 64;
    if (!setH) o.H = 16;
  }
  mixc_error err;
  mixc_context *ctx = NULL;
  if (mixc_context_create(0, &ctx, &err) != MIXC_OK) {
    fprintf(stderr, "cpu_bench: context: %s\n", err.message);
    return 1;
  }
  const char *env = getenv("MIXC_NUM_THREADS");
  printf("mixc %s, MIXC_NUM_THREADS=%s, chunk size %s%lld\n", mixc_version(), env ? env : "(unset: every core)",
         o.chunk ? "" : "the schedule's choice; FLOPs counted at C = ", (long long)(o.chunk ? o.chunk : 64));
  int rc = 0;
  double bw = 0;
  if (o.decode) {
    long nth = env && atoi(env) > 0 ? atoi(env) : sysconf(_SC_NPROCESSORS_ONLN);
    double sc = 0, cp = 0, bestbw = 0;
    bw = memory_bandwidth(nth > 0 ? (int)nth : 1, 512, &sc, &cp, &bestbw);
    printf("memory bandwidth, %ld threads (read + write bytes, median of 11): in-place scale over "
           "1 GiB %.2f GB/s, copy of 512 MiB %.2f GB/s (fastest run %.2f GB/s)\n",
           nth, sc, cp, bestbw);
    printf("RESULT\timpl=memory\tscale_gbs=%.3f\tcopy_gbs=%.3f\tbest_gbs=%.3f\tthreads=%ld\n",
           sc, cp, bestbw, nth);
  }
  char list[256], key[64];
  snprintf(list, sizeof list, ",%s,", o.mixers);
  for (int i = 0; i < NMIXERS; i++) {
    snprintf(key, sizeof key, ",%s,", MIXERS[i].name);
    if (strstr(list, key))
      rc |= o.decode ? bench_decode(ctx, &MIXERS[i], &o, bw) : bench_mixer(ctx, &MIXERS[i], &o);
  }
  mixc_context_destroy(ctx);
  return rc;
}
