"""The op registry: every op is declared in one block of one op module.

A block holds the op's ``Function`` class, its public function and one ``register`` call::

    class Tan(Function):
        raw_backward = True
        saves_output = True

        @staticmethod
        def forward(ctx, a):
            return ctx.xp.tan(a.data)

        @staticmethod
        def backward(ctx, g):
            return g * (1 + ctx.ops.square(ctx.output))


    tan = register(unary(Tan, "tan"))

``register(fn, method=..., reflected=...)`` (also a decorator, ``@register(method=False)``)
makes ``fn`` a public op under its ``__name__``: the name joins its module's ``__all__`` and
``autograd.ops.__all__`` (hence ``autograd``'s), and ``fn`` becomes the Tensor members that
``method`` and ``reflected`` name. The very object given is stored and installed, never a
wrapper: ``ag.mul(x, y)``, ``x.mul(y)`` and ``x * y`` all run the one factory-built function.

Tensor members that are not the op function itself (``t.reshape(*shape)``, the ``.T`` property,
``t.any()``) are declared with ``tensor_method(name, impl)`` in the block of the op they belong
to. ``install(Tensor)`` (called by ``autograd`` once the op modules are imported) sets them all.
"""
from __future__ import annotations

import sys

__all__ = ["register", "tensor_method", "exported", "methods", "install"]

# name -> op function, in declaration order (the order of autograd.ops.__all__)
_PUBLIC: dict = {}
# Tensor attribute name -> (declaring module, function or property)
_METHODS: dict = {}


def register(fn=None, *, method=True, reflected=None):
    """Declare ``fn`` a public op; returns ``fn`` itself.

    ``method``: True for a Tensor method of the op's name, False for none, or a name or tuple
    of names (operators included): ``method=("add", "__add__")``.
    ``reflected``: the reflected operator (``"__radd__"``): ``other + t`` calls ``fn(other, t)``.
    Without ``fn``, returns a decorator taking these options.
    """
    if fn is None:
        return lambda f: register(f, method=method, reflected=reflected)
    name = fn.__name__
    module = fn.__module__
    _claim(_PUBLIC_OWNERS, name, module, "op")
    _PUBLIC[name] = fn
    namespace = sys.modules[module].__dict__
    exported_here = namespace.setdefault("__all__", [])
    if name not in exported_here:
        exported_here.append(name)
    if method is True:
        names: tuple = (name,)
    elif not method:
        names = ()
    elif isinstance(method, str):
        names = (method,)
    else:
        names = tuple(method)
    for m in names:
        _add_method(m, fn, module)
    if reflected:
        _add_method(reflected, _reflected(fn), module)
    return fn


def tensor_method(name: str, impl):
    """Declare ``Tensor.<name> = impl`` (a function or a property) next to the op it belongs to;
    returns ``impl``."""
    fget = getattr(impl, "fget", impl)
    _add_method(name, impl, getattr(fget, "__module__", None))
    return impl


def exported() -> dict:
    """The public ops, name -> function, in declaration order."""
    return dict(_PUBLIC)


def methods() -> dict:
    """The Tensor members the op modules declared, name -> function or property."""
    return {name: impl for name, (_, impl) in _METHODS.items()}


def install(cls) -> None:
    """Set every declared member on the tensor class ``cls``."""
    for name, (_, impl) in _METHODS.items():
        setattr(cls, name, impl)


# -- internals ----------------------------------------------------------------------------------------

_PUBLIC_OWNERS: dict = {}


def _claim(owners: dict, name: str, module, what: str) -> None:
    # Declaring a name twice is a mistake unless it is the same module again (a reload).
    prev = owners.get(name)
    if prev is not None and prev != module:
        raise ValueError(f"{what} {name!r} is declared by both {prev} and {module}")
    owners[name] = module


def _add_method(name: str, impl, module) -> None:
    prev = _METHODS.get(name)
    if prev is not None and prev[0] != module:
        raise ValueError(f"Tensor.{name} is declared by both {prev[0]} and {module}")
    _METHODS[name] = (module, impl)


def _reflected(op):
    """``other <op> tensor``: Python calls the tensor's method with the operands swapped."""

    def method(self, other):
        return op(other, self)

    method.__name__ = method.__qualname__ = f"r{op.__name__}"
    method.__module__ = op.__module__
    return method
