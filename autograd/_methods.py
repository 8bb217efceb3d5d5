"""Tensor operators and methods, bound to the op functions in ``autograd.ops``.

Each op module declares, in the block of each op, which Tensor methods and operators the op
becomes (``register(fn, method=..., reflected=...)``) and any member that is not the op function
itself (``tensor_method``: ``t.reshape(*shape)``, ``.T``, ``t.any()``, unary ``+``); see
``autograd/ops/_registry.py``. ``install`` puts them all onto ``Tensor``: the op functions
themselves, so ``x * y``, ``x.mul(y)`` and ``ag.mul(x, y)`` run the same code.
"""
from __future__ import annotations

from . import ops  # noqa: F401  (importing the op modules fills the registry)
from .ops import _registry
from .tensor import Tensor


def install() -> None:
    """Set every Tensor member the op modules declared (they are imported by ``ops``)."""
    _registry.install(Tensor)
