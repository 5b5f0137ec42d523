"""Context, Module and Kernel: the C API of mixc (runtime/include/mixc.h) over ctypes.

Tensors are numpy arrays (CPU) or torch tensors (CPU or CUDA). They are passed to mixc by
pointer, dtype, shape and strides (in elements), never copied; outputs and final states that
are not given are allocated (outputs in the first input's dtype, states in float32) on the
first input's device.
"""
import ctypes
import functools
import numbers
import sys
import threading

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


# ---- the cached path of repeated calls ----
#
# A call's signature (the names, kinds, dtypes, shapes, strides and devices of its tensors, the
# kind of final_states, whether cu_seqlens is given) decides every check the package makes and
# every field of the ctypes structs but the data pointers (and the stream). The first call with
# a signature goes the full way (the checks, the structs); when it succeeds, its structs are
# kept in the kernel under the signature (_Entry), and a later call with the same signature
# only writes its data pointers into them. Only plain numpy arrays and torch tensors (and
# numbers for params) take this path; anything else always goes the full way.

_CACHE_SIZE = 64  # signatures kept per kernel (the cache is emptied when full)
_TENSOR_OFF = _capi.NamedTensor.tensor.offset
_DATA_OFF = _TENSOR_OFF + _capi.Tensor.data.offset
_NT_SIZE = ctypes.sizeof(_capi.NamedTensor)
assert _DATA_OFF % 8 == 0 and _NT_SIZE % 8 == 0


_TYPES = []  # [(torch.Tensor, numpy.ndarray)] once both modules are imported


def _array_types():
    """(torch.Tensor, numpy.ndarray), None for a module not imported (no such object can exist
    then)."""
    if _TYPES:
        return _TYPES[0]
    t, n = sys.modules.get('torch'), sys.modules.get('numpy')
    types = getattr(t, 'Tensor', None), getattr(n, 'ndarray', None)
    if None not in types:
        _TYPES.append(types)
    return types


_NONE = {}  # (never written)
_MISS = object()  # Kernel._run_cached: no cached entry ran the call


class _Uncached(Exception):
    pass


def _signature(groups):
    """(signature, data pointers) of a call's tensors: groups [(tag, {name: tensor})] (tag 0:
    the inputs and params, where numbers are allowed; 3: final states, where None is; the
    others: outputs, states, cu_seqlens). The pointers list a number's value for a number.
    (None, None) where a group holds anything but plain numpy arrays and torch tensors: such
    a call is not for the cache."""
    tt, nd = _array_types()
    sig, ptrs = [], []
    add, put = sig.append, ptrs.append
    try:
        for g, d in groups:
            add(g)
            for n, x in d.items():
                t = type(x)
                if t is tt:
                    add((n, x.dtype, x.shape, x.stride(), x.device))
                    put(x.data_ptr())
                elif t is nd:
                    add((n, x.dtype, x.shape, x.strides))
                    put(x.__array_interface__['data'][0])
                elif g == 0 and isinstance(x, numbers.Number):
                    add((n, 0))
                    put(x)
                elif x is None and (g == 3 or g == 6):
                    add((n, None))
                else:
                    raise _Uncached
        return tuple(sig), ptrs
    except Exception:  # an odd object or tensor (sparse, ...): the full path says what
        return None, None


def _ptr(x):
    return x.data_ptr() if hasattr(x, 'data_ptr') else x.__array_interface__['data'][0]


class _Entry:
    """The ctypes structs of a call that succeeded, in one buffer of mixc_named_tensor (inputs,
    outputs, then states or initial and final states, then cu_seqlens), with where each data
    pointer goes (slots: indexes of 64-bit words) in the order _signature lists them. `lock`
    is held while a call uses it (another thread with the same signature takes the full path).
    It holds no reference to the caller's tensors."""

    __slots__ = ('lock', 'buf', 'mv', 'names', 'args', 'args_addr', 'err', 'err_addr',
                 'states_addr', 'nstates', 'slots', 'out_alloc', 'fin_kind', 'fin_alloc', 'nums',
                 'numcache', 'make_scalar', 'cuda', 'device_index', 'raw_stream')

    def __init__(self, kern, call, tensors, groups, step, fin_kind=False, fin_alloc=()):
        """groups: [(array, count, positions given by the caller)] after inputs and outputs:
        [states] for a step, [initial, final] for a forward; fin_kind: True for a forward (its
        final states join the result); fin_alloc: [(name, make, position in the final
        states)] for those allocated here."""
        keep = call['keep']
        self.lock = threading.Lock()
        self.names = (keep['in'], keep['out']) + tuple(a for a, _, _ in groups)  # the strings
        regions = [(keep['in'], len(call['in_names'])), (keep['out'], len(call['outputs']))]
        regions += [(a, n) for a, n, _ in groups]
        cu = keep.get('cu')
        total = sum(max(n, 1) for _, n in regions) + (cu is not None)
        self.buf = buf = (_capi.NamedTensor * total)()
        base = ctypes.addressof(buf)
        starts, pos = [], 0
        for arr, n in regions:
            ctypes.memmove(base + pos * _NT_SIZE, ctypes.addressof(arr), max(n, 1) * _NT_SIZE)
            starts.append(pos)
            pos += max(n, 1)
        words, data = _NT_SIZE // 8, _DATA_OFF // 8

        def slot(region, i):
            return (starts[region] + i) * words + data

        def ptr(region):
            return ctypes.cast(base + starts[region] * _NT_SIZE,
                               ctypes.POINTER(_capi.NamedTensor))

        slots = [slot(0, call['in_names'].index(n)) for n in tensors]
        slots += [slot(1, j) for j in range(call['given'])]
        for g, (_, _, given) in enumerate(groups):
            slots += [slot(2 + g, j) for j in given]
        args = _capi.Args()
        ctypes.memmove(ctypes.addressof(args), ctypes.addressof(call['args']),
                       ctypes.sizeof(args))
        args.inputs, args.outputs = ptr(0), ptr(1)
        if cu is not None:
            ctypes.memmove(base + pos * _NT_SIZE + _TENSOR_OFF, ctypes.addressof(cu),
                           ctypes.sizeof(cu))
            slots.append(pos * words + data)
            args.cu_seqlens = ctypes.cast(base + pos * _NT_SIZE + _TENSOR_OFF,
                                          ctypes.POINTER(_capi.Tensor))
        self.slots = slots
        if step:
            self.states_addr, self.nstates = base + starts[2] * _NT_SIZE, groups[0][1]
        else:
            self.states_addr, self.nstates = None, 0
            args.initial_states, args.final_states = ptr(2), ptr(3)
        self.args, self.args_addr = args, ctypes.addressof(args)
        self.err = _capi.Error()
        self.err_addr = ctypes.addressof(self.err)
        self.mv = memoryview(buf).cast('B').cast('Q')
        given = call['given']
        self.out_alloc = [(n, slot(1, given + a), make)
                          for a, (n, make) in enumerate(call['out_alloc'])]
        self.fin_kind = fin_kind
        self.fin_alloc = [(n, slot(3, j), make) for n, make, j in fin_alloc]
        self.nums = [j for j, x in enumerate(tensors.values()) if isinstance(x, numbers.Number)]
        self.numcache, self.make_scalar = {}, None
        if self.nums:
            self.make_scalar = kern._scalar_maker(call['heads'], call['first'])
            conv = dict(keep['refs'])
            for j, (n, x) in enumerate(tensors.items()):
                if j in self.nums:
                    self.numcache[j] = (x, conv[n], _ptr(conv[n]))
        self.cuda = kern.device == 'cuda'
        self.device_index, self.raw_stream = None, None
        if self.cuda:
            self.device_index = call['first'].device.index
            torch = sys.modules.get('torch')
            self.raw_stream = getattr(getattr(torch, '_C', None), '_cuda_getCurrentRawStream',
                                      None)

    def run(self, kern, ptrs, tensors, outputs, final_states, stream):
        """The call again with the data pointers ptrs: returns what forward or step returns."""
        keep = tensors
        if self.nums:
            keep = (tensors, self.scalars(ptrs))
        mv = self.mv
        for i, p in zip(self.slots, ptrs):
            mv[i] = p
        res = dict(outputs) if outputs else {}
        for name, i, make in self.out_alloc:
            x = make()
            mv[i] = _ptr(x)
            res[name] = x
        if self.fin_kind:
            fin = dict(final_states) if type(final_states) is dict else {}
            for name, i, make in self.fin_alloc:
                x = make()
                mv[i] = _ptr(x)
                fin[name] = x
            res.update(fin)
        if self.cuda:
            self.args.stream = self.stream(stream)
        kern._keep = keep  # temporaries (a broadcast param) outlive an async call
        if self.states_addr is None:
            st = kern._lib.mixc_forward_addr(kern._hv, self.args_addr, self.err_addr)
        else:
            st = kern._lib.mixc_step_addr(kern._hv, self.args_addr, self.states_addr,
                                          self.nstates, self.err_addr)
        if st != _capi.OK:
            _raise(st, self.err)
        return res

    def scalars(self, ptrs):
        """The broadcast tensors of the numbers in ptrs (replaced there by their pointers): the
        last one made for a param, where its value is the same."""
        temps = []
        for j in self.nums:
            v = ptrs[j]
            c = self.numcache[j]
            if type(v) is type(c[0]) and v == c[0]:
                t, p = c[1], c[2]
            else:
                t = self.make_scalar(v)
                p = _ptr(t)
                self.numcache[j] = (v, t, p)
            ptrs[j] = p
            temps.append(t)
        return temps

    def stream(self, stream):
        """The CUstream of a call (as Kernel._stream)."""
        if stream is None:
            if self.raw_stream is not None:
                return self.raw_stream(self.device_index) or None
            import torch
            return torch.cuda.current_stream(self.device_index).cuda_stream or None
        if hasattr(stream, 'cuda_stream'):
            return stream.cuda_stream or None
        return int(stream) or None


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
        self._cache = {}  # call signature -> _Entry (the ctypes structs of a call, reused)
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
        self._hv = self._h.value  # the handle as an int (the cached path's calls)
        self.decl = module._decls.get(mixer) if mixer else None

    # -- public --
    def compile_ms(self):
        """(milliseconds spent compiling variants so far, number of variants). On CUDA, the
        first tier: a variant compiled on a miss of the cubin disk cache runs a fast-compiled
        cubin until its optimised one, compiled on a thread, is in (see wait_ready)."""
        n = ctypes.c_int()
        ms = self._lib.mixc_kernel_compile_ms(self._h, ctypes.byref(n))
        return ms, n.value

    def wait_ready(self):
        """Wait until every variant this kernel has used runs its optimised code (CUDA: the
        background compile of the optimised cubin has ended; at once on the CPU). Raises the
        background compile's error, if it failed. Call it before timing anything."""
        err = _capi.Error()
        _raise(self._lib.mixc_kernel_wait_ready(self._h, ctypes.byref(err)), err)

    def optimized_ms(self):
        """(milliseconds of the optimised compiles that ran on their own threads and ended,
        number of variants still running the fast tier). Does not wait."""
        n = ctypes.c_int()
        ms = self._lib.mixc_kernel_optimized_ms(self._h, ctypes.byref(n))
        return ms, n.value

    def __call__(self, **kw):
        return self.forward(**kw)

    def _run_cached(self, key, ptrs, tensors, outputs, final_states, stream):
        """The call through the cached entry of its signature (key None: none), or _MISS when
        there is none or another thread holds it."""
        if key is None:
            return _MISS
        e = self._cache.get(key)
        if e is None or not e.lock.acquire(False):
            return _MISS
        try:
            return e.run(self, ptrs, tensors, outputs, final_states, stream)
        finally:
            e.lock.release()

    def forward(self, *, outputs=None, initial_states=None, final_states=False, cu_seqlens=None,
                stream=None, **tensors):
        """Run the mixer over whole sequences. `tensors`: inputs and params by name (a number for
        a scalar param is broadcast over heads). `outputs`: {name: buffer} for outputs to write
        into (the others are allocated). `initial_states`: {name: tensor} (else zeros).
        `final_states`: True (every state), a list of names, or {name: buffer}.
        Returns {name: tensor} of every output and every final state."""
        key = ptrs = None
        fs = final_states
        if ((outputs is None or type(outputs) is dict) and
                (initial_states is None or type(initial_states) is dict)):
            if fs is True or fs is False or fs is None:
                fin_group = (3, _NONE) if fs is not True else (5, _NONE)
            elif type(fs) is dict:
                fin_group = (3, fs)
            elif type(fs) in (list, tuple) and all(type(n) is str for n in fs):
                fin_group = (6, dict.fromkeys(fs))  # names: fin_kind 1, allocated
            else:
                fin_group = None
            if fin_group is not None:
                key, ptrs = _signature(
                    ((0, tensors), (1, outputs or _NONE), (2, initial_states or _NONE),
                     fin_group, (4, _NONE if cu_seqlens is None else {'': cu_seqlens})))
            hit = self._run_cached(key, ptrs, tensors, outputs, final_states, stream)
            if hit is not _MISS:
                return hit
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
        fin_alloc = []
        for n in fin:
            if fin[n] is None:
                make = self._state_maker(n, call)
                fin[n] = make()
                fin_alloc.append((n, make))
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
        if key is not None:
            names = list(fin)
            made = {n for n, _ in fin_alloc}
            given = [j for j, n in enumerate(names) if n not in made]
            groups = [(ini_arr, len(ini), range(len(ini))), (fin_arr, len(fin), given)]
            self._store(key, _Entry(self, call, tensors, groups, False, True,
                                    [(n, make, names.index(n)) for n, make in fin_alloc]))
        return res

    def step(self, states, *, outputs=None, cu_seqlens=None, stream=None, **tensors):
        """A decode step: `states` {name: float32 tensor} (every state) are read as the initial
        states and overwritten with the final ones. Returns {name: tensor} of the outputs."""
        key = ptrs = None
        if type(states) is dict and (outputs is None or type(outputs) is dict):
            key, ptrs = _signature(
                ((0, tensors), (1, outputs or _NONE), (2, states),
                 (4, _NONE if cu_seqlens is None else {'': cu_seqlens})))
            hit = self._run_cached(key, ptrs, tensors, outputs, None, stream)
            if hit is not _MISS:
                return hit
        call = self._prepare(tensors, outputs, cu_seqlens, stream)
        self._check_devices(list(states.items()), 'state')
        st_arr = _named([('state', n, x) for n, x in states.items()])
        err = _capi.Error()
        self._keep = call['keep']
        _raise(self._lib.mixc_step(self._h, ctypes.byref(call['args']), st_arr, len(states),
                                   ctypes.byref(err)), err)
        if key is not None:
            self._store(key, _Entry(self, call, tensors,
                                    [(st_arr, len(states), range(len(states)))], True))
        return dict(call['outputs'])

    def _store(self, key, entry):
        cache = self._cache
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        cache[key] = entry

    def close(self):
        self._cache = {}
        self._hv = None
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
        given = len(outputs or {})
        self._check_devices(conv, 'input')
        outs = dict(outputs or {})
        out_alloc = []
        if self.decl is not None:
            for n, dims in self.decl.outputs:
                if n in outs:
                    continue
                sizes = None if dims is None else [self._dim_size(d) for d in dims]
                if sizes is None or any(s is None for s in sizes) or len(shape0) < lead:
                    continue  # left out: mixc names it as missing
                make = self._empty_maker(fx, list(shape0[:lead]) + sizes, fx.dtype)
                outs[n] = make()
                out_alloc.append((n, make))
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
                'heads': heads, 'in_names': [n for n, _ in conv], 'given': given,
                'out_alloc': out_alloc}

    def _stream(self, stream, fx):
        if self.device != 'cuda':
            return None
        if stream is None:
            import torch
            return torch.cuda.current_stream(fx.device).cuda_stream or None
        if hasattr(stream, 'cuda_stream'):
            return stream.cuda_stream or None
        return int(stream) or None

    def _state_maker(self, name, call):
        """A function allocating final state `name` (float32 [N, H, dims...])."""
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
            return self._empty_maker(fx, [call['N'], call['heads']] + sizes, torch.float32)
        return self._empty_maker(fx, [call['N'], call['heads']] + sizes, 'float32')

    @staticmethod
    def _empty_maker(like, shape, dtype):
        """A function allocating an uninitialised tensor of like's kind (numpy or torch) and
        device (it holds no reference to `like`)."""
        if _is_torch(like):
            import torch
            return functools.partial(torch.empty, shape, dtype=dtype, device=like.device)
        return functools.partial(_np().empty, shape, dtype=dtype)

    @staticmethod
    def _scalar(value, heads, like):
        return Kernel._scalar_maker(heads, like)(value)

    @staticmethod
    def _scalar_maker(heads, like):
        """A function making the broadcast tensor of a number for a param (no reference to
        `like` kept)."""
        if heads is None:
            raise _arg_error('a number for a param needs the heads H read off an input')
        if _is_torch(like):
            import torch
            device = like.device
            return lambda value: torch.full((1,), float(value), dtype=torch.float32,
                                            device=device).expand(heads)
        np = _np()
        return lambda value: np.lib.stride_tricks.as_strided(np.full(1, value, dtype='float32'),
                                                             (heads,), (0,))


def load(path, threads=0):
    """Compile a .mix file in a new Context."""
    return Context(threads).load(path)


def compile(source, filename=None, threads=0):
    """Compile .mix source text in a new Context."""
    return Context(threads).compile(source, filename)

