"""Grad mode and anomaly mode: per-thread (and per-asyncio-task) switches read by every op.

Both live in one ``ContextVar`` holding a bit mask: a ContextVar read is about three times
cheaper than a ``threading.local`` attribute, and every op reads it.
"""
from __future__ import annotations

import contextvars
import functools

__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "detect_anomaly", "is_anomaly_enabled"]

GRAD = 1
ANOMALY = 2
mode = contextvars.ContextVar("xpgrad_mode", default=GRAD)


class _State:
    """Attribute view of ``mode`` for code that reads or sets one switch at a time."""

    __slots__ = ()

    @property
    def grad_enabled(self) -> bool:
        return bool(mode.get() & GRAD)

    @grad_enabled.setter
    def grad_enabled(self, flag: bool) -> None:
        m = mode.get()
        mode.set(m | GRAD if flag else m & ~GRAD)

    @property
    def anomaly(self) -> bool:
        return bool(mode.get() & ANOMALY)

    @anomaly.setter
    def anomaly(self, flag: bool) -> None:
        m = mode.get()
        mode.set(m | ANOMALY if flag else m & ~ANOMALY)


state = _State()


def is_grad_enabled() -> bool:
    """Whether ops record the graph in this thread."""
    return state.grad_enabled


class _GradModeContext:
    """Context manager and decorator that sets grad mode and restores the previous one."""

    _mode = True

    # The bit arithmetic of ``state.grad_enabled``, inlined: optimizers enter no_grad every step.
    def __enter__(self):
        flags = mode.get()
        self._prev = flags & GRAD
        mode.set(flags | GRAD if self._mode else flags & ~GRAD)
        return self

    def __exit__(self, *exc):
        flags = mode.get()
        mode.set(flags | GRAD if self._prev else flags & ~GRAD)
        return False

    def __call__(self, func):
        mode = self._mode

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            prev = state.grad_enabled
            state.grad_enabled = mode
            try:
                return func(*args, **kwargs)
            finally:
                state.grad_enabled = prev

        return wrapper


class _NoArgGradModeContext(_GradModeContext):
    def __new__(cls, func=None):
        # ``@ag.no_grad`` without parentheses decorates ``func`` directly, as in PyTorch.
        self = super().__new__(cls)
        return self if func is None else self(func)

    def __init__(self, func=None) -> None:
        pass


class no_grad(_NoArgGradModeContext):
    """Record no graph inside the block (``with ag.no_grad():``) or function (``@ag.no_grad()``)."""

    _mode = False


class enable_grad(_NoArgGradModeContext):
    """Record the graph again inside a ``no_grad`` region."""

    _mode = True


class set_grad_enabled(_GradModeContext):
    """``ag.set_grad_enabled(flag)`` sets grad mode at once; as a context manager it restores it on exit."""

    def __init__(self, mode: bool) -> None:
        self._prev = state.grad_enabled
        self._mode = bool(mode)
        state.grad_enabled = self._mode

    def __enter__(self):
        return self


def is_anomaly_enabled() -> bool:
    return state.anomaly


class detect_anomaly:
    """Inside this block every op's forward outputs and every backward gradient are checked for
    NaN/inf; the first one found raises RuntimeError naming the op and where its forward ran.
    Each op then records its call site, so expect it to be several times slower."""

    def __init__(self, check_nan: bool = True) -> None:
        self.check_nan = check_nan

    def __enter__(self):
        self._prev = state.anomaly
        state.anomaly = self.check_nan
        return self

    def __exit__(self, *exc):
        state.anomaly = self._prev
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with detect_anomaly(self.check_nan):
                return func(*args, **kwargs)

        return wrapper
