"""ctypes declarations of runtime/include/mixc.h and the loading of libmixc.so.

Kept in step with mixc.h by hand: the structs below mirror its layout field by field.
"""
import ctypes
import ctypes.util
import os

MAX_DIMS = 8

# enum mixc_status
OK, ERROR_SOURCE, ERROR_ARGUMENT, ERROR_UNSUPPORTED, ERROR_DEVICE, ERROR_OUT_OF_MEMORY, \
    ERROR_INTERNAL = range(7)
# enum mixc_dtype
F32, BF16, F16, I32, I64 = range(5)
# enum mixc_device_kind
CPU, CUDA = range(2)
# enum mixc_strategy
STRATEGIES = {'auto': 0, 'recurrent': 1, 'chunk': 2, 'parallel': 3}


class Error(ctypes.Structure):
    _fields_ = [('status', ctypes.c_int), ('message', ctypes.c_char * 4096)]


class Tensor(ctypes.Structure):
    _fields_ = [('data', ctypes.c_void_p), ('dtype', ctypes.c_int), ('ndim', ctypes.c_int),
                ('shape', ctypes.c_int64 * MAX_DIMS), ('stride', ctypes.c_int64 * MAX_DIMS)]


class NamedTensor(ctypes.Structure):
    _fields_ = [('name', ctypes.c_char_p), ('tensor', Tensor)]


class Dim(ctypes.Structure):
    _fields_ = [('name', ctypes.c_char_p), ('size', ctypes.c_int64)]


class KernelOptions(ctypes.Structure):
    _fields_ = [('mixer', ctypes.c_char_p), ('dims', ctypes.POINTER(Dim)), ('ndims', ctypes.c_int),
                ('device', ctypes.c_int), ('strategy', ctypes.c_int),
                ('chunk_size', ctypes.c_int64),
                # added since 0.1 (zero keeps the old meaning)
                ('device_index', ctypes.c_int), ('check_cu_seqlens', ctypes.c_int),
                ('vtile', ctypes.c_int64), ('segments', ctypes.c_int64)]


class Args(ctypes.Structure):
    _fields_ = [('inputs', ctypes.POINTER(NamedTensor)), ('ninputs', ctypes.c_int),
                ('outputs', ctypes.POINTER(NamedTensor)), ('noutputs', ctypes.c_int),
                ('initial_states', ctypes.POINTER(NamedTensor)), ('ninitial', ctypes.c_int),
                ('final_states', ctypes.POINTER(NamedTensor)), ('nfinal', ctypes.c_int),
                ('cu_seqlens', ctypes.POINTER(Tensor)), ('stream', ctypes.c_void_p)]


_P = ctypes.c_void_p
_PROTOS = {
    'mixc_context_create': (ctypes.c_int, [ctypes.c_int, ctypes.POINTER(_P), ctypes.POINTER(Error)]),
    'mixc_context_destroy': (None, [_P]),
    'mixc_module_compile': (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                           ctypes.POINTER(_P), ctypes.POINTER(Error)]),
    'mixc_module_destroy': (None, [_P]),
    'mixc_module_mixer_count': (ctypes.c_int, [_P]),
    'mixc_module_mixer_name': (ctypes.c_char_p, [_P, ctypes.c_int]),
    'mixc_kernel_create': (ctypes.c_int, [_P, ctypes.POINTER(KernelOptions), ctypes.POINTER(_P),
                                          ctypes.POINTER(Error)]),
    'mixc_kernel_destroy': (None, [_P]),
    'mixc_forward': (ctypes.c_int, [_P, ctypes.POINTER(Args), ctypes.POINTER(Error)]),
    'mixc_step': (ctypes.c_int, [_P, ctypes.POINTER(Args), ctypes.POINTER(NamedTensor),
                                 ctypes.c_int, ctypes.POINTER(Error)]),
    'mixc_kernel_compile_ms': (ctypes.c_double, [_P, ctypes.POINTER(ctypes.c_int)]),
    'mixc_kernel_wait_ready': (ctypes.c_int, [_P, ctypes.POINTER(Error)]),
    'mixc_kernel_optimized_ms': (ctypes.c_double, [_P, ctypes.POINTER(ctypes.c_int)]),
    'mixc_status_name': (ctypes.c_char_p, [ctypes.c_int]),
    'mixc_dtype_name': (ctypes.c_char_p, [ctypes.c_int]),
    'mixc_version': (ctypes.c_char_p, []),
}

_lib = None


def candidates():
    """Where libmixc.so is looked for, in order."""
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))  # python/mixc -> the repository root
    out = []
    env = os.environ.get('MIXC_LIB')
    if env:
        out.append(os.path.join(env, 'libmixc.so') if os.path.isdir(env) else env)
    out.append(os.path.join(here, 'libmixc.so'))
    if os.environ.get('MIXC_BUILD'):
        out.append(os.path.join(os.environ['MIXC_BUILD'], 'libmixc.so'))
    out.append(os.path.join(root, 'build', 'libmixc.so'))
    return out


def lib():
    """The loaded library (loaded at the first call), or OSError saying where it was sought."""
    global _lib
    if _lib is not None:
        return _lib
    tried = []
    env_set = bool(os.environ.get('MIXC_LIB'))
    for i, path in enumerate(candidates()):
        if not os.path.exists(path):
            tried.append(f'{path} (not there)')
            if i == 0 and env_set:
                break  # an explicit MIXC_LIB that is wrong is an error, not a hint
            continue
        try:
            handle = ctypes.CDLL(path)
        except OSError as e:
            tried.append(f'{path} ({e})')
            if i == 0 and env_set:
                break
            continue
        _lib = _declare(handle)
        _lib.mixc_path = path
        return _lib
    if not env_set:
        found = ctypes.util.find_library('mixc')
        if found:
            try:
                _lib = _declare(ctypes.CDLL(found))
                _lib.mixc_path = found
                return _lib
            except OSError as e:
                tried.append(f'{found} ({e})')
    raise OSError('mixc: cannot load libmixc.so; tried: ' + '; '.join(tried) +
                  '. Build it (cmake --build BUILD --target mixc_shared) and set MIXC_LIB to '
                  'the file or its folder.')


# The structs whose layout must match the library's (checked at load through mixc_sizeof).
_LAYOUTS = {'mixc_kernel_options': 'KernelOptions', 'mixc_args': 'Args', 'mixc_tensor': 'Tensor',
            'mixc_named_tensor': 'NamedTensor', 'mixc_dim': 'Dim', 'mixc_error': 'Error'}


# The calls of the Python package's cached path (core._Entry), with every pointer passed as a
# plain address (an int): ctypes converts those faster than byref() objects.
_FAST = {
    'mixc_forward': (ctypes.c_int, [_P, _P, _P]),
    'mixc_step': (ctypes.c_int, [_P, _P, _P, ctypes.c_int, _P]),
}


def _declare(handle):
    for name, (res, args) in _PROTOS.items():
        fn = getattr(handle, name)
        fn.restype = res
        fn.argtypes = args
    for name, (res, args) in _FAST.items():
        setattr(handle, name + '_addr', ctypes.CFUNCTYPE(res, *args)((name, handle)))
    sizeof = getattr(handle, 'mixc_sizeof', None)
    if sizeof is None:
        raise OSError('mixc: this libmixc.so predates mixc_sizeof: it is older than the Python '
                      'package; build the library from the same checkout')
    sizeof.restype = ctypes.c_size_t
    sizeof.argtypes = [ctypes.c_char_p]
    for cname, pyname in _LAYOUTS.items():
        want, have = sizeof(cname.encode()), ctypes.sizeof(globals()[pyname])
        if want != have:
            raise OSError(f'mixc: {cname} is {want} bytes in the library but {have} in the Python '
                          'package: the package and libmixc.so come from different versions')
    return handle
