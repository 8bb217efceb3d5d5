"""Reverse-mode traversal: ``Tensor.backward`` and ``ag.grad``.

Three pieces, each written once:

- ``schedule`` orders the nodes. Nodes carry a sequence number taken when they were recorded,
  and every consumer of a node is newer than the node itself, so popping nodes newest-first
  visits each node after all its consumers delivered their gradients: a reverse topological
  order, computed iteratively (a 100,000-op chain is fine) and without a counting pre-pass.
- one call into a node's backward: the raw-array path inline in ``_traverse``, everything
  else (user Functions, several outputs, ``create_graph``) through ``_general_backward``.
- ``accumulate`` is the one way a gradient is added to a tensor's ``.grad``; leaves' hooks
  (``hooks.py``) run once a leaf has received its last gradient of the backward.

``_traverse`` joins them, and undoes broadcasting once for all ops: a gradient whose shape
differs from its input's is summed back to that shape (``sum_to``) and cast to the input's
dtype, so float32 inputs get float32 gradients (``unbroadcast.py``). What a call asks for (its
roots and seeds; for ``ag.grad`` the inputs, the pruning and capture) is in ``grad_inputs.py``.
"""
from __future__ import annotations

import heapq

from . import hooks
from .anomaly import check_backward
from .function import Context, freed_error
from .grad_inputs import GradInputs, roots_and_seeds
from .grad_mode import ANOMALY, GRAD, mode
from .tensor import Tensor, _make
from .unbroadcast import fit, unbroadcast

__all__ = ["run_backward", "accumulate"]

_heappop, _heappush, _heapreplace = heapq.heappop, heapq.heappush, heapq.heapreplace


def run_backward(tensors, grad_tensors, retain_graph, create_graph, inputs=None, allow_unused=False):
    """Shared driver of ``Tensor.backward`` (inputs=None: accumulate into leaves) and ``ag.grad``."""
    if retain_graph is None:
        retain_graph = create_graph
    roots, seeds = roots_and_seeds(tensors, grad_tensors, create_graph)
    wanted = None if inputs is None else GradInputs(inputs, roots)
    leaf_hooks = hooks.plan(roots) if wanted is None else None  # None unless a hooked leaf is reached
    add, nodes = schedule()
    flags = mode.get()
    token = mode.set(flags | GRAD if create_graph else flags & ~GRAD)  # a graph of backward only under create_graph
    try:
        with hooks.Callbacks():
            for t, s in zip(roots, seeds):
                node = t.grad_fn
                if node is None:
                    _deliver_leaf(t, s, wanted, create_graph, False)
                    if leaf_hooks is not None:
                        leaf_hooks.node_done(None, (t,))
                elif wanted is None or node in wanted.reach:
                    add(node, t._out_idx, s)
            _traverse(add, nodes, wanted, create_graph, retain_graph, flags & ANOMALY, leaf_hooks)
    finally:
        mode.reset(token)
    return None if wanted is None else wanted.result(allow_unused)


def schedule():
    """The nodes waiting for their backward, with their gradients: ``(add, nodes)``.

    ``add(node, idx, g)`` adds gradient ``g`` of ``node``'s output ``idx``; iterating ``nodes``
    yields ``(node, its gradient)``, newest pending node first, until none is left. The node
    that most recently became pending waits in ``ready`` instead of the heap and the dict: if
    nothing newer is pending it runs next directly, which turns chains (most of a model) into a
    loop without heap or dict traffic. (Closures rather than a class: the state is read on
    every node, and cell reads and a generator's resumption are cheaper than attribute reads and calls.)
    """
    heap = []
    pending = {}
    ready = ready_grad = None

    def add(node, idx, g) -> None:
        nonlocal ready, ready_grad
        if node is ready:
            ready_grad = ready_grad + g
            return
        prev = pending.get(node)
        if node.n_out != 1:  # one slot per output
            if prev is None:
                prev = pending[node] = [None] * node.n_out
                _heappush(heap, (-node.seq, node))
            prev[idx] = g if prev[idx] is None else prev[idx] + g
        elif prev is not None:
            pending[node] = prev + g
        else:
            if ready is not None:  # the previous ready node waits in the heap
                pending[ready] = ready_grad
                _heappush(heap, (-ready.seq, ready))
            ready, ready_grad = node, g

    def nodes():
        nonlocal ready
        while True:
            node = ready
            if node is not None:
                ready = None
                if not heap or heap[0][0] > -node.seq:
                    yield node, ready_grad
                    continue
                pending[node] = ready_grad  # a newer node is pending: it runs first
                node = _heapreplace(heap, (-node.seq, node))[1]
            elif heap:
                node = _heappop(heap)[1]
            else:
                return
            yield node, pending.pop(node)

    return add, nodes()


def _traverse(add, nodes, wanted, create_graph, retain_graph, anomaly, leaf_hooks):
    """Run the scheduled nodes' backwards and route their gradients to their inputs."""
    raw_ok = not create_graph
    device = array_type = None
    for node, gout in nodes:
        if wanted is not None and not wanted.visit(node, gout):
            continue
        edges = node.next_edges
        if edges is None:
            raise freed_error(node)
        if node._retained is not None and wanted is None:  # ag.grad never writes .grad
            _fill_retained(node, gout, create_graph)
        fn = node.fn
        if raw_ok and fn.raw_backward and node.n_out == 1:  # the one call into a node's backward
            node._raw = True
            grads_in = fn.backward(node, gout)
            if type(grads_in) is not tuple:
                grads_in = (grads_in,)
        else:
            grads_in = _general_backward(node, gout, create_graph)
        n_in = len(grads_in)
        if n_in > len(edges):
            raise RuntimeError(
                f"{fn.__name__}.backward returned {n_in} gradients, but forward took {len(edges)} inputs"
            )
        if node.device is not device:
            device = node.device
            array_type = device.backend.array_type
        # Only a gradient a built-in op computed itself may become a leaf's .grad without a copy.
        fresh = fn.raw_backward
        for i in range(n_in):
            edge = edges[i]
            gi = grads_in[i]
            if edge is None or gi is None:
                continue
            if raw_ok and type(gi) is not array_type:  # NumPy turns 0-d results into scalars
                gi = node.xp.asarray(gi)
            if type(edge) is Context:  # the common case, kept free of calls but ``add``
                if gi.shape != edge.out_shape:
                    gi = unbroadcast(node, gi, edge.out_shape)
                dtype = gi.dtype
                if dtype is not edge.out_dtype and dtype != edge.out_dtype:
                    gi = gi.astype(edge.out_dtype)
                if anomaly:
                    check_backward(node, gi)
                if wanted is None or edge in wanted.reach:
                    add(edge, 0, gi)
            elif type(edge) is tuple:
                target, idx = edge
                gi = fit(node, gi, *target._out_meta[idx], anomaly)
                if wanted is None or target in wanted.reach:
                    add(target, idx, gi)
            else:  # a leaf
                data = edge.data
                if anomaly or gi.shape != data.shape or gi.dtype != data.dtype:
                    gi = fit(node, gi, data.shape, data.dtype, anomaly)
                # One array returned for two inputs must not become a leaf's .grad: a later
                # in-place accumulation would change the other input's gradient too.
                adopt = (fresh and gi is not gout and getattr(gi.data if create_graph else gi, "base", None) is None
                         and (n_in == 1 or _returned_once(gi, grads_in)))
                _deliver_leaf(edge, gi, wanted, create_graph, adopt)
        if leaf_hooks is not None:  # hooked leaves whose last gradient this was run their hooks
            leaf_hooks.node_done(node, edges)
        if not retain_graph:
            # Release the node: a second backward through it then raises, and dropping its edges
            # lets the nodes upstream (and whatever their forwards kept) die as soon as backward
            # has passed them.
            node._saved = None
            node._out = None
            node.next_edges = None


def _general_backward(node, gout, create_graph):
    fn = node.fn
    if node.n_out == 1:
        grads = (gout,)
    else:
        grads = tuple(g if g is not None else _zeros_for(node, i, create_graph) for i, g in enumerate(gout))
    raw = fn.raw_backward and not create_graph
    node._raw = raw
    if raw or create_graph:
        out = fn.backward(node, *grads)
    else:
        dev = node.device
        out = fn.backward(node, *[_make(_array(g, dev), dev, None, 0, False) for g in grads])
    if type(out) is not tuple:
        out = tuple(out) if type(out) is list else (out,)
    fixed = list(out)
    for i, gi in enumerate(out):
        if gi is None:
            continue
        if create_graph:
            if not isinstance(gi, Tensor) and i < len(node.next_edges) and node.next_edges[i] is not None:
                raise RuntimeError(
                    f"{fn.__name__}.backward returned a raw array for input {i} under create_graph=True, so "
                    "its gradient cannot be differentiated again; compute the gradient with autograd ops on "
                    "the Tensors it receives (or avoid double backward through this op)"
                )
        elif isinstance(gi, Tensor):
            fixed[i] = gi.data
        elif type(gi) is not node.device.backend.array_type:
            fixed[i] = node.xp.asarray(gi)
    return tuple(fixed)


def _zeros_for(node, i, create_graph):
    shape, dtype = node._out_meta[i]
    dev = node.device
    z = dev.backend.xp.zeros(shape, dtype=dtype)
    return _make(z, dev, None, 0, False) if create_graph else z


def _deliver_leaf(leaf, g, wanted, create_graph, adopt):
    if wanted is None:
        accumulate(leaf, g, create_graph, adopt)
    else:
        wanted.leaf(leaf, g)


def accumulate(t, g, create_graph: bool, adopt: bool) -> None:
    """Add the gradient ``g`` (an array; a Tensor under create_graph) to ``t.grad``.

    ``adopt``: ``g`` is a fresh array nobody else holds, so it may become the .grad without a
    copy. Otherwise the first gradient is copied, so accumulating in place later never changes
    an array the caller or another tensor still holds."""
    existing = t._grad
    if create_graph:
        if existing is None:
            t._grad = g if adopt and g.grad_fn is not None else _clone(g)
        else:
            t._grad = existing + g
    elif existing is None:
        t._grad = _make(g if adopt else _array(g, t.device).copy(), t.device, None, 0, False)
    elif existing.grad_fn is None and not existing._requires_grad:
        existing.data += g
        existing._bump("gradient accumulation")
    else:
        t._grad = _make(_array(existing.data + g, t.device), t.device, None, 0, False)


def _fill_retained(node, gout, create_graph):
    for idx, ref in node._retained.items():
        t = ref()
        g = gout if node.n_out == 1 else gout[idx]
        if t is not None and g is not None:
            accumulate(t, g, create_graph, False)


def _clone(g: Tensor) -> Tensor:
    from .ops.elementwise import clone

    return clone(g)


def _array(g, device):
    """``g`` as a backend array: NumPy turns arithmetic on 0-d arrays into scalars, which a
    Tensor must not hold."""
    backend = device.backend
    return g if isinstance(g, backend.array_type) else backend.asarray(g)


def _returned_once(g, grads) -> bool:
    """Whether a backward returned the array ``g`` for one of its inputs only."""
    return sum(1 for other in grads if other is g) == 1
