/* Hand-structured CUDA kernels for the chunk strategy on a GPU (KernelSpec.gpu): the forms
 * the best hand-written kernels of each class use (fla's fused chunk kernels), printed as CUDA
 * C with the sizes baked in, tensor cores (mma through wmma) for every product, the state on
 * chip across chunks. They stand in for the lowered KIR body of the chunk kernel
 * (KFunc.cuda_src) over the same argument tables and work items (sequence, head, value tile),
 * so the runtime, the standalone .cu printer and the tests launch them like any other kernel.
 *
 * lower_cuda.c matches a mixer's recurrence IR against the shapes below and fills a
 * CudaChunkShape; where nothing matches (prelude lets, expressions of inputs, several states,
 * a class without a form here, f32 inputs), the lowered KIR kernel is used instead. */
#ifndef MIXC_LOWER_CUDA_H
#define MIXC_LOWER_CUDA_H
#include <stdint.h>
#include <stdio.h>

#include "lower.h"

typedef enum CudaChunkKind {
  CCK_SCALAR, /* S' = e^g S + k v^T (g absent: linear attention) */
  CCK_DIAG,   /* S' = diag(e^g) S + k v^T, g per key channel (GLA) */
  CCK_DELTA,  /* S' = e^g S; S' = S' + beta k (v - S'^T k)^T (g absent: DeltaNet) */
} CudaChunkKind;

/* One mixer's chunk kernel: o[j] = scale * sum_i q[i] S_t[i, j] (S_t after token t), every
 * per-token tensor [B, T, H, (dim)] with any strides, states [N, H, K, V] fp32. Slots are
 * indices into the kernel's argument tables (KernelPlan): p_* of ptrs[], s_* of ints[] (the
 * first of the tensor's strides, one per layout dim), -1 where absent. */
typedef struct CudaChunkShape {
  CudaChunkKind kind;
  int64_t K, V;          /* the state's rows and columns */
  int64_t chunk;         /* tokens per chunk */
  int64_t vtile, vtiles; /* columns per work item, tiles per (sequence, head) */
  KType in_type;         /* storage type of q, k, v (KT_BF16 or KT_F16) */
  KType g_type, beta_type, out_type;
  int has_g, has_beta;
  int p_q, p_k, p_v, p_g, p_beta, p_o;
  int s_q, s_k, s_v, s_g, s_beta, s_o;
  /* scale: a constant, or a param [H] (p_scale >= 0, its stride over H at s_scale) */
  double scale;
  int p_scale, s_scale;
  KType scale_type;
  int p_h0, s_h0; /* initial state, or -1 (zeros) */
  int p_ht, s_ht; /* final state, or -1 (not written) */
  int p_cu;       /* cu_seqlens, or -1 */
  KType cu_type;
  int i_B, i_T, i_H, i_N; /* ints[] slots of the sizes */
  /* Where the gate comes from (SCALAR only may take other than an input): g_mode CCG_INPUT
   * (p_g, s_g as above; [B, T, H] or, DIAG, [B, T, H, K]), CCG_PARAM (a param [H]: p_g, its
   * stride over H at s_g), CCG_CONST (the param's default, g_const). */
  int g_mode;
  double g_const;
  /* The sequence split (segs > 1): each (sequence, head, value tile) runs as segs segments
   * of whole chunks, work items ((n H + h) vtiles + tile) segs + seg, through three kernels
   * in order (mode): CCM_LOCAL, each segment's state from zeros and its transition (all but
   * the last segment), kept per item in `scratch` (cuda_chunk_item_floats); CCM_COMBINE, the
   * segments' initial states from the initial state, in place of those; CCM_OUTPUT, each
   * segment as the fused kernel from its initial state (the last writes the final state).
   * segs 1: CCM_FUSED, one kernel over the whole sequence. */
  int64_t segs;
  int mode;
  unsigned threads; /* threads a block: 512 (0) or 256 */
  int minb;         /* the recurrent kernel: blocks an SM that __launch_bounds__ asks room for
                       (registers); 0 the default (2 for blocks of at most 256 threads, else 1) */
  int plain_state;  /* the recurrent kernel: 1 loads and stores the state tile without a
                       cache hint (the older form); 0 its 16-byte accesses with the evict-first
                       hint (ld / st.global.cs: the state is read and written once a call) */
  int no_hilo;      /* CCK_DELTA with g: 1 rounds P and D to one 16-bit value each in the
                       output's P D (the older form); 0 splits both into hi + lo where shared
                       memory has room (lower_cuda_delta.c) */
  int split_loads;  /* scalar/diag fused kernel: 1 loads the next chunk's v (and the factored
                       GLA form's gates) after the output product instead of with q and k, -1
                       with them; 0 the default (split for diagonal decay only) */
  int local_fused;  /* CCK_SCALAR, CCK_DIAG with segs > 1: 1 prints the local pass as the fused
                       kernel's local mode (the older form); 0 its own kernel where it fits
                       (lower_cuda_local.c) */
  int diag_exact;   /* CCK_DIAG: 1 takes the older form (the diagonal tiles of Q K^T element by
                       element, the other tiles' operands scaled in registers); 0 the factored
                       form where it fits (lower_cuda_scalar.c) */
} CudaChunkShape;

enum { CCG_INPUT = 0, CCG_PARAM = 1, CCG_CONST = 2 };
enum { CCM_FUSED = 0, CCM_LOCAL = 1, CCM_COMBINE = 2, CCM_OUTPUT = 3 };

/* Floats of `scratch` per work item the sequence-split kernels of s keep (KFunc.item_floats):
 * the segment's state tile and its transition. */
int64_t cuda_chunk_item_floats(const CudaChunkShape *s);

/* One kernel of a shape: its text and launch. */
typedef struct CudaChunkKernel {
  char name[256]; /* base name + "_local" / "_combine" / "_output" with segs > 1 */
  char *src;      /* malloc'd */
  unsigned threads, smem;
  int64_t scratch_floats, item_floats;
} CudaChunkKernel;

/* The kernels of shape s (its mode is set for each), in launch order: one (segs 1) or three,
 * named from base (the KIR function name rules: mixc_emit_c_func_name). Returns 0 (*nk set;
 * free the sources with cuda_chunk_kernels_free), 1 with a message, or -1 (no form). */
int cuda_chunk_kernels(const CudaChunkShape *s, const char *base, int arch, int smem_optin,
                       CudaChunkKernel k[3], int *nk, char *err, size_t errlen);
void cuda_chunk_kernels_free(CudaChunkKernel *k, int nk);

/* The kernel NAME for shape s (its text: the `__global__` function and its helpers, see
 * KFunc.cuda_src), for a device of compute capability `arch` allowing `smem_optin` bytes of
 * dynamic shared memory. Sets the launch (threads, shared memory bytes, global scratch floats
 * per block). Returns 0, 1 with a message (an internal error), or -1 when the shape is outside
 * what the form supports (sizes, shared memory): the caller then lowers the KIR kernel. */
/* The 16-bit conversion helpers every hand-structured kernel's text starts with, named
 * through the kernel's MX() prefix macro (lower_cuda_scalar.c). */
void cuda_print_conversions(FILE *out);
/* The text of a load of element idx of a tensor of type t (f32, bf16 or f16) at pointer
 * expression p, as float; name: the kernel's prefix of the conversions. */
void cuda_print_load_f(FILE *o, const char *name, KType t, const char *p, const char *idx);
/* The same for a per-head param [H] at ptrs[ptr], its stride over H at ints[stride]. */
void cuda_print_head_load(FILE *o, const char *name, KType t, int ptr, int stride);
/* A kernel's sequence bounds (t0, t1, b of item n) and its tensors' pointers and strides,
 * printed the same way by the scalar/diagonal and recurrent kernels (lower_cuda_scalar.c). */
/* The tensor-core helpers (ldmatrix, mma.m16n8k16, packing; bf: bf16 operands, else f16)
 * after the conversions (lower_cuda_scalar.c). */
void cuda_print_mma_helpers(FILE *out, int bf);
void cuda_print_seq_bounds(FILE *out, const CudaChunkShape *s);
/* which: a mask of CUDA_PTRS_Q, _K, _V, _O (the gate's always, where it is an input) */
enum { CUDA_PTRS_Q = 1, CUDA_PTRS_K = 2, CUDA_PTRS_V = 4, CUDA_PTRS_O = 8, CUDA_PTRS_ALL = 15 };
void cuda_print_tensor_ptrs(FILE *out, const CudaChunkShape *s, unsigned which);
/* A scalar/diagonal chunk kernel's work item: lanes, (n, h, j0, vw, seg), the early returns
 * (past the items; where the expression `skip` holds), the segment's [t0, t1) and b. */
void cuda_print_work_item(FILE *out, const CudaChunkShape *s, const char *skip);
int cuda_chunk_scalar_source(FILE *out, const CudaChunkShape *s, const char *name, int arch,
                             int smem_optin, unsigned *threads, unsigned *smem,
                             int64_t *scratch_floats, char *err, size_t errlen);
/* The sequence split's local pass for scalar and diagonal decay (lower_cuda_local.c): 0, 1
 * with a message, or -1 outside its form (the caller prints the fused kernel's local mode). */
int cuda_chunk_local_source(FILE *out, const CudaChunkShape *s, const char *name, int arch,
                            int smem_optin, unsigned *threads, unsigned *smem, char *err,
                            size_t errlen);
int cuda_chunk_delta_source(FILE *out, const CudaChunkShape *s, const char *name, int arch,
                            int smem_optin, unsigned *threads, unsigned *smem,
                            int64_t *scratch_floats, char *err, size_t errlen);

/* The recurrent (decode) kernel NAME for shape s (lower_cuda_rec.c): the forms above walked
 * token by token, one block per (sequence, head, value tile), the state tile in registers
 * across the tokens, read and written once (the initial and final state may be one buffer);
 * q, k, v in f32, bf16 or f16; s->vtile <= 128 (s->chunk, segs unused; s->threads 0 or a
 * block size, a multiple of 32). Static shared memory only (*smem 0), no scratch. Returns 0,
 * 1 with a message, or -1 outside the form. */
int cuda_rec_source(FILE *out, const CudaChunkShape *s, const char *name, int arch,
                    unsigned *threads, unsigned *smem, char *err, size_t errlen);
/* The recurrent kernel's value tile for V columns, bh (sequence, head) pairs and target_items
 * (2 x SMs; 0: unknown): the blocks fill the SMs at small bh, at most 128 columns. */
int64_t cuda_rec_vtile(int64_t V, int64_t bh, int64_t target_items);
/* lower_mixer's entry for spec->gpu with the recurrent strategy (or auto, short sequences):
 * 0 (plan filled with the recurrent kernel), 1 with a message, or -1: no form applies. */
int lower_cuda_recurrent(Arena *a, const KernelSpec *spec, KernelPlan *plan, char *err,
                         size_t errlen);

/* lower_mixer's entry for spec->gpu: 0 (plan filled with a hand-structured kernel), 1 with a
 * message, or -1: no form applies (lower the KIR kernel). */
int lower_cuda_chunk(Arena *a, const KernelSpec *spec, KernelPlan *plan, char *err,
                     size_t errlen);

/* Whether spec's mixer, types and dims match a form (before the sizes and shared memory
 * are checked): 1 with *kind set, else 0. For tests and tools. */
int lower_cuda_match(const KernelSpec *spec, CudaChunkKind *kind);

#endif
