/* The standalone-C backend: KIR printed as C11 (see c_emit.h).
 *
 * Three passes over a module: a structural one (what kir_verify would trip over: a missing
 * function, body or statement list), kir_verify, and the emitter's own check, which types every
 * expression again, counts the uses of every variable and parameter as they will be printed
 * (so no unused one is declared, and one only written is (void)-cast) and decides which loop
 * bounds need a temporary. Then the printing, which keeps the output free of warnings under
 * -Wall -Wextra -pedantic of gcc and clang (test_c_emit compiles random modules to hold it):
 *   - variables start at 0 (KIR's semantics; also no -Wmaybe-uninitialized);
 *   - a loop's bound is evaluated once (KIR's semantics): printed in the loop's test when
 *     nothing in the body can change it (a constant, variables the body does not assign, loads
 *     from the argument tables, other loads when the body stores nothing), else computed into
 *     a temporary `v_hi` in the loop's initialization;
 *   - integer constants are bare where C converts them to int64_t anyway and (int64_t)N
 *     where int arithmetic could overflow; constant subexpressions are folded here, with
 *     wrapping, so the C front end never folds an overflow or a division by zero, and a
 *     divisor it could fold to 0 (x - x) goes through mixc__div_i64;
 *   - and / or are && / || of conditions (KIR: logical, 0 or 1); an arithmetic condition is
 *     written `(c) != 0` (-Wint-in-bool-context);
 *   - a comparison of an expression with itself, or of a comparison, an and / or or an i32
 *     load with a constant, goes through an identity helper (-Wtautological-compare,
 *     -Wbool-compare, -Wtype-limits), and so does a constant index beyond 2^31;
 *   - `x = x` is left out (clang's -Wself-assign);
 *   - gcc's ivdep goes only on loops whose test is plain integer arithmetic (gcc drops the
 *     annotation, with a warning no option turns off, on a test with a branch in it);
 *   - comments are sanitized ("*" "/", "/" "*", "??" and control characters). */
#include "backends/c/c_emit.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- the prelude ---- */

static const char *const prelude_lines[] = {
    "/* mixc standalone C kernels: the helpers (bf16/f16 conversions, activations, min/max,\n",
    " * the matmul micro-kernel). */\n",
    "#ifndef MIXC__C_PRELUDE\n",
    "#define MIXC__C_PRELUDE 1\n",
    "#include <math.h>\n",
    "#include <stdint.h>\n",
    "#include <string.h>\n",
    "\n",
    "/* KF_VECTORIZE loops: independent iterations (gcc's ivdep; nothing elsewhere). */\n",
    "#if defined(__GNUC__) && !defined(__clang__)\n",
    "#define MIXC__IVDEP _Pragma(\"GCC ivdep\")\n",
    "#else\n",
    "#define MIXC__IVDEP\n",
    "#endif\n",
    "/* Helpers are static inline; unused ones are no warning. */\n",
    "#if defined(__GNUC__)\n",
    "#define MIXC__HELPER static inline __attribute__((unused))\n",
    "#else\n",
    "#define MIXC__HELPER static inline\n",
    "#endif\n",
    "\n",
    "MIXC__HELPER uint32_t mixc__f32_bits(float f) {\n",
    "  uint32_t u;\n",
    "  memcpy(&u, &f, sizeof u);\n",
    "  return u;\n",
    "}\n",
    "MIXC__HELPER float mixc__bits_f32(uint32_t u) {\n",
    "  float f;\n",
    "  memcpy(&f, &u, sizeof f);\n",
    "  return f;\n",
    "}\n",
    "/* m >> shift (1..31), rounded to nearest, ties to even. */\n",
    "MIXC__HELPER uint32_t mixc__shift_rne(uint32_t m, int shift) {\n",
    "  uint32_t q = m >> shift, rem = m & ((UINT32_C(1) << shift) - 1u);\n",
    "  uint32_t half = UINT32_C(1) << (shift - 1);\n",
    "  if (rem > half || (rem == half && (q & 1u))) q++;\n",
    "  return q;\n",
    "}\n",
    "/* IEEE binary16 and bfloat16: round to nearest even, overflow to infinity, NaN quiet. */\n",
    "MIXC__HELPER uint16_t mixc__f32_to_f16(float f) {\n",
    "  uint32_t x = mixc__f32_bits(f), ax = x & 0x7fffffffu;\n",
    "  uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);\n",
    "  if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));\n",
    "  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);\n",
    "  if (ax >= 0x38800000u) return (uint16_t)(sign | mixc__shift_rne(ax - 0x38000000u, 13));\n",
    "  if (ax <= 0x33000000u) return sign;\n",
    "  return (uint16_t)(sign | mixc__shift_rne((ax & 0x7fffffu) | 0x800000u,\n",
    "                                          (int)(126u - (ax >> 23))));\n",
    "}\n",
    "MIXC__HELPER float mixc__f16_to_f32(uint16_t h) {\n",
    "  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;\n",
    "  if (e == 0x1fu) return mixc__bits_f32(sign | 0x7f800000u | (m ? 0x400000u : 0u) |\n",
    "                          (m << 13));\n",
    "  if (e == 0) {\n",
    "    float v = (float)m * 5.9604644775390625e-8f;\n",
    "    return sign ? -v : v;\n",
    "  }\n",
    "  return mixc__bits_f32(sign | ((e + 112u) << 23) | (m << 13));\n",
    "}\n",
    "MIXC__HELPER uint16_t mixc__f32_to_bf16(float f) {\n",
    "  uint32_t x = mixc__f32_bits(f);\n",
    "  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x0040u);\n",
    "  return (uint16_t)mixc__shift_rne(x, 16);\n",
    "}\n",
    "MIXC__HELPER float mixc__bf16_to_f32(uint16_t b) {\n",
    "  uint32_t x = (uint32_t)b << 16;\n",
    "  if ((x & 0x7fffffffu) > 0x7f800000u) x |= 0x400000u;\n",
    "  return mixc__bits_f32(x);\n",
    "}\n",
    "\n",
    "/* Activations in numerically stable forms; NaN stays NaN. */\n",
    "MIXC__HELPER float mixc__sigmoid(float x) {\n",
    "  if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));\n",
    "  float z = expf(x);\n",
    "  return z / (1.0f + z);\n",
    "}\n",
    "/* max(x, 0) + log1p(exp(-|x|)) */\n",
    "MIXC__HELPER float mixc__softplus(float x) {\n",
    "  return (x > 0.0f ? x : 0.0f) + log1pf(expf(-fabsf(x)));\n",
    "}\n",
    "MIXC__HELPER float mixc__logsigmoid(float x) { return -mixc__softplus(-x); }\n",
    "MIXC__HELPER float mixc__silu(float x) { return x * mixc__sigmoid(x); }\n",
    "MIXC__HELPER float mixc__relu(float x) { return x < 0.0f ? 0.0f : x; }\n",
    "MIXC__HELPER float mixc__elu(float x) { return x > 0.0f ? x : expm1f(x); }\n",
    "MIXC__HELPER float mixc__rsqrt(float x) { return 1.0f / sqrtf(x); }\n",
    "\n",
    "/* min and max: x < y ? x : y (x > y ? x : y), and NaN if either is NaN. */\n",
    "MIXC__HELPER float mixc__min_f32(float x, float y) {\n",
    "  return (isnan(x) || isnan(y)) ? NAN : (x < y ? x : y);\n",
    "}\n",
    "MIXC__HELPER float mixc__max_f32(float x, float y) {\n",
    "  return (isnan(x) || isnan(y)) ? NAN : (x > y ? x : y);\n",
    "}\n",
    "MIXC__HELPER int64_t mixc__min_i64(int64_t x, int64_t y) { return x < y ? x : y; }\n",
    "MIXC__HELPER int64_t mixc__max_i64(int64_t x, int64_t y) { return x > y ? x : y; }\n",
    "/* Division by 0 (or INT64_MIN / -1) is undefined when it runs, as in C; these keep the\n",
    " * compiler from warning about a divisor it folds to 0 in code that may never run. */\n",
    "MIXC__HELPER int64_t mixc__div_i64(int64_t x, int64_t y) { return x / y; }\n",
    "MIXC__HELPER int64_t mixc__rem_i64(int64_t x, int64_t y) { return x % y; }\n",
    "/* Identities: what a compiler would judge by its form (a comparison it calls tautological,\n",
    " * a constant index it calls out of bounds) goes through one. */\n",
    "MIXC__HELPER int64_t mixc__i64(int64_t x) { return x; }\n",
    "MIXC__HELPER float mixc__f32(float x) { return x; }\n",
    "\n",
    "/* KS_MATMUL: C[i, j] (+)= sum_k A[i, k] B[k, j] for i < M, j < N, k < K, row-major with\n",
    " * leading dimensions lda, ldb, ldc (elements); C overlaps neither A nor B. 4 x 16 tiles\n",
    " * of C accumulate in registers (local arrays: no restrict needed); the edges go one\n",
    " * element at a time. Each sum runs over k in order from 0, then is added to C (acc) or\n",
    " * stored. */\n",
    "MIXC__HELPER void mixc__matmul(int64_t M, int64_t N, int64_t K, const float *A,\n",
    "                               int64_t lda, const float *B, int64_t ldb, float *C,\n",
    "                               int64_t ldc, int acc) {\n",
    "  int64_t mt = M / 4 * 4, nt = N / 16 * 16, i, j, k, r, c;\n",
    "  for (i = 0; i < mt; i += 4) {\n",
    "    for (j = 0; j < nt; j += 16) {\n",
    "      float t[4][16];\n",
    "      for (r = 0; r < 4; r++)\n",
    "        for (c = 0; c < 16; c++) t[r][c] = 0.0f;\n",
    "      for (k = 0; k < K; k++) {\n",
    "        const float *b = B + k * ldb + j;\n",
    "        const float a0 = A[i * lda + k], a1 = A[(i + 1) * lda + k];\n",
    "        const float a2 = A[(i + 2) * lda + k], a3 = A[(i + 3) * lda + k];\n",
    "        for (c = 0; c < 16; c++) {\n",
    "          t[0][c] += a0 * b[c];\n",
    "          t[1][c] += a1 * b[c];\n",
    "          t[2][c] += a2 * b[c];\n",
    "          t[3][c] += a3 * b[c];\n",
    "        }\n",
    "      }\n",
    "      for (r = 0; r < 4; r++) {\n",
    "        float *d = C + (i + r) * ldc + j;\n",
    "        for (c = 0; c < 16; c++) d[c] = acc ? d[c] + t[r][c] : t[r][c];\n",
    "      }\n",
    "    }\n",
    "    for (r = 0; r < 4; r++)\n",
    "      for (c = nt; c < N; c++) {\n",
    "        float s = 0.0f;\n",
    "        for (k = 0; k < K; k++) s += A[(i + r) * lda + k] * B[k * ldb + c];\n",
    "        C[(i + r) * ldc + c] = acc ? C[(i + r) * ldc + c] + s : s;\n",
    "      }\n",
    "  }\n",
    "  for (i = mt; i < M; i++)\n",
    "    for (c = 0; c < N; c++) {\n",
    "      float s = 0.0f;\n",
    "      for (k = 0; k < K; k++) s += A[i * lda + k] * B[k * ldb + c];\n",
    "      C[i * ldc + c] = acc ? C[i * ldc + c] + s : s;\n",
    "    }\n",
    "}\n",
    "#endif /* MIXC__C_PRELUDE */\n",
};

void mixc_emit_c_prelude(FILE *out) {
  for (size_t i = 0; i < sizeof prelude_lines / sizeof *prelude_lines; i++)
    fputs(prelude_lines[i], out);
}

/* MIXC_C_CUDA: what NVRTC lacks without host headers (it has no <stdint.h>, <math.h> or
 * <string.h>; expf, logf, log1pf, expm1f, tanhf, sqrtf, fabsf and isnan are its built-in
 * device math), the helpers' linkage, and the block-cooperative matmul. */
static const char *const cuda_prelude_lines[] = {
    "/* mixc CUDA kernels (compiled by NVRTC: no host headers). */\n",
    "#ifndef MIXC__CUDA_PRELUDE\n",
    "#define MIXC__CUDA_PRELUDE 1\n",
    "typedef long long int64_t;\n",
    "typedef int int32_t;\n",
    "typedef unsigned short uint16_t;\n",
    "typedef unsigned int uint32_t;\n",
    "#ifndef NULL\n",
    "#define NULL 0\n",
    "#endif\n",
    "#define UINT32_C(x) (x##u)\n",
    "#define INT64_MIN (-9223372036854775807LL - 1)\n",
    "#define INFINITY __int_as_float(0x7f800000)\n",
    "#define NAN __int_as_float(0x7fc00000)\n",
    "#define MIXC__IVDEP\n",
    "#define MIXC__HELPER static __device__ __forceinline__\n",
    "#pragma nv_diag_suppress 177 /* a helper declared but never referenced */\n",
    "/* KS_MATMUL outside KF_BLOCK loops: all threads of the block, thread x computing the\n",
    " * elements e = x, x + blockDim.x, ... of C (row e / N, column e % N), each sum in fp32 over\n",
    " * k in order from 0. The caller puts __syncthreads() after it. */\n",
    "MIXC__HELPER void mixc__matmul_block(int64_t M, int64_t N, int64_t K, const float *A,\n",
    "                                     int64_t lda, const float *B, int64_t ldb, float *C,\n",
    "                                     int64_t ldc, int acc) {\n",
    "  for (int64_t e = threadIdx.x; e < M * N; e += blockDim.x) {\n",
    "    int64_t i = e / N, j = e % N, k;\n",
    "    float s = 0.0f;\n",
    "    for (k = 0; k < K; k++) s += A[i * lda + k] * B[k * ldb + j];\n",
    "    C[i * ldc + j] = acc ? C[i * ldc + j] + s : s;\n",
    "  }\n",
    "}\n",
    "/* KS_MATMUL on tensor cores (sm_80 and later; earlier: mixc__matmul_block): each warp\n",
    " * owns 16 x 16 tiles of C (tile w, w + warps, ...) and runs mma.sync m16n8k8 with TF32\n",
    " * operands and fp32 accumulation over k in steps of 8. Operands are read from A, B (any\n",
    " * leading dimensions, any alignment) and rounded to TF32 (cvt.rna); rows, columns and k\n",
    " * beyond M, N, K read as 0, and only elements inside M x N are stored. split = 1 (3xTF32):\n",
    " * each operand is big + small, both TF32, and a_small b_big + a_big b_small + a_big b_big\n",
    " * is accumulated, which is about as exact as fp32. Tiles wholly inside M x N take a path\n",
    " * without the bounds tests. A block whose size is not a multiple of 32 takes\n",
    " * mixc__matmul_block. The caller puts __syncthreads() after it. */\n",
    "MIXC__HELPER uint32_t mixc__tf32(float x) {\n",
    "#if __CUDA_ARCH__ >= 800\n",
    "  uint32_t r;\n",
    "  asm(\"cvt.rna.tf32.f32 %0, %1;\" : \"=r\"(r) : \"f\"(x));\n",
    "  return r;\n",
    "#else\n",
    "  return __float_as_uint(x);\n",
    "#endif\n",
    "}\n",
    "MIXC__HELPER void mixc__mma_tf32(float *d, const uint32_t *a, const uint32_t *b) {\n",
    "#if __CUDA_ARCH__ >= 800\n",
    "  asm volatile(\"mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, \"\n",
    "               \"{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\\n\"\n",
    "               : \"+f\"(d[0]), \"+f\"(d[1]), \"+f\"(d[2]), \"+f\"(d[3])\n",
    "               : \"r\"(a[0]), \"r\"(a[1]), \"r\"(a[2]), \"r\"(a[3]), \"r\"(b[0]), \"r\"(b[1]));\n",
    "#endif\n",
    "}\n",
    "/* One warp's 16 x 16 tile at (i0, j0); lane = 4 g + q. Fragments (PTX ISA, m16n8k8 .tf32):\n",
    " * A row g + 8 (r % 2), column q + 4 (r / 2); B row q + 4 r, column g; C row g + 8 (r / 2),\n",
    " * column 2 q + r % 2. */\n",
    "template <bool CHECK, bool SPLIT>\n",
    "MIXC__HELPER void mixc__mma_tile(int M, int N, int K, const float *A, int lda, const float *B,\n",
    "                                 int ldb, float *C, int ldc, int acc, int i0, int j0, int g,\n",
    "                                 int q) {\n",
    "  float d[2][4];\n",
    "  for (int h = 0; h < 2; h++)\n",
    "    for (int r = 0; r < 4; r++) {\n",
    "      int row = i0 + g + 8 * (r >> 1), col = j0 + 8 * h + 2 * q + (r & 1);\n",
    "      d[h][r] = acc && (!CHECK || (row < M && col < N)) ? C[row * ldc + col] : 0.0f;\n",
    "    }\n",
    "  for (int k0 = 0; k0 < K; k0 += 8) {\n",
    "    float a[4], b[2][2];\n",
    "    for (int r = 0; r < 4; r++) {\n",
    "      int row = i0 + g + 8 * (r & 1), k = k0 + q + 4 * (r >> 1);\n",
    "      a[r] = !CHECK || (row < M && k < K) ? A[row * lda + k] : 0.0f;\n",
    "    }\n",
    "    for (int h = 0; h < 2; h++)\n",
    "      for (int r = 0; r < 2; r++) {\n",
    "        int k = k0 + q + 4 * r, col = j0 + 8 * h + g;\n",
    "        b[h][r] = !CHECK || (k < K && col < N) ? B[k * ldb + col] : 0.0f;\n",
    "      }\n",
    "    uint32_t ab[4], bb[2][2];\n",
    "    for (int r = 0; r < 4; r++) ab[r] = mixc__tf32(a[r]);\n",
    "    for (int h = 0; h < 2; h++)\n",
    "      for (int r = 0; r < 2; r++) bb[h][r] = mixc__tf32(b[h][r]);\n",
    "    if (SPLIT) {\n",
    "      uint32_t as[4], bs[2][2];\n",
    "      for (int r = 0; r < 4; r++) as[r] = mixc__tf32(a[r] - __uint_as_float(ab[r]));\n",
    "      for (int h = 0; h < 2; h++)\n",
    "        for (int r = 0; r < 2; r++) bs[h][r] = mixc__tf32(b[h][r] - __uint_as_float(bb[h][r]));\n",
    "      for (int h = 0; h < 2; h++) {\n",
    "        mixc__mma_tf32(d[h], as, bb[h]);\n",
    "        mixc__mma_tf32(d[h], ab, bs[h]);\n",
    "      }\n",
    "    }\n",
    "    for (int h = 0; h < 2; h++) mixc__mma_tf32(d[h], ab, bb[h]);\n",
    "  }\n",
    "  for (int h = 0; h < 2; h++)\n",
    "    for (int r = 0; r < 4; r++) {\n",
    "      int row = i0 + g + 8 * (r >> 1), col = j0 + 8 * h + 2 * q + (r & 1);\n",
    "      if (!CHECK || (row < M && col < N)) C[row * ldc + col] = d[h][r];\n",
    "    }\n",
    "}\n",
    "template <bool SPLIT>\n",
    "MIXC__HELPER void mixc__matmul_tc(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,\n",
    "                                  const float *B, int64_t ldb, float *C, int64_t ldc, int acc) {\n",
    "#if __CUDA_ARCH__ >= 800\n",
    "  const int64_t lim = 0x7fffffff;\n",
    "  if ((blockDim.x & 31u) == 0 && lda >= 0 && ldb >= 0 && ldc >= 0 && M < lim && N < lim &&\n",
    "      K < lim && M * lda + K < lim && K * ldb + N < lim && M * ldc + N < lim) {\n",
    "    const int lane = (int)(threadIdx.x & 31u), warp = (int)(threadIdx.x >> 5);\n",
    "    const int nw = (int)(blockDim.x >> 5), g = lane >> 2, q = lane & 3;\n",
    "    const int m = (int)M, n = (int)N, k = (int)K, mt = (m + 15) / 16, nt = (n + 15) / 16;\n",
    "    for (int t = warp; t < mt * nt; t += nw) {\n",
    "      int i0 = t / nt * 16, j0 = t % nt * 16;\n",
    "      if (i0 + 16 <= m && j0 + 16 <= n && k % 8 == 0)\n",
    "        mixc__mma_tile<false, SPLIT>(m, n, k, A, (int)lda, B, (int)ldb, C, (int)ldc, acc, i0,\n",
    "                                     j0, g, q);\n",
    "      else\n",
    "        mixc__mma_tile<true, SPLIT>(m, n, k, A, (int)lda, B, (int)ldb, C, (int)ldc, acc, i0,\n",
    "                                    j0, g, q);\n",
    "    }\n",
    "    return;\n",
    "  }\n",
    "#endif\n",
    "  mixc__matmul_block(M, N, K, A, lda, B, ldb, C, ldc, acc);\n",
    "}\n",
    "#endif /* MIXC__CUDA_PRELUDE */\n",
};

/* The prelude for NVRTC: the CUDA lines, then the C prelude without its #includes and its
 * definitions of MIXC__IVDEP and MIXC__HELPER (given above), the bit casts CUDA's. */
static void put_cuda_prelude(FILE *out) {
  for (size_t i = 0; i < sizeof cuda_prelude_lines / sizeof *cuda_prelude_lines; i++)
    fputs(cuda_prelude_lines[i], out);
  int skip = 0, endifs = 0;
  for (size_t i = 0; i < sizeof prelude_lines / sizeof *prelude_lines; i++) {
    const char *l = prelude_lines[i];
    if (!strncmp(l, "#include ", 9)) continue;
    if (!strncmp(l, "/* KF_VECTORIZE loops", 21)) skip = 1;
    if (skip) {
      if (!strcmp(l, "#endif\n") && ++endifs == 2) skip = 0;
      continue;
    }
    if (!strcmp(l, "  memcpy(&u, &f, sizeof u);\n")) l = "  u = __float_as_uint(f);\n";
    if (!strcmp(l, "  memcpy(&f, &u, sizeof f);\n")) l = "  f = __uint_as_float(u);\n";
    fputs(l, out);
  }
}

/* ---- names ---- */

static const char *const reserved_names[] = {
    /* C11 keywords, C23's and GNU's */
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else",
    "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register",
    "restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch", "typedef",
    "union", "unsigned", "void", "volatile", "while", "bool", "true", "false", "nullptr",
    "constexpr", "typeof", "typeof_unqual", "alignas", "alignof", "static_assert",
    "thread_local", "asm",
    /* the kernel's parameters */
    "ptrs", "ints", "begin", "end", "scratch",
    /* what the output names: libm, macros of <math.h>, <stdint.h>, <string.h> */
    "NAN", "INFINITY", "NULL", "EOF", "errno", "expf", "logf", "sqrtf", "tanhf", "log1pf",
    "expm1f", "fabsf", "isnan", "isinf", "isfinite", "isnormal", "signbit", "fpclassify",
    "isgreater", "isgreaterequal", "isless", "islessequal", "islessgreater", "isunordered",
    "math_errhandling", "memcpy", "main", "offsetof", "assert"};

static int is_reserved(const char *s) {
  for (size_t i = 0; i < sizeof reserved_names / sizeof *reserved_names; i++)
    if (!strcmp(s, reserved_names[i])) return 1;
  size_t n = strlen(s);
  if (s[0] == '_') return 1;                        /* _X and __x are reserved */
  if (n >= 2 && !strcmp(s + n - 2, "_t")) return 1; /* int64_t, uint16_t, size_t, ... */
  if (!strncmp(s, "mixc__", 6) || !strncmp(s, "MIXC__", 6)) return 1; /* the prelude */
  int lower = 0, under = 0;
  for (const char *p = s; *p; p++) {
    if (*p >= 'a' && *p <= 'z') lower = 1;
    if (*p == '_') under = 1;
  }
  return !lower && under; /* INT64_MIN, HUGE_VALF, FP_NAN, ... */
}

/* MIXC_C_CUDA: what a variable may not be called in CUDA C++ beyond C's reserved names. */
static const char *const cuda_reserved_names[] = {
    "alignas", "and", "and_eq", "asm", "bitand", "bitor", "bool", "catch", "char16_t",
    "char32_t", "char8_t", "class", "co_await", "co_return", "co_yield", "compl", "concept",
    "const_cast", "consteval", "constinit", "decltype", "delete", "dynamic_cast", "explicit",
    "export", "friend", "mutable", "namespace", "new", "noexcept", "not", "not_eq", "operator",
    "or", "or_eq", "private", "protected", "public", "reinterpret_cast", "requires",
    "static_cast", "template", "this", "throw", "try", "typeid", "typename", "using", "virtual",
    "wchar_t", "xor", "xor_eq", "args", "threadIdx", "blockIdx", "blockDim", "gridDim",
    "warpSize", "std", "min", "max", "abs", "fabs", "exp", "log", "sqrt", "tanh", "log1p",
    "expm1", "signed", "unsigned", "float", "double", "int", "long", "short", "char"};

static int cuda_reserved(const char *s) {
  if (!strncmp(s, "MixcArgs_", 9)) return 1; /* the argument structs */
  for (size_t i = 0; i < sizeof cuda_reserved_names / sizeof *cuda_reserved_names; i++)
    if (!strcmp(s, cuda_reserved_names[i])) return 1;
  return 0;
}

static int ident_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* name with every character outside [A-Za-z0-9_] made '_', and `prefix` added where it would
 * be reserved or start with a digit (malloc'd; NULL when out of memory). */
static char *c_ident(const char *name, const char *prefix) {
  if (!name) name = "";
  size_t n = strlen(name), np = strlen(prefix);
  char *s = malloc(n + np + 1);
  if (!s) return NULL;
  memcpy(s, prefix, np);
  for (size_t i = 0; i < n; i++) s[np + i] = ident_char(name[i]) ? name[i] : '_';
  s[np + n] = 0;
  const char *body = s + np;
  if (n == 0 || (body[0] >= '0' && body[0] <= '9') || is_reserved(body)) return s;
  memmove(s, s + np, n + 1);
  return s;
}

size_t mixc_emit_c_func_name(const KFunc *f, char *buf, size_t n) {
  char *s = c_ident(f ? f->name : "", "k_");
  if (!s) {
    if (n) buf[0] = 0;
    return 0;
  }
  size_t len = strlen(s);
  if (n) {
    size_t k = len < n - 1 ? len : n - 1;
    memcpy(buf, s, k);
    buf[k] = 0;
  }
  free(s);
  return len;
}

/* ---- the emitter's state ---- */

typedef struct Emit {
  FILE *out;
  const KModule *m;
  const KFunc *f;
  char **fnames;  /* per function of m: its C name */
  /* per function */
  char **vnames;  /* per variable: its C name (NULL: not printed, not declared) */
  int *reads, *writes;
  int args_used;  /* bit i: parameter i is printed */
  unsigned char *assigned; /* scratch of bound_invariant: variables a loop body assigns */
  int *hvar;      /* per loop whose bound needs a temporary, in order: its variable */
  char **hnames;  /* and the temporary's C name */
  int nh, caph, hat;
  char *err;
  size_t errlen;
  int bad;
  /* MIXC_C_CUDA */
  int cuda;
  int blk;   /* depth of KF_BLOCK loops around the statement being printed */
  int par;   /* inside the work-item (KF_PARALLEL) loop */
  int dirty; /* since the last barrier, a thread may have read data memory outside KF_BLOCK
                loops (so one is needed before a write another thread may make) */
  int flags;        /* the module's MIXC_C_* flags */
  const MixcCudaTarget *target; /* mixc_emit_cuda_module's target (may be NULL) */
  MixcCudaLaunch *launch;       /* and its launch settings (may be NULL) */
  /* per function (cuda_plan) */
  int smem;         /* the scratch is the block's dynamic shared memory */
  int mm;           /* KS_MATMUL outside KF_BLOCK loops: 0 fp32, 1 TF32, 2 3xTF32 */
  unsigned threads; /* __launch_bounds__ */
} Emit;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void efail(Emit *E, const char *fmt, ...) {
  if (E->bad) return;
  E->bad = 1;
  if (!E->err || !E->errlen) return;
  int n = snprintf(E->err, E->errlen, "c: %s%s", E->f && E->f->name ? E->f->name : "",
                   E->f ? ": " : "");
  if (n < 0 || (size_t)n >= E->errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(E->err + n, E->errlen - (size_t)n, fmt, ap);
  va_end(ap);
}

static int expr_arity(KExprKind k) {
  switch (k) {
  case KE_LOAD:
  case KE_BIN:
  case KE_PTRADD: return 2;
  case KE_UN: return 1;
  case KE_SELECT: return 3;
  default: return 0;
  }
}

/* ---- pass 1: what kir_verify would trip over ---- */

static int struct_stmt(const KStmt *s, int depth) {
  if (!s || depth > 10000) return 1;
  if ((s->nbody && !s->body) || (s->norelse && !s->orelse) || s->nbody < 0 || s->norelse < 0)
    return 1;
  for (int i = 0; i < s->nbody; i++)
    if (s->body[i] && struct_stmt(s->body[i], depth + 1)) return 1;
  for (int i = 0; i < s->norelse; i++)
    if (s->orelse[i] && struct_stmt(s->orelse[i], depth + 1)) return 1;
  return 0;
}

/* ---- pass 3: types, uses, loop bounds ---- */

static int value_type(KType t) { return t == KT_I64 || t == KT_F32 || t == KT_PTR; }

static KType load_type(KType elem) {
  switch (elem) {
  case KT_F32:
  case KT_BF16:
  case KT_F16: return KT_F32;
  case KT_I64:
  case KT_I32: return KT_I64;
  case KT_PTR: return KT_PTR;
  default: return KT_VOID;
  }
}

static int is_cmp(KOp op) { return op == KO_LT || op == KO_LE || op == KO_EQ || op == KO_NE; }
static int is_logic(KOp op) { return op == KO_AND || op == KO_OR; }

/* The type of e (checked against e->type), KT_VOID after an error. */
static KType check_expr(Emit *E, const KExpr *e) {
  if (E->bad) return KT_VOID;
  if (!e) {
    efail(E, "missing expression");
    return KT_VOID;
  }
  KType t = KT_VOID, x, y;
  switch (e->kind) {
  case KE_INT: t = KT_I64; break;
  case KE_FLOAT: t = KT_F32; break;
  case KE_VAR:
    if (e->var < 0 || e->var >= E->f->nvars) {
      efail(E, "variable %d does not exist", e->var);
      return KT_VOID;
    }
    t = E->f->vars[e->var].type;
    if (!value_type(t)) {
      efail(E, "variable %s has type %s", E->f->vars[e->var].name, kir_type_name(t));
      return KT_VOID;
    }
    break;
  case KE_ARG: {
    static const KType at[] = {KT_PTR, KT_PTR, KT_I64, KT_I64, KT_PTR};
    if (e->arg < 0 || e->arg >= 5) {
      efail(E, "parameter %d does not exist", e->arg);
      return KT_VOID;
    }
    t = at[e->arg];
    break;
  }
  case KE_LOAD:
    x = check_expr(E, e->a[0]);
    y = check_expr(E, e->a[1]);
    t = load_type(e->elem);
    if (!E->bad && (x != KT_PTR || y != KT_I64 || t == KT_VOID)) {
      efail(E, "load.%s of a %s at a %s index", kir_type_name(e->elem), kir_type_name(x),
            kir_type_name(y));
      return KT_VOID;
    }
    break;
  case KE_BIN:
    x = check_expr(E, e->a[0]);
    y = check_expr(E, e->a[1]);
    if (E->bad) return KT_VOID;
    if (e->op < KO_ADD || e->op > KO_OR || x != y || (x != KT_I64 && x != KT_F32) ||
        ((e->op == KO_REM || is_logic(e->op)) && x != KT_I64)) {
      efail(E, "binary %s of %s and %s", kir_op_name(e->op), kir_type_name(x),
            kir_type_name(y));
      return KT_VOID;
    }
    t = is_cmp(e->op) || is_logic(e->op) ? KT_I64 : x;
    break;
  case KE_UN:
    x = check_expr(E, e->a[0]);
    if (E->bad) return KT_VOID;
    if (!kir_op_is_unary(e->op) ||
        (e->op == KO_I2F ? x != KT_I64
                         : e->op == KO_NEG ? x != KT_I64 && x != KT_F32 : x != KT_F32)) {
      efail(E, "unary %s of %s", kir_op_name(e->op), kir_type_name(x));
      return KT_VOID;
    }
    t = e->op == KO_I2F ? KT_F32 : x;
    break;
  case KE_SELECT: {
    KType c = check_expr(E, e->a[0]);
    x = check_expr(E, e->a[1]);
    y = check_expr(E, e->a[2]);
    if (E->bad) return KT_VOID;
    if (c != KT_I64 || x != y || !value_type(x)) {
      efail(E, "select(%s, %s, %s)", kir_type_name(c), kir_type_name(x), kir_type_name(y));
      return KT_VOID;
    }
    t = x;
    break;
  }
  case KE_PTRADD:
    x = check_expr(E, e->a[0]);
    y = check_expr(E, e->a[1]);
    if (E->bad) return KT_VOID;
    if (x != KT_PTR || y != KT_I64) {
      efail(E, "ptradd of %s and %s", kir_type_name(x), kir_type_name(y));
      return KT_VOID;
    }
    t = KT_PTR;
    break;
  default: efail(E, "expression kind %d", (int)e->kind); return KT_VOID;
  }
  if (E->bad) return KT_VOID;
  if (t != e->type) {
    efail(E, "an expression typed %s is a %s", kir_type_name(e->type), kir_type_name(t));
    return KT_VOID;
  }
  return t;
}

static void check_var_target(Emit *E, int var, KType want, const char *what) {
  if (var < 0 || var >= E->f->nvars) {
    efail(E, "%s variable %d does not exist", what, var);
    return;
  }
  KType vt = E->f->vars[var].type;
  if (!value_type(vt) || (want != KT_VOID && vt != want))
    efail(E, "%s variable %s has type %s", what, E->f->vars[var].name, kir_type_name(vt));
}

/* ---- constants ---- */

static int expr_equal(const KExpr *x, const KExpr *y);

/* Whether e (i64) is a constant, folded with wrapping; its value in *v. Besides constant
 * operands, what C compilers fold anyway (so that they never fold an overflow of ours):
 * c ? k : k, x - x, x * 0, x % 1, x == x, 0 && x, 1 || x. */
static int const_i64(const KExpr *e, int64_t *v) {
  int64_t x, y;
  switch (e->kind) {
  case KE_INT: *v = e->i; return 1;
  case KE_UN:
    if (e->op != KO_NEG || e->type != KT_I64 || !const_i64(e->a[0], &x)) return 0;
    *v = (int64_t)(0u - (uint64_t)x);
    return 1;
  case KE_SELECT:
    if (e->type != KT_I64) return 0;
    if (const_i64(e->a[0], &x)) return const_i64(e->a[x ? 1 : 2], v);
    return const_i64(e->a[1], &x) && const_i64(e->a[2], &y) && x == y && (*v = x, 1);
  case KE_BIN: {
    if (e->a[0]->type != KT_I64) return 0;
    int cx = const_i64(e->a[0], &x), cy = const_i64(e->a[1], &y);
    if (!cx || !cy) {
      int same = expr_equal(e->a[0], e->a[1]);
      switch (e->op) {
      case KO_SUB:
      case KO_LT:
      case KO_NE:
        if (same) return *v = 0, 1;
        break;
      case KO_LE:
      case KO_EQ:
        if (same) return *v = 1, 1;
        break;
      case KO_MUL:
        if ((cx && x == 0) || (cy && y == 0)) return *v = 0, 1;
        break;
      case KO_REM:
        if (cy && (y == 1 || y == -1)) return *v = 0, 1;
        break;
      default: break;
      }
    }
    if (is_logic(e->op)) { /* a constant side may decide it alone */
      int absorb = e->op == KO_OR;
      if ((cx && (x != 0) == absorb) || (cy && (y != 0) == absorb)) {
        *v = absorb;
        return 1;
      }
      if (!cx || !cy) return 0;
      *v = e->op == KO_AND ? x && y : x || y;
      return 1;
    }
    if (!cx || !cy) return 0;
    switch (e->op) {
    case KO_ADD: *v = (int64_t)((uint64_t)x + (uint64_t)y); return 1;
    case KO_SUB: *v = (int64_t)((uint64_t)x - (uint64_t)y); return 1;
    case KO_MUL: *v = (int64_t)((uint64_t)x * (uint64_t)y); return 1;
    case KO_DIV:
    case KO_REM:
      if (y == 0 || (x == INT64_MIN && y == -1)) return 0;
      *v = e->op == KO_DIV ? x / y : x % y;
      return 1;
    case KO_MIN: *v = x < y ? x : y; return 1;
    case KO_MAX: *v = x > y ? x : y; return 1;
    case KO_LT: *v = x < y; return 1;
    case KO_LE: *v = x <= y; return 1;
    case KO_EQ: *v = x == y; return 1;
    case KO_NE: *v = x != y; return 1;
    default: return 0;
    }
  }
  default: return 0;
  }
}

static int is_const(const KExpr *e) {
  int64_t v;
  return e->type == KT_I64 && const_i64(e, &v);
}

static int fits_int(int64_t v) { return v >= -2147483647 && v <= 2147483647; }

/* ---- uses and loop bounds ---- */

/* The uses of variables and parameters in e as printed (a constant i64 subexpression is
 * printed folded: what it reads is not read). */
static void count_uses(Emit *E, const KExpr *e) {
  if (is_const(e)) return;
  if (e->kind == KE_VAR) E->reads[e->var]++;
  if (e->kind == KE_ARG) E->args_used |= 1 << e->arg;
  int n = expr_arity(e->kind);
  for (int i = 0; i < n; i++) count_uses(E, e->a[i]);
}

/* Marks the variables the statements assign; returns whether they write memory. */
static int body_effects(Emit *E, KStmt *const *s, int n) {
  int stores = 0;
  for (int i = 0; i < n; i++) {
    const KStmt *st = s[i];
    switch (st->kind) {
    case KS_SET:
    case KS_FOR: E->assigned[st->var] = 1; break;
    case KS_STORE:
    case KS_MATMUL: stores = 1; break;
    default: break;
    }
    stores |= body_effects(E, st->body, st->nbody);
    if (st->kind == KS_IF) stores |= body_effects(E, st->orelse, st->norelse);
  }
  return stores;
}

/* Whether e has one value throughout a loop whose body assigns E->assigned and writes memory
 * when `stores` (the argument tables are never written). */
static int bound_invariant(Emit *E, const KExpr *e, int stores) {
  if (is_const(e)) return 1;
  if (e->kind == KE_VAR) return !E->assigned[e->var];
  if (e->kind == KE_LOAD && stores &&
      !(e->a[0]->kind == KE_ARG && (e->a[0]->arg == 0 || e->a[0]->arg == 1)))
    return 0;
  int n = expr_arity(e->kind);
  for (int i = 0; i < n; i++)
    if (!bound_invariant(E, e->a[i], stores)) return 0;
  return 1;
}

/* Whether loop s computes its bound into a temporary. */
static int bound_needs_temp(Emit *E, const KStmt *s) {
  memset(E->assigned, 0, (size_t)E->f->nvars + 1);
  E->assigned[s->var] = 1; /* the loop's own increment */
  int stores = body_effects(E, s->body, s->nbody);
  return !bound_invariant(E, s->b, stores);
}

static void check_stmt(Emit *E, const KStmt *s) {
  if (E->bad) return;
  switch (s->kind) {
  case KS_SET: {
    KType t = check_expr(E, s->a);
    check_var_target(E, s->var, t, "the assigned");
    if (E->bad) break;
    if (s->a->kind == KE_VAR && s->a->var == s->var) break; /* x = x is left out */
    E->writes[s->var]++;
    count_uses(E, s->a);
    break;
  }
  case KS_STORE: {
    KType p = check_expr(E, s->a), i = check_expr(E, s->b), v = check_expr(E, s->c);
    if (!E->bad && (p != KT_PTR || i != KT_I64 || v != load_type(s->elem)))
      efail(E, "store.%s of a %s", kir_type_name(s->elem), kir_type_name(v));
    if (E->bad) break;
    count_uses(E, s->a);
    count_uses(E, s->b);
    count_uses(E, s->c);
    break;
  }
  case KS_FOR: {
    KType lo = check_expr(E, s->a), hi = check_expr(E, s->b);
    check_var_target(E, s->var, KT_I64, "the loop");
    if (!E->bad && (lo != KT_I64 || hi != KT_I64)) efail(E, "loop bounds must be i64");
    if (E->bad) break;
    E->writes[s->var]++;
    E->reads[s->var]++; /* the loop's test */
    count_uses(E, s->a);
    count_uses(E, s->b);
    if (bound_needs_temp(E, s)) {
      if (E->nh == E->caph) {
        int nc = E->caph ? 2 * E->caph : 8;
        int *hv = realloc(E->hvar, (size_t)nc * sizeof *hv);
        if (hv) E->hvar = hv;
        char **hn = realloc(E->hnames, (size_t)nc * sizeof *hn);
        if (hn) E->hnames = hn;
        if (!hv || !hn) {
          efail(E, "out of memory");
          break;
        }
        E->caph = nc;
      }
      E->hnames[E->nh] = NULL;
      E->hvar[E->nh++] = s->var;
    }
    break;
  }
  case KS_IF:
    if (check_expr(E, s->a) != KT_I64 && !E->bad) efail(E, "an if needs an i64 condition");
    if (!E->bad) count_uses(E, s->a);
    break;
  case KS_BLOCK: break;
  case KS_MATMUL:
    for (int i = 0; i < KM__COUNT && !E->bad; i++) {
      int ptr = i == KM_A || i == KM_B || i == KM_C;
      if (check_expr(E, s->mm[i]) != (ptr ? KT_PTR : KT_I64) && !E->bad)
        efail(E, "matmul operand %d must be %s", i, ptr ? "a pointer" : "an i64");
    }
    for (int i = 0; i < KM__COUNT && !E->bad; i++) count_uses(E, s->mm[i]);
    break;
  default: efail(E, "statement kind %d", (int)s->kind); return;
  }
  for (int i = 0; i < s->nbody && !E->bad; i++) {
    if (!s->body[i])
      efail(E, "missing statement");
    else
      check_stmt(E, s->body[i]);
  }
  if (s->kind == KS_IF)
    for (int i = 0; i < s->norelse && !E->bad; i++) {
      if (!s->orelse[i])
        efail(E, "missing statement");
      else
        check_stmt(E, s->orelse[i]);
    }
}

/* ---- printing constants ---- */

/* An i64 constant: bare when it fits an int and `typed` is not asked for, else (int64_t)N. */
static void put_int(Emit *E, int64_t v, int paren, int typed) {
  if (v == INT64_MIN)
    fputs("INT64_MIN", E->out);
  else if (fits_int(v) && !typed)
    fprintf(E->out, v < 0 && paren ? "(%" PRId64 ")" : "%" PRId64, v);
  else
    fprintf(E->out, paren ? "((int64_t)%" PRId64 ")" : "(int64_t)%" PRId64, v);
}

/* An f32 constant, exactly: %.9g with f ("1.0f", "-0.0f", "1e-45f"), INFINITY, NAN. */
static void put_float(Emit *E, double d, int paren) {
  const char *s = NULL;
  char buf[48];
  if (isnan(d))
    s = "NAN";
  else if (d >= 0x1.ffffffp127 || d <= -0x1.ffffffp127) /* rounds to infinity */
    s = d > 0 ? "INFINITY" : "-INFINITY";
  else {
    float f = d > FLT_MAX ? FLT_MAX : d < -FLT_MAX ? -FLT_MAX : (float)d;
    snprintf(buf, sizeof buf - 4, "%.9g", (double)f);
    if (!strpbrk(buf, ".e")) strcat(buf, ".0");
    strcat(buf, "f");
    s = buf;
  }
  if (paren && s[0] == '-')
    fprintf(E->out, "(%s)", s);
  else
    fputs(s, E->out);
}

/* ---- printing expressions ---- */

static void put_expr(Emit *E, const KExpr *e, int paren);

/* An i64 expression printed as is has C type int64_t (not int: a bare constant, a comparison,
 * an and / or, a select of those). */
static int typed_i64(const KExpr *e) {
  int64_t v;
  if (const_i64(e, &v)) return v == INT64_MIN || !fits_int(v);
  switch (e->kind) {
  case KE_VAR:
  case KE_ARG:
  case KE_LOAD:
  case KE_UN: return 1;
  case KE_BIN: return !is_cmp(e->op) && !is_logic(e->op);
  case KE_SELECT: return typed_i64(e->a[1]) || typed_i64(e->a[2]);
  default: return 0;
  }
}

/* e (i64) as a C expression of type int64_t. */
static void put_i64_typed(Emit *E, const KExpr *e) {
  int64_t v;
  if (const_i64(e, &v))
    put_int(E, v, 1, 1);
  else if (typed_i64(e))
    put_expr(E, e, 1);
  else {
    fputs("(int64_t)", E->out);
    put_expr(E, e, 1);
  }
}

/* Printed as a C int of value 0 or 1: a comparison, an and / or (not a constant). */
static int is_boolish(const KExpr *e) {
  return e->kind == KE_BIN && (is_cmp(e->op) || is_logic(e->op)) && !is_const(e);
}

/* What gcc judges by its form when it is compared with a constant: a comparison or an
 * and / or (-Wbool-compare), an i32 load (-Wtype-limits), and a select whose arms are all of
 * these or int constants (`(c ? (a < b) : 1)` is an int). */
static int is_narrow(const KExpr *e) {
  int64_t v;
  if (e->kind == KE_SELECT) {
    for (int i = 1; i < 3; i++)
      if (!is_narrow(e->a[i]) && !(const_i64(e->a[i], &v) && fits_int(v))) return 0;
    return 1;
  }
  return is_boolish(e) || (e->kind == KE_LOAD && e->elem == KT_I32);
}

/* Structural equality of two expressions. */
static int expr_equal(const KExpr *x, const KExpr *y) {
  if (x == y) return 1;
  if (!x || !y || x->kind != y->kind || x->type != y->type) return 0;
  switch (x->kind) {
  case KE_INT: return x->i == y->i;
  case KE_FLOAT: return memcmp(&x->f, &y->f, sizeof x->f) == 0;
  case KE_VAR: return x->var == y->var;
  case KE_ARG: return x->arg == y->arg;
  case KE_LOAD:
    if (x->elem != y->elem) return 0;
    break;
  case KE_BIN:
  case KE_UN:
    if (x->op != y->op) return 0;
    break;
  default: break;
  }
  int n = expr_arity(x->kind);
  for (int i = 0; i < n; i++)
    if (!expr_equal(x->a[i], y->a[i])) return 0;
  return 1;
}

static int has_var_or_load(const KExpr *e) {
  if (e->kind == KE_VAR || e->kind == KE_LOAD || e->kind == KE_ARG) return 1;
  int n = expr_arity(e->kind);
  for (int i = 0; i < n; i++)
    if (has_var_or_load(e->a[i])) return 1;
  return 0;
}

/* e (i64) compared with 0: "(e != 0)", through the identity where gcc would judge the form. */
static void put_nonzero(Emit *E, const KExpr *e, int paren) {
  if (paren) fputc('(', E->out);
  if (is_narrow(e)) {
    fputs("mixc__i64(", E->out);
    put_expr(E, e, 0);
    fputc(')', E->out);
  } else {
    put_expr(E, e, 1);
  }
  fputs(" != 0", E->out);
  if (paren) fputc(')', E->out);
}

/* A condition (if, select, an operand of && / ||): as is when it is a comparison, an and / or
 * or a plain value, else compared with 0 (gcc's -Wint-in-bool-context dislikes `if (a * b)`). */
static void put_cond(Emit *E, const KExpr *c, int paren) {
  int64_t v;
  if (const_i64(c, &v))
    fputs(v ? "1" : "0", E->out);
  else if (is_boolish(c) || c->kind == KE_VAR || c->kind == KE_LOAD || c->kind == KE_ARG)
    put_expr(E, c, paren);
  else
    put_nonzero(E, c, paren);
}

static const char *elem_ctype(KType elem) {
  switch (elem) {
  case KT_F32: return "float";
  case KT_I64: return "int64_t";
  case KT_I32: return "int32_t";
  case KT_BF16:
  case KT_F16: return "uint16_t";
  default: return "void *"; /* KT_PTR */
  }
}

/* An element index: a constant beyond 2^31 goes through the identity (clang's -Warray-bounds
 * judges constant indices against the address space). */
static void put_index(Emit *E, const KExpr *i) {
  int64_t v;
  if (const_i64(i, &v) && !fits_int(v)) {
    fputs("mixc__i64(", E->out);
    put_int(E, v, 0, 1);
    fputc(')', E->out);
  } else {
    put_expr(E, i, 0);
  }
}

/* A pointer as the operand of a cast to a typed pointer: ptrs[k] as it is (a void *), not as
 * the unsigned char * it is as a value. */
static void put_base(Emit *E, const KExpr *p) {
  if (p->kind == KE_LOAD && p->elem == KT_PTR && p->a[0]->kind == KE_ARG && p->a[0]->arg == 0) {
    fputs("ptrs[", E->out);
    put_index(E, p->a[1]);
    fputc(']', E->out);
  } else {
    put_expr(E, p, 1);
  }
}

static void put_load(Emit *E, const KExpr *e, int paren) {
  const KExpr *p = e->a[0], *i = e->a[1];
  FILE *o = E->out;
  /* the argument tables and the scratch, as they are typed */
  if (p->kind == KE_ARG && ((p->arg == 0 && e->elem == KT_PTR) ||
                            (p->arg == 1 && e->elem == KT_I64) ||
                            (p->arg == 4 && e->elem == KT_F32))) {
    int cast = p->arg == 0;
    if (cast)
      fputs(paren ? "((unsigned char *)ptrs[" : "(unsigned char *)ptrs[", o);
    else
      fputs(p->arg == 1 ? "ints[" : "scratch[", o);
    put_index(E, i);
    fputs(cast && paren ? "])" : "]", o);
    return;
  }
  int close = 0;
  switch (e->elem) {
  case KT_BF16: fputs("mixc__bf16_to_f32(", o); close = 1; break;
  case KT_F16: fputs("mixc__f16_to_f32(", o); close = 1; break;
  case KT_I32:
    fputs(paren ? "((int64_t)" : "(int64_t)", o);
    close = paren;
    break;
  case KT_PTR:
    fputs(paren ? "((unsigned char *)" : "(unsigned char *)", o);
    close = paren;
    break;
  default: break;
  }
  if (e->elem == KT_PTR)
    fputs("((void *const *)", o);
  else
    fprintf(o, "((const %s *)", elem_ctype(e->elem));
  put_base(E, p);
  fputs(")[", o);
  put_index(E, i);
  fputc(']', o);
  if (close) fputc(')', o);
}

static const char *bin_c_op(KOp op) {
  switch (op) {
  case KO_ADD: return "+";
  case KO_SUB: return "-";
  case KO_MUL: return "*";
  case KO_DIV: return "/";
  case KO_REM: return "%";
  case KO_LT: return "<";
  case KO_LE: return "<=";
  case KO_EQ: return "==";
  case KO_NE: return "!=";
  case KO_AND: return "&&";
  case KO_OR: return "||";
  default: return "?";
  }
}

/* An i64 divisor C's / and % may take: a constant other than 0 and -1, a variable, a
 * parameter, a load. Anything else goes through mixc__div_i64 / mixc__rem_i64, since compilers
 * fold forms like x - x, 0 * x or (1.0f == 0.0f) to 0 and warn about the division. */
static int plain_divisor(const KExpr *y) {
  int64_t c;
  if (const_i64(y, &c)) return c != 0 && c != -1;
  return y->kind == KE_VAR || y->kind == KE_ARG || y->kind == KE_LOAD;
}

static void put_bin(Emit *E, const KExpr *e, int paren) {
  FILE *o = E->out;
  const KExpr *x = e->a[0], *y = e->a[1];
  int i64 = x->type == KT_I64;
  if (e->op == KO_MIN || e->op == KO_MAX ||
      (i64 && (e->op == KO_DIV || e->op == KO_REM) && !plain_divisor(y))) {
    const char *name = e->op == KO_MIN   ? "min"
                       : e->op == KO_MAX ? "max"
                       : e->op == KO_DIV ? "div"
                                         : "rem";
    fprintf(o, "mixc__%s_%s(", name, i64 ? "i64" : "f32");
    put_expr(E, x, 0);
    fputs(", ", o);
    put_expr(E, y, 0);
    fputc(')', o);
    return;
  }
  if (is_logic(e->op)) {
    /* not a constant (folded), but one side may be: then it is the other side, as 0 / 1 */
    if (is_const(x) || is_const(y)) {
      const KExpr *z = is_const(x) ? y : x;
      if (is_boolish(z))
        put_expr(E, z, paren);
      else
        put_nonzero(E, z, paren);
      return;
    }
    if (paren) fputc('(', o);
    put_cond(E, x, 1);
    fprintf(o, " %s ", bin_c_op(e->op));
    put_cond(E, y, 1);
    if (paren) fputc(')', o);
    return;
  }
  if (paren) fputc('(', o);
  if (is_cmp(e->op)) {
    int64_t c;
    /* x OP x, and (a < b) OP constant: through an identity, so no compiler calls it
     * tautological */
    int wrapx = (has_var_or_load(x) && expr_equal(x, y)) || (is_narrow(x) && const_i64(y, &c));
    int wrapy = !wrapx && is_narrow(y) && const_i64(x, &c);
    const char *id = i64 ? "mixc__i64(" : "mixc__f32(";
    if (wrapx) fputs(id, o);
    put_expr(E, x, !wrapx);
    if (wrapx) fputc(')', o);
    fprintf(o, " %s ", bin_c_op(e->op));
    if (wrapy) fputs(id, o);
    put_expr(E, y, !wrapy);
    if (wrapy) fputc(')', o);
  } else if (i64 && !typed_i64(x) && !typed_i64(y)) {
    /* int arithmetic could overflow: make one side int64_t */
    put_i64_typed(E, x);
    fprintf(o, " %s ", bin_c_op(e->op));
    put_expr(E, y, 1);
  } else {
    put_expr(E, x, 1);
    fprintf(o, " %s ", bin_c_op(e->op));
    put_expr(E, y, 1);
  }
  if (paren) fputc(')', o);
}

static void put_un(Emit *E, const KExpr *e, int paren) {
  FILE *o = E->out;
  const KExpr *x = e->a[0];
  const char *fn = NULL;
  switch (e->op) {
  case KO_NEG:
    if (paren) fputc('(', o);
    fputc('-', o);
    if (x->type == KT_I64)
      put_i64_typed(E, x);
    else
      put_expr(E, x, 1);
    if (paren) fputc(')', o);
    return;
  case KO_I2F:
    fputs(paren ? "((float)" : "(float)", o);
    put_expr(E, x, 1);
    if (paren) fputc(')', o);
    return;
  case KO_EXP: fn = "expf"; break;
  case KO_LOG: fn = "logf"; break;
  case KO_SQRT: fn = "sqrtf"; break;
  case KO_RSQRT: fn = "mixc__rsqrt"; break;
  case KO_ABS: fn = "fabsf"; break;
  case KO_TANH: fn = "tanhf"; break;
  case KO_SIGMOID: fn = "mixc__sigmoid"; break;
  case KO_LOGSIGMOID: fn = "mixc__logsigmoid"; break;
  case KO_SOFTPLUS: fn = "mixc__softplus"; break;
  case KO_SILU: fn = "mixc__silu"; break;
  case KO_RELU: fn = "mixc__relu"; break;
  case KO_ELU: fn = "mixc__elu"; break;
  default: fn = "?"; break;
  }
  fprintf(o, "%s(", fn);
  put_expr(E, x, 0);
  fputc(')', o);
}

/* paren: the context needs a primary expression (an operand, a cast's operand). */
static void put_expr(Emit *E, const KExpr *e, int paren) {
  FILE *o = E->out;
  int64_t v;
  if (e->type == KT_I64 && const_i64(e, &v)) {
    put_int(E, v, paren, 0);
    return;
  }
  switch (e->kind) {
  case KE_INT: put_int(E, e->i, paren, 0); return;
  case KE_FLOAT: put_float(E, e->f, paren); return;
  case KE_VAR: fputs(E->vnames[e->var], o); return;
  case KE_ARG:
    switch (e->arg) {
    case 0: fputs(paren ? "((unsigned char *)ptrs)" : "(unsigned char *)ptrs", o); return;
    case 1: fputs(paren ? "((unsigned char *)ints)" : "(unsigned char *)ints", o); return;
    case 2: fputs("begin", o); return;
    case 3: fputs("end", o); return;
    default: fputs(paren ? "((unsigned char *)scratch)" : "(unsigned char *)scratch", o); return;
    }
  case KE_LOAD: put_load(E, e, paren); return;
  case KE_BIN: put_bin(E, e, paren); return;
  case KE_UN: put_un(E, e, paren); return;
  case KE_SELECT:
    if (paren) fputc('(', o);
    put_cond(E, e->a[0], 1);
    fputs(" ? ", o);
    put_expr(E, e->a[1], 1);
    fputs(" : ", o);
    put_expr(E, e->a[2], 1);
    if (paren) fputc(')', o);
    return;
  case KE_PTRADD:
    if (paren) fputc('(', o);
    put_expr(E, e->a[0], 1);
    fputs(" + ", o);
    put_expr(E, e->a[1], 1);
    if (paren) fputc(')', o);
    return;
  }
}

/* ---- printing statements ---- */

static void indent(Emit *E, int depth) { fprintf(E->out, "%*s", 2 * depth, ""); }

/* text as the inside of a C block comment: no comment delimiters, trigraphs or control
 * characters, ASCII only; a newline continues the comment on the next line at depth. */
static void put_comment_text(Emit *E, const char *text, int depth) {
  FILE *o = E->out;
  int prev = 0;
  for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
    int c = *p;
    if (c == '\n') {
      fputc('\n', o);
      indent(E, depth);
      fputs("   ", o);
      prev = ' ';
      continue;
    }
    if (c < 0x20 || c == 0x7f) c = ' ';
    if (c >= 0x80) c = '?';
    if ((prev == '*' && c == '/') || (prev == '/' && c == '*') || (prev == '?' && c == '?'))
      fputc(' ', o);
    fputc(c, o);
    prev = c;
  }
  if (prev == '/' || prev == '*') fputc(' ', o); /* clear of the closing marker */
}

static void put_comment(Emit *E, const char *text, int depth) {
  indent(E, depth);
  fputs("/* ", E->out);
  put_comment_text(E, text, depth);
  fputs(" */\n", E->out);
}

/* Whether a loop bound is plain integer arithmetic on variables, parameters and loads: gcc
 * loses its ivdep annotation on a loop test with a branch in it (a ?:, a comparison of floats
 * or in an index) and says "ignoring loop annotation", a warning no option turns off. */
static int simple_bound(const KExpr *e) {
  if (is_const(e)) return 1;
  switch (e->kind) {
  case KE_INT:
  case KE_VAR:
  case KE_ARG: return 1;
  case KE_LOAD: return e->type != KT_F32 && simple_bound(e->a[0]) && simple_bound(e->a[1]);
  case KE_PTRADD: return simple_bound(e->a[0]) && simple_bound(e->a[1]);
  case KE_UN: return e->op == KO_NEG && simple_bound(e->a[0]);
  case KE_BIN:
    return e->a[0]->type == KT_I64 && !is_cmp(e->op) && !is_logic(e->op) &&
           simple_bound(e->a[0]) && simple_bound(e->a[1]);
  default: return 0;
  }
}

static void put_stmt(Emit *E, const KStmt *s, int depth);

/* ---- MIXC_C_CUDA: the threads of a block ----
 *
 * The barrier invariant: __syncthreads() is printed only outside KF_BLOCK loops (E->blk == 0),
 * where every value, condition and loop bound is block-uniform (every thread computes it from
 * uniform values: the work item, the argument tables, memory all threads read after the
 * barrier that follows each write), so every thread of a block reaches every barrier, in the
 * same order. Inside the outermost KF_BLOCK loops, values may differ from thread to thread;
 * nothing there is a barrier, and loops nested there run sequentially on their thread.
 *
 * Writes: a KF_BLOCK loop (spread over the threads), a store (thread 0) or a matmul (all
 * threads) outside KF_BLOCK loops is followed by __syncthreads(), so what comes after sees
 * its stores; and it is preceded by one when, since the last barrier, the threads may have
 * read data memory outside KF_BLOCK loops (E->dirty), so no thread overwrites what another
 * has yet to read. */

/* Whether e reads memory other than the argument tables (memory a kernel may write). */
static int data_load(const KExpr *e) {
  if (is_const(e)) return 0;
  if (e->kind == KE_LOAD &&
      !(e->a[0]->kind == KE_ARG && (e->a[0]->arg == 0 || e->a[0]->arg == 1)))
    return 1;
  int n = expr_arity(e->kind);
  for (int i = 0; i < n; i++)
    if (data_load(e->a[i])) return 1;
  return 0;
}

/* Whether statements outside KF_BLOCK loops read data memory on every thread. */
static int uniform_reads(KStmt *const *s, int n) {
  for (int i = 0; i < n; i++) {
    const KStmt *st = s[i];
    switch (st->kind) {
    case KS_SET:
      if (data_load(st->a)) return 1;
      break;
    case KS_IF:
      if (data_load(st->a) || uniform_reads(st->body, st->nbody) ||
          uniform_reads(st->orelse, st->norelse))
        return 1;
      break;
    case KS_FOR:
      if (data_load(st->a) || data_load(st->b)) return 1;
      if ((!(st->flags & KF_BLOCK) || (st->flags & KF_PARALLEL)) &&
          uniform_reads(st->body, st->nbody))
        return 1;
      break;
    case KS_BLOCK:
      if (uniform_reads(st->body, st->nbody)) return 1;
      break;
    default: break; /* stores and matmuls: followed by a barrier */
    }
  }
  return 0;
}

static void put_barrier(Emit *E, int depth) {
  indent(E, depth);
  fputs("__syncthreads();\n", E->out);
  E->dirty = 0;
}

/* Before a write outside KF_BLOCK loops. */
static void barrier_before_write(Emit *E, int depth) {
  if (E->dirty) put_barrier(E, depth);
}

static void put_stmts(Emit *E, KStmt *const *s, int n, int depth) {
  for (int i = 0; i < n; i++) put_stmt(E, s[i], depth);
}

static void put_store(Emit *E, const KStmt *s) {
  FILE *o = E->out;
  const KExpr *p = s->a;
  if (p->kind == KE_ARG && p->arg == 4 && s->elem == KT_F32) {
    fputs("scratch[", o);
  } else {
    fprintf(o, s->elem == KT_PTR ? "((void **)" : "((%s *)", elem_ctype(s->elem));
    put_base(E, p);
    fputs(")[", o);
  }
  put_index(E, s->b);
  fputs("] = ", o);
  switch (s->elem) {
  case KT_BF16:
  case KT_F16:
    fputs(s->elem == KT_BF16 ? "mixc__f32_to_bf16(" : "mixc__f32_to_f16(", o);
    put_expr(E, s->c, 0);
    fputc(')', o);
    break;
  case KT_I32:
    fputs("(int32_t)", o);
    put_expr(E, s->c, 1);
    break;
  default: put_expr(E, s->c, 0); break;
  }
  fputs(";\n", o);
}

static void put_matmul(Emit *E, const KStmt *s) {
  FILE *o = E->out;
  static const char *const cuda_mm[3] = {"mixc__matmul_block(", "mixc__matmul_tc<false>(",
                                          "mixc__matmul_tc<true>("};
  fputs(E->cuda && !E->blk ? cuda_mm[E->mm] : "mixc__matmul(", o);
  for (int i = 0; i < KM__COUNT; i++) {
    if (i) fputs(", ", o);
    if (i == KM_A || i == KM_B || i == KM_C) {
      fputs(i == KM_C ? "(float *)" : "(const float *)", o);
      put_base(E, s->mm[i]);
    } else {
      put_expr(E, s->mm[i], 0);
    }
  }
  fprintf(o, ", %d);\n", s->flags ? 1 : 0);
}

static void put_for(Emit *E, const KStmt *s, int depth) {
  FILE *o = E->out;
  const char *v = E->vnames[s->var];
  const char *hi = NULL; /* the bound's temporary */
  if (E->hat < E->nh && bound_needs_temp(E, s)) hi = E->hnames[E->hat++];
  int self_init = s->a->kind == KE_VAR && s->a->var == s->var; /* v = v */
  /* MIXC_C_CUDA: an outermost KF_BLOCK loop runs its iterations on the block's threads */
  int threads = E->cuda && !E->blk && (s->flags & KF_BLOCK);
  int uniform_entry = 0;
  if (E->cuda && !E->blk && !threads) { /* a uniform loop: its body may follow its end */
    E->dirty |= data_load(s->a) || data_load(s->b);
    uniform_entry = E->dirty |= uniform_reads(s->body, s->nbody);
  }
  if (threads) {
    barrier_before_write(E, depth);
    self_init = 0;
  }
  if ((s->flags & KF_VECTORIZE) && (hi || simple_bound(s->b))) {
    indent(E, depth);
    fputs("MIXC__IVDEP\n", o);
  }
  indent(E, depth);
  fputs("for (", o);
  if (hi) { /* the bound first: it may read the variable before the loop sets it */
    fprintf(o, "%s = ", hi);
    put_expr(E, s->b, 0);
    if (!self_init) fputs(", ", o);
  }
  if (!self_init) {
    fprintf(o, "%s = ", v);
    put_expr(E, s->a, threads);
    if (threads) fputs(" + (int64_t)threadIdx.x", o);
  }
  fprintf(o, "; %s < ", v);
  if (hi)
    fputs(hi, o);
  else
    put_expr(E, s->b, 1);
  if (threads)
    fprintf(o, "; %s += (int64_t)blockDim.x) {\n", v);
  else
    fprintf(o, "; %s++) {\n", v);
  if (E->cuda && (s->flags & KF_BLOCK)) E->blk++;
  put_stmts(E, s->body, s->nbody, depth + 1);
  if (E->cuda && (s->flags & KF_BLOCK)) E->blk--;
  indent(E, depth);
  fputs("}\n", o);
  if (threads) put_barrier(E, depth);
  if (E->cuda && !E->blk && !threads) E->dirty |= uniform_entry;
}

/* Whether e reads variable v. */
static int reads_var(const KExpr *e, int v) {
  if (e->kind == KE_VAR && e->var == v) return 1;
  int n = expr_arity(e->kind);
  for (int i = 0; i < n; i++)
    if (reads_var(e->a[i], v)) return 1;
  return 0;
}

/* MIXC_C_CUDA, outside KF_BLOCK loops: whether s is a KF_BLOCK loop whose body is one
 * KF_VECTORIZE loop of stores alone, with bounds that do not read the outer variable or data
 * memory and need no temporary. Its iterations are independent (KF_VECTORIZE with no
 * variable assigned: nothing reduces), so the (outer, inner) pairs may be spread over the
 * threads as one range: every thread of the block has work when the outer loop is short,
 * and neighbouring threads take neighbouring inner indices (coalesced loads and stores,
 * consecutive shared-memory banks) where one thread per row would take one bank. */
static int collapsible(Emit *E, const KStmt *s) {
  if ((E->flags & MIXC_C_CUDA_PLAIN_LOOPS) || !(s->flags & KF_BLOCK) || s->nbody != 1) return 0;
  const KStmt *in = s->body[0];
  if (in->kind != KS_FOR || !(in->flags & KF_VECTORIZE) || in->nbody < 1 || in->comment)
    return 0;
  for (int i = 0; i < in->nbody; i++)
    if (in->body[i]->kind != KS_STORE || in->body[i]->comment) return 0;
  if (reads_var(in->a, s->var) || reads_var(in->b, s->var) || data_load(in->a) ||
      data_load(in->b) || data_load(s->a) || data_load(s->b))
    return 0;
  if (in->a->kind == KE_VAR && in->a->var == in->var) return 0; /* v = v */
  if (s->a->kind == KE_VAR && s->a->var == s->var) return 0;
  return !bound_needs_temp(E, s) && !bound_needs_temp(E, in);
}

static void put_collapsed(Emit *E, const KStmt *s, int depth) {
  FILE *o = E->out;
  const KStmt *in = s->body[0];
  barrier_before_write(E, depth);
  indent(E, depth);
  fputs("{ /* the loops over ", o);
  put_comment_text(E, E->vnames[s->var], 0);
  fputs(" and ", o);
  put_comment_text(E, E->vnames[in->var], 0);
  fputs(", spread over the block's threads as one range */\n", o);
  indent(E, depth + 1);
  fprintf(o, "const int64_t mixc__lo0 = ");
  put_expr(E, s->a, 0);
  fputs(", mixc__n0 = ", o);
  put_expr(E, s->b, 1);
  fputs(" - mixc__lo0;\n", o);
  indent(E, depth + 1);
  fprintf(o, "const int64_t mixc__lo1 = ");
  put_expr(E, in->a, 0);
  fputs(", mixc__n1 = ", o);
  put_expr(E, in->b, 1);
  fputs(" - mixc__lo1;\n", o);
  indent(E, depth + 1);
  fputs("if (mixc__n0 > 0 && mixc__n1 > 0)\n", o);
  indent(E, depth + 2);
  fputs("for (int64_t mixc__e = threadIdx.x; mixc__e < mixc__n0 * mixc__n1; "
        "mixc__e += blockDim.x) {\n",
        o);
  indent(E, depth + 3);
  fprintf(o, "%s = mixc__lo0 + mixc__e / mixc__n1;\n", E->vnames[s->var]);
  indent(E, depth + 3);
  fprintf(o, "%s = mixc__lo1 + mixc__e %% mixc__n1;\n", E->vnames[in->var]);
  E->blk += 2;
  put_stmts(E, in->body, in->nbody, depth + 3);
  E->blk -= 2;
  indent(E, depth + 2);
  fputs("}\n", o);
  indent(E, depth);
  fputs("}\n", o);
  put_barrier(E, depth);
}

/* MIXC_C_CUDA: the work-item loop `for v in [lo, hi)`: block b of the grid runs v = lo + b. */
static void put_cuda_item_loop(Emit *E, const KStmt *s, int depth) {
  FILE *o = E->out;
  const char *v = E->vnames[s->var];
  const char *hi = NULL;
  if (E->hat < E->nh && bound_needs_temp(E, s)) hi = E->hnames[E->hat++];
  E->dirty |= data_load(s->a) || data_load(s->b);
  int entry = E->dirty;
  if (hi) { /* the bound first: it may read the variable */
    indent(E, depth);
    fprintf(o, "%s = ", hi);
    put_expr(E, s->b, 0);
    fputs(";\n", o);
  }
  indent(E, depth);
  fprintf(o, "%s = ", v);
  put_expr(E, s->a, 1);
  fputs(" + (int64_t)blockIdx.x;\n", o);
  indent(E, depth);
  fprintf(o, "if (%s < ", v);
  if (hi)
    fputs(hi, o);
  else
    put_expr(E, s->b, 1);
  fputs(") {\n", o);
  E->par = 1;
  put_stmts(E, s->body, s->nbody, depth + 1);
  E->par = 0;
  indent(E, depth);
  fputs("}\n", o);
  E->dirty |= entry;
}

static void put_stmt(Emit *E, const KStmt *s, int depth) {
  FILE *o = E->out;
  if (s->comment) put_comment(E, s->comment, depth);
  if (E->cuda && !E->blk) { /* MIXC_C_CUDA, outside KF_BLOCK loops: see put_barrier */
    switch (s->kind) {
    case KS_SET: E->dirty |= data_load(s->a); break;
    case KS_STORE:
      barrier_before_write(E, depth);
      indent(E, depth);
      fputs("if (threadIdx.x == 0) {\n", o);
      indent(E, depth + 1);
      put_store(E, s);
      indent(E, depth);
      fputs("}\n", o);
      put_barrier(E, depth);
      return;
    case KS_MATMUL:
      barrier_before_write(E, depth);
      indent(E, depth);
      put_matmul(E, s);
      put_barrier(E, depth);
      return;
    case KS_FOR:
      if ((s->flags & KF_PARALLEL) && !E->par) {
        put_cuda_item_loop(E, s, depth);
        return;
      }
      if (collapsible(E, s)) {
        put_collapsed(E, s, depth);
        return;
      }
      break;
    default: break;
    }
  }
  switch (s->kind) {
  case KS_SET:
    if (s->a->kind == KE_VAR && s->a->var == s->var) return; /* x = x */
    indent(E, depth);
    fprintf(o, "%s = ", E->vnames[s->var]);
    put_expr(E, s->a, 0);
    fputs(";\n", o);
    return;
  case KS_STORE:
    indent(E, depth);
    put_store(E, s);
    return;
  case KS_MATMUL:
    indent(E, depth);
    put_matmul(E, s);
    return;
  case KS_FOR: put_for(E, s, depth); return;
  case KS_IF: {
    indent(E, depth);
    const KStmt *st = s;
    int uni = E->cuda && !E->blk, d_in = 0, d_out = 0; /* MIXC_C_CUDA: E->dirty of branches */
    for (;;) {
      if (uni) d_in = E->dirty |= data_load(st->a);
      fputs("if (", o);
      put_cond(E, st->a, 0);
      fputs(") {\n", o);
      put_stmts(E, st->body, st->nbody, depth + 1);
      if (uni) {
        d_out |= E->dirty;
        E->dirty = d_in;
      }
      indent(E, depth);
      if (st->norelse == 1 && st->orelse[0]->kind == KS_IF && !st->orelse[0]->comment) {
        fputs("} else ", o);
        st = st->orelse[0];
        continue;
      }
      if (st->norelse) {
        fputs("} else {\n", o);
        put_stmts(E, st->orelse, st->norelse, depth + 1);
        indent(E, depth);
      }
      if (uni) E->dirty |= d_out;
      fputs("}\n", o);
      return;
    }
  }
  case KS_BLOCK: put_stmts(E, s->body, s->nbody, depth); return;
  default: return;
  }
}

/* ---- functions ---- */

static const char *var_ctype(KType t) {
  return t == KT_I64 ? "int64_t " : t == KT_F32 ? "float " : "unsigned char *";
}

static const char *const arg_names[5] = {"ptrs", "ints", "begin", "end", "scratch"};

static int name_taken(Emit *E, const char *s) {
  for (int i = 0; i < E->f->nvars; i++)
    if (E->vnames[i] && !strcmp(E->vnames[i], s)) return 1;
  for (int i = 0; i < E->nh; i++)
    if (E->hnames[i] && !strcmp(E->hnames[i], s)) return 1;
  for (int i = 0; i < E->m->nfuncs; i++)
    if (E->fnames[i] && !strcmp(E->fnames[i], s)) return 1;
  return 0;
}

/* base, or base_2, base_3, ... whichever is free (malloc'd; NULL when out of memory). */
static char *unique_name(Emit *E, char *base) {
  if (!base || !name_taken(E, base)) return base;
  size_t n = strlen(base) + 24;
  char *s = malloc(n);
  if (s)
    for (int k = 2;; k++) {
      snprintf(s, n, "%s_%d", base, k);
      if (!name_taken(E, s)) break;
    }
  free(base);
  return s;
}

/* C names of the printed variables of E->f and of the bound temporaries. */
static int name_vars(Emit *E) {
  const KFunc *f = E->f;
  for (int i = 0; i < f->nvars; i++) {
    if (!E->reads[i] && !E->writes[i]) continue;
    char *base = c_ident(f->vars[i].name, "v_");
    if (E->cuda && base && cuda_reserved(base)) { /* MIXC_C_CUDA: C++ and CUDA names */
      char *p = malloc(strlen(base) + 3);
      if (p) snprintf(p, strlen(base) + 3, "v_%s", base);
      free(base);
      base = p;
    }
    E->vnames[i] = unique_name(E, base);
    if (!E->vnames[i]) return 1;
  }
  for (int k = 0; k < E->nh; k++) {
    const char *v = E->vnames[E->hvar[k]];
    char *base = malloc(strlen(v) + 4);
    if (!base) return 1;
    snprintf(base, strlen(v) + 4, "%s_hi", v);
    E->hnames[k] = unique_name(E, base);
    if (!E->hnames[k]) return 1;
  }
  return 0;
}

static void put_func(Emit *E, const char *cname, int is_static) {
  FILE *o = E->out;
  const KFunc *f = E->f;
  static const char sig[] =
      "(void *const *ptrs, const int64_t *ints, int64_t begin, int64_t end, float *scratch)";
  fputs("\n/* ", o);
  put_comment_text(E, f->name ? f->name : "", 0);
  if (f->items) {
    fputs(": one work item is ", o);
    put_comment_text(E, f->items, 0);
  }
  fprintf(o, "; scratch: %" PRId64 " floats per thread */\n", f->scratch_floats);
  if (!is_static) fprintf(o, "void %s%s;\n", cname, sig);
  fprintf(o, "%svoid %s%s {\n", is_static ? "static " : "", cname, sig);
  for (int i = 0; i < f->nvars; i++)
    if (E->vnames[i])
      fprintf(o, "  %s%s = %s;\n", var_ctype(f->vars[i].type), E->vnames[i],
              f->vars[i].type == KT_I64 ? "0" : f->vars[i].type == KT_F32 ? "0.0f" : "NULL");
  for (int k = 0; k < E->nh; k++) fprintf(o, "  int64_t %s = 0;\n", E->hnames[k]);
  for (int a = 0; a < 5; a++)
    if (!(E->args_used & (1 << a))) fprintf(o, "  (void)%s;\n", arg_names[a]);
  for (int i = 0; i < f->nvars; i++)
    if (E->vnames[i] && !E->reads[i]) fprintf(o, "  (void)%s;\n", E->vnames[i]);
  E->hat = 0;
  put_stmt(E, f->body, 1);
  fputs("}\n", o);
}

/* MIXC_C_CUDA: the function as a kernel, one block a work item (c_emit.h). */
static void put_cuda_func(Emit *E, const char *cname) {
  FILE *o = E->out;
  const KFunc *f = E->f;
  int np = E->m->nptrs > 0 ? E->m->nptrs : 1, ni = E->m->nints > 0 ? E->m->nints : 1;
  fputs("\n/* ", o);
  put_comment_text(E, f->name ? f->name : "", 0);
  if (f->items) {
    fputs(": one work item (one block) is ", o);
    put_comment_text(E, f->items, 0);
  }
  fprintf(o, "; scratch: %" PRId64 " floats per work item, in %s memory", f->scratch_floats,
          E->smem ? "shared" : "global");
  fprintf(o, "; launch: %u threads a block; matmul: %s */\n", E->threads,
          E->mm == 0 ? "fp32" : E->mm == 1 ? "TF32 tensor cores" : "3xTF32 tensor cores");
  fprintf(o, "struct MixcArgs_%s {\n  void *ptrs[%d];\n  int64_t ints[%d];\n};\n", cname, np, ni);
  fprintf(o,
          "extern \"C\" __global__ void __launch_bounds__(%u)\n%s(const MixcArgs_%s args, "
          "int64_t begin, int64_t end, float *scratch) {\n",
          E->threads, cname, cname);
  fputs("  void *const *ptrs = args.ptrs;\n  const int64_t *ints = args.ints;\n", o);
  for (int i = 0; i < f->nvars; i++)
    if (E->vnames[i])
      fprintf(o, "  %s%s = %s;\n", var_ctype(f->vars[i].type), E->vnames[i],
              f->vars[i].type == KT_I64 ? "0" : f->vars[i].type == KT_F32 ? "0.0f" : "NULL");
  for (int k = 0; k < E->nh; k++) fprintf(o, "  int64_t %s = 0;\n", E->hnames[k]);
  for (int a = 0; a < 5; a++)
    if (!(E->args_used & (1 << a))) fprintf(o, "  (void)%s;\n", arg_names[a]);
  if ((E->args_used & (1 << 4)) && E->smem)
    fputs("  extern __shared__ __align__(16) float mixc__smem[];\n  scratch = mixc__smem;\n", o);
  else if (E->args_used & (1 << 4))
    fprintf(o, "  scratch += (int64_t)blockIdx.x * %" PRId64 ";\n", f->scratch_floats);
  for (int i = 0; i < f->nvars; i++)
    if (E->vnames[i] && !E->reads[i]) fprintf(o, "  (void)%s;\n", E->vnames[i]);
  E->hat = 0;
  E->blk = E->par = E->dirty = 0;
  put_stmt(E, f->body, 1);
  fputs("}\n", o);
}

static void free_names(char **v, int n) {
  if (!v) return;
  for (int i = 0; i < n; i++) free(v[i]);
  free(v);
}

/* Whether statements load a 16-bit element type (bf16, f16 inputs). */
static int loads_16bit_expr(const KExpr *e) {
  if (e->kind == KE_LOAD && (e->elem == KT_BF16 || e->elem == KT_F16)) return 1;
  int n = expr_arity(e->kind);
  for (int i = 0; i < n; i++)
    if (loads_16bit_expr(e->a[i])) return 1;
  return 0;
}

static int loads_16bit(KStmt *const *s, int n) {
  for (int i = 0; i < n; i++) {
    const KStmt *st = s[i];
    if ((st->a && loads_16bit_expr(st->a)) || (st->b && loads_16bit_expr(st->b)) ||
        (st->c && loads_16bit_expr(st->c)) || loads_16bit(st->body, st->nbody) ||
        loads_16bit(st->orelse, st->norelse))
      return 1;
  }
  return 0;
}

/* MIXC_C_CUDA: how function i is printed and launched (c_emit.h, mixc_emit_cuda_module). */
static void cuda_plan(Emit *E, int i) {
  const KFunc *f = E->f;
  const MixcCudaTarget *t = E->target;
  int64_t bytes = f->scratch_floats * 4;
  int uses = (E->args_used & (1 << 4)) && f->scratch_floats > 0;
  E->threads = (E->flags & MIXC_C_CUDA_THREADS_512)   ? 512
               : (E->flags & MIXC_C_CUDA_THREADS_128) ? 128
                                                      : MIXC_CUDA_DEFAULT_THREADS;
  E->smem = uses && !(E->flags & MIXC_C_CUDA_GLOBAL_SCRATCH) && t &&
            t->max_smem_optin > MIXC_CUDA_SMEM_HEADROOM &&
            bytes <= t->max_smem_optin - MIXC_CUDA_SMEM_HEADROOM;
  if (E->flags & MIXC_C_CUDA_FP32_MATMUL)
    E->mm = 0;
  else if (E->flags & MIXC_C_CUDA_TF32)
    E->mm = 1;
  else
    E->mm = loads_16bit(&f->body, 1) ? 1 : 2;
  if (E->launch) {
    E->launch[i].threads = E->threads;
    E->launch[i].smem_bytes = E->smem ? (unsigned)bytes : 0;
    E->launch[i].global_scratch_floats = uses && !E->smem ? f->scratch_floats : 0;
    E->launch[i].item_floats = 0;
  }
}

/* Checks, names and prints function i of E->m. */
/* MIXC_C_CUDA: a function with a hand-structured CUDA kernel (KFunc.cuda_src), printed as
 * its argument struct and the source as given. */
static void put_native_cuda_func(Emit *E, int i) {
  const KFunc *f = E->m->funcs[i];
  const char *cname = E->fnames[i];
  int np = E->m->nptrs > 0 ? E->m->nptrs : 1, ni = E->m->nints > 0 ? E->m->nints : 1;
  if (!E->cuda) {
    efail(E, "kernel %s is a CUDA kernel only (a GPU-specialised form): lower without "
          "KernelSpec.gpu for C", f->name ? f->name : "?");
    return;
  }
  if (f->cuda_threads < 1 || f->cuda_threads > 1024) {
    efail(E, "kernel %s: %u threads per block", f->name ? f->name : "?", f->cuda_threads);
    return;
  }
  if (E->target && f->cuda_smem > 48 * 1024 &&
      (int64_t)f->cuda_smem > (int64_t)E->target->max_smem_optin) {
    efail(E, "kernel %s needs %u bytes of shared memory; the device allows %d",
          f->name ? f->name : "?", f->cuda_smem, E->target->max_smem_optin);
    return;
  }
  fputs("\n/* ", E->out);
  put_comment_text(E, f->name ? f->name : "", 0);
  if (f->items) {
    fputs(": one work item (one block) is ", E->out);
    put_comment_text(E, f->items, 0);
  }
  fputs(" (hand-structured) */\n", E->out);
  fprintf(E->out, "struct MixcArgs_%s {\n  void *ptrs[%d];\n  int64_t ints[%d];\n};\n", cname,
          np, ni);
  fputs(f->cuda_src, E->out);
  if (E->launch) {
    E->launch[i].threads = f->cuda_threads;
    E->launch[i].smem_bytes = f->cuda_smem;
    E->launch[i].global_scratch_floats = f->scratch_floats;
    E->launch[i].item_floats = f->item_floats;
  }
}

static void emit_func(Emit *E, int i, int is_static) {
  const KFunc *f = E->m->funcs[i];
  if (f->cuda_src) {
    E->f = f;
    put_native_cuda_func(E, i);
    return;
  }
  E->f = f;
  E->args_used = 0;
  E->nh = E->caph = E->hat = 0;
  size_t nv = (size_t)f->nvars + 1;
  E->vnames = calloc(nv, sizeof *E->vnames);
  E->reads = calloc(nv, sizeof *E->reads);
  E->writes = calloc(nv, sizeof *E->writes);
  E->assigned = calloc(nv, 1);
  if (!E->vnames || !E->reads || !E->writes || !E->assigned)
    efail(E, "out of memory");
  else if (f->body->kind != KS_BLOCK)
    efail(E, "the body is not a block");
  else
    check_stmt(E, f->body);
  if (!E->bad && name_vars(E)) efail(E, "out of memory");
  if (!E->bad && E->cuda) cuda_plan(E, i);
  if (!E->bad && E->cuda)
    put_cuda_func(E, E->fnames[i]);
  else if (!E->bad)
    put_func(E, E->fnames[i], is_static);
  free_names(E->vnames, f->nvars);
  free_names(E->hnames, E->nh);
  free(E->reads);
  free(E->writes);
  free(E->assigned);
  free(E->hvar);
  E->vnames = E->hnames = NULL;
  E->reads = E->writes = E->hvar = NULL;
  E->assigned = NULL;
}

static int emit_module(FILE *out, const KModule *m, int flags, const MixcCudaTarget *t,
                       MixcCudaLaunch *launch, char *err, size_t errlen) {
  Emit E = {0};
  E.out = out;
  E.flags = flags;
  E.target = t;
  E.launch = launch;
  E.m = m;
  E.err = err;
  E.errlen = errlen;
  E.cuda = (flags & MIXC_C_CUDA) != 0;
  if (err && errlen) err[0] = 0;
  if (!m || !m->arena || m->nfuncs < 0 || (m->nfuncs && !m->funcs)) {
    efail(&E, "no module");
    return 1;
  }
  /* pass 1 */
  for (int i = 0; i < m->nfuncs; i++) {
    const KFunc *f = m->funcs[i];
    if (!f || !f->body || f->nvars < 0 || (f->nvars && !f->vars) || struct_stmt(f->body, 0)) {
      if (err && errlen)
        snprintf(err, errlen, "kir: %s: a missing function, body or statement list",
                 f && f->name ? f->name : "?");
      return 1;
    }
  }
  for (int i = 0; E.cuda && i < m->nfuncs; i++)
    if (m->funcs[i]->cpu_only) {
      if (err && errlen)
        snprintf(err, errlen, "kir: %s was lowered for the CPU (states updated in place, "
                 "readouts fused into the state's loop), which a CUDA block does not run "
                 "correctly: lower it with KernelSpec.gpu set", m->funcs[i]->name);
      return 1;
    }
  /* pass 2 */
  if (kir_verify(m, err, errlen)) return 1;
  /* C names of the functions */
  E.fnames = calloc((size_t)m->nfuncs + 1, sizeof *E.fnames);
  if (!E.fnames) {
    efail(&E, "out of memory");
    return 1;
  }
  for (int i = 0; i < m->nfuncs && !E.bad; i++) {
    E.fnames[i] = c_ident(m->funcs[i]->name, "k_");
    if (!E.fnames[i]) efail(&E, "out of memory");
    for (int j = 0; j < i && !E.bad; j++)
      if (!strcmp(E.fnames[i], E.fnames[j]))
        efail(&E, "functions %s and %s have one C name, %s", m->funcs[j]->name,
              m->funcs[i]->name, E.fnames[i]);
  }
  /* pass 3 and the printing, function by function */
  if (!E.bad && !(flags & MIXC_C_NO_PRELUDE) && E.cuda) put_cuda_prelude(out);
  if (!E.bad && !(flags & MIXC_C_NO_PRELUDE) && !E.cuda) mixc_emit_c_prelude(out);
  if (!E.bad) {
    fprintf(out, "\n/* kernel arguments: %d pointers, %d integers", m->nptrs, m->nints);
    for (int i = 0; i < m->nslots && m->slots; i++) {
      fprintf(out, "\n *   %s[%d]: ", m->slots[i].kind == KSL_PTR ? "ptrs" : "ints",
              m->slots[i].index);
      put_comment_text(&E, m->slots[i].what ? m->slots[i].what : "", 0);
    }
    fputs(" */\n", out);
  }
  for (int i = 0; i < m->nfuncs && !E.bad; i++) emit_func(&E, i, flags & MIXC_C_STATIC);
  free_names(E.fnames, m->nfuncs);
  if (!E.bad && (fflush(out) != 0 || ferror(out))) {
    E.f = NULL;
    efail(&E, "write error");
  }
  return E.bad;
}

int mixc_emit_c_module(FILE *out, const KModule *m, int flags, char *err, size_t errlen) {
  return emit_module(out, m, flags, NULL, NULL, err, errlen);
}

int mixc_emit_c_funcs(FILE *out, const KModule *m, int is_static, char *err, size_t errlen) {
  return mixc_emit_c_module(out, m, is_static ? MIXC_C_STATIC : 0, err, errlen);
}

int mixc_emit_cuda_module(FILE *out, const KModule *m, const MixcCudaTarget *t, int extra_flags,
                          MixcCudaLaunch *launch, char *err, size_t errlen) {
  return emit_module(out, m, MIXC_C_CUDA | extra_flags, t, launch, err, errlen);
}
