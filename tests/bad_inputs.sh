#!/usr/bin/env bash
# The bad-input corpus: `MIXC check` on every tests/bad/*.mix must exit 1 (an input
# error: never 0, never 2, never a crash or a signal), print nothing on stdout, and print
# exactly tests/bad/NAME.err on stderr. Each file gets 10 s.
#   usage: tests/bad_inputs.sh MIXC            (run from anywhere; paths are repo-relative)
#   UPDATE_GOLDEN=1 tests/bad_inputs.sh MIXC   rewrites the .err files from MIXC's output
set -u
[ $# -eq 1 ] || { echo "usage: $0 MIXC" >&2; exit 2; }
mixc=$1
case $mixc in */*) mixc=$(cd "$(dirname "$mixc")" && pwd)/$(basename "$mixc") ;; esac
cd "$(dirname "$0")/.." || exit 2 # the repo root, so messages read tests/bad/NAME.mix
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT

pass=0 fail=0
for mix in tests/bad/*.mix; do
  err=${mix%.mix}.err
  timeout 10 "$mixc" check "$mix" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  why=""
  if [ $rc -eq 124 ]; then why="timed out after 10 s"
  elif [ $rc -ge 128 ]; then why="crashed (signal $((rc - 128)))"
  elif [ $rc -ne 1 ]; then why="exit status $rc, expected 1"
  elif [ -s "$tmp/out" ]; then why="wrote to stdout: $(head -c 200 "$tmp/out")"
  fi
  if [ -z "$why" ] && [ "${UPDATE_GOLDEN:-0}" = 1 ]; then
    cp "$tmp/err" "$err"
  elif [ -z "$why" ] && [ ! -f "$err" ]; then
    why="no golden $err (run with UPDATE_GOLDEN=1)"
  elif [ -z "$why" ] && ! cmp -s "$err" "$tmp/err"; then
    why="stderr differs from $err:"$'\n'"$(diff -u "$err" "$tmp/err" | head -40)"
  fi
  if [ -z "$why" ]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL $mix: $why"
  fi
done
echo "bad_inputs: $pass passed, $fail failed"
[ $fail -eq 0 ]
