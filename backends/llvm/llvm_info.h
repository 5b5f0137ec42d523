/* The LLVM the CPU backend is built against, and the host it targets. */
#ifndef MIXC_LLVM_INFO_H
#define MIXC_LLVM_INFO_H
#include <stddef.h>

/* Writes e.g. "LLVM 19.1.7, host cpu znver4, x86_64-pc-linux-gnu" into buf. */
void mixc_llvm_describe(char *buf, size_t n);

#endif
