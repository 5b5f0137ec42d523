/* libFuzzer harness for the front end: lexer, parser, sema and recurrence analysis.
 *
 * Every input is compiled to STAGE_REC; its diagnostics are rendered (the renderer quotes
 * source lines, so it sees the raw bytes too). When it compiles, every stage's printer runs
 * into /dev/null. Any crash, sanitizer report, leak or timeout is a bug: LANGUAGE.md 6.3
 * says no input, however malformed, crashes the compiler. Run it with tests/fuzz/run.sh. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "compiler/compile.h"
#include "compiler/print.h"
#include "compiler/rec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static FILE *sink;
  if (!sink) sink = fopen("/dev/null", "w");
  if (!sink) abort();
  Compilation c;
  int errors = compile_source(&c, "fuzz.mix", (const char *)data, size, STAGE_REC);
  char *text = diag_render(&c.diags);
  if (text) fputs(text, sink);
  free(text);
  if (!errors && c.prog) {
    ast_print(sink, c.prog, NULL);
    typed_print(sink, c.prog, NULL);
    if (c.rec) rec_print(sink, c.rec);
  }
  compilation_free(&c);
  return 0;
}
