/* test_api_cuda: the C API on MIXC_CUDA (device pointers, streams), against the fp64
 * reference.
 *
 * Always: a CUDA kernel without a usable GPU fails plainly (MIXC_ERROR_DEVICE with the
 * loader's message; MIXC_ERROR_UNSUPPORTED in a build without the CUDA backend), and nothing
 * leaks. Without a GPU the test then exits 77 (ctest: skipped), or fails when
 * MIXC_TEST_REQUIRE_GPU=1.
 *
 * With a GPU: every examples/NAME.mix, strategies recurrent, chunk and parallel (where they
 * apply; parallel: one chunk of up to 256 tokens, so T = 1000 runs in chunks of 256), on
 * random inputs drawn by role (runtime/inputs.h), compared with mixc_ref_run:
 *   f32 with initial and final states, T in {1, 7, 64, 65, 1000} (T = 7 broadcasts inputs
 *   over B, T = 65 has transposed inputs and padded outputs and states, T = 64 and 1000 run
 *   on a user stream); bf16 with every param given, T in {7, 65}; f16 on some examples;
 *   varlen batches (cu_seqlens {5, 0, 9, 50}, i32 or i64; a strided one on gla); decode steps
 *   (1, 1, 1, 5 tokens, states in place, outputs into slices) against the reference and a
 *   forward; grid mixers at (Y, X) in {(1, 1), (3, 5), (8, 8)}. Dims are drawn from
 *   {16, 24, 32}, and 100 for the last dim on every fourth example.
 * Outputs and final states are poisoned with NaN before each run; NaN never passes.
 * Tolerances, max|x - ref| / max|ref|: f32 1e-4 (outputs and states, as test_cuda_kernels);
 * bf16 outputs 1e-2, f16 outputs 5e-3, their (fp32) states 5e-3 (the project's accuracy target
 * for 16-bit inputs: the KIR kernels' matmuls run in single TF32 when they load 16-bit data,
 * and the hand-structured chunk kernels multiply in bf16 / f16 on tensor cores, as fla does).
 * Also: argument errors on CUDA tensors (NULL data, a wrong shape, a misaligned pointer, a
 * bad device index) name the argument; options.check_cu_seqlens catches a bad device
 * cu_seqlens. Examples run on 8 threads sharing one context, each with its own stream.
 * Tiers (first, in contexts of their own with a fresh XDG_CACHE_HOME; gla chunk, K = V = 32,
 * f32, against the reference): a cold first call runs the fast tier (the switch held back by
 * MIXC_CUDA_TIER_DELAY_MS) while two threads call through the switch; mixc_kernel_wait_ready,
 * then the optimised tier; one cache entry; a fresh context hits it (nothing pending, the entry
 * not rewritten); MIXC_CUDA_TIERED=0; a context destroyed while its optimised compile is held
 * back returns promptly and the cubin is cached. Without a GPU: mixc_kernel_wait_ready and
 * mixc_kernel_optimized_ms on NULL and on a CPU kernel.
 * `test_api_cuda SEED` replays a run. One summary line: passed, failed. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <math.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../compiler/compile.h"
#include "../runtime/half.h"
#include "../runtime/inputs.h"
#include "../runtime/reference.h"
#include "mixc.h"
#include "testlib.h"
#ifdef MIXC_HAVE_CUDA
#include "../backends/cuda/cuda_loader.h"
#endif

enum { SKIP = 77, WORKERS = 8 };

static int passed, failed;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static void result(FILE *out, int ok, const char *name, const char *detail) {
  pthread_mutex_lock(&g_mu);
  if (ok)
    passed++;
  else
    failed++;
  pthread_mutex_unlock(&g_mu);
  fprintf(out, "%s %s%s%s\n", ok ? "ok  " : "FAIL", name, detail && *detail ? ": " : "",
          detail ? detail : "");
}

/* ---- without a GPU (and before using one) ---- */

/* Kernel options at K = V = 16 on a device (dims: two slots, filled). */
static void small_opts(mixc_kernel_options *o, mixc_dim dims[2], mixc_device_kind device) {
  dims[0].name = "K", dims[0].size = 16;
  dims[1].name = "V", dims[1].size = 16;
  memset(o, 0, sizeof *o);
  o->dims = dims;
  o->ndims = 2;
  o->device = device;
}

/* A CUDA kernel of gla: OK with a GPU (*k set), else the failure is checked. Returns 1 when
 * the GPU is usable. */
static int probe(mixc_context *ctx, mixc_module *mod, mixc_kernel **k) {
  mixc_dim dims[2];
  mixc_kernel_options o;
  small_opts(&o, dims, MIXC_CUDA);
  mixc_error e;
  *k = NULL;
  mixc_status s = mixc_kernel_create(mod, &o, k, &e);
  if (s == MIXC_OK) {
    result(stdout, *k != NULL, "CUDA kernel created", "");
    return *k != NULL;
  }
#ifdef MIXC_HAVE_CUDA
  mixc_status want = MIXC_ERROR_DEVICE;
#else
  mixc_status want = MIXC_ERROR_UNSUPPORTED;
#endif
  char d[4400];
  snprintf(d, sizeof d, "%s: %s", mixc_status_name(s), e.message);
  result(stdout, s == want && e.message[0] && !*k && e.status == s,
         "CUDA kernel without a usable GPU fails plainly", d);
  /* a second try answers the same (nothing cached in a bad state) */
  mixc_kernel *k2 = NULL;
  mixc_status s2 = mixc_kernel_create(mod, &o, &k2, &e);
  result(stdout, s2 == s && !k2, "and again", e.message);
  mixc_kernel_destroy(k2);
  mixc_args a;
  memset(&a, 0, sizeof a);
  s2 = mixc_forward(NULL, &a, &e);
  result(stdout, s2 == MIXC_ERROR_ARGUMENT && strstr(e.message, "NULL"),
         "mixc_forward without a kernel", e.message);
  return 0;
}

/* mixc_kernel_wait_ready and mixc_kernel_optimized_ms without a GPU: a NULL kernel, and a CPU
 * kernel (nothing to wait for). */
static void wait_api(mixc_module *mod) {
  mixc_error e;
  mixc_status s = mixc_kernel_wait_ready(NULL, &e);
  result(stdout, s == MIXC_ERROR_ARGUMENT && strstr(e.message, "NULL"),
         "mixc_kernel_wait_ready(NULL)", e.message);
  int pending = -1;
  double ms = mixc_kernel_optimized_ms(NULL, &pending);
  result(stdout, ms == 0 && pending == 0, "mixc_kernel_optimized_ms(NULL)", "");
  mixc_dim dims[2];
  mixc_kernel_options o;
  small_opts(&o, dims, MIXC_CPU);
  mixc_kernel *k = NULL;
  s = mod ? mixc_kernel_create(mod, &o, &k, &e) : MIXC_ERROR_ARGUMENT;
  if (s == MIXC_OK) {
    s = mixc_kernel_wait_ready(k, &e);
    ms = mixc_kernel_optimized_ms(k, &pending);
    result(stdout, s == MIXC_OK && e.status == MIXC_OK && ms == 0 && pending == 0,
           "mixc_kernel_wait_ready on a CPU kernel", e.message);
  } else {
    result(stdout, 0, "a CPU kernel", e.message);
  }
  mixc_kernel_destroy(k);
}

#ifdef MIXC_HAVE_CUDA
/* ---- tensors on the device ---- */

static MixcCuda *g_cu;

static int buf_upload(Buf *b, char *err, size_t n) {
  return !mixc_cuda_memcpy_htod(g_cu, b->d, b->mem, b->bytes, err, n);
}

static int buf_download(Buf *b, char *err, size_t n) {
  return !mixc_cuda_memcpy_dtoh(g_cu, b->mem, b->d, b->bytes, err, n);
}

/* A filled buffer to the device: storage allocated there and uploaded; the tensor's data is
 * the device address. */
static int buf_place(Buf *b, char *err, size_t n) {
  if (mixc_cuda_alloc(g_cu, b->bytes, &b->d, err, n)) return 0;
  b->t.data = (void *)(uintptr_t)b->d;
  return buf_upload(b, err, n);
}

static void buf_release(Buf *b) {
  char e[256];
  mixc_cuda_free(g_cu, b->d, e, sizeof e);
}

/* The tensors of a call on the device (testlib's call_make and friends). */
static const CallDevice g_dev = {buf_place, buf_download, buf_release};

/* ---- examples and data ---- */

static int compare(const Ex *x, const Data *ref, const Data *got, double tol_out, double tol_state,
                   char *detail, size_t n, double *worst) {
  int ok = 1;
  size_t used = strlen(detail);
  for (int s = 0; s < x->m->nsyms; s++) {
    if (!ref->out[s] || !got->out[s]) continue;
    double mx;
    int64_t at;
    double err = max_abs_err(ref->out[s], got->out[s], ref->numel[s], &mx, &at); /* NaN: inf */
    double rel = err / (mx > 0 ? mx : 1);
    if (rel > *worst) *worst = rel;
    double tol = x->m->syms[s].kind == SYM_STATE ? tol_state : tol_out;
    if (!(rel <= tol)) {
      ok = 0;
      if (used < n)
        used += (size_t)snprintf(detail + used, n - used,
                                 "%s %s: rel err %.3g at [%" PRId64 "] (got %.6g, ref %.6g) > %.0e; ",
                                 x->m->syms[s].kind == SYM_STATE ? "final state" : "output",
                                 x->m->syms[s].name, rel, at, got->out[s][at], ref->out[s][at], tol);
    }
  }
  return ok;
}

static double tol_out(mixc_dtype dt) { return dt == MIXC_BF16 ? 1e-2 : dt == MIXC_F16 ? 5e-3 : 1e-4; }
static double tol_state(mixc_dtype dt) { return dt == MIXC_F32 ? 1e-4 : 5e-3; }

typedef struct Worker {
  mixc_context *ctx;
  void *stream;
  FILE *out;
} Worker;

static void cfg_name(const Ex *x, const char *strat, const Cfg *c, const char *what, char *buf,
                     size_t n) {
  if (x->grid)
    snprintf(buf, n, "%s %s %s Y=%" PRId64 " X=%" PRId64 " %s%s", x->name, strat, what, c->Y, c->X,
             mixc_dtype_name(c->dt), c->user_stream ? " stream" : "");
  else
    snprintf(buf, n, "%s %s %s T=%" PRId64 " %s%s%s%s%s%s%s", x->name, strat, what, c->T,
             mixc_dtype_name(c->dt),
             c->layout_in == L_TRANSPOSE ? " strided-in" : c->layout_in == L_BROADCAST_B ? " bcast-B" : "",
             c->layout_out ? " strided-out" : "", c->init ? " init" : "", c->fin ? " final" : "",
             c->params ? " params" : "", c->user_stream ? " stream" : "");
}

static int sync_all(char *err, size_t n) { return !mixc_cuda_synchronize(g_cu, err, n); }

/* One forward through the kernel on the device and the reference; compare. */
static int run_case(Worker *w, const Ex *x, mixc_kernel *k, const char *strat, const Cfg *c,
                    uint64_t seed, const char *what) {
  char name[300], detail[4800] = "";
  cfg_name(x, strat, c, what, name, sizeof name);
  MixcRng rng;
  mixc_rng_seed(&rng, seed);
  Data d, got;
  Call call;
  memset(&got, 0, sizeof got);
  memset(&call, 0, sizeof call);
  int ok = data_make(x, c, &rng, &d);
  if (!ok) snprintf(detail, sizeof detail, "out of memory");
  if (ok) ok = call_make(x, c, &d, &call, &g_dev, detail, sizeof detail);
  if (ok) {
    mixc_args a = call_args(&call, c->user_stream ? w->stream : NULL);
    mixc_error e;
    mixc_status s = mixc_forward(k, &a, &e);
    if (s != MIXC_OK) {
      ok = 0;
      snprintf(detail, sizeof detail, "mixc_forward: %s: %s", mixc_status_name(s), e.message);
    }
  }
  if (ok) ok = sync_all(detail, sizeof detail) && call_results(x, &d, &call, &got, detail, sizeof detail);
  if (ok && run_reference(x, &d, detail, sizeof detail)) ok = 0;
  double worst = 0;
  if (ok) ok = compare(x, &d, &got, tol_out(c->dt), tol_state(c->dt), detail, sizeof detail, &worst);
  if (ok) snprintf(detail, sizeof detail, "rel err %.2e", worst);
  result(w->out, ok, name, detail);
  call_free(&call);
  data_free(&d);
  data_free(&got);
  return ok;
}

/* Decode steps of 1, 1, 1, 5 tokens (states in place, outputs into slices of one buffer)
 * against the reference and against one forward of the 8 tokens. */
static void step_case(Worker *w, const Ex *x, mixc_kernel *k, const char *strat, uint64_t seed) {
  static const int64_t steps[4] = {1, 1, 1, 5};
  Cfg c;
  memset(&c, 0, sizeof c);
  c.B = 2;
  c.T = 8;
  c.dt = MIXC_F32;
  c.init = c.fin = 1;
  char name[300], detail[4800] = "";
  snprintf(name, sizeof name, "%s %s steps 1+1+1+5 vs reference and forward", x->name, strat);
  MixcRng rng;
  mixc_rng_seed(&rng, seed);
  Data d, got, fwd;
  Call call, call2;
  memset(&got, 0, sizeof got);
  memset(&fwd, 0, sizeof fwd);
  memset(&call, 0, sizeof call);
  memset(&call2, 0, sizeof call2);
  int ok = data_make(x, &c, &rng, &d);
  if (!ok) snprintf(detail, sizeof detail, "out of memory");
  for (int s = 0; ok && s < x->m->nsyms; s++)
    if (x->m->syms[s].kind == SYM_STATE && !d.in[s]) ok = 0, snprintf(detail, sizeof detail, "no state");
  /* the forward */
  if (ok) ok = call_make(x, &c, &d, &call2, &g_dev, detail, sizeof detail);
  if (ok) {
    mixc_args a = call_args(&call2, w->stream);
    mixc_error e;
    mixc_status s = mixc_forward(k, &a, &e);
    if (s != MIXC_OK)
      ok = 0, snprintf(detail, sizeof detail, "mixc_forward: %s", e.message);
  }
  /* the steps: states start as the initial ones and are updated in place */
  if (ok) ok = call_make(x, &c, &d, &call, &g_dev, detail, sizeof detail);
  mixc_named_tensor st[MAXSYM];
  int nst = 0;
  for (int s = 0; ok && s < x->m->nsyms; s++) {
    if (x->m->syms[s].kind != SYM_STATE) continue;
    st[nst].name = x->m->syms[s].name;
    st[nst++].tensor = call.sin[s].t;
  }
  int64_t at = 0;
  for (int i = 0; ok && i < 4; i++) {
    mixc_named_tensor in[MAXSYM], out[MAXSYM];
    mixc_args a = step_args(x, &call, at, steps[i], in, out);
    a.stream = i % 2 ? w->stream : NULL; /* the workspace follows the stream */
    mixc_error e;
    mixc_status s = mixc_step(k, &a, st, nst, &e);
    if (s != MIXC_OK) ok = 0, snprintf(detail, sizeof detail, "mixc_step %d: %s", i, e.message);
    at += steps[i];
  }
  if (ok) ok = sync_all(detail, sizeof detail);
  /* the steps' final states are in call.sin: read them as the results */
  for (int s = 0; ok && s < x->m->nsyms; s++)
    if (x->m->syms[s].kind == SYM_STATE) {
      Buf tmp = call.sout[s];
      call.sout[s] = call.sin[s];
      call.sin[s] = tmp;
    }
  if (ok) ok = call_results(x, &d, &call, &got, detail, sizeof detail) &&
               call_results(x, &d, &call2, &fwd, detail, sizeof detail);
  if (ok && run_reference(x, &d, detail, sizeof detail)) ok = 0;
  double worst = 0;
  if (ok) ok = compare(x, &d, &got, 1e-4, 1e-4, detail, sizeof detail, &worst);
  if (ok) ok = compare(x, &fwd, &got, 1e-4, 1e-4, detail, sizeof detail, &worst);
  if (ok) snprintf(detail, sizeof detail, "rel err %.2e", worst);
  result(w->out, ok, name, detail);
  call_free(&call);
  call_free(&call2);
  data_free(&d);
  data_free(&got);
  data_free(&fwd);
}

static int ex_open(Ex *x, mixc_context *ctx, const char *path, int index, MixcRng *rng, char *err,
                   size_t n) {
  if (!ex_load(x, ctx, path, err, n)) return 0;
  static const int64_t sizes[3] = {16, 24, 32};
  int last = -1;
  for (int s = 0; s < x->m->nsyms; s++) {
    const Sym *y = &x->m->syms[s];
    if (y->kind != SYM_DIM) continue;
    x->dims[s] = y->fixed ? y->fixed : sizes[(int)(mixc_rng_uniform(rng) * 3) % 3];
    if (!y->fixed) last = s;
  }
  if (index % 4 == 1 && last >= 0 && !x->grid) x->dims[last] = 100; /* not a power of two */
  for (int s = 0; s < x->m->nsyms; s++)
    if (x->m->syms[s].kind == SYM_DIM && !x->m->syms[s].fixed) {
      x->kdims[x->nkdims].name = x->m->syms[s].name;
      x->kdims[x->nkdims++].size = x->dims[s];
    }
  return 1;
}

static mixc_status kernel_of(const Ex *x, mixc_strategy strat, int check_cu, mixc_kernel **k,
                             mixc_error *e) {
  mixc_kernel_options o;
  memset(&o, 0, sizeof o);
  o.dims = x->kdims;
  o.ndims = x->nkdims;
  o.device = MIXC_CUDA;
  o.strategy = strat;
  o.check_cu_seqlens = check_cu;
  return mixc_kernel_create(x->mod, &o, k, e);
}

/* Argument errors on device tensors, cu_seqlens checks, the device index (on gla). */
static void gla_extras(Worker *w, const Ex *x, mixc_kernel *k, uint64_t seed) {
  Cfg c;
  memset(&c, 0, sizeof c);
  c.B = 2;
  c.T = 9;
  c.dt = MIXC_F32;
  MixcRng rng;
  mixc_rng_seed(&rng, seed);
  Data d;
  Call call;
  char detail[4800] = "";
  memset(&call, 0, sizeof call);
  if (!data_make(x, &c, &rng, &d) || !call_make(x, &c, &d, &call, &g_dev, detail, sizeof detail)) {
    result(w->out, 0, "gla argument errors: setup", detail);
    call_free(&call);
    data_free(&d);
    return;
  }
  mixc_error e;
  struct {
    const char *what, *input, *needle;
    int mode; /* 0 NULL data, 1 wrong shape, 2 misaligned */
  } cases[] = {{"NULL data", "q", "'q': data is NULL", 0},
               {"wrong shape", "k", "input 'k': shape", 1},
               {"misaligned pointer", "v", "'v': data", 2}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    mixc_named_tensor in[MAXSYM];
    memcpy(in, call.in, sizeof in);
    for (int j = 0; j < call.nin; j++) {
      if (strcmp(in[j].name, cases[i].input)) continue;
      if (cases[i].mode == 0) in[j].tensor.data = NULL;
      if (cases[i].mode == 1) in[j].tensor.shape[3] += 1;
      if (cases[i].mode == 2) in[j].tensor.data = (char *)in[j].tensor.data + 2;
    }
    mixc_args a = call_args(&call, NULL);
    a.inputs = in;
    mixc_status s = mixc_forward(k, &a, &e);
    char name[128];
    snprintf(name, sizeof name, "gla cuda argument error: %s", cases[i].what);
    result(w->out, s == MIXC_ERROR_ARGUMENT && strstr(e.message, cases[i].needle), name, e.message);
  }
  /* a bad device index */
  mixc_kernel_options o;
  memset(&o, 0, sizeof o);
  o.dims = x->kdims;
  o.ndims = x->nkdims;
  o.device = MIXC_CUDA;
  o.device_index = -1;
  mixc_kernel *bad = NULL;
  mixc_status s = mixc_kernel_create(x->mod, &o, &bad, &e);
  result(w->out, s == MIXC_ERROR_ARGUMENT && strstr(e.message, "device_index") && !bad,
         "gla cuda device_index -1", e.message);
  o.device_index = 63;
  s = mixc_kernel_create(x->mod, &o, &bad, &e);
  result(w->out, (s == MIXC_ERROR_DEVICE && strstr(e.message, "does not exist") && !bad) || s == MIXC_OK,
         "gla cuda device_index 63", e.message);
  mixc_kernel_destroy(bad);
  call_free(&call);
  data_free(&d);
  /* options.check_cu_seqlens: a bad device cu_seqlens is an argument error */
  mixc_kernel *kc = NULL;
  s = kernel_of(x, MIXC_STRATEGY_RECURRENT, 1, &kc, &e);
  if (s != MIXC_OK) {
    result(w->out, 0, "gla cuda check_cu_seqlens kernel", e.message);
    return;
  }
  static const int64_t lens[3] = {4, 0, 7};
  Cfg v;
  memset(&v, 0, sizeof v);
  v.B = 1;
  v.dt = MIXC_F32;
  v.seqlens = lens;
  v.nseq = 3;
  v.cu_i32 = 1;
  v.fin = 1;
  run_case(w, x, kc, "recurrent", &v, seed + 1, "checked varlen i32");
  v.cu_stride = 3;
  run_case(w, x, kc, "recurrent", &v, seed + 2, "checked varlen i32 stride 3");
  v.cu_stride = 1;
  mixc_rng_seed(&rng, seed + 3);
  memset(&call, 0, sizeof call);
  if (data_make(x, &v, &rng, &d) && call_make(x, &v, &d, &call, &g_dev, detail, sizeof detail)) {
    int32_t bad_last = 10; /* T = 11 */
    char err[256];
    int up = !mixc_cuda_memcpy_htod(g_cu, call.cub.d + 3 * 4, &bad_last, 4, err, sizeof err);
    mixc_args a = call_args(&call, w->stream);
    s = mixc_forward(kc, &a, &e);
    result(w->out, up && s == MIXC_ERROR_ARGUMENT && strstr(e.message, "the last offset must equal T"),
           "gla cuda checked cu_seqlens catches a bad last offset", e.message);
  } else {
    result(w->out, 0, "gla cuda checked cu_seqlens: setup", detail);
  }
  call_free(&call);
  data_free(&d);
  mixc_kernel_destroy(kc);
}

static void run_example(Worker *w, const char *path, int index, uint64_t seed) {
  Ex x;
  char err[2048];
  MixcRng rng;
  mixc_rng_seed(&rng, seed);
  if (!ex_open(&x, w->ctx, path, index, &rng, err, sizeof err)) {
    result(w->out, 0, path, err);
    mixc_module_destroy(x.mod);
    compilation_free(&x.comp);
    return;
  }
  static const mixc_strategy strats[3] = {MIXC_STRATEGY_RECURRENT, MIXC_STRATEGY_CHUNK,
                                          MIXC_STRATEGY_PARALLEL};
  static const char *const snames[3] = {"recurrent", "chunk", "parallel"};
  for (int si = 0; si < 3; si++) {
    mixc_kernel *k = NULL;
    mixc_error e;
    mixc_status s = kernel_of(&x, strats[si], 0, &k, &e);
    char name[300];
    snprintf(name, sizeof name, "%s %s kernel", x.name, snames[si]);
    if (s == MIXC_ERROR_UNSUPPORTED && si >= 1) {
      fprintf(w->out, "skip %s: %s\n", name, e.message); /* no chunk form for these classes */
      continue;
    }
    if (s != MIXC_OK) {
      result(w->out, 0, name, e.message);
      continue;
    }
    uint64_t cs = seed * 31 + (uint64_t)si * 1000;
    Cfg c;
    memset(&c, 0, sizeof c);
    c.B = 2;
    c.dt = MIXC_F32;
    if (x.grid) {
      static const int64_t yx[3][2] = {{1, 1}, {3, 5}, {8, 8}};
      for (int i = 0; i < 3; i++) {
        c.Y = yx[i][0];
        c.X = yx[i][1];
        c.user_stream = i == 2;
        c.layout_in = i == 1 ? L_TRANSPOSE : L_CONTIG;
        c.layout_out = i == 1;
        run_case(w, &x, k, snames[si], &c, cs + (uint64_t)i, "forward");
      }
      c.dt = MIXC_BF16;
      c.params = 1;
      c.Y = 3;
      c.X = 5;
      run_case(w, &x, k, snames[si], &c, cs + 7, "forward");
      mixc_kernel_destroy(k);
      continue;
    }
    /* f32, initial and final states */
    static const int64_t Ts[5] = {1, 7, 64, 65, 1000};
    c.init = c.fin = 1;
    for (int i = 0; i < 5; i++) {
      c.T = Ts[i];
      c.layout_in = Ts[i] == 65 ? L_TRANSPOSE : Ts[i] == 7 ? L_BROADCAST_B : L_CONTIG;
      c.layout_out = Ts[i] == 65;
      c.user_stream = Ts[i] == 64 || Ts[i] == 1000;
      run_case(w, &x, k, snames[si], &c, cs + 10 + (uint64_t)i, "forward");
    }
    /* bf16, every param given, final states only */
    c.dt = MIXC_BF16;
    c.init = 0;
    c.params = 1;
    c.user_stream = 1;
    c.T = 7;
    c.layout_in = L_CONTIG;
    c.layout_out = 0;
    run_case(w, &x, k, snames[si], &c, cs + 20, "forward");
    c.T = 65;
    c.layout_in = L_TRANSPOSE;
    c.layout_out = 1;
    run_case(w, &x, k, snames[si], &c, cs + 21, "forward");
    if (index % 6 == 0) {
      c.dt = MIXC_F16;
      c.T = 65;
      run_case(w, &x, k, snames[si], &c, cs + 22, "forward");
    }
    /* varlen: i64 on even examples, i32 on odd ones, both on gla */
    static const int64_t lens[4] = {5, 0, 9, 50};
    Cfg v;
    memset(&v, 0, sizeof v);
    v.B = 1;
    v.dt = MIXC_F32;
    v.init = v.fin = 1;
    v.seqlens = lens;
    v.nseq = 4;
    v.user_stream = 1;
    int gla = !strcmp(x.name, "gla");
    for (int i32 = 0; i32 < 2; i32++) {
      if (!gla && i32 != index % 2) continue;
      v.cu_i32 = i32;
      run_case(w, &x, k, snames[si], &v, cs + 30 + (uint64_t)i32, i32 ? "varlen i32" : "varlen i64");
    }
    if (gla) { /* strided: read back, checked and copied through the workspace */
      v.cu_i32 = 1;
      v.cu_stride = 2;
      run_case(w, &x, k, snames[si], &v, cs + 32, "varlen i32 stride 2");
    }
    step_case(w, &x, k, snames[si], cs + 40);
    if (gla && si == 0) gla_extras(w, &x, k, cs + 50);
    mixc_kernel_destroy(k);
  }
  mixc_module_destroy(x.mod);
  compilation_free(&x.comp);
}

typedef struct Pool {
  mixc_context *ctx;
  char **files;
  int nfiles, next;
  uint64_t seed;
} Pool;

static void *worker_main(void *p) {
  Pool *pool = p;
  Worker w;
  memset(&w, 0, sizeof w);
  w.ctx = pool->ctx;
  char err[512];
  if (mixc_cuda_stream_create(g_cu, &w.stream, err, sizeof err)) {
    result(stdout, 0, "a user stream", err);
    return NULL;
  }
  for (;;) {
    pthread_mutex_lock(&g_mu);
    int i = pool->next++;
    pthread_mutex_unlock(&g_mu);
    if (i >= pool->nfiles) break;
    char *buf = NULL;
    size_t len = 0;
    w.out = open_memstream(&buf, &len);
    if (!w.out) {
      w.out = stdout;
      run_example(&w, pool->files[i], i, pool->seed + (uint64_t)i * 7919);
      continue;
    }
    run_example(&w, pool->files[i], i, pool->seed + (uint64_t)i * 7919);
    fclose(w.out);
    pthread_mutex_lock(&g_mu);
    fputs(buf, stdout);
    fflush(stdout);
    pthread_mutex_unlock(&g_mu);
    free(buf);
  }
  mixc_cuda_stream_synchronize(g_cu, w.stream, err, sizeof err);
  mixc_cuda_stream_destroy(g_cu, w.stream);
  return NULL;
}

/* ---- tiers: the fast cubin first, the optimised one from its thread ---- */

/* Entries of a cubin cache directory: how many, and the inode of the last; temporaries. */
static int cache_entries(const char *dir, ino_t *ino, int *tmps) {
  DIR *d = opendir(dir);
  int k = 0;
  if (tmps) *tmps = 0;
  if (!d) return 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    size_t l = strlen(de->d_name);
    if (l > 6 && !strcmp(de->d_name + l - 6, ".entry")) {
      k++;
      char path[4400];
      struct stat st;
      snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
      if (ino && stat(path, &st) == 0) *ino = st.st_ino;
    }
    if (tmps && !strncmp(de->d_name, ".tmp-", 5)) ++*tmps;
  }
  closedir(d);
  return k;
}

static void remove_tree(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    struct dirent *de;
    while (d && (de = readdir(d))) {
      if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
      char sub[4400];
      snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
      remove_tree(sub);
    }
    if (d) closedir(d);
    rmdir(path);
  } else {
    unlink(path);
  }
}

/* The tiered case's kernel: gla, chunk, K = V = 32, in a context of its own that opens the
 * device now (so reads XDG_CACHE_HOME now). */
typedef struct Tier {
  mixc_context *ctx;
  Ex x;
  mixc_kernel *k;
} Tier;

static int tier_open(Tier *t, char *err, size_t n) {
  memset(t, 0, sizeof *t);
  mixc_error e;
  if (mixc_context_create(2, &t->ctx, &e)) return snprintf(err, n, "%s", e.message), 0;
  if (!ex_load(&t->x, t->ctx, "examples/gla.mix", err, n)) return 0;
  for (int s = 0; s < t->x.m->nsyms; s++)
    if (t->x.m->syms[s].kind == SYM_DIM) {
      t->x.dims[s] = 32;
      t->x.kdims[t->x.nkdims].name = t->x.m->syms[s].name;
      t->x.kdims[t->x.nkdims++].size = 32;
    }
  if (kernel_of(&t->x, MIXC_STRATEGY_CHUNK, 0, &t->k, &e))
    return snprintf(err, n, "kernel: %s", e.message), 0;
  return 1;
}

static void tier_close(Tier *t) {
  mixc_kernel_destroy(t->k);
  mixc_module_destroy(t->x.mod);
  compilation_free(&t->x.comp);
  mixc_context_destroy(t->ctx); /* waits for the optimised compile, if it still runs */
  memset(t, 0, sizeof *t);
}

/* One forward on fresh random data (B = 2, T = 150, f32, initial and final states), compared
 * with the reference; *pending: the kernel's fast-tier variants just after the call returned
 * (before the device finished it), so a call that returned with 1 ran the fast tier. */
static int tier_call(Tier *t, void *stream, uint64_t seed, int *pending, char *detail, size_t n) {
  Cfg c;
  memset(&c, 0, sizeof c);
  c.B = 2;
  c.T = 150;
  c.dt = MIXC_F32;
  c.init = c.fin = 1;
  MixcRng rng;
  mixc_rng_seed(&rng, seed);
  Data d, got;
  Call call;
  memset(&got, 0, sizeof got);
  memset(&call, 0, sizeof call);
  int ok = data_make(&t->x, &c, &rng, &d);
  if (!ok) snprintf(detail, n, "out of memory");
  if (ok) ok = call_make(&t->x, &c, &d, &call, &g_dev, detail, n); /* outputs poisoned */
  if (ok) {
    mixc_args a = call_args(&call, stream);
    mixc_error e;
    mixc_status s = mixc_forward(t->k, &a, &e);
    mixc_kernel_optimized_ms(t->k, pending);
    if (s != MIXC_OK) ok = 0, snprintf(detail, n, "mixc_forward: %s", e.message);
  }
  if (ok) ok = sync_all(detail, n) && call_results(&t->x, &d, &call, &got, detail, n);
  if (ok && run_reference(&t->x, &d, detail, n)) ok = 0;
  double worst = 0;
  if (ok) ok = compare(&t->x, &d, &got, 1e-4, 1e-4, detail, n, &worst);
  if (ok) snprintf(detail, n, "rel err %.2e", worst);
  call_free(&call);
  data_free(&d);
  data_free(&got);
  return ok;
}

/* Calls on one kernel from a thread of its own (own stream), until the optimised tier is in
 * and three calls more; the last one is checked. */
typedef struct TierThread {
  Tier *t;
  uint64_t seed;
  int ok, calls, fast_calls;
  char detail[4800];
} TierThread;

static void *tier_thread(void *p) {
  TierThread *w = p;
  void *stream = NULL;
  char err[512];
  if (mixc_cuda_stream_create(g_cu, &stream, err, sizeof err)) {
    snprintf(w->detail, sizeof w->detail, "a stream: %s", err);
    return NULL;
  }
  int after = 0;
  for (int i = 0; i < 4000 && after < 3; i++) {
    int pending = 0;
    w->ok = tier_call(w->t, stream, w->seed + (uint64_t)i, &pending, w->detail, sizeof w->detail);
    w->calls++;
    if (pending) w->fast_calls++;
    if (!w->ok) break;
    if (!pending) after++;
  }
  if (w->ok && after < 3) w->ok = 0, snprintf(w->detail, sizeof w->detail, "never switched");
  mixc_cuda_stream_synchronize(g_cu, stream, err, sizeof err);
  mixc_cuda_stream_destroy(g_cu, stream);
  return NULL;
}

static void run_tiered(uint64_t seed) {
  char tmp[] = "/tmp/mixc-tiered-XXXXXX";
  if (!mkdtemp(tmp)) {
    result(stdout, 0, "tiers: a temporary directory", strerror(errno));
    return;
  }
  const char *ox = getenv("XDG_CACHE_HOME"), *ot = getenv("MIXC_CUDA_TIERED");
  char *old_xdg = ox ? strdup(ox) : NULL, *old_tiered = ot ? strdup(ot) : NULL;
  unsetenv("MIXC_CUDA_TIERED");
  /* the switch no sooner than 1.5 s after the optimised compile starts: the first calls run
   * the fast tier for certain, even where NVRTC's own cache (CUDA_CACHE_PATH) is warm */
  setenv("MIXC_CUDA_TIER_DELAY_MS", "1500", 1);
  char xdg[4200], dir[4400], detail[4800], name[200];
  Tier t;
  int pending = -1, n = 0, tmps = 0;
  ino_t ino = 0, ino2 = 0;
  mixc_error e;

  /* A cold cache: the first call runs the fast tier; then the optimised one, into the cache,
   * while two threads keep calling. */
  snprintf(xdg, sizeof xdg, "%s/a", tmp);
  snprintf(dir, sizeof dir, "%s/mixc/cubin", xdg);
  setenv("XDG_CACHE_HOME", xdg, 1);
  if (!tier_open(&t, detail, sizeof detail)) {
    result(stdout, 0, "tiers: setup", detail);
    tier_close(&t);
    goto out;
  }
  int ok = tier_call(&t, NULL, seed, &pending, detail, sizeof detail);
  snprintf(name, sizeof name, "tiers: cold first call runs the fast tier (pending %d)", pending);
  result(stdout, ok && pending == 1, name, detail);
  double first_ms = mixc_kernel_compile_ms(t.k, NULL);
  TierThread tw[2];
  pthread_t th[2];
  int nth = 0;
  for (int i = 0; i < 2; i++) {
    memset(&tw[i], 0, sizeof tw[i]);
    tw[i].t = &t;
    tw[i].seed = seed + 1000 * (uint64_t)(i + 1);
    if (!pthread_create(&th[nth], NULL, tier_thread, &tw[i])) nth++;
  }
  mixc_status s = mixc_kernel_wait_ready(t.k, &e);
  double opt_ms = mixc_kernel_optimized_ms(t.k, &pending);
  snprintf(detail, sizeof detail, "%s; first tier %.0f ms, optimised %.0f ms (its own thread)",
           s ? e.message : "ok", first_ms, opt_ms);
  result(stdout, s == MIXC_OK && pending == 0 && opt_ms > 0, "tiers: mixc_kernel_wait_ready",
         detail);
  ok = tier_call(&t, NULL, seed + 1, &pending, detail, sizeof detail);
  result(stdout, ok && pending == 0, "tiers: after the wait, the optimised tier", detail);
  for (int i = 0; i < nth; i++) {
    pthread_join(th[i], NULL);
    snprintf(name, sizeof name, "tiers: thread %d calling through the switch (%d calls, %d fast)",
             i, tw[i].calls, tw[i].fast_calls);
    result(stdout, tw[i].ok, name, tw[i].detail);
  }
  n = cache_entries(dir, &ino, &tmps);
  snprintf(detail, sizeof detail, "%d entries, %d temporaries in %s", n, tmps, dir);
  result(stdout, n == 1 && tmps == 0, "tiers: the optimised cubin is cached", detail);
  tier_close(&t);

  unsetenv("MIXC_CUDA_TIER_DELAY_MS");

  /* A fresh context on that cache: the optimised cubin at once, nothing rewritten. */
  if (!tier_open(&t, detail, sizeof detail)) {
    result(stdout, 0, "tiers: setup 2", detail);
  } else {
    ok = tier_call(&t, NULL, seed + 2, &pending, detail, sizeof detail);
    double o2 = mixc_kernel_optimized_ms(t.k, NULL);
    n = cache_entries(dir, &ino2, NULL);
    snprintf(name, sizeof name, "tiers: a fresh context hits the cache (pending %d, %d entries)",
             pending, n);
    result(stdout, ok && pending == 0 && o2 == 0 && n == 1 && ino2 == ino, name, detail);
    s = mixc_kernel_wait_ready(t.k, &e);
    result(stdout, s == MIXC_OK, "tiers: waiting on a cache hit", s ? e.message : "");
  }
  tier_close(&t);

  /* MIXC_CUDA_TIERED=0: optimised on the calling thread, cached before the call returns. */
  snprintf(xdg, sizeof xdg, "%s/b", tmp);
  snprintf(dir, sizeof dir, "%s/mixc/cubin", xdg);
  setenv("XDG_CACHE_HOME", xdg, 1);
  setenv("MIXC_CUDA_TIERED", "0", 1);
  if (!tier_open(&t, detail, sizeof detail)) {
    result(stdout, 0, "tiers: setup 3", detail);
  } else {
    ok = tier_call(&t, NULL, seed + 3, &pending, detail, sizeof detail);
    n = cache_entries(dir, NULL, NULL);
    snprintf(name, sizeof name, "tiers: MIXC_CUDA_TIERED=0 (pending %d, %d entries)", pending, n);
    result(stdout, ok && pending == 0 && n == 1, name, detail);
  }
  tier_close(&t);
  unsetenv("MIXC_CUDA_TIERED");

  /* The context destroyed while the optimised compile runs (or is held back): the thread is
   * joined, and the compile still lands in the cache. */
  setenv("MIXC_CUDA_TIER_DELAY_MS", "30000", 1); /* the destroy must cut it short */
  struct timespec d0, d1;
  snprintf(xdg, sizeof xdg, "%s/c", tmp);
  snprintf(dir, sizeof dir, "%s/mixc/cubin", xdg);
  setenv("XDG_CACHE_HOME", xdg, 1);
  if (!tier_open(&t, detail, sizeof detail)) {
    result(stdout, 0, "tiers: setup 4", detail);
  } else {
    ok = tier_call(&t, NULL, seed + 4, &pending, detail, sizeof detail);
    snprintf(name, sizeof name, "tiers: a first call, then destroy at once (pending %d)", pending);
    result(stdout, ok && pending == 1, name, detail);
  }
  clock_gettime(CLOCK_MONOTONIC, &d0);
  tier_close(&t);
  clock_gettime(CLOCK_MONOTONIC, &d1);
  unsetenv("MIXC_CUDA_TIER_DELAY_MS");
  double dsec = (double)(d1.tv_sec - d0.tv_sec) + (double)(d1.tv_nsec - d0.tv_nsec) * 1e-9;
  snprintf(detail, sizeof detail, "%.2f s", dsec);
  result(stdout, dsec < 20, "tiers: destroying the context ends the hold", detail);
  n = cache_entries(dir, NULL, &tmps);
  snprintf(detail, sizeof detail, "%d entries, %d temporaries", n, tmps);
  result(stdout, n == 1 && tmps == 0, "tiers: the destroyed context's optimised cubin is cached",
         detail);

out:
  unsetenv("MIXC_CUDA_TIER_DELAY_MS");
  if (old_xdg) setenv("XDG_CACHE_HOME", old_xdg, 1);
  else unsetenv("XDG_CACHE_HOME");
  if (old_tiered) setenv("MIXC_CUDA_TIERED", old_tiered, 1);
  free(old_xdg);
  free(old_tiered);
  remove_tree(tmp);
}

static void run_gpu(mixc_context *ctx, uint64_t seed) {
  char *files[256];
  int nf = list_examples(files, 256);
  if (nf == 0) result(stdout, 0, "examples", "none found (run from the repository root)");
  Pool pool = {ctx, files, nf, 0, seed};
  pthread_t th[WORKERS];
  int nt = 0;
  for (int i = 0; i < WORKERS; i++)
    if (!pthread_create(&th[nt], NULL, worker_main, &pool)) nt++;
  if (nt == 0) worker_main(&pool);
  for (int i = 0; i < nt; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < nf; i++) free(files[i]);
}
#endif

int main(int argc, char **argv) {
  uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10)
                           : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
  printf("test_api_cuda: seed %" PRIu64 "\n", seed);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  mixc_context *ctx = NULL;
  mixc_module *mod = NULL;
  mixc_kernel *k = NULL;
  mixc_error e;
  size_t len = 0;
  char *src = read_file("examples/gla.mix", &len);
  int gpu = 0;
  if (!src || mixc_context_create(2, &ctx, &e) ||
      mixc_module_compile(ctx, src, len, "examples/gla.mix", &mod, &e)) {
    result(stdout, 0, "setup", src ? e.message : "cannot read examples/gla.mix");
  } else {
    gpu = probe(ctx, mod, &k);
  }
  free(src);
  wait_api(mod);
  mixc_kernel_destroy(k);
  mixc_module_destroy(mod);
  const char *req = getenv("MIXC_TEST_REQUIRE_GPU");
  int require = req && *req && strcmp(req, "0");
  int skipped = 0;
#ifdef MIXC_HAVE_CUDA
  char err[1024];
  if (gpu && mixc_cuda_open(0, &g_cu, err, sizeof err)) {
    result(stdout, 0, "the test's own device handle", err);
    gpu = 0;
    g_cu = NULL;
  }
  if (gpu) {
    const MixcCudaInfo *in = mixc_cuda_info(g_cu);
    printf("GPU: %s (%s, %d SMs), NVRTC %d.%d\n", in->name, in->target, in->sm_count,
           in->nvrtc_major, in->nvrtc_minor);
    run_tiered(seed); /* first: it sets XDG_CACHE_HOME, which no other thread may read */
    run_gpu(ctx, seed);
  }
#endif
  if (!gpu && failed == 0) {
    if (require) {
      printf("FAIL: no usable GPU, and MIXC_TEST_REQUIRE_GPU is set\n");
      failed++;
    } else {
      skipped = 1;
    }
  }
  mixc_context_destroy(ctx);
#ifdef MIXC_HAVE_CUDA
  if (g_cu) mixc_cuda_close(g_cu);
#endif
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
  printf("test_api_cuda: %d passed, %d failed%s (%.1f s)\n", passed, failed,
         skipped ? ", GPU part skipped (no usable GPU)" : "", s);
  if (failed) return 1;
  return skipped ? SKIP : 0;
}
