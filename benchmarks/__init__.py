"""xpgrad benchmarks: xpgrad against a hand-written NumPy/CuPy reference and PyTorch.

Command line: ``python -m xpgrad.benchmarks --help``. From Python::

    from xpgrad.benchmarks import run_benchmarks
    results = run_benchmarks(["mlp_small"], size="tiny", repeat=3)
"""
from __future__ import annotations

from typing import Sequence

__all__ = ["run_benchmarks"]


def run_benchmarks(names: Sequence[str] | None = None, device: str = "cpu", size: str = "full",
                   compare: Sequence[str] = ("numpy", "torch"), repeat: int | None = None, seed: int = 0,
                   progress: bool = False):
    """Build and run the named workloads (all by default) one after another; returns the Results.

    Each workload is built just before it runs and dropped afterwards, so the big ones never
    hold memory at the same time.
    """
    from .runner import run_bench
    from .workloads import WORKLOADS, Config, build
    from .workloads._common import configure_torch_threads

    cfg = Config(device=device, size=size, compare=tuple(compare), repeat=repeat, seed=seed)
    if "torch" in cfg.compare:
        configure_torch_threads()
    results = []
    for name in names or WORKLOADS:
        for bench in build(name, cfg):
            results.append(run_bench(bench, progress=progress))
            del bench
    return results
