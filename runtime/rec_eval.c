/* The recurrence-IR evaluator (see rec_eval.h).
 *
 * Per sequence, head and scan direction, each token: compute the prelude lets, then run the
 * events (update steps and outputs) in textual order. Every state keeps one buffer per
 * version within the token (0: entering the token, v: after its v-th update), because a
 * readout may read an earlier version than the latest (a let read before an update and used
 * after it). Expressions follow rec.h's conventions: index positions name index variables
 * of the enclosing scope, REF_LET's `bound` is a prelude entry. */
#include "rec_eval.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct Eval {
  const RecMixer *rm;
  const Mixer *m;
  const RefBinding *b;
  Arena arena;
  int64_t *dimsz;  /* per symbol */
  int64_t *feat;   /* per symbol: product of its dims */
  double **letv;   /* per prelude entry */
  double ***ver;   /* per state slot: nsteps + 1 version buffers */
  int64_t *rows, *cols; /* per state slot */
  double *scratch; /* a step's vectors (slot_of), each `big` long */
  int64_t big;     /* the longest state side */
  double a;        /* a scalar step's factor */
  double *c;       /* per rank-one term, then per outer product: its scalar coefficient */
  const double *const *in;
  int64_t env[MIXC_MAX_IVARS]; /* values of the current scope's index variables */
  const RecScope *sc;          /* the scope expressions are evaluated in */
  int64_t b_, t_, h_; /* the current token */
  int dir;            /* the current direction slot */
  int ndir;
} Eval;

static int fail(char *err, size_t n, const char *fmt, ...) {
  if (err && n) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
  }
  return 1;
}

/* ---- expressions ---- */

static int64_t position(const Eval *ev, const Expr *p) {
  return p->ref == REF_CONST ? p->sym : ev->env[p->sym];
}

/* Row-major offset of a reference's element within its symbol's features. */
static int64_t feature_offset(const Eval *ev, const Expr *e) {
  const Sym *s = &ev->m->syms[e->sym];
  int64_t off = 0;
  for (int i = 0; i < e->nargs; i++) off = off * ev->dimsz[s->shape[i]] + position(ev, e->args[i]);
  return off;
}

static double eval(Eval *ev, const Expr *e);

static double read_ref(Eval *ev, const Expr *e) {
  const RefBinding *b = ev->b;
  const Sym *s = &ev->m->syms[e->sym];
  int64_t f = feature_offset(ev, e), feat = ev->feat[e->sym];
  switch (e->ref) {
  case REF_DIM: return (double)ev->dimsz[e->sym];
  case REF_INPUT: {
    int64_t nd = s->per_direction ? ev->ndir : 1, d = s->per_direction ? ev->dir : 0;
    int64_t tok = (ev->b_ * b->T + ev->t_) * b->H + ev->h_;
    return ev->in[e->sym][(tok * nd + d) * feat + f];
  }
  case REF_PARAM:
    if (ev->in[e->sym]) return ev->in[e->sym][ev->h_ * feat + f];
    return eval(ev, s->init);
  case REF_LET: return ev->letv[e->bound][f];
  default: return NAN; /* states never appear in coefficients (rec.h) */
  }
}

static double eval(Eval *ev, const Expr *e) {
  if (!e) return 1.0; /* rec.h: a missing coefficient or vector is 1 */
  switch (e->kind) {
  case EX_NUM: return e->num;
  case EX_NAME:
  case EX_INDEX: return read_ref(ev, e);
  case EX_CALL:
    return mixc_builtin(e->fn, eval(ev, e->args[0]), e->nargs > 1 ? eval(ev, e->args[1]) : 0);
  case EX_SUM: {
    double acc = 0;
    int v = e->bound;
    int64_t n = ev->dimsz[ev->sc->ivars[v].dim];
    for (int64_t i = 0; i < n; i++) {
      ev->env[v] = i;
      acc += eval(ev, e->args[0]);
    }
    return acc;
  }
  case EX_NEG: return -eval(ev, e->args[0]);
  case EX_BIN: {
    double x = eval(ev, e->args[0]), y = eval(ev, e->args[1]);
    switch (e->op) {
    case '+': return x + y;
    case '-': return x - y;
    case '*': return x * y;
    default: return x / y;
    }
  }
  }
  return NAN;
}

static void with_scope(Eval *ev, const RecScope *sc) { ev->sc = sc; }

/* ---- terms: sum over `summed` of scale * coef * read ---- */

static double read_state(Eval *ev, const RecRead *r) {
  if (r->state < 0) return 1.0;
  int64_t i = r->nidx > 0 ? (r->idx[0].kind == RI_CONST ? r->idx[0].v : ev->env[r->idx[0].v]) : 0;
  int64_t j = r->nidx > 1 ? (r->idx[1].kind == RI_CONST ? r->idx[1].v : ev->env[r->idx[1].v]) : 0;
  return ev->ver[r->state][r->version][i * ev->cols[r->state] + j];
}

static double term_rec(Eval *ev, const RecScope *sc, const RecTerm *t, uint64_t left) {
  if (!left) return eval(ev, t->coef) * read_state(ev, &t->read);
  int v = 0;
  while (!(left >> v & 1)) v++;
  double acc = 0;
  for (int64_t i = 0; i < ev->dimsz[sc->ivars[v].dim]; i++) {
    ev->env[v] = i;
    acc += term_rec(ev, sc, t, left & ~((uint64_t)1 << v));
  }
  return acc;
}

static double terms_value(Eval *ev, const RecScope *sc, const RecTerm *t, int n) {
  double acc = 0;
  for (int k = 0; k < n; k++) acc += t[k].scale * term_rec(ev, sc, &t[k], t[k].summed);
  return acc;
}

/* ---- update steps, in the canonical form of their class ---- */

/* Evaluate e for every value of index variable v (0..n), into out. */
static void vec_of(Eval *ev, const Expr *e, int v, int64_t n, double *out) {
  for (int64_t i = 0; i < n; i++) {
    ev->env[v] = i;
    out[i] = eval(ev, e);
  }
}

/* (sum over m of y[m] * src[m, j]) for every j (left), or of src[i, m] * y[m] for every i. */
static void project(Eval *ev, const RecRankOne *lr, const double *src, int64_t R, int64_t C,
                    int left, double *y, double *out) {
  int64_t n = left ? R : C, other = left ? C : R;
  vec_of(ev, lr->y, lr->m, n, y);
  for (int64_t o = 0; o < other; o++) out[o] = 0;
  for (int64_t mm = 0; mm < n; mm++)
    for (int64_t o = 0; o < other; o++) out[o] += y[mm] * (left ? src[mm * C + o] : src[o * C + mm]);
}

/* The step's vectors, each evaluated once per step rather than once per element:
 * [0] the left diagonal over rows, [1] the right diagonal over columns, then per rank-one
 * term its x and its projection, then per outer product its u and w. */
static double *slot_of(Eval *ev, int k) { return ev->scratch + (int64_t)k * ev->big; }

static void prepare(Eval *ev, const RecStep *st, const double *src, int64_t R, int64_t C) {
  int left = st->side == RS_LEFT || st->side == RS_BOTH;
  int right = st->side == RS_RIGHT || st->side == RS_BOTH;
  if (st->cls == RC_DIAG || st->cls == RC_DPLR) {
    if (left) vec_of(ev, st->dl, 0, R, slot_of(ev, 0));
    if (right) vec_of(ev, st->dr, 1, C, slot_of(ev, 1));
  }
  for (int r = 0; st->cls == RC_DPLR && r < st->nlr; r++) {
    const RecRankOne *lr = &st->lr[r];
    vec_of(ev, lr->x, left ? 0 : 1, left ? R : C, slot_of(ev, 2 + 2 * r));
    project(ev, lr, src, R, C, left, slot_of(ev, 2 + 2 * st->nlr + 2 * st->nouter),
            slot_of(ev, 3 + 2 * r));
  }
  for (int k = 0; k < st->nouter; k++) {
    int base = 2 + 2 * (st->cls == RC_DPLR ? st->nlr : 0) + 2 * k;
    vec_of(ev, st->outer[k].u, 0, R, slot_of(ev, base));
    if (st->scope.nlhs > 1) vec_of(ev, st->outer[k].w, 1, C, slot_of(ev, base + 1));
    else slot_of(ev, base + 1)[0] = 1.0;
  }
}

static double linear_part(Eval *ev, const RecStep *st, double s, int64_t i, int64_t j) {
  switch (st->cls) {
  case RC_IDENTITY: return s;
  case RC_SCALAR: return ev->a * s;
  case RC_DIAG:
    return (st->side == RS_RIGHT ? 1.0 : slot_of(ev, 0)[i]) *
           (st->side == RS_LEFT ? 1.0 : slot_of(ev, 1)[j]) * s;
  case RC_DPLR: {
    int left = st->side == RS_LEFT;
    double acc = (left ? slot_of(ev, 0)[i] : slot_of(ev, 1)[j]) * s;
    for (int r = 0; r < st->nlr; r++) {
      const RecRankOne *lr = &st->lr[r];
      double x = slot_of(ev, 2 + 2 * r)[left ? i : j], p = slot_of(ev, 3 + 2 * r)[left ? j : i];
      acc += lr->scale * ev->c[r] * x * p;
    }
    return acc;
  }
  case RC_ELEMENTWISE: return eval(ev, st->ew) * s;
  case RC_GENERAL: return terms_value(ev, &st->scope, st->terms, st->nterms);
  }
  return NAN;
}

static double input_part(Eval *ev, const RecStep *st, int64_t i, int64_t j) {
  double acc = 0;
  for (int k = 0; k < st->nouter; k++) {
    int base = 2 + 2 * (st->cls == RC_DPLR ? st->nlr : 0) + 2 * k;
    acc += ev->c[st->nlr + k] * slot_of(ev, base)[i] * slot_of(ev, base + 1)[st->scope.nlhs > 1 ? j : 0];
  }
  return st->nadd ? acc + terms_value(ev, &st->scope, st->add, st->nadd) : acc;
}

static void run_step(Eval *ev, int slot, const RecStep *st) {
  int64_t R = ev->rows[slot], C = ev->cols[slot];
  const double *src = ev->ver[slot][st->version];
  double *dst = ev->ver[slot][st->version + 1];
  with_scope(ev, &st->scope);
  /* Scalars first: the factor of a scalar step and each term's coefficient. */
  ev->a = st->cls == RC_SCALAR ? eval(ev, st->a) : 1.0;
  for (int r = 0; st->cls == RC_DPLR && r < st->nlr; r++) ev->c[r] = eval(ev, st->lr[r].c);
  for (int k = 0; k < st->nouter; k++)
    ev->c[st->nlr + k] = st->outer[k].scale * eval(ev, st->outer[k].c);
  prepare(ev, st, src, R, C);
  for (int64_t i = 0; i < R; i++)
    for (int64_t j = 0; j < C; j++) {
      ev->env[0] = i;
      if (st->scope.nlhs > 1) ev->env[1] = j;
      dst[i * C + j] = linear_part(ev, st, src[i * C + j], i, j) + input_part(ev, st, i, j);
    }
}

/* ---- outputs ---- */

static double eval_out(Eval *ev, const RecOutput *o, const RecOut *n) {
  switch (n->kind) {
  case RO_OPAQUE: return eval(ev, n->e);
  case RO_READOUT:
    return terms_value(ev, &o->scope, n->terms, n->nterms) + (n->konst ? eval(ev, n->konst) : 0);
  case RO_NEG: return -eval_out(ev, o, n->args[0]);
  case RO_CALL:
    return mixc_builtin(n->fn, eval_out(ev, o, n->args[0]),
                        n->nargs > 1 ? eval_out(ev, o, n->args[1]) : 0);
  case RO_SUM: {
    double acc = 0;
    for (int64_t i = 0; i < ev->dimsz[o->scope.ivars[n->bound].dim]; i++) {
      ev->env[n->bound] = i;
      acc += eval_out(ev, o, n->args[0]);
    }
    return acc;
  }
  case RO_BIN: {
    double x = eval_out(ev, o, n->args[0]), y = eval_out(ev, o, n->args[1]);
    switch (n->op) {
    case '+': return x + y;
    case '-': return x - y;
    case '*': return x * y;
    default: return x / y;
    }
  }
  }
  return NAN;
}

/* Visit every element of a scope's left-hand side in row-major order. */
static int next_lhs(Eval *ev, const RecScope *sc) {
  for (int v = sc->nlhs - 1; v >= 0; v--) {
    if (++ev->env[v] < ev->dimsz[sc->ivars[v].dim]) return 1;
    ev->env[v] = 0;
  }
  return 0;
}

static void run_output(Eval *ev, const RecOutput *o, int accumulate) {
  const RefBinding *b = ev->b;
  int64_t feat = ev->feat[o->sym];
  double *out = b->out[o->sym] + ((ev->b_ * b->T + ev->t_) * b->H + ev->h_) * feat;
  with_scope(ev, &o->scope);
  for (int v = 0; v < o->scope.nlhs; v++) ev->env[v] = 0;
  int64_t f = 0;
  do {
    double x = eval_out(ev, o, o->root);
    out[f] = accumulate ? out[f] + x : x;
    f++;
  } while (next_lhs(ev, &o->scope));
}

static void run_prelude(Eval *ev) {
  for (int l = 0; l < ev->rm->nlets; l++) {
    const RecLet *let = &ev->rm->lets[l];
    with_scope(ev, &let->scope);
    for (int v = 0; v < let->scope.nlhs; v++) ev->env[v] = 0;
    int64_t f = 0;
    do {
      ev->letv[l][f++] = eval(ev, let->rhs);
    } while (next_lhs(ev, &let->scope));
  }
}

/* One token: prelude, then steps and/or outputs in textual order. */
static void run_token(Eval *ev, int steps, int outputs, int accumulate) {
  run_prelude(ev);
  for (int k = 0; k < ev->rm->nevents; k++) {
    const RecEvent *e = &ev->rm->events[k];
    if (e->kind == RE_STEP && steps) run_step(ev, e->a, &ev->rm->states[e->a].steps[e->b]);
    if (e->kind == RE_OUTPUT && outputs) run_output(ev, &ev->rm->outputs[e->a], accumulate);
  }
  for (int s = 0; steps && s < ev->rm->nstates; s++) {
    int n = ev->rm->states[s].nsteps;
    if (n) memcpy(ev->ver[s][0], ev->ver[s][n], (size_t)(ev->rows[s] * ev->cols[s]) * sizeof(double));
  }
}

/* ---- sequences, heads, directions ---- */

static void load_states(Eval *ev, int64_t n) {
  for (int s = 0; s < ev->rm->nstates; s++) {
    int64_t sz = ev->rows[s] * ev->cols[s];
    const double *init = ev->in[ev->rm->states[s].sym];
    for (int64_t k = 0; k < sz; k++)
      ev->ver[s][0][k] = init ? init[(n * ev->b->H + ev->h_) * sz + k] : 0.0;
  }
}

static void store_states(Eval *ev, int64_t n) {
  for (int s = 0; s < ev->rm->nstates; s++) {
    double *out = ev->b->out ? ev->b->out[ev->rm->states[s].sym] : NULL;
    int64_t sz = ev->rows[s] * ev->cols[s];
    if (out) memcpy(out + (n * ev->b->H + ev->h_) * sz, ev->ver[s][0], (size_t)sz * sizeof(double));
  }
}

static int64_t grid_token(const RefBinding *b, Direction d, int64_t k) {
  int64_t Y = b->Y, X = b->X, T = b->T;
  switch (d) {
  case DIR_ROW_REV: return T - 1 - k;
  case DIR_COL: return (k % Y) * X + k / Y;
  case DIR_COL_REV: k = T - 1 - k; return (k % Y) * X + k / Y;
  default: return k;
  }
}

static void run_grid(Eval *ev) {
  const RefBinding *b = ev->b;
  const Mixer *m = ev->m;
  for (int d = 0; d < ev->ndir; d++) {
    ev->dir = d;
    Direction dir = m->ndirs ? m->dirs[d] : DIR_ROW;
    for (int s = 0; s < ev->rm->nstates; s++) /* grid mixers start every direction at 0 */
      memset(ev->ver[s][0], 0, (size_t)(ev->rows[s] * ev->cols[s]) * sizeof(double));
    if (ev->rm->noncausal) {
      for (int64_t k = 0; k < b->T; k++) {
        ev->t_ = k;
        run_token(ev, 1, 0, 0);
      }
      for (int s = 0; s < ev->rm->nstates; s++)
        for (int v = 1; v <= ev->rm->states[s].nsteps; v++)
          memcpy(ev->ver[s][v], ev->ver[s][0], (size_t)(ev->rows[s] * ev->cols[s]) * sizeof(double));
      for (int64_t k = 0; k < b->T; k++) {
        ev->t_ = k;
        run_token(ev, 0, 1, d > 0);
      }
      continue;
    }
    for (int64_t k = 0; k < b->T; k++) {
      ev->t_ = grid_token(b, dir, k);
      run_token(ev, 1, 1, d > 0);
    }
  }
  if (m->combine != COMBINE_MEAN || ev->ndir < 2) return;
  for (int o = 0; o < ev->rm->noutputs; o++) {
    int s = ev->rm->outputs[o].sym;
    int64_t feat = ev->feat[s];
    for (int64_t t = 0; t < b->T; t++) {
      double *p = b->out[s] + ((ev->b_ * b->T + t) * b->H + ev->h_) * feat;
      for (int64_t f = 0; f < feat; f++) p[f] /= ev->ndir;
    }
  }
}

static void run_all(Eval *ev) {
  const RefBinding *b = ev->b;
  int64_t nseq = b->cu_seqlens ? b->nseq : b->B;
  for (ev->h_ = 0; ev->h_ < b->H; ev->h_++) {
    if (ev->m->ngrid) {
      for (ev->b_ = 0; ev->b_ < b->B; ev->b_++) run_grid(ev);
      continue;
    }
    for (int64_t n = 0; n < nseq; n++) {
      int64_t t0 = b->cu_seqlens ? b->cu_seqlens[n] : 0;
      int64_t t1 = b->cu_seqlens ? b->cu_seqlens[n + 1] : b->T;
      ev->b_ = b->cu_seqlens ? 0 : n;
      load_states(ev, n);
      for (ev->t_ = t0; ev->t_ < t1; ev->t_++) run_token(ev, 1, 1, 0);
      store_states(ev, n);
    }
  }
}

/* ---- setup ---- */

static int setup(Eval *ev, char *err, size_t errlen) {
  const Mixer *m = ev->m;
  Arena *a = &ev->arena;
  ev->dimsz = arena_array(a, (size_t)m->nsyms + 1, sizeof *ev->dimsz);
  ev->feat = arena_array(a, (size_t)m->nsyms + 1, sizeof *ev->feat);
  if (!ev->feat) return fail(err, errlen, "out of memory");
  for (int s = 0; s < m->nsyms; s++)
    if (m->syms[s].kind == SYM_DIM) ev->dimsz[s] = ev->b->dims ? ev->b->dims[s] : m->syms[s].fixed;
  for (int s = 0; s < m->nsyms; s++) {
    ev->feat[s] = 1;
    for (int p = 0; p < m->syms[s].rank; p++) ev->feat[s] *= ev->dimsz[m->syms[s].shape[p]];
  }
  const RecMixer *rm = ev->rm;
  ev->letv = arena_array(a, (size_t)rm->nlets + 1, sizeof *ev->letv);
  for (int l = 0; ev->letv && l < rm->nlets; l++)
    ev->letv[l] = arena_array(a, (size_t)ev->feat[rm->lets[l].sym], sizeof(double));
  ev->ver = arena_array(a, (size_t)rm->nstates + 1, sizeof *ev->ver);
  ev->rows = arena_array(a, (size_t)rm->nstates + 1, sizeof *ev->rows);
  ev->cols = arena_array(a, (size_t)rm->nstates + 1, sizeof *ev->cols);
  int64_t big = 1, maxrank = 1;
  for (int s = 0; ev->ver && ev->rows && ev->cols && s < rm->nstates; s++) {
    const RecState *st = &rm->states[s];
    ev->rows[s] = st->ndim > 0 ? ev->dimsz[st->shape[0]] : 1;
    ev->cols[s] = st->ndim > 1 ? ev->dimsz[st->shape[1]] : 1;
    if (ev->rows[s] > big) big = ev->rows[s];
    if (ev->cols[s] > big) big = ev->cols[s];
    for (int k = 0; k < st->nsteps; k++)
      if (st->steps[k].nlr + st->steps[k].nouter > maxrank)
        maxrank = st->steps[k].nlr + st->steps[k].nouter;
    ev->ver[s] = arena_array(a, (size_t)st->nsteps + 1, sizeof *ev->ver[s]);
    for (int v = 0; ev->ver[s] && v <= st->nsteps; v++)
      ev->ver[s][v] = arena_array(a, (size_t)(ev->rows[s] * ev->cols[s]), sizeof(double));
  }
  ev->big = big;
  /* slots: two diagonals, two per rank-one term or outer product, one for y */
  ev->scratch = arena_array(a, (size_t)(big * (3 + 2 * maxrank)), sizeof(double));
  ev->c = arena_array(a, (size_t)maxrank, sizeof(double));
  return a->failed ? fail(err, errlen, "out of memory") : 0;
}

int mixc_ir_run(const RecMixer *rm, const RefBinding *b, char *err, size_t errlen) {
  if (!rm || !b) return fail(err, errlen, "no mixer or no binding");
  if (mixc_ref_check(rm->mixer, b, err, errlen)) return 1;
  Eval ev;
  memset(&ev, 0, sizeof ev);
  ev.rm = rm;
  ev.m = rm->mixer;
  ev.b = b;
  ev.in = b->in;
  ev.ndir = ev.m->ngrid && ev.m->ndirs ? ev.m->ndirs : 1;
  arena_init(&ev.arena);
  int rc = setup(&ev, err, errlen);
  if (!rc) run_all(&ev);
  arena_free(&ev.arena);
  return rc;
}
