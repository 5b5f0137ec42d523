/* check.h: CHECK(cond, fmt, ...), the unit tests' check (header only).
 *
 * A check that holds counts in g_passed; one that fails counts in g_failed and prints
 * "FAIL file:line: cond: message" (message: printf's fmt, ...) on stderr, stdout flushed
 * first so that the line stands in order among the test's own output. The test declares the
 * counters (static int g_passed, g_failed; _Atomic where threads check) and prints them in
 * its last line. Defining CHECK_MAX_SHOWN N before the include prints only the first N
 * failures (the count goes on): for tests that check in loops of thousands. */
#ifndef MIXC_TESTS_CHECK_H
#define MIXC_TESTS_CHECK_H

#include <limits.h>
#include <stdio.h>

#ifndef CHECK_MAX_SHOWN
#define CHECK_MAX_SHOWN INT_MAX
#endif

#define CHECK(cond, ...)                                                \
  do {                                                                  \
    if (cond) {                                                         \
      g_passed++;                                                       \
    } else if (++g_failed <= CHECK_MAX_SHOWN) {                         \
      fflush(stdout);                                                   \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);   \
      fprintf(stderr, __VA_ARGS__);                                     \
      fputc('\n', stderr);                                              \
    }                                                                   \
  } while (0)

#endif
