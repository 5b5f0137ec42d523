"""mixc for Python: compile .mix mixers and run them on numpy arrays or torch tensors.

    import mixc
    mod = mixc.load('examples/gla.mix')               # a Module in a new Context
    k = mod.kernel(dims={'K': 64, 'V': 64})            # device='cuda' for CUDA tensors
    res = k.forward(q=q, k=kk, v=v, g=g, final_states=True)
    o, S = res['o'], res['S']

A pure-Python package over the C API (runtime/include/mixc.h) through ctypes: it loads
libmixc.so from $MIXC_LIB (the file or its folder), from beside this package, from
$MIXC_BUILD, or from build/ in the source tree. docs/python.md is the reference.
"""
from .core import (Context, Module, Kernel, MixcError, SourceError, ArgumentError,
                   UnsupportedError, DeviceError, OutOfMemoryError, InternalError, version,
                   library_path, load, compile)

__all__ = ['Context', 'Module', 'Kernel', 'MixcError', 'SourceError', 'ArgumentError',
           'UnsupportedError', 'DeviceError', 'OutOfMemoryError', 'InternalError', 'version',
           'library_path', 'load', 'compile', 'apply']


def apply(kernel, **kw):
    """The forward of `kernel` as a torch autograd op (mixc.autograd.apply)."""
    from .autograd import apply as _apply
    return _apply(kernel, **kw)
