/* The LLVM backend: every KIR sample (tests/kir_samples.c) JIT-compiled, run and checked
 * against its fp64 expectations; vectorisation of the dot product; unique symbols across
 * modules; several functions in one module; compiling from several threads; bad KIR gives
 * a message, never a crash; the inline exp (vectorised, max ulp error over 10^7 values);
 * KS_MATMUL on random shapes against guard pages, its first use from several threads at
 * once, and its speed (GFLOP/s, printed;
 * MIXC_MM_BENCH_MS=<ms> per shape sets how long it is timed).
 *
 * Without LLVM (-DMIXC_LLVM=OFF, e.g. the sanitizer build) it compiles to a skip.
 * Inputs are fresh each run; MIXC_TEST_SEED=<seed> replays one. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <stdio.h>

#ifndef MIXC_HAVE_LLVM
int main(void) {
  printf("test_llvm_jit: 0 passed, 0 failed, 1 skipped\n");
  return 0;
}
#else

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "backends/llvm/llvm_jit.h"
#include "kir_samples.c"
#include "testlib.h"

static int g_passed, g_failed;

#include "check.h"


static int cpu_has(const char *flag) {
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return 0;
  char line[8192];
  int found = 0;
  size_t fl = strlen(flag);
  while (!found && fgets(line, sizeof line, f)) {
    if (strncmp(line, "flags", 5)) continue;
    for (char *p = strstr(line, flag); p; p = strstr(p + 1, flag))
      if ((p == line || p[-1] == ' ') && (p[fl] == ' ' || p[fl] == '\n' || !p[fl])) found = 1;
    break;
  }
  fclose(f);
  return found;
}

/* Runs a compiled sample on fresh outputs and checks it. */
static int run_sample(KirSample *s, MixcKernelFn fn, char *msg, size_t n) {
  kir_sample_reset_outputs(s);
  float *scratch = NULL;
  if (s->scratch_floats > 0) {
    scratch = malloc((size_t)s->scratch_floats * sizeof(float));
    if (!scratch) {
      snprintf(msg, n, "out of memory");
      return 1;
    }
    for (int64_t i = 0; i < s->scratch_floats; i++) scratch[i] = NAN;
  }
  fn(s->ptrs, s->ints, s->begin, s->end, scratch);
  free(scratch);
  return s->check(s, msg, n);
}

static void test_samples(MixcJit *j, KirSample *s, int n) {
  char err[1024];
  double total = 0, worst = 0;
  for (int i = 0; i < n; i++) {
    CHECK(!kir_verify(s[i].mod, err, sizeof err), "%s does not verify: %s", s[i].name, err);
    MixcKernelFn fn = NULL;
    double ms = 0;
    int rc = mixc_jit_compile(j, s[i].mod, &fn, &ms, err, sizeof err);
    CHECK(rc == 0 && fn, "%s: compile: %s", s[i].name, err);
    if (rc || !fn) continue;
    printf("  %-18s compiled in %6.2f ms\n", s[i].name, ms);
    total += ms;
    if (ms > worst) worst = ms;
    char msg[512] = "";
    int bad = run_sample(&s[i], fn, msg, sizeof msg);
    CHECK(!bad, "%s", msg);
    /* a second run on reset outputs gives the same result */
    bad = run_sample(&s[i], fn, msg, sizeof msg);
    CHECK(!bad, "second run: %s", msg);
  }
  printf("  compile time: %.1f ms for %d modules (mean %.2f ms, worst %.2f ms)\n", total, n,
         n ? total / n : 0.0, worst);
}

static const KirSample *find(const KirSample *s, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (!strcmp(s[i].name, name)) return &s[i];
  return NULL;
}

/* The dot product's loop is vectorised for the host; its unoptimised IR carries the hint. */
static void test_vectorized(const KirSample *s, int n) {
  const KirSample *dot = find(s, n, "dot");
  CHECK(dot != NULL, "no dot sample");
  if (!dot) return;
  char err[512], *text = NULL;
  int rc = mixc_jit_ir_text(dot->mod, 0, &text, err, sizeof err);
  CHECK(rc == 0 && text, "ir text: %s", err);
  if (text) {
    CHECK(strstr(text, "llvm.loop.vectorize.enable") != NULL, "no vectorize hint:\n%s", text);
    CHECK(strstr(text, "llvm.loop.mustprogress") != NULL, "no mustprogress:\n%s", text);
    CHECK(strstr(text, "fadd reassoc contract float") != NULL, "no reassoc add:\n%s", text);
    CHECK(strstr(text, "define void @dot(") != NULL, "the function is not named dot:\n%s", text);
    free(text);
    text = NULL;
  }
  rc = mixc_jit_ir_text(dot->mod, 1, &text, err, sizeof err);
  CHECK(rc == 0 && text, "optimised ir text: %s", err);
  if (!text) return;
  const char *vt[] = {"<16 x float>", "<8 x float>", "<4 x float>"};
  const char *found = NULL;
  for (int i = 0; i < 3 && !found; i++)
    if (strstr(text, vt[i])) found = vt[i];
  int avx2 = cpu_has("avx2"), avx512 = cpu_has("avx512f");
  printf("  dot product: vector type %s (host: avx2 %d, avx512f %d)\n", found ? found : "none",
         avx2, avx512);
  if (avx2)
    CHECK(found != NULL && strcmp(found, "<4 x float>"), "the dot product was not vectorised "
                                                         "for an AVX host:\n%s", text);
  else if (!found)
    printf("  warning: the dot product was not vectorised (host without avx2)\n");
  free(text);
}

/* One module compiled twice into one JIT: distinct symbols, both run. */
static void test_twice(MixcJit *j, KirSample *s, int n) {
  KirSample *sx = (KirSample *)find(s, n, "saxpy");
  if (!sx) return;
  char err[512], msg[512] = "";
  MixcKernelFn f1 = NULL, f2 = NULL;
  CHECK(!mixc_jit_compile(j, sx->mod, &f1, NULL, err, sizeof err), "first: %s", err);
  CHECK(!mixc_jit_compile(j, sx->mod, &f2, NULL, err, sizeof err), "second: %s", err);
  CHECK(f1 && f2 && f1 != f2, "the two compilations share a function");
  if (f1) CHECK(!run_sample(sx, f1, msg, sizeof msg), "first: %s", msg);
  if (f2) CHECK(!run_sample(sx, f2, msg, sizeof msg), "second: %s", msg);
}

/* Two functions of one name in one module: fns[i] for funcs[i]. */
static void test_two_funcs(MixcJit *j, Arena *a) {
  KModule *m = kir_module(a);
  int so = kir_slot(m, KSL_PTR, "out");
  for (int k = 0; k < 2; k++) {
    KFunc *f = kir_func(m, "f");
    int i = kir_var(m, f, KT_I64, "i");
    KStmt *loop = ks_for(m, i, ke_arg(m, 2), ke_arg(m, 3), 0);
    ks_add(m, f->body, loop);
    ks_add(m, loop, ks_store(m, KT_F32, ke_ptr_slot(m, so), ke_var(m, f, i),
                             ke_float(m, k ? 2.0 : 1.0)));
  }
  MixcKernelFn fns[2] = {NULL, NULL};
  char err[512];
  int rc = mixc_jit_compile(j, m, fns, NULL, err, sizeof err);
  CHECK(rc == 0 && fns[0] && fns[1], "two functions: %s", err);
  if (rc || !fns[0] || !fns[1]) return;
  float out[4] = {0, 0, 0, 0};
  void *ptrs[1] = {out};
  fns[0](ptrs, NULL, 0, 2, NULL);
  fns[1](ptrs, NULL, 2, 4, NULL);
  CHECK(out[0] == 1 && out[1] == 1 && out[2] == 2 && out[3] == 2, "out = %g %g %g %g",
        (double)out[0], (double)out[1], (double)out[2], (double)out[3]);
}

/* Bad KIR: a message, never a crash. */
static void test_bad(MixcJit *j, Arena *a) {
  char err[512] = "";
  MixcKernelFn fn = NULL;
  {
    /* a store of an i64 value as f32: kir_verify refuses it */
    KModule *m = kir_module(a);
    int so = kir_slot(m, KSL_PTR, "out");
    KFunc *f = kir_func(m, "bad_store");
    int i = kir_var(m, f, KT_I64, "i");
    KStmt *loop = ks_for(m, i, ke_arg(m, 2), ke_arg(m, 3), 0);
    ks_add(m, f->body, loop);
    ks_add(m, loop, ks_store(m, KT_F32, ke_ptr_slot(m, so), ke_var(m, f, i), ke_var(m, f, i)));
    int rc = mixc_jit_compile(j, m, &fn, NULL, err, sizeof err);
    CHECK(rc == 1 && strstr(err, "store"), "bad store: rc %d, message '%s'", rc, err);
    printf("  bad store: %s\n", err);
    char *text = NULL;
    err[0] = 0;
    rc = mixc_jit_ir_text(m, 1, &text, err, sizeof err);
    CHECK(rc == 1 && !text && err[0], "ir text of a bad store: rc %d", rc);
    free(text);
  }
  {
    /* passes kir_verify (which trusts a variable reference's type), but the variable is
     * i64 and the reference claims f32: the backend refuses it instead of building
     * invalid LLVM IR */
    KModule *m = kir_module(a);
    int so = kir_slot(m, KSL_PTR, "out");
    KFunc *f = kir_func(m, "bad_var_type");
    int i = kir_var(m, f, KT_I64, "i");
    KStmt *loop = ks_for(m, i, ke_arg(m, 2), ke_arg(m, 3), 0);
    ks_add(m, f->body, loop);
    KExpr *liar = ke_var(m, f, i);
    liar->type = KT_F32;
    ks_add(m, loop, ks_store(m, KT_F32, ke_ptr_slot(m, so), ke_var(m, f, i),
                             ke_bin(m, KO_ADD, liar, ke_float(m, 1))));
    char verr[256];
    int vrc = kir_verify(m, verr, sizeof verr);
    err[0] = 0;
    int rc = mixc_jit_compile(j, m, &fn, NULL, err, sizeof err);
    CHECK(rc == 1 && err[0], "bad variable type: rc %d, message '%s'", rc, err);
    printf("  bad variable type (kir_verify %s): %s\n", vrc ? "refuses it" : "passes it", err);
  }
}

/* Several threads compiling into one JIT at once. */
typedef struct ThreadJob {
  MixcJit *j;
  KirSample *s;
  int n, failures;
  char err[512];
} ThreadJob;

static void *compile_thread(void *arg) {
  ThreadJob *t = arg;
  for (int i = 0; i < t->n; i++) {
    MixcKernelFn fn = NULL;
    if (mixc_jit_compile(t->j, t->s[i].mod, &fn, NULL, t->err, sizeof t->err) || !fn)
      t->failures++;
  }
  return NULL;
}

static void test_threads(MixcJit *j, KirSample *s, int n) {
  enum { NT = 3 };
  ThreadJob jobs[NT];
  pthread_t th[NT];
  int started[NT];
  int m = n < 6 ? n : 6;
  for (int t = 0; t < NT; t++) {
    jobs[t] = (ThreadJob){j, s, m, 0, ""};
    started[t] = !pthread_create(&th[t], NULL, compile_thread, &jobs[t]);
  }
  for (int t = 0; t < NT; t++) {
    if (started[t]) pthread_join(th[t], NULL);
    CHECK(started[t] && jobs[t].failures == 0, "thread %d: %d failures: %s", t,
          jobs[t].failures, jobs[t].err);
  }
}

/* The shared matmul on a fresh JIT, asked for by several threads at once: one compiles it
 * (on a thread of the JIT's own, llvm_jit.c's mm_start), the others wait for it; every kernel
 * then computes right. The modules are built before the threads start (the arena is not
 * thread-safe). */
typedef struct MmJob {
  MixcJit *j;
  KModule *mod;
  MixcKernelFn fn;
  int rc;
  char err[512];
} MmJob;

static void *mm_compile_thread(void *arg) {
  MmJob *t = arg;
  t->rc = mixc_jit_compile(t->j, t->mod, &t->fn, NULL, t->err, sizeof t->err);
  return NULL;
}

static KModule *mm_module(Arena *a, int64_t M, int64_t N, int64_t K, int runtime, int acc);
static int mm_random_case(MixcKernelFn fn, SRng *r, int64_t M, int64_t N, int64_t K, int acc,
                          int pad, char *msg, size_t msglen);

static void test_mm_threads(Arena *a, uint64_t seed) {
  enum { NT = 4 };
  char err[512];
  for (int round = 0; round < 3; round++) { /* a fresh JIT each round: the first use again */
    MixcJit *j = NULL;
    if (mixc_jit_create(&j, err, sizeof err)) {
      CHECK(0, "mixc_jit_create: %s", err);
      return;
    }
    MmJob jobs[NT];
    pthread_t th[NT];
    int started[NT];
    for (int t = 0; t < NT; t++) {
      jobs[t] = (MmJob){j, mm_module(a, 0, 0, 0, 1, t & 1), NULL, 1, ""};
      /* round 2: one constant-size module too (its own specialised calls) */
      if (round == 2 && t == 0) jobs[t].mod = mm_module(a, 24, 40, 33, 0, 0);
    }
    for (int t = 0; t < NT; t++)
      started[t] = !pthread_create(&th[t], NULL, mm_compile_thread, &jobs[t]);
    SRng r = {seed ^ (0x5eedULL + (uint64_t)round)};
    char msg[512] = "";
    for (int t = 0; t < NT; t++) {
      if (started[t]) pthread_join(th[t], NULL);
      else mm_compile_thread(&jobs[t]); /* no thread: compile here */
      CHECK(jobs[t].rc == 0 && jobs[t].fn, "round %d thread %d: %s", round, t, jobs[t].err);
      if (jobs[t].rc || !jobs[t].fn) continue;
      int cst = round == 2 && t == 0;
      int64_t M = cst ? 24 : 1 + (int64_t)(srng_next(&r) % 40),
              N = cst ? 40 : 1 + (int64_t)(srng_next(&r) % 80),
              K = cst ? 33 : (int64_t)(srng_next(&r) % 60);
      int fails = mm_random_case(jobs[t].fn, &r, M, N, K, cst ? 0 : t & 1, !cst, msg, sizeof msg);
      CHECK(!fails, "round %d thread %d: %s", round, t, msg);
    }
    mixc_jit_free(j);
  }
  /* a JIT freed right after its first matmul kernel started the shared matmul's thread */
  MixcJit *j = NULL;
  if (!mixc_jit_create(&j, err, sizeof err)) {
    MixcKernelFn fn = NULL;
    CHECK(!mixc_jit_compile(j, mm_module(a, 0, 0, 0, 1, 0), &fn, NULL, err, sizeof err) && fn,
          "compile then free: %s", err);
    mixc_jit_free(j);
  }
  printf("  matmul: first use from %d threads at once, 3 fresh JITs\n", NT);
}

/* ---- the inline expf ---- */

/* |got - exact| in units of the last place of exact as an f32 (subnormal ulp below 2^-126). */
static double ulp_error(float got, double exact) {
  if (exact > 0x1.fffffefffffffp+127) return isinf(got) && got > 0 ? 0 : 1e30; /* rounds to inf */
  if (isinf(got)) return 1e30;
  int ex;
  double ulp = exact < 0x1p-126 ? 0x1p-149 : (frexp(exact, &ex), ldexp(1.0, ex - 24));
  return fabs((double)got - exact) / ulp;
}

/* KO_EXP: straight-line code that vectorises (no call of expf or llvm.exp in the optimised
 * IR, vectors of the host's width); within 2 ulp of exp (in double) over 10^7 random floats
 * of [-104, 89] (half uniform, half of log-uniform magnitude) and special values; NaN gives
 * NaN, +-inf gives +inf / 0, overflow +inf, deep underflow 0. */
static void test_exp(MixcJit *j, Arena *a, uint64_t seed) {
  KModule *m = kir_module(a);
  int sx = kir_slot(m, KSL_PTR, "x"), so = kir_slot(m, KSL_PTR, "out");
  KFunc *f = kir_func(m, "exp_check");
  int i = kir_var(m, f, KT_I64, "i");
  KStmt *loop = ks_for(m, i, ke_arg(m, 2), ke_arg(m, 3), KF_VECTORIZE);
  ks_add(m, f->body, loop);
  ks_add(m, loop, ks_store(m, KT_F32, ke_ptr_slot(m, so), ke_var(m, f, i),
                           ke_un(m, KO_EXP, ke_load(m, KT_F32, ke_ptr_slot(m, sx),
                                                    ke_var(m, f, i)))));
  char err[512], *text = NULL;
  int rc = mixc_jit_ir_text(m, 1, &text, err, sizeof err);
  CHECK(rc == 0 && text, "exp ir: %s", err);
  if (text) {
    CHECK(!strstr(text, "@expf(") && !strstr(text, "@llvm.exp."), "exp calls a function:\n%s",
          text);
    if (cpu_has("avx2"))
      CHECK(strstr(text, "<8 x float>") || strstr(text, "<16 x float>"),
            "the exp loop was not vectorised:\n%s", text);
    free(text);
  }
  MixcKernelFn fn = NULL;
  rc = mixc_jit_compile(j, m, &fn, NULL, err, sizeof err);
  CHECK(rc == 0 && fn, "exp: %s", err);
  if (rc || !fn) return;
  static const float special[] = {0.0f, -0.0f, 1.0f, -1.0f, 0x1p-149f, -0x1p-149f, 0x1p-126f,
                                  88.0f, 88.72283f, 88.7228317f, 88.72283935546875f, 88.7229f,
                                  89.0f, 100.0f, 1e30f, 3.40282347e38f, -3.40282347e38f,
                                  -87.0f, -87.33654f, -87.3366f, -100.0f, -103.0f, -103.27893f,
                                  -103.97207f, -103.972084f, -104.0f, -105.0f, -1e30f,
                                  0.34657359f, -0.34657359f, 0.6931472f, 1e-8f, -1e-8f,
                                  INFINITY, -INFINITY, NAN, -NAN};
  enum { NSPEC = sizeof special / sizeof *special };
  const int64_t n = 10000000;
  float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
  if (!x || !y) {
    free(x), free(y);
    CHECK(0, "out of memory");
    return;
  }
  SRng r = {seed ^ 0x5eedULL};
  for (int64_t k = 0; k < n; k++) {
    if (k < NSPEC) x[k] = special[k];
    else if (k & 1) x[k] = srng_f32(&r, -104, 89);
    else {
      double mag = exp(log(1e-8) + (log(89.0) - log(1e-8)) * srng_unit(&r));
      x[k] = (float)((srng_next(&r) & 1) ? mag : -fmin(mag, 104.0));
    }
  }
  void *ptrs[2];
  ptrs[sx] = x;
  ptrs[so] = y;
  fn(ptrs, NULL, 0, n, NULL);
  double worst = 0;
  float wx = 0;
  int64_t bad_special = -1;
  for (int64_t k = 0; k < n; k++) {
    double e = exp((double)x[k]);
    if (isnan(x[k])) {
      if (!isnan(y[k]) && bad_special < 0) bad_special = k;
      continue;
    }
    double u = ulp_error(y[k], e);
    if (u > worst) {
      worst = u;
      wx = x[k];
    }
  }
  printf("  exp: max error %.3f ulp (at x = %.9g) over %lld values\n", worst, (double)wx,
         (long long)n);
  CHECK(worst <= 2.0, "exp(%.9g) is %.3f ulp off", (double)wx, worst);
  CHECK(bad_special < 0, "exp(NaN) = %g", bad_special >= 0 ? (double)y[bad_special] : 0.0);
  /* exact special results */
  for (int k = 0; k < NSPEC; k++) {
    float v = special[k], g = y[k];
    if (isinf(v)) CHECK(v > 0 ? (isinf(g) && g > 0) : g == 0, "exp(%g) = %g", (double)v, (double)g);
    if (v == 0) CHECK(g == 1, "exp(%g) = %g", (double)v, (double)g);
    if (!isnan(v) && v > 88.7228317f && v < INFINITY)
      CHECK(isinf(g), "exp(%.9g) = %g, expected inf", (double)v, (double)g);
    if (v < -103.972084f) CHECK(g == 0, "exp(%.9g) = %g, expected 0", (double)v, (double)g);
  }
  free(x), free(y);
}

/* ---- KS_MATMUL on random shapes, against guard pages ---- */

/* n floats that end right before an inaccessible page (NULL when mmap fails); *base and
 * *len: the mapping, for munmap. */
static float *guarded_floats(size_t n, void **base, size_t *len) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE), bytes = n * 4;
  *len = (bytes + page - 1) / page * page + page;
  *base = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (*base == MAP_FAILED) return NULL;
  char *end = (char *)*base + *len - page;
  if (mprotect(end, page, PROT_NONE)) {
    munmap(*base, *len);
    return NULL;
  }
  return (float *)(void *)(end - bytes);
}

/* One product of a random shape on operands that end at guard pages (a read or write past
 * an operand's last element faults); C's padding and NaN in A's and B's padding must not
 * show. Returns 0, or 1 with a message. */
static int mm_random_case(MixcKernelFn fn, SRng *r, int64_t M, int64_t N, int64_t K, int acc,
                          int pad, char *msg, size_t msglen) {
  const int64_t lda = K + (pad ? (int64_t)(srng_next(r) % 3) * (int64_t)(srng_next(r) % 9) : 0),
                ldb = N + (pad ? (int64_t)(srng_next(r) % 3) * (int64_t)(srng_next(r) % 21) : 0),
                ldc = N + (pad ? (int64_t)(srng_next(r) % 3) * (int64_t)(srng_next(r) % 17) : 0);
  const int64_t na = M && K ? (M - 1) * lda + K : 0, nb = K && N ? (K - 1) * ldb + N : 0,
                nc = M && N ? (M - 1) * ldc + N : 0;
  void *ba = NULL, *bb = NULL, *bc = NULL;
  size_t la = 0, lb = 0, lc = 0;
  float *A = guarded_floats((size_t)na, &ba, &la), *Bm = guarded_floats((size_t)nb, &bb, &lb),
        *C = guarded_floats((size_t)nc, &bc, &lc);
  float *C0 = malloc((size_t)(nc ? nc : 1) * 4);
  int bad = 0;
  if (!A || !Bm || !C || !C0) {
    snprintf(msg, msglen, "out of memory");
    bad = 1;
    goto done;
  }
  for (int64_t k = 0; k < na; k++) A[k] = k % lda < K ? srng_f32(r, -1, 1) : NAN;
  for (int64_t k = 0; k < nb; k++) Bm[k] = k % ldb < N ? srng_f32(r, -1, 1) : NAN;
  for (int64_t k = 0; k < nc; k++) C0[k] = C[k] = srng_f32(r, -1, 1);
  void *ptrs[3] = {A, Bm, C};
  int64_t ints[6] = {M, N, K, lda, ldb, ldc};
  fn(ptrs, ints, 0, 1, NULL);
  for (int64_t k = 0; k < nc && !bad; k++) {
    int64_t i = k / ldc, jj = k % ldc;
    if (jj >= N) {
      if (memcmp(&C[k], &C0[k], 4)) {
        snprintf(msg, msglen, "%lldx%lldx%lld: C padding [%lld, %lld] was written",
                 (long long)M, (long long)N, (long long)K, (long long)i, (long long)jj);
        bad = 1;
      }
      continue;
    }
    double d = acc ? C0[k] : 0, sc = fabs(d);
    for (int64_t q = 0; q < K; q++) {
      double t = (double)A[i * lda + q] * Bm[q * ldb + jj];
      d += t;
      sc += fabs(t);
    }
    if (!(fabs(C[k] - d) <= 1e-5 * sc + 1e-30)) {
      snprintf(msg, msglen, "%lldx%lldx%lld (ld %lld %lld %lld, acc %d): C[%lld, %lld] = %g, "
               "expected %g", (long long)M, (long long)N, (long long)K, (long long)lda,
               (long long)ldb, (long long)ldc, acc, (long long)i, (long long)jj,
               (double)C[k], d);
      bad = 1;
    }
  }
done:
  if (A) munmap(ba, la);
  if (Bm) munmap(bb, lb);
  if (C) munmap(bc, lc);
  free(C0);
  return bad;
}

static KModule *mm_module(Arena *a, int64_t M, int64_t N, int64_t K, int runtime, int acc);

/* Random shapes (sizes 0..80, K up to 600 now and then: k blocks), with runtime sizes and
 * with constant ones, accumulating and not. */
static void test_mm_random(MixcJit *j, Arena *a, uint64_t seed) {
  SRng r = {seed ^ 0x3a3aULL};
  char err[512], msg[512] = "";
  MixcKernelFn rt[2] = {NULL, NULL};
  for (int acc = 0; acc < 2; acc++) {
    int rc = mixc_jit_compile(j, mm_module(a, 0, 0, 0, 1, acc), &rt[acc], NULL, err, sizeof err);
    CHECK(rc == 0 && rt[acc], "runtime matmul: %s", err);
    if (rc || !rt[acc]) return;
  }
  int fails = 0, cases = 0;
  for (int c = 0; c < 300 && !fails; c++, cases++) {
    int64_t M = (int64_t)(srng_next(&r) % 41), N = (int64_t)(srng_next(&r) % 81),
            K = (int64_t)(srng_next(&r) % 60);
    if (c % 25 == 7) K = 250 + (int64_t)(srng_next(&r) % 350);
    int acc = (int)(srng_next(&r) & 1);
    fails += mm_random_case(rt[acc], &r, M, N, K, acc, 1, msg, sizeof msg);
  }
  for (int c = 0; c < 8 && !fails; c++, cases++) { /* constant sizes: one module each */
    int64_t M = 1 + (int64_t)(srng_next(&r) % 40), N = 1 + (int64_t)(srng_next(&r) % 80),
            K = (int64_t)(srng_next(&r) % 70);
    if (c == 5) K = 300 + (int64_t)(srng_next(&r) % 300);
    int acc = c & 1;
    MixcKernelFn fn = NULL;
    int rc = mixc_jit_compile(j, mm_module(a, M, N, K, 0, acc), &fn, NULL, err, sizeof err);
    CHECK(rc == 0 && fn, "constant matmul: %s", err);
    if (rc || !fn) return;
    /* the module's leading dimensions are K, N, N: no padding */
    fails += mm_random_case(fn, &r, M, N, K, acc, 0, msg, sizeof msg);
  }
  printf("  matmul: %d random shapes against guard pages\n", cases);
  CHECK(!fails, "%s", msg);
}

/* ---- KS_MATMUL speed ---- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A module of one KS_MATMUL, C (+)= A B, sizes constant or from ints[0..5] (M N K lda ldb
 * ldc); ptrs: A, B, C. */
static KModule *mm_module(Arena *a, int64_t M, int64_t N, int64_t K, int runtime, int acc) {
  KModule *m = kir_module(a);
  int sA = kir_slot(m, KSL_PTR, "A"), sB = kir_slot(m, KSL_PTR, "B"),
      sC = kir_slot(m, KSL_PTR, "C");
  KExpr *d[6];
  const int64_t v[6] = {M, N, K, K, N, N};
  for (int i = 0; i < 6; i++)
    d[i] = runtime ? ke_int_slot(m, kir_slot(m, KSL_INT, "size")) : ke_int(m, v[i]);
  KFunc *f = kir_func(m, "mm");
  ks_add(m, f->body, ks_matmul(m, d[0], d[1], d[2], ke_ptr_slot(m, sA), d[3],
                               ke_ptr_slot(m, sB), d[4], ke_ptr_slot(m, sC), d[5], acc));
  return m;
}

/* GFLOP/s of C = A B for a few shapes of the chunk algorithm: warm, best of many timed
 * runs. Printed, not checked (a loaded machine would make a threshold flaky), except that
 * a >= 64^3 product must reach a few GFLOP/s (a scalar, unvectorised kernel would not). */
static void test_mm_speed(MixcJit *j, Arena *a) {
  static const int64_t shapes[][3] = {{64, 64, 64}, {128, 128, 128}, {64, 128, 128},
                                      {64, 128, 64}, {64, 64, 128}, {256, 256, 256}};
  const char *env = getenv("MIXC_MM_BENCH_MS");
  double target_ms = env && *env ? atof(env) : 60.0; /* per shape and variant */
  for (size_t q = 0; q < sizeof shapes / sizeof *shapes; q++) {
    const int64_t M = shapes[q][0], N = shapes[q][1], K = shapes[q][2];
    float *A = malloc((size_t)(M * K) * 4), *Bm = malloc((size_t)(K * N) * 4),
          *C = malloc((size_t)(M * N) * 4);
    if (!A || !Bm || !C) {
      free(A), free(Bm), free(C);
      CHECK(0, "out of memory");
      return;
    }
    for (int64_t i = 0; i < M * K; i++) A[i] = (float)((i * 7 % 13) - 6) * 0.1f;
    for (int64_t i = 0; i < K * N; i++) Bm[i] = (float)((i * 5 % 11) - 5) * 0.1f;
    double gf[2] = {0, 0}, cms[2] = {0, 0};
    for (int rt = 0; rt < 2; rt++) {
      KModule *m = mm_module(a, M, N, K, rt, 0);
      MixcKernelFn fn = NULL;
      char err[512];
      int rc = mixc_jit_compile(j, m, &fn, &cms[rt], err, sizeof err);
      CHECK(rc == 0 && fn, "matmul %lldx%lldx%lld: %s", (long long)M, (long long)N,
            (long long)K, err);
      if (rc || !fn) continue;
      void *ptrs[3] = {A, Bm, C};
      int64_t ints[6] = {M, N, K, K, N, N};
      double flops = 2.0 * (double)(M * N * K), best = 1e30;
      int reps = (int)(2e-3 * 50e9 / flops) + 1; /* about 2 ms a timing at 50 GFLOP/s */
      fn(ptrs, ints, 0, 1, NULL);
      double t_end = now_s() + target_ms * 1e-3;
      do {
        double t0 = now_s();
        for (int r = 0; r < reps; r++) fn(ptrs, ints, 0, 1, NULL);
        double t = (now_s() - t0) / reps;
        if (t < best) best = t;
      } while (now_s() < t_end);
      gf[rt] = flops / best * 1e-9;
      /* spot check */
      double d = 0;
      for (int64_t k = 0; k < K; k++) d += (double)A[(M - 1) * K + k] * Bm[k * N + (N - 1)];
      CHECK(fabs(C[M * N - 1] - d) <= 1e-4 * (fabs(d) + 1), "matmul result %g, expected %g",
            (double)C[M * N - 1], d);
    }
    printf("  matmul M=%-4lld N=%-4lld K=%-4lld %6.1f GFLOP/s (constant sizes), %6.1f "
           "(runtime sizes); compiled in %.1f / %.1f ms\n",
           (long long)M, (long long)N, (long long)K, gf[0], gf[1], cms[0], cms[1]);
    CHECK(gf[0] > 2.0, "matmul %lldx%lldx%lld runs at %.2f GFLOP/s", (long long)M,
          (long long)N, (long long)K, gf[0]);
    free(A), free(Bm), free(C);
  }
}

/* ---- diagonal decay's chunk form under strong gates ----
 *
 * lower_chunk.c takes a sub-chunk's factored form (exponents up to DIAG_SPAN) only where its
 * log decays stay close; elsewhere each row is its own block. GLA, HGRN2 and RWKV6 (a readout
 * before the update) as JIT-compiled chunk kernels (chunk 32: two sub-chunks of 16 a chunk;
 * T = 70) against the fp64 reference, f32, tolerance 1e-4 relative: ordinary gates (every
 * sub-chunk factored), gates of -20..-30 on half the elements (every sub-chunk per row), and
 * gates of -4 on tokens 20..44 only (the sub-chunks [16, 32) and [32, 48) per row, the others
 * factored, in one run). */
static int to_ptrs(void *ctx, int slot, int s, int final, Tensor *t, char *err, size_t n) {
  (void)s;
  (void)final;
  (void)err;
  (void)n;
  ((void **)ctx)[slot] = t->data;
  return 0;
}

static void gate_case(MixcJit *j, const KCase *c, MixcKernelFn fn, MixcRng *rng, int mode,
                      const char *name) {
  static const char *modes[] = {"ordinary gates", "gates -30..-20", "gates -4 on tokens 20..44"};
  const KernelPlan *pl = &c->pl;
  void **ptrs = calloc((size_t)pl->mod->nptrs + 1, sizeof *ptrs);
  int64_t *ints = calloc((size_t)pl->mod->nints + 1, sizeof *ints);
  float *scr = calloc((size_t)pl->mod->funcs[0]->scratch_floats + 16, sizeof *scr);
  char err[256] = "";
  KRun r;
  memset(&r, 0, sizeof r);
  int bad = !ptrs || !ints || !scr ||
            krun_make(&r, c, 70, rng, mode == 1, ints, to_ptrs, ptrs, err, sizeof err);
  if (!bad && mode == 2) { /* the log gates of tokens 20..44 set to -4 */
    for (int sy = 0; sy < c->m->nsyms; sy++) {
      Tensor *t = &r.ts[sy];
      if (r.roles[sy] != ROLE_LOG_GATE || !t->ref || t->rank < 3) continue;
      int64_t per = t->numel / (t->shape[0] * t->shape[1]); /* [B, T, H, ...] */
      for (int64_t f = 0; f < t->numel; f++) {
        int64_t tok = f / per % t->shape[1];
        if (tok >= 20 && tok < 45) t->ref[f] = -4.0;
      }
      fill_storage(t);
    }
  }
  if (!bad) fn(ptrs, ints, 0, plan_items(pl, r.B, r.H), scr);
  int rrc = bad ? 1 : krun_reference(&r, c, err, sizeof err);
  double worst = 0;
  int nan = 0;
  int ok = check_tensors(c->m, r.ts, r.fin, r.refout, 1e-4, 1e-4, !bad && !rrc, &worst, &nan);
  printf("%s %s chunk, %s: rel err %.2e%s %s\n", ok ? "ok  " : "FAIL", name, modes[mode], worst,
         nan ? " (NaN)" : "", err);
  CHECK(ok, "%s chunk, %s", name, modes[mode]);
  (void)j;
  krun_free(&r);
  free(ptrs);
  free(ints);
  free(scr);
}

static void test_diag_gates(MixcJit *j, uint64_t seed) {
  static const char *files[] = {"examples/gla.mix", "examples/hgrn2.mix", "examples/rwkv6.mix"};
  MixcRng rng;
  mixc_rng_seed(&rng, seed ^ 0x9a7e5ull);
  for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
    Compilation comp;
    const RecMixer *rm = compile_file(&comp, files[f]);
    if (!rm) {
      g_failed++;
      continue;
    }
    KCase c;
    memset(&c, 0, sizeof c);
    char err[1024];
    MixcKernelFn fn = NULL;
    double ms;
    if (kcase_draw(&c, rm, 0, 1, &rng)) {
      CHECK(0, "%s: out of memory", files[f]);
    } else if (lower_mixer(&comp.arena, &c.sp, &c.pl, err, sizeof err)) {
      CHECK(0, "%s: lower: %s", files[f], err);
    } else if (mixc_jit_compile(j, c.pl.mod, &fn, &ms, err, sizeof err)) {
      CHECK(0, "%s: compile: %s", files[f], err);
    } else {
      for (int mode = 0; mode < 3; mode++) gate_case(j, &c, fn, &rng, mode, files[f]);
    }
    kcase_free(&c);
    compilation_free(&comp);
  }
}

int main(void) {
  uint64_t seed = test_seed();
  printf("test_llvm_jit: seed %" PRIu64 " (replay with MIXC_TEST_SEED)\n", seed);
  Arena a;
  arena_init(&a);
  KirSample *s = NULL;
  int n = 0;
  char err[1024];
  if (kir_samples_build(&a, seed, &s, &n)) {
    printf("test_llvm_jit: cannot build the samples\ntest_llvm_jit: 0 passed, 1 failed\n");
    arena_free(&a);
    return 1;
  }
  MixcJit *j = NULL;
  if (mixc_jit_create(&j, err, sizeof err)) {
    fprintf(stderr, "FAIL: mixc_jit_create: %s\n", err);
    g_failed++;
  } else {
    test_samples(j, s, n);
    test_vectorized(s, n);
    test_twice(j, s, n);
    test_two_funcs(j, &a);
    test_bad(j, &a);
    test_threads(j, s, n);
    test_mm_threads(&a, seed);
    test_exp(j, &a, seed);
    test_mm_random(j, &a, seed);
    test_mm_speed(j, &a);
    test_diag_gates(j, seed);
    mixc_jit_free(j);
  }
  kir_samples_free(s, n);
  arena_free(&a);
  printf("test_llvm_jit: %d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}

#endif
