"""tril/triu, masked_fill, sort, argsort and topk: values and indices vs torch, ties, NaN, errors,
gradients (the op table gives gradcheck/gradgradcheck/parity on hypothesis cases), and the
nanoGPT causal-mask attention block vs torch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from xpgrad import autograd as ag
from xpgrad.nn import functional as F


def T(a, **kw):
    return ag.tensor(np.asarray(a), **kw)


def host(t) -> np.ndarray:
    return t.numpy() if hasattr(t, "numpy") and t.device.type == "cpu" else np.asarray(t.to("cpu").data)


# -- tril / triu ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [-2, -1, 0, 1, 3])
@pytest.mark.parametrize("name", ["tril", "triu"])
def test_triangles_match_torch_batched(name, k):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    want = getattr(torch, name)(torch.from_numpy(x), diagonal=k).numpy()
    np.testing.assert_array_equal(host(getattr(ag, name)(T(x), k)), want)
    np.testing.assert_array_equal(host(getattr(ag, name)(T(x), diagonal=k)), want)
    np.testing.assert_array_equal(host(getattr(T(x), name)(k)), want)


@pytest.mark.parametrize("name", ["tril", "triu"])
def test_triangle_gradient_is_masked_the_same_way(name):
    x = T(np.ones((3, 4)), requires_grad=True)
    getattr(ag, name)(x, 1).sum().backward()
    np.testing.assert_array_equal(host(x.grad), getattr(np, name)(np.ones((3, 4)), 1))


def test_triangle_errors():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        ag.tril(T([1.0, 2.0]))
    with pytest.raises(TypeError, match="not both"):
        ag.triu(T(np.ones((2, 2))), 1, diagonal=1)
    with pytest.raises(TypeError, match="must be an int"):
        ag.tril(T(np.ones((2, 2))), 0.5)


# -- masked_fill ---------------------------------------------------------------------------------------------

def test_masked_fill_broadcasts_mask_and_keeps_dtype():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    mask = np.array([True, False, True, False])
    got = ag.masked_fill(T(x), T(mask), -1.0)
    want = torch.from_numpy(x).masked_fill(torch.from_numpy(mask), -1.0).numpy()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(host(got), want)
    np.testing.assert_array_equal(host(T(x).masked_fill(T(mask), float("-inf"))),
                                  torch.from_numpy(x).masked_fill(torch.from_numpy(mask), float("-inf")).numpy())


def test_masked_fill_int_tensor_and_tensor_value():
    x = T(np.arange(4))
    got = x.masked_fill(x > 1, T(np.array(7)))
    np.testing.assert_array_equal(host(got), [0, 1, 7, 7])
    assert got.dtype == np.int64


def test_masked_fill_gradient_and_value_gradient():
    x = T(np.ones((2, 3)), requires_grad=True)
    v = T(np.array(2.0), requires_grad=True)
    mask = T(np.array([[True, False, True], [False, False, True]]))
    (ag.masked_fill(x, mask, v) * 3.0).sum().backward()
    np.testing.assert_array_equal(host(x.grad), np.where(host(mask), 0.0, 3.0))
    assert float(host(v.grad)) == 9.0  # torch: the sum over the filled positions
    xt = torch.ones((2, 3), dtype=torch.float64, requires_grad=True)
    vt = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    (xt.masked_fill(torch.from_numpy(host(mask)), vt) * 3.0).sum().backward()
    assert vt.grad.item() == 9.0


def test_masked_fill_mask_changed_in_place_after_forward_raises():
    x = T(np.ones(3), requires_grad=True)
    mask = T(np.array([True, False, True]))
    y = ag.masked_fill(x, mask, 0.0)
    mask[0] = False
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.sum().backward()


def test_masked_fill_array_mask_is_copied():
    x = T(np.ones(3), requires_grad=True)
    mask = np.array([True, False, True])
    if x.device.type != "cpu":
        mask = x.device.backend.asarray(mask)
    y = ag.masked_fill(x, mask, 0.0)
    mask[1] = True
    y.sum().backward()
    np.testing.assert_array_equal(host(x.grad), [0.0, 1.0, 0.0])


def test_masked_fill_errors():
    x = T(np.ones((2, 3)))
    with pytest.raises(TypeError, match="bool"):
        x.masked_fill(T(np.array([1, 0, 1])), 0.0)
    with pytest.raises(ValueError, match="does not broadcast"):
        x.masked_fill(T(np.ones((3, 3), dtype=bool)), 0.0)
    with pytest.raises(ValueError, match="does not broadcast"):
        x.masked_fill(T(np.ones((2, 2, 3), dtype=bool)), 0.0)  # a mask may not enlarge the tensor
    with pytest.raises(ValueError, match="0-d"):
        x.masked_fill(T(np.ones(3, dtype=bool)), T(np.ones(3)))
    with pytest.raises(TypeError, match="number or a 0-d tensor"):
        x.masked_fill(T(np.ones(3, dtype=bool)), "a")


# -- sort / argsort / topk --------------------------------------------------------------------------------------

TIES = np.array([[3.0, 1.0, 3.0, 2.0, 1.0, 3.0], [0.0, 0.0, -1.0, 5.0, 5.0, 0.0]])


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_sort_with_ties_matches_torch_stable(descending, dim):
    v, i = ag.sort(T(TIES), dim=dim, descending=descending)
    tv, ti = torch.sort(torch.from_numpy(TIES), dim=dim, descending=descending, stable=True)
    np.testing.assert_array_equal(host(v), tv.numpy())
    np.testing.assert_array_equal(host(i), ti.numpy())
    assert i.dtype == np.int64
    np.testing.assert_array_equal(host(T(TIES).sort(dim, descending)[1]), ti.numpy())


@pytest.mark.parametrize("descending", [False, True])
def test_argsort_matches_torch_and_takes_axis_or_dim(descending):
    want = torch.argsort(torch.from_numpy(TIES), dim=1, descending=descending, stable=True).numpy()
    np.testing.assert_array_equal(host(ag.argsort(T(TIES), axis=1, descending=descending)), want)
    np.testing.assert_array_equal(host(ag.argsort(T(TIES), dim=1, descending=descending)), want)
    np.testing.assert_array_equal(host(T(TIES).argsort(descending=descending)), want)
    assert ag.argsort(T(TIES, requires_grad=True)).grad_fn is None


def test_sort_nan_counts_as_largest_as_torch():
    x = np.array([1.0, np.nan, -2.0, np.nan, 0.5])
    for descending in (False, True):
        v, i = ag.sort(T(x), descending=descending)
        tv, ti = torch.sort(torch.from_numpy(x), descending=descending, stable=True)
        np.testing.assert_array_equal(host(v), tv.numpy())
        np.testing.assert_array_equal(host(i), ti.numpy())


def test_sort_ints_and_bools():
    x = np.array([3, -1, 2, 2, 0])
    for descending in (False, True):
        np.testing.assert_array_equal(
            host(ag.sort(T(x), descending=descending)[1]),
            torch.sort(torch.from_numpy(x), descending=descending, stable=True)[1].numpy(),
        )
    b = np.array([True, False, True, False])
    np.testing.assert_array_equal(host(ag.argsort(T(b), descending=True)), [0, 2, 1, 3])


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("k", [0, 1, 3, 6])
def test_topk_values_and_indices_vs_torch(largest, k):
    x = np.random.default_rng(1).standard_normal((4, 6))
    v, i = ag.topk(T(x), k, largest=largest)
    tv, ti = torch.topk(torch.from_numpy(x), k, largest=largest)
    np.testing.assert_array_equal(host(v), tv.numpy())
    np.testing.assert_array_equal(host(i), ti.numpy())
    v0, i0 = T(x).topk(2, dim=0, largest=largest)
    tv0, ti0 = torch.topk(torch.from_numpy(x), 2, dim=0, largest=largest)
    np.testing.assert_array_equal(host(v0), tv0.numpy())
    np.testing.assert_array_equal(host(i0), ti0.numpy())


def test_topk_ties_pick_the_earlier_position_and_gradient_goes_there():
    x = T(np.array([1.0, 3.0, 2.0, 3.0, 3.0]), requires_grad=True)
    v, i = ag.topk(x, 2)
    np.testing.assert_array_equal(host(i), [1, 3])
    np.testing.assert_array_equal(host(v), [3.0, 3.0])
    (v * T(np.array([10.0, 20.0]))).sum().backward()
    np.testing.assert_array_equal(host(x.grad), [0.0, 10.0, 0.0, 20.0, 0.0])


def test_sort_gradient_scatters_back():
    x = T(np.array([[0.3, -1.0, 2.0]]), requires_grad=True)
    v, _ = ag.sort(x, descending=True)
    (v * T(np.array([[1.0, 2.0, 3.0]]))).sum().backward()
    np.testing.assert_array_equal(host(x.grad), [[2.0, 3.0, 1.0]])


def test_topk_bounds_and_argument_errors():
    x = T(np.ones((2, 3)))
    with pytest.raises(ValueError, match="k=4 is out of range"):
        ag.topk(x, 4)
    with pytest.raises(ValueError, match="k=-1 is out of range"):
        ag.topk(x, -1)
    with pytest.raises(ValueError, match="k=3 is out of range for dimension 0 of size 2"):
        ag.topk(x, 3, dim=0)
    with pytest.raises(TypeError, match="k must be an int"):
        ag.topk(x, 1.5)
    with pytest.raises(ValueError, match="out of bounds"):
        ag.sort(x, dim=2)
    with pytest.raises(ValueError, match="out of bounds"):
        ag.argsort(x, axis=-3)
    with pytest.raises(TypeError, match="dim must be an int"):
        ag.sort(x, dim=(0, 1))


# -- the nanoGPT causal-mask attention block ----------------------------------------------------------------------

def _attention_ag(q, k, v, T_, scale):
    # Written as in nanoGPT's CausalSelfAttention.
    att = (q @ k.transpose(-2, -1)) * scale
    att = att.masked_fill(ag.tril(ag.ones(T_, T_, dtype=q.dtype)) == 0, float("-inf"))
    att = F.softmax(att, dim=-1)
    return att @ v


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-6), (np.float64, 1e-10)])
def test_causal_attention_matches_torch(dtype, tol):
    B, H, T_, D = 2, 3, 5, 4
    rng = np.random.default_rng(7)
    qkv = [rng.standard_normal((B, H, T_, D)).astype(dtype) for _ in range(3)]
    gy = rng.standard_normal((B, H, T_, D)).astype(dtype)
    scale = 1.0 / np.sqrt(D)
    xs = [T(a, requires_grad=True) for a in qkv]
    y = _attention_ag(*xs, T_, scale)
    (y * T(gy)).sum().backward()
    ts = [torch.from_numpy(a).requires_grad_(True) for a in qkv]
    q, k, v = ts
    att = (q @ k.transpose(-2, -1)) * scale
    att = att.masked_fill(torch.tril(torch.ones(T_, T_, dtype=q.dtype)) == 0, float("-inf"))
    att = torch.softmax(att, dim=-1)
    yt = att @ v
    (yt * torch.from_numpy(gy)).sum().backward()
    np.testing.assert_allclose(host(y), yt.detach().numpy(), rtol=tol, atol=tol)
    for x, t in zip(xs, ts):
        np.testing.assert_allclose(host(x.grad), t.grad.numpy(), rtol=tol, atol=tol)
