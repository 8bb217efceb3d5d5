"""``Tensor``: an array on a device, plus what reverse mode needs to know about it.

Operators and math methods are attached in ``autograd/_methods.py`` from the op modules, so each
op's forward, backward and public function live together in ``autograd/ops``.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from xpgrad.backends.device import Device, as_device

from . import dtypes
from .grad_mode import state

__all__ = ["Tensor"]

_new = object.__new__

# Version counters are [number of in-place changes, name of the last in-place op, value of
# this clock at the last change]. A saved tensor is stale iff its clock entry is newer than the
# clock when it was saved: saving costs one read instead of one read per tensor.
_clock = [0]


def _make(data, device, grad_fn, idx, requires_grad):
    """Build a Tensor without argument checking (the engine's hot path)."""
    t = _new(Tensor)
    t.data = data
    t.device = device
    t.grad_fn = grad_fn
    t._requires_grad = requires_grad
    if idx:
        t._out_idx = idx
    return t


# The version counter of a tensor never changed in place: shared, immutable, so creating a
# tensor allocates no counter. The first in-place change (or sharing with a view) gives the
# tensor a list of its own (see _clock).
_UNCHANGED = (0, None, 0)


def _counter(t) -> list:
    """``t``'s own (mutable, shareable) version counter, created on first need."""
    v = t._version
    if type(v) is tuple:
        v = t._version = [0, None, 0]
    return v


class Tensor:
    """An n-dimensional array on a device that can take part in reverse-mode differentiation.

    ``data`` is the backend array (numpy.ndarray on "cpu", cupy.ndarray on "cuda"). Tensors are
    hashable by identity and weak-referenceable; ``==`` compares elementwise, as in NumPy.
    """

    # The attributes every op writes are slots; the rest are class-level defaults that an
    # instance overrides only when needed (creating a tensor is the engine's hottest path).
    __slots__ = ("data", "device", "grad_fn", "_requires_grad", "__dict__", "__weakref__")
    _out_idx = 0
    _grad = None
    _version = _UNCHANGED
    # Make NumPy defer to our reflected operators: `ndarray * Tensor` -> Tensor.__rmul__.
    __array_ufunc__ = None
    __array_priority__ = 1000

    def __init__(self, data: Any, dtype=None, device=None, requires_grad: bool = False) -> None:
        if device is not None:
            dev = as_device(device)
        elif isinstance(data, Tensor):
            dev = data.device
        else:
            from .creation import get_default_device

            dev = get_default_device()
        self.data = _to_array(data, dtype, dev, copy=True)
        self.device = dev
        self.grad_fn = None
        self._requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # -- array facts ------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def numpy(self) -> np.ndarray:
        """The values as a numpy.ndarray (copied from the device if needed; shares memory on cpu)."""
        return self.device.backend.to_numpy(self.data)

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

    def __hash__(self) -> int:
        return id(self)

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

    # -- autograd facts -----------------------------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        self.requires_grad_(flag)

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        """Set whether this leaf records operations for differentiation; returns the tensor."""
        flag = bool(flag)
        if self.grad_fn is not None:
            if not flag:
                raise RuntimeError(
                    "requires_grad can only be switched off on leaf tensors; use .detach() to get a "
                    "tensor outside the graph"
                )
            return self
        if flag and self.data.dtype.kind not in "fc":
            raise TypeError(
                f"only floating-point tensors can require gradients, but this tensor has dtype "
                f"{self.data.dtype}; convert it first, e.g. t.astype(ag.float32)"
            )
        self._requires_grad = flag
        return self

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def grad(self):
        """Accumulated gradient (a Tensor) of a leaf, or of a non-leaf after ``retain_grad()``."""
        g = self._grad
        if g is None and self.grad_fn is not None and not self._is_retaining():
            warnings.warn(
                "reading .grad of a non-leaf tensor: it is not filled by backward() because only leaves "
                "keep gradients. Call .retain_grad() on it before backward(), or use ag.grad(out, tensor).",
                UserWarning,
                stacklevel=2,
            )
        return g

    @grad.setter
    def grad(self, value) -> None:
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"assigned grad must be a Tensor or None, got {type(value).__name__}")
            if value.shape != self.shape:
                raise ValueError(f"assigned grad has shape {value.shape}, but the tensor has shape {self.shape}")
            if value.device is not self.device:
                raise RuntimeError(f"assigned grad is on {value.device}, but the tensor is on {self.device}")
        self._grad = value

    def _is_retaining(self) -> bool:
        node = self.grad_fn
        return node is not None and node._retained is not None and self._out_idx in node._retained

    def retain_grad(self) -> None:
        """Make backward() fill ``.grad`` of this non-leaf tensor too."""
        if self.grad_fn is None:
            if not self._requires_grad:
                raise RuntimeError("retain_grad() on a tensor that does not require grad")
            return
        self.grad_fn.register_retained(self._out_idx, self)

    def detach(self) -> "Tensor":
        """A tensor sharing this data (and version counter), outside the graph."""
        t = _make(self.data, self.device, None, 0, False)
        t._version = _counter(self)
        return t

    def backward(self, grad=None, retain_graph: bool | None = None, create_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        ``grad`` is required unless the tensor has exactly one element. ``retain_graph`` defaults
        to ``create_graph``; without it the saved buffers are freed as backward goes, and a second
        backward through the same graph raises. Prefer ``ag.grad(..., create_graph=True)`` for
        double backprop: it never stores a graph inside ``.grad``.
        """
        from .engine import run_backward

        run_backward((self,), (grad,), retain_graph, create_graph)

    # -- devices and dtypes ---------------------------------------------------------------------------
    def to(self, *args, **kwargs) -> "Tensor":
        """``t.to("cuda")``, ``t.to(ag.float64)``, ``t.to("cpu", ag.float32)`` or ``t.to(other_tensor)``."""
        device = kwargs.pop("device", None)
        dtype = kwargs.pop("dtype", None)
        if kwargs:
            raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            elif isinstance(a, (str, Device)) and not _is_dtype_name(a):
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

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def cuda(self, index: int = 0) -> "Tensor":
        return self.to(Device("cuda", index))

    # -- in-place (for tensors outside the graph) -------------------------------------------------------
    def _check_inplace(self, op: str) -> None:
        if self._requires_grad and state.grad_enabled:
            kind = "a leaf tensor that requires grad" if self.grad_fn is None else "a tensor that is part of the graph"
            raise RuntimeError(
                f"{op} is an in-place operation on {kind}; this is only allowed under `with ag.no_grad():` "
                f"(e.g. for parameter updates). Use the out-of-place form instead, e.g. `x = x + y` "
                f"rather than `x.add_(y)`."
            )

    def _bump(self, op: str) -> None:
        _clock[0] += 1
        v = _counter(self)
        v[0] += 1
        v[1] = op
        v[2] = _clock[0]

    def _operand(self, other, op: str):
        if isinstance(other, Tensor):
            if other.device is not self.device:
                raise RuntimeError(f"{op}: tensor on {self.device} and operand on {other.device}; move one first")
            return other.data
        return other

    def _inplace(self, op: str, ufunc, other) -> "Tensor":
        self._check_inplace(op)
        ufunc(self.data, self._operand(other, op), out=self.data, casting="same_kind")
        self._bump(op)
        return self

    def add_(self, other, alpha=1) -> "Tensor":
        if alpha != 1:
            other = self._operand(other, "add_") * alpha
        return self._inplace("add_", self.device.backend.xp.add, other)

    def sub_(self, other, alpha=1) -> "Tensor":
        if alpha != 1:
            other = self._operand(other, "sub_") * alpha
        return self._inplace("sub_", self.device.backend.xp.subtract, other)

    def mul_(self, other) -> "Tensor":
        return self._inplace("mul_", self.device.backend.xp.multiply, other)

    def div_(self, other) -> "Tensor":
        return self._inplace("div_", self.device.backend.xp.true_divide, other)

    def zero_(self) -> "Tensor":
        return self.fill_(0)

    def fill_(self, value) -> "Tensor":
        self._check_inplace("fill_")
        self.data[...] = self._operand(value, "fill_")
        self._bump("fill_")
        return self

    def copy_(self, src) -> "Tensor":
        """Copy ``src``'s values into this tensor (broadcasting ``src``; same device required)."""
        self._check_inplace("copy_")
        values = self._operand(src, "copy_")
        xp = self.device.backend.xp
        if not isinstance(src, Tensor):
            values = self.device.backend.asarray(values)
        xp.copyto(self.data, xp.broadcast_to(values, self.data.shape), casting="unsafe")
        self._bump("copy_")
        return self

    def __setitem__(self, index, value) -> None:
        self._check_inplace("__setitem__ (t[idx] = v)")
        if isinstance(value, Tensor) and value._requires_grad and state.grad_enabled:
            raise RuntimeError(
                "t[idx] = v with a v that requires grad would drop v's gradient; build the result "
                "out of place instead, e.g. with ag.where(mask, v, t), ag.concatenate or ag.stack"
            )
        from .ops.indexing import normalize_index

        self.data[normalize_index(index, self.device)] = self._operand(value, "__setitem__")
        self._bump("__setitem__")


def _is_dtype_name(value) -> bool:
    if isinstance(value, Device):
        return False
    try:
        np.dtype(value)
    except TypeError:
        return False
    return True


def _to_array(data, dtype, device: Device, copy: bool):
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
    arr = np.asarray(data, dtype=dtype)
    if dtype is None:
        if arr.dtype == np.float64:
            arr = arr.astype(dtypes.get_default_dtype())
        elif arr.dtype.kind == "O":
            raise TypeError(f"cannot build a tensor from {type(data).__name__}: its values are not numbers of one shape")
        elif arr.dtype.kind == "i" and arr.dtype != np.int64:
            arr = arr.astype(np.int64)
    return arr if backend.array_type is np.ndarray else backend.asarray(arr)
