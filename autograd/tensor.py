"""``Tensor``: an array on a device, plus what reverse mode needs to know about it.

Operators and math methods are attached from the op modules (each op's forward, backward,
public function and method live together in ``autograd/ops``); conversions to host values,
devices and dtypes come from ``conversions.py`` and the in-place methods from ``inplace.py``
(see ``_adopt_methods``).
"""
from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np

from xpgrad.backends.device import as_device

from .conversions import Conversions
from .hooks import register_post_accumulate_grad_hook
from .inplace import InPlaceOps
from .versioning import UNCHANGED, counter as _counter

__all__ = ["Tensor"]

_new = object.__new__


def _make(data, device, grad_fn, idx, requires_grad):
    """Build a Tensor without argument checking (the engine's hot path)."""
    t = _new(Tensor)
    t.data = data
    t.device = device
    t.grad_fn = grad_fn
    t._requires_grad = requires_grad
    if idx:
        t._out_idx = idx
    return t


class Tensor:
    """An n-dimensional array on a device that can take part in reverse-mode differentiation.

    ``data`` is the backend array (numpy.ndarray on "cpu", cupy.ndarray on "cuda"). Tensors are
    hashable by identity and weak-referenceable; ``==`` compares elementwise, as in NumPy.
    """

    # The attributes every op writes are slots; the rest are class-level defaults that an
    # instance overrides only when needed (creating a tensor is the engine's hottest path).
    __slots__ = ("data", "device", "grad_fn", "_requires_grad", "__dict__", "__weakref__")
    _out_idx = 0
    _grad = None
    _version = UNCHANGED
    # Make NumPy defer to our reflected operators: `ndarray * Tensor` -> Tensor.__rmul__.
    __array_ufunc__ = None
    __array_priority__ = 1000

    def __init__(self, data: Any, dtype=None, device=None, requires_grad: bool = False) -> None:
        if device is not None:
            dev = as_device(device)
        elif isinstance(data, Tensor):
            dev = data.device
        else:
            from .creation import get_default_device

            dev = get_default_device()
        from .creation import to_array

        self.data = to_array(data, dtype, dev, copy=True)
        self.device = dev
        self.grad_fn = None
        self._requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # -- array facts ------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __hash__(self) -> int:
        return id(self)

    # -- autograd facts -----------------------------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        self.requires_grad_(flag)

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        """Set whether this leaf records operations for differentiation; returns the tensor."""
        flag = bool(flag)
        if self.grad_fn is not None:
            if not flag:
                raise RuntimeError(
                    "requires_grad can only be switched off on leaf tensors; use .detach() to get a "
                    "tensor outside the graph"
                )
            return self
        if flag and self.data.dtype.kind not in "fc":
            raise TypeError(
                f"only floating-point tensors can require gradients, but this tensor has dtype "
                f"{self.data.dtype}; convert it first, e.g. t.astype(ag.float32)"
            )
        self._requires_grad = flag
        return self

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def grad(self):
        """Accumulated gradient (a Tensor) of a leaf, or of a non-leaf after ``retain_grad()``."""
        g = self._grad
        if g is None and self.grad_fn is not None and not self._is_retaining():
            warnings.warn(
                "reading .grad of a non-leaf tensor: it is not filled by backward() because only leaves "
                "keep gradients. Call .retain_grad() on it before backward(), or use ag.grad(out, tensor).",
                UserWarning,
                stacklevel=2,
            )
        return g

    @grad.setter
    def grad(self, value) -> None:
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"assigned grad must be a Tensor or None, got {type(value).__name__}")
            if value.shape != self.shape:
                raise ValueError(f"assigned grad has shape {value.shape}, but the tensor has shape {self.shape}")
            if value.device is not self.device:
                raise RuntimeError(f"assigned grad is on {value.device}, but the tensor is on {self.device}")
        self._grad = value

    def _is_retaining(self) -> bool:
        node = self.grad_fn
        return node is not None and node._retained is not None and self._out_idx in node._retained

    def retain_grad(self) -> None:
        """Make backward() fill ``.grad`` of this non-leaf tensor too."""
        if self.grad_fn is None:
            if not self._requires_grad:
                raise RuntimeError("retain_grad() on a tensor that does not require grad")
            return
        self.grad_fn.register_retained(self._out_idx, self)

    def detach(self) -> "Tensor":
        """A tensor sharing this data (and version counter), outside the graph."""
        t = _make(self.data, self.device, None, 0, False)
        t._version = _counter(self)
        return t

    def backward(self, grad=None, retain_graph: bool | None = None, create_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        ``grad`` is required unless the tensor has exactly one element. ``retain_graph`` defaults
        to ``create_graph``; without it the saved buffers are freed as backward goes, and a second
        backward through the same graph raises. Prefer ``ag.grad(..., create_graph=True)`` for
        double backprop: it never stores a graph inside ``.grad``.
        """
        from .engine import run_backward

        run_backward((self,), (grad,), retain_graph, create_graph)


def _adopt_methods(cls, *holders) -> None:
    """Copy the methods of ``holders`` (classes in side modules) into ``cls``. Copied rather
    than inherited: each base class makes every tensor's deallocation walk one more type, which
    measured about 2.5% of a tiny op's whole cost."""
    skip = {"__module__", "__qualname__", "__doc__", "__slots__", "__dict__", "__weakref__"}
    for holder in holders:
        for name, value in vars(holder).items():
            if name not in skip:
                setattr(cls, name, value)
        sys.modules[holder.__module__].Tensor = cls


_adopt_methods(Tensor, Conversions, InPlaceOps)
Tensor.register_post_accumulate_grad_hook = register_post_accumulate_grad_hook
