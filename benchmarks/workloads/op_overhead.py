"""op_overhead: the fixed cost per op of building and walking the graph.

A chain of cheap elementwise ops (cycling ``x * 1.0001``, ``x + 0.001``, ``tanh``) on a tiny
(16,) tensor, then ``sum``; forward and backward. With arrays this small the arithmetic is
negligible, so the time per op is the engine's bookkeeping. A second row runs the forward
chain only, with grad off (``no_grad``), where an engine should cost barely more than NumPy.
"""
from __future__ import annotations

import numpy as np

from ..runner import Bench, Contender
from ._common import (
    Config, Impl, array_module, configure_torch_threads, construct, to_device_array, to_host, torch_device,
    torch_dtype, torch_sync, xp_sync, xpgrad_sync,
)

NAMES = ("op_overhead", "op_overhead_nograd")
SIZES = {"full": {"ops": 200, "n": 16}, "tiny": {"ops": 12, "n": 16}}
MUL, ADD = 1.0001, 0.001


def setup(cfg: Config) -> dict:
    size = SIZES[cfg.size]
    rng = np.random.default_rng(cfg.seed)
    return {"ops": size["ops"], "x": (0.5 * rng.standard_normal(size["n"])).astype(cfg.dtype)}


class _EngineChain(Impl):
    """The chain through an autograd engine (``lib``: ``autograd`` or ``torch``, same spelling)."""

    lib = None

    def _forward(self):
        tanh = self.lib.tanh
        y = self.x
        for i in range(self.ops):
            k = i % 3
            y = y * MUL if k == 0 else (y + ADD if k == 1 else tanh(y))
        return y.sum()

    def step(self) -> None:
        self.x.grad = None
        self._forward().backward()

    def forward_only(self) -> None:
        with self.lib.no_grad():
            self._forward()

    def check(self):
        self.x.grad = None
        loss = self._forward()
        loss.backward()
        return float(loss.item()), {"x": self._host(self.x.grad)}


class XpgradChain(_EngineChain):
    def __init__(self, data: dict, cfg: Config) -> None:
        from xpgrad import autograd as ag

        self.lib = ag
        self.ops = data["ops"]
        self.x = ag.tensor(data["x"], device=cfg.device, requires_grad=True)
        self.sync = xpgrad_sync(cfg.device)

    @staticmethod
    def _host(t):
        return t.numpy()


class NumpyChain(Impl):
    """The same chain on arrays, with its backward written out by hand."""

    def __init__(self, data: dict, cfg: Config) -> None:
        self.xp = array_module(cfg.device)
        self.ops = data["ops"]
        self.x = to_device_array(data["x"], self.xp)
        self.sync = xp_sync(self.xp)

    def _forward(self, saved):
        tanh = self.xp.tanh
        y = self.x
        for i in range(self.ops):
            k = i % 3
            if k == 0:
                y = y * MUL
            elif k == 1:
                y = y + ADD
            else:
                y = tanh(y)
                if saved is not None:
                    saved.append(y)
        return y

    def _forward_backward(self):
        saved: list = []
        y = self._forward(saved)
        loss = y.sum()
        grad = self.xp.ones_like(y)
        for i in reversed(range(self.ops)):
            k = i % 3
            if k == 0:
                grad = grad * MUL
            elif k == 2:
                t = saved.pop()
                grad = grad * (1 - t * t)
            # k == 1 (add a constant): the gradient passes through unchanged
        return loss, grad

    def step(self) -> None:
        self._forward_backward()

    def forward_only(self) -> None:
        self._forward(None)

    def check(self):
        loss, grad = self._forward_backward()
        return float(loss), {"x": to_host(grad)}


class TorchChain(_EngineChain):
    def __init__(self, data: dict, cfg: Config) -> None:
        import torch

        configure_torch_threads()
        self.lib = torch
        self.ops = data["ops"]
        self.x = torch.tensor(data["x"], dtype=torch_dtype(cfg.dtype), device=torch_device(cfg.device),
                              requires_grad=True)
        self.sync = torch_sync(cfg.device)

    @staticmethod
    def _host(t):
        return t.detach().cpu().numpy()


def implementations(cfg: Config) -> dict[str, Impl]:
    data = setup(cfg)
    return construct({"xpgrad": lambda: XpgradChain(data, cfg), "numpy": lambda: NumpyChain(data, cfg),
                      "torch": lambda: TorchChain(data, cfg)}, cfg)


def build(cfg: Config) -> list[Bench]:
    impls = implementations(cfg)
    ops = SIZES[cfg.size]["ops"]
    repeat = cfg.repeat_or(20)
    note = f"{ops} ops on a (16,) tensor per call; time per op"
    grad = Bench(
        "op_overhead", "µs/op", 1e6 / ops,
        [Contender(n, i.step, i.sync, _label(n, cfg)) for n, i in impls.items()],
        repeat=repeat, info={"ops": ops, "description": note + " (forward + backward)"},
    )
    nograd = Bench(
        "op_overhead_nograd", "µs/op", 1e6 / ops,
        [Contender(n, i.forward_only, i.sync, _label(n, cfg)) for n, i in impls.items()],
        repeat=repeat, info={"ops": ops, "description": note + " (forward only, grad off)"},
    )
    return [grad, nograd]


def _label(name: str, cfg: Config) -> str:
    if name == "numpy":
        return "cupy" if cfg.device.startswith("cuda") else "numpy"
    return name
