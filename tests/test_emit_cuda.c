/* The standalone CUDA file (`mixc emit --target cuda`: backends/cuda/cu_driver.h) compiled by
 * nvcc and, on a GPU, run through its launcher against the fp64 reference.
 *
 * Without nvcc (looked for on PATH, then /usr/local/cuda/bin): exit 77, a skip. Otherwise, for
 * several examples x strategies x dtypes (a grid mixer, cu_seqlens, a kernel over 48 KiB of
 * shared memory among them), the file is printed as `mixc emit` prints it and compiled with
 * `nvcc -O3 -arch=sm_90a` (the device's own arch on a GPU), in parallel; any compiler
 * output (a warning) is a failure. One file is linked into a shared object (-shared) and its
 * argument checks are called without a GPU, and a call that passes them says plainly that
 * there is no CUDA driver. With MIXC_BIN set (ctest sets it), the CLI's
 * --chunk / --varlen checks are run and one file it writes is compiled too.
 *
 * On a GPU (MIXC_TEST_REQUIRE_GPU=1 makes its absence a failure), every file is built as a
 * shared object, loaded, and NAME_forward is called on device tensors with fresh random
 * inputs (the seed is printed; argv[1] replays it), outputs and final states poisoned with NaN,
 * and compared with mixc_ref_run: f32 1e-4 and bf16 1e-2 relative to max |ref| for outputs,
 * states 1e-4 (1e-3 with bf16 inputs, 5e-3 for the hand-structured kernels, whose state
 * products take 16-bit operands). Three ways of calling rotate over T in {0, 1, 33, 70}:
 * strided views, an initial state and the workspace allocated by the launcher on the default
 * stream; contiguous tensors (strides NULL), a zero (NULL) initial state, a caller's
 * workspace and a stream of its own; and no final state wanted. */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backends/cuda/cu_driver.h"
#include "compiler/compile.h"
#include "compiler/lower.h"
#include "runtime/half.h"
#include "runtime/inputs.h"
#include "runtime/reference.h"
#include "testlib.h"
#ifdef MIXC_HAVE_CUDA
#include "backends/cuda/cuda_loader.h"
#endif

static int g_passed, g_failed;
static char nvcc[1100];
static char tmpdir[] = "/tmp/mixc_emit_cudaXXXXXX";

#include "check.h"

/* ---- finding nvcc, running commands ---- */

static int find_nvcc(void) {
  const char *path = getenv("PATH");
  char dir[1024];
  while (path && *path) {
    size_t l = strcspn(path, ":");
    if (l > 0 && l < sizeof dir) {
      memcpy(dir, path, l);
      dir[l] = 0;
      snprintf(nvcc, sizeof nvcc, "%s/nvcc", dir);
      if (access(nvcc, X_OK) == 0) return 1;
    }
    path += l + (path[l] == ':');
  }
  snprintf(nvcc, sizeof nvcc, "/usr/local/cuda/bin/nvcc");
  return access(nvcc, X_OK) == 0;
}

/* Runs cmd through the shell; its output (stdout and stderr) into out. Returns the exit code. */
static int run_cmd(const char *cmd, char *out, size_t n) {
  FILE *p = popen(cmd, "r");
  if (!p) return -1;
  size_t used = 0;
  char buf[512];
  size_t got;
  while ((got = fread(buf, 1, sizeof buf, p)) > 0)
    if (out && used + 1 < n) {
      size_t c = got < n - 1 - used ? got : n - 1 - used;
      memcpy(out + used, buf, c);
      used += c;
    }
  if (out && n) out[used] = 0;
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- the cases ---- */

typedef struct CaseDef {
  const char *file, *dims; /* dims as "K=32,V=32" */
  Strategy strategy;
  KType dtype;
  int varlen; /* 0, or cu_seqlens of KT_I32 / KT_I64 */
  KType cu_type;
  /* the hand-structured GPU chunk kernels (KernelSpec.gpu, as `mixc emit --target cuda`),
   * with segs sequence segments (--segments: three kernels passing data through the
   * workspace) and a value tile (0: the schedule's) */
  int gpu;
  int64_t segs, vtile;
} CaseDef;

static const CaseDef defs[] = {
    {"examples/gla.mix", "K=32,V=32", STRAT_CHUNK, KT_F32, 0, KT_I64, 0, 0, 0},
    {"examples/gla.mix", "K=16,V=32", STRAT_RECURRENT, KT_BF16, 0, KT_I64, 0, 0, 0},
    {"examples/delta.mix", "K=32,V=16", STRAT_CHUNK, KT_F32, 0, KT_I64, 0, 0, 0},
    {"examples/gated_delta.mix", "K=32,V=32", STRAT_CHUNK, KT_BF16, 1, KT_I32, 0, 0, 0},
    {"examples/mamba2.mix", "N=16,P=32", STRAT_CHUNK, KT_F32, 0, KT_I64, 0, 0, 0},
    {"examples/rwkv7.mix", "K=64,V=64", STRAT_CHUNK, KT_F32, 0, KT_I64, 0, 0, 0}, /* > 48 KiB smem */
    {"examples/rwkv7.mix", "K=16,V=16", STRAT_RECURRENT, KT_F32, 1, KT_I64, 0, 0, 0},
    {"examples/vig2d.mix", "K=16,V=16", STRAT_RECURRENT, KT_F32, 0, KT_I64, 0, 0, 0}, /* a grid */
    {"examples/retnet.mix", "K=32,V=48", STRAT_CHUNK, KT_BF16, 0, KT_I64, 1, 0, 0},
    {"examples/gla.mix", "K=32,V=32", STRAT_CHUNK, KT_BF16, 1, KT_I64, 1, 3, 0},
    {"examples/gated_delta.mix", "K=32,V=32", STRAT_CHUNK, KT_BF16, 0, KT_I64, 1, 4, 16},
};
enum { NDEFS = sizeof defs / sizeof defs[0] };

typedef struct Case {
  const CaseDef *def;
  Compilation comp;
  int compiled; /* comp holds a compilation */
  KCase k;
  char name[128], cu[512], obj[512], log[512];
  int ok; /* emitted and compiled */
  void *so;
  int (*forward)(const void *a, void *stream, char *err, size_t n);
  size_t (*workspace_size)(const void *a);
} Case;

static int set_dims(Case *c) {
  const Mixer *m = c->k.m;
  for (int s = 0; s < m->nsyms; s++)
    if (m->syms[s].kind == SYM_DIM) c->k.dims[s] = m->syms[s].fixed;
  char buf[128];
  snprintf(buf, sizeof buf, "%s", c->def->dims);
  for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
    char *eq = strchr(tok, '=');
    if (!eq) return 1;
    *eq = 0;
    int s = mixer_find(m, tok);
    if (s < 0 || m->syms[s].kind != SYM_DIM) return 1;
    c->k.dims[s] = atoll(eq + 1);
  }
  for (int s = 0; s < m->nsyms; s++)
    if (m->syms[s].kind == SYM_DIM && c->k.dims[s] < 1) return 1;
  return 0;
}

/* Lowers the case as `mixc emit` does (params with defaults built in, every state given and
 * wanted outside grids) and prints the file for target t. */
static int prepare(Case *c, const MixcCudaTarget *t) {
  char err[1024];
  const RecMixer *rm = compile_file(&c->comp, c->def->file);
  if (!rm) return 1;
  c->compiled = 1;
  if (kcase_alloc(&c->k, rm) || set_dims(c)) {
    printf("FAIL %s: bad dims %s\n", c->def->file, c->def->dims);
    return 1;
  }
  const Mixer *m = c->k.m;
  for (int s = 0; s < m->nsyms; s++) {
    const Sym *y = &m->syms[s];
    c->k.dtype[s] = y->kind == SYM_STATE ? KT_F32 : c->def->dtype;
    c->k.present[s] = (y->kind == SYM_STATE && !m->ngrid) || (y->kind == SYM_PARAM && !y->init);
    c->k.want[s] = y->kind == SYM_STATE && !m->ngrid;
  }
  c->k.sp.strategy = c->def->strategy;
  c->k.sp.varlen = c->def->varlen;
  c->k.sp.cu_type = c->def->cu_type;
  /* lowered for a device: the hand-structured kernels (def->gpu) or the lowered KIR alone */
  c->k.sp.gpu = 1;
  c->k.sp.no_native = !c->def->gpu;
  c->k.sp.gpu_arch = t && t->arch ? t->arch : MIXC_CU_DEFAULT_ARCH;
  c->k.sp.gpu_smem_optin = t && t->max_smem_optin ? t->max_smem_optin
                                                   : MIXC_CU_DEFAULT_SMEM_OPTIN;
  if (c->def->gpu) {
    c->k.sp.segs = c->def->segs;
    c->k.sp.vtile = c->def->vtile;
  }
  char seg[32] = "";
  if (c->def->gpu) snprintf(seg, sizeof seg, "_gpu_seg%lld", (long long)c->def->segs);
  snprintf(c->name, sizeof c->name, "%s_%s_%s%s%s", m->name.name, strategy_name(c->def->strategy),
           c->def->dtype == KT_F32 ? "f32" : "bf16",
           c->def->varlen ? (c->def->cu_type == KT_I32 ? "_varlen32" : "_varlen64") : "", seg);
  if (lower_mixer(&c->comp.arena, &c->k.sp, &c->k.pl, err, sizeof err)) {
    printf("FAIL %s: lower: %s\n", c->name, err);
    return 1;
  }
  /* the hand-structured kernels were taken, with the segments asked for */
  if (c->def->gpu &&
      (!c->k.pl.mod->funcs[0]->cuda_src ||
       (c->def->segs > 1 ? c->k.pl.segs != c->def->segs || c->k.pl.mod->nfuncs != 3
                         : c->k.pl.mod->nfuncs != 1))) {
    printf("FAIL %s: not the hand-structured kernels (%d functions, %lld segments)\n", c->name,
           c->k.pl.mod->nfuncs, (long long)c->k.pl.segs);
    return 1;
  }
  snprintf(c->cu, sizeof c->cu, "%s/%s.cu", tmpdir, c->name);
  FILE *f = fopen(c->cu, "w");
  if (!f) return 1;
  int rc = mixc_emit_cuda_file(f, c->def->file, &c->k.sp, &c->k.pl, t, err, sizeof err);
  if (fclose(f)) rc = 1;
  if (rc) {
    printf("FAIL %s: emit: %s\n", c->name, err);
    return 1;
  }
  return 0;
}

static void free_case(Case *c) {
  if (c->so) dlclose(c->so);
  kcase_free(&c->k);
  if (c->compiled) compilation_free(&c->comp);
}

/* ---- argument words of NAME_args (cu_driver.h): 8 bytes each ---- */

typedef struct Words {
  uint64_t w[256];
  int n;
} Words;

static void put_word(Words *a, uint64_t v) {
  if (a->n < 256) a->w[a->n++] = v;
}

#ifdef MIXC_HAVE_CUDA
static void put_ptr(Words *a, const void *p) {
  uint64_t v = 0;
  memcpy(&v, &p, sizeof p);
  put_word(a, v);
}
#endif

/* ---- without a GPU: the launcher's argument checks ---- */

static void check_arguments(Case *c, int gpu) {
  char err[512] = "";
  /* a NULL args struct */
  int rc = c->forward(NULL, NULL, err, sizeof err);
  CHECK(rc == 1 && strstr(err, "a is NULL"), "%s: forward(NULL): rc %d, '%s'", c->name, rc, err);
  /* every pointer NULL: the first data tensor is named */
  Words a;
  memset(&a, 0, sizeof a);
  const Mixer *m = c->k.m;
  const char *first = NULL, *first_kind = "";
  int ndata = 0, nstate_words = 0;
  for (int s = 0; s < m->nsyms; s++)
    if (c->k.pl.ptr[s] >= 0 && m->syms[s].kind != SYM_STATE) {
      if (!first) {
        first = m->syms[s].name;
        first_kind = sym_kind_name(m->syms[s].kind);
      }
      ndata++;
    }
  for (int s = 0; s < m->nsyms; s++)
    nstate_words += 2 * ((c->k.pl.state_in[s] >= 0) + (c->k.pl.state_out[s] >= 0));
  a.n = 2 * ndata + nstate_words + (c->k.sp.varlen ? 2 : 0);
  put_word(&a, 1);  /* batch */
  put_word(&a, 5);  /* seqlen or grid_y */
  put_word(&a, 2);  /* heads or grid_x */
  if (m->ngrid) put_word(&a, 2);
  put_word(&a, 0);  /* workspace */
  put_word(&a, 0);
  err[0] = 0;
  rc = c->forward(a.w, NULL, err, sizeof err);
  if (c->k.sp.varlen) {
    CHECK(rc == 1 && strstr(err, "cu_seqlens is NULL"), "%s: NULL cu_seqlens: rc %d, '%s'",
          c->name, rc, err);
    return;
  }
  char want[160];
  snprintf(want, sizeof want, "%s_forward: %s (%s) is NULL", c->k.rm->name, first, first_kind);
  CHECK(rc == 1 && strstr(err, want), "%s: NULL %s: rc %d, '%s'", c->name, first, rc, err);
  /* a negative size, with the pointers set (aligned, never dereferenced) */
  static float dummy[64] __attribute__((aligned(256)));
  for (int i = 0; i < 2 * ndata; i += 2) {
    void *p = dummy;
    memcpy(&a.w[i], &p, sizeof p);
  }
  a.w[2 * ndata + nstate_words + 1] = (uint64_t)(int64_t)-3; /* seqlen / grid_y */
  err[0] = 0;
  rc = c->forward(a.w, NULL, err, sizeof err);
  CHECK(rc == 1 && strstr(err, "= -3 is out of range"), "%s: negative size: rc %d, '%s'",
        c->name, rc, err);
  /* misaligned data */
  a.w[2 * ndata + nstate_words + 1] = 5;
  void *odd = (char *)dummy + 1;
  memcpy(&a.w[0], &odd, sizeof odd);
  err[0] = 0;
  rc = c->forward(a.w, NULL, err, sizeof err);
  CHECK(rc == 1 && strstr(err, "is not aligned"), "%s: misaligned pointer: rc %d, '%s'", c->name,
        rc, err);
  /* a workspace too small: NULL initial states need zeros there (without states the call
   * would go on to launch on these host pointers) */
  void *p = dummy;
  if (nstate_words == 0) {
    printf("ok   %s: argument checks without a GPU\n", c->name);
    return;
  }
  memcpy(&a.w[0], &p, sizeof p);
  size_t need = c->workspace_size(a.w);
  int nw = 2 * ndata + nstate_words + 3 + (m->ngrid ? 1 : 0);
  memcpy(&a.w[nw], &p, sizeof p);
  a.w[nw + 1] = 16;
  err[0] = 0;
  rc = c->forward(a.w, NULL, err, sizeof err);
  CHECK(rc == 1 && strstr(err, "workspace_bytes = 16"), "%s: workspace of 16 bytes (%zu "
          "needed): rc %d, '%s'", c->name, need, rc, err);
  if (!gpu) { /* the arguments pass: the allocation meets the missing driver */
    a.w[nw] = a.w[nw + 1] = 0;
    err[0] = 0;
    rc = c->forward(a.w, NULL, err, sizeof err);
    CHECK(rc != 0 && strstr(err, "cudaMallocAsync of") && strstr(err, "driver"),
          "%s: no driver: rc %d, '%s'", c->name, rc, err);
    printf("     without a driver: %s\n", err);
  }
  printf("ok   %s: argument checks without a GPU (workspace_size %zu bytes for batch 1, seqlen "
         "5, heads 2)\n", c->name, need);
}

/* ---- on a GPU ---- */

#ifdef MIXC_HAVE_CUDA
static MixcCuda *g_cuda;

static int upload(Tensor *t, char *err, size_t n) {
  size_t bytes = (size_t)t->alloc * (t->type == KT_F32 ? 4 : 2);
  return mixc_cuda_alloc(g_cuda, bytes ? bytes : 4, &t->dev, err, n) ||
         (bytes && mixc_cuda_memcpy_htod(g_cuda, t->dev, t->data, bytes, err, n));
}

static int download(Tensor *t, char *err, size_t n) {
  size_t bytes = (size_t)t->alloc * (t->type == KT_F32 ? 4 : 2);
  return bytes && mixc_cuda_memcpy_dtoh(g_cuda, t->data, t->dev, bytes, err, n);
}

/* way 0: strided, initial state given, workspace NULL, default stream; way 1: contiguous
 * (strides NULL), initial NULL (zeros), the caller's workspace, a stream of its own; way 2:
 * strided, initial given, no final state. */
static void run_gpu(Case *c, int64_t T, int way, MixcRng *rng) {
  const Mixer *m = c->k.m;
  int ns = m->nsyms, grid = m->ngrid > 0, strided = way != 1;
  int64_t B = 2, H = 3, Y = 0, X = 0, N = 2;
  int64_t cu[5] = {0, 5, 5, 17, 33};
  if (grid) {
    Y = 3;
    X = 4;
    T = Y * X;
  }
  if (c->k.sp.varlen) {
    B = 1;
    T = 33;
    N = 4;
  }
  Tensor *ts = calloc((size_t)ns, sizeof *ts), *ini = calloc((size_t)ns, sizeof *ini),
         *fin = calloc((size_t)ns, sizeof *fin);
  double **refout = calloc((size_t)ns, sizeof *refout);
  const double **refin = calloc((size_t)ns, sizeof *refin);
  InputRole *roles = calloc((size_t)ns, sizeof *roles);
  Words a;
  memset(&a, 0, sizeof a);
  char err[1024] = "";
  int bad = !ts || !ini || !fin || !refout || !refin || !roles;
  if (!bad) mixc_input_roles(m, roles);
  for (int s = 0; s < ns && !bad; s++) { /* data tensors, in declaration order */
    const Sym *y = &m->syms[s];
    if (c->k.pl.ptr[s] < 0 || y->kind == SYM_STATE) continue;
    Tensor *t = &ts[s];
    t->type = c->k.dtype[s];
    layout_shape(&c->k, s, 0, B, N, T, H, Y, X, t);
    t->ref = calloc((size_t)(t->numel ? t->numel : 1), sizeof(double));
    bad |= !t->ref || make_storage(t, y->kind != SYM_PARAM, strided);
    if (bad) break;
    int64_t last = y->rank ? c->k.dims[y->shape[y->rank - 1]] : 1;
    if (y->kind == SYM_OUTPUT) {
      poison(t);
      refout[s] = t->ref;
    } else {
      mixc_fill(rng, roles[s], t->ref, t->numel, last);
      fill_storage(t); /* rounded: the reference sees what the kernel reads */
      refin[s] = t->ref;
    }
    bad |= upload(t, err, sizeof err);
    put_word(&a, t->dev);
    put_ptr(&a, strided ? t->stride : NULL);
  }
  for (int s = 0; s < ns && !bad; s++) { /* states: initial, final */
    if (c->k.pl.state_in[s] < 0 && c->k.pl.state_out[s] < 0) continue;
    if (c->k.pl.state_in[s] >= 0) {
      Tensor *t = &ini[s];
      t->type = KT_F32;
      layout_shape(&c->k, s, 1, B, N, T, H, Y, X, t);
      t->ref = calloc((size_t)t->numel, sizeof(double));
      bad |= !t->ref || make_storage(t, 0, strided);
      if (bad) break;
      if (way == 1) { /* NULL: zeros */
        refin[s] = t->ref;
        put_word(&a, 0);
        put_word(&a, 0);
      } else {
        mixc_fill(rng, roles[s], t->ref, t->numel, 1);
        fill_storage(t);
        refin[s] = t->ref;
        bad |= upload(t, err, sizeof err);
        put_word(&a, t->dev);
        put_ptr(&a, t->stride);
      }
    }
    if (c->k.pl.state_out[s] >= 0) {
      Tensor *t = &fin[s];
      t->type = KT_F32;
      layout_shape(&c->k, s, 1, B, N, T, H, Y, X, t);
      t->ref = calloc((size_t)t->numel, sizeof(double));
      bad |= !t->ref || make_storage(t, 0, strided);
      if (bad) break;
      refout[s] = t->ref; /* the reference writes it either way */
      if (way == 2) {
        put_word(&a, 0);
        put_word(&a, 0);
        free(t->data);
        t->data = NULL;
      } else {
        poison(t);
        bad |= upload(t, err, sizeof err);
        put_word(&a, t->dev);
        put_ptr(&a, strided ? t->stride : NULL);
      }
    }
  }
  MixcDevPtr dcu = 0, ws = 0;
  if (c->k.sp.varlen && !bad) {
    int32_t cu32[5];
    for (int i = 0; i < 5; i++) cu32[i] = (int32_t)cu[i];
    size_t bytes = c->k.sp.cu_type == KT_I32 ? sizeof cu32 : sizeof cu;
    bad |= mixc_cuda_alloc(g_cuda, bytes, &dcu, err, sizeof err) ||
           mixc_cuda_memcpy_htod(g_cuda, dcu, c->k.sp.cu_type == KT_I32 ? (void *)cu32 : (void *)cu,
                                 bytes, err, sizeof err);
    put_word(&a, dcu);
    put_word(&a, (uint64_t)N);
  }
  put_word(&a, (uint64_t)B);
  if (grid) {
    put_word(&a, (uint64_t)Y);
    put_word(&a, (uint64_t)X);
  } else {
    put_word(&a, (uint64_t)T);
  }
  put_word(&a, (uint64_t)H);
  int wslot = a.n;
  put_word(&a, 0);
  put_word(&a, 0);
  void *stream = NULL;
  size_t need = 0;
  if (!bad && way == 1) {
    need = c->workspace_size(a.w);
    bad |= mixc_cuda_alloc(g_cuda, need ? need : 256, &ws, err, sizeof err) ||
           mixc_cuda_stream_create(g_cuda, &stream, err, sizeof err);
    a.w[wslot] = ws;
    a.w[wslot + 1] = need;
  }
  int rc = bad;
  char ferr[512] = "";
  if (!rc) {
    int e = c->forward(a.w, stream, ferr, sizeof ferr);
    if (e) snprintf(err, sizeof err, "forward returned %d: %s", e, ferr);
    rc = e != 0;
    if (!rc)
      rc = stream ? mixc_cuda_stream_synchronize(g_cuda, stream, err, sizeof err)
                  : mixc_cuda_synchronize(g_cuda, err, sizeof err);
  }
  for (int s = 0; s < ns && !rc; s++) {
    if (m->syms[s].kind == SYM_OUTPUT) rc |= download(&ts[s], err, sizeof err);
    if (fin[s].data) rc |= download(&fin[s], err, sizeof err);
  }
  /* the reference (a NULL initial state: ini[s].ref, zeros) */
  RefBinding b = ref_binding(B, T, H, Y, X, c->k.dims, refin, refout);
  if (c->k.sp.varlen) {
    b.cu_seqlens = cu;
    b.nseq = N;
  }
  char rerr[256] = "";
  int rrc = bad ? 1 : mixc_ref_run(m, &b, rerr, sizeof rerr);
  double worst = 0, tol = c->def->dtype == KT_F32 ? 1e-4 : 1e-2;
  /* the hand-structured kernels accumulate the state from 16-bit operands (k e^{b}, v,
   * docs/gpu.md): 5e-3 as in test_api_cuda */
  double stol = c->def->dtype == KT_F32 ? 1e-4 : c->def->gpu ? 5e-3 : 1e-3;
  int nan = 0, ok = check_tensors(m, ts, fin, refout, tol, stol, !rc && !rrc, &worst, &nan);
  static const char *const ways[] = {"strided, workspace allocated, default stream",
                                     "contiguous, zero initial, own workspace and stream",
                                     "strided, no final state"};
  printf("%s %-28s T=%-3lld %-50s rel err %.2e%s %s%s\n", ok ? "ok  " : "FAIL", c->name,
         (long long)T, ways[way], worst, nan ? " (NaN)" : "", rc ? err : "", rerr);
  if (ok)
    g_passed++;
  else
    g_failed++;
  char ignore[256];
  for (int s = 0; ts && s < ns; s++) {
    Tensor *all[3] = {&ts[s], &ini[s], &fin[s]};
    for (int k = 0; k < 3; k++) {
      if (all[k]->dev) mixc_cuda_free(g_cuda, all[k]->dev, ignore, sizeof ignore);
      free(all[k]->ref);
      free(all[k]->data);
    }
  }
  if (dcu) mixc_cuda_free(g_cuda, dcu, ignore, sizeof ignore);
  if (ws) mixc_cuda_free(g_cuda, ws, ignore, sizeof ignore);
  if (stream) mixc_cuda_stream_destroy(g_cuda, stream);
  free(ts);
  free(ini);
  free(fin);
  free(refout);
  free(refin);
  free(roles);
}
#endif

/* ---- the CLI ---- */

static void check_cli(const char *mixc, char *cli_cu, size_t n) {
  char cmd[2048], out[2048];
  static const char *const bad[] = {"--chunk 0", "--chunk -4", "--chunk 12x", "--chunk 5000",
                                    "--chunk ''", "--varlen i16", "--varlen i64 --target c"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(cmd, sizeof cmd, "%s emit examples/gla.mix --dims K=16,V=16 --target cuda %s 2>&1",
             mixc, bad[i]);
    int rc = run_cmd(cmd, out, sizeof out);
    CHECK(rc == 2 && strstr(out, bad[i][2] == 'c' ? "--chunk" : "--varlen"),
          "mixc emit %s: exit %d (want 2), '%s'", bad[i], rc, out);
  }
  snprintf(cli_cu, n, "%s/cli_gla.cu", tmpdir);
  snprintf(cmd, sizeof cmd,
           "%s emit examples/gla.mix --dims K=32,V=32 --target cuda --strategy chunk --chunk 8 "
           "--varlen i64 -o %s 2>&1",
           mixc, cli_cu);
  int rc = run_cmd(cmd, out, sizeof out);
  char *text = rc == 0 ? read_file(cli_cu, NULL) : NULL;
  CHECK(text && strstr(text, "(chunk length 8)") && strstr(text, "const int64_t *cu_seqlens;") &&
            strstr(text, "cudaError_t gla_forward(const gla_args *a, cudaStream_t stream"),
        "mixc emit --target cuda --chunk 8 --varlen i64 -o: exit %d, '%s'", rc, out);
  if (!text) cli_cu[0] = 0;
  free(text);
}

/* Compiles every file with nvcc, as many at a time as there are cores (at most 8), into an
 * object (-c) or a shared object; any output from nvcc is a failure. */
static void compile_all(Case *cases, int ncases, const char *extra_cu, const char *arch, int so,
                        int so_case) {
  char list[512], cmd[4096];
  snprintf(list, sizeof list, "%s/jobs.txt", tmpdir);
  FILE *f = fopen(list, "w");
  if (!f) return;
  for (int i = 0; i < ncases; i++)
    if (cases[i].ok) fprintf(f, "%s/%s\n", tmpdir, cases[i].name);
  if (extra_cu && *extra_cu) fprintf(f, "%.*s\n", (int)(strlen(extra_cu) - 3), extra_cu);
  fclose(f);
  const char *so_name = so_case >= 0 ? cases[so_case].name : "-";
  long jobs = sysconf(_SC_NPROCESSORS_ONLN);
  jobs = jobs < 1 ? 1 : jobs > 8 ? 8 : jobs;
  int len = snprintf(cmd, sizeof cmd,
           "xargs -P %ld -I{} sh -c 'if [ %d = 1 ] || [ {} = %s/%s ]; then "
           "\"%s\" -O3 -arch=%s -shared -Xcompiler -fPIC -o {}.so {}.cu > {}.log 2>&1; "
           "else \"%s\" -O3 -arch=%s -c -o {}.o {}.cu > {}.log 2>&1; fi; echo $? > {}.rc' < %s",
           jobs, so, tmpdir, so_name, nvcc, arch, nvcc, arch, list);
  if (len < 0 || (size_t)len >= sizeof cmd) {
    printf("note: the nvcc command line is too long (%d bytes)\n", len);
    return;
  }
  if (system(cmd)) printf("note: xargs returned nonzero\n");
}

static int compile_result(const char *base, char *log, size_t n) {
  char path[600];
  snprintf(path, sizeof path, "%s.rc", base);
  char *rc = read_file(path, NULL);
  snprintf(path, sizeof path, "%s.log", base);
  char *lg = read_file(path, NULL);
  snprintf(log, n, "%s", lg ? lg : "");
  int ok = rc && atoi(rc) == 0 && lg && !lg[0];
  free(rc);
  free(lg);
  return ok;
}

int main(int argc, char **argv) {
  int require_gpu = getenv("MIXC_TEST_REQUIRE_GPU") && !strcmp(getenv("MIXC_TEST_REQUIRE_GPU"), "1");
  if (!find_nvcc()) {
    printf("test_emit_cuda: skipped: nvcc is not on PATH nor in /usr/local/cuda/bin\n");
    return require_gpu ? 1 : 77;
  }
  unsigned long long seed = argc > 1 ? strtoull(argv[1], NULL, 10)
                                     : (unsigned long long)time(NULL) ^ ((unsigned long long)getpid() << 16);
  printf("test_emit_cuda: seed %llu, nvcc %s\n", seed, nvcc);
  MixcRng rng;
  mixc_rng_seed(&rng, seed);
  if (!mkdtemp(tmpdir)) return 1;
  MixcCudaTarget tg = {MIXC_CU_DEFAULT_ARCH, MIXC_CU_DEFAULT_SMEM_OPTIN};
  int gpu = 0;
  char err[1024] = "";
#ifdef MIXC_HAVE_CUDA
  if (mixc_cuda_open(0, &g_cuda, err, sizeof err) == 0) {
    const MixcCudaInfo *info = mixc_cuda_info(g_cuda);
    gpu = 1;
    tg.arch = info->arch;
    tg.max_smem_optin = info->max_smem_per_block_optin;
    printf("GPU: %s (%s)\n", info->name, info->target);
  }
#else
  snprintf(err, sizeof err, "built without MIXC_CUDA");
#endif
  if (!gpu) {
    printf("no GPU: %s\n", err);
    if (require_gpu) {
      printf("FAIL MIXC_TEST_REQUIRE_GPU=1 and no GPU\n");
      g_failed++;
    }
  }
  char arch[32];
  snprintf(arch, sizeof arch, "sm_%d%s", tg.arch, tg.arch >= 90 ? "a" : "");
  Case cases[NDEFS];
  memset(cases, 0, sizeof cases);
  for (int i = 0; i < NDEFS; i++) {
    cases[i].def = &defs[i];
    cases[i].ok = prepare(&cases[i], &tg) == 0;
    if (!cases[i].ok) g_failed++;
  }
  char cli_cu[600] = "";
  const char *mixc = getenv("MIXC_BIN");
  if (mixc && *mixc)
    check_cli(mixc, cli_cu, sizeof cli_cu);
  else
    printf("note: MIXC_BIN not set: the CLI checks are skipped\n");
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  compile_all(cases, NDEFS, cli_cu, arch, gpu, 0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("nvcc -arch=%s: %d files in %.1f s\n", arch, NDEFS + (cli_cu[0] != 0),
         (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
  char log[4096];
  for (int i = 0; i < NDEFS; i++) {
    Case *c = &cases[i];
    if (!c->ok) continue;
    char base[600];
    snprintf(base, sizeof base, "%s/%s", tmpdir, c->name);
    c->ok = compile_result(base, log, sizeof log);
    CHECK(c->ok, "%s: nvcc: %s", c->name, log[0] ? log : "(failed without output)");
    if (c->ok) printf("ok   %s: compiles cleanly with nvcc\n", c->name);
  }
  if (cli_cu[0]) {
    char base[600];
    snprintf(base, sizeof base, "%.*s", (int)(strlen(cli_cu) - 3), cli_cu);
    int ok = compile_result(base, log, sizeof log);
    CHECK(ok, "the CLI's file: nvcc: %s", log);
  }
  /* load the shared objects (all on a GPU; the first one without) */
  for (int i = 0; i < NDEFS; i++) {
    Case *c = &cases[i];
    if (!c->ok || (!gpu && i != 0)) continue;
    char path[600], sym[200];
    snprintf(path, sizeof path, "%.400s/%.150s.so", tmpdir, c->name);
    c->so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    snprintf(sym, sizeof sym, "%s_forward", c->k.rm->name);
    void *f1 = c->so ? dlsym(c->so, sym) : NULL;
    snprintf(sym, sizeof sym, "%s_workspace_size", c->k.rm->name);
    void *f2 = c->so ? dlsym(c->so, sym) : NULL;
    CHECK(f1 && f2, "%s: loading %s: %s", c->name, path, dlerror());
    if (!f1 || !f2) {
      c->ok = 0;
      continue;
    }
    memcpy(&c->forward, &f1, sizeof f1);
    memcpy(&c->workspace_size, &f2, sizeof f2);
    check_arguments(c, gpu);
  }
#ifdef MIXC_HAVE_CUDA
  if (gpu) {
    static const int64_t Ts[] = {0, 1, 33, 70};
    for (int i = 0; i < NDEFS; i++) {
      if (!cases[i].ok) continue;
      int grid_or_varlen = cases[i].k.m->ngrid || cases[i].k.sp.varlen;
      for (int k = 0; k < 4; k++)
        for (int way = 0; way < 3; way++)
          if ((k + way) % 2 == 0 || grid_or_varlen) /* half the grid of T x ways, all for one T */
            if (!grid_or_varlen || k == 3) run_gpu(&cases[i], Ts[k], way, &rng);
    }
  }
#endif
  for (int i = 0; i < NDEFS; i++) free_case(&cases[i]); /* the shared objects first */
#ifdef MIXC_HAVE_CUDA
  if (g_cuda) mixc_cuda_close(g_cuda);
#endif
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd)) printf("warning: could not remove %s\n", tmpdir);
  printf("test_emit_cuda: %d passed, %d failed%s\n", g_passed, g_failed,
         gpu ? "" : " (compile only: no GPU)");
  return g_failed != 0;
}
