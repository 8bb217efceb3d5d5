"""Matrix product with ``numpy.matmul`` semantics (batched, broadcasting, 1-D cases)."""
from __future__ import annotations

from ..function import Function
from ._registry import register
from ._util import as_tensor, pair


class MatMul(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        ad, bd = a.data, b.data
        if ad.ndim == 0 or bd.ndim == 0:
            raise ValueError(f"matmul: both operands need at least one dimension, got shapes {tuple(ad.shape)} and {tuple(bd.shape)}")
        try:
            return ctx.xp.matmul(ad, bd)
        except ValueError:
            raise ValueError(f"matmul: shapes {tuple(ad.shape)} and {tuple(bd.shape)} are not aligned") from None

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        a_vec, b_vec = a.ndim == 1, b.ndim == 1
        # Treat vectors as matrices (row for a, column for b) so one formula covers every case.
        a2 = a.reshape((1,) + a.shape) if a_vec else a
        b2 = b.reshape(b.shape + (1,)) if b_vec else b
        g2 = g
        if a_vec:
            g2 = g2.reshape((1,)) if b_vec else g2.reshape(g2.shape[:-1] + (1,) + g2.shape[-1:])
        if b_vec:
            g2 = g2.reshape(g2.shape + (1,))
        ga = gb = None
        if ctx.next_edges[0] is not None:
            ga = g2 @ b2.swapaxes(-1, -2)
            if a_vec:
                ga = ga.reshape(ga.shape[:-2] + ga.shape[-1:])
        if ctx.next_edges[1] is not None:
            gb = a2.swapaxes(-1, -2) @ g2
            if b_vec:
                gb = gb.reshape(gb.shape[:-1])
        return ga, gb


@register(method=("matmul", "__matmul__"), reflected="__rmatmul__")
def matmul(a, b):
    a, b = pair(a, b, "matmul")
    return MatMul.apply(as_tensor(a, b), as_tensor(b, a))
