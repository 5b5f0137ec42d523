/* What the CPU backend links against: LLVM's version and the host it would target.
 * The code generator itself arrives with the CPU backend. */
#include "llvm_info.h"

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>
#include <stdio.h>

void mixc_llvm_describe(char *buf, size_t n) {
  unsigned major = 0, minor = 0, patch = 0;
  LLVMGetVersion(&major, &minor, &patch);
  char *cpu = LLVMGetHostCPUName();
  char *triple = LLVMGetDefaultTargetTriple();
  snprintf(buf, n, "LLVM %u.%u.%u, host cpu %s, %s", major, minor, patch, cpu ? cpu : "?",
           triple ? triple : "?");
  LLVMDisposeMessage(cpu);
  LLVMDisposeMessage(triple);
}
