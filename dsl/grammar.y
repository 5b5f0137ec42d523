/* The grammar of the mix language (LANGUAGE.md), for the Lemon parser generator.
 *
 * Actions are one-line calls into parse.c. Every list symbol owns a malloc'd vector
 * and has a %destructor, so a syntax error that unwinds the stack leaks nothing.
 * Statement separators (newline or ';') arrive from the lexer as one SEP token, newlines
 * already dropped inside ( ) and [ ]. An `error` item resynchronises at the next separator, so
 * one run can report several syntax errors; where the stack holds no state that takes
 * `error` (junk after a complete statement), the parse fails and the driver (parse.c)
 * restarts it at the next separator. */

%name mixcParse
%token_prefix TK_
%token_type {Token}
%extra_context {ParseCtx *ctx}
%stack_size 600
%start_symbol program

%include {
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include "parse.h"
}

%syntax_error {
  /* Which terminals would have been accepted in the state the error was found in. */
  unsigned char expected[YYNTOKEN];
  memset(expected, 0, sizeof expected);
  if (yypParser->yytos->stateno <= YY_MAX_SHIFT) {
    for (int t = 1; t < YYNTOKEN; t++)
      expected[t] = yy_find_shift_action((YYCODETYPE)t, yypParser->yytos->stateno) !=
                    YY_ERROR_ACTION;
  }
  parse_syntax_error(ctx, yymajor, &yyminor, expected, YYNTOKEN);
}
%stack_overflow { parse_stack_overflow(ctx, NULL); }
%parse_failure { ctx->syntax_errors++; ctx->failed = 1; }

%token SEP.
%left PLUS MINUS.
%left STAR SLASH.
%right UMINUS.

/* ---- program and mixers ---- */

program ::= sep_opt mixers(L). { ctx->mixers = L; ctx->done = 1; }

%type mixers {Vec*}
%destructor mixers { vec_free($$); }
mixers(A) ::= . { A = vec_new(ctx, sizeof(Mixer*)); }
mixers(A) ::= mixers(L) mixer(M) sep_opt. { A = vec_push(ctx, L, &M); }

sep_opt ::= .
sep_opt ::= SEP.

%type mixer {Mixer*}
mixer(A) ::= MIXER(K) IDENT(N) over_opt(O) sep_opt LBRACE body(B) RBRACE(E).
  { A = ast_mixer(ctx, K, N, O, B, E); }

%type over_opt {OverSpec*}
over_opt(A) ::= . { A = NULL; }
over_opt(A) ::= OVER LPAREN identlist(G) RPAREN DIRECTIONS LPAREN dirlist(D) RPAREN.
  { A = ast_over(ctx, G, D, NULL); }
over_opt(A) ::= OVER LPAREN identlist(G) RPAREN DIRECTIONS LPAREN dirlist(D) RPAREN
                COMBINE combiner(C).
  { A = ast_over(ctx, G, D, &C); }

combiner(A) ::= IDENT(T). { A = T; }
combiner(A) ::= SUM(T). { A = T; }

%type dirlist {Vec*}
%destructor dirlist { vec_free($$); }
dirlist(A) ::= dir(D). { A = vec_push(ctx, vec_new(ctx, sizeof(DirItem*)), &D); }
dirlist(A) ::= dirlist(L) COMMA dir(D). { A = vec_push(ctx, L, &D); }

%type dir {DirItem*}
dir(A) ::= IDENT(N). { A = ast_dir(ctx, NULL, N); }
dir(A) ::= MINUS(M) IDENT(N). { A = ast_dir(ctx, &M, N); }

/* ---- bodies: declarations and statements, separated ---- */

%type body {Vec*}
%destructor body { vec_free($$); }
body(A) ::= sep_opt. { A = vec_new(ctx, sizeof(Item*)); }
body(A) ::= sep_opt items(L) sep_opt. { A = L; }

%type items {Vec*}
%destructor items { vec_free($$); }
items(A) ::= item(I). { A = vec_push(ctx, vec_new(ctx, sizeof(Item*)), &I); }
items(A) ::= items(L) SEP item(I). { A = vec_push(ctx, L, &I); }

%type item {Item*}
item(A) ::= DIM(K) dimlist(L). { A = item_decls(ctx, K, L); }
item(A) ::= INPUT(K) inputlist(L). { A = item_decls(ctx, K, L); }
item(A) ::= PARAM(K) paramlist(L). { A = item_decls(ctx, K, L); }
item(A) ::= STATE(K) statelist(L). { A = item_decls(ctx, K, L); }
item(A) ::= LET(K) IDENT(N) idx_opt(I) EQ expr(E). { A = item_stmt(ctx, ST_LET, K, N, I, E); }
item(A) ::= IDENT(N) idx_opt(I) EQ expr(E). { A = item_stmt(ctx, ST_UPDATE, N, N, I, E); }
item(A) ::= OUTPUT(K) IDENT(N) idx_opt(I) EQ expr(E).
  { A = item_stmt(ctx, ST_OUTPUT, K, N, I, E); }
item(A) ::= FOR(K) IDENT(V) IN IDENT(R) LBRACE body(B) RBRACE(E).
  { A = item_for(ctx, K, V, R, B, E); }
item(A) ::= error. { A = NULL; }

/* ---- declarations ---- */

%type dimlist {Vec*}
%destructor dimlist { vec_free($$); }
dimlist(A) ::= dimitem(D). { A = vec_push(ctx, vec_new(ctx, sizeof(Decl*)), &D); }
dimlist(A) ::= dimlist(L) COMMA dimitem(D). { A = vec_push(ctx, L, &D); }
%type dimitem {Decl*}
dimitem(A) ::= IDENT(N). { A = ast_dim(ctx, N, NULL); }
dimitem(A) ::= IDENT(N) EQ NUMBER(V). { A = ast_dim(ctx, N, &V); }

%type inputlist {Vec*}
%destructor inputlist { vec_free($$); }
inputlist(A) ::= inputitem(D). { A = vec_push(ctx, vec_new(ctx, sizeof(Decl*)), &D); }
inputlist(A) ::= inputlist(L) COMMA inputitem(D). { A = vec_push(ctx, L, &D); }
%type inputitem {Decl*}
inputitem(A) ::= IDENT(N) shape_opt(S). { A = ast_decl(ctx, D_INPUT, N, S, NULL, 0); }
inputitem(A) ::= IDENT(N) shape_opt(S) PER DIRECTION.
  { A = ast_decl(ctx, D_INPUT, N, S, NULL, 1); }

%type paramlist {Vec*}
%destructor paramlist { vec_free($$); }
paramlist(A) ::= paramitem(D). { A = vec_push(ctx, vec_new(ctx, sizeof(Decl*)), &D); }
paramlist(A) ::= paramlist(L) COMMA paramitem(D). { A = vec_push(ctx, L, &D); }
%type paramitem {Decl*}
paramitem(A) ::= IDENT(N) shape_opt(S). { A = ast_decl(ctx, D_PARAM, N, S, NULL, 0); }
paramitem(A) ::= IDENT(N) shape_opt(S) EQ expr(E). { A = ast_decl(ctx, D_PARAM, N, S, E, 0); }

%type statelist {Vec*}
%destructor statelist { vec_free($$); }
statelist(A) ::= stateitem(D). { A = vec_push(ctx, vec_new(ctx, sizeof(Decl*)), &D); }
statelist(A) ::= statelist(L) COMMA stateitem(D). { A = vec_push(ctx, L, &D); }
%type stateitem {Decl*}
stateitem(A) ::= IDENT(N) shape_opt(S). { A = ast_decl(ctx, D_STATE, N, S, NULL, 0); }

%type shape_opt {Vec*}
%destructor shape_opt { vec_free($$); }
shape_opt(A) ::= . { A = NULL; }
shape_opt(A) ::= LBRACK identlist(L) RBRACK. { A = L; }

%type idx_opt {Vec*}
%destructor idx_opt { vec_free($$); }
idx_opt(A) ::= . { A = NULL; }
idx_opt(A) ::= LBRACK identlist(L) RBRACK. { A = L; }

%type identlist {Vec*}
%destructor identlist { vec_free($$); }
identlist(A) ::= IDENT(N). { Ident i = ast_ident(N); A = vec_push(ctx, vec_new(ctx, sizeof(Ident)), &i); }
identlist(A) ::= identlist(L) COMMA IDENT(N). { Ident i = ast_ident(N); A = vec_push(ctx, L, &i); }

/* ---- expressions ---- */

%type expr {Expr*}
expr(A) ::= expr(L) PLUS expr(R). { A = ast_bin(ctx, L, '+', R); }
expr(A) ::= expr(L) MINUS expr(R). { A = ast_bin(ctx, L, '-', R); }
expr(A) ::= expr(L) STAR expr(R). { A = ast_bin(ctx, L, '*', R); }
expr(A) ::= expr(L) SLASH expr(R). { A = ast_bin(ctx, L, '/', R); }
expr(A) ::= MINUS(M) expr(E). [UMINUS] { A = ast_neg(ctx, M, E); }
expr(A) ::= LPAREN(O) expr(E) RPAREN(C). { A = ast_paren(ctx, O, E, C); }
expr(A) ::= NUMBER(T). { A = ast_num(ctx, T); }
expr(A) ::= IDENT(T). { A = ast_name(ctx, T); }
expr(A) ::= IDENT(N) LBRACK exprlist(L) RBRACK(C). { A = ast_index(ctx, N, L, C); }
expr(A) ::= IDENT(N) LPAREN exprlist(L) RPAREN(C). { A = ast_call(ctx, N, L, C); }
expr(A) ::= IDENT(N) LPAREN RPAREN(C). { A = ast_call(ctx, N, NULL, C); }
expr(A) ::= SUM(K) LPAREN IDENT(I) COMMA expr(E) RPAREN(C). { A = ast_sum(ctx, K, I, E, C); }

%type exprlist {Vec*}
%destructor exprlist { vec_free($$); }
exprlist(A) ::= expr(E). { A = vec_push(ctx, vec_new(ctx, sizeof(Expr*)), &E); }
exprlist(A) ::= exprlist(L) COMMA expr(E). { A = vec_push(ctx, L, &E); }
