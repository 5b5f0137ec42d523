#!/usr/bin/env bash
# The CPU benchmark in one go (docs/benchmarks.md): mixc chunk and recurrent (cpu_bench), plain C
# recurrent loops (c_loops), numpy chunked on OpenBLAS and the sgemm rate (numpy_chunk.py), one
# tool after another on this machine, on the same inputs; then the table and the plot.
#
#   bench/run.sh [--build DIR] [--quick] [--runs N] [--results DIR] [--bin DIR]
#
#   --build DIR    a Release build of mixc with the LLVM backend (default: build, or $MIXC_BUILD);
#                  bench/Makefile builds $DIR/bench/cpu_bench and c_loops against it
#   --bin DIR      use the cpu_bench and c_loops already built in DIR instead (no make)
#   --quick        H = 4 only (the default also runs B=1, H=2)
#   --runs N       at least N timed runs per measurement (default 5)
#   --results DIR  where to write (default bench/results)
#
# Writes cpu.md, cpu.svg and cpu.log (every tool's raw output). Every tool uses $(nproc)
# threads: MIXC_NUM_THREADS, c_loops --threads, OPENBLAS_NUM_THREADS (so `taskset -c 0,1
# bench/run.sh` runs everything on two cores). Python: /usr/bin/python3, or $PYTHON.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${MIXC_BUILD:-$root/build}
quick=0
runs=5
bin=
results=$root/bench/results
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$(cd "$2" && pwd); shift 2 ;;
    --quick) quick=1; shift ;;
    --runs) runs=$2; shift 2 ;;
    --bin) bin=$(cd "$2" && pwd); shift 2 ;;
    --results) mkdir -p "$2"; results=$(cd "$2" && pwd); shift 2 ;;
    *) echo "usage: bench/run.sh [--build DIR] [--quick] [--runs N] [--results DIR] [--bin DIR]" >&2
       exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  if [ ! -f "$build/libmixc_core.a" ]; then
    echo "bench/run.sh: no mixc build in $build: cmake -S . -B build -DCMAKE_BUILD_TYPE=Release" \
         "&& cmake --build build (or pass --build DIR)" >&2
    exit 1
  fi
  make -s -C "$root/bench" MIXC_BUILD="$build"
  bin=$build/bench
fi
py=${PYTHON:-/usr/bin/python3}
[ -x "$py" ] || py=python3

threads=$(nproc)
export MIXC_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
mkdir -p "$results"
log=$results/cpu.log
data=$(mktemp -d "${TMPDIR:-/tmp}/mixc-bench.XXXXXX")
trap 'rm -rf "$data"' EXIT

blas=$("$py" -c 'import numpy, os
numpy.ones(2) @ numpy.ones(2)
libs = sorted({os.path.basename(l.split()[-1]) for l in open("/proc/self/maps") if "blas" in l.lower() and "/" in l})
print(",".join(libs) or "unknown")')
case $blas in
  *openblas*) ;;
  *) echo "bench/run.sh: warning: numpy is not on OpenBLAS here ($blas):" \
          "apt-get install libopenblas0-pthread" >&2 ;;
esac
cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$root" status --porcelain 2>/dev/null)" ]; then commit="$commit (with local changes)"; fi
start=$(date +%s)
{
  printf 'META\tdate=%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
  printf 'META\tcommit=%s\n' "$commit"
  printf 'META\tcpu=%s\n' "$cpu"
  printf 'META\tnproc=%s\n' "$threads"
  printf 'META\tthreads=%s\n' "$threads"
  printf 'META\tblas=%s\n' "$blas"
  printf 'META\tload_before=%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
} > "$log"

Hs="4 2"
[ $quick = 1 ] && Hs=4
for H in $Hs; do
  d=$data/h$H
  mkdir -p "$d"
  echo "== H=$H: mixc (cpu_bench) ==" | tee -a "$log"
  (cd "$root" && "$bin/cpu_bench" --H "$H" --runs "$runs" --out "$d") 2>&1 | tee -a "$log" ||
    echo "cpu_bench failed (status $?)" | tee -a "$log"
  echo "== H=$H: C loops ==" | tee -a "$log"
  "$bin/c_loops" "$d" --threads "$threads" --runs "$runs" 2>&1 | tee -a "$log" ||
    echo "c_loops failed (status $?)" | tee -a "$log"
  echo "== H=$H: numpy chunked ==" | tee -a "$log"
  "$py" "$root/bench/numpy_chunk.py" "$d" --runs "$runs" --no-sgemm 2>&1 | tee -a "$log" ||
    echo "numpy_chunk.py failed (status $?)" | tee -a "$log"
done
echo "== decode step (cpu_bench --decode) ==" | tee -a "$log"
for B in 64 1; do
  (cd "$root" && "$bin/cpu_bench" --decode --B "$B") 2>&1 | tee -a "$log" ||
    echo "cpu_bench --decode failed (status $?)" | tee -a "$log"
done
echo "== sgemm ==" | tee -a "$log"
"$py" "$root/bench/numpy_chunk.py" "$data" --mixers '' 2>&1 | tee -a "$log"
printf 'META\tload_after=%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >> "$log"
printf 'META\tseconds=%s\n' "$(( $(date +%s) - start ))" >> "$log"
echo
"$py" "$root/bench/report.py" "$log" "$results"
echo
echo "bench/run.sh: $(( $(date +%s) - start )) s; wrote $results/cpu.md, cpu.svg, cpu.log"
