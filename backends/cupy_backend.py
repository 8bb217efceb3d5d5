"""The NVIDIA GPU backend: CuPy arrays. Imported only when a "cuda" device is first used."""
from __future__ import annotations

import numpy as np

from .base import Backend

__all__ = ["CupyBackend"]

_INSTALL_HINT = 'install CuPy with `pip install "xpgrad[cuda12]"` (CUDA 12) or `pip install "xpgrad[cuda13]"` (CUDA 13)'


class CupyBackend(Backend):
    name = "cupy"
    device_type = "cuda"

    def __init__(self) -> None:
        try:
            import cupy
        except ImportError as exc:
            self.xp = None
            self.array_type = ()
            self._why = f"CuPy is not installed ({exc}); {_INSTALL_HINT}"
            return
        self.xp = cupy
        self.array_type = cupy.ndarray
        self._why = _probe_device(cupy)
        self._generators: dict[int, object] = {}
        self._seed: int | None = None

    def availability(self) -> tuple[bool, str]:
        return (self._why is None, self._why or "available")

    def _device(self, device):
        return self.xp.cuda.Device(0 if device is None else device.index)

    def asarray(self, data, dtype=None, device=None):
        with self._device(device):
            return self.xp.asarray(data, dtype=dtype)

    def to_numpy(self, array) -> np.ndarray:
        return self.xp.asnumpy(array)

    def synchronize(self, device=None) -> None:
        with self._device(device):
            self.xp.cuda.get_current_stream().synchronize()

    def scatter_add(self, target, index, values) -> None:
        # cupy.scatter_add was removed; cupyx.scatter_add is the supported spelling.
        import cupyx

        cupyx.scatter_add(target, index, values)

    def erf(self, x):
        import cupyx.scipy.special

        return cupyx.scipy.special.erf(x)

    def _generator(self, device):
        idx = 0 if device is None else device.index
        gen = self._generators.get(idx)
        if gen is None:
            with self._device(device):
                seed = None if self._seed is None else self._seed + idx
                gen = self._generators[idx] = self.xp.random.default_rng(seed)
        return gen

    def seed(self, seed: int) -> None:
        self._seed = int(seed)
        self._generators.clear()

    def uniform(self, shape, low, high, dtype, device=None):
        with self._device(device):
            kind = np.float32 if np.dtype(dtype) == np.float32 else np.float64
            out = self._generator(device).random(shape, dtype=kind)
            if low != 0.0 or high != 1.0:
                out = out * (high - low) + low
            return out.astype(dtype, copy=False)

    def normal(self, shape, mean, std, dtype, device=None):
        with self._device(device):
            kind = np.float32 if np.dtype(dtype) == np.float32 else np.float64
            out = self._generator(device).standard_normal(shape, dtype=kind)
            if std != 1.0 or mean != 0.0:
                out = out * std + mean
            return out.astype(dtype, copy=False)

    def permutation(self, n: int, device=None):
        with self._device(device):
            return self._generator(device).permutation(n)


def _probe_device(cupy) -> str | None:
    """None when a GPU is usable, else why not (no driver, no GPU, runtime mismatch)."""
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as exc:
        text = str(exc)
        if "InsufficientDriver" in text or "driver version is insufficient" in text:
            return (
                f"CuPy is installed but the NVIDIA driver is missing or older than its CUDA runtime ({text}); "
                "install or update the driver, or install the CuPy build matching your driver: "
                + _INSTALL_HINT
            )
        return f"CuPy is installed but no usable GPU/driver was found ({text})"
    except Exception as exc:  # e.g. libcuda missing entirely
        return f"CuPy is installed but no usable GPU/driver was found ({type(exc).__name__}: {exc})"
    if count == 0:
        return "CuPy is installed but no usable GPU/driver was found (0 CUDA devices)"
    return None
