/* The hand-structured CUDA chunk kernels: matching a mixer to a form (lower_cuda.h). */
#include "lower_cuda.h"

int lower_cuda_chunk(Arena *a, const KernelSpec *spec, KernelPlan *plan, char *err,
                     size_t errlen) {
  (void)a, (void)spec, (void)plan, (void)err, (void)errlen;
  return -1; /* not written yet: the KIR kernel */
}
