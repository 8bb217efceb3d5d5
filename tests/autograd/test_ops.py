"""Property tests of every op, driven by the one table in op_table.py.

For each op: the forward matches NumPy (values, shape, dtype, in float64 and float32); first and
second derivatives match central finite differences in float64; values and gradients match
PyTorch; float32 inputs get float32 gradients of their own shape; forward and backward leave the
inputs, outputs and upstream gradient untouched and hand out gradients that share no memory.
Shapes cover 0-d, size-1 and broadcasting cases, axes negative ones and keepdims.
Focused tests below pin the subgradient choices, tie splitting, scatter-add of repeated indices,
numerical stability at large magnitudes and the error messages.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from op_table import OPS, OpSpec

from xpgrad import autograd as ag
from xpgrad.autograd.testing import gradcheck, gradgradcheck

FD_OPS = [s for s in OPS if s.finite_differences]
SECOND_ORDER_OPS = [s for s in FD_OPS if s.second_order]
TORCH_OPS = [s for s in OPS if s.torch is not None]
SCALAR_OPS = [s for s in OPS if s.binary_scalar]


def over(specs: list[OpSpec]):
    return pytest.mark.parametrize("spec", specs, ids=lambda s: s.name)


def as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def leaves(arrays, dtype=np.float64, requires_grad=True) -> list:
    return [ag.tensor(np.asarray(a, dtype=dtype), requires_grad=requires_grad) for a in arrays]


def run(spec: OpSpec, tensors, case) -> tuple:
    return as_tuple(spec.fn(*tensors, **case.kwargs))


def upstream(outs, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [ag.tensor(rng.standard_normal(o.shape).astype(o.dtype)) for o in outs]


def backward(outs, grads) -> None:
    """Backpropagate ``grads`` from every output into the leaves' ``.grad``, keeping the graph."""
    for o, g in zip(outs, grads):
        o.backward(g, retain_graph=True)


def shares_memory(a, b) -> bool:
    # np.shares_memory reads only metadata; it also accepts the stand-in's arrays and dispatches to CuPy.
    return bool(np.shares_memory(a, b))


def torch_leaves(torch, arrays) -> list:
    return [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]


# -- the table-driven properties ---------------------------------------------------------------------------

@over(OPS)
@given(data=st.data())
def test_forward_matches_numpy(spec, data):
    case = data.draw(spec.cases, label="case")
    tolerances = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-6)}
    for dtype, tol in tolerances.items():
        arrays = [a.astype(dtype) for a in case.arrays]
        expected = [np.asarray(e) for e in as_tuple(spec.ref(*arrays, **case.kwargs))]
        for requires_grad in (False, True):
            outs = run(spec, leaves(arrays, dtype, requires_grad), case)
            assert len(outs) == len(expected)
            for out, want in zip(outs, expected):
                assert isinstance(out, ag.Tensor)
                assert out.shape == want.shape
                assert out.dtype == want.dtype, f"{spec.name}: dtype {out.dtype}, NumPy gives {want.dtype}"
                np.testing.assert_allclose(out.numpy(), want, **tol)
                assert out.requires_grad is requires_grad


@over(FD_OPS)
@given(data=st.data())
def test_gradcheck(spec, data):
    case = data.draw(spec.cases, label="case")
    assert gradcheck(lambda *xs: run(spec, xs, case), leaves(case.arrays))


@over(SECOND_ORDER_OPS)
@settings(max_examples=max(1, settings.default.max_examples * 3 // 5))  # the priciest check: 15 in ci
@given(data=st.data())
def test_gradgradcheck(spec, data):
    case = data.draw(spec.cases, label="case")
    assert gradgradcheck(lambda *xs: run(spec, xs, case), leaves(case.arrays))


@over(TORCH_OPS)
@given(data=st.data())
def test_matches_torch(spec, data):
    torch = pytest.importorskip("torch")
    case = data.draw(spec.cases, label="case")
    ts = torch_leaves(torch, case.arrays)
    want = spec.torch(*ts, **case.kwargs)
    if want is None:
        return  # a case torch cannot express (negative slice steps); NumPy and gradcheck still cover it
    want = as_tuple(want)
    xs = leaves(case.arrays)
    outs = run(spec, xs, case)
    assert len(outs) == len(want)
    for o, w in zip(outs, want):
        assert o.shape == tuple(w.shape)
        np.testing.assert_allclose(o.numpy(), w.detach().numpy(), rtol=1e-10, atol=1e-12)
    us = upstream(outs, seed=0)
    got = ag.grad(outs, xs, us)
    expected = torch.autograd.grad(
        want, ts, [torch.from_numpy(u.numpy()).to(w.dtype) for u, w in zip(us, want)], allow_unused=True
    )
    for x, g, e in zip(xs, got, expected):
        e = np.zeros(x.shape) if e is None else e.numpy()
        assert g.shape == x.shape and g.dtype == x.dtype
        np.testing.assert_allclose(g.numpy(), e, rtol=1e-10, atol=1e-12)


@over(OPS)
@given(data=st.data())
def test_float32_inputs_get_float32_gradients(spec, data):
    case = data.draw(spec.cases, label="case")
    xs = leaves(case.arrays, np.float32)
    outs = run(spec, xs, case)
    backward(outs, upstream(outs, seed=1))
    for x in xs:
        assert x.grad is not None
        assert x.grad.dtype == np.float32 and x.grad.shape == x.shape
        assert x.grad.data.dtype == np.float32
        assert np.isfinite(x.grad.numpy()).all()


@over(OPS)
@given(data=st.data())
def test_inputs_untouched_and_gradients_not_aliased(spec, data):
    case = data.draw(spec.cases, label="case")
    xs = leaves(case.arrays)
    inputs_before = [x.numpy().copy() for x in xs]
    outs = run(spec, xs, case)
    outputs_before = [o.numpy().copy() for o in outs]
    us = upstream(outs, seed=2)
    upstream_before = [u.numpy().copy() for u in us]

    def untouched():
        for x, before in zip(xs, inputs_before):
            np.testing.assert_array_equal(x.numpy(), before)
        for o, before in zip(outs, outputs_before):
            np.testing.assert_array_equal(o.numpy(), before)
        for u, before in zip(us, upstream_before):
            np.testing.assert_array_equal(u.numpy(), before)

    untouched()
    backward(outs, us)
    untouched()
    grads = [x.grad.data for x in xs]
    others = [x.data for x in xs] + [o.data for o in outs] + [u.data for u in us]
    for i, g in enumerate(grads):
        for j, h in enumerate(grads[i + 1 :], i + 1):
            assert not shares_memory(g, h), f"{spec.name}: the gradients of inputs {i} and {j} share memory"
        for k, other in enumerate(others):
            assert not shares_memory(g, other), f"{spec.name}: the gradient of input {i} aliases array {k}"
    first = [x.grad.numpy().copy() for x in xs]
    backward(outs, us)  # accumulating into .grad must not write through to anything else
    untouched()
    for x, g in zip(xs, first):
        np.testing.assert_array_equal(x.grad.numpy(), 2 * g)


# -- dtype promotion with Python scalars and mixed dtypes ---------------------------------------------------

@over(SCALAR_OPS)
@pytest.mark.parametrize("shape", [(), (1,), (2, 3)])
def test_weak_python_scalars_keep_float32(spec, shape):
    a = np.linspace(0.5, 2.0, num=int(np.prod(shape))).reshape(shape).astype(np.float32)
    for scalar in (1.5, 2):
        x = ag.tensor(a, requires_grad=True)
        for out, want in ((spec.fn(x, scalar), spec.ref(a, scalar)), (spec.fn(scalar, x), spec.ref(scalar, a))):
            want = np.asarray(want)
            assert want.dtype == np.float32
            assert out.dtype == np.float32 and out.shape == want.shape
            np.testing.assert_allclose(out.numpy(), want, rtol=1e-6)
            out.backward(ag.ones_like(out))
            assert x.grad.dtype == np.float32 and x.grad.shape == x.shape


@over(SCALAR_OPS)
def test_mixed_float32_float64_promotes_like_numpy(spec):
    a = np.array([[0.5, 1.5, 2.0]], dtype=np.float32)
    b = np.array([[1.25], [0.75]], dtype=np.float64)
    for lhs, rhs in ((a, b), (b, a), (a, np.array(1.5)), (np.array(1.5), a)):
        x, y = ag.tensor(lhs, requires_grad=True), ag.tensor(rhs, requires_grad=True)
        out, want = spec.fn(x, y), np.asarray(spec.ref(lhs, rhs))
        assert out.dtype == want.dtype and out.shape == want.shape
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-6)
        out.backward(ag.ones_like(out))
        assert x.grad.dtype == lhs.dtype and y.grad.dtype == rhs.dtype
        assert x.grad.shape == lhs.shape and y.grad.shape == rhs.shape


@pytest.mark.parametrize("name", ["concatenate", "stack", "where", "matmul"])
def test_mixed_dtypes_in_multi_input_ops(name):
    a32 = np.array([[0.5, 1.5], [2.0, -1.0]], dtype=np.float32)
    b64 = np.array([[1.25, 0.75], [-0.5, 3.0]])
    cond = np.array([True, False])
    fns = {
        "concatenate": (lambda x, y: ag.concatenate([x, y], axis=-1), lambda x, y: np.concatenate([x, y], axis=-1)),
        "stack": (lambda x, y: ag.stack([x, y]), lambda x, y: np.stack([x, y])),
        "where": (lambda x, y: ag.where(ag.tensor(cond), x, y), lambda x, y: np.where(cond, x, y)),
        "matmul": (ag.matmul, np.matmul),
    }
    fn, ref = fns[name]
    x, y = ag.tensor(a32, requires_grad=True), ag.tensor(b64, requires_grad=True)
    out, want = fn(x, y), ref(a32, b64)
    assert out.dtype == want.dtype == np.float64
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-7)
    out.backward(ag.ones_like(out))
    assert x.grad.dtype == np.float32 and y.grad.dtype == np.float64


# -- operators and methods are the functions -----------------------------------------------------------

OPERATOR_FORMS = [
    ("x + y", lambda x, y: x + y, np.add), ("x - y", lambda x, y: x - y, np.subtract),
    ("x * y", lambda x, y: x * y, np.multiply), ("x / y", lambda x, y: x / y, np.divide),
    ("x ** y", lambda x, y: x ** y, np.power), ("x @ m", lambda x, m: x @ m, np.matmul),
    ("2.5 - x", lambda x, y: 2.5 - x, lambda x, y: 2.5 - x), ("2 / x", lambda x, y: 2 / x, lambda x, y: 2 / x),
    ("1.5 + x * 3", lambda x, y: 1.5 + x * 3, lambda x, y: 1.5 + x * 3),
    ("-x", lambda x, y: -x, lambda x, y: -x), ("abs(x - 1)", lambda x, y: abs(x - 1), lambda x, y: abs(x - 1)),
    ("x.sum(-1, keepdims)", lambda x, y: x.sum(axis=-1, keepdims=True), lambda x, y: x.sum(axis=-1, keepdims=True)),
    ("x.var(0, ddof=1)", lambda x, y: x.var(axis=0, ddof=1), lambda x, y: x.var(axis=0, ddof=1)),
    ("x.reshape(3, 2)", lambda x, y: x.reshape(3, 2), lambda x, y: x.reshape(3, 2)),
    ("x.reshape((3, 2))", lambda x, y: x.reshape((3, 2)), lambda x, y: x.reshape((3, 2))),
    ("x.transpose(1, 0)", lambda x, y: x.transpose(1, 0), lambda x, y: x.transpose(1, 0)),
    ("x.T", lambda x, y: x.T, lambda x, y: x.T), ("x.flatten()", lambda x, y: x.flatten(), lambda x, y: x.flatten()),
    ("x.repeat(2, axis=1)", lambda x, y: x.repeat(2, axis=1), lambda x, y: x.repeat(2, axis=1)),
    ("x.logsumexp(0)", lambda x, y: x.logsumexp(axis=0), lambda x, y: np.log(np.exp(x).sum(axis=0))),
]


@pytest.mark.parametrize("expr,fn,ref", OPERATOR_FORMS, ids=[f[0] for f in OPERATOR_FORMS])
def test_operators_and_methods(expr, fn, ref):
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 2.0, (2, 3))
    b = rng.uniform(0.5, 2.0, (3, 2) if "@" in expr else (3,))
    assert gradcheck(fn, leaves((a, b)))  # an unused y must get a zero gradient
    for dtype in (np.float64, np.float32):
        x, y = leaves((a, b), dtype)
        out, want = fn(x, y), np.asarray(ref(a.astype(dtype), b.astype(dtype)))
        assert out.dtype == want.dtype and out.shape == want.shape
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-6 if dtype == np.float32 else 1e-12)


# -- non-differentiable outputs ----------------------------------------------------------------------------

COMPARISONS = [
    ("equal", lambda x, y: x == y, np.equal), ("not_equal", lambda x, y: x != y, np.not_equal),
    ("less", lambda x, y: x < y, np.less), ("less_equal", lambda x, y: x <= y, np.less_equal),
    ("greater", lambda x, y: x > y, np.greater), ("greater_equal", lambda x, y: x >= y, np.greater_equal),
]


@pytest.mark.parametrize("name,operator,ref", COMPARISONS, ids=[c[0] for c in COMPARISONS])
def test_comparisons_are_bool_and_not_differentiable(name, operator, ref):
    a = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    b = np.array([2.0, 2.0, 2.0])
    x, y = ag.tensor(a, requires_grad=True), ag.tensor(b, requires_grad=True)
    for got, want in (
        (operator(x, y), ref(a, b)), (getattr(ag, name)(x, y), ref(a, b)),
        (operator(x, 2.0), ref(a, 2.0)), (getattr(ag, name)(2.0, x), ref(2.0, a)),
    ):
        assert got.dtype == np.bool_ and got.shape == want.shape
        np.testing.assert_array_equal(got.numpy(), want)
        assert not got.requires_grad and got.grad_fn is None
    with pytest.raises(TypeError):
        (x < y).requires_grad_()  # only floating-point tensors may require gradients


@pytest.mark.parametrize("name", ["argmax", "argmin"])
@given(data=st.data())
def test_argmax_argmin_are_int64_and_not_differentiable(name, data):
    from op_table import distinct_arrays, one_shape

    shape = data.draw(one_shape(), label="shape")
    a = data.draw(distinct_arrays(shape), label="a")
    nd = len(shape)
    axis = data.draw(st.none() | st.integers(-nd, nd - 1) if nd else st.none(), label="axis")
    keepdims = data.draw(st.booleans(), label="keepdims")
    x = ag.tensor(a, requires_grad=True)
    for got in (getattr(ag, name)(x, axis=axis, keepdims=keepdims), getattr(x, name)(axis=axis, keepdims=keepdims)):
        want = np.asarray(getattr(np, name)(a, axis=axis, keepdims=keepdims))
        assert got.dtype == np.int64 and got.shape == want.shape
        np.testing.assert_array_equal(got.numpy(), want)
        assert not got.requires_grad and got.grad_fn is None


def test_non_differentiable_outputs_can_steer_a_differentiable_graph():
    x = ag.tensor(np.array([-1.5, 0.5, 2.0]), requires_grad=True)
    y = ag.where(x > 0, x * x, -x)
    y.backward(ag.ones_like(y))
    np.testing.assert_array_equal(x.grad.numpy(), [-1.0, 1.0, 4.0])
    picked = x[ag.argmax(x)]
    picked.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [-1.0, 1.0, 5.0])


# -- 0-d tensors and axis 0 / -1 ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sum", "mean", "var", "max", "min", "prod", "logsumexp"])
@pytest.mark.parametrize("axis", [0, -1, (0,), (-1,)])
def test_0d_reductions_take_axis_0_and_minus_1(name, axis):
    # As NumPy's sum/max/prod and every PyTorch reduction: a 0-d tensor reduces over no axis.
    for keepdims in (False, True):
        x = ag.tensor(np.array(1.5), requires_grad=True)
        out = getattr(ag, name)(x, axis=axis, keepdims=keepdims)
        want = getattr(ag, name)(ag.tensor(np.array(1.5)))
        assert out.shape == () and out.item() == want.item()
        out.backward()
        assert x.grad.shape == () and x.grad.item() == (0.0 if name == "var" else 1.0)
    for bad in (1, -2, (0, 1)):
        with pytest.raises(ValueError, match=name):
            getattr(ag, name)(ag.tensor(np.array(1.5)), axis=bad)


def test_0d_shape_ops_and_arg_reductions_take_axis_0_and_minus_1():
    x = ag.tensor(np.array(1.5), requires_grad=True)
    for axis in (0, -1):
        assert ag.squeeze(x, axis).shape == ()
        assert ag.argmax(x, axis=axis).item() == 0 and ag.argmin(x, axis=axis).item() == 0
        out = ag.repeat(x, 3, axis=axis)
        np.testing.assert_array_equal(out.numpy(), np.repeat(np.array(1.5), 3, axis=axis))
    with pytest.raises(TypeError, match="argmax"):
        ag.argmax(ag.tensor(np.ones((2, 2))), axis=(0, 1))  # NumPy refuses tuples too; never axis[0]


# -- subgradients and ties ---------------------------------------------------------------------------------

def grad_of(fn, *arrays, upstream=None):
    xs = leaves(arrays)
    out = fn(*xs)
    out.backward(ag.ones_like(out) if upstream is None else ag.tensor(upstream))
    return [x.grad.numpy() for x in xs]


def test_relu_abs_subgradient_at_zero_is_zero():
    x = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(grad_of(ag.relu, x)[0], [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(grad_of(ag.abs, x)[0], [-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(grad_of(lambda t: abs(t), x)[0], [-1.0, 0.0, 1.0])


def test_clip_gradient_passes_at_the_bounds():
    x = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    np.testing.assert_array_equal(grad_of(lambda t: ag.clip(t, -1, 1), x)[0], [0, 1, 1, 1, 0])
    np.testing.assert_array_equal(grad_of(lambda t: ag.clip(t, 0, None), x)[0], [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(grad_of(lambda t: ag.clip(t, None, 0.0), x)[0], [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(grad_of(lambda t: ag.clip(t, 1.0, 1.0), x)[0], [0, 0, 0, 1, 0])


def test_maximum_minimum_split_ties_evenly():
    a = np.array([1.0, 2.0, 3.0])
    b = np.array([1.0, 3.0, 2.0])
    ga, gb = grad_of(ag.maximum, a, b)
    np.testing.assert_array_equal(ga, [0.5, 0.0, 1.0])
    np.testing.assert_array_equal(gb, [0.5, 1.0, 0.0])
    ga, gb = grad_of(ag.minimum, a, b)
    np.testing.assert_array_equal(ga, [0.5, 1.0, 0.0])
    np.testing.assert_array_equal(gb, [0.5, 0.0, 1.0])
    # Broadcast ties: a 0-d operand collects half of every tie and all of its wins.
    ga, gs = grad_of(ag.maximum, np.array([[1.0, 2.0], [2.0, 3.0]]), np.array(2.0))
    np.testing.assert_array_equal(ga, [[0.0, 0.5], [0.5, 1.0]])
    np.testing.assert_array_equal(gs, 2.0)
    ga, gs = grad_of(ag.minimum, np.array([[1.0, 2.0], [2.0, 3.0]]), np.array(2.0))
    np.testing.assert_array_equal(ga, [[1.0, 0.5], [0.5, 0.0]])
    np.testing.assert_array_equal(gs, 2.0)


def test_max_min_reductions_split_ties_evenly():
    a = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    np.testing.assert_allclose(grad_of(lambda t: ag.max(t, axis=1), a)[0], [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(grad_of(lambda t: ag.max(t, axis=-2, keepdims=True), a)[0], [[0, 1, 1], [1, 0, 0]])
    np.testing.assert_allclose(grad_of(lambda t: ag.max(t), a)[0], [[0, 0.5, 0.5], [0, 0, 0]])
    np.testing.assert_allclose(grad_of(lambda t: ag.min(t, axis=(0, 1)), a)[0], [[1, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(grad_of(lambda t: ag.min(t, axis=1), a)[0], [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(grad_of(lambda t: t.max(axis=0), np.full((4, 1), 7.0))[0], np.full((4, 1), 0.25))


def test_tie_splitting_agrees_with_torch():
    torch = pytest.importorskip("torch")
    a = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    b = np.array([3.0, 2.0, 3.0])
    u = np.array([[0.3, -1.2, 2.0], [0.7, 0.1, -0.4]])
    for ours, theirs in ((ag.maximum, torch.maximum), (ag.minimum, torch.minimum)):
        ga, gb = grad_of(ours, a, b, upstream=u)
        ta, tb = torch_leaves(torch, (a, b))
        theirs(ta, tb).backward(torch.from_numpy(u))
        np.testing.assert_allclose(ga, ta.grad.numpy())
        np.testing.assert_allclose(gb, tb.grad.numpy())
    for ours, theirs in ((ag.max, torch.amax), (ag.min, torch.amin)):
        (ga,) = grad_of(lambda t: ours(t, axis=1), a, upstream=u[:, 0])
        (ta,) = torch_leaves(torch, (a,))
        theirs(ta, dim=1).backward(torch.from_numpy(u[:, 0].copy()))
        np.testing.assert_allclose(ga, ta.grad.numpy())


# -- indexing: scatter-add and masks -------------------------------------------------------------------

def test_repeated_integer_indices_accumulate():
    x = np.arange(4.0)
    idx = ag.tensor(np.array([0, 0, 2, 0, -1]))
    np.testing.assert_array_equal(grad_of(lambda t: t[idx], x)[0], [3.0, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(grad_of(lambda t: t[[1, 1, 1]], x)[0], [0.0, 3.0, 0.0, 0.0])
    m = np.arange(6.0).reshape(2, 3)
    rows, cols = ag.tensor(np.array([0, 1, 0])), ag.tensor(np.array([2, 0, 2]))
    np.testing.assert_array_equal(grad_of(lambda t: t[rows, cols], m)[0], [[0, 0, 2], [1, 0, 0]])
    np.testing.assert_array_equal(grad_of(lambda t: t[:, ag.tensor(np.array([1, 1]))], m)[0], [[0, 2, 0], [0, 2, 0]])
    taken = grad_of(lambda t: ag.take_along_axis(t, ag.tensor(np.array([[0, 0, 0], [2, 1, 2]])), axis=1), m)[0]
    np.testing.assert_array_equal(taken, [[3, 0, 0], [0, 1, 2]])
    np.testing.assert_array_equal(grad_of(lambda t: ag.repeat(t, 3, axis=0), m)[0], np.full((2, 3), 3.0))


def test_repeated_indices_second_order():
    m = ag.tensor(np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]), requires_grad=True)
    idx = ag.tensor(np.array([[0, 0], [1, 0]]))
    assert gradgradcheck(lambda t: t[idx] * t[idx], (m,))
    assert gradgradcheck(lambda t: ag.take_along_axis(t, ag.tensor(np.array([[1, 1], [0, 0]])), axis=-1) ** 3, (m,))


def test_boolean_masks():
    a = np.arange(12.0).reshape(3, 4)
    mask = a % 3 == 0
    x = ag.tensor(a, requires_grad=True)
    out = x[ag.tensor(mask)]
    np.testing.assert_array_equal(out.numpy(), a[mask])
    out.backward(ag.tensor(np.arange(1.0, out.shape[0] + 1)))
    want = np.zeros_like(a)
    want[mask] = np.arange(1.0, mask.sum() + 1)
    np.testing.assert_array_equal(x.grad.numpy(), want)
    # A mask on the leading axis mixed with a slice and an integer array.
    rows = np.array([True, False, True])
    x = ag.tensor(a, requires_grad=True)
    out = x[ag.tensor(rows), 1:3]
    np.testing.assert_array_equal(out.numpy(), a[rows, 1:3])
    out.backward(ag.ones_like(out))
    np.testing.assert_array_equal(x.grad.numpy(), np.outer(rows, [0, 1, 1, 0]))
    x = ag.tensor(a, requires_grad=True)
    out = x[ag.tensor(rows), ag.tensor(np.array([3, 3]))]
    np.testing.assert_array_equal(out.numpy(), a[rows, np.array([3, 3])])
    # All-false mask: an empty result and a zero gradient.
    x = ag.tensor(a, requires_grad=True)
    out = x[ag.tensor(np.zeros((3, 4), dtype=bool))]
    assert out.shape == (0,)
    out.backward(ag.ones_like(out))
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((3, 4)))
    assert gradgradcheck(lambda t: t[ag.tensor(mask)] ** 2, (ag.tensor(a / 10, requires_grad=True),))


# -- prod with zeros ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("values", [[[2.0, 0.0, 3.0], [1.5, -2.0, 0.5]], [[0.0, 0.0, 3.0], [0.0, 1.0, 2.0]]],
                         ids=["one_zero", "two_zeros"])
@pytest.mark.parametrize("axis", [None, 1, -2, (0, 1)])
def test_prod_with_zeros(values, axis):
    a = np.array(values)
    assert gradcheck(lambda t: ag.prod(t, axis=axis), (ag.tensor(a, requires_grad=True),))
    assert gradgradcheck(lambda t: ag.prod(t, axis=axis), (ag.tensor(a, requires_grad=True),))
    torch = pytest.importorskip("torch")
    from op_table import _t_prod

    (ta,) = torch_leaves(torch, (a,))
    _t_prod(ta, axis=axis).sum().backward()
    np.testing.assert_allclose(grad_of(lambda t: ag.prod(t, axis=axis).sum(), a)[0], ta.grad.numpy())


# -- matmul: every 1-D and batched case --------------------------------------------------------------------

MATMUL_SHAPES = [
    ((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)), ((2, 3), (3, 4)), ((4, 2, 3), (3,)), ((3,), (4, 3, 2)),
    ((2, 1, 2, 3), (5, 3, 2)), ((1, 3), (2, 3, 1)), ((1,), (1,)),
]


@pytest.mark.parametrize("a_shape,b_shape", MATMUL_SHAPES, ids=[f"{a}@{b}" for a, b in MATMUL_SHAPES])
def test_matmul_cases_agree_with_torch(a_shape, b_shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    x, y = leaves((a, b))
    out = x @ y
    np.testing.assert_allclose(out.numpy(), a @ b, rtol=1e-12, atol=1e-12)
    u = rng.standard_normal(out.shape)
    out.backward(ag.tensor(u))
    ta, tb = torch_leaves(torch, (a, b))
    torch.matmul(ta, tb).backward(torch.from_numpy(u))
    np.testing.assert_allclose(x.grad.numpy(), ta.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y.grad.numpy(), tb.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert gradgradcheck(ag.matmul, leaves((a, b)))


# -- numerical stability ---------------------------------------------------------------------------------

LARGE = np.array([-1e4, -1e3, -100.0, -30.0, -1.0, 0.0, 1.0, 30.0, 100.0, 1e3, 1e4])


def _sigmoid_reference(x):
    # exp(-|x|) is computed in float64 and underflows to 0 harmlessly there.
    with np.errstate(under="ignore"):
        e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["sigmoid", "tanh", "logsumexp", "log1p"])
def test_large_magnitudes_are_stable(name, dtype):
    if name == "log1p":
        values = np.array([-1 + 1e-6, -0.5, 0.0, 1.0, 30.0, 1e3, 1e4])  # log1p is defined above -1
    elif name == "logsumexp":
        values = np.stack([LARGE, LARGE[::-1], np.full_like(LARGE, 1e4)])
    else:
        values = LARGE
    x = ag.tensor(values.astype(dtype), requires_grad=True)
    with np.errstate(all="raise"):
        if name == "logsumexp":
            out = ag.logsumexp(x, axis=-1)
        else:
            out = getattr(ag, name)(x)
        out.backward(ag.ones_like(out))
    v64 = values.astype(dtype).astype(np.float64)
    if name == "sigmoid":
        want = _sigmoid_reference(v64)
        with np.errstate(under="ignore"):
            e = np.exp(-np.abs(v64))
        want_grad = e / (1 + e) ** 2
    elif name == "tanh":
        want = np.tanh(v64)
        want_grad = 1 - want * want
    elif name == "log1p":
        want = np.log1p(v64)
        want_grad = 1 / (1 + v64)
    else:
        m = v64.max(axis=-1, keepdims=True)
        with np.errstate(under="ignore"):
            s = np.exp(v64 - m).sum(axis=-1, keepdims=True)
            want = (np.log(s) + m)[:, 0]
            want_grad = np.exp(v64 - m) / s
    assert out.dtype == dtype and x.grad.dtype == dtype
    assert np.isfinite(out.numpy()).all() and np.isfinite(x.grad.numpy()).all()
    # Relative accuracy, down to the dtype's resolution of values of order one: in float32, 1 - sigmoid(30)
    # is 0, so its derivative y * (1 - y) is too (as in PyTorch), while the true one is 9e-14.
    rtol, atol = (1e-12, np.finfo(dtype).eps) if dtype == np.float64 else (1e-6, np.finfo(dtype).eps)
    np.testing.assert_allclose(out.numpy(), want, rtol=rtol, atol=atol)
    np.testing.assert_allclose(x.grad.numpy(), want_grad, rtol=rtol, atol=atol)


# -- error messages ----------------------------------------------------------------------------------------

BROADCASTING_BINARY = [
    ("add", ag.add), ("sub", ag.sub), ("mul", ag.mul), ("div", ag.div), ("pow", ag.pow),
    ("maximum", ag.maximum), ("minimum", ag.minimum),
    ("add", lambda a, b: a + b), ("mul", lambda a, b: a * b), ("less", lambda a, b: a < b),
]


@pytest.mark.parametrize("name,fn", BROADCASTING_BINARY, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BROADCASTING_BINARY)])
def test_broadcast_mismatch_names_op_and_shapes(name, fn):
    a, b = ag.ones((2, 3), requires_grad=True), ag.ones((4,))
    with pytest.raises(ValueError) as info:
        fn(a, b)
    message = str(info.value)
    assert name in message and "(2, 3)" in message and "(4,)" in message


def test_where_broadcast_mismatch_names_op_and_shapes():
    with pytest.raises(ValueError) as info:
        ag.where(ag.tensor(np.array([True, False])), ag.ones((3,), requires_grad=True), ag.ones((3,)))
    message = str(info.value)
    assert "where" in message and "(2,)" in message and "(3,)" in message


@pytest.mark.parametrize("a_shape,b_shape", [((2, 3), (4, 5)), ((3,), (4,)), ((2, 3), (2,)), ((2, 2, 3), (3, 3, 4))])
def test_matmul_mismatch_names_op_and_shapes(a_shape, b_shape):
    for fn in (ag.matmul, lambda a, b: a @ b):
        with pytest.raises(ValueError) as info:
            fn(ag.ones(a_shape, requires_grad=True), ag.ones(b_shape))
        message = str(info.value)
        assert "matmul" in message and str(a_shape) in message and str(b_shape) in message


def test_matmul_of_0d_raises_value_error():
    with pytest.raises(ValueError, match="matmul"):
        ag.matmul(ag.ones(()), ag.ones((3,)))


@pytest.mark.parametrize("shape", [(64, 64), (65, 64), (3, 2000, 2)])  # at, just above and far above the
@pytest.mark.parametrize("name", ["sum", "mean", "var"])              # size where the spread stops filling
@pytest.mark.parametrize("axis", [None, 1])
def test_reduction_gradients_of_small_and_large_inputs(shape, name, axis):
    data = np.random.default_rng(0).standard_normal(shape)
    x = ag.tensor(data, requires_grad=True)
    upstream = np.random.default_rng(1).standard_normal(np.sum(data, axis=axis).shape)
    getattr(ag, name)(x, axis=axis).backward(ag.tensor(upstream))
    kept = upstream if axis is None else np.expand_dims(upstream, axis)
    count = data.size if axis is None else data.shape[axis]
    expected = {
        "sum": np.broadcast_to(kept, shape),
        "mean": np.broadcast_to(kept / count, shape),
        "var": kept * 2 * (data - data.mean(axis=axis, keepdims=True)) / count,  # ddof=0
    }[name]
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12, atol=1e-12)
    assert x.grad.numpy().flags.writeable  # a gradient of its own, not a read-only broadcast view
