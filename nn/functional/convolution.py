"""Convolutions (``conv1d``, ``conv2d``) as single ops, with PyTorch's semantics and weight layout.

The array code is the same for 1 and 2 spatial axes. Forward: im2col (the input's patches laid out
as a (N, groups, C/groups * prod(kernel), L) array, L the number of output positions) and one
batched GEMM against the weight. Backward: the patches' gradient is one GEMM with the weight, then
col2im scatter-adds it back with one strided add per kernel offset (cheap for small kernels); the
weight gradient is a batched GEMM of the output gradient and the patches (recomputed, not kept from the
forward pass, so a convolution keeps only its input and weight alive).

The three maps involved (the convolution, its input gradient and its weight gradient) are bilinear
and each one's derivatives are the other two, so they are three Functions whose backwards call each
other under ``create_graph=True``: every gradient here is differentiable again, to any order.

On NumPy the patches come from ``sliding_window_view`` and one copy; on other array modules (CuPy,
the stand-in device) from one strided slice copy per kernel offset, which needs only basic slicing.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from xpgrad.autograd import Function, Tensor

from ._common import _is_graph, _tensor, node

__all__ = ["conv1d", "conv2d"]


# -- geometry --------------------------------------------------------------------------------------

class _Geometry(tuple):
    """Immutable metadata of one convolution: (stride, pads ((lo, hi) per axis), dilation, groups,
    input spatial shape, kernel shape, output spatial shape)."""

    __slots__ = ()

    stride = property(lambda self: self[0])
    pads = property(lambda self: self[1])
    dilation = property(lambda self: self[2])
    groups = property(lambda self: self[3])
    in_size = property(lambda self: self[4])
    kernel = property(lambda self: self[5])
    out_size = property(lambda self: self[6])


def _tuple(value, nd: int, name: str, op: str, minimum: int) -> tuple:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value),) * nd
    else:
        try:
            value = tuple(value)
        except TypeError:
            raise TypeError(f"{op}: {name} must be an int or a tuple of {nd} ints, got {value!r}") from None
        if len(value) != nd or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
            raise TypeError(f"{op}: {name} must be an int or a tuple of {nd} ints, got {value!r}")
        value = tuple(int(v) for v in value)
    if any(v < minimum for v in value):
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value}")
    return value


def _padding(padding, nd: int, kernel: tuple, stride: tuple, dilation: tuple, op: str) -> tuple:
    """((lo, hi), ...) per spatial axis from an int, a tuple, "valid" or "same" (PyTorch's split:
    the extra zero of an odd total goes after)."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{op}: padding='same' is not supported for strided convolutions (stride {stride})")
            pads = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                pads.append((total // 2, total - total // 2))
            return tuple(pads)
        raise ValueError(f"{op}: padding must be an int, a tuple of ints, 'valid' or 'same', got {padding!r}")
    return tuple((p, p) for p in _tuple(padding, nd, "padding", op, 0))


def _out_size(in_size, pads, kernel, stride, dilation) -> tuple:
    return tuple((n + lo + hi - d * (k - 1) - 1) // s + 1
                 for n, (lo, hi), k, s, d in zip(in_size, pads, kernel, stride, dilation))


# -- array code (xp-generic) ------------------------------------------------------------------------

def _pad(xp, x, pads, value=0.0):
    if not any(lo or hi for lo, hi in pads):
        return x
    return xp.pad(x, ((0, 0), (0, 0)) + tuple(pads), mode="constant", constant_values=value)


def _offset_slices(geo: _Geometry):
    """(kernel offset index tuple, slices of the padded input it reads at every output position)."""
    for ks in itertools.product(*(range(k) for k in geo.kernel)):
        yield ks, (slice(None), slice(None)) + tuple(
            slice(k * d, k * d + s * (o - 1) + 1, s)
            for k, d, s, o in zip(ks, geo.dilation, geo.stride, geo.out_size)
        )


def _patches(xp, x, geo: _Geometry, pad_value=0.0):
    """The padded input's patches, contiguous, shape (N, C, *kernel, *out_size)."""
    xp_ = _pad(xp, x, geo.pads, pad_value)
    nd = len(geo.kernel)
    if isinstance(xp_, np.ndarray):
        spans = tuple(d * (k - 1) + 1 for k, d in zip(geo.kernel, geo.dilation))
        win = np.lib.stride_tricks.sliding_window_view(xp_, spans, axis=tuple(range(2, 2 + nd)))
        # win: (N, C, *positions, *spans) -> keep every stride-th position and dilation-th tap.
        idx = (slice(None), slice(None)) + tuple(slice(None, s * (o - 1) + 1, s)
                                                 for s, o in zip(geo.stride, geo.out_size))
        idx += tuple(slice(None, None, d) for d in geo.dilation)
        win = win[idx]
        order = (0, 1) + tuple(range(2 + nd, 2 + 2 * nd)) + tuple(range(2, 2 + nd))
        return np.ascontiguousarray(win.transpose(order))
    n, c = x.shape[:2]
    cols = xp.empty((n, c) + geo.kernel + geo.out_size, dtype=x.dtype)
    for ks, sl in _offset_slices(geo):
        cols[(slice(None), slice(None)) + ks] = xp_[sl]
    return cols


def _col2im(xp, cols, geo: _Geometry, n: int, c: int):
    """The adjoint of :func:`_patches`: cols (N, C, *kernel, *out_size) summed back into (N, C, *in_size)."""
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(geo.in_size, geo.pads))
    out = xp.zeros((n, c) + padded, dtype=cols.dtype)
    for ks, sl in _offset_slices(geo):
        out[sl] += cols[(slice(None), slice(None)) + ks]
    if any(lo or hi for lo, hi in geo.pads):
        out = out[(slice(None), slice(None)) + tuple(slice(lo, lo + s) for s, (lo, _) in zip(geo.in_size, geo.pads))]
    return out


def _conv_array(xp, x, w, geo: _Geometry):
    """y (N, O, *out_size) = conv(x, w): one batched GEMM per call."""
    n, c = x.shape[:2]
    o, g = w.shape[0], geo.groups
    cols = _patches(xp, x, geo).reshape(n, g, (c // g) * math.prod(geo.kernel), -1)
    y = xp.matmul(w.reshape(g, o // g, -1), cols)  # (N, G, O/G, L)
    return y.reshape((n, o) + geo.out_size)


def _conv_input_grad_array(xp, gy, w, geo: _Geometry):
    """dL/dx (N, C, *in_size) from dL/dy and the weight (the transposed convolution)."""
    n, o = gy.shape[:2]
    g = geo.groups
    c = w.shape[1] * g
    gcols = xp.matmul(w.reshape(g, o // g, -1).transpose(0, 2, 1), gy.reshape(n, g, o // g, -1))
    return _col2im(xp, gcols.reshape((n, c) + geo.kernel + geo.out_size), geo, n, c)


def _conv_weight_grad_array(xp, x, gy, geo: _Geometry):
    """dL/dw (O, C/G, *kernel) from the input and dL/dy: one GEMM over the batch and positions."""
    n, c = x.shape[:2]
    o, g = gy.shape[1], geo.groups
    ck = (c // g) * math.prod(geo.kernel)
    cols = _patches(xp, x, geo).reshape(n, g, ck, -1)
    # Per-sample GEMMs then a sum over the batch: on LeNet-sized shapes faster than one tensordot or
    # einsum over (batch, positions), which first copy both operands into matrices.
    gw = xp.matmul(gy.reshape(n, g, o // g, -1), cols.transpose(0, 1, 3, 2)).sum(axis=0)
    return gw.reshape((o, c // g) + geo.kernel)


# -- the ops ---------------------------------------------------------------------------------------

@node("ConvolutionBackward")
class _Conv(Function):
    """y = conv(x, w) + b."""

    raw_backward = True

    @staticmethod
    def forward(ctx, x, w, b, geo):
        ctx.save_for_backward(x, w)
        ctx.geo = geo
        y = _conv_array(ctx.xp, x.data, w.data, geo)
        if b is not None:
            y = y + b.data.reshape((1, -1) + (1,) * len(geo.kernel))
        return y

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved
        geo = ctx.geo
        need = ctx.next_edges
        gx = gw = gb = None
        graph = _is_graph(gy)
        if need[0] is not None:
            gx = _ConvInputGrad.apply(gy, w, geo) if graph else _conv_input_grad_array(ctx.xp, gy, w, geo)
        if need[1] is not None:
            gw = _ConvWeightGrad.apply(x, gy, geo) if graph else _conv_weight_grad_array(ctx.xp, x, gy, geo)
        if need[2] is not None:
            gb = gy.sum(axis=(0,) + tuple(range(2, gy.ndim)))
        return gx, gw, gb, None


@node("ConvolutionInputGradBackward")
class _ConvInputGrad(Function):
    """dL/dx of a convolution as an op of (dL/dy, w)."""

    raw_backward = True

    @staticmethod
    def forward(ctx, gy, w, geo):
        ctx.save_for_backward(gy, w)
        ctx.geo = geo
        return _conv_input_grad_array(ctx.xp, gy.data, w.data, geo)

    @staticmethod
    def backward(ctx, gg):
        gy, w = ctx.saved
        geo = ctx.geo
        need = ctx.next_edges
        d_gy = d_w = None
        graph = _is_graph(gg)
        if need[0] is not None:
            d_gy = _Conv.apply(gg, w, None, geo) if graph else _conv_array(ctx.xp, gg, w, geo)
        if need[1] is not None:
            d_w = _ConvWeightGrad.apply(gg, gy, geo) if graph else _conv_weight_grad_array(ctx.xp, gg, gy, geo)
        return d_gy, d_w, None


@node("ConvolutionWeightGradBackward")
class _ConvWeightGrad(Function):
    """dL/dw of a convolution as an op of (x, dL/dy)."""

    raw_backward = True

    @staticmethod
    def forward(ctx, x, gy, geo):
        ctx.save_for_backward(x, gy)
        ctx.geo = geo
        return _conv_weight_grad_array(ctx.xp, x.data, gy.data, geo)

    @staticmethod
    def backward(ctx, gg):
        x, gy = ctx.saved
        geo = ctx.geo
        need = ctx.next_edges
        d_x = d_gy = None
        graph = _is_graph(gg)
        if need[0] is not None:
            d_x = _ConvInputGrad.apply(gy, gg, geo) if graph else _conv_input_grad_array(ctx.xp, gy, gg, geo)
        if need[1] is not None:
            d_gy = _Conv.apply(x, gg, None, geo) if graph else _conv_array(ctx.xp, x, gg, geo)
        return d_x, d_gy, None


# -- public functions ------------------------------------------------------------------------------

def _conv(nd: int, op: str, x, weight, bias, stride, padding, dilation, groups):
    _tensor(x, f"{op}: input")
    _tensor(weight, f"{op}: weight")
    if weight.ndim != nd + 2:
        raise ValueError(
            f"{op}: weight must be {nd + 2}-D (out_channels, in_channels/groups, *kernel_size), "
            f"got shape {weight.shape}"
        )
    if x.ndim not in (nd + 1, nd + 2):
        raise ValueError(
            f"{op}: expected a {nd + 1}-D (unbatched) or {nd + 2}-D (batched) input, got shape {x.shape}"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.device is not x.device:
            raise RuntimeError(f"{op}: {name} is on {t.device} but the input is on {x.device}; move it first")
        if t is not None and t.data.dtype != x.data.dtype:
            raise TypeError(f"{op}: input ({x.data.dtype}) and {name} ({t.data.dtype}) must have the same dtype")
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    groups = int(groups)
    out_ch, in_per_group = weight.shape[:2]
    kernel = tuple(weight.shape[2:])
    if out_ch % groups:
        raise ValueError(f"{op}: out_channels ({out_ch}, weight of shape {weight.shape}) must be divisible "
                         f"by groups ({groups})")
    unbatched = x.ndim == nd + 1
    if unbatched:
        x = x.reshape((1,) + x.shape)
    if x.shape[1] != in_per_group * groups:
        raise ValueError(
            f"{op}: input of shape {x.shape} has {x.shape[1]} channels, but weight of shape {weight.shape} "
            f"with groups={groups} expects {in_per_group * groups} input channels"
        )
    if bias is not None and bias.shape != (out_ch,):
        raise ValueError(f"{op}: bias of shape {bias.shape} does not match weight of shape {weight.shape} "
                         f"(expected ({out_ch},))")
    stride = _tuple(stride, nd, "stride", op, 1)
    dilation = _tuple(dilation, nd, "dilation", op, 1)
    pads = _padding(padding, nd, kernel, stride, dilation, op)
    in_size = tuple(x.shape[2:])
    out_size = _out_size(in_size, pads, kernel, stride, dilation)
    if any(k < 1 for k in kernel) or any(s < 1 for s in out_size):
        raise ValueError(
            f"{op}: kernel of size {kernel} (dilation {dilation}) does not fit the input of shape {x.shape} "
            f"padded by {tuple(lo + hi for lo, hi in pads)}: the output would have size {out_size}"
        )
    geo = _Geometry((stride, pads, dilation, groups, in_size, kernel, out_size))
    y = _Conv.apply(x, weight, bias, geo)
    return y.reshape(y.shape[1:]) if unbatched else y


def conv1d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """1-D convolution (cross-correlation, as PyTorch) of x (N, C_in, L) or (C_in, L) with weight
    (C_out, C_in/groups, K); padding an int, a 1-tuple, "valid" or "same" (stride 1 only)."""
    return _conv(1, "conv1d", x, weight, bias, stride, padding, dilation, groups)


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """2-D convolution (cross-correlation, as PyTorch) of x (N, C_in, H, W) or (C_in, H, W) with
    weight (C_out, C_in/groups, kH, kW); stride, padding, dilation an int or a pair, padding also
    "valid" or "same" (stride 1 only; an odd total pads one more zero after)."""
    return _conv(2, "conv2d", x, weight, bias, stride, padding, dilation, groups)
