"""Normalization: layer_norm, and batch_norm (batch statistics or running ones)."""
from __future__ import annotations

import numpy as np

from xpgrad import autograd as ag
from xpgrad.autograd import Function, Tensor

from ._common import _is_graph, _tensor, node


@node()
class _Normalize(Function):
    """(x - mean) / sqrt(var + eps) over ``axes`` (biased variance), then * weight + bias.

    weight and bias are Tensors already shaped to broadcast against x (or None). ``stats``, if a
    dict, receives the batch mean and variance arrays (for BatchNorm's running statistics).
    """

    raw_backward = True

    @staticmethod
    def forward(ctx, x, weight, bias, axes, eps, stats):
        xp = ctx.xp
        xd = x.data
        mean = xd.mean(axis=axes, keepdims=True)
        xc = xd - mean
        var = (xc * xc).mean(axis=axes, keepdims=True)
        rstd = 1.0 / xp.sqrt(var + eps)
        out = xc * rstd
        if weight is not None:
            out = out * weight.data
        if bias is not None:
            out = out + bias.data
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.axes = axes
        ctx.eps = eps
        if stats is not None:
            stats["mean"] = mean
            stats["var"] = var
        return out

    @staticmethod
    def backward(ctx, g):
        x, w, mean, rstd = ctx.saved
        axes = ctx.axes
        if _is_graph(x):
            # Recompute the statistics from x with differentiable ops, so the gradient below is a
            # function of x that can be differentiated again.
            mean = x.mean(axis=axes, keepdims=True)
            xc = x - mean
            rstd = 1.0 / ag.sqrt((xc * xc).mean(axis=axes, keepdims=True) + ctx.eps)
            xhat = xc * rstd
        else:
            xhat = (x - mean) * rstd
        need = ctx.next_edges
        gx = gw = gb = None
        gxhat = g * w if w is not None else g
        if need[0] is not None:
            gx = rstd * (gxhat - gxhat.mean(axis=axes, keepdims=True)
                         - xhat * (gxhat * xhat).mean(axis=axes, keepdims=True))
        if need[1] is not None:
            gw = g * xhat
        if need[2] is not None:
            gb = g
        return gx, gw, gb, None, None, None


def layer_norm(x: Tensor, normalized_shape, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalize over the trailing ``normalized_shape`` axes, then scale by ``weight`` and add ``bias``."""
    _tensor(x, "layer_norm: input")
    if isinstance(normalized_shape, (int, np.integer)):
        normalized_shape = (normalized_shape,)
    shape = tuple(int(s) for s in normalized_shape)
    k = len(shape)
    if k == 0 or x.ndim < k or x.shape[x.ndim - k:] != shape:
        raise ValueError(
            f"layer_norm: normalized_shape {shape} does not match the trailing axes of input shape {x.shape}"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.shape != shape:
            raise ValueError(f"layer_norm: {name} has shape {t.shape}, expected normalized_shape {shape}")
    axes = tuple(range(x.ndim - k, x.ndim))
    return _Normalize.apply(x, weight, bias, axes, float(eps), None)


def batch_norm(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None, weight: Tensor | None = None,
               bias: Tensor | None = None, training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch normalization over axis 1 of (N, C) or (N, C, L) inputs, as PyTorch's ``F.batch_norm``.

    In training (or without running statistics) the batch statistics are used and the running
    ones, if given, are updated in place (mean, and the unbiased variance) with ``momentum``.
    """
    _tensor(x, "batch_norm: input")
    if x.ndim not in (2, 3):
        raise ValueError(f"batch_norm expects a 2-D (N, C) or 3-D (N, C, L) input, got shape {x.shape}")
    c = x.shape[1]
    bshape = (c,) if x.ndim == 2 else (c, 1)
    axes = (0,) if x.ndim == 2 else (0, 2)
    w = weight.reshape(bshape) if weight is not None else None
    b = bias.reshape(bshape) if bias is not None else None
    if training or running_mean is None:
        n = x.shape[0] * (x.shape[2] if x.ndim == 3 else 1)
        if n <= 1:
            raise ValueError(
                f"batch_norm: expected more than 1 value per channel when training, got input of shape {x.shape}"
            )
        stats: dict = {}
        out = _Normalize.apply(x, w, b, axes, float(eps), stats)
        if training and running_mean is not None:
            mean = stats["mean"].reshape(c)
            var = stats["var"].reshape(c) * (n / (n - 1))
            running_mean.mul_(1.0 - momentum).add_(mean * momentum)
            running_var.mul_(1.0 - momentum).add_(var * momentum)
        return out
    xp = x.device.backend.xp
    dtype = x.data.dtype
    rstd = (1.0 / xp.sqrt(running_var.data + eps)).astype(dtype, copy=False).reshape(bshape)
    mean = running_mean.data.astype(dtype, copy=False).reshape(bshape)
    scale = rstd if w is None else w * rstd
    shift = -mean * rstd if w is None else -(scale * mean)
    if b is not None:
        shift = b + shift
    out = x * scale
    return out + shift
