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
 * end of a token, so no state is copied between tokens.
 *
 * On the CPU (not for CUDA, whose KIR kernels keep the form above), two changes make the
 * token one pass over each state, as a hand-written loop is:
 * - in place: a state whose every step reads its source only at the element it writes
 *   (every class but general) and whose every read elsewhere in the token sees the latest
 *   version keeps one buffer; nothing rotates;
 * - readouts by rows: a readout sum(i, c[i] * S[i, j]) (the state's row summed, its column
 *   the output's index) accumulates into a [cols] buffer row by row, the inner loop over the
 *   contiguous column, inside the element loop of the step that writes the version it
 *   reads ("fused"), or in loops of its own before its output when no step writes it in
 *   this token (a readout of the entering state, a non-causal grid's second pass). The
 *   output then reads the buffer (the `readout` answer). Other readouts keep their loops. */
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
    KExpr *ym = lw_scr_load(l, slot(l, 2), lw_V(l, mm));
    if (l->strategy) { /* the CPU: y[m] in a variable, out of the vectorised loop */
      int yv = lw_var(l, KT_F32, "y");
      lw_set(l, yv, ym);
      ym = lw_V(l, yv);
    }
    lw_open_for(l, o, lw_I(l, 0), lw_I(l, other), KF_VECTORIZE | KF_BLOCK);
    lw_scr_store(l, proj, lw_V(l, o),
              lw_fadd(l, lw_scr_load(l, proj, lw_V(l, o)),
                   lw_fmul(l, ym, lw_src_at(l, s, st->version, lw_V(l, mm), lw_V(l, o)))));
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
static void prepare_step(L *l, int s, const RecStep *st, int *scal, int proj_done) {
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
    if (!proj_done) projection(l, s, st, lr, left, slot(l, 4 + 2 * r));
  }
  for (int k = 0; k < st->nouter; k++) {
    const RecOuter *o = &st->outer[k];
    scal[1 + st->nlr + k] = lw_var(l, KT_F32, "c");
    lw_set(l, scal[1 + st->nlr + k], lw_fmul(l, lw_F(l, o->scale), lw_lx(l, o->c)));
    lw_vec_into(l, o->u, lw_lhs_var(l, 0), R, slot(l, outer_slot(st, k)));
    if (st->scope.nlhs > 1) lw_vec_into(l, o->w, lw_lhs_var(l, 1), C, slot(l, outer_slot(st, k) + 1));
  }
}

/* A step's vectors indexed by the row, read once a row into variables before the column
 * loop (so the loop holds no loop-invariant scratch load beside its stores: LLVM's
 * vectoriser cannot order those against the stores into the same scratch). */
enum { MAX_ROW_VALS = 64 };
typedef struct RowVals {
  int64_t off[MAX_ROW_VALS];
  int var[MAX_ROW_VALS];
  int n;
} RowVals;

static KExpr *row_load(L *l, const RowVals *rv, int64_t off, KExpr *i) {
  for (int k = 0; rv && k < rv->n; k++)
    if (rv->off[k] == off) return lw_V(l, rv->var[k]);
  return lw_scr_load(l, off, i);
}

static void row_hoist(L *l, RowVals *rv, int64_t off, int iv) {
  if (rv->n == MAX_ROW_VALS) return;
  rv->off[rv->n] = off;
  rv->var[rv->n] = lw_var(l, KT_F32, "r");
  lw_set(l, rv->var[rv->n], lw_scr_load(l, off, lw_V(l, iv)));
  rv->n++;
}

/* Every vector of step st that its element loop reads at the row (linear_part, input_part). */
static void row_hoist_step(L *l, RowVals *rv, const RecStep *st, int iv) {
  int left = st->side != RS_RIGHT;
  if ((st->cls == RC_DIAG && left) || (st->cls == RC_DPLR && st->side == RS_LEFT))
    row_hoist(l, rv, slot(l, 0), iv);
  for (int r = 0; st->cls == RC_DPLR && r < st->nlr; r++)
    row_hoist(l, rv, slot(l, (st->side == RS_LEFT ? 3 : 4) + 2 * r), iv);
  for (int k = 0; k < st->nouter; k++) row_hoist(l, rv, slot(l, outer_slot(st, k)), iv);
}

/* proj0: where the first rank-one term's projection is (slot 4, or the fused buffer). */
static KExpr *linear_part(L *l, int s, const RecStep *st, const int *scal, const RowVals *rv,
                          int64_t proj0, KExpr *x, KExpr *i, KExpr *j) {
  switch (st->cls) {
  case RC_IDENTITY: return x;
  case RC_SCALAR: return lw_fmul(l, lw_V(l, scal[0]), x);
  case RC_DIAG:
    if (st->side != RS_RIGHT) x = lw_fmul(l, row_load(l, rv, slot(l, 0), i), x);
    if (st->side != RS_LEFT) x = lw_fmul(l, lw_scr_load(l, slot(l, 1), j), x);
    return x;
  case RC_DPLR: {
    int left = st->side == RS_LEFT;
    KExpr *acc = lw_fmul(l, left ? row_load(l, rv, slot(l, 0), i) : lw_scr_load(l, slot(l, 1), j), x);
    for (int r = 0; r < st->nlr; r++) {
      KExpr *xr = left ? row_load(l, rv, slot(l, 3 + 2 * r), i) : lw_scr_load(l, slot(l, 3 + 2 * r), j);
      int64_t po = r == 0 ? proj0 : slot(l, 4 + 2 * r);
      KExpr *pr = left ? lw_scr_load(l, po, j) : row_load(l, rv, po, i);
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

static KExpr *input_part(L *l, const RecStep *st, const int *scal, const RowVals *rv, KExpr *i,
                         KExpr *j) {
  KExpr *acc = lw_F(l, 0);
  for (int k = 0; k < st->nouter; k++) {
    KExpr *u = row_load(l, rv, slot(l, outer_slot(st, k)), i);
    KExpr *w = st->scope.nlhs > 1 ? lw_scr_load(l, slot(l, outer_slot(st, k) + 1), j) : lw_F(l, 1);
    acc = lw_fadd(l, acc, lw_fmul(l, lw_V(l, scal[1 + st->nlr + k]), lw_fmul(l, u, w)));
  }
  if (st->nadd) acc = lw_fadd(l, acc, lw_terms(l, st->add, st->nadd));
  return acc;
}

/* ---- the CPU forms: states in place, readouts by rows ---- */

enum { MAX_ROWS_READOUTS = 16, MAX_FUSED_TERMS = 64 };

typedef struct RowsReadout {
  const RecOutput *o;
  const RecOut *n;  /* a readout node of o */
  int64_t off;      /* its [cols] buffer in scratch */
  int state, step;  /* fused into states[state].steps[step]; state -1: loops of its own */
} RowsReadout;

typedef struct RecCtx {
  int *inplace; /* per state slot: one buffer for every version */
  int64_t fused_y, fused_proj; /* a projection taken in the previous step's loop: its y and
                                  the sum (buffers of `big` floats) */
  RowsReadout rr[MAX_ROWS_READOUTS];
  int nrr;
  int nfused; /* terms of the fused readouts, at most MAX_FUSED_TERMS */
} RecCtx;

/* Whether term t of a readout in output o reads a matrix state as sum(i, c * S[i, j]) with
 * j the output's one index and c free of anything but i and j. */
static int rows_term(const RecOutput *o, const RecTerm *t) {
  const RecRead *r = &t->read;
  if (o->scope.nlhs != 1 || r->state < 0 || r->nidx != 2) return 0;
  if (r->idx[0].kind != RI_VAR || r->idx[1].kind != RI_VAR) return 0;
  int i = r->idx[0].v, j = r->idx[1].v;
  if (j != 0 || i == j || t->summed != (uint64_t)1 << i) return 0;
  return !t->coef || (t->coef->free & ~((uint64_t)1 << i | 1)) == 0;
}

/* Whether a readout in tree n reads state s at a version other than `version`. */
static int reads_other_version(const RecOut *n, int s, int version) {
  if (n->kind == RO_READOUT)
    for (int t = 0; t < n->nterms; t++)
      if (n->terms[t].read.state == s && n->terms[t].read.version != version) return 1;
  for (int a = 0; a < n->nargs; a++)
    if (reads_other_version(n->args[a], s, version)) return 1;
  return 0;
}

/* Every read of state s in the token, at the event where it happens. A read by an
 * output or another state's step must see the latest version then; s's own steps must
 * read their source only at the element they write. */
static int inplace_ok(const RecMixer *rm, int s) {
  if (rm->noncausal) return 0;
  int done = 0; /* steps of s so far in the token */
  for (int k = 0; k < rm->nevents; k++) {
    const RecEvent *e = &rm->events[k];
    if (e->kind == RE_STEP) {
      const RecStep *st = &rm->states[e->a].steps[e->b];
      if (e->a == s) {
        if (st->cls == RC_GENERAL || st->version != done) return 0;
        done++;
      } else {
        for (int t = 0; t < st->nterms; t++)
          if (st->terms[t].read.state == s && st->terms[t].read.version != done) return 0;
      }
      continue;
    }
    if (reads_other_version(rm->outputs[e->a].root, s, done)) return 0; /* an output */
  }
  return 1;
}

static void plan_rows_node(L *l, RecCtx *c, const RecOutput *o, const RecOut *n,
                           int64_t *off) {
  for (int a = 0; a < n->nargs; a++) plan_rows_node(l, c, o, n->args[a], off);
  if (n->kind != RO_READOUT || n->nterms == 0 || c->nrr == MAX_ROWS_READOUTS) return;
  if ((n->free & ~(uint64_t)1) != 0) return; /* under a sum of the output's */
  int fuse_state = n->terms[0].read.state, fuse_version = n->terms[0].read.version;
  for (int t = 0; t < n->nterms; t++) {
    const RecTerm *tm = &n->terms[t];
    if (!rows_term(o, tm)) return;
    if (tm->read.state != fuse_state || tm->read.version != fuse_version) fuse_state = -1;
  }
  RowsReadout *r = &c->rr[c->nrr++];
  r->o = o;
  r->n = n;
  r->off = *off;
  *off += l->big;
  /* fused into the step that writes the version it reads (causal mixers: outputs run in
   * the same token as the steps), while the fused terms fit lower_step's tables */
  r->state = -1;
  r->step = -1;
  if (fuse_state >= 0 && fuse_version > 0 && !l->rm->noncausal &&
      c->nfused + n->nterms <= MAX_FUSED_TERMS) {
    r->state = fuse_state;
    r->step = fuse_version - 1;
    c->nfused += n->nterms;
  }
}

static const RowsReadout *rows_of(const L *l, const RecOut *n) {
  const RecCtx *c = l->strategy;
  for (int k = 0; c && k < c->nrr; k++)
    if (c->rr[k].n == n) return &c->rr[k];
  return NULL;
}

/* The recurrent strategy's readout answer: a rows buffer at the output's index. */
static KExpr *rows_answer(L *l, const RecOutput *o, const RecOut *n) {
  (void)o;
  const RowsReadout *r = rows_of(l, n);
  return r ? lw_scr_load(l, r->off, lw_V(l, lw_ivar_of(l, 0))) : NULL;
}

/* buf[j] = the readout's constant part (0 if none), over the output's index. */
static void rows_init(L *l, const RowsReadout *r) {
  lw_use_scope(l, &r->o->scope);
  int j = lw_ivar_of(l, 0);
  KStmt *outer = lw_open_for(l, j, lw_I(l, 0), lw_I(l, lw_dim_of_ivar(l, 0)), KF_VECTORIZE);
  lw_scr_store(l, r->off, lw_V(l, j), r->n->konst ? lw_lx(l, r->n->konst) : lw_F(l, 0));
  lw_close_for(l, outer);
}

/* A readout by rows in loops of its own: init, then per term and row i,
 * buf[j] += scale c S[i, j] with j innermost. */
static void rows_loops(L *l, const RowsReadout *r) {
  rows_init(l, r);
  for (int t = 0; t < r->n->nterms; t++) {
    const RecTerm *tm = &r->n->terms[t];
    int i = lw_ivar_of(l, tm->read.idx[0].v), j = lw_ivar_of(l, 0);
    KStmt *outer = lw_open_for(l, i, lw_I(l, 0), lw_I(l, lw_dim_of_ivar(l, tm->read.idx[0].v)), 0);
    lw_open_for(l, j, lw_I(l, 0), lw_I(l, lw_dim_of_ivar(l, 0)), KF_VECTORIZE);
    KExpr *x = lw_fmul(l, lw_F(l, tm->scale), lw_fmul(l, lw_lx(l, tm->coef), lw_state_elem(l, &tm->read)));
    lw_scr_store(l, r->off, lw_V(l, j), lw_fadd(l, lw_scr_load(l, r->off, lw_V(l, j)), x));
    lw_close_for(l, outer);
  }
}

/* The coefficient of term tm (output scope) with its row index bound to the step's row
 * variable iv and the output's index to the column variable jv; the step's scope is kept. */
static KExpr *fused_coef(L *l, const RowsReadout *r, const RecTerm *tm, int iv, int jv) {
  const RecScope *keep = l->sc;
  int ivars[MIXC_MAX_IVARS];
  memcpy(ivars, l->ivar, sizeof ivars);
  lw_use_scope(l, &r->o->scope);
  l->ivar[tm->read.idx[0].v] = iv;
  l->ivar[0] = jv;
  KExpr *c = lw_fmul(l, lw_F(l, tm->scale), lw_lx(l, tm->coef));
  l->sc = keep;
  memcpy(l->ivar, ivars, sizeof ivars);
  return c;
}

/* Whether step k + 1 of state s (a delta-like left step: one rank-one term) can take its
 * projection y^T S from step k's element loop, which writes the version it reads (the CPU,
 * the state in place, step k not itself rank-one: its own projection's slot is free). */
static int fuse_next_projection(const L *l, int s, int k) {
  const RecCtx *c = l->strategy;
  const RecState *rs = &l->rm->states[s];
  if (!c || !c->inplace[s] || k + 1 >= rs->nsteps) return 0;
  const RecStep *a = &rs->steps[k], *b = &rs->steps[k + 1];
  return a->cls != RC_DPLR && a->cls != RC_GENERAL && b->cls == RC_DPLR && b->side == RS_LEFT &&
         b->nlr == 1;
}

/* proj_done: this step's projection came from the previous step's loop. */
static void lower_step(L *l, int s, const RecStep *st, int proj_done) {
  lw_use_scope(l, &st->scope);
  int scal[64];
  if (1 + st->nlr + st->nouter > (int)(sizeof scal / sizeof scal[0])) {
    lw_lfail(l, "state '%s': a step with %d rank-one terms and %d outer products is too large for "
             "the recurrent kernel", l->rm->states[s].name, st->nlr, st->nouter);
    return;
  }
  prepare_step(l, s, st, scal, proj_done);
  const RecCtx *c = l->strategy;
  int64_t R = l->R[s], C = l->C[s];
  int step_no = (int)(st - l->rm->states[s].steps);
  int fuse_proj = fuse_next_projection(l, s, step_no);
  if (fuse_proj) {
    /* the next step's y (its scope) and its projection, zeroed, in buffers of their own */
    const RecStep *nx = st + 1;
    lw_use_scope(l, &nx->scope);
    lw_vec_into(l, nx->lr[0].y, lw_ivar_of(l, nx->lr[0].m), R, c->fused_y);
    lw_use_scope(l, &st->scope);
    int o = lw_var(l, KT_I64, "o");
    KStmt *z = lw_open_for(l, o, lw_I(l, 0), lw_I(l, C), KF_VECTORIZE);
    lw_scr_store(l, c->fused_proj, lw_V(l, o), lw_F(l, 0));
    lw_close_for(l, z);
  }
  int iv = lw_lhs_var(l, 0), jv = lw_lhs_var(l, 1);
  KStmt *outer = lw_open_for(l, iv, lw_I(l, 0), lw_I(l, R), KF_BLOCK);
  RowVals rows = {{0}, {0}, 0}, *rv = NULL;
  int yrow = -1;
  if (l->strategy) {
    rv = &rows;
    row_hoist_step(l, rv, st, iv);
  }
  if (fuse_proj) {
    yrow = lw_var(l, KT_F32, "y");
    lw_set(l, yrow, lw_scr_load(l, c->fused_y, lw_V(l, iv)));
  }
  /* readouts fused into this step: per row, each term's coefficient (when it does not
   * vary along the row) before the column loop */
  int nf = 0;
  int coef[MAX_FUSED_TERMS];
  const RowsReadout *fr[MAX_FUSED_TERMS];
  const RecTerm *ft[MAX_FUSED_TERMS];
  for (int k = 0; c && k < c->nrr; k++) {
    const RowsReadout *r = &c->rr[k];
    if (r->state != s || r->step != step_no) continue;
    for (int t = 0; t < r->n->nterms; t++) { /* planned to fit: c->nfused */
      fr[nf] = r;
      ft[nf] = &r->n->terms[t];
      coef[nf] = -1;
      if (!ft[nf]->coef || !(ft[nf]->coef->free & 1)) {
        coef[nf] = lw_var(l, KT_F32, "rc");
        lw_set(l, coef[nf], fused_coef(l, r, ft[nf], iv, jv));
      }
      nf++;
    }
  }
  lw_open_for(l, jv, lw_I(l, 0), lw_I(l, C), KF_VECTORIZE);
  KExpr *i = lw_V(l, iv), *j = lw_V(l, jv);
  KExpr *x = lw_src_at(l, s, st->version, i, j);
  int64_t proj0 = proj_done ? c->fused_proj : slot(l, 4);
  KExpr *val = lw_fadd(l, linear_part(l, s, st, scal, rv, proj0, x, i, j),
                       input_part(l, st, scal, rv, i, j));
  if (nf || fuse_proj) {
    int nv = lw_var(l, KT_F32, "s_new");
    lw_set(l, nv, val);
    val = lw_V(l, nv);
  }
  lw_emit(l, ks_store(l->m, KT_F32, lw_V(l, l->ver[s][st->version + 1]),
                   ke_add(l->m, ke_mul(l->m, i, lw_I(l, C)), j), val));
  for (int k = 0; k < nf; k++) {
    KExpr *cf = coef[k] >= 0 ? lw_V(l, coef[k]) : fused_coef(l, fr[k], ft[k], iv, jv);
    lw_scr_store(l, fr[k]->off, j, lw_fadd(l, lw_scr_load(l, fr[k]->off, j), lw_fmul(l, cf, val)));
  }
  if (fuse_proj)
    lw_scr_store(l, c->fused_proj, j,
                 lw_fadd(l, lw_scr_load(l, c->fused_proj, j), lw_fmul(l, lw_V(l, yrow), val)));
  lw_close_for(l, outer);
}

/* ---- one token ---- */

static void lower_token(L *l, int steps, int outputs, int acc_dirs, int mean_last) {
  const RecCtx *c = l->strategy;
  lw_lower_prelude(l);
  /* the fused readouts' buffers start at their constant parts */
  for (int k = 0; c && steps && outputs && k < c->nrr; k++)
    if (c->rr[k].state >= 0) rows_init(l, &c->rr[k]);
  for (int k = 0; k < l->rm->nevents && !l->failed; k++) {
    const RecEvent *e = &l->rm->events[k];
    if (e->kind == RE_STEP && steps)
      lower_step(l, e->a, &l->rm->states[e->a].steps[e->b],
                 e->b > 0 && fuse_next_projection(l, e->a, e->b - 1));
    if (e->kind == RE_OUTPUT && outputs) {
      const RecOutput *o = &l->rm->outputs[e->a];
      for (int r = 0; c && r < c->nrr; r++)
        if (c->rr[r].o == o && c->rr[r].state < 0) rows_loops(l, &c->rr[r]);
      lw_lower_output(l, o, acc_dirs, mean_last);
    }
  }
  if (!steps) return;
  /* Rotate: the last version becomes the next token's version 0. */
  for (int s = 0; s < l->rm->nstates; s++) {
    int n = l->rm->states[s].nsteps;
    if (!n || (c && c->inplace[s])) continue;
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
  RecCtx *c = l->strategy;
  if (c) {
    /* the CPU forms: which states run in place */
    c->inplace = lw_int_array(l, rm->nstates + 1, 0);
    if (!c->inplace) return lw_lfail(l, "out of memory");
    for (int s = 0; s < rm->nstates; s++)
      c->inplace[s] = rm->states[s].ndim == 2 && rm->states[s].nsteps > 0 && inplace_ok(rm, s);
  }
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
      if (v == 0 && c && c->inplace[s] && l->sp->present[st->sym] && l->sp->want[st->sym] &&
          !l->rm->mixer->ngrid) {
        /* it may live in the caller's buffer (lw_state_io): its scratch address kept */
        if (l->v_direct < 0) {
          l->pl->state_direct =
              kir_slot(l->m, KSL_INT, "states in place (1: every state's initial and final "
                                      "tensors are one contiguous f32 buffer)");
          l->v_direct = lw_var(l, KT_I64, "direct");
          lw_set(l, l->v_direct, ke_int_slot(l->m, l->pl->state_direct));
          l->state_home = lw_int_array(l, rm->nstates + 1, -1);
          if (!l->state_home) return lw_lfail(l, "out of memory");
        }
        l->state_home[s] = lw_var(l, KT_PTR, arena_printf(l->arena, "%s_home", st->name));
        lw_set(l, l->state_home[s], ke_ptradd(l->m, lw_V(l, l->v_scr), lw_I(l, off * 4)));
      }
      if (v > 0 && c && c->inplace[s]) {
        lw_set(l, l->ver[s][v], lw_V(l, l->ver[s][0])); /* in place: one buffer */
        continue;
      }
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
  if (c) {
    c->fused_y = off;
    c->fused_proj = off + big;
    off += 2 * big;
  }
  /* which readouts go by rows, their buffers after the step vectors */
  for (int k = 0; c && k < rm->noutputs; k++)
    plan_rows_node(l, c, &rm->outputs[k], rm->outputs[k].root, &off);
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
  RecCtx cpu;
  memset(&cpu, 0, sizeof cpu);
  const char *items = spec->rm->mixer->ngrid ? "(batch, head)" : "(sequence, head)";
  if (lw_begin(&l, a, spec, plan, STRAT_RECURRENT, "recurrent", items, err, errlen)) return 1;
  if (!spec->gpu) {
    l.strategy = &cpu;
    l.readout = rows_answer;
  }
  if (setup_scratch(&l)) return 1;
  KStmt *outer = lw_open_items(&l);
  if (l.mx->ngrid)
    grid_body(&l);
  else
    causal_body(&l);
  lw_close_for(&l, outer);
  if (lw_finish(&l)) return 1;
  for (int i = 0; !spec->gpu && i < plan->mod->nfuncs; i++) plan->mod->funcs[i]->cpu_only = 1;
  return 0;
}
