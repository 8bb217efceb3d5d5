"""Random generators and sampling: ``Generator``, ``randint``, ``rand_like``, ``randn_like``, ``multinomial``.

Every random function draws from the default generator of the device it creates on (seeded by
``ag.manual_seed``) unless given ``generator=`` an :class:`Generator`. One Generator serves every
device: it holds one stream per (backend, device index), each created on first use from the
Generator's seed (device index ``i`` uses ``seed + i``, as ``manual_seed`` does for the
default generators), so ``Generator(s)`` draws what ``manual_seed(s)`` would, without touching
(or being touched by) the default generators.
"""
from __future__ import annotations

import numpy as np

from .creation import _dev, _finish
from .tensor import Tensor

__all__ = ["Generator", "multinomial", "rand_like", "randint", "randn_like"]

_MAX_SEED = 2**64 - 1


def _check_seed(seed, where: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{where}: the seed must be an int, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"{where}: the seed must be in [0, 2**64 - 1], got {seed}")
    return seed


class Generator:
    """A random number generator to pass as ``generator=`` to random functions.

    ``Generator(seed=None)``: without a seed it takes a fresh non-deterministic one (see
    ``initial_seed()``). ``manual_seed(seed)`` restarts every stream from ``seed`` and returns the
    generator (so ``Generator().manual_seed(0)`` reads as in PyTorch); ``seed()`` reseeds from
    fresh entropy and returns the new seed. A draw happens on the device of the tensor being
    created, from this generator's stream for that device. ``device=`` is accepted for PyTorch
    code (it only checks the name): the same Generator serves every device.
    """

    def __init__(self, seed=None, *, device=None) -> None:
        if isinstance(seed, str):
            raise TypeError(
                f"Generator({seed!r}): the first argument is the seed; one Generator serves every device, "
                f"so write Generator() (or Generator(device={seed!r}))"
            )
        if device is not None:
            from xpgrad.backends.device import as_device

            as_device(device)
        self._streams: dict = {}
        self._seed = 0
        if seed is None:
            self.seed()
        else:
            self.manual_seed(seed)

    def manual_seed(self, seed) -> Generator:
        self._seed = _check_seed(seed, "Generator.manual_seed")
        self._streams = {}
        return self

    def seed(self) -> int:
        new = int(np.random.SeedSequence().entropy) % (2**63)
        self.manual_seed(new)
        return new

    def initial_seed(self) -> int:
        return self._seed

    def stream(self, device):
        """This generator's stream for ``device`` (created from the seed on first use)."""
        backend = device.backend
        idx = device.index or 0
        key = (backend.name, device.type, idx)
        s = self._streams.get(key)
        if s is None:
            s = self._streams[key] = backend.make_stream((self._seed + idx) % (_MAX_SEED + 1), device)
        return s

    def __repr__(self) -> str:
        return f"<xpgrad Generator seed={self._seed}>"


def stream_for(generator, device):
    """The stream ``generator`` draws from on ``device``: None (the default generator) for None."""
    if generator is None:
        return None
    if not isinstance(generator, Generator):
        raise TypeError(
            f"generator= must be an ag.Generator, got {type(generator).__module__}.{type(generator).__name__}"
        )
    return generator.stream(device)


def _draw_kw(generator, device) -> dict:
    # The stream goes to the backend only when there is one: default draws call exactly as before.
    s = stream_for(generator, device)
    return {} if s is None else {"stream": s}


def randint(low=0, high=None, size=None, *, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Integers uniform on [low, high), as ``torch.randint``: ``randint(high, size)`` or
    ``randint(low, high, size)``; int64 unless ``dtype`` says otherwise."""
    if size is None:
        if high is None or isinstance(high, (int, np.integer)):
            raise TypeError("randint: size is required, e.g. randint(10, (3,)) or randint(0, 10, size=(3,))")
        low, high, size = 0, low, high  # randint(high, size)
    elif high is None:
        low, high = 0, low
    for name, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"randint: {name} must be an int, got {type(v).__name__}")
    low, high = int(low), int(high)
    if high <= low:
        raise ValueError(f"randint: needs low < high, got low={low}, high={high}")
    shape = (int(size),) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
    dtype = np.dtype(np.int64 if dtype is None else dtype)
    if dtype.kind not in "iu":
        raise TypeError(f"randint: dtype must be an integer dtype, got {dtype}")
    if requires_grad:
        raise RuntimeError("randint: only floating-point tensors can require gradients")
    dev = _dev(device)
    data = dev.backend.integers(shape, low, high, dtype, dev, **_draw_kw(generator, dev))
    return _finish(data, dev, False)


def _like(t: Tensor, dtype, device, what: str):
    if not isinstance(t, Tensor):
        raise TypeError(f"{what} expects a Tensor, got {type(t).__name__}")
    dev = _dev(device) if device is not None else t.device
    dtype = np.dtype(dtype) if dtype is not None else t.dtype
    if dtype.kind != "f":
        raise TypeError(f"{what}: needs a floating-point dtype, got {dtype}; pass dtype=")
    return dev, dtype


def rand_like(t: Tensor, *, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Uniform on [0, 1) with ``t``'s shape, dtype and device (unless given)."""
    dev, dtype = _like(t, dtype, device, "rand_like")
    data = dev.backend.uniform(tuple(t.shape), 0.0, 1.0, dtype, dev, **_draw_kw(generator, dev))
    return _finish(data, dev, requires_grad)


def randn_like(t: Tensor, *, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Standard normal with ``t``'s shape, dtype and device (unless given)."""
    dev, dtype = _like(t, dtype, device, "randn_like")
    data = dev.backend.normal(tuple(t.shape), 0.0, 1.0, dtype, dev, **_draw_kw(generator, dev))
    return _finish(data, dev, requires_grad)


def multinomial(probs: Tensor, num_samples: int, replacement: bool = False, *, generator=None) -> Tensor:
    """Category indices (int64) drawn from the rows of ``probs``, as ``torch.multinomial``.

    ``probs``: 1-D (one distribution; the result has shape (num_samples,)) or 2-D (one per row;
    (rows, num_samples)), non-negative, finite, each row with a positive sum (it need not sum to 1).
    With ``replacement=False`` a category comes at most once per row, so ``num_samples`` may not
    exceed the number of nonzero categories of any row. Not differentiable.
    """
    if not isinstance(probs, Tensor):
        raise TypeError(f"multinomial expects a Tensor of probabilities, got {type(probs).__name__}")
    if probs.ndim not in (1, 2):
        raise ValueError(f"multinomial: probs must be 1-D or 2-D, got shape {probs.shape}")
    if probs.dtype.kind != "f":
        raise TypeError(f"multinomial: probs must be floating point, got dtype {probs.dtype}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"multinomial: num_samples must be a positive int, got {num_samples!r}")
    num_samples = int(num_samples)
    dev = probs.device
    backend = dev.backend
    xp = backend.xp
    p = probs.data.reshape(1, -1) if probs.ndim == 1 else probs.data
    rows, k = p.shape
    if k == 0:
        raise ValueError("multinomial: probs has no categories")
    p = p.astype(np.float64)
    # Host checks of the input (as torch does): invalid rows raise instead of sampling garbage.
    if bool(backend.to_numpy(xp.any(~xp.isfinite(p) | (p < 0)))):
        raise ValueError("multinomial: probabilities must be finite and non-negative")
    totals = p.sum(axis=1, keepdims=True)
    nonzero = backend.to_numpy((p > 0).sum(axis=1))
    if int(nonzero.min()) == 0:
        raise ValueError("multinomial: every row of probs needs a positive sum")
    if not replacement and num_samples > int(nonzero.min()):
        raise ValueError(
            f"multinomial: cannot draw {num_samples} samples without replacement from a row with only "
            f"{int(nonzero.min())} nonzero categories; pass replacement=True or fewer samples"
        )
    kw = _draw_kw(generator, dev)
    if replacement:
        # Inverse CDF: the category whose cumulative interval holds the uniform draw. Empty intervals
        # (zero probabilities) are never hit: u >= c[j-1] == c[j] counts j among those passed.
        cdf = xp.cumsum(p / totals, axis=1)
        cdf[:, -1] = 1.0
        u = backend.uniform((rows, num_samples), 0.0, 1.0, np.float64, dev, **kw)
        out = (u[:, :, None] >= cdf[:, None, :]).sum(axis=2)
    else:
        # Exponential races: category j finishes at E_j / p_j (E_j ~ Exp(1)); the first
        # num_samples finishers are a draw without replacement. Zero-probability ones never finish.
        u = backend.uniform((rows, k), 0.0, 1.0, np.float64, dev, **kw)
        e = -xp.log1p(-u)
        keys = xp.where(p > 0, e / xp.where(p > 0, p, 1.0), np.inf)
        out = xp.argsort(keys, axis=1, kind="stable")[:, :num_samples]
    out = out.astype(np.int64)
    if probs.ndim == 1:
        out = out.reshape(num_samples)
    return _finish(out, dev, False)
