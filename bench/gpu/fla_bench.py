#!/usr/bin/env python3
"""The GPU benchmark: mixc's CUDA kernels vs flash-linear-attention (fla) vs torch SDPA.

    python3 bench/gpu/fla_bench.py [--results DIR] [--mixers a,b] [--shapes 8x2048,2x8192]
                                   [--runs N] [--no-cold | --cold-only | --decode]
                                   [--no-check] [--no-decode]
    python3 bench/gpu/fla_bench.py --dry-run          # no GPU needed: the plan and a CPU check
    python3 bench/gpu/fla_bench.py --from-logs LOG... [--results DIR]   # report from logs

One process builds the same torch bf16 tensors for mixc (python/mixc over libmixc.so, CUDA
device pointers, torch's current stream), for fla (chunk_simple_gla, chunk_gla,
chunk_delta_rule, chunk_gated_delta_rule) and for causal SDPA; H = 16, K = V = 128, forward only.

1. Correctness first: on B=2, T=4096, H=4, mixc's and fla's outputs against an fp64
   token-by-token reference computed with torch on the GPU (bench/gpu/reference.py), itself
   held against mixc's own fp64 reference (`mixc run --backend ref`) on a tiny case.
2. Timing: CUDA events around a pass over several input sets (rotated so that their total is
   over 4x the 50 MB L2), after warm-up; the median over --runs passes, per call.
   Also the memory floor: the bytes of q, k, v, gates, beta and o over 3.0 TB/s.
3. First call, cold: each in a fresh process; mixc with an empty XDG_CACHE_HOME, then a second
   process with that cache warm; fla with a fresh TRITON_CACHE_DIR, then again with it warm.
4. Decode step (--decode: only this; --no-decode: not this): one token (T = 1) with a carried
   fp32 state [B, H, K, V], B = 1 and 64: mixc's Kernel.step (the state updated in place)
   against fla's fused_recurrent_* with initial_state and output_final_state=True (a new state
   each call, which the loop carries on with). First one step of each against the fp64
   reference from the same inputs and state (o and the state); then CUDA events around a pass
   over rotated state buffers (together over 4x the L2), the median per call, and the state's
   traffic (read + write) in TB/s; at B = 1 also the latency of one call followed by
   torch.cuda.synchronize() (host clock, median).

Writes DIR/gpu.md (tables), DIR/gpu.svg (a plot) and DIR/gpu.log (META and RESULT lines, the
machine-readable record; gpu-cold.log for --cold-only, gpu-decode.log for --decode; the report
reads every one of them in DIR, the newest last, so the latest run of a part wins). An error
in one mixer, shape or phase goes into the table (status=error) and its traceback into the log
(TRACE lines) and stderr; the run goes on.
fla is expected on PYTHONPATH (bench/gpu/run.sh installs the wheels of .whl/ into a temporary
folder); this script installs nothing.
"""
import argparse
import html
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, 'python'))
sys.path.insert(0, HERE)
import reference  # noqa: E402

MIXERS_MIX = os.path.join(HERE, 'mixers.mix')
SHAPES = [(8, 2048), (2, 8192), (1, 32768)]
H, D = 16, 128
CHECK = (2, 4096, 4)          # B, T, H of the accuracy check (PERFORMANCE.md)
BANDWIDTH = 3.0e12            # bytes/s, a device copy on the H100 (PERFORMANCE.md)
L2_BYTES = 50e6
TITLES = {'simple_gla': 'simple GLA (scalar decay)', 'gla': 'GLA (vector decay)',
          'delta': 'DeltaNet', 'gated_delta': 'Gated DeltaNet'}
FLA_NAMES = {'simple_gla': 'chunk_simple_gla', 'gla': 'chunk_gla', 'delta': 'chunk_delta_rule',
             'gated_delta': 'chunk_gated_delta_rule'}
FLA_DECODE_NAMES = {'simple_gla': 'fused_recurrent_simple_gla', 'gla': 'fused_recurrent_gla',
                    'delta': 'fused_recurrent_delta_rule',
                    'gated_delta': 'fused_recurrent_gated_delta_rule'}
DECODE_BATCHES = (1, 64)
DECODE_SYNC_CALLS = 200       # calls of the synchronised latency (B = 1)
TARGET_SPEEDUP, TARGET_FLOOR, TARGET_COLD_S, TARGET_CACHED_MS, TARGET_ERR = 1.5, 2.0, 1.0, 10.0, 5e-3
TARGET_DECODE_US, TARGET_DECODE_TBPS = 15.0, 2.5  # B = 1 synchronised; B = 64 (PERFORMANCE.md)
# the decode check's bounds: o (bf16, rounding alone gives ~2e-3), the new state (fp32; the
# CUDA tolerance of states from bf16 inputs, docs/cli.md "--check")
DECODE_TOL_O, DECODE_TOL_S = 1e-2, 5e-3


def emit(log, tag, **kv):
    """One RESULT (or META) line: tab-separated key=value, values without tabs or newlines."""
    clean = lambda v: ' '.join(str(v).split()) if v is not None else ''
    line = tag + ''.join(f'\t{k}={clean(v)}' for k, v in kv.items())
    print(line, flush=True)
    if log:
        log.write(line + '\n')
        log.flush()


class NotRun(Exception):
    """An implementation left out on purpose (--no-fla): status 'not run', no traceback."""


def trace(log, ex, where):
    """ex's traceback: readable on stderr, and as TRACE lines into the log (stdout when log is
    None: a --cold-one child, whose parent copies them); parse_logs ignores them."""
    text = ''.join(traceback.format_exception(type(ex), ex, ex.__traceback__)).rstrip()
    print(f'fla_bench.py: error in {where}:\n{text}', file=sys.stderr, flush=True)
    lines = [f'TRACE\t{where}\t{ln.expandtabs()}' for ln in text.splitlines()]
    if log:
        log.write(''.join(ln + '\n' for ln in lines))
        log.flush()
    else:
        print('\n'.join(lines), flush=True)


def failed(log, ex, **kv):
    """The RESULT line of a failed part (status=error, msg) and its traceback."""
    if isinstance(ex, NotRun):
        emit(log, 'RESULT', status='not run', msg=str(ex), **kv)
        return
    emit(log, 'RESULT', status='error', msg=short(ex), **kv)
    trace(log, ex, ' '.join(f'{k}={v}' for k, v in kv.items() if k in
                            ('kind', 'impl', 'mixer', 'B', 'T', 'cache')))


def sync(torch):
    """torch.cuda.synchronize(), whose error (a sticky CUDA fault) the next part reports."""
    try:
        torch.cuda.synchronize()
    except Exception:
        pass


# ---- inputs and the three implementations ----

def make_inputs(torch, mixer, B, T, Hh, device, seed, dtype=None):
    """Fresh inputs in fla's ranges: q, k, v ~ N(0, 1) (unit q, k for the delta rule, whose
    keys fla expects L2-normalised by the caller), g = logsigmoid(N(0, 1)) (GLA: / 16, as fla's
    GLA layer), beta = sigmoid(N(0, 1)); all bf16."""
    import torch.nn.functional as F
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    dtype = dtype or torch.bfloat16
    rnd = lambda *s: torch.randn(*s, device=device, dtype=torch.float32, generator=gen)
    d = {'q': rnd(B, T, Hh, D), 'k': rnd(B, T, Hh, D), 'v': rnd(B, T, Hh, D)}
    if mixer in ('delta', 'gated_delta'):
        d['q'] = F.normalize(d['q'], p=2, dim=-1)
        d['k'] = F.normalize(d['k'], p=2, dim=-1)
    for n, per_key in reference.GATES.get(mixer, {}).items():
        x = rnd(B, T, Hh, D) if per_key else rnd(B, T, Hh)
        d[n] = F.logsigmoid(x) / (16 if per_key else 1) if n == 'g' else torch.sigmoid(x)
    return {n: x.to(dtype).contiguous() for n, x in d.items()}


def fla_op(mixer):
    """fla's chunk forward for a mixer, as a function of the input dict; its import errors
    propagate (the caller records them)."""
    if mixer == 'simple_gla':
        from fla.ops.simple_gla import chunk_simple_gla
        return lambda d: chunk_simple_gla(d['q'], d['k'], d['v'], g=d['g'])[0]
    if mixer == 'gla':
        from fla.ops.gla import chunk_gla
        return lambda d: chunk_gla(d['q'], d['k'], d['v'], g=d['g'])[0]
    if mixer == 'delta':
        from fla.ops.delta_rule import chunk_delta_rule
        return lambda d: chunk_delta_rule(d['q'], d['k'], d['v'], d['beta'])[0]
    if mixer == 'gated_delta':
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule
        return lambda d: chunk_gated_delta_rule(d['q'], d['k'], d['v'], d['g'], d['beta'])[0]
    raise ValueError(mixer)


def fla_step_op(mixer):
    """fla's fused recurrent kernel for a mixer as a decode step: f(d, S) -> (o, new state),
    S the fp32 state [B, H, K, V] (fla's default layout, K first) read as initial_state; fla
    returns the final state in a new tensor. Import errors propagate (the caller records them)."""
    if mixer == 'simple_gla':
        from fla.ops.simple_gla import fused_recurrent_simple_gla
        return lambda d, S: fused_recurrent_simple_gla(d['q'], d['k'], d['v'], g=d['g'],
                                                       initial_state=S, output_final_state=True)
    if mixer == 'gla':
        from fla.ops.gla import fused_recurrent_gla
        return lambda d, S: fused_recurrent_gla(d['q'], d['k'], d['v'], gk=d['g'],
                                                initial_state=S, output_final_state=True)
    if mixer == 'delta':
        from fla.ops.delta_rule import fused_recurrent_delta_rule
        return lambda d, S: fused_recurrent_delta_rule(d['q'], d['k'], d['v'], beta=d['beta'],
                                                       initial_state=S, output_final_state=True)
    if mixer == 'gated_delta':
        from fla.ops.gated_delta_rule import fused_recurrent_gated_delta_rule
        return lambda d, S: fused_recurrent_gated_delta_rule(
            d['q'], d['k'], d['v'], g=d['g'], beta=d['beta'], initial_state=S,
            output_final_state=True)
    raise ValueError(mixer)


def make_state(torch, B, Hh, device, seed):
    """A carried fp32 state [B, H, K, V] ~ N(0, 1) (fla's examples draw h0 so)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return torch.randn(B, Hh, D, D, device=device, dtype=torch.float32, generator=gen)


def mixc_kernel(mixer, device='cuda'):
    import mixc
    mod = mixc.Context().load(MIXERS_MIX)
    return mod.kernel(mixer, dims={'K': D, 'V': D}, device=device)


def sdpa(torch, d):
    F = torch.nn.functional
    return F.scaled_dot_product_attention(d['q'].transpose(1, 2), d['k'].transpose(1, 2),
                                          d['v'].transpose(1, 2), is_causal=True)


def nbytes(d):
    return sum(x.numel() * x.element_size() for x in d.values())


def short(e):
    s = f'{type(e).__name__}: {e}' if not hasattr(e, 'status_name') else str(e)
    s = ' '.join(s.split())
    return s if len(s) <= 300 else s[:297] + '...'


def time_calls(torch, fn, sets, runs, warmup, ready=None):
    """Median ms per call: CUDA events around one pass over every input set, --runs passes.
    Also the host's time to issue a call (median, ms): when it nears the device time, the
    timing is bound by the launch, not by the kernels. ready (mixc: Kernel.wait_ready) is
    called after one call and before the warm-up, so that the fast tier of a variant compiled
    just now (docs/gpu.md, "The cubin cache") is never timed."""
    if ready is not None:
        fn(sets[0])
        ready()
    for i in range(warmup):
        fn(sets[i % len(sets)])
    torch.cuda.synchronize()
    evs, host = [], []
    for _ in range(runs):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        t0 = time.perf_counter()
        for x in sets:
            fn(x)
        host.append((time.perf_counter() - t0) * 1e3 / len(sets))
        e.record()
        evs.append((s, e))
    torch.cuda.synchronize()
    ms = [s.elapsed_time(e) / len(sets) for s, e in evs]
    return statistics.median(ms), min(ms), max(ms), statistics.median(host)


# ---- the parts of a run ----

def check_reference(torch, log, cli):
    """The torch fp64 reference against mixc's own fp64 reference (CLI), tiny case."""
    import numpy as np
    B, T, Hh, K = 1, 7, 2, 8
    for m in reference.MIXERS:
        try:
            check_reference_one(torch, log, cli, np, m, B, T, Hh, K)
        except Exception as ex:
            failed(log, ex, kind='refcheck', mixer=m)


def check_reference_one(torch, log, cli, np, m, B, T, Hh, K):
    """One mixer of check_reference."""
    d = make_inputs(torch, m, B, T, Hh, 'cuda', 7, dtype=torch.float64)
    d = {n: (x[..., :K] if x.dim() == 4 else x) for n, x in d.items()}
    o, S = reference.recurrent(torch, m, d['q'], d['k'], d['v'], d.get('g'), d.get('beta'))
    if not cli or not os.path.exists(cli):
        emit(log, 'RESULT', kind='refcheck', mixer=m, status='skipped',
             msg=f'no mixc CLI at {cli}')
        return
    with tempfile.TemporaryDirectory() as tmp:
        args = [cli, 'run', MIXERS_MIX, '--mixer', m, '--backend', 'ref', '--out', tmp]
        for n, x in d.items():
            np.save(os.path.join(tmp, f'in_{n}.npy'), x.cpu().numpy())
            args += ['--in', f'{n}={os.path.join(tmp, f"in_{n}.npy")}']
        p = subprocess.run(args, capture_output=True, text=True)
        if p.returncode:
            emit(log, 'RESULT', kind='refcheck', mixer=m, status='error',
                 msg=(p.stdout + p.stderr)[-300:])
            return
        o_ref = torch.from_numpy(np.load(os.path.join(tmp, 'o.npy'))).double().cuda()
        S_ref = torch.from_numpy(np.load(os.path.join(tmp, 'S.npy'))).double().cuda()
    e = max(reference.relerr(o, o_ref), reference.relerr(S, S_ref))
    emit(log, 'RESULT', kind='refcheck', mixer=m, status='ok' if e <= 1e-6 else 'mismatch',
         relerr=f'{e:.3g}')


def check_accuracy(torch, log, mixer, kernel, fla):
    B, T, Hh = CHECK
    try:
        d = make_inputs(torch, mixer, B, T, Hh, 'cuda', 1234)
        d64 = {n: x.double() for n, x in d.items()}
        ref, _ = reference.recurrent(torch, mixer, d64['q'], d64['k'], d64['v'], d64.get('g'),
                                     d64.get('beta'))
    except Exception as ex:
        for impl in ('mixc', 'fla'):
            failed(log, ex, kind='accuracy', impl=impl, mixer=mixer, B=B, T=T, H=Hh)
        return
    # the floor: the exact output rounded to bf16 (what any bf16 output carries)
    e = reference.relerr(ref.to(torch.bfloat16).double(), ref)
    emit(log, 'RESULT', kind='accuracy', impl='bf16_floor', mixer=mixer, B=B, T=T, H=Hh,
         status='ok', relerr=f'{e:.3g}')
    for impl in ('mixc', 'mixc_f32out', 'fla'):
        try:
            if impl.startswith('mixc'):
                if isinstance(kernel, Exception):
                    raise kernel
                # mixc_f32out: the same bf16 inputs, the output written in f32 (its own
                # variant): the kernel's error without the final rounding
                dt = torch.float32 if impl == 'mixc_f32out' else torch.bfloat16
                o = torch.full((B, T, Hh, D), float('nan'), dtype=dt, device='cuda')
                # the optimised tier's accuracy: a call (which may compile the variant and
                # run its fast tier), the wait, then the call that is measured
                kernel.forward(**d, outputs={'o': o})
                kernel.wait_ready()
                o.fill_(float('nan'))
                kernel.forward(**d, outputs={'o': o})
            else:
                if isinstance(fla, Exception):
                    raise fla
                o = fla(d)
            torch.cuda.synchronize()
            e = reference.relerr(o.double(), ref)
            emit(log, 'RESULT', kind='accuracy', impl=impl, mixer=mixer, B=B, T=T, H=Hh,
                 status='ok', relerr=f'{e:.3g}')
        except Exception as ex:
            failed(log, ex, kind='accuracy', impl=impl, mixer=mixer, B=B, T=T, H=Hh)
        sync(torch)


def bench_shape(torch, log, mixer, kernel, fla, B, T, runs, warmup):
    try:
        one = make_inputs(torch, mixer, B, T, H, 'cuda', 0)
        set_bytes = nbytes(one) + B * T * H * D * 2  # + o
        nsets = min(16, max(2, math.ceil(4 * L2_BYTES / set_bytes)))
        sets = [one] + [make_inputs(torch, mixer, B, T, H, 'cuda', i) for i in range(1, nsets)]
        floor_ms = set_bytes / BANDWIDTH * 1e3
        common = dict(mixer=mixer, B=B, T=T, H=H, sets=nsets, bytes=set_bytes,
                      floor_ms=f'{floor_ms:.4g}')
        outs = [torch.empty(B, T, H, D, dtype=torch.bfloat16, device='cuda') for _ in sets]
    except Exception as ex:
        for impl in ('mixc', 'fla'):
            failed(log, ex, kind='time', impl=impl, mixer=mixer, B=B, T=T, H=H)
        sync(torch)
        return
    res = {}
    for impl in ('mixc', 'fla'):
        try:
            if impl == 'mixc':
                if isinstance(kernel, Exception):
                    raise kernel
                pairs = list(zip(sets, outs))
                fn = lambda p: kernel.forward(**p[0], outputs={'o': p[1]})
                for o in outs:
                    o.fill_(float('nan'))
                t0 = time.perf_counter()
                fn(pairs[0])
                torch.cuda.synchronize()
                first = time.perf_counter() - t0
                ms = time_calls(torch, fn, pairs, runs, warmup, kernel.wait_ready)
                res['mixc'] = outs[0]
            else:
                if isinstance(fla, Exception):
                    raise fla
                t0 = time.perf_counter()
                res['fla'] = fla(sets[0])
                torch.cuda.synchronize()
                first = time.perf_counter() - t0
                ms = time_calls(torch, fla, sets, runs, warmup)
            extra = {}
            if impl == 'fla' and 'mixc' in res:
                extra['agree'] = f'{reference.relerr(res["mixc"].double(), res["fla"].double()):.3g}'
            emit(log, 'RESULT', kind='time', impl=impl, status='ok', ms=f'{ms[0]:.4g}',
                 ms_min=f'{ms[1]:.4g}', ms_max=f'{ms[2]:.4g}', host_ms=f'{ms[3]:.3g}',
                 first_s=f'{first:.3g}', **common, **extra)
        except Exception as ex:
            failed(log, ex, kind='time', impl=impl, **common)
        sync(torch)
    del sets, outs, res, one
    try:
        torch.cuda.empty_cache()
    except Exception:
        pass


def bench_sdpa(torch, log, B, T, runs, warmup):
    sets = one = None
    try:
        one = make_inputs(torch, 'sdpa', B, T, H, 'cuda', 0)
        set_bytes = nbytes(one) + B * T * H * D * 2
        nsets = min(16, max(2, math.ceil(4 * L2_BYTES / set_bytes)))
        sets = [one] + [make_inputs(torch, 'sdpa', B, T, H, 'cuda', i) for i in range(1, nsets)]
        ms = time_calls(torch, lambda d: sdpa(torch, d), sets, runs, warmup)
        emit(log, 'RESULT', kind='time', impl='sdpa', mixer='sdpa', B=B, T=T, H=H, status='ok',
             ms=f'{ms[0]:.4g}', ms_min=f'{ms[1]:.4g}', ms_max=f'{ms[2]:.4g}',
             host_ms=f'{ms[3]:.3g}', sets=nsets)
    except Exception as ex:
        failed(log, ex, kind='time', impl='sdpa', mixer='sdpa', B=B, T=T, H=H)
    sync(torch)
    del sets, one
    try:
        torch.cuda.empty_cache()
    except Exception:
        pass


def decode_plan(B):
    """(state bytes, number of rotated state buffers) of a decode step at batch B: buffers
    enough to be over 4x the L2 together (at least 4, at most 256)."""
    state_bytes = B * H * D * D * 4
    return state_bytes, min(256, max(4, math.ceil(4 * L2_BYTES / state_bytes)))


def check_decode(torch, log, mixer, kernel, fla, B, d, S0):
    """One step of mixc and of fla from (d, S0) against the fp64 reference of that step:
    max|x - ref| / max|ref| of o and of the new state."""
    kv = dict(kind='decode_check', mixer=mixer, B=B, H=H)
    try:
        d64 = {n: x.double() for n, x in d.items()}
        o_ref, S_ref = reference.recurrent(torch, mixer, d64['q'], d64['k'], d64['v'],
                                           d64.get('g'), d64.get('beta'), S0=S0.double())
        e = reference.relerr(o_ref.to(torch.bfloat16).double(), o_ref)
        emit(log, 'RESULT', impl='bf16_floor', status='ok', relerr_o=f'{e:.3g}', **kv)
    except Exception as ex:
        for impl in ('mixc', 'fla'):
            failed(log, ex, impl=impl, **kv)
        return
    for impl in ('mixc', 'fla'):
        try:
            if impl == 'mixc':
                if isinstance(kernel, Exception):
                    raise kernel
                S = S0.clone()
                o = torch.full((B, 1, H, D), float('nan'), dtype=torch.bfloat16, device='cuda')
                kernel.step({'S': S}, outputs={'o': o}, **d)  # may compile: its fast tier
                kernel.wait_ready()  # the optimised tier is the one measured
                S.copy_(S0)
                o.fill_(float('nan'))
                kernel.step({'S': S}, outputs={'o': o}, **d)
            else:
                if isinstance(fla, Exception):
                    raise fla
                S_in = S0.clone()
                o, S = fla(d, S_in)
                if not torch.equal(S_in, S0):
                    raise AssertionError('fla changed its initial_state in place')
            torch.cuda.synchronize()
            eo = reference.relerr(o.double(), o_ref)
            es = reference.relerr(S.double(), S_ref)
            emit(log, 'RESULT', impl=impl, status='ok', relerr_o=f'{eo:.3g}',
                 relerr_S=f'{es:.3g}', **kv)
        except Exception as ex:
            failed(log, ex, impl=impl, **kv)
        sync(torch)


def bench_decode(torch, log, mixer, kernel, fla, B, runs, warmup, check=True):
    """The decode step at batch B (T = 1): check, then time mixc's step and fla's fused
    recurrent kernel over rotated state buffers; at B = 1 also the synchronised latency."""
    state_bytes, nbuf = decode_plan(B)
    floor_us = 2 * state_bytes / BANDWIDTH * 1e6
    common = dict(kind='decode', mixer=mixer, B=B, T=1, H=H, bufs=nbuf, state_bytes=state_bytes,
                  floor_us=f'{floor_us:.3g}')
    try:
        sets = [make_inputs(torch, mixer, B, 1, H, 'cuda', 100 + i) for i in range(nbuf)]
        base = [make_state(torch, B, H, 'cuda', 500 + i) for i in range(nbuf)]
    except Exception as ex:
        for impl in ('mixc', 'fla'):
            failed(log, ex, impl=impl, **common)
        sync(torch)
        return
    with torch.no_grad():
        if check:
            check_decode(torch, log, mixer, kernel, fla, B, sets[0], base[0])
        for impl in ('mixc', 'fla'):
            slots = None
            try:
                if impl == 'mixc':
                    if isinstance(kernel, Exception):
                        raise kernel
                    # each slot: inputs, its state (updated in place), its output buffer
                    slots = [(x, S.clone(), torch.empty(B, 1, H, D, dtype=torch.bfloat16,
                                                        device='cuda'))
                             for x, S in zip(sets, base)]

                    def fn(p):
                        kernel.step({'S': p[1]}, outputs={'o': p[2]}, **p[0])
                else:
                    if isinstance(fla, Exception):
                        raise fla
                    # each slot carries fla's new state into its next call, as a decode loop
                    slots = [{'d': x, 'S': S.clone()} for x, S in zip(sets, base)]

                    def fn(p):
                        p['S'] = fla(p['d'], p['S'])[1]
                ms = time_calls(torch, fn, slots, runs, max(warmup, nbuf),
                                kernel.wait_ready if impl == 'mixc' else None)
                us = ms[0] * 1e3
                extra = {}
                if B == 1:
                    lat = []
                    for i in range(DECODE_SYNC_CALLS):
                        p = slots[i % nbuf]
                        t0 = time.perf_counter()
                        fn(p)
                        torch.cuda.synchronize()
                        lat.append((time.perf_counter() - t0) * 1e6)
                    extra = dict(sync_us=f'{statistics.median(lat):.4g}',
                                 sync_us_min=f'{min(lat):.4g}')
                emit(log, 'RESULT', impl=impl, status='ok', us=f'{us:.4g}',
                     us_min=f'{ms[1] * 1e3:.4g}', us_max=f'{ms[2] * 1e3:.4g}',
                     host_us=f'{ms[3] * 1e3:.3g}', tbps=f'{2 * state_bytes / us * 1e-6:.3g}',
                     **common, **extra)
            except Exception as ex:
                failed(log, ex, impl=impl, **common)
            del slots
            sync(torch)
    del sets, base
    try:
        torch.cuda.empty_cache()
    except Exception:
        pass


def run_decode(torch, log, mixer, kernel, fla, runs, warmup, check=True):
    """Every batch of the decode step for one mixer."""
    for B in DECODE_BATCHES:
        bench_decode(torch, log, mixer, kernel, fla, B, runs, warmup, check)


def cold_one(impl, mixer, cache):
    """In a fresh process (--cold-one): the first forward of one mixer at B=8, T=2048. mixc:
    also the time until its optimised tier is in (ready_s, from the same start as first_s:
    Kernel.wait_ready after the first call; equal to first_s on a cache hit or without
    tiering), whether the first call ran the fast tier (tier=fast) and the optimised compile's
    own time on its thread (opt_ms)."""
    import torch
    B, T = SHAPES[0]
    kv = dict(kind='cold', impl=impl, mixer=mixer, cache=cache, B=B, T=T, H=H)
    try:
        d = make_inputs(torch, mixer, B, T, H, 'cuda', 0)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        if impl == 'mixc':
            import mixc  # noqa: F401
            t1 = time.perf_counter()
            k = mixc_kernel(mixer)
            o = k.forward(**d)['o']
        else:
            fn = fla_op(mixer)
            t1 = time.perf_counter()
            o = fn(d)
        if impl == 'mixc':
            pending = k.optimized_ms()[1]  # as the call returned: 1 = it ran the fast tier
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        if impl == 'mixc':
            k.wait_ready()
            t3 = time.perf_counter()
            ms, nvar = k.compile_ms()
            opt_ms, _ = k.optimized_ms()
            kv.update(compile_ms=f'{ms:.4g}', variants=nvar, ready_s=f'{t3 - t1:.3g}',
                      opt_ms=f'{opt_ms:.4g}', tier='fast' if pending else 'optimised')
        finite = bool(torch.isfinite(o).all())
        emit(None, 'RESULT', status='ok' if finite else 'nonfinite', import_s=f'{t1 - t0:.3g}',
             first_s=f'{t2 - t1:.3g}', **kv)
    except Exception as ex:
        failed(None, ex, **kv)


def run_cold(log, mixers, no_fla=False):
    """Each mixer's cold and cached first call, each in a fresh process."""
    me = os.path.abspath(__file__)
    for m in mixers:
        for impl, var in (('mixc', 'XDG_CACHE_HOME'), ('fla', 'TRITON_CACHE_DIR')):
            with tempfile.TemporaryDirectory(prefix=f'mixc-cold-{impl}-') as cache:
                for label in ('cold', 'warm'):
                    kv = dict(kind='cold', impl=impl, mixer=m, cache=label)
                    try:
                        if impl == 'fla' and no_fla:
                            raise NotRun('not run (--no-fla)')
                        # the CUDA driver's compute cache (~/.nv/ComputeCache) keeps what
                        # NVRTC and the driver compiled across processes: a fresh one a mixer,
                        # shared by its cold and warm runs, so "cold" compiles from nothing
                        env = dict(os.environ, **{var: cache,
                                                  'CUDA_CACHE_PATH': os.path.join(cache, 'nv')})
                        p = subprocess.run([sys.executable, me, '--cold-one', impl, m, label],
                                           capture_output=True, text=True, env=env,
                                           timeout=900)
                        lines = [ln for ln in p.stdout.splitlines()
                                 if ln.startswith(('RESULT\t', 'TRACE\t'))]
                        for ln in lines:
                            if ln.startswith('RESULT\t'):
                                print(ln, flush=True)
                            log.write(ln + '\n')
                        if not any(ln.startswith('RESULT\t') for ln in lines):
                            emit(log, 'RESULT', status='error', msg=f'exit {p.returncode}: ' +
                                 (p.stderr or p.stdout)[-300:], **kv)
                            for ln in (p.stderr or '').splitlines()[-40:]:
                                log.write(f'TRACE\tcold {impl} {m} {label}\t{ln.expandtabs()}\n')
                    except Exception as ex:
                        failed(log, ex, **kv)
                    log.flush()


# ---- the report ----

def parse_logs(paths):
    meta, res = {}, []
    for path in paths:
        with open(path, errors='replace') as f:
            for line in f:
                parts = line.rstrip('\n').split('\t')
                if parts[0] not in ('META', 'RESULT'):
                    continue
                kv = dict(p.split('=', 1) for p in parts[1:] if '=' in p)
                if parts[0] == 'META':
                    meta.update(kv)
                else:
                    res.append(kv)
    return meta, res


def fnum(x):
    if x is None:
        return 'n/a'
    return f'{x:.0f}' if x >= 100 else f'{x:.1f}' if x >= 10 else f'{x:.3g}'


def report(meta, res, outdir):
    def find(**kw):
        for r in reversed(res):  # the last run wins
            if all(r.get(k) == str(v) for k, v in kw.items()):
                return r
        return None

    def val(r, key='ms'):
        return float(r[key]) if r and r.get('status') == 'ok' and r.get(key) else None

    def cell(r, key='ms', fmt=fnum):
        if r is None:
            return 'not run'
        if r.get('status') != 'ok':
            return 'error' if r.get('status') == 'error' else r.get('status', '?')
        return fmt(float(r[key]))

    mixers = [m for m in reference.MIXERS if any(r.get('mixer') == m for r in res)]
    shapes = []
    for r in res:
        if r.get('kind') == 'time' and (int(r['B']), int(r['T'])) not in shapes:
            shapes.append((int(r['B']), int(r['T'])))
    md = ['# GPU benchmark: mixc vs flash-linear-attention vs SDPA\n']
    md.append(f'Written by `bench/gpu/fla_bench.py` ({meta.get("date", "?")}, mixc at '
              f'{meta.get("commit", "?")}). GPU: {meta.get("gpu", "?")}; torch '
              f'{meta.get("torch", "?")}, Triton {meta.get("triton", "?")}, fla '
              f'{meta.get("fla", "?")}, CUDA {meta.get("cuda", "?")}.\n')
    kinds = {r.get('kind') for r in res}
    errors = []
    if 'time' in kinds:
        md.append(f'Forward, bf16 inputs and outputs, H = {H}, K = V = {D}. Median ms per call '
                  f'over CUDA-event-timed passes across rotating input sets (together > 4x the '
                  f'50 MB L2), after warm-up. Floor: the bytes of q, k, v, gates, beta and o '
                  f'over {BANDWIDTH / 1e12:.1f} TB/s. SDPA: torch causal '
                  f'scaled_dot_product_attention, same q, k, v.\n')
        md.append('| mixer | B, T | mixc ms | fla ms | SDPA ms | fla / mixc | floor ms | '
                  'mixc / floor | mixc vs fla rel. diff | host ms per call, mixc / fla |')
        md.append('|---|---|---|---|---|---|---|---|---|---|')
        for m in mixers:
            for B, T in shapes:
                rm = find(kind='time', impl='mixc', mixer=m, B=B, T=T)
                rf = find(kind='time', impl='fla', mixer=m, B=B, T=T)
                rs = find(kind='time', impl='sdpa', B=B, T=T)
                for r, who in ((rm, 'mixc'), (rf, 'fla')):
                    if r and r.get('status') == 'error':
                        errors.append(f'{who}, {m}, B={B} T={T}: {r.get("msg", "")}')
                floor = float((rm or rf or {}).get('floor_ms', 'nan'))
                a, b = val(rm), val(rf)
                md.append(f'| {TITLES.get(m, m)} | {B}, {T} | {cell(rm)} | {cell(rf)} | '
                          f'{cell(rs)} | {f"{b / a:.2f}x" if a and b else "n/a"} | '
                          f'{fnum(floor)} | '
                          f'{f"{a / floor:.2f}x" if a and floor == floor else "n/a"} | '
                          f'{(rf or {}).get("agree", "n/a")} | '
                          f'{(rm or {}).get("host_ms", "n/a")} / '
                          f'{(rf or {}).get("host_ms", "n/a")} |')
        md.append('\n"fla / mixc" above 1: mixc is faster. "rel. diff": max|mixc - fla| / '
                  'max|fla| on the first input set of the timed shape (a sanity check; accuracy '
                  'is below). "host ms": the median time Python took to issue one call; where it '
                  'nears the device time, the timing measures the launch path, not the '
                  'kernels.\n')

    if kinds & {'accuracy', 'refcheck'}:
        B, T, Hh = CHECK
        md.append(f'## Accuracy (B={B}, T={T}, H={Hh}, bf16 inputs; max|x - ref| / max|ref| '
                  f'against a float64 token-by-token reference)\n')
        md.append('| mixer | mixc | fla | target: <= half of fla\'s and <= 5e-3 | '
                  'mixc, f32 output | the exact output rounded to bf16 |')
        md.append('|---|---|---|---|---|---|')
        for m in mixers:
            rm = find(kind='accuracy', impl='mixc', mixer=m)
            rf = find(kind='accuracy', impl='fla', mixer=m)
            r32 = find(kind='accuracy', impl='mixc_f32out', mixer=m)
            rfl = find(kind='accuracy', impl='bf16_floor', mixer=m)
            for r, who in ((rm, 'mixc'), (rf, 'fla')):
                if r and r.get('status') == 'error':
                    errors.append(f'{who} (accuracy), {m}: {r.get("msg", "")}')
            a, b = val(rm, 'relerr'), val(rf, 'relerr')
            met = 'n/a' if a is None else (
                'met' if a <= TARGET_ERR and (b is None or a <= b / 2) else '**not met**')
            md.append(f'| {TITLES.get(m, m)} | {cell(rm, "relerr", lambda x: f"{x:.3g}")} | '
                      f'{cell(rf, "relerr", lambda x: f"{x:.3g}")} | {met} | '
                      f'{cell(r32, "relerr", lambda x: f"{x:.3g}")} | '
                      f'{cell(rfl, "relerr", lambda x: f"{x:.3g}")} |')
        md.append('\n"target" holds mixc\'s bf16 output against fla\'s (fla writes bf16). '
                  '"mixc, f32 output": the same bf16 inputs and kernel, the output written in '
                  'f32: the kernels\' own error. "the exact output rounded to bf16": the float64 '
                  'reference rounded to bf16, the error any bf16 output carries.\n')
        refs = [r for r in res if r.get('kind') == 'refcheck']
        if refs:
            md.append('\nThe float64 reference (torch, on the GPU) against mixc\'s own '
                      '(`mixc run --backend ref`), B=1, T=7, H=2, K=V=8: ' +
                      ', '.join(f'{r["mixer"]} {r.get("relerr", r.get("status"))}'
                                for r in refs) + '.\n')

    if 'cold' in kinds:
        md.append(f'## First call (B={SHAPES[0][0]}, T={SHAPES[0][1]}), each in a fresh '
                  f'process\n')
        md.append('| mixer | mixc cold s | mixc compile ms | mixc optimised in, s (its compile '
                  'ms) | mixc, cache warm s | fla cold s | fla, Triton cache warm s | import s '
                  '(mixc / fla) |')
        md.append('|---|---|---|---|---|---|---|---|')
        for m in mixers:
            c = {(i, k): find(kind='cold', impl=i, mixer=m, cache=k)
                 for i in ('mixc', 'fla') for k in ('cold', 'warm')}
            for (i, k), r in c.items():
                if r and r.get('status') not in ('ok', 'not run'):
                    errors.append(f'{i} first call ({k}), {m}: '
                                  f'{r.get("msg", r.get("status"))}')
            imp = lambda r: r.get('import_s', '?') if r and r.get('status') == 'ok' else 'n/a'
            mc = c['mixc', 'cold']
            tier = f' ({mc["opt_ms"]})' if mc and mc.get('tier') == 'fast' else ''
            md.append(f'| {TITLES.get(m, m)} | {cell(mc, "first_s")}'
                      f'{" (fast tier)" if mc and mc.get("tier") == "fast" else ""} | '
                      f'{cell(mc, "compile_ms")} | '
                      f'{cell(mc, "ready_s") if not mc or "ready_s" in mc else "n/a"}{tier} | '
                      f'{cell(c["mixc", "warm"], "first_s")} | '
                      f'{cell(c["fla", "cold"], "first_s")} | '
                      f'{cell(c["fla", "warm"], "first_s")} | '
                      f'{imp(c["mixc", "cold"])} / {imp(c["fla", "cold"])} |')
        md.append('\nFirst call: the first forward including compilation (mixc: context, module, '
                  'kernel, NVRTC; fla: Triton compilation and autotuning), synchronised, after the '
                  'inputs exist; the package import is the last column. Each mixer\'s two '
                  'processes share a fresh cache folder of their own (mixc: XDG_CACHE_HOME; fla: '
                  'TRITON_CACHE_DIR) and a fresh CUDA compute cache (CUDA_CACHE_PATH), so '
                  '"cold" compiles from nothing. On a cold cache mixc runs its first call on a '
                  'fast-compiled cubin (NVRTC -Ofc=max; "fast tier") while the optimised one '
                  'compiles on a thread; "optimised in" is the time from the same start until '
                  'Kernel.wait_ready returned (the optimised cubin loaded, and written to the '
                  'cache), with that compile\'s own time on its thread. "mixc compile ms" is the '
                  'first tier\'s.\n')

    if kinds & {'decode', 'decode_check'}:
        report_decode(md, errors, find, val, cell, mixers)
    if kinds & {'time', 'cold', 'decode'}:
        md.append('## Targets (PERFORMANCE.md)\n')
        md.append('| target | ' + ' | '.join(TITLES.get(m, m) for m in mixers) + ' |')
        md.append('|---' * (len(mixers) + 1) + '|')

        def row(name, fn):
            cells = []
            for m in mixers:
                v = fn(m)
                cells.append('n/a' if v is None else
                             f'{v[0]}: {"met" if v[1] else "**not met**"}')
            md.append(f'| {name} | ' + ' | '.join(cells) + ' |')

        def worst(m, f):
            vals = []
            for B, T in shapes:
                a = val(find(kind='time', impl='mixc', mixer=m, B=B, T=T))
                b = val(find(kind='time', impl='fla', mixer=m, B=B, T=T))
                fl = find(kind='time', impl='mixc', mixer=m, B=B, T=T)
                v = f(a, b, float(fl['floor_ms']) if fl and fl.get('floor_ms') else None)
                if v is None:
                    return None
                vals.append(v)
            return min(vals) if vals else None

        if 'time' in kinds:
            row('forward >= 1.5x fla (worst shape)', lambda m: (
                lambda v: None if v is None else (f'{v:.2f}x', v >= TARGET_SPEEDUP))(
                    worst(m, lambda a, b, f: b / a if a and b else None)))
            row('forward within 2x of the floor (worst shape)', lambda m: (
                lambda v: None if v is None else (f'{1 / v:.2f}x', 1 / v <= TARGET_FLOOR))(
                    worst(m, lambda a, b, f: f / a if a and f else None)))
        if 'cold' in kinds:
            row('first call cold <= 1 s', lambda m: (lambda v: None if v is None else (
                f'{v:.2f} s', v <= TARGET_COLD_S))(val(find(kind='cold', impl='mixc', mixer=m,
                                                              cache='cold'), 'first_s')))
            row('first call, cache warm <= 10 ms', lambda m: (lambda v: None if v is None else (
                f'{v * 1e3:.1f} ms', v * 1e3 <= TARGET_CACHED_MS))(val(find(
                    kind='cold', impl='mixc', mixer=m, cache='warm'), 'first_s')))
        if 'decode' in kinds:
            row(f'decode B=1 <= {TARGET_DECODE_US:g} us a call, synchronised', lambda m: (
                lambda v: None if v is None else (f'{v:.1f} us', v <= TARGET_DECODE_US))(
                    val(find(kind='decode', impl='mixc', mixer=m, B=1), 'sync_us')))
            row(f'decode B=64 >= {TARGET_DECODE_TBPS:g} TB/s of state', lambda m: (
                lambda v: None if v is None else (f'{v:.2f} TB/s', v >= TARGET_DECODE_TBPS))(
                    val(find(kind='decode', impl='mixc', mixer=m, B=64), 'tbps')))
    md.append('')
    if errors:
        md.append('## Errors\n')
        md.extend(f'- {e}' for e in errors)
        md.append('')
    if 'time' in kinds:
        md.append('![forward ms per implementation](gpu.svg)\n')
    text = '\n'.join(md)
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, 'gpu.md'), 'w') as f:
        f.write(text)
    if 'time' in kinds:
        with open(os.path.join(outdir, 'gpu.svg'), 'w') as f:
            f.write(svg(meta, res, mixers, shapes, find, val))
    return text


def report_decode(md, errors, find, val, cell, mixers):
    """The "Decode step" section of the report (and its errors into `errors`)."""
    md.append(f'## Decode step (T = 1 with a carried state, H = {H}, K = V = {D})\n')
    md.append(f'bf16 q, k, v, gates and beta; fp32 state [B, H, K, V] read and written each call. '
              f'mixc: `Kernel.step` (the state updated in place, the strategy auto); fla: '
              f'{", ".join(f"`{FLA_DECODE_NAMES[m]}`" for m in mixers)} with `initial_state` and '
              f'`output_final_state=True` (a new state each call, carried into the next). '
              f'Median us per call over CUDA-event-timed passes across rotated state buffers '
              f'(together > 4x the 50 MB L2), after a warm-up pass; TB/s: 2 x the state\'s bytes '
              f'over that time (the memory floor at {BANDWIDTH / 1e12:.1f} TB/s in the last '
              f'column). Synchronised: one call then `torch.cuda.synchronize()`, host clock, '
              f'median of {DECODE_SYNC_CALLS}. Errors: max|x - ref| / max|ref| of o (bf16) and '
              f'of the new state (fp32) after one step, against float64 from the same inputs '
              f'and state.\n')
    md.append('| mixer | B | mixc us | fla us | fla / mixc | mixc TB/s | fla TB/s | '
              'synchronised us, mixc / fla | host us a call, mixc / fla | '
              'rel. err o / state, mixc | rel. err o / state, fla | o rounded to bf16 | '
              'floor us |')
    md.append('|---|---|---|---|---|---|---|---|---|---|---|---|---|')
    f3 = lambda x: f'{x:.3g}'
    for m in mixers:
        for B in DECODE_BATCHES:
            rm = find(kind='decode', impl='mixc', mixer=m, B=B)
            rf = find(kind='decode', impl='fla', mixer=m, B=B)
            if rm is None and rf is None:
                continue
            ck = {i: find(kind='decode_check', impl=i, mixer=m, B=B)
                  for i in ('mixc', 'fla', 'bf16_floor')}
            for r, who in ((rm, 'mixc'), (rf, 'fla'), (ck['mixc'], 'mixc (check)'),
                           (ck['fla'], 'fla (check)')):
                if r and r.get('status') == 'error':
                    errors.append(f'{who}, decode {m}, B={B}: {r.get("msg", "")}')
            a, b = val(rm, 'us'), val(rf, 'us')
            sync_cell = (f'{cell(rm, "sync_us")} / {cell(rf, "sync_us")}'
                         if B == 1 else 'n/a')
            for i in ('mixc', 'fla'):
                r = ck[i]
                if r and r.get('status') == 'ok' and not (
                        float(r['relerr_o']) <= DECODE_TOL_O and
                        float(r['relerr_S']) <= DECODE_TOL_S):
                    errors.append(f'{i} (check), decode {m}, B={B}: rel. err o '
                                  f'{r["relerr_o"]}, state {r["relerr_S"]} (bounds '
                                  f'{DECODE_TOL_O:g}, {DECODE_TOL_S:g})')
            errs = lambda r: (cell(r) if r is None or r.get('status') != 'ok' else
                              f'{f3(float(r["relerr_o"]))} / {f3(float(r["relerr_S"]))}' + (
                                  '' if float(r['relerr_o']) <= DECODE_TOL_O and
                                  float(r['relerr_S']) <= DECODE_TOL_S else ' **over**'))
            floor = (rm or rf or {}).get('floor_us', 'n/a')
            md.append(f'| {TITLES.get(m, m)} | {B} | {cell(rm, "us")} | {cell(rf, "us")} | '
                      f'{f"{b / a:.2f}x" if a and b else "n/a"} | {cell(rm, "tbps", f3)} | '
                      f'{cell(rf, "tbps", f3)} | {sync_cell} | '
                      f'{(rm or {}).get("host_us", "n/a")} / {(rf or {}).get("host_us", "n/a")} | '
                      f'{errs(ck["mixc"])} | {errs(ck["fla"])} | '
                      f'{cell(ck["bf16_floor"], "relerr_o", f3)} | {floor} |')
    md.append('\n"fla / mixc" above 1: mixc is faster. "host us": the median time Python took to '
              'issue one call; where it nears the device time, the timing measures the launch '
              'path (ctypes for mixc, Triton\'s launcher and the allocation of o and the new '
              'state for fla), not the kernels. "o rounded to bf16": the float64 o rounded to '
              f'bf16, the error any bf16 output carries. "**over**": above {DECODE_TOL_O:g} (o) '
              f'or {DECODE_TOL_S:g} (state).\n')


def svg(meta, res, mixers, shapes, find, val):
    """Horizontal bars, ms on a log axis (shorter is faster), a tick at the memory floor."""
    impls = [('mixc', 'mixc', '#1f5fa8'), ('fla', 'fla (Triton)', '#e07b22'),
             ('sdpa', 'SDPA (softmax, causal)', '#999999')]
    groups = [(m, B, T) for m in mixers for B, T in shapes]
    bar, gap, left, right, top = 15, 12, 200, 210, 64
    width = 1000
    plot_w = width - left - right
    height = top + len(groups) * (len(impls) * bar + gap) + 70
    vals = []
    for m, B, T in groups:
        for i, _, _ in impls:
            v = val(find(kind='time', impl=i, mixer=m if i != 'sdpa' else 'sdpa', B=B, T=T))
            if v:
                vals.append(v)
        fl = find(kind='time', impl='mixc', mixer=m, B=B, T=T)
        if fl and fl.get('floor_ms'):
            vals.append(float(fl['floor_ms']))
    lo = 10 ** math.floor(math.log10(min(vals))) if vals else 0.01
    hi_v = max(vals) if vals else 10.0
    hi = min(k * 10 ** e for e in range(-3, 6) for k in (1, 2, 5) if k * 10 ** e >= hi_v * 1.3)
    x = lambda v: left + plot_w * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    e = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="Helvetica, Arial, sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="22" font-size="15" font-weight="bold">GPU forward, bf16, H={H}, '
           f'K=V={D}: ms per call (log scale, shorter is faster)</text>',
           f'<text x="{left}" y="40" fill="#555">{e(meta.get("gpu", "?"))}; torch '
           f'{e(meta.get("torch", "?"))}, fla {e(meta.get("fla", "?"))}; red tick: memory floor '
           f'at {BANDWIDTH / 1e12:.1f} TB/s</text>']
    bottom = height - 50
    d = lo
    while d <= hi * 1.0001:
        for mult in (1, 2, 5):
            v = d * mult
            if v > hi * 1.0001:
                break
            xv = x(v)
            out.append(f'<line x1="{xv:.1f}" y1="{top - 6}" x2="{xv:.1f}" y2="{bottom}" '
                       f'stroke="{"#ccc" if mult == 1 else "#eee"}"/>')
            out.append(f'<text x="{xv:.1f}" y="{bottom + 15}" text-anchor="middle" '
                       f'fill="#555">{v:g}</text>')
        d *= 10
    out.append(f'<text x="{left + plot_w / 2:.0f}" y="{bottom + 32}" text-anchor="middle">'
               f'ms per forward</text>')
    y = top
    for m, B, T in groups:
        out.append(f'<text x="{left - 10}" y="{y + len(impls) * bar / 2 + 4:.0f}" '
                   f'text-anchor="end" font-weight="bold">{e(TITLES.get(m, m))}, {B}x{T}</text>')
        fl = find(kind='time', impl='mixc', mixer=m, B=B, T=T)
        for i, label, colour in impls:
            r = find(kind='time', impl=i, mixer=m if i != 'sdpa' else 'sdpa', B=B, T=T)
            v = val(r)
            if v:
                out.append(f'<rect x="{left}" y="{y + 2}" width="{max(x(v) - left, 1):.1f}" '
                           f'height="{bar - 4}" fill="{colour}"/>')
                out.append(f'<text x="{x(v) + 4:.1f}" y="{y + bar - 4}" fill="#222">'
                           f'{v:.3g} ms</text>')
            else:
                why = 'error' if r and r.get('status') == 'error' else 'not run'
                out.append(f'<text x="{left + 4}" y="{y + bar - 4}" fill="#a00">{e(label)}: '
                           f'{why}</text>')
            y += bar
        if fl and fl.get('floor_ms'):
            xf = x(float(fl['floor_ms']))
            out.append(f'<line x1="{xf:.1f}" y1="{y - len(impls) * bar}" x2="{xf:.1f}" '
                       f'y2="{y}" stroke="#c00" stroke-width="2"/>')
        y += gap
    ly, lx = top, width - right + 20
    for i, label, colour in impls:
        out.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{lx + 17}" y="{ly + 10}" font-size="11">{e(label)}</text>')
        ly += 18
    out.append(f'<line x1="{lx}" y1="{ly + 6}" x2="{lx + 12}" y2="{ly + 6}" stroke="#c00" '
               f'stroke-width="2"/><text x="{lx + 17}" y="{ly + 10}" font-size="11">memory '
               f'floor</text>')
    out.append('</svg>\n')
    return '\n'.join(out)


# ---- the modes ----

def dry_run(args, mixers, shapes):
    """No GPU: the plan, and the CPU parts (mixers.mix through mixc's CPU backend against the
    numpy fp64 reference, if libmixc.so has one)."""
    import numpy as np
    print(f'fla_bench.py --dry-run: mixers {",".join(mixers)}; shapes '
          f'{", ".join(f"{B}x{T}" for B, T in shapes)}; H={H}, K=V={D}, bf16')
    for m in mixers:
        for B, T in shapes:
            per = B * T * H
            gates = sum(per * (D if pk else 1) for pk in reference.GATES[m].values())
            set_bytes = 2 * (4 * per * D + gates)
            nsets = min(16, max(2, math.ceil(4 * L2_BYTES / set_bytes)))
            print(f'  {m:12s} B={B} T={T}: {set_bytes / 1e6:.0f} MB per input set, {nsets} sets,'
                  f' floor {set_bytes / BANDWIDTH * 1e3:.3f} ms')
    for B in DECODE_BATCHES:
        state_bytes, nbuf = decode_plan(B)
        print(f'  decode step B={B} T=1: {state_bytes / 2**20:g} MiB fp32 state, {nbuf} buffers '
              f'({nbuf * state_bytes / 1e6:.0f} MB), floor {2 * state_bytes / BANDWIDTH * 1e6:.2f}'
              f' us')
    print(f'  decode step, fla: {", ".join(FLA_DECODE_NAMES[m] for m in mixers)}')
    try:
        import mixc
        ctx = mixc.Context()
        mod = ctx.load(MIXERS_MIX)
        print(f'  mixc {mixc.version()} ({mixc.library_path()}): mixers.mix compiles: '
              f'{", ".join(mod.mixers)}')
    except Exception as ex:
        print(f'  mixc: {short(ex)}')
        return 1
    rng = np.random.default_rng()
    status = 0
    B, T, Hh, K = 2, 70, 2, 16
    for m in mixers:
        d = {n: rng.standard_normal((B, T, Hh, K)) for n in ('q', 'k', 'v')}
        if m in ('delta', 'gated_delta'):
            for n in ('q', 'k'):
                d[n] /= np.linalg.norm(d[n], axis=-1, keepdims=True)
        for n, pk in reference.GATES[m].items():
            x = rng.standard_normal((B, T, Hh, K) if pk else (B, T, Hh))
            d[n] = -np.logaddexp(0, -x) if n == 'g' else 1 / (1 + np.exp(-x))
        d32 = {n: x.astype('float32') for n, x in d.items()}
        ref, _ = reference.recurrent(np, m, *(d32[n].astype(np.float64) for n in ('q', 'k', 'v')),
                                     d32['g'].astype(np.float64) if 'g' in d32 else None,
                                     d32['beta'].astype(np.float64) if 'beta' in d32 else None)
        k = None
        try:
            k = mod.kernel(m, dims={'K': K, 'V': K})
            o = np.full((B, T, Hh, K), np.nan, dtype='float32')
            k.forward(**d32, outputs={'o': o})
            e = reference.relerr(o.astype(np.float64), ref)
            ok = e <= 2e-4
            status |= not ok
            print(f'  {m:12s} mixc CPU vs numpy fp64 reference (B={B} T={T} H={Hh} K=V={K}, f32): '
                  f'rel. err {e:.2g} {"ok" if ok else "FAILED (> 2e-4)"}')
        except Exception as ex:
            print(f'  {m:12s} mixc CPU: {short(ex)}')
        # the decode step: one token from a carried state, Kernel.step (in place) against the
        # reference's step from S0 (the one the GPU check uses)
        try:
            if k is None:
                raise RuntimeError('no kernel (above)')
            S0 = rng.standard_normal((B, Hh, K, K))
            one = {n: x[:, :1] for n, x in d32.items()}
            o_ref, S_ref = reference.recurrent(
                np, m, *(one[n].astype(np.float64) for n in ('q', 'k', 'v')),
                one['g'].astype(np.float64) if 'g' in one else None,
                one['beta'].astype(np.float64) if 'beta' in one else None,
                S0=S0.astype('float32').astype(np.float64))
            S = S0.astype('float32')
            o = np.full((B, 1, Hh, K), np.nan, dtype='float32')
            k.step({'S': S}, outputs={'o': o}, **{n: np.ascontiguousarray(x)
                                                  for n, x in one.items()})
            e = max(reference.relerr(o.astype(np.float64), o_ref),
                    reference.relerr(S.astype(np.float64), S_ref))
            ok = e <= 2e-4
            status |= not ok
            print(f'  {m:12s} mixc CPU step (T=1, carried state) vs numpy fp64 reference: '
                  f'rel. err (o, state) {e:.2g} {"ok" if ok else "FAILED (> 2e-4)"}')
        except Exception as ex:
            print(f'  {m:12s} mixc CPU step: {short(ex)}')
    return status


def or_error(make, mixer, not_run=False):
    """make(mixer), or the exception it raised (NotRun where not_run: --no-fla), which the
    benchmark parts log in place of that implementation's results."""
    try:
        if not_run:
            raise NotRun('not run (--no-fla)')
        return make(mixer)
    except Exception as ex:
        return ex


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--results', default=os.path.join(ROOT, 'bench', 'results'))
    ap.add_argument('--mixers', default=','.join(reference.MIXERS))
    ap.add_argument('--shapes', default=','.join(f'{B}x{T}' for B, T in SHAPES))
    ap.add_argument('--runs', type=int, default=30)
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--no-cold', action='store_true', help='skip the first-call measurements')
    ap.add_argument('--cold-only', action='store_true', help='only the first-call measurements')
    ap.add_argument('--no-check', action='store_true', help='skip the accuracy check')
    ap.add_argument('--no-fla', action='store_true', help='mixc and SDPA only')
    ap.add_argument('--decode', action='store_true',
                    help='only the decode step (T = 1, B = 1 and 64; log: gpu-decode.log)')
    ap.add_argument('--no-decode', action='store_true', help='skip the decode step')
    ap.add_argument('--dry-run', action='store_true', help='no GPU: the plan and a CPU check')
    ap.add_argument('--from-logs', nargs='+', metavar='LOG', help='write the report from logs')
    ap.add_argument('--cold-one', nargs=3, metavar=('IMPL', 'MIXER', 'CACHE'),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    mixers = [m for m in args.mixers.split(',') if m]
    for m in mixers:
        if m not in reference.MIXERS:
            ap.error(f'--mixers: unknown mixer {m!r} (known: {", ".join(reference.MIXERS)})')
    try:
        shapes = [tuple(int(v) for v in s.split('x')) for s in args.shapes.split(',') if s]
        assert all(len(s) == 2 for s in shapes)
    except (ValueError, AssertionError):
        ap.error(f'--shapes {args.shapes!r}: expected BxT,BxT,...')

    if args.decode and (args.cold_only or args.no_decode):
        ap.error('--decode runs only the decode step: not with --cold-only or --no-decode')
    if args.from_logs:
        meta, res = parse_logs(args.from_logs)
        print(report(meta, res, args.results))
        return 0
    if args.dry_run:
        return dry_run(args, mixers, shapes)
    try:
        import torch
    except ImportError:
        print('fla_bench.py: needs torch with CUDA (torch is not installed here); --dry-run '
              'checks the script without a GPU', file=sys.stderr)
        return 1
    if not torch.cuda.is_available():
        print('fla_bench.py: needs a CUDA device (torch.cuda.is_available() is False); --dry-run '
              'checks the script without a GPU', file=sys.stderr)
        return 1
    if args.cold_one:
        cold_one(*args.cold_one)
        return 0

    os.makedirs(args.results, exist_ok=True)
    log_path = os.path.join(args.results, 'gpu-cold.log' if args.cold_only else
                            'gpu-decode.log' if args.decode else 'gpu.log')
    log = open(log_path, 'w')
    try:
        import triton
        tv = triton.__version__
    except Exception:
        tv = 'not installed'
    try:
        import fla
        fv = getattr(fla, '__version__', '?')
    except Exception as ex:
        fv = f'not importable ({short(ex)})'
    # MIXC_COMMIT: the commit the carried build was made from (a copy of the tree on the GPU
    # machine may carry a .git that is not that commit's)
    commit = os.environ.get('MIXC_COMMIT', '')
    try:
        commit = commit or subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'],
                                          capture_output=True, text=True).stdout.strip() or 'unknown'
    except OSError:
        commit = 'unknown (no git)'
    emit(log, 'META', date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), commit=commit,
         gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=tv, fla=fv,
         cuda=torch.version.cuda, mixc_lib=os.environ.get('MIXC_LIB', '?'))
    t_start = time.time()
    if args.decode:
        for m in mixers:
            kernel = fla_fn = None
            try:
                kernel = or_error(mixc_kernel, m)
                fla_fn = or_error(fla_step_op, m, args.no_fla)
                run_decode(torch, log, m, kernel, fla_fn, args.runs, args.warmup,
                           not args.no_check)
            except Exception as ex:
                failed(log, ex, kind='mixer', mixer=m)
            del kernel, fla_fn
    elif not args.cold_only:
        cli = os.environ.get('MIXC_CLI')
        if not args.no_check:
            check_reference(torch, log, cli)
        for m in mixers:
            # each part below logs its own errors; this guards the rest of the run
            kernel = fla_fn = None
            try:
                kernel = or_error(mixc_kernel, m)
                fla_fn = or_error(fla_op, m, args.no_fla)
                if not args.no_check:
                    check_accuracy(torch, log, m, kernel, fla_fn)
                for B, T in shapes:
                    bench_shape(torch, log, m, kernel, fla_fn, B, T, args.runs, args.warmup)
                if not args.no_decode:
                    fla_step = or_error(fla_step_op, m, args.no_fla)
                    run_decode(torch, log, m, kernel, fla_step, args.runs, args.warmup,
                               not args.no_check)
            except Exception as ex:
                failed(log, ex, kind='mixer', mixer=m)
            del kernel, fla_fn
        for B, T in shapes:
            bench_sdpa(torch, log, B, T, args.runs, args.warmup)
    if not args.no_cold and not args.decode:
        try:
            run_cold(log, mixers, args.no_fla)
        except Exception as ex:
            failed(log, ex, kind='cold')
    emit(log, 'META', seconds=f'{time.time() - t_start:.0f}')
    log.close()
    logs = [os.path.join(args.results, n) for n in ('gpu.log', 'gpu-cold.log', 'gpu-decode.log')]
    logs = sorted((p for p in logs if os.path.exists(p)), key=os.path.getmtime)
    print()
    try:
        meta, res = parse_logs(logs)
        print(report(meta, res, args.results))
    except Exception as ex:
        trace(None, ex, 'report')
        print(f'fla_bench.py: the report failed; the log is complete: fla_bench.py --from-logs '
              f'{" ".join(logs)} writes it again', file=sys.stderr)
        return 1
    plot = ', gpu.svg' if any(r.get('kind') == 'time' for r in res) else ''
    print(f'\nfla_bench.py: wrote {args.results}/gpu.md{plot}, {os.path.basename(log_path)} '
          f'(the report from {", ".join(os.path.basename(p) for p in logs)})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
