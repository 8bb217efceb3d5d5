"""Tensor basics: creation functions, dtype rules, attributes, requires_grad, conversions."""
import pickle
import weakref

import numpy as np
import pytest

from xpgrad import autograd as ag


@pytest.fixture
def default_dtype():
    """Restore the default dtype whatever the test does."""
    before = ag.get_default_dtype()
    yield
    ag.set_default_dtype(before)


# -- dtypes of gradients and promotion -----------------------------------------------------------


def test_float32_inputs_get_float32_grads():
    x = ag.tensor([1.0, 2.0], requires_grad=True)
    w = ag.tensor([[0.5], [1.5]], requires_grad=True)
    assert x.dtype == np.float32
    y = (ag.tanh(x * w) @ x + ag.exp(x).sum()).sum()
    assert y.dtype == np.float32
    y.backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32


def test_grads_are_cast_back_to_each_inputs_dtype():
    x = ag.tensor([1.0, 2.0], requires_grad=True)  # float32
    w = ag.tensor(np.array([3.0, 4.0]), requires_grad=True)  # float64
    y = (x * w).sum()
    assert y.dtype == np.float64
    y.backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 4.0])


def test_python_scalars_are_weak():
    f32 = ag.tensor([1.0, 2.0])
    assert (f32 * 2.0).dtype == np.float32
    assert (2.0 * f32).dtype == np.float32
    assert (f32 + 1).dtype == np.float32
    assert (f32 / 3).dtype == np.float32
    assert (f32 ** 2).dtype == np.float32
    assert (f32 - 1e10).dtype == np.float32
    i64 = ag.tensor([1, 2])
    assert (i64 * 2).dtype == np.int64
    assert (i64 * 2.5).dtype == np.float64  # as NumPy 2: int array with a float scalar


def test_numpy_scalars_promote_as_numpy_2():
    f32 = ag.tensor([1.0, 2.0])
    assert (f32 * np.float64(2)).dtype == np.result_type(np.float32, np.float64(2)) == np.float64
    assert (f32 * np.float32(2)).dtype == np.float32
    assert (f32 * ag.tensor(np.array(2.0))).dtype == np.float64  # 0-d float64 tensor is not weak


def test_float16_stays_float16():
    h = ag.tensor(np.array([1.0, 2.0], dtype=np.float16), requires_grad=True)
    y = (h * 2.0).sum()
    assert y.dtype == np.float16
    y.backward()
    assert h.grad.dtype == np.float16


def test_default_dtype_is_float32():
    assert ag.get_default_dtype() == np.float32
    assert ag.tensor(1.0).dtype == np.float32
    assert ag.tensor([1.0, 2]).dtype == np.float32


def test_set_default_dtype(default_dtype):
    ag.set_default_dtype(ag.float64)
    assert ag.get_default_dtype() == np.float64
    for t in (ag.tensor(1.5), ag.zeros(2), ag.ones(2), ag.full((2,), 1.5), ag.arange(0.0, 1.0, 0.5), ag.eye(2),
              ag.rand(2), ag.randn(2), ag.empty(2)):
        assert t.dtype == np.float64, t
    ag.set_default_dtype(np.float16)
    assert ag.tensor([1.0]).dtype == np.float16
    with pytest.raises(TypeError):
        ag.set_default_dtype(np.int32)
    assert ag.get_default_dtype() == np.float16  # the bad call changed nothing


def test_ints_become_int64_and_bools_bool():
    assert ag.tensor(3).dtype == np.int64
    assert ag.tensor([1, 2, 3]).dtype == np.int64
    assert ag.tensor(True).dtype == np.bool_
    assert ag.tensor([True, False]).dtype == np.bool_


def test_arrays_keep_their_dtype():
    for dt in (np.float64, np.float32, np.float16, np.int32, np.int64, np.uint8, np.bool_):
        assert ag.tensor(np.zeros(2, dtype=dt)).dtype == dt
    assert ag.tensor(np.float64(1.0)).dtype == np.float64
    assert ag.tensor(np.int32(1)).dtype == np.int32


def test_explicit_dtype_wins():
    assert ag.tensor([1, 2], dtype=ag.float64).dtype == np.float64
    assert ag.tensor([1.5], dtype=np.float16).dtype == np.float16
    assert ag.tensor(np.zeros(2), dtype=ag.float32).dtype == np.float32


def test_dtype_aliases_are_numpy_dtypes():
    assert ag.float16 == np.float16 and ag.float32 == np.float32 and ag.float64 == np.float64
    assert ag.int32 == np.int32 and ag.int64 == np.int64 and ag.bool_ == np.bool_


@pytest.mark.parametrize("make", [
    lambda: ag.tensor([1, 2], requires_grad=True),
    lambda: ag.tensor([True], requires_grad=True),
    lambda: ag.zeros(2, dtype=ag.int64, requires_grad=True),
    lambda: ag.tensor([1, 2]).requires_grad_(),
    lambda: ag.arange(3, requires_grad=True),
])
def test_requires_grad_on_non_float_raises_type_error(make):
    with pytest.raises(TypeError, match="float"):
        make()


def test_requires_grad_setter_on_int_raises():
    t = ag.tensor([1, 2])
    with pytest.raises(TypeError):
        t.requires_grad = True


# -- creation functions ------------------------------------------------------------------------------


def test_tensor_from_list_scalar_array_and_tensor():
    a = ag.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert a.shape == (2, 2) and a.ndim == 2 and a.size == 4 and len(a) == 2
    np.testing.assert_array_equal(a.numpy(), [[1.0, 2.0], [3.0, 4.0]])
    s = ag.tensor(2.5)
    assert s.shape == () and s.item() == 2.5
    b = ag.tensor(a)
    np.testing.assert_array_equal(b.numpy(), a.numpy())
    assert b.device is a.device


def test_tensor_always_copies():
    arr = np.array([1.0, 2.0])
    t = ag.tensor(arr)
    arr[0] = 100.0
    assert t.numpy()[0] == 1.0
    u = ag.tensor(t)
    with ag.no_grad():
        t.fill_(7.0)
    assert u.numpy()[0] == 1.0


def test_tensor_of_a_tensor_requiring_grad_is_a_new_leaf():
    x = ag.tensor([1.0], requires_grad=True)
    y = ag.tensor(x * 2.0)
    assert y.is_leaf and not y.requires_grad and y.grad_fn is None


def test_tensor_of_ragged_list_raises():
    with pytest.raises((TypeError, ValueError)):
        ag.tensor([[1.0, 2.0], [3.0]])


@pytest.mark.parametrize("fn,value", [(ag.zeros, 0.0), (ag.ones, 1.0)])
def test_zeros_ones_shape_forms(fn, value):
    for args in ((2, 3), ((2, 3),), ([2, 3],)):
        t = fn(*args)
        assert t.shape == (2, 3) and t.dtype == np.float32
        assert (t.numpy() == value).all()
    assert fn(()).shape == ()
    assert fn(0).shape == (0,)
    assert fn(2, dtype=ag.int64).dtype == np.int64
    t = fn(2, requires_grad=True)
    assert t.requires_grad and t.is_leaf


def test_full_and_empty():
    t = ag.full((2, 2), 1.5)
    assert t.dtype == np.float32 and (t.numpy() == 1.5).all()
    assert ag.full((2,), 3).dtype == np.int64
    assert ag.full((2,), True).dtype == np.bool_
    assert ag.full(3, 2.0).shape == (3,)
    assert ag.full((2,), 1, dtype=ag.float64).dtype == np.float64
    assert ag.full((2,), np.float64(1.5)).dtype == np.float64  # NumPy scalars keep their dtype
    assert ag.full((2,), np.float16(1.5)).dtype == np.float16
    assert ag.full((2,), np.int32(1)).dtype == np.int32
    e = ag.empty(2, 3)
    assert e.shape == (2, 3) and e.dtype == np.float32


def test_arange():
    t = ag.arange(5)
    assert t.dtype == np.int64 and t.tolist() == [0, 1, 2, 3, 4]
    assert ag.arange(2, 5).tolist() == [2, 3, 4]
    assert ag.arange(0, 10, 3).tolist() == [0, 3, 6, 9]
    f = ag.arange(0.0, 1.0, 0.25)
    assert f.dtype == np.float32
    np.testing.assert_allclose(f.numpy(), [0.0, 0.25, 0.5, 0.75])
    assert ag.arange(3.0).dtype == np.float32
    assert ag.arange(0, 1, 0.5).dtype == np.float32
    assert ag.arange(3, dtype=ag.float64).dtype == np.float64


def test_eye():
    t = ag.eye(3)
    assert t.dtype == np.float32
    np.testing.assert_array_equal(t.numpy(), np.eye(3))
    np.testing.assert_array_equal(ag.eye(2, 3).numpy(), np.eye(2, 3))


def test_like_functions_follow_the_model_tensor():
    i = ag.tensor([[1, 2], [3, 4]])
    z = ag.zeros_like(i)
    assert z.shape == (2, 2) and z.dtype == np.int64 and (z.numpy() == 0).all()
    o = ag.ones_like(ag.tensor(np.zeros(3)))
    assert o.dtype == np.float64 and (o.numpy() == 1).all()
    assert ag.zeros_like(i, dtype=ag.float32).dtype == np.float32
    assert ag.ones_like(i, dtype=np.float64).dtype == np.float64
    x = ag.tensor([1.0], requires_grad=True)
    assert not ag.zeros_like(x).requires_grad
    assert ag.ones_like(x, requires_grad=True).requires_grad
    assert ag.zeros_like(x).device is x.device


def test_rand_randn_shapes_ranges_and_seed_reproducibility():
    ag.manual_seed(123)
    a = ag.rand(1000)
    b = ag.randn(2, 3)
    ag.manual_seed(123)
    a2 = ag.rand(1000)
    b2 = ag.randn((2, 3))
    np.testing.assert_array_equal(a.numpy(), a2.numpy())
    np.testing.assert_array_equal(b.numpy(), b2.numpy())
    assert a.dtype == np.float32 and b.shape == (2, 3)
    av = a.numpy()
    assert av.min() >= 0.0 and av.max() < 1.0 and 0.4 < av.mean() < 0.6
    ag.manual_seed(124)
    assert not np.array_equal(ag.rand(1000).numpy(), av)
    n = ag.randn(20000, dtype=ag.float64).numpy()
    assert n.dtype == np.float64 and abs(n.mean()) < 0.05 and abs(n.std() - 1) < 0.05


def test_from_numpy_shares_memory():
    if ag.get_default_device().type != "cpu":
        pytest.skip("from_numpy makes a cpu tensor; this run's default device is not cpu")
    a = np.arange(3.0)
    t = ag.from_numpy(a)
    assert t.dtype == np.float64 and t.device.type == "cpu"
    a[0] = 42.0
    assert t.numpy()[0] == 42.0
    with ag.no_grad():
        t.mul_(2.0)
    assert a[1] == 2.0
    with pytest.raises(TypeError):
        ag.from_numpy([1.0, 2.0])


# -- attributes and conversions ------------------------------------------------------------------------


def test_numpy_item_tolist_float_int():
    t = ag.tensor([[1.5, 2.5]])
    assert isinstance(t.numpy(), np.ndarray)
    assert t.tolist() == [[1.5, 2.5]]
    assert ag.tensor([[3.0]]).item() == 3.0
    assert float(ag.tensor(2.5)) == 2.5 and int(ag.tensor(7)) == 7
    with pytest.raises(ValueError):
        t.item()
    assert isinstance(t.data, t.device.backend.array_type)


def test_len_and_iteration():
    t = ag.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    assert len(t) == 3
    rows = list(t)
    assert len(rows) == 3 and rows[2].tolist() == [5.0, 6.0]
    with pytest.raises(TypeError):
        len(ag.tensor(1.0))


def test_bool_of_tensor():
    assert bool(ag.tensor([1.0]))
    assert not bool(ag.tensor(0.0))
    with pytest.raises(ValueError):
        bool(ag.tensor([1.0, 2.0]))


def test_leaf_and_requires_grad_flags():
    x = ag.tensor([1.0, 2.0])
    assert x.is_leaf and not x.requires_grad and x.grad is None and x.grad_fn is None
    assert x.requires_grad_() is x
    assert x.requires_grad
    x.requires_grad_(False)
    assert not x.requires_grad
    y = ag.tensor([1.0], requires_grad=True) * 2.0
    assert not y.is_leaf and y.requires_grad and y.grad_fn is not None
    with pytest.raises(RuntimeError):
        y.requires_grad_(False)


def test_ops_on_non_requiring_inputs_record_nothing():
    y = ag.tensor([1.0, 2.0]) * 3.0
    assert y.grad_fn is None and not y.requires_grad and y.is_leaf


def test_grad_setter_checks_type_shape():
    x = ag.tensor([1.0, 2.0], requires_grad=True)
    x.grad = ag.tensor([0.5, 0.5])
    assert x.grad.tolist() == [0.5, 0.5]
    with pytest.raises(ValueError):
        x.grad = ag.tensor([1.0])
    with pytest.raises(TypeError):
        x.grad = np.zeros(2)
    x.grad = None
    assert x.grad is None


def test_grad_of_leaf_is_a_tensor_outside_the_graph():
    x = ag.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    assert isinstance(x.grad, ag.Tensor)
    assert x.grad.grad_fn is None and not x.grad.requires_grad


def test_tensor_is_weak_referenceable_and_hashable_by_identity():
    t = ag.tensor([1.0])
    r = weakref.ref(t)
    assert r() is t
    u = ag.tensor([1.0])
    assert len({t, u}) == 2
    d = {t: 1}
    assert d[t] == 1
    del t, d
    assert r() is None


def test_to_dtype_and_astype():
    x = ag.tensor([1.5, 2.5], requires_grad=True)
    y = x.to(ag.float64)
    assert y.dtype == np.float64 and y.grad_fn is not None
    z = x.astype(np.float16)
    assert z.dtype == np.float16
    assert x.to(ag.float32) is x
    assert x.to(x.device) is x
    (y * y).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 5.0])


def test_cpu_and_numpy_round_trip():
    x = ag.tensor([1.0, 2.0])
    c = x.cpu()
    assert c.device.type == "cpu"
    np.testing.assert_array_equal(c.numpy(), x.numpy())


def test_repr_mentions_grad_fn_and_requires_grad():
    x = ag.tensor([1.0, 2.0], requires_grad=True)
    assert "requires_grad=True" in repr(x)
    assert "grad_fn" in repr(x * 2.0)
    assert "dtype=float64" in repr(ag.tensor(np.zeros(1)))


def test_device_pickles_to_the_interned_device():
    d = ag.tensor([1.0]).device
    assert pickle.loads(pickle.dumps(d)) is d
