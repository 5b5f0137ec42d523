/* The chunk strategy for identity and scalar decay (ALGORITHMS.md section 1).
 *
 * Per (sequence, head), the tokens are cut into chunks of C. Within a chunk, with
 * S_t = a_t S_{t-1} + u_t w_t^T, the cumulative log decays b_t = sum_{s<=t} log a_s, and a
 * readout r_t = q_t^T S_t (the output's linear readouts of the state):
 *   R = (Q * e^b) S0 + ((Q U^T) .* Gamma .* mask) W,   Gamma[t, s] = e^{b_t - b_s} <= 1
 *   S_next = e^{b_C} S0 + (U * e^{b_C - b})^T W
 * so the work is four matrix products per chunk and only the state passes between chunks
 * (fused state passing: the state stays in the work item's scratch). Every exponent is of a
 * difference b_t - b_s with s <= t, or of b_t itself, so none is positive. A readout placed
 * before the update (it reads S_{t-1}) uses b_{t-1} and the strict mask.
 *
 * A diagonal decay (GLA, RWKV6, HGRN2: S_t = diag(a_t) S_{t-1} + u_t w_t^T) has b per row;
 * the intra-chunk products then weigh each channel by its own e^{b_t[i] - b_s[i]}, factored
 * per sub-chunk around a pivot token where the factors stay within e^{+-DIAG_SPAN}, and
 * exponent by exponent (each <= 0) where they do not (diag_attention).
 *
 * It applies when every state has one update per token, of class identity, scalar decay or
 * left-diagonal decay written as exp(...), its input one outer product, and every readout
 * contracts the state's row index with a coefficient that depends on that index alone.
 * Otherwise chunk_applies says why and the recurrent strategy runs instead. */
#include <stdio.h>
#include <string.h>

#include "lower_internal.h"
#include "schedule.h"

enum { MAX_READOUTS = 64 };

typedef struct Readout {
  const RecOut *node;
  int output;  /* the output whose tree holds it (its scope is the output's) */
  int state;   /* state slot */
  int before;  /* reads S_{t-1} */
  int64_t q, r; /* scratch offsets: coefficients [C, rows], results [C, cols] */
} Readout;

typedef struct Chunk {
  int64_t C;
  int *diag;                  /* per state slot: the decay differs per row (b is [C, rows]) */
  int *need_g;                /* per state slot: g is kept (a scalar decay, or a readout
                                 before the update reads b_{t-1} = b_t - g_t) */
  int64_t *S, *g, *b, *U, *W, *UT; /* per state slot: scratch offsets */
  int64_t *bT;                /* per diagonal state: b transposed, [rows, C], so loops over
                                 tokens read it contiguously */
  int64_t *dvec;              /* per scalar state: e^{b_C - b_u} for the state pass, [C] */
  int64_t Qs, A, Kp;          /* shared: [C, rows], [C, C], [rows, C] */
  int64_t sub;                /* sub-chunk length of the diagonal-decay rebasing */
  Readout ro[MAX_READOUTS];
  int nro;
  int v_c0, v_len, v_tc; /* chunk start, its length, the token within it */
} Chunk;

/* ---- applicability ---- */

static const char *step_unfit(const RecState *st) {
  if (st->nsteps != 1) return "a state is updated more or less than once per token";
  const RecStep *p = &st->steps[0];
  if (p->cls != RC_IDENTITY && p->cls != RC_SCALAR && !(p->cls == RC_DIAG && p->side == RS_LEFT))
    return "a transition is not identity, scalar or left-diagonal decay";
  if (p->nadd || p->nouter != 1) return "an update's input is not one outer product";
  const Expr *a = p->cls == RC_SCALAR ? p->a : p->dl;
  if (p->cls != RC_IDENTITY && !(a && a->kind == EX_CALL && a->fn == FN_EXP))
    return "a decay is not written as exp(...)";
  return NULL;
}

/* A readout node: every term reads one state at the version after its update (or before
 * it), contracts the row index, and its coefficient depends on that index alone. */
static const char *readout_unfit(const RecMixer *rm, const RecOut *n, int *state, int *before) {
  *state = -1;
  for (int k = 0; k < n->nterms; k++) {
    const RecTerm *t = &n->terms[k];
    const RecRead *r = &t->read;
    const char *why = lw_readout_term_unfit(rm, t);
    if (why) return why;
    const RecState *st = &rm->states[r->state];
    if (*state >= 0 && r->state != *state) return "one readout reads two states";
    int b = r->version == 0 && st->nsteps > 0;
    if (*state >= 0 && b != *before) return "one readout reads two versions of a state";
    *state = r->state;
    *before = b;
  }
  return *state < 0 ? "a readout reads no state" : NULL;
}

typedef struct Walk {
  const RecMixer *rm;
  Chunk *ck; /* NULL: only check */
  int output;
  const char *why;
} Walk;

static void walk_out(Walk *w, const RecOut *n) {
  if (!n || w->why) return;
  if (n->kind == RO_READOUT) {
    int state, before;
    w->why = readout_unfit(w->rm, n, &state, &before);
    if (w->why || !w->ck) return;
    if (w->ck->nro == MAX_READOUTS) {
      w->why = "too many readouts";
      return;
    }
    Readout *r = &w->ck->ro[w->ck->nro++];
    r->node = n;
    r->output = w->output;
    r->state = state;
    r->before = before;
    return;
  }
  for (int i = 0; i < n->nargs; i++) walk_out(w, n->args[i]);
}

int chunk_applies(const RecMixer *rm, const char **why) {
  *why = NULL;
  if (rm->mixer->ngrid) *why = "grid scans run recurrently";
  for (int s = 0; !*why && s < rm->nstates; s++) *why = step_unfit(&rm->states[s]);
  Walk w = {rm, NULL, 0, NULL};
  for (int o = 0; !*why && o < rm->noutputs; o++) {
    w.output = o;
    walk_out(&w, rm->outputs[o].root);
    *why = w.why;
  }
  return *why == NULL;
}

/* ---- pieces of the kernel ---- */

static KExpr *fsub(L *l, KExpr *x, KExpr *y) { return ke_bin(l->m, KO_SUB, x, y); }
static KExpr *isub(L *l, KExpr *x, KExpr *y) { return ke_bin(l->m, KO_SUB, x, y); }
static KExpr *fexp(L *l, KExpr *x) { return ke_un(l->m, KO_EXP, x); }
static KExpr *ld(L *l, int64_t off, KExpr *idx) { return lw_scr_load(l, off, idx); }
static void st(L *l, int64_t off, KExpr *idx, KExpr *v) { lw_scr_store(l, off, idx, v); }
static KExpr *at(L *l, KExpr *row, int64_t width, KExpr *col) { return add(l, mul(l, row, I(l, width)), col); }

static int64_t rows(const L *l, int s) { return l->R[s]; }
static int64_t cols(const L *l, int s) { return l->C[s]; }

/* for v in [0, n): body opened; returns the block to close to. */
static KStmt *loop(L *l, int v, KExpr *n, int flags) { return lw_open_for(l, v, I(l, 0), n, flags); }

/* Per token of the chunk: the log decay (a diagonal one summed into b on the way), the outer
 * product's u (scaled) and w, and every readout's coefficient vector. The pieces of one
 * length share one loop (GLA: one loop of K for g, k, v and q, where four loops took a
 * quarter of the kernel's JIT time), each lowered in its own scope with its index variable
 * bound to the loop's. */
enum { P_DECAY, P_U, P_W, P_Q };

typedef struct Piece {
  int kind, idx; /* P_*, and the state (P_DECAY, P_U, P_W) or readout (P_Q) */
  int64_t n;     /* the loop's length; 0: the item's columns under the split (lw_ncols) */
} Piece;

/* Binds index variable v of the current scope to the KIR variable var (an lhs index, when
 * the scope has it, or the index a readout contracts). */
static void bind(L *l, int v, int var) {
  if (v >= 0 && v < l->sc->nivars && v < MIXC_MAX_IVARS) l->ivar[v] = var;
}

static void piece(L *l, Chunk *ck, const Piece *pc, int fv, const int *cv) {
  KExpr *tc = V(l, ck->v_tc);
  if (pc->kind == P_Q) {
    const Readout *r = &ck->ro[pc->idx];
    const RecState *rs = &l->rm->states[r->state];
    lw_use_scope(l, &l->rm->outputs[r->output].scope);
    KExpr *q = F(l, 0);
    for (int t = 0; t < r->node->nterms; t++) {
      /* each term's contracted index (sum(m0, ..) + sum(m1, ..) name two) is the row */
      const RecTerm *tm = &r->node->terms[t];
      if (rs->ndim) bind(l, tm->read.idx[0].v, fv);
      q = lw_fadd(l, q, lw_fmul(l, F(l, tm->scale), lw_lx(l, tm->coef)));
    }
    st(l, r->q, at(l, tc, pc->n, V(l, fv)), q);
    return;
  }
  int s = pc->idx;
  const RecStep *p = &l->rm->states[s].steps[0];
  const RecOuter *o = &p->outer[0];
  lw_use_scope(l, &p->scope);
  if (pc->kind == P_DECAY) { /* b_t = b_{t-1} + g_t (b_{-1} is the zero row before b) */
    int gv = lw_var(l, KT_F32, "g");
    if (p->scope.nlhs > 0) bind(l, 0, fv);
    lw_set(l, gv, lw_lx(l, p->dl->args[0]));
    if (ck->need_g[s]) st(l, ck->g[s], at(l, tc, rows(l, s), V(l, fv)), V(l, gv));
    st(l, ck->b[s], at(l, tc, rows(l, s), V(l, fv)),
       lw_fadd(l, ld(l, ck->b[s], at(l, isub(l, tc, I(l, 1)), rows(l, s), V(l, fv))), V(l, gv)));
  } else if (pc->kind == P_U) {
    if (p->scope.nlhs > 0) bind(l, 0, fv);
    st(l, ck->U[s], at(l, tc, rows(l, s), V(l, fv)), lw_fmul(l, V(l, cv[s]), lw_lx(l, o->u)));
  } else {
    if (p->scope.nlhs > 1) { /* the state's column: the item's own under the split */
      if (pc->n > 0)
        bind(l, 1, fv);
      else
        lw_set(l, lw_lhs_var(l, 1), lw_gcol(l, V(l, fv)));
    }
    st(l, ck->W[s], at(l, tc, cols(l, s), V(l, fv)), p->scope.nlhs > 1 ? lw_lx(l, o->w) : F(l, 1));
  }
}

static void gather(L *l, Chunk *ck) {
  int ns = l->rm->nstates;
  Piece *pcs = arena_array(l->arena, (size_t)(3 * ns + ck->nro + 1), sizeof *pcs);
  int *cv = lw_int_array(l, ns, -1);
  if (!pcs || !cv) {
    lw_lfail(l, "out of memory");
    return;
  }
  int np = 0;
  for (int s = 0; s < ns; s++) {
    if (ck->diag[s]) pcs[np++] = (Piece){P_DECAY, s, rows(l, s)};
    pcs[np++] = (Piece){P_U, s, rows(l, s)};
    pcs[np++] = (Piece){P_W, s, l->split ? 0 : cols(l, s)};
  }
  for (int k = 0; k < ck->nro; k++) pcs[np++] = (Piece){P_Q, k, rows(l, ck->ro[k].state)};
  KStmt *outer = loop(l, ck->v_tc, V(l, ck->v_len), 0);
  lw_at_token(l, ck->v_c0, ck->v_tc);
  KExpr *tc = V(l, ck->v_tc);
  for (int s = 0; s < ns; s++) { /* per token: a scalar decay's g, the outer products' c */
    const RecStep *p = &l->rm->states[s].steps[0];
    lw_use_scope(l, &p->scope);
    if (!ck->diag[s])
      st(l, ck->g[s], tc, p->cls == RC_SCALAR ? lw_lx(l, p->a->args[0]) : F(l, 0));
    cv[s] = lw_var(l, KT_F32, "c");
    lw_set(l, cv[s], lw_fmul(l, F(l, p->outer[0].scale), lw_lx(l, p->outer[0].c)));
  }
  for (int k = 0; k < np; k++) {
    if (pcs[k].kind < 0) continue; /* emitted with an earlier one of its length */
    int64_t n = pcs[k].n;
    int fv = lw_var(l, KT_I64, "f");
    KStmt *in = loop(l, fv, n > 0 ? I(l, n) : lw_ncols(l, pcs[k].idx), KF_BLOCK);
    for (int m = k; m < np && !l->failed; m++) {
      if (pcs[m].kind < 0 || pcs[m].n != n || (m > k && n == 0)) continue;
      piece(l, ck, &pcs[m], fv, cv);
      pcs[m].kind = -1;
    }
    lw_close_for(l, in);
  }
  lw_close_for(l, outer);
}

/* b = cumsum(g) over the chunk for a scalar decay: one running sum. (A diagonal decay's b is
 * summed in gather, rows vectorised, and transposed into bT with the keys.) */
static void cumulate(L *l, Chunk *ck) {
  for (int s = 0; s < l->rm->nstates; s++) {
    if (ck->diag[s]) continue;
    int acc = lw_var(l, KT_F32, "b");
    lw_set(l, acc, F(l, 0));
    KStmt *outer = loop(l, ck->v_tc, V(l, ck->v_len), 0);
    lw_set(l, acc, lw_fadd(l, V(l, acc), ld(l, ck->g[s], V(l, ck->v_tc))));
    st(l, ck->b[s], V(l, ck->v_tc), V(l, acc));
    lw_close_for(l, outer);
  }
}

/* Where b (or g) of token t sits: [t] for a scalar decay, [t, i] for a diagonal one. */
static KExpr *bidx(L *l, Chunk *ck, int s, KExpr *t, KExpr *i) {
  return ck->diag[s] ? at(l, t, rows(l, s), i) : t;
}

/* b of the state the readout reads: b_t, or b_{t-1} (0 at the chunk start) for a readout
 * placed before the update. */
static KExpr *b_read(L *l, Chunk *ck, const Readout *r, KExpr *t, KExpr *i) {
  int s = r->state;
  KExpr *k = bidx(l, ck, s, t, i);
  if (!r->before) return ld(l, ck->b[s], k);
  return fsub(l, ld(l, ck->b[s], k), ld(l, ck->g[s], bidx(l, ck, s, t, i)));
}

/* ---- matrix products (KS_MATMUL) on scratch buffers ---- */

static KExpr *sp(L *l, int64_t off) { return ke_ptradd(l->m, V(l, l->v_scr), I(l, off * 4)); }

/* C[M, N] (+)= A[M, K] B[K, N], every operand a scratch buffer with its row length. */
static void mm(L *l, KExpr *M, KExpr *N, KExpr *K, int64_t a, int64_t lda, int64_t b,
               int64_t ldb, int64_t c, int64_t ldc, int acc) {
  lw_emit(l, ks_matmul(l->m, M, N, K, sp(l, a), I(l, lda), sp(l, b), I(l, ldb), sp(l, c),
                       I(l, ldc), acc));
}

/* UT[i, u] = U[u, i]: the chunk's keys transposed, [rows, C], for the products below; for a
 * diagonal decay bT[i, u] = b[u, i] too, in the same loop. */
static void transpose_keys(L *l, Chunk *ck, int s) {
  int64_t R = rows(l, s);
  int u = lw_var(l, KT_I64, "u"), i = lw_var(l, KT_I64, "i");
  KStmt *outer = loop(l, i, I(l, R), KF_BLOCK);
  loop(l, u, V(l, ck->v_len), KF_VECTORIZE);
  st(l, ck->UT[s], at(l, V(l, i), ck->C, V(l, u)), ld(l, ck->U[s], at(l, V(l, u), R, V(l, i))));
  if (ck->diag[s])
    st(l, ck->bT[s], at(l, V(l, i), ck->C, V(l, u)), ld(l, ck->b[s], at(l, V(l, u), R, V(l, i))));
  lw_close_for(l, outer);
}

/* Qs[t, i] = Q[t, i] e^{b_t - pivot}: a readout's coefficients decayed from the chunk start
 * (pivot NULL) or from a pivot token's b. Rows [t_lo, t_hi). */
static void decayed_queries(L *l, Chunk *ck, const Readout *r, KExpr *t_lo, KExpr *t_hi,
                            KExpr *pivot) {
  int s = r->state;
  int64_t R = rows(l, s);
  int t = lw_var(l, KT_I64, "t"), i = lw_var(l, KT_I64, "i");
  KStmt *outer = lw_open_for(l, t, t_lo, t_hi, KF_BLOCK);
  KExpr *decay = NULL;
  if (!ck->diag[s]) { /* one decay per token: computed once, not once per channel */
    int d = lw_var(l, KT_F32, "decay");
    lw_set(l, d, fexp(l, b_read(l, ck, r, V(l, t), NULL)));
    decay = V(l, d);
  }
  loop(l, i, I(l, R), KF_VECTORIZE);
  if (ck->diag[s]) {
    KExpr *e = b_read(l, ck, r, V(l, t), V(l, i));
    if (pivot) e = fsub(l, e, ld(l, ck->b[s], bidx(l, ck, s, pivot, V(l, i))));
    decay = fexp(l, e);
  }
  st(l, ck->Qs, at(l, V(l, t), R, V(l, i)), lw_fmul(l, decay, ld(l, r->q, at(l, V(l, t), R, V(l, i)))));
  lw_close_for(l, outer);
}

/* Zero A, then the causal mask keeps what the products write below the diagonal. */
static void clear_A(L *l, Chunk *ck) {
  int t = lw_var(l, KT_I64, "t"), u = lw_var(l, KT_I64, "u");
  KStmt *outer = loop(l, t, V(l, ck->v_len), KF_BLOCK);
  loop(l, u, V(l, ck->v_len), KF_VECTORIZE);
  st(l, ck->A, at(l, V(l, t), ck->C, V(l, u)), F(l, 0));
  lw_close_for(l, outer);
}

/* Scalar decay: A = Q UT, then A[t, u] *= e^{b_t - b_u} under the mask, 0 above it. */
static void scalar_attention(L *l, Chunk *ck, const Readout *r) {
  int s = r->state;
  KExpr *len = V(l, ck->v_len);
  mm(l, len, len, I(l, rows(l, s)), r->q, rows(l, s), ck->UT[s], ck->C, ck->A, ck->C, 0);
  int t = lw_var(l, KT_I64, "t"), u = lw_var(l, KT_I64, "u"), bt = lw_var(l, KT_F32, "bt");
  int av = lw_var(l, KT_F32, "a");
  KStmt *outer = loop(l, t, len, KF_BLOCK);
  lw_set(l, bt, b_read(l, ck, r, V(l, t), NULL)); /* before the loop: see pass_state */
  loop(l, u, len, KF_VECTORIZE);
  KExpr *in = r->before ? ke_bin(l->m, KO_LT, V(l, u), V(l, t)) : ke_bin(l->m, KO_LE, V(l, u), V(l, t));
  KExpr *idx = at(l, V(l, t), ck->C, V(l, u));
  /* the loads into variables before the select: its arms load nothing (a branch-free
   * select); an arm not selected may be inf (a positive exponent above the mask) */
  lw_set(l, av, ld(l, ck->A, idx));
  KExpr *w = fexp(l, fsub(l, V(l, bt), ld(l, ck->b[s], V(l, u))));
  st(l, ck->A, idx, ke_select(l->m, in, lw_fmul(l, w, V(l, av)), F(l, 0)));
  lw_close_for(l, outer);
}

/* Diagonal decay, per sub-chunk of rows [r0, r1) (ALGORITHMS.md section 2), with the pivot
 * p = r0 - 1 (b_{-1} = 0, the zero row before b):
 *   e^{b_t - b_u} = e^{b_t - b_p} e^{b_p - b_u},
 * so the sub-chunk's rows of A, the keys before it and its own diagonal block together, are
 * one product (Q * e^{b - b_p}) (U * e^{b_p - b})^T, the part above the diagonal then zeroed.
 * For the keys before r0 both exponents are <= 0; within the sub-chunk, e^{b_p - b_u} >= 1.
 * That form is taken when every |b_u - b_p| of the sub-chunk is at most DIAG_SPAN (no
 * overflow, no underflow of either factor); otherwise each row t of the sub-chunk is its own
 * block with the pivot t (t - 1 before the update), every exponent <= 0, the query's factor 1. */
enum { DIAG_SPAN = 40 };

static void diag_attention(L *l, Chunk *ck, const Readout *r) {
  int s = r->state, before = r->before;
  int64_t R = rows(l, s), c = ck->sub, C = ck->C;
  clear_A(l, ck);
  int k = lw_var(l, KT_I64, "sub"), r0 = lw_var(l, KT_I64, "r0"), r1 = lw_var(l, KT_I64, "r1");
  int p = lw_var(l, KT_I64, "pivot"), span = lw_var(l, KT_F32, "span");
  int ok = lw_var(l, KT_I64, "fits"), blk = lw_var(l, KT_I64, "blk");
  int a = lw_var(l, KT_I64, "ra"), e = lw_var(l, KT_I64, "re"), pv = lw_var(l, KT_I64, "piv");
  int nc = lw_var(l, KT_I64, "ncol"), qo = lw_var(l, KT_I64, "qoff");
  int t = lw_var(l, KT_I64, "t"), u = lw_var(l, KT_I64, "u"), i = lw_var(l, KT_I64, "i");
  int bp = lw_var(l, KT_F32, "bp");
  KExpr *nsub = ke_bin(l->m, KO_DIV, add(l, V(l, ck->v_len), I(l, c - 1)), I(l, c));
  KStmt *outer = loop(l, k, nsub, 0);
  lw_set(l, r0, mul(l, V(l, k), I(l, c)));
  lw_set(l, r1, ke_bin(l->m, KO_MIN, add(l, V(l, r0), I(l, c)), V(l, ck->v_len)));
  lw_set(l, p, isub(l, V(l, r0), I(l, 1)));
  /* span = sum of max(0, |b_u - b_p| - DIAG_SPAN): 0 when the factored form fits (NaN: not) */
  lw_set(l, span, F(l, 0));
  KStmt *sl = lw_open_for(l, u, V(l, r0), V(l, r1), 0);
  loop(l, i, I(l, R), KF_VECTORIZE);
  KExpr *d = fsub(l, ld(l, ck->b[s], at(l, V(l, u), R, V(l, i))),
                  ld(l, ck->b[s], at(l, V(l, p), R, V(l, i))));
  lw_accumulate(l, span,
                ke_bin(l->m, KO_MAX, F(l, 0), fsub(l, ke_un(l->m, KO_ABS, d), F(l, DIAG_SPAN))));
  lw_close_for(l, sl);
  /* the blocks: the sub-chunk (rows [r0, r1), pivot p, keys [0, r1)), or each row a of it
   * (pivot a - before, keys [0, a + 1 - before)) */
  lw_set(l, ok, ke_bin(l->m, KO_LE, V(l, span), F(l, 0)));
  KExpr *n = isub(l, V(l, r1), V(l, r0));
  KStmt *bl = loop(l, blk, ke_select(l->m, V(l, ok), I(l, 1), n), 0);
  lw_set(l, a, ke_select(l->m, V(l, ok), V(l, r0), add(l, V(l, r0), V(l, blk))));
  lw_set(l, e, ke_select(l->m, V(l, ok), V(l, r1), add(l, V(l, a), I(l, 1))));
  lw_set(l, pv, ke_select(l->m, V(l, ok), V(l, p), isub(l, V(l, a), I(l, before))));
  lw_set(l, nc, ke_select(l->m, V(l, ok), V(l, r1), isub(l, V(l, e), I(l, before))));
  /* The rows' queries: for a sub-chunk from the chunk start (pivot -1) the decayed ones of
   * readout_chunk already in Qs, for a later one (only when C > the sub-chunk) decayed from
   * its pivot into Qs; for a single row t the pivot is t (t - 1 before the update) and its
   * query's factor e^{b_t - b_pivot} is 1: the raw coefficients. */
  lw_set(l, qo, ke_select(l->m, V(l, ok), I(l, ck->Qs), I(l, r->q)));
  if (C > c) {
    KStmt *qi = ks_if(l->m, ke_bin(l->m, KO_AND, V(l, ok), ke_bin(l->m, KO_LT, I(l, 0), V(l, r0))));
    lw_emit(l, qi);
    KStmt *in_blk = l->blk;
    l->blk = qi;
    decayed_queries(l, ck, r, V(l, r0), V(l, r1), V(l, p));
    l->blk = in_blk;
  }
  /* Kp[i, u] = U[u, i] e^{b_pv[i] - b_u[i]}, u < ncol */
  KStmt *kl = loop(l, i, I(l, R), KF_BLOCK);
  lw_set(l, bp, ld(l, ck->b[s], at(l, V(l, pv), R, V(l, i))));
  loop(l, u, V(l, nc), KF_VECTORIZE);
  st(l, ck->Kp, at(l, V(l, i), C, V(l, u)),
     lw_fmul(l, ld(l, ck->UT[s], at(l, V(l, i), C, V(l, u))),
             fexp(l, fsub(l, V(l, bp), ld(l, ck->bT[s], at(l, V(l, i), C, V(l, u)))))));
  lw_close_for(l, kl);
  KExpr *qrows = mul(l, add(l, V(l, qo), mul(l, V(l, a), I(l, R))), I(l, 4));
  lw_emit(l, ks_matmul(l->m, isub(l, V(l, e), V(l, a)), V(l, nc), I(l, R),
                       ke_ptradd(l->m, V(l, l->v_scr), qrows), I(l, R),
                       sp(l, ck->Kp), I(l, C),
                       ke_ptradd(l->m, sp(l, ck->A), mul(l, V(l, a), I(l, C * 4))), I(l, C), 0));
  /* zero above the diagonal (u > t; u >= t before the update) */
  KStmt *ml = lw_open_for(l, t, V(l, a), V(l, e), KF_BLOCK);
  lw_open_for(l, u, isub(l, add(l, V(l, t), I(l, 1)), I(l, before)), V(l, e), KF_VECTORIZE);
  st(l, ck->A, at(l, V(l, t), C, V(l, u)), F(l, 0));
  lw_close_for(l, ml);
  lw_close_for(l, bl);
  lw_close_for(l, outer);
}

/* R = (Q * e^b) S0 + A W for one readout, A its masked, decayed attention within the chunk. */
static void readout_chunk(L *l, Chunk *ck, const Readout *r) {
  int s = r->state;
  KExpr *len = V(l, ck->v_len);
  decayed_queries(l, ck, r, I(l, 0), len, NULL);
  mm(l, len, lw_ncols(l, s), I(l, rows(l, s)), ck->Qs, rows(l, s), ck->S[s], cols(l, s), r->r,
     cols(l, s), 0);
  if (ck->diag[s])
    diag_attention(l, ck, r);
  else
    scalar_attention(l, ck, r);
  mm(l, len, lw_ncols(l, s), len, ck->A, ck->C, ck->W[s], cols(l, s), r->r, cols(l, s), 1);
}

/* S = e^{b_C} S + (UT * e^{b_C - b})  W, per state (per row for a diagonal decay). UT is
 * scaled in place: it is the state's last use in the chunk. */
static void pass_state(L *l, Chunk *ck) {
  for (int s = 0; s < l->rm->nstates; s++) {
    int64_t R = rows(l, s), Cc = cols(l, s);
    int i = lw_var(l, KT_I64, "i"), j = lw_var(l, KT_I64, "j"), u = lw_var(l, KT_I64, "u");
    int a = lw_var(l, KT_F32, "a"), bl = lw_var(l, KT_F32, "blast");
    KExpr *last = ke_bin(l->m, KO_SUB, V(l, ck->v_len), I(l, 1));
    if (!ck->diag[s]) { /* e^{b_C - b_u}, once per token rather than once per row; b_C read
                           before the loop (a load in it may alias the store: scalar loop) */
      lw_set(l, bl, ld(l, ck->b[s], last));
      KStmt *dl = loop(l, u, V(l, ck->v_len), KF_VECTORIZE | KF_BLOCK);
      st(l, ck->dvec[s], V(l, u), fexp(l, fsub(l, V(l, bl), ld(l, ck->b[s], V(l, u)))));
      lw_close_for(l, dl);
    }
    KStmt *outer = loop(l, i, I(l, R), KF_BLOCK);
    lw_set(l, a, fexp(l, ld(l, ck->b[s], bidx(l, ck, s, last, V(l, i)))));
    KStmt *jl = loop(l, j, lw_ncols(l, s), KF_VECTORIZE);
    KExpr *idx = at(l, V(l, i), Cc, V(l, j));
    st(l, ck->S[s], idx, lw_fmul(l, V(l, a), ld(l, ck->S[s], idx)));
    lw_close_for(l, jl);
    /* b_C[i] read once per row, before the loop over tokens (see diag_attention) */
    if (ck->diag[s]) lw_set(l, bl, ld(l, ck->bT[s], at(l, V(l, i), ck->C, last)));
    loop(l, u, V(l, ck->v_len), KF_VECTORIZE);
    idx = at(l, V(l, i), ck->C, V(l, u));
    KExpr *decay = ck->diag[s] ? fexp(l, fsub(l, V(l, bl), ld(l, ck->bT[s], idx)))
                               : ld(l, ck->dvec[s], V(l, u));
    st(l, ck->UT[s], idx, lw_fmul(l, ld(l, ck->UT[s], idx), decay));
    lw_close_for(l, outer);
    mm(l, I(l, R), lw_ncols(l, s), V(l, ck->v_len), ck->UT[s], ck->C, ck->W[s], Cc, ck->S[s], Cc, 1);
  }
}

/* Readouts answered from the chunk's results: R[tc, column]. */
static KExpr *chunk_readout(L *l, const RecOutput *o, const RecOut *n) {
  Chunk *ck = l->strategy;
  for (int k = 0; k < ck->nro; k++) {
    const Readout *r = &ck->ro[k];
    if (r->node != n) continue;
    const RecState *rs = &l->rm->states[r->state];
    KExpr *col = rs->ndim == 2 ? V(l, lw_ivar_of(l, n->terms[0].read.idx[1].v)) : I(l, 0);
    KExpr *v = lw_chunk_result(l, r->r, ck->v_tc, cols(l, r->state), col);
    return n->konst ? lw_fadd(l, v, lw_lx(l, n->konst)) : v;
  }
  (void)o;
  lw_lfail(l, "internal: a readout the chunk strategy did not plan");
  return F(l, 0);
}

/* ---- scratch and the kernel ---- */

static int setup(L *l, Chunk *ck) {
  const RecMixer *rm = l->rm;
  int ns = rm->nstates;
  if (lw_chunk_tables(l)) return 1;
  ck->S = lw_offsets(l, ns);
  ck->g = lw_offsets(l, ns);
  ck->b = lw_offsets(l, ns);
  ck->U = lw_offsets(l, ns);
  ck->W = lw_offsets(l, ns);
  ck->UT = lw_offsets(l, ns);
  ck->bT = lw_offsets(l, ns);
  ck->dvec = lw_offsets(l, ns);
  ck->diag = lw_int_array(l, ns, 0);
  ck->need_g = lw_int_array(l, ns, 0);
  if (l->failed || !ck->diag || !ck->need_g) return lw_lfail(l, "out of memory");
  int64_t off = 0, C = ck->C;
  for (int s = 0; s < ns; s++) {
    const RecState *rs = &rm->states[s];
    l->R[s] = rs->ndim > 0 ? l->sp->dims[rs->shape[0]] : 1;
    l->C[s] = l->split ? l->vt : rs->ndim > 1 ? l->sp->dims[rs->shape[1]] : 1;
    l->ver[s] = lw_int_array(l, 2, -1);
    if (!l->ver[s]) return lw_lfail(l, "out of memory");
    ck->S[s] = off;
    l->ver[s][0] = l->ver[s][1] = lw_var(l, KT_PTR, arena_printf(l->arena, "%s", rs->name));
    lw_set(l, l->ver[s][0], ke_ptradd(l->m, V(l, l->v_scr), I(l, off * 4)));
    off += l->R[s] * l->C[s];
    ck->diag[s] = rs->nsteps == 1 && rs->steps[0].cls == RC_DIAG;
    int64_t per = ck->diag[s] ? l->R[s] : 1;
    ck->need_g[s] = !ck->diag[s];
    for (int k = 0; k < ck->nro; k++) ck->need_g[s] |= ck->ro[k].state == s && ck->ro[k].before;
    ck->g[s] = off;
    off += ck->need_g[s] ? C * per : 0;
    ck->b[s] = off + per; /* after a zero row, b_{-1} (body) */
    off += (C + 1) * per;
    ck->U[s] = off;
    off += C * l->R[s];
    ck->W[s] = off;
    off += C * l->C[s];
    ck->UT[s] = off;
    off += C * l->R[s];
    ck->bT[s] = off;
    off += ck->diag[s] ? C * l->R[s] : 0;
    ck->dvec[s] = off;
    off += C;
  }
  int64_t maxr = 1;
  for (int s = 0; s < ns; s++)
    if (l->R[s] > maxr) maxr = l->R[s];
  ck->Qs = off;
  off += C * maxr;
  ck->A = off;
  off += C * C;
  ck->Kp = off;
  off += C * maxr;
  /* the diagonal decay's sub-chunk (diag_attention): the whole chunk up to 16 (at C = 16, one
   * block: 7% faster than two of 8, one thread, alternated) */
  ck->sub = C < 16 ? C : 16;
  for (int k = 0; k < ck->nro; k++) {
    ck->ro[k].q = off;
    off += C * l->R[ck->ro[k].state];
    ck->ro[k].r = off;
    off += C * l->C[ck->ro[k].state];
  }
  for (int k = 0; k < rm->nlets; k++) {
    l->let_off[k] = off;
    int64_t n = 1;
    for (int v = 0; v < rm->lets[k].scope.nlhs; v++) n *= l->sp->dims[rm->lets[k].scope.ivars[v].dim];
    off += n;
  }
  l->f->scratch_floats = off;
  return 0;
}

static void body(L *l, Chunk *ck) {
  for (int s = 0; s < l->rm->nstates; s++) { /* b_{-1} = 0 */
    int64_t per = ck->diag[s] ? rows(l, s) : 1;
    int i = lw_var(l, KT_I64, "i");
    KStmt *zl = loop(l, i, I(l, per), KF_VECTORIZE);
    st(l, ck->b[s] - per, V(l, i), F(l, 0));
    lw_close_for(l, zl);
  }
  KStmt *outer = lw_chunk_loop(l, ck->C, ck->v_c0, ck->v_len);
  gather(l, ck);
  cumulate(l, ck);
  for (int s = 0; s < l->rm->nstates; s++) transpose_keys(l, ck, s);
  for (int r = 0; r < ck->nro; r++) readout_chunk(l, ck, &ck->ro[r]);
  lw_chunk_outputs(l, ck->v_c0, ck->v_len, ck->v_tc);
  pass_state(l, ck);
  lw_chunk_loop_end(l, outer);
}

int lower_chunk(Arena *a, const KernelSpec *spec, KernelPlan *plan, char *err, size_t errlen) {
  const char *why;
  if (!chunk_applies(spec->rm, &why)) {
    snprintf(err, errlen, "the chunk strategy does not apply to mixer '%s': %s", spec->rm->name,
             why);
    return 1;
  }
  L l;
  Chunk ck;
  memset(&ck, 0, sizeof ck);
  /* The chunk length: schedule.h (16 for diagonal decay, 32 otherwise, measured). */
  int any_diag = 0;
  int64_t maxr = 1, maxc = 1;
  for (int s = 0; s < spec->rm->nstates; s++) {
    const RecState *rs = &spec->rm->states[s];
    any_diag |= rs->nsteps == 1 && rs->steps[0].cls == RC_DIAG;
    int64_t R = rs->ndim > 0 ? spec->dims[rs->shape[0]] : 1;
    int64_t Cc = rs->ndim > 1 ? spec->dims[rs->shape[1]] : 1;
    if (R > maxr) maxr = R;
    if (Cc > maxc) maxc = Cc;
  }
  Walk w = {spec->rm, &ck, 0, NULL};
  for (int o = 0; o < spec->rm->noutputs; o++) {
    w.output = o;
    walk_out(&w, spec->rm->outputs[o].root);
  }
  if (lw_chunk_begin(&l, a, spec, plan, chunk_readout, &ck, err, errlen)) return 1;
  if (l.split) maxc = l.vt;
  ck.C = sched_chunk_l2(any_diag ? SC_DIAG : SC_SCALAR, spec->chunk, 1, maxr, maxc,
                        spec->cache_l2_bytes);
  plan->chunk = ck.C;
  if (setup(&l, &ck)) return 1;
  ck.v_c0 = lw_var(&l, KT_I64, "c0");
  ck.v_len = lw_var(&l, KT_I64, "len");
  ck.v_tc = lw_var(&l, KT_I64, "tc");
  KStmt *outer = lw_open_items(&l);
  body(&l, &ck);
  lw_close_for(&l, outer);
  return lw_finish(&l);
}
