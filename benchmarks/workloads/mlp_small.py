"""mlp_small: one SGD training step of a 784-128-10 MLP, batch 64 (MNIST-sized, latency-bound)."""
from __future__ import annotations

from ._common import Config
from ._mlp_bench import build_mlp_bench, mlp_implementations

NAMES = ("mlp_small",)
SIZES = {"full": {"layers": [784, 128, 10], "batch": 64}, "tiny": {"layers": [20, 16, 10], "batch": 8}}
LR = 0.1


def implementations(cfg: Config):
    return mlp_implementations(SIZES[cfg.size], cfg, LR)


def build(cfg: Config):
    return [build_mlp_bench("mlp_small", SIZES[cfg.size], cfg, LR)]
