"""adam_step: one Adam update over 10M parameters (four 1250x2000 tensors whose grads are set).

This is memory-bandwidth work: each step streams parameter, gradient and both moment buffers.
The reference updates everything in place through one scratch buffer per tensor, i.e. the
fewest passes NumPy allows for PyTorch's formula
``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.
"""
from __future__ import annotations

import math

import numpy as np

from ..runner import Bench, Contender
from ._common import (
    Config, Impl, array_module, configure_torch_threads, construct, to_device_array, to_host, torch_device,
    torch_dtype, torch_sync, xp_sync, xpgrad_sync,
)

NAMES = ("adam_step",)
SIZES = {"full": [(1250, 2000)] * 4, "tiny": [(10, 20), (7,), (3, 4, 5)]}
LR, BETAS, EPS = 1e-3, (0.9, 0.999), 1e-8


def setup(cfg: Config) -> dict:
    rng = np.random.default_rng(cfg.seed)
    params = [(0.1 * rng.standard_normal(s)).astype(cfg.dtype) for s in SIZES[cfg.size]]
    grads = [rng.standard_normal(s).astype(cfg.dtype) for s in SIZES[cfg.size]]
    return {"params": params, "grads": grads}


class XpgradAdam(Impl):
    def __init__(self, data: dict, cfg: Config) -> None:
        from xpgrad import autograd as ag
        from xpgrad import nn
        from xpgrad import optim

        self.params = []
        for p, g in zip(data["params"], data["grads"]):
            param = nn.Parameter(ag.tensor(p, device=cfg.device))
            param.grad = ag.tensor(g, device=cfg.device)
            self.params.append(param)
        self.optimizer = optim.Adam(self.params, lr=LR, betas=BETAS, eps=EPS)
        self.sync = xpgrad_sync(cfg.device)

    def step(self) -> None:
        self.optimizer.step()

    def check(self):
        self.step()
        return None, {f"p{i}": p.numpy() for i, p in enumerate(self.params)}


class NumpyAdam(Impl):
    """Adam with PyTorch's update rule, in place, one scratch buffer per tensor."""

    def __init__(self, data: dict, cfg: Config | None = None, *, xp=None, params=None, grads=None,
                 lr: float = LR) -> None:
        xp = self.xp = xp if xp is not None else array_module(cfg.device)
        self.params = params if params is not None else [to_device_array(p.copy(), xp) for p in data["params"]]
        self.grads = grads if grads is not None else [to_device_array(g, xp) for g in data["grads"]]
        self.exp_avg = [xp.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [xp.zeros_like(p) for p in self.params]
        self.scratch = [xp.empty_like(p) for p in self.params]
        self.lr = lr
        self.t = 0
        self.sync = xp_sync(xp)

    def step(self) -> None:
        xp = self.xp
        b1, b2 = BETAS
        self.t += 1
        step_size = self.lr / (1 - b1 ** self.t)
        bias2_sqrt = math.sqrt(1 - b2 ** self.t)
        for p, g, m, v, tmp in zip(self.params, self.grads, self.exp_avg, self.exp_avg_sq, self.scratch):
            m *= b1
            xp.multiply(g, 1 - b1, out=tmp)
            m += tmp
            v *= b2
            xp.multiply(g, g, out=tmp)
            tmp *= 1 - b2
            v += tmp
            xp.sqrt(v, out=tmp)
            tmp /= bias2_sqrt
            tmp += EPS
            xp.divide(m, tmp, out=tmp)
            tmp *= step_size
            p -= tmp

    def check(self):
        self.step()
        return None, {f"p{i}": to_host(p) for i, p in enumerate(self.params)}


class TorchAdam(Impl):
    def __init__(self, data: dict, cfg: Config) -> None:
        import torch

        configure_torch_threads()
        dev, dt = torch_device(cfg.device), torch_dtype(cfg.dtype)
        self.params = []
        for p, g in zip(data["params"], data["grads"]):
            param = torch.nn.Parameter(torch.tensor(p, dtype=dt, device=dev))
            param.grad = torch.tensor(g, dtype=dt, device=dev)
            self.params.append(param)
        # PyTorch's own default implementation choice (for-loop on CPU, foreach on CUDA).
        self.optimizer = torch.optim.Adam(self.params, lr=LR, betas=BETAS, eps=EPS)
        self.sync = torch_sync(cfg.device)

    def step(self) -> None:
        self.optimizer.step()

    def check(self):
        self.step()
        return None, {f"p{i}": p.detach().cpu().numpy() for i, p in enumerate(self.params)}


def implementations(cfg: Config) -> dict[str, Impl]:
    data = setup(cfg)
    return construct({"xpgrad": lambda: XpgradAdam(data, cfg), "numpy": lambda: NumpyAdam(data, cfg),
                      "torch": lambda: TorchAdam(data, cfg)}, cfg)


def build(cfg: Config) -> list[Bench]:
    impls = implementations(cfg)
    n = sum(int(np.prod(s)) for s in SIZES[cfg.size])
    return [Bench(
        "adam_step", "ms", 1e3, [Contender(k, i.step, i.sync) for k, i in impls.items()],
        repeat=cfg.repeat_or(20),
        info={"parameters": n, "shapes": SIZES[cfg.size], "lr": LR, "betas": BETAS, "eps": EPS,
              "description": f"optimizer.step() of Adam over {n:,} parameters with gradients already set"},
    )]
