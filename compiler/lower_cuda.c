/* The hand-structured CUDA chunk kernels: matching a mixer to a form (lower_cuda.h).
 *
 * A mixer takes a form when it has no grid, no prelude lets, one matrix state S[K, V], one
 * output o[V] = scale * sum(i, q[i] * S_t[i, j]) reading the state after the token, and its
 * steps are, with k, q, v plain inputs read at the step's indices and g a plain input:
 *   SCALAR  S = S + k v^T, or S = exp(g) S + k v^T (g a scalar input [B, T, H], or a scalar
 *           param [H], given or its default)
 *   DIAG    S = diag(exp(g[i])) S + k v^T (g an input [B, T, H, K])
 *   DELTA   one delta step S = (I - beta k k^T) S + beta k v^T (beta a scalar input, or
 *           none), after a scalar step S = exp(g) S or alone.
 * q, k, v are bf16 or f16, of one type; scale a constant or a scalar param. The argument
 * tables, the value split and the work items are the KIR chunk strategy's (lw_begin,
 * lw_plan_split), so the runtime fills and launches them unchanged. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/c/c_emit.h"
#include "lower_cuda.h"
#include "lower_internal.h"
#include "schedule.h"

/* The leaves of a product: a numeric factor, and at most a few named factors. */
typedef struct Prod {
  double k;
  const Expr *leaf[4];
  int n;
  int bad;
} Prod;

static void prod_add(Prod *p, const Expr *e, const L *l) {
  if (!e || p->bad) return;
  if (e->kind == EX_NUM) {
    p->k *= e->num;
    return;
  }
  if (e->kind == EX_NEG) {
    p->k = -p->k;
    prod_add(p, e->args[0], l);
    return;
  }
  if (e->kind == EX_BIN && e->op == '*') {
    prod_add(p, e->args[0], l);
    prod_add(p, e->args[1], l);
    return;
  }
  if (e->free == 0 && !e->has_state) { /* a constant expression of dims, e.g. rsqrt(K) */
    double v = lw_const_eval(l, e);
    if (isfinite(v)) {
      p->k *= v;
      return;
    }
  }
  if (p->n == 4) {
    p->bad = 1;
    return;
  }
  p->leaf[p->n++] = e;
}

/* e is input sym (rank 1, over dim) read at index variable iv: returns the symbol, or -1. */
static int input_vec(const Mixer *mx, const Expr *e, int iv, int dim) {
  if (!e || e->kind != EX_INDEX || e->ref != REF_INPUT || e->nargs != 1) return -1;
  const Sym *s = &mx->syms[e->sym];
  if (s->rank != 1 || s->shape[0] != dim || s->per_direction) return -1;
  const Expr *a = e->args[0];
  if (a->ref != REF_INDEX || a->sym != iv) return -1;
  return e->sym;
}

/* e is a scalar input: its symbol, or -1. */
static int input_scalar(const Mixer *mx, const Expr *e) {
  if (!e || e->kind != EX_NAME || e->ref != REF_INPUT) return -1;
  const Sym *s = &mx->syms[e->sym];
  return s->rank == 0 && !s->per_direction ? e->sym : -1;
}

static int param_scalar(const Mixer *mx, const Expr *e) {
  if (!e || e->kind != EX_NAME || e->ref != REF_PARAM) return -1;
  return mx->syms[e->sym].rank == 0 ? e->sym : -1;
}

/* The outer product of a step: scale c u w^T = [beta] k[i] v[j] exactly (coefficient 1).
 * *beta: the scalar input, or -1 (none; allowed only when want_beta is 0 or 2 = optional). */
static int outer_fits(const L *l, const RecStep *p, int Kd, int Vd, int *k, int *v, int *beta) {
  const Mixer *mx = l->mx;
  if (p->nouter != 1 || p->nadd) return 0;
  const RecOuter *o = &p->outer[0];
  Prod pr = {o->scale, {0}, 0, 0};
  prod_add(&pr, o->c, l);
  prod_add(&pr, o->u, l);
  if (pr.bad || pr.k != 1.0) return 0;
  *k = -1;
  *beta = -1;
  for (int i = 0; i < pr.n; i++) {
    int s;
    if (*k < 0 && (s = input_vec(mx, pr.leaf[i], 0, Kd)) >= 0)
      *k = s;
    else if (*beta < 0 && (s = input_scalar(mx, pr.leaf[i])) >= 0)
      *beta = s;
    else
      return 0;
  }
  *v = input_vec(mx, o->w, 1, Vd);
  return *k >= 0 && *v >= 0;
}

/* exp(x) with x a scalar input, param, or (DIAG) an input g[i] over K. */
static int gate_fits(const L *l, const Expr *a, int diag, int Kd, CudaChunkShape *cs,
                     int *gsym) {
  const Mixer *mx = l->mx;
  if (!a || a->kind != EX_CALL || a->fn != FN_EXP || a->nargs != 1) return 0;
  const Expr *x = a->args[0];
  int s;
  if (diag) {
    if ((s = input_vec(mx, x, 0, Kd)) < 0) return 0;
    cs->g_mode = CCG_INPUT;
  } else if ((s = input_scalar(mx, x)) >= 0) {
    cs->g_mode = CCG_INPUT;
  } else if ((s = param_scalar(mx, x)) >= 0) {
    if (l->sp->present[s]) {
      cs->g_mode = CCG_PARAM;
    } else {
      if (!mx->syms[s].init) return 0;
      cs->g_mode = CCG_CONST;
      cs->g_const = lw_const_eval(l, mx->syms[s].init);
      if (!isfinite(cs->g_const)) return 0;
    }
  } else {
    return 0;
  }
  cs->has_g = 1;
  *gsym = s;
  return 1;
}

/* The delta step: dl = 1, one householder rank-one term -beta k k^T, input beta k v^T. */
static int delta_fits(const L *l, const RecStep *p, int Kd, int Vd, int *k, int *v,
                      int *beta) {
  if (p->cls != RC_DPLR || p->side != RS_LEFT || !p->delta || p->nlr != 1) return 0;
  if (!p->dl || p->dl->kind != EX_NUM || p->dl->num != 1.0) return 0;
  if (!outer_fits(l, p, Kd, Vd, k, v, beta)) return 0;
  const RecRankOne *r = &p->lr[0];
  if (!r->householder) return 0;
  Prod pr = {r->scale, {0}, 0, 0};
  prod_add(&pr, r->c, l);
  prod_add(&pr, r->x, l);
  if (pr.bad || pr.k != -1.0) return 0;
  int kx = -1, bx = -1;
  for (int i = 0; i < pr.n; i++) {
    int s;
    if (kx < 0 && (s = input_vec(l->mx, pr.leaf[i], 0, Kd)) >= 0)
      kx = s;
    else if (bx < 0 && (s = input_scalar(l->mx, pr.leaf[i])) >= 0)
      bx = s;
    else
      return 0;
  }
  if (kx != *k || bx != *beta) return 0;
  return input_vec(l->mx, r->y, r->m, Kd) == *k;
}

/* Fills cs (kinds, symbols) from the IR; 0 when no form applies. syms: q, k, v, g, beta, o,
 * scale param (or -1). */
static int match(const L *l, CudaChunkShape *cs, int sy[7], int allow_f32) {
  const RecMixer *rm = l->rm;
  const Mixer *mx = l->mx;
  for (int i = 0; i < 7; i++) sy[i] = -1;
  if (mx->ngrid || rm->nlets || rm->noncausal || rm->nstates != 1 || rm->noutputs != 1)
    return 0;
  const RecState *st = &rm->states[0];
  if (st->ndim != 2 || st->nsteps < 1 || st->nsteps > 2 || st->ncoupled) return 0;
  int Kd = st->shape[0], Vd = st->shape[1];
  int k = -1, v = -1, beta = -1;
  const RecStep *p0 = &st->steps[0];
  if (st->nsteps == 1 && (p0->cls == RC_IDENTITY || p0->cls == RC_SCALAR ||
                          (p0->cls == RC_DIAG && p0->side == RS_LEFT))) {
    cs->kind = p0->cls == RC_DIAG ? CCK_DIAG : CCK_SCALAR;
    if (p0->cls != RC_IDENTITY &&
        !gate_fits(l, p0->cls == RC_SCALAR ? p0->a : p0->dl, p0->cls == RC_DIAG, Kd, cs, &sy[3]))
      return 0;
    if (!outer_fits(l, p0, Kd, Vd, &k, &v, &beta) || beta >= 0) return 0;
  } else if (st->nsteps == 1) {
    cs->kind = CCK_DELTA;
    if (!delta_fits(l, p0, Kd, Vd, &k, &v, &beta)) return 0;
  } else {
    cs->kind = CCK_DELTA;
    if (p0->cls != RC_SCALAR || p0->nouter || p0->nadd) return 0;
    if (!gate_fits(l, p0->a, 0, Kd, cs, &sy[3]) || cs->g_mode != CCG_INPUT) return 0;
    if (!delta_fits(l, &st->steps[1], Kd, Vd, &k, &v, &beta)) return 0;
  }
  cs->has_beta = beta >= 0;
  /* the output */
  const RecOutput *out = &rm->outputs[0];
  const Sym *os = &mx->syms[out->sym];
  if (os->rank != 1 || os->shape[0] != Vd || out->scope.nlhs != 1) return 0;
  const RecOut *n = out->root;
  if (!n || n->kind != RO_READOUT || n->nterms != 1 || n->konst) return 0;
  const RecTerm *t = &n->terms[0];
  const RecRead *r = &t->read;
  if (r->state != 0 || r->version != st->nsteps || r->nidx != 2) return 0;
  if (r->idx[0].kind != RI_VAR || r->idx[1].kind != RI_VAR || r->idx[1].v != 0) return 0;
  int m = r->idx[0].v;
  if (t->summed != ((uint64_t)1 << m)) return 0;
  Prod pr = {t->scale, {0}, 0, 0};
  prod_add(&pr, t->coef, l);
  if (pr.bad || !isfinite(pr.k)) return 0;
  int q = -1, sp = -1;
  for (int i = 0; i < pr.n; i++) {
    int s;
    if (q < 0 && (s = input_vec(mx, pr.leaf[i], m, Kd)) >= 0)
      q = s;
    else if (sp < 0 && (s = param_scalar(mx, pr.leaf[i])) >= 0)
      sp = s;
    else
      return 0;
  }
  if (q < 0) return 0;
  cs->scale = pr.k;
  if (sp >= 0 && !l->sp->present[sp]) { /* the param's default: a constant */
    if (!mx->syms[sp].init) return 0;
    double d = lw_const_eval(l, mx->syms[sp].init);
    if (!isfinite(d)) return 0;
    cs->scale *= d;
    sp = -1;
  }
  sy[0] = q, sy[1] = k, sy[2] = v, sy[4] = beta, sy[5] = out->sym, sy[6] = sp;
  KType it = l->sp->dtype[q];
  if (it != KT_BF16 && it != KT_F16 && !(allow_f32 && it == KT_F32)) return 0;
  if (l->sp->dtype[k] != it || l->sp->dtype[v] != it) return 0;
  cs->in_type = it;
  cs->K = l->sp->dims[Kd];
  cs->V = l->sp->dims[Vd];
  return 1;
}

/* A lowering context for spec (no module yet) and match() on it. */
static int match_spec(const KernelSpec *spec, L *l, CudaChunkShape *cs, int sy[7],
                      int allow_f32) {
  memset(l, 0, sizeof *l);
  l->sp = spec;
  l->rm = spec->rm;
  l->mx = spec->rm->mixer;
  memset(cs, 0, sizeof *cs);
  return match(l, cs, sy, allow_f32);
}

int lower_cuda_match(const KernelSpec *spec, CudaChunkKind *kind) {
  L l;
  CudaChunkShape cs;
  int sy[7];
  if (!match_spec(spec, &l, &cs, sy, 0)) return 0;
  *kind = cs.kind;
  return 1;
}

/* The argument-table slots and storage types of a matched shape from the plan (match's sy). */
static void shape_slots(CudaChunkShape *cs, const KernelSpec *spec, const KernelPlan *plan,
                        const int sy[7]) {
  cs->p_q = plan->ptr[sy[0]], cs->s_q = plan->stride[sy[0]];
  cs->p_k = plan->ptr[sy[1]], cs->s_k = plan->stride[sy[1]];
  cs->p_v = plan->ptr[sy[2]], cs->s_v = plan->stride[sy[2]];
  cs->p_o = plan->ptr[sy[5]], cs->s_o = plan->stride[sy[5]];
  cs->out_type = spec->dtype[sy[5]];
  cs->p_g = cs->s_g = cs->p_beta = cs->s_beta = cs->p_scale = cs->s_scale = -1;
  if (cs->has_g && cs->g_mode != CCG_CONST) {
    cs->p_g = plan->ptr[sy[3]], cs->s_g = plan->stride[sy[3]];
    cs->g_type = spec->dtype[sy[3]];
  }
  if (cs->has_beta) {
    cs->p_beta = plan->ptr[sy[4]], cs->s_beta = plan->stride[sy[4]];
    cs->beta_type = spec->dtype[sy[4]];
  }
  if (sy[6] >= 0) {
    cs->p_scale = plan->ptr[sy[6]], cs->s_scale = plan->stride[sy[6]];
    cs->scale_type = spec->dtype[sy[6]];
  }
  int ssym = spec->rm->states[0].sym;
  cs->p_h0 = plan->state_in[ssym], cs->s_h0 = plan->state_in_stride[ssym];
  cs->p_ht = plan->state_out[ssym], cs->s_ht = plan->state_out_stride[ssym];
  cs->p_cu = plan->cu_seqlens;
  cs->cu_type = spec->cu_type;
  cs->i_B = plan->size_B, cs->i_T = plan->size_T, cs->i_H = plan->size_H, cs->i_N = plan->size_N;
}

/* lower_cuda_chunk with the sequence split allowed or not. */
static int lower_attempt(Arena *a, const KernelSpec *spec, KernelPlan *plan, int allow_segs,
                         char *err, size_t errlen) {
  L l;
  CudaChunkShape cs;
  int sy[7];
  if (!match_spec(spec, &l, &cs, sy, 0)) return -1;
  /* The value split for these kernels: each block holds its chunk's tiles in shared memory and
   * the state on chip, one block an SM (target_items is two a multiprocessor), and every value
   * tile repeats the chunk's work on q and k (Q K^T; the delta form's T solve). So split only
   * where the (sequence, head) pairs alone leave over a quarter of the SMs idle, and then to
   * about fill them once. */
  KernelSpec sp = *spec;
  int64_t segs = allow_segs && spec->segs > 0 ? spec->segs : 1;
  if (sp.vtile <= 0 && sp.target_items > 0) {
    int64_t slots = sp.target_items / 2;
    sp.target_items = slots;
    if (sp.bh > 0 && sp.bh * 4 >= slots * 3) {
      sp.vtile = cs.V; /* no split */
    } else if (sp.bh > 0 && allow_segs && spec->segs == 0 &&
               (cs.kind != CCK_DELTA || sp.bh * 8 <= slots)) {
      /* the sequence split (lower_cuda_seg.c): the scalar and diagonal forms take the whole
       * value dim a block; the delta form two value tiles, whose local blocks carry half of
       * the transition's columns each (the state tile as wide as the unsplit one). Then as
       * many segments (a power of two, at most 32: the combine walks them one after
       * another) as keep the blocks in one wave. On an H100 (132 SMs), K = V = 128: 16
       * pairs -> 8 segments (delta: 4), 32 pairs -> 4. The delta form's local pass costs
       * more (the transition's columns): at 32 pairs its value split measured as fast
       * (DeltaNet (2, 8192): 1.58 ms split, 1.64 ms in segments), so it splits sequences
       * only below an eighth of the SMs' worth of pairs (at 16: 7.38 -> 3.28 ms) */
      int64_t tiles = cs.kind == CCK_DELTA && cs.V >= 32 ? 2 : 1;
      sp.vtile = ((cs.V + tiles - 1) / tiles + 15) / 16 * 16;
      if (sp.vtile > cs.V) sp.vtile = cs.V;
      tiles = (cs.V + sp.vtile - 1) / sp.vtile;
      segs = 1;
      while (segs < 32 && sp.bh * tiles * segs * 2 <= slots) segs *= 2;
    } else if (sp.bh > 0 && cs.kind != CCK_DELTA) {
      /* segments given: as many value tiles as keep every block in one wave (a second,
       * partial wave costs a whole block's time), 16 columns at least */
      int64_t tiles = slots / (sp.bh * segs);
      if (tiles < 1) tiles = 1;
      int64_t w = (cs.V + tiles - 1) / tiles;
      w = (w + 15) / 16 * 16;
      sp.vtile = w < cs.V ? w : cs.V;
    }
  }
  spec = &sp;
  l.sp = spec;
  if (lw_begin(&l, a, spec, plan, STRAT_CHUNK, "chunk", "(sequence, head)", err, errlen))
    return 1;
  lw_plan_split(&l, 1);
  if (l.split) l.f->items = "(sequence, head, value tile)";
  cs.vtile = plan->vtile > 0 ? plan->vtile : cs.V;
  cs.vtiles = plan->vtiles > 0 ? plan->vtiles : 1;
  cs.segs = segs;
  plan->segs = segs;
  if (segs > 1) l.f->items = l.split ? "(sequence, head, value tile, segment)" : "(sequence, head, segment)";
  int64_t C = spec->chunk;
  if (C < 16 || C > 128 || C % 16) C = 64;
  cs.chunk = C;
  plan->chunk = C;
  shape_slots(&cs, spec, plan, sy);
  if (l.failed || a->failed) return lw_finish(&l);

  char name[256];
  if (mixc_emit_c_func_name(l.f, name, sizeof name) >= sizeof name) return -1;
  CudaChunkKernel kk[3];
  int nk = 0;
  int rc = cuda_chunk_kernels(&cs, name, spec->gpu_arch, spec->gpu_smem_optin, kk, &nk, err,
                              errlen);
  if (rc != 0) return rc; /* -1: the KIR kernel (lower_mixer starts over) */
  /* the module's functions, in launch order: l.f is the first */
  for (int i = 0; i < nk && rc == 0; i++) {
    KFunc *f = i == 0 ? l.f : kir_func(l.m, kk[i].name);
    if (!f) {
      rc = 1;
      snprintf(err, errlen, "out of memory");
      break;
    }
    if (nk > 1) {
      if (i == 0) f->name = arena_strdup(a, kk[0].name);
      f->items = l.f->items;
      char cname[256];
      mixc_emit_c_func_name(f, cname, sizeof cname);
      if (strcmp(cname, kk[i].name) != 0) {
        snprintf(err, errlen, "kernel name %s printed as %s", kk[i].name, cname);
        rc = 1;
        break;
      }
    }
    f->cuda_src = arena_strdup(a, kk[i].src ? kk[i].src : "");
    f->cuda_threads = kk[i].threads;
    f->cuda_smem = kk[i].smem;
    f->scratch_floats = kk[i].scratch_floats;
    f->item_floats = kk[i].item_floats;
  }
  cuda_chunk_kernels_free(kk, nk);
  if (rc) return rc;
  return lw_finish(&l);
}

int lower_cuda_chunk(Arena *a, const KernelSpec *spec, KernelPlan *plan, char *err,
                     size_t errlen) {
  if (!spec->gpu || spec->no_native) return -1;
  int rc = lower_attempt(a, spec, plan, 1, err, errlen);
  /* a split that does not fit (shared memory, the transition's columns): without it */
  if (rc < 0) rc = lower_attempt(a, spec, plan, 0, err, errlen);
  return rc;
}

/* The recurrent (decode) kernel (lower_cuda_rec.c): the same forms, f32 inputs too (no tensor
 * cores), the state tile on chip across the tokens. Its own value split (cuda_rec_vtile: the
 * blocks fill the SMs at small B H; at most 128 columns a block), no segments, no chunks. */
int lower_cuda_recurrent(Arena *a, const KernelSpec *spec, KernelPlan *plan, char *err,
                         size_t errlen) {
  if (!spec->gpu || spec->no_native) return -1;
  L l;
  CudaChunkShape cs;
  int sy[7];
  if (!match_spec(spec, &l, &cs, sy, 1)) return -1;
  KernelSpec sp = *spec;
  if (sp.vtile <= 0) sp.vtile = cuda_rec_vtile(cs.V, sp.bh, sp.target_items);
  if (sp.vtile > 128) sp.vtile = 128; /* the kernel's widest tile */
  spec = &sp;
  if (lw_begin(&l, a, spec, plan, STRAT_RECURRENT, "recurrent", "(sequence, head)", err, errlen))
    return 1;
  lw_plan_split(&l, 1);
  if (l.split) l.f->items = "(sequence, head, value tile)";
  cs.vtile = plan->vtile > 0 ? plan->vtile : cs.V;
  cs.vtiles = plan->vtiles > 0 ? plan->vtiles : 1;
  cs.segs = 1;
  plan->segs = 1;
  plan->chunk = 0;
  shape_slots(&cs, spec, plan, sy);
  if (l.failed || a->failed) return lw_finish(&l);
  if (cs.vtile > 128) return -1; /* a state whose columns do not split */
  char name[256];
  if (mixc_emit_c_func_name(l.f, name, sizeof name) >= sizeof name) return -1;
  char *src = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&src, &len);
  if (!f) {
    snprintf(err, errlen, "out of memory printing the CUDA kernel");
    return 1;
  }
  unsigned threads = 0, smem = 0;
  int rc = cuda_rec_source(f, &cs, name, spec->gpu_arch, &threads, &smem, err, errlen);
  if (fclose(f) != 0 && rc == 0) {
    snprintf(err, errlen, "out of memory printing the CUDA kernel");
    rc = 1;
  }
  if (rc == 0) {
    l.f->cuda_src = arena_strdup(a, src ? src : "");
    l.f->cuda_threads = threads;
    l.f->cuda_smem = smem;
    l.f->scratch_floats = 0;
    l.f->item_floats = 0;
  }
  free(src);
  if (rc) return rc; /* -1: the KIR kernel (lower_mixer goes on) */
  return lw_finish(&l);
}
