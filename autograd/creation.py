"""Creating tensors: ``tensor``, ``zeros``, ``arange``, ``rand``... and seeding."""
from __future__ import annotations

import numpy as np

from xpgrad import backends
from xpgrad.backends.device import Device, as_device

from . import dtypes
from .tensor import Tensor, _make

__all__ = [
    "set_default_device", "get_default_device", "tensor", "zeros", "ones", "full", "empty", "arange", "eye", "zeros_like", "ones_like", "full_like",
    "rand", "randn", "from_numpy", "manual_seed",
]


_default_device = [None]


def set_default_device(device) -> None:
    """Device used by creation functions when ``device`` is not given ("cpu" unless changed).

    Useful to run a whole program or test suite on another device, as ``torch.set_default_device``.
    """
    _default_device[0] = None if device is None else as_device(device)


def get_default_device():
    return _default_device[0] or as_device("cpu")


def _dev(device):
    return as_device(device) if device is not None else get_default_device()


def _finish(data, device, requires_grad) -> Tensor:
    t = _make(data, device, None, 0, False)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _float_or(dtype):
    return np.dtype(dtype) if dtype is not None else dtypes.get_default_dtype()


def _shape(shape) -> tuple:
    if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor (always a copy) from a list, number, NumPy/CuPy array, Tensor, or any tensor
    exporting DLPack (torch, JAX...: read through ``from_dlpack``, then copied).

    Python floats become the default float dtype (float32), Python ints int64; an array keeps
    its dtype. A foreign tensor in GPU memory is never copied to another device implicitly.
    """
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def zeros(*shape, dtype=None, device=None, requires_grad=False) -> Tensor:
    dev = _dev(device)
    return _finish(dev.backend.xp.zeros(_shape(shape), dtype=_float_or(dtype)), dev, requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False) -> Tensor:
    dev = _dev(device)
    return _finish(dev.backend.xp.ones(_shape(shape), dtype=_float_or(dtype)), dev, requires_grad)


def empty(*shape, dtype=None, device=None, requires_grad=False) -> Tensor:
    dev = _dev(device)
    return _finish(dev.backend.xp.empty(_shape(shape), dtype=_float_or(dtype)), dev, requires_grad)


def full(shape, value, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Filled with ``value``; the dtype follows the value (float -> default float, int -> int64)."""
    dev = _dev(device)
    if dtype is None:
        # A NumPy scalar keeps its dtype, as an array would; only Python floats take the default.
        weak_float = isinstance(value, float) and not isinstance(value, np.generic)
        dtype = dtypes.get_default_dtype() if weak_float else np.asarray(value).dtype
        if isinstance(value, bool):
            dtype = np.bool_
        elif isinstance(value, int):
            dtype = np.int64
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    return _finish(dev.backend.xp.full(shape, value, dtype=dtype), dev, requires_grad)


def arange(start, stop=None, step=1, dtype=None, device=None, requires_grad=False) -> Tensor:
    """NumPy's arange; float arguments give the default float dtype, ints give int64."""
    dev = _dev(device)
    if stop is None:
        start, stop = 0, start
    if dtype is None:
        is_float = any(isinstance(v, float) for v in (start, stop, step))
        dtype = dtypes.get_default_dtype() if is_float else np.int64
    return _finish(dev.backend.xp.arange(start, stop, step, dtype=dtype), dev, requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    dev = _dev(device)
    return _finish(dev.backend.xp.eye(n, m, dtype=_float_or(dtype)), dev, requires_grad)


def zeros_like(t: Tensor, dtype=None, device=None, requires_grad=False) -> Tensor:
    dev = _dev(device) if device is not None else t.device
    return _finish(dev.backend.xp.zeros(t.shape, dtype=dtype or t.dtype), dev, requires_grad)


def ones_like(t: Tensor, dtype=None, device=None, requires_grad=False) -> Tensor:
    dev = _dev(device) if device is not None else t.device
    return _finish(dev.backend.xp.ones(t.shape, dtype=dtype or t.dtype), dev, requires_grad)


def full_like(t: Tensor, value, dtype=None, device=None, requires_grad=False) -> Tensor:
    dev = _dev(device) if device is not None else t.device
    return _finish(dev.backend.xp.full(t.shape, value, dtype=dtype or t.dtype), dev, requires_grad)


def rand(*shape, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Uniform on [0, 1), from the device's generator (seeded by ``manual_seed``) or ``generator``."""
    dev = _dev(device)
    if generator is not None:
        from .random import stream_for

        data = dev.backend.uniform(_shape(shape), 0.0, 1.0, _float_or(dtype), dev, stream=stream_for(generator, dev))
        return _finish(data, dev, requires_grad)
    return _finish(dev.backend.uniform(_shape(shape), 0.0, 1.0, _float_or(dtype), dev), dev, requires_grad)


def randn(*shape, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Standard normal samples from the device's generator (seeded by ``manual_seed``) or ``generator``."""
    dev = _dev(device)
    if generator is not None:
        from .random import stream_for

        data = dev.backend.normal(_shape(shape), 0.0, 1.0, _float_or(dtype), dev, stream=stream_for(generator, dev))
        return _finish(data, dev, requires_grad)
    return _finish(dev.backend.normal(_shape(shape), 0.0, 1.0, _float_or(dtype), dev), dev, requires_grad)


def from_numpy(a: np.ndarray) -> Tensor:
    """A cpu tensor sharing memory with ``a`` (changes to one show in the other)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(a).__name__}")
    return _make(a, as_device("cpu"), None, 0, False)


def manual_seed(seed: int) -> None:
    """Seed the generators of every backend (rand, randn, dropout, init).

    Backends not built yet (CuPy before the first "cuda" tensor) take the seed when they are, so
    seeding never imports CuPy or probes a GPU driver.
    """
    backends.seed_all(int(seed))


def to_array(data, dtype, device: Device, copy: bool):
    """Backend array for ``tensor(data, dtype, device)`` following the dtype rules of the API."""
    backend = device.backend
    if dtype is not None:
        dtype = np.dtype(dtype)
    if isinstance(data, Tensor):
        arr = data.data
        if data.device is not device:
            raise RuntimeError(
                f"ag.tensor(t, device={str(device)!r}) with t on {data.device}: use t.to({str(device)!r}) to move it"
            )
        arr = backend.xp.array(arr, dtype=dtype, copy=copy)
        return arr
    if isinstance(data, backend.array_type) or isinstance(data, np.ndarray):
        # An array keeps its dtype; a NumPy array bound for another device is transferred.
        arr = backend.asarray(data, dtype=dtype)
        if copy and arr is data:
            arr = arr.copy()
        return arr
    if isinstance(data, np.generic):
        return backend.asarray(np.asarray(data, dtype=dtype))
    if hasattr(type(data), "__dlpack__"):
        # A foreign tensor (torch, JAX, CuPy bound elsewhere...): read through DLPack, keeping its dtype.
        from .interop import foreign_to_tensor

        src = foreign_to_tensor(data, "ag.tensor", device).data
        if isinstance(src, backend.array_type):
            return backend.xp.array(src, dtype=dtype, copy=copy)
        return backend.asarray(src, dtype=dtype)  # host values bound for a device: a transfer
    arr = np.asarray(data, dtype=dtype)
    if dtype is None:
        if arr.dtype == np.float64:
            arr = arr.astype(dtypes.get_default_dtype())
        elif arr.dtype.kind == "O":
            raise TypeError(f"cannot build a tensor from {type(data).__name__}: its values are not numbers of one shape")
        elif arr.dtype.kind == "i" and arr.dtype != np.int64:
            arr = arr.astype(np.int64)
    return arr if backend.array_type is np.ndarray else backend.asarray(arr)
