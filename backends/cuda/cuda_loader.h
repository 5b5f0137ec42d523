/* The CUDA loader: the CUDA driver API and NVRTC, loaded at first use with dlopen and never
 * linked, so one mixc binary runs on a machine without a GPU (or without the CUDA toolkit)
 * and answers a GPU request there with a plain error.
 *
 *   - The driver: libcuda.so.1 (the NVIDIA driver's own library; the toolkit's stub
 *     libcuda.so is never loaded). Every entry point comes through cuGetProcAddress
 *     (cuGetProcAddress_v2, CUDA 12.0+), asking for the CUDA 12.0 version of each symbol
 *     (cuMemAlloc_v2, cuCtxSynchronize without a context argument, ...) with legacy
 *     default-stream semantics; dlsym is used only for cuGetProcAddress itself (and cuInit
 *     should cuGetProcAddress not give it). Driver 12.0 (R525) or newer is needed.
 *   - NVRTC: libnvrtc.so.13, libnvrtc.so.12, libnvrtc.so, by the loader's search path and then
 *     from $CUDA_HOME/lib64, $CUDA_PATH/lib64, /usr/local/cuda/lib64 and /usr/local/cuda/lib
 *     (when the driver is a CUDA 12 one, libnvrtc.so.12 is tried first). NVRTC 12.0 or newer.
 *
 * Kernels are compiled to a CUBIN for the device's own architecture (sm_90a on Hopper: the
 * "a" targets for compute capability 9.0 and later), never to PTX, so an NVRTC newer than the
 * driver (within a major version) still loads. Options: -arch=sm_XX[a] -std=c++17
 * -default-device -lineinfo; no --use_fast_math (IEEE division, square root and
 * denormals; NVRTC's default --fmad=true lets a*b+c contract into an FMA, as the CPU backends
 * do). Kernels are looked up by their symbol name, so generated kernels are `extern "C"`.
 *
 * The disk cache: $XDG_CACHE_HOME/mixc/cubin (default ~/.cache/mixc/cubin), one file a
 * cubin named by the SHA-256 of (source, program name, target, NVRTC version, options). A
 * cached cubin loads without running NVRTC. Entries are written atomically (a temporary file
 * and rename); a corrupt or unreadable entry is ignored and rebuilt; a cache that cannot be
 * written never fails a compile (the reason is kept in MixcCubin.cache_note).
 *
 * Errors: every function that can fail returns 0, or 1 with a plain sentence in err (at most
 * n bytes, always NUL-terminated when n > 0). Nothing here exits, aborts or keeps global
 * state: all of it lives in the MixcNvrtc / MixcCuda objects.
 *
 * Thread safety: one MixcCuda may be used by several threads at once. Each call makes the
 * device's primary context current on the calling thread (cuCtxSetCurrent); module loading
 * and per-function launch settings are serialised by a mutex in the MixcCuda. A MixcNvrtc
 * compiles from several threads at once; mixc_nvrtc_set_cache_dir must not race a compile. */
#ifndef MIXC_CUDA_LOADER_H
#define MIXC_CUDA_LOADER_H
#include <stddef.h>
#include <stdint.h>

/* ---- NVRTC alone: needs no driver and no device ---------------------------------------- */

typedef struct MixcNvrtc MixcNvrtc;

/* Loads NVRTC. prefer_major (12, 13; 0 for none) is tried first. The disk cache starts at
 * $XDG_CACHE_HOME/mixc/cubin (or ~/.cache/mixc/cubin; off when neither is set). */
int mixc_nvrtc_open(int prefer_major, MixcNvrtc **out, char *err, size_t n);
void mixc_nvrtc_close(MixcNvrtc *r);
void mixc_nvrtc_version(const MixcNvrtc *r, int *major, int *minor);
const char *mixc_nvrtc_path(const MixcNvrtc *r); /* the library loaded, as dlopen was given it */
/* The cache directory in use, or NULL when the cache is off. */
const char *mixc_nvrtc_cache_dir(const MixcNvrtc *r);
/* Uses dir as the cache directory (created on first write), or turns the cache off (NULL).
 * Returns 0, or 1 when out of memory. */
int mixc_nvrtc_set_cache_dir(MixcNvrtc *r, const char *dir, char *err, size_t n);

/* The NVRTC target of an architecture number (compute capability major*10 + minor):
 * 90 -> "sm_90a", 86 -> "sm_86". */
void mixc_cuda_target_name(int arch, char *buf, size_t n);

typedef struct MixcCubin {
  unsigned char *data;   /* the CUBIN (an ELF image), malloc'd */
  size_t size;
  double ms;             /* wall time of the whole compile call, cache lookup included */
  int cache_hit;         /* 1: read from the disk cache, NVRTC not run */
  int fast;              /* 1: the fast tier (mixc_nvrtc_compile_fast), never cached */
  char target[16];       /* "sm_90a" */
  char cache_note[512];  /* "" or why the cache was skipped or an entry rebuilt */
} MixcCubin;

/* Compiles CUDA C++ source (program name `name`, e.g. "mixc_kernels.cu", used in messages)
 * to a CUBIN for arch (e.g. 90), through the disk cache. On a compile error, err holds
 * NVRTC's log with each error's source line quoted ("   12 | <line>"). */
int mixc_nvrtc_compile(MixcNvrtc *r, const char *source, const char *name, int arch,
                       MixcCubin *out, char *err, size_t n);
void mixc_cubin_release(MixcCubin *b); /* frees data; the struct itself is the caller's */

/* ---- Tiered compiles: a fast cubin first, the optimised one on a thread -------------------
 * NVRTC's optimiser and ptxas take most of a compile (0.75 to 1.6 s for a hand-structured
 * kernel on an H100 host); with NVRTC 12.8+'s -Ofc=max the same source compiles in about a
 * third of that, to code that runs much slower. The runtime (runtime/cuda_exec.c) looks the
 * optimised cubin up in the cache; on a miss it starts the optimised compile on a thread
 * (mixc_nvrtc_compile_async), compiles the fast cubin meanwhile, runs it, and switches to the
 * optimised one when the thread is done. */

/* The optimised cubin from the disk cache: 0 with out->data set on a hit, 0 with out->data
 * NULL on a miss (out->cache_note says why an entry there was unusable); never compiles.
 * The key is mixc_nvrtc_compile's. */
int mixc_nvrtc_lookup(MixcNvrtc *r, const char *source, const char *name, int arch,
                      MixcCubin *out, char *err, size_t n);
/* The fast tier's option: $MIXC_NVRTC_FAST_OPT, else "-Ofc=max" (NVRTC 12.8 or newer); NULL
 * when there is none (an older NVRTC, or MIXC_NVRTC_OPT already holds an -Ofc). */
const char *mixc_nvrtc_fast_option(const MixcNvrtc *r);
/* Compiles with mixc_nvrtc_compile's options plus the fast option (out->fast = 1). The disk
 * cache is neither read nor written: a fast cubin never stands for the optimised one. */
int mixc_nvrtc_compile_fast(MixcNvrtc *r, const char *source, const char *name, int arch,
                            MixcCubin *out, char *err, size_t n);

typedef struct MixcNvrtcJob MixcNvrtcJob;
/* Called once, on the job's thread, when its compile ends: cubin is the result (through the
 * cache, as mixc_nvrtc_compile: a miss is compiled and written there) and err NULL, or cubin
 * NULL and err the message. The callback may take cubin->data (set it to NULL); the rest is
 * freed after it returns. */
typedef void (*MixcNvrtcDoneFn)(void *arg, MixcCubin *cubin, const char *err);
/* Starts mixc_nvrtc_compile(r, source, name, arch) on a new thread (source and name are
 * copied; MIXC_NVRTC_OPT is read now). Errors: out of memory, no thread. r must outlive the
 * job, and its cache directory must not change until the job is joined. */
int mixc_nvrtc_compile_async(MixcNvrtc *r, const char *source, const char *name, int arch,
                             MixcNvrtcDoneFn done, void *arg, MixcNvrtcJob **out, char *err,
                             size_t n);
/* Waits for the job's thread (its compile and its callback) and frees the job. NULL: nothing.
 * A job must be joined exactly once. */
void mixc_nvrtc_job_join(MixcNvrtcJob *j);

/* ---- The driver: a device and its primary context ------------------------------------- */

typedef struct MixcCuda MixcCuda;
typedef struct MixcCudaModule MixcCudaModule;
typedef struct MixcCudaFunc MixcCudaFunc;   /* owned by its module */
typedef struct MixcCudaEvent MixcCudaEvent; /* a CUevent */
typedef uint64_t MixcDevPtr;                /* a CUdeviceptr (device address); 0 is null */

typedef struct MixcCudaInfo {
  int ordinal;                  /* the device's ordinal */
  char name[256];               /* "NVIDIA H100 80GB HBM3" */
  int arch;                     /* compute capability major*10+minor: 90 */
  char target[16];              /* what kernels are compiled for: "sm_90a" */
  int sm_count;                 /* multiprocessors */
  int max_threads_per_block;
  int max_smem_per_block;       /* bytes of shared memory a block may have without opting in */
  int max_smem_per_block_optin; /* ... with opting in (dynamic): 232448 on Hopper */
  int l2_bytes;
  size_t total_mem;             /* bytes */
  int driver_version;           /* the driver's CUDA version: 13000 is CUDA 13.0 */
  int nvrtc_major, nvrtc_minor;
} MixcCudaInfo;

/* Loads the driver and NVRTC, initialises CUDA and retains device `device`'s primary
 * context. Errors, e.g.: "no CUDA driver: libcuda.so.1 was not found (is this a machine with
 * an NVIDIA GPU and its driver?)", "the CUDA driver found no device", "CUDA device 3 does
 * not exist: the driver sees 1 device", "NVRTC was not found: ...", "the CUDA driver is too
 * old: ...". */
int mixc_cuda_open(int device, MixcCuda **out, char *err, size_t n);
/* Frees the modules still loaded and releases the primary context. Device memory, events
 * and streams the caller did not free go with the context when no one else retains it.
 * Both libraries are dlclose'd but were opened RTLD_NODELETE, so they stay mapped: the
 * driver's threads outlive a context, and NVRTC leaks its C++ runtime's exception pool on
 * every unload. */
void mixc_cuda_close(MixcCuda *c);
const char *mixc_cuda_device_name(const MixcCuda *c);
int mixc_cuda_arch(const MixcCuda *c);
const MixcCudaInfo *mixc_cuda_info(const MixcCuda *c);
MixcNvrtc *mixc_cuda_nvrtc(MixcCuda *c); /* to move or turn off the cache */

/* Compiles (through the cache) for this device and loads the module. ms (may be NULL) gets
 * the compile time, cache_hit (may be NULL) whether the cubin came from the disk cache. */
int mixc_cuda_compile(MixcCuda *c, const char *source, const char *name, MixcCudaModule **out,
                      double *ms, int *cache_hit, char *err, size_t n);
/* Loads a CUBIN (e.g. from mixc_nvrtc_compile); the bytes are copied by the driver. */
int mixc_cuda_module_load(MixcCuda *c, const void *cubin, size_t size, MixcCudaModule **out,
                          char *err, size_t n);
void mixc_cuda_module_free(MixcCudaModule *m);

/* Looks up an `extern "C"` kernel; the handle lives as long as the module. */
int mixc_cuda_function(MixcCudaModule *m, const char *kernel_name, MixcCudaFunc **fn,
                       char *err, size_t n);
void *mixc_cuda_func_handle(const MixcCudaFunc *fn); /* its CUfunction */
int mixc_cuda_func_num_regs(const MixcCudaFunc *fn);
int mixc_cuda_func_max_threads(const MixcCudaFunc *fn); /* threads a block may have */

/* Launches fn on stream (NULL: the legacy default stream). args is cuLaunchKernel's
 * kernelParams: one pointer to each argument's value. More than 48 KiB of dynamic shared
 * memory raises the function's CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES first; more
 * than the device allows is a plain error. Errors inside the kernel surface at the next
 * synchronisation. */
int mixc_cuda_launch(MixcCuda *c, MixcCudaFunc *fn, const unsigned grid[3],
                     const unsigned block[3], unsigned shared_bytes, void *stream, void **args,
                     char *err, size_t n);

/* Device memory. An allocation of 0 bytes gives 0; freeing 0 does nothing. Out of memory is
 * "out of GPU memory: asked for X MiB, Y MiB free of Z MiB". Copies are synchronous. */
int mixc_cuda_alloc(MixcCuda *c, size_t bytes, MixcDevPtr *out, char *err, size_t n);
int mixc_cuda_free(MixcCuda *c, MixcDevPtr p, char *err, size_t n);
int mixc_cuda_memcpy_htod(MixcCuda *c, MixcDevPtr dst, const void *src, size_t bytes, char *err,
                          size_t n);
int mixc_cuda_memcpy_dtoh(MixcCuda *c, void *dst, MixcDevPtr src, size_t bytes, char *err,
                          size_t n);
int mixc_cuda_memcpy_dtod(MixcCuda *c, MixcDevPtr dst, MixcDevPtr src, size_t bytes, char *err,
                          size_t n);
int mixc_cuda_memset8(MixcCuda *c, MixcDevPtr dst, unsigned char value, size_t bytes, char *err,
                      size_t n);
/* Sets `count` 32-bit words (e.g. 0x7fc00000, a float NaN, to poison an output). */
int mixc_cuda_memset32(MixcCuda *c, MixcDevPtr dst, uint32_t value, size_t count, char *err,
                       size_t n);
/* Free and total device memory, bytes. */
int mixc_cuda_mem_info(MixcCuda *c, size_t *free_bytes, size_t *total_bytes, char *err,
                       size_t n);

/* Waits for all work of the context; reports a kernel's fault ("an illegal memory access was
 * encountered ...") here. */
int mixc_cuda_synchronize(MixcCuda *c, char *err, size_t n);

/* Streams (non-blocking with respect to the legacy default stream). */
int mixc_cuda_stream_create(MixcCuda *c, void **stream, char *err, size_t n);
int mixc_cuda_stream_synchronize(MixcCuda *c, void *stream, char *err, size_t n);
void mixc_cuda_stream_destroy(MixcCuda *c, void *stream);

/* Events for timing: record two, then mixc_cuda_event_elapsed waits for `end` and gives the
 * milliseconds between them. */
int mixc_cuda_event_create(MixcCuda *c, MixcCudaEvent **ev, char *err, size_t n);
int mixc_cuda_event_record(MixcCuda *c, MixcCudaEvent *ev, void *stream, char *err, size_t n);
int mixc_cuda_event_elapsed(MixcCuda *c, MixcCudaEvent *start, MixcCudaEvent *end, float *ms,
                            char *err, size_t n);
void mixc_cuda_event_destroy(MixcCuda *c, MixcCudaEvent *ev);

#endif
