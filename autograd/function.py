"""``Function``: the one mechanism every op, built-in or user-defined, is written with.

An op is a subclass with two static methods side by side::

    class Cube(ag.Function):
        @staticmethod
        def forward(ctx, x):              # x: Tensor; compute on arrays (x.data, ctx.xp)
            ctx.save_for_backward(x)
            return x.data ** 3
        @staticmethod
        def backward(ctx, grad):          # grad: Tensor; one gradient per input
            (x,) = ctx.saved_tensors
            return 3 * x * x * grad

``Cube.apply(x)`` runs forward and, when grad mode is on and an input requires grad, records
the ``ctx`` as a node of the graph. The ctx *is* the node (``y.grad_fn``): it holds its inputs'
edges (never the input tensors themselves, so an activation nobody saved is freed at once), the
tensors saved for backward, and a sequence number that orders the reverse traversal.

The operators and unary math functions are made by ``unary``/``binary`` below: ``cls.apply``
specialised to one or two arguments, the hottest path of the engine.

Built-in ops set ``raw_backward = True``: their backward is written against ``ctx.ops`` and
``ctx.saved``, which are NumPy-like arrays and the array module when no graph of the gradient
is needed, and Tensors and ``autograd``'s differentiable ops under ``create_graph=True``. The
same formula thus serves the fast path and every higher order.
"""
from __future__ import annotations

import itertools
import os
import sys
import traceback
import weakref

from .grad_mode import ANOMALY, GRAD, mode as _mode
from .tensor import Tensor, _clock, _counter, _make

_new = object.__new__

__all__ = ["Function", "Context"]

_seq = itertools.count()


class Context:
    """Per-call context of a Function and, once recorded, the graph node (``tensor.grad_fn``)."""

    # Edges (``next_edges``, one per apply() argument): None when that input needs no gradient,
    # the leaf Tensor itself, the producing node (its output 0), or (node, index) for a node
    # with several outputs. No tuple per edge in the common case: this is the hot path.
    # ``next_edges`` becomes None once backward has released the node.
    __slots__ = (
        "fn", "xp", "device", "next_edges", "seq", "out_shape", "out_dtype", "_saved", "_saved_at",
        "_out", "_out_version", "_raw", "n_out", "_retained", "__dict__", "__weakref__",
    )
    # Slots are written only when used: _saved by save_for_backward, _out (the first output's
    # array) and _out_version (its version counter) by ops that save their output, _raw by the
    # engine before each backward; reading an unwritten one means "nothing" (see _checked_saved).
    # Recording writes n_out (number of outputs) and _retained ({output index: weakref} of the
    # outputs that called retain_grad(), or None): the engine reads both for every node.
    # Rarely set, so class-level defaults rather than a write per op.
    _stack = None  # forward call stack, recorded only under detect_anomaly
    _out_meta = None  # ((shape, dtype), ...) of each output, for nodes with several outputs

    # -- used inside forward ----------------------------------------------------------------
    def save_for_backward(self, *tensors) -> None:
        """Keep these tensors (inputs of the op) for backward; in-place changes to them are caught.

        Non-Tensor values (Python numbers, constant arrays, None) may be saved too and come back as is.
        """
        self._saved = tensors
        self._saved_at = _clock[0]

    # -- used inside backward ---------------------------------------------------------------
    @property
    def saved_tensors(self) -> tuple:
        """The tensors given to ``save_for_backward``, checked for in-place modification."""
        return self._checked_saved()

    @property
    def saved(self):
        """Saved values as the backward should use them: arrays on the raw path, else Tensors."""
        # _checked_saved(), inlined: every backward of a built-in op reads this.
        try:
            saved = self._saved
        except AttributeError:  # save_for_backward was never called
            return ()
        if saved is None or _clock[0] != self._saved_at:  # freed, or something changed in place
            saved = self._checked_saved()
        if not self._raw:
            return saved
        n = len(saved)  # one or two values are the common cases: no loop for them
        if n == 1:
            (a,) = saved
            return (a.data if isinstance(a, Tensor) else a),
        if n == 2:
            a, b = saved
            return (a.data if isinstance(a, Tensor) else a), (b.data if isinstance(b, Tensor) else b)
        return tuple([t.data if isinstance(t, Tensor) else t for t in saved])

    def _checked_saved(self) -> tuple:
        """The saved values, after checking that none was modified in place since it was saved."""
        try:
            saved = self._saved
        except AttributeError:  # save_for_backward was never called
            return ()
        if saved is None:
            raise _freed_error(self)
        at = self._saved_at
        if _clock[0] != at:  # some tensor changed in place after the save: was it one of ours?
            for t in saved:
                if isinstance(t, Tensor) and t._version[2] > at:
                    raise _modified_error(self, t.data, t._version)
        return saved

    @property
    def output(self):
        """The op's (first) output, for ops with ``saves_output = True``: an array on the raw
        path, else a Tensor whose grad_fn is this node, so its use stays differentiable."""
        try:
            out = self._out
        except AttributeError:  # the op did not set saves_output
            out = None
        if out is None:
            raise _freed_error(self)
        counter = self._out_version
        if counter[2] > self._saved_at:
            raise _modified_error(self, out, counter)
        if self._raw:
            return out
        res = _make(out, self.device, self, 0, True)
        res._version = counter
        return res

    @property
    def ops(self):
        """The namespace a raw backward is written in: the array module on the raw path,
        ``autograd`` itself (its differentiable functions) under ``create_graph=True``."""
        return self.xp if self._raw else sys.modules["xpgrad.autograd"]

    @property
    def needs_input_grad(self) -> tuple:
        """One bool per argument of ``apply``: whether that input needs a gradient (all False
        when no graph is recorded)."""
        edges = self.next_edges
        if edges is None:
            raise _freed_error(self)
        return tuple(e is not None for e in edges)

    @property
    def name(self) -> str:
        return self.fn.__name__

    def __repr__(self) -> str:
        return f"<{self.fn.__name__}Backward>"

    def register_retained(self, idx: int, tensor) -> None:
        if self._retained is None:
            self._retained = {}
        self._retained[idx] = weakref.ref(tensor)


def _freed_error(ctx) -> RuntimeError:
    return RuntimeError(
        f"Trying to backward through the graph a second time: the buffers saved by {ctx.fn.__name__} "
        "were freed by the first backward(). Pass retain_graph=True to the first backward() (or "
        "ag.grad) if you really need a second pass, or recompute the forward pass if this graph "
        "belongs to a previous step."
    )


def _modified_error(ctx, data, counter) -> RuntimeError:
    where = f" ({counter[1]})" if counter[1] else ""
    return RuntimeError(
        f"one of the tensors saved for the backward of {ctx.fn.__name__} (shape {tuple(data.shape)}, "
        f"dtype {data.dtype}) was modified by an in-place operation{where} after it was saved "
        f"(it is now at version {counter[0]}). Use the out-of-place form "
        "(e.g. `x = x * 2` instead of `x.mul_(2)`), or clone the tensor before changing it."
    )


class _FunctionMeta(type):
    def __repr__(cls):
        return f"<Function {cls.__name__}>"


class Function(metaclass=_FunctionMeta):
    """Base class of differentiable operations; subclass it and call ``apply``."""

    #: False for ops without gradient (comparisons, argmax): they never record a node.
    differentiable = True
    #: Built-in ops: backward works on raw arrays through ``ctx.ops``/``ctx.saved``.
    raw_backward = False
    #: Keep the forward output for ``ctx.output`` (ops whose derivative uses it: exp, tanh...).
    saves_output = False
    #: Device moves set ``ctx.out_device`` in forward; their outputs live there.
    changes_device = False

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError("a Function subclass must define forward(ctx, *inputs)")

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError("this Function defines no backward(ctx, *grads)")

    @classmethod
    def apply(cls, *args):
        dev = None
        wants_grad = False
        edges = []  # one per argument (see Context), collected while the arguments are checked
        for a in args:
            if isinstance(a, Tensor):
                d = a.device
                if dev is None:
                    dev = d
                elif d is not dev:
                    raise _device_mismatch(cls, args)
                if a._requires_grad:
                    wants_grad = True
                    node = a.grad_fn  # _edge(a), inlined
                    edges.append(a if node is None else node if node.n_out == 1 else (node, a._out_idx))
                    continue
            edges.append(None)
        if dev is None:
            raise TypeError(f"{cls.__name__}.apply needs at least one Tensor argument")
        backend = dev._backend or dev.backend
        flags = _mode.get()
        ctx = _new(Context)
        ctx.fn = cls
        ctx.xp = backend.xp
        record = wants_grad and flags & GRAD and cls.differentiable
        if record:
            ctx.next_edges = tuple(edges)
        if cls.raw_backward:
            out = cls.forward(ctx, *args)
        else:
            if not record:
                ctx.next_edges = (None,) * len(args)  # needs_input_grad: all False, one per argument
            # User forwards may use Tensor ops; they must not record a graph of their own.
            token = _mode.set(flags & ~GRAD)
            try:
                out = cls.forward(ctx, *args)
            finally:
                _mode.reset(token)
        if cls.changes_device:
            dev = ctx.out_device
            backend = dev.backend
        if type(out) is tuple or type(out) is list:
            return _wrap_outputs(cls, ctx, out, dev, record, flags & ANOMALY)
        return _output(cls, ctx, out, dev, flags, record)


# The public functions of the one- and two-argument built-in ops (the arithmetic operators,
# unary math) are made by these factories: ``cls.apply`` specialised to the op, one call deep,
# without the argument loop and *args packing, and skipping the class flags that hold for every
# such op (raw backward, one array output, same device, differentiable).

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
            node = x.grad_fn  # _edge(x), inlined
            ctx.next_edges = (x if node is None else node if node.n_out == 1 else (node, x._out_idx)),
            return _output(cls, ctx, cls.forward(ctx, x), dev, flags, True)
        return _output(cls, ctx, cls.forward(ctx, x), dev, flags, False)

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
                    raise _device_mismatch(cls, (a, b))
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
            ctx.next_edges = (_edge(a) if a_grad else None, _edge(b) if b_grad else None)
            return _output(cls, ctx, cls.forward(ctx, a, b), dev, flags, True)
        return _output(cls, ctx, cls.forward(ctx, a, b), dev, flags, False)

    return _named(op, cls, name, doc)


def _named(op, cls, name, doc):
    op.__name__ = op.__qualname__ = name
    op.__module__ = cls.__module__
    op.__doc__ = doc
    return op


def _output(cls, ctx, out, dev, flags, record):
    """The result Tensor around the forward's array ``out``; when recording, ``ctx`` becomes its node."""
    if type(out) is not dev._backend.array_type:
        out = _as_array(out, dev, cls)
    res = _new(Tensor)
    res.data = out
    res.device = dev
    if record:
        dtype = out.dtype
        if dtype.kind == "f":  # integer/bool outputs carry no gradient and keep no graph alive
            res.grad_fn = ctx
            res._requires_grad = True
            ctx.device = dev
            ctx.seq = next(_seq)
            ctx.n_out = 1
            ctx._retained = None
            ctx.out_shape = out.shape
            ctx.out_dtype = dtype
            if cls.saves_output:
                ctx._out = out
                ctx._out_version = res._version = [0, None, 0]  # res's own counter, shared with ctx
                ctx._saved_at = _clock[0]
            if flags & ANOMALY:
                ctx._stack = traceback.extract_stack()[:-2]
                _check_finite_forward(cls, (res,), ctx)
            return res
    res.grad_fn = None
    res._requires_grad = False
    if flags & ANOMALY:
        _check_finite_forward(cls, (res,), None)
    return res


def _edge(t):
    """The graph edge (see Context) to ``t``, a Tensor that requires grad: the leaf itself, its
    node, or (node, output index). apply() and unary() inline this expression."""
    node = t.grad_fn
    return t if node is None else node if node.n_out == 1 else (node, t._out_idx)


def _wrap_outputs(cls, ctx, outs, dev, record, anomaly):
    """apply() for ops with several outputs (split, user Functions returning tuples)."""
    datas = [_as_array(o, dev, cls) for o in outs]
    if not record:
        res = tuple(_make(d, dev, None, 0, False) for d in datas)
    else:
        res = tuple(_make(d, dev, ctx, i, True) if d.dtype.kind == "f" else _make(d, dev, None, 0, False)
                    for i, d in enumerate(datas))
        ctx.device = dev
        ctx.seq = next(_seq)
        ctx.n_out = len(res)
        ctx._retained = None
        ctx.out_shape = datas[0].shape if datas else ()
        ctx.out_dtype = datas[0].dtype if datas else None
        ctx._out_meta = tuple((d.shape, d.dtype) for d in datas)
        if cls.saves_output:  # the first output, as ctx.output gives it
            ctx._out = datas[0]
            ctx._out_version = _counter(res[0])
            ctx._saved_at = _clock[0]
        if anomaly:
            ctx._stack = traceback.extract_stack()[:-2]
    if anomaly:
        _check_finite_forward(cls, res, ctx if record else None)
    return res


def _as_array(o, dev, cls):
    backend = dev.backend
    if isinstance(o, backend.array_type):
        return o
    if isinstance(o, Tensor):
        if o.device is not dev:
            raise RuntimeError(f"{cls.__name__}.forward returned a tensor on {o.device}, but its inputs are on {dev}")
        return o.data
    return backend.asarray(o)


def _device_mismatch(cls, args) -> RuntimeError:
    devices = [f"argument {i} on {a.device}" for i, a in enumerate(args) if isinstance(a, Tensor)]
    return RuntimeError(
        f"{cls.__name__}: expected all tensors on the same device, but found " + ", ".join(devices)
        + ". Nothing is copied implicitly: move them first, e.g. `x.to('cuda')` or `x.cpu()`."
    )


def _check_finite_forward(cls, outputs, ctx) -> None:
    for i, out in enumerate(outputs):
        data = out.data
        if data.dtype.kind in "fc" and not bool(out.device.backend.xp.isfinite(data).all()):
            where = _format_stack(ctx._stack if ctx is not None else traceback.extract_stack()[:-3])
            raise RuntimeError(
                f"detect_anomaly: the forward of {cls.__name__} produced NaN or inf in output {i} "
                f"(shape {tuple(data.shape)}).{where}"
            )


# xpgrad's own packages: their frames are skipped so anomaly messages point at the user's line.
_LIBRARY_DIRS = tuple(
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), name) + os.sep
    for name in ("autograd", "backends", "nn", "optim")
)


def _format_stack(stack) -> str:
    if not stack:
        return ""
    frames = [f for f in stack if not os.path.abspath(f.filename).startswith(_LIBRARY_DIRS)] or list(stack)
    last = frames[-1]
    return f" Its forward was called at {last.filename}:{last.lineno} ({last.line})."
