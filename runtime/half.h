/*
 * half.h - IEEE binary16 ("f16") and bfloat16 ("bf16") conversions.
 *
 * Kernels may store tensors in 16-bit formats while the reference runtime
 * computes in double, so we need bit-exact conversions that agree with
 * hardware and with NumPy:
 *
 *   mixc_f32_to_f16 / mixc_f16_to_f32     float  <-> binary16 bits
 *   mixc_f32_to_bf16 / mixc_bf16_to_f32   float  <-> bfloat16 bits
 *   mixc_round_f16 / _bf16 / _f32         double -> nearest value of that
 *                                         type, returned as a double
 *
 * All narrowing is round-to-nearest, ties-to-even, independent of the
 * floating-point environment.  Overflow gives a signed infinity, tiny values
 * become subnormals or signed zero, and NaN stays NaN (made quiet, payload
 * truncated where it must be).  Widening is exact.
 *
 * The mixc_round_* functions round the double directly to the target type:
 * going double -> float -> f16 would round twice and can land on the wrong
 * side of a tie.
 *
 * Header-only, no global state, no undefined behaviour: type punning goes
 * through memcpy and no out-of-range float conversion is ever performed.
 */
#ifndef MIXC_HALF_H
#define MIXC_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t mixc__f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float mixc__bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint64_t mixc__f64_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static inline double mixc__bits_f64(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* Round the integer m right by `shift` bits, ties to even.  shift is 1..63. */
static inline uint64_t mixc__shift_rne(uint64_t m, int shift)
{
    uint64_t q = m >> shift;
    uint64_t rem = m & ((UINT64_C(1) << shift) - 1);
    uint64_t half = UINT64_C(1) << (shift - 1);
    if (rem > half || (rem == half && (q & 1)))
        q++;
    return q;
}

/* ---- binary16 -------------------------------------------------------- */

static inline uint16_t mixc_f32_to_f16(float f)
{
    uint32_t x = mixc__f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;

    if (ax > 0x7f800000u) /* NaN: keep top payload bits, force quiet */
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    /* 65520 is the midpoint between 65504 (odd mantissa) and 2^16, so it
     * and everything above rounds to infinity. */
    if (ax >= 0x477ff000u)
        return (uint16_t)(sign | 0x7c00u);
    if (ax >= 0x38800000u) { /* result is normal: >= 2^-14 */
        /* Rebias 127 -> 15 and round the 23-bit mantissa to 10 bits; a
         * mantissa carry correctly bumps the exponent. */
        uint32_t r = (uint32_t)mixc__shift_rne(ax - 0x38000000u, 13);
        return (uint16_t)(sign | r);
    }
    if (ax <= 0x33000000u) /* <= 2^-25: half the smallest subnormal, tie -> 0 */
        return sign;
    {
        /* Subnormal result in units of 2^-24.  A carry to 0x400 is exactly
         * the smallest normal encoding, so no special case is needed. */
        uint32_t e = ax >> 23; /* 102..112 here */
        uint64_t m = (ax & 0x7fffffu) | 0x800000u;
        return (uint16_t)(sign | mixc__shift_rne(m, (int)(126 - e)));
    }
}

static inline float mixc_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;

    if (exp == 0x1f) { /* inf, or NaN made quiet */
        uint32_t quiet = mant ? 0x400000u : 0;
        return mixc__bits_f32(sign | 0x7f800000u | quiet | (mant << 13));
    }
    if (exp == 0) {
        /* Zero or subnormal: mant * 2^-24 is exact in float. */
        float v = (float)mant * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return mixc__bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

/* ---- bfloat16 -------------------------------------------------------- */

static inline uint16_t mixc_f32_to_bf16(float f)
{
    uint32_t x = mixc__f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: truncate, force quiet */
        return (uint16_t)((x >> 16) | 0x0040u);
    /* bf16 is the top half of a float, so rounding the low 16 bits is all
     * that is needed; carries overflow into inf exactly as they should. */
    return (uint16_t)mixc__shift_rne(x, 16);
}

static inline float mixc_bf16_to_f32(uint16_t b)
{
    uint32_t x = (uint32_t)b << 16;
    if ((x & 0x7fffffffu) > 0x7f800000u)
        x |= 0x400000u; /* quiet NaN */
    return mixc__bits_f32(x);
}

/* ---- rounding doubles to narrower types ------------------------------ */

/*
 * Round d to the binary format with `p` explicit mantissa bits and normal
 * exponent range [emin, emax], returning the result as a double (every such
 * value is exactly representable in double).
 */
static inline double mixc__round_format(double d, int p, int emin, int emax)
{
    uint64_t x = mixc__f64_bits(d);
    uint64_t sign = x & UINT64_C(0x8000000000000000);
    uint64_t ax = x & ~sign;
    double inf = mixc__bits_f64(UINT64_C(0x7ff0000000000000));

    if (ax > UINT64_C(0x7ff0000000000000)) /* NaN: make quiet */
        return mixc__bits_f64(x | UINT64_C(0x0008000000000000));
    if (ax == UINT64_C(0x7ff0000000000000) || ax == 0)
        return d;
    if ((ax >> 52) == 0) /* double subnormals are far below every target */
        return mixc__bits_f64(sign);
    {
        int e = (int)(ax >> 52) - 1023;
        int qe;    /* exponent of one unit in the last place of the result */
        int drop;  /* bits of the 53-bit significand that are rounded off */
        uint64_t m = (ax & UINT64_C(0x000fffffffffffff)) | UINT64_C(1) << 52;
        uint64_t q;
        double r;

        if (e > emax)
            return sign ? -inf : inf;
        qe = (e < emin ? emin : e) - p;
        drop = qe - (e - 52);
        if (drop > 53) /* below half the smallest subnormal */
            return mixc__bits_f64(sign);
        q = mixc__shift_rne(m, drop);
        /* q <= 2^54 and 2^qe is a normal double, so this is exact. */
        r = (double)q * mixc__bits_f64((uint64_t)(qe + 1023) << 52);
        if (r >= mixc__bits_f64((uint64_t)(emax + 1 + 1023) << 52))
            r = inf;
        return sign ? -r : r;
    }
}

static inline double mixc_round_f16(double d)
{
    return mixc__round_format(d, 10, -14, 15);
}

static inline double mixc_round_bf16(double d)
{
    return mixc__round_format(d, 7, -126, 127);
}

static inline double mixc_round_f32(double d)
{
    return mixc__round_format(d, 23, -126, 127);
}

#endif /* MIXC_HALF_H */
