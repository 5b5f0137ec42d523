/* The syntax tree of a .mix program, and the typed view of it.
 *
 * The parser builds the tree; sema (compiler/sema.c) resolves every name and fills the
 * fields marked "sema" in place, so the typed IR is the same tree with its references,
 * index variables and shapes bound. Everything lives in the compilation's arena.
 *
 * Index variables are local to one statement: `S[i, j] = ... sum(m, ...)` has three,
 * numbered 0.. in Stmt.ivars (the left-hand side's first, in order). An expression's
 * `free` mask says which of them are free in it. */
#ifndef MIXC_AST_H
#define MIXC_AST_H
#include <stdint.h>

#include "diag.h"

enum {
  MIXC_MAX_RANK = 4,     /* dims of a declared tensor (inputs, params, states, lets) */
  MIXC_MAX_IVARS = 64,   /* index variables in one statement (bits of Expr.free) */
  MIXC_MAX_IDENT = 128,  /* longest identifier, bytes */
  MIXC_MAX_FIXED_DIM = 1 << 16, /* largest `dim N = value` */
  MIXC_MAX_DEPTH = 200,  /* deepest expression tree */
};

typedef struct Ident {
  const char *name;
  Loc loc;
} Ident;

/* ---- expressions ---- */

typedef enum ExprKind {
  EX_NUM,   /* a number literal: num */
  EX_NAME,  /* a bare identifier: name */
  EX_INDEX, /* name[args...]: an element of a tensor */
  EX_CALL,  /* name(args...): a built-in function */
  EX_SUM,   /* sum(name, args[0]): name is the bound index */
  EX_BIN,   /* args[0] op args[1], op one of + - * / */
  EX_NEG,   /* -args[0] */
} ExprKind;

typedef enum RefKind {
  REF_NONE,
  REF_DIM,    /* the value of a dim, e.g. rsqrt(K); sym is its symbol */
  REF_INPUT,  /* sym: the input's symbol */
  REF_PARAM,  /* sym: the param's symbol */
  REF_STATE,  /* sym: the state's symbol */
  REF_LET,    /* sym: the let's symbol */
  REF_INDEX,  /* an index position naming a statement index variable; sym: its number */
  REF_FORVAR, /* an index position naming a `for` variable; sym: Mixer.forvars slot */
  REF_CONST,  /* an index position holding an integer; sym: its value */
} RefKind;

typedef enum Builtin {
  FN_EXP, FN_LOG, FN_SQRT, FN_RSQRT, FN_ABS, FN_TANH, FN_SIGMOID, FN_LOGSIGMOID,
  FN_SOFTPLUS, FN_SILU, FN_RELU, FN_ELU, FN_MIN, FN_MAX,
  FN__COUNT
} Builtin;

typedef struct Expr Expr;
struct Expr {
  ExprKind kind;
  Loc loc;
  double num;       /* EX_NUM */
  const char *name; /* EX_NAME, EX_INDEX, EX_CALL: the name; EX_SUM: the bound index */
  Loc name_loc;     /* EX_SUM: where the bound index is written */
  int op;           /* EX_BIN: '+', '-', '*', '/' */
  Expr **args;      /* EX_INDEX: index positions (EX_NAME or EX_NUM); EX_CALL: arguments;
                       EX_SUM: args[0] the body; EX_BIN: 2; EX_NEG: 1 */
  int nargs;
  /* sema */
  RefKind ref; /* EX_NAME, EX_INDEX, and each index position */
  int sym;     /* see RefKind */
  int fn;      /* EX_CALL: a Builtin */
  int bound;   /* EX_SUM: the index variable it binds */
  uint64_t free;  /* index variables free in this expression */
  int has_state;  /* reads a state, directly or through a let */
  int depth;      /* parser: height of this subtree (bounded, so walks may recurse) */
};

/* ---- statements ---- */

typedef enum StmtKind {
  ST_LET,    /* let name[lhs] = rhs */
  ST_UPDATE, /* name[lhs] = rhs, name a state */
  ST_OUTPUT, /* output name[lhs] = rhs */
  ST_FOR,    /* for name in range { body } */
} StmtKind;

typedef struct IndexVar {
  const char *name;
  Loc loc;
  int dim; /* sema: symbol of the dim it ranges over */
} IndexVar;

typedef struct Stmt Stmt;
struct Stmt {
  StmtKind kind;
  Loc loc;
  Ident name;  /* target; for ST_FOR the loop variable */
  Ident *lhs;  /* index names on the left-hand side */
  int nlhs;
  Expr *rhs;
  Ident range; /* ST_FOR: the dim it runs over */
  Stmt **body; /* ST_FOR */
  int nbody;
  /* sema */
  int sym;           /* target symbol; ST_FOR: its Mixer.forvars slot */
  IndexVar *ivars;   /* statement-local index variables; the first nlhs are the lhs */
  int nivars;
};

/* ---- declarations ---- */

typedef enum DeclKind { D_DIM, D_INPUT, D_PARAM, D_STATE } DeclKind;

typedef struct Decl {
  DeclKind kind;
  Loc loc;
  Ident name;
  Ident *shape; /* dim names */
  int nshape;
  Expr *init;   /* D_PARAM: default; D_DIM: fixed value (an EX_NUM) */
  int per_direction; /* D_INPUT */
} Decl;

/* ---- symbols (sema) ---- */

typedef enum SymKind { SYM_DIM, SYM_INPUT, SYM_PARAM, SYM_STATE, SYM_LET, SYM_OUTPUT } SymKind;

typedef struct Sym {
  SymKind kind;
  const char *name;
  Loc loc;
  int rank;
  int shape[MIXC_MAX_RANK]; /* symbols of its dims */
  int per_direction;        /* inputs: one slice per scan direction */
  Expr *init;               /* params: default value, or NULL (must be supplied) */
  int64_t fixed;            /* dims: the fixed size, or 0 when bound at kernel build */
  Stmt *def;                /* lets and outputs: the defining statement */
  int order;                /* its position among the symbols of its kind */
} Sym;

typedef struct ForVar {
  const char *name;
  Loc loc;
  int dim; /* a fixed dim */
} ForVar;

/* ---- mixers ---- */

typedef enum Direction { DIR_ROW, DIR_COL, DIR_ROW_REV, DIR_COL_REV, DIR_ALL } Direction;
typedef enum Combine { COMBINE_NONE, COMBINE_SUM, COMBINE_MEAN } Combine;

typedef struct Mixer {
  Ident name;
  Loc loc;
  Decl **decls;
  int ndecls;
  Stmt **stmts;
  int nstmts;
  Ident *grid; /* over (Y, X): grid axes, outermost first */
  int ngrid;
  Direction *dirs;
  Loc *dir_locs;
  int ndirs;
  Combine combine;
  Loc combine_loc;
  /* sema */
  Sym *syms;
  int nsyms;
  ForVar *forvars;
  int nforvars;
  int checked; /* sema found no error */
} Mixer;

typedef struct Program {
  Mixer **mixers;
  int nmixers;
} Program;

const char *builtin_name(int fn);
int builtin_lookup(const char *name); /* -1 when unknown */
int builtin_arity(int fn);
const char *sym_kind_name(SymKind k);
const char *direction_name(Direction d);

/* Symbols of one kind, in declaration order. */
int mixer_count(const Mixer *m, SymKind kind);
const Sym *mixer_nth(const Mixer *m, SymKind kind, int n);
int mixer_find(const Mixer *m, const char *name); /* symbol index or -1 */
const Mixer *program_find(const Program *p, const char *name);

#endif
