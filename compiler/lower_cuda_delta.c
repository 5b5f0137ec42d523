/* The hand-structured CUDA chunk kernel of the delta rule (lower_cuda.h): DeltaNet
 * (S' = S + beta k (v - S^T k)^T) and Gated DeltaNet (S' = e^g S first), o = scale S_t^T q_t
 * read after token t's update.
 *
 * One block runs one work item (sequence n, head h, value tile of VT columns): it keeps the
 * state tile S [K, VT] in shared memory in fp32 across the sequence's chunks of C tokens and
 * runs every product on the tensor cores (mma.sync m16n8k16, operands in the input's 16-bit
 * type bf16 or f16, fp32 accumulation; fragments through ldmatrix). NVRTC has no CUDA headers
 * here (no <mma.h>, no <cuda_bf16.h>), so the kernel is plain PTX through inline asm: mma.sync,
 * ldmatrix(.trans), cvt.rn.bf16.f32 / cvt.rn.f16.f32; 16-bit data are unsigned shorts. Needs
 * sm_80 or later. Per chunk, with b_t = the cumulative sum of g inside the chunk (fp32, 0
 * without g; tokens past the sequence end read as q = k = v = g = beta = 0):
 *
 *   G = K K^T, P = Q K^T                               (lower 16x16 tiles only)
 *   A = tril(diag(beta) G * exp(b_t - b_s), -1)        (exponents <= 0 for g <= 0; masked
 *   P = tril(P * exp(b_t - b_s), 0)                     entries are never exponentiated;
 *                                                       both in the product's registers)
 *   T = (I + A)^-1                                     (fp32, blocked forward substitution)
 *   W = (T diag(beta exp(b))) K      [C, K]
 *   D = (T diag(beta)) V - W S_prev  [C, VT]            (fla's v_new: the delta values)
 *   O = scale (exp(b_t) (Q S_prev) + P D)
 *   S = exp(b_last) S_prev + (K exp(b_last - b_s))^T D
 *
 * These follow from the token recurrence: with S'_s = exp(b_s) S_prev + sum_{r<s} exp(b_s -
 * b_r) k_r d_r^T, d_s = beta_s (v_s - S'_s^T k_s), so (I + A) D = beta V - diag(beta exp(b))
 * K S_prev; S_t and o_t likewise (ALGORITHMS.md section 3, lower_chunk_dplr.c for the KIR form;
 * a model of exactly these steps, buffers included, matched the token recurrence to 1e-14 in
 * fp64). As in fla, the operands of the products are rounded to the 16-bit input type: q, k,
 * v as given, T diag(beta) (Tb), T diag(beta exp(b)) (Tw), k exp(b_last - b), P, -W, D and the
 * copy of S_prev (beta and the gates scale T's columns, not k and v: no pass over k, v); the
 * sums, T's solve, the gates and the state are fp32. Gates of -30 underflow to 0, never NaN.
 *
 * T = (I + A)^-1 (unit lower triangular): the C/16 diagonal 16x16 blocks by forward
 * substitution, one thread a column (registers); then block row i = 1 .. C/16-1:
 * X_ij = sum_{k=j}^{i-1} A_ik T_kj, T_ij = -T_ii X_ij for j < i, one element a thread (2
 * barriers a block row). The diagonal blocks of T and the X's live in Tf, the off-diagonal
 * blocks of T over A in Gf (A_ij is dead once row i's X's are formed); Tb and Tw gather them
 * in 16 bits, columns scaled, 4 columns a thread step. Products by T (and P) stop at the
 * diagonal tile.
 *
 * Threads: NT = 512 (16 warps; 256 where CudaChunkShape.threads asks). Products: a warp owns strips of SW 16x16 output tiles side by
 * side in a row (SW = 4, 2 or 1, the widest that leaves no warp idle; mma_strip: the A
 * fragment loaded once a k step, 2 SW independent mma chains), strips w, w + 8, ...; G and P
 * their 2 NB (NB + 1) / 2 lower tiles one at a time. Each loops over k in steps of 16 and
 * keeps its tiles in registers (C element r of half hh at row g + 8 (r / 2), column 8 hh + 2 q + r % 2, lane =
 * 4 g + q), so epilogues are the owner's: -W and D to 16 bits, O's row scaling by exp(b_t)
 * and its store to global memory, S's fp32 store and 16-bit copy. D stays in registers
 * across the barrier that lets it overwrite beta v. The next chunk's q, k, v are loaded into
 * registers (NQ + NQ + NV 16-byte vectors a thread: 16-byte loads where rows are contiguous
 * and aligned, else element loads) right after this chunk's are stored to shared memory, so
 * the global loads are in flight during the chunk's work. Elementwise steps (masks,
 * conversions, T's solve) stride over all threads; the gates' scan is warp 0's (C/32 tokens
 * a lane, then a shuffle scan). 13
 * __syncthreads a chunk (C = 64). MIXC_DELTA_PROF (defined before the source) adds clock64()
 * counters a phase (thread 0, barrier to barrier) summed into `scratch` (12 u64): the bench
 * of test_lower_cuda_delta prints them.
 *
 * Shared memory (dynamic; each region 128-byte aligned; 16-bit rows padded by 8 elements and
 * fp32 state rows by 8 floats, so ldmatrix rows and fragment accesses avoid bank conflicts;
 * sizes for K = V = VT = 128, C = 64):
 *   Sf  fp32 [K][VT+8]  the state                                          68 KiB
 *   Sb  16b  [K][VT+8]  its 16-bit copy (B operand of Q S and W S)          34 KiB
 *   Qs  16b  [C][K+8]   q                                                   17 KiB
 *   Ks  16b  [C][K+8]   k; once G and P are formed, k exp(b_last - b)       17 KiB
 *   Vb  16b  [C][VT+8]  v, then beta v, then D                              17 KiB
 *   Tb, Tw, Pb 16b [C][C+8] T diag(beta), T diag(beta e^b) (gated only), P   3 x 9 KiB
 *   Pl  16b  [C][C+8]   P - Pb (gated, HILO: P D's hi/lo split; D - D's 16 bits, Dl, goes
 *                       over St once D is formed)                                 9 KiB
 *   St  max(2 C C fp32, 2 C (K+8) 16b): Gf (G, A, T's off-diagonal blocks) and Tf (P, T's
 *       diagonal blocks, the X's); after Tb is formed, Wn = -W                   34 KiB
 *   bv, ebv, betav fp32 [C]: b, exp(b), beta                                0.75 KiB
 * 210688 bytes at K = V = 128, C = 64 (229120 gated; one block an SM on Hopper: 232448);
 * 124672 at K = 128, VT = 32; 107264 at K = V = 64. When C = 64 exceeds smem_optin, C = 32
 * is tried (K = 256, VT = 64: 188288 bytes); then -1. The plan's chunk is not read.
 *
 * Work item begin + blockIdx.x = (n H + h) vtiles + tile, columns [tile VT, min(V, (tile + 1)
 * VT)); columns past V read as zero (so they stay zero in S and D) and are never stored.
 * Varlen (p_cu >= 0): B = 1, sequence n is tokens [cu[n], cu[n + 1]). No global scratch.
 * The printed constant LDSM (true) selects ldmatrix; false loads the fragments element by
 * element (test_lower_cuda_delta runs both). ptxas (sm_90a, K = V = 128): 127 registers at 512 threads (174 at 256), no
 * spills. */
#include <string.h>

#include "lower_cuda.h"

/* A device function `float fn(const void *p, int64_t i)` loading element i of type t. */
static void put_loader(FILE *out, const char *fn, KType t) {
  fprintf(out, "__device__ __forceinline__ float %s(const void *p, int64_t i) {\n", fn);
  if (t == KT_F32)
    fputs("  return ((const float *)p)[i];\n}\n", out);
  else
    fprintf(out, "  return %s(((const u16 *)p)[i]);\n}\n", t == KT_F16 ? "f16_to_f" : "bf16_to_f");
}
static int float_type(KType t) { return t == KT_F32 || t == KT_BF16 || t == KT_F16; }
static int64_t rnd128(int64_t x) { return (x + 127) / 128 * 128; }
static int64_t strip_width(int64_t rows, int64_t cols, int nw) {
  for (int64_t w = 4; w > 1; w /= 2)
    if (cols % w == 0 && rows * cols / w >= nw) return w;
  return 1;
}

typedef struct DeltaLayout {
  int64_t lq, lv, ls, lc; /* leading dimensions (padded against bank conflicts) */
  int64_t sf, sb, qs, ks, vb, tb, tw, pb, pl, st, bv, ebv, betav, total;
  int hilo; /* P D with the hi/lo split (HILO): Pl here, Dl over St */
} DeltaLayout;

static void delta_layout(int64_t K, int64_t VT, int64_t C, int has_g, int hilo, DeltaLayout *L) {
  int64_t o = 0;
  L->lq = K + 8, L->lv = VT + 8, L->ls = VT + 8, L->lc = C + 8;
  int64_t st = 2 * C * C * 4; /* Gf, Tf; later Wn */
  if (2 * C * L->lq * 2 > st) st = 2 * C * L->lq * 2;
  L->hilo = hilo && C * L->lv * 2 <= st; /* Dl [C][LV] over St once D is formed */
#define MIXC__REGION(f, bytes) (L->f = o, o += rnd128(bytes))
  MIXC__REGION(sf, K * L->ls * 4);
  MIXC__REGION(sb, K * L->lv * 2);
  MIXC__REGION(qs, C * L->lq * 2);
  MIXC__REGION(ks, C * L->lq * 2);
  MIXC__REGION(vb, C * L->lv * 2);
  MIXC__REGION(tb, C * L->lc * 2);
  MIXC__REGION(tw, has_g ? C * L->lc * 2 : 0); /* Tw: Tb without g */
  MIXC__REGION(pb, C * L->lc * 2);
  MIXC__REGION(pl, L->hilo ? C * L->lc * 2 : 0);
  MIXC__REGION(st, st);
  MIXC__REGION(bv, C * 4);
  MIXC__REGION(ebv, C * 4);
  MIXC__REGION(betav, C * 4);
#undef MIXC__REGION
  L->total = o;
}

/* The device helpers (namespace NAME_ns); MMA_T is replaced by the input type's PTX name. */
static const char *const delta_helpers[] = {
    "__host__ __device__ constexpr int slot(int x) { return x < 0 ? 0 : x; }\n",
    "struct __align__(16) V4 {\n",
    "  uint32_t x, y, z, w;\n",
    "};\n",
    "struct __align__(16) F4 {\n",
    "  float x, y, z, w;\n",
    "};\n",
    "struct __align__(8) U2 {\n",
    "  uint32_t x, y;\n",
    "};\n",
    "/* 8 16-bit elements p[0], p[stride], ... (the first n; the rest 0) as a V4 */\n",
    "__device__ __forceinline__ V4 gather8(const u16 *p, int64_t stride, int n) {\n",
    "  u16 x[8];\n",
    "#pragma unroll\n",
    "  for (int u = 0; u < 8; u++) x[u] = u < n ? p[u * stride] : (u16)0;\n",
    "  V4 r;\n",
    "  r.x = (uint32_t)x[0] | ((uint32_t)x[1] << 16), r.y = (uint32_t)x[2] | ((uint32_t)x[3] << 16);\n",
    "  r.z = (uint32_t)x[4] | ((uint32_t)x[5] << 16), r.w = (uint32_t)x[6] | ((uint32_t)x[7] << 16);\n",
    "  return r;\n",
    "}\n",
    "__device__ __forceinline__ void zero(float d[2][4]) {\n",
    "#pragma unroll\n",
    "  for (int hh = 0; hh < 2; hh++)\n",
    "#pragma unroll\n",
    "    for (int r = 0; r < 4; r++) d[hh][r] = 0.0f;\n",
    "}\n",
    "__device__ __forceinline__ uint32_t pack(u16 lo, u16 hi) {\n",
    "  return (uint32_t)lo | ((uint32_t)hi << 16);\n",
    "}\n",
    "/* ldmatrix .x4 (shared memory, 16-byte rows): lane l gives the address of row l % 8 of\n",
    " * matrix l / 8; register j gets matrix j's row lane / 4, columns 2 (lane % 4) + {0, 1}\n",
    " * (.trans: rows 2 (lane % 4) + {0, 1}, column lane / 4). */\n",
    "__device__ __forceinline__ uint32_t smem_addr(const void *p) {\n",
    "  uint32_t r;\n",
    "  asm(\"{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }\" : \"=r\"(r) : \"l\"(p));\n",
    "  return r;\n",
    "}\n",
    "__device__ __forceinline__ void ldsm4(uint32_t r[4], const u16 *p) {\n",
    "  asm volatile(\"ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\\n\"\n",
    "               : \"=r\"(r[0]), \"=r\"(r[1]), \"=r\"(r[2]), \"=r\"(r[3])\n",
    "               : \"r\"(smem_addr(p)));\n",
    "}\n",
    "__device__ __forceinline__ void ldsm4t(uint32_t r[4], const u16 *p) {\n",
    "  asm volatile(\"ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\\n\"\n",
    "               : \"=r\"(r[0]), \"=r\"(r[1]), \"=r\"(r[2]), \"=r\"(r[3])\n",
    "               : \"r\"(smem_addr(p)));\n",
    "}\n",
    "/* d[j] (NTL 16 x 16 tiles side by side, each two m16n8 halves) += A B_j over kdim (a multiple\n",
    " * of 16): A's element (r, k) at a[r * lda + k] (AT: a[k * lda + r]), B_j's (k, c) at\n",
    " * b[k * ldb + 16 j + c] (BT: b[(16 j + c) * ldb + k]). The A fragment is loaded once a k step\n",
    " * for the NTL tiles, whose 2 NTL mma chains are independent. Fragments of mma.m16n8k16 (PTX\n",
    " * ISA), lane = 4 g + q: A register i holds row g + 8 (i % 2), columns 2 q + 8 (i / 2) + {0, 1};\n",
    " * B register i rows 2 q + 8 i + {0, 1}, column g; C element r row g + 8 (r / 2), column\n",
    " * 2 q + r % 2. LDSM: the fragments through ldmatrix (every row address 16-byte aligned: the\n",
    " * leading dimensions are multiples of 8), else element loads. */\n",
    "template <bool AT, bool BT, int NTL>\n",
    "__device__ __forceinline__ void mma_strip(float (*d)[2][4], const u16 *a, int lda, const u16 *b,\n",
    "                                          int ldb, int kdim, int g, int q) {\n",
    "  const int mi = g >> 1, row = (g & 1) * 4 + q; /* lane / 8, lane % 8 */\n",
    "#pragma unroll 2\n",
    "  for (int k0 = 0; k0 < kdim; k0 += 16) {\n",
    "    uint32_t ra[4];\n",
    "    if (LDSM) {\n",
    "      if (AT)\n",
    "        ldsm4t(ra, a + (k0 + 8 * (mi >> 1) + row) * lda + 8 * (mi & 1));\n",
    "      else\n",
    "        ldsm4(ra, a + (8 * (mi & 1) + row) * lda + k0 + 8 * (mi >> 1));\n",
    "    } else {\n",
    "#pragma unroll\n",
    "      for (int i = 0; i < 4; i++) {\n",
    "        const int r = g + 8 * (i & 1), k = k0 + 2 * q + 8 * (i >> 1);\n",
    "        if (AT)\n",
    "          ra[i] = pack(a[k * lda + r], a[(k + 1) * lda + r]);\n",
    "        else\n",
    "          ra[i] = *(const uint32_t *)(a + r * lda + k);\n",
    "      }\n",
    "    }\n",
    "#pragma unroll\n",
    "    for (int j = 0; j < NTL; j++) {\n",
    "      uint32_t rb[4]; /* rb[2 hh + i]: B register i of the half hh */\n",
    "      const u16 *bj = BT ? b + 16 * j * ldb : b + 16 * j;\n",
    "      if (LDSM) {\n",
    "        if (BT)\n",
    "          ldsm4(rb, bj + (8 * (mi >> 1) + row) * ldb + k0 + 8 * (mi & 1));\n",
    "        else\n",
    "          ldsm4t(rb, bj + (k0 + 8 * (mi & 1) + row) * ldb + 8 * (mi >> 1));\n",
    "      } else {\n",
    "#pragma unroll\n",
    "        for (int hh = 0; hh < 2; hh++)\n",
    "#pragma unroll\n",
    "          for (int i = 0; i < 2; i++) {\n",
    "            const int k = k0 + 2 * q + 8 * i, c = 8 * hh + g;\n",
    "            if (BT)\n",
    "              rb[2 * hh + i] = *(const uint32_t *)(bj + c * ldb + k);\n",
    "            else\n",
    "              rb[2 * hh + i] = pack(bj[k * ldb + c], bj[(k + 1) * ldb + c]);\n",
    "          }\n",
    "      }\n",
    "#pragma unroll\n",
    "      for (int hh = 0; hh < 2; hh++)\n",
    "        asm(\"mma.sync.aligned.m16n8k16.row.col.f32.MMA_T.MMA_T.f32 {%0,%1,%2,%3}, \"\n",
    "            \"{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\\n\"\n",
    "            : \"+f\"(d[j][hh][0]), \"+f\"(d[j][hh][1]), \"+f\"(d[j][hh][2]), \"+f\"(d[j][hh][3])\n",
    "            : \"r\"(ra[0]), \"r\"(ra[1]), \"r\"(ra[2]), \"r\"(ra[3]), \"r\"(rb[2 * hh]),\n",
    "              \"r\"(rb[2 * hh + 1]));\n",
    "    }\n",
    "  }\n",
    "}\n",
    "template <bool AT, bool BT>\n",
    "__device__ __forceinline__ void mma_tile(float d[2][4], const u16 *a, int lda, const u16 *b,\n",
    "                                         int ldb, int kdim, int g, int q) {\n",
    "  mma_strip<AT, BT, 1>((float (*)[2][4])d, a, lda, b, ldb, kdim, g, q);\n",
    "}\n",
    "__device__ __forceinline__ void store_f32(const float d[2][4], float *c, int ldc, int g, int q) {\n",
    "#pragma unroll\n",
    "  for (int hh = 0; hh < 2; hh++)\n",
    "#pragma unroll\n",
    "    for (int r = 0; r < 4; r++) c[(g + 8 * (r >> 1)) * ldc + 8 * hh + 2 * q + (r & 1)] = d[hh][r];\n",
    "}\n",
    "/* the low parts: x - (16-bit x), rounded to 16 bits (the hi/lo split of P and D) */\n",
    "__device__ __forceinline__ void store_16lo(const float d[2][4], u16 *c, int ldc, int g, int q) {\n",
    "#pragma unroll\n",
    "  for (int hh = 0; hh < 2; hh++)\n",
    "#pragma unroll\n",
    "    for (int r = 0; r < 4; r += 2)\n",
    "      *(uint32_t *)(c + (g + 8 * (r >> 1)) * ldc + 8 * hh + 2 * q) =\n",
    "          pack(to16(d[hh][r] - from16(to16(d[hh][r]))),\n",
    "               to16(d[hh][r + 1] - from16(to16(d[hh][r + 1]))));\n",
    "}\n",
    "__device__ __forceinline__ void store_16(const float d[2][4], u16 *c, int ldc, float m, int g,\n",
    "                                         int q) {\n",
    "#pragma unroll\n",
    "  for (int hh = 0; hh < 2; hh++)\n",
    "#pragma unroll\n",
    "    for (int r = 0; r < 4; r += 2)\n",
    "      *(uint32_t *)(c + (g + 8 * (r >> 1)) * ldc + 8 * hh + 2 * q) =\n",
    "          pack(to16(m * d[hh][r]), to16(m * d[hh][r + 1]));\n",
    "}\n",
};

/* The kernel's body after its constants (namespace NAME_ns, `using`d). */
static const char *const delta_body[] = {
    "  const int tid = (int)threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, q = lane & 3;\n",
    "  const int64_t item = begin + (int64_t)blockIdx.x;\n",
    "  if (item >= end) return;\n",
    "#ifdef MIXC_DELTA_PROF /* cycles a phase (thread 0, barrier to barrier), summed into scratch */\n",
    "  long long dprof[12] = {0}, dprof_t = clock64();\n",
    "#endif\n",
    "  const int64_t H = args.ints[I_H], T = args.ints[I_T];\n",
    "  const int64_t seg = item % SEGS, it = item / SEGS;\n",
    "  if (LOCM && seg == SEGS - 1) return; /* the last segment's transition is not needed */\n",
    "  const int64_t tile = it % VTILES, h = (it / VTILES) % H, n = it / (VTILES * H);\n",
    "  int64_t bidx = n, t0 = 0, len = T;\n",
    "  if (P_CU >= 0) {\n",
    "    bidx = 0;\n",
    "    t0 = ld_cu(args.ptrs[slot(P_CU)], n);\n",
    "    len = ld_cu(args.ptrs[slot(P_CU)], n + 1) - t0;\n",
    "  }\n",
    "  if (SEGS > 1) { /* this segment's chunks: the sequence's in SEGS runs of equal length */\n",
    "    const int64_t per = ((len + C - 1) / C + SEGS - 1) / SEGS * C;\n",
    "    const int64_t s0 = seg * per < len ? seg * per : len;\n",
    "    const int64_t s1 = s0 + per < len ? s0 + per : len;\n",
    "    t0 += s0;\n",
    "    len = s1 - s0;\n",
    "  }\n",
    "  /* value columns [j0, j0 + ncol); LOCM: columns VTV.. of the tile are the transition's */\n",
    "  const int j0 = (int)tile * VTV;\n",
    "  const int ncol = V - j0 < VTV ? V - j0 : VTV;\n",
    "  float sc = (float)SCALE;\n",
    "  if (P_SCALE >= 0) sc = ld_scale(args.ptrs[slot(P_SCALE)], h * args.ints[slot(S_SCALE)]);\n",
    "  const u16 *qp = (const u16 *)args.ptrs[P_Q], *kp = (const u16 *)args.ptrs[P_K];\n",
    "  const u16 *vp = (const u16 *)args.ptrs[P_V];\n",
    "  void *op = args.ptrs[P_O];\n",
    "  const int64_t q1 = args.ints[S_Q + 1], q3 = args.ints[S_Q + 3];\n",
    "  const int64_t k1 = args.ints[S_K + 1], k3 = args.ints[S_K + 3];\n",
    "  const int64_t v1 = args.ints[S_V + 1], v3 = args.ints[S_V + 3];\n",
    "  const int64_t o1 = args.ints[S_O + 1], o3 = args.ints[S_O + 3];\n",
    "  qp += bidx * args.ints[S_Q] + h * args.ints[S_Q + 2] + t0 * q1;\n",
    "  kp += bidx * args.ints[S_K] + h * args.ints[S_K + 2] + t0 * k1;\n",
    "  vp += bidx * args.ints[S_V] + h * args.ints[S_V + 2] + t0 * v1 + (int64_t)j0 * v3;\n",
    "  /* 16-byte loads where rows are contiguous and aligned */\n",
    "  const bool vq = q3 == 1 && q1 % 8 == 0 && ((unsigned long long)qp & 15) == 0;\n",
    "  const bool vk = k3 == 1 && k1 % 8 == 0 && ((unsigned long long)kp & 15) == 0;\n",
    "  const bool vv = v3 == 1 && v1 % 8 == 0 && ((unsigned long long)vp & 15) == 0;\n",
    "  const int64_t ob = bidx * args.ints[S_O] + h * args.ints[S_O + 2] + t0 * o1 + (int64_t)j0 * o3;\n",
    "  int64_t gb = 0, g1 = 0, beb = 0, be1 = 0;\n",
    "  if (HAS_G) {\n",
    "    g1 = args.ints[slot(S_G) + 1];\n",
    "    gb = bidx * args.ints[slot(S_G)] + h * args.ints[slot(S_G) + 2] + t0 * g1;\n",
    "  }\n",
    "  if (HAS_BETA) {\n",
    "    be1 = args.ints[slot(S_BETA) + 1];\n",
    "    beb = bidx * args.ints[slot(S_BETA)] + h * args.ints[slot(S_BETA) + 2] + t0 * be1;\n",
    "  }\n",
    "  float *Sf = (float *)(SMEM + OFF_SF), *Gf = (float *)(SMEM + OFF_ST), *Tf = Gf + C * C;\n",
    "  float *bv = (float *)(SMEM + OFF_BV), *ebv = (float *)(SMEM + OFF_EBV);\n",
    "  float *betav = (float *)(SMEM + OFF_BETAV);\n",
    "  u16 *Sb = (u16 *)(SMEM + OFF_SB), *Qs = (u16 *)(SMEM + OFF_QS);\n",
    "  u16 *Ks = (u16 *)(SMEM + OFF_KS);\n",
    "  u16 *Wn = (u16 *)(SMEM + OFF_ST) + C * LQ, *Vb = (u16 *)(SMEM + OFF_VB);\n",
    "  u16 *Tb = (u16 *)(SMEM + OFF_TB), *Pb = (u16 *)(SMEM + OFF_PB);\n",
    "  u16 *Tw = HAS_G ? (u16 *)(SMEM + OFF_TW) : Tb;\n",
    "  u16 *Pl = (u16 *)(SMEM + OFF_PL), *Dl = (u16 *)(SMEM + OFF_ST); /* HILO: P's and D's low parts */\n",
    "  (void)Pl, (void)Dl;\n",
    "  /* the initial state */\n",
    "  for (int e = tid; e < K * VT; e += NT) {\n",
    "    const int r = e / VT, c = e % VT;\n",
    "    float x = 0.0f;\n",
    "    if (LOCM)\n",
    "      x = c >= VTV && tile * PT + (c - VTV) == r ? 1.0f : 0.0f;\n",
    "    else if (OUTM && seg > 0 && c < ncol)\n",
    "      x = scratch[(item - 1) * IF + r * LW + c];\n",
    "    else if (P_H0 >= 0 && c < ncol)\n",
    "      x = ((const float *)args.ptrs[slot(P_H0)])[n * args.ints[slot(S_H0)] +\n",
    "          h * args.ints[slot(S_H0) + 1] + r * args.ints[slot(S_H0) + 2] +\n",
    "          (int64_t)(j0 + c) * args.ints[slot(S_H0) + 3]];\n",
    "    Sf[r * LS + c] = x;\n",
    "    Sb[r * LV + c] = to16(x);\n",
    "  }\n",
    "  /* fetch(cn): the q, k, v rows of the chunk at cn into registers (8 elements a V4, 16-byte\n",
    "   * loads where rows are contiguous and aligned; rows past the end and columns past ncol 0) */\n",
    "  V4 pq[NQ], pk[NQ], pv[NV];\n",
    "  auto fetch = [&](int64_t cn) {\n",
    "    const int nn = len - cn < C ? (int)(len - cn) : C;\n",
    "#pragma unroll\n",
    "    for (int u = 0; u < NQ; u++) {\n",
    "      const int e = tid + u * NT, t = e / (K / 8), i = e % (K / 8) * 8;\n",
    "      V4 a = {0u, 0u, 0u, 0u}, b = {0u, 0u, 0u, 0u};\n",
    "      if ((NQ * NT == C * (K / 8) || e < C * (K / 8)) && t < nn) {\n",
    "        if (!LOCM)\n",
    "          a = vq ? *(const V4 *)(qp + (cn + t) * q1 + i) : gather8(qp + (cn + t) * q1 + i * q3, q3, 8);\n",
    "        b = vk ? *(const V4 *)(kp + (cn + t) * k1 + i) : gather8(kp + (cn + t) * k1 + i * k3, k3, 8);\n",
    "      }\n",
    "      pq[u] = a;\n",
    "      pk[u] = b;\n",
    "    }\n",
    "#pragma unroll\n",
    "    for (int u = 0; u < NV; u++) {\n",
    "      const int e = tid + u * NT, t = e / (VT / 8), c = e % (VT / 8) * 8;\n",
    "      V4 a = {0u, 0u, 0u, 0u};\n",
    "      if ((NV * NT == C * (VT / 8) || e < C * (VT / 8)) && t < nn && c < ncol) {\n",
    "        if (vv && c + 8 <= ncol)\n",
    "          a = *(const V4 *)(vp + (cn + t) * v1 + c);\n",
    "        else\n",
    "          a = gather8(vp + (cn + t) * v1 + c * v3, v3, ncol - c < 8 ? ncol - c : 8);\n",
    "      }\n",
    "      pv[u] = a;\n",
    "    }\n",
    "  };\n",
    "  if (len > 0) fetch(0);\n",
    "  __syncthreads();\n",
    "  DPROF(11);\n",
    "  for (int64_t c0 = 0; c0 < len; c0 += C) {\n",
    "    const int nv = len - c0 < C ? (int)(len - c0) : C;\n",
    "    /* the gates (warp 0: PER tokens a lane, then a shuffle scan), beta; q, k, v */\n",
    "    if (warp == 0) {\n",
    "      float gl[PER], run = 0.0f;\n",
    "#pragma unroll\n",
    "      for (int u = 0; u < PER; u++) {\n",
    "        const int t = lane * PER + u;\n",
    "        float gv = 0.0f;\n",
    "        if (HAS_G && t < nv) gv = ld_g(args.ptrs[slot(P_G)], gb + (c0 + t) * g1);\n",
    "        run += gv;\n",
    "        gl[u] = run;\n",
    "        float be = 0.0f;\n",
    "        if (t < nv) be = HAS_BETA ? ld_beta(args.ptrs[slot(P_BETA)], beb + (c0 + t) * be1) : 1.0f;\n",
    "        betav[t] = be;\n",
    "      }\n",
    "      float incl = run;\n",
    "#pragma unroll\n",
    "      for (int d = 1; d < 32; d <<= 1) {\n",
    "        const float o = __shfl_up_sync(0xffffffffu, incl, d);\n",
    "        if (lane >= d) incl += o;\n",
    "      }\n",
    "      const float excl = incl - run;\n",
    "#pragma unroll\n",
    "      for (int u = 0; u < PER; u++) {\n",
    "        const float b = HAS_G ? excl + gl[u] : 0.0f;\n",
    "        bv[lane * PER + u] = b;\n",
    "        ebv[lane * PER + u] = HAS_G ? expf(b) : 1.0f;\n",
    "      }\n",
    "    }\n",
    "    /* q, k, v of this chunk: from the registers loaded during the previous chunk */\n",
    "#pragma unroll\n",
    "    for (int u = 0; u < NQ; u++) {\n",
    "      const int e = tid + u * NT, t = e / (K / 8), i = e % (K / 8) * 8;\n",
    "      if (NQ * NT == C * (K / 8) || e < C * (K / 8)) {\n",
    "        *(V4 *)(Qs + t * LQ + i) = pq[u];\n",
    "        *(V4 *)(Ks + t * LQ + i) = pk[u];\n",
    "      }\n",
    "    }\n",
    "#pragma unroll\n",
    "    for (int u = 0; u < NV; u++) {\n",
    "      const int e = tid + u * NT, t = e / (VT / 8), c = e % (VT / 8) * 8;\n",
    "      if (NV * NT == C * (VT / 8) || e < C * (VT / 8)) *(V4 *)(Vb + t * LV + c) = pv[u];\n",
    "    }\n",
    "    __syncthreads();\n",
    "    DPROF(0);\n",
    "    /* the next chunk's q, k, v into registers (in flight during this chunk's work) */\n",
    "    if (c0 + C < len) fetch(c0 + C);\n",
    "    /* G = K K^T and P = Q K^T (lower tiles only), masked and gated in the registers: A =\n",
    "     * beta_t G e^(b_t - b_s) (s < t) into Gf in fp32, P e^(b_t - b_s) (s <= t) into Pb */\n",
    "    for (int w = warp; w < (LOCM ? 1 : 2) * NL; w += NW) {\n",
    "      const int which = w / NL;\n",
    "      int ti = 0, tj = w % NL;\n",
    "      while (tj > ti) tj -= ++ti;\n",
    "      float d[2][4];\n",
    "      zero(d);\n",
    "      mma_tile<false, true>(d, (which ? Qs : Ks) + ti * 16 * LQ, LQ, Ks + tj * 16 * LQ, LQ, K, g,\n",
    "                            q);\n",
    "#pragma unroll\n",
    "      for (int hh = 0; hh < 2; hh++)\n",
    "#pragma unroll\n",
    "        for (int r = 0; r < 4; r++) {\n",
    "          const int t = ti * 16 + g + 8 * (r >> 1), s = tj * 16 + 8 * hh + 2 * q + (r & 1);\n",
    "          float x = 0.0f;\n",
    "          if (which ? s <= t : s < t) {\n",
    "            x = d[hh][r];\n",
    "            if (HAS_G) x *= expf(bv[t] - bv[s]);\n",
    "            if (!which) x *= betav[t];\n",
    "          }\n",
    "          d[hh][r] = x;\n",
    "        }\n",
    "      if (which) {\n",
    "        store_16(d, Pb + ti * 16 * LC + tj * 16, LC, 1.0f, g, q);\n",
    "        if (HILO) store_16lo(d, Pl + ti * 16 * LC + tj * 16, LC, g, q);\n",
    "      } else\n",
    "        store_f32(d, Gf + ti * 16 * C + tj * 16, C, g, q);\n",
    "    }\n",
    "    __syncthreads();\n",
    "    DPROF(1);\n",
    "    /* T = (I + A)^-1: the diagonal blocks, one thread a column */\n",
    "    if (tid < C) {\n",
    "      const int base = tid & ~15, c = tid & 15;\n",
    "      float x[16];\n",
    "#pragma unroll\n",
    "      for (int r = 0; r < 16; r++) {\n",
    "        float v = r == c ? 1.0f : 0.0f;\n",
    "#pragma unroll\n",
    "        for (int m = 0; m < r; m++) v -= Gf[(base + r) * C + base + m] * x[m];\n",
    "        x[r] = r < c ? 0.0f : v;\n",
    "        Tf[(base + r) * C + base + c] = x[r];\n",
    "      }\n",
    "    }\n",
    "    __syncthreads();\n",
    "    DPROF(3);\n",
    "    /* block rows: X_ij = sum_{k=j}^{i-1} A_ik T_kj into Tf, T_ij = -T_ii X_ij into Gf */\n",
    "    for (int bi = 1; bi < NB; bi++) {\n",
    "      for (int e = tid; e < bi * 256; e += NT) {\n",
    "        const int j = e >> 8, row = bi * 16 + ((e >> 4) & 15), col = j * 16 + (e & 15);\n",
    "        float acc = 0.0f;\n",
    "#pragma unroll\n",
    "        for (int k = 0; k < NB - 1; k++) {\n",
    "          if (k < j || k >= bi) continue;\n",
    "          const float *tk = k == j ? Tf : Gf;\n",
    "#pragma unroll\n",
    "          for (int m = 0; m < 16; m++)\n",
    "            acc += Gf[row * C + k * 16 + m] * tk[(k * 16 + m) * C + col];\n",
    "        }\n",
    "        Tf[row * C + col] = acc;\n",
    "      }\n",
    "      __syncthreads();\n",
    "      for (int e = tid; e < bi * 256; e += NT) {\n",
    "        const int r = (e >> 4) & 15, row = bi * 16 + r, col = (e >> 8) * 16 + (e & 15);\n",
    "        float acc = 0.0f;\n",
    "#pragma unroll\n",
    "        for (int m = 0; m < 16; m++)\n",
    "          if (m <= r) acc += Tf[row * C + bi * 16 + m] * Tf[(bi * 16 + m) * C + col];\n",
    "        Gf[row * C + col] = -acc;\n",
    "      }\n",
    "      __syncthreads();\n",
    "      DPROF(4);\n",
    "    }\n",
    "    /* T diag(beta) into Tb and T diag(beta e^b) into Tw (Tb without g), in 16 bits, 4\n",
    "     * columns a step */\n",
    "    for (int e = tid; e < C * C / 4; e += NT) {\n",
    "      const int r = e / (C / 4), c = e % (C / 4) * 4;\n",
    "      const F4 tf = *(const F4 *)(Tf + r * C + c), gf = *(const F4 *)(Gf + r * C + c);\n",
    "      const float tv[4] = {tf.x, tf.y, tf.z, tf.w}, gv[4] = {gf.x, gf.y, gf.z, gf.w};\n",
    "      u16 xb[4], xw[4];\n",
    "#pragma unroll\n",
    "      for (int u = 0; u < 4; u++) {\n",
    "        const int cc = c + u;\n",
    "        const float x = ((r >> 4) == (cc >> 4) ? tv[u] : r > cc ? gv[u] : 0.0f) * betav[cc];\n",
    "        xb[u] = to16(x);\n",
    "        xw[u] = to16(x * ebv[cc]);\n",
    "      }\n",
    "      *(U2 *)(Tb + r * LC + c) = U2{pack(xb[0], xb[1]), pack(xb[2], xb[3])};\n",
    "      if (HAS_G) *(U2 *)(Tw + r * LC + c) = U2{pack(xw[0], xw[1]), pack(xw[2], xw[3])};\n",
    "    }\n",
    "    __syncthreads();\n",
    "    DPROF(5);\n",
    "    /* -W = -Tw K in 16 bits (Tw is lower triangular: k up to the diagonal tile) */\n",
    "    for (int w = warp; w < NB * (KB / SWK); w += NW) {\n",
    "      const int ti = w / (KB / SWK), tj = w % (KB / SWK) * SWK;\n",
    "      float d[SWK][2][4];\n",
    "#pragma unroll\n",
    "      for (int j = 0; j < SWK; j++) zero(d[j]);\n",
    "      mma_strip<false, false, SWK>(d, Tw + ti * 16 * LC, LC, Ks + tj * 16, LQ, (ti + 1) * 16, g,\n",
    "                                   q);\n",
    "#pragma unroll\n",
    "      for (int j = 0; j < SWK; j++) store_16(d[j], Wn + ti * 16 * LQ + (tj + j) * 16, LQ, -1.0f, g, q);\n",
    "    }\n",
    "    __syncthreads();\n",
    "    DPROF(7);\n",
    "    /* D = Tb V + (-W) S_prev, kept in registers over the barrier, then over Vb */\n",
    "    {\n",
    "      float d[DS][SWV][2][4];\n",
    "#pragma unroll\n",
    "      for (int u = 0; u < DS; u++) {\n",
    "        const int w = warp + u * NW, ti = w / (VB / SWV), tj = w % (VB / SWV) * SWV;\n",
    "#pragma unroll\n",
    "        for (int j = 0; j < SWV; j++) zero(d[u][j]);\n",
    "        if (w < NB * (VB / SWV)) {\n",
    "          mma_strip<false, false, SWV>(d[u], Tb + ti * 16 * LC, LC, Vb + tj * 16, LV,\n",
    "                                       (ti + 1) * 16, g, q);\n",
    "          mma_strip<false, false, SWV>(d[u], Wn + ti * 16 * LQ, LQ, Sb + tj * 16, LV, K, g, q);\n",
    "        }\n",
    "      }\n",
    "      __syncthreads();\n",
    "#pragma unroll\n",
    "      for (int u = 0; u < DS; u++) {\n",
    "        const int w = warp + u * NW, ti = w / (VB / SWV), tj = w % (VB / SWV) * SWV;\n",
    "        if (w < NB * (VB / SWV))\n",
    "#pragma unroll\n",
    "          for (int j = 0; j < SWV; j++) {\n",
    "            store_16(d[u][j], Vb + ti * 16 * LV + (tj + j) * 16, LV, 1.0f, g, q);\n",
    "            /* Wn and the rest of St are dead: D's low part over them, for P D */\n",
    "            if (HILO && !LOCM) store_16lo(d[u][j], Dl + ti * 16 * LV + (tj + j) * 16, LV, g, q);\n",
    "          }\n",
    "      }\n",
    "    }\n",
    "    /* k exp(b_last - b) over Ks (no product reads Ks until the state's) */\n",
    "    if (HAS_G)\n",
    "      for (int e = tid; e < C * K; e += NT) {\n",
    "        const int t = e / K, i = e % K;\n",
    "        Ks[t * LQ + i] = to16(expf(bv[C - 1] - bv[t]) * from16(Ks[t * LQ + i]));\n",
    "      }\n",
    "    __syncthreads();\n",
    "    DPROF(8);\n",
    "    /* O = scale (exp(b) (Q S_prev) + P D), stored from the registers (column pairs in one\n",
    "     * store where contiguous and aligned) */\n",
    "    for (int w = warp; w < (LOCM ? 0 : NB * (VB / SWV)); w += NW) {\n",
    "      const int ti = w / (VB / SWV), tj = w % (VB / SWV) * SWV;\n",
    "      float d[SWV][2][4];\n",
    "#pragma unroll\n",
    "      for (int j = 0; j < SWV; j++) zero(d[j]);\n",
    "      mma_strip<false, false, SWV>(d, Qs + ti * 16 * LQ, LQ, Sb + tj * 16, LV, K, g, q);\n",
    "      if (HAS_G) {\n",
    "        const float e0 = ebv[ti * 16 + g], e1 = ebv[ti * 16 + g + 8];\n",
    "#pragma unroll\n",
    "        for (int j = 0; j < SWV; j++)\n",
    "#pragma unroll\n",
    "          for (int hh = 0; hh < 2; hh++) {\n",
    "            d[j][hh][0] *= e0, d[j][hh][1] *= e0, d[j][hh][2] *= e1, d[j][hh][3] *= e1;\n",
    "          }\n",
    "      }\n",
    "      mma_strip<false, false, SWV>(d, Pb + ti * 16 * LC, LC, Vb + tj * 16, LV, (ti + 1) * 16, g,\n",
    "                                   q);\n",
    "      if (HILO) { /* P D = Ph Dh + Ph Dl + Pl Dh (Pl Dl below the fp32 sums' precision) */\n",
    "        mma_strip<false, false, SWV>(d, Pb + ti * 16 * LC, LC, Dl + tj * 16, LV, (ti + 1) * 16,\n",
    "                                     g, q);\n",
    "        mma_strip<false, false, SWV>(d, Pl + ti * 16 * LC, LC, Vb + tj * 16, LV, (ti + 1) * 16,\n",
    "                                     g, q);\n",
    "      }\n",
    "#pragma unroll\n",
    "      for (int j = 0; j < SWV; j++)\n",
    "#pragma unroll\n",
    "        for (int hh = 0; hh < 2; hh++)\n",
    "#pragma unroll\n",
    "          for (int r = 0; r < 4; r += 2) {\n",
    "            const int row = ti * 16 + g + 8 * (r >> 1), col = (tj + j) * 16 + 8 * hh + 2 * q;\n",
    "            if (row < nv && col < ncol)\n",
    "              st_out2(op, ob + (c0 + row) * o1 + col * o3, o3, sc * d[j][hh][r],\n",
    "                      sc * d[j][hh][r + 1], col + 1 < ncol);\n",
    "          }\n",
    "    }\n",
    "    __syncthreads();\n",
    "    DPROF(9);\n",
    "    /* S = exp(b_last) S_prev + (K exp(b_last - b))^T D, and its 16-bit copy */\n",
    "    {\n",
    "      const float el = HAS_G ? ebv[C - 1] : 1.0f;\n",
    "      for (int w = warp; w < KB * (VB / SWS); w += NW) {\n",
    "        const int ti = w / (VB / SWS), tj = w % (VB / SWS) * SWS;\n",
    "        float d[SWS][2][4];\n",
    "#pragma unroll\n",
    "        for (int j = 0; j < SWS; j++)\n",
    "#pragma unroll\n",
    "          for (int hh = 0; hh < 2; hh++)\n",
    "#pragma unroll\n",
    "            for (int r = 0; r < 4; r++)\n",
    "              d[j][hh][r] = el * Sf[(ti * 16 + g + 8 * (r >> 1)) * LS + (tj + j) * 16 + 8 * hh +\n",
    "                                    2 * q + (r & 1)];\n",
    "        mma_strip<true, false, SWS>(d, Ks + ti * 16, LQ, Vb + tj * 16, LV, C, g, q);\n",
    "#pragma unroll\n",
    "        for (int j = 0; j < SWS; j++) {\n",
    "          store_f32(d[j], Sf + ti * 16 * LS + (tj + j) * 16, LS, g, q);\n",
    "          store_16(d[j], Sb + ti * 16 * LV + (tj + j) * 16, LV, 1.0f, g, q);\n",
    "        }\n",
    "      }\n",
    "    }\n",
    "    __syncthreads();\n",
    "    DPROF(10);\n",
    "  }\n",
    "#ifdef MIXC_DELTA_PROF\n",
    "  if (tid == 0)\n",
    "    for (int i = 0; i < 12; i++)\n",
    "      atomicAdd((unsigned long long *)scratch + i, (unsigned long long)dprof[i]);\n",
    "#endif\n",
    "  if (LOCM) /* the segment's state and transition columns, for the combine */\n",
    "    for (int e = tid; e < K * VT; e += NT) {\n",
    "      const int r = e / VT, c = e % VT;\n",
    "      scratch[item * IF + r * LW + c] = Sf[r * LS + c];\n",
    "    }\n",
    "  /* the final state */\n",
    "  if (P_HT >= 0 && !LOCM && seg == SEGS - 1) {\n",
    "    float *ht = (float *)args.ptrs[slot(P_HT)] + n * args.ints[slot(S_HT)] +\n",
    "                h * args.ints[slot(S_HT) + 1];\n",
    "    for (int e = tid; e < K * VT; e += NT) {\n",
    "      const int r = e / VT, c = e % VT;\n",
    "      if (c < ncol)\n",
    "        ht[r * args.ints[slot(S_HT) + 2] + (int64_t)(j0 + c) * args.ints[slot(S_HT) + 3]] =\n",
    "            Sf[r * LS + c];\n",
    "    }\n",
    "  }\n",
    "}\n",
};

int cuda_chunk_delta_source(FILE *out, const CudaChunkShape *s, const char *name, int arch,
                            int smem_optin, unsigned *threads, unsigned *smem,
                            int64_t *scratch_floats, char *err, size_t errlen) {
  if (err && errlen) err[0] = 0;
  if (!out || !s || !name || !*name || !threads || !smem || !scratch_floats) {
    if (err && errlen) snprintf(err, errlen, "cuda_chunk_delta_source: a missing argument");
    return 1;
  }
  if (s->kind != CCK_DELTA || arch < 80) return -1;
  const int64_t K = s->K, V = s->V, VTV = s->vtile;
  if (K < 16 || K > 256 || K % 16 || V < 1 || VTV < 16 || VTV > 256 || VTV % 16 ||
      s->vtiles < 1 || (s->vtiles - 1) * VTV >= V || s->vtiles * VTV < V)
    return -1;
  /* the sequence split (lower_cuda_seg.c): the local kernel carries PT columns of the
   * transition after the VTV value columns */
  const int64_t SEGS = s->segs > 1 ? s->segs : 1;
  const int mode = SEGS > 1 ? s->mode : CCM_FUSED;
  if (mode != CCM_FUSED && mode != CCM_LOCAL && mode != CCM_OUTPUT) return -1;
  const int64_t PT = SEGS > 1 ? (K + s->vtiles - 1) / s->vtiles : 0;
  if (PT % 16) return -1;
  const int64_t VT = mode == CCM_LOCAL ? VTV + PT : VTV;
  if (VT > 256) return -1;
  if (s->in_type != KT_BF16 && s->in_type != KT_F16) return -1;
  if (!float_type(s->out_type) || (s->has_g && !float_type(s->g_type)) ||
      (s->has_beta && !float_type(s->beta_type)) ||
      (s->p_scale >= 0 && !float_type(s->scale_type)) ||
      (s->p_cu >= 0 && s->cu_type != KT_I32 && s->cu_type != KT_I64))
    return -1;
  if (s->p_q < 0 || s->p_k < 0 || s->p_v < 0 || s->p_o < 0 || s->s_q < 0 || s->s_k < 0 ||
      s->s_v < 0 || s->s_o < 0 || s->i_H < 0 || s->i_T < 0 ||
      (s->has_g && (s->p_g < 0 || s->s_g < 0)) ||
      (s->has_beta && (s->p_beta < 0 || s->s_beta < 0)) || (s->p_scale >= 0 && s->s_scale < 0) ||
      (s->p_h0 >= 0 && s->s_h0 < 0) || (s->p_ht >= 0 && s->s_ht < 0)) {
    if (err && errlen) snprintf(err, errlen, "cuda_chunk_delta_source: a missing slot");
    return 1;
  }
  /* P D with the hi/lo split for the gated rule (HILO): on the benchmark's inputs (a numpy
   * model of this kernel's roundings, B 2, T 4096, H 4) its output's error was mostly P's and
   * D's rounding in that product: Gated DeltaNet max rel. error 4.1e-3 -> 1.2e-3 with f32
   * outputs, 5.0e-3 -> 2.5e-3 (the bf16 floor) with bf16 outputs. DeltaNet's comes from the
   * state path instead (it gains nothing here). The first layout that fits of C = 64 with,
   * then without, the split, then C = 32 likewise. */
  DeltaLayout L;
  memset(&L, 0, sizeof L);
  int64_t C = 0;
  const int want_hilo = s->has_g && !s->no_hilo;
  for (int a = 0; a < 4 && !C; a++) {
    if ((a & 1) == 0 && !want_hilo) continue;
    delta_layout(K, VT, a < 2 ? 64 : 32, s->has_g, (a & 1) == 0, &L);
    if (L.total <= smem_optin) C = a < 2 ? 64 : 32;
  }
  if (!C) return -1;
  /* threads a block: 512 (0), or 256 where asked (CudaChunkShape.threads). On an H100 (bf16,
   * H = 16, K = V = 128), DeltaNet / Gated DeltaNet from 256 to 512: (8, 2048) 0.527 / 0.659
   * -> 0.467 / 0.534 ms, (2, 8192) 1.612 / 1.959 -> 1.346 / 1.661 (ptxas: 127 registers at
   * 512, no spills) */
  const int NT = s->threads == 256 ? 256 : 512, NW = NT / 32;
  /* strips: a warp's product tiles side by side in a row (4, 2 or 1, while every warp has one) */
  const int64_t NB = C / 16, KB = K / 16, VB = VT / 16;
  const int64_t swk = strip_width(NB, KB, NW), swv = strip_width(NB, VB, NW);
  const int64_t sws = strip_width(KB, VB, NW);
  const int64_t ds = (NB * (VB / swv) + NW - 1) / NW; /* D strips a warp */
  const int f16 = s->in_type == KT_F16;

  fprintf(out,
          "/* %s: the delta rule's chunk kernel (K %lld, V %lld, value tile %lld x %lld, "
          "chunk %lld, %s%s, %s operands) */\n",
          name, (long long)K, (long long)V, (long long)VT, (long long)s->vtiles, (long long)C,
          s->has_g ? "gated" : "not gated", s->has_beta ? ", beta" : "", f16 ? "f16" : "bf16");
  fprintf(out, "namespace %s_ns {\ntypedef unsigned short u16;\n", name);
  fprintf(out,
          "constexpr int K = %lld, V = %lld, VT = %lld, C = %lld, NT = %d, NW = NT / 32;\n"
          "constexpr int64_t VTILES = %lld;\n"
          "constexpr int NB = C / 16, KB = K / 16, VB = VT / 16, PER = C / 32, NL = NB * (NB + 1) / 2;\n"
          "constexpr int SWK = %lld, SWV = %lld, SWS = %lld, DS = %lld;\n"
          "constexpr int NQ = (C * K / 8 + NT - 1) / NT, NV = (C * VT / 8 + NT - 1) / NT;\n"
          "constexpr int LQ = %lld, LV = %lld, LS = %lld, LC = %lld;\n"
          "constexpr int HAS_G = %d, HAS_BETA = %d, HILO = %d;\n"
          "constexpr bool LDSM = true; /* false: element loads of the mma fragments */\n"
          "constexpr double SCALE = %.17g;\n"
          "/* the sequence split: LOCM the local pass, OUTM the output pass; VTV value columns; PT\n"
          " * transition columns a tile; LW the kept tile's row width; IF floats kept an item */\n"
          "constexpr int64_t SEGS = %lld, IF = %lld;\n"
          "constexpr int VTV = %lld, PT = %lld, LW = %lld;\n"
          "constexpr bool LOCM = %d, OUTM = %d;\n",
          (long long)K, (long long)V, (long long)VT, (long long)C, NT, (long long)s->vtiles,
          (long long)swk, (long long)swv, (long long)sws, (long long)ds, (long long)L.lq, (long long)L.lv, (long long)L.ls, (long long)L.lc,
          s->has_g ? 1 : 0, s->has_beta ? 1 : 0, L.hilo, s->p_scale >= 0 ? 1.0 : s->scale, (long long)SEGS,
          (long long)(SEGS > 1 ? cuda_chunk_item_floats(s) : 0), (long long)VTV, (long long)PT,
          (long long)(VTV + PT), mode == CCM_LOCAL, mode == CCM_OUTPUT);
  fprintf(out,
          "constexpr int P_Q = %d, P_K = %d, P_V = %d, P_G = %d, P_BETA = %d, P_O = %d;\n"
          "constexpr int S_Q = %d, S_K = %d, S_V = %d, S_G = %d, S_BETA = %d, S_O = %d;\n"
          "constexpr int P_SCALE = %d, S_SCALE = %d, P_H0 = %d, S_H0 = %d, P_HT = %d, "
          "S_HT = %d;\n"
          "constexpr int P_CU = %d, I_T = %d, I_H = %d;\n",
          s->p_q, s->p_k, s->p_v, s->has_g ? s->p_g : -1, s->has_beta ? s->p_beta : -1, s->p_o,
          s->s_q, s->s_k, s->s_v, s->has_g ? s->s_g : -1, s->has_beta ? s->s_beta : -1, s->s_o,
          s->p_scale, s->p_scale >= 0 ? s->s_scale : -1, s->p_h0, s->p_h0 >= 0 ? s->s_h0 : -1,
          s->p_ht, s->p_ht >= 0 ? s->s_ht : -1, s->p_cu, s->i_T, s->i_H);
  fprintf(out,
          "constexpr int OFF_SF = %lld, OFF_SB = %lld, OFF_QS = %lld, OFF_KS = %lld, "
          "OFF_VB = %lld, OFF_TB = %lld, OFF_TW = %lld;\n"
          "constexpr int OFF_PB = %lld, OFF_PL = %lld, OFF_ST = %lld, OFF_BV = %lld, OFF_EBV = %lld, "
          "OFF_BETAV = %lld;\n",
          (long long)L.sf, (long long)L.sb, (long long)L.qs, (long long)L.ks, (long long)L.vb,
          (long long)L.tb, (long long)L.tw, (long long)L.pb, (long long)L.pl, (long long)L.st, (long long)L.bv, (long long)L.ebv,
          (long long)L.betav);
  /* 16-bit conversions (no CUDA headers under NVRTC: PTX cvt, round to nearest even) */
  fputs("__device__ __forceinline__ float bf16_to_f(u16 x) { return __uint_as_float((uint32_t)x "
        "<< 16); }\n"
        "__device__ __forceinline__ float f16_to_f(u16 x) {\n"
        "  float r;\n  asm(\"cvt.f32.f16 %0, %1;\" : \"=f\"(r) : \"h\"(x));\n  return r;\n}\n"
        "__device__ __forceinline__ u16 f_to_bf16(float x) {\n"
        "  u16 r;\n  asm(\"cvt.rn.bf16.f32 %0, %1;\" : \"=h\"(r) : \"f\"(x));\n  return r;\n}\n"
        "__device__ __forceinline__ u16 f_to_f16(float x) {\n"
        "  u16 r;\n  asm(\"cvt.rn.f16.f32 %0, %1;\" : \"=h\"(r) : \"f\"(x));\n  return r;\n}\n",
        out);
  fprintf(out,
          "__device__ __forceinline__ u16 to16(float x) { return %s(x); }\n"
          "__device__ __forceinline__ float from16(u16 x) { return %s(x); }\n",
          f16 ? "f_to_f16" : "f_to_bf16", f16 ? "f16_to_f" : "bf16_to_f");
  put_loader(out, "ld_g", s->has_g ? s->g_type : KT_F32);
  put_loader(out, "ld_beta", s->has_beta ? s->beta_type : KT_F32);
  put_loader(out, "ld_scale", s->p_scale >= 0 ? s->scale_type : KT_F32);
  fprintf(out, "__device__ __forceinline__ int64_t ld_cu(const void *p, int64_t i) {\n"
               "  return (int64_t)((const %s *)p)[i];\n}\n",
          s->cu_type == KT_I64 ? "int64_t" : "int32_t");
  fputs("struct __align__(8) float2x {\n  float x, y;\n};\n", out);
  fputs("__device__ __forceinline__ void st_out(void *p, int64_t i, float x) {\n", out);
  if (s->out_type == KT_F32)
    fputs("  ((float *)p)[i] = x;\n}\n", out);
  else
    fprintf(out, "  ((u16 *)p)[i] = %s(x);\n}\n",
            s->out_type == KT_F16 ? "f_to_f16" : "f_to_bf16");
  /* elements i and i + st (two: y too), one store where st = 1 and aligned */
  fputs("__device__ __forceinline__ void st_out2(void *p, int64_t i, int64_t st, float x, float y,\n"
        "                                        bool two) {\n",
        out);
  if (s->out_type == KT_F32)
    fputs("  float *a = (float *)p + i;\n"
          "  if (two && st == 1 && ((unsigned long long)a & 7) == 0) {\n"
          "    float2x r;\n    r.x = x, r.y = y;\n    *(float2x *)a = r;\n    return;\n  }\n",
          out);
  else
    fprintf(out,
            "  u16 *a = (u16 *)p + i;\n"
            "  if (two && st == 1 && ((unsigned long long)a & 3) == 0) {\n"
            "    *(uint32_t *)a = (uint32_t)%s(x) | ((uint32_t)%s(y) << 16);\n    return;\n  }\n",
            s->out_type == KT_F16 ? "f_to_f16" : "f_to_bf16",
            s->out_type == KT_F16 ? "f_to_f16" : "f_to_bf16");
  fputs("  st_out(p, i, x);\n  if (two) st_out(p, i + st, y);\n}\n", out);
  for (size_t i = 0; i < sizeof delta_helpers / sizeof *delta_helpers; i++) {
    const char *l = delta_helpers[i], *m = strstr(l, "MMA_T.MMA_T");
    if (m)
      fprintf(out, "%.*s%s.%s%s", (int)(m - l), l, f16 ? "f16" : "bf16", f16 ? "f16" : "bf16",
              m + strlen("MMA_T.MMA_T"));
    else
      fputs(l, out);
  }
  fputs("} /* namespace */\n", out);
  fprintf(out,
          "extern \"C\" __global__ void __launch_bounds__(%d)\n"
          "%s(const MixcArgs_%s args, int64_t begin, int64_t end, float *scratch) {\n"
          "  using namespace %s_ns;\n"
          "  (void)scratch;\n"
          "  extern __shared__ __align__(128) unsigned char %s_smem[];\n"
          "  unsigned char *const SMEM = %s_smem;\n",
          NT, name, name, name, name, name);
  /* DPROF(i): phase i's cycles under MIXC_DELTA_PROF (the bench's breakdown), else nothing */
  fputs("#ifdef MIXC_DELTA_PROF\n"
        "#define DPROF(i) do { if (tid == 0) { const long long t_ = clock64(); "
        "dprof[i] += t_ - dprof_t; dprof_t = t_; } } while (0)\n"
        "#else\n#define DPROF(i) do { } while (0)\n#endif\n",
        out);
  for (size_t i = 0; i < sizeof delta_body / sizeof *delta_body; i++) fputs(delta_body[i], out);
  fputs("#undef DPROF\n", out);
  if (ferror(out)) {
    if (err && errlen) snprintf(err, errlen, "cuda_chunk_delta_source: a write failed");
    return 1;
  }
  *threads = (unsigned)NT;
  *smem = (unsigned)L.total;
  *scratch_floats = 0;
  return 0;
}
