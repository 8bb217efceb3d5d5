"""lstm: Embedding + one-layer LSTM, forward and backward through time.

Tokens (seq 32, batch 32) from a 1000-word vocabulary, embedding dim 64, hidden 128, sequence-
first layout. Loss: mean softmax cross-entropy of the last hidden state (B, 128) against
integer targets in [0, 128), so backward runs through all 32 steps. Timed unit: clear grads,
forward, loss, backward (no optimizer step).

The reference is a hand-written LSTM with PyTorch's gate layout (i, f, g, o): the input
projection of all steps is one matmul, the recurrence is a Python loop, backward (BPTT)
collects every step's gate gradients and finishes the weight gradients with one matmul each.
"""
from __future__ import annotations

import numpy as np

from ..runner import Bench, Contender
from ._common import (
    Config, Impl, array_module, configure_torch_threads, construct, scatter_add, softmax_cross_entropy,
    stable_sigmoid, to_device_array, to_host, torch_device, torch_dtype, torch_sync, xp_sync, xpgrad_sync,
)

NAMES = ("lstm",)
SIZES = {
    "full": {"vocab": 1000, "embed": 64, "hidden": 128, "seq": 32, "batch": 32},
    "tiny": {"vocab": 11, "embed": 5, "hidden": 6, "seq": 4, "batch": 3},
}
GRAD_NAMES = ("embedding", "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


def setup(cfg: Config) -> dict:
    s = SIZES[cfg.size]
    rng = np.random.default_rng(cfg.seed)
    v, e, h = s["vocab"], s["embed"], s["hidden"]
    bound = 1.0 / np.sqrt(h)

    def uniform(*shape):
        return rng.uniform(-bound, bound, shape).astype(cfg.dtype)

    return {
        **s,
        "embedding": rng.standard_normal((v, e)).astype(cfg.dtype),   # N(0, 1), as nn.Embedding
        "weight_ih_l0": uniform(4 * h, e), "weight_hh_l0": uniform(4 * h, h),
        "bias_ih_l0": uniform(4 * h), "bias_hh_l0": uniform(4 * h),
        "tokens": rng.integers(0, v, (s["seq"], s["batch"])).astype(np.int64),
        "targets": rng.integers(0, h, s["batch"]).astype(np.int64),
    }


class _EngineLSTM(Impl):
    """The step through an autograd engine; subclasses set embedding, lstm, tokens, targets, cross_entropy."""

    def _adopt(self, data: dict, no_grad, as_tensor) -> None:
        """Name the parameters as GRAD_NAMES does and overwrite them with ``data``'s values."""
        self.named = {"embedding": self.embedding.weight}
        self.named.update({k: getattr(self.lstm, k) for k in GRAD_NAMES[1:]})
        with no_grad():
            for k, p in self.named.items():
                p.copy_(as_tensor(data[k]))

    def _forward_backward(self):
        for p in self.named.values():
            p.grad = None
        _, (h_n, _) = self.lstm(self.embedding(self.tokens))
        loss = self.cross_entropy(h_n[0], self.targets)
        loss.backward()
        return loss

    def step(self) -> None:
        self._forward_backward()

    def check(self):
        loss = self._forward_backward()
        return float(loss.item()), {k: self._host(p.grad) for k, p in self.named.items()}


class XpgradLSTM(_EngineLSTM):
    def __init__(self, data: dict, cfg: Config) -> None:
        from xpgrad import autograd as ag
        from xpgrad import nn

        self.embedding = nn.Embedding(data["vocab"], data["embed"])
        self.lstm = nn.LSTM(data["embed"], data["hidden"])
        for module in (self.embedding, self.lstm):
            module.to(np.dtype(cfg.dtype))
            module.to(cfg.device)
        self._adopt(data, ag.no_grad, lambda a: ag.tensor(a, device=cfg.device))
        self.tokens = ag.tensor(data["tokens"], device=cfg.device)
        self.targets = ag.tensor(data["targets"], device=cfg.device)
        self.cross_entropy = nn.functional.cross_entropy
        self.sync = xpgrad_sync(cfg.device)

    @staticmethod
    def _host(t):
        return t.numpy()


class NumpyLSTM(Impl):
    def __init__(self, data: dict, cfg: Config) -> None:
        xp = self.xp = array_module(cfg.device)
        self.p = {k: to_device_array(data[k], xp) for k in GRAD_NAMES}
        self.tokens = to_device_array(data["tokens"], xp)
        self.targets = to_device_array(data["targets"], xp)
        self.sync = xp_sync(xp)

    def _forward_backward(self):
        xp, p = self.xp, self.p
        w_ih, w_hh = p["weight_ih_l0"], p["weight_hh_l0"]
        seq, batch = self.tokens.shape
        hid = w_hh.shape[1]
        emb = p["embedding"][self.tokens]                              # (T, B, E)
        x_flat = emb.reshape(seq * batch, -1)
        x_proj = (x_flat @ w_ih.T).reshape(seq, batch, 4 * hid)
        x_proj += p["bias_ih_l0"] + p["bias_hh_l0"]

        dtype = w_hh.dtype
        h = xp.zeros((batch, hid), dtype=dtype)
        c = xp.zeros((batch, hid), dtype=dtype)
        acts = xp.empty((seq, batch, 4 * hid), dtype=dtype)            # i, f, g, o after their nonlinearity
        h_prev = xp.empty((seq, batch, hid), dtype=dtype)
        c_prev = xp.empty((seq, batch, hid), dtype=dtype)
        tanh_c = xp.empty((seq, batch, hid), dtype=dtype)
        for t in range(seq):
            h_prev[t], c_prev[t] = h, c
            gates = x_proj[t] + h @ w_hh.T
            a = acts[t]
            stable_sigmoid(xp, gates[:, :2 * hid], out=a[:, :2 * hid])
            xp.tanh(gates[:, 2 * hid:3 * hid], out=a[:, 2 * hid:3 * hid])
            stable_sigmoid(xp, gates[:, 3 * hid:], out=a[:, 3 * hid:])
            i, f, g, o = a[:, :hid], a[:, hid:2 * hid], a[:, 2 * hid:3 * hid], a[:, 3 * hid:]
            c = f * c + i * g
            xp.tanh(c, out=tanh_c[t])
            h = o * tanh_c[t]

        loss, dh = softmax_cross_entropy(xp, h, self.targets)
        dc = xp.zeros_like(dh)
        d_gates = xp.empty_like(acts)                                  # w.r.t. the pre-activations
        for t in range(seq - 1, -1, -1):
            a, tc = acts[t], tanh_c[t]
            i, f, g, o = a[:, :hid], a[:, hid:2 * hid], a[:, 2 * hid:3 * hid], a[:, 3 * hid:]
            dg_all = d_gates[t]
            dc += dh * o * (1 - tc * tc)
            dg_all[:, :hid] = dc * g * i * (1 - i)                      # input gate
            dg_all[:, hid:2 * hid] = dc * c_prev[t] * f * (1 - f)        # forget gate
            dg_all[:, 2 * hid:3 * hid] = dc * i * (1 - g * g)            # cell candidate
            dg_all[:, 3 * hid:] = dh * tc * o * (1 - o)                  # output gate
            dc *= f
            dh = dg_all @ w_hh
        dg_flat = d_gates.reshape(seq * batch, 4 * hid)
        d_bias = dg_flat.sum(axis=0)
        grads = {
            "weight_ih_l0": dg_flat.T @ x_flat,
            "weight_hh_l0": dg_flat.T @ h_prev.reshape(seq * batch, hid),
            "bias_ih_l0": d_bias, "bias_hh_l0": d_bias.copy(),
        }
        d_emb = xp.zeros_like(p["embedding"])
        scatter_add(xp, d_emb, self.tokens.reshape(-1), dg_flat @ w_ih)
        grads["embedding"] = d_emb
        return loss, grads

    def step(self) -> None:
        self._forward_backward()

    def check(self):
        loss, grads = self._forward_backward()
        return float(loss), {k: to_host(v) for k, v in grads.items()}


class TorchLSTM(_EngineLSTM):
    def __init__(self, data: dict, cfg: Config) -> None:
        import torch

        configure_torch_threads()
        dev, dt = torch_device(cfg.device), torch_dtype(cfg.dtype)
        self.embedding = torch.nn.Embedding(data["vocab"], data["embed"]).to(device=dev, dtype=dt)
        self.lstm = torch.nn.LSTM(data["embed"], data["hidden"]).to(device=dev, dtype=dt)
        self._adopt(data, torch.no_grad, torch.from_numpy)
        self.tokens = torch.from_numpy(data["tokens"]).to(dev)
        self.targets = torch.from_numpy(data["targets"]).to(dev)
        self.cross_entropy = torch.nn.functional.cross_entropy
        self.sync = torch_sync(cfg.device)

    @staticmethod
    def _host(t):
        return t.detach().cpu().numpy()


def implementations(cfg: Config) -> dict[str, Impl]:
    data = setup(cfg)
    return construct({"xpgrad": lambda: XpgradLSTM(data, cfg), "numpy": lambda: NumpyLSTM(data, cfg),
                      "torch": lambda: TorchLSTM(data, cfg)}, cfg)


def build(cfg: Config) -> list[Bench]:
    impls = implementations(cfg)
    s = SIZES[cfg.size]
    return [Bench(
        "lstm", "ms/step", 1e3, [Contender(k, i.step, i.sync) for k, i in impls.items()],
        repeat=cfg.repeat_or(20), rate_unit="steps/s",
        info={**s, "description": "Embedding + LSTM forward and backward (BPTT), cross-entropy of the last hidden "
                                  f"state; seq {s['seq']}, batch {s['batch']}, hidden {s['hidden']}, "
                                  f"embedding {s['embed']}, vocab {s['vocab']}"},
    )]
