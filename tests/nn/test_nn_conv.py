"""Convolution and pooling: parity with PyTorch (float64) on stride/padding/dilation/groups/"same",
pooling ties, layer init and state_dict names, and the errors for bad shapes."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from xpgrad import autograd as ag
from xpgrad import nn
from xpgrad.nn import functional as F

TF = torch.nn.functional
RNG = np.random.default_rng(7)


def _pair(shape):
    a = RNG.standard_normal(shape)
    return ag.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


def _close(a, t, tol=1e-10):
    np.testing.assert_allclose(a.numpy(), t.detach().numpy(), rtol=tol, atol=tol)


CONV2D = [
    ((2, 3, 6, 5), (4, 3, 3, 2), {}),
    ((2, 4, 7, 6), (6, 2, 3, 3), dict(stride=2, padding=1, dilation=(1, 2), groups=2)),
    ((1, 2, 5, 6), (2, 2, 2, 3), dict(padding="same", dilation=2)),
    ((1, 2, 6, 6), (3, 2, 4, 4), dict(padding="same")),
    ((2, 3, 6, 6), (3, 1, 3, 3), dict(padding=(0, 2), stride=(1, 3), groups=3)),
    ((1, 1, 5, 5), (2, 1, 3, 3), dict(padding="valid")),
    ((3, 5, 5), (2, 3, 3, 3), dict(padding=1)),  # unbatched
]
CONV1D = [
    ((2, 3, 9), (4, 3, 3), dict(stride=2, padding=2)),
    ((1, 4, 7), (2, 2, 2), dict(padding="same", dilation=3, groups=2)),
    ((3, 6), (2, 3, 3), {}),  # unbatched
]


@pytest.mark.parametrize("nd,xs,ws,kw", [(2,) + c for c in CONV2D] + [(1,) + c for c in CONV1D])
def test_conv_matches_torch_to_second_order(nd, xs, ws, kw):
    f, tf = (F.conv2d, TF.conv2d) if nd == 2 else (F.conv1d, TF.conv1d)
    (x, tx), (w, tw), (b, tb) = _pair(xs), _pair(ws), _pair(ws[:1])
    y = f(x, w, b, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ty = tf(tx, tw, tb, **kw)
    _close(y, ty)
    g = RNG.standard_normal(ty.shape)
    grads = ag.grad((y * ag.tensor(g)).sum(), [x, w, b], create_graph=True)
    tgrads = torch.autograd.grad((ty * torch.tensor(g)).sum(), [tx, tw, tb], create_graph=True)
    for a, t in zip(grads, tgrads):
        _close(a, t)
    # The bias gradient does not depend on x, w or b: second derivatives with respect to x and w.
    second = ag.grad(sum((a * a).sum() for a in grads), [x, w])
    tsecond = torch.autograd.grad(sum((a * a).sum() for a in tgrads), [tx, tw])
    for a, t in zip(second, tsecond):
        _close(a, t, 1e-9)


def test_max_pool_ties_send_the_gradient_to_the_first_maximum():
    a = np.array([[[[1.0, 3.0, 3.0, 0.0], [3.0, 2.0, 3.0, 3.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]]])
    x, tx = ag.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    for kw in (dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=(2, 3), stride=1)):
        y, ty = F.max_pool2d(x, **kw), TF.max_pool2d(tx, **kw)
        _close(y, ty)
        (gx,) = ag.grad(y.sum(), [x])
        (tgx,) = torch.autograd.grad(ty.sum(), [tx])
        _close(gx, tgx)
        assert gx.numpy().sum() == y.numel()  # one element per window
    a1 = np.array([[[2.0, 2.0, 1.0, 2.0, 2.0]]])
    x1, tx1 = ag.tensor(a1, requires_grad=True), torch.tensor(a1, requires_grad=True)
    (gx,) = ag.grad(F.max_pool1d(x1, 2, 1).sum(), [x1])
    (tgx,) = torch.autograd.grad(TF.max_pool1d(tx1, 2, 1).sum(), [tx1])
    _close(gx, tgx)


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0))])
def test_pools_match_torch(kw):
    (x, tx) = _pair((2, 3, 6, 5))
    for f, tf in ((F.max_pool2d, TF.max_pool2d), (F.avg_pool2d, TF.avg_pool2d)):
        y, ty = f(x, **kw), tf(tx, **kw)
        _close(y, ty)
        g = RNG.standard_normal(ty.shape)
        (gx,) = ag.grad((y * ag.tensor(g)).sum(), [x])
        (tgx,) = torch.autograd.grad((ty * torch.tensor(g)).sum(), [tx])
        _close(gx, tgx)
    kw1 = {k: (v[0] if isinstance(v, tuple) else v) for k, v in kw.items()}
    (x1, tx1) = _pair((2, 3, 7))
    _close(F.max_pool1d(x1, **kw1), TF.max_pool1d(tx1, **kw1))
    _close(F.avg_pool1d(x1, **kw1), TF.avg_pool1d(tx1, **kw1))


@pytest.mark.parametrize("size", [1, 3, (2, 4), (None, 3), (5, 7)])
def test_adaptive_avg_pool2d_matches_torch(size):
    x, tx = _pair((2, 3, 5, 6))
    y, ty = F.adaptive_avg_pool2d(x, size), TF.adaptive_avg_pool2d(tx, size)
    _close(y, ty)
    (gx,) = ag.grad((y * y).sum(), [x])
    (tgx,) = torch.autograd.grad((ty * ty).sum(), [tx])
    _close(gx, tgx)


def test_modules_forward_and_state_dict_names():
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=True)
    assert list(conv.state_dict()) == ["weight", "bias"]
    assert conv.weight.shape == (4, 3, 3, 3) and conv.bias.shape == (4,)
    assert list(nn.Conv1d(2, 4, 3, groups=2, bias=False).state_dict()) == ["weight"]
    tconv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1).double()
    with torch.no_grad():
        tconv.weight.copy_(torch.tensor(conv.weight.numpy()))
        tconv.bias.copy_(torch.tensor(conv.bias.numpy()))
    a = RNG.standard_normal((2, 3, 6, 6))
    conv = conv.double() if hasattr(conv, "double") else conv
    x = ag.tensor(a, dtype=conv.weight.dtype)
    np.testing.assert_allclose(conv(x).numpy(), tconv(torch.tensor(a).to(torch.float64)).detach().numpy().astype(
        conv.weight.numpy().dtype), rtol=1e-5, atol=1e-5)
    seq = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.AvgPool2d(1), nn.AdaptiveAvgPool2d(1))
    assert seq(ag.randn(2, 1, 6, 6)).shape == (2, 2, 1, 1)
    assert nn.MaxPool1d(2)(ag.randn(1, 2, 6)).shape == (1, 2, 3)
    assert nn.AvgPool1d(3, 1, 1)(ag.randn(1, 2, 6)).shape == (1, 2, 6)


@pytest.mark.parametrize("cls,args,groups", [(nn.Conv2d, (6, 8, (5, 3)), 1), (nn.Conv1d, (4, 6, 7), 2)])
def test_conv_init_statistics_follow_torch(cls, args, groups):
    ag.manual_seed(0)
    m = cls(*args, groups=groups)
    fan_in = (args[0] // groups) * math.prod(m.kernel_size)
    bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    w = np.concatenate([cls(*args, groups=groups).weight.numpy().ravel() for _ in range(20)])
    assert np.abs(w).max() <= bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.05 * bound
    assert abs(w.mean()) < 0.05 * bound
    assert np.abs(m.bias.numpy()).max() <= bound


def test_bad_shapes_raise_naming_them():
    x = ag.randn(2, 3, 5, 5)
    with pytest.raises(ValueError, match=r"\(2, 3, 5, 5\).*3 channels.*\(4, 2, 3, 3\).*expects 2"):
        F.conv2d(x, ag.randn(4, 2, 3, 3))
    with pytest.raises(ValueError, match=r"weight must be 4-D.*\(4, 3, 3\)"):
        F.conv2d(x, ag.randn(4, 3, 3))
    with pytest.raises(ValueError, match=r"3-D \(unbatched\) or 4-D.*\(5, 5\)"):
        F.conv2d(ag.randn(5, 5), ag.randn(4, 3, 3, 3))
    with pytest.raises(ValueError, match=r"does not fit.*\(2, 3, 5, 5\)"):
        F.conv2d(x, ag.randn(4, 3, 6, 6))
    with pytest.raises(ValueError, match=r"bias of shape \(3,\).*\(4, 3, 3, 3\)"):
        F.conv2d(x, ag.randn(4, 3, 3, 3), ag.randn(3))
    with pytest.raises(ValueError, match="divisible by groups"):
        F.conv2d(x, ag.randn(4, 1, 3, 3), groups=3)
    with pytest.raises(ValueError, match="'same' is not supported for strided"):
        F.conv2d(x, ag.randn(4, 3, 3, 3), padding="same", stride=2)
    with pytest.raises(TypeError, match="same dtype"):
        F.conv2d(x, ag.randn(4, 3, 3, 3, dtype=np.float64 if x.data.dtype != np.float64 else np.float32))
    with pytest.raises(ValueError, match="at most half"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match=r"3-D \(unbatched\) or 4-D.*\(5,\)"):
        F.avg_pool2d(ag.randn(5), 2)
    with pytest.raises(NotImplementedError, match="ceil_mode"):
        F.max_pool2d(x, 2, ceil_mode=True)
    with pytest.raises(NotImplementedError, match="count_include_pad"):
        F.avg_pool2d(x, 2, count_include_pad=False)
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(NotImplementedError, match="padding_mode"):
        nn.Conv2d(3, 4, 3, padding_mode="reflect")


def test_inplace_change_of_saved_input_raises():
    x = ag.randn(1, 2, 5, 5, requires_grad=True)
    h = x * 1.0
    y = F.conv2d(h, ag.randn(3, 2, 3, 3))
    with ag.no_grad():
        h.add_(1.0)
    with pytest.raises(RuntimeError):
        y.sum().backward()
