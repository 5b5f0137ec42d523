/*
 * npy.h - read and write NumPy .npy files.
 *
 * Tensors move between mixc and Python test harnesses as .npy files.  The
 * reader accepts format versions 1.0, 2.0 and 3.0, little-endian float16,
 * float32, float64, int32 and int64 data in C order, and converts it to a
 * contiguous double array.  The writer produces version 1.0 float32 files
 * byte-identical to numpy.save.
 *
 * Every function reports failure by a nonzero return and a one-line message
 * (prefixed with the file path) in err; err may be NULL.  The reader treats
 * its input as untrusted: any malformed file yields an error, never a crash
 * or a leak.
 */
#ifndef MIXC_NPY_H
#define MIXC_NPY_H

#include <stddef.h>
#include <stdint.h>

#define MIXC_NPY_MAX_NDIM 8

/* Largest element count the reader accepts or the writer produces (2^40),
 * far beyond real inputs; anything bigger is a corrupt header. */
#define MIXC_NPY_MAX_ELEMS (INT64_C(1) << 40)

typedef struct MixcArray {
    int ndim;                         /* 0 for a scalar (one element) */
    int64_t shape[MIXC_NPY_MAX_NDIM]; /* entries past ndim are zero */
    double *data;                     /* C order; non-NULL even if empty */
} MixcArray;

/* Read path into *out.  On failure *out is left zeroed (nothing to free). */
int mixc_npy_read(const char *path, MixcArray *out, char *err, size_t errlen);

/* Write ndim/shape/data as a '<f4' C-order version 1.0 file.  Values are
 * rounded to float32 (ties to even, overflow to inf).  shape may be NULL when
 * ndim is 0; data may be NULL when there are no elements.  A partially
 * written file is removed on failure. */
int mixc_npy_write_f32(const char *path, int ndim, const int64_t *shape,
                       const double *data, char *err, size_t errlen);

/* Number of elements described by a's shape (1 for ndim 0). */
int64_t mixc_array_numel(const MixcArray *a);

/* Release a's data and zero it; safe on a zeroed or already freed array. */
void mixc_array_free(MixcArray *a);

#endif /* MIXC_NPY_H */
