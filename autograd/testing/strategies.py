"""Hypothesis strategies for property tests of gradients, for xpgrad's ops and users' own."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ..tensor import Tensor

__all__ = ["tensors", "broadcastable_shapes", "valid_axes", "shapes"]


def shapes(min_dims: int = 0, max_dims: int = 4, min_side: int = 1, max_side: int = 4):
    """Array shapes, 0-d and size-1 axes included."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def tensors(shape, dtype=np.float64, elements=None, requires_grad=None, device=None):
    """Tensors of ``shape`` (a tuple or a strategy of tuples) with values from ``elements``.

    Float tensors require grad unless ``requires_grad=False``. Default elements are finite
    floats in [-10, 10]. ``device`` defaults to the default device (``ag.set_default_device``).
    """
    dtype = np.dtype(dtype)
    if elements is None:
        if dtype.kind == "f":
            elements = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=min(dtype.itemsize * 8, 64))
        elif dtype.kind == "b":
            elements = st.booleans()
        else:
            elements = st.integers(-10, 10)
    rg = dtype.kind == "f" if requires_grad is None else requires_grad
    return hnp.arrays(dtype, shape, elements=elements).map(
        lambda a: Tensor(a, device=device, requires_grad=rg)
    )


def broadcastable_shapes(num_shapes: int = 2, min_dims: int = 0, max_dims: int = 4, max_side: int = 4):
    """Tuples of ``num_shapes`` shapes that broadcast together (0-d and size-1 sides included)."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side
    ).map(lambda b: tuple(b.input_shapes))


def valid_axes(ndim: int, allow_none: bool = True, single: bool = False):
    """Axis arguments for a tensor of ``ndim`` dims: None, an int, or a tuple (negatives included)."""
    options = []
    if allow_none:
        options.append(st.none())
    if ndim > 0:
        ints = st.integers(-ndim, ndim - 1)
        options.append(ints)
        if not single:
            options.append(
                st.lists(st.integers(0, ndim - 1), unique=True, min_size=1, max_size=ndim).flatmap(
                    lambda axes: st.tuples(*[st.sampled_from([a, a - ndim]) for a in axes])
                )
            )
    if not options:
        return st.none()
    return st.one_of(*options)
