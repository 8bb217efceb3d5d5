"""``Function``: the one mechanism every op, built-in or user-defined, is written with.

An op is a subclass with ``forward(ctx, *inputs)`` and ``backward(ctx, *grads)`` side by side
(see the README's ``Cube``). ``Cube.apply(x)`` runs forward and, when grad mode is on and an
input requires grad, records the ``ctx`` as a node of the graph. The ctx *is* the node
(``y.grad_fn``): it holds its inputs' edges (never the input tensors themselves, so an
activation nobody saved is freed at once), the values saved for backward, and a sequence
number that orders the reverse traversal.

Built-in ops set ``raw_backward = True``: their backward is written against ``ctx.ops`` and
``ctx.saved``, which are arrays and the array module when no graph of the gradient is needed,
and Tensors and ``autograd``'s differentiable ops under ``create_graph=True``: one formula for
the fast path and every higher order. Everything a backward reads goes through
``save_for_backward`` (or ``saves_output``), where in-place changes are caught. The one- and
two-argument built-ins enter through ``fastpath.py`` instead of ``apply``.
"""
from __future__ import annotations

import itertools
import sys
import weakref

from . import anomaly
from .grad_mode import ANOMALY, GRAD, mode as _mode
from .tensor import Tensor, _make
from .versioning import clock, counter, is_stale, modified_error

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
    # engine before each backward; reading an unwritten one means "nothing". Recording writes
    # n_out and _retained ({output index: weakref} of outputs that called retain_grad(), or None).
    _stack = None  # forward call stack, recorded only under detect_anomaly
    _out_meta = None  # ((shape, dtype), ...) of each output, for nodes with several outputs

    # -- used inside forward ----------------------------------------------------------------
    def save_for_backward(self, *values) -> None:
        """Keep these values for backward; in-place changes to saved Tensors are caught.

        Save inputs as the Tensors they are (so their version counters are checked). Other
        values (numbers, None, arrays the op computed itself) come back as they were given.
        """
        self._saved = values
        self._saved_at = clock[0]

    # -- used inside backward ---------------------------------------------------------------
    @property
    def saved_tensors(self) -> tuple:
        """The values given to ``save_for_backward``, checked for in-place modification."""
        return self._checked_saved()

    @property
    def saved(self):
        """Saved values as the backward should use them: arrays on the raw path, else Tensors."""
        try:
            saved = self._saved
        except AttributeError:  # save_for_backward was never called
            return ()
        if saved is None or clock[0] != self._saved_at:  # freed, or something changed in place
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
        try:
            saved = self._saved
        except AttributeError:
            return ()
        if saved is None:
            raise freed_error(self)
        at = self._saved_at
        if clock[0] != at:  # some tensor changed in place after the save: was it one of ours?
            for t in saved:
                if isinstance(t, Tensor) and is_stale(t._version, at):
                    raise modified_error(self, t.data, t._version)
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
            raise freed_error(self)
        version = self._out_version
        if version[2] > self._saved_at:  # is_stale(), inlined: every tanh/exp/relu backward reads this
            raise modified_error(self, out, version)
        if self._raw:
            return out
        res = _make(out, self.device, self, 0, True)
        res._version = version
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
            raise freed_error(self)
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


def freed_error(ctx) -> RuntimeError:
    return RuntimeError(
        f"Trying to backward through the graph a second time: the buffers saved by {ctx.fn.__name__} "
        "were freed by the first backward(). Pass retain_graph=True to the first backward() (or "
        "ag.grad) if you really need a second pass, or recompute the forward pass if this graph "
        "belongs to a previous step."
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
                    raise device_mismatch(cls, args)
                if a._requires_grad:
                    wants_grad = True
                    node = a.grad_fn  # edge(a), inlined
                    edges.append(a if node is None else node if node.n_out == 1 else (node, a._out_idx))
                    continue
            edges.append(None)
        if dev is None:
            raise TypeError(f"{cls.__name__}.apply needs at least one Tensor argument")
        flags = _mode.get()
        ctx = _new(Context)
        ctx.fn = cls
        ctx.xp = (dev._backend or dev.backend).xp
        record = wants_grad and flags & GRAD and cls.differentiable
        ctx.next_edges = tuple(edges) if record else (None,) * len(args)
        if cls.raw_backward:
            out = cls.forward(ctx, *args)
        else:
            # User forwards may use Tensor ops; they must not record a graph of their own.
            token = _mode.set(flags & ~GRAD)
            try:
                out = cls.forward(ctx, *args)
            finally:
                _mode.reset(token)
        if cls.changes_device:
            dev = ctx.out_device
        if type(out) is tuple or type(out) is list:
            return _outputs(cls, ctx, out, dev, flags, record)
        return output(cls, ctx, out, dev, flags, record)


def edge(t):
    """The graph edge (see Context) to ``t``, a Tensor that requires grad: the leaf itself, its
    node, or (node, output index). ``apply`` and the fast paths inline this expression."""
    node = t.grad_fn
    return t if node is None else node if node.n_out == 1 else (node, t._out_idx)


def output(cls, ctx, out, dev, flags, record):
    """The result Tensor around the forward's array ``out``; when recording, ``ctx`` becomes
    its node. This is where every node is made (``_outputs`` adds what several outputs need)."""
    if type(out) is not dev._backend.array_type:
        out = _as_array(out, dev, cls)
    res = _new(Tensor)
    res.data = out
    res.device = dev
    if record:
        ctx.device = dev
        ctx.seq = next(_seq)
        ctx.n_out = 1
        ctx._retained = None
        ctx.out_shape = out.shape
        ctx.out_dtype = dtype = out.dtype
        if dtype.kind == "f":  # integer/bool outputs carry no gradient and keep no graph alive
            res.grad_fn = ctx
            res._requires_grad = True
            if cls.saves_output:
                ctx._out = out
                ctx._out_version = res._version = [0, None, 0]  # res's own counter, shared with ctx
                ctx._saved_at = clock[0]
            if flags & ANOMALY:
                ctx._stack = anomaly.call_stack()
                anomaly.check_forward(cls, (res,), ctx)
            return res
    res.grad_fn = None
    res._requires_grad = False
    if flags & ANOMALY:
        anomaly.check_forward(cls, (res,), None)
    return res


def _outputs(cls, ctx, outs, dev, flags, record):
    """``output`` for ops with several outputs (split, user Functions returning tuples)."""
    datas = [_as_array(o, dev, cls) for o in outs]
    if not datas:
        return ()
    record = record and any(d.dtype.kind == "f" for d in datas)
    first = output(cls, ctx, datas[0], dev, flags & ~ANOMALY, record)
    res = (first,) + tuple(_make(d, dev, ctx, i, True) if record and d.dtype.kind == "f" else _make(d, dev, None, 0, False)
                           for i, d in enumerate(datas[1:], 1))
    if record:
        ctx.n_out = len(res)
        ctx._out_meta = tuple((d.shape, d.dtype) for d in datas)
        if cls.saves_output and first.grad_fn is None:  # a non-float first output is saved too
            ctx._out, ctx._out_version, ctx._saved_at = datas[0], counter(first), clock[0]
        if flags & ANOMALY:
            ctx._stack = anomaly.call_stack()
    if flags & ANOMALY:
        anomaly.check_forward(cls, res, ctx if record else None)
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


def device_mismatch(cls, args) -> RuntimeError:
    devices = [f"argument {i} on {a.device}" for i, a in enumerate(args) if isinstance(a, Tensor)]
    return RuntimeError(
        f"{cls.__name__}: expected all tensors on the same device, but found " + ", ".join(devices)
        + ". Nothing is copied implicitly: move them first, e.g. `x.to('cuda')` or `x.cpu()`."
    )
