/* The host CPU's data caches, read once per context (mixc_context_create) for the schedule
 * (compiler/schedule.h, KernelSpec.cache_*). No global state: the caller keeps the result. */
#ifndef MIXC_HOST_H
#define MIXC_HOST_H
#include <stdint.h>

typedef struct HostCaches {
  int64_t l1d; /* bytes of L1 data cache per core; 0: unknown */
  int64_t l2;  /* bytes of L2 per core (one instance); 0: unknown */
  int64_t l3;  /* bytes of L3 per logical CPU sharing it; 0: unknown */
} HostCaches;

/* Fill *out from /sys/devices/system/cpu/cpu0/cache/indexN (the kernel's view: level, type,
 * size, shared_cpu_map), else from sysconf(_SC_LEVEL*_CACHE_SIZE) where glibc has it; a level
 * that neither answers is 0 (the schedule then uses its default, schedule.h). sysfs comes
 * first because sysconf's answer comes from CPUID, which virtual machines may fake (this
 * project's VM: sysconf says 320 MiB of L3, the kernel 32 MiB). */
void host_caches(HostCaches *out);

#endif
