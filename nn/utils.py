"""Gradient clipping: ``clip_grad_norm_`` and ``clip_grad_value_``.

Both work in place on the ``.grad`` arrays, on their device, and never read a value back to
the host (no synchronisation inside a training step).
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from xpgrad import autograd as ag
from xpgrad.autograd import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _grads(parameters) -> list[Tensor]:
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    out = []
    for p in parameters:
        if not isinstance(p, Tensor):
            raise TypeError(f"expected Tensors (parameters), got {type(p).__name__}")
        g = p._grad
        if g is not None:
            out.append(g.detach() if g.grad_fn is not None else g)
            if g.grad_fn is not None:
                p._grad = out[-1]
    return out


def clip_grad_norm_(parameters: Iterable[Tensor] | Tensor, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> Tensor:
    """Scale all gradients together so their joint ``norm_type``-norm is at most ``max_norm``.

    Returns the total norm before clipping as a 0-d Tensor on the gradients' device. The scale
    factor ``min(1, max_norm / (total + 1e-6))`` is computed on the device as well.
    """
    grads = _grads(parameters)
    norm_type = float(norm_type)
    if not grads:
        return ag.tensor(0.0)
    first = grads[0]
    xp = first.device.backend.xp
    per_grad = []
    for g in grads:
        d = g.data
        if d.dtype == np.float16:  # squares of half-precision gradients overflow at 256
            d = d.astype(np.float32)
        if norm_type == math.inf:
            n = xp.abs(d).max() if d.size else xp.zeros((), dtype=d.dtype)
        elif norm_type == 2.0:
            n = xp.sqrt((d * d).sum())
        elif norm_type == 1.0:
            n = xp.abs(d).sum()
        else:
            n = (xp.abs(d) ** norm_type).sum() ** (1.0 / norm_type)
        if g.device is not first.device:
            n = ag.tensor(n, device=g.device).to(first.device).data
        per_grad.append(n)
    stacked = xp.stack(per_grad)
    if norm_type == math.inf:
        total = stacked.max()
    elif norm_type == 2.0:
        total = xp.sqrt((stacked * stacked).sum())
    else:
        total = (stacked**norm_type).sum() ** (1.0 / norm_type)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(
            f"the total norm of order {norm_type} of the gradients is non-finite, so it cannot be clipped; "
            "pass error_if_nonfinite=False to skip this check"
        )
    scale = xp.minimum(max_norm / (total + 1e-6), 1.0)
    with ag.no_grad():
        for g in grads:
            s = scale if g.device is first.device else ag.tensor(scale, device=first.device).to(g.device).data
            g.mul_(s.astype(g.dtype, copy=False))
    return ag.tensor(total, device=first.device)


def clip_grad_value_(parameters: Iterable[Tensor] | Tensor, clip_value: float) -> None:
    """Clamp every gradient element to [-clip_value, clip_value], in place."""
    clip_value = float(clip_value)
    if clip_value < 0:
        raise ValueError(f"clip_value must be non-negative, got {clip_value}")
    with ag.no_grad():
        for g in _grads(parameters):
            g.copy_(g.device.backend.xp.clip(g.data, -clip_value, clip_value))
