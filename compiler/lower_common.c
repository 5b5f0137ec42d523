/* Shared machinery of the strategies' lowerings (see lower_internal.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../runtime/reference.h" /* mixc_builtin, for constant folding of defaults */
#include "lower_internal.h"
#include "schedule.h"

int lw_lfail(L *l, const char *fmt, ...) {
  if (l->failed) return 1;
  l->failed = 1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(l->err, l->errlen, fmt, ap);
  va_end(ap);
  return 1;
}

/* ---- small builders ---- */

int lw_var(L *l, KType t, const char *name) { return kir_var(l->m, l->f, t, name); }
KExpr *lw_V(L *l, int v) { return ke_var(l->m, l->f, v); }
KExpr *lw_I(L *l, int64_t v) { return ke_int(l->m, v); }
KExpr *lw_F(L *l, double v) { return ke_float(l->m, v); }
void lw_emit(L *l, KStmt *s) { ks_add(l->m, l->blk, s); }
void lw_set(L *l, int v, KExpr *e) { lw_emit(l, ks_set(l->m, v, e)); }

/* Open `for v in [lo, hi)` at the current point; statements go into it until close_for. */
KStmt *lw_open_for(L *l, int v, KExpr *lo, KExpr *hi, int flags) {
  KStmt *s = ks_for(l->m, v, lo, hi, flags);
  lw_emit(l, s);
  KStmt *outer = l->blk;
  l->blk = s;
  return outer;
}

void lw_close_for(L *l, KStmt *outer) { l->blk = outer; }

KExpr *lw_fadd(L *l, KExpr *x, KExpr *y) { return ke_bin(l->m, KO_ADD, x, y); }
KExpr *lw_fmul(L *l, KExpr *x, KExpr *y) { return ke_bin(l->m, KO_MUL, x, y); }

KExpr *lw_scr_load(L *l, int64_t off, KExpr *idx) {
  return ke_load(l->m, KT_F32, lw_V(l, l->v_scr), ke_add(l->m, lw_I(l, off), idx));
}

void lw_scr_store(L *l, int64_t off, KExpr *idx, KExpr *val) {
  lw_emit(l, ks_store(l->m, KT_F32, lw_V(l, l->v_scr), ke_add(l->m, lw_I(l, off), idx), val));
}

/* acc = acc + x, marked as a reduction the code generators may reassociate. */
void lw_accumulate(L *l, int acc, KExpr *x) {
  KExpr *e = lw_fadd(l, lw_V(l, acc), x);
  if (e) e->reassoc = 1;
  lw_set(l, acc, e);
}

/* ---- constants: param defaults are expressions of dims and numbers ---- */

double lw_const_eval(const L *l, const Expr *e) {
  switch (e->kind) {
  case EX_NUM: return e->num;
  case EX_NAME: return e->ref == REF_DIM ? (double)l->sp->dims[e->sym] : NAN;
  case EX_CALL:
    return mixc_builtin(e->fn, lw_const_eval(l, e->args[0]),
                        e->nargs > 1 ? lw_const_eval(l, e->args[1]) : 0);
  case EX_NEG: return -lw_const_eval(l, e->args[0]);
  case EX_BIN: {
    double x = lw_const_eval(l, e->args[0]), y = lw_const_eval(l, e->args[1]);
    return e->op == '+' ? x + y : e->op == '-' ? x - y : e->op == '*' ? x * y : x / y;
  }
  default: return NAN;
  }
}

/* ---- expressions of the recurrence IR ---- */

/* The loop variable of index variable v. A scalar state's steps still loop once over
 * their (absent) row and column, through variables no expression names. */
int lw_ivar_of(L *l, int v) {
  if (v < 0 || v >= MIXC_MAX_IVARS || !l->sc) {
    lw_lfail(l, "internal: index variable %d outside its scope", v);
    return 0;
  }
  if (l->ivar[v] < 0)
    l->ivar[v] = lw_var(l, KT_I64, v < l->sc->nivars ? l->sc->ivars[v].name : "unit");
  return l->ivar[v];
}

void lw_use_scope(L *l, const RecScope *sc) {
  l->sc = sc;
  for (int i = 0; i < MIXC_MAX_IVARS; i++) l->ivar[i] = -1;
}

int64_t lw_dim_of_ivar(const L *l, int v) { return l->sp->dims[l->sc->ivars[v].dim]; }

KExpr *lw_position(L *l, const Expr *p) {
  if (p->ref == REF_CONST) return lw_I(l, p->sym);
  return lw_V(l, lw_ivar_of(l, p->sym));
}

/* sum over positions of position * stride, starting at layout dim `first`. */
KExpr *lw_feature_offset(L *l, const Expr *e, int sym, int first) {
  KExpr *off = lw_I(l, 0);
  for (int i = 0; i < e->nargs; i++)
    off = ke_add(l->m, off, ke_mul(l->m, lw_position(l, e->args[i]), lw_V(l, l->stride[sym][first + i])));
  return off;
}

int lw_layout_dims_before_features(const L *l, int sym) {
  const Sym *s = &l->mx->syms[sym];
  return plan_layout_rank(l->rm, sym, 0) - s->rank;
}


KExpr *lw_read_ref(L *l, const Expr *e) {
  const Sym *s = &l->mx->syms[e->sym];
  switch (e->ref) {
  case REF_DIM: return lw_F(l, (double)l->sp->dims[e->sym]);
  case REF_INPUT: {
    int first = lw_layout_dims_before_features(l, e->sym);
    KExpr *off = ke_add(l->m, lw_V(l, l->tokbase[e->sym]), lw_feature_offset(l, e, e->sym, first));
    if (s->per_direction)
      off = ke_add(l->m, off, ke_mul(l->m, lw_I(l, l->dir), lw_V(l, l->stride[e->sym][first - 1])));
    return ke_load(l->m, l->sp->dtype[e->sym], lw_V(l, l->ptrvar[e->sym]), off);
  }
  case REF_PARAM: {
    if (!l->sp->present[e->sym]) return lw_F(l, lw_const_eval(l, s->init));
    KExpr *off = ke_add(l->m, ke_mul(l->m, lw_V(l, l->v_h), lw_V(l, l->stride[e->sym][0])),
                        lw_feature_offset(l, e, e->sym, 1));
    return ke_load(l->m, l->sp->dtype[e->sym], lw_V(l, l->ptrvar[e->sym]), off);
  }
  case REF_LET: {
    const RecLet *let = &l->rm->lets[e->bound];
    KExpr *off = lw_I(l, 0);
    for (int i = 0; i < e->nargs; i++) {
      int64_t n = l->sp->dims[let->scope.ivars[i].dim];
      off = ke_add(l->m, ke_mul(l->m, off, lw_I(l, n)), lw_position(l, e->args[i]));
    }
    return lw_scr_load(l, l->let_off[e->bound], off);
  }
  default: lw_lfail(l, "internal: a state read inside a coefficient"); return lw_F(l, 0);
  }
}

KOp lw_builtin_op(int fn) {
  static const KOp ops[FN__COUNT] = {
      [FN_EXP] = KO_EXP,         [FN_LOG] = KO_LOG,         [FN_SQRT] = KO_SQRT,
      [FN_RSQRT] = KO_RSQRT,     [FN_ABS] = KO_ABS,         [FN_TANH] = KO_TANH,
      [FN_SIGMOID] = KO_SIGMOID, [FN_LOGSIGMOID] = KO_LOGSIGMOID,
      [FN_SOFTPLUS] = KO_SOFTPLUS, [FN_SILU] = KO_SILU,     [FN_RELU] = KO_RELU,
      [FN_ELU] = KO_ELU,         [FN_MIN] = KO_MIN,         [FN_MAX] = KO_MAX,
  };
  return fn >= 0 && fn < FN__COUNT ? ops[fn] : KO_NEG;
}

KExpr *lw_call(L *l, int fn, KExpr *x, KExpr *y) {
  KOp op = lw_builtin_op(fn);
  return fn == FN_MIN || fn == FN_MAX ? ke_bin(l->m, op, x, y) : ke_un(l->m, op, x);
}

/* A sum becomes a loop before the statement that uses it; its value is a variable. */

KExpr *lw_lx(L *l, const Expr *e) {
  if (!e) return lw_F(l, 1.0); /* rec.h: a missing coefficient or vector is 1 */
  switch (e->kind) {
  case EX_NUM: return lw_F(l, e->num);
  case EX_NAME:
  case EX_INDEX: return lw_read_ref(l, e);
  case EX_CALL: return lw_call(l, e->fn, lw_lx(l, e->args[0]), e->nargs > 1 ? lw_lx(l, e->args[1]) : NULL);
  case EX_SUM: return lw_sum_loop(l, e->bound, e->args[0], NULL, NULL);
  case EX_NEG: return ke_un(l->m, KO_NEG, lw_lx(l, e->args[0]));
  case EX_BIN: {
    KExpr *x = lw_lx(l, e->args[0]), *y = lw_lx(l, e->args[1]);
    KOp op = e->op == '+' ? KO_ADD : e->op == '-' ? KO_SUB : e->op == '*' ? KO_MUL : KO_DIV;
    return ke_bin(l->m, op, x, y);
  }
  }
  return lw_F(l, NAN);
}

/* ---- terms: sum over `summed` of scale * coef * read ---- */

KExpr *lw_state_elem(L *l, const RecRead *r) {
  if (r->state < 0) return lw_F(l, 1.0);
  KExpr *i = r->nidx > 0 ? (r->idx[0].kind == RI_CONST ? lw_I(l, r->idx[0].v)
                                                      : lw_V(l, lw_ivar_of(l, r->idx[0].v)))
                         : lw_I(l, 0);
  KExpr *j = r->nidx > 1 ? (r->idx[1].kind == RI_CONST ? lw_I(l, r->idx[1].v)
                                                      : lw_V(l, lw_ivar_of(l, r->idx[1].v)))
                         : lw_I(l, 0);
  KExpr *off = ke_add(l->m, ke_mul(l->m, i, lw_I(l, l->C[r->state])), j);
  return ke_load(l->m, KT_F32, lw_V(l, l->ver[r->state][r->version]), off);
}

KExpr *lw_terms(L *l, const RecTerm *t, int n) {
  if (n == 0) return lw_F(l, 0);
  int acc = lw_var(l, KT_F32, "acc");
  lw_set(l, acc, lw_F(l, 0));
  for (int k = 0; k < n; k++) {
    KStmt *outer = l->blk;
    for (int v = 0; v < MIXC_MAX_IVARS; v++) {
      if (!(t[k].summed >> v & 1)) continue;
      lw_open_for(l, lw_ivar_of(l, v), lw_I(l, 0), lw_I(l, lw_dim_of_ivar(l, v)), 0);
    }
    KExpr *x = lw_fmul(l, lw_F(l, t[k].scale), lw_fmul(l, lw_lx(l, t[k].coef), lw_state_elem(l, &t[k].read)));
    lw_accumulate(l, acc, x);
    l->blk = outer;
  }
  return lw_V(l, acc);
}

/* ---- outputs ---- */

const char *lw_readout_term_unfit(const RecMixer *rm, const RecTerm *t) {
  const RecRead *r = &t->read;
  if (r->state < 0) return "a readout term reads no state";
  const RecState *st = &rm->states[r->state];
  if (r->version < 0 || r->version > st->nsteps) return "internal: a readout's version";
  if (st->ndim == 0) {
    if (t->summed) return "a readout of a scalar state sums an index";
    if (t->coef && t->coef->free)
      return "a readout's coefficient of a scalar state depends on an index";
    return NULL;
  }
  if (r->idx[0].kind != RI_VAR || t->summed != ((uint64_t)1 << r->idx[0].v))
    return "a readout does not contract the state's row index";
  if (st->ndim == 2 && r->idx[1].kind != RI_VAR) return "a readout reads a constant column";
  if (st->ndim == 2 && r->idx[1].v == r->idx[0].v) return "a readout sums the state's diagonal";
  if (t->coef && (t->coef->free & ~((uint64_t)1 << r->idx[0].v)))
    return "a readout's coefficient depends on more than the contracted index";
  return NULL;
}

KExpr *lw_lout(L *l, const RecOutput *o, const RecOut *n) {
  switch (n->kind) {
  case RO_OPAQUE: return lw_lx(l, n->e);
  case RO_READOUT: {
    if (l->readout) {
      KExpr *r = l->readout(l, o, n);
      if (r) return r; /* NULL: the strategy leaves this readout to the loops below */
    }
    KExpr *v = lw_terms(l, n->terms, n->nterms);
    return n->konst ? lw_fadd(l, v, lw_lx(l, n->konst)) : v;
  }
  case RO_NEG: return ke_un(l->m, KO_NEG, lw_lout(l, o, n->args[0]));
  case RO_CALL:
    return lw_call(l, n->fn, lw_lout(l, o, n->args[0]), n->nargs > 1 ? lw_lout(l, o, n->args[1]) : NULL);
  case RO_SUM: return lw_sum_loop(l, n->bound, NULL, n->args[0], o);
  case RO_BIN: {
    KExpr *x = lw_lout(l, o, n->args[0]), *y = lw_lout(l, o, n->args[1]);
    KOp op = n->op == '+' ? KO_ADD : n->op == '-' ? KO_SUB : n->op == '*' ? KO_MUL : KO_DIV;
    return ke_bin(l->m, op, x, y);
  }
  }
  return lw_F(l, NAN);
}

KExpr *lw_sum_loop(L *l, int bound, const Expr *body_e, const RecOut *body_o,
                       const RecOutput *o) {
  int acc = lw_var(l, KT_F32, "sum");
  lw_set(l, acc, lw_F(l, 0));
  KStmt *outer = lw_open_for(l, lw_ivar_of(l, bound), lw_I(l, 0), lw_I(l, lw_dim_of_ivar(l, bound)), 0);
  lw_accumulate(l, acc, body_o ? lw_lout(l, o, body_o) : lw_lx(l, body_e));
  lw_close_for(l, outer);
  return lw_V(l, acc);
}

/* Loops over a scope's left-hand side (row-major); returns the element's flat index. */
KExpr *lw_open_lhs(L *l, const RecScope *sc, KStmt **outer) {
  *outer = l->blk;
  KExpr *flat = lw_I(l, 0);
  for (int v = 0; v < sc->nlhs; v++) {
    int64_t n = l->sp->dims[sc->ivars[v].dim];
    int flags = (v == sc->nlhs - 1 ? KF_VECTORIZE : 0) | (v == 0 ? KF_BLOCK : 0);
    if (l->in_output && l->split && sc->ivars[v].dim == l->split_dim) {
      /* the item's columns only */
      int jt = lw_var(l, KT_I64, "jt");
      lw_open_for(l, jt, lw_I(l, 0), lw_V(l, l->v_vw), flags);
      lw_set(l, lw_ivar_of(l, v), lw_gcol(l, lw_V(l, jt)));
    } else {
      lw_open_for(l, lw_ivar_of(l, v), lw_I(l, 0), lw_I(l, n), flags);
    }
    flat = ke_add(l->m, ke_mul(l->m, flat, lw_I(l, n)), lw_V(l, lw_ivar_of(l, v)));
  }
  return flat;
}

void lw_lower_output(L *l, const RecOutput *o, int accumulate_dirs, int mean_last) {
  lw_use_scope(l, &o->scope);
  const Sym *s = &l->mx->syms[o->sym];
  KStmt *outer;
  l->in_output = 1;
  lw_open_lhs(l, &o->scope, &outer);
  l->in_output = 0;
  KExpr *off = lw_V(l, l->tokbase[o->sym]);
  int first = lw_layout_dims_before_features(l, o->sym);
  for (int v = 0; v < s->rank; v++)
    off = ke_add(l->m, off, ke_mul(l->m, lw_V(l, lw_ivar_of(l, v)), lw_V(l, l->stride[o->sym][first + v])));
  int val = lw_var(l, KT_F32, o->name);
  lw_set(l, val, lw_lout(l, o, o->root));
  KType dt = l->sp->dtype[o->sym];
  KExpr *ptr = lw_V(l, l->ptrvar[o->sym]);
  KExpr *x = lw_V(l, val);
  if (accumulate_dirs) x = lw_fadd(l, ke_load(l->m, dt, ptr, off), x);
  if (mean_last) x = ke_bin(l->m, KO_DIV, x, lw_F(l, (double)l->mx->ndirs));
  lw_emit(l, ks_store(l->m, dt, ptr, off, x));
  l->blk = outer;
}

/* ---- prelude ---- */

void lw_lower_prelude(L *l) {
  for (int k = 0; k < l->rm->nlets; k++) {
    const RecLet *let = &l->rm->lets[k];
    lw_use_scope(l, &let->scope);
    KStmt *outer;
    KExpr *flat = lw_open_lhs(l, &let->scope, &outer);
    lw_scr_store(l, l->let_off[k], flat, lw_lx(l, let->rhs));
    l->blk = outer;
  }
}

/* ---- update steps ---- */

/* The loop variable for the state's row (k = 0) or column (k = 1): the step's own index
 * variable when the state has that dim, else a fresh one no expression reads. */
int lw_lhs_var(L *l, int k) {
  return k < l->sc->nlhs ? lw_ivar_of(l, k) : lw_var(l, KT_I64, k ? "unit_j" : "unit_i");
}

/* off[0..n) = e for each value of the loop variable lv. */
void lw_vec_into(L *l, const Expr *e, int lv, int64_t n, int64_t off) {
  KStmt *outer = lw_open_for(l, lv, lw_I(l, 0), lw_I(l, n), KF_BLOCK);
  lw_scr_store(l, off, lw_V(l, lv), lw_lx(l, e));
  lw_close_for(l, outer);
}

KExpr *lw_src_at(L *l, int s, int version, KExpr *i, KExpr *j) {
  return ke_load(l->m, KT_F32, lw_V(l, l->ver[s][version]),
                 ke_add(l->m, ke_mul(l->m, i, lw_I(l, l->C[s])), j));
}

/* Token base offsets of every input and output: b*sB + t*sT + h*sH (grids: y, x). */
void lw_set_token_bases(L *l, KExpr *y, KExpr *x) {
  for (int s = 0; s < l->mx->nsyms; s++) {
    if (l->tokbase[s] < 0) continue;
    KExpr *off = ke_mul(l->m, lw_V(l, l->v_b), lw_V(l, l->stride[s][0]));
    if (l->mx->ngrid) {
      off = ke_add(l->m, off, ke_mul(l->m, y, lw_V(l, l->stride[s][1])));
      off = ke_add(l->m, off, ke_mul(l->m, x, lw_V(l, l->stride[s][2])));
      off = ke_add(l->m, off, ke_mul(l->m, lw_V(l, l->v_h), lw_V(l, l->stride[s][3])));
    } else {
      off = ke_add(l->m, off, ke_mul(l->m, lw_V(l, l->v_t), lw_V(l, l->stride[s][1])));
      off = ke_add(l->m, off, ke_mul(l->m, lw_V(l, l->v_h), lw_V(l, l->stride[s][2])));
    }
    lw_set(l, l->tokbase[s], off);
  }
}

/* ---- states in and out ---- */

void lw_state_io(L *l, int store) {
  for (int k = 0; k < l->rm->nstates; k++) {
    int sym = l->rm->states[k].sym;
    int ptr = store ? l->sout_ptr[sym] : l->sin_ptr[sym];
    int *st = store ? l->sout_stride[sym] : l->sin_stride[sym];
    int64_t R = l->R[k], C = l->C[k];
    int nd = l->rm->states[k].ndim;
    if (store && ptr < 0) continue;
    KStmt *direct_if = NULL, *keep = l->blk;
    if (l->v_direct >= 0 && l->state_home && l->state_home[k] >= 0 && ptr >= 0) {
      /* in the caller's buffer when the flag says so (every version: one buffer), else in
       * scratch with the copies below */
      if (!store) {
        KExpr *off = ke_add(l->m, ke_mul(l->m, lw_V(l, l->v_n), lw_V(l, st[0])),
                            ke_mul(l->m, lw_V(l, l->v_h), lw_V(l, st[1])));
        lw_set(l, l->ver[k][0],
               ke_select(l->m, lw_V(l, l->v_direct),
                         ke_ptradd(l->m, lw_V(l, ptr), ke_mul(l->m, off, lw_I(l, 4))),
                         lw_V(l, l->state_home[k])));
        for (int v = 1; v <= l->rm->states[k].nsteps; v++)
          lw_set(l, l->ver[k][v], lw_V(l, l->ver[k][0]));
      }
      direct_if = ks_if(l->m, ke_bin(l->m, KO_EQ, lw_V(l, l->v_direct), lw_I(l, 0)));
      lw_emit(l, direct_if);
      l->blk = direct_if;
    }
    int iv = lw_var(l, KT_I64, "si"), jv = lw_var(l, KT_I64, "sj");
    KStmt *outer = lw_open_for(l, iv, lw_I(l, 0), lw_I(l, R), KF_BLOCK);
    lw_open_for(l, jv, lw_I(l, 0), lw_ncols(l, k), KF_VECTORIZE);
    KExpr *flat = ke_add(l->m, ke_mul(l->m, lw_V(l, iv), lw_I(l, C)), lw_V(l, jv));
    if (ptr < 0) {
      if (!store)
        lw_emit(l, ks_store(l->m, KT_F32, lw_V(l, l->ver[k][0]), flat, lw_F(l, 0)));
    } else {
      KExpr *off = ke_add(l->m, ke_mul(l->m, lw_V(l, l->v_n), lw_V(l, st[0])),
                          ke_mul(l->m, lw_V(l, l->v_h), lw_V(l, st[1])));
      if (nd > 0) off = ke_add(l->m, off, ke_mul(l->m, lw_V(l, iv), lw_V(l, st[2])));
      if (nd > 1) off = ke_add(l->m, off, ke_mul(l->m, lw_gcol(l, lw_V(l, jv)), lw_V(l, st[3])));
      if (store)
        lw_emit(l, ks_store(l->m, KT_F32, lw_V(l, ptr), off,
                         ke_load(l->m, KT_F32, lw_V(l, l->ver[k][0]), flat)));
      else
        lw_emit(l, ks_store(l->m, KT_F32, lw_V(l, l->ver[k][0]), flat,
                         ke_load(l->m, KT_F32, lw_V(l, ptr), off)));
    }
    lw_close_for(l, outer);
    if (direct_if) l->blk = keep;
  }
}

/* ---- the argument tables ---- */

int *lw_int_array(L *l, int n, int fill) {
  int *a = arena_array(l->arena, (size_t)(n > 0 ? n : 1), sizeof *a);
  for (int i = 0; a && i < n; i++) a[i] = fill;
  return a;
}

/* Slots and entry loads for one tensor: a pointer slot and one stride slot per layout dim. */
int lw_tensor_slots(L *l, int sym, const char *role, int state_array, int *ptr_slot,
                        int *stride_slot, int *ptrvar, int **stridevars) {
  const char *name = l->mx->syms[sym].name;
  *ptr_slot = kir_slot(l->m, KSL_PTR, arena_printf(l->arena, "%s %s", role, name));
  int rank = plan_layout_rank(l->rm, sym, state_array);
  *ptrvar = lw_var(l, KT_PTR, arena_printf(l->arena, "p_%s%s", name, state_array ? role : ""));
  lw_set(l, *ptrvar, ke_ptr_slot(l->m, *ptr_slot));
  *stridevars = lw_int_array(l, rank, -1);
  if (!*stridevars) return 1;
  for (int d = 0; d < rank; d++) {
    int slot_ = kir_slot(l->m, KSL_INT, arena_printf(l->arena, "stride %d of %s %s", d, role, name));
    if (d == 0) *stride_slot = slot_;
    (*stridevars)[d] = lw_var(l, KT_I64, arena_printf(l->arena, "s_%s%s%d", name, state_array ? role : "", d));
    lw_set(l, (*stridevars)[d], ke_int_slot(l->m, slot_));
  }
  return 0;
}

int lw_setup_tables(L *l) {
  const Mixer *mx = l->mx;
  KernelPlan *pl = l->pl;
  int ns = mx->nsyms;
  pl->nsyms = ns;
  pl->ptr = lw_int_array(l, ns, -1);
  pl->state_in = lw_int_array(l, ns, -1);
  pl->state_out = lw_int_array(l, ns, -1);
  pl->stride = lw_int_array(l, ns, -1);
  pl->state_in_stride = lw_int_array(l, ns, -1);
  pl->state_out_stride = lw_int_array(l, ns, -1);
  l->ptrvar = lw_int_array(l, ns, -1);
  l->sin_ptr = lw_int_array(l, ns, -1);
  l->sout_ptr = lw_int_array(l, ns, -1);
  l->tokbase = lw_int_array(l, ns, -1);
  l->stride = arena_array(l->arena, (size_t)ns + 1, sizeof *l->stride);
  l->sin_stride = arena_array(l->arena, (size_t)ns + 1, sizeof *l->sin_stride);
  l->sout_stride = arena_array(l->arena, (size_t)ns + 1, sizeof *l->sout_stride);
  if (l->arena->failed) return lw_lfail(l, "out of memory");
  pl->size_B = kir_slot(l->m, KSL_INT, "B");
  pl->size_T = kir_slot(l->m, KSL_INT, "T");
  pl->size_H = kir_slot(l->m, KSL_INT, "H");
  pl->size_N = kir_slot(l->m, KSL_INT, "N (sequences: B, or the number of cu_seqlens segments)");
  pl->size_Y = pl->size_X = pl->cu_seqlens = pl->state_direct = -1;
  l->v_direct = -1;
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
      if (lw_tensor_slots(l, s, sym_kind_name(y->kind), 0, &pl->ptr[s], &pl->stride[s],
                       &l->ptrvar[s], &l->stride[s]))
        return lw_lfail(l, "out of memory");
      if (in || out) l->tokbase[s] = lw_var(l, KT_I64, arena_printf(l->arena, "tok_%s", y->name));
    }
    if (y->kind == SYM_STATE && l->sp->present[s] &&
        lw_tensor_slots(l, s, "initial", 1, &pl->state_in[s], &pl->state_in_stride[s],
                     &l->sin_ptr[s], &l->sin_stride[s]))
      return lw_lfail(l, "out of memory");
    if (y->kind == SYM_STATE && l->sp->want[s] &&
        lw_tensor_slots(l, s, "final", 1, &pl->state_out[s], &pl->state_out_stride[s],
                     &l->sout_ptr[s], &l->sout_stride[s]))
      return lw_lfail(l, "out of memory");
  }
  return 0;
}

/* ---- scratch ---- */

int64_t lw_feat_of_scope(const L *l, const RecScope *sc) {
  int64_t n = 1;
  for (int v = 0; v < sc->nlhs; v++) n *= l->sp->dims[sc->ivars[v].dim];
  return n;
}

/* ---- scaffolding every strategy's kernel shares ---- */

KStmt *lw_open_items(L *l) {
  l->v_b = lw_var(l, KT_I64, "b");
  l->v_h = lw_var(l, KT_I64, "h");
  l->v_n = lw_var(l, KT_I64, "n");
  l->v_t = lw_var(l, KT_I64, "t");
  int item = lw_var(l, KT_I64, "item"), H = lw_var(l, KT_I64, "H");
  lw_set(l, H, ke_int_slot(l->m, l->pl->size_H));
  KStmt *outer = lw_open_for(l, item, ke_arg(l->m, 2), ke_arg(l->m, 3), KF_PARALLEL);
  KExpr *nh = lw_V(l, item);
  if (l->split) { /* item = (n H + h) ntiles + tile */
    int pair = lw_var(l, KT_I64, "pair");
    l->v_j0 = lw_var(l, KT_I64, "j0");
    l->v_vw = lw_var(l, KT_I64, "vw");
    lw_set(l, pair, ke_bin(l->m, KO_DIV, lw_V(l, item), lw_I(l, l->ntiles)));
    lw_set(l, l->v_j0, ke_mul(l->m, ke_bin(l->m, KO_REM, lw_V(l, item), lw_I(l, l->ntiles)),
                              lw_I(l, l->vt)));
    lw_set(l, l->v_vw, ke_bin(l->m, KO_MIN, lw_I(l, l->vt),
                              ke_bin(l->m, KO_SUB, lw_I(l, l->sp->dims[l->split_dim]),
                                     lw_V(l, l->v_j0))));
    nh = lw_V(l, pair);
  }
  lw_set(l, l->v_n, ke_bin(l->m, KO_DIV, nh, lw_V(l, H)));
  lw_set(l, l->v_h, ke_bin(l->m, KO_REM, nh, lw_V(l, H)));
  return outer;
}

KExpr *lw_ncols(L *l, int s) { return l->split ? lw_V(l, l->v_vw) : lw_I(l, l->C[s]); }

KExpr *lw_gcol(L *l, KExpr *jt) { return l->split ? ke_add(l->m, lw_V(l, l->v_j0), jt) : jt; }

/* Every readout term of n reads its state's column through lhs variable v. */
static const char *split_out_unfit(const RecMixer *rm, const RecOut *n, int v) {
  if (!n) return NULL;
  if (n->kind == RO_READOUT) {
    for (int k = 0; k < n->nterms; k++) {
      const RecRead *r = &n->terms[k].read;
      if (r->state < 0) continue;
      if (rm->states[r->state].ndim != 2 || r->nidx < 2 || r->idx[1].kind != RI_VAR ||
          r->idx[1].v != v)
        return "an output reads a state column other than its own value index";
    }
    return NULL;
  }
  for (int i = 0; i < n->nargs; i++) {
    const char *why = split_out_unfit(rm, n->args[i], v);
    if (why) return why;
  }
  return NULL;
}

int lw_split_applies(const RecMixer *rm, int *dim, const char **why) {
  *why = NULL;
  *dim = -1;
  if (rm->mixer->ngrid) *why = "grid scans are not split";
  if (!*why && rm->nstates < 1) *why = "no state";
  for (int s = 0; !*why && s < rm->nstates; s++) {
    const RecState *st = &rm->states[s];
    if (st->ndim != 2)
      *why = "a state is not a matrix";
    else if (*dim >= 0 && st->shape[1] != *dim)
      *why = "the states' columns are of different dims";
    else
      *dim = st->shape[1];
  }
  for (int o = 0; !*why && o < rm->noutputs; o++) {
    const RecOutput *out = &rm->outputs[o];
    int v = -1, n = 0;
    for (int k = 0; k < out->scope.nlhs; k++)
      if (out->scope.ivars[k].dim == *dim) {
        v = k;
        n++;
      }
    if (n != 1)
      *why = "an output does not have exactly one index over the states' columns";
    else
      *why = split_out_unfit(rm, out->root, v);
  }
  return *why == NULL;
}

void lw_plan_split(L *l, int can_split) {
  int dim = -1;
  const char *why;
  l->split = 0;
  l->ntiles = 1;
  l->split_dim = -1;
  l->pl->vtiles = 1;
  l->pl->vtile = 0;
  if (!can_split || !lw_split_applies(l->rm, &dim, &why)) return;
  int64_t V = l->sp->dims[dim];
  l->pl->vtile = V;
  int64_t vt = sched_vtile(V, l->sp->bh, l->sp->target_items, l->sp->vtile);
  if (vt >= V) return;
  l->split = 1;
  l->split_dim = dim;
  l->vt = vt;
  l->ntiles = (V + vt - 1) / vt;
  l->pl->vtile = vt;
  l->pl->vtiles = l->ntiles;
}

int64_t plan_items(const KernelPlan *plan, int64_t N, int64_t H) {
  int64_t t = plan->vtiles > 1 ? plan->vtiles : 1, s = plan->segs > 1 ? plan->segs : 1;
  if (t > INT64_MAX / s) return 0;
  t *= s;
  if (N < 0 || H < 0) return 0;
  if (H > 0 && N > INT64_MAX / H) return 0;
  if (N * H > 0 && t > INT64_MAX / (N * H)) return 0;
  return N * H * t;
}

void lw_sequence(L *l, int *t0, int *t1) {
  *t0 = lw_var(l, KT_I64, "t0");
  *t1 = lw_var(l, KT_I64, "t1");
  if (l->sp->varlen) {
    int cu = lw_var(l, KT_PTR, "cu");
    lw_set(l, cu, ke_ptr_slot(l->m, l->pl->cu_seqlens));
    lw_set(l, *t0, ke_load(l->m, l->sp->cu_type, lw_V(l, cu), lw_V(l, l->v_n)));
    lw_set(l, *t1, ke_load(l->m, l->sp->cu_type, lw_V(l, cu),
                           ke_add(l->m, lw_V(l, l->v_n), lw_I(l, 1))));
    lw_set(l, l->v_b, lw_I(l, 0));
  } else {
    lw_set(l, *t0, lw_I(l, 0));
    lw_set(l, *t1, ke_int_slot(l->m, l->pl->size_T));
    lw_set(l, l->v_b, lw_V(l, l->v_n));
  }
  lw_state_io(l, 0);
}

int64_t *lw_offsets(L *l, int n) {
  int64_t *a = arena_array(l->arena, (size_t)(n > 0 ? n : 1), sizeof *a);
  if (!a) lw_lfail(l, "out of memory");
  return a;
}

void lw_at_token(L *l, int c0, int tc) {
  lw_set(l, l->v_t, ke_add(l->m, lw_V(l, c0), lw_V(l, tc)));
  lw_set_token_bases(l, NULL, NULL);
  lw_lower_prelude(l);
}

void lw_lower_outputs(L *l) {
  for (int k = 0; k < l->rm->nevents; k++)
    if (l->rm->events[k].kind == RE_OUTPUT)
      lw_lower_output(l, &l->rm->outputs[l->rm->events[k].a], 0, 0);
}

int lw_begin(L *l, Arena *a, const KernelSpec *spec, KernelPlan *plan, Strategy strategy,
             const char *suffix, const char *items, char *err, size_t errlen) {
  memset(l, 0, sizeof *l);
  l->arena = a;
  l->sp = spec;
  l->rm = spec->rm;
  l->mx = spec->rm->mixer;
  l->pl = plan;
  l->err = err;
  l->errlen = errlen;
  memset(plan, 0, sizeof *plan);
  plan->strategy = strategy;
  plan->vtiles = 1;
  plan->segs = 1;
  l->m = kir_module(a);
  if (!l->m) return lw_lfail(l, "out of memory");
  plan->mod = l->m;
  l->f = kir_func(l->m, arena_printf(a, "%s_%s", l->rm->name, suffix));
  if (!l->f) return lw_lfail(l, "out of memory");
  l->f->items = items;
  l->blk = l->f->body;
  return lw_setup_tables(l);
}

int lw_finish(L *l) {
  if (l->failed) return 1;
  if (l->arena->failed) return lw_lfail(l, "out of memory while lowering");
  return kir_verify(l->m, l->err, l->errlen);
}

/* ---- the chunk strategies' common frame (lower_chunk.c, lower_chunk_dplr.c) ---- */

int lw_chunk_begin(L *l, Arena *a, const KernelSpec *spec, KernelPlan *plan,
                   KExpr *(*readout)(L *l, const RecOutput *o, const RecOut *n), void *strategy,
                   char *err, size_t errlen) {
  if (lw_begin(l, a, spec, plan, STRAT_CHUNK, "chunk", "(sequence, head)", err, errlen))
    return 1;
  l->readout = readout;
  l->strategy = strategy;
  lw_plan_split(l, 1);
  if (l->split) l->f->items = "(sequence, head, value tile)";
  return 0;
}

int lw_chunk_tables(L *l) {
  int ns = l->rm->nstates;
  l->ver = arena_array(l->arena, (size_t)ns + 1, sizeof *l->ver);
  l->R = lw_offsets(l, ns);
  l->C = lw_offsets(l, ns);
  l->let_off = lw_offsets(l, l->rm->nlets);
  if (l->failed || !l->ver) return lw_lfail(l, "out of memory");
  l->v_scr = lw_var(l, KT_PTR, "scr");
  lw_set(l, l->v_scr, ke_arg(l->m, 4));
  return 0;
}

KStmt *lw_chunk_loop(L *l, int64_t C, int v_c0, int v_len) {
  int t0, t1;
  lw_sequence(l, &t0, &t1);
  /* for (c0 = t0; c0 < t1; c0 += C): KIR counts by one, so count chunks */
  int k = lw_var(l, KT_I64, "chunk"), nk = lw_var(l, KT_I64, "nchunks");
  lw_set(l, nk, ke_bin(l->m, KO_DIV,
                       ke_add(l->m, ke_bin(l->m, KO_SUB, lw_V(l, t1), lw_V(l, t0)), lw_I(l, C - 1)),
                       lw_I(l, C)));
  KStmt *outer = lw_open_for(l, k, lw_I(l, 0), lw_V(l, nk), 0);
  lw_set(l, v_c0, ke_add(l->m, lw_V(l, t0), ke_mul(l->m, lw_V(l, k), lw_I(l, C))));
  lw_set(l, v_len, ke_bin(l->m, KO_MIN, lw_I(l, C),
                          ke_bin(l->m, KO_SUB, lw_V(l, t1), lw_V(l, v_c0))));
  return outer;
}

void lw_chunk_loop_end(L *l, KStmt *outer) {
  lw_close_for(l, outer);
  lw_state_io(l, 1);
}

void lw_chunk_outputs(L *l, int v_c0, int v_len, int v_tc) {
  KStmt *outer = lw_open_for(l, v_tc, lw_I(l, 0), lw_V(l, v_len), 0);
  lw_at_token(l, v_c0, v_tc);
  lw_lower_outputs(l);
  lw_close_for(l, outer);
}

KExpr *lw_chunk_result(L *l, int64_t off, int v_tc, int64_t width, KExpr *col) {
  if (l->split) col = ke_bin(l->m, KO_SUB, col, lw_V(l, l->v_j0));
  return lw_scr_load(l, off, ke_add(l->m, ke_mul(l->m, lw_V(l, v_tc), lw_I(l, width)), col));
}
