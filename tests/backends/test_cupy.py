"""The CuPy backend without a GPU: lazy import, availability diagnostics, and the fused kernels.

Kernel *objects* are built when CuPy is importable (building compiles nothing). Their *math* is
checked everywhere: each kernel's source (``kernel_spec``) is compiled for the host with a C++
compiler and run on NumPy arrays, then compared with PyTorch's optimizers and autograd.
"""
from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import pytest

from xpgrad import backends
from xpgrad.backends import cupy_kernels as K
from xpgrad.backends.cupy_backend import CupyBackend, probe_cupy
from xpgrad.backends.device import Device

torch = pytest.importorskip("torch")

INSTALL = 'pip install "xpgrad[cuda12]"'


def _real_gpu() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@pytest.fixture
def cuda_served_by_cupy():
    """Run a test with "cuda" served by the real CuPy backend even under --device=standin."""
    from xpgrad.backends.testing import standin

    was = standin.is_installed()
    if was:
        standin.uninstall()
    try:
        yield
    finally:
        if was:
            standin.install()


# -- lazy import and diagnostics -----------------------------------------------------------------------

def test_cpu_use_never_imports_cupy():
    code = (
        "import sys, autograd as ag, backends, backends.cupy_backend, backends.cupy_kernels; "
        "ag.zeros(3) + 1; assert 'cupy' not in sys.modules, 'cupy was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_missing_cupy_is_reported_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    ok, why = CupyBackend().availability()
    assert not ok
    assert "CuPy is not installed" in why and INSTALL in why


@pytest.mark.skipif(_real_gpu(), reason="a usable GPU is present, so cuda does not fail here")
def test_cuda_device_without_a_usable_gpu_raises_runtime_error(cuda_served_by_cupy):
    with pytest.raises(RuntimeError) as info:
        _ = Device("cuda").backend
    text = str(info.value)
    assert "cuda" in text and INSTALL in text
    assert "CuPy is not installed" in text or "no usable GPU/driver" in text or "CUDA runtime mismatch" in text
    report = backends.diagnose()["cupy"]
    assert report != "available" and INSTALL in report
    assert "cupy" not in backends.available()


def _fake_cupy(count=None, error_status=None, driver=0, runtime=12090):
    class CUDARuntimeError(RuntimeError):
        def __init__(self, status, text):
            super().__init__(text)
            self.status = status

    def get_device_count():
        if error_status is not None:
            raise CUDARuntimeError(error_status, f"cudaError {error_status}")
        return count

    runtime_ns = types.SimpleNamespace(
        getDeviceCount=get_device_count, driverGetVersion=lambda: driver, runtimeGetVersion=lambda: runtime,
        CUDARuntimeError=CUDARuntimeError,
    )
    return types.SimpleNamespace(__version__="14.2.0", cuda=types.SimpleNamespace(runtime=runtime_ns))


def test_probe_reports_no_driver():
    why = probe_cupy(_fake_cupy(error_status=35, driver=0))
    assert "installed but no usable GPU/driver was found" in why and "no NVIDIA driver" in why and INSTALL in why


def test_probe_reports_a_cuda_runtime_mismatch_with_both_versions():
    why = probe_cupy(_fake_cupy(error_status=35, driver=11080, runtime=12090))
    assert why.startswith("CUDA runtime mismatch")
    assert "12.9" in why and "11.8" in why and INSTALL in why


def test_probe_reports_no_gpu():
    assert "no CUDA-capable GPU" in probe_cupy(_fake_cupy(error_status=100, driver=12020))
    assert "0 CUDA devices" in probe_cupy(_fake_cupy(count=0, driver=12020))
    assert INSTALL in probe_cupy(_fake_cupy(count=0, driver=12020))


def test_probe_accepts_a_gpu():
    assert probe_cupy(_fake_cupy(count=1, driver=12020)) is None


# -- kernel objects ---------------------------------------------------------------------------------------

def test_kernel_objects_are_built_once_per_dtype():
    cupy = pytest.importorskip("cupy")
    factories = [
        K.adam_kernel, K.adam_amsgrad_kernel, K.sgd_momentum_kernel, K.softmax_xent_backward_kernel,
        K.relu_backward_kernel, K.relu_mask_backward_kernel, K.tanh_backward_kernel, K.sigmoid_backward_kernel,
    ]
    for factory in factories:
        for dtype in (np.float16, np.float32, np.float64):
            kernel = factory(dtype)
            assert isinstance(kernel, cupy.ElementwiseKernel)
            assert factory(np.dtype(dtype).name) is kernel  # cached, never rebuilt
        assert factory(np.float32) is not factory(np.float64)


def test_kernels_refuse_non_float_dtypes():
    with pytest.raises(TypeError, match="float16, float32 or float64"):
        K.adam_kernel(np.int64)
    with pytest.raises(KeyError):
        K.kernel_spec("no_such_kernel", np.float32)


def test_the_fused_hook_hands_out_the_kernel_helpers_by_kind():
    backend = CupyBackend()  # CuPy installed or not: choosing a kernel needs neither CuPy nor a GPU
    assert backend.fused("adam") is K.adam_update
    assert backend.fused("sgd_momentum") is K.sgd_momentum_update
    assert backend.fused("softmax_cross_entropy_backward") is K.softmax_cross_entropy_backward
    assert backend.fused("no_such_kind") is None


def test_asking_for_fused_kernels_imports_no_cupy(tmp_path):
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from xpgrad import autograd as ag, optim\n"
        "from xpgrad.backends.cupy_backend import CupyBackend\n"
        "from xpgrad.nn import functional as F\n"
        "p = ag.tensor(np.ones(3), requires_grad=True)\n"
        "for opt in (optim.Adam([p]), optim.SGD([p], lr=0.1, momentum=0.9)):\n"
        "    p.grad = ag.ones(3, dtype=p.dtype)\n"
        "    opt.step()\n"
        "x = ag.tensor(np.ones((2, 3)), requires_grad=True)\n"
        "F.cross_entropy(x, ag.tensor(np.array([0, 2])), label_smoothing=0.1).backward()\n"
        "hook = CupyBackend.__new__(CupyBackend)  # not constructed: that would import CuPy\n"
        "assert all(hook.fused(k) for k in ('adam', 'sgd_momentum', 'softmax_cross_entropy_backward'))\n"
        "assert 'cupy' not in sys.modules, 'cupy was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


# -- kernel math on the host -------------------------------------------------------------------------------

_C_TYPES = {"float32": "float", "float64": "double", "int64": "long long", "bool": "bool"}


def _params(text: str) -> list[tuple[str, str]]:
    return [tuple(p.split()) for p in text.split(",")]


@functools.cache
def _compile(spec: K.KernelSpec):
    """Compile a kernel's loop body for the host, as CuPy would wrap it: inputs are const copies, outputs
    references, ``i`` the flat index. Returns a ctypes function of (n, *pointers)."""
    ins, outs = _params(spec.in_params), _params(spec.out_params)
    args = ", ".join(f"{_C_TYPES[t]}* {n}_p" for t, n in ins + outs)
    binds = [f"const {_C_TYPES[t]} {n} = {n}_p[i];" for t, n in ins] + [f"{_C_TYPES[t]}& {n} = {n}_p[i];" for t, n in outs]
    source = (
        "#include <cmath>\n#include <algorithm>\nusing std::max; using std::sqrt;\n"
        f"{spec.preamble}\n"
        f'extern "C" void run(long long n, {args}) {{\n'
        "  for (long long i = 0; i < n; ++i) {\n    " + "\n    ".join(binds) + "\n    " + spec.operation + "\n  }\n}\n"
    )
    build = tempfile.mkdtemp(prefix="xpgrad_kernel_")
    src, lib = os.path.join(build, "k.cpp"), os.path.join(build, "k.so")
    with open(src, "w") as f:
        f.write(source)
    subprocess.run(["g++", "-O0", "-shared", "-fPIC", "-Wall", "-Werror", "-Wno-unused-variable", src, "-o", lib],
                   check=True, capture_output=True, text=True)
    return ctypes.CDLL(lib).run


class _HostKernel:
    """Stands in for ``cupy.ElementwiseKernel`` on NumPy arrays: same call convention and the same
    argument checks (array dtypes must match fixed parameter types exactly; scalars are cast), with
    the body compiled for the CPU."""

    def __init__(self, spec: K.KernelSpec) -> None:
        self.spec = spec
        self.ins, self.outs = _params(spec.in_params), _params(spec.out_params)

    def __call__(self, *args):
        n_in, n_out = len(self.ins), len(self.outs)
        assert len(args) in (n_in, n_in + n_out), f"{self.spec.name}: {len(args)} arguments"
        for (type_, name), a in zip(self.ins + self.outs, args):
            if isinstance(a, np.ndarray):
                assert a.dtype == np.dtype(type_), f"{self.spec.name}: {name} has dtype {a.dtype}, kernel wants {type_}"
            else:
                assert type(a) in (int, float, bool), f"{self.spec.name}: scalar {name} is a {type(a).__name__}"
        shape = np.broadcast_shapes(*[np.shape(a) for a in args[:n_in] if isinstance(a, np.ndarray)])
        outs = list(args[n_in:]) or [np.empty(shape, t) for t, _ in self.outs]
        flat = [np.ascontiguousarray(np.broadcast_to(np.asarray(a, dtype=t), shape)) for (t, _), a in zip(self.ins, args)]
        for o in outs:
            assert o.shape == shape and o.flags.c_contiguous
        _compile(self.spec)(ctypes.c_longlong(int(np.prod(shape))), *[ctypes.c_void_p(a.ctypes.data) for a in flat + outs])
        return outs[0] if n_out == 1 else tuple(outs)


@pytest.fixture
def host_kernels(monkeypatch):
    """The public kernel helpers, run on NumPy arrays with kernels compiled for the CPU."""
    if shutil.which("g++") is None:
        pytest.skip("no C++ compiler (g++) to run the kernel sources on the host")
    monkeypatch.setattr(K, "_kernel", lambda kind, dtype_name: _HostKernel(K.kernel_spec(kind, dtype_name)))
    fake_cupy = types.SimpleNamespace(ndarray=np.ndarray, empty=np.empty, int64=np.int64)
    monkeypatch.setattr(K, "_cupy", lambda: fake_cupy)
    return K


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-6)])
@pytest.mark.parametrize(
    "options",
    [
        {"weight_decay": 0.0, "amsgrad": False, "decoupled": False},
        {"weight_decay": 0.1, "amsgrad": False, "decoupled": False},
        {"weight_decay": 0.1, "amsgrad": True, "decoupled": False},
        {"weight_decay": 0.05, "amsgrad": True, "decoupled": True},
    ],
)
def test_adam_update_matches_torch(host_kernels, dtype, rtol, options):
    rng = np.random.default_rng(0)
    shape = (3, 5)
    p0 = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(4)]
    hyper = {"lr": 0.01, "betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": options["weight_decay"], "amsgrad": options["amsgrad"]}
    tp = torch.nn.Parameter(torch.tensor(p0))
    opt = (torch.optim.AdamW if options["decoupled"] else torch.optim.Adam)([tp], **hyper)

    param, m, v, vmax = p0.copy(), np.zeros(shape, dtype), np.zeros(shape, dtype), np.zeros(shape, dtype)
    for step, g in enumerate(grads, start=1):
        tp.grad = torch.tensor(g)
        opt.step()
        host_kernels.adam_update(
            param, g, m, v, lr=hyper["lr"], beta1=hyper["betas"][0], beta2=hyper["betas"][1], eps=hyper["eps"],
            step=float(step), weight_decay=hyper["weight_decay"], decoupled_weight_decay=options["decoupled"],
            max_exp_avg_sq=vmax if options["amsgrad"] else None,
        )
    state = opt.state[tp]
    np.testing.assert_allclose(param, tp.detach().numpy(), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(m, state["exp_avg"].numpy(), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(v, state["exp_avg_sq"].numpy(), rtol=rtol, atol=rtol)
    if options["amsgrad"]:
        np.testing.assert_allclose(vmax, state["max_exp_avg_sq"].numpy(), rtol=rtol, atol=rtol)


def test_adam_update_checks_its_arguments(host_kernels):
    p = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="step counts from 1"):
        host_kernels.adam_update(p, p.copy(), p.copy(), p.copy(), lr=0.1, beta1=0.9, beta2=0.99, eps=1e-8, step=0)
    with pytest.raises(TypeError, match="float32"):
        host_kernels.adam_update(p, p.astype(np.float64), p.copy(), p.copy(), lr=0.1, beta1=0.9, beta2=0.99, eps=1e-8,
                                 step=1)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-6)])
@pytest.mark.parametrize(
    "options",
    [
        {"momentum": 0.9, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False},
        {"momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01, "nesterov": False},
        {"momentum": 0.8, "dampening": 0.0, "weight_decay": 0.01, "nesterov": True},
    ],
)
def test_sgd_momentum_update_matches_torch(host_kernels, dtype, rtol, options):
    rng = np.random.default_rng(1)
    shape = (4, 3)
    p0 = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(3)]
    tp = torch.nn.Parameter(torch.tensor(p0))
    opt = torch.optim.SGD([tp], lr=0.1, **options)
    param, buf = p0.copy(), np.full(shape, 123.0, dtype)  # garbage: the first step must overwrite it
    for step, g in enumerate(grads, start=1):
        tp.grad = torch.tensor(g)
        opt.step()
        host_kernels.sgd_momentum_update(param, g, buf, lr=0.1, first_step=step == 1, **options)
    np.testing.assert_allclose(param, tp.detach().numpy(), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(buf, opt.state[tp]["momentum_buffer"].numpy(), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_softmax_cross_entropy_backward_matches_torch(host_kernels, smoothing, dtype, rtol):
    rng = np.random.default_rng(2)
    n, c = 6, 5
    logits = torch.tensor(rng.standard_normal((n, c)) * 3, requires_grad=True)
    target = np.array([0, 4, -100, 2, 2, 1])
    upstream = 1.7
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(target), label_smoothing=smoothing, ignore_index=-100)
    (loss * upstream).backward()

    probs = torch.softmax(logits.detach(), 1).numpy().astype(dtype)
    scale = upstream / np.count_nonzero(target != -100)
    out = host_kernels.softmax_cross_entropy_backward(probs, target.astype(np.int32), scale, label_smoothing=smoothing)
    assert out.dtype == dtype and out.shape == (n, c)
    np.testing.assert_allclose(out, logits.grad.numpy(), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_backward_per_row_scale(host_kernels, dtype):
    rng = np.random.default_rng(3)
    n, c = 4, 3
    logits = torch.tensor(rng.standard_normal((n, c)), requires_grad=True)
    target = np.array([2, 0, 1, 1])
    upstream = rng.standard_normal(n)
    losses = torch.nn.functional.cross_entropy(logits, torch.tensor(target), reduction="none")
    losses.backward(torch.tensor(upstream))
    probs = torch.softmax(logits.detach(), 1).numpy().astype(dtype)
    out = host_kernels.softmax_cross_entropy_backward(probs, target, upstream)  # float64 scale, any probs dtype
    np.testing.assert_allclose(out, logits.grad.numpy(), rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_backwards(host_kernels, dtype):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(12).astype(dtype)
    x[3] = 0.0  # relu'(0) = 0
    g = rng.standard_normal(12).astype(dtype)
    np.testing.assert_array_equal(host_kernels.relu_backward(g, x), np.where(x > 0, g, 0))
    np.testing.assert_array_equal(host_kernels.relu_backward(g, x > 0), np.where(x > 0, g, 0))
    y = np.tanh(x)
    np.testing.assert_allclose(host_kernels.tanh_backward(g, y), g * (1 - y * y), rtol=1e-6)
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(host_kernels.sigmoid_backward(g, s), g * s * (1 - s), rtol=1e-6)
    with pytest.raises(TypeError):
        host_kernels.tanh_backward(g, y.astype(np.float16))


# -- kernel sources through NVRTC (CUDA's compiler; needs no GPU) ---------------------------------------------

_CUDA_TYPES = {"float16": "float16", "float32": "float", "float64": "double", "int64": "long long", "bool": "bool"}


def _nvrtc_or_skip():
    cupy = pytest.importorskip("cupy")
    from cupy.cuda import nvrtc

    try:
        nvrtc.getVersion()
    except Exception as exc:
        pytest.skip(f"NVRTC is not loadable here ({type(exc).__name__}); pip install nvidia-cuda-nvrtc-cu12 to run this")
    return cupy, nvrtc


def _cuda_fp16_include() -> str | None:
    """A directory holding cuda_fp16.h (CUDA toolkit or the nvidia-cuda-runtime wheel), for float16 kernels."""
    candidates = [os.path.join(os.environ.get("CUDA_PATH", "/usr/local/cuda"), "include")]
    try:
        import nvidia.cuda_runtime as rt

        candidates += [os.path.join(p, "include") for p in rt.__path__]
    except ImportError:
        pass
    return next((d for d in candidates if os.path.exists(os.path.join(d, "cuda_fp16.h"))), None)


@pytest.mark.parametrize("kind", K.KINDS)
def test_kernel_sources_compile_with_nvrtc(kind):
    """Each kernel body, wrapped as CuPy wraps it (const inputs, output references, flat index ``i``),
    compiles for the GPU; float16 too where the CUDA headers for half precision are present."""
    cupy, nvrtc = _nvrtc_or_skip()
    cupy_include = os.path.join(os.path.dirname(cupy.__file__), "_core", "include")
    fp16_include = _cuda_fp16_include()
    dtypes = ["float32", "float64"] + (["float16"] if fp16_include else [])
    for dtype in dtypes:
        spec = K.kernel_spec(kind, dtype)
        ins, outs = _params(spec.in_params), _params(spec.out_params)
        args = ", ".join([f"const {_CUDA_TYPES[t]}* {n}_p" for t, n in ins] + [f"{_CUDA_TYPES[t]}* {n}_p" for t, n in outs])
        binds = [f"const {_CUDA_TYPES[t]} {n} = {n}_p[i];" for t, n in ins]
        binds += [f"{_CUDA_TYPES[t]}& {n} = {n}_p[i];" for t, n in outs]
        source = (
            "#include <cupy/carray.cuh>\n" + ("#include <cupy/float16.cuh>\n" if dtype == "float16" else "")
            + spec.preamble + f'\nextern "C" __global__ void {spec.name}({args}, long long n) {{\n'
            "  for (ptrdiff_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {\n    "
            + "\n    ".join(binds) + "\n    " + spec.operation + "\n  }\n}\n"
        )
        options = ["-I" + cupy_include, "--std=c++17", "-arch=compute_70"]
        if fp16_include:
            options.append("-I" + fp16_include)
        prog = nvrtc.createProgram(source, spec.name + ".cu", [], [])
        try:
            nvrtc.compileProgram(prog, options)
        except Exception:
            pytest.fail(f"{spec.name} does not compile:\n{nvrtc.getProgramLog(prog)}\n{source}")
        assert nvrtc.getPTX(prog)
