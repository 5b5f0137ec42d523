/*
 * test_npy.c - standalone tests for runtime/half.h and runtime/npy.c.
 *
 * Build and run (no Python or other test framework needed):
 *   cc -std=c11 -Wall -Wextra -Werror -pedantic -g \
 *      -fsanitize=address,undefined -Iruntime \
 *      tests/test_npy.c runtime/npy.c -lm -o /tmp/t && /tmp/t
 *
 * Random inputs are fresh on every run; the seed is printed and can be
 * replayed with MIXC_TEST_SEED=<seed>.  Leak checking is left to the
 * sanitizer, which is why every error path below still calls the reader
 * under the same conditions a caller would.
 */
#define _POSIX_C_SOURCE 200809L

#include "runtime/half.h"
#include "runtime/npy.h"

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int g_passed, g_failed;
static char g_dir[64];
static uint64_t g_rng;

#include "check.h"

/* ---- helpers --------------------------------------------------------- */

static uint64_t rng_next(void) /* splitmix64 */
{
    uint64_t z = (g_rng += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static double rng_unit(void) { return (double)(rng_next() >> 11) * 0x1p-53; }

static const char *tmp_path(const char *name)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "%s/%s", g_dir, name);
    return buf;
}

static void write_bytes(const char *path, const void *bytes, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(bytes, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "test_npy: cannot write %s\n", path);
        exit(2);
    }
}

/* Builds magic + version + length + dict + data into buf; returns size. */
static size_t npy_bytes(unsigned char *buf, int major, const char *dict,
                        const void *data, size_t datalen)
{
    size_t hl = strlen(dict), off = 0;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    buf[8] = (unsigned char)hl;
    buf[9] = (unsigned char)(hl >> 8);
    off = 10;
    if (major >= 2) {
        buf[10] = (unsigned char)(hl >> 16);
        buf[11] = (unsigned char)(hl >> 24);
        off = 12;
    }
    memcpy(buf + off, dict, hl);
    if (datalen)
        memcpy(buf + off + hl, data, datalen);
    return off + hl + datalen;
}

static void put_le64(unsigned char *b, uint64_t u)
{
    int i;
    for (i = 0; i < 8; i++)
        b[i] = (unsigned char)(u >> (8 * i));
}

static int same_bits(double a, double b)
{
    return mixc__f64_bits(a) == mixc__f64_bits(b);
}

static int read_ok(const char *name, MixcArray *a)
{
    char err[256];
    int rc = mixc_npy_read(tmp_path(name), a, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "  unexpected error: %s\n", err);
    return rc == 0;
}

/* ---- half.h: binary16 ------------------------------------------------ */

static int f16_is_nan(uint16_t h)
{
    return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0;
}

static void test_f16_all_patterns(void)
{
    uint32_t h;
    int bad = 0, nan_bad = 0, round_bad = 0;

    for (h = 0; h < 0x10000u; h++) {
        float f = mixc_f16_to_f32((uint16_t)h);
        uint16_t back = mixc_f32_to_f16(f);
        if (f16_is_nan((uint16_t)h)) {
            /* quiet NaN in, same NaN out; signaling NaN comes back quiet */
            nan_bad += !isnan(f) || !(mixc__f32_bits(f) & 0x400000u) ||
                       back != (h | 0x200u);
            continue;
        }
        bad += back != h;
        round_bad += !same_bits(mixc_round_f16(f), f);
    }
    CHECK(bad == 0, "%d f16 patterns do not round-trip", bad);
    CHECK(nan_bad == 0, "%d f16 NaN patterns mishandled", nan_bad);
    CHECK(round_bad == 0, "%d f16 values not fixed by round_f16", round_bad);
}

static void test_f16_monotonic(void)
{
    uint16_t h;
    int bad = 0;
    for (h = 0; h < 0x7c00u; h++)
        bad += !(mixc_f16_to_f32(h) < mixc_f16_to_f32((uint16_t)(h + 1)));
    CHECK(bad == 0, "%d non-increasing f16 steps", bad);
}

/* For every pair of adjacent positive f16 values, the midpoint must go to
 * the even one and anything off the midpoint to the nearer one, both from
 * float and from double (where rounding via float would go wrong). */
static int f16_midpoint_errors(uint16_t h)
{
    uint16_t even = (h & 1) ? (uint16_t)(h + 1) : h;
    double lo = mixc_f16_to_f32(h), hi = mixc_f16_to_f32((uint16_t)(h + 1));
    double mid = (lo + hi) / 2;
    float fm = (float)mid;
    float below = mixc__bits_f32(mixc__f32_bits(fm) - 1);
    float above = mixc__bits_f32(mixc__f32_bits(fm) + 1);
    double dbelow = mixc__bits_f64(mixc__f64_bits(mid) - 1);
    double dabove = mixc__bits_f64(mixc__f64_bits(mid) + 1);
    int e = 0;

    e += mixc_f32_to_f16(fm) != even;
    e += mixc_f32_to_f16(-fm) != (even | 0x8000u);
    e += mixc_f32_to_f16(below) != h;
    e += mixc_f32_to_f16(above) != (uint16_t)(h + 1);
    e += !same_bits(mixc_round_f16(mid), mixc_f16_to_f32(even));
    e += !same_bits(mixc_round_f16(dbelow), lo);
    e += !same_bits(mixc_round_f16(dabove), hi);
    e += !same_bits(mixc_round_f16(-dabove), -hi);
    return e;
}

static void test_f16_midpoints(void)
{
    uint16_t h;
    int bad = 0;
    for (h = 0; h < 0x7bffu; h++)
        bad += f16_midpoint_errors(h);
    CHECK(bad == 0, "%d f16 midpoint rounding errors", bad);
    /* Above the largest finite value the next "neighbour" is 2^16: its
     * midpoint 65520 already overflows. */
    CHECK(mixc_f32_to_f16(65520.0f) == 0x7c00 &&
              mixc_f32_to_f16(mixc__bits_f32(0x477fefffu)) == 0x7bff &&
              mixc_round_f16(65520.0) == INFINITY &&
              mixc_round_f16(0x1.ffdffffffffffp15) == 65504.0,
          "f16 overflow threshold");
}

static void test_f16_cases(void)
{
    CHECK(mixc_f32_to_f16(1.0f) == 0x3c00, "1.0");
    CHECK(mixc_f32_to_f16(-2.0f) == 0xc000, "-2.0");
    CHECK(mixc_f32_to_f16(65504.0f) == 0x7bff, "max");
    CHECK(mixc_f32_to_f16(65519.99f) == 0x7bff, "just below overflow");
    CHECK(mixc_f32_to_f16(65520.0f) == 0x7c00, "tie to inf");
    CHECK(mixc_f32_to_f16(1e10f) == 0x7c00, "overflow");
    CHECK(mixc_f32_to_f16(-1e10f) == 0xfc00, "negative overflow");
    CHECK(mixc_f32_to_f16(INFINITY) == 0x7c00, "inf");
    CHECK(mixc_f32_to_f16(-0.0f) == 0x8000, "-0");
    CHECK(mixc_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00, "tie down to even");
    CHECK(mixc_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02, "tie up to even");
    CHECK(mixc_f32_to_f16(0x1p-24f) == 0x0001, "smallest subnormal");
    CHECK(mixc_f32_to_f16(0x1p-25f) == 0x0000, "half subnormal ties to 0");
    CHECK(mixc_f32_to_f16(-0x1p-25f) == 0x8000, "-tiny -> -0");
    CHECK(mixc_f32_to_f16(0x1.000002p-25f) == 0x0001, "above half rounds up");
    CHECK(mixc_f32_to_f16(3 * 0x1p-25f) == 0x0002, "subnormal tie to even");
    CHECK(mixc_f32_to_f16(0x1p-14f) == 0x0400, "smallest normal");
    CHECK(mixc_f32_to_f16(0x1.ff8p-15f) == 0x03ff, "largest subnormal");
    CHECK(mixc_f32_to_f16(0x1.ffcp-15f) == 0x0400, "tie into normals");
    CHECK(mixc_f32_to_f16(0x1.ffep-15f) == 0x0400, "subnormal carries");
    CHECK(mixc_f32_to_f16(1e-10f) == 0x0000, "underflow");
    CHECK(f16_is_nan(mixc_f32_to_f16(NAN)), "NaN");
    CHECK(mixc_f32_to_f16(mixc__bits_f32(0x7f800001u)) == 0x7e00,
          "signaling NaN with low payload stays NaN");
    CHECK(mixc_f16_to_f32(0x0001) == 0x1p-24f, "decode subnormal");
    CHECK(mixc__f32_bits(mixc_f16_to_f32(0x8000)) == 0x80000000u, "-0");
    CHECK(isinf(mixc_f16_to_f32(0xfc00)) && mixc_f16_to_f32(0xfc00) < 0,
          "-inf");
    CHECK(mixc_round_f16(1e300) == INFINITY, "double overflow");
    CHECK(same_bits(mixc_round_f16(-4.9e-324), -0.0), "double subnormal");
    CHECK(mixc_round_f16(65519.999999) == 65504.0, "double below tie");
    CHECK(mixc_round_f16(1.0 + 0x1p-11 + 0x1p-40) == 1.0 + 0x1p-10,
          "no double rounding via float");
}

/* ---- half.h: bfloat16 ------------------------------------------------ */

static int bf16_is_nan(uint16_t b)
{
    return (b & 0x7f80u) == 0x7f80u && (b & 0x7fu) != 0;
}

static void test_bf16_all_patterns(void)
{
    uint32_t b;
    int bad = 0, nan_bad = 0, round_bad = 0;

    for (b = 0; b < 0x10000u; b++) {
        float f = mixc_bf16_to_f32((uint16_t)b);
        uint16_t back = mixc_f32_to_bf16(f);
        if (bf16_is_nan((uint16_t)b)) {
            nan_bad += !isnan(f) || back != (b | 0x40u);
            continue;
        }
        bad += back != b || mixc__f32_bits(f) != b << 16;
        round_bad += !same_bits(mixc_round_bf16(f), f);
    }
    CHECK(bad == 0, "%d bf16 patterns do not round-trip", bad);
    CHECK(nan_bad == 0, "%d bf16 NaN patterns mishandled", nan_bad);
    CHECK(round_bad == 0, "%d bf16 values not fixed by round_bf16", round_bad);
}

static int bf16_midpoint_errors(uint16_t b)
{
    uint16_t even = (b & 1) ? (uint16_t)(b + 1) : b;
    double lo = mixc_bf16_to_f32(b), hi = mixc_bf16_to_f32((uint16_t)(b + 1));
    double mid = (lo + hi) / 2;
    float fm = (float)mid;
    float below = mixc__bits_f32(mixc__f32_bits(fm) - 1);
    float above = mixc__bits_f32(mixc__f32_bits(fm) + 1);
    double dabove = mixc__bits_f64(mixc__f64_bits(mid) + 1);
    int e = 0;

    e += mixc_f32_to_bf16(fm) != even;
    e += mixc_f32_to_bf16(-fm) != (even | 0x8000u);
    e += mixc_f32_to_bf16(below) != b;
    e += mixc_f32_to_bf16(above) != (uint16_t)(b + 1);
    e += !same_bits(mixc_round_bf16(mid), mixc_bf16_to_f32(even));
    e += !same_bits(mixc_round_bf16(dabove), hi);
    return e;
}

static void test_bf16_midpoints(void)
{
    uint16_t b;
    int bad = 0;
    for (b = 0; b < 0x7f7fu; b++)
        bad += bf16_midpoint_errors(b);
    CHECK(bad == 0, "%d bf16 midpoint rounding errors", bad);
    /* The largest finite bf16 is odd, so its upper midpoint goes to inf. */
    CHECK(mixc_f32_to_bf16(mixc__bits_f32(0x7f7f8000u)) == 0x7f80 &&
              mixc_f32_to_bf16(mixc__bits_f32(0x7f7f7fffu)) == 0x7f7f &&
              mixc_round_bf16(0x1.ffp127) == INFINITY &&
              mixc_round_bf16(0x1.fefffffffffffp127) == 0x1.fep127,
          "bf16 overflow threshold");
}

static void test_bf16_cases(void)
{
    CHECK(mixc_f32_to_bf16(1.0f) == 0x3f80, "1.0");
    CHECK(mixc_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80, "tie down to even");
    CHECK(mixc_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82, "tie up to even");
    CHECK(mixc_f32_to_bf16(mixc__bits_f32(0x7f7fffffu)) == 0x7f80,
          "FLT_MAX overflows to inf");
    CHECK(mixc_f32_to_bf16(-INFINITY) == 0xff80, "-inf");
    CHECK(mixc_f32_to_bf16(-0.0f) == 0x8000, "-0");
    CHECK(mixc_f32_to_bf16(mixc__bits_f32(0x00010000u)) == 0x0001,
          "subnormal");
    CHECK(mixc_f32_to_bf16(mixc__bits_f32(0x00008000u)) == 0x0000,
          "subnormal tie to 0");
    CHECK(bf16_is_nan(mixc_f32_to_bf16(mixc__bits_f32(0x7f800001u))),
          "NaN with payload only in the low bits stays NaN");
    CHECK(mixc_round_bf16(3.4e38) == INFINITY, "double overflow");
}

/* ---- half.h: cross-checks against float and between implementations -- */

static float random_float(void)
{
    /* Half the time near the f16 range so subnormal/overflow paths get hit. */
    uint32_t u = (uint32_t)rng_next();
    if (u & 1)
        u = (u & 0x807fffffu) | (uint32_t)(100 + (u >> 8) % 50) << 23;
    return mixc__bits_f32(u);
}

static void test_cross_random(void)
{
    int i, bad16 = 0, badbf = 0, bad32 = 0;

    for (i = 0; i < 1000000; i++) {
        float f = random_float();
        float a = mixc_f16_to_f32(mixc_f32_to_f16(f));
        float b = mixc_bf16_to_f32(mixc_f32_to_bf16(f));
        double d = ldexp(rng_unit() + 0.5, (int)(rng_next() % 287) - 160);
        if (isnan(f)) {
            bad16 += !isnan(a) || !isnan(mixc_round_f16(f));
            badbf += !isnan(b) || !isnan(mixc_round_bf16(f));
            continue;
        }
        bad16 += !same_bits(a, mixc_round_f16(f));
        badbf += !same_bits(b, mixc_round_bf16(f));
        bad32 += !same_bits(mixc_round_f32(d), (double)(float)d);
    }
    CHECK(bad16 == 0, "%d f16 disagreements", bad16);
    CHECK(badbf == 0, "%d bf16 disagreements", badbf);
    CHECK(bad32 == 0, "%d f32 disagreements with the C cast", bad32);
}

static void test_f32_cases(void)
{
    double flt_max = 0x1.fffffep127;
    CHECK(mixc_round_f32(flt_max) == flt_max, "FLT_MAX");
    CHECK(mixc_round_f32(0x1.ffffffp127) == INFINITY, "tie above FLT_MAX");
    CHECK(mixc_round_f32(0x1.fffffefffffffp127) == flt_max, "below tie");
    CHECK(mixc_round_f32(-1e300) == -INFINITY, "overflow");
    CHECK(mixc_round_f32(0x1p-150) == 0.0, "tie to zero");
    CHECK(same_bits(mixc_round_f32(-0x1p-150), -0.0), "-tie to -0");
    CHECK(mixc_round_f32(0x1.0000000000001p-150) == 0x1p-149, "above tie");
    CHECK(mixc_round_f32(3 * 0x1p-150) == 0x1p-148, "subnormal tie even");
    CHECK(isnan(mixc_round_f32(NAN)), "NaN");
    CHECK(mixc_round_f32(1.0 / 3) == (double)(1.0f / 3), "1/3");
}

/* ---- npy: round trips ------------------------------------------------ */

static double random_value(void)
{
    switch (rng_next() % 16) {
    case 0: return NAN;
    case 1: return (rng_next() & 1) ? INFINITY : -INFINITY;
    case 2: return -0.0;
    case 3: return ldexp(rng_unit(), -140); /* float subnormal */
    case 4: return 1e39;                    /* overflows float */
    case 5: return (double)(int64_t)(rng_next() % 2001) - 1000;
    default: return (rng_unit() - 0.5) * ldexp(1, (int)(rng_next() % 60) - 30);
    }
}

static int64_t file_size_of(const char *path)
{
    FILE *f = fopen(path, "rb");
    long n;
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fclose(f);
    return n;
}

/* Data must start on a 64-byte boundary right after a '\n'. */
static int layout_ok(const char *path, int64_t numel)
{
    unsigned char b[10];
    FILE *f = fopen(path, "rb");
    int ok = f && fread(b, 1, 10, f) == 10;
    int64_t hl = ok ? (int64_t)(b[8] | b[9] << 8) : 0;
    int c = EOF;
    if (ok && fseek(f, (long)(10 + hl - 1), SEEK_SET) == 0)
        c = fgetc(f);
    if (f)
        fclose(f);
    return ok && (10 + hl) % 64 == 0 && c == '\n' &&
           file_size_of(path) == 10 + hl + 4 * numel;
}

static void roundtrip(int ndim, const int64_t *shape)
{
    const char *path = tmp_path("rt.npy");
    char err[256];
    int64_t n = 1, i;
    double *data;
    MixcArray a;
    int k, bad = 0, rc;

    for (k = 0; k < ndim; k++)
        n *= shape[k];
    data = malloc((size_t)(n ? n : 1) * sizeof *data);
    if (!data)
        exit(2);
    for (i = 0; i < n; i++)
        data[i] = random_value();
    rc = mixc_npy_write_f32(path, ndim, shape, data, err, sizeof err);
    CHECK(rc == 0, "write ndim %d: %s", ndim, err);
    CHECK(layout_ok(path, n), "layout ndim %d", ndim);
    rc = mixc_npy_read(path, &a, err, sizeof err);
    CHECK(rc == 0, "read ndim %d: %s", ndim, err);
    if (rc == 0) {
        CHECK(a.ndim == ndim && a.data != NULL, "ndim %d", a.ndim);
        for (k = 0; k < ndim; k++)
            bad += a.shape[k] != shape[k];
        for (i = 0; i < n; i++)
            bad += isnan(data[i]) ? !isnan(a.data[i])
                                  : !same_bits(a.data[i],
                                               mixc_round_f32(data[i]));
        CHECK(bad == 0, "ndim %d: %d mismatches", ndim, bad);
        CHECK(mixc_array_numel(&a) == n, "numel");
    }
    mixc_array_free(&a);
    CHECK(a.data == NULL && a.ndim == 0, "free zeroes");
    free(data);
}

static void test_roundtrips(void)
{
    static const int64_t s1[] = {1}, s7[] = {7}, s34[] = {3, 4},
                         s234[] = {2, 3, 4}, s8d[] = {1, 2, 1, 2, 1, 2, 1, 2},
                         s0[] = {0}, s203[] = {2, 0, 3}, big[] = {5000},
                         s11[] = {1, 1};
    int64_t rnd[3];
    int t;

    roundtrip(0, NULL);
    roundtrip(1, s1);
    roundtrip(2, s11);
    roundtrip(1, s7);
    roundtrip(2, s34);
    roundtrip(3, s234);
    roundtrip(8, s8d);
    roundtrip(1, s0);
    roundtrip(3, s203);
    roundtrip(1, big); /* spans several I/O chunks */
    for (t = 0; t < 20; t++) {
        int k;
        for (k = 0; k < 3; k++)
            rnd[k] = 1 + (int64_t)(rng_next() % 9);
        roundtrip(1 + t % 3, rnd);
    }
}

/* ---- npy: hand-written valid files ----------------------------------- */

static void expect_values(const char *name, int ndim, const int64_t *shape,
                          const double *want, int64_t n)
{
    MixcArray a;
    int64_t i;
    int k, bad = 0;

    if (!read_ok(name, &a)) {
        CHECK(0, "%s did not load", name);
        return;
    }
    CHECK(a.ndim == ndim, "%s: ndim %d, want %d", name, a.ndim, ndim);
    for (k = 0; k < ndim && k < a.ndim; k++)
        bad += a.shape[k] != shape[k];
    for (i = 0; i < n && i < mixc_array_numel(&a); i++)
        bad += !same_bits(a.data[i], want[i]);
    CHECK(bad == 0 && mixc_array_numel(&a) == n, "%s: values/shape differ",
          name);
    mixc_array_free(&a);
}

static void test_literal_f4(void)
{
    /* A complete version 1.0 file, byte for byte: [1.0, -2.0] as '<f4'. */
    static const char bytes[] =
        "\x93NUMPY\x01\x00\x3a\x00"
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n"
        "\x00\x00\x80\x3f"
        "\x00\x00\x00\xc0";
    static const int64_t shape[] = {2};
    static const double want[] = {1.0, -2.0};
    write_bytes(tmp_path("lit.npy"), bytes, sizeof bytes - 1);
    expect_values("lit.npy", 1, shape, want, 2);
}

static void test_valid_f2(void)
{
    static const unsigned char data[] = {
        0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x01, 0x00, 0x00, 0x7c, 0x00, 0x80};
    static const int64_t shape[] = {2, 3};
    const double want[] = {1.0, -2.0, 65504.0, 0x1p-24, INFINITY, -0.0};
    unsigned char buf[256];
    size_t n = npy_bytes(buf, 1,
                         "{'descr': '<f2', 'fortran_order': False, "
                         "'shape': (2, 3), }    \n",
                         data, sizeof data);
    write_bytes(tmp_path("f2.npy"), buf, n);
    expect_values("f2.npy", 2, shape, want, 6);
}

static void test_valid_f8_and_versions(void)
{
    static const int64_t shape[] = {3};
    const double want[] = {1.5, -1e300, 0x1p-1074};
    unsigned char data[24], buf[256];
    int major, k;
    size_t n;

    for (k = 0; k < 3; k++)
        put_le64(data + 8 * k, mixc__f64_bits(want[k]));
    for (major = 1; major <= 3; major++) {
        char name[32];
        snprintf(name, sizeof name, "f8_v%d.npy", major);
        n = npy_bytes(buf, major,
                      "{'descr': '<f8', 'fortran_order': False, "
                      "'shape': (3,), }\n",
                      data, sizeof data);
        write_bytes(tmp_path(name), buf, n);
        expect_values(name, 1, shape, want, 3);
    }
}

static void test_valid_ints(void)
{
    static const unsigned char i4[] = {
        0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x00, 0x00, 0x80};
    static const int64_t shape5[] = {5};
    const double want4[] = {0, 1, -1, 2147483647.0, -2147483648.0};
    const double want8[] = {0, 5, -7, 0x1p53, -0x1p62};
    static const uint64_t i8[] = {0, 5, UINT64_C(0xfffffffffffffff9),
                                  UINT64_C(1) << 53,
                                  UINT64_C(0xc000000000000000)};
    unsigned char data8[40], buf[256];
    size_t n;
    int k;

    n = npy_bytes(buf, 1,
                  "{'descr': '<i4', 'fortran_order': False, 'shape': (5,), }\n",
                  i4, sizeof i4);
    write_bytes(tmp_path("i4.npy"), buf, n);
    expect_values("i4.npy", 1, shape5, want4, 5);
    for (k = 0; k < 5; k++)
        put_le64(data8 + 8 * k, i8[k]);
    n = npy_bytes(buf, 2,
                  "{'descr': '<i8', 'fortran_order': False, 'shape': (5,), }\n",
                  data8, sizeof data8);
    write_bytes(tmp_path("i8.npy"), buf, n);
    expect_values("i8.npy", 1, shape5, want8, 5);
}

/* Header spellings numpy (or Python's literal syntax) also accepts. */
static void test_valid_header_variants(void)
{
    static const char *const dicts[] = {
        "{'shape': (2, 1), 'fortran_order': False, 'descr': '<f4'}",
        "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2,1,)}",
        " {\t'descr' :'<f4' ,\n'fortran_order':False,'shape':(2 , 1 , ) , } \r\n",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 1L), }\n",
    };
    static const int64_t shape[] = {2, 1};
    static const unsigned char data[] = {0, 0, 0x80, 0x3f, 0, 0, 0, 0x40};
    const double want[] = {1.0, 2.0};
    unsigned char buf[256];
    size_t k;

    for (k = 0; k < sizeof dicts / sizeof dicts[0]; k++) {
        size_t n = npy_bytes(buf, 1, dicts[k], data, sizeof data);
        write_bytes(tmp_path("var.npy"), buf, n);
        expect_values("var.npy", 2, shape, want, 2);
    }
}

static void test_valid_scalar_and_empty(void)
{
    unsigned char d8[8], buf[256];
    const double want[] = {-3.25};
    static const int64_t shape0[] = {4, 0};
    size_t n;

    put_le64(d8, mixc__f64_bits(want[0]));
    n = npy_bytes(buf, 1,
                  "{'descr': '<f8', 'fortran_order': False, 'shape': (), }\n",
                  d8, 8);
    write_bytes(tmp_path("scalar.npy"), buf, n);
    expect_values("scalar.npy", 0, NULL, want, 1);
    n = npy_bytes(buf, 1,
                  "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 0), "
                  "}\n",
                  NULL, 0);
    write_bytes(tmp_path("empty.npy"), buf, n);
    expect_values("empty.npy", 2, shape0, NULL, 0);
}

/* ---- npy: malformed files -------------------------------------------- */

static int printable_line(const char *s)
{
    for (; *s; s++)
        if (*s < 0x20 || *s > 0x7e)
            return 0;
    return 1;
}

static void expect_error(const char *what, const void *bytes, size_t n)
{
    char err[256];
    MixcArray a;
    int rc;

    write_bytes(tmp_path("bad.npy"), bytes, n);
    memset(err, 'x', sizeof err);
    memset(&a, 0x5a, sizeof a); /* the reader must not trust *out */
    rc = mixc_npy_read(tmp_path("bad.npy"), &a, err, sizeof err);
    CHECK(rc != 0, "%s: accepted", what);
    CHECK(err[0] != '\0' && memchr(err, '\0', sizeof err) &&
              printable_line(err),
          "%s: bad message", what);
    CHECK(a.data == NULL && a.ndim == 0, "%s: output not cleared", what);
    if (rc != 0)
        printf("  %-22s -> %s\n", what, err);
    else
        mixc_array_free(&a);
}

static void expect_bad_dict(const char *what, int major, const char *dict,
                            size_t datalen)
{
    unsigned char buf[1024], zeros[64] = {0};
    size_t n = npy_bytes(buf, major, dict, zeros, datalen);
    expect_error(what, buf, n);
}

#define HDR(descr, fortran, shape)                                        \
    "{'descr': '" descr "', 'fortran_order': " fortran ", 'shape': " shape \
    ", }\n"

static void test_malformed_headers(void)
{
    expect_bad_dict("fortran order", 1, HDR("<f4", "True", "(2, 2)"), 16);
    expect_bad_dict("big-endian", 1, HDR(">f4", "False", "(2,)"), 8);
    expect_bad_dict("complex dtype", 1, HDR("<c8", "False", "(2,)"), 16);
    expect_bad_dict("'|f2' dtype", 1, HDR("|f2", "False", "(2,)"), 4);
    expect_bad_dict("unprintable dtype", 1, HDR("<\x01\xff", "False", "(2,)"),
                    8);
    expect_bad_dict("bad dict (no comma)", 1,
                    "{'descr': '<f4' 'fortran_order': False, 'shape': (2,)}",
                    8);
    expect_bad_dict("not a dict", 1, "['<f4', False, (2,)]", 8);
    expect_bad_dict("unterminated string", 1, "{'descr: '<f4'}", 8);
    expect_bad_dict("trailing garbage", 1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x",
                    8);
    expect_bad_dict("negative dim", 1, HDR("<f4", "False", "(-1,)"), 0);
    expect_bad_dict("shape overflow", 1,
                    HDR("<f4", "False", "(4294967296, 4294967296, 4294967296)"),
                    0);
    expect_bad_dict("dim > int64", 1,
                    HDR("<f4", "False", "(99999999999999999999999,)"), 0);
    expect_bad_dict("absurd size", 1,
                    HDR("<f4", "False", "(2097152, 1048576)"), 0);
    expect_bad_dict("shape not a tuple", 1, HDR("<f4", "False", "(2)"), 8);
    expect_bad_dict("shape float", 1, HDR("<f4", "False", "(2.0,)"), 8);
    expect_bad_dict("shape list", 1, HDR("<f4", "False", "[2]"), 8);
    expect_bad_dict("ndim 9", 1,
                    HDR("<f4", "False", "(1, 1, 1, 1, 1, 1, 1, 1, 1)"), 4);
    expect_bad_dict("missing key", 1,
                    "{'descr': '<f4', 'fortran_order': False}", 4);
    expect_bad_dict("extra key", 1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), "
                    "'x': 1}",
                    4);
    expect_bad_dict("duplicate key", 1,
                    "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, "
                    "'shape': (1,)}",
                    4);
    expect_bad_dict("fortran_order int", 1, HDR("<f4", "0", "(1,)"), 4);
    expect_bad_dict("fortran_order Truex", 1, HDR("<f4", "Truex", "(1,)"), 4);
    expect_bad_dict("structured dtype", 1,
                    "{'descr': [('a', '<f4')], 'fortran_order': False, "
                    "'shape': (1,)}",
                    4);
    expect_bad_dict("empty header", 2, "", 0);
}

static void test_malformed_framing(void)
{
    static const char dict[] = HDR("<f4", "False", "(4,)");
    unsigned char buf[256], zeros[32] = {0};
    size_t n = npy_bytes(buf, 1, dict, zeros, 16);

    expect_error("empty file", "", 0);
    expect_error("bad magic", "\x93NUMPX\x01\x00\x10\x00{}", 12);
    expect_error("only magic", "\x93NUMPY\x01", 7);
    expect_error("version 4.0", "\x93NUMPY\x04\x00\x02\x00{}", 12);
    expect_error("version 1.1", "\x93NUMPY\x01\x01\x02\x00{}", 12);
    expect_error("truncated header", buf, 30);
    expect_error("header len past EOF", "\x93NUMPY\x01\x00\x40\x00{}", 12);
    expect_error("header len 2 GiB", "\x93NUMPY\x02\x00\xff\xff\xff\x7f{}",
                 14);
    expect_error("truncated data", buf, n - 3);
    buf[n] = 0;
    expect_error("trailing bytes", buf, n + 1);
    {
        char err[256];
        MixcArray a;
        CHECK(mixc_npy_read(tmp_path("does_not_exist.npy"), &a, err,
                            sizeof err) != 0 && err[0],
              "missing file");
    }
}

/* Every proper prefix of a valid file must be rejected, not crash. */
static void test_all_truncations(void)
{
    unsigned char buf[256];
    unsigned char data[24] = {0};
    size_t n = npy_bytes(buf, 1, HDR("<f8", "False", "(3,)"), data, 24), k;
    int accepted = 0;
    char err[256];
    MixcArray a;

    for (k = 0; k < n; k++) {
        write_bytes(tmp_path("cut.npy"), buf, k);
        if (mixc_npy_read(tmp_path("cut.npy"), &a, err, sizeof err) == 0) {
            accepted++;
            mixc_array_free(&a);
        }
    }
    CHECK(accepted == 0, "%d truncated files accepted", accepted);
}

/* Random byte edits of a valid file: the reader may accept or reject, but
 * must stay memory-safe (the sanitizers are the real check here) and give a
 * consistent result. */
static void test_mutations(void)
{
    static const int64_t shape[] = {2, 3};
    const double vals[6] = {1, 2, 3, 4, 5, 6};
    unsigned char orig[512], buf[512];
    char err[256];
    size_t n;
    int i, inconsistent = 0;
    FILE *f;

    mixc_npy_write_f32(tmp_path("m.npy"), 2, shape, vals, err, sizeof err);
    f = fopen(tmp_path("m.npy"), "rb");
    n = f ? fread(orig, 1, sizeof orig, f) : 0;
    if (f)
        fclose(f);
    CHECK(n == 128 + 24, "mutation seed file size %zu", n);
    for (i = 0; i < 3000 && n > 0; i++) {
        MixcArray a;
        size_t len = n, edits = 1 + rng_next() % 4, e;
        memcpy(buf, orig, n);
        for (e = 0; e < edits; e++)
            buf[rng_next() % n] = (unsigned char)rng_next();
        if (rng_next() % 4 == 0)
            len = (size_t)(rng_next() % (n + 8)); /* may add junk bytes */
        write_bytes(tmp_path("mut.npy"), buf, len);
        if (mixc_npy_read(tmp_path("mut.npy"), &a, err, sizeof err) == 0) {
            inconsistent += a.data == NULL || a.ndim < 0 || a.ndim > 8;
            mixc_array_free(&a);
        } else {
            inconsistent += err[0] == '\0';
        }
    }
    CHECK(inconsistent == 0, "%d inconsistent mutation results", inconsistent);
}

/* ---- npy: writer errors ---------------------------------------------- */

static void test_write_errors(void)
{
    static const int64_t neg[] = {2, -1}, nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1},
                         huge[] = {INT64_C(1) << 30, INT64_C(1) << 30};
    const double d[2] = {0, 0};
    char err[256];

    CHECK(mixc_npy_write_f32(tmp_path("w.npy"), 2, neg, d, err, sizeof err) &&
              err[0],
          "negative dim");
    CHECK(mixc_npy_write_f32(tmp_path("w.npy"), 9, nine, d, err, sizeof err) &&
              err[0],
          "ndim 9");
    CHECK(mixc_npy_write_f32(tmp_path("w.npy"), 2, NULL, d, err, sizeof err) &&
              err[0],
          "NULL shape");
    CHECK(mixc_npy_write_f32(tmp_path("w.npy"), 2, huge, d, err, sizeof err) &&
              err[0],
          "too large");
    CHECK(mixc_npy_write_f32(tmp_path("no/such/dir.npy"), 0, NULL, d, err,
                             sizeof err) &&
              err[0],
          "unwritable path");
    CHECK(mixc_npy_write_f32(tmp_path("w.npy"), 0, NULL, d, NULL, 0) == 0,
          "NULL err buffer is allowed");
}

/* ---- main ------------------------------------------------------------ */

static void remove_tmp_dir(void)
{
    DIR *d = opendir(g_dir);
    struct dirent *e;
    char path[512];

    while (d && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", g_dir, e->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(g_dir);
}

static uint64_t pick_seed(void)
{
    const char *s = getenv("MIXC_TEST_SEED");
    if (s && *s)
        return strtoull(s, NULL, 0);
    return (uint64_t)time(NULL) ^ (uint64_t)clock() << 32;
}

int main(void)
{
    uint64_t seed = pick_seed();

    g_rng = seed;
    printf("test_npy: seed %" PRIu64 " (replay with MIXC_TEST_SEED)\n", seed);
    strcpy(g_dir, "/tmp/mixc_npyXXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("test_npy: mkdtemp");
        return 2;
    }
    test_f16_all_patterns();
    test_f16_monotonic();
    test_f16_midpoints();
    test_f16_cases();
    test_bf16_all_patterns();
    test_bf16_midpoints();
    test_bf16_cases();
    test_cross_random();
    test_f32_cases();
    test_roundtrips();
    test_literal_f4();
    test_valid_f2();
    test_valid_f8_and_versions();
    test_valid_ints();
    test_valid_header_variants();
    test_valid_scalar_and_empty();
    printf("malformed files (each must be rejected):\n");
    test_malformed_headers();
    test_malformed_framing();
    test_all_truncations();
    test_mutations();
    test_write_errors();
    remove_tmp_dir();
    printf("test_npy: %d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
