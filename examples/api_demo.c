/* api_demo: the mixc C API in one small program.
 *
 * Compiles examples/gla.mix (gated linear attention), makes a CPU kernel for K = V = 64,
 * fills bf16 inputs with random values, runs a forward pass that also returns the final
 * state, then one decode step that continues from it, and prints checksums.
 *
 *   build/bin/api_demo [path/to/gla.mix]      (default: examples/gla.mix)
 *
 * Every mixc call returns a status; on failure the mixc_error holds a one-line message
 * that names the argument at fault. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mixc.h"

enum { B = 2, T = 128, H = 4, K = 64, V = 64 };

/* float -> bfloat16, round to nearest even (inputs may also be f32 or f16). */
static uint16_t to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* NaN */
  x += 0x7fffu + ((x >> 16) & 1u);
  return (uint16_t)(x >> 16);
}

static float from_bf16(uint16_t h) {
  uint32_t x = (uint32_t)h << 16;
  float f;
  memcpy(&f, &x, sizeof f);
  return f;
}

/* A small deterministic generator: uniform in [-1, 1). */
static float uniform(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((*s >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = NULL;
  if (fseek(f, 0, SEEK_END) == 0) {
    long n = ftell(f);
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
      *len = fread(buf, 1, (size_t)n, f);
      buf[*len] = 0;
    }
  }
  fclose(f);
  return buf;
}

static int check(mixc_status s, const mixc_error *err, const char *what) {
  if (s == MIXC_OK) return 0;
  fprintf(stderr, "api_demo: %s: %s: %s\n", what, mixc_status_name(s), err->message);
  return 1;
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "examples/gla.mix";
  size_t len = 0;
  char *src = read_file(path, &len);
  if (!src) {
    fprintf(stderr, "api_demo: cannot read %s (run from the source root, or pass the path)\n",
            path);
    return 1;
  }

  mixc_error err;
  mixc_context *ctx = NULL;
  mixc_module *mod = NULL;
  mixc_kernel *kern = NULL;
  int rc = 1;
  uint16_t *q = NULL, *k = NULL, *v = NULL, *g = NULL, *o = NULL;
  float *state = NULL;

  /* 1. A context: worker threads (0: MIXC_NUM_THREADS, else every core), the JIT and the
   *    kernel cache. One per process is enough; it is thread-safe. */
  if (check(mixc_context_create(0, &ctx, &err), &err, "context")) goto out;

  /* 2. A module: the source, checked and analysed. Errors come back as diagnostics with
   *    file:line:col in err.message (MIXC_ERROR_SOURCE). */
  if (check(mixc_module_compile(ctx, src, len, path, &mod, &err), &err, "compile")) goto out;
  printf("module %s: %d mixer(s), the first is '%s'\n", path, mixc_module_mixer_count(mod),
         mixc_module_mixer_name(mod, 0));

  /* 3. A kernel: one mixer with every dim fixed, on one device. */
  mixc_dim dims[] = {{"K", K}, {"V", V}};
  mixc_kernel_options opt = {0};
  opt.mixer = "gla";
  opt.dims = dims;
  opt.ndims = 2;
  opt.device = MIXC_CPU;
  opt.strategy = MIXC_STRATEGY_AUTO;
  if (check(mixc_kernel_create(mod, &opt, &kern, &err), &err, "kernel")) goto out;

  /* 4. Tensors: [B, T, H, K] inputs in bf16, contiguous; the state [B, H, K, V] in f32. */
  size_t nqk = (size_t)B * T * H * K, nv = (size_t)B * T * H * V, ns = (size_t)B * H * K * V;
  q = malloc(nqk * 2);
  k = malloc(nqk * 2);
  g = malloc(nqk * 2);
  v = malloc(nv * 2);
  o = malloc(nv * 2);
  state = malloc(ns * 4);
  if (!q || !k || !g || !v || !o || !state) {
    fprintf(stderr, "api_demo: out of memory\n");
    goto out;
  }
  uint64_t seed = 42;
  for (size_t i = 0; i < nqk; i++) {
    q[i] = to_bf16(uniform(&seed) * 0.25f);
    k[i] = to_bf16(uniform(&seed) * 0.25f);
    /* g is a log forget gate (<= 0): fla draws logsigmoid(x) / 16 */
    g[i] = to_bf16(-logf(1.0f + expf(-uniform(&seed))) / 16.0f);
  }
  for (size_t i = 0; i < nv; i++) v[i] = to_bf16(uniform(&seed));

  int64_t qk_shape[4] = {B, T, H, K}, v_shape[4] = {B, T, H, V}, s_shape[4] = {B, H, K, V};
  mixc_named_tensor inputs[] = {
      {"q", mixc_tensor_contiguous(q, MIXC_BF16, 4, qk_shape)},
      {"k", mixc_tensor_contiguous(k, MIXC_BF16, 4, qk_shape)},
      {"v", mixc_tensor_contiguous(v, MIXC_BF16, 4, v_shape)},
      {"g", mixc_tensor_contiguous(g, MIXC_BF16, 4, qk_shape)},
      /* the param `scale` is left out: it takes its default, rsqrt(K) */
  };
  mixc_named_tensor outputs[] = {{"o", mixc_tensor_contiguous(o, MIXC_BF16, 4, v_shape)}};
  mixc_named_tensor finals[] = {{"S", mixc_tensor_contiguous(state, MIXC_F32, 4, s_shape)}};

  /* 5. Forward: the first call with this combination of dtypes and optional tensors
   *    compiles a variant; later calls with the same combination reuse it. */
  mixc_args args = {0};
  args.inputs = inputs;
  args.ninputs = 4;
  args.outputs = outputs;
  args.noutputs = 1;
  args.final_states = finals;
  args.nfinal = 1;
  if (check(mixc_forward(kern, &args, &err), &err, "forward")) goto out;

  double sum_o = 0, sum_s = 0;
  for (size_t i = 0; i < nv; i++) sum_o += from_bf16(o[i]);
  for (size_t i = 0; i < ns; i++) sum_s += state[i];
  printf("forward: B=%d T=%d H=%d K=%d V=%d, bf16 in and out\n", B, T, H, K, V);
  printf("  checksum(o) = %.6f\n  checksum(S) = %.6f\n", sum_o, sum_s);

  /* 6. A decode step: one more token per sequence, continuing from the final state, which
   *    is read and overwritten in place. The token is the first one of each batch row
   *    again, viewed through strides (any strides work, in elements). */
  mixc_named_tensor step_in[4], step_out[1];
  for (int i = 0; i < 4; i++) {
    step_in[i] = inputs[i];
    step_in[i].tensor.shape[1] = 1; /* T = 1, same strides */
  }
  step_out[0] = outputs[0];
  step_out[0].tensor.shape[1] = 1;
  mixc_args sargs = {0};
  sargs.inputs = step_in;
  sargs.ninputs = 4;
  sargs.outputs = step_out;
  sargs.noutputs = 1;
  if (check(mixc_step(kern, &sargs, finals, 1, &err), &err, "step")) goto out;
  sum_s = 0;
  for (size_t i = 0; i < ns; i++) sum_s += state[i];
  printf("step: checksum(S) = %.6f after one more token\n", sum_s);

  int nvar = 0;
  double ms = mixc_kernel_compile_ms(kern, &nvar);
  printf("kernel: %d variant(s) compiled in %.1f ms\n", nvar, ms);
  rc = 0;

out:
  /* Destroy in any order: kernels keep their module alive, modules their context. */
  mixc_kernel_destroy(kern);
  mixc_module_destroy(mod);
  mixc_context_destroy(ctx);
  free(q);
  free(k);
  free(v);
  free(g);
  free(o);
  free(state);
  free(src);
  return rc;
}
