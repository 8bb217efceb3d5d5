"""Exchanging arrays with other libraries: DLPack (``ag.from_dlpack``, ``Tensor.__dlpack__``) and
the helpers that let ``ag.tensor`` and state-dict loading take foreign tensors (torch, JAX, CuPy...).

Memory is shared, never copied, by ``from_dlpack``; a foreign tensor is read on the device it
lives on (kDLCPU through NumPy, kDLCUDA through CuPy), and nothing moves between devices here.
"""
from __future__ import annotations

import numpy as np

from xpgrad.backends.device import Device

__all__ = ["from_dlpack", "foreign_name", "is_foreign_array", "foreign_to_tensor"]

# DLPack device type codes (DLDeviceType).
KDL_CPU = 1
KDL_CUDA = 2
KDL_CUDA_HOST = 3  # page-locked host memory: readable from the CPU
_DEVICE_NAMES = {1: "kDLCPU", 2: "kDLCUDA", 3: "kDLCUDAHost", 4: "kDLOpenCL", 7: "kDLVulkan", 8: "kDLMetal",
                 10: "kDLROCM", 11: "kDLROCMHost", 13: "kDLCUDAManaged", 14: "kDLOneAPI"}

_CUDA_HINT = 'install CuPy with `pip install "xpgrad[cuda12]"` (CUDA 12) or `pip install "xpgrad[cuda13]"` (CUDA 13)'


def foreign_name(obj) -> str:
    """The qualified type name of ``obj`` for messages: ``torch.Tensor``, ``jaxlib...ArrayImpl``, ``list``."""
    t = type(obj)
    module = getattr(t, "__module__", "") or ""
    if module in ("builtins", ""):
        return t.__qualname__
    return f"{module}.{t.__qualname__}"


def is_foreign_array(obj) -> bool:
    """True for an object that exports DLPack and is neither a Tensor nor a NumPy array."""
    from .tensor import Tensor

    return hasattr(type(obj), "__dlpack__") and not isinstance(obj, (Tensor, np.ndarray, np.generic))


def _dlpack_device(obj) -> tuple[int, int]:
    try:
        dev_type, dev_id = obj.__dlpack_device__()
    except Exception as exc:
        raise TypeError(f"{foreign_name(obj)} has __dlpack__ but its __dlpack_device__() failed: {exc}") from exc
    return int(dev_type), int(dev_id)


def _describe(dev_type: int, dev_id: int) -> str:
    if dev_type in (KDL_CPU, KDL_CUDA_HOST):
        return "cpu"
    if dev_type == KDL_CUDA:
        return f"cuda:{dev_id}"
    return f"{_DEVICE_NAMES.get(dev_type, 'device type ' + str(dev_type))}:{dev_id}"


def from_dlpack(obj):
    """A Tensor sharing memory with ``obj``, any object exporting DLPack (torch tensors, NumPy, CuPy,
    JAX arrays...), on the matching device: kDLCPU gives a cpu tensor (through NumPy), kDLCUDA device
    ``i`` a ``cuda:i`` tensor (through CuPy). Writes through one side show in the other.

    As ``torch.from_dlpack``, the result is outside any graph, and a tensor that requires grad
    (ours or torch's) is refused with a ``BufferError`` naming ``.detach()``.
    """
    from .tensor import Tensor, _make

    if isinstance(obj, Tensor):
        if obj.requires_grad:
            raise BufferError("Can't export tensors that require gradient, use tensor.detach()")
        return obj.detach()
    if not hasattr(obj, "__dlpack__") or not hasattr(obj, "__dlpack_device__"):
        raise TypeError(
            f"from_dlpack expects an object supporting DLPack (with __dlpack__ and __dlpack_device__, such as a "
            f"torch.Tensor, a NumPy, CuPy or JAX array), got {foreign_name(obj)}"
        )
    dev_type, dev_id = _dlpack_device(obj)
    if dev_type in (KDL_CPU, KDL_CUDA_HOST):
        try:
            arr = np.from_dlpack(obj)
        except (BufferError, TypeError, ValueError, RuntimeError) as exc:
            raise type(exc)(f"from_dlpack: could not read the {foreign_name(obj)} as a NumPy array: {exc}") from exc
        return _make(arr, Device("cpu"), None, 0, False)
    if dev_type == KDL_CUDA:
        device = Device("cuda", dev_id)
        arr = _cuda_from_dlpack(obj, device)
        return _make(arr, device, None, 0, False)
    raise TypeError(
        f"from_dlpack: the {foreign_name(obj)} lives on {_describe(dev_type, dev_id)}, a device xpgrad has no "
        "backend for (cpu and cuda are supported); copy it to the host on its side first"
    )


def _cuda_from_dlpack(obj, device: Device):
    try:
        backend = device.backend
    except RuntimeError as exc:
        raise RuntimeError(
            f"from_dlpack: the {foreign_name(obj)} lives on {device}, which needs CuPy here ({exc}); {_CUDA_HINT}, "
            "or copy it to the host on its side first (for torch: x.cpu())"
        ) from exc
    if backend.name != "cupy":
        raise TypeError(
            f"from_dlpack: the {foreign_name(obj)} lives on {device}, served here by the {backend.name!r} backend, "
            "which cannot import DLPack device memory (only CuPy can); copy it to the host on its side first"
        )
    with backend.xp.cuda.Device(device.index):
        try:
            return backend.xp.from_dlpack(obj)
        except (BufferError, TypeError, ValueError, RuntimeError) as exc:
            raise type(exc)(f"from_dlpack: could not read the {foreign_name(obj)} as a CuPy array: {exc}") from exc


def foreign_to_tensor(obj, where: str, device: Device | None = None):
    """A Tensor viewing a foreign tensor's values, for code that copies them next (``ag.tensor``,
    ``load_state_dict``). A torch tensor that requires grad is read without its graph (its values
    are copied, as ``torch.tensor(t)`` and ``load_state_dict`` do).

    With ``device``, a source in device memory bound for another device raises, naming the move:
    nothing is read from a GPU implicitly. (Host data bound for a GPU is the caller's usual upload.)
    """
    if getattr(obj, "requires_grad", False) and callable(getattr(obj, "detach", None)):
        obj = obj.detach()
    if not hasattr(obj, "__dlpack_device__"):
        raise TypeError(f"{where}: {foreign_name(obj)} has __dlpack__ but no __dlpack_device__; convert it to a NumPy array first")
    dev_type, dev_id = _dlpack_device(obj)
    if device is not None and dev_type not in (KDL_CPU, KDL_CUDA_HOST):
        here = _describe(dev_type, dev_id)
        if here != str(device):
            raise RuntimeError(
                f"{where}: the {foreign_name(obj)} lives on {here} but the target device is {device}; nothing is "
                f"copied between devices implicitly: move it on its side first (for torch: x.cpu() / x.to('{device}')), "
                f"or ask for device='{here}'"
            )
    return from_dlpack(obj)
