"""Array backends for xpgrad: NumPy on the CPU, CuPy on NVIDIA GPUs, and any registered third party.

>>> from xpgrad import backends
>>> backends.available()          # e.g. ['numpy'] or ['numpy', 'cupy']
>>> backends.diagnose()           # why each backend is or is not usable here
>>> backends.register("mine", MyBackend()); backends.unregister("mine")  # plug in, and back out
"""
from .base import Backend
from .device import Device, as_device
from .numpy_backend import NumpyBackend
from .registry import available, backend_for_device, diagnose, get, register, seed_all, unregister

register("numpy", NumpyBackend())

__all__ = [
    "Backend", "Device", "NumpyBackend", "as_device", "available", "backend_for_device", "diagnose", "get", "register",
    "seed_all", "unregister",
]
