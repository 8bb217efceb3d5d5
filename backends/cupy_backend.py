"""The NVIDIA GPU backend: CuPy arrays. Imported only when a "cuda" device is first used.

CuPy is imported lazily (constructing :class:`CupyBackend` imports it; importing this module does
not), and an unusable setup is reported, not raised, through ``availability()``, telling apart:

- CuPy is not installed (or fails to import);
- CuPy is installed but no usable GPU/driver was found (no NVIDIA driver, or no CUDA device);
- CUDA runtime mismatch: a driver is there but older than the CUDA runtime this CuPy build needs.

Fused kernels for optimizers and activation backwards live in :mod:`backends.cupy_kernels`;
``CupyBackend.fused(kind)`` hands the ones callers ask for by kind (Adam, SGD with momentum, cross
entropy's backward) to the optimizers and ops.
"""
from __future__ import annotations

import numpy as np

from .base import Backend, _draw_normal, _draw_uniform

__all__ = ["CupyBackend", "probe_cupy"]

_INSTALL_HINT = 'install CuPy with `pip install "xpgrad[cuda12]"` (CUDA 12) or `pip install "xpgrad[cuda13]"` (CUDA 13)'

_ELSEWHERE = f". On a machine with an NVIDIA GPU, {_INSTALL_HINT}"

# Backend.fused kinds -> the call helpers of backends.cupy_kernels that implement them.
_FUSED = {
    "adam": "adam_update",
    "sgd_momentum": "sgd_momentum_update",
    "softmax_cross_entropy_backward": "softmax_cross_entropy_backward",
}

# cudaError_t values the diagnosis distinguishes.
_INSUFFICIENT_DRIVER = 35
_NO_DEVICE = 100


class CupyBackend(Backend):
    name = "cupy"
    device_type = "cuda"

    def __init__(self) -> None:
        self._generators: dict[int, object] = {}
        self._seed: int | None = None
        self.xp = None
        self.array_type = ()
        try:
            import cupy
        except ImportError as exc:
            self._why = f"CuPy is not installed ({exc}); {_INSTALL_HINT}"
            return
        except Exception as exc:  # e.g. a broken install or two CuPy wheels fighting over the package
            self._why = f"CuPy is installed but failed to import ({type(exc).__name__}: {exc}); reinstall it: {_INSTALL_HINT}"
            return
        self.xp = cupy
        self.array_type = cupy.ndarray
        self._why = probe_cupy(cupy)

    def availability(self) -> tuple[bool, str]:
        return (self._why is None, self._why or "available")

    def _device(self, device):
        return self.xp.cuda.Device(0 if device is None or device.index is None else device.index)

    # -- moving data ------------------------------------------------------------------------------
    def asarray(self, data, dtype=None, device=None):
        with self._device(device):
            return self.xp.asarray(data, dtype=dtype)

    def to_numpy(self, array) -> np.ndarray:
        return self.xp.asnumpy(array)

    def synchronize(self, device=None) -> None:
        with self._device(device):
            self.xp.cuda.get_current_stream().synchronize()

    # -- kernels that differ from NumPy -----------------------------------------------------------
    def scatter_add(self, target, index, values) -> None:
        # cupy.scatter_add was removed; cupyx.scatter_add is the supported spelling.
        import cupyx

        cupyx.scatter_add(target, index, values)

    def erf(self, x):
        import cupyx.scipy.special

        return cupyx.scipy.special.erf(x)

    # -- fused kernels -------------------------------------------------------------------------------
    def fused(self, kind: str):
        """The :mod:`backends.cupy_kernels` helper for ``kind``, or None for a kind it has none for.

        That module imports CuPy only when a kernel is built, so asking imports nothing on the CPU.
        """
        helper = _FUSED.get(kind)
        if helper is None:
            return None
        from . import cupy_kernels

        return getattr(cupy_kernels, helper)

    # -- random numbers: one generator per GPU, seeded by ag.manual_seed -----------------------------
    def _generator(self, device):
        idx = 0 if device is None or device.index is None else device.index
        gen = self._generators.get(idx)
        if gen is None:
            with self._device(device):
                seed = None if self._seed is None else self._seed + idx
                gen = self._generators[idx] = self.xp.random.default_rng(seed)
        return gen

    def seed(self, seed: int) -> None:
        self._seed = int(seed)
        self._generators.clear()

    def make_stream(self, seed: int, device=None):
        with self._device(device):
            return self.xp.random.default_rng(seed)

    def uniform(self, shape, low, high, dtype, device=None, stream=None):
        with self._device(device):
            return _draw_uniform(stream or self._generator(device), shape, low, high, dtype)

    def normal(self, shape, mean, std, dtype, device=None, stream=None):
        with self._device(device):
            return _draw_normal(stream or self._generator(device), shape, mean, std, dtype)

    def integers(self, shape, low, high, dtype, device=None, stream=None):
        with self._device(device):
            out = (stream or self._generator(device)).integers(low, high, size=shape, dtype=np.int64)
            return out.astype(dtype, copy=False)

    def permutation(self, n: int, device=None, stream=None):
        # cupy.random.Generator has no permutation(); ranking i.i.d. uniforms gives a uniform one.
        with self._device(device):
            keys = (stream or self._generator(device)).random(int(n), dtype=np.float64)
            return self.xp.argsort(keys).astype(np.int64, copy=False)


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}"


def probe_cupy(cupy) -> str | None:
    """None when CuPy can use a GPU, else why not: no driver, no GPU, or a CUDA runtime mismatch."""
    runtime = cupy.cuda.runtime
    try:
        count = runtime.getDeviceCount()
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        status = getattr(exc, "status", None)
        try:
            driver = int(runtime.driverGetVersion())
        except Exception:
            driver = 0
        try:
            needed = _cuda_version(int(runtime.runtimeGetVersion()))
        except Exception:
            needed = "unknown"
        if driver == 0:
            return (
                f"CuPy {cupy.__version__} is installed but no usable GPU/driver was found: no NVIDIA driver is "
                f"installed (CUDA driver version 0; {text}). Run on a machine with an NVIDIA GPU and its driver, "
                f"and {_INSTALL_HINT} there"
            )
        if status == _INSUFFICIENT_DRIVER:
            return (
                f"CUDA runtime mismatch: CuPy {cupy.__version__} needs CUDA runtime {needed}, but the NVIDIA driver "
                f"supports CUDA {_cuda_version(driver)} only ({text}). Update the NVIDIA driver, or install the CuPy "
                f"build for your driver's CUDA version: {_INSTALL_HINT}"
            )
        if status == _NO_DEVICE:
            return f"CuPy {cupy.__version__} is installed but no usable GPU/driver was found: no CUDA-capable GPU ({text}){_ELSEWHERE}"
        return f"CuPy {cupy.__version__} is installed but no usable GPU/driver was found ({text}){_ELSEWHERE}"
    if count == 0:
        return f"CuPy {cupy.__version__} is installed but no usable GPU/driver was found (0 CUDA devices){_ELSEWHERE}"
    return None
