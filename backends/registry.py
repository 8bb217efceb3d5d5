"""Which backend serves which device type, and which backends can be used on this machine."""
from __future__ import annotations

import threading

from .base import Backend
from .device import Device

__all__ = ["register", "unregister", "get", "available", "diagnose", "backend_for_device", "seed_all"]

_lock = threading.Lock()
_by_name: dict[str, Backend] = {}
_by_device_type: dict[str, str] = {}
# Factories imported only when first asked for, so the CPU path never imports CuPy.
_lazy: dict[str, tuple[str, str, str]] = {"cupy": ("cuda", "xpgrad.backends.cupy_backend", "CupyBackend")}
# For each registered name, who served each device type it took over (None: nobody, so a lazy
# built-in may serve it again), so that unregister() can put things back as they were.
_replaced: dict[str, dict[str, str | None]] = {}
# The last seed given to seed_all(); backends built later start from it.
_seed: list[int | None] = [None]


def register(name: str, backend: Backend, *, device_type: str | None = None) -> None:
    """Make ``backend`` serve ``device_type`` (default: ``backend.device_type``).

    Re-registering a device type replaces its backend for Devices created from then on, which
    is how tests swap in the GPU-free stand-in for "cuda"; :func:`unregister` undoes it. A name
    serves one device type: registering it for another gives the old one back to its previous owner.
    """
    if not isinstance(backend, Backend):
        raise TypeError(f"backends.register expects a backends.Backend instance, got {type(backend).__name__}")
    device_type = device_type or backend.device_type
    if not device_type:
        raise ValueError(f"backend {name!r} names no device_type")
    with _lock:
        if name not in _by_name:
            _replaced[name] = {}  # a new registration owes nothing to an earlier one of the same name
        _by_name[name] = backend
        _lazy.pop(name, None)
        replaced = _replaced[name]
        for type_, owner in list(_by_device_type.items()):
            if owner == name and type_ != device_type:
                _give_back(name, type_)
        if _by_device_type.get(device_type) != name:
            replaced[device_type] = _by_device_type.get(device_type)
        _by_device_type[device_type] = name
        _forget_resolved(device_type)


def unregister(name: str) -> None:
    """Forget backend ``name`` (registered or built-in) and give each device type it served back to
    whatever served it before :func:`register` (a built-in served lazily, such as CuPy for "cuda",
    comes back too). Raises KeyError for an unknown name.
    """
    with _lock:
        if name not in _by_name and name not in _lazy:
            raise KeyError(f"no backend named {name!r}; registered: {sorted(set(_by_name) | set(_lazy))}")
        for type_, owner in list(_by_device_type.items()):
            if owner == name:
                _give_back(name, type_)
        replaced = _replaced.pop(name, {})
        # Anyone who took a device type over from ``name`` falls back to what ``name`` had replaced.
        for other in _replaced.values():
            for type_, before in other.items():
                if before == name:
                    other[type_] = replaced.get(type_)
        _by_name.pop(name, None)
        _lazy.pop(name, None)


def _give_back(name: str, device_type: str) -> None:
    """Hand ``device_type`` from ``name`` back to its previous owner. Caller holds ``_lock``."""
    before = _replaced.get(name, {}).pop(device_type, None)
    if before is None or (before not in _by_name and before not in _lazy):
        _by_device_type.pop(device_type, None)
    else:
        _by_device_type[device_type] = before
    _forget_resolved(device_type)


def _forget_resolved(device_type: str) -> None:
    from .device import _cache

    for dev in list(_cache.values()):
        if dev.type == device_type:
            dev._backend = None


def seed_all(seed: int) -> None:
    """Seed the random generators of every backend built so far that can run here, and remember
    ``seed`` for the ones built later (so seeding never imports CuPy or probes a GPU)."""
    seed = int(seed)
    with _lock:
        _seed[0] = seed
        built = list({id(b): b for b in _by_name.values()}.values())
    for backend in built:
        if _usable(backend):
            backend.seed(seed)


def _usable(backend: Backend) -> bool:
    try:
        return bool(backend.availability()[0])
    except Exception:  # a broken install is unusable, as diagnose() reports it, not a crash
        return False


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
        if name not in _by_name:
            _by_name[name] = backend
            _by_device_type.setdefault(device_type, name)
            # Built after manual_seed: start from that seed, as if it had been there all along.
            if _seed[0] is not None and _usable(backend):
                backend.seed(_seed[0])
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
