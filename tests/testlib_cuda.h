/* testlib_cuda: the part of testlib (testlib.c) for the tests of the hand-structured GPU
 * chunk kernels (test_lower_cuda_scalar, test_lower_cuda_delta): printing a shape's kernels
 * (one, or three with the sequence split) with their argument structs, and launching them in
 * order. Apart from testlib.h, whose names those tests define for themselves. */
#ifndef MIXC_TESTLIB_CUDA_H
#define MIXC_TESTLIB_CUDA_H

#ifdef MIXC_HAVE_CUDA
#include "backends/cuda/cuda_loader.h"
#include "compiler/lower_cuda.h"

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
 * malloc'd, or NULL with a message in err. */
char *ck_prelude(char *err, size_t n);
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

/* A host buffer and its device copy. */
typedef struct CkBuf {
  void *h;
  size_t bytes;
  MixcDevPtr d;
} CkBuf;
#endif

#endif
