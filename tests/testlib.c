/* testlib: scaffolding shared by the test programs (testlib.h). */
#define _POSIX_C_SOURCE 200809L
#include "testlib.h"
#include "testlib_cuda.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gen_mixer.h"
#include "backends/c/c_emit.h"
#include "compiler/arena.h"
#include "compiler/kir.h"
#include "runtime/half.h"

/* ==== files ==== */

char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *b = NULL;
  if (!fseek(f, 0, SEEK_END)) {
    long n = ftell(f);
    if (n >= 0 && !fseek(f, 0, SEEK_SET) && (b = malloc((size_t)n + 1))) {
      if (fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
      } else {
        b[n] = 0;
        if (len) *len = (size_t)n;
      }
    }
  }
  fclose(f);
  return b;
}

const RecMixer *compile_file(Compilation *comp, const char *path) {
  size_t n = 0;
  char *src = read_file(path, &n);
  if (!src || compile_source(comp, path, src, n, STAGE_REC)) {
    printf("FAIL %s: does not compile\n", path);
    free(src);
    if (src) compilation_free(comp);
    return NULL;
  }
  free(src);
  return comp->rec->mixers[0];
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int list_examples(char **files, int max) {
  DIR *dir = opendir("examples");
  int nf = 0;
  struct dirent *de;
  while (dir && (de = readdir(dir)) && nf < max) {
    size_t l = strlen(de->d_name);
    if (l > 4 && !strcmp(de->d_name + l - 4, ".mix") && (files[nf] = malloc(l + 16)))
      snprintf(files[nf++], l + 16, "examples/%s", de->d_name);
  }
  if (dir) closedir(dir);
  qsort(files, (size_t)nf, sizeof files[0], cmp_str);
  return nf;
}

int each_example(ExampleFn fn, void *ctx) {
  char *files[256];
  int nf = list_examples(files, 256), bad = 0;
  for (int i = 0; i < nf; i++) {
    Compilation comp;
    const RecMixer *rm = compile_file(&comp, files[i]);
    if (rm) {
      fn(ctx, files[i], &comp, rm);
      compilation_free(&comp);
    } else {
      bad++;
    }
    free(files[i]);
  }
  if (nf == 0) {
    printf("FAIL: no examples found (run from the repository root)\n");
    bad++;
  }
  return bad;
}

int each_generated(int count, MixcRng *rng, unsigned long long seed, ExampleFn fn, void *ctx,
                   const int *failed) {
  int bad = 0;
  for (int g = 0; g < count; g++) {
    char name[32];
    snprintf(name, sizeof name, "gen%d", g);
    char *text = gen_mixer_text(rng, name);
    Compilation c;
    if (!text || compile_source(&c, "gen.mix", text, strlen(text), STAGE_REC) || !c.rec ||
        c.rec->nmixers != 1) {
      printf("FAIL %s: the generated mixer does not compile:\n%s", name, text ? text : "");
      bad++;
    } else {
      int before = *failed;
      fn(ctx, "gen.mix", &c, c.rec->mixers[0]);
      if (*failed != before) printf("  (the mixer, seed %llu):\n%s", seed, text);
    }
    compilation_free(&c);
    free(text);
  }
  return bad;
}

uint64_t test_seed(void) {
  const char *s = getenv("MIXC_TEST_SEED");
  if (s && *s) return strtoull(s, NULL, 0);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec;
}

RefBinding ref_binding(int64_t B, int64_t T, int64_t H, int64_t Y, int64_t X,
                       const int64_t *dims, const double *const *in, double *const *out) {
  RefBinding b;
  memset(&b, 0, sizeof b);
  b.B = B;
  b.T = T;
  b.H = H;
  b.Y = Y;
  b.X = X;
  b.dims = dims;
  b.in = in;
  b.out = out;
  return b;
}

/* ==== kernel runs ==== */

double load_as(KType t, const void *p, int64_t i) {
  if (t == KT_F32) return ((const float *)p)[i];
  return mixc_bf16_to_f32(((const uint16_t *)p)[i]);
}

void store_as(KType t, void *p, int64_t i, double v) {
  if (t == KT_F32)
    ((float *)p)[i] = (float)v;
  else
    ((uint16_t *)p)[i] = mixc_f32_to_bf16((float)v);
}

int64_t offset_of(const Tensor *t, int64_t flat) {
  int64_t off = 0;
  for (int d = t->rank - 1; d >= 0; d--) {
    off += (flat % t->shape[d]) * t->stride[d];
    flat /= t->shape[d];
  }
  return off;
}

int make_storage(Tensor *t, int btH, int strided) {
  int64_t st = 1;
  if (strided && btH && t->rank >= 3) {
    int64_t inner = 1;
    for (int d = 3; d < t->rank; d++) inner *= t->shape[d];
    for (int d = t->rank - 1; d >= 3; d--) {
      t->stride[d] = st;
      st *= t->shape[d];
    }
    t->stride[1] = inner;                 /* T */
    t->stride[2] = inner * t->shape[1];   /* H */
    t->stride[0] = t->stride[2] * t->shape[2];
    t->alloc = t->stride[0] * t->shape[0];
  } else {
    for (int d = t->rank - 1; d >= 0; d--) {
      t->stride[d] = st;
      st *= t->shape[d] + (strided && d == t->rank - 1 ? 1 : 0);
    }
    t->alloc = st;
  }
  size_t es = t->type == KT_F32 ? 4 : 2;
  t->data = calloc((size_t)(t->alloc ? t->alloc : 1), es);
  return t->data == NULL;
}

void fill_storage(Tensor *t) {
  for (int64_t i = 0; i < t->numel; i++) {
    double v = t->type == KT_F32 ? mixc_round_f32(t->ref[i]) : mixc_round_bf16(t->ref[i]);
    t->ref[i] = v; /* the reference sees exactly what the kernel reads */
    store_as(t->type, t->data, offset_of(t, i), v);
  }
}

void poison(Tensor *t) {
  for (int64_t i = 0; i < t->numel; i++) store_as(t->type, t->data, offset_of(t, i), NAN);
}

double rel_err(const Tensor *t, const double *ref, int *nan) {
  double emax = 0, rmax = 0;
  *nan = 0;
  for (int64_t i = 0; i < t->numel; i++) {
    double x = load_as(t->type, t->data, offset_of(t, i));
    double d = fabs(x - ref[i]);
    if (!(d <= INFINITY)) *nan = 1;
    if (d > emax) emax = d;
    if (fabs(ref[i]) > rmax) rmax = fabs(ref[i]);
  }
  return emax / ref_scale(rmax);
}

double ref_scale(double max_ref) {
  return max_ref > 1e-30 ? max_ref : max_ref > 0 ? 1e-30 : 1;
}

/* Where chunk forms overflow or lose everything if an exponent is ever positive or a decay is
 * divided out. */
void stress_gates(MixcRng *rng, double *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    double u = mixc_rng_uniform(rng);
    x[i] = mixc_rng_uniform(rng) < 0.5 ? -20.0 - 10.0 * u : -1e-5 * u;
  }
}

static int divides(const Expr *e) {
  if (!e) return 0;
  if (e->kind == EX_BIN && e->op == '/') return 1;
  for (int i = 0; i < e->nargs; i++)
    if (divides(e->args[i])) return 1;
  return 0;
}

int mixer_divides(const Mixer *m) {
  for (int i = 0; i < m->nstmts; i++)
    if (m->stmts[i]->kind == ST_OUTPUT && divides(m->stmts[i]->rhs)) return 1;
  return 0;
}

int kcase_alloc(KCase *c, const RecMixer *rm) {
  memset(c, 0, sizeof *c);
  c->rm = rm;
  c->m = rm->mixer;
  size_t ns = (size_t)c->m->nsyms + 1;
  c->dims = calloc(ns, sizeof *c->dims);
  c->dtype = calloc(ns, sizeof *c->dtype);
  c->present = calloc(ns, 1);
  c->want = calloc(ns, 1);
  c->sp.rm = rm;
  c->sp.dims = c->dims;
  c->sp.dtype = c->dtype;
  c->sp.present = c->present;
  c->sp.want = c->want;
  return !c->dims || !c->dtype || !c->present || !c->want;
}

int kcase_draw(KCase *c, const RecMixer *rm, int alt, int chunked, MixcRng *rng) {
  static const int64_t choices[] = {3, 5, 16};
  if (kcase_alloc(c, rm)) return 1;
  const Mixer *m = c->m;
  for (int s = 0; s < m->nsyms; s++) {
    const Sym *y = &m->syms[s];
    if (y->kind == SYM_DIM)
      c->dims[s] = y->fixed ? y->fixed : choices[(int)(mixc_rng_uniform(rng) * 3)];
    c->dtype[s] = y->kind == SYM_STATE || alt == 0 ? KT_F32 : KT_BF16;
    /* alternate: params given or defaulted, initial states given or zero */
    c->present[s] = y->kind == SYM_PARAM ? (!y->init || alt == 1)
                                         : y->kind == SYM_STATE && !m->ngrid && alt == 0;
    c->want[s] = y->kind == SYM_STATE && !m->ngrid;
  }
  c->sp.strategy = chunked ? STRAT_CHUNK : STRAT_RECURRENT;
  /* 32: T = 70 spans several chunks and a partial one, and each full chunk two sub-chunks of
   * the diagonal-decay rebasing */
  c->sp.chunk = 32;
  return 0;
}

void kcase_free(KCase *c) {
  free(c->dims);
  free(c->dtype);
  free(c->present);
  free(c->want);
  c->dims = NULL;
  c->dtype = NULL;
  c->present = c->want = NULL;
}

void layout_shape(const KCase *c, int s, int state, int64_t B, int64_t N, int64_t T, int64_t H,
                  int64_t Y, int64_t X, Tensor *t) {
  const Sym *y = &c->m->syms[s];
  int n = 0;
  if (state) {
    t->shape[n++] = N;
    t->shape[n++] = H;
  } else if (y->kind == SYM_PARAM) {
    t->shape[n++] = H;
  } else {
    t->shape[n++] = B;
    if (c->m->ngrid) {
      t->shape[n++] = Y;
      t->shape[n++] = X;
    } else {
      t->shape[n++] = T;
    }
    t->shape[n++] = H;
    if (y->per_direction) t->shape[n++] = c->m->ndirs;
  }
  for (int i = 0; i < y->rank; i++) t->shape[n++] = c->dims[y->shape[i]];
  t->rank = n;
  t->numel = 1;
  for (int i = 0; i < n; i++) t->numel *= t->shape[i];
}

int krun_make(KRun *r, const KCase *c, int64_t T, MixcRng *rng, int stress, int64_t *ints,
              PlaceFn place, void *ctx, char *err, size_t n) {
  const Mixer *m = c->m;
  int ns = m->nsyms, grid = m->ngrid > 0;
  memset(r, 0, sizeof *r);
  r->B = 2;
  r->H = 3;
  r->Y = grid ? 3 : 0;
  r->X = grid ? 4 : 0;
  r->T = grid ? r->Y * r->X : T;
  r->ns = ns;
  int64_t B = r->B, H = r->H, Y = r->Y, X = r->X;
  T = r->T;
  r->ts = calloc((size_t)ns, sizeof *r->ts);
  r->fin = calloc((size_t)ns, sizeof *r->fin);
  r->refout = calloc((size_t)ns, sizeof *r->refout);
  r->refin = calloc((size_t)ns, sizeof *r->refin);
  r->roles = calloc((size_t)ns, sizeof *r->roles);
  if (!r->ts || !r->fin || !r->refout || !r->refin || !r->roles) return 1;
  mixc_input_roles(m, r->roles);
  int bad = 0, placed = 0;
  for (int s = 0; s < ns && !bad; s++) {
    const Sym *y = &m->syms[s];
    int is_data = y->kind == SYM_INPUT || y->kind == SYM_OUTPUT || c->pl.ptr[s] >= 0;
    if (is_data) {
      Tensor *t = &r->ts[s];
      t->type = c->dtype[s];
      layout_shape(c, s, 0, B, B, T, H, Y, X, t);
      t->ref = calloc((size_t)(t->numel ? t->numel : 1), sizeof(double));
      bad |= !t->ref || make_storage(t, y->kind != SYM_PARAM, 1);
      if (bad) break;
      int64_t last = y->rank ? c->dims[y->shape[y->rank - 1]] : 1;
      if (y->kind == SYM_OUTPUT) {
        poison(t);
        r->refout[s] = t->ref;
      } else {
        if (stress && r->roles[s] == ROLE_LOG_GATE)
          stress_gates(rng, t->ref, t->numel);
        else
          mixc_fill(rng, r->roles[s], t->ref, t->numel, last);
        fill_storage(t);
        r->refin[s] = t->ref;
      }
      bad |= placed = place(ctx, c->pl.ptr[s], s, 0, t, err, n) ? 2 : 0;
      for (int d = 0; d < t->rank; d++) ints[c->pl.stride[s] + d] = t->stride[d];
    }
    if (y->kind == SYM_STATE && c->pl.state_in[s] >= 0) {
      Tensor *t = &r->ts[s];
      t->type = KT_F32;
      layout_shape(c, s, 1, B, B, T, H, Y, X, t);
      t->ref = calloc((size_t)t->numel, sizeof(double));
      bad |= !t->ref || make_storage(t, 0, 1);
      if (bad) break;
      mixc_fill(rng, r->roles[s], t->ref, t->numel, 1); /* normal, or non-negative for a normaliser */
      fill_storage(t);
      r->refin[s] = t->ref;
      bad |= placed = place(ctx, c->pl.state_in[s], s, 0, t, err, n) ? 2 : 0;
      for (int d = 0; d < t->rank; d++) ints[c->pl.state_in_stride[s] + d] = t->stride[d];
    }
    if (y->kind == SYM_STATE && c->pl.state_out[s] >= 0) {
      Tensor *t = &r->fin[s];
      t->type = KT_F32;
      layout_shape(c, s, 1, B, B, T, H, Y, X, t);
      t->ref = calloc((size_t)t->numel, sizeof(double));
      bad |= !t->ref || make_storage(t, 0, 1);
      if (bad) break;
      poison(t);
      r->refout[s] = t->ref;
      bad |= placed = place(ctx, c->pl.state_out[s], s, 1, t, err, n) ? 2 : 0;
      for (int d = 0; d < t->rank; d++) ints[c->pl.state_out_stride[s] + d] = t->stride[d];
    }
  }
  ints[c->pl.size_B] = B;
  ints[c->pl.size_T] = T;
  ints[c->pl.size_H] = H;
  ints[c->pl.size_N] = B;
  if (grid) {
    ints[c->pl.size_Y] = Y;
    ints[c->pl.size_X] = X;
  }
  return bad ? (placed ? 2 : 1) : 0;
}

int krun_reference(const KRun *r, const KCase *c, char *err, size_t n) {
  RefBinding b = ref_binding(r->B, r->T, r->H, r->Y, r->X, c->dims, r->refin, r->refout);
  return mixc_ref_run(c->m, &b, err, n);
}

void krun_free(KRun *r) {
  for (int s = 0; s < r->ns && r->ts && r->fin; s++) {
    free(r->ts[s].ref);
    free(r->ts[s].data);
    free(r->fin[s].ref);
    free(r->fin[s].data);
  }
  free(r->ts);
  free(r->fin);
  free(r->refout);
  free(r->refin);
  free(r->roles);
  memset(r, 0, sizeof *r);
}

int check_tensors(const Mixer *m, const Tensor *ts, const Tensor *fin, double *const *refout,
                  double tol, double stol, int ok, double *worst, int *nan) {
  for (int s = 0; ok && s < m->nsyms; s++) {
    int n = 0;
    if (m->syms[s].kind == SYM_OUTPUT) {
      double e = rel_err(&ts[s], refout[s], &n);
      if (e > *worst) *worst = e;
      if (n || !(e <= tol)) ok = 0;
      *nan |= n;
    }
    if (fin[s].data) {
      double e = rel_err(&fin[s], refout[s], &n);
      if (e > *worst) *worst = e;
      if (n || !(e <= stol)) ok = 0;
      *nan |= n;
    }
  }
  return ok;
}

/* ==== API calls ==== */

size_t esize(mixc_dtype d) { return d == MIXC_F32 ? 4 : 2; }

int buf_make(Buf *b, mixc_dtype dt, int ndim, const int64_t *shape, int layout, int lead,
             int pad) {
  memset(b, 0, sizeof b[0]);
  b->t.dtype = dt;
  b->t.ndim = ndim;
  int perm[MAXD];
  for (int d = 0; d < ndim; d++) perm[d] = d;
  if (layout == L_TRANSPOSE && lead >= 3) {
    /* [B, T, H, ...] stored as [B, H, T, ...]; [B, Y, X, H, ...] as [B, H, Y, X, ...] */
    int h = lead - 1;
    for (int d = h; d > 1; d--) perm[d] = perm[d - 1];
    perm[1] = h;
  }
  int64_t st = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    int d = perm[i];
    b->t.shape[d] = shape[d];
    if (layout == L_BROADCAST_B && d == 0 && lead) {
      b->t.stride[d] = 0;
      continue;
    }
    b->t.stride[d] = st;
    st *= shape[d] + (i == ndim - 1 ? pad : 0);
  }
  b->bytes = (size_t)(st > 0 ? st : 1) * esize(dt);
  b->mem = calloc(1, b->bytes);
  b->t.data = b->mem;
  return b->mem != NULL;
}

void buf_free(Buf *b) {
  free(b->mem);
  memset(b, 0, sizeof *b);
}

void buf_poison(Buf *b) {
  size_t n = b->bytes / esize(b->t.dtype);
  for (size_t i = 0; i < n; i++) {
    if (b->t.dtype == MIXC_F32) {
      float f = NAN;
      memcpy((char *)b->mem + 4 * i, &f, 4);
    } else {
      uint16_t h = b->t.dtype == MIXC_BF16 ? 0x7fc0 : 0x7e00;
      memcpy((char *)b->mem + 2 * i, &h, 2);
    }
  }
}

int64_t buf_numel(const Buf *b) {
  int64_t n = 1;
  for (int d = 0; d < b->t.ndim; d++) n *= b->t.shape[d];
  return n;
}

int64_t buf_offset(const Buf *b, int64_t flat) {
  int64_t off = 0;
  for (int d = b->t.ndim - 1; d >= 0; d--) {
    int64_t n = b->t.shape[d];
    off += (flat % n) * b->t.stride[d];
    flat /= n;
  }
  return off;
}

void buf_put(Buf *b, const double *src) {
  int64_t n = buf_numel(b);
  for (int64_t i = 0; i < n; i++) {
    char *p = (char *)b->mem + (size_t)buf_offset(b, i) * esize(b->t.dtype);
    if (b->t.dtype == MIXC_F32) {
      float f = (float)src[i];
      memcpy(p, &f, 4);
    } else {
      uint16_t h = b->t.dtype == MIXC_BF16 ? mixc_f32_to_bf16((float)src[i])
                                           : mixc_f32_to_f16((float)src[i]);
      memcpy(p, &h, 2);
    }
  }
}

void buf_get(const Buf *b, double *dst) {
  int64_t n = buf_numel(b);
  for (int64_t i = 0; i < n; i++) {
    const char *p = (const char *)b->mem + (size_t)buf_offset(b, i) * esize(b->t.dtype);
    if (b->t.dtype == MIXC_F32) {
      float f;
      memcpy(&f, p, 4);
      dst[i] = f;
    } else {
      uint16_t h;
      memcpy(&h, p, 2);
      dst[i] = b->t.dtype == MIXC_BF16 ? mixc_bf16_to_f32(h) : mixc_f16_to_f32(h);
    }
  }
}

int ex_load(Ex *x, mixc_context *ctx, const char *path, char *err, size_t n) {
  memset(x, 0, sizeof *x);
  size_t len = 0;
  char *src = read_file(path, &len);
  if (!src) return snprintf(err, n, "cannot read %s", path), 0;
  int nerr = compile_source(&x->comp, path, src, len, STAGE_REC);
  mixc_error e;
  mixc_status st = nerr ? MIXC_ERROR_SOURCE : mixc_module_compile(ctx, src, len, path, &x->mod, &e);
  free(src);
  if (nerr || st != MIXC_OK || !x->comp.prog || x->comp.prog->nmixers != 1)
    return snprintf(err, n, "%s does not compile: %s", path, nerr ? "(source errors)" : e.message),
           0;
  x->m = x->comp.prog->mixers[0];
  if (x->m->nsyms > MAXSYM) return snprintf(err, n, "too many symbols"), 0;
  snprintf(x->name, sizeof x->name, "%s", x->m->name.name);
  x->grid = x->m->ngrid > 0;
  x->ndir = x->grid && x->m->ndirs > 0 ? x->m->ndirs : 1;
  mixc_input_roles(x->m, x->roles);
  return 1;
}

void data_free(Data *d) {
  for (int s = 0; s < MAXSYM; s++) {
    free(d->in[s]);
    free(d->out[s]);
  }
  free(d->cu);
  memset(d, 0, sizeof *d);
}

int64_t feat(const Ex *x, int s) {
  const Sym *y = &x->m->syms[s];
  int64_t n = 1;
  for (int p = 0; p < y->rank; p++) n *= x->dims[y->shape[p]];
  return n;
}

int tshape(const Ex *x, const Data *d, int s, int state, int64_t *sh, int *lead) {
  const Sym *y = &x->m->syms[s];
  int r = 0;
  *lead = 0;
  if (state) {
    sh[r++] = d->N;
    sh[r++] = d->H;
  } else if (y->kind == SYM_PARAM) {
    sh[r++] = d->H;
  } else {
    sh[r++] = d->B;
    if (x->grid) {
      sh[r++] = d->Y;
      sh[r++] = d->X;
    } else {
      sh[r++] = d->T;
    }
    sh[r++] = d->H;
    *lead = r;
    if (y->kind == SYM_INPUT && y->per_direction) sh[r++] = x->ndir;
  }
  for (int p = 0; p < y->rank; p++) sh[r++] = x->dims[y->shape[p]];
  return r;
}

double round_to(mixc_dtype dt, double v) {
  return dt == MIXC_BF16  ? mixc_round_bf16(v)
         : dt == MIXC_F16 ? mixc_round_f16(v)
                          : mixc_round_f32(v);
}

int data_make(const Ex *x, const Cfg *c, MixcRng *rng, Data *d) {
  memset(d, 0, sizeof *d);
  const Mixer *m = x->m;
  d->B = c->B;
  d->H = 3;
  d->Y = c->Y;
  d->X = c->X;
  d->T = x->grid ? c->Y * c->X : c->T;
  d->N = d->B;
  if (c->seqlens) {
    d->cu = malloc(sizeof(int64_t) * (size_t)(c->nseq + 1));
    if (!d->cu) return 0;
    d->cu[0] = 0;
    for (int i = 0; i < c->nseq; i++) d->cu[i + 1] = d->cu[i] + c->seqlens[i];
    d->T = d->cu[c->nseq];
    d->N = c->nseq;
  }
  for (int s = 0; s < m->nsyms; s++) {
    const Sym *y = &m->syms[s];
    int64_t last = y->rank ? x->dims[y->shape[y->rank - 1]] : 1, n = feat(x, s);
    int nd = y->per_direction ? x->ndir : 1;
    if (y->kind == SYM_INPUT)
      n *= d->B * d->T * d->H * nd;
    else if (y->kind == SYM_PARAM)
      n *= d->H;
    else if (y->kind == SYM_OUTPUT)
      n *= d->B * d->T * d->H;
    else if (y->kind == SYM_STATE)
      n *= d->N * d->H;
    else
      continue;
    d->numel[s] = n;
    size_t bytes = sizeof(double) * (size_t)(n > 0 ? n : 1);
    int give = y->kind == SYM_INPUT || (y->kind == SYM_PARAM && (c->params || !y->init)) ||
               (y->kind == SYM_STATE && c->init);
    if (give) {
      d->in[s] = malloc(bytes);
      if (!d->in[s]) return 0;
      mixc_fill(rng, x->roles[s], d->in[s], n, last); /* states: normal, or non-negative */
    }
    if (y->kind == SYM_OUTPUT || (y->kind == SYM_STATE && c->fin)) {
      d->out[s] = malloc(bytes);
      if (!d->out[s]) return 0;
    }
  }
  /* Ranges some mixers need (examples/README.md): non-negative features of the normalised
   * forms; RWKV-7's b = -a * alpha (a removal key times a rate in (0, 1)). */
  const char *nonneg[] = {"linear_attn_norm", "q", "linear_attn_norm", "k",
                          "lightnet",         "q", "lightnet2d",       "q"};
  for (int i = 0; i < 8; i += 2) {
    int s = mixer_find(m, nonneg[i + 1]);
    if (strcmp(m->name.name, nonneg[i]) || s < 0 || !d->in[s]) continue;
    for (int64_t j = 0; j < d->numel[s]; j++) d->in[s][j] = fabs(d->in[s][j]);
  }
  if (!strcmp(m->name.name, "rwkv7")) {
    int sa = mixer_find(m, "a"), sb = mixer_find(m, "b");
    int64_t K = feat(x, sa);
    for (int64_t r = 0; r * K < d->numel[sa]; r++) {
      double alpha = mixc_rng_uniform(rng);
      for (int64_t i = 0; i < K; i++) d->in[sb][r * K + i] = -d->in[sa][r * K + i] * alpha;
    }
  }
  /* Broadcast over B: every batch row holds row 0. */
  if (c->layout_in == L_BROADCAST_B)
    for (int s = 0; s < m->nsyms; s++) {
      if (m->syms[s].kind != SYM_INPUT || !d->in[s] || d->B < 2) continue;
      int64_t row = d->numel[s] / d->B;
      for (int64_t b = 1; b < d->B; b++)
        memcpy(d->in[s] + b * row, d->in[s], sizeof(double) * (size_t)row);
    }
  for (int s = 0; s < m->nsyms; s++) {
    if (!d->in[s]) continue;
    mixc_dtype dt = m->syms[s].kind == SYM_STATE ? MIXC_F32 : c->dt;
    for (int64_t j = 0; j < d->numel[s]; j++) d->in[s][j] = round_to(dt, d->in[s][j]);
  }
  return 1;
}

int run_reference(const Ex *x, Data *d, char *err, size_t n) {
  RefBinding b = ref_binding(d->B, d->T, d->H, d->Y, d->X, x->dims,
                             (const double *const *)d->in, d->out);
  b.cu_seqlens = d->cu;
  b.nseq = d->cu ? d->N : 0;
  return mixc_ref_run(x->m, &b, err, n);
}

double max_abs_err(const double *ref, const double *got, int64_t n, double *mx, int64_t *at) {
  double err = 0;
  *mx = 0;
  *at = -1;
  for (int64_t i = 0; i < n; i++) {
    double r = ref[i], g = got[i];
    if (fabs(r) > *mx) *mx = fabs(r);
    double e = fabs(g - r);
    if (!(e <= err)) { /* NaN counts */
      err = isnan(e) ? INFINITY : e;
      *at = i;
    }
  }
  return err;
}

/* The filled buffer b to the device, where the call has one. */
static int place(const Call *k, Buf *b, char *err, size_t n) {
  return !k->dev || k->dev->place(b, err, n);
}

int call_make(const Ex *x, const Cfg *c, const Data *d, Call *k, const CallDevice *dev, char *err,
              size_t n) {
  memset(k, 0, sizeof *k);
  k->dev = dev;
  const Mixer *m = x->m;
  int64_t sh[MAXD + 2];
  int lead;
  for (int s = 0; s < m->nsyms; s++) {
    const Sym *y = &m->syms[s];
    if (y->kind == SYM_INPUT || (y->kind == SYM_PARAM && d->in[s])) {
      int r = tshape(x, d, s, 0, sh, &lead);
      int lay = y->kind == SYM_PARAM ? L_CONTIG : c->layout_in;
      if (!buf_make(&k->buf[s], c->dt, r, sh, lay, lead, 0))
        return snprintf(err, n, "out of memory"), 0;
      buf_put(&k->buf[s], d->in[s]);
      if (!place(k, &k->buf[s], err, n)) return 0;
      k->in[k->nin].name = y->name;
      k->in[k->nin++].tensor = k->buf[s].t;
    } else if (y->kind == SYM_OUTPUT) {
      int r = tshape(x, d, s, 0, sh, &lead);
      if (!buf_make(&k->buf[s], c->dt, r, sh, c->layout_out, lead, c->layout_out ? 3 : 0))
        return snprintf(err, n, "out of memory"), 0;
      buf_poison(&k->buf[s]);
      if (!place(k, &k->buf[s], err, n)) return 0;
      k->out[k->nout].name = y->name;
      k->out[k->nout++].tensor = k->buf[s].t;
    } else if (y->kind == SYM_STATE) {
      int r = tshape(x, d, s, 1, sh, &lead);
      if (d->in[s]) {
        if (!buf_make(&k->sin[s], MIXC_F32, r, sh, L_CONTIG, 0, 0))
          return snprintf(err, n, "out of memory"), 0;
        buf_put(&k->sin[s], d->in[s]);
        if (!place(k, &k->sin[s], err, n)) return 0;
        k->init[k->ninit].name = y->name;
        k->init[k->ninit++].tensor = k->sin[s].t;
      }
      if (d->out[s]) {
        if (!buf_make(&k->sout[s], MIXC_F32, r, sh, c->layout_out ? L_TRANSPOSE : L_CONTIG, 0,
                      c->layout_out ? 1 : 0))
          return snprintf(err, n, "out of memory"), 0;
        buf_poison(&k->sout[s]);
        if (!place(k, &k->sout[s], err, n)) return 0;
        k->fin[k->nfin].name = y->name;
        k->fin[k->nfin++].tensor = k->sout[s].t;
      }
    }
  }
  if (d->cu) {
    int64_t n1 = d->N + 1, st = c->cu_stride > 0 ? c->cu_stride : 1, len = (n1 - 1) * st + 1;
    mixc_dtype dt = c->cu_i32 ? MIXC_I32 : MIXC_I64;
    k->cub.bytes = (size_t)len * (c->cu_i32 ? 4 : 8);
    k->cub.mem = calloc(1, k->cub.bytes);
    if (!k->cub.mem) return snprintf(err, n, "out of memory"), 0;
    for (int64_t i = 0; i < n1; i++) {
      if (c->cu_i32)
        ((int32_t *)k->cub.mem)[i * st] = (int32_t)d->cu[i];
      else
        ((int64_t *)k->cub.mem)[i * st] = d->cu[i];
    }
    k->cub.t = mixc_tensor_contiguous(k->cub.mem, dt, 1, &n1);
    k->cub.t.stride[0] = st;
    if (!place(k, &k->cub, err, n)) return 0;
    k->has_cu = 1;
  }
  return 1;
}

static void release(Call *k, Buf *b) {
  if (k->dev && b->d) k->dev->release(b);
  buf_free(b);
}

void call_free(Call *k) {
  for (int s = 0; s < MAXSYM; s++) {
    release(k, &k->buf[s]);
    release(k, &k->sin[s]);
    release(k, &k->sout[s]);
  }
  release(k, &k->cub);
}

mixc_args call_args(Call *k, void *stream) {
  mixc_args a;
  memset(&a, 0, sizeof a);
  a.inputs = k->in;
  a.ninputs = k->nin;
  a.outputs = k->out;
  a.noutputs = k->nout;
  a.initial_states = k->init;
  a.ninitial = k->ninit;
  a.final_states = k->fin;
  a.nfinal = k->nfin;
  a.cu_seqlens = k->has_cu ? &k->cub.t : NULL;
  a.stream = stream;
  return a;
}

mixc_args step_args(const Ex *x, const Call *k, int64_t at, int64_t len, mixc_named_tensor *in,
                    mixc_named_tensor *out) {
  for (int j = 0; j < k->nin; j++) {
    in[j] = k->in[j];
    int s = mixer_find(x->m, in[j].name);
    if (x->m->syms[s].kind != SYM_INPUT) continue;
    in[j].tensor.shape[1] = len;
    in[j].tensor.data = (char *)in[j].tensor.data +
                        at * in[j].tensor.stride[1] * (int64_t)esize(in[j].tensor.dtype);
  }
  for (int j = 0; j < k->nout; j++) {
    out[j] = k->out[j];
    out[j].tensor.shape[1] = len;
    out[j].tensor.data = (char *)out[j].tensor.data +
                         at * out[j].tensor.stride[1] * (int64_t)esize(out[j].tensor.dtype);
  }
  mixc_args a;
  memset(&a, 0, sizeof a);
  a.inputs = in;
  a.ninputs = k->nin;
  a.outputs = out;
  a.noutputs = k->nout;
  return a;
}

int call_results(const Ex *x, const Data *d, Call *k, Data *got, char *err, size_t n) {
  memset(got, 0, sizeof *got);
  for (int s = 0; s < x->m->nsyms; s++) {
    if (!d->out[s]) continue;
    Buf *b = x->m->syms[s].kind == SYM_STATE ? &k->sout[s] : &k->buf[s];
    if (k->dev && !k->dev->fetch(b, err, n)) return 0;
    got->numel[s] = d->numel[s];
    got->out[s] = malloc(sizeof(double) * (size_t)(d->numel[s] > 0 ? d->numel[s] : 1));
    if (!got->out[s]) return snprintf(err, n, "out of memory"), 0;
    buf_get(b, got->out[s]);
  }
  return 1;
}

int ck_no_cuda(const char *name) {
  printf("%s: 0 passed, 0 failed, 1 skipped (built without MIXC_CUDA)\n", name);
  return 77;
}

#ifdef MIXC_HAVE_CUDA
/* ==== the hand-structured GPU kernels ==== */

unsigned long long ck_start(int argc, char **argv, MixcRng *rng) {
  unsigned long long seed = argc > 1 ? strtoull(argv[1], NULL, 0)
                                     : (unsigned long long)time(NULL) ^
                                           ((unsigned long long)getpid() << 16);
  setvbuf(stdout, NULL, _IOLBF, 0);
  mixc_rng_seed(rng, seed);
  return seed;
}

MixcCuda *ck_open_gpu(int *failed, int *skipped, char *err, size_t n) {
  const char *req = getenv("MIXC_TEST_REQUIRE_GPU");
  int require = req && *req && strcmp(req, "0");
  MixcCuda *cu = NULL;
  if (mixc_cuda_open(0, &cu, err, n)) {
    printf("no GPU: %s\n", err);
    cu = NULL;
    if (require) {
      printf("FAIL: MIXC_TEST_REQUIRE_GPU is set\n");
      (*failed)++;
    } else {
      (*skipped)++;
    }
  }
  return cu;
}

void ck_check(int ok, const char *what, int *passed, int *failed) {
  if (ok) {
    (*passed)++;
  } else {
    (*failed)++;
    printf("FAIL: %s\n", what);
  }
}

int ck_nvrtc(MixcNvrtc *nv, const char *src, const char *file, int arch, size_t *size,
             double *ms) {
  char err[4096];
  MixcCubin cb;
  memset(&cb, 0, sizeof cb);
  int rc = mixc_nvrtc_compile(nv, src, file, arch, &cb, err, sizeof err) != 0;
  if (rc) printf("%s\n", err);
  if (size) *size = cb.size;
  if (ms) *ms = cb.ms;
  mixc_cubin_release(&cb);
  return rc;
}

char *ck_prelude(void) {
  char err[4096] = "";
  size_t n = sizeof err;
  char *p = NULL;
  size_t len = 0;
  Arena a;
  arena_init(&a);
  KModule *m = kir_module(&a);
  FILE *f = open_memstream(&p, &len);
  int rc = !m || !f;
  if (rc) snprintf(err, n, "out of memory");
  if (!rc) rc = mixc_emit_c_module(f, m, MIXC_C_CUDA, err, n);
  if (f && fclose(f)) rc = 1;
  arena_free(&a);
  if (rc) {
    printf("FAIL: the CUDA prelude: %s\n", err);
    free(p);
    return NULL;
  }
  return p;
}

void ck_dump(const char *env, const char *name, const char *src) {
  const char *dir = getenv(env);
  if (!dir || !*dir || !src) return;
  char path[512];
  snprintf(path, sizeof path, "%s/%s.cu", dir, name);
  FILE *o = fopen(path, "w");
  if (o) fputs(src, o), fclose(o);
}

int chunk_kern_print(const CudaChunkShape *s, const char *name, int arch, int optin,
                     const char *prelude, int nptrs, int nints, char **src, ChunkKern *k) {
  char err[512];
  CudaChunkKernel kk[3];
  int nk = 0;
  *src = NULL;
  int rc = cuda_chunk_kernels(s, name, arch, optin, kk, &nk, err, sizeof err);
  if (rc > 0) printf("  error: %s\n", err);
  if (rc) return rc;
  size_t len = 0;
  FILE *f = open_memstream(src, &len);
  if (!f) {
    cuda_chunk_kernels_free(kk, nk);
    return 1;
  }
  fputs(prelude, f);
  memset(k, 0, sizeof *k);
  k->n = nk;
  k->vtiles = s->vtiles;
  k->segs = s->segs > 1 ? s->segs : 1;
  for (int i = 0; i < nk; i++) {
    fprintf(f, "struct MixcArgs_%s {\n  void *ptrs[%d];\n  int64_t ints[%d];\n};\n", kk[i].name,
            nptrs, nints);
    fputs(kk[i].src, f);
    snprintf(k->name[i], sizeof k->name[i], "%.255s", kk[i].name);
    k->threads[i] = kk[i].threads, k->smem[i] = kk[i].smem;
    if (kk[i].item_floats > k->item_floats) k->item_floats = kk[i].item_floats;
    if (kk[i].scratch_floats != 0) {
      printf("  scratch_floats %lld, expected 0\n", (long long)kk[i].scratch_floats);
      rc = 1;
    }
  }
  cuda_chunk_kernels_free(kk, nk);
  if (fclose(f) || !*src) rc = 1;
  return rc;
}

int chunk_kern_launch(MixcCuda *cu, const ChunkKern *k, void *args, int64_t items, int64_t mid,
                      float *scratch, char *err, size_t n) {
  for (int f = 0; f < k->n; f++)
    for (int part = 0; part < 2; part++) {
      int64_t begin = part ? mid : 0, end = part ? items : mid;
      if (end <= begin) continue;
      unsigned grid[3] = {(unsigned)(end - begin), 1, 1}, block[3] = {k->threads[f], 1, 1};
      void *kargs[] = {args, &begin, &end, &scratch};
      if (mixc_cuda_launch(cu, k->fn[f], grid, block, k->smem[f], NULL, kargs, err, n)) return 1;
    }
  return 0;
}

int ck_launch_fetch(MixcCuda *cu, const ChunkKern *k, void *args, int64_t items, int64_t mid,
                    float *scratch, const CkBuf *o, const CkBuf *s) {
  char err[2048];
  if (chunk_kern_launch(cu, k, args, items, mid, scratch, err, sizeof err) ||
      mixc_cuda_synchronize(cu, err, sizeof err) ||
      mixc_cuda_memcpy_dtoh(cu, o->h, o->d, o->bytes, err, sizeof err) ||
      (s && mixc_cuda_memcpy_dtoh(cu, s->h, s->d, s->bytes, err, sizeof err))) {
    printf("%s\n", err);
    return 1;
  }
  return 0;
}

static int cmp_ms(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

int ck_time_each(MixcCuda *cu, const ChunkKern *k, void *args, int64_t items, float *scratch,
                 float ms[3], char *err, size_t n) {
  enum { NRUN = 15 };
  MixcCudaEvent *ev[NRUN + 1] = {0};
  float t[NRUN];
  int bad = 0;
  for (int i = 0; i <= NRUN && !bad; i++) bad = mixc_cuda_event_create(cu, &ev[i], err, n);
  for (int f = 0; f < k->n && f < 3 && !bad; f++) {
    ChunkKern one = *k;
    one.n = 1, one.fn[0] = k->fn[f], one.threads[0] = k->threads[f], one.smem[0] = k->smem[f];
    bad = chunk_kern_launch(cu, &one, args, items, items, scratch, err, n) ||
          mixc_cuda_event_record(cu, ev[0], NULL, err, n);
    for (int i = 0; i < NRUN && !bad; i++)
      bad = chunk_kern_launch(cu, &one, args, items, items, scratch, err, n) ||
            mixc_cuda_event_record(cu, ev[i + 1], NULL, err, n);
    for (int i = 0; i < NRUN && !bad; i++)
      bad = mixc_cuda_event_elapsed(cu, ev[i], ev[i + 1], &t[i], err, n);
    if (!bad) {
      qsort(t, NRUN, sizeof *t, cmp_ms);
      ms[f] = t[NRUN / 2];
    }
  }
  for (int i = 0; i <= NRUN; i++)
    if (ev[i]) mixc_cuda_event_destroy(cu, ev[i]);
  return bad;
}

uint16_t ck_to16(KType t, double x) {
  return t == KT_F16 ? mixc_f32_to_f16((float)x) : mixc_f32_to_bf16((float)x);
}
double ck_from16(KType t, uint16_t x) {
  return t == KT_F16 ? mixc_f16_to_f32(x) : mixc_bf16_to_f32(x);
}
size_t ck_tsize(KType t) { return t == KT_F32 ? 4 : 2; }
double ck_get(KType t, const void *p, int64_t i) {
  return t == KT_F32 ? ((const float *)p)[i] : ck_from16(t, ((const uint16_t *)p)[i]);
}
void ck_set(KType t, void *p, int64_t i, double x) {
  if (t == KT_F32)
    ((float *)p)[i] = (float)x;
  else
    ((uint16_t *)p)[i] = ck_to16(t, x);
}
int ck_is_poison(KType t, const void *p, int64_t i) {
  return t == KT_F32 ? isnan(((const float *)p)[i]) : ((const uint16_t *)p)[i] == 0xffff;
}
void ck_poison(KType t, void *p, int64_t n) {
  if (t == KT_F32)
    for (int64_t i = 0; i < n; i++) ((float *)p)[i] = NAN;
  else
    memset(p, 0xff, (size_t)n * 2); /* 0xffff: a NaN in bf16 and in f16 */
}

int ck_bufs_host(CkBuf *const *all, int n) {
  int bad = 0;
  for (int i = 0; i < n; i++) {
    if (!all[i]->bytes) continue;
    all[i]->h = calloc(1, all[i]->bytes);
    if (!all[i]->h) bad = 1;
  }
  return bad;
}

int ck_bufs_upload(MixcCuda *cu, CkBuf *const *all, int n) {
  char err[2048];
  for (int i = 0; i < n; i++) {
    if (!all[i]->bytes) continue;
    if (mixc_cuda_alloc(cu, all[i]->bytes, &all[i]->d, err, sizeof err) ||
        mixc_cuda_memcpy_htod(cu, all[i]->d, all[i]->h, all[i]->bytes, err, sizeof err)) {
      printf("%s\n", err);
      return 1;
    }
  }
  return 0;
}

void ck_bufs_free(MixcCuda *cu, CkBuf *const *all, int n) {
  char err[2048];
  for (int i = 0; i < n; i++) {
    if (all[i]->d) mixc_cuda_free(cu, all[i]->d, err, sizeof err);
    free(all[i]->h);
  }
}

void ck_put_cu(void *h, const int64_t *cu, int64_t n, int i64) {
  for (int i = 0; i <= n; i++) {
    if (i64)
      ((int64_t *)h)[i] = cu[i];
    else
      ((int32_t *)h)[i] = (int32_t)cu[i];
  }
}

double ck_rel(double maxe, double maxr) { return maxr > 0 ? maxe / maxr : maxe; }

void ck_err_add(double x, double r, double *maxe, double *maxr, int64_t *nan) {
  if (isnan(x) || isinf(x)) (*nan)++;
  if (fabs(r) > *maxr) *maxr = fabs(r);
  if (fabs(x - r) > *maxe || isnan(x)) *maxe = isnan(x) ? INFINITY : fabs(x - r);
}

void ck_err_rows(KType t, const void *x, const int64_t st[4], int64_t A, int64_t B, int64_t C,
                 int64_t V, int64_t pad, const double *ref, double *maxe, double *maxr,
                 int64_t *nan, int64_t *written) {
  for (int64_t a = 0; a < A; a++)
    for (int64_t b = 0; b < B; b++)
      for (int64_t c = 0; c < C; c++)
        for (int64_t j = 0; j < V + pad; j++) {
          int64_t at = a * st[0] + b * st[1] + c * st[2] + j * st[3];
          if (j >= V) {
            *written += !ck_is_poison(t, x, at);
            continue;
          }
          ck_err_add(ck_get(t, x, at), ref[((a * B + b) * C + c) * V + j], maxe, maxr, nan);
        }
}
#endif
