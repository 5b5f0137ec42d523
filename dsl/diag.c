/* Diagnostics collection and rendering (see diag.h). */
#include "diag.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void diags_init(Diags *d, Arena *a, const char *file, const char *src, size_t srclen) {
  memset(d, 0, sizeof *d);
  d->arena = a;
  d->file = file;
  d->src = src;
  d->srclen = srclen;
  d->max = DIAG_DEFAULT_MAX;
}

static char *vfmt(Arena *a, const char *fmt, va_list ap) {
  char buf[1024];
  vsnprintf(buf, sizeof buf, fmt, ap);
  return arena_strdup(a, buf);
}

void diag_error(Diags *d, Loc loc, const char *help, const char *fmt, ...) {
  if (d->n >= d->max) {
    d->dropped++;
    return;
  }
  if (d->n == d->cap) {
    int cap = d->cap ? d->cap * 2 : 8;
    Diag *items = arena_array(d->arena, (size_t)cap, sizeof *items);
    if (!items) {
      d->dropped++;
      return;
    }
    if (d->n) memcpy(items, d->items, (size_t)d->n * sizeof *items);
    d->items = items;
    d->cap = cap;
  }
  va_list ap;
  va_start(ap, fmt);
  Diag *g = &d->items[d->n++];
  g->loc = loc;
  g->msg = vfmt(d->arena, fmt, ap);
  g->help = help ? arena_strdup(d->arena, help) : NULL;
  va_end(ap);
}

int diag_count(const Diags *d) { return d->n + d->dropped; }

Loc loc_span(Loc a, Loc b) {
  if (a.line != b.line || b.col + b.len <= a.col) return a;
  Loc r = a;
  r.len = b.col + b.len - a.col;
  return r;
}

/* A growable output string. */
typedef struct Buf {
  char *p;
  size_t n, cap;
  int oom;
} Buf;

static void buf_put(Buf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->n + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void buf_printf(Buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void buf_printf(Buf *b, const char *fmt, ...) {
  char tmp[1400];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  buf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Find the text of 1-based line `line`; returns its start and sets *len. */
static const char *find_line(const Diags *d, int line, size_t *len) {
  const char *p = d->src, *end = d->src + d->srclen;
  for (int l = 1; l < line && p < end; p++)
    if (*p == '\n') l++;
  const char *e = p;
  while (e < end && *e != '\n') e++;
  *len = (size_t)(e - p);
  return p;
}

enum { QUOTE_MAX = 200 }; /* longest source line quoted in full */

static void render_quote(Buf *b, const Diags *d, Loc loc) {
  size_t len;
  const char *line = find_line(d, loc.line, &len);
  size_t start = 0, col = (size_t)(loc.col > 0 ? loc.col - 1 : 0);
  if (col > len) col = len;
  if (len > QUOTE_MAX && col > QUOTE_MAX / 2) start = col - QUOTE_MAX / 2;
  size_t shown = len - start > QUOTE_MAX ? QUOTE_MAX : len - start;
  buf_printf(b, "%5d | ", loc.line);
  /* Show the line with control characters and tabs made visible as spaces so the
   * caret lines up (columns count bytes). */
  for (size_t i = 0; i < shown; i++) {
    char c = line[start + i];
    if ((unsigned char)c < 0x20 || c == 0x7f) c = ' ';
    buf_put(b, &c, 1);
  }
  buf_put(b, "\n      | ", 9);
  for (size_t i = start; i < col; i++) buf_put(b, " ", 1);
  int n = loc.len > 0 ? loc.len : 1;
  if ((size_t)n > shown + start - col + 1) n = (int)(shown + start - col + 1);
  if (n < 1) n = 1;
  buf_put(b, "^", 1);
  for (int i = 1; i < n; i++) buf_put(b, "~", 1);
  buf_put(b, "\n", 1);
}

char *diag_render(const Diags *d) {
  Buf b = {0};
  buf_put(&b, "", 0);
  for (int i = 0; i < d->n; i++) {
    const Diag *g = &d->items[i];
    if (g->loc.line > 0)
      buf_printf(&b, "%s:%d:%d: error: %s\n", d->file, g->loc.line, g->loc.col, g->msg);
    else
      buf_printf(&b, "%s: error: %s\n", d->file, g->msg);
    if (g->loc.line > 0 && d->src) render_quote(&b, d, g->loc);
    if (g->help) buf_printf(&b, "      = help: %s\n", g->help);
  }
  if (d->dropped)
    buf_printf(&b, "%s: %d more error%s not shown\n", d->file, d->dropped,
               d->dropped == 1 ? "" : "s");
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  return b.p;
}
