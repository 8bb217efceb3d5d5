"""xpgrad lives in one import package and shares an environment with PyPI's ``autograd`` (HIPS)."""
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERIC = ("autograd", "backends", "nn", "optim", "examples", "benchmarks")

_IMPORT_EVERYTHING = """
import json, pkgutil, sys, importlib
import xpgrad
for info in pkgutil.walk_packages(xpgrad.__path__, "xpgrad."):
    if ".benchmarks" in info.name or ".examples" in info.name:
        continue  # their optional dependencies (matplotlib, sklearn) are not the point here
    importlib.import_module(info.name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in %r)))
""" % (GENERIC,)


def test_importing_every_module_occupies_no_generic_top_level_name(tmp_path):
    # From another folder, so the checkout's own folders are not on sys.path.
    out = subprocess.run([sys.executable, "-c", _IMPORT_EVERYTHING], cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out) == []


def test_everyday_names_and_subpackages():
    import xpgrad as xg
    from xpgrad import autograd as ag, backends, nn, optim

    assert xg.tensor is ag.tensor and xg.grad is ag.grad and xg.no_grad is ag.no_grad
    assert xg.nn is nn and xg.optim is optim and xg.backends is backends and xg.autograd is ag
    assert xg.Tensor is ag.Tensor and xg.exp is ag.exp
    assert set(ag.__all__) <= set(xg.__all__)
    for name in xg.__all__:
        assert hasattr(xg, name), name
    x = xg.tensor([1.0, 2.0], requires_grad=True)
    (g,) = xg.grad((x ** 2).sum(), x)
    assert g.tolist() == [2.0, 4.0]


@pytest.mark.slow
def test_fresh_venv_beside_hips_autograd(tmp_path):
    """``pip install .`` next to HIPS autograd: one top-level package, and both work."""
    # A copy of the source, so the build leaves nothing (build/, *.egg-info) in the checkout.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                              ".hypothesis", ".pytest_cache", "runs"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    pip_env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([str(py), "-m", "pip", "install", "-q", "autograd", str(src)], check=True, env=pip_env,
                   cwd=tmp_path, timeout=900)
    script = """
import json, pathlib, sys, importlib.metadata as md
import autograd                       # HIPS
import autograd.numpy as anp
import xpgrad as xg
from xpgrad import nn
hips = autograd.grad(lambda v: anp.tanh(v) * v)(0.5)
x = xg.tensor(0.5, dtype=xg.float64, requires_grad=True)
(ours,) = xg.grad(xg.tanh(x) * x, x)
model = nn.Linear(3, 2)
files = md.distribution("xpgrad").files
top = sorted({f.parts[0] for f in files if not f.parts[0].endswith((".dist-info", ".pth")) and f.parts[0] != ".."})
print(json.dumps({"hips": float(hips), "ours": ours.item(), "top": top, "hips_file": autograd.__file__}))
"""
    res = subprocess.run([str(py), "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["top"] == ["xpgrad"]
    assert "site-packages" in out["hips_file"]
    assert out["hips"] == pytest.approx(out["ours"], rel=1e-12)
