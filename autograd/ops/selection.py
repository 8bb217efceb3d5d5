"""Selection and masking: tril/triu, masked_fill, sort, argsort and topk.

``tril``/``triu`` and ``masked_fill`` mask their gradient the way they mask their values.
``sort`` and ``topk`` pick positions first (indices carry no gradient) and gather the values
with ``take_along_axis``, so their gradient scatters back to the chosen positions and is
differentiable again. Ties keep their original order (a stable sort, in both directions);
NaN counts as larger than every number, as in PyTorch.
"""
from __future__ import annotations

import numpy as np

from ..function import Function
from ..tensor import Tensor
from ._registry import register
from ._util import as_tensor, normalize_axis

__all__: list = []  # the registered ops join it below


# -- tril / triu -------------------------------------------------------------------------------------------

def _offset(op: str, k, diagonal) -> int:
    if diagonal is not None:
        if k != 0:
            raise TypeError(f"{op}: give the offset once, as k= (NumPy) or diagonal= (PyTorch), not both")
        k = diagonal
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"{op}: the diagonal offset must be an int, got {type(k).__name__}")
    return int(k)


def _matrix(x, op: str) -> Tensor:
    x = as_tensor(x)
    if x.data.ndim < 2:
        raise ValueError(f"{op}: needs a tensor of at least 2 dimensions (it masks the last two), got shape {x.shape}")
    return x


class Tril(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a, k):
        ctx.k = k
        return ctx.xp.tril(a.data, k)

    @staticmethod
    def backward(ctx, g):
        return ctx.ops.tril(g, ctx.k)


@register
def tril(x, k=0, diagonal=None):
    """The lower triangle of the last two axes (batched): elements above diagonal ``k`` become 0.

    ``k > 0`` keeps that many diagonals above the main one, ``k < 0`` drops that many more.
    PyTorch's ``diagonal=`` spelling is accepted too. The gradient is masked the same way.
    """
    return Tril.apply(_matrix(x, "tril"), _offset("tril", k, diagonal))


class Triu(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a, k):
        ctx.k = k
        return ctx.xp.triu(a.data, k)

    @staticmethod
    def backward(ctx, g):
        return ctx.ops.triu(g, ctx.k)


@register
def triu(x, k=0, diagonal=None):
    """The upper triangle of the last two axes (batched): elements below diagonal ``k`` become 0."""
    return Triu.apply(_matrix(x, "triu"), _offset("triu", k, diagonal))


# -- masked_fill -----------------------------------------------------------------------------------------

class MaskedFill(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a, mask, value):
        # mask: a bool Tensor (saved as such: an in-place change to it is caught at backward) or a
        # bool array no caller holds (masked_fill copies the caller's arrays).
        ctx.save_for_backward(mask)
        m = mask.data if isinstance(mask, Tensor) else mask
        ad = a.data
        fill = ctx.xp.asarray(value, dtype=ad.dtype) if ad.dtype.kind == "f" else ctx.xp.asarray(value).astype(ad.dtype)
        return ctx.xp.where(m, fill, ad)

    @staticmethod
    def backward(ctx, g):
        (m,) = ctx.saved
        return ctx.ops.where(m, 0, g)


def _mask_of(x: Tensor, mask, op: str):
    if isinstance(mask, Tensor):
        if mask.device is not x.device:
            raise RuntimeError(f"{op}: the mask is on {mask.device} but the tensor is on {x.device}")
        if mask.data.dtype != np.bool_:
            raise TypeError(f"{op}: the mask must be a bool tensor, got dtype {mask.data.dtype}; use mask.astype(bool) or mask != 0")
        m = mask
        shape = mask.shape
    else:
        backend = x.device.backend
        if isinstance(mask, backend.array_type) and not isinstance(mask, np.ndarray):
            m = mask.copy()
        else:
            if isinstance(mask, np.ndarray) and x.device.type != "cpu":
                raise RuntimeError(
                    f"{op}: the mask is a NumPy array (on cpu) and the tensor is on {x.device}; nothing is copied "
                    f"implicitly: wrap it with ag.tensor(mask, device='{x.device}')"
                )
            m = backend.asarray(np.array(mask))  # a private copy
        if m.dtype != np.bool_:
            raise TypeError(f"{op}: the mask must be a bool array, got dtype {m.dtype}; use mask.astype(bool) or mask != 0")
        shape = tuple(m.shape)
    try:
        full = np.broadcast_shapes(tuple(shape), tuple(x.shape))
    except ValueError:
        full = None
    if full != tuple(x.shape):
        raise ValueError(f"{op}: a mask of shape {tuple(shape)} does not broadcast to the tensor's shape {tuple(x.shape)}")
    return m


@register
def masked_fill(x, mask, value):
    """``value`` where ``mask`` is True, ``x`` elsewhere; ``mask`` (bool) broadcasts against ``x``.

    ``value`` is a Python number or a 0-d tensor (a 0-d tensor that requires grad gets the sum of
    the gradient over the filled positions, as in PyTorch). The result keeps ``x``'s shape and
    dtype; the gradient of ``x`` is zero where the mask is set.
    """
    x = as_tensor(x)
    m = _mask_of(x, mask, "masked_fill")
    if isinstance(value, Tensor):
        if value.data.ndim != 0:
            raise ValueError(f"masked_fill: value must be a number or a 0-d tensor, got a tensor of shape {value.shape}")
        if value.device is not x.device:
            raise RuntimeError(f"masked_fill: value is on {value.device} but the tensor is on {x.device}")
        if value.requires_grad:
            from .elementwise import where

            v = value if value.dtype == x.dtype else value.astype(x.dtype)
            return where(m, v, x)
        value = value.data
    elif isinstance(value, (bool, int, float, np.number)):
        pass
    else:
        raise TypeError(f"masked_fill: value must be a Python number or a 0-d tensor, got {type(value).__name__}")
    return MaskedFill.apply(x, m, value)


# -- sort / argsort / topk ------------------------------------------------------------------------------

def _dim(x: Tensor, dim, op: str) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an int, got {type(dim).__name__}")
    return normalize_axis(int(dim), x.data.ndim, op)[0]


def _order(xp, a, axis: int, descending: bool):
    """Indices (int64) sorting ``a`` along ``axis``; ties keep their order; NaN counts as largest."""
    if a.ndim == 0:
        return xp.zeros((), dtype=np.int64)
    if not descending:
        return xp.argsort(a, axis=axis, kind="stable").astype(np.int64, copy=False)
    kind = a.dtype.kind
    if kind == "b" or kind == "u":
        key = -(a.astype(np.int64))
    else:
        key = -a  # signed ints and floats; NaN stays NaN, which the stable pass below puts first
    idx = xp.argsort(key, axis=axis, kind="stable")
    if kind == "f":
        not_nan = ~xp.isnan(xp.take_along_axis(a, idx, axis=axis))
        idx = xp.take_along_axis(idx, xp.argsort(not_nan, axis=axis, kind="stable"), axis=axis)
    return idx.astype(np.int64, copy=False)


def _gather(x: Tensor, idx, axis: int) -> Tensor:
    from .indexing import take_along_axis

    if x.data.ndim == 0:
        return x * 1
    return take_along_axis(x, _index_tensor(idx, x), axis)


def _index_tensor(idx, like: Tensor) -> Tensor:
    from ..tensor import _make

    return _make(idx, like.device, None, 0, False)


@register
def argsort(x, axis=-1, descending=False, dim=None):
    """Indices (int64) that sort ``x`` along ``axis`` (PyTorch's ``dim=`` too); not differentiable.

    The sort is stable in both directions: equal elements keep their order.
    """
    x = as_tensor(x)
    if dim is not None:
        axis = dim
    ax = _dim(x, axis, "argsort")
    return _index_tensor(_order(x.device.backend.xp, x.data, ax, bool(descending)), x)


@register
def sort(x, dim=-1, descending=False, axis=None):
    """``(values, indices)`` sorted along ``dim``, as ``torch.sort``; ``values`` is differentiable
    (its gradient goes back to the positions the values came from)."""
    x = as_tensor(x)
    if axis is not None:
        dim = axis
    ax = _dim(x, dim, "sort")
    idx = _order(x.device.backend.xp, x.data, ax, bool(descending))
    return _gather(x, idx, ax), _index_tensor(idx, x)


@register
def topk(x, k, dim=-1, largest=True, sorted=True):
    """``(values, indices)`` of the ``k`` largest (``largest=False``: smallest) elements along ``dim``,
    as ``torch.topk``. With ``sorted=True`` (and, here, always) they come in order, largest first
    (smallest first for ``largest=False``); among equal elements the earlier one comes first.
    ``values`` is differentiable: its gradient is scattered back to the chosen positions.
    """
    x = as_tensor(x)
    ax = _dim(x, dim, "topk")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"topk: k must be an int, got {type(k).__name__}")
    n = x.data.shape[ax] if x.data.ndim else 1
    if not 0 <= int(k) <= n:
        raise ValueError(f"topk: k={int(k)} is out of range for dimension {ax} of size {n} (need 0 <= k <= {n})")
    xp = x.device.backend.xp
    idx = _order(xp, x.data, ax, bool(largest))
    if x.data.ndim:
        idx = xp.take(idx, xp.arange(int(k)), axis=ax)
    return _gather(x, idx, ax), _index_tensor(idx, x)
