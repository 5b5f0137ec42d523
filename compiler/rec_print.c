/* The recurrence IR as text (`mixc ir --stage rec`), stable for golden tests:
 *
 *   mixer gated_delta
 *     prelude:
 *       (none)
 *     state S[K, V]: dplr-left rank 1 (delta), 2 steps
 *       step 1 (scalar): S <- exp(g) * S
 *       step 2 (dplr-left rank 1, delta): S <- (I - (beta * k[i]) k[m]^T) S + (beta * k[i]) v[j]^T
 *     output o[j] = readout(S_t[i, j], rows, q[i])
 *
 * Coefficients are printed in mix syntax with the statement's index names. x y^T is an
 * outer product (x free in the row index, y in the contracted one), diag(d) a diagonal,
 * E .* S an element-wise product. A state version is S_{t-1} (before the token's first
 * update), S@v (after its v-th update) or S_t (after the last). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rec.h"

/* ---- names ---- */

const char *rec_class_name(RecClass c) {
  switch (c) {
  case RC_IDENTITY: return "identity";
  case RC_SCALAR: return "scalar";
  case RC_DIAG: return "diag";
  case RC_DPLR: return "dplr";
  case RC_ELEMENTWISE: return "element-wise";
  case RC_GENERAL: return "general";
  }
  return "?";
}

const char *rec_side_name(RecSide s) {
  switch (s) {
  case RS_NONE: return "";
  case RS_LEFT: return "left";
  case RS_RIGHT: return "right";
  case RS_BOTH: return "both";
  }
  return "?";
}

const char *rec_kind_name(RecClass c, RecSide s) {
  if (c == RC_DIAG) return s == RS_RIGHT ? "diag-right" : s == RS_BOTH ? "diag-both" : "diag-left";
  if (c == RC_DPLR) return s == RS_RIGHT ? "dplr-right" : "dplr-left";
  return rec_class_name(c);
}

static const char *dim_name(const RecMixer *m, int dim) {
  const Mixer *mx = m->mixer;
  return mx && dim >= 0 && dim < mx->nsyms ? mx->syms[dim].name : "?";
}

/* "S[K, V]" */
static int shape_str(char *buf, size_t size, const RecMixer *m, const RecState *s) {
  int n = snprintf(buf, size, "%s", s->name);
  for (int d = 0; d < s->ndim; d++) {
    size_t at = (size_t)n < size ? (size_t)n : size;
    n += snprintf(buf + at, size - at, "%s%s", d ? ", " : "[", dim_name(m, s->shape[d]));
  }
  if (s->ndim) {
    size_t at = (size_t)n < size ? (size_t)n : size;
    n += snprintf(buf + at, size - at, "]");
  }
  return n;
}

/* "dplr-left rank 1 (delta)", "general (reads state z)" */
static int class_str(char *buf, size_t size, const RecState *s) {
  int n = snprintf(buf, size, "%s", rec_kind_name(s->cls, s->side));
  size_t at = (size_t)n < size ? (size_t)n : size;
  if (s->cls == RC_DPLR) n += snprintf(buf + at, size - at, " rank %d", s->rank);
  at = (size_t)n < size ? (size_t)n : size;
  if (s->delta) n += snprintf(buf + at, size - at, " (delta)");
  at = (size_t)n < size ? (size_t)n : size;
  if (s->cls == RC_GENERAL && s->why) n += snprintf(buf + at, size - at, " (%s)", s->why);
  return n;
}

int rec_state_summary(char *buf, size_t size, const RecMixer *m, int state) {
  if (!m || state < 0 || state >= m->nstates) return snprintf(buf, size, "?");
  const RecState *s = &m->states[state];
  char shape[256], cls[512];
  shape_str(shape, sizeof shape, m, s);
  class_str(cls, sizeof cls, s);
  return snprintf(buf, size, "%s: %s", shape, cls);
}

/* ---- expressions ---- */

typedef struct PCtx {
  FILE *f;
  const RecMixer *m;
  const RecScope *sc;
} PCtx;

static void put_num(FILE *f, double v) {
  if (v == floor(v) && fabs(v) < 1e15) {
    fprintf(f, "%.0f", v);
    return;
  }
  char buf[64];
  for (int p = 1; p <= 17; p++) {
    snprintf(buf, sizeof buf, "%.*g", p, v);
    if (strtod(buf, NULL) == v) break;
  }
  fputs(buf, f);
}

static const char *ivar_name(const PCtx *c, int v) {
  return c->sc && v >= 0 && v < c->sc->nivars && c->sc->ivars[v].name ? c->sc->ivars[v].name
                                                                        : "?";
}

static const char *ref_name(const PCtx *c, const Expr *e) {
  const RecMixer *m = c->m;
  if (e->ref == REF_LET && m && e->bound >= 0 && e->bound < m->nlets) return m->lets[e->bound].name;
  if (m && m->mixer && e->ref != REF_NONE && e->sym >= 0 && e->sym < m->mixer->nsyms)
    return m->mixer->syms[e->sym].name;
  return e->name ? e->name : "?";
}

static int prec(const Expr *e) {
  if (e->kind == EX_BIN) return e->op == '+' || e->op == '-' ? 1 : 2;
  if (e->kind == EX_NEG || (e->kind == EX_NUM && e->num < 0)) return 3;
  return 4;
}

static void pexpr(const PCtx *c, const Expr *e, int min_prec);

static void pos_print(const PCtx *c, const Expr *p) {
  if (p->ref == REF_INDEX)
    fputs(ivar_name(c, p->sym), c->f);
  else if (p->ref == REF_CONST)
    fprintf(c->f, "%d", p->sym);
  else if (p->kind == EX_NUM)
    put_num(c->f, p->num);
  else
    fputs(p->name ? p->name : "?", c->f);
}

static void pexpr_inner(const PCtx *c, const Expr *e) {
  FILE *f = c->f;
  switch (e->kind) {
  case EX_NUM: put_num(f, e->num); return;
  case EX_NAME:
    if (e->ref == REF_INDEX || e->ref == REF_CONST)
      pos_print(c, e);
    else
      fputs(ref_name(c, e), f);
    return;
  case EX_INDEX:
    fprintf(f, "%s[", ref_name(c, e));
    for (int i = 0; i < e->nargs; i++) {
      if (i) fputs(", ", f);
      pos_print(c, e->args[i]);
    }
    fputc(']', f);
    return;
  case EX_CALL:
    fprintf(f, "%s(", e->name ? e->name : builtin_name(e->fn));
    for (int i = 0; i < e->nargs; i++) {
      if (i) fputs(", ", f);
      pexpr(c, e->args[i], 1);
    }
    fputc(')', f);
    return;
  case EX_SUM:
    fprintf(f, "sum(%s, ", ivar_name(c, e->bound));
    pexpr(c, e->args[0], 1);
    fputc(')', f);
    return;
  case EX_NEG:
    fputc('-', f);
    pexpr(c, e->args[0], e->args[0]->kind == EX_NEG ? 4 : 3);
    return;
  case EX_BIN: {
    int p = prec(e);
    pexpr(c, e->args[0], p);
    fprintf(f, " %c ", e->op);
    pexpr(c, e->args[1], e->op == '-' || e->op == '/' ? p + 1 : p);
    return;
  }
  }
}

static void pexpr(const PCtx *c, const Expr *e, int min_prec) {
  if (!e) {
    fputs("1", c->f);
    return;
  }
  int paren = prec(e) < min_prec;
  if (paren) fputc('(', c->f);
  pexpr_inner(c, e);
  if (paren) fputc(')', c->f);
}

void rec_print_expr(FILE *f, const RecMixer *m, const RecScope *scope, const Expr *e) {
  PCtx c = {f, m, scope};
  pexpr(&c, e, 1);
}

/* ---- pieces of steps ---- */

/* scale * c * x as one atom: "k[i]", "(beta * k[i])", "(2 * beta * 1)". */
static void scaled_vec(const PCtx *c, double scale, const Expr *co, const Expr *x, int vec) {
  double s = fabs(scale);
  int parts = (s != 1) + (co != NULL) + (x != NULL || vec);
  if (parts == 0) {
    fputs("1", c->f);
    return;
  }
  if (parts == 1) {
    if (s != 1)
      put_num(c->f, s);
    else
      pexpr(c, co ? co : x, 4); /* pexpr prints a NULL vector as 1 */
    return;
  }
  fputc('(', c->f);
  int first = 1;
  if (s != 1) {
    put_num(c->f, s);
    first = 0;
  }
  if (co) {
    if (!first) fputs(" * ", c->f);
    pexpr(c, co, 2);
    first = 0;
  }
  if (vec) {
    if (!first) fputs(" * ", c->f);
    if (x)
      pexpr(c, x, 2);
    else
      fputs("1", c->f);
  }
  fputc(')', c->f);
}

static void vec_atom(const PCtx *c, const Expr *x) {
  if (x)
    pexpr(c, x, 4);
  else
    fputs("1", c->f);
}

static void sign(FILE *f, double scale, int first) {
  if (first)
    fputs(scale < 0 ? "-" : "", f);
  else
    fputs(scale < 0 ? " - " : " + ", f);
}

static void version_label(FILE *f, const RecMixer *m, int state, int version) {
  const RecState *s = state >= 0 && state < m->nstates ? &m->states[state] : NULL;
  fputs(s ? s->name : "?", f);
  if (!s || s->nsteps == 0) return;
  if (version == 0)
    fputs("_{t-1}", f);
  else if (version >= s->nsteps)
    fputs("_t", f);
  else
    fprintf(f, "@%d", version);
}

static void read_print(const PCtx *c, const RecRead *r, int self, int self_version) {
  if (self >= 0 && r->state == self && r->version == self_version)
    fputs(c->m->states[self].name, c->f);
  else
    version_label(c->f, c->m, r->state, r->version);
  if (!r->nidx) return;
  fputc('[', c->f);
  for (int i = 0; i < r->nidx; i++) {
    if (i) fputs(", ", c->f);
    if (r->idx[i].kind == RI_VAR)
      fputs(ivar_name(c, r->idx[i].v), c->f);
    else
      fprintf(c->f, "%d", r->idx[i].v);
  }
  fputc(']', c->f);
}

/* A linear term in mix syntax: sum(m, 2 * coef * S[m, j]). Sign printed by the caller. */
static void term_print(const PCtx *c, const RecTerm *t, int self, int self_version) {
  int nsums = 0;
  for (int v = 0; v < 64; v++)
    if (t->summed & ((uint64_t)1 << v)) {
      fprintf(c->f, "sum(%s, ", ivar_name(c, v));
      nsums++;
    }
  double s = fabs(t->scale);
  int first = 1;
  if (s != 1) {
    put_num(c->f, s);
    first = 0;
  }
  if (t->coef) {
    if (!first) fputs(" * ", c->f);
    pexpr(c, t->coef, 2);
    first = 0;
  }
  if (t->read.state >= 0) {
    if (!first) fputs(" * ", c->f);
    read_print(c, &t->read, self, self_version);
  } else if (first) {
    fputs("1", c->f);
  }
  for (int i = 0; i < nsums; i++) fputc(')', c->f);
}

static void diag_print(const PCtx *c, const Expr *d) {
  fputs("diag(", c->f);
  pexpr(c, d, 1);
  fputc(')', c->f);
}

/* D of D + low rank: I, a * I, or diag(d). */
static void dpart_print(const PCtx *c, const Expr *d) {
  if (d && d->kind == EX_NUM && d->num == 1)
    fputs("I", c->f);
  else if (d && !d->free) {
    pexpr(c, d, 2);
    fputs(" * I", c->f);
  } else
    diag_print(c, d);
}

static void dplr_print(const PCtx *c, const RecStep *st, int left) {
  const Expr *d = left ? st->dl : st->dr;
  int zero = d && d->kind == EX_NUM && d->num == 0 && st->nlr > 0; /* pure low rank */
  fputc('(', c->f);
  if (!zero) dpart_print(c, d);
  for (int r = 0; r < st->nlr; r++) {
    const RecRankOne *o = &st->lr[r];
    sign(c->f, o->scale, zero && r == 0);
    if (left) {
      scaled_vec(c, o->scale, o->c, o->x, 1);
      fputc(' ', c->f);
      vec_atom(c, o->y);
      fputs("^T", c->f);
    } else {
      vec_atom(c, o->y);
      fputc(' ', c->f);
      scaled_vec(c, o->scale, o->c, o->x, 1);
      fputs("^T", c->f);
    }
  }
  fputc(')', c->f);
}

static void operator_print(const PCtx *c, const RecState *s, const RecStep *st) {
  FILE *f = c->f;
  const char *n = s->name;
  switch (st->cls) {
  case RC_IDENTITY: fputs(n, f); return;
  case RC_SCALAR:
    pexpr(c, st->a, 2);
    fprintf(f, " * %s", n);
    return;
  case RC_DIAG:
    if (st->side != RS_RIGHT) {
      diag_print(c, st->dl);
      fputc(' ', f);
    }
    fputs(n, f);
    if (st->side != RS_LEFT) {
      fputc(' ', f);
      diag_print(c, st->dr);
    }
    return;
  case RC_DPLR:
    if (st->side == RS_RIGHT) {
      fprintf(f, "%s ", n);
      dplr_print(c, st, 0);
    } else {
      dplr_print(c, st, 1);
      fprintf(f, " %s", n);
    }
    return;
  case RC_ELEMENTWISE:
    pexpr(c, st->ew, 4);
    fprintf(f, " .* %s", n);
    return;
  case RC_GENERAL:
    for (int i = 0; i < st->nterms; i++) {
      sign(f, st->terms[i].scale, i == 0);
      term_print(c, &st->terms[i], (int)(s - c->m->states), st->version);
    }
    if (!st->nterms) fputs("0", f);
    return;
  }
}

static void input_print(const PCtx *c, const RecState *s, const RecStep *st) {
  FILE *f = c->f;
  for (int i = 0; i < st->nouter; i++) {
    const RecOuter *o = &st->outer[i];
    sign(f, o->scale, 0);
    if (s->ndim == 0) {
      scaled_vec(c, o->scale, o->c, NULL, 0);
    } else if (s->ndim == 1) {
      scaled_vec(c, o->scale, o->c, o->u, 1);
    } else {
      scaled_vec(c, o->scale, o->c, o->u, 1);
      fputc(' ', f);
      vec_atom(c, o->w);
      fputs("^T", f);
    }
  }
  for (int i = 0; i < st->nadd; i++) {
    sign(f, st->add[i].scale, 0);
    fputc('(', f);
    term_print(c, &st->add[i], -1, 0);
    fputc(')', f);
  }
}

static void step_label(FILE *f, const RecStep *st) {
  fputs(rec_kind_name(st->cls, st->side), f);
  if (st->cls == RC_DPLR) fprintf(f, " rank %d", st->rank);
  if (st->delta) fputs(", delta", f);
  if (st->cls == RC_GENERAL && st->why) fprintf(f, ": %s", st->why);
}

static void state_print(FILE *f, const RecMixer *m, int slot) {
  const RecState *s = &m->states[slot];
  char shape[256], cls[512];
  shape_str(shape, sizeof shape, m, s);
  class_str(cls, sizeof cls, s);
  fprintf(f, "  state %s: %s", shape, cls);
  if (!s->nsteps)
    fputs(", never updated\n", f);
  else
    fprintf(f, ", %d step%s\n", s->nsteps, s->nsteps == 1 ? "" : "s");
  for (int i = 0; i < s->nsteps; i++) {
    const RecStep *st = &s->steps[i];
    PCtx c = {f, m, &st->scope};
    fprintf(f, "    step %d (", i + 1);
    step_label(f, st);
    fprintf(f, "): %s <- ", s->name);
    operator_print(&c, s, st);
    input_print(&c, s, st);
    fputc('\n', f);
    if (st->ncoupled) {
      fputs("      coupled to", f);
      for (int k = 0; k < st->ncoupled; k++)
        fprintf(f, "%s %s", k ? "," : "", m->states[st->coupled[k]].name);
      fputc('\n', f);
    }
  }
}

/* ---- outputs ---- */

static int out_prec(const RecOut *o) {
  switch (o->kind) {
  case RO_OPAQUE: return o->e ? prec(o->e) : 4;
  case RO_READOUT:
    if (o->nterms + (o->konst != NULL) > 1) return 1;
    if (o->nterms == 1) return o->terms[0].scale < 0 ? 3 : 4;
    return o->konst ? prec(o->konst) : 4;
  case RO_BIN: return o->op == '+' || o->op == '-' ? 1 : 2;
  case RO_NEG: return 3;
  case RO_CALL:
  case RO_SUM: return 4;
  }
  return 4;
}

static const char *contract_name(unsigned contract, int ndim) {
  if (ndim >= 2) {
    switch (contract & 3u) {
    case 1: return "rows";
    case 2: return "cols";
    case 3: return "rows+cols";
    default: return "none";
    }
  }
  return ndim == 1 && (contract & 1u) ? "rows" : "none";
}

static void readout_print(const PCtx *c, const RecOut *o) {
  FILE *f = c->f;
  for (int i = 0; i < o->nterms; i++) {
    const RecTerm *t = &o->terms[i];
    sign(f, t->scale, i == 0);
    int nd = t->read.state >= 0 && t->read.state < c->m->nstates
                 ? c->m->states[t->read.state].ndim
                 : t->read.nidx;
    fputs("readout(", f);
    read_print(c, &t->read, -1, 0);
    fprintf(f, ", %s, ", contract_name(t->contract, nd));
    double s = fabs(t->scale);
    if (s != 1) {
      put_num(f, s);
      if (t->coef) fputs(" * ", f);
    }
    if (t->coef || s == 1) pexpr(c, t->coef, s != 1 ? 2 : 1);
    fputc(')', f);
  }
  if (o->konst) {
    if (o->nterms) fputs(" + ", f);
    pexpr(c, o->konst, o->nterms ? 2 : 1);
  }
}

static void out_print(const PCtx *c, const RecOut *o, int min_prec) {
  FILE *f = c->f;
  int paren = out_prec(o) < min_prec;
  if (paren) fputc('(', f);
  switch (o->kind) {
  case RO_OPAQUE: pexpr(c, o->e, 1); break;
  case RO_READOUT: readout_print(c, o); break;
  case RO_BIN: {
    int p = out_prec(o);
    out_print(c, o->args[0], p);
    fprintf(f, " %c ", o->op);
    out_print(c, o->args[1], o->op == '-' || o->op == '/' ? p + 1 : p);
    break;
  }
  case RO_NEG:
    fputc('-', f);
    out_print(c, o->args[0], 4);
    break;
  case RO_CALL:
    fprintf(f, "%s(", o->name ? o->name : builtin_name(o->fn));
    for (int i = 0; i < o->nargs; i++) {
      if (i) fputs(", ", f);
      out_print(c, o->args[i], 1);
    }
    fputc(')', f);
    break;
  case RO_SUM:
    fprintf(f, "sum(%s, ", ivar_name(c, o->bound));
    out_print(c, o->args[0], 1);
    fputc(')', f);
    break;
  }
  if (paren) fputc(')', f);
}

static void lhs_print(const PCtx *c, const char *name) {
  fputs(name, c->f);
  if (!c->sc || !c->sc->nlhs) return;
  fputc('[', c->f);
  for (int i = 0; i < c->sc->nlhs; i++) fprintf(c->f, "%s%s", i ? ", " : "", ivar_name(c, i));
  fputc(']', c->f);
}

/* ---- mixers ---- */

void rec_print_mixer(FILE *f, const RecMixer *m) {
  if (!m) return;
  fprintf(f, "mixer %s\n", m->name);
  const Mixer *mx = m->mixer;
  if (mx && mx->ndirs) {
    fputs("  directions:", f);
    for (int i = 0; i < mx->ndirs; i++)
      fprintf(f, "%s %s", i ? "," : "", direction_name(mx->dirs[i]));
    if (mx->combine != COMBINE_NONE)
      fprintf(f, " (combine %s)", mx->combine == COMBINE_SUM ? "sum" : "mean");
    fputc('\n', f);
  }
  fputs("  prelude:\n", f);
  if (!m->nlets) fputs("    (none)\n", f);
  for (int i = 0; i < m->nlets; i++) {
    PCtx c = {f, m, &m->lets[i].scope};
    fputs("    let ", f);
    lhs_print(&c, m->lets[i].name);
    fputs(" = ", f);
    pexpr(&c, m->lets[i].rhs, 1);
    fputc('\n', f);
  }
  for (int s = 0; s < m->nstates; s++) state_print(f, m, s);
  for (int i = 0; i < m->noutputs; i++) {
    const RecOutput *o = &m->outputs[i];
    PCtx c = {f, m, &o->scope};
    fputs("  output ", f);
    lhs_print(&c, o->name);
    fputs(" = ", f);
    out_print(&c, o->root, 1);
    fputc('\n', f);
  }
}

void rec_print(FILE *f, const RecProgram *r) {
  if (!r) return;
  for (int i = 0; i < r->nmixers; i++) {
    if (i) fputc('\n', f);
    rec_print_mixer(f, r->mixers[i]);
  }
}
