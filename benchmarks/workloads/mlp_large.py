"""mlp_large: one SGD training step of a 784-1024-1024-10 MLP, batch 256 (matmul-bound)."""
from __future__ import annotations

from ._common import Config
from ._mlp_bench import build_mlp_bench, mlp_implementations

NAMES = ("mlp_large",)
SIZES = {"full": {"layers": [784, 1024, 1024, 10], "batch": 256}, "tiny": {"layers": [24, 32, 32, 10], "batch": 16}}
LR = 0.1


def implementations(cfg: Config):
    return mlp_implementations(SIZES[cfg.size], cfg, LR)


def build(cfg: Config):
    return [build_mlp_bench("mlp_large", SIZES[cfg.size], cfg, LR)]
