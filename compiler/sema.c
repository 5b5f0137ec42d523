/* Semantic analysis: binds every name of a parsed mixer and checks the rules of
 * LANGUAGE.md sections 3 to 5 and 7 that need no recurrence analysis.
 *
 * It fills the typed fields of the tree in place (ast.h): the symbol table, each name's
 * reference, each statement's index variables with the dim they range over, and for
 * every expression its free index variables and whether it reads a state. The
 * linearity rules of section 6 need the recurrence analysis and live in analyze.c. */
#include <stdio.h>
#include <string.h>

#include "../dsl/ast.h"
#include "compile.h"

typedef struct Sema {
  Arena *arena;
  Diags *d;
  Mixer *m;
  int *let_state;   /* per symbol: the let reads a state */
  int *defined;     /* per symbol: a let or output has been assigned */
  unsigned char *bad; /* per symbol: BAD_SYM when its declaration or defining statement had
                         an error, so its shape is unknown and uses of it report nothing
                         more; BAD_EARLY when a read of it (an output, or a let before
                         its assignment) was reported, so later reads are not */
  unsigned char *clashed; /* per symbol: an index named like it was reported */
  const char *unknown[32]; /* names reported unknown in this mixer, each reported once */
  int nunknown;
  int nforvars_cap;
  int active_for[64]; /* for variables in scope */
  int nactive_for;
  /* the statement being checked */
  Stmt *st;
  IndexVar ivars[MIXC_MAX_IVARS];
  int nivars;
  int scope[MIXC_MAX_IVARS]; /* index variables in scope, innermost last */
  int nscope;
  int too_many_ivars;
  int errs0;    /* diagnostics before the statement */
  int poisoned; /* the statement uses a bad symbol (an error already reported) */
  const char *reported[16]; /* names already reported as unknown in this statement */
  int nreported;
} Sema;

enum { BAD_SYM = 1, BAD_EARLY = 2 }; /* Sema.bad */

/* The statement being checked has an error (reported, or inherited from a bad symbol):
 * checks that would only restate it are skipped. */
static int stmt_failed(const Sema *s) { return s->poisoned || diag_count(s->d) > s->errs0; }

/* Report each unknown index once per statement: returns 1 the first time. */
static int first_report(Sema *s, const char *name) {
  for (int i = 0; i < s->nreported; i++)
    if (!strcmp(s->reported[i], name)) return 0;
  if (s->nreported < (int)(sizeof s->reported / sizeof s->reported[0]))
    s->reported[s->nreported++] = name;
  return 1;
}

/* Report an unknown name once per mixer, as the misspelling is one mistake however often
 * it is used: returns 1 the first time. */
static int first_unknown(Sema *s, const char *name) {
  for (int i = 0; i < s->nunknown; i++)
    if (!strcmp(s->unknown[i], name)) {
      s->poisoned = 1; /* the statement still has that error */
      return 0;
    }
  if (s->nunknown < (int)(sizeof s->unknown / sizeof s->unknown[0]))
    s->unknown[s->nunknown++] = name;
  return 1;
}

/* A symbol's kind with its article: "an input", "a dim". */
static const char *a_kind(SymKind k) {
  switch (k) {
  case SYM_DIM: return "a dim";
  case SYM_INPUT: return "an input";
  case SYM_PARAM: return "a param";
  case SYM_STATE: return "a state";
  case SYM_LET: return "a let";
  case SYM_OUTPUT: return "an output";
  }
  return "a name";
}

/* Lets and outputs are entered before the statements are checked (so a read before the
 * assignment can say where it is); one is visible from the statement that assigns it on. */
static int visible(const Sema *s, int k) {
  const Sym *sym = &s->m->syms[k];
  if (sym->kind != SYM_LET && sym->kind != SYM_OUTPUT) return 1;
  return s->defined[k] || (s->st && sym->def == s->st);
}

static int find_visible(const Sema *s, const char *name) {
  int k = mixer_find(s->m, name);
  return k >= 0 && visible(s, k) ? k : -1;
}

/* ---- names ---- */

static int same_letter(char a, char b) {
  if (a >= 'A' && a <= 'Z') a = (char)(a - 'A' + 'a');
  if (b >= 'A' && b <= 'Z') b = (char)(b - 'A' + 'a');
  return a == b;
}

/* Edits between two names; a change of case alone is free, so 'Dv' is one edit from 'V'. */
static int edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 32 || lb > 32) return 99;
  int row[33];
  for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
  for (size_t i = 1; i <= la; i++) {
    int diag = row[0];
    row[0] = (int)i;
    for (size_t j = 1; j <= lb; j++) {
      int up = row[j];
      int best = diag + !same_letter(a[i - 1], b[j - 1]);
      if (row[j] + 1 < best) best = row[j] + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

#define KIND(k) (1u << (k))
enum {
  /* what may be indexed, name[...] */
  TENSOR_KINDS = KIND(SYM_INPUT) | KIND(SYM_PARAM) | KIND(SYM_STATE) | KIND(SYM_LET),
  /* what a bare name in an expression may be (tensors are also named bare, to say they
     need indices) */
  VALUE_KINDS = KIND(SYM_DIM) | TENSOR_KINDS,
};

/* How many edits still make `b` a plausible misspelling of `a`: none but case between
 * one-letter names (any one-letter name is one edit from any other), one for short names,
 * two for longer ones. */
static int near_limit(const char *a, const char *b) {
  size_t n = strlen(a) > strlen(b) ? strlen(a) : strlen(b);
  return n <= 1 ? 0 : n <= 4 ? 1 : 2;
}

/* "did you mean 'q'?" for the closest symbol of one of `kinds` that could be used here
 * (not an output, which cannot be read, nor a let not yet assigned), else a fallback. */
static const char *suggest(Sema *s, const char *name, unsigned kinds, const char *fallback) {
  const char *best = NULL;
  int bd = 99;
  for (int i = 0; i < s->m->nsyms; i++) {
    const Sym *sym = &s->m->syms[i];
    if (!(kinds & KIND(sym->kind))) continue;
    if ((sym->kind == SYM_LET || sym->kind == SYM_OUTPUT) && !s->defined[i]) continue;
    int dd = edit_distance(name, sym->name);
    if (dd <= near_limit(name, sym->name) && dd < bd) {
      bd = dd;
      best = sym->name;
    }
  }
  if (!best) return fallback;
  return arena_printf(s->arena, "did you mean '%s'?", best);
}

/* "the states are S, z" (at most 8 names), or "there is none" for kind k. */
static const char *list_kind(Sema *s, SymKind k, const char *plural) {
  char buf[256];
  size_t used = (size_t)snprintf(buf, sizeof buf, "the %s are", plural);
  int n = 0;
  for (int i = 0; i < s->m->nsyms && used < sizeof buf; i++) {
    if (s->m->syms[i].kind != k || s->bad[i] == BAD_SYM) continue;
    if (n == 8) {
      used += (size_t)snprintf(buf + used, sizeof buf - used, ", ...");
      break;
    }
    used += (size_t)snprintf(buf + used, sizeof buf - used, "%s %s", n ? "," : "",
                             s->m->syms[i].name);
    n++;
  }
  if (!n) return arena_printf(s->arena, "there are no %s", plural);
  return arena_strdup(s->arena, buf);
}

static int find_forvar(Sema *s, const char *name) {
  for (int i = s->nactive_for - 1; i >= 0; i--)
    if (!strcmp(s->m->forvars[s->active_for[i]].name, name)) return s->active_for[i];
  return -1;
}

static int find_ivar(Sema *s, const char *name) {
  for (int i = s->nscope - 1; i >= 0; i--)
    if (!strcmp(s->ivars[s->scope[i]].name, name)) return s->scope[i];
  return -1;
}

static int is_grid_axis(const Mixer *m, const char *name) {
  for (int i = 0; i < m->ngrid; i++)
    if (!strcmp(m->grid[i].name, name)) return 1;
  return 0;
}

/* An index name may not reuse any other kind of name. */
static int check_index_name(Sema *s, Ident id) {
  int sym = find_visible(s, id.name);
  const char *what = NULL;
  if (sym >= 0 && s->bad[sym] == BAD_SYM) {
    s->poisoned = 1; /* that name's error is reported */
    return 0;
  }
  if (sym >= 0)
    what = a_kind(s->m->syms[sym].kind);
  else if (find_forvar(s, id.name) >= 0)
    what = "a for variable";
  else if (is_grid_axis(s->m, id.name))
    what = "a grid axis";
  else if (find_ivar(s, id.name) >= 0)
    what = "an index";
  if (!what) return 1;
  /* One report per name: every index named so is the same mistake. */
  if (sym >= 0 && s->clashed[sym]) {
    s->poisoned = 1;
    return 0;
  }
  if (sym >= 0) s->clashed[sym] = 1;
  diag_error(s->d, id.loc, "pick another letter for the index, e.g. i, j, m, n",
             "index '%s' reuses the name of %s '%s'", id.name, what, id.name);
  return 0;
}

/* ---- symbols ---- */

static Sym *add_sym(Sema *s, SymKind kind, Ident id) {
  Mixer *m = s->m;
  int other = mixer_find(m, id.name);
  if (other >= 0) {
    char help[80];
    snprintf(help, sizeof help, "rename one of them; the other is at line %d",
             m->syms[other].loc.line);
    diag_error(s->d, id.loc, help, "'%s' is already declared as %s", id.name,
               a_kind(m->syms[other].kind));
    s->bad[other] = BAD_SYM; /* which of the two a use means is unknown: stay quiet */
    return NULL;
  }
  /* Named like a grid axis: reported, but entered anyway so that its uses bind to it. */
  if (is_grid_axis(m, id.name))
    diag_error(s->d, id.loc, "rename it: grid axes and symbols share one namespace",
               "'%s' is already a grid axis of `over`", id.name);
  Sym *sym = &m->syms[m->nsyms];
  sym->kind = kind;
  sym->name = id.name;
  sym->loc = id.loc;
  sym->order = mixer_count(m, kind);
  m->nsyms++;
  return sym;
}

static int resolve_dim(Sema *s, Ident id) {
  int k = mixer_find(s->m, id.name);
  if (k >= 0 && s->m->syms[k].kind == SYM_DIM) return k;
  if (is_grid_axis(s->m, id.name))
    diag_error(s->d, id.loc, "grid axes are the scan's, not a tensor's: use a dim",
               "'%s' is a grid axis, not a dim", id.name);
  else if (first_unknown(s, id.name))
    diag_error(s->d, id.loc,
               suggest(s, id.name, KIND(SYM_DIM),
                       arena_printf(s->arena, "declare it: `dim %s` (%s)", id.name,
                                    list_kind(s, SYM_DIM, "dims"))),
               "unknown dim '%s'", id.name);
  return -1;
}

static void declare(Sema *s, const Decl *dc) {
  static const SymKind kinds[] = {SYM_DIM, SYM_INPUT, SYM_PARAM, SYM_STATE};
  Sym *sym = add_sym(s, kinds[dc->kind], dc->name);
  if (!sym) return;
  if (dc->kind == D_DIM) {
    sym->fixed = dc->init ? (int64_t)dc->init->num : 0;
    return;
  }
  int maxrank = dc->kind == D_STATE ? 2 : MIXC_MAX_RANK;
  if (dc->nshape > maxrank) {
    diag_error(s->d, dc->shape[maxrank].loc,
               dc->kind == D_STATE ? "states are scalars, vectors or matrices"
                                   : "split the tensor into several inputs",
               "'%s' has %d dims; at most %d are allowed", dc->name.name, dc->nshape, maxrank);
    s->bad[sym - s->m->syms] = BAD_SYM;
    return;
  }
  sym->rank = dc->nshape;
  for (int i = 0; i < dc->nshape; i++) sym->shape[i] = -1;
  sym->per_direction = dc->per_direction;
  sym->init = dc->init;
  if (dc->per_direction && s->m->ngrid == 0)
    diag_error(s->d, dc->name.loc, "use `per direction` only in a mixer with `over (...)`",
               "input '%s' is per direction, but the mixer scans one direction",
               dc->name.name);
}

/* Shapes are resolved after every declaration is in the table. */
static void resolve_shapes(Sema *s) {
  for (int i = 0; i < s->m->ndecls; i++) {
    const Decl *dc = s->m->decls[i];
    if (dc->kind == D_DIM) continue;
    int k = mixer_find(s->m, dc->name.name);
    if (k < 0 || s->m->syms[k].loc.line != dc->name.loc.line ||
        s->m->syms[k].loc.col != dc->name.loc.col)
      continue; /* a duplicate, already reported */
    Sym *sym = &s->m->syms[k];
    for (int j = 0; j < sym->rank; j++) {
      sym->shape[j] = resolve_dim(s, dc->shape[j]);
      if (sym->shape[j] < 0) s->bad[k] = BAD_SYM;
    }
  }
}

/* ---- expressions ---- */

static int new_ivar(Sema *s, Ident id, int dim) {
  if (s->nivars == MIXC_MAX_IVARS) {
    if (!s->too_many_ivars)
      diag_error(s->d, id.loc, "split the statement with `let`",
                 "more than %d index variables in one statement", MIXC_MAX_IVARS);
    s->too_many_ivars = 1;
    return -1;
  }
  IndexVar *v = &s->ivars[s->nivars];
  v->name = id.name;
  v->loc = id.loc;
  v->dim = dim;
  return s->nivars++;
}

static const char *dim_name(Sema *s, int dim) { return dim >= 0 ? s->m->syms[dim].name : "?"; }

/* Bind index variable v to `dim`, or check that it already ranges over it. */
static void bind_ivar(Sema *s, int v, int dim, Loc at) {
  IndexVar *iv = &s->ivars[v];
  if (dim < 0) return;
  if (iv->dim < 0) {
    iv->dim = dim;
    return;
  }
  if (iv->dim != dim && stmt_failed(s)) {
    s->poisoned = 1; /* likely a consequence of the statement's error */
  } else if (iv->dim != dim) {
    char help[160];
    snprintf(help, sizeof help,
             "an index ranges over one dim; use a separate index for %s (it is %s at %d:%d)",
             dim_name(s, dim), dim_name(s, iv->dim), iv->loc.line, iv->loc.col);
    diag_error(s->d, at, help, "index '%s' is used for dim %s here but for %s elsewhere",
               iv->name, dim_name(s, dim), dim_name(s, iv->dim));
  }
}

/* One position of name[...]: an index variable, a for variable, or an integer. */
static void resolve_position(Sema *s, Expr *p, const Sym *base, int pos) {
  int dim = base->shape[pos];
  if (p->kind == EX_NUM) {
    int64_t fixed = dim >= 0 ? s->m->syms[dim].fixed : 0;
    if (p->num != (double)(int64_t)p->num || p->num < 0 || !fixed || p->num >= (double)fixed) {
      diag_error(s->d, p->loc,
                 fixed ? "a constant index is a whole number below the dim's fixed size"
                       : "constant indices need a fixed dim (`dim N = 4`); use an index name",
                 fixed ? "constant index into dim %s of '%s' is out of range"
                       : "constant index into dim %s of '%s', which has no fixed size",
                 dim_name(s, dim), base->name);
      return;
    }
    p->ref = REF_CONST;
    p->sym = (int)p->num;
    return;
  }
  if (p->kind != EX_NAME) {
    diag_error(s->d, p->loc, "write an index name (i, j, ...) or a whole number",
               "an index must be a name or a number, not an expression");
    return;
  }
  int v = find_ivar(s, p->name);
  if (v >= 0) {
    p->ref = REF_INDEX;
    p->sym = v;
    p->free = (uint64_t)1 << v;
    bind_ivar(s, v, dim, p->loc);
    return;
  }
  int fv = find_forvar(s, p->name);
  if (fv >= 0) {
    p->ref = REF_FORVAR;
    p->sym = fv;
    if (s->m->forvars[fv].dim < 0) /* the loop's range was reported */
      s->poisoned = 1;
    else if (s->m->forvars[fv].dim != dim)
      diag_error(s->d, p->loc, "a for variable indexes the dim its loop runs over",
                 "'%s' runs over %s but indexes dim %s of '%s'", p->name,
                 dim_name(s, s->m->forvars[fv].dim), dim_name(s, dim), base->name);
    return;
  }
  int k = find_visible(s, p->name);
  if (stmt_failed(s) || (k >= 0 && s->bad[k] == BAD_SYM)) {
    s->poisoned = 1; /* likely a consequence of the error already reported */
    return;
  }
  if (!first_report(s, p->name)) return;
  if (k >= 0) {
    diag_error(s->d, p->loc, "index with a name from the left-hand side or a sum(...)",
               "'%s' is %s, not an index", p->name, a_kind(s->m->syms[k].kind));
    return;
  }
  char help[192];
  snprintf(help, sizeof help, "sum over it, `sum(%s, ...)`, or add it to the left side",
           p->name);
  diag_error(s->d, p->loc, help, "index '%s' is not on the left-hand side", p->name);
}

static void resolve_expr(Sema *s, Expr *e);

/* A symbol used in an expression: 1 if it may be read here. A bad symbol's error is
 * already reported, so its uses fail quietly. */
static int readable(Sema *s, const Sym *sym, Loc at) {
  int k = (int)(sym - s->m->syms);
  if (s->bad[k] == BAD_SYM) {
    s->poisoned = 1;
    return 0;
  }
  if (sym->kind == SYM_OUTPUT) {
    s->poisoned = 1;
    if (s->bad[k] == BAD_EARLY) return 0; /* one report per output */
    s->bad[k] = BAD_EARLY;
    diag_error(s->d, at, "compute the value with `let` and use it in both places",
               "output '%s' cannot be read", sym->name);
    return 0;
  }
  if (sym->kind == SYM_LET && !s->defined[k]) {
    /* One report per let: moving the let up fixes every early read. */
    if (s->bad[k] == BAD_EARLY) {
      s->poisoned = 1;
      return 0;
    }
    s->bad[k] = BAD_EARLY;
    if (sym->def == s->st) {
      diag_error(s->d, at,
                 "a let cannot read itself; use another name for the value it builds on",
                 "let '%s' reads itself", sym->name);
    } else {
      char help[192];
      snprintf(help, sizeof help, "move `let %s = ...` above this statement", sym->name);
      diag_error(s->d, at, help, "let '%s' is read before it is assigned (line %d)", sym->name,
                 sym->def ? sym->def->loc.line : sym->loc.line);
    }
    return 0;
  }
  return 1;
}

static void set_ref(Sema *s, Expr *e, int k) {
  const Sym *sym = &s->m->syms[k];
  static const RefKind refs[] = {REF_DIM, REF_INPUT, REF_PARAM, REF_STATE, REF_LET, REF_NONE};
  e->ref = refs[sym->kind];
  e->sym = k;
  if (sym->kind == SYM_STATE) e->has_state = 1;
  if (sym->kind == SYM_LET) e->has_state = s->let_state[k];
}

static void resolve_name(Sema *s, Expr *e) {
  /* An index that reuses a symbol's name (reported) leaves the bare name to the symbol. */
  int clash = find_ivar(s, e->name) >= 0 && find_visible(s, e->name) >= 0;
  if (!clash && (find_ivar(s, e->name) >= 0 || find_forvar(s, e->name) >= 0)) {
    diag_error(s->d, e->loc, "indices select elements, e.g. q[i]; they have no value",
               "index '%s' cannot be used as a value", e->name);
    return;
  }
  int k = mixer_find(s->m, e->name);
  if (k < 0) {
    if (first_unknown(s, e->name))
      diag_error(s->d, e->loc,
                 is_grid_axis(s->m, e->name)
                     ? "grid axes have no value in expressions"
                     : suggest(s, e->name, VALUE_KINDS,
                               arena_printf(s->arena,
                                            "declare it (`input %s`, `param %s`) or compute it "
                                            "first with `let %s = ...`",
                                            e->name, e->name, e->name)),
                 "unknown name '%s'", e->name);
    return;
  }
  const Sym *sym = &s->m->syms[k];
  if (!readable(s, sym, e->loc)) return;
  if (sym->kind != SYM_DIM && sym->rank > 0) {
    diag_error(s->d, e->loc, "index it, e.g. q[i]; sum(i, ...) reduces over an index",
               "'%s' has %d dim%s; it is used here without indices", e->name, sym->rank,
               sym->rank == 1 ? "" : "s");
    return;
  }
  set_ref(s, e, k);
}

static void resolve_index(Sema *s, Expr *e) {
  int k = mixer_find(s->m, e->name);
  if (k < 0) {
    if (first_unknown(s, e->name))
      diag_error(s->d, e->name_loc,
                 suggest(s, e->name, TENSOR_KINDS,
                         arena_printf(s->arena,
                                      "declare it (`input %s[K]`, `param %s[K]`) or compute it "
                                      "first with `let %s[j] = ...`",
                                      e->name, e->name, e->name)),
                 "unknown name '%s'", e->name);
    return;
  }
  const Sym *sym = &s->m->syms[k];
  if (s->bad[k] == BAD_SYM) {
    s->poisoned = 1;
    return;
  }
  if (sym->kind == SYM_DIM) {
    diag_error(s->d, e->loc, "a dim is a number; use it without brackets",
               "dim '%s' cannot be indexed", e->name);
    return;
  }
  if (!readable(s, sym, e->loc)) return;
  if (e->nargs != sym->rank) {
    diag_error(s->d, e->loc,
               sym->rank ? "give one index per dim, as declared"
                         : "it is a scalar; use it without brackets",
               "'%s' has %d dim%s but %d ind%s given", e->name, sym->rank,
               sym->rank == 1 ? "" : "s", e->nargs, e->nargs == 1 ? "ex is" : "ices are");
    return;
  }
  for (int i = 0; i < e->nargs; i++) {
    resolve_position(s, e->args[i], sym, i);
    e->free |= e->args[i]->free;
  }
  set_ref(s, e, k);
}

static void resolve_call(Sema *s, Expr *e) {
  int fn = builtin_lookup(e->name);
  if (fn < 0) {
    const char *help = "the built-ins are exp log sqrt rsqrt abs tanh sigmoid logsigmoid "
                       "softplus silu relu elu min max";
    int k = find_visible(s, e->name), bd = 99;
    for (int f = 0; f < FN__COUNT; f++) {
      int dd = edit_distance(e->name, builtin_name(f));
      if (dd <= near_limit(e->name, builtin_name(f)) && dd < bd) {
        bd = dd;
        help = arena_printf(s->arena, "did you mean '%s'?", builtin_name(f));
      }
    }
    if (k >= 0 && s->m->syms[k].kind != SYM_DIM && s->m->syms[k].kind != SYM_OUTPUT)
      help = arena_printf(s->arena, "'%s' is %s: index it with brackets, %s[...]", e->name,
                          a_kind(s->m->syms[k].kind), e->name);
    diag_error(s->d, e->name_loc, help, "unknown function '%s'", e->name);
    return;
  }
  e->fn = fn;
  if (e->nargs != builtin_arity(fn)) {
    diag_error(s->d, e->loc, "check the call's arguments", "%s takes %d argument%s, not %d",
               e->name, builtin_arity(fn), builtin_arity(fn) == 1 ? "" : "s", e->nargs);
    return;
  }
  for (int i = 0; i < e->nargs; i++) {
    resolve_expr(s, e->args[i]);
    e->free |= e->args[i]->free;
    e->has_state |= e->args[i]->has_state;
  }
}

static void resolve_sum(Sema *s, Expr *e) {
  Ident id = {e->name, e->name_loc};
  check_index_name(s, id); /* reported; the index is still bound, so its uses resolve */
  int v = new_ivar(s, id, -1);
  if (v < 0) return;
  e->bound = v;
  s->scope[s->nscope++] = v;
  resolve_expr(s, e->args[0]);
  s->nscope--;
  e->free = e->args[0]->free & ~((uint64_t)1 << v);
  e->has_state = e->args[0]->has_state;
  if (s->ivars[v].dim < 0 && !stmt_failed(s))
    diag_error(s->d, e->name_loc, "use the index inside the sum to index a tensor, e.g. k[m]",
               "cannot tell what '%s' ranges over", e->name);
}

static void resolve_expr(Sema *s, Expr *e) {
  if (!e) return;
  switch (e->kind) {
  case EX_NUM: return;
  case EX_NAME: resolve_name(s, e); return;
  case EX_INDEX: resolve_index(s, e); return;
  case EX_CALL: resolve_call(s, e); return;
  case EX_SUM: resolve_sum(s, e); return;
  case EX_BIN:
  case EX_NEG:
    for (int i = 0; i < e->nargs; i++) {
      resolve_expr(s, e->args[i]);
      e->free |= e->args[i]->free;
      e->has_state |= e->args[i]->has_state;
    }
    return;
  }
}

/* ---- statements ---- */

static const char *target_help(StmtKind kind) {
  switch (kind) {
  case ST_LET: return "give the let a new name";
  case ST_OUTPUT: return "give the output a new name";
  default: return "only states are assigned without `let` or `output`";
  }
}

/* The symbol a statement assigns; creates lets and outputs at their first assignment. */
static int stmt_target(Sema *s, Stmt *st) {
  int k = mixer_find(s->m, st->name.name);
  if (st->kind == ST_UPDATE) {
    if (k >= 0 && s->m->syms[k].kind == SYM_STATE) return k;
    if (k >= 0 && s->bad[k] == BAD_SYM) {
      s->poisoned = 1;
      return -1;
    }
    if (k >= 0)
      diag_error(s->d, st->name.loc, target_help(st->kind), "cannot assign to %s '%s'",
                 sym_kind_name(s->m->syms[k].kind), st->name.name);
    else if (first_unknown(s, st->name.name))
      diag_error(s->d, st->name.loc,
                 suggest(s, st->name.name, KIND(SYM_STATE),
                         arena_printf(s->arena,
                                      "declare it, `state %s[...]`, or compute a value with "
                                      "`let %s = ...` (%s)",
                                      st->name.name, st->name.name,
                                      list_kind(s, SYM_STATE, "states"))),
                 "unknown state '%s'", st->name.name);
    return -1;
  }
  SymKind kind = st->kind == ST_LET ? SYM_LET : SYM_OUTPUT;
  if (k >= 0) {
    /* The same let statement inside a for loop is assigned once per iteration. */
    if (s->m->syms[k].kind == kind && s->m->syms[k].def == st) return k;
    char help[96];
    snprintf(help, sizeof help, "%s; '%s' is at line %d", target_help(st->kind), st->name.name,
             s->m->syms[k].loc.line);
    diag_error(s->d, st->name.loc, help, "'%s' is already %s", st->name.name,
               a_kind(s->m->syms[k].kind));
    s->bad[k] = BAD_SYM; /* which of the two a use means is unknown: stay quiet */
    return -1;
  }
  Sym *sym = add_sym(s, kind, st->name);
  if (!sym) return -1;
  sym->def = st;
  return (int)(sym - s->m->syms);
}

static void begin_stmt(Sema *s, Stmt *st, int target) {
  s->nivars = 0;
  s->nscope = 0;
  s->too_many_ivars = 0;
  const Sym *sym = target >= 0 ? &s->m->syms[target] : NULL;
  for (int i = 0; i < st->nlhs; i++) {
    int dup = 0;
    for (int j = 0; j < i; j++) dup |= !strcmp(st->lhs[i].name, st->lhs[j].name);
    if (dup) {
      diag_error(s->d, st->lhs[i].loc, "each position needs its own index name",
                 "index '%s' appears twice on the left-hand side", st->lhs[i].name);
      continue;
    }
    check_index_name(s, st->lhs[i]); /* reported; still bound, so its uses resolve */
    int dim = sym && sym->kind == SYM_STATE && i < sym->rank ? sym->shape[i] : -1;
    int v = new_ivar(s, st->lhs[i], dim);
    if (v >= 0) s->scope[s->nscope++] = v;
  }
}

static void finish_stmt(Sema *s, Stmt *st, int target) {
  st->nivars = s->nivars;
  st->ivars = s->nivars ? arena_array(s->arena, (size_t)s->nivars, sizeof *st->ivars) : NULL;
  if (st->ivars) memcpy(st->ivars, s->ivars, (size_t)s->nivars * sizeof *st->ivars);
  if (target < 0 || s->nivars < st->nlhs || stmt_failed(s)) return;
  Sym *sym = &s->m->syms[target];
  if (sym->kind == SYM_STATE) return;
  if (sym->def != st) return;
  sym->rank = st->nlhs;
  for (int i = 0; i < st->nlhs; i++) {
    sym->shape[i] = s->ivars[i].dim;
    if (s->ivars[i].dim < 0)
      diag_error(s->d, st->lhs[i].loc, "use the index on the right-hand side to index a tensor",
                 "cannot tell the size of index '%s'", st->lhs[i].name);
  }
}

static void check_assign(Sema *s, Stmt *st, int target) {
  const Sym *sym = &s->m->syms[target];
  if (s->bad[target] == BAD_SYM) {
    s->poisoned = 1;
  } else if (sym->kind == SYM_STATE && st->nlhs != sym->rank) {
    diag_error(s->d, st->name.loc, "assign the whole state with one index per dim, e.g. S[i, j]",
               "state '%s' has %d dim%s but %d ind%s given", sym->name, sym->rank,
               sym->rank == 1 ? "" : "s", st->nlhs, st->nlhs == 1 ? "ex is" : "ices are");
  }
  if (st->nlhs > MIXC_MAX_RANK) {
    diag_error(s->d, st->lhs[MIXC_MAX_RANK].loc, "use fewer indices",
               "at most %d indices on the left-hand side", MIXC_MAX_RANK);
  }
}

static void check_stmts(Sema *s, Stmt **stmts, int n);

static void check_for(Sema *s, Stmt *st) {
  int dim = resolve_dim(s, st->range);
  if (dim >= 0 && !s->m->syms[dim].fixed) {
    char help[96];
    snprintf(help, sizeof help, "give the dim a size in the source: `dim %s = 2`",
             st->range.name);
    diag_error(s->d, st->range.loc, help, "'for' needs a fixed dim, and '%s' is bound at run time",
               st->range.name);
  }
  int k = find_visible(s, st->name.name), fk = find_forvar(s, st->name.name);
  if (k >= 0 || fk >= 0) {
    diag_error(s->d, st->name.loc, "pick another name for the loop variable",
               "'%s' is already declared as %s (line %d)", st->name.name,
               k >= 0 ? a_kind(s->m->syms[k].kind) : "a for variable",
               k >= 0 ? s->m->syms[k].loc.line : s->m->forvars[fk].loc.line);
    return;
  }
  if (s->nactive_for == (int)(sizeof s->active_for / sizeof s->active_for[0])) {
    diag_error(s->d, st->loc, "flatten the loops", "'for' loops are nested too deeply");
    return;
  }
  ForVar *fv = &s->m->forvars[s->m->nforvars];
  fv->name = st->name.name;
  fv->loc = st->name.loc;
  fv->dim = dim;
  st->sym = s->m->nforvars++;
  s->active_for[s->nactive_for++] = st->sym;
  check_stmts(s, st->body, st->nbody);
  s->nactive_for--;
}

static void check_stmt(Sema *s, Stmt *st) {
  if (st->kind == ST_FOR) {
    check_for(s, st);
    return;
  }
  s->st = st;
  s->errs0 = diag_count(s->d);
  s->poisoned = 0;
  s->nreported = 0;
  int target = stmt_target(s, st);
  st->sym = target;
  if (target >= 0) check_assign(s, st, target);
  begin_stmt(s, st, target);
  resolve_expr(s, st->rhs);
  finish_stmt(s, st, target);
  s->st = NULL;
  if (target < 0) return;
  const Sym *sym = &s->m->syms[target];
  if (sym->kind == SYM_STATE || sym->def != st) return;
  /* A let or output with an error is still assigned here, but its shape is unknown: its
   * later uses stay quiet instead of repeating the error. */
  s->defined[target] = 1;
  if (stmt_failed(s))
    s->bad[target] = BAD_SYM;
  else if (sym->kind == SYM_LET)
    s->let_state[target] = st->rhs ? st->rhs->has_state : 0;
}

static void check_stmts(Sema *s, Stmt **stmts, int n) {
  for (int i = 0; i < n; i++) check_stmt(s, stmts[i]);
}

/* Enter every let and output in textual order before checking statements, so a read
 * that comes before the assignment is told where the assignment is. A name that
 * clashes is left for stmt_target to report at its statement. */
static void enter_targets(Sema *s, Stmt **stmts, int n) {
  for (int i = 0; i < n; i++) {
    Stmt *st = stmts[i];
    if (st->kind == ST_FOR) {
      enter_targets(s, st->body, st->nbody);
      continue;
    }
    if (st->kind == ST_UPDATE || mixer_find(s->m, st->name.name) >= 0 ||
        is_grid_axis(s->m, st->name.name))
      continue;
    Sym *sym = add_sym(s, st->kind == ST_LET ? SYM_LET : SYM_OUTPUT, st->name);
    if (sym) sym->def = st;
  }
}

/* ---- defaults of params: dims and numbers only ---- */

static void check_default(Sema *s, Expr *e, const char *param) {
  if (!e) return;
  if (e->kind == EX_NAME) {
    int k = mixer_find(s->m, e->name);
    if (k >= 0 && s->m->syms[k].kind == SYM_DIM) {
      e->ref = REF_DIM;
      e->sym = k;
    } else if (k < 0 && !is_grid_axis(s->m, e->name)) {
      if (first_unknown(s, e->name))
        diag_error(s->d, e->loc,
                   suggest(s, e->name, KIND(SYM_DIM),
                           "a default is an expression of dims and numbers, e.g. rsqrt(K)"),
                   "unknown name '%s'", e->name);
    } else {
      diag_error(s->d, e->loc, "a default is an expression of dims and numbers, e.g. rsqrt(K)",
                 "the default of '%s' cannot use '%s'", param, e->name);
    }
    return;
  }
  if (e->kind == EX_INDEX || e->kind == EX_SUM) {
    diag_error(s->d, e->loc, "a default is an expression of dims and numbers, e.g. rsqrt(K)",
               "the default of '%s' cannot index or sum", param);
    return;
  }
  if (e->kind == EX_CALL) {
    int fn = builtin_lookup(e->name);
    if (fn < 0 || builtin_arity(fn) != e->nargs) {
      diag_error(s->d, e->loc, "use a built-in function with its number of arguments",
                 "'%s' is not a built-in function of %d argument%s", e->name, e->nargs,
                 e->nargs == 1 ? "" : "s");
      return;
    }
    e->fn = fn;
  }
  for (int i = 0; i < e->nargs; i++) check_default(s, e->args[i], param);
}

/* ---- mixers ---- */

static void check_over(Sema *s) {
  Mixer *m = s->m;
  if (m->ngrid == 0) return;
  if (m->ngrid != 2)
    diag_error(s->d, m->grid[0].loc, "write `over (Y, X)`: scans run over 2-D grids",
               "'over' takes two grid axes, not %d", m->ngrid);
  if (m->ngrid == 2 && !strcmp(m->grid[0].name, m->grid[1].name))
    diag_error(s->d, m->grid[1].loc, "name the axes differently, e.g. (Y, X)",
               "grid axis '%s' appears twice", m->grid[1].name);
  for (int i = 0; i < m->ndirs; i++) {
    if (m->dirs[i] == DIR_ALL && m->ndirs > 1)
      diag_error(s->d, m->dir_locs[i], "`directions (all)` is the non-causal scan on its own",
                 "'all' cannot be combined with other directions");
    for (int j = 0; j < i; j++)
      if (m->dirs[i] == m->dirs[j])
        diag_error(s->d, m->dir_locs[i], "list each direction once",
                   "direction '%s' appears twice", direction_name(m->dirs[i]));
  }
  if (m->ndirs > 1 && m->combine == COMBINE_NONE)
    diag_error(s->d, m->dir_locs[m->ndirs - 1],
               "say how the directions' outputs merge: `combine sum` or `combine mean`",
               "%d directions need a 'combine'", m->ndirs);
}

static int count_outputs(Stmt **stmts, int n) {
  int c = 0;
  for (int i = 0; i < n; i++)
    c += stmts[i]->kind == ST_OUTPUT ? 1 : count_outputs(stmts[i]->body, stmts[i]->nbody);
  return c;
}

static int count_fors(Stmt **stmts, int n) {
  int c = 0;
  for (int i = 0; i < n; i++)
    if (stmts[i]->kind == ST_FOR) c += 1 + count_fors(stmts[i]->body, stmts[i]->nbody);
  return c;
}

static int count_targets(Stmt **stmts, int n) {
  int c = 0;
  for (int i = 0; i < n; i++)
    c += stmts[i]->kind == ST_FOR ? count_targets(stmts[i]->body, stmts[i]->nbody) : 1;
  return c;
}

static void check_output_placement(Sema *s, Stmt **stmts, int n, int in_for) {
  for (int i = 0; i < n; i++) {
    if (stmts[i]->kind == ST_OUTPUT && in_for)
      diag_error(s->d, stmts[i]->loc, "move the output after the loop",
                 "an output inside 'for' would be written once per iteration");
    if (stmts[i]->kind == ST_FOR) check_output_placement(s, stmts[i]->body, stmts[i]->nbody, 1);
  }
}

static int sema_mixer(Arena *a, Diags *d, Mixer *m) {
  int before = diag_count(d);
  Sema s = {0};
  s.arena = a;
  s.d = d;
  s.m = m;
  int cap = m->ndecls + count_targets(m->stmts, m->nstmts) + 1;
  m->syms = arena_array(a, (size_t)cap, sizeof *m->syms);
  m->forvars = arena_array(a, (size_t)count_fors(m->stmts, m->nstmts) + 1, sizeof *m->forvars);
  s.let_state = arena_array(a, (size_t)cap, sizeof *s.let_state);
  s.defined = arena_array(a, (size_t)cap, sizeof *s.defined);
  s.bad = arena_array(a, (size_t)cap, sizeof *s.bad);
  s.clashed = arena_array(a, (size_t)cap, sizeof *s.clashed);
  if (!m->syms || !m->forvars || !s.let_state || !s.defined || !s.bad || !s.clashed) return 1;
  check_over(&s);
  for (int i = 0; i < m->ndecls; i++) declare(&s, m->decls[i]);
  resolve_shapes(&s);
  for (int i = 0; i < m->nsyms; i++)
    if (m->syms[i].kind == SYM_PARAM) check_default(&s, m->syms[i].init, m->syms[i].name);
  check_output_placement(&s, m->stmts, m->nstmts, 0);
  enter_targets(&s, m->stmts, m->nstmts);
  check_stmts(&s, m->stmts, m->nstmts);
  if (count_outputs(m->stmts, m->nstmts) == 0)
    diag_error(d, m->name.loc, "add `output o[j] = ...`: a mixer computes at least one output",
               "mixer '%s' has no output", m->name.name);
  m->checked = diag_count(d) == before;
  return diag_count(d) - before;
}

int sema_program(Arena *a, Diags *d, Program *p) {
  int errors = 0;
  for (int i = 0; i < p->nmixers; i++) {
    for (int j = 0; j < i; j++)
      if (!strcmp(p->mixers[i]->name.name, p->mixers[j]->name.name)) {
        char help[80];
        snprintf(help, sizeof help, "rename one; the first is at line %d",
                 p->mixers[j]->name.loc.line);
        diag_error(d, p->mixers[i]->name.loc, help, "mixer '%s' is defined twice",
                   p->mixers[i]->name.name);
        errors++;
      }
    errors += sema_mixer(a, d, p->mixers[i]);
  }
  return errors;
}
