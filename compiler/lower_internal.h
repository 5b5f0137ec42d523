/* Shared machinery of the strategies' lowerings (lower_common.c): the lowering context,
 * small KIR builders, expressions of the recurrence IR, readouts and outputs, the prelude,
 * the argument tables, token bases and states in and out. Internal to compiler/. */
#ifndef MIXC_LOWER_INTERNAL_H
#define MIXC_LOWER_INTERNAL_H
#include <stdint.h>

#include "lower.h"

typedef struct L {
  Arena *arena;
  KModule *m;
  KFunc *f;
  KStmt *blk; /* where statements are appended */
  const KernelSpec *sp;
  const RecMixer *rm;
  const Mixer *mx;
  KernelPlan *pl;
  char *err;
  size_t errlen;
  int failed;
  /* variables of the kernel */
  int v_scr, v_b, v_h, v_n, v_t;
  int *ptrvar;     /* per symbol: its data pointer */
  int **stride;    /* per symbol: one i64 variable per layout dim */
  int *sin_ptr, *sout_ptr, **sin_stride, **sout_stride; /* per state symbol */
  int *tokbase;    /* per input/output symbol: element offset of the current token */
  int **ver;       /* per state slot: a pointer variable per version */
  int64_t *R, *C;  /* per state slot */
  int64_t *let_off; /* per prelude entry: scratch offset (floats) */
  int64_t vec_off, big;
  /* the scope expressions are lowered in */
  const RecScope *sc;
  int ivar[MIXC_MAX_IVARS]; /* KIR variable of each index variable, or -1 */
  int dir;       /* the scan direction being lowered (grid mixers) */
  /* the value-tile split (lw_plan_split): each work item owns the state columns
   * [j0, j0 + vw) of every state, vw <= vt; its outputs are written for those columns only */
  int split;        /* split in effect (vtiles > 1) */
  int split_dim;    /* the dim symbol of the states' columns */
  int64_t vt;       /* tile width: the scratch row length of every state's columns */
  int64_t ntiles;   /* tiles per (sequence, head) */
  int v_j0, v_vw;   /* the item's first column and its width (variables; split only) */
  int in_output;    /* lw_open_lhs is opening an output's loops */
  /* states updated in the caller's buffer (the recurrent strategy on the CPU): v_direct the
   * variable of the plan's state_direct flag (-1: none), state_home per state slot a pointer
   * variable to its scratch buffer (-1: the state always lives in scratch) */
  int v_direct;
  int *state_home;
  /* readouts answered from buffers instead of state reads (the chunk strategies; the
   * recurrent one on the CPU); NULL from it: the readout's own loops */
  KExpr *(*readout)(struct L *l, const RecOutput *o, const RecOut *n);
  void *strategy; /* the strategy's own context */
} L;

int lw_lfail(L *l, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
int lw_var(L *l, KType t, const char *name);
KExpr *lw_V(L *l, int v);
KExpr *lw_I(L *l, int64_t v);
KExpr *lw_F(L *l, double v);
void lw_emit(L *l, KStmt *s);
void lw_set(L *l, int v, KExpr *e);
KStmt *lw_open_for(L *l, int v, KExpr *lo, KExpr *hi, int flags);
void lw_close_for(L *l, KStmt *outer);
KExpr *lw_fadd(L *l, KExpr *x, KExpr *y);
KExpr *lw_fmul(L *l, KExpr *x, KExpr *y);
KExpr *lw_scr_load(L *l, int64_t off, KExpr *idx);
void lw_scr_store(L *l, int64_t off, KExpr *idx, KExpr *val);
void lw_accumulate(L *l, int acc, KExpr *x);
double lw_const_eval(const L *l, const Expr *e);
int lw_ivar_of(L *l, int v);
void lw_use_scope(L *l, const RecScope *sc);
int64_t lw_dim_of_ivar(const L *l, int v);
KExpr *lw_position(L *l, const Expr *p);
KExpr *lw_feature_offset(L *l, const Expr *e, int sym, int first);
int lw_layout_dims_before_features(const L *l, int sym);
KExpr *lw_read_ref(L *l, const Expr *e);
KOp lw_builtin_op(int fn);
KExpr *lw_call(L *l, int fn, KExpr *x, KExpr *y);
KExpr *lw_lx(L *l, const Expr *e);
KExpr *lw_state_elem(L *l, const RecRead *r);
KExpr *lw_terms(L *l, const RecTerm *t, int n);
/* Whether readout term t fits the chunk strategies: it reads a state, contracts the state's
 * row index (a scalar state: none), and its coefficient depends on that index alone; if not,
 * why. */
const char *lw_readout_term_unfit(const RecMixer *rm, const RecTerm *t);
KExpr *lw_lout(L *l, const RecOutput *o, const RecOut *n);
KExpr *lw_sum_loop(L *l, int bound, const Expr *body_e, const RecOut *body_o, const RecOutput *o);
KExpr *lw_open_lhs(L *l, const RecScope *sc, KStmt **outer);
void lw_lower_output(L *l, const RecOutput *o, int accumulate_dirs, int mean_last);
void lw_lower_prelude(L *l);
int lw_lhs_var(L *l, int k);
void lw_vec_into(L *l, const Expr *e, int lv, int64_t n, int64_t off);
KExpr *lw_src_at(L *l, int s, int version, KExpr *i, KExpr *j);
void lw_set_token_bases(L *l, KExpr *y, KExpr *x);
void lw_state_io(L *l, int store);
int *lw_int_array(L *l, int n, int fill);
int lw_tensor_slots(L *l, int sym, const char *role, int state_array, int *ptr_slot, int *stride_slot, int *ptrvar, int **stridevars);
int lw_setup_tables(L *l);
/* Start a strategy's kernel: the context, a module with the one function NAME_suffix whose
 * work item is `items`, and its argument tables. Returns 0, or 1 with the message set. */
int lw_begin(L *l, Arena *a, const KernelSpec *spec, KernelPlan *plan, Strategy strategy,
             const char *suffix, const char *items, char *err, size_t errlen);
/* After lowering: a recorded failure, out of memory, or what kir_verify finds. */
int lw_finish(L *l);
/* Shorthands the strategies' files use. */
static inline KExpr *V(L *l, int v) { return lw_V(l, v); }
static inline KExpr *I(L *l, int64_t v) { return lw_I(l, v); }
static inline KExpr *F(L *l, double v) { return lw_F(l, v); }
static inline KExpr *add(L *l, KExpr *x, KExpr *y) { return ke_add(l->m, x, y); }
static inline KExpr *mul(L *l, KExpr *x, KExpr *y) { return ke_mul(l->m, x, y); }
/* The work-item loop: item -> (sequence n, head h) (and value tile), with b, h, n, t made;
 * close with lw_close_for. */
KStmt *lw_open_items(L *l);
/* Whether the states' columns (the value dim) split into independent tiles: every state is
 * [rows, cols] over one column dim, and every output has one index over that dim, through
 * which alone it reads the states' columns. *dim: the column dim. If not, why. */
int lw_split_applies(const RecMixer *rm, int *dim, const char **why);
/* Choose the value tile (schedule.h) for a strategy whose columns are independent, set
 * l->split, vt, ntiles and the plan's vtile / vtiles. Call before the scratch layout; l->C
 * (per state) should then be l->vt for split states. */
void lw_plan_split(L *l, int can_split);
/* Loop bound over state s's columns in this item (vw, or the constant column count), and
 * the state column of the item's local column jt. */
KExpr *lw_ncols(L *l, int s);
KExpr *lw_gcol(L *l, KExpr *jt);
/* Sequence n's tokens [t0, t1) (all of T with b = n, or its cu_seqlens segment with b = 0),
 * then its initial states loaded. */
void lw_sequence(L *l, int *t0, int *t1);
/* A table of n scratch offsets (or NULL, the failure recorded). */
int64_t *lw_offsets(L *l, int n);
/* Token c0 + tc: t, the token bases and the prelude lets. */
void lw_at_token(L *l, int c0, int tc);
/* Every output of the current token, in textual order. */
void lw_lower_outputs(L *l);
/* The chunk strategies' common frame (lower_chunk.c, lower_chunk_dplr.c):
 *   lw_chunk_begin   lw_begin for a chunk kernel, with the strategy's readout answer and
 *                    context, and the value-tile split planned (the items renamed);
 *   lw_chunk_tables  the per-state tables (ver, R, C), the lets' offsets and scr = scratch;
 *   lw_chunk_loop    sequence n's tokens, its initial states, and the loop over its chunks of
 *                    C tokens, with c0 (the first token) and len (its length) set; close it
 *                    with lw_chunk_loop_end, which stores the final states;
 *   lw_chunk_outputs every output of every token tc of the chunk, in textual order;
 *   lw_chunk_result  the chunk's result for token tc at state column col (the item's own
 *                    column under the split), from a [C, width] scratch buffer at off. */
int lw_chunk_begin(L *l, Arena *a, const KernelSpec *spec, KernelPlan *plan,
                   KExpr *(*readout)(L *l, const RecOutput *o, const RecOut *n), void *strategy,
                   char *err, size_t errlen);
int lw_chunk_tables(L *l);
KStmt *lw_chunk_loop(L *l, int64_t C, int v_c0, int v_len);
void lw_chunk_loop_end(L *l, KStmt *outer);
void lw_chunk_outputs(L *l, int v_c0, int v_len, int v_tc);
KExpr *lw_chunk_result(L *l, int64_t off, int v_tc, int64_t width, KExpr *col);
/* The strategies. */
int lower_chunk(Arena *a, const KernelSpec *spec, KernelPlan *plan, char *err, size_t errlen);
/* Whether the chunk strategy applies; if not, why (for messages). */
int chunk_applies(const RecMixer *rm, const char **why);
int64_t lw_feat_of_scope(const L *l, const RecScope *sc);

/* The chunk strategy for the delta rule and its relatives (lower_chunk_dplr.c). */
int lower_chunk_dplr(Arena *a, const KernelSpec *spec, KernelPlan *plan, char *err, size_t errlen);
int chunk_dplr_applies(const RecMixer *rm, const char **why);

#endif
