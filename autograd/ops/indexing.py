"""Indexing: ``t[...]`` (ints, slices, None, Ellipsis, integer and boolean arrays) and take_along_axis.

The backward scatters the gradient back: plain assignment when the index cannot repeat an
element (basic indexing, boolean masks), else the backend's scatter-add so that repeated
integer indices accumulate (``np.add.at`` on CPU, ``cupyx.scatter_add`` on GPU).

The index reaches the backward through ``ctx.save_for_backward``, as it was at forward: index
arrays the caller gave are copied, and index Tensors are saved as Tensors next to it, so an
in-place change to one of them makes the backward raise instead of scattering to the wrong
places.
"""
from __future__ import annotations

import numpy as np

from ..function import Function
from ..tensor import Tensor
from ..versioning import counter as _counter
from ._registry import register
from ._util import as_tensor, from_dim, normalize_axis

__all__ = ["normalize_index"]  # the registered ops join it below


def normalize_index(index, device):
    """Index with Tensors/lists turned into arrays of ``device``'s backend; bool arrays kept."""
    if not isinstance(index, tuple):
        index = (index,)
    out = []
    for item in index:
        if isinstance(item, Tensor):
            out.append(_tensor_index(item, device))
        elif isinstance(item, list) or (isinstance(item, np.ndarray) and device.type != "cpu"):
            out.append(_host_index(item, device))
        else:
            out.append(item)
    return tuple(out)


def _tensor_index(item: Tensor, device):
    if item.device is not device:
        raise RuntimeError(f"indexing a tensor on {device} with an index tensor on {item.device}")
    data = item.data
    if data.dtype.kind not in "iub":
        raise IndexError(f"tensors used as indices must be integer or bool, got dtype {data.dtype}")
    return data


def _host_index(item, device):
    """A list, or a NumPy array bound for another device, as a fresh array of ``device``."""
    arr = np.asarray(item)
    if arr.dtype.kind not in "iub":
        raise IndexError(f"index arrays must be integer or bool, got dtype {arr.dtype}")
    return device.backend.asarray(arr)


def _key(index, device):
    """``normalize_index`` for a gather whose index is saved for backward, in one pass:
    (index of arrays, the index Tensors it came from, whether it is basic, i.e. a view).

    Arrays the caller holds are copied (the caller may change them after forward); arrays made
    here from lists are fresh already; Tensors keep their own arrays and are returned so their
    versions can be checked."""
    if type(index) is not tuple:
        index = (index,)
    out = []
    held = ()
    basic = True
    for item in index:
        if item is None or item is Ellipsis or type(item) is int or type(item) is slice:
            out.append(item)
            continue
        if isinstance(item, Tensor):
            out.append(_tensor_index(item, device))
            held += (item,)
            basic = False
        elif isinstance(item, list) or (isinstance(item, np.ndarray) and device.type != "cpu"):
            out.append(_host_index(item, device))
            basic = False
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            out.append(item)  # an integer of another type: still basic
        elif isinstance(item, np.ndarray) or isinstance(item, device.backend.array_type):
            out.append(item.copy())  # an array of the caller's
            basic = False
        else:  # bools, nested sequences, and whatever NumPy itself rejects
            out.append(item)
            basic = False
    return tuple(out), held, basic


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
    """``a[index]``. ``index`` holds arrays no caller can change; ``held`` the index Tensors
    its arrays belong to (saved only so that their versions are checked)."""

    raw_backward = True

    @staticmethod
    def forward(ctx, a, index, held):
        ctx.save_for_backward(index, *held)
        ctx.shape = a.data.shape
        try:
            return a.data[index]
        except IndexError as exc:
            raise IndexError(f"{exc} (indexing a tensor of shape {tuple(a.data.shape)})") from None

    @staticmethod
    def backward(ctx, g):
        index = ctx.saved[0]
        accumulate = _may_repeat(index)
        dev = ctx.device
        backend = dev._backend or dev.backend
        if isinstance(g, Tensor):
            held = ctx.saved_tensors[1:]
            return IndexScatter.apply(g, index, held, ctx.shape, accumulate, backend)
        return _scatter(ctx.xp, backend, ctx.shape, g.dtype, index, g, accumulate)


class IndexScatter(Function):
    """Gradient of GetItem as an op of its own, so it can be differentiated again (its own
    backward is the gather)."""

    raw_backward = True

    @staticmethod
    def forward(ctx, g, index, held, shape, accumulate, backend):
        ctx.save_for_backward(index, *held)
        return _scatter(ctx.xp, backend, shape, g.data.dtype, index, g.data, accumulate)

    @staticmethod
    def backward(ctx, gg):
        saved = ctx.saved
        index = saved[0]
        if isinstance(gg, Tensor):
            return GetItem.apply(gg, index, ctx.saved_tensors[1:])
        return gg[index]


@register(method="__getitem__")
def getitem(x, index):
    if not isinstance(x, Tensor):
        x = as_tensor(x)
    index, held, basic = _key(index, x.device)
    out = GetItem.apply(x, index, held)
    if basic:
        out._version = _counter(x)  # a basic index returns a view
    return out


@register
def take_along_axis(x, indices, axis=None, *, dim=None):
    """NumPy's take_along_axis; its gradient scatter-adds into the selected positions."""
    if dim is not None:
        axis = from_dim(axis, dim, "take_along_axis")
    if axis is None:
        raise TypeError("take_along_axis: axis (or dim) is required")
    x = as_tensor(x)
    key, held, _ = _key(indices, x.device)
    idx = key[0]
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
    return GetItem.apply(x, tuple(full), held)
