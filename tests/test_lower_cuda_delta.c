/* The delta rule's hand-structured CUDA chunk kernel (compiler/lower_cuda_delta.c,
 * cuda_chunk_delta_source) on shapes filled by hand.
 *
 * Without a GPU (NVRTC only): each shape's kernel, after the CUDA prelude (an empty module
 * printed with MIXC_C_CUDA) and its argument struct, is compiled by NVRTC for sm_90a with 227
 * KiB of shared memory; shapes outside the form (K = 100, K = 256 with a 256-column tile)
 * must give -1. With a GPU: the kernels are printed for the device, launched through the
 * loader (two launches, items [0, m) and [m, n), to exercise `begin`) on fresh random
 * inputs with non-contiguous strides (q padded, k head-major, o padded; padding poisoned and
 * checked untouched), outputs and final states poisoned with NaN, and compared with an fp64
 * token recurrence written here (S = e^g S; S += beta k (v - S^T k)^T; o = scale S^T q) over
 * the same 16-bit inputs, the error relative to max |ref| of each tensor: bf16 2e-2, f16
 * 5e-3 (the products' operands are rounded to 16 bits as in fla). Exit 77 (a skip) without
 * NVRTC; without a GPU the compile checks still run, and MIXC_TEST_REQUIRE_GPU=1 makes the
 * absence of a GPU a failure. The first kernel also runs (and compiles) with its fragments
 * loaded element by element (LDSM false), and so does the V = 100 split; the gate-stress case
 * reads q and v with element stride 2 (the kernel's element-load path), the others through
 * 16-byte loads. NVRTC's disk cache is off. argv[1] replays a seed. MIXC_DELTA_BENCH=1 also
 * times the kernel at fla's benchmark shapes ((B, T) = (8, 2048), (2, 8192), (1, 32768), H 16,
 * K = V = 128, bf16; delta and gated delta; the runtime's value split, and the two long ones
 * also unsplit; the values do not change the work); with MIXC_DELTA_PROF=1 also the cycles a
 * chunk per phase; MIXC_DELTA_DUMP=DIR writes the sources. MIXC_DELTA_SEGS=N runs every
 * case through the sequence split (lower_cuda_seg.c: local, combine and output kernels, two
 * value tiles where a case has one, the per-item storage in device memory; a shape the split
 * does not fit runs unsplit, said so); MIXC_DELTA_THREADS=256 prints 256 threads a block. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>

#include "testlib_cuda.h"

#ifndef MIXC_HAVE_CUDA
int main(void) { return ck_no_cuda("test_lower_cuda_delta"); }
#else
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends/c/c_emit.h"
#include "backends/cuda/cuda_loader.h"
#include "compiler/arena.h"
#include "compiler/kir.h"
#include "compiler/lower_cuda.h"
#include "compiler/schedule.h"
#include "runtime/half.h"
#include "runtime/inputs.h"

static int passed, failed, skipped;
static MixcNvrtc *g_nvrtc;
static MixcCuda *g_cuda;
static char *g_prelude;

typedef struct Case {
  const char *what;
  int64_t K, V, vtile, vtiles;
  KType in, out, gt, bt;
  int has_g, has_beta, h0, ht, varlen, scale_param, stress;
  int expect; /* 0 or -1 */
  int64_t B, T, H;
} Case;

/* slots of the argument tables */
enum { P_Q, P_K, P_V, P_G, P_BETA, P_O, P_SCALE, P_H0, P_HT, P_CU };
enum { I_B, I_T, I_H, I_N, S_Q = 4, S_K = 8, S_V = 12, S_G = 16, S_BETA = 19, S_O = 22,
       S_SCALE = 26, S_H0 = 27, S_HT = 31 };

/* MIXC_DELTA_THREADS=256: every kernel with 256 threads a block (CudaChunkShape.threads;
 * the default is 512).
 * MIXC_DELTA_SEGS=N: every case split into N sequence segments (three kernels,
 * lower_cuda_seg.c; cases whose split does not fit run unsplit, said so). */
static unsigned g_threads;
static int64_t g_segs;
static int g_no_hilo; /* CudaChunkShape.no_hilo (MIXC_DELTA_NO_HILO=1: P D in single 16 bits) */

typedef ChunkKern Kern; /* tests/testlib_cuda.h */

static void fill_shape(const Case *c, CudaChunkShape *s) {
  memset(s, 0, sizeof *s);
  s->threads = g_threads;
  s->segs = g_segs;
  s->no_hilo = g_no_hilo;
  s->kind = CCK_DELTA;
  s->K = c->K, s->V = c->V, s->chunk = 64, s->vtile = c->vtile, s->vtiles = c->vtiles;
  s->in_type = c->in, s->out_type = c->out, s->g_type = c->gt, s->beta_type = c->bt;
  s->has_g = c->has_g, s->has_beta = c->has_beta;
  s->p_q = P_Q, s->p_k = P_K, s->p_v = P_V, s->p_o = P_O;
  s->p_g = c->has_g ? P_G : -1, s->p_beta = c->has_beta ? P_BETA : -1;
  s->s_q = S_Q, s->s_k = S_K, s->s_v = S_V, s->s_o = S_O;
  s->s_g = c->has_g ? S_G : -1, s->s_beta = c->has_beta ? S_BETA : -1;
  s->scale = 1.0 / sqrt((double)c->K);
  s->p_scale = c->scale_param ? P_SCALE : -1, s->s_scale = c->scale_param ? S_SCALE : -1;
  s->scale_type = KT_F32;
  s->p_h0 = c->h0 ? P_H0 : -1, s->s_h0 = c->h0 ? S_H0 : -1;
  s->p_ht = c->ht ? P_HT : -1, s->s_ht = c->ht ? S_HT : -1;
  s->p_cu = c->varlen ? P_CU : -1, s->cu_type = c->varlen == 2 ? KT_I64 : KT_I32;
  s->i_B = I_B, s->i_T = I_T, s->i_H = I_H, s->i_N = I_N;
}

/* The prelude, and each kernel's argument struct and text (k: names, launches): 0, -1
 * (outside the form) or 1. With segments asked for and a shape they do not fit, the kernel
 * unsplit. */
static int print_source(const Case *c, const char *name, int arch, int optin, int ldsm,
                        char **src, Kern *k) {
  CudaChunkShape s;
  fill_shape(c, &s);
  if (s.segs > 1 && s.vtiles == 1 && s.V >= 32) {
    /* as lower_cuda_chunk splits: two value tiles, so the local kernel's tile (half of V and
     * half of the transition's K columns) is as wide as the unsplit one */
    s.vtile = ((s.V + 1) / 2 + 15) / 16 * 16;
    s.vtiles = (s.V + s.vtile - 1) / s.vtile;
  }
  int rc = chunk_kern_print(&s, name, arch, optin, g_prelude, CK_NPTRS, CK_NINTS, src, k);
  if (rc < 0 && s.segs > 1) {
    printf("  %s: no sequence split for this shape (unsplit)\n", c->what);
    free(*src);
    fill_shape(c, &s);
    s.segs = 1;
    rc = chunk_kern_print(&s, name, arch, optin, g_prelude, CK_NPTRS, CK_NINTS, src, k);
  }
  /* ldsm = 0: the kernels' mma fragments by element loads instead of ldmatrix */
  int nl = 0;
  for (char *l = rc == 0 && !ldsm ? strstr(*src, "constexpr bool LDSM = true;") : NULL; l;
       l = strstr(l, "constexpr bool LDSM = true;"), nl++)
    memcpy(l + strlen("constexpr bool LDSM = "), "!1  ", 4);
  if (rc == 0 && !ldsm && !nl) {
    printf("  no LDSM switch in the source\n");
    rc = 1;
  }
  return rc;
}

static void check(int ok, const char *what) { ck_check(ok, what, &passed, &failed); }

/* ---- host data (the value helpers and CkBuf: tests/testlib_cuda.h) ---- */

static int run_case(const Case *c0, MixcRng *rng, int idx, int ldsm) {
  char err[2048], name[64], what[256];
  char cwhat[200];
  snprintf(cwhat, sizeof cwhat, "%s%s", c0->what, ldsm ? "" : " (fragments by element loads)");
  Case cc = *c0;
  cc.what = cwhat;
  const Case *c = &cc;
  snprintf(name, sizeof name, "mixc_delta_gpu%d%s", idx, ldsm ? "" : "e");
  const MixcCudaInfo *in = mixc_cuda_info(g_cuda);
  char *src = NULL;
  Kern kn;
  int rc = print_source(c, name, in->arch, in->max_smem_per_block_optin, ldsm, &src, &kn);
  if (rc) {
    snprintf(what, sizeof what, "%s: printed for the device: %d", c->what, rc);
    check(0, what);
    free(src);
    return 1;
  }
  MixcCudaModule *mod = NULL;
  int crc = mixc_cuda_compile(g_cuda, src, "test_lower_cuda_delta.cu", &mod, NULL, NULL, err,
                              sizeof err);
  for (int i = 0; i < kn.n && !crc; i++)
    crc = mixc_cuda_function(mod, kn.name[i], &kn.fn[i], err, sizeof err);
  if (crc) {
    printf("%s\n", err);
    snprintf(what, sizeof what, "%s: compile on the device", c->what);
    check(0, what);
    if (mod) mixc_cuda_module_free(mod);
    free(src);
    return 1;
  }
  free(src);
  MixcDevPtr dscr = 0; /* the kernels' per-item storage (segments) */
  const int64_t K = c->K, V = c->V, H = c->H;
  /* sequences */
  int64_t B = c->B, T = c->T, N = B, cu[8] = {0};
  if (c->varlen) {
    int64_t lens[5] = {70, 0, 130, 63, 1};
    N = 5, B = 1, T = 0;
    for (int i = 0; i < N; i++) cu[i + 1] = cu[i] + lens[i], T += lens[i];
  }
  /* layouts: q [B][T][H][K + 8], k [B][H][T][K], v [B][T][H][V], o [B][T][H][V + 4],
   * g, beta [B][T][H] (g strided by 2), h0/ht [N][H][K][V] */
  int64_t sq[4] = {T * H * (K + 8), H * (K + 8), K + 8, 1};
  int64_t sv[4] = {T * H * V, H * V, V, 1};
  if (c->stress) { /* every other element: the kernel's element-load path */
    int64_t s2[4] = {T * H * 2 * K, H * 2 * K, 2 * K, 2}, v2[4] = {T * H * 2 * V, H * 2 * V, 2 * V, 2};
    memcpy(sq, s2, sizeof sq), memcpy(sv, v2, sizeof sv);
  }
  int64_t sk[4] = {H * T * K, K, T * K, 1};
  int64_t so[4] = {T * H * (V + 4), H * (V + 4), V + 4, 1};
  int64_t sg[3] = {2 * T * H, 2 * H, 2};
  int64_t sb[3] = {T * H, H, 1};
  int64_t ss[4] = {H * K * V, K * V, V, 1};
  CkBuf bq = {0}, bk = {0}, bvv = {0}, bg = {0}, bb = {0}, bo = {0}, bsc = {0}, bh0 = {0},
      bht = {0}, bcu = {0};
  CkBuf *all[] = {&bq, &bk, &bvv, &bg, &bb, &bo, &bsc, &bh0, &bht, &bcu};
  bq.bytes = (size_t)(B * sq[0]) * 2;
  bk.bytes = (size_t)(B * sk[0]) * 2;
  bvv.bytes = (size_t)(B * sv[0]) * 2;
  bo.bytes = (size_t)(B * so[0]) * ck_tsize(c->out);
  if (c->has_g) bg.bytes = (size_t)(B * sg[0]) * ck_tsize(c->gt);
  if (c->has_beta) bb.bytes = (size_t)(B * sb[0]) * ck_tsize(c->bt);
  if (c->scale_param) bsc.bytes = (size_t)H * 4;
  if (c->h0) bh0.bytes = (size_t)(N * ss[0]) * 4;
  if (c->ht) bht.bytes = (size_t)(N * ss[0]) * 4;
  if (c->varlen) bcu.bytes = (size_t)(N + 1) * (c->varlen == 2 ? 8 : 4);
  int bad = ck_bufs_host(all, 10);
  double *ref_o = calloc((size_t)(N * H * (T > 0 ? T : 1) * V) + 1, sizeof(double));
  double *ref_s = calloc((size_t)(N * H * K * V), sizeof(double));
  double *S = calloc((size_t)(K * V), sizeof(double)), *u = calloc((size_t)V, sizeof(double));
  if (bad || !ref_o || !ref_s || !S || !u) {
    printf("out of memory\n");
    failed++;
    goto done;
  }
  /* inputs: padding of q poisoned too (never read as data), k l2-normalised */
  ck_poison(c->in, bq.h, (int64_t)(bq.bytes / 2));
  ck_poison(c->in, bvv.h, (int64_t)(bvv.bytes / 2));
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++)
      for (int64_t h = 0; h < H; h++) {
        double nk = 0, kv[256];
        for (int64_t i = 0; i < K; i++) {
          ck_set(c->in, bq.h, b * sq[0] + t * sq[1] + h * sq[2] + i * sq[3], mixc_rng_normal(rng));
          kv[i] = mixc_rng_normal(rng);
          nk += kv[i] * kv[i];
        }
        for (int64_t i = 0; i < K; i++)
          ck_set(c->in, bk.h, b * sk[0] + t * sk[1] + h * sk[2] + i, kv[i] / sqrt(nk));
        for (int64_t j = 0; j < V; j++)
          ck_set(c->in, bvv.h, b * sv[0] + t * sv[1] + h * sv[2] + j * sv[3], mixc_rng_normal(rng));
        if (c->has_g) {
          double g = -0.2 * mixc_rng_uniform(rng);
          if (c->stress) {
            int r = (int)(mixc_rng_uniform(rng) * 4);
            g = r == 0 ? -30.0 : r == 1 ? 0.0 : r == 2 ? -1e-4 : -3.0 * mixc_rng_uniform(rng);
          }
          ck_set(c->gt, bg.h, b * sg[0] + t * sg[1] + h * sg[2], g);
        }
        if (c->has_beta)
          ck_set(c->bt, bb.h, b * sb[0] + t * sb[1] + h * sb[2], mixc_rng_uniform(rng));
      }
  if (c->scale_param)
    for (int64_t h = 0; h < H; h++) ((float *)bsc.h)[h] = (float)(0.05 + 0.2 * mixc_rng_uniform(rng));
  if (c->h0)
    for (int64_t i = 0; i < N * ss[0]; i++) ((float *)bh0.h)[i] = (float)(0.3 * mixc_rng_normal(rng));
  if (c->ht) ck_poison(KT_F32, bht.h, N * ss[0]);
  ck_poison(c->out, bo.h, (int64_t)(bo.bytes / ck_tsize(c->out)));
  if (c->varlen) ck_put_cu(bcu.h, cu, N, c->varlen == 2);
  /* the fp64 recurrence on the stored values */
  for (int64_t n = 0; n < N; n++)
    for (int64_t h = 0; h < H; h++) {
      int64_t b = c->varlen ? 0 : n, ta = c->varlen ? cu[n] : 0, tb = c->varlen ? cu[n + 1] : T;
      double scale = c->scale_param ? ((float *)bsc.h)[h] : 1.0 / sqrt((double)K);
      for (int64_t e = 0; e < K * V; e++) S[e] = c->h0 ? ((float *)bh0.h)[n * ss[0] + h * ss[1] + e] : 0.0;
      for (int64_t t = ta; t < tb; t++) {
        double eg = c->has_g ? exp(ck_get(c->gt, bg.h, b * sg[0] + t * sg[1] + h * sg[2])) : 1.0;
        double beta = c->has_beta ? ck_get(c->bt, bb.h, b * sb[0] + t * sb[1] + h * sb[2]) : 1.0;
        for (int64_t e = 0; e < K * V; e++) S[e] *= eg;
        for (int64_t j = 0; j < V; j++) u[j] = 0;
        for (int64_t i = 0; i < K; i++) {
          double kv = ck_get(c->in, bk.h, b * sk[0] + t * sk[1] + h * sk[2] + i);
          for (int64_t j = 0; j < V; j++) u[j] += kv * S[i * V + j];
        }
        for (int64_t j = 0; j < V; j++)
          u[j] = beta * (ck_get(c->in, bvv.h, b * sv[0] + t * sv[1] + h * sv[2] + j * sv[3]) - u[j]);
        for (int64_t i = 0; i < K; i++) {
          double kv = ck_get(c->in, bk.h, b * sk[0] + t * sk[1] + h * sk[2] + i);
          for (int64_t j = 0; j < V; j++) S[i * V + j] += kv * u[j];
        }
        double *o = ref_o + ((b * T + t) * H + h) * V;
        for (int64_t j = 0; j < V; j++) o[j] = 0;
        for (int64_t i = 0; i < K; i++) {
          double qv = ck_get(c->in, bq.h, b * sq[0] + t * sq[1] + h * sq[2] + i * sq[3]);
          for (int64_t j = 0; j < V; j++) o[j] += scale * qv * S[i * V + j];
        }
      }
      memcpy(ref_s + (n * H + h) * K * V, S, (size_t)(K * V) * sizeof(double));
    }
  /* device */
  if (!bad) bad = ck_bufs_upload(g_cuda, all, 10);
  CkArgs args;
  memset(&args, 0, sizeof args);
  for (int i = 0; i < 10; i++) args.ptrs[i] = (void *)(uintptr_t)all[i]->d;
  args.ints[I_B] = B, args.ints[I_T] = T, args.ints[I_H] = H, args.ints[I_N] = N;
  for (int d = 0; d < 4; d++) {
    args.ints[S_Q + d] = sq[d], args.ints[S_K + d] = sk[d], args.ints[S_V + d] = sv[d];
    args.ints[S_O + d] = so[d], args.ints[S_H0 + d] = ss[d], args.ints[S_HT + d] = ss[d];
  }
  for (int d = 0; d < 3; d++) args.ints[S_G + d] = sg[d], args.ints[S_BETA + d] = sb[d];
  args.ints[S_SCALE] = 1;
  int64_t items = N * H * kn.vtiles * kn.segs, mid = items / 3;
  if (!bad && kn.item_floats > 0 &&
      mixc_cuda_alloc(g_cuda, (size_t)(items * kn.item_floats) * 4, &dscr, err, sizeof err))
    printf("%s\n", err), bad = 1;
  float *scratch = (float *)(uintptr_t)dscr;
  if (!bad) bad = ck_launch_fetch(g_cuda, &kn, &args, items, mid, scratch, &bo, c->ht ? &bht : NULL);
  if (bad) {
    snprintf(what, sizeof what, "%s: the launch", c->what);
    check(0, what);
    goto done;
  }
  {
    double tol = c->in == KT_F16 ? 5e-3 : 2e-2;
    double maxr = 0, maxe = 0;
    int64_t nan = 0, pad = 0;
    ck_err_rows(c->out, bo.h, so, B, T, H, V, 4, ref_o, &maxe, &maxr, &nan, &pad);
    double rel = ck_rel(maxe, maxr);
    printf("  %s: o max |err| / max |ref| = %.3g (max |ref| %.3g), %lld NaN/inf, %lld padding "
           "written\n",
           c->what, rel, maxr, (long long)nan, (long long)pad);
    snprintf(what, sizeof what, "%s: o within %g, no NaN, padding untouched", c->what, tol);
    check(nan == 0 && pad == 0 && rel <= tol, what);
    if (c->ht) {
      maxr = maxe = 0, nan = 0;
      for (int64_t e = 0; e < N * ss[0]; e++)
        ck_err_add(((float *)bht.h)[e], ref_s[e], &maxe, &maxr, &nan);
      rel = ck_rel(maxe, maxr);
      printf("  %s: ht max |err| / max |ref| = %.3g (max |ref| %.3g), %lld NaN/inf\n", c->what,
             rel, maxr, (long long)nan);
      snprintf(what, sizeof what, "%s: ht within %g, no NaN", c->what, tol);
      check(nan == 0 && rel <= tol, what);
    }
  }
  /* timing of one launch over all items (informational) */
  {
    MixcCudaEvent *e0 = NULL, *e1 = NULL;
    float ms = 0;
    const unsigned threads = kn.threads[kn.n - 1], smem = kn.smem[kn.n - 1];
    if (!mixc_cuda_event_create(g_cuda, &e0, err, sizeof err) &&
        !mixc_cuda_event_create(g_cuda, &e1, err, sizeof err) &&
        !mixc_cuda_event_record(g_cuda, e0, NULL, err, sizeof err) &&
        !chunk_kern_launch(g_cuda, &kn, &args, items, 0, scratch, err, sizeof err) &&
        !mixc_cuda_event_record(g_cuda, e1, NULL, err, sizeof err) &&
        !mixc_cuda_event_elapsed(g_cuda, e0, e1, &ms, err, sizeof err))
      printf("  %s: %lld items, %u threads, %u B shared: %.3f ms\n", c->what, (long long)items,
             threads, smem, ms);
    if (e0) mixc_cuda_event_destroy(g_cuda, e0);
    if (e1) mixc_cuda_event_destroy(g_cuda, e1);
  }
done:
  ck_bufs_free(g_cuda, all, 10);
  free(ref_o), free(ref_s), free(S), free(u);
  if (dscr) mixc_cuda_free(g_cuda, dscr, err, sizeof err);
  mixc_cuda_module_free(mod);
  return 0;
}

/* Timed only (MIXC_DELTA_BENCH): fla's benchmark shapes (B, T) = (8, 2048), (2, 8192),
 * (1, 32768), H 16, K = V = 128, bf16, with the value split lower_cuda_chunk would choose on
 * this device (target 2 x SMs items, halved for this kernel; no split where B H >= 3/4 of
 * that) or the given vtile (> 0). MIXC_DELTA_PROF=1: also the kernel built with
 * MIXC_DELTA_PROF, its cycles a chunk per phase (thread 0, barrier to barrier). */
static const char *const phase_names[12] = {
    "gates, q k v to smem", "G, P, masks (+ fetch issue)", "(unused)", "T diagonal",
    "T block rows", "T diag(beta), to 16 bits", "(unused)", "W", "D (+ k gating)", "O", "S",
    "setup"};

static void bench(const Case *c0, int idx, int64_t B, int64_t T, int64_t vtile, int prof) {
  char err[2048], name[64];
  Case cb = *c0;
  const Case *c = &cb;
  cb.h0 = cb.ht = cb.varlen = cb.scale_param = 0;
  const int64_t H = 16, K = c->K, V = c->V;
  const MixcCudaInfo *in = mixc_cuda_info(g_cuda);
  if (vtile <= 0) { /* lower_cuda_chunk's rule */
    int64_t slots = 2 * (int64_t)in->sm_count / 2;
    vtile = B * H * 4 >= slots * 3 ? V : sched_vtile(V, B * H, slots, 0);
  }
  cb.vtile = vtile, cb.vtiles = (V + vtile - 1) / vtile;
  snprintf(name, sizeof name, "mixc_delta_bench%d", idx);
  char *src = NULL, *src2 = NULL;
  Kern kn;
  const int64_t segs = g_segs; /* the fused kernel only */
  g_segs = 0;
  int prc = print_source(c, name, in->arch, in->max_smem_per_block_optin, 1, &src, &kn);
  g_segs = segs;
  if (prc) {
    free(src);
    return;
  }
  const unsigned threads = kn.threads[0], smem = kn.smem[0];
  if (prof) { /* the same kernel with the phase counters */
    size_t n = strlen(src) + 64;
    src2 = malloc(n);
    if (!src2) {
      free(src);
      return;
    }
    snprintf(src2, n, "#define MIXC_DELTA_PROF 1\n%s", src);
    free(src);
    src = src2;
  }
  MixcCudaModule *mod = NULL;
  MixcCudaFunc *fn = NULL;
  if (mixc_cuda_compile(g_cuda, src, "bench.cu", &mod, NULL, NULL, err, sizeof err) ||
      mixc_cuda_function(mod, name, &fn, err, sizeof err)) {
    printf("%s\n", err);
    free(src);
    if (mod) mixc_cuda_module_free(mod);
    return;
  }
  free(src);
  size_t nqk = (size_t)(B * T * H * K), nv = (size_t)(B * T * H * V), ng = (size_t)(B * T * H);
  MixcDevPtr q = 0, k = 0, v = 0, g = 0, be = 0, o = 0, pc = 0;
  int bad = mixc_cuda_alloc(g_cuda, nqk * 2, &q, err, sizeof err) ||
            mixc_cuda_alloc(g_cuda, nqk * 2, &k, err, sizeof err) ||
            mixc_cuda_alloc(g_cuda, nv * 2, &v, err, sizeof err) ||
            mixc_cuda_alloc(g_cuda, ng * 4, &g, err, sizeof err) ||
            mixc_cuda_alloc(g_cuda, ng * 4, &be, err, sizeof err) ||
            mixc_cuda_alloc(g_cuda, nv * 2, &o, err, sizeof err) ||
            mixc_cuda_alloc(g_cuda, 12 * 8, &pc, err, sizeof err);
  /* the kernel's work does not depend on the values: bytes 0x3c (q, k, v, beta about 0.0115
   * in bf16 and f32), g = 0 */
  if (!bad)
    bad = mixc_cuda_memset8(g_cuda, q, 0x3c, nqk * 2, err, sizeof err) ||
          mixc_cuda_memset8(g_cuda, k, 0x3c, nqk * 2, err, sizeof err) ||
          mixc_cuda_memset8(g_cuda, v, 0x3c, nv * 2, err, sizeof err) ||
          mixc_cuda_memset8(g_cuda, g, 0, ng * 4, err, sizeof err) ||
          mixc_cuda_memset8(g_cuda, be, 0x3c, ng * 4, err, sizeof err);
  CkArgs args;
  memset(&args, 0, sizeof args);
  args.ptrs[P_Q] = (void *)(uintptr_t)q, args.ptrs[P_K] = (void *)(uintptr_t)k;
  args.ptrs[P_V] = (void *)(uintptr_t)v, args.ptrs[P_G] = (void *)(uintptr_t)g;
  args.ptrs[P_BETA] = (void *)(uintptr_t)be, args.ptrs[P_O] = (void *)(uintptr_t)o;
  args.ints[I_B] = B, args.ints[I_T] = T, args.ints[I_H] = H, args.ints[I_N] = B;
  int64_t s4[4] = {T * H * K, H * K, K, 1}, s4v[4] = {T * H * V, H * V, V, 1}, s3[3] = {T * H, H, 1};
  for (int d = 0; d < 4; d++)
    args.ints[S_Q + d] = s4[d], args.ints[S_K + d] = s4[d], args.ints[S_V + d] = s4v[d],
    args.ints[S_O + d] = s4v[d];
  for (int d = 0; d < 3; d++) args.ints[S_G + d] = s3[d], args.ints[S_BETA + d] = s3[d];
  int64_t items = B * H * c->vtiles, begin = 0, end = items;
  float *scratch = (float *)(uintptr_t)pc;
  unsigned grid[3] = {(unsigned)items, 1, 1}, block[3] = {threads, 1, 1};
  void *kargs[] = {&args, &begin, &end, &scratch};
  MixcCudaEvent *e0 = NULL, *e1 = NULL;
  float ms = 0;
  for (int i = 0; i < 3 && !bad; i++)
    bad = mixc_cuda_launch(g_cuda, fn, grid, block, smem, NULL, kargs, err, sizeof err);
  if (!bad) bad = mixc_cuda_memset8(g_cuda, pc, 0, 12 * 8, err, sizeof err);
  if (!bad && !mixc_cuda_event_create(g_cuda, &e0, err, sizeof err) &&
      !mixc_cuda_event_create(g_cuda, &e1, err, sizeof err) &&
      !mixc_cuda_event_record(g_cuda, e0, NULL, err, sizeof err)) {
    for (int i = 0; i < 10 && !bad; i++)
      bad = mixc_cuda_launch(g_cuda, fn, grid, block, smem, NULL, kargs, err, sizeof err);
    if (!bad && !mixc_cuda_event_record(g_cuda, e1, NULL, err, sizeof err) &&
        !mixc_cuda_event_elapsed(g_cuda, e0, e1, &ms, err, sizeof err))
      printf("  bench%s %s (B %lld, T %lld, H 16, vtile %lld x %lld, %lld items): %.3f ms a "
             "launch (%u threads, %u B shared)%s\n",
             prof ? " (phase counters on)" : "", c->what, (long long)B, (long long)T,
             (long long)vtile, (long long)c->vtiles, (long long)items, ms / 10, threads, smem,
             g_no_hilo && c->has_g ? " (P D in single 16 bits)" : "");
  }
  if (!bad && prof) {
    unsigned long long cyc[12];
    if (!mixc_cuda_synchronize(g_cuda, err, sizeof err) &&
        !mixc_cuda_memcpy_dtoh(g_cuda, cyc, pc, sizeof cyc, err, sizeof err)) {
      double per = 10.0 * (double)items * (double)((T + 63) / 64), tot = 0;
      for (int i = 0; i < 11; i++) tot += (double)cyc[i] / per;
      printf("    cycles a chunk (thread 0 of each block, mean): %.0f in all\n", tot);
      for (int i = 0; i < 12; i++)
        printf("    %-28s %8.0f%s\n", phase_names[i], (double)cyc[i] / per,
               i == 11 ? " (once a block, over chunks)" : "");
    }
  }
  if (bad) printf("  bench: %s\n", err);
  if (e0) mixc_cuda_event_destroy(g_cuda, e0);
  if (e1) mixc_cuda_event_destroy(g_cuda, e1);
  MixcDevPtr ps[] = {q, k, v, g, be, o, pc};
  for (int i = 0; i < 7; i++)
    if (ps[i]) mixc_cuda_free(g_cuda, ps[i], err, sizeof err);
  mixc_cuda_module_free(mod);
}

int main(int argc, char **argv) {
  MixcRng rng;
  unsigned long long seed = ck_start(argc, argv, &rng);
  printf("test_lower_cuda_delta: seed %llu\n", seed);
  char err[4096];
  /* the CUDA prelude: an empty module printed for NVRTC */
  g_prelude = ck_prelude();
  if (!g_prelude) return 1;
  const KType BF = KT_BF16, F16 = KT_F16, F32 = KT_F32;
  const Case cases[] = {
      /* what, K, V, vtile, vtiles, in, out, g, beta, has_g, has_beta, h0, ht, varlen,
       * scale_param, stress, expect, B, T, H */
      {"gated_delta bf16 K=V=128", 128, 128, 128, 1, BF, BF, F32, F32, 1, 1, 1, 1, 0, 0, 0, 0,
       2, 150, 3},
      {"delta bf16 K=V=128 (no g)", 128, 128, 128, 1, BF, BF, F32, F32, 0, 1, 0, 1, 0, 0, 0, 0,
       2, 200, 2},
      {"gated bf16, no beta, no states", 128, 128, 128, 1, BF, F32, BF, F32, 1, 0, 0, 0, 0, 0, 0,
       0, 1, 130, 2},
      {"gated_delta bf16 varlen (int32 cu), h0, ht, scale param", 128, 128, 128, 1, BF, BF, F32,
       BF, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 2},
      {"gated_delta bf16 varlen (int64 cu), gate stress", 128, 128, 128, 1, BF, F32, F32, F32, 1,
       1, 0, 1, 2, 0, 1, 0, 1, 0, 2},
      {"gated_delta f16 K=V=64", 64, 64, 64, 1, F16, F16, F16, F16, 1, 1, 1, 1, 0, 0, 0, 0, 2,
       300, 2},
      /* long sequences: many chunks a segment under MIXC_DELTA_SEGS */
      {"gated_delta bf16 T=1000, h0, ht", 128, 128, 128, 1, BF, BF, F32, F32, 1, 1, 1, 1, 0, 0, 0,
       0, 1, 1000, 2},
      {"delta bf16 T=1000 (no g), ht", 128, 128, 128, 1, BF, BF, F32, F32, 0, 1, 0, 1, 0, 0, 0, 0,
       1, 1000, 2},
      {"gated_delta bf16 K=128 V=100 vtile 32 x 4", 128, 100, 32, 4, BF, BF, F32, F32, 1, 1, 1,
       1, 0, 0, 0, 0, 2, 90, 2},
      {"gated_delta bf16 K=256 V=64 (chunk 32)", 256, 64, 64, 1, BF, BF, F32, F32, 1, 1, 1, 1, 0,
       0, 0, 0, 1, 100, 2},
      {"K=100 (outside the form)", 100, 128, 128, 1, BF, BF, F32, F32, 1, 1, 0, 0, 0, 0, 0, -1,
       0, 0, 0},
      {"K=256, vtile 256 (too much shared memory)", 256, 256, 256, 1, BF, BF, F32, F32, 1, 1, 0,
       0, 0, 0, 0, -1, 0, 0, 0},
  };
  const int ncases = (int)(sizeof cases / sizeof cases[0]);
  const char *th = getenv("MIXC_DELTA_THREADS");
  g_threads = th && !strcmp(th, "256") ? 256 : 0;
  if (g_threads) printf("test_lower_cuda_delta: 256 threads a block\n");
  const char *nh = getenv("MIXC_DELTA_NO_HILO");
  g_no_hilo = nh && *nh && strcmp(nh, "0");
  if (g_no_hilo) printf("test_lower_cuda_delta: P D in single 16-bit operands (the older form)\n");
  const char *sg = getenv("MIXC_DELTA_SEGS");
  g_segs = sg ? atoll(sg) : 0;
  if (g_segs < 0 || g_segs > 64) g_segs = 0;
  if (g_segs > 1) printf("test_lower_cuda_delta: %lld sequence segments\n", (long long)g_segs);
  if (mixc_nvrtc_open(0, &g_nvrtc, err, sizeof err)) {
    printf("no NVRTC: %s\n", err);
    g_nvrtc = NULL;
  }
  if (g_nvrtc) mixc_nvrtc_set_cache_dir(g_nvrtc, NULL, err, sizeof err); /* no disk cache */
  g_cuda = ck_open_gpu(&failed, &skipped, err, sizeof err);
  if (g_cuda) mixc_nvrtc_set_cache_dir(mixc_cuda_nvrtc(g_cuda), NULL, err, sizeof err);
  if (!g_nvrtc && !g_cuda) {
    free(g_prelude);
    printf("test_lower_cuda_delta: %d passed, %d failed, skipped (no NVRTC)\n", passed, failed);
    return failed ? 1 : 77;
  }
  /* printed for an H100 and compiled by NVRTC (the first also with element loads) */
  for (int i = 0; i < ncases; i++)
    for (int ldsm = 1; ldsm >= (i == 0 ? 0 : 1); ldsm--) {
      const Case *c = &cases[i];
      char name[64], what[256];
      snprintf(name, sizeof name, "mixc_delta_k%d%s", i, ldsm ? "" : "e");
      char *src = NULL;
      Kern kn;
      memset(&kn, 0, sizeof kn);
      int rc = print_source(c, name, 90, 232448, ldsm, &src, &kn);
      const unsigned threads = kn.n ? kn.threads[kn.n - 1] : 0, smem = kn.n ? kn.smem[kn.n - 1] : 0;
      snprintf(what, sizeof what, "%s%s: printed (%d, expected %d)", c->what,
               ldsm ? "" : " (element loads)", rc, c->expect);
      check(rc == c->expect, what);
      if (rc == 0) ck_dump("MIXC_DELTA_DUMP", name, src);
      if (rc == 0 && g_nvrtc) {
        size_t size = 0;
        double ms = 0;
        int e = ck_nvrtc(g_nvrtc, src, "test_lower_cuda_delta.cu", 90, &size, &ms);
        snprintf(what, sizeof what, "%s%s: NVRTC sm_90a (%u threads, %u B shared)", c->what,
                 ldsm ? "" : " (element loads)", threads, smem);
        check(!e && size > 0 && threads >= 32 && smem <= 232448, what);
        if (!e) printf("  %s: compiled, %zu bytes, %.0f ms\n", what, size, ms);
      }
      free(src);
    }
  if (g_cuda) {
    for (int i = 0; i < ncases; i++)
      if (cases[i].expect == 0) run_case(&cases[i], &rng, i, 1);
    run_case(&cases[0], &rng, 0, 0);
    run_case(&cases[6], &rng, 6, 0);
    const char *b = getenv("MIXC_DELTA_BENCH");
    if (b && *b && strcmp(b, "0")) {
      const char *pr = getenv("MIXC_DELTA_PROF");
      const int prof = pr && *pr && strcmp(pr, "0");
      const int64_t shapes[3][2] = {{8, 2048}, {2, 8192}, {1, 32768}};
      for (int i = 0; i < 3; i++)
        for (int d = 1; d >= 0; d--) /* delta, gated delta */
          bench(&cases[d], 2 * i + d, shapes[i][0], shapes[i][1], 0, 0);
      /* Gated DeltaNet's P D in single 16-bit operands (the older form), next to the split */
      g_no_hilo = !g_no_hilo;
      bench(&cases[0], 9, shapes[0][0], shapes[0][1], 0, 0);
      g_no_hilo = !g_no_hilo;
      /* without the split (one block a (sequence, head)) where the runtime splits */
      bench(&cases[1], 7, 2, 8192, 128, 0);
      bench(&cases[1], 8, 1, 32768, 128, 0);
      if (prof)
        for (int i = 0; i < 3; i++) bench(&cases[1], 10 + i, shapes[i][0], shapes[i][1], 0, 1);
    }
  }
  if (g_cuda) mixc_cuda_close(g_cuda);
  if (g_nvrtc) mixc_nvrtc_close(g_nvrtc);
  free(g_prelude);
  printf("test_lower_cuda_delta: %d passed, %d failed, %d skipped\n", passed, failed, skipped);
  return failed ? 1 : 0;
}
#endif
