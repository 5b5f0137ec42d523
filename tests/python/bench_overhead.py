#!/usr/bin/env python3
"""Host time per call of the Python package (Kernel.forward and Kernel.step) on a tiny kernel
(B=T=H=1, K=V=16 on the CPU; on CUDA the given sizes), where the kernel's own time is small:
the package's per-call overhead on repeated calls with the same shapes.

    MIXC_LIB=build/libmixc.so python3 tests/python/bench_overhead.py [--torch] [--cuda]
        [--calls N] [--profile]

Prints us per call (median and min of 11 runs of N calls, timed with time.perf_counter; CUDA
calls are asynchronous: host time, not synchronised). Not part of the test suite.
"""
import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'python'))
import mixc  # noqa: E402


def timeit(fn, calls, runs=11):
    """'median (min)' us per call over `runs` runs of `calls` calls."""
    us = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        us.append((time.perf_counter() - t0) / calls * 1e6)
    us.sort()
    return f'{us[len(us) // 2]:7.2f} ({us[0]:6.2f})'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--torch', action='store_true', help='torch tensors (else numpy arrays)')
    ap.add_argument('--cuda', action='store_true', help='torch CUDA tensors, a CUDA kernel')
    ap.add_argument('--calls', type=int, default=1000)
    ap.add_argument('--profile', action='store_true', help='cProfile 20000 step calls')
    ap.add_argument('--mixer', default='gated_delta')
    a = ap.parse_args()
    B, T, H, K, V = (1, 1, 16, 128, 128) if a.cuda else (1, 1, 1, 16, 16)
    ctx = mixc.Context(1)
    mod = ctx.load(os.path.join(ROOT, 'bench', 'gpu', 'mixers.mix'))
    kern = mod.kernel(a.mixer, K=K, V=V, device='cuda' if a.cuda else 'cpu')
    rng = np.random.default_rng(0)
    d = {n: rng.standard_normal((B, T, H, K)).astype('float32') * 0.1 for n in ('q', 'k')}
    d['v'] = rng.standard_normal((B, T, H, V)).astype('float32')
    if a.mixer in ('gla', 'gated_delta', 'simple_gla'):
        d['g'] = np.full((B, T, H), -0.1, dtype='float32')
    if a.mixer in ('delta', 'gated_delta'):
        d['beta'] = np.full((B, T, H), 0.5, dtype='float32')
    S = np.zeros((B, H, K, V), dtype='float32')
    o = np.zeros((B, T, H, V), dtype='float32')
    if a.torch or a.cuda:
        import torch
        dev = 'cuda' if a.cuda else 'cpu'
        d = {n: torch.from_numpy(x).to(dev) for n, x in d.items()}
        S, o = torch.from_numpy(S).to(dev), torch.from_numpy(o).to(dev)
    what = 'torch CUDA' if a.cuda else ('torch CPU' if a.torch else 'numpy')
    fwd = lambda: kern.forward(**d, outputs={'o': o})
    fwd_alloc = lambda: kern.forward(**d)
    step = lambda: kern.step({'S': S}, outputs={'o': o}, **d)
    for f in (fwd, fwd_alloc, step):  # the first calls (the full path) and a warm-up
        for _ in range(a.calls):
            f()
    if a.cuda:
        torch.cuda.synchronize()
    print(f'{what}, {a.mixer} B={B} T={T} H={H} K={K} V={V}, 11 runs of {a.calls} calls: '
          f'median (min)')
    print(f'  forward (outputs given)  {timeit(fwd, a.calls)} us/call')
    print(f'  forward (o allocated)    {timeit(fwd_alloc, a.calls)} us/call')
    print(f'  step                     {timeit(step, a.calls)} us/call')
    if a.cuda:
        torch.cuda.synchronize()
    if a.profile:
        profile(step)
    # the floors: mixc_forward and mixc_step through ctypes on the structs the cached path
    # keeps (the C calls and the kernels' own time, no Python work per tensor)
    if not getattr(kern, '_cache', None):  # a package without the cached path
        return
    h, lib = kern._hv, kern._lib
    ef = next(e for e in kern._cache.values() if e.states_addr is None and not e.out_alloc)
    es = next(e for e in kern._cache.values() if e.states_addr is not None)
    bare_f = lambda: lib.mixc_forward_addr(h, ef.args_addr, ef.err_addr)
    bare_s = lambda: lib.mixc_step_addr(h, es.args_addr, es.states_addr, es.nstates, es.err_addr)
    print(f'  mixc_forward alone       {timeit(bare_f, a.calls)} us/call')
    print(f'  mixc_step alone          {timeit(bare_s, a.calls)} us/call')
    if a.cuda:
        torch.cuda.synchronize()


def profile(step):
    import cProfile
    import pstats
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(20000):
        step()
    pr.disable()
    pstats.Stats(pr).sort_stats('tottime').print_stats(18)


if __name__ == '__main__':
    main()
