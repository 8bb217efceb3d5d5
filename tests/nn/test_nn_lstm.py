"""nn.LSTM against torch.nn.LSTM (same weights, float64): shapes, values, gradients, options."""
import math

import numpy as np
import pytest
from nn_testing import ag64, close, copy_params_to_torch, host, rng, th64

from xpgrad import autograd as ag
from xpgrad import nn
from xpgrad.autograd.testing import gradcheck, gradgradcheck

torch = pytest.importorskip("torch")


def _pair(**kw):
    ours = nn.LSTM(**kw).double()
    theirs = torch.nn.LSTM(**kw).double()
    copy_params_to_torch(torch, ours, theirs)
    return ours, theirs


def _run_both(ours, theirs, x, hx=None, seed=0):
    xa, xt = ag64(x, True), th64(torch, x, True)
    hxa = hxt = None
    if hx is not None:
        hxa = tuple(ag64(h, True) for h in hx)
        hxt = tuple(th64(torch, h, True) for h in hx)
    out, (h, c) = ours(xa, hxa)
    tout, (th, tc) = theirs(xt, hxt)
    assert out.shape == tuple(tout.shape) and h.shape == tuple(th.shape) and c.shape == tuple(tc.shape)
    close(out, tout)
    close(h, th)
    close(c, tc)
    r = rng(seed)
    us = [r.standard_normal(tuple(t.shape)) for t in (tout, th, tc)]
    loss = sum(((a * ag64(u)).sum() for a, u in zip((out, h, c), us)), ag64(0.0))
    tloss = sum((a * th64(torch, u)).sum() for a, u in zip((tout, th, tc), us))
    loss.backward()
    tloss.backward()
    close(xa.grad, xt.grad)
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        close(p.grad, theirs_params[name].grad)
    if hx is not None:
        for a, t in zip(hxa, hxt):
            close(a.grad, t.grad)


def test_parameter_names_shapes_and_order_match_torch():
    ours = nn.LSTM(3, 5, num_layers=2)
    theirs = torch.nn.LSTM(3, 5, num_layers=2)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [
        (n, tuple(p.shape)) for n, p in theirs.named_parameters()
    ]
    assert [n for n, _ in nn.LSTM(3, 5, bias=False).named_parameters()] == ["weight_ih_l0", "weight_hh_l0"]


def test_init_is_uniform_within_one_over_sqrt_hidden():
    ag.manual_seed(0)
    hidden = 64
    m = nn.LSTM(32, hidden)
    bound = 1 / math.sqrt(hidden)
    values = np.concatenate([p.numpy().ravel() for p in m.parameters()])
    assert np.abs(values).max() <= bound
    n = values.size
    assert abs(values.mean()) < 5 * bound / math.sqrt(3 * n)
    assert abs(values.std() / (bound / math.sqrt(3)) - 1) < 5 * math.sqrt(0.8 / n) / 2


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("batch_first", [False, True])
def test_matches_torch(num_layers, batch_first):
    ours, theirs = _pair(input_size=3, hidden_size=4, num_layers=num_layers, batch_first=batch_first)
    x = rng(1).standard_normal((2, 5, 3) if batch_first else (5, 2, 3))
    _run_both(ours, theirs, x)


def test_matches_torch_with_initial_state_and_without_bias():
    ours, theirs = _pair(input_size=2, hidden_size=3, num_layers=2, bias=False)
    r = rng(2)
    x = r.standard_normal((4, 3, 2))
    hx = (r.standard_normal((2, 3, 3)), r.standard_normal((2, 3, 3)))
    _run_both(ours, theirs, x, hx)


def test_unbatched_input_matches_torch():
    ours, theirs = _pair(input_size=3, hidden_size=2, num_layers=2)
    r = rng(3)
    _run_both(ours, theirs, r.standard_normal((6, 3)))
    _run_both(ours, theirs, r.standard_normal((6, 3)), (r.standard_normal((2, 2)), r.standard_normal((2, 2))))


def test_single_step_and_gate_order():
    # With weights that open only the "g" gate block, the cell state is i * g with i, g known.
    m = nn.LSTM(1, 1).double()
    with ag.no_grad():
        for p in m.parameters():
            p.fill_(0.0)
        m.weight_ih_l0.copy_(ag64([[0.0], [0.0], [1.0], [0.0]]))  # rows: i, f, g, o
    out, (h, c) = m(ag64([[[2.0]]]))
    expected_c = 0.5 * np.tanh(2.0)  # sigmoid(0) * tanh(2)
    np.testing.assert_allclose(c.numpy(), [[[expected_c]]], rtol=1e-12)
    np.testing.assert_allclose(h.numpy(), [[[0.5 * np.tanh(expected_c)]]], rtol=1e-12)
    np.testing.assert_allclose(out.numpy(), h.numpy())


def test_gradients_of_first_and_second_order():
    ag.manual_seed(0)
    m = nn.LSTM(2, 2, num_layers=2).double()
    params = list(m.parameters())
    r = rng(4)
    x = ag64(r.standard_normal((3, 1, 2)), True)
    h0 = ag64(r.standard_normal((2, 1, 2)), True)

    def fn(inp, h, w_ih, w_hh):
        # swap two of the parameters for the checked inputs; the rest stay fixed
        m._parameters["weight_ih_l1"], m._parameters["weight_hh_l0"] = w_ih, w_hh
        out, (_, cn) = m(inp, (h, h * 0.5))
        return out, cn

    w_ih, w_hh = ag64(params[4].numpy(), True), ag64(params[1].numpy(), True)
    assert gradcheck(fn, (x, h0, w_ih, w_hh))
    assert gradgradcheck(lambda inp, w: fn(inp, h0, w_ih, w)[0], (x, w_hh))


def test_errors_name_the_problem():
    m = nn.LSTM(3, 4)
    with pytest.raises(ValueError, match="input_size"):
        m(ag.randn(5, 2, 2))
    with pytest.raises(ValueError, match="3-D"):
        m(ag.randn(5))
    with pytest.raises(ValueError, match="h0"):
        m(ag.randn(5, 2, 3), (ag.zeros(1, 3, 4), ag.zeros(1, 3, 4)))


def test_dropout_between_layers_only_in_training():
    ag.manual_seed(0)
    m = nn.LSTM(2, 8, num_layers=2, dropout=0.5)
    x = ag.randn(4, 3, 2)
    m.eval()
    a, _ = m(x)
    b, _ = m(x)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    m.train()
    c, _ = m(x)
    assert not np.allclose(a.numpy(), c.numpy())


def test_float32_default_and_long_sequences_run():
    m = nn.LSTM(4, 8, batch_first=True)
    x = ag.randn(2, 200, 4)
    out, (h, _) = m(x)
    assert out.dtype == np.float32 and out.shape == (2, 200, 8)
    np.testing.assert_allclose(host(out)[:, -1], host(h)[0], rtol=1e-6)
    out.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == np.float32 for p in m.parameters())
