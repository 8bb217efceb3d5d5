"""What a backward call asks for: its roots and their seeds, and for ``ag.grad`` the inputs,
which nodes must run, and which gradients to keep.

``ag.grad(outputs, inputs)`` never writes ``.grad``: the gradients reaching the requested
inputs are captured here instead. Before the traversal the graph is pruned to the nodes on a
path from the outputs to an input, so a backward that cannot reach any input never runs.
"""
from __future__ import annotations

from .function import Context
from .tensor import Tensor, _make

__all__ = ["grad", "GradInputs", "roots_and_seeds", "as_tensor_list"]


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False):
    """Gradients of ``outputs`` with respect to ``inputs``, as a tuple (never writes ``.grad``).

    ``outputs``, ``inputs`` and ``grad_outputs`` may each be one Tensor or a sequence. With
    ``create_graph=True`` the returned gradients are differentiable again (any order).
    """
    outs = as_tensor_list(outputs, "outputs")
    ins = as_tensor_list(inputs, "inputs")
    if not ins:
        raise ValueError("ag.grad needs at least one input")
    if grad_outputs is None:
        gouts = (None,) * len(outs)
    else:
        gouts = (grad_outputs,) if isinstance(grad_outputs, Tensor) else as_tensor_list(grad_outputs, "grad_outputs")
        if len(gouts) != len(outs):
            raise ValueError(f"got {len(gouts)} grad_outputs for {len(outs)} outputs")
    from .engine import run_backward  # the engine imports this module

    return run_backward(outs, gouts, retain_graph, create_graph, inputs=ins, allow_unused=allow_unused)


def roots_and_seeds(tensors, grad_tensors, create_graph: bool):
    """The outputs a backward starts from, checked, and their initial gradients."""
    roots = [_root(t, i) for i, t in enumerate(tensors)]
    return roots, [_seed(t, g, i, create_graph) for i, (t, g) in enumerate(zip(roots, grad_tensors))]


def _root(t, i: int) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"output {i} is a {type(t).__name__}, not a Tensor")
    if not t._requires_grad:
        raise RuntimeError(
            f"element {i} of the outputs does not require grad and has no grad_fn: nothing it "
            "depends on requires grad (or it was computed under no_grad)"
        )
    return t


def _seed(root: Tensor, g, i: int, create_graph: bool):
    """Initial gradient of ``root``: ones for one-element roots; a Tensor under create_graph."""
    backend = root.device.backend
    if g is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"grad can be implicitly created only for outputs with one element, but output {i} has "
                f"shape {root.shape}; pass a gradient of that shape, e.g. t.backward(ag.ones_like(t))"
            )
        data = backend.xp.ones(root.data.shape, dtype=root.data.dtype)
    elif isinstance(g, Tensor):
        if g.device is not root.device:
            raise RuntimeError(f"the gradient for output {i} is on {g.device}, but the output is on {root.device}")
        data = g.data
    else:
        data = backend.asarray(g)
    if tuple(data.shape) != root.shape:
        raise RuntimeError(f"the gradient for output {i} has shape {tuple(data.shape)}, but the output has shape {root.shape}")
    if data.dtype != root.data.dtype:
        data = data.astype(root.data.dtype)
    if not create_graph:
        return data
    return g if isinstance(g, Tensor) and g.data is data else _make(data, root.device, None, 0, False)




def as_tensor_list(x, what: str) -> tuple:
    if isinstance(x, Tensor):
        return (x,)
    if x is None:
        return ()
    try:
        return tuple(x)
    except TypeError:
        raise TypeError(f"{what} must be a Tensor or a sequence of Tensors, got {type(x).__name__}") from None


class GradInputs:
    """The inputs of one ``ag.grad`` call and the gradients captured for them.

    ``reach``: nodes on a path to an input (gradients are routed only to these); the traversal
    calls ``visit`` for each node it pops and ``leaf`` for each gradient reaching a leaf."""

    def __init__(self, inputs, roots) -> None:
        self.inputs = inputs
        self.captured: dict = {}
        self.leaf_inputs: dict = {}  # id(leaf) -> index of its first occurrence in inputs
        self.node_inputs: dict = {}  # node -> [(output index, input index)] for non-leaf inputs
        for k, x in enumerate(inputs):
            if not isinstance(x, Tensor):
                raise TypeError(f"input {k} is a {type(x).__name__}, not a Tensor")
            if not x._requires_grad:
                raise RuntimeError(f"input {k} does not require grad, so no gradient can be computed for it")
            if x.grad_fn is None:
                self.leaf_inputs.setdefault(id(x), k)  # a repeated input shares the first one's slot
            else:
                self.node_inputs.setdefault(x.grad_fn, []).append((x._out_idx, k))
        self.run, self.reach = self._prune([t.grad_fn for t in roots if t.grad_fn is not None])

    def visit(self, node, gout) -> bool:
        """Capture the gradient of a requested non-leaf input; whether ``node``'s backward must run."""
        for idx, k in self.node_inputs.get(node, ()):
            g = gout if node.n_out == 1 else gout[idx]
            if g is not None:
                self.captured[k] = g
        return node in self.run

    def leaf(self, leaf, g) -> None:
        k = self.leaf_inputs.get(id(leaf))
        if k is not None:
            prev = self.captured.get(k)
            self.captured[k] = g if prev is None else prev + g

    def result(self, allow_unused: bool) -> tuple:
        out = []
        for k, x in enumerate(self.inputs):
            g = self.captured.get(self.leaf_inputs[id(x)] if x.grad_fn is None else k)
            if g is None:
                if not allow_unused:
                    raise RuntimeError(
                        f"input {k} (shape {x.shape}) was not used to compute the outputs; pass "
                        "allow_unused=True to get None for it"
                    )
                out.append(None)
            elif isinstance(g, Tensor):
                out.append(g)
            else:
                data = g if isinstance(g, x.device.backend.array_type) else x.device.backend.asarray(g)
                out.append(_make(data, x.device, None, 0, False))
        return tuple(out)

    def _prune(self, root_nodes):
        """Nodes whose backward must run (``run``) and nodes on a path to an input (``reach``)."""
        order = []  # children before parents
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
            for e in node.next_edges or ():  # a released node: the traversal will raise for it
                child = _node_of(e)
                if child is not None and child not in seen:
                    stack.append((child, False))
        run = set()
        reach = set()
        for node in order:
            needed = node.next_edges is None  # let the traversal report the freed buffers
            for e in node.next_edges or ():
                if e is None:
                    continue
                child = _node_of(e)
                if (child in reach) if child is not None else (id(e) in self.leaf_inputs):
                    needed = True
                    break
            if needed:
                run.add(node)
            if needed or node in self.node_inputs:
                reach.add(node)
        return run, reach


def _node_of(e):
    """The node an edge points at (None for a leaf or a missing edge)."""
    kind = type(e)
    if kind is Context:
        return e
    if kind is tuple:
        return e[0]
    return None
