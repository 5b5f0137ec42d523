/* c_loops: the recurrences of examples/gla.mix, gated_delta.mix and mamba2.mix as plain C loops,
 * the way a C programmer would write them (fp32 state, one token at a time), for the CPU
 * benchmark (docs/benchmarks.md). Built with `cc -O3 -march=native`; the (b, h) pairs are
 * split over pthreads.
 *
 *   c_loops DIR [--threads n] [--runs n] [--mixers gla,gated_delta,mamba2]
 *
 * DIR holds the inputs and the reference outputs written by `cpu_bench --out DIR`
 * (<mixer>_<name>.npy, float32); each mixer's output is checked against mixc's recurrent
 * output (relative error max|x - y| / max|y|) before its time is reported. Output: readable
 * lines and one tab-separated "RESULT key=value ..." line per mixer, like cpu_bench. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- a float32 .npy reader (C order, version 1.0, as numpy.save and cpu_bench write) ---- */

typedef struct Arr {
  float *data;
  int ndim;
  long shape[4];
  size_t n;
} Arr;

static int load_npy(const char *dir, const char *mixer, const char *name, Arr *a) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s_%s.npy", dir, mixer, name);
  memset(a, 0, sizeof *a);
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "c_loops: cannot open %s (run cpu_bench --out %s first)\n", path, dir);
    return 1;
  }
  unsigned char pre[10];
  char hdr[1024];
  int rc = 1;
  if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) || pre[6] != 1) goto out;
  size_t hl = pre[8] | (size_t)pre[9] << 8;
  if (hl >= sizeof hdr || fread(hdr, 1, hl, f) != hl) goto out;
  hdr[hl] = 0;
  if (!strstr(hdr, "'<f4'") || !strstr(hdr, "'fortran_order': False")) goto out;
  const char *p = strstr(hdr, "'shape': (");
  if (!p) goto out;
  p += 10;
  a->n = 1;
  while (*p && *p != ')') {
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p) break;
    if (a->ndim == 4) goto out;
    a->shape[a->ndim++] = v;
    a->n *= (size_t)v;
    p = end;
    while (*p == ',' || *p == ' ') p++;
  }
  a->data = malloc(a->n * sizeof(float));
  if (a->data && fread(a->data, sizeof(float), a->n, f) == a->n) rc = 0;
out:
  fclose(f);
  if (rc) {
    fprintf(stderr, "c_loops: %s: not a float32 C-order .npy\n", path);
    free(a->data);
    a->data = NULL;
  }
  return rc;
}

/* ---- the recurrences, per (b, h); arrays [B, T, H, ...] ---- */

typedef struct Job {
  int mixer; /* 0 gla, 1 gated_delta, 2 mamba2 */
  long B, T, H, K, V;
  const float *in[7]; /* in the order of the mixer's declarations */
  float *out;
} Job;

/* GLA: S[i, j] = exp(g[i]) S[i, j] + k[i] v[j]; o[j] = scale sum_i q[i] S[i, j]. */
static void gla_seq(const Job *J, long b, long h, float *S) {
  const long K = J->K, V = J->V, H = J->H;
  const float scale = 1.0f / sqrtf((float)K);
  memset(S, 0, sizeof(float) * (size_t)(K * V));
  for (long t = 0; t < J->T; t++) {
    long row = (b * J->T + t) * H + h;
    const float *q = J->in[0] + row * K, *k = J->in[1] + row * K, *v = J->in[2] + row * V,
                *g = J->in[3] + row * K;
    float *o = J->out + row * V;
    for (long j = 0; j < V; j++) o[j] = 0;
    for (long i = 0; i < K; i++) {
      float a = expf(g[i]), ki = k[i], qi = q[i] * scale;
      float *Si = S + i * V;
      for (long j = 0; j < V; j++) {
        Si[j] = a * Si[j] + ki * v[j];
        o[j] += qi * Si[j];
      }
    }
  }
}

/* Gated DeltaNet: S = e^g S; S += beta k (v - S^T k)^T; o = S^T q. */
static void gdn_seq(const Job *J, long b, long h, float *S) {
  const long K = J->K, V = J->V, H = J->H;
  float *u = malloc(sizeof(float) * (size_t)V);
  if (!u) abort();
  memset(S, 0, sizeof(float) * (size_t)(K * V));
  for (long t = 0; t < J->T; t++) {
    long row = (b * J->T + t) * H + h;
    const float *q = J->in[0] + row * K, *k = J->in[1] + row * K, *v = J->in[2] + row * V;
    const float a = expf(J->in[3][row]), beta = J->in[4][row];
    float *o = J->out + row * V;
    for (long j = 0; j < V; j++) u[j] = 0;
    for (long i = 0; i < K; i++) {
      float *Si = S + i * V;
      for (long j = 0; j < V; j++) {
        Si[j] *= a;
        u[j] += k[i] * Si[j];
      }
    }
    for (long j = 0; j < V; j++) u[j] = beta * (v[j] - u[j]);
    for (long j = 0; j < V; j++) o[j] = 0;
    for (long i = 0; i < K; i++) {
      float *Si = S + i * V;
      for (long j = 0; j < V; j++) {
        Si[j] += k[i] * u[j];
        o[j] += q[i] * Si[j];
      }
    }
  }
  free(u);
}

/* Mamba2: delta = softplus(dt + dt_bias); h = exp(-exp(A_log) delta) h + delta B x^T;
 * y = h^T C + D x. */
static void mamba2_seq(const Job *J, long b, long hd, float *S) {
  const long N = J->K, P = J->V, H = J->H;
  const float A = expf(J->in[4][hd]), dtb = J->in[5][hd], D = J->in[6][hd];
  memset(S, 0, sizeof(float) * (size_t)(N * P));
  for (long t = 0; t < J->T; t++) {
    long row = (b * J->T + t) * H + hd;
    const float *x = J->in[0] + row * P, *Bv = J->in[1] + row * N, *Cv = J->in[2] + row * N;
    float z = J->in[3][row] + dtb;
    float delta = z > 20.0f ? z : log1pf(expf(z));
    float a = expf(-A * delta);
    float *y = J->out + row * P;
    for (long p = 0; p < P; p++) y[p] = D * x[p];
    for (long n = 0; n < N; n++) {
      float bn = delta * Bv[n], cn = Cv[n];
      float *Sn = S + n * P;
      for (long p = 0; p < P; p++) {
        Sn[p] = a * Sn[p] + bn * x[p];
        y[p] += cn * Sn[p];
      }
    }
  }
}

typedef struct Worker {
  const Job *J;
  long first, last; /* work items (b * H + h) */
} Worker;

static void *work(void *arg) {
  const Worker *w = arg;
  const Job *J = w->J;
  float *S = malloc(sizeof(float) * (size_t)(J->K * J->V));
  if (!S) abort();
  for (long it = w->first; it < w->last; it++) {
    long b = it / J->H, h = it % J->H;
    if (J->mixer == 0) gla_seq(J, b, h, S);
    else if (J->mixer == 1) gdn_seq(J, b, h, S);
    else mamba2_seq(J, b, h, S);
  }
  free(S);
  return NULL;
}

static void run_job(const Job *J, int threads) {
  long items = J->B * J->H;
  if (threads > items) threads = (int)items;
  if (threads < 1) threads = 1;
  pthread_t tid[256];
  Worker w[256];
  for (int i = 0; i < threads; i++) {
    w[i].J = J;
    w[i].first = items * i / threads;
    w[i].last = items * (i + 1) / threads;
  }
  for (int i = 1; i < threads; i++)
    if (pthread_create(&tid[i], NULL, work, &w[i])) abort();
  work(&w[0]);
  for (int i = 1; i < threads; i++) pthread_join(tid[i], NULL);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static const char *const NAMES[3][8] = {
    {"q", "k", "v", "g", NULL, NULL, NULL, "o"},
    {"q", "k", "v", "g", "beta", NULL, NULL, "o"},
    {"x", "B", "C", "dt", "A_log", "dt_bias", "D", "y"},
};
static const char *const MIXER[3] = {"gla", "gated_delta", "mamba2"};

static int bench(const char *dir, int m, int threads, int runs) {
  Arr in[7], ref;
  memset(in, 0, sizeof in);
  memset(&ref, 0, sizeof ref);
  int rc = 1, nin = 0;
  for (int i = 0; i < 7 && NAMES[m][i]; i++, nin++)
    if (load_npy(dir, MIXER[m], NAMES[m][i], &in[i])) goto out;
  if (load_npy(dir, MIXER[m], NAMES[m][7], &ref)) goto out;
  /* the first input is [B, T, H, K-or-V]; the key dim is that of input 1 (k or B) */
  Job J = {m, in[0].shape[0], in[0].shape[1], in[0].shape[2], in[1].shape[3], ref.shape[3],
           {0}, NULL};
  for (int i = 0; i < nin; i++) J.in[i] = in[i].data;
  J.out = malloc(ref.n * sizeof(float));
  if (!J.out) goto out;
  for (size_t i = 0; i < ref.n; i++) J.out[i] = NAN;
  run_job(&J, threads); /* warm-up, and the result to check */
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.n; i++) {
    double d = fabs((double)J.out[i] - ref.data[i]);
    if (!(d <= num)) num = isnan(d) ? INFINITY : d;
    if (fabs((double)ref.data[i]) > den) den = fabs((double)ref.data[i]);
  }
  double err = den > 0 ? num / den : num;
  printf("%s: B=%ld T=%ld H=%ld K=%ld V=%ld, %d threads: check vs mixc recurrent: rel. error %.3g",
         MIXER[m], J.B, J.T, J.H, J.K, J.V, threads, err);
  if (!(err <= 1e-3)) {
    printf(": FAILED, no timing reported\n");
    printf("RESULT\timpl=c_loop\tmixer=%s\tB=%ld\tH=%ld\tT=%ld\tstatus=na\tmsg=check failed: "
           "rel. error %.3g\n", MIXER[m], J.B, J.H, J.T, err);
    free(J.out);
    goto out;
  }
  double t[51], total = 0;
  int n = 0;
  while (n < 51 && (n < runs || total < 400.0)) {
    double t0 = now_ms();
    run_job(&J, threads);
    t[n] = now_ms() - t0;
    total += t[n++];
  }
  qsort(t, (size_t)n, sizeof t[0], cmp_double);
  double med = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
  double flops = (double)J.B * J.T * J.H * (2.0 * 64 * (J.K + J.V) + 4.0 * J.K * J.V);
  printf(": ok\n  median %.2f ms (min %.2f, %d runs), %.2f GFLOP/s (chunk FLOPs, C=64)\n", med,
         t[0], n, flops / med * 1e-6);
  printf("RESULT\timpl=c_loop\tmixer=%s\tB=%ld\tH=%ld\tT=%ld\tstatus=ok\tms=%.4f\tmin_ms=%.4f\t"
         "runs=%d\tgflops=%.3f\trelerr=%.3g\tthreads=%d\n",
         MIXER[m], J.B, J.H, J.T, med, t[0], n, flops / med * 1e-6, err, threads);
  free(J.out);
  rc = 0;
out:
  for (int i = 0; i < 7; i++) free(in[i].data);
  free(ref.data);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: c_loops DIR [--threads n] [--runs n] [--mixers a,b,...]\n");
    return 2;
  }
  const char *dir = argv[1], *mixers = "gla,gated_delta,mamba2";
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  int threads = ncpu > 0 ? (int)ncpu : 1, runs = 5;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--runs")) runs = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--mixers")) mixers = argv[i + 1];
    else {
      fprintf(stderr, "c_loops: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (threads < 1 || threads > 256 || runs < 1) {
    fprintf(stderr, "c_loops: --threads in [1, 256], --runs >= 1\n");
    return 2;
  }
  int rc = 0;
  char list[256];
  snprintf(list, sizeof list, ",%s,", mixers);
  for (int m = 0; m < 3; m++) {
    char key[64];
    snprintf(key, sizeof key, ",%s,", MIXER[m]);
    if (strstr(list, key)) rc |= bench(dir, m, threads, runs);
  }
  return rc;
}
