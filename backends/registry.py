"""Which backend serves which device type, and which backends can be used on this machine."""
from __future__ import annotations

import threading

from .base import Backend
from .device import Device

__all__ = ["register", "get", "available", "diagnose", "backend_for_device"]

_lock = threading.Lock()
_by_name: dict[str, Backend] = {}
_by_device_type: dict[str, str] = {}
# Factories imported only when first asked for, so the CPU path never imports CuPy.
_lazy: dict[str, tuple[str, str, str]] = {"cupy": ("cuda", "backends.cupy_backend", "CupyBackend")}


def register(name: str, backend: Backend, *, device_type: str | None = None) -> None:
    """Make ``backend`` serve ``device_type`` (default: ``backend.device_type``).

    Re-registering a device type replaces its backend for Devices created from then on, which
    is how tests swap in the GPU-free stand-in for "cuda".
    """
    if not isinstance(backend, Backend):
        raise TypeError(f"backends.register expects a backends.Backend instance, got {type(backend).__name__}")
    device_type = device_type or backend.device_type
    if not device_type:
        raise ValueError(f"backend {name!r} names no device_type")
    with _lock:
        _by_name[name] = backend
        _lazy.pop(name, None)
        for type_, owner in list(_by_device_type.items()):
            if owner == name and type_ != device_type:
                del _by_device_type[type_]
        _by_device_type[device_type] = name
        _forget_resolved(device_type)


def _forget_resolved(device_type: str) -> None:
    from .device import _cache

    for dev in list(_cache.values()):
        if dev.type == device_type:
            dev._backend = None


def get(name: str) -> Backend:
    """The backend registered as ``name`` (imported on first use for built-in lazy ones)."""
    backend = _by_name.get(name)
    if backend is not None:
        return backend
    spec = _lazy.get(name)
    if spec is None:
        raise KeyError(f"no backend named {name!r}; registered: {sorted(set(_by_name) | set(_lazy))}")
    device_type, module_name, class_name = spec
    import importlib

    backend = getattr(importlib.import_module(module_name), class_name)()
    with _lock:
        _by_name.setdefault(name, backend)
        _by_device_type.setdefault(device_type, name)
    return _by_name[name]


def diagnose() -> dict[str, str]:
    """For every known backend, "available" or the reason it cannot be used here."""
    report = {}
    for name in list(_by_name) + [n for n in _lazy if n not in _by_name]:
        try:
            ok, reason = get(name).availability()
        except Exception as exc:  # a broken install is a reason too, not a crash
            ok, reason = False, f"{type(exc).__name__}: {exc}"
        report[name] = "available" if ok else reason
    return report


def available() -> list[str]:
    """Names of the backends usable on this machine, e.g. ["numpy"] or ["numpy", "cupy"]."""
    return [name for name, why in diagnose().items() if why == "available"]


def backend_for_device(device: Device) -> Backend:
    name = _by_device_type.get(device.type)
    if name is None:
        for lazy_name, (type_, _, _) in _lazy.items():
            if type_ == device.type:
                name = lazy_name
                break
    if name is None:
        raise RuntimeError(f"no backend serves device type {device.type!r}; known: {sorted(_device_types())}")
    backend = get(name)
    ok, reason = backend.availability()
    if not ok:
        raise RuntimeError(f"device {device} cannot be used: {reason}")
    return backend


def _device_types():
    return set(_by_device_type) | {spec[0] for spec in _lazy.values()}
