/* The recurrence-IR evaluator: runs a mixer from its recurrence IR (compiler/rec.h) in fp64,
 * applying each update step in the canonical form of its class (a S, diag(d) S, (D + x y^T) S,
 * E .* S, ...) rather than as written. Held against the reference (runtime/reference.h),
 * it checks numerically that the analysis understood every program: `mixc run --backend ir
 * --check`. It takes the same binding and array conventions as the reference. */
#ifndef MIXC_REC_EVAL_H
#define MIXC_REC_EVAL_H
#include <stddef.h>

#include "../compiler/rec.h"
#include "reference.h"

int mixc_ir_run(const RecMixer *rm, const RefBinding *b, char *err, size_t errlen);

#endif
