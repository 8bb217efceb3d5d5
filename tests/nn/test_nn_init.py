"""nn.init: distributions checked with tolerances derived from the sample size."""
import math

import numpy as np
import pytest

from xpgrad import autograd as ag
from xpgrad import nn
from xpgrad.nn import init

N_OUT, N_IN = 300, 200  # 60,000 samples per check
N = N_OUT * N_IN


def _assert_uniform(values, low, high):
    assert values.min() >= low and values.max() <= high
    std = (high - low) / math.sqrt(12)
    assert abs(values.mean() - (low + high) / 2) < 5 * std / math.sqrt(values.size)
    # the sample variance of a uniform has relative standard error sqrt(0.8 / n)
    assert abs(values.std() / std - 1) < 5 * math.sqrt(0.8 / values.size) / 2 + 1e-12
    assert values.min() < low + (high - low) * 1e-3 and values.max() > high - (high - low) * 1e-3


def _assert_normal(values, mean, std):
    assert abs(values.mean() - mean) < 5 * std / math.sqrt(values.size)
    assert abs(values.std() / std - 1) < 5 * math.sqrt(0.5 / values.size)


def _weight():
    return nn.Parameter(ag.empty(N_OUT, N_IN))


def test_uniform_and_normal():
    ag.manual_seed(0)
    w = _weight()
    assert init.uniform_(w, -2.0, 3.0) is w
    _assert_uniform(w.numpy(), -2.0, 3.0)
    _assert_uniform(init.uniform_(_weight()).numpy(), 0.0, 1.0)
    _assert_normal(init.normal_(_weight(), 1.5, 0.3).numpy(), 1.5, 0.3)
    _assert_normal(init.normal_(_weight()).numpy(), 0.0, 1.0)


def test_constants():
    w = _weight()
    np.testing.assert_array_equal(init.zeros_(w).numpy(), 0.0)
    np.testing.assert_array_equal(init.ones_(w).numpy(), 1.0)
    np.testing.assert_array_equal(init.constant_(w, 0.25).numpy(), 0.25)


@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_xavier(gain):
    ag.manual_seed(1)
    bound = gain * math.sqrt(6 / (N_IN + N_OUT))
    _assert_uniform(init.xavier_uniform_(_weight(), gain=gain).numpy(), -bound, bound)
    _assert_normal(init.xavier_normal_(_weight(), gain=gain).numpy(), 0.0, gain * math.sqrt(2 / (N_IN + N_OUT)))


@pytest.mark.parametrize("mode, fan", [("fan_in", N_IN), ("fan_out", N_OUT)])
@pytest.mark.parametrize("nonlinearity, a, gain", [
    ("relu", 0.0, math.sqrt(2)), ("leaky_relu", 0.0, math.sqrt(2)), ("leaky_relu", math.sqrt(5), math.sqrt(1 / 3)),
    ("tanh", 0.0, 5 / 3), ("linear", 0.0, 1.0),
])
def test_kaiming(mode, fan, nonlinearity, a, gain):
    ag.manual_seed(2)
    bound = gain * math.sqrt(3 / fan)
    w = init.kaiming_uniform_(_weight(), a=a, mode=mode, nonlinearity=nonlinearity)
    _assert_uniform(w.numpy(), -bound, bound)
    w = init.kaiming_normal_(_weight(), a=a, mode=mode, nonlinearity=nonlinearity)
    _assert_normal(w.numpy(), 0.0, gain / math.sqrt(fan))


def test_fans_include_the_receptive_field():
    ag.manual_seed(3)
    w = nn.Parameter(ag.empty(40, 30, 5))  # like a conv weight: fan_in = 30 * 5
    bound = math.sqrt(2) * math.sqrt(3 / 150)
    _assert_uniform(init.kaiming_uniform_(w, nonlinearity="relu").numpy(), -bound, bound)
    with pytest.raises(ValueError, match="fewer than 2"):
        init.xavier_uniform_(nn.Parameter(ag.empty(5)))


def test_calculate_gain_matches_torch():
    torch = pytest.importorskip("torch")
    for name in ["linear", "sigmoid", "tanh", "relu", "selu", "conv2d"]:
        assert init.calculate_gain(name) == pytest.approx(torch.nn.init.calculate_gain(name))
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(torch.nn.init.calculate_gain("leaky_relu", 0.2))
    with pytest.raises(ValueError):
        init.calculate_gain("swish")
    with pytest.raises(ValueError):
        init.kaiming_uniform_(_weight(), mode="fan_avg")


def test_initialisers_are_in_place_outside_the_graph_and_seeded():
    w = _weight()
    data = w.data
    version = w._version[0]
    init.normal_(w)
    assert w.data is data and w._version[0] > version  # same array, version bumped
    assert w.requires_grad and w.is_leaf and w.grad_fn is None
    ag.manual_seed(5)
    a = init.uniform_(_weight()).numpy().copy()
    ag.manual_seed(5)
    np.testing.assert_array_equal(init.uniform_(_weight()).numpy(), a)
    with pytest.raises(TypeError, match="floating"):
        init.normal_(ag.zeros(3, dtype=ag.int64))


def test_float64_and_float16_tensors_keep_their_dtype():
    for dtype in (ag.float64, ag.float16):
        t = ag.zeros(50, 40, dtype=dtype)
        init.xavier_uniform_(t)
        assert t.dtype == dtype and np.abs(t.numpy()).max() > 0
