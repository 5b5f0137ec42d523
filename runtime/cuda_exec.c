/* The C API's CUDA path: devices, variants, workspaces, launches (cuda_exec.h). */
#define _POSIX_C_SOURCE 200809L
#include "cuda_exec.h"

#ifdef MIXC_HAVE_CUDA
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../backends/c/c_emit.h"

_Static_assert(sizeof(void *) == sizeof(uint64_t), "device pointers travel as 64-bit words");

static mixc_status failn(char *err, size_t n, mixc_status s, const char *msg) {
  if (n) snprintf(err, n, "%s", msg);
  return s;
}

/* The status of a loader message: out of memory, else a device failure. */
static mixc_status dev_status(const char *msg) {
  return strstr(msg, "out of GPU memory") || strstr(msg, "out of memory")
             ? MIXC_ERROR_OUT_OF_MEMORY
             : MIXC_ERROR_DEVICE;
}

/* ---- devices ---- */

struct CudaDevices {
  pthread_mutex_t mu;
  MixcCuda *dev[CUDA_MAX_DEVICES];
};

CudaDevices *cuda_devices_create(void) {
  CudaDevices *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  if (pthread_mutex_init(&d->mu, NULL)) {
    free(d);
    return NULL;
  }
  return d;
}

void cuda_devices_destroy(CudaDevices *d) {
  if (!d) return;
  for (int i = 0; i < CUDA_MAX_DEVICES; i++)
    if (d->dev[i]) mixc_cuda_close(d->dev[i]);
  pthread_mutex_destroy(&d->mu);
  free(d);
}

mixc_status cuda_device_get(CudaDevices *d, int ordinal, MixcCuda **out, char *err, size_t n) {
  *out = NULL;
  if (ordinal < 0 || ordinal >= CUDA_MAX_DEVICES) {
    if (n) snprintf(err, n, "device index %d is out of range [0, %d]", ordinal,
                    CUDA_MAX_DEVICES - 1);
    return MIXC_ERROR_ARGUMENT;
  }
  mixc_status st = MIXC_OK;
  pthread_mutex_lock(&d->mu);
  if (!d->dev[ordinal]) {
    MixcCuda *c = NULL;
    if (mixc_cuda_open(ordinal, &c, err, n)) {
      st = strstr(err, "out of memory") ? MIXC_ERROR_OUT_OF_MEMORY : MIXC_ERROR_DEVICE;
      c = NULL;
    }
    d->dev[ordinal] = c;
  }
  *out = d->dev[ordinal];
  pthread_mutex_unlock(&d->mu);
  return st;
}

void cuda_device_describe(MixcCuda *cu, char *buf, size_t n) {
  const MixcCudaInfo *in = mixc_cuda_info(cu);
  snprintf(buf, n, "cuda device %d (%s) %s arch %d smem-optin %d sms %d nvrtc %d.%d",
           in->ordinal, in->name, in->target, in->arch, in->max_smem_per_block_optin,
           in->sm_count, in->nvrtc_major, in->nvrtc_minor);
}

int64_t cuda_target_items(MixcCuda *cu) { return 2 * (int64_t)mixc_cuda_info(cu)->sm_count; }

/* ---- variants ---- */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

enum { TIER_NONE, TIER_PENDING, TIER_READY, TIER_FAILED };

typedef struct CudaVariant {
  MixcCudaModule *mod; /* the module built first: the optimised one, or the fast tier's */
  int nfns;
  MixcCudaFunc **fns;
  MixcCudaLaunch *launch;
  char **names; /* the kernels' symbols */
  /* Tiering (tiered: mu and cv exist): the optimised module, compiled by job while `mod`
   * (the fast tier) runs, and launched from the first call after it is in. Both modules stay
   * loaded until the variant is freed (with the context), so launches in flight on a stream
   * never lose their code. */
  MixcCuda *cu;
  int tiered;
  pthread_mutex_t mu; /* the fields below */
  pthread_cond_t cv;  /* state left TIER_PENDING */
  int state;
  int closing; /* being freed: the thread skips loading */
  MixcNvrtcJob *job;
  MixcCudaModule *opt_mod;
  MixcCudaFunc **opt_fns;
  mixc_status opt_status; /* TIER_FAILED: the error */
  int reported;           /* ... already returned by a call */
  double t_start, opt_ms; /* the optimised compile: start, and wall time to loaded */
  long delay_ms;          /* MIXC_CUDA_TIER_DELAY_MS: hold the switch back (tests) */
  char opt_err[2048];
} CudaVariant;

static void variant_free(void *p) {
  CudaVariant *v = p;
  if (!v) return;
  if (v->job) {
    pthread_mutex_lock(&v->mu);
    v->closing = 1;
    pthread_cond_broadcast(&v->cv); /* ends a MIXC_CUDA_TIER_DELAY_MS wait */
    pthread_mutex_unlock(&v->mu);
    mixc_nvrtc_job_join(v->job); /* the compile runs to its end (and into the cache) */
  }
  if (v->opt_mod) mixc_cuda_module_free(v->opt_mod);
  free(v->opt_fns);
  if (v->mod) mixc_cuda_module_free(v->mod);
  for (int i = 0; v->names && i < v->nfns; i++) free(v->names[i]);
  free(v->names);
  free(v->fns);
  free(v->launch);
  if (v->tiered) {
    pthread_cond_destroy(&v->cv);
    pthread_mutex_destroy(&v->mu);
  }
  free(v);
}

/* The status of a failed compile: NVRTC rejecting generated code is a mixc bug; the rest is
 * the device's or memory. */
static mixc_status compile_status(const char *msg) {
  return strstr(msg, "could not compile") ? MIXC_ERROR_INTERNAL : dev_status(msg);
}

/* Loads a cubin and looks up the variant's kernels in it (*fns: nfns handles, malloc'd);
 * a fast-tier cubin's kernels must also take a block of their launch's threads (else the
 * optimised compile is waited for; an optimised kernel that cannot says so at its launch). */
static mixc_status load_kernels(CudaVariant *v, MixcCuda *cu, const MixcCubin *b,
                                MixcCudaModule **mod, MixcCudaFunc ***fns, char *err, size_t n) {
  *mod = NULL;
  *fns = calloc((size_t)v->nfns + 1, sizeof **fns);
  if (!*fns) return failn(err, n, MIXC_ERROR_OUT_OF_MEMORY, "out of memory loading a CUDA variant");
  mixc_status st = MIXC_OK;
  if (mixc_cuda_module_load(cu, b->data, b->size, mod, err, n)) {
    *mod = NULL;
    st = dev_status(err);
  }
  for (int i = 0; st == MIXC_OK && i < v->nfns; i++) {
    if (mixc_cuda_function(*mod, v->names[i], &(*fns)[i], err, n)) {
      st = MIXC_ERROR_INTERNAL;
    } else if (b->fast &&
               (unsigned)mixc_cuda_func_max_threads((*fns)[i]) < v->launch[i].threads) {
      snprintf(err, n,
               "kernel %s: a block of %u threads is more than the %d it can have (%d registers "
               "a thread)%s",
               v->names[i], v->launch[i].threads, mixc_cuda_func_max_threads((*fns)[i]),
               mixc_cuda_func_num_regs((*fns)[i]), " in the fast tier");
      st = MIXC_ERROR_INTERNAL;
    }
  }
  if (st != MIXC_OK) {
    if (*mod) mixc_cuda_module_free(*mod);
    *mod = NULL;
    free(*fns);
    *fns = NULL;
  }
  return st;
}

/* The optimised compile's end, on its thread: load it and publish it (or the error). */
static void opt_done(void *arg, MixcCubin *b, const char *msg) {
  CudaVariant *v = arg;
  pthread_mutex_lock(&v->mu);
  int closing = v->closing;
  pthread_mutex_unlock(&v->mu);
  MixcCudaModule *mod = NULL;
  MixcCudaFunc **fns = NULL;
  char err[sizeof v->opt_err] = "";
  mixc_status st = MIXC_OK;
  if (!b) {
    snprintf(err, sizeof err, "%s", msg ? msg : "the compile failed");
    st = compile_status(err);
  } else if (closing) {
    st = MIXC_ERROR_DEVICE;
    snprintf(err, sizeof err, "the variant was freed before its optimised module was loaded");
  } else {
    st = load_kernels(v, v->cu, b, &mod, &fns, err, sizeof err);
  }
  pthread_mutex_lock(&v->mu);
  v->opt_ms = now_ms() - v->t_start;
  if (v->delay_ms > 0) { /* a test's hold: until t_start + delay, or the variant's end */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    double left = v->t_start + (double)v->delay_ms - now_ms();
    if (left > 0) {
      long long ns = (long long)until.tv_nsec + (long long)(left * 1e6);
      until.tv_sec += (time_t)(ns / 1000000000LL);
      until.tv_nsec = (long)(ns % 1000000000LL);
      while (!v->closing && pthread_cond_timedwait(&v->cv, &v->mu, &until) == 0) {
      }
    }
  }
  if (st == MIXC_OK) {
    v->opt_mod = mod;
    v->opt_fns = fns;
    v->state = TIER_READY;
  } else {
    v->opt_status = st;
    memcpy(v->opt_err, err, sizeof err);
    v->state = TIER_FAILED;
  }
  pthread_cond_broadcast(&v->cv);
  pthread_mutex_unlock(&v->mu);
}

/* MIXC_CUDA_TIERED: "0" turns tiering off; anything else (or unset) leaves it on. */
static int tiering_wanted(void) {
  const char *t = getenv("MIXC_CUDA_TIERED");
  return !(t && !strcmp(t, "0"));
}

/* MIXC_CUDA_TIER_DELAY_MS: the optimised module is switched in no sooner than this many ms
 * after its compile started (at most 60 s), so that a test sees the fast tier for certain
 * even where NVRTC's own cache (CUDA_CACHE_PATH) makes the optimised compile quick. */
static long tier_delay_ms(void) {
  const char *t = getenv("MIXC_CUDA_TIER_DELAY_MS");
  long v = t ? strtol(t, NULL, 10) : 0;
  return v < 0 ? 0 : v > 60000 ? 60000 : v;
}

/* Compiles src into v: the optimised cubin from the disk cache, or (tiering) the fast tier
 * now and the optimised one on a thread, or (no tiering) the optimised one now. */
static mixc_status variant_compile(MixcCuda *cu, CudaVariant *v, const char *src,
                                   const char *prog, double *ms, char *err, size_t n) {
  MixcNvrtc *r = mixc_cuda_nvrtc(cu);
  int arch = mixc_cuda_info(cu)->arch;
  MixcCubin b;
  memset(&b, 0, sizeof b);
  mixc_status st = MIXC_OK;
  int tier = tiering_wanted() && mixc_nvrtc_fast_option(r) != NULL;
  if (tier) {
    if (mixc_nvrtc_lookup(r, src, prog, arch, &b, err, n)) return dev_status(err);
    if (b.data) tier = 0; /* a hit: the optimised cubin, at once */
  }
  if (tier) {
    if (pthread_mutex_init(&v->mu, NULL)) {
      tier = 0;
    } else if (pthread_cond_init(&v->cv, NULL)) {
      pthread_mutex_destroy(&v->mu);
      tier = 0;
    } else {
      v->tiered = 1;
      v->cu = cu;
      v->state = TIER_PENDING;
      v->delay_ms = tier_delay_ms();
      v->t_start = now_ms();
      /* no thread (or no memory for one): the optimised compile here instead */
      if (mixc_nvrtc_compile_async(r, src, prog, arch, opt_done, v, &v->job, err, n)) {
        v->job = NULL;
        v->state = TIER_NONE;
        tier = 0;
      }
    }
  }
  if (tier) {
    if (mixc_nvrtc_compile_fast(r, src, prog, arch, &b, err, n))
      st = compile_status(err);
    else
      st = load_kernels(v, cu, &b, &v->mod, &v->fns, err, n);
    if (ms) *ms = b.ms;
    mixc_cubin_release(&b);
    if (st != MIXC_OK) {
      /* the fast tier failed: the optimised compile decides, as without tiering */
      mixc_nvrtc_job_join(v->job);
      v->job = NULL;
      pthread_mutex_lock(&v->mu);
      if (v->state == TIER_READY) {
        v->mod = v->opt_mod;
        v->fns = v->opt_fns;
        v->opt_mod = NULL;
        v->opt_fns = NULL;
        v->state = TIER_NONE;
        st = MIXC_OK;
      } else if (v->state == TIER_FAILED) {
        st = v->opt_status;
        if (n) snprintf(err, n, "%s", v->opt_err);
      }
      pthread_mutex_unlock(&v->mu);
      if (ms) *ms = v->opt_ms;
    }
    return st;
  }
  if (!b.data && mixc_nvrtc_compile(r, src, prog, arch, &b, err, n)) return compile_status(err);
  if (ms) *ms = b.ms;
  st = load_kernels(v, cu, &b, &v->mod, &v->fns, err, n);
  mixc_cubin_release(&b);
  return st;
}

mixc_status cuda_variant_build(MixcCuda *cu, KCacheEntry *e, const char *mixer, double *ms,
                               char *err, size_t n) {
  const KModule *m = e->plan.mod;
  const MixcCudaInfo *in = mixc_cuda_info(cu);
  CudaVariant *v = calloc(1, sizeof *v);
  if (v) {
    v->nfns = m->nfuncs;
    v->names = calloc((size_t)m->nfuncs + 1, sizeof *v->names);
    v->launch = calloc((size_t)m->nfuncs + 1, sizeof *v->launch);
  }
  int names_ok = v && v->names;
  for (int i = 0; names_ok && i < m->nfuncs; i++) {
    char name[256];
    mixc_emit_c_func_name(m->funcs[i], name, sizeof name);
    names_ok = (v->names[i] = strdup(name)) != NULL;
  }
  if (!v || !names_ok || !v->launch) {
    variant_free(v);
    return failn(err, n, MIXC_ERROR_OUT_OF_MEMORY, "out of memory compiling a CUDA variant");
  }
  MixcCudaTarget t = {in->arch, in->max_smem_per_block_optin};
  char *src = NULL;
  size_t len = 0;
  mixc_status st = MIXC_OK;
  FILE *f = open_memstream(&src, &len);
  if (!f) {
    st = failn(err, n, MIXC_ERROR_OUT_OF_MEMORY, "out of memory printing a CUDA variant");
  } else {
    int rc = mixc_emit_cuda_module(f, m, &t, 0, v->launch, err, n);
    if (fclose(f) && !rc) rc = 1, snprintf(err, n, "writing the CUDA source failed");
    if (rc) st = MIXC_ERROR_INTERNAL;
  }
  for (int i = 0; st == MIXC_OK && i < m->nfuncs; i++)
    if (v->launch[i].threads < 1 || v->launch[i].global_scratch_floats < 0) {
      snprintf(err, n, "kernel %s: the CUDA printer gave no valid launch (threads %u)",
               v->names[i], v->launch[i].threads);
      st = MIXC_ERROR_INTERNAL;
    }
  char prog[160];
  snprintf(prog, sizeof prog, "mixc_%.100s.cu", mixer);
  if (st == MIXC_OK) st = variant_compile(cu, v, src, prog, ms, err, n);
  free(src);
  if (st != MIXC_OK) {
    variant_free(v);
    return st;
  }
  e->gpu = v;
  e->gpu_free = variant_free;
  return MIXC_OK;
}

int cuda_variant_tier(const KCacheEntry *e, double *opt_ms) {
  CudaVariant *v = e->gpu;
  if (opt_ms) *opt_ms = 0;
  if (!v || !v->tiered) return CUDA_TIER_OPTIMISED;
  pthread_mutex_lock(&v->mu);
  int s = v->state;
  if (opt_ms && s != TIER_PENDING) *opt_ms = v->opt_ms;
  pthread_mutex_unlock(&v->mu);
  return s == TIER_PENDING  ? CUDA_TIER_PENDING
         : s == TIER_READY  ? CUDA_TIER_SWITCHED
         : s == TIER_FAILED ? CUDA_TIER_FAILED
                            : CUDA_TIER_OPTIMISED;
}

mixc_status cuda_variant_wait(const KCacheEntry *e, char *err, size_t n) {
  CudaVariant *v = e->gpu;
  if (!v || !v->tiered) return MIXC_OK;
  pthread_mutex_lock(&v->mu);
  while (v->state == TIER_PENDING) pthread_cond_wait(&v->cv, &v->mu);
  mixc_status st = v->state == TIER_FAILED ? v->opt_status : MIXC_OK;
  if (st != MIXC_OK && n) snprintf(err, n, "the optimised compile failed: %s", v->opt_err);
  pthread_mutex_unlock(&v->mu);
  return st;
}

/* The kernels a launch uses now: the optimised module once it is in, else the first one.
 * A failed optimised compile is returned (once) as this call's error. */
static mixc_status active_kernels(CudaVariant *v, MixcCudaFunc *const **fns, char *err,
                                  size_t n) {
  *fns = v->fns;
  if (!v->tiered) return MIXC_OK;
  mixc_status st = MIXC_OK;
  pthread_mutex_lock(&v->mu);
  if (v->state == TIER_READY) {
    *fns = v->opt_fns;
  } else if (v->state == TIER_FAILED && !v->reported) {
    v->reported = 1;
    st = v->opt_status;
    if (n)
      snprintf(err, n,
               "the optimised compile (on its own thread) failed; later calls run the fast "
               "tier: %s",
               v->opt_err);
  }
  pthread_mutex_unlock(&v->mu);
  return st;
}

/* ---- workspaces ---- */

struct CudaWorkspace {
  pthread_mutex_t mu;
  MixcCuda *cu;
  MixcDevPtr base;
  size_t bytes;
  void *stream; /* the stream of the last call that used the workspace */
  int used;
};

CudaWorkspace *cuda_workspace_create(MixcCuda *cu) {
  CudaWorkspace *ws = calloc(1, sizeof *ws);
  if (!ws) return NULL;
  if (pthread_mutex_init(&ws->mu, NULL)) {
    free(ws);
    return NULL;
  }
  ws->cu = cu;
  return ws;
}

void cuda_workspace_destroy(CudaWorkspace *ws) {
  if (!ws) return;
  if (ws->base) {
    char err[256];
    /* a fault of earlier work would be reported here: nothing to report it to */
    (void)mixc_cuda_synchronize(ws->cu, err, sizeof err);
    (void)mixc_cuda_free(ws->cu, ws->base, err, sizeof err);
  }
  pthread_mutex_destroy(&ws->mu);
  free(ws);
}

/* At least `bytes` of workspace; growing waits for the device first. Under ws->mu. */
static mixc_status ws_reserve(CudaWorkspace *ws, size_t bytes, char *err, size_t n) {
  if (bytes <= ws->bytes) return MIXC_OK;
  if (ws->base) {
    if (mixc_cuda_synchronize(ws->cu, err, n)) return dev_status(err);
    if (mixc_cuda_free(ws->cu, ws->base, err, n)) return dev_status(err);
    ws->base = 0;
    ws->bytes = 0;
  }
  size_t unit = (size_t)2 << 20; /* 2 MiB steps, so small growth does not reallocate often */
  size_t want = bytes > SIZE_MAX - unit ? bytes : (bytes + unit - 1) / unit * unit;
  if (mixc_cuda_alloc(ws->cu, want, &ws->base, err, n)) {
    ws->base = 0;
    if (want == bytes || mixc_cuda_alloc(ws->cu, bytes, &ws->base, err, n)) {
      ws->base = 0;
      return dev_status(err);
    }
    want = bytes;
  }
  ws->bytes = want;
  return MIXC_OK;
}

mixc_status cuda_read_offsets(MixcCuda *cu, void *stream, const void *d, int64_t stride,
                              size_t es, int64_t n1, void *host, char *err, size_t n) {
  if (mixc_cuda_stream_synchronize(cu, stream, err, n)) return dev_status(err);
  MixcDevPtr p = (MixcDevPtr)(uintptr_t)d;
  if (stride == 1 || n1 == 1)
    return mixc_cuda_memcpy_dtoh(cu, host, p, (size_t)n1 * es, err, n) ? dev_status(err)
                                                                        : MIXC_OK;
  for (int64_t i = 0; i < n1; i++)
    if (mixc_cuda_memcpy_dtoh(cu, (char *)host + (size_t)i * es,
                              p + (MixcDevPtr)((uint64_t)i * (uint64_t)stride * es), es, err, n))
      return dev_status(err);
  return MIXC_OK;
}

/* Blocks per launch of kernel i: the grid limit, and the workspace cap. */
static int64_t blocks_per_launch(const MixcCudaLaunch *l, int64_t sm_count) {
  int64_t b = CUDA_MAX_BLOCKS;
  if (l->global_scratch_floats > 0) {
    int64_t cap = (int64_t)CUDA_WS_CAP / 4 / l->global_scratch_floats;
    if (cap < 4 * sm_count) cap = 4 * sm_count;
    if (cap < 1) cap = 1;
    if (cap < b) b = cap;
  }
  return b;
}

mixc_status cuda_run(CudaWorkspace *ws, const KCacheEntry *e, uint64_t *argbuf, int cu_slot,
                     const void *cu_host, size_t cu_bytes, int64_t items, void *stream,
                     char *err, size_t n) {
  CudaVariant *v = e->gpu;
  if (!v) return failn(err, n, MIXC_ERROR_INTERNAL, "the variant has no CUDA module");
  MixcCudaFunc *const *fns = NULL;
  mixc_status tst = active_kernels(v, &fns, err, n);
  if (tst != MIXC_OK) return tst;
  if (items <= 0) return MIXC_OK;
  MixcCuda *cu = ws->cu;
  int64_t sms = mixc_cuda_info(cu)->sm_count;
  /* the scratch every launch needs, from the start of the workspace */
  size_t scratch = 0;
  for (int f = 0; f < v->nfns; f++) {
    const MixcCudaLaunch *l = &v->launch[f];
    if (l->global_scratch_floats <= 0) continue;
    int64_t b = blocks_per_launch(l, sms);
    if (b > items) b = items;
    if (l->global_scratch_floats > INT64_MAX / 4 / b)
      return failn(err, n, MIXC_ERROR_OUT_OF_MEMORY, "the kernel's scratch is too large");
    size_t need = (size_t)(b * l->global_scratch_floats * 4);
    if (need > scratch) scratch = need;
  }
  /* the per-item storage the functions share (KFunc.item_floats): after the blocks' scratch,
   * items x the largest of them, one buffer for the whole call */
  int64_t itemf = 0;
  for (int f = 0; f < v->nfns; f++)
    if (v->launch[f].item_floats > itemf) itemf = v->launch[f].item_floats;
  size_t item_off = (scratch + 255) / 256 * 256;
  if (itemf > 0) {
    if (itemf > INT64_MAX / 4 / items)
      return failn(err, n, MIXC_ERROR_OUT_OF_MEMORY, "the kernel's segment storage is too large");
    scratch = item_off + (size_t)(items * itemf * 4);
  }
  size_t cu_off = (scratch + 255) / 256 * 256;
  size_t total = cu_host ? cu_off + cu_bytes : scratch;
  mixc_status st = MIXC_OK;
  pthread_mutex_lock(&ws->mu);
  if (total > 0) {
    /* another stream used the workspace last: let its work finish */
    if (ws->used && ws->stream != stream && mixc_cuda_synchronize(cu, err, n))
      st = dev_status(err);
    if (st == MIXC_OK) st = ws_reserve(ws, total, err, n);
    if (st == MIXC_OK && cu_host) {
      /* the slow path (strided cu_seqlens): nothing may still read the old copy, and the
       * kernels may run on a stream that does not wait for the copy's legacy stream */
      MixcDevPtr dst = ws->base + cu_off;
      if (mixc_cuda_synchronize(cu, err, n) ||
          mixc_cuda_memcpy_htod(cu, dst, cu_host, cu_bytes, err, n) ||
          mixc_cuda_synchronize(cu, err, n))
        st = dev_status(err);
      argbuf[cu_slot] = dst;
    }
  }
  MixcDevPtr base = ws->base;
  for (int f = 0; st == MIXC_OK && f < v->nfns; f++) {
    const MixcCudaLaunch *l = &v->launch[f];
    int64_t per = blocks_per_launch(l, sms);
    for (int64_t begin = 0; st == MIXC_OK && begin < items; begin += per) {
      int64_t end = items - begin > per ? begin + per : items;
      MixcDevPtr sp = l->item_floats > 0            ? base + item_off
                      : l->global_scratch_floats > 0 ? base
                                                     : 0;
      unsigned grid[3] = {(unsigned)(end - begin), 1, 1}, block[3] = {l->threads, 1, 1};
      void *params[4] = {argbuf, &begin, &end, &sp};
      if (mixc_cuda_launch(cu, fns[f], grid, block, l->smem_bytes, stream, params, err, n))
        st = dev_status(err);
    }
  }
  if (total > 0 && st == MIXC_OK) {
    ws->stream = stream;
    ws->used = 1;
  }
  pthread_mutex_unlock(&ws->mu);
  return st;
}

#else
typedef int mixc_cuda_exec_unused; /* ISO C wants a declaration in every file */
#endif
