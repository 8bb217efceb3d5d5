"""What every workload shares: the run configuration, array modules per device, torch helpers."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = [
    "Config", "Impl", "array_module", "to_device_array", "to_host", "xp_sync", "xpgrad_sync", "torch_or_none",
    "torch_device", "torch_dtype", "torch_sync", "blas_threads", "configure_torch_threads", "scatter_add",
    "stable_sigmoid", "softmax_cross_entropy", "BrokenImpl", "construct",
]


@dataclass(frozen=True)
class Config:
    """One benchmark run: where, how big, in which precision, against whom."""

    device: str = "cpu"
    size: str = "full"                      # "full" or "tiny" (tests)
    dtype: Any = np.float32
    seed: int = 0
    compare: tuple[str, ...] = ("numpy", "torch")
    repeat: int | None = None               # overrides every workload's default repetition count

    def repeat_or(self, default: int) -> int:
        """The samples to take: ``repeat`` when given, else the workload's ``default``."""
        return self.repeat if self.repeat is not None else default


class Impl:
    """One contender's implementation of a workload.

    ``step()`` is the timed unit of work. ``check()`` runs the same code once (forward and
    backward, no update unless the workload *is* the update) and returns ``(loss, arrays)`` on
    the host, which the tests compare across contenders.
    """

    def step(self) -> None:
        raise NotImplementedError

    def check(self) -> tuple[float | None, dict[str, np.ndarray]]:
        raise NotImplementedError

    def sync(self) -> None:
        """Wait for queued device work (no-op on the CPU)."""


# -- array modules ------------------------------------------------------------------------------
def array_module(device: str):
    """numpy for "cpu", cupy for "cuda[:i]" (the hand-written references run on these)."""
    if device.startswith("cuda"):
        import cupy

        return cupy
    return np


def to_device_array(array: np.ndarray, xp):
    return array if xp is np else xp.asarray(array)


def to_host(array) -> np.ndarray:
    if isinstance(array, np.ndarray):
        return array
    if hasattr(array, "get"):  # cupy
        return array.get()
    return np.asarray(array)


def xp_sync(xp) -> Callable[[], None]:
    if xp is np:
        return _noop
    return lambda: xp.cuda.get_current_stream().synchronize()


def xpgrad_sync(device: str) -> Callable[[], None]:
    if not device.startswith("cuda"):
        return _noop
    from xpgrad.backends.device import Device

    dev = Device(device)
    return lambda: dev.backend.synchronize(dev)


def _noop() -> None:
    return None


def scatter_add(xp, target, index, values) -> None:
    """``target[index] += values`` with repeated indices accumulating, on numpy or cupy."""
    if xp is np:
        np.add.at(target, index, values)
    else:
        import cupyx

        cupyx.scatter_add(target, index, values)


def stable_sigmoid(xp, z, out=None):
    """sigmoid(z) = (1 + tanh(z/2)) / 2: no overflow for any z."""
    out = xp.multiply(z, 0.5, out=out)
    xp.tanh(out, out=out)
    out += 1
    out *= 0.5
    return out


def softmax_cross_entropy(xp, logits, labels):
    """Mean cross-entropy of integer ``labels`` and its gradient w.r.t. ``logits`` (max-shifted)."""
    n = logits.shape[0]
    rows = xp.arange(n)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = xp.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    loss = (xp.log(total[:, 0]) - shifted[rows, labels]).mean()
    exp /= total            # now softmax probabilities
    exp[rows, labels] -= 1
    exp /= n
    return loss, exp


# -- torch ----------------------------------------------------------------------------------------
def torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_device(device: str) -> str:
    return device if device.startswith("cuda") else "cpu"


def torch_dtype(dtype):
    import torch

    return {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dtype)]


def torch_sync(device: str) -> Callable[[], None]:
    if not device.startswith("cuda"):
        return _noop
    import torch

    return torch.cuda.synchronize


def blas_threads() -> int:
    """Threads NumPy's BLAS uses (threadpoolctl when installed, else the usable CPU count)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        counts = [d["num_threads"] for d in threadpool_info() if d.get("user_api") == "blas"]
        if counts:
            return int(max(counts))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def configure_torch_threads() -> None:
    """Give torch as many intra-op threads as NumPy's BLAS has (now: ``--threads`` may have capped it)."""
    torch = torch_or_none()
    if torch is None:
        return
    n = blas_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


class BrokenImpl(Impl):
    """Stands in for a contender whose construction failed; using it re-raises that error."""

    def __init__(self, name: str, error: BaseException) -> None:
        self.name, self.error = name, error

    def _raise(self, *args, **kwargs):
        raise RuntimeError(f"{self.name} could not be set up: {type(self.error).__name__}: {self.error}") \
            from self.error

    step = check = run = forward_only = _raise


def construct(factories: dict[str, Callable[[], Impl]], cfg: Config) -> dict[str, Impl]:
    """Build the contenders ``cfg`` asks for (xpgrad always; numpy/torch when compared and available).

    A contender that fails to build becomes a BrokenImpl, so the others still get measured.
    """
    impls: dict[str, Impl] = {}
    for name, factory in factories.items():
        if name != "xpgrad" and name not in cfg.compare:
            continue
        if name == "torch" and torch_or_none() is None:
            continue
        try:
            impls[name] = factory()
        except Exception as exc:
            impls[name] = BrokenImpl(name, exc)
    return impls
