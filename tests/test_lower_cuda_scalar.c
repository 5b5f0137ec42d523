/* The scalar-decay and diagonal-decay hand-structured CUDA chunk kernels
 * (compiler/lower_cuda_scalar.c, cuda_chunk_scalar_source) on shapes filled by hand, on a GPU.
 *
 * Each case's kernel, after the CUDA prelude (an empty module printed with MIXC_C_CUDA) and its
 * argument struct, is printed for the device and compiled by NVRTC (shapes outside the form
 * must give -1), launched through the loader in two launches (items [0, m) and [m, n), to
 * exercise `begin`) on fresh random inputs with non-contiguous strides (q padded, k head-major,
 * o padded with its padding poisoned and checked untouched; the stress cases read q and v with
 * element stride 2), outputs and final states poisoned with NaN, and compared with an fp64
 * token recurrence written here (S = diag(e^g) S + k v^T; o = scale S^T q) over the same
 * 16-bit inputs, the error relative to max |ref| of each tensor: outputs 1e-2, final states
 * 5e-3. Cases: scalar gate as input, as param, as the param's default (RetNet), absent
 * (linear attention); per-channel gates (GLA); varlen (int32 / int64 cu_seqlens), initial and
 * final states, value splits (V = 128 in 48-column and 16-column tiles, V = 100 in 32-column
 * tiles), K = V = 64 f16, GLA at K = 256 (its scaled operands in registers), gate stress
 * (g in {-30, 0, -1e-4, U(-3, 0)}).
 * Exit 77 without a GPU (MIXC_TEST_REQUIRE_GPU=1 makes that a failure). argv[1] replays a
 * seed. MIXC_SCALAR_BENCH=1 also times the fused kernel of simple_gla and gla of
 * bench/gpu/mixers.mix (bf16, H 16, K = V = 128, g f32) at (B, T) = (8, 2048) with the split
 * lower_mixer chooses for KernelSpec.gpu (bh = B H, target_items 264; the other shapes of the
 * benchmark take the sequence split, timed by bench/gpu): the median of 25 launches, each
 * between its own two events, over inputs of 64 MiB or more per tensor (past the 50 MiB L2);
 * MIXC_SCALAR_BENCH=2 also times the value splits 128, 64, 32, 16 at (8, 2048), (2, 8192),
 * (1, 32768); with MIXC_SCALAR_PROF=1 also the kernels built with MIXC_SCALAR_PROF, their cycles
 * a chunk per phase (thread 0, barrier to barrier). MIXC_SCALAR_SEGS=N runs every case split into N sequence segments (the local,
 * combine and output kernels of lower_cuda_seg.c, their per-item storage in device memory).
 * MIXC_SCALAR_THREADS=256 prints every kernel with 256 threads a block
 * (CudaChunkShape.threads). MIXC_SCALAR_DUMP=DIR writes the sources. MIXC_SCALAR_OLD_LOCAL=1
 * prints the sequence split's local pass as the fused kernel's local mode (the older form;
 * CudaChunkShape.local_fused). MIXC_SCALAR_SPLIT_LOADS=1 (or -1) loads the next chunk's v
 * after O (or with q and k) in every kernel (CudaChunkShape.split_loads; the default splits
 * for GLA only). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>

#include "testlib_cuda.h"

#ifndef MIXC_HAVE_CUDA
int main(void) { return ck_no_cuda("test_lower_cuda_scalar"); }
#else
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends/c/c_emit.h"
#include "backends/cuda/cuda_loader.h"
#include "compiler/arena.h"
#include "compiler/compile.h"
#include "compiler/kir.h"
#include "compiler/lower.h"
#include "compiler/lower_cuda.h"
#include "compiler/rec.h"
#include "runtime/half.h"
#include "runtime/inputs.h"

static int passed, failed, skipped;
static MixcCuda *g_cuda;
static char *g_prelude;

typedef struct Case {
  const char *what;
  int diag;  /* per key channel gates */
  int gmode; /* -1 no gate, CCG_INPUT, CCG_PARAM, CCG_CONST */
  int64_t K, V, vtile, vtiles;
  KType in, out, gt;
  int h0, ht, varlen, scale_param, stress;
  int expect; /* 0 or -1 */
  int64_t B, T, H;
} Case;

/* slots of the argument tables */
enum { P_Q, P_K, P_V, P_G, P_O, P_SCALE, P_H0, P_HT, P_CU };
enum { I_B, I_T, I_H, I_N, S_Q = 4, S_K = 8, S_V = 12, S_G = 16, S_O = 22, S_SCALE = 26,
       S_H0 = 27, S_HT = 31 };

static const double G_CONST = -0.03125; /* the CCG_CONST gate */

/* MIXC_SCALAR_THREADS=256: every kernel with 256 threads a block (CudaChunkShape.threads;
 * the default is 512). MIXC_SCALAR_SEGS=N: every case split into N sequence segments (three
 * kernels, lower_cuda_seg.c). */
static unsigned g_threads;
static int g_split_loads; /* MIXC_SCALAR_SPLIT_LOADS=1 / -1: CudaChunkShape.split_loads */
static int g_old_local; /* MIXC_SCALAR_OLD_LOCAL=1: CudaChunkShape.local_fused */
static int64_t g_segs;
static int g_prof; /* load() prints the kernels with MIXC_SCALAR_PROF (the bench's phases) */
static int g_diag_exact; /* CudaChunkShape.diag_exact (MIXC_SCALAR_DIAG_EXACT=1) */

typedef ChunkKern Kern; /* tests/testlib_cuda.h */

static void fill_shape(const Case *c, CudaChunkShape *s) {
  memset(s, 0, sizeof *s);
  s->threads = g_threads;
  s->split_loads = g_split_loads;
  s->local_fused = g_old_local;
  s->diag_exact = g_diag_exact;
  s->segs = g_segs;
  s->kind = c->diag ? CCK_DIAG : CCK_SCALAR;
  s->K = c->K, s->V = c->V, s->chunk = 64, s->vtile = c->vtile, s->vtiles = c->vtiles;
  s->in_type = c->in, s->out_type = c->out, s->g_type = c->gt;
  s->has_g = c->gmode >= 0;
  s->g_mode = c->gmode >= 0 ? c->gmode : CCG_INPUT;
  s->g_const = G_CONST;
  s->p_q = P_Q, s->p_k = P_K, s->p_v = P_V, s->p_o = P_O;
  s->p_g = c->gmode == CCG_INPUT || c->gmode == CCG_PARAM ? P_G : -1;
  s->s_g = s->p_g >= 0 ? S_G : -1;
  s->p_beta = s->s_beta = -1;
  s->s_q = S_Q, s->s_k = S_K, s->s_v = S_V, s->s_o = S_O;
  s->scale = 1.0 / sqrt((double)c->K);
  s->p_scale = c->scale_param ? P_SCALE : -1, s->s_scale = c->scale_param ? S_SCALE : -1;
  s->scale_type = KT_F32;
  s->p_h0 = c->h0 ? P_H0 : -1, s->s_h0 = c->h0 ? S_H0 : -1;
  s->p_ht = c->ht ? P_HT : -1, s->s_ht = c->ht ? S_HT : -1;
  s->p_cu = c->varlen ? P_CU : -1, s->cu_type = c->varlen == 2 ? KT_I64 : KT_I32;
  s->i_B = I_B, s->i_T = I_T, s->i_H = I_H, s->i_N = I_N;
}

/* The prelude, and each kernel's argument struct and text (k: names, launches): 0, -1
 * (outside the form) or 1. */
static int print_source(const Case *c, const char *name, int arch, int optin, char **src,
                        Kern *k) {
  CudaChunkShape s;
  fill_shape(c, &s);
  int rc = chunk_kern_print(&s, name, arch, optin, g_prelude, CK_NPTRS, CK_NINTS, src, k);
  if (rc == 0) ck_dump("MIXC_SCALAR_DUMP", name, *src);
  return rc;
}

static int load(const Case *c, const char *name, Kern *k) {
  char err[4096];
  const MixcCudaInfo *in = mixc_cuda_info(g_cuda);
  char *src = NULL;
  memset(k, 0, sizeof *k);
  int rc = print_source(c, name, in->arch, in->max_smem_per_block_optin, &src, k);
  if (rc) {
    free(src);
    return rc;
  }
  if (g_prof) {
    size_t n = strlen(src) + 64;
    char *src2 = malloc(n);
    if (!src2) {
      free(src);
      return 1;
    }
    snprintf(src2, n, "#define MIXC_SCALAR_PROF 1\n%s", src);
    free(src);
    src = src2;
  }
  rc = mixc_cuda_compile(g_cuda, src, "test_lower_cuda_scalar.cu", &k->mod, NULL, NULL, err,
                         sizeof err);
  for (int i = 0; i < k->n && !rc; i++)
    rc = mixc_cuda_function(k->mod, k->name[i], &k->fn[i], err, sizeof err);
  free(src);
  if (rc) {
    printf("%s\n", err);
    if (k->mod) mixc_cuda_module_free(k->mod);
    k->mod = NULL;
    return 1;
  }
  return 0;
}

static void check(int ok, const char *what) { ck_check(ok, what, &passed, &failed); }

/* ---- host data (the value helpers and CkBuf: tests/testlib_cuda.h) ---- */

typedef CkArgs Args; /* tests/testlib_cuda.h */

static void run_case(const Case *c, MixcRng *rng, int idx) {
  char err[2048], name[64], what[300];
  snprintf(name, sizeof name, "mixc_scalar_gpu%d", idx);
  Kern kn;
  MixcDevPtr dscr = 0; /* the kernels' per-item storage (segments) */
  int rc = load(c, name, &kn);
  snprintf(what, sizeof what, "%s: printed and compiled for the device (%d, expected %d)",
           c->what, rc, c->expect);
  check(rc == c->expect, what);
  if (rc) return;
  const int64_t K = c->K, V = c->V, H = c->H, GK = c->diag ? K : 1;
  int64_t B = c->B, T = c->T, N = B, cu[8] = {0};
  if (c->varlen) {
    int64_t lens[5] = {70, 0, 130, 63, 1};
    N = 5, B = 1, T = 0;
    for (int i = 0; i < N; i++) cu[i + 1] = cu[i] + lens[i], T += lens[i];
  }
  /* layouts: q [B][T][H][K + 8], k [B][H][T][K], v [B][T][H][V], o [B][T][H][V + 4],
   * g scalar [B][T][H] strided by 2, g diag [B][H][T][K], h0/ht [N][H][K][V] */
  int64_t sq[4] = {T * H * (K + 8), H * (K + 8), K + 8, 1};
  int64_t sv[4] = {T * H * V, H * V, V, 1};
  if (c->stress) {
    int64_t s2[4] = {T * H * 2 * K, H * 2 * K, 2 * K, 2}, v2[4] = {T * H * 2 * V, H * 2 * V, 2 * V, 2};
    memcpy(sq, s2, sizeof sq), memcpy(sv, v2, sizeof sv);
  }
  int64_t sk[4] = {H * T * K, K, T * K, 1};
  int64_t so[4] = {T * H * (V + 4), H * (V + 4), V + 4, 1};
  int64_t sg[4] = {2 * T * H, 2 * H, 2, 0};
  if (c->diag) sg[0] = H * T * K, sg[1] = K, sg[2] = T * K, sg[3] = 1;
  if (c->gmode == CCG_PARAM) sg[0] = 1; /* [H]: its stride over H */
  int64_t ss[4] = {H * K * V, K * V, V, 1};
  CkBuf bq = {0}, bk = {0}, bvv = {0}, bg = {0}, bo = {0}, bsc = {0}, bh0 = {0}, bht = {0},
      bcu = {0};
  CkBuf *all[] = {&bq, &bk, &bvv, &bg, &bo, &bsc, &bh0, &bht, &bcu};
  const int nbuf = 9;
  bq.bytes = (size_t)(B * sq[0]) * 2;
  bk.bytes = (size_t)(B * sk[0]) * 2;
  bvv.bytes = (size_t)(B * sv[0]) * 2;
  bo.bytes = (size_t)(B * so[0]) * ck_tsize(c->out);
  if (c->gmode == CCG_INPUT) bg.bytes = (size_t)(B * sg[0]) * ck_tsize(c->gt);
  if (c->gmode == CCG_PARAM) bg.bytes = (size_t)H * ck_tsize(c->gt);
  if (c->scale_param) bsc.bytes = (size_t)H * 4;
  if (c->h0) bh0.bytes = (size_t)(N * ss[0]) * 4;
  if (c->ht) bht.bytes = (size_t)(N * ss[0]) * 4;
  if (c->varlen) bcu.bytes = (size_t)(N + 1) * (c->varlen == 2 ? 8 : 4);
  int bad = ck_bufs_host(all, nbuf);
  double *ref_o = calloc((size_t)(B * H * (T > 0 ? T : 1) * V) + 1, sizeof(double));
  double *ref_s = calloc((size_t)(N * H * K * V), sizeof(double));
  double *S = calloc((size_t)(K * V), sizeof(double)), *eg = calloc((size_t)K, sizeof(double));
  if (bad || !ref_o || !ref_s || !S || !eg) {
    printf("out of memory\n");
    failed++;
    goto done;
  }
  ck_poison(c->in, bq.h, (int64_t)(bq.bytes / 2));
  ck_poison(c->in, bvv.h, (int64_t)(bvv.bytes / 2));
  if (c->gmode == CCG_INPUT) ck_poison(c->gt, bg.h, (int64_t)(bg.bytes / ck_tsize(c->gt)));
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++)
      for (int64_t h = 0; h < H; h++) {
        for (int64_t i = 0; i < K; i++) {
          ck_set(c->in, bq.h, b * sq[0] + t * sq[1] + h * sq[2] + i * sq[3], mixc_rng_normal(rng));
          ck_set(c->in, bk.h, b * sk[0] + t * sk[1] + h * sk[2] + i, mixc_rng_normal(rng) / sqrt((double)K));
        }
        for (int64_t j = 0; j < V; j++)
          ck_set(c->in, bvv.h, b * sv[0] + t * sv[1] + h * sv[2] + j * sv[3], mixc_rng_normal(rng));
        if (c->gmode == CCG_INPUT)
          for (int64_t i = 0; i < GK; i++) {
            double g = -0.1 * mixc_rng_uniform(rng);
            if (c->stress == 2) /* every third row tile of 16 tokens too wide to factor */
              g = (t / 16) % 3 == 1 ? -4.0 - mixc_rng_uniform(rng) : -0.6 * mixc_rng_uniform(rng);
            else if (c->stress) {
              int r = (int)(mixc_rng_uniform(rng) * 4);
              g = r == 0 ? -30.0 : r == 1 ? 0.0 : r == 2 ? -1e-4 : -3.0 * mixc_rng_uniform(rng);
            }
            ck_set(c->gt, bg.h, b * sg[0] + t * sg[1] + h * sg[2] + i * sg[3], g);
          }
      }
  if (c->gmode == CCG_PARAM)
    for (int64_t h = 0; h < H; h++) ck_set(c->gt, bg.h, h, -0.2 * mixc_rng_uniform(rng));
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
        for (int64_t i = 0; i < K; i++) {
          double g = 0;
          if (c->gmode == CCG_INPUT)
            g = ck_get(c->gt, bg.h, b * sg[0] + t * sg[1] + h * sg[2] + (c->diag ? i : 0) * sg[3]);
          else if (c->gmode == CCG_PARAM)
            g = ck_get(c->gt, bg.h, h);
          else if (c->gmode == CCG_CONST)
            g = G_CONST;
          eg[i] = exp(g);
        }
        for (int64_t i = 0; i < K; i++) {
          double kv = ck_get(c->in, bk.h, b * sk[0] + t * sk[1] + h * sk[2] + i);
          for (int64_t j = 0; j < V; j++)
            S[i * V + j] = eg[i] * S[i * V + j] +
                           kv * ck_get(c->in, bvv.h, b * sv[0] + t * sv[1] + h * sv[2] + j * sv[3]);
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
  args.ints[I_B] = B, args.ints[I_T] = T, args.ints[I_H] = H, args.ints[I_N] = N;
  for (int d = 0; d < 4; d++) {
    args.ints[S_Q + d] = sq[d], args.ints[S_K + d] = sk[d], args.ints[S_V + d] = sv[d];
    args.ints[S_O + d] = so[d], args.ints[S_H0 + d] = ss[d], args.ints[S_HT + d] = ss[d];
    args.ints[S_G + d] = sg[d];
  }
  args.ints[S_SCALE] = 1;
  int64_t items = N * H * c->vtiles * (g_segs > 1 ? g_segs : 1), mid = items / 3;
  if (!bad && kn.item_floats > 0 &&
      mixc_cuda_alloc(g_cuda, (size_t)(items * kn.item_floats) * 4, &dscr, err, sizeof err))
    printf("%s\n", err), bad = 1;
  if (!bad)
    bad = ck_launch_fetch(g_cuda, &kn, &args, items, mid, (float *)(uintptr_t)dscr, &bo,
                          c->ht ? &bht : NULL);
  if (bad) {
    snprintf(what, sizeof what, "%s: the launch", c->what);
    check(0, what);
    goto done;
  }
  {
    const double tol_o = 1e-2, tol_s = 5e-3;
    double maxr = 0, maxe = 0;
    int64_t nan = 0, pad = 0;
    ck_err_rows(c->out, bo.h, so, B, T, H, V, 4, ref_o, &maxe, &maxr, &nan, &pad);
    double rel = ck_rel(maxe, maxr);
    printf("  %s: o max |err| / max |ref| = %.3g (max |ref| %.3g), %lld NaN/inf, %lld padding "
           "written (%d kernels, %u threads, %u B shared)\n",
           c->what, rel, maxr, (long long)nan, (long long)pad, kn.n, kn.threads[kn.n - 1],
           kn.smem[kn.n - 1]);
    snprintf(what, sizeof what, "%s: o within %g, no NaN, padding untouched", c->what, tol_o);
    check(nan == 0 && pad == 0 && rel <= tol_o, what);
    if (c->ht) {
      maxr = maxe = 0, nan = 0;
      for (int64_t e = 0; e < N * ss[0]; e++)
        ck_err_add(((float *)bht.h)[e], ref_s[e], &maxe, &maxr, &nan);
      rel = ck_rel(maxe, maxr);
      printf("  %s: ht max |err| / max |ref| = %.3g (max |ref| %.3g), %lld NaN/inf\n", c->what,
             rel, maxr, (long long)nan);
      snprintf(what, sizeof what, "%s: ht within %g, no NaN", c->what, tol_s);
      check(nan == 0 && rel <= tol_s, what);
    }
  }
done:
  ck_bufs_free(g_cuda, all, nbuf);
  free(ref_o), free(ref_s), free(S), free(eg);
  if (dscr) mixc_cuda_free(g_cuda, dscr, err, sizeof err);
  mixc_cuda_module_free(kn.mod);
}

/* The value split lower_mixer chooses for KernelSpec.gpu on a mixer of bench/gpu/mixers.mix
 * (K = V = 128, bf16 q, k, v, o, f32 g), bh = B H, 264 target items: 0 with *vtile, *vtiles. */
static int runtime_split(const char *mixer, int64_t bh, int64_t *vtile, int64_t *vtiles,
                         int64_t *segs) {
  const char *file = "bench/gpu/mixers.mix";
  FILE *f = fopen(file, "rb");
  if (!f) return 1;
  char buf[16384];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  Compilation comp;
  if (compile_source(&comp, file, buf, n, STAGE_REC)) return 1;
  int rc = 1;
  for (int k = 0; k < comp.rec->nmixers; k++) {
    const RecMixer *rm = comp.rec->mixers[k];
    if (strcmp(rm->name, mixer)) continue;
    const Mixer *m = rm->mixer;
    size_t ns = (size_t)m->nsyms + 1;
    int64_t *dims = calloc(ns, sizeof *dims);
    KType *dtype = calloc(ns, sizeof *dtype);
    unsigned char *present = calloc(ns, 1), *want = calloc(ns, 1);
    if (dims && dtype && present && want) {
      for (int s = 0; s < m->nsyms; s++) {
        const Sym *y = &m->syms[s];
        if (y->kind == SYM_DIM) dims[s] = 128;
        dtype[s] = y->kind == SYM_STATE || y->kind == SYM_PARAM || !strcmp(y->name, "g")
                       ? KT_F32
                       : KT_BF16;
        present[s] = y->kind == SYM_PARAM && !y->init;
      }
      KernelSpec sp;
      memset(&sp, 0, sizeof sp);
      sp.rm = rm, sp.dims = dims, sp.dtype = dtype, sp.present = present, sp.want = want;
      sp.cu_type = KT_I32, sp.strategy = STRAT_AUTO;
      sp.bh = bh, sp.target_items = 2 * 132;
      sp.gpu = 1, sp.gpu_arch = 90, sp.gpu_smem_optin = 232448;
      KernelPlan pl;
      char err[1024];
      if (!lower_mixer(&comp.arena, &sp, &pl, err, sizeof err) &&
          (pl.mod->nfuncs == 1 || pl.mod->nfuncs == 3) && pl.mod->funcs[0]->cuda_src) {
        *vtile = pl.vtile > 0 ? pl.vtile : 128;
        *vtiles = pl.vtiles > 0 ? pl.vtiles : 1;
        *segs = pl.segs > 1 ? pl.segs : 1;
        rc = 0;
      } else {
        printf("  bench %s: no hand-structured kernel (%s)\n", mixer, err);
      }
    }
    free(dims), free(dtype), free(present), free(want);
  }
  compilation_free(&comp);
  return rc;
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

/* Timed only (the work does not depend on the values): MIXC_SCALAR_BENCH */
static void bench(const char *mixer, int diag, int64_t B, int64_t T, int idx, int64_t vt_force) {
  char err[2048], name[64];
  const int64_t H = 16, K = 128, V = 128;
  int64_t vtile = 0, vtiles = 0, segs = 1;
  if (vt_force > 0) {
    vtile = vt_force, vtiles = (V + vt_force - 1) / vt_force;
  } else if (runtime_split(mixer, B * H, &vtile, &vtiles, &segs)) {
    printf("  bench %s: the runtime's split not found\n", mixer);
    return;
  }
  /* the runtime's sequence split unless MIXC_SCALAR_SEGS or a forced value split says */
  const int64_t segs_env = g_segs;
  if (vt_force <= 0 && g_segs <= 0) g_segs = segs;
  Case c = {mixer, diag, CCG_INPUT, K, V, vtile, vtiles, KT_BF16, KT_BF16, KT_F32,
            0, 0, 0, 0, 0, 0, B, T, H};
  snprintf(name, sizeof name, "mixc_scalar_bench%d", idx);
  Kern kn;
  int lrc = load(&c, name, &kn);
  segs = g_segs > 1 ? g_segs : 1;
  g_segs = segs_env;
  if (lrc) {
    printf("  bench %s: does not compile\n", mixer);
    return;
  }
  size_t nqk = (size_t)(B * T * H * K), nv = (size_t)(B * T * H * V);
  size_t ng = (size_t)(B * T * H * (diag ? K : 1));
  MixcDevPtr q = 0, k = 0, v = 0, g = 0, o = 0;
  int bad = mixc_cuda_alloc(g_cuda, nqk * 2, &q, err, sizeof err) ||
            mixc_cuda_alloc(g_cuda, nqk * 2, &k, err, sizeof err) ||
            mixc_cuda_alloc(g_cuda, nv * 2, &v, err, sizeof err) ||
            mixc_cuda_alloc(g_cuda, ng * 4, &g, err, sizeof err) ||
            mixc_cuda_alloc(g_cuda, nv * 2, &o, err, sizeof err);
  /* bytes 0x3c: q, k, v about 0.0115 in bf16; bytes 0xbd: g about -0.0926 in f32 (a log
   * decay of the usual size, for the work that depends on the gates' range) */
  if (!bad)
    bad = mixc_cuda_memset8(g_cuda, q, 0x3c, nqk * 2, err, sizeof err) ||
          mixc_cuda_memset8(g_cuda, k, 0x3c, nqk * 2, err, sizeof err) ||
          mixc_cuda_memset8(g_cuda, v, 0x3c, nv * 2, err, sizeof err) ||
          mixc_cuda_memset8(g_cuda, g, 0xbd, ng * 4, err, sizeof err);
  Args args;
  memset(&args, 0, sizeof args);
  args.ptrs[P_Q] = (void *)(uintptr_t)q, args.ptrs[P_K] = (void *)(uintptr_t)k;
  args.ptrs[P_V] = (void *)(uintptr_t)v, args.ptrs[P_G] = (void *)(uintptr_t)g;
  args.ptrs[P_O] = (void *)(uintptr_t)o;
  args.ints[I_B] = B, args.ints[I_T] = T, args.ints[I_H] = H, args.ints[I_N] = B;
  int64_t s4[4] = {T * H * K, H * K, K, 1}, s4v[4] = {T * H * V, H * V, V, 1};
  int64_t s3[4] = {T * H, H, 1, 0}, s4g[4] = {T * H * K, H * K, K, 1};
  for (int d = 0; d < 4; d++)
    args.ints[S_Q + d] = s4[d], args.ints[S_K + d] = s4[d], args.ints[S_V + d] = s4v[d],
    args.ints[S_O + d] = s4v[d], args.ints[S_G + d] = diag ? s4g[d] : s3[d];
  int64_t items = B * H * vtiles * segs;
  MixcDevPtr dscr = 0;
  if (!bad && kn.item_floats > 0)
    bad = mixc_cuda_alloc(g_cuda, (size_t)(items * kn.item_floats) * 4, &dscr, err, sizeof err);
  else if (!bad && g_prof) /* the phase counters (the fused kernel) */
    bad = mixc_cuda_alloc(g_cuda, 12 * 8, &dscr, err, sizeof err);
  float *scratch = (float *)(uintptr_t)dscr;
  unsigned threads = kn.threads[kn.n - 1], smem = kn.smem[kn.n - 1];
  enum { NRUN = 25 };
  MixcCudaEvent *ev[NRUN + 1] = {0};
  float ms[NRUN];
  for (int i = 0; i < 3 && !bad; i++)
    bad = chunk_kern_launch(g_cuda, &kn, &args, items, items, scratch, err, sizeof err);
  if (!bad && g_prof && kn.item_floats == 0)
    bad = mixc_cuda_memset8(g_cuda, dscr, 0, 12 * 8, err, sizeof err);
  for (int i = 0; i <= NRUN && !bad; i++) bad = mixc_cuda_event_create(g_cuda, &ev[i], err, sizeof err);
  if (!bad) bad = mixc_cuda_event_record(g_cuda, ev[0], NULL, err, sizeof err);
  for (int i = 0; i < NRUN && !bad; i++)
    bad = chunk_kern_launch(g_cuda, &kn, &args, items, items, scratch, err, sizeof err) ||
          mixc_cuda_event_record(g_cuda, ev[i + 1], NULL, err, sizeof err);
  for (int i = 0; i < NRUN && !bad; i++)
    bad = mixc_cuda_event_elapsed(g_cuda, ev[i], ev[i + 1], &ms[i], err, sizeof err);
  if (!bad) {
    qsort(ms, NRUN, sizeof *ms, cmp_float);
    printf("  bench %-10s B %2lld T %5lld H 16 K=V=128: %.3f ms (median of %d; min %.3f, max "
           "%.3f), vtile %lld x %lld%s, %lld blocks of %u threads, %u B shared%s%s\n",
           mixer, (long long)B, (long long)T, ms[NRUN / 2], NRUN, ms[0], ms[NRUN - 1],
           (long long)vtile, (long long)vtiles, vt_force > 0 ? " (forced)" : " (the runtime's)",
           (long long)items, threads, smem, diag && g_diag_exact ? " (older form)" : "",
           g_prof ? " (phase counters on)" : "");
    if (kn.n > 1) {
      float each[3];
      if (!ck_time_each(g_cuda, &kn, &args, items, scratch, each, err, sizeof err))
        printf("    %lld segments; each kernel alone (median ms): local %.3f, combine %.3f, "
               "output %.3f\n", (long long)segs, each[0], each[1], each[2]);
    }
    static const char *const phase[12] = {
        "q k v to smem", "gates (+ barrier)", "diag: gate prefix sums", "next chunk's loads",
        "Ab (diag: off-diag / dn: build)", "diag: diagonal (dn: Ab)", "Ks (diag: Qs) + barrier",
        "O", "S + barrier", "Sb", "end", "setup"};
    unsigned long long cyc[12];
    if (g_prof && kn.item_floats == 0 &&
        !mixc_cuda_synchronize(g_cuda, err, sizeof err) &&
        !mixc_cuda_memcpy_dtoh(g_cuda, cyc, dscr, sizeof cyc, err, sizeof err)) {
      double per = (double)NRUN * (double)items * (double)((T + 63) / 64), tot = 0;
      for (int i = 0; i < 11; i++) tot += (double)cyc[i] / per;
      printf("    cycles a chunk (thread 0 of each block, mean): %.0f in all\n", tot);
      for (int i = 0; i < 12; i++)
        printf("    %-30s %8.0f%s\n", phase[i], (double)cyc[i] / per,
               i == 11 ? " (once a block, over chunks)" : "");
    }
  } else {
    printf("  bench %s: %s\n", mixer, err);
  }
  for (int i = 0; i <= NRUN; i++)
    if (ev[i]) mixc_cuda_event_destroy(g_cuda, ev[i]);
  MixcDevPtr ps[] = {q, k, v, g, o, dscr};
  for (int i = 0; i < 6; i++)
    if (ps[i]) mixc_cuda_free(g_cuda, ps[i], err, sizeof err);
  mixc_cuda_module_free(kn.mod);
}

int main(int argc, char **argv) {
  MixcRng rng;
  unsigned long long seed = ck_start(argc, argv, &rng);
  const char *dx = getenv("MIXC_SCALAR_DIAG_EXACT");
  g_diag_exact = dx && *dx && strcmp(dx, "0");
  if (g_diag_exact) printf("test_lower_cuda_scalar: GLA's older form (diagonal tiles exact)\n");
  const char *th = getenv("MIXC_SCALAR_THREADS");
  g_threads = th && !strcmp(th, "256") ? 256 : 0;
  const char *sl = getenv("MIXC_SCALAR_SPLIT_LOADS");
  g_split_loads = sl && !strcmp(sl, "1") ? 1 : sl && !strcmp(sl, "-1") ? -1 : 0;
  const char *ol = getenv("MIXC_SCALAR_OLD_LOCAL");
  g_old_local = ol && !strcmp(ol, "1");
  const char *sg = getenv("MIXC_SCALAR_SEGS");
  g_segs = sg ? atoll(sg) : 0;
  if (g_segs < 0 || g_segs > 64) g_segs = 0;
  printf("test_lower_cuda_scalar: seed %llu%s", seed, g_threads ? ", 256 threads a block" : "");
  if (g_segs > 1) printf(", %lld sequence segments", (long long)g_segs);
  printf("\n");
  char err[4096];
  /* the CUDA prelude: an empty module printed for NVRTC */
  g_prelude = ck_prelude();
  if (!g_prelude) return 1;
  const KType BF = KT_BF16, F16 = KT_F16, F32 = KT_F32;
  const int IN = CCG_INPUT, PAR = CCG_PARAM, CON = CCG_CONST;
  const Case cases[] = {
      /* what, diag, gmode, K, V, vtile, vtiles, in, out, gt, h0, ht, varlen, scale_param,
       * stress, expect, B, T, H */
      {"simple_gla bf16 K=V=128, h0, ht", 0, IN, 128, 128, 128, 1, BF, BF, F32, 1, 1, 0, 0, 0, 0,
       2, 150, 3},
      {"linear_attn bf16 (no gate), ht", 0, -1, 128, 128, 128, 1, BF, F32, F32, 0, 1, 0, 0, 0, 0,
       2, 200, 2},
      {"retnet f16 K=V=64 (the gate's default)", 0, CON, 64, 64, 64, 1, F16, F16, F16, 1, 1, 0, 0,
       0, 0, 2, 130, 2},
      {"scalar gate param bf16 varlen (int32 cu), h0, ht, scale param", 0, PAR, 128, 128, 128, 1,
       BF, BF, BF, 1, 1, 1, 1, 0, 0, 1, 0, 2},
      {"simple_gla bf16 varlen (int64 cu), gate stress, vtile 48 x 3", 0, IN, 128, 128, 48, 3,
       BF, F32, F32, 0, 1, 2, 0, 1, 0, 1, 0, 2},
      {"simple_gla bf16 vtile 16 x 8, h0, ht", 0, IN, 128, 128, 16, 8, BF, BF, BF, 1, 1, 0, 0, 0,
       0, 1, 140, 2},
      {"gla bf16 K=V=128 vtile 64 x 2, h0, ht", 1, IN, 128, 128, 64, 2, BF, BF, F32, 1, 1, 0, 0,
       0, 0, 2, 150, 3},
      {"gla bf16 vtile 48 x 3, varlen (int32 cu), ht, scale param", 1, IN, 128, 128, 48, 3, BF,
       BF, BF, 0, 1, 1, 1, 0, 0, 1, 0, 2},
      {"gla bf16 varlen (int64 cu), gate stress, vtile 16 x 8", 1, IN, 128, 128, 16, 8, BF, F32,
       F32, 1, 1, 2, 0, 1, 0, 1, 0, 2},
      {"gla f16 K=128 V=100 vtile 32 x 4", 1, IN, 128, 100, 32, 4, F16, F16, F16, 1, 1, 0, 0, 0,
       0, 2, 90, 2},
      {"gla f16 K=V=64", 1, IN, 64, 64, 64, 1, F16, F16, F32, 0, 1, 0, 0, 0, 0, 2, 100, 2},
      /* the factored form's diagonal tiles factored and exact in one chunk (spans of 16
       * tokens' gates past 24, and in f16 past 8, go exact) */
      {"gla bf16 mixed gate spans, h0, ht", 1, IN, 128, 128, 128, 1, BF, F32, F32, 1, 1, 0, 0,
       2, 0, 2, 200, 2},
      {"gla f16 K=V=64 mixed gate spans, ht", 1, IN, 64, 64, 64, 1, F16, F16, F32, 0, 1, 0, 0,
       2, 0, 1, 150, 2},
      {"gla bf16 K=256 V=64 (Qs, Ks scaled in registers)", 1, IN, 256, 64, 64, 1, BF, BF, F32, 1,
       1, 0, 0, 0, 0, 1, 100, 2},
      /* long sequences: many chunks a segment under MIXC_SCALAR_SEGS */
      {"simple_gla bf16 T=1000, h0, ht", 0, IN, 128, 128, 128, 1, BF, BF, F32, 1, 1, 0, 0, 0, 0,
       1, 1000, 3},
      {"gla bf16 T=1000, h0, ht", 1, IN, 128, 128, 128, 1, BF, BF, F32, 1, 1, 0, 0, 0, 0, 1, 1000,
       2},
      {"K=100 (outside the form)", 0, IN, 100, 128, 128, 1, BF, BF, F32, 0, 0, 0, 0, 0, -1, 0,
       0, 0},
  };
  const int ncases = (int)(sizeof cases / sizeof cases[0]);
  g_cuda = ck_open_gpu(&failed, &skipped, err, sizeof err);
  if (!g_cuda) { /* NVRTC alone: every case printed for an H100 and compiled */
    MixcNvrtc *nv = NULL;
    if (mixc_nvrtc_open(0, &nv, err, sizeof err) == 0) {
      mixc_nvrtc_set_cache_dir(nv, NULL, err, sizeof err);
      for (int i = 0; i < ncases; i++) {
        char name[64], what[300];
        snprintf(name, sizeof name, "mixc_scalar_k%d", i);
        char *src = NULL;
        Kern kn;
        memset(&kn, 0, sizeof kn);
        int rc = print_source(&cases[i], name, 90, 232448, &src, &kn);
        unsigned threads = kn.n ? kn.threads[kn.n - 1] : 0, smem = kn.n ? kn.smem[kn.n - 1] : 0;
        if (rc == 0) rc = ck_nvrtc(nv, src, "test_lower_cuda_scalar.cu", 90, NULL, NULL);
        snprintf(what, sizeof what, "%s: printed, NVRTC sm_90a (%d, expected %d; %u threads, %u B shared)",
                 cases[i].what, rc, cases[i].expect, threads, smem);
        check(rc == cases[i].expect, what);
        if (rc == cases[i].expect) printf("ok   %s\n", what);
        free(src);
      }
      mixc_nvrtc_close(nv);
    }
  }
  if (g_cuda) {
    mixc_nvrtc_set_cache_dir(mixc_cuda_nvrtc(g_cuda), NULL, err, sizeof err);
    for (int i = 0; i < ncases; i++) run_case(&cases[i], &rng, i);
    const char *b = getenv("MIXC_SCALAR_BENCH");
    if (b && *b && strcmp(b, "0")) {
      /* the fused kernel (the runtime splits the sequences of the other shapes) */
      const int64_t shapes[3][2] = {{8, 2048}, {2, 8192}, {1, 32768}};
      bench("simple_gla", 0, 8, 2048, 0, 0);
      bench("gla", 1, 8, 2048, 1, 0);
      /* the long shapes with the runtime's split (the sequence split: each kernel's time) */
      for (int sh = 1; sh < 3; sh++) {
        bench("simple_gla", 0, shapes[sh][0], shapes[sh][1], 10 + sh, 0);
        bench("gla", 1, shapes[sh][0], shapes[sh][1], 20 + sh, 0);
      }
      /* MIXC_SCALAR_PROF=1: the same with the phase counters */
      const char *pr = getenv("MIXC_SCALAR_PROF");
      if (pr && *pr && strcmp(pr, "0")) {
        g_prof = 1;
        bench("simple_gla", 0, 8, 2048, 2, 0);
        bench("gla", 1, 8, 2048, 3, 0);
        g_diag_exact = 1;
        bench("gla", 1, 8, 2048, 4, 0);
        g_diag_exact = 0;
        g_prof = 0;
      }
      /* GLA's older form, next to the default */
      g_diag_exact = 1;
      bench("gla", 1, 8, 2048, 5, 0);
      g_diag_exact = 0;
      /* MIXC_SCALAR_BENCH=2: the other value splits too */
      if (!strcmp(b, "2")) {
        const int64_t alt[4] = {128, 64, 32, 16};
        for (int s = 0; s < 3; s++)
          for (int a = 0; a < 4; a++) {
            bench("simple_gla", 0, shapes[s][0], shapes[s][1], 100 + 8 * s + a, alt[a]);
            bench("gla", 1, shapes[s][0], shapes[s][1], 200 + 8 * s + a, alt[a]);
          }
      }
    }
    mixc_cuda_close(g_cuda);
  }
  free(g_prelude);
  printf("test_lower_cuda_scalar: %d passed, %d failed, %d skipped\n", passed, failed, skipped);
  if (failed) return 1;
  return g_cuda ? 0 : 77;
}
#endif
