"""Indexing: ``t[...]`` (ints, slices, None, Ellipsis, integer and boolean arrays) and take_along_axis.

The backward scatters the gradient back: plain assignment when the index cannot repeat an
element (basic indexing, boolean masks), else the backend's scatter-add so that repeated
integer indices accumulate (``np.add.at`` on CPU, ``cupyx.scatter_add`` on GPU).
"""
from __future__ import annotations

import numpy as np

from ..function import Function
from ..tensor import Tensor, _counter
from ._util import as_tensor, normalize_axis

__all__ = ["getitem", "take_along_axis", "normalize_index"]


def normalize_index(index, device):
    """Index with Tensors/lists turned into arrays of ``device``'s backend; bool arrays kept."""
    if not isinstance(index, tuple):
        index = (index,)
    out = []
    for item in index:
        if isinstance(item, Tensor):
            if item.device is not device:
                raise RuntimeError(f"indexing a tensor on {device} with an index tensor on {item.device}")
            data = item.data
            if data.dtype.kind not in "iub":
                raise IndexError(f"tensors used as indices must be integer or bool, got dtype {data.dtype}")
            out.append(data)
        elif isinstance(item, list) or (isinstance(item, np.ndarray) and device.type != "cpu"):
            arr = np.asarray(item)
            if arr.dtype.kind not in "iub":
                raise IndexError(f"index arrays must be integer or bool, got dtype {arr.dtype}")
            out.append(device.backend.asarray(arr))
        else:
            out.append(item)
    return tuple(out)


def _is_basic(index) -> bool:
    for item in index:
        if not (item is None or item is Ellipsis or isinstance(item, (int, slice, np.integer))):
            return False
    return True


def _may_repeat(index) -> bool:
    """True if some element can be selected twice: only integer arrays can do that."""
    for item in index:
        kind = getattr(getattr(item, "dtype", None), "kind", None)
        if kind in ("i", "u"):
            return True
    return False


def _scatter(xp, backend, shape, dtype, index, g, accumulate):
    out = xp.zeros(shape, dtype=dtype)
    if accumulate:
        backend.scatter_add(out, _expand_masks(index), g)
    else:
        out[index] = g
    return out


def _expand_masks(index):
    # x[mask] is x[mask.nonzero()]; scatter-add wants the integer form.
    if not any(getattr(getattr(i, "dtype", None), "kind", None) == "b" for i in index):
        return index
    out = []
    for item in index:
        if getattr(getattr(item, "dtype", None), "kind", None) == "b":
            out.extend(item.nonzero())
        else:
            out.append(item)
    return tuple(out)


class GetItem(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a, index):
        ctx.index = index
        ctx.shape = a.data.shape
        ctx.backend = a.device.backend
        try:
            return a.data[index]
        except IndexError as exc:
            raise IndexError(f"{exc} (indexing a tensor of shape {tuple(a.data.shape)})") from None

    @staticmethod
    def backward(ctx, g):
        accumulate = _may_repeat(ctx.index)
        if isinstance(g, Tensor):
            return IndexScatter.apply(g, ctx.index, ctx.shape, accumulate, ctx.backend)
        return _scatter(ctx.xp, ctx.backend, ctx.shape, g.dtype, ctx.index, g, accumulate)


class IndexScatter(Function):
    """Gradient of GetItem as an op of its own, so it can be differentiated again (its own
    backward is the gather)."""

    raw_backward = True

    @staticmethod
    def forward(ctx, g, index, shape, accumulate, backend):
        ctx.index = index
        return _scatter(ctx.xp, backend, shape, g.data.dtype, index, g.data, accumulate)

    @staticmethod
    def backward(ctx, gg):
        if isinstance(gg, Tensor):
            return GetItem.apply(gg, ctx.index)
        return gg[ctx.index]


def getitem(x, index):
    x = as_tensor(x)
    index = normalize_index(index, x.device)
    out = GetItem.apply(x, index)
    if _is_basic(index):
        out._version = _counter(x)  # a basic index returns a view
    return out


def take_along_axis(x, indices, axis):
    """NumPy's take_along_axis; its gradient scatter-adds into the selected positions."""
    x = as_tensor(x)
    idx = normalize_index(indices, x.device)[0]
    nd = x.data.ndim
    if getattr(idx, "ndim", None) != nd:
        raise ValueError(f"take_along_axis: indices must have {nd} dimensions like the tensor, got shape {np.shape(idx)}")
    ax = normalize_axis(axis, nd, "take_along_axis")[0]
    xp = x.device.backend.xp
    full = []
    for d in range(nd):
        if d == ax:
            full.append(idx)
        else:
            shape = [1] * nd
            shape[d] = x.data.shape[d]
            full.append(xp.arange(x.data.shape[d]).reshape(shape))
    return GetItem.apply(x, tuple(full))
