"""Post-accumulate-grad hooks and end-of-backward callbacks (what data-parallel training builds on)."""
import gc

import numpy as np
import pytest
import torch

from xpgrad import autograd as ag
from xpgrad.autograd import hooks as hooks_module


def leaf(values):
    return ag.tensor(np.asarray(values, dtype=np.float64), requires_grad=True)


def test_hook_runs_once_after_the_last_contribution():
    w = leaf([1.0, 2.0])
    seen = []
    w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.numpy().copy()))
    # w reaches the loss through three paths: the hook must see the complete sum, once.
    y = (w * 3.0).sum() + (w * w).sum() + ag.tanh(w).sum()
    y.backward()
    expected = 3.0 + 2 * np.array([1.0, 2.0]) + (1 - np.tanh([1.0, 2.0]) ** 2)
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], expected, rtol=1e-12)


def test_hook_order_follows_gradient_completion_like_torch():
    order, torch_order = [], []
    a, b = leaf([1.0]), leaf([2.0])
    a.register_post_accumulate_grad_hook(lambda t: order.append("a"))
    b.register_post_accumulate_grad_hook(lambda t: order.append("b"))
    ((ag.exp(a) * 2.0).sum() * b.sum()).backward()  # b's gradient completes before a's

    ta = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    tb = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    ta.register_post_accumulate_grad_hook(lambda t: torch_order.append("a"))
    tb.register_post_accumulate_grad_hook(lambda t: torch_order.append("b"))
    ((torch.exp(ta) * 2.0).sum() * tb.sum()).backward()
    assert order == torch_order == ["b", "a"]


def test_hook_runs_per_backward_and_sees_accumulation():
    w = leaf([1.0])
    seen = []
    w.register_post_accumulate_grad_hook(lambda t: seen.append(float(t.grad.item())))
    (w * 2.0).sum().backward()
    (w * 2.0).sum().backward()
    assert seen == [2.0, 4.0]


def test_hook_fires_when_a_backward_returns_no_gradient_for_the_leaf():
    class FirstOnly(ag.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a.data + b.data

        @staticmethod
        def backward(ctx, g):
            return g, None

    a, b = leaf([1.0]), leaf([2.0])
    fired = []
    b.register_post_accumulate_grad_hook(lambda t: fired.append(t.grad))
    FirstOnly.apply(a, b).sum().backward()
    assert fired == [None]  # it ran (nothing more will come), and b got no gradient


def test_hook_on_a_root_leaf_and_removal():
    w = leaf([3.0])
    calls = []
    handle = w.register_post_accumulate_grad_hook(lambda t: calls.append(1))
    w.backward(ag.ones_like(w))
    assert calls == [1]
    handle.remove()
    handle.remove()  # idempotent
    w.backward(ag.ones_like(w))
    assert calls == [1]


def test_ag_grad_does_not_run_the_hooks():
    w = leaf([1.0])
    calls = []
    w.register_post_accumulate_grad_hook(lambda t: calls.append(1))
    ag.grad((w * w).sum(), w)
    assert calls == []


def test_hooks_only_on_leaves_that_require_grad():
    w = leaf([1.0])
    with pytest.raises(RuntimeError, match="only for leaf tensors"):
        (w * 2).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(RuntimeError, match="does not require grad"):
        ag.tensor([1.0]).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(TypeError, match="callable"):
        w.register_post_accumulate_grad_hook(3)


def test_registered_count_returns_to_zero_when_hooked_tensors_die():
    before = hooks_module._registered[0]
    w = leaf([1.0])
    w.register_post_accumulate_grad_hook(lambda t: None)
    assert hooks_module._registered[0] == before + 1
    del w
    gc.collect()
    assert hooks_module._registered[0] == before


def test_queue_callback_runs_after_backward_in_order():
    w = leaf([1.0, 2.0])
    events = []

    def hook(t):
        events.append("hook")
        ag.queue_callback(lambda: events.append(("callback", t.grad.tolist())))

    w.register_post_accumulate_grad_hook(hook)
    (w * w).sum().backward()
    assert events == ["hook", ("callback", [2.0, 4.0])]


def test_queue_callback_outside_backward_raises():
    with pytest.raises(RuntimeError, match="while a backward runs"):
        ag.queue_callback(lambda: None)


def test_callbacks_do_not_run_after_a_failed_backward():
    w = leaf([1.0])
    events = []

    def hook(t):
        ag.queue_callback(lambda: events.append("callback"))
        raise ValueError("hook failed")

    w.register_post_accumulate_grad_hook(hook)
    with pytest.raises(ValueError, match="hook failed"):
        (w * 2.0).sum().backward()
    assert events == []
    ag.tensor([1.0], requires_grad=True).sum().backward()  # the callback stack is clean again
