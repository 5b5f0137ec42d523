/* Diagnostics: errors are values collected per compilation, never printed or fatal in
 * the library. Each has a location, a message and a "help" line that says what to
 * change; diag_render formats them as
 *
 *   file:line:col: error: message
 *      3 |   S[i, j] = qq[i]
 *        |             ^~
 *     = help: ...
 */
#ifndef MIXC_DIAG_H
#define MIXC_DIAG_H
#include <stddef.h>

#include "../compiler/arena.h"

typedef struct Loc {
  int line, col; /* 1-based; line 0 means "no location" (whole file) */
  int len;       /* length of the underlined span, >= 1 */
} Loc;

typedef struct Diag {
  Loc loc;
  char *msg;
  char *help; /* may be NULL */
} Diag;

typedef struct Diags {
  Arena *arena;
  const char *file; /* name shown in messages */
  const char *src;  /* whole source text (for the quoted line) */
  size_t srclen;
  Diag *items;
  int n, cap;
  int max;     /* stop recording after this many; the rest are counted */
  int dropped; /* errors not recorded because of max */
} Diags;

enum { DIAG_DEFAULT_MAX = 20 };

void diags_init(Diags *d, Arena *a, const char *file, const char *src, size_t srclen);
/* Record an error. help may be NULL. Formats with printf rules. */
void diag_error(Diags *d, Loc loc, const char *help, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
int diag_count(const Diags *d); /* recorded + dropped */
/* Render every diagnostic into a malloc'd string (caller frees); NULL on OOM. */
char *diag_render(const Diags *d);
Loc loc_span(Loc a, Loc b); /* from the start of a to the end of b (same line), else a */

#endif
