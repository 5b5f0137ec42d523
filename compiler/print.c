/* Printers for the syntax tree (an S-expression per node, with locations) and the typed
 * tree (declarations with shapes, statements with bound index variables). */
#include "print.h"

#include <string.h>

static int prec(const Expr *e) {
  if (e->kind == EX_BIN) return e->op == '+' || e->op == '-' ? 1 : 2;
  if (e->kind == EX_NEG) return 3;
  return 4;
}

static void expr_sub(FILE *f, const Expr *e, int min_prec) {
  int paren = prec(e) < min_prec;
  if (paren) fputc('(', f);
  expr_print(f, e);
  if (paren) fputc(')', f);
}

void expr_print(FILE *f, const Expr *e) {
  if (!e) {
    fputs("<?>", f);
    return;
  }
  switch (e->kind) {
  case EX_NUM: fprintf(f, "%.17g", e->num); return;
  case EX_NAME: fputs(e->name, f); return;
  case EX_INDEX:
  case EX_CALL:
    fprintf(f, "%s%c", e->name, e->kind == EX_INDEX ? '[' : '(');
    for (int i = 0; i < e->nargs; i++) {
      if (i) fputs(", ", f);
      expr_print(f, e->args[i]);
    }
    fputc(e->kind == EX_INDEX ? ']' : ')', f);
    return;
  case EX_SUM:
    fprintf(f, "sum(%s, ", e->name);
    expr_print(f, e->args[0]);
    fputc(')', f);
    return;
  case EX_NEG:
    fputc('-', f);
    expr_sub(f, e->args[0], 3);
    return;
  case EX_BIN: {
    int p = prec(e);
    expr_sub(f, e->args[0], p);
    fprintf(f, " %c ", e->op);
    /* a - (b - c) and a / (b * c) keep their parentheses */
    expr_sub(f, e->args[1], e->op == '-' || e->op == '/' ? p + 1 : p);
    return;
  }
  }
}

/* ---- the syntax tree ---- */

static void ind(FILE *f, int depth) {
  for (int i = 0; i < depth; i++) fputs("  ", f);
}

static void ast_expr(FILE *f, const Expr *e, int depth) {
  ind(f, depth);
  static const char *kinds[] = {"num", "name", "index", "call", "sum", "bin", "neg"};
  fprintf(f, "(%s @%d:%d", kinds[e->kind], e->loc.line, e->loc.col);
  if (e->kind == EX_NUM) fprintf(f, " %.17g", e->num);
  if (e->name) fprintf(f, " %s", e->name);
  if (e->kind == EX_BIN) fprintf(f, " '%c'", e->op);
  if (!e->nargs) {
    fputs(")\n", f);
    return;
  }
  fputc('\n', f);
  for (int i = 0; i < e->nargs; i++) ast_expr(f, e->args[i], depth + 1);
  ind(f, depth);
  fputs(")\n", f);
}

static void idents(FILE *f, const Ident *ids, int n) {
  if (!n) return;
  fputc('[', f);
  for (int i = 0; i < n; i++) fprintf(f, "%s%s", i ? ", " : "", ids[i].name);
  fputc(']', f);
}

static void ast_stmt(FILE *f, const Stmt *s, int depth) {
  static const char *kinds[] = {"let", "update", "output", "for"};
  ind(f, depth);
  fprintf(f, "(%s @%d:%d %s", kinds[s->kind], s->loc.line, s->loc.col, s->name.name);
  if (s->kind == ST_FOR) {
    fprintf(f, " in %s\n", s->range.name);
    for (int i = 0; i < s->nbody; i++) ast_stmt(f, s->body[i], depth + 1);
  } else {
    idents(f, s->lhs, s->nlhs);
    fputc('\n', f);
    ast_expr(f, s->rhs, depth + 1);
  }
  ind(f, depth);
  fputs(")\n", f);
}

static void mixer_header(FILE *f, const Mixer *m) {
  fprintf(f, "mixer %s", m->name.name);
  if (m->ngrid) {
    fputs(" over (", f);
    for (int i = 0; i < m->ngrid; i++) fprintf(f, "%s%s", i ? ", " : "", m->grid[i].name);
    fputs(") directions (", f);
    for (int i = 0; i < m->ndirs; i++)
      fprintf(f, "%s%s", i ? ", " : "", direction_name(m->dirs[i]));
    fputc(')', f);
    if (m->combine != COMBINE_NONE)
      fprintf(f, " combine %s", m->combine == COMBINE_SUM ? "sum" : "mean");
  }
  fputc('\n', f);
}

void ast_print(FILE *f, const Program *p, const char *only) {
  static const char *dk[] = {"dim", "input", "param", "state"};
  for (int i = 0; i < p->nmixers; i++) {
    const Mixer *m = p->mixers[i];
    if (only && strcmp(only, m->name.name)) continue;
    mixer_header(f, m);
    for (int j = 0; j < m->ndecls; j++) {
      const Decl *d = m->decls[j];
      fprintf(f, "  (%s @%d:%d %s", dk[d->kind], d->loc.line, d->loc.col, d->name.name);
      idents(f, d->shape, d->nshape);
      if (d->per_direction) fputs(" per-direction", f);
      if (d->init) {
        fputs(" = ", f);
        expr_print(f, d->init);
      }
      fputs(")\n", f);
    }
    for (int j = 0; j < m->nstmts; j++) ast_stmt(f, m->stmts[j], 1);
  }
}

/* ---- the typed tree ---- */

static void shape(FILE *f, const Mixer *m, const Sym *s) {
  if (!s->rank) return;
  fputc('[', f);
  for (int i = 0; i < s->rank; i++)
    fprintf(f, "%s%s", i ? ", " : "", s->shape[i] >= 0 ? m->syms[s->shape[i]].name : "?");
  fputc(']', f);
}

static void typed_stmt(FILE *f, const Mixer *m, const Stmt *s, int depth) {
  ind(f, depth);
  if (s->kind == ST_FOR) {
    fprintf(f, "for %s in %s (%lld times)\n", s->name.name, s->range.name,
            (long long)m->syms[m->forvars[s->sym].dim].fixed);
    for (int i = 0; i < s->nbody; i++) typed_stmt(f, m, s->body[i], depth + 1);
    return;
  }
  const char *kw = s->kind == ST_LET ? "let " : s->kind == ST_OUTPUT ? "output " : "";
  fprintf(f, "%s%s", kw, s->name.name);
  if (s->nlhs) {
    fputc('[', f);
    for (int i = 0; i < s->nlhs; i++)
      fprintf(f, "%s%s", i ? ", " : "", s->lhs[i].name);
    fputc(']', f);
  }
  fputs(" = ", f);
  expr_print(f, s->rhs);
  fputs("\n", f);
  ind(f, depth + 2);
  fputs("indices:", f);
  for (int i = 0; i < s->nivars; i++)
    fprintf(f, " %s:%s%s", s->ivars[i].name, m->syms[s->ivars[i].dim].name,
            i < s->nlhs ? "" : "(summed)");
  if (!s->nivars) fputs(" none", f);
  fprintf(f, "%s\n", s->rhs && s->rhs->has_state ? "; reads a state" : "");
}

void typed_print(FILE *f, const Program *p, const char *only) {
  for (int i = 0; i < p->nmixers; i++) {
    const Mixer *m = p->mixers[i];
    if (only && strcmp(only, m->name.name)) continue;
    mixer_header(f, m);
    for (int j = 0; j < m->nsyms; j++) {
      const Sym *s = &m->syms[j];
      if (s->kind == SYM_LET || s->kind == SYM_OUTPUT) continue;
      fprintf(f, "  %s %s", sym_kind_name(s->kind), s->name);
      shape(f, m, s);
      if (s->kind == SYM_DIM && s->fixed) fprintf(f, " = %lld", (long long)s->fixed);
      if (s->per_direction) fputs(" per direction", f);
      if (s->init) {
        fputs(" = ", f);
        expr_print(f, s->init);
      }
      fputc('\n', f);
    }
    for (int j = 0; j < m->nstmts; j++) typed_stmt(f, m, m->stmts[j], 1);
  }
}
