"""``Module`` (the base class of layers and models) and ``Parameter``.

Attributes register themselves on assignment, in declaration order: a ``Parameter`` goes to
``_parameters``, a ``Module`` to ``_modules``; buffers (non-trainable state such as BatchNorm's
running statistics) are added with ``register_buffer``. ``state_dict`` names follow the
attribute paths (``"fc1.weight"``), as in PyTorch.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np

from xpgrad import autograd as ag
from xpgrad.autograd.dtypes import is_dtype_name
from xpgrad.autograd.interop import foreign_name, foreign_to_tensor, is_foreign_array
from xpgrad.autograd.versioning import counter as _counter
from xpgrad.autograd import Tensor
from xpgrad.backends.device import Device, as_device

__all__ = ["Module", "Parameter"]


class Parameter(Tensor):
    """A tensor that is a module's learnable state: a leaf that requires grad (by default) and
    registers itself when assigned as a module attribute. It shares ``data`` (and the version
    counter) with the tensor it is built from."""

    __slots__ = ()

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        if data is None:
            data = ag.empty(0)
        elif not isinstance(data, Tensor):
            data = ag.tensor(data)
        self.data = data.data
        self.device = data.device
        self.grad_fn = None
        self._requires_grad = False
        self._version = _counter(data)
        self.requires_grad_(requires_grad)

    def __setattr__(self, name: str, value) -> None:
        # ``param.data = tensor`` is a PyTorch habit that would leave a Tensor where every op
        # expects an array. Caught here, on Parameters only: a check on every Tensor would cost
        # each op's output (see the README's note on ``.data``).
        if name == "data" and isinstance(value, Tensor):
            raise TypeError(
                "Parameter.data holds the backend array, not a Tensor: assign `p.data = other.data`, or copy "
                "the values with `p.copy_(other)` under `with ag.no_grad():`"
            )
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __reduce_ex__(self, protocol):
        # Rebuild through __init__ so copies (copy.deepcopy(model)) are Parameters with their own
        # version counter; the gradient is not part of a parameter's identity.
        return (_rebuild_parameter, (self.detach().data.copy(), self.device, self._requires_grad))


def _rebuild_parameter(data, device, requires_grad):
    t = ag.tensor(data, device=device)
    return Parameter(t, requires_grad=requires_grad)


class _IncompatibleKeys(NamedTuple):
    missing_keys: list
    unexpected_keys: list


def _check_name(kind: str, name: Any) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
    if not name:
        raise KeyError(f'{kind} name can\'t be empty string ""')
    if "." in name:
        raise KeyError(f'{kind} name can\'t contain ".", got {name!r}')


class Module:
    """Base class of every layer and model: subclass it, assign layers and ``Parameter`` s in
    ``__init__`` (after ``super().__init__()``) and define ``forward``."""

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward(...)")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- registration ----------------------------------------------------------------------------
    def _registries(self):
        d = self.__dict__
        if "_parameters" not in d:
            raise AttributeError(
                f"cannot assign parameters, modules or buffers to {type(self).__name__} before "
                "Module.__init__() has run: call super().__init__() first in __init__"
            )
        return d["_parameters"], d["_modules"], d["_buffers"]

    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        params = d.get("_parameters")
        if isinstance(value, Parameter):
            params, _, _ = self._registries()
            self._forget(name, keep=params)
            params[name] = value
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign a {type(value).__name__} as parameter {name!r} (an nn.Parameter or None "
                    "is expected); wrap it: nn.Parameter(tensor)"
                )
            params[name] = None
        elif isinstance(value, Module):
            _, modules, _ = self._registries()
            self._forget(name, keep=modules)
            modules[name] = value
        elif params is not None and name in d["_modules"]:
            if value is not None:
                raise TypeError(
                    f"cannot assign a {type(value).__name__} as child module {name!r} (a Module or None is expected)"
                )
            d["_modules"][name] = None
        elif params is not None and name in d["_buffers"]:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(
                    f"cannot assign a {type(value).__name__} as buffer {name!r} (a Tensor or None is expected)"
                )
            d["_buffers"][name] = value
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name: str, keep) -> None:
        """Remove ``name`` from every registry except ``keep`` and from the plain attributes."""
        d = self.__dict__
        d.pop(name, None)
        for registry in (d["_parameters"], d["_modules"], d["_buffers"]):
            if registry is not keep:
                registry.pop(name, None)
        d["_non_persistent_buffers"].discard(name)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: parameters, buffers and children live in registries.
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            registry = d.get(key)
            if registry is not None and name in registry:
                return registry[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            registry = d.get(key)
            if registry is not None and name in registry:
                del registry[name]
                d["_non_persistent_buffers"].discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        extra = list(self._parameters) + list(self._buffers) + list(self._modules)
        return sorted(set(super().__dir__()) | set(extra))

    def _check_new_attribute(self, kind: str, name: str, registry) -> None:
        _check_name(kind, name)
        if name in self.__dict__ or (hasattr(type(self), name) and name not in registry):
            raise KeyError(f"attribute {name!r} already exists on {type(self).__name__}")

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter (or None, a declared but absent one, like ``bias=False``)."""
        params, _, _ = self._registries()
        self._check_new_attribute("parameter", name, params)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"cannot register a {type(param).__name__} as parameter {name!r} (nn.Parameter or None expected)"
            )
        self._forget(name, keep=params)
        params[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Add non-trainable state; ``persistent=False`` keeps it out of ``state_dict``."""
        _, _, buffers = self._registries()
        self._check_new_attribute("buffer", name, buffers)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(
                f"cannot register a {type(tensor).__name__} as buffer {name!r} (a Tensor or None is expected)"
            )
        if isinstance(tensor, Parameter):
            raise TypeError(f"buffer {name!r} is a Parameter; use register_parameter for learnable state")
        self._forget(name, keep=buffers)
        buffers[name] = tensor
        if not persistent:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module: "Module | None") -> None:
        """Add a child module under ``name``."""
        _, modules, _ = self._registries()
        self._check_new_attribute("module", name, modules)
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._forget(name, keep=modules)
        modules[name] = module

    register_module = add_module

    # -- traversal ----------------------------------------------------------------------------------
    def named_modules(self, memo: set | None = None, prefix: str = "", remove_duplicate: bool = True):
        """(dotted name, module) for this module and every descendant, each once, parents first."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is None:
                continue
            yield from child.named_modules(memo, prefix + ("." if prefix else "") + name, remove_duplicate)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        seen = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self) -> Iterator["Module"]:
        for _, child in self.named_children():
            yield child

    def _named_members(self, registry: str, prefix: str, recurse: bool, remove_duplicate: bool = True):
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, module in modules:
            for name, value in module.__dict__[registry].items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield mod_prefix + ("." if mod_prefix else "") + name, value

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        """(dotted name, Parameter) pairs in registration order; a shared parameter appears once."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target: str) -> "Module":
        """The descendant at dotted path ``target`` ("" is this module)."""
        module = self
        for part in target.split(".") if target else []:
            child = module._modules.get(part)
            if child is None:
                raise AttributeError(f"{type(module).__name__} has no submodule {part!r} (looking up {target!r})")
            module = child
        return module

    def apply(self, fn: Callable[["Module"], Any]) -> "Module":
        """Call ``fn`` on every submodule (children first) and on this module; returns self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # -- modes ----------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Set training mode (dropout active, batch statistics) on this module and its descendants.

        Independent of grad mode: ``eval()`` does not stop gradients, ``no_grad`` does not change it.
        """
        if not isinstance(mode, bool):
            raise ValueError(f"training mode is expected to be a bool, got {type(mode).__name__}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of all parameters (to None by default, else to zeros in place)."""
        for p in self.parameters():
            g = p._grad
            if g is None:
                continue
            if set_to_none:
                p._grad = None
            else:
                if g.grad_fn is not None or g.requires_grad:
                    g = p._grad = g.detach()
                with ag.no_grad():
                    g.zero_()

    # -- devices and dtypes -------------------------------------------------------------------------
    def to(self, *args, **kwargs) -> "Module":
        """Move and/or cast parameters and buffers in place: ``model.to("cuda")``,
        ``model.to(ag.float64)``, ``model.to("cpu", ag.float32)``.

        The Parameter objects stay the same (their ``data`` is replaced), so an optimizer built
        before the call keeps updating them. Casts apply to floating-point tensors only, as in
        PyTorch (an int64 counter stays int64). Gradients are moved and cast along.
        """
        device, dtype = _parse_to_args(args, kwargs)
        if dtype is not None and dtype.kind not in "fc":
            raise TypeError(f"Module.to only accepts floating-point dtypes, got {dtype}")
        with ag.no_grad():
            for t in list(self.parameters()) + list(self.buffers()):
                _move_in_place(t, device, dtype)
                if t._grad is not None:
                    g = t._grad
                    t._grad = _converted(g.detach() if g.grad_fn is not None else g, device, dtype)
        return self

    def cpu(self) -> "Module":
        return self.to("cpu")

    def cuda(self, index: int = 0) -> "Module":
        return self.to(Device("cuda", index))

    def float(self) -> "Module":
        return self.to(np.float32)

    def double(self) -> "Module":
        return self.to(np.float64)

    def half(self) -> "Module":
        return self.to(np.float16)

    # -- state ----------------------------------------------------------------------------------------
    def _state_items(self):
        """(dotted name, tensor) for parameters and persistent buffers, module by module."""
        for prefix, module in self.named_modules(remove_duplicate=False):
            lead = prefix + "." if prefix else ""
            for name, p in module._parameters.items():
                if p is not None:
                    yield lead + name, p
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent_buffers:
                    yield lead + name, b

    def state_dict(self, keep_vars: bool = False) -> "OrderedDict[str, Tensor]":
        """Ordered name -> tensor for every parameter and persistent buffer.

        The tensors are detached and share memory with the module (copy them, or ``nn.save``
        them, to keep a snapshot); ``keep_vars=True`` returns the Parameters themselves.
        """
        out: OrderedDict = OrderedDict()
        for name, t in self._state_items():
            if name not in out:
                out[name] = t if keep_vars else t.detach()
        return out

    def load_state_dict(self, state_dict, strict: bool = True) -> _IncompatibleKeys:
        """Copy ``state_dict``'s values into this module's parameters and buffers, in place.

        Everything is validated before anything is copied: missing and unexpected keys (unless
        ``strict=False``), mis-shaped entries (always) and values that are not tensors raise one
        ``ValueError`` listing every problem, and the module is left unchanged. Values are cast to
        each parameter's dtype and moved to its device (foreign tensors such as torch's are read
        through DLPack: a torch ``state_dict()`` loads as is); the Parameter objects stay the same, so an
        optimizer built before the load keeps working. Returns ``(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"load_state_dict expects a mapping name -> tensor, got {type(state_dict).__name__}")
        own = OrderedDict(self._state_items())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict.keys() if k not in own]
        problems = []
        if strict:
            if missing:
                problems.append("missing keys: " + ", ".join(repr(k) for k in missing))
            if unexpected:
                problems.append("unexpected keys: " + ", ".join(repr(k) for k in unexpected))
        sources = {}
        for name, target in own.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            if is_foreign_array(value):  # torch, JAX, CuPy...: a view through DLPack, copied below
                try:
                    value = foreign_to_tensor(value, "load_state_dict")
                except (TypeError, RuntimeError, BufferError, ValueError) as exc:
                    problems.append(f"{name!r}: {exc}")
                    continue
            arr_shape, why = _source_shape(value)
            if why is not None:
                problems.append(f"{name!r}: {why}")
                continue
            if arr_shape != target.shape:
                problems.append(
                    f"{name!r}: shape mismatch, the state dict has {arr_shape} but the module expects {target.shape}"
                )
                continue
            sources[name] = value
        if problems:
            raise ValueError(
                f"error(s) in loading state_dict for {type(self).__name__} (nothing was loaded):\n  "
                + "\n  ".join(problems)
            )
        with ag.no_grad():
            for name, value in sources.items():
                target = own[name]
                src = value if isinstance(value, Tensor) else ag.tensor(value, device="cpu")
                src = src.detach()
                if src.device is not target.device:
                    src = src.to(target.device)
                if src.dtype != target.dtype:
                    src = src.astype(target.dtype)
                target.copy_(src)
        return _IncompatibleKeys(missing, unexpected)

    # -- printing -------------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """Settings shown inside the parentheses of ``repr``; layers override it."""
        return ""

    def __repr__(self) -> str:
        lines = []
        extra = self.extra_repr()
        if extra:
            lines.extend(extra.split("\n"))
        for name, child in self._modules.items():
            text = repr(child).replace("\n", "\n  ")
            lines.append(f"({name}): {text}")
        if not lines:
            return f"{type(self).__name__}()"
        if len(lines) == 1 and not self._modules:
            return f"{type(self).__name__}({lines[0]})"
        return type(self).__name__ + "(\n  " + "\n  ".join(lines) + "\n)"


def _parse_to_args(args, kwargs):
    device = kwargs.pop("device", None)
    dtype = kwargs.pop("dtype", None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, Tensor):
            device, dtype = a.device, a.dtype
        elif isinstance(a, (str, Device)) and not is_dtype_name(a):  # as Tensor.to reads its arguments
            device = a
        else:
            dtype = a
    return (as_device(device) if device is not None else None), (np.dtype(dtype) if dtype is not None else None)


def _converted(t: Tensor, device, dtype) -> Tensor:
    out = t
    if dtype is not None and out.dtype.kind in "fc" and out.dtype != dtype:
        out = out.astype(dtype)
    if device is not None and out.device is not device:
        out = out.to(device)
    return out


def _move_in_place(t: Tensor, device, dtype) -> None:
    new = _converted(t.detach(), device, dtype)
    if new.data is t.data:
        return
    t.data = new.data
    t.device = new.device
    # Graphs that saved this tensor must not run on its new values.
    t._bump("Module.to")


def _source_shape(value):
    """(shape, None) of a state-dict value, or (None, reason) if it cannot be loaded."""
    if isinstance(value, Tensor):
        return value.shape, None
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            return None, f"holds an array of dtype {value.dtype}, not numbers"
        return tuple(value.shape), None
    return None, f"expected a Tensor, a numpy array or a DLPack-capable tensor (torch, JAX, CuPy), got {foreign_name(value)}"
