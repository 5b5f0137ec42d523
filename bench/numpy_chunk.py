#!/usr/bin/python3
"""Chunked (C = 64) numpy implementations of GLA, Gated DeltaNet and Mamba2, and the sgemm rate,
for the CPU benchmark (docs/benchmarks.md).

    OPENBLAS_NUM_THREADS=2 /usr/bin/python3 bench/numpy_chunk.py DIR [--runs n] [--mixers ...]
                                                                    [--sgemm N] [--no-sgemm]

DIR holds the inputs and mixc's recurrent outputs written by `cpu_bench --out DIR`
(<mixer>_<name>.npy, float32, [B, T, H, ...]). Each implementation is checked against mixc's
output (relative error max|x - y| / max|y|) before it is timed: one warm-up, then the median of
at least --runs forwards. The sgemm rate is the best of 5 N^3 float32 matmuls (N = 4096).
Output: readable lines and one tab-separated "RESULT key=value ..." line per measurement.

The implementations are what a numpy user would write: all chunks' intra-chunk work at once as
batched matmuls (np.matmul over [B*H, chunks, ...] stacks), then a Python loop over the chunks for
the state, in float32 throughout.
- GLA (per-channel decay): the secondary-chunk trick: off-diagonal sub-chunk blocks are matmuls of
  decays rebased on the sub-chunk boundary (every exponent <= 0), diagonal blocks an element-wise
  sum over the key channel. Sub-chunks of c = 8: the usual c = 16 was 2x slower here (the
  element-wise diagonal blocks dominate), c = 4 about the same as 8.
- Gated DeltaNet: the UT / WY transform; (I + A)^{-1} by forward substitution (no scipy).
- Mamba2: scalar decay (SSD), Gamma = exp(segment sums).
"""
import argparse
import os
import sys
import time

import numpy as np

C = 64
F32 = np.float32


def to_chunks(x, C=C):
    """[B, T, H, ...] -> [B*H, T/C, C, ...] (a copy, contiguous)."""
    B, T, H = x.shape[:3]
    rest = x.shape[3:]
    x = np.moveaxis(x, 2, 1)  # [B, H, T, ...]
    return np.ascontiguousarray(x.reshape((B * H, T // C, C) + rest))


def from_chunks(x, B, H):
    """[B*H, NC, C, D] -> [B, T, H, D]."""
    BH, NC, Cc, D = x.shape
    return np.ascontiguousarray(np.moveaxis(x.reshape(B, H, NC * Cc, D), 1, 2))


def tril(n, k=0):
    return np.tril(np.ones((n, n), dtype=bool), k)


def gla(q, k, v, g, c=8):
    """o = scale S^T q, S = diag(exp g) S + k v^T, chunked with sub-chunks of c."""
    B, T, H, K = q.shape
    scale = F32(1.0 / np.sqrt(K))
    q, k, v, g = (to_chunks(a) for a in (q, k, v, g))
    BH, NC = q.shape[:2]
    V = v.shape[-1]
    G = np.cumsum(g, axis=2, dtype=F32)                     # [BH, NC, C, K], <= 0, decreasing
    A = np.zeros((BH, NC, C, C), dtype=F32)
    ns = C // c
    mask = tril(c)[:, :, None]
    for r in range(ns):
        sl = slice(r * c, (r + 1) * c)
        qr, kr, Gr = q[:, :, sl], k[:, :, sl], G[:, :, sl]
        # diagonal block: sum_i q_t[i] k_s[i] exp(G_t[i] - G_s[i]), s <= t
        d = Gr[:, :, :, None, :] - Gr[:, :, None, :, :]     # [BH, NC, c, c, K]
        d = np.exp(np.where(mask, d, -np.inf), dtype=F32)
        A[:, :, sl, sl] = np.einsum('bntk,bnsk,bntsk->bnts', qr, kr, d, optimize=True)
        if r:
            # earlier sub-chunks, rebased on the last token before this sub-chunk
            Gb = G[:, :, r * c - 1:r * c]                      # [BH, NC, 1, K]
            qb = qr * np.exp(Gr - Gb)
            kb = k[:, :, :r * c] * np.exp(Gb - G[:, :, :r * c])
            A[:, :, sl, :r * c] = qb @ kb.swapaxes(-1, -2)
    O = (A * scale) @ v                                        # [BH, NC, C, V]
    qg = q * np.exp(G) * scale
    GC = G[:, :, -1:]                                          # [BH, NC, 1, K]
    kd = (k * np.exp(GC - G)).swapaxes(-1, -2)                 # [BH, NC, K, C]
    dC = np.exp(GC).swapaxes(-1, -2)                           # [BH, NC, K, 1]
    S = np.zeros((BH, K, V), dtype=F32)
    for n in range(NC):
        O[:, n] += qg[:, n] @ S
        S = dC[:, n] * S + kd[:, n] @ v[:, n]
    return from_chunks(O, B, H)


def gated_delta(q, k, v, g, beta):
    """S = e^g (I - beta k k^T) S + beta k v^T; o = S^T q. UT transform per chunk."""
    B, T, H, K = q.shape
    q, k, v = (to_chunks(a) for a in (q, k, v))
    g, beta = to_chunks(g), to_chunks(beta)                    # [BH, NC, C]
    BH, NC = q.shape[:2]
    V = v.shape[-1]
    G = np.cumsum(g, axis=2, dtype=F32)
    low = tril(C)
    Gam = np.exp(np.where(low, G[..., :, None] - G[..., None, :], -np.inf), dtype=F32)
    KK = k @ k.swapaxes(-1, -2)
    # A = strict_lower(diag(beta) (K K^T .* Gamma)); T = (I + A)^{-1} diag(beta)
    Am = np.where(tril(C, -1), beta[..., :, None] * KK * Gam, F32(0))
    X = -Am                                                    # becomes (I + A)^{-1} - I
    for i in range(1, C):
        X[..., i, :i] += np.einsum('bnj,bnjk->bnk', X[..., i, :i], X[..., :i, :i])
    X[..., np.arange(C), np.arange(C)] += 1
    Tm = X * beta[..., None, :]
    W = Tm @ (k * np.exp(G)[..., None])                        # [BH, NC, C, K]
    U = Tm @ v                                                 # [BH, NC, C, V]
    P = (q @ k.swapaxes(-1, -2)) * Gam                         # [BH, NC, C, C], masked
    qg = q * np.exp(G)[..., None]
    kd = (k * np.exp(G[..., -1:] - G)[..., None]).swapaxes(-1, -2)
    dC = np.exp(G[..., -1])                                    # [BH, NC]
    O = np.empty((BH, NC, C, V), dtype=F32)
    S = np.zeros((BH, K, V), dtype=F32)
    for n in range(NC):
        D = U[:, n] - W[:, n] @ S
        O[:, n] = qg[:, n] @ S + P[:, n] @ D
        S = dC[:, n, None, None] * S + kd[:, n] @ D
    return from_chunks(O, B, H)


def mamba2(x, Bm, Cm, dt, A_log, dt_bias, D):
    """delta = softplus(dt + dt_bias); h = exp(-exp(A_log) delta) h + delta B x^T; y = h^T C + D x."""
    Bsz, T, H, P = x.shape
    delta = np.logaddexp(F32(0), dt + dt_bias).astype(F32)    # [B, T, H]
    la = (-np.exp(A_log) * delta).astype(F32)                  # log decay, <= 0
    q, k, v = to_chunks(Cm), to_chunks(Bm * delta[..., None]), to_chunks(x)
    la = to_chunks(la)                                         # [BH, NC, C]
    BH, NC = q.shape[:2]
    N = q.shape[-1]
    G = np.cumsum(la, axis=2, dtype=F32)
    Gam = np.exp(np.where(tril(C), G[..., :, None] - G[..., None, :], -np.inf), dtype=F32)
    Y = ((q @ k.swapaxes(-1, -2)) * Gam) @ v                   # [BH, NC, C, P]
    qg = q * np.exp(G)[..., None]
    kd = (k * np.exp(G[..., -1:] - G)[..., None]).swapaxes(-1, -2)
    dC = np.exp(G[..., -1])
    S = np.zeros((BH, N, P), dtype=F32)
    for n in range(NC):
        Y[:, n] += qg[:, n] @ S
        S = dC[:, n, None, None] * S + kd[:, n] @ v[:, n]
    return from_chunks(Y, Bsz, H) + D[None, None, :, None] * x


MIXERS = {
    'gla': (gla, ['q', 'k', 'v', 'g'], 'o'),
    'gated_delta': (gated_delta, ['q', 'k', 'v', 'g', 'beta'], 'o'),
    'mamba2': (mamba2, ['x', 'B', 'C', 'dt', 'A_log', 'dt_bias', 'D'], 'y'),
}


def flops(shape):
    B, T, H, K = shape
    V = K
    return B * T * H * (2 * C * (K + V) + 4 * K * V)


def timeit(fn, runs, budget_s=0.4):
    fn()
    ts = []
    while len(ts) < 51 and (len(ts) < runs or sum(ts) < budget_s):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    n = len(ts)
    med = ts[n // 2] if n % 2 else 0.5 * (ts[n // 2 - 1] + ts[n // 2])
    return med * 1e3, ts[0] * 1e3, n


def blas_name():
    """The BLAS library numpy has loaded (from the process's memory map)."""
    try:
        with open('/proc/self/maps') as f:
            libs = {line.split()[-1] for line in f if 'blas' in line.lower() and '/' in line}
        return ','.join(sorted(os.path.realpath(p) for p in libs)) or 'unknown'
    except OSError:
        return 'unknown'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('dir')
    ap.add_argument('--runs', type=int, default=5)
    ap.add_argument('--mixers', default='gla,gated_delta,mamba2')
    ap.add_argument('--sgemm', type=int, default=4096)
    ap.add_argument('--no-sgemm', action='store_true')
    ap.add_argument('--tol', type=float, default=1e-3)
    a = ap.parse_args()
    print(f'numpy {np.__version__}, BLAS {blas_name()}, '
          f'OPENBLAS_NUM_THREADS={os.environ.get("OPENBLAS_NUM_THREADS", "(unset)")}')
    rc = 0
    for name in filter(None, a.mixers.split(',')):
        fn, ins, out = MIXERS[name]
        args = [np.load(os.path.join(a.dir, f'{name}_{i}.npy')) for i in ins]
        ref = np.load(os.path.join(a.dir, f'{name}_{out}.npy'))
        B, T, H = args[0].shape[:3]
        tag = f'impl=numpy_chunk\tmixer={name}\tB={B}\tH={H}\tT={T}'
        if T % C:
            print(f'RESULT\t{tag}\tstatus=na\tmsg=T must be a multiple of {C}')
            continue
        with np.errstate(over='raise', invalid='raise'):
            res = fn(*args)
        err = float(np.max(np.abs(res.astype(np.float64) - ref)) / np.max(np.abs(ref)))
        ok = err <= a.tol
        print(f'{name}: B={B} T={T} H={H}: check vs mixc recurrent: rel. error {err:.3g}: '
              f'{"ok" if ok else "FAILED, no timing reported"}')
        if not ok:
            print(f'RESULT\t{tag}\tstatus=na\tmsg=check failed: rel. error {err:.3g}')
            rc = 1
            continue
        ms, mn, n = timeit(lambda: fn(*args), a.runs)
        gf = flops(ref.shape) / ms * 1e-6
        print(f'  median {ms:.2f} ms (min {mn:.2f}, {n} runs), {gf:.2f} GFLOP/s (chunk FLOPs, C=64)')
        print(f'RESULT\t{tag}\tstatus=ok\tms={ms:.4f}\tmin_ms={mn:.4f}\truns={n}\tgflops={gf:.3f}'
              f'\trelerr={err:.3g}')
        sys.stdout.flush()
    if not a.no_sgemm:
        N = a.sgemm
        rng = np.random.default_rng(0)
        x = rng.standard_normal((N, N), dtype=F32)
        y = rng.standard_normal((N, N), dtype=F32)
        x @ y
        best = min(_timed(lambda: x @ y) for _ in range(5))
        gf = 2.0 * N ** 3 / best * 1e-9
        print(f'sgemm {N}^3 float32: best of 5 {best * 1e3:.1f} ms, {gf:.1f} GFLOP/s')
        print(f'RESULT\timpl=sgemm\tN={N}\tstatus=ok\tms={best * 1e3:.4f}\tgflops={gf:.3f}'
              f'\tblas={blas_name()}')
    return rc


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == '__main__':
    sys.exit(main())
