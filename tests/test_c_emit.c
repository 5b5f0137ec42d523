/* test_c_emit: the standalone-C backend (backends/c/c_emit.c), end to end.
 *
 * Every KIR sample of tests/kir_samples.c is printed as C (static functions and one exported
 * wrapper, mixc_sample_entry), compiled by the system's C compiler ($CC, else cc) with
 *   -std=c11 -O2 -Wall -Wextra -Werror -pedantic -fPIC -shared ... -lm
 * dlopen'ed, run on the sample's argument tables and checked. Then the emitter's own cases:
 * names and comments that need sanitizing, constants (inf, NaN, -0, subnormals, INT64_MIN,
 * folded overflow, division by a constant 0 that never runs), NaN-propagating min/max and
 * activations, i64 division and remainder, logical and / or, self comparisons, loop bounds
 * evaluated once and variables starting at 0, KS_MATMUL's tiles and edges, exhaustive bf16/f16
 * loads and stores against runtime/half.h, 40 random functions (every statement and
 * expression kind) that must compile without a warning, and the errors (a module kir_verify
 * rejects, two functions with one C name). A failure keeps its C file (*.kept).
 *
 *   test_c_emit [SEED]     (fresh seed on every run, printed; no compiler: a skip line)
 *
 * Temporary files live in a mkdtemp directory under $TMPDIR (or /tmp), removed at the end. */
#define _POSIX_C_SOURCE 200809L

#include "kir_samples.c"

#include <dlfcn.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backends/c/c_emit.h"
#include "runtime/half.h"

typedef void (*KernelFn)(void *const *ptrs, const int64_t *ints, int64_t begin, int64_t end,
                         float *scratch);

typedef struct Ctx {
  const char *cc;
  char dir[256];
  int seq;       /* numbers the temporary files */
  int passed, failed;
} Ctx;

/* ---- compiling and loading ---- */

typedef struct Lib {
  void *handle;
  char c[320], so[320], log[320];
} Lib;

static void lib_paths(Ctx *t, Lib *l) {
  int k = t->seq++;
  snprintf(l->c, sizeof l->c, "%s/k%d.c", t->dir, k);
  snprintf(l->so, sizeof l->so, "%s/k%d.so", t->dir, k);
  snprintf(l->log, sizeof l->log, "%s/k%d.log", t->dir, k);
}

static void print_file(const char *path, int max_lines) {
  FILE *f = fopen(path, "r");
  if (!f) return;
  char line[512];
  for (int i = 0; i < max_lines && fgets(line, sizeof line, f); i++) printf("    %s", line);
  fclose(f);
}

/* Compiles l->c into l->so (with -Werror) and dlopens it. 0, or 1 with a message. */
static int lib_build(Ctx *t, Lib *l, char *msg, size_t n) {
  char cmd[1600];
  snprintf(cmd, sizeof cmd,
           "%s -std=c11 -O2 -Wall -Wextra -Werror -pedantic -fPIC -shared -o '%s' '%s' -lm "
           ">'%s' 2>&1",
           t->cc, l->so, l->c, l->log);
  int rc = system(cmd);
  if (rc != 0) {
    snprintf(msg, n, "the C compiler failed (%d) on %s:", rc, l->c);
    return 1;
  }
  l->handle = dlopen(l->so, RTLD_NOW | RTLD_LOCAL);
  if (!l->handle) {
    const char *e = dlerror();
    snprintf(msg, n, "dlopen: %s", e ? e : "?");
    return 1;
  }
  return 0;
}

static KernelFn lib_fn(Lib *l, const char *name) {
  void *p = dlsym(l->handle, name);
  KernelFn fn = NULL;
  if (p) memcpy(&fn, &p, sizeof fn); /* ISO C has no object-to-function pointer cast */
  return fn;
}

static void lib_close(Lib *l) {
  if (l->handle) dlclose(l->handle);
  l->handle = NULL;
  remove(l->c);
  remove(l->so);
  remove(l->log);
}

/* One result line; a failure's C file is kept (renamed *.kept) for a look. */
static void report(Ctx *t, const char *name, int ok, const char *msg, const Lib *l) {
  if (ok) {
    t->passed++;
    printf("ok   %s\n", name);
  } else {
    t->failed++;
    printf("FAIL %s: %s\n", name, msg);
    if (l && l->log[0]) print_file(l->log, 40);
    char keep[400];
    if (l && l->c[0] && snprintf(keep, sizeof keep, "%s.kept", l->c) < (int)sizeof keep &&
        rename(l->c, keep) == 0)
      printf("     (the C file: %s)\n", keep);
  }
  fflush(stdout);
}

/* Prints module m (static functions) and an exported mixc_sample_entry calling fn_index. */
static int write_module(const char *path, const KModule *m, int fn_index, char *msg, size_t n) {
  FILE *f = fopen(path, "w");
  if (!f) {
    snprintf(msg, n, "cannot write %s: %s", path, strerror(errno));
    return 1;
  }
  char err[512];
  if (mixc_emit_c_funcs(f, m, 1, err, sizeof err)) {
    fclose(f);
    snprintf(msg, n, "emit: %s", err);
    return 1;
  }
  char name[256];
  mixc_emit_c_func_name(m->funcs[fn_index], name, sizeof name);
  fprintf(f,
          "\nvoid mixc_sample_entry(void *const *ptrs, const int64_t *ints, int64_t begin,\n"
          "                       int64_t end, float *scratch);\n"
          "void mixc_sample_entry(void *const *ptrs, const int64_t *ints, int64_t begin,\n"
          "                       int64_t end, float *scratch) {\n"
          "  %s(ptrs, ints, begin, end, scratch);\n"
          "}\n",
          name);
  if (fclose(f)) {
    snprintf(msg, n, "cannot write %s", path);
    return 1;
  }
  return 0;
}

/* ---- the samples ---- */

static void run_sample(Ctx *t, KirSample *s) {
  Lib l = {0};
  char msg[1024] = "";
  lib_paths(t, &l);
  int ok = 0;
  if (!write_module(l.c, s->mod, 0, msg, sizeof msg) && !lib_build(t, &l, msg, sizeof msg)) {
    KernelFn fn = lib_fn(&l, "mixc_sample_entry");
    if (!fn) {
      snprintf(msg, sizeof msg, "mixc_sample_entry is missing");
    } else {
      float *scratch = NULL;
      if (s->scratch_floats > 0) scratch = malloc((size_t)s->scratch_floats * sizeof(float));
      if (s->scratch_floats > 0 && !scratch) {
        snprintf(msg, sizeof msg, "out of memory");
      } else {
        kir_sample_reset_outputs(s);
        fn(s->ptrs, s->ints, s->begin, s->end, scratch);
        ok = s->check(s, msg, sizeof msg) == 0;
      }
      free(scratch);
    }
  }
  report(t, s->name, ok, msg, &l);
  lib_close(&l);
}

/* ---- the emitter's own cases ---- */

#define V(x) ke_var(m, f, (x))
#define I(v) ke_int(m, (v))
#define F(v) ke_float(m, (v))
#define P(slot) ke_ptr_slot(m, (slot))
#define N(slot) ke_int_slot(m, (slot))
#define LD(t, p, i) ke_load(m, (t), (p), (i))
#define B(op, x, y) ke_bin(m, (op), (x), (y))
#define U(op, x) ke_un(m, (op), (x))
#define ADD(s, c) ks_add(m, (s), (c))

/* Emits m (entry: function 0), compiles and loads it; NULL with a message on failure. */
static KernelFn build_case(Ctx *t, Lib *l, const KModule *m, char *msg, size_t n) {
  lib_paths(t, l);
  if (write_module(l->c, m, 0, msg, n) || lib_build(t, l, msg, n)) return NULL;
  KernelFn fn = lib_fn(l, "mixc_sample_entry");
  if (!fn) snprintf(msg, n, "mixc_sample_entry is missing");
  return fn;
}

static uint32_t fbits(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
}

static float bitsf(uint32_t u) {
  float x;
  memcpy(&x, &u, 4);
  return x;
}

/* Names and comments that need sanitizing; unused parameters and variables; x = x. */
static void case_names(Ctx *t) {
  Arena a;
  arena_init(&a);
  KModule *m = kir_module(&a);
  int out = kir_slot(m, KSL_PTR, "out */ /* f32 [8] ?\?/ \\ end\n second line");
  KFunc *f = kir_func(m, "names.case");
  f->items = "nothing */ at all";
  static const char *names[] = {"end", "int", "a.b", "a_b", "INT64_MAX", "_x", "9lives",
                                "expf", "mixc__x", "a@b", "names_case", "", "ptrs", "float"};
  enum { NN = sizeof names / sizeof *names };
  int v[NN];
  for (int i = 0; i < NN; i++) v[i] = kir_var(m, f, KT_F32, names[i]);
  int same = kir_var(m, f, KT_F32, "a.b"); /* kir_var renames: a.b_14 */
  int unused = kir_var(m, f, KT_I64, "unused");
  int only_set = kir_var(m, f, KT_PTR, "only_set");
  (void)unused;
  KStmt *s;
  for (int i = 0; i < NN; i++) {
    ADD(f->body, s = ks_set(m, v[i], F((double)(i + 1))));
    s->comment =
        i == 0 ? "*/ closes /* opens ?\?= trigraph\tand \x01 control \xc3\xa9 utf-8 *" : NULL;
  }
  ADD(f->body, ks_set(m, same, F(100)));
  ADD(f->body, ks_set(m, v[0], V(v[0]))); /* x = x */
  ADD(f->body, ks_set(m, only_set, P(out)));
  KExpr *sum = V(same);
  for (int i = 0; i < NN; i++) sum = B(KO_ADD, sum, V(v[i]));
  ADD(f->body, s = ks_store(m, KT_F32, P(out), I(0), sum));
  s->comment = "/";
  char msg[1024] = "";
  Lib l = {0};
  float buf[8] = {0};
  void *ptrs[1] = {buf};
  int64_t ints[1] = {0};
  KernelFn fn = build_case(t, &l, m, msg, sizeof msg);
  int ok = 0;
  if (fn) {
    fn(ptrs, ints, 0, 0, NULL);
    float want = 100.0f + (float)(NN * (NN + 1) / 2);
    ok = buf[0] == want;
    if (!ok) snprintf(msg, sizeof msg, "out[0] = %g, expected %g", (double)buf[0], (double)want);
  }
  report(t, "own: names and comments", ok, msg, &l);
  lib_close(&l);
  arena_free(&a);
}

/* Constants stored exactly; integer constant folding with wrapping; a division by a constant
 * 0 inside a branch that is not taken. */
static void case_constants(Ctx *t) {
  Arena a;
  arena_init(&a);
  KModule *m = kir_module(&a);
  int fo = kir_slot(m, KSL_PTR, "f32 out");
  int io = kir_slot(m, KSL_PTR, "i64 out");
  KFunc *f = kir_func(m, "constants");
  int i = kir_var(m, f, KT_I64, "i");
  static const double fv[] = {0.0, -0.0, 1.0, -1.5, 0.1, 1e-45, 1.17549435e-38,
                              3.4028234663852886e38,
                              -3.4028234663852886e38, 1e39, -1e39, INFINITY, -INFINITY, NAN,
                              16777217.0, 1e30, 123456789.0, 2.5e-40};
  enum { NF = sizeof fv / sizeof *fv };
  for (int k = 0; k < NF; k++) ADD(f->body, ks_store(m, KT_F32, P(fo), I(k), F(fv[k])));
  int k = 0;
  const int64_t big = INT64_MAX;
  int64_t want[16];
  /* plain constants */
  ADD(f->body, ks_store(m, KT_I64, P(io), I(k), I(INT64_MIN)));
  want[k++] = INT64_MIN;
  ADD(f->body, ks_store(m, KT_I64, P(io), I(k), I(INT64_MAX)));
  want[k++] = INT64_MAX;
  ADD(f->body, ks_store(m, KT_I64, P(io), I(k), I(-2147483648LL)));
  want[k++] = -2147483648LL;
  /* folded: INT64_MAX + 1 wraps (ke_bin: no folding in the builder) */
  ADD(f->body, ks_store(m, KT_I64, P(io), I(k), B(KO_ADD, I(big), I(1))));
  want[k++] = INT64_MIN;
  /* int arithmetic that would overflow in C's int: 2147483647 * 2 + i (i = 0) */
  ADD(f->body, ks_set(m, i, I(0)));
  ADD(f->body, ks_store(m, KT_I64, P(io), I(k),
                        B(KO_ADD, B(KO_MUL, I(2147483647), B(KO_LT, V(i), I(1))), I(2147483647))));
  want[k++] = 2147483647LL * 2;
  /* (i < 1) * 2147483647 + 2147483647, the comparison on the left */
  ADD(f->body, ks_store(m, KT_I64, P(io), I(k),
                        B(KO_ADD, B(KO_MUL, B(KO_LT, V(i), I(1)), I(2147483647)), I(2147483647))));
  want[k++] = 2147483647LL * 2;
  /* neg of INT64_MIN folds (wraps) to INT64_MIN */
  ADD(f->body, ks_store(m, KT_I64, P(io), I(k), U(KO_NEG, I(INT64_MIN))));
  want[k++] = INT64_MIN;
  /* (i < 1) == 2 is 0; (i == i) is 1 */
  ADD(f->body, ks_store(m, KT_I64, P(io), I(k), B(KO_EQ, B(KO_LT, V(i), I(1)), I(2))));
  want[k++] = 0;
  ADD(f->body, ks_store(m, KT_I64, P(io), I(k), B(KO_EQ, V(i), V(i))));
  want[k++] = 1;
  /* if (i != 0) { store x / 0 } else { store 7 / -1 } */
  KStmt *s = ks_if(m, B(KO_NE, V(i), I(0)));
  ADD(f->body, s);
  ADD(s, ks_store(m, KT_I64, P(io), I(k), B(KO_DIV, V(i), I(0))));
  ks_add_else(m, s, ks_store(m, KT_I64, P(io), I(k), B(KO_DIV, I(7), I(-1))));
  want[k++] = -7;
  /* a select on an arithmetic condition: (i + 3) ? 5 : 6 */
  ADD(f->body, ks_store(m, KT_I64, P(io), I(k), ke_select(m, B(KO_ADD, V(i), I(3)), I(5), I(6))));
  want[k++] = 5;
  /* a select of a comparison and 1 is a C int: (i ? (i < 2) : 1) != 2^31 is 1 (gcc's
   * -Wtype-limits judged this form before the select counted as narrow) */
  ADD(f->body,
      ks_store(m, KT_I64, P(io), I(k),
               B(KO_NE, ke_select(m, V(i), B(KO_LT, V(i), I(2)), I(1)), I(2147483648LL))));
  want[k++] = 1;
  const int NI = k;

  char msg[1024] = "";
  Lib l = {0};
  float fb[NF];
  int64_t ib[16];
  void *ptrs[2] = {fb, ib};
  int64_t ints[1] = {0};
  KernelFn fn = build_case(t, &l, m, msg, sizeof msg);
  int ok = 0;
  if (fn) {
    fn(ptrs, ints, 0, 1, NULL);
    ok = 1;
    for (int j = 0; j < NF && ok; j++) {
      float w = fv[j] >= 0x1.ffffffp127 ? INFINITY : fv[j] <= -0x1.ffffffp127 ? -INFINITY
                                                                                : (float)fv[j];
      if (isnan(w) ? !isnan(fb[j]) : fbits(fb[j]) != fbits(w)) {
        ok = 0;
        snprintf(msg, sizeof msg, "f32 constant %d: %.9g (0x%08x), expected %.9g (0x%08x)", j,
                 (double)fb[j], fbits(fb[j]), (double)w, fbits(w));
      }
    }
    for (int j = 0; j < NI && ok; j++)
      if (ib[j] != want[j]) {
        ok = 0;
        snprintf(msg, sizeof msg, "i64 constant %d: %" PRId64 ", expected %" PRId64, j, ib[j],
                 want[j]);
      }
  }
  report(t, "own: constants", ok, msg, &l);
  lib_close(&l);
  arena_free(&a);
}

/* Operations on chosen operands, against the same formulas in C. */
enum { OPS_N = 12 };
static const float ops_x[OPS_N] = {1.5f, -2.0f, 0.0f, -0.0f, NAN, 3.0f, INFINITY, -INFINITY,
                                   100.0f, -100.0f, 1e-30f, NAN};
static const float ops_y[OPS_N] = {2.5f, -3.0f, -0.0f, 0.0f, 1.0f, NAN, 1.0f, 2.0f, -100.0f,
                                   100.0f, 1e-30f, NAN};

static void case_ops(Ctx *t) {
  Arena a;
  arena_init(&a);
  KModule *m = kir_module(&a);
  int px = kir_slot(m, KSL_PTR, "x"), py = kir_slot(m, KSL_PTR, "y");
  int po = kir_slot(m, KSL_PTR, "f32 out [n, 8]"), pi = kir_slot(m, KSL_PTR, "i64 out [6]");
  KFunc *f = kir_func(m, "ops");
  int j = kir_var(m, f, KT_I64, "j"), x = kir_var(m, f, KT_F32, "x"),
      y = kir_var(m, f, KT_F32, "y");
  KStmt *loop = ks_for(m, j, ke_arg(m, 2), ke_arg(m, 3), KF_VECTORIZE);
  ADD(f->body, loop);
  ADD(loop, ks_set(m, x, LD(KT_F32, P(px), V(j))));
  ADD(loop, ks_set(m, y, LD(KT_F32, P(py), V(j))));
  KExpr *r[8] = {B(KO_MIN, V(x), V(y)),
                 B(KO_MAX, V(x), V(y)),
                 U(KO_RELU, V(x)),
                 U(KO_ELU, V(x)),
                 U(KO_SOFTPLUS, V(x)),
                 U(KO_LOGSIGMOID, V(x)),
                 ke_select(m, B(KO_LT, V(x), V(y)), V(x), V(y)),
                 U(KO_I2F, B(KO_AND, B(KO_EQ, V(x), V(x)), B(KO_LE, V(y), V(y))))};
  for (int k = 0; k < 8; k++)
    ADD(loop, ks_store(m, KT_F32, P(po), B(KO_ADD, B(KO_MUL, V(j), I(8)), I(k)), r[k]));
  /* i64 division and remainder of negative numbers (C: truncation), min / max */
  int q = kir_var(m, f, KT_I64, "q");
  ADD(f->body, ks_set(m, q, I(-7)));
  KExpr *ir[9] = {B(KO_DIV, V(q), I(2)),
                  B(KO_REM, V(q), I(2)),
                  B(KO_MIN, V(q), I(3)),
                  B(KO_MAX, V(q), I(3)),
                  B(KO_OR, B(KO_LT, V(q), I(0)), I(0)),
                  U(KO_NEG, V(q)),
                  B(KO_AND, V(q), B(KO_ADD, V(q), I(9))), /* logical: 1, not -7 & 2 = 0 */
                  B(KO_AND, V(q), I(5)),                  /* (q != 0): 1 */
                  B(KO_OR, B(KO_MUL, V(q), I(0)), B(KO_SUB, V(q), V(q)))}; /* 0 */
  for (int k = 0; k < 9; k++) ADD(f->body, ks_store(m, KT_I64, P(pi), I(k), ir[k]));

  char msg[1024] = "";
  Lib l = {0};
  float xs[OPS_N], ys[OPS_N], out[OPS_N * 8];
  memcpy(xs, ops_x, sizeof xs);
  memcpy(ys, ops_y, sizeof ys);
  int64_t io[9];
  void *ptrs[4] = {xs, ys, out, io};
  int64_t ints[1] = {0};
  KernelFn fn = build_case(t, &l, m, msg, sizeof msg);
  int ok = 0;
  if (fn) {
    fn(ptrs, ints, 0, OPS_N, NULL);
    ok = 1;
    for (int k = 0; k < OPS_N && ok; k++) {
      float X = xs[k], Y = ys[k];
      float sp = (X > 0.0f ? X : 0.0f) + log1pf(expf(-fabsf(X)));
      float nx = -X;
      float lsg = -((nx > 0.0f ? nx : 0.0f) + log1pf(expf(-fabsf(nx))));
      float w[8] = {isnan(X) || isnan(Y) ? NAN : X < Y ? X : Y,
                    isnan(X) || isnan(Y) ? NAN : X > Y ? X : Y,
                    X < 0.0f ? 0.0f : X,
                    X > 0.0f ? X : expm1f(X),
                    sp,
                    lsg,
                    X < Y ? X : Y,
                    (float)((X == X) & (Y <= Y))};
      for (int c = 0; c < 8 && ok; c++) {
        float g = out[k * 8 + c];
        int same = isnan(w[c]) ? isnan(g)
                               : fbits(g) == fbits(w[c]) || fabsf(g - w[c]) <= 1e-6f * fabsf(w[c]);
        if (!same) {
          ok = 0;
          snprintf(msg, sizeof msg, "op %d of x = %g, y = %g: %.9g, expected %.9g", c,
                   (double)X, (double)Y, (double)g, (double)w[c]);
        }
      }
    }
    const int64_t iw[9] = {-3, -1, -7, 3, 1, 7, 1, 1, 0};
    for (int k = 0; k < 9 && ok; k++)
      if (io[k] != iw[k]) {
        ok = 0;
        snprintf(msg, sizeof msg, "i64 op %d: %" PRId64 ", expected %" PRId64, k, io[k], iw[k]);
      }
  }
  report(t, "own: operations (NaN, signed zero, C division, logical and / or)", ok, msg, &l);
  lib_close(&l);
  arena_free(&a);
}

/* KIR's loop semantics: the bound is evaluated once (even when the body changes what it
 * reads: a variable, memory, the loop variable itself), and variables start at 0. */
static void case_loops(Ctx *t) {
  Arena a;
  arena_init(&a);
  KModule *m = kir_module(&a);
  int po = kir_slot(m, KSL_PTR, "i64 out [8]");
  KFunc *f = kir_func(m, "loops");
  int i = kir_var(m, f, KT_I64, "i"), n = kir_var(m, f, KT_I64, "n"),
      c = kir_var(m, f, KT_I64, "count"), z = kir_var(m, f, KT_I64, "never_set");
  int zf = kir_var(m, f, KT_F32, "never_set_f");
  /* n = 5; for i in [0, n): n = n + 1; count++   -> 5 iterations */
  ADD(f->body, ks_set(m, n, I(5)));
  KStmt *l1 = ks_for(m, i, I(0), V(n), KF_VECTORIZE);
  ADD(f->body, l1);
  ADD(l1, ks_set(m, n, B(KO_ADD, V(n), I(1))));
  ADD(l1, ks_set(m, c, B(KO_ADD, V(c), I(1))));
  ADD(f->body, ks_store(m, KT_I64, P(po), I(0), V(c)));
  /* out[1] = 3; for i in [0, out[1]): out[1] = out[1] + 1; count++   -> 3 more */
  ADD(f->body, ks_store(m, KT_I64, P(po), I(1), I(3)));
  KStmt *l2 = ks_for(m, i, I(0), LD(KT_I64, P(po), I(1)), 0);
  ADD(f->body, l2);
  ADD(l2, ks_store(m, KT_I64, P(po), I(1), B(KO_ADD, LD(KT_I64, P(po), I(1)), I(1))));
  ADD(l2, ks_set(m, c, B(KO_ADD, V(c), I(1))));
  ADD(f->body, ks_store(m, KT_I64, P(po), I(2), V(c)));
  /* i = 4; for i in [1, i + 3): count++   -> the bound reads i before the loop: 6 more */
  ADD(f->body, ks_set(m, i, I(4)));
  KStmt *l3 = ks_for(m, i, I(1), B(KO_ADD, V(i), I(3)), KF_VECTORIZE);
  ADD(f->body, l3);
  ADD(l3, ks_set(m, c, B(KO_ADD, V(c), I(1))));
  ADD(f->body, ks_store(m, KT_I64, P(po), I(3), V(c)));
  /* the loop variable after the loop; variables never set */
  ADD(f->body, ks_store(m, KT_I64, P(po), I(4), V(i)));
  ADD(f->body, ks_store(m, KT_I64, P(po), I(5), V(z)));
  ADD(f->body, ks_store(m, KT_I64, P(po), I(6), U(KO_NEG, B(KO_LT, V(zf), F(0)))));
  char msg[1024] = "";
  Lib l = {0};
  int64_t out[8] = {0};
  for (int k = 0; k < 8; k++) out[k] = -99;
  void *ptrs[1] = {out};
  int64_t ints[1] = {0};
  KernelFn fn = build_case(t, &l, m, msg, sizeof msg);
  int ok = 0;
  if (fn) {
    fn(ptrs, ints, 0, 1, NULL);
    const int64_t want[7] = {5, 6, 8, 14, 7, 0, 0};
    ok = 1;
    for (int k = 0; k < 7 && ok; k++)
      if (out[k] != want[k]) {
        ok = 0;
        snprintf(msg, sizeof msg, "out[%d] = %" PRId64 ", expected %" PRId64, k, out[k], want[k]);
      }
  }
  report(t, "own: loop bounds evaluated once, variables start at 0", ok, msg, &l);
  lib_close(&l);
  arena_free(&a);
}

/* KS_MATMUL against a plain triple loop: every tile shape and edge, accumulating or not,
 * leading dimensions wider than the matrices. */
static void case_matmul(Ctx *t, uint64_t seed) {
  Arena a;
  arena_init(&a);
  KModule *m = kir_module(&a);
  int pa = kir_slot(m, KSL_PTR, "A"), pb = kir_slot(m, KSL_PTR, "B"),
      pc = kir_slot(m, KSL_PTR, "C"), pc2 = kir_slot(m, KSL_PTR, "C2");
  int iM = kir_slot(m, KSL_INT, "M"), iN = kir_slot(m, KSL_INT, "N"),
      iK = kir_slot(m, KSL_INT, "K");
  KFunc *f = kir_func(m, "mm");
  /* C = A B with sizes from ints (lda = K + 3, ldb = N + 1, ldc = N + 2), then
   * C2 += A B with constant sizes 8 x 32 x 16 (tight) */
  KExpr *M = N(iM), *Nn = N(iN), *K = N(iK);
  ADD(f->body, ks_matmul(m, M, Nn, K, P(pa), B(KO_ADD, K, I(3)), P(pb), B(KO_ADD, Nn, I(1)),
                         P(pc), B(KO_ADD, Nn, I(2)), 0));
  ADD(f->body, ks_matmul(m, I(8), I(32), I(16), P(pa), I(16), P(pb), I(32), P(pc2), I(32), 1));
  char msg[1024] = "";
  Lib l = {0};
  KernelFn fn = build_case(t, &l, m, msg, sizeof msg);
  int ok = fn != NULL;
  uint64_t r = seed ^ 0xabcdefULL;
  static const int64_t shapes[][3] = {{1, 1, 1}, {4, 16, 1}, {7, 37, 5}, {8, 32, 16},
                                      {5, 17, 0}, {3, 15, 9}, {12, 48, 33}, {0, 5, 5}};
  for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes && ok; sh++) {
    int64_t Mv = shapes[sh][0], Nv = shapes[sh][1], Kv = shapes[sh][2];
    int64_t lda = Kv + 3, ldb = Nv + 1, ldc = Nv + 2;
    size_t na = (size_t)(Mv > 8 ? Mv : 8) * (size_t)(lda > 16 ? lda : 16) + 64;
    size_t nb = (size_t)(Kv > 16 ? Kv : 16) * (size_t)(ldb > 32 ? ldb : 32) + 64;
    float *A = malloc(na * 4), *Bm = malloc(nb * 4), *C = malloc((size_t)(Mv * ldc + 1) * 4),
          *C2 = malloc(8 * 32 * 4), *C2w = malloc(8 * 32 * 4);
    if (!A || !Bm || !C || !C2 || !C2w) {
      ok = 0;
      snprintf(msg, sizeof msg, "out of memory");
    }
    for (size_t k = 0; ok && k < na; k++) {
      r = r * 6364136223846793005ULL + 1442695040888963407ULL;
      A[k] = (float)((double)(r >> 40) / (double)(1 << 24) - 0.5);
    }
    for (size_t k = 0; ok && k < nb; k++) {
      r = r * 6364136223846793005ULL + 1442695040888963407ULL;
      Bm[k] = (float)((double)(r >> 40) / (double)(1 << 24) - 0.5);
    }
    for (int64_t k = 0; ok && k < Mv * ldc + 1; k++) C[k] = NAN; /* overwritten, not read */
    for (int k = 0; ok && k < 8 * 32; k++) C2[k] = C2w[k] = (float)k;
    if (ok) {
      void *ptrs[4] = {A, Bm, C, C2};
      int64_t ints[3] = {Mv, Nv, Kv};
      fn(ptrs, ints, 0, 1, NULL);
      for (int64_t i = 0; i < Mv && ok; i++)
        for (int64_t j = 0; j < Nv && ok; j++) {
          double s = 0, sa = 0;
          for (int64_t k = 0; k < Kv; k++) {
            s += (double)A[i * lda + k] * Bm[k * ldb + j];
            sa += fabs((double)A[i * lda + k] * Bm[k * ldb + j]);
          }
          float g = C[i * ldc + j];
          if (!(fabs((double)g - s) <= 1e-6 * (sa + 1e-30) + 1e-30)) {
            ok = 0;
            snprintf(msg, sizeof msg, "%" PRId64 "x%" PRId64 "x%" PRId64 ": C[%" PRId64
                     ", %" PRId64 "] = %.9g, expected %.9g", Mv, Nv, Kv, i, j, (double)g, s);
          }
        }
      for (int64_t i = 0; i < 8 && ok; i++)
        for (int64_t j = 0; j < 32 && ok; j++) {
          double s = C2w[i * 32 + j], sa = fabs(s);
          for (int64_t k = 0; k < 16; k++) {
            s += (double)A[i * 16 + k] * Bm[k * 32 + j];
            sa += fabs((double)A[i * 16 + k] * Bm[k * 32 + j]);
          }
          float g = C2[i * 32 + j];
          if (!(fabs((double)g - s) <= 1e-6 * sa + 1e-30)) {
            ok = 0;
            snprintf(msg, sizeof msg, "8x32x16 accumulate: C2[%" PRId64 ", %" PRId64
                     "] = %.9g, expected %.9g", i, j, (double)g, s);
          }
        }
      /* the padding of C (columns N .. ldc) is not written */
      for (int64_t i = 0; i < Mv && ok; i++)
        for (int64_t j = Nv; j < ldc && ok; j++)
          if (!isnan(C[i * ldc + j])) {
            ok = 0;
            snprintf(msg, sizeof msg, "C[%" PRId64 ", %" PRId64 "] outside N was written", i, j);
          }
    }
    free(A);
    free(Bm);
    free(C);
    free(C2);
    free(C2w);
  }
  report(t, "own: matmul (tiles, edges, accumulate, leading dimensions)", ok, msg, &l);
  lib_close(&l);
  arena_free(&a);
}

/* bf16 and f16: every 16-bit pattern loaded, and many f32 values stored, bit-exactly against
 * runtime/half.h (NaNs: quiet, sign kept). */
static void case_halves(Ctx *t, uint64_t seed) {
  Arena a;
  arena_init(&a);
  KModule *m = kir_module(&a);
  int ph = kir_slot(m, KSL_PTR, "16-bit in [65536]"), pf = kir_slot(m, KSL_PTR, "f32 in [n]");
  int pol = kir_slot(m, KSL_PTR, "f32 out of bf16 [65536]"),
      poh = kir_slot(m, KSL_PTR, "f32 out of f16 [65536]");
  int psb = kir_slot(m, KSL_PTR, "bf16 out [n]"), psh = kir_slot(m, KSL_PTR, "f16 out [n]");
  int in = kir_slot(m, KSL_INT, "n");
  KFunc *f = kir_func(m, "halves");
  int j = kir_var(m, f, KT_I64, "j");
  KStmt *l1 = ks_for(m, j, I(0), I(65536), KF_VECTORIZE);
  ADD(f->body, l1);
  ADD(l1, ks_store(m, KT_F32, P(pol), V(j), LD(KT_BF16, P(ph), V(j))));
  ADD(l1, ks_store(m, KT_F32, P(poh), V(j), LD(KT_F16, P(ph), V(j))));
  KStmt *l2 = ks_for(m, j, I(0), N(in), KF_VECTORIZE);
  ADD(f->body, l2);
  ADD(l2, ks_store(m, KT_BF16, P(psb), V(j), LD(KT_F32, P(pf), V(j))));
  ADD(l2, ks_store(m, KT_F16, P(psh), V(j), LD(KT_F32, P(pf), V(j))));

  enum { NV = 1 << 20 };
  uint16_t *h = malloc(65536 * 2), *sb = malloc(NV * 2), *sh = malloc(NV * 2);
  float *fin = malloc(NV * 4), *ol = malloc(65536 * 4), *oh = malloc(65536 * 4);
  char msg[1024] = "";
  Lib l = {0};
  int ok = 0;
  KernelFn fn = NULL;
  if (!h || !sb || !sh || !fin || !ol || !oh)
    snprintf(msg, sizeof msg, "out of memory");
  else
    fn = build_case(t, &l, m, msg, sizeof msg);
  if (fn) {
    for (int k = 0; k < 65536; k++) h[k] = (uint16_t)k;
    /* specials and every rounding boundary neighbourhood, then random bit patterns */
    uint64_t r = seed ^ 0x5eedULL;
    int nv = 0;
    static const uint32_t special[] = {0, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u,
                                       0x7f800001u, 0xffbfffffu, 0x477fe000u, 0x477ff000u,
                                       0x477fefffu, 0x33000000u, 0x33000001u, 0x387fe000u,
                                       0x38800000u, 0x7f7fffffu, 0x3f808000u, 0x3f818000u};
    for (size_t k = 0; k < sizeof special / sizeof *special; k++) fin[nv++] = bitsf(special[k]);
    for (uint32_t hi = 0; hi < 65536 && nv + 6 <= NV; hi += 1) {
      uint32_t base = hi << 16; /* bf16 ties and neighbours */
      fin[nv++] = bitsf(base | 0x8000u);
      fin[nv++] = bitsf(base | 0x7fffu);
      fin[nv++] = bitsf(base | 0x8001u);
      uint32_t hb = (hi & 0x7fffu) << 13; /* f16-ish mantissa ties around 2^-15 .. 2^16 */
      fin[nv++] = bitsf((hi & 0x8000u) << 16 | (0x30000000u + hb) | 0x1000u);
      fin[nv++] = bitsf((hi & 0x8000u) << 16 | (0x30000000u + hb) | 0x0fffu);
      fin[nv++] = bitsf((hi & 0x8000u) << 16 | (0x30000000u + hb) | 0x1001u);
    }
    while (nv < NV) {
      r += 0x9e3779b97f4a7c15ULL;
      uint64_t z = r;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      fin[nv++] = bitsf((uint32_t)(z ^ (z >> 31)));
    }
    void *ptrs[6] = {h, fin, ol, oh, sb, sh};
    int64_t ints[1] = {NV};
    fn(ptrs, ints, 0, 1, NULL);
    ok = 1;
    for (int k = 0; k < 65536 && ok; k++) {
      float wl = mixc_bf16_to_f32((uint16_t)k), wh = mixc_f16_to_f32((uint16_t)k);
      if (fbits(ol[k]) != fbits(wl) || fbits(oh[k]) != fbits(wh)) {
        ok = 0;
        snprintf(msg, sizeof msg,
                 "load of 0x%04x: bf16 0x%08x (want 0x%08x), f16 0x%08x (want 0x%08x)",
                 k, fbits(ol[k]), fbits(wl), fbits(oh[k]), fbits(wh));
      }
    }
    for (int k = 0; k < NV && ok; k++) {
      uint16_t wb = mixc_f32_to_bf16(fin[k]), wh = mixc_f32_to_f16(fin[k]);
      if (sb[k] != wb || sh[k] != wh) {
        ok = 0;
        snprintf(msg, sizeof msg,
                 "store of 0x%08x: bf16 0x%04x (want 0x%04x), f16 0x%04x (want 0x%04x)",
                 fbits(fin[k]), sb[k], wb, sh[k], wh);
      }
    }
  }
  report(t, "own: bf16 / f16 loads (all 65536) and stores (1M values)", ok, msg, &l);
  lib_close(&l);
  free(h);
  free(sb);
  free(sh);
  free(fin);
  free(ol);
  free(oh);
  arena_free(&a);
}

/* ---- random modules: they must compile without a warning ---- */

typedef struct Gen {
  uint64_t s;
  KModule *m;
  KFunc *f;
  int vi[4], vf[4], vp[2];
  int small; /* inside an index, an offset, a loop bound, a matmul operand */
  int big;   /* inside a stored value */
} Gen;

static uint64_t gnext(Gen *g) {
  uint64_t z = (g->s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static int gpick(Gen *g, int n) { return (int)(gnext(g) % (uint64_t)n); }

static KExpr *gen_expr(Gen *g, KType t, int depth);

/* An index or a byte offset: small constants only (gcc's -Warray-bounds and
 * -Wstringop-overflow rightly object to offsets near 2^63 from a pointer). */
static KExpr *gen_index(Gen *g, int depth) {
  g->small++;
  KExpr *e = gen_expr(g, KT_I64, depth);
  g->small--;
  return e;
}

static KExpr *gen_ptr(Gen *g, int depth) {
  KModule *m = g->m;
  KFunc *f = g->f;
  switch (depth > 0 ? gpick(g, 5) : gpick(g, 2)) {
  case 0: return V(g->vp[gpick(g, 2)]);
  case 1: return P(gpick(g, 3));
  case 2: return ke_ptradd(m, gen_ptr(g, depth - 1), gen_index(g, depth - 1));
  case 3: return ke_select(m, gen_expr(g, KT_I64, depth - 1), gen_ptr(g, depth - 1),
                           gen_ptr(g, depth - 1));
  default: /* pointers are loaded from the ptrs table only: one loaded from memory the
              module stores to could be a stored integer, and gcc rightly objects */
    return LD(KT_PTR, ke_arg(m, 0), gen_index(g, depth - 1));
  }
}

static KExpr *gen_expr(Gen *g, KType t, int depth) {
  KModule *m = g->m;
  KFunc *f = g->f;
  if (t == KT_PTR) return gen_ptr(g, depth);
  /* small ones; then ones at the edges of int (any value a variable may hold); then values
   * that only a store may see (gcc rightly finds undefined behaviour in loops that count to
   * or index with such values) */
  static const int64_t ic[] = {0,          1,          -1,        2,        7,
                               2147483647, -2147483647, 2147483648LL, -2147483648LL,
                               INT64_MAX,  INT64_MIN,  3000000000LL};
  static const double fc[] = {0.0, -0.0, 1.0, 0.5, -2.0, 1e-45, 1e38, 1e39, INFINITY, NAN, 0.1};
  int leaf = depth <= 0 || gpick(g, 4) == 0;
  if (leaf) {
    int k = gpick(g, 4);
    if (t == KT_I64) {
      if (k == 0) return I(ic[gpick(g, g->small ? 5 : g->big ? 12 : 9)]);
      if (k == 1) return ke_arg(m, 2 + gpick(g, 2));
      if (k == 2) return N(gpick(g, 2));
      return V(g->vi[gpick(g, 4)]);
    }
    if (k == 0) return F(fc[gpick(g, sizeof fc / sizeof *fc)]);
    return V(g->vf[gpick(g, 4)]);
  }
  int kind = gpick(g, 6);
  if (kind == 0) { /* select */
    return ke_select(m, gen_expr(g, KT_I64, depth - 1), gen_expr(g, t, depth - 1),
                     gen_expr(g, t, depth - 1));
  }
  if (kind == 1) { /* load */
    static const KType ie[] = {KT_I64, KT_I32}, fe[] = {KT_F32, KT_BF16, KT_F16};
    KType e = t == KT_I64 ? ie[gpick(g, 2)] : fe[gpick(g, 3)];
    return LD(e, gen_ptr(g, depth - 1), gen_index(g, depth - 1));
  }
  if (kind == 2) { /* unary */
    if (t == KT_I64) return U(KO_NEG, gen_expr(g, KT_I64, depth - 1));
    int op = KO_NEG + gpick(g, KO__COUNT - KO_NEG);
    if (op == KO_I2F) return U(KO_I2F, gen_expr(g, KT_I64, depth - 1));
    return U((KOp)op, gen_expr(g, KT_F32, depth - 1));
  }
  if (t == KT_I64 && kind == 3) { /* comparison of anything */
    KType ot = gpick(g, 2) ? KT_I64 : KT_F32;
    KExpr *x = gen_expr(g, ot, depth - 1);
    KExpr *y = gpick(g, 5) == 0 ? x : gen_expr(g, ot, depth - 1);
    return B((KOp)(KO_LT + gpick(g, 4)), x, y);
  }
  if (t == KT_I64) {
    static const KOp iops[] = {KO_ADD, KO_SUB, KO_MUL, KO_DIV, KO_MIN, KO_MAX, KO_REM,
                               KO_AND, KO_OR,  KO_EQ,  KO_NE};
    KOp op = iops[gpick(g, sizeof iops / sizeof *iops)];
    KExpr *x = gen_expr(g, KT_I64, depth - 1);
    return B(op, x, gpick(g, 6) == 0 ? x : gen_expr(g, KT_I64, depth - 1));
  }
  static const KOp fops[] = {KO_ADD, KO_SUB, KO_MUL, KO_DIV, KO_MIN, KO_MAX};
  KExpr *e = B(fops[gpick(g, 6)], gen_expr(g, KT_F32, depth - 1), gen_expr(g, KT_F32, depth - 1));
  e->reassoc = gpick(g, 2);
  return e;
}

static void gen_stmts(Gen *g, KStmt *parent, int n, int depth) {
  KModule *m = g->m;
  for (int k = 0; k < n; k++) {
    KStmt *s = NULL;
    int kind = depth > 0 ? gpick(g, 7) : gpick(g, 3);
    static const KType st[] = {KT_F32, KT_BF16, KT_F16, KT_I64, KT_I32, KT_PTR};
    KType e;
    switch (kind) {
    case 0: s = ks_set(g->m, g->vi[gpick(g, 4)], gen_expr(g, KT_I64, 3)); break;
    case 1: s = ks_set(g->m, g->vf[gpick(g, 4)], gen_expr(g, KT_F32, 3)); break;
    case 2: {
      e = st[gpick(g, 6)];
      KExpr *p = gen_ptr(g, 2), *i = gen_index(g, 2);
      g->big++;
      KExpr *v =
          gen_expr(g, e == KT_PTR ? KT_PTR : e == KT_I64 || e == KT_I32 ? KT_I64 : KT_F32, 3);
      g->big--;
      s = ks_store(m, e, p, i, v);
      break;
    }
    case 3:
      s = ks_for(m, g->vi[gpick(g, 4)], gen_index(g, 2), gen_index(g, 2), gpick(g, 3));
      gen_stmts(g, s, 1 + gpick(g, 3), depth - 1);
      break;
    case 4:
      s = ks_if(m, gen_expr(g, KT_I64, 3));
      gen_stmts(g, s, 1 + gpick(g, 2), depth - 1);
      if (gpick(g, 2)) {
        if (gpick(g, 2)) {
          KStmt *e2 = ks_if(m, gen_expr(g, KT_I64, 2));
          gen_stmts(g, e2, 1, depth - 1);
          ks_add_else(m, s, e2);
        } else {
          KStmt *b = ks_block(m);
          gen_stmts(g, b, 2, depth - 1);
          ks_add_else(m, s, b);
        }
      }
      break;
    case 5:
      s = ks_block(m);
      gen_stmts(g, s, 1 + gpick(g, 2), depth - 1);
      break;
    default:
      s = ks_matmul(m, gen_index(g, 1), gen_index(g, 1), gen_index(g, 1), gen_ptr(g, 1),
                    gen_index(g, 1), gen_ptr(g, 1), gen_index(g, 1), gen_ptr(g, 1),
                    gen_index(g, 1), gpick(g, 2));
      break;
    }
    if (gpick(g, 4) == 0) s->comment = gpick(g, 2) ? "a */ comment" : "x ?? y /* z";
    ks_add(m, parent, s);
  }
}

static void case_random(Ctx *t, uint64_t seed) {
  Arena a;
  arena_init(&a);
  KModule *m = kir_module(&a);
  for (int k = 0; k < 3; k++) kir_slot(m, KSL_PTR, "p");
  for (int k = 0; k < 2; k++) kir_slot(m, KSL_INT, "n");
  Gen g = {seed * 31 + 7, m, NULL, {0}, {0}, {0}, 0, 0};
  static const char *vn[] = {"i", "end", "j.k", "n_2", "x", "float", "y", "_z", "p", "q"};
  for (int fi = 0; fi < 40; fi++) {
    char name[32];
    snprintf(name, sizeof name, "rnd%d", fi);
    KFunc *f = kir_func(m, name);
    g.f = f;
    for (int k = 0; k < 4; k++) g.vi[k] = kir_var(m, f, KT_I64, vn[k]);
    for (int k = 0; k < 4; k++) g.vf[k] = kir_var(m, f, KT_F32, vn[4 + k]);
    for (int k = 0; k < 2; k++) {
      g.vp[k] = kir_var(m, f, KT_PTR, vn[8 + k]);
      ks_add(m, f->body, ks_set(m, g.vp[k], ke_ptradd(m, ke_ptr_slot(m, k), ke_int(m, 8 * k))));
    }
    gen_stmts(&g, f->body, 1 + gpick(&g, 4), 3);
  }
  char msg[1024] = "", err[512];
  Lib l = {0};
  lib_paths(t, &l);
  int ok = 0;
  if (kir_verify(m, err, sizeof err)) {
    snprintf(msg, sizeof msg, "the generator built bad KIR: %s", err);
  } else {
    /* non-static, with the prelude printed twice (a caller emitting several modules) */
    FILE *fp = fopen(l.c, "w");
    if (!fp) {
      snprintf(msg, sizeof msg, "cannot write %s", l.c);
    } else {
      mixc_emit_c_prelude(fp);
      int rc = mixc_emit_c_funcs(fp, m, 0, err, sizeof err);
      fclose(fp);
      if (rc)
        snprintf(msg, sizeof msg, "emit: %s", err);
      else
        ok = !lib_build(t, &l, msg, sizeof msg) && lib_fn(&l, "rnd0") != NULL;
      if (!rc && ok == 0 && !msg[0]) snprintf(msg, sizeof msg, "rnd0 is missing");
    }
  }
  report(t, "own: 40 random functions compile without a warning", ok, msg, &l);
  lib_close(&l);
  arena_free(&a);
}

/* Errors: a module kir_verify rejects, one with a missing operand, two functions with one C
 * name, a variable of a memory type; nothing is printed for them but the message. */
static void case_errors(Ctx *t) {
  char msg[1024] = "", err[256];
  int ok = 1;
  FILE *devnull = fopen("/dev/null", "w");
  if (!devnull) {
    report(t, "own: errors", 0, "cannot open /dev/null", NULL);
    return;
  }
  for (int c = 0; c < 4 && ok; c++) {
    Arena a;
    arena_init(&a);
    KModule *m = kir_module(&a);
    KFunc *f = kir_func(m, "bad");
    int x = kir_var(m, f, KT_F32, "x");
    const char *want = NULL;
    switch (c) {
    case 0: /* f32 = i64 */
      ADD(f->body, ks_set(m, x, I(1)));
      want = "kir: bad:";
      break;
    case 1: { /* a unary operation without an operand */
      KExpr *e = U(KO_EXP, F(1));
      e->a[0] = NULL;
      ADD(f->body, ks_set(m, x, e));
      want = "kir: bad:";
      break;
    }
    case 2: /* "a.b" and "a_b" are one C name */
      kir_func(m, "a.b");
      kir_func(m, "a_b");
      want = "one C name";
      break;
    default: { /* a bf16 variable */
      int h = kir_var(m, f, KT_BF16, "h");
      ADD(f->body, ks_set(m, h, V(h)));
      want = "bf16";
      break;
    }
    }
    err[0] = 0;
    int rc = mixc_emit_c_funcs(devnull, m, 1, err, sizeof err);
    if (!rc || !strstr(err, want)) {
      ok = 0;
      snprintf(msg, sizeof msg, "case %d: rc %d, message \"%s\" (expected one with \"%s\")", c,
               rc, err, want);
    }
    arena_free(&a);
  }
  fclose(devnull);
  report(t, "own: errors (bad KIR, missing operand, name clash, memory-typed variable)", ok,
         msg, NULL);
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

/* ---- main ---- */

static int have_compiler(const char *cc) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "%s --version >/dev/null 2>&1", cc);
  return system(cmd) == 0;
}

static void remove_dir(const char *dir) {
  /* every file is removed as it is done with; what is left (kept failures) stays */
  if (rmdir(dir) != 0 && errno == ENOTEMPTY) printf("test_c_emit: files kept in %s\n", dir);
}

int main(int argc, char **argv) {
  uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : (uint64_t)time(NULL);
  Ctx t = {0};
  const char *cc = getenv("CC");
  t.cc = cc && *cc ? cc : "cc";
  if (!have_compiler(t.cc)) {
    printf("test_c_emit: skipped: no C compiler (%s)\n", t.cc);
    return 0;
  }
  const char *tmp = getenv("TMPDIR");
  snprintf(t.dir, sizeof t.dir, "%s/mixc_c_emit_XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(t.dir)) {
    printf("test_c_emit: cannot make a temporary directory under %s\n", tmp ? tmp : "/tmp");
    return 1;
  }
  printf("test_c_emit: seed %" PRIu64 ", compiler %s\n", seed, t.cc);

  Arena a;
  arena_init(&a);
  KirSample *s = NULL;
  int n = 0;
  if (kir_samples_build(&a, seed, &s, &n)) {
    printf("FAIL kir_samples_build: out of memory\n");
    t.failed++;
  }
  for (int i = 0; i < n; i++) run_sample(&t, &s[i]);
  kir_samples_free(s, n);
  arena_free(&a);

  case_names(&t);
  case_constants(&t);
  case_ops(&t);
  case_loops(&t);
  case_matmul(&t, seed);
  case_halves(&t, seed);
  case_random(&t, seed);
  case_errors(&t);

  remove_dir(t.dir);
  printf("test_c_emit: %d passed, %d failed\n", t.passed, t.failed);
  return t.failed ? 1 : 0;
}
