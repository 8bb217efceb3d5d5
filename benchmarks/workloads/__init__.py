"""The workloads, in the order they run. Each module offers ``build(cfg) -> list[Bench]`` and
``implementations(cfg)`` (the contenders' objects, which the tests check against each other)."""
from __future__ import annotations

import importlib

from ._common import Config

__all__ = ["WORKLOADS", "Config", "module", "build"]

WORKLOADS = ("op_overhead", "mlp_small", "mlp_large", "adam_step", "memory", "lstm", "digits")


def module(name: str):
    if name not in WORKLOADS:
        raise KeyError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    return importlib.import_module(f"{__name__}.{name}")


def build(name: str, cfg: Config):
    return module(name).build(cfg)
