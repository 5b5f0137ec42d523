#!/usr/bin/env bash
# The command line as a user meets it: exit codes, one-line errors that name the argument,
# shapes read off .npy files, reproducible seeds, and a state carried across two runs
# matching one run over the whole sequence. Needs /usr/bin/python3 with numpy.
set -u
MIXC=${1:?usage: cli.sh MIXC}
PY=/usr/bin/python3
tmp=$(mktemp -d /tmp/mixc_cli.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# expect STATUS PATTERN CMD...: exit status and a regex that stdout+stderr must match.
expect() {
  local want=$1 pat=$2
  shift 2
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$want" ]; then
    bad "$* -> exit $rc, expected $want"$'\n'"$out"
  elif ! grep -Eq -- "$pat" <<<"$out"; then
    bad "$* -> output lacks /$pat/"$'\n'"$out"
  else
    ok
  fi
}

# usage errors: status 2
expect 2 'usage: mixc' "$MIXC"
expect 2 "unknown command 'frob'" "$MIXC" frob
expect 0 'usage: mixc' "$MIXC" help
expect 2 "unknown option '--frob'" "$MIXC" run examples/gla.mix --frob
expect 2 '--dtype f64: use f32, bf16 or f16' "$MIXC" run examples/gla.mix --dtype f64
expect 2 '--backend tpu' "$MIXC" run examples/gla.mix --backend tpu
# the compiled CPU backend, where this build has it (the sanitizer build leaves LLVM out)
if "$MIXC" version | grep -q 'cpu (LLVM'; then
  expect 0 'check o +rel err .* ok' "$MIXC" run examples/gated_delta.mix --backend cpu --check \
    --seed 5 --dtype bf16 --shape B=2,T=70,H=3 --dims K=24,V=20
  expect 0 'strategy recurrent' "$MIXC" run examples/gla.mix --backend cpu --check \
    --strategy recurrent --shape T=9
  expect 2 'does not apply' "$MIXC" run examples/mamba1.mix --backend cpu --strategy chunk
  # the parallel strategy: one chunk of 128 tokens for T = 100, against the reference
  expect 0 'check o +rel err .* ok' "$MIXC" run examples/gated_delta.mix --backend cpu --check \
    --strategy parallel --seed 7 --shape B=2,T=100,H=2 --dims K=24,V=20
  expect 2 'parallel strategy .* does not apply' "$MIXC" run examples/mamba1.mix --backend cpu \
    --strategy parallel
  # a forced value split (--vtile): 48 columns in 3 tiles of 16 (the emitted schedule says so),
  # checked against the reference
  expect 0 'check o +rel err .* ok' "$MIXC" run examples/gla.mix --backend cpu --check \
    --seed 11 --shape B=1,T=40,H=2 --dims K=32,V=48 --vtile 16
  expect 0 'check o +rel err .* ok' "$MIXC" run examples/gated_delta.mix --backend cpu --check \
    --seed 12 --shape B=2,T=33,H=1 --dims K=16,V=40 --vtile 16 --chunk 16
else
  expect 2 'no CPU backend' "$MIXC" run examples/gla.mix --backend cpu
fi
# the schedule chosen, on the first line of the emitted kernels (docs/cli.md)
expect 0 '^# schedule: strategy chunk, chunk 16, vtile 16, vtiles 3; L2 [0-9]+ KiB' \
  "$MIXC" emit examples/gla.mix --target kir --dims K=32,V=48 --vtile 16
expect 0 '^/\* schedule: strategy chunk, chunk 16, vtile 48, vtiles 1; .*scratch budget' \
  "$MIXC" emit examples/gla.mix --target c --dims K=32,V=48
expect 0 '^/\* schedule: strategy parallel, chunk 256, vtile 48, vtiles 1;' \
  "$MIXC" emit examples/gla.mix --target c --dims K=32,V=48 --strategy parallel
# the sequence split of the hand-structured GPU kernels (--segments): three kernels in the
# file; refused where out of range or for a CPU target
expect 0 'gla_chunk_combine: 256 threads a block' \
  "$MIXC" emit examples/gla.mix --target cuda --dtype bf16 --dims K=32,V=32 --segments 3
expect 2 '--segments 0' "$MIXC" emit examples/gla.mix --target cuda --dims K=32,V=32 --segments 0
expect 2 'only --target cuda' "$MIXC" emit examples/gla.mix --target c --dims K=32,V=32 --segments 2
expect 2 '--segments 2000' "$MIXC" run examples/gla.mix --segments 2000
# --backend cuda without a usable GPU (hidden from the driver where there is one): one plain
# line, exit 1; a build without the CUDA backend says so, exit 2
if "$MIXC" version | grep -q 'cuda ('; then
  out=$(CUDA_VISIBLE_DEVICES= "$MIXC" run examples/gla.mix --backend cuda 2>&1)
  rc=$?
  if [ "$rc" -ne 1 ] || [ "$(printf '%s\n' "$out" | wc -l)" -ne 1 ] ||
    ! grep -Eq '^mixc: run: (no CUDA driver|the CUDA driver found no device)' <<<"$out"; then
    bad "run --backend cuda without a GPU -> exit $rc, expected 1 and one line"$'\n'"$out"
  else
    ok
  fi
else
  expect 2 'no CUDA backend' "$MIXC" run examples/gla.mix --backend cuda
fi
expect 2 '--chunk 0: give a positive integer' "$MIXC" run examples/gla.mix --chunk 0
expect 2 '--vtile 0: give a positive integer' "$MIXC" run examples/gla.mix --vtile 0
expect 2 '--vtile 8x: give a positive integer' "$MIXC" run examples/gla.mix --vtile 8x
expect 2 '--vtile needs a number' "$MIXC" run examples/gla.mix --vtile
expect 2 '--vtile -4: give the value-tile width as an integer' \
  "$MIXC" emit examples/gla.mix --dims K=8,V=8 --vtile -4
expect 2 '--strategy fast: use auto, recurrent, chunk or parallel' "$MIXC" run examples/gla.mix --strategy fast
expect 2 'nothing to compare' "$MIXC" run examples/gla.mix --backend ref --check
expect 2 '--stage lowered: use ast, typed or rec' "$MIXC" ir examples/gla.mix --stage lowered
expect 2 '--seed -3' "$MIXC" run examples/gla.mix --seed -3

# input errors: status 1, one line naming the argument
expect 1 "cannot open 'nope.mix'" "$MIXC" check nope.mix
expect 1 "mixc: --in zz=x.npy: mixer 'gla' has no input, param or state 'zz'" \
  "$MIXC" run examples/gla.mix --in zz=x.npy
expect 1 '--in q=missing.npy: missing.npy' "$MIXC" run examples/gla.mix --in q=missing.npy
expect 1 "--dims Q=4: mixer 'gla' has no dim 'Q'" "$MIXC" run examples/gla.mix --dims Q=4
expect 1 '--dims K=0: K must be at least 1' "$MIXC" run examples/gla.mix --dims K=0
expect 1 "--mixer nope: 'examples/gla.mix' holds no mixer of that name" \
  "$MIXC" run examples/gla.mix --mixer nope
expect 1 'dim NH is fixed to 2 by the source, not 3' \
  "$MIXC" run examples/delta_product.mix --dims NH=3

$PY - "$tmp" <<'PYEOF'
import sys, numpy as np
d = sys.argv[1]
rng = np.random.default_rng()
np.save(f"{d}/q3.npy", rng.standard_normal((2, 10, 3)).astype(np.float32))
np.save(f"{d}/q.npy", rng.standard_normal((1, 10, 3, 8)).astype(np.float32))
np.save(f"{d}/c.npy", rng.standard_normal((4,)).astype(np.complex64))
# a full GLA problem, T = 20, and its two halves
B, T, H, K, V = 2, 20, 3, 8, 5
def unit(*s):
    x = rng.standard_normal(s)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)
arrs = dict(q=unit(B, T, H, K), k=unit(B, T, H, K), v=unit(B, T, H, V),
            g=np.log(1 / (1 + np.exp(-rng.standard_normal((B, T, H, K))))))
for n, a in arrs.items():
    np.save(f"{d}/{n}.full.npy", a.astype(np.float64))
    np.save(f"{d}/{n}.a.npy", a[:, :12].astype(np.float64))
    np.save(f"{d}/{n}.b.npy", a[:, 12:].astype(np.float64))
PYEOF

expect 1 "--in q=$tmp/q3.npy: input 'q' is \[B, T, H, K\] \(4 dims\) but the file holds 3 dims" \
  "$MIXC" run examples/gla.mix --in "q=$tmp/q3.npy"
expect 1 'unsupported dtype' "$MIXC" run examples/gla.mix --in "q=$tmp/c.npy"
expect 1 "--dims K=4: K is 4 here but 8 from --in q=" \
  "$MIXC" run examples/gla.mix --in "q=$tmp/q.npy" --dims K=4
expect 1 "--shape T=11: T is 11 here but 10 from --in q=" \
  "$MIXC" run examples/gla.mix --in "q=$tmp/q.npy" --shape T=11

# shapes read off an array: B=1, T=10, H=3, K=8 from q; V from --dims
expect 0 'sizes: B=1 T=10 H=3 K=8 V=6' \
  "$MIXC" run examples/gla.mix --in "q=$tmp/q.npy" --dims V=6 --out "$tmp/o1"
$PY -c "import numpy as np,sys; a=np.load('$tmp/o1/o.npy'); s=np.load('$tmp/o1/S.npy');
sys.exit(0 if a.shape==(1,10,3,6) and s.shape==(1,3,8,6) and a.dtype==np.float32 else 1)" \
  && ok || bad "--out shapes"

# the same seed gives the same outputs; another seed does not
"$MIXC" run examples/delta.mix --seed 7 --out "$tmp/s1" >/dev/null 2>&1
"$MIXC" run examples/delta.mix --seed 7 --out "$tmp/s2" >/dev/null 2>&1
"$MIXC" run examples/delta.mix --seed 8 --out "$tmp/s3" >/dev/null 2>&1
cmp -s "$tmp/s1/o.npy" "$tmp/s2/o.npy" && ok || bad "--seed 7 twice differs"
cmp -s "$tmp/s1/o.npy" "$tmp/s3/o.npy" && bad "--seed 7 and 8 agree" || ok

# a state carried across two runs matches one run over the whole sequence
ins() { for n in q k v g; do printf -- "--in %s=%s/%s.%s.npy " $n "$tmp" $n "$1"; done; }
"$MIXC" run examples/gla.mix $(ins full) --out "$tmp/full" >/dev/null 2>&1 || bad "full run"
"$MIXC" run examples/gla.mix $(ins a) --out "$tmp/a" >/dev/null 2>&1 || bad "first half"
"$MIXC" run examples/gla.mix $(ins b) --in "S=$tmp/a/S.npy" --out "$tmp/b" >/dev/null 2>&1 \
  || bad "second half"
$PY - "$tmp" <<'PYEOF' && ok || bad "state carried across runs differs from one run"
import sys, numpy as np
d = sys.argv[1]
full = np.load(f"{d}/full/o.npy").astype(np.float64)
two = np.concatenate([np.load(f"{d}/a/o.npy"), np.load(f"{d}/b/o.npy")], axis=1)
err = np.abs(full - two).max() / np.abs(full).max()
Sf, Sb = np.load(f"{d}/full/S.npy"), np.load(f"{d}/b/S.npy")
errS = np.abs(Sf - Sb).max() / np.abs(Sf).max()
# the halves hand over an fp32 state: agreement to fp32 rounding
print(f"carried state: output rel err {err:.2e}, state rel err {errS:.2e}")
sys.exit(0 if err <= 1e-5 and errS <= 1e-5 else 1)
PYEOF

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
