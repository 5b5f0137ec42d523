/* The LLVM CPU backend: KIR -> LLVM IR -> optimised (default<O2>, host CPU and features)
 * -> ORC LLJIT machine code for this process.
 *
 * Every kernel has KIR's one signature (see compiler/kir.h):
 *   void f(void *const *ptrs, const int64_t *ints, int64_t begin, int64_t end, float *scratch)
 * `scratch` must point to KFunc.scratch_floats floats owned by the calling thread alone
 * (it is marked noalias), or may be NULL when the kernel needs none.
 *
 * Semantics the code generator fixes where KIR leaves room (the C emitter must agree):
 *   - a loop's bound `hi` is evaluated once, before the first iteration (`lo` too);
 *   - f32 add / sub / mul may contract into FMAs; reassoc adds also reassociate; nothing
 *     else is fast-math (NaN and infinities behave as in IEEE);
 *   - min / max of f32 propagate NaN (llvm.minimum / llvm.maximum; -0 < +0);
 *   - a select whose arms load memory or divide integers evaluates only the chosen arm;
 *   - and / or of i64 are logical (nonzero is true), giving 0 or 1;
 *   - i64 add / sub / mul must not overflow (they carry nsw, as signed C arithmetic);
 *     div / rem are C's (truncating) signed division;
 *   - the ptrs and ints tables are read-only during the call (noalias readonly), data
 *     pointers may alias one another, scratch aliases nothing (noalias).
 *
 * Thread safety: one MixcJit may be used by several threads at once; compilation builds
 * and optimises each module in its own LLVM context, then adds it to the JIT and generates
 * its code under a mutex (LLJIT's one compiler is not safe for two threads; the shared
 * matmul's module goes through the same mutex). The first kernel that calls the shared matmul compiles that function on a second thread
 * of the JIT's own while it optimises itself, and waits for it before returning (the thread
 * is joined there, or at mixc_jit_free after a failed compile). Compiled functions stay
 * valid until mixc_jit_free. */
#ifndef MIXC_LLVM_JIT_H
#define MIXC_LLVM_JIT_H
#include <stddef.h>
#include <stdint.h>

#include "compiler/kir.h"

typedef void (*MixcKernelFn)(void *const *ptrs, const int64_t *ints, int64_t begin, int64_t end,
                             float *scratch);

typedef struct MixcJit MixcJit; /* one LLJIT for the host CPU */

/* Returns 0, or 1 with a message in err. */
int mixc_jit_create(MixcJit **out, char *err, size_t errlen);

/* Builds LLVM IR for every KFunc of m (after kir_verify), verifies and optimises it, adds
 * it to the JIT and looks every function up: fns[i] is m->funcs[i]. compile_ms (may be
 * NULL) gets the wall time of the whole call. Symbol names are unique per call, so several
 * modules may define functions of one name. Returns 0, or 1 with a message in err (bad
 * KIR, an LLVM verification failure: an internal error; never an abort). */
int mixc_jit_compile(MixcJit *j, const KModule *m, MixcKernelFn *fns, double *compile_ms,
                     char *err, size_t errlen);

/* The module's LLVM IR as text (optimised for the host CPU when optimize != 0), in
 * malloc'd memory for the caller to free; function names are the KFunc names. Returns 0,
 * or 1 with a message in err. Needs no MixcJit. */
int mixc_jit_ir_text(const KModule *m, int optimize, char **text, char *err, size_t errlen);

void mixc_jit_free(MixcJit *j);

#endif
