"""fp64 reference of the four benchmark mixers (bench/gpu/mixers.mix), token by token.

Written once for two array libraries: `xp` is numpy (CPU; the tests hold it against mixc's
own fp64 reference, `mixc run --backend ref`) or torch (on the GPU, in float64, for the
benchmark's accuracy check). The definitions are fla's (fla/ops/*/naive.py, fla 0.6):
scale = K^-0.5 multiplies q; S_t is the state after token t; o_t = scale * S_t^T q_t.

    recurrent(xp, mixer, q, k, v, g=None, beta=None, scale=None, S0=None) -> (o, S)

q, k [B, T, H, K], v [B, T, H, V], g [B, T, H] (simple_gla, gated_delta) or [B, T, H, K]
(gla), beta [B, T, H]; all float64 of the same library. S0, S: [B, H, K, V].
"""

MIXERS = ('simple_gla', 'gla', 'delta', 'gated_delta')
# which per-token tensors each mixer reads besides q, k, v: name -> per key channel?
GATES = {'simple_gla': {'g': False}, 'gla': {'g': True}, 'delta': {'beta': False},
         'gated_delta': {'g': False, 'beta': False}}


def recurrent(xp, mixer, q, k, v, g=None, beta=None, scale=None, S0=None):
    if mixer not in MIXERS:
        raise ValueError(f'unknown mixer {mixer!r} (expected one of {", ".join(MIXERS)})')
    B, T, H, K = q.shape
    V = v.shape[-1]
    if scale is None:
        scale = K ** -0.5
    if S0 is not None:
        S = S0 * 1.0
    elif hasattr(q, 'new_zeros'):
        S = q.new_zeros((B, H, K, V))
    else:
        S = xp.zeros((B, H, K, V), dtype=q.dtype)
    outs = []
    for t in range(T):
        qt, kt, vt = q[:, t], k[:, t], v[:, t]              # [B, H, K], [B, H, V]
        if mixer == 'simple_gla':
            S = xp.exp(g[:, t])[:, :, None, None] * S + kt[..., :, None] * vt[..., None, :]
        elif mixer == 'gla':
            S = xp.exp(g[:, t])[..., :, None] * S + kt[..., :, None] * vt[..., None, :]
        else:
            if mixer == 'gated_delta':
                S = xp.exp(g[:, t])[:, :, None, None] * S
            err = vt - xp.einsum('bhk,bhkv->bhv', kt, S)
            S = S + beta[:, t][:, :, None, None] * kt[..., :, None] * err[..., None, :]
        outs.append(scale * xp.einsum('bhk,bhkv->bhv', qt, S))
    o = xp.stack(outs, 1) if outs else v * 0.0
    return o, S


def _count(a):
    return a.numel() if hasattr(a, 'numel') else a.size


def relerr(x, ref):
    """max|x - ref| / max|ref| (a NaN anywhere gives inf), the measure of PERFORMANCE.md."""
    if _count(ref) == 0:
        return 0.0
    num = float(abs(x - ref).max())
    den = float(abs(ref).max())
    if num != num or den != den:
        return float('inf')
    return num / den if den > 0 else num
