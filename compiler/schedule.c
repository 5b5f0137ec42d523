/* The schedule heuristic (schedule.h). */
#include "schedule.h"

/* Scratch budget per work item for the chunk's buffers: half the core's L2, so that the
 * state, the chunk's keys, values and C x C matrices stay in L2 with room for the inputs
 * streaming through. On the project's CPU (1 MiB a core) that is 512 KiB, 128 Ki floats, the
 * fixed budget this replaced; at K = V = 128 every default below fits it. */
int64_t sched_scratch_floats(int64_t l2_bytes) {
  if (l2_bytes <= 0) l2_bytes = SCHED_DEFAULT_L2;
  if (l2_bytes > ((int64_t)1 << 34)) l2_bytes = (int64_t)1 << 34;
  int64_t f = l2_bytes / 2 / (int64_t)sizeof(float);
  return f < 16 * 1024 ? 16 * 1024 : f;
}

int64_t sched_chunk(SchedClass cls, int64_t requested, int64_t events, int64_t R, int64_t VT) {
  return sched_chunk_l2(cls, requested, events, R, VT, 0);
}

int64_t sched_chunk_l2(SchedClass cls, int64_t requested, int64_t events, int64_t R, int64_t VT,
                       int64_t l2_bytes) {
  if (requested > 0) return requested;
  int64_t budget = sched_scratch_floats(l2_bytes);
  /* Measured at K = V = 128, T = 4096 on the 2-core Zen 4 (docs/benchmarks.md):
   * diagonal decay 16 (its element-wise diagonal blocks grow with C: GLA 19.7 ms at 16,
   * 29.7 at 64), identity and scalar decay 32 (Mamba2 9.3 against 12.0 at 64); the delta
   * family 16, with matrix products (Gated DeltaNet, one thread: 26.2-26.9 ms at 16,
   * 27.2-28.0 at 32, 30.6-30.7 at 64: its C x C products and solve shrink with C, the three
   * K x V products per token do not) and with per-row decays (element-wise exponentials per
   * pair of events). DeltaProduct's several events per token make its C x C matrices
   * (C events)^2: 16 is the floor. */
  int64_t c = cls == SC_SCALAR ? 32 : 16;
  if (events < 1) events = 1;
  /* Shrink while the chunk's buffers (~ C (3 R + 3 VT) + 2 (C events)^2 floats, the state
   * apart) overflow the budget; never below 16. */
  while (c > 16) {
    int64_t n = c * events;
    int64_t need = R * VT + c * (3 * R + 3 * VT) + 2 * n * n;
    if (need <= budget) break;
    c = c / 2 < 16 ? 16 : c / 2; /* 64 / 3 = 21 halves to 16, not 10 */
  }
  return c;
}

int64_t sched_vtile(int64_t V, int64_t bh, int64_t target, int64_t requested) {
  if (V <= 1) return V < 1 ? 1 : V;
  if (requested > 0) return requested < V ? requested : V;
  if (bh < 1) bh = 1;
  if (target <= bh) return V;
  int64_t tiles = (target + bh - 1) / bh;
  int64_t w = (V + tiles - 1) / tiles;
  w = (w + 15) / 16 * 16;
  if (w < 16) w = 16;
  return w < V ? w : V;
}
