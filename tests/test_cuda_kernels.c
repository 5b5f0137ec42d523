/* CUDA kernels (mixc_emit_cuda_module: the C printer's MIXC_C_CUDA mode) against the fp64
 * reference, on the GPU.
 *
 * Without a GPU (any machine with NVRTC): every example's CUDA source, both strategies, f32
 * and bf16, printed for an H100 (sm_90, 227 KiB of shared memory), is compiled by NVRTC for
 * sm_90a (each a passed test), so CI checks the printer's output compiles. With a GPU: the
 * sources are printed for the device, compiled, loaded and run as mixc_emit_cuda_module's
 * MixcCudaLaunch says (grid = N * H blocks, its threads, its shared memory or global
 * scratch) on inputs, outputs and states with non-contiguous strides as in test_emit_c,
 * outputs poisoned with NaN, and compared with mixc_ref_run relative to max |ref|: outputs
 * f32 1e-4 (3xTF32 matmuls), bf16 1e-2; final states 1e-4 from f32 inputs, 5e-3 from bf16
 * (single-TF32 matmuls); T in {0, 1, 7, 33, 70}, T = 2048 for a few examples, and a
 * gate-stress case. Those few examples also run f32 chunk kernels forced to single TF32
 * (MIXC_C_CUDA_TF32: outputs and states 5e-3) and printed as the first printer did (fp32
 * matmul, global scratch, plain loops, 128 threads). The tensor-core matmul helper is tested
 * alone on random shapes against an fp64 product (test_matmul). argv[1] replays a seed. The
 * NVRTC cache lives in a fresh temporary XDG_CACHE_HOME. MIXC_TEST_REQUIRE_GPU=1 makes "no
 * GPU" a failure. After the examples, GEN_CUDA_COUNT random mixers of tests/gen_mixer.h go
 * the same way. Every kernel is lowered for the device (KernelSpec.gpu with no_native: the
 * KIR, not the hand-structured kernels of lower_cuda*.c); for each example and mixer, the
 * recurrent plan lowered for the CPU must be refused by the printer (cpu_plan_refused). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>

#ifndef MIXC_HAVE_CUDA
int main(void) {
  printf("test_cuda_kernels: 0 passed, 0 failed, 1 skipped (built without MIXC_CUDA)\n");
  return 0;
}
#else
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backends/c/c_emit.h"
#include "backends/cuda/cu_driver.h"
#include "backends/cuda/cuda_loader.h"
#include "compiler/compile.h"
#include "compiler/lower.h"
#include "compiler/lower_internal.h"
#include "runtime/half.h"
#include "runtime/inputs.h"
#include "runtime/reference.h"
#include "testlib.h"

enum { GEN_CUDA_COUNT = 8 }; /* random mixers a run, after the examples */

static int passed, failed, skipped;
static MixcCuda *g_cuda;   /* NULL: no GPU */
static MixcNvrtc *g_nvrtc; /* NULL: no NVRTC */

typedef struct Case {
  KCase k;
  MixcCudaModule *mod;
  MixcCudaFunc *fn;
  int flags;             /* extra MIXC_C_CUDA_* flags */
  MixcCudaLaunch launch; /* from mixc_emit_cuda_module */
} Case;

/* The printing variants the tests run besides the default. */
static const char *mode_name(int flags) {
  if (flags & MIXC_C_CUDA_TF32) return " tf32";
  if (flags & MIXC_C_CUDA_FP32_MATMUL) return " plain"; /* the first printer's kernel */
  return "";
}

/* The kernel's MixcArgs table: argbuf[slot] is the tensor's device copy (allocated there,
 * uploaded). */
static int to_device(void *ctx, int slot, int s, int final, Tensor *t, char *err, size_t n) {
  size_t bytes = (size_t)t->alloc * (t->type == KT_F32 ? 4 : 2);
  int bad = mixc_cuda_alloc(g_cuda, bytes, &t->dev, err, n) ||
            (bytes && mixc_cuda_memcpy_htod(g_cuda, t->dev, t->data, bytes, err, n));
  ((uint64_t *)ctx)[slot] = t->dev;
  return bad;
}

/* One problem size through the GPU kernel and the reference (stress: log gates of -30..-20
 * and -1e-5..0). */
static void run_case(Case *c, int64_t T, MixcRng *rng, const char *dtname, const char *strat,
                     int stress) {
  const Mixer *m = c->k.m;
  int ns = m->nsyms;
  const KModule *mod = c->k.pl.mod;
  int np = mod->nptrs > 0 ? mod->nptrs : 1, ni = mod->nints > 0 ? mod->nints : 1;
  /* the kernel's MixcArgs struct: np device pointers, then ni int64_t */
  uint64_t *argbuf = calloc((size_t)(np + ni), sizeof *argbuf);
  char err[2048] = "";
  KRun r;
  memset(&r, 0, sizeof r);
  int bad = !argbuf || krun_make(&r, &c->k, T, rng, stress, (int64_t *)(argbuf + np), to_device,
                                 argbuf, err, sizeof err);
  if (bad == 1) snprintf(err, sizeof err, "out of memory");
  /* launch: one block per (sequence, head), as mixc_emit_cuda_module says */
  int64_t begin = 0, end = r.B * r.H;
  MixcDevPtr scratch = 0;
  int rc = bad;
  if (!rc && c->launch.global_scratch_floats > 0)
    rc = mixc_cuda_alloc(g_cuda, (size_t)((end - begin) * c->launch.global_scratch_floats) * 4,
                         &scratch, err, sizeof err);
  if (!rc && end > begin) {
    unsigned gridv[3] = {(unsigned)(end - begin), 1, 1}, block[3] = {c->launch.threads, 1, 1};
    void *params[4] = {argbuf, &begin, &end, &scratch};
    rc = mixc_cuda_launch(g_cuda, c->fn, gridv, block, c->launch.smem_bytes, NULL, params, err,
                          sizeof err) ||
         mixc_cuda_synchronize(g_cuda, err, sizeof err);
  }
  for (int s = 0; s < ns && !rc; s++) {
    Tensor *t = &r.ts[s], *f = &r.fin[s];
    if (m->syms[s].kind == SYM_OUTPUT && t->dev && t->alloc)
      rc = mixc_cuda_memcpy_dtoh(g_cuda, t->data, t->dev,
                                 (size_t)t->alloc * (t->type == KT_F32 ? 4 : 2), err, sizeof err);
    if (!rc && f->dev && f->alloc)
      rc = mixc_cuda_memcpy_dtoh(g_cuda, f->data, f->dev, (size_t)f->alloc * 4, err, sizeof err);
  }
  char rerr[256] = "";
  int rrc = bad ? 1 : krun_reference(&r, &c->k, rerr, sizeof rerr);
  double worst = 0;
  int nan = 0;
  /* bf16 outputs carry 8 bits; f32 with single-TF32 matmuls (MIXC_C_CUDA_TF32, forced: the
   * default for f32 is 3xTF32) carries about 10 bits through each product */
  double tol = !strcmp(dtname, "f32") ? ((c->flags & MIXC_C_CUDA_TF32) ? 5e-3 : 1e-4) : 1e-2;
  if (stress && mixer_divides(m)) tol = INFINITY;     /* finite is all that is asked */
  /* final states are f32: 1e-4 from f32 inputs (3xTF32 or fp32 matmuls), 5e-3 where the
   * matmuls run in single TF32 (bf16 inputs, or forced): the bf16 accuracy target */
  int tf32 = (c->flags & MIXC_C_CUDA_TF32) || strcmp(dtname, "f32");
  int ok = check_tensors(m, r.ts, r.fin, r.refout, tol, tf32 ? 5e-3 : 1e-4, !rc && !rrc, &worst,
                         &nan);
  printf("%s gpu %-18s %-9s %-5s%s T=%-4lld%s rel err %.2e%s%s %s%s\n", ok ? "ok  " : "FAIL",
         m->name.name, strat, dtname, mode_name(c->flags), (long long)r.T,
         stress ? " gates -30..-20, -1e-5..0" : "",
         worst, nan ? " (NaN)" : "", rc ? " (run failed: " : "", rc ? err : "",
         rc ? ")" : rerr);
  if (ok)
    passed++;
  else
    failed++;
  char ferr[256];
  mixc_cuda_free(g_cuda, scratch, ferr, sizeof ferr);
  for (int s = 0; r.ts && r.fin && s < r.ns; s++) {
    mixc_cuda_free(g_cuda, r.ts[s].dev, ferr, sizeof ferr);
    mixc_cuda_free(g_cuda, r.fin[s].dev, ferr, sizeof ferr);
  }
  krun_free(&r);
  free(argbuf);
}

/* The CUDA source of c's kernels (malloc'd), or NULL with a message in err. */
static char *cuda_source(Case *c, char *err, size_t n) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) {
    snprintf(err, n, "open_memstream failed");
    return NULL;
  }
  /* the device's limits, or an H100's when there is no GPU */
  MixcCudaTarget t = {90, 232448};
  if (g_cuda) {
    t.arch = mixc_cuda_info(g_cuda)->arch;
    t.max_smem_optin = mixc_cuda_info(g_cuda)->max_smem_per_block_optin;
  }
  int rc = mixc_emit_cuda_module(f, c->k.pl.mod, &t, c->flags, &c->launch, err, n);
  fclose(f);
  if (rc) {
    free(buf);
    return NULL;
  }
  return buf;
}

/* A recurrent plan lowered for the CPU (KernelSpec.gpu unset: states updated in place,
 * readouts fused into the state's loop) is refused by the CUDA printer with a message, not
 * printed into a kernel that computes wrong outputs. */
static void cpu_plan_refused(Compilation *comp, const KCase *k, const char *name) {
  KernelSpec sp = k->sp;
  sp.gpu = 0, sp.no_native = 0;
  KernelPlan pl;
  char err[1024] = "", *buf = NULL;
  size_t len = 0;
  if (lower_mixer(&comp->arena, &sp, &pl, err, sizeof err)) {
    printf("FAIL %s: lower for the CPU: %s\n", name, err);
    failed++;
    return;
  }
  FILE *f = open_memstream(&buf, &len);
  int rc = f ? mixc_emit_cuda_module(f, pl.mod, NULL, 0, NULL, err, sizeof err) : 0;
  if (f) fclose(f);
  free(buf);
  if (f && rc && strstr(err, "lowered for the CPU")) {
    passed++;
  } else {
    printf("FAIL %s: a plan lowered for the CPU was %s\n", name,
           f ? (rc ? err : "printed as CUDA") : "not tried (open_memstream failed)");
    failed++;
  }
}

/* Examples that also run at T = 2048. */
static int long_example(const char *name) {
  static const char *const names[] = {"gla", "delta", "mamba2", "rwkv7", "gated_delta"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    if (!strcmp(name, names[i])) return 1;
  return 0;
}

/* Every variant of one example (each_example's callback; ctx the MixcRng). */
static void test_file(void *ctx, const char *path, Compilation *comp, const RecMixer *rm) {
  MixcRng *rng = ctx;
  const Mixer *m = rm->mixer;
  static const char *names[] = {"f32", "bf16"}; /* kcase_draw's alt 0 and 1 */
  /* variants 0..3: {f32, bf16} x {recurrent, chunk} as printed for the device; for the
   * examples that run long, also f32 chunk with single TF32 (4) and with the first printer's
   * choices (5: fp32 matmul, global scratch, plain loops, 128 threads) */
  int nvariants = long_example(m->name.name) ? 6 : 4;
  for (int variant = 0; variant < nvariants; variant++) {
    int ti = variant < 4 ? variant & 1 : 0, chunked = variant < 4 ? variant >> 1 : 1;
    int flags = variant == 4 ? MIXC_C_CUDA_TF32
                : variant == 5 ? MIXC_C_CUDA_FP32_MATMUL | MIXC_C_CUDA_GLOBAL_SCRATCH |
                                     MIXC_C_CUDA_PLAIN_LOOPS | MIXC_C_CUDA_THREADS_128
                               : 0;
    const char *why;
    if (chunked && !chunk_applies(rm, &why) && !chunk_dplr_applies(rm, &why)) continue;
    Case c;
    memset(&c, 0, sizeof c);
    c.flags = flags;
    char err[8192], name[256];
    snprintf(name, sizeof name, "%s_%s_%s%s", m->name.name, names[ti], chunked ? "chunk" : "rec",
             variant == 4 ? "_tf32" : variant == 5 ? "_plain" : "");
    if (kcase_draw(&c.k, rm, ti, chunked, rng)) {
      printf("FAIL %s: out of memory\n", name);
      failed++;
      kcase_free(&c.k);
      continue;
    }
    /* lowered for a device, the KIR only (not the hand-structured kernels of lower_cuda*.c) */
    c.k.sp.gpu = 1, c.k.sp.no_native = 1;
    c.k.sp.gpu_arch = MIXC_CU_DEFAULT_ARCH, c.k.sp.gpu_smem_optin = MIXC_CU_DEFAULT_SMEM_OPTIN;
    char *cu = NULL;
    if (variant == 0) cpu_plan_refused(comp, &c.k, name);
    if (lower_mixer(&comp->arena, &c.k.sp, &c.k.pl, err, sizeof err)) {
      printf("FAIL %s: lower: %s\n", name, err);
      failed++;
    } else if (c.k.pl.mod->nfuncs != 1) {
      printf("FAIL %s: %d kernel functions (one expected)\n", name, c.k.pl.mod->nfuncs);
      failed++;
    } else if (!(cu = cuda_source(&c, err, sizeof err))) {
      printf("FAIL %s: emit: %s\n", name, err);
      failed++;
    } else {
      char prog[300];
      snprintf(prog, sizeof prog, "%s.cu", name);
      /* NVRTC alone, for sm_90a (no device needed) */
      if (g_nvrtc) {
        MixcCubin cb;
        memset(&cb, 0, sizeof cb);
        if (mixc_nvrtc_compile(g_nvrtc, cu, prog, 90, &cb, err, sizeof err)) {
          printf("FAIL nvrtc %s (sm_90a): %s\n", name, err);
          failed++;
        } else {
          printf("ok   nvrtc %-24s sm_90a, %zu bytes, %.0f ms%s\n", name, cb.size, cb.ms,
                 cb.cache_hit ? " (cached)" : "");
          passed++;
        }
        mixc_cubin_release(&cb);
      }
      /* on the GPU */
      if (g_cuda) {
        char fname[256];
        mixc_emit_c_func_name(c.k.pl.mod->funcs[0], fname, sizeof fname);
        if (mixc_cuda_compile(g_cuda, cu, prog, &c.mod, NULL, NULL, err, sizeof err) ||
            mixc_cuda_function(c.mod, fname, &c.fn, err, sizeof err)) {
          printf("FAIL gpu %s: %s\n", name, err);
          failed++;
        } else {
          static const int64_t Ts[] = {0, 1, 7, 33, 70};
          const char *st = strategy_name(c.k.sp.strategy);
          for (int k = m->ngrid ? 4 : 0; k < 5; k++) run_case(&c, Ts[k], rng, names[ti], st, 0);
          if (ti == 0) run_case(&c, 70, rng, names[ti], st, 1);
          if (ti == 0 && !m->ngrid && long_example(m->name.name))
            run_case(&c, 2048, rng, names[ti], st, 0);
        }
        if (c.mod) mixc_cuda_module_free(c.mod);
      }
    }
    free(cu);
    kcase_free(&c.k);
  }
}

/* The tensor-core matmul helper alone (mixc__matmul_tc, from the CUDA prelude), on global
 * memory: random M, N, K (tails of 16 and 8, and 0), leading dimensions with padding,
 * overwrite and accumulate, single TF32 and 3xTF32, launched with 256 and 96 threads (and 40:
 * not a multiple of 32, the fp32 fallback). Against an fp64 product; the padding of C (and
 * rows below M) holds a sentinel that must survive. Errors relative to the largest |C|:
 * 3xTF32 <= 1e-5 (fp32-like), TF32 <= 4e-3 (10-bit operands, K <= 160). */
static void test_matmul(MixcRng *rng) {
  Arena ar;
  arena_init(&ar);
  KModule *km = kir_module(&ar);
  KFunc *kf = km ? kir_func(km, "mixc_empty") : NULL;
  char *src = NULL, err[4096] = "";
  size_t len = 0;
  FILE *f = kf ? open_memstream(&src, &len) : NULL;
  int rc = !f;
  if (f) {
    rc = mixc_emit_cuda_module(f, km, NULL, 0, NULL, err, sizeof err);
    fputs("\nextern \"C\" __global__ void mm_test(int64_t M, int64_t N, int64_t K, const float *A,"
          " int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc, int acc, int split)"
          " {\n  if (split) mixc__matmul_tc<true>(M, N, K, A, lda, B, ldb, C, ldc, acc);\n"
          "  else mixc__matmul_tc<false>(M, N, K, A, lda, B, ldb, C, ldc, acc);\n}\n",
          f);
    fclose(f);
  }
  arena_free(&ar);
  MixcCudaModule *mod = NULL;
  MixcCudaFunc *fn = NULL;
  if (rc || mixc_cuda_compile(g_cuda, src, "mm_test.cu", &mod, NULL, NULL, err, sizeof err) ||
      mixc_cuda_function(mod, "mm_test", &fn, err, sizeof err)) {
    printf("FAIL gpu matmul helper: %s\n", err);
    failed++;
    free(src);
    if (mod) mixc_cuda_module_free(mod);
    return;
  }
  free(src);
  static const int64_t sizes[] = {0, 1, 5, 8, 16, 17, 31, 33, 128, 160};
  const int nsz = (int)(sizeof sizes / sizeof *sizes);
  const float sentinel = 12345.0f;
  int bad = 0, runs = 0;
  double worst[2] = {0, 0};
  for (int trial = 0; trial < 60 && !bad; trial++) {
    int64_t M = sizes[(int)(mixc_rng_uniform(rng) * nsz)],
            N = sizes[(int)(mixc_rng_uniform(rng) * nsz)],
            K = sizes[(int)(mixc_rng_uniform(rng) * nsz)];
    int64_t lda = K + (trial % 3), ldb = N + (trial % 2) * 3, ldc = N + (trial % 4);
    if (ldc == 0) ldc = 1; /* the host's row / column of C divide by it */
    int acc = trial & 1, split = (trial >> 1) & 1;
    unsigned threads = trial % 5 == 4 ? 40 : trial % 5 == 3 ? 96 : 256;
    int64_t na = (M + 1) * (lda + 1), nb = (K + 1) * (ldb + 1), nc = (M + 2) * (ldc + 1);
    float *A = calloc((size_t)na, 4), *Bm = calloc((size_t)nb, 4), *C = calloc((size_t)nc, 4),
          *C0 = calloc((size_t)nc, 4);
    MixcDevPtr dA = 0, dB = 0, dC = 0;
    if (!A || !Bm || !C || !C0) {
      bad = 1;
      snprintf(err, sizeof err, "out of memory");
    }
    for (int64_t i = 0; !bad && i < na; i++) A[i] = (float)mixc_rng_normal(rng);
    for (int64_t i = 0; !bad && i < nb; i++) Bm[i] = (float)mixc_rng_normal(rng);
    for (int64_t i = 0; !bad && i < nc; i++) {
      int64_t r = i / ldc, col = i % ldc;
      C0[i] = r < M && col < N ? (float)mixc_rng_normal(rng) : sentinel;
    }
    if (!bad)
      bad = mixc_cuda_alloc(g_cuda, (size_t)na * 4, &dA, err, sizeof err) ||
            mixc_cuda_alloc(g_cuda, (size_t)nb * 4, &dB, err, sizeof err) ||
            mixc_cuda_alloc(g_cuda, (size_t)nc * 4, &dC, err, sizeof err) ||
            mixc_cuda_memcpy_htod(g_cuda, dA, A, (size_t)na * 4, err, sizeof err) ||
            mixc_cuda_memcpy_htod(g_cuda, dB, Bm, (size_t)nb * 4, err, sizeof err) ||
            mixc_cuda_memcpy_htod(g_cuda, dC, C0, (size_t)nc * 4, err, sizeof err);
    if (!bad) {
      unsigned grid[3] = {1, 1, 1}, block[3] = {threads, 1, 1};
      void *params[11] = {&M, &N, &K, &dA, &lda, &dB, &ldb, &dC, &ldc, &acc, &split};
      bad = mixc_cuda_launch(g_cuda, fn, grid, block, 0, NULL, params, err, sizeof err) ||
            mixc_cuda_synchronize(g_cuda, err, sizeof err) ||
            mixc_cuda_memcpy_dtoh(g_cuda, C, dC, (size_t)nc * 4, err, sizeof err);
    }
    double emax = 0, cmax = 0;
    int outside = 0;
    for (int64_t i = 0; !bad && i < nc; i++) {
      int64_t r = i / ldc, col = i % ldc;
      if (!(r < M && col < N)) {
        outside |= C[i] != sentinel;
        continue;
      }
      double want = acc ? C0[i] : 0.0;
      for (int64_t k = 0; k < K; k++) want += (double)A[r * lda + k] * Bm[k * ldb + col];
      double d = fabs(C[i] - want);
      if (!(d <= INFINITY)) d = INFINITY;
      if (d > emax) emax = d;
      if (fabs(want) > cmax) cmax = fabs(want);
    }
    double rel = cmax > 0 ? emax / cmax : emax;
    double tol = split || threads == 40 ? 1e-5 : 4e-3;
    if (!bad && (outside || !(rel <= tol))) {
      bad = 1;
      snprintf(err, sizeof err,
               "M=%lld N=%lld K=%lld lda=%lld ldb=%lld ldc=%lld acc=%d split=%d threads=%u: "
               "rel err %.2e (tol %.0e)%s",
               (long long)M, (long long)N, (long long)K, (long long)lda, (long long)ldb,
               (long long)ldc, acc, split, threads, rel, tol,
               outside ? ", wrote outside M x N" : "");
    }
    if (!bad && threads != 40 && rel > worst[split]) worst[split] = rel;
    runs += !bad;
    char ferr[256];
    mixc_cuda_free(g_cuda, dA, ferr, sizeof ferr);
    mixc_cuda_free(g_cuda, dB, ferr, sizeof ferr);
    mixc_cuda_free(g_cuda, dC, ferr, sizeof ferr);
    free(A);
    free(Bm);
    free(C);
    free(C0);
  }
  if (bad) {
    printf("FAIL gpu matmul helper: %s\n", err);
    failed++;
  } else {
    printf("ok   gpu matmul helper: %d shapes, worst rel err TF32 %.2e, 3xTF32 %.2e\n", runs,
           worst[0], worst[1]);
    passed++;
  }
  mixc_cuda_module_free(mod);
}

int main(int argc, char **argv) {
  unsigned long long seed = argc > 1 ? strtoull(argv[1], NULL, 10)
                                     : (unsigned long long)time(NULL) ^
                                           ((unsigned long long)getpid() << 16);
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("test_cuda_kernels: seed %llu\n", seed);
  MixcRng rng;
  mixc_rng_seed(&rng, seed);
  /* a fresh NVRTC cache */
  char cache[] = "/tmp/mixc_cuda_kXXXXXX";
  if (!mkdtemp(cache)) return 1;
  setenv("XDG_CACHE_HOME", cache, 1);
  char err[1024];
  const char *req = getenv("MIXC_TEST_REQUIRE_GPU");
  if (mixc_cuda_open(0, &g_cuda, err, sizeof err)) {
    g_cuda = NULL;
    printf("no GPU: %s\n", err);
    if (req && *req && strcmp(req, "0")) {
      printf("FAIL: MIXC_TEST_REQUIRE_GPU is set\n");
      failed++;
    } else {
      skipped++;
    }
  } else {
    const MixcCudaInfo *in = mixc_cuda_info(g_cuda);
    printf("GPU: %s (%s), NVRTC %d.%d\n", in->name, in->target, in->nvrtc_major,
           in->nvrtc_minor);
  }
  if (mixc_nvrtc_open(0, &g_nvrtc, err, sizeof err)) {
    g_nvrtc = NULL;
    printf("no NVRTC: %s\n", err);
  }
  if (g_cuda) test_matmul(&rng);
  if (g_nvrtc || g_cuda) {
    failed += each_example(test_file, &rng);
    /* random mixers of gen_mixer.h (every class, outputs anywhere in the token, grids) */
    int bad = each_generated(GEN_CUDA_COUNT, &rng, seed, test_file, &rng, &failed);
    failed += bad;
  }
  if (g_nvrtc) mixc_nvrtc_close(g_nvrtc);
  if (g_cuda) mixc_cuda_close(g_cuda);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", cache);
  if (system(cmd)) printf("warning: could not remove %s\n", cache);
  printf("test_cuda_kernels: %d passed, %d failed, %d skipped\n", passed, failed, skipped);
  return failed != 0;
}
#endif
