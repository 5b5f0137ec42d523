/* The recurrence analysis (compiler/analyze.c): the class, side and rank of every state of
 * the example mixers, the linearity errors of LANGUAGE.md section 6 and the non-causal rule
 * of section 7, and a few shapes of the IR (versions, readouts, unrolled steps).
 * Run from the repository root (ctest does): it reads the examples/ folder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/compile.h"
#include "compiler/rec.h"
#include "testlib.h"

static int g_passed, g_failed;

#include "check.h"

/* Compile `src` to the recurrence IR; prints diagnostics if `quiet` is 0 and it fails. */
static int compile_text(Compilation *c, const char *name, const char *src, int quiet) {
  int errors = compile_source(c, name, src, strlen(src), STAGE_REC);
  if (errors && !quiet) {
    char *r = diag_render(&c->diags);
    fprintf(stderr, "%s", r ? r : "(no memory)\n");
    free(r);
  }
  return errors;
}

static const RecState *find_state(const RecMixer *m, const char *name) {
  for (int i = 0; m && i < m->nstates; i++)
    if (!strcmp(m->states[i].name, name)) return &m->states[i];
  return NULL;
}

typedef struct Expect {
  const char *file, *mixer, *state;
  RecClass cls;
  RecSide side;
  int rank;
  int delta; /* -1: not checked */
  int nsteps;
} Expect;

static const Expect expected[] = {
    {"linear_attn", "linear_attn", "S", RC_IDENTITY, RS_NONE, 0, 0, 1},
    {"retnet", "retnet", "S", RC_SCALAR, RS_NONE, 0, 0, 1},
    {"mamba2", "mamba2", "h", RC_SCALAR, RS_NONE, 0, 0, 1},
    {"gla", "gla", "S", RC_DIAG, RS_LEFT, 0, 0, 1},
    {"hgrn2", "hgrn2", "S", RC_DIAG, RS_LEFT, 0, 0, 1},
    {"rwkv6", "rwkv6", "S", RC_DIAG, RS_LEFT, 0, 0, 1},
    {"vig2d", "vig2d", "S", RC_DIAG, RS_LEFT, 0, 0, 1},
    {"mamba1", "mamba1", "h", RC_ELEMENTWISE, RS_NONE, 0, 0, 1},
    {"delta", "delta", "S", RC_DPLR, RS_LEFT, 1, 1, 1},
    {"delta_neg", "delta_neg", "S", RC_DPLR, RS_LEFT, 1, 1, 1},
    {"gated_delta", "gated_delta", "S", RC_DPLR, RS_LEFT, 1, 1, 2},
    {"delta_product", "delta_product", "S", RC_DPLR, RS_LEFT, 2, 1, 3},
    {"kda", "kda", "S", RC_DPLR, RS_LEFT, 1, 0, 2},
    {"rwkv7", "rwkv7", "S", RC_DPLR, RS_LEFT, 1, 0, 1},
    {"linear_attn_norm", "linear_attn_norm", "S", RC_IDENTITY, RS_NONE, 0, 0, 1},
    {"linear_attn_norm", "linear_attn_norm", "z", RC_IDENTITY, RS_NONE, 0, 0, 1},
    {"lightnet", "lightnet", "S", RC_IDENTITY, RS_NONE, 0, 0, 1},
    {"lightnet", "lightnet", "z", RC_IDENTITY, RS_NONE, 0, 0, 1},
    {"lightnet2d", "lightnet2d", "S", RC_IDENTITY, RS_NONE, 0, 0, 1},
    {"lightnet2d", "lightnet2d", "z", RC_IDENTITY, RS_NONE, 0, 0, 1},
};

static void test_examples(void) {
  for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
    const Expect *x = &expected[i];
    char path[256];
    snprintf(path, sizeof path, "examples/%s.mix", x->file);
    size_t len = 0;
    char *src = read_file(path, &len);
    CHECK(src != NULL, "cannot read %s", path);
    if (!src) continue;
    Compilation c;
    int errors = compile_source(&c, path, src, len, STAGE_REC);
    if (errors) {
      char *r = diag_render(&c.diags);
      fprintf(stderr, "%s", r ? r : "");
      free(r);
    }
    CHECK(errors == 0 && c.rec, "%s does not compile", path);
    const RecMixer *m = c.rec ? rec_find_mixer(c.rec, x->mixer) : NULL;
    const RecState *s = find_state(m, x->state);
    CHECK(s != NULL, "%s: no state %s", x->mixer, x->state);
    if (s) {
      CHECK(s->cls == x->cls && s->side == x->side,
            "%s.%s: class %s, expected %s", x->mixer, x->state, rec_kind_name(s->cls, s->side),
            rec_kind_name(x->cls, x->side));
      CHECK(s->rank == x->rank, "%s.%s: rank %d, expected %d", x->mixer, x->state, s->rank,
            x->rank);
      if (x->delta >= 0)
        CHECK(s->delta == x->delta, "%s.%s: delta %d, expected %d", x->mixer, x->state, s->delta,
              x->delta);
      CHECK(s->nsteps == x->nsteps, "%s.%s: %d steps, expected %d", x->mixer, x->state,
            s->nsteps, x->nsteps);
      char line[256];
      rec_state_summary(line, sizeof line, m, (int)(s - m->states));
      CHECK(strchr(line, ':') != NULL, "summary '%s'", line);
    }
    if (getenv("TEST_ANALYZE_PRINT") && m) rec_print_mixer(stdout, m);
    compilation_free(&c);
    free(src);
  }
}

/* Details of the IR for a few mixers. */
static void test_shapes(void) {
  Compilation c;
  /* gated delta: step 1 scalar, step 2 delta with the outer product beta k v^T */
  const char *gd = "mixer gd {\n  dim K, V\n  input q[K], k[K], v[V], g, beta\n"
                   "  state S[K, V]\n  S[i, j] = exp(g) * S[i, j]\n"
                   "  S[i, j] = S[i, j] + beta * k[i] * (v[j] - sum(m, k[m] * S[m, j]))\n"
                   "  output o[j] = sum(i, q[i] * S[i, j])\n}\n";
  if (!compile_text(&c, "gd.mix", gd, 0)) {
    const RecMixer *m = c.rec->mixers[0];
    const RecState *s = &m->states[0];
    CHECK(s->nsteps == 2, "steps %d", s->nsteps);
    if (s->nsteps == 2) {
      const RecStep *a = &s->steps[0], *b = &s->steps[1];
      CHECK(a->cls == RC_SCALAR && a->a && a->nouter == 0, "step 1");
      CHECK(a->version == 0 && b->version == 1, "versions %d %d", a->version, b->version);
      CHECK(b->cls == RC_DPLR && b->side == RS_LEFT && b->nlr == 1 && b->delta, "step 2");
      CHECK(b->dl && b->dl->kind == EX_NUM && b->dl->num == 1, "D = I");
      if (b->nlr == 1) {
        CHECK(b->lr[0].scale == -1 && b->lr[0].c && b->lr[0].x && b->lr[0].y, "x y");
        CHECK(b->lr[0].householder, "householder");
        CHECK(b->lr[0].y->free == ((uint64_t)1 << b->lr[0].m), "y free in m");
        CHECK(b->lr[0].x->free == 1, "x free in i");
      }
      CHECK(b->nouter == 1 && b->nadd == 0, "one outer product");
      if (b->nouter == 1) CHECK(b->outer[0].u && b->outer[0].w && b->outer[0].c, "u w c");
    }
    CHECK(m->noutputs == 1, "outputs");
    if (m->noutputs == 1) {
      const RecOut *o = m->outputs[0].root;
      CHECK(o->kind == RO_READOUT && o->nterms == 1 && !o->konst, "readout");
      if (o->kind == RO_READOUT && o->nterms == 1)
        CHECK(o->terms[0].read.version == 2 && o->terms[0].contract == 1, "reads S_t, rows");
    }
    CHECK(m->nevents == 3, "events %d", m->nevents);
  }
  compilation_free(&c);

  /* rwkv6: the output before the update reads S_{t-1}, plus a state-free bonus */
  const char *r6 = "mixer r6 {\n  dim K, V\n  input r[K], k[K], v[V], w[K]\n  param u[K]\n"
                   "  state S[K, V]\n"
                   "  output o[j] = sum(i, r[i] * (S[i, j] + u[i] * k[i] * v[j]))\n"
                   "  S[i, j] = exp(w[i]) * S[i, j] + k[i] * v[j]\n}\n";
  if (!compile_text(&c, "r6.mix", r6, 0)) {
    const RecOut *o = c.rec->mixers[0]->outputs[0].root;
    CHECK(o->kind == RO_READOUT && o->nterms == 1 && o->konst, "readout + bonus");
    if (o->kind == RO_READOUT && o->nterms == 1)
      CHECK(o->terms[0].read.version == 0, "reads S_{t-1}");
  }
  compilation_free(&c);

  /* normalised readout: a quotient of two readouts */
  const char *ln = "mixer ln {\n  dim K, V\n  input q[K], k[K], v[V]\n  state S[K, V], z[K]\n"
                   "  S[i, j] = S[i, j] + k[i] * v[j]\n  z[i] = z[i] + k[i]\n"
                   "  output o[j] = sum(i, q[i] * S[i, j]) / (sum(i, q[i] * z[i]) + 1e-6)\n}\n";
  if (!compile_text(&c, "ln.mix", ln, 0)) {
    const RecOut *o = c.rec->mixers[0]->outputs[0].root;
    CHECK(o->kind == RO_BIN && o->op == '/', "quotient");
    if (o->kind == RO_BIN) {
      CHECK(o->args[0]->kind == RO_READOUT && o->args[1]->kind == RO_READOUT, "two readouts");
      CHECK(o->args[1]->konst != NULL, "+ 1e-6");
    }
  }
  compilation_free(&c);

  /* a let that reads the state is inlined with the version at the let */
  const char *lv = "mixer lv {\n  dim K, V\n  input q[K], k[K], v[V], g\n  state S[K, V]\n"
                   "  let r[j] = sum(m, k[m] * S[m, j])\n"
                   "  S[i, j] = exp(g) * S[i, j] + k[i] * v[j]\n"
                   "  output o[j] = r[j] + sum(i, q[i] * S[i, j])\n}\n";
  if (!compile_text(&c, "lv.mix", lv, 0)) {
    const RecOut *o = c.rec->mixers[0]->outputs[0].root;
    CHECK(o->kind == RO_READOUT && o->nterms == 2, "two terms");
    if (o->kind == RO_READOUT && o->nterms == 2)
      CHECK(o->terms[0].read.version == 0 && o->terms[1].read.version == 1, "versions");
  }
  compilation_free(&c);

  /* right-side classes and element-wise sums */
  const char *rs = "mixer rs {\n  dim K, V\n  input q[K], k[K], v[V], a[K], b[V], x[V], y[V]\n"
                   "  state A[K, V], B[K, V], C[K, V], D[K, V]\n"
                   "  A[i, j] = A[i, j] * exp(b[j]) + k[i] * v[j]\n"
                   "  B[i, j] = a[i] * B[i, j] * b[j]\n"
                   "  C[i, j] = a[i] * C[i, j] + C[i, j] * b[j]\n"
                   "  D[i, j] = D[i, j] - sum(m, D[i, m] * x[m]) * y[j]\n"
                   "  output o[j] = sum(i, q[i] * (A[i, j] + B[i, j] + C[i, j] + D[i, j]))\n}\n";
  if (!compile_text(&c, "rs.mix", rs, 0)) {
    const RecMixer *m = c.rec->mixers[0];
    CHECK(m->states[0].cls == RC_DIAG && m->states[0].side == RS_RIGHT, "A diag-right");
    CHECK(m->states[1].cls == RC_DIAG && m->states[1].side == RS_BOTH, "B diag-both");
    CHECK(m->states[2].cls == RC_ELEMENTWISE, "C element-wise");
    CHECK(m->states[3].cls == RC_DPLR && m->states[3].side == RS_RIGHT &&
              m->states[3].rank == 1 && !m->states[3].delta,
          "D dplr-right rank 1: %s", rec_kind_name(m->states[3].cls, m->states[3].side));
  }
  compilation_free(&c);

  /* general: a dense left multiplication, a coupling, a transposed read */
  const char *gn = "mixer gn {\n  dim K\n  input k[K]\n  param W[K, K]\n"
                   "  state z[K], y[K], S[K, K]\n"
                   "  z[i] = sum(m, W[i, m] * z[m]) + k[i]\n"
                   "  y[i] = y[i] + z[i]\n"
                   "  S[i, j] = S[j, i] + k[i] * k[j]\n"
                   "  output o[i] = z[i] + y[i] + sum(j, S[i, j])\n}\n";
  if (!compile_text(&c, "gn.mix", gn, 0)) {
    const RecMixer *m = c.rec->mixers[0];
    CHECK(m->states[0].cls == RC_GENERAL, "dense: %s", rec_class_name(m->states[0].cls));
    CHECK(m->states[1].cls == RC_GENERAL && m->states[1].ncoupled == 1, "coupled");
    CHECK(m->states[2].cls == RC_GENERAL, "transposed");
  }
  compilation_free(&c);

  /* scalar state, never-updated state, diag then dplr folding, low rank on both sides */
  const char *mx = "mixer mx {\n  dim K, V\n  input q[K], k[K], v[V], g[K], e[V], a\n"
                   "  state c, P[K, V], Q[K, V], R[K, V]\n"
                   "  c = a * c + a\n"
                   "  Q[i, j] = exp(g[i]) * Q[i, j]\n"
                   "  Q[i, j] = Q[i, j] - k[i] * sum(m, k[m] * Q[m, j])\n"
                   "  R[i, j] = R[i, j] * exp(e[j])\n"
                   "  R[i, j] = R[i, j] - k[i] * sum(m, k[m] * R[m, j])\n"
                   "  output o[j] = c * sum(i, q[i] * (P[i, j] + Q[i, j] + R[i, j]))\n}\n";
  if (!compile_text(&c, "mx.mix", mx, 0)) {
    const RecMixer *m = c.rec->mixers[0];
    CHECK(m->states[0].cls == RC_SCALAR && m->states[0].ndim == 0, "c scalar");
    CHECK(m->states[1].cls == RC_IDENTITY && m->states[1].nsteps == 0, "P constant");
    CHECK(m->states[2].cls == RC_DPLR && m->states[2].side == RS_LEFT && !m->states[2].delta,
          "Q dplr-left");
    CHECK(m->states[3].cls == RC_GENERAL, "R: %s", rec_class_name(m->states[3].cls));
    if (getenv("TEST_ANALYZE_PRINT")) rec_print_mixer(stdout, m);
  }
  compilation_free(&c);
}

/* A program that must fail with `msg` at line:col. */
static void expect_error(const char *name, const char *src, const char *msg, int line, int col) {
  Compilation c;
  int errors = compile_text(&c, name, src, 1);
  CHECK(errors > 0, "%s: no error", name);
  int found = 0;
  for (int i = 0; i < c.diags.n; i++) {
    const Diag *g = &c.diags.items[i];
    if (strstr(g->msg, msg) && g->loc.line == line && (col == 0 || g->loc.col == col) && g->help)
      found = 1;
  }
  if (!found) {
    char *r = diag_render(&c.diags);
    fprintf(stderr, "%s: expected '%s' at %d:%d, got:\n%s", name, msg, line, col, r ? r : "");
    free(r);
  }
  CHECK(found, "%s", name);
  compilation_free(&c);
}

static void test_errors(void) {
  const char *head = "mixer bad {\n  dim K, V\n  input q[K], k[K], v[V], g\n  state S[K, V], z[K]\n";
  char src[1024];
  /* line 5 is the statement under test */
  snprintf(src, sizeof src, "%s  S[i, j] = S[i, j] * S[i, j]\n  output o[j] = sum(i, q[i] * S[i, j])\n}\n", head);
  expect_error("product", src, "S enters non-linearly here", 5, 13);
  snprintf(src, sizeof src, "%s  S[i, j] = exp(S[i, j]) + k[i] * v[j]\n  output o[j] = sum(i, q[i] * S[i, j])\n}\n", head);
  expect_error("call", src, "S enters non-linearly here", 5, 13);
  snprintf(src, sizeof src, "%s  S[i, j] = k[i] * v[j] / (1 + sum(m, k[m] * S[m, j]))\n  output o[j] = sum(i, q[i] * S[i, j])\n}\n", head);
  expect_error("division", src, "S enters non-linearly here", 5, 0);
  snprintf(src, sizeof src, "%s  S[i, j] = S[i, j] + z[i] * sum(m, k[m] * S[m, j])\n  output o[j] = sum(i, q[i] * S[i, j])\n}\n", head);
  expect_error("two states", src, "enters non-linearly here", 5, 0);
  snprintf(src, sizeof src, "%s  let n = sum(i, k[i] * z[i])\n  z[i] = z[i] + k[i] * n\n  output o[j] = sum(i, q[i] * S[i, j])\n}\n", head);
  /* z[i] * n is linear in z: a coupling-free DPLR, not an error */
  {
    Compilation c;
    CHECK(compile_text(&c, "lin-let", src, 0) == 0, "let inlined linearly");
    compilation_free(&c);
  }
  snprintf(src, sizeof src, "%s  let n = sum(i, k[i] * z[i])\n  z[i] = z[i] * n\n  output o[j] = sum(i, q[i] * S[i, j])\n}\n", head);
  expect_error("let product", src, "z enters non-linearly here", 6, 0);
  snprintf(src, sizeof src, "%s  S[i, j] = S[i, j] + k[i] * v[j]\n  output o[j] = sum(i, exp(q[i] * S[i, j]))\n}\n", head);
  expect_error("output", src, "S enters non-linearly here", 6, 0);
  snprintf(src, sizeof src, "%s  S[i, j] = S[i, j] + k[i] * v[j]\n  output o[j] = exp(sum(i, q[i] * S[i, j])) * sum(i, q[i] * z[i])\n}\n", head);
  {
    Compilation c;
    CHECK(compile_text(&c, "output ok", src, 0) == 0, "functions of readouts are allowed");
    compilation_free(&c);
  }
  const char *all = "mixer nc over (Y, X) directions (all) {\n  dim K, V\n  input q[K], k[K], v[V], g\n"
                    "  state S[K, V]\n  S[i, j] = exp(g) * S[i, j] + k[i] * v[j]\n"
                    "  output o[j] = sum(i, q[i] * S[i, j])\n}\n";
  expect_error("all", all, "directions (all) needs identity transitions, but state S is scalar",
               1, 0);
}

/* Inputs that must not crash (they may fail). */
static void test_robust(void) {
  static const char *srcs[] = {
      "mixer a { dim K\n input k[K]\n state z[K]\n z[i] = z[i]\n output o[i] = z[i]\n}\n",
      "mixer a { dim K\n input k[K]\n state z[K]\n z[i] = k[i]\n output o[i] = z[i] * z[i]\n}\n",
      "mixer a { dim K, NH = 3\n input k[NH, K]\n state z[K]\n for h in NH {\n let t[i] = z[i] + k[h, i]\n"
      " z[i] = t[i] * 0.5\n }\n output o = sum(i, z[i])\n}\n",
      "mixer a { dim K\n input k[K]\n state z[K]\n let a[i] = z[i] + z[i]\n let b[i] = a[i] + a[i]\n"
      " let c[i] = b[i] + b[i]\n let d[i] = c[i] * c[i]\n z[i] = d[i]\n output o[i] = z[i]\n}\n",
      "mixer a { dim K\n input k[K]\n state z[K]\n z[i] = sum(m, sum(n, z[m] * k[n]))\n output o = sum(i, z[i] * z[i])\n}\n",
  };
  for (size_t i = 0; i < sizeof srcs / sizeof srcs[0]; i++) {
    Compilation c;
    compile_text(&c, "robust.mix", srcs[i], 1);
    if (getenv("TEST_ANALYZE_PRINT") && c.rec) rec_print(stdout, c.rec);
    compilation_free(&c);
  }
  /* a let doubling at every level: the term and node caps must hold */
  char big[8192];
  size_t n = (size_t)snprintf(big, sizeof big,
                              "mixer big { dim K\n input k[K]\n state z[K]\n let a0[i] = z[i] + k[i]\n");
  for (int l = 1; l < 40; l++)
    n += (size_t)snprintf(big + n, sizeof big - n, " let a%d[i] = a%d[i] + a%d[i]\n", l, l - 1, l - 1);
  snprintf(big + n, sizeof big - n, " z[i] = a39[i]\n output o[i] = z[i]\n}\n");
  Compilation c;
  int errors = compile_text(&c, "big.mix", big, 1);
  CHECK(errors > 0, "exponential inlining is refused");
  compilation_free(&c);
  /* 2048 state reads in one update: the term cap */
  n = (size_t)snprintf(big, sizeof big, "mixer terms { dim K\n input k[K]\n state z[K]\n let a0[i] = z[i]\n");
  for (int l = 1; l <= 11; l++)
    n += (size_t)snprintf(big + n, sizeof big - n, " let a%d[i] = a%d[i] + a%d[i]\n", l, l - 1, l - 1);
  snprintf(big + n, sizeof big - n, " z[i] = a11[i]\n output o[i] = z[i]\n}\n");
  expect_error("terms", big, "expands into more than 1024 linear terms", 16, 0);
}

int main(void) {
  test_examples();
  test_shapes();
  test_errors();
  test_robust();
  if (g_failed) {
    fprintf(stderr, "test_analyze: %d of %d checks failed\n", g_failed, g_passed + g_failed);
    return 1;
  }
  printf("test_analyze: %d checks passed\n", g_passed);
  return 0;
}
