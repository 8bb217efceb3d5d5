"""Helpers shared by the ``nn.functional`` modules: argument checks, reductions, placing constants on
the input's device, and the max-shifted softmax arrays of the stable ops."""
from __future__ import annotations

import numpy as np

from xpgrad import autograd as ag
from xpgrad.autograd import Tensor

REDUCTIONS = ("mean", "sum", "none")


def node(name: str | None = None):
    """Class decorator for the ops here: the node prints as ``<NameBackward>``. The classes keep a
    leading underscore only to stay out of ``F``'s public names (F.Linear would pass for nn.Linear)."""

    def rename(cls):
        cls.__name__ = cls.__qualname__ = name or cls.__name__.lstrip("_")
        return cls

    return rename


def _tensor(x, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(x).__name__}")
    return x


def _axis(axis: int, ndim: int, op: str) -> int:
    if not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{op}: axis must be an int, got {type(axis).__name__}")
    n = max(ndim, 1)
    if not -n <= axis < n:
        raise ValueError(f"{op}: axis {axis} is out of bounds for a tensor of dimension {ndim}")
    return int(axis) % n


def _check_reduction(reduction: str, op: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _on_device(value, like: Tensor, name: str) -> Tensor:
    """A Tensor on ``like``'s device from a Tensor, number, list or array (checked, never moved).

    A Tensor comes back as itself, so that an op saving it for backward sees its in-place changes;
    anything else becomes a new Tensor holding a copy (a later change to the caller's array cannot
    reach it).
    """
    if isinstance(value, Tensor):
        if value.device is not like.device:
            raise RuntimeError(f"{name} is on {value.device} but the input is on {like.device}; move it first")
        return value
    backend = like.device.backend
    if isinstance(value, backend.array_type):
        return ag.tensor(value, device=like.device)
    if isinstance(value, np.ndarray) and like.device.type != "cpu":
        raise RuntimeError(
            f"{name} is a NumPy array but the input is on {like.device}; wrap it with ag.tensor(..., device=...)"
        )
    return ag.tensor(value, device=like.device)


def _const(value, like: Tensor, name: str) -> Tensor | None:
    """An optional constant of a loss (class weights, pos_weight) as a Tensor in ``like``'s dtype, or None.

    Ops save it with ``save_for_backward``: an in-place change to the caller's tensor between forward
    and backward then raises instead of giving a gradient of other weights.
    """
    if value is None:
        return None
    t = _on_device(value, like, name)
    dtype = like.data.dtype
    return t.astype(dtype) if dtype.kind == "f" and t.data.dtype != dtype else t


def _array(value):
    """The array of a saved constant on either backward path (a Tensor under ``create_graph``)."""
    return value.data if isinstance(value, Tensor) else value


def _is_graph(x) -> bool:
    """True on the ``create_graph`` path of a raw backward (values are Tensors, not arrays)."""
    return isinstance(x, Tensor)


def _shift_by_max(xp, x, axis: int):
    """``x`` minus its maximum along ``axis``, so that exp() of it cannot overflow."""
    m = x.max(axis=axis, keepdims=True)
    # A row that is all -inf would give -inf - -inf = NaN in the shift; shift such rows by 0.
    m = xp.where(xp.isfinite(m), m, 0)
    return x - m


def _log_softmax_array(xp, x, axis: int):
    shifted = _shift_by_max(xp, x, axis)
    with np.errstate(divide="ignore"):
        return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def _softmax_array(xp, x, axis: int):
    e = xp.exp(_shift_by_max(xp, x, axis))
    return e / e.sum(axis=axis, keepdims=True)
