/* gen_mixer.h: random well-formed mix programs, for the tests that hold one executor against
 * another (test_rec_eval: the recurrence-IR evaluator against the fp64 reference).
 *
 *   char *text = gen_mixer_text(&rng, "gen17");   (malloc'd source of `mixer gen17 { ... }`)
 *
 * Every program this returns must parse, check and analyse: one that does not is a bug of
 * the generator (or of the compiler). Each mixer has up to GEN_MAX_STATES states (matrix
 * S[R, C], square ones included; vector z[R]; scalar c), each updated 0 to 3 times per token
 * with a transition drawn from every class of compiler/rec.h:
 *   identity; scalar (exp(g) * S, sigmoid, constants, mamba2's exp(-exp(A) * softplus(dt)));
 *   diagonal on the left, the right or both (exp(g[i]) * S[i, j] * exp(w[j]));
 *   element-wise (exp(E[i, j]) * S, mamba1's exp(softplus(d[j]) * A[i, j]) * S);
 *   diagonal plus rank 1..3 on the left (the delta rule, written inline or through a let;
 *   RWKV7's a[i] * sum(m, b[m] * S[m, j])) or on the right (sum(m, S[i, m] * y[m]) * x[j]);
 *   `for h in NH` loops of delta / RWKV7 steps (DeltaProduct);
 *   general: transposed reads of square states, dense multiplications, rank-one terms on both
 *   sides, element-wise or diagonal plus a rank-one term on the other side, couplings to other
 *   states (directly or through a let), constant indices (over the fixed dim F), and a let that
 *   reads the state before an earlier update of the same token;
 *   the same classes written unusually (gen_odd): a decay outside parentheses that hold the
 *   input too, divisions by a per-token value, repeated reads of one element, sums of a
 *   difference of outer products, summed coefficients, all-ones contracted vectors, the delta
 *   rule through a chain of two lets;
 * plus input terms (outer products, non-factoring terms, scalars), state-free lets in the
 * coefficients, lets that read a state before an update and are used by an output after it
 * (tanh of a whole readout included), and outputs before, between and after the updates,
 * with normalisers (a readout divided by one plus a function of another), products of
 * readouts, RWKV6's bonus inside a readout, and built-in functions. About one mixer in seven
 * is a 2-D scan `over (Y, X)`: 1 to 4 directions in a random order (inputs sometimes `per
 * direction`, `combine sum|mean`), or `directions (all)` with identity transitions only.
 *
 * Values stay bounded: gates enter exp() as the plain inputs or params that
 * runtime/inputs.c draws <= 0, vectors are unit (the delta rule's keys), betas lie in (0, 1),
 * and every other coupling carries a small constant. */
#ifndef MIXC_GEN_MIXER_H
#define MIXC_GEN_MIXER_H
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/inputs.h"

/* ---- a growing text buffer ---- */

typedef struct GenBuf {
  char *p;
  size_t n, cap;
} GenBuf;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static inline void gb_put(GenBuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (k < 0) abort();
  if (b->n + (size_t)k + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (b->n + (size_t)k + 1 > cap) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) abort();
    b->p = p;
    b->cap = cap;
  }
  va_start(ap, fmt);
  vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
  va_end(ap);
  b->n += (size_t)k;
}

static inline void gb_free(GenBuf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

/* ---- the generator's state ---- */

typedef struct GenName {
  char s[24];
} GenName;

enum { GD_K, GD_V, GD_P, GD_F, GD_NH, GD__N }; /* F and NH are fixed dims */
static const char *const gen_dim_name[GD__N] = {"K", "V", "P", "F", "NH"};

enum { GEN_MAX_STATES = 3, GEN_MAX_LETS = 16 };

/* Transition kinds the generator aims at (the analysis decides the class). */
enum {
  GK_ID, GK_SCALAR, GK_DIAG_L, GK_DIAG_R, GK_DIAG_B, GK_EW, GK_DPLR_L, GK_DPLR_R, GK_GENERAL,
  GK_FOR, GK_ODD, GK_ODD2, GK__N /* GK_ODD*: unusual ways of writing the structured classes */
};

typedef struct GenState {
  GenName name;
  int ndim; /* 0 scalar, 1 vector, 2 matrix */
  int d[2]; /* GD_* */
  int nsteps, done;
} GenState;

typedef struct GenLet { /* a let that reads a state, for a later output */
  GenName name;
  int dim; /* GD_*, or -1 for a scalar */
  int used;
} GenLet;

typedef struct Gen {
  MixcRng *r;
  GenBuf inputs, params, body;
  int nin, npar, nlet, nout, nidx;
  int F, NH; /* sizes of the fixed dims, 0: not declared */
  int grid;  /* 0: a sequence mixer; 1: over (Y, X) with causal directions; 2: directions (all) */
  GenState st[GEN_MAX_STATES];
  int nst;
  GenLet lets[GEN_MAX_LETS];
  int nlets;
  const char *ind; /* indentation of the current block */
} Gen;

static inline int gen_rnd(Gen *g, int n) {
  int k = (int)(mixc_rng_uniform(g->r) * n);
  return k < n ? k : n - 1;
}

static inline int gen_coin(Gen *g, double p) { return mixc_rng_uniform(g->r) < p; }

static inline GenName gen_decl(Gen *g, GenBuf *list, const char *prefix, int *counter, int nd,
                               int d0, int d1, const char *dflt) {
  int perdir = list == &g->inputs && g->grid == 1 && gen_coin(g, 0.25);
  GenName nm;
  snprintf(nm.s, sizeof nm.s, "%s%d", prefix, (*counter)++);
  gb_put(list, "%s%s", list->n ? ", " : "", nm.s);
  if (nd) gb_put(list, "[%s", gen_dim_name[d0]);
  if (nd > 1) gb_put(list, ", %s", gen_dim_name[d1]);
  if (nd) gb_put(list, "]");
  if (dflt) gb_put(list, " = %s", dflt);
  if (perdir) gb_put(list, " per direction");
  return nm;
}

/* A fresh input / param of rank 0, 1 or 2. */
static inline GenName gen_in(Gen *g, int nd, int d0, int d1) {
  return gen_decl(g, &g->inputs, "x", &g->nin, nd, d0, d1, NULL);
}
static inline GenName gen_par(Gen *g, int nd, int d0, int d1) {
  return gen_decl(g, &g->params, "p", &g->npar, nd, d0, d1, NULL);
}

/* A fresh summation index (unique in the whole mixer, so never reused for two dims). */
static inline GenName gen_idx(Gen *g) {
  GenName nm;
  snprintf(nm.s, sizeof nm.s, "m%d", g->nidx++);
  return nm;
}

static inline GenName gen_letname(Gen *g) {
  GenName nm;
  snprintf(nm.s, sizeof nm.s, "l%d", g->nlet++);
  return nm;
}

/* A dim for a new state, or for an output. */
static inline int gen_dim(Gen *g) { return g->F && gen_coin(g, 0.2) ? GD_F : gen_rnd(g, 3); }

/* ---- coefficients ---- */

/* A per-token scalar factor in (0, 1]. */
static inline void gen_sfac(Gen *g, GenBuf *e) {
  switch (gen_rnd(g, 7)) {
  case 0: gb_put(e, "exp(%s)", gen_in(g, 0, 0, 0).s); break;
  case 1: gb_put(e, "exp(%s)", gen_par(g, 0, 0, 0).s); break;
  case 2: gb_put(e, "sigmoid(%s)", gen_in(g, 0, 0, 0).s); break;
  case 3: gb_put(e, "0.9"); break;
  case 4: {
    GenName p = gen_par(g, 0, 0, 0), x = gen_in(g, 0, 0, 0);
    gb_put(e, "exp(-exp(%s) * softplus(%s))", p.s, x.s);
    break;
  }
  case 5: { /* a param with a default (bound or left to the default) */
    GenName p = gen_decl(g, &g->params, "p", &g->npar, 0, 0, 0, "-0.25");
    gb_put(e, "exp(%s)", p.s);
    break;
  }
  default: { /* a state-free scalar let */
    GenName l = gen_letname(g), x = gen_in(g, 0, 0, 0);
    gb_put(&g->body, "%slet %s = softplus(%s)\n", g->ind, l.s, x.s);
    gb_put(e, "exp(-%s)", l.s);
    break;
  }
  }
}

/* A per-token vector factor over dim d at index `ix`, in (0, 1]. */
static inline void gen_vfac(Gen *g, GenBuf *e, int d, const char *ix) {
  switch (gen_rnd(g, 5)) {
  case 0: gb_put(e, "exp(%s[%s])", gen_in(g, 1, d, 0).s, ix); break;
  case 1: gb_put(e, "sigmoid(%s[%s])", gen_in(g, 1, d, 0).s, ix); break;
  case 2: gb_put(e, "exp(%s[%s])", gen_par(g, 1, d, 0).s, ix); break;
  case 3: gb_put(e, "exp(0.5 * %s[%s])", gen_in(g, 1, d, 0).s, ix); break;
  default: { /* a state-free vector let */
    GenName l = gen_letname(g), x = gen_in(g, 1, d, 0);
    gb_put(&g->body, "%slet %s[a] = softplus(%s[a])\n", g->ind, l.s, x.s);
    gb_put(e, "exp(-%s[%s])", l.s, ix);
    break;
  }
  }
}

/* A beta in (0, 1) (or (0, 2) when `single`: the only rank-one term of its step). */
static inline void gen_beta(Gen *g, GenBuf *e, int single) {
  GenName x = gen_in(g, 0, 0, 0);
  switch (gen_rnd(g, single ? 4 : 3)) {
  case 0: gb_put(e, "%s", x.s); break;
  case 1: gb_put(e, "0.5 * %s", x.s); break;
  case 2: gb_put(e, "sigmoid(%s)", x.s); break;
  default: gb_put(e, "2 * %s", x.s); break;
  }
}

/* A small signed coefficient: " + c" or " - c" followed by " * ". */
static inline void gen_small(Gen *g, GenBuf *e) {
  char sign = gen_coin(g, 0.5) ? '-' : '+';
  switch (gen_rnd(g, 3)) {
  case 0: gb_put(e, " %c 0.3 * ", sign); break;
  case 1: gb_put(e, " %c 0.5 * %s * ", sign, gen_in(g, 0, 0, 0).s); break;
  default: gb_put(e, " %c 0.2 * ", sign); break;
  }
}

/* ---- linear readouts of a state ---- */

/* Append a linear readout of state s free exactly in the nf indices ix (over dims fd). It is
 * a product (no top-level + or -), so it may be multiplied without parentheses. */
static inline void gen_read(Gen *g, GenBuf *e, int s, int nf, const int *fd,
                            const char *const *ix) {
  const GenState *st = &g->st[s];
  const char *S = st->name.s;
  int R = st->d[0], C = st->d[1];
  if (nf == 0) {
    if (st->ndim == 0) {
      gb_put(e, "%s", S);
    } else if (st->ndim == 1) {
      if (R == GD_F && gen_coin(g, 0.3)) {
        gb_put(e, "%s[%d]", S, gen_rnd(g, g->F));
      } else {
        GenName m = gen_idx(g), a = gen_in(g, 1, R, 0);
        gb_put(e, "sum(%s, %s[%s] * %s[%s])", m.s, a.s, m.s, S, m.s);
      }
    } else if (R == C && gen_coin(g, 0.25)) {
      GenName m = gen_idx(g);
      gb_put(e, "sum(%s, %s[%s, %s])", m.s, S, m.s, m.s);
    } else if (R == GD_F && gen_coin(g, 0.3)) {
      GenName n = gen_idx(g), b = gen_in(g, 1, C, 0);
      gb_put(e, "sum(%s, %s[%d, %s] * %s[%s])", n.s, S, gen_rnd(g, g->F), n.s, b.s, n.s);
    } else {
      GenName m = gen_idx(g), n = gen_idx(g), a = gen_in(g, 1, R, 0), b = gen_in(g, 1, C, 0);
      gb_put(e, "sum(%s, sum(%s, %s[%s] * %s[%s, %s] * %s[%s]))", m.s, n.s, a.s, m.s, S, m.s,
             n.s, b.s, n.s);
    }
    return;
  }
  if (nf == 1) {
    int D = fd[0];
    const char *j = ix[0];
    int opt[6], n = 0;
    if (st->ndim == 1 && R == D) opt[n++] = 0, opt[n++] = 1;
    if (st->ndim == 2 && C == D) opt[n++] = 2;
    if (st->ndim == 2 && R == D) opt[n++] = 3;
    if (st->ndim == 2 && R == D && C == D) opt[n++] = 4;
    if (st->ndim == 2 && C == D && R == GD_F) opt[n++] = 5;
    if (!n || gen_coin(g, 0.1)) {
      gb_put(e, "%s[%s] * ", gen_in(g, 1, D, 0).s, j);
      gen_read(g, e, s, 0, NULL, NULL);
      return;
    }
    switch (opt[gen_rnd(g, n)]) {
    case 0: gb_put(e, "%s[%s]", S, j); break;
    case 1: gb_put(e, "%s[%s] * %s[%s]", gen_in(g, 1, D, 0).s, j, S, j); break;
    case 2: {
      GenName m = gen_idx(g), a = gen_in(g, 1, R, 0);
      gb_put(e, "sum(%s, %s[%s] * %s[%s, %s])", m.s, a.s, m.s, S, m.s, j);
      break;
    }
    case 3: {
      GenName m = gen_idx(g), a = gen_in(g, 1, C, 0);
      gb_put(e, "sum(%s, %s[%s, %s] * %s[%s])", m.s, S, j, m.s, a.s, m.s);
      break;
    }
    case 4: gb_put(e, "%s[%s, %s]", S, j, j); break;
    default: gb_put(e, "%s[%d, %s]", S, gen_rnd(g, g->F), j); break;
    }
    return;
  }
  /* nf == 2 */
  if (st->ndim == 2 && R == fd[0] && C == fd[1] && gen_coin(g, 0.8)) {
    gb_put(e, "%s[%s, %s]", S, ix[0], ix[1]);
  } else if (st->ndim == 2 && R == fd[1] && C == fd[0] && gen_coin(g, 0.8)) {
    gb_put(e, "%s[%s, %s]", S, ix[1], ix[0]);
  } else if (st->ndim == 1 && R == fd[0] && gen_coin(g, 0.8)) {
    gb_put(e, "%s[%s] * %s[%s]", S, ix[0], gen_in(g, 1, fd[1], 0).s, ix[1]);
  } else if (st->ndim == 1 && R == fd[1] && gen_coin(g, 0.8)) {
    gb_put(e, "%s[%s] * %s[%s]", gen_in(g, 1, fd[0], 0).s, ix[0], S, ix[1]);
  } else {
    gb_put(e, "%s[%s] * ", gen_in(g, 1, fd[0], 0).s, ix[0]);
    gen_read(g, e, s, 1, fd + 1, ix + 1);
  }
}

/* ---- update steps ---- */

/* A rank-one term acting on the rows of matrix state s (lhs S[i, j]). */
static inline void gen_r1_left(Gen *g, GenBuf *e, int s, int single, int plain) {
  const GenState *st = &g->st[s];
  const char *S = st->name.s;
  int R = st->d[0], C = st->d[1];
  GenName m = gen_idx(g);
  int v = plain ? 2 : gen_rnd(g, 4);
  if (v == 2) {
    GenName a = gen_in(g, 1, R, 0), b = gen_in(g, 1, R, 0);
    gen_small(g, e);
    gb_put(e, "%s[i] * sum(%s, %s[%s] * %s[%s, j])", a.s, m.s, b.s, m.s, S, m.s);
    return;
  }
  GenName k = gen_in(g, 1, R, 0);
  GenBuf beta = {0};
  gen_beta(g, &beta, single);
  if (v == 0) {
    GenName x = gen_in(g, 1, C, 0);
    gb_put(e, " + %s * %s[i] * (%s[j] - sum(%s, %s[%s] * %s[%s, j]))", beta.p, k.s, x.s, m.s, k.s,
           m.s, S, m.s);
  } else if (v == 1) { /* DeltaNet's form: the error through a let */
    GenName x = gen_in(g, 1, C, 0), l = gen_letname(g);
    gb_put(&g->body, "%slet %s[j] = %s[j] - sum(%s, %s[%s] * %s[%s, j])\n", g->ind, l.s, x.s, m.s,
           k.s, m.s, S, m.s);
    gb_put(e, " + %s * %s[i] * %s[j]", beta.p, k.s, l.s);
  } else {
    gb_put(e, " - %s * %s[i] * sum(%s, %s[%s] * %s[%s, j])", beta.p, k.s, m.s, k.s, m.s, S, m.s);
  }
  gb_free(&beta);
}

/* A rank-one term acting on the columns of matrix state s. */
static inline void gen_r1_right(Gen *g, GenBuf *e, int s, int single, int plain) {
  const GenState *st = &g->st[s];
  const char *S = st->name.s;
  int R = st->d[0], C = st->d[1];
  GenName m = gen_idx(g);
  int v = plain ? 2 : gen_rnd(g, 4);
  if (v == 2) {
    GenName y = gen_in(g, 1, C, 0), x = gen_in(g, 1, C, 0);
    gen_small(g, e);
    gb_put(e, "sum(%s, %s[i, %s] * %s[%s]) * %s[j]", m.s, S, m.s, y.s, m.s, x.s);
    return;
  }
  GenName k = gen_in(g, 1, C, 0);
  GenBuf beta = {0};
  gen_beta(g, &beta, single);
  if (v == 0) {
    GenName u = gen_in(g, 1, R, 0);
    gb_put(e, " + %s * (%s[i] - sum(%s, %s[i, %s] * %s[%s])) * %s[j]", beta.p, u.s, m.s, S, m.s,
           k.s, m.s, k.s);
  } else if (v == 1) {
    GenName u = gen_in(g, 1, R, 0), l = gen_letname(g);
    gb_put(&g->body, "%slet %s[i] = %s[i] - sum(%s, %s[i, %s] * %s[%s])\n", g->ind, l.s, u.s, m.s,
           S, m.s, k.s, m.s);
    gb_put(e, " + %s * %s[i] * %s[j]", beta.p, l.s, k.s);
  } else {
    gb_put(e, " - %s * sum(%s, %s[i, %s] * %s[%s]) * %s[j]", beta.p, m.s, S, m.s, k.s, m.s, k.s);
  }
  gb_free(&beta);
}

/* A rank-one term of vector state s (lhs z[i]). */
static inline void gen_r1_vec(Gen *g, GenBuf *e, int s, int single) {
  const char *z = g->st[s].name.s;
  int R = g->st[s].d[0];
  GenName m = gen_idx(g);
  int v = gen_rnd(g, 4);
  if (v == 2) {
    GenName a = gen_in(g, 1, R, 0), b = gen_in(g, 1, R, 0);
    gen_small(g, e);
    gb_put(e, "%s[i] * sum(%s, %s[%s] * %s[%s])", a.s, m.s, b.s, m.s, z, m.s);
    return;
  }
  GenName k = gen_in(g, 1, R, 0);
  GenBuf beta = {0};
  gen_beta(g, &beta, single);
  if (v == 0) {
    GenName x = gen_in(g, 0, 0, 0);
    gb_put(e, " + %s * %s[i] * (%s - sum(%s, %s[%s] * %s[%s]))", beta.p, k.s, x.s, m.s, k.s, m.s,
           z, m.s);
  } else if (v == 1) {
    GenName x = gen_in(g, 0, 0, 0), l = gen_letname(g);
    gb_put(&g->body, "%slet %s = %s - sum(%s, %s[%s] * %s[%s])\n", g->ind, l.s, x.s, m.s, k.s,
           m.s, z, m.s);
    gb_put(e, " + %s * %s[i] * %s", beta.p, k.s, l.s);
  } else {
    gb_put(e, " - %s * %s[i] * sum(%s, %s[%s] * %s[%s])", beta.p, k.s, m.s, k.s, m.s, z, m.s);
  }
  gb_free(&beta);
}

/* Another state than s, or -1. */
static inline int gen_other(Gen *g, int s) {
  if (g->nst < 2) return -1;
  int o = gen_rnd(g, g->nst - 1);
  return o >= s ? o + 1 : o;
}

/* The input part of an update of state s. */
static inline void gen_input_part(Gen *g, GenBuf *e, int s) {
  const GenState *st = &g->st[s];
  int R = st->d[0], C = st->d[1];
  int v = gen_rnd(g, 8);
  if (v < 2) return; /* none */
  if (st->ndim == 0) {
    if (v < 5)
      gb_put(e, " + %s", gen_in(g, 0, 0, 0).s);
    else {
      GenName m = gen_idx(g), a = gen_in(g, 1, GD_K, 0), b = gen_in(g, 1, GD_K, 0);
      gb_put(e, " + sum(%s, %s[%s] * %s[%s])", m.s, a.s, m.s, b.s, m.s);
    }
    return;
  }
  if (st->ndim == 1) {
    switch (v) {
    case 2: case 3: gb_put(e, " + %s[i]", gen_in(g, 1, R, 0).s); break;
    case 4: gb_put(e, " + exp(%s[i])", gen_in(g, 1, R, 0).s); break;
    case 5: gb_put(e, " + %s", gen_in(g, 0, 0, 0).s); break;
    default: gb_put(e, " + sigmoid(%s[i])", gen_in(g, 1, R, 0).s); break;
    }
    return;
  }
  switch (v) {
  case 2: gb_put(e, " + %s[i] * %s[j]", gen_in(g, 1, R, 0).s, gen_in(g, 1, C, 0).s); break;
  case 3: gb_put(e, " + (1 - exp(%s[i])) * %s[j]", gen_in(g, 1, R, 0).s, gen_in(g, 1, C, 0).s); break;
  case 4: {
    GenName x = gen_in(g, 0, 0, 0), k = gen_in(g, 1, R, 0), u = gen_in(g, 1, C, 0);
    gb_put(e, " + %s * %s[i] * %s[j]", x.s, k.s, u.s);
    break;
  }
  case 5: gb_put(e, " + sigmoid(%s[i] * %s[j])", gen_in(g, 1, R, 0).s, gen_in(g, 1, C, 0).s); break;
  case 6: gb_put(e, " + 0.1 * %s[i, j]", gen_par(g, 2, R, C).s); break;
  default: gb_put(e, " + 0.2 * %s", gen_in(g, 0, 0, 0).s); break;
  }
}

/* `for h in NH { ... }`: Householder / RWKV7 steps of state s, one per iteration. */
static inline void gen_for(Gen *g, int s) {
  const GenState *st = &g->st[s];
  const char *S = st->name.s;
  int R = st->d[0], C = st->d[1];
  gb_put(&g->body, "  for h in NH {\n");
  g->ind = "    ";
  if (gen_coin(g, 0.3)) { /* a decay inside the loop */
    GenName w = gen_in(g, 1, GD_NH, 0);
    if (st->ndim == 0)
      gb_put(&g->body, "    %s = exp(%s[h]) * %s\n", S, w.s, S);
    else if (st->ndim == 1)
      gb_put(&g->body, "    %s[i] = exp(%s[h]) * %s[i]\n", S, w.s, S);
    else
      gb_put(&g->body, "    %s[i, j] = exp(%s[h]) * %s[i, j]\n", S, w.s, S);
  }
  GenName m = gen_idx(g), b = gen_in(g, 1, GD_NH, 0);
  if (st->ndim == 0) {
    gb_put(&g->body, "    %s = sigmoid(%s[h]) * %s + %s[h]\n", S, b.s, S, gen_in(g, 1, GD_NH, 0).s);
  } else if (st->ndim == 1) {
    GenName k = gen_in(g, 2, GD_NH, R), x = gen_in(g, 1, GD_NH, 0);
    gb_put(&g->body, "    %s[i] = %s[i] + sigmoid(%s[h]) * %s[h, i] * (%s[h] - sum(%s, %s[h, %s] * %s[%s]))\n",
           S, S, b.s, k.s, x.s, m.s, k.s, m.s, S, m.s);
  } else {
    switch (gen_rnd(g, 4)) {
    case 0: {
      GenName k = gen_in(g, 2, GD_NH, R), v = gen_in(g, 2, GD_NH, C);
      gb_put(&g->body,
             "    %s[i, j] = %s[i, j] + sigmoid(%s[h]) * %s[h, i] * (%s[h, j] - sum(%s, %s[h, %s] * %s[%s, j]))\n",
             S, S, b.s, k.s, v.s, m.s, k.s, m.s, S, m.s);
      break;
    }
    case 1: {
      GenName k = gen_in(g, 2, GD_NH, R), v = gen_in(g, 2, GD_NH, C), l = gen_letname(g);
      gb_put(&g->body, "    let %s[j] = %s[h, j] - sum(%s, %s[h, %s] * %s[%s, j])\n", l.s, v.s,
             m.s, k.s, m.s, S, m.s);
      gb_put(&g->body, "    %s[i, j] = %s[i, j] + sigmoid(%s[h]) * %s[h, i] * %s[j]\n", S, S, b.s,
             k.s, l.s);
      break;
    }
    case 2: {
      GenName k = gen_in(g, 2, GD_NH, C), u = gen_in(g, 2, GD_NH, R);
      gb_put(&g->body,
             "    %s[i, j] = %s[i, j] + sigmoid(%s[h]) * (%s[h, i] - sum(%s, %s[i, %s] * %s[h, %s])) * %s[h, j]\n",
             S, S, b.s, u.s, m.s, S, m.s, k.s, m.s, k.s);
      break;
    }
    default: {
      GenName a = gen_in(g, 2, GD_NH, R), c = gen_in(g, 2, GD_NH, R);
      gb_put(&g->body,
             "    %s[i, j] = %s[i, j] - 0.3 * sigmoid(%s[h]) * %s[h, i] * sum(%s, %s[h, %s] * %s[%s, j])\n",
             S, S, b.s, a.s, m.s, c.s, m.s, S, m.s);
      break;
    }
    }
  }
  gb_put(&g->body, "  }\n");
  g->ind = "  ";
}

/* The lhs of an update of state s. */
static inline void gen_lhs(Gen *g, GenBuf *e, int s) {
  const GenState *st = &g->st[s];
  gb_put(e, "%s%s", g->ind, st->name.s);
  if (st->ndim == 1) gb_put(e, "[i]");
  if (st->ndim == 2) gb_put(e, "[i, j]");
  gb_put(e, " = ");
}

/* The state read at the lhs position: S[i, j], z[i] or c. */
static inline const char *gen_self(const GenState *st, char *buf, size_t n) {
  snprintf(buf, n, "%s%s", st->name.s, st->ndim == 2 ? "[i, j]" : st->ndim == 1 ? "[i]" : "");
  return buf;
}

/* The same classes written the way a person might: factors outside parentheses, divisions,
 * repeated reads, sums of differences, summed coefficients, chains of lets. */
static inline void gen_odd(Gen *g, GenBuf *e, int s) {
  const GenState *st = &g->st[s];
  const char *S = st->name.s;
  int R = st->d[0], C = st->d[1];
  char self[64];
  gen_self(st, self, sizeof self);
  if (st->ndim == 0) {
    switch (gen_rnd(g, 4)) {
    case 0:
      gb_put(e, "(%s + %s) * ", S, gen_in(g, 0, 0, 0).s);
      gen_sfac(g, e);
      break;
    case 1: gb_put(e, "%s / (1 + %s) - 0.5 * %s", S, gen_in(g, 0, 0, 0).s, S); break;
    case 2: gb_put(e, "%s - %s * %s", S, gen_in(g, 0, 0, 0).s, S); break;
    default: gb_put(e, "-0.5 * %s + %s", S, S); break;
    }
    return;
  }
  /* vectors: the row index only; matrices: `, j` after the row index */
  const char *cj = st->ndim == 2 ? ", j" : "";
  int v = gen_rnd(g, 16);
  if (st->ndim == 1 && (v == 4 || v == 9 || v == 10 || v == 12 || v == 13 || v == 15)) v = 1;
  if (v == 13 && R != C) v = 4;
  switch (v) {
  case 0: /* a decay applied to the state plus its input */
    gen_vfac(g, e, R, "i");
    if (st->ndim == 2)
      gb_put(e, " * (%s + %s[i] * %s[j])", self, gen_in(g, 1, R, 0).s, gen_in(g, 1, C, 0).s);
    else
      gb_put(e, " * (%s + %s[i])", self, gen_in(g, 1, R, 0).s);
    break;
  case 1: { /* a delta step, then a scalar factor outside the parentheses */
    GenName m = gen_idx(g), k = gen_in(g, 1, R, 0);
    GenBuf beta = {0};
    gen_beta(g, &beta, 1);
    gb_put(e, "(%s - %s * %s[i] * sum(%s, %s[%s] * %s[%s%s])) * ", self, beta.p, k.s, m.s, k.s,
           m.s, S, m.s, cj);
    gen_sfac(g, e);
    gb_free(&beta);
    break;
  }
  case 2: gb_put(e, "%s / (1 + %s)", self, gen_in(g, 0, 0, 0).s); break;
  case 3: gb_put(e, "-0.5 * %s + %s", self, self); break;
  case 4: { /* a sum of a difference of two outer products: rank two, or dense */
    GenName m = gen_idx(g);
    if (gen_coin(g, 0.5)) {
      GenName a = gen_in(g, 1, R, 0), b = gen_in(g, 1, R, 0), c = gen_in(g, 1, R, 0),
              d = gen_in(g, 1, R, 0);
      gb_put(e, "sum(%s, (%s[i] * %s[%s] - 0.5 * %s[i] * %s[%s]) * %s[%s, j]) * 0.3 + %s * 0.5",
             m.s, a.s, b.s, m.s, c.s, d.s, m.s, S, m.s, self);
    } else {
      GenName a = gen_in(g, 1, C, 0), b = gen_in(g, 1, C, 0), c = gen_in(g, 1, C, 0),
              d = gen_in(g, 1, C, 0);
      gb_put(e, "0.3 * sum(%s, %s[i, %s] * (%s[%s] * %s[j] - 0.5 * %s[%s] * %s[j])) + 0.5 * %s",
             m.s, S, m.s, a.s, m.s, b.s, c.s, m.s, d.s, self);
    }
    break;
  }
  case 5: { /* a summed coefficient */
    GenName m = gen_idx(g), x = gen_in(g, 1, R, 0);
    gb_put(e, "sum(%s, %s[%s]) * %s * 0.2", m.s, x.s, m.s, self);
    break;
  }
  case 6: { /* a diagonal written as 1 - beta k_i^2 */
    GenName k = gen_in(g, 1, R, 0);
    GenBuf beta = {0};
    gen_beta(g, &beta, 0);
    gb_put(e, "%s * (1 - %s * %s[i] * %s[i])", self, beta.p, k.s, k.s);
    gb_free(&beta);
    break;
  }
  case 7: { /* two reads of the same element inside one sum */
    GenName m = gen_idx(g), x = gen_in(g, 1, R, 0), k = gen_in(g, 1, R, 0);
    gb_put(e, "%s + 0.3 * %s[i] * sum(%s, %s[%s] * (%s[%s%s] + 0.5 * %s[%s%s]))", self, x.s, m.s,
           k.s, m.s, S, m.s, cj, S, m.s, cj);
    break;
  }
  case 8: { /* a rank-one term whose contracted vector is all ones */
    GenName m = gen_idx(g), x = gen_in(g, 1, R, 0);
    gb_put(e, "%s + 0.3 * sum(%s, %s[i] * %s[%s%s])", self, m.s, x.s, S, m.s, cj);
    break;
  }
  case 9: /* diagonals on both sides and a scalar, all as factors */
    gb_put(e, "%s * ", self);
    gen_vfac(g, e, R, "i");
    gb_put(e, " * ");
    gen_vfac(g, e, C, "j");
    gb_put(e, " * ");
    gen_sfac(g, e);
    break;
  case 10: { /* the diagonal's factor repeated in the rank-one term */
    GenBuf f = {0};
    gen_vfac(g, &f, R, "i");
    GenName m = gen_idx(g), k = gen_in(g, 1, R, 0);
    gb_put(e, "%s * %s - 0.3 * %s * %s[i] * sum(%s, %s[%s] * %s[%s, j])", f.p, self, f.p, k.s,
           m.s, k.s, m.s, S, m.s);
    gb_free(&f);
    break;
  }
  case 11: gb_put(e, "%s - %s * %s", self, gen_in(g, 0, 0, 0).s, self); break;
  case 12: gb_put(e, "(exp(%s[i, j]) + 0.1) * %s * 0.8", gen_in(g, 2, R, C).s, self); break;
  case 13: gb_put(e, "(%s[i, j] + %s[j, i]) * 0.4", S, S); break;
  case 14: { /* the delta rule through a chain of two lets */
    GenName m = gen_idx(g), k = gen_in(g, 1, R, 0), l1 = gen_letname(g), l2 = gen_letname(g);
    GenBuf beta = {0};
    gen_beta(g, &beta, 1);
    if (st->ndim == 2) {
      GenName x = gen_in(g, 1, C, 0);
      gb_put(&g->body, "%slet %s[j] = sum(%s, %s[%s] * %s[%s, j])\n", g->ind, l1.s, m.s, k.s, m.s,
             S, m.s);
      gb_put(&g->body, "%slet %s[j] = %s[j] - %s[j]\n", g->ind, l2.s, x.s, l1.s);
      gb_put(e, "%s + %s * %s[i] * %s[j]", self, beta.p, k.s, l2.s);
    } else {
      GenName x = gen_in(g, 0, 0, 0);
      gb_put(&g->body, "%slet %s = sum(%s, %s[%s] * %s[%s])\n", g->ind, l1.s, m.s, k.s, m.s, S,
             m.s);
      gb_put(&g->body, "%slet %s = %s - %s\n", g->ind, l2.s, x.s, l1.s);
      gb_put(e, "%s + %s * %s[i] * %s", self, beta.p, k.s, l2.s);
    }
    gb_free(&beta);
    break;
  }
  default: { /* a right rank-one term inside scaled parentheses */
    GenName m = gen_idx(g), y = gen_in(g, 1, C, 0), x = gen_in(g, 1, C, 0);
    gb_put(e, "0.5 * (%s - 0.3 * sum(%s, %s[i, %s] * %s[%s]) * %s[j]) + 0.5 * %s", self, m.s, S,
           m.s, y.s, m.s, x.s, self);
    break;
  }
  }
}

/* One update of state s, aiming at transition kind `kind`. */
static inline void gen_step(Gen *g, int s, int kind) {
  const GenState *st = &g->st[s];
  const char *S = st->name.s;
  int R = st->d[0], C = st->d[1];
  char self[64];
  gen_self(st, self, sizeof self);
  if (g->grid == 2) kind = GK_ID; /* directions (all): identity transitions only */
  if (kind == GK_FOR) {
    gen_for(g, s);
    return;
  }
  /* kinds that do not exist for this shape */
  if (st->ndim < 2 && (kind == GK_DIAG_R || kind == GK_DIAG_B || kind == GK_EW)) kind = GK_DIAG_L;
  if (st->ndim < 2 && kind == GK_DPLR_R) kind = GK_DPLR_L;
  if (st->ndim == 0 && (kind == GK_DIAG_L || kind == GK_DPLR_L)) kind = GK_SCALAR;
  if (st->ndim == 0 && kind == GK_GENERAL && g->nst < 2) kind = GK_SCALAR;
  GenBuf e = {0};
  switch (kind) {
  case GK_ODD:
  case GK_ODD2: gen_odd(g, &e, s); break;
  case GK_ID: gb_put(&e, "%s", self); break;
  case GK_SCALAR:
    if (gen_coin(g, 0.5)) {
      gen_sfac(g, &e);
      gb_put(&e, " * %s", self);
    } else {
      gb_put(&e, "%s * ", self);
      gen_sfac(g, &e);
    }
    break;
  case GK_DIAG_L:
    gen_vfac(g, &e, R, "i");
    gb_put(&e, " * %s", self);
    break;
  case GK_DIAG_R:
    gb_put(&e, "%s * ", self);
    gen_vfac(g, &e, C, "j");
    break;
  case GK_DIAG_B:
    if (gen_coin(g, 0.75)) {
      gen_vfac(g, &e, R, "i");
      gb_put(&e, " * %s * ", self);
      gen_vfac(g, &e, C, "j");
    } else {
      gb_put(&e, "exp(%s[i] + %s[j]) * %s", gen_in(g, 1, R, 0).s, gen_in(g, 1, C, 0).s, self);
    }
    break;
  case GK_EW:
    if (gen_coin(g, 0.5))
      gb_put(&e, "exp(%s[i, j]) * %s", gen_in(g, 2, R, C).s, self);
    else {
      GenName d = gen_in(g, 1, C, 0), A = gen_par(g, 2, R, C);
      gb_put(&e, "exp(softplus(%s[j]) * %s[i, j]) * %s", d.s, A.s, self);
    }
    break;
  case GK_DPLR_L:
  case GK_DPLR_R: {
    int left = kind == GK_DPLR_L, rank = 1 + gen_rnd(g, 3);
    switch (gen_rnd(g, 3)) {
    case 0: gb_put(&e, "%s", self); break;
    case 1: gen_sfac(g, &e); gb_put(&e, " * %s", self); break;
    default:
      if (left) {
        gen_vfac(g, &e, R, "i");
        gb_put(&e, " * %s", self);
      } else {
        gb_put(&e, "%s * ", self);
        gen_vfac(g, &e, C, "j");
      }
      break;
    }
    for (int r = 0; r < rank; r++) {
      if (st->ndim == 1)
        gen_r1_vec(g, &e, s, rank == 1);
      else if (left)
        gen_r1_left(g, &e, s, rank == 1, 0);
      else
        gen_r1_right(g, &e, s, rank == 1, 0);
    }
    break;
  }
  default: { /* GK_GENERAL */
    int opt[12], n = 0, o = gen_other(g, s);
    if (o >= 0) opt[n++] = 4, opt[n++] = 5;
    if (st->ndim == 0) {
      /* only couplings */
    } else if (st->ndim == 1) {
      opt[n++] = 1;
      opt[n++] = 8;
      if (R == GD_F) opt[n++] = 9;
    } else {
      if (R == C) opt[n++] = 0, opt[n++] = 0;
      opt[n++] = 1;
      opt[n++] = 2;
      opt[n++] = 3;
      opt[n++] = 6;
      opt[n++] = 7;
      opt[n++] = 8;
      opt[n++] = 10;
      if (R == GD_F || C == GD_F) opt[n++] = 9;
    }
    switch (opt[gen_rnd(g, n)]) {
    case 0: /* a transposed read of a square state */
      switch (gen_rnd(g, 3)) {
      case 0: gb_put(&e, "0.5 * %s[j, i] + 0.4 * %s[i, j]", S, S); break;
      case 1: gb_put(&e, "0.7 * %s[j, i]", S); break;
      default: gen_sfac(g, &e); gb_put(&e, " * %s[j, i]", S); break;
      }
      break;
    case 1: { /* a dense multiplication on the left */
      GenName M = gen_coin(g, 0.5) ? gen_par(g, 2, R, R) : gen_in(g, 2, R, R), m = gen_idx(g);
      if (st->ndim == 1)
        gb_put(&e, "0.8 * %s + 0.2 * sum(%s, %s[i, %s] * %s[%s])", self, m.s, M.s, m.s, S, m.s);
      else
        gb_put(&e, "0.8 * %s + 0.2 * sum(%s, %s[i, %s] * %s[%s, j])", self, m.s, M.s, m.s, S, m.s);
      break;
    }
    case 2: { /* ... on the right */
      GenName M = gen_coin(g, 0.5) ? gen_par(g, 2, C, C) : gen_in(g, 2, C, C), m = gen_idx(g);
      gb_put(&e, "0.8 * %s + 0.2 * sum(%s, %s[i, %s] * %s[%s, j])", self, m.s, S, m.s, M.s, m.s);
      break;
    }
    case 3: /* rank-one terms on both sides */
      gb_put(&e, "%s", self);
      gen_r1_left(g, &e, s, 0, 1);
      gen_r1_right(g, &e, s, 0, 1);
      break;
    case 4: { /* a coupling to another state */
      int fd[2] = {R, C};
      const char *ix[2] = {"i", "j"};
      if (gen_coin(g, 0.5)) gen_sfac(g, &e); else gb_put(&e, "0.5");
      gb_put(&e, " * %s + 0.3 * ", self);
      gen_read(g, &e, o, st->ndim, fd, ix);
      break;
    }
    case 5: { /* ... through a let */
      GenName l = gen_letname(g);
      int fd[2] = {R, C};
      const char *ix[2] = {"i", "j"};
      GenBuf le = {0};
      gen_read(g, &le, o, st->ndim, fd, ix);
      if (st->ndim == 2)
        gb_put(&g->body, "%slet %s[i, j] = %s\n", g->ind, l.s, le.p);
      else if (st->ndim == 1)
        gb_put(&g->body, "%slet %s[i] = %s\n", g->ind, l.s, le.p);
      else
        gb_put(&g->body, "%slet %s = %s\n", g->ind, l.s, le.p);
      gb_free(&le);
      gb_put(&e, "0.6 * %s - 0.3 * %s%s", self, l.s,
             st->ndim == 2 ? "[i, j]" : st->ndim == 1 ? "[i]" : "");
      break;
    }
    case 6: /* a diagonal on the left, a rank-one term on the right */
      gen_vfac(g, &e, R, "i");
      gb_put(&e, " * %s", self);
      gen_r1_right(g, &e, s, 0, 1);
      break;
    case 7: /* element-wise, plus a rank-one term */
      gb_put(&e, "exp(%s[i, j]) * %s", gen_in(g, 2, R, C).s, self);
      gen_r1_left(g, &e, s, 0, 1);
      break;
    case 8: { /* a let that reads the state before an earlier update of this token */
      GenName l = gen_letname(g), m = gen_idx(g), k = gen_in(g, 1, R, 0);
      GenBuf beta = {0}, f = {0};
      gen_beta(g, &beta, 0);
      if (st->ndim == 2) {
        gb_put(&g->body, "%slet %s[j] = sum(%s, %s[%s] * %s[%s, j])\n", g->ind, l.s, m.s, k.s, m.s,
               S, m.s);
        gen_sfac(g, &f);
        gb_put(&g->body, "%s%s[i, j] = %s * %s[i, j]\n", g->ind, S, f.p, S);
        gb_put(&e, "%s - %s * %s[i] * %s[j]", self, beta.p, k.s, l.s);
      } else {
        gb_put(&g->body, "%slet %s = sum(%s, %s[%s] * %s[%s])\n", g->ind, l.s, m.s, k.s, m.s, S,
               m.s);
        gen_sfac(g, &f);
        gb_put(&g->body, "%s%s[i] = %s * %s[i]\n", g->ind, S, f.p, S);
        gb_put(&e, "%s - %s * %s[i] * %s", self, beta.p, k.s, l.s);
      }
      gb_free(&beta);
      gb_free(&f);
      break;
    }
    case 9: /* a constant index into the fixed dim F */
      if (st->ndim == 1)
        gb_put(&e, "%s + 0.2 * %s[%d]", self, S, gen_rnd(g, g->F));
      else if (R == GD_F)
        gb_put(&e, "%s + 0.2 * %s[%d, j]", self, S, gen_rnd(g, g->F));
      else
        gb_put(&e, "%s + 0.2 * %s[i, %d]", self, S, gen_rnd(g, g->F));
      break;
    default: { /* every element of the state at once */
      GenName m = gen_idx(g), n2 = gen_idx(g), x = gen_in(g, 1, R, 0), y = gen_in(g, 1, C, 0);
      gb_put(&e, "%s + 0.1 * %s[i] * %s[j] * sum(%s, sum(%s, %s[%s, %s]))", self, x.s, y.s, m.s,
             n2.s, S, m.s, n2.s);
      break;
    }
    }
    break;
  }
  }
  gen_input_part(g, &e, s);
  GenBuf line = {0};
  gen_lhs(g, &line, s);
  gb_put(&g->body, "%s%s\n", line.p, e.p);
  gb_free(&line);
  gb_free(&e);
}

/* ---- lets read by outputs, and outputs ---- */

/* `let l = <readout>` at this point of the token, for an output further down. */
static inline void gen_state_let(Gen *g) {
  if (g->nlets >= GEN_MAX_LETS || !g->nst) return;
  int s = gen_rnd(g, g->nst);
  const GenState *st = &g->st[s];
  GenLet *lt = &g->lets[g->nlets++];
  lt->name = gen_letname(g);
  lt->used = 0;
  lt->dim = st->ndim && gen_coin(g, 0.7) ? st->d[gen_rnd(g, st->ndim)] : -1;
  GenBuf e = {0};
  const char *ix[1] = {"j"};
  /* A function of a whole readout is allowed, since the let is read by outputs only (a
   * vector let might be summed by its output: a sum of functions of state entries is not). */
  int nonlinear = lt->dim < 0 && gen_coin(g, 0.3);
  if (nonlinear) gb_put(&e, "tanh(");
  gen_read(g, &e, s, lt->dim >= 0, &lt->dim, ix);
  if (nonlinear) gb_put(&e, ")");
  if (lt->dim >= 0)
    gb_put(&g->body, "  let %s[j] = %s\n", lt->name.s, e.p);
  else
    gb_put(&g->body, "  let %s = %s\n", lt->name.s, e.p);
  gb_free(&e);
}

/* An atom of an output free in the nf indices ix: a let's value. */
static inline void gen_let_atom(Gen *g, GenBuf *e, GenLet *lt, int nf, const int *fd,
                                const char *const *ix) {
  lt->used = 1;
  if (nf == 0) {
    if (lt->dim < 0) {
      gb_put(e, "%s", lt->name.s);
    } else {
      GenName m = gen_idx(g);
      gb_put(e, "sum(%s, %s[%s])", m.s, lt->name.s, m.s);
    }
    return;
  }
  if (lt->dim == fd[nf - 1]) {
    gb_put(e, "%s[%s]", lt->name.s, ix[nf - 1]);
    if (nf == 2) gb_put(e, " * %s[%s]", gen_in(g, 1, fd[0], 0).s, ix[0]);
    return;
  }
  for (int k = 0; k < nf; k++) gb_put(e, "%s[%s] * ", gen_in(g, 1, fd[k], 0).s, ix[k]);
  gen_let_atom(g, e, lt, 0, NULL, NULL);
}

static inline void gen_output(Gen *g, int final) {
  int nf = gen_rnd(g, 10), fd[2];
  nf = nf < 2 ? 0 : nf < 8 ? 1 : 2;
  const char *ix2[2] = {"i", "j"}, *ix1[1] = {"j"};
  const char *const *ix = nf == 2 ? ix2 : ix1;
  int s0 = g->nst ? gen_rnd(g, g->nst) : -1;
  if (nf == 2 && s0 >= 0 && g->st[s0].ndim == 2 && gen_coin(g, 0.7)) {
    fd[0] = g->st[s0].d[0];
    fd[1] = g->st[s0].d[1];
  } else {
    for (int k = 0; k < nf; k++)
      fd[k] = s0 >= 0 && g->st[s0].ndim > k && gen_coin(g, 0.7) ? g->st[s0].d[k] : gen_dim(g);
  }
  GenBuf e = {0};
  int natoms = 1 + gen_rnd(g, 3);
  for (int a = 0; a < natoms || (final && a < natoms + g->nlets); a++) {
    GenLet *lt = NULL;
    for (int k = 0; k < g->nlets && !lt; k++)
      if (!g->lets[k].used && (final || gen_coin(g, 0.5))) lt = &g->lets[k];
    if (a >= natoms && !lt) break;
    if (a) gb_put(&e, gen_coin(g, 0.5) ? " + " : " - ");
    if (lt) {
      gen_let_atom(g, &e, lt, nf, fd, ix);
    } else if (g->nst && gen_coin(g, 0.8)) {
      int s = gen_rnd(g, g->nst);
      const GenState *st = &g->st[s];
      if (nf == 1 && st->ndim == 2 && st->d[1] == fd[0] && gen_coin(g, 0.25)) {
        /* RWKV6's bonus: state and per-token values inside one readout */
        GenName m = gen_idx(g), q = gen_in(g, 1, st->d[0], 0), u = gen_par(g, 1, st->d[0], 0),
                k = gen_in(g, 1, st->d[0], 0), v = gen_in(g, 1, fd[0], 0);
        gb_put(&e, "sum(%s, %s[%s] * (%s[%s, j] + %s[%s] * %s[%s] * %s[j]))", m.s, q.s, m.s,
               st->name.s, m.s, u.s, m.s, k.s, m.s, v.s);
      } else if (gen_coin(g, 0.15)) {
        gb_put(&e, "tanh(");
        gen_read(g, &e, s, nf, fd, ix);
        gb_put(&e, ")");
      } else {
        if (gen_coin(g, 0.3)) gb_put(&e, "0.5 * ");
        gen_read(g, &e, s, nf, fd, ix);
      }
    } else if (nf == 0) {
      gb_put(&e, "softplus(%s)", gen_in(g, 0, 0, 0).s);
    } else if (nf == 1) {
      gb_put(&e, "%s[j] * %s[j]", gen_par(g, 1, fd[0], 0).s, gen_in(g, 1, fd[0], 0).s);
    } else {
      gb_put(&e, "%s[i] * %s[j]", gen_in(g, 1, fd[0], 0).s, gen_in(g, 1, fd[1], 0).s);
    }
  }
  GenBuf w = {0};
  if (g->nst && gen_coin(g, 0.5)) { /* a normaliser, a product, or a function of readouts */
    GenBuf d = {0};
    gen_read(g, &d, gen_rnd(g, g->nst), 0, NULL, NULL);
    switch (gen_rnd(g, 6)) {
    case 0: gb_put(&w, "(%s) / (1 + abs(%s))", e.p, d.p); break;
    case 1: gb_put(&w, "(%s) / (1 + %s * %s)", e.p, d.p, d.p); break;
    case 2: gb_put(&w, "(%s) / (2 + tanh(%s))", e.p, d.p); break;
    case 3: gb_put(&w, "(%s) / max(%s, 1)", e.p, d.p); break;
    case 4: gb_put(&w, "(%s) * (%s)", e.p, d.p); break;
    default: gb_put(&w, "silu(%s) + sigmoid(%s)", e.p, d.p); break;
    }
    gb_free(&d);
  } else {
    gb_put(&w, "%s", e.p);
  }
  GenName o;
  snprintf(o.s, sizeof o.s, "o%d", g->nout++);
  if (nf == 0) gb_put(&g->body, "  output %s = %s\n", o.s, w.p);
  if (nf == 1) gb_put(&g->body, "  output %s[j] = %s\n", o.s, w.p);
  if (nf == 2) gb_put(&g->body, "  output %s[i, j] = %s\n", o.s, w.p);
  gb_free(&e);
  gb_free(&w);
}

/* ---- a whole mixer ---- */

/* A random mixer named `name`, as malloc'd source text. */
static inline char *gen_mixer_text(MixcRng *r, const char *name) {
  Gen g;
  memset(&g, 0, sizeof g);
  g.r = r;
  g.ind = "  ";
  g.F = gen_coin(&g, 0.3) ? 1 + gen_rnd(&g, 3) : 0;
  g.NH = gen_coin(&g, 0.35) ? 1 + gen_rnd(&g, 3) : 0;
  g.grid = gen_coin(&g, 0.15) ? 1 + gen_coin(&g, 0.25) : 0;
  g.nst = 1 + gen_rnd(&g, GEN_MAX_STATES);
  GenBuf states = {0};
  for (int s = 0; s < g.nst; s++) {
    GenState *st = &g.st[s];
    int u = gen_rnd(&g, 20);
    st->ndim = u < 11 ? 2 : u < 17 ? 1 : 0;
    st->d[0] = gen_dim(&g);
    st->d[1] = st->ndim < 2 ? 0 : gen_coin(&g, 0.35) ? st->d[0] : gen_dim(&g);
    snprintf(st->name.s, sizeof st->name.s, "%s%d", st->ndim == 2 ? "S" : st->ndim ? "z" : "c", s);
    st->nsteps = gen_coin(&g, 0.06) ? 0 : 1 + gen_rnd(&g, st->ndim ? 3 : 2);
    gb_put(&states, "%s%s", s ? ", " : "", st->name.s);
    if (st->ndim) gb_put(&states, "[%s", gen_dim_name[st->d[0]]);
    if (st->ndim > 1) gb_put(&states, ", %s", gen_dim_name[st->d[1]]);
    if (st->ndim) gb_put(&states, "]");
  }
  int left = 0;
  for (int s = 0; s < g.nst; s++) left += g.st[s].nsteps;
  int target = 1 + gen_rnd(&g, 3);
  if (gen_coin(&g, 0.25)) gen_output(&g, 0); /* an output before any update */
  while (left) {
    if (g.nout < target && gen_coin(&g, 0.2)) gen_output(&g, 0);
    if (gen_coin(&g, 0.15)) gen_state_let(&g);
    int pick = gen_rnd(&g, left), s = 0;
    while (pick >= g.st[s].nsteps - g.st[s].done) pick -= g.st[s].nsteps - g.st[s].done, s++;
    int kind = gen_rnd(&g, GK__N);
    if (kind == GK_FOR && !g.NH) kind = GK_DPLR_L;
    gen_step(&g, s, kind);
    g.st[s].done++;
    left--;
  }
  int pending = 0;
  for (int k = 0; k < g.nlets; k++) pending |= !g.lets[k].used;
  if (!g.nout || pending || gen_coin(&g, 0.8)) gen_output(&g, 1);

  GenBuf t = {0};
  gb_put(&t, "mixer %s ", name);
  if (g.grid == 2) gb_put(&t, "over (Y, X) directions (all) ");
  if (g.grid == 1) { /* 1 to 4 distinct directions in a random order */
    static const char *const dirs[4] = {"row", "-row", "col", "-col"};
    int order[4] = {0, 1, 2, 3}, nd = 1 + gen_rnd(&g, 4);
    for (int k = 3; k > 0; k--) {
      int o = gen_rnd(&g, k + 1), tmp = order[k];
      order[k] = order[o];
      order[o] = tmp;
    }
    gb_put(&t, "over (Y, X) directions (");
    for (int k = 0; k < nd; k++) gb_put(&t, "%s%s", k ? ", " : "", dirs[order[k]]);
    gb_put(&t, ") ");
    if (nd > 1 || gen_coin(&g, 0.3)) gb_put(&t, "combine %s ", gen_coin(&g, 0.5) ? "sum" : "mean");
  }
  gb_put(&t, "{\n  dim K, V, P");
  if (g.F) gb_put(&t, ", F = %d", g.F);
  if (g.NH) gb_put(&t, ", NH = %d", g.NH);
  gb_put(&t, "\n");
  if (g.inputs.n) gb_put(&t, "  input %s\n", g.inputs.p);
  if (g.params.n) gb_put(&t, "  param %s\n", g.params.p);
  gb_put(&t, "  state %s\n%s}\n", states.p, g.body.n ? g.body.p : "");
  gb_free(&states);
  gb_free(&g.inputs);
  gb_free(&g.params);
  gb_free(&g.body);
  return t.p;
}

#endif
