#!/usr/bin/env bash
# The whole test suite, as CI runs it: install what is missing, build with warnings as
# errors and run every test; build again with AddressSanitizer and UndefinedBehaviorSanitizer
# and run every test; build once without the GPU backend (-DMIXC_CUDA=OFF, no tests: that
# build's code is a subset); fuzz the front end for a bounded time (MIXC_FUZZ_SECONDS,
# default 60).
# Set MIXC_QUICK=1 to skip the sanitizer build and the fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
jobs=$(nproc)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "== build (warnings are errors)"
cmake -S . -B build -DMIXC_WERROR=ON >/dev/null
cmake --build build -j"$jobs" >/dev/null
echo "== tests"
ctest --test-dir build --output-on-failure -j"$jobs" | tee -a "$log"
# ctest's own summary line, summed over the runs: the suite's closing line
summary() {
  awk '/tests passed, [0-9]+ tests failed out of/ { n += $NF; f += $4 }
       END { printf "tests: %d passed, %d failed\n", n - f, f }' "$log"
}
if [ "${MIXC_QUICK:-0}" = 1 ]; then summary; exit 0; fi
echo "== build with ASan + UBSan (no LLVM: the sanitizers check mixc's own code)"
cmake -S . -B build-asan -DMIXC_WERROR=ON -DMIXC_SANITIZE=ON -DMIXC_LLVM=OFF \
  -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-asan -j"$jobs" >/dev/null
echo "== tests under ASan + UBSan"
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure -j"$jobs" |
  tee -a "$log"
echo "== build without the GPU backend (-DMIXC_CUDA=OFF; the build only, warnings are errors)"
cmake -S . -B build-nocuda -DMIXC_WERROR=ON -DMIXC_CUDA=OFF >/dev/null
cmake --build build-nocuda -j"$jobs" >/dev/null
echo "== fuzzing the front end for ${MIXC_FUZZ_SECONDS:-60} s"
bash tests/fuzz/run.sh "${MIXC_FUZZ_SECONDS:-60}"
summary
