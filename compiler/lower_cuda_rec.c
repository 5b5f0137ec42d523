/* The hand-structured CUDA recurrent (decode) kernel (lower_cuda.h): the forms of
 * CudaChunkKind walked token by token with the state tile on chip, for the decode step (one
 * token continuing from a carried state, read and written once) and short sequences.
 *
 *   SCALAR  S' = e^g S + k v^T   (g an input [B, T, H], a param [H], a constant, or none)
 *   DIAG    S' = diag(e^{g_i}) S + k v^T   (g [B, T, H, K])
 *   DELTA   S1 = e^g S (optional), S' = S1 + beta k (v - S1^T k)^T   (beta optional)
 *   o = scale q^T S'   (scale a constant or a param [H])
 *
 * One block per work item (sequence n, head h, value tile of VTP columns; item =
 * (n H + h) vtiles + tile, the KIR strategies' order). Thread tid owns 4 consecutive columns
 * c0 = 4 (tid % NCG) .. c0 + 3 of the tile (NCG column groups, a power of two <= 32, so a
 * warp spans every column group of 32 / NCG row slices) and the rows i = rs + NRS m,
 * m < R, of row slice rs = tid / NCG: a warp reads whole row segments (coalesced; float4 where
 * the state's columns are contiguous and 16-byte aligned). The state tile stays in those
 * registers (st[R][4], fp32) across the tokens; it is read from the initial state (or zeros)
 * once at the start and written to the final state once at the end, by the same thread and
 * elements, so the initial and final state may be one buffer (the in-place step). Its 16-byte
 * accesses carry the evict-first hint (ld / st.global.cs; CudaChunkShape.plain_state drops it).
 *
 * Per token, one barrier: the token's q, k (K values), v (the tile's columns), the gates (as
 * e^g) and beta were put in shared memory (fp32) at the start of the previous token, from
 * registers loaded a token before that (the global loads of token t + 2 are issued at the
 * start of t and stay in flight through t's work and barrier); three such buffers rotate (t + 1's
 * are stored while slower threads may still read t - 1's, in the phase after t - 1's barrier,
 * and t - 2's buffer is free by then). Then one pass over the thread's state elements:
 *   scalar, diag: S' = e^g S + k v^T in registers and the partial q^T S' of the 4 columns;
 *   delta: the partials k^T S and q^T S of the 4 columns and q.k;
 * reduced over the row slices of the warp (shuffles) and across warps (shared memory, two
 * buffers alternating). After the barrier: scalar, diag: o = scale (q^T S') from the warps'
 * partials; delta: u = e^g k^T S, w = beta (v - u), o = scale (e^g q^T S + (q.k) w),
 * S' = e^g S + k w^T in registers. Threads of row slice 0 (tid < NCG) store o. All arithmetic
 * is fp32 on the inputs as stored (f32, bf16 or f16); e^g with g -> -inf underflows to 0.
 *
 * Sizes: K <= 512, the tile <= 128 columns; threads NT = NCG NRS (64 .. 512): 256 by default
 * with at least K / 4 row slices where that fits, more (to 512) where a thread would hold more
 * than 16 rows (CudaChunkShape.threads asks for another count). R = ceil(K / NRS). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "lower_cuda.h"

#define rd(o, t, p, idx) cuda_print_load_f(o, name, t, p, idx)

static int type_ok(KType t) { return t == KT_F32 || t == KT_BF16 || t == KT_F16; }

/* The thread layout of a shape: column groups, row slices, threads, rows a thread. 0, or -1
 * outside the form. */
typedef struct RecLayout {
  int ncg, nrs, nt, r;
} RecLayout;

static int rec_layout(const CudaChunkShape *s, RecLayout *lo) {
  const int64_t VT = s->vtile;
  if (s->K < 1 || s->K > 512 || VT < 1 || VT > 128) return -1;
  int ncg = 1;
  while (4 * ncg < VT) ncg *= 2;
  int nt;
  if (s->threads >= 32 && s->threads <= 1024 && s->threads % 32 == 0) {
    nt = (int)s->threads;
  } else {
    int nrs = 1; /* at least K / 4 row slices (4 rows a thread), a power of two */
    while (nrs * 4 < s->K) nrs *= 2;
    nt = ncg * nrs;
    if (nt < 64) nt = 64;
    if (nt > 256) nt = 256;
    while (nt < 512 && (s->K + nt / ncg - 1) / (nt / ncg) > 16) nt *= 2;
  }
  if (nt % ncg || nt < ncg) return -1;
  lo->ncg = ncg;
  lo->nt = nt;
  lo->nrs = nt / ncg;
  lo->r = (int)((s->K + lo->nrs - 1) / lo->nrs);
  if (lo->r > 32) return -1; /* 128 state registers a thread */
  return 0;
}

/* Token `tok`'s inputs into registers (rq, rk, rg, rv; rgs, rbt for the scalar gate and
 * beta). */
static void print_load(FILE *out, const CudaChunkShape *s, const char *name, const char *tok) {
  const int diag = s->kind == CCK_DIAG, gin = s->has_g && s->g_mode == CCG_INPUT;
  fprintf(out,
          "    {\n"
          "      const int64_t tok = %s;\n"
          "#pragma unroll\n"
          "      for (int u = 0; u < NLK; u++) {\n"
          "        const int i = tid + u * NT;\n"
          "        rq[u] = i < KD ? ",
          tok);
  rd(out, s->in_type, "pq", "qb + tok * q1 + i * q3");
  fputs(" : 0.0f;\n        rk[u] = i < KD ? ", out);
  rd(out, s->in_type, "pk", "kb + tok * k1 + i * k3");
  fputs(" : 0.0f;\n", out);
  if (diag && gin) {
    fputs("        rg[u] = i < KD ? ", out);
    rd(out, s->g_type, "pg", "gb + tok * g1 + i * g3");
    fputs(" : 0.0f;\n", out);
  }
  fputs("      }\n"
        "#pragma unroll\n"
        "      for (int u = 0; u < NLV; u++) {\n"
        "        const int j = tid + u * NT;\n"
        "        rv[u] = j < vw ? ",
        out);
  rd(out, s->in_type, "pv", "vb + tok * v1 + (j0 + j) * v3");
  fputs(" : 0.0f;\n      }\n", out);
  if (!diag && gin) {
    fputs("      if (tid == 0) rgs = ", out);
    rd(out, s->g_type, "pg", "gb + tok * g1");
    fputs(";\n", out);
  }
  if (s->has_beta) {
    fputs("      if (tid == 0) rbt = ", out);
    rd(out, s->beta_type, "pbt", "btb + tok * bt1");
    fputs(";\n", out);
  }
  fputs("    }\n", out);
}

/* The registers into input buffer `buf` of shared memory. */
static void print_store(FILE *out, const CudaChunkShape *s, const char *buf) {
  const int diag = s->kind == CCK_DIAG, gin = s->has_g && s->g_mode == CCG_INPUT;
  fprintf(out,
          "    {\n"
          "      float *sw = sbuf + (%s) * SB;\n"
          "#pragma unroll\n"
          "      for (int u = 0; u < NLK; u++) {\n"
          "        const int i = tid + u * NT;\n"
          "        if (i < KD) {\n"
          "          sw[OQ + i] = rq[u];\n"
          "          sw[OK + i] = rk[u];\n"
          "%s"
          "        }\n"
          "      }\n"
          "#pragma unroll\n"
          "      for (int u = 0; u < NLV; u++) {\n"
          "        const int j = tid + u * NT;\n"
          "        if (j < VTC) sw[OV + j] = rv[u];\n"
          "      }\n",
          buf, diag && gin ? "          sw[OE + i] = expf(rg[u]);\n" : "");
  if (!diag && gin) fputs("      if (tid == 0) sw[OE] = expf(rgs);\n", out);
  if (s->has_beta) fputs("      if (tid == 0) sw[OB] = rbt;\n", out);
  fputs("    }\n", out);
}

/* The tile's state element (i, column c0 + e) of state slot `p`, strides at `st`: pointer
 * setup text (variables hp<tag>, hs2<tag>, hs3<tag>, hv<tag>). */
static void print_state_ptr(FILE *out, const char *tag, int p, int st, int is_const) {
  fprintf(out,
          "    %sfloat *hp%s = (%sfloat *)args.ptrs[%d] + n * args.ints[%d] + h * args.ints[%d] + "
          "j0 * args.ints[%d];\n"
          "    const int64_t hs2%s = args.ints[%d], hs3%s = args.ints[%d];\n"
          "    const bool hv%s = hs3%s == 1 && hs2%s %% 4 == 0 && "
          "(((unsigned long long)hp%s) & 15) == 0;\n",
          is_const ? "const " : "", tag, is_const ? "const " : "", p, st, st + 1, st + 3, tag,
          st + 2, tag, st + 3, tag, tag, tag, tag);
}

int cuda_rec_source(FILE *out, const CudaChunkShape *s, const char *name, int arch,
                    unsigned *threads, unsigned *smem, char *err, size_t errlen) {
  (void)err, (void)errlen;
  if (s->kind != CCK_SCALAR && s->kind != CCK_DIAG && s->kind != CCK_DELTA) return -1;
  if (arch < 70) return -1; /* __shfl_xor_sync: sm_70 and later here */
  if (!type_ok(s->in_type) || !type_ok(s->out_type)) return -1;
  if (s->has_g && s->g_mode != CCG_CONST && !type_ok(s->g_type)) return -1;
  if (s->has_beta && !type_ok(s->beta_type)) return -1;
  if (s->p_scale >= 0 && !type_ok(s->scale_type)) return -1;
  if (s->kind == CCK_DIAG && (!s->has_g || s->g_mode != CCG_INPUT)) return -1;
  if (s->kind == CCK_DELTA && s->has_g && s->g_mode != CCG_INPUT) return -1;
  if (s->kind != CCK_DELTA && s->has_beta) return -1;
  if (s->segs > 1) return -1;
  if (s->vtiles < 1 || s->V < 1 || s->vtile * s->vtiles < s->V ||
      s->vtile * (s->vtiles - 1) >= s->V)
    return -1;
  RecLayout lo;
  if (rec_layout(s, &lo)) return -1;
  const int delta = s->kind == CCK_DELTA, diag = s->kind == CCK_DIAG;
  const int gin = s->has_g && s->g_mode == CCG_INPUT;
  const int64_t KD = s->K, KP = (KD + 3) / 4 * 4, VTC = 4 * (int64_t)lo.ncg;
  const int NW = lo.nt / 32 > 0 ? lo.nt / 32 : 1;
  const int NLK = (int)((KD + lo.nt - 1) / lo.nt), NLV = (int)((VTC + lo.nt - 1) / lo.nt);
  /* one input buffer: q [KP], k [KP], v [VTC], e^g [KP] (diag) or [4], beta [4] */
  const int64_t OQ = 0, OK = KP, OV = 2 * KP, OE = OV + VTC, OB = OE + (diag ? KP : 4);
  const int64_t SB = OB + 4;
  const int NRED = delta ? 2 : 1;
  const int64_t bytes = 4 * (3 * SB + 2 * NRED * NW * VTC + (delta ? 2 * NW : 0));
  if (bytes > 48 * 1024) return -1; /* static shared memory */
  if (lo.nt < 32 || lo.nt % 32) return -1;
  *threads = (unsigned)lo.nt;
  *smem = 0;

  fprintf(out, "#define MX(x) %s_##x\n", name);
  /* conversions (no headers: NVRTC is given no include path) */
  cuda_print_conversions(out);
  /* Room for two blocks an SM by default (at most 128 registers a thread at 256 threads): a
   * decode step's block loads its state tile, works, and stores it, and a second block on
   * the SM overlaps those phases. With one (146 registers a thread at K = V = 128) a decode
   * step at B = 64, H = 16 ran at 1.98-2.17 TB/s of state traffic on an H100, with two at
   * 2.47-2.51 (MIXC_REC_BENCH, session 7); 512 threads of two blocks: 2.35-2.53 */
  const int minb = s->minb > 0 ? s->minb : lo.nt <= 256 ? 2 : 1;
  fprintf(out,
          "extern \"C\" __global__ void __launch_bounds__(%d, %d)\n"
          "%s(const MixcArgs_%s args, int64_t begin, int64_t end, float *scratch) {\n"
          "  (void)scratch;\n"
          "  const int KD = %" PRId64 ", NCG = %d, NRS = %d, R = %d, NT = %d, NW = %d, VTC = %" PRId64
          ";\n"
          "  const int NLK = %d, NLV = %d;\n"
          "  const int SB = %" PRId64 ", OQ = %" PRId64 ", OK = %" PRId64 ", OV = %" PRId64
          ", OE = %" PRId64 ", OB = %" PRId64 ";\n"
          "  const int64_t V = %" PRId64 ", VTILES = %" PRId64 ", VTP = %" PRId64 ";\n"
          "  (void)OE, (void)OB, (void)NW;\n"
          "  __shared__ __align__(16) float sbuf[3 * SB];\n"
          "  __shared__ __align__(16) float sred[2 * %d * NW * VTC];\n",
          lo.nt, minb, name, name, KD, lo.ncg, lo.nrs, lo.r, lo.nt, NW, VTC, NLK, NLV, SB, OQ, OK, OV,
          OE, OB, s->V, s->vtiles, s->vtile, NRED);
  if (delta) fputs("  __shared__ float sqk[2 * NW];\n", out);
  fprintf(out,
          "  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;\n"
          "  const int rs = tid / NCG, c0 = 4 * (tid %% NCG);\n"
          "  (void)lane, (void)warp;\n"
          "  const int64_t item = begin + blockIdx.x;\n"
          "  if (item >= end) return;\n"
          "  const int64_t H = args.ints[%d];\n"
          "  const int64_t pair = item / VTILES, tile = item %% VTILES;\n"
          "  const int64_t n = pair / H, h = pair %% H, j0 = tile * VTP;\n"
          "  const int vw = (int)(V - j0 < VTP ? V - j0 : VTP);\n"
          "  int64_t t0, t1, b;\n",
          s->i_H);
  cuda_print_seq_bounds(out, s);
  cuda_print_tensor_ptrs(out, s, CUDA_PTRS_ALL);
  if (s->has_beta)
    fprintf(out,
            "  const unsigned char *pbt = (const unsigned char *)args.ptrs[%d];\n"
            "  const int64_t bt1 = args.ints[%d];\n"
            "  const int64_t btb = b * args.ints[%d] + h * args.ints[%d];\n",
            s->p_beta, s->s_beta + 1, s->s_beta, s->s_beta + 2);
  /* scale */
  if (s->p_scale >= 0) {
    fputs("  const float scale = ", out);
    cuda_print_head_load(out, name, s->scale_type, s->p_scale, s->s_scale);
    fputs(";\n", out);
  } else {
    fprintf(out, "  const float scale = (float)%.17g;\n", s->scale);
  }
  /* a gate that does not change along the sequence: e^g once */
  if (s->has_g && s->g_mode == CCG_PARAM) {
    fputs("  const float egc = expf(", out);
    cuda_print_head_load(out, name, s->g_type, s->p_g, s->s_g);
    fputs(");\n", out);
  } else if (s->has_g && s->g_mode == CCG_CONST) {
    fprintf(out, "  const float egc = expf((float)%.17g);\n", s->g_const);
  } else {
    fputs("  const float egc = 1.0f;\n", out);
  }
  fputs("  (void)egc;\n", out);

  /* the state tile */
  fputs("  float st[R][4];\n", out);
  if (s->p_h0 >= 0) {
    fputs("  {\n", out);
    print_state_ptr(out, "0", s->p_h0, s->s_h0, 1);
    fputs("#pragma unroll\n"
          "    for (int m = 0; m < R; m++) {\n"
          "      const int i = rs + NRS * m;\n"
          "      if (i < KD && hv0 && c0 + 3 < vw) {\n",
          out);
    if (!s->plain_state)
      fputs("        asm volatile(\"ld.global.cs.v4.f32 {%0, %1, %2, %3}, [%4];\"\n"
            "                     : \"=f\"(st[m][0]), \"=f\"(st[m][1]), \"=f\"(st[m][2]), "
            "\"=f\"(st[m][3])\n"
            "                     : \"l\"(hp0 + i * hs20 + c0) : \"memory\");\n",
            out);
    else
      fputs("        const float4 x = *(const float4 *)(hp0 + i * hs20 + c0);\n"
            "        st[m][0] = x.x, st[m][1] = x.y, st[m][2] = x.z, st[m][3] = x.w;\n",
            out);
    fputs("      } else {\n"
          "#pragma unroll\n"
          "        for (int e = 0; e < 4; e++)\n"
          "          st[m][e] = i < KD && c0 + e < vw ? hp0[i * hs20 + (c0 + e) * hs30] : 0.0f;\n"
          "      }\n"
          "    }\n"
          "  }\n",
          out);
  } else {
    fputs("#pragma unroll\n"
          "  for (int m = 0; m < R; m++)\n"
          "#pragma unroll\n"
          "    for (int e = 0; e < 4; e++) st[m][e] = 0.0f;\n",
          out);
  }

  /* the inputs: registers, then the first token's into buffer 0 */
  fprintf(out,
          "  float rq[NLK], rk[NLK], rv[NLV], rg[%s], rgs = 0.0f, rbt = 1.0f;\n"
          "  (void)rg, (void)rgs, (void)rbt;\n"
          "  if (t0 < t1) {\n",
          diag ? "NLK" : "1");
  print_load(out, s, name, "t0");
  print_store(out, s, "0");
  fputs("  }\n"
        "  if (t0 + 1 < t1) {\n",
        out);
  print_load(out, s, name, "t0 + 1");
  fputs("  }\n"
        "  __syncthreads();\n"
        "  int bi = 0, ri = 0;\n"
        "  for (int64_t t = t0; t < t1; t++) {\n"
        "    /* token t + 1's inputs (loaded a token ago) into the next buffer, then token\n"
        "     * t + 2's loads, in flight until the next token stores them */\n"
        "    if (t + 1 < t1) {\n",
        out);
  print_store(out, s, "bi == 2 ? 0 : bi + 1");
  fputs("    }\n"
        "    if (t + 2 < t1) {\n",
        out);
  print_load(out, s, name, "t + 2");
  fputs("    }\n"
        "    const float *sb = sbuf + bi * SB;\n"
        "    float *red = sred + ri * (NW * VTC * " ,
        out);
  fprintf(out, "%d);\n", NRED);
  fputs("    const float4 vv = *(const float4 *)(sb + OV + c0);\n", out);
  if (!delta) {
    fprintf(out,
            "    const float eg = %s;\n"
            "    (void)eg;\n"
            "    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;\n"
            "#pragma unroll\n"
            "    for (int m = 0; m < R; m++) {\n"
            "      const int i = rs + NRS * m;\n"
            "      if (i < KD) {\n"
            "        const float qi = sb[OQ + i], ki = sb[OK + i];\n"
            "        const float d = %s;\n"
            "        st[m][0] = d * st[m][0] + ki * vv.x;\n"
            "        st[m][1] = d * st[m][1] + ki * vv.y;\n"
            "        st[m][2] = d * st[m][2] + ki * vv.z;\n"
            "        st[m][3] = d * st[m][3] + ki * vv.w;\n"
            "        a0 += qi * st[m][0], a1 += qi * st[m][1];\n"
            "        a2 += qi * st[m][2], a3 += qi * st[m][3];\n"
            "      }\n"
            "    }\n"
            "#pragma unroll\n"
            "    for (int off = NCG; off < 32; off <<= 1) {\n"
            "      a0 += __shfl_xor_sync(0xffffffffu, a0, off);\n"
            "      a1 += __shfl_xor_sync(0xffffffffu, a1, off);\n"
            "      a2 += __shfl_xor_sync(0xffffffffu, a2, off);\n"
            "      a3 += __shfl_xor_sync(0xffffffffu, a3, off);\n"
            "    }\n"
            "    if (lane < NCG) *(float4 *)(red + warp * VTC + c0) = make_float4(a0, a1, a2, a3);\n",
            gin ? "sb[OE]" : "egc", diag ? "sb[OE + i]" : "eg");
  } else {
    fputs("    float p0 = 0.0f, p1 = 0.0f, p2 = 0.0f, p3 = 0.0f;\n"
          "    float r0 = 0.0f, r1 = 0.0f, r2 = 0.0f, r3 = 0.0f, qk = 0.0f;\n"
          "#pragma unroll\n"
          "    for (int m = 0; m < R; m++) {\n"
          "      const int i = rs + NRS * m;\n"
          "      if (i < KD) {\n"
          "        const float qi = sb[OQ + i], ki = sb[OK + i];\n"
          "        p0 += ki * st[m][0], p1 += ki * st[m][1], p2 += ki * st[m][2], p3 += ki * st[m][3];\n"
          "        r0 += qi * st[m][0], r1 += qi * st[m][1], r2 += qi * st[m][2], r3 += qi * st[m][3];\n"
          "        qk += qi * ki;\n"
          "      }\n"
          "    }\n"
          "#pragma unroll\n"
          "    for (int off = NCG; off < 32; off <<= 1) {\n"
          "      p0 += __shfl_xor_sync(0xffffffffu, p0, off);\n"
          "      p1 += __shfl_xor_sync(0xffffffffu, p1, off);\n"
          "      p2 += __shfl_xor_sync(0xffffffffu, p2, off);\n"
          "      p3 += __shfl_xor_sync(0xffffffffu, p3, off);\n"
          "      r0 += __shfl_xor_sync(0xffffffffu, r0, off);\n"
          "      r1 += __shfl_xor_sync(0xffffffffu, r1, off);\n"
          "      r2 += __shfl_xor_sync(0xffffffffu, r2, off);\n"
          "      r3 += __shfl_xor_sync(0xffffffffu, r3, off);\n"
          "      qk += __shfl_xor_sync(0xffffffffu, qk, off);\n"
          "    }\n"
          "    if (lane < NCG) {\n"
          "      *(float4 *)(red + warp * VTC + c0) = make_float4(p0, p1, p2, p3);\n"
          "      *(float4 *)(red + (NW + warp) * VTC + c0) = make_float4(r0, r1, r2, r3);\n"
          "    }\n"
          "    if (lane == 0) sqk[ri * NW + warp] = qk;\n",
          out);
  }
  /* the token's one barrier */
  fputs("    __syncthreads();\n", out);
  /* the output (and, delta, the update) */
  if (!delta) {
    fputs("    if (tid < NCG) {\n"
          "      float4 x = *(const float4 *)(red + c0);\n"
          "#pragma unroll\n"
          "      for (int w = 1; w < NW; w++) {\n"
          "        const float4 y = *(const float4 *)(red + w * VTC + c0);\n"
          "        x.x += y.x, x.y += y.y, x.z += y.z, x.w += y.w;\n"
          "      }\n"
          "      const float oo[4] = {scale * x.x, scale * x.y, scale * x.z, scale * x.w};\n",
          out);
  } else {
    fprintf(out,
            "    {\n"
            "      float4 x = *(const float4 *)(red + c0), y = *(const float4 *)(red + NW * VTC + c0);\n"
            "      float qks = sqk[ri * NW];\n"
            "#pragma unroll\n"
            "      for (int w = 1; w < NW; w++) {\n"
            "        const float4 a = *(const float4 *)(red + w * VTC + c0);\n"
            "        const float4 c = *(const float4 *)(red + (NW + w) * VTC + c0);\n"
            "        x.x += a.x, x.y += a.y, x.z += a.z, x.w += a.w;\n"
            "        y.x += c.x, y.y += c.y, y.z += c.z, y.w += c.w;\n"
            "        qks += sqk[ri * NW + w];\n"
            "      }\n"
            "      const float eg = %s, bt = %s;\n"
            "      const float w0 = bt * (vv.x - eg * x.x), w1 = bt * (vv.y - eg * x.y);\n"
            "      const float w2 = bt * (vv.z - eg * x.z), w3 = bt * (vv.w - eg * x.w);\n"
            "#pragma unroll\n"
            "      for (int m = 0; m < R; m++) {\n"
            "        const int i = rs + NRS * m;\n"
            "        if (i < KD) {\n"
            "          const float ki = sb[OK + i];\n"
            "          st[m][0] = eg * st[m][0] + ki * w0;\n"
            "          st[m][1] = eg * st[m][1] + ki * w1;\n"
            "          st[m][2] = eg * st[m][2] + ki * w2;\n"
            "          st[m][3] = eg * st[m][3] + ki * w3;\n"
            "        }\n"
            "      }\n"
            "      const float oo[4] = {scale * (eg * y.x + qks * w0), scale * (eg * y.y + qks * w1),\n"
            "                           scale * (eg * y.z + qks * w2), scale * (eg * y.w + qks * w3)};\n"
            "      if (tid < NCG) {\n",
            gin ? "sb[OE]" : "1.0f", s->has_beta ? "sb[OB]" : "1.0f");
  }
  fputs("      const int64_t at = ob + t * o1 + (j0 + c0) * o3;\n", out);
  if (s->out_type == KT_F32) {
    fputs("      float *op = (float *)po;\n"
          "#pragma unroll\n"
          "      for (int e = 0; e < 4; e++)\n"
          "        if (c0 + e < vw) op[at + e * o3] = oo[e];\n",
          out);
  } else {
    fprintf(out,
            "      unsigned short *op = (unsigned short *)po;\n"
            "#pragma unroll\n"
            "      for (int e = 0; e < 4; e++)\n"
            "        if (c0 + e < vw) op[at + e * o3] = MX(%s)(oo[e]);\n",
            s->out_type == KT_BF16 ? "f2bf" : "f2h");
  }
  if (delta) fputs("      }\n", out);
  fputs("    }\n"
        "    bi = bi == 2 ? 0 : bi + 1;\n"
        "    ri ^= 1;\n"
        "  }\n",
        out);
  /* the final state */
  if (s->p_ht >= 0) {
    fputs("  {\n", out);
    print_state_ptr(out, "1", s->p_ht, s->s_ht, 0);
    fputs("#pragma unroll\n"
          "    for (int m = 0; m < R; m++) {\n"
          "      const int i = rs + NRS * m;\n"
          "      if (i >= KD) continue;\n"
          "      if (hv1 && c0 + 3 < vw) {\n",
          out);
    if (!s->plain_state)
      fputs("        asm volatile(\"st.global.cs.v4.f32 [%0], {%1, %2, %3, %4};\"\n"
            "                     :: \"l\"(hp1 + i * hs21 + c0), \"f\"(st[m][0]), \"f\"(st[m][1]),"
            " \"f\"(st[m][2]), \"f\"(st[m][3]) : \"memory\");\n",
            out);
    else
      fputs("        *(float4 *)(hp1 + i * hs21 + c0) = make_float4(st[m][0], st[m][1], st[m][2], "
            "st[m][3]);\n",
            out);
    fputs("      } else {\n"
          "#pragma unroll\n"
          "        for (int e = 0; e < 4; e++)\n"
          "          if (c0 + e < vw) hp1[i * hs21 + (c0 + e) * hs31] = st[m][e];\n"
          "      }\n"
          "    }\n"
          "  }\n",
          out);
  }
  fputs("}\n#undef MX\n", out);
  return ferror(out) ? 1 : 0;
}

int64_t cuda_rec_vtile(int64_t V, int64_t bh, int64_t target_items) {
  /* at most 128 columns a block (256 threads, 16 state rows of 4 columns a thread at
   * K = 128); where the (sequence, head) pairs are few, as many tiles as give about
   * target_items blocks (two an SM), 16 columns at least: B = 1, H = 16 on 132 SMs -> 8 tiles
   * of 16. On an H100 at B = 64, H = 16, K = V = 128 (MIXC_REC_BENCH, session 7), a decode
   * step's state traffic ran at 2.47-2.51 TB/s in one tile of 128 columns, 2.10-2.48 in two
   * of 64, 1.86-2.08 in eight of 16 */
  const int64_t maxw = 128;
  int64_t w = maxw;
  if (bh > 0 && target_items > 0) {
    int64_t tiles = (target_items + bh - 1) / bh;
    w = (V + tiles - 1) / tiles;
    w = (w + 15) / 16 * 16;
  }
  if (w < 16) w = 16;
  if (w > maxw) w = maxw;
  return w < V ? w : (V > 0 ? V : 1);
}
