/* The standalone-C backend: KIR (compiler/kir.h) printed as C11 (`mixc emit --target c`).
 *
 * Every KFunc becomes
 *   void NAME(void *const *ptrs, const int64_t *ints, int64_t begin, int64_t end, float *scratch)
 * with its variables as locals starting at 0 (int64_t, float, unsigned char * for KT_PTR), its
 * loops as `for (v = lo; v < hi; v++)` (hi evaluated once, as KIR says: where the body could
 * change it, into a temporary v_hi first), and / or as && / ||, selects as ?:, its loads and
 * stores as casts of the byte pointers, bf16/f16 through bit-exact helpers (round to nearest
 * even, NaN kept quiet), KS_MATMUL through a 4 x 16 register-tiled helper, and all arithmetic
 * on data in float.
 *
 * The output needs <math.h>, <stdint.h> and <string.h> only (link with -lm), and compiles
 * without a warning under `cc -std=c11 -O3 -Wall -Wextra -Werror -pedantic` (gcc and clang).
 * The helpers (the prelude) are static inline functions and macros named mixc__* / MIXC__*,
 * inside an include guard (MIXC__C_PRELUDE), so printing them twice into one file is harmless.
 *
 * C names: a KIR variable's name with every character outside [A-Za-z0-9_] made '_', prefixed
 * with v_ where it would clash with a keyword, a parameter, a name the output uses (int64_t,
 * expf, NAN, ...) or a reserved form (a leading '_', an all-caps name with '_', a trailing _t,
 * mixc__*), and suffixed _2, _3, ... where it would clash with another. Function names are
 * sanitized likewise (prefix k_) but never renumbered: two functions with one C name are an
 * error; mixc_emit_c_func_name gives the name a caller links against. */
#ifndef MIXC_C_EMIT_H
#define MIXC_C_EMIT_H
#include <stddef.h>
#include <stdio.h>

#include "compiler/kir.h"

/* Print every KFunc of m as a C11 function, with `static` linkage when is_static, preceded by
 * the prelude (once per file: it is include-guarded), the module's argument table as a comment,
 * and, for non-static functions, a prototype. The module is verified first (kir_verify, and the
 * emitter's own checks of types and names). Returns 0, or 1 with a message in err (a bad
 * module, two functions with one C name, a write error of out). */
int mixc_emit_c_funcs(FILE *out, const KModule *m, int is_static, char *err, size_t errlen);

/* The helpers alone (so a caller emitting several modules prints them once). */
void mixc_emit_c_prelude(FILE *out);

/* Flags of mixc_emit_c_module. */
enum {
  MIXC_C_STATIC = 1,     /* functions with static linkage */
  MIXC_C_NO_PRELUDE = 2, /* leave the prelude out (the caller printed mixc_emit_c_prelude) */
  MIXC_C_CUDA = 4,       /* CUDA C++ for NVRTC instead of C11: see below */
  /* MIXC_C_CUDA only: */
  MIXC_C_CUDA_FP32_MATMUL = 8,     /* KS_MATMUL exact in fp32 on the CUDA cores, no TF32 */
  MIXC_C_CUDA_TF32 = 16,           /* KS_MATMUL in single TF32, also for f32 inputs */
  MIXC_C_CUDA_GLOBAL_SCRATCH = 32, /* scratch in global memory even where shared would fit */
  MIXC_C_CUDA_PLAIN_LOOPS = 64,    /* spread only the outer KF_BLOCK loop over the threads */
  MIXC_C_CUDA_THREADS_128 = 128,   /* blocks of 128 threads instead of the printer's choice */
  MIXC_C_CUDA_THREADS_512 = 256,   /* blocks of 512 threads instead of the printer's choice */
};

/* Shared memory left unused below the target's opt-in limit, bytes. */
#define MIXC_CUDA_SMEM_HEADROOM 2048
/* Threads per block unless a MIXC_C_CUDA_THREADS_* flag says otherwise. */
#define MIXC_CUDA_DEFAULT_THREADS 256

/* MIXC_C_CUDA: the module as one CUDA source for NVRTC (no host headers; the prelude's helpers
 * `static __device__ __forceinline__`, with typedefs of the integer types and CUDA's device
 * math). Every KFunc becomes
 *   struct MixcArgs_NAME { void *ptrs[NP]; int64_t ints[NI]; };   (NP, NI >= 1)
 *   extern "C" __global__ void __launch_bounds__(256)
 *   NAME(const MixcArgs_NAME args, int64_t begin, int64_t end, float *scratch)
 * with the argument tables passed by value. One GPU block runs one work item: launch
 * end - begin blocks (of at most 256 threads, or what a MIXC_C_CUDA_THREADS_* flag says;
 * any number from 1 works, a multiple of 32 uses the tensor cores) with scratch pointing at
 * (end - begin) * scratch_floats floats (16-byte aligned); block b runs item begin + b on
 * scratch + b * scratch_floats. mixc_emit_cuda_module may instead put the scratch in dynamic
 * shared memory (then the `scratch` argument is not read): its MixcCudaLaunch says which.
 * Inside a block, the iterations of KF_BLOCK loops (the outermost ones) are spread over the
 * threads, each followed by __syncthreads(); a KF_BLOCK loop whose body is one KF_VECTORIZE
 * loop of stores is spread as one range of (outer, inner) pairs. Stores outside them run on
 * thread 0 and matmuls on all threads, cooperatively, each followed by __syncthreads();
 * everything else runs on every thread with block-uniform values.
 *
 * Matmuls (KS_MATMUL outside KF_BLOCK loops) run on the tensor cores from sm_80 on:
 * mma.sync m16n8k8 with TF32 operands and fp32 accumulation, warps owning 16 x 16 tiles of
 * C, any M, N, K and leading dimensions (tails read as zero, nothing stored outside M x N).
 * A function that loads bf16 or f16 data uses single TF32 (operands rounded to 10 mantissa
 * bits: about 5e-4 relative per product, below bf16's own rounding); one that loads only
 * f32 uses 3xTF32 (each operand split into two TF32 parts, three products: about fp32's
 * accuracy at three times the tensor work). MIXC_C_CUDA_TF32 and MIXC_C_CUDA_FP32_MATMUL
 * force one or the other end; before sm_80 the fp32 path runs. */

/* mixc_emit_c_funcs with flags: mixc_emit_c_funcs(out, m, s, ...) is
 * mixc_emit_c_module(out, m, s ? MIXC_C_STATIC : 0, ...). */
int mixc_emit_c_module(FILE *out, const KModule *m, int flags, char *err, size_t errlen);

/* MIXC_C_CUDA for one device: what the printer may assume about the GPU, and how to launch
 * each kernel it printed. */
typedef struct MixcCudaTarget {
  int arch;           /* compute capability major*10 + minor (90: Hopper); 0: any */
  int max_smem_optin; /* dynamic shared memory a block may opt into, bytes; 0: none */
} MixcCudaTarget;
typedef struct MixcCudaLaunch {
  unsigned threads;              /* threads per block */
  unsigned smem_bytes;           /* dynamic shared memory per block, bytes */
  int64_t global_scratch_floats; /* floats of the `scratch` argument per block (0: the kernel
                                    does not read it; pass NULL) */
  int64_t item_floats; /* > 0: `scratch` is instead items x item_floats floats indexed by the
                          global work item, shared by all such kernels of the module, which
                          run in order and must see one another's writes (KFunc.item_floats) */
} MixcCudaLaunch;
/* mixc_emit_c_module(out, m, MIXC_C_CUDA | extra_flags, ...) for target t (NULL: any GPU,
 * no shared memory beyond the default), and launch[i] for m->funcs[i] (launch has
 * m->nfuncs entries; may be NULL). A function's scratch goes in dynamic shared memory when
 * scratch_floats * 4 <= t->max_smem_optin - MIXC_CUDA_SMEM_HEADROOM (launch: smem_bytes =
 * scratch_floats * 4, global_scratch_floats = 0; the caller raises the function's
 * CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES above 48 KiB, as mixc_cuda_launch does),
 * else in global memory (smem_bytes = 0, global_scratch_floats = scratch_floats). Launch
 * launch[i].threads threads a block (fewer also works). Returns 0, or 1 with a message in
 * err. */
int mixc_emit_cuda_module(FILE *out, const KModule *m, const MixcCudaTarget *t, int extra_flags,
                          MixcCudaLaunch *launch, char *err, size_t errlen);

/* The C name of function f (what the emitted file defines). Writes it into buf (truncated to
 * n - 1 characters) and returns its full length. */
size_t mixc_emit_c_func_name(const KFunc *f, char *buf, size_t n);

#endif
