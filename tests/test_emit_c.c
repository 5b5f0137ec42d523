/* Standalone C kernels (`mixc emit --target c`) against the fp64 reference.
 *
 * For every example: lower the recurrent strategy, print the whole C file, compile it with
 * the system compiler into a shared object, load it, and run its `NAME_run` entry on the
 * argument tables filled from the kernel plan, with non-contiguous inputs, outputs and
 * states (inputs and outputs stored [B, H, T, ...] and viewed as [B, T, H, ...]; states with
 * padded rows). Fresh random inputs each run (the seed is printed; argv[1] replays it);
 * outputs poisoned with NaN; f32 and bf16 inputs; several T per compiled file. Then
 * GEN_C_COUNT random mixers of tests/gen_mixer.h the same way. The chunk strategies and the
 * parallel one (one chunk of 256 tokens) too, where they apply. */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backends/c/c_driver.h"
#include "compiler/compile.h"
#include "compiler/lower.h"
#include "compiler/lower_internal.h"
#include "runtime/half.h"
#include "runtime/inputs.h"
#include "runtime/reference.h"
#include "testlib.h"

typedef int (*RunFn)(void *const *ptrs, const int64_t *ints, int64_t items, int threads);

enum { GEN_C_COUNT = 12 }; /* random mixers a run, after the examples */

static int passed, failed;

typedef struct Case {
  KCase k;
  RunFn run;
  void *so;
} Case;

/* The kernel's pointer table: ptrs[slot] is the tensor's storage. */
static int to_ptrs(void *ctx, int slot, int s, int final, Tensor *t, char *err, size_t n) {
  ((void **)ctx)[slot] = t->data;
  return 0;
}

/* Run one problem size through the compiled kernel and the reference (stress: log gates of
 * -30..-20 and -1e-5..0). */
static void run_case(Case *c, int64_t T, MixcRng *rng, const char *dtname, const char *strat,
                     int stress) {
  const Mixer *m = c->k.m;
  const KernelPlan *pl = &c->k.pl;
  void **ptrs = calloc((size_t)pl->mod->nptrs + 1, sizeof *ptrs);
  int64_t *ints = calloc((size_t)pl->mod->nints + 1, sizeof *ints);
  char err[256] = "";
  KRun r;
  memset(&r, 0, sizeof r);
  int bad = !ptrs || !ints || krun_make(&r, &c->k, T, rng, stress, ints, to_ptrs, ptrs, err,
                                        sizeof err);
  int rc = bad ? 1 : c->run(ptrs, ints, plan_items(pl, r.B, r.H), 2);
  int rrc = bad ? 1 : krun_reference(&r, &c->k, err, sizeof err);
  double worst = 0;
  int nan = 0;
  double tol = !strcmp(dtname, "f32") ? 1e-4 : 1e-2; /* bf16 outputs carry 8 bits */
  if (stress && mixer_divides(m)) tol = INFINITY;     /* finite is all that is asked */
  int ok = check_tensors(m, r.ts, r.fin, r.refout, tol, 1e-4 * (!strcmp(dtname, "f32") ? 1 : 10),
                         !rc && !rrc, &worst, &nan);
  printf("%s %-18s %-9s %-5s T=%-3lld%s rel err %.2e%s%s %s\n", ok ? "ok  " : "FAIL",
         m->name.name, strat, dtname, (long long)r.T,
         stress ? " gates -30..-20, -1e-5..0" : "", worst, nan ? " (NaN)" : "",
         rc ? " (run failed)" : "", err);
  if (ok)
    passed++;
  else
    failed++;
  krun_free(&r);
  free(ptrs);
  free(ints);
}

static int compile_so(const char *dir, const char *name, Case *c, const char *src_name) {
  char cpath[512], sopath[512], cmd[2048], err[1024];
  snprintf(cpath, sizeof cpath, "%s/%s.c", dir, name);
  snprintf(sopath, sizeof sopath, "%s/%s.so", dir, name);
  FILE *f = fopen(cpath, "w");
  if (!f) return 1;
  int rc = mixc_emit_c_file(f, src_name, &c->k.sp, &c->k.pl, err, sizeof err);
  fclose(f);
  if (rc) {
    printf("FAIL %s: emit: %s\n", name, err);
    return 1;
  }
  const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
  snprintf(cmd, sizeof cmd,
           "%s -std=c11 -O1 -Wall -Wextra -Werror -pedantic -fPIC -shared -pthread -o %s %s -lm "
           "2>&1",
           cc, sopath, cpath);
  FILE *p = popen(cmd, "r");
  if (!p) return 1;
  char line[512];
  int printed = 0;
  while (fgets(line, sizeof line, p))
    if (printed++ < 20) printf("  cc: %s", line);
  if (pclose(p) != 0) {
    printf("FAIL %s: the emitted C does not compile cleanly\n", name);
    return 1;
  }
  c->so = dlopen(sopath, RTLD_NOW | RTLD_LOCAL);
  char sym[256];
  snprintf(sym, sizeof sym, "%s_run", c->k.rm->name);
  void *fn = c->so ? dlsym(c->so, sym) : NULL;
  if (!fn) {
    printf("FAIL %s: %s\n", name, dlerror());
    return 1;
  }
  memcpy(&c->run, &fn, sizeof fn);
  return 0;
}

static int have_cc(void) {
  const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
  char cmd[512];
  snprintf(cmd, sizeof cmd, "%s --version >/dev/null 2>&1", cc);
  return system(cmd) == 0;
}

typedef struct Run {
  const char *dir; /* where the C files and shared objects go */
  MixcRng *rng;
} Run;

/* Every variant of one example (each_example's callback; ctx a Run). */
static void test_file(void *ctx, const char *path, Compilation *comp, const RecMixer *rm) {
  const char *dir = ((Run *)ctx)->dir;
  MixcRng *rng = ((Run *)ctx)->rng;
  const Mixer *m = rm->mixer;
  static const char *names[] = {"f32", "bf16"}; /* kcase_draw's alt 0 and 1 */
  /* variants: f32 / bf16 x recurrent / chunk, (4) the chunk form with the value dim split
   * into tiles of 2 columns (work items (sequence, head, tile); a remainder tile when the
   * value dim is odd) where the split applies, and (5) the parallel strategy in f32 (one
   * chunk of 256 tokens: the file knows no T) */
  for (int variant = 0; variant < 6; variant++) {
    int ti = variant & 1, chunked = (variant >> 1) & 1, split = variant == 4;
    int parallel = variant == 5;
    const char *why;
    if (split || parallel) ti = 0, chunked = 1;
    if (chunked && !chunk_applies(rm, &why) && !chunk_dplr_applies(rm, &why)) continue;
    int sdim;
    if (split && !lw_split_applies(rm, &sdim, &why)) continue;
    Case c;
    memset(&c, 0, sizeof c);
    char err[1024], name[256];
    snprintf(name, sizeof name, "%s_%s_%s", m->name.name, names[ti],
             split ? "split" : parallel ? "parallel" : chunked ? "chunk" : "rec");
    if (kcase_draw(&c.k, rm, ti, chunked, rng)) {
      printf("FAIL %s: out of memory\n", name);
      failed++;
      kcase_free(&c.k);
      continue;
    }
    c.k.sp.vtile = split ? 2 : 0;
    if (parallel) c.k.sp.strategy = STRAT_PARALLEL, c.k.sp.chunk = 0;
    if (lower_mixer(&comp->arena, &c.k.sp, &c.k.pl, err, sizeof err)) {
      printf("FAIL %s: lower: %s\n", name, err);
      failed++;
    } else if (compile_so(dir, name, &c, path)) {
      failed++;
    } else {
      static const int64_t Ts[] = {0, 1, 7, 33, 70};
      const char *sn = split ? "split" : strategy_name(c.k.sp.strategy);
      if (split && c.k.pl.vtiles < 2 && c.k.dims[sdim] > 2) {
        printf("FAIL %s: vtile 2 of %lld columns gave %lld tiles\n", name,
               (long long)c.k.dims[sdim], (long long)c.k.pl.vtiles);
        failed++;
      }
      if (parallel && c.k.pl.chunk != LOWER_PARALLEL_TOKENS) {
        printf("FAIL %s: chunk %lld, not one of %d tokens\n", name, (long long)c.k.pl.chunk,
               LOWER_PARALLEL_TOKENS);
        failed++;
      }
      for (int k = m->ngrid ? 4 : 0; k < 5; k++)
        if (!parallel || k % 2) run_case(&c, Ts[k], rng, names[ti], sn, 0);
      if (ti == 0) run_case(&c, 70, rng, names[ti], sn, 1);
    }
    if (c.so) dlclose(c.so);
    kcase_free(&c.k);
  }
}

int main(int argc, char **argv) {
  if (!have_cc()) {
    printf("test_emit_c: 0 passed, 0 failed, 1 skipped (no C compiler)\n");
    return 0;
  }
  unsigned long long seed = argc > 1 ? strtoull(argv[1], NULL, 10)
                                     : (unsigned long long)time(NULL) ^ ((unsigned long long)getpid() << 16);
  printf("test_emit_c: seed %llu\n", seed);
  MixcRng rng;
  mixc_rng_seed(&rng, seed);
  char dir[] = "/tmp/mixc_emit_cXXXXXX";
  if (!mkdtemp(dir)) return 1;
  Run run = {dir, &rng};
  failed += each_example(test_file, &run);
  /* random mixers of gen_mixer.h (every class, outputs anywhere in the token, grids) */
  int bad = each_generated(GEN_C_COUNT, &rng, seed, test_file, &run, &failed);
  failed += bad;
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd)) printf("warning: could not remove %s\n", dir);
  printf("test_emit_c: %d passed, %d failed\n", passed, failed);
  return failed != 0;
}
