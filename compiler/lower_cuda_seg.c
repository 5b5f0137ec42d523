/* The sequence split of the hand-structured CUDA chunk kernels (lower_cuda.h): where the
 * (sequence, head) pairs alone would leave most multiprocessors idle (long sequences, few
 * heads), each sequence runs as SEGS segments of whole chunks, in three kernels over the work
 * items ((n H + h) vtiles + tile) SEGS + seg:
 *
 *   local    every segment but the last, from a zero state: its end state L_p and its
 *            transition, kept per item in `scratch` (item_floats floats an item):
 *              scalar: S_end = e^{G_p} S_start + L_p, G_p the segment's summed log gate;
 *              diag:   the same with G_p per key row;
 *              delta:  S_end = P_p S_start + L_p, P_p [K, K] = prod (I - beta k k^T) e^g,
 *                      computed as K more state columns from the identity with v = 0 (each
 *                      value tile takes K / vtiles of them: the local kernel's state tile is
 *                      [K, vtile + K / vtiles]);
 *   combine  S_0 = the initial state, S_{p+1} = e^{G_p} S_p + L_p (delta: P_p S_p + L_p), in
 *            fp32, written over L_p (element-parallel for scalar and diag; for delta 16
 *            columns at a time, groups seg, seg + SEGS, ... of the tile, P_p read from the
 *            items of every tile of the pair);
 *   output   every segment as the fused kernel from S_p (the last one writes the final
 *            state).
 *
 * The local pass does the state half of the fused kernel's work (no Q K^T, no output), so
 * the split costs about a third more arithmetic than the fused kernel (delta: the transition
 * columns double the local pass) and three launches, and fills the GPU where the fused one
 * would run a few blocks through the whole sequence. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lower_cuda.h"

/* Columns of P a value tile's local kernel carries (delta). */
static int64_t p_cols(const CudaChunkShape *s) {
  int64_t vt = s->vtiles > 0 ? s->vtiles : 1;
  return (s->K + vt - 1) / vt;
}

/* Row width of the local state tile kept per item. */
static int64_t row_width(const CudaChunkShape *s) {
  return s->vtile + (s->kind == CCK_DELTA ? p_cols(s) : 0);
}

int64_t cuda_chunk_item_floats(const CudaChunkShape *s) {
  int64_t f = s->K * row_width(s);
  if (s->kind == CCK_SCALAR) f += 1;
  else if (s->kind == CCK_DIAG) f += s->K;
  return (f + 3) / 4 * 4;
}

/* The combine kernel. */
static int combine_source(FILE *out, const CudaChunkShape *s, const char *name, unsigned *threads,
                          unsigned *smem) {
  const int64_t KD = s->K, VTP = s->vtile, W = row_width(s), IF = cuda_chunk_item_floats(s);
  const int64_t SEGS = s->segs;
  const int delta = s->kind == CCK_DELTA;
  const int nt = delta ? (int)(2 * KD) : 256;
  *threads = (unsigned)nt;
  *smem = 0;
  fprintf(out,
          "extern \"C\" __global__ void __launch_bounds__(%d)\n"
          "%s(const MixcArgs_%s args, int64_t begin, int64_t end, float *scratch) {\n"
          "  const int64_t KD = %" PRId64 ", VTP = %" PRId64 ", W = %" PRId64 ", IF = %" PRId64
          ", SEGS = %" PRId64 ", VTILES = %" PRId64 ", V = %" PRId64 ";\n"
          "  const int64_t item = begin + blockIdx.x;\n"
          "  if (item >= end) return;\n"
          "  const int64_t H = args.ints[%d];\n"
          "  const int64_t seg = item %% SEGS, base = item - seg, pair = item / SEGS / VTILES;\n"
          "  const int64_t tile = item / SEGS %% VTILES, n = pair / H, h = pair %% H, j0 = tile * VTP;\n"
          "  const int vw = (int)(V - j0 < VTP ? V - j0 : VTP);\n"
          "  (void)n, (void)h, (void)j0, (void)W, (void)KD;\n",
          nt, name, name, KD, VTP, W, IF, SEGS, s->vtiles, s->V, s->i_H);
  char h0[320] = "0.0f";
  if (s->p_h0 >= 0)
    snprintf(h0, sizeof h0,
             "((const float *)args.ptrs[%d])[n * args.ints[%d] + h * args.ints[%d] + i * "
             "args.ints[%d] + (j0 + j) * args.ints[%d]]",
             s->p_h0, s->s_h0, s->s_h0 + 1, s->s_h0 + 2, s->s_h0 + 3);
  if (!delta) {
    /* element-parallel: this block's share of the tile's elements, through every segment */
    fprintf(out,
            "  const int64_t E = KD * VTP, per = (E + SEGS - 1) / SEGS, e0 = seg * per;\n"
            "  const int64_t e1 = e0 + per < E ? e0 + per : E;\n"
            "  for (int64_t e = e0 + threadIdx.x; e < e1; e += %d) {\n"
            "    const int64_t i = e / VTP, j = e %% VTP;\n"
            "    if (j >= vw) continue;\n"
            "    float x = %s;\n"
            "    for (int64_t p = 0; p < SEGS - 1; p++) {\n"
            "      float *L = scratch + (base + p) * IF;\n"
            "      x = __expf(L[KD * VTP + %s]) * x + L[e];\n"
            "      L[e] = x;\n"
            "    }\n"
            "  }\n}\n",
            nt, h0, s->kind == CCK_DIAG ? "i" : "0");
  } else {
    /* 16 columns at a time, column groups seg, seg + SEGS, ... of the tile: S [KD, 16] in
     * shared memory; thread: row tid / 2, 8 columns */
    fprintf(out,
            "  __shared__ float sS[%" PRId64 " * 16];\n"
            "  const int i = threadIdx.x >> 1, cb = (threadIdx.x & 1) * 8;\n"
            "  const int64_t PT = W - VTP;\n"
            "  for (int64_t c0 = seg * 16; c0 < vw; c0 += SEGS * 16) {\n"
            "  __syncthreads();\n"
            "#pragma unroll\n"
            "  for (int c = 0; c < 8; c++) {\n"
            "    const int64_t j = c0 + cb + c;\n"
            "    sS[i * 16 + cb + c] = j < vw ? %s : 0.0f;\n"
            "  }\n"
            "  __syncthreads();\n"
            "  for (int64_t p = 0; p < SEGS - 1; p++) {\n"
            "    float acc[8];\n"
            "    float *L = scratch + (base + p) * IF + i * W;\n"
            "#pragma unroll\n"
            "    for (int c = 0; c < 8; c++) acc[c] = c0 + cb + c < vw ? L[c0 + cb + c] : 0.0f;\n"
            "    /* P_p row i: columns k of tile k / PT's item, at VTP + k %% PT */\n"
            "    const int64_t pb = pair * VTILES * SEGS + p;\n"
            "    for (int64_t k = 0; k < KD; k++) {\n"
            "      const float pk = scratch[(pb + (k / PT) * SEGS) * IF + i * W + VTP + k %% PT];\n"
            "#pragma unroll\n"
            "      for (int c = 0; c < 8; c++) acc[c] += pk * sS[k * 16 + cb + c];\n"
            "    }\n"
            "    __syncthreads();\n"
            "#pragma unroll\n"
            "    for (int c = 0; c < 8; c++) {\n"
            "      sS[i * 16 + cb + c] = acc[c];\n"
            "      if (c0 + cb + c < vw) L[c0 + cb + c] = acc[c];\n"
            "    }\n"
            "    __syncthreads();\n"
            "  }\n"
            "  }\n}\n",
            KD, s->p_h0 >= 0 ? h0 : "0.0f");
  }
  return ferror(out) ? 1 : 0;
}

static int one(const CudaChunkShape *s, int mode, const char *name, int arch, int smem_optin,
               CudaChunkKernel *k, char *err, size_t errlen) {
  CudaChunkShape m = *s;
  m.mode = mode;
  snprintf(k->name, sizeof k->name, "%s", name);
  size_t len = 0;
  FILE *f = open_memstream(&k->src, &len);
  if (!f) {
    snprintf(err, errlen, "out of memory printing the CUDA kernel");
    return 1;
  }
  int rc = -1;
  /* the scalar/diagonal local pass: its own kernel where it fits, else the fused kernel's
   * local mode (-1 from it prints nothing) */
  if (mode == CCM_LOCAL && s->kind != CCK_DELTA && !s->local_fused)
    rc = cuda_chunk_local_source(f, &m, name, arch, smem_optin, &k->threads, &k->smem, err,
                                 errlen);
  if (rc != -1) {
    k->scratch_floats = 0;
  } else if (mode == CCM_COMBINE)
    rc = combine_source(f, &m, name, &k->threads, &k->smem);
  else if (s->kind == CCK_DELTA)
    rc = cuda_chunk_delta_source(f, &m, name, arch, smem_optin, &k->threads, &k->smem,
                                 &k->scratch_floats, err, errlen);
  else
    rc = cuda_chunk_scalar_source(f, &m, name, arch, smem_optin, &k->threads, &k->smem,
                                  &k->scratch_floats, err, errlen);
  if (fclose(f) != 0 && rc == 0) {
    snprintf(err, errlen, "out of memory printing the CUDA kernel");
    rc = 1;
  }
  k->item_floats = s->segs > 1 ? cuda_chunk_item_floats(s) : 0;
  if (rc == 0 && k->item_floats > 0 && k->scratch_floats > 0) {
    snprintf(err, errlen, "kernel %s: per-block scratch and per-item storage at once", name);
    rc = 1;
  }
  return rc;
}

void cuda_chunk_kernels_free(CudaChunkKernel *k, int nk) {
  for (int i = 0; i < nk; i++) {
    free(k[i].src);
    k[i].src = NULL;
  }
}

int cuda_chunk_kernels(const CudaChunkShape *s, const char *base, int arch, int smem_optin,
                       CudaChunkKernel k[3], int *nk, char *err, size_t errlen) {
  memset(k, 0, 3 * sizeof *k);
  *nk = 0;
  if (s->segs <= 1) {
    int rc = one(s, CCM_FUSED, base, arch, smem_optin, &k[0], err, errlen);
    if (rc) cuda_chunk_kernels_free(k, 1);
    else *nk = 1;
    return rc;
  }
  if (s->kind == CCK_DELTA && (s->K > 256 || s->K % 16)) return -1;
  static const char *const suffix[3] = {"local", "combine", "output"};
  static const int modes[3] = {CCM_LOCAL, CCM_COMBINE, CCM_OUTPUT};
  for (int i = 0; i < 3; i++) {
    char name[256];
    if ((size_t)snprintf(name, sizeof name, "%s_%s", base, suffix[i]) >= sizeof name) {
      cuda_chunk_kernels_free(k, i);
      return -1;
    }
    int rc = one(s, modes[i], name, arch, smem_optin, &k[i], err, errlen);
    if (rc) {
      cuda_chunk_kernels_free(k, i + 1);
      return rc;
    }
  }
  *nk = 3;
  return 0;
}
