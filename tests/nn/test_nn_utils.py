"""nn.utils gradient clipping against torch.nn.utils."""
import math

import numpy as np
import pytest
from nn_testing import ag64, rng, th64

from xpgrad import autograd as ag
from xpgrad import nn
from xpgrad.nn.utils import clip_grad_norm_, clip_grad_value_

torch = pytest.importorskip("torch")


def _params_with_grads(seed=0, scale=1.0):
    r = rng(seed)
    shapes = [(3, 4), (4,), (2, 2, 2)]
    grads = [r.standard_normal(s) * scale for s in shapes]
    ours, theirs = [], []
    for g in grads:
        p = nn.Parameter(ag64(np.zeros(g.shape)))
        p.grad = ag64(g)
        ours.append(p)
        tp = torch.zeros(g.shape, dtype=torch.float64, requires_grad=True)
        tp.grad = th64(torch, g)
        theirs.append(tp)
    return ours, theirs


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    ours, theirs = _params_with_grads()
    grad_arrays = [p.grad.data for p in ours]
    total = clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    assert isinstance(total, ag.Tensor) and total.shape == () and total.device is ours[0].device
    np.testing.assert_allclose(total.numpy(), ttotal.numpy(), rtol=1e-12)
    for p, tp, arr in zip(ours, theirs, grad_arrays):
        assert p.grad.data is arr  # scaled in place
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-12)


def test_clip_grad_norm_returns_norm_before_clipping_and_skips_missing_grads():
    ours, _ = _params_with_grads(scale=10.0)
    extra = nn.Parameter(ag64(np.zeros(3)))  # no grad: ignored
    expected = math.sqrt(sum((p.grad.numpy() ** 2).sum() for p in ours))
    total = clip_grad_norm_(ours + [extra], 1.0)
    np.testing.assert_allclose(total.numpy(), expected, rtol=1e-12)
    clipped = math.sqrt(sum((p.grad.numpy() ** 2).sum() for p in ours))
    np.testing.assert_allclose(clipped, 1.0, rtol=1e-5)
    assert extra.grad is None
    assert clip_grad_norm_([extra], 1.0).numpy() == 0.0


def test_clip_grad_norm_accepts_a_single_tensor_and_a_generator():
    p = nn.Parameter(ag64(np.zeros(2)))
    p.grad = ag64([3.0, 4.0])
    np.testing.assert_allclose(clip_grad_norm_(p, 1.0).numpy(), 5.0)
    np.testing.assert_allclose(p.grad.numpy(), [0.6, 0.8], rtol=1e-6)
    model = nn.Linear(3, 2)
    model(ag.randn(4, 3)).sum().backward()
    total = clip_grad_norm_(model.parameters(), 0.1)
    assert total.dtype == np.float32
    grads = np.concatenate([q.grad.numpy().ravel() for q in model.parameters()])
    assert np.linalg.norm(grads) <= 0.1 * (1 + 1e-5)


def test_clip_grad_norm_nonfinite():
    p = nn.Parameter(ag64(np.zeros(2)))
    p.grad = ag64([np.inf, 1.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(p, 1.0, error_if_nonfinite=True)


def test_clip_grad_value_matches_torch():
    ours, theirs = _params_with_grads(seed=1)
    arrays = [p.grad.data for p in ours]
    assert clip_grad_value_(ours, 0.5) is None
    torch.nn.utils.clip_grad_value_(theirs, 0.5)
    for p, tp, arr in zip(ours, theirs, arrays):
        assert p.grad.data is arr
        np.testing.assert_array_equal(p.grad.numpy(), tp.grad.numpy())
    with pytest.raises(ValueError):
        clip_grad_value_(ours, -1.0)


def test_clip_grad_norm_of_half_precision_gradients_does_not_overflow():
    p = nn.Parameter(ag.zeros(1000, dtype=ag.float16))
    p.grad = ag.full((1000,), 300.0, dtype=ag.float16)  # 300**2 overflows float16
    total = clip_grad_norm_(p, 1.0)
    np.testing.assert_allclose(total.numpy(), 300.0 * math.sqrt(1000), rtol=1e-3)
    assert p.grad.dtype == np.float16
    np.testing.assert_allclose(np.linalg.norm(p.grad.numpy().astype(np.float64)), 1.0, rtol=1e-2)
