"""Anomaly mode's checks (``ag.detect_anomaly``): NaN/inf in forward outputs and gradients.

Under anomaly mode each recorded node keeps the call stack of its forward, so an error can
point at the user's line rather than at xpgrad's internals.
"""
from __future__ import annotations

import os
import traceback

from .tensor import Tensor

__all__ = ["call_stack", "check_forward", "check_backward"]

# xpgrad's own folders: their frames are skipped so messages point at the user's line.
_LIBRARY_DIRS = tuple(
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), name) + os.sep
    for name in ("autograd", "backends", "nn", "optim")
)


def call_stack():
    """The stack of the op call being recorded (without this module's and the engine's frames)."""
    return traceback.extract_stack()[:-3]


def format_stack(stack) -> str:
    if not stack:
        return ""
    frames = [f for f in stack if not os.path.abspath(f.filename).startswith(_LIBRARY_DIRS)] or list(stack)
    last = frames[-1]
    return f" Its forward was called at {last.filename}:{last.lineno} ({last.line})."


def check_forward(cls, outputs, ctx) -> None:
    for i, out in enumerate(outputs):
        data = out.data
        if data.dtype.kind in "fc" and not bool(out.device.backend.xp.isfinite(data).all()):
            where = format_stack(ctx._stack if ctx is not None else call_stack())
            raise RuntimeError(
                f"detect_anomaly: the forward of {cls.__name__} produced NaN or inf in output {i} "
                f"(shape {tuple(data.shape)}).{where}"
            )


def check_backward(node, g) -> None:
    data = g.data if isinstance(g, Tensor) else g
    if data.dtype.kind in "fc" and not bool(node.xp.isfinite(data).all()):
        raise RuntimeError(
            f"detect_anomaly: the backward of {node.fn.__name__} produced NaN or inf "
            f"(gradient of shape {tuple(data.shape)}).{format_stack(node._stack)}"
        )
