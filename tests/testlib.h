/* testlib: scaffolding shared by the test programs (tests/CMakeLists.txt links it into every
 * test_*.c). Not a test of its own.
 *
 *   files        read a file, list the examples (examples/NAME.mix); the run's seed
 *   kernel runs  host tensors for the KIR kernels (test_emit_c, test_cuda_kernels,
 *                test_emit_cuda): strided storage, inputs drawn by role and rounded, NaN
 *                poisoning, the fp64 reference, relative errors
 *   API calls    tensors, data and calls of the public C API (test_api, test_api_cuda), on
 *                the host or, through CallDevice hooks, on a device
 *
 * Every helper leaves what a test checks and prints (its tolerances, its cases) to the test. */
#ifndef MIXC_TESTLIB_H
#define MIXC_TESTLIB_H

#include <stddef.h>
#include <stdint.h>

#include "compiler/compile.h"
#include "compiler/lower.h"
#include "runtime/inputs.h"
#include "runtime/reference.h"
#include "mixc.h"

/* ==== files ==== */

/* The whole file, NUL-terminated (malloc'd; *len its length when len is not NULL), or NULL. */
char *read_file(const char *path, size_t *len);

/* Reads and compiles path to STAGE_REC into comp; returns its first mixer. On failure prints
 * "FAIL PATH: does not compile", leaves nothing to free and returns NULL. */
const RecMixer *compile_file(Compilation *comp, const char *path);

/* The paths "examples/NAME.mix" (malloc'd, sorted) of the examples, at most max; returns how
 * many (0: none, or no examples/ here: run from the repository root). */
int list_examples(char **files, int max);

/* Compiles each example in turn (list_examples, at most 256) and hands it to fn; the
 * compilation is freed after. Returns how many failed: those that do not compile, or 1 when
 * there are none (each printed as a FAIL line). */
typedef void (*ExampleFn)(void *ctx, const char *path, Compilation *comp, const RecMixer *rm);
int each_example(ExampleFn fn, void *ctx);
/* The same for `count` random mixers of tests/gen_mixer.h (gen0, gen1, ...) drawn from rng:
 * a mixer whose case moved *failed is printed after its lines, with the run's seed. Returns
 * how many did not compile (a generator bug; each printed as a FAIL line with its text). */
int each_generated(int count, MixcRng *rng, unsigned long long seed, ExampleFn fn, void *ctx,
                   const int *failed);

/* The seed of a run: MIXC_TEST_SEED where set (replays a run), else from the clock. */
uint64_t test_seed(void);

/* A reference binding of B sequences of T tokens (a grid: Y x X), H heads. */
RefBinding ref_binding(int64_t B, int64_t T, int64_t H, int64_t Y, int64_t X,
                       const int64_t *dims, const double *const *in, double *const *out);

/* ==== kernel runs (KernelSpec / KernelPlan argument tables) ==== */

/* One tensor: its fp64 values (contiguous, for the reference) and its storage. */
typedef struct Tensor {
  double *ref;    /* contiguous [layout] */
  void *data;     /* the kernel's storage (host) */
  uint64_t dev;   /* a device copy (MixcDevPtr), where a test makes one; 0: none */
  int rank;
  int64_t shape[16], stride[16]; /* of the kernel's view */
  int64_t numel, alloc;
  KType type;
} Tensor;

double load_as(KType t, const void *p, int64_t i);          /* f32 or bf16 element i */
void store_as(KType t, void *p, int64_t i, double v);
int64_t offset_of(const Tensor *t, int64_t flat);          /* element `flat` under the strides */
/* Storage (zeroed) with strides; strided: for [B, T, H, ...] (btH) the storage is
 * [B, H, T, ...], otherwise the innermost dim's rows are padded by one element; not strided:
 * contiguous. Returns nonzero when out of memory. */
int make_storage(Tensor *t, int btH, int strided);
void fill_storage(Tensor *t); /* ref rounded to the type (the reference sees what the kernel
                                 reads), stored */
void poison(Tensor *t);       /* every element NaN */
/* Relative error of the storage against ref (max |x - ref| / ref_scale(max |ref|)); *nan: a
 * NaN or inf. */
double rel_err(const Tensor *t, const double *ref, int *nan);
/* What errors are relative to: max |ref|, floored at 1e-30 (f32 keeps no relative precision
 * near its denormals, from 1.2e-38, where a state that only decays ends after strong gates);
 * 1 when ref is all zeros. */
double ref_scale(double max_ref);
/* Gate stress: log gates half strongly negative (-20 .. -30), half near zero (-1e-5 .. 0). */
void stress_gates(MixcRng *rng, double *x, int64_t n);
/* Whether an output of m divides (its conditioning decides its error under extreme gates). */
int mixer_divides(const Mixer *m);

/* One kernel variant: the mixer and its spec's per-symbol arrays (nsyms + 1 each). */
typedef struct KCase {
  const RecMixer *rm;
  const Mixer *m;
  KernelSpec sp;
  KernelPlan pl;
  int64_t *dims;
  KType *dtype;
  unsigned char *present, *want;
} KCase;

/* Allocates the arrays (zeroed) and points sp at them. Returns nonzero when out of memory. */
int kcase_alloc(KCase *c, const RecMixer *rm);
/* kcase_alloc, then the variants test_emit_c and test_cuda_kernels run: dims drawn from
 * {3, 5, 16} (fixed ones kept), states f32, final states wanted outside grids; alt 0: f32
 * inputs, the params without a default given, initial states given; alt 1: bf16 inputs,
 * every param given, no initial state; strategy chunk or recurrent, chunk length 32. */
int kcase_draw(KCase *c, const RecMixer *rm, int alt, int chunked, MixcRng *rng);

void kcase_free(KCase *c);

/* The layout of symbol s's tensor: [B, T (or Y, X), H, (directions,) dims...] for inputs and
 * outputs, [H, dims...] for params, [N, H, dims...] for states (state != 0). */
void layout_shape(const KCase *c, int s, int state, int64_t B, int64_t N, int64_t T, int64_t H,
                  int64_t Y, int64_t X, Tensor *t);

/* Hands a filled tensor to the kernel: its plan slot `slot` (ptrs[] / a device table) for
 * symbol s (final: a final state). Returns nonzero with a message in err on failure. */
typedef int (*PlaceFn)(void *ctx, int slot, int s, int final, Tensor *t, char *err, size_t n);

/* One run's host tensors, per symbol. */
typedef struct KRun {
  int64_t B, T, H, Y, X;
  int ns;
  Tensor *ts, *fin;     /* inputs, params, outputs and initial states; final states */
  double **refout;      /* the reference's outputs (the tensors' ref) */
  const double **refin;
  InputRole *roles;
} KRun;

/* Lays out B = 2, H = 3 (a grid: 3 x 4 and T = 12) with strides (make_storage strided):
 * inputs drawn by role (log gates stressed when `stress`) and rounded, initial states f32,
 * outputs and final states poisoned; each tensor goes to place and its strides to ints, and
 * the sizes to ints. Returns 0; 1 out of memory (r allocated or not: krun_free it); 2 a place
 * failed (message in err). */
int krun_make(KRun *r, const KCase *c, int64_t T, MixcRng *rng, int stress, int64_t *ints,
              PlaceFn place, void *ctx, char *err, size_t n);
/* The fp64 reference into the outputs' ref (mixc_ref_run's status). */
int krun_reference(const KRun *r, const KCase *c, char *err, size_t n);
void krun_free(KRun *r);

/* The outputs of ts (tolerance tol) and the final states of fin that have storage (stol)
 * against refout, while ok; *worst the largest relative error, *nan any NaN. Returns ok. */
int check_tensors(const Mixer *m, const Tensor *ts, const Tensor *fin, double *const *refout,
                  double tol, double stol, int ok, double *worst, int *nan);

/* ==== API calls ==== */

enum { MAXSYM = 128, MAXD = MIXC_MAX_DIMS };

/* A tensor in memory: storage of any dtype and layout, read and written as doubles in the
 * contiguous logical order of the reference. */
typedef struct Buf {
  void *mem; /* the storage (host), or the host image of the device storage */
  size_t bytes;
  uint64_t d;    /* the device copy (MixcDevPtr), where CallDevice made one */
  mixc_tensor t; /* data: mem, or the device address */
} Buf;

enum Layout { L_CONTIG, L_TRANSPOSE, L_BROADCAST_B };

size_t esize(mixc_dtype d);
/* Logical shape `shape`; physical order: contiguous, T (or Y, X) and H swapped, or B
 * broadcast (stride 0). `pad` extra elements pad the innermost physical dim. `lead`: the
 * number of leading B, T/Y/X, H positions (3 or 4), 0 for params and states. Host storage,
 * zeroed. Returns 1, or 0 when out of memory. */
int buf_make(Buf *b, mixc_dtype dt, int ndim, const int64_t *shape, int layout, int lead, int pad);
void buf_free(Buf *b); /* the host storage */
void buf_poison(Buf *b);
int64_t buf_numel(const Buf *b);
int64_t buf_offset(const Buf *b, int64_t flat);
void buf_put(Buf *b, const double *src);
void buf_get(const Buf *b, double *dst);

/* One example: its mixer (for the reference and the roles) and what the tests make of it. */
typedef struct Ex {
  char name[64];
  Compilation comp;
  const Mixer *m;
  InputRole roles[MAXSYM];
  int64_t dims[MAXSYM];
  mixc_dim kdims[MAXSYM]; /* the kernel's dims (test_api_cuda) */
  int nkdims;
  mixc_module *mod;
  mixc_kernel *k; /* (test_api) */
  int grid, ndir;
} Ex;

/* Zeroes x, compiles path (the reference's mixer) and its module in ctx; name, grid,
 * directions and input roles. The dims are the caller's. Returns 1, or 0 with a message. */
int ex_load(Ex *x, mixc_context *ctx, const char *path, char *err, size_t n);

/* The data of one call, in the reference's contiguous fp64 layout. */
typedef struct Data {
  int64_t B, T, H, Y, X, N;
  int64_t numel[MAXSYM];
  double *in[MAXSYM];  /* inputs; params (NULL: default); initial states (NULL: zeros) */
  double *out[MAXSYM]; /* outputs; final states (NULL: not wanted) */
  int64_t *cu;         /* NULL, or N + 1 offsets */
} Data;

void data_free(Data *d);
int64_t feat(const Ex *x, int s); /* the product of symbol s's dims */
/* The logical shape of symbol s's tensor; returns its rank, *lead the leading sizes. */
int tshape(const Ex *x, const Data *d, int s, int state, int64_t *sh, int *lead);
double round_to(mixc_dtype dt, double v);

typedef struct Cfg {
  int64_t B, T, Y, X;
  mixc_dtype dt;
  int layout_in, layout_out; /* enum Layout */
  int init, fin;             /* initial states given, final states wanted */
  int params;                /* every param given (else only those without a default) */
  const int64_t *seqlens;    /* varlen: lengths of nseq sequences (B = 1) */
  int nseq;
  int cu_i32, cu_stride;
  int user_stream; /* (test_api_cuda) */
} Cfg;

/* Draws the data of one call (H = 3; examples/README.md ranges), rounded to what the kernel
 * reads. Returns 1, or 0 when out of memory (d to data_free). */
int data_make(const Ex *x, const Cfg *c, MixcRng *rng, Data *d);
/* The fp64 reference into d->out (mixc_ref_run's status). */
int run_reference(const Ex *x, Data *d, char *err, size_t n);
/* The largest |got[i] - ref[i]| (NaN: infinity), its index *at and *mx = max |ref|. */
double max_abs_err(const double *ref, const double *got, int64_t n, double *mx, int64_t *at);

/* Where a call's tensors live besides host memory: NULL in a Call for the host; else place
 * moves a filled buffer to the device (setting b->d and b->t.data), fetch copies it back into
 * b->mem, release frees the device copy. place and fetch return 1, or 0 with a message. */
typedef struct CallDevice {
  int (*place)(Buf *b, char *err, size_t n);
  int (*fetch)(Buf *b, char *err, size_t n);
  void (*release)(Buf *b);
} CallDevice;

/* The tensors of one call. */
typedef struct Call {
  Buf buf[MAXSYM], sin[MAXSYM], sout[MAXSYM], cub; /* cub: cu_seqlens */
  mixc_named_tensor in[MAXSYM], out[MAXSYM], init[MAXSYM], fin[MAXSYM];
  int nin, nout, ninit, nfin, has_cu;
  const CallDevice *dev;
} Call;

/* Inputs and given params in c->layout_in (params contiguous), outputs in c->layout_out (3
 * elements of padding when strided) and poisoned, initial states contiguous, final states
 * transposed and padded when c->layout_out, else contiguous, and poisoned; cu_seqlens i32 or
 * i64 at stride c->cu_stride. dev: NULL (host) or the device hooks. Returns 1, or 0 with a
 * message in err (call_free k either way). */
int call_make(const Ex *x, const Cfg *c, const Data *d, Call *k, const CallDevice *dev, char *err,
              size_t n);
void call_free(Call *k);
mixc_args call_args(Call *k, void *stream);
/* Tokens [at, at + len) of k's inputs (params whole) and outputs, into in and out: the
 * arguments of a decode step (the caller adds its states and stream). */
mixc_args step_args(const Ex *x, const Call *k, int64_t at, int64_t len, mixc_named_tensor *in,
                    mixc_named_tensor *out);
/* The outputs and final states into got (allocated like d->out). Returns 1, or 0 with a
 * message. */
int call_results(const Ex *x, const Data *d, Call *k, Data *got, char *err, size_t n);

#endif
