"""Embedding lookup (``embedding``) and ``one_hot``."""
from __future__ import annotations

import numpy as np

from xpgrad import autograd as ag
from xpgrad.autograd import Function, Tensor

from ._common import _is_graph, _on_device, _tensor, node


def _scatter_rows(backend, g, idx, num, padding_idx):
    """The (num, dim) weight gradient: each row of ``g`` added to the row its index picked."""
    dim = g.shape[-1]
    out = backend.xp.zeros((num, dim), dtype=g.dtype)
    backend.scatter_add(out, idx.reshape(-1), g.reshape(-1, dim))
    if padding_idx is not None:
        out[padding_idx] = 0
    return out


@node()
class _Embedding(Function):
    """``weight[idx]``. The index Tensor is saved for backward, so changing it in place in between raises."""

    raw_backward = True

    @staticmethod
    def forward(ctx, weight, idx, padding_idx):
        ctx.save_for_backward(idx)
        ctx.num = weight.data.shape[0]
        ctx.padding_idx = padding_idx
        return weight.data[idx.data]

    @staticmethod
    def backward(ctx, g):
        (idx,) = ctx.saved
        if _is_graph(g):
            return _EmbeddingGrad.apply(g, idx, ctx.num, ctx.padding_idx)
        # Repeated indices accumulate (scatter-add), never overwrite.
        return _scatter_rows(ctx.device.backend, g, idx, ctx.num, ctx.padding_idx)


@node()
class _EmbeddingGrad(Function):
    """The embedding's weight gradient as an op, so it can be differentiated again (a gather)."""

    raw_backward = True

    @staticmethod
    def forward(ctx, g, idx, num, padding_idx):
        ctx.save_for_backward(idx)
        ctx.padding_idx = padding_idx
        return _scatter_rows(g.device.backend, g.data, idx.data, num, padding_idx)

    @staticmethod
    def backward(ctx, gg):
        (idx,) = ctx.saved
        out = _Embedding.apply(gg, idx, None) if _is_graph(gg) else gg[idx]
        if ctx.padding_idx is not None:
            out = out * (idx != ctx.padding_idx)[..., None].astype(gg.dtype)
        return out


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """Rows of ``weight`` (num_embeddings, dim) picked by the integer tensor ``input``.

    The gradient scatter-adds into the picked rows (repeated indices accumulate); the row
    ``padding_idx``, if given, gets no gradient.
    """
    index = _on_device(input, weight, "embedding: input")
    idx = index.data
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: input must hold integer indices, got dtype {idx.dtype}")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got shape {weight.shape}")
    num = weight.shape[0]
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise ValueError(f"embedding: padding_idx {padding_idx} is out of range for {num} embeddings")
        padding_idx = int(padding_idx) % num
    if weight.device.type == "cpu" and idx.size and (idx.min() < -num or idx.max() >= num):
        raise IndexError(
            f"embedding: index out of range: indices must be in [0, {num}), got min {idx.min()}, max {idx.max()}"
        )
    return _Embedding.apply(weight, index, padding_idx)


def one_hot(t: Tensor, num_classes: int = -1) -> Tensor:
    """int64 tensor of shape ``t.shape + (num_classes,)`` with a 1 at each index of ``t``."""
    _tensor(t, "one_hot: input")
    idx = t.data
    if idx.dtype.kind not in "iu":
        raise TypeError(f"one_hot: input must hold integer class indices, got dtype {idx.dtype}")
    xp = t.device.backend.xp
    if num_classes < 0:
        # Inferring the class count reads the maximum back to the host (pass num_classes to avoid it).
        num_classes = int(t.device.backend.to_numpy(idx.max())) + 1 if idx.size else 0
    if t.device.type == "cpu" and idx.size and (idx.min() < 0 or idx.max() >= num_classes):
        raise ValueError(f"one_hot: class values must be in [0, {num_classes}), got min {idx.min()}, max {idx.max()}")
    out = (idx[..., None] == xp.arange(num_classes)).astype(np.int64)
    return ag.tensor(out, device=t.device)

