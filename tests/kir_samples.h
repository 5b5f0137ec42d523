/* KIR sample programs with expected results, shared by the backend tests
 * (tests/test_llvm_jit.c, the C emitter's test).
 *
 * Each sample is a KModule with one function (funcs[0]) of the standard kernel signature
 *   void f(void *const *ptrs, const int64_t *ints, int64_t begin, int64_t end, float *scratch)
 * plus the argument tables of one call, fresh random inputs and fp64-computed expectations.
 *
 * Use:
 *   KirSample *s; int n;
 *   kir_samples_build(&arena, seed, &s, &n);          // modules live in the arena
 *   for each i: compile s[i].mod; kir_sample_reset_outputs(&s[i]);
 *               fn(s[i].ptrs, s[i].ints, s[i].begin, s[i].end, scratch of s[i].scratch_floats);
 *               s[i].check(&s[i], msg, sizeof msg) == 0 ?
 *   kir_samples_free(s, n);                           // buffers, expectations, the array
 *
 * The buffers are malloc'd with their exact sizes (so a sanitizer sees any access outside
 * them). Outputs start poisoned with NaN where the call must write, and with random
 * "prior" values where it must not (items outside [begin, end), elements next to a
 * sub-buffer): a check fails on any NaN that was not expected and on any changed prior
 * value. Inputs are never written. kir_sample_reset_outputs restores that starting state,
 * so one sample can be run several times (e.g. once per backend). */
#ifndef MIXC_KIR_SAMPLES_H
#define MIXC_KIR_SAMPLES_H
#include <stddef.h>
#include <stdint.h>

#include "compiler/kir.h"

#define KIR_SAMPLE_MAX_SLOTS 16

typedef struct KirSample {
  const char *name;
  KModule *mod;            /* one function, funcs[0] */
  int64_t begin, end;      /* the call's item range */
  void *ptrs[KIR_SAMPLE_MAX_SLOTS];
  int64_t ints[KIR_SAMPLE_MAX_SLOTS]; /* argument tables; buffers malloc'd by the sample */
  int64_t scratch_floats;  /* the caller provides this many floats of scratch (may be 0) */
  double tol;              /* relative (or, below magnitude 1, absolute) tolerance for f32 */
  int (*check)(const struct KirSample *s, char *msg, size_t n); /* after the call: 0 ok */
  void *priv;              /* expected values etc. */
  int needs_matmul;        /* uses KS_MATMUL (a backend without it may skip the sample) */
} KirSample;

/* Builds every sample (modules in arena a, inputs from seed). Returns 0, or 1 when out of
 * memory (nothing is left allocated but what lives in the arena). Every module passes
 * kir_verify. */
int kir_samples_build(Arena *a, uint64_t seed, KirSample **out, int *n);
/* Frees the buffers, expectations and the array itself (not the modules: the arena). */
void kir_samples_free(KirSample *s, int n);
/* Puts the outputs back in their starting state (NaN poison, prior values). */
void kir_sample_reset_outputs(KirSample *s);

#endif
