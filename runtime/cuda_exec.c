/* The C API's CUDA path: devices, variants, workspaces, launches (cuda_exec.h). */
#define _POSIX_C_SOURCE 200809L
#include "cuda_exec.h"

#ifdef MIXC_HAVE_CUDA
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

typedef struct CudaVariant {
  MixcCudaModule *mod;
  int nfns;
  MixcCudaFunc **fns;
  MixcCudaLaunch *launch;
} CudaVariant;

static void variant_free(void *p) {
  CudaVariant *v = p;
  if (!v) return;
  if (v->mod) mixc_cuda_module_free(v->mod);
  free(v->fns);
  free(v->launch);
  free(v);
}

mixc_status cuda_variant_build(MixcCuda *cu, KCacheEntry *e, const char *mixer, double *ms,
                               char *err, size_t n) {
  const KModule *m = e->plan.mod;
  const MixcCudaInfo *in = mixc_cuda_info(cu);
  CudaVariant *v = calloc(1, sizeof *v);
  if (v) {
    v->nfns = m->nfuncs;
    v->fns = calloc((size_t)m->nfuncs + 1, sizeof *v->fns);
    v->launch = calloc((size_t)m->nfuncs + 1, sizeof *v->launch);
  }
  if (!v || !v->fns || !v->launch) {
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
  char prog[160];
  snprintf(prog, sizeof prog, "mixc_%.100s.cu", mixer);
  if (st == MIXC_OK && mixc_cuda_compile(cu, src, prog, &v->mod, ms, NULL, err, n)) {
    v->mod = NULL;
    /* NVRTC rejecting generated code is a mixc bug; the rest is the device's or memory */
    st = strstr(err, "could not compile") ? MIXC_ERROR_INTERNAL : dev_status(err);
  }
  for (int i = 0; st == MIXC_OK && i < m->nfuncs; i++) {
    char name[256];
    mixc_emit_c_func_name(m->funcs[i], name, sizeof name);
    if (mixc_cuda_function(v->mod, name, &v->fns[i], err, n)) st = MIXC_ERROR_INTERNAL;
    else if (v->launch[i].threads < 1 || v->launch[i].global_scratch_floats < 0) {
      snprintf(err, n, "kernel %s: the CUDA printer gave no valid launch (threads %u)", name,
               v->launch[i].threads);
      st = MIXC_ERROR_INTERNAL;
    }
  }
  free(src);
  if (st != MIXC_OK) {
    variant_free(v);
    return st;
  }
  e->gpu = v;
  e->gpu_free = variant_free;
  return MIXC_OK;
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
  const CudaVariant *v = e->gpu;
  if (!v) return failn(err, n, MIXC_ERROR_INTERNAL, "the variant has no CUDA module");
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
      if (mixc_cuda_launch(cu, v->fns[f], grid, block, l->smem_bytes, stream, params, err, n))
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
