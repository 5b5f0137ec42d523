/* The recurrence IR: what one token of a mixer does to its states, in the form the
 * strategies (chunk algorithms), the backward derivation and the printers need.
 *
 * analyze.c builds it from the typed tree. Per mixer it holds
 *   - the PRELUDE: the lets that read no state, in order (a DAG: later lets read earlier
 *     ones). `for` loops are unrolled, so a let inside a loop has one entry per iteration;
 *   - per STATE, the list of update STEPS of one token (a state may be updated several
 *     times: decay, then a delta step), each a linear map of the state plus an input, with
 *     its transition class, and the token's class (the join of its steps' classes);
 *   - per OUTPUT, an expression tree over per-token values and linear READOUTS of states,
 *     each readout naming the state version it reads (0: S_{t-1}, before any update).
 * Lets that read a state are inlined where they are used, with the state versions seen at
 * the let's own position.
 *
 * Expressions are ast.h's Expr, copied into the arena by the analysis, with these
 * conventions (every Expr below follows them):
 *   - every index position is an EX_NAME with ref REF_INDEX (sym: an index variable of the
 *     enclosing RecScope) or REF_CONST (sym: the integer); `for` variables are replaced by
 *     their value (REF_CONST in index positions, EX_NUM elsewhere);
 *   - EX_SUM.bound and REF_INDEX.sym number the index variables of the enclosing RecScope,
 *     and Expr.free is a mask over the same numbering;
 *   - a reference keeps ref and sym (a Mixer.syms index) as sema set them; in addition,
 *     `bound` of an EX_NAME/EX_INDEX with ref REF_LET is the prelude entry it reads
 *     (RecMixer.lets), and with ref REF_STATE the state version it reads (only inside the
 *     analysis: coefficients, vectors and readout constants never read a state);
 *   - EX_CALL keeps name and fn; has_state is recomputed on the copies.
 * A NULL Expr* where a coefficient or vector is expected means the constant 1 (the
 * all-ones vector). */
#ifndef MIXC_REC_H
#define MIXC_REC_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../dsl/ast.h"
#include "../dsl/diag.h"
#include "arena.h"

enum {
  REC_MAX_UNROLLED = 4096,  /* statements of one mixer after unrolling `for` */
  REC_MAX_TERMS = 1024,     /* linear terms of one update or readout */
  REC_MAX_DEPTH = 1000,     /* expression depth after inlining lets */
  REC_MAX_NODES = 1 << 20,  /* expression nodes built for one mixer */
};

/* Transition class of one update step, or of a state's whole token (the join of its
 * steps). Ordered from the most to the least structured. */
typedef enum RecClass {
  RC_IDENTITY,    /* S' = S (+ input): linear attention, LightNet */
  RC_SCALAR,      /* S' = a S, a a per-token scalar: RetNet, Mamba2, the gate of Gated DeltaNet */
  RC_DIAG,        /* S' = diag(d) S, S diag(e), or diag(d) S diag(e): GLA, RWKV6, HGRN2 */
  RC_DPLR,        /* S' = (D + sum_r x_r y_r^T) S (left) or S (D + sum_r y_r x_r^T) (right), D
                     diagonal: the delta rule, DeltaProduct, KDA, RWKV7 */
  RC_ELEMENTWISE, /* S'[i, j] = E[i, j] S[i, j]: Mamba1 */
  RC_GENERAL,     /* anything else that is linear: dense multiplications, transposed reads,
                     couplings between states. Runs only in the recurrent form */
} RecClass;

/* Which side of the state a DIAG or DPLR transition multiplies. */
typedef enum RecSide {
  RS_NONE,  /* the class has no side (identity, scalar, element-wise, general) */
  RS_LEFT,  /* acts on the rows (the first index): A S */
  RS_RIGHT, /* acts on the columns (the second index): S B */
  RS_BOTH,  /* DIAG only: diag(d) S diag(e), a product of a left and a right diagonal */
} RecSide;

/* An index variable of one statement after lowering (lhs first, then summed ones). */
typedef struct RecIvar {
  const char *name; /* unique within its scope (inlined lets' indices are renamed) */
  Loc loc;
  int dim;          /* symbol of the dim it ranges over */
} RecIvar;

/* The index variables of one lowered statement: ivars[0..nlhs) are its left-hand side
 * (a state's row, column), the rest are summed. Expressions of the statement number
 * their index variables into ivars. */
typedef struct RecScope {
  RecIvar *ivars;
  int nivars;
  int nlhs;
} RecScope;

/* One index position of a state read. */
typedef enum RecIdxKind {
  RI_VAR,   /* v: an index variable of the scope */
  RI_CONST, /* v: a constant index (e.g. z[0]) */
} RecIdxKind;

typedef struct RecIdx {
  RecIdxKind kind;
  int v;
} RecIdx;

/* A read of a state at one version inside a token. */
typedef struct RecRead {
  int state;   /* slot in RecMixer.states; -1: no read (the term is state-free) */
  int version; /* 0: the state entering the token (S_{t-1}); v: after its v-th update */
  int nidx;    /* the state's rank */
  RecIdx idx[MIXC_MAX_RANK];
  Loc loc;
} RecRead;

/* One linear term of an update or readout, exactly as written:
 *   value at the lhs = sum over `summed` of scale * coef * read
 * (read = 1 when read.state < 0). coef is state-free; its free indices are lhs indices
 * and index variables of `summed`. Summed indices that the read does not use have been
 * moved into coef as sum(m, ...), so every index in `summed` appears in read.idx. */
typedef struct RecTerm {
  double scale;
  Expr *coef;          /* NULL: 1 */
  RecRead read;
  uint64_t summed;     /* index variables summed over (mask over the scope) */
  unsigned contract;   /* bit p: read.idx[p] is summed (readouts: rows = bit 0, cols = 1) */
} RecTerm;

/* A rank-one factor of a DPLR step, value scale * c * x y^T:
 *   left:  (scale c x y^T) S,  i.e. sum(m, scale * c * x[i] * y[m] * S[m, j])
 *   right: S (scale c y x^T),  i.e. sum(m, scale * c * S[i, m] * y[m] * x[j])
 * The adjoint (backward) step swaps the roles of x and y. */
typedef struct RecRankOne {
  double scale;
  Expr *c;         /* scalar coefficient (free {}), NULL: 1 */
  Expr *x;         /* the outer vector: free in the row index (left) or column index (right);
                      NULL: all ones */
  Expr *y;         /* the contracted vector, free in index variable m; NULL: all ones */
  int m;           /* the index variable y runs over (an ivar of the step's scope) */
  int householder; /* x and y are the same vector (x[i] is y[m] with m renamed to i):
                      I + scale c k k^T, the delta rule's form */
} RecRankOne;

/* An outer-product input term, value scale * c * u w^T: S'[i, j] += scale c u[i] w[j].
 * For a vector state z[i] w is NULL; for a scalar state u and w are NULL. */
typedef struct RecOuter {
  double scale;
  Expr *c; /* scalar coefficient, NULL: 1 */
  Expr *u; /* free in the row index, NULL: all ones */
  Expr *w; /* free in the column index, NULL: all ones */
} RecOuter;

/* One update of a state: S <- op(S) + input, reading version `version`, writing
 * version + 1. The operator is given exactly by `terms`, and in the canonical form of its
 * class by the fields below (row index: ivar 0, column index: ivar 1 of the scope):
 *   IDENTITY  S' = S
 *   SCALAR    S' = a S
 *   DIAG      left diag(dl) S, right S diag(dr), both diag(dl) S diag(dr)
 *   DPLR      left (diag(dl) + sum lr) S, right S (diag(dr) + sum lr); dl / dr is never NULL
 *             (the literal 1 for I; free {} for a scalar D)
 *   ELEMENTWISE  S' = ew .* S
 *   GENERAL   only `terms` (and coupled, why)
 * The input is the sum of `outer` and `add`; it reads no state. */
typedef struct RecStep {
  Loc loc;            /* the update statement */
  int version;        /* the state version it reads */
  RecScope scope;
  RecClass cls;
  RecSide side;
  int rank;           /* DPLR: number of rank-one terms (nlr) */
  int delta;          /* DPLR: D is a scalar and every rank-one term is householder */
  Expr *a;            /* SCALAR: the factor (free {}) */
  Expr *dl, *dr;      /* DIAG, DPLR: the diagonals (free in the row / column index) */
  Expr *ew;           /* ELEMENTWISE: the factor (free in both) */
  RecRankOne *lr;     /* DPLR: the rank-one terms */
  int nlr;
  RecTerm *terms;     /* every linear term (reads of a state), as written */
  int nterms;
  RecOuter *outer;    /* input: outer products */
  int nouter;
  RecTerm *add;       /* input: state-free terms that do not factor (read.state = -1) */
  int nadd;
  int *coupled;       /* GENERAL: slots of other states this step reads */
  int ncoupled;
  const char *why;    /* GENERAL: why it is not of a structured class */
} RecStep;

/* A state: its steps in token order and the class of the whole token's transition. */
typedef struct RecState {
  const char *name;
  int sym;            /* Mixer.syms index */
  int ndim;           /* 0 scalar, 1 vector (a K x 1 matrix), 2 matrix */
  int shape[MIXC_MAX_RANK]; /* dim symbols */
  RecStep *steps;
  int nsteps;         /* 0: never updated (a constant: identity) */
  RecClass cls;       /* join of the steps' classes */
  RecSide side;
  int rank;           /* DPLR: sum of the steps' ranks */
  int delta;          /* DPLR: every DPLR step is delta, the others identity or scalar */
  int *coupled;       /* union over the steps */
  int ncoupled;
  const char *why;    /* GENERAL: the first reason */
} RecState;

/* A prelude let: computed once per token from inputs, params and earlier lets. */
typedef struct RecLet {
  const char *name;   /* display name; an unrolled instance is "name@h" (h: the iteration) */
  int sym;            /* Mixer.syms index */
  Loc loc;
  RecScope scope;     /* its lhs indices are scope.ivars[0..nlhs) (their dims: its shape) */
  Expr *rhs;
} RecLet;

/* Output expressions: per-token values combined with linear readouts of states. */
typedef enum RecOutKind {
  RO_OPAQUE,  /* e: a state-free expression */
  RO_READOUT, /* a linear form of states: sum of terms (each reads one state version) + konst */
  RO_BIN,     /* args[0] op args[1], op one of + - * / */
  RO_NEG,     /* -args[0] */
  RO_CALL,    /* built-in fn (name) of args */
  RO_SUM,     /* sum over index variable `bound` of args[0] */
} RecOutKind;

typedef struct RecOut RecOut;
struct RecOut {
  RecOutKind kind;
  Loc loc;
  Expr *e;          /* RO_OPAQUE: the expression */
  int op;           /* RO_BIN */
  int fn;           /* RO_CALL: a Builtin */
  const char *name; /* RO_CALL: the function's name */
  int bound;        /* RO_SUM */
  RecOut **args;
  int nargs;
  RecTerm *terms;   /* RO_READOUT: each reads a state; contract says which indices it sums */
  int nterms;
  Expr *konst;      /* RO_READOUT: the state-free part, or NULL (none) */
  uint64_t free;    /* index variables free in this node */
};

typedef struct RecOutput {
  const char *name;
  int sym;
  Loc loc;
  RecScope scope;
  RecOut *root;
} RecOutput;

/* The per-token program in textual order, for the recurrent form. */
typedef enum RecEventKind {
  RE_STEP,   /* states[a].steps[b] */
  RE_OUTPUT, /* outputs[a] */
} RecEventKind;

typedef struct RecEvent {
  RecEventKind kind;
  int a, b;
} RecEvent;

typedef struct RecMixer {
  const Mixer *mixer;
  const char *name;
  RecLet *lets;      /* the prelude, in order */
  int nlets;
  RecState *states;  /* in declaration order */
  int nstates;
  RecOutput *outputs;
  int noutputs;
  RecEvent *events;
  int nevents;
  int noncausal;     /* directions (all) */
} RecMixer;

typedef struct RecProgram {
  RecMixer **mixers; /* the mixers sema checked, in program order */
  int nmixers;
} RecProgram;

/* ---- queries ---- */

const char *rec_class_name(RecClass c);   /* "identity", "scalar", "diag", ... */
const char *rec_side_name(RecSide s);     /* "", "left", "right", "both" */
/* The class with its side, e.g. "diag-left", "dplr-right", "element-wise". */
const char *rec_kind_name(RecClass c, RecSide s);
/* One line per state, e.g. "S[K, V]: dplr-left rank 1 (delta)"; like snprintf: returns the
 * length it needed. */
int rec_state_summary(char *buf, size_t size, const RecMixer *m, int state);
const RecMixer *rec_find_mixer(const RecProgram *r, const char *name);
int rec_state_of_sym(const RecMixer *m, int sym); /* slot, or -1 */

/* ---- printing (rec_print.c) ---- */

/* The whole program / one mixer, as `mixc ir --stage rec` shows it. */
void rec_print(FILE *f, const RecProgram *r);
void rec_print_mixer(FILE *f, const RecMixer *m);
/* An expression of the IR in mix syntax, with index names from `scope`. */
void rec_print_expr(FILE *f, const RecMixer *m, const RecScope *scope, const Expr *e);

#endif
