"""Dropout."""
from __future__ import annotations

from xpgrad.autograd import Tensor

from .. import functional as F
from ..module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    """Inverted dropout: in training, zero elements with probability ``p`` and scale the rest by
    1/(1-p); the identity in eval mode. Independent of grad mode (``no_grad`` does not turn it off)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, got {p}")
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
