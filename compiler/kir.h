/* KIR, the kernel IR: a small structured loop language between the strategies and the
 * code generators.
 *
 * A strategy (recurrent, chunk, ...) lowers a mixer's recurrence IR into KIR; each backend
 * prints KIR once: backends/llvm builds LLVM IR from it and JIT-compiles it, backends/c
 * prints it as a standalone C11 file. So the algorithms are written once, and both
 * backends run the same loops.
 *
 * The language:
 *   - values are i64, f32 or pointers (KT_PTR, untyped bytes); memory is read and written
 *     with typed loads and stores that convert: a load of bf16 or f16 yields f32, a store
 *     of f32 to bf16 or f16 rounds to nearest even;
 *   - variables are mutable, function-local and typed (LLVM promotes them to registers);
 *   - statements: assignment, store, counted loop, if, block;
 *   - every size known when the kernel is built (dims, chunk sizes) is a constant; what
 *     varies per call (B, T, H, strides, pointers) comes from the kernel's arguments.
 *
 * Semantics both code generators keep (backends/llvm, backends/c):
 *   - a loop's bounds are evaluated once, before its first iteration; the body does not
 *     assign the loop variable; variables start at 0;
 *   - f32 add, sub and mul may contract into FMAs; reassoc adds may also reassociate;
 *     nothing else is fast-math (NaN and infinities behave as IEEE says);
 *   - min and max of f32 propagate NaN; and / or of i64 are logical (0 or 1);
 *   - a select evaluates only the arm it chooses (it may guard a load);
 *   - i64 arithmetic does not overflow; div and rem are C's (the lowering only divides
 *     non-negative values by positive ones);
 *   - kernels never write the ptrs / ints tables; scratch is 16-byte aligned.
 *
 * Every kernel function has one signature:
 *   void f(void *const *ptrs, const int64_t *ints, int64_t begin, int64_t end, float *scratch)
 * `ptrs` and `ints` are the call's argument tables (their layout is the kernel's KSlot list,
 * below), [begin, end) the work items this call runs, `scratch` per-thread memory of
 * KFunc.scratch_floats floats. The runtime splits KFunc.items over threads.
 *
 * All nodes live in the arena of the KModule's compilation. */
#ifndef MIXC_KIR_H
#define MIXC_KIR_H
#include <stdint.h>
#include <stdio.h>

#include "arena.h"

/* Value types, and the element types of memory. */
typedef enum KType {
  KT_VOID,
  KT_I64,  /* integers, booleans (0 / 1), indices */
  KT_F32,  /* all arithmetic on data */
  KT_PTR,  /* a byte address */
  /* memory-only element types (KE_LOAD / KS_STORE) */
  KT_BF16, /* loads to f32, stores from f32 (round to nearest even) */
  KT_F16,  /* IEEE binary16, likewise */
  KT_I32,  /* loads to i64 (sign-extended), stores from i64 (truncated) */
} KType;

typedef enum KOp {
  /* binary, on two i64 or two f32 operands */
  KO_ADD, KO_SUB, KO_MUL, KO_DIV, KO_MIN, KO_MAX,
  KO_REM,            /* i64 only: remainder of a non-negative division */
  KO_LT, KO_LE, KO_EQ, KO_NE, /* -> i64 0 / 1 */
  KO_AND, KO_OR,     /* i64 only (booleans) */
  /* unary */
  KO_NEG,
  KO_EXP, KO_LOG, KO_SQRT, KO_RSQRT, KO_ABS, KO_TANH, KO_SIGMOID, KO_LOGSIGMOID,
  KO_SOFTPLUS, KO_SILU, KO_RELU, KO_ELU, /* f32 only; numerically stable forms */
  KO_I2F,            /* i64 -> f32 */
  KO__COUNT
} KOp;

typedef enum KExprKind {
  KE_INT,    /* i64 constant: i */
  KE_FLOAT,  /* f32 constant: f (rounded to f32) */
  KE_VAR,    /* the value of variable var */
  KE_ARG,    /* a parameter of the function: arg = 0 ptrs, 1 ints, 2 begin, 3 end, 4 scratch */
  KE_LOAD,   /* a[0] base pointer, a[1] i64 element index; elem: memory type; type: value */
  KE_BIN,    /* op a[0] a[1] */
  KE_UN,     /* op a[0] */
  KE_SELECT, /* a[0] (i64 condition) ? a[1] : a[2] */
  KE_PTRADD, /* a[0] pointer + a[1] i64 byte offset */
} KExprKind;

typedef struct KExpr KExpr;
struct KExpr {
  KExprKind kind;
  KType type;     /* the value's type */
  KType elem;     /* KE_LOAD: the memory element type */
  KOp op;
  int64_t i;
  double f;
  int var;
  int arg;
  int reassoc;    /* KE_BIN on f32: may be reassociated (a reduction's accumulation) */
  KExpr *a[3];
};

typedef enum KStmtKind {
  KS_SET,   /* var = a */
  KS_STORE, /* *(elem *)(ptr) [index] = value, converting from the value's type */
  KS_FOR,   /* for (var = lo; var < hi; var += 1) body */
  KS_IF,    /* if (cond) body else orelse */
  KS_BLOCK, /* body */
  KS_MATMUL,/* C[i, j] (+)= sum_k A[i, k] B[k, j], i < M, j < N, k < K: f32, row-major with
               leading dimensions (in elements) lda, ldb, ldc; the operands do not overlap C.
               The code generators expand it into a register-blocked micro-kernel. */
} KStmtKind;

/* The operands of KS_MATMUL, in KStmt.mm. */
enum { KM_M, KM_N, KM_K, KM_A, KM_LDA, KM_B, KM_LDB, KM_C, KM_LDC, KM__COUNT };

/* Loop hints. */
enum {
  KF_VECTORIZE = 1, /* iterations are independent, or only reduce through reassoc adds */
  KF_PARALLEL = 2,  /* documentation: the outermost work-item loop */
  KF_BLOCK = 4,     /* the iterations may run on different threads of one work item (a GPU
                       block): each touches only memory no other iteration of the loop
                       writes, and the statements after the loop see all of their stores.
                       Ignored by the CPU code generators. */
};

typedef struct KStmt KStmt;
struct KStmt {
  KStmtKind kind;
  int var;            /* KS_SET target; KS_FOR induction variable (i64) */
  KType elem;         /* KS_STORE */
  KExpr *a, *b, *c;   /* KS_SET: a; KS_STORE: a ptr, b index, c value; KS_FOR: a lo, b hi;
                         KS_IF: a cond */
  KStmt **body;       /* KS_FOR, KS_IF (then), KS_BLOCK */
  int nbody, capbody;
  KStmt **orelse;     /* KS_IF */
  int norelse, caporelse;
  int flags;          /* KS_FOR: KF_*; KS_MATMUL: 1 to accumulate into C, 0 to overwrite */
  KExpr *mm[KM__COUNT]; /* KS_MATMUL: sizes and leading dimensions (i64), operands (ptr) */
  const char *comment;/* printed above the statement by the printers (may be NULL) */
};

typedef struct KVar {
  KType type;
  const char *name; /* for printers and C output; unique within the function */
} KVar;

/* One argument slot of a kernel: where the runtime puts what. */
typedef enum KSlotKind {
  KSL_PTR, /* ptrs[index]: a data pointer (input, param, state, output, cu_seqlens) */
  KSL_INT, /* ints[index]: a size or a stride, in elements */
} KSlotKind;

typedef struct KSlot {
  KSlotKind kind;
  int index;        /* position in ptrs[] or ints[] */
  const char *what; /* e.g. "q", "stride of q over T", "B" (documentation, C header) */
} KSlot;

typedef struct KFunc {
  const char *name;
  KVar *vars;
  int nvars, capvars;
  KStmt *body;          /* a KS_BLOCK */
  int64_t scratch_floats; /* per-thread scratch the function needs */
  const char *items;    /* documentation: what one work item is, e.g. "(sequence, head)" */
  /* A hand-structured CUDA kernel standing for this function (the class-specialised GPU
   * forms of compiler/lower_cuda*.c), or NULL. When set, the CUDA printer prints
   *   struct MixcArgs_NAME { void *ptrs[NP]; int64_t ints[NI]; };
   * then cuda_src verbatim, which must define
   *   extern "C" __global__ void NAME(const MixcArgs_NAME args, int64_t begin, int64_t end,
   *                                   float *scratch)
   * (NAME: mixc_emit_c_func_name of the function; its helpers prefixed with NAME) over the
   * same argument tables and work items as a lowered body, launched with cuda_threads
   * threads, cuda_smem bytes of dynamic shared memory and scratch_floats floats of global
   * scratch per block. The body is then not run (an empty block, or only setup): the CPU
   * backends refuse such a function. */
  const char *cuda_src;
  unsigned cuda_threads, cuda_smem;
  /* Hand-structured kernels only: floats of device memory per work item that outlive the
   * launch (0: none). The `scratch` argument then points at items x item_floats floats that
   * every function of the module with item_floats > 0 shares, in launch order, indexed by
   * the global item (begin + blockIdx.x): one function writes what a later one reads (the
   * sequence-split chunk kernels' segment states). scratch_floats must then be 0. */
  int64_t item_floats;
  /* Lowered for the CPU only (the recurrent strategy without KernelSpec.gpu: states updated
   * in place and readouts fused into the loop that writes the state, which assume one thread
   * walks the rows in order). The CUDA printer refuses such a function; lower with
   * KernelSpec.gpu set (and no_native for the lowered KIR) to print it for a device. */
  int cpu_only;
} KFunc;

typedef struct KModule {
  Arena *arena;
  KFunc **funcs;
  int nfuncs, capfuncs;
  int nptrs, nints;     /* sizes of the argument tables */
  KSlot *slots;
  int nslots, capslots;
} KModule;

/* ---- building ---- */

KModule *kir_module(Arena *a);
KFunc *kir_func(KModule *m, const char *name);
int kir_var(KModule *m, KFunc *f, KType t, const char *name); /* name made unique */
int kir_slot(KModule *m, KSlotKind kind, const char *what);   /* returns its index */

KExpr *ke_int(KModule *m, int64_t v);
KExpr *ke_float(KModule *m, double v);
KExpr *ke_var(KModule *m, const KFunc *f, int var);
KExpr *ke_arg(KModule *m, int arg);
KExpr *ke_load(KModule *m, KType elem, KExpr *base, KExpr *index);
KExpr *ke_bin(KModule *m, KOp op, KExpr *x, KExpr *y);
KExpr *ke_un(KModule *m, KOp op, KExpr *x);
KExpr *ke_select(KModule *m, KExpr *c, KExpr *x, KExpr *y);
KExpr *ke_ptradd(KModule *m, KExpr *p, KExpr *bytes);
/* ptrs[i] and ints[i], read from the argument tables */
KExpr *ke_ptr_slot(KModule *m, int index);
KExpr *ke_int_slot(KModule *m, int index);
/* Shorthands that fold constants: x + y, x * y on i64. */
KExpr *ke_add(KModule *m, KExpr *x, KExpr *y);
KExpr *ke_mul(KModule *m, KExpr *x, KExpr *y);

KStmt *ks_block(KModule *m);
KStmt *ks_set(KModule *m, int var, KExpr *v);
KStmt *ks_store(KModule *m, KType elem, KExpr *ptr, KExpr *index, KExpr *value);
KStmt *ks_for(KModule *m, int var, KExpr *lo, KExpr *hi, int flags);
KStmt *ks_if(KModule *m, KExpr *cond);
/* C (+)= A B; see KS_MATMUL. */
KStmt *ks_matmul(KModule *m, KExpr *M, KExpr *N, KExpr *K, KExpr *A, KExpr *lda, KExpr *B,
                 KExpr *ldb, KExpr *C, KExpr *ldc, int accumulate);
/* Append to a block, a loop's body or an if's then-branch; to the else-branch. */
void ks_add(KModule *m, KStmt *parent, KStmt *child);
void ks_add_else(KModule *m, KStmt *parent, KStmt *child);

/* Type-check a module: every expression's operand types, every variable's use, loads and
 * stores of allowed types. Returns 0, or 1 with a message (an internal error: a strategy
 * built bad KIR). */
int kir_verify(const KModule *m, char *err, size_t errlen);

/* A readable dump (`mixc ir --stage kir`). */
void kir_print(FILE *f, const KModule *m);

const char *kir_type_name(KType t);
const char *kir_op_name(KOp op);
int kir_op_is_unary(KOp op);

#endif
