/* The lexer: re2c over the whole source buffer, which ends in a NUL sentinel.
 *
 * Any NUL inside the text is rejected before lexing starts, so the sentinel alone
 * marks the end. Columns count bytes from 1. Bytes outside the language (control
 * characters, non-ASCII outside comments) are reported with their location. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ast.h"
#include "grammar.h"
#include "lex.h"

typedef struct Lexer {
  Arena *arena;
  Diags *diags;
  const char *src, *line_start;
  int line;
  int depth; /* open ( and [ */
  Loc open[64]; /* where the innermost open brackets are */
  Token *toks;
  int n, cap;
} Lexer;

static Loc here(const Lexer *lx, const char *start, const char *end) {
  Loc l;
  l.line = lx->line;
  l.col = (int)(start - lx->line_start) + 1;
  l.len = end > start ? (int)(end - start) : 1;
  return l;
}

static Token *push(Lexer *lx, int kind, const char *s, const char *e) {
  if (lx->n == lx->cap) {
    int cap = lx->cap ? lx->cap * 2 : 256;
    Token *t = arena_array(lx->arena, (size_t)cap, sizeof *t);
    if (!t) return NULL;
    if (lx->n) memcpy(t, lx->toks, (size_t)lx->n * sizeof *t);
    lx->toks = t;
    lx->cap = cap;
  }
  Token *t = &lx->toks[lx->n++];
  memset(t, 0, sizeof *t);
  t->kind = kind;
  t->loc = here(lx, s, e);
  t->text = s;
  t->len = (int)(e - s);
  return t;
}

static void open_bracket(Lexer *lx, int kind, const char *s, const char *e) {
  if (lx->depth < 64) lx->open[lx->depth] = here(lx, s, e);
  lx->depth++;
  push(lx, kind, s, e);
}

static void close_bracket(Lexer *lx, int kind, const char *s, const char *e) {
  if (lx->depth) lx->depth--;
  push(lx, kind, s, e);
}

/* A brace or the end closes every bracket; remember the innermost one still open. */
static void reset_depth(Lexer *lx, int kind, const char *s, const char *e) {
  Loc open = {0, 0, 0};
  if (lx->depth > 0) open = lx->open[lx->depth <= 64 ? lx->depth - 1 : 63];
  lx->depth = 0;
  Token *t = push(lx, kind, s, e);
  if (t) t->unclosed = open;
}

/* A separator: a newline, dropped inside brackets, or ';', which ends the statement
 * wherever it is (inside brackets the parser reports it). Collapsed. */
static void push_sep(Lexer *lx, const char *s, const char *e) {
  if (lx->depth > 0 && *s != ';') return;
  if (lx->n > 0 && lx->toks[lx->n - 1].kind == TK_SEP) return;
  push(lx, TK_SEP, s, e);
}

static void number(Lexer *lx, const char *s, const char *e) {
  char buf[80];
  size_t n = (size_t)(e - s);
  if (n >= sizeof buf) {
    diag_error(lx->diags, here(lx, s, e), "write it with an exponent, e.g. 1.5e-3",
               "number literal is too long (%zu characters)", n);
    return;
  }
  memcpy(buf, s, n);
  buf[n] = 0;
  errno = 0;
  double v = strtod(buf, NULL);
  if (!isfinite(v) || (errno == ERANGE && fabs(v) > 1.0)) {
    diag_error(lx->diags, here(lx, s, e), "numbers must fit in a double (|x| < 1.8e308)",
               "number '%s' is out of range", buf);
    return;
  }
  Token *t = push(lx, TK_NUMBER, s, e);
  if (t) t->num = v;
}

static void ident(Lexer *lx, int kind, const char *s, const char *e) {
  if (e - s > MIXC_MAX_IDENT) {
    diag_error(lx->diags, here(lx, s, s + 1), "shorten the name",
               "identifier is %d characters long; at most %d are allowed", (int)(e - s),
               MIXC_MAX_IDENT);
    return;
  }
  push(lx, kind, s, e);
}

/* One well-formed UTF-8 character: its length, else 0. */
static int utf8_char(const unsigned char *p, const unsigned char *e) {
  int n = p[0] >= 0xF0 && p[0] <= 0xF4 ? 4 : p[0] >= 0xE0 ? 3 : p[0] >= 0xC2 ? 2 : 0;
  if (n == 0 || n > e - p) return 0;
  for (int i = 1; i < n; i++)
    if ((p[i] & 0xC0) != 0x80) return 0;
  return n;
}

/* A run of non-ASCII bytes outside a comment: one error for the whole run. */
static void non_ascii(Lexer *lx, const char *s, const char *e) {
  const unsigned char *p = (const unsigned char *)s, *pe = (const unsigned char *)e;
  int nchars = 0, valid = 1;
  while (p < pe) {
    int n = utf8_char(p, pe);
    if (!n) {
      valid = 0;
      break;
    }
    p += n;
    nchars++;
  }
  const char *help = "names and operators are ASCII; non-ASCII text is allowed only in "
                     "comments (after '#')";
  if (!valid && e - s == 1)
    diag_error(lx->diags, here(lx, s, e), help, "byte 0x%02X is not part of the mix language",
               (unsigned char)*s);
  else if (!valid)
    diag_error(lx->diags, here(lx, s, e), help,
               "%d non-ASCII bytes (from 0x%02X, not UTF-8) are not part of the mix language",
               (int)(e - s), (unsigned char)*s);
  else if (nchars == 1)
    diag_error(lx->diags, here(lx, s, e), help,
               "non-ASCII character '%.*s' is not part of the mix language", (int)(e - s), s);
  else
    diag_error(lx->diags, here(lx, s, e), help,
               "non-ASCII text '%.*s' is not part of the mix language", (int)(e - s), s);
}

static void bad_byte(Lexer *lx, const char *s) {
  unsigned char c = (unsigned char)*s;
  if (c < 0x20 || c == 0x7f)
    diag_error(lx->diags, here(lx, s, s + 1), "remove the control character",
               "control character 0x%02X is not part of the mix language", c);
  else
    diag_error(lx->diags, here(lx, s, s + 1),
               "the mix language uses + - * / = , ; ( ) [ ] { } and '#' comments",
               "unexpected character '%c'", c);
}

/* Reject NUL bytes before lexing: the sentinel must be the only one. */
static int check_nul(Lexer *lx, const char *src, size_t len) {
  const char *nul = memchr(src, 0, len);
  if (!nul) return 0;
  int line = 1;
  const char *ls = src;
  for (const char *p = src; p < nul; p++)
    if (*p == '\n') {
      line++;
      ls = p + 1;
    }
  Loc l = {line, (int)(nul - ls) + 1, 1};
  diag_error(lx->diags, l, "the file must be text; remove the NUL byte",
             "NUL byte in the source");
  return 1;
}

Token *lex_all(Arena *a, Diags *d, const char *src, size_t len, int *ntok) {
  Lexer lx = {0};
  lx.arena = a;
  lx.diags = d;
  lx.src = src;
  lx.line_start = src;
  lx.line = 1;
  *ntok = 0;
  if (check_nul(&lx, src, len)) return NULL;
  const char *YYCURSOR = src, *YYMARKER = src;
  for (;;) {
    const char *s = YYCURSOR;
    /*!re2c
      re2c:define:YYCTYPE = "unsigned char";
      re2c:yyfill:enable = 0;
      re2c:flags:utf-8 = 0;

      digits = [0-9]+;
      exponent = [eE] [+-]? digits;
      number = (digits ("." digits)? | "." digits) exponent?;
      ident = [A-Za-z_][A-Za-z0-9_]*;

      "\x00" { break; }
      [ \t\r\v\f]+ { continue; }
      "#" [^\n\x00]* { continue; }
      "\n" { push_sep(&lx, s, YYCURSOR); lx.line++; lx.line_start = YYCURSOR; continue; }
      ";"  { push_sep(&lx, s, YYCURSOR); continue; }

      "mixer"      { push(&lx, TK_MIXER, s, YYCURSOR); continue; }
      "dim"        { push(&lx, TK_DIM, s, YYCURSOR); continue; }
      "input"      { push(&lx, TK_INPUT, s, YYCURSOR); continue; }
      "param"      { push(&lx, TK_PARAM, s, YYCURSOR); continue; }
      "state"      { push(&lx, TK_STATE, s, YYCURSOR); continue; }
      "let"        { push(&lx, TK_LET, s, YYCURSOR); continue; }
      "output"     { push(&lx, TK_OUTPUT, s, YYCURSOR); continue; }
      "sum"        { push(&lx, TK_SUM, s, YYCURSOR); continue; }
      "for"        { push(&lx, TK_FOR, s, YYCURSOR); continue; }
      "in"         { push(&lx, TK_IN, s, YYCURSOR); continue; }
      "over"       { push(&lx, TK_OVER, s, YYCURSOR); continue; }
      "directions" { push(&lx, TK_DIRECTIONS, s, YYCURSOR); continue; }
      "combine"    { push(&lx, TK_COMBINE, s, YYCURSOR); continue; }
      "per"        { push(&lx, TK_PER, s, YYCURSOR); continue; }
      "direction"  { push(&lx, TK_DIRECTION, s, YYCURSOR); continue; }

      ident  { ident(&lx, TK_IDENT, s, YYCURSOR); continue; }
      number { number(&lx, s, YYCURSOR); continue; }

      "(" { open_bracket(&lx, TK_LPAREN, s, YYCURSOR); continue; }
      ")" { close_bracket(&lx, TK_RPAREN, s, YYCURSOR); continue; }
      "[" { open_bracket(&lx, TK_LBRACK, s, YYCURSOR); continue; }
      "]" { close_bracket(&lx, TK_RBRACK, s, YYCURSOR); continue; }
      "{" { reset_depth(&lx, TK_LBRACE, s, YYCURSOR); continue; }
      "}" { reset_depth(&lx, TK_RBRACE, s, YYCURSOR); continue; }
      "," { push(&lx, TK_COMMA, s, YYCURSOR); continue; }
      "=" { push(&lx, TK_EQ, s, YYCURSOR); continue; }
      "+" { push(&lx, TK_PLUS, s, YYCURSOR); continue; }
      "-" { push(&lx, TK_MINUS, s, YYCURSOR); continue; }
      "*" { push(&lx, TK_STAR, s, YYCURSOR); continue; }
      "/" { push(&lx, TK_SLASH, s, YYCURSOR); continue; }

      [\x80-\xff]+ { non_ascii(&lx, s, YYCURSOR); continue; }
      * { bad_byte(&lx, s); continue; }
    */
  }
  (void)YYMARKER;
  /* A final separator, so the last statement needs no newline. */
  Loc open = lx.depth > 0 ? lx.open[lx.depth <= 64 ? lx.depth - 1 : 63] : (Loc){0, 0, 0};
  lx.depth = 0;
  /* The end of the file is shown just after the last token (past trailing blank lines
   * and comments), where whatever is missing belongs. */
  Loc at = here(&lx, YYCURSOR - 1, YYCURSOR - 1);
  for (int i = lx.n - 1; i >= 0; i--) {
    const Token *last = &lx.toks[i];
    if (last->kind == TK_SEP && last->text[0] == '\n') continue;
    at = last->loc;
    at.col += last->len;
    at.len = 1;
    break;
  }
  int had_sep = lx.n > 0 && lx.toks[lx.n - 1].kind == TK_SEP;
  push_sep(&lx, YYCURSOR - 1, YYCURSOR - 1);
  /* That separator is where an expression cut off by the end of the file is found
   * incomplete: it too knows the bracket left open. */
  if (!had_sep && lx.n > 0 && lx.toks[lx.n - 1].kind == TK_SEP) {
    lx.toks[lx.n - 1].loc = at;
    lx.toks[lx.n - 1].unclosed = open;
  }
  Token *end = push(&lx, 0, YYCURSOR - 1, YYCURSOR - 1);
  if (!end) return NULL;
  end->loc = at;
  end->unclosed = open;
  *ntok = lx.n;
  return lx.toks;
}

const char *token_kind_name(int kind) {
  switch (kind) {
  case 0: return "end of file";
  case TK_SEP: return "end of statement";
  case TK_IDENT: return "a name";
  case TK_NUMBER: return "a number";
  case TK_MIXER: return "'mixer'";
  case TK_DIM: return "'dim'";
  case TK_INPUT: return "'input'";
  case TK_PARAM: return "'param'";
  case TK_STATE: return "'state'";
  case TK_LET: return "'let'";
  case TK_OUTPUT: return "'output'";
  case TK_SUM: return "'sum'";
  case TK_FOR: return "'for'";
  case TK_IN: return "'in'";
  case TK_OVER: return "'over'";
  case TK_DIRECTIONS: return "'directions'";
  case TK_COMBINE: return "'combine'";
  case TK_PER: return "'per'";
  case TK_DIRECTION: return "'direction'";
  case TK_LPAREN: return "'('";
  case TK_RPAREN: return "')'";
  case TK_LBRACK: return "'['";
  case TK_RBRACK: return "']'";
  case TK_LBRACE: return "'{'";
  case TK_RBRACE: return "'}'";
  case TK_COMMA: return "','";
  case TK_EQ: return "'='";
  case TK_PLUS: return "'+'";
  case TK_MINUS: return "'-'";
  case TK_STAR: return "'*'";
  case TK_SLASH: return "'/'";
  default: return "a token";
  }
}
