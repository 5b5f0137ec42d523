/* CUDA kernels (`mixc emit --target cuda`: the C printer's MIXC_C_CUDA mode) against the
 * fp64 reference, on the GPU.
 *
 * Without a GPU (any machine with NVRTC): every example's CUDA source, both strategies, f32
 * and bf16, is compiled by NVRTC for sm_90a (each a passed test), so CI checks the printer's
 * output compiles. With a GPU: the same sources are compiled for the device, loaded and run
 * (grid = N * H blocks of 128 threads) on inputs, outputs and states with non-contiguous
 * strides as in test_emit_c, outputs poisoned with NaN, and compared with mixc_ref_run
 * (f32 1e-4, bf16 1e-2 relative to max |ref|); T in {0, 1, 7, 33, 70}, T = 2048 for a few
 * examples, and a gate-stress case. argv[1] replays a seed. The NVRTC cache lives in a fresh
 * temporary XDG_CACHE_HOME. MIXC_TEST_REQUIRE_GPU=1 makes "no GPU" a failure. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>

#ifndef MIXC_HAVE_CUDA
int main(void) {
  printf("test_cuda_kernels: 0 passed, 0 failed, 1 skipped (built without MIXC_CUDA)\n");
  return 0;
}
#else
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backends/c/c_emit.h"
#include "backends/cuda/cuda_loader.h"
#include "compiler/compile.h"
#include "compiler/lower.h"
#include "compiler/lower_internal.h"
#include "runtime/half.h"
#include "runtime/inputs.h"
#include "runtime/reference.h"

static int passed, failed, skipped;
static MixcCuda *g_cuda;   /* NULL: no GPU */
static MixcNvrtc *g_nvrtc; /* NULL: no NVRTC */

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
  MixcCudaModule *mod;
  MixcCudaFunc *fn;
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

/* One problem size through the GPU kernel and the reference. */
static void run_case(Case *c, int64_t T, MixcRng *rng, const char *dtname, const char *strat,
                     int stress) {
  const Mixer *m = c->m;
  int ns = m->nsyms, grid = m->ngrid > 0;
  int64_t B = 2, H = 3, Y = grid ? 3 : 0, X = grid ? 4 : 0;
  if (grid) T = Y * X;
  const KModule *mod = c->pl.mod;
  int np = mod->nptrs > 0 ? mod->nptrs : 1, ni = mod->nints > 0 ? mod->nints : 1;
  Tensor *ts = calloc((size_t)ns, sizeof *ts), *fin = calloc((size_t)ns, sizeof *fin);
  double **refout = calloc((size_t)ns, sizeof *refout);
  const double **refin = calloc((size_t)ns, sizeof *refin);
  /* the kernel's MixcArgs struct: np device pointers, then ni int64_t */
  uint64_t *argbuf = calloc((size_t)(np + ni), sizeof *argbuf);
  MixcDevPtr *dts = calloc((size_t)ns, sizeof *dts), *dfin = calloc((size_t)ns, sizeof *dfin);
  InputRole *roles = calloc((size_t)ns, sizeof *roles);
  if (!ts || !fin || !refout || !refin || !argbuf || !dts || !dfin || !roles) {
    printf("FAIL out of memory\n");
    failed++;
    return;
  }
  int64_t *ints = (int64_t *)(argbuf + np);
  mixc_input_roles(m, roles);
  char err[2048] = "";
  int bad = 0;
  for (int s = 0; s < ns && !bad; s++) {
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
      size_t bytes = (size_t)t->alloc * (t->type == KT_F32 ? 4 : 2);
      bad |= mixc_cuda_alloc(g_cuda, bytes, &dts[s], err, sizeof err) ||
             (bytes && mixc_cuda_memcpy_htod(g_cuda, dts[s], t->data, bytes, err, sizeof err));
      argbuf[c->pl.ptr[s]] = dts[s];
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
      size_t bytes = (size_t)t->alloc * 4;
      bad |= mixc_cuda_alloc(g_cuda, bytes, &dts[s], err, sizeof err) ||
             (bytes && mixc_cuda_memcpy_htod(g_cuda, dts[s], t->data, bytes, err, sizeof err));
      argbuf[c->pl.state_in[s]] = dts[s];
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
      size_t bytes = (size_t)t->alloc * 4;
      bad |= mixc_cuda_alloc(g_cuda, bytes, &dfin[s], err, sizeof err) ||
             (bytes && mixc_cuda_memcpy_htod(g_cuda, dfin[s], t->data, bytes, err, sizeof err));
      argbuf[c->pl.state_out[s]] = dfin[s];
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
  /* launch: one block of 128 threads per (sequence, head) */
  int64_t begin = 0, end = B * H;
  MixcDevPtr scratch = 0;
  int rc = bad;
  if (!rc)
    rc = mixc_cuda_alloc(g_cuda, (size_t)((end - begin) * mod->funcs[0]->scratch_floats) * 4,
                         &scratch, err, sizeof err);
  if (!rc && end > begin) {
    unsigned gridv[3] = {(unsigned)(end - begin), 1, 1}, block[3] = {128, 1, 1};
    void *params[4] = {argbuf, &begin, &end, &scratch};
    rc = mixc_cuda_launch(g_cuda, c->fn, gridv, block, 0, NULL, params, err, sizeof err) ||
         mixc_cuda_synchronize(g_cuda, err, sizeof err);
  }
  for (int s = 0; s < ns && !rc; s++) {
    if (m->syms[s].kind == SYM_OUTPUT && dts[s] && ts[s].alloc)
      rc = mixc_cuda_memcpy_dtoh(g_cuda, ts[s].data, dts[s],
                                 (size_t)ts[s].alloc * (ts[s].type == KT_F32 ? 4 : 2), err,
                                 sizeof err);
    if (!rc && dfin[s] && fin[s].alloc)
      rc = mixc_cuda_memcpy_dtoh(g_cuda, fin[s].data, dfin[s], (size_t)fin[s].alloc * 4, err,
                                 sizeof err);
  }
  RefBinding b = {0};
  b.B = B;
  b.T = T;
  b.H = H;
  b.Y = Y;
  b.X = X;
  b.dims = c->dims;
  b.in = refin;
  b.out = refout;
  char rerr[256] = "";
  int rrc = bad ? 1 : mixc_ref_run(m, &b, rerr, sizeof rerr);
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
  printf("%s gpu %-18s %-9s %-5s T=%-4lld%s rel err %.2e%s%s %s%s\n", ok ? "ok  " : "FAIL",
         m->name.name, strat, dtname, (long long)T, stress ? " gates -30..-20, -1e-5..0" : "",
         worst, nan ? " (NaN)" : "", rc ? " (run failed: " : "", rc ? err : "",
         rc ? ")" : rerr);
  if (ok)
    passed++;
  else
    failed++;
  char ferr[256];
  mixc_cuda_free(g_cuda, scratch, ferr, sizeof ferr);
  for (int s = 0; s < ns; s++) {
    mixc_cuda_free(g_cuda, dts[s], ferr, sizeof ferr);
    mixc_cuda_free(g_cuda, dfin[s], ferr, sizeof ferr);
    free(ts[s].ref);
    free(ts[s].data);
    free(fin[s].ref);
    free(fin[s].data);
  }
  free(ts);
  free(fin);
  free(refout);
  free(refin);
  free(argbuf);
  free(dts);
  free(dfin);
  free(roles);
}

static char *read_all(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = len >= 0 ? malloc((size_t)len + 1) : NULL;
  if (b && fread(b, 1, (size_t)len, f) != (size_t)len) {
    free(b);
    b = NULL;
  }
  fclose(f);
  *n = (size_t)len;
  return b;
}

/* The CUDA source of c's kernels (malloc'd), or NULL with a message in err. */
static char *cuda_source(Case *c, char *err, size_t n) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) {
    snprintf(err, n, "open_memstream failed");
    return NULL;
  }
  int rc = mixc_emit_c_module(f, c->pl.mod, MIXC_C_CUDA, err, n);
  fclose(f);
  if (rc) {
    free(buf);
    return NULL;
  }
  return buf;
}

/* Examples that also run at T = 2048. */
static int long_example(const char *name) {
  static const char *const names[] = {"gla", "delta", "mamba2", "rwkv7", "gated_delta"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    if (!strcmp(name, names[i])) return 1;
  return 0;
}

static void test_file(const char *path, MixcRng *rng) {
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
  for (int variant = 0; variant < 4; variant++) {
    int ti = variant & 1, chunked = variant >> 1;
    const char *why;
    if (chunked && !chunk_applies(rm, &why) && !chunk_dplr_applies(rm, &why)) continue;
    Case c;
    memset(&c, 0, sizeof c);
    c.rm = rm;
    c.m = m;
    size_t ns = (size_t)m->nsyms + 1;
    c.dims = calloc(ns, sizeof *c.dims);
    c.dtype = calloc(ns, sizeof *c.dtype);
    c.present = calloc(ns, 1);
    c.want = calloc(ns, 1);
    if (!c.dims || !c.dtype || !c.present || !c.want) return;
    for (int s = 0; s < m->nsyms; s++) {
      const Sym *y = &m->syms[s];
      if (y->kind == SYM_DIM)
        c.dims[s] = y->fixed ? y->fixed : choices[(int)(mixc_rng_uniform(rng) * 3)];
      c.dtype[s] = y->kind == SYM_STATE ? KT_F32 : types[ti];
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
    c.sp.chunk = 32;
    char err[8192], name[256];
    snprintf(name, sizeof name, "%s_%s_%s", m->name.name, names[ti], chunked ? "chunk" : "rec");
    char *cu = NULL;
    if (lower_mixer(&comp.arena, &c.sp, &c.pl, err, sizeof err)) {
      printf("FAIL %s: lower: %s\n", name, err);
      failed++;
    } else if (c.pl.mod->nfuncs != 1) {
      printf("FAIL %s: %d kernel functions (one expected)\n", name, c.pl.mod->nfuncs);
      failed++;
    } else if (!(cu = cuda_source(&c, err, sizeof err))) {
      printf("FAIL %s: emit: %s\n", name, err);
      failed++;
    } else {
      char prog[300];
      snprintf(prog, sizeof prog, "%s.cu", name);
      /* NVRTC alone, for sm_90a (no device needed) */
      if (g_nvrtc) {
        MixcCubin cb;
        memset(&cb, 0, sizeof cb);
        if (mixc_nvrtc_compile(g_nvrtc, cu, prog, 90, &cb, err, sizeof err)) {
          printf("FAIL nvrtc %s (sm_90a): %s\n", name, err);
          failed++;
        } else {
          printf("ok   nvrtc %-24s sm_90a, %zu bytes, %.0f ms%s\n", name, cb.size, cb.ms,
                 cb.cache_hit ? " (cached)" : "");
          passed++;
        }
        mixc_cubin_release(&cb);
      }
      /* on the GPU */
      if (g_cuda) {
        char fname[256];
        mixc_emit_c_func_name(c.pl.mod->funcs[0], fname, sizeof fname);
        if (mixc_cuda_compile(g_cuda, cu, prog, &c.mod, NULL, NULL, err, sizeof err) ||
            mixc_cuda_function(c.mod, fname, &c.fn, err, sizeof err)) {
          printf("FAIL gpu %s: %s\n", name, err);
          failed++;
        } else {
          static const int64_t Ts[] = {0, 1, 7, 33, 70};
          const char *st = strategy_name(c.sp.strategy);
          for (int k = m->ngrid ? 4 : 0; k < 5; k++) run_case(&c, Ts[k], rng, names[ti], st, 0);
          if (ti == 0) run_case(&c, 70, rng, names[ti], st, 1);
          if (ti == 0 && !m->ngrid && long_example(m->name.name))
            run_case(&c, 2048, rng, names[ti], st, 0);
        }
        if (c.mod) mixc_cuda_module_free(c.mod);
      }
    }
    free(cu);
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
  unsigned long long seed = argc > 1 ? strtoull(argv[1], NULL, 10)
                                     : (unsigned long long)time(NULL) ^
                                           ((unsigned long long)getpid() << 16);
  printf("test_cuda_kernels: seed %llu\n", seed);
  MixcRng rng;
  mixc_rng_seed(&rng, seed);
  /* a fresh NVRTC cache */
  char cache[] = "/tmp/mixc_cuda_kXXXXXX";
  if (!mkdtemp(cache)) return 1;
  setenv("XDG_CACHE_HOME", cache, 1);
  char err[1024];
  const char *req = getenv("MIXC_TEST_REQUIRE_GPU");
  if (mixc_cuda_open(0, &g_cuda, err, sizeof err)) {
    g_cuda = NULL;
    printf("no GPU: %s\n", err);
    if (req && *req && strcmp(req, "0")) {
      printf("FAIL: MIXC_TEST_REQUIRE_GPU is set\n");
      failed++;
    } else {
      skipped++;
    }
  } else {
    const MixcCudaInfo *in = mixc_cuda_info(g_cuda);
    printf("GPU: %s (%s), NVRTC %d.%d\n", in->name, in->target, in->nvrtc_major,
           in->nvrtc_minor);
  }
  if (mixc_nvrtc_open(0, &g_nvrtc, err, sizeof err)) {
    g_nvrtc = NULL;
    printf("no NVRTC: %s\n", err);
  }
  if (g_nvrtc || g_cuda) {
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
      test_file(files[i], &rng);
      free(files[i]);
    }
    if (nf == 0) {
      printf("FAIL: no examples found (run from the repository root)\n");
      failed++;
    }
  }
  if (g_nvrtc) mixc_nvrtc_close(g_nvrtc);
  if (g_cuda) mixc_cuda_close(g_cuda);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", cache);
  if (system(cmd)) printf("warning: could not remove %s\n", cache);
  printf("test_cuda_kernels: %d passed, %d failed, %d skipped\n", passed, failed, skipped);
  return failed != 0;
}
#endif
