"""Version counters: how backward notices that a saved tensor was changed in place.

A tensor's ``_version`` is ``[number of in-place changes, name of the last in-place op, value of
the clock at that change]``, shared by the tensor and its views. ``clock`` counts in-place
changes process-wide, so a node remembers one number when it saves its values and checks them
only if the clock has moved since then (the common case, no in-place change at all, costs one
comparison instead of one per saved tensor).
"""
from __future__ import annotations

__all__ = ["clock", "UNCHANGED", "counter", "bump", "is_stale", "modified_error"]

clock = [0]

# The version of a tensor never changed in place: shared and immutable, so creating a tensor
# allocates no counter. The first in-place change (or sharing with a view) gives the tensor a
# list of its own.
UNCHANGED = (0, None, 0)


def counter(t) -> list:
    """``t``'s own (mutable, shareable) version counter, created on first need."""
    v = t._version
    if type(v) is tuple:
        v = t._version = [0, None, 0]
    return v


def bump(t, op: str) -> None:
    """Record that ``op`` changed ``t`` (and every view sharing its counter) in place."""
    clock[0] += 1
    v = counter(t)
    v[0] += 1
    v[1] = op
    v[2] = clock[0]


def is_stale(version, saved_at: int) -> bool:
    """Whether a tensor with this counter changed in place after the clock read ``saved_at``."""
    return version[2] > saved_at


def modified_error(ctx, data, version) -> RuntimeError:
    where = f" ({version[1]})" if version[1] else ""
    return RuntimeError(
        f"one of the tensors saved for the backward of {ctx.fn.__name__} (shape {tuple(data.shape)}, "
        f"dtype {data.dtype}) was modified by an in-place operation{where} after it was saved "
        f"(it is now at version {version[0]}). Use the out-of-place form "
        "(e.g. `x = x * 2` instead of `x.mul_(2)`), or clone the tensor before changing it."
    )
