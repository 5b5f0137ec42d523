/* The schedule heuristic: the chunk length of the chunk strategies and the value-tile split
 * of the work items, chosen from the transition class, the sizes and what the device wants
 * (docs/algorithms.md, "Schedule"). No measurement at run time: fixed rules, measured once
 * on the project's CPU (docs/benchmarks.md). */
#ifndef MIXC_SCHEDULE_H
#define MIXC_SCHEDULE_H
#include <stdint.h>

typedef enum SchedClass {
  SC_SCALAR,     /* identity and scalar decay (lower_chunk.c) */
  SC_DIAG,       /* per-channel (left diagonal) decay (lower_chunk.c) */
  SC_DELTA,      /* delta family with scalar or no decay (lower_chunk_dplr.c) */
  SC_DELTA_DIAG, /* delta family with per-row decays (KDA, RWKV7; lower_chunk_dplr.c) */
} SchedClass;

/* The chunk length for a class, with `events` rank-one events per token (the delta family:
 * DeltaProduct has one per Householder step) and the state's rows x columns per work item
 * (R x VT). requested > 0 wins. */
int64_t sched_chunk(SchedClass cls, int64_t requested, int64_t events, int64_t R, int64_t VT);

/* The value-tile width for a state with V columns: requested > 0 wins (clamped to V);
 * otherwise, when the device wants more work items (target) than there are (sequence, head)
 * pairs (bh; 0: unknown, taken as 1), V is cut into ceil(target / bh) tiles, each rounded up
 * to a multiple of 16 columns (one AVX-512 vector, two AVX ones) and at least 16 wide; else
 * V (no split). */
int64_t sched_vtile(int64_t V, int64_t bh, int64_t target, int64_t requested);

#endif
