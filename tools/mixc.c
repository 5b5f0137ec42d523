#define _POSIX_C_SOURCE 200809L
/* mixc: the command line. Subcommands: check, ir, run, version, help. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../compiler/print.h"
#include "../compiler/rec.h"
#include "cli.h"
#ifdef MIXC_HAVE_LLVM
#include "../backends/llvm/llvm_info.h"
#endif

static const char usage[] =
    "usage: mixc <command> [options]\n"
    "\n"
    "commands:\n"
    "  check FILE                      parse and check FILE; print each mixer's states\n"
    "                                  and their transition classes\n"
    "  ir FILE [--mixer M] [--stage ast|typed|rec]\n"
    "                                  print an intermediate form (default: rec)\n"
    "  run FILE [--mixer M] [--backend ref|ir|cpu|cuda] [--dtype f32|bf16|f16]\n"
    "           [--in NAME=FILE.npy]... [--dims K=..,V=..] [--shape B=..,T=..,H=..]\n"
    "           [--seed N] [--out DIR] [--check] [--time]\n"
    "           [--strategy auto|recurrent|chunk|parallel] [--chunk N] [--vtile N] [--segments N]\n"
    "                                  run a mixer on .npy or random inputs\n"
    "  emit FILE --dims K=..,V=.. [--mixer M] [--target c|llvm|kir] [--dtype f32|bf16|f16]\n"
    "           [--strategy S] [--chunk N] [--vtile N] [--segments N] [-o OUT]\n"
    "                                  print a mixer's kernels: a standalone C file,\n"
    "                                  optimised LLVM IR, or the kernel IR\n"
    "  version                         print the version and the backends built in\n"
    "\n"
    "exit status: 0 success, 1 an error in the input, 2 a misuse of the command line\n";

int cli_usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("mixc: ", stderr);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputs("\n(run `mixc help` for usage)\n", stderr);
  return EXIT_USAGE;
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "mixc: cannot open '%s': %s\n", path, strerror(errno));
    return NULL;
  }
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  while (buf) {
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
    if (n == cap) {
      if (cap >= (size_t)1 << 30) {
        fprintf(stderr, "mixc: '%s' is larger than 1 GiB\n", path);
        free(buf);
        buf = NULL;
        break;
      }
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = nb;
      cap *= 2;
    }
  }
  if (buf && ferror(f)) {
    fprintf(stderr, "mixc: cannot read '%s': %s\n", path, strerror(errno));
    free(buf);
    buf = NULL;
  }
  fclose(f);
  *len = n;
  return buf;
}

int cli_compile(const char *path, Stage stage, Compilation *c) {
  memset(c, 0, sizeof *c);
  size_t len = 0;
  char *src = read_file(path, &len);
  if (!src) return EXIT_INPUT;
  int errors = compile_source(c, path, src, len, stage);
  free(src);
  if (!errors) return 0;
  char *text = diag_render(&c->diags);
  if (text) fputs(text, stderr);
  free(text);
  int n = diag_count(&c->diags);
  fprintf(stderr, "%d error%s\n", n, n == 1 ? "" : "s");
  return EXIT_INPUT;
}

const Mixer *cli_pick_mixer(const Compilation *c, const char *name, const char *path) {
  const Program *p = c->prog;
  if (name) {
    const Mixer *m = program_find(p, name);
    if (!m) fprintf(stderr, "mixc: --mixer %s: '%s' holds no mixer of that name\n", name, path);
    return m;
  }
  if (p->nmixers == 1) return p->mixers[0];
  fprintf(stderr, "mixc: '%s' holds %d mixers (", path, p->nmixers);
  for (int i = 0; i < p->nmixers; i++)
    fprintf(stderr, "%s%s", i ? ", " : "", p->mixers[i]->name.name);
  fputs("); choose one with --mixer\n", stderr);
  return NULL;
}

static int cmd_check(int argc, char **argv) {
  if (argc != 1) return cli_usage_error("check takes one FILE");
  Compilation c;
  int rc = cli_compile(argv[0], STAGE_REC, &c);
  if (!rc) {
    for (int i = 0; i < c.prog->nmixers; i++) {
      const Mixer *m = c.prog->mixers[i];
      printf("%s: mixer %s: ok\n", argv[0], m->name.name);
      const RecMixer *rm = c.rec ? rec_find_mixer(c.rec, m->name.name) : NULL;
      for (int k = 0; rm && k < rm->nstates; k++) {
        char line[256];
        rec_state_summary(line, sizeof line, rm, k);
        printf("  state %s\n", line);
      }
    }
  }
  compilation_free(&c);
  return rc;
}

static int cmd_ir(int argc, char **argv) {
  const char *file = NULL, *mixer = NULL, *stage = "rec";
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--mixer") && i + 1 < argc)
      mixer = argv[++i];
    else if (!strncmp(argv[i], "--stage=", 8))
      stage = argv[i] + 8;
    else if (!strcmp(argv[i], "--stage") && i + 1 < argc)
      stage = argv[++i];
    else if (argv[i][0] == '-' && argv[i][1])
      return cli_usage_error("ir: unknown option '%s'", argv[i]);
    else if (file)
      return cli_usage_error("ir takes one FILE");
    else
      file = argv[i];
  }
  if (!file) return cli_usage_error("ir needs a FILE");
  Stage st;
  if (!strcmp(stage, "ast"))
    st = STAGE_AST;
  else if (!strcmp(stage, "typed"))
    st = STAGE_TYPED;
  else if (!strcmp(stage, "rec"))
    st = STAGE_REC;
  else
    return cli_usage_error("--stage %s: use ast, typed or rec", stage);
  Compilation c;
  int rc = cli_compile(file, st, &c);
  if (!rc && mixer && !program_find(c.prog, mixer)) {
    cli_pick_mixer(&c, mixer, file);
    rc = EXIT_INPUT;
  }
  if (!rc) {
    if (st == STAGE_AST) ast_print(stdout, c.prog, mixer);
    if (st == STAGE_TYPED) typed_print(stdout, c.prog, mixer);
    if (st == STAGE_REC && mixer) rec_print_mixer(stdout, rec_find_mixer(c.rec, mixer));
    if (st == STAGE_REC && !mixer) rec_print(stdout, c.rec);
  }
  compilation_free(&c);
  return rc;
}

static int cmd_version(void) {
  printf("mixc %s\n", MIXC_VERSION_STRING);
  printf("backends: ref (fp64 reference), ir (fp64 recurrence IR)");
#ifdef MIXC_HAVE_LLVM
  char llvm[160];
  mixc_llvm_describe(llvm, sizeof llvm);
  printf(", cpu (%s)", llvm);
#endif
#ifdef MIXC_HAVE_CUDA
  printf(", cuda (NVRTC and the driver loaded at first use)");
#endif
  printf("; emit: c, llvm, kir\n");
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(usage, stderr);
    return EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "check")) return cmd_check(argc - 2, argv + 2);
  if (!strcmp(cmd, "ir")) return cmd_ir(argc - 2, argv + 2);
  if (!strcmp(cmd, "run")) return cmd_run(argc - 2, argv + 2);
  if (!strcmp(cmd, "emit")) return cmd_emit(argc - 2, argv + 2);
  if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) return cmd_version();
  if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
    fputs(usage, stdout);
    return 0;
  }
  return cli_usage_error("unknown command '%s'", cmd);
}

int cli_parse_kv(const char *spec, const char *opt,
                 int (*set)(void *ctx, const char *key, long long v, const char *item),
                 void *ctx) {
  char buf[512];
  if (strlen(spec) >= sizeof buf) {
    fprintf(stderr, "mixc: %s: too long\n", opt);
    return 1;
  }
  strcpy(buf, spec);
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    char item[512], *eq = strchr(tok, '='), *end;
    snprintf(item, sizeof item, "%s", tok);
    if (!eq || eq == tok) {
      fprintf(stderr, "mixc: %s %s: write NAME=SIZE\n", opt, item);
      return 1;
    }
    *eq = 0;
    errno = 0;
    long long v = strtoll(eq + 1, &end, 10);
    if (*end || errno || !eq[1]) {
      fprintf(stderr, "mixc: %s %s: the size must be an integer\n", opt, item);
      return 1;
    }
    if (set(ctx, tok, v, item)) return 1;
  }
  return 0;
}
