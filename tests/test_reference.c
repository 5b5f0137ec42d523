/* test_reference: holds the fp64 reference interpreter (runtime/reference.c) against
 * hand-written recurrences.
 *
 * Each family of LANGUAGE.md section 8 is compiled from its source text (embedded here, so
 * the test does not depend on examples/), run through mixc_ref_run on fresh random inputs
 * with a random initial state, and compared with a plain C loop written from the published
 * recurrence, not from the interpreter. Both are fp64, so the tolerance is 1e-12, relative
 * to the largest reference value of each array; NaN never passes.
 *
 * Further cases: a variable-length batch equals running each sequence alone; T tokens at
 * once equal T1 then T - T1 tokens with the state carried; 2-D scans over (Y, X) in several
 * direction sets; for loops with lets, nested sums, every built-in; and the binding errors.
 *
 *   test_reference [seed]      (the seed defaults to the time; it is printed) */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../compiler/compile.h"
#include "../runtime/reference.h"

enum { MAXSYMS = 64 };
static const double TOL = 1e-12;

/* ---- sources ---- */

static const char SRC_LINEAR_ATTN[] =
    "mixer linear_attn {\n"
    "  dim K, V\n"
    "  input q[K], k[K], v[V]\n"
    "  state S[K, V]\n"
    "  S[i, j] = S[i, j] + k[i] * v[j]\n"
    "  output o[j] = sum(i, q[i] * S[i, j])\n"
    "}\n";

static const char SRC_RETNET[] =
    "mixer retnet {                       # constant per-head decay\n"
    "  dim K, V\n"
    "  input q[K], k[K], v[V]\n"
    "  param gamma                        # log decay, < 0\n"
    "  state S[K, V]\n"
    "  S[i, j] = exp(gamma) * S[i, j] + k[i] * v[j]\n"
    "  output o[j] = sum(i, q[i] * S[i, j])\n"
    "}\n";

static const char SRC_MAMBA2[] =
    "mixer mamba2 {                       # SSD: scalar data-dependent decay\n"
    "  dim N, P\n"
    "  input x[P], B[N], C[N], dt\n"
    "  param A_log, dt_bias, D\n"
    "  state h[N, P]\n"
    "  let delta = softplus(dt + dt_bias)\n"
    "  h[n, p] = exp(-exp(A_log) * delta) * h[n, p] + delta * B[n] * x[p]\n"
    "  output y[p] = sum(n, C[n] * h[n, p]) + D * x[p]\n"
    "}\n";

static const char SRC_DELTA[] =
    "mixer delta {                        # DeltaNet\n"
    "  dim K, V\n"
    "  input q[K], k[K], v[V], beta\n"
    "  state S[K, V]\n"
    "  let err[j] = v[j] - sum(m, k[m] * S[m, j])\n"
    "  S[i, j] = S[i, j] + beta * k[i] * err[j]\n"
    "  output o[j] = sum(i, q[i] * S[i, j])\n"
    "}\n";

static const char SRC_GATED_DELTA[] =
    "mixer gated_delta {                  # Gated DeltaNet\n"
    "  dim K, V\n"
    "  input q[K], k[K], v[V], g, beta\n"
    "  state S[K, V]\n"
    "  S[i, j] = exp(g) * S[i, j]\n"
    "  S[i, j] = S[i, j] + beta * k[i] * (v[j] - sum(m, k[m] * S[m, j]))\n"
    "  output o[j] = sum(i, q[i] * S[i, j])\n"
    "}\n";

static const char SRC_GLA[] =
    "# Gated linear attention: a per-key-channel, data-dependent forget gate.\n"
    "mixer gla {\n"
    "  dim K, V\n"
    "  input q[K], k[K], v[V], g[K]       # g: log forget gate, g <= 0\n"
    "  param scale = rsqrt(K)\n"
    "  state S[K, V]\n"
    "  S[i, j] = exp(g[i]) * S[i, j] + k[i] * v[j]\n"
    "  output o[j] = scale * sum(i, q[i] * S[i, j])\n"
    "}\n";

static const char SRC_RWKV6[] =
    "mixer rwkv6 {                        # vector decay, bonus read before the update\n"
    "  dim K, V\n"
    "  input r[K], k[K], v[V], w[K]\n"
    "  param u[K]\n"
    "  state S[K, V]\n"
    "  output o[j] = sum(i, r[i] * (S[i, j] + u[i] * k[i] * v[j]))\n"
    "  S[i, j] = exp(w[i]) * S[i, j] + k[i] * v[j]\n"
    "}\n";

static const char SRC_DELTA_PRODUCT[] =
    "mixer delta_product {                # DeltaProduct: NH Householder steps per token\n"
    "  dim K, V, NH = 2\n"
    "  input q[K], k[NH, K], v[NH, V], beta[NH], g\n"
    "  state S[K, V]\n"
    "  S[i, j] = exp(g) * S[i, j]\n"
    "  for h in NH {\n"
    "    S[i, j] = S[i, j] + beta[h] * k[h, i] * (v[h, j] - sum(m, k[h, m] * S[m, j]))\n"
    "  }\n"
    "  output o[j] = sum(i, q[i] * S[i, j])\n"
    "}\n";

static const char SRC_MAMBA1[] =
    "mixer mamba1 {                       # selective scan: element-wise decay\n"
    "  dim N, P\n"
    "  input x[P], B[N], C[N], dt[P]\n"
    "  param A[N, P], D[P]\n"
    "  state h[N, P]\n"
    "  let d[p] = softplus(dt[p])\n"
    "  h[n, p] = exp(d[p] * A[n, p]) * h[n, p] + d[p] * B[n] * x[p]\n"
    "  output y[p] = sum(n, C[n] * h[n, p]) + D[p] * x[p]\n"
    "}\n";

static const char SRC_LINEAR_ATTN_NORM[] =
    "mixer linear_attn_norm {             # two states and a normalizing readout\n"
    "  dim K, V\n"
    "  input q[K], k[K], v[V]\n"
    "  state S[K, V], z[K]\n"
    "  S[i, j] = S[i, j] + k[i] * v[j]\n"
    "  z[i] = z[i] + k[i]\n"
    "  output o[j] = sum(i, q[i] * S[i, j]) / (sum(i, q[i] * z[i]) + 1e-6)\n"
    "}\n";

/* ViG's bidirectional GLA (examples/vig2d.mix), and variants with other direction sets. */
static const char SRC_VIG2D[] =
    "mixer vig2d over (Y, X) directions (row, -row) combine mean {\n"
    "  dim K, V\n"
    "  input q[K], k[K], v[V]\n"
    "  input g[K] per direction           # g: log forget gate, g <= 0\n"
    "  param scale = rsqrt(K)\n"
    "  state S[K, V]\n"
    "  S[i, j] = exp(g[i]) * S[i, j] + k[i] * v[j]\n"
    "  output o[j] = scale * sum(i, q[i] * S[i, j])\n"
    "}\n";

static const char SRC_GRID4[] =
    "mixer grid4 over (Y, X) directions (col, -row, -col, row) combine sum {\n"
    "  dim K, V\n"
    "  input q[K], k[K], v[V]\n"
    "  input g[K] per direction\n"
    "  param scale = rsqrt(K)\n"
    "  state S[K, V]\n"
    "  S[i, j] = exp(g[i]) * S[i, j] + k[i] * v[j]\n"
    "  output o[j] = scale * sum(i, q[i] * S[i, j])\n"
    "}\n";

static const char SRC_GRID_COL[] =
    "mixer grid_col over (Y, X) directions (-col) {\n"
    "  dim K, V\n"
    "  input q[K], k[K], v[V], g[K]\n"
    "  param scale = rsqrt(K)\n"
    "  state S[K, V]\n"
    "  S[i, j] = exp(g[i]) * S[i, j] + k[i] * v[j]\n"
    "  output o[j] = scale * sum(i, q[i] * S[i, j])\n"
    "}\n";

static const char SRC_LIGHTNET2D[] =
    "mixer lightnet2d over (Y, X) directions (all) {\n"
    "  dim K, V\n"
    "  input q[K], k[K], v[V]\n"
    "  state S[K, V], z[K]\n"
    "  S[i, j] = S[i, j] + exp(k[i]) * v[j]\n"
    "  z[i] = z[i] + exp(k[i])\n"
    "  output o[j] = sum(i, q[i] * S[i, j]) / (sum(i, q[i] * z[i]) + 1e-6)\n"
    "}\n";

/* Lets inside a for loop, nested sums, a constant index, a param default of dims. */
static const char SRC_NESTED[] =
    "mixer nested {\n"
    "  dim K, V, NH = 2\n"
    "  input q[K], k[NH, K], v[V]\n"
    "  param c = 0.05 / (K + V)\n"
    "  state S[K, V]\n"
    "  for h in NH {\n"
    "    let a[i] = k[h, i] * sum(m, k[h, m] * sum(j, S[m, j] * v[j]))\n"
    "    S[i, j] = S[i, j] + c * a[i] * v[j] + k[h, i] * v[j]\n"
    "  }\n"
    "  output o[j] = sum(i, q[i] * S[i, j]) + sum(i, k[1, i]) * v[j]\n"
    "}\n";

/* An update that reads other elements of the state than the one it writes: every element
 * must see the state as it was before the statement. */
static const char SRC_TRANSPOSE[] =
    "mixer transpose {\n"
    "  dim K\n"
    "  input q[K], k[K]\n"
    "  state S[K, K]\n"
    "  S[i, j] = 0.5 * S[j, i] + k[i] * q[j]\n"
    "  output o[j] = sum(i, q[i] * S[i, j])\n"
    "}\n";

/* Every built-in function. */
static const char SRC_BUILTINS[] =
    "mixer builtins {\n"
    "  dim V\n"
    "  input x[V], w[V]\n"
    "  state z[V]\n"
    "  z[j] = z[j] + x[j]\n"
    "  output e[j] = exp(w[j]) + log(1 + abs(x[j])) + sqrt(abs(x[j])) + rsqrt(1 + abs(x[j]))\n"
    "  output a[j] = tanh(x[j]) + sigmoid(x[j]) - logsigmoid(x[j]) + softplus(x[j])\n"
    "  output b[j] = silu(x[j]) + relu(x[j]) - elu(x[j]) + min(x[j], z[j]) * max(x[j], -0.5)\n"
    "  output c[j] = -x[j] / (2 + w[j]) + V\n"
    "}\n";

/* ---- the harness ---- */

typedef struct Rng {
  uint64_t s;
} Rng;

static uint64_t rng_next(Rng *r) { /* splitmix64 */
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static double uni(Rng *r, double lo, double hi) {
  return lo + (hi - lo) * ((double)(rng_next(r) >> 11) * 0x1.0p-53);
}

static int64_t irange(Rng *r, int64_t lo, int64_t hi) { /* inclusive */
  return lo + (int64_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

typedef struct Ctx {
  Rng rng;
  int passed, failed;
} Ctx;

static void count(Ctx *cx, int ok) {
  if (ok)
    cx->passed++;
  else
    cx->failed++;
}

/* One line for a numeric case: msg is an error that stopped it (a failure), else err is
 * the largest relative error found. */
static void report(Ctx *cx, const char *name, const char *detail, double err, const char *msg) {
  int ok = !msg && err <= TOL;
  count(cx, ok);
  if (msg)
    printf("%s %-18s %s: %s\n", ok ? "PASS" : "FAIL", name, detail, msg);
  else
    printf("%s %-18s %s: max rel err %.3g\n", ok ? "PASS" : "FAIL", name, detail, err);
}

/* One line for a case that is only right or wrong. */
static void report_text(Ctx *cx, const char *name, const char *detail, int ok, const char *text) {
  count(cx, ok);
  printf("%s %-18s %s: %s\n", ok ? "PASS" : "FAIL", name, detail, text);
}

/* Normwise relative error: max |got - want| / max |want|; NaN if anything is not finite. */
static double relerr(const double *got, const double *want, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(got[i]) || !isfinite(want[i])) return NAN;
    double d = fabs(got[i] - want[i]);
    if (d > num) num = d;
    if (fabs(want[i]) > den) den = fabs(want[i]);
  }
  return num / (den > 0 ? den : 1);
}

static double worst(double a, double b) { return isnan(a) || isnan(b) ? NAN : a > b ? a : b; }

typedef struct Mix {
  Compilation c;
  const Mixer *m;
} Mix;

/* Compile one mixer; on failure, report the case failed and return 0. */
static int mix_open(Ctx *cx, Mix *x, const char *src, const char *name) {
  memset(x, 0, sizeof *x);
  int nerr = compile_source(&x->c, name, src, strlen(src), STAGE_TYPED);
  if (nerr == 0 && x->c.prog) x->m = program_find(x->c.prog, name);
  if (x->m && x->m->checked && x->m->nsyms <= MAXSYMS) return 1;
  char *text = diag_render(&x->c.diags);
  report(cx, name, "compile", 0, "does not compile");
  fputs(text ? text : "(no diagnostics)\n", stdout);
  free(text);
  compilation_free(&x->c);
  return 0;
}

static void mix_close(Mix *x) { compilation_free(&x->c); }

static int sym_of(const Mixer *m, const char *name) {
  int s = mixer_find(m, name);
  if (s < 0) {
    fprintf(stderr, "test_reference: mixer '%s' has no symbol '%s'\n", m->name.name, name);
    exit(2);
  }
  return s;
}

/* The arrays of one call, by symbol. */
typedef struct Bind {
  const Mixer *m;
  int64_t dims[MAXSYMS];
  const double *in[MAXSYMS];
  double *out[MAXSYMS];
  double *own[2 * MAXSYMS];
  int nown;
  RefBinding b;
  char err[512];
} Bind;

static void bind_init(Bind *bd, const Mixer *m, int64_t B, int64_t T, int64_t H) {
  memset(bd, 0, sizeof *bd);
  bd->m = m;
  bd->b.B = B;
  bd->b.T = T;
  bd->b.H = H;
  bd->b.dims = bd->dims;
  bd->b.in = bd->in;
  bd->b.out = bd->out;
  for (int s = 0; s < m->nsyms; s++)
    if (m->syms[s].kind == SYM_DIM) bd->dims[s] = m->syms[s].fixed;
}

static void bind_dim(Bind *bd, const char *name, int64_t v) { bd->dims[sym_of(bd->m, name)] = v; }

static double *bind_alloc(Bind *bd, int s) {
  int64_t n = mixc_ref_numel(bd->m, &bd->b, s);
  if (n < 0) {
    fprintf(stderr, "test_reference: numel(%s) failed\n", bd->m->syms[s].name);
    exit(2);
  }
  double *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
  if (!p) exit(2);
  for (int64_t i = 0; i < n; i++) p[i] = NAN; /* unwritten outputs show up as NaN */
  bd->own[bd->nown++] = p;
  return p;
}

/* A random input (or param, or initial state) uniform in [lo, hi]. */
static double *bind_in(Bind *bd, Rng *rg, const char *name, double lo, double hi) {
  int s = sym_of(bd->m, name);
  double *p = bind_alloc(bd, s);
  int64_t n = mixc_ref_numel(bd->m, &bd->b, s);
  for (int64_t i = 0; i < n; i++) p[i] = uni(rg, lo, hi);
  bd->in[s] = p;
  return p;
}

/* An output, or a final state. */
static double *bind_out(Bind *bd, const char *name) {
  int s = sym_of(bd->m, name);
  bd->out[s] = bind_alloc(bd, s);
  return bd->out[s];
}

static void bind_free(Bind *bd) {
  for (int i = 0; i < bd->nown; i++) free(bd->own[i]);
  bd->nown = 0;
}

static int bind_run(Bind *bd) { return mixc_ref_run(bd->m, &bd->b, bd->err, sizeof bd->err); }

/* Scale every vector of n elements to unit L2 norm (keys of the delta rule). */
static void normalize(double *p, int64_t count, int64_t n) {
  for (int64_t c = 0; c < count; c++) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += p[c * n + i] * p[c * n + i];
    for (int64_t i = 0; i < n; i++) p[c * n + i] /= sqrt(ss);
  }
}

/* ---- hand-written recurrences ----
 * Layouts: per-token [B, T, H, F]; params [H, F]; states [B, H, K, V] (S0 NULL: zeros,
 * S1 NULL: not wanted). Each function keeps one state S[K][V] per (b, h) in a local array. */

typedef struct Sz {
  int64_t B, T, H, K, V;
} Sz;

static int64_t at(const Sz *z, int64_t b, int64_t t, int64_t h, int64_t F) {
  return ((b * z->T + t) * z->H + h) * F;
}

static double *state_load(const Sz *z, const double *S0, int64_t b, int64_t h, int64_t n) {
  double *S = calloc((size_t)n, sizeof *S);
  if (!S) exit(2);
  if (S0)
    for (int64_t i = 0; i < n; i++) S[i] = S0[(b * z->H + h) * n + i];
  return S;
}

static void state_store(const Sz *z, double *S1, double *S, int64_t b, int64_t h, int64_t n) {
  if (S1)
    for (int64_t i = 0; i < n; i++) S1[(b * z->H + h) * n + i] = S[i];
  free(S);
}

/* o = S^T q */
static void readout(const Sz *z, const double *S, const double *q, double *o) {
  for (int64_t j = 0; j < z->V; j++) {
    double acc = 0;
    for (int64_t i = 0; i < z->K; i++) acc += q[i] * S[i * z->V + j];
    o[j] = acc;
  }
}

static double sp(double x) { return log1p(exp(x)); } /* softplus for moderate x */

/* Linear attention: S_t = S_{t-1} + k v^T, o = S_t^T q. */
static void hr_linear_attn(const Sz *z, const double *q, const double *k, const double *v,
                           const double *S0, double *o, double *S1) {
  int64_t K = z->K, V = z->V;
  for (int64_t b = 0; b < z->B; b++)
    for (int64_t h = 0; h < z->H; h++) {
      double *S = state_load(z, S0, b, h, K * V);
      for (int64_t t = 0; t < z->T; t++) {
        const double *kt = k + at(z, b, t, h, K), *vt = v + at(z, b, t, h, V);
        for (int64_t i = 0; i < K; i++)
          for (int64_t j = 0; j < V; j++) S[i * V + j] += kt[i] * vt[j];
        readout(z, S, q + at(z, b, t, h, K), o + at(z, b, t, h, V));
      }
      state_store(z, S1, S, b, h, K * V);
    }
}

/* RetNet: S_t = e^{gamma_h} S_{t-1} + k v^T. */
static void hr_retnet(const Sz *z, const double *q, const double *k, const double *v,
                      const double *gamma, const double *S0, double *o, double *S1) {
  int64_t K = z->K, V = z->V;
  for (int64_t b = 0; b < z->B; b++)
    for (int64_t h = 0; h < z->H; h++) {
      double *S = state_load(z, S0, b, h, K * V);
      double a = exp(gamma[h]);
      for (int64_t t = 0; t < z->T; t++) {
        const double *kt = k + at(z, b, t, h, K), *vt = v + at(z, b, t, h, V);
        for (int64_t i = 0; i < K; i++)
          for (int64_t j = 0; j < V; j++) S[i * V + j] = a * S[i * V + j] + kt[i] * vt[j];
        readout(z, S, q + at(z, b, t, h, K), o + at(z, b, t, h, V));
      }
      state_store(z, S1, S, b, h, K * V);
    }
}

/* Mamba2 (SSD), K = N, V = P: dt' = softplus(dt + dt_bias), h_t = e^{-e^{A_log} dt'} h_{t-1}
 * + dt' B x^T, y = h_t^T C + D x. */
static void hr_mamba2(const Sz *z, const double *x, const double *Bm, const double *Cm,
                      const double *dt, const double *A_log, const double *dt_bias,
                      const double *D, const double *S0, double *y, double *S1) {
  int64_t N = z->K, P = z->V;
  for (int64_t b = 0; b < z->B; b++)
    for (int64_t h = 0; h < z->H; h++) {
      double *S = state_load(z, S0, b, h, N * P);
      for (int64_t t = 0; t < z->T; t++) {
        const double *xt = x + at(z, b, t, h, P), *Bt = Bm + at(z, b, t, h, N);
        double delta = sp(dt[at(z, b, t, h, 1)] + dt_bias[h]);
        double a = exp(-exp(A_log[h]) * delta);
        for (int64_t n = 0; n < N; n++)
          for (int64_t p = 0; p < P; p++) S[n * P + p] = a * S[n * P + p] + delta * Bt[n] * xt[p];
        double *yt = y + at(z, b, t, h, P);
        readout(z, S, Cm + at(z, b, t, h, N), yt);
        for (int64_t p = 0; p < P; p++) yt[p] += D[h] * xt[p];
      }
      state_store(z, S1, S, b, h, N * P);
    }
}

/* One delta-rule step: S += beta k (v - S^T k)^T. */
static void delta_step(const Sz *z, double *S, const double *kt, const double *vt, double beta) {
  int64_t K = z->K, V = z->V;
  double *u = malloc((size_t)V * sizeof *u);
  if (!u) exit(2);
  for (int64_t j = 0; j < V; j++) {
    double acc = 0;
    for (int64_t m = 0; m < K; m++) acc += kt[m] * S[m * V + j];
    u[j] = vt[j] - acc;
  }
  for (int64_t i = 0; i < K; i++)
    for (int64_t j = 0; j < V; j++) S[i * V + j] += beta * kt[i] * u[j];
  free(u);
}

/* DeltaNet (g NULL) and Gated DeltaNet: S_t = e^{g_t} (I - beta k k^T) S_{t-1} + beta k v^T,
 * the decay applied first. */
static void hr_delta(const Sz *z, const double *q, const double *k, const double *v,
                     const double *g, const double *beta, const double *S0, double *o,
                     double *S1) {
  int64_t K = z->K, V = z->V;
  for (int64_t b = 0; b < z->B; b++)
    for (int64_t h = 0; h < z->H; h++) {
      double *S = state_load(z, S0, b, h, K * V);
      for (int64_t t = 0; t < z->T; t++) {
        if (g)
          for (int64_t i = 0; i < K * V; i++) S[i] *= exp(g[at(z, b, t, h, 1)]);
        delta_step(z, S, k + at(z, b, t, h, K), v + at(z, b, t, h, V), beta[at(z, b, t, h, 1)]);
        readout(z, S, q + at(z, b, t, h, K), o + at(z, b, t, h, V));
      }
      state_store(z, S1, S, b, h, K * V);
    }
}

/* DeltaProduct: decay, then NH delta steps with k[h], v[h], beta[h], per token. */
static void hr_delta_product(const Sz *z, int64_t NH, const double *q, const double *k,
                             const double *v, const double *beta, const double *g,
                             const double *S0, double *o, double *S1) {
  int64_t K = z->K, V = z->V;
  for (int64_t b = 0; b < z->B; b++)
    for (int64_t h = 0; h < z->H; h++) {
      double *S = state_load(z, S0, b, h, K * V);
      for (int64_t t = 0; t < z->T; t++) {
        double a = exp(g[at(z, b, t, h, 1)]);
        for (int64_t i = 0; i < K * V; i++) S[i] *= a;
        for (int64_t n = 0; n < NH; n++)
          delta_step(z, S, k + at(z, b, t, h, NH * K) + n * K, v + at(z, b, t, h, NH * V) + n * V,
                     beta[at(z, b, t, h, NH) + n]);
        readout(z, S, q + at(z, b, t, h, K), o + at(z, b, t, h, V));
      }
      state_store(z, S1, S, b, h, K * V);
    }
}

/* GLA: S_t = diag(e^{g_t}) S_{t-1} + k v^T, o = scale S_t^T q. */
static void hr_gla(const Sz *z, const double *q, const double *k, const double *v,
                   const double *g, double scale, const double *S0, double *o, double *S1) {
  int64_t K = z->K, V = z->V;
  for (int64_t b = 0; b < z->B; b++)
    for (int64_t h = 0; h < z->H; h++) {
      double *S = state_load(z, S0, b, h, K * V);
      for (int64_t t = 0; t < z->T; t++) {
        const double *kt = k + at(z, b, t, h, K), *vt = v + at(z, b, t, h, V);
        const double *gt = g + at(z, b, t, h, K);
        for (int64_t i = 0; i < K; i++)
          for (int64_t j = 0; j < V; j++)
            S[i * V + j] = exp(gt[i]) * S[i * V + j] + kt[i] * vt[j];
        double *ot = o + at(z, b, t, h, V);
        readout(z, S, q + at(z, b, t, h, K), ot);
        for (int64_t j = 0; j < V; j++) ot[j] *= scale;
      }
      state_store(z, S1, S, b, h, K * V);
    }
}

/* RWKV6: o = r^T (S_{t-1} + diag(u) k v^T), then S_t = diag(e^{w_t}) S_{t-1} + k v^T. */
static void hr_rwkv6(const Sz *z, const double *r, const double *k, const double *v,
                     const double *w, const double *u, const double *S0, double *o,
                     double *S1) {
  int64_t K = z->K, V = z->V;
  for (int64_t b = 0; b < z->B; b++)
    for (int64_t h = 0; h < z->H; h++) {
      double *S = state_load(z, S0, b, h, K * V);
      const double *uh = u + h * K;
      for (int64_t t = 0; t < z->T; t++) {
        const double *rt = r + at(z, b, t, h, K), *kt = k + at(z, b, t, h, K);
        const double *vt = v + at(z, b, t, h, V), *wt = w + at(z, b, t, h, K);
        double *ot = o + at(z, b, t, h, V);
        for (int64_t j = 0; j < V; j++) {
          double acc = 0;
          for (int64_t i = 0; i < K; i++) acc += rt[i] * (S[i * V + j] + uh[i] * kt[i] * vt[j]);
          ot[j] = acc;
        }
        for (int64_t i = 0; i < K; i++)
          for (int64_t j = 0; j < V; j++)
            S[i * V + j] = exp(wt[i]) * S[i * V + j] + kt[i] * vt[j];
      }
      state_store(z, S1, S, b, h, K * V);
    }
}

/* Mamba1, K = N, V = P: d = softplus(dt), h[n, p] = e^{d[p] A[n, p]} h[n, p] + d[p] B[n] x[p],
 * y = h^T C + D .* x. */
static void hr_mamba1(const Sz *z, const double *x, const double *Bm, const double *Cm,
                      const double *dt, const double *A, const double *D, const double *S0,
                      double *y, double *S1) {
  int64_t N = z->K, P = z->V;
  for (int64_t b = 0; b < z->B; b++)
    for (int64_t h = 0; h < z->H; h++) {
      double *S = state_load(z, S0, b, h, N * P);
      const double *Ah = A + h * N * P, *Dh = D + h * P;
      for (int64_t t = 0; t < z->T; t++) {
        const double *xt = x + at(z, b, t, h, P), *Bt = Bm + at(z, b, t, h, N);
        const double *dtt = dt + at(z, b, t, h, P);
        for (int64_t n = 0; n < N; n++)
          for (int64_t p = 0; p < P; p++) {
            double d = sp(dtt[p]);
            S[n * P + p] = exp(d * Ah[n * P + p]) * S[n * P + p] + d * Bt[n] * xt[p];
          }
        double *yt = y + at(z, b, t, h, P);
        readout(z, S, Cm + at(z, b, t, h, N), yt);
        for (int64_t p = 0; p < P; p++) yt[p] += Dh[p] * xt[p];
      }
      state_store(z, S1, S, b, h, N * P);
    }
}

/* Linear attention with a normaliser: S += k v^T, zz += k, o = S^T q / (q . zz + 1e-6). */
static void hr_linear_attn_norm(const Sz *z, const double *q, const double *k, const double *v,
                                const double *S0, const double *z0, double *o, double *S1,
                                double *z1) {
  int64_t K = z->K, V = z->V;
  for (int64_t b = 0; b < z->B; b++)
    for (int64_t h = 0; h < z->H; h++) {
      double *S = state_load(z, S0, b, h, K * V), *zz = state_load(z, z0, b, h, K);
      for (int64_t t = 0; t < z->T; t++) {
        const double *qt = q + at(z, b, t, h, K), *kt = k + at(z, b, t, h, K);
        const double *vt = v + at(z, b, t, h, V);
        for (int64_t i = 0; i < K; i++) {
          for (int64_t j = 0; j < V; j++) S[i * V + j] += kt[i] * vt[j];
          zz[i] += kt[i];
        }
        double den = 0;
        for (int64_t i = 0; i < K; i++) den += qt[i] * zz[i];
        double *ot = o + at(z, b, t, h, V);
        readout(z, S, qt, ot);
        for (int64_t j = 0; j < V; j++) ot[j] /= den + 1e-6;
      }
      state_store(z, S1, S, b, h, K * V);
      state_store(z, z1, zz, b, h, K);
    }
}

/* ---- the family cases ---- */

static Sz pick_sizes(Ctx *cx) {
  static const int64_t kv[] = {5, 7, 16};
  Sz z;
  z.B = 2;
  z.H = 2;
  z.T = irange(&cx->rng, 1, 50);
  z.K = kv[irange(&cx->rng, 0, 2)];
  z.V = kv[irange(&cx->rng, 0, 2)];
  return z;
}

static const char *size_text(const Sz *z, char *buf, size_t n) {
  snprintf(buf, n, "B=%" PRId64 " T=%" PRId64 " H=%" PRId64 " K=%" PRId64 " V=%" PRId64, z->B,
           z->T, z->H, z->K, z->V);
  return buf;
}

/* Start a family case: compile, pick sizes, bind the dims named kname, vname. */
static int family_begin(Ctx *cx, Mix *x, Bind *bd, Sz *z, const char *src, const char *name,
                        const char *kname, const char *vname) {
  if (!mix_open(cx, x, src, name)) return 0;
  *z = pick_sizes(cx);
  bind_init(bd, x->m, z->B, z->T, z->H);
  bind_dim(bd, kname, z->K);
  bind_dim(bd, vname, z->V);
  return 1;
}

/* Finish a family case: report the error of the run or the comparison. */
static void family_end(Ctx *cx, Mix *x, Bind *bd, const Sz *z, int rc, double err) {
  char buf[128];
  report(cx, x->m->name.name, size_text(z, buf, sizeof buf), err, rc ? bd->err : NULL);
  bind_free(bd);
  mix_close(x);
}

static double *want_like(Bind *bd, const char *name) {
  return bind_alloc(bd, sym_of(bd->m, name));
}

static int64_t numel(Bind *bd, const char *name) {
  return mixc_ref_numel(bd->m, &bd->b, sym_of(bd->m, name));
}

static void case_linear_attn(Ctx *cx) {
  Mix x;
  Bind bd;
  Sz z;
  if (!family_begin(cx, &x, &bd, &z, SRC_LINEAR_ATTN, "linear_attn", "K", "V")) return;
  Rng *rg = &cx->rng;
  double *q = bind_in(&bd, rg, "q", -1, 1), *k = bind_in(&bd, rg, "k", -1, 1);
  double *v = bind_in(&bd, rg, "v", -1, 1), *S0 = bind_in(&bd, rg, "S", -1, 1);
  double *o = bind_out(&bd, "o"), *S1 = bind_out(&bd, "S");
  double *wo = want_like(&bd, "o"), *wS = want_like(&bd, "S");
  int rc = bind_run(&bd);
  hr_linear_attn(&z, q, k, v, S0, wo, wS);
  double err = worst(relerr(o, wo, numel(&bd, "o")), relerr(S1, wS, numel(&bd, "S")));
  family_end(cx, &x, &bd, &z, rc, err);
}

static void case_retnet(Ctx *cx) {
  Mix x;
  Bind bd;
  Sz z;
  if (!family_begin(cx, &x, &bd, &z, SRC_RETNET, "retnet", "K", "V")) return;
  Rng *rg = &cx->rng;
  double *q = bind_in(&bd, rg, "q", -1, 1), *k = bind_in(&bd, rg, "k", -1, 1);
  double *v = bind_in(&bd, rg, "v", -1, 1), *gamma = bind_in(&bd, rg, "gamma", -0.7, -0.01);
  double *S0 = bind_in(&bd, rg, "S", -1, 1);
  double *o = bind_out(&bd, "o"), *S1 = bind_out(&bd, "S");
  double *wo = want_like(&bd, "o"), *wS = want_like(&bd, "S");
  int rc = bind_run(&bd);
  hr_retnet(&z, q, k, v, gamma, S0, wo, wS);
  double err = worst(relerr(o, wo, numel(&bd, "o")), relerr(S1, wS, numel(&bd, "S")));
  family_end(cx, &x, &bd, &z, rc, err);
}

static void case_mamba2(Ctx *cx) {
  Mix x;
  Bind bd;
  Sz z;
  if (!family_begin(cx, &x, &bd, &z, SRC_MAMBA2, "mamba2", "N", "P")) return;
  Rng *rg = &cx->rng;
  double *xx = bind_in(&bd, rg, "x", -1, 1), *Bm = bind_in(&bd, rg, "B", -1, 1);
  double *Cm = bind_in(&bd, rg, "C", -1, 1), *dt = bind_in(&bd, rg, "dt", -3, 1);
  double *A_log = bind_in(&bd, rg, "A_log", -1, 1), *dt_bias = bind_in(&bd, rg, "dt_bias", -1, 1);
  double *D = bind_in(&bd, rg, "D", -1, 1), *S0 = bind_in(&bd, rg, "h", -1, 1);
  double *y = bind_out(&bd, "y"), *S1 = bind_out(&bd, "h");
  double *wy = want_like(&bd, "y"), *wS = want_like(&bd, "h");
  int rc = bind_run(&bd);
  hr_mamba2(&z, xx, Bm, Cm, dt, A_log, dt_bias, D, S0, wy, wS);
  double err = worst(relerr(y, wy, numel(&bd, "y")), relerr(S1, wS, numel(&bd, "h")));
  family_end(cx, &x, &bd, &z, rc, err);
}

static void case_delta(Ctx *cx, int gated) {
  Mix x;
  Bind bd;
  Sz z;
  if (!family_begin(cx, &x, &bd, &z, gated ? SRC_GATED_DELTA : SRC_DELTA,
                    gated ? "gated_delta" : "delta", "K", "V"))
    return;
  Rng *rg = &cx->rng;
  double *q = bind_in(&bd, rg, "q", -1, 1), *k = bind_in(&bd, rg, "k", -1, 1);
  double *v = bind_in(&bd, rg, "v", -1, 1), *beta = bind_in(&bd, rg, "beta", 0, 1);
  double *g = gated ? bind_in(&bd, rg, "g", -1, 0) : NULL;
  double *S0 = bind_in(&bd, rg, "S", -1, 1);
  normalize(k, z.B * z.T * z.H, z.K);
  double *o = bind_out(&bd, "o"), *S1 = bind_out(&bd, "S");
  double *wo = want_like(&bd, "o"), *wS = want_like(&bd, "S");
  int rc = bind_run(&bd);
  hr_delta(&z, q, k, v, g, beta, S0, wo, wS);
  double err = worst(relerr(o, wo, numel(&bd, "o")), relerr(S1, wS, numel(&bd, "S")));
  family_end(cx, &x, &bd, &z, rc, err);
}

static void case_gla(Ctx *cx, int explicit_scale) {
  Mix x;
  Bind bd;
  Sz z;
  if (!family_begin(cx, &x, &bd, &z, SRC_GLA, "gla", "K", "V")) return;
  Rng *rg = &cx->rng;
  double *q = bind_in(&bd, rg, "q", -1, 1), *k = bind_in(&bd, rg, "k", -1, 1);
  double *v = bind_in(&bd, rg, "v", -1, 1), *g = bind_in(&bd, rg, "g", -1, 0);
  double *S0 = bind_in(&bd, rg, "S", -1, 1);
  double scale = 1 / sqrt((double)z.K);
  if (explicit_scale) { /* one scale for both heads, given instead of the default */
    double *sc = bind_in(&bd, rg, "scale", 0.5, 2);
    sc[1] = sc[0];
    scale = sc[0];
  }
  double *o = bind_out(&bd, "o"), *S1 = bind_out(&bd, "S");
  double *wo = want_like(&bd, "o"), *wS = want_like(&bd, "S");
  int rc = bind_run(&bd);
  hr_gla(&z, q, k, v, g, scale, S0, wo, wS);
  double err = worst(relerr(o, wo, numel(&bd, "o")), relerr(S1, wS, numel(&bd, "S")));
  family_end(cx, &x, &bd, &z, rc, err);
}

static void case_rwkv6(Ctx *cx) {
  Mix x;
  Bind bd;
  Sz z;
  if (!family_begin(cx, &x, &bd, &z, SRC_RWKV6, "rwkv6", "K", "V")) return;
  Rng *rg = &cx->rng;
  double *r = bind_in(&bd, rg, "r", -1, 1), *k = bind_in(&bd, rg, "k", -1, 1);
  double *v = bind_in(&bd, rg, "v", -1, 1), *w = bind_in(&bd, rg, "w", -1, 0);
  double *u = bind_in(&bd, rg, "u", -1, 1), *S0 = bind_in(&bd, rg, "S", -1, 1);
  double *o = bind_out(&bd, "o"), *S1 = bind_out(&bd, "S");
  double *wo = want_like(&bd, "o"), *wS = want_like(&bd, "S");
  int rc = bind_run(&bd);
  hr_rwkv6(&z, r, k, v, w, u, S0, wo, wS);
  double err = worst(relerr(o, wo, numel(&bd, "o")), relerr(S1, wS, numel(&bd, "S")));
  family_end(cx, &x, &bd, &z, rc, err);
}

static void case_mamba1(Ctx *cx) {
  Mix x;
  Bind bd;
  Sz z;
  if (!family_begin(cx, &x, &bd, &z, SRC_MAMBA1, "mamba1", "N", "P")) return;
  Rng *rg = &cx->rng;
  double *xx = bind_in(&bd, rg, "x", -1, 1), *Bm = bind_in(&bd, rg, "B", -1, 1);
  double *Cm = bind_in(&bd, rg, "C", -1, 1), *dt = bind_in(&bd, rg, "dt", -3, 1);
  double *A = bind_in(&bd, rg, "A", -2, -0.1), *D = bind_in(&bd, rg, "D", -1, 1);
  double *S0 = bind_in(&bd, rg, "h", -1, 1);
  double *y = bind_out(&bd, "y"), *S1 = bind_out(&bd, "h");
  double *wy = want_like(&bd, "y"), *wS = want_like(&bd, "h");
  int rc = bind_run(&bd);
  hr_mamba1(&z, xx, Bm, Cm, dt, A, D, S0, wy, wS);
  double err = worst(relerr(y, wy, numel(&bd, "y")), relerr(S1, wS, numel(&bd, "h")));
  family_end(cx, &x, &bd, &z, rc, err);
}

static void case_delta_product(Ctx *cx) {
  Mix x;
  Bind bd;
  Sz z;
  if (!family_begin(cx, &x, &bd, &z, SRC_DELTA_PRODUCT, "delta_product", "K", "V")) return;
  Rng *rg = &cx->rng;
  double *q = bind_in(&bd, rg, "q", -1, 1), *k = bind_in(&bd, rg, "k", -1, 1);
  double *v = bind_in(&bd, rg, "v", -1, 1), *beta = bind_in(&bd, rg, "beta", 0, 2);
  double *g = bind_in(&bd, rg, "g", -1, 0), *S0 = bind_in(&bd, rg, "S", -1, 1);
  normalize(k, z.B * z.T * z.H * 2, z.K);
  double *o = bind_out(&bd, "o"), *S1 = bind_out(&bd, "S");
  double *wo = want_like(&bd, "o"), *wS = want_like(&bd, "S");
  int rc = bind_run(&bd);
  hr_delta_product(&z, 2, q, k, v, beta, g, S0, wo, wS);
  double err = worst(relerr(o, wo, numel(&bd, "o")), relerr(S1, wS, numel(&bd, "S")));
  family_end(cx, &x, &bd, &z, rc, err);
}

static void case_linear_attn_norm(Ctx *cx) {
  Mix x;
  Bind bd;
  Sz z;
  if (!family_begin(cx, &x, &bd, &z, SRC_LINEAR_ATTN_NORM, "linear_attn_norm", "K", "V")) return;
  Rng *rg = &cx->rng;
  /* positive features (as after a feature map), so q . z does not cancel */
  double *q = bind_in(&bd, rg, "q", 0, 1), *k = bind_in(&bd, rg, "k", 0, 1);
  double *v = bind_in(&bd, rg, "v", -1, 1), *S0 = bind_in(&bd, rg, "S", -1, 1);
  double *z0 = bind_in(&bd, rg, "z", 0, 1);
  double *o = bind_out(&bd, "o"), *S1 = bind_out(&bd, "S"), *z1 = bind_out(&bd, "z");
  double *wo = want_like(&bd, "o"), *wS = want_like(&bd, "S"), *wz = want_like(&bd, "z");
  int rc = bind_run(&bd);
  hr_linear_attn_norm(&z, q, k, v, S0, z0, wo, wS, wz);
  double err = worst(relerr(o, wo, numel(&bd, "o")), relerr(S1, wS, numel(&bd, "S")));
  err = worst(err, relerr(z1, wz, numel(&bd, "z")));
  family_end(cx, &x, &bd, &z, rc, err);
}

/* Lets in a for loop, nested sums, a constant index, a param default. */
static void case_nested(Ctx *cx) {
  Mix x;
  Bind bd;
  Sz z;
  if (!family_begin(cx, &x, &bd, &z, SRC_NESTED, "nested", "K", "V")) return;
  Rng *rg = &cx->rng;
  int64_t K = z.K, V = z.V;
  double *q = bind_in(&bd, rg, "q", -1, 1), *k = bind_in(&bd, rg, "k", -1, 1);
  double *v = bind_in(&bd, rg, "v", -1, 1), *S0 = bind_in(&bd, rg, "S", -1, 1);
  normalize(k, z.B * z.T * z.H * 2, K);
  double *o = bind_out(&bd, "o"), *S1 = bind_out(&bd, "S");
  double *wo = want_like(&bd, "o"), *wS = want_like(&bd, "S");
  int rc = bind_run(&bd);
  double c = 0.05 / (double)(K + V);
  double *a = malloc((size_t)K * sizeof *a), *Sv = malloc((size_t)K * sizeof *Sv);
  if (!a || !Sv) exit(2);
  for (int64_t b = 0; b < z.B; b++)
    for (int64_t h = 0; h < z.H; h++) {
      double *S = state_load(&z, S0, b, h, K * V);
      for (int64_t t = 0; t < z.T; t++) {
        const double *vt = v + at(&z, b, t, h, V);
        for (int64_t n = 0; n < 2; n++) {
          const double *kn = k + at(&z, b, t, h, 2 * K) + n * K;
          double kSv = 0; /* k^T S v */
          for (int64_t m = 0; m < K; m++) {
            Sv[m] = 0;
            for (int64_t j = 0; j < V; j++) Sv[m] += S[m * V + j] * vt[j];
            kSv += kn[m] * Sv[m];
          }
          for (int64_t i = 0; i < K; i++) a[i] = kn[i] * kSv;
          for (int64_t i = 0; i < K; i++)
            for (int64_t j = 0; j < V; j++) S[i * V + j] += c * a[i] * vt[j] + kn[i] * vt[j];
        }
        double *ot = wo + at(&z, b, t, h, V);
        readout(&z, S, q + at(&z, b, t, h, K), ot);
        double k1 = 0;
        for (int64_t i = 0; i < K; i++) k1 += k[at(&z, b, t, h, 2 * K) + K + i];
        for (int64_t j = 0; j < V; j++) ot[j] += k1 * vt[j];
      }
      state_store(&z, wS, S, b, h, K * V);
    }
  free(a);
  free(Sv);
  double err = worst(relerr(o, wo, numel(&bd, "o")), relerr(S1, wS, numel(&bd, "S")));
  family_end(cx, &x, &bd, &z, rc, err);
}

static void case_transpose(Ctx *cx) {
  Mix x;
  if (!mix_open(cx, &x, SRC_TRANSPOSE, "transpose")) return;
  Rng *rg = &cx->rng;
  Sz z = pick_sizes(cx);
  z.V = z.K;
  int64_t K = z.K;
  Bind bd;
  bind_init(&bd, x.m, z.B, z.T, z.H);
  bind_dim(&bd, "K", K);
  double *q = bind_in(&bd, rg, "q", -1, 1), *k = bind_in(&bd, rg, "k", -1, 1);
  double *S0 = bind_in(&bd, rg, "S", -1, 1);
  double *o = bind_out(&bd, "o"), *S1 = bind_out(&bd, "S");
  double *wo = want_like(&bd, "o"), *wS = want_like(&bd, "S");
  double *old = malloc((size_t)(K * K) * sizeof *old);
  if (!old) exit(2);
  int rc = bind_run(&bd);
  for (int64_t b = 0; b < z.B; b++)
    for (int64_t h = 0; h < z.H; h++) {
      double *S = state_load(&z, S0, b, h, K * K);
      for (int64_t t = 0; t < z.T; t++) {
        const double *qt = q + at(&z, b, t, h, K), *kt = k + at(&z, b, t, h, K);
        memcpy(old, S, (size_t)(K * K) * sizeof *old);
        for (int64_t i = 0; i < K; i++)
          for (int64_t j = 0; j < K; j++) S[i * K + j] = 0.5 * old[j * K + i] + kt[i] * qt[j];
        readout(&z, S, qt, wo + at(&z, b, t, h, K));
      }
      state_store(&z, wS, S, b, h, K * K);
    }
  free(old);
  double err = worst(relerr(o, wo, numel(&bd, "o")), relerr(S1, wS, numel(&bd, "S")));
  family_end(cx, &x, &bd, &z, rc, err);
}

/* Every built-in, on inputs wide enough to reach the stable branches. */
static void case_builtins(Ctx *cx) {
  Mix x;
  if (!mix_open(cx, &x, SRC_BUILTINS, "builtins")) return;
  Rng *rg = &cx->rng;
  Sz z = {2, irange(rg, 1, 50), 2, 1, 7};
  Bind bd;
  bind_init(&bd, x.m, z.B, z.T, z.H);
  bind_dim(&bd, "V", z.V);
  double *xx = bind_in(&bd, rg, "x", -40, 40), *w = bind_in(&bd, rg, "w", -1, 1);
  const char *names[] = {"e", "a", "b", "c"};
  double *got[4], *want[4];
  for (int i = 0; i < 4; i++) {
    got[i] = bind_out(&bd, names[i]);
    want[i] = want_like(&bd, names[i]);
  }
  int rc = bind_run(&bd);
  for (int64_t b = 0; b < z.B; b++)
    for (int64_t h = 0; h < z.H; h++) {
      double *zz = state_load(&z, NULL, b, h, z.V);
      for (int64_t t = 0; t < z.T; t++)
        for (int64_t j = 0; j < z.V; j++) {
          int64_t e = at(&z, b, t, h, z.V) + j;
          double X = xx[e], W = w[e], sig = 1 / (1 + exp(-X));
          zz[j] += X;
          want[0][e] = exp(W) + log(1 + fabs(X)) + sqrt(fabs(X)) + 1 / sqrt(1 + fabs(X));
          want[1][e] = tanh(X) + sig + log1p(exp(-X)) + log1p(exp(X));
          want[2][e] = X * sig + (X > 0 ? X : 0) - (X > 0 ? X : exp(X) - 1) +
                       (X < zz[j] ? X : zz[j]) * (X > -0.5 ? X : -0.5);
          want[3][e] = -X / (2 + W) + (double)z.V;
        }
      free(zz);
    }
  double err = 0;
  for (int i = 0; i < 4; i++) err = worst(err, relerr(got[i], want[i], numel(&bd, names[i])));
  family_end(cx, &x, &bd, &z, rc, err);
}

/* ---- state handling: variable-length batches, carried states, T = 0 ---- */

/* tokens [t0, t1) of a [B, T, F] array (F: everything after T), as a new array */
static double *slice_tokens(Bind *owner, const double *src, int64_t B, int64_t T, int64_t F,
                            int64_t t0, int64_t t1) {
  int64_t n = B * (t1 - t0) * F;
  double *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
  if (!p) exit(2);
  owner->own[owner->nown++] = p;
  for (int64_t b = 0; b < B; b++)
    if (t1 > t0) memcpy(p + b * (t1 - t0) * F, src + (b * T + t0) * F, (size_t)((t1 - t0) * F) * sizeof *p);
  return p;
}

/* Gated DeltaNet over a varlen batch (one empty sequence among them) against each sequence
 * run alone through the interpreter (B = 1), and against the hand-written recurrence. */
static void case_varlen(Ctx *cx) {
  Mix x;
  if (!mix_open(cx, &x, SRC_GATED_DELTA, "gated_delta")) return;
  Rng *rg = &cx->rng;
  Sz z = pick_sizes(cx);
  int64_t nseq = 4, cu[5], H = z.H, K = z.K, V = z.V;
  z.T = irange(rg, 3, 50);
  cu[0] = 0;
  cu[4] = z.T;
  cu[1] = irange(rg, 0, z.T);
  cu[2] = cu[1]; /* an empty sequence */
  cu[3] = irange(rg, cu[2], z.T);
  Bind bd;
  bind_init(&bd, x.m, 1, z.T, H);
  bd.b.cu_seqlens = cu;
  bd.b.nseq = nseq;
  bind_dim(&bd, "K", K);
  bind_dim(&bd, "V", V);
  double *q = bind_in(&bd, rg, "q", -1, 1), *k = bind_in(&bd, rg, "k", -1, 1);
  double *v = bind_in(&bd, rg, "v", -1, 1), *g = bind_in(&bd, rg, "g", -1, 0);
  double *beta = bind_in(&bd, rg, "beta", 0, 1), *S0 = bind_in(&bd, rg, "S", -1, 1);
  normalize(k, z.T * H, K);
  double *o = bind_out(&bd, "o"), *S1 = bind_out(&bd, "S");
  int rc = bind_run(&bd);
  double err_alone = 0, err_hand = 0;
  char msg[600] = "";
  if (numel(&bd, "S") != nseq * H * K * V) snprintf(msg, sizeof msg, "numel(S) is wrong");
  for (int64_t n = 0; n < nseq && !rc; n++) {
    int64_t len = cu[n + 1] - cu[n], off = cu[n] * H;
    Bind one;
    bind_init(&one, x.m, 1, len, H);
    bind_dim(&one, "K", K);
    bind_dim(&one, "V", V);
    const char *ins[] = {"q", "k", "v", "g", "beta"};
    const double *src[] = {q, k, v, g, beta};
    int64_t F[] = {K, K, V, 1, 1};
    for (int i = 0; i < 5; i++) one.in[sym_of(x.m, ins[i])] = src[i] + off * F[i];
    one.in[sym_of(x.m, "S")] = S0 + n * H * K * V;
    double *o1 = bind_out(&one, "o"), *S11 = bind_out(&one, "S");
    double *wo = want_like(&one, "o"), *wS = want_like(&one, "S");
    if (bind_run(&one)) {
      snprintf(msg, sizeof msg, "sequence %" PRId64 " alone: %s", n, one.err);
      bind_free(&one);
      break;
    }
    Sz z1 = {1, len, H, K, V};
    hr_delta(&z1, q + off * K, k + off * K, v + off * V, g + off, beta + off, S0 + n * H * K * V,
             wo, wS);
    err_alone = worst(err_alone, relerr(o + off * V, o1, len * H * V));
    err_alone = worst(err_alone, relerr(S1 + n * H * K * V, S11, H * K * V));
    err_hand = worst(err_hand, relerr(o + off * V, wo, len * H * V));
    err_hand = worst(err_hand, relerr(S1 + n * H * K * V, wS, H * K * V));
    bind_free(&one);
  }
  char detail[200];
  snprintf(detail, sizeof detail,
           "cu=[0,%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 "] H=%" PRId64 " K=%" PRId64
           " V=%" PRId64 ", vs alone %.3g, vs hand",
           cu[1], cu[2], cu[3], cu[4], H, K, V, err_alone);
  report(cx, "varlen", detail, worst(err_alone, err_hand), rc ? bd.err : msg[0] ? msg : NULL);
  bind_free(&bd);
  mix_close(&x);
}

/* DeltaProduct: T tokens at once == T1 tokens, then T - T1 with the carried state. */
static void case_carry(Ctx *cx) {
  Mix x;
  if (!mix_open(cx, &x, SRC_DELTA_PRODUCT, "delta_product")) return;
  Rng *rg = &cx->rng;
  Sz z = pick_sizes(cx);
  int64_t T = z.T, T1 = irange(rg, 0, T), B = z.B, H = z.H, K = z.K, V = z.V;
  Bind full;
  bind_init(&full, x.m, B, T, H);
  bind_dim(&full, "K", K);
  bind_dim(&full, "V", V);
  const char *ins[] = {"q", "k", "v", "beta", "g"};
  int64_t F[] = {K, 2 * K, 2 * V, 2, 1};
  const double lo[] = {-1, -1, -1, 0, -1}, hi[] = {1, 1, 1, 2, 0};
  double *src[5];
  for (int i = 0; i < 5; i++) src[i] = bind_in(&full, rg, ins[i], lo[i], hi[i]);
  normalize(src[1], B * T * H * 2, K);
  double *S0 = bind_in(&full, rg, "S", -1, 1);
  double *o = bind_out(&full, "o"), *S1 = bind_out(&full, "S");
  int rc = bind_run(&full);
  const char *msg = rc ? full.err : NULL;
  Bind part[2];
  int64_t cut[3] = {0, T1, T};
  const double *carry = S0;
  double *po[2] = {NULL, NULL}, *pS = NULL;
  for (int p = 0; p < 2; p++) {
    bind_init(&part[p], x.m, B, cut[p + 1] - cut[p], H);
    bind_dim(&part[p], "K", K);
    bind_dim(&part[p], "V", V);
    for (int i = 0; i < 5; i++)
      part[p].in[sym_of(x.m, ins[i])] =
          slice_tokens(&part[p], src[i], B, T, H * F[i], cut[p], cut[p + 1]);
    part[p].in[sym_of(x.m, "S")] = carry;
    po[p] = bind_out(&part[p], "o");
    pS = bind_out(&part[p], "S");
    if (!msg && bind_run(&part[p])) msg = part[p].err;
    carry = pS;
  }
  double err = relerr(pS, S1, numel(&full, "S"));
  int64_t per = H * V; /* per token, after [B, T] */
  for (int64_t b = 0; b < B; b++) {
    err = worst(err, relerr(po[0] + b * T1 * per, o + b * T * per, T1 * per));
    err = worst(err, relerr(po[1] + b * (T - T1) * per, o + (b * T + T1) * per, (T - T1) * per));
  }
  char detail[160];
  snprintf(detail, sizeof detail, "B=%" PRId64 " T=%" PRId64 " = %" PRId64 " + %" PRId64
           " H=%" PRId64 " K=%" PRId64 " V=%" PRId64, B, T, T1, T - T1, H, K, V);
  report(cx, "carry_state", detail, err, msg);
  bind_free(&part[0]);
  bind_free(&part[1]);
  bind_free(&full);
  mix_close(&x);
}

/* T = 0: no output, the initial states come back unchanged. */
static void case_empty(Ctx *cx) {
  Mix x;
  if (!mix_open(cx, &x, SRC_LINEAR_ATTN_NORM, "linear_attn_norm")) return;
  Rng *rg = &cx->rng;
  Bind bd;
  bind_init(&bd, x.m, 2, 0, 3);
  bind_dim(&bd, "K", 4);
  bind_dim(&bd, "V", 3);
  for (int i = 0; i < 3; i++) bind_in(&bd, rg, (const char *[]){"q", "k", "v"}[i], -1, 1);
  double *S0 = bind_in(&bd, rg, "S", -1, 1), *z0 = bind_in(&bd, rg, "z", -1, 1);
  bind_out(&bd, "o");
  double *S1 = bind_out(&bd, "S"), *z1 = bind_out(&bd, "z");
  int rc = bind_run(&bd);
  double err = worst(relerr(S1, S0, numel(&bd, "S")), relerr(z1, z0, numel(&bd, "z")));
  if (!rc && numel(&bd, "o") != 0) err = NAN;
  report(cx, "empty", "B=2 T=0 H=3: states pass through", err, rc ? bd.err : NULL);
  bind_free(&bd);
  mix_close(&x);
}

/* ---- 2-D scans ---- */

/* Hand-written multi-direction GLA over a Y x X grid: each direction is written as its own
 * pair of nested loops. dirs: 'r' row, 'R' -row, 'c' col, 'C' -col; g has one slice per
 * direction when per_dir. combine: 's' sum, 'm' mean. */
static void hr_grid_gla(int64_t B, int64_t Y, int64_t X, int64_t H, int64_t K, int64_t V,
                        const char *dirs, int per_dir, char combine, const double *q,
                        const double *k, const double *v, const double *g, const double *scale,
                        double *o) {
  int64_t T = Y * X, nd = (int64_t)strlen(dirs);
  Sz z = {B, T, H, K, V};
  int64_t *order = malloc((size_t)T * sizeof *order);
  double *ot = malloc((size_t)V * sizeof *ot);
  if (!order || !ot) exit(2);
  memset(o, 0, (size_t)(B * T * H * V) * sizeof *o);
  for (int64_t d = 0; d < nd; d++) {
    int64_t n = 0;
    switch (dirs[d]) {
    case 'r':
      for (int64_t y = 0; y < Y; y++)
        for (int64_t x = 0; x < X; x++) order[n++] = y * X + x;
      break;
    case 'R':
      for (int64_t y = Y - 1; y >= 0; y--)
        for (int64_t x = X - 1; x >= 0; x--) order[n++] = y * X + x;
      break;
    case 'c':
      for (int64_t x = 0; x < X; x++)
        for (int64_t y = 0; y < Y; y++) order[n++] = y * X + x;
      break;
    default: /* 'C' */
      for (int64_t x = X - 1; x >= 0; x--)
        for (int64_t y = Y - 1; y >= 0; y--) order[n++] = y * X + x;
      break;
    }
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < H; h++) {
        double *S = state_load(&z, NULL, b, h, K * V);
        for (int64_t s = 0; s < T; s++) {
          int64_t t = order[s];
          const double *kt = k + at(&z, b, t, h, K), *vt = v + at(&z, b, t, h, V);
          const double *gt = per_dir ? g + (at(&z, b, t, h, 1) * nd + d) * K : g + at(&z, b, t, h, K);
          for (int64_t i = 0; i < K; i++)
            for (int64_t j = 0; j < V; j++)
              S[i * V + j] = exp(gt[i]) * S[i * V + j] + kt[i] * vt[j];
          readout(&z, S, q + at(&z, b, t, h, K), ot);
          for (int64_t j = 0; j < V; j++) o[at(&z, b, t, h, V) + j] += scale[h] * ot[j];
        }
        free(S);
      }
  }
  if (combine == 'm')
    for (int64_t i = 0; i < B * T * H * V; i++) o[i] /= (double)nd;
  free(order);
  free(ot);
}

static void case_grid(Ctx *cx, const char *src, const char *name, const char *dirs, int per_dir,
                      char combine, int explicit_scale) {
  Mix x;
  if (!mix_open(cx, &x, src, name)) return;
  Rng *rg = &cx->rng;
  static const int64_t kv[] = {5, 7, 16};
  int64_t B = 2, H = 2, Y = irange(rg, 1, 7), X = irange(rg, 1, 7);
  int64_t K = kv[irange(rg, 0, 2)], V = kv[irange(rg, 0, 2)], nd = (int64_t)strlen(dirs);
  Bind bd;
  bind_init(&bd, x.m, B, Y * X, H);
  bd.b.Y = Y;
  bd.b.X = X;
  bind_dim(&bd, "K", K);
  bind_dim(&bd, "V", V);
  double *q = bind_in(&bd, rg, "q", -1, 1), *k = bind_in(&bd, rg, "k", -1, 1);
  double *v = bind_in(&bd, rg, "v", -1, 1), *g = bind_in(&bd, rg, "g", -1, 0);
  double scale[2] = {1 / sqrt((double)K), 1 / sqrt((double)K)};
  if (explicit_scale) memcpy(scale, bind_in(&bd, rg, "scale", 0.5, 2), sizeof scale);
  double *o = bind_out(&bd, "o"), *wo = want_like(&bd, "o");
  int rc = bind_run(&bd);
  hr_grid_gla(B, Y, X, H, K, V, dirs, per_dir, combine, q, k, v, g, scale, wo);
  double err = relerr(o, wo, numel(&bd, "o"));
  if (per_dir && numel(&bd, "g") != B * Y * X * H * nd * K) err = NAN;
  char detail[160];
  snprintf(detail, sizeof detail,
           "B=%" PRId64 " Y=%" PRId64 " X=%" PRId64 " H=%" PRId64 " K=%" PRId64 " V=%" PRId64
           " dirs=%s",
           B, Y, X, H, K, V, dirs);
  report(cx, name, detail, err, rc ? bd.err : NULL);
  bind_free(&bd);
  mix_close(&x);
}

/* LightNet 2-D, directions (all): every token reads the state of the whole grid. */
static void case_grid_all(Ctx *cx) {
  Mix x;
  if (!mix_open(cx, &x, SRC_LIGHTNET2D, "lightnet2d")) return;
  Rng *rg = &cx->rng;
  int64_t B = 2, H = 2, Y = irange(rg, 1, 7), X = irange(rg, 1, 7), K = 5, V = 7, T = Y * X;
  Bind bd;
  bind_init(&bd, x.m, B, T, H);
  bd.b.Y = Y;
  bd.b.X = X;
  bind_dim(&bd, "K", K);
  bind_dim(&bd, "V", V);
  double *q = bind_in(&bd, rg, "q", 0, 1), *k = bind_in(&bd, rg, "k", -2, 2);
  double *v = bind_in(&bd, rg, "v", -1, 1);
  double *o = bind_out(&bd, "o"), *wo = want_like(&bd, "o");
  int rc = bind_run(&bd);
  Sz z = {B, T, H, K, V};
  double *S = malloc((size_t)(K * V) * sizeof *S), *zz = malloc((size_t)K * sizeof *zz);
  if (!S || !zz) exit(2);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++) {
      memset(S, 0, (size_t)(K * V) * sizeof *S);
      memset(zz, 0, (size_t)K * sizeof *zz);
      for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < K; i++) {
          double e = exp(k[at(&z, b, t, h, K) + i]);
          zz[i] += e;
          for (int64_t j = 0; j < V; j++) S[i * V + j] += e * v[at(&z, b, t, h, V) + j];
        }
      for (int64_t t = 0; t < T; t++) {
        const double *qt = q + at(&z, b, t, h, K);
        double den = 0;
        for (int64_t i = 0; i < K; i++) den += qt[i] * zz[i];
        readout(&z, S, qt, wo + at(&z, b, t, h, V));
        for (int64_t j = 0; j < V; j++) wo[at(&z, b, t, h, V) + j] /= den + 1e-6;
      }
    }
  free(S);
  free(zz);
  char detail[120];
  snprintf(detail, sizeof detail, "B=%" PRId64 " Y=%" PRId64 " X=%" PRId64 " H=%" PRId64
           " dirs=all", B, Y, X, H);
  report(cx, "lightnet2d", detail, relerr(o, wo, numel(&bd, "o")), rc ? bd.err : NULL);
  bind_free(&bd);
  mix_close(&x);
}

/* ---- errors in the binding ---- */

/* Run bd and expect an error whose message contains `want`. */
static void expect_error(Ctx *cx, Bind *bd, const char *what, const char *want) {
  int rc = bind_run(bd);
  int ok = rc && strstr(bd->err, want) && !strchr(bd->err, '\n');
  char msg[700];
  if (!rc)
    snprintf(msg, sizeof msg, "accepted; expected an error with \"%s\"", want);
  else if (!ok)
    snprintf(msg, sizeof msg, "said \"%s\"; expected one line with \"%s\"", bd->err, want);
  else
    snprintf(msg, sizeof msg, "\"%s\"", bd->err);
  report_text(cx, "binding_error", what, ok, msg);
}

/* A retnet binding with everything but what the case removes. */
static void retnet_bind(Bind *bd, const Mixer *m, Rng *rg, int64_t B, int64_t T) {
  bind_init(bd, m, B, T, 2);
  bind_dim(bd, "K", 3);
  bind_dim(bd, "V", 4);
  const char *ins[] = {"q", "k", "v", "gamma"};
  for (int i = 0; i < 4; i++) bind_in(bd, rg, ins[i], -1, 0);
  bind_out(bd, "o");
}

static void case_errors(Ctx *cx) {
  Mix x;
  if (!mix_open(cx, &x, SRC_RETNET, "retnet")) return;
  Rng *rg = &cx->rng;
  Bind bd;
  const Mixer *m = x.m;

  retnet_bind(&bd, m, rg, 2, 5);
  bd.in[sym_of(m, "k")] = NULL;
  expect_error(cx, &bd, "missing input", "input 'k' is missing");
  bind_free(&bd);

  retnet_bind(&bd, m, rg, 2, 5);
  bd.in[sym_of(m, "gamma")] = NULL;
  expect_error(cx, &bd, "missing param", "param 'gamma' is missing");
  bind_free(&bd);

  retnet_bind(&bd, m, rg, 2, 5);
  bd.out[sym_of(m, "o")] = NULL;
  expect_error(cx, &bd, "missing output", "output 'o' is missing");
  bind_free(&bd);

  retnet_bind(&bd, m, rg, 2, 5);
  bd.dims[sym_of(m, "V")] = 0;
  expect_error(cx, &bd, "zero dim", "dim 'V' = 0 must be positive");
  bind_free(&bd);

  retnet_bind(&bd, m, rg, 0, 5);
  expect_error(cx, &bd, "B = 0", "B >= 1");
  bind_free(&bd);

  int64_t cu_bad[4] = {0, 12, 10, 20};
  retnet_bind(&bd, m, rg, 1, 20);
  bd.b.cu_seqlens = cu_bad;
  bd.b.nseq = 3;
  expect_error(cx, &bd, "cu_seqlens decreasing",
               "cu_seqlens[2] = 10 < cu_seqlens[1] = 12: offsets must not decrease");
  bind_free(&bd);

  int64_t cu_short[3] = {0, 4, 19};
  retnet_bind(&bd, m, rg, 1, 20);
  bd.b.cu_seqlens = cu_short;
  bd.b.nseq = 2;
  expect_error(cx, &bd, "cu_seqlens end", "must equal T = 20");
  bind_free(&bd);

  int64_t cu_start[3] = {1, 4, 20};
  retnet_bind(&bd, m, rg, 1, 20);
  bd.b.cu_seqlens = cu_start;
  bd.b.nseq = 2;
  expect_error(cx, &bd, "cu_seqlens start", "cu_seqlens[0] = 1");
  bind_free(&bd);

  int64_t cu_ok[3] = {0, 4, 20};
  retnet_bind(&bd, m, rg, 2, 20);
  bd.b.cu_seqlens = cu_ok;
  bd.b.nseq = 2;
  expect_error(cx, &bd, "cu_seqlens with B = 2", "B = 1");
  bind_free(&bd);

  retnet_bind(&bd, m, rg, 2, 5);
  bd.dims[sym_of(m, "K")] = (int64_t)1 << 31; /* K * V * H * B overflows */
  bd.dims[sym_of(m, "V")] = (int64_t)1 << 31;
  expect_error(cx, &bd, "size overflow", "overflow");
  bind_free(&bd);
  mix_close(&x);

  if (mix_open(cx, &x, SRC_DELTA_PRODUCT, "delta_product")) {
    bind_init(&bd, x.m, 1, 3, 1);
    bind_dim(&bd, "K", 3);
    bind_dim(&bd, "V", 3);
    bind_dim(&bd, "NH", 3);
    expect_error(cx, &bd, "fixed dim", "dim 'NH' = 3 disagrees with its fixed size 2");
    bind_free(&bd);
    mix_close(&x);
  }

  if (mix_open(cx, &x, SRC_VIG2D, "vig2d")) {
    for (int c = 0; c < 2; c++) {
      bind_init(&bd, x.m, 1, 6, 1);
      bd.b.Y = 2;
      bd.b.X = c ? 3 : 4;
      bind_dim(&bd, "K", 3);
      bind_dim(&bd, "V", 3);
      const char *ins[] = {"q", "k", "v", "g"};
      for (int i = 0; i < 4; i++) bind_in(&bd, rg, ins[i], -1, 0);
      bind_out(&bd, "o");
      if (c) bind_in(&bd, rg, "S", -1, 1);
      expect_error(cx, &bd, c ? "grid with a state" : "grid T != Y*X",
                   c ? "takes no initial state" : "T = Y * X");
      bind_free(&bd);
    }
    mix_close(&x);
  }
}

/* mixc_ref_numel on each kind of symbol. */
static void case_numel(Ctx *cx) {
  Mix x;
  if (!mix_open(cx, &x, SRC_MAMBA1, "mamba1")) return;
  Bind bd;
  bind_init(&bd, x.m, 3, 11, 2);
  bind_dim(&bd, "N", 5);
  bind_dim(&bd, "P", 7);
  struct { const char *name; int64_t want; } w[] = {
      {"x", 3 * 11 * 2 * 7}, {"dt", 3 * 11 * 2 * 7}, {"A", 2 * 5 * 7}, {"D", 2 * 7},
      {"h", 3 * 2 * 5 * 7},  {"y", 3 * 11 * 2 * 7},  {"N", 0},         {"d", 0}};
  char msg[200] = "";
  for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
    int64_t n = numel(&bd, w[i].name);
    if (n != w[i].want && !msg[0])
      snprintf(msg, sizeof msg, "numel(%s) = %" PRId64 ", want %" PRId64, w[i].name, n, w[i].want);
  }
  int64_t cu[3] = {0, 4, 11};
  bd.b.B = 1;
  bd.b.cu_seqlens = cu;
  bd.b.nseq = 2;
  if (numel(&bd, "h") != 2 * 2 * 5 * 7 && !msg[0]) snprintf(msg, sizeof msg, "numel(h) varlen");
  if (mixc_ref_numel(x.m, &bd.b, -1) != -1 && !msg[0]) snprintf(msg, sizeof msg, "numel(-1)");
  report_text(cx, "numel", "mamba1", !msg[0], msg[0] ? msg : "every kind of symbol");
  mix_close(&x);
}

int main(int argc, char **argv) {
  Ctx cx;
  memset(&cx, 0, sizeof cx);
  uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : (uint64_t)time(NULL);
  cx.rng.s = seed;
  printf("test_reference: seed %" PRIu64 "\n", seed);
  case_linear_attn(&cx);
  case_retnet(&cx);
  case_mamba2(&cx);
  case_delta(&cx, 0);
  case_delta(&cx, 1);
  case_gla(&cx, 0);
  case_gla(&cx, 1);
  case_rwkv6(&cx);
  case_mamba1(&cx);
  case_delta_product(&cx);
  case_linear_attn_norm(&cx);
  case_nested(&cx);
  case_transpose(&cx);
  case_builtins(&cx);
  case_varlen(&cx);
  case_carry(&cx);
  case_empty(&cx);
  case_grid(&cx, SRC_VIG2D, "vig2d", "rR", 1, 'm', 0);
  case_grid(&cx, SRC_GRID4, "grid4", "cRCr", 1, 's', 1);
  case_grid(&cx, SRC_GRID_COL, "grid_col", "C", 0, 's', 0);
  case_grid_all(&cx);
  case_errors(&cx);
  case_numel(&cx);
  printf("test_reference: %d passed, %d failed\n", cx.passed, cx.failed);
  return cx.failed ? 1 : 0;
}
