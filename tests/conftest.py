"""Test-wide settings: hypothesis profiles and guards against leaked global state.

Profiles: ``ci`` (default; derandomized so CI is reproducible) and ``dev`` (many more examples):
``HYPOTHESIS_PROFILE=dev python -m pytest``.

Devices: ``--device=cpu`` (default, or env XPGRAD_TEST_DEVICE), ``--device=standin`` (the whole suite
on "cuda" served by the GPU-free stand-in backend, whose arrays refuse implicit host conversion and
host/device mixing) or ``--device=cuda`` (real CuPy and a GPU, required). The chosen device becomes
``ag.set_default_device`` for the session. Markers: ``cpu_only`` (skipped on other devices: CPU-only
semantics such as ``ag.from_numpy`` sharing memory) and ``gpu`` (needs CuPy and a CUDA device).
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=25, derandomize=True, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", max_examples=300, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _grad_mode_restored():
    """Every test must leave grad mode, anomaly mode and the default dtype as it found them."""
    from xpgrad import autograd as ag

    yield
    assert ag.is_grad_enabled(), "a test left grad mode disabled"
    assert not ag.is_anomaly_enabled(), "a test left anomaly mode enabled"
    assert ag.get_default_dtype() == np.float32, "a test left a non-default default dtype"


# -- device selection -----------------------------------------------------------------------------------

DEVICES = ("cpu", "standin", "cuda")


def pytest_addoption(parser):
    parser.addoption(
        "--device", choices=DEVICES, default=os.environ.get("XPGRAD_TEST_DEVICE", "cpu"),
        help="run the suite's tensors on this device: cpu (default), standin (GPU-free stand-in serving "
        "'cuda'), cuda (real CuPy + GPU). Default from env XPGRAD_TEST_DEVICE.",
    )


def pytest_configure(config):
    from xpgrad import autograd as ag

    device = config.getoption("--device", default="cpu")
    if device not in DEVICES:
        raise pytest.UsageError(f"--device must be one of {DEVICES}, got {device!r}")
    if device == "standin":
        from xpgrad.backends.testing import standin

        standin.install("cuda")
        ag.set_default_device("cuda")
    elif device == "cuda":
        ok, why = _real_gpu()
        if not ok:
            raise pytest.UsageError(f"--device=cuda needs CuPy and a usable CUDA GPU: {why}")
        ag.set_default_device("cuda")
    config._xpgrad_device = device


def pytest_report_header(config):
    return f"xpgrad test device: {getattr(config, '_xpgrad_device', 'cpu')}"


_gpu_probe: list = []


def _real_gpu() -> tuple[bool, str]:
    """(True, "") when CuPy imports and sees at least one CUDA device, else (False, why). Cached."""
    if not _gpu_probe:
        from xpgrad.backends.cupy_backend import CupyBackend

        ok, why = CupyBackend().availability()  # a fresh instance: no registry side effects
        _gpu_probe.append((ok, "" if ok else why))
    return _gpu_probe[0]


def pytest_collection_modifyitems(config, items):
    device = getattr(config, "_xpgrad_device", "cpu")
    # Lets the GPU tests' own logic be exercised without a GPU: their tensors then go to the stand-in.
    gpu_on_standin = device == "standin" and os.environ.get("XPGRAD_GPU_TESTS_ON_STANDIN") == "1"
    for item in items:
        if device != "cpu" and item.get_closest_marker("cpu_only") is not None:
            item.add_marker(pytest.mark.skip(reason="CPU-only semantics"))
        if item.get_closest_marker("gpu") is not None and not gpu_on_standin:
            ok, why = _real_gpu()
            if not ok:
                item.add_marker(pytest.mark.skip(reason=f"needs CuPy and a CUDA GPU: {why}"))


@pytest.fixture
def test_device(request) -> str:
    """The device the suite runs on: "cpu", or "cuda" for --device=standin/cuda."""
    return "cpu" if request.config._xpgrad_device == "cpu" else "cuda"


@pytest.fixture(autouse=True)
def _default_device_restored(request):
    """Every test must leave the session's default device as it found it."""
    from xpgrad import autograd as ag

    before = ag.get_default_device()
    yield
    after = ag.get_default_device()
    if after is not before:
        ag.set_default_device(before)  # do not let the leak poison later tests
        pytest.fail(f"a test left the default device changed ({before} -> {after})")
