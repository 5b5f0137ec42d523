#!/usr/bin/env bash
# Golden recurrence IR: for every examples/NAME.mix, `MIXC ir FILE --stage rec` must exit 0
# and print exactly tests/golden/NAME.rec, and `MIXC check FILE` must exit 0. 10 s each.
#   usage: tests/golden.sh MIXC
#   UPDATE_GOLDEN=1 tests/golden.sh MIXC   rewrites the .rec files from MIXC's output
set -u
[ $# -eq 1 ] || { echo "usage: $0 MIXC" >&2; exit 2; }
mixc=$1
case $mixc in */*) mixc=$(cd "$(dirname "$mixc")" && pwd)/$(basename "$mixc") ;; esac
cd "$(dirname "$0")/.." || exit 2
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
mkdir -p tests/golden

pass=0 fail=0
for mix in examples/*.mix; do
  name=$(basename "$mix" .mix)
  rec=tests/golden/$name.rec
  why=""
  timeout 10 "$mixc" ir "$mix" --stage rec >"$tmp/out" 2>"$tmp/err"
  rc=$?
  if [ $rc -ne 0 ]; then
    why="ir exit status $rc: $(head -c 400 "$tmp/err")"
  elif [ "${UPDATE_GOLDEN:-0}" = 1 ]; then
    cp "$tmp/out" "$rec"
  elif [ ! -f "$rec" ]; then
    why="no golden $rec (run with UPDATE_GOLDEN=1)"
  elif ! cmp -s "$rec" "$tmp/out"; then
    why="ir differs from $rec:"$'\n'"$(diff -u "$rec" "$tmp/out" | head -40)"
  fi
  if [ -z "$why" ]; then
    timeout 10 "$mixc" check "$mix" >/dev/null 2>"$tmp/err"
    rc=$?
    [ $rc -eq 0 ] || why="check exit status $rc: $(head -c 400 "$tmp/err")"
  fi
  if [ -z "$why" ]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL $mix: $why"
  fi
done
echo "golden: $pass passed, $fail failed"
[ $fail -eq 0 ]
