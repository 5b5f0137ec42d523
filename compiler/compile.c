/* The front-end pipeline: parse, sema, analysis, with one arena and one list of
 * diagnostics per compilation. Each stage runs only if the ones before it succeeded. */
#include "compile.h"

#include <stdlib.h>
#include <string.h>

int compile_source(Compilation *c, const char *file, const char *src, size_t len, Stage stage) {
  memset(c, 0, sizeof *c);
  arena_init(&c->arena);
  c->src = arena_strndup(&c->arena, src, len);
  c->srclen = len;
  diags_init(&c->diags, &c->arena, file, c->src, len);
  if (!c->src) {
    diag_error(&c->diags, (Loc){0, 0, 1}, NULL, "out of memory");
    return 1;
  }
  c->prog = parse_program(&c->arena, &c->diags, c->src, len);
  if (!c->prog || stage == STAGE_AST) return diag_count(&c->diags);
  if (sema_program(&c->arena, &c->diags, c->prog) || stage == STAGE_TYPED)
    return diag_count(&c->diags);
  analyze_program(&c->arena, &c->diags, c->prog, &c->rec);
  if (c->arena.failed) diag_error(&c->diags, (Loc){0, 0, 1}, NULL, "out of memory");
  return diag_count(&c->diags);
}

void compilation_free(Compilation *c) {
  arena_free(&c->arena);
  memset(c, 0, sizeof *c);
}
