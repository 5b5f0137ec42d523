/* The CUDA loader (backends/cuda/cuda_loader.h).
 *
 * Without a GPU (any machine with NVRTC): NVRTC compiles a kernel to a CUBIN for sm_90a
 * (an ELF image for the CUDA machine), a syntax error comes back with the offending source
 * lines quoted, the disk cache answers a second compile (a hit, and faster), a corrupt or
 * truncated entry is rebuilt, a cache directory that cannot be made or written still
 * compiles, the key tells targets apart, several threads compile at once; the tiers: a
 * cache lookup that never compiles, the fast compile (-Ofc) that is never cached, the
 * optimised compile on a thread beside it (its callback, once; the cache holds it after the
 * join), a compile error on the thread, MIXC_NVRTC_FAST_OPT and MIXC_NVRTC_OPT; and, where
 * libcuda.so.1 cannot be loaded, mixc_cuda_open answers with the plain "no CUDA driver"
 * sentence.
 *
 * With a GPU: open device 0 (and a device that does not exist), compile and run saxpy, a
 * kernel with more than 48 KiB of dynamic shared memory, kernels from several threads at
 * once, on a stream; poison, copy and check memory; the plain out-of-memory message for a
 * 1 PiB allocation; plain errors for a missing kernel, too large a block or too much shared
 * memory; a launch timed with events.
 *
 * The cache lives in a fresh temporary XDG_CACHE_HOME, removed at the end.
 * MIXC_TEST_REQUIRE_GPU=1 turns "no GPU here" into a failure (for the GPU machine);
 * MIXC_TEST_SEED=<seed> replays the random inputs. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>

#ifndef MIXC_HAVE_CUDA
int main(void) {
  printf("test_cuda_loader: 0 passed, 0 failed, 1 skipped\n");
  return 0;
}
#else

#include <dirent.h>
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backends/cuda/cuda_loader.h"
#include "testlib.h"

static int g_passed, g_failed, g_skipped;

#include "check.h"

static void skip(const char *why) {
  g_skipped++;
  printf("skip: %s\n", why);
}

static uint64_t g_rng;
static float frand(void) { /* uniform in [-1, 1) */
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (float)((double)(g_rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* ---- files ----------------------------------------------------------------------------- */

static void remove_tree(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    if (d) {
      struct dirent *e;
      while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        remove_tree(sub);
      }
      closedir(d);
    }
    rmdir(path);
  } else {
    unlink(path);
  }
}

/* The one *.entry file of dir (path into out), and how many there are. */
static int find_entries(const char *dir, char *out, size_t n) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int k = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t l = strlen(e->d_name);
    if (l > 6 && !strcmp(e->d_name + l - 6, ".entry")) {
      k++;
      snprintf(out, n, "%s/%s", dir, e->d_name);
    }
  }
  closedir(d);
  return k;
}

static long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* ---- kernels --------------------------------------------------------------------------- */

static const char SAXPY[] =
    "extern \"C\" __global__ void saxpy(int n, float a, const float *x, float *y) {\n"
    "  int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
    "  if (i < n) y[i] = a * x[i] + y[i];\n"
    "}\n";

static const char REVERSE[] =
    "extern \"C\" __global__ void reverse_smem(const float *in, float *out, int m) {\n"
    "  extern __shared__ float s[];\n"
    "  const float *src = in + (size_t)blockIdx.x * m;\n"
    "  float *dst = out + (size_t)blockIdx.x * m;\n"
    "  for (int i = threadIdx.x; i < m; i += blockDim.x) s[i] = src[i];\n"
    "  __syncthreads();\n"
    "  for (int i = threadIdx.x; i < m; i += blockDim.x) dst[i] = s[m - 1 - i];\n"
    "}\n";

static const char BAD[] =
    "extern \"C\" __global__ void bad(float *x) {\n"
    "  int i = threadIdx.x;\n"
    "  x[i] = undefined_thing;\n"
    "  float y = x[i] * ;\n"
    "}\n";

/* ---- without a device: NVRTC and the cache --------------------------------------------- */

static int is_cubin(const MixcCubin *b) {
  /* ELF, 64-bit, and e_machine EM_CUDA (190): machine code for the GPU, not PTX text. */
  const unsigned char *p = b->data;
  return b->size > 64 && p[0] == 0x7f && p[1] == 'E' && p[2] == 'L' && p[3] == 'F' &&
         p[4] == 2 && (p[18] | p[19] << 8) == 190;
}

typedef struct {
  MixcNvrtc *r;
  int k;
  int rc;
  char err[2048];
  int ok;
} CompileJob;

static void *compile_job(void *arg) {
  CompileJob *j = arg;
  char src[512];
  snprintf(src, sizeof src,
           "extern \"C\" __global__ void add%d(float *x) { x[threadIdx.x] += %d.0f; }\n", j->k,
           j->k);
  MixcCubin b;
  j->rc = mixc_nvrtc_compile(j->r, src, "mixc_thread.cu", 90, &b, j->err, sizeof j->err);
  j->ok = j->rc == 0 && is_cubin(&b);
  mixc_cubin_release(&b);
  return NULL;
}

/* ---- tiers: the fast compile, the cache lookup, the compile on a thread -------------------- */

typedef struct {
  pthread_mutex_t mu;
  int calls;
  int ok, hit;
  unsigned char *data; /* taken from the callback's cubin */
  size_t size;
  char err[8192];
} DoneRec;

static void on_done(void *arg, MixcCubin *b, const char *err) {
  DoneRec *d = arg;
  pthread_mutex_lock(&d->mu);
  d->calls++;
  if (b) {
    d->ok = is_cubin(b);
    d->hit = b->cache_hit;
    d->size = b->size;
    free(d->data);
    d->data = b->data; /* the callback may take the bytes */
    b->data = NULL;
  } else {
    snprintf(d->err, sizeof d->err, "%s", err ? err : "(no message)");
  }
  pthread_mutex_unlock(&d->mu);
}

static void done_init(DoneRec *d) {
  memset(d, 0, sizeof *d);
  pthread_mutex_init(&d->mu, NULL);
}
static void done_free(DoneRec *d) {
  free(d->data);
  pthread_mutex_destroy(&d->mu);
}

static int count_entries(const char *dir) {
  char path[4096];
  return find_entries(dir, path, sizeof path);
}

/* No temporary files left behind in dir (".tmp-*"). */
static int count_tmp(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int k = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (!strncmp(e->d_name, ".tmp-", 5)) k++;
  closedir(d);
  return k;
}

static void test_tiers(MixcNvrtc *r, const char *tmp) {
  char err[8192], dir[4096];
  snprintf(dir, sizeof dir, "%s/tiers/mixc/cubin", tmp);
  CHECK(mixc_nvrtc_set_cache_dir(r, dir, err, sizeof err) == 0, "%s", err);
  int major = 0, minor = 0;
  mixc_nvrtc_version(r, &major, &minor);
  const char *fo = mixc_nvrtc_fast_option(r);
  if (major < 12 || (major == 12 && minor < 8)) {
    CHECK(fo == NULL, "NVRTC %d.%d has no -Ofc, yet the fast option is %s", major, minor, fo);
    skip("NVRTC older than 12.8: no fast tier");
    return;
  }
  CHECK(fo && !strcmp(fo, "-Ofc=max"), "fast option %s", fo ? fo : "(none)");

  /* A lookup in an empty cache misses, without compiling or writing anything. */
  MixcCubin b;
  int rc = mixc_nvrtc_lookup(r, REVERSE, "rev.cu", 90, &b, err, sizeof err);
  CHECK(rc == 0 && b.data == NULL && !b.cache_hit, "lookup in an empty cache: rc %d %s", rc, err);
  CHECK(count_entries(dir) == 0, "a lookup wrote an entry");

  /* The fast tier: a cubin, never written to the cache, never read from it. */
  MixcCubin fast;
  rc = mixc_nvrtc_compile_fast(r, REVERSE, "rev.cu", 90, &fast, err, sizeof err);
  CHECK(rc == 0 && is_cubin(&fast) && fast.fast && !fast.cache_hit,
        "fast compile: rc %d fast %d hit %d %s", rc, fast.fast, fast.cache_hit, err);
  CHECK(count_entries(dir) == 0, "the fast cubin was cached");
  rc = mixc_nvrtc_lookup(r, REVERSE, "rev.cu", 90, &b, err, sizeof err);
  CHECK(rc == 0 && b.data == NULL, "after the fast compile, the optimised key hits");
  mixc_cubin_release(&b);

  /* The optimised compile on a thread while the fast one runs here: the callback gets the
   * cubin once, and the cache holds it (and only it) afterwards. */
  DoneRec d;
  done_init(&d);
  MixcNvrtcJob *job = NULL;
  rc = mixc_nvrtc_compile_async(r, REVERSE, "rev.cu", 90, on_done, &d, &job, err, sizeof err);
  CHECK(rc == 0 && job, "async: %s", err);
  MixcCubin fast2;
  rc = mixc_nvrtc_compile_fast(r, REVERSE, "rev.cu", 90, &fast2, err, sizeof err);
  CHECK(rc == 0 && is_cubin(&fast2), "fast compile beside the thread: %s", err);
  mixc_nvrtc_job_join(job);
  CHECK(d.calls == 1 && d.ok && !d.hit && !d.err[0], "async result: calls %d ok %d hit %d %s",
        d.calls, d.ok, d.hit, d.err);
  CHECK(count_entries(dir) == 1 && count_tmp(dir) == 0, "%d entries, %d temporaries after the job",
        count_entries(dir), count_tmp(dir));
  rc = mixc_nvrtc_lookup(r, REVERSE, "rev.cu", 90, &b, err, sizeof err);
  CHECK(rc == 0 && b.data && b.cache_hit && b.size == d.size && d.data &&
            !memcmp(b.data, d.data, b.size),
        "the lookup after the job: rc %d hit %d", rc, b.cache_hit);
  /* ... and equals a plain (synchronous) compile, from the cache */
  MixcCubin full;
  rc = mixc_nvrtc_compile(r, REVERSE, "rev.cu", 90, &full, err, sizeof err);
  CHECK(rc == 0 && full.cache_hit && full.size == b.size && !memcmp(full.data, b.data, b.size),
        "mixc_nvrtc_compile after the job: rc %d hit %d", rc, full.cache_hit);
  printf("tiers: fast %.1f ms (%zu bytes), fast beside the optimised thread %.1f ms\n", fast.ms,
         fast.size, fast2.ms);
  mixc_cubin_release(&full);
  mixc_cubin_release(&b);
  mixc_cubin_release(&fast);
  mixc_cubin_release(&fast2);
  done_free(&d);

  /* A job joined at once (nothing waited for): its callback has run when the join returns. */
  done_init(&d);
  rc = mixc_nvrtc_compile_async(r, SAXPY, "saxpy_job.cu", 90, on_done, &d, &job, err, sizeof err);
  CHECK(rc == 0, "%s", err);
  if (!rc) mixc_nvrtc_job_join(job);
  CHECK(d.calls == 1 && d.ok, "joined at once: calls %d ok %d %s", d.calls, d.ok, d.err);
  done_free(&d);

  /* A compile error on the thread reaches the callback as the message. */
  done_init(&d);
  rc = mixc_nvrtc_compile_async(r, BAD, "mixc_bad.cu", 90, on_done, &d, &job, err, sizeof err);
  CHECK(rc == 0, "%s", err);
  if (!rc) mixc_nvrtc_job_join(job);
  CHECK(d.calls == 1 && !d.ok && !d.data && strstr(d.err, "could not compile mixc_bad.cu") &&
            strstr(d.err, "    3 |   x[i] = undefined_thing;"),
        "bad source on the thread: calls %d: %s", d.calls, d.err);
  done_free(&d);
  rc = mixc_nvrtc_compile_fast(r, BAD, "mixc_bad.cu", 90, &b, err, sizeof err);
  CHECK(rc == 1 && strstr(err, "could not compile mixc_bad.cu"), "bad source, fast: %s", err);

  /* MIXC_NVRTC_FAST_OPT picks the fast option; one NVRTC refuses is a plain error. */
  setenv("MIXC_NVRTC_FAST_OPT", "-Ofc=mid", 1);
  fo = mixc_nvrtc_fast_option(r);
  CHECK(fo && !strcmp(fo, "-Ofc=mid"), "MIXC_NVRTC_FAST_OPT: %s", fo ? fo : "(none)");
  rc = mixc_nvrtc_compile_fast(r, SAXPY, "saxpy.cu", 90, &b, err, sizeof err);
  CHECK(rc == 0 && is_cubin(&b), "-Ofc=mid: %s", err);
  mixc_cubin_release(&b);
  setenv("MIXC_NVRTC_FAST_OPT", "--no-such-option", 1);
  rc = mixc_nvrtc_compile_fast(r, SAXPY, "saxpy.cu", 90, &b, err, sizeof err);
  CHECK(rc == 1 && strstr(err, "NVRTC"), "a bad fast option: rc %d %s", rc, err);
  unsetenv("MIXC_NVRTC_FAST_OPT");
  /* MIXC_NVRTC_OPT with an -Ofc of its own: no second, fast tier */
  setenv("MIXC_NVRTC_OPT", "-Ofc=mid", 1);
  CHECK(mixc_nvrtc_fast_option(r) == NULL, "MIXC_NVRTC_OPT=-Ofc=mid still has a fast tier");
  rc = mixc_nvrtc_compile_fast(r, SAXPY, "saxpy.cu", 90, &b, err, sizeof err);
  CHECK(rc == 1 && strstr(err, "no fast compile"), "fast without a fast option: rc %d %s", rc, err);
  unsetenv("MIXC_NVRTC_OPT");
  /* the two optimised compiles that succeeded, and nothing of the fast ones */
  CHECK(count_entries(dir) == 2 && count_tmp(dir) == 0, "%d entries (expected 2), %d temporaries",
        count_entries(dir), count_tmp(dir));
}

static void test_nvrtc(const char *tmp) {
  char err[8192];
  char t[16];
  mixc_cuda_target_name(90, t, sizeof t);
  CHECK(!strcmp(t, "sm_90a"), "%s", t);
  mixc_cuda_target_name(86, t, sizeof t);
  CHECK(!strcmp(t, "sm_86"), "%s", t);

  MixcNvrtc *r = NULL;
  if (mixc_nvrtc_open(0, &r, err, sizeof err)) {
    CHECK(strstr(err, "NVRTC") != NULL, "%s", err);
    skip("NVRTC is not installed here: no compile tests");
    return;
  }
  int major = 0, minor = 0;
  mixc_nvrtc_version(r, &major, &minor);
  printf("NVRTC %d.%d from %s\n", major, minor, mixc_nvrtc_path(r));
  CHECK(major >= 12, "NVRTC %d.%d", major, minor);

  char cache[4096];
  snprintf(cache, sizeof cache, "%s/mixc/cubin", tmp);
  CHECK(mixc_nvrtc_cache_dir(r) && !strcmp(mixc_nvrtc_cache_dir(r), cache),
        "cache dir %s, expected %s", mixc_nvrtc_cache_dir(r) ? mixc_nvrtc_cache_dir(r) : "(none)",
        cache);

  /* A miss, then a hit. */
  MixcCubin a, b;
  int rc = mixc_nvrtc_compile(r, SAXPY, "saxpy.cu", 90, &a, err, sizeof err);
  CHECK(rc == 0, "%s", err);
  if (rc) {
    mixc_nvrtc_close(r);
    return;
  }
  CHECK(is_cubin(&a), "not a CUBIN (%zu bytes)", a.size);
  CHECK(!a.cache_hit, "a first compile in an empty cache was a hit");
  CHECK(!strcmp(a.target, "sm_90a"), "%s", a.target);
  CHECK(a.cache_note[0] == 0, "%s", a.cache_note);
  char entry[4096] = "";
  CHECK(find_entries(cache, entry, sizeof entry) == 1, "no single cache entry in %s", cache);
  rc = mixc_nvrtc_compile(r, SAXPY, "saxpy.cu", 90, &b, err, sizeof err);
  CHECK(rc == 0 && b.cache_hit, "second compile: rc %d hit %d %s", rc, b.cache_hit, err);
  CHECK(rc == 0 && b.size == a.size && !memcmp(a.data, b.data, a.size),
        "the cached cubin differs");
  CHECK(b.ms < a.ms, "hit %.3f ms, miss %.3f ms", b.ms, a.ms);
  printf("compile: %.1f ms by NVRTC, %.3f ms from the cache (%zu bytes)\n", a.ms, b.ms, a.size);
  mixc_cubin_release(&b);

  /* A corrupted entry (one byte of the cubin flipped) is rebuilt, then hits again. */
  FILE *f = fopen(entry, "r+b");
  CHECK(f != NULL, "%s", entry);
  if (f) {
    fseek(f, file_size(entry) - 17, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, file_size(entry) - 17, SEEK_SET);
    fputc(ch ^ 0x40, f);
    fclose(f);
  }
  rc = mixc_nvrtc_compile(r, SAXPY, "saxpy.cu", 90, &b, err, sizeof err);
  CHECK(rc == 0 && !b.cache_hit, "corrupt entry: rc %d hit %d %s", rc, b.cache_hit, err);
  CHECK(strstr(b.cache_note, "checksum") != NULL, "note: %s", b.cache_note);
  CHECK(rc == 0 && b.size == a.size && !memcmp(a.data, b.data, a.size), "rebuilt cubin differs");
  mixc_cubin_release(&b);
  rc = mixc_nvrtc_compile(r, SAXPY, "saxpy.cu", 90, &b, err, sizeof err);
  CHECK(rc == 0 && b.cache_hit, "after the rebuild: rc %d hit %d %s", rc, b.cache_hit, err);
  mixc_cubin_release(&b);

  /* A truncated entry, and one of garbage. */
  CHECK(truncate(entry, 30) == 0, "truncate %s", entry);
  rc = mixc_nvrtc_compile(r, SAXPY, "saxpy.cu", 90, &b, err, sizeof err);
  CHECK(rc == 0 && !b.cache_hit && strstr(b.cache_note, "truncated"),
        "truncated entry: rc %d hit %d note %s", rc, b.cache_hit, b.cache_note);
  mixc_cubin_release(&b);
  f = fopen(entry, "wb");
  if (f) {
    for (int i = 0; i < 200; i++) fputc(i * 7, f);
    fclose(f);
  }
  rc = mixc_nvrtc_compile(r, SAXPY, "saxpy.cu", 90, &b, err, sizeof err);
  CHECK(rc == 0 && !b.cache_hit && b.cache_note[0], "garbage entry: rc %d hit %d note %s", rc,
        b.cache_hit, b.cache_note);
  mixc_cubin_release(&b);
  rc = mixc_nvrtc_compile(r, SAXPY, "saxpy.cu", 90, &b, err, sizeof err);
  CHECK(rc == 0 && b.cache_hit, "after garbage: rc %d hit %d", rc, b.cache_hit);
  mixc_cubin_release(&b);

  /* The key holds the target (and the name): another arch is another entry. */
  rc = mixc_nvrtc_compile(r, SAXPY, "saxpy.cu", 80, &b, err, sizeof err);
  CHECK(rc == 0 && !b.cache_hit && !strcmp(b.target, "sm_80") && is_cubin(&b),
        "sm_80: rc %d hit %d %s %s", rc, b.cache_hit, b.target, err);
  mixc_cubin_release(&b);
  rc = mixc_nvrtc_compile(r, SAXPY, "other.cu", 90, &b, err, sizeof err);
  CHECK(rc == 0 && !b.cache_hit, "another name: rc %d hit %d", rc, b.cache_hit);
  mixc_cubin_release(&b);
  CHECK(find_entries(cache, entry, sizeof entry) == 3, "expected 3 entries");

  /* A cache directory that cannot be made (a file is in the way) still compiles. */
  char blocked[4096];
  snprintf(blocked, sizeof blocked, "%s/a_file", tmp);
  f = fopen(blocked, "w");
  if (f) fclose(f);
  strcat(blocked, "/mixc/cubin");
  CHECK(mixc_nvrtc_set_cache_dir(r, blocked, err, sizeof err) == 0, "%s", err);
  rc = mixc_nvrtc_compile(r, SAXPY, "saxpy.cu", 90, &b, err, sizeof err);
  CHECK(rc == 0 && !b.cache_hit && is_cubin(&b), "blocked cache: rc %d %s", rc, err);
  CHECK(strstr(b.cache_note, "could not be made") != NULL, "note: %s", b.cache_note);
  mixc_cubin_release(&b);
  /* ... and a read-only one (when not root, for whom nothing is read-only). */
  if (geteuid() != 0) {
    char ro[4096];
    snprintf(ro, sizeof ro, "%s/readonly", tmp);
    mkdir(ro, 0500);
    CHECK(mixc_nvrtc_set_cache_dir(r, ro, err, sizeof err) == 0, "%s", err);
    rc = mixc_nvrtc_compile(r, SAXPY, "saxpy.cu", 90, &b, err, sizeof err);
    CHECK(rc == 0 && !b.cache_hit && strstr(b.cache_note, "not writable"),
          "read-only cache: rc %d note %s", rc, b.cache_note);
    mixc_cubin_release(&b);
    chmod(ro, 0700);
  } else {
    skip("read-only cache directory (running as root)");
  }
  /* No cache at all. */
  CHECK(mixc_nvrtc_set_cache_dir(r, NULL, err, sizeof err) == 0, "%s", err);
  CHECK(mixc_nvrtc_cache_dir(r) == NULL, "cache still on");
  rc = mixc_nvrtc_compile(r, SAXPY, "saxpy.cu", 90, &b, err, sizeof err);
  CHECK(rc == 0 && !b.cache_hit && !b.cache_note[0], "no cache: rc %d %s", rc, b.cache_note);
  mixc_cubin_release(&b);
  CHECK(mixc_nvrtc_set_cache_dir(r, cache, err, sizeof err) == 0, "%s", err);

  /* A syntax error: the log, with each error's source line quoted under it. */
  rc = mixc_nvrtc_compile(r, BAD, "mixc_bad.cu", 90, &b, err, sizeof err);
  CHECK(rc == 1, "a bad kernel compiled");
  CHECK(strstr(err, "could not compile mixc_bad.cu for sm_90a") != NULL, "%s", err);
  CHECK(strstr(err, "mixc_bad.cu(3): error") && strstr(err, "mixc_bad.cu(4): error"), "%s", err);
  CHECK(strstr(err, "\n    3 |   x[i] = undefined_thing;\n"), "line 3 not quoted:\n%s", err);
  CHECK(strstr(err, "\n    4 |   float y = x[i] * ;\n"), "line 4 not quoted:\n%s", err);
  CHECK(strstr(err, "\n                 ^\n"), "no caret under undefined_thing:\n%s", err);
  printf("a syntax error reads:\n%s", err);

  /* A target this NVRTC does not know. */
  rc = mixc_nvrtc_compile(r, SAXPY, "saxpy.cu", 35, &b, err, sizeof err);
  CHECK(rc == 1 && strstr(err, "sm_35"), "sm_35: rc %d %s", rc, err);

  /* Several threads at once, through one cache. */
  enum { NT = 4 };
  CompileJob jobs[NT];
  pthread_t th[NT];
  for (int i = 0; i < NT; i++) {
    memset(&jobs[i], 0, sizeof jobs[i]);
    jobs[i].r = r;
    jobs[i].k = i + 1;
    pthread_create(&th[i], NULL, compile_job, &jobs[i]);
  }
  for (int i = 0; i < NT; i++) {
    pthread_join(th[i], NULL);
    CHECK(jobs[i].ok, "thread %d: %s", i, jobs[i].err);
  }

  test_tiers(r, tmp);

  mixc_cubin_release(&a);
  mixc_nvrtc_close(r);
}

/* ---- with a device ----------------------------------------------------------------------- */

#define GPU_OK(call)                                                                      \
  do {                                                                                    \
    int rc_ = (call);                                                                     \
    CHECK(rc_ == 0, "%s: %s", #call, err);                                                \
    if (rc_) goto done;                                                                   \
  } while (0)

typedef struct {
  MixcCuda *c;
  int k;
  int ok;
  char err[2048];
} GpuJob;

/* Compiles, loads and runs "x += k" from its own thread. */
static void *gpu_job(void *arg) {
  GpuJob *j = arg;
  char src[512];
  snprintf(src, sizeof src,
           "extern \"C\" __global__ void addk%d(float *x, int n) {\n"
           "  int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
           "  if (i < n) x[i] += %d.0f;\n"
           "}\n",
           j->k, j->k);
  char name[32];
  snprintf(name, sizeof name, "addk%d", j->k);
  enum { N = 4096 };
  float h[N];
  for (int i = 0; i < N; i++) h[i] = (float)i;
  MixcCudaModule *m = NULL;
  MixcCudaFunc *f = NULL;
  MixcDevPtr d = 0;
  int n = N;
  void *args[] = {&d, &n};
  unsigned grid[3] = {N / 128, 1, 1}, block[3] = {128, 1, 1};
  j->ok = !mixc_cuda_compile(j->c, src, "mixc_thread.cu", &m, NULL, NULL, j->err, sizeof j->err) &&
          !mixc_cuda_function(m, name, &f, j->err, sizeof j->err) &&
          !mixc_cuda_alloc(j->c, sizeof h, &d, j->err, sizeof j->err) &&
          !mixc_cuda_memcpy_htod(j->c, d, h, sizeof h, j->err, sizeof j->err) &&
          !mixc_cuda_launch(j->c, f, grid, block, 0, NULL, args, j->err, sizeof j->err) &&
          !mixc_cuda_memcpy_dtoh(j->c, h, d, sizeof h, j->err, sizeof j->err);
  for (int i = 0; j->ok && i < N; i++)
    if (h[i] != (float)(i + j->k)) {
      snprintf(j->err, sizeof j->err, "x[%d] = %g, expected %d", i, h[i], i + j->k);
      j->ok = 0;
    }
  mixc_cuda_free(j->c, d, NULL, 0);
  mixc_cuda_module_free(m);
  return NULL;
}

static void test_gpu(MixcCuda *c) {
  char err[8192];
  const MixcCudaInfo *in = mixc_cuda_info(c);
  printf("device %d: %s, sm_%d (%s), %d SMs, %.1f GiB, %d KiB shared a block (opt-in), "
         "driver CUDA %d.%d, NVRTC %d.%d\n",
         in->ordinal, mixc_cuda_device_name(c), mixc_cuda_arch(c), in->target, in->sm_count,
         (double)in->total_mem / (1 << 30), in->max_smem_per_block_optin / 1024,
         in->driver_version / 1000, in->driver_version % 1000 / 10, in->nvrtc_major,
         in->nvrtc_minor);
  CHECK(in->name[0] && in->arch >= 50 && in->sm_count > 0 && in->total_mem > 0, "info");
  CHECK(in->max_smem_per_block_optin >= in->max_smem_per_block, "smem");

  MixcCudaModule *ms = NULL, *mr = NULL, *m2 = NULL;
  MixcCudaFunc *saxpy = NULL, *rev = NULL, *none = NULL;
  MixcDevPtr dx = 0, dy = 0, din = 0, dout = 0, huge = 0;
  MixcCudaEvent *e0 = NULL, *e1 = NULL;
  void *stream = NULL;
  float *hx = NULL, *hy = NULL, *hr = NULL;

  /* saxpy: a miss, then a hit, then the run. */
  double ms_miss = 0, ms_hit = 0;
  int hit = -1;
  GPU_OK(mixc_cuda_compile(c, SAXPY, "saxpy_gpu.cu", &ms, &ms_miss, &hit, err, sizeof err));
  CHECK(hit == 0, "first compile was a hit");
  GPU_OK(mixc_cuda_compile(c, SAXPY, "saxpy_gpu.cu", &m2, &ms_hit, &hit, err, sizeof err));
  CHECK(hit == 1 && ms_hit < ms_miss, "hit %d, %.3f ms vs %.3f ms", hit, ms_hit, ms_miss);
  mixc_cuda_module_free(m2);
  m2 = NULL;
  GPU_OK(mixc_cuda_function(ms, "saxpy", &saxpy, err, sizeof err));
  printf("saxpy: %d registers, up to %d threads a block\n", mixc_cuda_func_num_regs(saxpy),
         mixc_cuda_func_max_threads(saxpy));
  CHECK(mixc_cuda_func_handle(saxpy) != NULL, "no CUfunction");
  CHECK(mixc_cuda_function(ms, "saxpy_nope", &none, err, sizeof err) == 1 &&
            strstr(err, "no kernel named \"saxpy_nope\""),
        "missing kernel: %s", err);

  const int n = (1 << 24) + 3; /* 64 MiB a vector, and a partial last block */
  const size_t bytes = (size_t)n * sizeof(float);
  hx = malloc(bytes);
  hy = malloc(bytes);
  hr = malloc(bytes);
  CHECK(hx && hy && hr, "host memory");
  if (!hx || !hy || !hr) goto done;
  for (int i = 0; i < n; i++) {
    hx[i] = frand();
    hy[i] = frand();
  }
  float a = 1.0f + frand();
  GPU_OK(mixc_cuda_alloc(c, bytes, &dx, err, sizeof err));
  GPU_OK(mixc_cuda_alloc(c, bytes, &dy, err, sizeof err));
  GPU_OK(mixc_cuda_memcpy_htod(c, dx, hx, bytes, err, sizeof err));
  GPU_OK(mixc_cuda_memcpy_htod(c, dy, hy, bytes, err, sizeof err));
  {
    int nn = n;
    void *args[] = {&nn, &a, &dx, &dy};
    unsigned grid[3] = {(unsigned)((n + 255) / 256), 1, 1}, block[3] = {256, 1, 1};
    GPU_OK(mixc_cuda_launch(c, saxpy, grid, block, 0, NULL, args, err, sizeof err));
    GPU_OK(mixc_cuda_synchronize(c, err, sizeof err));
    GPU_OK(mixc_cuda_memcpy_dtoh(c, hr, dy, bytes, err, sizeof err));
    int bad = 0;
    for (int i = 0; i < n; i++) {
      double ref = (double)a * hx[i] + hy[i];
      if (!(fabs(hr[i] - ref) <= 1e-6 * (1.0 + fabs(ref)))) {
        if (bad++ < 3) fprintf(stderr, "saxpy[%d] = %.9g, expected %.9g\n", i, hr[i], ref);
      }
    }
    CHECK(bad == 0, "saxpy: %d wrong", bad);

    /* Too large a block, and no block at all: plain errors before the driver sees them. */
    unsigned big[3] = {2048, 1, 1}, zero[3] = {0, 1, 1};
    CHECK(mixc_cuda_launch(c, saxpy, grid, big, 0, NULL, args, err, sizeof err) == 1 &&
              strstr(err, "2048 threads"),
          "block of 2048: %s", err);
    CHECK(mixc_cuda_launch(c, saxpy, zero, block, 0, NULL, args, err, sizeof err) == 1,
          "empty grid launched");

    /* Timed with events: 20 launches after a warm-up, on a stream. */
    GPU_OK(mixc_cuda_stream_create(c, &stream, err, sizeof err));
    GPU_OK(mixc_cuda_event_create(c, &e0, err, sizeof err));
    GPU_OK(mixc_cuda_event_create(c, &e1, err, sizeof err));
    GPU_OK(mixc_cuda_launch(c, saxpy, grid, block, 0, stream, args, err, sizeof err));
    GPU_OK(mixc_cuda_event_record(c, e0, stream, err, sizeof err));
    for (int k = 0; k < 20; k++)
      GPU_OK(mixc_cuda_launch(c, saxpy, grid, block, 0, stream, args, err, sizeof err));
    GPU_OK(mixc_cuda_event_record(c, e1, stream, err, sizeof err));
    float t = 0;
    GPU_OK(mixc_cuda_event_elapsed(c, e0, e1, &t, err, sizeof err));
    GPU_OK(mixc_cuda_stream_synchronize(c, stream, err, sizeof err));
    CHECK(t > 0, "elapsed %g ms", t);
    printf("saxpy of %d floats: %.1f us a launch, %.0f GB/s (12 bytes an element)\n", n,
           t * 1e3 / 20, 12.0 * n * 20 / (t * 1e-3) / 1e9);
  }

  /* Poison (memset32 NaN), copy device to device, memset8. */
  {
    GPU_OK(mixc_cuda_memset32(c, dy, 0x7fc00000u, (size_t)n, err, sizeof err));
    GPU_OK(mixc_cuda_memcpy_dtoh(c, hr, dy, bytes, err, sizeof err));
    int nans = 0;
    for (int i = 0; i < n; i++) nans += isnan(hr[i]) != 0;
    CHECK(nans == n, "memset32: %d of %d NaN", nans, n);
    GPU_OK(mixc_cuda_memcpy_dtod(c, dy, dx, bytes, err, sizeof err));
    GPU_OK(mixc_cuda_memcpy_dtoh(c, hr, dy, bytes, err, sizeof err));
    CHECK(!memcmp(hr, hx, bytes), "dtod copy differs");
    GPU_OK(mixc_cuda_memset8(c, dy, 0, bytes, err, sizeof err));
    GPU_OK(mixc_cuda_memcpy_dtoh(c, hr, dy, 16, err, sizeof err));
    CHECK(hr[0] == 0 && hr[3] == 0, "memset8");
  }

  /* More than 48 KiB of dynamic shared memory. */
  {
    int limit = in->max_smem_per_block_optin;
    if (limit <= 48 * 1024) {
      skip("this GPU allows no more than 48 KiB of shared memory a block");
    } else {
      GPU_OK(mixc_cuda_compile(c, REVERSE, "reverse.cu", &mr, NULL, NULL, err, sizeof err));
      GPU_OK(mixc_cuda_function(mr, "reverse_smem", &rev, err, sizeof err));
      unsigned smem = (unsigned)(limit < 200 * 1024 ? limit : 200 * 1024) & ~15u;
      int m = (int)(smem / sizeof(float));
      unsigned blocks = (unsigned)in->sm_count * 2;
      size_t rb = (size_t)m * blocks * sizeof(float);
      float *h = malloc(rb), *o = malloc(rb);
      CHECK(h && o, "host memory");
      if (h && o) {
        for (size_t i = 0; i < (size_t)m * blocks; i++) h[i] = frand();
        GPU_OK(mixc_cuda_alloc(c, rb, &din, err, sizeof err));
        GPU_OK(mixc_cuda_alloc(c, rb, &dout, err, sizeof err));
        GPU_OK(mixc_cuda_memcpy_htod(c, din, h, rb, err, sizeof err));
        GPU_OK(mixc_cuda_memset32(c, dout, 0x7fc00000u, rb / 4, err, sizeof err));
        void *args[] = {&din, &dout, &m};
        unsigned grid[3] = {blocks, 1, 1}, block[3] = {512, 1, 1};
        int rc = mixc_cuda_launch(c, rev, grid, block, smem, NULL, args, err, sizeof err);
        CHECK(rc == 0, "%u bytes of shared memory: %s", smem, err);
        if (!rc) rc = mixc_cuda_synchronize(c, err, sizeof err);
        CHECK(rc == 0, "%s", err);
        if (!rc) rc = mixc_cuda_memcpy_dtoh(c, o, dout, rb, err, sizeof err);
        int bad = 0;
        for (unsigned bi = 0; !rc && bi < blocks; bi++)
          for (int i = 0; i < m; i++)
            bad += !(o[(size_t)bi * m + i] == h[(size_t)bi * m + (m - 1 - i)]);
        CHECK(!rc && bad == 0, "reverse with %u bytes of shared memory: %d wrong", smem, bad);
        printf("a block with %u KiB of dynamic shared memory ran\n", smem / 1024);
        CHECK(mixc_cuda_launch(c, rev, grid, block, (unsigned)limit + 1024, NULL, args, err,
                               sizeof err) == 1 &&
                  strstr(err, "shared memory"),
              "too much shared memory: %s", err);
      }
      free(h);
      free(o);
    }
  }

  /* Out of memory, said plainly. */
  CHECK(mixc_cuda_alloc(c, (size_t)1 << 50, &huge, err, sizeof err) == 1 &&
            !strncmp(err, "out of GPU memory: asked for 1073741824 MiB, ", 45) &&
            strstr(err, "MiB free of"),
        "1 PiB: %s", err);
  printf("1 PiB: %s\n", err);

  /* A compile error through the device path. */
  CHECK(mixc_cuda_compile(c, BAD, "mixc_bad.cu", &m2, NULL, NULL, err, sizeof err) == 1 &&
            strstr(err, "    3 |   x[i] = undefined_thing;"),
        "%s", err);

  /* Several threads compiling, loading and launching at once. */
  {
    enum { NT = 4 };
    GpuJob jobs[NT];
    pthread_t th[NT];
    for (int i = 0; i < NT; i++) {
      memset(&jobs[i], 0, sizeof jobs[i]);
      jobs[i].c = c;
      jobs[i].k = i + 1;
      pthread_create(&th[i], NULL, gpu_job, &jobs[i]);
    }
    for (int i = 0; i < NT; i++) {
      pthread_join(th[i], NULL);
      CHECK(jobs[i].ok, "thread %d: %s", i, jobs[i].err);
    }
  }
  GPU_OK(mixc_cuda_synchronize(c, err, sizeof err));
  /* A module left loaded: mixc_cuda_close frees it. */
  GPU_OK(mixc_cuda_compile(c, SAXPY, "saxpy_gpu.cu", &m2, NULL, &hit, err, sizeof err));
  CHECK(hit == 1, "saxpy again was not a cache hit");

done:
  mixc_cuda_event_destroy(c, e0);
  mixc_cuda_event_destroy(c, e1);
  mixc_cuda_stream_destroy(c, stream);
  mixc_cuda_free(c, dx, NULL, 0);
  mixc_cuda_free(c, dy, NULL, 0);
  mixc_cuda_free(c, din, NULL, 0);
  mixc_cuda_free(c, dout, NULL, 0);
  mixc_cuda_module_free(ms);
  mixc_cuda_module_free(mr);
  /* m2 is left for mixc_cuda_close. */
  free(hx);
  free(hy);
  free(hr);
}

static void test_driver(void) {
  char err[2048];
  int require = getenv("MIXC_TEST_REQUIRE_GPU") && atoi(getenv("MIXC_TEST_REQUIRE_GPU"));
  /* Like the loader: RTLD_NODELETE, never unmapping a driver. */
  void *probe = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  MixcCuda *c = NULL;
  int rc = mixc_cuda_open(0, &c, err, sizeof err);
  if (!probe) {
    /* No driver on this machine: the plain sentence, nothing else. */
    CHECK(rc == 1 && !strcmp(err, "no CUDA driver: libcuda.so.1 was not found (is this a "
                                  "machine with an NVIDIA GPU and its driver?)"),
          "rc %d: %s", rc, err);
    printf("without a driver: %s\n", err);
  }
  if (probe) dlclose(probe);
  if (rc) {
    CHECK(!require, "MIXC_TEST_REQUIRE_GPU is set but: %s", err);
    skip("no GPU: the device tests");
    return;
  }
  MixcCuda *bad = NULL;
  CHECK(mixc_cuda_open(99, &bad, err, sizeof err) == 1 &&
            strstr(err, "CUDA device 99 does not exist"),
        "device 99: %s", err);
  test_gpu(c);
  mixc_cuda_close(c);
}

int main(int argc, char **argv) {
  uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : test_seed();
  g_rng = seed | 1;
  printf("test_cuda_loader: seed %llu\n", (unsigned long long)seed);
  char tmp[] = "/tmp/mixc-cuda-test-XXXXXX";
  if (!mkdtemp(tmp)) {
    perror("mkdtemp");
    return 1;
  }
  setenv("XDG_CACHE_HOME", tmp, 1);
  test_nvrtc(tmp);
  test_driver();
  remove_tree(tmp);
  printf("test_cuda_loader: %d passed, %d failed, %d skipped\n", g_passed, g_failed, g_skipped);
  return g_failed ? 1 : 0;
}
#endif
