/* The recurrent strategy: one pass over time per (sequence, head), the state on chip.
 *
 * It runs every transition class, and is the decode step. One work item is one
 * (sequence, head) pair (a (batch, head) pair for grid mixers). Per token it computes the
 * prelude lets into scratch, then runs the events in textual order: each update step in
 * the canonical form of its class, with the step's vectors (diagonals, rank-one factors
 * and their projections, outer-product factors) computed once per step, then one
 * vectorisable loop over the state's elements; each output as its readouts.
 *
 * A state keeps one scratch buffer per version within a token (rec.h: version 0 enters
 * the token, v follows the v-th update), because a readout may read an earlier version
 * than the latest. The buffers are addressed through pointer variables that rotate at the
 * end of a token, so no state is copied between tokens. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../runtime/reference.h" /* mixc_builtin, for constant folding of defaults */
#include "lower.h"

typedef struct L {
  Arena *arena;
  KModule *m;
  KFunc *f;
  KStmt *blk; /* where statements are appended */
  const KernelSpec *sp;
  const RecMixer *rm;
  const Mixer *mx;
  KernelPlan *pl;
  char *err;
  size_t errlen;
  int failed;
  /* variables of the kernel */
  int v_scr, v_b, v_h, v_n, v_t;
  int *ptrvar;     /* per symbol: its data pointer */
  int **stride;    /* per symbol: one i64 variable per layout dim */
  int *sin_ptr, *sout_ptr, **sin_stride, **sout_stride; /* per state symbol */
  int *tokbase;    /* per input/output symbol: element offset of the current token */
  int **ver;       /* per state slot: a pointer variable per version */
  int64_t *R, *C;  /* per state slot */
  int64_t *let_off; /* per prelude entry: scratch offset (floats) */
  int64_t vec_off, big;
  /* the scope expressions are lowered in */
  const RecScope *sc;
  int ivar[MIXC_MAX_IVARS]; /* KIR variable of each index variable, or -1 */
  int dir;       /* the scan direction being lowered (grid mixers) */
} L;

static int lfail(L *l, const char *fmt, ...) {
  if (l->failed) return 1;
  l->failed = 1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(l->err, l->errlen, fmt, ap);
  va_end(ap);
  return 1;
}

/* ---- small builders ---- */

static int var(L *l, KType t, const char *name) { return kir_var(l->m, l->f, t, name); }
static KExpr *V(L *l, int v) { return ke_var(l->m, l->f, v); }
static KExpr *I(L *l, int64_t v) { return ke_int(l->m, v); }
static KExpr *F(L *l, double v) { return ke_float(l->m, v); }
static void emit(L *l, KStmt *s) { ks_add(l->m, l->blk, s); }
static void set(L *l, int v, KExpr *e) { emit(l, ks_set(l->m, v, e)); }

/* Open `for v in [lo, hi)` at the current point; statements go into it until close_for. */
static KStmt *open_for(L *l, int v, KExpr *lo, KExpr *hi, int flags) {
  KStmt *s = ks_for(l->m, v, lo, hi, flags);
  emit(l, s);
  KStmt *outer = l->blk;
  l->blk = s;
  return outer;
}

static void close_for(L *l, KStmt *outer) { l->blk = outer; }

static KExpr *fadd(L *l, KExpr *x, KExpr *y) { return ke_bin(l->m, KO_ADD, x, y); }
static KExpr *fmul(L *l, KExpr *x, KExpr *y) { return ke_bin(l->m, KO_MUL, x, y); }

static KExpr *scr_load(L *l, int64_t off, KExpr *idx) {
  return ke_load(l->m, KT_F32, V(l, l->v_scr), ke_add(l->m, I(l, off), idx));
}

static void scr_store(L *l, int64_t off, KExpr *idx, KExpr *val) {
  emit(l, ks_store(l->m, KT_F32, V(l, l->v_scr), ke_add(l->m, I(l, off), idx), val));
}

/* acc = acc + x, marked as a reduction the code generators may reassociate. */
static void accumulate(L *l, int acc, KExpr *x) {
  KExpr *e = fadd(l, V(l, acc), x);
  if (e) e->reassoc = 1;
  set(l, acc, e);
}

/* ---- constants: param defaults are expressions of dims and numbers ---- */

static double const_eval(const L *l, const Expr *e) {
  switch (e->kind) {
  case EX_NUM: return e->num;
  case EX_NAME: return e->ref == REF_DIM ? (double)l->sp->dims[e->sym] : NAN;
  case EX_CALL:
    return mixc_builtin(e->fn, const_eval(l, e->args[0]),
                        e->nargs > 1 ? const_eval(l, e->args[1]) : 0);
  case EX_NEG: return -const_eval(l, e->args[0]);
  case EX_BIN: {
    double x = const_eval(l, e->args[0]), y = const_eval(l, e->args[1]);
    return e->op == '+' ? x + y : e->op == '-' ? x - y : e->op == '*' ? x * y : x / y;
  }
  default: return NAN;
  }
}

/* ---- expressions of the recurrence IR ---- */

/* The loop variable of index variable v. A scalar state's steps still loop once over
 * their (absent) row and column, through variables no expression names. */
static int ivar_of(L *l, int v) {
  if (v < 0 || v >= MIXC_MAX_IVARS || !l->sc) {
    lfail(l, "internal: index variable %d outside its scope", v);
    return 0;
  }
  if (l->ivar[v] < 0)
    l->ivar[v] = var(l, KT_I64, v < l->sc->nivars ? l->sc->ivars[v].name : "unit");
  return l->ivar[v];
}

static void use_scope(L *l, const RecScope *sc) {
  l->sc = sc;
  for (int i = 0; i < MIXC_MAX_IVARS; i++) l->ivar[i] = -1;
}

static int64_t dim_of_ivar(const L *l, int v) { return l->sp->dims[l->sc->ivars[v].dim]; }

static KExpr *position(L *l, const Expr *p) {
  if (p->ref == REF_CONST) return I(l, p->sym);
  return V(l, ivar_of(l, p->sym));
}

/* sum over positions of position * stride, starting at layout dim `first`. */
static KExpr *feature_offset(L *l, const Expr *e, int sym, int first) {
  KExpr *off = I(l, 0);
  for (int i = 0; i < e->nargs; i++)
    off = ke_add(l->m, off, ke_mul(l->m, position(l, e->args[i]), V(l, l->stride[sym][first + i])));
  return off;
}

static int layout_dims_before_features(const L *l, int sym) {
  const Sym *s = &l->mx->syms[sym];
  return plan_layout_rank(l->rm, sym, 0) - s->rank;
}

static KExpr *lx(L *l, const Expr *e);

static KExpr *read_ref(L *l, const Expr *e) {
  const Sym *s = &l->mx->syms[e->sym];
  switch (e->ref) {
  case REF_DIM: return F(l, (double)l->sp->dims[e->sym]);
  case REF_INPUT: {
    int first = layout_dims_before_features(l, e->sym);
    KExpr *off = ke_add(l->m, V(l, l->tokbase[e->sym]), feature_offset(l, e, e->sym, first));
    if (s->per_direction)
      off = ke_add(l->m, off, ke_mul(l->m, I(l, l->dir), V(l, l->stride[e->sym][first - 1])));
    return ke_load(l->m, l->sp->dtype[e->sym], V(l, l->ptrvar[e->sym]), off);
  }
  case REF_PARAM: {
    if (!l->sp->present[e->sym]) return F(l, const_eval(l, s->init));
    KExpr *off = ke_add(l->m, ke_mul(l->m, V(l, l->v_h), V(l, l->stride[e->sym][0])),
                        feature_offset(l, e, e->sym, 1));
    return ke_load(l->m, l->sp->dtype[e->sym], V(l, l->ptrvar[e->sym]), off);
  }
  case REF_LET: {
    const RecLet *let = &l->rm->lets[e->bound];
    KExpr *off = I(l, 0);
    for (int i = 0; i < e->nargs; i++) {
      int64_t n = l->sp->dims[let->scope.ivars[i].dim];
      off = ke_add(l->m, ke_mul(l->m, off, I(l, n)), position(l, e->args[i]));
    }
    return scr_load(l, l->let_off[e->bound], off);
  }
  default: lfail(l, "internal: a state read inside a coefficient"); return F(l, 0);
  }
}

static KOp builtin_op(int fn) {
  static const KOp ops[FN__COUNT] = {
      [FN_EXP] = KO_EXP,         [FN_LOG] = KO_LOG,         [FN_SQRT] = KO_SQRT,
      [FN_RSQRT] = KO_RSQRT,     [FN_ABS] = KO_ABS,         [FN_TANH] = KO_TANH,
      [FN_SIGMOID] = KO_SIGMOID, [FN_LOGSIGMOID] = KO_LOGSIGMOID,
      [FN_SOFTPLUS] = KO_SOFTPLUS, [FN_SILU] = KO_SILU,     [FN_RELU] = KO_RELU,
      [FN_ELU] = KO_ELU,         [FN_MIN] = KO_MIN,         [FN_MAX] = KO_MAX,
  };
  return fn >= 0 && fn < FN__COUNT ? ops[fn] : KO_NEG;
}

static KExpr *call(L *l, int fn, KExpr *x, KExpr *y) {
  KOp op = builtin_op(fn);
  return fn == FN_MIN || fn == FN_MAX ? ke_bin(l->m, op, x, y) : ke_un(l->m, op, x);
}

/* A sum becomes a loop before the statement that uses it; its value is a variable. */
static KExpr *sum_loop(L *l, int bound, const Expr *body_e, const struct RecOut *body_o,
                       const struct RecOutput *o);

static KExpr *lx(L *l, const Expr *e) {
  if (!e) return F(l, 1.0); /* rec.h: a missing coefficient or vector is 1 */
  switch (e->kind) {
  case EX_NUM: return F(l, e->num);
  case EX_NAME:
  case EX_INDEX: return read_ref(l, e);
  case EX_CALL: return call(l, e->fn, lx(l, e->args[0]), e->nargs > 1 ? lx(l, e->args[1]) : NULL);
  case EX_SUM: return sum_loop(l, e->bound, e->args[0], NULL, NULL);
  case EX_NEG: return ke_un(l->m, KO_NEG, lx(l, e->args[0]));
  case EX_BIN: {
    KExpr *x = lx(l, e->args[0]), *y = lx(l, e->args[1]);
    KOp op = e->op == '+' ? KO_ADD : e->op == '-' ? KO_SUB : e->op == '*' ? KO_MUL : KO_DIV;
    return ke_bin(l->m, op, x, y);
  }
  }
  return F(l, NAN);
}

/* ---- terms: sum over `summed` of scale * coef * read ---- */

static KExpr *state_elem(L *l, const RecRead *r) {
  if (r->state < 0) return F(l, 1.0);
  KExpr *i = r->nidx > 0 ? (r->idx[0].kind == RI_CONST ? I(l, r->idx[0].v)
                                                      : V(l, ivar_of(l, r->idx[0].v)))
                         : I(l, 0);
  KExpr *j = r->nidx > 1 ? (r->idx[1].kind == RI_CONST ? I(l, r->idx[1].v)
                                                      : V(l, ivar_of(l, r->idx[1].v)))
                         : I(l, 0);
  KExpr *off = ke_add(l->m, ke_mul(l->m, i, I(l, l->C[r->state])), j);
  return ke_load(l->m, KT_F32, V(l, l->ver[r->state][r->version]), off);
}

static KExpr *terms(L *l, const RecTerm *t, int n) {
  if (n == 0) return F(l, 0);
  int acc = var(l, KT_F32, "acc");
  set(l, acc, F(l, 0));
  for (int k = 0; k < n; k++) {
    KStmt *outer = l->blk;
    for (int v = 0; v < MIXC_MAX_IVARS; v++) {
      if (!(t[k].summed >> v & 1)) continue;
      open_for(l, ivar_of(l, v), I(l, 0), I(l, dim_of_ivar(l, v)), 0);
    }
    KExpr *x = fmul(l, F(l, t[k].scale), fmul(l, lx(l, t[k].coef), state_elem(l, &t[k].read)));
    accumulate(l, acc, x);
    l->blk = outer;
  }
  return V(l, acc);
}

/* ---- outputs ---- */

static KExpr *lout(L *l, const RecOutput *o, const RecOut *n) {
  switch (n->kind) {
  case RO_OPAQUE: return lx(l, n->e);
  case RO_READOUT: {
    KExpr *v = terms(l, n->terms, n->nterms);
    return n->konst ? fadd(l, v, lx(l, n->konst)) : v;
  }
  case RO_NEG: return ke_un(l->m, KO_NEG, lout(l, o, n->args[0]));
  case RO_CALL:
    return call(l, n->fn, lout(l, o, n->args[0]), n->nargs > 1 ? lout(l, o, n->args[1]) : NULL);
  case RO_SUM: return sum_loop(l, n->bound, NULL, n->args[0], o);
  case RO_BIN: {
    KExpr *x = lout(l, o, n->args[0]), *y = lout(l, o, n->args[1]);
    KOp op = n->op == '+' ? KO_ADD : n->op == '-' ? KO_SUB : n->op == '*' ? KO_MUL : KO_DIV;
    return ke_bin(l->m, op, x, y);
  }
  }
  return F(l, NAN);
}

static KExpr *sum_loop(L *l, int bound, const Expr *body_e, const RecOut *body_o,
                       const RecOutput *o) {
  int acc = var(l, KT_F32, "sum");
  set(l, acc, F(l, 0));
  KStmt *outer = open_for(l, ivar_of(l, bound), I(l, 0), I(l, dim_of_ivar(l, bound)), 0);
  accumulate(l, acc, body_o ? lout(l, o, body_o) : lx(l, body_e));
  close_for(l, outer);
  return V(l, acc);
}

/* Loops over a scope's left-hand side (row-major); returns the element's flat index. */
static KExpr *open_lhs(L *l, const RecScope *sc, KStmt **outer) {
  *outer = l->blk;
  KExpr *flat = I(l, 0);
  for (int v = 0; v < sc->nlhs; v++) {
    int64_t n = l->sp->dims[sc->ivars[v].dim];
    open_for(l, ivar_of(l, v), I(l, 0), I(l, n), v == sc->nlhs - 1 ? KF_VECTORIZE : 0);
    flat = ke_add(l->m, ke_mul(l->m, flat, I(l, n)), V(l, ivar_of(l, v)));
  }
  return flat;
}

static void lower_output(L *l, const RecOutput *o, int accumulate_dirs, int mean_last) {
  use_scope(l, &o->scope);
  const Sym *s = &l->mx->syms[o->sym];
  KStmt *outer;
  open_lhs(l, &o->scope, &outer);
  KExpr *off = V(l, l->tokbase[o->sym]);
  int first = layout_dims_before_features(l, o->sym);
  for (int v = 0; v < s->rank; v++)
    off = ke_add(l->m, off, ke_mul(l->m, V(l, ivar_of(l, v)), V(l, l->stride[o->sym][first + v])));
  int val = var(l, KT_F32, o->name);
  set(l, val, lout(l, o, o->root));
  KType dt = l->sp->dtype[o->sym];
  KExpr *ptr = V(l, l->ptrvar[o->sym]);
  KExpr *x = V(l, val);
  if (accumulate_dirs) x = fadd(l, ke_load(l->m, dt, ptr, off), x);
  if (mean_last) x = ke_bin(l->m, KO_DIV, x, F(l, (double)l->mx->ndirs));
  emit(l, ks_store(l->m, dt, ptr, off, x));
  l->blk = outer;
}

/* ---- prelude ---- */

static void lower_prelude(L *l) {
  for (int k = 0; k < l->rm->nlets; k++) {
    const RecLet *let = &l->rm->lets[k];
    use_scope(l, &let->scope);
    KStmt *outer;
    KExpr *flat = open_lhs(l, &let->scope, &outer);
    scr_store(l, l->let_off[k], flat, lx(l, let->rhs));
    l->blk = outer;
  }
}

/* ---- update steps ---- */

/* Slots of a step's vectors in scratch, each `big` floats: 0 left diagonal, 1 right
 * diagonal, 2 the contracted vector y, then per rank-one term its x and projection, then
 * per outer product its u and w. */
static int64_t slot(const L *l, int k) { return l->vec_off + (int64_t)k * l->big; }

/* The loop variable for the state's row (k = 0) or column (k = 1): the step's own index
 * variable when the state has that dim, else a fresh one no expression reads. */
static int lhs_var(L *l, int k) {
  return k < l->sc->nlhs ? ivar_of(l, k) : var(l, KT_I64, k ? "unit_j" : "unit_i");
}

/* off[0..n) = e for each value of the loop variable lv. */
static void vec_into(L *l, const Expr *e, int lv, int64_t n, int64_t off) {
  KStmt *outer = open_for(l, lv, I(l, 0), I(l, n), 0);
  scr_store(l, off, V(l, lv), lx(l, e));
  close_for(l, outer);
}

static KExpr *src_at(L *l, int s, int version, KExpr *i, KExpr *j) {
  return ke_load(l->m, KT_F32, V(l, l->ver[s][version]),
                 ke_add(l->m, ke_mul(l->m, i, I(l, l->C[s])), j));
}

/* proj[o] = sum over m of y[m] src[m, o] (left), or src[o, m] y[m] (right). */
static void projection(L *l, int s, const RecStep *st, const RecRankOne *lr, int left,
                       int64_t proj) {
  int64_t R = l->R[s], C = l->C[s], n = left ? R : C, other = left ? C : R;
  vec_into(l, lr->y, ivar_of(l, lr->m), n, slot(l, 2));
  int o = var(l, KT_I64, "o"), mm = var(l, KT_I64, "m");
  if (left) {
    KStmt *outer = open_for(l, o, I(l, 0), I(l, other), KF_VECTORIZE);
    scr_store(l, proj, V(l, o), F(l, 0));
    close_for(l, outer);
    outer = open_for(l, mm, I(l, 0), I(l, n), 0);
    open_for(l, o, I(l, 0), I(l, other), KF_VECTORIZE);
    scr_store(l, proj, V(l, o),
              fadd(l, scr_load(l, proj, V(l, o)),
                   fmul(l, scr_load(l, slot(l, 2), V(l, mm)),
                        src_at(l, s, st->version, V(l, mm), V(l, o)))));
    close_for(l, outer);
  } else {
    int acc = var(l, KT_F32, "p");
    KStmt *outer = open_for(l, o, I(l, 0), I(l, other), 0);
    set(l, acc, F(l, 0));
    KStmt *oloop = open_for(l, mm, I(l, 0), I(l, n), KF_VECTORIZE);
    accumulate(l, acc, fmul(l, src_at(l, s, st->version, V(l, o), V(l, mm)),
                            scr_load(l, slot(l, 2), V(l, mm))));
    close_for(l, oloop);
    scr_store(l, proj, V(l, o), V(l, acc));
    close_for(l, outer);
  }
}

static int outer_slot(const RecStep *st, int k) {
  return 3 + 2 * (st->cls == RC_DPLR ? st->nlr : 0) + 2 * k;
}

/* Scalars and vectors of a step, before its element loop. */
static void prepare_step(L *l, int s, const RecStep *st, int *scal) {
  int64_t R = l->R[s], C = l->C[s];
  int left = st->side == RS_LEFT || st->side == RS_BOTH;
  int right = st->side == RS_RIGHT || st->side == RS_BOTH;
  if (st->cls == RC_SCALAR) {
    scal[0] = var(l, KT_F32, "a");
    set(l, scal[0], lx(l, st->a));
  }
  if (st->cls == RC_DIAG || st->cls == RC_DPLR) {
    if (left) vec_into(l, st->dl, lhs_var(l, 0), R, slot(l, 0));
    if (right) vec_into(l, st->dr, lhs_var(l, 1), C, slot(l, 1));
  }
  for (int r = 0; st->cls == RC_DPLR && r < st->nlr; r++) {
    const RecRankOne *lr = &st->lr[r];
    scal[1 + r] = var(l, KT_F32, "c");
    set(l, scal[1 + r], fmul(l, F(l, lr->scale), lx(l, lr->c)));
    vec_into(l, lr->x, lhs_var(l, left ? 0 : 1), left ? R : C, slot(l, 3 + 2 * r));
    projection(l, s, st, lr, left, slot(l, 4 + 2 * r));
  }
  for (int k = 0; k < st->nouter; k++) {
    const RecOuter *o = &st->outer[k];
    scal[1 + st->nlr + k] = var(l, KT_F32, "c");
    set(l, scal[1 + st->nlr + k], fmul(l, F(l, o->scale), lx(l, o->c)));
    vec_into(l, o->u, lhs_var(l, 0), R, slot(l, outer_slot(st, k)));
    if (st->scope.nlhs > 1) vec_into(l, o->w, lhs_var(l, 1), C, slot(l, outer_slot(st, k) + 1));
  }
}

static KExpr *linear_part(L *l, int s, const RecStep *st, const int *scal, KExpr *x, KExpr *i,
                          KExpr *j) {
  switch (st->cls) {
  case RC_IDENTITY: return x;
  case RC_SCALAR: return fmul(l, V(l, scal[0]), x);
  case RC_DIAG:
    if (st->side != RS_RIGHT) x = fmul(l, scr_load(l, slot(l, 0), i), x);
    if (st->side != RS_LEFT) x = fmul(l, scr_load(l, slot(l, 1), j), x);
    return x;
  case RC_DPLR: {
    int left = st->side == RS_LEFT;
    KExpr *acc = fmul(l, left ? scr_load(l, slot(l, 0), i) : scr_load(l, slot(l, 1), j), x);
    for (int r = 0; r < st->nlr; r++) {
      KExpr *xr = scr_load(l, slot(l, 3 + 2 * r), left ? i : j);
      KExpr *pr = scr_load(l, slot(l, 4 + 2 * r), left ? j : i);
      acc = fadd(l, acc, fmul(l, V(l, scal[1 + r]), fmul(l, xr, pr)));
    }
    return acc;
  }
  case RC_ELEMENTWISE: return fmul(l, lx(l, st->ew), x);
  case RC_GENERAL: return terms(l, st->terms, st->nterms);
  }
  (void)s;
  return F(l, NAN);
}

static KExpr *input_part(L *l, const RecStep *st, const int *scal, KExpr *i, KExpr *j) {
  KExpr *acc = F(l, 0);
  for (int k = 0; k < st->nouter; k++) {
    KExpr *u = scr_load(l, slot(l, outer_slot(st, k)), i);
    KExpr *w = st->scope.nlhs > 1 ? scr_load(l, slot(l, outer_slot(st, k) + 1), j) : F(l, 1);
    acc = fadd(l, acc, fmul(l, V(l, scal[1 + st->nlr + k]), fmul(l, u, w)));
  }
  if (st->nadd) acc = fadd(l, acc, terms(l, st->add, st->nadd));
  return acc;
}

static void lower_step(L *l, int s, const RecStep *st) {
  use_scope(l, &st->scope);
  int scal[64];
  if (1 + st->nlr + st->nouter > (int)(sizeof scal / sizeof scal[0])) {
    lfail(l, "state '%s': a step with %d rank-one terms and %d outer products is too large for "
             "the recurrent kernel", l->rm->states[s].name, st->nlr, st->nouter);
    return;
  }
  prepare_step(l, s, st, scal);
  int64_t R = l->R[s], C = l->C[s];
  int iv = lhs_var(l, 0), jv = lhs_var(l, 1);
  KStmt *outer = open_for(l, iv, I(l, 0), I(l, R), 0);
  open_for(l, jv, I(l, 0), I(l, C), KF_VECTORIZE);
  KExpr *i = V(l, iv), *j = V(l, jv);
  KExpr *x = src_at(l, s, st->version, i, j);
  KExpr *val = fadd(l, linear_part(l, s, st, scal, x, i, j), input_part(l, st, scal, i, j));
  emit(l, ks_store(l->m, KT_F32, V(l, l->ver[s][st->version + 1]),
                   ke_add(l->m, ke_mul(l->m, i, I(l, C)), j), val));
  close_for(l, outer);
}

/* ---- one token ---- */

static void lower_token(L *l, int steps, int outputs, int acc_dirs, int mean_last) {
  lower_prelude(l);
  for (int k = 0; k < l->rm->nevents && !l->failed; k++) {
    const RecEvent *e = &l->rm->events[k];
    if (e->kind == RE_STEP && steps) lower_step(l, e->a, &l->rm->states[e->a].steps[e->b]);
    if (e->kind == RE_OUTPUT && outputs)
      lower_output(l, &l->rm->outputs[e->a], acc_dirs, mean_last);
  }
  if (!steps) return;
  /* Rotate: the last version becomes the next token's version 0. */
  for (int s = 0; s < l->rm->nstates; s++) {
    int n = l->rm->states[s].nsteps;
    if (!n) continue;
    int tmp = var(l, KT_PTR, "tmp");
    set(l, tmp, V(l, l->ver[s][0]));
    set(l, l->ver[s][0], V(l, l->ver[s][n]));
    set(l, l->ver[s][n], V(l, tmp));
  }
}

/* Token base offsets of every input and output: b*sB + t*sT + h*sH (grids: y, x). */
static void set_token_bases(L *l, KExpr *y, KExpr *x) {
  for (int s = 0; s < l->mx->nsyms; s++) {
    if (l->tokbase[s] < 0) continue;
    KExpr *off = ke_mul(l->m, V(l, l->v_b), V(l, l->stride[s][0]));
    if (l->mx->ngrid) {
      off = ke_add(l->m, off, ke_mul(l->m, y, V(l, l->stride[s][1])));
      off = ke_add(l->m, off, ke_mul(l->m, x, V(l, l->stride[s][2])));
      off = ke_add(l->m, off, ke_mul(l->m, V(l, l->v_h), V(l, l->stride[s][3])));
    } else {
      off = ke_add(l->m, off, ke_mul(l->m, V(l, l->v_t), V(l, l->stride[s][1])));
      off = ke_add(l->m, off, ke_mul(l->m, V(l, l->v_h), V(l, l->stride[s][2])));
    }
    set(l, l->tokbase[s], off);
  }
}

/* ---- states in and out ---- */

static void state_io(L *l, int store) {
  for (int k = 0; k < l->rm->nstates; k++) {
    int sym = l->rm->states[k].sym;
    int ptr = store ? l->sout_ptr[sym] : l->sin_ptr[sym];
    int *st = store ? l->sout_stride[sym] : l->sin_stride[sym];
    int64_t R = l->R[k], C = l->C[k];
    int nd = l->rm->states[k].ndim;
    if (store && ptr < 0) continue;
    int iv = var(l, KT_I64, "si"), jv = var(l, KT_I64, "sj");
    KStmt *outer = open_for(l, iv, I(l, 0), I(l, R), 0);
    open_for(l, jv, I(l, 0), I(l, C), KF_VECTORIZE);
    KExpr *flat = ke_add(l->m, ke_mul(l->m, V(l, iv), I(l, C)), V(l, jv));
    if (ptr < 0) {
      if (!store)
        emit(l, ks_store(l->m, KT_F32, V(l, l->ver[k][0]), flat, F(l, 0)));
    } else {
      KExpr *off = ke_add(l->m, ke_mul(l->m, V(l, l->v_n), V(l, st[0])),
                          ke_mul(l->m, V(l, l->v_h), V(l, st[1])));
      if (nd > 0) off = ke_add(l->m, off, ke_mul(l->m, V(l, iv), V(l, st[2])));
      if (nd > 1) off = ke_add(l->m, off, ke_mul(l->m, V(l, jv), V(l, st[3])));
      if (store)
        emit(l, ks_store(l->m, KT_F32, V(l, ptr), off,
                         ke_load(l->m, KT_F32, V(l, l->ver[k][0]), flat)));
      else
        emit(l, ks_store(l->m, KT_F32, V(l, l->ver[k][0]), flat,
                         ke_load(l->m, KT_F32, V(l, ptr), off)));
    }
    close_for(l, outer);
  }
}

/* ---- the argument tables ---- */

static int *int_array(L *l, int n, int fill) {
  int *a = arena_array(l->arena, (size_t)(n > 0 ? n : 1), sizeof *a);
  for (int i = 0; a && i < n; i++) a[i] = fill;
  return a;
}

/* Slots and entry loads for one tensor: a pointer slot and one stride slot per layout dim. */
static int tensor_slots(L *l, int sym, const char *role, int state_array, int *ptr_slot,
                        int *stride_slot, int *ptrvar, int **stridevars) {
  const char *name = l->mx->syms[sym].name;
  *ptr_slot = kir_slot(l->m, KSL_PTR, arena_printf(l->arena, "%s %s", role, name));
  int rank = plan_layout_rank(l->rm, sym, state_array);
  *ptrvar = var(l, KT_PTR, arena_printf(l->arena, "p_%s%s", name, state_array ? role : ""));
  set(l, *ptrvar, ke_ptr_slot(l->m, *ptr_slot));
  *stridevars = int_array(l, rank, -1);
  if (!*stridevars) return 1;
  for (int d = 0; d < rank; d++) {
    int slot_ = kir_slot(l->m, KSL_INT, arena_printf(l->arena, "stride %d of %s %s", d, role, name));
    if (d == 0) *stride_slot = slot_;
    (*stridevars)[d] = var(l, KT_I64, arena_printf(l->arena, "s_%s%s%d", name, state_array ? role : "", d));
    set(l, (*stridevars)[d], ke_int_slot(l->m, slot_));
  }
  return 0;
}

static int setup_tables(L *l) {
  const Mixer *mx = l->mx;
  KernelPlan *pl = l->pl;
  int ns = mx->nsyms;
  pl->nsyms = ns;
  pl->ptr = int_array(l, ns, -1);
  pl->state_in = int_array(l, ns, -1);
  pl->state_out = int_array(l, ns, -1);
  pl->stride = int_array(l, ns, -1);
  pl->state_in_stride = int_array(l, ns, -1);
  pl->state_out_stride = int_array(l, ns, -1);
  l->ptrvar = int_array(l, ns, -1);
  l->sin_ptr = int_array(l, ns, -1);
  l->sout_ptr = int_array(l, ns, -1);
  l->tokbase = int_array(l, ns, -1);
  l->stride = arena_array(l->arena, (size_t)ns + 1, sizeof *l->stride);
  l->sin_stride = arena_array(l->arena, (size_t)ns + 1, sizeof *l->sin_stride);
  l->sout_stride = arena_array(l->arena, (size_t)ns + 1, sizeof *l->sout_stride);
  if (l->arena->failed) return lfail(l, "out of memory");
  pl->size_B = kir_slot(l->m, KSL_INT, "B");
  pl->size_T = kir_slot(l->m, KSL_INT, "T");
  pl->size_H = kir_slot(l->m, KSL_INT, "H");
  pl->size_N = kir_slot(l->m, KSL_INT, "N (sequences: B, or the number of cu_seqlens segments)");
  pl->size_Y = pl->size_X = pl->cu_seqlens = -1;
  if (mx->ngrid) {
    pl->size_Y = kir_slot(l->m, KSL_INT, "Y");
    pl->size_X = kir_slot(l->m, KSL_INT, "X");
  }
  if (l->sp->varlen) pl->cu_seqlens = kir_slot(l->m, KSL_PTR, "cu_seqlens");
  for (int s = 0; s < ns; s++) {
    const Sym *y = &mx->syms[s];
    int in = y->kind == SYM_INPUT, out = y->kind == SYM_OUTPUT;
    int param = y->kind == SYM_PARAM && l->sp->present[s];
    if (in || out || param) {
      if (tensor_slots(l, s, sym_kind_name(y->kind), 0, &pl->ptr[s], &pl->stride[s],
                       &l->ptrvar[s], &l->stride[s]))
        return lfail(l, "out of memory");
      if (in || out) l->tokbase[s] = var(l, KT_I64, arena_printf(l->arena, "tok_%s", y->name));
    }
    if (y->kind == SYM_STATE && l->sp->present[s] &&
        tensor_slots(l, s, "initial", 1, &pl->state_in[s], &pl->state_in_stride[s],
                     &l->sin_ptr[s], &l->sin_stride[s]))
      return lfail(l, "out of memory");
    if (y->kind == SYM_STATE && l->sp->want[s] &&
        tensor_slots(l, s, "final", 1, &pl->state_out[s], &pl->state_out_stride[s],
                     &l->sout_ptr[s], &l->sout_stride[s]))
      return lfail(l, "out of memory");
  }
  return 0;
}

/* ---- scratch ---- */

static int64_t feat_of_scope(const L *l, const RecScope *sc) {
  int64_t n = 1;
  for (int v = 0; v < sc->nlhs; v++) n *= l->sp->dims[sc->ivars[v].dim];
  return n;
}

static int setup_scratch(L *l) {
  const RecMixer *rm = l->rm;
  int64_t off = 0, maxr = 0, big = 1;
  l->ver = arena_array(l->arena, (size_t)rm->nstates + 1, sizeof *l->ver);
  l->R = arena_array(l->arena, (size_t)rm->nstates + 1, sizeof *l->R);
  l->C = arena_array(l->arena, (size_t)rm->nstates + 1, sizeof *l->C);
  l->let_off = arena_array(l->arena, (size_t)rm->nlets + 1, sizeof *l->let_off);
  if (l->arena->failed) return lfail(l, "out of memory");
  l->v_scr = var(l, KT_PTR, "scr");
  set(l, l->v_scr, ke_arg(l->m, 4));
  for (int s = 0; s < rm->nstates; s++) {
    const RecState *st = &rm->states[s];
    l->R[s] = st->ndim > 0 ? l->sp->dims[st->shape[0]] : 1;
    l->C[s] = st->ndim > 1 ? l->sp->dims[st->shape[1]] : 1;
    if (l->R[s] > big) big = l->R[s];
    if (l->C[s] > big) big = l->C[s];
    l->ver[s] = int_array(l, st->nsteps + 1, -1);
    if (!l->ver[s]) return lfail(l, "out of memory");
    for (int v = 0; v <= st->nsteps; v++) {
      l->ver[s][v] = var(l, KT_PTR, arena_printf(l->arena, "%s_v%d", st->name, v));
      set(l, l->ver[s][v], ke_ptradd(l->m, V(l, l->v_scr), I(l, off * 4)));
      off += l->R[s] * l->C[s];
    }
    for (int k = 0; k < st->nsteps; k++)
      if (st->steps[k].nlr + st->steps[k].nouter > maxr)
        maxr = st->steps[k].nlr + st->steps[k].nouter;
  }
  for (int k = 0; k < rm->nlets; k++) {
    l->let_off[k] = off;
    off += feat_of_scope(l, &rm->lets[k].scope);
  }
  l->vec_off = off;
  l->big = big;
  off += big * (3 + 2 * maxr);
  l->f->scratch_floats = off;
  return 0;
}

/* ---- the kernel ---- */

static void causal_body(L *l) {
  KernelPlan *pl = l->pl;
  int t0 = var(l, KT_I64, "t0"), t1 = var(l, KT_I64, "t1");
  if (l->sp->varlen) {
    KExpr *cu = V(l, var(l, KT_PTR, "cu"));
    set(l, cu->var, ke_ptr_slot(l->m, pl->cu_seqlens));
    set(l, t0, ke_load(l->m, l->sp->cu_type, cu, V(l, l->v_n)));
    set(l, t1, ke_load(l->m, l->sp->cu_type, cu, ke_add(l->m, V(l, l->v_n), I(l, 1))));
    set(l, l->v_b, I(l, 0));
  } else {
    set(l, t0, I(l, 0));
    set(l, t1, ke_int_slot(l->m, pl->size_T));
    set(l, l->v_b, V(l, l->v_n));
  }
  state_io(l, 0);
  KStmt *outer = open_for(l, l->v_t, V(l, t0), V(l, t1), 0);
  set_token_bases(l, NULL, NULL);
  lower_token(l, 1, 1, 0, 0);
  close_for(l, outer);
  state_io(l, 1);
}

/* Token k of direction d: its (y, x) on the grid. */
static void grid_coords(L *l, Direction d, int k, int y, int x, int Y, int X, int T) {
  KExpr *kk = V(l, k);
  if (d == DIR_ROW_REV || d == DIR_COL_REV)
    kk = ke_bin(l->m, KO_SUB, ke_bin(l->m, KO_SUB, V(l, T), I(l, 1)), kk);
  if (d == DIR_ROW || d == DIR_ROW_REV || d == DIR_ALL) {
    set(l, y, ke_bin(l->m, KO_DIV, kk, V(l, X)));
    set(l, x, ke_bin(l->m, KO_REM, kk, V(l, X)));
  } else {
    set(l, y, ke_bin(l->m, KO_REM, kk, V(l, Y)));
    set(l, x, ke_bin(l->m, KO_DIV, kk, V(l, Y)));
  }
}

static void grid_body(L *l) {
  const Mixer *mx = l->mx;
  int Y = var(l, KT_I64, "Y"), X = var(l, KT_I64, "X"), T = var(l, KT_I64, "T");
  int y = var(l, KT_I64, "y"), x = var(l, KT_I64, "x"), k = var(l, KT_I64, "k");
  set(l, Y, ke_int_slot(l->m, l->pl->size_Y));
  set(l, X, ke_int_slot(l->m, l->pl->size_X));
  set(l, T, ke_bin(l->m, KO_MUL, V(l, Y), V(l, X)));
  set(l, l->v_b, V(l, l->v_n));
  int ndir = mx->ndirs > 0 ? mx->ndirs : 1;
  for (int d = 0; d < ndir && !l->failed; d++) {
    Direction dir = mx->ndirs ? mx->dirs[d] : DIR_ROW;
    l->dir = d;
    int last_mean = mx->combine == COMBINE_MEAN && ndir > 1 && d == ndir - 1;
    state_io(l, 0); /* grid mixers take no initial state: zeros */
    if (l->rm->noncausal) {
      KStmt *outer = open_for(l, k, I(l, 0), V(l, T), 0);
      grid_coords(l, dir, k, y, x, Y, X, T);
      set_token_bases(l, V(l, y), V(l, x));
      lower_token(l, 1, 0, 0, 0);
      close_for(l, outer);
      /* Every output reads the state built from all tokens. */
      for (int s = 0; s < l->rm->nstates; s++)
        for (int v = 1; v <= l->rm->states[s].nsteps; v++) set(l, l->ver[s][v], V(l, l->ver[s][0]));
      outer = open_for(l, k, I(l, 0), V(l, T), 0);
      grid_coords(l, dir, k, y, x, Y, X, T);
      set_token_bases(l, V(l, y), V(l, x));
      lower_token(l, 0, 1, d > 0, last_mean);
      close_for(l, outer);
      continue;
    }
    KStmt *outer = open_for(l, k, I(l, 0), V(l, T), 0);
    grid_coords(l, dir, k, y, x, Y, X, T);
    set_token_bases(l, V(l, y), V(l, x));
    lower_token(l, 1, 1, d > 0, last_mean);
    close_for(l, outer);
  }
}

int lower_recurrent(Arena *a, const KernelSpec *spec, KernelPlan *plan, char *err,
                    size_t errlen) {
  L l;
  memset(&l, 0, sizeof l);
  l.arena = a;
  l.sp = spec;
  l.rm = spec->rm;
  l.mx = spec->rm->mixer;
  l.pl = plan;
  l.err = err;
  l.errlen = errlen;
  memset(plan, 0, sizeof *plan);
  plan->strategy = STRAT_RECURRENT;
  l.m = kir_module(a);
  if (!l.m) return lfail(&l, "out of memory");
  plan->mod = l.m;
  l.f = kir_func(l.m, arena_printf(a, "%s_recurrent", l.rm->name));
  if (!l.f) return lfail(&l, "out of memory");
  l.f->items = l.mx->ngrid ? "(batch, head)" : "(sequence, head)";
  l.blk = l.f->body;
  if (setup_tables(&l) || setup_scratch(&l)) return 1;
  l.v_b = var(&l, KT_I64, "b");
  l.v_h = var(&l, KT_I64, "h");
  l.v_n = var(&l, KT_I64, "n");
  l.v_t = var(&l, KT_I64, "t");
  int item = var(&l, KT_I64, "item"), H = var(&l, KT_I64, "H");
  set(&l, H, ke_int_slot(l.m, plan->size_H));
  KStmt *outer = open_for(&l, item, ke_arg(l.m, 2), ke_arg(l.m, 3), KF_PARALLEL);
  set(&l, l.v_n, ke_bin(l.m, KO_DIV, V(&l, item), V(&l, H)));
  set(&l, l.v_h, ke_bin(l.m, KO_REM, V(&l, item), V(&l, H)));
  if (l.mx->ngrid)
    grid_body(&l);
  else
    causal_body(&l);
  close_for(&l, outer);
  if (l.failed) return 1;
  if (a->failed) return lfail(&l, "out of memory while lowering");
  return kir_verify(l.m, err, errlen);
}
