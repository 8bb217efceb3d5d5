"""dtypes are NumPy dtypes; this module holds the aliases and the default floating dtype."""
from __future__ import annotations

import numpy as np

from xpgrad.backends.device import Device

__all__ = [
    "float16", "float32", "float64", "int32", "int64", "bool_",
    "get_default_dtype", "set_default_dtype", "is_floating",
]

float16 = np.dtype(np.float16)
float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
bool_ = np.dtype(np.bool_)

_default = [float32]


def get_default_dtype() -> np.dtype:
    """The dtype of tensors created from Python floats (float32 unless changed)."""
    return _default[0]


def set_default_dtype(dtype) -> None:
    """Set the dtype used for Python floats at creation: float16, float32 or float64."""
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"the default dtype must be a floating dtype, got {dtype}")
    _default[0] = dtype


def is_floating(dtype) -> bool:
    return np.dtype(dtype).kind == "f"


def is_dtype_name(value) -> bool:
    """Whether ``value`` names a dtype (``"float32"``, ``np.float64``) rather than a device."""
    if isinstance(value, Device):
        return False
    try:
        np.dtype(value)
    except TypeError:
        return False
    return True
