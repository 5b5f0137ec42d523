/* The fp64 reference: runs any checked mixer by its direct recurrence, token by token,
 * in double precision, exactly as the language defines it (statements in textual order,
 * each state update computed from the values before it, `for` blocks repeated).
 * It is the oracle every backend is held against, so it favours plainness over speed
 * and does not use the recurrence analysis.
 *
 * All arrays are contiguous, C order, double:
 *   inputs        [B, T, H, dims...]          ([B, Y, X, H, ndir, dims...] per direction)
 *   params        [H, dims...]                (NULL: the declared default)
 *   states in     [N, H, dims...] or NULL     (zeros); N = B, or the number of sequences
 *   outputs       [B, T, H, dims...]          (grid mixers: [B, Y, X, H, dims...])
 *   states out    [N, H, dims...] or NULL     (not wanted)
 * Grid mixers (`over (Y, X)`) take T = Y * X tokens laid out y-major, and no states. */
#ifndef MIXC_REFERENCE_H
#define MIXC_REFERENCE_H
#include <stddef.h>
#include <stdint.h>

#include "../dsl/ast.h"

typedef struct RefBinding {
  int64_t B, T, H;
  int64_t Y, X;               /* grid mixers only; T must equal Y * X */
  const int64_t *dims;        /* indexed by symbol: the size of every SYM_DIM */
  const double *const *in;    /* indexed by symbol: inputs, params, initial states */
  double *const *out;         /* indexed by symbol: outputs (required), final states */
  const int64_t *cu_seqlens;  /* NULL, or nseq + 1 offsets into T with B == 1 */
  int64_t nseq;
} RefBinding;

/* Returns 0, or nonzero with a one-line message in err (a missing array, a dim that
 * disagrees with a fixed size, cu_seqlens out of order, out of memory). */
int mixc_ref_run(const Mixer *m, const RefBinding *b, char *err, size_t errlen);

/* A built-in function of the language in fp64 (numerically stable forms); y is the second
 * argument of min and max. Shared by every fp64 executor. */
double mixc_builtin(int fn, double x, double y);

/* The binding checks of mixc_ref_run alone: every array present, sizes consistent,
 * cu_seqlens in order. Other executors of the same conventions (the IR evaluator) use it. */
int mixc_ref_check(const Mixer *m, const RefBinding *b, char *err, size_t errlen);

/* Number of elements of symbol s's run-time array under binding b (inputs, params,
 * states, outputs as laid out above; a state's count is that of one of in/out), 0 for
 * dims and lets (no array), or -1 on overflow, when a dim it needs is unbound or not
 * positive, or when s is not a symbol. Uses only B, T, H, dims, cu_seqlens and nseq. */
int64_t mixc_ref_numel(const Mixer *m, const RefBinding *b, int s);

#endif
