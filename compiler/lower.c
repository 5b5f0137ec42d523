/* Strategy choice and the parts of lowering every strategy shares (see lower.h). */
#include "lower_internal.h"
#include "lower_cuda.h"

#include <stdio.h>
#include <string.h>

const char *strategy_name(Strategy s) {
  switch (s) {
  case STRAT_AUTO: return "auto";
  case STRAT_RECURRENT: return "recurrent";
  case STRAT_CHUNK: return "chunk";
  case STRAT_PARALLEL: return "parallel";
  }
  return "?";
}

int plan_layout_rank(const RecMixer *rm, int sym, int state_array) {
  const Mixer *m = rm->mixer;
  const Sym *s = &m->syms[sym];
  if (state_array || s->kind == SYM_STATE) return 2 + s->rank; /* [N, H, dims] */
  if (s->kind == SYM_PARAM) return 1 + s->rank;               /* [H, dims] */
  /* inputs and outputs: [B, T, H, (ndir), dims]; grids [B, Y, X, H, (ndir), dims] */
  return (m->ngrid ? 4 : 3) + (s->per_direction ? 1 : 0) + s->rank;
}

int64_t lower_parallel_tokens(const KernelSpec *spec) {
  if (spec->chunk > 0) return spec->chunk;
  if (spec->tokens_hint <= 0) return LOWER_PARALLEL_TOKENS;
  int64_t c = 16;
  while (c < spec->tokens_hint && c < LOWER_PARALLEL_TOKENS) c *= 2;
  return c;
}

/* The parallel strategy (lower.h): the chunk algorithm of the mixer's class with one chunk of
 * lower_parallel_tokens tokens. */
static int lower_parallel(Arena *a, const KernelSpec *spec, KernelPlan *plan, char *err,
                          size_t errlen) {
  const char *why, *why_dplr;
  KernelSpec sp = *spec;
  sp.chunk = lower_parallel_tokens(spec);
  int rc;
  if (chunk_applies(spec->rm, &why)) {
    rc = lower_chunk(a, &sp, plan, err, errlen);
  } else if (chunk_dplr_applies(spec->rm, &why_dplr)) {
    rc = lower_chunk_dplr(a, &sp, plan, err, errlen);
  } else {
    int same = !strcmp(why, why_dplr);
    snprintf(err, errlen, "the parallel strategy (the quadratic form: the chunk algorithm over "
             "one chunk) does not apply to mixer '%s': %s%s%s; use recurrent", spec->rm->name,
             why, same ? "" : "; nor its DPLR form: ", same ? "" : why_dplr);
    return 1;
  }
  if (rc == 0) plan->strategy = STRAT_PARALLEL;
  return rc;
}

int lower_mixer(Arena *a, const KernelSpec *spec, KernelPlan *plan, char *err, size_t errlen) {
  Strategy s = spec->strategy;
  if (s == STRAT_PARALLEL) return lower_parallel(a, spec, plan, err, errlen);
  /* a GPU decode step or short sequences: the recurrent kernel (lower_cuda_rec.c) */
  int short_call = spec->tokens_hint > 0 && spec->tokens_hint <= LOWER_SHORT_TOKENS;
  if (spec->gpu && !spec->no_native &&
      (s == STRAT_RECURRENT || (s == STRAT_AUTO && short_call))) {
    int rc = lower_cuda_recurrent(a, spec, plan, err, errlen);
    if (rc >= 0) return rc;
  }
  if (spec->gpu && !spec->no_native && (s == STRAT_AUTO || s == STRAT_CHUNK)) {
    int rc = lower_cuda_chunk(a, spec, plan, err, errlen);
    if (rc >= 0) return rc;
  }
  /* a CPU decode step or short sequences: the recurrent kernel */
  if (!spec->gpu && s == STRAT_AUTO && spec->tokens_hint > 0 &&
      spec->tokens_hint <= LOWER_SHORT_TOKENS_CPU)
    s = STRAT_RECURRENT;
  if (s == STRAT_AUTO || s == STRAT_CHUNK) {
    const char *why, *why_dplr;
    if (chunk_applies(spec->rm, &why)) return lower_chunk(a, spec, plan, err, errlen);
    if (chunk_dplr_applies(spec->rm, &why_dplr))
      return lower_chunk_dplr(a, spec, plan, err, errlen);
    if (s == STRAT_CHUNK) {
      snprintf(err, errlen, "the chunk strategy does not apply to mixer '%s': %s; nor its DPLR "
               "form: %s", spec->rm->name, why, why_dplr);
      return 1;
    }
    s = STRAT_RECURRENT;
  }
  if (s != STRAT_RECURRENT) {
    snprintf(err, errlen, "unknown strategy %d", (int)s);
    return 1;
  }
  KernelSpec sp = *spec;
  sp.strategy = s;
  return lower_recurrent(a, &sp, plan, err, errlen);
}
