#!/usr/bin/env bash
# Installs what building and testing mixc needs on Debian 12 (or a close relative), only
# what is missing: a C compiler, CMake, re2c, Lemon, LLVM 19, clang with libFuzzer's
# runtime (for the fuzzing test), Python's numpy (for the command-line tests) and OpenBLAS
# under it (the CPU benchmark compares against numpy on OpenBLAS).
set -eu
pkgs=(build-essential cmake re2c lemon llvm-19-dev clang libclang-rt-14-dev python3 python3-numpy
  libopenblas0-pthread)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: everything mixc needs is installed"
  exit 0
fi
echo "setup: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
