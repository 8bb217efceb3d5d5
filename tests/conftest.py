"""Test-wide settings: hypothesis profiles and guards against leaked global state.

Profiles: ``ci`` (default; derandomized so CI is reproducible) and ``dev`` (many more examples):
``HYPOTHESIS_PROFILE=dev python -m pytest``.
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
    import autograd as ag

    yield
    assert ag.is_grad_enabled(), "a test left grad mode disabled"
    assert not ag.is_anomaly_enabled(), "a test left anomaly mode enabled"
    assert ag.get_default_dtype() == np.float32, "a test left a non-default default dtype"
