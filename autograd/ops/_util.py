"""Helpers shared by the op modules: argument coercion and axis normalisation."""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor

_SCALARS = (float, int, bool)


def data_of(x):
    """The array behind a Tensor, or ``x`` itself (Python number, constant array)."""
    return x.data if isinstance(x, Tensor) else x


def as_tensor(x, like: Tensor | None = None) -> Tensor:
    """``x`` as a Tensor: Tensors pass through; numbers and arrays become constants (on ``like``'s device)."""
    if isinstance(x, Tensor):
        return x
    if like is not None:
        return Tensor(x, device=like.device) if not isinstance(x, _SCALARS) else Tensor(x, dtype=_weak_dtype(x, like), device=like.device)
    return Tensor(x)


def _weak_dtype(x, like: Tensor):
    # A Python number next to a tensor takes the tensor's dtype when NumPy would (weak scalars).
    return np.result_type(like.data.dtype, x) if not isinstance(x, bool) else np.bool_


def operand(x: Tensor, other, op: str):
    """Check a non-Tensor operand of a binary op: numbers pass; arrays must live on x's device."""
    if isinstance(other, Tensor) or type(other) in _SCALARS:
        return other
    backend = x.device.backend
    if isinstance(other, backend.array_type):
        return other
    if isinstance(other, np.ndarray) or hasattr(other, "__array__") or isinstance(other, np.generic):
        if x.device.type != "cpu" and not isinstance(other, np.generic):
            raise RuntimeError(
                f"{op}: one operand is a raw NumPy array (on cpu) and the other a tensor on {x.device}; "
                f"nothing is copied implicitly: wrap it with ag.tensor(array, device='{x.device}')"
            )
        return backend.asarray(other)
    if isinstance(other, (list, tuple)):
        return backend.asarray(np.asarray(other))
    raise TypeError(f"{op}: unsupported operand of type {type(other).__name__}")


def pair(a, b, op: str):
    """Coerce the operands of a binary function so at least one is a Tensor."""
    if isinstance(a, Tensor):
        return a, operand(a, b, op)
    if isinstance(b, Tensor):
        return operand(b, a, op), b
    a = Tensor(a)
    return a, operand(a, b, op)


def normalize_axis(axis, ndim: int, op: str):
    """Axis argument as a sorted tuple of non-negative ints, or None for all axes."""
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        a = int(a)
        if not -max(ndim, 1) <= a < max(ndim, 1):  # a 0-d tensor takes axis 0 or -1, as NumPy's sum
            raise ValueError(f"{op}: axis {a} is out of bounds for a tensor of dimension {ndim}")
        out.append(a % ndim if ndim else 0)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {axis!r}")
    return tuple(sorted(out))


def kept_shape(shape, axes):
    """``shape`` with reduced ``axes`` set to 1 (the keepdims shape)."""
    if axes is None:
        return (1,) * len(shape)
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def broadcast_error(op: str, *shapes) -> ValueError:
    return ValueError(
        f"{op}: shapes " + " and ".join(str(tuple(s)) for s in shapes) + " cannot be broadcast together"
    )


class DefaultInt(int):
    """An int default (``axis=-1``, ``axis=0``, ``ddof=0``) that reads and prints as the int but
    can be told apart from the same value passed by the caller (see ``from_dim``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return int.__repr__(self)


def from_dim(axis, dim, op: str, names: str = "axis/dim"):
    """PyTorch's ``dim=`` given for NumPy's ``axis=``: the axis to use (callers test ``dim is not
    None`` first, so ops called without ``dim`` pay nothing). Both given raises TypeError."""
    if axis is not None and type(axis) is not DefaultInt:
        a, d = names.split("/")
        raise TypeError(f"{op}: got both {a}={axis!r} and {d}={dim!r}; {d} is PyTorch's name for {a}, pass only one")
    return dim
