#!/usr/bin/env python3
"""Turn the log of bench/run.sh into bench/results/cpu.md (tables) and cpu.svg (a plot).

    python3 bench/report.py LOG OUTDIR

LOG holds the tools' output; the lines read are "META\tkey=value" (run.sh: the machine) and
"RESULT\tkey=value\t..." (cpu_bench, c_loops, numpy_chunk.py). No third-party modules: the SVG is
written by hand. Prints the markdown to stdout as well.
"""
import html
import math
import os
import sys

IMPLS = [  # key, label, colour
    ('mixc_chunk', 'mixc chunk', '#1f5fa8'),
    ('mixc_recurrent', 'mixc recurrent', '#8fb3dc'),
    ('c_loop', 'C loop (-O3 -march=native)', '#e07b22'),
    ('numpy_chunk', 'numpy chunked (OpenBLAS)', '#3a9a3a'),
]
MIXERS = [('gla', 'GLA'), ('gated_delta', 'Gated DeltaNet'), ('mamba2', 'Mamba2')]
TARGET_SGEMM, TARGET_NUMPY, TARGET_CLOOP, TARGET_COMPILE_MS = 0.5, 3.0, 5.0, 100.0
TARGET_DECODE = 0.5  # of the measured memory bandwidth


def parse(path):
    meta, res = {}, []
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


def worst_err(res):
    errs = [float(r['relerr']) for r in res
            if r.get('impl') in ('c_loop', 'numpy_chunk') and r.get('status') == 'ok']
    return f'{max(errs):.2g}' if errs else 'n/a'


def fnum(x, digits=3):
    if x is None:
        return 'n/a'
    if x >= 100:
        return f'{x:.0f}'
    if x >= 10:
        return f'{x:.1f}'
    return f'{x:.{digits - 1}f}' if x >= 1 else f'{x:.{digits}g}'


def ratio(a, b):
    return None if a is None or b is None else a / b


def main():
    log, outdir = sys.argv[1], sys.argv[2]
    meta, res = parse(log)
    sgemm = next((float(r['gflops']) for r in res if r.get('impl') == 'sgemm'
                  and r.get('status') == 'ok'), None)
    cell, na, extra = {}, {}, {}
    for r in res:
        if r.get('impl') not in dict((i[0], 1) for i in IMPLS):
            continue
        key = (r['mixer'], int(r['H']), r['impl'])
        if r.get('status') == 'ok':
            cell[key] = float(r['ms'])
            extra[key] = r
        else:
            na[key] = r.get('msg', '?')
    Hs = sorted({k[1] for k in list(cell) + list(na)}, reverse=True)
    T = next((r['T'] for r in res if 'T' in r), '?')
    meta.setdefault('T', T)
    flops_per = lambda H: int(T) * H * (2 * 64 * 256 + 4 * 128 * 128)  # B = 1, K = V = 128

    md = []
    md.append('# CPU benchmark: mixc vs a C loop vs numpy (OpenBLAS)\n')
    md.append(f'Written by `bench/run.sh` ({meta.get("date", "?")}, mixc at '
              f'{meta.get("commit", "?")}). Machine: {meta.get("cpu", "?")}, '
              f'{meta.get("nproc", "?")} cores; load average {meta.get("load_before", "?")} before '
              f'the run, {meta.get("load_after", "?")} after. BLAS: {meta.get("blas", "?")}.\n')
    md.append(f'B = 1, T = {T}, K = V = 128 (Mamba2: N = P = 128), f32 inputs and outputs; every tool '
              f'uses {meta.get("threads", "?")} threads. Median of >= 5 full forwards after a '
              f'warm-up. GFLOP/s count the chunk algorithm at C = 64 for every implementation '
              f'(per token and head 2C(K+V) + 4KV = 98,304 FLOPs), so they are proportional to '
              f'1 / time. sgemm: the best of 5 4096^3 float32 matmuls in numpy: '
              f'**{fnum(sgemm)} GFLOP/s**.\n')
    md.append('| mixer | H | mixc chunk ms | mixc recurrent ms | C loop ms | numpy chunk ms | '
              'chunk GFLOP/s | % of sgemm | chunk vs numpy | chunk vs C loop | '
              'chunk vs recurrent | compile ms chunk / recurrent | chunk rel. err |')
    md.append('|---|---|---|---|---|---|---|---|---|---|---|---|---|')
    for m, title in MIXERS:
        for H in Hs:
            g = lambda impl: cell.get((m, H, impl))
            ch = g('mixc_chunk')
            gf = flops_per(H) / ch * 1e-6 if ch else None
            row = [title, str(H)]
            for impl, _, _ in IMPLS:
                row.append(fnum(g(impl)) if g(impl) else 'n/a')
            row.append(fnum(gf))
            row.append(f'{100 * gf / sgemm:.1f}%' if gf and sgemm else 'n/a')
            for other in ('numpy_chunk', 'c_loop', 'mixc_recurrent'):
                rr = ratio(g(other), ch)
                row.append(f'{rr:.2f}x' if rr else 'n/a')
            ec = extra.get((m, H, 'mixc_chunk'), {})
            er = extra.get((m, H, 'mixc_recurrent'), {})
            row.append(f'{fnum(float(ec["compile_ms"])) if ec else "n/a"} / '
                       f'{fnum(float(er["compile_ms"])) if er else "n/a"}')
            row.append(ec.get('relerr', 'n/a'))
            md.append('| ' + ' | '.join(row) + ' |')
    md.append('\n"chunk vs X" is X\'s time over mixc chunk\'s (above 1: mixc chunk is faster). '
              '"compile" is `mixc_kernel_compile_ms` after the first call (lowering + LLVM JIT of '
              'the one variant used). "rel. err" is max|chunk - recurrent| / max|recurrent|; the C '
              f'loop and numpy are checked against mixc recurrent the same way (largest: '
              f'{worst_err(res)}; see cpu.log).\n')
    if na:
        md.append('Not available:\n')
        for (m, H, impl), msg in sorted(na.items()):
            md.append(f'- {impl}, {m}, H = {H}: {msg}')
        md.append('')

    # targets, at the largest H
    H = Hs[0] if Hs else None
    md.append(f'## Targets (H = {H})\n')
    md.append('| target | ' + ' | '.join(t for _, t in MIXERS) + ' |')
    md.append('|---' * (len(MIXERS) + 1) + '|')

    def tgt(name, fn):
        row = [name]
        for m, _ in MIXERS:
            v = fn(m)
            row.append('n/a' if v is None else f'{v[0]}: {"met" if v[1] else "**not met**"}')
        md.append('| ' + ' | '.join(row) + ' |')

    def g(m, impl):
        return cell.get((m, H, impl))

    tgt('chunk >= 50% of sgemm', lambda m: None if not (g(m, 'mixc_chunk') and sgemm) else (
        f'{100 * flops_per(H) / g(m, "mixc_chunk") * 1e-6 / sgemm:.1f}%',
        flops_per(H) / g(m, 'mixc_chunk') * 1e-6 >= TARGET_SGEMM * sgemm))
    for other, lim, name in (('numpy_chunk', TARGET_NUMPY, 'chunk >= 3x numpy chunked'),
                             ('c_loop', TARGET_CLOOP, 'chunk >= 5x C loop')):
        tgt(name, lambda m, o=other, lim=lim: None if not (g(m, 'mixc_chunk') and g(m, o)) else (
            f'{g(m, o) / g(m, "mixc_chunk"):.2f}x', g(m, o) / g(m, 'mixc_chunk') >= lim))
    for impl, name in (('mixc_chunk', 'JIT compile <= 100 ms (chunk)'),
                       ('mixc_recurrent', 'JIT compile <= 100 ms (recurrent)')):
        tgt(name, lambda m, i=impl: None if (m, H, i) not in extra else (
            f'{float(extra[(m, H, i)]["compile_ms"]):.0f} ms',
            float(extra[(m, H, i)]['compile_ms']) <= TARGET_COMPILE_MS))
    md.append('')
    md.extend(decode_section(res))
    md.append('![GFLOP/s per implementation](cpu.svg)\n')
    text = '\n'.join(md)
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, 'cpu.md'), 'w') as f:
        f.write(text)
    with open(os.path.join(outdir, 'cpu.svg'), 'w') as f:
        f.write(svg(cell, na, Hs, sgemm, flops_per, meta))
    print(text)


def decode_section(res):
    """The decode step (cpu_bench --decode): one table, the target at the largest B."""
    rows = [r for r in res if r.get('impl') == 'mixc_decode' and r.get('status') == 'ok']
    if not rows:
        return []
    mem = [r for r in res if r.get('impl') == 'memory']
    md = ['## Decode step (mixc_step, one token, fp32 states carried)\n',
          'H = 16, K = V = 128; the calls rotate over 1 GiB of state sets (no call finds its '
          'states in a cache). GB/s count the state read and written (2 B H K V 4 bytes); '
          '"memory" is the better of an in-place scale over 1 GiB and a copy of 512 MiB in the '
          'same process (median of 11, read + write bytes; scale / copy, fastest run): ' +
          ', '.join(f'{float(r["scale_gbs"]):.1f} / {float(r["copy_gbs"]):.1f} GB/s '
                    f'({float(r.get("best_gbs", "0")):.1f})' for r in mem)
          + '. Each step is checked against a forward of the same token first.\n',
          '| mixer | B | us a call | state GB/s | % of memory | target >= 50% |',
          '|---|---|---|---|---|---|']
    Bmax = max(int(r['B']) for r in rows)
    for m, title in MIXERS:
        for r in sorted((r for r in rows if r['mixer'] == m), key=lambda r: -int(r['B'])):
            pct = float(r['pct'])
            t = ('met' if pct >= 100 * TARGET_DECODE else '**not met**') if int(r['B']) == Bmax \
                else '(latency)'
            md.append(f'| {title} | {r["B"]} | {float(r["us"]):.1f} | '
                      f'{float(r["state_gbs"]):.1f} | {pct:.0f}% | {t} |')
    md.append('')
    return md


def svg(cell, na, Hs, sgemm, flops_per, meta):
    """Horizontal bars, GFLOP/s (chunk FLOPs) on a log axis, one group per mixer and H."""
    groups = [(m, t, H) for m, t in MIXERS for H in Hs]
    bar, gap, left, right, top = 16, 14, 180, 230, 64
    width = 1000
    plot_w = width - left - right
    height = top + len(groups) * (len(IMPLS) * bar + gap) + 70
    vals = [flops_per(H) / ms * 1e-6 for (m, H, _), ms in cell.items()]
    lo = 10 ** math.floor(math.log10(max(min(vals), 1e-3))) if vals else 0.1
    hi_v = max(vals + ([sgemm] if sgemm else []) + [1.0])
    hi = min(m * 10 ** k for k in range(-3, 8) for m in (1, 2, 5) if m * 10 ** k >= hi_v * 1.3)
    x = lambda v: left + plot_w * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    e = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="Helvetica, Arial, sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="22" font-size="15" font-weight="bold">CPU forward, f32, B=1, '
           f'T={e(str(meta.get("T", "4096")))}, K=V=128: GFLOP/s in chunk-algorithm FLOPs '
           f'(C=64)</text>',
           f'<text x="{left}" y="40" fill="#555">{e(meta.get("cpu", ""))}, '
           f'{e(meta.get("nproc", "?"))} cores, {e(meta.get("threads", "?"))} threads per tool, '
           f'load average {e(meta.get("load_before", "?"))}; log scale, longer is faster</text>']
    bottom = height - 50
    d = lo
    while d <= hi * 1.0001:  # decade grid
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
               f'GFLOP/s</text>')
    y = top
    for m, title, H in groups:
        out.append(f'<text x="{left - 10}" y="{y + len(IMPLS) * bar / 2 + 4:.0f}" '
                   f'text-anchor="end" font-weight="bold">{e(title)}, H={H}</text>')
        for impl, label, colour in IMPLS:
            ms = cell.get((m, H, impl))
            if ms:
                v = flops_per(H) / ms * 1e-6
                out.append(f'<rect x="{left}" y="{y + 2}" width="{max(x(v) - left, 1):.1f}" '
                           f'height="{bar - 4}" fill="{colour}"/>')
                out.append(f'<text x="{x(v) + 4:.1f}" y="{y + bar - 4}" fill="#222">'
                           f'{v:.2f} ({ms:.1f} ms)</text>')
            else:
                out.append(f'<text x="{left + 4}" y="{y + bar - 4}" fill="#a00">{e(label)}: '
                           f'not available</text>')
            y += bar
        y += gap
    if sgemm:
        for v, label, dash in ((sgemm, f'sgemm {sgemm:.0f}', ''),
                               (sgemm / 2, f'target: 50% of sgemm', '5,4')):
            if lo <= v <= hi:
                out.append(f'<line x1="{x(v):.1f}" y1="{top - 6}" x2="{x(v):.1f}" y2="{bottom}" '
                           f'stroke="#c00" stroke-width="1.5"'
                           f'{f" stroke-dasharray={chr(34)}{dash}{chr(34)}" if dash else ""}/>')
                out.append(f'<text x="{x(v) + 3:.1f}" y="{top - 10 if not dash else bottom - 6}" '
                           f'fill="#c00" font-size="11">{e(label)}</text>')
    # legend
    ly = top
    lx = width - right + 20
    for impl, label, colour in IMPLS:
        out.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{lx + 17}" y="{ly + 10}" font-size="11">{e(label)}</text>')
        ly += 18
    out.append('</svg>\n')
    return '\n'.join(out)


if __name__ == '__main__':
    main()
