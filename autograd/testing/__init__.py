"""Public helpers to property-test gradients, of xpgrad's ops and of your own ``ag.Function``s.

>>> from xpgrad.autograd.testing import gradcheck, gradgradcheck, tensors, broadcastable_shapes
"""
from .gradcheck import GradcheckError, gradcheck, gradgradcheck


def __getattr__(name):
    # The hypothesis strategies import hypothesis only when asked for.
    if name in ("tensors", "broadcastable_shapes", "valid_axes", "shapes"):
        from . import strategies

        return getattr(strategies, name)
    raise AttributeError(f"module 'autograd.testing' has no attribute {name!r}")


__all__ = ["GradcheckError", "gradcheck", "gradgradcheck", "tensors", "broadcastable_shapes", "valid_axes", "shapes"]
