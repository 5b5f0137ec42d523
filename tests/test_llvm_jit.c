/* The LLVM backend: every KIR sample (tests/kir_samples.c) JIT-compiled, run and checked
 * against its fp64 expectations; vectorisation of the dot product; unique symbols across
 * modules; several functions in one module; compiling from several threads; bad KIR gives
 * a message, never a crash.
 *
 * Without LLVM (-DMIXC_LLVM=OFF, e.g. the sanitizer build) it compiles to a skip.
 * Inputs are fresh each run; MIXC_TEST_SEED=<seed> replays one. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>

#ifndef MIXC_HAVE_LLVM
int main(void) {
  printf("test_llvm_jit: 0 passed, 0 failed, 1 skipped\n");
  return 0;
}
#else

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/llvm/llvm_jit.h"
#include "kir_samples.c"

static int g_passed, g_failed;

#define CHECK(cond, ...)                                                                  \
  do {                                                                                    \
    if (cond) {                                                                           \
      g_passed++;                                                                         \
    } else {                                                                              \
      g_failed++;                                                                         \
      fflush(stdout);                                                                     \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                     \
      fprintf(stderr, __VA_ARGS__);                                                       \
      fputc('\n', stderr);                                                                \
    }                                                                                     \
  } while (0)

static uint64_t pick_seed(void) {
  const char *s = getenv("MIXC_TEST_SEED");
  if (s && *s) return strtoull(s, NULL, 0);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec;
}

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

int main(void) {
  uint64_t seed = pick_seed();
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
    mixc_jit_free(j);
  }
  kir_samples_free(s, n);
  arena_free(&a);
  printf("test_llvm_jit: %d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}

#endif
