"""Comparisons: bool tensors, outside the graph."""
from __future__ import annotations

from ..function import Function
from ._util import broadcast_error, data_of, pair

__all__ = ["equal", "not_equal", "less", "less_equal", "greater", "greater_equal"]


class Compare(Function):
    differentiable = False
    raw_backward = True

    @staticmethod
    def forward(ctx, a, b, name):
        try:
            return getattr(ctx.xp, name)(data_of(a), data_of(b))
        except ValueError:
            import numpy as np

            raise broadcast_error(name, np.shape(data_of(a)), np.shape(data_of(b))) from None


def _compare(name):
    def compare(a, b):
        a, b = pair(a, b, name)
        return Compare.apply(a, b, name)

    compare.__name__ = name
    compare.__doc__ = f"Elementwise ``{name}`` as a bool tensor (not differentiable)."
    return compare


equal = _compare("equal")
not_equal = _compare("not_equal")
less = _compare("less")
less_equal = _compare("less_equal")
greater = _compare("greater")
greater_equal = _compare("greater_equal")
