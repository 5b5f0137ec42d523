/* The chunk strategy for the delta rule and its relatives (ALGORITHMS.md section 3): the
 * delta rule, negative eigenvalues, Gated DeltaNet, DeltaProduct, KDA; and, because they
 * are of the same form, left diagonal decays (GLA, HGRN2, RWKV6) and RWKV7.
 *
 * Per (sequence, head) the tokens are cut into chunks of C; the state stays in the work
 * item's scratch and passes from chunk to chunk. Within a chunk, every state's updates are
 * written as a sequence of EVENTS, a fixed number NE per token. A token's steps, in order:
 *   - a decay (scalar exp(E), left diagonal exp(E[i]), or the D = exp(..) of a DPLR step)
 *     only moves the cumulative log decay G (a scalar, or one per row);
 *   - a rank-one term c x y^T of a DPLR-left step, with every outer-product input c' u w^T
 *     of its step whose u is the same vector as x, is one event  S += x delta^T  with
 *       delta^T = c y^T S_read + sum c' w^T
 *     where S_read is the state the step reads (before its decay and its other events);
 *   - any other outer-product input u w^T is an event with x = u, delta = c' w (no read).
 * An event n is placed at the log decay Gp_n after its step; it reads at Gr_n, before its
 * step. Unrolling from the state S0 entering the chunk,
 *   S(point P) = e^{G_P} S0 + sum_{s < P} diag(e^{G_P - Gp_s}) x_s delta_s^T,
 * so, with f_n the first event of n's step,
 *   delta_n = c_n (y_n * e^{Gr_n})^T S0 + sum_{s < f_n} c_n (y_n^T diag(e^{Gr_n - Gp_s}) x_s) delta_s + W_n
 * a unit lower-triangular system (the UT transform). In matrix form, per chunk and state,
 * with the N = C NE events as rows (fla's chunk form of the delta rule, ALGORITHMS.md 3):
 *   M  = (Y X^T) .* c e^{Gr - Gp} .* strict mask        one matmul (per-row decays: the
 *                                                       dot products with the exponential
 *                                                       per element, never e^{-G})
 *   D  = (I - M)^{-1} (W + (c Y * e^{Gr}) S0)           a matmul, then blocked forward
 *                                                       substitution (matmuls between row
 *                                                       blocks; D: the deltas)
 *   R  = (Q * e^{G_P}) S0 + ((Q X^T) .* e^{G_P - Gp} .* mask) D    three matmuls
 *   S' = e^{G_end} S0 + (X^T .* e^{G_end - Gp}) D       one matmul
 * For the delta rule (c = -beta, y = x = k, W = beta v) this is fla's U - W S0 with
 * T = (I + strict_lower(diag(beta) K K^T .* Gamma))^{-1} (applied here, never formed).
 * A readout q^T S at version v of token t is the same sum at the point before the first
 * event of step v (after the last event for the final version: mask with its diagonal;
 * version 0: the strict mask), and the next chunk's state is the sum at the chunk's end.
 * Every exponent kept is a difference G_later - G_earlier, or G itself, so none is positive
 * when the log decays are <= 0 (masked entries are selected away, never multiplied).
 *
 * The events of a token are unrolled in the kernel (DeltaProduct's NH steps are NH events
 * per token, the gate moving G before the first). Cost per chunk and state, R x VT, with
 * N = C NE events: ~ N^2 R + N R VT + N^2 VT / 2 (M, Ye S0, the solve) + C R VT + C N (R + VT)
 * (readouts) + N R VT (state) multiply-adds, all in matmuls; per-row decays add one
 * exponential per multiply-add of the (N^2 + C N) R / 2 dot products.
 * The columns of the state (the value dim) are independent: with a value-tile split
 * (lw_plan_split) each work item runs the whole algorithm on its columns [j0, j0 + vw),
 * repeating the column-free parts (M, the masked products).
 *
 * It applies when every state's steps are identity, scalar decay exp(E) (or a positive
 * constant), left diagonal decay exp(E[i]), or DPLR-left with D = 1, exp(E) or exp(E[i]) and
 * any rank-one terms, their inputs sums of outer products, and every readout term contracts
 * the state's row index with a coefficient that depends on that index alone (as in
 * lower_chunk.c; here a readout may read several states and any version: one result per
 * (state, version), summed). Otherwise chunk_dplr_applies says why. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lower_internal.h"
#include "schedule.h"

enum { DP_MAX_READOUTS = 64, DP_MAX_EVENTS = 64, DP_MAX_OUTERS = 64 };

/* The row block of the UT solve (solve): a multiple of the vector width. */
enum { DP_SOLVE_B = 16 };

/* A decay as a log: none, an expression E (exp(E)), or a constant. */
typedef struct Dec {
  int kind; /* 0 none, 1 e, 2 c */
  const Expr *e;
  double c;
} Dec;

typedef struct Ev {
  int step;       /* the step it belongs to */
  int lr;         /* its rank-one term (reads the state), or -1: an input only */
  int outer;      /* lr < 0: the outer product whose u is x */
  uint64_t outs;  /* outer products whose c' w it adds */
} Ev;

typedef struct DState {
  Ev ev[DP_MAX_EVENTS];
  int nev;        /* events per token (NE) */
  int *evb;       /* per version 0..nsteps: the token's events before it */
  Dec *dec;       /* per step */
  int diag;       /* per-row log decays (GW = rows), else one (GW = 1) */
  int64_t GW;
  int64_t N;      /* events per chunk, C NE (the row length of the event matrices) */
  /* scratch offsets: state [R, VT]; G per token and version [C, NS + 1, GW]; per event
   * (n = token * NE + e): Gp [N, GW], x [N, R] and transposed [R, N], c y [N, R], c [N],
   * the inputs W (then W + Ye S0, then solved in place into the deltas: D = DI) [N, VT],
   * e^{G_end - Gp} [N]; the running G [GW] */
  int64_t S, Gv, GP, X, XT, Y, CV, DI, D, dvec, gacc;
} DState;

typedef struct Readout {
  const RecOut *node;
  int output;
  int state;
  int version;
  int64_t q, r; /* scratch: coefficients [C, rows], results [C, cols] */
} Readout;

typedef struct Chunk {
  int64_t C;
  DState *ds;
  int64_t Mx, Ye, Aq, Qe;     /* shared: M [N, N], c y e^G [N, R], the readouts'
                                 masked products [C, N] and decayed queries [C, R] */
  Readout ro[DP_MAX_READOUTS];
  int nro;
  int v_c0, v_len, v_tc;
} Chunk;

/* ---- applicability ---- */

static const char *decay_of(const Expr *d, uint64_t allowed, Dec *out) {
  memset(out, 0, sizeof *out);
  if (!d) return NULL;
  if (d->kind == EX_NUM) {
    if (d->num == 1) return NULL;
    if (!(d->num > 0)) return "a decay is zero or negative (no log form)";
    out->kind = 2;
    out->c = log(d->num);
    return NULL;
  }
  if (d->kind == EX_CALL && d->fn == FN_EXP && d->nargs == 1) {
    if (d->args[0]->free & ~allowed) return "a decay varies with more than the state's row";
    out->kind = 1;
    out->e = d->args[0];
    return NULL;
  }
  return "a decay is not written as exp(...)";
}

/* Structural equality of two expressions of one scope (conservative: false may only cost
 * an extra event). */
static int same_expr(const Expr *a, const Expr *b) {
  if (!a || !b) return a == b;
  if (a == b) return 1;
  if (a->kind != b->kind || a->nargs != b->nargs) return 0;
  switch (a->kind) {
  case EX_NUM:
    if (a->num != b->num) return 0;
    break;
  case EX_NAME:
  case EX_INDEX:
    if (a->ref != b->ref || a->sym != b->sym) return 0;
    if (a->ref == REF_LET && a->bound != b->bound) return 0;
    if (a->ref == REF_NONE) return 0;
    break;
  case EX_CALL:
    if (a->fn != b->fn) return 0;
    break;
  case EX_SUM:
    if (a->bound != b->bound) return 0;
    break;
  case EX_BIN:
    if (a->op != b->op) return 0;
    break;
  case EX_NEG: break;
  }
  for (int i = 0; i < a->nargs; i++)
    if (!same_expr(a->args[i], b->args[i])) return 0;
  return 1;
}

/* Whether a with its index variable va is b with vb (the same vector, indexed by those
 * variables; other index variables the same). Conservative: false only costs a loop. */
static int same_vec(const Expr *a, int va, const Expr *b, int vb) {
  if (!a || !b) return a == b;
  if (a->kind != b->kind || a->nargs != b->nargs) return 0;
  switch (a->kind) {
  case EX_NUM:
    if (a->num != b->num) return 0;
    break;
  case EX_NAME:
  case EX_INDEX:
    if (a->ref != b->ref) return 0;
    if (a->ref == REF_INDEX) {
      if ((a->sym == va) != (b->sym == vb)) return 0;
      if (a->sym != va && a->sym != b->sym) return 0;
      break;
    }
    if (a->sym != b->sym) return 0;
    if (a->ref == REF_LET && a->bound != b->bound) return 0;
    if (a->ref == REF_NONE) return 0;
    break;
  case EX_CALL:
    if (a->fn != b->fn) return 0;
    break;
  case EX_SUM: return 0;
  case EX_BIN:
    if (a->op != b->op) return 0;
    break;
  case EX_NEG: break;
  }
  for (int i = 0; i < a->nargs; i++)
    if (!same_vec(a->args[i], va, b->args[i], vb)) return 0;
  return 1;
}

static const Expr *ev_x(const RecState *st, const Ev *e) {
  const RecStep *p = &st->steps[e->step];
  return e->lr >= 0 ? p->lr[e->lr].x : p->outer[e->outer].u;
}

/* One step's fitness; fills its decay. */
static const char *step_unfit(const RecStep *p, int k, Dec *dec) {
  if (p->version != k) return "an update reads a version other than the latest";
  if (p->nadd) return "an update's input is not a sum of outer products";
  if (p->nouter > DP_MAX_OUTERS) return "an update has too many outer products";
  switch (p->cls) {
  case RC_IDENTITY: memset(dec, 0, sizeof *dec); return NULL;
  case RC_SCALAR: return decay_of(p->a, 0, dec);
  case RC_DIAG:
    if (p->side != RS_LEFT) return "a diagonal decay acts on the state's columns (value side)";
    return decay_of(p->dl, 1, dec);
  case RC_DPLR:
    if (p->side != RS_LEFT) return "a low-rank transition acts on the state's columns (right side)";
    if (p->nlr < 1) return "internal: a DPLR step without rank-one terms";
    return decay_of(p->dl, 1, dec);
  case RC_ELEMENTWISE: return "an element-wise transition has no chunk form";
  case RC_GENERAL: return "a transition is general (dense, coupled or mixed)";
  }
  return "unknown transition class";
}

/* The events of a state's token; evb (nsteps + 1 entries) may be NULL. */
static const char *plan_events(const RecState *st, Ev *ev, int *nev, int *evb, Dec *dec) {
  int n = 0;
  for (int k = 0; k < st->nsteps; k++) {
    const RecStep *p = &st->steps[k];
    Dec d;
    const char *why = step_unfit(p, k, dec ? &dec[k] : &d);
    if (why) return why;
    if (evb) evb[k] = n;
    int first = n;
    for (int r = 0; p->cls == RC_DPLR && r < p->nlr; r++) {
      if (n == DP_MAX_EVENTS) return "too many rank-one terms and inputs per token";
      ev[n].step = k;
      ev[n].lr = r;
      ev[n].outer = -1;
      ev[n].outs = 0;
      n++;
    }
    for (int o = 0; o < p->nouter; o++) {
      int hit = -1;
      for (int e = first; e < n && hit < 0; e++)
        if (same_expr(ev_x(st, &ev[e]), p->outer[o].u)) hit = e;
      if (hit < 0) {
        if (n == DP_MAX_EVENTS) return "too many rank-one terms and inputs per token";
        hit = n++;
        ev[hit].step = k;
        ev[hit].lr = -1;
        ev[hit].outer = o;
        ev[hit].outs = 0;
      }
      ev[hit].outs |= (uint64_t)1 << o;
    }
  }
  if (evb) evb[st->nsteps] = n;
  *nev = n;
  return NULL;
}

typedef struct Walk {
  const RecMixer *rm;
  Chunk *ck; /* NULL: only check */
  int output;
  const char *why;
} Walk;

/* A readout node becomes one Readout per (state, version) its terms read; the node's value
 * is their sum. */
static void walk_out(Walk *w, const RecOut *n) {
  if (!n || w->why) return;
  if (n->kind != RO_READOUT) {
    for (int i = 0; i < n->nargs; i++) walk_out(w, n->args[i]);
    return;
  }
  if (n->nterms == 0) {
    w->why = "a readout reads no state";
    return;
  }
  for (int k = 0; k < n->nterms && !w->why; k++) {
    const RecTerm *t = &n->terms[k];
    w->why = lw_readout_term_unfit(w->rm, t);
    if (w->why) return;
    int first = 1; /* the first term of its (state, version) group */
    for (int e = 0; e < k && first; e++) {
      const RecRead *a = &n->terms[e].read;
      if (a->state != t->read.state || a->version != t->read.version) continue;
      first = 0;
      if (w->rm->states[a->state].ndim == 2 && a->idx[1].v != t->read.idx[1].v)
        w->why = "a readout's terms read different columns of a state";
    }
    if (!first || !w->ck) continue;
    if (w->ck->nro == DP_MAX_READOUTS) {
      w->why = "too many readouts";
      return;
    }
    Readout *r = &w->ck->ro[w->ck->nro++];
    memset(r, 0, sizeof *r);
    r->node = n;
    r->output = w->output;
    r->state = t->read.state;
    r->version = t->read.version;
  }
}

int chunk_dplr_applies(const RecMixer *rm, const char **why) {
  *why = NULL;
  if (rm->mixer->ngrid) *why = "grid scans run recurrently";
  for (int s = 0; !*why && s < rm->nstates; s++) {
    Ev ev[DP_MAX_EVENTS];
    int nev;
    *why = plan_events(&rm->states[s], ev, &nev, NULL, NULL);
  }
  Walk w = {rm, NULL, 0, NULL};
  for (int o = 0; !*why && o < rm->noutputs; o++) {
    w.output = o;
    walk_out(&w, rm->outputs[o].root);
    *why = w.why;
  }
  return *why == NULL;
}

/* ---- small builders ---- */

static KExpr *isub(L *l, KExpr *x, KExpr *y) { return ke_bin(l->m, KO_SUB, x, y); }
static KExpr *fmul(L *l, KExpr *x, KExpr *y) { return lw_fmul(l, x, y); }
static KExpr *fadd(L *l, KExpr *x, KExpr *y) { return lw_fadd(l, x, y); }
static KExpr *fsub(L *l, KExpr *x, KExpr *y) { return ke_bin(l->m, KO_SUB, x, y); }
static KExpr *fexp(L *l, KExpr *x) { return ke_un(l->m, KO_EXP, x); }
static KExpr *ld(L *l, int64_t off, KExpr *idx) { return lw_scr_load(l, off, idx); }
static void st(L *l, int64_t off, KExpr *idx, KExpr *v) { lw_scr_store(l, off, idx, v); }
/* row * width + col */
static KExpr *at(L *l, KExpr *row, int64_t width, KExpr *col) { return add(l, mul(l, row, I(l, width)), col); }
static KStmt *loop(L *l, int v, KExpr *n, int flags) { return lw_open_for(l, v, I(l, 0), n, flags); }
static int ivar(L *l, const char *name) { return lw_var(l, KT_I64, name); }
static int fvar(L *l, const char *name) { return lw_var(l, KT_F32, name); }
static KExpr *lt(L *l, KExpr *x, KExpr *y) { return ke_bin(l->m, KO_LT, x, y); }

/* The G entry of token tc at version v, element i (0 for a scalar G). */
static KExpr *g_at(L *l, const DState *d, int ns, KExpr *tc, int v, KExpr *i) {
  KExpr *base = mul(l, add(l, mul(l, tc, I(l, ns + 1)), I(l, v)), I(l, d->GW));
  return ld(l, d->Gv, add(l, base, d->diag ? i : I(l, 0)));
}

static KExpr *gp_at(L *l, const DState *d, KExpr *s, KExpr *i) {
  return ld(l, d->GP, add(l, mul(l, s, I(l, d->GW)), d->diag ? i : I(l, 0)));
}

/* A scratch buffer as a pointer, for KS_MATMUL. */
static KExpr *sp(L *l, int64_t off) { return ke_ptradd(l->m, V(l, l->v_scr), I(l, off * 4)); }

/* C[M, N] (+)= A[M, K] B[K, N] on scratch buffers with their row lengths. */
static void mm(L *l, KExpr *M, KExpr *N, KExpr *K, int64_t a, int64_t lda, int64_t b,
               int64_t ldb, int64_t c, int64_t ldc, int acc) {
  lw_emit(l, ks_matmul(l->m, M, N, K, sp(l, a), I(l, lda), sp(l, b), I(l, ldb), sp(l, c),
                       I(l, ldc), acc));
}

/* A matmul whose product is lower triangular in blocks of w: row r of C needs only the
 * columns below (r + 1) w (out: C's columns; else the K index, A's columns, A being zero
 * beyond them). The rows split in halves [0, h) and [h, M): the first half's columns (or K)
 * cut to h w, a quarter of the product's work saved. M and K are variables; N is the state's
 * column count (ncols >= 0) or the variable -ncols - 1. */
static KExpr *mm_n(L *l, int s, int n) { return n >= 0 ? lw_ncols(l, s) : V(l, -n - 1); }
static void mm_tri(L *l, int out, int s, int M, int n, KExpr *K, KExpr *K2, int64_t w,
                   int64_t a, int64_t lda, int64_t b, int64_t ldb, int64_t c, int64_t ldc,
                   int acc) {
  int h = ivar(l, "h"), cut = ivar(l, "cut");
  lw_set(l, h, ke_bin(l->m, KO_DIV, V(l, M), I(l, 2)));
  lw_set(l, cut, ke_bin(l->m, KO_MIN, mul(l, V(l, h), I(l, w)), out ? mm_n(l, s, n) : K));
  lw_emit(l, ks_matmul(l->m, V(l, h), out ? V(l, cut) : mm_n(l, s, n), out ? K : V(l, cut),
                       sp(l, a), I(l, lda), sp(l, b), I(l, ldb), sp(l, c), I(l, ldc), acc));
  lw_emit(l, ks_matmul(l->m, isub(l, V(l, M), V(l, h)), mm_n(l, s, n), K2,
                       ke_ptradd(l->m, sp(l, a), mul(l, V(l, h), I(l, lda * 4))), I(l, lda),
                       sp(l, b), I(l, ldb),
                       ke_ptradd(l->m, sp(l, c), mul(l, V(l, h), I(l, ldc * 4))), I(l, ldc),
                       acc));
}

/* The chunk's events of state d: len * NE. */
static KExpr *nev(L *l, Chunk *ck, const DState *d) { return mul(l, V(l, ck->v_len), I(l, d->nev)); }

/* ---- the chunk's pieces ---- */

/* dst[base + g] = gacc[g] for g in [0, GW). */
static void copy_g(L *l, const DState *d, int64_t dst, KExpr *base_fn_tc, int64_t mult, int64_t plus) {
  if (d->GW == 1) { /* one value: a store, not a loop (LLVM cannot vectorise, nor drop, a
                       loop of one iteration storing to its own buffer at an unknown offset) */
    st(l, dst, add(l, mul(l, base_fn_tc, I(l, mult)), I(l, plus)), ld(l, d->gacc, I(l, 0)));
    return;
  }
  int g = ivar(l, "g");
  KStmt *outer = loop(l, g, I(l, d->GW), KF_VECTORIZE);
  KExpr *base = mul(l, add(l, mul(l, base_fn_tc, I(l, mult)), I(l, plus)), I(l, d->GW));
  st(l, dst, add(l, base, V(l, g)), ld(l, d->gacc, V(l, g)));
  lw_close_for(l, outer);
}

/* One token's events of state s (the token is ck->v_tc): G, x (X and its transpose XT),
 * c y (Y, zero for an input-only event), and the inputs W into DI. */
static void gather_state(L *l, Chunk *ck, int s) {
  const RecState *rs = &l->rm->states[s];
  DState *d = &ck->ds[s];
  int64_t R = l->R[s], VT = l->C[s];
  int ns = rs->nsteps, NE = d->nev;
  for (int k = 0; k < ns; k++) {
    const RecStep *p = &rs->steps[k];
    lw_use_scope(l, &p->scope);
    copy_g(l, d, d->Gv, V(l, ck->v_tc), ns + 1, k);
    const Dec *dc = &d->dec[k];
    if (dc->kind == 1 && dc->e->free) {
      int iv = lw_lhs_var(l, 0);
      KStmt *outer = loop(l, iv, I(l, R), 0);
      st(l, d->gacc, V(l, iv), fadd(l, ld(l, d->gacc, V(l, iv)), lw_lx(l, dc->e)));
      lw_close_for(l, outer);
    } else if (dc->kind) {
      int ev = fvar(l, "logd");
      lw_set(l, ev, dc->kind == 1 ? lw_lx(l, dc->e) : F(l, dc->c));
      int g = ivar(l, "g");
      KStmt *outer = loop(l, g, I(l, d->GW), KF_VECTORIZE);
      st(l, d->gacc, V(l, g), fadd(l, ld(l, d->gacc, V(l, g)), V(l, ev)));
      lw_close_for(l, outer);
    }
    for (int e = d->evb[k]; e < d->evb[k + 1]; e++) {
      const Ev *E = &d->ev[e];
      int n = ivar(l, "ev");
      lw_set(l, n, add(l, mul(l, V(l, ck->v_tc), I(l, NE)), I(l, e)));
      copy_g(l, d, d->GP, V(l, n), 1, 0);
      /* y the same vector as x (the delta rule's k): stored from the same load */
      const RecRankOne *r = E->lr >= 0 ? &p->lr[E->lr] : NULL;
      int yx = r && p->scope.nlhs > 0 && same_vec(ev_x(rs, E), 0, r->y, r->m);
      int iv = lw_lhs_var(l, 0), xv = fvar(l, "x");
      KStmt *outer = loop(l, iv, I(l, R), 0);
      lw_set(l, xv, lw_lx(l, ev_x(rs, E)));
      st(l, d->X, at(l, V(l, n), R, V(l, iv)), V(l, xv));
      if (yx) st(l, d->Y, at(l, V(l, n), R, V(l, iv)), V(l, xv));
      lw_close_for(l, outer);
      if (r) {
        st(l, d->CV, V(l, n), fmul(l, F(l, r->scale), lw_lx(l, r->c)));
        if (!yx) {
          int mv = lw_ivar_of(l, r->m);
          outer = loop(l, mv, I(l, R), 0);
          st(l, d->Y, at(l, V(l, n), R, V(l, mv)), lw_lx(l, r->y));
          lw_close_for(l, outer);
        }
      } else {
        st(l, d->CV, V(l, n), F(l, 0));
        int i = ivar(l, "i");
        outer = loop(l, i, I(l, R), KF_VECTORIZE);
        st(l, d->Y, at(l, V(l, n), R, V(l, i)), F(l, 0));
        lw_close_for(l, outer);
      }
      int cvars[DP_MAX_OUTERS], nc = 0;
      for (int o = 0; o < p->nouter; o++) {
        if (!(E->outs >> o & 1)) continue;
        cvars[nc] = fvar(l, "c");
        lw_set(l, cvars[nc], fmul(l, F(l, p->outer[o].scale), lw_lx(l, p->outer[o].c)));
        nc++;
      }
      int jv = lw_lhs_var(l, 1), jt = ivar(l, "jt");
      outer = loop(l, jt, lw_ncols(l, s), 0);
      lw_set(l, jv, lw_gcol(l, V(l, jt)));
      KExpr *w = F(l, 0);
      for (int o = 0, c = 0; o < p->nouter; o++) {
        if (!(E->outs >> o & 1)) continue;
        KExpr *wv = p->scope.nlhs > 1 ? lw_lx(l, p->outer[o].w) : F(l, 1);
        w = fadd(l, w, fmul(l, V(l, cvars[c++]), wv));
      }
      st(l, d->DI, at(l, V(l, n), VT, V(l, jt)), w);
      lw_close_for(l, outer);
    }
  }
  copy_g(l, d, d->Gv, V(l, ck->v_tc), ns + 1, ns);
}

/* Per token: every state's events and G, and every readout's coefficient vector. */
static void gather(L *l, Chunk *ck) {
  for (int s = 0; s < l->rm->nstates; s++) {
    DState *d = &ck->ds[s];
    int g = ivar(l, "g");
    KStmt *outer = loop(l, g, I(l, d->GW), KF_VECTORIZE);
    st(l, d->gacc, V(l, g), F(l, 0));
    lw_close_for(l, outer);
  }
  KStmt *outer = loop(l, ck->v_tc, V(l, ck->v_len), 0);
  lw_at_token(l, ck->v_c0, ck->v_tc);
  KExpr *tc = V(l, ck->v_tc);
  for (int s = 0; s < l->rm->nstates; s++) gather_state(l, ck, s);
  for (int k = 0; k < ck->nro; k++) {
    const Readout *r = &ck->ro[k];
    lw_use_scope(l, &l->rm->outputs[r->output].scope);
    const RecState *rs = &l->rm->states[r->state];
    int64_t R = l->R[r->state];
    int nt = 0;
    for (int t = 0; t < r->node->nterms; t++) {
      const RecTerm *tm = &r->node->terms[t];
      nt += tm->read.state == r->state && tm->read.version == r->version;
    }
    KStmt *in;
    if (nt != 1) { /* one term: stored directly, no zeroing pass */
      int i = ivar(l, "i");
      in = loop(l, i, I(l, R), KF_VECTORIZE);
      st(l, r->q, at(l, tc, R, V(l, i)), F(l, 0));
      lw_close_for(l, in);
    }
    for (int t = 0; t < r->node->nterms; t++) {
      const RecTerm *tm = &r->node->terms[t];
      if (tm->read.state != r->state || tm->read.version != r->version) continue;
      int iv = rs->ndim ? lw_ivar_of(l, tm->read.idx[0].v) : ivar(l, "i");
      in = loop(l, iv, I(l, R), 0);
      KExpr *idx = at(l, tc, R, V(l, iv));
      KExpr *x = fmul(l, F(l, tm->scale), lw_lx(l, tm->coef));
      st(l, r->q, idx, nt == 1 ? x : fadd(l, ld(l, r->q, at(l, tc, R, V(l, iv))), x));
      lw_close_for(l, in);
    }
  }
  lw_close_for(l, outer);
  /* XT = X^T, after the tokens: the per-token loops store contiguously (vectorised) */
  for (int s = 0; s < l->rm->nstates; s++) {
    DState *d = &ck->ds[s];
    if (d->nev == 0) continue;
    int i = ivar(l, "i"), sv = ivar(l, "s");
    KStmt *ol = loop(l, i, I(l, l->R[s]), KF_BLOCK);
    KStmt *il = loop(l, sv, nev(l, ck, d), KF_VECTORIZE);
    st(l, d->XT, at(l, V(l, i), d->N, V(l, sv)), ld(l, d->X, at(l, V(l, sv), l->R[s], V(l, i))));
    lw_close_for(l, il);
    lw_close_for(l, ol);
  }
}

/* A[row, s] for s in [0, nN) of a decayed, masked product of row vector src[row] (width R)
 * with the events' x: for s < lim, scale * sum_i src[i] x_s[i] e^{G(i) - Gp_s[i]}, else 0.
 * Scalar G: the product is already in A (a matmul), scaled here by e^{G - Gp_s}; per-row G:
 * the dot product is formed here with the exponential per element. Every exponent kept is
 * <= 0 (s before the point G belongs to). */
static void masked_row(L *l, const DState *d, int64_t a, int64_t lda, KExpr *row, int64_t src,
                       int64_t R, KExpr *nN, KExpr *lim, int ns, KExpr *tc, int v, KExpr *scale) {
  int s = ivar(l, "s");
  if (!d->diag) {
    int g = fvar(l, "gr");
    lw_set(l, g, g_at(l, d, ns, tc, v, I(l, 0)));
    /* the loads are read into variables before the select: its arms load nothing, so it
     * is a branch-free select (vectorised), not a branch; both are in bounds for every s,
     * and an arm not selected may be inf (a positive exponent above the mask) */
    int av = fvar(l, "m"), gv = fvar(l, "gp");
    KStmt *outer = loop(l, s, nN, KF_VECTORIZE);
    KExpr *idx = at(l, row, lda, V(l, s));
    lw_set(l, av, ld(l, a, at(l, row, lda, V(l, s))));
    lw_set(l, gv, gp_at(l, d, V(l, s), I(l, 0)));
    KExpr *x = fmul(l, V(l, av), fexp(l, fsub(l, V(l, g), V(l, gv))));
    if (scale) x = fmul(l, scale, x);
    st(l, a, idx, ke_select(l->m, lt(l, V(l, s), lim), x, F(l, 0)));
    lw_close_for(l, outer);
    return;
  }
  int i = ivar(l, "i"), acc = fvar(l, "dot");
  KStmt *outer = loop(l, s, lim, 0);
  lw_set(l, acc, F(l, 0));
  KStmt *il = loop(l, i, I(l, R), KF_VECTORIZE);
  lw_accumulate(l, acc, fmul(l, fmul(l, ld(l, src, at(l, row, R, V(l, i))),
                                     ld(l, d->X, at(l, V(l, s), R, V(l, i)))),
                             fexp(l, fsub(l, g_at(l, d, ns, tc, v, V(l, i)),
                                          gp_at(l, d, V(l, s), V(l, i))))));
  lw_close_for(l, il);
  st(l, a, at(l, row, lda, V(l, s)), scale ? fmul(l, scale, V(l, acc)) : V(l, acc));
  lw_close_for(l, outer);
  int s2 = ivar(l, "s");
  outer = lw_open_for(l, s2, lim, nN, KF_VECTORIZE);
  st(l, a, at(l, row, lda, V(l, s2)), F(l, 0));
  lw_close_for(l, outer);
}

/* The UT transform of state s (the events are n = tc NE + e, nN of them):
 *   M[n, s] = c_n y_n^T diag(e^{Gr_n - Gp_s}) x_s for s before n's step, else 0,
 *   D = (I - M)^{-1} (W + (c y * e^{Gr}) S0)   (a matmul, then the blocked solve)
 * so D's rows are the deltas: what each event adds to the state. */
static void solve(L *l, Chunk *ck, int s) {
  const RecState *rs = &l->rm->states[s];
  DState *d = &ck->ds[s];
  int64_t R = l->R[s], VT = l->C[s], N = d->N;
  int ns = rs->nsteps, NE = d->nev;
  KExpr *nN = nev(l, ck, d);
  int nv = ivar(l, "nN");
  lw_set(l, nv, nN);
  nN = V(l, nv);
  /* M: Y X^T (scalar decays), then decayed and masked row by row */
  if (!d->diag) /* row n needs the columns before n's step */
    mm_tri(l, 1, s, nv, -nv - 1, I(l, R), I(l, R), 1, d->Y, R, d->XT, N, ck->Mx, N, 0);
  int tc = ivar(l, "tc"), n = ivar(l, "ev"), i = ivar(l, "i");
  int cv = fvar(l, "c");
  KStmt *outer = loop(l, tc, V(l, ck->v_len), KF_BLOCK);
  for (int e = 0; e < NE; e++) {
    const Ev *E = &d->ev[e];
    lw_set(l, n, add(l, mul(l, V(l, tc), I(l, NE)), I(l, e)));
    /* c_n read once, before the loops (a load in a loop that stores to the same buffer at an
     * unknown distance keeps it scalar) */
    lw_set(l, cv, ld(l, d->CV, V(l, n)));
    if (E->lr < 0) {
      int z = ivar(l, "s");
      KStmt *zl = loop(l, z, nN, KF_VECTORIZE);
      st(l, ck->Mx, at(l, V(l, n), N, V(l, z)), F(l, 0));
      lw_close_for(l, zl);
    } else {
      KExpr *lim = add(l, mul(l, V(l, tc), I(l, NE)), I(l, d->evb[E->step]));
      masked_row(l, d, ck->Mx, N, V(l, n), d->Y, R, nN, lim, ns, V(l, tc), E->step, V(l, cv));
    }
    /* Ye[n, :] = c_n y_n * e^{Gr_n} (zero for an input-only event: its y is zero) */
    KExpr *gs = NULL;
    if (!d->diag) {
      int gv = fvar(l, "eg");
      lw_set(l, gv, fexp(l, g_at(l, d, ns, V(l, tc), E->step, I(l, 0))));
      gs = V(l, gv);
    }
    KStmt *il = loop(l, i, I(l, R), KF_VECTORIZE);
    KExpr *eg = gs ? gs : fexp(l, g_at(l, d, ns, V(l, tc), E->step, V(l, i)));
    st(l, ck->Ye, at(l, V(l, n), R, V(l, i)),
       fmul(l, fmul(l, V(l, cv), ld(l, d->Y, at(l, V(l, n), R, V(l, i)))), eg));
    lw_close_for(l, il);
  }
  lw_close_for(l, outer);
  /* DI += Ye S0, then D = (I - M)^{-1} DI in place, by blocked forward substitution over
   * row blocks of DP_SOLVE_B events: a block's rows take the solved rows above it in one
   * matmul, DI[b0:b1] += M[b0:b1, :b0] DI[:b0], then each other within the block,
   * DI[r] += M[r, b0:r] DI[b0:r] (one-row matmuls). No N x N inverse is formed. */
  mm(l, nN, lw_ncols(l, s), I(l, R), ck->Ye, R, d->S, VT, d->DI, VT, 1);
  int blk = ivar(l, "blk"), b0 = ivar(l, "b0"), b1 = ivar(l, "b1");
  int r = ivar(l, "r");
  KExpr *nblk = ke_bin(l->m, KO_DIV, add(l, nN, I(l, DP_SOLVE_B - 1)), I(l, DP_SOLVE_B));
  outer = loop(l, blk, nblk, 0);
  lw_set(l, b0, mul(l, V(l, blk), I(l, DP_SOLVE_B)));
  lw_set(l, b1, ke_bin(l->m, KO_MIN, add(l, V(l, b0), I(l, DP_SOLVE_B)), nN));
  lw_emit(l, ks_matmul(l->m, isub(l, V(l, b1), V(l, b0)), lw_ncols(l, s), V(l, b0),
                       ke_ptradd(l->m, sp(l, ck->Mx), mul(l, V(l, b0), I(l, N * 4))), I(l, N),
                       sp(l, d->DI), I(l, VT),
                       ke_ptradd(l->m, sp(l, d->DI), mul(l, V(l, b0), I(l, VT * 4))), I(l, VT),
                       1));
  /* within the block, row by row: DI[r] += M[r, b0:r] DI[b0:r], a one-row matmul (as an
   * axpy loop over u the loads of row u and the stores of row r are of one buffer at an
   * unknown distance, which kept it scalar) */
  lw_open_for(l, r, add(l, V(l, b0), I(l, 1)), V(l, b1), 0);
  lw_emit(l, ks_matmul(l->m, I(l, 1), lw_ncols(l, s), isub(l, V(l, r), V(l, b0)),
                       ke_ptradd(l->m, sp(l, ck->Mx), mul(l, add(l, mul(l, V(l, r), I(l, N)),
                                                                V(l, b0)), I(l, 4))),
                       I(l, N), ke_ptradd(l->m, sp(l, d->DI), mul(l, V(l, b0), I(l, VT * 4))),
                       I(l, VT), ke_ptradd(l->m, sp(l, d->DI), mul(l, V(l, r), I(l, VT * 4))),
                       I(l, VT), 1));
  lw_close_for(l, outer);
}

/* R[t, :] = (q_t * e^{G_P})^T S0 + sum_{s < P} (q_t^T diag(e^{G_P - Gp_s}) x_s) delta_s, P the
 * readout's point in token t: Qe S0 + A D, two matmuls (A: Q X^T decayed and masked). */
static void readout_chunk(L *l, Chunk *ck, const Readout *r) {
  int s = r->state, v = r->version;
  const RecState *rs = &l->rm->states[s];
  DState *d = &ck->ds[s];
  int64_t R = l->R[s], VT = l->C[s], N = d->N;
  int ns = rs->nsteps, NE = d->nev;
  KExpr *len = V(l, ck->v_len);
  int t = ivar(l, "t"), i = ivar(l, "i");
  KStmt *outer = loop(l, t, len, KF_BLOCK);
  KExpr *gs = NULL;
  if (!d->diag) {
    int gv = fvar(l, "eg");
    lw_set(l, gv, fexp(l, g_at(l, d, ns, V(l, t), v, I(l, 0))));
    gs = V(l, gv);
  }
  loop(l, i, I(l, R), KF_VECTORIZE);
  KExpr *eg = gs ? gs : fexp(l, g_at(l, d, ns, V(l, t), v, V(l, i)));
  st(l, ck->Qe, at(l, V(l, t), R, V(l, i)), fmul(l, ld(l, r->q, at(l, V(l, t), R, V(l, i))), eg));
  lw_close_for(l, outer);
  mm(l, len, lw_ncols(l, s), I(l, R), ck->Qe, R, d->S, VT, r->r, VT, 0);
  if (NE == 0) return;
  int nv = ivar(l, "nN");
  lw_set(l, nv, nev(l, ck, d));
  KExpr *nN = V(l, nv);
  if (!d->diag) /* token t needs the events before (t + 1) NE */
    mm_tri(l, 1, s, ck->v_len, -nv - 1, I(l, R), I(l, R), NE, r->q, R, d->XT, N, ck->Aq, N, 0);
  outer = loop(l, t, len, KF_BLOCK);
  KExpr *lim = add(l, mul(l, V(l, t), I(l, NE)), I(l, d->evb[v]));
  masked_row(l, d, ck->Aq, N, V(l, t), r->q, R, nN, lim, ns, V(l, t), v, NULL);
  lw_close_for(l, outer);
  mm_tri(l, 0, s, ck->v_len, 0, V(l, nv), V(l, nv), NE, ck->Aq, N, d->D, VT, r->r, VT, 1);
}

/* S = diag(e^{G_end}) S + (X^T .* e^{G_end - Gp})  D: the keys decayed to the chunk's end
 * (XT scaled in place: its last use in the chunk), one matmul. */
static void pass_state(L *l, Chunk *ck, int s) {
  const RecState *rs = &l->rm->states[s];
  DState *d = &ck->ds[s];
  int64_t R = l->R[s], VT = l->C[s], N = d->N;
  int ns = rs->nsteps, NE = d->nev;
  int i = ivar(l, "i"), j = ivar(l, "j"), sv = ivar(l, "s"), last = ivar(l, "last");
  int a = fvar(l, "a");
  lw_set(l, last, isub(l, V(l, ck->v_len), I(l, 1)));
  int nv = ivar(l, "nN");
  lw_set(l, nv, nev(l, ck, d));
  if (NE > 0 && !d->diag) { /* e^{G_end - Gp_s}, once per event; G_end read before the loop */
    int ge = fvar(l, "gend");
    lw_set(l, ge, g_at(l, d, ns, V(l, last), ns, I(l, 0)));
    KStmt *dl = loop(l, sv, V(l, nv), KF_VECTORIZE | KF_BLOCK);
    st(l, d->dvec, V(l, sv), fexp(l, fsub(l, V(l, ge), gp_at(l, d, V(l, sv), I(l, 0)))));
    lw_close_for(l, dl);
  }
  KStmt *outer = loop(l, i, I(l, R), KF_BLOCK);
  lw_set(l, a, fexp(l, g_at(l, d, ns, V(l, last), ns, V(l, i))));
  KStmt *jl = loop(l, j, lw_ncols(l, s), KF_VECTORIZE);
  KExpr *idx = at(l, V(l, i), VT, V(l, j));
  st(l, d->S, idx, fmul(l, V(l, a), ld(l, d->S, at(l, V(l, i), VT, V(l, j)))));
  lw_close_for(l, jl);
  if (NE > 0) {
    /* G_end[i] read once per row, before the loop over events: a load inside it that may
     * alias the store kept the loop scalar */
    int ge = fvar(l, "gend");
    if (d->diag) lw_set(l, ge, g_at(l, d, ns, V(l, last), ns, V(l, i)));
    loop(l, sv, V(l, nv), KF_VECTORIZE);
    KExpr *decay = d->diag ? fexp(l, fsub(l, V(l, ge), gp_at(l, d, V(l, sv), V(l, i))))
                           : ld(l, d->dvec, V(l, sv));
    KExpr *x = at(l, V(l, i), N, V(l, sv));
    st(l, d->XT, x, fmul(l, ld(l, d->XT, at(l, V(l, i), N, V(l, sv))), decay));
  }
  lw_close_for(l, outer);
  if (NE > 0) mm(l, I(l, R), lw_ncols(l, s), V(l, nv), d->XT, N, d->D, VT, d->S, VT, 1);
}

/* Readouts answered from the chunk's results: the sum over the node's (state, version)
 * groups of R[tc, column] (the column within the item's value tile). */
static KExpr *dplr_readout(L *l, const RecOutput *o, const RecOut *n) {
  Chunk *ck = l->strategy;
  KExpr *v = NULL;
  (void)o;
  for (int k = 0; k < ck->nro; k++) {
    const Readout *r = &ck->ro[k];
    if (r->node != n) continue;
    const RecState *rs = &l->rm->states[r->state];
    KExpr *col = I(l, 0);
    for (int t = 0; t < n->nterms && rs->ndim == 2; t++)
      if (n->terms[t].read.state == r->state && n->terms[t].read.version == r->version) {
        col = V(l, lw_ivar_of(l, n->terms[t].read.idx[1].v));
        break;
      }
    KExpr *x = lw_chunk_result(l, r->r, ck->v_tc, l->C[r->state], col);
    v = v ? fadd(l, v, x) : x;
  }
  if (!v) {
    lw_lfail(l, "internal: a readout the chunk strategy did not plan");
    return F(l, 0);
  }
  return n->konst ? fadd(l, v, lw_lx(l, n->konst)) : v;
}

/* ---- scratch and the kernel ---- */

/* Plan the events of every state, the chunk length and the value tile; lay out scratch. */
static int setup(L *l, Chunk *ck) {
  const RecMixer *rm = l->rm;
  int ns = rm->nstates;
  if (lw_chunk_tables(l)) return 1;
  ck->ds = arena_array(l->arena, (size_t)ns + 1, sizeof *ck->ds);
  if (l->failed || !ck->ds) return lw_lfail(l, "out of memory");
  int any_diag = 0;
  int64_t maxne = 1, maxr = 1, maxc = 1;
  for (int s = 0; s < ns; s++) {
    const RecState *rs = &rm->states[s];
    DState *d = &ck->ds[s];
    memset(d, 0, sizeof *d);
    d->evb = lw_int_array(l, rs->nsteps + 1, 0);
    d->dec = arena_array(l->arena, (size_t)rs->nsteps + 1, sizeof *d->dec);
    if (!d->evb || !d->dec) return lw_lfail(l, "out of memory");
    const char *why = plan_events(rs, d->ev, &d->nev, d->evb, d->dec);
    if (why) return lw_lfail(l, "internal: %s", why);
    for (int k = 0; k < rs->nsteps; k++) d->diag |= d->dec[k].kind == 1 && d->dec[k].e->free != 0;
    any_diag |= d->diag;
    if (d->nev > maxne) maxne = d->nev;
    int64_t R = rs->ndim > 0 ? l->sp->dims[rs->shape[0]] : 1;
    int64_t Cc = rs->ndim > 1 ? l->sp->dims[rs->shape[1]] : 1;
    l->R[s] = R;
    l->C[s] = l->split ? l->vt : Cc;
    if (R > maxr) maxr = R;
    if (l->C[s] > maxc) maxc = l->C[s];
  }
  ck->C = sched_chunk_l2(any_diag ? SC_DELTA_DIAG : SC_DELTA, l->sp->chunk, maxne, maxr, maxc,
                         l->sp->cache_l2_bytes);
  l->pl->chunk = ck->C;
  int64_t off = 0, C = ck->C, maxn = 1;
  for (int s = 0; s < ns; s++) {
    const RecState *rs = &rm->states[s];
    DState *d = &ck->ds[s];
    int64_t R = l->R[s], VT = l->C[s], NE = d->nev;
    d->N = C * (NE > 0 ? NE : 1);
    if (d->N > maxn) maxn = d->N;
    d->GW = d->diag ? R : 1;
    l->ver[s] = lw_int_array(l, rs->nsteps + 1, -1);
    if (!l->ver[s]) return lw_lfail(l, "out of memory");
    int sv = lw_var(l, KT_PTR, arena_printf(l->arena, "%s", rs->name));
    for (int v = 0; v <= rs->nsteps; v++) l->ver[s][v] = sv;
    lw_set(l, sv, ke_ptradd(l->m, V(l, l->v_scr), I(l, off * 4)));
    d->S = off;
    off += R * VT;
    d->Gv = off;
    off += C * (rs->nsteps + 1) * d->GW;
    d->gacc = off;
    off += d->GW;
    d->GP = off;
    off += d->N * d->GW;
    d->X = off;
    off += d->N * R;
    d->XT = off;
    off += d->N * R;
    d->Y = off;
    off += d->N * R;
    d->CV = off;
    off += d->N;
    d->DI = off;
    off += d->N * VT;
    d->D = d->DI; /* the solve turns the inputs into the deltas in place */
    d->dvec = off;
    off += d->N;
  }
  ck->Mx = off;
  off += maxn * maxn;
  ck->Ye = off;
  off += maxn * maxr;
  ck->Aq = off;
  off += C * maxn;
  ck->Qe = off;
  off += C * maxr;
  for (int k = 0; k < ck->nro; k++) {
    ck->ro[k].q = off;
    off += C * l->R[ck->ro[k].state];
    ck->ro[k].r = off;
    off += C * l->C[ck->ro[k].state];
  }
  for (int k = 0; k < rm->nlets; k++) {
    l->let_off[k] = off;
    off += lw_feat_of_scope(l, &rm->lets[k].scope);
  }
  l->f->scratch_floats = off;
  return 0;
}

static void body(L *l, Chunk *ck) {
  KStmt *outer = lw_chunk_loop(l, ck->C, ck->v_c0, ck->v_len);
  gather(l, ck);
  for (int s = 0; s < l->rm->nstates; s++) {
    const DState *d = &ck->ds[s];
    int any = 0;
    for (int e = 0; e < d->nev; e++) any |= d->ev[e].lr >= 0;
    if (any) solve(l, ck, s); /* else no rank-one term: the deltas are the inputs */
  }
  for (int r = 0; r < ck->nro; r++) readout_chunk(l, ck, &ck->ro[r]);
  lw_chunk_outputs(l, ck->v_c0, ck->v_len, ck->v_tc);
  for (int s = 0; s < l->rm->nstates; s++) pass_state(l, ck, s);
  lw_chunk_loop_end(l, outer);
}

int lower_chunk_dplr(Arena *a, const KernelSpec *spec, KernelPlan *plan, char *err, size_t errlen) {
  const char *why;
  if (!chunk_dplr_applies(spec->rm, &why)) {
    snprintf(err, errlen, "the DPLR chunk strategy does not apply to mixer '%s': %s",
             spec->rm->name, why);
    return 1;
  }
  L l;
  Chunk *ck = arena_array(a, 1, sizeof *ck); /* zeroed */
  if (!ck) {
    snprintf(err, errlen, "out of memory");
    return 1;
  }
  Walk w = {spec->rm, ck, 0, NULL};
  for (int o = 0; o < spec->rm->noutputs; o++) {
    w.output = o;
    walk_out(&w, spec->rm->outputs[o].root);
  }
  if (lw_chunk_begin(&l, a, spec, plan, dplr_readout, ck, err, errlen)) return 1;
  if (setup(&l, ck)) return 1;
  ck->v_c0 = ivar(&l, "c0");
  ck->v_len = ivar(&l, "len");
  ck->v_tc = ivar(&l, "tc");
  KStmt *outer = lw_open_items(&l);
  body(&l, ck);
  lw_close_for(&l, outer);
  return lw_finish(&l);
}
