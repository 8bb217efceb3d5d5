"""Regression and binary losses: mse_loss, l1_loss, binary_cross_entropy and its logits form."""
from __future__ import annotations

import numpy as np

from xpgrad import autograd as ag
from xpgrad.autograd import Function, Tensor

from ._common import _check_reduction, _const, _is_graph, _on_device, _reduce, _tensor, node


def _loss_pair(input, target, op: str):
    _tensor(input, f"{op}: input")
    target = _on_device(target, input, f"{op}: target")
    if target.shape != input.shape:
        raise ValueError(f"{op}: target shape {target.shape} differs from input shape {input.shape}")
    return target


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Squared error (input - target)**2, averaged (``"mean"``), summed or per element."""
    _check_reduction(reduction, "mse_loss")
    target = _loss_pair(input, target, "mse_loss")
    d = input - target
    return _reduce(d * d, reduction)


def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Absolute error |input - target|, averaged, summed or per element."""
    _check_reduction(reduction, "l1_loss")
    target = _loss_pair(input, target, "l1_loss")
    return _reduce(ag.abs(input - target), reduction)


@node()
class _BinaryCrossEntropy(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, x, t, weight):
        xp = ctx.xp
        xd, td = x.data, t.data
        with np.errstate(divide="ignore"):
            # log clamped at -100 (as PyTorch), so p = 0 or 1 gives a large finite loss.
            log_p = xp.maximum(xp.log(xd), -100.0)
            log_1mp = xp.maximum(xp.log(1.0 - xd), -100.0)
        loss = -(td * log_p + (1.0 - td) * log_1mp)
        if weight is not None:
            loss = loss * weight.data
        ctx.save_for_backward(x, t, weight, log_p, log_1mp)
        return loss.astype(xd.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        x, t, weight, log_p, log_1mp = ctx.saved
        ops = ctx.ops
        if weight is not None:
            g = g * weight
        gx = gt = None
        if ctx.next_edges[0] is not None:
            gx = g * (x - t) / ops.maximum((1.0 - x) * x, 1e-12)
        if ctx.next_edges[1] is not None:
            if _is_graph(x):
                log_p, log_1mp = ag.maximum(ag.log(x), -100.0), ag.maximum(ag.log(1.0 - x), -100.0)
            gt = g * (log_1mp - log_p)
        return gx, gt


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         reduction: str = "mean") -> Tensor:
    """-(t log p + (1 - t) log(1 - p)) for probabilities ``input`` (logs clamped at -100, as PyTorch)."""
    _check_reduction(reduction, "binary_cross_entropy")
    target = _loss_pair(input, target, "binary_cross_entropy")
    if target.dtype != input.dtype:
        target = target.astype(input.dtype)
    if input.device.type == "cpu" and input.size and bool(((input.data < 0) | (input.data > 1)).any()):
        raise ValueError(
            "binary_cross_entropy: all input values must be probabilities in [0, 1]; for logits use "
            "binary_cross_entropy_with_logits (nn.BCEWithLogitsLoss)"
        )
    w = _const(weight, input, "binary_cross_entropy: weight")
    return _reduce(_BinaryCrossEntropy.apply(input, target, w), reduction)


@node()
class _BCEWithLogits(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, x, t, weight, pos_weight):
        xp = ctx.xp
        xd, td = x.data, t.data
        e = xp.exp(-xp.abs(xd))
        # softplus(-x) = log(1 + exp(-x)), written so that exp never overflows.
        sp = xp.log1p(e) + xp.maximum(-xd, 0)
        if pos_weight is not None:
            loss = (1.0 - td) * xd + (1.0 + (pos_weight.data - 1.0) * td) * sp
        else:
            loss = (1.0 - td) * xd + sp
        if weight is not None:
            loss = loss * weight.data
        inv = 1.0 / (1.0 + e)
        sig = xp.where(xd >= 0, inv, e * inv)
        ctx.save_for_backward(x, t, weight, pos_weight, sig, sp)
        return loss.astype(xd.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        x, t, weight, pw, sig, sp = ctx.saved
        graph = _is_graph(x)
        if weight is not None:
            g = g * weight
        gx = gt = None
        if ctx.next_edges[0] is not None:
            if graph:
                sig = ag.sigmoid(x)
            if pw is not None:
                gx = g * ((t * (pw - 1.0) + 1.0) * sig - t * pw)
            else:
                gx = g * (sig - t)
        if ctx.next_edges[1] is not None:
            if pw is not None:
                if graph:
                    sp = ag.log1p(ag.exp(-ag.abs(x))) + ag.relu(-x)
                gt = g * (sp * (pw - 1.0) - x)
            else:
                gt = -g * x
        return gx, gt


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                     reduction: str = "mean", pos_weight: Tensor | None = None) -> Tensor:
    """Sigmoid + binary cross-entropy in one stable op (no overflow for any logit).

    ``pos_weight`` (broadcast along the last axis, e.g. shape (C,)) weighs the positive term.
    """
    _check_reduction(reduction, "binary_cross_entropy_with_logits")
    target = _loss_pair(input, target, "binary_cross_entropy_with_logits")
    if target.dtype != input.dtype:
        target = target.astype(input.dtype)
    w = _const(weight, input, "binary_cross_entropy_with_logits: weight")
    pw = _const(pos_weight, input, "binary_cross_entropy_with_logits: pos_weight")
    return _reduce(_BCEWithLogits.apply(input, target, w, pw), reduction)
