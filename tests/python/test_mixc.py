#!/usr/bin/env python3
"""Tests of the Python package (python/mixc) on the CPU backend, and of the GPU benchmark's
fp64 reference (bench/gpu/reference.py) against mixc's own (`mixc run --backend ref`).

    MIXC_LIB=build/libmixc.so MIXC_CLI=build/bin/mixc python3 tests/python/test_mixc.py

Every run draws fresh random inputs (the seed is printed; MIXC_TEST_SEED=N replays it).
Outputs and final states are poisoned with NaN before each run; NaN never passes.
Tolerances, max|x - ref| / max|ref| against fp64: 2e-4 f32 outputs, 2e-3 f16 outputs,
1e-2 bf16 outputs; final (fp32) states 2e-4, except on CUDA from bf16/f16 inputs: 5e-3 (those
kernels multiply on single-TF32 tensor cores, docs/gpu.md; the bf16 target of PERFORMANCE.md).
The CLI's, docs/cli.md. torch parts are skipped when torch is not installed.
"""
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'python'))
sys.path.insert(0, os.path.join(ROOT, 'bench', 'gpu'))
import mixc  # noqa: E402
import reference  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

SEED = int(os.environ.get('MIXC_TEST_SEED') or int.from_bytes(os.urandom(4), 'little'))
print(f'test_mixc.py: seed {SEED} (MIXC_TEST_SEED={SEED} replays it)', flush=True)
MIXERS_MIX = os.path.join(ROOT, 'bench', 'gpu', 'mixers.mix')
TOL = {'float32': 2e-4, 'float16': 2e-3, 'bfloat16': 1e-2}
STATE_TOL = 2e-4        # fp32 states: f32 inputs anywhere (CUDA: 3xTF32), any input on the CPU
STATE_TOL_CUDA_LOW = 5e-3  # fp32 states on CUDA from bf16/f16 inputs (single-TF32 products)


def inputs(rng, mixer, B, T, H, K, V, dtype='float32'):
    """Fresh inputs in the benchmark's ranges, rounded to dtype; returns (rounded, float64)."""
    logsig = lambda x: -np.logaddexp(0, -x)
    d = {'q': rng.standard_normal((B, T, H, K)), 'k': rng.standard_normal((B, T, H, K)),
         'v': rng.standard_normal((B, T, H, V))}
    if mixer in ('delta', 'gated_delta'):  # the delta rule needs unit keys (fla: the caller's)
        for n in ('q', 'k'):
            d[n] /= np.linalg.norm(d[n], axis=-1, keepdims=True)
    for n, per_key in reference.GATES[mixer].items():
        shape = (B, T, H, K) if per_key else (B, T, H)
        x = rng.standard_normal(shape)
        d[n] = (logsig(x) / (16 if per_key else 1)) if n == 'g' else 1 / (1 + np.exp(-x))
    low = {n: x.astype(dtype) for n, x in d.items()}
    return low, {n: x.astype(np.float64) for n, x in low.items()}


def ref(mixer, d64, S0=None, scale=None):
    return reference.recurrent(np, mixer, d64['q'], d64['k'], d64['v'], d64.get('g'),
                               d64.get('beta'), scale=scale, S0=S0)


def poisoned(shape, dtype='float32'):
    return np.full(shape, np.nan, dtype=dtype)


_CPU = []


def cpu_backend(mod):
    """None if this libmixc.so runs kernels on the CPU, else why not (-DMIXC_LLVM=OFF)."""
    if not _CPU:
        k = mod.kernel('gla', dims={'K': 4, 'V': 4})
        d = {n: np.zeros((1, 1, 1, 4), dtype='float32') for n in ('q', 'k', 'v', 'g')}
        try:
            k(**d)
            _CPU.append(None)
        except mixc.UnsupportedError as e:
            _CPU.append(str(e))
    return _CPU[0]


def cuda_device():
    """None if torch sees a CUDA device, else why not."""
    if torch is None:
        return 'torch is not installed'
    if not torch.cuda.is_available():
        return 'torch sees no CUDA device'
    return None


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ctx = mixc.Context(2)
        cls.mod = cls.ctx.load(MIXERS_MIX)
        cls.rng = np.random.default_rng(SEED + hash(cls.__name__) % 1000)

    def close(self, x, r, tol, what):
        x = np.asarray(x, dtype=np.float64)
        self.assertFalse(np.isnan(x).any(), f'{what}: NaN (an element left unwritten?)')
        e = reference.relerr(x, r)
        self.assertLessEqual(e, tol, f'{what}: relative error {e:.3g} > {tol:g} (seed {SEED})')
        return e


class TestReference(Base):
    """bench/gpu/reference.py (numpy) against mixc's fp64 reference, through the CLI."""

    def test_against_mixc_ref(self):
        cli = os.environ.get('MIXC_CLI')
        if not cli or not os.path.exists(cli):
            self.skipTest('MIXC_CLI (the mixc binary) is not set')
        B, T, H, K, V = 2, 9, 2, 8, 4
        for m in reference.MIXERS:
            low, d64 = inputs(self.rng, m, B, T, H, K, V, 'float64')
            S0 = self.rng.standard_normal((B, H, K, V)) * 0.5
            with tempfile.TemporaryDirectory() as tmp:
                args = [cli, 'run', MIXERS_MIX, '--mixer', m, '--backend', 'ref', '--out', tmp]
                for n, x in list(d64.items()) + [('S', S0)]:
                    np.save(os.path.join(tmp, f'in_{n}.npy'), x)
                    args += ['--in', f'{n}={os.path.join(tmp, f"in_{n}.npy")}']
                p = subprocess.run(args, capture_output=True, text=True)
                self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
                o_ref = np.load(os.path.join(tmp, 'o.npy')).astype(np.float64)
                S_ref = np.load(os.path.join(tmp, 'S.npy')).astype(np.float64)
            o, S = ref(m, d64, S0)
            # mixc writes float32 .npy: agreement to float32 rounding
            self.assertLessEqual(reference.relerr(o, o_ref), 1e-6, m)
            self.assertLessEqual(reference.relerr(S, S_ref), 1e-6, m)


class TestForward(Base):
    def setUp(self):
        if cpu_backend(self.mod):
            self.skipTest(cpu_backend(self.mod))

    def test_mixers_f32_f16(self):
        B, T, H, K, V = 2, 70, 3, 16, 8
        for m in reference.MIXERS:
            kern = self.mod.kernel(m, dims={'K': K, 'V': V})
            for dt in ('float32', 'float16'):
                low, d64 = inputs(self.rng, m, B, T, H, K, V, dt)
                S0 = (self.rng.standard_normal((B, H, K, V)) * 0.5).astype('float32')
                o_buf, S_buf = poisoned((B, T, H, V), dt), poisoned((B, H, K, V))
                res = kern.forward(**low, outputs={'o': o_buf}, initial_states={'S': S0},
                                   final_states={'S': S_buf})
                self.assertIs(res['o'], o_buf)
                self.assertIs(res['S'], S_buf)
                o, S = ref(m, d64, S0.astype(np.float64))
                self.close(o_buf, o, TOL[dt], f'{m} {dt} o')
                self.close(S_buf, S, STATE_TOL, f'{m} {dt} S')

    def test_allocated_outputs_and_zero_state(self):
        B, T, H, K, V = 1, 33, 2, 16, 16
        kern = self.mod.kernel('gla', K=K, V=V, strategy='recurrent')
        low, d64 = inputs(self.rng, 'gla', B, T, H, K, V)
        res = kern(**low, final_states=True)
        self.assertEqual(sorted(res), ['S', 'o'])
        self.assertEqual(res['o'].shape, (B, T, H, V))
        self.assertEqual(res['o'].dtype, np.float32)
        self.assertEqual(res['S'].shape, (B, H, K, V))
        o, S = ref('gla', d64)
        self.close(res['o'], o, TOL['float32'], 'o')
        self.close(res['S'], S, STATE_TOL, 'S')
        ms, n = kern.compile_ms()
        self.assertGreaterEqual(n, 1)

    def test_parallel_strategy(self):
        # the quadratic form (one chunk over the whole sequence), against the fp64 reference
        B, T, H, K, V = 2, 45, 2, 16, 16
        for m in ('gla', 'gated_delta'):
            kern = self.mod.kernel(m, K=K, V=V, strategy='parallel')
            low, d64 = inputs(self.rng, m, B, T, H, K, V)
            res = kern(**low, final_states=True)
            o, S = ref(m, d64)
            self.close(res['o'], o, TOL['float32'], f'{m} parallel o')
            self.close(res['S'], S, STATE_TOL, f'{m} parallel S')

    def test_scalar_param(self):
        B, T, H, K, V = 2, 20, 2, 8, 8
        kern = self.mod.kernel('simple_gla', dims={'K': K, 'V': V})
        low, d64 = inputs(self.rng, 'simple_gla', B, T, H, K, V)
        o = kern(**low, scale=0.25)['o']
        self.close(o, ref('simple_gla', d64, scale=0.25)[0], TOL['float32'], 'o, scale 0.25')

    def test_strided_views(self):
        B, T, H, K, V = 2, 40, 3, 16, 8
        kern = self.mod.kernel('gated_delta', dims={'K': K, 'V': V})
        low, d64 = inputs(self.rng, 'gated_delta', B, T, H, K, V)
        # [B, H, T, ...] buffers viewed as [B, T, H, ...]: no copy
        views = {n: np.ascontiguousarray(np.swapaxes(x, 1, 2)).swapaxes(1, 2)
                 for n, x in low.items()}
        self.assertFalse(views['q'].flags['C_CONTIGUOUS'])
        o_buf = np.swapaxes(poisoned((B, H, T, V)), 1, 2)
        kern(**views, outputs={'o': o_buf})
        self.close(o_buf, ref('gated_delta', d64)[0], TOL['float32'], 'strided o')

    def test_step_continues_forward(self):
        B, T1, T2, H, K, V = 2, 37, 5, 2, 16, 8
        kern = self.mod.kernel('delta', dims={'K': K, 'V': V})
        low, d64 = inputs(self.rng, 'delta', B, T1 + T2, H, K, V)
        first = {n: x[:, :T1] for n, x in low.items()}
        S = kern(**first, final_states=True)['S']
        outs = []
        for t in range(T1, T1 + T2):  # one token at a time
            o_buf = poisoned((B, 1, H, V))
            kern.step({'S': S}, **{n: x[:, t:t + 1] for n, x in low.items()},
                      outputs={'o': o_buf})
            outs.append(o_buf)
        o, S_ref = ref('delta', d64)
        self.close(np.concatenate(outs, 1), o[:, T1:], TOL['float32'], 'step o')
        self.close(S, S_ref, STATE_TOL, 'step S')

    def test_varlen(self):
        lens = [5, 0, 12, 13]
        cu = np.cumsum([0] + lens).astype('int32')
        T, H, K, V = int(cu[-1]), 2, 16, 8
        kern = self.mod.kernel('simple_gla', dims={'K': K, 'V': V})
        low, d64 = inputs(self.rng, 'simple_gla', 1, T, H, K, V)
        S0 = (self.rng.standard_normal((len(lens), H, K, V)) * 0.5).astype('float32')
        res = kern(**low, cu_seqlens=cu, initial_states={'S': S0}, final_states=True)
        self.assertEqual(res['S'].shape, (len(lens), H, K, V))
        for i in range(len(lens)):
            a, b = cu[i], cu[i + 1]
            o, S = ref('simple_gla', {n: x[:, a:b] for n, x in d64.items()},
                       S0[i:i + 1].astype(np.float64))
            if b > a:
                self.close(res['o'][:, a:b], o, TOL['float32'], f'varlen o, sequence {i}')
            self.close(res['S'][i:i + 1], S, STATE_TOL, f'varlen S, sequence {i}')


class TestErrors(Base):
    def test_wait_ready_cpu(self):
        """A CPU kernel has no second tier: wait_ready returns at once, nothing pending."""
        kern = self.mod.kernel('gla', dims={'K': 16, 'V': 8})
        self.assertIsNone(kern.wait_ready())
        self.assertEqual(kern.optimized_ms(), (0.0, 0))

    def test_bad_arguments(self):
        kern = self.mod.kernel('gla', dims={'K': 16, 'V': 8})
        low, _ = inputs(self.rng, 'gla', 2, 8, 2, 16, 8)
        bad = dict(low, k=low['k'][..., :8])
        with self.assertRaises(mixc.ArgumentError) as cm:
            kern(**bad)
        e = cm.exception
        self.assertEqual(e.status, 2)
        self.assertIn("input 'k'", e.message)
        self.assertIn('[2, 8, 2, 8]', e.message)
        with self.assertRaises(mixc.ArgumentError) as cm:
            kern(**low, qq=low['q'])
        self.assertIn("'qq'", str(cm.exception))
        missing = dict(low)
        del missing['g']
        with self.assertRaises(mixc.ArgumentError) as cm:
            kern(**missing)
        self.assertIn("input 'g' is missing", str(cm.exception))
        with self.assertRaises(mixc.ArgumentError) as cm:
            kern(**dict(low, v=low['v'].astype(np.float64)))
        self.assertIn("input 'v'", str(cm.exception))
        with self.assertRaises(TypeError):
            kern(**dict(low, q=low['q'].tolist()))
        with self.assertRaises(mixc.ArgumentError):
            self.mod.kernel('gla', dims={'K': 16, 'V': 8}, device='gpu')
        with self.assertRaises(mixc.ArgumentError) as cm:
            self.mod.kernel('gla', dims={'K': 16})
        self.assertIn("dim 'V' is missing", str(cm.exception))

    def test_source_error(self):
        with self.assertRaises(mixc.SourceError) as cm:
            self.ctx.compile('mixer m {\n  dim K\n  input q[K]\n  output o = sum(i, qq[i])\n}\n',
                             'bad.mix')
        self.assertEqual(cm.exception.status, 1)
        self.assertIn('bad.mix:4:', cm.exception.message)

    def test_missing_library(self):
        code = 'import mixc\ntry:\n    mixc.Context()\nexcept OSError as e:\n    print(e)\n'
        env = dict(os.environ, MIXC_LIB='/nonexistent/libmixc.so',
                   PYTHONPATH=os.path.join(ROOT, 'python'))
        p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn('/nonexistent/libmixc.so', p.stdout)


class TestCachedCalls(Base):
    """Repeated calls: a kernel keeps the ctypes structs of a call signature (names, dtypes,
    shapes, strides, devices) and later calls with it only rewrite the data pointers. Every
    change of signature must still give correct results, and bad input the same errors."""

    def setUp(self):
        if cpu_backend(self.mod):
            self.skipTest(cpu_backend(self.mod))

    def fresh(self, m='gated_delta', K=16, V=8, **kw):
        return self.mod.kernel(m, dims={'K': K, 'V': V}, **kw)

    def check_forward(self, kern, m, B, T, H, K, V, dt='float32', what='', view=False):
        low, d64 = inputs(self.rng, m, B, T, H, K, V, dt)
        if view:  # [B, H, T, ...] buffers seen as [B, T, H, ...]
            low = {n: np.ascontiguousarray(np.swapaxes(x, 1, 2)).swapaxes(1, 2)
                   for n, x in low.items()}
        S0 = (self.rng.standard_normal((B, H, K, V)) * 0.5).astype('float32')
        o_buf, S_buf = poisoned((B, T, H, V), dt), poisoned((B, H, K, V))
        res = kern.forward(**low, outputs={'o': o_buf}, initial_states={'S': S0},
                           final_states={'S': S_buf})
        self.assertIs(res['o'], o_buf)
        self.assertIs(res['S'], S_buf)
        o, S = ref(m, d64, S0.astype(np.float64))
        self.close(o_buf, o, TOL[dt], f'{what} o')
        self.close(S_buf, S, STATE_TOL, f'{what} S')

    def test_signature_changes(self):
        m, H, K, V = 'gated_delta', 2, 16, 8
        kern = self.fresh(m, K, V)
        for i in range(3):  # the same signature, fresh data: every call reads its own
            self.check_forward(kern, m, 2, 9, H, K, V, what=f'repeat {i}')
        self.assertEqual(len(kern._cache), 1)
        self.check_forward(kern, m, 2, 17, H, K, V, what='new T')
        self.check_forward(kern, m, 3, 9, H, K, V, what='new B')
        self.check_forward(kern, m, 2, 9, H, K, V, 'float16', what='f16')
        self.check_forward(kern, m, 2, 9, H, K, V, view=True, what='strided views')
        self.check_forward(kern, m, 2, 9, H, K, V, what='back to the first')
        self.assertEqual(len(kern._cache), 5)

    def test_allocated_and_scalars(self):
        B, T, H, K, V = 2, 12, 2, 16, 8
        kern = self.fresh('simple_gla', K, V)
        prev = None
        for scale in (0.25, 0.25, 0.5, 1, 0.5):  # a number's value changes between calls
            low, d64 = inputs(self.rng, 'simple_gla', B, T, H, K, V)
            res = kern(**low, scale=scale, final_states=True)
            o, S = ref('simple_gla', d64, scale=scale)
            self.close(res['o'], o, TOL['float32'], f'o, scale {scale}')
            self.close(res['S'], S, STATE_TOL, f'S, scale {scale}')
            self.assertEqual(list(res), ['o', 'S'])
            if prev is not None:  # allocated anew on every call
                self.assertIsNot(res['o'], prev['o'])
                self.assertIsNot(res['S'], prev['S'])
            prev = res
        # final_states as False, {}, a list and a dict with None: the same results each way
        low, d64 = inputs(self.rng, 'simple_gla', B, T, H, K, V)
        o, S = ref('simple_gla', d64)
        for fs in (False, {}, False, ['S'], ['S'], {'S': None}, {'S': None}, None):
            res = kern(**low, final_states=fs)
            self.assertEqual(sorted(res), ['S', 'o'] if fs else ['o'], repr(fs))
            self.close(res['o'], o, TOL['float32'], f'o, final_states={fs!r}')
            if fs:
                self.close(res['S'], S, STATE_TOL, f'S, final_states={fs!r}')

    def test_step_and_varlen(self):
        lens = [5, 0, 9]
        H, K, V = 2, 16, 8
        kern = self.fresh('delta', K, V)
        for rep in range(2):  # cu_seqlens of other values, same signature
            ls = lens if rep == 0 else lens[::-1]
            cu = np.cumsum([0] + ls).astype('int32')
            low, d64 = inputs(self.rng, 'delta', 1, int(cu[-1]), H, K, V)
            S = kern(**low, cu_seqlens=cu, final_states=True)['S']
            for i in range(len(ls)):
                a, b = cu[i], cu[i + 1]
                _, S_ref = ref('delta', {n: x[:, a:b] for n, x in d64.items()})
                self.close(S[i:i + 1], S_ref, STATE_TOL, f'varlen S {i}, rep {rep}')
        B, T = 3, 6
        low, d64 = inputs(self.rng, 'delta', B, T, H, K, V)
        S = np.zeros((B, H, K, V), dtype='float32')
        outs = []
        for t in range(T):  # allocated o, then given o
            one = {n: x[:, t:t + 1] for n, x in low.items()}
            if t % 2:
                o_buf = poisoned((B, 1, H, V))
                self.assertIs(kern.step({'S': S}, **one, outputs={'o': o_buf})['o'], o_buf)
                outs.append(o_buf)
            else:
                outs.append(kern.step({'S': S}, **one)['o'])
        o, S_ref = ref('delta', d64)
        self.close(np.concatenate(outs, 1), o, TOL['float32'], 'step o')
        self.close(S, S_ref, STATE_TOL, 'step S')

    def test_errors_after_cached_calls(self):
        """Bad input to a kernel with cached signatures: the errors of a fresh kernel."""
        B, T, H, K, V = 2, 8, 2, 16, 8
        low, _ = inputs(self.rng, 'gla', B, T, H, K, V)
        S = np.zeros((B, H, K, V), dtype='float32')
        bads = [dict(low, k=low['k'][..., :8]), dict(low, v=low['v'].astype(np.float64)),
                dict(low, q=low['q'].tolist()), dict(low, qq=low['q']),
                {n: x for n, x in low.items() if n != 'g'},
                dict(low, q=np.ascontiguousarray(low['q'], dtype='>f4'))]

        def errors(kern, warm):
            out = []
            for bad in bads:
                for call in (lambda: kern(**bad), lambda: kern.step({'S': S}, **bad),
                             lambda: kern(**low, outputs={'o': bad.get('k')})):
                    if warm:
                        kern(**low)
                        kern.step({'S': S}, **low)
                    try:
                        call()
                        out.append(None)
                    except Exception as e:  # noqa: BLE001
                        out.append((type(e), str(e)))
            return out

        cold = errors(self.fresh('gla', K, V), False)
        warm = errors(self.fresh('gla', K, V), True)
        self.assertEqual(cold, warm)
        self.assertNotIn(None, [c for i, c in enumerate(cold) if i % 3 != 2])  # all refused

    def test_threads(self):
        """Threads sharing a kernel and a signature: each call reads its own tensors."""
        import threading
        B, T, H, K, V = 1, 16, 2, 16, 8
        kern = self.fresh('gated_delta', K, V)
        work = [inputs(self.rng, 'gated_delta', B, T, H, K, V) for _ in range(4)]
        kern(**work[0][0])
        failures = []

        def run(low, d64):
            o = ref('gated_delta', d64)[0]
            for _ in range(20):
                e = reference.relerr(kern(**low)['o'].astype(np.float64), o)
                if not e <= TOL['float32']:
                    failures.append(e)

        threads = [threading.Thread(target=run, args=w) for w in work]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(failures, [])


@unittest.skipIf(torch is None, 'torch is not installed')
class TestTorch(Base):
    def test_bf16_cpu_and_autograd(self):
        if cpu_backend(self.mod):
            self.skipTest(cpu_backend(self.mod))
        B, T, H, K, V = 2, 50, 2, 16, 8
        kern = self.mod.kernel('gla', dims={'K': K, 'V': V})
        low, _ = inputs(self.rng, 'gla', B, T, H, K, V)
        t = {n: torch.from_numpy(x).to(torch.bfloat16) for n, x in low.items()}
        d64 = {n: x.double().numpy() for n, x in t.items()}
        o_ref = ref('gla', d64)[0]
        o = kern(**t, outputs={'o': torch.full((B, T, H, V), float('nan'),
                                              dtype=torch.bfloat16)})['o']
        self.close(o.float().numpy(), o_ref, TOL['bfloat16'], 'torch bf16 o')
        req = {n: x.clone().requires_grad_(True) for n, x in t.items()}
        out = mixc.apply(kern, **req)
        self.close(out['o'].detach().float().numpy(), o_ref, TOL['bfloat16'], 'autograd o')
        self.assertTrue(out['o'].requires_grad)
        with self.assertRaises(NotImplementedError) as cm:
            out['o'].float().sum().backward()
        self.assertIn('backward', str(cm.exception))

    def test_cached_torch_cpu(self):
        if cpu_backend(self.mod):
            self.skipTest(cpu_backend(self.mod))
        B, T, H, K, V = 2, 10, 2, 16, 8
        kern = self.mod.kernel('gated_delta', dims={'K': K, 'V': V})
        for i, (dt, view, np_in) in enumerate([(torch.float32, False, False)] * 2 +
                                              [(torch.bfloat16, False, False),
                                               (torch.float32, True, False),
                                               (torch.float32, False, True),
                                               (torch.float32, False, False)]):
            low, _ = inputs(self.rng, 'gated_delta', B, T, H, K, V)
            t = {n: torch.from_numpy(x).to(dt) for n, x in low.items()}
            if view:
                t = {n: x.transpose(1, 2).contiguous().transpose(1, 2) for n, x in t.items()}
            d64 = {n: x.double().numpy() for n, x in t.items()}
            if np_in:
                t = {n: x.numpy() for n, x in t.items()}
            S = torch.zeros(B, H, K, V)
            res = kern.step({'S': S}, **{n: x[:, :1] for n, x in t.items()})
            o, S_ref = ref('gated_delta', {n: x[:, :1] for n, x in d64.items()})
            self.assertEqual(type(res['o']).__module__.split('.')[0], 'numpy' if np_in else
                             'torch')
            self.close(np.asarray(torch.as_tensor(res['o']).float()), o,
                       TOL['bfloat16' if dt == torch.bfloat16 else 'float32'], f'step o {i}')
            self.close(S.numpy(), S_ref, STATE_TOL, f'step S {i}')
            res = kern(**t, scale=0.3, final_states=True)
            o, S_ref = ref('gated_delta', d64, scale=0.3)
            self.close(np.asarray(torch.as_tensor(res['o']).float()), o,
                       TOL['bfloat16' if dt == torch.bfloat16 else 'float32'], f'o {i}')
            self.close(np.asarray(res['S']), S_ref, STATE_TOL, f'S {i}')

    def test_device_mismatch(self):
        if cuda_device():
            self.skipTest(cuda_device())
        kern = self.mod.kernel('gla', dims={'K': 16, 'V': 8}, device='cuda')
        low, _ = inputs(self.rng, 'gla', 1, 4, 1, 16, 8)
        with self.assertRaises(mixc.ArgumentError) as cm:
            kern(**{n: torch.from_numpy(x) for n, x in low.items()})
        self.assertIn('CUDA', str(cm.exception))


@unittest.skipIf(cuda_device() is not None, cuda_device() or '')
class TestCuda(Base):
    """The CUDA path: torch CUDA tensors, device pointers, torch's current stream."""

    def to_cuda(self, low):
        t = {n: torch.from_numpy(x).to('cuda', torch.bfloat16) for n, x in low.items()}
        return t, {n: x.double().cpu().numpy() for n, x in t.items()}

    def test_mixers_bf16(self):
        B, T, H, K, V = 2, 100, 2, 32, 32
        for m in reference.MIXERS:
            kern = self.mod.kernel(m, dims={'K': K, 'V': V}, device='cuda')
            low, _ = inputs(self.rng, m, B, T, H, K, V)
            t, d64 = self.to_cuda(low)
            S0 = torch.from_numpy(self.rng.standard_normal((B, H, K, V)) * 0.5).float().cuda()
            o = torch.full((B, T, H, V), float('nan'), dtype=torch.bfloat16, device='cuda')
            S = torch.full((B, H, K, V), float('nan'), device='cuda')
            kern(**t, outputs={'o': o}, initial_states={'S': S0}, final_states={'S': S})
            torch.cuda.synchronize()
            o_ref, S_ref = ref(m, d64, S0.double().cpu().numpy())
            self.close(o.float().cpu().numpy(), o_ref, TOL['bfloat16'], f'cuda {m} o')
            self.close(S.cpu().numpy(), S_ref, STATE_TOL_CUDA_LOW, f'cuda {m} S')

    def test_tiers(self):
        """A cold cubin cache (its own XDG_CACHE_HOME): the first call runs the fast tier, and
        is checked; wait_ready, then the optimised tier, checked; a fresh context on that cache
        starts optimised (a hit, nothing pending)."""
        B, T, H, K, V = 2, 130, 2, 64, 64
        old = os.environ.get('XDG_CACHE_HOME')
        tiered = os.environ.pop('MIXC_CUDA_TIERED', None)
        try:
            with tempfile.TemporaryDirectory(prefix='mixc-tiers-') as cache:
                os.environ['XDG_CACHE_HOME'] = cache  # read when a context opens the device
                for run in ('cold', 'cached'):
                    # the cold run: the switch held back 1 s, so that the first call runs the
                    # fast tier for certain, even where NVRTC's own cache is warm
                    os.environ['MIXC_CUDA_TIER_DELAY_MS'] = '1000' if run == 'cold' else '0'
                    with mixc.Context(2) as ctx:
                        kern = ctx.load(MIXERS_MIX).kernel('gated_delta', dims={'K': K, 'V': V},
                                                           device='cuda')
                        for call in range(2):
                            low, _ = inputs(self.rng, 'gated_delta', B, T, H, K, V)
                            t, d64 = self.to_cuda(low)
                            o = torch.full((B, T, H, V), float('nan'), dtype=torch.bfloat16,
                                           device='cuda')
                            kern(**t, outputs={'o': o})
                            ms, pending = kern.optimized_ms()
                            torch.cuda.synchronize()
                            o_ref, _ = ref('gated_delta', d64)
                            self.close(o.float().cpu().numpy(), o_ref, TOL['bfloat16'],
                                       f'tiers: {run} call {call} (pending {pending})')
                            if run == 'cold' and call == 0:
                                self.assertEqual(pending, 1, 'the first call ran optimised')
                                kern.wait_ready()
                                ms, pending = kern.optimized_ms()
                                self.assertGreater(ms, 0)
                            self.assertEqual(pending, 0)
                            if run == 'cached':
                                self.assertEqual(ms, 0, 'a cache hit compiled in the background')
        finally:
            os.environ.pop('MIXC_CUDA_TIER_DELAY_MS', None)
            if old is None:
                os.environ.pop('XDG_CACHE_HOME', None)
            else:
                os.environ['XDG_CACHE_HOME'] = old
            if tiered is not None:
                os.environ['MIXC_CUDA_TIERED'] = tiered

    def test_cached_calls(self):
        """Repeated calls of one signature (the cached path: only the pointers and the stream
        rewritten): fresh inputs each call, one on a side stream, then decode steps in a loop
        against the forward over the same tokens."""
        B, T, H, K, V = 2, 40, 2, 32, 16
        kern = self.mod.kernel('gated_delta', dims={'K': K, 'V': V}, device='cuda')
        side = torch.cuda.Stream()
        for call in range(4):
            low, _ = inputs(self.rng, 'gated_delta', B, T, H, K, V)
            t, d64 = self.to_cuda(low)
            o = torch.full((B, T, H, V), float('nan'), dtype=torch.bfloat16, device='cuda')
            if call == 2:
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    kern(**t, outputs={'o': o})
                torch.cuda.current_stream().wait_stream(side)
            else:
                kern(**t, outputs={'o': o})
            torch.cuda.synchronize()
            o_ref, _ = ref('gated_delta', d64)
            self.close(o.float().cpu().numpy(), o_ref, TOL['bfloat16'], f'cuda cached call {call}')
        low, _ = inputs(self.rng, 'gated_delta', B, 6, H, K, V)
        t, d64 = self.to_cuda(low)
        S = torch.zeros((B, H, K, V), device='cuda')
        o_ref, S_ref = ref('gated_delta', d64)
        for i in range(6):
            one = {n: x[:, i:i + 1].contiguous() for n, x in t.items()}
            o1 = kern.step({'S': S}, **one)['o']
            torch.cuda.synchronize()
            self.close(o1.float().cpu().numpy(), o_ref[:, i:i + 1], TOL['bfloat16'],
                       f'cuda cached step {i}')
        self.close(S.cpu().numpy(), S_ref, STATE_TOL_CUDA_LOW, 'cuda cached steps S')

    def test_varlen_and_step(self):
        lens = [7, 0, 40, 21]
        H, K, V = 2, 32, 16
        cu = torch.tensor(np.cumsum([0] + lens), dtype=torch.int32, device='cuda')
        T = sum(lens)
        kern = self.mod.kernel('gated_delta', dims={'K': K, 'V': V}, device='cuda')
        low, _ = inputs(self.rng, 'gated_delta', 1, T, H, K, V)
        t, d64 = self.to_cuda(low)
        res = kern(**t, cu_seqlens=cu, final_states=True)
        torch.cuda.synchronize()
        offs = [0] + list(np.cumsum(lens))
        for i in range(len(lens)):
            a, b = offs[i], offs[i + 1]
            o_ref, S_ref = ref('gated_delta', {n: x[:, a:b] for n, x in d64.items()})
            if b > a:
                self.close(res['o'][:, a:b].float().cpu().numpy(), o_ref, TOL['bfloat16'],
                           f'cuda varlen o {i}')
            self.close(res['S'][i:i + 1].cpu().numpy(), S_ref, STATE_TOL_CUDA_LOW,
                       f'cuda varlen S {i}')
        # decode: one token more for every sequence, from the final states
        one = {n: x[:, :len(lens)].transpose(0, 1).contiguous() for n, x in t.items()}
        S = res['S']
        o_step = kern.step({'S': S}, **one)['o']
        torch.cuda.synchronize()
        one64 = {n: x.double().cpu().numpy() for n, x in one.items()}
        for i in range(len(lens)):
            a, b = offs[i], offs[i + 1]
            seq = {n: np.concatenate([x[:, a:b], one64[n][i:i + 1]], 1) for n, x in d64.items()}
            o_ref, S_ref = ref('gated_delta', seq)
            self.close(o_step[i:i + 1].float().cpu().numpy(), o_ref[:, -1:], TOL['bfloat16'],
                       f'cuda step o {i}')
            self.close(S[i:i + 1].cpu().numpy(), S_ref, STATE_TOL_CUDA_LOW, f'cuda step S {i}')
        with self.assertRaises(mixc.ArgumentError):
            bad = torch.tensor([0, 9, 3, T], dtype=torch.int32, device='cuda')
            k2 = self.mod.kernel('gated_delta', dims={'K': K, 'V': V}, device='cuda',
                                 check_cu_seqlens=True)
            k2(**t, cu_seqlens=bad)
        with self.assertRaises(mixc.ArgumentError) as cm:
            kern(**{n: x.cpu() for n, x in t.items()})
        self.assertIn('CUDA', str(cm.exception))


if __name__ == '__main__':
    unittest.main(verbosity=2)
