"""Layers and loss modules against PyTorch (same weights, float64)."""
import math

import numpy as np
import pytest
from nn_testing import ag64, close, copy_params_to_torch, host, rng, th64

from xpgrad import autograd as ag
from xpgrad import nn

torch = pytest.importorskip("torch")


def _compare_module(ours, theirs, x, grad_rtol=1e-9):
    """Same weights in both, same input and upstream gradient: outputs and all gradients agree."""
    ours.double()
    theirs.double()
    copy_params_to_torch(torch, ours, theirs)
    xa, xt = ag64(x, True), th64(torch, x, True)
    y, ty = ours(xa), theirs(xt)
    close(y, ty)
    u = rng(99).standard_normal(host(ty).shape)
    y.backward(ag64(u))
    ty.backward(th64(torch, u))
    close(xa.grad, xt.grad, rtol=grad_rtol)
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        close(p.grad, theirs_params[name].grad, rtol=grad_rtol)
    return y


# -- Linear and containers ------------------------------------------------------------------------------

def test_linear_matches_torch_and_has_pytorch_shapes():
    m = nn.Linear(5, 3)
    assert m.weight.shape == (3, 5) and m.bias.shape == (3,)
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"]
    assert m.weight.dtype == np.float32 and m.weight.device is ag.zeros(1).device
    _compare_module(m, torch.nn.Linear(5, 3), rng(0).standard_normal((4, 5)))
    _compare_module(nn.Linear(5, 2, bias=False), torch.nn.Linear(5, 2, bias=False), rng(1).standard_normal((2, 3, 5)))
    assert nn.Linear(5, 2, bias=False).bias is None


def test_linear_default_init_is_pytorch_kaiming_uniform():
    ag.manual_seed(0)
    fan_in = 400
    m = nn.Linear(fan_in, 300)
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) reduces to this bound
    w, b = m.weight.numpy(), m.bias.numpy()
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    n = w.size
    std = bound / math.sqrt(3)  # of U(-bound, bound)
    assert abs(w.mean()) < 5 * std / math.sqrt(n)
    assert abs(w.std() - std) < 5 * std * math.sqrt(0.8 / n) / 2  # relative s.e. of a uniform's sample std
    assert w.max() > 0.99 * bound and w.min() < -0.99 * bound


def test_linear_init_follows_manual_seed():
    ag.manual_seed(7)
    a = nn.Linear(3, 4).weight.numpy()
    ag.manual_seed(7)
    b = nn.Linear(3, 4).weight.numpy()
    np.testing.assert_array_equal(a, b)


def test_sequential_indexing_len_iteration_and_slicing():
    layers = [nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)]
    seq = nn.Sequential(*layers)
    assert len(seq) == 3 and list(seq) == layers
    assert seq[0] is layers[0] and seq[-1] is layers[2]
    head = seq[:2]
    assert isinstance(head, nn.Sequential) and list(head) == layers[:2]
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    x = ag.randn(5, 4)
    np.testing.assert_allclose(seq(x).numpy(), layers[2](layers[1](layers[0](x))).numpy())
    seq.append(nn.Tanh())
    assert len(seq) == 4 and isinstance(seq[3], nn.Tanh)
    with pytest.raises(IndexError):
        seq[4]
    from collections import OrderedDict

    named = nn.Sequential(OrderedDict([("enc", nn.Linear(2, 2)), ("act", nn.ReLU())]))
    assert [n for n, _ in named.named_children()] == ["enc", "act"]
    assert named[0] is named.enc


def test_sequential_matches_torch():
    ours = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3), nn.LogSoftmax(axis=1))
    tnn = torch.nn
    theirs = tnn.Sequential(tnn.Linear(4, 6), tnn.Tanh(), tnn.Linear(6, 3), tnn.LogSoftmax(dim=1))
    _compare_module(ours, theirs, rng(2).standard_normal((5, 4)))


def test_module_list_registers_its_modules():
    class Stack(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(3, 3) for _ in range(2)])

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    m = Stack()
    assert len(m.layers) == 2 and len(list(m.parameters())) == 4
    assert [n for n, _ in m.named_parameters()][:2] == ["layers.0.weight", "layers.0.bias"]
    m.layers.append(nn.Linear(3, 1))
    assert m(ag.randn(2, 3)).shape == (2, 1)
    m.layers.insert(0, nn.Identity())
    assert isinstance(m.layers[0], nn.Identity) and [n for n, _ in m.layers.named_children()] == ["0", "1", "2", "3"]
    del m.layers[0]
    assert len(m.layers) == 3 and isinstance(m.layers[-1], nn.Linear)
    m.layers[2] = nn.Linear(3, 5)
    assert m(ag.randn(2, 3)).shape == (2, 5)
    assert isinstance(m.layers[1:], nn.ModuleList) and len(m.layers[1:]) == 2
    d = nn.ModuleDict({"a": nn.Linear(1, 1)})
    d["b"] = nn.ReLU()
    assert list(d) == ["a", "b"] and "a" in d and len(list(d.parameters())) == 2


# -- activations, Flatten, Identity ---------------------------------------------------------------------

@pytest.mark.parametrize(
    "ours, theirs",
    [
        (nn.ReLU(), torch.nn.ReLU()),
        (nn.LeakyReLU(), torch.nn.LeakyReLU()),
        (nn.LeakyReLU(0.3), torch.nn.LeakyReLU(0.3)),
        (nn.GELU(), torch.nn.GELU()),
        (nn.GELU(approximate="tanh"), torch.nn.GELU(approximate="tanh")),
        (nn.Sigmoid(), torch.nn.Sigmoid()),
        (nn.Tanh(), torch.nn.Tanh()),
        (nn.Softmax(), torch.nn.Softmax(dim=-1)),
        (nn.Softmax(axis=0), torch.nn.Softmax(dim=0)),
        (nn.LogSoftmax(), torch.nn.LogSoftmax(dim=-1)),
        (nn.LogSoftmax(axis=1), torch.nn.LogSoftmax(dim=1)),
        (nn.Flatten(), torch.nn.Flatten()),
        (nn.Flatten(0, 1), torch.nn.Flatten(0, 1)),
        (nn.Identity(), torch.nn.Identity()),
    ],
    ids=lambda m: repr(m),
)
def test_stateless_layers_match_torch(ours, theirs):
    x = rng(3).standard_normal((2, 3, 4)) * 2
    y = _compare_module(ours, theirs, x, grad_rtol=1e-7)
    assert y.shape == tuple(theirs(th64(torch, x)).shape)


def test_layer_reprs():
    assert repr(nn.LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2)"
    assert repr(nn.Softmax(axis=1)) == "Softmax(axis=1)"
    assert repr(nn.Dropout(0.25)) == "Dropout(p=0.25)"
    assert repr(nn.Embedding(10, 3)) == "Embedding(10, 3)"
    assert repr(nn.LayerNorm(4)) == "LayerNorm((4,), eps=1e-05, elementwise_affine=True)"


# -- Dropout in train/eval x grad/no_grad ------------------------------------------------------------------

@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("grad_enabled", [True, False])
def test_dropout_modes_are_independent(training, grad_enabled):
    ag.manual_seed(0)
    layer = nn.Dropout(0.5).train(training)
    x = ag.ones(400, 50, requires_grad=True)
    with ag.set_grad_enabled(grad_enabled):
        y = layer(x)
    v = y.numpy()
    if training:
        dropped = (v == 0).mean()
        assert abs(dropped - 0.5) < 5 * math.sqrt(0.25 / v.size)
        np.testing.assert_allclose(v[v != 0], 2.0)
        assert y.requires_grad == grad_enabled
    else:
        assert y is x  # the identity, as PyTorch: no copy, no node
    if grad_enabled:
        y.sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), v)  # the gradient is the same mask and scale


# -- LayerNorm -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, affine", [((4,), True), ((3, 4), True), ((4,), False)])
def test_layer_norm_matches_torch(shape, affine):
    ours = nn.LayerNorm(shape, elementwise_affine=affine)
    theirs = torch.nn.LayerNorm(shape, elementwise_affine=affine)
    if affine:
        r = rng(4)
        with ag.no_grad():
            ours.weight.copy_(ag.tensor(r.standard_normal(shape).astype(np.float32)))
            ours.bias.copy_(ag.tensor(r.standard_normal(shape).astype(np.float32)))
        assert [n for n, _ in ours.named_parameters()] == ["weight", "bias"]
    else:
        assert list(ours.parameters()) == []
    _compare_module(ours, theirs, rng(5).standard_normal((2, 3, 4)) * 4 + 2, grad_rtol=1e-8)


# -- BatchNorm1d -----------------------------------------------------------------------------------------

def _bn_pair(c=3, **kw):
    ours = nn.BatchNorm1d(c, **kw)
    theirs = torch.nn.BatchNorm1d(c, **kw)
    if kw.get("affine", True):
        r = rng(6)
        with ag.no_grad():
            ours.weight.copy_(ag.tensor(r.uniform(0.5, 2, c).astype(np.float32)))
            ours.bias.copy_(ag.tensor(r.standard_normal(c).astype(np.float32)))
    return ours, theirs


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5)])
def test_batchnorm_training_matches_torch_and_updates_running_stats(shape):
    ours, theirs = _bn_pair()
    theirs.double()
    for step in range(3):
        x = rng(7 + step).standard_normal(shape) * 3 + 1
        _compare_module(ours, theirs, x, grad_rtol=1e-8)
        close(ours.running_mean, theirs.running_mean)
        close(ours.running_var, theirs.running_var)
    assert ours.num_batches_tracked.dtype == np.int64 and ours.num_batches_tracked.item() == 3
    assert list(ours.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    ours.eval()
    theirs.eval()
    _compare_module(ours, theirs, rng(20).standard_normal(shape), grad_rtol=1e-8)
    assert ours.num_batches_tracked.item() == 3  # eval does not touch the statistics
    close(ours.running_mean, theirs.running_mean)


@pytest.mark.parametrize(
    "kw", [{"affine": False}, {"track_running_stats": False}, {"momentum": None}, {"momentum": 0.5}]
)
def test_batchnorm_options_match_torch(kw):
    ours, theirs = _bn_pair(**kw)
    for step in range(2):
        _compare_module(ours, theirs, rng(30 + step).standard_normal((5, 3, 2)) * 2, grad_rtol=1e-8)
    ours.eval()
    theirs.eval()
    _compare_module(ours, theirs, rng(40).standard_normal((5, 3)), grad_rtol=1e-8)
    if kw.get("track_running_stats", True):
        close(ours.running_var, theirs.running_var)
    else:
        assert ours.running_mean is None and list(ours.state_dict()) == ["weight", "bias"]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("grad_enabled", [True, False])
def test_batchnorm_modes_are_independent(training, grad_enabled):
    bn = nn.BatchNorm1d(2).double().train(training)
    x = ag64(rng(8).standard_normal((8, 2)) * 3 + 5, requires_grad=True)
    with ag.set_grad_enabled(grad_enabled):
        y = bn(x)
    v = y.numpy()
    if training:  # batch statistics, and the running ones move
        np.testing.assert_allclose(v.mean(axis=0), 0.0, atol=1e-12)
        np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * x.numpy().mean(axis=0), rtol=1e-12)
        assert bn.num_batches_tracked.item() == 1
    else:  # running statistics (0 and 1): the input comes out unchanged up to eps
        np.testing.assert_allclose(v, x.numpy() / np.sqrt(1 + 1e-5), rtol=1e-12)
        np.testing.assert_array_equal(bn.running_mean.numpy(), 0.0)
        assert bn.num_batches_tracked.item() == 0
    assert y.requires_grad == grad_enabled


def test_batchnorm_errors():
    bn = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="channels"):
        bn(ag.randn(4, 2))
    with pytest.raises(ValueError, match="more than 1 value"):
        bn(ag.randn(1, 3))
    with pytest.raises(ValueError, match="2-D"):
        bn(ag.randn(4))


def test_batchnorm_gradients_of_first_and_second_order():
    from xpgrad.autograd.testing import gradcheck, gradgradcheck

    r = rng(9)
    x = ag64(r.standard_normal((4, 2, 3)), True)
    w = ag64(r.uniform(0.5, 2, 2), True)
    b = ag64(r.standard_normal(2), True)
    fn = lambda a, c, d: nn.functional.batch_norm(a, None, None, c, d, training=True)  # noqa: E731
    assert gradcheck(fn, (x, w, b))
    assert gradgradcheck(fn, (x, w, b))


# -- Embedding -------------------------------------------------------------------------------------------

def test_embedding_init_is_standard_normal():
    ag.manual_seed(1)
    w = nn.Embedding(500, 40).weight.numpy()
    n = w.size
    assert abs(w.mean()) < 5 / math.sqrt(n)
    assert abs(w.std() - 1.0) < 5 * math.sqrt(0.5 / n)


def test_embedding_layer_matches_torch():
    ours = nn.Embedding(7, 3, padding_idx=2)
    np.testing.assert_array_equal(ours.weight.numpy()[2], 0.0)
    theirs = torch.nn.Embedding(7, 3, padding_idx=2).double()
    ours.double()
    copy_params_to_torch(torch, ours, theirs)
    idx = np.array([[0, 2, 6], [2, 2, 1]])
    y, ty = ours(ag.tensor(idx)), theirs(torch.tensor(idx))
    close(y, ty)
    u = rng(10).standard_normal((2, 3, 3))
    y.backward(ag64(u))
    ty.backward(th64(torch, u))
    close(ours.weight.grad, theirs.weight.grad)


# -- loss modules ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_loss_modules_match_torch(reduction):
    r = rng(11)
    x = r.standard_normal((4, 3))
    t_int = np.array([0, 2, 1, 2])
    p = r.uniform(0.1, 0.9, (4, 3))
    t = r.uniform(0, 1, (4, 3))
    w = r.uniform(0.5, 2, 3)
    cases = [
        (nn.MSELoss(reduction=reduction), torch.nn.MSELoss(reduction=reduction), x, t),
        (nn.L1Loss(reduction=reduction), torch.nn.L1Loss(reduction=reduction), x, t),
        (nn.CrossEntropyLoss(reduction=reduction), torch.nn.CrossEntropyLoss(reduction=reduction), x, t_int),
        (nn.CrossEntropyLoss(weight=ag64(w), reduction=reduction, label_smoothing=0.1),
         torch.nn.CrossEntropyLoss(weight=th64(torch, w), reduction=reduction, label_smoothing=0.1), x, t_int),
        (nn.CrossEntropyLoss(reduction=reduction, label_smoothing=0.2),
         torch.nn.CrossEntropyLoss(reduction=reduction, label_smoothing=0.2), x, p / p.sum(1, keepdims=True)),
        (nn.CrossEntropyLoss(ignore_index=2, reduction=reduction),
         torch.nn.CrossEntropyLoss(ignore_index=2, reduction=reduction), x, t_int),
        (nn.NLLLoss(weight=ag64(w), reduction=reduction), torch.nn.NLLLoss(weight=th64(torch, w), reduction=reduction),
         np.log(p), t_int),
        (nn.BCELoss(reduction=reduction), torch.nn.BCELoss(reduction=reduction), p, t),
        (nn.BCEWithLogitsLoss(reduction=reduction, pos_weight=ag64(w)),
         torch.nn.BCEWithLogitsLoss(reduction=reduction, pos_weight=th64(torch, w)), x, t),
    ]
    for ours, theirs, a, b in cases:
        xa, xt = ag64(a, True), th64(torch, a, True)
        ba = ag.tensor(b) if b.dtype.kind == "i" else ag64(b)
        bt = torch.tensor(b) if b.dtype.kind == "i" else th64(torch, b)
        y, ty = ours(xa, ba), theirs(xt, bt)
        close(y, ty)
        u = r.standard_normal(tuple(ty.shape))
        y.backward(ag64(u))
        ty.backward(th64(torch, u))
        close(xa.grad, xt.grad)


def test_loss_module_weights_are_buffers_and_reductions_are_checked():
    w = ag.ones(3)
    loss = nn.CrossEntropyLoss(weight=w)
    assert dict(loss.named_buffers())["weight"] is w
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")
    assert repr(nn.MSELoss(reduction="sum")) == "MSELoss(reduction='sum')"


def test_linear_uses_whatever_its_weight_attribute_is():
    # Functional reparametrisation: the parameter replaced by a computed tensor ...
    lin = nn.Linear(3, 2)
    x = ag.tensor(np.arange(12.0).reshape(4, 3))
    w0, b0 = lin.weight, lin.bias
    del lin.weight
    lin.weight = w0 * 2.0
    np.testing.assert_allclose(lin(x).numpy(), x.numpy() @ (2 * w0.numpy()).T + b0.numpy(), rtol=1e-6)

    # ... and a subclass computing it in a property (as weight normalisation does).
    class ZeroWeight(nn.Linear):
        @property
        def weight(self):
            return ag.zeros(2, 3)

    z = ZeroWeight(3, 2)
    np.testing.assert_allclose(z(x).numpy(), np.broadcast_to(z.bias.numpy(), (4, 2)), rtol=1e-6)
