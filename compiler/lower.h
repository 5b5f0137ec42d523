/* Strategies: lowering a mixer's recurrence IR to KIR kernels for one kernel spec.
 *
 * A KernelSpec fixes everything a kernel is specialised on: the mixer, every dim's size,
 * the storage type of every tensor, which optional tensors are present (initial states,
 * final states, params given instead of their defaults, cu_seqlens), and the strategy.
 * The KernelPlan that comes back says where the runtime puts each tensor's pointer and
 * strides in the kernel's argument tables (kir.h), and how many work items a call has.
 *
 * Tensor layouts (the ecosystem's, as in runtime/reference.h), any strides, in elements:
 *   inputs  [B, T, H, (ndir), dims...]   outputs [B, T, H, dims...]
 *   params  [H, dims...]                 states  [N, H, dims...] (N = B, or sequences)
 * Grid mixers index T as y * X + x. Computation and states are fp32. */
#ifndef MIXC_LOWER_H
#define MIXC_LOWER_H
#include <stddef.h>
#include <stdint.h>

#include "kir.h"
#include "rec.h"

typedef enum Strategy {
  STRAT_AUTO,      /* chosen from the class and the sequence length */
  STRAT_RECURRENT, /* one pass over time per (sequence, head); every class; decode */
  STRAT_CHUNK,     /* chunkwise parallel (identity, scalar, diagonal, DPLR) */
  STRAT_PARALLEL,  /* fully quadratic form, short sequences: the chunk algorithm with one
                      chunk over the whole sequence (lower_parallel_tokens) */
} Strategy;

const char *strategy_name(Strategy s);

typedef struct KernelSpec {
  const RecMixer *rm;
  const int64_t *dims;   /* per symbol: the size of every dim */
  const KType *dtype;    /* per symbol: storage type of inputs, params, outputs (KT_F32,
                            KT_BF16, KT_F16); states are always KT_F32 */
  const unsigned char *present; /* per symbol: params given (else the default), states
                                   given an initial value; outputs are always present */
  const unsigned char *want;    /* per symbol: states whose final value is written */
  int varlen;            /* cu_seqlens given (B = 1, one state per sequence) */
  KType cu_type;         /* KT_I32 or KT_I64 */
  Strategy strategy;
  int64_t chunk;         /* chunk length of the chunk strategy; 0: per class (schedule.h) */
  int64_t target_items;  /* work items the device runs at once (CPU threads, 2x GPU SMs); the
                            schedule splits the value dim into tiles to reach it; 0: no
                            preference (no split unless vtile asks) */
  int64_t bh;            /* sequences x heads of the call the kernel is built for: a hint for
                            the split (the kernel runs for any); 0: unknown */
  int64_t vtile;         /* value-tile width (columns of the states per work item); 0: chosen
                            by the schedule (schedule.h); >= the value dim: no split */
  int64_t cache_l1d_bytes, cache_l2_bytes, cache_l3_bytes; /* the host's data caches per core
                            (runtime/host.h) for the CPU schedule: the chunk's scratch budget
                            is half the L2 (sched_chunk_l2); 0: unknown (SCHED_DEFAULT_L2) */
  int gpu;               /* lowering for a CUDA device: the chunk strategy may take a
                            hand-structured CUDA kernel (KFunc.cuda_src, lower_cuda*.c), which
                            the CPU backends cannot run */
  int gpu_arch;          /* gpu: compute capability major*10 + minor (90: Hopper) */
  int gpu_smem_optin;    /* gpu: dynamic shared memory a block may opt into, bytes */
  int no_native;         /* gpu: never take a hand-structured kernel (the lowered KIR only) */
  int64_t segs;          /* gpu: sequence segments of the hand-structured chunk kernels (0:
                            chosen from bh and target_items; 1: none) */
  int64_t tokens_hint;   /* tokens per sequence of the calls the kernel is built for, at most
                            (a hint: the kernel runs for any); 0: unknown or long. gpu: at most
                            LOWER_SHORT_TOKENS (a decode step, short sequences) and the auto
                            strategy takes the recurrent kernel (lower_cuda_recurrent) first.
                            The parallel strategy: the one chunk's length (lower_parallel_tokens) */
} KernelSpec;

/* KernelSpec.tokens_hint: on a GPU, calls of at most this many tokens a sequence take the
 * recurrent (decode) kernel under the auto strategy; the runtime buckets its calls so. On an
 * H100 at B = 8, H = 16, K = V = 128, bf16 (MIXC_REC_BENCH), the recurrent kernel beat the
 * chunk kernel at T = 8 (22 vs 28 us simple GLA, 22 vs 35 GLA, 26 vs 27 DeltaNet; Gated
 * DeltaNet 30 vs 29) and lost at T = 16 but for GLA (35 vs 28, 35 vs 35, 42 vs 27, 49 vs 29) */
enum { LOWER_SHORT_TOKENS = 8 };
/* The same on the CPU: calls of at most this many tokens a sequence take the recurrent kernel
 * under the auto strategy. Measured (cpu_bench --decode with T tokens a step, B = 8, H = 16,
 * K = V = 128, fp32 states carried, 2 threads; recurrent / chunk us): T = 1 368-466 / 743-883,
 * T = 4 746-1327 / 1275-1447, T = 8 mixed (1429-2490 / 1126-2076), T = 16 2729-6486 /
 * 1844-2325 */
enum { LOWER_SHORT_TOKENS_CPU = 4 };

/* The parallel strategy: the quadratic form over the whole sequence, as the chunk strategy's
 * algorithm with a single chunk (its intra-chunk part over every pair of tokens, the initial
 * state's term, the final state; no state passed between chunks). The chunk is
 * lower_parallel_tokens(spec) tokens long: KernelSpec.chunk where given, else tokens_hint
 * rounded up to a power of two from 16 to LOWER_PARALLEL_TOKENS, else LOWER_PARALLEL_TOKENS.
 * A longer sequence runs in chunks of that length (the chunk strategy at that chunk). */
enum { LOWER_PARALLEL_TOKENS = 256 };
int64_t lower_parallel_tokens(const KernelSpec *spec);

/* Where each tensor goes in the argument tables. -1: not used. */
typedef struct KernelPlan {
  KModule *mod;
  Strategy strategy;
  int nsyms;
  int *ptr;        /* per symbol: ptrs[] slot of its data (inputs, given params, outputs) */
  int *state_in;   /* per symbol: ptrs[] slot of a state's initial value */
  int *state_out;  /* per symbol: ptrs[] slot of a state's final value */
  int *stride;     /* per symbol: ints[] slot of its first stride; one per layout dim */
  int *state_in_stride, *state_out_stride;
  int cu_seqlens;  /* ptrs[] slot, or -1 */
  int size_B, size_T, size_H, size_N; /* ints[] slots (N: sequences) */
  int size_Y, size_X;                 /* grid mixers */
  int state_direct; /* ints[] slot, or -1: 1 when every state's initial and final tensors are
                       one contiguous [N, H, rows, cols] f32 buffer (a decode step): the CPU
                       recurrent kernel then updates its in-place states there, no copies */
  /* The schedule chosen (schedule.h), for the runtime and for tools to print. A call has
   * N * H * vtiles * segs work items: item = ((n * H + h) * vtiles + tile) * segs + seg. */
  int64_t chunk;   /* chunk length (chunk strategy), else 0 */
  int64_t vtile;   /* columns of the states per work item (the value dim when not split) */
  int64_t vtiles;  /* value tiles per (sequence, head), >= 1 */
  int64_t segs;    /* sequence segments per (sequence, head, value tile), >= 1: the hand-
                      structured GPU chunk kernels split each sequence into segs runs of whole
                      chunks (a local pass, a combine, an output pass; lower_cuda.h) */
} KernelPlan;

/* Work items of a call with N sequences and H heads: N H vtiles segs (0 on overflow). */
int64_t plan_items(const KernelPlan *plan, int64_t N, int64_t H);

/* Number of layout dims of symbol s's run-time array (B, T, H, ndir, dims...), matching
 * the strides the runtime passes. */
int plan_layout_rank(const RecMixer *rm, int sym, int state_array);

/* Build the kernels for spec into a new KModule in arena a. Returns 0, or 1 with a message
 * (a strategy that does not apply to the mixer's classes, or an internal error). */
int lower_mixer(Arena *a, const KernelSpec *spec, KernelPlan *plan, char *err, size_t errlen);

/* The recurrent strategy (lower_recurrent.c). */
int lower_recurrent(Arena *a, const KernelSpec *spec, KernelPlan *plan, char *err,
                    size_t errlen);

#endif
