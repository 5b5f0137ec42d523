/* The local pass of the sequence split (lower_cuda_seg.c) for scalar and diagonal decay:
 * each segment but the last, from a zero state, to its end state L_p and its summed log gate
 * G_p (per key row for diagonal decay), kept per work item in `scratch` in the layout the
 * combine and output kernels read (L_p [K][vtile] row-major, then G_p: 1 float, or K).
 *
 * This is the state half of the fused chunk kernel alone (S <- e^{b_last} S + Ks^T V,
 * Ks = K e^{b_last - b_t}, per channel for diagonal decay) with nothing else to overlap with,
 * so it is bound by how many bytes of k, v (and g) each multiprocessor keeps in flight. The
 * fused kernel's local mode loaded the next chunk into registers while the state update of
 * one chunk ran and stalled on those loads (one block an SM, 32 KiB a chunk: about 8k cycles
 * a chunk on an H100, against ~1k of tensor-core work). Here:
 *   - k, v (and the gates) go to shared memory by cp.async, NSTAGE chunks deep (3, or 2 where
 *     shared memory has no room for 3), 16 bytes a copy where a tensor's rows are contiguous
 *     and aligned (rows past the segment zero-filled), element by element otherwise; f32
 *     scalar gates 4 bytes a copy, 16-bit ones read into registers a chunk ahead. (Bulk
 *     copies, cp.async.bulk a row completing on an mbarrier a stage, measured 5-15% slower
 *     on an H100 than these 16-byte copies);
 *   - every warp scans the chunk's scalar gates itself (shuffles), so Ks needs no barrier of
 *     its own; the diagonal gates are scanned per
 *     channel from shared memory by 4 threads a channel (a quarter of the chunk each, the
 *     quarters' totals combined by shuffles), each thread then scaling its own column of Ks;
 *   - two barriers a chunk: the chunk's copies landed (and the previous chunk's readers done),
 *     and Ks written.
 * One block of 512 threads per item; the state tile [K, vtile] in registers as mma.sync
 * accumulator fragments (warp w owns the 16 x 16 tiles w, w + 16, ...), as in the fused
 * kernel. Every exponent is <= 0 for log decays (gates <= 0), as there. */
#include <inttypes.h>
#include <stdio.h>

#include "lower_cuda.h"

static int64_t al128(int64_t x) { return (x + 127) / 128 * 128; }

int cuda_chunk_local_source(FILE *out, const CudaChunkShape *s, const char *name, int arch,
                            int smem_optin, unsigned *threads, unsigned *smem, char *err,
                            size_t errlen) {
  (void)err, (void)errlen;
  if (s->kind != CCK_SCALAR && s->kind != CCK_DIAG) return -1;
  if (arch < 80 || s->segs <= 1) return -1; /* cp.async and bf16 mma.sync: sm_80 */
  if (s->in_type != KT_BF16 && s->in_type != KT_F16) return -1;
  const int diag = s->kind == CCK_DIAG;
  const int NT = 512, NW = NT / 32;
  const int64_t KD = s->K, VT = (s->vtile + 15) / 16 * 16, CC = s->chunk;
  if (KD < 16 || KD > (diag ? 128 : 256) || KD % 16) return -1;
  if (s->vtile < 1 || VT > 256 || CC < 16 || CC > 128 || CC % 16) return -1;
  if (diag && (!s->has_g || s->g_mode != CCG_INPUT)) return -1;
  const int64_t NST = (KD / 16) * (VT / 16), NTW = (NST + NW - 1) / NW;
  if (NTW > 16) return -1;
  /* gates: 16-bit or f32 elements; a 16-byte copy holds GPC of them */
  const int gsz = diag && s->g_type != KT_F32 ? 2 : 4, GPC = 16 / gsz;
  const int64_t LQ = KD + 8, LV = VT + 8, LG = KD + GPC;
  const int64_t OFFV = al128(CC * LQ * 2), OFFG = OFFV + al128(CC * LV * 2);
  /* scalar gates: f32 inputs through the stages (4-byte cp.async), else read into registers
   * a chunk ahead */
  const int sgs = !diag && s->has_g && s->g_mode == CCG_INPUT && s->g_type == KT_F32;
  const int64_t STB = OFFG + (diag ? al128(CC * LG * gsz) : sgs ? al128(CC * 4) : 0);
  int64_t nstage = 3, total = 0;
  for (; nstage >= 2; nstage--) {
    total = nstage * STB + al128(CC * LQ * 2) + (diag ? al128(KD * 4) : 0);
    if (total <= (int64_t)smem_optin && total <= 227 * 1024) break;
  }
  if (nstage < 2) return -1;
  *threads = (unsigned)NT;
  *smem = (unsigned)total;
  const int bf = s->in_type == KT_BF16;
  const int64_t P = (CC + 31) / 32; /* scalar gates a lane */

  fprintf(out, "#define MX(x) %s_##x\n", name);
  cuda_print_conversions(out);
  cuda_print_mma_helpers(out, bf);
  fputs("/* 16 bytes global -> shared, asynchronously; n < 16 bytes read, the rest zero */\n"
        "static __device__ __forceinline__ void MX(cp16)(void *dst, const void *src, int n) {\n"
        "  asm volatile(\"cp.async.cg.shared.global [%0], [%1], 16, %2;\" :: \"r\"(MX(sa)(dst)), "
        "\"l\"(src), \"r\"(n) : \"memory\");\n"
        "}\n"
        "static __device__ __forceinline__ void MX(cpcommit)() {\n"
        "  asm volatile(\"cp.async.commit_group;\" ::: \"memory\");\n}\n"
        "template <int N> static __device__ __forceinline__ void MX(cpwait)() {\n"
        "  asm volatile(\"cp.async.wait_group %0;\" :: \"n\"(N) : \"memory\");\n}\n"
        "/* 4 bytes, n of them read (the rest zero) */\n"
        "static __device__ __forceinline__ void MX(cp4)(void *dst, const void *src, int n) {\n"
        "  asm volatile(\"cp.async.ca.shared.global [%0], [%1], 4, %2;\" :: \"r\"(MX(sa)(dst)), "
        "\"l\"(src), \"r\"(n) : \"memory\");\n"
        "}\n",
        out);
  fputs("\n", out);
  fprintf(out,
          "extern \"C\" __global__ void __launch_bounds__(%d, 1)\n"
          "%s(const MixcArgs_%s args, int64_t begin, int64_t end, float *scratch) {\n"
          "  const int KD = %" PRId64 ", VT = %" PRId64 ", CC = %" PRId64 ", NT = %d, NW = %d;\n"
          "  const int LQ = %" PRId64 ", LV = %" PRId64 ", LG = %" PRId64 ", GPC = %d;\n"
          "  const int NST = %" PRId64 ", NTW = %" PRId64 ", NSTAGE = %" PRId64 ", P = %" PRId64 ";\n"
          "  const int STB = %" PRId64 ", OFFV = %" PRId64 ", OFFG = %" PRId64 ";\n"
          "  const int64_t V = %" PRId64 ", VTILES = %" PRId64 ", VTP = %" PRId64 ";\n"
          "  const int64_t SEGS = %" PRId64 ", IF = %" PRId64 ";\n"
          "  (void)LG, (void)GPC, (void)OFFG, (void)P;\n"
          "  extern __shared__ __align__(128) unsigned char smem_[];\n"
          "  unsigned short *sKs = (unsigned short *)(smem_ + NSTAGE * STB);\n"
          "%s",
          NT, name, name, KD, VT, CC, NT, NW, LQ, LV, LG, GPC, NST, NTW, nstage, P, STB, OFFV,
          OFFG, s->V, s->vtiles, s->vtile, s->segs, cuda_chunk_item_floats(s),
          diag ? "  float *sel = (float *)(smem_ + NSTAGE * STB + OFFV); /* after Ks: b_last a channel */\n"
               : "");
  /* the item and its segment, exactly as the output kernel cuts them */
  cuda_print_work_item(out, s, "seg == SEGS - 1");
  cuda_print_tensor_ptrs(out, s, CUDA_PTRS_K | CUDA_PTRS_V);
  if (s->has_g && s->g_mode != CCG_INPUT) {
    fprintf(out, "  float gconst = ");
    if (s->g_mode == CCG_PARAM)
      cuda_print_head_load(out, name, s->g_type, s->p_g, s->s_g);
    else
      fprintf(out, "%.17g", s->g_const);
    fputs(";\n", out);
  }
  fprintf(out,
          "  const int64_t nch = t1 > t0 ? (t1 - t0 + CC - 1) / CC : 0;\n"
          "  const bool fk = k3 == 1 && k1 %% 8 == 0 && (((unsigned long long)(pk + 2 * kb)) & 15) == 0;\n"
          "  const bool fv = v3 == 1 && v1 %% 8 == 0 && (((unsigned long long)(pv + 2 * (vb + j0))) & 15) == 0;\n");
  if (diag)
    fprintf(out,
            "  const bool fg = g3 == 1 && g1 %% GPC == 0 && (((unsigned long long)(pg + %d * gb)) & 15) == 0;\n",
            gsz);
  /* the copies of chunk c into its stage: rows that the fast path does not take (strided,
   * misaligned or partial rows, rows past the segment: zeros) element by element */
  fputs("  auto issue = [&](int64_t c) {\n"
        "    if (c >= nch) return;\n"
        "    const int64_t c0 = t0 + c * CC;\n"
        "    const int lnx = (int)(t1 - c0 < CC ? t1 - c0 : CC);\n"
        "    unsigned char *stg = smem_ + (int)(c % NSTAGE) * STB;\n"
        "    unsigned short *dK = (unsigned short *)stg, *dV = (unsigned short *)(stg + OFFV);\n",
        out);
  if (diag)
    fprintf(out, "    %s *dG = (%s *)(stg + OFFG);\n", gsz == 4 ? "float" : "unsigned short",
            gsz == 4 ? "float" : "unsigned short");
  fprintf(out,
          "    for (int e = tid; e < CC * (KD / 8); e += NT) {\n"
          "      const int r = e / (KD / 8), c8 = (e %% (KD / 8)) * 8;\n"
          "      const unsigned short *ak = (const unsigned short *)pk + kb + (c0 + (r < lnx ? r : 0)) * k1 + c8 * k3;\n"
          "%s"
          "      else *(uint4 *)(dK + r * LQ + c8) = r < lnx ? MX(ld8r)(ak, k3, 8) : MX(z4)();\n"
          "    }\n"
          "    for (int e = tid; e < CC * (VT / 8); e += NT) {\n"
          "      const int r = e / (VT / 8), c8 = (e %% (VT / 8)) * 8;\n"
          "      const int nv = r < lnx ? (vw - c8 < 8 ? (vw - c8 > 0 ? vw - c8 : 0) : 8) : 0;\n"
          "      const unsigned short *av = (const unsigned short *)pv + vb + (c0 + (nv > 0 ? r : 0)) * v1 + (j0 + (nv > 0 ? c8 : 0)) * v3;\n"
          "%s"
          "      else *(uint4 *)(dV + r * LV + c8) = nv > 0 ? MX(ld8r)(av, v3, nv) : MX(z4)();\n"
          "    }\n",
          "      if (fk) MX(cp16)(dK + r * LQ + c8, ak, r < lnx ? 16 : 0);\n",
          "      if (fv && (nv == 8 || nv == 0)) MX(cp16)(dV + r * LV + c8, av, nv ? 16 : 0);\n");
  if (diag) {
    const char *gt = gsz == 4 ? "float" : "unsigned short";
    fprintf(out,
            "    for (int e = tid; e < CC * (KD / GPC); e += NT) {\n"
            "      const int r = e / (KD / GPC), c = (e %% (KD / GPC)) * GPC;\n"
            "      const %s *ag = (const %s *)pg + gb + (c0 + (r < lnx ? r : 0)) * g1 + c * g3;\n"
            "%s"
            "      } else {\n"
            "#pragma unroll\n"
            "        for (int x = 0; x < GPC; x++) dG[r * LG + c + x] = r < lnx ? ag[x * g3] : (%s)0;\n"
            "      }\n"
            "    }\n",
            gt, gt,
            "      if (fg) {\n"
            "        MX(cp16)(dG + r * LG + c, ag, r < lnx ? 16 : 0);\n",
            gt);
  }
  if (sgs) /* the scalar gates of the chunk: one 4-byte copy a token */
    fputs("    if (tid < CC) {\n"
          "      float *dg = (float *)(stg + OFFG);\n"
          "      MX(cp4)(dg + tid, (const float *)pg + gb + (c0 + (tid < lnx ? tid : 0)) * g1, "
          "tid < lnx ? 4 : 0);\n"
          "    }\n",
          out);
  fputs("  };\n", out);
  /* scalar gates: every warp reads chunk c's into registers (lane: tokens lane P + u) */
  if (!diag)
    fputs("  float rg[P];\n", out);
  if (!diag && !sgs) {
    fputs("  auto gates = [&](int64_t c) {\n"
          "    const int64_t c0 = t0 + c * CC;\n"
          "    const int lnx = c < nch ? (int)(t1 - c0 < CC ? t1 - c0 : CC) : 0;\n"
          "#pragma unroll\n"
          "    for (int u = 0; u < P; u++) {\n"
          "      const int r = lane * P + u;\n"
          "      float gg = 0.0f;\n",
          out);
    if (s->has_g && s->g_mode == CCG_INPUT) {
      fputs("      if (r < lnx) gg = ", out);
      cuda_print_load_f(out, name, s->g_type, "pg", "gb + (c0 + r) * g1");
      fputs(";\n", out);
    } else if (s->has_g) {
      fputs("      if (r < lnx) gg = gconst;\n", out);
    }
    fputs("      rg[u] = gg;\n"
          "    }\n"
          "  };\n"
          "  gates(0);\n",
          out);
  }
  fputs("  float st[NTW][8];\n"
        "#pragma unroll\n"
        "  for (int m = 0; m < NTW; m++)\n"
        "#pragma unroll\n"
        "    for (int e = 0; e < 8; e++) st[m][e] = 0.0f;\n"
        "  float gacc = 0.0f; /* the segment's summed log gate (diag: of channel gi) */\n"
        "#pragma unroll\n"
        "  for (int c = 0; c < NSTAGE - 1; c++) {\n"
        "    issue(c);\n"
        "    MX(cpcommit)();\n"
        "  }\n"
        "  for (int64_t c = 0; c < nch; c++) {\n"
        "    MX(cpwait)<NSTAGE - 2>(); /* this thread's copies of chunk c have landed */\n"
        "    __syncthreads();          /* everyone's; and chunk c - 1's readers are done */\n"
        "    issue(c + NSTAGE - 1);\n"
        "    MX(cpcommit)();\n"
        "    const unsigned char *stg = smem_ + (int)(c % NSTAGE) * STB;\n"
        "    const unsigned short *cK = (const unsigned short *)stg;\n"
        "    const unsigned short *cV = (const unsigned short *)(stg + OFFV);\n",
        out);
  if (sgs)
    fputs("    {\n"
          "      const float *cg = (const float *)(stg + OFFG);\n"
          "#pragma unroll\n"
          "      for (int u = 0; u < P; u++) rg[u] = lane * P + u < CC ? cg[lane * P + u] : 0.0f;\n"
          "    }\n",
          out);
  if (!diag) {
    /* the scan of the chunk's gates in each warp; Ks = K e^{b_last - b_t}, 8 elements a step */
    fputs("    float cs[P], run = 0.0f;\n"
          "#pragma unroll\n"
          "    for (int u = 0; u < P; u++) {\n"
          "      run += rg[u];\n"
          "      cs[u] = run;\n"
          "    }\n"
          "    float inc = run;\n"
          "#pragma unroll\n"
          "    for (int d = 1; d < 32; d <<= 1) {\n"
          "      const float y = __shfl_up_sync(0xffffffffu, inc, d);\n"
          "      if (lane >= d) inc += y;\n"
          "    }\n"
          "#pragma unroll\n"
          "    for (int u = 0; u < P; u++) cs[u] += inc - run;\n"
          "    const float blast = __shfl_sync(0xffffffffu, cs[P - 1], 31);\n"
          "    gacc += blast;\n",
          out);
    if (!sgs) fputs("    gates(c + 1);\n", out);
    fputs("    const int NPC = (CC * (KD / 8) + NT - 1) / NT;\n"
          "#pragma unroll\n"
          "    for (int u = 0; u < NPC; u++) {\n"
          "      const int e = tid + u * NT, t = (e / (KD / 8)) % CC, c8 = (e % (KD / 8)) * 8;\n"
          "      float bt = 0.0f;\n"
          "#pragma unroll\n"
          "      for (int x = 0; x < P; x++) {\n"
          "        const float y = __shfl_sync(0xffffffffu, cs[x], t / P);\n"
          "        if (t % P == x) bt = y;\n"
          "      }\n"
          "      if (e >= CC * (KD / 8)) continue;\n"
          "      const float w = __expf(blast - bt);\n"
          "      const uint4 x = *(const uint4 *)(cK + t * LQ + c8);\n"
          "      const unsigned xs[4] = {x.x, x.y, x.z, x.w};\n"
          "      unsigned ys[4];\n"
          "#pragma unroll\n"
          "      for (int i = 0; i < 4; i++)\n"
          "        ys[i] = MX(pk)(MX(f)((unsigned short)(xs[i] & 0xffffu)) * w, "
          "MX(f)((unsigned short)(xs[i] >> 16)) * w);\n"
          "      uint4 y;\n"
          "      y.x = ys[0], y.y = ys[1], y.z = ys[2], y.w = ys[3];\n"
          "      *(uint4 *)(sKs + t * LQ + c8) = y;\n"
          "    }\n",
          out);
  } else {
    /* per channel gi: 4 threads (quarters of the chunk, lanes 8 apart), the prefix of the
     * quarter in registers, the quarters' totals by shuffles; then the thread's column of Ks
     * and, the last quarter, b_last of the channel */
    const char *gt = gsz == 4 ? "float" : "unsigned short";
    fprintf(out,
            "    const %s *cG = (const %s *)(stg + OFFG);\n"
            "    const int gi = warp * 8 + (lane & 7), gq = lane >> 3, QT = CC / 4;\n"
            "    if (warp * 8 < KD) {\n"
            "      float loc[CC / 4], run = 0.0f;\n"
            "#pragma unroll\n"
            "      for (int r = 0; r < QT; r++) {\n"
            "        run += gi < KD ? %s : 0.0f;\n"
            "        loc[r] = run;\n"
            "      }\n"
            "      float inc = run;\n"
            "#pragma unroll\n"
            "      for (int d = 8; d < 32; d <<= 1) {\n"
            "        const float y = __shfl_up_sync(0xffffffffu, inc, d);\n"
            "        if (lane >= d) inc += y;\n"
            "      }\n"
            "      const float off = inc - run;\n"
            "      const float blast = __shfl_sync(0xffffffffu, inc, 24 + (lane & 7));\n"
            "      if (gi < KD) {\n"
            "        if (gq == 0) gacc += blast;\n"
            "        if (gq == 3) sel[gi] = blast;\n"
            "#pragma unroll\n"
            "        for (int r = 0; r < QT; r++) {\n"
            "          const int t = gq * QT + r;\n"
            "          sKs[t * LQ + gi] = MX(h)(MX(f)(cK[t * LQ + gi]) * __expf(blast - (loc[r] + off)));\n"
            "        }\n"
            "      }\n"
            "    }\n",
            gt, gt,
            gsz == 4 ? "cG[(gq * QT + r) * LG + gi]"
                     : (s->g_type == KT_BF16 ? "MX(bf2f)(cG[(gq * QT + r) * LG + gi])"
                                             : "MX(h2f)(cG[(gq * QT + r) * LG + gi])"));
  }
  fputs("    __syncthreads(); /* Ks (and b_last) written */\n"
        "#pragma unroll\n"
        "    for (int m = 0; m < NTW; m++) {\n"
        "      const int tt = warp + m * NW, si = tt / (VT / 16), sj = tt % (VT / 16);\n"
        "      if (tt >= NST) continue;\n",
        out);
  if (!diag)
    fputs("      const float d = __expf(blast);\n"
          "#pragma unroll\n"
          "      for (int e = 0; e < 8; e++) st[m][e] *= d;\n",
          out);
  else
    fputs("      const float d0 = __expf(sel[si * 16 + g]), d1 = __expf(sel[si * 16 + g + 8]);\n"
          "      st[m][0] *= d0, st[m][1] *= d0, st[m][4] *= d0, st[m][5] *= d0;\n"
          "      st[m][2] *= d1, st[m][3] *= d1, st[m][6] *= d1, st[m][7] *= d1;\n",
          out);
  fputs("#pragma unroll\n"
        "      for (int kk = 0; kk < CC / 16; kk++) {\n"
        "        unsigned fa[4], fb[4];\n"
        "        MX(ldAT)(fa, sKs + kk * 16 * LQ + si * 16, LQ);\n"
        "        MX(ldB)(fb, cV + kk * 16 * LV + sj * 16, LV);\n"
        "        MX(mma)(st[m], fa, fb);\n"
        "      }\n"
        "    }\n"
        "  }\n"
        "  MX(cpwait)<0>();\n"
        "  float *Lb = scratch + item * IF;\n"
        "#pragma unroll\n"
        "  for (int m = 0; m < NTW; m++) {\n"
        "    const int tt = warp + m * NW, si = tt / (VT / 16), sj = tt % (VT / 16);\n"
        "    if (tt >= NST) continue;\n"
        "#pragma unroll\n"
        "    for (int e = 0; e < 8; e++) {\n"
        "      const int i = si * 16 + g + ((e >> 1) & 1) * 8, j = sj * 16 + (e >> 2) * 8 + t2 + (e & 1);\n"
        "      if (j < vw) Lb[i * VTP + j] = st[m][e];\n"
        "    }\n"
        "  }\n",
        out);
  if (!diag)
    fputs("  if (tid == 0) Lb[KD * VTP] = gacc;\n", out);
  else
    fputs("  {\n"
          "    const int gi = warp * 8 + (lane & 7);\n"
          "    if (gi < KD && (lane >> 3) == 0) Lb[KD * VTP + gi] = gacc;\n"
          "  }\n",
          out);
  fputs("}\n#undef MX\n", out);
  return ferror(out) ? 1 : 0;
}
