"""The two ops behind ``cross_entropy``: the general one and the plain fast path.

Both are log_softmax + negative log-likelihood in one node, shifted by the row maximum, so logits of
magnitude 1e4 and ``-inf`` masks give finite values and gradients. Every variant is
``loss_i = -sum_c A_ic * log_softmax(x)_ic``, with A built from the target (one-hot or probabilities),
label smoothing and class weights; its gradient is ``(softmax * sum_c A_ic - A) * g_i``, which is
``softmax - onehot`` in the plain case. Both nodes print as ``<CrossEntropyBackward>``; ``kind`` on the
node says which ran ("plain", "indices" or "probs").
"""
from __future__ import annotations

import numpy as np

from xpgrad.autograd import Function

from ._common import _array, _is_graph, _log_softmax_array, node
from .activations import log_softmax, softmax


@node("CrossEntropy")
class _CrossEntropy(Function):
    """Cross-entropy of logits (N, C[, d...]) or (C,) against class indices (``kind`` "indices") or class
    probabilities ("probs"), with optional class ``weight`` (a Tensor of shape (C,)), ``ignore_index`` and
    label smoothing ``eps``. ``reduction="mean"`` divides by the summed weights of the counted targets
    (probability targets: by the number of samples), as PyTorch does.
    """

    raw_backward = True

    @staticmethod
    def forward(ctx, x, target, weight, reduction, ignore_index, eps):
        xp = ctx.xp
        xd = x.data
        dtype = xd.dtype
        axis = 1 if xd.ndim >= 2 else 0
        C = xd.shape[axis]
        logp = _log_softmax_array(xp, xd, axis)
        kshape = xd.shape[:axis] + (1,) + xd.shape[axis + 1:]
        cshape = (1,) * axis + (C,) + (1,) * (xd.ndim - axis - 1)
        wb = weight.data.reshape(cshape) if weight is not None else None
        soft = target.data.dtype.kind == "f"
        ctx.kind, ctx.reduction = ("probs" if soft else "indices"), reduction
        ctx.axis, ctx.C, ctx.kshape, ctx.cshape, ctx.eps, ctx.soft = axis, C, kshape, cshape, eps, soft
        if soft:
            coef = _soft_coef(target.data, wb, eps, C)
            with np.errstate(invalid="ignore"):
                per = -xp.where(coef != 0, coef * logp, 0).sum(axis=axis)
            denom = per.size
            onehot = w_t = valid = None
        else:
            t = target.data
            valid = t != ignore_index if ignore_index is not None else xp.ones(t.shape, dtype=bool)
            t_safe = xp.where(valid, t, 0)
            onehot = xp.expand_dims(t_safe, axis) == xp.arange(C).reshape(cshape)
            w_t = (weight.data[t_safe] if weight is not None else xp.ones(t.shape, dtype=dtype)) * valid
            w_t = w_t.astype(dtype, copy=False)
            picked = xp.where(onehot, logp, 0).sum(axis=axis)
            per = -(picked * w_t)
            if eps:
                smooth = -(logp * wb if wb is not None else logp).sum(axis=axis)
                per = per * (1.0 - eps) + xp.where(valid, smooth, 0) * (eps / C)
            denom = w_t.sum()
        per = per.astype(dtype, copy=False)
        denom = xp.asarray(denom, dtype=dtype) if reduction == "mean" else None
        # Index targets live on in onehot/valid (copies); probability targets are read again, so they
        # are saved as Tensors, as are the class weights: an in-place change to either raises at backward.
        ctx.save_for_backward(x, target if soft else None, weight, logp, onehot, w_t, valid, denom)
        if reduction == "none":
            return per
        total = per.sum()
        if reduction == "sum":
            return total
        return total / denom

    @staticmethod
    def backward(ctx, g):
        x, target, weight, logp, onehot, w_t, valid, denom = ctx.saved
        graph = _is_graph(g)
        axis, C, eps, soft = ctx.axis, ctx.C, ctx.eps, ctx.soft
        wb = _array(weight).reshape(ctx.cshape) if weight is not None else None  # a constant on either path
        need_x = ctx.next_edges[0] is not None
        if ctx.reduction == "mean":
            g = g / denom
        if need_x and not graph and not soft and wb is None and axis == 1 and len(ctx.kshape) == 2:
            kernel = ctx.device.backend.fused("softmax_cross_entropy_backward")
            if kernel is not None:
                # One fused kernel for (softmax - smoothed one-hot) * g. The class of each row is its
                # one-hot's argmax; rows that do not count get -1, which no class index can equal.
                xp = ctx.xp
                cls = xp.where(valid, xp.argmax(onehot, axis=1), -1)
                return kernel(xp.exp(logp), cls, g, label_smoothing=eps, ignore_index=-1), None
        gk = g.reshape(ctx.kshape) if ctx.reduction == "none" else g
        if soft:
            coef = _soft_coef(target, wb, eps, C)
        else:
            # Per-sample factors reshaped to broadcast against the (..., C, ...) one-hot.
            coef = onehot * (w_t * (1.0 - eps)).reshape(ctx.kshape)
            if eps:
                spread = (valid.astype(w_t.dtype) * (eps / C)).reshape(ctx.kshape)
                smooth = (wb if wb is not None else 1.0) * spread
                coef = coef + smooth
            coef = coef.astype(w_t.dtype, copy=False)
        csum = coef.sum(axis=axis, keepdims=True)
        p = softmax(x, axis) if graph else ctx.xp.exp(logp)
        gx = (p * csum - coef) * gk if need_x else None
        gt = None
        if soft and ctx.next_edges[1] is not None:
            lp = log_softmax(x, axis) if graph else logp
            d = lp * (-(1.0 - eps))
            if wb is not None:
                d = d * wb
            gt = d * gk
        return gx, gt


def _soft_coef(t, wb, eps, C):
    coef = t * (1.0 - eps) + eps / C if eps else t
    return coef * wb if wb is not None else coef


@node("CrossEntropy")
class _PlainCrossEntropy(Function):
    """The usual training loss: (N, C) logits on the CPU and (N,) class indices that ``_plain_targets``
    cleared (all in [0, C), none ignored), no class weights, no label smoothing.

    It skips the one-hot algebra of the general op: ``loss_i = logsumexp(x_i) - x_i[t_i]``, the target
    logits picked by flat position, and the raw backward builds ``softmax - onehot`` in one buffer.
    """

    raw_backward = True

    @staticmethod
    def forward(ctx, x, target, reduction):
        ctx.kind, ctx.reduction = "plain", reduction
        xp = ctx.xp
        # C order, so that the arrays below are too and `at` (flat positions) can index them in place.
        xd = xp.ascontiguousarray(x.data)
        n, C = xd.shape
        # Unlike log_softmax, no guard for rows whose maximum is inf or NaN: their loss is NaN here, as
        # in torch. Every other row sums to >= 1 (its maximum contributes exp(0)), so log() needs no errstate.
        shifted = xd - xd.max(axis=1, keepdims=True)
        e = xp.exp(shifted)
        esum = e.sum(axis=1)
        # Flat positions of the targets: 1-D indexing is about twice as fast as [rows, t]. The targets
        # were checked to lie in [0, C), so any integer dtype of them adds exactly.
        at = xp.arange(0, n * C, C)
        xp.add(at, target.data, out=at, casting="unsafe")
        per = xp.log(esum)
        per -= shifted.reshape(-1)[at]
        # softmax = e / esum: backward divides once rather than exponentiating a log-softmax again. It
        # uses `at` (a copy), not the target, so a later in-place change to the target cannot reach it.
        ctx.save_for_backward(x, e, esum, at)  # x: only the create_graph path reads it
        if reduction == "none":
            return per
        total = per.sum() if reduction == "sum" else per.sum() / n
        return xp.asarray(total)  # a 0-d array: apply's conversion of a NumPy scalar is slower

    @staticmethod
    def backward(ctx, g):
        x, e, esum, at = ctx.saved
        n = e.shape[0]
        if _is_graph(g):
            # create_graph: the same softmax - onehot from differentiable ops, so it can be differentiated again.
            onehot = ctx.xp.zeros(e.size, dtype=e.dtype)
            onehot[at] = 1
            gk = g.reshape((n, 1)) if ctx.reduction == "none" else g / n if ctx.reduction == "mean" else g
            return (softmax(x, 1) - onehot.reshape(e.shape)) * gk
        gx = e / esum[:, None]
        gx.reshape(-1)[at] -= 1
        if ctx.reduction == "none":
            gx *= g[:, None]
        else:
            gx *= g / n if ctx.reduction == "mean" else g
        return gx
