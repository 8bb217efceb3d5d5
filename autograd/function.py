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

from .grad_mode import state
from .tensor import Tensor, _make

__all__ = ["Function", "Context"]

_seq = itertools.count()


class Context:
    """Per-call context of a Function and, once recorded, the graph node (``tensor.grad_fn``)."""

    __slots__ = (
        "fn", "xp", "next_edges", "seq", "n_out", "_saved", "_saved_versions", "_out", "_out_versions",
        "_raw", "_released", "_retained", "_stack", "_out_meta", "__dict__", "__weakref__",
    )

    # -- used inside forward ----------------------------------------------------------------
    def save_for_backward(self, *tensors) -> None:
        """Keep these tensors (inputs of the op) for backward; in-place changes to them are caught.

        Non-Tensor values (Python numbers, constant arrays, None) may be saved too and come back as is.
        """
        self._saved = tensors
        self._saved_versions = tuple(t._version[0] if isinstance(t, Tensor) else 0 for t in tensors)

    # -- used inside backward ---------------------------------------------------------------
    @property
    def saved_tensors(self) -> tuple:
        """The tensors given to ``save_for_backward``, checked for in-place modification."""
        saved = self._checked_saved()
        return saved

    @property
    def saved(self) -> tuple:
        """Saved values as the backward should use them: arrays on the raw path, else Tensors."""
        saved = self._checked_saved()
        if self._raw:
            return tuple(t.data if isinstance(t, Tensor) else t for t in saved)
        return saved

    def _checked_saved(self) -> tuple:
        saved = self._saved
        if saved is None:
            if self._released:
                raise _freed_error(self)
            return ()
        for t, v in zip(saved, self._saved_versions):
            if isinstance(t, Tensor) and t._version[0] != v:
                raise _modified_error(self, t.data, t._version, v)
        return saved

    @property
    def output(self):
        """The op's (first) output, for ops with ``saves_output = True``: an array on the raw
        path, else a Tensor whose grad_fn is this node, so its use stays differentiable."""
        if self._out is None:
            raise _freed_error(self)
        data = self._out[0]
        counter, version = self._out_versions[0]
        if counter[0] != version:
            raise _modified_error(self, data, counter, version)
        if self._raw:
            return data
        out = _make(data, self._saved_device(), self, 0, True)
        out._version = counter
        return out

    def _saved_device(self):
        return self._out_meta[0]

    @property
    def ops(self):
        """The namespace a raw backward is written in: the array module on the raw path,
        ``autograd`` itself (its differentiable functions) under ``create_graph=True``."""
        return self.xp if self._raw else sys.modules["autograd"]

    @property
    def needs_input_grad(self) -> tuple:
        """One bool per argument of ``apply``: whether that input needs a gradient (all False
        when no graph is recorded)."""
        return tuple(e is not None for e in self.next_edges)

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

    def release(self) -> None:
        """Drop everything backward needed; a second backward through this node then raises."""
        self._saved = None
        self._out = None
        self._released = True
        self.__dict__.clear()


def _freed_error(ctx) -> RuntimeError:
    return RuntimeError(
        f"Trying to backward through the graph a second time: the buffers saved by {ctx.fn.__name__} "
        "were freed by the first backward(). Pass retain_graph=True to the first backward() (or "
        "ag.grad) if you really need a second pass, or recompute the forward pass if this graph "
        "belongs to a previous step."
    )


def _modified_error(ctx, data, counter, saved_version) -> RuntimeError:
    where = f" by {counter[1]}" if counter[1] else ""
    return RuntimeError(
        f"one of the tensors saved for the backward of {ctx.fn.__name__} (shape {tuple(data.shape)}, "
        f"dtype {data.dtype}) was modified by an in-place operation{where}: it was at version "
        f"{saved_version} when saved and is now at version {counter[0]}. Use the out-of-place form "
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
        needs_graph = False
        for a in args:
            if isinstance(a, Tensor):
                if dev is None:
                    dev = a.device
                elif a.device is not dev:
                    raise _device_mismatch(cls, args)
                if a._requires_grad:
                    needs_graph = True
        if dev is None:
            raise TypeError(f"{cls.__name__}.apply needs at least one Tensor argument")
        st = state
        ctx = Context()
        ctx.fn = cls
        ctx.xp = dev.backend.xp
        ctx._saved = None
        ctx._raw = True
        if needs_graph and st.grad_enabled and cls.differentiable:
            edges = []
            for a in args:
                if isinstance(a, Tensor) and a._requires_grad:
                    fn = a.grad_fn
                    data = a.data
                    edges.append((a if fn is None else fn, a._out_idx, data.shape, data.dtype))
                else:
                    edges.append(None)
            ctx.next_edges = edges
        else:
            needs_graph = False
            ctx.next_edges = _NO_EDGES
        if cls.raw_backward:
            out = cls.forward(ctx, *args)
        else:
            if not needs_graph:
                ctx.next_edges = (None,) * len(args)  # needs_input_grad: all False, one per argument
            # User forwards may use Tensor ops; they must not record a graph of their own.
            prev = st.grad_enabled
            st.grad_enabled = False
            try:
                out = cls.forward(ctx, *args)
            finally:
                st.grad_enabled = prev
        if type(out) is tuple or type(out) is list:
            outs = out
            single = False
        else:
            outs = (out,)
            single = True
        if cls.changes_device:
            dev = ctx.out_device
        if not needs_graph:
            res = tuple(_make(_as_array(o, dev, cls), dev, None, 0, False) for o in outs)
            if st.anomaly:
                _check_finite_forward(cls, res, None)
            return res[0] if single else res
        ctx.seq = next(_seq)
        ctx.n_out = len(outs)
        ctx._released = False
        ctx._retained = None
        ctx._stack = traceback.extract_stack()[:-2] if st.anomaly else None
        res = []
        for i, o in enumerate(outs):
            data = _as_array(o, dev, cls)
            if data.dtype.kind == "f":
                res.append(_make(data, dev, ctx, i, True))
            else:  # integer/bool outputs carry no gradient and must not keep the graph alive
                res.append(_make(data, dev, None, 0, False))
        ctx._out_meta = (dev,) if single else (dev,) + tuple((r.data.shape, r.data.dtype) for r in res)
        if cls.saves_output:
            ctx._out = tuple(r.data for r in res)
            ctx._out_versions = tuple((r._version, r._version[0]) for r in res)
        else:
            ctx._out = None
        if st.anomaly:
            _check_finite_forward(cls, res, ctx)
        return res[0] if single else tuple(res)


_NO_EDGES: tuple = ()


def _as_array(o, dev, cls):
    backend = dev.backend
    if type(o) is backend.array_type:
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
