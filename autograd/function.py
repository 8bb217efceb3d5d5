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
        "_out", "_raw", "__dict__", "__weakref__",
    )
    # Slots are written only when used: _saved by save_for_backward, _out by ops that save
    # their output, _raw by the engine before each backward; reading an unwritten one means
    # "nothing" (see _saved_values).
    # Rarely set, so class-level defaults rather than a write per op.
    n_out = 1
    _retained = None  # {output index: weakref} of outputs that called retain_grad()
    _stack = None  # forward call stack, recorded only under detect_anomaly
    _out_meta = None  # ((shape, dtype), ...) of each output, for nodes with several outputs
    _out_versions = ()  # version counters of the outputs kept by ops with saves_output

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
        saved, at = self._saved_values()
        for t in saved:
            if isinstance(t, Tensor) and t._version[2] > at:
                raise _modified_error(self, t.data, t._version)
        return saved

    @property
    def saved(self):
        """Saved values as the backward should use them: arrays on the raw path, else Tensors."""
        try:
            saved = self._saved
        except AttributeError:  # save_for_backward was never called
            return ()
        if saved is None:
            raise _freed_error(self)
        at = self._saved_at
        raw = self._raw
        out = []
        for t in saved:
            if isinstance(t, Tensor):
                if t._version[2] > at:
                    raise _modified_error(self, t.data, t._version)
                out.append(t.data if raw else t)
            else:
                out.append(t)
        return out

    def _saved_values(self) -> tuple:
        """(saved values, clock when saved)."""
        try:
            saved = self._saved
        except AttributeError:  # save_for_backward was never called
            return (), 0
        if saved is None:
            raise _freed_error(self)
        return saved, self._saved_at

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
        data = out[0]
        counter = self._out_versions[0]
        if counter[2] > self._saved_at:
            raise _modified_error(self, data, counter)
        if self._raw:
            return data
        out = _make(data, self.device, self, 0, True)
        out._version = counter
        return out

    @property
    def ops(self):
        """The namespace a raw backward is written in: the array module on the raw path,
        ``autograd`` itself (its differentiable functions) under ``create_graph=True``."""
        return self.xp if self._raw else sys.modules["autograd"]

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
        import weakref

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
        for a in args:
            if isinstance(a, Tensor):
                d = a.device
                if dev is None:
                    dev = d
                elif d is not dev:
                    raise _device_mismatch(cls, args)
                if a._requires_grad:
                    wants_grad = True
        if dev is None:
            raise TypeError(f"{cls.__name__}.apply needs at least one Tensor argument")
        backend = dev._backend or dev.backend
        flags = _mode.get()
        ctx = _new(Context)
        ctx.fn = cls
        ctx.xp = backend.xp
        record = wants_grad and flags & GRAD and cls.differentiable
        if record:
            # One edge per argument (see Context); tuples built in one go for the common arities.
            if len(args) == 1:
                ctx.next_edges = (_edge(args[0]),)
            elif len(args) == 2:
                ctx.next_edges = (_edge(args[0]), _edge(args[1]))
            else:
                ctx.next_edges = tuple([_edge(a) for a in args])
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
        if type(out) is not backend.array_type:
            if type(out) is tuple or type(out) is list:
                return _wrap_outputs(cls, ctx, out, dev, record, flags & ANOMALY)
            out = _as_array(out, dev, cls)
        # _make(), inlined: one call less on the hottest path.
        res = _new(Tensor)
        res.data = out
        res.device = dev
        if record and out.dtype.kind == "f":
            res.grad_fn = ctx
            res._requires_grad = True
            ctx.device = dev
            ctx.seq = next(_seq)
            ctx.out_shape = out.shape
            ctx.out_dtype = out.dtype
            if cls.saves_output:
                ctx._out = (out,)
                ctx._out_versions = (_counter(res),)
                ctx._saved_at = _clock[0]
            if flags & ANOMALY:
                ctx._stack = traceback.extract_stack()[:-1]
        else:  # no graph; integer/bool outputs carry no gradient and keep no graph alive
            res.grad_fn = None
            res._requires_grad = False
            record = False
        if flags & ANOMALY:
            _check_finite_forward(cls, (res,), ctx if record else None)
        return res


def _edge(a):
    """The graph edge to argument ``a`` (see Context): None, a leaf Tensor, a node or (node, i)."""
    if isinstance(a, Tensor) and a._requires_grad:
        node = a.grad_fn
        if node is None:
            return a
        return node if node.n_out == 1 else (node, a._out_idx)
    return None


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
        ctx.out_shape = datas[0].shape if datas else ()
        ctx.out_dtype = datas[0].dtype if datas else None
        ctx._out_meta = tuple((d.shape, d.dtype) for d in datas)
        if cls.saves_output:
            ctx._out = tuple(datas)
            ctx._out_versions = tuple(_counter(r) for r in res)
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
