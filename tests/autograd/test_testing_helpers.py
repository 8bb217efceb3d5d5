"""autograd.testing: gradcheck, gradgradcheck and the hypothesis strategies."""
import numpy as np
import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from xpgrad import autograd as ag
from xpgrad.autograd.testing import (
    GradcheckError, broadcastable_shapes, gradcheck, gradgradcheck, shapes, tensors, valid_axes,
)


def leaf(values, dtype=np.float64):
    return ag.tensor(np.asarray(values, dtype=dtype), requires_grad=True)


def test_gradcheck_error_importable_from_both_places():
    import xpgrad.autograd.testing

    assert ag.GradcheckError is GradcheckError is xpgrad.autograd.testing.GradcheckError
    assert ag.gradcheck is gradcheck and ag.gradgradcheck is gradgradcheck
    assert issubclass(GradcheckError, Exception)


@pytest.mark.parametrize("fn", [
    ag.tanh, ag.exp, ag.sin, lambda t: t * t, lambda t: (t ** 3).sum(), lambda t: t.sum(axis=0),
])
def test_gradcheck_passes_for_correct_ops(fn):
    x = leaf([[0.3, -0.5, 1.2], [0.7, 0.1, -1.4]])
    assert gradcheck(fn, (x,)) is True


def test_gradcheck_several_inputs_with_broadcasting():
    a = leaf([[0.3, -0.5, 1.2], [0.7, 0.1, -1.4]])
    b = leaf([0.5, 2.0, -1.0])
    assert gradcheck(lambda x, y: x * y + ag.exp(y), (a, b))
    assert gradgradcheck(lambda x, y: x * y * y, (a, b))


def test_gradcheck_accepts_single_tensor_and_float32_inputs():
    x = leaf([0.3, -0.5], dtype=np.float32)
    assert gradcheck(ag.tanh, x)
    assert x.dtype == np.float32


def test_gradcheck_only_checks_inputs_requiring_grad_and_leaves_inputs_untouched():
    x = leaf([0.3, -0.5])
    c = ag.tensor(np.array([2.0, 3.0]))
    before = x.numpy().copy()
    assert gradcheck(lambda a, b: a * b, (x, c))
    np.testing.assert_array_equal(x.numpy(), before)
    assert x.grad is None


def test_gradcheck_without_inputs_requiring_grad_raises():
    with pytest.raises(ValueError):
        gradcheck(ag.tanh, (ag.tensor(np.array([1.0])),))


def _wrong_at(input_index, flat_index):
    """x * y whose backward is wrong for one element of one input."""

    class WrongMul(ag.Function):
        @staticmethod
        def forward(ctx, x, y):
            ctx.save_for_backward(x, y)
            return x.data * y.data

        @staticmethod
        def backward(ctx, g):
            x, y = ctx.saved_tensors
            grads = [g * y, g * x]
            target = (x, y)[input_index]
            bump = np.zeros(target.shape)
            bump.reshape(-1)[flat_index] = 1.0
            grads[input_index] = grads[input_index] + ag.tensor(bump)
            return tuple(grads)

    return WrongMul


@pytest.mark.parametrize("input_index,flat_index", [(0, 0), (0, 4), (1, 2), (1, 5)])
def test_gradcheck_names_input_and_flat_element(input_index, flat_index):
    x = leaf(np.linspace(-1.0, 1.0, 6).reshape(2, 3))
    y = leaf(np.linspace(0.5, 2.0, 6).reshape(2, 3))
    op = _wrong_at(input_index, flat_index)
    with pytest.raises(GradcheckError) as info:
        gradcheck(op.apply, (x, y))
    msg = str(info.value)
    assert f"input {input_index}" in msg
    assert f"flat element {flat_index}" in msg
    assert "np.int64" not in msg and "np.float64" not in msg  # readable numbers


def test_gradgradcheck_catches_a_once_differentiable_lie():
    class CubeDetached(ag.Function):
        """Right first derivative 3x^2, but written so its own derivative comes out as 3x."""

        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.data ** 3

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 3 * x.detach() * x * g

    x = leaf([0.4, -1.3])
    assert gradcheck(CubeDetached.apply, (x,))
    with pytest.raises(GradcheckError, match="input 0"):
        gradgradcheck(CubeDetached.apply, (x,))


def test_gradgradcheck_with_given_grad_outputs():
    x = leaf([0.4, -1.3])
    u = ag.tensor(np.array([1.5, -0.5]))
    assert gradgradcheck(ag.tanh, (x,), grad_outputs=(u,))


def test_gradcheck_multiple_outputs():
    x = leaf([0.4, -1.3, 2.0])
    assert gradcheck(lambda t: (ag.sin(t), t * t), (x,))


# -- strategies ------------------------------------------------------------------------------------------

_find = settings(max_examples=500, database=None, suppress_health_check=list(HealthCheck))


@given(tensors((2, 3)))
def test_tensors_fixed_shape(t):
    assert isinstance(t, ag.Tensor)
    assert t.shape == (2, 3) and t.dtype == np.float64 and t.requires_grad
    assert np.isfinite(t.numpy()).all() and (np.abs(t.numpy()) <= 10).all()
    assert t.device is ag.get_default_device()


@given(tensors(shapes(), dtype=np.float32))
def test_tensors_shape_strategy_and_dtype(t):
    assert t.dtype == np.float32 and 0 <= t.ndim <= 4 and all(1 <= n <= 4 for n in t.shape)


@given(tensors((3,), dtype=np.int64))
def test_int_tensors_do_not_require_grad(t):
    assert t.dtype == np.int64 and not t.requires_grad


@given(tensors((4,), elements=st.floats(0.5, 1.0)))
def test_tensors_custom_elements(t):
    v = t.numpy()
    assert ((v >= 0.5) & (v <= 1.0)).all()


def test_tensors_include_zero_dim_and_size_one():
    assert find(tensors(shapes()), lambda t: t.shape == (), settings=_find).shape == ()
    assert 1 in find(tensors(shapes(min_dims=1)), lambda t: 1 in t.shape, settings=_find).shape


@given(broadcastable_shapes())
def test_broadcastable_shapes_broadcast(shape_pair):
    assert isinstance(shape_pair, tuple) and len(shape_pair) == 2
    for s in shape_pair:
        assert isinstance(s, tuple) and len(s) <= 4
    np.broadcast_shapes(*shape_pair)


@given(broadcastable_shapes(num_shapes=3, min_dims=1, max_dims=2))
def test_broadcastable_shapes_options(shapes3):
    assert len(shapes3) == 3
    assert all(1 <= len(s) <= 2 for s in shapes3)
    np.broadcast_shapes(*shapes3)


def test_broadcastable_shapes_include_zero_dim_size_one_and_real_broadcasting():
    find(broadcastable_shapes(), lambda ss: any(s == () for s in ss), settings=_find)
    find(broadcastable_shapes(), lambda ss: any(1 in s for s in ss), settings=_find)
    find(broadcastable_shapes(), lambda ss: ss[0] != ss[1] and len(ss[0]) > 0 and len(ss[1]) > 0, settings=_find)


@given(st.integers(0, 4).flatmap(lambda nd: st.tuples(st.just(nd), valid_axes(nd))))
def test_valid_axes_are_valid_for_numpy(nd_axes):
    nd, axes = nd_axes
    a = np.ones((2,) * nd)
    a.sum(axis=axes)  # NumPy accepts it: in range, no repeats


@settings(max_examples=10)
@given(broadcastable_shapes().flatmap(lambda ss: st.tuples(*[tensors(s) for s in ss])))
def test_strategies_compose_into_a_gradcheck(pair):
    a, b = pair
    assert gradcheck(lambda x, y: x * y + x, (a, b))
