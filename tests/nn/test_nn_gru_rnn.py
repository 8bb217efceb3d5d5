"""nn.GRU and nn.RNN against torch.nn.GRU / torch.nn.RNN (torch's weights loaded, float64): names,
shapes, init, outputs, final states and every gradient, options, second order and errors."""
import math

import numpy as np
import pytest
from nn_testing import ag64, host, rng, th64

from xpgrad import autograd as ag
from xpgrad import nn
from xpgrad.autograd.testing import gradcheck, gradgradcheck

torch = pytest.importorskip("torch")

KINDS = ["GRU", "RNN_tanh", "RNN_relu"]


def _classes(kind):
    if kind == "GRU":
        return nn.GRU, torch.nn.GRU, {}
    return nn.RNN, torch.nn.RNN, {"nonlinearity": kind.split("_")[1]}


def _pair(kind, **kw):
    ours_cls, theirs_cls, extra = _classes(kind)
    torch.manual_seed(0)
    theirs = theirs_cls(**kw, **extra).double()
    ours = ours_cls(**kw, **extra).double()
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _tol(a, b):
    np.testing.assert_allclose(host(a), host(b), rtol=1e-10, atol=1e-10)


def _run_both(ours, theirs, x, h0=None, seed=0):
    xa, xt = ag64(x, True), th64(torch, x, True)
    ha = ht = None
    if h0 is not None:
        ha, ht = ag64(h0, True), th64(torch, h0, True)
    out, h = ours(xa, ha)
    tout, th = theirs(xt, ht)
    assert out.shape == tuple(tout.shape) and h.shape == tuple(th.shape)
    _tol(out, tout)
    _tol(h, th)
    r = rng(seed)
    u_out, u_h = r.standard_normal(tuple(tout.shape)), r.standard_normal(tuple(th.shape))
    ((out * ag64(u_out)).sum() + (h * ag64(u_h)).sum()).backward()
    ((tout * th64(torch, u_out)).sum() + (th * th64(torch, u_h)).sum()).backward()
    _tol(xa.grad, xt.grad)
    theirs_params = dict(theirs.named_parameters())
    names = [n for n, _ in ours.named_parameters()]
    assert names == list(theirs_params)
    for name, p in ours.named_parameters():
        _tol(p.grad, theirs_params[name].grad)
    if h0 is not None:
        _tol(ha.grad, ht.grad)


@pytest.mark.parametrize("kind", KINDS)
def test_parameter_names_shapes_and_order_match_torch(kind):
    ours_cls, theirs_cls, extra = _classes(kind)
    ours, theirs = ours_cls(3, 5, num_layers=2, **extra), theirs_cls(3, 5, num_layers=2, **extra)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [
        (n, tuple(p.shape)) for n, p in theirs.named_parameters()
    ]
    assert [n for n, _ in ours_cls(3, 5, bias=False, **extra).named_parameters()] == ["weight_ih_l0", "weight_hh_l0"]


@pytest.mark.parametrize("kind", KINDS)
def test_init_is_uniform_within_one_over_sqrt_hidden(kind):
    ours_cls, _, extra = _classes(kind)
    ag.manual_seed(0)
    hidden = 64
    m = ours_cls(32, hidden, **extra)
    bound = 1 / math.sqrt(hidden)
    values = np.concatenate([p.numpy().ravel() for p in m.parameters()])
    assert np.abs(values).max() <= bound
    n = values.size
    assert abs(values.mean()) < 5 * bound / math.sqrt(3 * n)
    assert abs(values.std() / (bound / math.sqrt(3)) - 1) < 5 * math.sqrt(0.8 / n) / 2


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("batch_first", [False, True])
def test_matches_torch(kind, num_layers, batch_first):
    ours, theirs = _pair(kind, input_size=3, hidden_size=4, num_layers=num_layers, batch_first=batch_first)
    x = rng(1).standard_normal((2, 5, 3) if batch_first else (5, 2, 3))
    _run_both(ours, theirs, x)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bias", [True, False])
def test_matches_torch_with_initial_state(kind, bias):
    ours, theirs = _pair(kind, input_size=2, hidden_size=3, num_layers=2, bias=bias, batch_first=True)
    r = rng(2)
    _run_both(ours, theirs, r.standard_normal((3, 4, 2)), r.standard_normal((2, 3, 3)))


@pytest.mark.parametrize("kind", KINDS)
def test_unbatched_and_single_step_match_torch(kind):
    ours, theirs = _pair(kind, input_size=3, hidden_size=2, num_layers=2)
    r = rng(3)
    _run_both(ours, theirs, r.standard_normal((6, 3)))
    _run_both(ours, theirs, r.standard_normal((6, 3)), r.standard_normal((2, 2)))
    _run_both(ours, theirs, r.standard_normal((1, 2, 3)), r.standard_normal((2, 2, 2)))


def test_gru_gate_order_and_reset_inside_new_gate():
    # Only b_hn is non-zero: with r = sigmoid(0) = 1/2 the new gate is tanh(r * b_hn), not tanh(b_hn).
    m = nn.GRU(1, 1).double()
    with ag.no_grad():
        for p in m.parameters():
            p.fill_(0.0)
        m.bias_hh_l0.copy_(ag64([0.0, 0.0, 2.0]))  # rows: r, z, n
    out, h = m(ag64([[[5.0]]]))
    n = np.tanh(0.5 * 2.0)
    np.testing.assert_allclose(h.numpy(), [[[0.5 * n]]], rtol=1e-12)  # (1 - z) n + z * 0, z = 1/2
    np.testing.assert_allclose(out.numpy(), h.numpy())


def test_relu_rnn_clamps_and_tanh_is_default():
    m = nn.RNN(1, 1, nonlinearity="relu", bias=False).double()
    with ag.no_grad():
        m.weight_ih_l0.fill_(1.0)
        m.weight_hh_l0.fill_(1.0)
    out, _ = m(ag64([[[-1.0]], [[3.0]], [[2.0]]]))
    np.testing.assert_allclose(out.numpy().ravel(), [0.0, 3.0, 5.0])
    assert nn.RNN(2, 3).nonlinearity == "tanh"
    assert "nonlinearity='relu'" in repr(m)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_of_first_and_second_order(kind):
    ours_cls, _, extra = _classes(kind)
    ag.manual_seed(0)
    m = ours_cls(2, 2, num_layers=2, **extra).double()
    r = rng(4)
    # relu: keep pre-activations away from 0 (where relu is not differentiable) with inputs that
    # are positive and weights from a positive range
    if kind == "RNN_relu":
        with ag.no_grad():
            for p in m.parameters():
                p.copy_(ag64(r.uniform(0.2, 0.6, p.shape)))
    x = ag64(r.uniform(0.5, 1.0, (3, 1, 2)), True)
    h0 = ag64(r.uniform(0.5, 1.0, (2, 1, 2)), True)
    params = dict(m.named_parameters())
    names = ["weight_hh_l0", "weight_ih_l1", "bias_hh_l0"]
    checked = [ag64(params[n].numpy(), True) for n in names]

    def fn(inp, h, *ws):
        m._parameters.update(zip(names, ws))
        return m(inp, h)

    assert gradcheck(fn, (x, h0, *checked))
    assert gradgradcheck(lambda inp, h, w, b: fn(inp, h, w, checked[1], b)[0], (x, h0, checked[0], checked[2]))


@pytest.mark.parametrize("kind", KINDS)
def test_create_graph_gradients_match_torch(kind):
    ours, theirs = _pair(kind, input_size=2, hidden_size=3, num_layers=2)
    r = rng(5)
    x = r.standard_normal((4, 2, 2))
    xa, xt = ag64(x, True), th64(torch, x, True)
    (ga,) = ag.grad(ours(xa)[0].sum(), [xa], create_graph=True)
    (gt,) = torch.autograd.grad(theirs(xt)[0].sum(), [xt], create_graph=True)
    _tol(ga, gt)
    ((ga * ga).sum()).backward()
    ((gt * gt).sum()).backward()
    # relu'' = 0: with a relu RNN the input gradient does not depend on the input, and torch
    # leaves x.grad None where we may hold zeros
    _tol_or_zero(xa.grad, xt.grad, x.shape)
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        _tol_or_zero(p.grad, theirs_params[name].grad, p.shape)


def _tol_or_zero(a, b, shape):
    a = np.zeros(shape) if a is None else host(a)
    b = np.zeros(shape) if b is None else host(b)
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_one_graph_node_per_layer():
    for m, name in ((nn.GRU(2, 3, num_layers=2), "GRUScan"), (nn.RNN(2, 3), "RNNTanhScan"),
                    (nn.RNN(2, 3, nonlinearity="relu"), "RNNReluScan")):
        out, _ = m(ag.randn(50, 2, 2))
        seen, stack, scans = set(), [out.grad_fn], 0
        while stack:
            node = stack.pop()
            if node is None or id(node) in seen or not hasattr(node, "next_edges"):
                continue
            seen.add(id(node))
            scans += node.name == name
            for e in node.next_edges or ():
                stack.append(e[0] if isinstance(e, tuple) else e)
        assert scans == m.num_layers


def test_float32_default_and_long_sequences_run():
    for m in (nn.GRU(4, 8, batch_first=True), nn.RNN(4, 8, batch_first=True)):
        out, h = m(ag.randn(2, 200, 4))
        assert out.dtype == np.float32 and out.shape == (2, 200, 8)
        np.testing.assert_allclose(host(out)[:, -1], host(h)[0], rtol=1e-6)
        out.sum().backward()
        assert all(p.grad is not None and p.grad.dtype == np.float32 for p in m.parameters())


def test_dropout_between_layers_only_in_training():
    ag.manual_seed(0)
    m = nn.GRU(2, 8, num_layers=2, dropout=0.5)
    x = ag.randn(4, 3, 2)
    m.eval()
    a, _ = m(x)
    b, _ = m(x)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    m.train()
    c, _ = m(x)
    assert not np.allclose(a.numpy(), c.numpy())


@pytest.mark.parametrize("cls", [nn.GRU, nn.RNN])
def test_errors_name_the_problem(cls):
    m = cls(3, 4)
    with pytest.raises(ValueError, match="input_size"):
        m(ag.randn(5, 2, 2))
    with pytest.raises(ValueError, match="3-D"):
        m(ag.randn(5))
    with pytest.raises(ValueError, match="h0"):
        m(ag.randn(5, 2, 3), ag.zeros(1, 3, 4))
    with pytest.raises(TypeError, match="not a tuple"):
        m(ag.randn(5, 2, 3), (ag.zeros(1, 2, 4), ag.zeros(1, 2, 4)))
    with pytest.raises(ValueError, match="num_layers"):
        cls(3, 4, num_layers=0)


def test_rnn_rejects_unknown_nonlinearity():
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
