"""MLP training step shared by mlp_small, mlp_large, memory and digits.

Linear layers with ReLU between them, softmax cross-entropy on integer labels (mean over the
batch), plain SGD. Weights use PyTorch's layout (out_features, in_features) and PyTorch's default
init distribution, drawn once in NumPy so every contender starts from the same numbers.
"""
from __future__ import annotations

import numpy as np

from ._common import (
    Config, Impl, array_module, configure_torch_threads, softmax_cross_entropy, to_device_array, to_host, torch_device,
    torch_dtype, torch_sync, xp_sync, xpgrad_sync,
)


def init_weights(layers: list[int], dtype, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases (PyTorch's Linear default)."""
    params = []
    for fan_in, fan_out in zip(layers[:-1], layers[1:]):
        bound = 1.0 / np.sqrt(fan_in)
        w = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(dtype)
        b = rng.uniform(-bound, bound, fan_out).astype(dtype)
        params.append((w, b))
    return params


def setup(layers: list[int], batch: int, cfg: Config) -> dict:
    rng = np.random.default_rng(cfg.seed)
    params = init_weights(layers, cfg.dtype, rng)
    x = rng.standard_normal((batch, layers[0])).astype(cfg.dtype)
    y = rng.integers(0, layers[-1], batch).astype(np.int64)
    return {"layers": list(layers), "params": params, "x": x, "y": y}


def _linear_relu_stack(lib, params) -> tuple[list, list]:
    """Linear, ReLU, ..., Linear from ``lib`` (``nn`` or ``torch.nn``, same spelling) shaped like ``params``."""
    linears, mods = [], []
    for i, (w, _) in enumerate(params):
        lin = lib.Linear(w.shape[1], w.shape[0])
        linears.append(lin)
        mods.append(lin)
        if i < len(params) - 1:
            mods.append(lib.ReLU())
    return mods, linears


class _EngineMLP(Impl):
    """The step through an autograd engine; subclasses set model, linears, x, y, cross_entropy, optimizer."""

    def forward_backward(self):
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        return loss

    def step(self) -> None:
        self.forward_backward()
        self.optimizer.step()

    def check(self):
        loss = self.forward_backward()
        grads = {}
        for i, lin in enumerate(self.linears):
            grads[f"W{i}"] = self._host(lin.weight.grad)
            grads[f"b{i}"] = self._host(lin.bias.grad)
        return float(loss.item()), grads


# -- xpgrad ---------------------------------------------------------------------------------------
def xpgrad_model(params: list[tuple[np.ndarray, np.ndarray]], device: str, dtype):
    """nn.Sequential(Linear, ReLU, ..., Linear) holding exactly ``params``; returns (model, linears)."""
    from xpgrad import autograd as ag
    from xpgrad import nn

    mods, linears = _linear_relu_stack(nn, params)
    model = nn.Sequential(*mods)
    model.to(np.dtype(dtype))
    model.to(device)
    with ag.no_grad():
        for lin, (w, b) in zip(linears, params):
            lin.weight.copy_(ag.tensor(w, device=device))
            lin.bias.copy_(ag.tensor(b, device=device))
    return model, linears


class XpgradMLP(_EngineMLP):
    def __init__(self, data: dict, cfg: Config, lr: float) -> None:
        from xpgrad import autograd as ag
        from xpgrad import nn
        from xpgrad import optim

        self.model, self.linears = xpgrad_model(data["params"], cfg.device, cfg.dtype)
        self.x = ag.tensor(data["x"], device=cfg.device)
        self.y = ag.tensor(data["y"], device=cfg.device)
        self.cross_entropy = nn.functional.cross_entropy
        self.optimizer = optim.SGD(self.model.parameters(), lr=lr)
        self.sync = xpgrad_sync(cfg.device)

    @staticmethod
    def _host(t):
        return t.numpy()


# -- hand-written reference -------------------------------------------------------------------------
class NumpyMLP(Impl):
    """Forward, backward and SGD written out on arrays: the floor for a NumPy engine.

    Backward releases each activation as soon as its layer is done, all gradients are computed
    before any weight changes, and the update is in place (no temporaries).
    """

    def __init__(self, data: dict, cfg: Config, lr: float) -> None:
        xp = self.xp = array_module(cfg.device)
        self.weights = [to_device_array(w, xp) for w, _ in data["params"]]
        self.biases = [to_device_array(b, xp) for _, b in data["params"]]
        self.x = to_device_array(data["x"], xp)
        self.y = to_device_array(data["y"], xp)
        self.lr = lr
        self.sync = xp_sync(xp)

    def forward_backward(self, x=None, y=None):
        xp = self.xp
        x = self.x if x is None else x
        y = self.y if y is None else y
        last = len(self.weights) - 1
        inputs = []                       # input of every layer: x, then the ReLU outputs
        h = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            inputs.append(h)
            z = h @ w.T
            z += b
            if i < last:
                xp.maximum(z, 0, out=z)   # ReLU in place: its output is all backward needs
            h = z
        del z
        self.logits = h                   # kept for callers that track accuracy (digits)
        loss, grad = softmax_cross_entropy(xp, h, y)
        del h
        grads_w, grads_b = [None] * len(self.weights), [None] * len(self.weights)
        for i in range(last, -1, -1):
            a = inputs.pop()
            grads_w[i] = grad.T @ a
            grads_b[i] = grad.sum(axis=0)
            if i > 0:
                grad = grad @ self.weights[i]
                grad *= a > 0             # ReLU backward: a is the ReLU output feeding layer i
            del a
        return loss, grads_w, grads_b

    def update(self, grads_w, grads_b) -> None:
        for p, g in zip(self.weights + self.biases, grads_w + grads_b):
            g *= self.lr
            p -= g

    def step(self) -> None:
        _, gw, gb = self.forward_backward()
        self.update(gw, gb)

    def check(self):
        loss, gw, gb = self.forward_backward()
        grads = {}
        for i, (w, b) in enumerate(zip(gw, gb)):
            grads[f"W{i}"], grads[f"b{i}"] = to_host(w), to_host(b)
        return float(loss), grads


# -- torch ------------------------------------------------------------------------------------------
def torch_model(params, device: str, dtype):
    import torch

    configure_torch_threads()
    mods, linears = _linear_relu_stack(torch.nn, params)
    model = torch.nn.Sequential(*mods).to(device=torch_device(device), dtype=torch_dtype(dtype))
    with torch.no_grad():
        for lin, (w, b) in zip(linears, params):
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
    return model, linears


class TorchMLP(_EngineMLP):
    def __init__(self, data: dict, cfg: Config, lr: float) -> None:
        import torch

        dev = torch_device(cfg.device)
        self.model, self.linears = torch_model(data["params"], cfg.device, cfg.dtype)
        self.x = torch.from_numpy(data["x"]).to(dev)
        self.y = torch.from_numpy(data["y"]).to(dev)
        self.cross_entropy = torch.nn.functional.cross_entropy
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr)
        self.sync = torch_sync(cfg.device)

    @staticmethod
    def _host(t):
        return t.detach().cpu().numpy()


IMPLS = {"xpgrad": XpgradMLP, "numpy": NumpyMLP, "torch": TorchMLP}
