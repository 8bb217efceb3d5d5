"""PyTorch habits on Tensors: augmented operators in place, ``.data`` assignment, and the
PyTorch spellings beside NumPy's (``dim=``, ``view``, ``permute``, ``transpose(d0, d1)``,
``numel``, ``dim()``, cast methods, ``cat``, the ``split`` method). Checked against torch."""
import numpy as np
import pytest

from xpgrad import autograd as ag
from xpgrad.nn import functional as F

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)


def _pair(*shape):
    """The same float64 values as an xpgrad leaf and a torch leaf, both requiring grad."""
    a = RNG.standard_normal(shape)
    return ag.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


def _close(x, t, **kw):
    np.testing.assert_allclose(x.numpy() if isinstance(x, ag.Tensor) else x, t.detach().numpy(), rtol=1e-10, atol=1e-12, **kw)


def _same_grads(make_x, make_t, *shape):
    """Value and gradient of ``sum(f(x) * w)`` agree with torch."""
    x, xt = _pair(*shape)
    y, yt = make_x(x), make_t(xt)
    _close(y, yt)
    w = RNG.standard_normal(yt.shape)
    (y * ag.tensor(w)).sum().backward()
    (yt * torch.tensor(w)).sum().backward()
    _close(x.grad, xt.grad)


# -- augmented operators are in place -------------------------------------------------------------------

OPS = [("+", "__iadd__"), ("-", "__isub__"), ("*", "__imul__"), ("/", "__itruediv__"), ("**", "__ipow__")]


@pytest.mark.parametrize("sym,name", OPS)
def test_augmented_operators_change_the_tensor_in_place(sym, name):
    a = np.abs(RNG.standard_normal((2, 3))) + 0.5
    b = np.abs(RNG.standard_normal((3,))) + 0.5
    x, xt = ag.tensor(a), torch.tensor(a)
    alias, view = x, x.reshape(6)
    y, yt = getattr(x, name)(ag.tensor(b)), getattr(xt, name)(torch.tensor(b))
    assert y is x and alias is x
    _close(x, yt)
    _close(view.reshape(2, 3), yt)  # views see the change: the memory was written
    x2 = ag.tensor(a)
    before = x2
    exec(f"x2 {sym}= 2.0", {}, ns := {"x2": x2})
    assert ns["x2"] is before
    np.testing.assert_allclose(before.numpy(), eval(f"a {sym} 2.0"))


def test_imatmul_in_place_only_when_the_shape_is_kept():
    a, b = RNG.standard_normal((3, 3)), RNG.standard_normal((3, 3))
    x, xt = ag.tensor(a), torch.tensor(a)
    keep = x
    x @= ag.tensor(b)
    xt = xt @ torch.tensor(b)
    assert x is keep
    _close(x, xt)
    y = ag.tensor(RNG.standard_normal((2, 3)))
    with pytest.raises(ValueError, match=r"x @= y is in place.*x = x @ y"):
        y @= ag.tensor(RNG.standard_normal((3, 4)))


def test_sgd_step_by_hand_moves_the_parameter():
    p = ag.tensor([1.0, -2.0, 3.0], requires_grad=True)
    pt = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    (p * p).sum().backward()
    (pt * pt).sum().backward()
    keep = p
    with ag.no_grad():
        p -= 0.1 * p.grad
    with torch.no_grad():
        pt -= 0.1 * pt.grad
    assert p is keep and p.is_leaf and p.requires_grad
    np.testing.assert_allclose(p.numpy(), pt.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(keep.numpy(), [0.8, -1.6, 2.4], rtol=1e-6)


def test_augmented_on_a_leaf_that_requires_grad_raises_in_grad_mode():
    p = ag.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"leaf tensor that requires grad.*no_grad"):
        p += 1.0
    pt = torch.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError):  # torch refuses the same
        pt += 1.0
    np.testing.assert_array_equal(p.numpy(), [1.0, 2.0])  # unchanged


def test_augmented_on_a_non_leaf_in_the_graph_names_the_out_of_place_form():
    x = ag.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"part of the graph.*`x = x \* y`"):
        y *= 3.0


def test_augmented_with_an_operand_that_requires_grad_raises_instead_of_dropping_its_gradient():
    acc = ag.zeros(2)
    w = ag.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"drop y's gradient.*`x = x \+ y`"):
        acc += w
    with ag.no_grad():
        acc += w  # outside grad mode nothing is recorded anyway
    np.testing.assert_array_equal(acc.numpy(), [1.0, 2.0])


def test_augmented_on_a_tensor_saved_for_backward_makes_backward_raise():
    w = ag.tensor([1.0, 2.0], requires_grad=True)
    x = ag.tensor([3.0, 4.0])
    loss = (w * x).sum()  # Mul saves x
    x += 1.0
    with pytest.raises(RuntimeError, match=r"modified by an in-place operation \(x \+= y\)"):
        loss.backward()


def test_augmented_keeps_the_dtype_same_kind_casting():
    i = ag.tensor([1, 2, 3])
    i += 2
    i *= ag.tensor([2, 2, 2], dtype=ag.int32)
    assert i.dtype == np.int64
    np.testing.assert_array_equal(i.numpy(), [6, 8, 10])
    with pytest.raises(TypeError, match=r"castable to the tensor's dtype int64.*x = x / y"):
        i /= 2
    it = torch.tensor([1, 2, 3])
    with pytest.raises(RuntimeError):  # torch refuses the same
        it /= 2
    f = ag.tensor([1.0, 2.0], dtype=ag.float32)
    f += ag.tensor([0.5, 0.5], dtype=ag.float64)  # same kind: float64 -> float32 is allowed
    assert f.dtype == np.float32
    with pytest.raises(ValueError, match=r"broadcast to x's shape"):
        f += ag.ones((3, 2))


# -- .data ---------------------------------------------------------------------------------------------------

def test_data_stays_the_backend_array():
    p = ag.tensor([1.0, 2.0])
    assert isinstance(p.data, p.device.backend.array_type)


# -- dim= beside axis= ---------------------------------------------------------------------------------------

def test_softmax_dim():
    _same_grads(lambda x: F.softmax(x, dim=-1), lambda t: torch.softmax(t, dim=-1), 3, 4)
    _same_grads(lambda x: F.softmax(x, dim=0), lambda t: torch.softmax(t, dim=0), 3, 4)
    _same_grads(lambda x: F.log_softmax(x, dim=1), lambda t: torch.log_softmax(t, dim=1), 3, 4)


def test_sum_dim():
    _same_grads(lambda x: x.sum(dim=1), lambda t: t.sum(dim=1), 2, 3, 4)
    _same_grads(lambda x: ag.sum(x, dim=(0, 2), keepdim=True), lambda t: torch.sum(t, dim=(0, 2), keepdim=True), 2, 3, 4)


@pytest.mark.parametrize("name", ["mean", "prod", "logsumexp"])
def test_reductions_take_dim(name):
    _same_grads(lambda x: getattr(x, name)(dim=1), lambda t: getattr(t, name)(dim=1), 2, 3, 4)
    _same_grads(lambda x: getattr(ag, name)(x, dim=-1, keepdim=True),
                lambda t: getattr(torch, name)(t, dim=-1, keepdim=True), 2, 3, 4)


@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min_with_dim_give_values_and_indices_like_torch(name):
    x, xt = _pair(3, 5)
    got, want = getattr(x, name)(dim=1), getattr(xt, name)(dim=1)
    _close(got.values, want.values)
    np.testing.assert_array_equal(got.indices.numpy(), want.indices.numpy())
    values, indices = getattr(ag, name)(x, dim=0, keepdim=True)
    assert values.shape == (1, 5) and indices.shape == (1, 5)
    got.values.sum().backward()
    want.values.sum().backward()
    _close(x.grad, xt.grad)
    assert getattr(x, name)(axis=1).shape == (3,)  # NumPy's spelling: values only, as before


def test_var_with_dim_needs_an_explicit_ddof():
    x, xt = _pair(3, 4)
    with pytest.raises(TypeError, match=r"ddof= explicitly.*unbiased"):
        x.var(dim=1)
    _same_grads(lambda x: x.var(dim=1, ddof=1), lambda t: t.var(dim=1), 3, 4)
    _same_grads(lambda x: x.var(dim=0, ddof=0, keepdim=True), lambda t: t.var(dim=0, unbiased=False, keepdim=True), 3, 4)


def test_argmax_argmin_dim():
    x, xt = _pair(4, 6)
    np.testing.assert_array_equal(x.argmax(dim=1).numpy(), xt.argmax(dim=1).numpy())
    np.testing.assert_array_equal(ag.argmin(x, dim=0, keepdim=True).numpy(), torch.argmin(xt, dim=0, keepdim=True).numpy())


def test_shape_functions_take_dim():
    _same_grads(lambda x: ag.concatenate([x, 2 * x], dim=1), lambda t: torch.cat([t, 2 * t], dim=1), 2, 3)
    _same_grads(lambda x: ag.stack([x, 2 * x], dim=2), lambda t: torch.stack([t, 2 * t], dim=2), 2, 3)
    _same_grads(lambda x: ag.expand_dims(x, dim=1), lambda t: t.unsqueeze(dim=1), 2, 3)
    _same_grads(lambda x: ag.squeeze(x, dim=1), lambda t: t.squeeze(dim=1), 2, 1, 3)
    _same_grads(lambda x: ag.flatten(x, start_dim=1), lambda t: torch.flatten(t, start_dim=1), 2, 3, 4)
    _same_grads(lambda x: F.flatten(x, start_dim=0, end_dim=1), lambda t: torch.flatten(t, 0, 1), 2, 3, 4)
    _same_grads(lambda x: ag.split(x, 2, dim=1)[1], lambda t: torch.chunk(t, 2, dim=1)[1], 3, 4)
    idx = np.array([[0, 2], [1, 1], [3, 0]])
    _same_grads(lambda x: ag.take_along_axis(x, idx, dim=1),
                lambda t: torch.take_along_dim(t, torch.tensor(idx), dim=1), 3, 4)


@pytest.mark.parametrize("call", [
    lambda x: x.sum(axis=1, dim=1),
    lambda x: ag.mean(x, 0, dim=0),
    lambda x: x.max(axis=0, dim=0),
    lambda x: x.argmax(axis=0, dim=0),
    lambda x: F.softmax(x, axis=0, dim=-1),
    lambda x: F.log_softmax(x, 1, dim=1),
    lambda x: ag.concatenate([x, x], axis=0, dim=0),
    lambda x: ag.stack([x, x], 1, dim=1),
    lambda x: ag.split(x, 2, axis=1, dim=1),
    lambda x: ag.expand_dims(x, 0, dim=0),
    lambda x: ag.squeeze(x, axis=0, dim=0),
    lambda x: ag.flatten(x, 0, start_dim=0),
    lambda x: ag.take_along_axis(x, np.zeros((2, 1), dtype=np.int64), 1, dim=1),
    lambda x: ag.cat([x, x], 0, axis=0),
    lambda x: x.sum(keepdims=True, keepdim=True),
])
def test_axis_and_dim_together_raise(call):
    x = ag.tensor(RNG.standard_normal((2, 4)))
    with pytest.raises(TypeError, match="PyTorch's name"):
        call(x)


# -- methods and names ------------------------------------------------------------------------------------

def test_view_is_reshape_sharing_memory():
    _same_grads(lambda x: x.view(4, 3), lambda t: t.view(4, 3), 2, 6)
    _same_grads(lambda x: x.view((3, -1)), lambda t: t.view((3, -1)), 2, 6)
    x = ag.tensor(np.arange(6.0))
    v = x.view(2, 3)
    with ag.no_grad():
        v += 1.0
    np.testing.assert_array_equal(x.numpy(), np.arange(6.0) + 1)


def test_permute():
    _same_grads(lambda x: x.permute(2, 0, 1), lambda t: t.permute(2, 0, 1), 2, 3, 4)
    _same_grads(lambda x: x.permute((1, 0, 2)), lambda t: t.permute((1, 0, 2)), 2, 3, 4)
    with pytest.raises(ValueError, match="permute"):
        ag.zeros((2, 3, 4)).permute(1, 0)


def test_transpose_two_dims_swaps_them_as_torch():
    _same_grads(lambda x: x.transpose(0, 2), lambda t: t.transpose(0, 2), 2, 3, 4)
    _same_grads(lambda x: x.transpose(-1, 1), lambda t: t.transpose(-1, 1), 2, 3, 4, 5)
    _same_grads(lambda x: x.transpose(1, 0), lambda t: t.transpose(1, 0), 3, 4)  # 2-D: both meanings agree
    x = ag.zeros((2, 3, 4))
    assert x.transpose(2, 0, 1).shape == (4, 2, 3)  # NumPy's full permutation is kept
    assert x.transpose((1, 2, 0)).shape == (3, 4, 2)
    assert x.transpose().shape == (4, 3, 2)
    assert x.T.shape == (4, 3, 2)


def test_numel_dim_and_size():
    x = ag.zeros((2, 3, 4))
    xt = torch.zeros((2, 3, 4))
    assert x.numel() == xt.numel() == 24
    assert x.dim() == xt.dim() == 3
    assert x.size == 24  # NumPy's meaning is kept: the element count


@pytest.mark.parametrize("name,dtype", [("double", np.float64), ("float", np.float32), ("half", np.float16),
                                        ("long", np.int64), ("int", np.int32), ("bool", np.bool_)])
def test_cast_methods(name, dtype):
    a = np.array([[0.0, 1.5], [-2.5, 3.0]])
    x, xt = ag.tensor(a), torch.tensor(a)
    y, yt = getattr(x, name)(), getattr(xt, name)()
    assert y.dtype == dtype
    np.testing.assert_array_equal(y.numpy(), yt.numpy())


def test_float_method_is_differentiable_and_builtin_float_still_gives_a_python_float():
    x, xt = _pair(3)
    x.float().double().sum().backward()
    xt.float().double().sum().backward()
    _close(x.grad, xt.grad)
    assert ag.tensor(np.float32(1.0)).float() is not None
    v = float(ag.tensor(2.5))
    assert type(v) is float and v == 2.5
    f = ag.tensor([1.0], dtype=ag.float32)
    assert f.float() is f  # already float32: the tensor itself, as torch


def test_cat_is_concatenate_with_dim():
    _same_grads(lambda x: ag.cat([x, x * 3], dim=0), lambda t: torch.cat([t, t * 3], dim=0), 2, 3)
    _same_grads(lambda x: ag.cat([x, x], 1), lambda t: torch.cat([t, t], 1), 2, 3)


def test_split_method_has_torch_semantics():
    x, xt = _pair(7, 3)
    parts, want = x.split(3), xt.split(3)
    assert isinstance(parts, tuple)
    assert [p.shape for p in parts] == [tuple(w.shape) for w in want] == [(3, 3), (3, 3), (1, 3)]
    for p, w in zip(parts, want):
        _close(p, w)
    parts, want = x.split([2, 5], dim=0), xt.split([2, 5], dim=0)
    assert [p.shape for p in parts] == [tuple(w.shape) for w in want]
    (parts[1] * 2).sum().backward()
    (want[1] * 2).sum().backward()
    _close(x.grad, xt.grad)
    assert [p.shape for p in x.split(2, dim=1)] == [tuple(w.shape) for w in xt.split(2, dim=1)]
    with pytest.raises(ValueError, match="do not add up"):
        x.split([2, 2])
    # the function keeps NumPy's indices_or_sections: 7 rows into sections at rows 3
    assert [p.shape for p in ag.split(x, [3])] == [(3, 3), (4, 3)]


def test_layers_take_dim():
    from xpgrad import nn

    x, xt = _pair(2, 3, 4)
    _close(nn.Softmax(dim=1)(x), torch.nn.Softmax(dim=1)(xt))
    _close(nn.LogSoftmax(dim=0)(x), torch.nn.LogSoftmax(dim=0)(xt))
    _close(nn.Flatten(start_dim=0, end_dim=1)(x), torch.nn.Flatten(start_dim=0, end_dim=1)(xt))
    with pytest.raises(TypeError, match="PyTorch's name"):
        nn.Softmax(0, dim=1)
