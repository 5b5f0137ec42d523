/* Tokens of the mix language, and the lexer over a whole in-memory buffer. */
#ifndef MIXC_LEX_H
#define MIXC_LEX_H
#include "diag.h"

typedef struct Token {
  int kind;          /* a TK_ code from the generated grammar.h; 0 at end of input */
  Loc loc;
  const char *text;  /* points into the source */
  int len;
  double num;        /* TK_NUMBER */
  Loc unclosed;      /* '{', '}' or the end met with a '(' or '[' still open: where it opened
                        (line 0: none), for the syntax error that follows */
} Token;

/* Lex `src` (NUL-terminated, len bytes before the NUL) into an array of tokens in the
 * arena, ending with a kind-0 token. Newlines inside ( ) and [ ] are dropped; ';' always
 * separates statements; runs of separators become one TK_SEP. Errors go to d. */
Token *lex_all(Arena *a, Diags *d, const char *src, size_t len, int *ntok);

/* A human name for a token kind: "identifier", "'('", "keyword 'sum'", "end of line". */
const char *token_kind_name(int kind);

#endif
