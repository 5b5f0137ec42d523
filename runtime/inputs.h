/* Random inputs with sensible ranges, for `mixc run` and the tests.
 *
 * What is sensible depends on how the mixer uses a value, so each input and param gets
 * a role read off the typed tree: a value that enters exp() as a plain factor is a log
 * gate (drawn <= 0, like fla's logsigmoid(randn) gates; >= 0 under a minus sign); a
 * per-token vector is drawn with unit L2 norm over its last dim (the delta rule needs
 * beta * |k|^2 <= 2 to stay stable); a per-token scalar is drawn in (0, 1) (beta,
 * step sizes); anything else is normal with standard deviation 1/2. A per-token vector
 * that reaches the denominator of an output (directly, or through a state the denominator
 * reads) is drawn non-negative, as feature maps make it in linear attention with a
 * normaliser, and so is the initial value of such a state: random signs would put the
 * denominator near zero. */
#ifndef MIXC_INPUTS_H
#define MIXC_INPUTS_H
#include <stdint.h>

#include "../dsl/ast.h"

typedef enum InputRole {
  ROLE_NORMAL,      /* N(0, 1/4) */
  ROLE_LOG_GATE,    /* logsigmoid(N(0, 1)): <= 0 */
  ROLE_NEG_LOG_GATE,/* -logsigmoid(N(0, 1)): >= 0, for values entering exp() negated */
  ROLE_UNIT,        /* N(0, 1), each last-dim row scaled to unit L2 norm */
  ROLE_UNIFORM01,   /* sigmoid(N(0, 1)): in (0, 1) */
  ROLE_UNIT_POSITIVE, /* |N(0, 1)| rows of unit L2 norm: feature-mapped q, k of a normaliser */
  ROLE_NONNEG,      /* |N(0, 1/4)|: a state a denominator reads (a sum of feature-mapped keys) */
} InputRole;

/* Roles of every symbol (indexed by symbol; only inputs and params are meaningful). */
void mixc_input_roles(const Mixer *m, InputRole *roles);
const char *mixc_role_name(InputRole r);

/* A small, fast, seedable generator (splitmix64 seeding xoshiro256**). */
typedef struct MixcRng {
  uint64_t s[4];
} MixcRng;
void mixc_rng_seed(MixcRng *r, uint64_t seed);
double mixc_rng_uniform(MixcRng *r); /* [0, 1) */
double mixc_rng_normal(MixcRng *r);

/* Fill n values, rows of `last` elements (the last dim; 1 for scalars), by role. */
void mixc_fill(MixcRng *r, InputRole role, double *x, int64_t n, int64_t last);

#endif
