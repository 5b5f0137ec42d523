/* The public C API (runtime/include/mixc.h): contexts, modules, kernels, argument
 * checking, variant lookup and compilation, and the launch over the thread pool.
 *
 * Objects and their memory:
 *   mixc_context  the pool (pool.h), the kernel cache (kcache.h) and the JIT (created at
 *                 the first compilation). Reference-counted: every module holds it, so
 *                 mixc_context_destroy may come before the destruction of its modules.
 *   mixc_module   a Compilation at STAGE_REC. Held by its kernels likewise.
 *   mixc_kernel   a mixer with every dim fixed, a device and a strategy; the variants it has
 *                 used (pointers into the cache) and the text of its cache key.
 * A call (mixc_forward, mixc_step) checks every argument first, then builds the variant's
 * KernelSpec, looks it up (in the kernel, then in the context's cache), lowers and
 * JIT-compiles it on a miss, fills the argument tables from the plan and runs the work
 * items over the pool. Nothing here is global: all state hangs off the objects. */
#define _POSIX_C_SOURCE 200809L
#include "mixc.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../compiler/compile.h"
#include "../compiler/lower.h"
#include "../compiler/print.h"
#include "../compiler/rec.h"
#include "cuda_exec.h"
#include "host.h"
#include "kcache.h"
#include "pool.h"
#ifdef MIXC_HAVE_LLVM
#include "../backends/llvm/llvm_info.h"
#include "../backends/llvm/llvm_jit.h"
#endif

#ifndef MIXC_VERSION_STRING
#define MIXC_VERSION_STRING "0.1.0"
#endif

enum {
  MAX_THREADS = 1024,
  MAX_DIM_SIZE = 1 << 20,
  SCRATCH_ALIGN = 64, /* bytes */
  LAYOUT_MAX = MIXC_MAX_RANK + 6,
};

/* ---- objects ---- */

struct mixc_context {
  int threads;
  Pool *pool;
  KCache *cache;
  pthread_mutex_t mu; /* refs (the context's and every module's), the JIT's creation */
  int refs;           /* the user's, plus one per module */
  char target[256];
  HostCaches caches;  /* the host's data caches, read once at creation (the CPU schedule) */
#ifdef MIXC_HAVE_LLVM
  MixcJit *jit;
#endif
#ifdef MIXC_HAVE_CUDA
  CudaDevices *cuda; /* the CUDA devices, opened at their first kernel (cuda_exec.h) */
#endif
};

struct mixc_module {
  mixc_context *ctx;
  Compilation comp;
  char *filename;
  int refs; /* the user's, plus one per kernel; under ctx->mu */
};

typedef struct Variant {
  char *suffix; /* the per-call part of the key */
  size_t len;
  const KCacheEntry *e;
  int built; /* compiled by this kernel (not found in the context's cache) */
} Variant;

struct mixc_kernel {
  mixc_module *mod;
  const RecMixer *rm;
  const Mixer *mx;
  int64_t *dims; /* per symbol: dim sizes (0 for other symbols) */
  mixc_device_kind device;
  Strategy strategy;
  int64_t chunk_size, vtile; /* options.chunk_size, options.vtile */
  int64_t segments;          /* options.segments */
  int device_index, check_cu; /* MIXC_CUDA: options.device_index, options.check_cu_seqlens */
#ifdef MIXC_HAVE_CUDA
  MixcCuda *cuda;    /* the device (owned by the context's CudaDevices) */
  CudaWorkspace *ws; /* its scratch and cu_seqlens copies */
#endif
  char *base_key; /* everything of the key but the variant's part */
  size_t base_len;
  pthread_mutex_t mu; /* the fields below */
  Variant *variants;
  int nvariants, capvariants;
  double compile_ms;
};

/* ---- errors ---- */

static mixc_status ok(mixc_error *err) {
  if (err) {
    err->status = MIXC_OK;
    err->message[0] = 0;
  }
  return MIXC_OK;
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static mixc_status fail(mixc_error *err, mixc_status s, const char *fmt, ...) {
  if (err) {
    err->status = s;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
  }
  return s;
}

static long long ll(int64_t v) { return (long long)v; }

const char *mixc_status_name(mixc_status s) {
  switch (s) {
  case MIXC_OK: return "ok";
  case MIXC_ERROR_SOURCE: return "source error";
  case MIXC_ERROR_ARGUMENT: return "argument error";
  case MIXC_ERROR_UNSUPPORTED: return "unsupported";
  case MIXC_ERROR_DEVICE: return "device error";
  case MIXC_ERROR_OUT_OF_MEMORY: return "out of memory";
  case MIXC_ERROR_INTERNAL: return "internal error";
  }
  return "unknown status";
}

const char *mixc_dtype_name(mixc_dtype d) {
  switch (d) {
  case MIXC_F32: return "f32";
  case MIXC_BF16: return "bf16";
  case MIXC_F16: return "f16";
  case MIXC_I32: return "i32";
  case MIXC_I64: return "i64";
  }
  return "?";
}

const char *mixc_version(void) { return MIXC_VERSION_STRING; }

size_t mixc_sizeof(const char *type_name) {
  static const struct {
    const char *name;
    size_t size;
  } types[] = {
      {"mixc_kernel_options", sizeof(mixc_kernel_options)},
      {"mixc_args", sizeof(mixc_args)},
      {"mixc_tensor", sizeof(mixc_tensor)},
      {"mixc_named_tensor", sizeof(mixc_named_tensor)},
      {"mixc_dim", sizeof(mixc_dim)},
      {"mixc_error", sizeof(mixc_error)},
  };
  for (size_t i = 0; type_name && i < sizeof types / sizeof *types; i++)
    if (!strcmp(type_name, types[i].name)) return types[i].size;
  return 0;
}

mixc_tensor mixc_tensor_contiguous(void *data, mixc_dtype dtype, int ndim, const int64_t *shape) {
  mixc_tensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.dtype = dtype;
  t.ndim = ndim;
  if (ndim < 0 || ndim > MIXC_MAX_DIMS || !shape) return t;
  int64_t st = 1;
  for (int d = ndim - 1; d >= 0; d--) {
    t.shape[d] = shape[d];
    t.stride[d] = st;
    if (shape[d] > 1) st = st > INT64_MAX / shape[d] ? INT64_MAX : st * shape[d];
  }
  return t;
}

/* ---- context ---- */

static int parse_threads(const char *s, int *out) {
  if (!s || !*s) return 0;
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  while (*end == ' ') end++;
  if (errno || *end || v < 1 || v > MAX_THREADS) return -1;
  *out = (int)v;
  return 1;
}

mixc_status mixc_context_create(int threads, mixc_context **out, mixc_error *err) {
  if (!out) return fail(err, MIXC_ERROR_ARGUMENT, "mixc_context_create: out is NULL");
  *out = NULL;
  if (threads < 0 || threads > MAX_THREADS)
    return fail(err, MIXC_ERROR_ARGUMENT,
                "threads = %d is out of range [0, %d] (0: MIXC_NUM_THREADS, else every core)",
                threads, MAX_THREADS);
  if (threads == 0) {
    const char *env = getenv("MIXC_NUM_THREADS");
    int r = parse_threads(env, &threads);
    if (r < 0)
      return fail(err, MIXC_ERROR_ARGUMENT,
                  "MIXC_NUM_THREADS = '%.64s': expected an integer in [1, %d]", env, MAX_THREADS);
    if (r == 0) {
      long n = sysconf(_SC_NPROCESSORS_ONLN);
      threads = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
    }
  }
  mixc_context *c = calloc(1, sizeof *c);
  if (!c) return fail(err, MIXC_ERROR_OUT_OF_MEMORY, "out of memory creating the context");
  if (pthread_mutex_init(&c->mu, NULL)) {
    free(c);
    return fail(err, MIXC_ERROR_OUT_OF_MEMORY, "cannot create a mutex for the context");
  }
  c->refs = 1;
  c->cache = kcache_create();
  c->pool = c->cache ? pool_create(threads) : NULL;
  if (!c->pool) {
    kcache_destroy(c->cache);
    pthread_mutex_destroy(&c->mu);
    free(c);
    return fail(err, MIXC_ERROR_OUT_OF_MEMORY, "out of memory creating the context");
  }
  c->threads = pool_threads(c->pool);
  host_caches(&c->caches);
#ifdef MIXC_HAVE_CUDA
  c->cuda = cuda_devices_create();
  if (!c->cuda) {
    pool_destroy(c->pool);
    kcache_destroy(c->cache);
    pthread_mutex_destroy(&c->mu);
    free(c);
    return fail(err, MIXC_ERROR_OUT_OF_MEMORY, "out of memory creating the context");
  }
#endif
#ifdef MIXC_HAVE_LLVM
  char desc[200];
  mixc_llvm_describe(desc, sizeof desc);
  snprintf(c->target, sizeof c->target, "cpu-llvm (%s)", desc);
#else
  snprintf(c->target, sizeof c->target, "cpu");
#endif
  *out = c;
  return ok(err);
}

static void context_free(mixc_context *c) {
  pool_destroy(c->pool);
  kcache_destroy(c->cache); /* before the devices: CUDA entries free their modules */
#ifdef MIXC_HAVE_CUDA
  cuda_devices_destroy(c->cuda);
#endif
#ifdef MIXC_HAVE_LLVM
  mixc_jit_free(c->jit);
#endif
  pthread_mutex_destroy(&c->mu);
  free(c);
}

static void context_release(mixc_context *c) {
  pthread_mutex_lock(&c->mu);
  int last = --c->refs == 0;
  pthread_mutex_unlock(&c->mu);
  if (last) context_free(c);
}

void mixc_context_destroy(mixc_context *ctx) {
  if (ctx) context_release(ctx);
}

/* ---- module ---- */

mixc_status mixc_module_compile(mixc_context *ctx, const char *source, size_t len,
                                const char *filename, mixc_module **out, mixc_error *err) {
  if (!out) return fail(err, MIXC_ERROR_ARGUMENT, "mixc_module_compile: out is NULL");
  *out = NULL;
  if (!ctx) return fail(err, MIXC_ERROR_ARGUMENT, "mixc_module_compile: the context is NULL");
  if (!source && len) return fail(err, MIXC_ERROR_ARGUMENT, "mixc_module_compile: source is NULL");
  mixc_module *m = calloc(1, sizeof *m);
  const char *fname = filename ? filename : "<source>";
  char *fcopy = m ? malloc(strlen(fname) + 1) : NULL;
  if (!m || !fcopy) {
    free(m);
    return fail(err, MIXC_ERROR_OUT_OF_MEMORY, "out of memory compiling %s", fname);
  }
  strcpy(fcopy, fname);
  m->filename = fcopy;
  int nerr = compile_source(&m->comp, m->filename, source ? source : "", len, STAGE_REC);
  if (nerr || !m->comp.rec) {
    mixc_status s;
    char *text = diag_render(&m->comp.diags);
    if (!text) {
      s = fail(err, MIXC_ERROR_OUT_OF_MEMORY, "%s: out of memory rendering %d errors", fname, nerr);
    } else if (!nerr) {
      s = fail(err, MIXC_ERROR_INTERNAL, "%s: compiled without errors but has no recurrence IR",
               fname);
    } else {
      s = fail(err, MIXC_ERROR_SOURCE, "%s", text);
      size_t n = strlen(text);
      /* Say so when the diagnostics did not fit. */
      if (err && n >= sizeof err->message) {
        const char *more = "\n... (more diagnostics)";
        strcpy(err->message + sizeof err->message - strlen(more) - 1, more);
      }
    }
    free(text);
    compilation_free(&m->comp);
    free(m->filename);
    free(m);
    return s;
  }
  pthread_mutex_lock(&ctx->mu);
  ctx->refs++;
  pthread_mutex_unlock(&ctx->mu);
  m->ctx = ctx;
  m->refs = 1;
  *out = m;
  return ok(err);
}

static void module_release(mixc_module *m) {
  mixc_context *c = m->ctx;
  pthread_mutex_lock(&c->mu);
  int last = --m->refs == 0;
  pthread_mutex_unlock(&c->mu);
  if (!last) return;
  compilation_free(&m->comp);
  free(m->filename);
  free(m);
  context_release(c);
}

void mixc_module_destroy(mixc_module *mod) {
  if (mod) module_release(mod);
}

int mixc_module_mixer_count(const mixc_module *mod) {
  return mod && mod->comp.rec ? mod->comp.rec->nmixers : 0;
}

const char *mixc_module_mixer_name(const mixc_module *mod, int i) {
  if (i < 0 || i >= mixc_module_mixer_count(mod)) return NULL;
  return mod->comp.rec->mixers[i]->name;
}

/* ---- names, lists, shapes in messages ---- */

/* "a, b, c" of the symbols of one kind (or of the mixers), truncated to fit. */
static void sym_list(char *buf, size_t n, const Mixer *m, SymKind kind) {
  size_t used = 0;
  buf[0] = 0;
  for (int s = 0; s < m->nsyms && used < n; s++) {
    if (m->syms[s].kind != kind) continue;
    int w = snprintf(buf + used, n - used, "%s%s", used ? ", " : "", m->syms[s].name);
    if (w < 0) break;
    used += (size_t)w;
  }
  if (!buf[0]) snprintf(buf, n, "none");
}

static void mixer_list(char *buf, size_t n, const RecProgram *r) {
  size_t used = 0;
  buf[0] = 0;
  for (int i = 0; i < r->nmixers && used < n; i++) {
    int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", r->mixers[i]->name);
    if (w < 0) break;
    used += (size_t)w;
  }
}

static void fmt_ints(char *buf, size_t n, const int64_t *v, int k) {
  size_t used = 0;
  used += (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < k && used < n; i++)
    used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "", ll(v[i]));
  if (used < n) snprintf(buf + used, n - used, "]");
}

static void fmt_names(char *buf, size_t n, const char *const *v, int k) {
  size_t used = 0;
  used += (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < k && used < n; i++)
    used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? ", " : "", v[i]);
  if (used < n) snprintf(buf + used, n - used, "]");
}

/* ---- kernel ---- */

static int ndir_of(const Mixer *m) { return m->ngrid && m->ndirs > 0 ? m->ndirs : 1; }

static const char *lower_status_name(const char *msg, mixc_status *s) {
  if (strstr(msg, "out of memory"))
    *s = MIXC_ERROR_OUT_OF_MEMORY;
  else if (!strncmp(msg, "internal", 8) || !strncmp(msg, "kir:", 4))
    *s = MIXC_ERROR_INTERNAL;
  else
    *s = MIXC_ERROR_UNSUPPORTED;
  return msg;
}

/* The kernel's part of every cache key: version, target, device, strategy, the mixer's
 * declarations and statements (typed tree) and recurrence IR, and every dim's size. */
static int build_base_key(mixc_kernel *k) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return 1;
  const Mixer *mx = k->mx;
  const char *target = k->mod->ctx->target;
#ifdef MIXC_HAVE_CUDA
  char dev[512];
  if (k->device == MIXC_CUDA) {
    cuda_device_describe(k->cuda, dev, sizeof dev); /* ordinal, name, arch, NVRTC */
    target = dev;
  }
#endif
  fprintf(f, "mixc %s\ntarget %s\ndevice %d\nstrategy %s chunk %lld vtile %lld segments %lld\ndims",
          MIXC_VERSION_STRING, target, (int)k->device, strategy_name(k->strategy),
          ll(k->chunk_size), ll(k->vtile), ll(k->segments));
  for (int s = 0; s < mx->nsyms; s++)
    if (mx->syms[s].kind == SYM_DIM) fprintf(f, " %s=%lld", mx->syms[s].name, ll(k->dims[s]));
  fputc('\n', f);
  typed_print(f, k->mod->comp.prog, k->rm->name);
  rec_print_mixer(f, k->rm);
  fputs("variant ", f);
  int bad = ferror(f);
  if (fclose(f) || bad) {
    free(buf);
    return 1;
  }
  k->base_key = buf;
  k->base_len = len;
  return 0;
}

static void kernel_free(mixc_kernel *k) {
  if (!k) return;
#ifdef MIXC_HAVE_CUDA
  cuda_workspace_destroy(k->ws); /* waits for the device when it holds memory */
#endif
  for (int i = 0; i < k->nvariants; i++) free(k->variants[i].suffix);
  free(k->variants);
  free(k->base_key);
  free(k->dims);
  pthread_mutex_destroy(&k->mu);
  mixc_module *m = k->mod;
  free(k);
  if (m) module_release(m);
}

/* The layout rank of every tensor must fit a mixc_tensor. */
static mixc_status check_ranks(const Mixer *mx, const RecMixer *rm, mixc_error *err) {
  for (int s = 0; s < mx->nsyms; s++) {
    const Sym *y = &mx->syms[s];
    if (y->kind != SYM_INPUT && y->kind != SYM_PARAM && y->kind != SYM_OUTPUT &&
        y->kind != SYM_STATE)
      continue;
    int r = plan_layout_rank(rm, s, 0);
    if (r > MIXC_MAX_DIMS)
      return fail(err, MIXC_ERROR_UNSUPPORTED,
                  "%s '%s' of mixer '%s' needs %d dims; tensors of the API have at most %d",
                  sym_kind_name(y->kind), y->name, rm->name, r, MIXC_MAX_DIMS);
  }
  return MIXC_OK;
}

/* Lower the mixer once for the kernel's strategy (all tensors f32, every param given, no
 * states), so that a strategy or a mixer the lowering cannot do fails at creation. */
static mixc_status trial_lowering(const mixc_kernel *k, mixc_error *err) {
  const Mixer *mx = k->mx;
  size_t ns = (size_t)mx->nsyms + 1;
  KType *dt = calloc(ns, sizeof *dt);
  unsigned char *present = calloc(ns, 1), *want = calloc(ns, 1);
  Arena a;
  arena_init(&a);
  mixc_status st = MIXC_OK;
  if (!dt || !present || !want) {
    st = fail(err, MIXC_ERROR_OUT_OF_MEMORY, "out of memory creating the kernel");
    goto done;
  }
  for (int s = 0; s < mx->nsyms; s++) {
    dt[s] = KT_F32;
    present[s] = mx->syms[s].kind == SYM_PARAM;
  }
  KernelSpec sp;
  memset(&sp, 0, sizeof sp);
  sp.rm = k->rm;
  sp.dims = k->dims;
  sp.dtype = dt;
  sp.present = present;
  sp.want = want;
  sp.cu_type = KT_I32;
  sp.strategy = k->strategy;
  sp.chunk = k->chunk_size;
  sp.vtile = k->vtile;
  sp.segs = k->device == MIXC_CUDA ? k->segments : 0;
  if (k->device == MIXC_CPU) {
    const HostCaches *hc = &k->mod->ctx->caches;
    sp.cache_l1d_bytes = hc->l1d;
    sp.cache_l2_bytes = hc->l2;
    sp.cache_l3_bytes = hc->l3;
  }
  KernelPlan plan;
  char msg[1024];
  if (lower_mixer(&a, &sp, &plan, msg, sizeof msg)) {
    lower_status_name(msg, &st);
    st = fail(err, st, "mixer '%s', strategy %s: %s", k->rm->name, strategy_name(k->strategy), msg);
  }
done:
  arena_free(&a);
  free(dt);
  free(present);
  free(want);
  return st;
}

static mixc_status kernel_dims(mixc_kernel *k, const mixc_kernel_options *opt, mixc_error *err) {
  const Mixer *mx = k->mx;
  if (opt->ndims < 0)
    return fail(err, MIXC_ERROR_ARGUMENT, "options.ndims = %d is negative", opt->ndims);
  if (opt->ndims > 0 && !opt->dims)
    return fail(err, MIXC_ERROR_ARGUMENT, "options.dims is NULL but options.ndims = %d",
                opt->ndims);
  char list[512];
  for (int i = 0; i < opt->ndims; i++) {
    const mixc_dim *d = &opt->dims[i];
    if (!d->name) return fail(err, MIXC_ERROR_ARGUMENT, "options.dims[%d]: the name is NULL", i);
    int s = mixer_find(mx, d->name);
    if (s < 0 || mx->syms[s].kind != SYM_DIM) {
      for (int g = 0; g < mx->ngrid; g++)
        if (mx->grid[g].name && !strcmp(mx->grid[g].name, d->name))
          return fail(err, MIXC_ERROR_ARGUMENT,
                      "dim '%s': it is a grid axis of mixer '%s'; grid sizes are read off the "
                      "tensors, not set on the kernel",
                      d->name, k->rm->name);
      sym_list(list, sizeof list, mx, SYM_DIM);
      if (s >= 0)
        return fail(err, MIXC_ERROR_ARGUMENT,
                    "dim '%s': '%s' is a %s of mixer '%s', not a dim (its dims: %s)", d->name,
                    d->name, sym_kind_name(mx->syms[s].kind), k->rm->name, list);
      return fail(err, MIXC_ERROR_ARGUMENT,
                  "dim '%s': mixer '%s' has no dim of that name (its dims: %s)", d->name,
                  k->rm->name, list);
    }
    for (int j = 0; j < i; j++)
      if (opt->dims[j].name && !strcmp(opt->dims[j].name, d->name))
        return fail(err, MIXC_ERROR_ARGUMENT, "dim '%s' is given twice (options.dims[%d] and [%d])",
                    d->name, j, i);
    if (d->size < 1 || d->size > MAX_DIM_SIZE)
      return fail(err, MIXC_ERROR_ARGUMENT, "dim '%s' = %lld is out of range [1, %d]", d->name,
                  ll(d->size), MAX_DIM_SIZE);
    if (mx->syms[s].fixed > 0 && d->size != mx->syms[s].fixed)
      return fail(err, MIXC_ERROR_ARGUMENT, "dim '%s' = %lld: mixer '%s' fixes it to %lld", d->name,
                  ll(d->size), k->rm->name, ll(mx->syms[s].fixed));
    k->dims[s] = d->size;
  }
  for (int s = 0; s < mx->nsyms; s++) {
    const Sym *y = &mx->syms[s];
    if (y->kind != SYM_DIM) continue;
    if (y->fixed > 0) {
      k->dims[s] = y->fixed;
      continue;
    }
    if (k->dims[s] == 0) {
      char need[512];
      size_t used = 0;
      need[0] = 0;
      for (int t = 0; t < mx->nsyms && used < sizeof need; t++)
        if (mx->syms[t].kind == SYM_DIM && !mx->syms[t].fixed)
          used += (size_t)snprintf(need + used, sizeof need - used, "%s%s", used ? ", " : "",
                                   mx->syms[t].name);
      return fail(
          err, MIXC_ERROR_ARGUMENT,
          "dim '%s' is missing: mixer '%s' needs the size of every dim (%s) in options.dims",
          y->name, k->rm->name, need);
    }
  }
  return MIXC_OK;
}

/* MIXC_CUDA: the device, opened at the context's first kernel for it, and the workspace. */
static mixc_status kernel_device(mixc_kernel *k, const mixc_kernel_options *opt, mixc_error *err) {
#ifdef MIXC_HAVE_CUDA
  if (opt->device_index < 0 || opt->device_index >= CUDA_MAX_DEVICES)
    return fail(err, MIXC_ERROR_ARGUMENT, "options.device_index = %d is out of range [0, %d]",
                opt->device_index, CUDA_MAX_DEVICES - 1);
  k->device_index = opt->device_index;
  k->check_cu = opt->check_cu_seqlens != 0;
  char msg[1024];
  mixc_status st = cuda_device_get(k->mod->ctx->cuda, opt->device_index, &k->cuda, msg, sizeof msg);
  if (st != MIXC_OK) return fail(err, st, "device MIXC_CUDA %d: %s", opt->device_index, msg);
  k->ws = cuda_workspace_create(k->cuda);
  if (!k->ws) return fail(err, MIXC_ERROR_OUT_OF_MEMORY, "out of memory creating the kernel");
  return MIXC_OK;
#else
  (void)k;
  (void)opt;
  return fail(err, MIXC_ERROR_UNSUPPORTED,
              "device MIXC_CUDA: this build has no CUDA backend (configured with -DMIXC_CUDA=OFF)");
#endif
}

mixc_status mixc_kernel_create(mixc_module *mod, const mixc_kernel_options *opt, mixc_kernel **out,
                               mixc_error *err) {
  if (!out) return fail(err, MIXC_ERROR_ARGUMENT, "mixc_kernel_create: out is NULL");
  *out = NULL;
  if (!mod) return fail(err, MIXC_ERROR_ARGUMENT, "mixc_kernel_create: the module is NULL");
  if (!opt) return fail(err, MIXC_ERROR_ARGUMENT, "mixc_kernel_create: options is NULL");
  const RecProgram *rp = mod->comp.rec;
  char list[512];
  const RecMixer *rm = NULL;
  if (!opt->mixer) {
    if (rp->nmixers == 0)
      return fail(err, MIXC_ERROR_ARGUMENT, "module %s has no mixers", mod->filename);
    if (rp->nmixers > 1) {
      mixer_list(list, sizeof list, rp);
      return fail(err, MIXC_ERROR_ARGUMENT,
                  "options.mixer is NULL, but module %s has %d mixers (%s): name one",
                  mod->filename, rp->nmixers, list);
    }
    rm = rp->mixers[0];
  } else {
    rm = rec_find_mixer(rp, opt->mixer);
    if (!rm) {
      mixer_list(list, sizeof list, rp);
      return fail(err, MIXC_ERROR_ARGUMENT,
                  "options.mixer: module %s has no mixer '%s' (mixers: %s)", mod->filename,
                  opt->mixer, list);
    }
  }
  if (opt->device != MIXC_CPU && opt->device != MIXC_CUDA)
    return fail(err, MIXC_ERROR_ARGUMENT,
                "options.device = %d is not a device (MIXC_CPU, MIXC_CUDA)", (int)opt->device);
  if ((int)opt->strategy < MIXC_STRATEGY_AUTO || (int)opt->strategy > MIXC_STRATEGY_PARALLEL)
    return fail(err, MIXC_ERROR_ARGUMENT, "options.strategy = %d is not a strategy",
                (int)opt->strategy);
  if (opt->chunk_size < 0 || opt->chunk_size > MAX_DIM_SIZE)
    return fail(err, MIXC_ERROR_ARGUMENT, "options.chunk_size = %lld is out of range [0, %d]",
                ll(opt->chunk_size), MAX_DIM_SIZE);
  if (opt->vtile < 0 || opt->vtile > MAX_DIM_SIZE)
    return fail(err, MIXC_ERROR_ARGUMENT, "options.vtile = %lld is out of range [0, %d]",
                ll(opt->vtile), MAX_DIM_SIZE);
  if (opt->segments < 0 || opt->segments > 1024)
    return fail(err, MIXC_ERROR_ARGUMENT, "options.segments = %lld is out of range [0, 1024]",
                ll(opt->segments));
  mixc_kernel *k = calloc(1, sizeof *k);
  if (!k) return fail(err, MIXC_ERROR_OUT_OF_MEMORY, "out of memory creating the kernel");
  if (pthread_mutex_init(&k->mu, NULL)) {
    free(k);
    return fail(err, MIXC_ERROR_OUT_OF_MEMORY, "cannot create a mutex for the kernel");
  }
  pthread_mutex_lock(&mod->ctx->mu);
  mod->refs++;
  pthread_mutex_unlock(&mod->ctx->mu);
  k->mod = mod;
  k->rm = rm;
  k->mx = rm->mixer;
  k->device = opt->device;
  k->chunk_size = opt->chunk_size;
  k->vtile = opt->vtile;
  k->segments = opt->segments;
  static const Strategy strat[] = {STRAT_AUTO, STRAT_RECURRENT, STRAT_CHUNK, STRAT_PARALLEL};
  k->strategy = strat[opt->strategy];
  k->dims = calloc((size_t)k->mx->nsyms + 1, sizeof *k->dims);
  mixc_status st;
  if (!k->dims) {
    st = fail(err, MIXC_ERROR_OUT_OF_MEMORY, "out of memory creating the kernel");
    goto bad;
  }
  if ((st = kernel_dims(k, opt, err)) != MIXC_OK) goto bad;
  if (opt->device == MIXC_CUDA && (st = kernel_device(k, opt, err)) != MIXC_OK) goto bad;
  if ((st = check_ranks(k->mx, rm, err)) != MIXC_OK) goto bad;
  if ((st = trial_lowering(k, err)) != MIXC_OK) goto bad;
  if (build_base_key(k)) {
    st = fail(err, MIXC_ERROR_OUT_OF_MEMORY, "out of memory creating the kernel");
    goto bad;
  }
  *out = k;
  return ok(err);
bad:
  kernel_free(k);
  return st;
}

void mixc_kernel_destroy(mixc_kernel *k) { kernel_free(k); }

double mixc_kernel_compile_ms(const mixc_kernel *k, int *nvariants) {
  if (!k) {
    if (nvariants) *nvariants = 0;
    return 0;
  }
  mixc_kernel *mk = (mixc_kernel *)k; /* the mutex; nothing else changes */
  pthread_mutex_lock(&mk->mu);
  double ms = k->compile_ms;
  if (nvariants) *nvariants = k->nvariants;
  pthread_mutex_unlock(&mk->mu);
  return ms;
}

#ifdef MIXC_HAVE_CUDA
/* The kernel's variants as they are now (the list only grows; entries live as long as the
 * context): a malloc'd copy, or NULL with *n = -1 when out of memory. */
static Variant *variants_snapshot(mixc_kernel *k, int *n) {
  pthread_mutex_lock(&k->mu);
  *n = k->nvariants;
  Variant *v = malloc((size_t)(*n > 0 ? *n : 1) * sizeof *v);
  if (v && *n > 0) memcpy(v, k->variants, (size_t)*n * sizeof *v);
  pthread_mutex_unlock(&k->mu);
  if (!v) *n = -1;
  return v;
}
#endif

mixc_status mixc_kernel_wait_ready(mixc_kernel *k, mixc_error *err) {
  if (!k) return fail(err, MIXC_ERROR_ARGUMENT, "mixc_kernel_wait_ready: the kernel is NULL");
#ifdef MIXC_HAVE_CUDA
  if (k->device == MIXC_CUDA) {
    int n = 0;
    Variant *v = variants_snapshot(k, &n);
    if (!v) return fail(err, MIXC_ERROR_OUT_OF_MEMORY, "out of memory waiting for the kernel");
    mixc_status st = MIXC_OK;
    char msg[2048];
    /* waits outside the kernel's lock: calls go on (on the fast tier) meanwhile */
    for (int i = 0; i < n; i++) {
      mixc_status s = cuda_variant_wait(v[i].e, msg, sizeof msg);
      if (s != MIXC_OK && st == MIXC_OK)
        st = fail(err, s, "mixer '%s' on %s: %s", k->rm->name, mixc_cuda_device_name(k->cuda),
                  msg);
    }
    free(v);
    if (st != MIXC_OK) return st;
  }
#endif
  return ok(err);
}

double mixc_kernel_optimized_ms(const mixc_kernel *k, int *pending) {
  if (pending) *pending = 0;
  double ms = 0;
#ifdef MIXC_HAVE_CUDA
  if (k && k->device == MIXC_CUDA) {
    int n = 0, np = 0;
    Variant *v = variants_snapshot((mixc_kernel *)k, &n); /* the mutex; nothing else changes */
    for (int i = 0; i < n; i++) {
      double t = 0;
      int tier = cuda_variant_tier(v[i].e, &t);
      if (tier == CUDA_TIER_PENDING || tier == CUDA_TIER_FAILED) np++;
      if (v[i].built) ms += t;
    }
    free(v);
    if (pending) *pending = np;
  }
#else
  (void)k;
#endif
  return ms;
}

/* ---- one call: binding the tensors ---- */

typedef struct Call {
  const mixc_kernel *k;
  const Mixer *mx;
  int step;
  const mixc_tensor **t;           /* per symbol: input, given param, output */
  const mixc_tensor **sin;         /* per symbol: initial state */
  const mixc_tensor **sout;        /* per symbol: final state */
  const char *ref_role, *ref_name; /* where B, T, H were read */
  int grid;
  int64_t B, T, H, Y, X, N;
  /* cu_seqlens */
  const mixc_tensor *cu;
  KType cu_type;
  const void *cu_data; /* contiguous: the caller's, or cu_copy */
  void *cu_copy;
  int cuda;            /* MIXC_CUDA: data are device addresses */
  void *stream;        /* MIXC_CUDA: args.stream */
  size_t cu_bytes;     /* MIXC_CUDA: cu_copy (host) goes to the device before the launch */
} Call;

/* What a tensor of symbol s is expected to look like. */
typedef struct Layout {
  int rank;
  int64_t shape[LAYOUT_MAX];
  const char *name[LAYOUT_MAX];
  int nlead; /* leading positions that are B, T, H, Y, X or N (not dims) */
} Layout;

static void layout_of(const Call *c, int s, int state, Layout *L) {
  const Mixer *mx = c->mx;
  const Sym *y = &mx->syms[s];
  int r = 0;
  if (state) {
    L->name[r] = "N", L->shape[r++] = c->N;
    L->name[r] = "H", L->shape[r++] = c->H;
  } else if (y->kind == SYM_PARAM) {
    L->name[r] = "H", L->shape[r++] = c->H;
  } else {
    L->name[r] = "B", L->shape[r++] = c->B;
    if (c->grid) {
      L->name[r] = "Y", L->shape[r++] = c->Y;
      L->name[r] = "X", L->shape[r++] = c->X;
    } else {
      L->name[r] = "T", L->shape[r++] = c->T;
    }
    L->name[r] = "H", L->shape[r++] = c->H;
    if (y->kind == SYM_INPUT && y->per_direction) L->name[r] = "ndir", L->shape[r++] = ndir_of(mx);
  }
  L->nlead = r;
  for (int p = 0; p < y->rank && r < LAYOUT_MAX; p++) {
    L->name[r] = mx->syms[y->shape[p]].name;
    L->shape[r++] = c->k->dims[y->shape[p]];
  }
  L->rank = r;
}

static int dtype_valid(mixc_dtype d) { return d >= MIXC_F32 && d <= MIXC_I64; }

static const char *dtype_text(mixc_dtype d, char *buf, size_t n) {
  if (dtype_valid(d)) return mixc_dtype_name(d);
  snprintf(buf, n, "%d (not a dtype)", (int)d);
  return buf;
}

/* Everything about one tensor: dtype, rank, shape, strides, extent, data. */
static mixc_status check_tensor(const Call *c, mixc_error *err, const char *role, const char *name,
                                const mixc_tensor *t, int s, int state, int writes) {
  char b1[64];
  if (state) {
    if (t->dtype != MIXC_F32)
      return fail(err, MIXC_ERROR_ARGUMENT, "%s '%s': dtype %s: states are f32", role, name,
                  dtype_text(t->dtype, b1, sizeof b1));
  } else if (t->dtype != MIXC_F32 && t->dtype != MIXC_BF16 && t->dtype != MIXC_F16) {
    return fail(err, MIXC_ERROR_ARGUMENT,
                "%s '%s': dtype %s is not supported (expected f32, bf16 or f16)", role, name,
                dtype_text(t->dtype, b1, sizeof b1));
  }
  Layout L;
  layout_of(c, s, state, &L);
  /* the texts of the messages, made only for one (a call's checks stay cheap) */
  char names[256], want[256], got[256];
  if (t->ndim < 0 || t->ndim > MIXC_MAX_DIMS) {
    fmt_names(names, sizeof names, L.name, L.rank);
    return fail(err, MIXC_ERROR_ARGUMENT,
                "%s '%s': ndim = %d is out of range [0, %d]; expected %d: %s", role, name, t->ndim,
                MIXC_MAX_DIMS, L.rank, names);
  }
  if (t->ndim != L.rank) {
    fmt_names(names, sizeof names, L.name, L.rank);
    fmt_ints(got, sizeof got, t->shape, t->ndim);
    return fail(err, MIXC_ERROR_ARGUMENT, "%s '%s': shape %s has %d dims, expected %d: %s", role,
                name, got, t->ndim, L.rank, names);
  }
  for (int d = 0; d < t->ndim; d++)
    if (t->shape[d] < 0) {
      fmt_ints(got, sizeof got, t->shape, t->ndim);
      return fail(err, MIXC_ERROR_ARGUMENT, "%s '%s': shape %s: extent %lld over %s is negative",
                  role, name, got, ll(t->shape[d]), L.name[d]);
    }
  for (int d = 0; d < t->ndim; d++) {
    if (t->shape[d] == L.shape[d]) continue;
    fmt_names(names, sizeof names, L.name, L.rank);
    fmt_ints(got, sizeof got, t->shape, t->ndim);
    fmt_ints(want, sizeof want, L.shape, L.rank);
    char why[160] = "";
    if (d < L.nlead) {
      if (state && d == 0)
        snprintf(why, sizeof why,
                 c->cu ? " (N: the number of sequences in cu_seqlens)"
                       : " (N = B, read off %s '%s')",
                 c->ref_role, c->ref_name);
      else if (c->ref_name && (c->ref_name != name || c->ref_role != role) &&
               strcmp(L.name[d], "ndir"))
        snprintf(why, sizeof why, " (%s read off %s '%s')", c->grid ? "B, Y, X, H" : "B, T, H",
                 c->ref_role, c->ref_name);
    } else {
      snprintf(why, sizeof why, " (the kernel's dims)");
    }
    return fail(err, MIXC_ERROR_ARGUMENT, "%s '%s': shape %s does not match %s = %s%s", role, name,
                got, names, want, why);
  }
  int64_t numel = 1;
  for (int d = 0; d < t->ndim; d++)
    if (t->shape[d] == 0) numel = 0;
  for (int d = 0; d < t->ndim; d++) {
    if (t->stride[d] < 0)
      return fail(err, MIXC_ERROR_ARGUMENT,
                  "%s '%s': stride[%d] = %lld over %s is negative (strides are in elements, >= 0)",
                  role, name, d, ll(t->stride[d]), L.name[d]);
    if (writes && numel > 0 && t->stride[d] == 0 && t->shape[d] > 1)
      return fail(err, MIXC_ERROR_ARGUMENT,
                  "%s '%s': stride[%d] = 0 over %s (extent %lld): a tensor that is written needs "
                  "its own memory for every element (zero strides only broadcast inputs)",
                  role, name, d, L.name[d], ll(t->shape[d]));
  }
  if (numel == 0) return MIXC_OK;
  /* The last element's byte offset must fit. */
  int64_t off = 0, lim = INT64_MAX / 8;
  for (int d = 0; d < t->ndim; d++) {
    int64_t e = t->shape[d] - 1;
    if (e > 0 && t->stride[d] > (lim - off) / e) {
      fmt_ints(got, sizeof got, t->shape, t->ndim);
      return fail(err, MIXC_ERROR_ARGUMENT,
                  "%s '%s': shape %s with these strides spans more than "
                  "the address space",
                  role, name, got);
    }
    off += e * t->stride[d];
  }
  if (!t->data) return fail(err, MIXC_ERROR_ARGUMENT, "%s '%s': data is NULL", role, name);
  size_t es = t->dtype == MIXC_F32 ? 4 : 2;
  if (c->cuda && (uintptr_t)t->data % es)
    return fail(err, MIXC_ERROR_ARGUMENT,
                "%s '%s': data = %p is not aligned to its element size (%zu bytes), which the "
                "GPU needs",
                role, name, t->data, es);
  return MIXC_OK;
}

static const char *kind_hint(SymKind k) {
  switch (k) {
  case SYM_INPUT:
  case SYM_PARAM: return "pass it in inputs";
  case SYM_OUTPUT: return "pass it in outputs";
  case SYM_STATE: return "pass it in initial_states or final_states";
  case SYM_DIM: return "dims are set when the kernel is created";
  case SYM_LET: return "lets are computed inside the mixer";
  }
  return "";
}

/* One list of named tensors: names known, of the right kind, given once. */
static mixc_status bind_list(Call *c, mixc_error *err, const mixc_named_tensor *list, int n,
                             const char *field, const char *role, const mixc_tensor **slot,
                             int want_state, int want_output) {
  const Mixer *mx = c->mx;
  const char *mname = c->k->rm->name;
  if (n < 0) return fail(err, MIXC_ERROR_ARGUMENT, "args.n%s = %d is negative", field, n);
  if (n > 0 && !list)
    return fail(err, MIXC_ERROR_ARGUMENT, "args.%s is NULL but args.n%s = %d", field, field, n);
  char avail[512];
  for (int i = 0; i < n; i++) {
    const char *name = list[i].name;
    if (!name) return fail(err, MIXC_ERROR_ARGUMENT, "%s[%d]: the name is NULL", field, i);
    int s = mixer_find(mx, name);
    SymKind k = s >= 0 ? mx->syms[s].kind : SYM_LET;
    int okind = want_state    ? k == SYM_STATE
                : want_output ? k == SYM_OUTPUT
                              : k == SYM_INPUT || k == SYM_PARAM;
    if (s < 0) {
      if (want_state) {
        sym_list(avail, sizeof avail, mx, SYM_STATE);
        return fail(err, MIXC_ERROR_ARGUMENT,
                    "%s '%s': mixer '%s' has no state of that name (states: %s)", role, name, mname,
                    avail);
      }
      if (want_output) {
        sym_list(avail, sizeof avail, mx, SYM_OUTPUT);
        return fail(err, MIXC_ERROR_ARGUMENT,
                    "%s '%s': mixer '%s' has no output of that name (outputs: %s)", role, name,
                    mname, avail);
      }
      char params[256];
      sym_list(avail, sizeof avail, mx, SYM_INPUT);
      sym_list(params, sizeof params, mx, SYM_PARAM);
      return fail(err, MIXC_ERROR_ARGUMENT,
                  "%s '%s': mixer '%s' has no input or param of that name (inputs: %s; params: %s)",
                  role, name, mname, avail, params);
    }
    if (!okind)
      return fail(err, MIXC_ERROR_ARGUMENT, "%s '%s': '%s' is %s %s of mixer '%s'; %s", role, name,
                  name, (k == SYM_INPUT || k == SYM_OUTPUT) ? "an" : "a", sym_kind_name(k), mname,
                  kind_hint(k));
    if (slot[s])
      return fail(err, MIXC_ERROR_ARGUMENT, "%s '%s' is given twice in args.%s", role, name, field);
    slot[s] = &list[i].tensor;
  }
  return MIXC_OK;
}

static mixc_status check_offsets(const Call *c, mixc_error *err, const void *data, int64_t stride,
                                 size_t es, int64_t n1);
static mixc_status bind_cu_device(Call *c, mixc_error *err, size_t es);

/* cu_seqlens: type, shape, B = 1, offsets in order and ending at T; a contiguous copy when
 * strided. */
static mixc_status bind_cu(Call *c, mixc_error *err) {
  const mixc_tensor *t = c->cu;
  char b1[64], got[256];
  if (c->grid)
    return fail(err, MIXC_ERROR_ARGUMENT,
                "cu_seqlens: mixer '%s' runs over a grid and takes no cu_seqlens", c->k->rm->name);
  if (t->dtype != MIXC_I32 && t->dtype != MIXC_I64)
    return fail(err, MIXC_ERROR_ARGUMENT, "cu_seqlens: dtype %s, expected i32 or i64",
                dtype_text(t->dtype, b1, sizeof b1));
  if (t->ndim != 1) {
    if (t->ndim >= 0 && t->ndim <= MIXC_MAX_DIMS)
      fmt_ints(got, sizeof got, t->shape, t->ndim);
    else
      snprintf(got, sizeof got, "(ndim = %d)", t->ndim);
    return fail(err, MIXC_ERROR_ARGUMENT, "cu_seqlens: shape %s has %d dims, expected 1: [N + 1]",
                got, t->ndim);
  }
  int64_t n1 = t->shape[0];
  if (n1 < 2)
    return fail(err, MIXC_ERROR_ARGUMENT,
                "cu_seqlens: shape [%lld]: needs N + 1 >= 2 offsets (N sequences)", ll(n1));
  if (t->stride[0] < 0)
    return fail(err, MIXC_ERROR_ARGUMENT, "cu_seqlens: stride[0] = %lld is negative",
                ll(t->stride[0]));
  if (n1 - 1 > 0 && t->stride[0] > INT64_MAX / 8 / (n1 - 1))
    return fail(err, MIXC_ERROR_ARGUMENT,
                "cu_seqlens: shape [%lld] with stride %lld spans more "
                "than the address space",
                ll(n1), ll(t->stride[0]));
  if (!t->data) return fail(err, MIXC_ERROR_ARGUMENT, "cu_seqlens: data is NULL");
  if (c->B != 1)
    return fail(err, MIXC_ERROR_ARGUMENT,
                "cu_seqlens needs B = 1 (the sequences are packed along T), but B = %lld (read off "
                "%s '%s')",
                ll(c->B), c->ref_role, c->ref_name);
  int i64 = t->dtype == MIXC_I64;
  size_t es = i64 ? 8 : 4;
  c->N = n1 - 1;
  c->cu_type = i64 ? KT_I64 : KT_I32;
  if (c->cuda) return bind_cu_device(c, err, es);
  mixc_status st = check_offsets(c, err, t->data, t->stride[0], es, n1);
  if (st != MIXC_OK) return st;
  if (t->stride[0] == 1 || n1 == 1) {
    c->cu_data = t->data;
    return MIXC_OK;
  }
  c->cu_copy = malloc((size_t)n1 * es);
  if (!c->cu_copy) return fail(err, MIXC_ERROR_OUT_OF_MEMORY, "out of memory copying cu_seqlens");
  const char *base = t->data;
  for (int64_t i = 0; i < n1; i++)
    memcpy((char *)c->cu_copy + (size_t)i * es, base + (size_t)(i * t->stride[0]) * es, es);
  c->cu_data = c->cu_copy;
  return MIXC_OK;
}

/* The offsets of cu_seqlens (host memory): first 0, non-decreasing, last T. */
static mixc_status check_offsets(const Call *c, mixc_error *err, const void *data, int64_t stride,
                                 size_t es, int64_t n1) {
  int i64 = es == 8;
  const char *base = data;
  int64_t prev = 0;
  for (int64_t i = 0; i < n1; i++) {
    const char *p = base + (size_t)(i * stride) * es;
    int64_t v;
    if (i64) {
      memcpy(&v, p, 8);
    } else {
      int32_t w;
      memcpy(&w, p, 4);
      v = w;
    }
    if (i == 0 && v != 0)
      return fail(err, MIXC_ERROR_ARGUMENT, "cu_seqlens[0] = %lld: the first offset must be 0",
                  ll(v));
    if (i > 0 && v < prev)
      return fail(err, MIXC_ERROR_ARGUMENT,
                  "cu_seqlens[%lld] = %lld < cu_seqlens[%lld] = %lld: offsets must not decrease",
                  ll(i), ll(v), ll(i - 1), ll(prev));
    if (i == n1 - 1 && v != c->T)
      return fail(err, MIXC_ERROR_ARGUMENT,
                  "cu_seqlens[%lld] = %lld: the last offset must equal T = %lld (read off %s '%s')",
                  ll(i), ll(v), ll(c->T), c->ref_role, c->ref_name);
    prev = v;
  }
  return MIXC_OK;
}

/* MIXC_CUDA: a contiguous cu_seqlens is used in place and, unless the kernel checks it,
 * trusted (N is its extent). A checked or strided one is read to the host (waiting for the
 * stream), checked as on the CPU, and a strided one goes back contiguous before the launch. */
static mixc_status bind_cu_device(Call *c, mixc_error *err, size_t es) {
  const mixc_tensor *t = c->cu;
  int64_t n1 = t->shape[0];
  int contiguous = t->stride[0] == 1 || n1 == 1;
  if ((uintptr_t)t->data % es)
    return fail(err, MIXC_ERROR_ARGUMENT,
                "cu_seqlens: data = %p is not aligned to its element size (%zu bytes)", t->data,
                es);
  if (contiguous && !c->k->check_cu) {
    c->cu_data = t->data;
    return MIXC_OK;
  }
#ifdef MIXC_HAVE_CUDA
  if ((uint64_t)n1 > SIZE_MAX / es || !(c->cu_copy = malloc((size_t)n1 * es)))
    return fail(err, MIXC_ERROR_OUT_OF_MEMORY, "out of memory copying cu_seqlens");
  char msg[1024];
  mixc_status st =
      cuda_read_offsets(c->k->cuda, c->stream, t->data, t->stride[0], es, n1, c->cu_copy, msg,
                        sizeof msg);
  if (st != MIXC_OK) return fail(err, st, "cu_seqlens: reading it from the device: %s", msg);
  if ((st = check_offsets(c, err, c->cu_copy, 1, es, n1)) != MIXC_OK) return st;
  if (contiguous) {
    c->cu_data = t->data;
  } else {
    c->cu_data = NULL; /* the launch points it at the workspace's copy */
    c->cu_bytes = (size_t)n1 * es;
  }
  return MIXC_OK;
#else
  return fail(err, MIXC_ERROR_UNSUPPORTED, "this build has no CUDA backend");
#endif
}

static void call_free(Call *c) {
  free(c->t);
  free(c->sin);
  free(c->sout);
  free(c->cu_copy);
}

/* Read B, T, H (grid: B, Y, X, H) off the reference tensor, after its rank is checked. */
static mixc_status read_sizes(Call *c, mixc_error *err, const mixc_tensor *t, int s,
                              const char *role, const char *name) {
  Layout L;
  c->B = c->T = c->H = c->Y = c->X = c->N = 0;
  layout_of(c, s, 0, &L);
  char names[256], got[256], b1[64];
  if (t->dtype != MIXC_F32 && t->dtype != MIXC_BF16 && t->dtype != MIXC_F16)
    return fail(err, MIXC_ERROR_ARGUMENT,
                "%s '%s': dtype %s is not supported (expected f32, bf16 or f16)", role, name,
                dtype_text(t->dtype, b1, sizeof b1));
  if (t->ndim < 0 || t->ndim > MIXC_MAX_DIMS || t->ndim != L.rank)
    fmt_names(names, sizeof names, L.name, L.rank); /* only for the messages below */
  if (t->ndim < 0 || t->ndim > MIXC_MAX_DIMS)
    return fail(err, MIXC_ERROR_ARGUMENT,
                "%s '%s': ndim = %d is out of range [0, %d]; expected %d: %s", role, name, t->ndim,
                MIXC_MAX_DIMS, L.rank, names);
  if (t->ndim != L.rank) {
    fmt_ints(got, sizeof got, t->shape, t->ndim);
    return fail(err, MIXC_ERROR_ARGUMENT, "%s '%s': shape %s has %d dims, expected %d: %s", role,
                name, got, t->ndim, L.rank, names);
  }
  c->B = t->shape[0];
  if (c->grid) {
    c->Y = t->shape[1];
    c->X = t->shape[2];
    c->H = t->shape[3];
    if (c->X > 0 && c->Y > INT64_MAX / c->X)
      return fail(err, MIXC_ERROR_ARGUMENT, "%s '%s': Y * X overflows", role, name);
    c->T = c->Y >= 0 && c->X >= 0 ? c->Y * c->X : 0; /* negative extents are reported later */
  } else {
    c->T = t->shape[1];
    c->H = t->shape[2];
  }
  c->N = c->B;
  c->ref_role = role;
  c->ref_name = name;
  return MIXC_OK;
}

/* Every check of a call, before anything is compiled or run. */
static mixc_status bind_call(Call *c, const mixc_kernel *k, const mixc_args *a,
                             const mixc_named_tensor *states, int nstates, int step,
                             mixc_error *err) {
  memset(c, 0, sizeof *c);
  c->k = k;
  c->step = step;
  c->mx = k->mx;
  c->grid = k->mx->ngrid > 0;
  c->cuda = k->device == MIXC_CUDA;
  c->stream = a->stream;
  const Mixer *mx = c->mx;
  const char *mname = k->rm->name;
  size_t ns = (size_t)mx->nsyms + 1;
  c->t = calloc(ns, sizeof *c->t);
  c->sin = calloc(ns, sizeof *c->sin);
  c->sout = calloc(ns, sizeof *c->sout);
  if (!c->t || !c->sin || !c->sout) return fail(err, MIXC_ERROR_OUT_OF_MEMORY, "out of memory");
  mixc_status st;
  if ((st = bind_list(c, err, a->inputs, a->ninputs, "inputs", "input", c->t, 0, 0))) return st;
  if ((st = bind_list(c, err, a->outputs, a->noutputs, "outputs", "output", c->t, 0, 1))) return st;
  if (c->step) {
    if (a->ninitial || a->nfinal)
      return fail(err, MIXC_ERROR_ARGUMENT,
                  "mixc_step: args.initial_states and args.final_states must be empty; the "
                  "states go in `states` (read, then overwritten)");
    if ((st = bind_list(c, err, states, nstates, "states", "state", c->sin, 1, 0))) return st;
    for (int s = 0; s < mx->nsyms; s++) c->sout[s] = c->sin[s];
  } else {
    if ((st = bind_list(c, err, a->initial_states, a->ninitial, "initial_states", "initial state",
                        c->sin, 1, 0)))
      return st;
    if ((st = bind_list(c, err, a->final_states, a->nfinal, "final_states", "final state", c->sout,
                        1, 0)))
      return st;
  }
  /* Everything required is there. */
  for (int s = 0; s < mx->nsyms; s++) {
    const Sym *y = &mx->syms[s];
    if (y->kind == SYM_INPUT && !c->t[s])
      return fail(err, MIXC_ERROR_ARGUMENT, "input '%s' is missing: mixer '%s' reads it", y->name,
                  mname);
    if (y->kind == SYM_PARAM && !c->t[s] && !y->init)
      return fail(err, MIXC_ERROR_ARGUMENT, "param '%s' is missing (it has no default)", y->name);
    if (y->kind == SYM_OUTPUT && !c->t[s])
      return fail(err, MIXC_ERROR_ARGUMENT, "output '%s' is missing: every output must be given",
                  y->name);
    if (y->kind == SYM_STATE && c->step && !c->sin[s])
      return fail(err, MIXC_ERROR_ARGUMENT,
                  "state '%s' is missing: mixc_step reads and writes every state", y->name);
    if (y->kind == SYM_STATE && c->grid && (c->sin[s] || c->sout[s]))
      return fail(err, MIXC_ERROR_ARGUMENT,
                  "%s '%s': mixer '%s' runs over a grid and takes no states (every scan starts "
                  "from zeros)",
                  c->sin[s] ? (c->step ? "state" : "initial state") : "final state", y->name,
                  mname);
  }
  /* B, T, H from the first input given (else the first output). */
  const mixc_named_tensor *ref = NULL;
  const char *ref_role = "input";
  for (int i = 0; i < a->ninputs && !ref; i++)
    if (mx->syms[mixer_find(mx, a->inputs[i].name)].kind == SYM_INPUT) ref = &a->inputs[i];
  if (!ref && a->noutputs > 0) {
    ref = &a->outputs[0];
    ref_role = "output";
  }
  if (!ref)
    return fail(err, MIXC_ERROR_ARGUMENT, "mixer '%s' has no inputs or outputs to read B, T, H off",
                mname);
  if ((st = read_sizes(c, err, &ref->tensor, mixer_find(mx, ref->name), ref_role, ref->name)))
    return st;
  if (a->cu_seqlens) {
    c->cu = a->cu_seqlens;
    if ((st = bind_cu(c, err))) return st;
  }
  /* Every tensor, in argument order. */
  for (int i = 0; i < a->ninputs; i++) {
    int s = mixer_find(mx, a->inputs[i].name);
    const char *role = mx->syms[s].kind == SYM_PARAM ? "param" : "input";
    if ((st = check_tensor(c, err, role, a->inputs[i].name, &a->inputs[i].tensor, s, 0, 0)))
      return st;
  }
  for (int i = 0; i < a->noutputs; i++)
    if ((st = check_tensor(c, err, "output", a->outputs[i].name, &a->outputs[i].tensor,
                           mixer_find(mx, a->outputs[i].name), 0, 1)))
      return st;
  if (c->step) {
    for (int i = 0; i < nstates; i++)
      if ((st = check_tensor(c, err, "state", states[i].name, &states[i].tensor,
                             mixer_find(mx, states[i].name), 1, 1)))
        return st;
  } else {
    for (int i = 0; i < a->ninitial; i++)
      if ((st = check_tensor(c, err, "initial state", a->initial_states[i].name,
                             &a->initial_states[i].tensor,
                             mixer_find(mx, a->initial_states[i].name), 1, 0)))
        return st;
    for (int i = 0; i < a->nfinal; i++)
      if ((st = check_tensor(c, err, "final state", a->final_states[i].name,
                             &a->final_states[i].tensor, mixer_find(mx, a->final_states[i].name), 1,
                             1)))
        return st;
  }
  if (c->H > 0 && c->N > INT64_MAX / c->H)
    return fail(err, MIXC_ERROR_ARGUMENT, "%lld x %lld work items overflow", ll(c->N), ll(c->H));
  return MIXC_OK;
}

/* ---- variants ---- */

static KType ktype_of(mixc_dtype d) {
  return d == MIXC_BF16 ? KT_BF16 : d == MIXC_F16 ? KT_F16 : KT_F32;
}

typedef struct Spec {
  KType *dtype;
  unsigned char *present, *want;
  int64_t target; /* work items the device runs at once (KernelSpec.target_items) */
  int64_t bh;     /* the split's hint: the call's sequences x heads, bucketed (split_hint) */
  int64_t tokens; /* KernelSpec.tokens_hint: LOWER_SHORT_TOKENS(_CPU) for a call of short sequences
                     (tokens_hint), else 0 */
  char *suffix; /* the variant's part of the key */
  size_t len;
} Spec;

static void spec_free(Spec *sp) {
  free(sp->dtype);
  free(sp->present);
  free(sp->want);
  free(sp->suffix);
}

/* The (sequence, head) count a variant's value split is chosen for (KernelSpec.bh): the
 * call's N * H, rounded up to a power of two, and `target` from there on (where the split is
 * no longer wanted). So a kernel called with very different batch sizes gets a variant split
 * for each kind of size (at most log2(target) + 1 of them), and never one chosen for another
 * kind (a variant split for B * H = 8 runs B * H = 128 with 16x the blocks it should). */
static int64_t split_hint(int64_t bh, int64_t target) {
  if (target <= 1 || bh >= target) return target > 1 ? target : 1;
  int64_t p = 1;
  while (p < bh) p *= 2;
  return p < target ? p : target;
}

/* The tokens hint of a call (KernelSpec.tokens_hint) for a kernel of the auto strategy: its
 * tokens per sequence (T; with cu_seqlens the total over the sequences, rounded up; a decode
 * step's T, usually 1), bucketed to two kinds of call, short (LOWER_SHORT_TOKENS on a GPU,
 * LOWER_SHORT_TOKENS_CPU on the CPU: the recurrent kernel) and long (0: the chunk kernels), so
 * a kernel used for both has at most two variants of it. The parallel strategy: the one
 * chunk's length, the longest a sequence of the call can be (T; with cu_seqlens the total)
 * rounded up to a power of two from 16 to LOWER_PARALLEL_TOKENS (lower_parallel_tokens), so
 * at most 5 variants; with options.chunk_size, that (one variant). 0 for the other fixed
 * strategies and grids (no effect). */
static int64_t tokens_hint(const Call *c) {
  if (c->k->strategy == STRAT_PARALLEL && !c->grid) {
    KernelSpec ks;
    memset(&ks, 0, sizeof ks);
    ks.chunk = c->k->chunk_size;
    ks.tokens_hint = c->T > 0 ? c->T : 1;
    return lower_parallel_tokens(&ks);
  }
  if (c->k->strategy != STRAT_AUTO || c->grid) return 0;
  int64_t per = c->T, lim = c->cuda ? LOWER_SHORT_TOKENS : LOWER_SHORT_TOKENS_CPU;
  if (c->cu) per = c->N > 0 ? (c->T + c->N - 1) / c->N : 0;
  return per <= lim ? lim : 0;
}

/* The spec arrays and the key suffix: one character per symbol (dtype of a tensor, '-'
 * for a defaulted param, '0'..'3' for a state: bit 0 initial given, bit 1 final wanted),
 * then varlen and the cu_seqlens type, then the split hint and the tokens hint. */
static int build_spec(const Call *c, int64_t target, Spec *sp) {
  const Mixer *mx = c->mx;
  size_t ns = (size_t)mx->nsyms + 1;
  memset(sp, 0, sizeof *sp);
  sp->dtype = calloc(ns, sizeof *sp->dtype);
  sp->present = calloc(ns, 1);
  sp->want = calloc(ns, 1);
  sp->suffix = malloc(ns + 48);
  if (!sp->dtype || !sp->present || !sp->want || !sp->suffix) return 1;
  size_t n = 0;
  for (int s = 0; s < mx->nsyms; s++) {
    const Sym *y = &mx->syms[s];
    char ch = '.';
    sp->dtype[s] = KT_F32;
    if (c->t[s]) {
      sp->dtype[s] = ktype_of(c->t[s]->dtype);
      ch = c->t[s]->dtype == MIXC_BF16 ? 'b' : c->t[s]->dtype == MIXC_F16 ? 'h' : 'f';
      sp->present[s] = 1;
    } else if (y->kind == SYM_PARAM) {
      ch = '-';
    }
    if (y->kind == SYM_STATE) {
      sp->present[s] = c->sin[s] != NULL;
      sp->want[s] = c->sout[s] != NULL;
      ch = (char)('0' + sp->present[s] + 2 * sp->want[s]);
    }
    sp->suffix[n++] = ch;
  }
  sp->target = target;
  sp->bh = split_hint(c->N * c->H, target);
  sp->tokens = tokens_hint(c);
  n += (size_t)snprintf(sp->suffix + n, 48, " varlen %d %s bh %lld tok %lld", c->cu ? 1 : 0,
                        c->cu ? kir_type_name(c->cu_type) : "-", (long long)sp->bh,
                        (long long)sp->tokens);
  sp->len = n;
  return 0;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Find the variant in the kernel, else in the context's cache, else lower and compile it.
 * Called with k->mu held. */
static mixc_status get_variant(mixc_kernel *k, const Call *c, const Spec *sp,
                               const KCacheEntry **out, mixc_error *err) {
  for (int i = 0; i < k->nvariants; i++)
    if (k->variants[i].len == sp->len && !memcmp(k->variants[i].suffix, sp->suffix, sp->len)) {
      *out = k->variants[i].e;
      return MIXC_OK;
    }
  mixc_context *ctx = k->mod->ctx;
  size_t klen = k->base_len + sp->len;
  char *key = malloc(klen + 1);
  char *suffix = malloc(sp->len + 1);
  if (k->nvariants == k->capvariants) {
    int cap = k->capvariants ? 2 * k->capvariants : 4;
    Variant *v = realloc(k->variants, (size_t)cap * sizeof *v);
    if (v) {
      k->variants = v;
      k->capvariants = cap;
    }
  }
  if (!key || !suffix || k->nvariants == k->capvariants) {
    free(key);
    free(suffix);
    return fail(err, MIXC_ERROR_OUT_OF_MEMORY, "out of memory looking up a variant");
  }
  memcpy(key, k->base_key, k->base_len);
  memcpy(key + k->base_len, sp->suffix, sp->len);
  key[klen] = 0;
  memcpy(suffix, sp->suffix, sp->len);
  suffix[sp->len] = 0;
  const KCacheEntry *e = kcache_find(ctx->cache, key, klen);
  int built = 0;
  if (!e) {
    double t0 = now_ms();
    KCacheEntry *ne = kcache_entry_new(key, klen);
    if (!ne) {
      free(key);
      free(suffix);
      return fail(err, MIXC_ERROR_OUT_OF_MEMORY, "out of memory compiling a variant");
    }
    KernelSpec ks;
    memset(&ks, 0, sizeof ks);
    ks.rm = k->rm;
    ks.dims = k->dims;
    ks.dtype = sp->dtype;
    ks.present = sp->present;
    ks.want = sp->want;
    ks.varlen = c->cu != NULL;
    ks.cu_type = c->cu ? c->cu_type : KT_I32;
    ks.strategy = k->strategy;
    ks.chunk = k->chunk_size;
    ks.vtile = k->vtile;
    ks.segs = k->device == MIXC_CUDA ? k->segments : 0;
    ks.bh = sp->bh; /* the schedule's hint (the variant runs for any N, H) */
    ks.tokens_hint = sp->tokens; /* short calls: the recurrent kernel (the variant runs any T) */
    if (k->device == MIXC_CPU) {
      ks.target_items = ctx->threads; /* one item per thread */
      ks.cache_l1d_bytes = ctx->caches.l1d; /* the chunk's scratch budget: half the L2 */
      ks.cache_l2_bytes = ctx->caches.l2;
      ks.cache_l3_bytes = ctx->caches.l3;
    }
#ifdef MIXC_HAVE_CUDA
    if (k->device == MIXC_CUDA) {
      const MixcCudaInfo *gi = mixc_cuda_info(k->cuda);
      ks.target_items = cuda_target_items(k->cuda); /* 2 x SMs */
      ks.gpu = 1; /* the hand-structured CUDA forms where they apply */
      ks.gpu_arch = gi->arch;
      ks.gpu_smem_optin = gi->max_smem_per_block_optin;
    }
#endif
    char msg[1024];
    mixc_status st = MIXC_OK;
    if (lower_mixer(&ne->arena, &ks, &ne->plan, msg, sizeof msg)) {
      lower_status_name(msg, &st);
      st = fail(err, st, "mixer '%s': lowering a variant: %s", k->rm->name, msg);
    } else if (!ne->plan.mod || ne->plan.mod->nfuncs < 1 || ne->plan.nsyms != c->mx->nsyms) {
      st = fail(err, MIXC_ERROR_INTERNAL, "mixer '%s': the lowering returned an empty plan",
                k->rm->name);
    } else {
      KModule *m = ne->plan.mod;
      ne->nfns = m->nfuncs;
      ne->fns = arena_array(&ne->arena, (size_t)m->nfuncs, sizeof *ne->fns);
      for (int i = 0; i < m->nfuncs; i++)
        if (m->funcs[i]->scratch_floats > ne->scratch_floats)
          ne->scratch_floats = m->funcs[i]->scratch_floats;
      if (!ne->fns) st = fail(err, MIXC_ERROR_OUT_OF_MEMORY, "out of memory compiling a variant");
    }
#ifdef MIXC_HAVE_CUDA
    if (st == MIXC_OK && k->device == MIXC_CUDA) {
      double nvrtc_ms = 0;
      st = cuda_variant_build(k->cuda, ne, k->rm->name, &nvrtc_ms, msg, sizeof msg);
      if (st != MIXC_OK) st = fail(err, st, "mixer '%s': compiling a CUDA variant: %s", k->rm->name, msg);
    } else
#endif
#ifdef MIXC_HAVE_LLVM
    if (st == MIXC_OK) {
      pthread_mutex_lock(&ctx->mu);
      if (!ctx->jit && mixc_jit_create(&ctx->jit, msg, sizeof msg)) {
        ctx->jit = NULL;
        st = fail(err, MIXC_ERROR_INTERNAL, "creating the JIT: %s", msg);
      }
      MixcJit *jit = ctx->jit;
      pthread_mutex_unlock(&ctx->mu);
      double ms = 0;
      if (st == MIXC_OK && mixc_jit_compile(jit, ne->plan.mod, ne->fns, &ms, msg, sizeof msg)) {
        lower_status_name(msg, &st);
        if (st == MIXC_ERROR_UNSUPPORTED) st = MIXC_ERROR_INTERNAL;
        st = fail(err, st, "mixer '%s': compiling a variant: %s", k->rm->name, msg);
      }
    }
#else
    if (st == MIXC_OK)
      st = fail(err, MIXC_ERROR_UNSUPPORTED,
                "this build has no CPU backend (configured with -DMIXC_LLVM=OFF)");
#endif
    if (st != MIXC_OK) {
      kcache_entry_free(ne);
      free(key);
      free(suffix);
      return st;
    }
    double ms = now_ms() - t0;
    ne->compile_ms = ms;
    k->compile_ms += ms;
    e = kcache_insert(ctx->cache, ne);
    built = e == ne;
  }
  free(key);
  k->variants[k->nvariants].suffix = suffix;
  k->variants[k->nvariants].len = sp->len;
  k->variants[k->nvariants].e = e;
  k->variants[k->nvariants].built = built;
  k->nvariants++;
  *out = e;
  return MIXC_OK;
}

/* ---- running ---- */

typedef struct Job {
  KCacheFn fn;
  void *const *ptrs;
  const int64_t *ints;
  float *scratch;
  int64_t per; /* floats per thread */
} Job;

static void job_run(void *ctx, int thread, int64_t begin, int64_t end) {
  const Job *j = ctx;
  j->fn(j->ptrs, j->ints, begin, end, j->scratch ? j->scratch + (int64_t)thread * j->per : NULL);
}

/* Put a tensor's pointer and strides into the tables. */
static int put_tensor(void **ptrs, int64_t *ints, const KModule *m, int pslot, int sslot,
                      const mixc_tensor *t) {
  if (pslot < 0 || pslot >= m->nptrs || sslot < 0 || sslot + t->ndim > m->nints) return 1;
  ptrs[pslot] = t->data;
  for (int d = 0; d < t->ndim; d++) ints[sslot + d] = t->stride[d];
  return 0;
}

static int put_int(int64_t *ints, const KModule *m, int slot, int64_t v) {
  if (slot < 0) return 0;
  if (slot >= m->nints) return 1;
  ints[slot] = v;
  return 0;
}

/* Whether every state of the call comes in and goes out in one buffer, f32 and contiguous
 * (a decode step on its states): the kernel may then update them there (plan state_direct). */
static int states_direct(const Call *c) {
  const Mixer *mx = c->mx;
  for (int s = 0; s < mx->nsyms; s++) {
    if (mx->syms[s].kind != SYM_STATE) continue;
    const mixc_tensor *a = c->sin[s], *b = c->sout[s];
    if (!a || !b || a->data != b->data || a->dtype != MIXC_F32 || b->dtype != MIXC_F32 ||
        a->ndim != b->ndim)
      return 0;
    int64_t want = 1;
    for (int d = a->ndim - 1; d >= 0; d--) {
      if (a->shape[d] != b->shape[d] || (a->shape[d] > 1 && (a->stride[d] != want ||
                                                               b->stride[d] != want)))
        return 0;
      want *= a->shape[d];
    }
  }
  return 1;
}

/* The argument tables of a call from the variant's plan: a pointer and one stride per layout
 * dim for each tensor, the sizes, cu_seqlens. Shared by the CPU and the CUDA launches. */
static mixc_status fill_tables(const Call *c, const KCacheEntry *e, void **ptrs, int64_t *ints,
                               mixc_error *err) {
  const KernelPlan *pl = &e->plan;
  const KModule *m = pl->mod;
  const Mixer *mx = c->mx;
  int bad = 0;
  const char *what = "";
  for (int s = 0; s < mx->nsyms && !bad; s++) {
    what = mx->syms[s].name;
    if (c->t[s]) bad |= put_tensor(ptrs, ints, m, pl->ptr[s], pl->stride[s], c->t[s]);
    if (mx->syms[s].kind != SYM_STATE) continue;
    if (c->sin[s])
      bad |= put_tensor(ptrs, ints, m, pl->state_in[s], pl->state_in_stride[s], c->sin[s]);
    if (c->sout[s])
      bad |= put_tensor(ptrs, ints, m, pl->state_out[s], pl->state_out_stride[s], c->sout[s]);
  }
  if (!bad) {
    what = "sizes";
    bad |= put_int(ints, m, pl->size_B, c->B);
    bad |= put_int(ints, m, pl->size_T, c->T);
    bad |= put_int(ints, m, pl->size_H, c->H);
    bad |= put_int(ints, m, pl->size_N, c->N);
    bad |= put_int(ints, m, pl->size_Y, c->Y);
    bad |= put_int(ints, m, pl->size_X, c->X);
    if (pl->state_direct >= 0) bad |= put_int(ints, m, pl->state_direct, states_direct(c));
    if (c->cu) {
      what = "cu_seqlens";
      if (pl->cu_seqlens < 0 || pl->cu_seqlens >= m->nptrs)
        bad = 1;
      else
        ptrs[pl->cu_seqlens] = (void *)c->cu_data;
    }
  }
  if (bad)
    return fail(err, MIXC_ERROR_INTERNAL, "mixer '%s': the kernel plan has no valid slot for '%s'",
                c->k->rm->name, what);
  return MIXC_OK;
}

static mixc_status launch(mixc_context *ctx, const Call *c, const KCacheEntry *e, mixc_error *err) {
  const KModule *m = e->plan.mod;
  void **ptrs = calloc((size_t)m->nptrs + 1, sizeof *ptrs);
  int64_t *ints = calloc((size_t)m->nints + 1, sizeof *ints);
  float *scratch = NULL;
  mixc_status st = MIXC_OK;
  if (!ptrs || !ints) {
    st = fail(err, MIXC_ERROR_OUT_OF_MEMORY, "out of memory launching the kernel");
    goto done;
  }
  if ((st = fill_tables(c, e, ptrs, ints, err)) != MIXC_OK) goto done;
  int64_t items = plan_items(&e->plan, c->N, c->H); /* (sequence, head, value tile) */
  int nr = pool_ranges(ctx->pool, items);
  if (nr == 0) goto done;
  int64_t per = 0;
  if (e->scratch_floats > 0) {
    per = (e->scratch_floats + 15) / 16 * 16;
    if (per > (int64_t)(SIZE_MAX / 4 / (size_t)nr) || per > INT64_MAX / nr) {
      st = fail(err, MIXC_ERROR_OUT_OF_MEMORY, "scratch of %lld floats per thread is too large",
                ll(e->scratch_floats));
      goto done;
    }
    scratch = aligned_alloc(SCRATCH_ALIGN, (size_t)per * (size_t)nr * sizeof(float));
    if (!scratch) {
      st = fail(err, MIXC_ERROR_OUT_OF_MEMORY,
                "out of memory allocating %d x %lld floats of kernel scratch", nr, ll(per));
      goto done;
    }
  }
  for (int f = 0; f < e->nfns; f++) {
    Job j = {e->fns[f], ptrs, ints, scratch, per};
    pool_run(ctx->pool, items, job_run, &j);
  }
done:
  free(scratch);
  free(ptrs);
  free(ints);
  return st;
}

#ifdef MIXC_HAVE_CUDA
/* MIXC_CUDA: the tables as the kernels' argument struct (NP pointers, then NI int64_t, each
 * at least 1), then cuda_run: asynchronous on args.stream (cuda_exec.h). */
static mixc_status launch_cuda(mixc_kernel *k, const Call *c, const KCacheEntry *e,
                               mixc_error *err) {
  const KernelPlan *pl = &e->plan;
  const KModule *m = pl->mod;
  size_t np = m->nptrs > 0 ? (size_t)m->nptrs : 1, ni = m->nints > 0 ? (size_t)m->nints : 1;
  uint64_t *argbuf = calloc(np + ni, sizeof *argbuf);
  if (!argbuf) return fail(err, MIXC_ERROR_OUT_OF_MEMORY, "out of memory launching the kernel");
  mixc_status st = fill_tables(c, e, (void **)argbuf, (int64_t *)(argbuf + np), err);
  /* work items: (sequence, head) pairs, times the value tiles and segments of the plan */
  int64_t items = plan_items(pl, c->N, c->H);
  if (st == MIXC_OK && items <= 0 && c->N * c->H > 0)
    st = fail(err, MIXC_ERROR_ARGUMENT, "%lld x %lld x %lld work items overflow", ll(c->N * c->H),
              ll(pl->vtiles), ll(pl->segs));
  if (st == MIXC_OK) {
    char msg[1024];
    st = cuda_run(k->ws, e, argbuf, pl->cu_seqlens, c->cu_bytes ? c->cu_copy : NULL, c->cu_bytes,
                  items, c->stream, msg, sizeof msg);
    if (st != MIXC_OK) st = fail(err, st, "mixer '%s' on %s: %s", k->rm->name,
                                 mixc_cuda_device_name(k->cuda), msg);
  }
  free(argbuf);
  return st;
}
#endif

static mixc_status run_call(mixc_kernel *k, const mixc_args *args, const mixc_named_tensor *states,
                            int nstates, int step, mixc_error *err) {
  if (!k)
    return fail(err, MIXC_ERROR_ARGUMENT, "%s: the kernel is NULL",
                step ? "mixc_step" : "mixc_forward");
  if (!args)
    return fail(err, MIXC_ERROR_ARGUMENT, "%s: args is NULL", step ? "mixc_step" : "mixc_forward");
  Call c;
  mixc_status st;
  st = bind_call(&c, k, args, states, nstates, step, err);
  if (st == MIXC_OK) {
    Spec sp;
    int64_t target = k->mod->ctx->threads;
#ifdef MIXC_HAVE_CUDA
    if (k->device == MIXC_CUDA) target = cuda_target_items(k->cuda);
#endif
    if (build_spec(&c, target, &sp)) {
      st = fail(err, MIXC_ERROR_OUT_OF_MEMORY, "out of memory");
    } else {
      const KCacheEntry *e = NULL;
      pthread_mutex_lock(&k->mu);
      st = get_variant(k, &c, &sp, &e, err);
      pthread_mutex_unlock(&k->mu);
#ifdef MIXC_HAVE_CUDA
      if (st == MIXC_OK && k->device == MIXC_CUDA)
        st = launch_cuda(k, &c, e, err);
      else
#endif
      if (st == MIXC_OK) st = launch(k->mod->ctx, &c, e, err);
    }
    spec_free(&sp);
  }
  call_free(&c);
  return st == MIXC_OK ? ok(err) : st;
}

mixc_status mixc_forward(mixc_kernel *k, const mixc_args *args, mixc_error *err) {
  return run_call(k, args, NULL, 0, 0, err);
}

mixc_status mixc_step(mixc_kernel *k, const mixc_args *args, const mixc_named_tensor *states,
                      int nstates, mixc_error *err) {
  return run_call(k, args, states, nstates, 1, err);
}
