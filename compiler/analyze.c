/* Recurrence analysis: the typed tree -> the recurrence IR (rec.h), with the checks of
 * LANGUAGE.md section 6 (linearity) and 7 (the non-causal scan).
 *
 * 1. Lowering walks each mixer's statements in textual order, unrolling `for` loops. Every
 *    right-hand side is copied into a fresh scope of index variables: `for` variables become
 *    constants, a state read records the state's version at that point, a let that reads no
 *    state becomes a prelude entry referenced by index, and a let that reads a state is
 *    inlined (its body, lowered at its own position, is copied with its indices renamed).
 * 2. Linearization splits an update's right-hand side into linear terms (state-free factors
 *    times one state read, summed over some indices) and state-free terms; a product or
 *    quotient of two state-dependent values, or a state inside a function, is an error.
 * 3. Classification reads each term's index pattern (S[i, j], S[m, j], S[i, m], other) and
 *    its coefficient's free indices, gives each step a class, and joins the steps' classes
 *    into the state's token class.
 * 4. Outputs become trees of per-token values and linear readouts of states.
 *
 * Everything is built in the compilation's arena; sizes are capped (rec.h) so that no input
 * can make the analysis recurse without bound or allocate without limit. */
#include <math.h>
#include <string.h>

#include "compile.h"
#include "rec.h"

#define BIT(v) ((uint64_t)1 << (v))

typedef enum MapKind { MAP_NONE, MAP_VAR, MAP_CONST } MapKind;
typedef struct Map {
  MapKind kind;
  int v;
} Map;

/* The scope of one statement under construction. */
typedef struct ScopeB {
  RecIvar v[MIXC_MAX_IVARS];
  int n, nlhs;
} ScopeB;

/* The current value of a let symbol (its last assignment in textual order). */
typedef struct LetVal {
  int defined;
  int prelude;   /* index into the prelude, or -1: inlined where used */
  Expr *e;       /* inlined lets: the lowered right-hand side, in `scope` */
  RecScope scope;
} LetVal;

typedef struct StepVec {
  RecStep *p;
  int n, cap;
} StepVec;

enum { MAX_LOOPS = 64 };

typedef struct Ana {
  Arena *a;
  Diags *d;
  const Mixer *m;
  RecState *states;
  int nstates;
  StepVec *steps;  /* per state */
  int *slot;       /* per symbol: state slot or -1 */
  int *version;    /* per state: updates so far in this token */
  LetVal *letv;    /* per symbol */
  int *forval;     /* per for variable: its value in the current iteration */
  int loops[MAX_LOOPS];
  int nloops;
  RecLet *lets;
  int nlets, caplets;
  RecOutput *outs;
  int nouts, capouts;
  RecEvent *ev;
  int nev, capev;
  long nodes;
  int unrolled;
  int stop;        /* a limit was hit or memory ran out: stop lowering this mixer */
  int diags0;      /* diagnostics before this mixer */
} Ana;

static void *grow(Arena *a, void *p, int n, int *cap, size_t elem) {
  if (n < *cap) return p;
  int nc = *cap ? *cap * 2 : 8;
  void *q = arena_array(a, (size_t)nc, elem);
  if (!q) return NULL;
  if (n) memcpy(q, p, (size_t)n * elem);
  *cap = nc;
  return q;
}

static const char *sym_name(const Ana *A, int sym) {
  return sym >= 0 && sym < A->m->nsyms ? A->m->syms[sym].name : "?";
}

static int state_slot(const Ana *A, int sym) {
  return sym >= 0 && sym < A->m->nsyms ? A->slot[sym] : -1;
}

/* ---- expression nodes ---- */

static Expr *node(Ana *A, ExprKind kind, Loc loc, int nargs) {
  if (A->stop) return NULL;
  if (++A->nodes > REC_MAX_NODES) {
    diag_error(A->d, A->m->name.loc,
               "use smaller `for` ranges, or fewer lets that read a state (each use copies one)",
               "mixer '%s' is too large after unrolling loops and inlining lets",
               A->m->name.name);
    A->stop = 1;
    return NULL;
  }
  Expr *e = arena_alloc(A->a, sizeof *e);
  if (e && nargs) e->args = arena_array(A->a, (size_t)nargs, sizeof *e->args);
  if (!e || (nargs && !e->args)) {
    A->stop = 1;
    return NULL;
  }
  e->kind = kind;
  e->loc = loc;
  e->nargs = nargs;
  e->ref = REF_NONE;
  e->sym = -1;
  return e;
}

static Expr *mk_num(Ana *A, double v, Loc loc) {
  Expr *e = node(A, EX_NUM, loc, 0);
  if (e) e->num = v;
  return e;
}

static Expr *mk_bin(Ana *A, int op, Expr *l, Expr *r) {
  if (!l || !r) {
    A->stop = 1;
    return NULL;
  }
  Expr *e = node(A, EX_BIN, l->loc, 2);
  if (!e) return NULL;
  e->op = op;
  e->args[0] = l;
  e->args[1] = r;
  e->free = l->free | r->free;
  e->has_state = l->has_state | r->has_state;
  return e;
}

static Expr *mk_neg(Ana *A, Expr *x) {
  if (!x) {
    A->stop = 1;
    return NULL;
  }
  Expr *e = node(A, EX_NEG, x->loc, 1);
  if (!e) return NULL;
  e->args[0] = x;
  e->free = x->free;
  e->has_state = x->has_state;
  return e;
}

static Expr *mk_sum(Ana *A, const ScopeB *sc, int v, Expr *body) {
  if (!body) {
    A->stop = 1;
    return NULL;
  }
  Expr *e = node(A, EX_SUM, body->loc, 1);
  if (!e) return NULL;
  e->bound = v;
  e->name = v >= 0 && v < sc->n ? sc->v[v].name : "?";
  e->args[0] = body;
  e->free = body->free & ~BIT(v);
  e->has_state = body->has_state;
  return e;
}

static int is_recip(const Expr *e) {
  return e->kind == EX_BIN && e->op == '/' && e->args[0]->kind == EX_NUM && e->args[0]->num == 1;
}

static Expr *prod_range(Ana *A, Expr **f, int lo, int hi) {
  if (hi - lo == 1) return f[lo];
  int mid = lo + (hi - lo) / 2;
  return mk_bin(A, '*', prod_range(A, f, lo, mid), prod_range(A, f, mid, hi));
}

/* The product of n factors (NULL: the empty product, 1), balanced so its depth stays
 * logarithmic; reciprocals 1/d gather into one quotient. */
static Expr *prod(Ana *A, Expr **f, int n) {
  if (n <= 0) return NULL;
  int nden = 0;
  for (int i = 0; i < n; i++) nden += is_recip(f[i]);
  if (!nden) return prod_range(A, f, 0, n);
  Expr **nums = arena_array(A->a, (size_t)n, sizeof *nums);
  Expr **dens = arena_array(A->a, (size_t)nden, sizeof *dens);
  if (!nums || !dens) {
    A->stop = 1;
    return NULL;
  }
  int nn = 0, nd = 0;
  for (int i = 0; i < n; i++) {
    if (is_recip(f[i]))
      dens[nd++] = f[i]->args[1];
    else
      nums[nn++] = f[i];
  }
  Expr *num = nn ? prod_range(A, nums, 0, nn) : mk_num(A, 1, f[0]->loc);
  return mk_bin(A, '/', num, prod_range(A, dens, 0, nd));
}

/* scale * e as an expression (e NULL: 1). */
static Expr *val(Ana *A, double scale, Expr *e, Loc loc) {
  double s = fabs(scale);
  Expr *r = e;
  if (!r)
    r = mk_num(A, s, loc);
  else if (s != 1)
    r = mk_bin(A, '*', mk_num(A, s, loc), r);
  if (scale < 0) r = mk_neg(A, r);
  return r;
}

/* ---- lowering: copying right-hand sides into a statement scope ---- */

typedef struct Rw {
  Ana *A;
  ScopeB *sc;
  const IndexVar *sv; /* resolve: the statement's index variables */
  const RecScope *ls; /* copy: the inlined let's scope */
  int nsrc;
  int resolve;        /* 1: the source is sema's tree; 0: an inlined let's lowered body */
  int *failed;
  Loc at;
  Map map[MIXC_MAX_IVARS];
} Rw;

static int name_used(const ScopeB *sc, const char *name) {
  for (int i = 0; i < sc->n; i++)
    if (sc->v[i].name && !strcmp(sc->v[i].name, name)) return 1;
  return 0;
}

static const char *unique_name(Ana *A, const ScopeB *sc, const char *base) {
  if (!name_used(sc, base)) return base;
  for (int k = 2; k < 2 * MIXC_MAX_IVARS + 4; k++) {
    const char *n = arena_printf(A->a, "%s%d", base, k);
    if (!n) return base;
    if (!name_used(sc, n)) return n;
  }
  return base;
}

static void rw_fail(Rw *w) { *w->failed = 1; }

/* A new index variable of the scope, copied from source index v. */
static int rw_fresh(Rw *w, int v) {
  ScopeB *sc = w->sc;
  if (sc->n >= MIXC_MAX_IVARS) {
    if (!*w->failed)
      diag_error(w->A->d, w->at,
                 "split the statement, or sum inside fewer of the lets it reads",
                 "more than %d index variables in this statement after inlining the lets it "
                 "reads",
                 MIXC_MAX_IVARS);
    rw_fail(w);
    return -1;
  }
  RecIvar *iv = &sc->v[sc->n];
  iv->name = "m";
  iv->loc = w->at;
  iv->dim = -1;
  if (w->resolve && w->sv && v < w->nsrc) {
    iv->name = w->sv[v].name;
    iv->loc = w->sv[v].loc;
    iv->dim = w->sv[v].dim;
  } else if (!w->resolve && w->ls && v < w->ls->nivars) {
    iv->name = w->ls->ivars[v].name;
    iv->loc = w->ls->ivars[v].loc;
    iv->dim = w->ls->ivars[v].dim;
  }
  if (!iv->name) iv->name = "m";
  iv->name = unique_name(w->A, sc, iv->name);
  return sc->n++;
}

static int forval(const Ana *A, int slot) {
  return slot >= 0 && slot < A->m->nforvars ? A->forval[slot] : 0;
}

/* One index position, as an EX_NAME with REF_INDEX or REF_CONST. */
static Expr *rw_pos(Rw *w, const Expr *p) {
  Ana *A = w->A;
  Expr *n = node(A, EX_NAME, p->loc, 0);
  if (!n) return NULL;
  n->name = p->name;
  int ref = p->ref, v = p->sym;
  if (p->kind == EX_NUM) {
    ref = REF_CONST;
    v = (int)p->num;
  }
  switch (ref) {
  case REF_INDEX: {
    if (v < 0 || v >= MIXC_MAX_IVARS) break;
    if (w->map[v].kind == MAP_NONE) {
      int f = rw_fresh(w, v);
      if (f < 0) return NULL;
      w->map[v].kind = MAP_VAR;
      w->map[v].v = f;
    }
    if (w->map[v].kind == MAP_VAR) {
      n->ref = REF_INDEX;
      n->sym = w->map[v].v;
      n->free = BIT(n->sym);
      n->name = w->sc->v[n->sym].name;
    } else {
      n->ref = REF_CONST;
      n->sym = w->map[v].v;
    }
    return n;
  }
  case REF_FORVAR:
    n->ref = REF_CONST;
    n->sym = forval(A, v);
    return n;
  case REF_CONST:
    n->ref = REF_CONST;
    n->sym = v;
    return n;
  default: break;
  }
  n->ref = REF_NONE; /* unresolved: any read through it is classified general */
  n->sym = -1;
  return n;
}

static Expr *rw_expr(Rw *w, const Expr *e, int depth);

/* A reference to a let: the prelude entry, or a copy of the let's body. */
static Expr *rw_let(Rw *w, const Expr *e, int depth) {
  Ana *A = w->A;
  int s = e->sym;
  const LetVal *lv = s >= 0 && s < A->m->nsyms ? &A->letv[s] : NULL;
  if (!lv || !lv->defined) { /* sema reports this; keep an opaque value */
    Expr *n = node(A, EX_NAME, e->loc, 0);
    if (n) n->name = e->name;
    return n;
  }
  if (lv->prelude >= 0) {
    Expr *n = node(A, e->kind, e->loc, e->nargs);
    if (!n) return NULL;
    n->name = e->name;
    n->ref = REF_LET;
    n->sym = s;
    n->bound = lv->prelude;
    for (int i = 0; i < e->nargs; i++) {
      n->args[i] = rw_pos(w, e->args[i]);
      if (!n->args[i]) return NULL;
      n->free |= n->args[i]->free;
    }
    return n;
  }
  Rw sub;
  memset(&sub, 0, sizeof sub);
  sub.A = A;
  sub.sc = w->sc;
  sub.ls = &lv->scope;
  sub.nsrc = lv->scope.nivars;
  sub.failed = w->failed;
  sub.at = w->at;
  for (int p = 0; p < lv->scope.nlhs && p < MIXC_MAX_IVARS; p++) {
    sub.map[p].kind = MAP_CONST;
    sub.map[p].v = 0;
    if (p >= e->nargs) continue;
    Expr *pos = rw_pos(w, e->args[p]);
    if (!pos) return NULL;
    if (pos->ref == REF_INDEX) {
      sub.map[p].kind = MAP_VAR;
      sub.map[p].v = pos->sym;
    } else {
      sub.map[p].v = pos->sym;
    }
  }
  return rw_expr(&sub, lv->e, depth);
}

static Expr *rw_ref(Rw *w, const Expr *e, int depth) {
  Ana *A = w->A;
  if (w->resolve && e->ref == REF_LET) return rw_let(w, e, depth);
  if (e->kind == EX_NAME && e->ref == REF_FORVAR) return mk_num(A, forval(A, e->sym), e->loc);
  if (e->kind == EX_NAME && (e->ref == REF_INDEX || e->ref == REF_CONST)) return rw_pos(w, e);
  Expr *n = node(A, e->kind, e->loc, e->nargs);
  if (!n) return NULL;
  n->name = e->name;
  n->ref = e->ref;
  n->sym = e->sym;
  n->bound = e->bound;
  if (e->ref == REF_STATE) {
    n->has_state = 1;
    if (w->resolve) {
      int sl = state_slot(A, e->sym);
      n->bound = sl >= 0 ? A->version[sl] : 0;
    }
  }
  for (int i = 0; i < e->nargs; i++) {
    n->args[i] = rw_pos(w, e->args[i]);
    if (!n->args[i]) return NULL;
    n->free |= n->args[i]->free;
  }
  return n;
}

static Expr *rw_sum(Rw *w, const Expr *e, int depth) {
  int b = e->bound;
  if (b < 0 || b >= MIXC_MAX_IVARS || e->nargs != 1) {
    rw_fail(w);
    return NULL;
  }
  Map saved = w->map[b];
  if (!w->resolve || saved.kind != MAP_VAR) {
    int f = rw_fresh(w, b);
    if (f < 0) return NULL;
    w->map[b].kind = MAP_VAR;
    w->map[b].v = f;
  }
  int v = w->map[b].v;
  Expr *body = rw_expr(w, e->args[0], depth + 1);
  if (!w->resolve) w->map[b] = saved;
  if (!body) return NULL;
  return mk_sum(w->A, w->sc, v, body);
}

static Expr *rw_expr(Rw *w, const Expr *e, int depth) {
  Ana *A = w->A;
  if (!e || *w->failed || A->stop) {
    rw_fail(w);
    return NULL;
  }
  if (depth > REC_MAX_DEPTH) {
    diag_error(A->d, w->at, "compute parts of it in lets that read no state, or simplify it",
               "this expression is nested more than %d levels deep once lets are inlined",
               REC_MAX_DEPTH);
    rw_fail(w);
    return NULL;
  }
  switch (e->kind) {
  case EX_NUM: return mk_num(A, e->num, e->loc);
  case EX_NAME:
  case EX_INDEX: return rw_ref(w, e, depth);
  case EX_SUM: return rw_sum(w, e, depth);
  case EX_CALL:
  case EX_BIN:
  case EX_NEG: break;
  }
  Expr *n = node(A, e->kind, e->loc, e->nargs);
  if (!n) return NULL;
  n->name = e->name;
  n->op = e->op;
  n->fn = e->fn;
  for (int i = 0; i < e->nargs; i++) {
    n->args[i] = rw_expr(w, e->args[i], depth + 1);
    if (!n->args[i]) return NULL;
    n->free |= n->args[i]->free;
    n->has_state |= n->args[i]->has_state;
  }
  return n;
}

/* ---- linearization ---- */

/* A product of factors under construction: a concatenation tree, so scaling a term from
 * either side is O(1) and the factors keep their textual order. */
typedef struct FCat FCat;
struct FCat {
  Expr *leaf;
  const FCat *l, *r;
};

typedef struct LT {
  double scale;
  const FCat *f;
  const Expr *read; /* the state read, or NULL: a state-free term */
  uint64_t summed;
} LT;

typedef struct Lin {
  LT *t;
  int n;
} Lin;

typedef enum LinWhy { LE_NONE, LE_PRODUCT, LE_DIV, LE_CALL, LE_TERMS, LE_MEM } LinWhy;

typedef struct LinErr {
  const Expr *at;
  LinWhy why;
} LinErr;

static const FCat *fc_leaf(Ana *A, Expr *e) {
  FCat *c = arena_alloc(A->a, sizeof *c);
  if (!c) {
    A->stop = 1;
    return NULL;
  }
  c->leaf = e;
  return c;
}

static const FCat *fc_cat(Ana *A, const FCat *l, const FCat *r) {
  if (!l) return r;
  if (!r) return l;
  FCat *c = arena_alloc(A->a, sizeof *c);
  if (!c) {
    A->stop = 1;
    return NULL;
  }
  c->l = l;
  c->r = r;
  return c;
}

static int lin_fail(LinErr *err, const Expr *at, LinWhy why) {
  err->at = at;
  err->why = why;
  return 1;
}

static int lin_alloc(Ana *A, Lin *out, int n, LinErr *err, const Expr *at) {
  out->n = n;
  out->t = NULL;
  if (n > REC_MAX_TERMS) return lin_fail(err, at, LE_TERMS);
  if (!n) return 0;
  out->t = arena_array(A->a, (size_t)n, sizeof *out->t);
  if (!out->t) {
    A->stop = 1;
    return lin_fail(err, at, LE_MEM);
  }
  return 0;
}

static int lin(Ana *A, Expr *e, Lin *out, LinErr *err, int depth);

static int lin_add(Ana *A, Expr *e, Lin *out, LinErr *err, int depth) {
  Lin l, r;
  if (lin(A, e->args[0], &l, err, depth + 1) || lin(A, e->args[1], &r, err, depth + 1)) return 1;
  if (lin_alloc(A, out, l.n + r.n, err, e)) return 1;
  for (int i = 0; i < l.n; i++) out->t[i] = l.t[i];
  for (int i = 0; i < r.n; i++) {
    out->t[l.n + i] = r.t[i];
    if (e->op == '-') out->t[l.n + i].scale = -r.t[i].scale;
  }
  return 0;
}

/* e = s * c (or c * s, or s / d) with c state-free: scale every term of s. */
static int lin_scale(Ana *A, Expr *e, Expr *s, Expr *c, int c_left, Lin *out, LinErr *err,
                     int depth) {
  Lin l;
  if (lin(A, s, &l, err, depth + 1)) return 1;
  const FCat *cf = fc_leaf(A, c);
  if (!cf || lin_alloc(A, out, l.n, err, e)) return lin_fail(err, e, LE_MEM);
  for (int i = 0; i < l.n; i++) {
    out->t[i] = l.t[i];
    out->t[i].f = c_left ? fc_cat(A, cf, l.t[i].f) : fc_cat(A, l.t[i].f, cf);
  }
  return A->stop ? lin_fail(err, e, LE_MEM) : 0;
}

static int lin_bin(Ana *A, Expr *e, Lin *out, LinErr *err, int depth) {
  Expr *l = e->args[0], *r = e->args[1];
  switch (e->op) {
  case '+':
  case '-': return lin_add(A, e, out, err, depth);
  case '*':
    if (l->has_state && r->has_state) return lin_fail(err, e, LE_PRODUCT);
    return l->has_state ? lin_scale(A, e, l, r, 0, out, err, depth)
                        : lin_scale(A, e, r, l, 1, out, err, depth);
  case '/': {
    if (r->has_state) return lin_fail(err, r, LE_DIV); /* point at the divisor */
    Expr *rc = mk_bin(A, '/', mk_num(A, 1, r->loc), r);
    if (!rc) return lin_fail(err, e, LE_MEM);
    return lin_scale(A, e, l, rc, 0, out, err, depth);
  }
  default: return lin_fail(err, e, LE_CALL);
  }
}

/* Split e into linear terms. Returns 0, or 1 with *err saying where it is not linear. */
static int lin(Ana *A, Expr *e, Lin *out, LinErr *err, int depth) {
  out->t = NULL;
  out->n = 0;
  if (A->stop || depth > REC_MAX_DEPTH + 64) return lin_fail(err, e, LE_MEM);
  if (!e->has_state || ((e->kind == EX_NAME || e->kind == EX_INDEX) && e->ref == REF_STATE)) {
    if (lin_alloc(A, out, 1, err, e)) return 1;
    out->t[0].scale = 1;
    if (e->has_state) {
      out->t[0].read = e;
    } else {
      out->t[0].f = fc_leaf(A, e);
      if (!out->t[0].f) return lin_fail(err, e, LE_MEM);
    }
    return 0;
  }
  switch (e->kind) {
  case EX_BIN: return lin_bin(A, e, out, err, depth);
  case EX_NEG:
    if (lin(A, e->args[0], out, err, depth + 1)) return 1;
    for (int i = 0; i < out->n; i++) out->t[i].scale = -out->t[i].scale;
    return 0;
  case EX_SUM:
    if (lin(A, e->args[0], out, err, depth + 1)) return 1;
    for (int i = 0; i < out->n; i++) out->t[i].summed |= BIT(e->bound);
    return 0;
  case EX_CALL: return lin_fail(err, e, LE_CALL);
  default: return lin_fail(err, e, LE_CALL); /* a state-reading value that is not a read */
  }
}

/* The state read inside e to name in a diagnostic: a read of `prefer` if there is one. */
static const Expr *find_read(const Expr *e, int prefer, int depth) {
  if (!e || depth > REC_MAX_DEPTH + 64) return NULL;
  if ((e->kind == EX_NAME || e->kind == EX_INDEX) && e->ref == REF_STATE) return e;
  const Expr *found = NULL;
  for (int i = 0; i < e->nargs; i++) {
    if (!e->args[i]->has_state) continue;
    const Expr *r = find_read(e->args[i], prefer, depth + 1);
    if (r && r->sym == prefer) return r;
    if (!found) found = r;
  }
  return found;
}

static int find_state(const Expr *e, int prefer, int depth) {
  const Expr *r = find_read(e, prefer, depth);
  return r ? r->sym : -1;
}

static int loc_before(Loc a, Loc b) {
  return a.line < b.line || (a.line == b.line && a.col < b.col);
}

static int loc_within(Loc a, Loc span) {
  return a.line == span.line && a.col >= span.col && a.col < span.col + span.len;
}

/* In sema's tree of a statement, a use of a state-reading let written inside `span`. */
static const Expr *let_use_in(const Expr *e, Loc span, int depth) {
  if (!e || depth > REC_MAX_DEPTH + 64 || !e->has_state) return NULL;
  if ((e->kind == EX_NAME || e->kind == EX_INDEX) && e->ref == REF_LET)
    return loc_within(e->loc, span) ? e : NULL;
  for (int i = 0; i < e->nargs; i++) {
    const Expr *u = let_use_in(e->args[i], span, depth + 1);
    if (u) return u;
  }
  return NULL;
}

/* The let through which a state read that is not written in statement `st` reached the
 * expression `at`: the let used inside `at`, else the let whose statement holds the read
 * (the last one starting before it); NULL when the read is written in `st` itself. */
static const Sym *let_through(const Ana *A, const Expr *read, const Expr *at, const Stmt *st) {
  if (!read || !st || !loc_before(read->loc, st->loc)) return NULL;
  const Expr *use = let_use_in(st->rhs, at->loc, 0);
  if (use && use->sym >= 0 && use->sym < A->m->nsyms && A->m->syms[use->sym].def)
    return &A->m->syms[use->sym];
  const Sym *best = NULL;
  for (int i = 0; i < A->m->nsyms; i++) {
    const Sym *y = &A->m->syms[i];
    if (y->kind != SYM_LET || !y->def || loc_before(read->loc, y->def->loc)) continue;
    if (!best || loc_before(best->def->loc, y->def->loc)) best = y;
  }
  return best;
}

static void report_lin(Ana *A, const LinErr *err, int prefer, int output, const Stmt *st) {
  Loc stmt = st->loc;
  if (err->why == LE_MEM) {
    A->stop = 1;
    return;
  }
  const Expr *at = err->at;
  if (err->why == LE_TERMS) {
    diag_error(A->d, stmt,
               "each state read is one linear term: read the state fewer times (a let that "
               "reads a state is copied into every use of it)",
               "this %s expands into more than %d linear terms", output ? "output" : "update",
               REC_MAX_TERMS);
    return;
  }
  const char *help;
  if (output)
    help = "an output may read a state only through linear readouts such as "
           "sum(i, q[i] * S[i, j]); apply non-linear functions to whole readouts, "
           "not to state entries";
  else if (err->why == LE_PRODUCT)
    help = "a state update must be affine in the states: a product of two state reads has "
           "no chunkwise form; multiply states only by per-token values";
  else if (err->why == LE_DIV)
    help = "a state update must be affine in the states: divide only by per-token values, "
           "never by a state read";
  else
    help = "a state update must be affine in the states: a state inside exp/log/... has no "
           "chunkwise form; apply functions to per-token values only";
  const Expr *read = find_read(at, prefer, 0);
  const Sym *via = let_through(A, read, at, st);
  if (via)
    diag_error(A->d, at->loc, help, "%s enters non-linearly here (through let '%s', line %d)",
               sym_name(A, read->sym), via->name, via->def->loc.line);
  else
    diag_error(A->d, at->loc, help, "%s enters non-linearly here",
               sym_name(A, read ? read->sym : -1));
}

/* ---- prepared terms: flat factor lists ---- */

typedef struct PT {
  double scale;
  Expr **f;
  int nf, cap;
  RecRead read;
  uint64_t summed;
  Loc loc;
} PT;

static void pt_push(Ana *A, PT *t, Expr *e) {
  if (!e) {
    A->stop = 1;
    return;
  }
  Expr **f = grow(A->a, t->f, t->nf, &t->cap, sizeof *f);
  if (!f) {
    A->stop = 1;
    return;
  }
  t->f = f;
  t->f[t->nf++] = e;
}

/* Push the multiplicative factors of a state-free e: products are split, signs and
 * number literals go to the scale, a quotient a / d becomes a and 1 / d. */
static void pt_flat(Ana *A, PT *t, Expr *e, int depth) {
  if (A->stop) return;
  if (depth > REC_MAX_DEPTH + 64) {
    pt_push(A, t, e);
    return;
  }
  if (e->kind == EX_BIN && e->op == '*') {
    pt_flat(A, t, e->args[0], depth + 1);
    pt_flat(A, t, e->args[1], depth + 1);
  } else if (e->kind == EX_NEG) {
    t->scale = -t->scale;
    pt_flat(A, t, e->args[0], depth + 1);
  } else if (e->kind == EX_NUM) {
    t->scale *= e->num;
  } else if (e->kind == EX_BIN && e->op == '/' && !is_recip(e)) {
    pt_flat(A, t, e->args[0], depth + 1);
    pt_push(A, t, mk_bin(A, '/', mk_num(A, 1, e->args[1]->loc), e->args[1]));
  } else {
    pt_push(A, t, e);
  }
}

static void pt_cat(Ana *A, PT *t, const FCat *c, int depth) {
  if (!c || A->stop) return;
  if (c->leaf) {
    pt_flat(A, t, c->leaf, depth);
    return;
  }
  pt_cat(A, t, c->l, depth + 1);
  pt_cat(A, t, c->r, depth + 1);
}

static RecRead read_of(const Ana *A, const Expr *e) {
  RecRead r;
  memset(&r, 0, sizeof r);
  r.state = -1;
  if (!e) return r;
  r.state = state_slot(A, e->sym);
  r.version = e->bound;
  r.loc = e->loc;
  if (e->kind != EX_INDEX) return r;
  r.nidx = e->nargs < MIXC_MAX_RANK ? e->nargs : MIXC_MAX_RANK;
  for (int i = 0; i < r.nidx; i++) {
    const Expr *p = e->args[i];
    r.idx[i].kind = p->ref == REF_INDEX ? RI_VAR : RI_CONST;
    r.idx[i].v = p->ref == REF_INDEX || p->ref == REF_CONST ? p->sym : -1;
  }
  return r;
}

static uint64_t read_vars(const RecRead *r) {
  uint64_t m = 0;
  for (int i = 0; i < r->nidx; i++)
    if (r->idx[i].kind == RI_VAR && r->idx[i].v >= 0 && r->idx[i].v < MIXC_MAX_IVARS)
      m |= BIT(r->idx[i].v);
  return m;
}

static uint64_t pt_free(const PT *t) {
  uint64_t m = 0;
  for (int i = 0; i < t->nf; i++) m |= t->f[i]->free;
  return m;
}

/* Summed indices that the read does not use belong to the coefficient: gather the
 * factors that depend on them into sum(m, ...). */
static void pt_move(Ana *A, const ScopeB *sc, PT *t) {
  uint64_t mv = t->summed & ~read_vars(&t->read);
  if (!mv) return;
  Expr **dep = arena_array(A->a, (size_t)t->nf + 1, sizeof *dep);
  Expr **keep = arena_array(A->a, (size_t)t->nf + 1, sizeof *keep);
  if (!dep || !keep) {
    A->stop = 1;
    return;
  }
  int nd = 0, nk = 0;
  for (int i = 0; i < t->nf; i++) {
    if (t->f[i]->free & mv)
      dep[nd++] = t->f[i];
    else
      keep[nk++] = t->f[i];
  }
  Expr *body = nd ? prod(A, dep, nd) : mk_num(A, 1, t->loc);
  for (int b = MIXC_MAX_IVARS - 1; b >= 0; b--)
    if (mv & BIT(b)) body = mk_sum(A, sc, b, body);
  if (!body) {
    A->stop = 1;
    return;
  }
  keep[nk++] = body;
  t->f = keep;
  t->nf = nk;
  t->cap = nk;
  t->summed &= ~mv;
}

static void pt_make(Ana *A, const ScopeB *sc, const LT *lt, PT *t) {
  memset(t, 0, sizeof *t);
  t->scale = lt->scale;
  t->summed = lt->summed;
  t->read = read_of(A, lt->read);
  t->loc = lt->read ? lt->read->loc : A->m->loc;
  pt_cat(A, t, lt->f, 0);
  if (!lt->read) {
    t->read.state = -1;
    if (t->nf) t->loc = t->f[0]->loc;
  }
  pt_move(A, sc, t);
}

/* The factors of t whose free indices lie within `mask` (and are not empty, unless
 * mask is 0), as one product. */
static Expr *pt_part(Ana *A, const PT *t, uint64_t mask) {
  Expr **f = arena_array(A->a, (size_t)t->nf + 1, sizeof *f);
  if (!f) {
    A->stop = 1;
    return NULL;
  }
  int n = 0;
  for (int i = 0; i < t->nf; i++) {
    uint64_t fr = t->f[i]->free;
    if (mask ? (fr && !(fr & ~mask)) : !fr) f[n++] = t->f[i];
  }
  return prod(A, f, n);
}

static Expr *pt_value(Ana *A, const PT *t) {
  return val(A, t->scale, prod(A, t->f, t->nf), t->loc);
}

/* Every factor's free indices lie within one of the masks. */
static int separable(const PT *t, uint64_t x, uint64_t y) {
  for (int i = 0; i < t->nf; i++) {
    uint64_t fr = t->f[i]->free;
    if ((fr & ~x) && (fr & ~y)) return 0;
  }
  return 1;
}

static RecTerm pt_term(Ana *A, const PT *t) {
  RecTerm r;
  memset(&r, 0, sizeof r);
  r.scale = t->scale;
  r.coef = prod(A, t->f, t->nf);
  r.read = t->read;
  r.summed = t->summed;
  for (int i = 0; i < t->read.nidx; i++)
    if (t->read.idx[i].kind == RI_VAR && t->read.idx[i].v >= 0 &&
        t->read.idx[i].v < MIXC_MAX_IVARS && (t->summed & BIT(t->read.idx[i].v)))
      r.contract |= 1u << i;
  return r;
}

/* ---- the delta rule's shape: x and y are one vector ---- */

static int expr_eq(const Expr *a, const Expr *b, int *map, int depth) {
  if (!a || !b) return a == b;
  if (depth > REC_MAX_DEPTH + 64) return 0;
  if (a->kind != b->kind || a->nargs != b->nargs) return 0;
  switch (a->kind) {
  case EX_NUM: return a->num == b->num;
  case EX_NAME:
  case EX_INDEX:
    if (a->ref != b->ref) return 0;
    if (a->ref == REF_INDEX)
      return a->sym >= 0 && a->sym < MIXC_MAX_IVARS && map[a->sym] == b->sym;
    if (a->ref == REF_NONE && (!a->name || !b->name || strcmp(a->name, b->name))) return 0;
    if (a->sym != b->sym || (a->ref != REF_CONST && a->bound != b->bound)) return 0;
    break;
  case EX_CALL:
    if (a->fn != b->fn) return 0;
    break;
  case EX_SUM: {
    if (a->bound < 0 || a->bound >= MIXC_MAX_IVARS) return 0;
    int saved = map[a->bound];
    map[a->bound] = b->bound;
    int r = expr_eq(a->args[0], b->args[0], map, depth + 1);
    map[a->bound] = saved;
    return r;
  }
  case EX_BIN:
    if (a->op != b->op) return 0;
    break;
  case EX_NEG: break;
  }
  for (int i = 0; i < a->nargs; i++)
    if (!expr_eq(a->args[i], b->args[i], map, depth + 1)) return 0;
  return 1;
}

/* The factors of t free in x, renamed x -> m, are the factors free in m (as multisets). */
static int householder(const PT *t, int x, int m) {
  int map[MIXC_MAX_IVARS];
  unsigned char used[MIXC_MAX_IVARS * 4];
  int nx = 0, ny = 0;
  for (int i = 0; i < MIXC_MAX_IVARS; i++) map[i] = i;
  map[x] = m;
  for (int i = 0; i < t->nf; i++) {
    nx += t->f[i]->free == BIT(x);
    ny += t->f[i]->free == BIT(m);
  }
  if (nx != ny || t->nf > (int)sizeof used) return 0;
  memset(used, 0, sizeof used);
  for (int i = 0; i < t->nf; i++) {
    if (t->f[i]->free != BIT(x)) continue;
    int hit = 0;
    for (int j = 0; j < t->nf && !hit; j++) {
      if (used[j] || t->f[j]->free != BIT(m)) continue;
      if (expr_eq(t->f[i], t->f[j], map, 0)) used[j] = hit = 1;
    }
    if (!hit) return 0;
  }
  return 1;
}

/* ---- classification of one update step ---- */

typedef enum TermKind {
  TK_SCALAR,  /* a S[i, j] */
  TK_LDIAG,   /* d[i] S[i, j] */
  TK_RDIAG,   /* e[j] S[i, j] */
  TK_BOTH,    /* d[i] e[j] S[i, j] */
  TK_EW,      /* E[i, j] S[i, j] */
  TK_LR1,     /* sum(m, x[i] y[m] S[m, j]) */
  TK_RR1,     /* sum(m, S[i, m] y[m] x[j]) */
  TK_LDENSE,  /* sum(m, C[i, m] S[m, j]) */
  TK_RDENSE,  /* sum(m, S[i, m] C[m, j]) */
  TK_GEN,     /* anything else */
  TK__COUNT
} TermKind;

typedef struct StepB {
  Ana *A;
  int slot, version, ndim;
  const char *why;
  int *coupled;
  int ncoupled;
} StepB;

static int is_var(RecIdx x, int v) { return x.kind == RI_VAR && x.v == v; }

/* An index variable summed by the term, other than the lhs ones, or -1. */
static int summed_var(RecIdx x, const PT *t, int nlhs) {
  if (x.kind != RI_VAR || x.v < nlhs || x.v >= MIXC_MAX_IVARS) return -1;
  return t->summed == BIT(x.v) ? x.v : -1;
}

static void add_coupled(StepB *b, int slot) {
  for (int i = 0; i < b->ncoupled; i++)
    if (b->coupled[i] == slot) return;
  if (b->ncoupled < b->A->nstates) b->coupled[b->ncoupled++] = slot;
}

static TermKind gen(StepB *b, const char *why) {
  if (!b->why) b->why = why;
  return TK_GEN;
}

static TermKind classify_term(StepB *b, const PT *t, int *m) {
  Ana *A = b->A;
  const char *name = A->states[b->slot].name;
  if (t->read.state != b->slot) {
    if (t->read.state >= 0) add_coupled(b, t->read.state);
    return gen(b, arena_printf(A->a, "reads state %s",
                               t->read.state >= 0 ? A->states[t->read.state].name : "?"));
  }
  if (t->read.version != b->version)
    return gen(b, arena_printf(A->a, "reads %s as it was before an earlier update", name));
  uint64_t cf = pt_free(t), R = BIT(0), C = BIT(1);
  const RecIdx *x = t->read.idx;
  if (b->ndim == 0) return cf ? gen(b, "coefficient varies") : TK_SCALAR;
  if (b->ndim == 1) {
    if (is_var(x[0], 0) && !t->summed)
      return !cf ? TK_SCALAR : cf == R ? TK_LDIAG : gen(b, "coefficient varies");
    int mv = summed_var(x[0], t, 1);
    if (mv < 0) return gen(b, arena_printf(A->a, "reads %s at a constant index", name));
    if (cf & ~(R | BIT(mv))) return gen(b, "coefficient varies");
    *m = mv;
    return separable(t, R, BIT(mv)) ? TK_LR1 : TK_LDENSE;
  }
  if (b->ndim != 2) return gen(b, "state of rank above 2");
  if (is_var(x[0], 0) && is_var(x[1], 1) && !t->summed) {
    if (!cf) return TK_SCALAR;
    if (cf == R) return TK_LDIAG;
    if (cf == C) return TK_RDIAG;
    if (cf & ~(R | C)) return gen(b, "coefficient varies");
    return separable(t, R, C) ? TK_BOTH : TK_EW;
  }
  int mv = summed_var(x[0], t, 2);
  if (mv >= 0 && is_var(x[1], 1)) {
    if (cf & ~(R | BIT(mv)))
      return gen(b, arena_printf(A->a, "a row combination of %s varies with the column", name));
    *m = mv;
    return separable(t, R, BIT(mv)) ? TK_LR1 : TK_LDENSE;
  }
  mv = summed_var(x[1], t, 2);
  if (mv >= 0 && is_var(x[0], 0)) {
    if (cf & ~(C | BIT(mv)))
      return gen(b, arena_printf(A->a, "a column combination of %s varies with the row", name));
    *m = mv;
    return separable(t, C, BIT(mv)) ? TK_RR1 : TK_RDENSE;
  }
  return gen(b, arena_printf(A->a, "reads %s transposed, at a constant index, or summed twice",
                             name));
}

/* The sum of the values of the terms of the given kinds (NULL if there are none). */
static Expr *sum_kinds(Ana *A, const PT *t, const int *kind, int n, unsigned kinds) {
  Expr *acc = NULL;
  for (int i = 0; i < n; i++) {
    if (!(kinds & (1u << kind[i]))) continue;
    if (!acc) {
      acc = pt_value(A, &t[i]);
      continue;
    }
    PT pos = t[i];
    pos.scale = fabs(t[i].scale);
    acc = mk_bin(A, t[i].scale < 0 ? '-' : '+', acc, pt_value(A, &pos));
  }
  return acc;
}

static RecRankOne rank_one(Ana *A, const PT *t, int x, int m) {
  RecRankOne r;
  memset(&r, 0, sizeof r);
  r.scale = t->scale;
  r.c = pt_part(A, t, 0);
  r.x = pt_part(A, t, BIT(x));
  r.y = pt_part(A, t, BIT(m));
  r.m = m;
  r.householder = householder(t, x, m);
  return r;
}

/* Pick the step's class from the kinds of its terms, and fill its canonical fields. */
static void classify_step(StepB *b, RecStep *st, const PT *t, const int *kind, const int *ms,
                          int n) {
  Ana *A = b->A;
  int cnt[TK__COUNT] = {0};
  for (int i = 0; i < n; i++) cnt[kind[i]]++;
  unsigned diagk = 1u << TK_SCALAR | 1u << TK_LDIAG, rdiagk = 1u << TK_SCALAR | 1u << TK_RDIAG;
  int lowrank = cnt[TK_LR1] ? TK_LR1 : cnt[TK_RR1] ? TK_RR1 : -1;
  st->side = RS_NONE;
  if (cnt[TK_GEN] || cnt[TK_LDENSE] || cnt[TK_RDENSE]) {
    st->cls = RC_GENERAL;
    if (!b->why) b->why = "multiplies the state by a dense matrix";
  } else if (cnt[TK_LR1] && cnt[TK_RR1]) {
    st->cls = RC_GENERAL;
    b->why = "low-rank terms on both sides";
  } else if (lowrank >= 0 && (cnt[TK_BOTH] || cnt[TK_EW] ||
                              cnt[lowrank == TK_LR1 ? TK_RDIAG : TK_LDIAG])) {
    st->cls = RC_GENERAL;
    b->why = "a low-rank term with an element-wise or other-side factor";
  } else if (lowrank >= 0) {
    int left = lowrank == TK_LR1;
    st->cls = RC_DPLR;
    st->side = left ? RS_LEFT : RS_RIGHT;
    Expr *dd = sum_kinds(A, t, kind, n, left ? diagk : rdiagk);
    if (!dd) dd = mk_num(A, 0, st->loc);
    if (left)
      st->dl = dd;
    else
      st->dr = dd;
    st->lr = arena_array(A->a, (size_t)cnt[lowrank], sizeof *st->lr);
    if (!st->lr) {
      A->stop = 1;
      return;
    }
    st->delta = dd && !dd->free && !(dd->kind == EX_NUM && dd->num == 0);
    for (int i = 0; i < n; i++) {
      if (kind[i] != lowrank) continue;
      st->lr[st->nlr] = rank_one(A, &t[i], left ? 0 : 1, ms[i]);
      st->delta &= st->lr[st->nlr].householder;
      st->nlr++;
    }
    st->rank = st->nlr;
  } else if (n == 1 && kind[0] == TK_SCALAR && t[0].nf == 0 && t[0].scale == 1) {
    st->cls = RC_IDENTITY;
  } else if (cnt[TK_EW] || (cnt[TK_LDIAG] && cnt[TK_RDIAG]) ||
             (cnt[TK_BOTH] && n > 1)) {
    st->cls = RC_ELEMENTWISE;
    st->ew = sum_kinds(A, t, kind, n, ~0u);
  } else if (cnt[TK_BOTH]) {
    st->cls = RC_DIAG;
    st->side = RS_BOTH;
    Expr *l = pt_part(A, &t[0], BIT(0)), *c = pt_part(A, &t[0], 0), *r = pt_part(A, &t[0], BIT(1));
    Expr *lc = c && l ? mk_bin(A, '*', c, l) : c ? c : l;
    st->dl = val(A, t[0].scale, lc, st->loc);
    st->dr = r ? r : mk_num(A, 1, st->loc);
  } else if (cnt[TK_LDIAG]) {
    st->cls = RC_DIAG;
    st->side = RS_LEFT;
    st->dl = sum_kinds(A, t, kind, n, diagk);
  } else if (cnt[TK_RDIAG]) {
    st->cls = RC_DIAG;
    st->side = RS_RIGHT;
    st->dr = sum_kinds(A, t, kind, n, rdiagk);
  } else {
    st->cls = RC_SCALAR; /* no term at all: the state is reset, a = 0 */
    st->a = n ? sum_kinds(A, t, kind, n, 1u << TK_SCALAR) : mk_num(A, 0, st->loc);
  }
}

/* ---- the input of a step: outer products and the rest ---- */

typedef struct InputB {
  RecOuter *outer;
  int nouter, capouter;
  RecTerm *add;
  int nadd, capadd;
  int count;
} InputB;

static int mixed(uint64_t fr, int ndim) {
  if (ndim < 2) return 0;
  return (fr & ~BIT(0)) && (fr & ~BIT(1));
}

static void input_term(StepB *b, InputB *in, PT *t, int depth);

/* Distribute over the first additive factor that mixes rows and columns. */
static int input_split(StepB *b, InputB *in, PT *t, int depth) {
  Ana *A = b->A;
  if (depth > 64 || in->count > REC_MAX_TERMS) return 0;
  for (int i = 0; i < t->nf; i++) {
    Expr *f = t->f[i];
    if (!mixed(f->free, b->ndim) || f->kind != EX_BIN || (f->op != '+' && f->op != '-'))
      continue;
    for (int side = 0; side < 2; side++) {
      PT p;
      memset(&p, 0, sizeof p);
      p.scale = side && f->op == '-' ? -t->scale : t->scale;
      p.read = t->read;
      p.loc = t->loc;
      for (int j = 0; j < t->nf; j++) {
        if (j == i)
          pt_flat(A, &p, f->args[side], 0);
        else
          pt_push(A, &p, t->f[j]);
      }
      if (A->stop) return 1;
      input_term(b, in, &p, depth + 1);
    }
    return 1;
  }
  return 0;
}

static void input_term(StepB *b, InputB *in, PT *t, int depth) {
  Ana *A = b->A;
  in->count++;
  int any_mixed = 0;
  for (int i = 0; i < t->nf; i++) any_mixed |= mixed(t->f[i]->free, b->ndim);
  if (any_mixed && input_split(b, in, t, depth)) return;
  if (any_mixed || b->ndim > 2) {
    RecTerm *add = grow(A->a, in->add, in->nadd, &in->capadd, sizeof *add);
    if (!add) {
      A->stop = 1;
      return;
    }
    in->add = add;
    in->add[in->nadd++] = pt_term(A, t);
    return;
  }
  RecOuter *o = grow(A->a, in->outer, in->nouter, &in->capouter, sizeof *o);
  if (!o) {
    A->stop = 1;
    return;
  }
  in->outer = o;
  RecOuter *r = &in->outer[in->nouter++];
  memset(r, 0, sizeof *r);
  r->scale = t->scale;
  r->c = pt_part(A, t, 0);
  if (b->ndim >= 1) r->u = pt_part(A, t, BIT(0));
  if (b->ndim >= 2) r->w = pt_part(A, t, BIT(1));
}

/* ---- lowering statements ---- */

static RecScope scope_done(Ana *A, const ScopeB *sc) {
  RecScope s;
  memset(&s, 0, sizeof s);
  s.nlhs = sc->nlhs;
  s.ivars = arena_array(A->a, (size_t)sc->n + 1, sizeof *s.ivars);
  if (!s.ivars) {
    A->stop = 1;
    return s;
  }
  memcpy(s.ivars, sc->v, (size_t)sc->n * sizeof *s.ivars);
  s.nivars = sc->n;
  return s;
}

static void add_event(Ana *A, RecEventKind kind, int x, int y) {
  RecEvent *ev = grow(A->a, A->ev, A->nev, &A->capev, sizeof *ev);
  if (!ev) {
    A->stop = 1;
    return;
  }
  A->ev = ev;
  A->ev[A->nev].kind = kind;
  A->ev[A->nev].a = x;
  A->ev[A->nev].b = y;
  A->nev++;
}

static const char *instance_name(Ana *A, const char *name) {
  if (!A->nloops) return name;
  char buf[256];
  size_t n = 0;
  for (int i = 0; i < A->nloops && n < sizeof buf - 16; i++)
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%d", i ? "," : "",
                          forval(A, A->loops[i]));
  const char *r = arena_printf(A->a, "%s@%s", name, buf);
  return r ? r : name;
}

static void lower_let(Ana *A, const Stmt *st, const ScopeB *sc, Expr *rhs) {
  if (st->sym < 0 || st->sym >= A->m->nsyms) return;
  LetVal *lv = &A->letv[st->sym];
  lv->defined = 1;
  lv->scope = scope_done(A, sc);
  if (rhs->has_state) {
    lv->prelude = -1;
    lv->e = rhs;
    return;
  }
  RecLet *lets = grow(A->a, A->lets, A->nlets, &A->caplets, sizeof *lets);
  if (!lets) {
    A->stop = 1;
    return;
  }
  A->lets = lets;
  RecLet *l = &A->lets[A->nlets];
  memset(l, 0, sizeof *l);
  l->name = instance_name(A, st->name.name);
  l->sym = st->sym;
  l->loc = st->loc;
  l->scope = lv->scope;
  l->rhs = rhs;
  lv->prelude = A->nlets++;
  lv->e = NULL;
}

static void lower_update(Ana *A, const Stmt *st, const ScopeB *sc, Expr *rhs) {
  int slot = state_slot(A, st->sym);
  if (slot < 0) return;
  RecState *rs = &A->states[slot];
  if (st->nlhs != rs->ndim) return; /* sema reports it */
  Lin L;
  LinErr err = {NULL, LE_NONE};
  if (lin(A, rhs, &L, &err, 0)) {
    report_lin(A, &err, st->sym, 0, st);
    A->version[slot]++;
    return;
  }
  RecStep step;
  memset(&step, 0, sizeof step);
  step.loc = st->loc;
  step.version = A->version[slot];
  step.scope = scope_done(A, sc);
  StepB b;
  memset(&b, 0, sizeof b);
  b.A = A;
  b.slot = slot;
  b.version = step.version;
  b.ndim = rs->ndim;
  b.coupled = arena_array(A->a, (size_t)A->nstates + 1, sizeof *b.coupled);
  PT *pts = arena_array(A->a, (size_t)L.n + 1, sizeof *pts);
  int *kind = arena_array(A->a, (size_t)L.n + 1, sizeof *kind);
  int *ms = arena_array(A->a, (size_t)L.n + 1, sizeof *ms);
  step.terms = arena_array(A->a, (size_t)L.n + 1, sizeof *step.terms);
  if (!b.coupled || !pts || !kind || !ms || !step.terms) {
    A->stop = 1;
    return;
  }
  InputB in;
  memset(&in, 0, sizeof in);
  int n = 0;
  for (int i = 0; i < L.n && !A->stop; i++) {
    PT t;
    pt_make(A, sc, &L.t[i], &t);
    if (!L.t[i].read) {
      input_term(&b, &in, &t, 0);
      continue;
    }
    pts[n] = t;
    ms[n] = -1;
    kind[n] = (int)classify_term(&b, &t, &ms[n]);
    step.terms[step.nterms++] = pt_term(A, &t);
    n++;
  }
  if (A->stop) return;
  classify_step(&b, &step, pts, kind, ms, n);
  step.outer = in.outer;
  step.nouter = in.nouter;
  step.add = in.add;
  step.nadd = in.nadd;
  step.coupled = b.coupled;
  step.ncoupled = b.ncoupled;
  step.why = step.cls == RC_GENERAL ? b.why : NULL;
  StepVec *sv = &A->steps[slot];
  RecStep *p = grow(A->a, sv->p, sv->n, &sv->cap, sizeof *p);
  if (!p) {
    A->stop = 1;
    return;
  }
  sv->p = p;
  sv->p[sv->n] = step;
  add_event(A, RE_STEP, slot, sv->n);
  sv->n++;
  A->version[slot]++;
}

/* ---- outputs ---- */

typedef struct OutB {
  Ana *A;
  const ScopeB *sc;
  Loc loc; /* the output statement */
  const Stmt *st;
  int bad; /* an error was reported for this output */
} OutB;

static RecOut *out_node(Ana *A, RecOutKind kind, const Expr *e, int nargs) {
  RecOut *o = arena_alloc(A->a, sizeof *o);
  if (o && nargs) o->args = arena_array(A->a, (size_t)nargs, sizeof *o->args);
  if (!o || (nargs && !o->args)) {
    A->stop = 1;
    return NULL;
  }
  o->kind = kind;
  o->loc = e->loc;
  o->nargs = nargs;
  o->free = e->free;
  return o;
}

static void out_bad(OutB *o, const Expr *at, int sym) {
  if (o->bad) return;
  o->bad = 1;
  LinErr err = {at, LE_CALL};
  report_lin(o->A, &err, sym, 1, o->st);
}

/* A readout node from the linear terms of e. `sumbound`: indices bound by enclosing sums
 * that are computed structurally; a readout that leaves one of them free must contract
 * some state index, else it asks for the whole state inside a non-linear expression. */
static RecOut *out_readout(OutB *o, Expr *e, const Lin *L, uint64_t sumbound,
                           const Expr *nl) {
  Ana *A = o->A;
  RecOut *r = out_node(A, RO_READOUT, e, 0);
  if (!r) return NULL;
  r->terms = arena_array(A->a, (size_t)L->n + 1, sizeof *r->terms);
  if (!r->terms) {
    A->stop = 1;
    return NULL;
  }
  for (int i = 0; i < L->n && !A->stop; i++) {
    PT t;
    pt_make(A, o->sc, &L->t[i], &t);
    if (!L->t[i].read) {
      PT pos = t;
      pos.scale = fabs(t.scale);
      Expr *v = pt_value(A, &pos);
      r->konst = !r->konst ? (t.scale < 0 ? mk_neg(A, v) : v)
                           : mk_bin(A, t.scale < 0 ? '-' : '+', r->konst, v);
      continue;
    }
    RecTerm term = pt_term(A, &t);
    if (!term.contract && t.read.nidx > 0 && (read_vars(&t.read) & sumbound))
      out_bad(o, nl ? nl : L->t[i].read, L->t[i].read->sym);
    r->terms[r->nterms++] = term;
  }
  return r;
}

static RecOut *out_lower(OutB *o, Expr *e, uint64_t sumbound, const Expr *nl, int depth) {
  Ana *A = o->A;
  if (A->stop || depth > REC_MAX_DEPTH + 64) {
    A->stop = 1;
    return NULL;
  }
  if (!e->has_state) {
    RecOut *r = out_node(A, RO_OPAQUE, e, 0);
    if (r) r->e = e;
    return r;
  }
  Lin L;
  LinErr err = {NULL, LE_NONE};
  if (!lin(A, e, &L, &err, 0)) return out_readout(o, e, &L, sumbound, nl);
  if (err.why == LE_MEM) return NULL;
  if (err.why == LE_TERMS) {
    if (!o->bad) report_lin(A, &err, -1, 1, o->st);
    o->bad = 1;
    return NULL;
  }
  RecOut *r = NULL;
  switch (e->kind) {
  case EX_BIN:
    r = out_node(A, RO_BIN, e, 2);
    if (!r) return NULL;
    r->op = e->op;
    if (e->op == '*' || e->op == '/') nl = e;
    break;
  case EX_NEG: r = out_node(A, RO_NEG, e, 1); break;
  case EX_CALL:
    r = out_node(A, RO_CALL, e, e->nargs);
    if (!r) return NULL;
    r->fn = e->fn;
    r->name = e->name;
    nl = e;
    break;
  case EX_SUM:
    r = out_node(A, RO_SUM, e, 1);
    if (!r) return NULL;
    r->bound = e->bound;
    sumbound |= BIT(e->bound);
    nl = err.at;
    break;
  default:
    out_bad(o, e, find_state(e, -1, 0));
    return NULL;
  }
  if (!r) return NULL;
  for (int i = 0; i < e->nargs; i++) {
    r->args[i] = out_lower(o, e->args[i], sumbound, nl, depth + 1);
    if (!r->args[i]) return NULL;
  }
  return r;
}

static void lower_output(Ana *A, const Stmt *st, const ScopeB *sc, Expr *rhs) {
  OutB o;
  memset(&o, 0, sizeof o);
  o.A = A;
  o.sc = sc;
  o.loc = st->loc;
  o.st = st;
  RecOut *root = out_lower(&o, rhs, 0, NULL, 0);
  if (!root || o.bad) return;
  RecOutput *outs = grow(A->a, A->outs, A->nouts, &A->capouts, sizeof *outs);
  if (!outs) {
    A->stop = 1;
    return;
  }
  A->outs = outs;
  RecOutput *out = &A->outs[A->nouts];
  memset(out, 0, sizeof *out);
  out->name = instance_name(A, st->name.name);
  out->sym = st->sym;
  out->loc = st->loc;
  out->scope = scope_done(A, sc);
  out->root = root;
  add_event(A, RE_OUTPUT, A->nouts, 0);
  A->nouts++;
}

static void lower_stmts(Ana *A, Stmt **stmts, int n);

static void lower_for(Ana *A, const Stmt *st) {
  const Mixer *m = A->m;
  int slot = st->sym;
  if (slot < 0 || slot >= m->nforvars || A->nloops >= MAX_LOOPS) return;
  int dim = m->forvars[slot].dim;
  int64_t count = dim >= 0 && dim < m->nsyms ? m->syms[dim].fixed : 0;
  if (count <= 0 || count > MIXC_MAX_FIXED_DIM) return; /* sema reports it */
  A->loops[A->nloops++] = slot;
  for (int64_t v = 0; v < count && !A->stop; v++) {
    A->forval[slot] = (int)v;
    lower_stmts(A, st->body, st->nbody);
  }
  A->nloops--;
}

static void lower_stmt(Ana *A, const Stmt *st) {
  if (st->kind == ST_FOR) {
    lower_for(A, st);
    return;
  }
  if (++A->unrolled > REC_MAX_UNROLLED) {
    diag_error(A->d, st->loc, "use a smaller fixed dim in `for`, or fewer statements in it",
               "mixer '%s' has more than %d statements once its `for` loops are unrolled",
               A->m->name.name, REC_MAX_UNROLLED);
    A->stop = 1;
    return;
  }
  if (!st->rhs || st->nivars > MIXC_MAX_IVARS || st->nlhs > st->nivars) return;
  ScopeB sc;
  memset(&sc, 0, sizeof sc);
  Rw w;
  memset(&w, 0, sizeof w);
  int failed = 0;
  w.A = A;
  w.sc = &sc;
  w.sv = st->ivars;
  w.nsrc = st->nivars;
  w.resolve = 1;
  w.failed = &failed;
  w.at = st->loc;
  for (int i = 0; i < st->nivars; i++) {
    sc.v[i].name = st->ivars[i].name ? st->ivars[i].name : "?";
    sc.v[i].loc = st->ivars[i].loc;
    sc.v[i].dim = st->ivars[i].dim;
    w.map[i].kind = MAP_VAR;
    w.map[i].v = i;
  }
  sc.n = st->nivars;
  sc.nlhs = st->nlhs;
  Expr *rhs = rw_expr(&w, st->rhs, 0);
  if (!rhs || failed || A->stop) return;
  switch (st->kind) {
  case ST_LET: lower_let(A, st, &sc, rhs); break;
  case ST_UPDATE: lower_update(A, st, &sc, rhs); break;
  case ST_OUTPUT: lower_output(A, st, &sc, rhs); break;
  case ST_FOR: break;
  }
}

static void lower_stmts(Ana *A, Stmt **stmts, int n) {
  for (int i = 0; i < n && !A->stop; i++)
    if (stmts[i]) lower_stmt(A, stmts[i]);
}

/* ---- the token class of a state: the join of its steps ---- */

typedef struct Join {
  RecClass cls;
  RecSide side;
  int rank;
  const char *why;
} Join;

static void join(Join *j, const RecStep *s) {
  if (j->cls == RC_GENERAL) return;
  if (s->cls == RC_GENERAL) {
    j->cls = RC_GENERAL;
    j->side = RS_NONE;
    j->why = s->why;
    return;
  }
  if (s->cls <= RC_SCALAR) { /* folds into any class */
    if (j->cls < s->cls) j->cls = s->cls;
    return;
  }
  if (j->cls <= RC_SCALAR) {
    j->cls = s->cls;
    j->side = s->side;
    j->rank = s->rank;
    return;
  }
  if (j->cls == RC_ELEMENTWISE || s->cls == RC_ELEMENTWISE) {
    RecClass other = j->cls == RC_ELEMENTWISE ? s->cls : j->cls;
    if (other == RC_DIAG || other == RC_ELEMENTWISE) {
      j->cls = RC_ELEMENTWISE;
      j->side = RS_NONE;
    } else {
      j->cls = RC_GENERAL;
      j->side = RS_NONE;
      j->why = "an element-wise step with a low-rank step";
    }
    return;
  }
  if (j->cls == RC_DIAG && s->cls == RC_DIAG) {
    if (j->side != s->side) j->side = RS_BOTH;
    return;
  }
  if (j->cls == RC_DPLR && s->cls == RC_DPLR) {
    if (j->side == s->side) {
      j->rank += s->rank;
    } else {
      j->cls = RC_GENERAL;
      j->side = RS_NONE;
      j->why = "low-rank steps on both sides";
    }
    return;
  }
  /* one DPLR, one DIAG: the diagonal folds into D on the same side only */
  RecSide dplr = j->cls == RC_DPLR ? j->side : s->side;
  RecSide diag = j->cls == RC_DIAG ? j->side : s->side;
  int rank = j->cls == RC_DPLR ? j->rank : s->rank;
  if (diag == dplr) {
    j->cls = RC_DPLR;
    j->side = dplr;
    j->rank = rank;
  } else {
    j->cls = RC_GENERAL;
    j->side = RS_NONE;
    j->why = "a low-rank step with a diagonal step on the other side";
  }
}

static void finish_state(Ana *A, int slot) {
  RecState *rs = &A->states[slot];
  rs->steps = A->steps[slot].p;
  rs->nsteps = A->steps[slot].n;
  Join j = {RC_IDENTITY, RS_NONE, 0, NULL};
  int delta = 1, any_dplr = 0, ncoupled = 0;
  for (int i = 0; i < rs->nsteps; i++) {
    const RecStep *s = &rs->steps[i];
    join(&j, s);
    if (s->cls == RC_DPLR) {
      any_dplr = 1;
      delta &= s->delta;
    } else if (s->cls > RC_SCALAR) {
      delta = 0;
    }
    ncoupled += s->ncoupled;
  }
  rs->cls = j.cls;
  rs->side = j.side;
  rs->rank = j.cls == RC_DPLR ? j.rank : 0;
  rs->delta = j.cls == RC_DPLR && any_dplr && delta;
  rs->why = j.cls == RC_GENERAL ? j.why : NULL;
  if (!ncoupled) return;
  rs->coupled = arena_array(A->a, (size_t)ncoupled, sizeof *rs->coupled);
  if (!rs->coupled) {
    A->stop = 1;
    return;
  }
  for (int i = 0; i < rs->nsteps; i++)
    for (int k = 0; k < rs->steps[i].ncoupled; k++) {
      int c = rs->steps[i].coupled[k], seen = 0;
      for (int q = 0; q < rs->ncoupled; q++) seen |= rs->coupled[q] == c;
      if (!seen) rs->coupled[rs->ncoupled++] = c;
    }
}

/* LANGUAGE.md section 7: the non-causal scan needs additive recurrences. */
static void check_noncausal(Ana *A, RecMixer *rm) {
  const Mixer *m = A->m;
  for (int d = 0; d < m->ndirs; d++) {
    if (m->dirs[d] != DIR_ALL) continue;
    rm->noncausal = 1;
    Loc at = m->dir_locs ? m->dir_locs[d] : m->loc;
    for (int s = 0; s < rm->nstates; s++) {
      const RecState *rs = &rm->states[s];
      if (rs->cls == RC_IDENTITY) continue;
      diag_error(A->d, at,
                 "the non-causal scan needs additive recurrences (identity transitions); use "
                 "directions (row, -row, ...) for decaying states",
                 "directions (all) needs identity transitions, but state %s is %s", rs->name,
                 rec_kind_name(rs->cls, rs->side));
    }
  }
}

/* ---- driver ---- */

static int setup(Ana *A, RecMixer *rm) {
  const Mixer *m = A->m;
  size_t ns = (size_t)m->nsyms + 1;
  A->slot = arena_array(A->a, ns, sizeof *A->slot);
  A->letv = arena_array(A->a, ns, sizeof *A->letv);
  A->forval = arena_array(A->a, (size_t)m->nforvars + 1, sizeof *A->forval);
  A->nstates = mixer_count(m, SYM_STATE);
  A->states = arena_array(A->a, (size_t)A->nstates + 1, sizeof *A->states);
  A->steps = arena_array(A->a, (size_t)A->nstates + 1, sizeof *A->steps);
  A->version = arena_array(A->a, (size_t)A->nstates + 1, sizeof *A->version);
  if (!A->slot || !A->letv || !A->forval || !A->states || !A->steps || !A->version) return 1;
  int k = 0;
  for (int i = 0; i < m->nsyms; i++) {
    A->slot[i] = -1;
    if (m->syms[i].kind != SYM_STATE || k >= A->nstates) continue;
    RecState *rs = &A->states[k];
    rs->name = m->syms[i].name;
    rs->sym = i;
    rs->ndim = m->syms[i].rank;
    for (int d = 0; d < MIXC_MAX_RANK; d++) rs->shape[d] = m->syms[i].shape[d];
    A->slot[i] = k++;
  }
  rm->mixer = m;
  rm->name = m->name.name;
  rm->states = A->states;
  rm->nstates = A->nstates;
  return 0;
}

static RecMixer *analyze_mixer(Arena *a, Diags *d, const Mixer *m) {
  Ana A;
  memset(&A, 0, sizeof A);
  A.a = a;
  A.d = d;
  A.m = m;
  A.diags0 = diag_count(d);
  RecMixer *rm = arena_alloc(a, sizeof *rm);
  if (!rm || setup(&A, rm)) return NULL;
  lower_stmts(&A, m->stmts, m->nstmts);
  for (int s = 0; s < A.nstates && !A.stop; s++) finish_state(&A, s);
  if (A.stop) {
    if (diag_count(d) == A.diags0 && !a->failed)
      diag_error(d, m->name.loc, "report this as a bug in mixc",
                 "internal error in the recurrence analysis of mixer '%s'", m->name.name);
    return NULL;
  }
  rm->lets = A.lets;
  rm->nlets = A.nlets;
  rm->outputs = A.outs;
  rm->noutputs = A.nouts;
  rm->events = A.ev;
  rm->nevents = A.nev;
  check_noncausal(&A, rm);
  return diag_count(d) == A.diags0 ? rm : NULL;
}

int analyze_program(Arena *a, Diags *d, Program *p, RecProgram **out) {
  int before = diag_count(d);
  *out = NULL;
  if (!p) return 0;
  RecProgram *r = arena_alloc(a, sizeof *r);
  if (!r) return 1;
  r->mixers = arena_array(a, (size_t)p->nmixers + 1, sizeof *r->mixers);
  if (!r->mixers) return 1;
  for (int i = 0; i < p->nmixers; i++) {
    const Mixer *m = p->mixers[i];
    if (!m || !m->checked) continue;
    RecMixer *rm = analyze_mixer(a, d, m);
    if (rm) r->mixers[r->nmixers++] = rm;
  }
  int errors = diag_count(d) - before;
  if (!errors) *out = r;
  return errors;
}

/* ---- queries ---- */

const RecMixer *rec_find_mixer(const RecProgram *r, const char *name) {
  if (!r || !name) return NULL;
  for (int i = 0; i < r->nmixers; i++)
    if (!strcmp(r->mixers[i]->name, name)) return r->mixers[i];
  return NULL;
}

int rec_state_of_sym(const RecMixer *m, int sym) {
  for (int i = 0; m && i < m->nstates; i++)
    if (m->states[i].sym == sym) return i;
  return -1;
}
