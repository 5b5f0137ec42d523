/* The parse context shared by the Lemon grammar's actions and the driver (parse.c).
 * Lemon carries it through %extra_context, so the parser has no global state.
 *
 * Lists under construction are malloc'd vectors owned by their grammar symbol; the
 * grammar's %destructor frees them when a syntax error unwinds the parser stack, and a
 * finished list is copied into the arena, so nothing leaks on any input. */
#ifndef MIXC_PARSE_H
#define MIXC_PARSE_H
#include "ast.h"
#include "lex.h"

typedef struct Vec {
  void *data;
  int n, cap;
  size_t elem;
} Vec;

typedef struct Item {
  int is_stmt;
  Loc loc;
  Decl **decls;
  int ndecls;
  Stmt *stmt;
} Item;

typedef struct OverSpec {
  Ident *grid;
  int ngrid;
  Direction *dirs;
  Loc *dir_locs;
  int ndirs;
  Combine combine;
  Loc combine_loc;
} OverSpec;

typedef struct DirItem {
  Direction dir;
  Loc loc;
  const char *unknown; /* not a direction: its name (into the source), reported by
                          ast_over once the whole `over` clause has parsed */
  int unknown_len, unknown_rev;
} DirItem;

/* A '{' still open, for the help of an error at the end of the file. */
typedef struct OpenBlock {
  Loc loc;          /* the '{' */
  int is_for;       /* the body of a `for`, else of a mixer */
  const char *name; /* the mixer's name (points into the source), or NULL */
  int len;
} OpenBlock;

enum { PARSE_MAX_OPEN = 64 };

typedef struct ParseCtx {
  Arena *arena;
  Diags *diags;
  Vec *mixers; /* Mixer*, set when the program rule reduces */
  int syntax_errors;
  int done;
  /* What the driver has fed so far, so a syntax error can say what to change. */
  int prev[3];        /* kinds of the last three tokens, most recent first (-1: none) */
  int stmt_first;     /* kind of the first token of the statement being parsed */
  int prev_line;      /* line of the last token */
  /* The open ( and [ (TK_LPAREN, TK_LBRACK) and the open {, innermost last. The counts
   * go on past PARSE_MAX_OPEN; only the outermost PARSE_MAX_OPEN are remembered. */
  int brackets[PARSE_MAX_OPEN];
  Loc bracket_locs[PARSE_MAX_OPEN];
  int nbrackets;
  OpenBlock blocks[PARSE_MAX_OPEN];
  int nblocks;
  int head_for;       /* the last block header seen was `for` (else `mixer`) */
  Token head_name;    /* the name after the last `mixer` */
  int quiet_seps;     /* report no syntax error until this many separators have passed */
  int failed;         /* the parser gave up on the last token (it restarts empty) */
  int reported;       /* syntax errors reported */
  uint64_t keywords_named; /* bit k: keyword TK k was reported used as a name */
} ParseCtx;

Vec *vec_new(ParseCtx *c, size_t elem);
Vec *vec_push(ParseCtx *c, Vec *v, const void *elem); /* returns v; frees nothing */
void vec_free(Vec *v);
void *vec_to_arena(ParseCtx *c, Vec *v, int *n); /* copies, then frees v */

Expr *ast_num(ParseCtx *c, Token t);
Expr *ast_name(ParseCtx *c, Token t);
Expr *ast_index(ParseCtx *c, Token name, Vec *args, Token close);
Expr *ast_call(ParseCtx *c, Token name, Vec *args, Token close);
Expr *ast_sum(ParseCtx *c, Token kw, Token idx, Expr *body, Token close);
Expr *ast_bin(ParseCtx *c, Expr *l, int op, Expr *r);
Expr *ast_neg(ParseCtx *c, Token minus, Expr *e);
Expr *ast_paren(ParseCtx *c, Token open, Expr *e, Token close);

Ident ast_ident(Token t);
Decl *ast_decl(ParseCtx *c, DeclKind kind, Token name, Vec *shape, Expr *init, int per_dir);
Decl *ast_dim(ParseCtx *c, Token name, const Token *value);
Item *item_decls(ParseCtx *c, Token kw, Vec *decls);
Item *item_stmt(ParseCtx *c, StmtKind kind, Token kw, Token name, Vec *lhs, Expr *rhs);
Item *item_for(ParseCtx *c, Token kw, Token var, Token range, Vec *body, Token close);
Mixer *ast_mixer(ParseCtx *c, Token kw, Token name, OverSpec *over, Vec *body, Token close);
OverSpec *ast_over(ParseCtx *c, Vec *grid, Vec *dirs, const Token *combine);
DirItem *ast_dir(ParseCtx *c, const Token *minus, Token name);

void parse_syntax_error(ParseCtx *c, int major, const Token *tok, const unsigned char *expected,
                        int ntokens);
void parse_stack_overflow(ParseCtx *c, const Token *at);

#endif
