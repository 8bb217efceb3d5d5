"""The fully connected layer as one op: ``linear``; and ``flatten``, which feeds it."""
from __future__ import annotations

from xpgrad import autograd as ag
from xpgrad.autograd import Function, Tensor

from xpgrad.autograd.ops._util import DefaultInt, from_dim

from ._common import _tensor, node


@node()
class _Linear(Function):
    """y = x @ w.T + b in one node: one matmul forward, two backward, no transposed copies kept."""

    raw_backward = True

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        xd, wd = x.data, w.data
        if xd.ndim == 2:
            out = xd @ wd.T
        elif xd.ndim == 1:
            out = wd @ xd
        else:
            out = (xd.reshape(-1, xd.shape[-1]) @ wd.T).reshape(xd.shape[:-1] + (wd.shape[0],))
        if b is not None:
            bd = b.data
            if bd.dtype == out.dtype:
                out += bd
            else:
                out = out + bd
        return out

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved
        need = ctx.next_edges
        gx = gw = gb = None
        if need[0] is not None:
            gx = g @ w
        if need[1] is not None or (len(need) > 2 and need[2] is not None):
            g2 = g.reshape((-1, w.shape[0]))
            if need[1] is not None:
                gw = g2.T @ x.reshape((-1, w.shape[1]))
            if len(need) > 2 and need[2] is not None:
                gb = g2.sum(axis=0)
        return gx, gw, gb


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` with ``weight`` of shape (out_features, in_features)."""
    _tensor(x, "linear: input")
    xshape, wshape = x.data.shape, weight.data.shape  # array shapes: no Tensor.shape calls on this hot path
    if len(wshape) != 2 or not xshape or xshape[-1] != wshape[1]:
        raise ValueError(
            f"linear: input of shape {x.shape} does not match weight of shape {weight.shape} "
            f"(the input's last axis must have {weight.shape[1] if weight.ndim == 2 else '?'} features)"
        )
    if bias is not None and bias.data.shape != wshape[:1]:
        raise ValueError(f"linear: bias of shape {bias.shape} does not match weight of shape {weight.shape}")
    return _Linear.apply(x, weight, bias)


def flatten(x: Tensor, start_axis: int = DefaultInt(1), end_axis: int = DefaultInt(-1), *,
            start_dim: int | None = None, end_dim: int | None = None) -> Tensor:
    """Merge axes start_axis..end_axis (PyTorch's start_dim/end_dim also accepted)."""
    if start_dim is not None:
        start_axis = from_dim(start_axis, start_dim, "flatten", "start_axis/start_dim")
    if end_dim is not None:
        end_axis = from_dim(end_axis, end_dim, "flatten", "end_axis/end_dim")
    return ag.flatten(x, start_axis, end_axis)
