"""The Backend interface: the array module plus the few things array libraries do differently.

The engine dispatches on a tensor's Device, never by sniffing array types inside ops. Everything
an op needs beyond ``xp`` (the NumPy-compatible array module) lives here, so a new array library
plugs in by subclassing :class:`Backend` and calling :func:`backends.register`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Backend"]


class Backend:
    """Base class for array backends.

    Subclasses set ``name`` (registry key), ``device_type`` (the Device.type it serves, e.g.
    "cpu" or "cuda"), ``xp`` (array module) and ``array_type`` (the array class or a tuple of
    classes), and override the methods whose defaults do not fit their library.
    """

    name: str = ""
    device_type: str = ""
    xp: Any = None
    array_type: Any = None

    # -- availability -------------------------------------------------------------------------
    def availability(self) -> tuple[bool, str]:
        """(usable, reason): reason says what is missing and how to fix it when unusable."""
        return True, "available"

    # -- moving data ----------------------------------------------------------------------------
    def asarray(self, data, dtype=None, device=None):
        """An array of this backend from host data, a NumPy array or an array of this backend."""
        return self.xp.asarray(data, dtype=dtype)

    def to_numpy(self, array) -> np.ndarray:
        """A numpy.ndarray holding ``array``'s values (a copy when it lives on another device)."""
        return np.asarray(array)

    def synchronize(self, device=None) -> None:
        """Wait for queued work on ``device`` (no-op for synchronous backends)."""

    # -- kernels that differ between libraries -----------------------------------------------
    def scatter_add(self, target, index, values) -> None:
        """``target[index] += values`` in place, with repeated indices accumulating."""
        self.xp.add.at(target, index, values)

    def erf(self, x):
        """The error function, elementwise, in x's dtype (NumPy has none; the stdlib's is exact)."""
        import math

        host = self.to_numpy(x)
        out = np.frompyfunc(math.erf, 1, 1)(host).astype(host.dtype if host.dtype.kind == "f" else np.float64)
        return self.asarray(out)

    # -- fused kernels -----------------------------------------------------------------------------
    def fused(self, kind: str):
        """A fused kernel for ``kind`` on this backend's arrays, or None to use the generic array code.

        Kinds, each called like the helper of ``backends/cupy_kernels.py`` named after it:
        ``"adam"`` (``adam_update``), ``"sgd_momentum"`` (``sgd_momentum_update``) and
        ``"softmax_cross_entropy_backward"``. Callers ask once (per parameter group and device, per
        op) and fall back to the generic path on None; the kernel itself checks dtypes. The default
        has none, and a kind a backend does not know gets None too.
        """
        return None

    # -- random numbers ---------------------------------------------------------------------------
    # Draws come from the backend's own generator (per device, seeded by ``seed``) unless a
    # ``stream`` is given: an object made by ``make_stream`` (what an ``ag.Generator`` holds per
    # device). Callers pass ``stream=`` only when they have one, so a backend written before
    # streams existed keeps working for everything but ``generator=``.
    def seed(self, seed: int) -> None:
        raise NotImplementedError

    def make_stream(self, seed: int, device=None):
        """A new random stream for ``device`` seeded with ``seed`` (a non-negative int), to pass as
        ``stream=`` to the draw methods below."""
        raise NotImplementedError(f"the {self.name!r} backend does not support generator= (no make_stream)")

    def uniform(self, shape, low, high, dtype, device=None, stream=None):
        raise NotImplementedError

    def normal(self, shape, mean, std, dtype, device=None, stream=None):
        raise NotImplementedError

    def integers(self, shape, low, high, dtype, device=None, stream=None):
        """Integers uniform on [low, high) of ``dtype``."""
        raise NotImplementedError(f"the {self.name!r} backend cannot draw random integers (no integers)")

    def permutation(self, n: int, device=None, stream=None):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} for device type {self.device_type!r}>"


# Shared by the backends' uniform()/normal(): NumPy's and CuPy's Generators have the same
# random()/standard_normal(); draws are float32 for float32 and float64 otherwise, then cast.
def _draw_dtype(dtype):
    return np.float32 if np.dtype(dtype) == np.float32 else np.float64


def _draw_uniform(gen, shape, low, high, dtype):
    out = gen.random(shape, dtype=_draw_dtype(dtype))
    if low != 0.0 or high != 1.0:
        out *= high - low
        out += low
    return out.astype(dtype, copy=False)


def _draw_normal(gen, shape, mean, std, dtype):
    out = gen.standard_normal(shape, dtype=_draw_dtype(dtype))
    if std != 1.0:
        out *= std
    if mean != 0.0:
        out += mean
    return out.astype(dtype, copy=False)
