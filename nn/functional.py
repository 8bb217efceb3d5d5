"""Stateless layer functions and losses (``nn.functional``, usually imported as ``F``).

Ops where composing simpler ops would be slow or numerically fragile are single ``Function`` s
whose backward is written once for raw arrays (the fast path) and Tensors (``create_graph=True``,
so every gradient here is differentiable again): ``linear``, ``softmax``, ``log_softmax``,
``cross_entropy``, ``layer_norm``, ``gelu``, ``embedding``, ``dropout``, and the binary
cross-entropies. softmax, log_softmax and cross_entropy shift by the row maximum, so logits of
magnitude 1e4 and ``-inf`` masks give finite values and gradients.
"""
from __future__ import annotations

import math

import numpy as np

from xpgrad import autograd as ag
from xpgrad.autograd import Function, Tensor

__all__ = [
    "linear", "relu", "leaky_relu", "gelu", "sigmoid", "tanh", "softmax", "log_softmax", "dropout", "layer_norm",
    "batch_norm", "embedding", "one_hot", "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "flatten",
]

_REDUCTIONS = ("mean", "sum", "none")


# -- helpers -------------------------------------------------------------------------------------------

def _tensor(x, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(x).__name__}")
    return x


def _axis(axis: int, ndim: int, op: str) -> int:
    if not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{op}: axis must be an int, got {type(axis).__name__}")
    n = max(ndim, 1)
    if not -n <= axis < n:
        raise ValueError(f"{op}: axis {axis} is out of bounds for a tensor of dimension {ndim}")
    return int(axis) % n


def _check_reduction(reduction: str, op: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _on_device(value, like: Tensor, name: str):
    """A Tensor on ``like``'s device from a Tensor, number, list or array (checked, never moved)."""
    if isinstance(value, Tensor):
        if value.device is not like.device:
            raise RuntimeError(f"{name} is on {value.device} but the input is on {like.device}; move it first")
        return value
    backend = like.device.backend
    if isinstance(value, backend.array_type):
        return ag.tensor(value, device=like.device)
    if isinstance(value, np.ndarray) and like.device.type != "cpu":
        raise RuntimeError(
            f"{name} is a NumPy array but the input is on {like.device}; wrap it with ag.tensor(..., device=...)"
        )
    return ag.tensor(value, device=like.device)


def _const(value, like: Tensor, name: str):
    """The array of an optional constant (weights of a loss) in ``like``'s dtype, or None."""
    if value is None:
        return None
    arr = _on_device(value, like, name).data
    return arr.astype(like.data.dtype, copy=False) if like.data.dtype.kind == "f" else arr


def _is_graph(x) -> bool:
    """True on the ``create_graph`` path of a raw backward (values are Tensors, not arrays)."""
    return isinstance(x, Tensor)


def _shift_by_max(xp, x, axis: int):
    """``x`` minus its maximum along ``axis``, so that exp() of it cannot overflow."""
    m = x.max(axis=axis, keepdims=True)
    # A row that is all -inf would give -inf - -inf = NaN in the shift; shift such rows by 0.
    m = xp.where(xp.isfinite(m), m, 0)
    return x - m


def _log_softmax_array(xp, x, axis: int):
    shifted = _shift_by_max(xp, x, axis)
    with np.errstate(divide="ignore"):
        return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def _softmax_array(xp, x, axis: int):
    e = xp.exp(_shift_by_max(xp, x, axis))
    return e / e.sum(axis=axis, keepdims=True)


# -- linear ---------------------------------------------------------------------------------------------

class _Linear(Function):
    """y = x @ w.T + b in one node: one matmul forward, two backward, no transposed copies kept."""

    raw_backward = True

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        xd, wd = x.data, w.data
        if xd.ndim == 2:
            out = xd @ wd.T
        elif xd.ndim == 1:
            out = wd @ xd
        else:
            out = (xd.reshape(-1, xd.shape[-1]) @ wd.T).reshape(xd.shape[:-1] + (wd.shape[0],))
        if b is not None:
            bd = b.data
            if bd.dtype == out.dtype:
                out += bd
            else:
                out = out + bd
        return out

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved
        need = ctx.next_edges
        gx = gw = gb = None
        if need[0] is not None:
            gx = g @ w
        if need[1] is not None or (len(need) > 2 and need[2] is not None):
            g2 = g.reshape((-1, w.shape[0]))
            if need[1] is not None:
                gw = g2.T @ x.reshape((-1, w.shape[1]))
            if len(need) > 2 and need[2] is not None:
                gb = g2.sum(axis=0)
        return gx, gw, gb


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` with ``weight`` of shape (out_features, in_features)."""
    _tensor(x, "linear: input")
    xshape, wshape = x.data.shape, weight.data.shape  # array shapes: no Tensor.shape calls on this hot path
    if len(wshape) != 2 or not xshape or xshape[-1] != wshape[1]:
        raise ValueError(
            f"linear: input of shape {x.shape} does not match weight of shape {weight.shape} "
            f"(the input's last axis must have {weight.shape[1] if weight.ndim == 2 else '?'} features)"
        )
    if bias is not None and bias.data.shape != wshape[:1]:
        raise ValueError(f"linear: bias of shape {bias.shape} does not match weight of shape {weight.shape}")
    return _Linear.apply(x, weight, bias)


# -- activations -----------------------------------------------------------------------------------------

def relu(x: Tensor) -> Tensor:
    return ag.relu(x)


def sigmoid(x: Tensor) -> Tensor:
    return ag.sigmoid(x)


def tanh(x: Tensor) -> Tensor:
    return ag.tanh(x)


class _LeakyRelu(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, x, slope):
        xd = x.data
        # The slope per element is all backward needs; slope at 0 follows PyTorch (x > 0 is the test).
        ctx.scale = ctx.xp.where(xd > 0, 1.0, slope).astype(xd.dtype, copy=False)
        return xd * ctx.scale

    @staticmethod
    def backward(ctx, g):
        return g * ctx.scale


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    return _LeakyRelu.apply(_tensor(x, "leaky_relu: input"), float(negative_slope))


_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class _Gelu(Function):
    """Exact GELU, x * Phi(x), with Phi the standard normal CDF (via erf)."""

    raw_backward = True

    @staticmethod
    def forward(ctx, x):
        xd = x.data
        cdf = 0.5 * (1.0 + x.device.backend.erf(xd * _SQRT_HALF))
        cdf = cdf.astype(xd.dtype, copy=False)
        ctx.save_for_backward(x)
        ctx.cdf = cdf
        return xd * cdf

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved
        cdf = 0.5 * (1.0 + ag.erf(x * _SQRT_HALF)) if _is_graph(x) else ctx.cdf
        pdf = ctx.ops.exp(x * x * -0.5) * _INV_SQRT_2PI
        return g * (cdf + x * pdf)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU: the exact erf form (``approximate="none"``) or the tanh approximation (``"tanh"``)."""
    _tensor(x, "gelu: input")
    if approximate == "none":
        return _Gelu.apply(x)
    if approximate == "tanh":
        k = math.sqrt(2.0 / math.pi)
        return 0.5 * x * (1.0 + ag.tanh(k * (x + 0.044715 * x * x * x)))
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


class _Softmax(Function):
    raw_backward = True
    saves_output = True

    @staticmethod
    def forward(ctx, x, axis):
        ctx.axis = axis
        return _softmax_array(ctx.xp, x.data, axis)

    @staticmethod
    def backward(ctx, g):
        y = ctx.output
        gy = g * y
        return gy - y * gy.sum(axis=ctx.axis, keepdims=True)


class _LogSoftmax(Function):
    raw_backward = True
    saves_output = True

    @staticmethod
    def forward(ctx, x, axis):
        ctx.axis = axis
        return _log_softmax_array(ctx.xp, x.data, axis)

    @staticmethod
    def backward(ctx, g):
        # d/dx (x - logsumexp x) applied to g: g - softmax * sum(g); softmax = exp(output).
        return g - ctx.ops.exp(ctx.output) * g.sum(axis=ctx.axis, keepdims=True)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``axis``, shifted by the maximum (stable for any finite logits)."""
    _tensor(x, "softmax: input")
    return _Softmax.apply(x, _axis(axis, x.ndim, "softmax"))


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """x - logsumexp(x) along ``axis`` as one op (stable; -inf logits give -inf, not NaN)."""
    _tensor(x, "log_softmax: input")
    return _LogSoftmax.apply(x, _axis(axis, x.ndim, "log_softmax"))


def flatten(x: Tensor, start_axis: int = 1, end_axis: int = -1) -> Tensor:
    return ag.flatten(x, start_axis, end_axis)


# -- dropout --------------------------------------------------------------------------------------------

class _Dropout(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, x, p):
        xd = x.data
        backend = x.device.backend
        keep = backend.uniform(xd.shape, 0.0, 1.0, xd.dtype, x.device) >= p
        # Inverted dropout: survivors are scaled by 1/(1-p) so eval needs no rescaling.
        ctx.scale = keep.astype(xd.dtype) * (1.0 / (1.0 - p))
        return xd * ctx.scale

    @staticmethod
    def backward(ctx, g):
        return g * ctx.scale


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p); identity unless training.

    The mask comes from the device's generator (seeded by ``ag.manual_seed``).
    """
    _tensor(x, "dropout: input")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    return _Dropout.apply(x, float(p))


# -- normalization --------------------------------------------------------------------------------------

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
        ctx.save_for_backward(x, weight)
        ctx.mean = mean
        ctx.rstd = rstd
        ctx.axes = axes
        ctx.eps = eps
        if stats is not None:
            stats["mean"] = mean
            stats["var"] = var
        return out

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved
        axes = ctx.axes
        if _is_graph(x):
            # Recompute the statistics from x with differentiable ops, so the gradient below is a
            # function of x that can be differentiated again.
            mean = x.mean(axis=axes, keepdims=True)
            xc = x - mean
            rstd = 1.0 / ag.sqrt((xc * xc).mean(axis=axes, keepdims=True) + ctx.eps)
            xhat = xc * rstd
        else:
            rstd = ctx.rstd
            xhat = (x - ctx.mean) * rstd
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


# -- embedding ------------------------------------------------------------------------------------------

def _scatter_rows(xp, backend, g, idx, num, padding_idx):
    dim = g.shape[-1]
    out = xp.zeros((num, dim), dtype=g.dtype)
    backend.scatter_add(out, idx.reshape(-1), g.reshape(-1, dim))
    if padding_idx is not None:
        out[padding_idx] = 0
    return out


class _Embedding(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, weight, idx, padding_idx):
        ctx.idx = idx
        ctx.num = weight.data.shape[0]
        ctx.padding_idx = padding_idx
        ctx.backend = weight.device.backend
        return weight.data[idx]

    @staticmethod
    def backward(ctx, g):
        if _is_graph(g):
            return _EmbeddingGrad.apply(g, ctx.idx, ctx.num, ctx.padding_idx, ctx.backend)
        # Repeated indices accumulate (scatter-add), never overwrite.
        return _scatter_rows(ctx.xp, ctx.backend, g, ctx.idx, ctx.num, ctx.padding_idx)


class _EmbeddingGrad(Function):
    """The embedding's weight gradient as an op, so it can be differentiated again (a gather)."""

    raw_backward = True

    @staticmethod
    def forward(ctx, g, idx, num, padding_idx, backend):
        ctx.idx = idx
        ctx.padding_idx = padding_idx
        return _scatter_rows(ctx.xp, backend, g.data, idx, num, padding_idx)

    @staticmethod
    def backward(ctx, gg):
        idx = ctx.idx
        out = _Embedding.apply(gg, idx, None) if _is_graph(gg) else gg[idx]
        if ctx.padding_idx is not None:
            out = out * (idx != ctx.padding_idx)[..., None].astype(gg.dtype)
        return out


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """Rows of ``weight`` (num_embeddings, dim) picked by the integer tensor ``input``.

    The gradient scatter-adds into the picked rows (repeated indices accumulate); the row
    ``padding_idx``, if given, gets no gradient.
    """
    idx = _on_device(input, weight, "embedding: input").data
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
    return _Embedding.apply(weight, idx, padding_idx)


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


# -- classification losses --------------------------------------------------------------------------------

def _check_hard_target(x: Tensor, t, axis: int, C: int, ignore_index, op: str):
    per_shape = x.shape[:axis] + x.shape[axis + 1:]
    if tuple(t.shape) != per_shape:
        raise ValueError(
            f"{op}: target of shape {tuple(t.shape)} does not match input of shape {x.shape} "
            f"(class indices need shape {per_shape}; class probabilities need the input's shape)"
        )
    if x.device.type == "cpu" and t.size:
        bad = (t != ignore_index) & ((t < 0) | (t >= C)) if ignore_index is not None else (t < 0) | (t >= C)
        if bad.any():
            raise IndexError(f"{op}: target {int(t[bad][0])} is out of bounds for {C} classes")


# Each native integer dtype -> (the unsigned dtype of its size, the most classes for which a
# negative value, viewed as unsigned, still lands at or above the class count; see _plain_targets).
_AS_UNSIGNED = {
    np.dtype(f"{kind}{size}"): (np.dtype(f"u{size}"), 2 ** (8 * size - 1) if kind == "i" else math.inf)
    for kind in "iu" for size in (1, 2, 4, 8)
}


def _plain_targets(x: Tensor, t, ignore_index) -> bool:
    """Whether class indices ``t`` let cross_entropy take its plain path: (N, C) logits on the CPU and
    (N,) indices all in [0, C), none equal to ``ignore_index``.

    Anything else, invalid targets included, goes the general way, which validates and raises. Only
    on the CPU: elsewhere reading the check back would wait for the device, as the bounds check would.
    """
    xd = x.data
    if x.device.type != "cpu" or xd.ndim != 2 or t.shape != xd.shape[:1] or not t.size:
        return False
    C = xd.shape[1]
    unsigned, max_classes = _AS_UNSIGNED.get(t.dtype, (None, 0))
    # Viewed as unsigned, negative indices are at least 2**(bits-1): with no more classes than
    # that, one max() checks 0 <= t < C (int8 targets with 200 classes take the general path).
    if unsigned is None or C > max_classes or t.view(unsigned).max() >= C:
        return False
    return ignore_index is None or not 0 <= ignore_index < C or not (t == ignore_index).any()


class _CrossEntropy(Function):
    """log_softmax + negative log-likelihood in one node.

    Every variant is ``loss_i = -sum_c A_ic * log_softmax(x)_ic``, with A built from the target
    (one-hot or probabilities), label smoothing and class weights; its gradient is
    ``(softmax * sum_c A_ic - A) * g_i``, i.e. ``softmax - onehot`` in the plain case.

    ``kind`` is "probs" (probability targets), "indices" (class indices) or "plain": class indices
    that ``_plain_targets`` cleared, with no class weights or label smoothing. That is the usual
    training loss, so it skips the one-hot algebra: it picks the target logits by index, and its raw
    backward builds softmax - onehot in one buffer.
    """

    raw_backward = True

    @staticmethod
    def forward(ctx, x, target, reduction, kind, weight=None, ignore_index=None, eps=0.0):
        ctx.kind, ctx.reduction = kind, reduction
        if kind == "plain":
            return _plain_forward(ctx, x, target.data, reduction)
        xp = ctx.xp
        xd = x.data
        dtype = xd.dtype
        axis = 1 if xd.ndim >= 2 else 0
        C = xd.shape[axis]
        logp = _log_softmax_array(xp, xd, axis)
        kshape = xd.shape[:axis] + (1,) + xd.shape[axis + 1:]
        cshape = (1,) * axis + (C,) + (1,) * (xd.ndim - axis - 1)
        wb = weight.reshape(cshape) if weight is not None else None
        soft = kind == "probs"
        ctx.axis, ctx.C, ctx.kshape, ctx.eps = axis, C, kshape, eps
        ctx.soft, ctx.wb = soft, wb
        ctx.logp = logp
        ctx.save_for_backward(x, target if soft else None)
        if soft:
            coef = _soft_coef(target.data, wb, eps, C)
            with np.errstate(invalid="ignore"):
                per = -xp.where(coef != 0, coef * logp, 0).sum(axis=axis)
            denom = per.size
        else:
            t = target.data
            valid = t != ignore_index if ignore_index is not None else xp.ones(t.shape, dtype=bool)
            t_safe = xp.where(valid, t, 0)
            onehot = xp.expand_dims(t_safe, axis) == xp.arange(C).reshape(cshape)
            w_t = (weight[t_safe] if weight is not None else xp.ones(t.shape, dtype=dtype)) * valid
            w_t = w_t.astype(dtype, copy=False)
            picked = xp.where(onehot, logp, 0).sum(axis=axis)
            per = -(picked * w_t)
            if eps:
                smooth = -(logp * wb if wb is not None else logp).sum(axis=axis)
                per = per * (1.0 - eps) + xp.where(valid, smooth, 0) * (eps / C)
            ctx.onehot, ctx.w_t, ctx.valid = onehot, w_t, valid
            denom = w_t.sum()
        per = per.astype(dtype, copy=False)
        if reduction == "none":
            return per
        total = per.sum()
        if reduction == "sum":
            return total
        ctx.denom = xp.asarray(denom, dtype=dtype)
        return total / ctx.denom

    @staticmethod
    def backward(ctx, g):
        graph = _is_graph(g)
        if ctx.kind == "plain":
            if not graph:
                return _plain_backward(ctx, g), None
            _plain_as_general(ctx)  # create_graph: the general formula below is differentiable
        x, target = ctx.saved
        axis, C, eps, wb = ctx.axis, ctx.C, ctx.eps, ctx.wb
        if ctx.reduction == "mean":
            g = g / ctx.denom
        if not graph and not ctx.soft and wb is None and axis == 1 and len(ctx.kshape) == 2 \
                and ctx.next_edges[0] is not None:
            from xpgrad.backends import cupy_kernels

            if cupy_kernels.is_cupy_array(ctx.logp):
                # One fused kernel for (softmax - smoothed one-hot) * g on CuPy arrays. The class of each row
                # is its one-hot's argmax; rows that do not count get -1, which no class index can equal.
                xp = ctx.xp
                cls = xp.where(ctx.valid, xp.argmax(ctx.onehot, axis=1), -1)
                gx = cupy_kernels.softmax_cross_entropy_backward(
                    xp.exp(ctx.logp), cls, g, label_smoothing=eps, ignore_index=-1)
                return gx, None
        gk = g.reshape(ctx.kshape) if ctx.reduction == "none" else g
        if ctx.soft:
            coef = _soft_coef(target, wb, eps, C)
        else:
            # Per-sample factors reshaped to broadcast against the (..., C, ...) one-hot.
            coef = ctx.onehot * (ctx.w_t * (1.0 - eps)).reshape(ctx.kshape)
            if eps:
                spread = (ctx.valid.astype(ctx.w_t.dtype) * (eps / C)).reshape(ctx.kshape)
                smooth = (wb if wb is not None else 1.0) * spread
                coef = coef + smooth
            coef = coef.astype(ctx.w_t.dtype, copy=False)
        csum = coef.sum(axis=axis, keepdims=True)
        p = softmax(x, axis) if graph else ctx.xp.exp(ctx.logp)
        gx = (p * csum - coef) * gk if ctx.next_edges[0] is not None else None
        gt = None
        if ctx.soft and len(ctx.next_edges) > 1 and ctx.next_edges[1] is not None:
            logp = log_softmax(x, axis) if graph else ctx.logp
            d = logp * (-(1.0 - eps))
            if wb is not None:
                d = d * wb
            gt = d * gk
        return gx, gt


def _plain_forward(ctx, x, t, reduction: str):
    """Forward of the plain kind: loss_i = logsumexp(x_i) - x_i[t_i], both shifted by the row maximum."""
    xp = ctx.xp
    # C order, so that the arrays below are too and `at` (flat positions) can index them in place.
    xd = xp.ascontiguousarray(x.data)
    n, C = xd.shape
    # Unlike log_softmax, no guard for rows whose maximum is inf or NaN: their loss is NaN here, as
    # in torch. Every other row sums to >= 1 (its maximum contributes exp(0)), so log() needs no errstate.
    shifted = xd - xd.max(axis=1, keepdims=True)
    e = xp.exp(shifted)
    esum = e.sum(axis=1)
    # Flat positions of the targets: 1-D indexing is about twice as fast as [rows, t]. t was checked
    # to lie in [0, C), so any integer dtype of it adds exactly.
    at = xp.arange(0, n * C, C)
    xp.add(at, t, out=at, casting="unsafe")
    per = xp.log(esum)
    per -= shifted.reshape(-1)[at]
    # softmax = e / esum: backward divides once rather than exponentiating a log-softmax again. It
    # uses `at`, not t, so a later in-place change to the target cannot reach it.
    ctx.exp, ctx.expsum, ctx.at = e, esum, at
    ctx.save_for_backward(x, None)  # only the create_graph path reads x
    if reduction == "none":
        return per
    total = per.sum() if reduction == "sum" else per.sum() / n
    return xp.asarray(total)  # a 0-d array: apply's conversion of a NumPy scalar is slower


def _plain_backward(ctx, g):
    """Raw backward of the plain kind: softmax - onehot, scaled by g (and 1/N for "mean") in place."""
    gx = ctx.exp / ctx.expsum[:, None]
    gx.reshape(-1)[ctx.at] -= 1
    if ctx.reduction == "none":
        gx *= g[:, None]
    else:
        gx *= g / gx.shape[0] if ctx.reduction == "mean" else g
    return gx


def _plain_as_general(ctx) -> None:
    """Give a plain node the fields of an "indices" one (every sample counts with weight 1, no smoothing)."""
    xp = ctx.xp
    n, C = ctx.exp.shape
    dtype = ctx.exp.dtype
    ctx.axis, ctx.C, ctx.kshape, ctx.eps, ctx.soft, ctx.wb = 1, C, (n, 1), 0.0, False, None
    onehot = xp.zeros(n * C, dtype=bool)
    onehot[ctx.at] = True
    ctx.onehot = onehot.reshape(n, C)
    ctx.valid = xp.ones(n, dtype=bool)
    ctx.w_t = xp.ones(n, dtype=dtype)
    ctx.denom = xp.asarray(n, dtype=dtype)


def _soft_coef(t, wb, eps, C):
    coef = t * (1.0 - eps) + eps / C if eps else t
    return coef * wb if wb is not None else coef


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy between logits ``input`` (N, C[, d...]) or (C,) and ``target``.

    ``target`` holds class indices (shape without the class axis; ``ignore_index`` entries
    contribute nothing) or class probabilities (the input's shape). With ``weight`` (C,),
    ``reduction="mean"`` divides by the summed weights of the counted targets, as PyTorch does
    (probability targets: by the number of samples). One fused op: stable at any logit scale.
    """
    _tensor(input, "cross_entropy: input")
    _check_reduction(reduction, "cross_entropy")
    if input.ndim == 0:
        raise ValueError("cross_entropy: input must have a class axis, got a 0-d tensor")
    if input.data.dtype.kind != "f":
        raise TypeError(f"cross_entropy: input must be floating point (logits), got dtype {input.dtype}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    target = _on_device(target, input, "cross_entropy: target")
    t = target.data
    soft = t.dtype.kind == "f"
    if not soft and t.dtype.kind not in "iu":
        raise TypeError(
            f"cross_entropy: target must hold class indices (int) or probabilities (float), got {target.dtype}"
        )
    if not soft and weight is None and not label_smoothing and _plain_targets(input, t, ignore_index):
        return _CrossEntropy.apply(input, target, reduction, "plain")  # fewer arguments: apply is faster
    axis = 1 if input.ndim >= 2 else 0
    C = input.shape[axis]
    w = _const(weight, input, "cross_entropy: weight")
    if w is not None and tuple(w.shape) != (C,):
        raise ValueError(f"cross_entropy: weight must have shape ({C},), got {tuple(w.shape)}")
    if soft:
        if target.shape != input.shape:
            raise ValueError(
                f"cross_entropy: probability target of shape {target.shape} must match the input's shape {input.shape}"
            )
        if target.dtype != input.dtype:
            target = target.astype(input.dtype)
    else:
        _check_hard_target(input, t, axis, C, ignore_index, "cross_entropy")
    kind = "probs" if soft else "indices"
    return _CrossEntropy.apply(input, target, reduction, kind, w, ignore_index, float(label_smoothing))


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of class indices ``target`` under log-probabilities ``input`` (N, C[, d...])."""
    _tensor(input, "nll_loss: input")
    _check_reduction(reduction, "nll_loss")
    if input.ndim == 0:
        raise ValueError("nll_loss: input must have a class axis, got a 0-d tensor")
    target = _on_device(target, input, "nll_loss: target")
    if target.data.dtype.kind not in "iu":
        raise TypeError(f"nll_loss: target must hold integer class indices, got dtype {target.dtype}")
    axis = 1 if input.ndim >= 2 else 0
    C = input.shape[axis]
    w = _const(weight, input, "nll_loss: weight")
    if w is not None and tuple(w.shape) != (C,):
        raise ValueError(f"nll_loss: weight must have shape ({C},), got {tuple(w.shape)}")
    t = target.data
    _check_hard_target(input, t, axis, C, ignore_index, "nll_loss")
    xp = input.device.backend.xp
    valid = t != ignore_index if ignore_index is not None else xp.ones(t.shape, dtype=bool)
    t_safe = xp.where(valid, t, 0)
    picked = ag.take_along_axis(input, xp.expand_dims(t_safe, axis), axis).squeeze(axis)
    w_t = (w[t_safe] if w is not None else xp.ones(t.shape, dtype=input.dtype)) * valid
    w_t = w_t.astype(input.dtype, copy=False)
    # where() keeps an ignored -inf entry from turning 0 * -inf into NaN.
    per = ag.where(valid, -(picked * w_t), 0.0) if ignore_index is not None else -(picked * w_t)
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    return per.sum() / w_t.sum()


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
            loss = loss * weight
        ctx.save_for_backward(x, t)
        ctx.weight = weight
        ctx.logs = (log_p, log_1mp)
        return loss.astype(xd.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        x, t = ctx.saved
        ops = ctx.ops
        if ctx.weight is not None:
            g = g * ctx.weight
        gx = gt = None
        if ctx.next_edges[0] is not None:
            gx = g * (x - t) / ops.maximum((1.0 - x) * x, 1e-12)
        if len(ctx.next_edges) > 1 and ctx.next_edges[1] is not None:
            if _is_graph(x):
                log_p, log_1mp = ag.maximum(ag.log(x), -100.0), ag.maximum(ag.log(1.0 - x), -100.0)
            else:
                log_p, log_1mp = ctx.logs
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
            loss = (1.0 - td) * xd + (1.0 + (pos_weight - 1.0) * td) * sp
        else:
            loss = (1.0 - td) * xd + sp
        if weight is not None:
            loss = loss * weight
        inv = 1.0 / (1.0 + e)
        ctx.sig = xp.where(xd >= 0, inv, e * inv)
        ctx.sp = sp
        ctx.weight, ctx.pos_weight = weight, pos_weight
        ctx.save_for_backward(x, t)
        return loss.astype(xd.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        x, t = ctx.saved
        graph = _is_graph(x)
        pw = ctx.pos_weight
        if ctx.weight is not None:
            g = g * ctx.weight
        gx = gt = None
        if ctx.next_edges[0] is not None:
            sig = ag.sigmoid(x) if graph else ctx.sig
            if pw is not None:
                gx = g * ((t * (pw - 1.0) + 1.0) * sig - t * pw)
            else:
                gx = g * (sig - t)
        if len(ctx.next_edges) > 1 and ctx.next_edges[1] is not None:
            if pw is not None:
                sp = ag.log1p(ag.exp(-ag.abs(x))) + ag.relu(-x) if graph else ctx.sp
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


# Nodes print as <CrossEntropyBackward>, <LinearBackward>, ...: the underscore only keeps the
# classes out of this module's public names (F.Linear would be mistaken for nn.Linear).
for _cls in (_Linear, _LeakyRelu, _Gelu, _Softmax, _LogSoftmax, _Dropout, _Normalize, _Embedding, _EmbeddingGrad,
             _CrossEntropy, _BinaryCrossEntropy, _BCEWithLogits):
    _cls.__name__ = _cls.__qualname__ = _cls.__name__.lstrip("_")
del _cls
