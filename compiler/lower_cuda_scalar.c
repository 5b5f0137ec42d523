/* The hand-structured CUDA chunk kernel for scalar (and identity) decay and for diagonal
 * (per key channel) decay (lower_cuda.h; ALGORITHMS.md: fla's fused chunk form).
 *
 * One block per work item (sequence, head, value tile), 256 threads (8 warps), one block an
 * SM (registers uncapped). The state tile S [K, vtile] stays in registers in fp32 across the
 * chunks of the sequence, as mma.sync accumulator fragments (warp w owns the 16 x 16 tiles w,
 * w + 8, ...), with a 16-bit copy Sb (the input type) in shared memory that feeds the tensor
 * cores. The next chunk's q, k, v (and scalar gates) are loaded into registers while a chunk
 * is computed. Per chunk of C tokens:
 *   Q, K [C, K] and V [C, vtile] from those registers to shared memory (16-byte loads where a
 *   tensor's rows are contiguous and aligned; rows past the sequence and columns past the tile
 *   are zero), the cumulative log gates b (fp32);
 *   Ab = A masked and decayed, A = Q K^T on the 16 x 16 tiles on or below the diagonal
 *   (mma.sync m16n8k16, fp32 accumulate, operands through ldmatrix):
 *   scalar: Ab[t, s] = A[t, s] e^{b_t - b_s} for s <= t, else 0;
 *   diag:   the tiles below the diagonal as (Q e^{b_t - b_r}) (K e^{b_r - b_s})^T on the tensor
 *           cores, r the first token of the row tile, the operands scaled in registers
 *           (exponents <= 0); the diagonal tiles exactly, element by element;
 *   Ks = K e^{b_last - b_s}; diag: per channel, and Qs = Q e^{b_t} (both in shared memory
 *   where it has room, else scaled in registers where they are read);
 *   O = Ab V + e^{b_t} (Q Sb) (scalar; diag: Ab V + Qs Sb), times scale, stored from the
 *   accumulators (valid rows, the tile's columns, any strides);
 *   S <- e^{b_last} S (per row for diag) + Ks^T V in registers; Sb <- S.
 * Three barriers a chunk (four for diag). Every exponent is <= 0, so gates near 0 and strongly
 * negative give no overflow. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "lower_cuda.h"


void cuda_print_load_f(FILE *o, const char *name, KType t, const char *p, const char *idx) {
  if (t == KT_F32)
    fprintf(o, "((const float *)%s)[%s]", p, idx);
  else
    fprintf(o, "%s_%s(((const unsigned short *)%s)[%s])", name, t == KT_BF16 ? "bf2f" : "h2f",
            p, idx);
}
#define rd(o, t, p, idx) cuda_print_load_f(o, name, t, p, idx)

void cuda_print_head_load(FILE *o, const char *name, KType t, int ptr, int stride) {
  char idx[64], p[48];
  snprintf(idx, sizeof idx, "h * args.ints[%d]", stride);
  snprintf(p, sizeof p, "args.ptrs[%d]", ptr);
  cuda_print_load_f(o, name, t, p, idx);
}

static int64_t al128(int64_t x) { return (x + 127) / 128 * 128; }

/* The 16-bit conversions of a hand-structured kernel's text, as MX(bf2f), MX(f2bf),
 * MX(h2f), MX(f2h) (MX the kernel's name prefix, defined before): round to nearest even, NaN
 * kept quiet (NVRTC is given no include path, so no <cuda_bf16.h>). */
void cuda_print_conversions(FILE *out) {
  fputs("static __device__ __forceinline__ float MX(bf2f)(unsigned short u) {\n"
        "  return __uint_as_float((unsigned)u << 16);\n}\n"
        "static __device__ __forceinline__ unsigned short MX(f2bf)(float f) {\n"
        "  unsigned u = __float_as_uint(f);\n"
        "  if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);\n"
        "  u += 0x7fffu + ((u >> 16) & 1u);\n"
        "  return (unsigned short)(u >> 16);\n}\n"
        "static __device__ __forceinline__ float MX(h2f)(unsigned short u) {\n"
        "  float f;\n  asm(\"cvt.f32.f16 %0, %1;\" : \"=f\"(f) : \"h\"(u));\n  return f;\n}\n"
        "static __device__ __forceinline__ unsigned short MX(f2h)(float f) {\n"
        "  unsigned short u;\n  asm(\"cvt.rn.f16.f32 %0, %1;\" : \"=h\"(u) : \"f\"(f));\n"
        "  return u;\n}\n",
        out);
}

/* A work item's token range [t0, t1) and batch row b from its sequence n: cu_seqlens where
 * given, else the whole T (the kernel text declares t0, t1, b, n). */
void cuda_print_seq_bounds(FILE *out, const CudaChunkShape *s) {
  if (s->p_cu >= 0) {
    const char *ct = s->cu_type == KT_I32 ? "int" : "long long";
    fprintf(out,
            "  {\n    const %s *cu = (const %s *)args.ptrs[%d];\n"
            "    t0 = (int64_t)cu[n];\n    t1 = (int64_t)cu[n + 1];\n    b = 0;\n  }\n",
            ct, ct, s->p_cu);
  } else {
    fprintf(out, "  t0 = 0;\n  t1 = args.ints[%d];\n  b = n;\n", s->i_T);
  }
}

/* A block's work item of the scalar/diagonal chunk kernels (the kernel text declares SEGS,
 * VTILES, VTP, V, CC): the thread's lane coordinates, the item's (sequence n, head h, value
 * tile from j0, vw columns, segment seg), the early returns (past `end`; where `skip` holds),
 * and the segment's token range [t0, t1) and batch row b: the sequence's chunks in SEGS runs
 * of equal length. */
void cuda_print_work_item(FILE *out, const CudaChunkShape *s, const char *skip) {
  fprintf(out,
          "  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;\n"
          "  const int g = lane >> 2, t2 = (lane & 3) * 2;\n"
          "  const int64_t item = begin + blockIdx.x;\n"
          "  if (item >= end) return;\n"
          "  const int64_t H = args.ints[%d];\n"
          "  const int64_t seg = item %% SEGS, pair = item / SEGS / VTILES, tile = item / SEGS %% VTILES;\n"
          "  if (%s) return; /* the last segment's transition is not needed */\n"
          "  const int64_t n = pair / H, h = pair %% H;\n"
          "  const int64_t j0 = tile * VTP;\n"
          "  const int vw = (int)(V - j0 < VTP ? V - j0 : VTP);\n"
          "  int64_t t0, t1, b;\n",
          s->i_H, skip);
  cuda_print_seq_bounds(out, s);
  /* this segment's chunks: the sequence's chunks in SEGS runs of equal length */
  fputs("  if (SEGS > 1) {\n"
        "    const int64_t per = ((t1 - t0 + CC - 1) / CC + SEGS - 1) / SEGS * CC;\n"
        "    const int64_t s0 = t0 + seg * per < t1 ? t0 + seg * per : t1;\n"
        "    t1 = s0 + per < t1 ? s0 + per : t1;\n"
        "    t0 = s0;\n"
        "  }\n",
        out);
}

/* The base pointer, row and column strides and (b, h) offset of q, k, v, o and of an input
 * gate (pq, q1, q3, qb, ...; pg, g1, gb and, diagonal decay, g3). */
void cuda_print_tensor_ptrs(FILE *out, const CudaChunkShape *s, unsigned which) {
  const int diag = s->kind == CCK_DIAG;
  /* pointers and strides: [B, T, H, dim] */
  struct {
    const char *nm;
    int p, st;
  } ts[] = {{"q", s->p_q, s->s_q}, {"k", s->p_k, s->s_k}, {"v", s->p_v, s->s_v},
            {"o", s->p_o, s->s_o}};
  for (int i = 0; i < 4; i++)
    if (which & (1u << i))
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
}

/* The helpers of a tensor-core kernel's text (MX() its name prefix, the conversions printed
 * before): MX(f) / MX(h) between the 16-bit input type (bf: bf16, else f16) and float, the
 * shared-memory address, ldmatrix loads of A and B fragments (plain and transposed),
 * mma.m16n8k16 on a 16 x 16 tile, MX(pk) (two floats to a 16-bit pair), MX(ld8r) (8 elements
 * of a strided row) and MX(z4). */
void cuda_print_mma_helpers(FILE *out, int bf) {
  fprintf(out,
          "static __device__ __forceinline__ float MX(f)(unsigned short u) { return MX(%s)(u); }\n"
          "static __device__ __forceinline__ unsigned short MX(h)(float f) { return MX(%s)(f); }\n",
          bf ? "bf2f" : "h2f", bf ? "f2bf" : "f2h");
  /* Fragments of mma.m16n8k16 (PTX ISA), lane = 4 g + c: A register i holds row g + 8 (i % 2),
   * columns 2 c + 8 (i / 2) + {0, 1}; B register i rows 2 c + 8 i + {0, 1}, column g; the
   * accumulator of a 16 x 16 tile (two m16n8 halves hf) c[4 hf + r]: row g + 8 (r / 2),
   * column 8 hf + 2 c + r % 2. ldmatrix .x4: lane l gives the address of row l % 8 of matrix
   * l / 8; register j gets matrix j's row l / 4, columns 2 (l % 4) + {0, 1} (.trans: rows
   * 2 (l % 4) + {0, 1}, column l / 4). */
  fputs("static __device__ __forceinline__ unsigned MX(sa)(const void *p) {\n"
        "  unsigned r;\n"
        "  asm(\"{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }\" : \"=r\"(r) : "
        "\"l\"(p));\n"
        "  return r;\n}\n"
        "static __device__ __forceinline__ void MX(ldsm)(unsigned *r, const unsigned short *p) {\n"
        "  asm volatile(\"ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\"\n"
        "               : \"=r\"(r[0]), \"=r\"(r[1]), \"=r\"(r[2]), \"=r\"(r[3]) : \"r\"(MX(sa)(p)));\n"
        "}\n"
        "static __device__ __forceinline__ void MX(ldsmt)(unsigned *r, const unsigned short *p) {\n"
        "  asm volatile(\"ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\"\n"
        "               : \"=r\"(r[0]), \"=r\"(r[1]), \"=r\"(r[2]), \"=r\"(r[3]) : \"r\"(MX(sa)(p)));\n"
        "}\n"
        "/* A (16 x 16): A(r, k) at A[r * ld + k] */\n"
        "static __device__ __forceinline__ void MX(ldA)(unsigned *a, const unsigned short *A, int "
        "ld) {\n"
        "  const int l = threadIdx.x & 31;\n"
        "  MX(ldsm)(a, A + (l & 15) * ld + (l >> 4) * 8);\n}\n"
        "/* A(r, k) at A[k * ld + r] */\n"
        "static __device__ __forceinline__ void MX(ldAT)(unsigned *a, const unsigned short *A, int "
        "ld) {\n"
        "  const int l = threadIdx.x & 31;\n"
        "  MX(ldsmt)(a, A + ((l & 7) + ((l >> 4) & 1) * 8) * ld + ((l >> 3) & 1) * 8);\n}\n"
        "/* B (16 x 16, both halves: b[0..1] columns 0..7, b[2..3] columns 8..15): B(k, n) at\n"
        " * B[k * ld + n] */\n"
        "static __device__ __forceinline__ void MX(ldB)(unsigned *b, const unsigned short *B, int "
        "ld) {\n"
        "  const int l = threadIdx.x & 31;\n"
        "  MX(ldsmt)(b, B + ((l & 7) + ((l >> 3) & 1) * 8) * ld + (l >> 4) * 8);\n}\n"
        "/* B(k, n) at B[n * ld + k] */\n"
        "static __device__ __forceinline__ void MX(ldBT)(unsigned *b, const unsigned short *B, int "
        "ld) {\n"
        "  const int l = threadIdx.x & 31;\n"
        "  MX(ldsm)(b, B + ((l & 7) + ((l >> 4) & 1) * 8) * ld + ((l >> 3) & 1) * 8);\n}\n",
        out);
  fprintf(out,
          "static __device__ __forceinline__ void MX(mma)(float *c, const unsigned *a, const "
          "unsigned *b) {\n"
          "#pragma unroll\n"
          "  for (int hf = 0; hf < 2; hf++)\n"
          "    asm volatile(\"mma.sync.aligned.m16n8k16.row.col.f32.%s.%s.f32 {%%0, %%1, %%2, %%3}, "
          "{%%4, %%5, %%6, %%7}, {%%8, %%9}, {%%0, %%1, %%2, %%3};\"\n"
          "                 : \"+f\"(c[4 * hf]), \"+f\"(c[4 * hf + 1]), \"+f\"(c[4 * hf + 2]), "
          "\"+f\"(c[4 * hf + 3])\n"
          "                 : \"r\"(a[0]), \"r\"(a[1]), \"r\"(a[2]), \"r\"(a[3]), \"r\"(b[2 * hf]), "
          "\"r\"(b[2 * hf + 1]));\n"
          "}\n",
          bf ? "bf16" : "f16", bf ? "bf16" : "f16");
  fputs("static __device__ __forceinline__ unsigned MX(pk)(float lo, float hi) {\n"
        "  return (unsigned)MX(h)(lo) | ((unsigned)MX(h)(hi) << 16);\n}\n",
        out);
  /* a row segment of 8 elements into shared memory: one 16-byte load when contiguous and
   * aligned, else element by element (n valid elements, the rest zero) */
  fputs("static __device__ __forceinline__ uint4 MX(ld8r)(const unsigned short *src, int64_t "
        "stride, int n) {\n"
        "  unsigned short t[8];\n"
        "#pragma unroll\n"
        "  for (int e = 0; e < 8; e++) t[e] = e < n ? src[e * stride] : (unsigned short)0;\n"
        "  uint4 w;\n"
        "  w.x = t[0] | ((unsigned)t[1] << 16); w.y = t[2] | ((unsigned)t[3] << 16);\n"
        "  w.z = t[4] | ((unsigned)t[5] << 16); w.w = t[6] | ((unsigned)t[7] << 16);\n"
        "  return w;\n"
        "}\n"
        "static __device__ __forceinline__ uint4 MX(z4)() {\n"
        "  uint4 w;\n  w.x = w.y = w.z = w.w = 0u;\n  return w;\n}\n\n",
        out);
}

/* The diagonal 16 x 16 tiles of Ab exactly: A[t, u] = sum_i q[t,i] k[u,i] e^{b[t,i] - b[u,i]},
 * one thread a pair u <= t (136 a tile, by its triangular index: no thread idles on the tiles'
 * upper halves, which are zeros); only the tiles dt where `filter` (an expression of dt) holds,
 * or every tile (NULL). */
static void print_diag_exact(FILE *out, const char *filter) {
  fprintf(out, "#define EXACT_TILE(dt) (%s)\n", filter ? filter : "true");
  fputs("    for (int e = tid; e < (LOCM ? 0 : NS * 136); e += NT) {\n"
          "      if (!(EXACT_TILE(e / 136))) continue;\n"
          "      const int p = e % 136;\n"
          "      int tl = (int)((sqrtf(8.0f * p + 1.0f) - 1.0f) * 0.5f);\n"
          "      if ((tl + 1) * (tl + 2) / 2 <= p) tl++;\n"
          "      if (tl * (tl + 1) / 2 > p) tl--;\n"
          "      const int t = (e / 136) * 16 + tl, u = (e / 136) * 16 + p - tl * (tl + 1) / 2;\n"
          "      float x = 0.0f;\n"
          "#pragma unroll 8\n"
          "      for (int i = 0; i < KD; i += 2) {\n"
          "        const unsigned wq = *(const unsigned *)(sQ + t * LQ + i);\n"
          "        const unsigned wk = *(const unsigned *)(sK + u * LQ + i);\n"
          "        x += MX(f)((unsigned short)(wq & 0xffffu)) * MX(f)((unsigned short)(wk & "
          "0xffffu)) * __expf(sb[t * LB + i] - sb[u * LB + i]);\n"
          "        x += MX(f)((unsigned short)(wq >> 16)) * MX(f)((unsigned short)(wk >> 16)) * "
          "__expf(sb[t * LB + i + 1] - sb[u * LB + i + 1]);\n"
          "      }\n"
          "      sAb[t * LAB + u] = MX(h)(x);\n"
          "    }\n"
          "    for (int e = tid; e < (LOCM ? 0 : NS * 120); e += NT) {\n"
          "      if (!(EXACT_TILE(e / 120))) continue;\n"
          "      const int p = e % 120; /* the strictly upper pairs (t, u), u > t */\n"
          "      int ul = (int)((sqrtf(8.0f * p + 1.0f) + 1.0f) * 0.5f);\n"
          "      if (ul * (ul - 1) / 2 > p) ul--;\n"
          "      if ((ul + 1) * ul / 2 <= p) ul++;\n"
          "      const int t = (e / 120) * 16 + p - ul * (ul - 1) / 2, u = (e / 120) * 16 + ul;\n"
          "      sAb[t * LAB + u] = (unsigned short)0;\n"
          "    }\n"
          "#undef EXACT_TILE\n",
          out);
}

/* The loads of a chunk starting at token cn (lnx its valid rows, declared before) into the
 * registers rv (v) and, for the factored diagonal form (dn), rgd (the thread's gates). */
static void print_vg_loads(FILE *out, const CudaChunkShape *s, const char *name, const char *cn,
                           int dn) {
  fprintf(out,
          "#pragma unroll\n"
          "    for (int u = 0; u < NV8; u++) {\n"
          "      const int e = tid + u * NT, r = e / (VT / 8), c8 = (e %% (VT / 8)) * 8;\n"
          "      const int nv = r < lnx ? (vw - c8 < 8 ? (vw - c8 > 0 ? vw - c8 : 0) : 8) : 0;\n"
          "      const bool ok = e < CC * (VT / 8) && nv > 0;\n"
          "      const int64_t tok = %s + (ok ? r : 0);\n"
          "      const unsigned short *av = (const unsigned short *)pv + vb + tok * v1 + (j0 + c8) * v3;\n"
          "      rv[u] = ok ? (fv ? __ldg((const uint4 *)av) : MX(ld8r)(av, v3, nv)) : MX(z4)();\n"
          "    }\n",
          cn);
  if (!dn) return;
  fprintf(out,
          "#pragma unroll\n"
          "    for (int r = 0; r < 16; r++) {\n"
          "      const int row = gti * 16 + r;\n"
          "      float gg = 0.0f;\n"
          "      if (gok && row < lnx) gg = ");
  char idx[96];
  snprintf(idx, sizeof idx, "gb + (%s + row) * g1 + gch * g3", cn);
  rd(out, s->g_type, "pg", idx);
  fputs(";\n"
        "      rgd[r] = gg;\n"
        "    }\n",
        out);
}

int cuda_chunk_scalar_source(FILE *out, const CudaChunkShape *s, const char *name, int arch,
                             int smem_optin, unsigned *threads, unsigned *smem,
                             int64_t *scratch_floats, char *err, size_t errlen) {
  (void)err, (void)errlen;
  if (s->kind != CCK_SCALAR && s->kind != CCK_DIAG) return -1;
  /* threads a block: 512 (16 warps; 0), or 256 where asked (CudaChunkShape.threads). On an
   * H100 at (B, T) = (8, 2048), H = 16, K = V = 128, bf16: simple GLA 0.403 -> 0.323 ms and
   * GLA 1.270 -> 1.093 ms from 256 to 512 (more warps to hide the barriers' and loads'
   * latency, half the state registers a thread) */
  const int NTHREADS = s->threads == 256 ? 256 : 512, NWARPS = NTHREADS / 32;
  if (arch < 80) return -1; /* bf16 mma.sync needs sm_80 */
  if (s->in_type != KT_BF16 && s->in_type != KT_F16) return -1;
  const int64_t KD = s->K, VT = (s->vtile + 15) / 16 * 16, CC = s->chunk;
  if (KD < 16 || KD > 256 || KD % 16) return -1;
  if (s->vtile < 1 || VT > 256) return -1;
  if (CC < 16 || CC > 128 || CC % 16) return -1;
  int diag = s->kind == CCK_DIAG;
  const int64_t SEGS = s->segs > 1 ? s->segs : 1;
  const int mode = SEGS > 1 ? s->mode : CCM_FUSED;
  if (mode != CCM_FUSED && mode != CCM_LOCAL && mode != CCM_OUTPUT) return -1;
  /* the state's 16 x 16 tiles per warp, in registers (8 floats each) */
  const int64_t NST = (KD / 16) * (VT / 16), NTW = (NST + NWARPS - 1) / NWARPS;
  if (NTW > 16) return -1;
  /* leading dimensions: multiples of 8 elements (16-byte ldmatrix rows), rows 16 bytes apart
   * in the banks; the gates' rows one float apart (the diagonal tiles read 16 rows at once) */
  const int64_t LQ = KD + 8, LV = VT + 8, LAB = CC + 8, LB = diag ? KD + 1 : 1;
  /* shared memory layout, bytes */
  /* diag: Qs = Q e^{b_t} and Ks = K e^{b_last - b_s} in shared memory where it has room,
   * else scaled in registers where they are used (qs 0) */
  /* diag, first choice (dn, the factored form): every tile of A on the tensor cores as
   * (Q e^{b_t - b_r}) diag(e^{b_r - b_e}) (K e^{b_e - b_s})^T, r the row tile's first token and
   * e the column tile's last, the scaled operands Qt and Kt built once a chunk in shared
   * memory next to Qs and Ks, the per-channel factors d in a table; a diagonal tile whose
   * gates span more than DN_LIM in log space (d up to e^{DN_LIM}, the masked products too)
   * computed exactly instead. The gates are prefetched with q, k, v, one (channel, row tile) a
   * thread: needs row tiles NS a power of two and K NS <= threads. */
  const int64_t NS = CC / 16, NPAIR = NS * (NS + 1) / 2;
  int dn = diag && !s->diag_exact && (NS & (NS - 1)) == 0 && KD * NS <= NTHREADS;
  /* the next chunk's v (and dn's gates) loaded after O rather than with q and k: on an H100
   * at K = V = 128 the loads' wait moves into the state update's phase, GLA 2-4% faster,
   * simple GLA 1-2% slower (docs/gpu.md), so the diagonal form's default */
  const int split = s->split_loads > 0 || (s->split_loads == 0 && diag);
  int qs = 1;
  int64_t o_q, o_k, o_ks, o_qs, o_qt, o_kt, o_v, o_sb, o_ab, o_b, o_d, o_er, o_el, o_fl, total;
  for (;;) {
    o_q = 0, o_k = o_q + al128(CC * LQ * 2), o_ks = o_k + al128(CC * LQ * 2);
    o_qs = o_ks + (!diag || qs ? al128(CC * LQ * 2) : 0);
    o_qt = o_qs + (diag && qs ? al128(CC * LQ * 2) : 0);
    o_kt = o_qt + (dn ? al128(CC * LQ * 2) : 0);
    o_v = o_kt + (dn ? al128(CC * LQ * 2) : 0);
    o_sb = o_v + al128(CC * LV * 2), o_ab = o_sb + al128(KD * LV * 2);
    o_b = o_ab + al128(CC * LAB * 2);
    o_d = o_b + al128(CC * LB * 4);
    o_er = o_d + (dn ? al128(NPAIR * KD * 4) : 0);
    o_el = o_er + (dn ? al128(NS * KD * 4) : 0);
    o_fl = o_el + (dn ? al128(NS * KD * 4) : 0);
    total = o_fl + (dn ? 128 : 0);
    if (total <= (int64_t)smem_optin && total <= 227 * 1024) break;
    if (!diag || !qs) return -1;
    if (dn)
      dn = 0;
    else
      qs = 0;
  }
  *threads = NTHREADS;
  *smem = (unsigned)total;
  /* one block an SM (lower_cuda_chunk's split fills the SMs once): the registers uncapped for
   * the state and the prefetched chunk (on an H100, two blocks an SM capped at 128 registers
   * spilled and ran slower wherever the grid had no more blocks than SMs) */
  const int minb = 1;
  *scratch_floats = 0;

  const int bf = s->in_type == KT_BF16;
  fprintf(out, "#define MX(x) %s_##x\n", name);
  /* conversions (no headers: NVRTC is given no include path) */
  cuda_print_conversions(out);
  cuda_print_mma_helpers(out, bf);

  fprintf(out,
          "extern \"C\" __global__ void __launch_bounds__(%d, %d)\n"
          "%s(const MixcArgs_%s args, int64_t begin, int64_t end, float *scratch) {\n"
          "  (void)scratch;\n"
          "  const int KD = %" PRId64 ", VT = %" PRId64 ", CC = %" PRId64 ", NT = %d, NW = %d;\n"
          "  const int LQ = %" PRId64 ", LV = %" PRId64 ", LAB = %" PRId64 ", LB = %" PRId64 ";\n"
          "  const int NS = CC / 16, NST = %" PRId64 ", NTW = %" PRId64 ";\n"
          "  const int64_t V = %" PRId64 ", VTILES = %" PRId64 ", VTP = %" PRId64 ";\n"
          "  /* the sequence split: LOCM the local pass, OUTM the output pass (lower_cuda.h) */\n"
          "  const int64_t SEGS = %" PRId64 ", IF = %" PRId64 ";\n"
          "  const bool LOCM = %d, OUTM = %d;\n"
          "  (void)IF, (void)OUTM;\n"
          "#ifdef MIXC_SCALAR_PROF /* cycles a phase (thread 0, barrier to barrier) into scratch */\n"
          "  long long sprof[12] = {0}, sprof_t = clock64();\n"
          "#define SPROF(i) do { if (threadIdx.x == 0) { const long long t_ = clock64(); "
          "sprof[i] += t_ - sprof_t; sprof_t = t_; } } while (0)\n"
          "#else\n"
          "#define SPROF(i) do { } while (0)\n"
          "#endif\n",
          NTHREADS, minb, name, name, KD, VT, CC, NTHREADS, NWARPS, LQ, LV, LAB, LB, NST, NTW, s->V,
          s->vtiles, s->vtile, SEGS, SEGS > 1 ? cuda_chunk_item_floats(s) : (int64_t)0,
          mode == CCM_LOCAL, mode == CCM_OUTPUT);
  fprintf(out,
          "  extern __shared__ __align__(128) unsigned char smem_[];\n"
          "  unsigned short *sQ = (unsigned short *)(smem_ + %" PRId64 ");\n"
          "  unsigned short *sK = (unsigned short *)(smem_ + %" PRId64 ");\n"
          "  unsigned short *sKs = (unsigned short *)(smem_ + %" PRId64 ");\n"

          "  unsigned short *sV = (unsigned short *)(smem_ + %" PRId64 ");\n"
          "  unsigned short *sSb = (unsigned short *)(smem_ + %" PRId64 ");\n"
          "  unsigned short *sAb = (unsigned short *)(smem_ + %" PRId64 ");\n"
          "  float *sb = (float *)(smem_ + %" PRId64 ");\n"
          "  (void)sKs;\n",
          o_q, o_k, o_ks, o_v, o_sb, o_ab, o_b);
  if (diag && qs) /* Q e^{b_t} (diagonal decay, where it has room) */
    fprintf(out, "  unsigned short *sQs = (unsigned short *)(smem_ + %" PRId64 ");\n", o_qs);
  if (dn) /* the factored form's operands and per-channel factors (the dn comment above) */
    fprintf(out,
            "  unsigned short *sQt = (unsigned short *)(smem_ + %" PRId64 ");\n"
            "  unsigned short *sKt = (unsigned short *)(smem_ + %" PRId64 ");\n"
            "  float *sd = (float *)(smem_ + %" PRId64 "); /* [pair (i, j <= i)][K]: e^{b_r_i - b_e_j} */\n"
            "  float *ser = (float *)(smem_ + %" PRId64 "); /* [row tile][K]: e^{b_r} */\n"
            "  float *sel = (float *)(smem_ + %" PRId64 "); /* [row tile][K]: e^{b_last - b_e} */\n"
            "  unsigned *sflag = (unsigned *)(smem_ + %" PRId64 "); /* [chunk parity]: bit i, diagonal tile i exactly */\n"
            "  const int NSD = %" PRId64 ", gti = (threadIdx.x & 31) %% NSD;\n"
            "  const int gch = (int)(threadIdx.x >> 5) * (32 / NSD) + (int)(threadIdx.x & 31) / NSD;\n"
            "  const bool gok = gch < KD;\n"
            "  const float DN_LIM = %s;\n"
            "  int par = 0;\n"
            "  if (threadIdx.x == 0) sflag[0] = sflag[1] = 0u;\n",
            o_qt, o_kt, o_d, o_er, o_el, o_fl, NS,
            /* the span of log gates a diagonal tile takes factored: e^{span} bounds d, the
             * operands' reciprocal scale and the masked products; f16 operands keep their
             * precision only to e^{-8} of a row's scale (its normal range) */
            s->in_type == KT_F16 ? "8.0f" : "24.0f");
  cuda_print_work_item(out, s, "LOCM && seg == SEGS - 1");
  cuda_print_tensor_ptrs(out, s, CUDA_PTRS_ALL);
  /* scale */
  if (s->p_scale >= 0) {
    fprintf(out, "  const float scale = ");
    cuda_print_head_load(out, name, s->scale_type, s->p_scale, s->s_scale);
    fprintf(out, ";\n");
  } else {
    fprintf(out, "  const float scale = %.17g;\n", s->scale);
  }
  if (s->has_g && s->g_mode != CCG_INPUT) fprintf(out, "  float gconst = 0.0f;\n");
  if (s->has_g && s->g_mode == CCG_PARAM) {
    fprintf(out, "  gconst = ");
    cuda_print_head_load(out, name, s->g_type, s->p_g, s->s_g);
    fprintf(out, ";\n");
  } else if (s->has_g && s->g_mode == CCG_CONST) {
    fprintf(out, "  gconst = %.17g;\n", s->g_const);
  }

  /* the initial state: registers (tile m of this warp: warp + m NW; row tile si, column
   * tile sj) and its 16-bit copy */
  fputs("  float st[NTW][8];\n"
        "#pragma unroll\n"
        "  for (int m = 0; m < NTW; m++) {\n"
        "    const int tt = warp + m * NW, si = tt / (VT / 16), sj = tt % (VT / 16);\n"
        "#pragma unroll\n"
        "    for (int e = 0; e < 8; e++) {\n"
        "      const int i = si * 16 + g + ((e >> 1) & 1) * 8, j = sj * 16 + (e >> 2) * 8 + t2 + "
        "(e & 1);\n"
        "      float x = 0.0f;\n",
        out);
  if (mode == CCM_OUTPUT)
    fputs("      if (tt < NST && j < vw && seg > 0) x = scratch[(item - 1) * IF + i * VTP + j];\n",
          out);
  if (s->p_h0 >= 0 && mode != CCM_LOCAL)
    fprintf(out,
            "      if (tt < NST && j < vw && seg == 0) x = ((const float *)args.ptrs[%d])[n * "
            "args.ints[%d] + h * args.ints[%d] + i * args.ints[%d] + (j0 + j) * args.ints[%d]];\n",
            s->p_h0, s->s_h0, s->s_h0 + 1, s->s_h0 + 2, s->s_h0 + 3);
  fputs("      st[m][e] = x;\n"
        "      (void)i;\n"
        "    }\n"
        "    if (tt < NST) {\n"
        "#pragma unroll\n"
        "      for (int e = 0; e < 8; e += 2) {\n"
        "        const int i = si * 16 + g + ((e >> 1) & 1) * 8, j = sj * 16 + (e >> 2) * 8 + t2;\n"
        "        *(unsigned *)(sSb + i * LV + j) = MX(pk)(st[m][e], st[m][e + 1]);\n"
        "      }\n"
        "    }\n"
        "  }\n"
        "  __syncthreads();\n"
        "  SPROF(11);\n\n",
        out);

  /* ---- the chunks ---- */
  /* the next chunk's q, k, v (and scalar gates) are loaded into registers while the chunk
   * is computed: 16-byte loads where a tensor's rows are contiguous and aligned */
  fputs("  const int NQ = (CC * (KD / 8) + NT - 1) / NT, NV8 = (CC * (VT / 8) + NT - 1) / NT;\n"
        "  const bool fq = q3 == 1 && q1 % 8 == 0 && (((unsigned long long)(pq + 2 * qb)) & 15) == 0;\n"
        "  const bool fk = k3 == 1 && k1 % 8 == 0 && (((unsigned long long)(pk + 2 * kb)) & 15) == 0;\n"
        "  const bool fv = v3 == 1 && v1 % 8 == 0 && vw % 8 == 0 &&\n"
        "                  (((unsigned long long)(pv + 2 * (vb + j0))) & 15) == 0;\n"
        "  uint4 rq[NQ], rk[NQ], rv[NV8];\n"
        "  float rg[(CC + 31) / 32];\n"
        "  float rgd[16]; /* dn: the gates of (channel gch, row tile gti) */\n"
        "  (void)rgd;\n"
        "  float gacc = 0.0f; /* LOCM: the segment's log decay (diag: of row tid) */\n"
        "  (void)rg, (void)gacc;\n",
        out);
  for (int pass = 0; pass < 2; pass++) {
    const char *cn = pass == 0 ? "t0" : "(c0 + CC)";
    if (pass == 0) fputs("  if (t0 < t1) {\n", out);
    fprintf(out,
            "    const int lnx = (int)(t1 - %s < CC ? t1 - %s : CC);\n"
            "#pragma unroll\n"
            "    for (int u = 0; u < NQ; u++) {\n"
            "      const int e = tid + u * NT, r = e / (KD / 8), c8 = (e %% (KD / 8)) * 8;\n"
            "      const bool ok = e < CC * (KD / 8) && r < lnx;\n"
            "      const int64_t tok = %s + (ok ? r : 0);\n"
            "      const unsigned short *aq = (const unsigned short *)pq + qb + tok * q1 + c8 * q3;\n"
            "      const unsigned short *ak = (const unsigned short *)pk + kb + tok * k1 + c8 * k3;\n"
            "      if (!LOCM) rq[u] = ok ? (fq ? __ldg((const uint4 *)aq) : MX(ld8r)(aq, q3, 8)) : MX(z4)();\n"
            "      rk[u] = ok ? (fk ? __ldg((const uint4 *)ak) : MX(ld8r)(ak, k3, 8)) : MX(z4)();\n"
            "    }\n",
            cn, cn, cn);
    /* split loads: the next chunk's v (and dn's gates) after O instead, below */
    if (pass == 0 || !split) print_vg_loads(out, s, name, cn, dn);
    if (!diag) {
      fputs("    if (warp == NW - 1) {\n"
            "#pragma unroll\n"
            "      for (int u = 0; u < (CC + 31) / 32; u++) {\n"
            "        const int r = lane * ((CC + 31) / 32) + u;\n"
            "        float gg = 0.0f;\n",
            out);
      if (s->has_g && s->g_mode == CCG_INPUT) {
        char idx[64];
        snprintf(idx, sizeof idx, "gb + (%s + r) * g1", cn);
        fprintf(out, "        if (r < lnx) gg = ");
        rd(out, s->g_type, "pg", idx);
        fprintf(out, ";\n");
      } else if (s->has_g) {
        fprintf(out, "        if (r < lnx) gg = gconst;\n");
      }
      fputs("        rg[u] = gg;\n"
            "      }\n"
            "    }\n",
            out);
    }
    if (pass == 0) {
      fputs("  }\n"
            "  for (int64_t c0 = t0; c0 < t1; c0 += CC) {\n"
            "    const int len = (int)(t1 - c0 < CC ? t1 - c0 : CC);\n"
            "#pragma unroll\n"
            "    for (int u = 0; u < NQ; u++) {\n"
            "      const int e = tid + u * NT, r = e / (KD / 8), c8 = (e % (KD / 8)) * 8;\n"
            "      if (e < CC * (KD / 8)) {\n"
            "        if (!LOCM) *(uint4 *)(sQ + r * LQ + c8) = rq[u];\n"
            "        *(uint4 *)(sK + r * LQ + c8) = rk[u];\n"
            "      }\n"
            "    }\n"
            "#pragma unroll\n"
            "    for (int u = 0; u < NV8; u++) {\n"
            "      const int e = tid + u * NT, r = e / (VT / 8), c8 = (e % (VT / 8)) * 8;\n"
            "      if (e < CC * (VT / 8)) *(uint4 *)(sV + r * LV + c8) = rv[u];\n"
            "    }\n"
            "    SPROF(0);\n",
            out);
      /* cumulative gates */
      if (!diag) {
        fputs("    if (warp == NW - 1) {\n"
              "      const int P = (CC + 31) / 32;\n"
              "      float loc[(CC + 31) / 32];\n"
              "      float run = 0.0f;\n"
              "#pragma unroll\n"
              "      for (int u = 0; u < P; u++) {\n"
              "        run += rg[u];\n"
              "        loc[u] = run;\n"
              "      }\n"
              "      float inc = run;\n"
              "      for (int d = 1; d < 32; d <<= 1) {\n"
              "        float y = __shfl_up_sync(0xffffffffu, inc, d);\n"
              "        if (lane >= d) inc += y;\n"
              "      }\n"
              "      float off = inc - run;\n"
              "#pragma unroll\n"
              "      for (int u = 0; u < P; u++) {\n"
              "        int r = lane * P + u;\n"
              "        if (r < CC) sb[r] = loc[u] + off;\n"
              "      }\n"
              "    }\n"
              "    __syncthreads();\n"
              "    SPROF(1);\n",
              out);
      } else if (dn) {
        /* each thread its (channel, row tile): the prefix over its 16 rows in registers, the
         * tiles' totals scanned across the NS lanes of the channel; then the factors of the
         * channel (d, e^{b_r}, e^{b_last - b_e}) and whether its row tile's span is too wide
         * to factor */
        fputs("    {\n"
              "      const unsigned FULL = 0xffffffffu;\n"
              "      float loc[16], run = 0.0f;\n"
              "#pragma unroll\n"
              "      for (int r = 0; r < 16; r++) {\n"
              "        run += rgd[r];\n"
              "        loc[r] = run;\n"
              "      }\n"
              "      float inc = run;\n"
              "#pragma unroll\n"
              "      for (int d = 1; d < NSD; d <<= 1) {\n"
              "        const float y = __shfl_up_sync(FULL, inc, d);\n"
              "        if (gti >= d) inc += y;\n"
              "      }\n"
              "      const float off = inc - run;\n"
              "      const int l0 = (lane / NSD) * NSD; /* this channel's first lane */\n"
              "      const float blast = __shfl_sync(FULL, inc, l0 + NSD - 1);\n"
              "      const float br = loc[0] + off, be = loc[15] + off;\n"
              "      float mx = loc[0], mn = loc[0];\n"
              "#pragma unroll\n"
              "      for (int r = 0; r < 16; r++) {\n"
              "        mx = fmaxf(mx, loc[r]), mn = fminf(mn, loc[r]);\n"
              "        if (gok) sb[(gti * 16 + r) * LB + gch] = loc[r] + off;\n"
              "      }\n"
              "#pragma unroll\n"
              "      for (int j = 0; j < NSD; j++) {\n"
              "        const float bej = __shfl_sync(FULL, be, l0 + j);\n"
              "        if (gok && j <= gti) sd[(gti * (gti + 1) / 2 + j) * KD + gch] = __expf(br - bej);\n"
              "      }\n"
              "      if (gok) {\n"
              "        ser[gti * KD + gch] = __expf(br);\n"
              "        sel[gti * KD + gch] = __expf(blast - be);\n"
              "        /* not <= also catches NaN: the exact form then carries it */\n"
              "        if (!(loc[15] - loc[0] <= DN_LIM && mx - mn <= DN_LIM)) atomicOr(&sflag[par], 1u << gti);\n"
              "      }\n"
              "    }\n"
              "    __syncthreads();\n"
              "    SPROF(1);\n"
              "    if (threadIdx.x == 0) sflag[par ^ 1] = 0u;\n",
              out);
      } else {
        /* per channel: the gates loaded in parallel, then each channel's prefix sum */
        fputs("#pragma unroll\n"
              "    for (int e = tid; e < CC * KD; e += NT) {\n"
              "      int r = e / KD, i = e % KD;\n"
              "      float gg = 0.0f;\n"
              "      if (r < len) gg = ",
              out);
        rd(out, s->g_type, "pg", "gb + (c0 + r) * g1 + i * g3");
        fputs(";\n"
              "      sb[r * LB + i] = gg;\n"
              "    }\n"
              "    __syncthreads();\n"
              "    SPROF(1);\n"
              "    for (int i = tid; i < KD; i += NT) {\n"
              "      float run = 0.0f;\n"
              "      for (int r0 = 0; r0 < CC; r0 += 16) {\n"
              "        float x[16];\n"
              "#pragma unroll\n"
              "        for (int r = 0; r < 16; r++) x[r] = sb[(r0 + r) * LB + i];\n"
              "#pragma unroll\n"
              "        for (int r = 0; r < 16; r++) {\n"
              "          run += x[r];\n"
              "          sb[(r0 + r) * LB + i] = run;\n"
              "        }\n"
              "      }\n"
              "    }\n"
              "    __syncthreads();\n"
              "    SPROF(2);\n",
              out);
      }
      fputs("    if (c0 + CC < t1) {\n", out);
    } else {
      fputs("    }\n"
            "    SPROF(3);\n", out);
    }
  }

  if (!diag) {
    /* Ab = (Q K^T) e^{b_t - b_s} masked, the tiles on or below the diagonal; Ks */
    fputs("    const float blast = sb[CC - 1];\n"
          "    if (LOCM) gacc += blast;\n"
          "    for (int tt = warp; tt < (LOCM ? 0 : NS * (NS + 1) / 2); tt += NW) {\n"
          "      int ti = 0, tj = tt;\n"
          "      while (tj > ti) tj -= ++ti;\n"
          "      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};\n"
          "#pragma unroll 4\n"
          "      for (int kk = 0; kk < KD / 16; kk++) {\n"
          "        unsigned fa[4], fb[4];\n"
          "        MX(ldA)(fa, sQ + ti * 16 * LQ + kk * 16, LQ);\n"
          "        MX(ldBT)(fb, sK + tj * 16 * LQ + kk * 16, LQ);\n"
          "        MX(mma)(acc, fa, fb);\n"
          "      }\n"
          "#pragma unroll\n"
          "      for (int e = 0; e < 8; e += 2) {\n"
          "        const int t = ti * 16 + g + ((e >> 1) & 1) * 8, u = tj * 16 + (e >> 2) * 8 + t2;\n"
          "        const float bt = sb[t];\n"
          "        float x0 = u <= t ? acc[e] * __expf(bt - sb[u]) : 0.0f;\n"
          "        float x1 = u + 1 <= t ? acc[e + 1] * __expf(bt - sb[u + 1]) : 0.0f;\n"
          "        *(unsigned *)(sAb + t * LAB + u) = MX(pk)(x0, x1);\n"
          "      }\n"
          "    }\n"
          "    SPROF(4);\n"
          "#pragma unroll\n"
          "    for (int e = tid; e < CC * (KD / 2); e += NT) {\n"
          "      const int t = e / (KD / 2), i = (e % (KD / 2)) * 2;\n"
          "      const float w = __expf(blast - sb[t]);\n"
          "      unsigned x = *(const unsigned *)(sK + t * LQ + i);\n"
          "      *(unsigned *)(sKs + t * LQ + i) = MX(pk)(MX(f)((unsigned short)(x & 0xffffu)) * w, "
          "MX(f)((unsigned short)(x >> 16)) * w);\n"
          "    }\n"
          "    __syncthreads();\n"
          "    SPROF(6);\n",
          out);
  } else if (dn) {
    /* the factored form: Qt = Q e^{b_t - b_r}, Kt = K e^{b_e - b_s} (r, e the first and last
     * token of the token's row tile), Qs = Qt e^{b_r} = Q e^{b_t}, Ks = Kt e^{b_last - b_e}
     * (exponents <= 0, products in fp32 before the one rounding to 16 bits); then every tile
     * (i, j <= i) of Ab = (Qt_i diag(d_ij)) Kt_j^T, d applied to the A fragments in fp32,
     * one warp a tile; diagonal tiles too wide to factor exactly (print_diag_exact) */
    fputs("    if (LOCM && tid < KD) gacc += sb[(CC - 1) * LB + tid];\n"
          "#pragma unroll 4\n"
          "    for (int e = tid; e < CC * (KD / 2); e += NT) {\n"
          "      const int t = e / (KD / 2), i = (e % (KD / 2)) * 2, rt = t >> 4;\n"
          "      const int r0 = rt * 16, r1 = r0 + 15;\n"
          "      const float b0 = sb[t * LB + i], b1 = sb[t * LB + i + 1];\n"
          "      const unsigned xk = *(const unsigned *)(sK + t * LQ + i);\n"
          "      const float k0 = MX(f)((unsigned short)(xk & 0xffffu)) * __expf(sb[r1 * LB + i] - b0);\n"
          "      const float k1 = MX(f)((unsigned short)(xk >> 16)) * __expf(sb[r1 * LB + i + 1] - b1);\n"
          "      *(unsigned *)(sKs + t * LQ + i) = MX(pk)(k0 * sel[rt * KD + i], k1 * sel[rt * KD + i + 1]);\n"
          "      if (LOCM) continue;\n"
          "      *(unsigned *)(sKt + t * LQ + i) = MX(pk)(k0, k1);\n"
          "      const unsigned xq = *(const unsigned *)(sQ + t * LQ + i);\n"
          "      const float q0 = MX(f)((unsigned short)(xq & 0xffffu)) * __expf(b0 - sb[r0 * LB + i]);\n"
          "      const float q1 = MX(f)((unsigned short)(xq >> 16)) * __expf(b1 - sb[r0 * LB + i + 1]);\n"
          "      *(unsigned *)(sQt + t * LQ + i) = MX(pk)(q0, q1);\n"
          "      *(unsigned *)(sQs + t * LQ + i) = MX(pk)(q0 * ser[rt * KD + i], q1 * ser[rt * KD + i + 1]);\n"
          "    }\n"
          "    __syncthreads();\n"
          "    SPROF(4);\n"
          "    const unsigned slow = sflag[par];\n"
          "    for (int tt = warp; tt < (LOCM ? 0 : NS * (NS + 1) / 2); tt += NW) {\n"
          "      int ti = 0, tj = tt;\n"
          "      while (tj > ti) tj -= ++ti;\n"
          "      if (ti == tj && ((slow >> ti) & 1u)) continue; /* exactly, below */\n"
          "      const float *dd = sd + tt * KD; /* pair (ti, tj): tt = ti (ti + 1) / 2 + tj */\n"
          "      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};\n"
          "#pragma unroll 4\n"
          "      for (int kk = 0; kk < KD / 16; kk++) {\n"
          "        unsigned fa[4], fb[4];\n"
          "        MX(ldA)(fa, sQt + ti * 16 * LQ + kk * 16, LQ);\n"
          "        MX(ldBT)(fb, sKt + tj * 16 * LQ + kk * 16, LQ);\n"
          "        /* A register x: columns kk 16 + t2 + 8 (x / 2) + {0, 1} */\n"
          "#pragma unroll\n"
          "        for (int x = 0; x < 4; x++) {\n"
          "          const int i = kk * 16 + t2 + (x >> 1) * 8;\n"
          "          fa[x] = MX(pk)(MX(f)((unsigned short)(fa[x] & 0xffffu)) * dd[i],\n"
          "                        MX(f)((unsigned short)(fa[x] >> 16)) * dd[i + 1]);\n"
          "        }\n"
          "        MX(mma)(acc, fa, fb);\n"
          "      }\n"
          "#pragma unroll\n"
          "      for (int e = 0; e < 8; e += 2) {\n"
          "        const int t = ti * 16 + g + ((e >> 1) & 1) * 8, u = tj * 16 + (e >> 2) * 8 + t2;\n"
          "        const float x0 = ti != tj || u <= t ? acc[e] : 0.0f;\n"
          "        const float x1 = ti != tj || u + 1 <= t ? acc[e + 1] : 0.0f;\n"
          "        *(unsigned *)(sAb + t * LAB + u) = MX(pk)(x0, x1);\n"
          "      }\n"
          "    }\n",
          out);
    fputs("    if (slow) {\n", out);
    print_diag_exact(out, "(slow >> (dt)) & 1u");
    fputs("    }\n"
          "    par ^= 1;\n"
          "    __syncthreads();\n"
          "    SPROF(5);\n",
          out);
  } else {
    /* the tiles below the diagonal on the tensor cores: operands scaled in registers, r the
     * row tile's first token: Q e^{b_t - b_r}, K e^{b_r - b_s} */
    fputs("    if (LOCM && tid < KD) gacc += sb[(CC - 1) * LB + tid];\n"
          "    for (int tt = warp; tt < (LOCM ? 0 : NS * (NS - 1) / 2); tt += NW) {\n"
          "      int ti = 1, tj = tt;\n"
          "      while (tj >= ti) tj -= ti++;\n"
          "      const int r0 = ti * 16;\n"
          "      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};\n"
          "      for (int kk = 0; kk < KD / 16; kk++) {\n"
          "        unsigned fa[4], fb[4];\n"
          "#pragma unroll\n"
          "        for (int x = 0; x < 4; x++) {\n"
          "          const int t = r0 + g + (x & 1) * 8, i = kk * 16 + t2 + (x >> 1) * 8;\n"
          "          const unsigned w = *(const unsigned *)(sQ + t * LQ + i);\n"
          "          fa[x] = MX(pk)(MX(f)((unsigned short)(w & 0xffffu)) * __expf(sb[t * LB + i] - "
          "sb[r0 * LB + i]),\n"
          "                        MX(f)((unsigned short)(w >> 16)) * __expf(sb[t * LB + i + 1] - "
          "sb[r0 * LB + i + 1]));\n"
          "          const int u = tj * 16 + g + (x >> 1) * 8, i2 = kk * 16 + t2 + (x & 1) * 8;\n"
          "          const unsigned w2 = *(const unsigned *)(sK + u * LQ + i2);\n"
          "          fb[x] = MX(pk)(MX(f)((unsigned short)(w2 & 0xffffu)) * __expf(sb[r0 * LB + i2] "
          "- sb[u * LB + i2]),\n"
          "                        MX(f)((unsigned short)(w2 >> 16)) * __expf(sb[r0 * LB + i2 + 1] "
          "- sb[u * LB + i2 + 1]));\n"
          "        }\n"
          "        MX(mma)(acc, fa, fb);\n"
          "      }\n"
          "#pragma unroll\n"
          "      for (int e = 0; e < 8; e += 2) {\n"
          "        const int t = ti * 16 + g + ((e >> 1) & 1) * 8, u = tj * 16 + (e >> 2) * 8 + t2;\n"
          "        *(unsigned *)(sAb + t * LAB + u) = MX(pk)(acc[e], acc[e + 1]);\n"
          "      }\n"
          "    }\n"
          "    SPROF(4);\n",
          out);
    print_diag_exact(out, NULL);
    fputs("    SPROF(5);\n",
          out);
    if (qs)
      fputs("#pragma unroll 4\n"
            "    for (int e = tid; e < CC * (KD / 2); e += NT) {\n"
            "      const int t = e / (KD / 2), i = (e % (KD / 2)) * 2;\n"
            "      unsigned x = *(const unsigned *)(sK + t * LQ + i);\n"
            "      *(unsigned *)(sKs + t * LQ + i) = MX(pk)(\n"
            "          MX(f)((unsigned short)(x & 0xffffu)) * __expf(sb[(CC - 1) * LB + i] - sb[t * LB "
            "+ i]),\n"
            "          MX(f)((unsigned short)(x >> 16)) * __expf(sb[(CC - 1) * LB + i + 1] - sb[t * LB "
            "+ i + 1]));\n"
            "      if (LOCM) continue;\n"
            "      x = *(const unsigned *)(sQ + t * LQ + i);\n"
            "      *(unsigned *)(sQs + t * LQ + i) = MX(pk)(\n"
            "          MX(f)((unsigned short)(x & 0xffffu)) * __expf(sb[t * LB + i]),\n"
            "          MX(f)((unsigned short)(x >> 16)) * __expf(sb[t * LB + i + 1]));\n"
            "    }\n",
            out);
    fputs("    __syncthreads();\n"
          "    SPROF(6);\n",
          out);
  }
  /* O = Ab V + e^{b_t} Q Sb (diag: Qs Sb), stored from the accumulators */
  fprintf(out,
          "    for (int tt = warp; tt < (LOCM ? 0 : NS * (VT / 16)); tt += NW) {\n"
          "      const int ti = tt / (VT / 16), tj = tt %% (VT / 16);\n"
          "      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};\n"
          "#pragma unroll 4\n"
          "      for (int kk = 0; kk < KD / 16; kk++) {\n"
          "        unsigned fa[4], fb[4];\n"
          "%s"
          "        MX(ldB)(fb, sSb + kk * 16 * LV + tj * 16, LV);\n"
          "        MX(mma)(acc, fa, fb);\n"
          "      }\n",
          diag && !qs ? /* Q e^{b_t} per channel, in registers */
              "#pragma unroll\n"
              "        for (int x = 0; x < 4; x++) {\n"
              "          const int t = ti * 16 + g + (x & 1) * 8, i = kk * 16 + t2 + (x >> 1) * 8;\n"
              "          const unsigned w = *(const unsigned *)(sQ + t * LQ + i);\n"
              "          fa[x] = MX(pk)(MX(f)((unsigned short)(w & 0xffffu)) * __expf(sb[t * LB + i]),\n"
              "                        MX(f)((unsigned short)(w >> 16)) * __expf(sb[t * LB + i + 1]));\n"
              "        }\n"
               : diag ? "        MX(ldA)(fa, sQs + ti * 16 * LQ + kk * 16, LQ);\n"
                      : "        MX(ldA)(fa, sQ + ti * 16 * LQ + kk * 16, LQ);\n");
  if (!diag)
    fputs("      {\n"
          "        const float w0 = __expf(sb[ti * 16 + g]), w1 = __expf(sb[ti * 16 + g + 8]);\n"
          "        acc[0] *= w0, acc[1] *= w0, acc[4] *= w0, acc[5] *= w0;\n"
          "        acc[2] *= w1, acc[3] *= w1, acc[6] *= w1, acc[7] *= w1;\n"
          "      }\n",
          out);
  fputs("      for (int kk = 0; kk <= ti; kk++) {\n"
        "        unsigned fa[4], fb[4];\n"
        "        MX(ldA)(fa, sAb + ti * 16 * LAB + kk * 16, LAB);\n"
        "        MX(ldB)(fb, sV + kk * 16 * LV + tj * 16, LV);\n"
        "        MX(mma)(acc, fa, fb);\n"
        "      }\n"
        "#pragma unroll\n"
        "      for (int e = 0; e < 8; e += 2) {\n"
        "        const int t = ti * 16 + g + ((e >> 1) & 1) * 8, j = tj * 16 + (e >> 2) * 8 + t2;\n"
        "        if (t >= len) continue;\n"
        "        const int64_t at = ob + (c0 + t) * o1 + (j0 + j) * o3;\n",
        out);
  if (s->out_type == KT_F32)
    fputs("        if (j < vw) ((float *)po)[at] = scale * acc[e];\n"
          "        if (j + 1 < vw) ((float *)po)[at + o3] = scale * acc[e + 1];\n",
          out);
  else
    fprintf(out,
            "        unsigned short *op = (unsigned short *)po;\n"
            "        const unsigned short y0 = MX(%s)(scale * acc[e]), y1 = MX(%s)(scale * acc[e + 1]);\n"
            "        if (j + 1 < vw && o3 == 1 && (((unsigned long long)(op + at) & 3) == 0)) {\n"
            "          *(unsigned *)(op + at) = (unsigned)y0 | ((unsigned)y1 << 16);\n"
            "        } else {\n"
            "          if (j < vw) op[at] = y0;\n"
            "          if (j + 1 < vw) op[at + o3] = y1;\n"
            "        }\n",
            s->out_type == KT_BF16 ? "f2bf" : "f2h", s->out_type == KT_BF16 ? "f2bf" : "f2h");
  fputs("      }\n"
        "    }\n"
        "    SPROF(7);\n",
        out);
  if (split) {
    fputs("    if (c0 + CC < t1) {\n"
          "    const int lnx = (int)(t1 - (c0 + CC) < CC ? t1 - (c0 + CC) : CC);\n",
          out);
    print_vg_loads(out, s, name, "(c0 + CC)", dn);
    fputs("    }\n", out);
  }
  /* S <- e^{b_last} S + Ks^T V, in registers */
  fputs("#pragma unroll\n"
        "    for (int m = 0; m < NTW; m++) {\n"
        "      const int tt = warp + m * NW, si = tt / (VT / 16), sj = tt % (VT / 16);\n"
        "      if (tt >= NST) continue;\n",
        out);
  if (!diag)
    fputs("      {\n"
          "        const float d = __expf(blast);\n"
          "#pragma unroll\n"
          "        for (int e = 0; e < 8; e++) st[m][e] *= d;\n"
          "      }\n",
          out);
  else
    fputs("      {\n"
          "        const float d0 = __expf(sb[(CC - 1) * LB + si * 16 + g]);\n"
          "        const float d1 = __expf(sb[(CC - 1) * LB + si * 16 + g + 8]);\n"
          "        st[m][0] *= d0, st[m][1] *= d0, st[m][4] *= d0, st[m][5] *= d0;\n"
          "        st[m][2] *= d1, st[m][3] *= d1, st[m][6] *= d1, st[m][7] *= d1;\n"
          "      }\n",
          out);
  fputs("#pragma unroll\n"
        "      for (int kk = 0; kk < CC / 16; kk++) {\n"
        "        unsigned fa[4], fb[4];\n",
        out);
  if (!diag || qs)
    fputs("        MX(ldAT)(fa, sKs + kk * 16 * LQ + si * 16, LQ);\n", out);
  else /* K e^{b_last - b_t} per channel, in registers: A(i, t) */
    fputs("#pragma unroll\n"
          "        for (int x = 0; x < 4; x++) {\n"
          "          const int i = si * 16 + g + (x & 1) * 8, t = kk * 16 + t2 + (x >> 1) * 8;\n"
          "          const float bl = sb[(CC - 1) * LB + i];\n"
          "          fa[x] = MX(pk)(MX(f)(sK[t * LQ + i]) * __expf(bl - sb[t * LB + i]),\n"
          "                        MX(f)(sK[(t + 1) * LQ + i]) * __expf(bl - sb[(t + 1) * LB + i]));\n"
          "        }\n",
          out);
  fputs("        MX(ldB)(fb, sV + kk * 16 * LV + sj * 16, LV);\n"
        "        MX(mma)(st[m], fa, fb);\n"
        "      }\n"
        "    }\n"
        "    __syncthreads();\n"
        "    SPROF(8);\n"
        "#pragma unroll\n"
        "    for (int m = 0; m < NTW; m++) {\n"
        "      const int tt = warp + m * NW, si = tt / (VT / 16), sj = tt % (VT / 16);\n"
        "      if (tt >= NST) continue;\n"
        "#pragma unroll\n"
        "      for (int e = 0; e < 8; e += 2) {\n"
        "        const int i = si * 16 + g + ((e >> 1) & 1) * 8, j = sj * 16 + (e >> 2) * 8 + t2;\n"
        "        *(unsigned *)(sSb + i * LV + j) = MX(pk)(st[m][e], st[m][e + 1]);\n"
        "      }\n"
        "    }\n"
        "    SPROF(9);\n"
        "  }\n"
        "  SPROF(10);\n"
        "#ifdef MIXC_SCALAR_PROF\n"
        "  if (threadIdx.x == 0 && !LOCM && SEGS == 1)\n"
        "    for (int i = 0; i < 12; i++)\n"
        "      atomicAdd((unsigned long long *)scratch + i, (unsigned long long)sprof[i]);\n"
        "#endif\n",
        out);
  if (mode == CCM_LOCAL)
    fprintf(out,
            "  {\n"
            "    float *Lb = scratch + item * IF;\n"
            "#pragma unroll\n"
            "    for (int m = 0; m < NTW; m++) {\n"
            "      const int tt = warp + m * NW, si = tt / (VT / 16), sj = tt %% (VT / 16);\n"
            "      if (tt >= NST) continue;\n"
            "#pragma unroll\n"
            "      for (int e = 0; e < 8; e++) {\n"
            "        const int i = si * 16 + g + ((e >> 1) & 1) * 8, j = sj * 16 + (e >> 2) * 8 + t2 "
            "+ (e & 1);\n"
            "        if (j < vw) Lb[i * VTP + j] = st[m][e];\n"
            "      }\n"
            "    }\n"
            "    if (%s) Lb[KD * VTP + tid] = gacc;\n"
            "  }\n",
            diag ? "tid < KD" : "tid == 0");
  if (s->p_ht >= 0 && mode != CCM_LOCAL)
    fprintf(out,
            "#pragma unroll\n"
            "  for (int m = 0; m < NTW; m++) {\n"
            "    const int tt = warp + m * NW, si = tt / (VT / 16), sj = tt %% (VT / 16);\n"
            "    if (tt >= NST || seg != SEGS - 1) continue;\n"
            "#pragma unroll\n"
            "    for (int e = 0; e < 8; e++) {\n"
            "      const int i = si * 16 + g + ((e >> 1) & 1) * 8, j = sj * 16 + (e >> 2) * 8 + t2 "
            "+ (e & 1);\n"
            "      if (j < vw) ((float *)args.ptrs[%d])[n * args.ints[%d] + h * args.ints[%d] + "
            "i * args.ints[%d] + (j0 + j) * args.ints[%d]] = st[m][e];\n"
            "    }\n"
            "  }\n",
            s->p_ht, s->s_ht, s->s_ht + 1, s->s_ht + 2, s->s_ht + 3);
  fputs("}\n#undef SPROF\n#undef MX\n", out);
  return ferror(out) ? 1 : 0;
}
