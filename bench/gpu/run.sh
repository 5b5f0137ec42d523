#!/usr/bin/env bash
# The GPU benchmark in one command, on the GPU machine (docs/benchmarks.md, "GPU"): installs the
# wheels of .whl/ (bench/gpu/fetch_fla.sh) into a temporary folder, points the Python package at
# the carried GPU-only build, and runs bench/gpu/fla_bench.py.
#
#   bash bench/gpu/run.sh [--build DIR] [--no-test] [fla_bench.py options...]
#
# First runs tests/python/test_mixc.py (the Python package on CUDA against the fp64 reference,
# a few seconds; --no-test skips it; its log goes next to the results), then the benchmark.
#
#   --build DIR   a build of mixc with libmixc.so and bin/mixc (default: $MIXC_BUILD, else the
#                 first of build-gpu-E, build-gpu, build that has libmixc.so), e.g. made with
#                 cmake -S . -B build-gpu-E -DMIXC_LLVM=OFF -DCMAKE_BUILD_TYPE=Release &&
#                 cmake --build build-gpu-E --target mixc mixc_shared
# Results go to $OUT/gpu (the run tool's output folder) when $OUT is set, else bench/results;
# --results DIR overrides. Python: python3, or $PYTHON.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${MIXC_BUILD:-}
no_test=0
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --no-test) no_test=1; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
if [ -z "$build" ]; then
  for b in build-gpu-E build-gpu build; do
    if [ -f "$root/$b/libmixc.so" ]; then build=$root/$b; break; fi
  done
fi
if [ -z "$build" ] || [ ! -f "$build/libmixc.so" ]; then
  echo "bench/gpu/run.sh: no libmixc.so in ${build:-build-gpu-E, build-gpu, build}: build it with" \
       "cmake --build DIR --target mixc mixc_shared and carry DIR (or pass --build DIR)" >&2
  exit 1
fi
build=$(cd "$build" && pwd)
py=${PYTHON:-python3}

site=$(mktemp -d "${TMPDIR:-/tmp}/fla-site.XXXXXX")
trap 'rm -rf "$site"' EXIT
shopt -s nullglob
wheels=("$root"/.whl/*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
  echo "bench/gpu/run.sh: no wheels in $root/.whl (run bench/gpu/fetch_fla.sh where PyPI is" \
       "reachable and carry .whl): fla will be reported as not importable" >&2
elif ! "$py" -m pip install --quiet --no-index --no-deps --target "$site" "${wheels[@]}" 2>/dev/null; then
  # pure-Python wheels are zip files: unpacking them is installing them
  "$py" -c 'import sys, zipfile
for w in sys.argv[2:]: zipfile.ZipFile(w).extractall(sys.argv[1])' "$site" "${wheels[@]}"
fi
export PYTHONPATH="$site:$root/python${PYTHONPATH:+:$PYTHONPATH}"
export MIXC_LIB=$build/libmixc.so MIXC_CLI=$build/bin/mixc
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-$site/triton-cache}

results=$root/bench/results
[ -n "${OUT:-}" ] && results=$OUT/gpu
have_results=0
prev=
for a in ${args[@]+"${args[@]}"}; do
  [ "$prev" = --results ] && { have_results=1; results=$a; }
  prev=$a
done
[ $have_results = 1 ] || args=(--results "$results" ${args[@]+"${args[@]}"})

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader \
  2>/dev/null || echo "bench/gpu/run.sh: nvidia-smi not found" >&2
echo "bench/gpu/run.sh: mixc from $build; fla from $site ($(ls "$site" | tr '\n' ' '))"
if [ $no_test = 0 ]; then
  mkdir -p "$results"
  echo "== tests/python/test_mixc.py (log: $results/python-tests.log) =="
  "$py" "$root/tests/python/test_mixc.py" > "$results/python-tests.log" 2>&1 &&
    tail -n 3 "$results/python-tests.log" ||
    { echo "bench/gpu/run.sh: the Python tests FAILED:"; tail -n 40 "$results/python-tests.log"; }
fi
"$py" "$root/bench/gpu/fla_bench.py" ${args[@]+"${args[@]}"}
