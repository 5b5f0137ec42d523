/* The CUDA loader (cuda_loader.h): the driver API and NVRTC through dlopen, the NVRTC
 * compile to CUBIN with its disk cache, and thin checked wrappers over the driver calls the
 * GPU backend needs. */
#define _POSIX_C_SOURCE 200809L
#include "cuda_loader.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ---- The driver's types and values, declared here so the build needs no toolkit ----------
 * Each value is the one in the CUDA 13.0 toolkit's include/cuda.h (line numbers of that
 * file in brackets); these are ABI constants that CUDA keeps fixed across versions. */
typedef int CUresult;                     /* enum cudaError_enum [2511] */
typedef int CUdevice;                     /* typedef int CUdevice_v1 [280] */
typedef unsigned long long CUdeviceptr;   /* CUdeviceptr_v2 on LP64 [274, 278] */
typedef uint64_t cuuint64_t;              /* [63] */
typedef struct CUctx_st *CUcontext;       /* [282] */
typedef struct CUmod_st *CUmodule;        /* [283] */
typedef struct CUfunc_st *CUfunction;     /* [284] */
typedef struct CUevent_st *CUevent;       /* [291] */
typedef struct CUstream_st *CUstream;     /* [292] */

enum {
  CUDA_SUCCESS = 0,                               /* [2517] */
  CUDA_ERROR_INVALID_VALUE = 1,                   /* [2523] */
  CUDA_ERROR_OUT_OF_MEMORY = 2,                   /* [2529] */
  CUDA_ERROR_STUB_LIBRARY = 34,                   /* [2576] */
  CUDA_ERROR_NO_DEVICE = 100,                     /* [2597] */
  CUDA_ERROR_INVALID_DEVICE = 101,                /* [2604] */
  CUDA_ERROR_INVALID_IMAGE = 200,                 /* [2615] */
  CUDA_ERROR_NO_BINARY_FOR_GPU = 209,             /* [2665] */
  CUDA_ERROR_UNSUPPORTED_PTX_VERSION = 222,       /* [2739] */
  CUDA_ERROR_NOT_FOUND = 500,                     /* [2820] */
  CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701,       /* [2848] */
  CUDA_ERROR_SYSTEM_DRIVER_MISMATCH = 803,        /* [3018] */
  CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE = 804 /* [3027] */
};
enum { /* CUdevice_attribute [723] */
  CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 1,              /* [724] */
  CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK = 8,        /* [731] */
  CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,              /* [741] */
  CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE = 38,                     /* [766] */
  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,          /* [803] */
  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,          /* [804] */
  CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97  /* [825] */
};
enum { /* CUfunction_attribute [927] */
  CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 0,        /* [933] */
  CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES = 1,            /* [940] */
  CU_FUNC_ATTRIBUTE_NUM_REGS = 4,                     /* [956] */
  CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8 /* [994] */
};
enum {
  CU_STREAM_DEFAULT = 0,                    /* [428]: synchronises with the legacy stream */
  CU_EVENT_DEFAULT = 0,                     /* [456] */
  CU_GET_PROC_ADDRESS_LEGACY_STREAM = 1,    /* CUdriverProcAddress_flags [2412] */
  CU_GET_PROC_ADDRESS_SUCCESS = 0,          /* CUdriverProcAddressQueryResult [2420] */
  CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND = 1, /* [2421] */
  CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT = 2 /* [2422] */
};
/* The version whose entry points are asked for: CUDA 12.0. It picks cuMemAlloc_v2 and the
 * other _v2 memory calls (3020), cuDevicePrimaryCtxRelease_v2 (11000), cuStreamDestroy_v2
 * and cuEventDestroy_v2 (4000), and cuCtxSynchronize without the context argument that
 * CUDA 13.0 added (cudaTypedefs.h: PFN_cuCtxSynchronize_v2000 / _v13000). */
#define MIXC_CUDA_API_VERSION 12000

/* NVRTC (include/nvrtc.h of CUDA 13.0). */
typedef int nvrtcResult;                        /* the enum at [41] */
typedef struct _nvrtcProgram *nvrtcProgram;     /* [153] */
enum { NVRTC_SUCCESS = 0, NVRTC_ERROR_COMPILATION = 6 }; /* [42], [48] */

/* Both libraries are opened RTLD_NODELETE: a dlclose drops our reference but leaves them
 * mapped. The driver starts threads that outlive a context, so unmapping it under them is
 * unsafe; NVRTC carries its own C++ runtime, whose 71 KiB exception pool leaks on every
 * unload (LeakSanitizer sees it). Opening them again only raises dlopen's count. */
#ifndef RTLD_NODELETE
#define RTLD_NODELETE 0
#endif
#define MIXC_DLOPEN_FLAGS (RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE)

_Static_assert(sizeof(void (*)(void)) == sizeof(void *), "function and data pointers differ");
_Static_assert(sizeof(CUdeviceptr) == sizeof(MixcDevPtr), "CUdeviceptr is 64-bit");

/* ---- small helpers ---------------------------------------------------------------------- */

#if defined(__GNUC__)
#define MIXC_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MIXC_PRINTF(a, b)
#endif

static int fail(char *err, size_t n, const char *fmt, ...) MIXC_PRINTF(3, 4);
static int fail(char *err, size_t n, const char *fmt, ...) {
  if (err && n) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
  }
  return 1;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static char *dup_str(const char *s) {
  size_t len = strlen(s) + 1;
  char *p = malloc(len);
  if (p) memcpy(p, s, len);
  return p;
}

/* A symbol from dlsym as a function pointer, without the object/function pointer cast that
 * ISO C leaves undefined (POSIX guarantees the representations agree). */
static void set_fn(void *fnptr_slot, void *sym) { memcpy(fnptr_slot, &sym, sizeof sym); }

/* A growing string. */
typedef struct {
  char *p;
  size_t len, cap;
  int oom;
} Buf;

static void buf_add(Buf *b, const char *s, size_t len) {
  if (b->oom) return;
  if (b->len + len + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + len + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, len);
  b->len += len;
  b->p[b->len] = 0;
}
static void buf_str(Buf *b, const char *s) { buf_add(b, s, strlen(s)); }
static void buf_fmt(Buf *b, const char *fmt, ...) MIXC_PRINTF(2, 3);
static void buf_fmt(Buf *b, const char *fmt, ...) {
  char tmp[1024];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (k > 0) buf_add(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

/* "12.5 MiB"-style sizes for messages. */
static void fmt_mib(char *buf, size_t n, double bytes) {
  double mib = bytes / (1024.0 * 1024.0);
  if (mib == (double)(uint64_t)mib)
    snprintf(buf, n, "%.0f MiB", mib);
  else
    snprintf(buf, n, "%.1f MiB", mib);
}

/* ---- SHA-256 (FIPS 180-4), for the cache key and the entries' checksums --------------- */

typedef struct {
  uint32_t h[8];
  uint64_t bytes;
  unsigned char block[64];
  size_t fill;
} Sha256;

static const uint32_t SHA_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

static uint32_t rotr(uint32_t x, int k) { return (x >> k) | (x << (32 - k)); }

static void sha_block(Sha256 *s, const unsigned char *p) {
  uint32_t w[64];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
           (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3];
  uint32_t e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) +
                  SHA_K[i] + w[i];
    uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  s->h[0] += a;
  s->h[1] += b;
  s->h[2] += c;
  s->h[3] += d;
  s->h[4] += e;
  s->h[5] += f;
  s->h[6] += g;
  s->h[7] += h;
}

static void sha_init(Sha256 *s) {
  static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(s->h, h0, sizeof h0);
  s->bytes = 0;
  s->fill = 0;
}

static void sha_update(Sha256 *s, const void *data, size_t len) {
  const unsigned char *p = data;
  s->bytes += len;
  while (len) {
    size_t k = 64 - s->fill < len ? 64 - s->fill : len;
    memcpy(s->block + s->fill, p, k);
    s->fill += k;
    p += k;
    len -= k;
    if (s->fill == 64) {
      sha_block(s, s->block);
      s->fill = 0;
    }
  }
}

static void sha_final(Sha256 *s, unsigned char out[32]) {
  uint64_t bits = s->bytes * 8;
  unsigned char pad = 0x80, zero = 0, len[8];
  sha_update(s, &pad, 1);
  while (s->fill != 56) sha_update(s, &zero, 1);
  for (int i = 0; i < 8; i++) len[i] = (unsigned char)(bits >> (56 - 8 * i));
  sha_update(s, len, 8);
  for (int i = 0; i < 8; i++) {
    out[4 * i] = (unsigned char)(s->h[i] >> 24);
    out[4 * i + 1] = (unsigned char)(s->h[i] >> 16);
    out[4 * i + 2] = (unsigned char)(s->h[i] >> 8);
    out[4 * i + 3] = (unsigned char)s->h[i];
  }
}

/* A length-prefixed field, so that ("ab","c") and ("a","bc") hash differently. */
static void sha_field(Sha256 *s, const char *str) {
  unsigned char len[8];
  uint64_t k = strlen(str);
  for (int i = 0; i < 8; i++) len[i] = (unsigned char)(k >> (8 * i));
  sha_update(s, len, 8);
  sha_update(s, str, (size_t)k);
}

static void sha_of(const void *data, size_t len, unsigned char out[32]) {
  Sha256 s;
  sha_init(&s);
  sha_update(&s, data, len);
  sha_final(&s, out);
}

/* ==== NVRTC ============================================================================= */

struct MixcNvrtc {
  void *lib;
  char *path;
  int major, minor;
  int *archs; /* the architectures this NVRTC can build for, or NULL when it cannot say */
  int narchs;
  char *cache_dir; /* NULL: no disk cache */
  const char *(*nvrtcGetErrorString)(nvrtcResult);
  nvrtcResult (*nvrtcVersion)(int *, int *);
  nvrtcResult (*nvrtcGetNumSupportedArchs)(int *);
  nvrtcResult (*nvrtcGetSupportedArchs)(int *);
  nvrtcResult (*nvrtcCreateProgram)(nvrtcProgram *, const char *, const char *, int,
                                    const char *const *, const char *const *);
  nvrtcResult (*nvrtcDestroyProgram)(nvrtcProgram *);
  nvrtcResult (*nvrtcCompileProgram)(nvrtcProgram, int, const char *const *);
  nvrtcResult (*nvrtcGetCUBINSize)(nvrtcProgram, size_t *);
  nvrtcResult (*nvrtcGetCUBIN)(nvrtcProgram, char *);
  nvrtcResult (*nvrtcGetProgramLogSize)(nvrtcProgram, size_t *);
  nvrtcResult (*nvrtcGetProgramLog)(nvrtcProgram, char *);
};

/* Binds NVRTC's entry points from r->lib; returns the name of a missing one, or NULL. */
static const char *nvrtc_bind(MixcNvrtc *r) {
  struct {
    const char *name;
    void *slot;
    int required;
  } syms[] = {
      {"nvrtcGetErrorString", &r->nvrtcGetErrorString, 1},
      {"nvrtcVersion", &r->nvrtcVersion, 1},
      {"nvrtcGetNumSupportedArchs", &r->nvrtcGetNumSupportedArchs, 0},
      {"nvrtcGetSupportedArchs", &r->nvrtcGetSupportedArchs, 0},
      {"nvrtcCreateProgram", &r->nvrtcCreateProgram, 1},
      {"nvrtcDestroyProgram", &r->nvrtcDestroyProgram, 1},
      {"nvrtcCompileProgram", &r->nvrtcCompileProgram, 1},
      {"nvrtcGetCUBINSize", &r->nvrtcGetCUBINSize, 1},
      {"nvrtcGetCUBIN", &r->nvrtcGetCUBIN, 1},
      {"nvrtcGetProgramLogSize", &r->nvrtcGetProgramLogSize, 1},
      {"nvrtcGetProgramLog", &r->nvrtcGetProgramLog, 1},
  };
  for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
    void *p = dlsym(r->lib, syms[i].name);
    if (!p && syms[i].required) return syms[i].name;
    set_fn(syms[i].slot, p);
  }
  return NULL;
}

/* The default cache directory: $XDG_CACHE_HOME/mixc/cubin, or $HOME/.cache/mixc/cubin
 * (XDG says a relative XDG_CACHE_HOME is to be ignored). NULL when neither is usable. */
static char *default_cache_dir(void) {
  const char *x = getenv("XDG_CACHE_HOME");
  const char *home = getenv("HOME");
  char *p = NULL;
  size_t len;
  if (x && x[0] == '/') {
    len = strlen(x) + sizeof "/mixc/cubin";
    if ((p = malloc(len))) snprintf(p, len, "%s/mixc/cubin", x);
  } else if (home && home[0] == '/') {
    len = strlen(home) + sizeof "/.cache/mixc/cubin";
    if ((p = malloc(len))) snprintf(p, len, "%s/.cache/mixc/cubin", home);
  }
  return p;
}

void mixc_nvrtc_close(MixcNvrtc *r) {
  if (!r) return;
  if (r->lib) dlclose(r->lib);
  free(r->path);
  free(r->archs);
  free(r->cache_dir);
  free(r);
}

int mixc_nvrtc_open(int prefer_major, MixcNvrtc **out, char *err, size_t n) {
  *out = NULL;
  const char *names[3] = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"};
  if (prefer_major == 12) {
    names[0] = "libnvrtc.so.12";
    names[1] = "libnvrtc.so.13";
  }
  const char *dirs[5] = {"", getenv("CUDA_HOME"), getenv("CUDA_PATH"), "/usr/local/cuda",
                         "/usr/local/cuda"};
  const char *subdirs[5] = {"", "/lib64", "/lib64", "/lib64", "/lib"};
  char too_old[1100] = "", bad[1100] = ""; /* a path (up to 1024) and a few words */
  MixcNvrtc *r = calloc(1, sizeof *r);
  if (!r) return fail(err, n, "out of memory");
  for (int d = 0; d < 5 && !r->lib; d++) {
    if (!dirs[d] || (d > 0 && dirs[d][0] != '/')) continue;
    for (int k = 0; k < 3 && !r->lib; k++) {
      char path[1024];
      if (d == 0)
        snprintf(path, sizeof path, "%s", names[k]);
      else if (snprintf(path, sizeof path, "%s%s/%s", dirs[d], subdirs[d], names[k]) >=
               (int)sizeof path)
        continue;
      r->lib = dlopen(path, MIXC_DLOPEN_FLAGS);
      if (!r->lib) continue;
      const char *missing = nvrtc_bind(r);
      int maj = 0, mnr = 0;
      if (!missing && r->nvrtcVersion(&maj, &mnr) != NVRTC_SUCCESS) missing = "nvrtcVersion";
      if (missing) {
        snprintf(bad, sizeof bad, "%s lacks %s", path, missing);
      } else if (maj < 12) {
        snprintf(too_old, sizeof too_old, "NVRTC %d.%d (%s)", maj, mnr, path);
      } else {
        r->major = maj;
        r->minor = mnr;
        r->path = dup_str(path);
        break;
      }
      dlclose(r->lib);
      r->lib = NULL;
    }
  }
  if (!r->lib) {
    free(r);
    if (too_old[0])
      return fail(err, n,
                  "NVRTC is too old: %s was found, mixc needs NVRTC 12.0 or newer (install the "
                  "CUDA 12 or 13 toolkit's libnvrtc)",
                  too_old);
    if (bad[0])
      return fail(err, n, "NVRTC could not be used: %s (is the CUDA toolkit installation whole?)",
                  bad);
    return fail(err, n,
                "NVRTC was not found: install the CUDA toolkit's libnvrtc (libnvrtc.so.12 or "
                ".so.13), or put the directory that holds it on LD_LIBRARY_PATH");
  }
  int na = 0;
  if (r->nvrtcGetNumSupportedArchs && r->nvrtcGetSupportedArchs &&
      r->nvrtcGetNumSupportedArchs(&na) == NVRTC_SUCCESS && na > 0 && na < 4096) {
    r->archs = malloc((size_t)na * sizeof *r->archs);
    if (r->archs && r->nvrtcGetSupportedArchs(r->archs) == NVRTC_SUCCESS) {
      r->narchs = na;
    } else {
      free(r->archs);
      r->archs = NULL;
    }
  }
  r->cache_dir = default_cache_dir();
  if (!r->path) {
    mixc_nvrtc_close(r);
    return fail(err, n, "out of memory");
  }
  *out = r;
  return 0;
}

void mixc_nvrtc_version(const MixcNvrtc *r, int *major, int *minor) {
  if (major) *major = r->major;
  if (minor) *minor = r->minor;
}
const char *mixc_nvrtc_path(const MixcNvrtc *r) { return r->path; }
const char *mixc_nvrtc_cache_dir(const MixcNvrtc *r) { return r->cache_dir; }

int mixc_nvrtc_set_cache_dir(MixcNvrtc *r, const char *dir, char *err, size_t n) {
  char *d = NULL;
  if (dir && !(d = dup_str(dir))) return fail(err, n, "out of memory");
  free(r->cache_dir);
  r->cache_dir = d;
  return 0;
}

void mixc_cuda_target_name(int arch, char *buf, size_t n) {
  /* From compute capability 9.0 on, the "a" target is the one with every feature of that
   * chip (wgmma, setmaxnreg on sm_90a); its code runs on that architecture alone, which is
   * what a cubin for the device in hand is anyway. */
  snprintf(buf, n, "sm_%d%s", arch, arch >= 90 ? "a" : "");
}

void mixc_cubin_release(MixcCubin *b) {
  if (!b) return;
  free(b->data);
  b->data = NULL;
  b->size = 0;
}

/* ---- the disk cache -------------------------------------------------------------------- */
/* An entry: "MIXCCUB1", the 32-byte key, the cubin's size (8 bytes, little-endian), the
 * SHA-256 of the cubin, then the cubin. */
#define ENTRY_MAGIC "MIXCCUB1"
enum { ENTRY_HEADER = 8 + 32 + 8 + 32 };

static int is_elf(const unsigned char *p, size_t len) {
  return len >= 4 && p[0] == 0x7f && p[1] == 'E' && p[2] == 'L' && p[3] == 'F';
}

static char *entry_path(const char *dir, const unsigned char key[32]) {
  size_t len = strlen(dir) + 1 + 64 + sizeof ".entry";
  char *p = malloc(len);
  if (!p) return NULL;
  int k = snprintf(p, len, "%s/", dir);
  for (int i = 0; i < 32; i++) k += snprintf(p + k, len - (size_t)k, "%02x", key[i]);
  snprintf(p + k, len - (size_t)k, ".entry");
  return p;
}

/* Reads an entry. Returns 1 with the cubin, 0 when there is none, -1 when it is there but
 * unusable (why in note). */
static int cache_read(const char *path, const unsigned char key[32], unsigned char **data,
                      size_t *size, char *note, size_t nn) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    if (errno == ENOENT || errno == ENOTDIR) return 0;
    snprintf(note, nn, "the cache entry %s could not be read (%s); it was rebuilt", path,
             strerror(errno));
    return -1;
  }
  unsigned char hdr[ENTRY_HEADER];
  const char *why = NULL;
  unsigned char *buf = NULL;
  uint64_t len = 0;
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || (uint64_t)st.st_size < ENTRY_HEADER)
    why = "it is truncated";
  else if (fread(hdr, 1, ENTRY_HEADER, f) != ENTRY_HEADER)
    why = "it could not be read";
  else if (memcmp(hdr, ENTRY_MAGIC, 8) != 0)
    why = "it is not a mixc cubin entry";
  else if (memcmp(hdr + 8, key, 32) != 0)
    why = "its key does not match its name";
  if (!why) {
    for (int i = 0; i < 8; i++) len |= (uint64_t)hdr[40 + i] << (8 * i);
    if (len != (uint64_t)st.st_size - ENTRY_HEADER)
      why = "its size is wrong";
    else if (!(buf = malloc(len ? (size_t)len : 1)))
      why = "out of memory";
    else if (fread(buf, 1, (size_t)len, f) != len)
      why = "it could not be read";
    else {
      unsigned char sum[32];
      sha_of(buf, (size_t)len, sum);
      if (memcmp(sum, hdr + 48, 32) != 0)
        why = "its checksum does not match";
      else if (!is_elf(buf, (size_t)len))
        why = "it holds no ELF image";
    }
  }
  fclose(f);
  if (why) {
    free(buf);
    snprintf(note, nn, "the cache entry %s was unusable (%s); it was rebuilt", path, why);
    return -1;
  }
  *data = buf;
  *size = (size_t)len;
  return 1;
}

/* mkdir -p. */
static int make_dirs(const char *dir) {
  char *p = dup_str(dir);
  if (!p) return ENOMEM;
  int rc = 0;
  for (char *s = p + 1;; s++) {
    if (*s == '/' || *s == 0) {
      char c = *s;
      *s = 0;
      if (mkdir(p, 0777) != 0 && errno != EEXIST) {
        rc = errno;
        break;
      }
      *s = c;
      if (!c) break;
    }
  }
  struct stat st;
  if (!rc && (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))) rc = ENOTDIR;
  free(p);
  return rc;
}

static int write_all(int fd, const void *data, size_t len) {
  const char *p = data;
  while (len) {
    ssize_t k = write(fd, p, len);
    if (k < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += k;
    len -= (size_t)k;
  }
  return 0;
}

/* Writes an entry atomically: a temporary file in the same directory, then rename. Any
 * failure leaves a note and no file. */
static void cache_write(const char *dir, const char *path, const unsigned char key[32],
                        const unsigned char *data, size_t size, char *note, size_t nn) {
  int e = make_dirs(dir);
  if (e) {
    snprintf(note, nn, "the cache directory %s could not be made (%s); the cubin was not cached",
             dir, strerror(e));
    return;
  }
  size_t tl = strlen(dir) + sizeof "/.tmp-XXXXXX";
  char *tmp = malloc(tl);
  if (!tmp) return;
  snprintf(tmp, tl, "%s/.tmp-XXXXXX", dir);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    snprintf(note, nn, "the cache directory %s is not writable (%s); the cubin was not cached",
             dir, strerror(errno));
    free(tmp);
    return;
  }
  unsigned char hdr[ENTRY_HEADER];
  memcpy(hdr, ENTRY_MAGIC, 8);
  memcpy(hdr + 8, key, 32);
  for (int i = 0; i < 8; i++) hdr[40 + i] = (unsigned char)((uint64_t)size >> (8 * i));
  sha_of(data, size, hdr + 48);
  int ok = write_all(fd, hdr, sizeof hdr) == 0 && write_all(fd, data, size) == 0;
  e = errno;
  if (close(fd) != 0 && ok) {
    ok = 0;
    e = errno;
  }
  if (ok && rename(tmp, path) != 0) {
    ok = 0;
    e = errno;
  }
  if (!ok) {
    unlink(tmp);
    snprintf(note, nn, "the cache entry %s could not be written (%s); the cubin was not cached",
             path, strerror(e));
  }
  free(tmp);
}

/* ---- compiling ------------------------------------------------------------------------- */

/* Line `line` (1-based) of src: its start and length, or NULL. */
static const char *source_line(const char *src, long line, size_t *len) {
  const char *p = src;
  for (long i = 1; i < line && p; i++) {
    p = strchr(p, '\n');
    if (p) p++;
  }
  if (!p || !*p) return NULL;
  const char *e = strchr(p, '\n');
  *len = e ? (size_t)(e - p) : strlen(p);
  if (*len && p[*len - 1] == '\r') (*len)--;
  return p;
}

/* If log line [s, s+len) is "<name>(<N>): error..." (or "catastrophic error", "fatal
 * error"), returns N, else 0. */
static long error_line(const char *s, size_t len, const char *name) {
  size_t nl = strlen(name);
  if (len <= nl + 3 || memcmp(s, name, nl) != 0 || s[nl] != '(') return 0;
  size_t i = nl + 1;
  long v = 0;
  while (i < len && s[i] >= '0' && s[i] <= '9' && v < 100000000) v = v * 10 + (s[i++] - '0');
  if (i == nl + 1 || i + 2 >= len || s[i] != ')' || s[i + 1] != ':' || s[i + 2] != ' ') return 0;
  const char *rest = s + i + 3;
  size_t rl = len - (i + 3);
  static const char *kinds[] = {"error", "catastrophic error", "fatal error"};
  for (size_t k = 0; k < 3; k++) {
    size_t kl = strlen(kinds[k]);
    if (rl >= kl && memcmp(rest, kinds[k], kl) == 0) return v;
  }
  return 0;
}

/* NVRTC's log with each error's source line quoted as "   12 | <line>". NVRTC 12.x/13.x
 * already echo the line (indented by two spaces) with a caret under it; those two lines
 * are replaced by the numbered quote and a caret moved to match. */
static void quote_log(Buf *b, const char *log, const char *src, const char *name) {
  const char *p = log;
  while (*p) {
    const char *e = strchr(p, '\n');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    const char *next = e ? e + 1 : p + len;
    buf_add(b, p, len);
    buf_str(b, "\n");
    long line = error_line(p, len, name);
    size_t sl = 0;
    const char *s = line > 0 ? source_line(src, line, &sl) : NULL;
    if (s) {
      char prefix[32];
      int pl = snprintf(prefix, sizeof prefix, "%5ld | ", line);
      buf_str(b, prefix);
      buf_add(b, s, sl);
      buf_str(b, "\n");
      /* NVRTC's own echo: "  <line>" then "  <spaces>^". */
      const char *e2 = strchr(next, '\n');
      size_t l2 = e2 ? (size_t)(e2 - next) : strlen(next);
      if (l2 == sl + 2 && next[0] == ' ' && next[1] == ' ' && memcmp(next + 2, s, sl) == 0) {
        next = e2 ? e2 + 1 : next + l2;
        const char *e3 = strchr(next, '\n');
        size_t l3 = e3 ? (size_t)(e3 - next) : strlen(next);
        size_t sp = 0;
        while (sp < l3 && next[sp] == ' ') sp++;
        if (l3 > 0 && sp == l3 - 1 && next[sp] == '^' && sp >= 2) {
          for (size_t i = 0; i < (size_t)pl + sp - 2; i++) buf_str(b, " ");
          buf_str(b, "^\n");
          next = e3 ? e3 + 1 : next + l3;
        }
      }
    }
    p = next;
  }
}

static int arch_supported(const MixcNvrtc *r, int arch) {
  if (!r->archs) return 1; /* it cannot say: let the compile tell */
  for (int i = 0; i < r->narchs; i++)
    if (r->archs[i] == arch) return 1;
  return 0;
}

/* The first tier's option (NVRTC 12.8+'s fastest compile), unless MIXC_NVRTC_FAST_OPT says
 * otherwise. */
#define FAST_OPT_DEFAULT "-Ofc=max"

/* How a compile uses the disk cache. */
enum { MODE_FULL, MODE_LOOKUP, MODE_FAST };

/* The compile behind mixc_nvrtc_compile (MODE_FULL: cache, else NVRTC and a cache write),
 * mixc_nvrtc_lookup (MODE_LOOKUP: the cache alone; a miss gives 0 with out->data NULL) and
 * mixc_nvrtc_compile_fast (MODE_FAST: NVRTC with `fast` added, the cache neither read nor
 * written). extra: MIXC_NVRTC_OPT, read by the caller (NULL or "" for none). */
static int nvrtc_compile(MixcNvrtc *r, const char *source, const char *name, int arch,
                         const char *extra, const char *fast, int mode, MixcCubin *out,
                         char *err, size_t n) {
  double t0 = now_ms();
  memset(out, 0, sizeof *out);
  out->fast = mode == MODE_FAST;
  if (!source) return fail(err, n, "no CUDA source to compile");
  if (!name || !*name) name = "mixc_kernels.cu";
  mixc_cuda_target_name(arch, out->target, sizeof out->target);
  if (!arch_supported(r, arch)) {
    Buf b = {0};
    for (int i = 0; i < r->narchs; i++) buf_fmt(&b, "%ssm_%d", i ? ", " : "", r->archs[i]);
    int rc = fail(err, n,
                  "NVRTC %d.%d (%s) cannot build for %s (it knows %s): install a newer CUDA "
                  "toolkit's NVRTC",
                  r->major, r->minor, r->path, out->target, b.p ? b.p : "");
    free(b.p);
    return rc;
  }
  char arch_opt[40];
  snprintf(arch_opt, sizeof arch_opt, "-arch=%s", out->target);
  /* MIXC_NVRTC_OPT: one more NVRTC option, for experiments (e.g. -Ofc=mid, NVRTC 12.8+'s
   * faster compile); part of the cache key like the others. The fast tier adds its own. */
  const char *opts[6] = {arch_opt, "-std=c++17", "-default-device", "-lineinfo"};
  int nopts = 4;
  if (extra && *extra) opts[nopts++] = extra;
  if (mode == MODE_FAST && fast && *fast) opts[nopts++] = fast;

  /* The key: everything that decides the cubin. */
  unsigned char key[32];
  char ver[32];
  snprintf(ver, sizeof ver, "nvrtc %d.%d", r->major, r->minor);
  Sha256 s;
  sha_init(&s);
  sha_field(&s, "mixc cubin cache 1");
  sha_field(&s, ver);
  sha_field(&s, out->target);
  for (int i = 0; i < nopts; i++) sha_field(&s, opts[i]);
  sha_field(&s, name);
  sha_field(&s, source);
  sha_final(&s, key);

  /* the fast tier's cubin is never cached: it is not the cubin of the optimised key */
  char *path = r->cache_dir && mode != MODE_FAST ? entry_path(r->cache_dir, key) : NULL;
  if (path) {
    int got = cache_read(path, key, &out->data, &out->size, out->cache_note,
                         sizeof out->cache_note);
    if (got == 1) {
      free(path);
      out->cache_hit = 1;
      out->ms = now_ms() - t0;
      return 0;
    }
  }
  if (mode == MODE_LOOKUP) {
    free(path);
    out->ms = now_ms() - t0;
    return 0;
  }

  nvrtcProgram prog = NULL;
  nvrtcResult rc = r->nvrtcCreateProgram(&prog, source, name, 0, NULL, NULL);
  if (rc != NVRTC_SUCCESS) {
    free(path);
    return fail(err, n, "NVRTC could not take the program %s: %s", name,
                r->nvrtcGetErrorString(rc));
  }
  rc = r->nvrtcCompileProgram(prog, nopts, opts);
  if (rc != NVRTC_SUCCESS) {
    size_t ls = 0;
    char *log = NULL;
    if (r->nvrtcGetProgramLogSize(prog, &ls) == NVRTC_SUCCESS && ls > 0 &&
        (log = malloc(ls + 1)) && r->nvrtcGetProgramLog(prog, log) == NVRTC_SUCCESS)
      log[ls] = 0;
    else if (log)
      log[0] = 0;
    Buf b = {0};
    if (rc == NVRTC_ERROR_COMPILATION)
      buf_fmt(&b, "NVRTC %d.%d could not compile %s for %s:\n", r->major, r->minor, name,
              out->target);
    else
      buf_fmt(&b, "NVRTC %d.%d failed on %s for %s: %s\n", r->major, r->minor, name,
              out->target, r->nvrtcGetErrorString(rc));
    if (log) quote_log(&b, log, source, name);
    fail(err, n, "%s", b.p ? b.p : "NVRTC failed (and memory ran out writing its log)");
    if (err && n && b.p && b.len >= n && n > 4) memcpy(err + n - 4, "...", 4);
    free(b.p);
    free(log);
    free(path);
    r->nvrtcDestroyProgram(&prog);
    return 1;
  }
  size_t size = 0;
  unsigned char *cubin = NULL;
  rc = r->nvrtcGetCUBINSize(prog, &size);
  if (rc == NVRTC_SUCCESS && size > 0 && (cubin = malloc(size)))
    rc = r->nvrtcGetCUBIN(prog, (char *)cubin);
  r->nvrtcDestroyProgram(&prog);
  if (rc != NVRTC_SUCCESS || !cubin || !is_elf(cubin, size)) {
    free(cubin);
    free(path);
    if (rc != NVRTC_SUCCESS)
      return fail(err, n, "NVRTC gave no cubin for %s: %s", name, r->nvrtcGetErrorString(rc));
    return fail(err, n, "NVRTC gave no cubin for %s (%s)", name,
                size ? "out of memory" : "it was empty");
  }
  if (path) {
    char note[sizeof out->cache_note] = "";
    cache_write(r->cache_dir, path, key, cubin, size, note, sizeof note);
    if (note[0]) memcpy(out->cache_note, note, sizeof note);
  }
  free(path);
  out->data = cubin;
  out->size = size;
  out->ms = now_ms() - t0;
  return 0;
}

int mixc_nvrtc_compile(MixcNvrtc *r, const char *source, const char *name, int arch,
                       MixcCubin *out, char *err, size_t n) {
  return nvrtc_compile(r, source, name, arch, getenv("MIXC_NVRTC_OPT"), NULL, MODE_FULL, out,
                       err, n);
}

int mixc_nvrtc_lookup(MixcNvrtc *r, const char *source, const char *name, int arch,
                      MixcCubin *out, char *err, size_t n) {
  return nvrtc_compile(r, source, name, arch, getenv("MIXC_NVRTC_OPT"), NULL, MODE_LOOKUP, out,
                       err, n);
}

/* MIXC_NVRTC_FAST_OPT, else the default; "" when tiering has no fast option to use. */
static const char *fast_option(const MixcNvrtc *r) {
  const char *f = getenv("MIXC_NVRTC_FAST_OPT");
  if (f && *f) return f;
  /* -Ofc (--Ofast-compile) came with NVRTC 12.8 */
  return r->major > 12 || (r->major == 12 && r->minor >= 8) ? FAST_OPT_DEFAULT : "";
}

const char *mixc_nvrtc_fast_option(const MixcNvrtc *r) {
  const char *f = fast_option(r);
  const char *extra = getenv("MIXC_NVRTC_OPT");
  /* an -Ofc of one's own already asks for a fast compile: one tier is enough */
  if (!*f || (extra && strstr(extra, "-Ofc"))) return NULL;
  return f;
}

int mixc_nvrtc_compile_fast(MixcNvrtc *r, const char *source, const char *name, int arch,
                            MixcCubin *out, char *err, size_t n) {
  const char *f = mixc_nvrtc_fast_option(r);
  if (!f) {
    memset(out, 0, sizeof *out);
    return fail(err, n, "NVRTC %d.%d has no fast compile (-Ofc needs NVRTC 12.8 or newer)",
                r->major, r->minor);
  }
  return nvrtc_compile(r, source, name, arch, getenv("MIXC_NVRTC_OPT"), f, MODE_FAST, out, err,
                       n);
}

/* ---- a compile on a thread of its own ---------------------------------------------------- */

struct MixcNvrtcJob {
  pthread_t th;
  MixcNvrtc *r;
  char *source, *name, *extra; /* copies; extra is MIXC_NVRTC_OPT as read when it started */
  int arch;
  MixcNvrtcDoneFn done;
  void *arg;
};

/* NVRTC's front end and optimiser recurse deeply: a stack of its own size, not the
 * process's default (which may be small, or unlimited and then 2 MiB). */
enum { JOB_STACK = 16 << 20 };

static void *job_main(void *p) {
  MixcNvrtcJob *j = p;
  MixcCubin b;
  char err[8192] = "";
  int rc = nvrtc_compile(j->r, j->source, j->name, j->arch, j->extra, NULL, MODE_FULL, &b, err,
                         sizeof err);
  j->done(j->arg, rc ? NULL : &b, rc ? err : NULL);
  if (!rc) mixc_cubin_release(&b);
  return NULL;
}

static void job_free(MixcNvrtcJob *j) {
  free(j->source);
  free(j->name);
  free(j->extra);
  free(j);
}

int mixc_nvrtc_compile_async(MixcNvrtc *r, const char *source, const char *name, int arch,
                             MixcNvrtcDoneFn done, void *arg, MixcNvrtcJob **out, char *err,
                             size_t n) {
  *out = NULL;
  if (!source || !done) return fail(err, n, "no CUDA source or no callback for the compile");
  if (!name || !*name) name = "mixc_kernels.cu";
  const char *extra = getenv("MIXC_NVRTC_OPT");
  MixcNvrtcJob *j = calloc(1, sizeof *j);
  if (!j || !(j->source = dup_str(source)) || !(j->name = dup_str(name)) ||
      (extra && !(j->extra = dup_str(extra)))) {
    if (j) job_free(j);
    return fail(err, n, "out of memory");
  }
  j->r = r;
  j->arch = arch;
  j->done = done;
  j->arg = arg;
  pthread_attr_t at;
  int e = pthread_attr_init(&at);
  if (!e) {
    (void)pthread_attr_setstacksize(&at, JOB_STACK); /* else the default */
    e = pthread_create(&j->th, &at, job_main, j);
    pthread_attr_destroy(&at);
  }
  if (e) {
    job_free(j);
    return fail(err, n, "could not start a compile thread (%s)", strerror(e));
  }
  *out = j;
  return 0;
}

void mixc_nvrtc_job_join(MixcNvrtcJob *j) {
  if (!j) return;
  pthread_join(j->th, NULL);
  job_free(j);
}

/* ==== The driver ======================================================================== */

typedef struct CuApi {
  CUresult (*cuGetProcAddress)(const char *, void **, int, cuuint64_t, int *); /* _v2 */
  CUresult (*cuInit)(unsigned);
  CUresult (*cuGetErrorName)(CUresult, const char **);
  CUresult (*cuGetErrorString)(CUresult, const char **);
  CUresult (*cuDriverGetVersion)(int *);
  CUresult (*cuDeviceGetCount)(int *);
  CUresult (*cuDeviceGet)(CUdevice *, int);
  CUresult (*cuDeviceGetName)(char *, int, CUdevice);
  CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice);
  CUresult (*cuDeviceTotalMem)(size_t *, CUdevice);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
  CUresult (*cuDevicePrimaryCtxRelease)(CUdevice);
  CUresult (*cuCtxSetCurrent)(CUcontext);
  CUresult (*cuCtxSynchronize)(void);
  CUresult (*cuModuleLoadData)(CUmodule *, const void *);
  CUresult (*cuModuleUnload)(CUmodule);
  CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
  CUresult (*cuFuncGetAttribute)(int *, int, CUfunction);
  CUresult (*cuFuncSetAttribute)(CUfunction, int, int);
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, unsigned, CUstream, void **, void **);
  CUresult (*cuMemGetInfo)(size_t *, size_t *);
  CUresult (*cuMemAlloc)(CUdeviceptr *, size_t);
  CUresult (*cuMemFree)(CUdeviceptr);
  CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void *, size_t);
  CUresult (*cuMemcpyDtoH)(void *, CUdeviceptr, size_t);
  CUresult (*cuMemcpyDtoD)(CUdeviceptr, CUdeviceptr, size_t);
  CUresult (*cuMemsetD8)(CUdeviceptr, unsigned char, size_t);
  CUresult (*cuMemsetD32)(CUdeviceptr, unsigned int, size_t);
  CUresult (*cuStreamCreate)(CUstream *, unsigned);
  CUresult (*cuStreamSynchronize)(CUstream);
  CUresult (*cuStreamDestroy)(CUstream);
  CUresult (*cuEventCreate)(CUevent *, unsigned);
  CUresult (*cuEventRecord)(CUevent, CUstream);
  CUresult (*cuEventSynchronize)(CUevent);
  CUresult (*cuEventElapsedTime)(float *, CUevent, CUevent);
  CUresult (*cuEventDestroy)(CUevent);
} CuApi;

struct MixcCudaFunc {
  MixcCudaFunc *next;
  MixcCudaModule *module;
  CUfunction f;
  char *name;
  int num_regs, max_threads, static_smem;
  int dyn_smem_limit; /* the function's MAX_DYNAMIC_SHARED_SIZE_BYTES as last set */
};

struct MixcCudaModule {
  MixcCuda *c;
  CUmodule mod;
  MixcCudaFunc *funcs;
  MixcCudaModule *prev, *next;
};

struct MixcCuda {
  void *lib; /* libcuda.so.1 */
  CuApi api;
  MixcNvrtc *nvrtc;
  CUdevice dev;
  CUcontext ctx;
  int ctx_retained;
  MixcCudaInfo info;
  pthread_mutex_t mu; /* the module list, module loading, functions' launch settings */
  MixcCudaModule *modules;
};

/* "cuMemAlloc: CUDA_ERROR_X (its description)". */
static int cu_fail(const MixcCuda *c, CUresult rc, char *err, size_t n, const char *what) {
  const char *name = NULL, *desc = NULL;
  if (c->api.cuGetErrorName) c->api.cuGetErrorName(rc, &name);
  if (c->api.cuGetErrorString) c->api.cuGetErrorString(rc, &desc);
  if (name && desc) return fail(err, n, "%s failed: %s (%s)", what, name, desc);
  return fail(err, n, "%s failed: CUDA error %d", what, rc);
}

/* Makes the context current on this thread. */
static int enter(MixcCuda *c, char *err, size_t n) {
  CUresult rc = c->api.cuCtxSetCurrent(c->ctx);
  return rc == CUDA_SUCCESS ? 0 : cu_fail(c, rc, err, n, "making the CUDA context current");
}

/* Every entry point but cuGetProcAddress (dlsym'ed) and cuInit (fetched first), with the
 * symbol that the CUDA 12.0 request resolves to (cudaTypedefs.h's PFN_<name>_v<version>). */
static const struct {
  const char *name;
  size_t off;
} CU_SYMS[] = {
#define S(x) {#x, offsetof(CuApi, x)}
    S(cuDriverGetVersion),        /* v2020 */
    S(cuDeviceGetCount),          /* v2000 */
    S(cuDeviceGet),               /* v2000 */
    S(cuDeviceGetName),           /* v2000 */
    S(cuDeviceGetAttribute),      /* v2000 */
    S(cuDeviceTotalMem),          /* cuDeviceTotalMem_v2 (v3020: size_t) */
    S(cuDevicePrimaryCtxRetain),  /* v7000 */
    S(cuDevicePrimaryCtxRelease), /* cuDevicePrimaryCtxRelease_v2 (v11000) */
    S(cuCtxSetCurrent),           /* v4000 */
    S(cuCtxSynchronize),          /* v2000: no argument (v13000 takes a context) */
    S(cuModuleLoadData),          /* v2000 */
    S(cuModuleUnload),            /* v2000 */
    S(cuModuleGetFunction),       /* v2000 */
    S(cuFuncGetAttribute),        /* v2020 */
    S(cuFuncSetAttribute),        /* v9000 */
    S(cuLaunchKernel),            /* v4000, legacy default stream */
    S(cuMemGetInfo),              /* cuMemGetInfo_v2 (v3020) */
    S(cuMemAlloc),                /* cuMemAlloc_v2 (v3020) */
    S(cuMemFree),                 /* cuMemFree_v2 (v3020) */
    S(cuMemcpyHtoD),              /* cuMemcpyHtoD_v2 (v3020) */
    S(cuMemcpyDtoH),              /* cuMemcpyDtoH_v2 (v3020) */
    S(cuMemcpyDtoD),              /* cuMemcpyDtoD_v2 (v3020) */
    S(cuMemsetD8),                /* cuMemsetD8_v2 (v3020) */
    S(cuMemsetD32),               /* cuMemsetD32_v2 (v3020) */
    S(cuStreamCreate),            /* v2000 */
    S(cuStreamSynchronize),       /* v2000 */
    S(cuStreamDestroy),           /* cuStreamDestroy_v2 (v4000) */
    S(cuEventCreate),             /* v2000 */
    S(cuEventRecord),             /* v2000 */
    S(cuEventSynchronize),        /* v2000 */
    S(cuEventElapsedTime),        /* v2000 (same signature as v12080) */
    S(cuEventDestroy),            /* cuEventDestroy_v2 (v4000) */
#undef S
};

/* One entry point through cuGetProcAddress, asking for its CUDA 12.0 version. Returns 0, or
 * CU_GET_PROC_ADDRESS_* / -1 (the call failed). */
static int get_proc(MixcCuda *c, const char *name, void *slot) {
  void *p = NULL;
  int status = -1;
  CUresult rc = c->api.cuGetProcAddress(name, &p, MIXC_CUDA_API_VERSION,
                                        CU_GET_PROC_ADDRESS_LEGACY_STREAM, &status);
  if (rc != CUDA_SUCCESS || !p) return status > 0 ? status : -1;
  if (status != CU_GET_PROC_ADDRESS_SUCCESS) return status;
  set_fn(slot, p);
  return 0;
}

static void free_module(MixcCudaModule *m) {
  while (m->funcs) {
    MixcCudaFunc *f = m->funcs;
    m->funcs = f->next;
    free(f->name);
    free(f);
  }
  if (m->mod) m->c->api.cuModuleUnload(m->mod);
  free(m);
}

void mixc_cuda_close(MixcCuda *c) {
  if (!c) return;
  if (c->ctx) c->api.cuCtxSetCurrent(c->ctx);
  while (c->modules) {
    MixcCudaModule *m = c->modules;
    c->modules = m->next;
    free_module(m);
  }
  if (c->ctx_retained) {
    c->api.cuCtxSetCurrent(NULL);
    c->api.cuDevicePrimaryCtxRelease(c->dev);
  }
  pthread_mutex_destroy(&c->mu);
  mixc_nvrtc_close(c->nvrtc);
  if (c->lib) dlclose(c->lib); /* RTLD_NODELETE: the driver stays mapped */
  free(c);
}

static int dev_attr(MixcCuda *c, int attr, int *v, char *err, size_t n) {
  CUresult rc = c->api.cuDeviceGetAttribute(v, attr, c->dev);
  return rc == CUDA_SUCCESS ? 0 : cu_fail(c, rc, err, n, "cuDeviceGetAttribute");
}

int mixc_cuda_open(int device, MixcCuda **out, char *err, size_t n) {
  *out = NULL;
  MixcCuda *c = calloc(1, sizeof *c);
  if (!c) return fail(err, n, "out of memory");
  if (pthread_mutex_init(&c->mu, NULL) != 0) {
    free(c);
    return fail(err, n, "could not make a mutex");
  }
  /* The driver's own library. In containers the driver is often mounted at
   * /usr/local/nvidia/lib64 without being on the loader's path. */
  static const char *const libs[] = {"libcuda.so.1", "/usr/local/nvidia/lib64/libcuda.so.1",
                                     "/usr/lib/wsl/lib/libcuda.so.1"};
  char why[512] = "";
  for (size_t i = 0; i < sizeof libs / sizeof libs[0] && !c->lib; i++) {
    c->lib = dlopen(libs[i], MIXC_DLOPEN_FLAGS);
    if (!c->lib && i == 0) {
      const char *d = dlerror();
      if (d && !strstr(d, "No such file")) snprintf(why, sizeof why, "%s", d);
    }
  }
  int rcode = 0;
  CUresult rc;
  if (!c->lib) {
    if (why[0])
      rcode = fail(err, n,
                   "the CUDA driver library libcuda.so.1 is there but could not be loaded: %s",
                   why);
    else
      rcode = fail(err, n,
                   "no CUDA driver: libcuda.so.1 was not found (is this a machine with an "
                   "NVIDIA GPU and its driver?)");
    goto out;
  }
  set_fn(&c->api.cuGetProcAddress, dlsym(c->lib, "cuGetProcAddress_v2"));
  if (!c->api.cuGetProcAddress) {
    rcode = fail(err, n,
                 "the CUDA driver is too old: libcuda.so.1 has no cuGetProcAddress_v2; mixc "
                 "needs a driver for CUDA 12.0 or newer (R525 or later)");
    goto out;
  }
  get_proc(c, "cuGetErrorName", &c->api.cuGetErrorName);
  get_proc(c, "cuGetErrorString", &c->api.cuGetErrorString);
  if (get_proc(c, "cuInit", &c->api.cuInit) != 0)
    set_fn(&c->api.cuInit, dlsym(c->lib, "cuInit"));
  if (!c->api.cuInit) {
    rcode = fail(err, n, "the CUDA driver library libcuda.so.1 has no cuInit");
    goto out;
  }
  rc = c->api.cuInit(0);
  if (rc == CUDA_ERROR_NO_DEVICE) {
    rcode = fail(err, n, "the CUDA driver found no device");
    goto out;
  } else if (rc == CUDA_ERROR_STUB_LIBRARY) {
    rcode = fail(err, n,
                 "libcuda.so.1 is the CUDA toolkit's stub library, not a driver: take the "
                 "toolkit's lib64/stubs directory off LD_LIBRARY_PATH, or install the NVIDIA "
                 "driver");
    goto out;
  } else if (rc == CUDA_ERROR_SYSTEM_DRIVER_MISMATCH) {
    rcode = fail(err, n,
                 "the CUDA driver library libcuda.so.1 and the NVIDIA kernel module differ in "
                 "version (CUDA_ERROR_SYSTEM_DRIVER_MISMATCH): reinstall the driver or reboot");
    goto out;
  } else if (rc == CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE) {
    rcode = fail(err, n,
                 "the CUDA forward-compatibility driver in use does not support this GPU "
                 "(CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE): take the cuda-compat libraries "
                 "off LD_LIBRARY_PATH");
    goto out;
  } else if (rc != CUDA_SUCCESS) {
    rcode = cu_fail(c, rc, err, n, "starting the CUDA driver (cuInit)");
    goto out;
  }
  if (!c->api.cuGetErrorName) get_proc(c, "cuGetErrorName", &c->api.cuGetErrorName);
  if (!c->api.cuGetErrorString) get_proc(c, "cuGetErrorString", &c->api.cuGetErrorString);
  for (size_t i = 0; i < sizeof CU_SYMS / sizeof CU_SYMS[0]; i++) {
    int st = get_proc(c, CU_SYMS[i].name, (char *)&c->api + CU_SYMS[i].off);
    if (st != 0) {
      rcode = fail(err, n,
                   "the CUDA driver is too old or damaged: it has no %s for CUDA 12.0 "
                   "(cuGetProcAddress says %s); mixc needs a driver for CUDA 12.0 or newer",
                   CU_SYMS[i].name,
                   st == CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND        ? "symbol not found"
                   : st == CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT ? "version not sufficient"
                                                                      : "the lookup failed");
      goto out;
    }
  }
  MixcCudaInfo *in = &c->info;
  if ((rc = c->api.cuDriverGetVersion(&in->driver_version)) != CUDA_SUCCESS) {
    rcode = cu_fail(c, rc, err, n, "cuDriverGetVersion");
    goto out;
  }
  if (in->driver_version < 12000) {
    rcode = fail(err, n,
                 "the CUDA driver is too old: it supports CUDA %d.%d, mixc needs CUDA 12.0 or "
                 "newer (driver R525 or later)",
                 in->driver_version / 1000, in->driver_version % 1000 / 10);
    goto out;
  }
  int count = 0;
  if ((rc = c->api.cuDeviceGetCount(&count)) != CUDA_SUCCESS) {
    rcode = cu_fail(c, rc, err, n, "counting CUDA devices (cuDeviceGetCount)");
    goto out;
  }
  if (count <= 0) {
    rcode = fail(err, n, "the CUDA driver found no device");
    goto out;
  }
  if (device < 0 || device >= count) {
    rcode = fail(err, n, "CUDA device %d does not exist: the driver sees %d device%s (0 to %d)",
                 device, count, count == 1 ? "" : "s", count - 1);
    goto out;
  }
  if ((rc = c->api.cuDeviceGet(&c->dev, device)) != CUDA_SUCCESS) {
    rcode = cu_fail(c, rc, err, n, "cuDeviceGet");
    goto out;
  }
  in->ordinal = device;
  if ((rc = c->api.cuDeviceGetName(in->name, (int)sizeof in->name, c->dev)) != CUDA_SUCCESS) {
    rcode = cu_fail(c, rc, err, n, "cuDeviceGetName");
    goto out;
  }
  int major = 0, minor = 0;
  if (dev_attr(c, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, &major, err, n) ||
      dev_attr(c, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, &minor, err, n) ||
      dev_attr(c, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, &in->sm_count, err, n) ||
      dev_attr(c, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, &in->max_threads_per_block, err,
               n) ||
      dev_attr(c, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK, &in->max_smem_per_block,
               err, n) ||
      dev_attr(c, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
               &in->max_smem_per_block_optin, err, n) ||
      dev_attr(c, CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, &in->l2_bytes, err, n)) {
    rcode = 1;
    goto out;
  }
  in->arch = major * 10 + minor;
  mixc_cuda_target_name(in->arch, in->target, sizeof in->target);
  if ((rc = c->api.cuDeviceTotalMem(&in->total_mem, c->dev)) != CUDA_SUCCESS) {
    rcode = cu_fail(c, rc, err, n, "cuDeviceTotalMem");
    goto out;
  }
  if (mixc_nvrtc_open(in->driver_version / 1000, &c->nvrtc, err, n)) {
    rcode = 1;
    goto out;
  }
  mixc_nvrtc_version(c->nvrtc, &in->nvrtc_major, &in->nvrtc_minor);
  if ((rc = c->api.cuDevicePrimaryCtxRetain(&c->ctx, c->dev)) != CUDA_SUCCESS) {
    rcode = cu_fail(c, rc, err, n,
                    "taking the device's primary context (cuDevicePrimaryCtxRetain)");
    goto out;
  }
  c->ctx_retained = 1;
  if (enter(c, err, n)) {
    rcode = 1;
    goto out;
  }
out:
  if (rcode) {
    mixc_cuda_close(c);
    return 1;
  }
  *out = c;
  return 0;
}

const char *mixc_cuda_device_name(const MixcCuda *c) { return c->info.name; }
int mixc_cuda_arch(const MixcCuda *c) { return c->info.arch; }
const MixcCudaInfo *mixc_cuda_info(const MixcCuda *c) { return &c->info; }
MixcNvrtc *mixc_cuda_nvrtc(MixcCuda *c) { return c->nvrtc; }

/* ---- modules and functions ------------------------------------------------------------- */

int mixc_cuda_module_load(MixcCuda *c, const void *cubin, size_t size, MixcCudaModule **out,
                          char *err, size_t n) {
  *out = NULL;
  if (!cubin || !is_elf(cubin, size)) return fail(err, n, "the module to load is not a cubin");
  if (enter(c, err, n)) return 1;
  MixcCudaModule *m = calloc(1, sizeof *m);
  if (!m) return fail(err, n, "out of memory");
  m->c = c;
  pthread_mutex_lock(&c->mu);
  CUresult rc = c->api.cuModuleLoadData(&m->mod, cubin);
  if (rc == CUDA_SUCCESS) {
    m->next = c->modules;
    if (c->modules) c->modules->prev = m;
    c->modules = m;
  }
  pthread_mutex_unlock(&c->mu);
  if (rc == CUDA_SUCCESS) {
    *out = m;
    return 0;
  }
  free(m);
  if (rc == CUDA_ERROR_OUT_OF_MEMORY) return cu_fail(c, rc, err, n, "loading the module");
  if (rc == CUDA_ERROR_NO_BINARY_FOR_GPU || rc == CUDA_ERROR_INVALID_IMAGE ||
      rc == CUDA_ERROR_UNSUPPORTED_PTX_VERSION) {
    char what[512];
    snprintf(what, sizeof what,
             "the CUDA driver (CUDA %d.%d) could not load a cubin for %s built by NVRTC %d.%d%s",
             c->info.driver_version / 1000, c->info.driver_version % 1000 / 10, c->info.target,
             c->info.nvrtc_major, c->info.nvrtc_minor,
             c->info.nvrtc_major > c->info.driver_version / 1000
                 ? " (a driver at least as new as NVRTC's major version is needed: update the "
                   "driver, or install the NVRTC that matches it)"
                 : "");
    return cu_fail(c, rc, err, n, what);
  }
  return cu_fail(c, rc, err, n, "loading the module (cuModuleLoadData)");
}

int mixc_cuda_compile(MixcCuda *c, const char *source, const char *name, MixcCudaModule **out,
                      double *ms, int *cache_hit, char *err, size_t n) {
  *out = NULL;
  MixcCubin b;
  if (mixc_nvrtc_compile(c->nvrtc, source, name, c->info.arch, &b, err, n)) return 1;
  if (ms) *ms = b.ms;
  if (cache_hit) *cache_hit = b.cache_hit;
  int rc = mixc_cuda_module_load(c, b.data, b.size, out, err, n);
  mixc_cubin_release(&b);
  return rc;
}

void mixc_cuda_module_free(MixcCudaModule *m) {
  if (!m) return;
  MixcCuda *c = m->c;
  pthread_mutex_lock(&c->mu);
  if (m->prev)
    m->prev->next = m->next;
  else
    c->modules = m->next;
  if (m->next) m->next->prev = m->prev;
  pthread_mutex_unlock(&c->mu);
  c->api.cuCtxSetCurrent(c->ctx);
  free_module(m);
}

int mixc_cuda_function(MixcCudaModule *m, const char *kernel_name, MixcCudaFunc **fn, char *err,
                       size_t n) {
  *fn = NULL;
  MixcCuda *c = m->c;
  if (!kernel_name) return fail(err, n, "no kernel name");
  if (enter(c, err, n)) return 1;
  pthread_mutex_lock(&c->mu);
  MixcCudaFunc *f = m->funcs;
  while (f && strcmp(f->name, kernel_name) != 0) f = f->next;
  int rcode = 0;
  if (!f) {
    CUfunction h = NULL;
    CUresult rc = c->api.cuModuleGetFunction(&h, m->mod, kernel_name);
    if (rc == CUDA_ERROR_NOT_FOUND || rc == CUDA_ERROR_INVALID_VALUE) {
      rcode = fail(err, n,
                   "the module has no kernel named \"%s\" (kernels are looked up by symbol: "
                   "declare it extern \"C\" __global__)",
                   kernel_name);
    } else if (rc != CUDA_SUCCESS) {
      rcode = cu_fail(c, rc, err, n, "looking up the kernel (cuModuleGetFunction)");
    } else if (!(f = calloc(1, sizeof *f)) || !(f->name = dup_str(kernel_name))) {
      rcode = fail(err, n, "out of memory");
    } else {
      f->f = h;
      f->module = m;
      if ((rc = c->api.cuFuncGetAttribute(&f->num_regs, CU_FUNC_ATTRIBUTE_NUM_REGS, h)) ||
          (rc = c->api.cuFuncGetAttribute(&f->max_threads,
                                           CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, h)) ||
          (rc = c->api.cuFuncGetAttribute(&f->static_smem, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES,
                                          h)) ||
          (rc = c->api.cuFuncGetAttribute(&f->dyn_smem_limit,
                                          CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, h)))
        rcode = cu_fail(c, rc, err, n, "reading the kernel's attributes (cuFuncGetAttribute)");
      else {
        /* Whatever the driver reports, more than 48 KiB in all is set explicitly. */
        int plain = 48 * 1024 - f->static_smem;
        if (f->dyn_smem_limit > plain) f->dyn_smem_limit = plain > 0 ? plain : 0;
        f->next = m->funcs;
        m->funcs = f;
      }
    }
    if (rcode && f) {
      free(f->name);
      free(f);
      f = NULL;
    }
  }
  pthread_mutex_unlock(&c->mu);
  *fn = f;
  return rcode;
}

void *mixc_cuda_func_handle(const MixcCudaFunc *fn) { return fn->f; }
int mixc_cuda_func_num_regs(const MixcCudaFunc *fn) { return fn->num_regs; }
int mixc_cuda_func_max_threads(const MixcCudaFunc *fn) { return fn->max_threads; }

int mixc_cuda_launch(MixcCuda *c, MixcCudaFunc *fn, const unsigned grid[3],
                     const unsigned block[3], unsigned shared_bytes, void *stream, void **args,
                     char *err, size_t n) {
  if (!fn) return fail(err, n, "no kernel to launch");
  if (!grid[0] || !grid[1] || !grid[2] || !block[0] || !block[1] || !block[2])
    return fail(err, n, "kernel %s: a launch needs every grid and block size at least 1 "
                        "(grid %ux%ux%u, block %ux%ux%u)",
                fn->name, grid[0], grid[1], grid[2], block[0], block[1], block[2]);
  uint64_t threads = (uint64_t)block[0] * block[1] * block[2];
  if (threads > (uint64_t)fn->max_threads)
    return fail(err, n,
                "kernel %s: a block of %llu threads is more than the %d it can have (%d "
                "registers a thread)",
                fn->name, (unsigned long long)threads, fn->max_threads, fn->num_regs);
  uint64_t smem = (uint64_t)shared_bytes + (uint64_t)fn->static_smem;
  if (smem > (uint64_t)c->info.max_smem_per_block_optin)
    return fail(err, n,
                "kernel %s: %u bytes of dynamic shared memory (and %d static) are more than "
                "the %d a block can have on %s",
                fn->name, shared_bytes, fn->static_smem, c->info.max_smem_per_block_optin,
                c->info.name);
  if (enter(c, err, n)) return 1;
  CUresult rc = CUDA_SUCCESS;
  pthread_mutex_lock(&c->mu);
  if (shared_bytes > (unsigned)fn->dyn_smem_limit) {
    rc = c->api.cuFuncSetAttribute(fn->f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                   (int)shared_bytes);
    if (rc == CUDA_SUCCESS) fn->dyn_smem_limit = (int)shared_bytes;
  }
  pthread_mutex_unlock(&c->mu);
  if (rc != CUDA_SUCCESS) {
    char what[256];
    snprintf(what, sizeof what, "kernel %s: allowing %u bytes of dynamic shared memory",
             fn->name, shared_bytes);
    return cu_fail(c, rc, err, n, what);
  }
  rc = c->api.cuLaunchKernel(fn->f, grid[0], grid[1], grid[2], block[0], block[1], block[2],
                             shared_bytes, (CUstream)stream, args, NULL);
  if (rc == CUDA_SUCCESS) return 0;
  char what[256];
  if (rc == CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES)
    snprintf(what, sizeof what,
             "launching kernel %s (block %ux%ux%u at %d registers a thread, %u bytes of shared "
             "memory)",
             fn->name, block[0], block[1], block[2], fn->num_regs, shared_bytes);
  else
    snprintf(what, sizeof what, "launching kernel %s (grid %ux%ux%u, block %ux%ux%u)", fn->name,
             grid[0], grid[1], grid[2], block[0], block[1], block[2]);
  return cu_fail(c, rc, err, n, what);
}

/* ---- memory ------------------------------------------------------------------------------ */

int mixc_cuda_alloc(MixcCuda *c, size_t bytes, MixcDevPtr *out, char *err, size_t n) {
  *out = 0;
  if (bytes == 0) return 0;
  if (enter(c, err, n)) return 1;
  CUdeviceptr p = 0;
  CUresult rc = c->api.cuMemAlloc(&p, bytes);
  if (rc == CUDA_SUCCESS) {
    *out = p;
    return 0;
  }
  /* Out of memory; an absurd size may come back as an invalid value instead. */
  if (rc == CUDA_ERROR_OUT_OF_MEMORY ||
      (rc == CUDA_ERROR_INVALID_VALUE && bytes > c->info.total_mem)) {
    size_t fr = 0, total = 0;
    char a[64], f[64], t[64];
    fmt_mib(a, sizeof a, (double)bytes);
    if (c->api.cuMemGetInfo(&fr, &total) == CUDA_SUCCESS) {
      fmt_mib(f, sizeof f, (double)fr);
      fmt_mib(t, sizeof t, (double)total);
      return fail(err, n, "out of GPU memory: asked for %s, %s free of %s", a, f, t);
    }
    return fail(err, n, "out of GPU memory: asked for %s", a);
  }
  char what[128], a[64];
  fmt_mib(a, sizeof a, (double)bytes);
  snprintf(what, sizeof what, "allocating %s of GPU memory", a);
  return cu_fail(c, rc, err, n, what);
}

int mixc_cuda_free(MixcCuda *c, MixcDevPtr p, char *err, size_t n) {
  if (!p) return 0;
  if (enter(c, err, n)) return 1;
  CUresult rc = c->api.cuMemFree((CUdeviceptr)p);
  return rc == CUDA_SUCCESS ? 0 : cu_fail(c, rc, err, n, "freeing GPU memory (cuMemFree)");
}

static int copy_fail(MixcCuda *c, CUresult rc, const char *dir, size_t bytes, char *err,
                     size_t n) {
  char what[128], a[64];
  fmt_mib(a, sizeof a, (double)bytes);
  snprintf(what, sizeof what, "copying %s %s", a, dir);
  return cu_fail(c, rc, err, n, what);
}

int mixc_cuda_memcpy_htod(MixcCuda *c, MixcDevPtr dst, const void *src, size_t bytes, char *err,
                          size_t n) {
  if (!bytes) return 0;
  if (enter(c, err, n)) return 1;
  CUresult rc = c->api.cuMemcpyHtoD((CUdeviceptr)dst, src, bytes);
  return rc == CUDA_SUCCESS ? 0 : copy_fail(c, rc, "to the GPU", bytes, err, n);
}

int mixc_cuda_memcpy_dtoh(MixcCuda *c, void *dst, MixcDevPtr src, size_t bytes, char *err,
                          size_t n) {
  if (!bytes) return 0;
  if (enter(c, err, n)) return 1;
  CUresult rc = c->api.cuMemcpyDtoH(dst, (CUdeviceptr)src, bytes);
  return rc == CUDA_SUCCESS ? 0 : copy_fail(c, rc, "from the GPU", bytes, err, n);
}

int mixc_cuda_memcpy_dtod(MixcCuda *c, MixcDevPtr dst, MixcDevPtr src, size_t bytes, char *err,
                          size_t n) {
  if (!bytes) return 0;
  if (enter(c, err, n)) return 1;
  CUresult rc = c->api.cuMemcpyDtoD((CUdeviceptr)dst, (CUdeviceptr)src, bytes);
  return rc == CUDA_SUCCESS ? 0 : copy_fail(c, rc, "within the GPU", bytes, err, n);
}

int mixc_cuda_memset8(MixcCuda *c, MixcDevPtr dst, unsigned char value, size_t bytes, char *err,
                      size_t n) {
  if (!bytes) return 0;
  if (enter(c, err, n)) return 1;
  CUresult rc = c->api.cuMemsetD8((CUdeviceptr)dst, value, bytes);
  return rc == CUDA_SUCCESS ? 0 : cu_fail(c, rc, err, n, "setting GPU memory (cuMemsetD8)");
}

int mixc_cuda_memset32(MixcCuda *c, MixcDevPtr dst, uint32_t value, size_t count, char *err,
                       size_t n) {
  if (!count) return 0;
  if (enter(c, err, n)) return 1;
  CUresult rc = c->api.cuMemsetD32((CUdeviceptr)dst, value, count);
  return rc == CUDA_SUCCESS ? 0 : cu_fail(c, rc, err, n, "setting GPU memory (cuMemsetD32)");
}

int mixc_cuda_mem_info(MixcCuda *c, size_t *free_bytes, size_t *total_bytes, char *err,
                       size_t n) {
  if (enter(c, err, n)) return 1;
  size_t f = 0, t = 0;
  CUresult rc = c->api.cuMemGetInfo(&f, &t);
  if (rc != CUDA_SUCCESS) return cu_fail(c, rc, err, n, "cuMemGetInfo");
  if (free_bytes) *free_bytes = f;
  if (total_bytes) *total_bytes = t;
  return 0;
}

int mixc_cuda_synchronize(MixcCuda *c, char *err, size_t n) {
  if (enter(c, err, n)) return 1;
  CUresult rc = c->api.cuCtxSynchronize();
  return rc == CUDA_SUCCESS ? 0 : cu_fail(c, rc, err, n, "waiting for the GPU (cuCtxSynchronize)");
}

/* ---- streams and events ---------------------------------------------------------------- */

int mixc_cuda_stream_create(MixcCuda *c, void **stream, char *err, size_t n) {
  *stream = NULL;
  if (enter(c, err, n)) return 1;
  CUstream s = NULL;
  CUresult rc = c->api.cuStreamCreate(&s, CU_STREAM_DEFAULT);
  if (rc != CUDA_SUCCESS) return cu_fail(c, rc, err, n, "cuStreamCreate");
  *stream = s;
  return 0;
}

int mixc_cuda_stream_synchronize(MixcCuda *c, void *stream, char *err, size_t n) {
  if (enter(c, err, n)) return 1;
  CUresult rc = c->api.cuStreamSynchronize((CUstream)stream);
  return rc == CUDA_SUCCESS ? 0 : cu_fail(c, rc, err, n, "waiting for the stream");
}

void mixc_cuda_stream_destroy(MixcCuda *c, void *stream) {
  if (!stream) return;
  c->api.cuCtxSetCurrent(c->ctx);
  c->api.cuStreamDestroy((CUstream)stream);
}

int mixc_cuda_event_create(MixcCuda *c, MixcCudaEvent **ev, char *err, size_t n) {
  *ev = NULL;
  if (enter(c, err, n)) return 1;
  CUevent e = NULL;
  CUresult rc = c->api.cuEventCreate(&e, CU_EVENT_DEFAULT);
  if (rc != CUDA_SUCCESS) return cu_fail(c, rc, err, n, "cuEventCreate");
  *ev = (MixcCudaEvent *)e;
  return 0;
}

int mixc_cuda_event_record(MixcCuda *c, MixcCudaEvent *ev, void *stream, char *err, size_t n) {
  if (enter(c, err, n)) return 1;
  CUresult rc = c->api.cuEventRecord((CUevent)ev, (CUstream)stream);
  return rc == CUDA_SUCCESS ? 0 : cu_fail(c, rc, err, n, "cuEventRecord");
}

int mixc_cuda_event_elapsed(MixcCuda *c, MixcCudaEvent *start, MixcCudaEvent *end, float *ms,
                            char *err, size_t n) {
  *ms = 0;
  if (enter(c, err, n)) return 1;
  CUresult rc = c->api.cuEventSynchronize((CUevent)end);
  if (rc != CUDA_SUCCESS) return cu_fail(c, rc, err, n, "waiting for an event");
  rc = c->api.cuEventElapsedTime(ms, (CUevent)start, (CUevent)end);
  return rc == CUDA_SUCCESS ? 0 : cu_fail(c, rc, err, n, "cuEventElapsedTime");
}

void mixc_cuda_event_destroy(MixcCuda *c, MixcCudaEvent *ev) {
  if (!ev) return;
  c->api.cuCtxSetCurrent(c->ctx);
  c->api.cuEventDestroy((CUevent)ev);
}
