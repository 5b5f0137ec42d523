"""A torch.autograd.Function around a mixc kernel's forward.

    from mixc.autograd import apply
    out = apply(kernel, q=q, k=k, v=v, g=g)            # {name: tensor}, as Kernel.forward

The outputs join torch's graph, so a model can use mixc in its forward; the backward pass is
not implemented yet (it is a later piece of mixc): calling backward through it raises
NotImplementedError. Under torch.no_grad() or for inference nothing changes.
"""
import torch


class MixcFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kernel, names, options, keys, *tensors):
        res = kernel.forward(**dict(zip(names, tensors)), **options)
        ctx.mixer = kernel.mixer
        keys.extend(res)
        return tuple(res.values())

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError(
            f"mixc: the backward pass of mixer '{ctx.mixer}' is not implemented yet (mixc runs "
            f"forward and decode steps only for now); run it under torch.no_grad(), or detach "
            f"its inputs")


def apply(kernel, *, initial_states=None, final_states=False, cu_seqlens=None, **tensors):
    """kernel.forward(...) as an autograd op: returns {name: tensor}."""
    names = list(tensors)
    options = {'initial_states': initial_states, 'final_states': final_states,
               'cu_seqlens': cu_seqlens}
    keys = []
    outs = MixcFunction.apply(kernel, names, options, keys, *[tensors[n] for n in names])
    if not isinstance(outs, tuple):
        outs = (outs,)
    return dict(zip(keys, outs))
