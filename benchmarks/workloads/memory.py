"""memory: peak memory of one SGD training step of a deep MLP, relative to a theoretical minimum.

Model 2048-(2048 x 8)-10 (eight hidden Linear+ReLU layers of width 2048), batch 512, float32.
Each sample runs in a fresh subprocess (``python -m xpgrad.benchmarks.workloads.memory``):

1. build the model, optimizer and batch; run one warm-up step (first-call buffers of BLAS,
   optimizer state, lazy initialisation), then free the gradients (``zero_grad(set_to_none=True)``)
   and collect garbage;
2. baseline = memory in use now (parameters, batch, optimizer state, interpreter, libraries);
3. run one step (forward, loss, backward, SGD update) and record the peak; report peak - baseline.

How the peak is read:
- CPU: the resident-set high-water mark (``VmHWM`` from /proc/self/status, reset through
  /proc/self/clear_refs just before the step), for every contender alike. The subprocess runs with
  ``MALLOC_MMAP_THRESHOLD_=65536`` so glibc returns every freed buffer of 64 KiB or more to the OS
  at once; otherwise freed-but-kept heap memory would blur who needed what. For the NumPy-based
  contenders a second step is also traced with ``tracemalloc`` (NumPy reports its buffers to it),
  which counts exact bytes; it is stored in the JSON as a cross-check (torch does not report to
  tracemalloc, so its entry is None). Where /proc/self/clear_refs is unavailable, tracemalloc is
  the figure (and torch gets none).
- CUDA: CuPy memory-pool bytes in use (a MemoryHook tracking malloc/free) for xpgrad and the CuPy
  reference, ``torch.cuda.max_memory_allocated`` for torch: bytes handed to tensors, not the
  pools' cached reserve.

Theoretical minimum (the denominator), counted as bytes of
- every gradient: all weights and biases (itemsize * number of parameters), and
- every activation backward needs: the output of each hidden ReLU (it is both the ReLU's own
  backward mask and the next Linear's input for its weight gradient: batch x 2048 for each of
  the eight hidden layers) plus the softmax probabilities of the loss (batch x 10).
The input batch and the parameters exist before the step and sit in the baseline, so neither
is counted; nor are the labels. The true minimum peak of a perfect implementation differs
slightly: backward needs one or two batch x 2048 gradient buffers in flight (more), and it may
free each activation as soon as its layer is done (less), so a ratio a little under 1.0 is
possible. The hand-written reference shows what plain NumPy reaches.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys

import numpy as np

from ..runner import Bench, Contender
from . import _mlp
from ._common import Config, torch_or_none

NAMES = ("memory",)
SIZES = {
    "full": {"layers": [2048] + [2048] * 8 + [10], "batch": 512},
    "tiny": {"layers": [32] + [32] * 3 + [10], "batch": 16},
}
LR = 0.01
MMAP_THRESHOLD = 65536


def theoretical_min_bytes(layers: list[int], batch: int, dtype=np.float32) -> dict:
    itemsize = np.dtype(dtype).itemsize
    n_params = sum(i * o + o for i, o in zip(layers[:-1], layers[1:]))
    hidden = layers[1:-1]
    activations = batch * sum(hidden) + batch * layers[-1]
    return {
        "gradient_bytes": n_params * itemsize,
        "activation_bytes": activations * itemsize,
        "total_bytes": (n_params + activations) * itemsize,
    }


# -- inside the subprocess ------------------------------------------------------------------------------
def _release_grads(impl) -> None:
    optimizer = getattr(impl, "optimizer", None)
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)


def _status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def _rss_peak(impl) -> int | None:
    if not _reset_hwm():
        return None
    base = _status_kib("VmRSS")
    impl.step()
    peak = _status_kib("VmHWM")
    return max(0, (peak - base) * 1024)


def _tracemalloc_peak(impl) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        impl.step()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _cupy_peak(impl) -> int:
    import cupy

    class PeakHook(cupy.cuda.MemoryHook):
        name = "BenchmarkPeakHook"

        def __init__(self) -> None:
            self.current = 0
            self.peak = 0

        def malloc_postprocess(self, **kw) -> None:
            self.current += kw["mem_size"]
            self.peak = max(self.peak, self.current)

        def free_postprocess(self, **kw) -> None:
            self.current -= kw["mem_size"]

    hook = PeakHook()
    impl.sync()
    with hook:
        impl.step()
        impl.sync()
    return hook.peak


def _torch_cuda_peak(impl) -> int:
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    impl.step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def measure(contender: str, cfg: Config) -> dict:
    """Run in a fresh process: one warm-up step, free the grads, measure one step's peak."""
    size = SIZES[cfg.size]
    data = _mlp.setup(size["layers"], size["batch"], cfg)
    impl = _mlp.IMPLS[contender](data, cfg, LR)
    del data
    impl.step()
    impl.sync()
    out: dict = {"contender": contender, "device": cfg.device}
    cuda = cfg.device.startswith("cuda")

    def fresh() -> None:
        _release_grads(impl)
        gc.collect()

    fresh()
    if cuda:
        out["method"] = "torch.cuda.max_memory_allocated" if contender == "torch" else "cupy pool MemoryHook"
        out["peak_bytes"] = _torch_cuda_peak(impl) if contender == "torch" else _cupy_peak(impl)
        return out
    rss = _rss_peak(impl)
    out["rss_bytes"] = rss
    out["tracemalloc_bytes"] = None
    if contender != "torch":
        fresh()
        out["tracemalloc_bytes"] = _tracemalloc_peak(impl)
    if rss is not None:
        out["method"], out["peak_bytes"] = "rss high-water mark", rss
    else:
        out["method"], out["peak_bytes"] = "tracemalloc", out["tracemalloc_bytes"]
    return out


def run_subprocess(contender: str, cfg: Config, timeout: float = 600.0) -> dict:
    """Measure ``contender`` in a fresh interpreter; returns the dict :func:`measure` built."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "xpgrad.benchmarks.workloads.memory", "--contender", contender, "--size", cfg.size,
           "--device", cfg.device, "--seed", str(cfg.seed), "--dtype", np.dtype(cfg.dtype).name]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=root)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"memory subprocess for {contender} failed: " + " | ".join(tail))
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- bench -------------------------------------------------------------------------------------------------
def contenders(cfg: Config) -> list[str]:
    names = ["xpgrad"]
    if "numpy" in cfg.compare:
        names.append("numpy")
    if "torch" in cfg.compare and torch_or_none() is not None:
        names.append("torch")
    return names


def build(cfg: Config) -> list[Bench]:
    size = SIZES[cfg.size]
    minimum = theoretical_min_bytes(size["layers"], size["batch"], cfg.dtype)
    details: dict[str, list] = {}
    info = {"layers": size["layers"], "batch": size["batch"], "theoretical_min": minimum, "details": details,
            "description": "peak memory of one training step above the pre-step baseline, divided by "
                           "(gradient bytes + bytes of the activations backward needs); fresh subprocess "
                           "per sample"}

    def make(name: str):
        def run() -> float | None:
            result = run_subprocess(name, cfg)
            details.setdefault(name, []).append(result)
            peak = result.get("peak_bytes")
            return None if peak is None else float(peak)
        return run

    return [Bench(
        "memory", "peak / min", 1.0 / minimum["total_bytes"], [Contender(n, make(n)) for n in contenders(cfg)],
        kind="value", repeat=cfg.repeat_or(1), warmup=0, info=info,
    )]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="measure one contender's peak step memory (internal)")
    parser.add_argument("--contender", required=True, choices=sorted(_mlp.IMPLS))
    parser.add_argument("--size", default="full", choices=sorted(SIZES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args(argv)
    cfg = Config(device=args.device, size=args.size, dtype=np.dtype(args.dtype), seed=args.seed)
    result = measure(args.contender, cfg)
    print(json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in result.items()}))


if __name__ == "__main__":
    main()
