"""cross_entropy's plain path: (N, C) logits with in-range class indices, none ignored, no class weights,
no label smoothing (the usual training loss). It must give what the general path and PyTorch give, in
values and first and second derivatives, and leave every other case to the general path.

The plain path runs on the CPU only (elsewhere checking the targets would wait for the device); on other
devices these tests compare the general path with itself and PyTorch, and the path checks are skipped.
"""
import numpy as np
import pytest
from nn_testing import close, host, rng

from xpgrad import autograd as ag
from xpgrad.autograd.testing import gradcheck, gradgradcheck
from xpgrad.nn import functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

ON_CPU = ag.get_default_device().type == "cpu"
REDUCTIONS = ["mean", "sum", "none"]
# dtype -> (rtol, atol) between the plain and the general path (the same math, rounded differently)
PATH_TOL = {np.float64: (1e-13, 1e-15), np.float32: (2e-6, 1e-7)}


def _kind(loss: ag.Tensor) -> str:
    return loss.grad_fn.kind


def _logits(n: int, c: int, dtype, seed: int = 0) -> np.ndarray:
    return (rng(seed).standard_normal((n, c)) * 3).astype(dtype)


def _loss_and_grad(logits: np.ndarray, target: np.ndarray, upstream=None, **kwargs):
    x = ag.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(x, ag.tensor(target), **kwargs)
    kind = _kind(loss)
    loss.backward(None if upstream is None else ag.tensor(upstream))
    return loss.numpy(), x.grad.numpy(), kind


def _general(monkeypatch, fn):
    """``fn()`` with every cross_entropy call sent the general way (the reference for the plain path)."""
    with monkeypatch.context() as m:
        m.setattr(F, "_plain_targets", lambda *args: False)
        return fn()


# -- which path -------------------------------------------------------------------------------------------

TARGET = np.array([0, 4, 2, 2, 1, 4])  # no 3
PLAIN_CASES = [
    {},
    {"reduction": "sum"},
    {"reduction": "none"},
    {"ignore_index": 3},  # a class index, but no target equals it
    {"ignore_index": None},
    {"ignore_index": 7},  # beyond the classes
    {"label_smoothing": 0.0, "weight": None},
]
GENERAL_CASES = [
    ({"ignore_index": 2}, TARGET),  # some targets are ignored
    ({}, np.array([0, 4, -100, 2, 1, 4])),
    ({"label_smoothing": 0.1}, TARGET),
    ({"weight": np.ones(5)}, TARGET),
]


@pytest.mark.skipif(not ON_CPU, reason="the plain path is CPU-only")
@pytest.mark.parametrize("kwargs", PLAIN_CASES, ids=repr)
def test_the_plain_path_is_taken_for_the_usual_loss(kwargs):
    x = ag.tensor(_logits(6, 5, np.float32), requires_grad=True)
    assert _kind(F.cross_entropy(x, ag.tensor(TARGET), **kwargs)) == "plain"


@pytest.mark.skipif(not ON_CPU, reason="the plain path is CPU-only")
@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64])
def test_the_plain_path_takes_every_integer_dtype(dtype):
    logits = _logits(6, 5, np.float64)
    loss, grad, kind = _loss_and_grad(logits, TARGET.astype(dtype))
    want_loss, want_grad, _ = _loss_and_grad(logits, TARGET)
    assert kind == "plain"
    np.testing.assert_array_equal(loss, want_loss)
    np.testing.assert_array_equal(grad, want_grad)


@pytest.mark.parametrize("case", range(len(GENERAL_CASES)))
def test_everything_else_takes_the_general_path(case):
    kwargs, target = GENERAL_CASES[case]
    kwargs = {k: ag.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    x = ag.tensor(_logits(6, 5, np.float32), requires_grad=True)
    assert _kind(F.cross_entropy(x, ag.tensor(target), **kwargs)) == "indices"


def test_other_shapes_and_probability_targets_take_the_general_path():
    r = rng(1)
    x3 = ag.tensor(r.standard_normal((2, 4, 3)), requires_grad=True)  # (N, C, d)
    assert _kind(F.cross_entropy(x3, ag.tensor(r.integers(0, 4, (2, 3))))) == "indices"
    x1 = ag.tensor(r.standard_normal(4), requires_grad=True)  # (C,)
    assert _kind(F.cross_entropy(x1, ag.tensor(np.array(2)))) == "indices"
    x = ag.tensor(r.standard_normal((3, 4)), requires_grad=True)
    assert _kind(F.cross_entropy(x, ag.tensor(r.dirichlet(np.ones(4), 3)))) == "probs"
    empty = ag.tensor(np.zeros((0, 4)), requires_grad=True)
    assert _kind(F.cross_entropy(empty, ag.tensor(np.zeros(0, dtype=np.int64)), reduction="sum")) == "indices"


# -- values and gradients -------------------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ignore_index", [-100, 3, None])
def test_plain_path_equals_the_general_path(reduction, dtype, ignore_index, monkeypatch):
    n, c = 9, 5
    logits = _logits(n, c, dtype, seed=2)
    target = rng(3).integers(0, c, n)
    target[target == 3] = 4  # ignore_index 3 is a class no target has
    upstream = rng(4).standard_normal(n).astype(dtype) if reduction == "none" else None
    kwargs = {"reduction": reduction, "ignore_index": ignore_index}
    loss, grad, kind = _loss_and_grad(logits, target, upstream, **kwargs)
    want_loss, want_grad, want_kind = _general(monkeypatch, lambda: _loss_and_grad(logits, target, upstream, **kwargs))
    assert want_kind == "indices" and kind == ("plain" if ON_CPU else "indices")
    assert loss.dtype == dtype and grad.dtype == dtype  # no float64 upcast of float32
    rtol, atol = PATH_TOL[dtype]
    np.testing.assert_allclose(loss, want_loss, rtol=rtol, atol=atol)
    np.testing.assert_allclose(grad, want_grad, rtol=rtol, atol=atol)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_plain_path_matches_torch(reduction):
    n, c = 7, 4
    logits = _logits(n, c, np.float64, seed=5)
    target = rng(6).integers(0, c, n)
    upstream = rng(7).standard_normal(n) if reduction == "none" else None
    loss, grad, _ = _loss_and_grad(logits, target, upstream, reduction=reduction)
    tx = torch.tensor(logits, requires_grad=True)
    tloss = TF.cross_entropy(tx, torch.tensor(target), reduction=reduction)
    tloss.backward(None if upstream is None else torch.tensor(upstream))
    np.testing.assert_allclose(loss, host(tloss), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad, host(tx.grad), rtol=1e-12, atol=1e-14)


def test_float32_logits_of_magnitude_1e4_and_masked_logits():
    logits = np.array([[1e4, -1e4, 0.0, 3.0], [-np.inf, 2.0, -np.inf, 1.0], [5.0, 5.0, 5.0, 5.0]], dtype=np.float32)
    target = np.array([1, 3, 2])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, grad, _ = _loss_and_grad(logits, target, np.ones(3, np.float32), reduction="none")
    tx = torch.tensor(logits, requires_grad=True)
    tloss = TF.cross_entropy(tx, torch.tensor(target), reduction="none")
    tloss.sum().backward()
    assert loss.dtype == np.float32 and np.isfinite(loss).all() and np.isfinite(grad).all()
    np.testing.assert_allclose(loss, host(tloss), rtol=1e-6)
    np.testing.assert_allclose(grad, host(tx.grad), rtol=1e-6, atol=1e-7)


def test_a_row_of_only_minus_inf_gives_nan_as_in_torch():
    logits = np.array([[-np.inf, -np.inf], [0.0, 1.0]])
    with np.errstate(invalid="ignore"):
        loss, _, _ = _loss_and_grad(logits, np.array([0, 1]), np.ones(2), reduction="none")
    assert np.isnan(loss[0]) and np.isfinite(loss[1])
    assert np.isnan(host(TF.cross_entropy(torch.tensor(logits), torch.tensor([0, 1]), reduction="none"))[0])


def test_strided_logits_and_targets():
    base = _logits(10, 16, np.float64, seed=8)  # class-major: (C, 2N)
    targets = rng(9).integers(0, 10, 16)
    x = ag.tensor(base, requires_grad=True)
    loss = F.cross_entropy(x.T[::2], ag.tensor(targets)[::2])  # non-contiguous (N, C) logits and (N,) targets
    loss.backward()
    tx = torch.tensor(base, requires_grad=True)
    tloss = TF.cross_entropy(tx.T[::2], torch.tensor(targets)[::2])
    tloss.backward()
    close(loss, tloss, rtol=1e-12)
    close(x.grad, tx.grad, rtol=1e-12, atol=1e-14)


def test_a_target_changed_in_place_after_forward_does_not_change_the_gradient():
    logits = _logits(6, 5, np.float64, seed=10)
    _, want, _ = _loss_and_grad(logits, TARGET)
    x = ag.tensor(logits, requires_grad=True)
    t = ag.tensor(TARGET.copy())
    loss = F.cross_entropy(x, t)
    t.fill_(0)
    loss.backward()
    np.testing.assert_array_equal(x.grad.numpy(), want)


def test_backward_twice_with_retain_graph_gives_the_same_gradient():
    x = ag.tensor(_logits(6, 5, np.float32, seed=11), requires_grad=True)
    loss = F.cross_entropy(x, ag.tensor(TARGET))
    loss.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    x.grad = None
    loss.backward()
    np.testing.assert_array_equal(x.grad.numpy(), first)


# -- higher order -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_plain_path_gradients_of_first_and_second_order(reduction):
    x = ag.tensor(_logits(5, 4, np.float64, seed=12), requires_grad=True)
    t = ag.tensor(np.array([0, 3, 1, 1, 2]))
    fn = lambda a: F.cross_entropy(a, t, reduction=reduction)
    assert gradcheck(fn, (x,))
    assert gradgradcheck(fn, (x,))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_double_backward_through_the_plain_path_matches_torch(reduction):
    logits = _logits(6, 5, np.float64, seed=13)
    v = rng(14).standard_normal(logits.shape)
    x = ag.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(x, ag.tensor(TARGET), reduction=reduction)
    (gx,) = ag.grad(loss.sum(), x, create_graph=True)
    (ggx,) = ag.grad((gx * ag.tensor(v)).sum(), x)
    tx = torch.tensor(logits, requires_grad=True)
    tloss = TF.cross_entropy(tx, torch.tensor(TARGET), reduction=reduction)
    (tgx,) = torch.autograd.grad(tloss.sum(), tx, create_graph=True)
    (tggx,) = torch.autograd.grad((tgx * torch.tensor(v)).sum(), tx)
    close(gx, tgx, rtol=1e-12, atol=1e-14)
    close(ggx, tggx, rtol=1e-10, atol=1e-12)


def test_create_graph_then_a_plain_backward_of_the_same_node():
    logits = _logits(6, 5, np.float64, seed=15)
    _, want, _ = _loss_and_grad(logits, TARGET)
    x = ag.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(x, ag.tensor(TARGET))
    (gx,) = ag.grad(loss, x, create_graph=True, retain_graph=True)
    loss.backward()
    np.testing.assert_allclose(gx.numpy(), want, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(x.grad.numpy(), want)


# -- errors ------------------------------------------------------------------------------------------------------

@pytest.mark.skipif(not ON_CPU, reason="other devices do not check targets (that would wait for the device)")
@pytest.mark.parametrize("bad", [5, -1, 1000, -100])
def test_out_of_range_targets_raise_index_error_naming_the_target(bad):
    x = ag.tensor(_logits(4, 5, np.float32), requires_grad=True)
    target = np.array([0, bad, 2, 1])
    kwargs = {"ignore_index": None} if bad == -100 else {}  # -100 is ignored by default, else out of range
    with pytest.raises(IndexError, match=rf"target {bad} is out of bounds for 5 classes"):
        F.cross_entropy(x, ag.tensor(target), **kwargs)


@pytest.mark.skipif(not ON_CPU, reason="other devices do not check targets (that would wait for the device)")
def test_non_native_byte_order_targets_are_still_checked():
    x = ag.tensor(_logits(3, 5, np.float64))
    target = np.array([0, -1, 2], dtype=">i8")
    with pytest.raises(IndexError, match="target -1 is out of bounds"):
        F.cross_entropy(x, ag.tensor(target))
    loss, grad, _ = _loss_and_grad(_logits(3, 5, np.float64), np.array([0, 4, 2], dtype=">i8"))
    want_loss, want_grad, _ = _loss_and_grad(_logits(3, 5, np.float64), np.array([0, 4, 2]))
    rtol, atol = PATH_TOL[np.float64]
    np.testing.assert_allclose(loss, want_loss, rtol=rtol, atol=atol)
    np.testing.assert_allclose(grad, want_grad, rtol=rtol, atol=atol)


def test_shape_and_dtype_errors():
    x = ag.tensor(_logits(4, 5, np.float32))
    with pytest.raises(ValueError, match="target of shape"):
        F.cross_entropy(x, ag.tensor(np.array([0, 1, 2])))
    with pytest.raises(ValueError, match="target of shape"):
        F.cross_entropy(x, ag.tensor(np.array([[0, 1], [2, 3]])))
    with pytest.raises(TypeError, match="class indices"):
        F.cross_entropy(x, ag.tensor(np.array([True, False, True, False])))


@pytest.mark.parametrize("dtype", [np.int8, np.int16])
def test_small_signed_targets_with_more_classes_than_their_positive_range(dtype, monkeypatch):
    # Viewed as unsigned, int8's -100 is 156: with 200 classes it would look like a class.
    classes = 200 if dtype == np.int8 else 70000
    logits = _logits(3, classes, np.float64)
    target = np.array([5, -100, 7], dtype=dtype)  # -100: ignored by default
    got = _loss_and_grad(logits, target)
    want = _general(monkeypatch, lambda: _loss_and_grad(logits, target))
    np.testing.assert_allclose(got[0], want[0], rtol=1e-13)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-13, atol=1e-15)
    want_int64 = _loss_and_grad(logits, target.astype(np.int64))
    np.testing.assert_allclose(got[0], want_int64[0], rtol=1e-13)
    if ON_CPU:
        with pytest.raises(IndexError, match="target -1 is out of bounds"):
            F.cross_entropy(ag.tensor(logits), ag.tensor(np.array([-1, 3, 4], dtype=dtype)))
