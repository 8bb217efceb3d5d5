"""Reverse-mode traversal: ``Tensor.backward`` and ``ag.grad``.

Nodes carry a sequence number taken when they were recorded; every consumer of a node is newer
than the node itself. Popping nodes newest-first from a heap therefore visits each node only
after all its consumers have delivered their gradients: a reverse topological order, computed
iteratively (no recursion, so a 100,000-op chain is fine) and without a counting pre-pass.

Broadcasting is undone here, once for all ops: a gradient whose shape differs from its input's
is summed back to that shape (``sum_to``), and cast to the input's dtype, so float32 inputs get
float32 gradients.
"""
from __future__ import annotations

import heapq
from typing import Sequence

from .function import Context, _format_stack, _freed_error
from .grad_mode import ANOMALY, GRAD, mode
from .tensor import Tensor, _make

__all__ = ["run_backward", "grad", "sum_to"]


def sum_to(g, shape):
    """Sum ``g`` (array or Tensor) down to ``shape``, the inverse of broadcasting ``shape`` to g.shape."""
    gshape = g.shape
    if tuple(gshape) == tuple(shape):
        return g
    lead = len(gshape) - len(shape)
    if lead < 0:
        raise ValueError(f"cannot reduce a gradient of shape {tuple(gshape)} to shape {tuple(shape)}")
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and gshape[lead + i] != 1
    )
    for i, n in enumerate(shape):
        if n != 1 and gshape[lead + i] != n:
            raise ValueError(f"cannot reduce a gradient of shape {tuple(gshape)} to shape {tuple(shape)}")
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    if lead:
        g = g.reshape(shape)
    return g


def _as_tensor_list(x, what: str) -> tuple:
    if isinstance(x, Tensor):
        return (x,)
    if x is None:
        return ()
    try:
        items = tuple(x)
    except TypeError:
        raise TypeError(f"{what} must be a Tensor or a sequence of Tensors, got {type(x).__name__}") from None
    return items


def _seed(root: Tensor, g, i: int):
    """Initial gradient array for ``root`` (ones for one-element roots)."""
    backend = root.device.backend
    if g is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"grad can be implicitly created only for outputs with one element, but output {i} has "
                f"shape {root.shape}; pass a gradient of that shape, e.g. t.backward(ag.ones_like(t))"
            )
        return backend.xp.ones(root.data.shape, dtype=root.data.dtype)
    if isinstance(g, Tensor):
        if g.device is not root.device:
            raise RuntimeError(f"the gradient for output {i} is on {g.device}, but the output is on {root.device}")
        data = g.data
    else:
        data = backend.asarray(g)
    if tuple(data.shape) != root.shape:
        raise RuntimeError(f"the gradient for output {i} has shape {tuple(data.shape)}, but the output has shape {root.shape}")
    if data.dtype != root.data.dtype:
        data = data.astype(root.data.dtype)
    return g if isinstance(g, Tensor) and g.data is data else data


def run_backward(tensors, grad_tensors, retain_graph, create_graph, inputs=None, allow_unused=False):
    """Shared driver of ``Tensor.backward`` (inputs=None: accumulate into leaves) and ``ag.grad``."""
    if retain_graph is None:
        retain_graph = create_graph
    roots = []
    seeds = []
    for i, (t, g) in enumerate(zip(tensors, grad_tensors)):
        if not isinstance(t, Tensor):
            raise TypeError(f"output {i} is a {type(t).__name__}, not a Tensor")
        if not t._requires_grad:
            raise RuntimeError(
                f"element {i} of the outputs does not require grad and has no grad_fn: nothing it "
                "depends on requires grad (or it was computed under no_grad)"
            )
        s = _seed(t, g, i)
        if create_graph and not isinstance(s, Tensor):
            s = _make(s, t.device, None, 0, False)
        elif not create_graph and isinstance(s, Tensor):
            s = s.data
        roots.append(t)
        seeds.append(s)

    capture = None
    run = None
    if inputs is not None:
        capture = {}
        leaf_inputs = {}
        node_inputs = {}
        for k, x in enumerate(inputs):
            if not isinstance(x, Tensor):
                raise TypeError(f"input {k} is a {type(x).__name__}, not a Tensor")
            if not x._requires_grad:
                raise RuntimeError(f"input {k} does not require grad, so no gradient can be computed for it")
            if x.grad_fn is None:
                leaf_inputs.setdefault(id(x), k)  # a repeated input shares the first one's slot
            else:
                node_inputs.setdefault(x.grad_fn, []).append((x._out_idx, k))
        run, reach = _prune([t.grad_fn for t in roots if t.grad_fn is not None], leaf_inputs, node_inputs)

    pending: dict = {}
    heap: list = []
    flags = mode.get()
    # Backward records a graph of its own only under create_graph.
    token = mode.set(flags | GRAD if create_graph else flags & ~GRAD)
    try:
        for t, s in zip(roots, seeds):
            if t.grad_fn is None:
                _deliver_leaf(t, s, capture, leaf_inputs if capture is not None else None, create_graph, False)
            elif capture is None or t.grad_fn in reach:
                _add_pending(pending, heap, t.grad_fn, t._out_idx, s)
        _traverse(pending, heap, create_graph, retain_graph, capture,
                  (leaf_inputs, node_inputs, run, reach) if capture is not None else None, flags & ANOMALY)
    finally:
        mode.reset(token)

    if capture is None:
        return None
    result = []
    for k, x in enumerate(inputs):
        g = capture.get(leaf_inputs[id(x)] if x.grad_fn is None else k)
        if g is None:
            if not allow_unused:
                raise RuntimeError(
                    f"input {k} (shape {x.shape}) was not used to compute the outputs; pass "
                    "allow_unused=True to get None for it"
                )
            result.append(None)
        elif isinstance(g, Tensor):
            result.append(g)
        else:
            result.append(_make(_array(g, x.device), x.device, None, 0, False))
    return tuple(result)


def _array(g, device):
    """``g`` as a backend array: NumPy turns arithmetic on 0-d arrays into scalars, which a
    Tensor must not hold."""
    backend = device.backend
    return g if isinstance(g, backend.array_type) else backend.asarray(g)


def _traverse(pending, heap, create_graph, retain_graph, capture, grad_inputs, anomaly):
    """Pop nodes newest-first, run their backward and route the gradients to their inputs."""
    heappop, heappush, heapreplace = heapq.heappop, heapq.heappush, heapq.heapreplace
    raw_ok = not create_graph
    if grad_inputs is not None:
        leaf_inputs, node_inputs, run, reach = grad_inputs
    device = array_type = None
    # A node that just became pending is kept out of the heap and out of ``pending`` in ``ready``
    # (its gradient in ``ready_grad``): if nothing newer is pending it runs next directly, which
    # turns chains (most of a model) into loops without heap or dict traffic.
    ready = ready_grad = None
    while True:
        if ready is not None:
            node, gout = ready, ready_grad
            ready = None
            if heap and heap[0][0] < -node.seq:  # a newer node is pending: it runs first
                pending[node] = gout
                node = heapreplace(heap, (-node.seq, node))[1]
                gout = pending.pop(node)
        elif heap:
            node = heappop(heap)[1]
            gout = pending.pop(node)
        else:
            break
        if capture is not None:
            for idx, k in node_inputs.get(node, ()):
                g = gout if node.n_out == 1 else gout[idx]
                if g is not None:
                    capture[k] = g
            if node not in run:
                continue
        edges = node.next_edges
        if edges is None:
            raise _freed_error(node)
        if node._retained is not None and capture is None:  # ag.grad never writes .grad
            _fill_retained(node, gout, create_graph)
        fn = node.fn
        if raw_ok and fn.raw_backward and node.n_out == 1:
            node._raw = True
            grads_in = fn.backward(node, gout)
            if type(grads_in) is not tuple:
                grads_in = (grads_in,)
            # Only a gradient the op computed itself may become a leaf's .grad without a copy.
            fresh = True
        else:
            grads_in = _call_backward(node, gout, create_graph)
            fresh = fn.raw_backward
        n_in = len(grads_in)
        if n_in > len(edges):
            raise RuntimeError(
                f"{fn.__name__}.backward returned {n_in} gradients, but forward took {len(edges)} inputs"
            )
        if node.device is not device:
            device = node.device
            array_type = device.backend.array_type
        for i in range(n_in):
            edge = edges[i]
            gi = grads_in[i]
            if edge is None or gi is None:
                continue
            if raw_ok and type(gi) is not array_type:  # NumPy turns 0-d results into scalars
                gi = node.xp.asarray(gi)
            if type(edge) is Context:  # the common case, kept free of calls
                if gi.shape != edge.out_shape:
                    gi = _unbroadcast(node, gi, edge.out_shape)
                dtype = gi.dtype
                if dtype is not edge.out_dtype and dtype != edge.out_dtype:
                    gi = gi.astype(edge.out_dtype)
                if anomaly:
                    _check_finite_backward(node, gi)
                if capture is None or edge in reach:
                    if edge is ready:
                        ready_grad = ready_grad + gi
                    else:
                        prev = pending.get(edge)  # _add_pending(), inlined for single-output nodes
                        if prev is None:
                            if ready is not None:  # the previous ready node waits in the heap
                                pending[ready] = ready_grad
                                heappush(heap, (-ready.seq, ready))
                            ready, ready_grad = edge, gi
                        else:
                            pending[edge] = prev + gi
            elif type(edge) is tuple:
                target, idx = edge
                gi = _fit(node, gi, *target._out_meta[idx], anomaly)
                if capture is None or target in reach:
                    _add_pending(pending, heap, target, idx, gi)
            else:  # a leaf
                data = edge.data
                if anomaly or gi.shape != data.shape or gi.dtype != data.dtype:
                    gi = _fit(node, gi, data.shape, data.dtype, anomaly)
                # One array returned for two inputs must not become a leaf's .grad: a later
                # in-place accumulation would change the other input's gradient too.
                adopt = (fresh and gi is not gout and getattr(gi.data if create_graph else gi, "base", None) is None
                         and (n_in == 1 or _returned_once(gi, grads_in)))
                if capture is None and raw_ok and adopt and edge._grad is None:
                    edge._grad = _make(gi, edge.device, None, 0, False)  # _deliver_leaf's first case, inlined
                else:
                    _deliver_leaf(edge, gi, capture, leaf_inputs if capture is not None else None, create_graph, adopt)
        if not retain_graph:
            # Release the node: a second backward through it then raises, and dropping its edges
            # lets the nodes upstream (and whatever their forwards kept, such as masks) die as
            # soon as backward has passed them.
            node._saved = None
            node._out = None
            node.next_edges = None


def _returned_once(g, grads) -> bool:
    """Whether a backward returned the array ``g`` for one of its inputs only."""
    count = 0
    for other in grads:
        if other is g:
            count += 1
    return count == 1


def _fit(node, g, shape, dtype, anomaly):
    """``g`` summed down to ``shape`` and cast to ``dtype`` (checked under detect_anomaly)."""
    if g.shape != shape:
        g = _unbroadcast(node, g, shape)
    if g.dtype != dtype:
        g = g.astype(dtype)
    if anomaly:
        _check_finite_backward(node, g)
    return g


def _unbroadcast(node, g, shape):
    try:
        return sum_to(g, shape)
    except ValueError:
        raise RuntimeError(
            f"{node.fn.__name__}.backward returned a gradient of shape {tuple(g.shape)} for an "
            f"input of shape {tuple(shape)}"
        ) from None


def _add_pending(pending, heap, node, idx, g):
    if node.n_out == 1:
        prev = pending.get(node)
        if prev is None:
            heapq.heappush(heap, (-node.seq, node))
            pending[node] = g
        else:
            pending[node] = prev + g
    else:
        slots = pending.get(node)
        if slots is None:
            slots = pending[node] = [None] * node.n_out
            heapq.heappush(heap, (-node.seq, node))
        slots[idx] = g if slots[idx] is None else slots[idx] + g


def _call_backward(node, gout, create_graph):
    """Backward of user Functions, multi-output nodes and the create_graph path."""
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
    array_type = node.device.backend.array_type
    fixed = None
    for i, gi in enumerate(out):
        if gi is None:
            continue
        if create_graph:
            if not isinstance(gi, Tensor):
                if node.next_edges[i] is None if i < len(node.next_edges) else True:
                    continue
                raise RuntimeError(
                    f"{fn.__name__}.backward returned a raw array for input {i} under create_graph=True, so "
                    "its gradient cannot be differentiated again; compute the gradient with autograd ops on "
                    "the Tensors it receives (or avoid double backward through this op)"
                )
            continue
        if isinstance(gi, Tensor):
            gi = gi.data
        elif type(gi) is not array_type:
            gi = node.xp.asarray(gi)
        else:
            continue
        if fixed is None:
            fixed = list(out)
        fixed[i] = gi
    return out if fixed is None else tuple(fixed)


def _zeros_for(node, i, create_graph):
    shape, dtype = node._out_meta[i]
    dev = node.device
    z = dev.backend.xp.zeros(shape, dtype=dtype)
    return _make(z, dev, None, 0, False) if create_graph else z


def _deliver_leaf(leaf, g, capture, leaf_inputs, create_graph, adopt):
    """Add ``g`` to ``leaf.grad`` (or to ag.grad's result). ``adopt``: g is a fresh array nobody
    else holds, so it may become the .grad without a copy."""
    if capture is not None:
        k = leaf_inputs.get(id(leaf))
        if k is not None:
            prev = capture.get(k)
            capture[k] = g if prev is None else prev + g
        return
    existing = leaf._grad
    if create_graph:
        if existing is None:
            leaf._grad = g if adopt and g.grad_fn is not None else _clone(g)
        else:
            leaf._grad = existing + g
        return
    if existing is None:
        leaf._grad = _make(g if adopt else _array(g, leaf.device).copy(), leaf.device, None, 0, False)
    elif existing.grad_fn is None and not existing._requires_grad:
        existing.data += g
        existing._bump("gradient accumulation")
    else:
        leaf._grad = _make(_array(existing.data + g, leaf.device), leaf.device, None, 0, False)


def _clone(g: Tensor) -> Tensor:
    from .ops.elementwise import clone

    return clone(g)


def _fill_retained(node, gout, create_graph):
    for idx, ref in node._retained.items():
        t = ref()
        if t is None:
            continue
        g = gout if node.n_out == 1 else gout[idx]
        if g is None:
            continue
        if create_graph:
            t._grad = g if t._grad is None else t._grad + g
        else:
            t._grad = _make(_array(g.copy() if t._grad is None else t._grad.data + g, t.device), t.device, None, 0, False)


def _edge_node(e):
    """The node an edge points at, or None for a leaf edge."""
    kind = type(e)
    if kind is Context:
        return e
    if kind is tuple:
        return e[0]
    return None


def _prune(root_nodes, leaf_inputs, node_inputs):
    """Nodes whose backward must run for ``ag.grad`` (``run``) and nodes on a path to an input (``reach``)."""
    order = []
    seen = set()
    stack = [(n, False) for n in root_nodes]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if node in seen:
            continue
        seen.add(node)
        stack.append((node, True))
        edges = node.next_edges
        if edges is None:  # released by an earlier backward: the traversal will raise for it
            continue
        for e in edges:
            child = _edge_node(e) if e is not None else None
            if child is not None and child not in seen:
                stack.append((child, False))
    run = set()
    reach = set()
    for node in order:  # children before parents
        needed = node.next_edges is None  # let the traversal report the freed buffers
        for e in node.next_edges or ():
            if e is None:
                continue
            child = _edge_node(e)
            if (child in reach) if child is not None else (id(e) in leaf_inputs):
                needed = True
                break
        if needed:
            run.add(node)
        if needed or node in node_inputs:
            reach.add(node)
    return run, reach


def _check_finite_backward(node, g) -> None:
    data = g.data if isinstance(g, Tensor) else g
    if data.dtype.kind in "fc" and not bool(node.xp.isfinite(data).all()):
        raise RuntimeError(
            f"detect_anomaly: the backward of {node.fn.__name__} produced NaN or inf "
            f"(gradient of shape {tuple(data.shape)}).{_format_stack(node._stack)}"
        )


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False):
    """Gradients of ``outputs`` with respect to ``inputs``, as a tuple (never writes ``.grad``).

    ``outputs``, ``inputs`` and ``grad_outputs`` may each be one Tensor or a sequence. With
    ``create_graph=True`` the returned gradients are differentiable again (any order).
    """
    outs = _as_tensor_list(outputs, "outputs")
    ins = _as_tensor_list(inputs, "inputs")
    if not ins:
        raise ValueError("ag.grad needs at least one input")
    if grad_outputs is None:
        gouts: Sequence = (None,) * len(outs)
    else:
        gouts = _as_tensor_list(grad_outputs, "grad_outputs") if not isinstance(grad_outputs, Tensor) else (grad_outputs,)
        if len(gouts) != len(outs):
            raise ValueError(f"got {len(gouts)} grad_outputs for {len(outs)} outputs")
    return run_backward(outs, gouts, retain_graph, create_graph, inputs=ins, allow_unused=allow_unused)
