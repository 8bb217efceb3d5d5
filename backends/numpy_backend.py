"""The CPU backend: NumPy arrays."""
from __future__ import annotations

import numpy as np

from .base import Backend

__all__ = ["NumpyBackend"]


class NumpyBackend(Backend):
    name = "numpy"
    device_type = "cpu"
    xp = np
    array_type = np.ndarray

    def __init__(self) -> None:
        self._rng = np.random.default_rng()

    def asarray(self, data, dtype=None, device=None):
        if hasattr(data, "__cuda_array_interface__") or _is_foreign_device_array(data):
            raise RuntimeError(
                f"cannot build a cpu tensor from a {type(data).__module__}.{type(data).__name__} "
                "that lives on another device; move it to the host explicitly first"
            )
        return np.asarray(data, dtype=dtype)

    def to_numpy(self, array) -> np.ndarray:
        return array

    def scatter_add(self, target, index, values) -> None:
        np.add.at(target, index, values)

    def seed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def uniform(self, shape, low, high, dtype, device=None):
        out = self._rng.random(shape, dtype=np.float64 if np.dtype(dtype) != np.float32 else np.float32)
        if low != 0.0 or high != 1.0:
            out *= high - low
            out += low
        return out.astype(dtype, copy=False)

    def normal(self, shape, mean, std, dtype, device=None):
        kind = np.float32 if np.dtype(dtype) == np.float32 else np.float64
        out = self._rng.standard_normal(shape, dtype=kind)
        if std != 1.0:
            out *= std
        if mean != 0.0:
            out += mean
        return out.astype(dtype, copy=False)

    def permutation(self, n: int, device=None):
        return self._rng.permutation(n)


def _is_foreign_device_array(data) -> bool:
    # Strict array types (like the stand-in device) refuse __array__; reject them by name here.
    return getattr(type(data), "__module__", "").startswith("cupy")
