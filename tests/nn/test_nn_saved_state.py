"""What nn.functional's backwards read reaches them through ``save_for_backward``.

A Tensor the backward needs (an index, class weights, probability targets, a weight) changed in place
between forward and backward makes backward raise the engine's in-place error, as in PyTorch; values the
op copied (NumPy indices, class-index targets turned into one-hots) cannot change, so the gradient
stays right. Also: cross-entropy's general backward asks the device's backend for its fused kernel.
"""
import numpy as np
import pytest
from nn_testing import ag64, rng

from xpgrad import autograd as ag
from xpgrad.nn import functional as F

IN_PLACE = "modified by an in-place operation"


def _row_sums_of_embedding_grad(index, change):
    w = ag64(np.ones((4, 1)), True)
    y = F.embedding(index, w)
    change()
    y.sum().backward()
    return w.grad.numpy().sum(axis=1)


def _assign(t):
    with ag.no_grad():
        t[...] = 3


@pytest.mark.parametrize("change", [_assign, lambda t: t.fill_(3)], ids=["setitem", "fill_"])
def test_embedding_index_changed_in_place_raises_at_backward(change):
    idx = ag.tensor(np.array([0, 1, 0, 1]))
    with pytest.raises(RuntimeError, match=IN_PLACE):
        _row_sums_of_embedding_grad(idx, lambda: change(idx))


def test_embedding_index_unchanged_gives_the_gradient():
    idx = ag.tensor(np.array([0, 1, 0, 1]))
    np.testing.assert_array_equal(_row_sums_of_embedding_grad(idx, lambda: None), [2, 2, 0, 0])


@pytest.mark.cpu_only  # a NumPy index is a host array
def test_embedding_numpy_index_is_copied():
    idx = np.array([0, 1, 0, 1])
    np.testing.assert_array_equal(_row_sums_of_embedding_grad(idx, lambda: idx.fill(3)), [2, 2, 0, 0])


def test_embedding_index_changed_in_place_raises_under_create_graph():
    idx = ag.tensor(np.array([[0, 2], [2, 1]]))
    w = ag64(rng(0).standard_normal((3, 2)), True)
    (gw,) = ag.grad((F.embedding(idx, w) ** 2).sum(), w, create_graph=True)
    idx.fill_(0)
    with pytest.raises(RuntimeError, match=IN_PLACE):
        gw.sum().backward()


def _logits(shape=(4, 3), seed=1):
    return ag64(rng(seed).standard_normal(shape), True)


def test_cross_entropy_class_weights_changed_in_place_raise():
    weight = ag64([0.5, 1.0, 2.0])
    loss = F.cross_entropy(_logits(), ag.tensor(np.array([0, 2, 1, 2])), weight=weight, label_smoothing=0.1)
    weight.mul_(2.0)
    with pytest.raises(RuntimeError, match=IN_PLACE):
        loss.backward()


def test_cross_entropy_probability_target_changed_in_place_raises():
    q = ag64(rng(2).dirichlet(np.ones(3), 4))
    loss = F.cross_entropy(_logits(), q)
    q.fill_(0.0)
    with pytest.raises(RuntimeError, match=IN_PLACE):
        loss.backward()


@pytest.mark.parametrize("kwargs", [{"label_smoothing": 0.2}, {"ignore_index": 1}, {}], ids=repr)
def test_cross_entropy_class_index_target_changed_in_place_keeps_the_gradient(kwargs):
    target = np.array([0, 2, 1, 2])
    grads = []
    for change in (False, True):
        x, t = _logits(), ag.tensor(target.copy())
        loss = F.cross_entropy(x, t, **kwargs)
        if change:
            t.fill_(0)
        loss.backward()
        grads.append(x.grad.numpy())
    np.testing.assert_array_equal(grads[1], grads[0])


@pytest.mark.parametrize("which", ["weight", "pos_weight"])
def test_binary_cross_entropy_weights_changed_in_place_raise(which):
    r = rng(3)
    x, t = ag64(r.standard_normal((2, 3)), True), ag64(r.uniform(0, 1, (2, 3)))
    w = ag64([0.5, 1.0, 2.0])
    loss = F.binary_cross_entropy_with_logits(x, t, **{which: w})
    w.add_(1.0)
    with pytest.raises(RuntimeError, match=IN_PLACE):
        loss.backward()
    p = ag64(r.uniform(0.1, 0.9, (2, 3)), True)
    loss = F.binary_cross_entropy(p, t, weight=w)
    w.add_(1.0)
    with pytest.raises(RuntimeError, match=IN_PLACE):
        loss.backward()


def test_layer_norm_weight_changed_in_place_raises():
    w = ag64(np.ones(3), True)
    y = F.layer_norm(_logits(), 3, w)
    with ag.no_grad():
        w.mul_(2.0)
    with pytest.raises(RuntimeError, match=IN_PLACE):
        y.sum().backward()


OPS = {
    "leaky_relu": lambda x: F.leaky_relu(x, 0.1),
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "dropout": lambda x: F.dropout(x, 0.5),
    "layer_norm": lambda x: F.layer_norm(x, 3),
    "cross_entropy_plain": lambda x: F.cross_entropy(x, ag.tensor(np.array([0, 2, 1, 2]))),
    "cross_entropy_smoothed": lambda x: F.cross_entropy(x, ag.tensor(np.array([0, 2, 1, 2])), label_smoothing=0.1),
    "bce_with_logits": lambda x: F.binary_cross_entropy_with_logits(x, ag64(np.full((4, 3), 0.25))),
}


@pytest.mark.parametrize("name", OPS)
def test_saved_values_serve_a_retained_graph_and_are_freed_after(name):
    ag.manual_seed(0)
    x = _logits()
    out = OPS[name](x).sum()
    out.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    out.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first, rtol=1e-14)
    with pytest.raises(RuntimeError, match="second time"):
        out.backward()


# -- the fused backward of cross entropy, through Backend.fused --------------------------------------------

class _FakeKernel:
    """The contract of ``softmax_cross_entropy_backward`` in the backend's array module, counting calls."""

    def __init__(self, xp):
        self.xp, self.calls = xp, 0

    def __call__(self, probs, target, scale, *, label_smoothing=0.0, ignore_index=-100):
        self.calls += 1
        xp = self.xp
        c = probs.shape[1]
        counted = target != ignore_index
        onehot = xp.where(counted, target, 0)[:, None] == xp.arange(c)[None, :]
        q = onehot * (1.0 - label_smoothing) + label_smoothing / c
        scale = scale[:, None] if getattr(scale, "ndim", 0) == 1 else scale
        return xp.where(counted[:, None], (probs - q) * scale, 0.0).astype(probs.dtype)


@pytest.fixture
def fused(monkeypatch):
    backend = ag.get_default_device().backend
    kernel = _FakeKernel(backend.xp)
    asked = []

    def lookup(kind):
        asked.append(kind)
        return kernel if kind == "softmax_cross_entropy_backward" else None

    monkeypatch.setattr(backend, "fused", lookup)
    kernel.asked = asked
    return kernel


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kwargs", [{"label_smoothing": 0.1}, {"ignore_index": 1}], ids=repr)
def test_cross_entropy_backward_uses_the_backends_fused_kernel(fused, monkeypatch, reduction, kwargs):
    target = ag.tensor(np.array([0, 2, 1, 2, 1]))
    upstream = ag64(rng(5).standard_normal(5)) if reduction == "none" else None
    grads = []
    for use_kernel in (True, False):
        if not use_kernel:
            monkeypatch.undo()
        x = _logits((5, 3), seed=4)
        F.cross_entropy(x, target, reduction=reduction, **kwargs).backward(upstream)
        grads.append(x.grad.numpy())
    assert fused.calls == 1 and fused.asked == ["softmax_cross_entropy_backward"]
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-13, atol=1e-15)


def test_cross_entropy_cases_outside_the_kernel_do_not_ask_for_it(fused):
    t = ag.tensor(np.array([0, 2, 1, 2]))
    F.cross_entropy(_logits(), t, weight=ag64([1.0, 2.0, 0.5]), label_smoothing=0.1).backward()  # class weights
    F.cross_entropy(_logits(), ag64(rng(6).dirichlet(np.ones(3), 4))).backward()  # probability targets
    F.cross_entropy(_logits((2, 3, 2)), ag.tensor(np.array([[0, 1], [2, 2]])), label_smoothing=0.1).backward()
    x = _logits()
    ag.grad(F.cross_entropy(x, t, label_smoothing=0.1), x, create_graph=True)  # the Tensor path
    assert fused.calls == 0 and fused.asked == []
