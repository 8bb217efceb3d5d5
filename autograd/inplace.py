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

    # -- augmented operators: `x += y` changes x in place, as in NumPy and PyTorch ------------------

    def _augmented(self, sym: str, ufunc, other):
        op = f"x {sym}= y"
        if mode.get() & GRAD and (self._requires_grad or (isinstance(other, Tensor) and other._requires_grad)):
            _augmented_error(self, other, sym)
        try:
            ufunc(self.data, self._operand(other, op), out=self.data, casting="same_kind")
        except TypeError as exc:  # NumPy's UFuncTypeError: the result cannot be cast back
            raise TypeError(
                f"{op} is in place: its result must be castable to the tensor's dtype {self.data.dtype} "
                f"(NumPy's casting='same_kind'), but {exc}. Use the out-of-place form `x = x {sym} y` "
                f"to get a new tensor of the promoted dtype"
            ) from None
        except ValueError as exc:
            raise ValueError(
                f"{op} is in place: y must broadcast to x's shape {tuple(self.data.shape)} ({exc}); "
                f"use `x = x {sym} y` for a result of the broadcast shape"
            ) from None
        bump(self, op)
        return self

    def __iadd__(self, other):
        return self._augmented("+", self.device.backend.xp.add, other)

    def __isub__(self, other):
        return self._augmented("-", self.device.backend.xp.subtract, other)

    def __imul__(self, other):
        return self._augmented("*", self.device.backend.xp.multiply, other)

    def __itruediv__(self, other):
        return self._augmented("/", self.device.backend.xp.true_divide, other)

    def __ipow__(self, other):
        return self._augmented("**", self.device.backend.xp.power, other)

    def __imatmul__(self, other):
        op = "x @= y"
        if mode.get() & GRAD and (self._requires_grad or (isinstance(other, Tensor) and other._requires_grad)):
            _augmented_error(self, other, "@")
        xp = self.device.backend.xp
        result = xp.matmul(self.data, self._operand(other, op))
        if result.shape != self.data.shape:
            raise ValueError(
                f"{op} is in place, so x @ y must keep x's shape {tuple(self.data.shape)}, but it has shape "
                f"{tuple(result.shape)}; use `x = x @ y` for a new tensor"
            )
        if not xp.can_cast(result.dtype, self.data.dtype, casting="same_kind"):
            raise TypeError(
                f"{op} is in place: the result dtype {result.dtype} cannot be cast to the tensor's dtype "
                f"{self.data.dtype} (NumPy's casting='same_kind'); use `x = x @ y` instead"
            )
        xp.copyto(self.data, result, casting="same_kind")
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


def _augmented_error(t, other, sym: str):
    """``x op= y`` in grad mode where x or y requires grad: what is wrong and the fix."""
    fix = f"`x = x {sym} y`"
    if not t._requires_grad:
        raise RuntimeError(
            f"x {sym}= y is in place, and y requires grad: writing its values into x (which does not "
            f"require grad) would drop y's gradient. Use the out-of-place form {fix}"
        )
    if t.grad_fn is None:
        raise RuntimeError(
            f"x {sym}= y is an in-place operation on a leaf tensor that requires grad; this is only allowed "
            f"under `with ag.no_grad():` (e.g. for parameter updates: `p -= lr * p.grad`). For a new "
            f"tensor in the graph use the out-of-place form {fix}"
        )
    raise RuntimeError(
        f"x {sym}= y is an in-place operation on a tensor that is part of the graph, which is not "
        f"supported. Use the out-of-place form {fix} (it rebinds x to a new tensor)"
    )
