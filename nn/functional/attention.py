"""Attention: ``scaled_dot_product_attention`` as one op.

softmax(q k^T * scale + mask) v in a single node: the scores' softmax is computed once in forward
(shifted by the row maximum, so large scores and ``-inf`` masks stay finite) and its probabilities
are what backward reads. Rows whose every key is masked out attend to nothing and give zeros, as
PyTorch's.
"""
from __future__ import annotations

import math

import numpy as np

from xpgrad import autograd as ag
from xpgrad.autograd import Function, Tensor
from xpgrad.autograd.random import stream_for

from ._common import _is_graph, _shift_by_max, _tensor, node
from .activations import softmax


def _keys_t(x):
    """The last two axes swapped, on either backward path."""
    return x.swapaxes(-1, -2)


@node("ScaledDotProductAttention")
class _Attention(Function):
    """Arguments: q, k, v, ``keep`` (a bool mask Tensor or array, True = take part, or None), ``add``
    (a float mask Tensor added to the scores, or None), the scale, dropout p and its stream."""

    raw_backward = True

    @staticmethod
    def forward(ctx, q, k, v, keep, add, scale, p, stream):
        xp = ctx.xp
        s = (q.data @ _keys_t(k.data)) * scale
        if add is not None:
            s = s + add.data
        keep_d = keep.data if isinstance(keep, Tensor) else keep
        if keep_d is not None:
            s = xp.where(keep_d, s, -xp.inf)
        e = xp.exp(_shift_by_max(xp, s, -1))
        total = e.sum(axis=-1, keepdims=True)
        # A row with every score -inf has total 0: it attends to nothing (probabilities 0, not NaN).
        empty = total == 0
        with np.errstate(invalid="ignore", divide="ignore"):
            probs = e / xp.where(empty, 1.0, total)
        drop = None
        if p > 0.0:
            backend = q.device.backend
            shape, dtype = probs.shape, probs.dtype
            if stream is None:
                u = backend.uniform(shape, 0.0, 1.0, dtype, q.device)
            else:
                u = backend.uniform(shape, 0.0, 1.0, dtype, q.device, stream=stream)
            drop = (u >= p).astype(dtype) * (1.0 / (1.0 - p))
            attn = probs * drop
        else:
            attn = probs
        ctx.scale = scale
        ctx.save_for_backward(q, k, v, keep, add, probs, drop)
        return attn @ v.data

    @staticmethod
    def backward(ctx, g):
        q, k, v, keep, add, probs, drop = ctx.saved
        scale = ctx.scale
        need = ctx.next_edges
        if _is_graph(g):
            # Recompute the probabilities from the inputs with differentiable ops, so that the
            # gradients below are functions of q, k (and the float mask) that differentiate again.
            s = ag.matmul(q, _keys_t(k)) * scale
            if add is not None:
                s = s + add
            if keep is not None:
                s = ag.where(keep, s, -math.inf)
            empty = ag.tensor(probs.sum(axis=-1, keepdims=True) == 0, device=g.device)
            # Masked-out rows are replaced by zeros before the softmax, whose gradient there is then 0.
            probs = ag.where(empty, 0.0, softmax(ag.where(empty, 0.0, s), -1))
        attn = probs if drop is None else probs * drop
        gq = gk = gv = gadd = None
        if need[2] is not None:
            gv = _keys_t(attn) @ g
        if need[0] is not None or need[1] is not None or need[4] is not None:
            ga = g @ _keys_t(v)
            if drop is not None:
                ga = ga * drop
            gs = probs * (ga - (ga * probs).sum(axis=-1, keepdims=True))
            if need[0] is not None:
                gq = (gs @ k) * scale
            if need[1] is not None:
                gk = (_keys_t(gs) @ q) * scale
            if need[4] is not None:
                gadd = gs
        return gq, gk, gv, None, gadd, None, None, None


def _causal(like: Tensor, n_q: int, n_k: int):
    """The (L, S) bool array of a causal mask: query i sees keys 0..i (aligned at the top left)."""
    xp = like.device.backend.xp
    return xp.tril(xp.ones((n_q, n_k), dtype=bool))


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                                 *, generator=None) -> Tensor:
    """softmax(query key^T * scale + mask) value, as PyTorch's ``F.scaled_dot_product_attention``.

    Shapes ``query`` (..., L, E), ``key`` (..., S, E), ``value`` (..., S, Ev), leading axes
    broadcasting; the result is (..., L, Ev). ``attn_mask`` broadcasts to (..., L, S): a bool mask
    says which keys take part (True), a float mask is added to the scores (and gets a gradient).
    ``is_causal`` lets query i see keys 0..i and cannot be combined with ``attn_mask``. ``scale``
    defaults to 1/sqrt(E). ``dropout_p`` > 0 drops attention probabilities (always, as PyTorch's
    functional form: pass 0.0 in eval), drawn from the device's generator or ``generator``.
    """
    op = "scaled_dot_product_attention"
    for name, t in (("query", query), ("key", key), ("value", value)):
        _tensor(t, f"{op}: {name}")
        if t.ndim < 2:
            raise ValueError(f"{op}: {name} must have at least 2 dimensions (..., length, features), got shape {t.shape}")
        if t.data.dtype.kind != "f":
            raise TypeError(f"{op}: {name} must be floating point, got {t.data.dtype}")
    if key.data.dtype != query.data.dtype or value.data.dtype != query.data.dtype:
        raise TypeError(
            f"{op}: query, key and value must have the same dtype, got {query.data.dtype}, {key.data.dtype} "
            f"and {value.data.dtype}"
        )
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"{op}: query's last axis ({query.shape[-1]}) must match key's ({key.shape[-1]})")
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(f"{op}: key and value must have the same length (axis -2), got {key.shape} and {value.shape}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"{op}: dropout_p must be in [0, 1), got {dropout_p}")
    n_q, n_k = query.shape[-2], key.shape[-2]
    keep = add = None
    if attn_mask is not None:
        if is_causal:
            raise RuntimeError(f"{op}: attn_mask should not be set when is_causal=True (use one or the other)")
        _tensor(attn_mask, f"{op}: attn_mask")
        if attn_mask.device is not query.device:
            raise RuntimeError(f"{op}: attn_mask is on {attn_mask.device} but query is on {query.device}; move it first")
        kind = attn_mask.data.dtype.kind
        if kind == "b":
            keep = attn_mask
        elif kind == "f":
            add = attn_mask if attn_mask.data.dtype == query.data.dtype else attn_mask.astype(query.data.dtype)
        else:
            raise TypeError(f"{op}: attn_mask must be bool or floating point, got {attn_mask.data.dtype}")
        shape = attn_mask.shape
        if len(shape) >= 1 and shape[-1] not in (1, n_k) or len(shape) >= 2 and shape[-2] not in (1, n_q):
            raise ValueError(f"{op}: attn_mask of shape {shape} does not broadcast to (..., {n_q}, {n_k})")
    elif is_causal:
        keep = _causal(query, n_q, n_k)
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1]) if query.shape[-1] else 1.0
    stream = None
    if dropout_p > 0.0 and generator is not None:
        stream = stream_for(generator, query.device)
    return _Attention.apply(query, key, value, keep, add, float(scale), float(dropout_p), stream)
