/* A whole standalone C file for one kernel (`mixc emit --target c`): the kernels of a
 * KernelPlan printed by c_emit.c, a pthreads runner over the work items, and a documented
 * entry point taking contiguous arrays. The file needs libm and pthreads only. */
#ifndef MIXC_C_DRIVER_H
#define MIXC_C_DRIVER_H
#include <stdio.h>

#include "compiler/lower.h"

/* `source` names the .mix file in the header comment. Returns 0, or 1 with a message. */
int mixc_emit_c_file(FILE *out, const char *source, const KernelSpec *spec,
                     const KernelPlan *plan, char *err, size_t errlen);

#endif
