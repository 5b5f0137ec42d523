/* The fp64 reference interpreter (see reference.h).
 *
 * It walks the typed tree directly. A call has three phases:
 *   1. check the binding (every array it needs, dims, cu_seqlens, sizes without overflow);
 *   2. plan: walk every statement once, check every field of the typed tree the evaluator
 *      relies on (so a sema bug becomes an error message, never a wild read), and allocate
 *      the values of states, lets and outputs and one table per `sum`;
 *   3. run: for every sequence, head (and scan direction), token by token, execute the
 *      statements in textual order.
 *
 * The one optimisation: before a statement's element loop, every `sum` node of its right
 * side is evaluated once for all values of its free index variables, innermost first, into
 * a table, so `S[i, j] = S[i, j] + k[i] * (v[j] - sum(m, k[m] * S[m, j]))` costs K*V per
 * token, not K*V*K. Element evaluation then reads the table. Everything else is the plain
 * recursive evaluation of the language's definition. */
#include "reference.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../compiler/arena.h"

/* Largest element count of any array we index, so that byte offsets fit in int64. */
#define REF_MAX_ELEMS (INT64_MAX / 16)

/* Which statements one pass over the tokens executes (DIR_ALL needs two passes). */
typedef enum Mode { MODE_ALL, MODE_UPDATES, MODE_OUTPUTS } Mode;

/* One `sum` node, tabulated over its free index variables (C order, vars ascending). */
typedef struct SumPlan {
  const Expr *e;
  int bound;
  int nv;
  int vars[MIXC_MAX_IVARS];
  int64_t size[MIXC_MAX_IVARS];
  int64_t stride[MIXC_MAX_IVARS];
  int64_t n;
  double *table;
} SumPlan;

typedef struct StmtPlan StmtPlan;
struct StmtPlan {
  const Stmt *st;
  int64_t isize[MIXC_MAX_IVARS]; /* size of every statement index variable */
  int64_t nelem;                 /* elements of the left-hand side */
  SumPlan *sums;                 /* post-order: inner sums first */
  int nsums;
  StmtPlan *body; /* ST_FOR */
  int nbody;
  int64_t trips; /* ST_FOR */
};

typedef struct Run {
  const Mixer *m;
  const RefBinding *b;
  Arena arena;
  char *err;
  size_t errlen;
  int nsyms;
  int64_t *dimsz;                   /* per symbol: a dim's size (0 otherwise) */
  int64_t *feat;                    /* per symbol: elements per token/head (product of dims) */
  int64_t (*stride)[MIXC_MAX_RANK]; /* per symbol: C-order strides of its dims */
  double **val;                     /* per symbol: state/let/output values, param defaults */
  const double **cur;               /* per symbol: where reads of it go now */
  double *tmp;                      /* an update's new state, before it is copied over */
  int64_t *forval;                  /* per for-variable slot: its current value */
  unsigned char *active;            /* per for-variable slot: inside its loop (planning) */
  int64_t idx[MIXC_MAX_IVARS];      /* current values of the statement's index variables */
  const StmtPlan *sp;               /* the statement being evaluated (for its sum tables) */
  StmtPlan *plans;
  int nplans;
  int64_t N;    /* number of sequences: B, or nseq */
  int ndir;     /* scan directions (1 for causal mixers) */
  int grid;     /* an `over (Y, X)` mixer */
} Run;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int fail(Run *r, const char *fmt, ...) {
  if (r->err && r->errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, r->errlen, fmt, ap);
    va_end(ap);
  }
  return 1;
}

static int mul_ok(int64_t a, int64_t b, int64_t *out) {
  if (a < 0 || b < 0) return 0;
  if (a && b > REF_MAX_ELEMS / a) return 0;
  *out = a * b;
  return 1;
}

static long long ll(int64_t v) { return (long long)v; }

static int is_sym(const Mixer *m, int s, SymKind k) {
  return s >= 0 && s < m->nsyms && m->syms[s].kind == k;
}

static int ndir_of(const Mixer *m) { return m->ngrid && m->ndirs > 0 ? m->ndirs : 1; }

/* ---- sizes (shared by mixc_ref_numel and the run) ---- */

/* The size of dim symbol s under b, or -1 when it is not bound. */
static int64_t dim_size(const Mixer *m, const RefBinding *b, int s) {
  if (b->dims) return b->dims[s];
  return m->syms[s].fixed > 0 ? m->syms[s].fixed : -1;
}

/* Elements per token (inputs, outputs, lets) or per head (params, states) of symbol s;
 * -1 when a dim is unbound or not positive, or on overflow. */
static int64_t feature_numel(const Mixer *m, const RefBinding *b, int s) {
  const Sym *y = &m->syms[s];
  if (y->rank < 0 || y->rank > MIXC_MAX_RANK) return -1;
  int64_t n = 1;
  for (int p = 0; p < y->rank; p++) {
    if (!is_sym(m, y->shape[p], SYM_DIM)) return -1;
    int64_t d = dim_size(m, b, y->shape[p]);
    if (d <= 0 || !mul_ok(n, d, &n)) return -1;
  }
  return n;
}

int64_t mixc_ref_numel(const Mixer *m, const RefBinding *b, int s) {
  if (!m || !b || s < 0 || s >= m->nsyms) return -1;
  const Sym *y = &m->syms[s];
  if (y->kind == SYM_DIM || y->kind == SYM_LET) return 0;
  int64_t n = feature_numel(m, b, s);
  if (n < 0 || b->B < 0 || b->T < 0 || b->H < 0) return -1;
  int64_t N = b->cu_seqlens ? b->nseq : b->B;
  switch (y->kind) {
  case SYM_INPUT:
    if (y->per_direction && !mul_ok(n, ndir_of(m), &n)) return -1;
    /* fallthrough */
  case SYM_OUTPUT:
    if (!mul_ok(n, b->B, &n) || !mul_ok(n, b->T, &n)) return -1;
    break;
  case SYM_STATE:
    if (!mul_ok(n, N, &n)) return -1;
    break;
  default:
    break;
  }
  return mul_ok(n, b->H, &n) ? n : -1;
}

/* ---- checking the binding ---- */

static int check_dims(Run *r) {
  const Mixer *m = r->m;
  for (int s = 0; s < m->nsyms; s++) {
    const Sym *y = &m->syms[s];
    if (y->kind != SYM_DIM) continue;
    int64_t d = dim_size(m, r->b, s);
    if (d < 0 && !r->b->dims) return fail(r, "dim '%s' is not bound (dims is NULL)", y->name);
    if (d <= 0) return fail(r, "dim '%s' = %lld must be positive", y->name, ll(d));
    if (d > REF_MAX_ELEMS) return fail(r, "dim '%s' = %lld is too large", y->name, ll(d));
    if (y->fixed > 0 && d != y->fixed)
      return fail(r, "dim '%s' = %lld disagrees with its fixed size %lld", y->name, ll(d),
                  ll(y->fixed));
    r->dimsz[s] = d;
  }
  return 0;
}

static int check_grid(Run *r) {
  const RefBinding *b = r->b;
  const Mixer *m = r->m;
  if (m->ngrid != 2)
    return fail(r, "mixer '%s': grids of %d axes are not supported", m->name.name, m->ngrid);
  if (b->Y < 1 || b->X < 1)
    return fail(r, "grid mixer '%s' needs Y, X >= 1 (got Y = %lld, X = %lld)", m->name.name,
                ll(b->Y), ll(b->X));
  int64_t t;
  if (!mul_ok(b->Y, b->X, &t) || t != b->T)
    return fail(r, "grid mixer '%s' needs T = Y * X (got T = %lld, Y = %lld, X = %lld)",
                m->name.name, ll(b->T), ll(b->Y), ll(b->X));
  if (b->cu_seqlens) return fail(r, "grid mixer '%s' takes no cu_seqlens", m->name.name);
  for (int s = 0; s < m->nsyms; s++) {
    if (m->syms[s].kind != SYM_STATE) continue;
    if (b->in && b->in[s])
      return fail(r, "grid mixer '%s' takes no initial state (got one for '%s')", m->name.name,
                  m->syms[s].name);
    if (b->out && b->out[s])
      return fail(r, "grid mixer '%s' gives no final state (asked for '%s')", m->name.name,
                  m->syms[s].name);
  }
  if (m->ndirs < 0 || (m->ndirs && !m->dirs))
    return fail(r, "internal: mixer '%s' has a bad direction list", m->name.name);
  for (int d = 0; d < m->ndirs; d++)
    if (m->dirs[d] < DIR_ROW || m->dirs[d] > DIR_ALL)
      return fail(r, "internal: mixer '%s' has an unknown direction", m->name.name);
  return 0;
}

static int check_cu_seqlens(Run *r) {
  const RefBinding *b = r->b;
  const int64_t *cu = b->cu_seqlens;
  if (b->B != 1) return fail(r, "cu_seqlens needs B = 1 (got B = %lld)", ll(b->B));
  if (b->nseq < 1) return fail(r, "cu_seqlens needs nseq >= 1 (got %lld)", ll(b->nseq));
  if (cu[0] != 0) return fail(r, "cu_seqlens[0] = %lld: the first offset must be 0", ll(cu[0]));
  for (int64_t n = 1; n <= b->nseq; n++)
    if (cu[n] < cu[n - 1])
      return fail(r, "cu_seqlens[%lld] = %lld < cu_seqlens[%lld] = %lld: offsets must not decrease",
                  ll(n), ll(cu[n]), ll(n - 1), ll(cu[n - 1]));
  if (cu[b->nseq] != b->T)
    return fail(r, "cu_seqlens[%lld] = %lld: the last offset must equal T = %lld", ll(b->nseq),
                ll(cu[b->nseq]), ll(b->T));
  return 0;
}

/* Every array the mixer reads or writes is there, and every size fits. */
static int check_arrays(Run *r) {
  const Mixer *m = r->m;
  const RefBinding *b = r->b;
  for (int s = 0; s < m->nsyms; s++) {
    const Sym *y = &m->syms[s];
    if (y->kind == SYM_DIM) continue;
    if (y->rank < 0 || y->rank > MIXC_MAX_RANK)
      return fail(r, "internal: %s '%s' has a bad rank", sym_kind_name(y->kind), y->name);
    for (int p = 0; p < y->rank; p++)
      if (!is_sym(m, y->shape[p], SYM_DIM))
        return fail(r, "internal: %s '%s' has a bad shape", sym_kind_name(y->kind), y->name);
    r->feat[s] = feature_numel(m, b, s);
    if (r->feat[s] < 0) /* the dims are valid by now */
      return fail(r, "%s '%s': array size overflows", sym_kind_name(y->kind), y->name);
    int64_t st = 1;
    for (int p = y->rank - 1; p >= 0; p--) {
      r->stride[s][p] = st;
      st *= r->dimsz[y->shape[p]];
    }
    if (y->kind == SYM_LET) continue;
    int64_t n = mixc_ref_numel(m, b, s);
    if (n < 0)
      return fail(r, "%s '%s': array size overflows", sym_kind_name(y->kind), y->name);
    const double *in = b->in ? b->in[s] : NULL;
    const double *out = b->out ? b->out[s] : NULL;
    if (y->kind == SYM_INPUT && !in && n > 0) return fail(r, "input '%s' is missing", y->name);
    if (y->kind == SYM_OUTPUT && !out && n > 0) return fail(r, "output '%s' is missing", y->name);
    if (y->kind == SYM_PARAM && !in && !y->init)
      return fail(r, "param '%s' is missing (it has no default)", y->name);
  }
  return 0;
}

static int check_binding(Run *r) {
  const RefBinding *b = r->b;
  const Mixer *m = r->m;
  if (!m->checked) return fail(r, "mixer '%s' did not pass the checks", m->name.name);
  if (b->B < 1 || b->H < 1 || b->T < 0)
    return fail(r, "need B >= 1, H >= 1, T >= 0 (got B = %lld, T = %lld, H = %lld)", ll(b->B),
                ll(b->T), ll(b->H));
  if (m->nforvars < 0 || m->nsyms < 0 || (m->nsyms && !m->syms))
    return fail(r, "internal: mixer '%s' has a bad symbol table", m->name.name);
  if (check_dims(r)) return 1;
  if (r->grid && check_grid(r)) return 1;
  if (m->ngrid < 0) return fail(r, "internal: bad grid");
  if (b->cu_seqlens && check_cu_seqlens(r)) return 1;
  r->N = b->cu_seqlens ? b->nseq : b->B;
  return check_arrays(r);
}

/* ---- planning: check the typed tree, size the sum tables ---- */

static int builtin_nargs(int fn) { return fn == FN_MIN || fn == FN_MAX ? 2 : 1; }

static uint64_t bit(int v) { return (uint64_t)1 << v; }

static uint64_t low_bits(int n) { return n >= 64 ? ~(uint64_t)0 : bit(n) - 1; }

static int count_sums(const Expr *e) {
  int n = e->kind == EX_SUM;
  for (int i = 0; i < e->nargs; i++) n += count_sums(e->args[i]);
  return n;
}

/* One index position p of a tensor read e (symbol y). */
static int plan_position(Run *r, const StmtPlan *sp, const Expr *e, int p, uint64_t bound,
                         uint64_t *fv) {
  const Expr *a = e->args[p];
  const Sym *y = &r->m->syms[e->sym];
  int64_t dsz = r->dimsz[y->shape[p]];
  const Stmt *st = sp->st;
  switch (a->ref) {
  case REF_INDEX:
    if (a->sym < 0 || a->sym >= st->nivars || !(bound & bit(a->sym)))
      return fail(r, "internal: index %d of '%s' names no bound index variable", p, y->name);
    if (sp->isize[a->sym] != dsz)
      return fail(r, "internal: index '%s' (size %lld) indexes a dim of size %lld in '%s'",
                  st->ivars[a->sym].name, ll(sp->isize[a->sym]), ll(dsz), y->name);
    *fv |= bit(a->sym);
    return 0;
  case REF_FORVAR:
    if (a->sym < 0 || a->sym >= r->m->nforvars || !r->active[a->sym])
      return fail(r, "internal: index %d of '%s' names no enclosing for variable", p, y->name);
    if (r->dimsz[r->m->forvars[a->sym].dim] > dsz)
      return fail(r, "for variable '%s' runs past dim %d of '%s' (size %lld)",
                  r->m->forvars[a->sym].name, p, y->name, ll(dsz));
    return 0;
  case REF_CONST:
    if (a->sym < 0 || a->sym >= dsz)
      return fail(r, "index %d of '%s' is out of range: dim '%s' = %lld", a->sym, y->name,
                  r->m->syms[y->shape[p]].name, ll(dsz));
    return 0;
  default:
    return fail(r, "internal: index %d of '%s' is not resolved", p, y->name);
  }
}

static int plan_read(Run *r, StmtPlan *sp, const Expr *e, uint64_t bound, uint64_t *fv) {
  const Mixer *m = r->m;
  if (e->ref == REF_DIM) {
    if (!is_sym(m, e->sym, SYM_DIM) || e->nargs)
      return fail(r, "internal: '%s' is not a dim", e->name ? e->name : "?");
    return 0;
  }
  static const SymKind kinds[] = {[REF_INPUT] = SYM_INPUT, [REF_PARAM] = SYM_PARAM,
                                  [REF_STATE] = SYM_STATE, [REF_LET] = SYM_LET};
  if (e->ref < REF_INPUT || e->ref > REF_LET || !is_sym(m, e->sym, kinds[e->ref]))
    return fail(r, "internal: '%s' is not resolved", e->name ? e->name : "?");
  if (!sp) return fail(r, "internal: '%s' read outside a statement", m->syms[e->sym].name);
  if (e->nargs != m->syms[e->sym].rank)
    return fail(r, "internal: '%s' read with %d indices, has rank %d", m->syms[e->sym].name,
                e->nargs, m->syms[e->sym].rank);
  for (int p = 0; p < e->nargs; p++)
    if (plan_position(r, sp, e, p, bound, fv)) return 1;
  return 0;
}

/* Check expression e of statement sp (NULL: a param default), compute its free index
 * variables, and append its sums to sp->sums in post-order. bound: the variables that
 * have a value here (the left-hand side's and those of enclosing sums). */
static int plan_expr(Run *r, StmtPlan *sp, const Expr *e, uint64_t bound, uint64_t *fv) {
  *fv = 0;
  if (!e) return fail(r, "internal: missing expression");
  if (e->nargs < 0 || (e->nargs && !e->args)) return fail(r, "internal: bad expression");
  uint64_t f;
  switch (e->kind) {
  case EX_NUM:
    return 0;
  case EX_NAME:
  case EX_INDEX:
    return plan_read(r, sp, e, bound, fv);
  case EX_CALL:
    if (e->fn < 0 || e->fn >= FN__COUNT || e->nargs != builtin_nargs(e->fn))
      return fail(r, "internal: bad call of '%s'", e->name ? e->name : "?");
    break;
  case EX_SUM: {
    if (!sp || e->nargs != 1 || e->bound < 0 || e->bound >= sp->st->nivars ||
        (bound & bit(e->bound)))
      return fail(r, "internal: bad sum");
    if (plan_expr(r, sp, e->args[0], bound | bit(e->bound), &f)) return 1;
    *fv = f & ~bit(e->bound);
    SumPlan *s = &sp->sums[sp->nsums++];
    s->e = e;
    s->bound = e->bound;
    s->n = 1;
    for (int v = 0; v < sp->st->nivars; v++)
      if (*fv & bit(v)) {
        s->vars[s->nv] = v;
        s->size[s->nv++] = sp->isize[v];
      }
    for (int k = s->nv - 1; k >= 0; k--) {
      s->stride[k] = s->n;
      if (!mul_ok(s->n, s->size[k], &s->n)) return fail(r, "a sum's table is too large");
    }
    s->table = arena_array(&r->arena, (size_t)s->n, sizeof(double));
    return s->table ? 0 : fail(r, "out of memory");
  }
  case EX_BIN:
    if (e->nargs != 2 || !strchr("+-*/", e->op) || !e->op)
      return fail(r, "internal: bad binary operator");
    break;
  case EX_NEG:
    if (e->nargs != 1) return fail(r, "internal: bad negation");
    break;
  default:
    return fail(r, "internal: unknown expression kind %d", (int)e->kind);
  }
  for (int i = 0; i < e->nargs; i++) {
    if (plan_expr(r, sp, e->args[i], bound, &f)) return 1;
    *fv |= f;
  }
  return 0;
}

static int plan_stmts(Run *r, Stmt *const *stmts, int n, StmtPlan *out);

static int plan_for(Run *r, StmtPlan *sp) {
  const Stmt *st = sp->st;
  const Mixer *m = r->m;
  if (st->sym < 0 || st->sym >= m->nforvars || r->active[st->sym] ||
      !is_sym(m, m->forvars[st->sym].dim, SYM_DIM) || st->nbody < 0 || (st->nbody && !st->body))
    return fail(r, "internal: bad for loop");
  sp->trips = r->dimsz[m->forvars[st->sym].dim];
  sp->nbody = st->nbody;
  sp->body = arena_array(&r->arena, (size_t)st->nbody + 1, sizeof *sp->body);
  if (!sp->body) return fail(r, "out of memory");
  r->active[st->sym] = 1;
  int rc = plan_stmts(r, st->body, st->nbody, sp->body);
  r->active[st->sym] = 0;
  return rc;
}

/* A let, update or output: its target, index variables, right side and sum tables. */
static int plan_assign(Run *r, StmtPlan *sp) {
  const Stmt *st = sp->st;
  const Mixer *m = r->m;
  static const SymKind target[] = {[ST_LET] = SYM_LET, [ST_UPDATE] = SYM_STATE,
                                   [ST_OUTPUT] = SYM_OUTPUT};
  if (!is_sym(m, st->sym, target[st->kind]))
    return fail(r, "internal: statement target '%s' is not resolved", st->name.name);
  const Sym *y = &m->syms[st->sym];
  if (st->nivars < st->nlhs || st->nivars > MIXC_MAX_IVARS || st->nlhs != y->rank ||
      (st->nivars && !st->ivars))
    return fail(r, "internal: bad index variables in the statement for '%s'", y->name);
  for (int v = 0; v < st->nivars; v++) {
    if (!is_sym(m, st->ivars[v].dim, SYM_DIM))
      return fail(r, "internal: index '%s' has no dim", st->ivars[v].name);
    sp->isize[v] = r->dimsz[st->ivars[v].dim];
  }
  for (int p = 0; p < st->nlhs; p++)
    if (sp->isize[p] != r->dimsz[y->shape[p]])
      return fail(r, "internal: index '%s' of '%s' has the wrong size", st->ivars[p].name,
                  y->name);
  sp->nelem = r->feat[st->sym];
  sp->sums = arena_array(&r->arena, (size_t)count_sums(st->rhs) + 1, sizeof *sp->sums);
  if (!sp->sums) return fail(r, "out of memory");
  uint64_t lhs = low_bits(st->nlhs), fv;
  if (plan_expr(r, sp, st->rhs, lhs, &fv)) return 1;
  if (fv & ~lhs) return fail(r, "internal: the right side of '%s' has a free index", y->name);
  return 0;
}

static int plan_stmts(Run *r, Stmt *const *stmts, int n, StmtPlan *out) {
  for (int i = 0; i < n; i++) {
    const Stmt *st = stmts[i];
    out[i].st = st;
    if (!st) return fail(r, "internal: missing statement");
    int rc = st->kind == ST_FOR ? plan_for(r, &out[i])
             : st->kind == ST_LET || st->kind == ST_UPDATE || st->kind == ST_OUTPUT
                 ? plan_assign(r, &out[i])
                 : fail(r, "internal: unknown statement kind %d", (int)st->kind);
    if (rc) return 1;
  }
  return 0;
}

/* ---- evaluation ---- */

static double sigmoid(double x) {
  if (x >= 0) return 1 / (1 + exp(-x));
  double z = exp(x);
  return z / (1 + z);
}

/* max(x, 0) + log1p(exp(-|x|)), written so that NaN stays NaN. */
static double softplus(double x) { return (x > 0 ? x : 0) + log1p(exp(-fabs(x))); }

double mixc_builtin(int fn, double x, double y) {
  switch (fn) {
  case FN_EXP: return exp(x);
  case FN_LOG: return log(x);
  case FN_SQRT: return sqrt(x);
  case FN_RSQRT: return 1 / sqrt(x);
  case FN_ABS: return fabs(x);
  case FN_TANH: return tanh(x);
  case FN_SIGMOID: return sigmoid(x);
  case FN_LOGSIGMOID: return -softplus(-x);
  case FN_SOFTPLUS: return softplus(x);
  case FN_SILU: return x * sigmoid(x);
  case FN_RELU: return x < 0 ? 0 : x;
  case FN_ELU: return x > 0 ? x : expm1(x);
  case FN_MIN: return isnan(x) || isnan(y) ? NAN : x < y ? x : y;
  case FN_MAX: return isnan(x) || isnan(y) ? NAN : x > y ? x : y;
  default: return NAN;
  }
}

static int64_t position(const Run *r, const Expr *a) {
  switch (a->ref) {
  case REF_INDEX: return r->idx[a->sym];
  case REF_FORVAR: return r->forval[a->sym];
  default: return a->sym; /* REF_CONST */
  }
}

static double eval(Run *r, const Expr *e);

static double read_value(Run *r, const Expr *e) {
  if (e->ref == REF_DIM) return (double)r->dimsz[e->sym];
  int64_t off = 0;
  for (int p = 0; p < e->nargs; p++) off += position(r, e->args[p]) * r->stride[e->sym][p];
  return r->cur[e->sym][off];
}

static const SumPlan *find_sum(const Run *r, const Expr *e) {
  for (int i = 0; i < r->sp->nsums; i++)
    if (r->sp->sums[i].e == e) return &r->sp->sums[i];
  return NULL; /* not reached: planning recorded every sum of the statement */
}

static double sum_value(Run *r, const Expr *e) {
  const SumPlan *s = find_sum(r, e);
  int64_t off = 0;
  for (int k = 0; k < s->nv; k++) off += r->idx[s->vars[k]] * s->stride[k];
  return s->table[off];
}

static double eval(Run *r, const Expr *e) {
  switch (e->kind) {
  case EX_NUM: return e->num;
  case EX_NAME:
  case EX_INDEX: return read_value(r, e);
  case EX_CALL:
    return mixc_builtin(e->fn, eval(r, e->args[0]), e->nargs > 1 ? eval(r, e->args[1]) : 0);
  case EX_SUM: return sum_value(r, e);
  case EX_NEG: return -eval(r, e->args[0]);
  case EX_BIN: {
    double x = eval(r, e->args[0]), y = eval(r, e->args[1]);
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

/* Tabulate sum s for every value of its free variables (inner sums are ready). */
static void fill_sum(Run *r, const SumPlan *s) {
  int64_t nb = r->sp->isize[s->bound];
  for (int64_t f = 0; f < s->n; f++) {
    int64_t rem = f;
    for (int k = s->nv - 1; k >= 0; k--) {
      r->idx[s->vars[k]] = rem % s->size[k];
      rem /= s->size[k];
    }
    double acc = 0;
    for (int64_t i = 0; i < nb; i++) {
      r->idx[s->bound] = i;
      acc += eval(r, s->e->args[0]);
    }
    s->table[f] = acc;
  }
}

/* Evaluate the right side of statement sp for every left-hand index value into dst. */
static void eval_stmt(Run *r, const StmtPlan *sp, double *dst) {
  const Stmt *st = sp->st;
  r->sp = sp;
  for (int i = 0; i < sp->nsums; i++) fill_sum(r, &sp->sums[i]);
  for (int v = 0; v < st->nlhs; v++) r->idx[v] = 0;
  for (int64_t f = 0; f < sp->nelem; f++) {
    dst[f] = eval(r, st->rhs);
    for (int v = st->nlhs - 1; v >= 0; v--) { /* next index, last fastest */
      if (++r->idx[v] < sp->isize[v]) break;
      r->idx[v] = 0;
    }
  }
}

static void exec_stmts(Run *r, const StmtPlan *plans, int n, Mode mode) {
  for (int i = 0; i < n; i++) {
    const StmtPlan *sp = &plans[i];
    const Stmt *st = sp->st;
    switch (st->kind) {
    case ST_FOR:
      for (int64_t v = 0; v < sp->trips; v++) {
        r->forval[st->sym] = v;
        exec_stmts(r, sp->body, sp->nbody, mode);
      }
      break;
    case ST_LET: eval_stmt(r, sp, r->val[st->sym]); break;
    case ST_UPDATE:
      if (mode == MODE_OUTPUTS) break;
      eval_stmt(r, sp, r->tmp);
      memcpy(r->val[st->sym], r->tmp, (size_t)sp->nelem * sizeof(double));
      break;
    case ST_OUTPUT:
      if (mode != MODE_UPDATES) eval_stmt(r, sp, r->val[st->sym]);
      break;
    }
  }
}

/* ---- the walk over sequences, heads, directions and tokens ---- */

/* Point every input at token t (batch row bb, head h, scan direction d). */
static void set_token(Run *r, int64_t bb, int64_t t, int64_t h, int d) {
  const RefBinding *b = r->b;
  for (int s = 0; s < r->nsyms; s++) {
    const Sym *y = &r->m->syms[s];
    if (y->kind != SYM_INPUT) continue;
    int64_t tok = (bb * b->T + t) * b->H + h;
    int64_t off = y->per_direction ? (tok * r->ndir + d) * r->feat[s] : tok * r->feat[s];
    r->cur[s] = b->in[s] + off;
  }
}

static void set_head(Run *r, int64_t h) {
  for (int s = 0; s < r->nsyms; s++) {
    const Sym *y = &r->m->syms[s];
    const double *in = r->b->in ? r->b->in[s] : NULL;
    if (y->kind == SYM_PARAM) r->cur[s] = in ? in + h * r->feat[s] : r->val[s];
  }
}

/* Copy (add, for grid mixers) this token's outputs into the output arrays. */
static void commit_outputs(Run *r, int64_t bb, int64_t t, int64_t h) {
  const RefBinding *b = r->b;
  for (int s = 0; s < r->nsyms; s++) {
    if (r->m->syms[s].kind != SYM_OUTPUT) continue;
    double *dst = b->out[s] + ((bb * b->T + t) * b->H + h) * r->feat[s];
    const double *v = r->val[s];
    for (int64_t i = 0; i < r->feat[s]; i++) dst[i] = r->grid ? dst[i] + v[i] : v[i];
  }
}

/* Load the states of sequence n, head h (zeros without an initial state); or store them. */
static void move_states(Run *r, int64_t n, int64_t h, int store) {
  const RefBinding *b = r->b;
  for (int s = 0; s < r->nsyms; s++) {
    if (r->m->syms[s].kind != SYM_STATE) continue;
    size_t bytes = (size_t)r->feat[s] * sizeof(double);
    int64_t off = (n * b->H + h) * r->feat[s];
    if (store) {
      if (b->out && b->out[s]) memcpy(b->out[s] + off, r->val[s], bytes);
    } else if (b->in && b->in[s]) {
      memcpy(r->val[s], b->in[s] + off, bytes);
    } else {
      memset(r->val[s], 0, bytes);
    }
  }
}

static void run_sequence(Run *r, int64_t n, int64_t h) {
  int64_t bb = r->b->cu_seqlens ? 0 : n;
  int64_t t0 = r->b->cu_seqlens ? r->b->cu_seqlens[n] : 0;
  int64_t t1 = r->b->cu_seqlens ? r->b->cu_seqlens[n + 1] : r->b->T;
  move_states(r, n, h, 0);
  for (int64_t t = t0; t < t1; t++) {
    set_token(r, bb, t, h, 0);
    exec_stmts(r, r->plans, r->nplans, MODE_ALL);
    commit_outputs(r, bb, t, h);
  }
  move_states(r, n, h, 1);
}

/* The token visited k-th by direction dir on the Y x X grid (tokens y-major). */
static int64_t grid_token(const RefBinding *b, Direction dir, int64_t k) {
  int64_t T = b->T;
  if (dir == DIR_ROW_REV || dir == DIR_COL_REV) k = T - 1 - k;
  if (dir == DIR_COL || dir == DIR_COL_REV) return (k % b->Y) * b->X + k / b->Y;
  return k;
}

static void run_direction(Run *r, int64_t bb, int64_t h, int d, Direction dir) {
  int64_t T = r->b->T;
  move_states(r, 0, h, 0); /* grid mixers have no initial states: zeros */
  if (dir == DIR_ALL) {
    for (int64_t t = 0; t < T; t++) {
      set_token(r, bb, t, h, d);
      exec_stmts(r, r->plans, r->nplans, MODE_UPDATES);
    }
    for (int64_t t = 0; t < T; t++) {
      set_token(r, bb, t, h, d);
      exec_stmts(r, r->plans, r->nplans, MODE_OUTPUTS);
      commit_outputs(r, bb, t, h);
    }
    return;
  }
  for (int64_t k = 0; k < T; k++) {
    int64_t t = grid_token(r->b, dir, k);
    set_token(r, bb, t, h, d);
    exec_stmts(r, r->plans, r->nplans, MODE_ALL);
    commit_outputs(r, bb, t, h);
  }
}

/* Divide every output of batch row bb, head h by div; div = 0 clears them instead. */
static void scale_outputs(Run *r, int64_t bb, int64_t h, double div) {
  const RefBinding *b = r->b;
  for (int s = 0; s < r->nsyms; s++) {
    if (r->m->syms[s].kind != SYM_OUTPUT) continue;
    for (int64_t t = 0; t < b->T; t++) {
      double *dst = b->out[s] + ((bb * b->T + t) * b->H + h) * r->feat[s];
      for (int64_t i = 0; i < r->feat[s]; i++) dst[i] = div == 0 ? 0 : dst[i] / div;
    }
  }
}

/* Every direction runs from a zero state and adds its outputs; `combine mean` then divides
 * by the number of directions (`combine sum`, and one direction without combine, do not). */
static void run_grid(Run *r, int64_t bb, int64_t h) {
  const Mixer *m = r->m;
  scale_outputs(r, bb, h, 0);
  for (int d = 0; d < r->ndir; d++) run_direction(r, bb, h, d, m->ndirs ? m->dirs[d] : DIR_ROW);
  if (m->combine == COMBINE_MEAN && r->ndir > 1) scale_outputs(r, bb, h, r->ndir);
}

/* ---- setup ---- */

/* Value buffers for states, lets and outputs; params without an array get their default,
 * broadcast. */
static int alloc_values(Run *r) {
  int64_t tmp = 1;
  for (int s = 0; s < r->nsyms; s++) {
    const Sym *y = &r->m->syms[s];
    if (y->kind == SYM_DIM || y->kind == SYM_INPUT) continue;
    const double *in = r->b->in ? r->b->in[s] : NULL;
    if (y->kind == SYM_PARAM && in) continue;
    r->val[s] = arena_array(&r->arena, (size_t)r->feat[s], sizeof(double));
    if (!r->val[s]) return fail(r, "out of memory");
    r->cur[s] = r->val[s];
    if (y->kind == SYM_STATE && r->feat[s] > tmp) tmp = r->feat[s];
    if (y->kind != SYM_PARAM) continue;
    uint64_t fv;
    if (plan_expr(r, NULL, y->init, 0, &fv)) return 1;
    double v = eval(r, y->init);
    for (int64_t i = 0; i < r->feat[s]; i++) r->val[s][i] = v;
  }
  r->tmp = arena_array(&r->arena, (size_t)tmp, sizeof(double));
  return r->tmp ? 0 : fail(r, "out of memory");
}

static int setup(Run *r) {
  const Mixer *m = r->m;
  Arena *a = &r->arena;
  r->nsyms = m->nsyms;
  size_t ns = (size_t)m->nsyms + 1, nf = (size_t)m->nforvars + 1;
  r->dimsz = arena_array(a, ns, sizeof *r->dimsz);
  r->feat = arena_array(a, ns, sizeof *r->feat);
  r->stride = arena_array(a, ns, sizeof *r->stride);
  r->val = arena_array(a, ns, sizeof *r->val);
  r->cur = arena_array(a, ns, sizeof *r->cur);
  r->forval = arena_array(a, nf, sizeof *r->forval);
  r->active = arena_array(a, nf, sizeof *r->active);
  if (a->failed) return fail(r, "out of memory");
  if (check_binding(r)) return 1;
  if (m->nstmts < 0 || (m->nstmts && !m->stmts)) return fail(r, "internal: bad statement list");
  r->nplans = m->nstmts;
  r->plans = arena_array(a, (size_t)m->nstmts + 1, sizeof *r->plans);
  if (!r->plans) return fail(r, "out of memory");
  if (plan_stmts(r, m->stmts, m->nstmts, r->plans)) return 1;
  return alloc_values(r);
}

int mixc_ref_run(const Mixer *m, const RefBinding *b, char *err, size_t errlen) {
  Run r;
  memset(&r, 0, sizeof r);
  r.err = err;
  r.errlen = errlen;
  if (err && errlen) err[0] = 0;
  if (!m || !b) return fail(&r, "no mixer or no binding");
  r.m = m;
  r.b = b;
  r.grid = m->ngrid > 0;
  r.ndir = ndir_of(m);
  arena_init(&r.arena);
  int rc = setup(&r);
  if (!rc) {
    for (int64_t h = 0; h < b->H; h++) {
      set_head(&r, h);
      if (r.grid)
        for (int64_t bb = 0; bb < b->B; bb++) run_grid(&r, bb, h);
      else
        for (int64_t n = 0; n < r.N; n++) run_sequence(&r, n, h);
    }
  }
  arena_free(&r.arena);
  return rc;
}

int mixc_ref_check(const Mixer *m, const RefBinding *b, char *err, size_t errlen) {
  Run r;
  memset(&r, 0, sizeof r);
  r.err = err;
  r.errlen = errlen;
  if (err && errlen) err[0] = 0;
  if (!m || !b) return fail(&r, "no mixer or no binding");
  r.m = m;
  r.b = b;
  r.grid = m->ngrid > 0;
  r.ndir = ndir_of(m);
  arena_init(&r.arena);
  size_t ns = (size_t)m->nsyms + 1;
  r.nsyms = m->nsyms;
  r.dimsz = arena_array(&r.arena, ns, sizeof *r.dimsz);
  r.feat = arena_array(&r.arena, ns, sizeof *r.feat);
  r.stride = arena_array(&r.arena, ns, sizeof *r.stride);
  int rc = r.arena.failed ? fail(&r, "out of memory") : check_binding(&r);
  arena_free(&r.arena);
  return rc;
}
