"""Device objects: where a tensor's array lives ("cpu", "cuda:0", ...)."""
from __future__ import annotations

import threading

__all__ = ["Device", "as_device"]

_cache: dict = {}
_cache_lock = threading.Lock()


class Device:
    """A device such as ``Device("cpu")`` or ``Device("cuda:1")``.

    Devices are interned: ``Device("cuda:0") is Device("cuda")`` (a bare "cuda" means index 0),
    so the engine compares them by identity on its hot path. ``Device("cpu").index`` is None.
    ``backend`` is the Backend that runs this device's arrays; it is looked up on first use, so
    a CUDA Device can be named (and its error raised) only when it is actually used.
    """

    __slots__ = ("type", "index", "_backend", "__weakref__")

    def __new__(cls, spec: "str | Device", index: int | None = None) -> "Device":
        if isinstance(spec, Device):
            return spec
        key = (spec, index)
        dev = _cache.get(key)
        if dev is not None:
            return dev
        type_, idx = _parse(spec, index)
        with _cache_lock:
            dev = _cache.get((type_, idx))
            if dev is None:
                dev = object.__new__(cls)
                dev.type = type_
                dev.index = idx
                dev._backend = None
                _cache[(type_, idx)] = dev
            _cache[key] = dev
        return dev

    @property
    def backend(self):
        """The Backend for this device (raises RuntimeError if it cannot be used here)."""
        backend = self._backend
        if backend is None:
            from .registry import backend_for_device

            backend = self._backend = backend_for_device(self)
        return backend

    @property
    def xp(self):
        """The array module (numpy, cupy, ...) of this device."""
        return self.backend.xp

    def __repr__(self) -> str:
        return f"device(type={self.type!r}" + ("" if self.index is None else f", index={self.index}") + ")"

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            try:
                other = Device(other)
            except ValueError:
                return False
        return self is other

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __reduce__(self):
        return (Device, (str(self),))


def _parse(spec, index):
    if not isinstance(spec, str):
        raise TypeError(f"a device is a string such as 'cpu' or 'cuda:0', or a Device; got {type(spec).__name__}")
    type_, sep, rest = spec.strip().partition(":")
    if sep:
        if index is not None:
            raise ValueError(f"device {spec!r} already names an index; do not pass index={index} as well")
        if not rest.isdigit():
            raise ValueError(f"invalid device {spec!r}: the index after ':' must be a non-negative integer")
        index = int(rest)
    if not type_ or not type_.replace("_", "").isalnum():
        raise ValueError(f"invalid device {spec!r}: expected a name such as 'cpu' or 'cuda:0'")
    if type_ == "cpu":
        if index not in (None, 0):
            raise ValueError(f"invalid device {spec!r}: there is only one cpu device")
        return "cpu", None
    return type_, 0 if index is None else index


def as_device(device) -> Device:
    """Turn a string or Device into a Device (None means cpu)."""
    if device is None:
        return Device("cpu")
    return Device(device)
