/* test_schedule.c: the schedule heuristic (compiler/schedule.h) over a grid of inputs, against
 * the properties docs/algorithms.md ("Schedule") states, and the host cache reader
 * (runtime/host.h). Pure integer rules: the grid is exhaustive, nothing random to draw. */
#include <stdint.h>
#include <stdio.h>

#include "compiler/schedule.h"
#include "runtime/host.h"

static int g_passed, g_failed;

#define CHECK_MAX_SHOWN 20 /* the first 20 failures printed */
#include "check.h"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const int64_t KiB = 1024, MiB = 1024 * 1024;

/* ---- value tile ---- */

static void test_vtile(void) {
  const int64_t Vs[] = {1, 2, 15, 16, 17, 20, 31, 32, 33, 48, 64, 65, 100, 127, 128, 129, 192,
                        256, 257, 512, 1000, 4096};
  const int64_t bhs[] = {0, 1, 2, 3, 4, 7, 8, 16, 33, 64, 128, 200, 4096};
  const int64_t targets[] = {0, 1, 2, 3, 4, 8, 16, 32, 132, 264, 1024};
  for (int a = 0; a < N(Vs); a++)
    for (int b = 0; b < N(bhs); b++)
      for (int t = 0; t < N(targets); t++) {
        int64_t V = Vs[a], bh = bhs[b], target = targets[t], bh1 = bh < 1 ? 1 : bh;
        /* requested wins, clamped to V */
        const int64_t reqs[] = {1, 7, 16, 48, V, V + 5};
        for (int r = 0; r < N(reqs); r++) {
          int64_t w = sched_vtile(V, bh, target, reqs[r]);
          int64_t want = reqs[r] < V ? reqs[r] : V;
          CHECK(w == want, "V %lld requested %lld: %lld, want %lld", (long long)V,
                (long long)reqs[r], (long long)w, (long long)want);
        }
        int64_t w = sched_vtile(V, bh, target, 0);
        CHECK(w >= 1 && w <= V, "V %lld bh %lld target %lld: vtile %lld out of [1, V]",
              (long long)V, (long long)bh, (long long)target, (long long)w);
        if (w < 1) continue;
        int64_t tiles = (V + w - 1) / w;
        /* a multiple of 16 (one AVX-512 vector) at least 16 wide, or V (no split) */
        CHECK(w == V || (w % 16 == 0 && w >= 16), "V %lld bh %lld target %lld: vtile %lld",
              (long long)V, (long long)bh, (long long)target, (long long)w);
        /* the tiles cover V, none is empty */
        CHECK(tiles * w >= V && (tiles - 1) * w < V, "V %lld vtile %lld: %lld tiles",
              (long long)V, (long long)w, (long long)tiles);
        /* no split unless the device wants more items than there are (sequence, head) pairs */
        if (target <= bh1)
          CHECK(w == V, "V %lld bh %lld target %lld: split (%lld) though bh covers the target",
                (long long)V, (long long)bh, (long long)target, (long long)w);
        if (w < V) {
          /* a split: ceil(target / bh) tiles wanted; never more; at least half of them
           * (2 x items > target), or the finest split (16 columns a tile) when V has fewer
           * 16-wide tiles than wanted */
          int64_t want = (target + bh1 - 1) / bh1, items = bh1 * tiles;
          CHECK(tiles <= want && tiles >= 2, "V %lld bh %lld target %lld: %lld tiles, %lld wanted",
                (long long)V, (long long)bh, (long long)target, (long long)tiles, (long long)want);
          CHECK(2 * items > target || (w == 16 && tiles == (V + 15) / 16),
                "V %lld bh %lld target %lld: vtile %lld gives %lld items", (long long)V,
                (long long)bh, (long long)target, (long long)w, (long long)items);
          /* the narrowest multiple of 16 with at most `want` tiles */
          CHECK(w == 16 || (w - 16) * want < V, "V %lld bh %lld target %lld: vtile %lld is wider "
                "than needed", (long long)V, (long long)bh, (long long)target, (long long)w);
        } else if (target > bh1 && V > 16) {
          /* a split was wanted and possible: only when even 16 columns less would not do */
          int64_t want = (target + bh1 - 1) / bh1;
          CHECK((V + want - 1) / want > V - 16, "V %lld bh %lld target %lld: no split",
                (long long)V, (long long)bh, (long long)target);
        }
      }
  /* today's choices: the 2-thread CPU with one (sequence, head); a 132-SM GPU with B x H = 8 */
  CHECK(sched_vtile(128, 1, 2, 0) == 64, "V 128 on 2 threads: %lld",
        (long long)sched_vtile(128, 1, 2, 0));
  CHECK(sched_vtile(128, 8, 264, 0) == 16, "V 128 bh 8 on 264: %lld",
        (long long)sched_vtile(128, 8, 264, 0));
  CHECK(sched_vtile(128, 4, 2, 0) == 128, "V 128 bh 4 on 2: %lld",
        (long long)sched_vtile(128, 4, 2, 0));
}

/* ---- chunk length ---- */

static int64_t class_default(SchedClass cls, int64_t events) {
  (void)events;
  return cls == SC_SCALAR ? 32 : 16;
}

/* The chunk's buffers in floats (schedule.c's estimate, docs/algorithms.md). */
static int64_t need(int64_t c, int64_t events, int64_t R, int64_t VT) {
  int64_t n = c * events;
  return R * VT + c * (3 * R + 3 * VT) + 2 * n * n;
}

static void test_chunk(void) {
  /* the budget: half the L2; the default L2 (unknown) is the project's CPU's 1 MiB a core,
   * whose half, 128 Ki floats, is the fixed budget this replaced */
  CHECK(sched_scratch_floats(0) == 128 * 1024, "%lld", (long long)sched_scratch_floats(0));
  CHECK(sched_scratch_floats(-5) == 128 * 1024, "%lld", (long long)sched_scratch_floats(-5));
  CHECK(sched_scratch_floats(MiB) == 128 * 1024, "%lld", (long long)sched_scratch_floats(MiB));
  CHECK(sched_scratch_floats(2 * MiB) == 256 * 1024, "%lld",
        (long long)sched_scratch_floats(2 * MiB));
  CHECK(sched_scratch_floats(256 * KiB) == 32 * 1024, "%lld",
        (long long)sched_scratch_floats(256 * KiB));
  CHECK(sched_scratch_floats(4 * KiB) == 16 * 1024, "floor: %lld",
        (long long)sched_scratch_floats(4 * KiB));
  CHECK(sched_scratch_floats(INT64_MAX) > 0, "huge: %lld",
        (long long)sched_scratch_floats(INT64_MAX));

  const SchedClass classes[] = {SC_SCALAR, SC_DIAG, SC_DELTA, SC_DELTA_DIAG};
  const int64_t eventss[] = {0, 1, 2, 3, 4, 5, 8};
  const int64_t sizes[] = {1, 16, 32, 64, 100, 128, 192, 256, 512, 1024};
  const int64_t l2s[] = {0, 64 * KiB, 256 * KiB, 512 * KiB, MiB, 1280 * KiB, 2 * MiB, 4 * MiB,
                         32 * MiB}; /* ascending after the first */
  for (int ci = 0; ci < N(classes); ci++)
    for (int e = 0; e < N(eventss); e++)
      for (int ri = 0; ri < N(sizes); ri++)
        for (int vi = 0; vi < N(sizes); vi++) {
          SchedClass cls = classes[ci];
          int64_t ev = eventss[e], R = sizes[ri], VT = sizes[vi], ev1 = ev < 1 ? 1 : ev;
          int64_t def = class_default(cls, ev1), prev = 0;
          /* L2 unknown = the default L2 = the old entry point */
          int64_t c0 = sched_chunk_l2(cls, 0, ev, R, VT, 0);
          CHECK(c0 == sched_chunk_l2(cls, 0, ev, R, VT, SCHED_DEFAULT_L2) &&
                    c0 == sched_chunk(cls, 0, ev, R, VT),
                "cls %d events %lld R %lld VT %lld: unknown L2 %lld", (int)cls, (long long)ev,
                (long long)R, (long long)VT, (long long)c0);
          for (int li = 0; li < N(l2s); li++) {
            int64_t l2 = l2s[li], budget = sched_scratch_floats(l2);
            int64_t c = sched_chunk_l2(cls, 0, ev, R, VT, l2);
            /* within [16, the class's default] */
            CHECK(c >= 16 && c <= def, "cls %d events %lld R %lld VT %lld L2 %lld: chunk %lld "
                  "outside [16, %lld]", (int)cls, (long long)ev, (long long)R, (long long)VT,
                  (long long)l2, (long long)c, (long long)def);
            /* the first of def, def / 2, ... (never below 16) that fits the budget, else 16 */
            int64_t d = def;
            while (d > 16 && need(d, ev1, R, VT) > budget) d = d / 2 < 16 ? 16 : d / 2;
            CHECK(d == c, "cls %d events %lld R %lld VT %lld L2 %lld: chunk %lld, want %lld",
                  (int)cls, (long long)ev, (long long)R, (long long)VT, (long long)l2,
                  (long long)c, (long long)d);
            CHECK(c == 16 || need(c, ev1, R, VT) <= budget, "cls %d R %lld VT %lld L2 %lld: "
                  "chunk %lld overflows", (int)cls, (long long)R, (long long)VT, (long long)l2,
                  (long long)c);
            /* never longer on a smaller L2 */
            if (li > 0) {
              CHECK(c >= prev, "cls %d R %lld VT %lld: chunk %lld at L2 %lld < %lld below",
                    (int)cls, (long long)R, (long long)VT, (long long)c, (long long)l2,
                    (long long)prev);
              prev = c;
            }
            /* requested wins whatever the cache */
            const int64_t reqs[] = {1, 7, 16, 100, 4096};
            for (int r = 0; r < N(reqs); r++)
              CHECK(sched_chunk_l2(cls, reqs[r], ev, R, VT, l2) == reqs[r],
                    "requested %lld", (long long)reqs[r]);
          }
        }
  /* today's choices at K = V = 128 on the project's CPU (1 MiB L2 a core) */
  const int64_t L2 = MiB;
  CHECK(sched_chunk_l2(SC_DIAG, 0, 1, 128, 128, L2) == 16, "GLA");
  CHECK(sched_chunk_l2(SC_SCALAR, 0, 1, 128, 128, L2) == 32, "Mamba2");
  CHECK(sched_chunk_l2(SC_DELTA, 0, 1, 128, 128, L2) == 16, "DeltaNet");
  CHECK(sched_chunk_l2(SC_DELTA, 0, 2, 128, 128, L2) == 16, "DeltaProduct 2");
  CHECK(sched_chunk_l2(SC_DELTA, 0, 4, 128, 128, L2) == 16, "DeltaProduct 4");
  CHECK(sched_chunk_l2(SC_DELTA_DIAG, 0, 1, 128, 128, L2) == 16, "KDA");
  /* cache-dependent: Mamba2's chunk buffers at 32 (42 Ki floats) fit half of a 512 KiB L2,
   * not half of 256 KiB; a 512 x 512 state overflows half of 1 MiB at any chunk but fits
   * half of 4 MiB at 32 */
  CHECK(sched_chunk_l2(SC_SCALAR, 0, 1, 128, 128, 512 * KiB) == 32, "Mamba2, 512 KiB: %lld",
        (long long)sched_chunk_l2(SC_SCALAR, 0, 1, 128, 128, 512 * KiB));
  CHECK(sched_chunk_l2(SC_SCALAR, 0, 1, 128, 128, 256 * KiB) == 16, "Mamba2, 256 KiB: %lld",
        (long long)sched_chunk_l2(SC_SCALAR, 0, 1, 128, 128, 256 * KiB));
  CHECK(sched_chunk_l2(SC_SCALAR, 0, 1, 512, 512, MiB) == 16, "512 x 512, 1 MiB: %lld",
        (long long)sched_chunk_l2(SC_SCALAR, 0, 1, 512, 512, MiB));
  CHECK(sched_chunk_l2(SC_SCALAR, 0, 1, 512, 512, 4 * MiB) == 32, "512 x 512, 4 MiB: %lld",
        (long long)sched_chunk_l2(SC_SCALAR, 0, 1, 512, 512, 4 * MiB));
}

/* ---- the host's caches ---- */

static void test_host(void) {
  HostCaches a, b;
  host_caches(&a);
  host_caches(&b);
  printf("host caches: L1d %lld KiB, L2 %lld KiB, L3 %lld KiB a CPU (0: unknown)\n",
         (long long)(a.l1d / KiB), (long long)(a.l2 / KiB), (long long)(a.l3 / KiB));
  CHECK(a.l1d == b.l1d && a.l2 == b.l2 && a.l3 == b.l3, "two readings differ");
  const int64_t lv[3] = {a.l1d, a.l2, a.l3};
  for (int i = 0; i < 3; i++)
    CHECK(lv[i] == 0 || (lv[i] >= KiB && lv[i] <= ((int64_t)1 << 34)),
          "level %d: %lld bytes", i + 1, (long long)lv[i]);
  CHECK(!a.l1d || !a.l2 || a.l1d <= a.l2, "L1d %lld > L2 %lld", (long long)a.l1d,
        (long long)a.l2);
}

int main(void) {
  test_vtile();
  test_chunk();
  test_host();
  printf("test_schedule: %d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
