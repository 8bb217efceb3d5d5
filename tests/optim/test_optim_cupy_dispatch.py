"""The fused-kernel dispatch of Adam/AdamW, SGD (momentum) and cross entropy's backward, without a GPU.

``cupy_kernels.is_cupy_array`` is patched to say yes and each fused helper is replaced by a NumPy
implementation of its contract (the kernel bodies' math, in place on the same arrays), so a step through
the dispatch must equal the ordinary array-module step, and the fake must have been called. On the CPU, the
real helpers also run through the dispatch with their kernel bodies compiled for the host (as in
tests/backends/test_cupy.py), which checks the calls against the helpers' actual signatures.
"""
from __future__ import annotations

import importlib.util
import math
import shutil
import types
from pathlib import Path

import numpy as np
import pytest

from xpgrad import autograd as ag
from xpgrad.nn import functional as F
from xpgrad import optim
from xpgrad.backends import cupy_kernels
from optim_testing import (ADAM_CONFIGS, SGD_CONFIGS, ag_params, config_id, gradient_stream, initial_values, make,
                           set_grads)

TOL = {"rtol": 1e-12, "atol": 1e-12}
N_STEPS = 8


class _Device:
    """Moves the fakes' arrays between the suite's device and the host, explicitly (as a test may)."""

    def __init__(self) -> None:
        self.backend = ag.zeros(1).device.backend

    def host(self, a):
        return self.backend.to_numpy(a).copy() if not isinstance(a, (int, float)) else a

    def put(self, target, value) -> None:
        target[...] = self.backend.asarray(np.asarray(value, dtype=target.dtype))


def _check_dtypes(*arrays) -> None:
    first = arrays[0]
    assert all(a.dtype == first.dtype and a.shape == first.shape for a in arrays if a is not None)


class FakeKernels:
    """NumPy versions of the fused helpers' contracts; they count their calls."""

    def __init__(self) -> None:
        self.dev = _Device()
        self.calls = {"adam": 0, "sgd": 0, "xent": 0}

    def adam_update(self, param, grad, exp_avg, exp_avg_sq, *, lr, beta1, beta2, eps, step, weight_decay=0.0,
                    decoupled_weight_decay=False, max_exp_avg_sq=None):
        self.calls["adam"] += 1
        _check_dtypes(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq)
        assert step >= 1 and isinstance(step, float)
        h = self.dev.host
        p, g, m, v = h(param), h(grad), h(exp_avg), h(exp_avg_sq)
        if decoupled_weight_decay:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = m + (1 - beta1) * (g - m)
        v = beta2 * v + (1 - beta2) * g * g
        vhat = v
        if max_exp_avg_sq is not None:
            vhat = np.maximum(h(max_exp_avg_sq), v)
            self.dev.put(max_exp_avg_sq, vhat)
        denom = np.sqrt(vhat) / math.sqrt(1 - beta2**step) + eps
        self.dev.put(exp_avg, m)
        self.dev.put(exp_avg_sq, v)
        self.dev.put(param, p - (lr / (1 - beta1**step)) * m / denom)

    def sgd_momentum_update(self, param, grad, momentum_buffer, *, lr, momentum, dampening=0.0, weight_decay=0.0,
                            nesterov=False, first_step=False):
        self.calls["sgd"] += 1
        _check_dtypes(param, grad, momentum_buffer)
        h = self.dev.host
        p = h(param)
        d = h(grad) + weight_decay * p
        b = d if first_step else momentum * h(momentum_buffer) + (1 - dampening) * d
        self.dev.put(momentum_buffer, b)
        self.dev.put(param, p - lr * (d + momentum * b if nesterov else b))

    def softmax_cross_entropy_backward(self, probs, target, scale, *, label_smoothing=0.0, ignore_index=-100):
        self.calls["xent"] += 1
        h = self.dev.host
        p, t, s = h(probs), h(target), np.asarray(h(scale), dtype=np.float64)
        n, c = p.shape
        assert t.shape == (n,) and t.dtype.kind in "iu"
        if s.ndim == 1:
            s = s.reshape(n, 1)
        q = label_smoothing / c + np.where(np.arange(c) == t[:, None], 1 - label_smoothing, 0.0)
        out = np.where((t == ignore_index)[:, None], 0.0, (p - q) * s).astype(p.dtype)
        return self.dev.backend.asarray(out)


def _refuse(*args, **kwargs):
    raise AssertionError("the fused path was taken where it must not be")


@pytest.fixture
def fused(monkeypatch) -> FakeKernels:
    """Arrays look like CuPy's; the fused helpers are the NumPy fakes."""
    fake = FakeKernels()
    monkeypatch.setattr(cupy_kernels, "is_cupy_array", lambda a: True)
    for name in ("adam_update", "sgd_momentum_update", "softmax_cross_entropy_backward"):
        monkeypatch.setattr(cupy_kernels, name, getattr(fake, name))
    return fake


@pytest.fixture
def no_fused(monkeypatch) -> None:
    """The real is_cupy_array (nothing here is a CuPy array); a fused helper called anyway fails the test."""
    for name in ("adam_update", "sgd_momentum_update", "softmax_cross_entropy_backward"):
        monkeypatch.setattr(cupy_kernels, name, _refuse)


def _train(config, n_steps: int = N_STEPS):
    name, kwargs = config
    params = ag_params(initial_values())
    opt = make(name, params, **kwargs)
    for grads in gradient_stream(n_steps):
        set_grads(params, grads)
        opt.step()
    return params, opt


def _n_updates(n_steps: int = N_STEPS) -> int:
    return sum(g is not None for grads in gradient_stream(n_steps) for g in grads)


def _assert_same_run(got, want) -> None:
    (params, opt), (ref_params, ref_opt) = got, want
    for p, r in zip(params, ref_params):
        np.testing.assert_allclose(p.numpy(), r.numpy(), **TOL)
    sd, ref_sd = opt.state_dict(), ref_opt.state_dict()
    assert sd["param_groups"] == ref_sd["param_groups"]
    assert sd["state"].keys() == ref_sd["state"].keys()
    for idx, entry in ref_sd["state"].items():
        assert entry.keys() == sd["state"][idx].keys()  # same state layout: state dicts move across devices
        for key, value in entry.items():
            if isinstance(value, ag.Tensor):
                assert sd["state"][idx][key].dtype == value.dtype
                np.testing.assert_allclose(sd["state"][idx][key].numpy(), value.numpy(), **TOL)
            else:
                assert sd["state"][idx][key] == value


MOMENTUM_CONFIGS = [c for c in SGD_CONFIGS if c[1].get("momentum", 0) != 0]
PLAIN_SGD_CONFIGS = [c for c in SGD_CONFIGS if c[1].get("momentum", 0) == 0]


@pytest.mark.parametrize("config", ADAM_CONFIGS + MOMENTUM_CONFIGS, ids=config_id)
def test_a_step_through_the_fused_kernel_equals_the_array_step(config, monkeypatch):
    want = _train(config)  # before patching: the ordinary update
    fake = FakeKernels()
    monkeypatch.setattr(cupy_kernels, "is_cupy_array", lambda a: True)
    monkeypatch.setattr(cupy_kernels, "adam_update", fake.adam_update)
    monkeypatch.setattr(cupy_kernels, "sgd_momentum_update", fake.sgd_momentum_update)
    got = _train(config)
    _assert_same_run(got, want)
    kind = "sgd" if config[0] == "SGD" else "adam"
    assert fake.calls[kind] == _n_updates(), "the fused kernel was not used for every update"
    assert sum(fake.calls.values()) == fake.calls[kind]


@pytest.mark.parametrize("config", PLAIN_SGD_CONFIGS, ids=config_id)
def test_sgd_without_momentum_keeps_the_array_update(config, fused):
    want_params = [p.numpy() for p in _train(config)[0]]
    assert fused.calls["sgd"] == 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cupy_kernels, "is_cupy_array", lambda a: False)
        ref = [p.numpy() for p in _train(config)[0]]
    for p, r in zip(want_params, ref):
        np.testing.assert_array_equal(p, r)


@pytest.mark.parametrize("config", ADAM_CONFIGS[:3] + MOMENTUM_CONFIGS[:2], ids=config_id)
def test_arrays_that_are_not_cupy_never_take_the_fused_path(config, no_fused):
    _train(config, n_steps=2)


def test_state_saved_on_the_fused_path_continues_on_the_array_path(monkeypatch):
    config = ("Adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1})
    want = _train(config, n_steps=6)
    fake = FakeKernels()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cupy_kernels, "is_cupy_array", lambda a: True)
        mp.setattr(cupy_kernels, "adam_update", fake.adam_update)
        params, opt = _train(config, n_steps=3)
    assert fake.calls["adam"] > 0
    saved = opt.state_dict()
    opt2 = make(config[0], params, **config[1])
    opt2.load_state_dict(saved)
    for grads in gradient_stream(6)[3:]:
        set_grads(params, grads)
        opt2.step()
    _assert_same_run((params, opt2), want)


def test_an_update_swapped_in_by_a_subclass_is_not_bypassed(fused):
    seen = []

    class MyAdam(optim.Adam):
        @staticmethod
        def _kernel(param, grad, *args, **kwargs):
            seen.append(kwargs["step"])

    params = ag_params(initial_values())
    opt = MyAdam(params, lr=0.1)
    set_grads(params, [np.ones(p.shape) for p in params])
    opt.step()
    assert seen == [1.0, 1.0] and fused.calls["adam"] == 0


# -- cross entropy's backward -------------------------------------------------------------------------------

def _xent_grad(logits: np.ndarray, target: np.ndarray, upstream=None, **kwargs) -> np.ndarray:
    x = ag.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(x, ag.tensor(target), **kwargs)
    loss.backward(None if upstream is None else ag.tensor(upstream))
    return x.grad.numpy()


XENT_CASES = [
    {},
    {"reduction": "sum"},
    {"reduction": "none"},
    {"label_smoothing": 0.2},
    {"label_smoothing": 0.1, "reduction": "none"},
    {"ignore_index": 3},
    {"ignore_index": None},
]


@pytest.mark.parametrize("kwargs", XENT_CASES, ids=repr)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cross_entropy_backward_through_the_fused_kernel_equals_the_array_backward(kwargs, dtype, monkeypatch):
    rng = np.random.default_rng(5)
    n, c = 9, 5
    logits = (rng.standard_normal((n, c)) * 3).astype(dtype)
    target = rng.integers(0, c, n)
    ignore_index = kwargs.get("ignore_index", -100)
    target[[2, 6]] = 0 if ignore_index is None else ignore_index  # rows that do not count, where any do
    upstream = rng.standard_normal(n).astype(dtype) if kwargs.get("reduction") == "none" else None
    want = _xent_grad(logits, target, upstream, **kwargs)
    fake = FakeKernels()
    monkeypatch.setattr(cupy_kernels, "is_cupy_array", lambda a: True)
    monkeypatch.setattr(cupy_kernels, "softmax_cross_entropy_backward", fake.softmax_cross_entropy_backward)
    # On a CuPy device cross_entropy never takes its CPU-only plain path (it would read the targets back).
    monkeypatch.setattr(F, "_plain_targets", lambda *args: False)
    got = _xent_grad(logits, target, upstream, **kwargs)
    assert fake.calls["xent"] == 1
    assert got.dtype == dtype
    tol = TOL if dtype == np.float64 else {"rtol": 1e-5, "atol": 1e-6}
    np.testing.assert_allclose(got, want, **tol)
    if ignore_index is not None:
        np.testing.assert_array_equal(got[[2, 6]], 0.0)


def test_cross_entropy_cases_the_kernel_does_not_cover_keep_the_array_backward(fused):
    rng = np.random.default_rng(6)
    logits = rng.standard_normal((4, 3))
    target = np.array([0, 2, 1, 1])
    _xent_grad(logits, target, weight=ag.tensor(np.array([0.5, 1.0, 2.0])))  # class weights
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    _xent_grad(logits, probs)  # probability targets
    _xent_grad(rng.standard_normal((2, 3, 4)), rng.integers(0, 3, (2, 4)))  # (N, C, d) logits
    _xent_grad(rng.standard_normal(3), np.array(1))  # (C,) logits
    x = ag.tensor(logits, requires_grad=True)  # create_graph: the Tensor path, for higher order
    ag.grad(F.cross_entropy(x, ag.tensor(target)), [x], create_graph=True)
    assert fused.calls["xent"] == 0


def test_cross_entropy_backward_never_fuses_arrays_that_are_not_cupy(no_fused):
    rng = np.random.default_rng(7)
    _xent_grad(rng.standard_normal((5, 4)), rng.integers(0, 4, 5), label_smoothing=0.1)


# -- the real helpers, kernel bodies compiled for the host ---------------------------------------------------

@pytest.fixture
def host_compiled(monkeypatch):
    """The real fused helpers on NumPy arrays, their kernels compiled by g++ with test_cupy.py's harness."""
    if shutil.which("g++") is None:
        pytest.skip("no C++ compiler (g++) to run the kernel sources on the host")
    path = Path(__file__).resolve().parents[1] / "backends" / "test_cupy.py"
    spec = importlib.util.spec_from_file_location("_xpgrad_test_cupy_harness", path)
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    monkeypatch.setattr(cupy_kernels, "_kernel",
                        lambda kind, dtype: harness._HostKernel(cupy_kernels.kernel_spec(kind, dtype)))
    fake_cupy = types.SimpleNamespace(ndarray=np.ndarray, empty=np.empty, int64=np.int64)
    monkeypatch.setattr(cupy_kernels, "_cupy", lambda: fake_cupy)
    calls: list[str] = []

    def counted(name, real):
        def helper(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)
        return helper

    for name in ("adam_update", "sgd_momentum_update", "softmax_cross_entropy_backward"):
        monkeypatch.setattr(cupy_kernels, name, counted(name, getattr(cupy_kernels, name)))
    return calls


@pytest.mark.cpu_only  # the host-compiled kernels take NumPy arrays' memory
def test_the_real_helpers_through_the_dispatch_equal_the_array_path(host_compiled, monkeypatch):
    configs = ADAM_CONFIGS + MOMENTUM_CONFIGS
    want = [_train(c) for c in configs]
    rng = np.random.default_rng(8)
    logits, target = rng.standard_normal((6, 4)), np.array([0, 3, -100, 1, 1, 2])
    want_xent = [_xent_grad(logits.astype(dt), target, label_smoothing=0.1) for dt in (np.float64, np.float32)]
    monkeypatch.setattr(cupy_kernels, "is_cupy_array", lambda a: True)
    for config, ref in zip(configs, want):
        _assert_same_run(_train(config), ref)
    for dt, ref in zip((np.float64, np.float32), want_xent):
        got = _xent_grad(logits.astype(dt), target, label_smoothing=0.1)
        assert got.dtype == dt
        np.testing.assert_allclose(got, ref, **(TOL if dt == np.float64 else {"rtol": 1e-5, "atol": 1e-6}))
    assert host_compiled.count("adam_update") == len(ADAM_CONFIGS) * _n_updates()
    assert host_compiled.count("sgd_momentum_update") == len(MOMENTUM_CONFIGS) * _n_updates()
    assert host_compiled.count("softmax_cross_entropy_backward") == 2
