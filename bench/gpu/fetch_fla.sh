#!/usr/bin/env bash
# Download flash-linear-attention's kernels (the PyPI package fla-core: fla.ops, pure Python over
# Triton) and its one dependency einops, as wheels, without their dependencies, into .whl/ at the
# repository root (git-ignored: never committed). Run on a machine that reaches PyPI; the GPU
# machine has no network, so .whl/ travels there with the working tree, and bench/gpu/run.sh
# installs it into a temporary folder. (The package flash-linear-attention adds fla's layers and
# models, which need transformers; the benchmark needs only fla-core.)
#
#   bench/gpu/fetch_fla.sh [VERSION]     # default: the version the benchmark was written for
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
version=${1:-0.6.0}
py=${PYTHON:-python3}
mkdir -p "$root/.whl"
"$py" -m pip download --quiet --no-deps --dest "$root/.whl" "fla-core==$version" einops
ls -l "$root/.whl"
echo "fetch_fla.sh: $(du -sh "$root/.whl" | cut -f1) in $root/.whl"
