/* test_api: the public C API (runtime/include/mixc.h).
 *
 * (a) Argument checking: every bad argument is refused with MIXC_ERROR_ARGUMENT (or
 *     UNSUPPORTED, SOURCE) and a message naming it. These run in every build, also without
 *     the CPU backend (-DMIXC_LLVM=OFF), where a valid call says that the backend is missing.
 * (b) With the CPU backend: every .mix file of examples/ against the fp64 reference (mixc_ref_run)
 *     on fresh random inputs drawn by role (runtime/inputs.h): T in {0, 1, 7, 63, 64, 65}
 *     (and 1000 for gla and delta), grids of 3 x 5 (and 1 x 1), dims 24 and 20, B = 2,
 *     H = 3; f32 inputs to 2e-4 of the largest reference value, bf16 and f16 (the
 *     reference reads the same rounded values) to 5e-3 and 2e-3; outputs poisoned with NaN
 *     first (NaN never passes); transposed inputs and padded outputs through strides,
 *     broadcast (zero-stride) inputs; initial and final states; a variable-length batch of
 *     3 sequences (one empty) equals separate runs and the reference; mixc_step token by
 *     token equals one forward; a repeated call compiles nothing. Then 40 random mixers
 *     of tests/gen_mixer.h (every class; dims from {1, 2, 3, 5, 6, 16}): recurrent forward
 *     and decode steps, and the auto strategy where it chunks (chunk 16, T = 37).
 *
 *   test_api [seed [example-name]]    (the seed defaults to the time; it is printed)
 *
 * Ends with exactly one line `test_api: N passed, M failed`; exits nonzero on failure. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../compiler/compile.h"
#include "../compiler/lower.h"
#include "../compiler/rec.h"
#include "../runtime/half.h"
#include "../runtime/inputs.h"
#include "../runtime/reference.h"
#include "gen_mixer.h"
#include "mixc.h"
#include "testlib.h"

typedef struct Tally {
  int pass, fail;
  FILE *out; /* where the lines go */
} Tally;

static void result(Tally *t, int ok, const char *name, const char *detail) {
  if (ok) {
    t->pass++;
    fprintf(t->out, "ok   %s\n", name);
  } else {
    t->fail++;
    fprintf(t->out, "FAIL %s%s%s\n", name, detail && *detail ? ": " : "", detail ? detail : "");
  }
  if (t->out == stdout) fflush(stdout);
}

/* ==== (a) argument checking ==== */

static const char GLA_SRC[] = "mixer gla {\n"
                              "  dim K, V\n"
                              "  input q[K], k[K], v[V], g[K]\n"
                              "  param scale = rsqrt(K)\n"
                              "  state S[K, V]\n"
                              "  S[i, j] = exp(g[i]) * S[i, j] + k[i] * v[j]\n"
                              "  output o[j] = scale * sum(i, q[i] * S[i, j])\n"
                              "}\n";

static const char TWO_SRC[] =
    "mixer one {\n  dim K\n  input x[K]\n  state s[K]\n  s[i] = s[i] + x[i]\n"
    "  output y[i] = s[i]\n}\n"
    "mixer two {\n  dim K, NH = 2\n  input x[NH, K]\n  param A[K]\n  state s[K]\n"
    "  s[i] = A[i] * s[i] + x[0, i]\n  output y[i] = s[i]\n}\n";

static const char GRID_SRC[] =
    "mixer vig over (Y, X) directions (row, -row) combine mean {\n"
    "  dim K, V\n  input q[K], k[K], v[V]\n  input g[K] per direction\n  state S[K, V]\n"
    "  S[i, j] = exp(g[i]) * S[i, j] + k[i] * v[j]\n"
    "  output o[j] = sum(i, q[i] * S[i, j])\n}\n";

enum { AB = 2, AT = 8, AH = 4, AK = 16, AV = 16 };

/* A valid call of gla (B = 2, T = 8, H = 4, K = V = 16), to be broken one way at a time. */
typedef struct ArgSet {
  mixc_named_tensor in[8], out[2], init[2], fin[2];
  int nin, nout, ninit, nfin;
  mixc_tensor cu;
  int has_cu;
} ArgSet;

/* `z`: zeros, large enough for every tensor below. */
static void argset_base(ArgSet *a, float *z, int64_t B, int64_t T) {
  memset(a, 0, sizeof *a);
  int64_t qk[4] = {B, T, AH, AK}, vo[4] = {B, T, AH, AV}, st[4] = {B, AH, AK, AV};
  const char *names[4] = {"q", "k", "v", "g"};
  for (int i = 0; i < 4; i++) {
    a->in[i].name = names[i];
    a->in[i].tensor = mixc_tensor_contiguous(z, MIXC_F32, 4, names[i][0] == 'v' ? vo : qk);
  }
  a->nin = 4;
  a->out[0].name = "o";
  a->out[0].tensor = mixc_tensor_contiguous(z, MIXC_F32, 4, vo);
  a->nout = 1;
  a->init[0].name = "S";
  a->init[0].tensor = mixc_tensor_contiguous(z, MIXC_F32, 4, st);
  a->ninit = 1;
  a->fin[0].name = "S";
  a->fin[0].tensor = mixc_tensor_contiguous(z, MIXC_F32, 4, st);
  a->nfin = 1;
}

static mixc_args argset_args(ArgSet *a) {
  mixc_args r;
  memset(&r, 0, sizeof r);
  r.inputs = a->in;
  r.ninputs = a->nin;
  r.outputs = a->out;
  r.noutputs = a->nout;
  r.initial_states = a->init;
  r.ninitial = a->ninit;
  r.final_states = a->fin;
  r.nfinal = a->nfin;
  r.cu_seqlens = a->has_cu ? &a->cu : NULL;
  return r;
}

/* The status a valid call gets in this build. */
static mixc_status valid_status(void) {
#ifdef MIXC_HAVE_LLVM
  return MIXC_OK;
#else
  return MIXC_ERROR_UNSUPPORTED;
#endif
}

static void expect(Tally *t, const char *name, mixc_status got, const mixc_error *e,
                   mixc_status want, const char *sub1, const char *sub2) {
  char detail[4600];
  int ok = got == want && e->status == got;
  if (ok && sub1 && !strstr(e->message, sub1)) ok = 0;
  if (ok && sub2 && !strstr(e->message, sub2)) ok = 0;
  snprintf(detail, sizeof detail, "got %s \"%s\"; wanted %s with \"%s\"%s%s%s",
           mixc_status_name(got), e->message, mixc_status_name(want), sub1 ? sub1 : "",
           sub2 ? " and \"" : "", sub2 ? sub2 : "", sub2 ? "\"" : "");
  result(t, ok, name, ok ? NULL : detail);
  if (ok && e->message[0]) /* the first line */
    fprintf(t->out, "       -> %.*s\n", (int)strcspn(e->message, "\n"), e->message);
}

static void fwd_case(Tally *t, mixc_kernel *k, ArgSet *a, const char *name, mixc_status want,
                     const char *sub1, const char *sub2) {
  mixc_args args = argset_args(a);
  mixc_error e;
  mixc_status s = mixc_forward(k, &args, &e);
  expect(t, name, s, &e, want, sub1, sub2);
}

static void kernel_case(Tally *t, mixc_module *m, const char *mixer, const mixc_dim *dims,
                        int ndims, mixc_device_kind dev, mixc_strategy strat, const char *name,
                        mixc_status want, const char *sub1, const char *sub2) {
  mixc_kernel_options o;
  memset(&o, 0, sizeof o);
  o.mixer = mixer;
  o.dims = dims;
  o.ndims = ndims;
  o.device = dev;
  o.strategy = strat;
  mixc_kernel *k = NULL;
  mixc_error e;
  mixc_status s = mixc_kernel_create(m, &o, &k, &e);
  expect(t, name, s, &e, want, sub1, sub2);
  mixc_kernel_destroy(k);
}

static void test_arguments(Tally *t, mixc_context *ctx) {
  mixc_error e;
  mixc_module *m = NULL, *m2 = NULL, *mg = NULL;
  float *z = calloc(AB * 64 * AH * AK * AV + 64, sizeof(float));
  if (!z) {
    result(t, 0, "arguments: allocation", "out of memory");
    return;
  }
  /* ---- modules ---- */
  mixc_status s = mixc_module_compile(ctx, GLA_SRC, strlen(GLA_SRC), "gla.mix", &m, &e);
  expect(t, "module: compile gla", s, &e, MIXC_OK, NULL, NULL);
  if (s != MIXC_OK) return;
  result(t,
         mixc_module_mixer_count(m) == 1 && !strcmp(mixc_module_mixer_name(m, 0), "gla") &&
             !mixc_module_mixer_name(m, 1),
         "module: mixer count and names", NULL);
  const char bad[] = "mixer bad {\n  dim K\n  input q[K]\n  state S[K]\n"
                     "  S[i] = S[i] + qq[i]\n  output o[i] = S[i]\n}\n";
  mixc_module *mb = NULL;
  s = mixc_module_compile(ctx, bad, strlen(bad), "bad.mix", &mb, &e);
  expect(t, "module: source error names file:line:col", s, &e, MIXC_ERROR_SOURCE,
         "bad.mix:5:", "qq");
  result(t, mb == NULL, "module: no module on error", NULL);
  s = mixc_module_compile(ctx, "mixer", 5, NULL, &mb, &e);
  expect(t, "module: unnamed source", s, &e, MIXC_ERROR_SOURCE, "<source>:1:", NULL);
  s = mixc_module_compile(NULL, GLA_SRC, strlen(GLA_SRC), "x", &mb, &e);
  expect(t, "module: NULL context", s, &e, MIXC_ERROR_ARGUMENT, "context", NULL);
  s = mixc_module_compile(ctx, TWO_SRC, strlen(TWO_SRC), "two.mix", &m2, &e);
  expect(t, "module: compile two mixers", s, &e, MIXC_OK, NULL, NULL);
  s = mixc_module_compile(ctx, GRID_SRC, strlen(GRID_SRC), "vig.mix", &mg, &e);
  expect(t, "module: compile a grid mixer", s, &e, MIXC_OK, NULL, NULL);

  /* ---- kernels ---- */
  mixc_dim dkv[2] = {{"K", AK}, {"V", AV}};
  mixc_dim dq[2] = {{"K", AK}, {"Q", 3}};
  mixc_dim dk[1] = {{"K", AK}};
  mixc_dim ddup[3] = {{"K", AK}, {"V", AV}, {"K", AK}};
  mixc_dim dzero[2] = {{"K", 0}, {"V", AV}};
  mixc_dim dfix[2] = {{"K", 8}, {"NH", 3}};
  mixc_dim dfixok[2] = {{"K", 8}, {"NH", 2}};
  mixc_dim dgrid[3] = {{"K", 4}, {"V", 4}, {"Y", 3}};
  kernel_case(t, m, NULL, dq, 2, MIXC_CPU, MIXC_STRATEGY_AUTO, "kernel: unknown dim",
              MIXC_ERROR_ARGUMENT, "dim 'Q'", "no dim");
  kernel_case(t, m, NULL, dk, 1, MIXC_CPU, MIXC_STRATEGY_AUTO, "kernel: missing dim",
              MIXC_ERROR_ARGUMENT, "dim 'V' is missing", NULL);
  kernel_case(t, m, NULL, ddup, 3, MIXC_CPU, MIXC_STRATEGY_AUTO, "kernel: duplicate dim",
              MIXC_ERROR_ARGUMENT, "dim 'K' is given twice", NULL);
  kernel_case(t, m, NULL, dzero, 2, MIXC_CPU, MIXC_STRATEGY_AUTO, "kernel: dim of size 0",
              MIXC_ERROR_ARGUMENT, "dim 'K' = 0", "out of range");
  kernel_case(t, m, NULL, NULL, 2, MIXC_CPU, MIXC_STRATEGY_AUTO, "kernel: NULL dims",
              MIXC_ERROR_ARGUMENT, "options.dims is NULL", NULL);
  /* MIXC_CUDA kernels (and their failure without a GPU): tests/test_api_cuda.c */
  mixc_dim dgrid_ok[2] = {{"K", 4}, {"V", 4}};
  kernel_case(t, mg, NULL, dgrid_ok, 2, MIXC_CPU, MIXC_STRATEGY_PARALLEL,
              "kernel: parallel strategy on a grid scan", MIXC_ERROR_UNSUPPORTED,
              "the parallel strategy", "use recurrent");
  kernel_case(t, m, "glb", dkv, 2, MIXC_CPU, MIXC_STRATEGY_AUTO, "kernel: unknown mixer",
              MIXC_ERROR_ARGUMENT, "no mixer 'glb'", "gla");
  kernel_case(t, m2, NULL, dk, 1, MIXC_CPU, MIXC_STRATEGY_AUTO, "kernel: ambiguous mixer",
              MIXC_ERROR_ARGUMENT, "2 mixers", "one, two");
  kernel_case(t, m2, "two", dfix, 2, MIXC_CPU, MIXC_STRATEGY_AUTO, "kernel: fixed dim mismatch",
              MIXC_ERROR_ARGUMENT, "dim 'NH' = 3", "fixes it to 2");
  kernel_case(t, m2, "two", dfixok, 2, MIXC_CPU, MIXC_STRATEGY_RECURRENT,
              "kernel: fixed dim with its value", MIXC_OK, NULL, NULL);
  kernel_case(t, mg, NULL, dgrid, 3, MIXC_CPU, MIXC_STRATEGY_AUTO, "kernel: grid axis as a dim",
              MIXC_ERROR_ARGUMENT, "dim 'Y'", "grid axis");

  mixc_kernel_options o;
  memset(&o, 0, sizeof o);
  o.dims = dkv;
  o.ndims = 2;
  o.strategy = MIXC_STRATEGY_RECURRENT; /* quick to compile; auto is tested in (b) */
  mixc_kernel *k = NULL;
  o.segments = 1025;
  s = mixc_kernel_create(m, &o, &k, &e);
  expect(t, "kernel: options.segments out of range", s, &e, MIXC_ERROR_ARGUMENT,
         "options.segments = 1025", "[0, 1024]");
  mixc_kernel_destroy(k);
  k = NULL;
  o.segments = 4; /* the CPU ignores it */
  s = mixc_kernel_create(m, &o, &k, &e);
  expect(t, "kernel: gla K = V = 16", s, &e, MIXC_OK, NULL, NULL);
  if (s != MIXC_OK) goto out;

  /* ---- forward ---- */
  ArgSet a;
  argset_base(&a, z, AB, AT);
  fwd_case(t, k, &a, "forward: a valid call", valid_status(), NULL, NULL);
  argset_base(&a, z, AB, AT);
  a.in[1].name = "qq";
  fwd_case(t, k, &a, "forward: unknown input", MIXC_ERROR_ARGUMENT, "input 'qq'",
           "no input or param");
  argset_base(&a, z, AB, AT);
  a.nin = 3; /* drop g */
  fwd_case(t, k, &a, "forward: missing input", MIXC_ERROR_ARGUMENT, "input 'g' is missing", NULL);
  argset_base(&a, z, AB, AT);
  a.nout = 0;
  fwd_case(t, k, &a, "forward: missing output", MIXC_ERROR_ARGUMENT, "output 'o' is missing", NULL);
  argset_base(&a, z, AB, AT);
  a.in[3] = a.in[0];
  fwd_case(t, k, &a, "forward: duplicate input", MIXC_ERROR_ARGUMENT, "input 'q' is given twice",
           NULL);
  argset_base(&a, z, AB, AT);
  a.in[4] = a.out[0];
  a.nin = 5;
  fwd_case(t, k, &a, "forward: output passed as input", MIXC_ERROR_ARGUMENT, "'o' is an output",
           "outputs");
  argset_base(&a, z, AB, AT);
  a.in[1].tensor.data = NULL;
  fwd_case(t, k, &a, "forward: NULL data", MIXC_ERROR_ARGUMENT, "input 'k': data is NULL", NULL);
  argset_base(&a, z, AB, AT);
  a.in[0].tensor.dtype = MIXC_I32;
  fwd_case(t, k, &a, "forward: i32 input", MIXC_ERROR_ARGUMENT, "input 'q': dtype i32", NULL);
  argset_base(&a, z, AB, AT);
  a.in[2].tensor.dtype = MIXC_I64;
  fwd_case(t, k, &a, "forward: i64 input (not the first)", MIXC_ERROR_ARGUMENT,
           "input 'v': dtype i64", NULL);
  argset_base(&a, z, AB, AT);
  a.in[1].tensor.ndim = 3;
  fwd_case(t, k, &a, "forward: wrong ndim", MIXC_ERROR_ARGUMENT, "input 'k'",
           "expected 4: [B, T, H, K]");
  argset_base(&a, z, AB, AT);
  a.in[1].tensor.shape[0] = 3;
  fwd_case(t, k, &a, "forward: wrong B", MIXC_ERROR_ARGUMENT,
           "input 'k': shape [3, 8, 4, 16] does not match [B, T, H, K] = [2, 8, 4, 16]",
           "read off input 'q'");
  argset_base(&a, z, AB, AT);
  a.in[2].tensor.shape[1] = 9;
  fwd_case(t, k, &a, "forward: wrong T", MIXC_ERROR_ARGUMENT,
           "input 'v': shape [2, 9, 4, 16] does not match [B, T, H, V] = [2, 8, 4, 16]", NULL);
  argset_base(&a, z, AB, AT);
  a.in[3].tensor.shape[2] = 5;
  fwd_case(t, k, &a, "forward: wrong H", MIXC_ERROR_ARGUMENT,
           "input 'g': shape [2, 8, 5, 16] does not match [B, T, H, K] = [2, 8, 4, 16]", NULL);
  argset_base(&a, z, AB, AT);
  a.in[1].tensor.shape[3] = 32;
  fwd_case(t, k, &a, "forward: wrong dim", MIXC_ERROR_ARGUMENT,
           "input 'k': shape [2, 8, 4, 32] does not match [B, T, H, K] = [2, 8, 4, 16]", NULL);
  argset_base(&a, z, AB, AT);
  a.out[0].tensor.shape[3] = 8;
  fwd_case(t, k, &a, "forward: wrong output dim", MIXC_ERROR_ARGUMENT,
           "output 'o': shape [2, 8, 4, 8] does not match [B, T, H, V] = [2, 8, 4, 16]", NULL);
  argset_base(&a, z, AB, AT);
  a.in[2].tensor.stride[3] = -1;
  fwd_case(t, k, &a, "forward: negative stride", MIXC_ERROR_ARGUMENT, "input 'v': stride[3] = -1",
           "negative");
  argset_base(&a, z, AB, AT);
  a.in[2].tensor.stride[0] = 0;
  fwd_case(t, k, &a, "forward: zero stride on an input broadcasts", valid_status(), NULL, NULL);
  argset_base(&a, z, AB, AT);
  a.out[0].tensor.stride[1] = 0;
  fwd_case(t, k, &a, "forward: zero stride on an output", MIXC_ERROR_ARGUMENT,
           "output 'o': stride[1] = 0", NULL);
  argset_base(&a, z, AB, AT);
  a.fin[0].tensor.stride[2] = 0;
  fwd_case(t, k, &a, "forward: zero stride on a final state", MIXC_ERROR_ARGUMENT,
           "final state 'S': stride[2] = 0", NULL);
  argset_base(&a, z, AB, AT);
  a.init[0].tensor.shape[0] = 3;
  fwd_case(t, k, &a, "forward: state of wrong N", MIXC_ERROR_ARGUMENT,
           "initial state 'S': shape [3, 4, 16, 16] does not match [N, H, K, V] = [2, 4, 16, 16]",
           "N = B");
  argset_base(&a, z, AB, AT);
  a.init[0].tensor.dtype = MIXC_BF16;
  fwd_case(t, k, &a, "forward: bf16 state", MIXC_ERROR_ARGUMENT, "initial state 'S': dtype bf16",
           "states are f32");
  argset_base(&a, z, AB, AT);
  a.init[0].name = "Z";
  fwd_case(t, k, &a, "forward: unknown state", MIXC_ERROR_ARGUMENT, "initial state 'Z'",
           "no state");
  argset_base(&a, z, AB, AT);
  a.in[4].name = "scale";
  a.in[4].tensor = mixc_tensor_contiguous(z, MIXC_F32, 1, (int64_t[]){3});
  a.nin = 5;
  fwd_case(t, k, &a, "forward: param of wrong H", MIXC_ERROR_ARGUMENT,
           "param 'scale': shape [3] does not match [H] = [4]", NULL);
  a.in[4].tensor = mixc_tensor_contiguous(z, MIXC_F16, 1, (int64_t[]){AH});
  fwd_case(t, k, &a, "forward: param given (f16)", valid_status(), NULL, NULL);
  argset_base(&a, z, AB, AT);
  a.in[4].name = "K";
  a.in[4].tensor = a.in[0].tensor;
  a.nin = 5;
  fwd_case(t, k, &a, "forward: a dim passed as input", MIXC_ERROR_ARGUMENT, "'K' is a dim", NULL);
  {
    int32_t cu[4] = {0, 3, 5, 8};
    argset_base(&a, z, AB, AT);
    a.has_cu = 1;
    a.cu = mixc_tensor_contiguous(cu, MIXC_I32, 1, (int64_t[]){4});
    fwd_case(t, k, &a, "forward: cu_seqlens with B != 1", MIXC_ERROR_ARGUMENT,
             "cu_seqlens needs B = 1", "B = 2");
    argset_base(&a, z, 1, AT);
    a.has_cu = 1;
    a.cu = mixc_tensor_contiguous(cu, MIXC_I32, 1, (int64_t[]){4});
    a.init[0].tensor.shape[0] = 3;
    a.fin[0].tensor.shape[0] = 3;
    fwd_case(t, k, &a, "forward: cu_seqlens valid", valid_status(), NULL, NULL);
    a.init[0].tensor.shape[0] = 1;
    fwd_case(t, k, &a, "forward: varlen state of wrong N", MIXC_ERROR_ARGUMENT,
             "initial state 'S': shape [1, 4, 16, 16] does not match [N, H, K, V] = [3, 4, 16, 16]",
             "sequences in cu_seqlens");
    a.init[0].tensor.shape[0] = 3;
    int32_t cu_bad[4] = {0, 3, 2, 8};
    a.cu.data = cu_bad;
    fwd_case(t, k, &a, "forward: cu_seqlens out of order", MIXC_ERROR_ARGUMENT,
             "cu_seqlens[2] = 2 < cu_seqlens[1] = 3: offsets must not decrease", NULL);
    int64_t cu_end[4] = {0, 3, 5, 7};
    a.cu = mixc_tensor_contiguous(cu_end, MIXC_I64, 1, (int64_t[]){4});
    fwd_case(t, k, &a, "forward: cu_seqlens not ending at T", MIXC_ERROR_ARGUMENT,
             "cu_seqlens[3] = 7: the last offset must equal T = 8", NULL);
    int64_t cu_first[4] = {1, 3, 5, 8};
    a.cu.data = cu_first;
    fwd_case(t, k, &a, "forward: cu_seqlens not starting at 0", MIXC_ERROR_ARGUMENT,
             "cu_seqlens[0] = 1", NULL);
    a.cu.dtype = MIXC_F32;
    fwd_case(t, k, &a, "forward: cu_seqlens of f32", MIXC_ERROR_ARGUMENT, "cu_seqlens: dtype f32",
             NULL);
    int64_t cu_strided[8] = {0, -1, 3, -1, 5, -1, 8, -1};
    a.cu = mixc_tensor_contiguous(cu_strided, MIXC_I64, 1, (int64_t[]){4});
    a.cu.stride[0] = 2;
    fwd_case(t, k, &a, "forward: strided cu_seqlens", valid_status(), NULL, NULL);
  }
  {
    argset_base(&a, z, AB, AT);
    mixc_args args = argset_args(&a);
    mixc_named_tensor st[1] = {a.init[0]};
    s = mixc_step(k, &args, st, 1, &e);
    expect(t, "step: initial_states must be empty", s, &e, MIXC_ERROR_ARGUMENT, "must be empty",
           NULL);
    args.ninitial = args.nfinal = 0;
    s = mixc_step(k, &args, st, 0, &e);
    expect(t, "step: missing state", s, &e, MIXC_ERROR_ARGUMENT, "state 'S' is missing", NULL);
    s = mixc_step(k, &args, st, 1, &e);
    expect(t, "step: a valid call", s, &e, valid_status(), NULL, NULL);
    argset_base(&a, z, AB, 0);
    args = argset_args(&a);
    args.ninitial = args.nfinal = 0;
    s = mixc_step(k, &args, st, 1, &e);
    expect(t, "step: zero tokens", s, &e, valid_status(), NULL, NULL);
    s = mixc_forward(k, NULL, &e);
    expect(t, "forward: NULL args", s, &e, MIXC_ERROR_ARGUMENT, "args is NULL", NULL);
  }
  /* A param without a default must be given. */
  {
    mixc_kernel *k2 = NULL;
    mixc_kernel_options o2;
    memset(&o2, 0, sizeof o2);
    o2.mixer = "two";
    o2.dims = dfixok;
    o2.ndims = 2;
    o2.strategy = MIXC_STRATEGY_RECURRENT;
    s = mixc_kernel_create(m2, &o2, &k2, &e);
    if (s == MIXC_OK) {
      int64_t xs[5] = {1, 2, 3, 2, 8};
      int64_t as[2] = {3, 8};
      mixc_named_tensor in[2] = {{"x", mixc_tensor_contiguous(z, MIXC_F32, 5, xs)},
                                 {"A", mixc_tensor_contiguous(z, MIXC_F32, 2, as)}};
      mixc_named_tensor out[1] = {{"y", mixc_tensor_contiguous(z, MIXC_F32, 4, xs)}};
      out[0].tensor.shape[3] = 8;
      mixc_args args;
      memset(&args, 0, sizeof args);
      args.inputs = in;
      args.ninputs = 1;
      args.outputs = out;
      args.noutputs = 1;
      s = mixc_forward(k2, &args, &e);
      expect(t, "forward: param without default", s, &e, MIXC_ERROR_ARGUMENT,
             "param 'A' is missing", NULL);
      args.ninputs = 2;
      s = mixc_forward(k2, &args, &e);
      expect(t, "forward: param given", s, &e, valid_status(), NULL, NULL);
      in[0].tensor.shape[3] = 3;
      s = mixc_forward(k2, &args, &e);
      expect(t, "forward: fixed dim of a tensor", s, &e, MIXC_ERROR_ARGUMENT,
             "shape [1, 2, 3, 3, 8] does not match [B, T, H, NH, K] = [1, 2, 3, 2, 8]", NULL);
    }
    mixc_kernel_destroy(k2);
  }
  /* Grid mixers: [B, Y, X, H, (ndir), dims], no states, no cu_seqlens. */
  {
    mixc_dim d44[2] = {{"K", 4}, {"V", 4}};
    mixc_kernel *kg = NULL;
    mixc_kernel_options og;
    memset(&og, 0, sizeof og);
    og.dims = d44;
    og.ndims = 2;
    og.strategy = MIXC_STRATEGY_RECURRENT;
    s = mixc_kernel_create(mg, &og, &kg, &e);
    expect(t, "kernel: grid mixer", s, &e, MIXC_OK, NULL, NULL);
    if (s == MIXC_OK) {
      int64_t sh[6] = {2, 3, 5, 2, 4, 0};
      int64_t shg[6] = {2, 3, 5, 2, 2, 4};
      int64_t st[4] = {2, 2, 4, 4};
      mixc_named_tensor in[4] = {{"q", mixc_tensor_contiguous(z, MIXC_F32, 5, sh)},
                                 {"k", mixc_tensor_contiguous(z, MIXC_F32, 5, sh)},
                                 {"v", mixc_tensor_contiguous(z, MIXC_F32, 5, sh)},
                                 {"g", mixc_tensor_contiguous(z, MIXC_BF16, 6, shg)}};
      mixc_named_tensor out[1] = {{"o", mixc_tensor_contiguous(z, MIXC_F32, 5, sh)}};
      mixc_named_tensor sts[1] = {{"S", mixc_tensor_contiguous(z, MIXC_F32, 4, st)}};
      mixc_args args;
      memset(&args, 0, sizeof args);
      args.inputs = in;
      args.ninputs = 4;
      args.outputs = out;
      args.noutputs = 1;
      s = mixc_forward(kg, &args, &e);
      expect(t, "forward: grid, a valid call", s, &e, valid_status(), NULL, NULL);
      in[3].tensor.shape[4] = 3;
      s = mixc_forward(kg, &args, &e);
      expect(t, "forward: grid, wrong ndir", s, &e, MIXC_ERROR_ARGUMENT,
             "input 'g': shape [2, 3, 5, 2, 3, 4] does not match [B, Y, X, H, ndir, K] = "
             "[2, 3, 5, 2, 2, 4]",
             NULL);
      in[3].tensor.shape[4] = 2;
      out[0].tensor.shape[2] = 4;
      s = mixc_forward(kg, &args, &e);
      expect(t, "forward: grid, wrong X", s, &e, MIXC_ERROR_ARGUMENT,
             "output 'o': shape [2, 3, 4, 2, 4] does not match [B, Y, X, H, V] = [2, 3, 5, 2, 4]",
             NULL);
      out[0].tensor.shape[2] = 5;
      args.final_states = sts;
      args.nfinal = 1;
      s = mixc_forward(kg, &args, &e);
      expect(t, "forward: grid, final state refused", s, &e, MIXC_ERROR_ARGUMENT, "final state 'S'",
             "takes no states");
      args.nfinal = 0;
      int32_t cu[2] = {0, 15};
      mixc_tensor cut = mixc_tensor_contiguous(cu, MIXC_I32, 1, (int64_t[]){2});
      args.cu_seqlens = &cut;
      s = mixc_forward(kg, &args, &e);
      expect(t, "forward: grid, cu_seqlens refused", s, &e, MIXC_ERROR_ARGUMENT, "cu_seqlens",
             "grid");
    }
    mixc_kernel_destroy(kg);
  }
  /* Lifetimes: a kernel keeps its module alive. */
  {
    mixc_module *mt = NULL;
    mixc_kernel *kt = NULL;
    s = mixc_module_compile(ctx, GLA_SRC, strlen(GLA_SRC), "gla2.mix", &mt, &e);
    if (s == MIXC_OK) s = mixc_kernel_create(mt, &o, &kt, &e);
    mixc_module_destroy(mt);
    if (s == MIXC_OK) {
      argset_base(&a, z, AB, AT);
      fwd_case(t, kt, &a, "lifetime: kernel outlives its module", valid_status(), NULL, NULL);
    }
    mixc_kernel_destroy(kt);
  }
  {
    int64_t sh[3] = {2, 3, 4};
    mixc_tensor tc = mixc_tensor_contiguous(NULL, MIXC_F32, 3, sh);
    result(t, tc.stride[0] == 12 && tc.stride[1] == 4 && tc.stride[2] == 1,
           "mixc_tensor_contiguous strides", NULL);
    result(t,
           !strcmp(mixc_dtype_name(MIXC_BF16), "bf16") &&
               !strcmp(mixc_status_name(MIXC_ERROR_ARGUMENT), "argument error") &&
               mixc_version()[0],
           "names and version", NULL);
  }
out:
  mixc_kernel_destroy(k);
  mixc_module_destroy(m);
  mixc_module_destroy(m2);
  mixc_module_destroy(mg);
  free(z);
}

/* ==== (b) numerics against the fp64 reference ==== */
#ifdef MIXC_HAVE_LLVM

/* Max error of every output and final state relative to the largest reference value. */
static int compare(const Ex *x, const Data *ref, const Data *got, double tol_out, double tol_state,
                   char *detail, size_t n) {
  int ok = 1;
  size_t used = 0;
  detail[0] = 0;
  for (int s = 0; s < x->m->nsyms; s++) {
    if (!ref->out[s] || !got->out[s]) continue;
    double mx;
    int64_t at;
    double err = max_abs_err(ref->out[s], got->out[s], ref->numel[s], &mx, &at); /* NaN: inf */
    double tol = (x->m->syms[s].kind == SYM_STATE ? tol_state : tol_out) * ref_scale(mx);
    int good = err <= tol;
    if (!good) {
      ok = 0;
      if (used < n)
        used += (size_t)snprintf(detail + used, n - used,
                                 "%s %s: max err %.3g at [%" PRId64 "] (got %.6g, ref %.6g) > "
                                 "tol %.3g (max|ref| %.3g); ",
                                 x->m->syms[s].kind == SYM_STATE ? "final state" : "output",
                                 x->m->syms[s].name, err, at, got->out[s][at], ref->out[s][at], tol,
                                 mx);
    }
  }
  return ok;
}

static double tol_of(mixc_dtype dt) {
  return dt == MIXC_BF16 ? 5e-3 : dt == MIXC_F16 ? 2e-3 : 2e-4;
}

static const char *dt_name(mixc_dtype dt) { return mixc_dtype_name(dt); }

static void cfg_name(const Ex *x, const Cfg *c, const char *what, char *buf, size_t n) {
  if (x->grid)
    snprintf(buf, n, "%s %s Y=%lld X=%lld %s%s%s%s", x->name, what, (long long)c->Y,
             (long long)c->X, dt_name(c->dt), c->layout_in == L_TRANSPOSE ? " strided-in" : "",
             c->layout_out ? " strided-out" : "", c->params ? " params" : "");
  else
    snprintf(buf, n, "%s %s T=%lld %s%s%s%s%s%s", x->name, what, (long long)c->T, dt_name(c->dt),
             c->layout_in == L_TRANSPOSE     ? " strided-in"
             : c->layout_in == L_BROADCAST_B ? " broadcast-B"
                                             : "",
             c->layout_out ? " strided-out" : "", c->init ? " init" : "", c->fin ? " final" : "",
             c->params ? " params" : "");
}

/* Run one call through the kernel and the reference and compare. Keeps the data and the
 * kernel's results for the caller when asked. */
static int run_case(Tally *t, const Ex *x, const Cfg *c, uint64_t seed, const char *what,
                    Data *keep_data, Data *keep_got) {
  char name[256], detail[4800] = "";
  cfg_name(x, c, what, name, sizeof name);
  MixcRng rng;
  mixc_rng_seed(&rng, seed);
  Data d, got;
  Call k;
  memset(&got, 0, sizeof got);
  int ok = data_make(x, c, &rng, &d) && call_make(x, c, &d, &k, NULL, detail, sizeof detail);
  if (!ok) snprintf(detail, sizeof detail, "out of memory");
  mixc_error e;
  if (ok) {
    mixc_args a = call_args(&k, NULL);
    mixc_status s = mixc_forward(x->k, &a, &e);
    if (s != MIXC_OK) {
      ok = 0;
      snprintf(detail, sizeof detail, "mixc_forward: %s: %s", mixc_status_name(s), e.message);
    }
  }
  if (ok && !call_results(x, &d, &k, &got, detail, sizeof detail)) {
    ok = 0;
    snprintf(detail, sizeof detail, "out of memory");
  }
  if (ok && run_reference(x, &d, detail, sizeof detail)) ok = 0;
  if (ok) ok = compare(x, &d, &got, tol_of(c->dt), 2e-4, detail, sizeof detail);
  result(t, ok, name, detail);
  call_free(&k);
  if (keep_data)
    *keep_data = d;
  else
    data_free(&d);
  if (keep_got)
    *keep_got = got;
  else
    data_free(&got);
  return ok;
}

/* Two results of the kernel agree to tol relative to the largest value. */
static int agree(const Ex *x, const Data *a, const Data *b, double tol, char *detail, size_t n) {
  return compare(x, a, b, tol, tol, detail, n);
}

/* A variable-length batch equals each sequence run alone (and the reference). */
static void varlen_case(Tally *t, const Ex *x, uint64_t seed, int cu_i32) {
  static const int64_t lens[3] = {5, 0, 9};
  Cfg c = {1, 14, 0, 0, MIXC_F32, L_CONTIG, L_CONTIG, 1, 1, 0, lens, 3, cu_i32, cu_i32 ? 2 : 1, 0};
  Data d, got;
  char name[160], detail[4800] = "";
  int ok = run_case(
      t, x, &c, seed,
      cu_i32 ? "varlen (i32 cu, strided) vs reference" : "varlen (i64 cu) vs reference", &d, &got);
  snprintf(name, sizeof name, "%s varlen {5, 0, 9} equals separate runs", x->name);
  if (!ok) {
    result(t, 0, name, "the varlen run failed");
    data_free(&d);
    data_free(&got);
    return;
  }
  const Mixer *m = x->m;
  for (int i = 0; i < 3 && ok; i++) {
    /* Sequence i alone: B = 1, T = lens[i], its slice of every input and state. */
    Data di, gi;
    memset(&di, 0, sizeof di);
    di.B = 1;
    di.T = lens[i];
    di.H = d.H;
    di.N = 1;
    Cfg ci = c;
    ci.seqlens = NULL;
    ci.T = lens[i];
    int good = 1;
    for (int s = 0; s < m->nsyms && good; s++) {
      const Sym *y = &m->syms[s];
      int64_t f = feat(x, s) * (y->per_direction ? x->ndir : 1);
      if (y->kind == SYM_INPUT || y->kind == SYM_OUTPUT)
        di.numel[s] = lens[i] * d.H * f;
      else if (y->kind == SYM_STATE)
        di.numel[s] = d.H * f;
      else if (y->kind == SYM_PARAM)
        di.numel[s] = d.numel[s];
      else
        continue;
      size_t bytes = sizeof(double) * (size_t)(di.numel[s] > 0 ? di.numel[s] : 1);
      int64_t off = y->kind == SYM_STATE ? i * d.H * f : d.cu[i] * d.H * f;
      if (d.in[s]) {
        di.in[s] = malloc(bytes);
        good = di.in[s] != NULL;
        if (good)
          memcpy(di.in[s], d.in[s] + (y->kind == SYM_PARAM ? 0 : off),
                 sizeof(double) * (size_t)di.numel[s]);
      }
      if (good && d.out[s]) {
        di.out[s] = malloc(bytes);
        good = di.out[s] != NULL;
      }
    }
    Call k;
    memset(&gi, 0, sizeof gi);
    good = good && call_make(x, &ci, &di, &k, NULL, detail, sizeof detail);
    if (good) {
      mixc_args a = call_args(&k, NULL);
      mixc_error e;
      mixc_status s = mixc_forward(x->k, &a, &e);
      if (s != MIXC_OK) {
        good = 0;
        snprintf(detail, sizeof detail, "sequence %d: %s", i, e.message);
      } else {
        good = call_results(x, &di, &k, &gi, detail, sizeof detail);
      }
      call_free(&k);
    }
    if (good) {
      /* The varlen results of sequence i, sliced the same way. */
      Data vi;
      memset(&vi, 0, sizeof vi);
      for (int s = 0; s < m->nsyms && good; s++) {
        if (!gi.out[s]) continue;
        const Sym *y = &m->syms[s];
        int64_t f = feat(x, s);
        int64_t off = y->kind == SYM_STATE ? i * d.H * f : d.cu[i] * d.H * f;
        vi.numel[s] = gi.numel[s];
        vi.out[s] = malloc(sizeof(double) * (size_t)(gi.numel[s] > 0 ? gi.numel[s] : 1));
        if (!vi.out[s]) {
          good = 0;
          break;
        }
        memcpy(vi.out[s], got.out[s] + off, sizeof(double) * (size_t)gi.numel[s]);
      }
      if (good && !agree(x, &vi, &gi, 1e-6, detail, sizeof detail)) {
        good = 0;
        char tmp[64];
        snprintf(tmp, sizeof tmp, " (sequence %d)", i);
        strncat(detail, tmp, sizeof detail - strlen(detail) - 1);
      }
      data_free(&vi);
    }
    if (!good && !detail[0]) snprintf(detail, sizeof detail, "sequence %d failed", i);
    ok = good;
    data_free(&di);
    data_free(&gi);
  }
  result(t, ok, name, detail);
  data_free(&d);
  data_free(&got);
}

/* mixc_step over the tokens one at a time equals one forward with final states; then a
 * repeated identical forward compiles nothing. */
static void step_case(Tally *t, const Ex *x, uint64_t seed) {
  Cfg c = {2, 9, 0, 0, MIXC_F32, L_TRANSPOSE, L_CONTIG, 1, 1, 1, NULL, 0, 0, 0, 0};
  char name[160], detail[4800] = "";
  snprintf(name, sizeof name, "%s step x9 equals forward T=9", x->name);
  Data d, got;
  if (!run_case(t, x, &c, seed, "forward for step", &d, &got)) {
    result(t, 0, name, "the forward failed");
    data_free(&d);
    data_free(&got);
    return;
  }
  Call k;
  int ok = call_make(x, &c, &d, &k, NULL, detail, sizeof detail);
  /* The states start from the initial states (the buffers hold them) and are carried. */
  mixc_named_tensor st[MAXSYM];
  int nst = 0;
  for (int s = 0; s < x->m->nsyms && ok; s++)
    if (x->m->syms[s].kind == SYM_STATE) {
      st[nst].name = x->m->syms[s].name;
      st[nst++].tensor = k.sin[s].t;
    }
  for (int64_t tok = 0; tok < c.T && ok; tok++) {
    mixc_named_tensor in[MAXSYM], out[MAXSYM];
    mixc_args a = step_args(x, &k, tok, 1, in, out);
    mixc_error e;
    mixc_status s = mixc_step(x->k, &a, st, nst, &e);
    if (s != MIXC_OK) {
      ok = 0;
      snprintf(detail, sizeof detail, "token %lld: %s", (long long)tok, e.message);
    }
  }
  if (ok) {
    /* Results: outputs from the output buffers, states from the carried ones. */
    Data sg;
    memset(&sg, 0, sizeof sg);
    for (int s = 0; s < x->m->nsyms && ok; s++) {
      if (!got.out[s]) continue;
      sg.numel[s] = got.numel[s];
      sg.out[s] = malloc(sizeof(double) * (size_t)(got.numel[s] > 0 ? got.numel[s] : 1));
      if (!sg.out[s]) {
        ok = 0;
        break;
      }
      buf_get(x->m->syms[s].kind == SYM_STATE ? &k.sin[s] : &k.buf[s], sg.out[s]);
    }
    if (ok) ok = agree(x, &got, &sg, 1e-6, detail, sizeof detail);
    data_free(&sg);
  }
  result(t, ok, name, detail);
  /* The cache: the same call again compiles nothing. */
  int nv0 = 0, nv1 = 0;
  double ms0 = mixc_kernel_compile_ms(x->k, &nv0);
  if (ok) {
    mixc_args a = call_args(&k, NULL);
    mixc_error e;
    ok = mixc_forward(x->k, &a, &e) == MIXC_OK;
    if (!ok) snprintf(detail, sizeof detail, "%s", e.message);
  }
  double ms1 = mixc_kernel_compile_ms(x->k, &nv1);
  snprintf(name, sizeof name, "%s repeated forward reuses the variant (%d variants, %.1f ms)",
           x->name, nv1, ms1);
  result(t, ok && nv0 == nv1 && ms0 == ms1 && nv1 >= 1, name, detail);
  call_free(&k);
  data_free(&d);
  data_free(&got);
}

/* sizes: the dims' sizes in declaration order (4 of them, cycled); NULL: 24, 20, 12, 8.
 * vtile, chunk: options.vtile and options.chunk_size. */
static int ex_open_opts(Ex *x, mixc_context *ctx, const char *path, mixc_strategy strat,
                        const int64_t *sizes, int64_t vtile, int64_t chunk, char *err, size_t n) {
  if (!ex_load(x, ctx, path, err, n)) return 0;
  mixc_error e;
  static const int64_t default_sizes[4] = {24, 20, 12, 8};
  if (!sizes) sizes = default_sizes;
  mixc_dim dims[MAXSYM];
  int nd = 0, next = 0;
  for (int s = 0; s < x->m->nsyms; s++) {
    const Sym *y = &x->m->syms[s];
    if (y->kind != SYM_DIM) continue;
    x->dims[s] = y->fixed ? y->fixed : sizes[next++ % 4];
    dims[nd].name = y->name;
    dims[nd++].size = x->dims[s];
  }
  mixc_kernel_options o;
  memset(&o, 0, sizeof o);
  o.dims = dims;
  o.ndims = nd;
  o.strategy = strat;
  o.vtile = vtile;
  o.chunk_size = chunk;
  if (strat != MIXC_STRATEGY_AUTO)
    snprintf(x->name + strlen(x->name), sizeof x->name - strlen(x->name), " (%s)",
             strat == MIXC_STRATEGY_RECURRENT ? "recurrent"
             : strat == MIXC_STRATEGY_CHUNK   ? "chunk"
                                              : "parallel");
  if (mixc_kernel_create(x->mod, &o, &x->k, &e) != MIXC_OK)
    return snprintf(err, n, "kernel: %s", e.message), 0;
  return 1;
}

static int ex_open_vtile(Ex *x, mixc_context *ctx, const char *path, mixc_strategy strat,
                         const int64_t *sizes, int64_t vtile, char *err, size_t n) {
  return ex_open_opts(x, ctx, path, strat, sizes, vtile, 0, err, n);
}

static int ex_open_sized(Ex *x, mixc_context *ctx, const char *path, mixc_strategy strat,
                         const int64_t *sizes, char *err, size_t n) {
  return ex_open_vtile(x, ctx, path, strat, sizes, 0, err, n);
}

static int ex_open(Ex *x, mixc_context *ctx, const char *path, mixc_strategy strat, char *err,
                   size_t n) {
  return ex_open_sized(x, ctx, path, strat, NULL, err, n);
}

static void ex_close(Ex *x) {
  mixc_kernel_destroy(x->k);
  mixc_module_destroy(x->mod);
  compilation_free(&x->comp);
}

/* Lowers x's mixer as a CPU call of it would be (f32, no optional tensors) with `strategy`,
 * B*H = bh on `threads` threads and KernelSpec.vtile = vtile. Returns nonzero when it does
 * not lower; else *strategy_out and *vtiles_out are the plan's. */
static int plan_of_tokens(const Ex *x, Strategy strategy, int64_t bh, int64_t threads,
                          int64_t vtile, int64_t tokens, Strategy *strategy_out,
                          int64_t *vtiles_out) {
  const RecMixer *rm = x->comp.rec ? rec_find_mixer(x->comp.rec, x->m->name.name) : NULL;
  if (!rm) return 1;
  KType dt[MAXSYM];
  unsigned char present[MAXSYM], want[MAXSYM];
  for (int s = 0; s < x->m->nsyms; s++) {
    dt[s] = KT_F32;
    present[s] = x->m->syms[s].kind == SYM_PARAM;
    want[s] = 0;
  }
  KernelSpec sp;
  memset(&sp, 0, sizeof sp);
  sp.rm = rm;
  sp.dims = x->dims;
  sp.dtype = dt;
  sp.present = present;
  sp.want = want;
  sp.cu_type = KT_I32;
  sp.strategy = strategy;
  sp.bh = bh;
  sp.target_items = threads;
  sp.vtile = vtile;
  sp.tokens_hint = tokens;
  KernelPlan plan;
  Arena a;
  arena_init(&a);
  char err[512];
  int rc = lower_mixer(&a, &sp, &plan, err, sizeof err);
  if (!rc) {
    *strategy_out = plan.strategy;
    *vtiles_out = plan.vtiles;
  }
  arena_free(&a);
  return rc;
}

static int plan_of(const Ex *x, Strategy strategy, int64_t bh, int64_t threads, int64_t vtile,
                   Strategy *strategy_out, int64_t *vtiles_out) {
  return plan_of_tokens(x, strategy, bh, threads, vtile, 0, strategy_out, vtiles_out);
}

/* The strategy `auto` resolves to for the example's mixer (f32, no optional tensors). */
static Strategy auto_strategy(const Ex *x) {
  Strategy s;
  int64_t vt;
  return plan_of(x, STRAT_AUTO, 0, 0, 0, &s, &vt) ? STRAT_RECURRENT : s;
}

/* Several threads call one kernel of a fresh context at once: variants compile
 * concurrently (two threads need the same one), and every result matches the reference. */
typedef struct Conc {
  const Ex *x;
  Call k;
  Data d;
  mixc_status st;
  char msg[4096];
} Conc;

static void *conc_main(void *p) {
  Conc *c = p;
  mixc_args a = call_args(&c->k, NULL);
  mixc_error e;
  c->st = mixc_forward(c->x->k, &a, &e);
  snprintf(c->msg, sizeof c->msg, "%s", e.message);
  return NULL;
}

static void concurrency_case(Tally *t, uint64_t seed) {
  enum { NT = 4 };
  mixc_context *ctx = NULL;
  mixc_error e;
  char err[4800] = "";
  Ex x;
  Conc c[NT];
  pthread_t th[NT];
  int started[NT] = {0};
  memset(c, 0, sizeof c);
  Cfg cfg[NT] = {
      {2, 7, 0, 0, MIXC_F32, L_CONTIG, L_CONTIG, 1, 1, 1, NULL, 0, 0, 0, 0},
      {2, 63, 0, 0, MIXC_BF16, L_CONTIG, L_CONTIG, 0, 1, 0, NULL, 0, 0, 0, 0},
      {2, 64, 0, 0, MIXC_F16, L_TRANSPOSE, L_CONTIG, 1, 1, 0, NULL, 0, 0, 0, 0},
      {2, 65, 0, 0, MIXC_F32, L_TRANSPOSE, 1, 1, 1, 1, NULL, 0, 0, 0, 0},
  };
  int ok = mixc_context_create(2, &ctx, &e) == MIXC_OK;
  if (!ok) snprintf(err, sizeof err, "context: %s", e.message);
  ok = ok && ex_open(&x, ctx, "examples/gla.mix", MIXC_STRATEGY_RECURRENT, err, sizeof err);
  for (int i = 0; i < NT && ok; i++) {
    MixcRng rng;
    mixc_rng_seed(&rng, seed + (uint64_t)i);
    c[i].x = &x;
    ok = data_make(&x, &cfg[i], &rng, &c[i].d) && call_make(&x, &cfg[i], &c[i].d, &c[i].k, NULL, err, sizeof err);
    if (!ok) snprintf(err, sizeof err, "out of memory");
  }
  for (int i = 0; i < NT && ok; i++)
    started[i] = pthread_create(&th[i], NULL, conc_main, &c[i]) == 0;
  for (int i = 0; i < NT; i++)
    if (started[i]) pthread_join(th[i], NULL);
  for (int i = 0; i < NT && ok; i++) {
    Data got;
    if (!started[i] || c[i].st != MIXC_OK) {
      ok = 0;
      snprintf(err, sizeof err, "thread %d: %s", i, started[i] ? c[i].msg : "not started");
      break;
    }
    ok = call_results(&x, &c[i].d, &c[i].k, &got, err, sizeof err) && !run_reference(&x, &c[i].d, err, sizeof err) &&
         compare(&x, &c[i].d, &got, tol_of(cfg[i].dt), 2e-4, err, sizeof err);
    data_free(&got);
  }
  int nv = 0;
  if (ok) mixc_kernel_compile_ms(x.k, &nv);
  char name[128];
  snprintf(name, sizeof name, "concurrency: %d threads on one kernel (%d variants)", NT, nv);
  result(t, ok && nv == 3, name, err);
  for (int i = 0; i < NT; i++) {
    call_free(&c[i].k);
    data_free(&c[i].d);
  }
  if (ctx) ex_close(&x);
  mixc_context_destroy(ctx);
}

/* One example: the bulk of the cases on a recurrent kernel (4 variants: f32 with params and
 * states; bf16 with a final state and defaulted params; f16 with an initial state; varlen),
 * and where `auto` picks another strategy (chunk), one variant of that (f32 with params and
 * states) over T = 1, 63, 64, 65, 130 and 1000, its step, and a varlen batch for two of
 * them. Grid mixers: 3 variants. */
static void run_example(Tally *t, mixc_context *ctx, const char *file, int index, uint64_t cs) {
  Ex x;
  char err[4200];
  if (!ex_open(&x, ctx, file, MIXC_STRATEGY_RECURRENT, err, sizeof err)) {
    result(t, 0, file, err);
    ex_close(&x);
    return;
  }
  if (x.grid) {
    Cfg g[] = {
        {2, 0, 3, 5, MIXC_F32, L_CONTIG, L_CONTIG, 0, 0, 0, NULL, 0, 0, 0, 0},
        {2, 0, 3, 5, MIXC_F32, L_TRANSPOSE, 1, 0, 0, 0, NULL, 0, 0, 0, 0},
        {2, 0, 3, 5, MIXC_BF16, L_CONTIG, L_CONTIG, 0, 0, 1, NULL, 0, 0, 0, 0},
        {2, 0, 3, 5, MIXC_F16, L_BROADCAST_B, L_CONTIG, 0, 0, 0, NULL, 0, 0, 0, 0},
        {1, 0, 1, 1, MIXC_F32, L_CONTIG, L_CONTIG, 0, 0, 0, NULL, 0, 0, 0, 0},
        {2, 0, 7, 4, MIXC_F32, L_CONTIG, L_CONTIG, 0, 0, 0, NULL, 0, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++)
      run_case(t, &x, &g[i], cs + i, "", NULL, NULL);
    ex_close(&x);
    return;
  }
  Cfg c[] = {
      {2, 1, 0, 0, MIXC_F32, L_CONTIG, L_CONTIG, 1, 1, 1, NULL, 0, 0, 0, 0},
      {2, 7, 0, 0, MIXC_F32, L_BROADCAST_B, L_CONTIG, 1, 1, 1, NULL, 0, 0, 0, 0},
      {2, 63, 0, 0, MIXC_BF16, L_CONTIG, L_CONTIG, 0, 1, 0, NULL, 0, 0, 0, 0},
      {2, 64, 0, 0, MIXC_F16, L_CONTIG, L_CONTIG, 1, 0, 0, NULL, 0, 0, 0, 0},
      {2, 65, 0, 0, MIXC_F32, L_TRANSPOSE, 1, 1, 1, 1, NULL, 0, 0, 0, 0},
      {2, 0, 0, 0, MIXC_F32, L_CONTIG, L_CONTIG, 1, 1, 1, NULL, 0, 0, 0, 0},
      {2, 1000, 0, 0, MIXC_F32, L_CONTIG, L_CONTIG, 1, 1, 1, NULL, 0, 0, 0, 0},
  };
  int n = sizeof c / sizeof c[0];
  int big = !strcmp(x.name, "gla (recurrent)") || !strcmp(x.name, "delta (recurrent)");
  if (!big) n--; /* T = 1000: two examples */
  for (int i = 0; i < n; i++) run_case(t, &x, &c[i], cs + (uint64_t)i, "", NULL, NULL);
  varlen_case(t, &x, cs + 100, index % 2);
  step_case(t, &x, cs + 200);
  Strategy as = auto_strategy(&x);
  ex_close(&x);
  if (as == STRAT_RECURRENT) return;
  Ex a;
  if (!ex_open(&a, ctx, file, MIXC_STRATEGY_AUTO, err, sizeof err)) {
    result(t, 0, file, err);
    ex_close(&a);
    return;
  }
  snprintf(a.name + strlen(a.name), sizeof a.name - strlen(a.name), " (auto: %s)",
           strategy_name(as));
  Cfg ca[] = {
      {2, 1, 0, 0, MIXC_F32, L_CONTIG, L_CONTIG, 1, 1, 1, NULL, 0, 0, 0, 0},
      {2, 63, 0, 0, MIXC_F32, L_BROADCAST_B, L_CONTIG, 1, 1, 1, NULL, 0, 0, 0, 0},
      {2, 64, 0, 0, MIXC_F32, L_CONTIG, L_CONTIG, 1, 1, 1, NULL, 0, 0, 0, 0},
      {2, 65, 0, 0, MIXC_F32, L_TRANSPOSE, 1, 1, 1, 1, NULL, 0, 0, 0, 0},
      {2, 130, 0, 0, MIXC_F32, L_CONTIG, 1, 1, 1, 1, NULL, 0, 0, 0, 0},
      {2, 0, 0, 0, MIXC_F32, L_CONTIG, L_CONTIG, 1, 1, 1, NULL, 0, 0, 0, 0},
      {2, 1000, 0, 0, MIXC_F32, L_CONTIG, L_CONTIG, 1, 1, 1, NULL, 0, 0, 0, 0},
  };
  int na = sizeof ca / sizeof ca[0];
  if (!big) na--;
  for (int i = 0; i < na; i++) run_case(t, &a, &ca[i], cs + 400 + (uint64_t)i, "", NULL, NULL);
  step_case(t, &a, cs + 500);
  if (!strcmp(x.name, "gla (recurrent)") || !strcmp(x.name, "linear_attn (recurrent)"))
    varlen_case(t, &a, cs + 600, index % 2);
  ex_close(&a);
}

/* The examples run on two threads at once (one context: the API is thread-safe); each
 * example's lines are collected and printed in file order. */
typedef struct Work {
  mixc_context *ctx;
  char **files;
  int nf;
  int next;
  pthread_mutex_t mu;
  Tally *tallies;
  char **text;
  size_t *len;
  uint64_t seed;
  const char *only;
} Work;

static void *work_main(void *p) {
  Work *w = p;
  for (;;) {
    pthread_mutex_lock(&w->mu);
    int i = w->next++;
    pthread_mutex_unlock(&w->mu);
    if (i >= w->nf) break;
    if (w->only && !strstr(w->files[i], w->only)) continue;
    Tally *t = &w->tallies[i];
    t->out = open_memstream(&w->text[i], &w->len[i]);
    if (!t->out) {
      t->fail++;
      continue;
    }
    uint64_t cs = w->seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(i + 1));
    run_example(t, w->ctx, w->files[i], i, cs);
    fclose(t->out);
  }
  return NULL;
}

/* The plan a CPU call of x with B*H = bh on `threads` threads gets (f32, no optional
 * tensors; vtile: KernelSpec.vtile): its value tiles per (sequence, head), or -1. */
static int64_t planned_vtiles_w(const Ex *x, int64_t bh, int64_t threads, int64_t vtile) {
  Strategy s;
  int64_t vt;
  return plan_of(x, STRAT_CHUNK, bh, threads, vtile, &s, &vt) ? -1 : vt;
}

static int64_t planned_vtiles(const Ex *x, int64_t bh, int64_t threads) {
  return planned_vtiles_w(x, bh, threads, 0);
}

/* The value-tile split and the delta family's chunk form: a 16-thread context, B = 1 and
 * H = 3 (3 (sequence, head) pairs for 16 threads), V = 100: the chunk kernels split V into
 * tiles of 32 (32, 32, 32 and a remainder of 4 columns), every tile checked against the
 * fp64 reference over T = 1, 7, 63, 64, 65, 1000 with initial and final states, and a
 * varlen batch (more pairs than the kernel was built for: the same split). */
static void split_cases(Tally *t, uint64_t seed) {
  mixc_context *ctx = NULL;
  mixc_error e;
  mixc_status st = mixc_context_create(16, &ctx, &e);
  expect(t, "split: context (16 threads)", st, &e, MIXC_OK, NULL, NULL);
  if (st != MIXC_OK) return;
  static const char *files[] = {"examples/gated_delta.mix", "examples/delta_product.mix",
                                "examples/kda.mix", "examples/gla.mix", "examples/mamba2.mix"};
  static const int64_t sizes[4] = {24, 100, 24, 100};
  static const int64_t Ts[] = {1, 7, 63, 64, 65, 1000};
  for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
    Ex x;
    char err[4200], name[160];
    if (!ex_open_sized(&x, ctx, files[f], MIXC_STRATEGY_CHUNK, sizes, err, sizeof err)) {
      result(t, 0, files[f], err);
      ex_close(&x);
      continue;
    }
    snprintf(x.name + strlen(x.name), sizeof x.name - strlen(x.name), " V=100 split");
    int64_t vt = planned_vtiles(&x, 3, 16);
    snprintf(name, sizeof name, "%s: 4 value tiles for B*H = 3 on 16 threads", x.name);
    snprintf(err, sizeof err, "plan.vtiles = %lld", (long long)vt);
    result(t, vt == 4, name, err);
    for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++) {
      /* the first call builds the variant: B = 1 (3 pairs) */
      Cfg c = {1, Ts[i], 0, 0, MIXC_F32, i % 2 ? L_TRANSPOSE : L_CONTIG, L_CONTIG, 1, 1, 1,
               NULL, 0, 0, 0, 0};
      run_case(t, &x, &c, seed + 31 * f + i, "", NULL, NULL);
    }
    varlen_case(t, &x, seed + 31 * f + 17, (int)(f % 2));
    ex_close(&x);
  }
  mixc_context_destroy(ctx);
}

/* options.vtile forces the split: on a 2-thread context with B*H = 6 (the schedule alone
 * would not split), vtile = 24 cuts V = 100 into 24, 24, 24, 24 and 4 columns; each run
 * checked against the fp64 reference. A kernel with another vtile is another variant (not
 * the cached one); a negative vtile is refused. */
static void vtile_cases(Tally *t, uint64_t seed) {
  mixc_context *ctx = NULL;
  mixc_error e;
  mixc_status st = mixc_context_create(2, &ctx, &e);
  expect(t, "vtile: context (2 threads)", st, &e, MIXC_OK, NULL, NULL);
  if (st != MIXC_OK) return;
  static const char *files[] = {"examples/gated_delta.mix", "examples/gla.mix",
                                "examples/mamba2.mix"};
  static const int64_t sizes[4] = {24, 100, 24, 100};
  for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
    Ex x, y;
    char err[4200], name[160];
    if (!ex_open_vtile(&x, ctx, files[f], MIXC_STRATEGY_CHUNK, sizes, 24, err, sizeof err)) {
      result(t, 0, files[f], err);
      ex_close(&x);
      continue;
    }
    snprintf(x.name + strlen(x.name), sizeof x.name - strlen(x.name), " V=100 vtile=24");
    int64_t vt0 = planned_vtiles(&x, 6, 2), vt = planned_vtiles_w(&x, 6, 2, 24);
    snprintf(name, sizeof name, "%s: 1 value tile by the schedule, 5 forced", x.name);
    snprintf(err, sizeof err, "plan.vtiles = %lld, forced %lld", (long long)vt0, (long long)vt);
    result(t, vt0 == 1 && vt == 5, name, err);
    static const int64_t Ts[] = {7, 65};
    for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++) {
      Cfg c = {2, Ts[i], 0, 0, MIXC_F32, L_CONTIG, L_CONTIG, 1, 1, 1, NULL, 0, 0, 0, 0};
      run_case(t, &x, &c, seed + 31 * f + i, "", NULL, NULL);
    }
    /* the same text with the schedule's tiles: its own variant, compiled anew */
    if (ex_open_vtile(&y, ctx, files[f], MIXC_STRATEGY_CHUNK, sizes, 0, err, sizeof err)) {
      Cfg c = {2, 7, 0, 0, MIXC_F32, L_CONTIG, L_CONTIG, 1, 1, 1, NULL, 0, 0, 0, 0};
      run_case(t, &y, &c, seed + 31 * f + 5, "", NULL, NULL);
      int nv = 0;
      double ms = mixc_kernel_compile_ms(y.k, &nv);
      snprintf(name, sizeof name, "%s: vtile = 0 is not the vtile = 24 variant", x.name);
      snprintf(err, sizeof err, "compile_ms %.3f, %d variants", ms, nv);
      result(t, nv == 1 && ms > 0, name, err);
    } else {
      result(t, 0, files[f], err);
    }
    ex_close(&y);
    ex_close(&x);
  }
  {
    Ex x;
    char err[4200];
    int ok = !ex_open_vtile(&x, ctx, "examples/gla.mix", MIXC_STRATEGY_CHUNK, NULL, -1, err,
                            sizeof err);
    result(t, ok && strstr(err, "options.vtile = -1"), "vtile = -1 is refused", err);
    ex_close(&x);
  }
  mixc_context_destroy(ctx);
}

/* Chunk lengths other than the schedule's (options.chunk_size), against the fp64 reference:
 * 24 (not a multiple of 16: GLA's sub-chunk is the whole chunk, the delta family's solve
 * ends in a partial row block) and 64 (GLA: 8 sub-chunks; the delta family: 4 row blocks,
 * DeltaProduct 8), T = 150 (a partial last chunk), K = V = 24 (Mamba2's N = 24, P = 20). */
static void chunk_cases(Tally *t, mixc_context *ctx, uint64_t seed) {
  static const char *files[] = {"examples/gla.mix", "examples/gated_delta.mix",
                                "examples/delta_product.mix", "examples/kda.mix",
                                "examples/mamba2.mix"};
  static const int64_t chunks[] = {24, 64};
  static const int64_t sizes[4] = {24, 24, 24, 20};
  for (size_t f = 0; f < sizeof files / sizeof files[0]; f++)
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
      Ex x;
      char err[4200];
      if (!ex_open_opts(&x, ctx, files[f], MIXC_STRATEGY_CHUNK, sizes, 0, chunks[c], err,
                        sizeof err)) {
        result(t, 0, files[f], err);
        ex_close(&x);
        continue;
      }
      snprintf(x.name + strlen(x.name), sizeof x.name - strlen(x.name), " chunk=%lld",
               (long long)chunks[c]);
      Cfg cf = {2, 150, 0, 0, MIXC_F32, L_CONTIG, L_CONTIG, 1, 1, 1, NULL, 0, 0, 0, 0};
      run_case(t, &x, &cf, seed + 37 * f + c, "", NULL, NULL);
      ex_close(&x);
    }
}

/* The parallel strategy (the chunk algorithm over one chunk of 16 to 256 tokens, the call's
 * T rounded up to a power of two) for every family with a chunk form, K = V = 24 (Mamba2's
 * N = 24, P = 20), against the fp64 reference: T in {1, 7, 63, 64, 65, 256} (one chunk) and
 * 300 (chunks of 256), initial and final states, f32 and bf16, a varlen batch; then the
 * variants: one a chunk length, T = 1 and 7 sharing one, 256 and 300 another. */
static void parallel_cases(Tally *t, mixc_context *ctx, uint64_t seed) {
  static const char *files[] = {"examples/gla.mix", "examples/gated_delta.mix",
                                "examples/delta_product.mix", "examples/kda.mix",
                                "examples/mamba2.mix", "examples/retnet.mix",
                                "examples/rwkv7.mix", "examples/linear_attn_norm.mix"};
  static const int64_t sizes[4] = {24, 24, 24, 20};
  static const int64_t Ts[] = {1, 7, 63, 64, 65, 256, 300};
  for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
    Ex x;
    char err[4200];
    if (!ex_open_opts(&x, ctx, files[f], MIXC_STRATEGY_PARALLEL, sizes, 0, 0, err,
                      sizeof err)) {
      result(t, 0, files[f], err);
      ex_close(&x);
      continue;
    }
    for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++) {
      Cfg c = {2, Ts[i], 0, 0, i == 2 ? MIXC_BF16 : MIXC_F32, i % 2 ? L_TRANSPOSE : L_CONTIG,
               L_CONTIG, (int)(i % 3 != 1), 1, 1, NULL, 0, 0, 0, 0};
      run_case(t, &x, &c, seed + 41 * f + i, "", NULL, NULL);
    }
    varlen_case(t, &x, seed + 41 * f + 29, (int)(f % 2));
    ex_close(&x);
  }
  /* the chunk length: options.chunk_size, else the call's T rounded up to a power of two
   * from 16 to 256, else (T unknown) 256 */
  static const struct {
    int64_t chunk, hint, want;
  } pt[] = {{0, 0, 256}, {0, 1, 16},    {0, 16, 16}, {0, 17, 32},
            {0, 200, 256}, {0, 5000, 256}, {40, 7, 40}};
  int pt_ok = 1;
  char pt_err[64] = "";
  for (size_t i = 0; i < sizeof pt / sizeof pt[0]; i++) {
    KernelSpec ks;
    memset(&ks, 0, sizeof ks);
    ks.chunk = pt[i].chunk;
    ks.tokens_hint = pt[i].hint;
    int64_t got = lower_parallel_tokens(&ks);
    if (got != pt[i].want && pt_ok) {
      pt_ok = 0;
      snprintf(pt_err, sizeof pt_err, "chunk %lld, T %lld: %lld", (long long)pt[i].chunk,
               (long long)pt[i].hint, (long long)got);
    }
  }
  result(t, pt_ok, "parallel: chunk length from chunk_size and T", pt_err);
  /* the variants: T = 1 and 7 share the 16-token chunk, 256 and 300 the 256-token one */
  Ex y;
  char err[4200], name[200];
  if (!ex_open_opts(&y, ctx, files[0], MIXC_STRATEGY_PARALLEL, sizes, 0, 0, err, sizeof err)) {
    result(t, 0, files[0], err);
    ex_close(&y);
    return;
  }
  int nv[2] = {0, 0};
  static const int64_t Tv[4] = {1, 7, 256, 300};
  for (int i = 0; i < 4; i++) {
    Cfg c = {1, Tv[i], 0, 0, MIXC_F32, L_CONTIG, L_CONTIG, 1, 1, 1, NULL, 0, 0, 0, 0};
    run_case(t, &y, &c, seed + 97 + i, "", NULL, NULL);
    if (i % 2) mixc_kernel_compile_ms(y.k, &nv[i / 2]);
  }
  snprintf(name, sizeof name, "%s: one variant a chunk length (T 1, 7: 16; T 256, 300: 256)",
           y.name);
  snprintf(err, sizeof err, "%d variants after T = 1, 7; %d after T = 256, 300", nv[0], nv[1]);
  result(t, nv[0] == 1 && nv[1] == 2, name, err);
  ex_close(&y);
}

/* Random mixers of tests/gen_mixer.h (every transition class, outputs before, between and
 * after the updates, lets reading states, grids) through the CPU kernels: the recurrent
 * strategy on a forward and on decode steps, and the auto strategy where it chunks, each
 * against the fp64 reference on fresh inputs (f32: 2e-4 of max |ref|). */
enum { GEN_API_COUNT = 40 };

/* One mixer source (written to `path`) through the recurrent forward and decode steps and,
 * where the auto strategy chunks, the chunk kernel (C = 16), each against the reference;
 * the source is printed when a case fails. */
static void source_case(Tally *t, mixc_context *ctx, const char *path, const char *name,
                        const char *text, const int64_t sizes[4], uint64_t cs, uint64_t seed) {
  char err[4200];
  FILE *f = fopen(path, "w");
  int ok = f && fputs(text, f) >= 0;
  if (f && fclose(f)) ok = 0;
  if (!ok) {
    result(t, 0, name, "cannot write the source");
    return;
  }
  Ex x;
  if (!ex_open_opts(&x, ctx, path, MIXC_STRATEGY_RECURRENT, sizes, 0, 0, err, sizeof err)) {
    result(t, 0, name, err);
    printf("%s", text);
    ex_close(&x);
    return;
  }
  int good = 1;
  if (x.grid) {
    Cfg c = {2, 0, 3, 2, MIXC_F32, L_CONTIG, L_CONTIG, 0, 0, (int)(cs & 1), NULL, 0, 0, 0, 0};
    good &= run_case(t, &x, &c, cs, "generated", NULL, NULL);
  } else {
    Cfg c = {2, 9, 0, 0, MIXC_F32, L_TRANSPOSE, 1, 1, 1, (int)(cs & 1), NULL, 0, 0, 0, 0};
    good &= run_case(t, &x, &c, cs, "generated", NULL, NULL);
    step_case(t, &x, cs + 1);
  }
  /* the auto strategy must lower wherever the recurrent one does (a chunk form that fails
   * to lower is a bug, not a reason to skip the chunk case) */
  Strategy as = STRAT_RECURRENT;
  int64_t vt;
  if (plan_of(&x, STRAT_AUTO, 0, 0, 0, &as, &vt)) {
    char what[96];
    snprintf(what, sizeof what, "%s: the auto strategy lowers", name);
    result(t, 0, what, "lower_mixer failed");
    good = 0;
    as = STRAT_RECURRENT;
  }
  ex_close(&x);
  if (as == STRAT_CHUNK && !x.grid) {
    Ex a;
    if (!ex_open_opts(&a, ctx, path, MIXC_STRATEGY_AUTO, sizes, 0, 16, err, sizeof err)) {
      result(t, 0, name, err);
      good = 0;
    } else {
      snprintf(a.name + strlen(a.name), sizeof a.name - strlen(a.name), " (auto: chunk)");
      Cfg c = {2, 37, 0, 0, MIXC_F32, L_CONTIG, L_CONTIG, 1, 1, 1, NULL, 0, 0, 0, 0};
      good &= run_case(t, &a, &c, cs + 2, "generated", NULL, NULL);
    }
    ex_close(&a);
  }
  if (!good) printf("  (the mixer, seed %" PRIu64 "):\n%s", seed, text);
}

/* Mixers that once failed (found by the random ones), run first: a readout summing two
 * terms over two index variables (the chunk lowering bound only the first's: "readout
 * terms contract different index variables", test_emit_c seed 22). */
static const char *const regress_src[] = {
    "mixer regress0 {\n  dim K, V, P\n  input x0, x1[P], x2[P], x3[P], x4[P], x5[P], x6[P]\n"
    "  param p0[P]\n  state S0[P, P]\n  let l0 = softplus(x0)\n"
    "  S0[i, j] = S0[i, j] * exp(-l0) + x2[i] * x1[j]\n"
    "  output o0[j] = 0.5 * sum(m0, x3[m0] * S0[m0, j]) + sum(m1, x4[m1] * (S0[m1, j] + "
    "p0[m1] * x5[m1] * x6[j]))\n}\n",
};

static void generated_cases(Tally *t, mixc_context *ctx, uint64_t seed) {
  MixcRng rng;
  mixc_rng_seed(&rng, seed);
  char path[] = "/tmp/mixc_gen_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) {
    result(t, 0, "generated mixers: a temporary file", "mkstemp failed");
    return;
  }
  close(fd);
  for (size_t r = 0; r < sizeof regress_src / sizeof regress_src[0]; r++) {
    static const int64_t sizes[4] = {5, 6, 16, 3};
    char name[32];
    snprintf(name, sizeof name, "regress%zu", r);
    source_case(t, ctx, path, name, regress_src[r], sizes, seed + 1000 + r, seed);
  }
  for (int g = 0; g < GEN_API_COUNT; g++) {
    char name[32];
    snprintf(name, sizeof name, "gen%d", g);
    char *text = gen_mixer_text(&rng, name);
    if (!text) {
      result(t, 0, name, "out of memory generating the source");
      continue;
    }
    int64_t sizes[4];
    static const int64_t pick[] = {1, 2, 3, 5, 6, 16};
    for (int k = 0; k < 4; k++) sizes[k] = pick[(int)(mixc_rng_uniform(&rng) * 6)];
    uint64_t cs = (uint64_t)(mixc_rng_uniform(&rng) * 1e15);
    source_case(t, ctx, path, name, text, sizes, cs, seed);
    free(text);
  }
  remove(path);
}

static void test_numerics(Tally *t, mixc_context *ctx, uint64_t seed, const char *only) {
  char *files[128];
  int nf = list_examples(files, 128);
  if (nf == 0) {
    result(t, 0, "numerics: examples/", "none found (run from the source root)");
    return;
  }
  result(t, nf >= 10, "numerics: examples found", NULL);
  Work w;
  memset(&w, 0, sizeof w);
  w.ctx = ctx;
  w.files = files;
  w.nf = nf;
  w.seed = seed;
  w.only = only;
  w.tallies = calloc((size_t)nf + 1, sizeof *w.tallies);
  w.text = calloc((size_t)nf + 1, sizeof *w.text);
  w.len = calloc((size_t)nf + 1, sizeof *w.len);
  if (!w.tallies || !w.text || !w.len || pthread_mutex_init(&w.mu, NULL)) {
    result(t, 0, "numerics: setup", "out of memory");
  } else {
    enum { JOBS = 2 };
    pthread_t th[JOBS];
    int started[JOBS] = {0};
    for (int j = 0; j < JOBS; j++) started[j] = pthread_create(&th[j], NULL, work_main, &w) == 0;
    if (!started[0] && !started[1]) work_main(&w);
    for (int j = 0; j < JOBS; j++)
      if (started[j]) pthread_join(th[j], NULL);
    pthread_mutex_destroy(&w.mu);
    for (int i = 0; i < nf; i++) {
      if (w.text[i]) fwrite(w.text[i], 1, w.len[i], t->out);
      t->pass += w.tallies[i].pass;
      t->fail += w.tallies[i].fail;
      free(w.text[i]);
    }
    fflush(t->out);
  }
  free(w.tallies);
  free(w.text);
  free(w.len);
  for (int i = 0; i < nf; i++) free(files[i]);
  concurrency_case(t, seed + 11);
  if (!only || strstr("split", only)) split_cases(t, seed + 13);
  if (!only || strstr("vtile", only)) vtile_cases(t, seed + 17);
  if (!only || strstr("chunk", only)) chunk_cases(t, ctx, seed + 19);
  if (!only || strstr("parallel", only)) parallel_cases(t, ctx, seed + 29);
  if (!only || strstr("generated", only)) generated_cases(t, ctx, seed + 23);
  /* auto on the CPU: short calls (a decode step) take the recurrent kernel, long ones chunk */
  {
    char err[4200];
    Ex x;
    if (ex_open(&x, ctx, "examples/gla.mix", MIXC_STRATEGY_AUTO, err, sizeof err)) {
      Strategy s1 = STRAT_AUTO, s4 = STRAT_AUTO, s0 = STRAT_AUTO;
      int64_t vt;
      int bad = plan_of_tokens(&x, STRAT_AUTO, 0, 0, 0, 1, &s1, &vt) |
                plan_of_tokens(&x, STRAT_AUTO, 0, 0, 0, LOWER_SHORT_TOKENS_CPU, &s4, &vt) |
                plan_of_tokens(&x, STRAT_AUTO, 0, 0, 0, 0, &s0, &vt);
      snprintf(err, sizeof err, "tokens 1: %s, %d: %s, long: %s", strategy_name(s1),
               (int)LOWER_SHORT_TOKENS_CPU, strategy_name(s4), strategy_name(s0));
      result(t, !bad && s1 == STRAT_RECURRENT && s4 == STRAT_RECURRENT && s0 == STRAT_CHUNK,
             "auto on the CPU: short calls recurrent, long ones chunk", err);
    } else {
      result(t, 0, "auto on the CPU: examples/gla.mix", err);
    }
    ex_close(&x);
  }
  /* A second kernel of the same mixer text finds its variant in the context's cache. */
  {
    char err[4200];
    Ex a, b;
    int ok = ex_open(&a, ctx, "examples/gla.mix", MIXC_STRATEGY_RECURRENT, err, sizeof err) &&
             ex_open(&b, ctx, "examples/gla.mix", MIXC_STRATEGY_RECURRENT, err, sizeof err);
    if (ok) {
      Cfg c = {2, 5, 0, 0, MIXC_F32, L_CONTIG, L_CONTIG, 0, 0, 0, NULL, 0, 0, 0, 0};
      ok = run_case(t, &a, &c, seed + 7, "cache, first kernel", NULL, NULL) &&
           run_case(t, &b, &c, seed + 8, "cache, second kernel", NULL, NULL);
      int nv = 0;
      double ms = mixc_kernel_compile_ms(b.k, &nv);
      snprintf(err, sizeof err, "second kernel: %d variants, %.3f ms compiling", nv, ms);
      result(t, ok && nv == 1 && ms == 0, "cache: a second kernel of one mixer compiles nothing",
             err);
    } else {
      result(t, 0, "cache: two kernels", err);
    }
    ex_close(&a);
    ex_close(&b);
  }
}
#endif

int main(int argc, char **argv) {
  uint64_t seed =
      argc > 1 ? strtoull(argv[1], NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
  const char *only = argc > 2 ? argv[2] : NULL;
  printf("test_api: seed %" PRIu64 " (replay: test_api %" PRIu64 ")\n", seed, seed);
  Tally t = {0, 0, stdout};
  mixc_context *ctx = NULL;
  mixc_error e;
  mixc_status s = mixc_context_create(2, &ctx, &e);
  expect(&t, "context: create (2 threads)", s, &e, MIXC_OK, NULL, NULL);
  {
    mixc_context *c2 = NULL;
    s = mixc_context_create(-1, &c2, &e);
    expect(&t, "context: negative threads", s, &e, MIXC_ERROR_ARGUMENT, "threads = -1", NULL);
  }
  if (ctx) {
    test_arguments(&t, ctx);
#ifdef MIXC_HAVE_LLVM
    test_numerics(&t, ctx, seed, only);
#else
    (void)only;
    printf("skip numerics: this build has no CPU backend (MIXC_LLVM=OFF)\n");
#endif
  }
  mixc_context_destroy(ctx);
  printf("test_api: %d passed, %d failed\n", t.pass, t.fail);
  return t.fail ? 1 : 0;
}
