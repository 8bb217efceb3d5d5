"""Comparisons: bool tensors, outside the graph. Each is also its Tensor operator (``==`` ...)."""
from __future__ import annotations

import numpy as np

from ..function import Function
from ..tensor import Tensor
from ._registry import register
from ._util import broadcast_error, data_of, operand, pair


class Compare(Function):
    differentiable = False
    raw_backward = True

    @staticmethod
    def forward(ctx, a, b, name):
        try:
            return getattr(ctx.xp, name)(data_of(a), data_of(b))
        except ValueError:
            raise broadcast_error(name, np.shape(data_of(a)), np.shape(data_of(b))) from None


def _compare(name):
    def compare(a, b):
        if isinstance(a, Tensor):  # the operator form: a Tensor first, a number or Tensor next
            if not isinstance(b, Tensor) and type(b) is not float and type(b) is not int:
                b = operand(a, b, name)
        else:
            a, b = pair(a, b, name)
        return Compare.apply(a, b, name)

    compare.__name__ = compare.__qualname__ = name
    compare.__doc__ = f"Elementwise ``{name}`` as a bool tensor (not differentiable)."
    return compare


equal = register(_compare("equal"), method="__eq__")
not_equal = register(_compare("not_equal"), method="__ne__")
less = register(_compare("less"), method="__lt__")
less_equal = register(_compare("less_equal"), method="__le__")
greater = register(_compare("greater"), method="__gt__")
greater_equal = register(_compare("greater_equal"), method="__ge__")
