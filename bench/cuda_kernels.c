/* The GPU kernels' speed (docs/gpu.md, "Kernel speed"): a mixer's chunk kernel as
 * mixc_emit_cuda_module prints it, for bf16 inputs, H = 16, K = V = 128, at (B, T) = (8, 2048)
 * and (1, 32768), in several printing variants (the first printer's choices, and each of this
 * printer's steps), each checked against the fp64 reference on a small case (B = 2, T = 100,
 * H = 2) before it is timed. Times: CUDA events around one launch, 3 warm-up launches, the
 * median of 20; GB/s is the fewest bytes the kernel must move (bf16 q, k, v, gates, o) over
 * that time, and "x floor" the time over those bytes at 3.0 TB/s (PERFORMANCE.md).
 *
 *   bench/cuda_kernels [--quick] [mixer.mix ...]     (from the repository root; a GPU needed)
 *
 * Built by the GPU-only CMake build (-DMIXC_CUDA=ON: build/bench/cuda_kernels), not a test. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/c/c_emit.h"
#include "backends/cuda/cuda_loader.h"
#include "compiler/compile.h"
#include "compiler/lower.h"
#include "runtime/half.h"
#include "runtime/inputs.h"
#include "runtime/reference.h"

typedef struct Variant {
  const char *name;
  int flags;
} Variant;

static const Variant variants[] = {
    {"first printer (fp32 matmul, global scratch, 256 thr)",
     MIXC_C_CUDA_FP32_MATMUL | MIXC_C_CUDA_GLOBAL_SCRATCH | MIXC_C_CUDA_PLAIN_LOOPS},
    {"+ shared-memory scratch", MIXC_C_CUDA_FP32_MATMUL | MIXC_C_CUDA_PLAIN_LOOPS},
    {"+ TF32 tensor-core matmul", MIXC_C_CUDA_PLAIN_LOOPS},
    {"+ collapsed loops (default, 256 thr)", 0},
    {"default, 128 threads", MIXC_C_CUDA_THREADS_128},
    {"default, 512 threads", MIXC_C_CUDA_THREADS_512},
};

typedef struct Bench {
  MixcCuda *cu;
  const Mixer *m;
  const RecMixer *rm;
  KernelPlan pl;
  MixcCudaLaunch launch;
  MixcCudaFunc *fn;
  MixcCudaModule *mod;
  int64_t *dims;
  KType *dtype;
} Bench;

/* One problem: device tensors contiguous [B, T, H, dims] (params [H, dims]), filled by role. */
typedef struct Problem {
  int64_t B, T, H;
  int ns;
  double **ref;     /* per symbol: fp64 values (small checks only) */
  MixcDevPtr *dev;  /* per symbol */
  int64_t *numel;
  uint64_t *argbuf; /* ptrs then ints */
  double bytes;     /* q, k, v, gates, o: bf16 */
  MixcDevPtr scratch;
  int64_t items;
} Problem;

static void problem_free(Bench *b, Problem *p) {
  char e[256];
  for (int s = 0; s < p->ns; s++) {
    if (p->ref) free(p->ref[s]);
    if (p->dev) mixc_cuda_free(b->cu, p->dev[s], e, sizeof e);
  }
  mixc_cuda_free(b->cu, p->scratch, e, sizeof e);
  free(p->ref);
  free(p->dev);
  free(p->numel);
  free(p->argbuf);
}

static int problem_make(Bench *b, Problem *p, int64_t B, int64_t T, int64_t H, int keep_ref,
                        MixcRng *rng, char *err, size_t n) {
  const Mixer *m = b->m;
  const KModule *mod = b->pl.mod;
  int np = mod->nptrs > 0 ? mod->nptrs : 1, ni = mod->nints > 0 ? mod->nints : 1;
  memset(p, 0, sizeof *p);
  p->B = B, p->T = T, p->H = H, p->ns = m->nsyms;
  p->ref = calloc((size_t)m->nsyms + 1, sizeof *p->ref);
  p->dev = calloc((size_t)m->nsyms + 1, sizeof *p->dev);
  p->numel = calloc((size_t)m->nsyms + 1, sizeof *p->numel);
  p->argbuf = calloc((size_t)(np + ni), sizeof *p->argbuf);
  InputRole *roles = calloc((size_t)m->nsyms + 1, sizeof *roles);
  if (!p->ref || !p->dev || !p->numel || !p->argbuf || !roles) {
    free(roles);
    snprintf(err, n, "out of memory");
    return 1;
  }
  mixc_input_roles(m, roles);
  int64_t *ints = (int64_t *)(p->argbuf + np);
  for (int s = 0; s < m->nsyms; s++) {
    const Sym *y = &m->syms[s];
    if (b->pl.ptr[s] < 0 || (y->kind != SYM_INPUT && y->kind != SYM_OUTPUT &&
                             y->kind != SYM_PARAM))
      continue;
    int64_t shape[16];
    int r = 0;
    if (y->kind != SYM_PARAM) shape[r++] = B, shape[r++] = T;
    shape[r++] = H;
    for (int i = 0; i < y->rank; i++) shape[r++] = b->dims[y->shape[i]];
    int64_t numel = 1, st = 1;
    for (int d = 0; d < r; d++) numel *= shape[d];
    for (int d = r - 1; d >= 0; d--) {
      ints[b->pl.stride[s] + d] = st;
      st *= shape[d];
    }
    p->numel[s] = numel;
    if (y->kind != SYM_PARAM) p->bytes += 2.0 * (double)numel;
    size_t nbytes = (size_t)numel * 2;
    if (mixc_cuda_alloc(b->cu, nbytes, &p->dev[s], err, n)) break;
    p->argbuf[b->pl.ptr[s]] = p->dev[s];
    uint16_t *h = malloc(nbytes ? nbytes : 1);
    double *x = malloc((size_t)(numel ? numel : 1) * sizeof *x);
    if (!h || !x) {
      free(h);
      free(x);
      snprintf(err, n, "out of memory");
      break;
    }
    int64_t last = y->rank ? b->dims[y->shape[y->rank - 1]] : 1;
    if (y->kind == SYM_OUTPUT) {
      for (int64_t i = 0; i < numel; i++) h[i] = 0x7fc0; /* NaN */
    } else {
      mixc_fill(rng, roles[s], x, numel, last);
      for (int64_t i = 0; i < numel; i++) {
        h[i] = mixc_f32_to_bf16((float)x[i]);
        x[i] = mixc_bf16_to_f32(h[i]);
      }
    }
    int rc = mixc_cuda_memcpy_htod(b->cu, p->dev[s], h, nbytes, err, n);
    free(h);
    if (keep_ref)
      p->ref[s] = x;
    else
      free(x);
    if (rc) break;
  }
  free(roles);
  if (err[0]) return 1;
  ints[b->pl.size_B] = B;
  ints[b->pl.size_T] = T;
  ints[b->pl.size_H] = H;
  ints[b->pl.size_N] = B;
  p->items = plan_items(&b->pl, B, H);
  return 0;
}

/* The global scratch the variant printed last needs (the inputs stay). */
static int problem_scratch(Bench *b, Problem *p, char *err, size_t n) {
  char e[256];
  mixc_cuda_free(b->cu, p->scratch, e, sizeof e);
  p->scratch = 0;
  return b->launch.global_scratch_floats > 0 &&
         mixc_cuda_alloc(b->cu, (size_t)(p->items * b->launch.global_scratch_floats) * 4,
                         &p->scratch, err, n);
}

static int launch(Bench *b, Problem *p, char *err, size_t n) {
  int64_t begin = 0, end = p->items;
  unsigned grid[3] = {(unsigned)p->items, 1, 1}, block[3] = {b->launch.threads, 1, 1};
  void *params[4] = {p->argbuf, &begin, &end, &p->scratch};
  return mixc_cuda_launch(b->cu, b->fn, grid, block, b->launch.smem_bytes, NULL, params, err, n);
}

/* Small case against the reference: the largest error relative to max |ref| of the outputs. */
static int check(Bench *b, MixcRng *rng, double *relerr, char *err, size_t n) {
  Problem p;
  int rc = problem_make(b, &p, 2, 100, 2, 1, rng, err, n) || problem_scratch(b, &p, err, n);
  rc = rc || launch(b, &p, err, n) || mixc_cuda_synchronize(b->cu, err, n);
  const Mixer *m = b->m;
  const double **in = calloc((size_t)m->nsyms + 1, sizeof *in);
  double **out = calloc((size_t)m->nsyms + 1, sizeof *out);
  if (!rc && (!in || !out)) rc = 1, snprintf(err, n, "out of memory");
  for (int s = 0; !rc && s < m->nsyms; s++) {
    if (m->syms[s].kind == SYM_OUTPUT)
      out[s] = p.ref[s];
    else
      in[s] = p.ref[s];
  }
  RefBinding rb = {0};
  rb.B = 2, rb.T = 100, rb.H = 2, rb.dims = b->dims, rb.in = in, rb.out = out;
  if (!rc && mixc_ref_run(m, &rb, err, n)) rc = 1;
  double worst = 0;
  for (int s = 0; !rc && s < m->nsyms; s++) {
    if (m->syms[s].kind != SYM_OUTPUT || !p.dev[s]) continue;
    int64_t ne = p.numel[s];
    uint16_t *h = malloc((size_t)ne * 2 + 2);
    if (!h || mixc_cuda_memcpy_dtoh(b->cu, h, p.dev[s], (size_t)ne * 2, err, n)) {
      free(h);
      rc = 1;
      break;
    }
    double emax = 0, rmax = 0;
    for (int64_t i = 0; i < ne; i++) {
      double d = fabs(mixc_bf16_to_f32(h[i]) - p.ref[s][i]);
      if (!(d <= INFINITY)) d = INFINITY; /* NaN: an element not written */
      if (d > emax) emax = d;
      if (fabs(p.ref[s][i]) > rmax) rmax = fabs(p.ref[s][i]);
    }
    free(h);
    double e = rmax > 0 ? emax / rmax : emax;
    if (e > worst) worst = e;
  }
  free(in);
  free(out);
  problem_free(b, &p);
  *relerr = worst;
  return rc;
}

static int cmp_f(const void *x, const void *y) {
  float a = *(const float *)x, c = *(const float *)y;
  return a < c ? -1 : a > c;
}

/* The median of 20 launches after 3 warm-up ones; of 3 after 1 when one launch takes over
 * 100 ms (the slow first printer at long T), *reps says which. */
static int timeit(Bench *b, Problem *p, float *ms, int *reps, char *err, size_t n) {
  MixcCudaEvent *e0 = NULL, *e1 = NULL;
  float t[20];
  int rc = mixc_cuda_event_create(b->cu, &e0, err, n) || mixc_cuda_event_create(b->cu, &e1, err, n);
  rc = rc || mixc_cuda_event_record(b->cu, e0, NULL, err, n) || launch(b, p, err, n) ||
       mixc_cuda_event_record(b->cu, e1, NULL, err, n) ||
       mixc_cuda_event_elapsed(b->cu, e0, e1, &t[0], err, n);
  int nrep = !rc && t[0] > 100.0f ? 3 : 20;
  for (int i = 0; !rc && nrep == 20 && i < 2; i++) rc = launch(b, p, err, n);
  rc = rc || mixc_cuda_synchronize(b->cu, err, n);
  for (int i = 0; !rc && i < nrep; i++)
    rc = mixc_cuda_event_record(b->cu, e0, NULL, err, n) || launch(b, p, err, n) ||
         mixc_cuda_event_record(b->cu, e1, NULL, err, n) ||
         mixc_cuda_event_elapsed(b->cu, e0, e1, &t[i], err, n);
  if (e0) mixc_cuda_event_destroy(b->cu, e0);
  if (e1) mixc_cuda_event_destroy(b->cu, e1);
  if (rc) return 1;
  qsort(t, (size_t)nrep, sizeof *t, cmp_f);
  *ms = nrep == 20 ? (t[9] + t[10]) / 2 : t[1];
  *reps = nrep;
  return 0;
}

static char *read_all(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = len >= 0 ? malloc((size_t)len + 1) : NULL;
  if (s && fread(s, 1, (size_t)len, f) != (size_t)len) {
    free(s);
    s = NULL;
  }
  fclose(f);
  *n = (size_t)len;
  return s;
}

static void bench_file(MixcCuda *cu, const char *path, int quick, MixcRng *rng) {
  size_t len;
  char *src = read_all(path, &len);
  Compilation comp;
  if (!src || compile_source(&comp, path, src, len, STAGE_REC)) {
    printf("%s: does not compile\n", path);
    free(src);
    if (src) compilation_free(&comp);
    return;
  }
  free(src);
  Bench b;
  memset(&b, 0, sizeof b);
  b.cu = cu;
  b.rm = comp.rec->mixers[0];
  b.m = b.rm->mixer;
  const Mixer *m = b.m;
  size_t ns = (size_t)m->nsyms + 1;
  b.dims = calloc(ns, sizeof *b.dims);
  b.dtype = calloc(ns, sizeof *b.dtype);
  unsigned char *present = calloc(ns, 1), *want = calloc(ns, 1);
  if (!b.dims || !b.dtype || !present || !want) goto done;
  for (int s = 0; s < m->nsyms; s++) {
    const Sym *y = &m->syms[s];
    if (y->kind == SYM_DIM) b.dims[s] = y->fixed ? y->fixed : 128;
    b.dtype[s] = y->kind == SYM_STATE ? KT_F32 : KT_BF16;
    present[s] = y->kind == SYM_PARAM && !y->init;
  }
  KernelSpec sp;
  memset(&sp, 0, sizeof sp);
  sp.rm = b.rm;
  sp.dims = b.dims;
  sp.dtype = b.dtype;
  sp.present = present;
  sp.want = want;
  sp.strategy = STRAT_CHUNK;
  char err[8192] = "";
  if (lower_mixer(&comp.arena, &sp, &b.pl, err, sizeof err)) {
    printf("%s: lower: %s\n", path, err);
    goto done;
  }
  const MixcCudaInfo *in = mixc_cuda_info(cu);
  MixcCudaTarget t = {in->arch, in->max_smem_per_block_optin};
  printf("\n%s: chunk %lld, vtiles %lld, scratch %lld floats\n", m->name.name,
         (long long)b.pl.chunk, (long long)b.pl.vtiles,
         (long long)b.pl.mod->funcs[0]->scratch_floats);
  static const int64_t shapes[2][2] = {{8, 2048}, {1, 32768}};
  int nv = (int)(sizeof variants / sizeof *variants);
  /* the large problems, made once (filling them takes seconds) */
  Problem big[2];
  int have[2];
  for (int k = 0; k < 2; k++) {
    have[k] = !problem_make(&b, &big[k], shapes[k][0], shapes[k][1], 16, 0, rng, err, sizeof err);
    if (!have[k]) printf("  B=%lld T=%lld: %s\n", (long long)shapes[k][0],
                         (long long)shapes[k][1], err);
    err[0] = 0;
  }
  for (int v = quick ? 3 : 0; v < nv; v++) {
    char *cu_src = NULL;
    size_t cl = 0;
    FILE *f = open_memstream(&cu_src, &cl);
    if (!f) break;
    int rc = mixc_emit_cuda_module(f, b.pl.mod, &t, variants[v].flags, &b.launch, err, sizeof err);
    fclose(f);
    char fname[256];
    mixc_emit_c_func_name(b.pl.mod->funcs[0], fname, sizeof fname);
    double ms_c = 0;
    rc = rc || mixc_cuda_compile(cu, cu_src, "bench.cu", &b.mod, &ms_c, NULL, err, sizeof err) ||
         mixc_cuda_function(b.mod, fname, &b.fn, err, sizeof err);
    free(cu_src);
    double rel = 0;
    rc = rc || check(&b, rng, &rel, err, sizeof err);
    if (rc) {
      printf("  %-52s FAILED: %s\n", variants[v].name, err);
      if (b.mod) mixc_cuda_module_free(b.mod);
      b.mod = NULL;
      continue;
    }
    printf("  %-52s %u thr, smem %u B, %d regs, compile %.0f ms, rel err %.1e%s\n",
           variants[v].name, b.launch.threads, b.launch.smem_bytes,
           mixc_cuda_func_num_regs(b.fn), ms_c, rel, rel <= 5e-3 ? "" : " (ABOVE 5e-3)");
    float first_ms = 0;
    for (int k = 0; k < 2 && rel <= 1e-2; k++) {
      if (k == 1 && first_ms > 50.0f) { /* it would take seconds a launch */
        printf("    B=1 T=32768  (not timed: over 50 ms at B=8 T=2048)\n");
        continue;
      }
      Problem *pp = &big[k];
      float ms = 0;
      int reps = 0;
      if (!have[k]) continue;
      if (problem_scratch(&b, pp, err, sizeof err) || timeit(&b, pp, &ms, &reps, err, sizeof err))
        printf("    B=%lld T=%lld: %s\n", (long long)shapes[k][0], (long long)shapes[k][1], err);
      else
        printf("    B=%lld T=%-5lld %9.3f ms  %7.1f GB/s  %6.1fx floor%s\n",
               (long long)shapes[k][0], (long long)shapes[k][1], ms, pp->bytes / ms / 1e6,
               ms / (pp->bytes / 3.0e12 * 1e3), reps == 3 ? "  (median of 3)" : "");
      if (k == 0) first_ms = ms;
      err[0] = 0;
    }
    mixc_cuda_module_free(b.mod);
    b.mod = NULL;
  }
  for (int k = 0; k < 2; k++)
    problem_free(&b, &big[k]);
done:
  free(b.dims);
  free(b.dtype);
  free(present);
  free(want);
  compilation_free(&comp);
}

int main(int argc, char **argv) {
  char err[1024];
  MixcCuda *cu = NULL;
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (mixc_cuda_open(0, &cu, err, sizeof err)) {
    printf("cuda_kernels: %s\n", err);
    return 1;
  }
  const MixcCudaInfo *in = mixc_cuda_info(cu);
  printf("GPU: %s (%s, %d SMs), NVRTC %d.%d; bf16, H=16, K=V=128\n", in->name, in->target,
         in->sm_count, in->nvrtc_major, in->nvrtc_minor);
  MixcRng rng;
  mixc_rng_seed(&rng, 42);
  int quick = 0, files = 0;
  static const char *const dflt[] = {"examples/gla.mix", "examples/retnet.mix",
                                     "examples/gated_delta.mix", "examples/delta.mix"};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--quick")) {
      quick = 1;
      continue;
    }
    bench_file(cu, argv[i], quick, &rng);
    files++;
  }
  if (!files)
    for (size_t i = 0; i < sizeof dflt / sizeof *dflt; i++) bench_file(cu, dflt[i], quick, &rng);
  mixc_cuda_close(cu);
  return 0;
}
