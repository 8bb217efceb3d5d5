"""Dropout."""
from __future__ import annotations

from xpgrad.autograd import Function, Tensor
from xpgrad.autograd.random import stream_for

from ._common import _tensor, node


@node()
class _Dropout(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, x, p, stream):
        xd = x.data
        backend = x.device.backend
        if stream is None:
            keep = backend.uniform(xd.shape, 0.0, 1.0, xd.dtype, x.device) >= p
        else:
            keep = backend.uniform(xd.shape, 0.0, 1.0, xd.dtype, x.device, stream=stream) >= p
        # Inverted dropout: survivors are scaled by 1/(1-p) so eval needs no rescaling.
        scale = keep.astype(xd.dtype) * (1.0 / (1.0 - p))
        ctx.save_for_backward(scale)
        return xd * scale

    @staticmethod
    def backward(ctx, g):
        (scale,) = ctx.saved
        return g * scale


def dropout(x: Tensor, p: float = 0.5, training: bool = True, *, generator=None) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p); identity unless training.

    The mask comes from the device's generator (seeded by ``ag.manual_seed``), or from
    ``generator`` (an ``ag.Generator``).
    """
    _tensor(x, "dropout: input")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    stream = None if generator is None else stream_for(generator, x.device)
    return _Dropout.apply(x, float(p), stream)
