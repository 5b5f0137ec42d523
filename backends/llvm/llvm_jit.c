/* The LLVM CPU backend (see llvm_jit.h): KIR -> LLVM IR, optimisation, ORC LLJIT.
 *
 * Emission: every KIR variable is an alloca in the entry block (mem2reg makes registers of
 * them); a KS_FOR is preheader (lo, hi evaluated once) -> header (i < hi) -> body -> latch
 * (i += 1, the back edge carrying !llvm.loop metadata: mustprogress, and
 * llvm.loop.vectorize.enable for KF_VECTORIZE) -> exit.
 * KS_MATMUL becomes a call of a register-blocked micro-kernel built from <W x float> vectors
 * (see "KS_MATMUL" below), compiled once per JIT; f32 exp is inline straight-line code (emit_expf), so that loops
 * around it vectorise. */
#define _POSIX_C_SOURCE 200809L
#include "llvm_jit.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/DebugInfo.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- small helpers ---- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* Consumes an LLVMErrorRef into err (with a prefix); returns 1 when there was an error. */
static int take_error(LLVMErrorRef e, const char *what, char *err, size_t errlen) {
  if (!e) return 0;
  char *msg = LLVMGetErrorMessage(e);
  set_err(err, errlen, "llvm: %s: %s", what, msg ? msg : "unknown error");
  LLVMDisposeErrorMessage(msg);
  return 1;
}

static char *copy_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *c = malloc(n);
  if (c) memcpy(c, s, n);
  return c;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* LLVM's one-time target initialisation. */
static pthread_once_t g_init_once = PTHREAD_ONCE_INIT;
static int g_init_failed;

static void init_llvm(void) {
  if (LLVMInitializeNativeTarget() || LLVMInitializeNativeAsmPrinter()) g_init_failed = 1;
}

static int ensure_init(char *err, size_t errlen) {
  pthread_once(&g_init_once, init_llvm);
  if (g_init_failed) {
    set_err(err, errlen, "llvm: the native target could not be initialised");
    return 1;
  }
  return 0;
}

/* The host: triple, CPU, features (LLVM-allocated, LLVMDisposeMessage each). */
typedef struct Host {
  char *triple, *cpu, *features;
} Host;

static void host_get(Host *h) {
  h->triple = LLVMGetDefaultTargetTriple();
  h->cpu = LLVMGetHostCPUName();
  h->features = LLVMGetHostCPUFeatures();
}

static void host_free(Host *h) {
  if (h->triple) LLVMDisposeMessage(h->triple);
  if (h->cpu) LLVMDisposeMessage(h->cpu);
  if (h->features) LLVMDisposeMessage(h->features);
  memset(h, 0, sizeof *h);
}

static LLVMTargetMachineRef make_tm(const Host *h, char *err, size_t errlen) {
  LLVMTargetRef target = NULL;
  char *msg = NULL;
  if (LLVMGetTargetFromTriple(h->triple, &target, &msg)) {
    set_err(err, errlen, "llvm: no target for %s: %s", h->triple, msg ? msg : "?");
    if (msg) LLVMDisposeMessage(msg);
    return NULL;
  }
  if (msg) LLVMDisposeMessage(msg);
  LLVMTargetMachineRef tm =
      LLVMCreateTargetMachine(target, h->triple, h->cpu, h->features, LLVMCodeGenLevelAggressive,
                              LLVMRelocDefault, LLVMCodeModelJITDefault);
  if (!tm) set_err(err, errlen, "llvm: no target machine for %s (%s)", h->triple, h->cpu);
  return tm;
}

/* Diagnostics of a context: remarks and warnings (e.g. a requested vectorisation that did
 * not happen) are dropped; the first error is kept. Never printed, never exit(). */
typedef struct Diag {
  int error;
  char msg[256];
} Diag;

static void diag_handler(LLVMDiagnosticInfoRef di, void *opaque) {
  Diag *d = opaque;
  if (!d || LLVMGetDiagInfoSeverity(di) != LLVMDSError || d->error) return;
  char *s = LLVMGetDiagInfoDescription(di);
  d->error = 1;
  snprintf(d->msg, sizeof d->msg, "%s", s ? s : "error");
  if (s) LLVMDisposeMessage(s);
}

/* ---- emission ---- */

typedef struct Emit {
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  const Host *host;
  const KFunc *kf;
  LLVMValueRef fn;
  LLVMValueRef params[5];
  LLVMValueRef *vars;
  LLVMTypeRef tvoid, t1, t8, t16, t32, t64, tf32, thalf, tptr;
  unsigned md_loop;
  int shared_mm; /* KS_MATMUL calls the JIT's shared matmul (MM_SHARED), declared here only */
  int bad;
  char *err;
  size_t errlen;
} Emit;

static void efail(Emit *e, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void efail(Emit *e, const char *fmt, ...) {
  if (e->bad) return;
  e->bad = 1;
  int n = snprintf(e->err, e->errlen, "llvm backend: %s: ", e->kf ? e->kf->name : "?");
  if (n < 0 || (size_t)n >= e->errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->err + n, e->errlen - (size_t)n, fmt, ap);
  va_end(ap);
}

static LLVMTypeRef value_type(Emit *e, KType t) {
  switch (t) {
  case KT_I64: return e->t64;
  case KT_F32: return e->tf32;
  case KT_PTR: return e->tptr;
  default: return NULL;
  }
}

/* The memory type of an element, and its size. */
static LLVMTypeRef mem_type(Emit *e, KType t, unsigned *align) {
  switch (t) {
  case KT_I64: *align = 8; return e->t64;
  case KT_F32: *align = 4; return e->tf32;
  case KT_PTR: *align = 8; return e->tptr;
  case KT_BF16: *align = 2; return e->t16;
  case KT_F16: *align = 2; return e->thalf;
  case KT_I32: *align = 4; return e->t32;
  default: *align = 1; return NULL;
  }
}

static LLVMValueRef c64(Emit *e, int64_t v) { return LLVMConstInt(e->t64, (unsigned long long)v, 1); }
static LLVMValueRef c32(Emit *e, uint32_t v) { return LLVMConstInt(e->t32, v, 0); }
static LLVMValueRef cf(Emit *e, double v) { return LLVMConstReal(e->tf32, v); }

static void set_fmf(LLVMValueRef v, LLVMFastMathFlags f) {
  if (v && LLVMIsAInstruction(v) && LLVMCanValueUseFastMathFlags(v)) LLVMSetFastMathFlags(v, f);
}

/* A call of an overloaded intrinsic; ov: its overload types. */
static LLVMValueRef call_intrinsic_ov(Emit *e, const char *name, LLVMTypeRef *ov, size_t nov,
                                      LLVMValueRef *args, unsigned nargs) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  if (!id) {
    efail(e, "no intrinsic %s", name);
    return NULL;
  }
  LLVMValueRef decl = LLVMGetIntrinsicDeclaration(e->mod, id, ov, nov);
  LLVMTypeRef fty = LLVMIntrinsicGetType(e->ctx, id, ov, nov);
  return LLVMBuildCall2(e->b, fty, decl, args, nargs, "");
}

static LLVMValueRef call_intrinsic(Emit *e, const char *name, LLVMTypeRef overload,
                                   LLVMValueRef *args, unsigned nargs) {
  return call_intrinsic_ov(e, name, &overload, 1, args, nargs);
}

static LLVMValueRef intr1(Emit *e, const char *name, LLVMValueRef x) {
  return call_intrinsic(e, name, LLVMTypeOf(x), &x, 1);
}

static LLVMValueRef intr2(Emit *e, const char *name, LLVMValueRef x, LLVMValueRef y) {
  LLVMValueRef a[2] = {x, y};
  return call_intrinsic(e, name, LLVMTypeOf(x), a, 2);
}

static void add_fn_attr(Emit *e, LLVMValueRef fn, const char *name) {
  unsigned k = LLVMGetEnumAttributeKindForName(name, strlen(name));
  if (k) LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(e->ctx, k, 0));
}

static void add_param_attr(Emit *e, LLVMValueRef fn, unsigned idx, const char *name) {
  unsigned k = LLVMGetEnumAttributeKindForName(name, strlen(name));
  if (k) LLVMAddAttributeAtIndex(fn, idx, LLVMCreateEnumAttribute(e->ctx, k, 0));
}

/* A float(float) function of libm (tanhf, log1pf, expm1f): declared as not touching memory
 * (as with -fno-math-errno), so that it can be hoisted and CSE'd. */
static LLVMValueRef call_libm(Emit *e, const char *name, LLVMValueRef x) {
  LLVMTypeRef fty = LLVMFunctionType(e->tf32, &e->tf32, 1, 0);
  LLVMValueRef f = LLVMGetNamedFunction(e->mod, name);
  if (!f) {
    f = LLVMAddFunction(e->mod, name, fty);
    add_fn_attr(e, f, "nounwind");
    add_fn_attr(e, f, "willreturn");
    unsigned mk = LLVMGetEnumAttributeKindForName("memory", 6);
    if (mk) /* memory(none) */
      LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(e->ctx, mk, 0));
  }
  return LLVMBuildCall2(e->b, fty, f, &x, 1, "");
}

static LLVMBasicBlockRef new_block(Emit *e, const char *name) {
  return LLVMAppendBasicBlockInContext(e->ctx, e->fn, name);
}

/* Whether evaluating e may fault or be undefined where a C ?: would not evaluate it: a
 * load (the select may guard its index) or an integer division. */
static int may_trap(const KExpr *x) {
  if (!x) return 0;
  if (x->kind == KE_LOAD) return 1;
  if (x->kind == KE_BIN && x->type == KT_I64 && (x->op == KO_DIV || x->op == KO_REM)) return 1;
  for (int i = 0; i < 3; i++)
    if (may_trap(x->a[i])) return 1;
  return 0;
}

static LLVMValueRef emit_expr(Emit *e, const KExpr *x);

/* An i64 truth value as i1. */
static LLVMValueRef truth(Emit *e, LLVMValueRef v) {
  return LLVMBuildICmp(e->b, LLVMIntNE, v, c64(e, 0), "");
}

static LLVMValueRef bool64(Emit *e, LLVMValueRef i1) { return LLVMBuildZExt(e->b, i1, e->t64, ""); }

static LLVMValueRef elem_addr(Emit *e, KType elem, LLVMValueRef base, LLVMValueRef idx,
                              unsigned *align) {
  LLVMTypeRef mt = mem_type(e, elem, align);
  if (!mt) {
    efail(e, "memory of type %s", kir_type_name(elem));
    return NULL;
  }
  return LLVMBuildInBoundsGEP2(e->b, mt, base, &idx, 1, "");
}

static LLVMValueRef emit_load(Emit *e, const KExpr *x) {
  LLVMValueRef base = emit_expr(e, x->a[0]), idx = emit_expr(e, x->a[1]);
  if (e->bad) return NULL;
  unsigned align;
  LLVMValueRef p = elem_addr(e, x->elem, base, idx, &align);
  if (!p) return NULL;
  LLVMTypeRef mt = mem_type(e, x->elem, &align);
  LLVMValueRef v = LLVMBuildLoad2(e->b, mt, p, "");
  LLVMSetAlignment(v, align);
  switch (x->elem) {
  case KT_BF16: {
    LLVMValueRef w = LLVMBuildZExt(e->b, v, e->t32, "");
    w = LLVMBuildShl(e->b, w, c32(e, 16), "");
    return LLVMBuildBitCast(e->b, w, e->tf32, "");
  }
  case KT_F16: return LLVMBuildFPExt(e->b, v, e->tf32, "");
  case KT_I32: return LLVMBuildSExt(e->b, v, e->t64, "");
  default: return v;
  }
}

/* f32 -> bf16 bits, rounding to nearest even; NaN stays a quiet NaN. */
static LLVMValueRef to_bf16(Emit *e, LLVMValueRef f) {
  LLVMValueRef bits = LLVMBuildBitCast(e->b, f, e->t32, "");
  LLVMValueRef hi = LLVMBuildLShr(e->b, bits, c32(e, 16), "");
  LLVMValueRef lsb = LLVMBuildAnd(e->b, hi, c32(e, 1), "");
  LLVMValueRef bias = LLVMBuildAdd(e->b, lsb, c32(e, 0x7FFF), "");
  LLVMValueRef rounded = LLVMBuildLShr(e->b, LLVMBuildAdd(e->b, bits, bias, ""), c32(e, 16), "");
  LLVMValueRef qnan = LLVMBuildOr(e->b, hi, c32(e, 0x40), "");
  LLVMValueRef isnan = LLVMBuildFCmp(e->b, LLVMRealUNO, f, f, "");
  LLVMValueRef r = LLVMBuildSelect(e->b, isnan, qnan, rounded, "");
  return LLVMBuildTrunc(e->b, r, e->t16, "");
}

static LLVMValueRef i32_as_f32(Emit *e, LLVMValueRef v) { return LLVMBuildBitCast(e->b, v, e->tf32, ""); }

/* expf as straight-line f32 code (no call, no branch), so that loops around it vectorise:
 *   x is clamped to [-104, 89] (NaN to -104; the result is fixed up at the end);
 *   n = round(x / ln 2) (through the 1.5 * 2^23 rounding constant), r = x - n ln 2 with
 *   ln 2 split in two (Cody-Waite: n * 0.693359375 is exact for |n| < 2^15);
 *   e^r = 1 + r + r^2 p(r) on [-ln2/2, ln2/2] (Cephes' expf polynomial, degree 7 in all);
 *   2^n = 2^(n >> 1) * 2^(n - (n >> 1)), two normal powers of two (n is in [-151, 129]), so
 *   that results in the subnormal range round once, and those above FLT_MAX become +inf.
 * Max error 1.02 ulp over every float (0.99 without FMA contraction of the polynomial);
 * exp(x) is 0 for x < -103.97, +inf for x > 88.7228, NaN for NaN. */
static LLVMValueRef emit_expf(Emit *e, LLVMValueRef x) {
  LLVMBuilderRef b = e->b;
  LLVMValueRef xc = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, x, cf(e, 89.0), ""),
                                    cf(e, 89.0), x, "");
  xc = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealULT, xc, cf(e, -104.0), ""), cf(e, -104.0),
                       xc, "");
  const double magic = 12582912.0; /* 1.5 * 2^23: x + magic - magic rounds x to an integer */
  LLVMValueRef t = LLVMBuildFAdd(b, LLVMBuildFMul(b, xc, cf(e, 1.44269504088896341), ""),
                                 cf(e, magic), "");
  LLVMValueRef kf = LLVMBuildFSub(b, t, cf(e, magic), "");
  LLVMValueRef r = LLVMBuildFSub(b, xc, LLVMBuildFMul(b, kf, cf(e, 0.693359375), ""), "");
  r = LLVMBuildFSub(b, r, LLVMBuildFMul(b, kf, cf(e, -2.12194440e-4), ""), "");
  static const double poly[] = {1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1};
  LLVMValueRef p = cf(e, poly[0]);
  for (int i = 1; i < 6; i++) {
    LLVMValueRef a[3] = {p, r, cf(e, poly[i])};
    p = call_intrinsic(e, "llvm.fmuladd", e->tf32, a, 3);
  }
  LLVMValueRef a3[3] = {p, LLVMBuildFMul(b, r, r, ""), r};
  LLVMValueRef y = LLVMBuildFAdd(b, call_intrinsic(e, "llvm.fmuladd", e->tf32, a3, 3), cf(e, 1), "");
  LLVMValueRef n = LLVMBuildFPToSI(b, kf, e->t32, "");
  LLVMValueRef n1 = LLVMBuildAShr(b, n, c32(e, 1), "");
  LLVMValueRef n2 = LLVMBuildNSWSub(b, n, n1, "");
  LLVMValueRef s1 = i32_as_f32(e, LLVMBuildShl(b, LLVMBuildNSWAdd(b, n1, c32(e, 127), ""), c32(e, 23), ""));
  LLVMValueRef s2 = i32_as_f32(e, LLVMBuildShl(b, LLVMBuildNSWAdd(b, n2, c32(e, 127), ""), c32(e, 23), ""));
  LLVMValueRef res = LLVMBuildFMul(b, LLVMBuildFMul(b, y, s1, ""), s2, "");
  return LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealUNO, x, x, ""), x, res, "");
}

/* The stable sigmoid: x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)), one exp. */
static LLVMValueRef emit_sigmoid(Emit *e, LLVMValueRef x) {
  LLVMValueRef en = emit_expf(e, LLVMBuildFNeg(e->b, intr1(e, "llvm.fabs", x), ""));
  LLVMValueRef pos = LLVMBuildFCmp(e->b, LLVMRealOGE, x, cf(e, 0), "");
  LLVMValueRef num = LLVMBuildSelect(e->b, pos, cf(e, 1), en, "");
  return LLVMBuildFDiv(e->b, num, LLVMBuildFAdd(e->b, cf(e, 1), en, ""), "");
}

/* softplus(x) = (x > 0 ? x : 0) + log1p(exp(-|x|)) */
static LLVMValueRef emit_softplus(Emit *e, LLVMValueRef x) {
  LLVMValueRef pos = LLVMBuildFCmp(e->b, LLVMRealOGT, x, cf(e, 0), "");
  LLVMValueRef mx = LLVMBuildSelect(e->b, pos, x, cf(e, 0), "");
  LLVMValueRef en = emit_expf(e, LLVMBuildFNeg(e->b, intr1(e, "llvm.fabs", x), ""));
  return LLVMBuildFAdd(e->b, mx, call_libm(e, "log1pf", en), "");
}

static LLVMValueRef emit_unary(Emit *e, const KExpr *x) {
  LLVMValueRef v = emit_expr(e, x->a[0]);
  if (e->bad) return NULL;
  int isf = x->a[0]->type == KT_F32;
  switch (x->op) {
  case KO_NEG: return isf ? LLVMBuildFNeg(e->b, v, "") : LLVMBuildNSWSub(e->b, c64(e, 0), v, "");
  case KO_I2F: return LLVMBuildSIToFP(e->b, v, e->tf32, "");
  default: break;
  }
  if (!isf) {
    efail(e, "%s of %s", kir_op_name(x->op), kir_type_name(x->a[0]->type));
    return NULL;
  }
  switch (x->op) {
  case KO_EXP: return emit_expf(e, v);
  case KO_LOG: return intr1(e, "llvm.log", v);
  case KO_SQRT: return intr1(e, "llvm.sqrt", v);
  case KO_RSQRT: return LLVMBuildFDiv(e->b, cf(e, 1), intr1(e, "llvm.sqrt", v), "");
  case KO_ABS: return intr1(e, "llvm.fabs", v);
  case KO_TANH: return call_libm(e, "tanhf", v);
  case KO_SIGMOID: return emit_sigmoid(e, v);
  case KO_SOFTPLUS: return emit_softplus(e, v);
  case KO_LOGSIGMOID:
    return LLVMBuildFNeg(e->b, emit_softplus(e, LLVMBuildFNeg(e->b, v, "")), "");
  case KO_SILU: return LLVMBuildFMul(e->b, v, emit_sigmoid(e, v), "");
  case KO_RELU: {
    LLVMValueRef neg = LLVMBuildFCmp(e->b, LLVMRealOLT, v, cf(e, 0), "");
    return LLVMBuildSelect(e->b, neg, cf(e, 0), v, "");
  }
  case KO_ELU: { /* x > 0 ? x : expm1(x), expm1 only of non-positive values */
    LLVMValueRef pos = LLVMBuildFCmp(e->b, LLVMRealOGT, v, cf(e, 0), "");
    LLVMValueRef arg = LLVMBuildSelect(e->b, pos, cf(e, 0), v, "");
    return LLVMBuildSelect(e->b, pos, v, call_libm(e, "expm1f", arg), "");
  }
  default: efail(e, "unknown unary operation %d", (int)x->op); return NULL;
  }
}

static LLVMValueRef emit_binary(Emit *e, const KExpr *x) {
  LLVMValueRef l = emit_expr(e, x->a[0]), r = emit_expr(e, x->a[1]);
  if (e->bad) return NULL;
  KType t = x->a[0]->type;
  if (t != x->a[1]->type || (t != KT_I64 && t != KT_F32)) {
    efail(e, "%s of %s and %s", kir_op_name(x->op), kir_type_name(t),
          kir_type_name(x->a[1]->type));
    return NULL;
  }
  if (t == KT_F32) {
    LLVMFastMathFlags fl = LLVMFastMathAllowContract | (x->reassoc ? LLVMFastMathAllowReassoc : 0);
    LLVMValueRef v;
    switch (x->op) {
    case KO_ADD: v = LLVMBuildFAdd(e->b, l, r, ""); set_fmf(v, fl); return v;
    case KO_SUB: v = LLVMBuildFSub(e->b, l, r, ""); set_fmf(v, fl); return v;
    case KO_MUL: v = LLVMBuildFMul(e->b, l, r, ""); set_fmf(v, fl); return v;
    case KO_DIV: v = LLVMBuildFDiv(e->b, l, r, ""); if (x->reassoc) set_fmf(v, fl); return v;
    case KO_MIN: return intr2(e, "llvm.minimum", l, r);
    case KO_MAX: return intr2(e, "llvm.maximum", l, r);
    case KO_LT: return bool64(e, LLVMBuildFCmp(e->b, LLVMRealOLT, l, r, ""));
    case KO_LE: return bool64(e, LLVMBuildFCmp(e->b, LLVMRealOLE, l, r, ""));
    case KO_EQ: return bool64(e, LLVMBuildFCmp(e->b, LLVMRealOEQ, l, r, ""));
    case KO_NE: return bool64(e, LLVMBuildFCmp(e->b, LLVMRealUNE, l, r, ""));
    default: efail(e, "%s of f32", kir_op_name(x->op)); return NULL;
    }
  }
  switch (x->op) {
  case KO_ADD: return LLVMBuildNSWAdd(e->b, l, r, "");
  case KO_SUB: return LLVMBuildNSWSub(e->b, l, r, "");
  case KO_MUL: return LLVMBuildNSWMul(e->b, l, r, "");
  case KO_DIV: return LLVMBuildSDiv(e->b, l, r, "");
  case KO_REM: return LLVMBuildSRem(e->b, l, r, "");
  case KO_MIN: return intr2(e, "llvm.smin", l, r);
  case KO_MAX: return intr2(e, "llvm.smax", l, r);
  case KO_LT: return bool64(e, LLVMBuildICmp(e->b, LLVMIntSLT, l, r, ""));
  case KO_LE: return bool64(e, LLVMBuildICmp(e->b, LLVMIntSLE, l, r, ""));
  case KO_EQ: return bool64(e, LLVMBuildICmp(e->b, LLVMIntEQ, l, r, ""));
  case KO_NE: return bool64(e, LLVMBuildICmp(e->b, LLVMIntNE, l, r, ""));
  case KO_AND: return bool64(e, LLVMBuildAnd(e->b, truth(e, l), truth(e, r), ""));
  case KO_OR: return bool64(e, LLVMBuildOr(e->b, truth(e, l), truth(e, r), ""));
  default: efail(e, "%s of i64", kir_op_name(x->op)); return NULL;
  }
}

static LLVMValueRef emit_select(Emit *e, const KExpr *x) {
  LLVMValueRef c = emit_expr(e, x->a[0]);
  if (e->bad) return NULL;
  c = truth(e, c);
  if (!may_trap(x->a[1]) && !may_trap(x->a[2])) {
    LLVMValueRef a = emit_expr(e, x->a[1]), b = emit_expr(e, x->a[2]);
    if (e->bad) return NULL;
    return LLVMBuildSelect(e->b, c, a, b, "");
  }
  /* only the chosen arm is evaluated (as C's ?:) */
  LLVMBasicBlockRef bt = new_block(e, "sel.then"), bf = new_block(e, "sel.else"),
                    bj = new_block(e, "sel.join");
  LLVMBuildCondBr(e->b, c, bt, bf);
  LLVMPositionBuilderAtEnd(e->b, bt);
  LLVMValueRef a = emit_expr(e, x->a[1]);
  LLVMBasicBlockRef at = LLVMGetInsertBlock(e->b);
  LLVMBuildBr(e->b, bj);
  LLVMPositionBuilderAtEnd(e->b, bf);
  LLVMValueRef b = emit_expr(e, x->a[2]);
  LLVMBasicBlockRef af = LLVMGetInsertBlock(e->b);
  LLVMBuildBr(e->b, bj);
  LLVMPositionBuilderAtEnd(e->b, bj);
  if (e->bad) return NULL;
  LLVMValueRef phi = LLVMBuildPhi(e->b, LLVMTypeOf(a), "");
  LLVMValueRef vals[2] = {a, b};
  LLVMBasicBlockRef blocks[2] = {at, af};
  LLVMAddIncoming(phi, vals, blocks, 2);
  return phi;
}

static LLVMValueRef emit_expr_raw(Emit *e, const KExpr *x) {
  switch (x->kind) {
  case KE_INT: return c64(e, x->i);
  case KE_FLOAT: return cf(e, (double)(float)x->f);
  case KE_VAR: {
    if (x->var < 0 || x->var >= e->kf->nvars) {
      efail(e, "variable %d does not exist", x->var);
      return NULL;
    }
    LLVMTypeRef t = value_type(e, e->kf->vars[x->var].type);
    return LLVMBuildLoad2(e->b, t, e->vars[x->var], "");
  }
  case KE_ARG:
    if (x->arg < 0 || x->arg > 4) {
      efail(e, "argument %d does not exist", x->arg);
      return NULL;
    }
    return e->params[x->arg];
  case KE_LOAD: return emit_load(e, x);
  case KE_BIN: return emit_binary(e, x);
  case KE_UN: return emit_unary(e, x);
  case KE_SELECT: return emit_select(e, x);
  case KE_PTRADD: {
    LLVMValueRef p = emit_expr(e, x->a[0]), off = emit_expr(e, x->a[1]);
    if (e->bad) return NULL;
    return LLVMBuildInBoundsGEP2(e->b, e->t8, p, &off, 1, "");
  }
  }
  efail(e, "unknown expression kind %d", (int)x->kind);
  return NULL;
}

/* Every value has the LLVM type of its KIR type: a node that claims another type (which
 * kir_verify, trusting node types, may let through) is refused here, before it could
 * become invalid LLVM IR. */
static LLVMValueRef emit_expr(Emit *e, const KExpr *x) {
  if (e->bad) return NULL;
  if (!x) {
    efail(e, "missing expression");
    return NULL;
  }
  LLVMValueRef v = emit_expr_raw(e, x);
  if (e->bad) return NULL;
  LLVMTypeRef want = value_type(e, x->type);
  if (!v || !want || LLVMTypeOf(v) != want) {
    static const char *const kinds[] = {"int", "float", "var", "arg", "load",
                                        "binary", "unary", "select", "ptradd"};
    const char *k = x->kind >= KE_INT && x->kind <= KE_PTRADD ? kinds[x->kind] : "?";
    efail(e, "a %s expression%s%s claims type %s, but is not of it", k,
          x->kind == KE_BIN || x->kind == KE_UN ? " " : "",
          x->kind == KE_BIN || x->kind == KE_UN ? kir_op_name(x->op) : "",
          kir_type_name(x->type));
    return NULL;
  }
  return v;
}

/* Loop metadata: distinct !{self, mustprogress[, vectorize.enable true,
 * vectorize.predicate.enable true]}. A KF_VECTORIZE loop is vectorised with its tail folded
 * into masked vector operations (AVX-512 masks, else masked loads and stores): one vector
 * loop, where the default would add a scalar remainder loop and, with 16-float vectors, a
 * vectorised epilogue as well, three copies of the body; on the chunk kernels this took a
 * quarter to a half of the JIT time off (docs/benchmarks.md), and most of these loops run
 * 128 (a multiple of the vector) or chunk-length iterations. */
static LLVMValueRef loop_md(Emit *e, int vectorize) {
  LLVMMetadataRef ops[4];
  unsigned n = 0;
  LLVMMetadataRef tmp = LLVMTemporaryMDNode(e->ctx, NULL, 0);
  ops[n++] = tmp;
  const char *mp = "llvm.loop.mustprogress";
  LLVMMetadataRef mps = LLVMMDStringInContext2(e->ctx, mp, strlen(mp));
  ops[n++] = LLVMMDNodeInContext2(e->ctx, &mps, 1);
  if (vectorize) {
    const char *ve = "llvm.loop.vectorize.enable";
    LLVMMetadataRef pair[2] = {LLVMMDStringInContext2(e->ctx, ve, strlen(ve)),
                               LLVMValueAsMetadata(LLVMConstInt(e->t1, 1, 0))};
    ops[n++] = LLVMMDNodeInContext2(e->ctx, pair, 2);
    const char *pe = "llvm.loop.vectorize.predicate.enable";
    LLVMMetadataRef pred[2] = {LLVMMDStringInContext2(e->ctx, pe, strlen(pe)),
                               LLVMValueAsMetadata(LLVMConstInt(e->t1, 1, 0))};
    ops[n++] = LLVMMDNodeInContext2(e->ctx, pred, 2);
  }
  LLVMMetadataRef node = LLVMMDNodeInContext2(e->ctx, ops, n);
  LLVMMetadataReplaceAllUsesWith(tmp, node); /* self-reference: the node becomes distinct */
  return LLVMMetadataAsValue(e->ctx, node);
}

static void emit_stmts(Emit *e, KStmt *const *s, int n);

static void emit_store(Emit *e, const KStmt *s) {
  LLVMValueRef p = emit_expr(e, s->a), idx = emit_expr(e, s->b), v = emit_expr(e, s->c);
  if (e->bad) return;
  KType vt = s->c->type;
  int ok = (s->elem == KT_F32 || s->elem == KT_BF16 || s->elem == KT_F16) ? vt == KT_F32
           : (s->elem == KT_I64 || s->elem == KT_I32)                     ? vt == KT_I64
           : s->elem == KT_PTR                                            ? vt == KT_PTR
                                                                          : 0;
  if (!ok) {
    efail(e, "store of a %s as %s", kir_type_name(vt), kir_type_name(s->elem));
    return;
  }
  unsigned align;
  LLVMValueRef addr = elem_addr(e, s->elem, p, idx, &align);
  if (!addr) return;
  switch (s->elem) {
  case KT_BF16: v = to_bf16(e, v); break;
  case KT_F16: v = LLVMBuildFPTrunc(e->b, v, e->thalf, ""); break;
  case KT_I32: v = LLVMBuildTrunc(e->b, v, e->t32, ""); break;
  default: break;
  }
  LLVMValueRef st = LLVMBuildStore(e->b, v, addr);
  LLVMSetAlignment(st, align);
}

/* ---- KS_MATMUL: a register-blocked micro-kernel ----
 *
 * C (+)= A B is cut into tiles of MR rows x NR vectors of W floats (W = 16 with AVX-512,
 * 8 with AVX, else 4; the tile: mm_tile_shape). A tile keeps its MR * NR sums in
 * <W x float> values (phi nodes of the k loop, so they live in registers); each step of k
 * loads NR vectors of row k of B, broadcasts A[i, k] of each of the MR rows and does
 * MR * NR multiply-adds (llvm.fmuladd: FMAs where the host has them). C is read once
 * before the k loop (when accumulating) and written once after it.
 *   rows:    blocks of MR; the M % MR rows left over as one smaller tile when M is a
 *            constant, else as blocks of 4, 2, 1 rows (the bits of M % MR);
 *   columns: blocks of NR vectors; the N % (NR W) columns left over as one tile of fewer
 *            vectors, the last one masked (llvm.masked.load / store) when N % W != 0, when N
 *            is a constant, else one vector at a time, masked;
 *   k:       when K is not a constant <= MM_KC, in blocks of MM_KC (the second and later
 *            ones accumulating into C), so that the rows of B that a row block sweeps stay
 *            in cache.
 * Every statement calls one generic function (its sizes runtime values; mm_generic): the
 * JIT compiles it once, for all its kernels, and standalone IR defines it in the module.
 * Expanding each site in place, specialised for constant M and N, made the chunk kernels'
 * JIT ~15% slower (docs/benchmarks.md) for no measurable speed, as a call costs nothing next
 * to a tile's k loop at these sizes (C x 128 x 128). mm_all still specialises for constant
 * operands where it is given them.
 * M, N <= 0 write nothing; K <= 0 sets C = 0 (or leaves it when accumulating). */

enum { MM_MAXR = 8, MM_MAXV = 4, MM_KC = 256 };

typedef struct MM {
  LLVMValueRef M, N, K, A, lda, B, ldb, C, ldc;
  LLVMValueRef kb, ke; /* this k block: [kb, ke) */
  LLVMValueRef acc;    /* i1: the tile starts from C's values (else from 0) */
  unsigned W;
  int MR, NR;
  LLVMTypeRef tv;
} MM;

static int const_i64(LLVMValueRef v, int64_t *out) {
  if (!v || !LLVMIsAConstantInt(v)) return 0;
  *out = LLVMConstIntGetSExtValue(v);
  return 1;
}

/* Whether a feature list ("+sse2,-avx512f,+avx,...") enables feature (e.g. "avx"). */
static int has_feature(const char *list, const char *feature) {
  size_t n = strlen(feature);
  for (const char *p = list; p && *p;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len == n + 1 && p[0] == '+' && !memcmp(p + 1, feature, n)) return 1;
    p = end ? end + 1 : NULL;
  }
  return 0;
}

/* The vector width for the host: 16 floats with avx512f, 8 with avx, else 4. */
static unsigned host_vector_width(const Emit *e) {
  const char *f = e->host ? e->host->features : NULL;
  if (has_feature(f, "avx512f")) return 16;
  if (has_feature(f, "avx")) return 8;
  return 4;
}

/* The tile for a vector width: MR * NR sums + NR vectors of B + a broadcast must fit the
 * register file (32 zmm with AVX-512; 16 ymm / xmm otherwise), and there must be enough
 * independent sums to cover the FMA latency (4 cycles x 1-2 FMAs a cycle).
 *   AVX-512: 8 x 2 (16 sums, 19 zmm in use): per k, 2 vector loads + 8 broadcasts for 16
 *     FMAs; the chunk algorithm's blocks (64 or 128 rows, 64 or 128 columns) split into
 *     whole tiles. On the Zen 4 host 4x4, 6x4, 8x3, 12x2 and 4x3 measured the same (within
 *     noise, all ~110 GFLOP/s): the FMA unit is the limit, not the loads;
 *   AVX2 / SSE: 6 x 2 (12 sums + 2 B vectors + 1 broadcast = 15 of 16 registers). */
static void mm_tile_shape(unsigned W, int *MR, int *NR) {
  if (W == 16) {
    *MR = 8;
    *NR = 2;
  } else {
    *MR = 6;
    *NR = 2;
  }
}

static LLVMValueRef splat(Emit *e, LLVMValueRef x, unsigned W) {
  LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(x), W);
  LLVMValueRef v = LLVMBuildInsertElement(e->b, LLVMGetPoison(vt), x, c32(e, 0), "");
  return LLVMBuildShuffleVector(e->b, v, LLVMGetPoison(vt),
                                LLVMConstNull(LLVMVectorType(e->t32, W)), "");
}

static LLVMValueRef gep_f32(Emit *e, LLVMValueRef base, LLVMValueRef idx) {
  return LLVMBuildInBoundsGEP2(e->b, e->tf32, base, &idx, 1, "");
}

/* A vector load of W floats at p; mask: the lanes to load (NULL: all), the others 0. */
static LLVMValueRef mm_load(Emit *e, const MM *mm, LLVMValueRef p, LLVMValueRef mask) {
  if (!mask) {
    LLVMValueRef v = LLVMBuildLoad2(e->b, mm->tv, p, "");
    LLVMSetAlignment(v, 4);
    return v;
  }
  LLVMTypeRef ov[2] = {mm->tv, e->tptr};
  LLVMValueRef a[4] = {p, c32(e, 4), mask, LLVMConstNull(mm->tv)};
  return call_intrinsic_ov(e, "llvm.masked.load", ov, 2, a, 4);
}

static void mm_store(Emit *e, const MM *mm, LLVMValueRef v, LLVMValueRef p, LLVMValueRef mask) {
  if (!mask) {
    LLVMSetAlignment(LLVMBuildStore(e->b, v, p), 4);
    return;
  }
  LLVMTypeRef ov[2] = {mm->tv, e->tptr};
  LLVMValueRef a[4] = {v, p, c32(e, 4), mask};
  call_intrinsic_ov(e, "llvm.masked.store", ov, 2, a, 4);
}

/* The lanes l < n of a vector, n in [0, W]: a constant, or an i64 value. */
static LLVMValueRef lanes_below(Emit *e, const MM *mm, LLVMValueRef n) {
  LLVMValueRef lanes[16];
  int64_t cn;
  if (const_i64(n, &cn)) {
    for (unsigned l = 0; l < mm->W; l++) lanes[l] = LLVMConstInt(e->t1, (int64_t)l < cn, 0);
    return LLVMConstVector(lanes, mm->W);
  }
  for (unsigned l = 0; l < mm->W; l++) lanes[l] = c32(e, l);
  return LLVMBuildICmp(e->b, LLVMIntULT, LLVMConstVector(lanes, mm->W),
                       splat(e, LLVMBuildTrunc(e->b, n, e->t32, ""), mm->W), "");
}

/* Loop metadata of the generated loops: no unrolling (the tiles are unrolled already; more
 * copies cost compile time for nothing), no vectorisation. */
static LLVMValueRef mm_loop_md(Emit *e) {
  LLVMMetadataRef tmp = LLVMTemporaryMDNode(e->ctx, NULL, 0);
  const char *ud = "llvm.loop.unroll.disable", *ve = "llvm.loop.vectorize.enable",
             *mp = "llvm.loop.mustprogress";
  LLVMMetadataRef s_ud = LLVMMDStringInContext2(e->ctx, ud, strlen(ud)),
                  s_mp = LLVMMDStringInContext2(e->ctx, mp, strlen(mp));
  LLVMMetadataRef ve_pair[2] = {LLVMMDStringInContext2(e->ctx, ve, strlen(ve)),
                                LLVMValueAsMetadata(LLVMConstInt(e->t1, 0, 0))};
  LLVMMetadataRef ops[4] = {tmp, LLVMMDNodeInContext2(e->ctx, &s_ud, 1),
                            LLVMMDNodeInContext2(e->ctx, ve_pair, 2),
                            LLVMMDNodeInContext2(e->ctx, &s_mp, 1)};
  LLVMMetadataRef node = LLVMMDNodeInContext2(e->ctx, ops, 4);
  LLVMMetadataReplaceAllUsesWith(tmp, node);
  return LLVMMetadataAsValue(e->ctx, node);
}

/* A counted loop with its induction variable as a phi: for (iv = lo; iv < limit; iv += step).
 * mm_loop_begin leaves the builder in the body; mm_loop_end closes it and leaves the builder
 * in the exit block, where iv holds the first value that failed the test. */
typedef struct MMLoop {
  LLVMValueRef iv;
  LLVMBasicBlockRef hdr, exit;
} MMLoop;

static void mm_loop_begin(Emit *e, MMLoop *l, LLVMValueRef lo, LLVMValueRef limit,
                          const char *name) {
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(e->b);
  l->hdr = new_block(e, name);
  LLVMBasicBlockRef body = new_block(e, name);
  l->exit = new_block(e, name);
  LLVMBuildBr(e->b, l->hdr);
  LLVMPositionBuilderAtEnd(e->b, l->hdr);
  l->iv = LLVMBuildPhi(e->b, e->t64, "");
  LLVMAddIncoming(l->iv, &lo, &pre, 1);
  LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, l->iv, limit, ""), body, l->exit);
  LLVMPositionBuilderAtEnd(e->b, body);
}

static void mm_loop_end(Emit *e, MMLoop *l, int64_t step) {
  LLVMValueRef next = LLVMBuildNSWAdd(e->b, l->iv, c64(e, step), "");
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(e->b);
  LLVMValueRef back = LLVMBuildBr(e->b, l->hdr);
  LLVMSetMetadata(back, e->md_loop, mm_loop_md(e));
  LLVMAddIncoming(l->iv, &next, &latch, 1);
  LLVMPositionBuilderAtEnd(e->b, l->exit);
}

/* One tile: rows [i0, i0 + R) x columns [j0, j0 + V W) of C over this k block; mask: the
 * lanes of the last vector that exist (NULL: all). */
static void mm_tile(Emit *e, const MM *mm, LLVMValueRef i0, LLVMValueRef j0, int R, int V,
                    LLVMValueRef mask) {
  LLVMBuilderRef b = e->b;
  LLVMValueRef cp[MM_MAXR][MM_MAXV], init[MM_MAXR][MM_MAXV], acc[MM_MAXR][MM_MAXV],
      nxt[MM_MAXR][MM_MAXV], bv[MM_MAXV];
  LLVMValueRef zero = LLVMConstNull(mm->tv);
  int64_t accc = -1;
  int known = const_i64(mm->acc, &accc);
  for (int r = 0; r < R; r++) {
    LLVMValueRef row = LLVMBuildNSWAdd(
        b, LLVMBuildNSWMul(b, LLVMBuildNSWAdd(b, i0, c64(e, r), ""), mm->ldc, ""), j0, "");
    for (int v = 0; v < V; v++) {
      LLVMValueRef mk = v == V - 1 ? mask : NULL;
      cp[r][v] = gep_f32(e, mm->C, LLVMBuildNSWAdd(b, row, c64(e, (int64_t)v * mm->W), ""));
      init[r][v] = zero;
      if (!known || accc) {
        LLVMValueRef c = mm_load(e, mm, cp[r][v], mk);
        init[r][v] = known ? c : LLVMBuildSelect(b, mm->acc, c, zero, "");
      }
    }
  }
  /* the k loop */
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(b), hdr = new_block(e, "mm.k"),
                    body = new_block(e, "mm.kbody"), exit = new_block(e, "mm.kend");
  LLVMBuildBr(b, hdr);
  LLVMPositionBuilderAtEnd(b, hdr);
  LLVMValueRef k = LLVMBuildPhi(b, e->t64, "k"), kb = mm->kb;
  LLVMAddIncoming(k, &kb, &pre, 1);
  for (int r = 0; r < R; r++)
    for (int v = 0; v < V; v++) {
      acc[r][v] = LLVMBuildPhi(b, mm->tv, "acc");
      LLVMAddIncoming(acc[r][v], &init[r][v], &pre, 1);
    }
  LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, k, mm->ke, ""), body, exit);
  LLVMPositionBuilderAtEnd(b, body);
  LLVMValueRef brow = LLVMBuildNSWAdd(b, LLVMBuildNSWMul(b, k, mm->ldb, ""), j0, "");
  for (int v = 0; v < V; v++)
    bv[v] = mm_load(e, mm,
                    gep_f32(e, mm->B, LLVMBuildNSWAdd(b, brow, c64(e, (int64_t)v * mm->W), "")),
                    v == V - 1 ? mask : NULL);
  for (int r = 0; r < R; r++) {
    LLVMValueRef ai = LLVMBuildNSWAdd(
        b, LLVMBuildNSWMul(b, LLVMBuildNSWAdd(b, i0, c64(e, r), ""), mm->lda, ""), k, "");
    LLVMValueRef a = LLVMBuildLoad2(b, e->tf32, gep_f32(e, mm->A, ai), "");
    LLVMSetAlignment(a, 4);
    LLVMValueRef as = splat(e, a, mm->W);
    for (int v = 0; v < V; v++) {
      LLVMValueRef args[3] = {as, bv[v], acc[r][v]};
      nxt[r][v] = call_intrinsic(e, "llvm.fmuladd", mm->tv, args, 3);
    }
  }
  LLVMValueRef k1 = LLVMBuildNSWAdd(b, k, c64(e, 1), "");
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(b);
  LLVMSetMetadata(LLVMBuildBr(b, hdr), e->md_loop, mm_loop_md(e));
  LLVMAddIncoming(k, &k1, &latch, 1);
  for (int r = 0; r < R; r++)
    for (int v = 0; v < V; v++) LLVMAddIncoming(acc[r][v], &nxt[r][v], &latch, 1);
  LLVMPositionBuilderAtEnd(b, exit);
  for (int r = 0; r < R; r++)
    for (int v = 0; v < V; v++) mm_store(e, mm, acc[r][v], cp[r][v], v == V - 1 ? mask : NULL);
}

/* Rows [i0, i0 + R) of C, every column. */
static void mm_panel(Emit *e, const MM *mm, LLVMValueRef i0, int R) {
  LLVMBuilderRef b = e->b;
  const int64_t wide = (int64_t)mm->NR * mm->W;
  int64_t n;
  if (const_i64(mm->N, &n)) {
    int64_t full = n / wide * wide, rest = n - full;
    if (full > 0) {
      MMLoop jl;
      mm_loop_begin(e, &jl, c64(e, 0), c64(e, full), "mm.j");
      mm_tile(e, mm, i0, jl.iv, R, mm->NR, NULL);
      mm_loop_end(e, &jl, wide);
    }
    if (rest > 0) {
      int V = (int)((rest + mm->W - 1) / mm->W);
      int64_t last = rest - (int64_t)(V - 1) * mm->W;
      mm_tile(e, mm, i0, c64(e, full), R, V,
              last < (int64_t)mm->W ? lanes_below(e, mm, c64(e, last)) : NULL);
    }
    return;
  }
  MMLoop jl;
  mm_loop_begin(e, &jl, c64(e, 0), LLVMBuildNSWSub(b, mm->N, c64(e, wide - 1), ""), "mm.j");
  mm_tile(e, mm, i0, jl.iv, R, mm->NR, NULL);
  mm_loop_end(e, &jl, wide);
  /* the columns left: one vector at a time, the last one masked */
  MMLoop vl;
  mm_loop_begin(e, &vl, jl.iv, mm->N, "mm.jv");
  LLVMValueRef left = LLVMBuildNSWSub(b, mm->N, vl.iv, ""), wv = c64(e, mm->W);
  left = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, left, wv, ""), left, wv, "");
  mm_tile(e, mm, i0, vl.iv, R, 1, lanes_below(e, mm, left));
  mm_loop_end(e, &vl, mm->W);
}

/* Every tile of C over the k block [mm->kb, mm->ke). */
static void mm_block(Emit *e, const MM *mm) {
  LLVMBuilderRef b = e->b;
  int64_t m;
  if (const_i64(mm->M, &m)) {
    int64_t full = m / mm->MR * mm->MR, rest = m - full;
    if (full > 0) {
      MMLoop il;
      mm_loop_begin(e, &il, c64(e, 0), c64(e, full), "mm.i");
      mm_panel(e, mm, il.iv, mm->MR);
      mm_loop_end(e, &il, mm->MR);
    }
    if (rest > 0) mm_panel(e, mm, c64(e, full), (int)rest);
    return;
  }
  MMLoop il;
  mm_loop_begin(e, &il, c64(e, 0), LLVMBuildNSWSub(b, mm->M, c64(e, mm->MR - 1), ""), "mm.i");
  mm_panel(e, mm, il.iv, mm->MR);
  mm_loop_end(e, &il, mm->MR);
  /* the M % MR rows left, one row panel at a time: the chunk kernels' row counts are
   * mostly multiples of MR (chunk lengths, state rows), and one panel instead of the
   * 4-, 2- and 1-row ones keeps the function small (its compile time: docs/benchmarks.md) */
  if (mm->MR > 1) {
    MMLoop rl;
    mm_loop_begin(e, &rl, il.iv, mm->M, "mm.r");
    mm_panel(e, mm, rl.iv, 1);
    mm_loop_end(e, &rl, 1);
  }
}

/* The whole product; accumulate: i1. */
static void mm_all(Emit *e, MM *mm, LLVMValueRef accumulate) {
  LLVMBuilderRef b = e->b;
  int64_t k, m, n, acc = 0;
  if ((const_i64(mm->M, &m) && m <= 0) || (const_i64(mm->N, &n) && n <= 0)) return;
  if (const_i64(mm->K, &k) && k <= MM_KC) {
    mm->kb = c64(e, 0);
    mm->ke = mm->K;
    mm->acc = accumulate;
    mm_block(e, mm);
    return;
  }
  /* blocks of MM_KC over k; the first one runs even when K <= 0 (it sets C = 0) */
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(b), body = new_block(e, "mm.kb"),
                    exit = new_block(e, "mm.kbend");
  LLVMBuildBr(b, body);
  LLVMPositionBuilderAtEnd(b, body);
  LLVMValueRef kb = LLVMBuildPhi(b, e->t64, "kb"), zero = c64(e, 0);
  LLVMAddIncoming(kb, &zero, &pre, 1);
  LLVMValueRef kn = LLVMBuildNSWAdd(b, kb, c64(e, MM_KC), "");
  mm->kb = kb;
  mm->ke = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, kn, mm->K, ""), kn, mm->K, "");
  LLVMValueRef later = LLVMBuildICmp(b, LLVMIntSGT, kb, zero, "");
  mm->acc = const_i64(accumulate, &acc) ? (acc ? accumulate : later)
                                        : LLVMBuildOr(b, accumulate, later, "");
  mm_block(e, mm);
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(b);
  LLVMValueRef br = LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, kn, mm->K, ""), body, exit);
  LLVMSetMetadata(br, e->md_loop, mm_loop_md(e));
  LLVMAddIncoming(kb, &kn, &latch, 1);
  LLVMPositionBuilderAtEnd(b, exit);
}

static void mm_setup(Emit *e, MM *mm) {
  mm->W = host_vector_width(e);
  mm_tile_shape(mm->W, &mm->MR, &mm->NR);
  if (mm->MR < 1) mm->MR = 1;
  if (mm->MR > MM_MAXR) mm->MR = MM_MAXR;
  if (mm->NR < 1) mm->NR = 1;
  if (mm->NR > MM_MAXV) mm->NR = MM_MAXV;
  mm->tv = LLVMVectorType(e->tf32, mm->W);
}

/* Function attributes of code with W-float vectors: on a host that prefers 256-bit
 * vectors, 512-bit ones are still kept whole. */
static void mm_fn_attrs(Emit *e, LLVMValueRef fn, unsigned W) {
  if (W == 16)
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                            LLVMCreateStringAttribute(e->ctx, "min-legal-vector-width", 22,
                                                      "512", 3));
}

static void add_target_attrs(Emit *e, LLVMValueRef fn);

/* The generic matmul (runtime sizes):
 *   void mixc.matmul(ptr A, i64 lda, ptr B, i64 ldb, ptr C, i64 ldc, i64 M, i64 N, i64 K,
 *                    i1 accumulate)
 * Standalone IR (mixc_jit_ir_text) defines it in the module, internal, on its first use. The
 * JIT compiles it once, as MM_SHARED in a module of its own (mm_compile, on a thread of its
 * own beside the first kernel that calls it: mm_start), and every kernel module only
 * declares it (Emit.shared_mm): its code generation, a quarter of a chunk kernel's, is not
 * repeated for every kernel. The declaration carries what LLVM infers from
 * the definition (it reads A and B and writes C only through its arguments, captures none),
 * so that the kernel's optimisation around the calls is the same. */
#define MM_SHARED "mixc_rt_matmul_f32"
static LLVMValueRef mm_generic(Emit *e, LLVMTypeRef *fty) {
  LLVMTypeRef ps[10] = {e->tptr, e->t64, e->tptr, e->t64, e->tptr, e->t64,
                        e->t64,  e->t64, e->t64,  e->t1};
  *fty = LLVMFunctionType(e->tvoid, ps, 10, 0);
  const char *name = e->shared_mm ? MM_SHARED : "mixc.matmul";
  LLVMValueRef fn = LLVMGetNamedFunction(e->mod, name);
  if (fn) return fn;
  fn = LLVMAddFunction(e->mod, name, *fty);
  add_fn_attr(e, fn, "nounwind");
  add_fn_attr(e, fn, "noinline");
  add_param_attr(e, fn, 5, "noalias"); /* C: the operands do not overlap it */
  add_param_attr(e, fn, 1, "nocapture");
  add_param_attr(e, fn, 3, "nocapture");
  add_param_attr(e, fn, 5, "nocapture");
  add_param_attr(e, fn, 1, "readonly");
  add_param_attr(e, fn, 3, "readonly");
  add_fn_attr(e, fn, "nosync");
  add_fn_attr(e, fn, "nofree");
  add_fn_attr(e, fn, "willreturn");
  unsigned mk = LLVMGetEnumAttributeKindForName("memory", 6);
  if (mk) /* memory(argmem: readwrite): 2 bits per location, argument memory first */
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(e->ctx, mk, 3));
  if (e->shared_mm == 1) return fn; /* declared; the JIT defines it */
  if (!e->shared_mm) LLVMSetLinkage(fn, LLVMInternalLinkage);
  add_target_attrs(e, fn);
  MM mm;
  memset(&mm, 0, sizeof mm);
  mm_setup(e, &mm);
  mm_fn_attrs(e, fn, mm.W);
  LLVMValueRef saved_fn = e->fn;
  LLVMBasicBlockRef saved_bb = LLVMGetInsertBlock(e->b);
  e->fn = fn;
  LLVMPositionBuilderAtEnd(e->b, new_block(e, "entry"));
  LLVMValueRef *dst[9] = {&mm.A, &mm.lda, &mm.B, &mm.ldb, &mm.C, &mm.ldc, &mm.M, &mm.N, &mm.K};
  for (unsigned i = 0; i < 9; i++) *dst[i] = LLVMGetParam(fn, i);
  mm_all(e, &mm, LLVMGetParam(fn, 9));
  LLVMBuildRetVoid(e->b);
  e->fn = saved_fn;
  LLVMPositionBuilderAtEnd(e->b, saved_bb);
  return fn;
}

static void emit_matmul(Emit *e, const KStmt *s) {
  LLVMValueRef op[KM__COUNT];
  for (int i = 0; i < KM__COUNT; i++) {
    op[i] = emit_expr(e, s->mm[i]);
    if (e->bad) return;
    KType want = i == KM_A || i == KM_B || i == KM_C ? KT_PTR : KT_I64;
    if (s->mm[i]->type != want) {
      efail(e, "matmul operand %d is a %s, not a %s", i, kir_type_name(s->mm[i]->type),
            kir_type_name(want));
      return;
    }
  }
  LLVMValueRef accumulate = LLVMConstInt(e->t1, s->flags ? 1 : 0, 0);
  LLVMTypeRef fty;
  LLVMValueRef fn = mm_generic(e, &fty);
  LLVMValueRef args[10] = {op[KM_A], op[KM_LDA], op[KM_B], op[KM_LDB], op[KM_C],
                           op[KM_LDC], op[KM_M], op[KM_N], op[KM_K], accumulate};
  LLVMBuildCall2(e->b, fty, fn, args, 10, "");
}

static void emit_stmt(Emit *e, const KStmt *s) {
  if (e->bad) return;
  if (!s) {
    efail(e, "missing statement");
    return;
  }
  switch (s->kind) {
  case KS_SET: {
    if (s->var < 0 || s->var >= e->kf->nvars) {
      efail(e, "assignment to variable %d, which does not exist", s->var);
      return;
    }
    LLVMValueRef v = emit_expr(e, s->a);
    if (e->bad) return;
    if (s->a->type != e->kf->vars[s->var].type) {
      efail(e, "%s = a %s", e->kf->vars[s->var].name, kir_type_name(s->a->type));
      return;
    }
    LLVMBuildStore(e->b, v, e->vars[s->var]);
    return;
  }
  case KS_STORE: emit_store(e, s); return;
  case KS_FOR: {
    if (s->var < 0 || s->var >= e->kf->nvars || e->kf->vars[s->var].type != KT_I64) {
      efail(e, "a loop needs an i64 variable");
      return;
    }
    LLVMValueRef iv = e->vars[s->var];
    LLVMValueRef lo = emit_expr(e, s->a), hi = emit_expr(e, s->b);
    if (e->bad) return;
    LLVMBuildStore(e->b, lo, iv);
    LLVMBasicBlockRef hdr = new_block(e, "for.head"), body = new_block(e, "for.body"),
                      latch = new_block(e, "for.latch"), exit = new_block(e, "for.end");
    LLVMBuildBr(e->b, hdr);
    LLVMPositionBuilderAtEnd(e->b, hdr);
    LLVMValueRef i = LLVMBuildLoad2(e->b, e->t64, iv, "");
    LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntSLT, i, hi, ""), body, exit);
    LLVMPositionBuilderAtEnd(e->b, body);
    emit_stmts(e, s->body, s->nbody);
    if (e->bad) return;
    LLVMBuildBr(e->b, latch);
    LLVMPositionBuilderAtEnd(e->b, latch);
    LLVMValueRef i2 = LLVMBuildLoad2(e->b, e->t64, iv, "");
    LLVMBuildStore(e->b, LLVMBuildNSWAdd(e->b, i2, c64(e, 1), ""), iv);
    LLVMValueRef back = LLVMBuildBr(e->b, hdr);
    LLVMSetMetadata(back, e->md_loop, loop_md(e, (s->flags & KF_VECTORIZE) != 0));
    LLVMPositionBuilderAtEnd(e->b, exit);
    return;
  }
  case KS_IF: {
    LLVMValueRef c = emit_expr(e, s->a);
    if (e->bad) return;
    LLVMBasicBlockRef bt = new_block(e, "if.then"), bf = new_block(e, "if.else"),
                      bj = new_block(e, "if.end");
    LLVMBuildCondBr(e->b, truth(e, c), bt, bf);
    LLVMPositionBuilderAtEnd(e->b, bt);
    emit_stmts(e, s->body, s->nbody);
    LLVMBuildBr(e->b, bj);
    LLVMPositionBuilderAtEnd(e->b, bf);
    emit_stmts(e, s->orelse, s->norelse);
    LLVMBuildBr(e->b, bj);
    LLVMPositionBuilderAtEnd(e->b, bj);
    return;
  }
  case KS_BLOCK: emit_stmts(e, s->body, s->nbody); return;
  case KS_MATMUL: emit_matmul(e, s); return;
  }
  efail(e, "unknown statement kind %d", (int)s->kind);
}

static void emit_stmts(Emit *e, KStmt *const *s, int n) {
  for (int i = 0; i < n && !e->bad; i++) emit_stmt(e, s[i]);
}

/* target-cpu and target-features of the host */
static void add_target_attrs(Emit *e, LLVMValueRef fn) {
  if (!e->host) return;
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(e->ctx, "target-cpu", 10, e->host->cpu,
                                                    (unsigned)strlen(e->host->cpu)));
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                          LLVMCreateStringAttribute(e->ctx, "target-features", 15,
                                                    e->host->features,
                                                    (unsigned)strlen(e->host->features)));
}

static void emit_func(Emit *e, const KFunc *kf, const char *symbol) {
  e->kf = kf;
  if (kf->cuda_src) {
    efail(e, "kernel %s is a CUDA kernel only (a GPU-specialised form): lower without "
          "KernelSpec.gpu for the CPU", kf->name ? kf->name : "?");
    return;
  }
  LLVMTypeRef params[5] = {e->tptr, e->tptr, e->t64, e->t64, e->tptr};
  LLVMTypeRef fty = LLVMFunctionType(e->tvoid, params, 5, 0);
  e->fn = LLVMAddFunction(e->mod, symbol, fty);
  add_fn_attr(e, e->fn, "nounwind");
  add_target_attrs(e, e->fn);
  /* ptrs and ints: read-only tables nobody else writes during the call; scratch: this
   * call's own memory. Data pointers loaded from ptrs may alias each other. */
  static const char *const pname[5] = {"ptrs", "ints", "begin", "end", "scratch"};
  for (unsigned i = 0; i < 5; i++) {
    e->params[i] = LLVMGetParam(e->fn, i);
    LLVMSetValueName2(e->params[i], pname[i], strlen(pname[i]));
  }
  for (unsigned i = 1; i <= 5; i += (i == 2 ? 3 : 1)) { /* params 1, 2, 5 (1-based) */
    add_param_attr(e, e->fn, i, "noalias");
    add_param_attr(e, e->fn, i, "nocapture");
    if (i != 5) add_param_attr(e, e->fn, i, "readonly");
  }
  LLVMBasicBlockRef entry = new_block(e, "entry");
  LLVMPositionBuilderAtEnd(e->b, entry);
  e->vars = calloc((size_t)(kf->nvars ? kf->nvars : 1), sizeof *e->vars);
  if (!e->vars) {
    efail(e, "out of memory");
    return;
  }
  for (int v = 0; v < kf->nvars; v++) {
    LLVMTypeRef t = value_type(e, kf->vars[v].type);
    if (!t) {
      efail(e, "variable %s of type %s", kf->vars[v].name, kir_type_name(kf->vars[v].type));
      break;
    }
    const char *nm = kf->vars[v].name ? kf->vars[v].name : "v";
    e->vars[v] = LLVMBuildAlloca(e->b, t, nm);
    LLVMBuildStore(e->b, LLVMConstNull(t), e->vars[v]); /* never undef */
  }
  if (!e->bad) emit_stmt(e, kf->body);
  if (!e->bad) LLVMBuildRetVoid(e->b);
  free(e->vars);
  e->vars = NULL;
}

/* A symbol-safe copy of a KIR name (letters, digits, '_'). */
static void sanitize(char *dst, size_t n, const char *src) {
  size_t k = 0;
  for (; src && *src && k + 1 < n; src++)
    dst[k++] = ((*src >= 'a' && *src <= 'z') || (*src >= 'A' && *src <= 'Z') ||
                (*src >= '0' && *src <= '9') || *src == '_')
                   ? *src
                   : '_';
  dst[k] = 0;
}

/* Builds the LLVM module of m in ctx (host may be NULL: no target attributes). prefix
 * non-NULL: function i is named "<prefix>_<i>_<name>" (written to names[i]), else by its
 * KIR name. Returns NULL with a message on failure (KIR or LLVM verification). */
/* A fresh module and builder in ctx, the types. */
static void emit_init(Emit *e, LLVMContextRef ctx, const Host *host, char *err, size_t errlen) {
  memset(e, 0, sizeof *e);
  e->ctx = ctx;
  e->host = host;
  e->err = err;
  e->errlen = errlen;
  e->mod = LLVMModuleCreateWithNameInContext("mixc_kernels", ctx);
  e->b = LLVMCreateBuilderInContext(ctx);
  e->tvoid = LLVMVoidTypeInContext(ctx);
  e->t1 = LLVMInt1TypeInContext(ctx);
  e->t8 = LLVMInt8TypeInContext(ctx);
  e->t16 = LLVMInt16TypeInContext(ctx);
  e->t32 = LLVMInt32TypeInContext(ctx);
  e->t64 = LLVMInt64TypeInContext(ctx);
  e->tf32 = LLVMFloatTypeInContext(ctx);
  e->thalf = LLVMHalfTypeInContext(ctx);
  e->tptr = LLVMPointerTypeInContext(ctx, 0);
  e->md_loop = LLVMGetMDKindIDInContext(ctx, "llvm.loop", 9);
  if (host) LLVMSetTarget(e->mod, host->triple);
}

/* The builder disposed, the module verified: the module, or NULL (disposed) with a message. */
static LLVMModuleRef emit_finish(Emit *e) {
  LLVMDisposeBuilder(e->b);
  if (e->bad) {
    LLVMDisposeModule(e->mod);
    return NULL;
  }
  char *msg = NULL;
  if (LLVMVerifyModule(e->mod, LLVMReturnStatusAction, &msg)) {
    set_err(e->err, e->errlen, "llvm backend: internal error: the module does not verify: %s",
            msg ? msg : "?");
    if (msg) LLVMDisposeMessage(msg);
    LLVMDisposeModule(e->mod);
    return NULL;
  }
  if (msg) LLVMDisposeMessage(msg);
  return e->mod;
}

/* A module of the shared matmul alone (MM_SHARED, external), or NULL with a message. */
static LLVMModuleRef build_mm_module(LLVMContextRef ctx, const Host *host, char *err,
                                     size_t errlen) {
  Emit e;
  emit_init(&e, ctx, host, err, errlen);
  e.shared_mm = 2;
  LLVMTypeRef fty;
  mm_generic(&e, &fty);
  return emit_finish(&e);
}

/* shared_mm: KS_MATMUL calls the JIT's shared matmul (declared only), else the module's
 * own (standalone IR). */
static LLVMModuleRef build_module(LLVMContextRef ctx, const KModule *m, const Host *host,
                                  const char prefix[24], char (*names)[160], int shared_mm,
                                  char *err, size_t errlen) {
  if (kir_verify(m, err, errlen)) return NULL;
  Emit e;
  emit_init(&e, ctx, host, err, errlen);
  e.shared_mm = shared_mm ? 1 : 0;
  for (int i = 0; i < m->nfuncs && !e.bad; i++) {
    char nm[96], sym[160];
    sanitize(nm, sizeof nm, m->funcs[i]->name);
    if (!nm[0]) snprintf(nm, sizeof nm, "kernel");
    if (prefix)
      snprintf(sym, sizeof sym, "%.23s_%d_%s", prefix, i, nm);
    else
      snprintf(sym, sizeof sym, "%s", nm);
    if (names) memcpy(names[i], sym, sizeof sym);
    emit_func(&e, m->funcs[i], sym);
  }
  return emit_finish(&e);
}

/* A pipeline for the host CPU, without the generic loop unroller and interleaver: the
 * matmul micro-kernel is register-blocked by hand, and on the chunk kernels unrolling doubled
 * the JIT time (GLA 405 -> 227 ms, Gated DeltaNet 204 -> 125 ms) for no measurable speed.
 * (default<O2> before KERNEL_PIPELINE, below, rather than O3: each kernel is one function
 * calling one shared, non-inlined matmul micro-kernel (mixc.matmul), where O3's extra passes
 * changed nothing measurable at run time, and O2 took 20-30% less time: docs/benchmarks.md.) */
static int run_pipeline(LLVMModuleRef mod, LLVMTargetMachineRef tm, const char *pipeline,
                        char *err, size_t errlen) {
  LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
  LLVMSetModuleDataLayout(mod, dl);
  LLVMDisposeTargetData(dl);
  LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
  LLVMPassBuilderOptionsSetLoopVectorization(opts, 1);
  LLVMPassBuilderOptionsSetSLPVectorization(opts, 1);
  LLVMPassBuilderOptionsSetLoopUnrolling(opts, 0);
  LLVMPassBuilderOptionsSetLoopInterleaving(opts, 0);
  LLVMErrorRef e = LLVMRunPasses(mod, pipeline, tm, opts);
  LLVMDisposePassBuilderOptions(opts);
  return take_error(e, "optimisation", err, errlen);
}

/* The kernels' passes: default<O2>'s function simplification and loop vectorisation, less
 * what does nothing for KIR's code (one function; its only call, the shared matmul, is never
 * inlined): no inliner or other interprocedural passes, no loop unswitching, jump threading
 * or correlated-value propagation, one instcombine round each time. Measured by the
 * instructions the JIT executes (callgrind, GLA's chunk kernel first in a fresh context;
 * noise-free where wall time here varies 1.5x): 416 -> 371 million in its compiling thread,
 * Gated DeltaNet and Mamba2 806 -> 746; kernel speed the same (GLA 23.4-23.8 ms both, one
 * thread; Gated DeltaNet 26.9-27.2 against 27.1-27.3, alternated; docs/benchmarks.md,
 * session 5). Without loop-idiom, slp-vectorizer, gvn and loop-load-elim Gated DeltaNet ran
 * 2-4% slower. */
#define KERNEL_PIPELINE                                                                       \
  "function(sroa,early-cse,simplifycfg,instcombine<max-iterations=1;no-verify-fixpoint>,"     \
  "loop-mssa(loop-rotate,licm),simplifycfg,loop(loop-idiom,indvars,loop-deletion),"           \
  "loop-vectorize,loop-load-elim,instcombine<max-iterations=1;no-verify-fixpoint>,"           \
  "simplifycfg<hoist-common-insts;sink-common-insts;switch-to-lookup>,slp-vectorizer,"        \
  "vector-combine,loop-mssa(licm),gvn,instcombine<max-iterations=1;no-verify-fixpoint>,"      \
  "simplifycfg)"

static int optimize_module(LLVMModuleRef mod, LLVMTargetMachineRef tm, char *err, size_t errlen) {
  return run_pipeline(mod, tm, KERNEL_PIPELINE, err, errlen);
}

/* The shared matmul's passes: its IR is register-blocked by hand, in SSA form (phis, no
 * allocas), so default<O2> (~20 ms) changed nothing measurable in its speed (the Gated
 * DeltaNet chunk kernel, 58% of its time in the matmul, ran the same: docs/benchmarks.md);
 * a clean-up is enough. */
#define MM_PIPELINE "function(instcombine<max-iterations=1;no-verify-fixpoint>,simplifycfg,loop-mssa(licm))"

/* ---- the JIT ---- */

/* The shared matmul's state (MixcJit.mm). */
enum { MM_NONE, MM_BUSY, MM_READY };

struct MixcJit {
  LLVMOrcLLJITRef jit;
  pthread_mutex_t mu;
  pthread_cond_t mm_cv; /* signalled when mm leaves MM_BUSY */
  Host host;
  unsigned long long counter; /* under mu */
  int mm;                     /* under mu: MM_*, the shared matmul (MM_SHARED) in the JIT */
  int mm_rc;                  /* under mu: the last attempt's result (1: failed, mm_err) */
  char mm_err[256];           /* under mu */
  pthread_t mm_thread;        /* under mu: compiling the matmul, to be joined */
  int mm_joinable;
  int mm_in_jit; /* its module was added (only the one mm_compile running touches it) */
};

/* Adds a module to the JIT and looks its symbols up, which generates their code: under j->mu,
 * because LLJIT's compile function (one TargetMachine) is not safe for two threads at once
 * (two code generations at once corrupted the objects: "symbol ... extends past the end of
 * its containing block", then "Failed to materialize symbols"). The IR passes before it run
 * unlocked, each compile on a TargetMachine of its own. */
static LLVMErrorRef jit_add_locked(MixcJit *j, LLVMOrcThreadSafeModuleRef tsm) {
  pthread_mutex_lock(&j->mu);
  LLVMErrorRef e = LLVMOrcLLJITAddLLVMIRModule(j->jit, LLVMOrcLLJITGetMainJITDylib(j->jit), tsm);
  pthread_mutex_unlock(&j->mu);
  return e;
}

static LLVMErrorRef jit_lookup_locked(MixcJit *j, LLVMOrcExecutorAddress *addr, const char *name) {
  pthread_mutex_lock(&j->mu);
  LLVMErrorRef e = LLVMOrcLLJITLookup(j->jit, addr, name);
  pthread_mutex_unlock(&j->mu);
  return e;
}

/* Builds, optimises and adds the shared matmul's module to the JIT, then looks it up, which
 * generates its code (nothing calls it before j->mm is MM_READY). */
static int mm_compile(MixcJit *j, char *err, size_t errlen) {
  LLVMOrcExecutorAddress addr = 0;
  if (j->mm_in_jit) /* added by an attempt whose code generation failed: look it up again */
    return take_error(jit_lookup_locked(j, &addr, MM_SHARED), "compiling the matmul", err,
                      errlen);
  LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
  LLVMContextRef ctx = LLVMOrcThreadSafeContextGetContext(tsc);
  LLVMTargetMachineRef tm = NULL;
  int rc = 1;
  LLVMModuleRef mod = build_mm_module(ctx, &j->host, err, errlen);
  if (!mod) goto done;
  tm = make_tm(&j->host, err, errlen);
  if (!tm || run_pipeline(mod, tm, MM_PIPELINE, err, errlen)) {
    LLVMDisposeModule(mod);
    goto done;
  }
  LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(mod, tsc);
  LLVMErrorRef e = jit_add_locked(j, tsm);
  if (e) {
    LLVMOrcDisposeThreadSafeModule(tsm);
    take_error(e, "adding the matmul", err, errlen);
    goto done;
  }
  j->mm_in_jit = 1;
  if (take_error(jit_lookup_locked(j, &addr, MM_SHARED), "compiling the matmul", err, errlen))
    goto done;
  rc = 0;
done:
  if (tm) LLVMDisposeTargetMachine(tm);
  LLVMOrcDisposeThreadSafeContext(tsc);
  return rc;
}

static void *mm_thread_main(void *arg) {
  MixcJit *j = arg;
  char err[256] = "";
  int rc = mm_compile(j, err, sizeof err);
  pthread_mutex_lock(&j->mu);
  j->mm_rc = rc;
  memcpy(j->mm_err, err, sizeof err);
  j->mm = rc ? MM_NONE : MM_READY;
  pthread_cond_broadcast(&j->mm_cv);
  pthread_mutex_unlock(&j->mu);
  return NULL;
}

/* The first kernel that calls the shared matmul starts its compilation on a thread of its
 * own, which runs beside the kernel's optimisation (the matmul's code generation, ~20 ms,
 * is then off the kernel's critical path on a host with a second core). Where no thread
 * can be created, mm_wait compiles it in the calling thread. */
static void mm_start(MixcJit *j) {
  pthread_mutex_lock(&j->mu);
  if (j->mm == MM_NONE && !j->mm_joinable) {
    if (pthread_create(&j->mm_thread, NULL, mm_thread_main, j) == 0) {
      j->mm = MM_BUSY;
      j->mm_joinable = 1;
    }
  }
  pthread_mutex_unlock(&j->mu);
}

/* Waits until the shared matmul is in the JIT (compiling it here if nobody does). Returns
 * 0, or 1 with the compilation's message. A failed attempt is retried by the next kernel. */
static int mm_wait(MixcJit *j, char *err, size_t errlen) {
  pthread_mutex_lock(&j->mu);
  for (;;) {
    while (j->mm == MM_BUSY) pthread_cond_wait(&j->mm_cv, &j->mu);
    if (j->mm_joinable) { /* finished: reap the thread (outside the lock) */
      pthread_t t = j->mm_thread;
      j->mm_joinable = 0;
      pthread_mutex_unlock(&j->mu);
      pthread_join(t, NULL);
      pthread_mutex_lock(&j->mu);
      if (j->mm == MM_NONE && j->mm_rc) { /* the thread's attempt failed: report it */
        j->mm_rc = 0;
        set_err(err, errlen, "%s", j->mm_err);
        pthread_mutex_unlock(&j->mu);
        return 1;
      }
      continue;
    }
    if (j->mm == MM_READY) {
      pthread_mutex_unlock(&j->mu);
      return 0;
    }
    /* MM_NONE, no thread: compile it here */
    j->mm = MM_BUSY;
    pthread_mutex_unlock(&j->mu);
    int rc = mm_compile(j, err, errlen);
    pthread_mutex_lock(&j->mu);
    j->mm = rc ? MM_NONE : MM_READY;
    pthread_cond_broadcast(&j->mm_cv);
    pthread_mutex_unlock(&j->mu);
    return rc;
  }
}

/* libm functions the generated code calls (directly, or through llvm.exp / llvm.log),
 * defined in the JIT at this process's addresses, so they resolve however libm is linked. */
static int define_libm(MixcJit *j, char *err, size_t errlen) {
  struct {
    const char *name;
    float (*fn)(float);
  } const syms[] = {{"tanhf", tanhf}, {"log1pf", log1pf}, {"expm1f", expm1f},
                    {"expf", expf},   {"logf", logf},     {"sqrtf", sqrtf}};
  enum { NS = sizeof syms / sizeof *syms };
  LLVMOrcCSymbolMapPair pairs[NS];
  for (int i = 0; i < NS; i++) {
    pairs[i].Name = LLVMOrcLLJITMangleAndIntern(j->jit, syms[i].name);
    pairs[i].Sym.Address = (LLVMOrcExecutorAddress)(uintptr_t)syms[i].fn;
    pairs[i].Sym.Flags.GenericFlags = LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable;
    pairs[i].Sym.Flags.TargetFlags = 0;
  }
  LLVMOrcMaterializationUnitRef mu = LLVMOrcAbsoluteSymbols(pairs, NS);
  LLVMErrorRef e = LLVMOrcJITDylibDefine(LLVMOrcLLJITGetMainJITDylib(j->jit), mu);
  if (e) LLVMOrcDisposeMaterializationUnit(mu);
  return take_error(e, "defining libm symbols", err, errlen);
}

int mixc_jit_create(MixcJit **out, char *err, size_t errlen) {
  *out = NULL;
  if (ensure_init(err, errlen)) return 1;
  MixcJit *j = calloc(1, sizeof *j);
  if (!j) {
    set_err(err, errlen, "llvm: out of memory");
    return 1;
  }
  if (pthread_mutex_init(&j->mu, NULL)) {
    free(j);
    set_err(err, errlen, "llvm: cannot create a mutex");
    return 1;
  }
  if (pthread_cond_init(&j->mm_cv, NULL)) {
    pthread_mutex_destroy(&j->mu);
    free(j);
    set_err(err, errlen, "llvm: cannot create a condition variable");
    return 1;
  }
  host_get(&j->host);
  if (!j->host.triple || !j->host.cpu || !j->host.features) {
    set_err(err, errlen, "llvm: cannot describe the host CPU");
    goto fail;
  }
  LLVMTargetMachineRef tm = make_tm(&j->host, err, errlen);
  if (!tm) goto fail;
  LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
  /* takes the target machine; the builder takes the JTMB; LLVMOrcCreateLLJIT the builder */
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(
      builder, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm));
  if (take_error(LLVMOrcCreateLLJIT(&j->jit, builder), "creating the JIT", err, errlen)) {
    j->jit = NULL;
    goto fail;
  }
  LLVMOrcDefinitionGeneratorRef gen = NULL;
  if (take_error(LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
                     &gen, LLVMOrcLLJITGetGlobalPrefix(j->jit), NULL, NULL),
                 "process symbols", err, errlen))
    goto fail;
  LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(j->jit), gen);
  if (define_libm(j, err, errlen)) goto fail;
  *out = j;
  return 0;
fail:
  mixc_jit_free(j);
  return 1;
}

void mixc_jit_free(MixcJit *j) {
  if (!j) return;
  if (j->mm_joinable) pthread_join(j->mm_thread, NULL); /* no compile is running any more */
  if (j->jit) {
    LLVMErrorRef e = LLVMOrcDisposeLLJIT(j->jit);
    if (e) LLVMConsumeError(e);
  }
  host_free(&j->host);
  pthread_cond_destroy(&j->mm_cv);
  pthread_mutex_destroy(&j->mu);
  free(j);
}

int mixc_jit_compile(MixcJit *j, const KModule *m, MixcKernelFn *fns, double *compile_ms,
                     char *err, size_t errlen) {
  double t0 = now_ms();
  if (compile_ms) *compile_ms = 0;
  if (!j || !m) {
    set_err(err, errlen, "llvm: no JIT or no module");
    return 1;
  }
  char(*names)[160] = calloc((size_t)(m->nfuncs ? m->nfuncs : 1), sizeof *names);
  if (!names) {
    set_err(err, errlen, "llvm: out of memory");
    return 1;
  }
  pthread_mutex_lock(&j->mu);
  unsigned long long id = j->counter++;
  pthread_mutex_unlock(&j->mu);
  char prefix[24];
  snprintf(prefix, sizeof prefix, "mixc%llu", id);

  int rc = 1;
  Diag diag = {0, {0}};
  LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
  LLVMContextRef ctx = LLVMOrcThreadSafeContextGetContext(tsc);
  LLVMContextSetDiagnosticHandler(ctx, diag_handler, &diag);
  LLVMTargetMachineRef tm = NULL;
  LLVMModuleRef mod = build_module(ctx, m, &j->host, prefix, names, 1, err, errlen);
  if (!mod) goto done;
  int needs_mm = LLVMGetNamedFunction(mod, MM_SHARED) != NULL;
  if (needs_mm) mm_start(j);
  tm = make_tm(&j->host, err, errlen);
  if (!tm || optimize_module(mod, tm, err, errlen)) {
    LLVMDisposeModule(mod);
    goto done;
  }
  if (diag.error) {
    set_err(err, errlen, "llvm: %s", diag.msg);
    LLVMDisposeModule(mod);
    goto done;
  }
  LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(mod, tsc);
  if (needs_mm && mm_wait(j, err, errlen)) {
    LLVMOrcDisposeThreadSafeModule(tsm);
    goto done;
  }
  pthread_mutex_lock(&j->mu);
  LLVMErrorRef e = NULL;
  if ((e = LLVMOrcLLJITAddLLVMIRModule(j->jit, LLVMOrcLLJITGetMainJITDylib(j->jit),
                                              tsm))) {
    LLVMOrcDisposeThreadSafeModule(tsm);
    take_error(e, "adding the module", err, errlen);
  } else {
    rc = 0;
    for (int i = 0; i < m->nfuncs && !rc; i++) {
      LLVMOrcExecutorAddress addr = 0;
      if (take_error(LLVMOrcLLJITLookup(j->jit, &addr, names[i]), "compiling", err, errlen))
        rc = 1;
      else if (!addr) {
        set_err(err, errlen, "llvm: %s has no address", names[i]);
        rc = 1;
      } else
        fns[i] = (MixcKernelFn)(uintptr_t)addr;
    }
  }
  pthread_mutex_unlock(&j->mu);
  if (!rc && diag.error) {
    set_err(err, errlen, "llvm: %s", diag.msg);
    rc = 1;
  }
done:
  /* the context may outlive this call inside the JIT: no handler pointing at our stack */
  LLVMContextSetDiagnosticHandler(ctx, diag_handler, NULL);
  if (tm) LLVMDisposeTargetMachine(tm);
  LLVMOrcDisposeThreadSafeContext(tsc);
  free(names);
  if (compile_ms) *compile_ms = now_ms() - t0;
  return rc;
}

int mixc_jit_ir_text(const KModule *m, int optimize, char **text, char *err, size_t errlen) {
  *text = NULL;
  if (ensure_init(err, errlen)) return 1;
  Host host;
  host_get(&host);
  int rc = 1;
  Diag diag = {0, {0}};
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMContextSetDiagnosticHandler(ctx, diag_handler, &diag);
  LLVMTargetMachineRef tm = NULL;
  LLVMModuleRef mod = NULL;
  if (!host.triple || !host.cpu || !host.features) {
    set_err(err, errlen, "llvm: cannot describe the host CPU");
    goto done;
  }
  mod = build_module(ctx, m, &host, NULL, NULL, 0, err, errlen);
  if (!mod) goto done;
  tm = make_tm(&host, err, errlen);
  if (!tm) goto done;
  {
    LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(mod, dl);
    LLVMDisposeTargetData(dl);
  }
  if (optimize && optimize_module(mod, tm, err, errlen)) goto done;
  char *s = LLVMPrintModuleToString(mod);
  *text = s ? copy_str(s) : NULL;
  if (s) LLVMDisposeMessage(s);
  if (!*text) {
    set_err(err, errlen, "llvm: out of memory");
    goto done;
  }
  rc = 0;
done:
  if (mod) LLVMDisposeModule(mod);
  if (tm) LLVMDisposeTargetMachine(tm);
  LLVMContextDispose(ctx);
  host_free(&host);
  return rc;
}
