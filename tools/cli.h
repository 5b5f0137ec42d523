/* Shared pieces of the `mixc` command line. Exit codes: 0 success, 1 an error in the
 * input (the program, a file, a shape, a failed --check), 2 misuse of the command line. */
#ifndef MIXC_CLI_H
#define MIXC_CLI_H
#include "../compiler/compile.h"

enum { EXIT_INPUT = 1, EXIT_USAGE = 2 };

/* Read and compile FILE up to `stage`; prints diagnostics to stderr. Returns 0 on
 * success; the caller frees c with compilation_free either way. */
int cli_compile(const char *path, Stage stage, Compilation *c);
/* The mixer named `name`, or the only one when name is NULL; prints why not. */
const Mixer *cli_pick_mixer(const Compilation *c, const char *name, const char *path);
int cli_usage_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
int cmd_run(int argc, char **argv);
int cmd_emit(int argc, char **argv);
/* Parse "A=1,B=2" (the value of option `opt`), calling set(ctx, key, value, "A=1") for each
 * item; prints a one-line error naming the item and returns 1 on a malformed one or when
 * set returns nonzero. */
int cli_parse_kv(const char *spec, const char *opt,
                 int (*set)(void *ctx, const char *key, long long v, const char *item),
                 void *ctx);

#endif
