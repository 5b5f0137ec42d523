/* One compilation: source text -> tokens -> syntax tree -> typed tree -> recurrence IR.
 * Owns an arena with everything built, and the diagnostics. */
#ifndef MIXC_COMPILE_H
#define MIXC_COMPILE_H
#include <stddef.h>

#include "../dsl/ast.h"
#include "../dsl/diag.h"
#include "arena.h"

typedef enum Stage {
  STAGE_AST,   /* parse only */
  STAGE_TYPED, /* + name resolution, shapes, index binding (sema) */
  STAGE_REC,   /* + recurrence analysis and classification (every check of the language) */
} Stage;

typedef struct RecProgram RecProgram; /* compiler/rec.h */

typedef struct Compilation {
  Arena arena;
  Diags diags;
  char *src; /* the compilation's own copy of the text, NUL-terminated */
  size_t srclen;
  Program *prog;    /* NULL when the text did not parse */
  RecProgram *rec;  /* STAGE_REC and no error */
} Compilation;

/* Compile `src` (len bytes; may hold NULs, which are reported). `file` names it in
 * messages. Returns the number of errors (0: every stage up to `stage` succeeded).
 * Always call compilation_free afterwards. */
int compile_source(Compilation *c, const char *file, const char *src, size_t len, Stage stage);
void compilation_free(Compilation *c);

/* The stages, for callers that drive them one at a time. Each returns the error count. */
Program *parse_program(Arena *a, Diags *d, const char *src, size_t len);
int sema_program(Arena *a, Diags *d, Program *p);
int analyze_program(Arena *a, Diags *d, Program *p, RecProgram **out);

#endif
