"""The reverse-mode engine: graph traversal, accumulation, freeing, version counters, ag.grad,
higher orders, anomaly detection and the shape errors of the contract."""
import gc
import inspect
import os
import time
import warnings
import weakref

import numpy as np
import pytest

from xpgrad import autograd as ag
from xpgrad.autograd.function import Context


def leaf(values, dtype=None):
    return ag.tensor(np.asarray(values, dtype=dtype or np.float64), requires_grad=True)


def close(t, expected, **kw):
    np.testing.assert_allclose(t.numpy(), np.asarray(expected, dtype=np.float64), **kw)


# -- graph shapes ------------------------------------------------------------------------------------


def test_shared_subexpression_same_tensor_twice():
    x = leaf([1.0, -2.0, 3.0])
    a = x
    b = a + a
    c = b * b  # 4 x^2 -> 8 x
    c.sum().backward()
    close(x.grad, [8.0, -16.0, 24.0])


def test_function_called_twice_on_same_input():
    x = leaf([0.5, 2.0])

    def f(t):
        return (t * t * t).sum()

    (f(x) + f(x)).backward()  # 2 * 3x^2
    close(x.grad, 6 * np.array([0.5, 2.0]) ** 2)


def test_diamond_graph():
    x = leaf([0.3, -0.7])
    top = x * 2.0
    left = ag.exp(top)
    right = ag.sin(top)
    (left * right).sum().backward()
    xv = np.array([0.3, -0.7])
    expected = 2 * np.exp(2 * xv) * (np.sin(2 * xv) + np.cos(2 * xv))
    close(x.grad, expected, rtol=1e-12)


def test_deep_diamond_fan_in_and_fan_out():
    # y <- y + y ten times: 1024 paths from y to x, each must deliver its gradient once.
    x = leaf(1.5)
    y = x
    for _ in range(10):
        y = y + y  # 2^10 x
    y.backward()
    close(x.grad, 1024.0)


def test_equal_valued_distinct_leaves_get_their_own_gradients():
    p = leaf(3.0)
    q = leaf(3.0)
    (p * 2.0 + q * 5.0 + p * q).backward()
    close(p.grad, 2.0 + 3.0)
    close(q.grad, 5.0 + 3.0)


def test_one_leaf_used_by_several_ops_and_as_both_operands():
    x = leaf([2.0, 3.0])
    y = (x * x + x / x + x - x * 3.0).sum()
    y.backward()
    close(x.grad, 2 * np.array([2.0, 3.0]) + 0.0 + 1.0 - 3.0)


def test_leaves_accumulate_across_backward_calls_until_zeroed():
    x = leaf([1.0, 2.0])
    for k in range(1, 4):
        (x * x).sum().backward()
        close(x.grad, k * 2 * np.array([1.0, 2.0]))
    x.grad = None
    (x * 3.0).sum().backward()
    close(x.grad, [3.0, 3.0])


def test_accumulation_keeps_the_grad_tensor_object_and_dtype():
    x = ag.tensor([1.0, 2.0], requires_grad=True)  # default float32
    (x * 2.0).sum().backward()
    g = x.grad
    (x * 2.0).sum().backward()
    assert x.grad.dtype == np.float32
    close(x.grad, [4.0, 4.0])
    close(g, [4.0, 4.0])  # accumulated in place, as PyTorch


def test_leaf_grad_does_not_alias_the_upstream_gradient():
    # Add passes the same gradient to both inputs: each leaf must get its own buffer.
    a = leaf([1.0, 2.0])
    b = leaf([3.0, 4.0])
    (a + b).sum().backward()
    assert not np.shares_memory(a.grad.numpy(), b.grad.numpy())
    (a * 1.0).sum().backward()
    close(a.grad, [2.0, 2.0])
    close(b.grad, [1.0, 1.0])


def test_gradient_shared_by_a_leaf_and_a_pending_node_is_not_corrupted():
    # Add hands one (accumulated) gradient array to x and to h's node; x must not adopt it as
    # its .grad, or the later in-place accumulation from w changes what h's node still needs.
    x = leaf([1.0, 2.0])
    h = x * 3.0
    w = x * 5.0
    z = x + h
    (z + z + w).sum().backward()
    close(x.grad, [2 * (1 + 3) + 5] * 2)


def test_custom_op_returning_one_array_for_two_inputs():
    class Both(ag.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a.data + b.data

        @staticmethod
        def backward(ctx, g):
            t = g * 2.0
            return t, t

    a = leaf([1.0, 2.0])
    b = a * 1.0
    m = a * 7.0  # runs after Both in backward and accumulates into a.grad
    y = (Both.apply(a, b) + m).sum()
    y.backward()
    close(a.grad, [2.0 + 2.0 + 7.0] * 2)


def test_leaf_grad_does_not_alias_a_user_supplied_gradient():
    x = leaf([1.0, 2.0])
    g = ag.tensor(np.array([1.0, 1.0]))
    (x + 0.0).backward(g)
    (x + 0.0).backward(g)
    close(g, [1.0, 1.0])
    close(x.grad, [2.0, 2.0])


def test_zero_dim_gradients_stay_arrays():
    # NumPy turns 0-d arithmetic into scalars; .grad and ag.grad must still hold backend arrays.
    x = leaf(2.0)
    (x * x + x * x).backward()
    assert isinstance(x.grad.data, x.device.backend.array_type)
    close(x.grad, 8.0)
    (g,) = ag.grad(x * x + x * x, x)
    assert isinstance(g.data, x.device.backend.array_type)
    close(g, 8.0)
    h = x * 3.0
    h.retain_grad()
    (h * h + h * h).backward()
    assert isinstance(h.grad.data, x.device.backend.array_type)
    close(h.grad, 24.0)


# -- .grad of intermediates, retain_grad ----------------------------------------------------------------


def test_intermediates_do_not_keep_grad_and_reading_it_warns():
    x = leaf([1.0, 2.0])
    h = x * 2.0
    (h * h).sum().backward()
    with pytest.warns(UserWarning, match="retain_grad"):
        assert h.grad is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert x.grad is not None  # a leaf: no warning


def test_retain_grad_fills_intermediate_grad():
    x = leaf([1.0, 2.0])
    h = x * 2.0
    h.retain_grad()
    y = (h * h).sum()
    y.retain_grad()
    y.backward()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        close(h.grad, 2 * 2.0 * np.array([1.0, 2.0]))
        close(y.grad, 1.0)
    close(x.grad, 8.0 * np.array([1.0, 2.0]))


def test_retain_grad_accumulates_over_retained_backward():
    x = leaf([1.0, 2.0])
    h = x * 2.0
    h.retain_grad()
    y = (h * h).sum()
    y.backward(retain_graph=True)
    y.backward()
    close(h.grad, 2 * 4.0 * np.array([1.0, 2.0]))
    close(x.grad, 2 * 8.0 * np.array([1.0, 2.0]))


def test_retain_grad_on_leaf_is_a_no_op():
    x = leaf([1.0])
    x.retain_grad()
    (x * 3.0).sum().backward()
    close(x.grad, [3.0])


# -- retain_graph --------------------------------------------------------------------------------------


def test_second_backward_without_retain_graph_raises():
    x = leaf([1.0, 2.0])
    y = (ag.exp(x) * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=r"retain_graph=True"):
        y.backward()


def test_second_backward_through_node_without_saved_tensors_raises():
    x = leaf([1.0, 2.0])
    y = (x + x).sum()  # Add/Sum save nothing, but the graph was still consumed
    y.backward()
    with pytest.raises(RuntimeError, match=r"retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = leaf([1.0, 2.0])
    y = (ag.exp(x) * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    xv = np.array([1.0, 2.0])
    close(x.grad, 2 * (np.exp(xv) * xv + np.exp(xv)))


def test_backward_through_part_of_freed_graph_raises():
    x = leaf([1.0, 2.0])
    h = ag.tanh(x)
    h.sum().backward()
    y = (h * 2.0).sum()  # new node on top of the freed tanh
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


# -- backward() argument checks -----------------------------------------------------------------------


def test_backward_on_non_scalar_without_grad_raises():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"(?i)gradient"):
        (x * 2.0).backward()


@pytest.mark.parametrize("shape", [(), (1,), (1, 1), (1, 1, 1)])
def test_one_element_tensor_of_any_shape_is_a_scalar(shape):
    x = ag.tensor(np.full(shape, 3.0), requires_grad=True)
    (x * x).backward()
    assert x.grad.shape == shape
    close(x.grad, np.full(shape, 6.0))


def test_backward_with_explicit_gradient():
    x = leaf([1.0, 2.0, 3.0])
    (x * x).backward(ag.tensor(np.array([1.0, 0.0, -1.0])))
    close(x.grad, [2.0, 0.0, -6.0])


def test_backward_with_gradient_of_wrong_shape_raises():
    x = leaf([1.0, 2.0, 3.0])
    with pytest.raises(RuntimeError, match="shape"):
        (x * x).backward(ag.ones(2, dtype=ag.float64))


def test_backward_on_tensor_not_requiring_grad_raises():
    with pytest.raises(RuntimeError):
        ag.tensor([1.0, 2.0]).sum().backward()
    with ag.no_grad():
        y = (leaf([1.0]) * 2.0).sum()
    with pytest.raises(RuntimeError):
        y.backward()


def test_backward_on_a_leaf_itself():
    x = leaf(2.0)
    x.backward()
    close(x.grad, 1.0)


# -- long graphs ------------------------------------------------------------------------------------


def test_100k_op_chain_backward_is_iterative():
    n = 100_000
    c = 1.000001
    x = leaf(1.0)
    y = x
    t0 = time.perf_counter()
    for i in range(n // 2):
        y = y * c
        y = y + 0.001
    t1 = time.perf_counter()
    y.backward()
    t2 = time.perf_counter()
    print(f"\n100,000-op chain: forward {t1 - t0:.3f}s, backward {t2 - t1:.3f}s")
    close(x.grad, c ** (n // 2), rtol=1e-9)
    # Tearing down the 100k-deep chain of nodes must not overflow the C stack either.
    ref = weakref.ref(y.grad_fn)
    del y
    assert ref() is None


# -- memory: graphs are freed by reference counting alone ------------------------------------------------


def _live(kind):
    return sum(1 for o in gc.get_objects() if type(o) is kind)


@pytest.fixture
def no_gc():
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def test_training_like_steps_free_their_graph_without_gc(no_gc):
    w = ag.randn(4, 3, requires_grad=True)
    b = ag.zeros(3, requires_grad=True)

    def step():
        x = ag.randn(8, 4)
        h = ag.tanh(x @ w + b)
        loss = (h * h).mean() + ag.exp(h).sum() * 0.01
        refs = [weakref.ref(o) for o in (x, h, loss, h.grad_fn, loss.grad_fn)]
        loss.backward()
        with ag.no_grad():
            w.sub_(w.grad * 0.01)
            b.sub_(b.grad * 0.01)
        w.grad = None
        b.grad = None
        return refs

    for _ in range(3):
        assert all(r() is None for r in step())
    tensors, nodes, total = _live(ag.Tensor), _live(Context), len(gc.get_objects())
    for _ in range(50):
        assert all(r() is None for r in step())
    assert _live(ag.Tensor) == tensors
    assert _live(Context) == nodes
    assert len(gc.get_objects()) - total < 10


def test_forward_only_graph_freed_without_gc(no_gc):
    w = ag.randn(3, 3, requires_grad=True)
    for _ in range(3):
        y = ag.relu(ag.randn(2, 3) @ w).sum()
        ref = weakref.ref(y.grad_fn)
        del y
        assert ref() is None
    nodes = _live(Context)
    for _ in range(20):
        y = ag.relu(ag.randn(2, 3) @ w).sum()
        del y
    assert _live(Context) == nodes


def test_double_backward_with_ag_grad_frees_graph_without_gc(no_gc):
    def step():
        x = ag.randn(5, requires_grad=True)
        y = (ag.tanh(x) * x * x).sum()
        (g,) = ag.grad(y, x, create_graph=True)
        (gg,) = ag.grad((g * g).sum(), x)
        refs = [weakref.ref(o) for o in (x, y, g, gg, g.grad_fn, y.grad_fn)]
        return refs

    for _ in range(3):
        assert all(r() is None for r in step())
    tensors, nodes, total = _live(ag.Tensor), _live(Context), len(gc.get_objects())
    for _ in range(30):
        assert all(r() is None for r in step())
    assert _live(ag.Tensor) == tensors
    assert _live(Context) == nodes
    assert len(gc.get_objects()) - total < 10


def test_integer_output_of_a_recorded_op_is_a_leaf_that_keeps_no_graph():
    x = leaf([1.5, 2.5])
    h = x * 2.0
    i = h.astype(ag.int64)
    assert i.grad_fn is None and i.is_leaf and not i.requires_grad
    ref = weakref.ref(h.grad_fn)
    del h
    assert ref() is None  # the int tensor does not hold the graph


def test_backward_frees_saved_buffers_as_it_goes():
    x = leaf(np.ones(4))
    h = ag.exp(x)
    y = (h * h).sum()
    node = y.grad_fn
    y.backward()
    assert node.next_edges is None  # released
    assert h.grad_fn._saved is None and h.grad_fn._out is None


# -- detach, version counters, in-place ----------------------------------------------------------------


def test_detach_cuts_the_graph_and_shares_data_and_version():
    x = leaf([1.0, 2.0])
    h = x * 2.0
    d = h.detach()
    assert d.grad_fn is None and not d.requires_grad and d.is_leaf
    assert d.data is h.data
    assert d._version is h._version
    y = (d * x).sum()
    y.backward()
    close(x.grad, [2.0, 4.0])  # d is a constant: no path back through h


def test_inplace_on_saved_tensor_makes_backward_raise_naming_both_ops():
    x = leaf([1.0, 2.0])
    w = ag.tensor(np.array([3.0, 4.0]))
    y = (x * w).sum()
    with ag.no_grad():
        w.mul_(2.0)
    with pytest.raises(RuntimeError) as info:
        y.backward()
    msg = str(info.value)
    assert "Mul" in msg and "mul_" in msg


@pytest.mark.parametrize("mutate", [
    lambda t: t.add_(1.0), lambda t: t.sub_(1.0), lambda t: t.div_(2.0), lambda t: t.zero_(),
    lambda t: t.fill_(3.0), lambda t: t.copy_(ag.ones_like(t)),
])
def test_every_inplace_method_is_caught(mutate):
    x = leaf([1.0, 2.0])
    h = ag.exp(x)  # Exp saves its output
    y = h.sum()
    with ag.no_grad():
        mutate(h)
    with pytest.raises(RuntimeError, match="Exp"):
        y.backward()


def test_setitem_bumps_version_and_is_caught():
    t = ag.tensor(np.zeros(3))
    v = t._version[0]
    t[0] = 1.0
    assert t._version[0] == v + 1
    x = leaf([1.0, 2.0, 3.0])
    y = (x * t).sum()
    t[1:] = 5.0
    with pytest.raises(RuntimeError, match="Mul"):
        y.backward()


@pytest.mark.parametrize("view", [
    lambda t: t.reshape(3, 1), lambda t: t.reshape(-1), lambda t: t[1:], lambda t: t[0], lambda t: t[None, ...],
    lambda t: t.T, lambda t: t.transpose(), lambda t: t.detach(),
])
def test_views_share_the_version_counter(view):
    t = ag.tensor(np.arange(3.0))
    v = view(t)
    assert v._version is t._version
    before = t._version[0]
    v.mul_(2.0)  # through the view
    assert t._version[0] == before + 1


def test_inplace_through_a_view_of_a_saved_tensor_is_caught():
    x = leaf([1.0, 2.0])
    w = ag.tensor(np.array([[3.0, 4.0]]))
    y = (x * w.reshape(2)).sum()
    with ag.no_grad():
        w.mul_(2.0)
    with pytest.raises(RuntimeError, match="Mul"):
        y.backward()


def test_inplace_on_leaf_requiring_grad_raises_suggesting_out_of_place():
    x = leaf([1.0, 2.0])
    for op in (lambda: x.add_(1.0), lambda: x.mul_(2.0), lambda: x.zero_(), lambda: x.fill_(1.0),
               lambda: x.sub_(1.0), lambda: x.div_(2.0), lambda: x.copy_(ag.zeros_like(x))):
        with pytest.raises(RuntimeError, match="out-of-place"):
            op()
    with pytest.raises(RuntimeError):
        x[0] = 3.0
    close(x, [1.0, 2.0])
    with ag.no_grad():
        x.add_(1.0)  # allowed for parameter updates
    close(x, [2.0, 3.0])


def test_inplace_on_non_leaf_in_grad_mode_raises():
    x = leaf([1.0, 2.0])
    h = x * 2.0
    with pytest.raises(RuntimeError):
        h.add_(1.0)


def test_unmodified_saved_tensors_backward_fine_after_unrelated_inplace():
    x = leaf([1.0, 2.0])
    w = ag.tensor(np.array([3.0, 4.0]))
    other = ag.tensor(np.array([0.0, 0.0]))
    y = (x * w).sum()
    other.add_(1.0)
    y.backward()
    close(x.grad, [3.0, 4.0])


# -- ag.grad ---------------------------------------------------------------------------------------


def test_grad_single_tensor_and_sequences():
    x = leaf([1.0, 2.0])
    z = leaf([3.0])
    y = (x * x).sum() * z.sum()
    gx = ag.grad(y, x, retain_graph=True)
    assert isinstance(gx, tuple) and len(gx) == 1
    close(gx[0], 2 * 3.0 * np.array([1.0, 2.0]))
    gx2, gz = ag.grad([y], [x, z], [ag.tensor(np.array(2.0))])
    close(gx2, 2 * 2 * 3.0 * np.array([1.0, 2.0]))
    close(gz, [2 * 5.0])
    assert x.grad is None and z.grad is None


def test_grad_with_several_outputs_and_grad_outputs():
    x = leaf([1.0, 2.0])
    a = x * 2.0
    b = x * x
    (g,) = ag.grad((a, b), x, (ag.ones(2, dtype=ag.float64), ag.tensor(np.array([1.0, 10.0]))))
    close(g, [2.0 + 2.0, 2.0 + 40.0])


def test_grad_never_writes_grad_of_leaves_or_intermediates():
    x = leaf([1.0, 2.0])
    h = x * 2.0
    h.retain_grad()
    ag.grad((h * h).sum(), x)
    assert x.grad is None
    assert h._grad is None


def test_grad_unused_input_raises_unless_allow_unused():
    x = leaf([1.0, 2.0])
    z = leaf([1.0])
    with pytest.raises(RuntimeError, match="allow_unused"):
        ag.grad((x * x).sum(), [x, z])
    gx, gz = ag.grad((x * x).sum(), [x, z], allow_unused=True)
    close(gx, [2.0, 4.0])
    assert gz is None


def test_grad_with_the_same_input_twice():
    x = leaf([1.0, 2.0])
    h = x * 1.0
    gx1, gh1, gx2, gh2 = ag.grad((h * x).sum(), [x, h, x, h])
    for g, expected in ((gx1, [2.0, 4.0]), (gx2, [2.0, 4.0]), (gh1, [1.0, 2.0]), (gh2, [1.0, 2.0])):
        close(g, expected)


def test_grad_input_not_requiring_grad_raises():
    x = leaf([1.0])
    c = ag.tensor(np.array([1.0]))
    with pytest.raises(RuntimeError):
        ag.grad((x * c).sum(), c)


def test_grad_with_respect_to_non_leaf_inputs():
    x = leaf([1.0, 2.0])
    h = x * 3.0
    y = (h * h).sum()
    (gh,) = ag.grad(y, h, retain_graph=True)
    close(gh, 2 * 3.0 * np.array([1.0, 2.0]))
    gh2, gx = ag.grad(y, [h, x])
    close(gh2, gh.numpy())
    close(gx, 18.0 * np.array([1.0, 2.0]))


def test_grad_of_output_with_respect_to_itself():
    x = leaf([1.0, 2.0])
    h = x * 3.0
    (g,) = ag.grad(h, h, ag.tensor(np.array([5.0, 6.0])))
    close(g, [5.0, 6.0])
    (g,) = ag.grad(x, x, ag.tensor(np.array([7.0, 8.0])))
    close(g, [7.0, 8.0])


def test_grad_accumulates_input_used_many_times():
    x = leaf(2.0)
    (g,) = ag.grad(x * x + x * x * x + x, x)
    close(g, 2 * 2.0 + 3 * 4.0 + 1.0)


@pytest.mark.parametrize("x0", [0.5, -1.3, 2.0])
def test_higher_order_derivatives_of_cube(x0):
    x = leaf(x0)
    y = x ** 3
    (g1,) = ag.grad(y, x, create_graph=True)
    (g2,) = ag.grad(g1, x, create_graph=True)
    (g3,) = ag.grad(g2, x)
    close(g1, 3 * x0 ** 2, rtol=1e-12)
    close(g2, 6 * x0, rtol=1e-12)
    close(g3, 6.0, rtol=1e-12)
    assert g1.requires_grad and g2.requires_grad and not g3.requires_grad


@pytest.mark.parametrize("x0", [0.5, -1.2])
def test_higher_order_derivatives_of_tanh(x0):
    x = leaf(x0)
    (g1,) = ag.grad(ag.tanh(x), x, create_graph=True)
    (g2,) = ag.grad(g1, x, create_graph=True)
    (g3,) = ag.grad(g2, x)
    t = np.tanh(x0)
    close(g1, 1 - t * t, rtol=1e-12)
    close(g2, -2 * t * (1 - t * t), rtol=1e-12)
    close(g3, -2 * (1 - t * t) ** 2 + 4 * t * t * (1 - t * t), rtol=1e-10)


def test_create_graph_backward_makes_leaf_grad_differentiable():
    x = leaf([1.0, 2.0])
    (x ** 3).sum().backward(create_graph=True)
    assert x.grad.requires_grad
    g = x.grad
    x.grad = None
    g.sum().backward()
    close(x.grad, 6 * np.array([1.0, 2.0]))


def test_hessian_vector_product_mixed_inputs():
    x = leaf([1.0, 2.0])
    w = leaf([3.0, -1.0])
    y = (x * x * w).sum()
    gx, gw = ag.grad(y, [x, w], create_graph=True)
    v = ag.tensor(np.array([1.0, 1.0]))
    hx, hw = ag.grad((gx * v).sum(), [x, w])
    # d/dx (2 x w . v) = 2 w v ; d/dw = 2 x v
    close(hx, [6.0, -2.0])
    close(hw, [2.0, 4.0])


def test_grad_outputs_can_require_grad_for_double_backward():
    x = leaf([1.0, 2.0])
    u = leaf([3.0, 4.0])
    (g,) = ag.grad(ag.sin(x), x, u, create_graph=True)  # u * cos x
    gu, gx = ag.grad(g.sum(), [u, x])
    close(gu, np.cos([1.0, 2.0]))
    close(gx, -np.array([3.0, 4.0]) * np.sin([1.0, 2.0]))


class _Boom(ag.Function):
    """A node whose backward must never run."""

    @staticmethod
    def forward(ctx, t):
        return t.data * 1.0

    @staticmethod
    def backward(ctx, g):
        raise AssertionError("pruned node was run")


def test_grad_prunes_ops_not_on_a_path_to_inputs():
    x = leaf([1.0, 2.0])
    w = leaf([3.0, 4.0])
    y = (x * 2.0 + _Boom.apply(w) * x).sum()
    (g,) = ag.grad(y, x)
    close(g, 2.0 + np.array([3.0, 4.0]))


def test_grad_prunes_above_a_non_leaf_input():
    w = leaf([3.0, 4.0])
    h = _Boom.apply(w) * 2.0
    (g,) = ag.grad((h * h).sum(), h)
    close(g, 2 * 2.0 * np.array([3.0, 4.0]))


def test_grad_does_not_run_the_node_that_produced_a_non_leaf_input():
    w = leaf([3.0, 4.0])
    h = _Boom.apply(w)  # its backward would only serve w, which nobody asked for
    (g,) = ag.grad((h * h).sum(), h)
    close(g, 2 * np.array([3.0, 4.0]))


def test_backward_does_run_every_node():
    w = leaf([3.0, 4.0])
    with pytest.raises(AssertionError, match="pruned"):
        _Boom.apply(w).sum().backward()


# -- detect_anomaly --------------------------------------------------------------------------------


def test_anomaly_forward_nan_names_op_and_call_site():
    x = ag.tensor(np.array([-1.0, 2.0]), requires_grad=True)
    with pytest.raises(RuntimeError) as info:
        with ag.detect_anomaly(), np.errstate(invalid="ignore"):
            line = inspect.currentframe().f_lineno + 1
            ag.log(x)
    msg = str(info.value)
    assert "Log" in msg and "forward" in msg
    assert f"{os.path.basename(__file__)}:{line}" in msg


def test_anomaly_backward_inf_names_op_and_call_site():
    x = ag.tensor(np.array([0.0, 4.0]), requires_grad=True)
    with pytest.raises(RuntimeError) as info:
        with ag.detect_anomaly(), np.errstate(divide="ignore"):
            line = inspect.currentframe().f_lineno + 1
            y = ag.sqrt(x)
            y.sum().backward()
    msg = str(info.value)
    assert "Sqrt" in msg and "backward" in msg
    assert f"{os.path.basename(__file__)}:{line}" in msg


def test_no_anomaly_check_outside_detect_anomaly():
    with np.errstate(divide="ignore", invalid="ignore"):
        x = ag.tensor(np.array([0.0, 4.0]), requires_grad=True)
        ag.sqrt(x).sum().backward()
    assert np.isinf(x.grad.numpy()[0])


def test_anomaly_mode_finite_graph_runs_normally():
    x = leaf([1.0, 2.0])
    with ag.detect_anomaly():
        (ag.exp(x) * x).sum().backward()
    close(x.grad, np.exp([1.0, 2.0]) * (1 + np.array([1.0, 2.0])))


# -- errors of the contract ------------------------------------------------------------------------


@pytest.mark.parametrize("op,name", [
    (lambda a, b: a + b, "add"), (lambda a, b: a - b, "sub"), (lambda a, b: a * b, "mul"),
    (lambda a, b: a / b, "div"), (lambda a, b: ag.maximum(a, b), "maximum"),
])
def test_broadcast_mismatch_names_op_and_shapes(op, name):
    a = ag.ones(2, 3)
    b = ag.ones(4)
    with pytest.raises(ValueError) as info:
        op(a, b)
    msg = str(info.value)
    assert name in msg and "(2, 3)" in msg and "(4,)" in msg


@pytest.mark.parametrize("sa,sb", [((2, 3), (2, 3)), ((3,), (4,)), ((5, 2, 3), (4, 2))])
def test_matmul_mismatch_raises_value_error(sa, sb):
    with pytest.raises(ValueError) as info:
        ag.ones(*sa) @ ag.ones(*sb)
    msg = str(info.value)
    assert "matmul" in msg and str(sa) in msg and str(sb) in msg
