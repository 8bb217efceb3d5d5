"""What the numbers were measured on: CPU, cores, BLAS and its threads, library versions, GPU."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

__all__ = ["machine_info", "describe"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _blas() -> list[dict]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "threadpoolctl not installed; BLAS unknown"}]
    import numpy  # noqa: F401  (loads NumPy's BLAS so threadpoolctl can see it)

    keep = ("user_api", "internal_api", "version", "num_threads", "threading_layer", "architecture", "prefix")
    return [{k: d.get(k) for k in keep} for d in threadpool_info()]


def _git_commit() -> str | None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _versions() -> dict:
    import numpy

    v = {"python": platform.python_version(), "numpy": numpy.__version__}
    try:
        from xpgrad import autograd

        v["xpgrad"] = getattr(autograd, "__version__", None)
    except Exception as exc:  # a broken engine import is itself worth recording
        v["xpgrad"] = f"import failed: {exc}"
    for name in ("cupy", "torch"):
        try:
            mod = __import__(name)
            v[name] = mod.__version__
        except Exception:
            v[name] = None
    return v


def _gpu(device: str) -> dict | None:
    if not device.startswith("cuda"):
        return None
    info: dict = {}
    try:
        import cupy

        index = int(device.split(":")[1]) if ":" in device else 0
        props = cupy.cuda.runtime.getDeviceProperties(index)
        name = props["name"]
        info["name"] = name.decode() if isinstance(name, bytes) else name
        info["memory_bytes"] = int(props["totalGlobalMem"])
        info["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        info["driver"] = cupy.cuda.runtime.driverGetVersion()
    except Exception as exc:
        info["cupy_error"] = f"{type(exc).__name__}: {exc}"
    try:
        import torch

        if torch.cuda.is_available():
            info.setdefault("name", torch.cuda.get_device_name(0))
            info["torch_cuda"] = torch.version.cuda
    except Exception:
        pass
    return info


def machine_info(device: str = "cpu") -> dict:
    info = {
        "cpu": _cpu_model(),
        "cores_usable": _usable_cores(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "blas": _blas(),
        "versions": _versions(),
        "git_commit": _git_commit(),
        "gpu": _gpu(device),
        "env_threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch_threads"] = None
    return info


def describe(info: dict) -> str:
    """One line for the top of the summary."""
    blas = ", ".join(f"{b.get('internal_api')} {b.get('version')} x{b.get('num_threads')}"
                     for b in info["blas"] if b.get("user_api") == "blas") or "BLAS unknown"
    v = info["versions"]
    parts = [f"{info['cpu']} ({info['cores_usable']} usable cores)", blas, f"numpy {v['numpy']}"]
    if v.get("torch"):
        parts.append(f"torch {v['torch']} x{info.get('torch_threads')}")
    if v.get("cupy") and info.get("gpu"):
        parts.append(f"cupy {v['cupy']}")
    if info.get("gpu"):
        parts.append(f"GPU {info['gpu'].get('name', info['gpu'])}")
    return "; ".join(parts)
