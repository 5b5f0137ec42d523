/* Tables and lookups over the syntax tree (ast.h). */
#include "ast.h"

#include <string.h>

static const struct {
  const char *name;
  int arity;
} builtins[FN__COUNT] = {
    [FN_EXP] = {"exp", 1},         [FN_LOG] = {"log", 1},
    [FN_SQRT] = {"sqrt", 1},       [FN_RSQRT] = {"rsqrt", 1},
    [FN_ABS] = {"abs", 1},         [FN_TANH] = {"tanh", 1},
    [FN_SIGMOID] = {"sigmoid", 1}, [FN_LOGSIGMOID] = {"logsigmoid", 1},
    [FN_SOFTPLUS] = {"softplus", 1}, [FN_SILU] = {"silu", 1},
    [FN_RELU] = {"relu", 1},       [FN_ELU] = {"elu", 1},
    [FN_MIN] = {"min", 2},         [FN_MAX] = {"max", 2},
};

const char *builtin_name(int fn) { return fn >= 0 && fn < FN__COUNT ? builtins[fn].name : "?"; }

int builtin_arity(int fn) { return fn >= 0 && fn < FN__COUNT ? builtins[fn].arity : 0; }

int builtin_lookup(const char *name) {
  for (int i = 0; i < FN__COUNT; i++)
    if (!strcmp(builtins[i].name, name)) return i;
  return -1;
}

const char *sym_kind_name(SymKind k) {
  switch (k) {
  case SYM_DIM: return "dim";
  case SYM_INPUT: return "input";
  case SYM_PARAM: return "param";
  case SYM_STATE: return "state";
  case SYM_LET: return "let";
  case SYM_OUTPUT: return "output";
  }
  return "?";
}

const char *direction_name(Direction d) {
  switch (d) {
  case DIR_ROW: return "row";
  case DIR_COL: return "col";
  case DIR_ROW_REV: return "-row";
  case DIR_COL_REV: return "-col";
  case DIR_ALL: return "all";
  }
  return "?";
}

int mixer_count(const Mixer *m, SymKind kind) {
  int n = 0;
  for (int i = 0; i < m->nsyms; i++) n += m->syms[i].kind == kind;
  return n;
}

const Sym *mixer_nth(const Mixer *m, SymKind kind, int n) {
  for (int i = 0; i < m->nsyms; i++)
    if (m->syms[i].kind == kind && n-- == 0) return &m->syms[i];
  return NULL;
}

int mixer_find(const Mixer *m, const char *name) {
  for (int i = 0; i < m->nsyms; i++)
    if (!strcmp(m->syms[i].name, name)) return i;
  return -1;
}

const Mixer *program_find(const Program *p, const char *name) {
  for (int i = 0; i < p->nmixers; i++)
    if (!strcmp(p->mixers[i]->name.name, name)) return p->mixers[i];
  return NULL;
}
