/* The hand-structured CUDA chunk kernel of the delta rule (lower_cuda.h). */
#include "lower_cuda.h"

int cuda_chunk_delta_source(FILE *out, const CudaChunkShape *s, const char *name, int arch,
                            int smem_optin, unsigned *threads, unsigned *smem,
                            int64_t *scratch_floats, char *err, size_t errlen) {
  (void)out, (void)s, (void)name, (void)arch, (void)smem_optin, (void)threads, (void)smem;
  (void)scratch_floats, (void)err, (void)errlen;
  return -1; /* not written yet */
}
