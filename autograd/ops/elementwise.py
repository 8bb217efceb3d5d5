"""Elementwise ops: arithmetic, unary math, activations, and device/dtype moves.

Every backward here is written once against ``ctx.ops`` (the array module, or ``autograd``
under ``create_graph``) and ``ctx.saved``/``ctx.output``, so it is both the fast raw-array path
and a differentiable formula for higher orders. Gradients come back at the broadcast shape; the
engine sums them down to each input's shape.

Each op is one block: its Function class, its public function and the ``register`` call that
exports it and names the Tensor methods/operators it becomes (see ``_registry``). Whatever a
backward reads (inputs, masks, signs, conditions) goes through ``ctx.save_for_backward``; only
immutable metadata (dtypes, devices) stays on ``ctx``.

Singular points follow PyTorch: ``sqrt``, ``log`` and division give inf/NaN gradients where the
math does, even when the upstream gradient is zero. To mask such a branch safely use the
"double where": ``ag.where(x > 0, ag.sqrt(ag.where(x > 0, x, 1.0)), 0.0)``, so the unused branch
never sees a singular input.
"""
from __future__ import annotations

import numpy as np

from ..fastpath import binary, unary
from ..function import Function
from ..tensor import Tensor
from ._registry import register, tensor_method
from ._util import as_tensor, broadcast_error, data_of, operand


def _binary_forward(ufunc, name, a, b):
    try:
        return ufunc(data_of(a), data_of(b))
    except ValueError:
        raise _shape_error(name, a, b) from None


def _shape_error(name, a, b):
    return broadcast_error(name, np.shape(data_of(a)), np.shape(data_of(b)))


# -- arithmetic -------------------------------------------------------------------------------------
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


add = register(binary(Add, "add", operand), method=("add", "__add__"), reflected="__radd__")


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


sub = register(binary(Sub, "sub", operand), method=("sub", "__sub__"), reflected="__rsub__")


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


mul = register(binary(Mul, "mul", operand), method=("mul", "__mul__"), reflected="__rmul__")


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


div = register(binary(Div, "div", operand), method=("div", "__truediv__"), reflected="__rtruediv__")


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


pow = register(binary(Pow, "pow", operand), method=("pow", "__pow__"), reflected="__rpow__")


class Neg(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a):
        return ctx.xp.negative(a.data)

    @staticmethod
    def backward(ctx, g):
        return -g


neg = register(unary(Neg, "neg"), method=("neg", "__neg__"))


def _pos(self):
    return self


tensor_method("__pos__", _pos)  # unary +: the tensor itself


# -- unary math -------------------------------------------------------------------------------------

class Abs(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(ctx.xp.sign(a.data))  # abs'(0) = 0, as PyTorch
        return ctx.xp.abs(a.data)

    @staticmethod
    def backward(ctx, g):
        (sign,) = ctx.saved
        return g * sign


abs = register(unary(Abs, "abs"), method=("abs", "__abs__"))


class Exp(Function):
    raw_backward = True
    saves_output = True

    @staticmethod
    def forward(ctx, a):
        return ctx.xp.exp(a.data)

    @staticmethod
    def backward(ctx, g):
        return g * ctx.output


exp = register(unary(Exp, "exp"))


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


log = register(unary(Log, "log"))


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


log1p = register(unary(Log1p, "log1p"))


class Sqrt(Function):
    raw_backward = True
    saves_output = True

    @staticmethod
    def forward(ctx, a):
        return ctx.xp.sqrt(a.data)

    @staticmethod
    def backward(ctx, g):
        return g / (ctx.output * 2)


sqrt = register(unary(Sqrt, "sqrt"))


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


square = register(unary(Square, "square"))


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


sin = register(unary(Sin, "sin"))


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


cos = register(unary(Cos, "cos"))


class Tan(Function):
    raw_backward = True
    saves_output = True

    @staticmethod
    def forward(ctx, a):
        return ctx.xp.tan(a.data)

    @staticmethod
    def backward(ctx, g):
        return g * (1 + ctx.ops.square(ctx.output))  # tan' = 1 + tan**2


tan = register(unary(Tan, "tan"))


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


tanh = register(unary(Tanh, "tanh"))


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


sigmoid = register(unary(Sigmoid, "sigmoid", "1 / (1 + exp(-x)), computed without overflow for any finite x."))


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


relu = register(unary(Relu, "relu"))


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


erf = register(unary(Erf, "erf"))


# -- two-input selections ---------------------------------------------------------------------------

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
        ctx.save_for_backward(getattr(xp, cls._wins)(ad, bd) + (ad == bd) * 0.5)  # a's share
        return out

    @staticmethod
    def backward(ctx, g):
        (wa,) = ctx.saved
        wa = wa.astype(g.dtype, copy=False)
        return g * wa, g * (1 - wa)


class Maximum(_TieSplit):
    _ufunc = "maximum"
    _wins = "greater"


maximum = register(binary(Maximum, "maximum", operand,
                          "Elementwise maximum; at ties each input gets half the gradient (as PyTorch)."))


class Minimum(_TieSplit):
    _ufunc = "minimum"
    _wins = "less"


minimum = register(binary(Minimum, "minimum", operand,
                          "Elementwise minimum; at ties each input gets half the gradient (as PyTorch)."))


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
        ctx.save_for_backward(mask)
        return xp.clip(x, lo, hi) if mask is not None else x.copy()

    @staticmethod
    def backward(ctx, g):
        # Gradient passes where lo <= x <= hi (bounds included), as PyTorch.
        (mask,) = ctx.saved
        return g * mask if mask is not None else g


@register
def clip(x, lo=None, hi=None):
    """Clamp to [lo, hi] (either may be None); the gradient passes where lo <= x <= hi."""
    for name, v in (("lo", lo), ("hi", hi)):
        if v is not None and not isinstance(v, (int, float, np.number)):
            raise TypeError(f"clip: {name} must be a Python number or None, got {type(v).__name__}")
    return Clip.apply(as_tensor(x), lo, hi)


class Where(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, cond, a, b):
        # cond: a bool Tensor (saved as such, so an in-place change to it is caught at backward)
        # or an array that no caller holds (where() copies the user's arrays).
        ctx.save_for_backward(cond)
        c = data_of(cond)
        try:
            return ctx.xp.where(c, data_of(a), data_of(b))
        except ValueError:
            raise broadcast_error("where", np.shape(c), np.shape(data_of(a)), np.shape(data_of(b))) from None

    @staticmethod
    def backward(ctx, g):
        ops = ctx.ops
        (c,) = ctx.saved
        return None, ops.where(c, g, 0), ops.where(c, 0, g)


@register(method=False)
def where(cond, a, b):
    """``a`` where ``cond`` is true, else ``b`` (broadcasting all three).

    The gradient flows to ``a`` where cond holds and to ``b`` elsewhere. If the unused branch can
    be singular (``where(x > 0, sqrt(x), 0)``), its NaN gradient still leaks (0 * inf): guard its
    input too, ``where(x > 0, sqrt(where(x > 0, x, 1.0)), 0.0)``.
    """
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    if isinstance(cond, Tensor):
        if like is not None and cond.device is not like.device:
            raise RuntimeError(f"where: condition is on {cond.device} but the values are on {like.device}")
    if like is None:
        like = as_tensor(a) if not isinstance(cond, Tensor) else cond
        a = as_tensor(a, like)
    a = a if isinstance(a, Tensor) else operand(like, a, "where")
    b = b if isinstance(b, Tensor) else operand(like, b, "where")
    if isinstance(cond, Tensor):
        c = _bool_tensor(cond)
    else:
        # A private bool copy of an array condition: the backward must see it as it was at forward.
        c = cond
        if isinstance(c, (list, tuple)):
            c = like.device.backend.asarray(np.asarray(c, dtype=bool))
        elif getattr(c, "dtype", None) is not None:
            c = c.astype(bool) if c.dtype != np.bool_ else c.copy()
    return Where.apply(c, a, b)


def _bool_tensor(c: Tensor) -> Tensor:
    return c if c.data.dtype == np.bool_ else Tensor(c.data.astype(bool), device=c.device)


# -- values, dtypes and devices ---------------------------------------------------------------------

class Sign(Function):
    differentiable = False
    raw_backward = True

    @staticmethod
    def forward(ctx, a):
        return ctx.xp.sign(a.data)


@register
def sign(x):
    return Sign.apply(as_tensor(x))


class Clone(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a):
        return a.data.copy()

    @staticmethod
    def backward(ctx, g):
        return g


clone = register(unary(Clone, "clone"))


class Cast(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a, dtype):
        ctx.src_dtype = a.data.dtype
        return a.data.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return g.astype(ctx.src_dtype)


@register
def astype(x, dtype):
    x = as_tensor(x)
    dtype = np.dtype(dtype)
    if dtype == x.data.dtype:
        return x
    return Cast.apply(x, dtype)


def _cast_method(name, dtype):
    def method(self):
        return astype(self, dtype)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"PyTorch's ``t.{name}()``: ``t.astype({np.dtype(dtype).name})`` (``t`` itself if it already is)."
    return method


# PyTorch's cast methods. ``t.float()`` is a float32 tensor (PyTorch's meaning); the builtin
# ``float(t)`` still gives a Python float.
for _name, _dtype in (("double", np.float64), ("float", np.float32), ("half", np.float16),
                      ("long", np.int64), ("int", np.int32), ("bool", np.bool_)):
    tensor_method(_name, _cast_method(_name, _dtype))


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


@register(method=False)
def to_device(x, device):
    return ToDevice.apply(x, device)
