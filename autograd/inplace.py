"""In-place methods of ``Tensor`` (``add_``, ``copy_``, ``t[idx] = v``, ...).

They are for tensors outside the graph: optimizer updates, initialisation, data under
``no_grad``. Each one bumps the tensor's version counter (see ``versioning``), so a backward that
saved the old values raises instead of silently using the new ones.
"""
from __future__ import annotations

from .grad_mode import GRAD, mode
from .versioning import bump

__all__ = ["InPlaceOps"]

Tensor = None  # the Tensor class, set when tensor.py adopts these methods


class InPlaceOps:
    """Methods of ``Tensor``, kept here and copied into it (see ``tensor._adopt_methods``);
    each returns the tensor itself."""


    def _check_inplace(self, op: str) -> None:
        if self._requires_grad and mode.get() & GRAD:
            kind = "a leaf tensor that requires grad" if self.grad_fn is None else "a tensor that is part of the graph"
            raise RuntimeError(
                f"{op} is an in-place operation on {kind}; this is only allowed under `with ag.no_grad():` "
                f"(e.g. for parameter updates). Use the out-of-place form instead, e.g. `x = x + y` "
                f"rather than `x.add_(y)`."
            )

    def _bump(self, op: str) -> None:
        bump(self, op)

    def _operand(self, other, op: str):
        if isinstance(other, Tensor):
            if other.device is not self.device:
                raise RuntimeError(f"{op}: tensor on {self.device} and operand on {other.device}; move one first")
            return other.data
        return other

    def _inplace(self, op: str, ufunc, other):
        self._check_inplace(op)
        ufunc(self.data, self._operand(other, op), out=self.data, casting="same_kind")
        bump(self, op)
        return self

    def add_(self, other, alpha=1):
        if alpha != 1:
            other = self._operand(other, "add_") * alpha
        return self._inplace("add_", self.device.backend.xp.add, other)

    def sub_(self, other, alpha=1):
        if alpha != 1:
            other = self._operand(other, "sub_") * alpha
        return self._inplace("sub_", self.device.backend.xp.subtract, other)

    def mul_(self, other):
        return self._inplace("mul_", self.device.backend.xp.multiply, other)

    def div_(self, other):
        return self._inplace("div_", self.device.backend.xp.true_divide, other)

    def zero_(self):
        return self.fill_(0)

    def fill_(self, value):
        self._check_inplace("fill_")
        self.data[...] = self._operand(value, "fill_")
        bump(self, "fill_")
        return self

    def copy_(self, src):
        """Copy ``src``'s values into this tensor (broadcasting ``src``; same device required)."""
        self._check_inplace("copy_")
        values = self._operand(src, "copy_")
        xp = self.device.backend.xp
        if not isinstance(src, Tensor):
            values = self.device.backend.asarray(values)
        xp.copyto(self.data, xp.broadcast_to(values, self.data.shape), casting="unsafe")
        bump(self, "copy_")
        return self

    def __setitem__(self, index, value) -> None:
        self._check_inplace("__setitem__ (t[idx] = v)")
        if isinstance(value, Tensor) and value._requires_grad and mode.get() & GRAD:
            raise RuntimeError(
                "t[idx] = v with a v that requires grad would drop v's gradient; build the result "
                "out of place instead, e.g. with ag.where(mask, v, t), ag.concatenate or ag.stack"
            )
        from .ops.indexing import normalize_index

        self.data[normalize_index(index, self.device)] = self._operand(value, "__setitem__")
        bump(self, "__setitem__")
