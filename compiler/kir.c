/* KIR construction, verification and printing (see kir.h). */
#include "kir.h"

#include <stdarg.h>
#include <string.h>

/* ---- names ---- */

static const char *const type_names[] = {"void", "i64", "f32", "ptr", "bf16", "f16", "i32"};

const char *kir_type_name(KType t) {
  return t >= KT_VOID && t <= KT_I32 ? type_names[t] : "?";
}

static const char *const op_names[KO__COUNT] = {
    [KO_ADD] = "add", [KO_SUB] = "sub", [KO_MUL] = "mul", [KO_DIV] = "div",
    [KO_MIN] = "min", [KO_MAX] = "max", [KO_REM] = "rem", [KO_LT] = "lt",
    [KO_LE] = "le", [KO_EQ] = "eq", [KO_NE] = "ne", [KO_AND] = "and",
    [KO_OR] = "or", [KO_NEG] = "neg", [KO_EXP] = "exp", [KO_LOG] = "log",
    [KO_SQRT] = "sqrt", [KO_RSQRT] = "rsqrt", [KO_ABS] = "abs", [KO_TANH] = "tanh",
    [KO_SIGMOID] = "sigmoid", [KO_LOGSIGMOID] = "logsigmoid", [KO_SOFTPLUS] = "softplus",
    [KO_SILU] = "silu", [KO_RELU] = "relu", [KO_ELU] = "elu", [KO_I2F] = "i2f",
};

const char *kir_op_name(KOp op) { return op >= 0 && op < KO__COUNT ? op_names[op] : "?"; }

int kir_op_is_unary(KOp op) { return op >= KO_NEG && op < KO__COUNT; }

/* ---- building ---- */

/* Grow an arena array of pointers (old contents are copied; the arena keeps the old). */
static void *grow(Arena *a, void *old, int n, int *cap, size_t elem) {
  if (n < *cap) return old;
  int ncap = *cap ? *cap * 2 : 8;
  void *p = arena_array(a, (size_t)ncap, elem);
  if (!p) return old;
  if (n) memcpy(p, old, (size_t)n * elem);
  *cap = ncap;
  return p;
}

KModule *kir_module(Arena *a) {
  KModule *m = arena_alloc(a, sizeof *m);
  if (m) m->arena = a;
  return m;
}

KFunc *kir_func(KModule *m, const char *name) {
  KFunc *f = arena_alloc(m->arena, sizeof *f);
  if (!f) return NULL;
  f->name = arena_strdup(m->arena, name);
  f->body = ks_block(m);
  m->funcs = grow(m->arena, m->funcs, m->nfuncs, &m->capfuncs, sizeof *m->funcs);
  if (m->nfuncs < m->capfuncs) m->funcs[m->nfuncs++] = f;
  return f;
}

int kir_var(KModule *m, KFunc *f, KType t, const char *name) {
  f->vars = grow(m->arena, f->vars, f->nvars, &f->capvars, sizeof *f->vars);
  if (f->nvars >= f->capvars) return 0;
  int clash = 0;
  for (int i = 0; i < f->nvars; i++)
    if (!strcmp(f->vars[i].name, name)) clash = 1;
  KVar *v = &f->vars[f->nvars];
  v->type = t;
  v->name = clash ? arena_printf(m->arena, "%s_%d", name, f->nvars) : arena_strdup(m->arena, name);
  return f->nvars++;
}

int kir_slot(KModule *m, KSlotKind kind, const char *what) {
  m->slots = grow(m->arena, m->slots, m->nslots, &m->capslots, sizeof *m->slots);
  if (m->nslots >= m->capslots) return 0;
  KSlot *s = &m->slots[m->nslots++];
  s->kind = kind;
  s->index = kind == KSL_PTR ? m->nptrs++ : m->nints++;
  s->what = arena_strdup(m->arena, what);
  return s->index;
}

static KExpr *node(KModule *m, KExprKind kind, KType type) {
  KExpr *e = arena_alloc(m->arena, sizeof *e);
  if (!e) return NULL;
  e->kind = kind;
  e->type = type;
  return e;
}

KExpr *ke_int(KModule *m, int64_t v) {
  KExpr *e = node(m, KE_INT, KT_I64);
  if (e) e->i = v;
  return e;
}

KExpr *ke_float(KModule *m, double v) {
  KExpr *e = node(m, KE_FLOAT, KT_F32);
  if (e) e->f = (double)(float)v;
  return e;
}

KExpr *ke_var(KModule *m, const KFunc *f, int var) {
  KExpr *e = node(m, KE_VAR, var >= 0 && var < f->nvars ? f->vars[var].type : KT_VOID);
  if (e) e->var = var;
  return e;
}

KExpr *ke_arg(KModule *m, int arg) {
  static const KType t[] = {KT_PTR, KT_PTR, KT_I64, KT_I64, KT_PTR};
  KExpr *e = node(m, KE_ARG, arg >= 0 && arg < 5 ? t[arg] : KT_VOID);
  if (e) e->arg = arg;
  return e;
}

static KType loaded_type(KType elem) {
  switch (elem) {
  case KT_BF16:
  case KT_F16:
  case KT_F32: return KT_F32;
  case KT_I32:
  case KT_I64: return KT_I64;
  case KT_PTR: return KT_PTR;
  default: return KT_VOID;
  }
}

KExpr *ke_load(KModule *m, KType elem, KExpr *base, KExpr *index) {
  KExpr *e = node(m, KE_LOAD, loaded_type(elem));
  if (!e) return NULL;
  e->elem = elem;
  e->a[0] = base;
  e->a[1] = index;
  return e;
}

KExpr *ke_bin(KModule *m, KOp op, KExpr *x, KExpr *y) {
  KType t = op >= KO_LT && op <= KO_OR ? KT_I64 : x ? x->type : KT_VOID;
  KExpr *e = node(m, KE_BIN, t);
  if (!e) return NULL;
  e->op = op;
  e->a[0] = x;
  e->a[1] = y;
  return e;
}

KExpr *ke_un(KModule *m, KOp op, KExpr *x) {
  KExpr *e = node(m, KE_UN, op == KO_I2F ? KT_F32 : x ? x->type : KT_VOID);
  if (!e) return NULL;
  e->op = op;
  e->a[0] = x;
  return e;
}

KExpr *ke_select(KModule *m, KExpr *c, KExpr *x, KExpr *y) {
  KExpr *e = node(m, KE_SELECT, x ? x->type : KT_VOID);
  if (!e) return NULL;
  e->a[0] = c;
  e->a[1] = x;
  e->a[2] = y;
  return e;
}

KExpr *ke_ptradd(KModule *m, KExpr *p, KExpr *bytes) {
  KExpr *e = node(m, KE_PTRADD, KT_PTR);
  if (!e) return NULL;
  e->a[0] = p;
  e->a[1] = bytes;
  return e;
}

KExpr *ke_ptr_slot(KModule *m, int index) {
  return ke_load(m, KT_PTR, ke_arg(m, 0), ke_int(m, index));
}

KExpr *ke_int_slot(KModule *m, int index) {
  return ke_load(m, KT_I64, ke_arg(m, 1), ke_int(m, index));
}

KExpr *ke_add(KModule *m, KExpr *x, KExpr *y) {
  if (x && x->kind == KE_INT && y && y->kind == KE_INT) return ke_int(m, x->i + y->i);
  if (x && x->kind == KE_INT && x->i == 0) return y;
  if (y && y->kind == KE_INT && y->i == 0) return x;
  return ke_bin(m, KO_ADD, x, y);
}

KExpr *ke_mul(KModule *m, KExpr *x, KExpr *y) {
  if (x && x->kind == KE_INT && y && y->kind == KE_INT) return ke_int(m, x->i * y->i);
  if ((x && x->kind == KE_INT && x->i == 0) || (y && y->kind == KE_INT && y->i == 0))
    return ke_int(m, 0);
  if (x && x->kind == KE_INT && x->i == 1) return y;
  if (y && y->kind == KE_INT && y->i == 1) return x;
  return ke_bin(m, KO_MUL, x, y);
}

static KStmt *snode(KModule *m, KStmtKind kind) {
  KStmt *s = arena_alloc(m->arena, sizeof *s);
  if (s) s->kind = kind;
  return s;
}

KStmt *ks_block(KModule *m) { return snode(m, KS_BLOCK); }

KStmt *ks_set(KModule *m, int var, KExpr *v) {
  KStmt *s = snode(m, KS_SET);
  if (!s) return NULL;
  s->var = var;
  s->a = v;
  return s;
}

KStmt *ks_store(KModule *m, KType elem, KExpr *ptr, KExpr *index, KExpr *value) {
  KStmt *s = snode(m, KS_STORE);
  if (!s) return NULL;
  s->elem = elem;
  s->a = ptr;
  s->b = index;
  s->c = value;
  return s;
}

KStmt *ks_for(KModule *m, int var, KExpr *lo, KExpr *hi, int flags) {
  KStmt *s = snode(m, KS_FOR);
  if (!s) return NULL;
  s->var = var;
  s->a = lo;
  s->b = hi;
  s->flags = flags;
  return s;
}

KStmt *ks_if(KModule *m, KExpr *cond) {
  KStmt *s = snode(m, KS_IF);
  if (s) s->a = cond;
  return s;
}

KStmt *ks_matmul(KModule *m, KExpr *M, KExpr *N, KExpr *K, KExpr *A, KExpr *lda, KExpr *B,
                 KExpr *ldb, KExpr *C, KExpr *ldc, int accumulate) {
  KStmt *s = snode(m, KS_MATMUL);
  if (!s) return NULL;
  KExpr *ops[KM__COUNT] = {M, N, K, A, lda, B, ldb, C, ldc};
  memcpy(s->mm, ops, sizeof ops);
  s->flags = accumulate;
  return s;
}

void ks_add(KModule *m, KStmt *parent, KStmt *child) {
  if (!parent || !child) return;
  parent->body = grow(m->arena, parent->body, parent->nbody, &parent->capbody, sizeof(KStmt *));
  if (parent->nbody < parent->capbody) parent->body[parent->nbody++] = child;
}

void ks_add_else(KModule *m, KStmt *parent, KStmt *child) {
  if (!parent || !child) return;
  parent->orelse =
      grow(m->arena, parent->orelse, parent->norelse, &parent->caporelse, sizeof(KStmt *));
  if (parent->norelse < parent->caporelse) parent->orelse[parent->norelse++] = child;
}

/* ---- verification ---- */

typedef struct Verify {
  const KFunc *f;
  char *err;
  size_t errlen;
  int bad;
} Verify;

static void vfail(Verify *v, const char *fmt, ...) {
  if (v->bad) return;
  v->bad = 1;
  va_list ap;
  va_start(ap, fmt);
  int n = snprintf(v->err, v->errlen, "kir: %s: ", v->f ? v->f->name : "?");
  if (n > 0 && (size_t)n < v->errlen) vsnprintf(v->err + n, v->errlen - (size_t)n, fmt, ap);
  va_end(ap);
}

static int operands(const KExprKind k) {
  switch (k) {
  case KE_LOAD:
  case KE_BIN:
  case KE_PTRADD: return 2;
  case KE_UN: return 1;
  case KE_SELECT: return 3;
  default: return 0;
  }
}

static int value_type(KType t) { return t == KT_I64 || t == KT_F32 || t == KT_PTR; }

static void verify_expr(Verify *v, const KExpr *e) {
  if (!e) {
    vfail(v, "missing expression");
    return;
  }
  for (int i = 0; i < operands(e->kind); i++) {
    if (!e->a[i]) {
      vfail(v, "an operand is missing");
      return;
    }
    verify_expr(v, e->a[i]);
  }
  if (v->bad) return;
  if (!value_type(e->type)) {
    vfail(v, "an expression of type %s", kir_type_name(e->type));
    return;
  }
  switch (e->kind) {
  case KE_INT: return;
  case KE_FLOAT:
    if (e->type != KT_F32) vfail(v, "a float constant of type %s", kir_type_name(e->type));
    return;
  case KE_ARG:
    if (e->arg < 0 || e->arg > 4) vfail(v, "argument %d does not exist", e->arg);
    return;
  case KE_VAR:
    if (e->var < 0 || e->var >= v->f->nvars)
      vfail(v, "variable %d does not exist", e->var);
    else if (e->type != v->f->vars[e->var].type)
      vfail(v, "a read of %s as %s", v->f->vars[e->var].name, kir_type_name(e->type));
    return;
  case KE_LOAD:
    if (!e->a[0] || !e->a[1] || e->a[0]->type != KT_PTR || e->a[1]->type != KT_I64)
      vfail(v, "a load needs a pointer and an i64 index");
    if (e->type == KT_VOID) vfail(v, "a load of %s", kir_type_name(e->elem));
    return;
  case KE_BIN: {
    const KExpr *x = e->a[0], *y = e->a[1];
    if (!x || !y || x->type != y->type)
      vfail(v, "%s of %s and %s", kir_op_name(e->op), x ? kir_type_name(x->type) : "nothing",
            y ? kir_type_name(y->type) : "nothing");
    else if ((e->op == KO_REM || e->op == KO_AND || e->op == KO_OR) && x->type != KT_I64)
      vfail(v, "%s needs i64 operands", kir_op_name(e->op));
    else if (x->type != KT_I64 && x->type != KT_F32)
      vfail(v, "%s of %s", kir_op_name(e->op), kir_type_name(x->type));
    else if (kir_op_is_unary(e->op))
      vfail(v, "%s is not a binary operation", kir_op_name(e->op));
    else if (e->type != (e->op >= KO_LT && e->op <= KO_OR ? KT_I64 : x->type))
      vfail(v, "%s typed %s", kir_op_name(e->op), kir_type_name(e->type));
    return;
  }
  case KE_UN: {
    const KExpr *x = e->a[0];
    if (!kir_op_is_unary(e->op)) vfail(v, "%s is not a unary operation", kir_op_name(e->op));
    else if (e->op == KO_I2F ? x->type != KT_I64 : e->op == KO_NEG ? x->type == KT_PTR
                                                                  : x->type != KT_F32)
      vfail(v, "%s of %s", kir_op_name(e->op), kir_type_name(x->type));
    else if (e->type != (e->op == KO_I2F ? KT_F32 : x->type))
      vfail(v, "%s typed %s", kir_op_name(e->op), kir_type_name(e->type));
    return;
  }
  case KE_SELECT:
    if (e->a[0]->type != KT_I64 || e->a[1]->type != e->a[2]->type)
      vfail(v, "select needs an i64 condition and two values of one type");
    return;
  case KE_PTRADD:
    if (e->a[0]->type != KT_PTR || e->a[1]->type != KT_I64)
      vfail(v, "ptradd needs a pointer and an i64 offset");
    return;
  }
}

static void verify_stmts(Verify *v, KStmt *const *s, int n);

static void verify_stmt(Verify *v, const KStmt *s) {
  switch (s->kind) {
  case KS_SET:
    verify_expr(v, s->a);
    if (v->bad) return;
    if (s->var < 0 || s->var >= v->f->nvars)
      vfail(v, "assignment to variable %d, which does not exist", s->var);
    else if (s->a->type != v->f->vars[s->var].type)
      vfail(v, "%s (%s) = a %s", v->f->vars[s->var].name,
            kir_type_name(v->f->vars[s->var].type), kir_type_name(s->a->type));
    return;
  case KS_STORE:
    verify_expr(v, s->a);
    verify_expr(v, s->b);
    verify_expr(v, s->c);
    if (v->bad) return;
    if (s->a->type != KT_PTR || s->b->type != KT_I64 || s->c->type != loaded_type(s->elem))
      vfail(v, "store of a %s as %s", kir_type_name(s->c->type), kir_type_name(s->elem));
    return;
  case KS_FOR:
    verify_expr(v, s->a);
    verify_expr(v, s->b);
    if (v->bad) return;
    if (s->var < 0 || s->var >= v->f->nvars || v->f->vars[s->var].type != KT_I64)
      vfail(v, "a loop needs an i64 variable");
    else if (s->a->type != KT_I64 || s->b->type != KT_I64)
      vfail(v, "loop bounds of %s must be i64", v->f->vars[s->var].name);
    verify_stmts(v, s->body, s->nbody);
    return;
  case KS_IF:
    verify_expr(v, s->a);
    if (v->bad) return;
    if (s->a->type != KT_I64) vfail(v, "an if needs an i64 condition");
    verify_stmts(v, s->body, s->nbody);
    verify_stmts(v, s->orelse, s->norelse);
    return;
  case KS_BLOCK: verify_stmts(v, s->body, s->nbody); return;
  case KS_MATMUL:
    for (int i = 0; i < KM__COUNT && !v->bad; i++) {
      verify_expr(v, s->mm[i]);
      int ptr = i == KM_A || i == KM_B || i == KM_C;
      if (!v->bad && s->mm[i]->type != (ptr ? KT_PTR : KT_I64))
        vfail(v, "matmul operand %d must be %s", i, ptr ? "a pointer" : "an i64");
    }
    return;
  }
}

static void verify_stmts(Verify *v, KStmt *const *s, int n) {
  for (int i = 0; i < n && !v->bad; i++) {
    if (!s[i])
      vfail(v, "missing statement");
    else
      verify_stmt(v, s[i]);
  }
}

int kir_verify(const KModule *m, char *err, size_t errlen) {
  Verify v = {NULL, err, errlen, 0};
  if (m->arena->failed) {
    snprintf(err, errlen, "kir: out of memory while building the kernel");
    return 1;
  }
  for (int i = 0; i < m->nfuncs && !v.bad; i++) {
    v.f = m->funcs[i];
    for (int k = 0; k < v.f->nvars && !v.bad; k++)
      if (!value_type(v.f->vars[k].type))
        vfail(&v, "variable %s of type %s", v.f->vars[k].name, kir_type_name(v.f->vars[k].type));
    verify_stmt(&v, m->funcs[i]->body);
  }
  return v.bad;
}

/* ---- printing ---- */

static void print_expr(FILE *f, const KFunc *fn, const KExpr *e) {
  switch (e->kind) {
  case KE_INT: fprintf(f, "%lld", (long long)e->i); return;
  case KE_FLOAT: fprintf(f, "%.9gf", e->f); return;
  case KE_VAR: fputs(fn->vars[e->var].name, f); return;
  case KE_ARG: {
    static const char *names[] = {"ptrs", "ints", "begin", "end", "scratch"};
    fputs(e->arg >= 0 && e->arg < 5 ? names[e->arg] : "?", f);
    return;
  }
  case KE_LOAD:
    fprintf(f, "load.%s(", kir_type_name(e->elem));
    print_expr(f, fn, e->a[0]);
    fputs(", ", f);
    print_expr(f, fn, e->a[1]);
    fputc(')', f);
    return;
  case KE_PTRADD:
    fputs("ptradd(", f);
    print_expr(f, fn, e->a[0]);
    fputs(", ", f);
    print_expr(f, fn, e->a[1]);
    fputc(')', f);
    return;
  case KE_SELECT:
    fputs("select(", f);
    for (int i = 0; i < 3; i++) {
      if (i) fputs(", ", f);
      print_expr(f, fn, e->a[i]);
    }
    fputc(')', f);
    return;
  case KE_BIN:
  case KE_UN:
    fprintf(f, "%s%s(", kir_op_name(e->op), e->reassoc ? ".reassoc" : "");
    print_expr(f, fn, e->a[0]);
    if (e->kind == KE_BIN) {
      fputs(", ", f);
      print_expr(f, fn, e->a[1]);
    }
    fputc(')', f);
    return;
  }
}

static void print_stmt(FILE *f, const KFunc *fn, const KStmt *s, int depth) {
  if (s->comment) fprintf(f, "%*s# %s\n", 2 * depth, "", s->comment);
  switch (s->kind) {
  case KS_SET:
    fprintf(f, "%*s%s = ", 2 * depth, "", fn->vars[s->var].name);
    print_expr(f, fn, s->a);
    fputc('\n', f);
    return;
  case KS_STORE:
    fprintf(f, "%*sstore.%s(", 2 * depth, "", kir_type_name(s->elem));
    print_expr(f, fn, s->a);
    fputs(", ", f);
    print_expr(f, fn, s->b);
    fputs(", ", f);
    print_expr(f, fn, s->c);
    fputs(")\n", f);
    return;
  case KS_FOR:
    fprintf(f, "%*sfor %s in [", 2 * depth, "", fn->vars[s->var].name);
    print_expr(f, fn, s->a);
    fputs(", ", f);
    print_expr(f, fn, s->b);
    fprintf(f, ")%s%s%s:\n", s->flags & KF_VECTORIZE ? " vectorize" : "",
            s->flags & KF_PARALLEL ? " parallel" : "", s->flags & KF_BLOCK ? " block" : "");
    for (int i = 0; i < s->nbody; i++) print_stmt(f, fn, s->body[i], depth + 1);
    return;
  case KS_IF:
    fprintf(f, "%*sif ", 2 * depth, "");
    print_expr(f, fn, s->a);
    fputs(":\n", f);
    for (int i = 0; i < s->nbody; i++) print_stmt(f, fn, s->body[i], depth + 1);
    if (s->norelse) {
      fprintf(f, "%*selse:\n", 2 * depth, "");
      for (int i = 0; i < s->norelse; i++) print_stmt(f, fn, s->orelse[i], depth + 1);
    }
    return;
  case KS_BLOCK:
    for (int i = 0; i < s->nbody; i++) print_stmt(f, fn, s->body[i], depth);
    return;
  case KS_MATMUL: {
    static const char *names[KM__COUNT] = {"M", "N", "K", "A", "lda", "B", "ldb", "C", "ldc"};
    fprintf(f, "%*smatmul%s(", 2 * depth, "", s->flags ? ".acc" : "");
    for (int i = 0; i < KM__COUNT; i++) {
      fprintf(f, "%s%s=", i ? ", " : "", names[i]);
      print_expr(f, fn, s->mm[i]);
    }
    fputs(")\n", f);
    return;
  }
  }
}

void kir_print(FILE *f, const KModule *m) {
  fprintf(f, "kernel arguments: %d pointers, %d integers\n", m->nptrs, m->nints);
  for (int i = 0; i < m->nslots; i++)
    fprintf(f, "  %s[%d]: %s\n", m->slots[i].kind == KSL_PTR ? "ptrs" : "ints",
            m->slots[i].index, m->slots[i].what);
  for (int i = 0; i < m->nfuncs; i++) {
    const KFunc *fn = m->funcs[i];
    fprintf(f, "func %s(ptrs, ints, begin, end, scratch)  # items: %s; scratch: %lld floats\n",
            fn->name, fn->items ? fn->items : "?", (long long)fn->scratch_floats);
    if (fn->cuda_src)
      fprintf(f, "  # a hand-structured CUDA kernel (%zu bytes of source, %u threads, %u bytes "
              "of shared memory); the body below is not run\n",
              strlen(fn->cuda_src), fn->cuda_threads, fn->cuda_smem);
    for (int v = 0; v < fn->nvars; v++)
      fprintf(f, "  var %s: %s\n", fn->vars[v].name, kir_type_name(fn->vars[v].type));
    print_stmt(f, fn, fn->body, 1);
  }
}
