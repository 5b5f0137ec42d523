"""A reader of a mixer's declarations (inputs, params, states, outputs and their dims).

mixc.h does not describe a mixer's tensors, and the Python package needs them to allocate
outputs and final states. The C compiler has already checked the source (mixc_module_compile
succeeded), so this reader only has to pick the declarations out of valid text: it reads
`dim`, `input`, `param`, `state`, `let` and `output` lines, and gives each output the extents
of its indices from where the right-hand side uses them (`o[j] = ... S[i, j]` with
`state S[K, V]`: j is V). Anything it cannot tell is left as None; the caller then has to
pass that tensor itself.
"""
import re

_IDENT = r'[A-Za-z_][A-Za-z0-9_]*'


class Decl:
    def __init__(self, name):
        self.name = name
        self.grid = False       # `over (Y, X)`
        self.dims = {}          # name -> fixed size or None
        self.inputs = []        # (name, [dims], per_direction)
        self.params = []        # (name, [dims], has_default)
        self.states = []        # (name, [dims])
        self.outputs = []       # (name, [dims] or None when not inferred)

    def shapes(self):
        out = {}
        for n, d, *_ in self.inputs + self.params + self.states:
            out[n] = d
        for n, d in self.outputs:
            out[n] = d
        return out


def _strip_comments(text):
    return '\n'.join(line.split('#', 1)[0] for line in text.splitlines())


def _split_top(s):
    """Split at commas outside brackets and parentheses."""
    parts, depth, cur = [], 0, ''
    for ch in s:
        if ch in '([':
            depth += 1
        elif ch in ')]':
            depth -= 1
        if ch == ',' and depth == 0:
            parts.append(cur)
            cur = ''
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def _name_dims(item):
    m = re.match(rf'\s*({_IDENT})\s*(?:\[([^\]]*)\])?', item)
    if not m:
        return None, []
    dims = [d.strip() for d in m.group(2).split(',')] if m.group(2) else []
    return m.group(1), dims


def _bodies(text):
    """(name, header, body) of each mixer, braces matched."""
    out = []
    for m in re.finditer(rf'\bmixer\s+({_IDENT})([^{{]*)\{{', text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {'{': 1, '}': -1}.get(text[i], 0)
            i += 1
        out.append((m.group(1), m.group(2), text[m.end():i - 1]))
    return out


def _infer(expr, shapes, bound):
    """Extents of the free index names of `expr`, from the tensors it indexes."""
    ext = {}
    for m in re.finditer(rf'({_IDENT})\s*\[([^\]]*)\]', expr):
        name, idx = m.group(1), [s.strip() for s in m.group(2).split(',')]
        dims = shapes.get(name)
        if dims is None or len(dims) != len(idx):
            continue
        for a, d in zip(idx, dims):
            if re.fullmatch(_IDENT, a) and a not in ext:
                ext[a] = d
    return ext


def read(text):
    """{mixer name: Decl} for every mixer of a .mix source."""
    text = _strip_comments(text)
    mixers = {}
    for name, header, body in _bodies(text):
        d = Decl(name)
        d.grid = re.search(r'\bover\b', header) is not None
        lets = {}
        for line in body.splitlines():
            line = line.strip()
            m = re.match(r'(dim|input|param|state|let|output)\s+(.*)$', line)
            if not m:
                continue
            kw, rest = m.groups()
            if kw == 'dim':
                for item in _split_top(rest):
                    nm, _, val = item.partition('=')
                    d.dims[nm.strip()] = int(val) if val.strip().isdigit() else None
            elif kw == 'input':
                per_dir = re.search(r'\bper\s+direction\s*$', rest) is not None
                rest = re.sub(r'\bper\s+direction\s*$', '', rest)
                for item in _split_top(rest):
                    n, dims = _name_dims(item)
                    d.inputs.append((n, dims, per_dir))
            elif kw == 'param':
                for item in _split_top(rest):
                    lhs, eq, _ = item.partition('=')
                    n, dims = _name_dims(lhs)
                    d.params.append((n, dims, bool(eq)))
            elif kw == 'state':
                for item in _split_top(rest):
                    n, dims = _name_dims(item)
                    d.states.append((n, dims))
            else:  # let / output: NAME[idx] = expr
                lhs, _, expr = rest.partition('=')
                n, idx = _name_dims(lhs)
                shapes = d.shapes()
                shapes.update(lets)
                ext = _infer(expr, shapes, idx)
                dims = [ext.get(i) for i in idx]
                dims = None if any(x is None for x in dims) else dims
                if kw == 'let':
                    if dims is not None:
                        lets[n] = dims
                else:
                    d.outputs.append((n, dims))
        mixers[name] = d
    return mixers
