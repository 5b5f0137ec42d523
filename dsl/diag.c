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

enum { QUOTE_MAX = 200 }; /* longest piece of a source line quoted */

/* The length of the well-formed UTF-8 character at p (before e), else 0. */
static int utf8_len(const unsigned char *p, const unsigned char *e) {
  int n = p[0] >= 0xF0 && p[0] <= 0xF4 ? 4 : p[0] >= 0xE0 ? 3 : p[0] >= 0xC2 ? 2 : 0;
  if (n == 0 || n > e - p) return 0;
  for (int i = 1; i < n; i++)
    if ((p[i] & 0xC0) != 0x80) return 0;
  return n;
}

/* Quote the source line of loc with a caret under the span. Columns count bytes, but the
 * quote is laid out by characters: a UTF-8 character takes one column, control characters
 * and other non-ASCII bytes are shown as one space or '?' each. A line longer than
 * QUOTE_MAX is cut around the caret, with "..." where it was cut. */
static void render_quote(Buf *b, const Diags *d, Loc loc) {
  size_t len;
  const char *line = find_line(d, loc.line, &len);
  size_t start = 0, col = (size_t)(loc.col > 0 ? loc.col - 1 : 0);
  if (col > len) col = len;
  if (len > QUOTE_MAX && col > QUOTE_MAX / 2) start = col - QUOTE_MAX / 2;
  size_t shown = len - start > QUOTE_MAX ? QUOTE_MAX : len - start;
  size_t stop = start + shown;
  int cut_left = start > 0, cut_right = stop < len;
  const unsigned char *u = (const unsigned char *)line, *ue = u + stop;
  buf_printf(b, "%5d | %s", loc.line, cut_left ? "..." : "");
  /* Pass 1: the text. Pass 2: under it, a space per column before the span, then the
   * caret and '~' to its end. */
  size_t end = col + (size_t)(loc.len > 1 ? loc.len : 1);
  if (end > stop) end = stop;
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1) buf_printf(b, "%s\n      | %s", cut_right ? "..." : "", cut_left ? "   " : "");
    int marks = 0;
    for (size_t i = start; i < stop;) {
      int n = u[i] >= 0x80 ? utf8_len(u + i, ue) : 1;
      if (pass == 0) {
        if (n > 1)
          buf_put(b, line + i, (size_t)n);
        else {
          char c = line[i];
          if ((unsigned char)c < 0x20 || c == 0x7f) c = ' ';
          if ((unsigned char)c >= 0x80) c = '?';
          buf_put(b, &c, 1);
        }
      } else if (i < col) {
        buf_put(b, " ", 1);
      } else if (i < end) {
        buf_put(b, marks++ ? "~" : "^", 1);
      } else {
        break;
      }
      i += n > 0 ? (size_t)n : 1;
    }
    if (pass == 1 && !marks) buf_put(b, "^", 1); /* at the end of the line */
  }
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
