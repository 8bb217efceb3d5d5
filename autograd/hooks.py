"""Backward hooks: a leaf's gradient is complete, and the backward is over.

- ``t.register_post_accumulate_grad_hook(hook)`` (PyTorch's semantics): ``hook(t)`` runs once
  per ``backward()``, right after the last contribution of that backward was added to the
  leaf's ``.grad`` (it is not called by ``ag.grad``, which never writes ``.grad``). Data-parallel
  training starts averaging a gradient here while the rest of backward still runs.
- ``ag.queue_callback(fn)``, called while a backward runs (from a hook): ``fn()`` runs once
  when that backward has finished.

Both cost nothing while no hook is registered: the engine asks ``plan`` once per backward, and
only when hooks exist does it count, in one pass over the graph, how many edges lead to each
hooked leaf, so it knows when a leaf has received its last gradient.
"""
from __future__ import annotations

import threading
import weakref

__all__ = ["RemovableHandle", "register_post_accumulate_grad_hook", "queue_callback", "plan", "Callbacks"]

_registered = [0]  # hooks registered and not removed, over all tensors: 0 means plan() is free
_running = threading.local()  # .stack: one callback list per backward running in this thread


class RemovableHandle:
    """Returned by hook registration; ``remove()`` unregisters the hook (idempotent)."""

    __slots__ = ("_hooks", "_key", "__weakref__")

    def __init__(self, hooks: dict, key: int) -> None:
        self._hooks = hooks
        self._key = key

    def remove(self) -> None:
        if self._hooks.pop(self._key, None) is not None:
            _registered[0] -= 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


_next_key = [0]


def register_post_accumulate_grad_hook(self, hook) -> RemovableHandle:
    """Run ``hook(self)`` after each ``backward()`` has finished accumulating into ``self.grad``.

    Only leaves have a ``.grad`` to accumulate into; a hook's return value is ignored.
    """
    if self.grad_fn is not None:
        raise RuntimeError(
            "register_post_accumulate_grad_hook is only for leaf tensors (parameters): this tensor is the "
            f"output of {self.grad_fn!r}; use ag.grad or retain_grad() for intermediate gradients"
        )
    if not self._requires_grad:
        raise RuntimeError("register_post_accumulate_grad_hook on a tensor that does not require grad")
    if not callable(hook):
        raise TypeError(f"hook must be callable, got {type(hook).__name__}")
    hooks = self.__dict__.get("_post_accumulate_hooks")
    if hooks is None:
        hooks = self._post_accumulate_hooks = {}
        # A tensor dropped with its hooks still registered must not keep plan() busy.
        weakref.finalize(self, _forget, hooks)
    _next_key[0] += 1
    hooks[_next_key[0]] = hook
    _registered[0] += 1
    return RemovableHandle(hooks, _next_key[0])


def _forget(hooks: dict) -> None:
    _registered[0] -= len(hooks)
    hooks.clear()


def queue_callback(fn) -> None:
    """Run ``fn()`` once the backward now running (in this thread) has finished."""
    stack = getattr(_running, "stack", None)
    if not stack:
        raise RuntimeError("ag.queue_callback can only be called while a backward runs (e.g. from a hook)")
    stack[-1].append(fn)


class Callbacks:
    """Context manager around one backward: collects the queued callbacks and runs them after a
    backward that finished (not after one that raised)."""

    __slots__ = ("queued",)

    def __enter__(self):
        stack = getattr(_running, "stack", None)
        if stack is None:
            stack = _running.stack = []
        self.queued = []
        stack.append(self.queued)
        return self

    def __exit__(self, exc_type, *exc):
        _running.stack.pop()
        if exc_type is None:
            for fn in self.queued:  # a callback may queue more: they run too
                fn()
        return False


class LeafHooks:
    """For one backward: the hooked leaves it reaches and how many gradients each still awaits."""

    __slots__ = ("waiting",)

    def __init__(self, waiting: dict) -> None:
        self.waiting = waiting  # leaf -> number of edges (or roots) still to deliver

    def node_done(self, node, edges) -> None:
        """``node``'s backward has delivered (or skipped) everything it had for its inputs."""
        waiting = self.waiting
        for e in edges:
            if e is not None and e in waiting:
                self._arrived(e)

    def _arrived(self, leaf) -> None:
        left = self.waiting[leaf] - 1
        self.waiting[leaf] = left
        if left == 0:
            for hook in list(leaf._post_accumulate_hooks.values()):
                hook(leaf)


def plan(roots):
    """``LeafHooks`` for a ``backward()`` from ``roots``, or None when no hooked leaf is reached."""
    if not _registered[0]:
        return None
    from .function import Context

    waiting: dict = {}
    seen = set()
    stack = []
    for t in roots:
        if t.grad_fn is None:
            _count(waiting, t)
        else:
            stack.append(t.grad_fn)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for e in node.next_edges or ():
            kind = type(e)
            if kind is Context:
                stack.append(e)
            elif kind is tuple:
                stack.append(e[0])
            elif e is not None:
                _count(waiting, e)
    return LeafHooks(waiting) if waiting else None


def _count(waiting: dict, leaf) -> None:
    if leaf.__dict__.get("_post_accumulate_hooks"):
        waiting[leaf] = waiting.get(leaf, 0) + 1
