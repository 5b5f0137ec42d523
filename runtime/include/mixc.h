/* mixc.h: the C API of mixc, a compiler for sequence-mixer kernels.
 *
 *   mixc_context   one per process (or per thread pool): the JIT, the worker threads and
 *                  the cache of compiled kernels. Thread-safe.
 *   mixc_module    a compiled .mix source: its mixers, checked and analysed.
 *   mixc_kernel    one mixer of a module for fixed dims, on one device (the CPU, or a CUDA
 *                  GPU opened at the context's first kernel for it), with options.
 *                  Its first call with a new combination of tensor dtypes and optional
 *                  tensors compiles a specialised variant; later calls reuse it.
 *
 * Tensors follow the conventions of flash-linear-attention and FlashAttention:
 *   inputs  [B, T, H, dims...]     (grid mixers: [B, Y, X, H, dims...]; `per direction`
 *                                   inputs carry an extra [ndir] before the dims)
 *   params  [H, dims...]
 *   outputs [B, T, H, dims...]
 *   states  [N, H, dims...], fp32, N = B, or the number of sequences with cu_seqlens
 * with any strides (in elements; zero strides broadcast inputs). Inputs and outputs are
 * f32, bf16 or f16; computation and states are fp32. Variable-length batches: B = 1 and
 * cu_seqlens [N + 1] (int32 or int64) of offsets into T.
 *
 * Every call returns a status; on failure, `err` (which may be NULL) holds the status and
 * a one-line message naming the argument at fault, e.g.
 *   "input 'k': shape [2, 64, 4, 32] does not match [B, T, H, K] = [2, 64, 4, 16]". */
#ifndef MIXC_H
#define MIXC_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mixc_status {
  MIXC_OK = 0,
  MIXC_ERROR_SOURCE,      /* the .mix source has errors; the message holds the diagnostics */
  MIXC_ERROR_ARGUMENT,    /* a bad argument: shape, dtype, stride, name, null pointer, ... */
  MIXC_ERROR_UNSUPPORTED, /* valid, but this build or device cannot do it */
  MIXC_ERROR_DEVICE,      /* no driver, no device, or the device failed */
  MIXC_ERROR_OUT_OF_MEMORY,
  MIXC_ERROR_INTERNAL,    /* a bug in mixc: please report it with the message */
} mixc_status;

typedef struct mixc_error {
  mixc_status status;
  char message[4096];
} mixc_error;

typedef enum mixc_dtype { MIXC_F32, MIXC_BF16, MIXC_F16, MIXC_I32, MIXC_I64 } mixc_dtype;

typedef enum mixc_device_kind { MIXC_CPU, MIXC_CUDA } mixc_device_kind;

enum { MIXC_MAX_DIMS = 8 };

typedef struct mixc_tensor {
  void *data;
  mixc_dtype dtype;
  int ndim;
  int64_t shape[MIXC_MAX_DIMS];
  int64_t stride[MIXC_MAX_DIMS]; /* in elements */
} mixc_tensor;

/* A contiguous (C order) tensor descriptor. */
mixc_tensor mixc_tensor_contiguous(void *data, mixc_dtype dtype, int ndim, const int64_t *shape);

typedef struct mixc_named_tensor {
  const char *name;
  mixc_tensor tensor;
} mixc_named_tensor;

typedef struct mixc_context mixc_context;
typedef struct mixc_module mixc_module;
typedef struct mixc_kernel mixc_kernel;

/* threads: 0 takes MIXC_NUM_THREADS from the environment, else every core. */
mixc_status mixc_context_create(int threads, mixc_context **out, mixc_error *err);
void mixc_context_destroy(mixc_context *ctx);

/* Compile a .mix source. `filename` names it in diagnostics. */
mixc_status mixc_module_compile(mixc_context *ctx, const char *source, size_t len,
                                const char *filename, mixc_module **out, mixc_error *err);
void mixc_module_destroy(mixc_module *mod);
/* The mixers of a module, in source order. */
int mixc_module_mixer_count(const mixc_module *mod);
const char *mixc_module_mixer_name(const mixc_module *mod, int i);

typedef struct mixc_dim {
  const char *name;
  int64_t size;
} mixc_dim;

typedef enum mixc_strategy {
  MIXC_STRATEGY_AUTO,      /* from the transition class and the sequence length */
  MIXC_STRATEGY_RECURRENT, /* one pass over time; every class; decode */
  MIXC_STRATEGY_CHUNK,     /* chunkwise parallel */
  MIXC_STRATEGY_PARALLEL,  /* quadratic, short sequences */
} mixc_strategy;

typedef struct mixc_kernel_options {
  const char *mixer;       /* NULL: the module's only mixer */
  const mixc_dim *dims;    /* every symbolic dim of the mixer, by name */
  int ndims;
  mixc_device_kind device;
  mixc_strategy strategy;
  int64_t chunk_size;      /* 0: the schedule's choice */
  /* Fields added since 0.1 (zero keeps the old meaning): */
  int device_index;        /* MIXC_CUDA: the device's ordinal, as the driver numbers them
                              (CUDA_VISIBLE_DEVICES applies); 0: the first */
  int check_cu_seqlens;    /* MIXC_CUDA: nonzero: every call copies cu_seqlens to the host
                              (waiting for args.stream) and checks it as on the CPU; 0: a
                              device cu_seqlens is trusted, as in FlashAttention */
  int64_t vtile;           /* chunk strategy: columns of the state (value-dim tile) per work
                              item; 0: the schedule's choice; >= the value dim: no split */
  int64_t segments;        /* MIXC_CUDA, the hand-structured chunk kernels: segments each
                              sequence runs as (docs/gpu.md, "The sequence split"); 0: the
                              schedule's choice; 1: none. The CPU ignores it */
} mixc_kernel_options;

mixc_status mixc_kernel_create(mixc_module *mod, const mixc_kernel_options *opt,
                               mixc_kernel **out, mixc_error *err);
void mixc_kernel_destroy(mixc_kernel *k);

/* The tensors of one call, by the names the mixer gives them. Inputs and params go in
 * `inputs` (a param left out takes its declared default; one without a default is an
 * error). Every output must be given. States are optional: an initial state given in
 * `initial_states` is read (else zeros); a state named in `final_states` is written. */
typedef struct mixc_args {
  const mixc_named_tensor *inputs;
  int ninputs;
  const mixc_named_tensor *outputs;
  int noutputs;
  const mixc_named_tensor *initial_states;
  int ninitial;
  const mixc_named_tensor *final_states;
  int nfinal;
  const mixc_tensor *cu_seqlens; /* NULL, or [N + 1] int32/int64 with B = 1 */
  void *stream;                  /* CUDA: the stream (CUstream; NULL: the legacy default
                                    stream); ignored on the CPU */
} mixc_args;

/* On MIXC_CUDA every tensor's data (cu_seqlens included) is a device address (a CUdeviceptr
 * cast to void *) in the device's primary context, and the call is asynchronous: it checks
 * the arguments, compiles on a new variant, enqueues the kernels on args->stream and
 * returns; errors inside a kernel surface at the next synchronisation (docs/api.md). */
mixc_status mixc_forward(mixc_kernel *k, const mixc_args *args, mixc_error *err);

/* A decode step: T tokens (usually 1) continuing from `states`, which are read as the
 * initial states and overwritten with the final ones. args->initial_states and
 * args->final_states must be empty. Equals a forward over the whole sequence. */
mixc_status mixc_step(mixc_kernel *k, const mixc_args *args, const mixc_named_tensor *states,
                      int nstates, mixc_error *err);

/* Time spent compiling the kernel's variants so far, in milliseconds, and their count
 * (variants found compiled in the context's cache count, at 0 ms). On MIXC_CUDA this is the
 * first tier: lowering, then NVRTC's fast compile (or the disk-cache read) and the load. */
double mixc_kernel_compile_ms(const mixc_kernel *k, int *nvariants);

/* MIXC_CUDA tiers. A variant compiled on a miss of the cubin disk cache first runs a cubin
 * compiled fast (NVRTC -Ofc=max: about a third of the compile time, much slower code) while
 * the optimised cubin compiles on a thread of its own; calls switch to the optimised one
 * from the first call after it is loaded. MIXC_CUDA_TIERED=0 turns this off (every compile
 * optimised, on the calling thread). A disk-cache hit is optimised from the start.
 *
 * mixc_kernel_wait_ready waits until every variant the kernel has used runs its optimised
 * module; call it after the first call of each combination and before timing anything.
 * Returns MIXC_OK (at once on the CPU, or when nothing is pending), or the error of a failed
 * optimised compile (MIXC_ERROR_INTERNAL, _DEVICE, _OUT_OF_MEMORY; the fast tier goes on
 * running). A failed optimised compile is also the error of the kernel's next call, once. */
mixc_status mixc_kernel_wait_ready(mixc_kernel *k, mixc_error *err);
/* The summed wall time, in ms, of the optimised compiles that ran on their own threads for
 * variants this kernel compiled, those that have ended (NVRTC, cache write, module load);
 * *pending (may be NULL) gets the number of the kernel's variants still running the fast tier
 * (compile pending, or failed). Does not wait; 0 and 0 on the CPU. */
double mixc_kernel_optimized_ms(const mixc_kernel *k, int *pending);

const char *mixc_status_name(mixc_status s);
const char *mixc_dtype_name(mixc_dtype d);
const char *mixc_version(void);
/* sizeof of the public struct named `type_name` ("mixc_kernel_options", "mixc_args",
 * "mixc_tensor", "mixc_named_tensor", "mixc_dim", "mixc_error") in this library, 0 for another
 * name: lets a binding built against another version of this header (a ctypes package) check
 * its layouts before the first call. */
size_t mixc_sizeof(const char *type_name);

#ifdef __cplusplus
}
#endif
#endif
