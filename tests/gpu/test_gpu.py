"""Real-GPU checks (marker ``gpu``: skipped unless CuPy sees a CUDA device).

Every test compares the "cuda" device with the CPU. Their own logic can be exercised without a GPU by
running them on the stand-in: ``XPGRAD_GPU_TESTS_ON_STANDIN=1 python -m pytest tests/gpu --device=standin``
(the kernel tests then skip: they need CuPy itself).
"""
from __future__ import annotations

import numpy as np
import pytest

from xpgrad import autograd as ag
from xpgrad import nn, optim
from xpgrad.nn import functional as F

pytestmark = pytest.mark.gpu

CPU, CUDA = "cpu", "cuda"


def _both(array: np.ndarray, requires_grad: bool = True):
    return (ag.tensor(array, device=CPU, requires_grad=requires_grad),
            ag.tensor(array, device=CUDA, requires_grad=requires_grad))


def _cupy_or_skip():
    from xpgrad.backends.cupy_backend import CupyBackend

    if not isinstance(ag.zeros(1, device=CUDA).device.backend, CupyBackend):
        pytest.skip("the fused kernels need CuPy itself ('cuda' is served by another backend here)")
    import cupy

    return cupy


# -- moves ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int64, np.bool_])
def test_round_trip_cpu_cuda_cpu_keeps_values_and_dtype(dtype):
    host = (np.arange(12).reshape(3, 4) % 5).astype(dtype)
    t = ag.tensor(host, device=CPU)
    c = t.to(CUDA)
    assert str(c.device) == "cuda:0" and c.dtype == dtype
    assert isinstance(c.data, c.device.backend.array_type)
    back = c.cpu()
    assert back.device == CPU and back.dtype == dtype
    np.testing.assert_array_equal(back.numpy(), host)
    np.testing.assert_array_equal(c.numpy(), host)  # numpy() copies from the device
    assert t.cuda().device == c.device


def test_gradients_flow_back_across_moves():
    x_cpu = ag.tensor(np.array([0.5, -1.0, 2.0]), device=CPU, requires_grad=True)
    y = ag.tanh(x_cpu.cuda()) * ag.tensor([1.0, 2.0, 3.0], dtype=ag.float64, device=CUDA)
    y.cpu().sum().backward()
    assert x_cpu.grad.device == CPU
    np.testing.assert_allclose(x_cpu.grad.numpy(), (1 - np.tanh([0.5, -1.0, 2.0]) ** 2) * [1, 2, 3], rtol=1e-12)


def test_mixing_devices_raises_naming_both():
    a, b = _both(np.ones(3), requires_grad=False)
    with pytest.raises(RuntimeError) as info:
        a + b
    assert "cpu" in str(info.value) and "cuda:0" in str(info.value)


# -- ops: same value and gradient on both devices -------------------------------------------------------------

_OPS = {
    "matmul_tanh": (lambda a, b: ag.tanh(a @ b.T), [(3, 4), (5, 4)]),
    "logsumexp": (lambda a: ag.logsumexp(a * 3, axis=1), [(4, 6)]),
    "softmax_xent": (lambda a: F.cross_entropy(a, ag.tensor([0, 2, 1, 2], device=a.device)), [(4, 3)]),
    "fancy_index_repeats": (lambda a: a[ag.tensor([0, 0, 2, 0], device=a.device)] * 2, [(3, 2)]),
    "mask_index": (lambda a: a[a > 0].sum() + ag.where(a > 0, a, a * a).sum(), [(4, 4)]),
    "erf_gelu": (lambda a: F.gelu(a) + ag.erf(a), [(7,)]),
    "prod_max_var": (lambda a: a.prod(axis=0) + a.max(axis=1).sum() + a.var(axis=0, ddof=1), [(3, 3)]),
    "broadcast_div": (lambda a, b: a / (b * b + 1), [(2, 3, 4), (4,)]),
    "concat_pad_tile": (lambda a: ag.tile(ag.pad(ag.concatenate([a, a * 2], axis=1), 1), (2, 1)), [(2, 2)]),
}


@pytest.mark.parametrize("name", sorted(_OPS))
def test_op_value_and_gradient_equal_on_both_devices(name):
    fn, shapes = _OPS[name]
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s) for s in shapes]
    pairs = [_both(a) for a in arrays]
    cpu_in = [p[0] for p in pairs]
    gpu_in = [p[1] for p in pairs]
    out_cpu, out_gpu = fn(*cpu_in), fn(*gpu_in)
    assert str(out_gpu.device) == "cuda:0"
    np.testing.assert_allclose(out_gpu.numpy(), out_cpu.numpy(), rtol=1e-10, atol=1e-12)
    upstream = rng.standard_normal(out_cpu.shape)
    g_cpu = ag.grad(out_cpu, cpu_in, ag.tensor(upstream, device=CPU))
    g_gpu = ag.grad(out_gpu, gpu_in, ag.tensor(upstream, device=CUDA))
    for gc, gg in zip(g_cpu, g_gpu):
        assert str(gg.device) == "cuda:0"
        np.testing.assert_allclose(gg.numpy(), gc.numpy(), rtol=1e-10, atol=1e-12)


def test_second_order_gradient_equal_on_both_devices():
    rng = np.random.default_rng(1)
    xc, xg = _both(rng.standard_normal(5))
    results = []
    for x in (xc, xg):
        (g,) = ag.grad((ag.sigmoid(x) * x ** 3).sum(), x, create_graph=True)
        (gg,) = ag.grad((g * g).sum(), x)
        results.append(gg.numpy())
    np.testing.assert_allclose(results[1], results[0], rtol=1e-10)


def test_manual_seed_reproduces_cuda_draws():
    ag.manual_seed(123)
    a = ag.randn(100, device=CUDA).numpy()
    b = ag.rand(100, device=CUDA).numpy()
    ag.manual_seed(123)
    np.testing.assert_array_equal(ag.randn(100, device=CUDA).numpy(), a)
    np.testing.assert_array_equal(ag.rand(100, device=CUDA).numpy(), b)
    assert 0.0 <= b.min() and b.max() < 1.0 and abs(a.mean()) < 0.5


# -- a tiny MLP training step ---------------------------------------------------------------------------------

def _mlp():
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))


@pytest.mark.parametrize("make_optimizer", ["sgd_momentum", "adam"])
def test_mlp_training_steps_on_cuda_equal_the_cpu_steps(make_optimizer):
    ag.manual_seed(0)
    cpu_model = _mlp().to(CPU)  # explicit: the session's default device may be cuda
    gpu_model = _mlp().to(CPU)
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_model.to(CUDA)
    assert all(str(p.device) == "cuda:0" for p in gpu_model.parameters())

    def opt_for(model):
        if make_optimizer == "adam":
            return optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
        return optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)

    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 6)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    losses = {}
    for device, model in ((CPU, cpu_model), (CUDA, gpu_model)):
        opt = opt_for(model)
        xs, ys = ag.tensor(x, device=device), ag.tensor(y, device=device)
        losses[device] = []
        for _ in range(3):
            opt.zero_grad()
            loss = nn.CrossEntropyLoss()(model(xs), ys)
            loss.backward()
            opt.step()
            losses[device].append(loss.item())
    np.testing.assert_allclose(losses[CUDA], losses[CPU], rtol=1e-5)
    for (name, pc), (_, pg) in zip(cpu_model.named_parameters(), gpu_model.named_parameters()):
        assert str(pg.device) == "cuda:0", name
        np.testing.assert_allclose(pg.numpy(), pc.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


# -- fused kernels against the NumPy formulas -------------------------------------------------------------------

@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-5), (np.float64, 1e-12), (np.float16, 5e-3)])
@pytest.mark.parametrize("amsgrad,decoupled", [(False, False), (True, False), (False, True)])
def test_adam_kernel_matches_numpy(dtype, rtol, amsgrad, decoupled):
    cupy = _cupy_or_skip()
    from xpgrad.backends.cupy_kernels import adam_update

    rng = np.random.default_rng(3)
    p = rng.standard_normal(1000).astype(dtype)
    m, v, vmax = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    dp, dm, dv, dvmax = (cupy.asarray(a) for a in (p, m, v, vmax))
    lr, b1, b2, eps, wd = 1e-2, 0.9, 0.999, 1e-8, 0.01
    p64, m64, v64, vmax64 = (a.astype(np.float64) for a in (p, m, v, vmax))
    for step in range(1, 4):
        g = rng.standard_normal(1000).astype(dtype)
        adam_update(dp, cupy.asarray(g), dm, dv, lr=lr, beta1=b1, beta2=b2, eps=eps, step=step, weight_decay=wd,
                    decoupled_weight_decay=decoupled, max_exp_avg_sq=dvmax if amsgrad else None)
        g64 = g.astype(np.float64)
        if decoupled:
            p64 = p64 * (1 - lr * wd)
        else:
            g64 = g64 + wd * p64
        m64 = b1 * m64 + (1 - b1) * g64
        v64 = b2 * v64 + (1 - b2) * g64 * g64
        vmax64 = np.maximum(vmax64, v64)
        denom = np.sqrt(vmax64 if amsgrad else v64) / np.sqrt(1 - b2**step) + eps
        p64 = p64 - lr / (1 - b1**step) * m64 / denom
    np.testing.assert_allclose(cupy.asnumpy(dp).astype(np.float64), p64, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(cupy.asnumpy(dm).astype(np.float64), m64, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_kernel_matches_numpy(nesterov):
    cupy = _cupy_or_skip()
    from xpgrad.backends.cupy_kernels import sgd_momentum_update

    rng = np.random.default_rng(4)
    p = rng.standard_normal(500)
    dp, dbuf = cupy.asarray(p), cupy.empty(500)
    buf = None
    for step in range(1, 4):
        g = rng.standard_normal(500)
        sgd_momentum_update(dp, cupy.asarray(g), dbuf, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01,
                            nesterov=nesterov, first_step=step == 1)
        d = g + 0.01 * p
        buf = d.copy() if buf is None else 0.9 * buf + 0.9 * d
        p = p - 0.1 * (d + 0.9 * buf if nesterov else buf)
    np.testing.assert_allclose(cupy.asnumpy(dp), p, rtol=1e-12)
    np.testing.assert_allclose(cupy.asnumpy(dbuf), buf, rtol=1e-12)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_xent_backward_kernel_matches_the_autograd_path(smoothing):
    cupy = _cupy_or_skip()
    from xpgrad.backends.cupy_kernels import softmax_cross_entropy_backward

    rng = np.random.default_rng(5)
    logits = ag.tensor(rng.standard_normal((16, 7)) * 4, device=CUDA, requires_grad=True)
    target = rng.integers(0, 7, 16)
    target[3] = -100
    t = ag.tensor(target, device=CUDA)
    F.cross_entropy(logits, t, label_smoothing=smoothing, ignore_index=-100).backward()
    probs = F.softmax(logits.detach(), axis=1).data
    fused = softmax_cross_entropy_backward(probs, t.data, 1.0 / 15, label_smoothing=smoothing, ignore_index=-100)
    np.testing.assert_allclose(cupy.asnumpy(fused), logits.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_optimizers_and_cross_entropy_take_the_kernels_the_cuda_backend_hands_out(monkeypatch):
    _cupy_or_skip()
    from xpgrad.backends import cupy_kernels

    calls: list[str] = []

    def recording(name):
        real = getattr(cupy_kernels, name)

        def helper(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)

        return helper

    for name in ("adam_update", "sgd_momentum_update", "softmax_cross_entropy_backward"):
        monkeypatch.setattr(cupy_kernels, name, recording(name))  # CupyBackend.fused looks them up per call
    rng = np.random.default_rng(9)
    values, grads = rng.standard_normal((2, 4, 3)), rng.standard_normal((3, 2, 4, 3))
    for make in (lambda ps: optim.Adam(ps, lr=0.01, amsgrad=True), lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9)):
        result = {}
        for device in (CPU, CUDA):
            params = [ag.tensor(v, device=device, requires_grad=True) for v in values]
            opt = make(params)
            for step in grads:
                for p, g in zip(params, step):
                    p.grad = ag.tensor(g, device=device)
                opt.step()
            result[device] = [p.numpy() for p in params]
        for got, want in zip(result[CUDA], result[CPU]):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    logits, target = rng.standard_normal((6, 4)), np.array([0, 3, 1, 1, 2, 0])
    grad = {}
    for device in (CPU, CUDA):
        x = ag.tensor(logits, device=device, requires_grad=True)
        F.cross_entropy(x, ag.tensor(target, device=device), label_smoothing=0.1).backward()
        grad[device] = x.grad.numpy()
    np.testing.assert_allclose(grad[CUDA], grad[CPU], rtol=1e-10, atol=1e-12)
    assert calls.count("adam_update") == calls.count("sgd_momentum_update") == len(grads) * len(values)
    assert calls.count("softmax_cross_entropy_backward") == 1


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_activation_backward_kernels_match_numpy(dtype):
    cupy = _cupy_or_skip()
    from xpgrad.backends.cupy_kernels import relu_backward, sigmoid_backward, tanh_backward

    rng = np.random.default_rng(6)
    x = rng.standard_normal(300).astype(dtype)
    x[0] = 0
    g = rng.standard_normal(300).astype(dtype)
    dx, dg = cupy.asarray(x), cupy.asarray(g)
    tol = 1e-3 if dtype == np.float16 else 1e-6
    np.testing.assert_array_equal(cupy.asnumpy(relu_backward(dg, dx)), np.where(x > 0, g, 0).astype(dtype))
    np.testing.assert_array_equal(cupy.asnumpy(relu_backward(dg, dx > 0)), np.where(x > 0, g, 0).astype(dtype))
    y = np.tanh(x.astype(np.float64))
    np.testing.assert_allclose(cupy.asnumpy(tanh_backward(dg, cupy.asarray(y.astype(dtype)))).astype(np.float64),
                               g * (1 - y.astype(dtype).astype(np.float64) ** 2), rtol=tol, atol=tol)
    s = (1 / (1 + np.exp(-x.astype(np.float64)))).astype(dtype)
    s64 = s.astype(np.float64)
    np.testing.assert_allclose(cupy.asnumpy(sigmoid_backward(dg, cupy.asarray(s))).astype(np.float64),
                               g * s64 * (1 - s64), rtol=tol, atol=tol)


def test_scatter_add_and_erf_on_the_gpu_backend():
    _cupy_or_skip()
    backend = ag.zeros(1, device=CUDA).device.backend
    target = backend.xp.zeros(4)
    backend.scatter_add(target, (backend.asarray(np.array([1, 1, 3])),), backend.asarray(np.array([1.0, 2.0, 5.0])))
    np.testing.assert_array_equal(backend.to_numpy(target), [0.0, 3.0, 0.0, 5.0])
    from scipy.special import erf

    x = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(backend.to_numpy(backend.erf(backend.asarray(x))), erf(x), rtol=1e-12)
    backend.synchronize()
