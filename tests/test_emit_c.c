/* Standalone C kernels (`mixc emit --target c`) against the fp64 reference.
 *
 * For every example: lower the recurrent strategy, print the whole C file, compile it with
 * the system compiler into a shared object, load it, and run its `NAME_run` entry on the
 * argument tables filled from the kernel plan, with non-contiguous inputs, outputs and
 * states (inputs and outputs stored [B, H, T, ...] and viewed as [B, T, H, ...]; states with
 * padded rows). Fresh random inputs each run (the seed is printed; argv[1] replays it);
 * outputs poisoned with NaN; f32 and bf16 inputs; several T per compiled file. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
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

typedef int (*RunFn)(void *const *ptrs, const int64_t *ints, int64_t items, int threads);

static int passed, failed;

/* One tensor: its fp64 values (contiguous, for the reference) and its storage. */
typedef struct Tensor {
  double *ref;   /* contiguous [layout] */
  void *data;    /* the kernel's storage */
  int rank;
  int64_t shape[16], stride[16]; /* of the kernel's view */
  int64_t numel, alloc;
  KType type;
} Tensor;

static double load_as(KType t, const void *p, int64_t i) {
  if (t == KT_F32) return ((const float *)p)[i];
  return mixc_bf16_to_f32(((const uint16_t *)p)[i]);
}

static void store_as(KType t, void *p, int64_t i, double v) {
  if (t == KT_F32)
    ((float *)p)[i] = (float)v;
  else
    ((uint16_t *)p)[i] = mixc_f32_to_bf16((float)v);
}

/* Offset of the contiguous element `flat` under the tensor's strides. */
static int64_t offset_of(const Tensor *t, int64_t flat) {
  int64_t off = 0;
  for (int d = t->rank - 1; d >= 0; d--) {
    off += (flat % t->shape[d]) * t->stride[d];
    flat /= t->shape[d];
  }
  return off;
}

/* Storage with a non-contiguous view: for [B, T, H, ...] the storage is [B, H, T, ...];
 * otherwise the innermost dim's rows are padded by one element. */
static int make_storage(Tensor *t, int btH) {
  int64_t st = 1;
  if (btH && t->rank >= 3) {
    int64_t inner = 1;
    for (int d = 3; d < t->rank; d++) inner *= t->shape[d];
    for (int d = t->rank - 1; d >= 3; d--) {
      t->stride[d] = st;
      st *= t->shape[d];
    }
    t->stride[1] = inner;                 /* T */
    t->stride[2] = inner * t->shape[1];   /* H */
    t->stride[0] = t->stride[2] * t->shape[2];
    t->alloc = t->stride[0] * t->shape[0];
  } else {
    for (int d = t->rank - 1; d >= 0; d--) {
      t->stride[d] = st;
      st *= t->shape[d] + (d == t->rank - 1 ? 1 : 0);
    }
    t->alloc = st;
  }
  size_t es = t->type == KT_F32 ? 4 : 2;
  t->data = calloc((size_t)(t->alloc ? t->alloc : 1), es);
  return t->data == NULL;
}

static void fill_storage(Tensor *t) {
  for (int64_t i = 0; i < t->numel; i++) {
    double v = t->type == KT_F32 ? mixc_round_f32(t->ref[i]) : mixc_round_bf16(t->ref[i]);
    t->ref[i] = v; /* the reference sees exactly what the kernel reads */
    store_as(t->type, t->data, offset_of(t, i), v);
  }
}

static void poison(Tensor *t) {
  for (int64_t i = 0; i < t->numel; i++) store_as(t->type, t->data, offset_of(t, i), NAN);
}

typedef struct Case {
  const RecMixer *rm;
  const Mixer *m;
  KernelSpec sp;
  KernelPlan pl;
  int64_t *dims;
  KType *dtype;
  unsigned char *present, *want;
  RunFn run;
  void *so;
} Case;

static void layout_shape(const Case *c, int s, int state, int64_t B, int64_t T, int64_t H,
                         int64_t Y, int64_t X, Tensor *t) {
  const Sym *y = &c->m->syms[s];
  int n = 0;
  if (state) {
    t->shape[n++] = B;
    t->shape[n++] = H;
  } else if (y->kind == SYM_PARAM) {
    t->shape[n++] = H;
  } else {
    t->shape[n++] = B;
    if (c->m->ngrid) {
      t->shape[n++] = Y;
      t->shape[n++] = X;
    } else {
      t->shape[n++] = T;
    }
    t->shape[n++] = H;
    if (y->per_direction) t->shape[n++] = c->m->ndirs;
  }
  for (int i = 0; i < y->rank; i++) t->shape[n++] = c->dims[y->shape[i]];
  t->rank = n;
  t->numel = 1;
  for (int i = 0; i < n; i++) t->numel *= t->shape[i];
}

static double rel_err(const Tensor *t, const double *ref, int *nan) {
  double emax = 0, rmax = 0;
  *nan = 0;
  for (int64_t i = 0; i < t->numel; i++) {
    double x = load_as(t->type, t->data, offset_of(t, i));
    double d = fabs(x - ref[i]);
    if (!(d <= INFINITY)) *nan = 1;
    if (d > emax) emax = d;
    if (fabs(ref[i]) > rmax) rmax = fabs(ref[i]);
  }
  return rmax > 0 ? emax / rmax : emax;
}

/* Run one problem size through the compiled kernel and the reference. */
/* Gate stress: log gates drawn half strongly negative (-20 .. -30) and half near zero
 * (-1e-5 .. 0), where chunk forms overflow or lose everything if an exponent is ever positive
 * or a decay is divided out. */
static void stress_gates(MixcRng *rng, double *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    double u = mixc_rng_uniform(rng);
    x[i] = mixc_rng_uniform(rng) < 0.5 ? -20.0 - 10.0 * u : -1e-5 * u;
  }
}

/* Whether an output divides: its conditioning, not the kernel, decides its error under
 * extreme gates, so stress runs only require those outputs to be finite. */
static int divides(const Expr *e) {
  if (!e) return 0;
  if (e->kind == EX_BIN && e->op == '/') return 1;
  for (int i = 0; i < e->nargs; i++)
    if (divides(e->args[i])) return 1;
  return 0;
}

static int mixer_divides(const Mixer *m) {
  for (int i = 0; i < m->nstmts; i++)
    if (m->stmts[i]->kind == ST_OUTPUT && divides(m->stmts[i]->rhs)) return 1;
  return 0;
}

static void run_case(Case *c, const char *file, int64_t T, MixcRng *rng, const char *dtname,
                     const char *strat, int stress) {
  const Mixer *m = c->m;
  int ns = m->nsyms, grid = m->ngrid > 0;
  int64_t B = 2, H = 3, Y = grid ? 3 : 0, X = grid ? 4 : 0;
  if (grid) T = Y * X;
  Tensor *ts = calloc((size_t)ns, sizeof *ts), *fin = calloc((size_t)ns, sizeof *fin);
  double **refout = calloc((size_t)ns, sizeof *refout);
  const double **refin = calloc((size_t)ns, sizeof *refin);
  void **ptrs = calloc((size_t)c->pl.mod->nptrs + 1, sizeof *ptrs);
  int64_t *ints = calloc((size_t)c->pl.mod->nints + 1, sizeof *ints);
  InputRole *roles = calloc((size_t)ns, sizeof *roles);
  if (!ts || !fin || !refout || !refin || !ptrs || !ints || !roles) return;
  mixc_input_roles(m, roles);
  int bad = 0;
  for (int s = 0; s < ns; s++) {
    const Sym *y = &m->syms[s];
    int is_data = y->kind == SYM_INPUT || y->kind == SYM_OUTPUT || c->pl.ptr[s] >= 0;
    if (is_data) {
      Tensor *t = &ts[s];
      t->type = c->dtype[s];
      layout_shape(c, s, 0, B, T, H, Y, X, t);
      t->ref = calloc((size_t)(t->numel ? t->numel : 1), sizeof(double));
      bad |= !t->ref || make_storage(t, y->kind != SYM_PARAM);
      if (bad) break;
      int64_t last = y->rank ? c->dims[y->shape[y->rank - 1]] : 1;
      if (y->kind == SYM_OUTPUT) {
        poison(t);
        refout[s] = t->ref;
      } else {
        if (stress && roles[s] == ROLE_LOG_GATE)
          stress_gates(rng, t->ref, t->numel);
        else
          mixc_fill(rng, roles[s], t->ref, t->numel, last);
        fill_storage(t);
        refin[s] = t->ref;
      }
      ptrs[c->pl.ptr[s]] = t->data;
      for (int d = 0; d < t->rank; d++) ints[c->pl.stride[s] + d] = t->stride[d];
    }
    if (y->kind == SYM_STATE && c->pl.state_in[s] >= 0) {
      Tensor *t = &ts[s];
      t->type = KT_F32;
      layout_shape(c, s, 1, B, T, H, Y, X, t);
      t->ref = calloc((size_t)t->numel, sizeof(double));
      bad |= !t->ref || make_storage(t, 0);
      if (bad) break;
      mixc_fill(rng, roles[s], t->ref, t->numel, 1); /* normal, or non-negative for a normaliser */
      fill_storage(t);
      refin[s] = t->ref;
      ptrs[c->pl.state_in[s]] = t->data;
      for (int d = 0; d < t->rank; d++) ints[c->pl.state_in_stride[s] + d] = t->stride[d];
    }
    if (y->kind == SYM_STATE && c->pl.state_out[s] >= 0) {
      Tensor *t = &fin[s];
      t->type = KT_F32;
      layout_shape(c, s, 1, B, T, H, Y, X, t);
      t->ref = calloc((size_t)t->numel, sizeof(double));
      bad |= !t->ref || make_storage(t, 0);
      if (bad) break;
      poison(t);
      refout[s] = t->ref;
      ptrs[c->pl.state_out[s]] = t->data;
      for (int d = 0; d < t->rank; d++) ints[c->pl.state_out_stride[s] + d] = t->stride[d];
    }
  }
  ints[c->pl.size_B] = B;
  ints[c->pl.size_T] = T;
  ints[c->pl.size_H] = H;
  ints[c->pl.size_N] = B;
  if (grid) {
    ints[c->pl.size_Y] = Y;
    ints[c->pl.size_X] = X;
  }
  char err[256] = "";
  RefBinding b = {0};
  b.B = B;
  b.T = T;
  b.H = H;
  b.Y = Y;
  b.X = X;
  b.dims = c->dims;
  b.in = refin;
  b.out = refout;
  int rc = bad ? 1 : c->run(ptrs, ints, plan_items(&c->pl, B, H), 2);
  int rrc = bad ? 1 : mixc_ref_run(m, &b, err, sizeof err);
  double worst = 0;
  int nan = 0, ok = !rc && !rrc;
  double tol = !strcmp(dtname, "f32") ? 1e-4 : 1e-2; /* bf16 outputs carry 8 bits */
  if (stress && mixer_divides(m)) tol = INFINITY;     /* finite is all that is asked */
  for (int s = 0; ok && s < ns; s++) {
    int n = 0;
    if (m->syms[s].kind == SYM_OUTPUT) {
      double e = rel_err(&ts[s], refout[s], &n);
      if (e > worst) worst = e;
      if (n || !(e <= tol)) ok = 0;
      nan |= n;
    }
    if (fin[s].data) {
      double e = rel_err(&fin[s], refout[s], &n);
      if (e > worst) worst = e;
      if (n || !(e <= 1e-4 * (!strcmp(dtname, "f32") ? 1 : 10))) ok = 0;
      nan |= n;
    }
  }
  printf("%s %-18s %-9s %-5s T=%-3lld%s rel err %.2e%s%s %s\n", ok ? "ok  " : "FAIL",
         m->name.name, strat, dtname, (long long)T, stress ? " gates -30..-20, -1e-5..0" : "",
         worst, nan ? " (NaN)" : "", rc ? " (run failed)" : "", err);
  (void)file;
  if (ok)
    passed++;
  else
    failed++;
  for (int s = 0; s < ns; s++) {
    free(ts[s].ref);
    free(ts[s].data);
    free(fin[s].ref);
    free(fin[s].data);
  }
  free(ts);
  free(fin);
  free(refout);
  free(refin);
  free(ptrs);
  free(ints);
  free(roles);
}

static int compile_so(const char *dir, const char *name, Case *c, const char *src_name) {
  char cpath[512], sopath[512], cmd[2048], err[1024];
  snprintf(cpath, sizeof cpath, "%s/%s.c", dir, name);
  snprintf(sopath, sizeof sopath, "%s/%s.so", dir, name);
  FILE *f = fopen(cpath, "w");
  if (!f) return 1;
  int rc = mixc_emit_c_file(f, src_name, &c->sp, &c->pl, err, sizeof err);
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
  snprintf(sym, sizeof sym, "%s_run", c->rm->name);
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

static char *read_all(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)len + 1);
  if (b && fread(b, 1, (size_t)len, f) != (size_t)len) {
    free(b);
    b = NULL;
  }
  fclose(f);
  *n = (size_t)len;
  return b;
}

static void test_file(const char *dir, const char *path, MixcRng *rng) {
  size_t n;
  char *src = read_all(path, &n);
  Compilation comp;
  if (!src || compile_source(&comp, path, src, n, STAGE_REC)) {
    printf("FAIL %s: does not compile\n", path);
    failed++;
    free(src);
    if (src) compilation_free(&comp);
    return;
  }
  free(src);
  const RecMixer *rm = comp.rec->mixers[0];
  const Mixer *m = rm->mixer;
  static const KType types[] = {KT_F32, KT_BF16};
  static const char *names[] = {"f32", "bf16"};
  static const int64_t choices[] = {3, 5, 16};
  /* variants: f32 / bf16 x recurrent / chunk, and (4) the chunk form with the value dim
   * split into tiles of 2 columns (work items (sequence, head, tile); a remainder tile when
   * the value dim is odd) where the split applies */
  for (int variant = 0; variant < 5; variant++) {
    int ti = variant & 1, chunked = variant >> 1, split = variant == 4;
    const char *why;
    if (split) ti = 0;
    if (chunked && !chunk_applies(rm, &why) && !chunk_dplr_applies(rm, &why)) continue;
    int sdim;
    if (split && !lw_split_applies(rm, &sdim, &why)) continue;
    Case c;
    memset(&c, 0, sizeof c);
    c.rm = rm;
    c.m = m;
    size_t ns = (size_t)m->nsyms + 1;
    c.dims = calloc(ns, sizeof *c.dims);
    c.dtype = calloc(ns, sizeof *c.dtype);
    c.present = calloc(ns, 1);
    c.want = calloc(ns, 1);
    for (int s = 0; s < m->nsyms; s++) {
      const Sym *y = &m->syms[s];
      if (y->kind == SYM_DIM)
        c.dims[s] = y->fixed ? y->fixed : choices[(int)(mixc_rng_uniform(rng) * 3)];
      c.dtype[s] = y->kind == SYM_STATE ? KT_F32 : types[ti];
      /* alternate: params given or defaulted, initial states given or zero */
      c.present[s] = y->kind == SYM_PARAM ? (!y->init || ti == 1)
                                           : y->kind == SYM_STATE && !m->ngrid && ti == 0;
      c.want[s] = y->kind == SYM_STATE && !m->ngrid;
    }
    c.sp.rm = rm;
    c.sp.dims = c.dims;
    c.sp.dtype = c.dtype;
    c.sp.present = c.present;
    c.sp.want = c.want;
    c.sp.strategy = chunked ? STRAT_CHUNK : STRAT_RECURRENT;
    /* 32: T = 70 spans several chunks and a partial one, and each full chunk two
     * sub-chunks of the diagonal-decay rebasing */
    c.sp.chunk = 32;
    c.sp.vtile = split ? 2 : 0;
    char err[1024], name[256];
    snprintf(name, sizeof name, "%s_%s_%s", m->name.name, names[ti],
             split ? "split" : chunked ? "chunk" : "rec");
    if (lower_mixer(&comp.arena, &c.sp, &c.pl, err, sizeof err)) {
      printf("FAIL %s: lower: %s\n", name, err);
      failed++;
    } else if (compile_so(dir, name, &c, path)) {
      failed++;
    } else {
      static const int64_t Ts[] = {0, 1, 7, 33, 70};
      const char *sn = split ? "split" : strategy_name(c.sp.strategy);
      if (split && c.pl.vtiles < 2 && c.dims[sdim] > 2) {
        printf("FAIL %s: vtile 2 of %lld columns gave %lld tiles\n", name,
               (long long)c.dims[sdim], (long long)c.pl.vtiles);
        failed++;
      }
      for (int k = m->ngrid ? 4 : 0; k < 5; k++) run_case(&c, path, Ts[k], rng, names[ti], sn, 0);
      if (ti == 0) run_case(&c, path, 70, rng, names[ti], sn, 1);
    }
    if (c.so) dlclose(c.so);
    free(c.dims);
    free(c.dtype);
    free(c.present);
    free(c.want);
  }
  compilation_free(&comp);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
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
  DIR *d = opendir("examples");
  char *files[256];
  int nf = 0;
  struct dirent *e;
  while (d && (e = readdir(d)) && nf < 256) {
    size_t l = strlen(e->d_name);
    if (l > 4 && !strcmp(e->d_name + l - 4, ".mix")) {
      files[nf] = malloc(l + 16);
      if (files[nf]) snprintf(files[nf++], l + 16, "examples/%s", e->d_name);
    }
  }
  if (d) closedir(d);
  qsort(files, (size_t)nf, sizeof files[0], cmp_str);
  for (int i = 0; i < nf; i++) {
    test_file(dir, files[i], &rng);
    free(files[i]);
  }
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd)) printf("warning: could not remove %s\n", dir);
  if (nf == 0) {
    printf("FAIL: no examples found (run from the repository root)\n");
    failed++;
  }
  printf("test_emit_c: %d passed, %d failed\n", passed, failed);
  return failed != 0;
}
