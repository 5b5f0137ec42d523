/* Printers for the syntax tree and the typed tree (`mixc ir --stage ast|typed`), and an
 * expression printer in mix syntax shared by the other IR printers. */
#ifndef MIXC_PRINT_H
#define MIXC_PRINT_H
#include <stdio.h>

#include "../dsl/ast.h"

/* An expression in mix syntax, parenthesised only where precedence needs it. */
void expr_print(FILE *f, const Expr *e);
void ast_print(FILE *f, const Program *p, const char *only_mixer);
void typed_print(FILE *f, const Program *p, const char *only_mixer);

#endif
