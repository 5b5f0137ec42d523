/* The standalone CUDA file around a kernel's functions (see cu_driver.h). */
#define _POSIX_C_SOURCE 200809L
#include "cu_driver.h"

#include <stdlib.h>
#include <string.h>

enum { MAXF = 64 }; /* kernels of one module the launcher drives */

typedef struct Drv {
  FILE *f;
  const KernelSpec *sp;
  const KernelPlan *pl;
  const Mixer *mx;
  const char *name;   /* the mixer's name: the prefix of everything the file exports */
  const char *source; /* the .mix file */
  MixcCudaTarget tg;
  MixcCudaLaunch launch[MAXF];
  char fn[MAXF][128]; /* the kernels' C names */
  int64_t items_per;  /* work items per (sequence, head) */
} Drv;

/* A tensor's member name in NAME_args: its mix name, with '_' appended where it would clash
 * with a C or C++ keyword, another member or a name of the file. */
static const char *pname(const Drv *d, int s, char *buf, size_t n) {
  static const char *const taken[] = {
      "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else",
      "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register",
      "restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch",
      "typedef", "union", "unsigned", "void", "volatile", "while", "bool", "true", "false",
      "class", "new", "delete", "this", "template", "typename", "namespace", "using", "public",
      "private", "protected", "virtual", "operator", "friend", "throw", "try", "catch", "and",
      "or", "not", "xor", "bitand", "bitor", "compl", "and_eq", "or_eq", "xor_eq", "not_eq",
      "explicit", "export", "mutable", "asm", "nullptr", "decltype", "constexpr", "noexcept",
      "alignas", "alignof", "static_assert", "thread_local", "char16_t", "char32_t",
      "wchar_t", "dynamic_cast", "static_cast", "const_cast", "reinterpret_cast", "typeid",
      "concept", "requires", "co_await", "co_return", "co_yield", "char8_t", "consteval",
      "constinit", "batch", "seqlen", "heads", "grid_y", "grid_x", "nseqs", "cu_seqlens",
      "workspace", "workspace_bytes"};
  const char *name = d->mx->syms[s].name;
  size_t l = strlen(name);
  int clash = !strncmp(name, "mixc", 4) || (l >= 8 && !strcmp(name + l - 8, "_strides")) ||
              (l >= 8 && !strcmp(name + l - 8, "_initial")) ||
              (l >= 6 && !strcmp(name + l - 6, "_final")) || name[0] == '_';
  for (size_t i = 0; i < sizeof taken / sizeof taken[0]; i++) clash |= !strcmp(name, taken[i]);
  snprintf(buf, n, "%s%s", name, clash ? "_" : "");
  return buf;
}

static const char *ctype(KType t) { return t == KT_F32 ? "float" : "uint16_t"; }
static int esize(KType t) { return t == KT_F32 ? 4 : 2; }

static const char *dtype_word(KType t) {
  return t == KT_BF16 ? "bf16 (uint16_t bits)" : t == KT_F16 ? "f16 (uint16_t bits)" : "f32";
}

static int is_data(const Drv *d, int s) {
  const Sym *y = &d->mx->syms[s];
  return d->pl->ptr[s] >= 0 &&
         (y->kind == SYM_INPUT || y->kind == SYM_OUTPUT || y->kind == SYM_PARAM);
}

/* The extents of symbol s's layout as C expressions over the launcher's locals (nb, nt, nh,
 * nn, ny, nx), outermost first; with text != NULL, the layout as documentation. Returns the
 * rank. */
static int extents(const Drv *d, int s, int state, char ext[][32], char *text, size_t tn) {
  const Sym *y = &d->mx->syms[s];
  int n = 0;
  const char *doc[24];
  char dimtxt[MIXC_MAX_RANK][32];
#define PUT(e, w) (snprintf(ext[n], 32, "%s", e), doc[n++] = (w))
  if (state) {
    PUT("nn", d->sp->varlen ? "nseqs" : "batch");
    PUT("nh", "heads");
  } else if (y->kind == SYM_PARAM) {
    PUT("nh", "heads");
  } else {
    PUT("nb", "batch");
    if (d->mx->ngrid) {
      PUT("ny", "grid_y");
      PUT("nx", "grid_x");
    } else {
      PUT("nt", "seqlen");
    }
    PUT("nh", "heads");
    if (y->per_direction) {
      snprintf(dimtxt[0], sizeof dimtxt[0], "%d", d->mx->ndirs > 0 ? d->mx->ndirs : 1);
      PUT(dimtxt[0], "ndir");
    }
  }
  for (int i = 0; i < y->rank && n < 20; i++) {
    char v[32];
    snprintf(v, sizeof v, "%lld", (long long)d->sp->dims[y->shape[i]]);
    PUT(v, d->mx->syms[y->shape[i]].name);
  }
#undef PUT
  if (text) {
    size_t used = 0;
    for (int i = 0; i < n && used < tn; i++)
      used += (size_t)snprintf(text + used, tn - used, "%s%s", i ? ", " : "[", doc[i]);
    if (used < tn) snprintf(text + used, tn - used, "]");
  }
  return n;
}

static int64_t state_feat(const Drv *d, int s) {
  const Sym *y = &d->mx->syms[s];
  int64_t feat = 1;
  for (int i = 0; i < y->rank; i++) feat *= d->sp->dims[y->shape[i]];
  return feat;
}

/* The sizes of NAME_args, as member declarations and as documentation. */
static const char *size_names(const Drv *d) {
  return d->mx->ngrid ? "batch, grid_y, grid_x, heads" : "batch, seqlen, heads";
}

static void put_comment(FILE *f, const char *s) {
  for (; *s; s++) fputc((s[0] == '*' && s[1] == '/') || *s == '\n' ? ' ' : *s, f);
}

static void header(const Drv *d) {
  FILE *f = d->f;
  const char *N = d->name;
  const KModule *m = d->pl->mod;
  char tname[16];
  snprintf(tname, sizeof tname, "sm_%d%s", d->tg.arch, d->tg.arch >= 90 ? "a" : "");
  fprintf(f, "/* Generated by mixc from ");
  put_comment(f, d->source);
  fprintf(f, ": mixer %s, strategy %s", N, strategy_name(d->pl->strategy));
  const int chunked = d->pl->strategy == STRAT_CHUNK || d->pl->strategy == STRAT_PARALLEL;
  if (chunked && d->pl->chunk > 0)
    fprintf(f, " (chunk length %lld)", (long long)d->pl->chunk);
  else if (chunked && d->sp->chunk > 0)
    fprintf(f, " (chunk length %lld)", (long long)d->sp->chunk);
  fprintf(f, ", CUDA C++.\n * Built for:");
  for (int s = 0; s < d->mx->nsyms; s++)
    if (d->mx->syms[s].kind == SYM_DIM)
      fprintf(f, " %s = %lld", d->mx->syms[s].name, (long long)d->sp->dims[s]);
  fprintf(f, "; compute capability %d.%d (%d bytes of opt-in shared memory a block).\n",
          d->tg.arch / 10, d->tg.arch % 10, d->tg.max_smem_optin);
  fprintf(f,
          " * Compile with nvcc alone (no mixc header or library), e.g.\n"
          " *   nvcc -O3 -arch=%s -c %s.cu\n"
          " * and link the object with the CUDA runtime (nvcc links it; with another linker add\n"
          " * -lcudart). To call it from another file, C or C++, copy %s_args and the\n"
          " * prototypes below (they have C linkage).\n *\n",
          tname, N, N);
  fprintf(f, " * Entry points:\n *\n"
             " *   cudaError_t %s_forward(const %s_args *a, cudaStream_t stream, char *err,\n"
             " *                          size_t errlen);\n"
             " *   size_t %s_workspace_size(const %s_args *a);\n *\n",
          N, N, N, N);
  fprintf(f, " * %s_args (defined below) holds, for each tensor, a device pointer and `_strides`:\n"
             " * the strides in elements, one per dim of the layout (any values: a view's strides),\n"
             " * or NULL for contiguous C order. Layouts:\n *\n",
          N);
  for (int s = 0; s < d->mx->nsyms; s++) {
    const Sym *y = &d->mx->syms[s];
    char lay[256], ext[24][32], nb[160];
    if (is_data(d, s)) {
      extents(d, s, 0, ext, lay, sizeof lay);
      fprintf(f, " *   %-12s %-6s %s %s\n", pname(d, s, nb, sizeof nb), sym_kind_name(y->kind),
              lay, dtype_word(d->sp->dtype[s]));
    } else if (y->kind == SYM_PARAM) {
      fprintf(f, " *   %-12s param  built in: its default\n", y->name);
    }
  }
  for (int s = 0; s < d->mx->nsyms; s++) {
    char lay[256], ext[24][32], nb[160];
    if (d->pl->state_in[s] < 0 && d->pl->state_out[s] < 0) continue;
    extents(d, s, 1, ext, lay, sizeof lay);
    pname(d, s, nb, sizeof nb);
    if (d->pl->state_in[s] >= 0)
      fprintf(f, " *   %s_initial %*sstate  %s f32, read; NULL: zeros\n", nb,
              (int)(strlen(nb) + 8 < 12 ? 12 - strlen(nb) - 8 : 0), "", lay);
    if (d->pl->state_out[s] >= 0)
      fprintf(f, " *   %s_final %*sstate  %s f32, written; NULL: not wanted\n", nb,
              (int)(strlen(nb) + 6 < 12 ? 12 - strlen(nb) - 6 : 0), "", lay);
  }
  if (d->sp->varlen)
    fprintf(f, " *   cu_seqlens   %s [nseqs + 1] device memory: sequence n is tokens\n"
               " *                cu_seqlens[n] to cu_seqlens[n + 1] - 1 of the packed batch "
               "(batch = 1);\n"
               " *                not checked: it must start at 0, not decrease and end at "
               "seqlen\n",
            d->sp->cu_type == KT_I32 ? "int32_t" : "int64_t");
  fprintf(f, " *\n * then the sizes (int64_t) %s%s, then void *workspace and size_t\n"
             " * workspace_bytes. Every member is 8 bytes: pairs of (pointer, strides) in the order\n"
             " * above, then %ssizes, workspace.\n *\n",
          d->sp->varlen ? "nseqs (the number of sequences in cu_seqlens), " : "", size_names(d),
          d->sp->varlen ? "(cu_seqlens, nseqs), " : "");
  fprintf(f,
          " * %s_forward checks the arguments, puts them in the kernels' argument tables and\n"
          " * launches the kernels on `stream` (0: the legacy default stream), in order; it does not\n"
          " * synchronise, so a fault inside a kernel surfaces at the next synchronisation.\n"
          " * Returns cudaSuccess; cudaErrorInvalidValue for a bad argument (a NULL or misaligned\n"
          " * pointer, a negative size, a workspace too small); or the CUDA error of an allocation,\n"
          " * a shared memory setting or a launch. On an error, err (may be NULL) gets a one-line\n"
          " * message of at most errlen bytes naming the argument.\n *\n",
          N);
  fprintf(f,
          " * Workspace: device memory for the kernels' scratch, zeros for each NULL _initial and\n"
          " * room for each NULL _final. With a->workspace NULL, %s_forward allocates\n"
          " * %s_workspace_size(a) bytes with cudaMallocAsync on the stream and frees them with\n"
          " * cudaFreeAsync after the kernels (stream-ordered: no synchronisation). Else\n"
          " * a->workspace (256-byte aligned, a->workspace_bytes long) is used: all work items run\n"
          " * in one launch when it holds %s_workspace_size(a) bytes; a smaller one that holds the\n"
          " * states' part and one work item's scratch runs them in several launches. One\n"
          " * workspace must not serve two calls that may run at once (two streams).\n *\n",
          N, N, N);
  char vt[32] = "";
  if (d->items_per > 1) snprintf(vt, sizeof vt, " * %lld", (long long)d->items_per);
  fprintf(f,
          " * Lower level: %s_launch(ptrs, ints, items, scratch, scratch_floats, stream, err,\n"
          " * errlen) runs the kernels on the argument tables below (pointers to device memory,\n"
          " * any strides; ptrs and ints are host arrays) over items = N * H%s work items (N:\n"
          " * sequences, H: heads%s), with scratch (device memory, 16-byte aligned) of\n"
          " * scratch_floats floats; it needs %s_SCRATCH_FLOATS floats per work item and runs\n"
          " * the items in several launches when there are fewer.\n *\n",
          N, vt,
          d->pl->segs > 1 ? ", times the value tiles and the sequence segments of the split"
          : d->items_per > 1 ? ", times the value tiles" : "",
          N);
  fprintf(f, " * Kernels:\n");
  for (int i = 0; i < m->nfuncs; i++)
    fprintf(f, " *   %s: %u threads a block, %u bytes of dynamic shared memory, %lld floats of "
               "%s\n",
            d->fn[i], d->launch[i].threads, d->launch[i].smem_bytes,
            (long long)(d->launch[i].item_floats > 0 ? d->launch[i].item_floats
                                                     : d->launch[i].global_scratch_floats),
            d->launch[i].item_floats > 0 ? "scratch per item, kept across the kernels (the "
                                           "scratch must hold every item's)"
                                         : "scratch per item");
  fprintf(f, " * Argument tables: ptrs[%d], ints[%d]:\n", m->nptrs, m->nints);
  for (int i = 0; i < m->nslots; i++) {
    const KSlot *sl = &m->slots[i];
    fprintf(f, " *   %s[%d] = ", sl->kind == KSL_PTR ? "ptrs" : "ints", sl->index);
    put_comment(f, sl->what ? sl->what : "");
    fputc('\n', f);
  }
  fprintf(f, " */\n#include <cuda_runtime.h>\n#include <stdarg.h>\n#include <stddef.h>\n"
             "#include <stdint.h>\n#include <stdio.h>\n#include <string.h>\n");
}

/* The macros the kernel text defines: pushed and undefined before it, popped after, so the
 * kernels see their own and the host code (and a second file in the same translation unit)
 * the headers'. */
static int macro_names(const char *text, char (*names)[64], int cap) {
  int n = 0;
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
    const char *q = p;
    while (*q == ' ' || *q == '\t') q++;
    if (*q != '#') continue;
    q++;
    while (*q == ' ' || *q == '\t') q++;
    if (strncmp(q, "define", 6) || (q[6] != ' ' && q[6] != '\t')) continue;
    q += 6;
    while (*q == ' ' || *q == '\t') q++;
    size_t l = 0;
    while ((q[l] >= 'a' && q[l] <= 'z') || (q[l] >= 'A' && q[l] <= 'Z') ||
           (q[l] >= '0' && q[l] <= '9') || q[l] == '_')
      l++;
    if (l == 0 || l >= 64) continue;
    int seen = 0;
    for (int i = 0; i < n && !seen; i++) seen = strlen(names[i]) == l && !strncmp(names[i], q, l);
    if (seen) continue;
    if (n >= cap) return -1;
    memcpy(names[n], q, l);
    names[n++][l] = 0;
  }
  return n;
}

/* The arguments struct and its pieces. */
static void args_struct(const Drv *d) {
  FILE *f = d->f;
  const char *N = d->name;
  fprintf(f, "\nextern \"C\" {\n\n/* The arguments of %s_forward (see the top of the file). */\n"
             "typedef struct %s_args {\n",
          N, N);
  for (int s = 0; s < d->mx->nsyms; s++) {
    const Sym *y = &d->mx->syms[s];
    char nb[160], lay[256], ext[24][32];
    if (!is_data(d, s)) continue;
    extents(d, s, 0, ext, lay, sizeof lay);
    pname(d, s, nb, sizeof nb);
    fprintf(f, "  %s%s *%s;\n  const int64_t *%s_strides; /* %s %s %s */\n",
            y->kind == SYM_OUTPUT ? "" : "const ", ctype(d->sp->dtype[s]), nb, nb,
            sym_kind_name(y->kind), lay, dtype_word(d->sp->dtype[s]));
  }
  for (int s = 0; s < d->mx->nsyms; s++) {
    char nb[160], lay[256], ext[24][32];
    if (d->pl->state_in[s] < 0 && d->pl->state_out[s] < 0) continue;
    extents(d, s, 1, ext, lay, sizeof lay);
    pname(d, s, nb, sizeof nb);
    if (d->pl->state_in[s] >= 0)
      fprintf(f, "  const float *%s_initial;\n  const int64_t *%s_initial_strides; /* %s f32; "
                 "NULL: zeros */\n", nb, nb, lay);
    if (d->pl->state_out[s] >= 0)
      fprintf(f, "  float *%s_final;\n  const int64_t *%s_final_strides; /* %s f32; NULL: not "
                 "wanted */\n", nb, nb, lay);
  }
  if (d->sp->varlen)
    fprintf(f, "  const %s *cu_seqlens; /* [nseqs + 1], device memory */\n  int64_t nseqs;\n",
            d->sp->cu_type == KT_I32 ? "int32_t" : "int64_t");
  if (d->mx->ngrid)
    fprintf(f, "  int64_t batch, grid_y, grid_x, heads;\n");
  else
    fprintf(f, "  int64_t batch, seqlen, heads;\n");
  fprintf(f, "  void *workspace;        /* NULL: allocated on the stream */\n"
             "  size_t workspace_bytes;\n} %s_args;\n\n", N);
  int64_t per = 0;
  int all = 0;
  for (int i = 0; i < d->pl->mod->nfuncs; i++) {
    if (d->launch[i].global_scratch_floats > per) per = d->launch[i].global_scratch_floats;
    if (d->launch[i].item_floats > per) per = d->launch[i].item_floats;
    all |= d->launch[i].item_floats > 0;
  }
  per = (per + 3) / 4 * 4; /* each item's scratch 16-byte aligned */
  fprintf(f, "/* Scratch per work item of %s_launch, floats; SCRATCH_ALL_ITEMS 1: the kernels pass "
             "data\n * through it, so it must hold every item's (one piece). */\n"
             "#define %s_SCRATCH_FLOATS %lldLL\n#define %s_SCRATCH_ALL_ITEMS %d\n\n",
          N, N, (long long)per, N, all);
  fprintf(f,
          "size_t %s_workspace_size(const %s_args *a);\n"
          "cudaError_t %s_forward(const %s_args *a, cudaStream_t stream, char *err, size_t errlen);\n"
          "cudaError_t %s_launch(void *const *ptrs, const int64_t *ints, int64_t items, float "
          "*scratch,\n"
          "                      int64_t scratch_floats, cudaStream_t stream, char *err, size_t "
          "errlen);\n\n} /* extern \"C\" */\n",
          N, N, N, N, N);
}

static void helpers(const Drv *d) {
  FILE *f = d->f;
  const char *N = d->name;
  fprintf(f,
          "\n/* A message into err, and e back. */\n"
          "static cudaError_t %s_fail(char *err, size_t errlen, cudaError_t e, const char *fmt, "
          "...) {\n"
          "  if (err && errlen) {\n    va_list ap;\n    va_start(ap, fmt);\n"
          "    vsnprintf(err, errlen, fmt, ap);\n    va_end(ap);\n  }\n  return e;\n}\n\n",
          N);
  fprintf(f,
          "/* A CUDA error in words, with what to do for the two that mean \"no GPU here\". */\n"
          "static const char *%s_why(cudaError_t e) {\n"
          "  if (e == cudaErrorInsufficientDriver)\n"
          "    return \"no CUDA driver, or one older than this file's CUDA runtime (is this a "
          "machine with an NVIDIA GPU and its driver?)\";\n"
          "  if (e == cudaErrorNoDevice)\n"
          "    return \"no CUDA device (none present, or hidden by CUDA_VISIBLE_DEVICES)\";\n"
          "  return cudaGetErrorString(e);\n}\n\n"
          "/* A tensor's strides into ints: the given ones, or contiguous C order. */\n"
          "static void %s_strides(int64_t *ints, const int64_t *given, const int64_t *ext, int "
          "rank) {\n"
          "  int64_t st = 1;\n"
          "  for (int i = rank - 1; i >= 0; i--) {\n"
          "    ints[i] = given ? given[i] : st;\n    st *= ext[i];\n  }\n}\n\n",
          N, N);
}

static void launcher(const Drv *d) {
  FILE *f = d->f;
  const char *N = d->name;
  const KModule *m = d->pl->mod;
  int np = m->nptrs > 0 ? m->nptrs : 1, ni = m->nints > 0 ? m->nints : 1;
  fprintf(f,
          "cudaError_t %s_launch(void *const *ptrs, const int64_t *ints, int64_t items, float "
          "*scratch,\n"
          "                      int64_t scratch_floats, cudaStream_t stream, char *err, size_t "
          "errlen) {\n"
          "  const int64_t per = %s_SCRATCH_FLOATS;\n"
          "  if (!ptrs || !ints)\n"
          "    return %s_fail(err, errlen, cudaErrorInvalidValue, \"%s_launch: ptrs or ints is "
          "NULL\");\n"
          "  if (items < 0)\n"
          "    return %s_fail(err, errlen, cudaErrorInvalidValue, \"%s_launch: items = %%lld is "
          "negative\",\n"
          "                   (long long)items);\n"
          "  if (items == 0) return cudaSuccess;\n"
          "  int64_t step = per > 0 ? (scratch ? scratch_floats / per : 0) : items;\n"
          "  if (%s_SCRATCH_ALL_ITEMS && step < items)\n"
          "    return %s_fail(err, errlen, cudaErrorInvalidValue,\n"
          "                   \"%s_launch: scratch of %%lld floats%%s: these kernels need %%lld \"\n"
          "                   \"for %%lld items\", (long long)scratch_floats, scratch ? \"\" : \" (NULL)\",\n"
          "                   (long long)(per * items), (long long)items);\n"
          "  if (step < 1)\n"
          "    return %s_fail(err, errlen, cudaErrorInvalidValue,\n"
          "                   \"%s_launch: scratch of %%lld floats%%s: one work item needs "
          "%%lld\",\n"
          "                   (long long)scratch_floats, scratch ? \"\" : \" (NULL)\", (long "
          "long)per);\n"
          "  if ((uintptr_t)scratch %% 16)\n"
          "    return %s_fail(err, errlen, cudaErrorInvalidValue, \"%s_launch: scratch is not "
          "16-byte aligned\");\n"
          "  if (step > 2147483647) step = 2147483647; /* gridDim.x */\n"
          "  cudaError_t e;\n",
          N, N, N, N, N, N, N, N, N, N, N, N, N);
  for (int i = 0; i < m->nfuncs; i++) {
    const MixcCudaLaunch *L = &d->launch[i];
    const char *k = d->fn[i];
    fprintf(f, "  {\n    %s_kernels::MixcArgs_%s ka;\n", N, k);
    fprintf(f, "    for (int i = 0; i < %d; i++) ka.ptrs[i] = %s;\n", np,
            m->nptrs > 0 ? "ptrs[i]" : "NULL");
    fprintf(f, "    for (int i = 0; i < %d; i++) ka.ints[i] = %s;\n", ni,
            m->nints > 0 ? "(long long)ints[i]" : "0");
    fprintf(f, "    const void *fn = (const void *)%s_kernels::%s;\n", N, k);
    if (L->smem_bytes > 48 * 1024)
      fprintf(f,
              "    e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, %u);\n"
              "    if (e != cudaSuccess)\n"
              "      return %s_fail(err, errlen, e,\n"
              "                     \"%s_launch: kernel %s needs %u bytes of shared memory a block: "
              "%%s\",\n"
              "                     %s_why(e));\n",
              L->smem_bytes, N, N, k, L->smem_bytes, N);
    fprintf(f,
            "    for (int64_t b = 0; b < items; b += step) {\n"
            "      long long begin = b, end = items - b < step ? items : b + step;\n"
            "      float *scr = %s;\n"
            "      void *params[4] = {&ka, &begin, &end, &scr};\n"
            "      e = cudaLaunchKernel(fn, dim3((unsigned)(end - begin)), dim3(%u), params, %u, "
            "stream);\n"
            "      if (e != cudaSuccess)\n"
            "        return %s_fail(err, errlen, e, \"%s_launch: launching kernel %s (%%lld blocks "
            "of %u threads, %u bytes of shared memory): %%s\",\n"
            "                       end - begin, %s_why(e));\n"
            "    }\n  }\n",
            L->global_scratch_floats > 0 || L->item_floats > 0 ? "scratch" : "NULL", L->threads, L->smem_bytes, N, N,
            k, L->threads, L->smem_bytes, N);
  }
  fprintf(f, "  (void)e;\n  return cudaSuccess;\n}\n");
}

/* NAME_layout: the workspace's regions (zeros for NULL initial states, room for NULL final
 * states, the scratch), 256-byte aligned; returns the bytes of all of it and, in *min, of the
 * states' part and one work item's scratch. */
static void layout_fn(const Drv *d) {
  FILE *f = d->f;
  const char *N = d->name;
  fprintf(f,
          "\n/* The workspace: off[2 * state] zeros for a NULL _initial, off[2 * state + 1] "
          "room for a\n"
          " * NULL _final (or SIZE_MAX: not used), then the scratch at *scratch_off. Returns "
          "the bytes\n"
          " * with one launch for all items; *min: the least that works. */\n"
          "static size_t %s_layout(const %s_args *a, size_t *off, size_t *scratch_off, size_t "
          "*min) {\n"
          "  const int64_t nh = a->heads > 0 ? a->heads : 0;\n",
          N, N);
  if (d->sp->varlen)
    fprintf(f, "  const int64_t nn = a->nseqs > 0 ? a->nseqs : 0;\n");
  else
    fprintf(f, "  const int64_t nn = a->batch > 0 ? a->batch : 0;\n");
  fprintf(f, "  size_t used = 0;\n  (void)off;\n");
  int k = 0;
  for (int s = 0; s < d->mx->nsyms; s++) {
    char nb[160];
    if (d->pl->state_in[s] < 0 && d->pl->state_out[s] < 0) continue;
    pname(d, s, nb, sizeof nb);
    long long feat = (long long)state_feat(d, s);
    if (d->pl->state_in[s] >= 0)
      fprintf(f,
              "  off[%d] = SIZE_MAX;\n  if (!a->%s_initial) {\n    off[%d] = used;\n"
              "    used += ((size_t)(nn * nh * %lldLL) * sizeof(float) + 255) / 256 * 256;\n  }\n",
              2 * k, nb, 2 * k, feat);
    if (d->pl->state_out[s] >= 0)
      fprintf(f,
              "  off[%d] = SIZE_MAX;\n  if (!a->%s_final) {\n    off[%d] = used;\n"
              "    used += ((size_t)(nn * nh * %lldLL) * sizeof(float) + 255) / 256 * 256;\n  }\n",
              2 * k + 1, nb, 2 * k + 1, feat);
    k++;
  }
  fprintf(f,
          "  *scratch_off = used;\n"
          "  const size_t all = (size_t)(nn * nh * %lldLL) * (size_t)%s_SCRATCH_FLOATS * "
          "sizeof(float);\n"
          "  *min = used + (%s_SCRATCH_ALL_ITEMS ? all\n"
          "                 : nn * nh > 0 ? (size_t)%s_SCRATCH_FLOATS * sizeof(float) : 0);\n"
          "  return used + all;\n}\n",
          (long long)d->items_per, N, N, N);
  fprintf(f,
          "\nsize_t %s_workspace_size(const %s_args *a) {\n"
          "  size_t off[%d], so, mn;\n"
          "  return a ? %s_layout(a, off, &so, &mn) : 0;\n}\n",
          N, N, 2 * (k > 0 ? k : 1), N);
}

static void forward(const Drv *d) {
  FILE *f = d->f;
  const char *N = d->name;
  const KernelPlan *pl = d->pl;
  const KModule *m = pl->mod;
  int nstates = 0;
  for (int s = 0; s < d->mx->nsyms; s++)
    nstates += pl->state_in[s] >= 0 || pl->state_out[s] >= 0;
  fprintf(f,
          "\ncudaError_t %s_forward(const %s_args *a, cudaStream_t stream, char *err, size_t "
          "errlen) {\n"
          "  void *ptrs[%d];\n  int64_t ints[%d];\n"
          "  memset(ptrs, 0, sizeof ptrs);\n  memset(ints, 0, sizeof ints);\n"
          "  if (!a) return %s_fail(err, errlen, cudaErrorInvalidValue, \"%s_forward: a is "
          "NULL\");\n",
          N, N, m->nptrs + 1, m->nints + 1, N, N);
  /* sizes */
  if (d->mx->ngrid)
    fprintf(f, "  const int64_t nb = a->batch, ny = a->grid_y, nx = a->grid_x, nh = a->heads, "
               "nt = ny * nx;\n");
  else
    fprintf(f, "  const int64_t nb = a->batch, nt = a->seqlen, nh = a->heads;\n");
  const char *sz[4] = {"batch", d->mx->ngrid ? "grid_y" : "seqlen",
                       d->mx->ngrid ? "grid_x" : "heads", "heads"};
  const char *var[4] = {"nb", d->mx->ngrid ? "ny" : "nt", d->mx->ngrid ? "nx" : "nh", "nh"};
  for (int i = 0; i < (d->mx->ngrid ? 4 : 3); i++)
    fprintf(f,
            "  if (%s < 0 || %s > ((int64_t)1 << 40))\n"
            "    return %s_fail(err, errlen, cudaErrorInvalidValue, \"%s_forward: %s = %%lld is "
            "out of range [0, 2^40]\",\n"
            "                   (long long)%s);\n",
            var[i], var[i], N, N, sz[i], var[i]);
  if (d->sp->varlen) {
    fprintf(f,
            "  const int64_t nn = a->nseqs;\n"
            "  if (!a->cu_seqlens)\n"
            "    return %s_fail(err, errlen, cudaErrorInvalidValue, \"%s_forward: cu_seqlens is "
            "NULL\");\n"
            "  if ((uintptr_t)a->cu_seqlens %% sizeof *a->cu_seqlens)\n"
            "    return %s_fail(err, errlen, cudaErrorInvalidValue, \"%s_forward: cu_seqlens is "
            "not aligned to %%d bytes\",\n"
            "                   (int)sizeof *a->cu_seqlens);\n"
            "  if (nn < 1 || nn > ((int64_t)1 << 40))\n"
            "    return %s_fail(err, errlen, cudaErrorInvalidValue, \"%s_forward: nseqs = %%lld: "
            "cu_seqlens needs at least one sequence\",\n"
            "                   (long long)nn);\n"
            "  if (nb != 1)\n"
            "    return %s_fail(err, errlen, cudaErrorInvalidValue, \"%s_forward: batch = %%lld: "
            "with cu_seqlens the sequences are packed along seqlen, batch must be 1\",\n"
            "                   (long long)nb);\n",
            N, N, N, N, N, N, N, N);
  } else {
    fprintf(f, "  const int64_t nn = nb;\n");
  }
  fprintf(f, "  (void)nt;\n");
  if (d->mx->ngrid) fprintf(f, "  (void)ny;\n  (void)nx;\n");
  /* tensors */
  for (int s = 0; s < d->mx->nsyms; s++) {
    char nb[160], ext[24][32];
    if (!is_data(d, s)) continue;
    pname(d, s, nb, sizeof nb);
    int es = esize(d->sp->dtype[s]);
    fprintf(f,
            "  if (!a->%s)\n"
            "    return %s_fail(err, errlen, cudaErrorInvalidValue, \"%s_forward: %s (%s) is "
            "NULL\");\n"
            "  if ((uintptr_t)a->%s %% %d)\n"
            "    return %s_fail(err, errlen, cudaErrorInvalidValue, \"%s_forward: %s is not "
            "aligned to %d bytes\");\n",
            nb, N, N, nb, sym_kind_name(d->mx->syms[s].kind), nb, es, N, N, nb, es);
    int r = extents(d, s, 0, ext, NULL, 0);
    fprintf(f, "  ptrs[%d] = (void *)a->%s;\n  {\n    const int64_t ext[%d] = {", pl->ptr[s], nb,
            r);
    for (int i = 0; i < r; i++) fprintf(f, "%s%s", i ? ", " : "", ext[i]);
    fprintf(f, "};\n    %s_strides(ints + %d, a->%s_strides, ext, %d);\n  }\n", N, pl->stride[s],
            nb, r);
  }
  fprintf(f, "  size_t off[%d], scratch_off, min_bytes;\n", 2 * (nstates > 0 ? nstates : 1));
  fprintf(f, "  size_t need = %s_layout(a, off, &scratch_off, &min_bytes);\n", N);
  fprintf(f,
          "  char *ws = (char *)a->workspace;\n  size_t ws_bytes = a->workspace_bytes;\n"
          "  cudaError_t e = cudaSuccess;\n"
          "  if (ws && ws_bytes < min_bytes)\n"
          "    return %s_fail(err, errlen, cudaErrorInvalidValue,\n"
          "                   \"%s_forward: workspace_bytes = %%zu: this call needs at least %%zu "
          "(%%zu for one launch: %s_workspace_size)\",\n"
          "                   ws_bytes, min_bytes, need);\n"
          "  if (ws && (uintptr_t)ws %% 256)\n"
          "    return %s_fail(err, errlen, cudaErrorInvalidValue, \"%s_forward: workspace is not "
          "256-byte aligned\");\n"
          "  int own = 0;\n"
          "  if (!ws && need > 0) {\n"
          "    void *p = NULL;\n"
          "    e = cudaMallocAsync(&p, need, stream);\n"
          "    if (e != cudaSuccess)\n"
          "      return %s_fail(err, errlen, e, \"%s_forward: cudaMallocAsync of %%zu bytes "
          "(the workspace) failed: %%s\",\n"
          "                     need, %s_why(e));\n"
          "    ws = (char *)p;\n    ws_bytes = need;\n    own = 1;\n  }\n",
          N, N, N, N, N, N, N, N);
  int k = 0;
  for (int s = 0; s < d->mx->nsyms; s++) {
    char nb[160], ext[24][32];
    if (pl->state_in[s] < 0 && pl->state_out[s] < 0) continue;
    pname(d, s, nb, sizeof nb);
    int r = extents(d, s, 1, ext, NULL, 0);
    fprintf(f, "  {\n    const int64_t ext[%d] = {", r);
    for (int i = 0; i < r; i++) fprintf(f, "%s%s", i ? ", " : "", ext[i]);
    fprintf(f, "};\n");
    if (pl->state_in[s] >= 0) {
      fprintf(f,
              "    if (a->%s_initial && (uintptr_t)a->%s_initial %% 4)\n"
              "      e = %s_fail(err, errlen, cudaErrorInvalidValue, \"%s_forward: %s_initial is "
              "not aligned to 4 bytes\");\n"
              "    ptrs[%d] = a->%s_initial ? (void *)a->%s_initial : (void *)(ws + off[%d]);\n"
              "    %s_strides(ints + %d, a->%s_initial ? a->%s_initial_strides : NULL, ext, %d);\n"
              "    if (e == cudaSuccess && !a->%s_initial && nn * nh > 0) {\n"
              "      e = cudaMemsetAsync(ws + off[%d], 0, (size_t)(nn * nh * %lldLL) * "
              "sizeof(float), stream);\n"
              "      if (e != cudaSuccess)\n"
              "        %s_fail(err, errlen, e, \"%s_forward: zeroing %s's initial state: %%s\", "
              "%s_why(e));\n"
              "    }\n",
              nb, nb, N, N, nb, pl->state_in[s], nb, nb, 2 * k, N, pl->state_in_stride[s], nb,
              nb, r, nb, 2 * k, (long long)state_feat(d, s), N, N, nb, N);
    }
    if (pl->state_out[s] >= 0)
      fprintf(f,
              "    if (a->%s_final && (uintptr_t)a->%s_final %% 4)\n"
              "      e = %s_fail(err, errlen, cudaErrorInvalidValue, \"%s_forward: %s_final is "
              "not aligned to 4 bytes\");\n"
              "    ptrs[%d] = a->%s_final ? (void *)a->%s_final : (void *)(ws + off[%d]);\n"
              "    %s_strides(ints + %d, a->%s_final ? a->%s_final_strides : NULL, ext, %d);\n",
              nb, nb, N, N, nb, pl->state_out[s], nb, nb, 2 * k + 1, N, pl->state_out_stride[s],
              nb, nb, r);
    fprintf(f, "  }\n");
    k++;
  }
  if (d->sp->varlen) fprintf(f, "  ptrs[%d] = (void *)a->cu_seqlens;\n", pl->cu_seqlens);
  if (d->mx->ngrid) fprintf(f, "  ints[%d] = ny;\n  ints[%d] = nx;\n", pl->size_Y, pl->size_X);
  fprintf(f, "  ints[%d] = nb;\n  ints[%d] = nt;\n  ints[%d] = nh;\n  ints[%d] = nn;\n",
          pl->size_B, pl->size_T, pl->size_H, pl->size_N);
  fprintf(f,
          "  if (e == cudaSuccess)\n"
          "    e = %s_launch(ptrs, ints, nn * nh * %lldLL, (float *)(ws + scratch_off),\n"
          "                  (int64_t)((ws_bytes - scratch_off) / sizeof(float)), stream, err, "
          "errlen);\n"
          "  if (own) {\n"
          "    cudaError_t e2 = cudaFreeAsync(ws, stream);\n"
          "    if (e == cudaSuccess && e2 != cudaSuccess)\n"
          "      e = %s_fail(err, errlen, e2, \"%s_forward: cudaFreeAsync of the workspace: %%s\", "
          "%s_why(e2));\n"
          "  }\n"
          "  return e;\n}\n",
          N, (long long)d->items_per, N, N, N);
}

int mixc_emit_cuda_file(FILE *out, const char *source, const KernelSpec *spec,
                        const KernelPlan *plan, const MixcCudaTarget *t, char *err,
                        size_t errlen) {
  Drv *d = calloc(1, sizeof *d);
  char *text = NULL;
  size_t len = 0;
  int rc = 1;
  if (!d) {
    snprintf(err, errlen, "out of memory");
    return 1;
  }
  d->f = out;
  d->sp = spec;
  d->pl = plan;
  d->mx = spec->rm->mixer;
  d->name = spec->rm->name;
  d->source = source ? source : "(unnamed)";
  d->tg.arch = t ? t->arch : MIXC_CU_DEFAULT_ARCH;
  d->tg.max_smem_optin = t ? t->max_smem_optin : MIXC_CU_DEFAULT_SMEM_OPTIN;
  d->items_per = (plan->vtiles > 1 ? plan->vtiles : 1) * (plan->segs > 1 ? plan->segs : 1);
  const KModule *m = plan->mod;
  if (!m || m->nfuncs < 1 || m->nfuncs > MAXF) {
    snprintf(err, errlen, "standalone CUDA: the plan has %d kernel functions (1 to %d supported)",
             m ? m->nfuncs : 0, MAXF);
    goto done;
  }
  if (spec->varlen && (plan->cu_seqlens < 0 || (spec->cu_type != KT_I32 && spec->cu_type != KT_I64))) {
    snprintf(err, errlen, "standalone CUDA: a cu_seqlens plan without a cu_seqlens slot");
    goto done;
  }
  for (int i = 0; i < m->nfuncs; i++) mixc_emit_c_func_name(m->funcs[i], d->fn[i], sizeof d->fn[i]);
  /* the kernels, into memory first: the launch settings come with them, and their macros
   * are needed before them */
  FILE *mem = open_memstream(&text, &len);
  if (!mem) {
    snprintf(err, errlen, "out of memory");
    goto done;
  }
  int erc = mixc_emit_cuda_module(mem, m, &d->tg, 0, d->launch, err, errlen);
  if (fclose(mem) || !text) {
    if (!erc) snprintf(err, errlen, "out of memory");
    goto done;
  }
  if (erc) goto done;
  for (int i = 0; i < m->nfuncs; i++)
    if (d->launch[i].threads < 1 || d->launch[i].threads > 1024 ||
        d->launch[i].global_scratch_floats < 0 || d->launch[i].item_floats < 0 ||
        (int64_t)d->launch[i].smem_bytes > (int64_t)d->tg.max_smem_optin) {
      snprintf(err, errlen, "standalone CUDA: kernel %s has launch settings out of range (%u "
               "threads, %u bytes of shared memory)", d->fn[i], d->launch[i].threads,
               d->launch[i].smem_bytes);
      goto done;
    }
  char(*names)[64] = calloc(256, sizeof *names);
  int nm = names ? macro_names(text, names, 256) : -1;
  if (nm < 0) {
    free(names);
    snprintf(err, errlen, "standalone CUDA: too many macros in the kernels");
    goto done;
  }
  header(d);
  fprintf(out, "\n/* ---- the kernels (in a namespace: their prelude's typedefs and macros stay "
               "theirs) ---- */\n");
  for (int i = 0; i < nm; i++) fprintf(out, "#pragma push_macro(\"%s\")\n#undef %s\n", names[i], names[i]);
  fprintf(out, "namespace %s_kernels {\n", d->name);
  fputs(text, out);
  fprintf(out, "} /* namespace %s_kernels */\n", d->name);
  for (int i = nm - 1; i >= 0; i--) fprintf(out, "#pragma pop_macro(\"%s\")\n", names[i]);
  free(names);
  fprintf(out, "\n/* ---- the host launcher ---- */\n");
  args_struct(d);
  helpers(d);
  launcher(d);
  layout_fn(d);
  forward(d);
  if (ferror(out)) {
    snprintf(err, errlen, "write error");
    goto done;
  }
  rc = 0;
done:
  free(text);
  free(d);
  return rc;
}
