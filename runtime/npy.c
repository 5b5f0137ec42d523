/*
 * npy.c - NumPy .npy reader and float32 writer (see npy.h).
 *
 * File layout: "\x93NUMPY", major, minor, a little-endian header length
 * (2 bytes for version 1.0, 4 bytes for 2.0 and 3.0), then a Python dict
 * literal such as
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 * padded with spaces and a newline, then the raw array data.
 *
 * The reader parses the dict with a small recursive-descent parser over
 * the exact header bytes instead of a general Python evaluator: it accepts
 * what numpy itself accepts for the types we support (either quote style,
 * any key order, arbitrary whitespace, optional trailing commas, Python 2
 * 'L' integer suffixes) and rejects everything else with a message.  All
 * sizes are checked against the real file size before anything big is
 * allocated, so a hostile header cannot trigger a huge malloc.
 *
 * Data is decoded byte by byte as little-endian, so the code does not
 * depend on the host byte order.
 */
#include "npy.h"
#include "half.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGN 64
/* numpy refuses headers over 10000 characters by default; we are a little
 * more generous but still refuse to allocate megabytes for a header. */
#define NPY_MAX_HEADER (1L << 20)
/* numpy leaves this much room after the first dimension so the header can
 * be rewritten in place when an array grows; mirrored for identical files. */
#define NPY_GROWTH_DIGITS 21
/* Elements converted per I/O call; keeps stack buffers at 8 KiB. */
#define NPY_CHUNK_ELEMS 1024

/* ---- error reporting ------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *path,
                    const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!err || errlen == 0)
        return;
    n = snprintf(err, errlen, "%s: ", path ? path : "(null)");
    if (n < 0 || (size_t)n >= errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

/* Header strings come from untrusted files; keep messages one printable
 * line of bounded length. */
static void printable(char *dst, size_t dstlen, const char *s, size_t n)
{
    size_t i, max = dstlen - 4;

    for (i = 0; i < n && i < max; i++)
        dst[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (i < n) {
        memcpy(dst + i, "...", 3);
        i += 3;
    }
    dst[i] = '\0';
}

/* ---- dtypes ---------------------------------------------------------- */

typedef enum { DT_F16, DT_F32, DT_F64, DT_I32, DT_I64 } DType;

typedef struct {
    const char *name; /* descr without the byte-order character */
    DType type;
    int size;
} DTypeInfo;

static const DTypeInfo dtypes[] = {
    {"f2", DT_F16, 2}, {"f4", DT_F32, 4}, {"f8", DT_F64, 8},
    {"i4", DT_I32, 4}, {"i8", DT_I64, 8},
};

static const DTypeInfo *find_dtype(const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (n == 2 && memcmp(s, dtypes[i].name, 2) == 0)
            return &dtypes[i];
    return NULL;
}

/* ---- header dict parser ---------------------------------------------- */

typedef struct {
    const char *s; /* header bytes, not NUL-terminated */
    size_t n, i;
    const char *path;
    char *err;
    size_t errlen;
} Parser;

typedef struct {
    const char *descr; /* points into the header bytes */
    size_t descr_len;
    int fortran;
    int ndim;
    int64_t shape[MIXC_NPY_MAX_NDIM];
    int have_descr, have_fortran, have_shape;
} Header;

static int syntax_error(Parser *p, const char *what)
{
    set_err(p->err, p->errlen, p->path,
            "malformed header: %s at offset %lu", what, (unsigned long)p->i);
    return -1;
}

static void skip_ws(Parser *p)
{
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' ||
                           p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static int peek(Parser *p)
{
    skip_ws(p);
    return p->i < p->n ? (unsigned char)p->s[p->i] : -1;
}

static int accept(Parser *p, char c)
{
    if (peek(p) != (unsigned char)c)
        return 0;
    p->i++;
    return 1;
}

/* A quoted string without escapes (numpy never writes escapes in the keys
 * or dtypes we accept). */
static int parse_string(Parser *p, const char **str, size_t *len)
{
    int q = peek(p);
    size_t start;

    if (q != '\'' && q != '"')
        return syntax_error(p, "expected a string");
    start = ++p->i;
    while (p->i < p->n && p->s[p->i] != q) {
        if (p->s[p->i] == '\\' || p->s[p->i] == '\n')
            return syntax_error(p, "unsupported character in string");
        p->i++;
    }
    if (p->i >= p->n)
        return syntax_error(p, "unterminated string");
    *str = p->s + start;
    *len = p->i - start;
    p->i++;
    return 0;
}

static int is_ident_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_';
}

static int parse_bool(Parser *p, int *out)
{
    static const char *const words[2] = {"False", "True"};
    int v;

    skip_ws(p);
    for (v = 0; v < 2; v++) {
        size_t len = strlen(words[v]);
        if (p->n - p->i >= len && memcmp(p->s + p->i, words[v], len) == 0 &&
            (p->i + len == p->n || !is_ident_char(p->s[p->i + len]))) {
            p->i += len;
            *out = v;
            return 0;
        }
    }
    return syntax_error(p, "fortran_order is not True or False");
}

/* A non-negative decimal dimension, rejecting anything above the element
 * limit so that later products cannot overflow. */
static int parse_dim(Parser *p, int64_t *out)
{
    int64_t v = 0;
    int c = peek(p);

    if (c == '-') {
        set_err(p->err, p->errlen, p->path, "negative dimension in shape");
        return -1;
    }
    if (c < '0' || c > '9')
        return syntax_error(p, "expected an integer in shape");
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
        v = v * 10 + (p->s[p->i++] - '0');
        if (v > MIXC_NPY_MAX_ELEMS) {
            set_err(p->err, p->errlen, p->path,
                    "shape dimension too large (limit 2^40 elements)");
            return -1;
        }
    }
    if (p->i < p->n && p->s[p->i] == 'L') /* Python 2 long literal */
        p->i++;
    if (p->i < p->n && is_ident_char(p->s[p->i]))
        return syntax_error(p, "bad integer in shape");
    *out = v;
    return 0;
}

/* A tuple literal: "()", "(3,)", "(3, 4)", "(3, 4,)".  "(3)" is an int in
 * Python, not a tuple, so numpy rejects it and so do we. */
static int parse_shape(Parser *p, Header *h)
{
    int trailing_comma = 0;

    if (!accept(p, '('))
        return syntax_error(p, "shape is not a tuple");
    h->ndim = 0;
    while (!accept(p, ')')) {
        if (h->ndim > 0 && !trailing_comma)
            return syntax_error(p, "expected ',' or ')' in shape");
        if (h->ndim == MIXC_NPY_MAX_NDIM) {
            set_err(p->err, p->errlen, p->path,
                    "too many dimensions (max %d)", MIXC_NPY_MAX_NDIM);
            return -1;
        }
        if (parse_dim(p, &h->shape[h->ndim]) != 0)
            return -1;
        h->ndim++;
        trailing_comma = accept(p, ',');
    }
    if (h->ndim == 1 && !trailing_comma)
        return syntax_error(p, "shape is not a tuple (missing ',')");
    return 0;
}

static int duplicate_key(Parser *p, const char *key)
{
    set_err(p->err, p->errlen, p->path, "duplicate key '%s' in header", key);
    return -1;
}

static int parse_entry(Parser *p, Header *h)
{
    const char *key;
    size_t klen;

    if (parse_string(p, &key, &klen) != 0)
        return -1;
    if (!accept(p, ':'))
        return syntax_error(p, "expected ':'");
    if (klen == 5 && memcmp(key, "descr", 5) == 0) {
        if (h->have_descr++)
            return duplicate_key(p, "descr");
        if (peek(p) == '[') {
            set_err(p->err, p->errlen, p->path,
                    "structured dtypes are not supported");
            return -1;
        }
        return parse_string(p, &h->descr, &h->descr_len);
    }
    if (klen == 13 && memcmp(key, "fortran_order", 13) == 0) {
        if (h->have_fortran++)
            return duplicate_key(p, "fortran_order");
        return parse_bool(p, &h->fortran);
    }
    if (klen == 5 && memcmp(key, "shape", 5) == 0) {
        if (h->have_shape++)
            return duplicate_key(p, "shape");
        return parse_shape(p, h);
    }
    {
        char buf[32];
        printable(buf, sizeof buf, key, klen);
        set_err(p->err, p->errlen, p->path, "unexpected key '%s' in header",
                buf);
        return -1;
    }
}

static int parse_dict(Parser *p, Header *h)
{
    int first = 1;

    if (!accept(p, '{'))
        return syntax_error(p, "header is not a dict");
    while (!accept(p, '}')) {
        if (!first && !accept(p, ','))
            return syntax_error(p, "expected ',' or '}'");
        if (!first && accept(p, '}'))
            break; /* trailing comma, as numpy writes */
        if (parse_entry(p, h) != 0)
            return -1;
        first = 0;
    }
    if (peek(p) != -1)
        return syntax_error(p, "trailing characters after dict");
    return 0;
}

static int parse_header(const char *s, size_t n, const char *path, char *err,
                        size_t errlen, Header *h)
{
    Parser p;
    static const char *const names[3] = {"descr", "fortran_order", "shape"};
    int have[3], k;

    p.s = s;
    p.n = n;
    p.i = 0;
    p.path = path;
    p.err = err;
    p.errlen = errlen;
    memset(h, 0, sizeof *h);
    if (parse_dict(&p, h) != 0)
        return -1;
    have[0] = h->have_descr;
    have[1] = h->have_fortran;
    have[2] = h->have_shape;
    for (k = 0; k < 3; k++) {
        if (!have[k]) {
            set_err(err, errlen, path, "header is missing key '%s'", names[k]);
            return -1;
        }
    }
    return 0;
}

/* ---- header semantics ------------------------------------------------ */

static const DTypeInfo *check_dtype(const Header *h, const char *path,
                                    char *err, size_t errlen)
{
    const DTypeInfo *dt = NULL;
    char shown[32];

    if (h->descr_len == 3 && (h->descr[0] == '<' || h->descr[0] == '>'))
        dt = find_dtype(h->descr + 1, 2);
    printable(shown, sizeof shown, h->descr, h->descr_len);
    if (dt && h->descr[0] == '>') {
        set_err(err, errlen, path,
                "big-endian dtype '%s' is not supported (save as '<%s')",
                shown, dt->name);
        return NULL;
    }
    if (!dt)
        set_err(err, errlen, path,
                "unsupported dtype '%s' (use float32, float64 or float16; "
                "int32/int64 for indices)",
                shown);
    return dt;
}

/* Element count, or -1 if it exceeds the limit.  Every dimension is already
 * <= 2^40, so checking before each multiply rules out int64 overflow. */
static int64_t shape_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    int k;

    for (k = 0; k < ndim; k++) {
        if (shape[k] != 0 && n > MIXC_NPY_MAX_ELEMS / shape[k])
            return -1;
        n *= shape[k];
    }
    return n;
}

/* ---- reading --------------------------------------------------------- */

static uint32_t le32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
           (uint32_t)b[3] << 24;
}

static uint64_t le64(const unsigned char *b)
{
    return (uint64_t)le32(b) | (uint64_t)le32(b + 4) << 32;
}

/* Two's complement without relying on implementation-defined conversions. */
static double i32_value(uint32_t u)
{
    return u < 0x80000000u ? (double)u : -(double)(~u) - 1.0;
}

static double i64_value(uint64_t u)
{
    return u < UINT64_C(0x8000000000000000) ? (double)u
                                             : -(double)(~u) - 1.0;
}

static double decode(const DTypeInfo *dt, const unsigned char *b)
{
    uint64_t u;
    double d;

    switch (dt->type) {
    case DT_F16:
        return mixc_f16_to_f32((uint16_t)(b[0] | b[1] << 8));
    case DT_F32:
        return mixc__bits_f32(le32(b));
    case DT_F64:
        u = le64(b);
        memcpy(&d, &u, sizeof d);
        return d;
    case DT_I32:
        return i32_value(le32(b));
    case DT_I64:
        return i64_value(le64(b));
    }
    return 0.0;
}

static int file_size(FILE *f, int64_t *size)
{
    long end;

    if (fseek(f, 0, SEEK_END) != 0)
        return -1;
    end = ftell(f);
    if (end < 0 || fseek(f, 0, SEEK_SET) != 0)
        return -1;
    *size = end;
    return 0;
}

/* Reads magic, version and header length; leaves f just past them. */
static int read_prefix(FILE *f, int64_t fsize, const char *path, char *err,
                       size_t errlen, int64_t *data_off, uint32_t *hlen)
{
    unsigned char b[12];
    size_t got = fread(b, 1, 8, f), lenbytes;

    if (got < NPY_MAGIC_LEN || memcmp(b, NPY_MAGIC, NPY_MAGIC_LEN) != 0) {
        set_err(err, errlen, path, "not a .npy file (bad magic)");
        return -1;
    }
    if (got < 8) {
        set_err(err, errlen, path, "truncated header");
        return -1;
    }
    if (b[6] < 1 || b[6] > 3 || b[7] != 0) {
        set_err(err, errlen, path, "unsupported .npy format version %d.%d",
                b[6], b[7]);
        return -1;
    }
    lenbytes = b[6] == 1 ? 2 : 4;
    if (fread(b + 8, 1, lenbytes, f) != lenbytes) {
        set_err(err, errlen, path, "truncated header");
        return -1;
    }
    *hlen = lenbytes == 2 ? (uint32_t)(b[8] | b[9] << 8) : le32(b + 8);
    *data_off = 8 + (int64_t)lenbytes + *hlen;
    if (*hlen > NPY_MAX_HEADER) {
        set_err(err, errlen, path, "header too long (%lu bytes)",
                (unsigned long)*hlen);
        return -1;
    }
    if (*data_off > fsize) {
        set_err(err, errlen, path, "truncated header");
        return -1;
    }
    return 0;
}

/* Reads and parses the header dict and resolves its dtype.  The header
 * bytes are freed here, so h->descr is cleared before returning. */
static int read_header(FILE *f, uint32_t hlen, const char *path, char *err,
                       size_t errlen, Header *h, const DTypeInfo **dt)
{
    char *buf = malloc(hlen ? hlen : 1);
    int rc;

    if (!buf) {
        set_err(err, errlen, path, "out of memory reading header");
        return -1;
    }
    if (fread(buf, 1, hlen, f) != hlen) {
        free(buf);
        set_err(err, errlen, path, "truncated header");
        return -1;
    }
    rc = parse_header(buf, hlen, path, err, errlen, h);
    if (rc == 0 && (*dt = check_dtype(h, path, err, errlen)) == NULL)
        rc = -1;
    h->descr = NULL;
    free(buf);
    return rc;
}

/* Checks that shape, dtype and file size agree before anything is
 * allocated for the data. */
static int check_layout(const Header *h, const DTypeInfo *dt, int64_t fsize,
                        int64_t data_off, const char *path, char *err,
                        size_t errlen, int64_t *numel)
{
    int64_t n = shape_numel(h->ndim, h->shape), want;

    if (h->fortran) {
        set_err(err, errlen, path,
                "fortran_order arrays are not supported (save a C-contiguous "
                "array)");
        return -1;
    }
    if (n < 0) {
        set_err(err, errlen, path, "array too large (limit 2^40 elements)");
        return -1;
    }
    want = n * dt->size;
    if (fsize - data_off < want) {
        set_err(err, errlen, path,
                "truncated data: shape needs %lld bytes, file has %lld",
                (long long)want, (long long)(fsize - data_off));
        return -1;
    }
    if (fsize - data_off > want) {
        set_err(err, errlen, path, "%lld trailing bytes after array data",
                (long long)(fsize - data_off - want));
        return -1;
    }
    *numel = n;
    return 0;
}

static int read_data(FILE *f, const DTypeInfo *dt, int64_t n, double *out)
{
    unsigned char buf[NPY_CHUNK_ELEMS * 8];
    size_t size = (size_t)dt->size;
    int64_t done = 0;

    while (done < n) {
        size_t k = (size_t)(n - done < NPY_CHUNK_ELEMS ? n - done
                                                       : NPY_CHUNK_ELEMS);
        size_t i;
        if (fread(buf, size, k, f) != k)
            return -1;
        for (i = 0; i < k; i++)
            out[done + (int64_t)i] = decode(dt, buf + i * size);
        done += (int64_t)k;
    }
    return 0;
}

static int read_file(FILE *f, const char *path, MixcArray *out, char *err,
                     size_t errlen)
{
    int64_t fsize, data_off, n;
    uint32_t hlen;
    Header h;
    const DTypeInfo *dt = NULL;
    double *data;

    if (file_size(f, &fsize) != 0) {
        set_err(err, errlen, path, "cannot determine file size");
        return -1;
    }
    if (read_prefix(f, fsize, path, err, errlen, &data_off, &hlen) != 0 ||
        read_header(f, hlen, path, err, errlen, &h, &dt) != 0 ||
        check_layout(&h, dt, fsize, data_off, path, err, errlen, &n) != 0)
        return -1;
    /* Never NULL, even for empty arrays, so callers need no special case. */
    data = malloc((size_t)(n ? n : 1) * sizeof *data);
    if (!data) {
        set_err(err, errlen, path, "out of memory (%lld elements)",
                (long long)n);
        return -1;
    }
    if (read_data(f, dt, n, data) != 0) {
        free(data);
        set_err(err, errlen, path, "read error in array data");
        return -1;
    }
    out->ndim = h.ndim;
    memcpy(out->shape, h.shape, sizeof out->shape);
    out->data = data;
    return 0;
}

int mixc_npy_read(const char *path, MixcArray *out, char *err, size_t errlen)
{
    FILE *f;
    int rc;

    if (err && errlen)
        err[0] = '\0';
    if (!out || !path) {
        set_err(err, errlen, path, "invalid argument");
        return -1;
    }
    memset(out, 0, sizeof *out);
    f = fopen(path, "rb");
    if (!f) {
        set_err(err, errlen, path, "cannot open: %s", strerror(errno));
        return -1;
    }
    rc = read_file(f, path, out, err, errlen);
    fclose(f);
    return rc;
}

/* ---- writing --------------------------------------------------------- */

/* Appends to buf[*len..cap); returns -1 if it does not fit. */
static int append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - *len)
        return -1;
    *len += (size_t)n;
    return 0;
}

/* Builds the complete prefix + header exactly as numpy 1.24+ writes it:
 * sorted keys, Python tuple repr, growth room after the first dimension,
 * then spaces and '\n' up to a multiple of NPY_ALIGN. */
static int build_header(int ndim, const int64_t *shape, char *buf,
                        size_t cap, size_t *total)
{
    size_t len = 10, hlen, dict_end;
    int k, rc = 0, first_digits = 0;

    rc |= append(buf, cap, &len,
                 "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (k = 0; k < ndim; k++) {
        size_t before = len;
        rc |= append(buf, cap, &len, k ? ", %lld" : "%lld",
                     (long long)shape[k]);
        if (k == 0)
            first_digits = (int)(len - before);
    }
    rc |= append(buf, cap, &len, ndim == 1 ? ",), }" : "), }");
    if (ndim > 0)
        rc |= append(buf, cap, &len, "%*s", NPY_GROWTH_DIGITS - first_digits,
                     "");
    if (rc != 0)
        return -1;
    dict_end = len;
    /* numpy's padlen is 1..NPY_ALIGN spaces, never 0, before the '\n'. */
    len = dict_end + 1;
    len += NPY_ALIGN - len % NPY_ALIGN;
    if (len > cap)
        return -1;
    memset(buf + dict_end, ' ', len - 1 - dict_end);
    buf[len - 1] = '\n';
    hlen = len - 10;
    memcpy(buf, NPY_MAGIC "\x01\x00", 8);
    buf[8] = (char)(hlen & 0xff);
    buf[9] = (char)(hlen >> 8);
    *total = len;
    return 0;
}

static int check_write_args(int ndim, const int64_t *shape, const double *data,
                            const char *path, char *err, size_t errlen,
                            int64_t *numel)
{
    int k;

    if (!path || ndim < 0 || ndim > MIXC_NPY_MAX_NDIM ||
        (ndim > 0 && !shape)) {
        set_err(err, errlen, path, "invalid argument (ndim %d)", ndim);
        return -1;
    }
    for (k = 0; k < ndim; k++) {
        if (shape[k] < 0 || shape[k] > MIXC_NPY_MAX_ELEMS) {
            set_err(err, errlen, path, "invalid dimension %lld",
                    (long long)shape[k]);
            return -1;
        }
    }
    *numel = shape_numel(ndim, shape);
    if (*numel < 0) {
        set_err(err, errlen, path, "array too large (limit 2^40 elements)");
        return -1;
    }
    if (*numel > 0 && !data) {
        set_err(err, errlen, path, "invalid argument (data is NULL)");
        return -1;
    }
    return 0;
}

static int write_data(FILE *f, const double *data, int64_t n)
{
    unsigned char buf[NPY_CHUNK_ELEMS * 4];
    int64_t done = 0;

    while (done < n) {
        size_t k = (size_t)(n - done < NPY_CHUNK_ELEMS ? n - done
                                                       : NPY_CHUNK_ELEMS);
        size_t i;
        for (i = 0; i < k; i++) {
            /* mixc_round_f32 makes the value exactly representable, so the
             * cast cannot be out of range (which C leaves undefined). */
            float v = (float)mixc_round_f32(data[done + (int64_t)i]);
            uint32_t u = mixc__f32_bits(v);
            buf[4 * i] = (unsigned char)u;
            buf[4 * i + 1] = (unsigned char)(u >> 8);
            buf[4 * i + 2] = (unsigned char)(u >> 16);
            buf[4 * i + 3] = (unsigned char)(u >> 24);
        }
        if (fwrite(buf, 4, k, f) != k)
            return -1;
        done += (int64_t)k;
    }
    return 0;
}

int mixc_npy_write_f32(const char *path, int ndim, const int64_t *shape,
                       const double *data, char *err, size_t errlen)
{
    char header[512];
    size_t hsize;
    int64_t n;
    FILE *f;
    int failed;

    if (err && errlen)
        err[0] = '\0';
    if (check_write_args(ndim, shape, data, path, err, errlen, &n) != 0)
        return -1;
    if (build_header(ndim, shape, header, sizeof header, &hsize) != 0) {
        set_err(err, errlen, path, "internal error: header too long");
        return -1;
    }
    f = fopen(path, "wb");
    if (!f) {
        set_err(err, errlen, path, "cannot create: %s", strerror(errno));
        return -1;
    }
    failed = fwrite(header, 1, hsize, f) != hsize || write_data(f, data, n);
    /* fclose flushes, so a full disk may only show up here. */
    failed |= fclose(f) != 0;
    if (failed) {
        set_err(err, errlen, path, "write failed: %s", strerror(errno));
        remove(path);
        return -1;
    }
    return 0;
}

/* ---- arrays ---------------------------------------------------------- */

int64_t mixc_array_numel(const MixcArray *a)
{
    int64_t n;
    int k;

    /* Arrays may be built by hand, so do not trust the fields. */
    if (!a || a->ndim < 0 || a->ndim > MIXC_NPY_MAX_NDIM)
        return 0;
    for (k = 0; k < a->ndim; k++)
        if (a->shape[k] < 0 || a->shape[k] > MIXC_NPY_MAX_ELEMS)
            return 0;
    n = shape_numel(a->ndim, a->shape);
    return n < 0 ? 0 : n;
}

void mixc_array_free(MixcArray *a)
{
    if (!a)
        return;
    free(a->data);
    memset(a, 0, sizeof *a);
}
