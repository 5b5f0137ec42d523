#define _POSIX_C_SOURCE 200809L
/* `mixc run`: bind sizes from .npy files and options, draw what is not given, run a
 * backend, optionally check it against the fp64 reference, time it, write outputs. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../runtime/half.h"
#include "../runtime/inputs.h"
#include "../runtime/npy.h"
#include "../runtime/include/mixc.h"
#include "../runtime/rec_eval.h"
#include "../runtime/reference.h"
#ifdef MIXC_HAVE_CUDA
#include "../backends/cuda/cuda_loader.h"
#endif
#include "cli.h"

enum { MAX_IN = 64 };
enum { SZ_B, SZ_T, SZ_H, SZ_Y, SZ_X, SZ__COUNT }; /* run sizes, then one slot per symbol */
static const char *const size_names[SZ__COUNT] = {"B", "T", "H", "Y", "X"};

typedef struct Opts {
  const char *file, *mixer, *backend, *dtype, *dims, *shape, *out, *strategy;
  const char *in_name[MAX_IN], *in_path[MAX_IN];
  int nin;
  unsigned long long seed;
  int seed_given, check, time;
  long long chunk; /* --chunk: options.chunk_size (0: the schedule's) */
  long long vtile; /* --vtile: options.vtile (0: the schedule's) */
  long long segs;  /* --segments: options.segments (0: the schedule's) */
} Opts;

/* What a run binds: sizes (with where each came from) and one array per symbol. */
typedef struct Run {
  const Mixer *m;
  const RecMixer *rm;
  Opts *o;
  int64_t *size;       /* SZ__COUNT + nsyms; -1 unknown */
  const char **origin; /* which argument set each size */
  double **arr;        /* per symbol */
  const char **how;    /* per symbol: "random (...)", "from FILE", "default" */
  int64_t *numel;
  RefBinding b;
  char *names[256]; /* argument texts the origins point to, freed with the run */
  int nnames;
  /* the compiled backends (cpu): through the public C API */
  mixc_context *ctx;
  mixc_module *mod;
  mixc_kernel *k;
  void **buf;            /* per symbol: the tensor in its storage type */
  void **fbuf;           /* per state symbol: its final value */
  double last_ms;        /* cuda: the kernel's time in the last run (CUDA events) */
#ifdef MIXC_HAVE_CUDA
  /* --backend cuda: the device (for memory, copies and events; the kernels run through the
   * C API) and a device copy of every buffer above */
  MixcCuda *cu;
  MixcDevPtr *dbuf, *dfbuf;
  MixcCudaEvent *ev[2];
#endif
} Run;

/* A copy of "OPT TEXT" that lives as long as the run, for messages. */
static const char *arg_text(Run *r, const char *opt, const char *text, size_t len) {
  if (r->nnames == (int)(sizeof r->names / sizeof r->names[0])) return opt;
  size_t n = strlen(opt) + len + 2;
  char *p = malloc(n);
  if (!p) return opt;
  snprintf(p, n, "%s %.*s", opt, (int)len, text);
  r->names[r->nnames++] = p;
  return p;
}

/* ---- options ---- */

static int parse_opts(int argc, char **argv, Opts *o) {
  memset(o, 0, sizeof *o);
  o->backend = "ref";
  o->dtype = "f32";
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    const char **slot = NULL;
    if (!strcmp(a, "--mixer")) slot = &o->mixer;
    else if (!strcmp(a, "--backend")) slot = &o->backend;
    else if (!strcmp(a, "--dtype")) slot = &o->dtype;
    else if (!strcmp(a, "--dims")) slot = &o->dims;
    else if (!strcmp(a, "--shape")) slot = &o->shape;
    else if (!strcmp(a, "--out")) slot = &o->out;
    else if (!strcmp(a, "--strategy")) slot = &o->strategy;
    if (slot) {
      if (i + 1 >= argc) return cli_usage_error("%s needs a value", a);
      *slot = argv[++i];
    } else if (!strcmp(a, "--in")) {
      if (i + 1 >= argc) return cli_usage_error("--in needs NAME=FILE.npy");
      const char *v = argv[++i], *eq = strchr(v, '=');
      if (!eq || eq == v || !eq[1]) return cli_usage_error("--in %s: write NAME=FILE.npy", v);
      if (o->nin == MAX_IN) return cli_usage_error("at most %d --in options", MAX_IN);
      o->in_name[o->nin] = v;
      o->in_path[o->nin++] = eq + 1;
    } else if (!strcmp(a, "--seed")) {
      if (i + 1 >= argc) return cli_usage_error("--seed needs a number");
      char *end;
      errno = 0;
      o->seed = strtoull(argv[++i], &end, 10);
      if (*end || errno || argv[i][0] == '-')
        return cli_usage_error("--seed %s: give a non-negative integer", argv[i]);
      o->seed_given = 1;
    } else if (!strcmp(a, "--chunk")) {
      if (i + 1 >= argc) return cli_usage_error("--chunk needs a number");
      char *end;
      errno = 0;
      o->chunk = strtoll(argv[++i], &end, 10);
      if (*end || errno || !argv[i][0] || o->chunk < 1 || o->chunk > (1 << 20))
        return cli_usage_error("--chunk %s: give a positive integer (at most %d)", argv[i],
                               1 << 20);
    } else if (!strcmp(a, "--vtile")) {
      if (i + 1 >= argc) return cli_usage_error("--vtile needs a number");
      char *end;
      errno = 0;
      o->vtile = strtoll(argv[++i], &end, 10);
      if (*end || errno || !argv[i][0] || o->vtile < 1 || o->vtile > (1 << 20))
        return cli_usage_error("--vtile %s: give a positive integer (at most %d)", argv[i],
                               1 << 20);
    } else if (!strcmp(a, "--segments")) {
      if (i + 1 >= argc) return cli_usage_error("--segments needs a number");
      char *end;
      errno = 0;
      o->segs = strtoll(argv[++i], &end, 10);
      if (*end || errno || !argv[i][0] || o->segs < 1 || o->segs > 1024)
        return cli_usage_error("--segments %s: give a positive integer (at most 1024)", argv[i]);
    } else if (!strcmp(a, "--check")) {
      o->check = 1;
    } else if (!strcmp(a, "--time")) {
      o->time = 1;
    } else if (a[0] == '-' && a[1]) {
      return cli_usage_error("run: unknown option '%s'", a);
    } else if (o->file) {
      return cli_usage_error("run takes one FILE");
    } else {
      o->file = a;
    }
  }
  if (!o->file) return cli_usage_error("run needs a FILE");
  if (strcmp(o->dtype, "f32") && strcmp(o->dtype, "bf16") && strcmp(o->dtype, "f16"))
    return cli_usage_error("--dtype %s: use f32, bf16 or f16", o->dtype);
  if (strcmp(o->backend, "ref") && strcmp(o->backend, "ir") && strcmp(o->backend, "cpu") &&
      strcmp(o->backend, "cuda"))
    return cli_usage_error("--backend %s: use ref, ir, cpu or cuda", o->backend);
  if (!o->strategy) o->strategy = "auto";
  if (strcmp(o->strategy, "auto") && strcmp(o->strategy, "recurrent") &&
      strcmp(o->strategy, "chunk") && strcmp(o->strategy, "parallel"))
    return cli_usage_error("--strategy %s: use auto, recurrent, chunk or parallel", o->strategy);
  return 0;
}

/* ---- sizes ---- */

static int64_t *size_of(Run *r, int slot) { return &r->size[slot]; }

static const char *slot_name(const Run *r, int slot) {
  return slot < SZ__COUNT ? size_names[slot] : r->m->syms[slot - SZ__COUNT].name;
}

/* Bind a size, or check it against an earlier binding. */
static int bind(Run *r, int slot, int64_t v, const char *origin) {
  int64_t *s = size_of(r, slot);
  if (v < 1) {
    fprintf(stderr, "mixc: %s: %s must be at least 1, not %lld\n", origin, slot_name(r, slot),
            (long long)v);
    return 1;
  }
  if (*s < 0) {
    *s = v;
    r->origin[slot] = origin;
    return 0;
  }
  if (*s == v) return 0;
  fprintf(stderr, "mixc: %s: %s is %lld here but %lld from %s\n", origin, slot_name(r, slot),
          (long long)v, (long long)*s, r->origin[slot]);
  return 1;
}

/* "K=64,V=32" against the names allowed by `lookup`. */
static int parse_sizes(Run *r, const char *opt, const char *spec, int dims) {
  char buf[512];
  if (strlen(spec) >= sizeof buf) {
    fprintf(stderr, "mixc: %s: too long\n", opt);
    return 1;
  }
  strcpy(buf, spec);
  for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
    char *eq = strchr(tok, '='), *end;
    if (!eq) {
      fprintf(stderr, "mixc: %s %s: write NAME=SIZE, e.g. %s\n", opt, tok,
              dims ? "K=64" : "B=2,T=1024,H=4");
      return 1;
    }
    *eq = 0;
    errno = 0;
    long long v = strtoll(eq + 1, &end, 10);
    if (*end || errno || eq[1] == 0) {
      fprintf(stderr, "mixc: %s %s=%s: the size must be an integer\n", opt, tok, eq + 1);
      return 1;
    }
    int slot = -1;
    if (dims) {
      int k = mixer_find(r->m, tok);
      if (k >= 0 && r->m->syms[k].kind == SYM_DIM) slot = SZ__COUNT + k;
    } else {
      for (int i = 0; i < SZ__COUNT; i++)
        if (!strcmp(tok, size_names[i])) slot = i;
      if ((slot == SZ_Y || slot == SZ_X) && !r->m->ngrid) slot = -1;
    }
    if (slot < 0) {
      fprintf(stderr, "mixc: %s %s=%s: mixer '%s' has no %s '%s'\n", opt, tok, eq + 1,
              r->m->name.name, dims ? "dim" : "size", tok);
      return 1;
    }
    if (v > ((long long)1 << 40)) {
      fprintf(stderr, "mixc: %s %s=%lld: too large\n", opt, tok, v);
      return 1;
    }
    *eq = '=';
    if (bind(r, slot, v, arg_text(r, opt, tok, strlen(tok)))) return 1;
  }
  return 0;
}

/* The slots an array of symbol s is laid out over, outermost first; -2 is ndir. */
static int layout(const Run *r, int s, int *slots) {
  const Sym *sym = &r->m->syms[s];
  int n = 0;
  if (sym->kind == SYM_INPUT || sym->kind == SYM_OUTPUT) {
    slots[n++] = SZ_B;
    if (r->m->ngrid) {
      slots[n++] = SZ_Y;
      slots[n++] = SZ_X;
    } else {
      slots[n++] = SZ_T;
    }
  } else if (sym->kind == SYM_STATE) {
    slots[n++] = SZ_B;
  }
  slots[n++] = SZ_H;
  if (sym->per_direction) slots[n++] = -2;
  for (int i = 0; i < sym->rank; i++) slots[n++] = SZ__COUNT + sym->shape[i];
  return n;
}

static void layout_text(const Run *r, int s, char *buf, size_t n) {
  int slots[16], k = layout(r, s, slots);
  size_t used = 0;
  for (int i = 0; i < k && used < n; i++)
    used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? ", " : "[",
                             slots[i] == -2 ? "ndir" : slot_name(r, slots[i]));
  if (used < n) snprintf(buf + used, n - used, "]");
}

static int bind_array(Run *r, int s, const MixcArray *a, const char *arg) {
  int slots[16], k = layout(r, s, slots);
  if (a->ndim != k) {
    char want[128];
    layout_text(r, s, want, sizeof want);
    fprintf(stderr, "mixc: %s: %s '%s' is %s (%d dims) but the file holds %d dims\n", arg,
            sym_kind_name(r->m->syms[s].kind), r->m->syms[s].name, want, k, a->ndim);
    return 1;
  }
  for (int i = 0; i < k; i++) {
    if (slots[i] == -2) {
      if (a->shape[i] != r->m->ndirs) {
        fprintf(stderr, "mixc: %s: dim %d is %lld but the mixer scans %d directions\n",
                arg, i, (long long)a->shape[i], r->m->ndirs);
        return 1;
      }
      continue;
    }
    if (bind(r, slots[i], a->shape[i], arg)) return 1;
  }
  return 0;
}

static int load_inputs(Run *r) {
  for (int i = 0; i < r->o->nin; i++) {
    const char *raw = r->o->in_name[i];
    const char *arg = arg_text(r, "--in", raw, strlen(raw));
    size_t len = (size_t)(r->o->in_path[i] - 1 - raw);
    char name[MIXC_MAX_IDENT + 1];
    if (len > MIXC_MAX_IDENT) len = MIXC_MAX_IDENT;
    memcpy(name, raw, len);
    name[len] = 0;
    int s = mixer_find(r->m, name);
    SymKind kind = s >= 0 ? r->m->syms[s].kind : SYM_DIM;
    if (s < 0 || (kind != SYM_INPUT && kind != SYM_PARAM && kind != SYM_STATE)) {
      fprintf(stderr, "mixc: %s: mixer '%s' has no input, param or state '%s'\n", arg,
              r->m->name.name, name);
      return 1;
    }
    if (kind == SYM_STATE && r->m->ngrid) {
      fprintf(stderr, "mixc: %s: grid mixers take no initial state\n", arg);
      return 1;
    }
    if (r->arr[s]) {
      fprintf(stderr, "mixc: %s: '%s' is given twice\n", arg, name);
      return 1;
    }
    MixcArray a;
    char err[256];
    if (mixc_npy_read(r->o->in_path[i], &a, err, sizeof err)) {
      fprintf(stderr, "mixc: %s: %s\n", arg, err);
      return 1;
    }
    int rc = bind_array(r, s, &a, arg);
    r->arr[s] = a.data; /* owned by the run from here on */
    r->how[s] = arg;
    if (rc) return 1;
  }
  return 0;
}

static void default_sizes(Run *r) {
  static const int64_t dflt[SZ__COUNT] = {2, 64, 2, 8, 8};
  for (int i = 0; i < SZ__COUNT; i++)
    if (r->size[i] < 0) {
      r->size[i] = dflt[i];
      r->origin[i] = "default";
    }
  if (r->m->ngrid) r->size[SZ_T] = r->size[SZ_Y] * r->size[SZ_X];
  for (int s = 0; s < r->m->nsyms; s++) {
    int64_t *v = &r->size[SZ__COUNT + s];
    if (r->m->syms[s].kind != SYM_DIM) continue;
    if (*v < 0) {
      *v = r->m->syms[s].fixed ? r->m->syms[s].fixed : 32;
      r->origin[SZ__COUNT + s] = "default";
    }
  }
}

static int check_fixed_dims(Run *r) {
  for (int s = 0; s < r->m->nsyms; s++) {
    const Sym *d = &r->m->syms[s];
    if (d->kind == SYM_DIM && d->fixed && r->size[SZ__COUNT + s] != d->fixed) {
      fprintf(stderr, "mixc: %s: dim %s is fixed to %lld by the source, not %lld\n",
              r->origin[SZ__COUNT + s], d->name, (long long)d->fixed,
              (long long)r->size[SZ__COUNT + s]);
      return 1;
    }
  }
  return 0;
}

/* ---- arrays ---- */

static double round_to(const char *dtype, double x) {
  if (!strcmp(dtype, "bf16")) return mixc_round_bf16(x);
  if (!strcmp(dtype, "f16")) return mixc_round_f16(x);
  return mixc_round_f32(x);
}

static int make_arrays(Run *r, MixcRng *rng) {
  InputRole *roles = calloc((size_t)r->m->nsyms, sizeof *roles);
  if (!roles) return 1;
  mixc_input_roles(r->m, roles);
  r->b.dims = &r->size[SZ__COUNT];
  for (int s = 0; s < r->m->nsyms; s++) {
    const Sym *sym = &r->m->syms[s];
    int64_t n = mixc_ref_numel(r->m, &r->b, s);
    r->numel[s] = n;
    if (sym->kind == SYM_DIM || sym->kind == SYM_LET) continue;
    if (n < 0 || n > ((int64_t)1 << 31)) {
      fprintf(stderr, "mixc: '%s' would hold too many elements; use smaller sizes\n", sym->name);
      free(roles);
      return 1;
    }
    int given = r->arr[s] != NULL;
    if (sym->kind == SYM_PARAM && sym->init && !given) {
      r->how[s] = "default";
      continue;
    }
    if (sym->kind == SYM_STATE && !given && !r->m->ngrid) {
      r->how[s] = "zeros";
    }
    if (!given && (sym->kind == SYM_INPUT || sym->kind == SYM_PARAM)) {
      r->arr[s] = malloc((size_t)(n ? n : 1) * sizeof(double));
      if (!r->arr[s]) break;
      int64_t last = sym->rank ? r->size[SZ__COUNT + sym->shape[sym->rank - 1]] : 1;
      mixc_fill(rng, roles[s], r->arr[s], n, last);
      r->how[s] = mixc_role_name(roles[s]);
    }
    /* Per-token inputs are stored in the run's dtype; everything else in fp32. */
    if (r->arr[s])
      for (int64_t i = 0; i < n; i++)
        r->arr[s][i] = round_to(sym->kind == SYM_INPUT ? r->o->dtype : "f32", r->arr[s][i]);
  }
  free(roles);
  return 0;
}

static int alloc_outputs(Run *r, double **outs) {
  for (int s = 0; s < r->m->nsyms; s++) {
    SymKind k = r->m->syms[s].kind;
    if (k != SYM_OUTPUT && !(k == SYM_STATE && !r->m->ngrid)) continue;
    int64_t n = mixc_ref_numel(r->m, &r->b, s);
    if (n < 0) return 1;
    outs[s] = malloc((size_t)(n ? n : 1) * sizeof(double));
    if (!outs[s]) return 1;
    for (int64_t i = 0; i < n; i++) outs[s][i] = NAN; /* poison: unwritten shows */
  }
  return 0;
}

/* ---- timing and reporting ---- */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void print_sizes(const Run *r) {
  printf("  sizes: B=%lld %s=%lld H=%lld", (long long)r->size[SZ_B], r->m->ngrid ? "Y" : "T",
         (long long)r->size[r->m->ngrid ? SZ_Y : SZ_T], (long long)r->size[SZ_H]);
  if (r->m->ngrid) printf(" X=%lld", (long long)r->size[SZ_X]);
  for (int s = 0; s < r->m->nsyms; s++)
    if (r->m->syms[s].kind == SYM_DIM)
      printf(" %s=%lld", r->m->syms[s].name, (long long)r->size[SZ__COUNT + s]);
  printf("\n");
}

static void print_array(const Run *r, int s, const double *x, const char *what) {
  char shape[160];
  layout_text(r, s, shape, sizeof shape);
  double amax = 0, asum = 0;
  int64_t bad = 0, n = r->numel[s];
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(x[i])) {
      bad++;
      continue;
    }
    asum += fabs(x[i]);
    if (fabs(x[i]) > amax) amax = fabs(x[i]);
  }
  printf("  %-12s %-8s %-22s mean|x| %.4g  max|x| %.4g%s\n", what, r->m->syms[s].name, shape,
         n ? asum / (double)n : 0.0, amax, bad ? "  (NOT FINITE values!)" : "");
}

static int write_outputs(const Run *r, double **outs) {
  if (mkdir(r->o->out, 0777) && errno != EEXIST) {
    fprintf(stderr, "mixc: --out %s: %s\n", r->o->out, strerror(errno));
    return 1;
  }
  for (int s = 0; s < r->m->nsyms; s++) {
    if (!outs[s]) continue;
    int slots[16], k = layout(r, s, slots);
    int64_t shape[16];
    for (int i = 0; i < k; i++) shape[i] = slots[i] == -2 ? r->m->ndirs : r->size[slots[i]];
    char path[4096], err[256];
    snprintf(path, sizeof path, "%s/%s.npy", r->o->out, r->m->syms[s].name);
    if (mixc_npy_write_f32(path, k, shape, outs[s], err, sizeof err)) {
      fprintf(stderr, "mixc: --out: %s\n", err);
      return 1;
    }
    printf("  wrote %s\n", path);
  }
  return 0;
}

/* ---- the compiled backends, through the public C API (runtime/include/mixc.h) ---- */

static mixc_dtype api_dtype(const Run *r, int s) {
  if (r->m->syms[s].kind != SYM_INPUT && r->m->syms[s].kind != SYM_OUTPUT) return MIXC_F32;
  return !strcmp(r->o->dtype, "bf16") ? MIXC_BF16 : !strcmp(r->o->dtype, "f16") ? MIXC_F16 : MIXC_F32;
}

static mixc_tensor api_tensor(Run *r, int s, void *data, int state) {
  int slots[16], k = layout(r, s, slots);
  int64_t shape[16];
  for (int i = 0; i < k; i++) shape[i] = slots[i] == -2 ? r->m->ndirs : r->size[slots[i]];
  if (state) shape[0] = r->size[SZ_B];
  return mixc_tensor_contiguous(data, api_dtype(r, s), k, shape);
}

static void *api_alloc(Run *r, int s, const double *x) {
  int64_t n = r->numel[s] ? r->numel[s] : 1;
  mixc_dtype t = api_dtype(r, s);
  void *p = malloc((size_t)n * (t == MIXC_F32 ? 4 : 2));
  for (int64_t i = 0; p && x && i < r->numel[s]; i++) {
    if (t == MIXC_F32)
      ((float *)p)[i] = (float)x[i];
    else if (t == MIXC_BF16)
      ((uint16_t *)p)[i] = mixc_f32_to_bf16((float)x[i]);
    else
      ((uint16_t *)p)[i] = mixc_f32_to_f16((float)x[i]);
  }
  return p;
}

static double api_load(mixc_dtype t, const void *p, int64_t i) {
  if (t == MIXC_F32) return ((const float *)p)[i];
  if (t == MIXC_BF16) return mixc_bf16_to_f32(((const uint16_t *)p)[i]);
  return mixc_f16_to_f32(((const uint16_t *)p)[i]);
}

static char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *b = NULL;
  if (!fseek(f, 0, SEEK_END)) {
    long len = ftell(f);
    if (len >= 0 && !fseek(f, 0, SEEK_SET) && (b = malloc((size_t)len + 1))) {
      *n = fread(b, 1, (size_t)len, f);
      b[*n] = 0;
    }
  }
  fclose(f);
  return b;
}

#ifdef MIXC_HAVE_CUDA
static size_t api_bytes(const Run *r, int s) {
  size_t n = (size_t)(r->numel[s] ? r->numel[s] : 1) * (api_dtype(r, s) == MIXC_F32 ? 4 : 2);
  return (n + 3) / 4 * 4; /* whole 32-bit words, for the NaN poison */
}

/* Device buffers for every host buffer; inputs and initial states copied over. */
static int cuda_setup(Run *r) {
  char err[1024];
  int ns = r->m->nsyms;
  r->dbuf = calloc((size_t)ns, sizeof *r->dbuf);
  r->dfbuf = calloc((size_t)ns, sizeof *r->dfbuf);
  if (!r->dbuf || !r->dfbuf) return 1;
  int rc = mixc_cuda_event_create(r->cu, &r->ev[0], err, sizeof err) ||
           mixc_cuda_event_create(r->cu, &r->ev[1], err, sizeof err);
  for (int s = 0; !rc && s < ns; s++) {
    SymKind k = r->m->syms[s].kind;
    size_t bytes = api_bytes(r, s);
    if (r->buf[s]) {
      rc = mixc_cuda_alloc(r->cu, bytes, &r->dbuf[s], err, sizeof err);
      if (!rc && k != SYM_OUTPUT)
        rc = mixc_cuda_memcpy_htod(r->cu, r->dbuf[s], r->buf[s],
                                   (size_t)(r->numel[s] ? r->numel[s] : 1) *
                                       (api_dtype(r, s) == MIXC_F32 ? 4 : 2),
                                   err, sizeof err);
    }
    if (!rc && r->fbuf[s]) rc = mixc_cuda_alloc(r->cu, bytes, &r->dfbuf[s], err, sizeof err);
  }
  if (rc) fprintf(stderr, "mixc: --backend cuda: %s\n", err);
  return rc ? EXIT_INPUT : 0;
}

static void cuda_teardown(Run *r) {
  if (!r->cu) return;
  char err[256];
  for (int s = 0; r->dbuf && s < r->m->nsyms; s++) {
    mixc_cuda_free(r->cu, r->dbuf[s], err, sizeof err);
    mixc_cuda_free(r->cu, r->dfbuf[s], err, sizeof err);
  }
  for (int i = 0; i < 2; i++)
    if (r->ev[i]) mixc_cuda_event_destroy(r->cu, r->ev[i]);
  free(r->dbuf);
  free(r->dfbuf);
  mixc_cuda_close(r->cu);
}

/* Poison the outputs and final states (NaN), run through the C API between two events on the
 * legacy default stream, copy the results back to the host buffers. */
static int cuda_forward(Run *r, const mixc_args *a0) {
  char err[1024];
  mixc_args a = *a0;
  a.stream = NULL;
  int ns = r->m->nsyms, rc = 0;
  for (int s = 0; !rc && s < ns; s++) {
    if (r->m->syms[s].kind == SYM_OUTPUT && r->dbuf[s]) {
      uint32_t nan = api_dtype(r, s) == MIXC_F32 ? 0x7fc00000u : api_dtype(r, s) == MIXC_BF16
                                                                     ? 0x7fc07fc0u
                                                                     : 0x7e007e00u;
      rc = mixc_cuda_memset32(r->cu, r->dbuf[s], nan, api_bytes(r, s) / 4, err, sizeof err);
    }
    if (!rc && r->dfbuf[s])
      rc = mixc_cuda_memset32(r->cu, r->dfbuf[s], 0x7fc00000u, api_bytes(r, s) / 4, err,
                              sizeof err);
  }
  if (rc) {
    fprintf(stderr, "mixc: --backend cuda: %s\n", err);
    return EXIT_INPUT;
  }
  mixc_error e;
  rc = mixc_cuda_event_record(r->cu, r->ev[0], NULL, err, sizeof err);
  int st = rc ? MIXC_OK : mixc_forward(r->k, &a, &e);
  if (st) {
    fprintf(stderr, "mixc: --backend cuda: %s\n", e.message);
    return st == MIXC_ERROR_UNSUPPORTED ? EXIT_USAGE : EXIT_INPUT;
  }
  float ms = 0;
  if (!rc) rc = mixc_cuda_event_record(r->cu, r->ev[1], NULL, err, sizeof err) ||
                mixc_cuda_event_elapsed(r->cu, r->ev[0], r->ev[1], &ms, err, sizeof err) ||
                mixc_cuda_synchronize(r->cu, err, sizeof err); /* a kernel's fault shows here */
  r->last_ms = ms;
  for (int s = 0; !rc && s < ns; s++) {
    size_t bytes = (size_t)(r->numel[s] ? r->numel[s] : 1) * (api_dtype(r, s) == MIXC_F32 ? 4 : 2);
    if (r->m->syms[s].kind == SYM_OUTPUT && r->dbuf[s])
      rc = mixc_cuda_memcpy_dtoh(r->cu, r->buf[s], r->dbuf[s], bytes, err, sizeof err);
    if (!rc && r->dfbuf[s])
      rc = mixc_cuda_memcpy_dtoh(r->cu, r->fbuf[s], r->dfbuf[s], bytes, err, sizeof err);
  }
  if (rc) {
    fprintf(stderr, "mixc: --backend cuda: %s\n", err);
    return EXIT_INPUT;
  }
  return 0;
}
#endif

/* The context, module and kernel, and the tensors in their storage types, once per run. */
static int api_setup(Run *r) {
  mixc_error err;
  size_t n = 0;
  char *src = slurp(r->o->file, &n);
  if (!src) {
    fprintf(stderr, "mixc: cannot read '%s'\n", r->o->file);
    return 1;
  }
  int rc = mixc_context_create(0, &r->ctx, &err) ||
           mixc_module_compile(r->ctx, src, n, r->o->file, &r->mod, &err);
  free(src);
  mixc_dim dims[64];
  int nd = 0;
  for (int s = 0; !rc && s < r->m->nsyms && nd < 64; s++)
    if (r->m->syms[s].kind == SYM_DIM && !r->m->syms[s].fixed)
      dims[nd++] = (mixc_dim){r->m->syms[s].name, r->size[SZ__COUNT + s]};
  mixc_kernel_options opt;
  memset(&opt, 0, sizeof opt);
  opt.mixer = r->m->name.name;
  opt.dims = dims;
  opt.ndims = nd;
  opt.device = !strcmp(r->o->backend, "cuda") ? MIXC_CUDA : MIXC_CPU;
  opt.strategy = !strcmp(r->o->strategy, "recurrent") ? MIXC_STRATEGY_RECURRENT
                 : !strcmp(r->o->strategy, "chunk")   ? MIXC_STRATEGY_CHUNK
                 : !strcmp(r->o->strategy, "parallel") ? MIXC_STRATEGY_PARALLEL
                                                       : MIXC_STRATEGY_AUTO;
  opt.chunk_size = r->o->chunk;
  opt.vtile = r->o->vtile;
  opt.segments = r->o->segs;
  if (!rc) rc = mixc_kernel_create(r->mod, &opt, &r->k, &err);
  if (rc) {
    fprintf(stderr, "mixc: --backend %s: %s\n", r->o->backend, err.message);
    return rc == MIXC_ERROR_UNSUPPORTED ? EXIT_USAGE : EXIT_INPUT;
  }
  r->buf = calloc((size_t)r->m->nsyms, sizeof *r->buf);
  r->fbuf = calloc((size_t)r->m->nsyms, sizeof *r->fbuf);
  if (!r->buf || !r->fbuf) return 1;
  for (int s = 0; s < r->m->nsyms; s++) {
    SymKind k = r->m->syms[s].kind;
    if (r->arr[s] && (k == SYM_INPUT || k == SYM_PARAM || k == SYM_STATE))
      r->buf[s] = api_alloc(r, s, r->arr[s]);
    if (k == SYM_OUTPUT) r->buf[s] = api_alloc(r, s, NULL);
    if (k == SYM_STATE && !r->m->ngrid) r->fbuf[s] = api_alloc(r, s, NULL);
  }
#ifdef MIXC_HAVE_CUDA
  if (r->cu) return cuda_setup(r);
#endif
  return 0;
}

static void api_teardown(Run *r) {
#ifdef MIXC_HAVE_CUDA
  cuda_teardown(r);
#endif
  for (int s = 0; r->buf && s < r->m->nsyms; s++) {
    free(r->buf[s]);
    free(r->fbuf[s]);
  }
  free(r->buf);
  free(r->fbuf);
  mixc_kernel_destroy(r->k);
  mixc_module_destroy(r->mod);
  mixc_context_destroy(r->ctx);
}

static int api_run(Run *r, double **outs) {
  if (!r->k) {
    int rc = api_setup(r);
    if (rc) return rc;
  }
  int ns = r->m->nsyms, nin = 0, nout = 0, ninit = 0, nfin = 0;
  mixc_named_tensor *t = calloc((size_t)ns * 4 + 1, sizeof *t);
  if (!t) return 1;
  mixc_named_tensor *in = t, *out = t + ns, *init = t + 2 * ns, *fin = t + 3 * ns;
  for (int s = 0; s < ns; s++) {
    const Sym *y = &r->m->syms[s];
    void *data = r->buf[s], *fdata = r->fbuf[s];
#ifdef MIXC_HAVE_CUDA
    if (r->cu) { /* device addresses */
      data = (void *)(uintptr_t)r->dbuf[s];
      fdata = (void *)(uintptr_t)r->dfbuf[s];
    }
#endif
    if ((y->kind == SYM_INPUT || y->kind == SYM_PARAM) && r->buf[s])
      in[nin++] = (mixc_named_tensor){y->name, api_tensor(r, s, data, 0)};
    if (y->kind == SYM_OUTPUT) out[nout++] = (mixc_named_tensor){y->name, api_tensor(r, s, data, 0)};
    if (y->kind == SYM_STATE && r->buf[s])
      init[ninit++] = (mixc_named_tensor){y->name, api_tensor(r, s, data, 1)};
    if (y->kind == SYM_STATE && r->fbuf[s])
      fin[nfin++] = (mixc_named_tensor){y->name, api_tensor(r, s, fdata, 1)};
  }
  mixc_args a;
  memset(&a, 0, sizeof a);
  a.inputs = in;
  a.ninputs = nin;
  a.outputs = out;
  a.noutputs = nout;
  a.initial_states = init;
  a.ninitial = ninit;
  a.final_states = fin;
  a.nfinal = nfin;
  mixc_error err;
#ifdef MIXC_HAVE_CUDA
  if (r->cu) {
    int crc = cuda_forward(r, &a);
    free(t);
    if (crc) return crc;
    goto results;
  }
#endif
  int rc = mixc_forward(r->k, &a, &err);
  free(t);
  if (rc) {
    fprintf(stderr, "mixc: --backend %s: %s\n", r->o->backend, err.message);
    return rc == MIXC_ERROR_UNSUPPORTED ? EXIT_USAGE : EXIT_INPUT;
  }
#ifdef MIXC_HAVE_CUDA
results:
#endif
  for (int s = 0; s < ns; s++) {
    const void *p = r->m->syms[s].kind == SYM_OUTPUT ? r->buf[s] : r->fbuf[s];
    if (!p || !outs[s]) continue;
    for (int64_t i = 0; i < r->numel[s]; i++) outs[s][i] = api_load(api_dtype(r, s), p, i);
  }
  return 0;
}

/* One run of the chosen backend (or of the reference, for --check). */
static int run_backend(Run *r, double **outs, int reference) {
  char err[256];
  r->b.in = (const double *const *)r->arr;
  r->b.out = outs;
  if (!reference && (!strcmp(r->o->backend, "cpu") || !strcmp(r->o->backend, "cuda")))
    return api_run(r, outs);
  int rc = reference || !strcmp(r->o->backend, "ref") ? mixc_ref_run(r->m, &r->b, err, sizeof err)
                                                     : mixc_ir_run(r->rm, &r->b, err, sizeof err);
  if (rc) fprintf(stderr, "mixc: %s\n", err);
  return rc;
}

static int time_backend(Run *r, double **outs) {
  enum { REPS = 7 };
  double times[REPS];
  int reps = r->o->time ? REPS : 1;
  for (int i = 0; i < reps; i++) {
    double t0 = now_ms();
    int rc = run_backend(r, outs, 0);
    if (rc) return rc;
    times[i] = now_ms() - t0;
    /* the GPU's first run may have been the fast tier (docs/api.md, Tiers): time the
     * optimised one */
    if (i == 0 && r->o->time && r->k) {
      mixc_error e;
      if (mixc_kernel_wait_ready(r->k, &e)) {
        fprintf(stderr, "mixc: run: %s\n", e.message);
        return 1;
      }
    }
    if (!strcmp(r->o->backend, "cuda")) times[i] = r->last_ms; /* CUDA events: the kernels */
  }
  if (r->o->time) {
    /* The first run warms caches and page tables; the median of the rest is quoted. */
    qsort(times + 1, (size_t)reps - 1, sizeof times[0], cmp_double);
    int compiled = strcmp(r->o->backend, "ref") && strcmp(r->o->backend, "ir");
    printf("  time: median %.3f ms over %d runs after a warm-up (backend %s, %s%s)\n",
           times[reps / 2], reps - 1, r->o->backend, compiled ? "fp32" : "fp64",
           !strcmp(r->o->backend, "cuda") ? ", CUDA events around mixc_forward" : "");
  }
  return 0;
}

/* Relative error max|x - ref| / max|ref| of every output and final state; NaN fails. */
static int check_against_reference(Run *r, double **outs) {
  double **ref = calloc((size_t)r->m->nsyms, sizeof *ref);
  int rc = !ref || alloc_outputs(r, ref) || run_backend(r, ref, 1);
  /* fp64 against fp64 for the IR; fp32 kernels: fp32 states, outputs in the run's dtype */
  int compiled = strcmp(r->o->backend, "ir") != 0;
  double out_tol = !compiled ? 1e-9 : !strcmp(r->o->dtype, "bf16") ? 1e-2
                                    : !strcmp(r->o->dtype, "f16")  ? 2e-3 : 2e-4;
  /* States: 2e-4, except CUDA with bf16/f16 inputs: those kernels multiply on single-TF32
     tensor cores (f32 inputs: 3xTF32), docs/gpu.md; the target there is 5e-3 (PERFORMANCE.md). */
  double state_tol = !compiled ? 1e-9
                   : !strcmp(r->o->backend, "cuda") && strcmp(r->o->dtype, "f32") ? 5e-3 : 2e-4;
  for (int s = 0; !rc && s < r->m->nsyms; s++) {
    if (!outs[s]) continue;
    double emax = 0, rmax = 0;
    int nan = 0;
    for (int64_t i = 0; i < r->numel[s]; i++) {
      double d = fabs(outs[s][i] - ref[s][i]);
      if (!(d <= INFINITY) || !isfinite(ref[s][i])) nan = 1;
      if (d > emax) emax = d;
      if (fabs(ref[s][i]) > rmax) rmax = fabs(ref[s][i]);
    }
    double rel = rmax > 0 ? emax / rmax : emax;
    double tol = r->m->syms[s].kind == SYM_OUTPUT ? out_tol : state_tol;
    int ok = !nan && rel <= tol;
    printf("  check %-8s rel err %.3g vs the fp64 reference (tolerance %.0e): %s\n",
           r->m->syms[s].name, rel, tol, ok ? "ok" : nan ? "FAILED (not finite)" : "FAILED");
    if (!ok) rc = 1;
  }
  for (int s = 0; ref && s < r->m->nsyms; s++) free(ref[s]);
  free(ref);
  return rc;
}

static int execute(Run *r) {
  Opts *o = r->o;

  if (o->check && !strcmp(o->backend, "ref")) {
    fprintf(stderr, "mixc: --check holds a backend against the fp64 reference; with "
                    "--backend ref there is nothing to compare\n");
    return EXIT_USAGE;
  }
  if (load_inputs(r) || parse_sizes(r, "--shape", o->shape ? o->shape : "", 0) ||
      parse_sizes(r, "--dims", o->dims ? o->dims : "", 1))
    return EXIT_INPUT;
  default_sizes(r);
  if (r->m->ngrid && r->size[SZ_T] != r->size[SZ_Y] * r->size[SZ_X]) {
    fprintf(stderr, "mixc: --shape: grid mixers take Y and X, not T\n");
    return EXIT_INPUT;
  }
  if (check_fixed_dims(r)) return EXIT_INPUT;
#ifdef MIXC_HAVE_CUDA
  if (!strcmp(o->backend, "cuda")) { /* the device first: without one, one line and exit 1 */
    char cerr[1024];
    if (mixc_cuda_open(0, &r->cu, cerr, sizeof cerr)) {
      r->cu = NULL;
      fprintf(stderr, "mixc: run: %s\n", cerr);
      return EXIT_INPUT;
    }
  }
#endif
  r->b.B = r->size[SZ_B];
  r->b.T = r->size[SZ_T];
  r->b.H = r->size[SZ_H];
  r->b.Y = r->m->ngrid ? r->size[SZ_Y] : 0;
  r->b.X = r->m->ngrid ? r->size[SZ_X] : 0;
  MixcRng rng;
  if (!o->seed_given) o->seed = (unsigned long long)time(NULL);
  mixc_rng_seed(&rng, o->seed);
  if (make_arrays(r, &rng)) return EXIT_INPUT;
  double **outs = calloc((size_t)r->m->nsyms, sizeof *outs);
  int rc = !outs || alloc_outputs(r, outs) ? EXIT_INPUT : 0;
  if (!rc) {
    const char *what = !strcmp(o->backend, "ref") ? "ref (fp64 recurrence as written)"
                       : !strcmp(o->backend, "ir")
                           ? "ir (fp64, each step in the canonical form of its class)"
                           : !strcmp(o->backend, "cpu") ? "cpu (LLVM JIT, fp32)" : "cuda (NVRTC, fp32)";
    printf("mixc run: mixer %s from %s, backend %s, strategy %s, %s inputs, seed %llu\n",
           r->m->name.name, o->file, what, o->strategy, o->dtype, o->seed);
    print_sizes(r);
    for (int s = 0; s < r->m->nsyms; s++) {
      SymKind k = r->m->syms[s].kind;
      if (k == SYM_INPUT || k == SYM_PARAM || (k == SYM_STATE && r->arr[s]))
        if (r->arr[s]) print_array(r, s, r->arr[s], sym_kind_name(k));
    }
    rc = time_backend(r, outs);
  }
  if (!rc && o->check) rc = check_against_reference(r, outs) ? EXIT_INPUT : 0;
  if (!rc) {
    for (int s = 0; s < r->m->nsyms; s++)
      if (outs[s])
        print_array(r, s, outs[s],
                    r->m->syms[s].kind == SYM_OUTPUT ? "output" : "final state");
    if (o->out) rc = write_outputs(r, outs);
  }
  for (int s = 0; outs && s < r->m->nsyms; s++) free(outs[s]);
  free(outs);
  return rc;
}

int cmd_run(int argc, char **argv) {
  Opts o;
  int rc = parse_opts(argc, argv, &o);
  if (rc) return rc;
  Compilation c;
  rc = cli_compile(o.file, STAGE_REC, &c);
  const Mixer *m = rc ? NULL : cli_pick_mixer(&c, o.mixer, o.file);
  if (!rc && !m) rc = EXIT_INPUT;
  if (!rc) {
    Run r = {0};
    r.m = m;
    r.rm = rec_find_mixer(c.rec, m->name.name);
    r.o = &o;
    size_t n = (size_t)(SZ__COUNT + m->nsyms);
    r.size = malloc(n * sizeof *r.size);
    r.origin = calloc(n, sizeof *r.origin);
    r.arr = calloc((size_t)m->nsyms, sizeof *r.arr);
    r.how = calloc((size_t)m->nsyms, sizeof *r.how);
    r.numel = calloc((size_t)m->nsyms, sizeof *r.numel);
    if (r.size && r.origin && r.arr && r.how && r.numel) {
      for (size_t i = 0; i < n; i++) r.size[i] = -1;
      rc = execute(&r);
    } else {
      fprintf(stderr, "mixc: out of memory\n");
      rc = EXIT_INPUT;
    }
    for (int s = 0; r.arr && s < m->nsyms; s++) free(r.arr[s]);
    api_teardown(&r);
    for (int i = 0; i < r.nnames; i++) free(r.names[i]);
    free(r.size);
    free(r.origin);
    free(r.arr);
    free(r.how);
    free(r.numel);
  }
  compilation_free(&c);
  return rc;
}
