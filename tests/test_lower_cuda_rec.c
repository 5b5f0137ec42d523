/* The recurrent (decode) CUDA kernel (compiler/lower_cuda_rec.c, cuda_rec_source) and its
 * lowering (lower_cuda_recurrent, lower_mixer with KernelSpec.gpu).
 *
 * Without a GPU: the lowering takes the kernel for the forms (bench/gpu/mixers.mix's four
 * mixers, examples retnet, linear_attn, gla, delta, gated_delta; bf16 and f32 inputs) with the
 * recurrent strategy, and with the auto strategy when KernelSpec.tokens_hint says short
 * (the chunk kernels otherwise), with the value split of cuda_rec_vtile; mamba2 keeps the KIR
 * kernel; the modules print and NVRTC compiles them for sm_90a. Every case below is printed
 * (after the CUDA prelude and its argument struct) and compiled by NVRTC for sm_90a; shapes
 * outside the form must give -1. Exit 77 (a skip) without NVRTC or without a GPU
 * (MIXC_TEST_REQUIRE_GPU=1 makes the absence of a GPU a failure).
 *
 * With a GPU: each case's kernel, printed for the device, runs (two launches, items [0, m)
 * and [m, n), to exercise `begin`) on fresh random inputs, at T in {1, 2, 7, 40} (B = 2,
 * H = 3) or varlen (cu_seqlens {7, 0, 40, 1, 2}, int32 or int64, a zero-length sequence),
 * against an fp64 token recurrence written here on the same stored inputs (S = diag(e^g) S +
 * k v^T; delta: S = e^g S, S += beta k (v - S^T k)^T; o = scale S^T q). Runs alternate
 * contiguous tensors and non-contiguous ones (q rows padded, k head-major, v and the scalar
 * gates with element stride 2, beta stride 3, o padded with its padding poisoned and checked
 * untouched), and the states contiguous, with padded rows, or transposed ([N, H, V, K]: the
 * kernel's element path); where a case has both states, T = 1 and 7 run in place (the initial
 * and final state one buffer: the decode step). Outputs and final states are poisoned (NaN)
 * before each run; NaN never passes. Gates: U(-0.1, 0) (near 0), or, in the stress cases, a
 * mix of -1000, -30, 0, -1e-4 and U(-3, 0). Tolerances, max |x - ref| / max |ref| of each
 * tensor: final states (fp32 arithmetic on the stored inputs) 1e-4 for every input type;
 * outputs 1e-4 in f32, 5e-3 in bf16 and 1e-3 in f16 (the output's own rounding: at most 2^-8
 * and 2^-11 of a value).
 *
 * MIXC_REC_BENCH=1 also times (CUDA events around each launch, median of 30 after 3 warm-up
 * launches; the state buffers rotated through more than 150 MB so that no launch finds its
 * state in the 50 MB L2; the step in place) the kernel at T = 1, B in {1, 64}, H = 16,
 * K = V = 128, bf16 q, k, v, o, f32 g and beta, for simple GLA, GLA, DeltaNet and Gated
 * DeltaNet, with the lowering's split (cuda_rec_vtile) and forced splits of 16, 32, 64, 128
 * columns, 128 / 256 / 512 threads, 1 to 4 blocks an SM in the launch bounds (CudaChunkShape
 * minb) and plain state accesses (plain_state: no .cs hint): us a launch and TB/s of state read + write; then at B = 8,
 * T in {8, 16, 32, 64} next to the hand-structured chunk kernel (cuda_chunk_kernels, unsplit
 * as the chunk lowering runs B H = 128 pairs) on the same inputs and states; and, through the
 * public API, mixc_step of bench/gpu/mixers.mix's gated_delta at B = 1 (host time a call,
 * the wall time a call of 200 back-to-back calls, and a call synchronised after each). With or without a GPU, MIXC_REC_BENCH
 * also times the host part of a call on the CPU backend (mixc_step of a tiny gated_delta on a
 * one-thread context: checks, spec, variant lookup, tables, the kernel). argv[1] replays a seed.
 * MIXC_REC_DUMP=DIR writes the sources. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>

#include "testlib_cuda.h"

#ifndef MIXC_HAVE_CUDA
int main(void) { return ck_no_cuda("test_lower_cuda_rec"); }
#else
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/c/c_emit.h"
#include "backends/cuda/cuda_loader.h"
#include "compiler/arena.h"
#include "compiler/compile.h"
#include "compiler/kir.h"
#include "compiler/lower.h"
#include "compiler/lower_cuda.h"
#include "compiler/rec.h"
#include "mixc.h"
#include "runtime/inputs.h"
#include "testlib.h"

static int passed, failed, skipped;
static MixcCuda *g_cuda;
static char *g_prelude;

/* slots of the argument tables */
enum { P_Q, P_K, P_V, P_G, P_BETA, P_O, P_SCALE, P_H0, P_HT, P_CU };
enum { I_B, I_T, I_H, I_N, S_Q = 4, S_K = 8, S_V = 12, S_G = 16, S_BETA = 20, S_O = 23,
       S_SCALE = 27, S_H0 = 28, S_HT = 32 };

static const double G_CONST = -0.03125; /* the CCG_CONST gate */

typedef struct Case {
  const char *what;
  CudaChunkKind kind;
  int gmode; /* -1 no gate, CCG_INPUT, CCG_PARAM, CCG_CONST */
  int beta;
  int64_t K, V, vtile;
  KType in, out, gt;
  int h0, ht, varlen, scale_param, stress;
  unsigned threads; /* 0: the kernel's choice */
  int expect;       /* 0 or -1 */
} Case;

static void check(int ok, const char *what) { ck_check(ok, what, &passed, &failed); }

static void fill_shape(const Case *c, CudaChunkShape *s) {
  memset(s, 0, sizeof *s);
  s->kind = c->kind;
  s->K = c->K, s->V = c->V, s->vtile = c->vtile, s->vtiles = (c->V + c->vtile - 1) / c->vtile;
  s->segs = 1;
  s->threads = c->threads;
  s->in_type = c->in, s->out_type = c->out, s->g_type = c->gt, s->beta_type = c->gt;
  s->has_g = c->gmode >= 0;
  s->g_mode = c->gmode >= 0 ? c->gmode : CCG_INPUT;
  s->g_const = G_CONST;
  s->has_beta = c->beta;
  s->p_q = P_Q, s->p_k = P_K, s->p_v = P_V, s->p_o = P_O;
  s->s_q = S_Q, s->s_k = S_K, s->s_v = S_V, s->s_o = S_O;
  s->p_g = c->gmode == CCG_INPUT || c->gmode == CCG_PARAM ? P_G : -1;
  s->s_g = s->p_g >= 0 ? S_G : -1;
  s->p_beta = c->beta ? P_BETA : -1, s->s_beta = c->beta ? S_BETA : -1;
  s->scale = 1.0 / sqrt((double)c->K);
  s->p_scale = c->scale_param ? P_SCALE : -1, s->s_scale = c->scale_param ? S_SCALE : -1;
  s->scale_type = KT_F32;
  s->p_h0 = c->h0 ? P_H0 : -1, s->s_h0 = c->h0 ? S_H0 : -1;
  s->p_ht = c->ht ? P_HT : -1, s->s_ht = c->ht ? S_HT : -1;
  s->p_cu = c->varlen ? P_CU : -1, s->cu_type = c->varlen == 2 ? KT_I64 : KT_I32;
  s->i_B = I_B, s->i_T = I_T, s->i_H = I_H, s->i_N = I_N;
}

/* The prelude, the argument struct and the kernel of shape s into *src (malloc'd): 0, -1
 * (outside the form) or 1. */
static int print_shape(const CudaChunkShape *s, const char *name, int arch, char **src,
                       unsigned *threads, unsigned *smem) {
  char err[512];
  size_t len = 0;
  *src = NULL;
  FILE *f = open_memstream(src, &len);
  if (!f) return 1;
  fputs(g_prelude, f);
  fprintf(f, "struct MixcArgs_%s {\n  void *ptrs[%d];\n  int64_t ints[%d];\n};\n", name, CK_NPTRS,
          CK_NINTS);
  int rc = cuda_rec_source(f, s, name, arch, threads, smem, err, sizeof err);
  if (rc > 0) printf("  error: %s\n", err);
  if (fclose(f)) rc = 1;
  if (rc) {
    free(*src);
    *src = NULL;
  }
  if (rc == 0) ck_dump("MIXC_REC_DUMP", name, *src);
  return rc;
}

/* Printed for the device, compiled, its function: 0, -1 or 1. */
static int load_shape(const CudaChunkShape *s, const char *name, ChunkKern *k) {
  char err[4096];
  const MixcCudaInfo *in = mixc_cuda_info(g_cuda);
  char *src = NULL;
  memset(k, 0, sizeof *k);
  int rc = print_shape(s, name, in->arch, &src, &k->threads[0], &k->smem[0]);
  if (rc) return rc;
  k->n = 1;
  k->vtiles = s->vtiles;
  k->segs = 1;
  snprintf(k->name[0], sizeof k->name[0], "%s", name);
  rc = mixc_cuda_compile(g_cuda, src, "test_lower_cuda_rec.cu", &k->mod, NULL, NULL, err,
                         sizeof err);
  if (!rc) rc = mixc_cuda_function(k->mod, name, &k->fn[0], err, sizeof err);
  free(src);
  if (rc) {
    printf("%s\n", err);
    if (k->mod) mixc_cuda_module_free(k->mod);
    k->mod = NULL;
    return 1;
  }
  return 0;
}

typedef CkArgs Args; /* tests/testlib_cuda.h */

/* One run of a compiled case: T tokens (B = 2, H = 3) or the varlen batch; strided tensors or
 * not; the states' layout (0 contiguous, 1 padded rows, 2 transposed); in place. */
static void run_once(const Case *c, const ChunkKern *kn, MixcRng *rng, int64_t T0, int strided,
                     int slayout, int inplace) {
  char what[400];
  const int64_t K = c->K, V = c->V, H = 3;
  const int diag = c->kind == CCK_DIAG, delta = c->kind == CCK_DELTA;
  int64_t B = 2, T = T0, N = B, cu[8] = {0};
  if (c->varlen) {
    const int64_t lens[5] = {7, 0, 40, 1, 2};
    N = 5, B = 1, T = 0;
    for (int i = 0; i < N; i++) cu[i + 1] = cu[i] + lens[i], T += lens[i];
  }
  char tag[300];
  snprintf(tag, sizeof tag, "%s, %s T %lld%s, states %s%s", c->what,
           c->varlen ? "varlen" : "", (long long)T, strided ? ", strided" : "",
           slayout == 0 ? "contiguous" : slayout == 1 ? "padded" : "transposed",
           inplace ? ", in place" : "");
  /* layouts (strides in elements) */
  int64_t sq[4] = {T * H * K, H * K, K, 1}, sk[4] = {T * H * K, H * K, K, 1};
  int64_t sv[4] = {T * H * V, H * V, V, 1}, so[4] = {T * H * V, H * V, V, 1};
  int64_t sg[4] = {T * H, H, 1, 0}, sb[4] = {T * H, H, 1, 0};
  if (diag) sg[0] = T * H * K, sg[1] = H * K, sg[2] = K, sg[3] = 1;
  int64_t opad = 0;
  if (strided) {
    int64_t q2[4] = {T * H * (K + 8), H * (K + 8), K + 8, 1};
    int64_t k2[4] = {H * T * K, K, T * K, 1};
    int64_t v2[4] = {T * H * 2 * V, H * 2 * V, 2 * V, 2};
    int64_t o2[4] = {T * H * (V + 4), H * (V + 4), V + 4, 1};
    memcpy(sq, q2, sizeof sq), memcpy(sk, k2, sizeof sk), memcpy(sv, v2, sizeof sv);
    memcpy(so, o2, sizeof so);
    opad = 4;
    if (diag) {
      int64_t g2[4] = {H * T * K, K, T * K, 1};
      memcpy(sg, g2, sizeof sg);
    } else {
      sg[0] = 2 * T * H, sg[1] = 2 * H, sg[2] = 2;
    }
    sb[0] = 3 * T * H, sb[1] = 3 * H, sb[2] = 3;
  }
  if (c->gmode == CCG_PARAM) sg[0] = 1; /* [H]: its stride over H */
  int64_t ss[4] = {H * K * V, K * V, V, 1}, spad = 0;
  if (slayout == 1) ss[0] = H * K * (V + 4), ss[1] = K * (V + 4), ss[2] = V + 4, spad = 4;
  if (slayout == 2) ss[2] = 1, ss[3] = K;
  CkBuf bq = {0}, bk = {0}, bv = {0}, bg = {0}, bbt = {0}, bo = {0}, bsc = {0}, bh0 = {0},
        bht = {0}, bcu = {0};
  CkBuf *all[] = {&bq, &bk, &bv, &bg, &bbt, &bo, &bsc, &bh0, &bht, &bcu};
  const int nbuf = 10;
  const size_t ti = ck_tsize(c->in), tg = ck_tsize(c->gt);
  bq.bytes = (size_t)(B * sq[0]) * ti;
  bk.bytes = (size_t)(B * sk[0]) * ti;
  bv.bytes = (size_t)(B * sv[0]) * ti;
  bo.bytes = (size_t)(B * so[0]) * ck_tsize(c->out);
  if (c->gmode == CCG_INPUT) bg.bytes = (size_t)(B * sg[0]) * tg;
  if (c->gmode == CCG_PARAM) bg.bytes = (size_t)H * tg;
  if (c->beta) bbt.bytes = (size_t)(B * sb[0]) * tg;
  if (c->scale_param) bsc.bytes = (size_t)H * 4;
  if (c->h0) bh0.bytes = (size_t)(N * ss[0]) * 4;
  if (c->ht && !inplace) bht.bytes = (size_t)(N * ss[0]) * 4;
  if (c->varlen) bcu.bytes = (size_t)(N + 1) * (c->varlen == 2 ? 8 : 4);
  int bad = ck_bufs_host(all, nbuf);
  double *ref_o = calloc((size_t)(B * H * (T > 0 ? T : 1) * V) + 1, sizeof(double));
  double *ref_s = calloc((size_t)(N * H * K * V), sizeof(double));
  double *S = calloc((size_t)(K * V), sizeof(double)), *eg = calloc((size_t)K, sizeof(double));
  double *kk = calloc((size_t)K, sizeof(double)), *u = calloc((size_t)V, sizeof(double));
  if (bad || !ref_o || !ref_s || !S || !eg || !kk || !u) {
    printf("out of memory\n");
    failed++;
    goto done;
  }
  /* inputs: padding poisoned (never read) */
  ck_poison(c->in, bq.h, (int64_t)(bq.bytes / ti));
  ck_poison(c->in, bk.h, (int64_t)(bk.bytes / ti));
  ck_poison(c->in, bv.h, (int64_t)(bv.bytes / ti));
  if (bg.bytes) ck_poison(c->gt, bg.h, (int64_t)(bg.bytes / tg));
  if (bbt.bytes) ck_poison(c->gt, bbt.h, (int64_t)(bbt.bytes / tg));
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++)
      for (int64_t h = 0; h < H; h++) {
        double nrm = 0;
        for (int64_t i = 0; i < K; i++) kk[i] = mixc_rng_normal(rng), nrm += kk[i] * kk[i];
        nrm = sqrt(nrm > 0 ? nrm : 1);
        for (int64_t i = 0; i < K; i++) {
          ck_set(c->in, bq.h, b * sq[0] + t * sq[1] + h * sq[2] + i * sq[3], mixc_rng_normal(rng));
          /* delta: k of unit norm (as DeltaNet normalises it); else N(0, 1 / K) */
          ck_set(c->in, bk.h, b * sk[0] + t * sk[1] + h * sk[2] + i * sk[3],
                 delta ? kk[i] / nrm : kk[i] / sqrt((double)K));
        }
        for (int64_t j = 0; j < V; j++)
          ck_set(c->in, bv.h, b * sv[0] + t * sv[1] + h * sv[2] + j * sv[3], mixc_rng_normal(rng));
        if (c->gmode == CCG_INPUT)
          for (int64_t i = 0; i < (diag ? K : 1); i++) {
            double g = -0.1 * mixc_rng_uniform(rng);
            if (c->stress) {
              int r = (int)(mixc_rng_uniform(rng) * 5);
              g = r == 0   ? -1000.0
                  : r == 1 ? -30.0
                  : r == 2 ? 0.0
                  : r == 3 ? -1e-4
                           : -3.0 * mixc_rng_uniform(rng);
            }
            ck_set(c->gt, bg.h, b * sg[0] + t * sg[1] + h * sg[2] + i * sg[3], g);
          }
        if (c->beta) ck_set(c->gt, bbt.h, b * sb[0] + t * sb[1] + h * sb[2], mixc_rng_uniform(rng));
      }
  if (c->gmode == CCG_PARAM)
    for (int64_t h = 0; h < H; h++) ck_set(c->gt, bg.h, h, -0.2 * mixc_rng_uniform(rng));
  if (c->scale_param)
    for (int64_t h = 0; h < H; h++) ((float *)bsc.h)[h] = (float)(0.05 + 0.2 * mixc_rng_uniform(rng));
  if (c->h0) {
    ck_poison(KT_F32, bh0.h, N * ss[0]);
    for (int64_t n = 0; n < N; n++)
      for (int64_t h = 0; h < H; h++)
        for (int64_t i = 0; i < K; i++)
          for (int64_t j = 0; j < V; j++)
            ((float *)bh0.h)[n * ss[0] + h * ss[1] + i * ss[2] + j * ss[3]] =
                (float)(0.3 * mixc_rng_normal(rng));
  }
  if (bht.bytes) ck_poison(KT_F32, bht.h, N * ss[0]);
  ck_poison(c->out, bo.h, (int64_t)(bo.bytes / ck_tsize(c->out)));
  if (c->varlen) ck_put_cu(bcu.h, cu, N, c->varlen == 2);
  /* the fp64 recurrence on the stored values */
  for (int64_t n = 0; n < N; n++)
    for (int64_t h = 0; h < H; h++) {
      int64_t b = c->varlen ? 0 : n, ta = c->varlen ? cu[n] : 0, tb = c->varlen ? cu[n + 1] : T;
      double scale = c->scale_param ? ((float *)bsc.h)[h] : 1.0 / sqrt((double)K);
      for (int64_t i = 0; i < K; i++)
        for (int64_t j = 0; j < V; j++)
          S[i * V + j] = c->h0 ? ((float *)bh0.h)[n * ss[0] + h * ss[1] + i * ss[2] + j * ss[3]] : 0.0;
      for (int64_t t = ta; t < tb; t++) {
        for (int64_t i = 0; i < K; i++) {
          double g = 0;
          if (c->gmode == CCG_INPUT)
            g = ck_get(c->gt, bg.h, b * sg[0] + t * sg[1] + h * sg[2] + (diag ? i : 0) * sg[3]);
          else if (c->gmode == CCG_PARAM)
            g = ck_get(c->gt, bg.h, h);
          else if (c->gmode == CCG_CONST)
            g = G_CONST;
          eg[i] = exp(g);
          kk[i] = ck_get(c->in, bk.h, b * sk[0] + t * sk[1] + h * sk[2] + i * sk[3]);
        }
        double vt[512];
        for (int64_t j = 0; j < V; j++)
          vt[j] = ck_get(c->in, bv.h, b * sv[0] + t * sv[1] + h * sv[2] + j * sv[3]);
        if (delta) {
          double bt = c->beta ? ck_get(c->gt, bbt.h, b * sb[0] + t * sb[1] + h * sb[2]) : 1.0;
          for (int64_t e = 0; e < K * V; e++) S[e] *= eg[0];
          for (int64_t j = 0; j < V; j++) u[j] = 0;
          for (int64_t i = 0; i < K; i++)
            for (int64_t j = 0; j < V; j++) u[j] += kk[i] * S[i * V + j];
          for (int64_t j = 0; j < V; j++) u[j] = bt * (vt[j] - u[j]);
          for (int64_t i = 0; i < K; i++)
            for (int64_t j = 0; j < V; j++) S[i * V + j] += kk[i] * u[j];
        } else {
          for (int64_t i = 0; i < K; i++)
            for (int64_t j = 0; j < V; j++) S[i * V + j] = eg[i] * S[i * V + j] + kk[i] * vt[j];
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
  if (!bad) bad = ck_bufs_upload(g_cuda, all, nbuf);
  Args args;
  memset(&args, 0, sizeof args);
  for (int i = 0; i < nbuf; i++) args.ptrs[i] = (void *)(uintptr_t)all[i]->d;
  if (inplace) args.ptrs[P_HT] = args.ptrs[P_H0];
  args.ints[I_B] = B, args.ints[I_T] = T, args.ints[I_H] = H, args.ints[I_N] = N;
  for (int d = 0; d < 4; d++) {
    args.ints[S_Q + d] = sq[d], args.ints[S_K + d] = sk[d], args.ints[S_V + d] = sv[d];
    args.ints[S_O + d] = so[d], args.ints[S_H0 + d] = ss[d], args.ints[S_HT + d] = ss[d];
    args.ints[S_G + d] = sg[d];
    if (d < 3) args.ints[S_BETA + d] = sb[d];
  }
  args.ints[S_SCALE] = 1;
  int64_t items = N * H * kn->vtiles, mid = items / 3;
  CkBuf *hs = inplace ? &bh0 : &bht;
  if (!bad) bad = ck_launch_fetch(g_cuda, kn, &args, items, mid, NULL, &bo, c->ht ? hs : NULL);
  if (bad) {
    snprintf(what, sizeof what, "%s: the launch", tag);
    check(0, what);
    goto done;
  }
  {
    const double tol_o = c->out == KT_F32 ? 1e-4 : c->out == KT_BF16 ? 5e-3 : 1e-3, tol_s = 1e-4;
    double maxr = 0, maxe = 0;
    int64_t nan = 0, pad = 0;
    ck_err_rows(c->out, bo.h, so, B, T, H, V, opad, ref_o, &maxe, &maxr, &nan, &pad);
    double rel = ck_rel(maxe, maxr);
    printf("  %s: o %.3g (max |ref| %.3g), %lld NaN/inf, %lld padding written (%u threads, "
           "%lld tiles)\n",
           tag, rel, maxr, (long long)nan, (long long)pad, kn->threads[0], (long long)kn->vtiles);
    snprintf(what, sizeof what, "%s: o within %g, no NaN, padding untouched", tag, tol_o);
    check(nan == 0 && pad == 0 && rel <= tol_o, what);
    if (c->ht) {
      maxr = maxe = 0, nan = 0, pad = 0;
      /* padding: untouched (poison, or the initial state's poison in place) */
      ck_err_rows(KT_F32, hs->h, ss, N, H, K, V, spad, ref_s, &maxe, &maxr, &nan, &pad);
      rel = ck_rel(maxe, maxr);
      printf("  %s: ht %.3g (max |ref| %.3g), %lld NaN/inf\n", tag, rel, maxr, (long long)nan);
      snprintf(what, sizeof what, "%s: ht within %g, no NaN, padding untouched", tag, tol_s);
      check(nan == 0 && pad == 0 && rel <= tol_s, what);
    }
  }
done:
  ck_bufs_free(g_cuda, all, nbuf);
  free(ref_o), free(ref_s), free(S), free(eg), free(kk), free(u);
}

static void run_case(const Case *c, MixcRng *rng, int idx) {
  char name[64], what[300];
  snprintf(name, sizeof name, "mixc_rec_gpu%d", idx);
  CudaChunkShape s;
  fill_shape(c, &s);
  ChunkKern kn;
  int rc = load_shape(&s, name, &kn);
  snprintf(what, sizeof what, "%s: printed and compiled for the device (%d, expected %d)",
           c->what, rc, c->expect);
  check(rc == c->expect, what);
  if (rc) return;
  if (c->varlen) {
    run_once(c, &kn, rng, 0, 1, 1, c->h0 && c->ht);
  } else {
    const int64_t Ts[4] = {1, 2, 7, 40};
    for (int r = 0; r < 4; r++)
      run_once(c, &kn, rng, Ts[r], r % 2, r == 1 ? 1 : r == 3 ? 2 : 0,
               c->h0 && c->ht && (r == 0 || r == 2));
  }
  mixc_cuda_module_free(kn.mod);
}

/* ---- the lowering (no GPU needed) ---- */

/* lower_mixer on mixer `mixer` of `file` (dims 128, or V = 100; inputs `in`, gates f32, the
 * states given and wanted): strategy, tokens hint, bh. *native: a cuda_src kernel; *strategy,
 * *vtile, *vtiles the plan's; *cname its name; NVRTC-compiled when nv. 0, or 1. */
typedef struct Lowered {
  int native;
  Strategy strategy;
  int64_t vtile, vtiles;
  char name[128];
} Lowered;

static int lower_one(const RecMixer *rm, Arena *arena, KType in, Strategy strat, int64_t tokens,
                     int64_t bh, int64_t V, MixcNvrtc *nv, Lowered *out) {
  const Mixer *m = rm->mixer;
  size_t ns = (size_t)m->nsyms + 1;
  int64_t *dims = calloc(ns, sizeof *dims);
  KType *dtype = calloc(ns, sizeof *dtype);
  unsigned char *present = calloc(ns, 1), *want = calloc(ns, 1);
  int rc = 1;
  memset(out, 0, sizeof *out);
  if (!dims || !dtype || !present || !want) goto done;
  for (int s = 0; s < m->nsyms; s++) {
    const Sym *y = &m->syms[s];
    if (y->kind == SYM_DIM) dims[s] = y->fixed ? y->fixed : !strcmp(y->name, "V") ? V : 128;
    int gate = !strcmp(y->name, "g") || !strcmp(y->name, "beta") || !strcmp(y->name, "A") ||
               !strcmp(y->name, "dt");
    dtype[s] = y->kind == SYM_STATE || y->kind == SYM_PARAM || gate ? KT_F32 : in;
    present[s] = y->kind == SYM_STATE || (y->kind == SYM_PARAM && !y->init);
    want[s] = y->kind == SYM_STATE;
  }
  KernelSpec sp;
  memset(&sp, 0, sizeof sp);
  sp.rm = rm, sp.dims = dims, sp.dtype = dtype, sp.present = present, sp.want = want;
  sp.cu_type = KT_I32, sp.strategy = strat, sp.tokens_hint = tokens;
  sp.bh = bh, sp.target_items = 264;
  sp.gpu = 1, sp.gpu_arch = 90, sp.gpu_smem_optin = 232448;
  KernelPlan pl;
  char err[4096];
  if (lower_mixer(arena, &sp, &pl, err, sizeof err)) {
    printf("  lower %s: %s\n", rm->name, err);
    goto done;
  }
  out->native = pl.mod->nfuncs >= 1;
  for (int i = 0; i < pl.mod->nfuncs; i++) out->native = out->native && pl.mod->funcs[i]->cuda_src;
  out->strategy = pl.strategy;
  out->vtile = pl.vtile, out->vtiles = pl.vtiles;
  snprintf(out->name, sizeof out->name, "%s", pl.mod->funcs[0]->name);
  rc = 0;
  if (nv && out->native) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    MixcCudaTarget t = {90, 232448};
    MixcCudaLaunch launch[8];
    if (!f || pl.mod->nfuncs > 8) {
      if (f) fclose(f);
      free(buf);
      rc = 1;
      goto done;
    }
    int erc = mixc_emit_cuda_module(f, pl.mod, &t, 0, launch, err, sizeof err);
    fclose(f);
    MixcCubin cb;
    memset(&cb, 0, sizeof cb);
    if (erc) {
      printf("  emit %s: %s\n", rm->name, err);
      rc = 1;
    } else if (mixc_nvrtc_compile(nv, buf, "rec_lowered.cu", 90, &cb, err, sizeof err)) {
      printf("  nvrtc %s: %s\n", rm->name, err);
      rc = 1;
    } else if (launch[0].threads < 32 || launch[0].smem_bytes != 0) {
      printf("  %s: launch %u threads, %u B dynamic shared memory\n", rm->name,
             launch[0].threads, launch[0].smem_bytes);
      rc = 1;
    }
    mixc_cubin_release(&cb);
    free(buf);
  }
done:
  free(dims), free(dtype), free(present), free(want);
  return rc;
}

static void lowering_checks(MixcNvrtc *nv) {
  static const struct {
    const char *file, *mixer;
    int form;
  } ms[] = {
      {"bench/gpu/mixers.mix", "simple_gla", 1}, {"bench/gpu/mixers.mix", "gla", 1},
      {"bench/gpu/mixers.mix", "delta", 1},      {"bench/gpu/mixers.mix", "gated_delta", 1},
      {"examples/retnet.mix", NULL, 1},          {"examples/linear_attn.mix", NULL, 1},
      {"examples/gla.mix", NULL, 1},             {"examples/delta.mix", NULL, 1},
      {"examples/gated_delta.mix", NULL, 1},     {"examples/mamba2.mix", NULL, 0},
  };
  for (size_t w = 0; w < sizeof ms / sizeof *ms; w++) {
    Compilation comp;
    if (!compile_file(&comp, ms[w].file)) { /* prints the FAIL line */
      failed++;
      continue;
    }
    for (int k = 0; k < comp.rec->nmixers; k++) {
      const RecMixer *rm = comp.rec->mixers[k];
      if (ms[w].mixer && strcmp(rm->name, ms[w].mixer)) continue;
      char what[400];
      Lowered lo;
      /* recurrent strategy, bf16 and f32, B H = 16 (8 tiles of 16) and 264 (one of 128) */
      for (int f32 = 0; f32 < 2; f32++)
        for (int big = 0; big < 2; big++) {
          int rc = lower_one(rm, &comp.arena, f32 ? KT_F32 : KT_BF16, STRAT_RECURRENT, 0,
                             big ? 264 : 16, big ? 128 : 100, f32 || big ? NULL : nv, &lo);
          int64_t V = big ? 128 : 100, wt = big ? 128 : 16;
          int ok = rc == 0 && lo.native == ms[w].form && lo.strategy == STRAT_RECURRENT &&
                   (!lo.native || (lo.vtile == wt && lo.vtiles == (V + wt - 1) / wt));
          snprintf(what, sizeof what,
                   "%s %s: recurrent strategy, %s, bh %d, V %lld: %s kernel %s, vtile %lld x "
                   "%lld%s",
                   ms[w].file, rm->name, f32 ? "f32" : "bf16", big ? 264 : 16, (long long)V,
                   lo.native ? "the hand-structured" : "the KIR", lo.name, (long long)lo.vtile,
                   (long long)lo.vtiles, !f32 && !big && nv && lo.native ? ", NVRTC sm_90a" : "");
          check(ok, what);
          if (ok) printf("ok   %s\n", what);
        }
      if (!ms[w].form) continue;
      /* auto: short calls the recurrent kernel (f32 too), long or unknown the chunk kernels */
      const int64_t toks[3] = {1, LOWER_SHORT_TOKENS, 0};
      for (int i = 0; i < 3; i++)
        for (int f32 = 0; f32 < 2; f32++) {
          int rc = lower_one(rm, &comp.arena, f32 ? KT_F32 : KT_BF16, STRAT_AUTO, toks[i], 128,
                             128, NULL, &lo);
          int want_rec = toks[i] > 0;
          int ok = rc == 0 && (want_rec ? lo.native && lo.strategy == STRAT_RECURRENT
                                        : lo.strategy == STRAT_CHUNK);
          snprintf(what, sizeof what, "%s %s: auto, %s, tokens hint %lld: %s strategy%s",
                   ms[w].file, rm->name, f32 ? "f32" : "bf16", (long long)toks[i],
                   strategy_name(lo.strategy), lo.native ? " (hand-structured)" : "");
          check(ok, what);
          if (ok) printf("ok   %s\n", what);
        }
    }
    compilation_free(&comp);
  }
}

/* ---- MIXC_REC_BENCH ---- */

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

enum { NRUN = 30 };

/* The median of NRUN timed launches (3 warm-up) of kernel set k over `items` items, args
 * rotated through nrot state buffers (h0 = ht = rot[i % nrot], the step in place). ms, or -1. */
static float time_launches(const ChunkKern *k, Args *args, int64_t items, MixcDevPtr *rot,
                           int nrot, float *scratch) {
  char err[1024];
  MixcCudaEvent *ev[2 * NRUN] = {0};
  float ms[NRUN];
  int bad = 0;
  for (int i = 0; i < 2 * NRUN && !bad; i++) bad = mixc_cuda_event_create(g_cuda, &ev[i], err, sizeof err);
  for (int i = 0; i < 3 + NRUN && !bad; i++) {
    MixcDevPtr st = rot[i % nrot];
    args->ptrs[P_H0] = args->ptrs[P_HT] = (void *)(uintptr_t)st;
    int timed = i >= 3;
    if (timed) bad = mixc_cuda_event_record(g_cuda, ev[2 * (i - 3)], NULL, err, sizeof err);
    if (!bad) bad = chunk_kern_launch(g_cuda, k, args, items, items, scratch, err, sizeof err);
    if (!bad && timed) bad = mixc_cuda_event_record(g_cuda, ev[2 * (i - 3) + 1], NULL, err, sizeof err);
  }
  if (!bad) bad = mixc_cuda_synchronize(g_cuda, err, sizeof err);
  for (int i = 0; i < NRUN && !bad; i++)
    bad = mixc_cuda_event_elapsed(g_cuda, ev[2 * i], ev[2 * i + 1], &ms[i], err, sizeof err);
  for (int i = 0; i < 2 * NRUN; i++)
    if (ev[i]) mixc_cuda_event_destroy(g_cuda, ev[i]);
  if (bad) {
    printf("  bench: %s\n", err);
    return -1;
  }
  qsort(ms, NRUN, sizeof *ms, cmp_float);
  return ms[NRUN / 2];
}

typedef struct BenchMixer {
  const char *name;
  CudaChunkKind kind;
  int has_g, beta;
} BenchMixer;

static const BenchMixer bench_mixers[4] = {
    {"simple_gla", CCK_SCALAR, 1, 0},
    {"gla", CCK_DIAG, 1, 0},
    {"delta", CCK_DELTA, 0, 1},
    {"gated_delta", CCK_DELTA, 1, 1},
};

/* Device buffers for B, T, H = 16, K = V = 128 (bf16 q, k, v, o; f32 g, beta), with nrot
 * rotating states of N H K V floats; values about 0.0115 (bytes 0x3c), gates -0.023. */
typedef struct BenchData {
  MixcDevPtr q, k, v, g, bt, o, rot[256];
  int nrot;
} BenchData;

static void bench_free(BenchData *d) {
  char err[256];
  MixcDevPtr ps[] = {d->q, d->k, d->v, d->g, d->bt, d->o};
  for (int i = 0; i < 6; i++)
    if (ps[i]) mixc_cuda_free(g_cuda, ps[i], err, sizeof err);
  for (int i = 0; i < d->nrot; i++)
    if (d->rot[i]) mixc_cuda_free(g_cuda, d->rot[i], err, sizeof err);
  memset(d, 0, sizeof *d);
}

static int bench_alloc(BenchData *d, int64_t B, int64_t T, Args *args) {
  char err[1024];
  const int64_t H = 16, K = 128, V = 128;
  memset(d, 0, sizeof *d);
  size_t nqk = (size_t)(B * T * H * K), nv = (size_t)(B * T * H * V), ng = (size_t)(B * T * H * K);
  size_t sbytes = (size_t)(B * H * K * V) * 4;
  d->nrot = (int)((150u << 20) / sbytes + 1);
  if (d->nrot < 2) d->nrot = 2;
  if (d->nrot > 256) d->nrot = 256;
  int bad = mixc_cuda_alloc(g_cuda, nqk * 2, &d->q, err, sizeof err) ||
            mixc_cuda_alloc(g_cuda, nqk * 2, &d->k, err, sizeof err) ||
            mixc_cuda_alloc(g_cuda, nv * 2, &d->v, err, sizeof err) ||
            mixc_cuda_alloc(g_cuda, ng * 4, &d->g, err, sizeof err) ||
            mixc_cuda_alloc(g_cuda, (size_t)(B * T * H) * 4, &d->bt, err, sizeof err) ||
            mixc_cuda_alloc(g_cuda, nv * 2, &d->o, err, sizeof err);
  for (int i = 0; i < d->nrot && !bad; i++)
    bad = mixc_cuda_alloc(g_cuda, sbytes, &d->rot[i], err, sizeof err) ||
          mixc_cuda_memset8(g_cuda, d->rot[i], 0x3c, sbytes, err, sizeof err);
  if (!bad)
    bad = mixc_cuda_memset8(g_cuda, d->q, 0x3c, nqk * 2, err, sizeof err) ||
          mixc_cuda_memset8(g_cuda, d->k, 0x3c, nqk * 2, err, sizeof err) ||
          mixc_cuda_memset8(g_cuda, d->v, 0x3c, nv * 2, err, sizeof err) ||
          mixc_cuda_memset8(g_cuda, d->g, 0xbc, ng * 4, err, sizeof err) ||
          mixc_cuda_memset8(g_cuda, d->bt, 0x3c, (size_t)(B * T * H) * 4, err, sizeof err);
  if (bad) {
    printf("  bench: %s\n", err);
    bench_free(d);
    return 1;
  }
  memset(args, 0, sizeof *args);
  args->ptrs[P_Q] = (void *)(uintptr_t)d->q, args->ptrs[P_K] = (void *)(uintptr_t)d->k;
  args->ptrs[P_V] = (void *)(uintptr_t)d->v, args->ptrs[P_G] = (void *)(uintptr_t)d->g;
  args->ptrs[P_BETA] = (void *)(uintptr_t)d->bt, args->ptrs[P_O] = (void *)(uintptr_t)d->o;
  args->ints[I_B] = B, args->ints[I_T] = T, args->ints[I_H] = H, args->ints[I_N] = B;
  int64_t s4[4] = {T * H * K, H * K, K, 1}, s3[4] = {T * H, H, 1, 0};
  for (int i = 0; i < 4; i++) {
    args->ints[S_Q + i] = args->ints[S_K + i] = args->ints[S_V + i] = args->ints[S_O + i] = s4[i];
    args->ints[S_H0 + i] = args->ints[S_HT + i] = (int64_t[4]){H * K * V, K * V, V, 1}[i];
    if (i < 3) args->ints[S_BETA + i] = s3[i];
  }
  return 0;
}

static void bench_shape(const BenchMixer *bm, CudaChunkShape *s, int64_t vtile, unsigned threads) {
  Case c = {bm->name, bm->kind, bm->has_g ? CCG_INPUT : -1, bm->beta, 128, 128, vtile,
            KT_BF16, KT_BF16, KT_F32, 1, 1, 0, 0, 0, threads, 0};
  fill_shape(&c, s);
}

static void bench_set_gstrides(Args *args, const BenchMixer *bm, int64_t T) {
  const int64_t H = 16, K = 128;
  int64_t s4[4] = {T * H * K, H * K, K, 1}, s3[4] = {T * H, H, 1, 0};
  for (int i = 0; i < 4; i++) args->ints[S_G + i] = bm->kind == CCK_DIAG ? s4[i] : s3[i];
}

static void bench_decode(int *idx) {
  const int64_t H = 16, K = 128, V = 128;
  const int64_t Bs[2] = {1, 64};
  for (int bi = 0; bi < 2; bi++) {
    int64_t B = Bs[bi];
    BenchData d;
    Args args;
    if (bench_alloc(&d, B, 1, &args)) continue;
    int64_t bh = 1;
    while (bh < B * H) bh *= 2;
    if (bh > 264) bh = 264; /* the runtime's split hint on 132 SMs */
    const double bytes = 2.0 * (double)(B * H * K * V) * 4;
    for (int m = 0; m < 4; m++) {
      const BenchMixer *bm = &bench_mixers[m];
      bench_set_gstrides(&args, bm, 1);
      int64_t vt_def = cuda_rec_vtile(V, bh, 264);
      /* (value tile, threads, blocks an SM for __launch_bounds__); 0: the lowering's choice.
       * The first is the lowering's kernel; a tile equal to the default is timed once. */
      static const struct {
        int64_t vtile;
        unsigned threads;
        int minb, plain;
      } cfg[] = {{0, 0, 0, 0},  {0, 0, 1, 0},   {0, 0, 0, 1},  {0, 0, 1, 1},   {0, 128, 0, 0},
                 {0, 128, 4, 0}, {0, 256, 0, 0}, {0, 512, 0, 0}, {0, 512, 2, 0}, {16, 0, 0, 0},
                 {32, 0, 0, 0}, {64, 0, 0, 0},  {64, 0, 3, 0},  {64, 0, 4, 0},  {128, 0, 0, 0}};
      for (size_t ci = 0; ci < sizeof cfg / sizeof cfg[0]; ci++) {
        int64_t vt = cfg[ci].vtile ? cfg[ci].vtile : vt_def;
        if (ci > 0 && cfg[ci].vtile == vt_def && !cfg[ci].threads && !cfg[ci].minb &&
            !cfg[ci].plain)
          continue;
        CudaChunkShape s;
        bench_shape(bm, &s, vt, cfg[ci].threads);
        s.minb = cfg[ci].minb;
        s.plain_state = cfg[ci].plain;
        char name[64];
        snprintf(name, sizeof name, "mixc_rec_bench%d", (*idx)++);
        ChunkKern kn;
        if (load_shape(&s, name, &kn)) {
          printf("  bench %s: vtile %lld threads %u: no kernel\n", bm->name, (long long)vt,
                 cfg[ci].threads);
          continue;
        }
        float ms = time_launches(&kn, &args, B * H * s.vtiles, d.rot, d.nrot, NULL);
        if (ms > 0)
          printf("  bench decode %-11s B %2lld T 1 H 16 K=V=128 bf16: %8.2f us, %.2f TB/s "
                 "state read+write, vtile %3lld x %lld, %u threads, min blocks an SM %s%s%s\n",
                 bm->name, (long long)B, ms * 1e3, bytes / (ms * 1e-3) / 1e12, (long long)vt,
                 (long long)s.vtiles, kn.threads[0],
                 cfg[ci].minb ? (char[2]){(char)('0' + cfg[ci].minb), 0} : "default",
                 cfg[ci].plain ? ", plain state loads / stores" : "",
                 ci == 0 ? " (the lowering's)" : "");
        mixc_cuda_module_free(kn.mod);
      }
    }
    bench_free(&d);
  }
}

/* B = 8, T in {8, 16, 32, 64}: the recurrent kernel next to the chunk kernel, states in place */
static void bench_short(int *idx) {
  const int64_t B = 8, H = 16, V = 128;
  const int64_t Ts[4] = {8, 16, 32, 64};
  for (int ti = 0; ti < 4; ti++) {
    int64_t T = Ts[ti];
    BenchData d;
    Args args;
    if (bench_alloc(&d, B, T, &args)) continue;
    for (int m = 0; m < 4; m++) {
      const BenchMixer *bm = &bench_mixers[m];
      bench_set_gstrides(&args, bm, T);
      float t_rec = -1, t_chunk = -1;
      CudaChunkShape s;
      bench_shape(bm, &s, cuda_rec_vtile(V, B * H, 264), 0);
      char name[64];
      snprintf(name, sizeof name, "mixc_rec_bench%d", (*idx)++);
      ChunkKern kn;
      if (!load_shape(&s, name, &kn)) {
        t_rec = time_launches(&kn, &args, B * H * s.vtiles, d.rot, d.nrot, NULL);
        mixc_cuda_module_free(kn.mod);
      }
      /* the chunk kernel: C = 64, unsplit (B H = 128 pairs fill 3/4 of 132 SMs) */
      CudaChunkShape cs = s;
      cs.vtile = V, cs.vtiles = 1, cs.chunk = 64, cs.segs = 1, cs.threads = 0;
      snprintf(name, sizeof name, "mixc_rec_bench%d", (*idx)++);
      char *src = NULL;
      memset(&kn, 0, sizeof kn);
      const MixcCudaInfo *in = mixc_cuda_info(g_cuda);
      char err[4096] = "it does not print";
      if (chunk_kern_print(&cs, name, in->arch, in->max_smem_per_block_optin, g_prelude, CK_NPTRS,
                           CK_NINTS, &src, &kn) == 0 &&
          mixc_cuda_compile(g_cuda, src, "test_lower_cuda_rec_chunk.cu", &kn.mod, NULL, NULL, err,
                            sizeof err) == 0 &&
          mixc_cuda_function(kn.mod, kn.name[0], &kn.fn[0], err, sizeof err) == 0)
        t_chunk = time_launches(&kn, &args, B * H, d.rot, d.nrot, NULL);
      else
        printf("  bench %s: the chunk kernel: %s\n", bm->name, err);
      free(src);
      if (kn.mod) mixc_cuda_module_free(kn.mod);
      printf("  bench short %-11s B 8 T %2lld H 16 K=V=128 bf16: recurrent %8.2f us (vtile %lld), "
             "chunk %8.2f us: %s\n",
             bm->name, (long long)T, t_rec * 1e3, (long long)s.vtile, t_chunk * 1e3,
             t_rec > 0 && t_chunk > 0 ? (t_rec < t_chunk ? "recurrent faster" : "chunk faster")
                                      : "?");
    }
    bench_free(&d);
  }
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* mixc_step through the public API: gated_delta of bench/gpu/mixers.mix, B = 1, H = 16,
 * K = V = 128, bf16, the state in place. Host time a call (the call returns before the
 * kernel ends) and the wall time a call of 200 back-to-back calls (synchronised at the end). */
static void bench_api_step(void) {
  size_t n;
  char *src = read_file("bench/gpu/mixers.mix", &n);
  if (!src) return;
  mixc_error e;
  mixc_context *ctx = NULL;
  mixc_module *mod = NULL;
  mixc_kernel *k = NULL;
  char err[512];
  const int64_t H = 16, K = 128, V = 128;
  MixcDevPtr q = 0, kk = 0, v = 0, g = 0, bt = 0, o = 0, st = 0;
  if (mixc_context_create(1, &ctx, &e) || mixc_module_compile(ctx, src, n, "mixers.mix", &mod, &e)) {
    printf("  bench api: %s\n", e.message);
    goto done;
  }
  mixc_dim dims[2] = {{"K", K}, {"V", V}};
  mixc_kernel_options opt;
  memset(&opt, 0, sizeof opt);
  opt.mixer = "gated_delta";
  opt.dims = dims, opt.ndims = 2;
  opt.device = MIXC_CUDA;
  if (mixc_kernel_create(mod, &opt, &k, &e)) {
    printf("  bench api: %s\n", e.message);
    goto done;
  }
  if (mixc_cuda_alloc(g_cuda, (size_t)(H * K) * 2, &q, err, sizeof err) ||
      mixc_cuda_alloc(g_cuda, (size_t)(H * K) * 2, &kk, err, sizeof err) ||
      mixc_cuda_alloc(g_cuda, (size_t)(H * V) * 2, &v, err, sizeof err) ||
      mixc_cuda_alloc(g_cuda, (size_t)H * 4, &g, err, sizeof err) ||
      mixc_cuda_alloc(g_cuda, (size_t)H * 4, &bt, err, sizeof err) ||
      mixc_cuda_alloc(g_cuda, (size_t)(H * V) * 2, &o, err, sizeof err) ||
      mixc_cuda_alloc(g_cuda, (size_t)(H * K * V) * 4, &st, err, sizeof err) ||
      mixc_cuda_memset8(g_cuda, q, 0x3c, (size_t)(H * K) * 2, err, sizeof err) ||
      mixc_cuda_memset8(g_cuda, kk, 0x3c, (size_t)(H * K) * 2, err, sizeof err) ||
      mixc_cuda_memset8(g_cuda, v, 0x3c, (size_t)(H * V) * 2, err, sizeof err) ||
      mixc_cuda_memset8(g_cuda, g, 0xbc, (size_t)H * 4, err, sizeof err) ||
      mixc_cuda_memset8(g_cuda, bt, 0x3c, (size_t)H * 4, err, sizeof err) ||
      mixc_cuda_memset8(g_cuda, st, 0x3c, (size_t)(H * K * V) * 4, err, sizeof err)) {
    printf("  bench api: %s\n", err);
    goto done;
  }
  {
    int64_t sh_k[4] = {1, 1, H, K}, sh_v[4] = {1, 1, H, V}, sh_g[3] = {1, 1, H};
    int64_t sh_s[4] = {1, H, K, V};
    mixc_named_tensor in[5] = {
        {"q", mixc_tensor_contiguous((void *)(uintptr_t)q, MIXC_BF16, 4, sh_k)},
        {"k", mixc_tensor_contiguous((void *)(uintptr_t)kk, MIXC_BF16, 4, sh_k)},
        {"v", mixc_tensor_contiguous((void *)(uintptr_t)v, MIXC_BF16, 4, sh_v)},
        {"g", mixc_tensor_contiguous((void *)(uintptr_t)g, MIXC_F32, 3, sh_g)},
        {"beta", mixc_tensor_contiguous((void *)(uintptr_t)bt, MIXC_F32, 3, sh_g)},
    };
    mixc_named_tensor out[1] = {{"o", mixc_tensor_contiguous((void *)(uintptr_t)o, MIXC_BF16, 4, sh_v)}};
    mixc_named_tensor sts[1] = {{"S", mixc_tensor_contiguous((void *)(uintptr_t)st, MIXC_F32, 4, sh_s)}};
    mixc_args a;
    memset(&a, 0, sizeof a);
    a.inputs = in, a.ninputs = 5, a.outputs = out, a.noutputs = 1;
    for (int i = 0; i < 5; i++) /* the variant compiled, the workspace made */
      if (mixc_step(k, &a, sts, 1, &e) || (i == 0 && mixc_kernel_wait_ready(k, &e))) {
        printf("  bench api: mixc_step: %s\n", e.message);
        goto done;
      }
    mixc_cuda_synchronize(g_cuda, err, sizeof err);
    enum { NCALL = 200 };
    double host[NCALL];
    double w0 = now_us();
    for (int i = 0; i < NCALL; i++) {
      double t0 = now_us();
      if (mixc_step(k, &a, sts, 1, &e)) {
        printf("  bench api: mixc_step: %s\n", e.message);
        goto done;
      }
      host[i] = now_us() - t0;
    }
    mixc_cuda_synchronize(g_cuda, err, sizeof err);
    double wall = (now_us() - w0) / NCALL;
    /* each call then a synchronisation: the latency of one step, end to end */
    double lat[NCALL];
    for (int i = 0; i < NCALL; i++) {
      double t0 = now_us();
      if (mixc_step(k, &a, sts, 1, &e) || mixc_cuda_synchronize(g_cuda, err, sizeof err)) {
        printf("  bench api: mixc_step: %s\n", e.message);
        goto done;
      }
      lat[i] = now_us() - t0;
    }
    for (int i = 1; i < NCALL; i++) /* sort */
      for (int j = i; j > 0 && host[j] < host[j - 1]; j--) {
        double x = host[j];
        host[j] = host[j - 1], host[j - 1] = x;
      }
    for (int i = 1; i < NCALL; i++)
      for (int j = i; j > 0 && lat[j] < lat[j - 1]; j--) {
        double x = lat[j];
        lat[j] = lat[j - 1], lat[j - 1] = x;
      }
    int nv = 0;
    mixc_kernel_compile_ms(k, &nv);
    printf("  bench api mixc_step gated_delta B 1 T 1 H 16 K=V=128 bf16: host %.2f us a call "
           "(median; min %.2f), %.2f us a call over %d back-to-back calls, %.2f us a call "
           "synchronised after each (median; min %.2f) (%d variant%s)\n",
           host[NCALL / 2], host[0], wall, NCALL, lat[NCALL / 2], lat[0], nv, nv == 1 ? "" : "s");
  }
done:
  mixc_kernel_destroy(k);
  mixc_module_destroy(mod);
  mixc_context_destroy(ctx);
  MixcDevPtr ps[] = {q, kk, v, g, bt, o, st};
  for (int i = 0; i < 7; i++)
    if (ps[i]) mixc_cuda_free(g_cuda, ps[i], err, sizeof err);
  free(src);
}

/* The host part of a call, without a GPU: mixc_step of gated_delta (bench/gpu/mixers.mix,
 * K = V = 16, B = H = T = 1, f32) on the CPU backend of a one-thread context (the work items
 * run on the calling thread): the argument checks, the spec and key, the variant lookup, the
 * tables and the (tiny) kernel. Median of 2000 calls. Builds without LLVM say so. */
static void bench_host_cpu(void) {
  size_t n;
  char *src = read_file("bench/gpu/mixers.mix", &n);
  if (!src) return;
  mixc_error e;
  mixc_context *ctx = NULL;
  mixc_module *mod = NULL;
  mixc_kernel *k = NULL;
  float q[16], kk[16], v[16], g = -0.1f, bt = 0.5f, o[16], st[256];
  for (int i = 0; i < 16; i++) q[i] = kk[i] = v[i] = 0.1f * (float)(i % 5);
  for (int i = 0; i < 256; i++) st[i] = 0.01f;
  int64_t sh_k[4] = {1, 1, 1, 16}, sh_g[3] = {1, 1, 1}, sh_s[4] = {1, 1, 16, 16};
  mixc_named_tensor in[5] = {
      {"q", mixc_tensor_contiguous(q, MIXC_F32, 4, sh_k)},
      {"k", mixc_tensor_contiguous(kk, MIXC_F32, 4, sh_k)},
      {"v", mixc_tensor_contiguous(v, MIXC_F32, 4, sh_k)},
      {"g", mixc_tensor_contiguous(&g, MIXC_F32, 3, sh_g)},
      {"beta", mixc_tensor_contiguous(&bt, MIXC_F32, 3, sh_g)},
  };
  mixc_named_tensor out[1] = {{"o", mixc_tensor_contiguous(o, MIXC_F32, 4, sh_k)}};
  mixc_named_tensor sts[1] = {{"S", mixc_tensor_contiguous(st, MIXC_F32, 4, sh_s)}};
  mixc_args a;
  memset(&a, 0, sizeof a);
  a.inputs = in, a.ninputs = 5, a.outputs = out, a.noutputs = 1;
  mixc_dim dims[2] = {{"K", 16}, {"V", 16}};
  mixc_kernel_options opt;
  memset(&opt, 0, sizeof opt);
  opt.mixer = "gated_delta";
  opt.dims = dims, opt.ndims = 2;
  opt.device = MIXC_CPU;
  if (mixc_context_create(1, &ctx, &e) ||
      mixc_module_compile(ctx, src, n, "mixers.mix", &mod, &e) ||
      mixc_kernel_create(mod, &opt, &k, &e) || mixc_step(k, &a, sts, 1, &e)) {
    printf("  bench host (CPU backend): %s\n", e.message);
  } else {
    enum { NCALL = 2000 };
    static double t[NCALL];
    for (int i = 0; i < NCALL; i++) {
      double t0 = now_us();
      mixc_step(k, &a, sts, 1, &e);
      t[i] = now_us() - t0;
    }
    for (int i = 1; i < NCALL; i++)
      for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
        double x = t[j];
        t[j] = t[j - 1], t[j - 1] = x;
      }
    printf("  bench host mixc_step gated_delta on the CPU backend, K=V=16, B=H=T=1, 1 thread: "
           "%.2f us a call (median of %d; min %.2f, 90th percentile %.2f)\n",
           t[NCALL / 2], NCALL, t[0], t[NCALL * 9 / 10]);
  }
  mixc_kernel_destroy(k);
  mixc_module_destroy(mod);
  mixc_context_destroy(ctx);
  free(src);
}

int main(int argc, char **argv) {
  MixcRng rng;
  unsigned long long seed = ck_start(argc, argv, &rng);
  printf("test_lower_cuda_rec: seed %llu\n", seed);
  char err[4096];
  /* the CUDA prelude: an empty module printed for NVRTC */
  g_prelude = ck_prelude();
  if (!g_prelude) return 1;
  const KType BF = KT_BF16, F16 = KT_F16, F32 = KT_F32;
  const int IN = CCG_INPUT, PAR = CCG_PARAM, CON = CCG_CONST;
  const CudaChunkKind SC = CCK_SCALAR, DG = CCK_DIAG, DL = CCK_DELTA;
  const Case cases[] = {
      /* what, kind, gmode, beta, K, V, vtile, in, out, gt, h0, ht, varlen, scale_param,
       * stress, threads, expect */
      {"simple_gla f32 K=V=128 vtile 16, h0, ht", SC, IN, 0, 128, 128, 16, F32, F32, F32, 1, 1,
       0, 0, 0, 0, 0},
      {"simple_gla bf16 K=V=128 vtile 64, gate stress", SC, IN, 0, 128, 128, 64, BF, BF, F32, 1,
       1, 0, 0, 1, 0, 0},
      {"linear_attn f16 (no gate) K=24 V=100 vtile 32, ht", SC, -1, 0, 24, 100, 32, F16, F16,
       F32, 0, 1, 0, 0, 0, 0, 0},
      {"retnet bf16 (constant gate) K=16 V=24, h0, f32 out", SC, CON, 0, 16, 24, 24, BF, F32, F32,
       1, 0, 0, 0, 0, 0, 0},
      {"scalar gate param f32 K=100 V=16, h0, ht, scale param, varlen int32", SC, PAR, 0, 100,
       16, 16, F32, BF, F32, 1, 1, 1, 1, 0, 0, 0},
      {"gla bf16 K=V=128 vtile 16, h0, ht", DG, IN, 0, 128, 128, 16, BF, BF, F32, 1, 1, 0, 0, 0,
       0, 0},
      {"gla f32 K=128 V=100 vtile 64, gate stress, ht, 128 threads", DG, IN, 0, 128, 100, 64, F32,
       F32, F32, 0, 1, 0, 0, 1, 128, 0},
      {"gla f16 K=24 V=16, f16 gates, h0, ht, varlen int64", DG, IN, 0, 24, 16, 16, F16, F16, F16,
       1, 1, 2, 0, 0, 0, 0},
      {"delta bf16 K=V=128 vtile 16, h0, ht", DL, -1, 1, 128, 128, 16, BF, BF, F32, 1, 1, 0, 0,
       0, 0, 0},
      {"delta f32 K=V=16 (no beta), ht", DL, -1, 0, 16, 16, 16, F32, F32, F32, 0, 1, 0, 0, 0, 0,
       0},
      {"gated_delta bf16 K=V=128 vtile 64, h0, ht, scale param", DL, IN, 1, 128, 128, 64, BF, BF,
       F32, 1, 1, 0, 1, 0, 0, 0},
      {"gated_delta f32 K=128 V=100 vtile 128, gate stress, h0, ht, 512 threads", DL, IN, 1, 128,
       100, 128, F32, F32, F32, 1, 1, 0, 0, 1, 512, 0},
      {"gated_delta f16 K=100 V=24 vtile 16, bf16 gates, varlen int32, h0, ht", DL, IN, 1, 100,
       24, 16, F16, F16, BF, 1, 1, 1, 0, 0, 0, 0},
      {"gated_delta bf16 K=24 V=128 vtile 32, varlen int64, gate stress, ht", DL, IN, 1, 24, 128,
       32, BF, F32, F32, 0, 1, 2, 0, 1, 0, 0},
      {"vtile 256 (outside the form)", SC, IN, 0, 128, 256, 256, BF, BF, F32, 0, 0, 0, 0, 0, 0,
       -1},
      {"K=1024 (outside the form)", SC, IN, 0, 1024, 64, 64, BF, BF, F32, 0, 0, 0, 0, 0, 0, -1},
  };
  const int ncases = (int)(sizeof cases / sizeof cases[0]);
  MixcNvrtc *nv = NULL;
  g_cuda = ck_open_gpu(&failed, &skipped, err, sizeof err);
  if (!g_cuda) {
    if (mixc_nvrtc_open(0, &nv, err, sizeof err)) {
      printf("no NVRTC: %s\n", err);
      nv = NULL;
    } else {
      mixc_nvrtc_set_cache_dir(nv, NULL, err, sizeof err);
    }
  } else {
    nv = mixc_cuda_nvrtc(g_cuda);
    mixc_nvrtc_set_cache_dir(nv, NULL, err, sizeof err);
  }
  lowering_checks(nv);
  if (!g_cuda && nv) { /* NVRTC alone: every case printed for an H100 and compiled */
    for (int i = 0; i < ncases; i++) {
      char name[64], what[400];
      snprintf(name, sizeof name, "mixc_rec_k%d", i);
      CudaChunkShape s;
      fill_shape(&cases[i], &s);
      char *src = NULL;
      unsigned threads = 0, smem = 0;
      int rc = print_shape(&s, name, 90, &src, &threads, &smem);
      if (rc == 0) rc = ck_nvrtc(nv, src, "test_lower_cuda_rec.cu", 90, NULL, NULL);
      snprintf(what, sizeof what, "%s: printed, NVRTC sm_90a (%d, expected %d; %u threads)",
               cases[i].what, rc, cases[i].expect, threads);
      check(rc == cases[i].expect, what);
      if (rc == cases[i].expect) printf("ok   %s\n", what);
      free(src);
    }
  }
  if (!g_cuda && nv) mixc_nvrtc_close(nv);
  const char *bench = getenv("MIXC_REC_BENCH");
  if (bench && *bench && strcmp(bench, "0")) bench_host_cpu();
  if (g_cuda) {
    for (int i = 0; i < ncases; i++) run_case(&cases[i], &rng, i);
    if (bench && *bench && strcmp(bench, "0")) {
      int idx = 0;
      bench_decode(&idx);
      bench_short(&idx);
      bench_api_step();
    }
    mixc_cuda_close(g_cuda);
  }
  free(g_prelude);
  printf("test_lower_cuda_rec: %d passed, %d failed, %d skipped\n", passed, failed, skipped);
  if (failed) return 1;
  return g_cuda ? 0 : 77;
}
#endif
