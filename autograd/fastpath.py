"""The public functions of the one- and two-argument built-in ops (the arithmetic operators,
unary math), made by ``unary``/``binary``: ``cls.apply`` specialised to the op, one call deep,
without ``apply``'s argument loop and ``*args`` packing, and skipping the class flags that hold
for every such op (raw backward, one array output, same device, differentiable). These are the
hottest lines of the engine; everything else about recording a node is in ``function.output``.
"""
from __future__ import annotations

from .function import Context, device_mismatch, edge, output
from .grad_mode import GRAD, mode as _mode
from .tensor import Tensor

__all__ = ["unary", "binary"]

_new = object.__new__


def unary(cls, name: str, doc: str | None = None):
    """``name(x)``: ``cls.apply(x)`` for a built-in op of one argument (a value becomes a Tensor)."""

    def op(x):
        if not isinstance(x, Tensor):
            x = Tensor(x)
        dev = x.device
        flags = _mode.get()
        ctx = _new(Context)
        ctx.fn = cls
        ctx.xp = (dev._backend or dev.backend).xp
        if x._requires_grad and flags & GRAD:
            node = x.grad_fn  # edge(x), inlined
            ctx.next_edges = (x if node is None else node if node.n_out == 1 else (node, x._out_idx)),
            return output(cls, ctx, cls.forward(ctx, x), dev, flags, True)
        return output(cls, ctx, cls.forward(ctx, x), dev, flags, False)

    return _named(op, cls, name, doc)


def binary(cls, name: str, coerce, doc: str | None = None):
    """``name(a, b)``: ``cls.apply(a, b)`` for a built-in op of two arguments. A non-Tensor
    operand other than a Python float or int goes through ``coerce(tensor, value, name)``, which
    returns it as an array on the tensor's device or raises."""

    def op(a, b):
        if isinstance(a, Tensor):
            dev = a.device
            a_grad = a._requires_grad
            if isinstance(b, Tensor):
                if b.device is not dev:
                    raise device_mismatch(cls, (a, b))
                b_grad = b._requires_grad
            else:
                if type(b) is not float and type(b) is not int:
                    b = coerce(a, b, name)
                b_grad = False
        elif isinstance(b, Tensor):
            if type(a) is not float and type(a) is not int:
                a = coerce(b, a, name)
            dev = b.device
            a_grad = False
            b_grad = b._requires_grad
        else:  # two plain values: the first becomes the Tensor
            return op(Tensor(a), b)
        flags = _mode.get()
        ctx = _new(Context)
        ctx.fn = cls
        ctx.xp = (dev._backend or dev.backend).xp
        if (a_grad or b_grad) and flags & GRAD:
            ctx.next_edges = (edge(a) if a_grad else None, edge(b) if b_grad else None)
            return output(cls, ctx, cls.forward(ctx, a, b), dev, flags, True)
        return output(cls, ctx, cls.forward(ctx, a, b), dev, flags, False)

    return _named(op, cls, name, doc)


def _named(op, cls, name, doc):
    op.__name__ = op.__qualname__ = name
    op.__module__ = cls.__module__
    op.__doc__ = doc
    return op
