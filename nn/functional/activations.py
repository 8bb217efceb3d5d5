"""Activations: relu, leaky_relu, gelu, sigmoid, tanh, and softmax / log_softmax along an axis.

softmax and log_softmax shift by the maximum along their axis, so logits of magnitude 1e4 and
``-inf`` masks give finite values and gradients.
"""
from __future__ import annotations

import math

from xpgrad import autograd as ag
from xpgrad.autograd import Function, Tensor

from xpgrad.autograd.ops._util import DefaultInt, from_dim

from ._common import _axis, _is_graph, _log_softmax_array, _softmax_array, _tensor, node


def relu(x: Tensor) -> Tensor:
    return ag.relu(x)


def sigmoid(x: Tensor) -> Tensor:
    return ag.sigmoid(x)


def tanh(x: Tensor) -> Tensor:
    return ag.tanh(x)


@node()
class _LeakyRelu(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, x, slope):
        xd = x.data
        # The slope per element is all backward needs; slope at 0 follows PyTorch (x > 0 is the test).
        scale = ctx.xp.where(xd > 0, 1.0, slope).astype(xd.dtype, copy=False)
        ctx.save_for_backward(scale)
        return xd * scale

    @staticmethod
    def backward(ctx, g):
        (scale,) = ctx.saved
        return g * scale


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    return _LeakyRelu.apply(_tensor(x, "leaky_relu: input"), float(negative_slope))


_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@node()
class _Gelu(Function):
    """Exact GELU, x * Phi(x), with Phi the standard normal CDF (via erf)."""

    raw_backward = True

    @staticmethod
    def forward(ctx, x):
        xd = x.data
        # Through 1-D: a ufunc on a 0-d array returns a bare scalar, which Backend.erf cannot cast.
        erf = x.device.backend.erf((xd * _SQRT_HALF).reshape(-1)).reshape(xd.shape)
        cdf = (0.5 * (1.0 + erf)).astype(xd.dtype, copy=False)
        ctx.save_for_backward(x, cdf)
        return xd * cdf

    @staticmethod
    def backward(ctx, g):
        x, cdf = ctx.saved
        if _is_graph(x):  # Phi again, as a differentiable function of x
            cdf = 0.5 * (1.0 + ag.erf(x * _SQRT_HALF))
        pdf = ctx.ops.exp(x * x * -0.5) * _INV_SQRT_2PI
        return g * (cdf + x * pdf)


_TANH_SCALE = math.sqrt(2.0 / math.pi)
_CUBIC = 0.044715


@node()
class _GeluTanh(Function):
    """GELU's tanh approximation, 0.5 x (1 + tanh(u)) with u = sqrt(2/pi) (x + 0.044715 x^3), in one node."""

    raw_backward = True

    @staticmethod
    def forward(ctx, x):
        xd = x.data
        t = ctx.xp.tanh(_TANH_SCALE * (xd + _CUBIC * xd * xd * xd))
        ctx.save_for_backward(x, t)
        return 0.5 * xd * (1.0 + t)

    @staticmethod
    def backward(ctx, g):
        x, t = ctx.saved
        if _is_graph(x):  # tanh(u) again, as a differentiable function of x
            t = ag.tanh(_TANH_SCALE * (x + _CUBIC * x * x * x))
        du = _TANH_SCALE * (1.0 + (3.0 * _CUBIC) * x * x)
        return g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU: the exact erf form (``approximate="none"``) or the tanh approximation (``"tanh"``)."""
    _tensor(x, "gelu: input")
    if approximate == "none":
        return _Gelu.apply(x)
    if approximate == "tanh":
        return _GeluTanh.apply(x)
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


@node()
class _Softmax(Function):
    raw_backward = True
    saves_output = True

    @staticmethod
    def forward(ctx, x, axis):
        ctx.axis = axis
        return _softmax_array(ctx.xp, x.data, axis)

    @staticmethod
    def backward(ctx, g):
        y = ctx.output
        gy = g * y
        return gy - y * gy.sum(axis=ctx.axis, keepdims=True)


@node()
class _LogSoftmax(Function):
    raw_backward = True
    saves_output = True

    @staticmethod
    def forward(ctx, x, axis):
        ctx.axis = axis
        return _log_softmax_array(ctx.xp, x.data, axis)

    @staticmethod
    def backward(ctx, g):
        # d/dx (x - logsumexp x) applied to g: g - softmax * sum(g); softmax = exp(output).
        return g - ctx.ops.exp(ctx.output) * g.sum(axis=ctx.axis, keepdims=True)


def softmax(x: Tensor, axis: int = DefaultInt(-1), *, dim: int | None = None) -> Tensor:
    """exp(x) / sum(exp(x)) along ``axis`` (or PyTorch's ``dim``), shifted by the maximum (stable
    for any finite logits)."""
    if dim is not None:
        axis = from_dim(axis, dim, "softmax")
    _tensor(x, "softmax: input")
    return _Softmax.apply(x, _axis(axis, x.ndim, "softmax"))


def log_softmax(x: Tensor, axis: int = DefaultInt(-1), *, dim: int | None = None) -> Tensor:
    """x - logsumexp(x) along ``axis`` (or PyTorch's ``dim``) as one op (stable; -inf logits give
    -inf, not NaN)."""
    if dim is not None:
        axis = from_dim(axis, dim, "log_softmax")
    _tensor(x, "log_softmax: input")
    return _LogSoftmax.apply(x, _axis(axis, x.ndim, "log_softmax"))
