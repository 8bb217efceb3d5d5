"""Mini-batches: ``TensorDataset`` and a ``DataLoader`` that keeps batches on the data's device."""
from __future__ import annotations

import math

import numpy as np

from xpgrad import autograd as ag

__all__ = ["TensorDataset", "DataLoader", "random_split_indices"]


class TensorDataset:
    """Tensors (or arrays) that share their first dimension; item ``i`` is the tuple of their rows."""

    def __init__(self, *tensors) -> None:
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        self.tensors = tuple(t if isinstance(t, ag.Tensor) else ag.tensor(t) for t in tensors)
        n = self.tensors[0].shape[0] if self.tensors[0].ndim else None
        for i, t in enumerate(self.tensors):
            if t.ndim == 0 or t.shape[0] != n:
                raise ValueError(
                    "TensorDataset: every tensor needs the same first dimension, got shapes "
                    + ", ".join(str(t.shape) for t in self.tensors)
                )
            if t.device is not self.tensors[0].device:
                raise RuntimeError(f"TensorDataset: tensor {i} is on {t.device}, tensor 0 on {self.tensors[0].device}")

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)


class DataLoader:
    """Iterate over a dataset in mini-batches.

    ``DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, seed=0)``; passing tensors
    directly (``DataLoader((x, y), ...)``) works too. Each epoch (each ``iter()``) draws a new
    order; with ``seed`` the sequence of orders is reproducible; with ``generator`` (an
    ``ag.Generator``) the orders come from its stream for the data's device; with neither, from
    the device generator that ``ag.manual_seed`` seeds. Batches are gathered on the data's device
    with an index array of that device (no host round trip); ``device=`` moves each batch there
    (for data kept on the host). Batches are outside the graph (they are data).

    Sharded (data-parallel) loading: ``rank=dp.rank(), world_size=dp.world_size()`` gives each
    rank its part of every epoch. The epoch's order comes from ``(seed, epoch)`` with the loader's
    own ``epoch`` counter (so no ``set_epoch`` call is needed; ``shuffle=True`` then requires
    ``seed``); it is padded with its first entries to a multiple of ``world_size`` (as torch's
    ``DistributedSampler`` with ``drop_last=False``) and rank ``r`` takes entries ``r, r + world,
    ...``: every rank has ``ceil(n / world_size)`` samples and the same number of steps, and the
    ranks' batches ``j`` together are positions ``[j*world*batch, (j+1)*world*batch)`` of the order.
    """

    def __init__(self, dataset, batch_size: int = 32, shuffle: bool = False, drop_last: bool = False,
                 seed: int | None = None, device=None, generator=None,
                 rank: int | None = None, world_size: int | None = None) -> None:
        if isinstance(dataset, (tuple, list)):
            dataset = TensorDataset(*dataset)
        if not isinstance(dataset, TensorDataset):
            raise TypeError(f"DataLoader expects a TensorDataset or a tuple of tensors, got {type(dataset).__name__}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.device = device
        self._rng = np.random.default_rng(seed) if seed is not None else None
        if generator is not None:
            if seed is not None:
                raise ValueError("DataLoader: give seed= or generator=, not both")
            if not isinstance(generator, ag.Generator):
                raise TypeError(f"DataLoader: generator= must be an ag.Generator, got {type(generator).__name__}")
        self.generator = generator
        self.rank, self.world_size = _check_shard(rank, world_size, self.shuffle, seed, generator)
        self._seed = seed
        #: Epochs started (each ``iter()`` starts one); with ``world_size`` the epoch's order is
        #: drawn from ``(seed, epoch)``, so setting it (when resuming) replays that epoch's order.
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.dataset)
        if self.world_size is not None:
            n = -(-n // self.world_size)  # every rank's shard has ceil(n / world) samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _order(self, n: int):
        dev = self.dataset.tensors[0].device
        backend = dev.backend
        if not self.shuffle:
            return None
        if self._rng is not None:
            return backend.asarray(self._rng.permutation(n))
        if self.generator is not None:
            return backend.permutation(n, dev, stream=self.generator.stream(dev))
        return backend.permutation(n, dev)

    def _shard(self, n: int):
        """This rank's positions for this epoch: the epoch's order padded with its own head to a
        multiple of world_size, then every world_size-th entry from ``rank`` (DistributedSampler's
        rule, so rank r's batch j and the others' together are global positions
        [j * world * batch, (j + 1) * world * batch) of the order)."""
        if self.shuffle:
            order = np.random.default_rng([self._seed, self.epoch]).permutation(n)
        else:
            order = np.arange(n)
        total = -(-n // self.world_size) * self.world_size
        if total > n:
            order = np.concatenate([order, np.resize(order, total - n)])
        return self.dataset.tensors[0].device.backend.asarray(order[self.rank::self.world_size])

    def __iter__(self):
        n = len(self.dataset)
        if self.world_size is not None:
            order = self._shard(n)
            n = len(order)
        else:
            order = self._order(n)
        self.epoch += 1
        stop = n - n % self.batch_size if self.drop_last else n
        # No no_grad() here: a context held across `yield` would leak into the caller's loop body.
        # Data tensors do not require grad, so slicing them records nothing anyway.
        for start in range(0, stop, self.batch_size):
            end = min(start + self.batch_size, n)
            if order is None:
                batch = tuple(t[start:end] for t in self.dataset.tensors)
            else:
                index = order[start:end]
                batch = tuple(t[index] for t in self.dataset.tensors)
            if self.device is not None:
                batch = tuple(t.to(self.device) for t in batch)
            yield batch


def _check_shard(rank, world_size, shuffle, seed, generator):
    if rank is None and world_size is None:
        return None, None
    if rank is None or world_size is None:
        raise ValueError("DataLoader: give both rank= and world_size= (e.g. dp.rank(), dp.world_size()), or neither")
    if isinstance(rank, bool) or isinstance(world_size, bool):
        raise TypeError("DataLoader: rank and world_size must be integers")
    rank, world_size = int(rank), int(world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"DataLoader: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    if shuffle and seed is None:
        raise ValueError(
            "DataLoader: a sharded loader (rank=, world_size=) with shuffle=True needs seed= (the same on "
            "every rank), so that every rank draws the same order" + (" (generator= is per process)" if generator else "")
        )
    return rank, world_size


def random_split_indices(n: int, fractions, seed: int | None = None) -> list[np.ndarray]:
    """Shuffle ``range(n)`` and cut it into parts of the given fractions (the last takes the rest)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    parts, start = [], 0
    for i, f in enumerate(fractions):
        size = n - start if i == len(fractions) - 1 else int(round(f * n))
        parts.append(order[start : start + size])
        start += size
    return parts
