/* test_rec_eval: the numerical cross-check of the recurrence analysis.
 *
 * mixc_ir_run (runtime/rec_eval.c) executes a mixer from the recurrence IR's canonical
 * per-class fields (a, dl / dr, ew, the rank-one terms, the outer products), while
 * mixc_ref_run (runtime/reference.c) executes the typed program as written. Both are fp64;
 * if the analysis misclassified or mis-factored anything, they disagree. Each case draws
 * inputs and params by role (runtime/inputs.h), random initial states (normal, std 1/2) for
 * non-grid mixers, poisons every output and final state with NaN in both runs, and requires
 *   max |ir - ref| <= 1e-10 * max(1, max |ref|)
 * for every output and final state (NaN or inf never passes).
 *
 *  1. every .mix file of examples/ (read from disk: run from the repository root, as ctest
 *     does), under random bindings: T in {0, 1, 7, 33}, B in {1, 2}, H in {1, 3}, free dims in
 *     {1, 3, 5, 16} (fixed dims keep their size), grid mixers Y, X in {1, 2, 5}; and, for
 *     non-grid mixers, variable-length batches (B = 1, 3-4 sequences, one of them empty);
 *  2. GEN_COUNT random mixers from tests/gen_mixer.h, covering every transition class
 *     (compiled: one that does not compile is a generator bug, reported with its text), each
 *     under one random binding with dims 1..6 and T <= 12 (sometimes variable-length, some
 *     with zero initial states; grid mixers Y, X in 1..4); the classes the analysis assigned
 *     are tallied, and each class, side and DPLR rank 1..3 must occur (one more case).
 *
 * One line per failing case (the file or the mixer's text, the seed, the error), then
 * `test_rec_eval: N passed, M failed`.
 *
 *   test_rec_eval [seed]      (default: from the time and pid; it is printed) */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../compiler/compile.h"
#include "../compiler/rec.h"
#include "../runtime/inputs.h"
#include "../runtime/rec_eval.h"
#include "../runtime/reference.h"
#include "testlib.h"
#include "gen_mixer.h"

static const double TOL = 1e-10;
enum { GEN_COUNT = 1000, EXAMPLE_BINDINGS = 6, EXAMPLE_VARLEN = 2, MAX_SEQ = 4 };

typedef struct Ctx {
  MixcRng rng;
  uint64_t seed;
  int passed, failed;
  double worst; /* the largest error of a passing case */
  int cls[RC_GENERAL + 1][RS_BOTH + 1]; /* steps of generated mixers, by class and side */
  int rank[4];                          /* DPLR steps by rank (3: 3 or more) */
  int ncases;
} Ctx;

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (!p) {
    fputs("test_rec_eval: out of memory\n", stderr);
    exit(2);
  }
  return p;
}

static int64_t pick(Ctx *cx, const int64_t *set, int n) {
  int k = (int)(mixc_rng_uniform(&cx->rng) * n);
  return set[k < n ? k : n - 1];
}

static int64_t irange(Ctx *cx, int64_t lo, int64_t hi) { /* inclusive */
  int64_t k = lo + (int64_t)(mixc_rng_uniform(&cx->rng) * (double)(hi - lo + 1));
  return k > hi ? hi : k;
}

/* One binding of a mixer. */
typedef struct Shape {
  int64_t B, T, H, Y, X;
  int64_t *dims; /* per symbol */
  int64_t cu[MAX_SEQ + 1];
  int64_t nseq; /* 0: no cu_seqlens */
  int init_states;
} Shape;

static void shape_text(const Mixer *m, const Shape *sh, char *buf, size_t n) {
  size_t k = 0;
  k += (size_t)snprintf(buf + k, n - k, "B=%" PRId64 " T=%" PRId64 " H=%" PRId64, sh->B, sh->T,
                        sh->H);
  if (m->ngrid && k < n) k += (size_t)snprintf(buf + k, n - k, " Y=%" PRId64 " X=%" PRId64, sh->Y, sh->X);
  for (int s = 0; s < m->nsyms && k < n; s++)
    if (m->syms[s].kind == SYM_DIM)
      k += (size_t)snprintf(buf + k, n - k, " %s=%" PRId64, m->syms[s].name, sh->dims[s]);
  if (sh->nseq && k < n) {
    k += (size_t)snprintf(buf + k, n - k, " cu_seqlens=[");
    for (int64_t i = 0; i <= sh->nseq && k < n; i++)
      k += (size_t)snprintf(buf + k, n - k, "%s%" PRId64, i ? "," : "", sh->cu[i]);
    if (k < n) k += (size_t)snprintf(buf + k, n - k, "]");
  }
  if (!sh->init_states && !m->ngrid && k < n) snprintf(buf + k, n - k, " zero-states");
}

/* max |x - want| / max(1, max |want|); NaN when anything is not finite. */
static double compare(const double *x, const double *want, int64_t n) {
  double d = 0, amax = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(x[i]) || !isfinite(want[i])) return NAN;
    double e = fabs(x[i] - want[i]);
    if (e > d) d = e;
    if (fabs(want[i]) > amax) amax = fabs(want[i]);
  }
  return d / (amax > 1 ? amax : 1);
}

/* Draw the arrays of one binding, run both executors, compare. Returns the largest error
 * (NaN: a non-finite value or an executor that failed, with msg set). */
static double run_both(Ctx *cx, const RecMixer *rm, const Shape *sh, char *msg, size_t msglen) {
  const Mixer *m = rm->mixer;
  int n = m->nsyms;
  double **in = xcalloc((size_t)n, sizeof *in), **ref = xcalloc((size_t)n, sizeof *ref);
  double **ir = xcalloc((size_t)n, sizeof *ir);
  InputRole *roles = xcalloc((size_t)n, sizeof *roles);
  mixc_input_roles(m, roles);
  RefBinding b;
  memset(&b, 0, sizeof b);
  b.B = sh->B;
  b.T = sh->T;
  b.H = sh->H;
  b.Y = sh->Y;
  b.X = sh->X;
  b.dims = sh->dims;
  b.in = (const double *const *)in;
  b.cu_seqlens = sh->nseq ? sh->cu : NULL;
  b.nseq = sh->nseq;
  double err = 0;
  msg[0] = 0;
  for (int s = 0; s < n && !msg[0]; s++) {
    const Sym *sym = &m->syms[s];
    if (sym->kind == SYM_DIM || sym->kind == SYM_LET) continue;
    if (sym->kind == SYM_STATE && m->ngrid) continue; /* grid mixers take no states */
    int64_t cnt = mixc_ref_numel(m, &b, s);
    if (cnt < 0) {
      snprintf(msg, msglen, "numel(%s) failed", sym->name);
      break;
    }
    int64_t last = sym->rank ? sh->dims[sym->shape[sym->rank - 1]] : 1;
    if (sym->kind == SYM_INPUT || sym->kind == SYM_PARAM) {
      /* a param with a default is sometimes left to it */
      if (sym->kind == SYM_PARAM && sym->init && mixc_rng_uniform(&cx->rng) < 0.5) continue;
      in[s] = xcalloc((size_t)cnt, sizeof(double));
      mixc_fill(&cx->rng, roles[s], in[s], cnt, last);
      continue;
    }
    if (sym->kind == SYM_STATE && sh->init_states) {
      in[s] = xcalloc((size_t)cnt, sizeof(double));
      mixc_fill(&cx->rng, ROLE_NORMAL, in[s], cnt, last);
    }
    ref[s] = xcalloc((size_t)cnt, sizeof(double));
    ir[s] = xcalloc((size_t)cnt, sizeof(double));
    for (int64_t i = 0; i < cnt; i++) ref[s][i] = ir[s][i] = NAN; /* unwritten shows */
  }
  char e[512];
  if (!msg[0]) {
    b.out = ref;
    if (mixc_ref_run(m, &b, e, sizeof e)) snprintf(msg, msglen, "reference: %s", e);
  }
  if (!msg[0]) {
    b.out = ir;
    if (mixc_ir_run(rm, &b, e, sizeof e)) snprintf(msg, msglen, "ir: %s", e);
  }
  if (!msg[0]) {
    const char *worst = NULL;
    for (int s = 0; s < n; s++) {
      if (!ref[s]) continue;
      double d = compare(ir[s], ref[s], mixc_ref_numel(m, &b, s));
      if (!(d <= err)) { /* NaN sticks: nothing compares above it */
        if (!isnan(err)) {
          err = d;
          worst = m->syms[s].name;
        }
      }
    }
    if (worst && !(err <= TOL)) snprintf(msg, msglen, "worst: %s", worst);
  } else {
    err = NAN;
  }
  for (int s = 0; s < n; s++) {
    free(in[s]);
    free(ref[s]);
    free(ir[s]);
  }
  free(in);
  free(ref);
  free(ir);
  free(roles);
  return err;
}

/* Run one case and count it; a failure prints one line (and `text`, when given). */
static int run_case(Ctx *cx, const RecMixer *rm, const Shape *sh, const char *label,
                    const char *text) {
  char msg[600], shape[400];
  int id = cx->ncases++;
  double err = run_both(cx, rm, sh, msg, sizeof msg);
  int ok = err <= TOL;
  if (ok) {
    cx->passed++;
    if (err > cx->worst) cx->worst = err;
    return 1;
  }
  cx->failed++;
  shape_text(rm->mixer, sh, shape, sizeof shape);
  printf("FAIL %s (mixer %s) seed %" PRIu64 " case %d [%s]: max err %.3g%s%s\n", label, rm->name,
         cx->seed, id, shape, err, msg[0] ? "; " : "", msg);
  if (text) printf("%s", text);
  return 0;
}

/* A variable-length batch: B = 1, 3 or 4 sequences of 0..maxlen tokens, one of them empty. */
static void draw_varlen(Ctx *cx, Shape *sh, int64_t maxlen) {
  sh->B = 1;
  sh->nseq = irange(cx, 3, MAX_SEQ);
  int64_t empty = irange(cx, 0, sh->nseq - 1);
  sh->cu[0] = 0;
  for (int64_t i = 0; i < sh->nseq; i++)
    sh->cu[i + 1] = sh->cu[i] + (i == empty ? 0 : irange(cx, 0, maxlen));
  sh->T = sh->cu[sh->nseq];
}

/* ---- 1. the examples ---- */

static void example_mixer(Ctx *cx, const RecMixer *rm, const char *path) {
  static const int64_t Ts[] = {0, 1, 7, 33}, Bs[] = {1, 2}, Hs[] = {1, 3}, Ds[] = {1, 3, 5, 16};
  static const int64_t YXs[] = {1, 2, 5};
  const Mixer *m = rm->mixer;
  Shape sh;
  memset(&sh, 0, sizeof sh);
  sh.dims = xcalloc((size_t)m->nsyms, sizeof *sh.dims);
  int nb = EXAMPLE_BINDINGS + (m->ngrid ? 0 : EXAMPLE_VARLEN), ok = 0;
  for (int k = 0; k < nb; k++) {
    for (int s = 0; s < m->nsyms; s++)
      if (m->syms[s].kind == SYM_DIM)
        sh.dims[s] = m->syms[s].fixed ? m->syms[s].fixed : pick(cx, Ds, 4);
    sh.H = pick(cx, Hs, 2);
    sh.B = pick(cx, Bs, 2);
    sh.nseq = 0;
    sh.init_states = !m->ngrid;
    if (m->ngrid) {
      sh.Y = pick(cx, YXs, 3);
      sh.X = pick(cx, YXs, 3);
      sh.T = sh.Y * sh.X;
    } else if (k < EXAMPLE_BINDINGS) {
      sh.Y = sh.X = 0;
      sh.T = k < 4 ? Ts[k] : pick(cx, Ts, 4); /* every T at least once */
    } else {
      draw_varlen(cx, &sh, 9);
    }
    ok += run_case(cx, rm, &sh, path, NULL);
  }
  printf("  %-28s %-18s %d/%d bindings agree\n", path, rm->name, ok, nb);
  free(sh.dims);
}

static void examples(Ctx *cx) {
  char *names[256];
  int n = list_examples(names, 256);
  if (n == 0) {
    cx->failed++;
    printf("FAIL examples/: no .mix files (run from the repository root)\n");
  }
  for (int i = 0; i < n; i++) {
    size_t len = 0;
    char *src = read_file(names[i], &len);
    Compilation c;
    int nerr = src ? compile_source(&c, names[i], src, len, STAGE_REC) : -1;
    if (nerr || !c.rec || c.rec->nmixers == 0) {
      cx->failed++;
      printf("FAIL %s seed %" PRIu64 ": does not compile\n", names[i], cx->seed);
      if (src) {
        char *t = diag_render(&c.diags);
        printf("%s", t ? t : "");
        free(t);
      }
    } else {
      for (int k = 0; k < c.rec->nmixers; k++) example_mixer(cx, c.rec->mixers[k], names[i]);
    }
    if (src) compilation_free(&c);
    free(src);
    free(names[i]);
  }
}

/* ---- 2. generated mixers ---- */

static void tally(Ctx *cx, const RecMixer *rm) {
  for (int s = 0; s < rm->nstates; s++)
    for (int k = 0; k < rm->states[s].nsteps; k++) {
      const RecStep *st = &rm->states[s].steps[k];
      cx->cls[st->cls][st->side]++;
      if (st->cls == RC_DPLR) cx->rank[st->nlr >= 3 ? 3 : st->nlr]++;
    }
}

static void generated(Ctx *cx) {
  for (int g = 0; g < GEN_COUNT; g++) {
    char name[32];
    snprintf(name, sizeof name, "gen%d", g);
    char *text = gen_mixer_text(&cx->rng, name);
    Compilation c;
    int nerr = compile_source(&c, "gen.mix", text, strlen(text), STAGE_REC);
    if (nerr || !c.rec || c.rec->nmixers != 1) {
      cx->failed++;
      char *t = diag_render(&c.diags);
      printf("FAIL %s seed %" PRIu64 ": generated mixer does not compile (a generator bug)\n%s%s",
             name, cx->seed, text, t ? t : "");
      free(t);
    } else {
      const RecMixer *rm = c.rec->mixers[0];
      const Mixer *m = rm->mixer;
      tally(cx, rm);
      Shape sh;
      memset(&sh, 0, sizeof sh);
      sh.dims = xcalloc((size_t)m->nsyms, sizeof *sh.dims);
      for (int s = 0; s < m->nsyms; s++)
        if (m->syms[s].kind == SYM_DIM)
          sh.dims[s] = m->syms[s].fixed ? m->syms[s].fixed : irange(cx, 1, 6);
      sh.H = irange(cx, 1, 2);
      sh.init_states = !m->ngrid && mixc_rng_uniform(&cx->rng) < 0.85;
      if (m->ngrid) {
        sh.B = irange(cx, 1, 2);
        sh.Y = irange(cx, 1, 4);
        sh.X = irange(cx, 1, 4);
        sh.T = sh.Y * sh.X;
      } else if (mixc_rng_uniform(&cx->rng) < 0.2) {
        draw_varlen(cx, &sh, 5);
      } else {
        sh.B = irange(cx, 1, 2);
        sh.T = mixc_rng_uniform(&cx->rng) < 0.05 ? 0 : irange(cx, 1, 12);
      }
      run_case(cx, rm, &sh, name, text);
      free(sh.dims);
    }
    compilation_free(&c);
    free(text);
  }
}

/* Every class (and side) the generator aims at must have been produced. */
static void coverage(Ctx *cx) {
  static const struct {
    RecClass c;
    RecSide s;
  } want[] = {{RC_IDENTITY, RS_NONE}, {RC_SCALAR, RS_NONE},     {RC_DIAG, RS_LEFT},
              {RC_DIAG, RS_RIGHT},    {RC_DIAG, RS_BOTH},       {RC_DPLR, RS_LEFT},
              {RC_DPLR, RS_RIGHT},    {RC_ELEMENTWISE, RS_NONE}, {RC_GENERAL, RS_NONE}};
  char line[512];
  size_t k = 0;
  int missing = 0;
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    int n = cx->cls[want[i].c][want[i].s];
    missing += n == 0;
    k += (size_t)snprintf(line + k, sizeof line - k, "%s%s %d", i ? ", " : "",
                          rec_kind_name(want[i].c, want[i].s), n);
  }
  printf("  generated steps by class: %s; dplr rank 1/2/3+: %d/%d/%d\n", line, cx->rank[1],
         cx->rank[2], cx->rank[3]);
  for (int r = 1; r <= 3; r++) missing += cx->rank[r] == 0;
  if (missing) {
    cx->failed++;
    printf("FAIL coverage seed %" PRIu64 ": %d classes or ranks never generated\n", cx->seed,
           missing);
  } else {
    cx->passed++;
  }
}

int main(int argc, char **argv) {
  Ctx cx;
  memset(&cx, 0, sizeof cx);
  cx.seed = argc > 1 ? strtoull(argv[1], NULL, 0)
                     : (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid();
  mixc_rng_seed(&cx.rng, cx.seed);
  printf("test_rec_eval: seed %" PRIu64 " (pass it as argv[1] to repeat)\n", cx.seed);
  clock_t t0 = clock();
  examples(&cx);
  generated(&cx);
  coverage(&cx);
  printf("  largest error of a passing case: %.3g (tolerance %.0e); %.2f s cpu\n", cx.worst, TOL,
         (double)(clock() - t0) / CLOCKS_PER_SEC);
  printf("test_rec_eval: %d passed, %d failed\n", cx.passed, cx.failed);
  return cx.failed ? 1 : 0;
}
