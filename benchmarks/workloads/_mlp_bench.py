"""Bench construction shared by mlp_small and mlp_large."""
from __future__ import annotations

from ..runner import Bench, Contender
from . import _mlp
from ._common import Config, Impl, construct


def mlp_implementations(size: dict, cfg: Config, lr: float) -> dict[str, Impl]:
    data = _mlp.setup(size["layers"], size["batch"], cfg)
    return construct({name: (lambda cls=cls: cls(data, cfg, lr)) for name, cls in _mlp.IMPLS.items()}, cfg)


def build_mlp_bench(name: str, size: dict, cfg: Config, lr: float) -> Bench:
    impls = mlp_implementations(size, cfg, lr)
    layers = "-".join(str(n) for n in size["layers"])
    return Bench(
        name, "ms/step", 1e3, [Contender(n, i.step, i.sync) for n, i in impls.items()],
        repeat=cfg.repeat_or(20), rate_unit="steps/s",
        info={"layers": size["layers"], "batch": size["batch"], "lr": lr,
              "description": f"MLP {layers}, ReLU, softmax cross-entropy, SGD lr {lr}, batch {size['batch']}: "
                             "zero_grad(set_to_none) + forward + backward + step"},
    )
