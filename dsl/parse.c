/* Building the syntax tree from grammar actions, and the parser driver.
 *
 * Every builder tolerates NULL children (left by an earlier allocation failure or a
 * syntax error) and returns a node or NULL; it never stops the parse. */
#include "parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../compiler/compile.h"
#include "grammar.h"

/* Lemon's generated entry points (grammar.c). */
void *mixcParseAlloc(void *(*alloc)(size_t), ParseCtx *ctx);
void mixcParseFree(void *p, void (*freeproc)(void *));
void mixcParse(void *p, int major, Token minor);

/* ---- vectors ---- */

Vec *vec_new(ParseCtx *c, size_t elem) {
  Vec *v = calloc(1, sizeof *v);
  if (!v) {
    c->arena->failed = 1;
    return NULL;
  }
  v->elem = elem;
  return v;
}

Vec *vec_push(ParseCtx *c, Vec *v, const void *elem) {
  if (!v) return NULL;
  if (v->n == v->cap) {
    int cap = v->cap ? v->cap * 2 : 4;
    void *d = realloc(v->data, (size_t)cap * v->elem);
    if (!d) {
      c->arena->failed = 1;
      return v;
    }
    v->data = d;
    v->cap = cap;
  }
  memcpy((char *)v->data + (size_t)v->n * v->elem, elem, v->elem);
  v->n++;
  return v;
}

void vec_free(Vec *v) {
  if (!v) return;
  free(v->data);
  free(v);
}

void *vec_to_arena(ParseCtx *c, Vec *v, int *n) {
  *n = 0;
  if (!v) return NULL;
  void *d = NULL;
  if (v->n) {
    d = arena_array(c->arena, (size_t)v->n, v->elem);
    if (d) {
      memcpy(d, v->data, (size_t)v->n * v->elem);
      *n = v->n;
    }
  }
  vec_free(v);
  return d;
}

/* ---- expressions ---- */

static Expr *new_expr(ParseCtx *c, ExprKind kind, Loc loc) {
  Expr *e = arena_alloc(c->arena, sizeof *e);
  if (!e) return NULL;
  e->kind = kind;
  e->loc = loc;
  e->depth = 1;
  return e;
}

static char *tok_str(ParseCtx *c, Token t) { return arena_strndup(c->arena, t.text, (size_t)t.len); }

Ident ast_ident(Token t) {
  Ident i = {0};
  i.name = NULL;
  i.loc = t.loc;
  /* The name is copied when the identifier lands in a node (ast_decl and friends);
   * until then it points into the source, which outlives the parse. */
  i.name = t.text;
  return i;
}

/* Idents collected by the grammar point into the source; give them NUL-terminated
 * arena copies of their names. */
static Ident *own_idents(ParseCtx *c, Vec *v, int *n) {
  Ident *ids = vec_to_arena(c, v, n);
  for (int i = 0; ids && i < *n; i++) {
    Token t = {0};
    t.text = ids[i].name;
    t.len = ids[i].loc.len;
    ids[i].name = tok_str(c, t);
  }
  return ids;
}

static Ident tok_ident(ParseCtx *c, Token t) {
  Ident i;
  i.name = tok_str(c, t);
  i.loc = t.loc;
  return i;
}

/* Depth bound: a left-deep chain like a+b+c+... never deepens Lemon's stack, so the
 * tree height is checked here, once, where it first passes the limit. */
static void set_depth(ParseCtx *c, Expr *e, int child_depth) {
  if (!e) return;
  e->depth = child_depth + 1;
  if (e->depth == MIXC_MAX_DEPTH + 1)
    diag_error(c->diags, e->loc, "split the expression with `let` statements",
               "expression is nested too deeply (more than %d levels)", MIXC_MAX_DEPTH);
}

static int max_depth(Expr **args, int n) {
  int d = 0;
  for (int i = 0; i < n; i++)
    if (args[i] && args[i]->depth > d) d = args[i]->depth;
  return d;
}

Expr *ast_num(ParseCtx *c, Token t) {
  Expr *e = new_expr(c, EX_NUM, t.loc);
  if (e) e->num = t.num;
  return e;
}

Expr *ast_name(ParseCtx *c, Token t) {
  Expr *e = new_expr(c, EX_NAME, t.loc);
  if (e) e->name = tok_str(c, t);
  return e;
}

static Expr *ast_apply(ParseCtx *c, ExprKind kind, Token name, Vec *args, Token close) {
  Expr *e = new_expr(c, kind, loc_span(name.loc, close.loc));
  if (!e) {
    vec_free(args);
    return NULL;
  }
  e->name = tok_str(c, name);
  e->name_loc = name.loc;
  e->args = vec_to_arena(c, args, &e->nargs);
  set_depth(c, e, max_depth(e->args, e->nargs));
  return e;
}

Expr *ast_index(ParseCtx *c, Token name, Vec *args, Token close) {
  return ast_apply(c, EX_INDEX, name, args, close);
}

Expr *ast_call(ParseCtx *c, Token name, Vec *args, Token close) {
  return ast_apply(c, EX_CALL, name, args, close);
}

Expr *ast_sum(ParseCtx *c, Token kw, Token idx, Expr *body, Token close) {
  Expr *e = new_expr(c, EX_SUM, loc_span(kw.loc, close.loc));
  Expr **args = arena_alloc(c->arena, sizeof *args);
  if (!e || !args) return NULL;
  e->name = tok_str(c, idx);
  e->name_loc = idx.loc;
  args[0] = body;
  e->args = args;
  e->nargs = 1;
  set_depth(c, e, body ? body->depth : 0);
  return e;
}

Expr *ast_bin(ParseCtx *c, Expr *l, int op, Expr *r) {
  if (!l || !r) return NULL;
  Expr *e = new_expr(c, EX_BIN, loc_span(l->loc, r->loc));
  Expr **args = arena_array(c->arena, 2, sizeof *args);
  if (!e || !args) return NULL;
  e->op = op;
  args[0] = l;
  args[1] = r;
  e->args = args;
  e->nargs = 2;
  set_depth(c, e, l->depth > r->depth ? l->depth : r->depth);
  return e;
}

Expr *ast_neg(ParseCtx *c, Token minus, Expr *x) {
  if (!x) return NULL;
  Expr *e = new_expr(c, EX_NEG, loc_span(minus.loc, x->loc));
  Expr **args = arena_alloc(c->arena, sizeof *args);
  if (!e || !args) return NULL;
  args[0] = x;
  e->args = args;
  e->nargs = 1;
  set_depth(c, e, x->depth);
  return e;
}

Expr *ast_paren(ParseCtx *c, Token open, Expr *e, Token close) {
  /* Parentheses leave no node, but the span shown for the expression includes them. */
  if (e) e->loc = loc_span(open.loc, close.loc);
  (void)c;
  return e;
}

/* ---- declarations ---- */

Decl *ast_decl(ParseCtx *c, DeclKind kind, Token name, Vec *shape, Expr *init, int per_dir) {
  Decl *d = arena_alloc(c->arena, sizeof *d);
  if (!d) {
    vec_free(shape);
    return NULL;
  }
  d->kind = kind;
  d->loc = name.loc;
  d->name = tok_ident(c, name);
  d->shape = own_idents(c, shape, &d->nshape);
  d->init = init;
  d->per_direction = per_dir;
  return d;
}

Decl *ast_dim(ParseCtx *c, Token name, const Token *value) {
  Decl *d = ast_decl(c, D_DIM, name, NULL, NULL, 0);
  if (!d || !value) return d;
  int integral = 1;
  for (int i = 0; i < value->len; i++)
    if (value->text[i] < '0' || value->text[i] > '9') integral = 0;
  if (!integral || value->num < 1 || value->num > MIXC_MAX_FIXED_DIM) {
    diag_error(c->diags, value->loc, "a fixed dim is a whole number from 1 to 65536",
               "dim '%s' must be a positive integer no larger than %d", d->name.name,
               MIXC_MAX_FIXED_DIM);
    return d;
  }
  d->init = ast_num(c, *value);
  return d;
}

Item *item_decls(ParseCtx *c, Token kw, Vec *decls) {
  Item *it = arena_alloc(c->arena, sizeof *it);
  if (!it) {
    vec_free(decls);
    return NULL;
  }
  it->loc = kw.loc;
  it->decls = vec_to_arena(c, decls, &it->ndecls);
  return it;
}

/* ---- statements ---- */

static Item *stmt_item(ParseCtx *c, Stmt *s) {
  Item *it = arena_alloc(c->arena, sizeof *it);
  if (!it || !s) return NULL;
  it->is_stmt = 1;
  it->loc = s->loc;
  it->stmt = s;
  return it;
}

Item *item_stmt(ParseCtx *c, StmtKind kind, Token kw, Token name, Vec *lhs, Expr *rhs) {
  Stmt *s = arena_alloc(c->arena, sizeof *s);
  if (!s) {
    vec_free(lhs);
    return NULL;
  }
  s->kind = kind;
  s->loc = rhs ? loc_span(kw.loc, rhs->loc) : kw.loc;
  s->name = tok_ident(c, name);
  s->lhs = own_idents(c, lhs, &s->nlhs);
  s->rhs = rhs;
  return stmt_item(c, s);
}

/* Keep only the statements of a body; a declaration inside `for` is an error. */
static Stmt **body_stmts(ParseCtx *c, Vec *items, int *n, int in_for) {
  int ni = 0;
  Item **its = vec_to_arena(c, items, &ni);
  Stmt **out = ni ? arena_array(c->arena, (size_t)ni, sizeof *out) : NULL;
  *n = 0;
  for (int i = 0; i < ni; i++) {
    Item *it = its[i];
    if (!it) continue;
    if (it->is_stmt) {
      if (out) out[(*n)++] = it->stmt;
    } else if (in_for) {
      diag_error(c->diags, it->loc, "declare it before the first statement of the mixer",
                 "declarations are not allowed inside 'for'");
    }
  }
  return out;
}

Item *item_for(ParseCtx *c, Token kw, Token var, Token range, Vec *body, Token close) {
  Stmt *s = arena_alloc(c->arena, sizeof *s);
  if (!s) {
    vec_free(body);
    return NULL;
  }
  s->kind = ST_FOR;
  s->loc = loc_span(kw.loc, range.loc);
  (void)close;
  s->name = tok_ident(c, var);
  s->range = tok_ident(c, range);
  s->body = body_stmts(c, body, &s->nbody, 1);
  return stmt_item(c, s);
}

/* ---- mixers ---- */

DirItem *ast_dir(ParseCtx *c, const Token *minus, Token name) {
  DirItem *d = arena_alloc(c->arena, sizeof *d);
  if (!d) return NULL;
  d->loc = minus ? loc_span(minus->loc, name.loc) : name.loc;
  int rev = minus != NULL;
  if (name.len == 3 && !memcmp(name.text, "row", 3))
    d->dir = rev ? DIR_ROW_REV : DIR_ROW;
  else if (name.len == 3 && !memcmp(name.text, "col", 3))
    d->dir = rev ? DIR_COL_REV : DIR_COL;
  else if (name.len == 3 && !memcmp(name.text, "all", 3) && !rev)
    d->dir = DIR_ALL;
  else {
    diag_error(c->diags, d->loc, "directions are row, col, -row, -col, or all alone",
               "unknown direction '%s%.*s'", rev ? "-" : "", name.len, name.text);
    d->dir = DIR_ROW;
  }
  return d;
}

OverSpec *ast_over(ParseCtx *c, Vec *grid, Vec *dirs, const Token *combine) {
  OverSpec *o = arena_alloc(c->arena, sizeof *o);
  if (!o) {
    vec_free(grid);
    vec_free(dirs);
    return NULL;
  }
  o->grid = own_idents(c, grid, &o->ngrid);
  int n = 0;
  DirItem **d = vec_to_arena(c, dirs, &n);
  o->dirs = n ? arena_array(c->arena, (size_t)n, sizeof *o->dirs) : NULL;
  o->dir_locs = n ? arena_array(c->arena, (size_t)n, sizeof *o->dir_locs) : NULL;
  for (int i = 0; d && o->dirs && o->dir_locs && i < n; i++) {
    if (!d[i]) continue;
    o->dirs[o->ndirs] = d[i]->dir;
    o->dir_locs[o->ndirs++] = d[i]->loc;
  }
  o->combine = COMBINE_NONE;
  if (combine) {
    o->combine_loc = combine->loc;
    if (combine->len == 3 && !memcmp(combine->text, "sum", 3))
      o->combine = COMBINE_SUM;
    else if (combine->len == 4 && !memcmp(combine->text, "mean", 4))
      o->combine = COMBINE_MEAN;
    else
      diag_error(c->diags, combine->loc, "write `combine sum` or `combine mean`",
                 "unknown combine '%.*s'", combine->len, combine->text);
  }
  return o;
}

/* Split a mixer body into declarations and statements; declarations come first. */
static void mixer_body(ParseCtx *c, Mixer *m, Vec *body) {
  int ni = 0;
  Item **its = vec_to_arena(c, body, &ni);
  int nd = 0, ns = 0;
  for (int i = 0; i < ni; i++) {
    if (!its[i]) continue;
    if (its[i]->is_stmt)
      ns++;
    else
      nd += its[i]->ndecls;
  }
  m->decls = nd ? arena_array(c->arena, (size_t)nd, sizeof *m->decls) : NULL;
  m->stmts = ns ? arena_array(c->arena, (size_t)ns, sizeof *m->stmts) : NULL;
  if ((nd && !m->decls) || (ns && !m->stmts)) return;
  const Item *first_stmt = NULL;
  for (int i = 0; i < ni; i++) {
    Item *it = its[i];
    if (!it) continue;
    if (it->is_stmt) {
      if (!first_stmt) first_stmt = it;
      m->stmts[m->nstmts++] = it->stmt;
      continue;
    }
    if (first_stmt) {
      char help[96];
      snprintf(help, sizeof help, "move it above the first statement (line %d)",
               first_stmt->loc.line);
      diag_error(c->diags, it->loc, help, "declarations must come before the first statement");
    }
    for (int k = 0; k < it->ndecls; k++)
      if (it->decls[k]) m->decls[m->ndecls++] = it->decls[k];
  }
}

Mixer *ast_mixer(ParseCtx *c, Token kw, Token name, OverSpec *over, Vec *body, Token close) {
  Mixer *m = arena_alloc(c->arena, sizeof *m);
  if (!m) {
    vec_free(body);
    return NULL;
  }
  m->name = tok_ident(c, name);
  m->loc = loc_span(kw.loc, name.loc);
  (void)close;
  if (over) {
    m->grid = over->grid;
    m->ngrid = over->ngrid;
    m->dirs = over->dirs;
    m->dir_locs = over->dir_locs;
    m->ndirs = over->ndirs;
    m->combine = over->combine;
    m->combine_loc = over->combine_loc;
  }
  mixer_body(c, m, body);
  return m;
}

/* ---- errors ---- */

static const char *help_for(int major, const unsigned char *expected, int ntok) {
  int want_expr = TK_NUMBER < ntok && expected[TK_NUMBER];
  if (major == TK_SEP && want_expr)
    return "the expression is incomplete; a line break ends a statement unless it is "
           "inside ( ) or [ ], so wrap long expressions in parentheses";
  if (want_expr) return "an expression was expected here";
  if (TK_MIXER < ntok && expected[TK_MIXER] && !expected[TK_IDENT])
    return "a file holds mixers: `mixer NAME { ... }`";
  if (major >= TK_MIXER && major != TK_IDENT && major != TK_NUMBER && TK_IDENT < ntok &&
      expected[TK_IDENT] && major != TK_LPAREN && major != TK_RPAREN)
    return "keywords (mixer dim input param state let output sum for in over directions "
           "combine per direction) cannot be used as names";
  return NULL;
}

void parse_syntax_error(ParseCtx *c, int major, const Token *tok, const unsigned char *expected,
                        int ntok) {
  c->syntax_errors++;
  char want[256] = "";
  int nwant = 0;
  for (int t = 1; t < ntok; t++)
    if (expected[t] && t != TK_UMINUS) nwant++;
  if (nwant > 0 && nwant <= 4) {
    size_t used = 0;
    int k = 0;
    for (int t = 1; t < ntok; t++) {
      if (!expected[t] || t == TK_UMINUS) continue;
      const char *sep = k == 0 ? "; expected " : (k == nwant - 1 ? " or " : ", ");
      int w = snprintf(want + used, sizeof want - used, "%s%s", sep, token_kind_name(t));
      if (w > 0 && (size_t)w < sizeof want - used) used += (size_t)w;
      k++;
    }
  }
  const char *what = token_kind_name(major);
  if (tok->unclosed.line > 0) {
    char help[128];
    snprintf(help, sizeof help, "the bracket opened at line %d, column %d is never closed",
             tok->unclosed.line, tok->unclosed.col);
    diag_error(c->diags, tok->loc, help, "unexpected %s%s", what, want);
    return;
  }
  if (major == TK_IDENT || major == TK_NUMBER)
    diag_error(c->diags, tok->loc, help_for(major, expected, ntok), "unexpected %s '%.*s'%s",
               major == TK_IDENT ? "name" : "number", tok->len, tok->text, want);
  else
    diag_error(c->diags, tok->loc, help_for(major, expected, ntok), "unexpected %s%s", what,
               want);
}

void parse_stack_overflow(ParseCtx *c, const Token *at) {
  Loc l = at ? at->loc : (Loc){0, 0, 1};
  diag_error(c->diags, l, "split the expression with `let` statements or flatten the blocks",
             "the program is nested too deeply to parse");
  c->syntax_errors++;
  c->done = -1;
}

/* ---- driver ---- */

Program *parse_program(Arena *a, Diags *d, const char *src, size_t len) {
  int n = 0;
  Token *toks = lex_all(a, d, src, len, &n);
  if (!toks || diag_count(d)) return NULL;
  ParseCtx ctx = {0};
  ctx.arena = a;
  ctx.diags = d;
  void *p = mixcParseAlloc(malloc, &ctx);
  if (!p) {
    diag_error(d, (Loc){0, 0, 1}, NULL, "out of memory");
    return NULL;
  }
  int before = diag_count(d);
  for (int i = 0; i < n; i++) {
    mixcParse(p, toks[i].kind, toks[i]);
    if (ctx.done < 0) {
      /* A stack overflow resets the parser: anything after would be noise. */
      d->items[d->n - 1].loc = toks[i].loc;
      break;
    }
    if (diag_count(d) - before >= d->max) break;
  }
  mixcParseFree(p, free);
  Vec *mixers = ctx.mixers;
  if (a->failed) {
    vec_free(mixers);
    diag_error(d, (Loc){0, 0, 1}, NULL, "out of memory");
    return NULL;
  }
  if (ctx.syntax_errors || diag_count(d) > before || !mixers) {
    vec_free(mixers);
    return NULL;
  }
  Program *prog = arena_alloc(a, sizeof *prog);
  if (!prog) {
    vec_free(mixers);
    return NULL;
  }
  prog->mixers = vec_to_arena(&ctx, mixers, &prog->nmixers);
  if (prog->nmixers == 0) {
    diag_error(d, (Loc){0, 0, 1}, "write a mixer: `mixer NAME { ... }` (see LANGUAGE.md)",
               "the file holds no mixer");
    return NULL;
  }
  return prog;
}
