"""Reductions over axes: sum, mean, var, max, min, prod, logsumexp, argmax, argmin (and the
Tensor-only ``any``/``all``).

Each op is one block: its Function class, its public function and the ``register`` call (see
``_registry``). Shapes and axes stay on ``ctx``; arrays a backward reads (the input, tie weights,
the logsumexp shift) go through ``ctx.save_for_backward``.
"""
from __future__ import annotations

import collections
import math

import numpy as np

from ..function import Function
from ..tensor import _make
from ._registry import register, tensor_method
from ._util import DefaultInt, as_tensor, from_dim, kept_shape, normalize_axis

# np.broadcast_to is a Python function over nditer (~25,000 instructions, several times a small
# op): below this many elements a freshly filled array is cheaper, and its memory is negligible.
_FILL_LIMIT = 4096


def _spread(ctx, g):
    """Upstream gradient of a reduction, broadcast back to the input's shape."""
    g = g.reshape(ctx.kshape)
    ops = ctx.ops
    if ops is np and math.prod(ctx.shape) <= _FILL_LIMIT:
        out = np.empty(ctx.shape, g.dtype)
        out[...] = g
        return out
    return ops.broadcast_to(g, ctx.shape)


def _count(shape, axes) -> int:
    if axes is None:
        return math.prod(shape)
    return math.prod(shape[a] for a in axes)


def _axes(x, axis, name):
    axes = normalize_axis(axis, x.data.ndim, name)
    # A 0-d tensor accepts axis 0 or -1 (as NumPy's sum/max and PyTorch): it reduces over no axis.
    return () if axes is not None and x.data.ndim == 0 else axes


def _torch_names(axis, dim, keepdims, keepdim, name):
    """PyTorch's ``dim=``/``keepdim=`` for ``axis=``/``keepdims=`` (only called when one is given)."""
    if dim is not None:
        axis = from_dim(axis, dim, name)
    if keepdim is not None:
        keepdims = from_dim(keepdims if keepdims is not False else None, keepdim, name, "keepdims/keepdim")
    return axis, keepdims


def _reduce(fn, x, axis, keepdims, name):
    x = as_tensor(x)
    return fn.apply(x, _axes(x, axis, name), bool(keepdims))


class Sum(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a, axes, keepdims):
        x = a.data
        ctx.shape = x.shape
        ctx.kshape = kept_shape(x.shape, axes)
        return x.sum(axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        return _spread(ctx, g)


@register
def sum(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    if dim is not None or keepdim is not None:
        axis, keepdims = _torch_names(axis, dim, keepdims, keepdim, "sum")
    return _reduce(Sum, x, axis, keepdims, "sum")


class Mean(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a, axes, keepdims):
        x = a.data
        ctx.shape = x.shape
        ctx.kshape = kept_shape(x.shape, axes)
        ctx.n = _count(x.shape, axes)
        return x.mean(axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        return _spread(ctx, g / ctx.n) if ctx.n else _spread(ctx, g)


@register
def mean(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    if dim is not None or keepdim is not None:
        axis, keepdims = _torch_names(axis, dim, keepdims, keepdim, "mean")
    return _reduce(Mean, x, axis, keepdims, "mean")


class Var(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a, axes, ddof, keepdims):
        x = a.data
        ctx.save_for_backward(a)
        ctx.shape = x.shape
        ctx.kshape = kept_shape(x.shape, axes)
        ctx.axes = axes
        ctx.scale = 2.0 / (_count(x.shape, axes) - ddof) if _count(x.shape, axes) - ddof > 0 else float("nan")
        return x.var(axis=axes, ddof=ddof, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved
        centered = x - x.mean(axis=ctx.axes, keepdims=True)
        return _spread(ctx, g) * centered * ctx.scale


@register
def var(x, axis=None, ddof=DefaultInt(0), keepdims=False, *, dim=None, keepdim=None):
    """Variance with NumPy's ``ddof`` (0: population variance, the default)."""
    if dim is not None or keepdim is not None:
        if type(ddof) is DefaultInt:  # torch.var(x, dim) is unbiased by default: never guess
            raise TypeError(
                "var: with PyTorch's dim=/keepdim= pass ddof= explicitly: torch.var defaults to the unbiased "
                "estimate (ddof=1), NumPy and xpgrad to ddof=0"
            )
        axis, keepdims = _torch_names(axis, dim, keepdims, keepdim, "var")
    x = as_tensor(x)
    return Var.apply(x, _axes(x, axis, "var"), ddof, bool(keepdims))


class _Extreme(Function):
    """max/min: the gradient goes to the extreme elements, split evenly among ties."""

    raw_backward = True
    _method = ""

    @classmethod
    def forward(cls, ctx, a, axes, keepdims):
        x = a.data
        if x.size == 0 and (axes is None or any(x.shape[i] == 0 for i in axes)):
            raise ValueError(f"{cls._method}: reduction over an empty axis of a tensor of shape {x.shape}")
        ctx.shape = x.shape
        ctx.kshape = kept_shape(x.shape, axes)
        y = getattr(x, cls._method)(axis=axes, keepdims=True)
        hits = x == y
        ctx.save_for_backward(hits / hits.sum(axis=axes, keepdims=True).astype(x.dtype))  # each element's share
        return y if keepdims else y.reshape(tuple(n for i, n in enumerate(x.shape) if axes is not None and i not in axes))

    @staticmethod
    def backward(ctx, g):
        (weight,) = ctx.saved
        return _spread(ctx, g) * weight


class Max(_Extreme):
    _method = "max"


@register
def max(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Maximum over axes; tied maxima share the gradient evenly."""
    if dim is not None or keepdim is not None:
        return _values_indices(Max, argmax, x, *_torch_names(axis, dim, keepdims, keepdim, "max"))
    return _reduce(Max, x, axis, keepdims, "max")


class Min(_Extreme):
    _method = "min"


@register
def min(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Minimum over axes; tied minima share the gradient evenly."""
    if dim is not None or keepdim is not None:
        return _values_indices(Min, argmin, x, *_torch_names(axis, dim, keepdims, keepdim, "min"))
    return _reduce(Min, x, axis, keepdims, "min")


ValuesIndices = collections.namedtuple("ValuesIndices", ["values", "indices"])


def _values_indices(fn, argfn, x, axis, keepdims):
    """``max(x, dim=d)``/``min(x, dim=d)``: PyTorch's (values, indices) pair."""
    if not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{fn._method}: with dim= the axis must be one int (PyTorch returns values and indices), got {axis!r}")
    return ValuesIndices(_reduce(fn, x, axis, keepdims, fn._method), argfn(x, axis, keepdims))


class Prod(Function):
    raw_backward = True
    saves_output = True

    @staticmethod
    def forward(ctx, a, axes, keepdims):
        x = a.data
        ctx.save_for_backward(a)
        ctx.shape = x.shape
        ctx.kshape = kept_shape(x.shape, axes)
        ctx.axes = axes
        ctx.keepdims = keepdims
        return x.prod(axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved
        return _spread(ctx, g) * _product_of_others(ctx, x)


def _product_of_others(ctx, x):
    """For each element, the product of the other elements in its reduction group."""
    xp = ctx.xp
    has_zero = bool((ctx.xp.asarray(x.data if not ctx._raw else x) == 0).any())
    if not has_zero:
        y = ctx.output
        if not ctx.keepdims:
            y = y.reshape(ctx.kshape)
        return y / x
    axes = ctx.axes if ctx.axes is not None else tuple(range(len(ctx.shape)))
    rest = tuple(i for i in range(len(ctx.shape)) if i not in axes)
    perm = rest + axes
    inv = tuple(int(i) for i in np.argsort(perm))
    moved_shape = tuple(ctx.shape[i] for i in perm)
    n = math.prod(ctx.shape[i] for i in axes)
    flat = x.transpose(perm).reshape(moved_shape[: len(rest)] + (n,))
    if ctx._raw:
        # Exclusive prefix and suffix products: exact with zeros, O(n).
        ones = xp.ones(flat.shape[:-1] + (1,), dtype=flat.dtype)
        left = xp.cumprod(xp.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
        right = xp.flip(xp.cumprod(xp.concatenate([ones, xp.flip(flat, -1)[..., :-1]], axis=-1), axis=-1), -1)
        others = left * right
    else:
        # Differentiable form: product over rows of an (n, n) matrix with ones on the diagonal.
        from xpgrad import autograd as ag

        eye = xp.eye(n, dtype=bool)
        rows = ag.where(eye, 1.0, ag.expand_dims(flat, -2))
        others = ag.prod(rows, axis=-1)
    return others.reshape(moved_shape).transpose(inv)


@register
def prod(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    if dim is not None or keepdim is not None:
        axis, keepdims = _torch_names(axis, dim, keepdims, keepdim, "prod")
    return _reduce(Prod, x, axis, keepdims, "prod")


class LogSumExp(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a, axes, keepdims):
        xp = ctx.xp
        x = a.data
        ctx.shape = x.shape
        ctx.kshape = kept_shape(x.shape, axes)
        ctx.axes = axes
        m = x.max(axis=axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)  # all -inf rows stay -inf instead of NaN
        ctx.save_for_backward(a, m)
        # exp of entries far below the maximum underflows to 0 by design; log(0) gives -inf rows.
        with np.errstate(divide="ignore", under="ignore"):
            out = xp.log(xp.exp(x - m).sum(axis=axes, keepdims=True)) + m
        return out if keepdims else out.reshape(tuple(n for i, n in enumerate(x.shape) if axes is not None and i not in axes))

    @staticmethod
    def backward(ctx, g):
        x, shift = ctx.saved
        # softmax(x) from the max-shifted exponentials, not exp(x - output): at |x| ~ 1e4 in float32
        # the rounded output is off by ~5e-4, which would skew every weight by as much. The shift is a
        # constant (softmax is shift-invariant), so this stays exact for higher orders too.
        with np.errstate(under="ignore"):  # weights of far-below-max entries are 0
            e = ctx.ops.exp(x - shift)
            return _spread(ctx, g) * (e / e.sum(axis=ctx.axes, keepdims=True))


@register
def logsumexp(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """log(sum(exp(x))) over axes, shifted by the maximum so it never overflows."""
    if dim is not None or keepdim is not None:
        axis, keepdims = _torch_names(axis, dim, keepdims, keepdim, "logsumexp")
    return _reduce(LogSumExp, x, axis, keepdims, "logsumexp")


class _ArgExtreme(Function):
    differentiable = False
    raw_backward = True
    _method = ""

    @classmethod
    def forward(cls, ctx, a, axis, keepdims):
        out = getattr(a.data, cls._method)(axis=axis, keepdims=keepdims)
        return out.astype(np.int64, copy=False) if hasattr(out, "astype") else np.int64(out)


def _arg_axis(x, axis, name):
    if axis is None:
        return None
    if not isinstance(axis, (int, np.integer)):  # silently using axis[0] would be wrong
        raise TypeError(f"{name}: axis must be an int or None, got {axis!r}")
    axes = _axes(x, axis, name)
    return axes[0] if axes else None


class ArgMax(_ArgExtreme):
    _method = "argmax"


@register
def argmax(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    if dim is not None or keepdim is not None:
        axis, keepdims = _torch_names(axis, dim, keepdims, keepdim, "argmax")
    x = as_tensor(x)
    return ArgMax.apply(x, _arg_axis(x, axis, "argmax"), bool(keepdims))


class ArgMin(_ArgExtreme):
    _method = "argmin"


@register
def argmin(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    if dim is not None or keepdim is not None:
        axis, keepdims = _torch_names(axis, dim, keepdims, keepdim, "argmin")
    x = as_tensor(x)
    return ArgMin.apply(x, _arg_axis(x, axis, "argmin"), bool(keepdims))


def _reduce_bool(method_name):
    """``t.any()``/``t.all()``: bool tensors outside the graph (Tensor methods only, as NumPy's)."""

    def method(self, axis=None, keepdims=False):
        data = getattr(self.data, method_name)(axis=axis, keepdims=keepdims)
        return _make(self.device.backend.asarray(data), self.device, None, 0, False)

    method.__name__ = method.__qualname__ = method_name
    return method


tensor_method("any", _reduce_bool("any"))
tensor_method("all", _reduce_bool("all"))
