"""Classification losses: cross_entropy (logits) and nll_loss (log-probabilities), and their target checks."""
from __future__ import annotations

import math

import numpy as np

import xpgrad.nn.functional as _package  # for F._plain_targets, looked up per call (see cross_entropy)
from xpgrad import autograd as ag
from xpgrad.autograd import Tensor

from ._common import _check_reduction, _const, _on_device, _tensor
from .cross_entropy_ops import _CrossEntropy, _PlainCrossEntropy


def _check_hard_target(x: Tensor, t, axis: int, C: int, ignore_index, op: str):
    per_shape = x.shape[:axis] + x.shape[axis + 1:]
    if tuple(t.shape) != per_shape:
        raise ValueError(
            f"{op}: target of shape {tuple(t.shape)} does not match input of shape {x.shape} "
            f"(class indices need shape {per_shape}; class probabilities need the input's shape)"
        )
    if x.device.type == "cpu" and t.size:
        bad = (t != ignore_index) & ((t < 0) | (t >= C)) if ignore_index is not None else (t < 0) | (t >= C)
        if bad.any():
            raise IndexError(f"{op}: target {int(t[bad][0])} is out of bounds for {C} classes")


# Each native integer dtype -> (the unsigned dtype of its size, the most classes for which a
# negative value, viewed as unsigned, still lands at or above the class count; see _plain_targets).
_AS_UNSIGNED = {
    np.dtype(f"{kind}{size}"): (np.dtype(f"u{size}"), 2 ** (8 * size - 1) if kind == "i" else math.inf)
    for kind in "iu" for size in (1, 2, 4, 8)
}


def _plain_targets(x: Tensor, t, ignore_index) -> bool:
    """Whether class indices ``t`` let cross_entropy take its plain path: (N, C) logits on the CPU and
    (N,) indices all in [0, C), none equal to ``ignore_index``.

    Anything else, invalid targets included, goes the general way, which validates and raises. Only
    on the CPU: elsewhere reading the check back would wait for the device, as the bounds check would.
    """
    xd = x.data
    if x.device.type != "cpu" or xd.ndim != 2 or t.shape != xd.shape[:1] or not t.size:
        return False
    C = xd.shape[1]
    unsigned, max_classes = _AS_UNSIGNED.get(t.dtype, (None, 0))
    # Viewed as unsigned, negative indices are at least 2**(bits-1): with no more classes than
    # that, one max() checks 0 <= t < C (int8 targets with 200 classes take the general path).
    if unsigned is None or C > max_classes or t.view(unsigned).max() >= C:
        return False
    return ignore_index is None or not 0 <= ignore_index < C or not (t == ignore_index).any()


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy between logits ``input`` (N, C[, d...]) or (C,) and ``target``.

    ``target`` holds class indices (shape without the class axis; ``ignore_index`` entries
    contribute nothing) or class probabilities (the input's shape). With ``weight`` (C,),
    ``reduction="mean"`` divides by the summed weights of the counted targets, as PyTorch does
    (probability targets: by the number of samples). One fused op: stable at any logit scale.
    """
    _tensor(input, "cross_entropy: input")
    _check_reduction(reduction, "cross_entropy")
    if input.ndim == 0:
        raise ValueError("cross_entropy: input must have a class axis, got a 0-d tensor")
    if input.data.dtype.kind != "f":
        raise TypeError(f"cross_entropy: input must be floating point (logits), got dtype {input.dtype}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    target = _on_device(target, input, "cross_entropy: target")
    t = target.data
    soft = t.dtype.kind == "f"
    if not soft and t.dtype.kind not in "iu":
        raise TypeError(
            f"cross_entropy: target must hold class indices (int) or probabilities (float), got {target.dtype}"
        )
    # The check is read from the package, so that replacing F._plain_targets reaches this call.
    if not soft and weight is None and not label_smoothing and _package._plain_targets(input, t, ignore_index):
        return _PlainCrossEntropy.apply(input, target, reduction)
    axis = 1 if input.ndim >= 2 else 0
    C = input.shape[axis]
    w = _const(weight, input, "cross_entropy: weight")
    if w is not None and tuple(w.shape) != (C,):
        raise ValueError(f"cross_entropy: weight must have shape ({C},), got {tuple(w.shape)}")
    if soft:
        if target.shape != input.shape:
            raise ValueError(
                f"cross_entropy: probability target of shape {target.shape} must match the input's shape {input.shape}"
            )
        if target.dtype != input.dtype:
            target = target.astype(input.dtype)
    else:
        _check_hard_target(input, t, axis, C, ignore_index, "cross_entropy")
    return _CrossEntropy.apply(input, target, w, reduction, ignore_index, float(label_smoothing))


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of class indices ``target`` under log-probabilities ``input`` (N, C[, d...])."""
    _tensor(input, "nll_loss: input")
    _check_reduction(reduction, "nll_loss")
    if input.ndim == 0:
        raise ValueError("nll_loss: input must have a class axis, got a 0-d tensor")
    target = _on_device(target, input, "nll_loss: target")
    if target.data.dtype.kind not in "iu":
        raise TypeError(f"nll_loss: target must hold integer class indices, got dtype {target.dtype}")
    axis = 1 if input.ndim >= 2 else 0
    C = input.shape[axis]
    w = _const(weight, input, "nll_loss: weight")
    if w is not None and tuple(w.shape) != (C,):
        raise ValueError(f"nll_loss: weight must have shape ({C},), got {tuple(w.shape)}")
    t = target.data
    _check_hard_target(input, t, axis, C, ignore_index, "nll_loss")
    xp = input.device.backend.xp
    valid = t != ignore_index if ignore_index is not None else xp.ones(t.shape, dtype=bool)
    t_safe = xp.where(valid, t, 0)
    picked = ag.take_along_axis(input, xp.expand_dims(t_safe, axis), axis).squeeze(axis)
    # Fancy indexing copies: the per-sample weights keep no tie to the caller's weight tensor.
    w_t = (w.data[t_safe] if w is not None else xp.ones(t.shape, dtype=input.dtype)) * valid
    w_t = w_t.astype(input.dtype, copy=False)
    # where() keeps an ignored -inf entry from turning 0 * -inf into NaN.
    per = ag.where(valid, -(picked * w_t), 0.0) if ignore_index is not None else -(picked * w_t)
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    return per.sum() / w_t.sum()
