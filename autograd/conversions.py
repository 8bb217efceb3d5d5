"""Tensor conversions: to host values (``numpy``, ``item``, ``float(t)``, ``repr``) and to other
devices and dtypes (``to``, ``cpu``, ``cuda``): methods of ``Tensor``.
"""
from __future__ import annotations

import numpy as np

from xpgrad.backends.device import Device, as_device

from . import dtypes

__all__ = ["Conversions"]

Tensor = None  # the Tensor class, set when tensor.py adopts these methods


class Conversions:
    """Methods of ``Tensor``, kept here and copied into it (see ``tensor._adopt_methods``)."""

    def numpy(self) -> np.ndarray:
        """The values as a numpy.ndarray (copied from the device if needed; shares memory on cpu)."""
        return self.device.backend.to_numpy(self.data)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """``np.asarray(t)``: the values of a cpu tensor, sharing memory unless ``dtype`` or
        ``copy=True`` asks for a copy (NumPy 2's ``copy=`` rules: ``copy=False`` raises if one is
        needed). A tensor on another device raises: nothing is copied from a GPU implicitly.
        """
        if self.device.type != "cpu":
            raise TypeError(
                f"can't convert a tensor on {self.device} to a NumPy array implicitly (that would copy it from the "
                "device); copy it to the host explicitly with t.cpu() or t.numpy() first"
            )
        arr = self.data
        if dtype is not None and np.dtype(dtype) != arr.dtype:
            if copy is False:
                raise ValueError(
                    f"np.asarray(t, dtype={np.dtype(dtype)}, copy=False): converting from {arr.dtype} needs a copy"
                )
            return arr.astype(dtype)
        return arr.copy() if copy else arr

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """DLPack export of the tensor's array (NumPy's on cpu, CuPy's on cuda): consumers such as
        ``torch.from_dlpack`` and ``np.from_dlpack`` share its memory. As in torch, a tensor that
        requires grad is refused (``BufferError`` naming ``.detach()``): export ``t.detach()``.
        """
        if self._requires_grad:
            raise BufferError("Can't export tensors that require gradient, use tensor.detach()")
        export = getattr(self.data, "__dlpack__", None)
        if export is None:
            raise BufferError(
                f"the arrays of the {self.device.backend.name!r} backend ({self.device}) do not support DLPack export"
            )
        kwargs = {}
        if stream is not None:
            kwargs["stream"] = stream
        if max_version is not None:
            kwargs["max_version"] = max_version
        if dl_device is not None:
            kwargs["dl_device"] = dl_device
        if copy is not None:
            kwargs["copy"] = copy
        return export(**kwargs)

    def __dlpack_device__(self) -> tuple:
        """``(device_type, device_id)`` of the DLPack export: (kDLCPU=1, 0) on cpu, (kDLCUDA=2, i) on cuda:i."""
        query = getattr(self.data, "__dlpack_device__", None)
        if query is not None:
            return query()
        if self.device.type == "cpu":
            return (1, 0)
        if self.device.type == "cuda":
            return (2, self.device.index or 0)
        raise BufferError(f"tensors on {self.device} have no DLPack device")

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with exactly one element, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise ValueError(
                f"the truth value of a tensor with {self.data.size} elements is ambiguous; use .any() or .all()"
            )
        return bool(self.item())


    def __iter__(self):
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        for i in range(self.data.shape[0]):
            yield self[i]

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        extra = []
        if self.data.dtype != dtypes.get_default_dtype() and self.data.dtype != np.int64 and self.data.dtype != np.bool_:
            extra.append(f"dtype={self.data.dtype}")
        if self.device.type != "cpu":
            extra.append(f"device='{self.device}'")
        if self.grad_fn is not None:
            extra.append(f"grad_fn={self.grad_fn!r}")
        elif self._requires_grad:
            extra.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extra) + ")"


    def to(self, *args, **kwargs) -> "Conversions":
        """``t.to("cuda")``, ``t.to(ag.float64)``, ``t.to("cpu", ag.float32)`` or ``t.to(other_tensor)``."""
        device = kwargs.pop("device", None)
        dtype = kwargs.pop("dtype", None)
        if kwargs:
            raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, Tensor):  # another tensor: its device and dtype
                device, dtype = a.device, a.dtype
            elif isinstance(a, (str, Device)) and not dtypes.is_dtype_name(a):
                device = a
            else:
                dtype = a
        out = self
        if dtype is not None and np.dtype(dtype) != self.data.dtype:
            out = out.astype(dtype)
        if device is not None and as_device(device) is not self.device:
            from .ops.elementwise import to_device

            out = to_device(out, as_device(device))
        return out

    def cpu(self) -> "Conversions":
        return self.to("cpu")

    def cuda(self, index: int = 0) -> "Conversions":
        return self.to(Device("cuda", index))
