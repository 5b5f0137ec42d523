/* A whole standalone CUDA source for one kernel (`mixc emit --target cuda`): the kernels of a
 * KernelPlan printed by c_emit.c's CUDA mode (mixc_emit_cuda_module), then a host launcher
 * with C linkage, documented at the top of the file. The file compiles with nvcc alone
 * (`nvcc -O3 -arch=sm_90a -c NAME.cu`: no mixc header or library) and uses the CUDA runtime
 * API. It defines, for mixer NAME:
 *
 *   typedef struct NAME_args { ... } NAME_args;  per tensor a device pointer and its strides
 *                                                (in elements; NULL: contiguous), then the
 *                                                sizes, then the workspace
 *   size_t NAME_workspace_size(const NAME_args *a);
 *   cudaError_t NAME_forward(const NAME_args *a, cudaStream_t stream, char *err, size_t n);
 *   cudaError_t NAME_launch(void *const *ptrs, const int64_t *ints, int64_t items,
 *                           float *scratch, int64_t scratch_floats, cudaStream_t stream,
 *                           char *err, size_t n);
 *
 * NAME_args is a sequence of (pointer, const int64_t *strides) pairs: the inputs, the params
 * without defaults and the outputs in the order of the mixer's declarations, then each state's
 * (NAME_initial, NAME_final); then, with cu_seqlens, (cu_seqlens, int64_t nseqs); then the
 * sizes as int64_t (batch, seqlen, heads; grid mixers batch, grid_y, grid_x, heads); then
 * void *workspace and size_t workspace_bytes. Every member is 8 bytes, so a program that knows
 * the mixer's declarations may fill it as an array of 8-byte words (tests/test_emit_cuda.c).
 *
 * The scratch lives in a workspace the caller gives, or, when none is given, one NAME_forward
 * allocates with cudaMallocAsync and frees with cudaFreeAsync on the stream. */
#ifndef MIXC_CU_DRIVER_H
#define MIXC_CU_DRIVER_H
#include <stdio.h>

#include "backends/c/c_emit.h"
#include "compiler/lower.h"

/* The target a standalone file is built for when none is given: compute capability 9.0
 * (H100, H200; compile with -arch=sm_90a) with 227 KiB of opt-in shared memory a block. */
#define MIXC_CU_DEFAULT_ARCH 90
#define MIXC_CU_DEFAULT_SMEM_OPTIN 232448

/* Prints the file for spec/plan to out. `source` names the .mix file in the header comment;
 * t is the target (NULL: the default above). Returns 0, or 1 with a message (a plan it cannot
 * drive, the printer's error, a write error). */
int mixc_emit_cuda_file(FILE *out, const char *source, const KernelSpec *spec,
                        const KernelPlan *plan, const MixcCudaTarget *t, char *err,
                        size_t errlen);

#endif
