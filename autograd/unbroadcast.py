"""Undoing broadcasting, once for all ops: a gradient whose shape differs from its input's is
summed back to that shape, and cast to the input's dtype (float32 inputs get float32 gradients).
"""
from __future__ import annotations

from .anomaly import check_backward

__all__ = ["sum_to", "unbroadcast", "fit"]


def fit(node, g, shape, dtype, anomaly):
    """``g`` summed down to ``shape`` and cast to ``dtype`` (checked under detect_anomaly)."""
    if g.shape != shape:
        g = unbroadcast(node, g, shape)
    if g.dtype != dtype:
        g = g.astype(dtype)
    if anomaly:
        check_backward(node, g)
    return g


def unbroadcast(node, g, shape):
    try:
        return sum_to(g, shape)
    except ValueError:
        raise RuntimeError(
            f"{node.fn.__name__}.backward returned a gradient of shape {tuple(g.shape)} for an "
            f"input of shape {tuple(shape)}"
        ) from None


def sum_to(g, shape):
    """Sum ``g`` (array or Tensor) down to ``shape``, the inverse of broadcasting ``shape`` to g.shape."""
    gshape = g.shape
    if tuple(gshape) == tuple(shape):
        return g
    lead = len(gshape) - len(shape)
    if lead < 0 or any(n != 1 and gshape[lead + i] != n for i, n in enumerate(shape)):
        raise ValueError(f"cannot reduce a gradient of shape {tuple(gshape)} to shape {tuple(shape)}")
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and gshape[lead + i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    if lead:
        g = g.reshape(shape)
    return g
