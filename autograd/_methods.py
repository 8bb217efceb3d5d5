"""Tensor operators and methods, bound to the op functions in ``autograd.ops``.

Python's in-place operators (``x += y``) are not defined, so they rebind ``x`` to a new tensor
(out of place, safe for autograd); use ``add_`` and friends under ``no_grad`` for true in-place.
"""
from __future__ import annotations

from . import ops
from .ops._util import operand
from .ops.compare import Compare
from .tensor import Tensor, _make


def _reflected(op):
    """``other <op> tensor``: Python calls this method of the tensor with the operands swapped."""

    def method(self, other):
        return op(other, self)

    return method


def _comparison(name):
    def method(self, other):
        if not isinstance(other, Tensor) and type(other) is not float and type(other) is not int:
            other = operand(self, other, name)
        return Compare.apply(self, other, name)

    return method


def _shape_args(args):
    if len(args) == 1 and not isinstance(args[0], int):
        return args[0]
    return args


def _reshape(self, *shape):
    return ops.reshape(self, _shape_args(shape))


def _transpose(self, *axes):
    return ops.transpose(self, _shape_args(axes) if axes else None)


def _matmul(self, other):
    return ops.matmul(self, other)


def _rmatmul(self, other):
    return ops.matmul(other, self)


def _reduce_bool(method_name):
    def method(self, axis=None, keepdims=False):
        data = getattr(self.data, method_name)(axis=axis, keepdims=keepdims)
        return _make(self.device.backend.asarray(data), self.device, None, 0, False)

    method.__name__ = method_name
    return method


def install() -> None:
    T = Tensor
    T.__add__, T.__radd__ = ops.add, _reflected(ops.add)
    T.__sub__, T.__rsub__ = ops.sub, _reflected(ops.sub)
    T.__mul__, T.__rmul__ = ops.mul, _reflected(ops.mul)
    T.__truediv__, T.__rtruediv__ = ops.div, _reflected(ops.div)
    T.__pow__, T.__rpow__ = ops.pow, _reflected(ops.pow)
    T.__matmul__, T.__rmatmul__ = _matmul, _rmatmul
    T.__neg__ = ops.neg
    T.__pos__ = lambda self: self
    T.__abs__ = ops.abs
    T.__eq__ = _comparison("equal")
    T.__ne__ = _comparison("not_equal")
    T.__lt__ = _comparison("less")
    T.__le__ = _comparison("less_equal")
    T.__gt__ = _comparison("greater")
    T.__ge__ = _comparison("greater_equal")
    T.__getitem__ = ops.getitem
    for name in (
        "add", "sub", "mul", "div", "pow", "matmul", "neg", "abs", "exp", "log", "log1p", "sqrt", "square",
        "sin", "cos", "tanh", "sigmoid", "relu", "maximum", "minimum", "clip", "sign", "clone", "astype",
        "sum", "mean", "var", "max", "min", "prod", "logsumexp", "argmax", "argmin", "swapaxes",
        "expand_dims", "squeeze", "broadcast_to", "flatten", "repeat", "tile", "take_along_axis", "erf",
    ):
        setattr(T, name, getattr(ops, name))
    T.reshape = _reshape
    T.transpose = _transpose
    T.T = property(lambda self: ops.transpose(self))
    T.any = _reduce_bool("any")
    T.all = _reduce_bool("all")
