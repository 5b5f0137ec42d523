#!/usr/bin/env bash
# Fuzz the front end (tests/fuzz/fuzz_frontend.c) for SECONDS with libFuzzer, ASan and UBSan.
# Builds build-fuzz/ with clang, seeds a temporary corpus from examples/*.mix and
# tests/bad/*.mix, and fails on any crash, leak, sanitizer report or timeout (5 s per input).
# Reproducers are kept in build-fuzz/artifacts/ and shown; replay one with
#   build-fuzz/bin/fuzz_frontend build-fuzz/artifacts/crash-...
#   usage: tests/fuzz/run.sh SECONDS
set -u
secs=${1:-60}
cd "$(dirname "$0")/../.." || exit 2

echo "== building build-fuzz (clang, libFuzzer, ASan + UBSan)"
mkdir -p build-fuzz
log=build-fuzz/build.log
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DMIXC_FUZZ=ON -DMIXC_SANITIZE=ON \
  -DMIXC_LLVM=OFF >"$log" 2>&1 &&
  cmake --build build-fuzz -j"$(nproc)" --target fuzz_frontend >>"$log" 2>&1 ||
  { tail -30 "$log"; echo "fuzz: build failed (see $log)"; exit 2; }
fuzzer=build-fuzz/bin/fuzz_frontend

# A throwaway corpus: the seeds are copies, so the fuzzer's additions never touch the repo.
corpus=$(mktemp -d) || exit 2
trap 'rm -rf "$corpus"' EXIT
cp examples/*.mix tests/bad/*.mix "$corpus"/
# A dictionary of the language's words, so mutations splice whole tokens.
dict=build-fuzz/mix.dict
for w in mixer dim input param state let output sum for in over directions combine per \
  direction row col all mean exp log rsqrt softplus max '[i, j]' '(' ')' '{' '}' '=' \
  ',' '*' '/' '-' '+' '1e-6' '\x0A' ';' '#'; do printf '"%s"\n' "$w"; done >"$dict"
seeds=$(ls "$corpus" | wc -l)
art=build-fuzz/artifacts
rm -rf "$art" && mkdir -p "$art"

echo "== fuzzing for $secs s from $seeds seeds"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
  "$fuzzer" "$corpus" -max_total_time="$secs" -max_len=4096 -timeout=5 -rss_limit_mb=2048 \
  -dict="$dict" -artifact_prefix="$art/" -print_final_stats=1 >"$art/fuzz.log" 2>&1
rc=$?

# Summary: libFuzzer's last status line and final stats, then every reproducer.
grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$art/fuzz.log" | tail -1
grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$art/fuzz.log"
found=$(ls "$art" | grep -E '^(crash|leak|timeout|oom|slow-unit)-' || true)
if [ $rc -ne 0 ] || [ -n "$found" ]; then
  grep -E 'ERROR: |SUMMARY: |runtime error:|ALARM' "$art/fuzz.log" | head -10
  [ -n "$found" ] || tail -5 "$art/fuzz.log" # no reproducer: libFuzzer itself failed
  for f in $found; do
    echo "-- reproducer $art/$f ($(wc -c <"$art/$f") bytes):"
    head -c 600 "$art/$f" | cat -v
    echo
  done
  echo "fuzz: FAILED (exit status $rc; full log in $art/fuzz.log)"
  exit 1
fi
echo "fuzz: ok, no crash, leak or timeout in $secs s"
