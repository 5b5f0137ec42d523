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

/* The text of the tokens the driver makes up to restart the parser (see resume). */
static const char synthetic[] = "_";

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
  s->body = body_stmts(c, body, &s->nbody, kw.text != synthetic);
  return stmt_item(c, s);
}

/* ---- mixers ---- */

DirItem *ast_dir(ParseCtx *c, const Token *minus, Token name) {
  DirItem *d = arena_alloc(c->arena, sizeof *d);
  if (!d) return NULL;
  d->loc = minus ? loc_span(minus->loc, name.loc) : name.loc;
  d->unknown = NULL;
  int rev = minus != NULL;
  if (name.len == 3 && !memcmp(name.text, "row", 3))
    d->dir = rev ? DIR_ROW_REV : DIR_ROW;
  else if (name.len == 3 && !memcmp(name.text, "col", 3))
    d->dir = rev ? DIR_COL_REV : DIR_COL;
  else if (name.len == 3 && !memcmp(name.text, "all", 3) && !rev)
    d->dir = DIR_ALL;
  else {
    d->unknown = name.text;
    d->unknown_len = name.len;
    d->unknown_rev = rev;
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
    if (d[i]->unknown)
      diag_error(c->diags, d[i]->loc, "directions are row, col, -row, -col, or all alone",
                 "unknown direction '%s%.*s'", d[i]->unknown_rev ? "-" : "", d[i]->unknown_len,
                 d[i]->unknown);
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

static int is_keyword(int kind) {
  switch (kind) {
  case TK_MIXER: case TK_DIM: case TK_INPUT: case TK_PARAM: case TK_STATE: case TK_LET:
  case TK_OUTPUT: case TK_SUM: case TK_FOR: case TK_IN: case TK_OVER: case TK_DIRECTIONS:
  case TK_COMBINE: case TK_PER: case TK_DIRECTION:
    return 1;
  default: return 0;
  }
}

/* A token after which a new statement (or mixer) begins. */
static int ends_stmt(int kind) {
  return kind < 0 || kind == TK_SEP || kind == TK_LBRACE || kind == TK_RBRACE;
}

/* What a statement (or mixer header) that starts with `first` looks like. */
static const char *form_help(int first) {
  switch (first) {
  case TK_MIXER:
    return "a mixer is `mixer NAME { ... }`, or for a 2-D scan "
           "`mixer NAME over (Y, X) directions (row, -row) combine mean { ... }`";
  case TK_DIM: return "dims are declared as `dim K, V` or `dim NH = 2`";
  case TK_INPUT:
    return "inputs are declared as `input x, q[K], k[NH, K]` (or `input g[K] per direction`)";
  case TK_PARAM:
    return "params are declared as `param p`, `param u[K]` or `param scale = rsqrt(K)`";
  case TK_STATE: return "states are declared as `state S[K, V], z[K]`";
  case TK_LET: return "a let is `let a = expr` or `let u[j] = expr`";
  case TK_OUTPUT: return "an output is `output o[j] = expr`";
  case TK_IDENT: return "a state update is `S[i, j] = expr`";
  case TK_FOR: return "a loop is `for h in NH { ... }`, NH a fixed dim";
  default: return NULL;
  }
}

/* The character at a location of the source, or 0. */
static char char_at(const Diags *d, Loc l) {
  if (!d->src || l.line < 1 || l.col < 1) return 0;
  const char *p = d->src, *end = d->src + d->srclen;
  for (int line = 1; line < l.line && p < end; p++)
    if (*p == '\n') line++;
  return (size_t)(l.col - 1) < (size_t)(end - p) ? p[l.col - 1] : 0;
}

static const char keyword_help[] =
    "keywords (mixer dim input param state let output sum for in over directions combine per "
    "direction) cannot be used as names";

static const char *help_for(ParseCtx *c, int major, const Token *tok,
                            const unsigned char *expected, int ntok, int only_rbrace, char *buf,
                            size_t bufsize) {
  int want_expr = TK_NUMBER < ntok && expected[TK_NUMBER];
  int first = ends_stmt(c->prev[0]) ? major : c->stmt_first;
  if (tok->unclosed.line > 0) {
    char open = char_at(c->diags, tok->unclosed);
    snprintf(buf, bufsize, "the '%c' opened at line %d, column %d is never closed; add '%c'",
             open == '[' ? '[' : '(', tok->unclosed.line, tok->unclosed.col,
             open == '[' ? ']' : ')');
    return buf;
  }
  /* The first token of a line, on a later line than the innermost open bracket: that
   * bracket was never closed (line breaks inside brackets do not end statements). */
  if (c->nbrackets > 0 && c->nbrackets <= PARSE_MAX_OPEN &&
      c->bracket_locs[c->nbrackets - 1].line < tok->loc.line &&
      c->prev_line < tok->loc.line && major != TK_RPAREN && major != TK_RBRACK) {
    Loc o = c->bracket_locs[c->nbrackets - 1];
    int paren = c->brackets[c->nbrackets - 1] == TK_LPAREN;
    snprintf(buf, bufsize, "the '%c' opened at line %d, column %d is never closed; add '%c'",
             paren ? '(' : '[', o.line, o.col, paren ? ')' : ']');
    return buf;
  }
  if (major == 0 && c->nblocks > 0) {
    int top = c->nblocks < PARSE_MAX_OPEN ? c->nblocks : PARSE_MAX_OPEN;
    const OpenBlock *b = &c->blocks[top - 1];
    if (b->is_for)
      snprintf(buf, bufsize, "add '}' to close the `for` loop (opened at line %d)",
               b->loc.line);
    else if (b->name)
      snprintf(buf, bufsize, "add '}' to close mixer '%.*s' (opened at line %d)",
               b->len > 64 ? 64 : b->len, b->name, b->loc.line);
    else
      snprintf(buf, bufsize, "add '}' to close the mixer (opened at line %d)", b->loc.line);
    return buf;
  }
  if ((major == TK_RPAREN || major == TK_RBRACK) && c->nbrackets > 0 &&
      c->nbrackets <= PARSE_MAX_OPEN &&
      c->brackets[c->nbrackets - 1] != (major == TK_RPAREN ? TK_LPAREN : TK_LBRACK)) {
    Loc o = c->bracket_locs[c->nbrackets - 1];
    int paren = c->brackets[c->nbrackets - 1] == TK_LPAREN;
    snprintf(buf, bufsize,
             "the innermost open bracket is the '%c' at line %d, column %d: close it with "
             "'%c' first",
             paren ? '(' : '[', o.line, o.col, paren ? ')' : ']');
    return buf;
  }
  if (only_rbrace && major == TK_RPAREN && c->nbrackets == 0)
    return "no '(' is open here; remove it";
  if (only_rbrace && major == TK_RBRACK && c->nbrackets == 0)
    return "no '[' is open here; remove it";
  if (only_rbrace && ends_stmt(c->prev[0])) {
    /* a statement was due */
    int top = c->nblocks < PARSE_MAX_OPEN ? c->nblocks : PARSE_MAX_OPEN;
    const OpenBlock *b = top > 0 ? &c->blocks[top - 1] : NULL;
    if (major == TK_MIXER && b && !b->is_for && b->name) {
      snprintf(buf, bufsize,
               "add '}' to close mixer '%.*s' (opened at line %d) before the next mixer",
               b->len > 64 ? 64 : b->len, b->name, b->loc.line);
      return buf;
    }
    if (major == TK_MIXER) return "add '}' to close the block before the next mixer";
    return "a statement is `let a = expr`, `output o[j] = expr`, `S[i, j] = expr` or "
           "`for h in NH { ... }`";
  }
  if (only_rbrace) return "one statement per line (or `;`); is an operator missing?";
  if (major == TK_RBRACE && c->nblocks == 0) return "no '{' is open here; remove this '}'";
  if (c->prev[0] == TK_COMBINE) return "write `combine sum` or `combine mean`";
  if (is_keyword(major) && TK_IDENT < ntok && expected[TK_IDENT]) return keyword_help;
  if (c->prev[0] == TK_SUM) return "a sum is written `sum(i, expr)`";
  if ((c->prev[0] == TK_LPAREN && c->prev[1] == TK_SUM) ||
      (c->prev[0] == TK_IDENT && c->prev[1] == TK_LPAREN && c->prev[2] == TK_SUM))
    return "sum takes an index name first: `sum(i, expr)`";
  if (c->prev[0] == TK_MIXER) return "`mixer` needs a name: `mixer NAME { ... }`";
  if (c->prev[0] == TK_LPAREN && c->prev[1] == TK_OVER)
    return "`over` names the scan's two grid axes: `over (Y, X)`";
  if (c->prev[0] == TK_LPAREN && c->prev[1] == TK_DIRECTIONS)
    return "list the scan's directions, e.g. `directions (row, -row)`: row, col, -row, -col, "
           "or all alone";
  if (major == TK_SEP && tok->len == 1 && tok->text[0] == ';' && c->nbrackets > 0) {
    int top = c->nbrackets < PARSE_MAX_OPEN ? c->nbrackets : PARSE_MAX_OPEN;
    Loc o = c->bracket_locs[top - 1];
    int paren = c->brackets[top - 1] == TK_LPAREN;
    snprintf(buf, bufsize, "';' ends the statement, but the '%c' at line %d, column %d is "
             "still open: close it with '%c' first", paren ? '(' : '[', o.line, o.col,
             paren ? ')' : ']');
    return buf;
  }
  if (major == TK_SEP && want_expr)
    return "the expression is incomplete; a line break ends a statement unless it is "
           "inside ( ) or [ ], so wrap long expressions in parentheses";
  if (want_expr) return "an expression was expected here";
  if (TK_MIXER < ntok && expected[TK_MIXER] && !expected[TK_IDENT])
    return "a file holds mixers: `mixer NAME { ... }`";
  if (TK_PLUS < ntok && expected[TK_PLUS] &&
      (major == TK_IDENT || major == TK_NUMBER || major == TK_LPAREN || major == TK_SUM))
    return "is an operator (+ - * /) missing before it?";
  if (expected[TK_COMMA] && c->nbrackets > 0 &&
      (expected[TK_RPAREN] || expected[TK_RBRACK])) {
    int top = c->nbrackets < PARSE_MAX_OPEN ? c->nbrackets : PARSE_MAX_OPEN;
    int paren = c->brackets[top - 1] == TK_LPAREN;
    snprintf(buf, bufsize, "separate the items with ',' and close the list with '%c'",
             paren ? ')' : ']');
    return buf;
  }
  return form_help(first);
}

void parse_syntax_error(ParseCtx *c, int major, const Token *tok, const unsigned char *expected,
                        int ntok) {
  c->syntax_errors++;
  if (c->quiet_seps > 0) return; /* still resynchronising after an earlier error */
  /* Outside every mixer after an earlier error: a '}' too many or too few left the
   * parser out of step with the braces, and whatever follows would be blamed for it. */
  if (c->reported > 0 && c->nblocks == 0 && TK_MIXER < ntok && expected[TK_MIXER]) return;
  /* Likewise a '}' found missing at the end of the file. */
  if (c->reported > 0 && (major == 0 || (major == TK_SEP && tok->len == 0))) return;
  /* A statement that ends too early is usually continued on the next line: that line's
   * errors would only repeat this one. */
  if (major == TK_SEP) c->quiet_seps = 2;
  char want[256] = "";
  int nwant = 0;
  for (int t = 1; t < ntok; t++)
    if (expected[t] && t != TK_UMINUS) nwant++;
  /* After a complete statement the parser's default reductions leave only the '}' that
   * closes the block in view, though a separator was as welcome. */
  int only_rbrace =
      nwant == 1 && TK_RBRACE < ntok && expected[TK_RBRACE] && major != 0 && major != TK_SEP;
  if (only_rbrace) {
    snprintf(want, sizeof want, ends_stmt(c->prev[0]) ? "; expected a statement or '}'"
                                                      : "; expected end of statement");
  } else if (nwant > 0 && nwant <= 4) {
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
  /* The separator the lexer adds at the end of the text stands for the end of the file. */
  const char *what = major == TK_SEP && tok->len == 0 ? "end of file" : token_kind_name(major);
  char buf[160];
  const char *help = help_for(c, major, tok, expected, ntok, only_rbrace, buf, sizeof buf);
  /* A keyword used as a name is one mistake, however often the name is used. */
  if (help == keyword_help) {
    if (major < 64 && ((c->keywords_named >> major) & 1)) return;
    if (major < 64) c->keywords_named |= (uint64_t)1 << major;
  }
  c->reported++;
  if (major == TK_IDENT || major == TK_NUMBER)
    diag_error(c->diags, tok->loc, help, "unexpected %s '%.*s'%s",
               major == TK_IDENT ? "name" : "number", tok->len, tok->text, want);
  else
    diag_error(c->diags, tok->loc, help, "unexpected %s%s", what, want);
}

void parse_stack_overflow(ParseCtx *c, const Token *at) {
  Loc l = at ? at->loc : (Loc){1, 1, 1};
  diag_error(c->diags, l, "split the expression with `let` statements or flatten the blocks",
             "the program is nested too deeply to parse");
  c->syntax_errors++;
  c->done = -1;
}

/* Record a token the parser has consumed (see ParseCtx). */
static void track(ParseCtx *c, const Token *t) {
  switch (t->kind) {
  case TK_LPAREN:
  case TK_LBRACK:
    if (c->nbrackets < PARSE_MAX_OPEN) {
      c->brackets[c->nbrackets] = t->kind;
      c->bracket_locs[c->nbrackets] = t->loc;
    }
    c->nbrackets++;
    break;
  case TK_RPAREN:
  case TK_RBRACK:
    if (c->nbrackets > 0) c->nbrackets--;
    break;
  case TK_LBRACE:
    c->nbrackets = 0;
    if (c->nblocks < PARSE_MAX_OPEN) {
      OpenBlock *b = &c->blocks[c->nblocks];
      b->loc = t->loc;
      b->is_for = c->head_for;
      b->name = c->head_for ? NULL : c->head_name.text;
      b->len = c->head_for ? 0 : c->head_name.len;
    }
    c->nblocks++;
    break;
  case TK_RBRACE:
    c->nbrackets = 0;
    if (c->nblocks > 0) c->nblocks--;
    break;
  case TK_MIXER:
    c->head_for = 0;
    memset(&c->head_name, 0, sizeof c->head_name);
    break;
  case TK_FOR: c->head_for = 1; break;
  case TK_IDENT:
    if (c->prev[0] == TK_MIXER) c->head_name = *t;
    break;
  case TK_SEP:
    if (c->quiet_seps > 0) c->quiet_seps--;
    break;
  default: break;
  }
  if (ends_stmt(c->prev[0])) c->stmt_first = t->kind;
  c->prev_line = t->loc.line;
  c->prev[2] = c->prev[1];
  c->prev[1] = c->prev[0];
  c->prev[0] = t->kind;
}

/* ---- driver ---- */

/* After the parser gave up inside a block it starts again empty, and would take every
 * statement that follows for an error. Feed it a made-up header for each open block
 * (`mixer _ {`, then `for _ in _ {`, each with a separator), so the statements after the
 * next separator are checked in their place. The program is discarded anyway. */
static void resume(ParseCtx *c, void *p, const Token *at) {
  int n = c->nblocks < PARSE_MAX_OPEN ? c->nblocks : PARSE_MAX_OPEN;
  Token t = *at;
  memset(&t.unclosed, 0, sizeof t.unclosed);
  t.text = synthetic;
  t.len = 1;
  for (int b = 0; b < n; b++) {
    static const int mixer_head[] = {TK_MIXER, TK_IDENT, TK_LBRACE, TK_SEP};
    static const int for_head[] = {TK_FOR, TK_IDENT, TK_IN, TK_IDENT, TK_LBRACE, TK_SEP};
    /* inner blocks as loops, whatever opened them, so that every '}' to come has its '{' */
    const int *head = b == 0 ? mixer_head : for_head;
    int len = b == 0 ? 4 : 6;
    for (int k = 0; k < len; k++) {
      t.kind = head[k];
      mixcParse(p, t.kind, t);
    }
  }
  c->failed = 0;
}

Program *parse_program(Arena *a, Diags *d, const char *src, size_t len) {
  int n = 0;
  Token *toks = lex_all(a, d, src, len, &n);
  if (!toks || diag_count(d)) return NULL;
  ParseCtx ctx = {0};
  ctx.arena = a;
  ctx.diags = d;
  ctx.prev[0] = ctx.prev[1] = ctx.prev[2] = -1;
  ctx.stmt_first = -1;
  void *p = mixcParseAlloc(malloc, &ctx);
  if (!p) {
    diag_error(d, (Loc){0, 0, 1}, NULL, "out of memory");
    return NULL;
  }
  int before = diag_count(d);
  int skipping = 0; /* the parser gave up: drop the rest of the line */
  for (int i = 0; i < n; i++) {
    if (skipping) {
      track(&ctx, &toks[i]); /* braces still open and close blocks */
      if (toks[i].kind == TK_SEP) {
        skipping = 0;
        resume(&ctx, p, &toks[i]);
      }
      continue;
    }
    /* A line after a statement that ended too early is taken for its continuation,
     * unless it starts like a statement of its own. */
    if (ctx.quiet_seps == 1 && ctx.prev[0] == TK_SEP && form_help(toks[i].kind) &&
        toks[i].kind != TK_IDENT)
      ctx.quiet_seps = 0;
    ctx.failed = 0;
    mixcParse(p, toks[i].kind, toks[i]);
    track(&ctx, &toks[i]);
    if (ctx.failed && ctx.nblocks > 0 && toks[i].kind != 0) {
      if (toks[i].kind == TK_SEP)
        resume(&ctx, p, &toks[i]);
      else
        skipping = 1;
    }
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
    diag_error(d, (Loc){1, 1, 1}, "write a mixer: `mixer NAME { ... }` (see LANGUAGE.md)",
               "the file holds no mixer");
    return NULL;
  }
  return prog;
}
