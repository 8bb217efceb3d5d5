"""Pooling: ``max_pool1d/2d``, ``avg_pool1d/2d`` and ``adaptive_avg_pool2d``, as PyTorch's.

max pooling picks each window's first maximum (in row-major window order, as PyTorch), so at ties
the whole gradient goes to that one element. Its gradient (a scatter to the picked elements) and
the selection itself are two Functions that are each other's derivative, so it is differentiable to
any order. Average pooling (zero padding counted, PyTorch's default) is a depthwise convolution with
a constant kernel, and adaptive average pooling two matmuls with averaging matrices: both reuse
differentiable ops.
"""
from __future__ import annotations

import math

import numpy as np

from xpgrad import autograd as ag
from xpgrad.autograd import Function, Tensor

from ._common import _is_graph, _tensor, node
from .convolution import _Conv, _col2im, _Geometry, _offset_slices, _out_size, _patches, _tuple

__all__ = ["max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool2d"]


def _pool_geometry(nd, op, x, kernel_size, stride, padding):
    _tensor(x, f"{op}: input")
    if x.ndim not in (nd + 1, nd + 2):
        raise ValueError(f"{op}: expected a {nd + 1}-D (unbatched) or {nd + 2}-D (batched) input, got shape {x.shape}")
    kernel = _tuple(kernel_size, nd, "kernel_size", op, 1)
    stride = kernel if stride is None or (not isinstance(stride, int) and len(stride) == 0) else \
        _tuple(stride, nd, "stride", op, 1)
    pad = _tuple(padding, nd, "padding", op, 0)
    if any(2 * p > k for p, k in zip(pad, kernel)):
        raise ValueError(f"{op}: padding {pad} must be at most half of kernel_size {kernel}")
    unbatched = x.ndim == nd + 1
    in_size = tuple(x.shape[-nd:])
    pads = tuple((p, p) for p in pad)
    out_size = _out_size(in_size, pads, kernel, stride, (1,) * nd)
    if any(s < 1 for s in out_size):
        raise ValueError(f"{op}: kernel_size {kernel} does not fit the input of shape {x.shape} padded by "
                         f"{pad}: the output would have size {out_size}")
    return unbatched, _Geometry((stride, pads, (1,) * nd, 1, in_size, kernel, out_size))


def _not_supported(op, **options):
    for name, (value, default) in options.items():
        if value != default:
            raise NotImplementedError(f"{op}: {name}={value!r} is not supported (only {name}={default!r})")


# -- max pooling ----------------------------------------------------------------------------------

def _gather(xp, x, idx, geo):
    """Each window's element at flat window offset ``idx`` (N, C, *out_size)."""
    n, c = x.shape[:2]
    cols = _patches(xp, x, geo).reshape((n, c, -1) + geo.out_size)
    return xp.take_along_axis(cols, idx[:, :, None], axis=2)[:, :, 0]


def _scatter(xp, g, idx, geo):
    """The adjoint of :func:`_gather`: g (N, C, *out_size) added at the picked elements (N, C, *in_size)."""
    n, c = g.shape[:2]
    cols = xp.zeros((n, c, math.prod(geo.kernel)) + geo.out_size, dtype=g.dtype)
    xp.put_along_axis(cols, idx[:, :, None], g[:, :, None], axis=2)
    return _col2im(xp, cols.reshape((n, c) + geo.kernel + geo.out_size), geo, n, c)


@node("MaxPoolBackward")
class _MaxPool(Function):
    """Each window's element at a given flat offset (the first maximum when ``idx`` is None)."""

    raw_backward = True

    @staticmethod
    def forward(ctx, x, idx, geo):
        xp = ctx.xp
        xd = x.data
        if idx is None:
            n, c = xd.shape[:2]
            cols = _patches(xp, xd, geo, -xp.inf).reshape((n, c, -1) + geo.out_size)
            idx = cols.argmax(axis=2)
            out = xp.take_along_axis(cols, idx[:, :, None], axis=2)[:, :, 0]
        else:
            out = _gather(xp, xd, idx, geo)
        ctx.save_for_backward(idx)
        ctx.geo = geo
        return out

    @staticmethod
    def backward(ctx, g):
        (idx,) = ctx.saved
        if _is_graph(g):
            return _MaxPoolScatter.apply(g, idx, ctx.geo), None, None
        return _scatter(ctx.xp, g, idx, ctx.geo), None, None


@node("MaxPoolGradBackward")
class _MaxPoolScatter(Function):
    """max pooling's input gradient as an op (its derivative is the selection again)."""

    raw_backward = True

    @staticmethod
    def forward(ctx, g, idx, geo):
        ctx.save_for_backward(idx)
        ctx.geo = geo
        return _scatter(ctx.xp, g.data, idx, geo)

    @staticmethod
    def backward(ctx, gg):
        (idx,) = ctx.saved
        if _is_graph(gg):
            return _MaxPool.apply(gg, idx, ctx.geo), None, None
        return _gather(ctx.xp, gg, idx, ctx.geo), None, None


def _max_pool(nd, op, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    _not_supported(op, dilation=(dilation, 1), ceil_mode=(ceil_mode, False), return_indices=(return_indices, False))
    unbatched, geo = _pool_geometry(nd, op, x, kernel_size, stride, padding)
    if x.data.dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating point input, got dtype {x.data.dtype}")
    if unbatched:
        x = x.reshape((1,) + x.shape)
    y = _MaxPool.apply(x, None, geo)
    return y.reshape(y.shape[1:]) if unbatched else y


def max_pool1d(x: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False) -> Tensor:
    """Maximum over windows of (N, C, L) or (C, L); stride defaults to kernel_size, padding (at most
    half the kernel) never wins."""
    return _max_pool(1, "max_pool1d", x, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool2d(x: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False) -> Tensor:
    """Maximum over windows of (N, C, H, W) or (C, H, W); stride defaults to kernel_size, padding (at
    most half the kernel) never wins. At ties the gradient goes to the first maximum only."""
    return _max_pool(2, "max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


# -- average pooling ------------------------------------------------------------------------------

def _avg_pool(nd, op, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    _not_supported(op, ceil_mode=(ceil_mode, False), count_include_pad=(count_include_pad, True),
                   divisor_override=(divisor_override, None))
    unbatched, geo = _pool_geometry(nd, op, x, kernel_size, stride, padding)
    if x.data.dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating point input, got dtype {x.data.dtype}")
    lead = x.shape[:-nd]
    # A depthwise convolution: every channel on its own, against a constant kernel of 1/prod(kernel).
    xs = x.reshape((-1, 1) + geo.in_size)
    xp = x.device.backend.xp
    w = ag.tensor(xp.full((1, 1) + geo.kernel, 1.0 / math.prod(geo.kernel), dtype=x.data.dtype), device=x.device)
    y = _Conv.apply(xs, w, None, geo)
    return y.reshape(lead + geo.out_size)


def avg_pool1d(x: Tensor, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True) -> Tensor:
    """Mean over windows of (N, C, L) or (C, L); zero padding counts in the mean (PyTorch's default)."""
    return _avg_pool(1, "avg_pool1d", x, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


def avg_pool2d(x: Tensor, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None) -> Tensor:
    """Mean over windows of (N, C, H, W) or (C, H, W); zero padding counts in the mean (PyTorch's default)."""
    return _avg_pool(2, "avg_pool2d", x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


def _averaging_matrix(n_in: int, n_out: int, dtype) -> np.ndarray:
    """(n_out, n_in): row i averages PyTorch's bin [floor(i*n_in/n_out), ceil((i+1)*n_in/n_out))."""
    m = np.zeros((n_out, n_in), dtype=dtype)
    for i in range(n_out):
        lo = (i * n_in) // n_out
        hi = -((-(i + 1) * n_in) // n_out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def adaptive_avg_pool2d(x: Tensor, output_size) -> Tensor:
    """Average pooling of (N, C, H, W) or (C, H, W) to ``output_size`` (an int, or a pair whose None
    entries keep that input side), with PyTorch's bins (they overlap when a side does not divide)."""
    op = "adaptive_avg_pool2d"
    _tensor(x, f"{op}: input")
    if x.ndim not in (3, 4):
        raise ValueError(f"{op}: expected a 3-D (unbatched) or 4-D (batched) input, got shape {x.shape}")
    if x.data.dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating point input, got dtype {x.data.dtype}")
    if output_size is None or isinstance(output_size, (int, np.integer)):
        output_size = (output_size, output_size)
    output_size = tuple(output_size)
    if len(output_size) != 2:
        raise ValueError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
    h, w = x.shape[-2:]
    oh, ow = (s if o is None else int(o) for o, s in zip(output_size, (h, w)))
    if oh < 1 or ow < 1 or h < 1 or w < 1:
        raise ValueError(f"{op}: output_size {(oh, ow)} and input of shape {x.shape} must have sides >= 1")
    dtype = x.data.dtype
    ah = ag.tensor(x.device.backend.asarray(_averaging_matrix(h, oh, dtype)), device=x.device)
    awt = ag.tensor(x.device.backend.asarray(_averaging_matrix(w, ow, dtype).T.copy()), device=x.device)
    return ag.matmul(ag.matmul(ah, x), awt)
