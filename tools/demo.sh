#!/usr/bin/env bash
# The main job, from a fresh clone: install what is missing, build, then take a bundled
# example (GLA) through the compiler: check it, show its recurrence IR and transition class,
# and run its JIT-compiled chunked CPU kernel on random inputs, held against the fp64
# reference, timed, with the outputs written as .npy files.
set -eu
cd "$(dirname "$0")/.."
bash tools/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "== mixc check examples/gla.mix"
build/bin/mixc check examples/gla.mix
echo "== mixc ir examples/gla.mix --stage rec"
build/bin/mixc ir examples/gla.mix --stage rec
echo "== mixc run examples/gla.mix --backend cpu --check --time --out build/demo"
build/bin/mixc run examples/gla.mix --shape B=2,T=1024,H=4 --dims K=64,V=64 --seed 1 \
  --backend cpu --check --time --out build/demo
