/* Input roles and random fills (see inputs.h). */
#include "inputs.h"

#include <math.h>
#include <string.h>

const char *mixc_role_name(InputRole r) {
  switch (r) {
  case ROLE_NORMAL: return "normal";
  case ROLE_LOG_GATE: return "log gate (<= 0)";
  case ROLE_NEG_LOG_GATE: return "negated log gate (>= 0)";
  case ROLE_UNIT: return "unit vector";
  case ROLE_UNIFORM01: return "in (0, 1)";
  case ROLE_UNIT_POSITIVE: return "non-negative unit vector";
  case ROLE_NONNEG: return "non-negative";
  }
  return "?";
}

/* Mark the inputs and params that are plain factors of an exp() argument, with the
 * sign they enter with. Nested calls are walked for their own exp()s only. */
static void mark_exp_arg(const Expr *e, int sign, InputRole *roles);

static void walk(const Expr *e, InputRole *roles) {
  if (!e) return;
  if (e->kind == EX_CALL && e->fn == FN_EXP && e->nargs == 1) {
    mark_exp_arg(e->args[0], 1, roles);
    return;
  }
  for (int i = 0; i < e->nargs; i++) walk(e->args[i], roles);
}

static void mark_exp_arg(const Expr *e, int sign, InputRole *roles) {
  switch (e->kind) {
  case EX_NAME:
  case EX_INDEX:
    if (e->ref == REF_INPUT || e->ref == REF_PARAM)
      roles[e->sym] = sign > 0 ? ROLE_LOG_GATE : ROLE_NEG_LOG_GATE;
    return;
  case EX_NEG: mark_exp_arg(e->args[0], -sign, roles); return;
  case EX_BIN:
    if (e->op == '*') {
      mark_exp_arg(e->args[0], sign, roles);
      mark_exp_arg(e->args[1], sign, roles);
    } else if (e->op == '+' || e->op == '-') {
      mark_exp_arg(e->args[0], sign, roles);
      mark_exp_arg(e->args[1], e->op == '-' ? -sign : sign, roles);
    } else {
      walk(e, roles);
    }
    return;
  default: walk(e, roles); return;
  }
}

static void walk_stmts(Stmt **st, int n, InputRole *roles) {
  for (int i = 0; i < n; i++) {
    if (st[i]->kind == ST_FOR)
      walk_stmts(st[i]->body, st[i]->nbody, roles);
    else
      walk(st[i]->rhs, roles);
  }
}

/* Mark (in `mark`, per symbol) every input, let and state an expression reads. */
static void reads(const Expr *e, unsigned char *mark) {
  if (!e) return;
  if ((e->kind == EX_NAME || e->kind == EX_INDEX) &&
      (e->ref == REF_INPUT || e->ref == REF_STATE || e->ref == REF_LET) && !mark[e->sym])
    mark[e->sym] = 1;
  for (int i = 0; i < e->nargs; i++) reads(e->args[i], mark);
}

/* Everything the divisors of outputs read. */
static void divisors(const Expr *e, unsigned char *mark) {
  if (!e) return;
  if (e->kind == EX_BIN && e->op == '/') reads(e->args[1], mark);
  for (int i = 0; i < e->nargs; i++) divisors(e->args[i], mark);
}

/* What a marked let or state is computed from is marked too (1: to visit, 2: visited). */
static void feeds(Stmt **st, int n, unsigned char *mark, int *changed) {
  for (int i = 0; i < n; i++) {
    if (st[i]->kind == ST_FOR) {
      feeds(st[i]->body, st[i]->nbody, mark, changed);
    } else if (st[i]->kind != ST_OUTPUT && st[i]->sym >= 0 && mark[st[i]->sym] == 1) {
      reads(st[i]->rhs, mark);
      mark[st[i]->sym] = 2;
      *changed = 1;
    }
  }
}

static void walk_outputs(Stmt **st, int n, unsigned char *mark) {
  for (int i = 0; i < n; i++) {
    if (st[i]->kind == ST_FOR) walk_outputs(st[i]->body, st[i]->nbody, mark);
    if (st[i]->kind == ST_OUTPUT) divisors(st[i]->rhs, mark);
  }
}

void mixc_input_roles(const Mixer *m, InputRole *roles) {
  for (int i = 0; i < m->nsyms; i++) {
    const Sym *s = &m->syms[i];
    roles[i] = ROLE_NORMAL;
    if (s->kind == SYM_INPUT) roles[i] = s->rank ? ROLE_UNIT : ROLE_UNIFORM01;
  }
  /* Vectors reaching a denominator, through lets and state updates, are non-negative. */
  unsigned char mark[1024];
  if (m->nsyms <= (int)sizeof mark) {
    memset(mark, 0, (size_t)m->nsyms);
    walk_outputs(m->stmts, m->nstmts, mark);
    for (int pass = 0, changed = 1; changed && pass < m->nsyms + 1; pass++) {
      changed = 0;
      feeds(m->stmts, m->nstmts, mark, &changed);
    }
    for (int i = 0; i < m->nsyms; i++) {
      if (mark[i] && m->syms[i].kind == SYM_INPUT && m->syms[i].rank) roles[i] = ROLE_UNIT_POSITIVE;
      if (mark[i] && m->syms[i].kind == SYM_STATE) roles[i] = ROLE_NONNEG;
    }
  }
  walk_stmts(m->stmts, m->nstmts, roles);
}

/* ---- generator ---- */

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void mixc_rng_seed(MixcRng *r, uint64_t seed) {
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next(MixcRng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double mixc_rng_uniform(MixcRng *r) { return (double)(next(r) >> 11) * 0x1.0p-53; }

double mixc_rng_normal(MixcRng *r) {
  double u = mixc_rng_uniform(r), v = mixc_rng_uniform(r);
  return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

static double logsigmoid(double x) { return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)); }

void mixc_fill(MixcRng *r, InputRole role, double *x, int64_t n, int64_t last) {
  if (last < 1) last = 1;
  for (int64_t i = 0; i < n; i++) {
    double z = mixc_rng_normal(r);
    switch (role) {
    case ROLE_NORMAL: x[i] = 0.5 * z; break;
    case ROLE_LOG_GATE: x[i] = logsigmoid(z); break;
    case ROLE_NEG_LOG_GATE: x[i] = -logsigmoid(z); break;
    case ROLE_UNIT: x[i] = z; break;
    case ROLE_UNIT_POSITIVE: x[i] = fabs(z); break;
    case ROLE_NONNEG: x[i] = 0.5 * fabs(z); break;
    case ROLE_UNIFORM01: x[i] = 1.0 / (1.0 + exp(-z)); break;
    }
  }
  if (role != ROLE_UNIT && role != ROLE_UNIT_POSITIVE) return;
  for (int64_t row = 0; row + last <= n; row += last) {
    double ss = 0;
    for (int64_t j = 0; j < last; j++) ss += x[row + j] * x[row + j];
    double scale = ss > 0 ? 1.0 / sqrt(ss) : 0.0;
    for (int64_t j = 0; j < last; j++) x[row + j] *= scale;
  }
}
