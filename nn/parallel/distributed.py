"""``DistributedDataParallel``: the same model on every rank, gradients averaged during backward.

How the gradients are exchanged (the reducer):

- Buckets are fixed when the model is wrapped: the trainable parameters in reverse registration
  order (roughly the order backward completes them), cut into buckets of at most
  ``bucket_cap_mb`` and of one dtype each. Every rank has the same buckets (the layout is checked).
- A post-accumulate-grad hook on each parameter marks it ready. Buckets are reduced strictly in
  bucket order on every rank: as soon as bucket ``k`` and all buckets before it are complete,
  bucket ``k`` is packed into one flat host array, summed over ranks in place, scaled by
  ``1 / world_size`` and handed back (each parameter's ``.grad`` becomes a view of the reduced
  flat array: no copy back).
- At the end of backward (a queued callback) every bucket not yet reduced is reduced, in order.
  A parameter that got no gradient in this backward on some rank (unused there) contributes zeros;
  each bucket also carries one counter per parameter (how many ranks had a gradient), so a
  parameter unused on every rank keeps ``.grad`` unchanged (``None`` after ``zero_grad()``) and the
  optimizer skips it, as it would in one process. No rank waits for a bucket another rank skips.
- The exchange is synchronous (in the backward's thread). With one process per core, MPICH moves
  a collective's data only inside MPI calls and the copy competes with the compute for the same
  core, so a communication thread hid nothing there; this keeps the code simple until a
  device backend (GPU compute, host idle) gives overlap something to hide behind.
"""
from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict

import numpy as np

from xpgrad import autograd as ag
from xpgrad.autograd import hooks as _hooks
from xpgrad.autograd import versioning
from xpgrad.autograd.tensor import _make
from xpgrad.nn.module import Module

__all__ = ["DistributedDataParallel", "check_same_layout", "broadcast_module", "broadcast_optimizer", "on_host"]


def _layout(module: Module) -> list:
    entries = [(name, "parameter", tuple(p.shape), p.dtype.str) for name, p in module.named_parameters()]
    entries += [(name, "buffer", tuple(b.shape), b.dtype.str) for name, b in module.named_buffers()]
    return entries


def check_same_layout(comm, module: Module, who: str) -> None:
    """Raise ValueError on every rank unless every rank's ``module`` has the same parameter and
    buffer names, kinds, shapes and dtypes (one small allgather when they agree)."""
    if comm.size == 1:
        return
    mine = _layout(module)
    digest = hashlib.sha256(repr(mine).encode()).hexdigest()
    digests = comm.allgather_object(digest)
    if all(d == digests[0] for d in digests):
        return
    layouts = comm.allgather_object(mine)
    ref = OrderedDict((e[0], e[1:]) for e in layouts[0])
    for r in range(1, len(layouts)):
        other = OrderedDict((e[0], e[1:]) for e in layouts[r])
        differ = [n for n in ref if other.get(n) != ref[n]] + [n for n in other if n not in ref]
        if not differ:
            if list(other) != list(ref):
                raise ValueError(
                    f"{who}: the model's entries are registered in a different order on rank {r} than on rank 0"
                )
            continue
        first = differ[0]

        def show(entry):
            return "missing" if entry is None else f"{entry[0]} of shape {entry[1]}, dtype {np.dtype(entry[2])}"

        raise ValueError(
            f"{who}: the model is not the same on every rank: entry {first!r} is {show(other.get(first))} on "
            f"rank {r} but {show(ref.get(first))} on rank 0 ({len(differ)} entries differ); build the same model "
            "on every rank"
        )


def on_host(t, fn) -> None:
    """Run the collective ``fn(array)`` on ``t``'s values: in place on a NumPy array, through a host
    copy (with ``t``'s backend) for arrays of other devices; ``t`` then holds the result."""
    data = t.data
    if type(data) is np.ndarray and data.flags.c_contiguous:
        fn(data)
    else:
        backend = t.device.backend
        host = np.array(backend.to_numpy(data), order="C", copy=True)
        fn(host)
        data[...] = backend.asarray(host)


def broadcast_module(comm, module: Module, root: int = 0) -> None:
    """Overwrite every parameter and buffer of ``module`` with rank ``root``'s values, in place."""
    if comm.size == 1:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        on_host(t, lambda a: comm.broadcast_(a, root))
        versioning.bump(t, "broadcast")


def broadcast_optimizer(comm, optimizer, root: int = 0) -> None:
    """Give every rank rank ``root``'s optimizer state (moments, step counts, options)."""
    if comm.size == 1:
        return
    packed = None
    if comm.rank == root:
        sd = optimizer.state_dict()
        packed = {
            "state": {
                i: {k: (("tensor", v.device.backend.to_numpy(v.data)) if isinstance(v, ag.Tensor) else ("value", v))
                    for k, v in st.items()}
                for i, st in sd["state"].items()
            },
            "param_groups": sd["param_groups"],
        }
    packed = comm.broadcast_object(packed, root)
    if comm.rank != root:
        state = {
            i: {k: (ag.tensor(v) if kind == "tensor" else v) for k, (kind, v) in st.items()}
            for i, st in packed["state"].items()
        }
        optimizer.load_state_dict({"state": state, "param_groups": packed["param_groups"]})


class _Bucket:
    __slots__ = ("params", "offsets", "numel", "dtype")

    def __init__(self, dtype) -> None:
        self.params: list = []
        self.offsets: list = []
        self.numel = 0
        self.dtype = dtype

    def add(self, p) -> None:
        self.params.append(p)
        self.offsets.append(self.numel)
        self.numel += p.size


class DistributedDataParallel(Module):
    """Wrap ``module`` so that ``backward()`` leaves on every rank the gradient averaged over ranks.

    On construction every rank's model layout is checked (ValueError naming the first entry and
    rank that differ) and rank 0's parameters and buffers are copied to every rank. ``forward``
    calls the wrapped module (``model.module``); with ``broadcast_buffers`` (the default) and
    buffers present, rank 0's buffers are copied to every rank before each training forward.
    ``state_dict()``/``load_state_dict()`` are the wrapped module's, without torch's ``module.``
    prefix: a checkpoint saved from the wrapper loads into the bare model and back.
    With a world of one process nothing is exchanged and the wrapper costs nothing.
    """

    def __init__(self, module: Module, bucket_cap_mb: float = 25, broadcast_buffers: bool = True,
                 communicator=None) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel wraps an nn.Module, got {type(module).__name__}")
        if not bucket_cap_mb > 0:
            raise ValueError(f"bucket_cap_mb must be positive, got {bucket_cap_mb}")
        if communicator is None:
            from . import communicator as _default

            communicator = _default()
        self.module = module
        object.__setattr__(self, "comm", communicator)
        object.__setattr__(self, "broadcast_buffers", bool(broadcast_buffers))
        object.__setattr__(self, "_require_sync", True)
        object.__setattr__(self, "_armed", True)
        object.__setattr__(self, "_round", None)
        object.__setattr__(self, "_handles", [])
        check_same_layout(communicator, module, "DistributedDataParallel")
        broadcast_module(communicator, module, 0)
        cap = int(bucket_cap_mb * 1024 * 1024)
        buckets: list = []
        for p in reversed([p for p in module.parameters() if p.requires_grad]):
            b = buckets[-1] if buckets else None
            if b is None or b.dtype != p.dtype or (b.numel and (b.numel + p.size) * p.dtype.itemsize > cap):
                b = _Bucket(p.dtype)
                buckets.append(b)
            b.add(p)
        object.__setattr__(self, "_buckets", buckets)
        bucket_of = {p: (k, i) for k, b in enumerate(buckets) for i, p in enumerate(b.params)}
        object.__setattr__(self, "_bucket_of", bucket_of)
        object.__setattr__(self, "_ready", [0] * len(buckets))
        object.__setattr__(self, "_next", 0)
        if communicator.size > 1:
            for p in self._bucket_of:
                self._handles.append(p.register_post_accumulate_grad_hook(self._grad_ready))

    # -- module protocol --------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        object.__setattr__(self, "_armed", self._require_sync)
        if self.broadcast_buffers and self.training and self.comm.size > 1:
            bufs = list(self.module.buffers())
            if bufs:
                for b in bufs:
                    on_host(b, lambda a: self.comm.broadcast_(a, 0))
        return self.module(*args, **kwargs)

    def state_dict(self, keep_vars: bool = False):
        return self.module.state_dict(keep_vars=keep_vars)

    def load_state_dict(self, state_dict, strict: bool = True):
        return self.module.load_state_dict(state_dict, strict=strict)

    @contextlib.contextmanager
    def no_sync(self):
        """Inside this block, forwards (and their backwards) only accumulate local gradients; the
        first forward + backward after it averages the accumulated sum. As in torch, what counts
        is where the forward ran: a forward inside ``no_sync`` whose backward runs after it still
        skips the exchange."""
        previous = self._require_sync
        object.__setattr__(self, "_require_sync", False)
        try:
            yield
        finally:
            object.__setattr__(self, "_require_sync", previous)

    def __repr__(self) -> str:
        return (f"DistributedDataParallel(rank {self.comm.rank} of {self.comm.size}, {len(self._buckets)} buckets,\n"
                f"  {self.module!r})")

    # -- the reducer ------------------------------------------------------------------------------
    def _grad_ready(self, p) -> None:
        if not self._armed:
            return
        current = _hooks._running.stack[-1]  # the callback list of the backward now running
        if self._round is not current:  # the first hook of a new backward
            object.__setattr__(self, "_round", current)
            self._ready[:] = [0] * len(self._buckets)
            object.__setattr__(self, "_next", 0)
            ag.queue_callback(self._finish)
        k, _ = self._bucket_of[p]
        self._ready[k] += 1
        buckets = self._buckets
        while self._next < len(buckets) and self._ready[self._next] == len(buckets[self._next].params):
            self._reduce(buckets[self._next])
            object.__setattr__(self, "_next", self._next + 1)

    def _finish(self) -> None:
        try:
            while self._next < len(self._buckets):
                self._reduce(self._buckets[self._next])
                object.__setattr__(self, "_next", self._next + 1)
        finally:
            object.__setattr__(self, "_round", None)

    def _reduce(self, bucket: _Bucket) -> None:
        n = bucket.numel
        flat = np.empty(n + len(bucket.params), dtype=bucket.dtype)
        for i, (p, off) in enumerate(zip(bucket.params, bucket.offsets)):
            g = p.grad
            if g is None:
                flat[off:off + p.size] = 0
                flat[n + i] = 0
            else:
                flat[off:off + p.size] = p.device.backend.to_numpy(g.data).reshape(-1)
                flat[n + i] = 1
        self.comm.allreduce_(flat, "sum")
        flat[:n] *= flat.dtype.type(1.0 / self.comm.size)
        for i, (p, off) in enumerate(zip(bucket.params, bucket.offsets)):
            if flat[n + i] == 0:  # no rank had a gradient for it: leave it as it is
                continue
            view = flat[off:off + p.size].reshape(p.shape)
            data = view if type(p.data) is np.ndarray else p.device.backend.asarray(view)
            p.grad = _make(data, p.device, None, 0, False)
