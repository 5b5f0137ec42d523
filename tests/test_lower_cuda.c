/* The hand-structured CUDA chunk kernels (compiler/lower_cuda*.c), without a GPU:
 *   - the matcher (lower_cuda_match) takes the forms it should (the GPU benchmark's four
 *     mixers, examples gla, retnet, linear_attn, delta, gated_delta in bf16 / f16) and
 *     refuses the rest (f32 inputs, mamba2, rwkv7, a mixer with prelude lets, mixed types);
 *   - lower_mixer with KernelSpec.gpu gives a kernel with cuda_src for the scalar and
 *     diagonal forms (the delta form where lower_cuda_delta.c prints one), with the KIR
 *     chunk strategy's argument tables and value split, at several dims (K, V in {64, 128},
 *     V = 100 with a padded tile, V = 256 split in tiles), varlen (int32 / int64) and
 *     initial / final states on and off;
 *   - every printed module compiles with NVRTC for sm_90a (skipped, exit 77, without NVRTC).
 * The numbers on a GPU come from test_api_cuda (every example through the C API against the
 * fp64 reference, with KernelSpec.gpu) and bench/gpu. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>

#ifndef MIXC_HAVE_CUDA
int main(void) {
  printf("test_lower_cuda: 0 passed, 0 failed, 1 skipped (built without MIXC_CUDA)\n");
  return 77;
}
#else
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "backends/c/c_emit.h"
#include "backends/cuda/cuda_loader.h"
#include "compiler/compile.h"
#include "compiler/lower.h"
#include "compiler/lower_cuda.h"
#include "compiler/rec.h"

static int passed, failed;
static MixcNvrtc *g_nvrtc;

static char *read_all(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)len + 1);
  if (s && fread(s, 1, (size_t)len, f) != (size_t)len) {
    free(s);
    s = NULL;
  }
  if (s) s[len] = 0;
  *n = (size_t)len;
  fclose(f);
  return s;
}

/* expect: -1 no form, else the CudaChunkKind */
typedef struct Want {
  const char *file, *mixer;
  int expect;
} Want;

static const Want wants[] = {
    {"bench/gpu/mixers.mix", "simple_gla", CCK_SCALAR},
    {"bench/gpu/mixers.mix", "gla", CCK_DIAG},
    {"bench/gpu/mixers.mix", "delta", CCK_DELTA},
    {"bench/gpu/mixers.mix", "gated_delta", CCK_DELTA},
    {"examples/gla.mix", "gla", CCK_DIAG},
    {"examples/retnet.mix", "retnet", CCK_SCALAR},
    {"examples/linear_attn.mix", "linear_attn", CCK_SCALAR},
    {"examples/delta.mix", "delta", CCK_DELTA},
    {"examples/gated_delta.mix", "gated_delta", CCK_DELTA},
    {"examples/mamba2.mix", NULL, -1},
    {"examples/rwkv7.mix", NULL, -1},
    {"examples/linear_attn_norm.mix", NULL, -1},
    {"examples/rwkv6.mix", NULL, -1},
    {"examples/hgrn2.mix", NULL, -1},
};

typedef struct Variant {
  int64_t K, V, vtile;
  KType in, gt, out;
  int varlen, states, present_params;
  KType cu;
  int64_t bh; /* sequence-head pairs the variant is for (0: 128, no split) */
} Variant;

static const Variant variants[] = {
    {128, 128, 0, KT_BF16, KT_F32, KT_BF16, 0, 0, 0, KT_I32, 0},
    {128, 128, 64, KT_BF16, KT_BF16, KT_F32, 1, 1, 1, KT_I64, 0},
    {64, 100, 0, KT_F16, KT_F16, KT_F16, 0, 1, 0, KT_I32, 0},
    {128, 256, 128, KT_F16, KT_F32, KT_F32, 1, 0, 1, KT_I32, 0},
    {256, 64, 0, KT_BF16, KT_F32, KT_BF16, 0, 1, 1, KT_I32, 0},
    /* few pairs: the sequence split (lower_cuda_seg.c) for the scalar and diagonal forms */
    {128, 128, 0, KT_BF16, KT_F32, KT_BF16, 0, 1, 1, KT_I32, 16},
    {64, 100, 0, KT_F16, KT_F16, KT_F32, 1, 1, 0, KT_I64, 2},
};

static void check_nvrtc(const KernelPlan *pl, const char *tag) {
  char *buf = NULL;
  size_t len = 0;
  char err[8192];
  FILE *f = open_memstream(&buf, &len);
  if (!f) return;
  MixcCudaTarget t = {90, 232448};
  MixcCudaLaunch launch[8];
  if (pl->mod->nfuncs > 8) return;
  int rc = mixc_emit_cuda_module(f, pl->mod, &t, 0, launch, err, sizeof err);
  fclose(f);
  if (rc) {
    printf("FAIL %s: emit: %s\n", tag, err);
    failed++;
  } else if (g_nvrtc) {
    MixcCubin cb;
    memset(&cb, 0, sizeof cb);
    if (mixc_nvrtc_compile(g_nvrtc, buf, tag, 90, &cb, err, sizeof err)) {
      printf("FAIL nvrtc %s: %s\n", tag, err);
      failed++;
    } else {
      printf("ok   nvrtc %-44s %u threads, %u B smem, %zu B cubin%s\n", tag,
             launch[0].threads, launch[0].smem_bytes, cb.size, cb.cache_hit ? " (cached)" : "");
      passed++;
    }
    mixc_cubin_release(&cb);
  }
  free(buf);
}

static void run_mixer(const RecMixer *rm, const Want *w, Arena *arena) {
  const Mixer *m = rm->mixer;
  size_t ns = (size_t)m->nsyms + 1;
  int64_t *dims = calloc(ns, sizeof *dims);
  KType *dtype = calloc(ns, sizeof *dtype);
  unsigned char *present = calloc(ns, 1), *want = calloc(ns, 1);
  if (!dims || !dtype || !present || !want) goto done;
  for (size_t vi = 0; vi < sizeof variants / sizeof *variants; vi++) {
    const Variant *v = &variants[vi];
    for (int f32 = 0; f32 < 2; f32++) {
      if (f32 && vi) continue; /* f32 inputs: one variant */
      for (int s = 0; s < m->nsyms; s++) {
        const Sym *y = &m->syms[s];
        if (y->kind == SYM_DIM)
          dims[s] = y->fixed ? y->fixed : !strcmp(y->name, "V") ? v->V : v->K;
        int gate = !strcmp(y->name, "g") || !strcmp(y->name, "beta");
        dtype[s] = y->kind == SYM_STATE ? KT_F32
                   : f32                ? KT_F32
                   : y->kind == SYM_OUTPUT ? v->out
                   : gate || y->kind == SYM_PARAM ? v->gt
                                                  : v->in;
        present[s] = y->kind == SYM_PARAM ? (!y->init || v->present_params)
                                           : y->kind == SYM_STATE && v->states;
        want[s] = y->kind == SYM_STATE && v->states;
      }
      KernelSpec sp;
      memset(&sp, 0, sizeof sp);
      sp.rm = rm;
      sp.dims = dims;
      sp.dtype = dtype;
      sp.present = present;
      sp.want = want;
      sp.varlen = v->varlen;
      sp.cu_type = v->cu;
      sp.strategy = STRAT_AUTO;
      sp.vtile = v->vtile;
      sp.bh = v->bh > 0 ? v->bh : 128;
      sp.target_items = 264;
      sp.gpu = 1;
      sp.gpu_arch = 90;
      sp.gpu_smem_optin = 232448;
      char tag[200];
      snprintf(tag, sizeof tag, "%s K%" PRId64 " V%" PRId64 " vt%" PRId64 " bh%" PRId64 "%s%s%s",
               m->name.name, v->K, v->V, v->vtile, sp.bh,
               f32 ? " f32" : v->in == KT_BF16 ? " bf16" : " f16", v->varlen ? " varlen" : "",
               v->states ? " states" : "");
      CudaChunkKind kind;
      int matched = lower_cuda_match(&sp, &kind);
      int expect = f32 ? -1 : w->expect;
      if (matched != (expect >= 0) || (matched && (int)kind != expect)) {
        printf("FAIL match %s: %s (kind %d), expected %d\n", tag, matched ? "matched" : "no form",
               matched ? (int)kind : -1, expect);
        failed++;
        continue;
      }
      passed++;
      KernelPlan pl;
      char err[4096];
      if (lower_mixer(arena, &sp, &pl, err, sizeof err)) {
        printf("FAIL lower %s: %s\n", tag, err);
        failed++;
        continue;
      }
      int native = pl.mod->nfuncs >= 1;
      for (int i = 0; i < pl.mod->nfuncs; i++) native = native && pl.mod->funcs[i]->cuda_src;
      /* the sequence split: three kernels sharing per-item storage, where the pairs leave
       * SMs idle (scalar and diagonal forms) */
      int want_segs = v->bh > 0 && expect >= 0;
      if (native && (want_segs ? pl.segs < 2 || pl.mod->nfuncs != 3 ||
                                     pl.mod->funcs[0]->item_floats <= 0
                               : pl.segs != 1 || pl.mod->nfuncs != 1)) {
        printf("FAIL segments %s: segs %" PRId64 ", %d kernels\n", tag, pl.segs, pl.mod->nfuncs);
        failed++;
        continue;
      }
      /* the scalar and diagonal forms print for every variant here; the delta form where
       * lower_cuda_delta.c has one; never where nothing matched */
      int must = expect == CCK_SCALAR || expect == CCK_DIAG;
      if ((must && !native) || (expect < 0 && native)) {
        printf("FAIL lower %s: %s a hand-structured kernel\n", tag, native ? "took" : "did not take");
        failed++;
        continue;
      }
      /* the KIR chunk strategy's split: the same vtile, vtiles and chunk length recorded */
      if (native && (pl.vtiles < 1 || pl.vtile < 1 || pl.chunk < 16 ||
                     pl.vtile * pl.vtiles < v->V || (pl.vtiles - 1) * pl.vtile >= v->V ||
                     (v->vtile > 0 && pl.vtile != v->vtile))) {
        printf("FAIL plan %s: vtile %" PRId64 " vtiles %" PRId64 " chunk %" PRId64 "\n", tag,
               pl.vtile, pl.vtiles, pl.chunk);
        failed++;
        continue;
      }
      printf("ok   %-48s %s, segments %" PRId64 "\n", tag, native ? "hand-structured" : "KIR",
             pl.segs);
      passed++;
      if (native) check_nvrtc(&pl, tag);
    }
  }
done:
  free(dims);
  free(dtype);
  free(present);
  free(want);
}

int main(void) {
  char err[512];
  if (mixc_nvrtc_open(0, &g_nvrtc, err, sizeof err)) {
    g_nvrtc = NULL;
    printf("no NVRTC: %s (matching only)\n", err);
  }
  for (size_t i = 0; i < sizeof wants / sizeof *wants; i++) {
    const Want *w = &wants[i];
    size_t n;
    char *src = read_all(w->file, &n);
    Compilation comp;
    if (!src || compile_source(&comp, w->file, src, n, STAGE_REC)) {
      printf("FAIL %s: does not compile\n", w->file);
      failed++;
      free(src);
      if (src) compilation_free(&comp);
      continue;
    }
    free(src);
    for (int k = 0; k < comp.rec->nmixers; k++) {
      const RecMixer *rm = comp.rec->mixers[k];
      if (w->mixer && strcmp(rm->name, w->mixer)) continue;
      run_mixer(rm, w, &comp.arena);
    }
    compilation_free(&comp);
  }
  printf("test_lower_cuda: %d passed, %d failed%s\n", passed, failed,
         g_nvrtc ? "" : " (NVRTC missing: compile checks skipped)");
  if (g_nvrtc) mixc_nvrtc_close(g_nvrtc);
  if (failed) return 1;
  return g_nvrtc ? 0 : 77;
}
#endif
