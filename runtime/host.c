#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* glibc's _SC_LEVEL*_CACHE_SIZE */
/* The host's caches (host.h). */
#include "host.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum { MAX_INDEX = 16 };
#define MAX_CACHE_BYTES ((int64_t)1 << 34) /* above this a reading is taken as bogus */

/* The first line of a sysfs file, without its newline; 0 on success. */
static int read_line(int index, const char *name, char *buf, size_t len) {
  char path[128];
  snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/%s", index, name);
  FILE *f = fopen(path, "r");
  if (!f) return 1;
  char *got = fgets(buf, (int)len, f);
  fclose(f);
  if (!got) return 1;
  buf[strcspn(buf, "\n")] = 0;
  return 0;
}

/* "32K", "1024K", "2M", "65536": bytes, or 0. */
static int64_t parse_size(const char *s) {
  int64_t v = 0;
  const char *p = s;
  for (; *p >= '0' && *p <= '9'; p++) {
    v = v * 10 + (*p - '0');
    if (v > MAX_CACHE_BYTES) return 0;
  }
  if (p == s) return 0;
  int64_t mul = *p == 'K' ? 1024 : *p == 'M' ? 1024 * 1024 : *p == 'G' ? 1024 * 1024 * 1024 : 1;
  if (mul != 1) p++;
  if (*p) return 0;
  v *= mul;
  return v > 0 && v <= MAX_CACHE_BYTES ? v : 0;
}

/* Logical CPUs in a hex mask such as "00000000,00000003": the set bits. */
static int count_cpus(const char *mask) {
  int n = 0;
  for (const char *p = mask; *p; p++) {
    int d = *p >= '0' && *p <= '9'   ? *p - '0'
            : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10
            : *p >= 'A' && *p <= 'F' ? *p - 'A' + 10
                                     : 0;
    for (; d; d >>= 1) n += d & 1;
  }
  return n;
}

static void from_sysfs(HostCaches *out) {
  for (int i = 0; i < MAX_INDEX; i++) {
    char level[32], type[32], size[64], map[512];
    if (read_line(i, "level", level, sizeof level) || read_line(i, "type", type, sizeof type) ||
        read_line(i, "size", size, sizeof size))
      continue;
    if (strcmp(type, "Data") && strcmp(type, "Unified")) continue;
    int64_t bytes = parse_size(size);
    if (!bytes) continue;
    if (!strcmp(level, "1")) {
      out->l1d = bytes;
    } else if (!strcmp(level, "2")) {
      out->l2 = bytes;
    } else if (!strcmp(level, "3")) {
      int n = read_line(i, "shared_cpu_map", map, sizeof map) ? 1 : count_cpus(map);
      out->l3 = bytes / (n > 0 ? n : 1);
    }
  }
}

static int64_t from_sysconf(int name) {
  long v = sysconf(name);
  return v > 0 && v <= MAX_CACHE_BYTES ? (int64_t)v : 0;
}

void host_caches(HostCaches *out) {
  memset(out, 0, sizeof *out);
  from_sysfs(out);
#ifdef _SC_LEVEL1_DCACHE_SIZE
  if (!out->l1d) out->l1d = from_sysconf(_SC_LEVEL1_DCACHE_SIZE);
#endif
#ifdef _SC_LEVEL2_CACHE_SIZE
  if (!out->l2) out->l2 = from_sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
#ifdef _SC_LEVEL3_CACHE_SIZE
  if (!out->l3) {
    /* the whole L3, shared: an even share per online CPU */
    int64_t l3 = from_sysconf(_SC_LEVEL3_CACHE_SIZE);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    out->l3 = l3 / (n > 0 ? n : 1);
  }
#endif
}
