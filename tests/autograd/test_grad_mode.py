"""Grad mode switches: no_grad, enable_grad, set_grad_enabled; thread-locality; anomaly mode flag."""
import gc
import threading

import numpy as np
import pytest

from xpgrad import autograd as ag
from xpgrad.autograd.function import Context


def _leaf():
    return ag.tensor([1.0, 2.0], requires_grad=True)


def _live_nodes():
    return sum(1 for o in gc.get_objects() if type(o) is Context)


def test_no_grad_records_nothing():
    x = _leaf()
    before = _live_nodes()
    with ag.no_grad():
        assert not ag.is_grad_enabled()
        ys = [x * 2.0, ag.exp(x), (x @ x), x.sum(), x[0], x.reshape(2, 1), ag.tanh(x) + x]
        for y in ys:
            assert y.grad_fn is None and not y.requires_grad and y.is_leaf
    assert _live_nodes() == before
    assert ag.is_grad_enabled()


def test_no_grad_results_are_constants_later():
    x = _leaf()
    with ag.no_grad():
        c = x * 3.0
    (c * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 6.0])


def test_no_grad_as_decorator():
    x = _leaf()

    @ag.no_grad()
    def f(t):
        assert not ag.is_grad_enabled()
        return t * 2.0

    y = f(x)
    assert y.grad_fn is None and not y.requires_grad
    assert ag.is_grad_enabled()
    assert f.__name__ == "f"


def test_no_grad_as_bare_decorator():
    x = _leaf()

    @ag.no_grad
    def f(t):
        return t * 2.0

    assert f(x).grad_fn is None
    assert ag.is_grad_enabled()


def test_decorated_function_restores_mode_on_exception():
    @ag.no_grad()
    def boom():
        raise KeyError("x")

    with pytest.raises(KeyError):
        boom()
    assert ag.is_grad_enabled()


def test_context_restores_mode_on_exception():
    with pytest.raises(ZeroDivisionError):
        with ag.no_grad():
            1 / 0
    assert ag.is_grad_enabled()


def test_enable_grad_inside_no_grad():
    x = _leaf()
    with ag.no_grad():
        with ag.enable_grad():
            assert ag.is_grad_enabled()
            y = x * 2.0
        assert not ag.is_grad_enabled()
        z = x * 2.0
    assert y.grad_fn is not None and y.requires_grad
    assert z.grad_fn is None


def test_enable_grad_as_decorator_inside_no_grad():
    @ag.enable_grad()
    def f(t):
        return t * 2.0

    with ag.no_grad():
        y = f(_leaf())
    assert y.requires_grad


def test_nested_no_grad_restores_outer_state():
    with ag.no_grad():
        with ag.no_grad():
            pass
        assert not ag.is_grad_enabled()
    assert ag.is_grad_enabled()


def test_set_grad_enabled_as_plain_call():
    try:
        ag.set_grad_enabled(False)
        assert not ag.is_grad_enabled()
        assert (_leaf() * 2.0).grad_fn is None
        ag.set_grad_enabled(True)
        assert ag.is_grad_enabled()
    finally:
        ag.set_grad_enabled(True)


@pytest.mark.parametrize("flag", [False, True])
def test_set_grad_enabled_as_context_manager(flag):
    with ag.no_grad():
        with ag.set_grad_enabled(flag):
            assert ag.is_grad_enabled() is flag
            y = _leaf() * 2.0
        assert not ag.is_grad_enabled()
    assert ag.is_grad_enabled()
    assert (y.grad_fn is not None) is flag


def test_set_grad_enabled_as_decorator():
    @ag.set_grad_enabled(False)
    def f():
        return ag.is_grad_enabled()

    # The call above switched the mode at once (plain-call semantics); restore it first.
    ag.set_grad_enabled(True)
    assert f() is False
    assert ag.is_grad_enabled()


def test_backward_works_inside_no_grad():
    x = _leaf()
    y = (x * x).sum()
    with ag.no_grad():
        y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])


def test_backward_does_not_change_grad_mode():
    x = _leaf()
    (x * x).sum().backward()
    assert ag.is_grad_enabled()
    ag.grad((x * x).sum(), x, create_graph=True)
    assert ag.is_grad_enabled()
    with ag.no_grad():
        with ag.enable_grad():
            y = (x * x).sum()
        ag.grad(y, x, create_graph=True)
        assert not ag.is_grad_enabled()


def test_grad_mode_is_thread_local():
    x = _leaf()
    entered = threading.Event()
    release = threading.Event()
    seen = {}

    def worker():
        with ag.no_grad():
            seen["worker_inside"] = ag.is_grad_enabled()
            entered.set()
            release.wait(10)
            seen["worker_record"] = (x * 2.0).grad_fn is not None

    t = threading.Thread(target=worker)
    t.start()
    try:
        assert entered.wait(10)
        # The other thread is inside no_grad; this one must still record.
        assert ag.is_grad_enabled()
        y = x * 2.0
        assert y.grad_fn is not None
    finally:
        release.set()
        t.join(10)
    assert seen == {"worker_inside": False, "worker_record": False}


def test_new_thread_starts_with_grad_enabled_even_under_no_grad():
    x = _leaf()
    seen = {}

    def worker():
        seen["enabled"] = ag.is_grad_enabled()
        seen["record"] = (x * 2.0).grad_fn is not None
        seen["anomaly"] = ag.is_anomaly_enabled()

    with ag.no_grad(), ag.detect_anomaly():
        t = threading.Thread(target=worker)
        t.start()
        t.join(10)
    assert seen == {"enabled": True, "record": True, "anomaly": False}


def test_detect_anomaly_flag_and_decorator():
    assert not ag.is_anomaly_enabled()
    with ag.detect_anomaly():
        assert ag.is_anomaly_enabled()
    assert not ag.is_anomaly_enabled()

    @ag.detect_anomaly()
    def f():
        return ag.is_anomaly_enabled()

    assert f() is True
    assert not ag.is_anomaly_enabled()
