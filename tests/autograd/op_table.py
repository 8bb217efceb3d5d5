"""One table of xpgrad's differentiable ops, driving the property tests in test_ops.py.

Each ``OpSpec`` says how to call an op, what computes the same thing in NumPy (the forward oracle)
and in PyTorch (the gradient oracle), and which inputs the op takes: a hypothesis strategy of
``Case``s, whose ``arrays`` are the differentiable float64 inputs and ``kwargs`` everything else
(axes, keepdims, bounds, constant index/condition arrays as NumPy arrays: the xpgrad side wraps
them with ``ag.tensor``, the torch side with ``torch.from_numpy``).

Values are drawn away from the points where an op is not differentiable (relu/abs at 0, clip at
its bounds, ties of maximum/minimum/max/min), so finite differences are meaningful; the behaviour
at those points has focused tests of its own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from xpgrad import autograd as ag
from xpgrad.autograd.testing import broadcastable_shapes, shapes, valid_axes

# Small shapes keep finite differences (2 evaluations per element) cheap: at most 3**4 elements.
MAX_SIDE = 3
MAX_DIMS = 4


@dataclass(frozen=True)
class Case:
    arrays: tuple  # float64 NumPy arrays: the differentiable inputs, in order
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class OpSpec:
    name: str
    fn: Callable[..., Any]  # (*tensors, **kwargs) -> Tensor or tuple of Tensors
    ref: Callable[..., Any]  # (*ndarrays, **kwargs) -> ndarray or list of ndarrays
    torch: Callable[..., Any] | None  # (*torch tensors, **kwargs) -> tensor(s), or None where torch differs
    cases: st.SearchStrategy  # of Case
    finite_differences: bool = True  # False where the forward rounds to float32 (casts)
    second_order: bool = True
    binary_scalar: bool = False  # a binary op that takes a Python scalar on either side

    def __repr__(self) -> str:
        return self.name


# -- element domains ------------------------------------------------------------------------------------

def floats(lo: float, hi: float) -> st.SearchStrategy:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def near_grid(offset: float) -> st.SearchStrategy:
    """k + offset + u with integer k and |u| <= 0.2: two such domains with offsets 0 and 0.5 never
    come closer than 0.1, and ``near_grid(0.5)`` stays 0.3 away from every integer."""
    return st.builds(lambda k, u: k + offset + u, st.integers(-4, 3), floats(-0.2, 0.2))


REAL = floats(-3, 3)
POSITIVE = floats(0.2, 4)
NONZERO = st.builds(lambda sign, m: sign * m, st.sampled_from([-1.0, 1.0]), floats(0.5, 2))
ON_GRID = near_grid(0.0)
OFF_GRID = near_grid(0.5)  # away from 0 and from integer clip bounds
DISTINCT_STEP = 0.125  # with unique=True: no ties inside a max/min reduction


def distinct_arrays(shape) -> st.SearchStrategy:
    return hnp.arrays(np.float64, shape, elements=st.integers(-48, 48).map(lambda k: k * DISTINCT_STEP), unique=True)


def _arrays(shape, elements) -> st.SearchStrategy:
    return hnp.arrays(np.float64, shape, elements=elements)


def one_shape(min_dims: int = 0, max_dims: int = MAX_DIMS, max_side: int = MAX_SIDE) -> st.SearchStrategy:
    return shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side)


# -- generic case builders ------------------------------------------------------------------------------

@st.composite
def elementwise_cases(draw, domains, kwargs=None, num_shapes=None):
    """Inputs of broadcastable shapes (0-d and size-1 sides included), one domain per input."""
    n = len(domains)
    shps = draw(broadcastable_shapes(n, min_dims=0, max_dims=MAX_DIMS, max_side=MAX_SIDE)) if n > 1 else (draw(one_shape()),)
    arrays = tuple(draw(_arrays(s, d)) for s, d in zip(shps, domains))
    return Case(arrays, draw(kwargs) if kwargs is not None else {})


@st.composite
def reduction_cases(draw, elements=REAL, max_dims=MAX_DIMS, distinct=False, ddof=False):
    shape = draw(one_shape(max_dims=max_dims))
    x = draw(distinct_arrays(shape) if distinct else _arrays(shape, elements))
    axis = draw(valid_axes(len(shape)))
    kwargs = {"axis": axis, "keepdims": draw(st.booleans())}
    if ddof:
        count = x.size if axis is None else math.prod(shape[a] for a in ((axis,) if isinstance(axis, int) else axis))
        kwargs["ddof"] = draw(st.sampled_from([0, 1])) if count > 1 else 0
    return Case((x,), kwargs)


def _dims(axis, ndim: int) -> tuple:
    if axis is None:
        return tuple(range(ndim))
    return tuple(axis) if isinstance(axis, tuple) else (axis,)


def _normalized(axis, ndim: int) -> tuple:
    return tuple(sorted(a % ndim if ndim else 0 for a in _dims(axis, ndim)))


# -- torch helpers (imported lazily: torch is optional) -------------------------------------------------

def _torch():
    import torch

    return torch


def _t_prod(x, axis=None, keepdims=False):
    torch = _torch()
    dims = _normalized(axis, x.ndim)
    if x.ndim == 0:
        return torch.prod(x)
    out = x
    for d in sorted(dims, reverse=True):
        out = torch.prod(out, dim=d, keepdim=True)
    if not keepdims:
        out = out.reshape([n for i, n in enumerate(out.shape) if i not in dims])
    return out


def _np_erf(x):
    return np.asarray(np.frompyfunc(math.erf, 1, 1)(x)).astype(x.dtype)


def _np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


# -- elementwise -----------------------------------------------------------------------------------------

def _unary(name, fn, ref, torch_name, elements=REAL, **flags):
    return OpSpec(
        name, fn, ref, (lambda x: getattr(_torch(), torch_name)(x)) if torch_name else None,
        elementwise_cases((elements,)), **flags,
    )


def _binary(name, fn, ref, torch_name, domains=(REAL, REAL), **flags):
    return OpSpec(
        name, fn, ref, lambda a, b: getattr(_torch(), torch_name)(a, b), elementwise_cases(domains),
        binary_scalar=True, **flags,
    )


ELEMENTWISE = [
    _binary("add", ag.add, np.add, "add"),
    _binary("sub", ag.sub, np.subtract, "sub"),
    _binary("mul", ag.mul, np.multiply, "mul"),
    _binary("div", ag.div, np.true_divide, "div", domains=(REAL, NONZERO)),
    _binary("pow", ag.pow, np.power, "pow", domains=(POSITIVE, floats(-2, 2))),
    _binary("maximum", ag.maximum, np.maximum, "maximum", domains=(ON_GRID, OFF_GRID)),
    _binary("minimum", ag.minimum, np.minimum, "minimum", domains=(OFF_GRID, ON_GRID)),
    OpSpec(
        "pow_scalar_exponent", lambda x, p: ag.pow(x, p), lambda x, p: np.power(x, p), lambda x, p: x ** p,
        elementwise_cases((POSITIVE,), st.fixed_dictionaries({"p": st.sampled_from([2.0, 3.0, 0.5, -1.5, 1.0])})),
    ),
    OpSpec(
        "pow_integer_exponent", lambda x, p: x ** p, lambda x, p: x ** p, lambda x, p: x ** p,
        elementwise_cases((NONZERO,), st.fixed_dictionaries({"p": st.sampled_from([0, 1, 2, 3, -1, -2])})),
    ),
    OpSpec(
        "rpow_scalar_base", lambda x, b: b ** x, lambda x, b: b ** x, lambda x, b: b ** x,
        elementwise_cases((REAL,), st.fixed_dictionaries({"b": st.sampled_from([2.0, 0.5, 3.5])})),
    ),
    _unary("neg", ag.neg, np.negative, "neg"),
    _unary("abs", ag.abs, np.abs, "abs", elements=OFF_GRID),
    _unary("exp", ag.exp, np.exp, "exp"),
    _unary("log", ag.log, np.log, "log", elements=POSITIVE),
    _unary("log1p", ag.log1p, np.log1p, "log1p", elements=floats(-0.8, 4)),
    _unary("sqrt", ag.sqrt, np.sqrt, "sqrt", elements=POSITIVE),
    _unary("square", ag.square, np.square, "square"),
    _unary("sin", ag.sin, np.sin, "sin"),
    _unary("cos", ag.cos, np.cos, "cos"),
    _unary("tan", ag.tan, np.tan, "tan", elements=floats(-1.2, 1.2)),  # away from the poles at +-pi/2
    _unary("tanh", ag.tanh, np.tanh, "tanh"),
    _unary("sigmoid", ag.sigmoid, _np_sigmoid, "sigmoid", elements=floats(-6, 6)),
    _unary("relu", ag.relu, lambda x: np.maximum(x, 0), "relu", elements=OFF_GRID),
    _unary("erf", ag.erf, _np_erf, "erf", elements=floats(-2.5, 2.5)),
    OpSpec(
        "clip", lambda x, lo, hi: ag.clip(x, lo, hi), lambda x, lo, hi: np.clip(x, lo, hi),
        lambda x, lo, hi: _torch().clamp(x, lo, hi),
        elementwise_cases((OFF_GRID,), st.one_of(
            st.tuples(st.integers(-3, 1), st.integers(0, 2)).map(lambda b: {"lo": b[0], "hi": b[0] + 1 + b[1]}),
            st.integers(-2, 2).map(lambda b: {"lo": b, "hi": None}),
            st.integers(-2, 2).map(lambda b: {"lo": None, "hi": b}),
        )),
    ),
]


@st.composite
def where_cases(draw, scalar_branch=False):
    if scalar_branch:
        cshape, ashape = draw(broadcastable_shapes(2, max_dims=MAX_DIMS, max_side=MAX_SIDE))
        arrays = (draw(_arrays(ashape, REAL)),)
    else:
        cshape, ashape, bshape = draw(broadcastable_shapes(3, max_dims=MAX_DIMS, max_side=MAX_SIDE))
        arrays = (draw(_arrays(ashape, REAL)), draw(_arrays(bshape, REAL)))
    return Case(arrays, {"cond": draw(hnp.arrays(np.bool_, cshape))})


ELEMENTWISE += [
    OpSpec(
        "where", lambda a, b, cond: ag.where(ag.tensor(cond), a, b), lambda a, b, cond: np.where(cond, a, b),
        lambda a, b, cond: _torch().where(_torch().from_numpy(cond), a, b), where_cases(),
    ),
    OpSpec(
        "where_scalar_branch", lambda a, cond: ag.where(ag.tensor(cond), a, 0.5),
        lambda a, cond: np.where(cond, a, 0.5), lambda a, cond: _torch().where(_torch().from_numpy(cond), a, 0.5),
        where_cases(scalar_branch=True),
    ),
]


# -- matmul ----------------------------------------------------------------------------------------------

@st.composite
def matmul_cases(draw):
    """All of numpy.matmul's cases: vector.vector, vector.matrix, matrix.vector, batched, broadcast."""
    a_shape, b_shape = draw(
        hnp.mutually_broadcastable_shapes(signature=np.matmul.signature, max_dims=2, max_side=MAX_SIDE)
    ).input_shapes
    return Case((draw(_arrays(a_shape, REAL)), draw(_arrays(b_shape, REAL))))


LINALG = [
    OpSpec("matmul", ag.matmul, np.matmul, lambda a, b: _torch().matmul(a, b), matmul_cases()),
]


# -- reductions ------------------------------------------------------------------------------------------

def _t_reduce(name):
    def fn(x, axis=None, keepdims=False, **kw):
        return getattr(_torch(), name)(x, dim=_dims(axis, x.ndim), keepdim=keepdims, **kw)

    return fn


REDUCTIONS = [
    OpSpec("sum", ag.sum, np.sum, _t_reduce("sum"), reduction_cases()),
    OpSpec("mean", ag.mean, np.mean, _t_reduce("mean"), reduction_cases()),
    OpSpec(
        "var", ag.var, np.var,
        lambda x, axis, keepdims, ddof: _torch().var(x, dim=_dims(axis, x.ndim), keepdim=keepdims, correction=ddof),
        reduction_cases(ddof=True),
    ),
    OpSpec("max", ag.max, np.max, _t_reduce("amax"), reduction_cases(distinct=True)),
    OpSpec("min", ag.min, np.min, _t_reduce("amin"), reduction_cases(distinct=True)),
    OpSpec("prod", ag.prod, np.prod, _t_prod, reduction_cases(elements=NONZERO, max_dims=3)),
    OpSpec(
        "logsumexp", ag.logsumexp,
        lambda x, axis, keepdims: np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims)),
        _t_reduce("logsumexp"), reduction_cases(),
    ),
]


# -- shape ops -------------------------------------------------------------------------------------------

@st.composite
def reshape_cases(draw):
    shape = draw(one_shape())
    target = list(draw(st.permutations(shape)))
    for _ in range(draw(st.integers(0, 2))):
        target.insert(draw(st.integers(0, len(target))), 1)
    if len(target) >= 2 and draw(st.booleans()):  # merge two neighbours
        i = draw(st.integers(0, len(target) - 2))
        target[i : i + 2] = [target[i] * target[i + 1]]
    if target and draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    return Case((draw(_arrays(shape, REAL)),), {"shape": tuple(target)})


@st.composite
def transpose_cases(draw):
    shape = draw(one_shape())
    nd = len(shape)
    if draw(st.booleans()):
        axes = None
    else:
        axes = tuple(a - nd if draw(st.booleans()) else a for a in draw(st.permutations(range(nd))))
    return Case((draw(_arrays(shape, REAL)),), {"axes": axes})


@st.composite
def swapaxes_cases(draw):
    shape = draw(one_shape(min_dims=1))
    nd = len(shape)
    return Case((draw(_arrays(shape, REAL)),), {
        "axis1": draw(st.integers(-nd, nd - 1)), "axis2": draw(st.integers(-nd, nd - 1)),
    })


@st.composite
def expand_dims_cases(draw):
    shape = draw(one_shape(max_dims=3))
    n_new = draw(st.integers(1, 2))
    nd = len(shape) + n_new
    axes = draw(st.lists(st.integers(0, nd - 1), min_size=n_new, max_size=n_new, unique=True))
    axes = [a - nd if draw(st.booleans()) else a for a in axes]
    axis = axes[0] if n_new == 1 and draw(st.booleans()) else tuple(axes)
    return Case((draw(_arrays(shape, REAL)),), {"axis": axis})


def _t_expand_dims(x, axis):
    axes = axis if isinstance(axis, tuple) else (axis,)
    nd = x.ndim + len(axes)
    for a in sorted(a % nd for a in axes):  # inserting in increasing order lands each where asked
        x = x.unsqueeze(a)
    return x


@st.composite
def squeeze_cases(draw):
    shape = draw(one_shape())
    ones = [i for i, n in enumerate(shape) if n == 1]
    nd = len(shape)
    if not ones or draw(st.booleans()):
        axis = None
    else:
        picked = draw(st.lists(st.sampled_from(ones), min_size=1, unique=True))
        picked = [a - nd if draw(st.booleans()) else a for a in picked]
        axis = picked[0] if len(picked) == 1 and draw(st.booleans()) else tuple(picked)
    return Case((draw(_arrays(shape, REAL)),), {"axis": axis})


@st.composite
def broadcast_to_cases(draw):
    shape = draw(one_shape(max_dims=3))
    lead = draw(st.lists(st.integers(1, MAX_SIDE), max_size=2))
    target = tuple(lead) + tuple(draw(st.integers(1, MAX_SIDE)) if n == 1 else n for n in shape)
    return Case((draw(_arrays(shape, REAL)),), {"shape": target})


@st.composite
def flatten_cases(draw):
    shape = draw(one_shape())
    nd = len(shape)
    if nd == 0:
        return Case((draw(_arrays(shape, REAL)),), {})
    s = draw(st.integers(0, nd - 1))
    e = draw(st.integers(s, nd - 1))
    s = s - nd if draw(st.booleans()) else s
    e = e - nd if draw(st.booleans()) else e
    return Case((draw(_arrays(shape, REAL)),), {"start_axis": s, "end_axis": e})


def _np_flatten(x, start_axis=0, end_axis=-1):
    if x.ndim == 0:
        return x.reshape(1)
    s, e = start_axis % x.ndim, end_axis % x.ndim
    return x.reshape(x.shape[:s] + (-1,) + x.shape[e + 1 :]) if x.size else x.reshape(
        x.shape[:s] + (math.prod(x.shape[s : e + 1]),) + x.shape[e + 1 :])


@st.composite
def concatenate_cases(draw):
    shape = draw(one_shape(min_dims=1, max_dims=3))
    nd = len(shape)
    axis = draw(st.integers(-nd, nd - 1))
    sizes = draw(st.lists(st.integers(0, MAX_SIDE), min_size=1, max_size=3))
    parts = []
    for n in sizes:
        s = list(shape)
        s[axis] = n
        parts.append(draw(_arrays(tuple(s), REAL)))
    return Case(tuple(parts), {"axis": axis})


@st.composite
def stack_cases(draw):
    shape = draw(one_shape(max_dims=3))
    nd = len(shape) + 1
    count = draw(st.integers(1, 3))
    parts = tuple(draw(_arrays(shape, REAL)) for _ in range(count))
    return Case(parts, {"axis": draw(st.integers(-nd, nd - 1))})


@st.composite
def split_cases(draw):
    shape = draw(one_shape(min_dims=1, max_dims=3, max_side=4))
    nd = len(shape)
    axis = draw(st.integers(-nd, nd - 1))
    n = shape[axis]
    if draw(st.booleans()):
        sections = draw(st.sampled_from([k for k in range(1, n + 1) if n % k == 0]))
    else:
        sections = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
    return Case((draw(_arrays(shape, REAL)),), {"indices_or_sections": sections, "axis": axis})


@st.composite
def pad_cases(draw):
    shape = draw(one_shape(min_dims=1, max_dims=3))
    form = draw(st.sampled_from(["int", "pair", "per_axis"]))
    if form == "int":
        width = draw(st.integers(0, 2))
    elif form == "pair":
        width = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    else:
        width = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in shape)
    return Case((draw(_arrays(shape, REAL)),), {"pad_width": width, "value": draw(st.sampled_from([0.0, 1.5, -2.0]))})


def _t_pad(x, pad_width, value):
    import torch.nn.functional as F

    widths = np.broadcast_to(np.asarray(pad_width), (x.ndim, 2))
    flat = [int(v) for pair in widths[::-1] for v in pair]
    return F.pad(x, flat, mode="constant", value=value)


@st.composite
def repeat_cases(draw):
    shape = draw(one_shape(max_dims=3))
    nd = len(shape)
    axis = None if nd == 0 or draw(st.booleans()) else draw(st.integers(-nd, nd - 1))
    n = math.prod(shape) if axis is None else shape[axis]
    if draw(st.booleans()):
        repeats = draw(st.integers(0, 3))
    else:
        repeats = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    return Case((draw(_arrays(shape, REAL)),), {"repeats": repeats, "axis": axis})


def _t_repeat(x, repeats, axis):
    torch = _torch()
    r = repeats if isinstance(repeats, int) else torch.tensor(repeats)
    return torch.repeat_interleave(x, r, dim=axis)


@st.composite
def tile_cases(draw):
    shape = draw(one_shape(max_dims=3))
    reps = tuple(draw(st.lists(st.integers(1, 2), min_size=1, max_size=len(shape) + 1)))
    return Case((draw(_arrays(shape, REAL)),), {"reps": reps})


SHAPE = [
    OpSpec("reshape", ag.reshape, np.reshape, lambda x, shape: x.reshape(shape), reshape_cases()),
    OpSpec(
        "transpose", ag.transpose, np.transpose,
        lambda x, axes: x.permute(tuple(reversed(range(x.ndim))) if axes is None else axes), transpose_cases(),
    ),
    OpSpec("swapaxes", ag.swapaxes, np.swapaxes, lambda x, axis1, axis2: _torch().swapaxes(x, axis1, axis2),
           swapaxes_cases()),
    OpSpec("expand_dims", ag.expand_dims, np.expand_dims, _t_expand_dims, expand_dims_cases()),
    OpSpec(
        "squeeze", ag.squeeze, np.squeeze,
        lambda x, axis: _torch().squeeze(x) if axis is None else _torch().squeeze(x, axis), squeeze_cases(),
    ),
    OpSpec("broadcast_to", ag.broadcast_to, np.broadcast_to, lambda x, shape: _torch().broadcast_to(x, shape),
           broadcast_to_cases()),
    OpSpec("flatten", ag.flatten, _np_flatten,
           lambda x, start_axis=0, end_axis=-1: _torch().flatten(x, start_axis, end_axis), flatten_cases()),
    OpSpec(
        "concatenate", lambda *parts, axis: ag.concatenate(parts, axis=axis),
        lambda *parts, axis: np.concatenate(parts, axis=axis), lambda *parts, axis: _torch().cat(parts, dim=axis),
        concatenate_cases(),
    ),
    OpSpec(
        "stack", lambda *parts, axis: ag.stack(parts, axis=axis), lambda *parts, axis: np.stack(parts, axis=axis),
        lambda *parts, axis: _torch().stack(parts, dim=axis), stack_cases(),
    ),
    OpSpec(
        "split", lambda x, **kw: tuple(ag.split(x, **kw)), np.split,
        lambda x, indices_or_sections, axis: _torch().tensor_split(x, indices_or_sections, dim=axis), split_cases(),
    ),
    OpSpec("pad", ag.pad, lambda x, pad_width, value: np.pad(x, pad_width, constant_values=value), _t_pad,
           pad_cases()),
    OpSpec("repeat", ag.repeat, np.repeat, _t_repeat, repeat_cases()),
    OpSpec("tile", ag.tile, np.tile, lambda x, reps: _torch().tile(x, reps), tile_cases()),
]


# -- indexing --------------------------------------------------------------------------------------------

@st.composite
def _slice(draw, n: int):
    start = draw(st.none() | st.integers(-n - 1, n + 1))
    stop = draw(st.none() | st.integers(-n - 1, n + 1))
    step = draw(st.none() | st.integers(1, 2))
    return slice(start, stop, step)


@st.composite
def advanced_indices(draw, shape):
    """Integer arrays (repeats included) or boolean masks, mixed with ints, slices, None and Ellipsis."""
    nd = len(shape)
    items: list = []
    if draw(st.booleans()):  # integer arrays on 1 or 2 axes, one common (broadcast) index shape
        k = draw(st.integers(1, min(2, nd)))
        axes = set(draw(st.lists(st.integers(0, nd - 1), min_size=k, max_size=k, unique=True)))
        # Mostly several entries drawn from a few positions, so repeated indices are common.
        index_shape = draw(st.just(()) | shapes(min_dims=1, max_dims=2, min_side=2, max_side=3))
        for d, n in enumerate(shape):
            if d in axes:
                items.append(draw(hnp.arrays(np.int64, index_shape, elements=st.integers(-n, n - 1))))
            else:
                items.append(draw(st.sampled_from([slice(None), 0, -1]) | _slice(n)))
    else:  # a boolean mask over axes p .. p+k-1
        p = draw(st.integers(0, nd - 1))
        k = draw(st.integers(1, nd - p))
        items = [draw(st.just(slice(None)) | _slice(n)) for n in shape[:p]]
        items.append(draw(hnp.arrays(np.bool_, shape[p : p + k])))
        items += [draw(st.just(slice(None)) | _slice(n)) for n in shape[p + k :]]
    if draw(st.booleans()):
        items.insert(draw(st.integers(0, len(items))), None)
    if draw(st.booleans()):  # trailing full slices may be written as an Ellipsis
        while items and isinstance(items[-1], slice) and items[-1] == slice(None):
            items.pop()
        items.append(Ellipsis)
    return tuple(items)


@st.composite
def getitem_cases(draw):
    shape = draw(one_shape())
    if len(shape) == 0 or draw(st.booleans()):
        index = draw(hnp.basic_indices(shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True))
    else:
        index = draw(advanced_indices(shape))
    return Case((draw(_arrays(shape, REAL)),), {"index": index})


def _ag_index(index):
    items = index if isinstance(index, tuple) else (index,)
    return tuple(ag.tensor(i) if isinstance(i, np.ndarray) else i for i in items)


def _t_getitem(x, index):
    torch = _torch()
    items = index if isinstance(index, tuple) else (index,)
    if any(isinstance(i, slice) and i.step is not None and i.step < 0 for i in items):
        return None  # torch has no negative slice steps
    return x[tuple(torch.from_numpy(i) if isinstance(i, np.ndarray) else i for i in items)]


@st.composite
def take_along_axis_cases(draw):
    shape = draw(one_shape(min_dims=1, max_dims=3))
    nd = len(shape)
    axis = draw(st.integers(-nd, nd - 1))
    ishape = tuple(draw(st.integers(1, 4)) if d == axis % nd else draw(st.sampled_from([1, n])) for d, n in enumerate(shape))
    indices = draw(hnp.arrays(np.int64, ishape, elements=st.integers(0, shape[axis] - 1)))
    return Case((draw(_arrays(shape, REAL)),), {"indices": indices, "axis": axis})


INDEXING = [
    OpSpec("getitem", lambda x, index: x[_ag_index(index)], lambda x, index: x[index], _t_getitem, getitem_cases()),
    OpSpec(
        "take_along_axis", lambda x, indices, axis: ag.take_along_axis(x, ag.tensor(indices), axis),
        np.take_along_axis,
        lambda x, indices, axis: _torch().take_along_dim(x, _torch().from_numpy(indices), dim=axis),
        take_along_axis_cases(),
    ),
]


# -- selection and masking -------------------------------------------------------------------------------

@st.composite
def triangle_cases(draw):
    shape = draw(one_shape(min_dims=2, max_dims=4))
    k = draw(st.integers(-3, 3))
    return Case((draw(_arrays(shape, REAL)),), {"k": k})


@st.composite
def masked_fill_cases(draw):
    shape = draw(one_shape())
    mshape = tuple(draw(st.sampled_from([1, n])) for n in shape)[draw(st.integers(0, len(shape))):]
    mask = draw(hnp.arrays(np.bool_, mshape))
    value = draw(st.sampled_from([0.0, -1.5, 2.0]))
    return Case((draw(_arrays(shape, REAL)),), {"mask": mask, "value": value})


@st.composite
def topk_cases(draw):
    shape = draw(one_shape(min_dims=1, max_dims=3))
    nd = len(shape)
    dim = draw(st.integers(-nd, nd - 1))
    k = draw(st.integers(0, shape[dim]))
    kwargs = {"k": k, "dim": dim, "largest": draw(st.booleans())}
    return Case((draw(distinct_arrays(shape)),), kwargs)


@st.composite
def sort_cases(draw):
    shape = draw(one_shape(min_dims=1, max_dims=3))
    nd = len(shape)
    return Case((draw(distinct_arrays(shape)),), {"dim": draw(st.integers(-nd, nd - 1)), "descending": draw(st.booleans())})


def _np_topk(x, k, dim, largest):
    order = np.argsort(-x if largest else x, axis=dim, kind="stable")
    return np.take_along_axis(x, np.take(order, np.arange(k), axis=dim), axis=dim)


def _np_sort(x, dim, descending):
    out = np.sort(x, axis=dim)
    return np.flip(out, axis=dim) if descending else out


SELECTION = [
    OpSpec("tril", ag.tril, lambda x, k: np.tril(x, k), lambda x, k: _torch().tril(x, diagonal=k), triangle_cases()),
    OpSpec("triu", ag.triu, lambda x, k: np.triu(x, k), lambda x, k: _torch().triu(x, diagonal=k), triangle_cases()),
    OpSpec(
        "masked_fill", lambda x, mask, value: ag.masked_fill(x, ag.tensor(mask), value),
        lambda x, mask, value: np.where(mask, value, x),
        lambda x, mask, value: x.masked_fill(_torch().from_numpy(mask), value), masked_fill_cases(),
    ),
    OpSpec(
        "topk", lambda x, k, dim, largest: ag.topk(x, k, dim=dim, largest=largest)[0], _np_topk,
        lambda x, k, dim, largest: _torch().topk(x, k, dim=dim, largest=largest).values, topk_cases(),
    ),
    OpSpec(
        "sort", lambda x, dim, descending: ag.sort(x, dim=dim, descending=descending)[0], _np_sort,
        lambda x, dim, descending: _torch().sort(x, dim=dim, descending=descending).values, sort_cases(),
    ),
]


# -- casts -----------------------------------------------------------------------------------------------

CASTS = [
    OpSpec("astype_float64", lambda x: ag.astype(x, np.float64), lambda x: x.astype(np.float64),
           lambda x: x.to(_torch().float64), elementwise_cases((REAL,))),
    # Rounding to float32 in the middle defeats float64 finite differences: checked against torch only.
    OpSpec("astype_float32", lambda x: ag.astype(x, np.float32), lambda x: x.astype(np.float32),
           lambda x: x.to(_torch().float32), elementwise_cases((REAL,)), finite_differences=False),
]


OPS: list[OpSpec] = ELEMENTWISE + LINALG + REDUCTIONS + SHAPE + INDEXING + SELECTION + CASTS
