/* testlib_cuda: the part of testlib (testlib.c) for the tests of the hand-structured GPU
 * kernels (test_lower_cuda_scalar, test_lower_cuda_delta, test_lower_cuda_rec): their main's
 * scaffolding (the seed, the GPU, checks, NVRTC), printing a shape's kernels (one, or three
 * with the sequence split) with their argument structs, launching them in order, and the
 * host buffers and error measures of a run. Apart from testlib.h (its names do not clash
 * with these: a test may include both). */
#ifndef MIXC_TESTLIB_CUDA_H
#define MIXC_TESTLIB_CUDA_H

/* The main of a test built without MIXC_CUDA: prints "name: 0 passed, 0 failed, 1 skipped
 * (built without MIXC_CUDA)" and returns 77 (a skip to ctest). */
int ck_no_cuda(const char *name);

#ifdef MIXC_HAVE_CUDA
#include "backends/cuda/cuda_loader.h"
#include "compiler/lower_cuda.h"
#include "runtime/inputs.h"

/* ---- a test's main ---- */

/* Its start: stdout line-buffered; the seed (argv[1] where given, else from the time and the
 * pid) into rng. Returns the seed, for the test to print. */
unsigned long long ck_start(int argc, char **argv, MixcRng *rng);
/* Opens the GPU: its handle, or NULL after printing "no GPU: why" and counting a skip in
 * *skipped, or, with MIXC_TEST_REQUIRE_GPU set (and not "0"), a failure in *failed (printed). */
MixcCuda *ck_open_gpu(int *failed, int *skipped, char *err, size_t n);
/* A check: counted in *passed, or in *failed and printed as "FAIL: what". */
void ck_check(int ok, const char *what, int *passed, int *failed);
/* NVRTC compiles src (program name `file`) for sm_<arch>: 0, or 1 with the error printed.
 * Where not NULL, *size gets the CUBIN's size and *ms the time of the compile. */
int ck_nvrtc(MixcNvrtc *nv, const char *src, const char *file, int arch, size_t *size,
             double *ms);

/* The kernels' argument table, as chunk_kern_print prints it (struct MixcArgs_NAME): the
 * pointers and the integers (sizes, strides) at the slots a test gives its shapes. */
#define CK_NPTRS 16
#define CK_NINTS 64
typedef struct CkArgs {
  void *ptrs[CK_NPTRS];
  int64_t ints[CK_NINTS];
} CkArgs;

/* A host buffer and its device copy. */
typedef struct CkBuf {
  void *h;
  size_t bytes;
  MixcDevPtr d;
} CkBuf;

/* A shape's kernels, in launch order: one, or three with the sequence split. */
typedef struct ChunkKern {
  MixcCudaModule *mod; /* set by the caller that compiles the source */
  int n;
  MixcCudaFunc *fn[3];
  char name[3][256];
  unsigned threads[3], smem[3];
  int64_t item_floats; /* per-item storage the kernels share (0: none) */
  int64_t vtiles, segs; /* the split printed */
} ChunkKern;

/* The CUDA prelude every printed kernel starts with (an empty KIR module printed for NVRTC):
 * malloc'd, or NULL after printing "FAIL: the CUDA prelude: why". */
char *ck_prelude(void);
/* Writes src to $env/name.cu where the environment variable env names a directory (the
 * tests' MIXC_*_DUMP: the sources, to inspect). */
void ck_dump(const char *env, const char *name, const char *src);

/* prelude, then each kernel of shape s (cuda_chunk_kernels, base name `name`) after its
 * argument struct (nptrs pointers, nints integers), into *src (malloc'd); k gets the names and
 * launches. Returns 0, -1 (outside the form) or 1 (printed an error). */
int chunk_kern_print(const CudaChunkShape *s, const char *name, int arch, int optin,
                     const char *prelude, int nptrs, int nints, char **src, ChunkKern *k);

/* Launches k's kernels in order over items [0, items) on cu's default stream, each in two
 * launches ([0, mid), [mid, items): `begin` exercised) where 0 < mid < items, with scratch for
 * the per-item storage. Returns 0, or 1 with a message in err. */
int chunk_kern_launch(MixcCuda *cu, const ChunkKern *k, void *args, int64_t items, int64_t mid,
                      float *scratch, char *err, size_t n);
/* chunk_kern_launch, then synchronises and copies o (and s, where not NULL) back to their
 * host storage. Returns 0, or 1 with the error printed. */
int ck_launch_fetch(MixcCuda *cu, const ChunkKern *k, void *args, int64_t items, int64_t mid,
                    float *scratch, const CkBuf *o, const CkBuf *s);
/* Times each of k's kernels launched alone over items (median of 15 launches between
 * events, after one untimed): ms[f] for kernel f. For the benches; the sequence split's
 * kernels give the same work when repeated. Returns 0, or 1 with a message in err. */
int ck_time_each(MixcCuda *cu, const ChunkKern *k, void *args, int64_t items, float *scratch,
                 float ms[3], char *err, size_t n);
/* Host values of the kernels' storage types (f32, bf16, f16) as doubles: element i of p. The
 * 16-bit types round to nearest even; 0xffff (a NaN in bf16 and in f16) is the poison. */
uint16_t ck_to16(KType t, double x);
double ck_from16(KType t, uint16_t x);
size_t ck_tsize(KType t);
double ck_get(KType t, const void *p, int64_t i);
void ck_set(KType t, void *p, int64_t i, double x);
int ck_is_poison(KType t, const void *p, int64_t i);
void ck_poison(KType t, void *p, int64_t n); /* n elements: NaN (f32) or 0xffff */

/* Host storage (zeroed) for each of the n buffers of all[] whose bytes > 0: 0, or 1 when out
 * of memory (what was allocated stays, for ck_bufs_free). */
int ck_bufs_host(CkBuf *const *all, int n);
/* A device copy of each buffer whose bytes > 0: 0, or 1 with the error printed (the first). */
int ck_bufs_upload(MixcCuda *cu, CkBuf *const *all, int n);
/* Frees each buffer's device copy (where it has one) and host storage. */
void ck_bufs_free(MixcCuda *cu, CkBuf *const *all, int n);
/* cu_seqlens: the n + 1 offsets cu[] into h, as int64 (i64) or int32. */
void ck_put_cu(void *h, const int64_t *cu, int64_t n, int i64);

/* The relative error max |x - r| / max |r| (max |x - r| where max |r| is 0). */
double ck_rel(double maxe, double maxr);
/* One value x against its reference r: *maxe the largest |x - r| (infinity once x is NaN),
 * *maxr the largest |r|, *nan counts x NaN or inf. */
void ck_err_add(double x, double r, double *maxe, double *maxr, int64_t *nan);
/* Rows of V values of type t, [A][B][C][V + pad] at strides st, against ref [A][B][C][V]
 * (contiguous): ck_err_add over the values; *written counts the pad elements that are not the
 * poison (ck_is_poison). */
void ck_err_rows(KType t, const void *x, const int64_t st[4], int64_t A, int64_t B, int64_t C,
                 int64_t V, int64_t pad, const double *ref, double *maxe, double *maxr,
                 int64_t *nan, int64_t *written);
#endif

#endif
