/* The C API's CUDA path (runtime/api.c calls these): the devices of a context, opened at
 * their first use; a variant's module compiled for a device; a kernel's device workspace;
 * the launches. Built only with MIXC_HAVE_CUDA (the CUDA loader, backends/cuda/).
 *
 * Devices: a context opens device i (mixc_cuda_open) the first time a kernel asks for it and
 * keeps it until the context is destroyed; opening is guarded by the devices' mutex, and a
 * failure (no driver, no device, no NVRTC) is returned as the loader's message and retried
 * at the next request.
 *
 * Variants: the lowered KModule is printed as CUDA C for the device (mixc_emit_cuda_module,
 * target = the device's arch and opt-in shared memory), which also says how to launch each
 * kernel (threads, dynamic shared memory, global scratch per block); compiled by NVRTC
 * through the cubin disk cache and loaded into the device's primary context. The loaded
 * module hangs off the cache entry (KCacheEntry.gpu) and is freed with it.
 *
 * Tiers: on a disk-cache miss (and unless MIXC_CUDA_TIERED=0, or NVRTC has no -Ofc), the
 * optimised compile starts on a thread of its own (mixc_nvrtc_compile_async) while the fast
 * tier (mixc_nvrtc_compile_fast: -Ofc=max, never cached) is compiled and loaded on the calling
 * thread; the variant runs the fast module until the thread has compiled the optimised one
 * (into the disk cache), loaded it and looked its kernels up, and every launch after that
 * uses the optimised module (a mutex in the variant: concurrent calls see one or the other,
 * whole). Both modules stay loaded until the variant is freed. The thread belongs to the
 * variant, so to the context's cache: freeing the variant (mixc_context_destroy) waits for
 * it. A failed optimised compile is kept: the next call returns it (once; later calls run the
 * fast tier) and cuda_variant_wait returns it every time. Should the fast tier fail (a compile
 * error, too many registers for the launch), the variant waits for the optimised compile and
 * uses it, or returns its error, as without tiering.
 *
 * Workspace: one per kernel, in device memory: the blocks' global scratch and, when
 * cu_seqlens had to be made contiguous, a copy of it. It follows one stream at a time:
 *   - calls on the same stream reuse it without any synchronisation (stream order);
 *   - a call on another stream than the previous user of the workspace first waits for the
 *     device (context synchronise), so a kernel used from several streams stays correct;
 *   - growing it waits for the device, then frees the old buffer and allocates the new;
 *   - freeing it (mixc_kernel_destroy) waits for the device.
 * A mutex in the workspace serialises all of this and the launches that use it.
 *
 * Launches: one block per work item, in pieces of at most CUDA_MAX_BLOCKS blocks (the grid
 * limit, and fewer where the scratch of that many blocks would pass CUDA_WS_CAP bytes); each
 * piece runs on scratch from the start of the workspace, in stream order. Kernels with
 * per-item storage (MixcCudaLaunch.item_floats: the sequence-split chunk kernels) get one
 * buffer of items x item_floats floats after that scratch, the same for all of them, which
 * the pieces index by the global item.
 *
 * Every function returns MIXC_OK, or a status with a plain message in err (at most n bytes). */
#ifndef MIXC_CUDA_EXEC_H
#define MIXC_CUDA_EXEC_H
#include <stddef.h>
#include <stdint.h>

#include "include/mixc.h"
#include "kcache.h"

#ifdef MIXC_HAVE_CUDA
#include "../backends/cuda/cuda_loader.h"

enum {
  CUDA_MAX_DEVICES = 64,
  CUDA_WS_CAP = 1 << 30, /* bytes: above this, the work items run in several launches */
};
#define CUDA_MAX_BLOCKS ((int64_t)0x7fffffff) /* gridDim.x */

typedef struct CudaDevices CudaDevices;   /* per context */
typedef struct CudaWorkspace CudaWorkspace; /* per kernel */

CudaDevices *cuda_devices_create(void); /* NULL when out of memory */
void cuda_devices_destroy(CudaDevices *d);
/* Device `ordinal` of the context, opened at the first request. */
mixc_status cuda_device_get(CudaDevices *d, int ordinal, MixcCuda **out, char *err, size_t n);
/* The text of the device for cache keys: ordinal, name, target, NVRTC version. */
void cuda_device_describe(MixcCuda *cu, char *buf, size_t n);
/* Work items the device wants in flight (KernelSpec's target, where the lowering has one). */
int64_t cuda_target_items(MixcCuda *cu);

/* Prints e->plan.mod as CUDA, compiles and loads it (the fast tier first on a disk-cache
 * miss, see "Tiers"), and hangs the result off e (e->gpu, e->gpu_free); *ms gets the first
 * tier's NVRTC (or disk cache) time. */
mixc_status cuda_variant_build(MixcCuda *cu, KCacheEntry *e, const char *mixer, double *ms,
                               char *err, size_t n);

/* A variant's tier (cuda_variant_tier). */
enum {
  CUDA_TIER_OPTIMISED, /* optimised from the start: a disk-cache hit, or tiering off */
  CUDA_TIER_PENDING,   /* running the fast tier; the optimised compile is on its thread */
  CUDA_TIER_SWITCHED,  /* the optimised module, compiled in the background, is in use */
  CUDA_TIER_FAILED,    /* the optimised compile failed: the fast tier goes on */
};
/* The tier of e (a CUDA variant); opt_ms (may be NULL) gets the optimised compile's wall
 * time (NVRTC, cache write, module load) once it has ended, else 0. Does not wait. */
int cuda_variant_tier(const KCacheEntry *e, double *opt_ms);
/* Waits until e's optimised compile has ended: MIXC_OK (the optimised module is in use, or
 * always was), or the compile's error, every time. */
mixc_status cuda_variant_wait(const KCacheEntry *e, char *err, size_t n);

CudaWorkspace *cuda_workspace_create(MixcCuda *cu); /* NULL when out of memory */
/* Waits for the device when the workspace holds memory, then frees it. */
void cuda_workspace_destroy(CudaWorkspace *ws);

/* Reads cu_seqlens (n1 offsets of es bytes, `stride` elements apart, at device address d)
 * into host memory: waits for `stream`, then copies (synchronous). */
mixc_status cuda_read_offsets(MixcCuda *cu, void *stream, const void *d, int64_t stride,
                              size_t es, int64_t n1, void *host, char *err, size_t n);

/* Runs every kernel of variant e over `items` work items on `stream`. argbuf is the kernels'
 * argument struct (ptrs then ints, filled by the caller); when cu_host is not NULL, its
 * cu_bytes are copied into the workspace first and argbuf[cu_slot] pointed at the copy (a
 * synchronising path). Asynchronous otherwise. */
mixc_status cuda_run(CudaWorkspace *ws, const KCacheEntry *e, uint64_t *argbuf, int cu_slot,
                     const void *cu_host, size_t cu_bytes, int64_t items, void *stream,
                     char *err, size_t n);
#endif

#endif
