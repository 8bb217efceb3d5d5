"""What a backward reads reaches it through ``ctx.save_for_backward``, where in-place changes are caught.

Table-driven: for every op in op_table.py, no graph node (of the forward, and of the gradient under
``create_graph``) keeps an array or a Tensor as an attribute of its own; and changing the inputs
in place after forward either makes backward raise or leaves the gradient as it was.
Focused tests: a ``where`` condition, index arrays and index tensors changed after forward.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from op_table import OPS, OpSpec

from xpgrad import autograd as ag
from xpgrad.autograd.function import Context

SECOND_ORDER_OPS = [s for s in OPS if s.finite_differences and s.second_order]
MODIFIED = "modified by an in-place operation"


def over(specs: list[OpSpec]):
    return pytest.mark.parametrize("spec", specs, ids=lambda s: s.name)


def as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def leaves(arrays) -> list:
    return [ag.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in arrays]


def upstream(outs, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [ag.tensor(rng.standard_normal(o.shape)) for o in outs]


def nodes(tensors) -> list:
    """Every graph node reachable from ``tensors``."""
    seen: dict = {}
    stack = [t.grad_fn for t in tensors if t is not None and t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        for edge in node.next_edges or ():
            target = edge[0] if type(edge) is tuple else edge
            if type(target) is Context:
                stack.append(target)
    return list(seen.values())


def array_state(value, array_types, path="") -> list:
    """Paths to the arrays and Tensors held by ``value`` (looking into tuples, lists and dicts)."""
    if isinstance(value, array_types):
        return [path or "(value)"]
    if isinstance(value, (tuple, list)):
        return [p for i, v in enumerate(value) for p in array_state(v, array_types, f"{path}[{i}]")]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in array_state(v, array_types, f"{path}[{k!r}]")]
    return []


def assert_no_array_attributes(graph_nodes, device) -> None:
    array_types = (np.ndarray, ag.Tensor) + as_tuple(device.backend.array_type)
    for node in graph_nodes:
        held = [f"ctx.{name}{p}" for name, v in vars(node).items() for p in array_state(v, array_types)]
        assert not held, f"{node!r} keeps arrays outside save_for_backward: {held}"


@over(OPS)
@given(data=st.data())
def test_nodes_keep_no_arrays_outside_checked_saving(spec, data):
    case = data.draw(spec.cases, label="case")
    xs = leaves(case.arrays)
    outs = as_tuple(spec.fn(*xs, **case.kwargs))
    assert_no_array_attributes(nodes(outs), xs[0].device)  # no nodes: the op returned its input


@over(SECOND_ORDER_OPS)
@given(data=st.data())
def test_gradient_graph_nodes_keep_no_arrays_outside_checked_saving(spec, data):
    case = data.draw(spec.cases, label="case")
    xs = leaves(case.arrays)
    outs = [o for o in as_tuple(spec.fn(*xs, **case.kwargs)) if o.requires_grad]
    grads = ag.grad(outs, xs, upstream(outs, seed=3), create_graph=True, allow_unused=True)
    assert_no_array_attributes(nodes([g for g in grads if g is not None]), xs[0].device)


@over(OPS)
@given(data=st.data())
def test_inputs_changed_in_place_raise_or_leave_the_gradient_alone(spec, data):
    case = data.draw(spec.cases, label="case")
    xs = leaves(case.arrays)
    outs = as_tuple(spec.fn(*xs, **case.kwargs))
    us = upstream(outs, seed=4)
    want = [g.numpy().copy() if g is not None else None for g in ag.grad(outs, xs, us, allow_unused=True)]
    xs = leaves(case.arrays)
    outs = as_tuple(spec.fn(*xs, **case.kwargs))
    with ag.no_grad():
        for x in xs:
            x.mul_(1.5).add_(0.25)
    try:
        got = ag.grad(outs, xs, us, allow_unused=True)
    except RuntimeError as exc:
        assert MODIFIED in str(exc)
        return
    for g, w in zip(got, want):
        if w is None:
            assert g is None
        else:
            np.testing.assert_array_equal(g.numpy(), w)


# -- conditions and indices changed after forward -----------------------------------------------------------

def backend_array(x: ag.Tensor, values, dtype):
    """An array of ``x``'s backend that the caller holds (NumPy on cpu)."""
    return x.device.backend.asarray(np.array(values, dtype=dtype))


def test_where_condition_tensor_changed_in_place_raises():
    x = ag.tensor([1.0, 2.0, 3.0], requires_grad=True)
    cond = ag.tensor([True, False, True])
    y = ag.where(cond, x, 0.0)
    with ag.no_grad():
        cond.fill_(False)
    with pytest.raises(RuntimeError, match=MODIFIED):
        y.sum().backward()


def test_where_condition_tensor_changed_in_place_raises_under_create_graph():
    x = ag.tensor([1.0, 2.0, 3.0], requires_grad=True)
    cond = ag.tensor([True, False, True])
    y = ag.where(cond, x * x, 0.0)
    with ag.no_grad():
        cond[1] = True
    with pytest.raises(RuntimeError, match=MODIFIED):
        ag.grad(y.sum(), x, create_graph=True)


@pytest.mark.parametrize("kind", ["array", "list"])
def test_where_condition_array_changed_after_forward_keeps_the_gradient(kind):
    x = ag.tensor([1.0, 2.0, 3.0], requires_grad=True)
    values = [True, False, True]
    cond = backend_array(x, values, bool) if kind == "array" else values
    y = ag.where(cond, x, 0.0)
    cond[0] = False
    cond[1] = True
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 0.0, 1.0])


def test_where_non_bool_condition_tensor_is_its_own_copy():
    x = ag.tensor([1.0, 2.0, 3.0], requires_grad=True)
    cond = ag.tensor([1, 0, 2])
    y = ag.where(cond, x, 0.0)
    with ag.no_grad():
        cond.fill_(0)  # the bool copy where() made is unaffected
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 0.0, 1.0])


def test_index_array_changed_after_forward_keeps_the_gradient():
    x = ag.tensor([1.0, 2.0, 3.0], requires_grad=True)
    idx = backend_array(x, [0, 0], np.int64)
    y = x[idx]
    idx[:] = 2
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 0.0, 0.0])


def test_numpy_index_array_changed_after_forward_keeps_the_gradient():
    x = ag.tensor([1.0, 2.0, 3.0], requires_grad=True)
    idx = np.array([0, 0])
    y = x[idx]
    idx[:] = 2
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 0.0, 0.0])


def test_mask_array_changed_after_forward_keeps_the_gradient():
    x = ag.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    mask = backend_array(x, [True, False], bool)
    y = x[mask, 1:]
    mask[:] = True
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0.0, 1.0], [0.0, 0.0]])


def test_index_array_changed_after_forward_keeps_the_second_order_gradient():
    x = ag.tensor([1.0, 2.0, 3.0], requires_grad=True)
    idx = backend_array(x, [0, 0, 1], np.int64)
    y = (x[idx] ** 3).sum()
    idx[:] = 2
    (g,) = ag.grad(y, x, create_graph=True)
    np.testing.assert_allclose(g.numpy(), [6.0, 12.0, 0.0])  # 3 x**2, twice for x[0]
    (gg,) = ag.grad(g.sum(), x)
    np.testing.assert_allclose(gg.numpy(), [12.0, 12.0, 0.0])  # 6 x, twice for x[0]


@pytest.mark.parametrize("change", ["setitem", "fill_", "copy_"])
def test_index_tensor_changed_in_place_raises(change):
    x = ag.tensor([1.0, 2.0, 3.0], requires_grad=True)
    idx = ag.tensor([0, 0])
    y = x[idx]
    with ag.no_grad():
        if change == "setitem":
            idx[0] = 2
        elif change == "fill_":
            idx.fill_(2)
        else:
            idx.copy_(ag.tensor([2, 2]))
    with pytest.raises(RuntimeError, match=MODIFIED):
        y.sum().backward()


def test_index_tensor_changed_in_place_raises_for_higher_orders():
    x = ag.tensor([1.0, 2.0, 3.0], requires_grad=True)
    idx = ag.tensor([0, 0, 1])
    y = (x[idx] ** 3).sum()
    (g,) = ag.grad(y, x, create_graph=True)  # its graph holds the scatter, which needs idx again
    with ag.no_grad():
        idx[0] = 2
    with pytest.raises(RuntimeError, match=MODIFIED):
        ag.grad(g.sum(), x)


def test_take_along_axis_index_array_changed_after_forward_keeps_the_gradient():
    x = ag.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    idx = backend_array(x, [[0, 0], [2, 1]], np.int64)
    y = ag.take_along_axis(x, idx, axis=1)
    idx[...] = 1
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[2.0, 0.0, 0.0], [0.0, 1.0, 1.0]])


def test_take_along_axis_index_tensor_changed_in_place_raises():
    x = ag.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    idx = ag.tensor([[0, 0], [2, 1]])
    y = ag.take_along_axis(x, idx, axis=1)
    with ag.no_grad():
        idx[0, 0] = 1
    with pytest.raises(RuntimeError, match=MODIFIED):
        y.sum().backward()


def test_index_tensor_unchanged_gives_the_gradient():
    # Saving the index tensor costs nothing when nothing changes: the ordinary result.
    x = ag.tensor([1.0, 2.0, 3.0], requires_grad=True)
    idx = ag.tensor([0, 0, 2])
    x[idx].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 0.0, 1.0])
    x.grad = None
    ag.take_along_axis(x, ag.tensor([2, 2]), axis=0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 2.0])
