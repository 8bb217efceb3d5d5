"""nn.functional's differentiable ops (and nn.LSTM, nn.GRU, nn.RNN as functions), as ``OpSpec`` s of tests/autograd/op_table.py.

test_nn_ops.py runs test_ops.py's table-driven properties over ``NN_OPS``: forward against NumPy in
float64 and float32, first and second derivatives against finite differences, values and gradients
against PyTorch, float32 gradients, untouched inputs and unaliased gradients.

As in op_table.py, ``Case.arrays`` are the differentiable float64 inputs and ``kwargs`` everything
else; constant arrays in kwargs (class indices, class weights, embedding indices) are NumPy arrays that
each side wraps itself (``ag.tensor`` on the suite's device, ``torch.from_numpy``). Values stay away
from where an op is not differentiable (relu at 0, l1 at equal values, layer and batch norm of nearly
equal values), and cross-entropy cases always count at least one target, so "mean" is defined.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from op_table import (  # tests/autograd/op_table.py (see conftest.py)
    MAX_SIDE,
    OFF_GRID,
    REAL,
    Case,
    OpSpec,
    _arrays,
    _np_erf,
    _np_sigmoid,
    _torch,
    distinct_arrays,
    elementwise_cases,
    floats,
    one_shape,
)

from xpgrad import autograd as ag
from xpgrad import nn
from xpgrad.nn import functional as F

REDUCTION = st.sampled_from(["mean", "sum", "none"])
PROBABILITY = floats(0.05, 0.95)  # inputs of binary_cross_entropy, away from its clamped logs
UNIT = floats(0.0, 1.0)  # binary targets
WEIGHT = floats(0.5, 2.0)  # class weights, pos_weight


def _tF():
    return _torch().nn.functional


def _th(a):
    """A constant NumPy array (or None) for the torch side."""
    return None if a is None else _torch().from_numpy(a)


def _ag(a):
    """A constant NumPy array (or None) for the xpgrad side, on the suite's device."""
    return None if a is None else ag.tensor(a)


def _np_reduce(per, reduction):
    if reduction == "none":
        return per
    return per.sum() if reduction == "sum" else per.mean()


def _np_log_softmax(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - (np.log(np.exp(x - m).sum(axis=axis, keepdims=True)) + m)


# -- linear and activations -------------------------------------------------------------------------------

@st.composite
def linear_cases(draw, bias: bool):
    """Inputs (..., in) with 0 to 2 leading axes (a 1-D input included), weight (out, in), bias (out,)."""
    lead = draw(one_shape(max_dims=2))
    n_in, n_out = draw(st.integers(1, MAX_SIDE)), draw(st.integers(1, MAX_SIDE))
    arrays = (draw(_arrays(lead + (n_in,), REAL)), draw(_arrays((n_out, n_in), REAL)))
    if bias:
        arrays += (draw(_arrays((n_out,), REAL)),)
    return Case(arrays)


def _np_linear(x, w, b=None):
    out = x @ w.T
    return out if b is None else out + b


@st.composite
def axis_cases(draw):
    """One input of any shape (0-d included) and an axis of it, negative ones too."""
    shape = draw(one_shape())
    n = max(len(shape), 1)
    return Case((draw(_arrays(shape, REAL)),), {"axis": draw(st.integers(-n, n - 1))})


def _np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _np_gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))


def _unary(name, fn, ref, torch_fn, elements=REAL, kwargs=None, **flags):
    return OpSpec(name, fn, ref, torch_fn, elementwise_cases((elements,), kwargs), **flags)


ACTIVATIONS = [
    OpSpec("linear", F.linear, _np_linear, lambda *a: _tF().linear(*a), linear_cases(bias=True)),
    OpSpec("linear_no_bias", F.linear, _np_linear, lambda *a: _tF().linear(*a), linear_cases(bias=False)),
    _unary("F.relu", F.relu, lambda x: np.maximum(x, 0), lambda x: _tF().relu(x), OFF_GRID),
    _unary(
        "leaky_relu", F.leaky_relu, lambda x, negative_slope: np.where(x > 0, x, x * negative_slope),
        lambda x, negative_slope: _tF().leaky_relu(x, negative_slope), OFF_GRID,
        st.fixed_dictionaries({"negative_slope": st.sampled_from([0.01, 0.2, -0.5, 2.0])}),
    ),
    _unary("gelu", F.gelu, lambda x: x * (0.5 * (1.0 + _np_erf(x * (1.0 / math.sqrt(2.0))))),
           lambda x: _tF().gelu(x)),
    _unary("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), _np_gelu_tanh,
           lambda x: _tF().gelu(x, approximate="tanh")),
    _unary("F.sigmoid", F.sigmoid, _np_sigmoid, lambda x: _torch().sigmoid(x), floats(-6, 6)),
    _unary("F.tanh", F.tanh, np.tanh, lambda x: _torch().tanh(x)),
    OpSpec("softmax", F.softmax, _np_softmax, lambda x, axis: _torch().softmax(x, axis), axis_cases()),
    OpSpec("log_softmax", F.log_softmax, _np_log_softmax, lambda x, axis: _torch().log_softmax(x, axis),
           axis_cases()),
]


# -- dropout -----------------------------------------------------------------------------------------------

DROPOUT_SEED = 1234


def _seeded_dropout(x, p):
    """Training-mode dropout with the generator reseeded first: the same mask at every call."""
    ag.manual_seed(DROPOUT_SEED)
    return F.dropout(x, p, training=True)


def _np_seeded_dropout(x, p):
    # The mask is the device generator's (reseeded the same way), the rest is the formula.
    ag.manual_seed(DROPOUT_SEED)
    keep = ag.rand(*x.shape, dtype=x.dtype).numpy() >= p
    return x * (keep.astype(x.dtype) * (1.0 / (1.0 - p)))


DROPOUT_P = st.sampled_from([0.2, 0.5, 0.8])

DROPOUT = [
    # Not training, or p = 0: the identity.
    _unary(
        "dropout_identity", F.dropout, lambda x, p, training: x,
        lambda x, p, training: _tF().dropout(x, p, training=training), REAL,
        st.one_of(DROPOUT_P.map(lambda p: {"p": p, "training": False}), st.just({"p": 0.0, "training": True})),
    ),
    # torch draws other masks: no torch oracle.
    _unary("dropout_seeded", _seeded_dropout, _np_seeded_dropout, None, REAL,
           st.fixed_dictionaries({"p": DROPOUT_P})),
]


# -- normalization -----------------------------------------------------------------------------------------

@st.composite
def layer_norm_cases(draw, affine: tuple):
    """Distinct values (a normalized group never has a tiny variance), normalized over 1 to all trailing
    axes; ``affine`` names the extra inputs, ("weight",) or ("weight", "bias"), of the normalized shape."""
    shape = draw(one_shape(min_dims=1, max_dims=3))
    k = draw(st.integers(1, len(shape)))
    normalized = shape[len(shape) - k:]
    arrays = (draw(distinct_arrays(shape)),) + tuple(draw(_arrays(normalized, REAL)) for _ in affine)
    return Case(arrays, {"normalized_shape": normalized[0] if k == 1 and draw(st.booleans()) else normalized})


def _np_normalize(x, axes, w=None, b=None, eps=1e-5):
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    out = (x - mean) / np.sqrt(var + eps)
    if w is not None:
        out = out * w
    return out if b is None else out + b


def _np_layer_norm(x, *wb, normalized_shape):
    k = 1 if isinstance(normalized_shape, int) else len(normalized_shape)
    return _np_normalize(x, tuple(range(x.ndim - k, x.ndim)), *wb)


def _t_layer_norm(x, *wb, normalized_shape):
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
    return _tF().layer_norm(x, shape, *wb, eps=1e-5)


@st.composite
def batch_norm_cases(draw):
    """(N, C) or (N, C, L) with more than one value per channel, distinct values, weight and bias (C,)."""
    c = draw(st.integers(1, MAX_SIDE))
    if draw(st.booleans()):
        shape = (draw(st.integers(2, MAX_SIDE)), c)
    else:
        n, length = draw(st.integers(1, MAX_SIDE)), draw(st.integers(1, MAX_SIDE))
        if n * length == 1:
            length = 2
        shape = (n, c, length)
    return Case((draw(distinct_arrays(shape)), draw(_arrays((c,), REAL)), draw(_arrays((c,), REAL))))


def _np_batch_norm(x, w, b):
    cshape = (-1,) if x.ndim == 2 else (-1, 1)
    return _np_normalize(x, (0,) if x.ndim == 2 else (0, 2), w.reshape(cshape), b.reshape(cshape))


NORMALIZATION = [
    OpSpec("layer_norm", lambda x, normalized_shape: F.layer_norm(x, normalized_shape), _np_layer_norm,
           _t_layer_norm, layer_norm_cases(())),
    OpSpec("layer_norm_weight", lambda x, w, normalized_shape: F.layer_norm(x, normalized_shape, w),
           _np_layer_norm, _t_layer_norm, layer_norm_cases(("weight",))),
    OpSpec("layer_norm_affine", lambda x, w, b, normalized_shape: F.layer_norm(x, normalized_shape, w, b),
           _np_layer_norm, _t_layer_norm, layer_norm_cases(("weight", "bias"))),
    OpSpec("batch_norm_training", lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
           _np_batch_norm, lambda x, w, b: _tF().batch_norm(x, None, None, w, b, training=True),
           batch_norm_cases()),
]


# -- embedding ---------------------------------------------------------------------------------------------

@st.composite
def embedding_cases(draw):
    """A weight (num, dim) and indices of 0 to 2 axes, repeats common (their gradients accumulate)."""
    num, dim = draw(st.integers(1, 4)), draw(st.integers(1, MAX_SIDE))
    index_shape = draw(one_shape(max_dims=2))
    indices = draw(hnp.arrays(np.int64, index_shape, elements=st.integers(0, num - 1)))
    return Case((draw(_arrays((num, dim), REAL)),), {"indices": indices})


EMBEDDING = [
    OpSpec("embedding", lambda w, indices: F.embedding(_ag(indices), w), lambda w, indices: w[indices],
           lambda w, indices: _tF().embedding(_th(indices), w), embedding_cases()),
]


# -- classification losses ---------------------------------------------------------------------------------

@st.composite
def logits_shape(draw, plain: bool):
    """(N, C) for the plain path; else also (C,) (unbatched) and (N, C, d) (a spatial axis)."""
    side = st.integers(1, MAX_SIDE)
    if plain:
        return (draw(side), draw(side))
    form = draw(st.sampled_from(["C", "NC", "NCd"]))
    return {"C": lambda: (draw(side),), "NC": lambda: (draw(side), draw(side)),
            "NCd": lambda: (draw(side), draw(side), draw(side))}[form]()


def _class_axis(shape) -> int:
    return 1 if len(shape) >= 2 else 0


@st.composite
def class_index_cases(draw, plain=False, weighted=False, smoothing=False):
    """Logits (or log-probabilities) and class indices, with the options a path takes.

    ``plain``: (N, C), no weight, no smoothing, nothing ignored (cross_entropy's plain path on the CPU).
    Otherwise ``ignore_index`` is -100 or a class, and at least one target is not ignored.
    """
    shape = draw(logits_shape(plain))
    axis = _class_axis(shape)
    C = shape[axis]
    target = draw(hnp.arrays(np.int64, shape[:axis] + shape[axis + 1:], elements=st.integers(0, C - 1)))
    kwargs = {"target": target, "reduction": draw(REDUCTION)}
    if plain:
        return Case((draw(_arrays(shape, REAL)),), kwargs)
    ignore_index = draw(st.sampled_from([-100]) | st.integers(0, C - 1))
    if (target == ignore_index).all():
        ignore_index = -100
    kwargs["ignore_index"] = ignore_index
    if weighted:
        kwargs["weight"] = draw(_arrays((C,), WEIGHT))
    if smoothing:
        kwargs["label_smoothing"] = draw(st.sampled_from([0.0, 0.1, 0.25, 1.0]))
    return Case((draw(_arrays(shape, REAL)),), kwargs)


@st.composite
def probability_target_cases(draw):
    """Logits and probability targets (both differentiable), class weights and smoothing optional."""
    shape = draw(logits_shape(plain=False))
    C = shape[_class_axis(shape)]
    arrays = (draw(_arrays(shape, REAL)), draw(_arrays(shape, floats(0.05, 1.0))))
    kwargs = {"reduction": draw(REDUCTION), "label_smoothing": draw(st.sampled_from([0.0, 0.2]))}
    if draw(st.booleans()):
        kwargs["weight"] = draw(_arrays((C,), WEIGHT))
    return Case(arrays, kwargs)


def _np_class_loss(x, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0, log_probs=False):
    """PyTorch's cross_entropy (or nll_loss, on log-probabilities), in NumPy and in x's dtype."""
    axis = _class_axis(x.shape)
    C = x.shape[axis]
    eps = label_smoothing
    logp = x if log_probs else _np_log_softmax(x, axis)
    w = np.ones(C, x.dtype) if weight is None else weight.astype(x.dtype)
    wb = w.reshape((1,) * axis + (C,) + (1,) * (x.ndim - axis - 1))
    if target.dtype.kind == "f":
        q = target * (1.0 - eps) + eps / C
        per = -(q * wb * logp).sum(axis=axis)
        denom = per.size
    else:
        valid = target != ignore_index
        t = np.where(valid, target, 0)
        picked = np.take_along_axis(logp, np.expand_dims(t, axis), axis).squeeze(axis)
        w_t = w[t] * valid
        smooth = np.where(valid, -(wb * logp).sum(axis=axis), 0.0)
        per = -(1.0 - eps) * w_t * picked + (eps / C) * smooth
        denom = w_t.sum()
    per = per.astype(x.dtype)
    if reduction == "none":
        return per
    return per.sum() if reduction == "sum" else per.sum() / denom


def _cross_entropy(x, target, weight=None, **kw):
    return F.cross_entropy(x, _ag(target), weight=_ag(weight), **kw)


def _t_cross_entropy(x, target, weight=None, **kw):
    return _tF().cross_entropy(x, _th(target), weight=_th(weight), **kw)


def _probs_cross_entropy(x, q, weight=None, **kw):
    return F.cross_entropy(x, q, weight=_ag(weight), **kw)


def _t_probs_cross_entropy(x, q, weight=None, **kw):
    return _tF().cross_entropy(x, q, weight=_th(weight), **kw)


CLASSIFICATION = [
    OpSpec("cross_entropy_plain", _cross_entropy, _np_class_loss, _t_cross_entropy, class_index_cases(plain=True)),
    OpSpec("cross_entropy_weighted", _cross_entropy, _np_class_loss, _t_cross_entropy,
           class_index_cases(weighted=True)),
    OpSpec("cross_entropy_ignore_smoothing", _cross_entropy, _np_class_loss, _t_cross_entropy,
           class_index_cases(smoothing=True)),
    OpSpec("cross_entropy_weighted_smoothed", _cross_entropy, _np_class_loss, _t_cross_entropy,
           class_index_cases(weighted=True, smoothing=True)),
    OpSpec("cross_entropy_probs", _probs_cross_entropy, _np_class_loss, _t_probs_cross_entropy,
           probability_target_cases()),
    OpSpec(
        "nll_loss", lambda x, target, weight=None, **kw: F.nll_loss(x, _ag(target), weight=_ag(weight), **kw),
        lambda x, **kw: _np_class_loss(x, log_probs=True, **kw),
        lambda x, target, weight=None, **kw: _tF().nll_loss(x, _th(target), weight=_th(weight), **kw),
        class_index_cases(weighted=True) | class_index_cases(),
    ),
]


# -- regression and binary losses --------------------------------------------------------------------------

@st.composite
def pair_cases(draw, apart=False, input_elements=REAL, target_elements=REAL):
    """Input and target of one shape (0-d included), both differentiable; ``apart``: never equal."""
    shape = draw(one_shape())
    x = draw(_arrays(shape, input_elements))
    if apart:
        t = x + draw(_arrays(shape, st.sampled_from([-1.0, 1.0]).flatmap(lambda s: floats(0.2, 1).map(lambda m: s * m))))
    else:
        t = draw(_arrays(shape, target_elements))
    return Case((x, t), {"reduction": draw(REDUCTION)})


@st.composite
def binary_cases(draw, logits: bool):
    """Probabilities (or logits) and targets in [0, 1]; a weight broadcast against them and, for
    logits, a pos_weight along the last axis, each optional."""
    case = draw(pair_cases(input_elements=REAL if logits else PROBABILITY, target_elements=UNIT))
    shape = case.arrays[0].shape
    kwargs = dict(case.kwargs)
    if draw(st.booleans()):
        kwargs["weight"] = draw(_arrays(shape[draw(st.integers(0, len(shape))):], WEIGHT))
    if logits and draw(st.booleans()):
        kwargs["pos_weight"] = draw(_arrays(shape[-1:], WEIGHT))
    return Case(case.arrays, kwargs)


def _np_bce(p, t, weight=None, reduction="mean"):
    per = -(t * np.log(p) + (1.0 - t) * np.log(1.0 - p))
    return _np_reduce(per if weight is None else per * weight.astype(p.dtype), reduction)


def _np_bce_with_logits(x, t, weight=None, reduction="mean", pos_weight=None):
    sp = np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0)  # softplus(-x) = -log(sigmoid(x))
    pw = 1.0 if pos_weight is None else pos_weight.astype(x.dtype)
    per = pw * t * sp + (1.0 - t) * (sp + x)
    return _np_reduce(per if weight is None else per * weight.astype(x.dtype), reduction)


LOSSES = [
    OpSpec("mse_loss", F.mse_loss, lambda x, t, reduction: _np_reduce((x - t) ** 2, reduction),
           lambda x, t, reduction: _tF().mse_loss(x, t, reduction=reduction), pair_cases()),
    OpSpec("l1_loss", F.l1_loss, lambda x, t, reduction: _np_reduce(np.abs(x - t), reduction),
           lambda x, t, reduction: _tF().l1_loss(x, t, reduction=reduction), pair_cases(apart=True)),
    OpSpec(
        "binary_cross_entropy",
        lambda p, t, weight=None, **kw: F.binary_cross_entropy(p, t, weight=_ag(weight), **kw), _np_bce,
        lambda p, t, weight=None, **kw: _tF().binary_cross_entropy(p, t, weight=_th(weight), **kw),
        binary_cases(logits=False),
    ),
    OpSpec(
        "binary_cross_entropy_with_logits",
        lambda x, t, weight=None, pos_weight=None, **kw: F.binary_cross_entropy_with_logits(
            x, t, weight=_ag(weight), pos_weight=_ag(pos_weight), **kw),
        _np_bce_with_logits,
        lambda x, t, weight=None, pos_weight=None, **kw: _tF().binary_cross_entropy_with_logits(
            x, t, weight=_th(weight), pos_weight=_th(pos_weight), **kw),
        binary_cases(logits=True),
    ),
]


# -- LSTM --------------------------------------------------------------------------------------------------

LSTM_PARAMETERS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
_lstms: dict = {}


def _lstm_module(input_size: int, hidden_size: int, batch_first: bool):
    key = (input_size, hidden_size, batch_first)
    if key not in _lstms:
        _lstms[key] = nn.LSTM(input_size, hidden_size, batch_first=batch_first)
    return _lstms[key]


def _lstm(x, h0, c0, *weights, batch_first):
    """nn.LSTM (one layer) as a function of its input, initial state and parameters: the parameters
    are these tensors for the call, so gradients reach them. Returns (output, h_n, c_n)."""
    module = _lstm_module(x.shape[-1], h0.shape[-1], batch_first)
    own = dict(module._parameters)
    module._parameters.update(zip(LSTM_PARAMETERS, weights))
    try:
        out, (h_n, c_n) = module(x, (h0, c0))
    finally:
        module._parameters.update(own)
    return out, h_n, c_n


def _np_lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, batch_first):
    if batch_first:
        x = np.swapaxes(x, 0, 1)
    h, c = h0[0], c0[0]
    H = h.shape[-1]
    outs = []
    for x_t in x:
        gates = x_t @ w_ih.T + b_ih + h @ w_hh.T + b_hh
        i, f, o = (_np_sigmoid(gates[:, k * H:(k + 1) * H]) for k in (0, 1, 3))
        g = np.tanh(gates[:, 2 * H:3 * H])
        c = f * c + i * g
        h = o * np.tanh(c)
        outs.append(h)
    out = np.stack(outs)
    return [np.swapaxes(out, 0, 1) if batch_first else out, h[None], c[None]]


def _t_lstm(x, h0, c0, *weights, batch_first):
    torch = _torch()
    module = torch.nn.LSTM(x.shape[-1], h0.shape[-1], batch_first=batch_first).double()
    out, (h_n, c_n) = torch.func.functional_call(module, dict(zip(LSTM_PARAMETERS, weights)), (x, (h0, c0)))
    return out, h_n, c_n


@st.composite
def lstm_cases(draw):
    """Input (L, N, in) (or (N, L, in), batch first), h0 and c0 (1, N, H), then the layer's parameters."""
    side = st.integers(1, 2)
    steps, n, n_in, H = draw(st.integers(1, 3)), draw(side), draw(side), draw(side)
    batch_first = draw(st.booleans())
    xs = (n, steps, n_in) if batch_first else (steps, n, n_in)
    shapes_ = [xs, (1, n, H), (1, n, H), (4 * H, n_in), (4 * H, H), (4 * H,), (4 * H,)]
    arrays = tuple(draw(_arrays(s, floats(-1.5, 1.5))) for s in shapes_)
    return Case(arrays, {"batch_first": batch_first})


# -- GRU and RNN ---------------------------------------------------------------------------------------------

_grus_rnns: dict = {}


def _gru_rnn_module(kind: str, input_size: int, hidden_size: int, batch_first: bool):
    key = (kind, input_size, hidden_size, batch_first)
    if key not in _grus_rnns:
        if kind == "gru":
            _grus_rnns[key] = nn.GRU(input_size, hidden_size, batch_first=batch_first)
        else:
            _grus_rnns[key] = nn.RNN(input_size, hidden_size, nonlinearity=kind, batch_first=batch_first)
    return _grus_rnns[key]


def _gru_rnn(kind):
    def fn(x, h0, *weights, batch_first):
        """nn.GRU / nn.RNN (one layer) as a function of its input, initial state and parameters.
        Returns (output, h_n)."""
        module = _gru_rnn_module(kind, x.shape[-1], h0.shape[-1], batch_first)
        own = dict(module._parameters)
        module._parameters.update(zip(LSTM_PARAMETERS, weights))
        try:
            out, h_n = module(x, h0)
        finally:
            module._parameters.update(own)
        return out, h_n
    return fn


def _np_gru_rnn(kind):
    def ref(x, h0, w_ih, w_hh, b_ih, b_hh, batch_first):
        if batch_first:
            x = np.swapaxes(x, 0, 1)
        h = h0[0]
        H = h.shape[-1]
        outs = []
        for x_t in x:
            gi, gh = x_t @ w_ih.T + b_ih, h @ w_hh.T + b_hh
            if kind == "gru":
                r = _np_sigmoid(gi[:, :H] + gh[:, :H])
                z = _np_sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
                n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
                h = (1 - z) * n + z * h
            else:
                h = np.tanh(gi + gh) if kind == "tanh" else np.maximum(gi + gh, 0)
            outs.append(h)
        out = np.stack(outs)
        return [np.swapaxes(out, 0, 1) if batch_first else out, h[None]]
    return ref


def _t_gru_rnn(kind):
    def fn(x, h0, *weights, batch_first):
        torch = _torch()
        if kind == "gru":
            module = torch.nn.GRU(x.shape[-1], h0.shape[-1], batch_first=batch_first)
        else:
            module = torch.nn.RNN(x.shape[-1], h0.shape[-1], nonlinearity=kind, batch_first=batch_first)
        out, h_n = torch.func.functional_call(module.double(), dict(zip(LSTM_PARAMETERS, weights)), (x, h0))
        return out, h_n
    return fn


@st.composite
def gru_rnn_cases(draw, kind: str):
    """Input (L, N, in) (or (N, L, in), batch first), h0 (1, N, H), then the layer's parameters
    (3H rows for a GRU, H for an RNN). For relu, every pre-activation stays 0.1 away from 0."""
    side = st.integers(1, 2)
    steps, n, n_in, H = draw(st.integers(1, 3)), draw(side), draw(side), draw(side)
    batch_first = draw(st.booleans())
    rows = 3 * H if kind == "gru" else H
    xs = (n, steps, n_in) if batch_first else (steps, n, n_in)
    shapes_ = [xs, (1, n, H), (rows, n_in), (rows, H), (rows,), (rows,)]
    arrays = tuple(draw(_arrays(s, floats(-1.5, 1.5))) for s in shapes_)
    if kind == "relu":
        x, h0, w_ih, w_hh, b_ih, b_hh = arrays
        h = h0[0]
        for x_t in (np.swapaxes(x, 0, 1) if batch_first else x):
            a = x_t @ w_ih.T + b_ih + h @ w_hh.T + b_hh
            assume(np.abs(a).min() > 0.1)
            h = np.maximum(a, 0)
    return Case(arrays, {"batch_first": batch_first})


RECURRENT = [OpSpec("lstm", _lstm, _np_lstm, _t_lstm, lstm_cases())] + [
    OpSpec(name, _gru_rnn(kind), _np_gru_rnn(kind), _t_gru_rnn(kind), gru_rnn_cases(kind))
    for name, kind in (("gru", "gru"), ("rnn_tanh", "tanh"), ("rnn_relu", "relu"))
]


# -- convolution and pooling -------------------------------------------------------------------------------

def _np_pad(x, pads, value=0.0):
    return np.pad(x, ((0, 0), (0, 0)) + tuple(pads), constant_values=value)


def _np_pairs(padding, nd, kernel, dilation):
    if padding == "same":
        return tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel, dilation))
    if padding == "valid":
        return ((0, 0),) * nd
    pad = (padding,) * nd if isinstance(padding, int) else padding
    return tuple((p, p) for p in pad)


def _np_conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """The definition, one kernel offset at a time: y[n, o, p] += x[n, c, p * s + k * d] * w[o, c, k]."""
    nd = x.ndim - 2
    kernel = w.shape[2:]
    stride = (stride,) * nd if isinstance(stride, int) else stride
    dilation = (dilation,) * nd if isinstance(dilation, int) else dilation
    xp = _np_pad(x, _np_pairs(padding, nd, kernel, dilation))
    out = tuple((xp.shape[2 + i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(nd))
    n, o = x.shape[0], w.shape[0]
    cg, og = w.shape[1], o // groups
    y = np.zeros((n, o) + out, dtype=x.dtype)
    for ks in np.ndindex(*kernel):
        sl = tuple(slice(k * d, k * d + s * (m - 1) + 1, s) for k, d, s, m in zip(ks, dilation, stride, out))
        taps = xp[(slice(None), slice(None)) + sl]
        for g in range(groups):
            y[:, g * og:(g + 1) * og] += np.einsum(
                "nc...,oc->no...", taps[:, g * cg:(g + 1) * cg], w[(slice(g * og, (g + 1) * og), slice(None)) + ks])
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * nd)
    return y


@st.composite
def conv_cases(draw, nd: int, bias: bool):
    """x (N, C, *spatial), weight (O, C/groups, *kernel) and optionally bias (O,); stride, padding
    (ints, tuples, "valid", "same"), dilation and groups drawn so that the output is never empty."""
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg, og = draw(st.integers(1, 2 if groups > 1 else 3)), draw(st.integers(1, 2 if groups > 1 else 3))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    form = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
    stride = (1,) * nd if form == "same" else tuple(draw(st.integers(1, 2)) for _ in range(nd))
    if form in ("same", "valid"):
        padding, pad = form, (0,) * nd
    else:
        pad = tuple(draw(st.integers(0, 1)) for _ in range(nd))
        padding = pad[0] if form == "int" else pad
        pad = (pad[0],) * nd if form == "int" else pad
    spatial = tuple(draw(st.integers(max(3, d * (k - 1) + 1 - 2 * p), 6)) for k, d, p in zip(kernel, dilation, pad))
    n = draw(st.integers(1, 2))
    arrays = (draw(_arrays((n, cg * groups) + spatial, REAL)), draw(_arrays((og * groups, cg) + kernel, REAL)))
    if bias:
        arrays += (draw(_arrays((og * groups,), REAL)),)
    kwargs = {"stride": stride if draw(st.booleans()) or len(set(stride)) > 1 else stride[0], "padding": padding,
              "dilation": dilation if len(set(dilation)) > 1 else dilation[0], "groups": groups}
    return Case(arrays, kwargs)


def _np_windows(x, kernel, stride, padding, value):
    """(N, C, *out, prod(kernel)) windows of x padded by ``value``."""
    nd = x.ndim - 2
    xp = _np_pad(x, tuple((p, p) for p in padding), value)
    out = tuple((xp.shape[2 + i] - kernel[i]) // stride[i] + 1 for i in range(nd))
    taps = [xp[(slice(None), slice(None)) + tuple(slice(k, k + s * (m - 1) + 1, s)
                                                  for k, s, m in zip(ks, stride, out))] for ks in np.ndindex(*kernel)]
    return np.stack(taps, axis=-1)


def _pool_args(nd, kernel_size, stride, padding):
    tup = lambda v: (v,) * nd if isinstance(v, int) else tuple(v)  # noqa: E731
    return tup(kernel_size), tup(kernel_size if stride is None else stride), tup(padding)


def _np_max_pool(x, kernel_size, stride=None, padding=0):
    return _np_windows(x, *_pool_args(x.ndim - 2, kernel_size, stride, padding), -np.inf).max(axis=-1)


def _np_avg_pool(x, kernel_size, stride=None, padding=0):
    return _np_windows(x, *_pool_args(x.ndim - 2, kernel_size, stride, padding), 0.0).mean(axis=-1)


@st.composite
def pool_cases(draw, nd: int, distinct: bool):
    """x (N, C, *spatial) with a kernel, stride (or None) and padding (at most half the kernel)."""
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    stride = draw(st.none() | st.tuples(*(st.integers(1, 2) for _ in range(nd))))
    pad = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    spatial = tuple(draw(st.integers(max(3, k), 6)) for k in kernel)
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3))) + spatial
    x = draw(distinct_arrays(shape) if distinct else _arrays(shape, REAL))
    kwargs = {"kernel_size": kernel[0] if len(set(kernel)) == 1 and draw(st.booleans()) else kernel,
              "stride": stride, "padding": pad[0] if len(set(pad)) == 1 else pad}
    return Case((x,), kwargs)


def _np_adaptive_avg_pool2d(x, output_size):
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    h, w = x.shape[-2:]
    oh, ow = oh or h, ow or w
    out = np.empty(x.shape[:-2] + (oh, ow), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            h0, h1 = (i * h) // oh, -(-((i + 1) * h) // oh)
            w0, w1 = (j * w) // ow, -(-((j + 1) * w) // ow)
            out[..., i, j] = x[..., h0:h1, w0:w1].mean(axis=(-2, -1))
    return out


@st.composite
def adaptive_cases(draw):
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    size = st.integers(1, 4)
    output_size = draw(size | st.tuples(size | st.none(), size | st.none()))
    return Case((draw(_arrays(shape, REAL)),), {"output_size": output_size})


def _t_conv(name):
    def call(*a, **kw):
        with warnings.catch_warnings():  # torch warns that "same" with an even kernel copies the input
            warnings.simplefilter("ignore", UserWarning)
            return getattr(_tF(), name)(*a, **kw)

    return call


CONVOLUTION = [
    OpSpec("conv2d", F.conv2d, _np_conv, _t_conv("conv2d"), conv_cases(2, bias=True)),
    OpSpec("conv2d_no_bias", F.conv2d, _np_conv, _t_conv("conv2d"), conv_cases(2, bias=False)),
    OpSpec("conv1d", F.conv1d, _np_conv, _t_conv("conv1d"), conv_cases(1, bias=True)),
    OpSpec("max_pool2d", F.max_pool2d, _np_max_pool, lambda x, **kw: _tF().max_pool2d(x, **kw),
           pool_cases(2, distinct=True)),
    OpSpec("max_pool1d", F.max_pool1d, _np_max_pool, lambda x, **kw: _tF().max_pool1d(x, **kw),
           pool_cases(1, distinct=True)),
    OpSpec("avg_pool2d", F.avg_pool2d, _np_avg_pool, lambda x, **kw: _tF().avg_pool2d(x, **kw),
           pool_cases(2, distinct=False)),
    OpSpec("avg_pool1d", F.avg_pool1d, _np_avg_pool, lambda x, **kw: _tF().avg_pool1d(x, **kw),
           pool_cases(1, distinct=False)),
    OpSpec("adaptive_avg_pool2d", F.adaptive_avg_pool2d, _np_adaptive_avg_pool2d,
           lambda x, output_size: _tF().adaptive_avg_pool2d(x, output_size), adaptive_cases()),
]


# -- attention ---------------------------------------------------------------------------------------------

@st.composite
def attention_cases(draw, mask: str):
    """q (..., L, E), k (..., S, E), v (..., S, Ev) with 0 or 1 leading axes, and a mask: none (then
    is_causal drawn), a bool one (L, S) in kwargs, or a float one (L, S) as a fourth differentiable input."""
    lead = draw(one_shape(max_dims=1))
    n_q, n_k, e, ev = (draw(st.integers(1, MAX_SIDE)) for _ in range(4))
    arrays = (draw(_arrays(lead + (n_q, e), REAL)), draw(_arrays(lead + (n_k, e), REAL)),
              draw(_arrays(lead + (n_k, ev), REAL)))
    kwargs = {"scale": draw(st.none() | floats(0.2, 1.5))}
    if mask == "none":
        kwargs["is_causal"] = draw(st.booleans())
    elif mask == "bool":
        kwargs["keep"] = draw(hnp.arrays(np.bool_, (n_q, n_k)))
    else:
        arrays += (draw(_arrays((n_q, n_k), REAL)),)
    return Case(arrays, kwargs)


def _sdpa(q, k, v, m=None, keep=None, **kw):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=_ag(keep) if m is None else m, **kw)


def _t_sdpa(q, k, v, m=None, keep=None, **kw):
    return _tF().scaled_dot_product_attention(q, k, v, attn_mask=_th(keep) if m is None else m, **kw)


def _np_sdpa(q, k, v, m=None, keep=None, scale=None, is_causal=False):
    s = (q @ np.swapaxes(k, -1, -2)) * (1.0 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if m is not None:
        s = s + m
    if is_causal:
        keep = np.tril(np.ones(s.shape[-2:], dtype=bool))
    if keep is not None:
        s = np.where(keep, s, -np.inf)
    rows = np.isfinite(s).any(axis=-1, keepdims=True)  # a row with no key left attends to nothing
    s = np.where(rows, s, 0.0)
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return np.where(rows, e / e.sum(axis=-1, keepdims=True), 0.0) @ v


ATTENTION = [
    OpSpec("sdpa", _sdpa, _np_sdpa, _t_sdpa, attention_cases("none")),
    OpSpec("sdpa_bool_mask", _sdpa, _np_sdpa, _t_sdpa, attention_cases("bool")),
    OpSpec("sdpa_float_mask", _sdpa, _np_sdpa, _t_sdpa, attention_cases("float")),
]


NN_OPS: list[OpSpec] = ACTIVATIONS + DROPOUT + NORMALIZATION + EMBEDDING + CLASSIFICATION + LOSSES + RECURRENT + CONVOLUTION + ATTENTION
