"""Context, Module and Kernel: the C API of mixc (runtime/include/mixc.h) over ctypes.

Tensors are numpy arrays (CPU) or torch tensors (CPU or CUDA). They are passed to mixc by
pointer, dtype, shape and strides (in elements), never copied; outputs and final states that
are not given are allocated (outputs in the first input's dtype, states in float32) on the
first input's device.
"""
import ctypes
import numbers

from . import _capi, _decl


class MixcError(Exception):
    """A failed mixc call: `status` (an int of enum mixc_status), `status_name` and `message`."""

    def __init__(self, status, message):
        self.status = status
        self.status_name = _STATUS_NAMES.get(status, f'status {status}')
        self.message = message
        super().__init__(f'{self.status_name}: {message}')


class SourceError(MixcError):
    pass


class ArgumentError(MixcError, ValueError):
    pass


class UnsupportedError(MixcError):
    pass


class DeviceError(MixcError):
    pass


class OutOfMemoryError(MixcError, MemoryError):
    pass


class InternalError(MixcError):
    pass


_STATUS_NAMES = {0: 'ok', 1: 'source error', 2: 'argument error', 3: 'unsupported',
                 4: 'device error', 5: 'out of memory', 6: 'internal error'}
_ERRORS = {_capi.ERROR_SOURCE: SourceError, _capi.ERROR_ARGUMENT: ArgumentError,
           _capi.ERROR_UNSUPPORTED: UnsupportedError, _capi.ERROR_DEVICE: DeviceError,
           _capi.ERROR_OUT_OF_MEMORY: OutOfMemoryError, _capi.ERROR_INTERNAL: InternalError}


def _raise(status, err):
    if status != _capi.OK:
        msg = err.message.decode('utf-8', 'replace')
        raise _ERRORS.get(status, MixcError)(status, msg)


def _arg_error(msg):
    return ArgumentError(_capi.ERROR_ARGUMENT, msg)


def version():
    return _capi.lib().mixc_version().decode()


def library_path():
    """The file libmixc.so was loaded from."""
    return _capi.lib().mixc_path


# ---- tensors ----

def _is_torch(x):
    return type(x).__module__.startswith('torch') and hasattr(x, 'data_ptr')


def _np():
    import numpy
    return numpy


_NP_DTYPES = {'float32': _capi.F32, 'float16': _capi.F16, 'bfloat16': _capi.BF16,
              'int32': _capi.I32, 'int64': _capi.I64}


def _torch_dtypes():
    import torch
    return {torch.float32: _capi.F32, torch.bfloat16: _capi.BF16, torch.float16: _capi.F16,
            torch.int32: _capi.I32, torch.int64: _capi.I64}


def _where(x):
    """('cpu', None) or ('cuda', index)."""
    if _is_torch(x):
        return (x.device.type, x.device.index if x.device.type == 'cuda' else None)
    return ('cpu', None)


def _describe(role, name, x):
    """A mixc_tensor for x (numpy array or torch tensor)."""
    t = _capi.Tensor()
    if _is_torch(x):
        dt = _torch_dtypes().get(x.dtype)
        if dt is None:
            raise _arg_error(f"{role} '{name}': dtype {x.dtype} is not supported (expected "
                             f"float32, bfloat16 or float16; int32 or int64 for cu_seqlens)")
        shape, strides, ptr = tuple(x.shape), tuple(x.stride()), x.data_ptr()
    elif hasattr(x, '__array_interface__') and hasattr(x, 'strides'):
        dt = _NP_DTYPES.get(str(x.dtype))
        if dt is None:
            raise _arg_error(f"{role} '{name}': dtype {x.dtype} is not supported (expected "
                             f"float32 or float16 (bfloat16 through torch); int32 or int64 for "
                             f"cu_seqlens)")
        shape = tuple(x.shape)
        if any(s % x.itemsize for s in x.strides):
            raise _arg_error(f"{role} '{name}': strides {x.strides} (bytes) are not multiples "
                             f"of the element size {x.itemsize}")
        strides = tuple(s // x.itemsize for s in x.strides)
        ptr = x.__array_interface__['data'][0]
    else:
        raise TypeError(f"mixc: {role} '{name}' must be a numpy array or a torch tensor, "
                        f"not {type(x).__name__}")
    if len(shape) > _capi.MAX_DIMS:
        raise _arg_error(f"{role} '{name}': {len(shape)} dims, at most {_capi.MAX_DIMS}")
    t.data = ptr or None
    t.dtype = dt
    t.ndim = len(shape)
    t.shape[:len(shape)] = shape
    t.stride[:len(shape)] = strides
    return t


def _named(items):
    """A ctypes array of mixc_named_tensor from [(role, name, x)]."""
    arr = (_capi.NamedTensor * max(len(items), 1))()
    for i, (role, name, x) in enumerate(items):
        arr[i].name = name.encode()
        arr[i].tensor = _describe(role, name, x)
    return arr


# ---- objects ----

class Context:
    """mixc_context: the worker threads, the JIT and the kernel cache. threads=0: every core
    (or $MIXC_NUM_THREADS)."""

    def __init__(self, threads=0):
        self._lib = _capi.lib()
        self._h = ctypes.c_void_p()
        err = _capi.Error()
        _raise(self._lib.mixc_context_create(int(threads), ctypes.byref(self._h),
                                             ctypes.byref(err)), err)

    def compile(self, source, filename=None):
        return Module(self, source, filename)

    def load(self, path):
        with open(path) as f:
            return Module(self, f.read(), path)

    def close(self):
        if getattr(self, '_h', None):
            self._lib.mixc_context_destroy(self._h)
            self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Module:
    """mixc_module: a compiled .mix source. `mixers` lists its mixers in source order."""

    def __init__(self, ctx, source, filename=None):
        self.ctx = ctx
        self._lib = ctx._lib
        self.source = source
        src = source.encode() if isinstance(source, str) else bytes(source)
        self._h = ctypes.c_void_p()
        err = _capi.Error()
        _raise(self._lib.mixc_module_compile(ctx._h, src, len(src),
                                             filename.encode() if filename else None,
                                             ctypes.byref(self._h), ctypes.byref(err)), err)
        n = self._lib.mixc_module_mixer_count(self._h)
        self.mixers = [self._lib.mixc_module_mixer_name(self._h, i).decode() for i in range(n)]
        try:
            self._decls = _decl.read(src.decode('utf-8', 'replace'))
        except Exception:  # the declarations only serve to allocate; mixc has checked the source
            self._decls = {}

    def kernel(self, mixer=None, dims=None, device='cpu', strategy='auto', chunk_size=0,
               check_cu_seqlens=False, **dim_sizes):
        """A Kernel of one mixer: dims by name (dims={'K': 64} or K=64), device 'cpu', 'cuda' or
        'cuda:N' (or a torch.device), strategy 'auto', 'recurrent', 'chunk' or 'parallel'.
        check_cu_seqlens (CUDA): copy cu_seqlens to the host on every call and check it."""
        return Kernel(self, mixer, dict(dims or {}, **dim_sizes), device, strategy, chunk_size,
                      check_cu_seqlens)

    def close(self):
        if getattr(self, '_h', None):
            self._lib.mixc_module_destroy(self._h)
            self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _parse_device(device):
    if _is_torch_device(device):
        device = str(device)
    d = str(device)
    if d == 'cpu':
        return 'cpu', None
    if d == 'cuda':
        return 'cuda', None
    if d.startswith('cuda:') and d[5:].isdigit():
        return 'cuda', int(d[5:])
    raise _arg_error(f"device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'")


def _torch_current_device():
    import sys
    torch = sys.modules.get('torch')
    try:
        return torch.cuda.current_device() if torch is not None and torch.cuda.is_available() else 0
    except Exception:
        return 0


def _is_torch_device(d):
    return type(d).__module__.startswith('torch') and hasattr(d, 'type')


class Kernel:
    """mixc_kernel: one mixer with fixed dims on one device. Call forward() (or the kernel
    itself) and step()."""

    def __init__(self, module, mixer, dims, device, strategy, chunk_size, check_cu_seqlens=False):
        self.module = module
        self._lib = module._lib
        self.device, self.device_index = _parse_device(device)
        if strategy not in _capi.STRATEGIES:
            raise _arg_error(f"strategy {strategy!r}: expected one of "
                             f"{', '.join(_capi.STRATEGIES)}")
        if mixer is None and len(module.mixers) == 1:
            mixer = module.mixers[0]
        self.mixer = mixer
        self.dims = dict(dims)
        self.strategy = strategy
        opt = _capi.KernelOptions()
        opt.mixer = mixer.encode() if mixer else None
        dim_arr = (_capi.Dim * max(len(dims), 1))()
        self._dim_names = [str(n).encode() for n in dims]  # kept alive during the call
        for i, (n, s) in enumerate(dims.items()):
            dim_arr[i].name = self._dim_names[i]
            dim_arr[i].size = int(s)
        opt.dims = dim_arr
        opt.ndims = len(dims)
        opt.device = _capi.CUDA if self.device == 'cuda' else _capi.CPU
        if self.device == 'cuda':
            if self.device_index is None:  # 'cuda': torch's current device, else the first
                self.device_index = _torch_current_device()
            opt.device_index = self.device_index
            opt.check_cu_seqlens = 1 if check_cu_seqlens else 0
        opt.strategy = _capi.STRATEGIES[strategy]
        opt.chunk_size = int(chunk_size)
        self._h = ctypes.c_void_p()
        err = _capi.Error()
        _raise(self._lib.mixc_kernel_create(module._h, ctypes.byref(opt), ctypes.byref(self._h),
                                            ctypes.byref(err)), err)
        self.decl = module._decls.get(mixer) if mixer else None

    # -- public --
    def compile_ms(self):
        """(milliseconds spent compiling variants so far, number of variants)."""
        n = ctypes.c_int()
        ms = self._lib.mixc_kernel_compile_ms(self._h, ctypes.byref(n))
        return ms, n.value

    def __call__(self, **kw):
        return self.forward(**kw)

    def forward(self, *, outputs=None, initial_states=None, final_states=False, cu_seqlens=None,
                stream=None, **tensors):
        """Run the mixer over whole sequences. `tensors`: inputs and params by name (a number for
        a scalar param is broadcast over heads). `outputs`: {name: buffer} for outputs to write
        into (the others are allocated). `initial_states`: {name: tensor} (else zeros).
        `final_states`: True (every state), a list of names, or {name: buffer}.
        Returns {name: tensor} of every output and every final state."""
        call = self._prepare(tensors, outputs, cu_seqlens, stream)
        ini = dict(initial_states or {})
        if final_states is True:
            fin = {n: None for n in self._state_names()}
        elif isinstance(final_states, dict):
            fin = dict(final_states)
        elif final_states:
            fin = {n: None for n in final_states}
        else:
            fin = {}
        for n in fin:
            if fin[n] is None:
                fin[n] = self._alloc_state(n, call)
        args = call['args']
        ini_arr = _named([('initial state', n, x) for n, x in ini.items()])
        fin_arr = _named([('final state', n, x) for n, x in fin.items()])
        self._check_devices(list(ini.items()) + list(fin.items()), 'state')
        args.initial_states, args.ninitial = ini_arr, len(ini)
        args.final_states, args.nfinal = fin_arr, len(fin)
        err = _capi.Error()
        self._keep = call['keep']  # temporaries (a broadcast param) outlive an async call
        _raise(self._lib.mixc_forward(self._h, ctypes.byref(args), ctypes.byref(err)), err)
        res = dict(call['outputs'])
        res.update(fin)
        return res

    def step(self, states, *, outputs=None, cu_seqlens=None, stream=None, **tensors):
        """A decode step: `states` {name: float32 tensor} (every state) are read as the initial
        states and overwritten with the final ones. Returns {name: tensor} of the outputs."""
        call = self._prepare(tensors, outputs, cu_seqlens, stream)
        self._check_devices(list(states.items()), 'state')
        st_arr = _named([('state', n, x) for n, x in states.items()])
        err = _capi.Error()
        self._keep = call['keep']
        _raise(self._lib.mixc_step(self._h, ctypes.byref(call['args']), st_arr, len(states),
                                   ctypes.byref(err)), err)
        return dict(call['outputs'])

    def close(self):
        if getattr(self, '_h', None):
            self._lib.mixc_kernel_destroy(self._h)
            self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- internals --
    def _state_names(self):
        if self.decl is None:
            raise _arg_error(f"mixer '{self.mixer}': its states could not be read from the "
                             f"source; name them in final_states")
        return [n for n, _ in self.decl.states]

    def _dim_size(self, d):
        if d in self.dims:
            return int(self.dims[d])
        if self.decl is not None and self.decl.dims.get(d) is not None:
            return self.decl.dims[d]
        return None

    def _check_devices(self, items, role):
        for name, x in items:
            kind, idx = _where(x)
            if kind != self.device:
                where = 'a host array' if kind == 'cpu' else f'on {kind}'
                raise _arg_error(f"{role} '{name}' is {where} but the kernel runs on "
                                 f"{'the CPU' if self.device == 'cpu' else 'CUDA'}: "
                                 f"pass {'host' if self.device == 'cpu' else 'CUDA'} tensors")
            if self.device == 'cuda':
                if self.device_index is None:
                    self.device_index = idx
                elif idx != self.device_index:
                    raise _arg_error(f"{role} '{name}' is on cuda:{idx} but the kernel runs on "
                                     f"cuda:{self.device_index}")

    def _order(self, tensors):
        """Inputs in declaration order (B, T, H are read off the first), then params."""
        if self.decl is None:
            return list(tensors.items())
        order = [n for n, *_ in self.decl.inputs] + [n for n, *_ in self.decl.params]
        rank = {n: i for i, n in enumerate(order)}
        return sorted(tensors.items(), key=lambda kv: rank.get(kv[0], len(order)))

    def _prepare(self, tensors, outputs, cu_seqlens, stream):
        items = self._order(tensors)
        for n, x in items:
            if not (isinstance(x, numbers.Number) or _is_torch(x) or
                    (hasattr(x, '__array_interface__') and hasattr(x, 'strides'))):
                raise TypeError(f"mixc: input '{n}' must be a numpy array or a torch tensor "
                                f"(a number for a scalar param), not {type(x).__name__}")
        first = next(((n, x) for n, x in items if not isinstance(x, numbers.Number)), None)
        if first is None:
            raise _arg_error(f"mixer '{self.mixer}': no input tensor given")
        fx = first[1]
        lead = 4 if (self.decl is not None and self.decl.grid) else 3
        shape0 = tuple(fx.shape)
        heads = shape0[lead - 1] if len(shape0) >= lead else None
        # numbers for params: broadcast over heads (zero stride) on the first input's device
        conv = []
        for n, x in items:
            if isinstance(x, numbers.Number):
                x = self._scalar(x, heads, fx)
            conv.append((n, x))
        self._check_devices(conv, 'input')
        outs = dict(outputs or {})
        if self.decl is not None:
            for n, dims in self.decl.outputs:
                if n in outs:
                    continue
                sizes = None if dims is None else [self._dim_size(d) for d in dims]
                if sizes is None or any(s is None for s in sizes) or len(shape0) < lead:
                    continue  # left out: mixc names it as missing
                outs[n] = self._empty(fx, list(shape0[:lead]) + sizes, fx.dtype)
        self._check_devices(list(outs.items()), 'output')
        keep = {'in': _named([('input', n, x) for n, x in conv]),
                'out': _named([('output', n, x) for n, x in outs.items()]),
                'refs': conv}
        args = _capi.Args()
        args.inputs, args.ninputs = keep['in'], len(conv)
        args.outputs, args.noutputs = keep['out'], len(outs)
        nseq = shape0[0] if shape0 else 0
        if cu_seqlens is not None:
            self._check_devices([('cu_seqlens', cu_seqlens)], 'tensor')
            keep['cu'] = _describe('tensor', 'cu_seqlens', cu_seqlens)
            args.cu_seqlens = ctypes.pointer(keep['cu'])
            nseq = max(int(cu_seqlens.shape[0]) - 1, 0) if len(cu_seqlens.shape) == 1 else nseq
        args.stream = self._stream(stream, fx)
        return {'args': args, 'outputs': outs, 'keep': keep, 'N': nseq, 'first': fx,
                'heads': heads}

    def _stream(self, stream, fx):
        if self.device != 'cuda':
            return None
        if stream is None:
            import torch
            return torch.cuda.current_stream(fx.device).cuda_stream or None
        if hasattr(stream, 'cuda_stream'):
            return stream.cuda_stream or None
        return int(stream) or None

    def _alloc_state(self, name, call):
        dims = dict((n, d) for n, d in self.decl.states).get(name) if self.decl else None
        if dims is None:
            raise _arg_error(f"final state '{name}': mixer '{self.mixer}' has no state of that "
                             f"name" if self.decl else f"final state '{name}': give its buffer")
        sizes = [self._dim_size(d) for d in dims]
        if any(s is None for s in sizes) or call['heads'] is None:
            raise _arg_error(f"final state '{name}': its shape is not known here; give its buffer")
        fx = call['first']
        if _is_torch(fx):
            import torch
            return torch.empty([call['N'], call['heads']] + sizes, dtype=torch.float32,
                               device=fx.device)
        return _np().empty([call['N'], call['heads']] + sizes, dtype='float32')

    @staticmethod
    def _empty(like, shape, dtype):
        if _is_torch(like):
            import torch
            return torch.empty(shape, dtype=dtype, device=like.device)
        return _np().empty(shape, dtype=dtype)

    @staticmethod
    def _scalar(value, heads, like):
        if heads is None:
            raise _arg_error('a number for a param needs the heads H read off an input')
        if _is_torch(like):
            import torch
            return torch.full((1,), float(value), dtype=torch.float32,
                              device=like.device).expand(heads)
        np = _np()
        return np.lib.stride_tricks.as_strided(np.full(1, value, dtype='float32'), (heads,), (0,))


def load(path, threads=0):
    """Compile a .mix file in a new Context."""
    return Context(threads).load(path)


def compile(source, filename=None, threads=0):
    """Compile .mix source text in a new Context."""
    return Context(threads).compile(source, filename)

