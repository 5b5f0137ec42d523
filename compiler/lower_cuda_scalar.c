/* The hand-structured CUDA chunk kernel for scalar (and identity) decay and for diagonal
 * (per key channel) decay (lower_cuda.h; ALGORITHMS.md: fla's fused chunk form).
 *
 * One block per work item (sequence, head, value tile), 256 threads (8 warps). The state tile
 * S [K, vtile] stays in shared memory in fp32 across the chunks of the sequence, with a
 * 16-bit copy Sb (the input type) that feeds the tensor cores. Per chunk of C tokens:
 *   load Q, K [C, K] and V [C, vtile] (16-byte vector loads where the rows allow it; rows past
 *   the sequence and columns past the tile read as zero), the cumulative log gates b (fp32);
 *   A = Q K^T (mma.sync m16n8k16, fp32 accumulate; only the tiles on or below the diagonal);
 *   scalar: Ab[t, s] = A[t, s] e^{b_t - b_s} for s <= t, else 0;
 *   diag:   the same product weighted per channel: the 16 x 16 sub-chunk blocks below the
 *           diagonal as (Q e^{b_t - b_r}) (K e^{b_r - b_s})^T with r the sub-chunk's first
 *           token (exponents <= 0), the diagonal blocks exactly, element by element;
 *   Q <- Q e^{b_t} (per channel for diag), K <- K e^{b_last - b_s};
 *   O = Ab V + Q Sb, times scale, stored (valid rows, the tile's columns, any strides);
 *   S <- e^{b_last} S (per row for diag) + K^T V; Sb <- S.
 * Every exponent is <= 0, so gates near 0 and strongly negative give no overflow. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "lower_cuda.h"

enum { NTHREADS = 256, NWARPS = 8 };

/* Text of a load of element `idx` of a tensor of type t at pointer expression p, as float. */
static void rd_n(FILE *o, const char *name, KType t, const char *p, const char *idx) {
  if (t == KT_F32)
    fprintf(o, "((const float *)%s)[%s]", p, idx);
  else
    fprintf(o, "%s_%s(((const unsigned short *)%s)[%s])", name, t == KT_BF16 ? "bf2f" : "h2f",
            p, idx);
}
#define rd(o, t, p, idx) rd_n(o, name, t, p, idx)

static int64_t al128(int64_t x) { return (x + 127) / 128 * 128; }

int cuda_chunk_scalar_source(FILE *out, const CudaChunkShape *s, const char *name, int arch,
                             int smem_optin, unsigned *threads, unsigned *smem,
                             int64_t *scratch_floats, char *err, size_t errlen) {
  (void)err, (void)errlen;
  if (s->kind != CCK_SCALAR && s->kind != CCK_DIAG) return -1;
  if (arch < 80) return -1; /* bf16 mma.sync needs sm_80 */
  if (s->in_type != KT_BF16 && s->in_type != KT_F16) return -1;
  const int64_t KD = s->K, VT = (s->vtile + 15) / 16 * 16, CC = s->chunk;
  if (KD < 16 || KD > 256 || KD % 16) return -1;
  if (s->vtile < 1 || VT > 256) return -1;
  if (CC < 16 || CC > 128 || CC % 16) return -1;
  int diag = s->kind == CCK_DIAG;
  const int64_t LQ = KD + 8, LV = VT + 8, LS = VT + 4, LA = CC + 4, LAB = CC + 8, LO = VT + 4;
  /* shared memory layout, bytes */
  int64_t o_q = 0, o_k = o_q + al128(CC * LQ * 2), o_v = o_k + al128(CC * LQ * 2);
  int64_t o_sb = o_v + al128(CC * LV * 2), o_ab = o_sb + al128(KD * LV * 2);
  int64_t o_s = o_ab + al128(CC * LAB * 2), o_u = o_s + al128(KD * LS * 4);
  int64_t u_floats = CC * LA > CC * LO ? CC * LA : CC * LO;
  int64_t o_b = o_u + al128(u_floats * 4);
  int64_t nb = diag ? CC * KD : CC;
  int64_t total = o_b + al128(nb * 4);
  if (total > (int64_t)smem_optin || total > 227 * 1024) return -1;
  *threads = NTHREADS;
  *smem = (unsigned)total;
  *scratch_floats = 0;

  const int bf = s->in_type == KT_BF16;
  /* conversions (no headers: NVRTC is given no include path) */
  fprintf(out,
          "static __device__ __forceinline__ float %s_bf2f(unsigned short u) {\n"
          "  return __uint_as_float((unsigned)u << 16);\n}\n"
          "static __device__ __forceinline__ unsigned short %s_f2bf(float f) {\n"
          "  unsigned u = __float_as_uint(f);\n"
          "  if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);\n"
          "  u += 0x7fffu + ((u >> 16) & 1u);\n"
          "  return (unsigned short)(u >> 16);\n}\n"
          "static __device__ __forceinline__ float %s_h2f(unsigned short u) {\n"
          "  float f;\n  asm(\"cvt.f32.f16 %%0, %%1;\" : \"=f\"(f) : \"h\"(u));\n  return f;\n}\n"
          "static __device__ __forceinline__ unsigned short %s_f2h(float f) {\n"
          "  unsigned short u;\n  asm(\"cvt.rn.f16.f32 %%0, %%1;\" : \"=h\"(u) : \"f\"(f));\n"
          "  return u;\n}\n"
          "static __device__ __forceinline__ float %s_f(unsigned short u) { return %s_%s(u); }\n"
          "static __device__ __forceinline__ unsigned short %s_h(float f) { return %s_%s(f); }\n",
          name, name, name, name, name, name, bf ? "bf2f" : "h2f", name, name,
          bf ? "f2bf" : "f2h");
  /* one 16 x 16 x 16 tensor-core product, c (16 x 16 fp32, 8 per thread: two m16n8 halves,
   * rows g and g + 8, columns 2 t, 2 t + 1 of each half) += A B, A [16, 16] and B [16, 16] of
   * 16-bit elements in shared memory: A(r, k) = A[r * lda + k] (or A[k * lda + r] when acol),
   * B(k, n) = B[k * ldb + n] (or B[n * ldb + k] when bcol); mma.sync m16n8k16 */
  fprintf(out,
          "static __device__ __forceinline__ unsigned %s_pk(unsigned short lo, unsigned short hi) "
          "{\n  return (unsigned)lo | ((unsigned)hi << 16);\n}\n"
          "static __device__ __forceinline__ void %s_mma(float *c, const unsigned short *A, int "
          "lda, int acol, const unsigned short *B, int ldb, int bcol) {\n"
          "  const int lane = threadIdx.x & 31, g = lane >> 2, t2 = (lane & 3) * 2;\n"
          "#define %s_A(r, k) (acol ? A[(k) * lda + (r)] : A[(r) * lda + (k)])\n"
          "#define %s_B(k, n) (bcol ? B[(n) * ldb + (k)] : B[(k) * ldb + (n)])\n"
          "  unsigned a0 = %s_pk(%s_A(g, t2), %s_A(g, t2 + 1));\n"
          "  unsigned a1 = %s_pk(%s_A(g + 8, t2), %s_A(g + 8, t2 + 1));\n"
          "  unsigned a2 = %s_pk(%s_A(g, t2 + 8), %s_A(g, t2 + 9));\n"
          "  unsigned a3 = %s_pk(%s_A(g + 8, t2 + 8), %s_A(g + 8, t2 + 9));\n"
          "#pragma unroll\n"
          "  for (int hf = 0; hf < 2; hf++) {\n"
          "    int nn = hf * 8 + g;\n"
          "    unsigned b0 = %s_pk(%s_B(t2, nn), %s_B(t2 + 1, nn));\n"
          "    unsigned b1 = %s_pk(%s_B(t2 + 8, nn), %s_B(t2 + 9, nn));\n"
          "    float *d = c + hf * 4;\n"
          "    asm volatile(\"mma.sync.aligned.m16n8k16.row.col.f32.%s.%s.f32 {%%0, %%1, %%2, %%3}, "
          "{%%4, %%5, %%6, %%7}, {%%8, %%9}, {%%0, %%1, %%2, %%3};\"\n"
          "                 : \"+f\"(d[0]), \"+f\"(d[1]), \"+f\"(d[2]), \"+f\"(d[3])\n"
          "                 : \"r\"(a0), \"r\"(a1), \"r\"(a2), \"r\"(a3), \"r\"(b0), \"r\"(b1));\n"
          "  }\n"
          "#undef %s_A\n#undef %s_B\n"
          "}\n"
          "static __device__ __forceinline__ void %s_st(const float *c, float *D, int ldd) {\n"
          "  const int lane = threadIdx.x & 31, g = lane >> 2, t2 = (lane & 3) * 2;\n"
          "#pragma unroll\n"
          "  for (int hf = 0; hf < 2; hf++) {\n"
          "    D[g * ldd + hf * 8 + t2] = c[hf * 4];\n"
          "    D[g * ldd + hf * 8 + t2 + 1] = c[hf * 4 + 1];\n"
          "    D[(g + 8) * ldd + hf * 8 + t2] = c[hf * 4 + 2];\n"
          "    D[(g + 8) * ldd + hf * 8 + t2 + 1] = c[hf * 4 + 3];\n"
          "  }\n"
          "}\n"
          "static __device__ __forceinline__ void %s_ldacc(float *c, const float *D, int ldd) {\n"
          "  const int lane = threadIdx.x & 31, g = lane >> 2, t2 = (lane & 3) * 2;\n"
          "#pragma unroll\n"
          "  for (int hf = 0; hf < 2; hf++) {\n"
          "    c[hf * 4] = D[g * ldd + hf * 8 + t2];\n"
          "    c[hf * 4 + 1] = D[g * ldd + hf * 8 + t2 + 1];\n"
          "    c[hf * 4 + 2] = D[(g + 8) * ldd + hf * 8 + t2];\n"
          "    c[hf * 4 + 3] = D[(g + 8) * ldd + hf * 8 + t2 + 1];\n"
          "  }\n"
          "}\n\n",
          name, name, name, name, name, name, name, name, name, name, name, name, name, name,
          name, name, name, name, name, name, name, name, bf ? "bf16" : "f16", bf ? "bf16" : "f16",
          name, name, name, name);
  /* a row segment of 8 elements into shared memory: one 16-byte load when contiguous and
   * aligned, else element by element (n valid elements, the rest zero) */
  fprintf(out,
          "static __device__ __forceinline__ void %s_ld8(unsigned short *dst, const unsigned "
          "short *src, int64_t stride, int n) {\n"
          "  if (n >= 8 && stride == 1 && ((unsigned long long)src & 15) == 0) {\n"
          "    *(uint4 *)dst = __ldg((const uint4 *)src);\n"
          "    return;\n"
          "  }\n"
          "  unsigned short t[8];\n"
          "#pragma unroll\n"
          "  for (int e = 0; e < 8; e++) t[e] = e < n ? src[e * stride] : (unsigned short)0;\n"
          "  uint4 w;\n"
          "  w.x = t[0] | ((unsigned)t[1] << 16); w.y = t[2] | ((unsigned)t[3] << 16);\n"
          "  w.z = t[4] | ((unsigned)t[5] << 16); w.w = t[6] | ((unsigned)t[7] << 16);\n"
          "  *(uint4 *)dst = w;\n"
          "}\n\n",
          name);

  fprintf(out,
          "extern \"C\" __global__ void __launch_bounds__(%d)\n"
          "%s(const MixcArgs_%s args, int64_t begin, int64_t end, float *scratch) {\n"
                    "  (void)scratch;\n"
          "  const int KD = %" PRId64 ", VT = %" PRId64 ", CC = %" PRId64 ", NT = %d, NW = %d;\n"
          "  const int LQ = %" PRId64 ", LV = %" PRId64 ", LS = %" PRId64 ", LA = %" PRId64
          ", LAB = %" PRId64 ", LO = %" PRId64 ";\n"
          "  const int64_t V = %" PRId64 ", VTILES = %" PRId64 ", VTP = %" PRId64 ";\n",
          NTHREADS, name, name, KD, VT, CC, NTHREADS, NWARPS, LQ, LV, LS, LA, LAB, LO, s->V,
          s->vtiles, s->vtile);
  fprintf(out,
          "  extern __shared__ __align__(128) unsigned char smem_[];\n"
          "  unsigned short *sQ = (unsigned short *)(smem_ + %" PRId64 ");\n"
          "  unsigned short *sK = (unsigned short *)(smem_ + %" PRId64 ");\n"
          "  unsigned short *sV = (unsigned short *)(smem_ + %" PRId64 ");\n"
          "  unsigned short *sSb = (unsigned short *)(smem_ + %" PRId64 ");\n"
          "  unsigned short *sAb = (unsigned short *)(smem_ + %" PRId64 ");\n"
          "  float *sS = (float *)(smem_ + %" PRId64 ");\n"
          "  float *sU = (float *)(smem_ + %" PRId64 ");\n"
          "  float *sb = (float *)(smem_ + %" PRId64 ");\n",
          o_q, o_k, o_v, o_sb, o_ab, o_s, o_u, o_b);
  fprintf(out,
          "  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;\n"
          "  const int64_t item = begin + blockIdx.x;\n"
          "  if (item >= end) return;\n"
          "  const int64_t H = args.ints[%d];\n"
          "  const int64_t pair = item / VTILES, tile = item %% VTILES;\n"
          "  const int64_t n = pair / H, h = pair %% H;\n"
          "  const int64_t j0 = tile * VTP;\n"
          "  const int vw = (int)(V - j0 < VTP ? V - j0 : VTP);\n"
          "  int64_t t0, t1, b;\n",
          s->i_H);
  if (s->p_cu >= 0) {
    const char *ct = s->cu_type == KT_I32 ? "int" : "long long";
    fprintf(out,
            "  {\n    const %s *cu = (const %s *)args.ptrs[%d];\n"
            "    t0 = (int64_t)cu[n];\n    t1 = (int64_t)cu[n + 1];\n    b = 0;\n  }\n",
            ct, ct, s->p_cu);
  } else {
    fprintf(out, "  t0 = 0;\n  t1 = args.ints[%d];\n  b = n;\n", s->i_T);
  }
  /* pointers and strides: [B, T, H, dim] */
  struct {
    const char *nm;
    int p, st;
  } ts[] = {{"q", s->p_q, s->s_q}, {"k", s->p_k, s->s_k}, {"v", s->p_v, s->s_v},
            {"o", s->p_o, s->s_o}};
  for (int i = 0; i < 4; i++)
    fprintf(out,
            "  %sunsigned char *p%s = (%sunsigned char *)args.ptrs[%d];\n"
            "  const int64_t %s1 = args.ints[%d], %s3 = args.ints[%d];\n"
            "  const int64_t %sb = b * args.ints[%d] + h * args.ints[%d];\n",
            i < 3 ? "const " : "", ts[i].nm, i < 3 ? "const " : "", ts[i].p, ts[i].nm,
            ts[i].st + 1, ts[i].nm, ts[i].st + 3, ts[i].nm, ts[i].st, ts[i].st + 2);
  if (s->has_g && s->g_mode == CCG_INPUT) {
    fprintf(out,
            "  const unsigned char *pg = (const unsigned char *)args.ptrs[%d];\n"
            "  const int64_t g1 = args.ints[%d];\n"
            "  const int64_t gb = b * args.ints[%d] + h * args.ints[%d];\n",
            s->p_g, s->s_g + 1, s->s_g, s->s_g + 2);
    if (diag) fprintf(out, "  const int64_t g3 = args.ints[%d];\n", s->s_g + 3);
  }
  /* scale */
  if (s->p_scale >= 0) {
    fprintf(out, "  const float scale = ");
    char idx[64];
    snprintf(idx, sizeof idx, "h * args.ints[%d]", s->s_scale);
    char p[48];
    snprintf(p, sizeof p, "args.ptrs[%d]", s->p_scale);
    rd(out, s->scale_type, p, idx);
    fprintf(out, ";\n");
  } else {
    fprintf(out, "  const float scale = %.17g;\n", s->scale);
  }
  /* the gate of token r of the chunk (0 past the sequence) */
  if (s->has_g && s->g_mode != CCG_INPUT) fprintf(out, "  float gconst = 0.0f;\n");
  if (s->has_g && s->g_mode == CCG_PARAM) {
    char idx[64], p[48];
    snprintf(idx, sizeof idx, "h * args.ints[%d]", s->s_g);
    snprintf(p, sizeof p, "args.ptrs[%d]", s->p_g);
    fprintf(out, "  gconst = ");
    rd(out, s->g_type, p, idx);
    fprintf(out, ";\n");
  } else if (s->has_g && s->g_mode == CCG_CONST) {
    fprintf(out, "  gconst = %.17g;\n", s->g_const);
  }

  /* the initial state */
  fprintf(out, "  for (int e = tid; e < KD * VT; e += NT) {\n"
               "    int i = e / VT, j = e %% VT;\n    float x = 0.0f;\n");
  if (s->p_h0 >= 0)
    fprintf(out,
            "    if (j < vw) x = ((const float *)args.ptrs[%d])[n * args.ints[%d] + h * "
            "args.ints[%d] + i * args.ints[%d] + (j0 + j) * args.ints[%d]];\n",
            s->p_h0, s->s_h0, s->s_h0 + 1, s->s_h0 + 2, s->s_h0 + 3);
  fprintf(out, "    sS[i * LS + j] = x;\n    sSb[i * LV + j] = %s_h(x);\n  }\n", name);
  fprintf(out, "  __syncthreads();\n\n");

  /* ---- the chunks ---- */
  fprintf(out,
          "  for (int64_t c0 = t0; c0 < t1; c0 += CC) {\n"
          "    const int len = (int)(t1 - c0 < CC ? t1 - c0 : CC);\n"
          "    for (int e = tid; e < CC * (KD / 8); e += NT) {\n"
          "      int r = e / (KD / 8), c8 = (e %% (KD / 8)) * 8;\n"
          "      int nv = r < len ? 8 : 0;\n"
          "      int64_t tok = c0 + (r < len ? r : 0);\n"
          "      %s_ld8(sQ + r * LQ + c8, (const unsigned short *)pq + qb + tok * q1 + c8 * q3, "
          "q3, nv);\n"
          "      %s_ld8(sK + r * LQ + c8, (const unsigned short *)pk + kb + tok * k1 + c8 * k3, "
          "k3, nv);\n"
          "    }\n"
          "    for (int e = tid; e < CC * (VT / 8); e += NT) {\n"
          "      int r = e / (VT / 8), c8 = (e %% (VT / 8)) * 8;\n"
          "      int nv = r < len ? (vw - c8 < 8 ? (vw - c8 > 0 ? vw - c8 : 0) : 8) : 0;\n"
          "      int64_t tok = c0 + (r < len ? r : 0);\n"
          "      %s_ld8(sV + r * LV + c8, (const unsigned short *)pv + vb + tok * v1 + (j0 + "
          "c8) * v3, v3, nv);\n"
          "    }\n",
          name, name, name);
  /* cumulative gates */
  if (!diag) {
    fprintf(out,
            "    if (warp == 0) {\n"
            "      const int P = (CC + 31) / 32;\n"
            "      float loc[(CC + 31) / 32];\n"
            "      float run = 0.0f;\n"
            "      for (int u = 0; u < P; u++) {\n"
            "        int r = lane * P + u;\n"
            "        float g = 0.0f;\n");
    if (s->has_g && s->g_mode == CCG_INPUT) {
      fprintf(out, "        if (r < len) g = ");
      rd(out, s->g_type, "pg", "gb + (c0 + r) * g1");
      fprintf(out, ";\n");
    } else if (s->has_g) {
      fprintf(out, "        if (r < len) g = gconst;\n");
    }
    fprintf(out,
            "        run += g;\n"
            "        loc[u] = run;\n"
            "      }\n"
            "      float inc = run;\n"
            "      for (int d = 1; d < 32; d <<= 1) {\n"
            "        float y = __shfl_up_sync(0xffffffffu, inc, d);\n"
            "        if (lane >= d) inc += y;\n"
            "      }\n"
            "      float off = inc - run;\n"
            "      for (int u = 0; u < P; u++) {\n"
            "        int r = lane * P + u;\n"
            "        if (r < CC) sb[r] = loc[u] + off;\n"
            "      }\n"
            "    }\n");
  } else {
    /* per channel: the gates loaded in parallel, then each channel's prefix sum */
    fprintf(out,
            "    for (int e = tid; e < CC * KD; e += NT) {\n"
            "      int r = e / KD, i = e %% KD;\n"
            "      float g = 0.0f;\n"
            "      if (r < len) g = ");
    rd(out, s->g_type, "pg", "gb + (c0 + r) * g1 + i * g3");
    fprintf(out,
            ";\n"
            "      sb[e] = g;\n"
            "    }\n"
            "    __syncthreads();\n"
            "    for (int i = tid; i < KD; i += NT) {\n"
            "      float run = 0.0f;\n"
            "      for (int r = 0; r < CC; r++) {\n"
            "        run += sb[r * KD + i];\n"
            "        sb[r * KD + i] = run;\n"
            "      }\n"
            "    }\n");
  }
  fprintf(out, "    __syncthreads();\n");

  if (!diag) {
    /* A = Q K^T, tiles on or below the diagonal */
    fprintf(out,
            "    for (int tt = warp; tt < (CC / 16) * (CC / 16); tt += NW) {\n"
            "      int ti = tt / (CC / 16), tj = tt %% (CC / 16);\n"
            "      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};\n"
            "      if (tj <= ti) {\n"
            "        for (int kk = 0; kk < KD / 16; kk++) {\n"
            "          %s_mma(acc, sQ + ti * 16 * LQ + kk * 16, LQ, 0, sK + tj * 16 * LQ + kk * 16, LQ, 1);\n"
            "        }\n"
            "      }\n"
            "      %s_st(acc, sU + ti * 16 * LA + tj * 16, LA);\n"
            "    }\n"
            "    __syncthreads();\n", name, name);
    /* decay and mask; Q e^b, K e^{b_last - b} */
    fprintf(out,
            "    const float blast = sb[CC - 1];\n"
            "    for (int e = tid; e < CC * CC; e += NT) {\n"
            "      int t = e / CC, u = e %% CC;\n"
            "      float x = u <= t ? sU[t * LA + u] * __expf(sb[t] - sb[u]) : 0.0f;\n"
            "      sAb[t * LAB + u] = %s_h(x);\n"
            "    }\n"
            "    for (int e = tid; e < CC * KD; e += NT) {\n"
            "      int t = e / KD, i = e %% KD;\n"
            "      sQ[t * LQ + i] = %s_h(%s_f(sQ[t * LQ + i]) * __expf(sb[t]));\n"
            "      sK[t * LQ + i] = %s_h(%s_f(sK[t * LQ + i]) * __expf(blast - sb[t]));\n"
            "    }\n"
            "    __syncthreads();\n",
            name, name, name, name, name);
  } else {
    /* Diagonal decay. Blocks (ti, tj) of 16 x 16 sub-chunks with tj < ti: (Q e^{b_t - b_r})
     * (K e^{b_r - b_s})^T, r the first token of sub-chunk ti; built in sAb-sized temporaries:
     * the scaled Q rows of sub-chunk ti are written to sSb-free space (sAb is [CC, LAB],
     * too small), so each warp scales its own 16 x KD operands into registers of mma
     * fragments through a per-warp staging area in sU. */
    fprintf(out,
            "    {\n"
            "      /* the diagonal blocks, exactly: A[t, u] = sum_i q[t,i] k[u,i] e^{b[t,i] - "
            "b[u,i]}, u <= t in the same sub-chunk */\n"
            "      for (int e = tid; e < CC * 16; e += NT) {\n"
            "        int t = e / 16, u = (t / 16) * 16 + e %% 16;\n"
            "        float x = 0.0f;\n"
            "        if (u <= t) {\n"
            "          for (int i = 0; i < KD; i++)\n"
            "            x += %s_f(sQ[t * LQ + i]) * %s_f(sK[u * LQ + i]) * __expf(sb[t * KD + i] "
            "- sb[u * KD + i]);\n"
            "        }\n"
            "        sU[t * LA + u] = x;\n"
            "      }\n"
            "    }\n",
            name, name);
    /* off-diagonal blocks: warp w handles pairs (ti, tj) tj < ti; staging per warp in
     * shared memory after the O staging area would cost KD * 32 * 2 bytes per warp; instead
     * reuse sAb rows? Keep it simple: rescaled copies through sSb is not possible (it holds
     * the state). So: per pair, each lane computes elements directly (CUDA cores). */
    fprintf(out,
            "    for (int e = tid; e < CC * CC; e += NT) {\n"
            "      int t = e / CC, u = e %% CC;\n"
            "      int rt = t / 16, ru = u / 16;\n"
            "      if (ru >= rt) continue;\n"
            "      int r0 = rt * 16;\n"
            "      float x = 0.0f;\n"
            "      for (int i = 0; i < KD; i++)\n"
            "        x += %s_f(sQ[t * LQ + i]) * __expf(sb[t * KD + i] - sb[r0 * KD + i]) *\n"
            "             %s_f(sK[u * LQ + i]) * __expf(sb[r0 * KD + i] - sb[u * KD + i]);\n"
            "      sU[t * LA + u] = x;\n"
            "    }\n"
            "    __syncthreads();\n",
            name, name);
    fprintf(out,
            "    for (int e = tid; e < CC * CC; e += NT) {\n"
            "      int t = e / CC, u = e %% CC;\n"
            "      sAb[t * LAB + u] = %s_h(u <= t ? sU[t * LA + u] : 0.0f);\n"
            "    }\n"
            "    for (int e = tid; e < CC * KD; e += NT) {\n"
            "      int t = e / KD, i = e %% KD;\n"
            "      float bl = sb[(CC - 1) * KD + i];\n"
            "      sQ[t * LQ + i] = %s_h(%s_f(sQ[t * LQ + i]) * __expf(sb[t * KD + i]));\n"
            "      sK[t * LQ + i] = %s_h(%s_f(sK[t * LQ + i]) * __expf(bl - sb[t * KD + i]));\n"
            "    }\n"
            "    __syncthreads();\n",
            name, name, name, name, name);
  }
  /* O = Ab V + Q Sb; the state's decay alongside (O reads Sb, not S) */
  fprintf(out,
          "    for (int tt = warp; tt < (CC / 16) * (VT / 16); tt += NW) {\n"
          "      int ti = tt / (VT / 16), tj = tt %% (VT / 16);\n"
          "      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};\n"
          "      for (int kk = 0; kk <= ti; kk++) {\n"
          "        %s_mma(acc, sAb + ti * 16 * LAB + kk * 16, LAB, 0, sV + kk * 16 * LV + tj * 16, LV, 0);\n"
          "      }\n"
          "      for (int kk = 0; kk < KD / 16; kk++) {\n"
          "        %s_mma(acc, sQ + ti * 16 * LQ + kk * 16, LQ, 0, sSb + kk * 16 * LV + tj * 16, LV, 0);\n"
          "      }\n"
          "      %s_st(acc, sU + ti * 16 * LO + tj * 16, LO);\n"
          "    }\n", name, name, name);
  if (!diag)
    fprintf(out, "    {\n      const float d = __expf(blast);\n"
                 "      for (int e = tid; e < KD * VT; e += NT) sS[(e / VT) * LS + e %% VT] *= d;\n"
                 "    }\n");
  else
    fprintf(out, "    for (int e = tid; e < KD * VT; e += NT) {\n"
                 "      int i = e / VT;\n"
                 "      sS[i * LS + e %% VT] *= __expf(sb[(CC - 1) * KD + i]);\n"
                 "    }\n");
  fprintf(out, "    __syncthreads();\n");
  /* store O */
  fprintf(out,
          "    for (int e = tid; e < CC * VT; e += NT) {\n"
          "      int t = e / VT, j = e %% VT;\n"
          "      if (t >= len || j >= vw) continue;\n"
          "      float x = scale * sU[t * LO + j];\n"
          "      int64_t at = ob + (c0 + t) * o1 + (j0 + j) * o3;\n");
  if (s->out_type == KT_F32)
    fprintf(out, "      ((float *)po)[at] = x;\n");
  else if (s->out_type == KT_BF16)
    fprintf(out, "      ((unsigned short *)po)[at] = %s_f2bf(x);\n", name);
  else
    fprintf(out, "      ((unsigned short *)po)[at] = %s_f2h(x);\n", name);
  fprintf(out, "    }\n");
  /* S += (K e^{b_last - b})^T V */
  fprintf(out,
          "    for (int tt = warp; tt < (KD / 16) * (VT / 16); tt += NW) {\n"
          "      int ti = tt / (VT / 16), tj = tt %% (VT / 16);\n"
          "      float acc[8];\n"
          "      %s_ldacc(acc, sS + ti * 16 * LS + tj * 16, LS);\n"
          "      for (int kk = 0; kk < CC / 16; kk++) {\n"
          "        %s_mma(acc, sK + kk * 16 * LQ + ti * 16, LQ, 1, sV + kk * 16 * LV + tj * 16, LV, 0);\n"
          "      }\n"
          "      %s_st(acc, sS + ti * 16 * LS + tj * 16, LS);\n"
          "    }\n"
          "    __syncthreads();\n"
          "    for (int e = tid; e < KD * VT; e += NT) {\n"
          "      int i = e / VT, j = e %% VT;\n"
          "      sSb[i * LV + j] = %s_h(sS[i * LS + j]);\n"
          "    }\n"
          "  }\n"
          "  __syncthreads();\n",
          name, name, name, name);
  if (s->p_ht >= 0)
    fprintf(out,
            "  for (int e = tid; e < KD * VT; e += NT) {\n"
            "    int i = e / VT, j = e %% VT;\n"
            "    if (j < vw) ((float *)args.ptrs[%d])[n * args.ints[%d] + h * args.ints[%d] + "
            "i * args.ints[%d] + (j0 + j) * args.ints[%d]] = sS[i * LS + j];\n"
            "  }\n",
            s->p_ht, s->s_ht, s->s_ht + 1, s->s_ht + 2, s->s_ht + 3);
  fprintf(out, "}\n");
  return ferror(out) ? 1 : 0;
}
