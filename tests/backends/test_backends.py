"""Devices and the backend registry: parsing, interning, availability, diagnostics, third-party
backends end to end, and device-mismatch errors."""
import pickle
import sys

import numpy as np
import pytest

from xpgrad import autograd as ag
from xpgrad import backends
from xpgrad.backends import Backend, Device, NumpyBackend
from xpgrad.backends import registry

INSTALL_HINT = 'pip install "xpgrad[cuda12]"'


@pytest.fixture
def clean_registry():
    """Let a test register backends; put the registry (and resolved devices) back afterwards."""
    saved = (dict(registry._by_name), dict(registry._by_device_type), dict(registry._lazy))
    yield
    touched = set(registry._by_device_type) | set(saved[1])
    registry._by_name.clear()
    registry._by_name.update(saved[0])
    registry._by_device_type.clear()
    registry._by_device_type.update(saved[1])
    registry._lazy.clear()
    registry._lazy.update(saved[2])
    for device_type in touched:
        registry._forget_resolved(device_type)


class AltBackend(NumpyBackend):
    """A third-party backend built on NumPy that serves its own device type."""

    name = "alt_numpy"
    device_type = "altdev"


# -- Device ---------------------------------------------------------------------------------------


def test_cpu_device():
    d = Device("cpu")
    assert d.type == "cpu" and d.index is None
    assert str(d) == "cpu"
    assert "cpu" in repr(d)


@pytest.mark.parametrize("spec,type_,index,text", [
    ("cuda", "cuda", 0, "cuda:0"),
    ("cuda:0", "cuda", 0, "cuda:0"),
    ("cuda:1", "cuda", 1, "cuda:1"),
    ("cuda:12", "cuda", 12, "cuda:12"),
])
def test_cuda_device_parsing(spec, type_, index, text):
    d = Device(spec)
    assert (d.type, d.index, str(d)) == (type_, index, text)
    assert f"index={index}" in repr(d) and "cuda" in repr(d)


def test_devices_are_interned():
    assert Device("cpu") is Device("cpu")
    assert Device("cuda") is Device("cuda:0") is Device("cuda", 0)
    assert Device("cuda:1") is Device("cuda", 1)
    assert Device("cuda:1") is not Device("cuda:0")
    d = Device("cuda:1")
    assert Device(d) is d
    assert backends.as_device(None) is Device("cpu")
    assert backends.as_device("cuda:1") is d


def test_device_equality_hash_and_pickle():
    assert Device("cpu") == "cpu"
    assert Device("cuda") == "cuda:0"
    assert Device("cuda:1") != "cuda:0"
    assert Device("cpu") != "not a device!"
    assert len({Device("cuda"), Device("cuda:0"), Device("cpu")}) == 2
    for spec in ("cpu", "cuda:3"):
        assert pickle.loads(pickle.dumps(Device(spec))) is Device(spec)


@pytest.mark.parametrize("spec", ["", "cuda:", "cuda:x", "cuda:-1", "cuda:1:2", ":0", "cu da", "cpu:1", "gpu!"])
def test_invalid_device_strings_raise_value_error(spec):
    with pytest.raises(ValueError):
        Device(spec)


def test_index_given_twice_raises():
    with pytest.raises(ValueError):
        Device("cuda:1", 2)


def test_non_string_device_raises_type_error():
    with pytest.raises(TypeError):
        Device(3)


def test_cpu_tensor_device():
    t = ag.tensor([1.0], device="cpu")
    assert t.device is Device("cpu") and str(t.device) == "cpu"
    assert t.device.backend is backends.get("numpy")
    assert t.device.xp is np
    assert isinstance(t.data, np.ndarray)


def test_default_device_tensors():
    t = ag.zeros(2)
    assert t.device is ag.get_default_device()
    assert str(t.device) in {"cpu"} or str(t.device).startswith("cuda:")


# -- registry ---------------------------------------------------------------------------------------


def test_available_contains_numpy():
    names = backends.available()
    assert isinstance(names, list)
    assert "numpy" in names


def test_diagnose_reports_every_known_backend():
    report = backends.diagnose()
    assert report["numpy"] == "available"
    assert "cupy" in report
    assert isinstance(report["cupy"], str) and report["cupy"]
    for name, why in report.items():
        assert (why == "available") == (name in backends.available())


def test_get_unknown_backend_raises_key_error():
    with pytest.raises(KeyError):
        backends.get("no-such-backend")


def test_register_rejects_non_backends():
    with pytest.raises(TypeError):
        backends.register("bogus", object())


def test_unknown_device_type_raises_runtime_error():
    with pytest.raises(RuntimeError, match="nosuchdev"):
        ag.zeros(2, device="nosuchdev")


def test_cuda_without_usable_cupy_says_what_is_missing_and_how_to_install():
    try:
        Device("cuda").backend
    except RuntimeError as exc:
        msg = str(exc)
    else:
        pytest.skip("a backend serves 'cuda' on this machine")
    assert INSTALL_HINT in msg
    assert "CuPy" in msg
    assert any(word in msg for word in ("not installed", "driver", "GPU"))
    with pytest.raises(RuntimeError, match="xpgrad"):
        ag.zeros(2, device="cuda")
    with pytest.raises(RuntimeError, match="xpgrad"):
        ag.tensor([1.0], device="cpu").to("cuda")


def test_cupy_missing_is_reported_with_install_hint(monkeypatch, clean_registry):
    from xpgrad.backends.cupy_backend import CupyBackend

    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` now raises ImportError
    backend = CupyBackend()
    ok, why = backend.availability()
    assert not ok
    assert "CuPy is not installed" in why and INSTALL_HINT in why
    backends.register("cupy_missing", backend, device_type="fakecuda")
    assert "cupy_missing" not in backends.available()
    assert backends.diagnose()["cupy_missing"] == why
    with pytest.raises(RuntimeError) as info:
        ag.zeros(2, device="fakecuda")
    assert "CuPy is not installed" in str(info.value) and INSTALL_HINT in str(info.value)


class _FakeCudaError(Exception):
    def __init__(self, status, text):
        super().__init__(text)
        self.status = status


def _fake_cupy(device_count, driver_version=12040, runtime_version=12080):
    """A stand-in for the cupy module, enough for the availability probe."""
    from types import SimpleNamespace

    def get_device_count():
        if isinstance(device_count, Exception):
            raise device_count
        return device_count

    runtime = SimpleNamespace(
        getDeviceCount=get_device_count,
        driverGetVersion=lambda: driver_version,
        runtimeGetVersion=lambda: runtime_version,
    )
    return SimpleNamespace(__version__="13.0.0", cuda=SimpleNamespace(runtime=runtime))


@pytest.mark.parametrize("fake,missing", [
    (_fake_cupy(_FakeCudaError(35, "cudaErrorInsufficientDriver")), "driver"),
    (_fake_cupy(_FakeCudaError(100, "cudaErrorNoDevice"), driver_version=12080), "GPU"),
    (_fake_cupy(_FakeCudaError(999, "cudaErrorUnknown"), driver_version=0), "driver"),
    (_fake_cupy(OSError("libcuda.so.1: cannot open shared object file"), driver_version=0), "driver"),
    (_fake_cupy(0), "GPU"),
], ids=["old-driver", "no-gpu", "no-driver", "no-libcuda", "zero-devices"])
def test_cupy_without_usable_gpu_says_which_is_missing_and_how_to_install(fake, missing):
    from xpgrad.backends.cupy_backend import probe_cupy

    why = probe_cupy(fake)
    assert why is not None
    assert missing in why
    assert INSTALL_HINT in why


def test_cupy_probe_accepts_a_working_gpu():
    from xpgrad.backends.cupy_backend import probe_cupy

    assert probe_cupy(_fake_cupy(1)) is None


def test_registered_backend_serves_a_new_device_end_to_end(clean_registry):
    backends.register("alt_numpy", AltBackend())
    assert "alt_numpy" in backends.available()
    assert backends.get("alt_numpy").device_type == "altdev"
    dev = Device("altdev")
    assert str(dev) == "altdev:0"
    assert isinstance(dev.backend, AltBackend)

    x = ag.tensor([1.0, 2.0, 3.0], device="altdev", requires_grad=True)
    w = ag.ones(3, device="altdev")
    assert x.device is dev and w.device is dev
    y = (ag.tanh(x) * w * x).sum()
    assert y.device is dev
    y.backward()
    assert x.grad.device is dev
    xv = np.array([1.0, 2.0, 3.0])
    t = np.tanh(xv)
    np.testing.assert_allclose(x.grad.numpy(), t + xv * (1 - t * t), rtol=1e-6)

    # Moving to and from the new device is explicit and differentiable.
    home = ag.get_default_device()
    z = x.to(home)
    assert z.device is home
    (z * z).sum().backward()
    assert x.grad.device is dev
    np.testing.assert_allclose(x.grad.numpy(), t + xv * (1 - t * t) + 2 * xv, rtol=1e-6)


def test_mixing_devices_raises_naming_both(clean_registry):
    backends.register("alt_numpy", AltBackend())
    a = ag.tensor([1.0, 2.0], device="altdev", requires_grad=True)
    b = ag.ones(2)
    for op in (lambda: a + b, lambda: b * a, lambda: ag.maximum(a, b), lambda: ag.where(b > 0, a, b),
               lambda: ag.matmul(a, b)):
        with pytest.raises(RuntimeError) as info:
            op()
        msg = str(info.value)
        assert str(a.device) in msg and str(b.device) in msg


def test_mixing_devices_in_inplace_and_gradient_seed_raises(clean_registry):
    backends.register("alt_numpy", AltBackend())
    a = ag.tensor([1.0, 2.0], device="altdev")
    b = ag.ones(2)
    with pytest.raises(RuntimeError):
        a.add_(b)
    x = ag.tensor([1.0, 2.0], device="altdev", requires_grad=True)
    with pytest.raises(RuntimeError):
        (x * 2.0).backward(ag.ones(2))


def test_register_replaces_the_backend_of_a_device_type(clean_registry):
    backends.register("alt_numpy", AltBackend())
    first = Device("altdev").backend

    class AltBackend2(AltBackend):
        name = "alt_numpy2"

    backends.register("alt_numpy2", AltBackend2())
    assert isinstance(Device("altdev").backend, AltBackend2)
    assert Device("altdev").backend is not first


def test_backend_base_class_defaults():
    b = backends.get("numpy")
    assert isinstance(b, Backend)
    target = np.zeros(3)
    b.scatter_add(target, (np.array([0, 0, 2]),), np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(target, [3.0, 0.0, 3.0])
    e = Backend.erf(b, np.array([0.0, 1.0], dtype=np.float32))
    assert e.dtype == np.float32
    np.testing.assert_allclose(e, [0.0, 0.8427007929497149], rtol=1e-6)
    assert b.to_numpy(target) is target
    b.synchronize()
    for kind in ("adam", "sgd_momentum", "softmax_cross_entropy_backward", "no_such_kind"):
        assert Backend().fused(kind) is None  # no fused kernels: callers run the generic array code
        assert b.fused(kind) is None


def test_numpy_backend_seed_is_reproducible():
    b = backends.get("numpy")
    b.seed(7)
    u1, n1, p1 = b.uniform((4,), 0.0, 1.0, np.float32), b.normal((4,), 0.0, 1.0, np.float64), b.permutation(5)
    b.seed(7)
    u2, n2, p2 = b.uniform((4,), 0.0, 1.0, np.float32), b.normal((4,), 0.0, 1.0, np.float64), b.permutation(5)
    np.testing.assert_array_equal(u1, u2)
    np.testing.assert_array_equal(n1, n2)
    np.testing.assert_array_equal(p1, p2)
    assert u1.dtype == np.float32 and n1.dtype == np.float64
    u = b.uniform((1000,), -2.0, 3.0, np.float64)
    assert u.min() >= -2.0 and u.max() < 3.0


# -- NumpyBackend.scatter_add: the flattened row path against np.add.at --------------------------
@pytest.mark.parametrize("index_dtype", [np.int64, np.int32, np.uint16, np.uint64])
@pytest.mark.parametrize("row_shape", [(5,), (3, 4), (1,)])
def test_numpy_row_scatter_add_matches_add_at(index_dtype, row_shape):
    rng = np.random.default_rng(0)
    num = 7
    index = rng.integers(0, num, 40).astype(index_dtype)  # many repeats
    values = rng.standard_normal((40,) + row_shape).astype(np.float32)
    expected = np.zeros((num,) + row_shape, np.float32)
    np.add.at(expected, index, values)
    got = np.zeros((num,) + row_shape, np.float32)
    backends.get("numpy").scatter_add(got, index, values)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    got_tuple = np.zeros((num,) + row_shape, np.float32)
    backends.get("numpy").scatter_add(got_tuple, (index,), values)
    np.testing.assert_array_equal(got_tuple, got)


def test_numpy_row_scatter_add_in_chunks_and_with_negative_indices(monkeypatch):
    from xpgrad.backends import numpy_backend

    monkeypatch.setattr(numpy_backend, "_SCATTER_CHUNK", 8)  # 2 rows of 4 per chunk: many chunks
    index = np.array([0, -1, 2, 2, -3, 0, 1, 4, 4, 4, -5])
    values = np.arange(44, dtype=np.float64).reshape(11, 4)
    expected = np.zeros((5, 4))
    np.add.at(expected, index, values)
    got = np.zeros((5, 4))
    backends.get("numpy").scatter_add(got, index, values)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("case", ["out_of_range", "negative_out_of_range", "broadcast_values", "f_order", "empty"])
def test_numpy_row_scatter_add_falls_back_to_add_at(case):
    target = np.zeros((4, 3))
    index = np.array([0, 3, 3])
    values = np.ones((3, 3))
    if case == "out_of_range":
        index = np.array([0, 4])
        values = np.ones((2, 3))
    elif case == "negative_out_of_range":
        index = np.array([-5])
        values = np.ones((1, 3))
    elif case == "broadcast_values":
        values = np.ones(3)
    elif case == "f_order":
        target = np.zeros((4, 3), order="F")
    elif case == "empty":
        index = np.array([], dtype=np.int64)
        values = np.ones((0, 3))
    expected = target.copy()
    try:
        np.add.at(expected, index, values)
    except IndexError as e:
        with pytest.raises(IndexError, match=str(e).split(" ")[0]):
            backends.get("numpy").scatter_add(target, index, values)
        assert not target.any()
        return
    backends.get("numpy").scatter_add(target, index, values)
    np.testing.assert_array_equal(target, expected)
