/* `mixc emit --target c|cuda|llvm|kir FILE --dims K=..,V=..`: a mixer's kernels as a
 * standalone C file, a standalone CUDA file (kernels and host launcher), optimised LLVM IR, or
 * KIR. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backends/c/c_driver.h"
#include "../backends/c/c_emit.h"
#include "../backends/cuda/cu_driver.h"
#include "../compiler/lower.h"
#include "../compiler/schedule.h"
#include "../runtime/host.h"
#include "cli.h"
#ifdef MIXC_HAVE_LLVM
#include "../backends/llvm/llvm_jit.h"
#endif

typedef struct EmitOpts {
  const char *file, *mixer, *target, *dims, *dtype, *out, *strategy, *chunk, *vtile, *varlen;
  const char *segments;
  int64_t chunk_len; /* --chunk: 0 when not given */
  int64_t vtile_len; /* --vtile: 0 when not given */
  int64_t segs;      /* --segments: 0 when not given */
} EmitOpts;

static int parse(int argc, char **argv, EmitOpts *o) {
  memset(o, 0, sizeof *o);
  o->target = "c";
  o->dtype = "f32";
  o->strategy = "auto";
  for (int i = 0; i < argc; i++) {
    const char **slot = NULL;
    if (!strcmp(argv[i], "--target")) slot = &o->target;
    else if (!strcmp(argv[i], "--mixer")) slot = &o->mixer;
    else if (!strcmp(argv[i], "--dims")) slot = &o->dims;
    else if (!strcmp(argv[i], "--dtype")) slot = &o->dtype;
    else if (!strcmp(argv[i], "--strategy")) slot = &o->strategy;
    else if (!strcmp(argv[i], "--chunk")) slot = &o->chunk;
    else if (!strcmp(argv[i], "--vtile")) slot = &o->vtile;
    else if (!strcmp(argv[i], "--varlen")) slot = &o->varlen;
    else if (!strcmp(argv[i], "--segments")) slot = &o->segments;
    else if (!strcmp(argv[i], "-o")) slot = &o->out;
    if (slot) {
      if (i + 1 >= argc) return cli_usage_error("%s needs a value", argv[i]);
      *slot = argv[++i];
    } else if (argv[i][0] == '-' && argv[i][1]) {
      return cli_usage_error("emit: unknown option '%s'", argv[i]);
    } else if (o->file) {
      return cli_usage_error("emit takes one FILE");
    } else {
      o->file = argv[i];
    }
  }
  if (!o->file) return cli_usage_error("emit needs a FILE");
  if (strcmp(o->target, "c") && strcmp(o->target, "llvm") && strcmp(o->target, "kir") &&
      strcmp(o->target, "cuda"))
    return cli_usage_error("--target %s: use c, cuda, llvm or kir", o->target);
  if (strcmp(o->dtype, "f32") && strcmp(o->dtype, "bf16") && strcmp(o->dtype, "f16"))
    return cli_usage_error("--dtype %s: use f32, bf16 or f16", o->dtype);
  if (strcmp(o->strategy, "auto") && strcmp(o->strategy, "recurrent") &&
      strcmp(o->strategy, "chunk") && strcmp(o->strategy, "parallel"))
    return cli_usage_error("--strategy %s: use auto, recurrent, chunk or parallel", o->strategy);
  if (o->chunk) {
    char *end = NULL;
    long long v = strtoll(o->chunk, &end, 10);
    if (o->chunk[0] < '0' || o->chunk[0] > '9' || *end || v < 1 || v > 4096)
      return cli_usage_error("--chunk %s: give the chunk length as an integer from 1 to 4096",
                             o->chunk);
    o->chunk_len = v;
  }
  if (o->vtile) {
    char *end = NULL;
    long long v = strtoll(o->vtile, &end, 10);
    if (o->vtile[0] < '0' || o->vtile[0] > '9' || *end || v < 1 || v > (1 << 20))
      return cli_usage_error("--vtile %s: give the value-tile width as an integer from 1 to %d",
                             o->vtile, 1 << 20);
    o->vtile_len = v;
  }
  if (o->segments) {
    char *end = NULL;
    long long v = strtoll(o->segments, &end, 10);
    if (o->segments[0] < '0' || o->segments[0] > '9' || *end || v < 1 || v > 1024)
      return cli_usage_error("--segments %s: give the sequence segments as an integer from 1 to "
                             "1024", o->segments);
    if (strcmp(o->target, "cuda"))
      return cli_usage_error("--segments: only --target cuda splits sequences (the hand-structured "
                             "chunk kernels)");
    o->segs = v;
  }
  if (o->varlen && strcmp(o->varlen, "i32") && strcmp(o->varlen, "i64"))
    return cli_usage_error("--varlen %s: use i32 or i64 (the type of cu_seqlens)", o->varlen);
  if (o->varlen && strcmp(o->target, "cuda") && strcmp(o->target, "kir") &&
      strcmp(o->target, "llvm"))
    return cli_usage_error("--varlen: --target %s has no cu_seqlens entry point (use cuda, llvm "
                           "or kir)", o->target);
  return 0;
}

typedef struct DimCtx {
  const Mixer *m;
  int64_t *dims;
} DimCtx;

static int set_dim(void *ctx, const char *key, long long v, const char *item) {
  DimCtx *d = ctx;
  int k = mixer_find(d->m, key);
  if (k < 0 || d->m->syms[k].kind != SYM_DIM) {
    fprintf(stderr, "mixc: --dims %s: mixer '%s' has no dim '%s'\n", item, d->m->name.name, key);
    return 1;
  }
  if (v < 1 || v > (1 << 20)) {
    fprintf(stderr, "mixc: --dims %s: a dim is from 1 to 1048576\n", item);
    return 1;
  }
  if (d->m->syms[k].fixed && v != d->m->syms[k].fixed) {
    fprintf(stderr, "mixc: --dims %s: dim %s is fixed to %lld by the source\n", item, key,
            (long long)d->m->syms[k].fixed);
    return 1;
  }
  d->dims[k] = v;
  return 0;
}

static int build_spec(const EmitOpts *o, const RecMixer *rm, KernelSpec *sp, int64_t *dims,
                      KType *dtype, unsigned char *present, unsigned char *want) {
  const Mixer *m = rm->mixer;
  DimCtx dc = {m, dims};
  for (int s = 0; s < m->nsyms; s++) dims[s] = m->syms[s].kind == SYM_DIM ? m->syms[s].fixed : 0;
  if (o->dims && cli_parse_kv(o->dims, "--dims", set_dim, &dc)) return EXIT_INPUT;
  for (int s = 0; s < m->nsyms; s++)
    if (m->syms[s].kind == SYM_DIM && !dims[s]) {
      fprintf(stderr, "mixc: --dims: give dim %s a size (e.g. --dims %s=64)\n", m->syms[s].name,
              m->syms[s].name);
      return EXIT_INPUT;
    }
  KType t = !strcmp(o->dtype, "bf16") ? KT_BF16 : !strcmp(o->dtype, "f16") ? KT_F16 : KT_F32;
  for (int s = 0; s < m->nsyms; s++) {
    const Sym *y = &m->syms[s];
    dtype[s] = y->kind == SYM_STATE ? KT_F32 : t;
    /* params with a default are built in; the others are arguments */
    present[s] = y->kind == SYM_STATE || (y->kind == SYM_PARAM && !y->init);
    want[s] = y->kind == SYM_STATE;
    if (m->ngrid && y->kind == SYM_STATE) present[s] = want[s] = 0;
  }
  memset(sp, 0, sizeof *sp);
  sp->rm = rm;
  sp->dims = dims;
  sp->dtype = dtype;
  sp->present = present;
  sp->want = want;
  sp->cu_type = o->varlen && !strcmp(o->varlen, "i32") ? KT_I32 : KT_I64;
  sp->chunk = o->chunk_len;
  sp->vtile = o->vtile_len;
  sp->segs = o->segs;
  if (o->varlen) {
    if (m->ngrid) {
      fprintf(stderr, "mixc: --varlen: mixer '%s' runs over a grid and takes no cu_seqlens\n",
              m->name.name);
      return EXIT_INPUT;
    }
    sp->varlen = 1;
  }
  sp->strategy = !strcmp(o->strategy, "recurrent") ? STRAT_RECURRENT
                 : !strcmp(o->strategy, "chunk")   ? STRAT_CHUNK
                 : !strcmp(o->strategy, "parallel") ? STRAT_PARALLEL
                                                    : STRAT_AUTO;
  if (!strcmp(o->target, "cuda")) { /* the hand-structured CUDA forms where they apply */
    sp->gpu = 1;
    sp->gpu_arch = MIXC_CU_DEFAULT_ARCH;
    sp->gpu_smem_optin = MIXC_CU_DEFAULT_SMEM_OPTIN;
  } else { /* a CPU target: the schedule sees this host's caches, as `mixc run` does */
    HostCaches hc;
    host_caches(&hc);
    sp->cache_l1d_bytes = hc.l1d;
    sp->cache_l2_bytes = hc.l2;
    sp->cache_l3_bytes = hc.l3;
  }
  return 0;
}

/* One line naming the schedule chosen (chunk, value tiles) and the caches it was chosen for,
 * after the target's comment marker. */
static void print_schedule(FILE *f, const char *mark, const char *end, const KernelSpec *sp,
                           const KernelPlan *pl) {
  int64_t l2 = sp->cache_l2_bytes;
  char segs[48] = "";
  if (pl->segs > 1) snprintf(segs, sizeof segs, ", sequence segments %lld", (long long)pl->segs);
  fprintf(f, "%s schedule: strategy %s, chunk %lld, vtile %lld, vtiles %lld%s; L2 "
             "%lld KiB%s (chunk scratch budget %lld KiB), L1d %lld KiB, L3 %lld KiB a CPU (0: "
             "unknown)%s\n",
          mark, strategy_name(pl->strategy), (long long)pl->chunk, (long long)pl->vtile,
          (long long)pl->vtiles, segs,
          (long long)((l2 > 0 ? l2 : SCHED_DEFAULT_L2) / 1024),
          l2 > 0 ? "" : " (unknown: the default)",
          (long long)(sched_scratch_floats(l2) * (int64_t)sizeof(float) / 1024),
          (long long)(sp->cache_l1d_bytes / 1024), (long long)(sp->cache_l3_bytes / 1024), end);
}

/* --target cuda: the kernels and a host launcher, one file for nvcc (backends/cuda/cu_driver.h). */
static int write_cuda(const EmitOpts *o, const KernelSpec *sp, const KernelPlan *pl, FILE *f) {
  char err[1024];
  if (mixc_emit_cuda_file(f, o->file, sp, pl, NULL, err, sizeof err)) {
    fprintf(stderr, "mixc: emit: %s\n", err);
    return EXIT_INPUT;
  }
  return 0;
}

static int write_target(const EmitOpts *o, const KernelSpec *sp, const KernelPlan *pl, FILE *f) {
  char err[1024];
  if (!strcmp(o->target, "cuda")) return write_cuda(o, sp, pl, f);
  if (!strcmp(o->target, "kir")) {
    print_schedule(f, "#", "", sp, pl);
    kir_print(f, pl->mod);
    return 0;
  }
  if (!strcmp(o->target, "c")) {
    print_schedule(f, "/*", " */", sp, pl);
    if (mixc_emit_c_file(f, o->file, sp, pl, err, sizeof err)) {
      fprintf(stderr, "mixc: emit: %s\n", err);
      return EXIT_INPUT;
    }
    return 0;
  }
#ifdef MIXC_HAVE_LLVM
  char *text = NULL;
  if (mixc_jit_ir_text(pl->mod, 1, &text, err, sizeof err)) {
    fprintf(stderr, "mixc: emit: %s\n", err);
    return EXIT_INPUT;
  }
  print_schedule(f, ";", "", sp, pl);
  fputs(text, f);
  free(text);
  return 0;
#else
  fprintf(stderr, "mixc: --target llvm: this build has no LLVM (configured with -DMIXC_LLVM=OFF)\n");
  return EXIT_USAGE;
#endif
}

int cmd_emit(int argc, char **argv) {
  EmitOpts o;
  int rc = parse(argc, argv, &o);
  if (rc) return rc;
  Compilation c;
  rc = cli_compile(o.file, STAGE_REC, &c);
  const Mixer *m = rc ? NULL : cli_pick_mixer(&c, o.mixer, o.file);
  if (!rc && !m) rc = EXIT_INPUT;
  if (!rc) {
    const RecMixer *rm = rec_find_mixer(c.rec, m->name.name);
    size_t n = (size_t)m->nsyms + 1;
    int64_t *dims = calloc(n, sizeof *dims);
    KType *dtype = calloc(n, sizeof *dtype);
    unsigned char *present = calloc(n, 1), *want = calloc(n, 1);
    KernelSpec sp;
    KernelPlan pl;
    char err[1024];
    if (!dims || !dtype || !present || !want) {
      fprintf(stderr, "mixc: out of memory\n");
      rc = EXIT_INPUT;
    }
    if (!rc) rc = build_spec(&o, rm, &sp, dims, dtype, present, want);
    if (!rc && lower_mixer(&c.arena, &sp, &pl, err, sizeof err)) {
      fprintf(stderr, "mixc: emit: %s\n", err);
      rc = EXIT_INPUT;
    }
    if (!rc) {
      FILE *f = o.out ? fopen(o.out, "w") : stdout;
      if (!f) {
        fprintf(stderr, "mixc: -o %s: cannot write\n", o.out);
        rc = EXIT_INPUT;
      } else {
        rc = write_target(&o, &sp, &pl, f);
        if (o.out && fclose(f)) rc = EXIT_INPUT;
      }
    }
    free(dims);
    free(dtype);
    free(present);
    free(want);
  }
  compilation_free(&c);
  return rc;
}
