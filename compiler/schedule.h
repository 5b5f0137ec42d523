/* The schedule heuristic: the chunk length of the chunk strategies and the value-tile split
 * of the work items, chosen from the transition class, the sizes and what the device wants
 * (docs/algorithms.md, "Schedule"). No measurement at run time: fixed rules, measured once
 * on the project's CPU (docs/benchmarks.md), scaled by the host's L2 where the caller knows
 * it (the runtime reads it once per context: runtime/host.h). */
#ifndef MIXC_SCHEDULE_H
#define MIXC_SCHEDULE_H
#include <stdint.h>

typedef enum SchedClass {
  SC_SCALAR,     /* identity and scalar decay (lower_chunk.c) */
  SC_DIAG,       /* per-channel (left diagonal) decay (lower_chunk.c) */
  SC_DELTA,      /* delta family with scalar or no decay (lower_chunk_dplr.c) */
  SC_DELTA_DIAG, /* delta family with per-row decays (KDA, RWKV7; lower_chunk_dplr.c) */
} SchedClass;

/* The L2 size (bytes per core) taken when the host's is unknown (0): the project's CPU's
 * (Zen 4: 1 MiB a core; lscpu's "2 MiB (2 instances)"). */
#define SCHED_DEFAULT_L2 ((int64_t)1 << 20)

/* The chunk's scratch budget in floats for an L2 of l2_bytes (<= 0: SCHED_DEFAULT_L2): half
 * of it, so the state, the chunk's keys, values and C x C matrices stay in L2 with room for
 * the inputs streaming through (512 KiB on the project's CPU). At least 16 Ki floats (64 KiB). */
int64_t sched_scratch_floats(int64_t l2_bytes);

/* The chunk length for a class, with `events` rank-one events per token (the delta family:
 * DeltaProduct has one per Householder step) and the state's rows x columns per work item
 * (R x VT), on a host with l2_bytes of L2 per core (0: unknown, SCHED_DEFAULT_L2).
 * requested > 0 wins. Otherwise the class's default (32 for identity and scalar decay, 16
 * for the others), halved while the buffers exceed sched_scratch_floats(l2_bytes), never
 * below 16: in [16, 32], and never longer on a smaller L2. */
int64_t sched_chunk_l2(SchedClass cls, int64_t requested, int64_t events, int64_t R, int64_t VT,
                       int64_t l2_bytes);
/* sched_chunk_l2 with the L2 unknown (SCHED_DEFAULT_L2). */
int64_t sched_chunk(SchedClass cls, int64_t requested, int64_t events, int64_t R, int64_t VT);

/* The value-tile width for a state with V columns: requested > 0 wins (clamped to V);
 * otherwise, when the device wants more work items (target) than there are (sequence, head)
 * pairs (bh; 0: unknown, taken as 1), V is cut into ceil(target / bh) tiles, each rounded up
 * to a multiple of 16 columns (one AVX-512 vector, two AVX ones) and at least 16 wide; else
 * V (no split). */
int64_t sched_vtile(int64_t V, int64_t bh, int64_t target, int64_t requested);

#endif
