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
#include <stdio.h>
#include <string.h>

#include "lower_internal.h"

/* Slots of a step's vectors in scratch, each `big` floats: 0 left diagonal, 1 right
 * diagonal, 2 the contracted vector y, then per rank-one term its x and projection, then
 * per outer product its u and w. */
static int64_t slot(const L *l, int k) { return l->vec_off + (int64_t)k * l->big; }

/* proj[o] = sum over m of y[m] src[m, o] (left), or src[o, m] y[m] (right). */
static void projection(L *l, int s, const RecStep *st, const RecRankOne *lr, int left,
                       int64_t proj) {
  int64_t R = l->R[s], C = l->C[s], n = left ? R : C, other = left ? C : R;
  lw_vec_into(l, lr->y, lw_ivar_of(l, lr->m), n, slot(l, 2));
  int o = lw_var(l, KT_I64, "o"), mm = lw_var(l, KT_I64, "m");
  if (left) {
    KStmt *outer = lw_open_for(l, o, lw_I(l, 0), lw_I(l, other), KF_VECTORIZE | KF_BLOCK);
    lw_scr_store(l, proj, lw_V(l, o), lw_F(l, 0));
    lw_close_for(l, outer);
    outer = lw_open_for(l, mm, lw_I(l, 0), lw_I(l, n), 0);
    lw_open_for(l, o, lw_I(l, 0), lw_I(l, other), KF_VECTORIZE | KF_BLOCK);
    lw_scr_store(l, proj, lw_V(l, o),
              lw_fadd(l, lw_scr_load(l, proj, lw_V(l, o)),
                   lw_fmul(l, lw_scr_load(l, slot(l, 2), lw_V(l, mm)),
                        lw_src_at(l, s, st->version, lw_V(l, mm), lw_V(l, o)))));
    lw_close_for(l, outer);
  } else {
    int acc = lw_var(l, KT_F32, "p");
    KStmt *outer = lw_open_for(l, o, lw_I(l, 0), lw_I(l, other), KF_BLOCK);
    lw_set(l, acc, lw_F(l, 0));
    KStmt *oloop = lw_open_for(l, mm, lw_I(l, 0), lw_I(l, n), KF_VECTORIZE);
    lw_accumulate(l, acc, lw_fmul(l, lw_src_at(l, s, st->version, lw_V(l, o), lw_V(l, mm)),
                            lw_scr_load(l, slot(l, 2), lw_V(l, mm))));
    lw_close_for(l, oloop);
    lw_scr_store(l, proj, lw_V(l, o), lw_V(l, acc));
    lw_close_for(l, outer);
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
    scal[0] = lw_var(l, KT_F32, "a");
    lw_set(l, scal[0], lw_lx(l, st->a));
  }
  if (st->cls == RC_DIAG || st->cls == RC_DPLR) {
    if (left) lw_vec_into(l, st->dl, lw_lhs_var(l, 0), R, slot(l, 0));
    if (right) lw_vec_into(l, st->dr, lw_lhs_var(l, 1), C, slot(l, 1));
  }
  for (int r = 0; st->cls == RC_DPLR && r < st->nlr; r++) {
    const RecRankOne *lr = &st->lr[r];
    scal[1 + r] = lw_var(l, KT_F32, "c");
    lw_set(l, scal[1 + r], lw_fmul(l, lw_F(l, lr->scale), lw_lx(l, lr->c)));
    lw_vec_into(l, lr->x, lw_lhs_var(l, left ? 0 : 1), left ? R : C, slot(l, 3 + 2 * r));
    projection(l, s, st, lr, left, slot(l, 4 + 2 * r));
  }
  for (int k = 0; k < st->nouter; k++) {
    const RecOuter *o = &st->outer[k];
    scal[1 + st->nlr + k] = lw_var(l, KT_F32, "c");
    lw_set(l, scal[1 + st->nlr + k], lw_fmul(l, lw_F(l, o->scale), lw_lx(l, o->c)));
    lw_vec_into(l, o->u, lw_lhs_var(l, 0), R, slot(l, outer_slot(st, k)));
    if (st->scope.nlhs > 1) lw_vec_into(l, o->w, lw_lhs_var(l, 1), C, slot(l, outer_slot(st, k) + 1));
  }
}

static KExpr *linear_part(L *l, int s, const RecStep *st, const int *scal, KExpr *x, KExpr *i,
                          KExpr *j) {
  switch (st->cls) {
  case RC_IDENTITY: return x;
  case RC_SCALAR: return lw_fmul(l, lw_V(l, scal[0]), x);
  case RC_DIAG:
    if (st->side != RS_RIGHT) x = lw_fmul(l, lw_scr_load(l, slot(l, 0), i), x);
    if (st->side != RS_LEFT) x = lw_fmul(l, lw_scr_load(l, slot(l, 1), j), x);
    return x;
  case RC_DPLR: {
    int left = st->side == RS_LEFT;
    KExpr *acc = lw_fmul(l, left ? lw_scr_load(l, slot(l, 0), i) : lw_scr_load(l, slot(l, 1), j), x);
    for (int r = 0; r < st->nlr; r++) {
      KExpr *xr = lw_scr_load(l, slot(l, 3 + 2 * r), left ? i : j);
      KExpr *pr = lw_scr_load(l, slot(l, 4 + 2 * r), left ? j : i);
      acc = lw_fadd(l, acc, lw_fmul(l, lw_V(l, scal[1 + r]), lw_fmul(l, xr, pr)));
    }
    return acc;
  }
  case RC_ELEMENTWISE: return lw_fmul(l, lw_lx(l, st->ew), x);
  case RC_GENERAL: return lw_terms(l, st->terms, st->nterms);
  }
  (void)s;
  return lw_F(l, NAN);
}

static KExpr *input_part(L *l, const RecStep *st, const int *scal, KExpr *i, KExpr *j) {
  KExpr *acc = lw_F(l, 0);
  for (int k = 0; k < st->nouter; k++) {
    KExpr *u = lw_scr_load(l, slot(l, outer_slot(st, k)), i);
    KExpr *w = st->scope.nlhs > 1 ? lw_scr_load(l, slot(l, outer_slot(st, k) + 1), j) : lw_F(l, 1);
    acc = lw_fadd(l, acc, lw_fmul(l, lw_V(l, scal[1 + st->nlr + k]), lw_fmul(l, u, w)));
  }
  if (st->nadd) acc = lw_fadd(l, acc, lw_terms(l, st->add, st->nadd));
  return acc;
}

static void lower_step(L *l, int s, const RecStep *st) {
  lw_use_scope(l, &st->scope);
  int scal[64];
  if (1 + st->nlr + st->nouter > (int)(sizeof scal / sizeof scal[0])) {
    lw_lfail(l, "state '%s': a step with %d rank-one terms and %d outer products is too large for "
             "the recurrent kernel", l->rm->states[s].name, st->nlr, st->nouter);
    return;
  }
  prepare_step(l, s, st, scal);
  int64_t R = l->R[s], C = l->C[s];
  int iv = lw_lhs_var(l, 0), jv = lw_lhs_var(l, 1);
  KStmt *outer = lw_open_for(l, iv, lw_I(l, 0), lw_I(l, R), KF_BLOCK);
  lw_open_for(l, jv, lw_I(l, 0), lw_I(l, C), KF_VECTORIZE);
  KExpr *i = lw_V(l, iv), *j = lw_V(l, jv);
  KExpr *x = lw_src_at(l, s, st->version, i, j);
  KExpr *val = lw_fadd(l, linear_part(l, s, st, scal, x, i, j), input_part(l, st, scal, i, j));
  lw_emit(l, ks_store(l->m, KT_F32, lw_V(l, l->ver[s][st->version + 1]),
                   ke_add(l->m, ke_mul(l->m, i, lw_I(l, C)), j), val));
  lw_close_for(l, outer);
}

/* ---- one token ---- */

static void lower_token(L *l, int steps, int outputs, int acc_dirs, int mean_last) {
  lw_lower_prelude(l);
  for (int k = 0; k < l->rm->nevents && !l->failed; k++) {
    const RecEvent *e = &l->rm->events[k];
    if (e->kind == RE_STEP && steps) lower_step(l, e->a, &l->rm->states[e->a].steps[e->b]);
    if (e->kind == RE_OUTPUT && outputs)
      lw_lower_output(l, &l->rm->outputs[e->a], acc_dirs, mean_last);
  }
  if (!steps) return;
  /* Rotate: the last version becomes the next token's version 0. */
  for (int s = 0; s < l->rm->nstates; s++) {
    int n = l->rm->states[s].nsteps;
    if (!n) continue;
    int tmp = lw_var(l, KT_PTR, "tmp");
    lw_set(l, tmp, lw_V(l, l->ver[s][0]));
    lw_set(l, l->ver[s][0], lw_V(l, l->ver[s][n]));
    lw_set(l, l->ver[s][n], lw_V(l, tmp));
  }
}

static int setup_scratch(L *l) {
  const RecMixer *rm = l->rm;
  int64_t off = 0, maxr = 0, big = 1;
  l->ver = arena_array(l->arena, (size_t)rm->nstates + 1, sizeof *l->ver);
  l->R = arena_array(l->arena, (size_t)rm->nstates + 1, sizeof *l->R);
  l->C = arena_array(l->arena, (size_t)rm->nstates + 1, sizeof *l->C);
  l->let_off = arena_array(l->arena, (size_t)rm->nlets + 1, sizeof *l->let_off);
  if (l->arena->failed) return lw_lfail(l, "out of memory");
  l->v_scr = lw_var(l, KT_PTR, "scr");
  lw_set(l, l->v_scr, ke_arg(l->m, 4));
  for (int s = 0; s < rm->nstates; s++) {
    const RecState *st = &rm->states[s];
    l->R[s] = st->ndim > 0 ? l->sp->dims[st->shape[0]] : 1;
    l->C[s] = st->ndim > 1 ? l->sp->dims[st->shape[1]] : 1;
    if (l->R[s] > big) big = l->R[s];
    if (l->C[s] > big) big = l->C[s];
    l->ver[s] = lw_int_array(l, st->nsteps + 1, -1);
    if (!l->ver[s]) return lw_lfail(l, "out of memory");
    for (int v = 0; v <= st->nsteps; v++) {
      l->ver[s][v] = lw_var(l, KT_PTR, arena_printf(l->arena, "%s_v%d", st->name, v));
      lw_set(l, l->ver[s][v], ke_ptradd(l->m, lw_V(l, l->v_scr), lw_I(l, off * 4)));
      off += l->R[s] * l->C[s];
    }
    for (int k = 0; k < st->nsteps; k++)
      if (st->steps[k].nlr + st->steps[k].nouter > maxr)
        maxr = st->steps[k].nlr + st->steps[k].nouter;
  }
  for (int k = 0; k < rm->nlets; k++) {
    l->let_off[k] = off;
    off += lw_feat_of_scope(l, &rm->lets[k].scope);
  }
  l->vec_off = off;
  l->big = big;
  off += big * (3 + 2 * maxr);
  l->f->scratch_floats = off;
  return 0;
}

/* ---- the kernel ---- */

static void causal_body(L *l) {
  int t0, t1;
  lw_sequence(l, &t0, &t1);
  KStmt *outer = lw_open_for(l, l->v_t, lw_V(l, t0), lw_V(l, t1), 0);
  lw_set_token_bases(l, NULL, NULL);
  lower_token(l, 1, 1, 0, 0);
  lw_close_for(l, outer);
  lw_state_io(l, 1);
}

/* Token k of direction d: its (y, x) on the grid. */
static void grid_coords(L *l, Direction d, int k, int y, int x, int Y, int X, int T) {
  KExpr *kk = lw_V(l, k);
  if (d == DIR_ROW_REV || d == DIR_COL_REV)
    kk = ke_bin(l->m, KO_SUB, ke_bin(l->m, KO_SUB, lw_V(l, T), lw_I(l, 1)), kk);
  if (d == DIR_ROW || d == DIR_ROW_REV || d == DIR_ALL) {
    lw_set(l, y, ke_bin(l->m, KO_DIV, kk, lw_V(l, X)));
    lw_set(l, x, ke_bin(l->m, KO_REM, kk, lw_V(l, X)));
  } else {
    lw_set(l, y, ke_bin(l->m, KO_REM, kk, lw_V(l, Y)));
    lw_set(l, x, ke_bin(l->m, KO_DIV, kk, lw_V(l, Y)));
  }
}

static void grid_body(L *l) {
  const Mixer *mx = l->mx;
  int Y = lw_var(l, KT_I64, "Y"), X = lw_var(l, KT_I64, "X"), T = lw_var(l, KT_I64, "T");
  int y = lw_var(l, KT_I64, "y"), x = lw_var(l, KT_I64, "x"), k = lw_var(l, KT_I64, "k");
  lw_set(l, Y, ke_int_slot(l->m, l->pl->size_Y));
  lw_set(l, X, ke_int_slot(l->m, l->pl->size_X));
  lw_set(l, T, ke_bin(l->m, KO_MUL, lw_V(l, Y), lw_V(l, X)));
  lw_set(l, l->v_b, lw_V(l, l->v_n));
  int ndir = mx->ndirs > 0 ? mx->ndirs : 1;
  for (int d = 0; d < ndir && !l->failed; d++) {
    Direction dir = mx->ndirs ? mx->dirs[d] : DIR_ROW;
    l->dir = d;
    int last_mean = mx->combine == COMBINE_MEAN && ndir > 1 && d == ndir - 1;
    lw_state_io(l, 0); /* grid mixers take no initial state: zeros */
    if (l->rm->noncausal) {
      KStmt *outer = lw_open_for(l, k, lw_I(l, 0), lw_V(l, T), 0);
      grid_coords(l, dir, k, y, x, Y, X, T);
      lw_set_token_bases(l, lw_V(l, y), lw_V(l, x));
      lower_token(l, 1, 0, 0, 0);
      lw_close_for(l, outer);
      /* Every output reads the state built from all tokens. */
      for (int s = 0; s < l->rm->nstates; s++)
        for (int v = 1; v <= l->rm->states[s].nsteps; v++) lw_set(l, l->ver[s][v], lw_V(l, l->ver[s][0]));
      outer = lw_open_for(l, k, lw_I(l, 0), lw_V(l, T), 0);
      grid_coords(l, dir, k, y, x, Y, X, T);
      lw_set_token_bases(l, lw_V(l, y), lw_V(l, x));
      lower_token(l, 0, 1, d > 0, last_mean);
      lw_close_for(l, outer);
      continue;
    }
    KStmt *outer = lw_open_for(l, k, lw_I(l, 0), lw_V(l, T), 0);
    grid_coords(l, dir, k, y, x, Y, X, T);
    lw_set_token_bases(l, lw_V(l, y), lw_V(l, x));
    lower_token(l, 1, 1, d > 0, last_mean);
    lw_close_for(l, outer);
  }
}

int lower_recurrent(Arena *a, const KernelSpec *spec, KernelPlan *plan, char *err,
                    size_t errlen) {
  L l;
  const char *items = spec->rm->mixer->ngrid ? "(batch, head)" : "(sequence, head)";
  if (lw_begin(&l, a, spec, plan, STRAT_RECURRENT, "recurrent", items, err, errlen) ||
      setup_scratch(&l))
    return 1;
  KStmt *outer = lw_open_items(&l);
  if (l.mx->ngrid)
    grid_body(&l);
  else
    causal_body(&l);
  lw_close_for(&l, outer);
  return lw_finish(&l);
}
