/* KIR sample programs with expected results (see kir_samples.h).
 *
 * Not a test program of its own: a test includes it (`#include "kir_samples.c"`).
 * Expectations are computed in double from the very f32 (or bf16, f16, integer) inputs
 * the kernel reads; conversions are checked bit-exactly against runtime/half.h. */
#include "kir_samples.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/half.h"

/* ---- the private part of a sample ---- */

#define SMAX_BUFS 16
#define SMAX_OUTS 10

/* One checked output: elements [0, n) of bufs[buf] of memory type elem. */
typedef struct SOut {
  const char *what;
  int buf;
  KType elem;         /* KT_F32, KT_I64, KT_I32, KT_BF16 / KT_F16 (bit patterns) */
  int64_t n;
  double *expect;     /* expected value (f32, integers) or bit pattern (bf16, f16) */
  double *scale;      /* f32: |error| <= tol * scale[i]; NULL: tol * max(|expect|, 1) */
  unsigned char *care;/* NULL: every element is written; care[i] == 0: must keep its
                         starting value bit for bit */
  int exact;          /* f32 compared exactly (NaN matches any NaN) */
} SOut;

typedef struct SPriv {
  void *buf[SMAX_BUFS];
  size_t bytes[SMAX_BUFS];
  void *init[SMAX_BUFS]; /* outputs: the starting contents; NULL for inputs */
  int nbuf;
  SOut out[SMAX_OUTS];
  int nout;
} SPriv;

typedef struct SRng {
  uint64_t s;
} SRng;

static uint64_t srng_next(SRng *r) { /* splitmix64 */
  uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static double srng_unit(SRng *r) { return (double)(srng_next(r) >> 11) * 0x1p-53; }

static float srng_f32(SRng *r, double lo, double hi) {
  return (float)(lo + (hi - lo) * srng_unit(r));
}

/* Allocates a buffer of the sample (zeroed). Returns its index, or -1. */
static int sbuf(SPriv *p, size_t bytes) {
  if (p->nbuf >= SMAX_BUFS) return -1;
  void *b = calloc(1, bytes ? bytes : 1);
  if (!b) return -1;
  p->buf[p->nbuf] = b;
  p->bytes[p->nbuf] = bytes;
  return p->nbuf++;
}

/* Adds a checked output over buffer `buf`, with expectations (zeroed) and care flags
 * (all 1) to fill in. Returns NULL when out of memory. */
static SOut *sout(SPriv *p, const char *what, int buf, KType elem, int64_t n, int with_scale) {
  if (p->nout >= SMAX_OUTS || buf < 0) return NULL;
  SOut *o = &p->out[p->nout];
  memset(o, 0, sizeof *o);
  o->what = what;
  o->buf = buf;
  o->elem = elem;
  o->n = n;
  o->expect = calloc((size_t)n, sizeof(double));
  o->care = malloc((size_t)n);
  if (with_scale) o->scale = calloc((size_t)n, sizeof(double));
  if (!o->expect || !o->care || (with_scale && !o->scale)) {
    free(o->expect);
    free(o->care);
    free(o->scale);
    return NULL;
  }
  memset(o->care, 1, (size_t)n);
  p->nout++;
  return o;
}

static size_t elem_size(KType t) {
  switch (t) {
  case KT_BF16:
  case KT_F16: return 2;
  case KT_F32:
  case KT_I32: return 4;
  default: return 8;
  }
}

/* Fills the starting state of every output: NaN (or 0x7FFF.. for integers) where the call
 * writes, random prior values where it must not, and saves it for resets. */
static int sfinish_outputs(SPriv *p, SRng *r) {
  for (int k = 0; k < p->nout; k++) {
    SOut *o = &p->out[k];
    unsigned char *b = p->buf[o->buf];
    size_t es = elem_size(o->elem);
    for (int64_t i = 0; i < o->n; i++) {
      unsigned char *at = b + (size_t)i * es;
      int poison = o->care[i];
      switch (o->elem) {
      case KT_F32: {
        float v = poison ? NAN : srng_f32(r, -100, 100);
        memcpy(at, &v, 4);
        break;
      }
      case KT_BF16:
      case KT_F16: {
        uint16_t v = poison ? 0x7FFF : (uint16_t)(srng_next(r) & 0x3FFF);
        memcpy(at, &v, 2);
        break;
      }
      case KT_I32: {
        int32_t v = poison ? INT32_MIN + 7 : (int32_t)(srng_next(r) & 0xFFFFFF);
        memcpy(at, &v, 4);
        break;
      }
      default: {
        int64_t v = poison ? INT64_MIN + 7 : (int64_t)(srng_next(r) & 0xFFFFFFFFFF);
        memcpy(at, &v, 8);
        break;
      }
      }
    }
  }
  for (int k = 0; k < p->nout; k++) {
    int bi = p->out[k].buf;
    if (p->init[bi]) continue;
    p->init[bi] = malloc(p->bytes[bi] ? p->bytes[bi] : 1);
    if (!p->init[bi]) return 1;
    memcpy(p->init[bi], p->buf[bi], p->bytes[bi]);
  }
  return 0;
}

void kir_sample_reset_outputs(KirSample *s) {
  SPriv *p = s->priv;
  if (!p) return;
  for (int i = 0; i < p->nbuf; i++)
    if (p->init[i]) memcpy(p->buf[i], p->init[i], p->bytes[i]);
}

static int is_nan16(uint16_t v, KType t) {
  return t == KT_BF16 ? (v & 0x7F80) == 0x7F80 && (v & 0x7F) : (v & 0x7C00) == 0x7C00 && (v & 0x3FF);
}

static int check_outputs(const KirSample *s, char *msg, size_t n) {
  const SPriv *p = s->priv;
  for (int k = 0; k < p->nout; k++) {
    const SOut *o = &p->out[k];
    const unsigned char *b = p->buf[o->buf], *init = p->init[o->buf];
    size_t es = elem_size(o->elem);
    for (int64_t i = 0; i < o->n; i++) {
      const unsigned char *at = b + (size_t)i * es;
      if (!o->care[i]) {
        if (memcmp(at, init + (size_t)i * es, es)) {
          snprintf(msg, n, "%s: %s[%lld] was changed, but lies outside what the call writes",
                   s->name, o->what, (long long)i);
          return 1;
        }
        continue;
      }
      double e = o->expect[i];
      switch (o->elem) {
      case KT_F32: {
        float g;
        memcpy(&g, at, 4);
        int ok;
        if (isnan(e)) ok = isnan(g);
        else if (isnan(g)) ok = 0;
        else if (isinf(e) || o->exact) ok = (double)g == e;
        else {
          double sc = o->scale ? o->scale[i] : fmax(fabs(e), 1.0);
          ok = fabs((double)g - e) <= s->tol * sc;
        }
        if (!ok) {
          snprintf(msg, n, "%s: %s[%lld] = %.9g, expected %.9g (tol %g)", s->name, o->what,
                   (long long)i, (double)g, e, s->tol);
          return 1;
        }
        break;
      }
      case KT_BF16:
      case KT_F16: {
        uint16_t g;
        memcpy(&g, at, 2);
        uint16_t ev = (uint16_t)e;
        int ok = is_nan16(ev, o->elem)
                     ? is_nan16(g, o->elem) && (g & (o->elem == KT_BF16 ? 0x40 : 0x200))
                     : g == ev;
        if (!ok) {
          snprintf(msg, n, "%s: %s[%lld] = 0x%04x, expected 0x%04x%s", s->name, o->what,
                   (long long)i, g, ev, is_nan16(ev, o->elem) ? " (a quiet NaN)" : "");
          return 1;
        }
        break;
      }
      case KT_I32: {
        int32_t g;
        memcpy(&g, at, 4);
        if ((double)g != e) {
          snprintf(msg, n, "%s: %s[%lld] = %ld, expected %.0f", s->name, o->what,
                   (long long)i, (long)g, e);
          return 1;
        }
        break;
      }
      default: {
        int64_t g;
        memcpy(&g, at, 8);
        if ((double)g != e) {
          snprintf(msg, n, "%s: %s[%lld] = %lld, expected %.0f", s->name, o->what,
                   (long long)i, (long long)g, e);
          return 1;
        }
        break;
      }
      }
    }
  }
  return 0;
}

/* ---- building helpers ---- */

#define V(x) ke_var(m, f, (x))
#define I(v) ke_int(m, (v))
#define F(v) ke_float(m, (v))
#define P(slot) ke_ptr_slot(m, (slot))
#define N(slot) ke_int_slot(m, (slot))
#define LD(t, p, i) ke_load(m, (t), (p), (i))
#define B(op, x, y) ke_bin(m, (op), (x), (y))
#define U(op, x) ke_un(m, (op), (x))
#define ADD(s, c) ks_add(m, (s), (c))

static float *fbuf(SPriv *p, int b) { return p->buf[b]; }

/* Starts a sample: a module with one function and a private part. */
static KFunc *sstart(KirSample *s, Arena *a, const char *name, const char *fname,
                     const char *items) {
  memset(s, 0, sizeof *s);
  s->name = name;
  s->check = check_outputs;
  s->tol = 2e-6;
  s->priv = calloc(1, sizeof(SPriv));
  s->mod = kir_module(a);
  if (!s->priv || !s->mod) return NULL;
  KFunc *f = kir_func(s->mod, fname);
  if (f) f->items = items;
  return f;
}

/* saxpy over items: y[i] = a * x[i] + y[i] for i in [begin, end) of n; the rest of y keeps
 * its values. */
static int build_saxpy(KirSample *s, Arena *a, SRng *r) {
  KFunc *f = sstart(s, a, "saxpy", "saxpy", "element");
  if (!f) return 1;
  KModule *m = s->mod;
  SPriv *p = s->priv;
  const int64_t n = 1000;
  float alpha = srng_f32(r, -2, 2);
  int sx = kir_slot(m, KSL_PTR, "x"), sy = kir_slot(m, KSL_PTR, "y");
  int i = kir_var(m, f, KT_I64, "i");
  KStmt *loop = ks_for(m, i, ke_arg(m, 2), ke_arg(m, 3), KF_VECTORIZE | KF_PARALLEL);
  ADD(f->body, loop);
  ADD(loop, ks_store(m, KT_F32, P(sy), V(i),
                     B(KO_ADD, B(KO_MUL, F(alpha), LD(KT_F32, P(sx), V(i))),
                       LD(KT_F32, P(sy), V(i)))));
  int bx = sbuf(p, (size_t)n * 4), by = sbuf(p, (size_t)n * 4);
  if (bx < 0 || by < 0) return 1;
  SOut *o = sout(p, "y", by, KT_F32, n, 1);
  if (!o) return 1;
  s->begin = 7;
  s->end = n - 9;
  float *x = fbuf(p, bx), *y = fbuf(p, by);
  for (int64_t k = 0; k < n; k++) x[k] = srng_f32(r, -1, 1);
  for (int64_t k = 0; k < n; k++) o->care[k] = k >= s->begin && k < s->end;
  if (sfinish_outputs(p, r)) return 1;
  /* y is read as well: its starting values are random everywhere */
  for (int64_t k = 0; k < n; k++) y[k] = srng_f32(r, -1, 1);
  memcpy(p->init[by], y, (size_t)n * 4);
  for (int64_t k = 0; k < n; k++) {
    o->expect[k] = (double)alpha * x[k] + y[k];
    o->scale[k] = fabs((double)alpha * x[k]) + fabs((double)y[k]) + 1e-30;
  }
  s->ptrs[sx] = x;
  s->ptrs[sy] = y;
  s->tol = 1e-6;
  return 0;
}

/* A dot product reduction with reassoc adds in a vectorize loop: out[item] = x . y. */
static int build_dot(KirSample *s, Arena *a, SRng *r) {
  KFunc *f = sstart(s, a, "dot", "dot", "one dot product");
  if (!f) return 1;
  KModule *m = s->mod;
  SPriv *p = s->priv;
  const int64_t n = 1000;
  int sx = kir_slot(m, KSL_PTR, "x"), sy = kir_slot(m, KSL_PTR, "y"),
      so = kir_slot(m, KSL_PTR, "out"), sn = kir_slot(m, KSL_INT, "n");
  int it = kir_var(m, f, KT_I64, "item"), i = kir_var(m, f, KT_I64, "i"),
      acc = kir_var(m, f, KT_F32, "acc");
  KStmt *items = ks_for(m, it, ke_arg(m, 2), ke_arg(m, 3), KF_PARALLEL);
  ADD(f->body, items);
  ADD(items, ks_set(m, acc, F(0)));
  KStmt *loop = ks_for(m, i, I(0), N(sn), KF_VECTORIZE);
  ADD(items, loop);
  KExpr *sum = B(KO_ADD, V(acc), B(KO_MUL, LD(KT_F32, P(sx), V(i)), LD(KT_F32, P(sy), V(i))));
  sum->reassoc = 1;
  ADD(loop, ks_set(m, acc, sum));
  ADD(items, ks_store(m, KT_F32, P(so), V(it), V(acc)));
  int bx = sbuf(p, (size_t)n * 4), by = sbuf(p, (size_t)n * 4), bo = sbuf(p, 2 * 4);
  if (bx < 0 || by < 0 || bo < 0) return 1;
  SOut *o = sout(p, "out", bo, KT_F32, 2, 1);
  if (!o) return 1;
  s->begin = 0;
  s->end = 1;
  o->care[1] = 0;
  float *x = fbuf(p, bx), *y = fbuf(p, by);
  double d = 0, sc = 0;
  for (int64_t k = 0; k < n; k++) {
    x[k] = srng_f32(r, -1, 1);
    y[k] = srng_f32(r, -1, 1);
    d += (double)x[k] * y[k];
    sc += fabs((double)x[k] * y[k]);
  }
  o->expect[0] = d;
  o->scale[0] = sc;
  if (sfinish_outputs(p, r)) return 1;
  s->ptrs[sx] = x;
  s->ptrs[sy] = y;
  s->ptrs[so] = p->buf[bo];
  s->ints[sn] = n;
  s->tol = 1e-5;
  return 0;
}

/* C = A B over rows [begin, end), A strided through two int slots (column-major with
 * padding), in axpy order: C[m, :] = 0; for k: C[m, :] += A[m, k] * B[k, :]. */
static int build_matmul(KirSample *s, Arena *a, SRng *r) {
  KFunc *f = sstart(s, a, "matmul", "matmul", "row of C");
  if (!f) return 1;
  KModule *m = s->mod;
  SPriv *p = s->priv;
  enum { M = 7, K = 13, NN = 19 };
  const int64_t sam = 1, sak = M + 2; /* A[m, k] at m * sam + k * sak */
  const int64_t alen = (M - 1) * sam + (K - 1) * sak + 1;
  int sA = kir_slot(m, KSL_PTR, "A"), sB = kir_slot(m, KSL_PTR, "B"),
      sC = kir_slot(m, KSL_PTR, "C"), ssm = kir_slot(m, KSL_INT, "stride of A over m"),
      ssk = kir_slot(m, KSL_INT, "stride of A over k");
  int vm = kir_var(m, f, KT_I64, "m"), vk = kir_var(m, f, KT_I64, "k"),
      vn = kir_var(m, f, KT_I64, "n"), va = kir_var(m, f, KT_F32, "a");
  KStmt *rows = ks_for(m, vm, ke_arg(m, 2), ke_arg(m, 3), KF_PARALLEL);
  ADD(f->body, rows);
  KStmt *zero = ks_for(m, vn, I(0), I(NN), KF_VECTORIZE);
  ADD(rows, zero);
  ADD(zero, ks_store(m, KT_F32, P(sC), ke_add(m, ke_mul(m, V(vm), I(NN)), V(vn)), F(0)));
  KStmt *ks = ks_for(m, vk, I(0), I(K), 0);
  ADD(rows, ks);
  ADD(ks, ks_set(m, va, LD(KT_F32, P(sA),
                           ke_add(m, ke_mul(m, V(vm), N(ssm)), ke_mul(m, V(vk), N(ssk))))));
  KStmt *ns = ks_for(m, vn, I(0), I(NN), KF_VECTORIZE);
  ADD(ks, ns);
  ADD(ns, ks_store(m, KT_F32, P(sC), ke_add(m, ke_mul(m, V(vm), I(NN)), V(vn)),
                   B(KO_ADD, LD(KT_F32, P(sC), ke_add(m, ke_mul(m, V(vm), I(NN)), V(vn))),
                     B(KO_MUL, V(va),
                       LD(KT_F32, P(sB), ke_add(m, ke_mul(m, V(vk), I(NN)), V(vn)))))));
  int bA = sbuf(p, (size_t)alen * 4), bB = sbuf(p, (size_t)K * NN * 4),
      bC = sbuf(p, (size_t)M * NN * 4);
  if (bA < 0 || bB < 0 || bC < 0) return 1;
  SOut *o = sout(p, "C", bC, KT_F32, M * NN, 1);
  if (!o) return 1;
  s->begin = 1;
  s->end = M;
  float *A = fbuf(p, bA), *Bm = fbuf(p, bB);
  for (int64_t k = 0; k < alen; k++) A[k] = NAN; /* padding: never read */
  for (int64_t i = 0; i < M; i++)
    for (int64_t k = 0; k < K; k++) A[i * sam + k * sak] = srng_f32(r, -1, 1);
  for (int64_t k = 0; k < K * NN; k++) Bm[k] = srng_f32(r, -1, 1);
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < NN; j++) {
      double d = 0, sc = 0;
      for (int64_t k = 0; k < K; k++) {
        d += (double)A[i * sam + k * sak] * Bm[k * NN + j];
        sc += fabs((double)A[i * sam + k * sak] * Bm[k * NN + j]);
      }
      o->expect[i * NN + j] = d;
      o->scale[i * NN + j] = sc + 1e-30;
      o->care[i * NN + j] = i >= s->begin && i < s->end;
    }
  if (sfinish_outputs(p, r)) return 1;
  s->ptrs[sA] = A;
  s->ptrs[sB] = Bm;
  s->ptrs[sC] = p->buf[bC];
  s->ints[ssm] = sam;
  s->ints[ssk] = sak;
  s->tol = 2e-6;
  return 0;
}

/* The fp64 meaning of every f32 unary op (runtime/reference.c's formulas). */
static double ref_sigmoid(double x) {
  if (x >= 0) return 1 / (1 + exp(-x));
  double z = exp(x);
  return z / (1 + z);
}

static double ref_softplus(double x) { return (x > 0 ? x : 0) + log1p(exp(-fabs(x))); }

static double ref_unary(KOp op, double x) {
  switch (op) {
  case KO_NEG: return -x;
  case KO_EXP: return exp(x);
  case KO_LOG: return log(x);
  case KO_SQRT: return sqrt(x);
  case KO_RSQRT: return 1 / sqrt(x);
  case KO_ABS: return fabs(x);
  case KO_TANH: return tanh(x);
  case KO_SIGMOID: return ref_sigmoid(x);
  case KO_LOGSIGMOID: return -ref_softplus(-x);
  case KO_SOFTPLUS: return ref_softplus(x);
  case KO_SILU: return x * ref_sigmoid(x);
  case KO_RELU: return x < 0 ? 0 : x;
  case KO_ELU: return x > 0 ? x : expm1(x);
  default: return NAN;
  }
}

/* out[i] = op(x[i]) over [-30, 30] ((0, 30] for log, sqrt, rsqrt), a few small and
 * special inputs, and a NaN that must come out NaN. */
static int build_unary(KirSample *s, Arena *a, SRng *r, KOp op) {
  char *name = arena_printf(a, "unary_%s", kir_op_name(op));
  KFunc *f = name ? sstart(s, a, name, name, "element") : NULL;
  if (!f) return 1;
  KModule *m = s->mod;
  SPriv *p = s->priv;
  const int64_t n = 203;
  int sx = kir_slot(m, KSL_PTR, "x"), so = kir_slot(m, KSL_PTR, "out");
  int i = kir_var(m, f, KT_I64, "i");
  KStmt *loop = ks_for(m, i, ke_arg(m, 2), ke_arg(m, 3), KF_VECTORIZE | KF_PARALLEL);
  ADD(f->body, loop);
  ADD(loop, ks_store(m, KT_F32, P(so), V(i), U(op, LD(KT_F32, P(sx), V(i)))));
  int bx = sbuf(p, (size_t)n * 4), bo = sbuf(p, (size_t)n * 4);
  if (bx < 0 || bo < 0) return 1;
  SOut *o = sout(p, "out", bo, KT_F32, n, 0);
  if (!o) return 1;
  int positive = op == KO_LOG || op == KO_SQRT || op == KO_RSQRT;
  float *x = fbuf(p, bx);
  static const float special[] = {0.0f, 1e-4f, -1e-4f, 1e-7f, -1e-7f, 0.5f, -0.5f, 1.0f,
                                  -1.0f, 30.0f, -30.0f, 20.0f, -20.0f, 9.0f, -9.0f};
  static const float special_pos[] = {1.0f, 1e-3f, 1.0001f, 0.9999f, 30.0f, 2.0f, 4.0f};
  int64_t k = 0;
  if (positive)
    for (size_t j = 0; j < sizeof special_pos / sizeof *special_pos; j++) x[k++] = special_pos[j];
  else
    for (size_t j = 0; j < sizeof special / sizeof *special; j++) x[k++] = special[j];
  for (; k < n - 1; k++) x[k] = positive ? srng_f32(r, 1e-3, 30) : srng_f32(r, -30, 30);
  x[n - 1] = NAN;
  for (k = 0; k < n; k++) o->expect[k] = ref_unary(op, (double)x[k]);
  s->begin = 0;
  s->end = n;
  if (sfinish_outputs(p, r)) return 1;
  s->ptrs[sx] = x;
  s->ptrs[so] = p->buf[bo];
  s->tol = 2e-6;
  return 0;
}

/* min and max of f32 (NaN in either operand gives NaN) */
static int build_minmax(KirSample *s, Arena *a, SRng *r) {
  KFunc *f = sstart(s, a, "minmax", "minmax", "element");
  if (!f) return 1;
  KModule *m = s->mod;
  SPriv *p = s->priv;
  const int64_t n = 77;
  int sx = kir_slot(m, KSL_PTR, "x"), sy = kir_slot(m, KSL_PTR, "y"),
      smin = kir_slot(m, KSL_PTR, "min"), smax = kir_slot(m, KSL_PTR, "max");
  int i = kir_var(m, f, KT_I64, "i");
  KStmt *loop = ks_for(m, i, ke_arg(m, 2), ke_arg(m, 3), KF_VECTORIZE);
  ADD(f->body, loop);
  ADD(loop, ks_store(m, KT_F32, P(smin), V(i),
                     B(KO_MIN, LD(KT_F32, P(sx), V(i)), LD(KT_F32, P(sy), V(i)))));
  ADD(loop, ks_store(m, KT_F32, P(smax), V(i),
                     B(KO_MAX, LD(KT_F32, P(sx), V(i)), LD(KT_F32, P(sy), V(i)))));
  int bx = sbuf(p, (size_t)n * 4), by = sbuf(p, (size_t)n * 4), bmin = sbuf(p, (size_t)n * 4),
      bmax = sbuf(p, (size_t)n * 4);
  if (bx < 0 || by < 0 || bmin < 0 || bmax < 0) return 1;
  SOut *omin = sout(p, "min", bmin, KT_F32, n, 0), *omax = sout(p, "max", bmax, KT_F32, n, 0);
  if (!omin || !omax) return 1;
  float *x = fbuf(p, bx), *y = fbuf(p, by);
  for (int64_t k = 0; k < n; k++) {
    x[k] = srng_f32(r, -30, 30);
    y[k] = k % 9 == 4 ? x[k] : srng_f32(r, -30, 30);
    if (k % 7 == 3) x[k] = NAN;
    if (k % 11 == 5) y[k] = NAN;
    if (k == 10) x[k] = INFINITY;
    if (k == 12) y[k] = -INFINITY;
    double dx = x[k], dy = y[k];
    omin->expect[k] = isnan(dx) || isnan(dy) ? NAN : dx < dy ? dx : dy;
    omax->expect[k] = isnan(dx) || isnan(dy) ? NAN : dx > dy ? dx : dy;
    omin->care[k] = omax->care[k] = k >= 2;
  }
  omin->exact = omax->exact = 1;
  s->begin = 2;
  s->end = n;
  if (sfinish_outputs(p, r)) return 1;
  s->ptrs[sx] = x;
  s->ptrs[sy] = y;
  s->ptrs[smin] = p->buf[bmin];
  s->ptrs[smax] = p->buf[bmax];
  return 0;
}

static float f32_of_bits(uint32_t u) {
  float v;
  memcpy(&v, &u, 4);
  return v;
}

/* Loads and stores of bf16, f16, i32 and i64: f32 -> bf16 / f16 (round to nearest even,
 * ties, overflow, subnormals, NaN) and back, bf16 / f16 bit patterns -> f32, i32 + i64,
 * i64 -> i32 (truncating), i32 -> f32. */
static int build_convert(KirSample *s, Arena *a, SRng *r) {
  KFunc *f = sstart(s, a, "convert", "convert", "element");
  if (!f) return 1;
  KModule *m = s->mod;
  SPriv *p = s->priv;
  static const uint32_t special[] = {
      0x3F808000u, /* 1 + 2^-8: a bf16 tie, to even (1.0) */
      0x3F818000u, /* a bf16 tie, to even (up) */
      0xBF808000u, 0xBF818000u, 0x3F808001u, 0x3F807FFFu,
      0x7F7FFFFFu, /* FLT_MAX: bf16 inf, f16 inf */
      0x7F800000u, 0xFF800000u, 0x7FC00000u, 0xFFC12345u,
      0x7F800001u, /* signalling NaN: a quiet NaN in bf16 */
      0x80000000u, 0x00000001u, 0x00800000u,
      0x3F801000u, /* 1 + 2^-11: an f16 tie, to even (1.0) */
      0x3F803000u, /* 1 + 3 * 2^-11: an f16 tie, to even (up) */
      0x477FF000u, /* 65520: f16 inf */
      0x477FEF00u, /* just below 65520: 65504 */
      0x33800000u, /* 2^-24: the smallest f16 subnormal */
      0x33000000u, /* 2^-25: a tie between 0 and 2^-24, to 0 */
      0x33C00000u, /* 3 * 2^-25: a tie, to 2 * 2^-24 */
      0x38800000u, /* 2^-14: the smallest normal f16 */
      0x387FC000u, /* just below it: a subnormal */
      0xC2F6E979u, 0x4B000001u,
  };
  const int64_t nspec = (int64_t)(sizeof special / sizeof *special);
  const int64_t n = 131;
  int ssrc = kir_slot(m, KSL_PTR, "src f32"), sobf = kir_slot(m, KSL_PTR, "out bf16"),
      srbf = kir_slot(m, KSL_PTR, "bf16 round trip"), soh = kir_slot(m, KSL_PTR, "out f16"),
      srh = kir_slot(m, KSL_PTR, "f16 round trip"), sibf = kir_slot(m, KSL_PTR, "in bf16"),
      sfbf = kir_slot(m, KSL_PTR, "bf16 as f32"), sih = kir_slot(m, KSL_PTR, "in f16"),
      sfh = kir_slot(m, KSL_PTR, "f16 as f32"), si32 = kir_slot(m, KSL_PTR, "in i32"),
      si64 = kir_slot(m, KSL_PTR, "in i64"), so64 = kir_slot(m, KSL_PTR, "i32 + i64"),
      so32 = kir_slot(m, KSL_PTR, "i64 as i32"), soif = kir_slot(m, KSL_PTR, "i32 as f32");
  int i = kir_var(m, f, KT_I64, "i");
  KStmt *loop = ks_for(m, i, ke_arg(m, 2), ke_arg(m, 3), KF_VECTORIZE);
  ADD(f->body, loop);
  ADD(loop, ks_store(m, KT_BF16, P(sobf), V(i), LD(KT_F32, P(ssrc), V(i))));
  ADD(loop, ks_store(m, KT_F32, P(srbf), V(i), LD(KT_BF16, P(sobf), V(i))));
  ADD(loop, ks_store(m, KT_F16, P(soh), V(i), LD(KT_F32, P(ssrc), V(i))));
  ADD(loop, ks_store(m, KT_F32, P(srh), V(i), LD(KT_F16, P(soh), V(i))));
  ADD(loop, ks_store(m, KT_F32, P(sfbf), V(i), LD(KT_BF16, P(sibf), V(i))));
  ADD(loop, ks_store(m, KT_F32, P(sfh), V(i), LD(KT_F16, P(sih), V(i))));
  ADD(loop, ks_store(m, KT_I64, P(so64), V(i),
                     B(KO_ADD, LD(KT_I32, P(si32), V(i)), LD(KT_I64, P(si64), V(i)))));
  ADD(loop, ks_store(m, KT_I32, P(so32), V(i), LD(KT_I64, P(si64), V(i))));
  ADD(loop, ks_store(m, KT_F32, P(soif), V(i), U(KO_I2F, LD(KT_I32, P(si32), V(i)))));
  int bsrc = sbuf(p, (size_t)n * 4), bobf = sbuf(p, (size_t)n * 2), brbf = sbuf(p, (size_t)n * 4),
      boh = sbuf(p, (size_t)n * 2), brh = sbuf(p, (size_t)n * 4), bibf = sbuf(p, (size_t)n * 2),
      bfbf = sbuf(p, (size_t)n * 4), bih = sbuf(p, (size_t)n * 2), bfh = sbuf(p, (size_t)n * 4),
      bi32 = sbuf(p, (size_t)n * 4), bi64 = sbuf(p, (size_t)n * 8), bo64 = sbuf(p, (size_t)n * 8),
      bo32 = sbuf(p, (size_t)n * 4), boif = sbuf(p, (size_t)n * 4);
  if (bsrc < 0 || bobf < 0 || brbf < 0 || boh < 0 || brh < 0 || bibf < 0 || bfbf < 0 ||
      bih < 0 || bfh < 0 || bi32 < 0 || bi64 < 0 || bo64 < 0 || bo32 < 0 || boif < 0)
    return 1;
  SOut *oobf = sout(p, "out bf16", bobf, KT_BF16, n, 0),
       *orbf = sout(p, "bf16 round trip", brbf, KT_F32, n, 0),
       *ooh = sout(p, "out f16", boh, KT_F16, n, 0),
       *orh = sout(p, "f16 round trip", brh, KT_F32, n, 0),
       *ofbf = sout(p, "bf16 as f32", bfbf, KT_F32, n, 0),
       *ofh = sout(p, "f16 as f32", bfh, KT_F32, n, 0),
       *oo64 = sout(p, "i32 + i64", bo64, KT_I64, n, 0),
       *oo32 = sout(p, "i64 as i32", bo32, KT_I32, n, 0),
       *ooif = sout(p, "i32 as f32", boif, KT_F32, n, 0);
  if (!oobf || !orbf || !ooh || !orh || !ofbf || !ofh || !oo64 || !oo32 || !ooif) return 1;
  float *src = fbuf(p, bsrc);
  uint16_t *ibf = p->buf[bibf], *ih = p->buf[bih];
  int32_t *i32 = p->buf[bi32];
  int64_t *i64 = p->buf[bi64];
  s->begin = 1;
  s->end = n - 2;
  for (int64_t k = 0; k < n; k++) {
    int64_t sp = k - 3; /* specials start at 3, inside [begin, end) */
    if (sp >= 0 && sp < nspec) src[k] = f32_of_bits(special[sp]);
    else if (k % 3 == 0) src[k] = srng_f32(r, -70000, 70000);
    else if (k % 3 == 1) src[k] = srng_f32(r, -1e-4, 1e-4);
    else src[k] = srng_f32(r, -10, 10);
    ibf[k] = (uint16_t)srng_next(r);
    ih[k] = (uint16_t)srng_next(r);
    if (k == 40) ibf[k] = 0x7F81; /* signalling NaN patterns */
    if (k == 41) ih[k] = 0x7C01;
    if (k == 42) ih[k] = 0x0001;
    i32[k] = (int32_t)(uint32_t)srng_next(r);
    i64[k] = (int64_t)(srng_next(r) & ((UINT64_C(1) << 42) - 1)) - (INT64_C(1) << 41);
    uint16_t bf = mixc_f32_to_bf16(src[k]), h = mixc_f32_to_f16(src[k]);
    oobf->expect[k] = bf;
    orbf->expect[k] = mixc_bf16_to_f32(bf);
    ooh->expect[k] = h;
    orh->expect[k] = mixc_f16_to_f32(h);
    ofbf->expect[k] = mixc_bf16_to_f32(ibf[k]);
    ofh->expect[k] = mixc_f16_to_f32(ih[k]);
    oo64->expect[k] = (double)((int64_t)i32[k] + i64[k]);
    oo32->expect[k] = (double)(int32_t)(uint32_t)(uint64_t)i64[k];
    ooif->expect[k] = (double)(float)i32[k];
    int care = k >= s->begin && k < s->end;
    oobf->care[k] = orbf->care[k] = ooh->care[k] = orh->care[k] = ofbf->care[k] =
        ofh->care[k] = oo64->care[k] = oo32->care[k] = ooif->care[k] = (unsigned char)care;
  }
  orbf->exact = orh->exact = ofbf->exact = ofh->exact = ooif->exact = 1;
  if (sfinish_outputs(p, r)) return 1;
  s->ptrs[ssrc] = src;
  s->ptrs[sobf] = p->buf[bobf];
  s->ptrs[srbf] = p->buf[brbf];
  s->ptrs[soh] = p->buf[boh];
  s->ptrs[srh] = p->buf[brh];
  s->ptrs[sibf] = ibf;
  s->ptrs[sfbf] = p->buf[bfbf];
  s->ptrs[sih] = ih;
  s->ptrs[sfh] = p->buf[bfh];
  s->ptrs[si32] = i32;
  s->ptrs[si64] = i64;
  s->ptrs[so64] = p->buf[bo64];
  s->ptrs[so32] = p->buf[bo32];
  s->ptrs[soif] = p->buf[boif];
  return 0;
}

/* if / else (nested, and without else), select (also guarding a load that would be out
 * of bounds), rem, div, i64 min / max / neg, comparisons of f32 (NaN included) and of i64,
 * and / or, a loop that runs zero times. */
static int build_control(KirSample *s, Arena *a, SRng *r) {
  KFunc *f = sstart(s, a, "control", "control", "element");
  if (!f) return 1;
  KModule *m = s->mod;
  SPriv *p = s->priv;
  const int64_t n = 50;
  int siv = kir_slot(m, KSL_PTR, "iv"), sx = kir_slot(m, KSL_PTR, "x"),
      sy = kir_slot(m, KSL_PTR, "y"), soi = kir_slot(m, KSL_PTR, "oi"),
      soc = kir_slot(m, KSL_PTR, "oc"), sof = kir_slot(m, KSL_PTR, "of"),
      sog = kir_slot(m, KSL_PTR, "og"), sn = kir_slot(m, KSL_INT, "n");
  int i = kir_var(m, f, KT_I64, "i"), v = kir_var(m, f, KT_I64, "v"),
      rr = kir_var(m, f, KT_I64, "r"), q = kir_var(m, f, KT_I64, "q"),
      j = kir_var(m, f, KT_I64, "j"), idx = kir_var(m, f, KT_I64, "idx"),
      fx = kir_var(m, f, KT_F32, "x"), fy = kir_var(m, f, KT_F32, "y");
  KStmt *loop = ks_for(m, i, ke_arg(m, 2), ke_arg(m, 3), 0);
  ADD(f->body, loop);
  ADD(loop, ks_set(m, v, LD(KT_I64, P(siv), V(i))));
  ADD(loop, ks_set(m, rr, B(KO_REM, V(v), I(7))));
  ADD(loop, ks_set(m, q, B(KO_DIV, V(v), I(7))));
  KStmt *if1 = ks_if(m, B(KO_AND, B(KO_LT, V(rr), I(3)), B(KO_NE, V(v), I(0))));
  ADD(loop, if1);
  ADD(if1, ks_store(m, KT_I64, P(soi), V(i), B(KO_ADD, B(KO_MUL, V(rr), I(2)), V(q))));
  KStmt *if2 = ks_if(m, B(KO_OR, B(KO_EQ, V(rr), I(5)), B(KO_LE, V(rr), I(3))));
  ks_add_else(m, if1, if2);
  ADD(if2, ks_store(m, KT_I64, P(soi), V(i),
                    U(KO_NEG, B(KO_SUB, V(v), B(KO_MAX, V(rr), V(q))))));
  ks_add_else(m, if2, ks_store(m, KT_I64, P(soi), V(i), B(KO_MIN, V(v), I(42))));
  /* a loop that runs zero times */
  KStmt *never = ks_for(m, j, I(5), I(2), 0);
  ADD(loop, never);
  ADD(never, ks_store(m, KT_I64, P(soi), V(i), I(12345)));
  /* an if without else that is sometimes taken: overrides oi for multiples of 10 */
  KStmt *if3 = ks_if(m, B(KO_EQ, B(KO_REM, V(v), I(10)), I(0)));
  ADD(loop, if3);
  ADD(if3, ks_store(m, KT_I64, P(soi), V(i), I(-1)));
  /* comparisons of f32, packed in bits */
  ADD(loop, ks_set(m, fx, LD(KT_F32, P(sx), V(i))));
  ADD(loop, ks_set(m, fy, LD(KT_F32, P(sy), V(i))));
  ADD(loop, ks_store(m, KT_I64, P(soc), V(i),
                     B(KO_ADD,
                       B(KO_ADD, B(KO_LT, V(fx), V(fy)), B(KO_MUL, B(KO_LE, V(fx), V(fy)), I(2))),
                       B(KO_ADD, B(KO_MUL, B(KO_EQ, V(fx), V(fy)), I(4)),
                         B(KO_MUL, B(KO_NE, V(fx), V(fy)), I(8))))));
  /* a select of f32 values, plus an i64 -> f32 conversion */
  ADD(loop, ks_store(m, KT_F32, P(sof), V(i),
                     B(KO_ADD,
                       ke_select(m, B(KO_LT, V(fx), V(fy)), B(KO_SUB, V(fx), V(fy)),
                                 B(KO_MUL, V(fy), F(2))),
                       U(KO_I2F, V(rr)))));
  /* selects that guard loads: og[4 i + j] = 0 <= idx < n ? x[idx] : -1, idx = i + j - 2 */
  KStmt *js = ks_for(m, j, I(0), I(4), 0);
  ADD(loop, js);
  ADD(js, ks_set(m, idx, B(KO_SUB, B(KO_ADD, V(i), V(j)), I(2))));
  ADD(js, ks_store(m, KT_F32, P(sog), B(KO_ADD, B(KO_MUL, V(i), I(4)), V(j)),
                   ke_select(m, B(KO_AND, B(KO_LE, I(0), V(idx)), B(KO_LT, V(idx), N(sn))),
                             LD(KT_F32, P(sx), V(idx)), F(-1))));
  int biv = sbuf(p, (size_t)n * 8), bx = sbuf(p, (size_t)n * 4), by = sbuf(p, (size_t)n * 4),
      boi = sbuf(p, (size_t)n * 8), boc = sbuf(p, (size_t)n * 8), bof = sbuf(p, (size_t)n * 4),
      bog = sbuf(p, (size_t)n * 4 * 4);
  if (biv < 0 || bx < 0 || by < 0 || boi < 0 || boc < 0 || bof < 0 || bog < 0) return 1;
  SOut *ooi = sout(p, "oi", boi, KT_I64, n, 0), *ooc = sout(p, "oc", boc, KT_I64, n, 0),
       *oof = sout(p, "of", bof, KT_F32, n, 0), *oog = sout(p, "og", bog, KT_F32, 4 * n, 0);
  if (!ooi || !ooc || !oof || !oog) return 1;
  s->begin = 2;
  s->end = n - 3;
  int64_t *iv = p->buf[biv];
  float *x = fbuf(p, bx), *y = fbuf(p, by);
  for (int64_t k = 0; k < n; k++) {
    iv[k] = k == 5 ? 0 : (int64_t)(srng_next(r) % 100);
    x[k] = srng_f32(r, -5, 5);
    y[k] = k % 5 == 1 ? x[k] : srng_f32(r, -5, 5);
    if (k == 7) x[k] = NAN;
    if (k == 8) y[k] = NAN;
  }
  for (int64_t k = 0; k < n; k++) {
    int64_t vv = iv[k], r7 = vv % 7, q7 = vv / 7, o;
    if (r7 < 3 && vv != 0) o = r7 * 2 + q7;
    else if (r7 == 5 || r7 <= 3) o = -(vv - (r7 > q7 ? r7 : q7));
    else o = vv < 42 ? vv : 42;
    if (vv % 10 == 0) o = -1;
    ooi->expect[k] = (double)o;
    float xf = x[k], yf = y[k];
    ooc->expect[k] = (xf < yf) + 2 * (xf <= yf) + 4 * (xf == yf) + 8 * (xf != yf);
    double sel = xf < yf ? (double)(xf - yf) : (double)(yf * 2.0f);
    oof->expect[k] = sel + (double)r7;
    for (int64_t jj = 0; jj < 4; jj++) {
      int64_t id = k + jj - 2;
      oog->expect[4 * k + jj] = id >= 0 && id < n ? (double)x[id] : -1.0;
      oog->care[4 * k + jj] = k >= s->begin && k < s->end;
    }
    ooi->care[k] = ooc->care[k] = oof->care[k] = k >= s->begin && k < s->end;
  }
  oog->exact = 1;
  s->tol = 1e-6;
  if (sfinish_outputs(p, r)) return 1;
  s->ptrs[siv] = iv;
  s->ptrs[sx] = x;
  s->ptrs[sy] = y;
  s->ptrs[soi] = p->buf[boi];
  s->ptrs[soc] = p->buf[boc];
  s->ptrs[sof] = p->buf[bof];
  s->ptrs[sog] = p->buf[bog];
  s->ints[sn] = n;
  return 0;
}

/* Sub-buffers through ptradd (byte offsets), a pointer variable, a negative offset:
 * dst[od + i] = src[os + i] * 3 + 1 for i in [begin, end); the rest of dst keeps its
 * values. */
static int build_ptradd(KirSample *s, Arena *a, SRng *r) {
  KFunc *f = sstart(s, a, "ptradd", "ptradd", "element of the sub-buffer");
  if (!f) return 1;
  KModule *m = s->mod;
  SPriv *p = s->priv;
  const int64_t n = 64, os = 5, od = 9, cnt = 40;
  int ssrc = kir_slot(m, KSL_PTR, "src"), sdst = kir_slot(m, KSL_PTR, "dst"),
      sos = kir_slot(m, KSL_INT, "offset of src"), sod = kir_slot(m, KSL_INT, "offset of dst");
  int i = kir_var(m, f, KT_I64, "i"), pb = kir_var(m, f, KT_PTR, "sub");
  ADD(f->body, ks_set(m, pb, ke_ptradd(m, P(ssrc), B(KO_MUL, N(sos), I(4)))));
  KStmt *loop = ks_for(m, i, ke_arg(m, 2), ke_arg(m, 3), KF_VECTORIZE);
  ADD(f->body, loop);
  /* ptradd(sub, -4)[i + 1] is sub[i] */
  ADD(loop, ks_store(m, KT_F32, ke_ptradd(m, P(sdst), B(KO_MUL, N(sod), I(4))), V(i),
                     B(KO_ADD,
                       B(KO_MUL, LD(KT_F32, ke_ptradd(m, V(pb), I(-4)), B(KO_ADD, V(i), I(1))),
                         F(3)),
                       F(1))));
  int bs = sbuf(p, (size_t)n * 4), bd = sbuf(p, (size_t)n * 4);
  if (bs < 0 || bd < 0) return 1;
  SOut *o = sout(p, "dst", bd, KT_F32, n, 0);
  if (!o) return 1;
  s->begin = 0;
  s->end = cnt;
  float *src = fbuf(p, bs);
  for (int64_t k = 0; k < n; k++) src[k] = srng_f32(r, -10, 10);
  for (int64_t k = 0; k < n; k++) {
    int64_t e = k - od;
    o->care[k] = e >= 0 && e < cnt;
    o->expect[k] = o->care[k] ? (double)(src[os + e] * 3.0f + 1.0f) : 0;
  }
  s->tol = 1e-6;
  if (sfinish_outputs(p, r)) return 1;
  s->ptrs[ssrc] = src;
  s->ptrs[sdst] = p->buf[bd];
  s->ints[sos] = os;
  s->ints[sod] = od;
  return 0;
}

/* Scratch: per item, sc[j] = x[item, j] * (j + 1), then
 * out[item, j] = sc[S - 1 - j] - 2 * ptradd(scratch, 8)[j - 2]  (= sc[j]). */
static int build_scratch(KirSample *s, Arena *a, SRng *r) {
  KFunc *f = sstart(s, a, "scratch", "scratch", "row");
  if (!f) return 1;
  KModule *m = s->mod;
  SPriv *p = s->priv;
  enum { S = 32, ROWS = 8 };
  int sx = kir_slot(m, KSL_PTR, "x"), so = kir_slot(m, KSL_PTR, "out");
  int it = kir_var(m, f, KT_I64, "row"), j = kir_var(m, f, KT_I64, "j");
  f->scratch_floats = S;
  KStmt *rows = ks_for(m, it, ke_arg(m, 2), ke_arg(m, 3), KF_PARALLEL);
  ADD(f->body, rows);
  KStmt *l1 = ks_for(m, j, I(0), I(S), KF_VECTORIZE);
  ADD(rows, l1);
  ADD(l1, ks_store(m, KT_F32, ke_arg(m, 4), V(j),
                   B(KO_MUL, LD(KT_F32, P(sx), ke_add(m, ke_mul(m, V(it), I(S)), V(j))),
                     U(KO_I2F, B(KO_ADD, V(j), I(1))))));
  KStmt *l2 = ks_for(m, j, I(0), I(S), KF_VECTORIZE);
  ADD(rows, l2);
  ADD(l2, ks_store(m, KT_F32, P(so), ke_add(m, ke_mul(m, V(it), I(S)), V(j)),
                   B(KO_SUB, LD(KT_F32, ke_arg(m, 4), B(KO_SUB, I(S - 1), V(j))),
                     B(KO_MUL, F(2),
                       LD(KT_F32, ke_ptradd(m, ke_arg(m, 4), I(8)), B(KO_SUB, V(j), I(2)))))));
  int bx = sbuf(p, (size_t)S * ROWS * 4), bo = sbuf(p, (size_t)S * ROWS * 4);
  if (bx < 0 || bo < 0) return 1;
  SOut *o = sout(p, "out", bo, KT_F32, S * ROWS, 0);
  if (!o) return 1;
  s->begin = 1;
  s->end = ROWS - 1;
  s->scratch_floats = S;
  float *x = fbuf(p, bx);
  for (int64_t k = 0; k < S * ROWS; k++) x[k] = srng_f32(r, -4, 4);
  for (int64_t row = 0; row < ROWS; row++)
    for (int64_t jj = 0; jj < S; jj++) {
      float sc_hi = x[row * S + (S - 1 - jj)] * (float)(S - jj);
      float sc_j = x[row * S + jj] * (float)(jj + 1);
      o->expect[row * S + jj] = (double)sc_hi - 2.0 * sc_j;
      o->care[row * S + jj] = row >= s->begin && row < s->end;
    }
  s->tol = 1e-6;
  if (sfinish_outputs(p, r)) return 1;
  s->ptrs[sx] = x;
  s->ptrs[so] = p->buf[bo];
  return 0;
}

/* KS_MATMUL: per item b in [begin, end), C_b (+)= A_b B_b, where A_b = A + b * M * lda
 * (likewise B_b, C_b): f32, row-major with leading dimensions lda >= K, ldb >= N,
 * ldc >= N. The padding columns of A and B hold NaN (a kernel must not use them), those of
 * C and the items outside [begin, end) random values it must keep. Sizes and leading
 * dimensions are constants, or (runtime) read from int slots. */
typedef struct MMShape {
  const char *name;
  int64_t M, N, K, padA, padB, padC;
  int accumulate, runtime;
  int64_t items, begin, end;
} MMShape;

static int build_mm(KirSample *s, Arena *a, SRng *r, const MMShape *sh) {
  KFunc *f = sstart(s, a, sh->name, sh->name, "one matrix product");
  if (!f) return 1;
  s->needs_matmul = 1;
  KModule *m = s->mod;
  SPriv *p = s->priv;
  const int64_t M = sh->M, N = sh->N, K = sh->K, lda = K + sh->padA, ldb = N + sh->padB,
                ldc = N + sh->padC, nb = sh->items;
  /* every item's matrix is rows * ld long; the last one ends right after its last element */
  const int64_t sa = M * lda, sb = K * ldb, sc = M * ldc;
  const int64_t alen = (M && K) ? (nb - 1) * sa + (M - 1) * lda + K : 0,
                blen = (K && N) ? (nb - 1) * sb + (K - 1) * ldb + N : 0,
                clen = (M && N) ? (nb - 1) * sc + (M - 1) * ldc + N : 0;
  int sA = kir_slot(m, KSL_PTR, "A"), sB = kir_slot(m, KSL_PTR, "B"),
      sC = kir_slot(m, KSL_PTR, "C");
  KExpr *dims[6];
  const int64_t vals[6] = {M, N, K, lda, ldb, ldc};
  static const char *const what[6] = {"M", "N", "K", "lda", "ldb", "ldc"};
  int slot[6] = {-1, -1, -1, -1, -1, -1};
  for (int d = 0; d < 6; d++) {
    if (sh->runtime) {
      slot[d] = kir_slot(m, KSL_INT, what[d]);
      dims[d] = N(slot[d]);
    } else
      dims[d] = I(vals[d]);
  }
  int it = kir_var(m, f, KT_I64, "item");
  KStmt *items = ks_for(m, it, ke_arg(m, 2), ke_arg(m, 3), KF_PARALLEL);
  ADD(f->body, items);
  /* A + item * M * lda * 4 bytes, etc. */
  KExpr *pa = ke_ptradd(m, P(sA), B(KO_MUL, V(it), B(KO_MUL, B(KO_MUL, dims[0], dims[3]), I(4))));
  KExpr *pb = ke_ptradd(m, P(sB), B(KO_MUL, V(it), B(KO_MUL, B(KO_MUL, dims[2], dims[4]), I(4))));
  KExpr *pc = ke_ptradd(m, P(sC), B(KO_MUL, V(it), B(KO_MUL, B(KO_MUL, dims[0], dims[5]), I(4))));
  ADD(items, ks_matmul(m, dims[0], dims[1], dims[2], pa, dims[3], pb, dims[4], pc, dims[5],
                       sh->accumulate));
  int bA = sbuf(p, (size_t)alen * 4), bB = sbuf(p, (size_t)blen * 4),
      bC = sbuf(p, (size_t)clen * 4);
  if (bA < 0 || bB < 0 || bC < 0) return 1;
  SOut *o = sout(p, "C", bC, KT_F32, clen, 1);
  if (!o) return 1;
  float *A = fbuf(p, bA), *Bm = fbuf(p, bB), *C = fbuf(p, bC);
  for (int64_t k = 0; k < alen; k++)
    A[k] = k % lda < K ? srng_f32(r, -1, 1) : NAN;
  for (int64_t k = 0; k < blen; k++)
    Bm[k] = k % ldb < N ? srng_f32(r, -1, 1) : NAN;
  s->begin = sh->begin;
  s->end = sh->end;
  for (int64_t k = 0; k < clen; k++) {
    int64_t b = k / sc, col = k % sc % ldc;
    o->care[k] = col < N && b >= s->begin && b < s->end;
  }
  if (sfinish_outputs(p, r)) return 1;
  if (sh->accumulate) { /* C is read: random starting values where it is written */
    for (int64_t k = 0; k < clen; k++)
      if (o->care[k]) C[k] = srng_f32(r, -2, 2);
    memcpy(p->init[bC], C, (size_t)clen * 4);
  }
  for (int64_t k = 0; k < clen; k++) {
    if (!o->care[k]) continue;
    int64_t b = k / sc, i = k % sc / ldc, j = k % sc % ldc;
    double d = sh->accumulate ? (double)C[k] : 0, scl = fabs(d);
    for (int64_t q = 0; q < K; q++) {
      double t = (double)A[b * sa + i * lda + q] * Bm[b * sb + q * ldb + j];
      d += t;
      scl += fabs(t);
    }
    o->expect[k] = d;
    o->scale[k] = scl + 1e-30;
  }
  s->ptrs[sA] = A;
  s->ptrs[sB] = Bm;
  s->ptrs[sC] = C;
  for (int d = 0; d < 6; d++)
    if (slot[d] >= 0) s->ints[slot[d]] = vals[d];
  s->tol = 1e-5;
  return 0;
}

/* name, M, N, K, padding of A, B, C, accumulate, runtime sizes, items, begin, end */
static const MMShape mm_shapes[] = {
    {"mm_1x1x1", 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1},
    {"mm_1x1x1_acc_rt", 1, 1, 1, 2, 0, 3, 1, 1, 2, 0, 2},
    {"mm_7x19x13_pad_acc", 7, 19, 13, 3, 5, 2, 1, 0, 1, 0, 1},
    {"mm_64x64x64", 64, 64, 64, 0, 0, 0, 0, 0, 2, 0, 2},
    {"mm_64x128x128_acc_rt", 64, 128, 128, 0, 0, 0, 1, 1, 1, 0, 1},
    {"mm_37x53x29_pad_rt", 37, 53, 29, 1, 7, 16, 0, 1, 3, 1, 3},
    {"mm_23x3x17", 23, 3, 17, 0, 0, 0, 0, 0, 2, 1, 2},
    {"mm_70x33x8_pad_acc", 70, 33, 8, 5, 31, 1, 1, 0, 1, 0, 1},
    {"mm_15x97x40_rt", 15, 97, 40, 0, 0, 0, 0, 1, 1, 0, 1},
    {"mm_13x40x300_acc", 13, 40, 300, 4, 0, 0, 1, 0, 1, 0, 1},
    {"mm_13x40x300_rt", 13, 40, 300, 0, 9, 0, 0, 1, 2, 0, 2},
    {"mm_9x70x600_pad", 9, 70, 600, 3, 1, 5, 0, 0, 1, 0, 1},
    {"mm_5x20x0", 5, 20, 0, 0, 0, 0, 0, 0, 1, 0, 1},
    {"mm_5x20x0_acc_rt", 5, 20, 0, 0, 4, 0, 1, 1, 1, 0, 1},
    {"mm_6x16x0_rt", 6, 16, 0, 0, 0, 1, 0, 1, 1, 0, 1},
};

/* ---- the set ---- */

static void free_one(KirSample *s) {
  SPriv *p = s->priv;
  if (!p) return;
  for (int i = 0; i < p->nbuf; i++) {
    free(p->buf[i]);
    free(p->init[i]);
  }
  for (int k = 0; k < p->nout; k++) {
    free(p->out[k].expect);
    free(p->out[k].scale);
    free(p->out[k].care);
  }
  free(p);
  s->priv = NULL;
}

void kir_samples_free(KirSample *s, int n) {
  if (!s) return;
  for (int i = 0; i < n; i++) free_one(&s[i]);
  free(s);
}

int kir_samples_build(Arena *a, uint64_t seed, KirSample **out, int *n) {
  static const KOp unary[] = {KO_EXP,      KO_LOG,        KO_SQRT,     KO_RSQRT, KO_ABS,
                              KO_TANH,     KO_SIGMOID,    KO_LOGSIGMOID, KO_SOFTPLUS,
                              KO_SILU,     KO_RELU,       KO_ELU,      KO_NEG};
  enum { NUNARY = sizeof unary / sizeof *unary, FIXED = 8,
         NMM = sizeof mm_shapes / sizeof *mm_shapes };
  const int total = FIXED + NUNARY + NMM;
  *out = NULL;
  *n = 0;
  KirSample *s = calloc((size_t)total, sizeof *s);
  if (!s) return 1;
  SRng r = {seed};
  int k = 0, rc = 0;
  rc = rc || build_saxpy(&s[k++], a, &r);
  rc = rc || build_dot(&s[k++], a, &r);
  rc = rc || build_matmul(&s[k++], a, &r);
  for (int u = 0; u < NUNARY && !rc; u++) rc = build_unary(&s[k++], a, &r, unary[u]);
  rc = rc || build_minmax(&s[k++], a, &r);
  rc = rc || build_convert(&s[k++], a, &r);
  rc = rc || build_control(&s[k++], a, &r);
  rc = rc || build_ptradd(&s[k++], a, &r);
  rc = rc || build_scratch(&s[k++], a, &r);
  for (int q = 0; q < NMM && !rc; q++) rc = build_mm(&s[k++], a, &r, &mm_shapes[q]);
  if (rc || a->failed) {
    kir_samples_free(s, total);
    return 1;
  }
  *out = s;
  *n = k;
  return 0;
}

#undef V
#undef I
#undef F
#undef P
#undef N
#undef LD
#undef B
#undef U
#undef ADD
