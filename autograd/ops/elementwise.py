"""Elementwise ops: arithmetic, unary math, activations, and device/dtype moves.

Every backward here is written once against ``ctx.ops`` (the array module, or ``autograd``
under ``create_graph``) and ``ctx.saved``/``ctx.output``, so it is both the fast raw-array path
and a differentiable formula for higher orders. Gradients come back at the broadcast shape; the
engine sums them down to each input's shape.

Singular points follow PyTorch: ``sqrt``, ``log`` and division give inf/NaN gradients where the
math does, even when the upstream gradient is zero. To mask such a branch safely use the
"double where": ``ag.where(x > 0, ag.sqrt(ag.where(x > 0, x, 1.0)), 0.0)``, so the unused branch
never sees a singular input.
"""
from __future__ import annotations

import numpy as np

from ..function import Function, binary, unary
from ..tensor import Tensor
from ._util import as_tensor, broadcast_error, data_of, operand

__all__ = [
    "add", "sub", "mul", "div", "pow", "neg", "abs", "exp", "log", "log1p", "sqrt", "square", "sin",
    "cos", "tanh", "sigmoid", "relu", "maximum", "minimum", "clip", "where", "sign", "clone", "astype",
    "to_device", "erf",
]


def _binary_forward(ufunc, name, a, b):
    try:
        return ufunc(data_of(a), data_of(b))
    except ValueError:
        raise _shape_error(name, a, b) from None


def _shape_error(name, a, b):
    return broadcast_error(name, np.shape(data_of(a)), np.shape(data_of(b)))


# The four arithmetic ops run on every step of every model: their forwards use the array
# operators directly (no helper calls), which the array module's ufuncs back anyway.

class Add(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a, b):
        try:
            return (a.data if isinstance(a, Tensor) else a) + (b.data if isinstance(b, Tensor) else b)
        except ValueError:
            raise _shape_error("add", a, b) from None

    @staticmethod
    def backward(ctx, g):
        return g, g


class Sub(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a, b):
        try:
            return (a.data if isinstance(a, Tensor) else a) - (b.data if isinstance(b, Tensor) else b)
        except ValueError:
            raise _shape_error("sub", a, b) from None

    @staticmethod
    def backward(ctx, g):
        return g, (-g if ctx.next_edges[1] is not None else None)


class Mul(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        try:
            return (a.data if isinstance(a, Tensor) else a) * (b.data if isinstance(b, Tensor) else b)
        except ValueError:
            raise _shape_error("mul", a, b) from None

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        edges = ctx.next_edges
        return (g * b if edges[0] is not None else None), (g * a if edges[1] is not None else None)


class Div(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        try:
            return (a.data if isinstance(a, Tensor) else a) / (b.data if isinstance(b, Tensor) else b)
        except ValueError:
            raise _shape_error("div", a, b) from None

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        ga = g / b
        return ga, (-ga * a / b if ctx.next_edges[1] is not None else None)


class Pow(Function):
    raw_backward = True
    saves_output = True

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _binary_forward(ctx.xp.power, "pow", a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        ops = ctx.ops
        ga = gb = None
        if ctx.next_edges[0] is not None:
            ga = g * b * a ** (b - 1) if not _is_number(b) or b != 0 else g * 0
        if ctx.next_edges[1] is not None:
            # d/db a**b = a**b log a; taken as 0 where a == 0 and b >= 0 (as PyTorch), where the
            # limit is 0 and log would otherwise produce -inf * 0 = NaN.
            zero = data_of(a) == 0
            safe_a = ops.where(zero, 1, a)
            gb = g * ops.where(zero & (data_of(b) >= 0), 0, ctx.output * ops.log(safe_a))
        return ga, gb


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class Neg(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a):
        return ctx.xp.negative(a.data)

    @staticmethod
    def backward(ctx, g):
        return -g


class Abs(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a):
        ctx.sign = ctx.xp.sign(a.data)  # abs'(0) = 0, as PyTorch
        return ctx.xp.abs(a.data)

    @staticmethod
    def backward(ctx, g):
        return g * ctx.sign


class Exp(Function):
    raw_backward = True
    saves_output = True

    @staticmethod
    def forward(ctx, a):
        return ctx.xp.exp(a.data)

    @staticmethod
    def backward(ctx, g):
        return g * ctx.output


class Log(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return ctx.xp.log(a.data)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        return g / a


class Log1p(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return ctx.xp.log1p(a.data)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        return g / (a + 1)


class Sqrt(Function):
    raw_backward = True
    saves_output = True

    @staticmethod
    def forward(ctx, a):
        return ctx.xp.sqrt(a.data)

    @staticmethod
    def backward(ctx, g):
        return g / (ctx.output * 2)


class Square(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return ctx.xp.square(a.data)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        return g * (a * 2)


class Sin(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return ctx.xp.sin(a.data)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        return g * ctx.ops.cos(a)


class Cos(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return ctx.xp.cos(a.data)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        return -g * ctx.ops.sin(a)


class Tanh(Function):
    raw_backward = True
    saves_output = True

    @staticmethod
    def forward(ctx, a):
        return ctx.xp.tanh(a.data)

    @staticmethod
    def backward(ctx, g):
        y = ctx.output
        return g * (1 - y * y)


class Sigmoid(Function):
    raw_backward = True
    saves_output = True

    @staticmethod
    def forward(ctx, a):
        xp = ctx.xp
        x = a.data
        # exp(-|x|) never overflows; pick the algebraically equal branch that does not cancel.
        # Its underflow to 0 at large |x| is the intended result, not an error (np.seterr(all="raise")).
        with np.errstate(under="ignore"):
            e = xp.exp(-xp.abs(x))
            inv = 1 / (1 + e)
            return xp.where(x >= 0, inv, e * inv)

    @staticmethod
    def backward(ctx, g):
        y = ctx.output
        return g * (y * (1 - y))


class Relu(Function):
    raw_backward = True
    # Backward reads the output, which the next layer usually keeps anyway (a Linear saves its
    # input): no mask of its own, and no bool-to-float cast in forward.
    saves_output = True

    @staticmethod
    def forward(ctx, a):
        return ctx.xp.maximum(a.data, 0)

    @staticmethod
    def backward(ctx, g):
        return g * (ctx.output > 0)  # relu'(0) = 0, as PyTorch


class _TieSplit(Function):
    """maximum/minimum: the winner takes the gradient; ties split it evenly (0.5 each)."""

    raw_backward = True
    _ufunc = ""
    _wins = ""

    @classmethod
    def forward(cls, ctx, a, b):
        xp = ctx.xp
        ad, bd = data_of(a), data_of(b)
        out = _binary_forward(getattr(xp, cls._ufunc), cls._ufunc, a, b)
        ctx.weight_a = getattr(xp, cls._wins)(ad, bd) + (ad == bd) * 0.5
        return out

    @staticmethod
    def backward(ctx, g):
        wa = ctx.weight_a.astype(g.dtype, copy=False)
        return g * wa, g * (1 - wa)


class Maximum(_TieSplit):
    _ufunc = "maximum"
    _wins = "greater"


class Minimum(_TieSplit):
    _ufunc = "minimum"
    _wins = "less"


class Clip(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a, lo, hi):
        xp = ctx.xp
        x = a.data
        mask = None
        if lo is not None:
            mask = x >= lo
        if hi is not None:
            mask = x <= hi if mask is None else mask & (x <= hi)
        ctx.mask = mask
        return xp.clip(x, lo, hi) if mask is not None else x.copy()

    @staticmethod
    def backward(ctx, g):
        # Gradient passes where lo <= x <= hi (bounds included), as PyTorch.
        return g * ctx.mask if ctx.mask is not None else g


class Where(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, cond, a, b):
        c = data_of(cond)
        ctx.cond = c
        try:
            return ctx.xp.where(c, data_of(a), data_of(b))
        except ValueError:
            raise broadcast_error("where", np.shape(c), np.shape(data_of(a)), np.shape(data_of(b))) from None

    @staticmethod
    def backward(ctx, g):
        ops = ctx.ops
        c = ctx.cond
        return None, ops.where(c, g, 0), ops.where(c, 0, g)


class Erf(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        x = a.data
        # Through 1-D: a ufunc on a 0-d array returns a bare scalar, which Backend.erf cannot cast.
        return a.device.backend.erf(x.reshape(-1)).reshape(x.shape)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved
        return g * (2 / np.sqrt(np.pi)) * ctx.ops.exp(-(a * a))


class Sign(Function):
    differentiable = False
    raw_backward = True

    @staticmethod
    def forward(ctx, a):
        return ctx.xp.sign(a.data)


class Clone(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a):
        return a.data.copy()

    @staticmethod
    def backward(ctx, g):
        return g


class Cast(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a, dtype):
        ctx.src_dtype = a.data.dtype
        return a.data.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return g.astype(ctx.src_dtype)


class ToDevice(Function):
    raw_backward = True
    changes_device = True

    @staticmethod
    def forward(ctx, a, device):
        ctx.src = a.device
        ctx.out_device = device
        return _transfer(a.data, a.device, device)

    @staticmethod
    def backward(ctx, g):
        if isinstance(g, Tensor):
            return to_device(g, ctx.src)
        return _transfer(g, ctx.out_device, ctx.src)


def _transfer(data, src, dst):
    if src.backend is dst.backend:
        return dst.backend.asarray(data, device=dst)
    return dst.backend.asarray(src.backend.to_numpy(data), device=dst)


# -- public functions --------------------------------------------------------------------------------

add = binary(Add, "add", operand)
sub = binary(Sub, "sub", operand)
mul = binary(Mul, "mul", operand)
div = binary(Div, "div", operand)
pow = binary(Pow, "pow", operand)

neg = unary(Neg, "neg")
abs = unary(Abs, "abs")
exp = unary(Exp, "exp")
log = unary(Log, "log")
log1p = unary(Log1p, "log1p")
sqrt = unary(Sqrt, "sqrt")
square = unary(Square, "square")
sin = unary(Sin, "sin")
cos = unary(Cos, "cos")
tanh = unary(Tanh, "tanh")
sigmoid = unary(Sigmoid, "sigmoid", "1 / (1 + exp(-x)), computed without overflow for any finite x.")
relu = unary(Relu, "relu")
erf = unary(Erf, "erf")

maximum = binary(Maximum, "maximum", operand,
                 "Elementwise maximum; at ties each input gets half the gradient (as PyTorch).")
minimum = binary(Minimum, "minimum", operand,
                 "Elementwise minimum; at ties each input gets half the gradient (as PyTorch).")


def clip(x, lo=None, hi=None):
    """Clamp to [lo, hi] (either may be None); the gradient passes where lo <= x <= hi."""
    for name, v in (("lo", lo), ("hi", hi)):
        if v is not None and not isinstance(v, (int, float, np.number)):
            raise TypeError(f"clip: {name} must be a Python number or None, got {type(v).__name__}")
    return Clip.apply(as_tensor(x), lo, hi)


def where(cond, a, b):
    """``a`` where ``cond`` is true, else ``b`` (broadcasting all three).

    The gradient flows to ``a`` where cond holds and to ``b`` elsewhere. If the unused branch can
    be singular (``where(x > 0, sqrt(x), 0)``), its NaN gradient still leaks (0 * inf): guard its
    input too, ``where(x > 0, sqrt(where(x > 0, x, 1.0)), 0.0)``.
    """
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    if isinstance(cond, Tensor):
        c = cond
        if like is not None and c.device is not like.device:
            raise RuntimeError(f"where: condition is on {c.device} but the values are on {like.device}")
    else:
        c = cond
    if like is None:
        like = as_tensor(a) if not isinstance(cond, Tensor) else cond
        a = as_tensor(a, like)
    a = a if isinstance(a, Tensor) else _constant(a, like, "where")
    b = b if isinstance(b, Tensor) else _constant(b, like, "where")
    cdata = data_of(c)
    if getattr(cdata, "dtype", None) is not None and cdata.dtype != np.bool_:
        cdata = cdata.astype(bool)
    return Where.apply(cdata if not isinstance(c, Tensor) else _bool_tensor(c), a, b)


def _bool_tensor(c: Tensor) -> Tensor:
    return c if c.data.dtype == np.bool_ else Tensor(c.data.astype(bool), device=c.device)


def _constant(v, like: Tensor, op: str):
    from ._util import operand

    return operand(like, v, op)


def sign(x):
    return Sign.apply(as_tensor(x))


clone = unary(Clone, "clone")


def astype(x, dtype):
    x = as_tensor(x)
    dtype = np.dtype(dtype)
    if dtype == x.data.dtype:
        return x
    return Cast.apply(x, dtype)


def to_device(x, device):
    return ToDevice.apply(x, device)
