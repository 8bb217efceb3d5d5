"""Fused-kernel dispatch through ``Backend.fused``: Adam/AdamW, SGD with momentum and cross entropy's backward.

The callers ask the parameters' (or logits') backend for a kernel by kind and keep their array code where
it answers None. Here a third-party backend registered for its own device type, ``FAKE`` (the stand-in's
strict arrays), answers with NumPy versions of the kernels' contracts that record their calls, so a step
through the hook must equal the ordinary array step on the suite's device, and the kernels must have been
called. The real CuPy helpers also run through the hook, as ``CupyBackend.fused`` returns them, with their
kernel bodies compiled for the host (as in tests/backends/test_cupy.py), which checks the calls against the
helpers' actual signatures.
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
from xpgrad import backends, optim
from xpgrad.backends import NumpyBackend, cupy_kernels
from xpgrad.backends.cupy_backend import CupyBackend
from xpgrad.backends.testing.standin import StandinBackend
from xpgrad.nn import functional as F
from optim_testing import ADAM_CONFIGS, SGD_CONFIGS, config_id, gradient_stream, initial_values, make, set_grads

TOL = {"rtol": 1e-12, "atol": 1e-12}
N_STEPS = 8
FAKE = "fusedgpu"  # the device type the test backends serve
KINDS = ("adam", "sgd_momentum", "softmax_cross_entropy_backward")


def _check_dtypes(*arrays) -> None:
    first = arrays[0]
    assert all(a.dtype == first.dtype and a.shape == first.shape for a in arrays if a is not None)


class FakeKernels:
    """NumPy versions of the fused kernels' contracts, on ``backend``'s arrays; they count their calls."""

    def __init__(self) -> None:
        self.backend = None  # set once the backend holding these kernels exists
        self.calls = {kind: 0 for kind in KINDS}

    def host(self, a):
        return self.backend.to_numpy(a).copy() if not isinstance(a, (int, float)) else a

    def put(self, target, value) -> None:
        target[...] = self.backend.asarray(np.asarray(value, dtype=target.dtype))

    def adam(self, param, grad, exp_avg, exp_avg_sq, *, lr, beta1, beta2, eps, step, weight_decay=0.0,
             decoupled_weight_decay=False, max_exp_avg_sq=None):
        self.calls["adam"] += 1
        _check_dtypes(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq)
        assert step >= 1 and isinstance(step, float)
        h = self.host
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
            self.put(max_exp_avg_sq, vhat)
        denom = np.sqrt(vhat) / math.sqrt(1 - beta2**step) + eps
        self.put(exp_avg, m)
        self.put(exp_avg_sq, v)
        self.put(param, p - (lr / (1 - beta1**step)) * m / denom)

    def sgd_momentum(self, param, grad, momentum_buffer, *, lr, momentum, dampening=0.0, weight_decay=0.0,
                     nesterov=False, first_step=False):
        self.calls["sgd_momentum"] += 1
        _check_dtypes(param, grad, momentum_buffer)
        h = self.host
        p = h(param)
        d = h(grad) + weight_decay * p
        b = d if first_step else momentum * h(momentum_buffer) + (1 - dampening) * d
        self.put(momentum_buffer, b)
        self.put(param, p - lr * (d + momentum * b if nesterov else b))

    def softmax_cross_entropy_backward(self, probs, target, scale, *, label_smoothing=0.0, ignore_index=-100):
        self.calls["softmax_cross_entropy_backward"] += 1
        h = self.host
        p, t, s = h(probs), h(target), np.asarray(h(scale), dtype=np.float64)
        n, c = p.shape
        assert t.shape == (n,) and t.dtype.kind in "iu"
        if s.ndim == 1:
            s = s.reshape(n, 1)
        q = label_smoothing / c + np.where(np.arange(c) == t[:, None], 1 - label_smoothing, 0.0)
        out = np.where((t == ignore_index)[:, None], 0.0, (p - q) * s).astype(p.dtype)
        return self.backend.asarray(out)


def _refuse(*args, **kwargs):
    raise AssertionError("the fused path was taken where it must not be")


class ThirdPartyBackend(StandinBackend):
    """A backend from outside the project, as the engine sees one: registered, with kernels of its own
    behind ``fused``. It records every lookup."""

    name = "fused-test"
    device_type = FAKE

    def __init__(self, kernels=None) -> None:
        super().__init__(fused=kernels)
        self.lookups: list[str] = []

    def fused(self, kind: str):
        self.lookups.append(kind)
        return super().fused(kind)


@pytest.fixture
def plug_in():
    """``plug_in(kernels)`` registers a :class:`ThirdPartyBackend` for ``FAKE``; unregistered afterwards."""
    registered = []

    def register(kernels=None) -> ThirdPartyBackend:
        backend = ThirdPartyBackend(kernels)
        backends.register(backend.name, backend, device_type=FAKE)
        registered.append(backend.name)
        return backend

    yield register
    for name in registered:
        backends.unregister(name)


@pytest.fixture
def fused(plug_in) -> tuple[FakeKernels, ThirdPartyBackend]:
    """``FAKE``'s backend hands out the recording NumPy kernels."""
    fake = FakeKernels()
    backend = fake.backend = plug_in({kind: getattr(fake, kind) for kind in KINDS})
    return fake, backend


@pytest.fixture
def refusing(plug_in) -> ThirdPartyBackend:
    """``FAKE``'s backend hands out kernels that fail the test when called."""
    return plug_in({kind: _refuse for kind in KINDS})


def _params(device=None, dtype=np.float64, values=None) -> list[ag.Tensor]:
    values = initial_values() if values is None else values
    return [ag.tensor(np.asarray(v, dtype=dtype), requires_grad=True, device=device) for v in values]


def _train(config, device=None, n_steps: int = N_STEPS, grad_dtype=None):
    name, kwargs = config
    params = _params(device)
    opt = make(name, params, **kwargs)
    for grads in gradient_stream(n_steps):
        set_grads(params, grads, dtype=grad_dtype)
        opt.step()
    return params, opt


def _n_updates(n_steps: int = N_STEPS) -> int:
    return sum(g is not None for grads in gradient_stream(n_steps) for g in grads)


def _assert_same_run(got, want, exact: bool = False) -> None:
    (params, opt), (ref_params, ref_opt) = got, want
    same = np.testing.assert_array_equal if exact else lambda a, b: np.testing.assert_allclose(a, b, **TOL)
    for p, r in zip(params, ref_params):
        assert p.dtype == r.dtype
        same(p.numpy(), r.numpy())
    sd, ref_sd = opt.state_dict(), ref_opt.state_dict()
    assert sd["param_groups"] == ref_sd["param_groups"]
    assert sd["state"].keys() == ref_sd["state"].keys()
    for idx, entry in ref_sd["state"].items():
        assert entry.keys() == sd["state"][idx].keys()  # same state layout: state dicts move across devices
        for key, value in entry.items():
            if isinstance(value, ag.Tensor):
                assert sd["state"][idx][key].dtype == value.dtype
                same(sd["state"][idx][key].numpy(), value.numpy())
            else:
                assert sd["state"][idx][key] == value


MOMENTUM_CONFIGS = [c for c in SGD_CONFIGS if c[1].get("momentum", 0) != 0]
PLAIN_SGD_CONFIGS = [c for c in SGD_CONFIGS if c[1].get("momentum", 0) == 0]


def _kind(config) -> str:
    return "sgd_momentum" if config[0] == "SGD" else "adam"


# -- optimizers ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("config", ADAM_CONFIGS + MOMENTUM_CONFIGS, ids=config_id)
def test_a_step_through_a_third_party_backends_kernel_equals_the_array_step(config, fused):
    fake, backend = fused
    want = _train(config)  # the suite's device: the ordinary update
    got = _train(config, device=FAKE)
    _assert_same_run(got, want)
    kind = _kind(config)
    assert fake.calls[kind] == _n_updates(), "the fused kernel was not used for every update"
    assert sum(fake.calls.values()) == fake.calls[kind]
    assert backend.lookups == [kind] * N_STEPS, "the kernel is looked up once per group and step"


@pytest.mark.parametrize("config", ADAM_CONFIGS + SGD_CONFIGS, ids=config_id)
def test_a_backend_whose_hook_answers_none_gets_the_array_step_bit_for_bit(config, plug_in):
    backend = plug_in()  # no kernels: fused() is None for every kind
    _assert_same_run(_train(config, device=FAKE), _train(config), exact=True)
    assert set(backend.lookups) <= {_kind(config)}


@pytest.mark.parametrize("config", PLAIN_SGD_CONFIGS, ids=config_id)
def test_sgd_without_momentum_keeps_the_array_update(config, refusing):
    _assert_same_run(_train(config, device=FAKE), _train(config), exact=True)
    assert refusing.lookups == []


@pytest.mark.parametrize("config", ADAM_CONFIGS[:3] + MOMENTUM_CONFIGS[:2], ids=config_id)
def test_a_gradient_of_another_dtype_takes_the_array_path(config, refusing):
    want = _train(config, n_steps=3, grad_dtype=np.float32)
    got = _train(config, device=FAKE, n_steps=3, grad_dtype=np.float32)
    _assert_same_run(got, want, exact=True)


def test_the_stock_backends_offer_no_fused_kernels():
    for kind in KINDS:
        assert backends.get("numpy").fused(kind) is None
        assert StandinBackend().fused(kind) is None  # what --device=standin installs
        assert ag.zeros(1).device.backend.fused(kind) is None  # the suite's device (cpu or the stand-in)


@pytest.mark.parametrize("config", [ADAM_CONFIGS[3], MOMENTUM_CONFIGS[2]], ids=config_id)
def test_a_group_spanning_devices_asks_each_device_once_per_step(config, fused):
    fake, backend = fused
    values = initial_values() + initial_values(seed=3)
    home = ag.get_default_device()
    devices = [FAKE, home, FAKE, home]
    grads = gradient_stream(N_STEPS, shapes=[v.shape for v in values])

    def run(devs):
        params = [ag.tensor(v, requires_grad=True, device=d) for v, d in zip(values, devs)]
        opt = make(config[0], params, **config[1])
        for gs in grads:
            set_grads(params, gs)
            opt.step()
        return params, opt

    want = run([home] * 4)
    got = run(devices)
    _assert_same_run(got, want)
    for p, r, d in zip(got[0], want[0], devices):
        if d == home:  # the suite's device took the array step, bit for bit
            np.testing.assert_array_equal(p.numpy(), r.numpy())
    kind = _kind(config)
    assert fake.calls[kind] == sum(gs[i] is not None for gs in grads for i in (0, 2))
    assert backend.lookups == [kind] * N_STEPS  # once per step, though the devices alternate


def test_state_saved_on_the_fused_path_continues_on_the_array_path(fused):
    fake, _ = fused
    config = ("Adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1})
    want = _train(config, n_steps=6)
    params, opt = _train(config, device=FAKE, n_steps=3)
    assert fake.calls["adam"] > 0
    saved = opt.state_dict()
    moved = [ag.tensor(p.numpy(), requires_grad=True) for p in params]  # to the suite's device
    opt2 = make(config[0], moved, **config[1])
    opt2.load_state_dict(saved)
    for grads in gradient_stream(6)[3:]:
        set_grads(moved, grads)
        opt2.step()
    _assert_same_run((moved, opt2), want)


def test_an_update_swapped_in_by_a_subclass_is_not_bypassed(refusing):
    seen = []

    class MyAdam(optim.Adam):
        @staticmethod
        def _kernel(param, grad, *args, **kwargs):
            seen.append(kwargs["step"])

    params = _params(FAKE)
    opt = MyAdam(params, lr=0.1)
    set_grads(params, [np.ones(p.shape) for p in params])
    opt.step()
    assert seen == [1.0, 1.0] and refusing.lookups == []


# -- cross entropy's backward -------------------------------------------------------------------------------

def _xent_grad(logits: np.ndarray, target: np.ndarray, upstream=None, device=None, **kwargs) -> np.ndarray:
    x = ag.tensor(logits, requires_grad=True, device=device)
    if isinstance(kwargs.get("weight"), np.ndarray):
        kwargs["weight"] = ag.tensor(kwargs["weight"], device=device)
    loss = F.cross_entropy(x, ag.tensor(target, device=device), **kwargs)
    loss.backward(None if upstream is None else ag.tensor(upstream, device=device))
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
def test_cross_entropy_backward_through_the_hook_equals_the_array_backward(kwargs, dtype, fused):
    fake, backend = fused
    rng = np.random.default_rng(5)
    n, c = 9, 5
    logits = (rng.standard_normal((n, c)) * 3).astype(dtype)
    target = rng.integers(0, c, n)
    ignore_index = kwargs.get("ignore_index", -100)
    target[[2, 6]] = 0 if ignore_index is None else ignore_index  # rows that do not count, where any do
    upstream = rng.standard_normal(n).astype(dtype) if kwargs.get("reduction") == "none" else None
    want = _xent_grad(logits, target, upstream, **kwargs)
    got = _xent_grad(logits, target, upstream, device=FAKE, **kwargs)
    assert fake.calls["softmax_cross_entropy_backward"] == 1
    assert backend.lookups == ["softmax_cross_entropy_backward"]
    assert got.dtype == dtype
    tol = TOL if dtype == np.float64 else {"rtol": 1e-5, "atol": 1e-6}
    np.testing.assert_allclose(got, want, **tol)
    if ignore_index is not None:
        np.testing.assert_array_equal(got[[2, 6]], 0.0)


def test_cross_entropy_cases_the_kernel_does_not_cover_keep_the_array_backward(refusing):
    rng = np.random.default_rng(6)
    logits = rng.standard_normal((4, 3))
    target = np.array([0, 2, 1, 1])
    cases = [
        (logits, target, {"weight": np.array([0.5, 1.0, 2.0])}),  # class weights
        (logits, np.exp(logits) / np.exp(logits).sum(1, keepdims=True), {}),  # probability targets
        (rng.standard_normal((2, 3, 4)), rng.integers(0, 3, (2, 4)), {}),  # (N, C, d) logits
        (rng.standard_normal(3), np.array(1), {}),  # (C,) logits
    ]
    for x, t, kwargs in cases:
        np.testing.assert_array_equal(_xent_grad(x, t, device=FAKE, **kwargs), _xent_grad(x, t, **kwargs))
    x = ag.tensor(logits, requires_grad=True, device=FAKE)  # create_graph: the Tensor path, for higher order
    ag.grad(F.cross_entropy(x, ag.tensor(target, device=FAKE)), [x], create_graph=True)


def test_cross_entropy_backward_on_a_backend_without_kernels_is_the_array_backward(plug_in):
    plug_in()
    rng = np.random.default_rng(7)
    logits, target = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    np.testing.assert_array_equal(_xent_grad(logits, target, device=FAKE, label_smoothing=0.1),
                                  _xent_grad(logits, target, label_smoothing=0.1))


# -- the real helpers, kernel bodies compiled for the host ---------------------------------------------------

class HostCompiledBackend(NumpyBackend):
    """NumPy arrays on ``FAKE``, with the kernels the CuPy backend's hook hands out."""

    name = "fused-host-compiled"
    device_type = FAKE

    def __init__(self) -> None:
        super().__init__()
        self._cupy = CupyBackend()  # asked only for its fused(); no GPU needed for that

    def fused(self, kind: str):
        return self._cupy.fused(kind)


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
    backend = HostCompiledBackend()
    backends.register(backend.name, backend, device_type=FAKE)
    try:
        yield calls
    finally:
        backends.unregister(backend.name)


def test_the_real_helpers_through_the_cupy_backends_hook_equal_the_array_path(host_compiled):
    configs = ADAM_CONFIGS + MOMENTUM_CONFIGS
    for config in configs:
        _assert_same_run(_train(config, device=FAKE), _train(config))
    rng = np.random.default_rng(8)
    logits, target = rng.standard_normal((6, 4)), np.array([0, 3, -100, 1, 1, 2])
    for dt in (np.float64, np.float32):
        want = _xent_grad(logits.astype(dt), target, label_smoothing=0.1)
        got = _xent_grad(logits.astype(dt), target, device=FAKE, label_smoothing=0.1)
        assert got.dtype == dt
        np.testing.assert_allclose(got, want, **(TOL if dt == np.float64 else {"rtol": 1e-5, "atol": 1e-6}))
    assert host_compiled.count("adam_update") == len(ADAM_CONFIGS) * _n_updates()
    assert host_compiled.count("sgd_momentum_update") == len(MOMENTUM_CONFIGS) * _n_updates()
    assert host_compiled.count("softmax_cross_entropy_backward") == 2
