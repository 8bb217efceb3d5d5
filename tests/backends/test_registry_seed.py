"""The backend registry's remembered seed (``ag.manual_seed`` without importing CuPy) and ``unregister``."""
from __future__ import annotations

import copy
import importlib
import sys
import types

import numpy as np
import pytest

from xpgrad import autograd as ag
from xpgrad import backends
from xpgrad.backends import registry
from xpgrad.backends.device import Device, _cache

LAZY_TYPE = "xpgrad_lazy_test"  # a device type only these tests use
TYPE_A, TYPE_B = "xpgrad_test_a", "xpgrad_test_b"


@pytest.fixture
def fresh_registry():
    """Let a test change the registry freely: its tables are copies, put back afterwards."""
    names = ("_by_name", "_by_device_type", "_lazy", "_replaced", "_seed")
    saved = {n: getattr(registry, n) for n in names}
    for n in names:
        setattr(registry, n, copy.deepcopy(saved[n]) if n in ("_replaced", "_seed") else dict(saved[n]))
    try:
        yield registry
    finally:
        for n, v in saved.items():
            setattr(registry, n, v)
        for dev in list(_cache.values()):  # resolved under the test's tables: resolve again from the real ones
            dev._backend = None


class RecordingBackend(backends.Backend):
    """A backend that counts how often it is built and remembers the seeds it was given."""

    name = "recording"
    device_type = LAZY_TYPE
    xp = np
    array_type = np.ndarray
    built = 0
    usable = True

    def __init__(self) -> None:
        type(self).built += 1
        self.seeds: list[int] = []

    def availability(self):
        return (True, "available") if self.usable else (False, "not on this machine")

    def seed(self, seed: int) -> None:
        if not self.usable:
            raise AssertionError("an unusable backend must not be seeded")
        self.seeds.append(seed)


def _lazy_backend_module(monkeypatch, usable: bool = True) -> type:
    """Put a module holding a fresh RecordingBackend subclass where the registry's lazy import finds it."""
    cls = type("LazyBackend", (RecordingBackend,), {"built": 0, "usable": usable})
    module = types.ModuleType("_xpgrad_test_lazy_backend")
    module.LazyBackend = cls
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return cls


# -- manual_seed -------------------------------------------------------------------------------------------

def test_manual_seed_does_not_import_cupy(fresh_registry, monkeypatch):
    # As on a machine that never used "cuda": the CuPy backend not built yet, only known lazily.
    fresh_registry._by_name.pop("cupy", None)
    for type_, owner in list(fresh_registry._by_device_type.items()):
        if owner == "cupy":
            del fresh_registry._by_device_type[type_]
    fresh_registry._lazy["cupy"] = ("cuda", "xpgrad.backends.cupy_backend", "CupyBackend")

    touched: list[str] = []

    class RecordingModule(types.ModuleType):
        # Any `import cupy` reads the cached module's __spec__; any use reads some attribute.
        def __getattribute__(self, name):
            touched.append(name)
            return super().__getattribute__(name)

    monkeypatch.setitem(sys.modules, "cupy", RecordingModule("cupy"))

    ag.manual_seed(0)
    assert touched == [], f"manual_seed imported or used cupy (read {touched})"
    assert "cupy" not in fresh_registry._by_name, "manual_seed built the CuPy backend"

    importlib.import_module("cupy")  # the detector itself works: an import is seen
    assert touched


def test_manual_seed_makes_rand_and_randn_reproducible():
    ag.manual_seed(123)
    a, b = ag.rand(4, 3).numpy(), ag.randn(5, dtype=ag.float64).numpy()
    ag.manual_seed(123)
    np.testing.assert_array_equal(ag.rand(4, 3).numpy(), a)
    np.testing.assert_array_equal(ag.randn(5, dtype=ag.float64).numpy(), b)
    ag.manual_seed(124)
    assert not np.array_equal(ag.rand(4, 3).numpy(), a)


def test_a_backend_built_after_manual_seed_starts_from_that_seed(fresh_registry, monkeypatch):
    cls = _lazy_backend_module(monkeypatch)
    fresh_registry._lazy["lazyfake"] = (LAZY_TYPE, "_xpgrad_test_lazy_backend", "LazyBackend")
    ag.manual_seed(7)
    assert cls.built == 0, "manual_seed built a backend nobody used"
    backend = Device(LAZY_TYPE).backend  # first use builds it
    assert cls.built == 1 and backend.seeds == [7]
    ag.manual_seed(8)  # once built, it is seeded directly
    assert backend.seeds == [7, 8]
    assert backends.get("lazyfake") is backend and cls.built == 1


def test_no_seed_is_given_before_manual_seed(fresh_registry, monkeypatch):
    _lazy_backend_module(monkeypatch)
    fresh_registry._seed[0] = None
    fresh_registry._lazy["lazyfake"] = (LAZY_TYPE, "_xpgrad_test_lazy_backend", "LazyBackend")
    assert backends.get("lazyfake").seeds == []


def test_unusable_backends_are_not_seeded(fresh_registry, monkeypatch):
    cls = _lazy_backend_module(monkeypatch, usable=False)
    fresh_registry._lazy["lazyfake"] = (LAZY_TYPE, "_xpgrad_test_lazy_backend", "LazyBackend")
    ag.manual_seed(3)
    assert backends.get("lazyfake").seeds == []  # built after the seed, unusable: not seeded
    ag.manual_seed(4)  # built and unusable: skipped (its seed() would raise)
    assert cls.built == 1


# -- unregister --------------------------------------------------------------------------------------------

def _backend(device_type: str) -> RecordingBackend:
    backend = RecordingBackend()
    backend.device_type = device_type
    return backend


def test_unregister_forgets_the_backend(fresh_registry):
    a = _backend(TYPE_A)
    backends.register("a", a)
    assert Device(TYPE_A).backend is a
    backends.unregister("a")
    with pytest.raises(KeyError, match="no backend named 'a'"):
        backends.get("a")
    with pytest.raises(RuntimeError, match="no backend serves device type"):
        _ = Device(TYPE_A).backend
    with pytest.raises(KeyError, match="no backend named 'a'"):
        backends.unregister("a")


def test_unregister_gives_the_device_type_back_to_its_previous_backend(fresh_registry):
    a, b = _backend(TYPE_A), _backend(TYPE_A)
    backends.register("a", a)
    backends.register("b", b)
    assert Device(TYPE_A).backend is b
    backends.unregister("b")
    assert Device(TYPE_A).backend is a
    backends.register("b", b)
    backends.register("b", b)  # registering again must not make b its own predecessor
    backends.unregister("b")
    assert Device(TYPE_A).backend is a


def test_unregister_of_a_replaced_backend_passes_its_predecessor_on(fresh_registry):
    a, b, c = _backend(TYPE_A), _backend(TYPE_A), _backend(TYPE_A)
    backends.register("a", a)
    backends.register("b", b)
    backends.register("c", c)
    backends.unregister("b")  # not serving: c still does, and falls back to a later
    assert Device(TYPE_A).backend is c
    backends.unregister("c")
    assert Device(TYPE_A).backend is a
    backends.unregister("a")
    with pytest.raises(RuntimeError, match="no backend serves"):
        _ = Device(TYPE_A).backend


def test_unregister_brings_a_lazy_builtin_back(fresh_registry, monkeypatch):
    cls = _lazy_backend_module(monkeypatch)
    fresh_registry._lazy["lazyfake"] = (LAZY_TYPE, "_xpgrad_test_lazy_backend", "LazyBackend")
    mine = _backend(LAZY_TYPE)
    backends.register("mine", mine)
    assert Device(LAZY_TYPE).backend is mine and cls.built == 0
    backends.unregister("mine")
    assert isinstance(Device(LAZY_TYPE).backend, cls)


def test_moving_a_name_to_another_device_type_gives_the_old_one_back(fresh_registry):
    a, b = _backend(TYPE_A), _backend(TYPE_A)
    backends.register("a", a)
    backends.register("b", b)
    backends.register("b", b, device_type=TYPE_B)
    assert Device(TYPE_A).backend is a and Device(TYPE_B).backend is b
    backends.unregister("b")
    assert Device(TYPE_A).backend is a
    with pytest.raises(RuntimeError, match="no backend serves"):
        _ = Device(TYPE_B).backend


def test_standin_uninstall_restores_what_served_cuda(fresh_registry):
    from xpgrad.backends.testing import standin

    mine = _backend("cuda")
    backends.register("mine", mine)  # takes "cuda" over (from the stand-in too, under --device=standin)
    standin.install()
    assert standin.is_installed() and Device("cuda").backend is standin._BACKEND
    standin.uninstall()
    assert not standin.is_installed() and Device("cuda").backend is mine
    standin.uninstall()  # not installed: nothing to do
    assert Device("cuda").backend is mine
    backends.unregister("mine")
    assert fresh_registry._by_device_type.get("cuda") in (None, "cupy")  # back to CuPy, built lazily
