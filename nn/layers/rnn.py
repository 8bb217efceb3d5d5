"""LSTM with PyTorch's parameter names, gate order (i, f, g, o) and shapes."""
from __future__ import annotations

import math

import numpy as np

from xpgrad import autograd as ag
from xpgrad.autograd import Function, Tensor

from .. import functional as F
from .. import init
from ..module import Module, Parameter

__all__ = ["LSTM"]


class _LSTMScan(Function):
    """One LSTM layer over all time steps as a single node.

    Inputs: the precomputed input projection ``gx`` (L, N, 4H) (biases included), ``h0``, ``c0``
    (N, H) and ``w_hh`` (4H, H). Outputs: every step's h (L, N, H) and the last c (N, H).
    Forward and backward (backpropagation through time) loop over steps on raw arrays, one
    (N, H) x (H, 4H) matmul per step each way, and the recurrent weight's gradient is a single
    matmul over all steps. Under ``create_graph`` the backward recomputes the activations with
    autograd ops and runs the same recurrence on Tensors, so it can be differentiated again.
    """

    raw_backward = True
    saves_output = True

    @staticmethod
    def forward(ctx, gx, h0, c0, w_hh):
        xp = ctx.xp
        g_all, h, c, w = gx.data, h0.data, c0.data, w_hh.data
        steps, n, h4 = g_all.shape
        H = h4 // 4
        dtype = np.result_type(g_all.dtype, h.dtype, c.dtype, w.dtype)
        acts = xp.empty((steps, n, h4), dtype=dtype)
        cs = xp.empty((steps, n, H), dtype=dtype)
        hs = xp.empty((steps, n, H), dtype=dtype)
        w_t = w.T
        # exp(-x) overflowing to inf for very negative x gives sigmoid 0, as it should.
        with np.errstate(over="ignore"):
            for t in range(steps):
                gates = g_all[t] + h @ w_t
                sig = 1.0 / (1.0 + xp.exp(-gates))
                g = xp.tanh(gates[:, 2 * H:3 * H])
                c = sig[:, H:2 * H] * c + sig[:, :H] * g
                h = sig[:, 3 * H:] * xp.tanh(c)
                sig[:, 2 * H:3 * H] = g  # acts keeps i, f, g, o side by side
                acts[t] = sig
                cs[t] = c
                hs[t] = h
        ctx.save_for_backward(gx, h0, c0, w_hh, acts, cs)
        return hs, cs[-1].copy()

    @staticmethod
    def backward(ctx, g_hs, g_cn):
        gx, h0, c0, w_hh, acts, cs = ctx.saved
        H = w_hh.shape[1]
        if isinstance(g_hs, Tensor):
            acts, cs, hs = _recompute(gx, h0, c0, w_hh)
            ops = ag
        else:
            hs = ctx.output
            ops = ctx.xp
        steps = acts.shape[0]
        i, f, g, o = acts[:, :, :H], acts[:, :, H:2 * H], acts[:, :, 2 * H:3 * H], acts[:, :, 3 * H:]
        tc = ops.tanh(cs)
        c_prev = ops.concatenate([ops.expand_dims(c0, 0), cs[:-1]], axis=0) if steps > 1 else ops.expand_dims(c0, 0)
        # Everything that does not depend on the recurrence, for all steps at once:
        # dc_t = dc_{t+1} * f_{t+1} + dh_t * o (1 - tc^2), and the gate pre-activation gradients
        # are [dc, dc, dc, dh] * (g i(1-i), c_prev f(1-f), i(1-g^2), tc o(1-o)).
        dh_to_dc = o * (1.0 - tc * tc)
        gate_factor = ops.concatenate(
            [g * i * (1.0 - i), c_prev * f * (1.0 - f), i * (1.0 - g * g), tc * o * (1.0 - o)], axis=2
        )
        dh_next = None
        dc = g_cn
        d_gates = [None] * steps
        for t in range(steps - 1, -1, -1):
            dh = g_hs[t] if dh_next is None else g_hs[t] + dh_next
            dc = dc + dh * dh_to_dc[t]
            dg = ops.concatenate([dc, dc, dc, dh], axis=1) * gate_factor[t]
            d_gates[t] = dg
            dh_next = dg @ w_hh
            dc = dc * f[t]
        need = ctx.next_edges
        d_gx = ops.stack(d_gates, axis=0)
        d_w = None
        if need[3] is not None:
            h_prev = ops.concatenate([ops.expand_dims(h0, 0), hs[:-1]], axis=0) if steps > 1 else ops.expand_dims(h0, 0)
            d_w = d_gx.reshape((-1, 4 * H)).T @ h_prev.reshape((-1, H))
        return (d_gx if need[0] is not None else None), dh_next, dc, d_w


_LSTMScan.__name__ = _LSTMScan.__qualname__ = "LSTMScan"


def _recompute(gx, h0, c0, w_hh):
    """The forward recurrence with autograd ops (the create_graph path of the backward): the
    stacked activations (L, N, 4H), cell states and hidden states (L, N, H) as Tensors."""
    h, c = h0, c0
    w_t = w_hh.T
    acts, cs, hs = [], [], []
    for t in range(gx.shape[0]):
        gates = gx[t] + h @ w_t
        i, f, g, o = ag.split(gates, 4, axis=1)
        i, f, g, o = ag.sigmoid(i), ag.sigmoid(f), ag.tanh(g), ag.sigmoid(o)
        c = f * c + i * g
        h = o * ag.tanh(c)
        acts.append(ag.concatenate([i, f, g, o], axis=1))
        cs.append(c)
        hs.append(h)
    return ag.stack(acts, axis=0), ag.stack(cs, axis=0), ag.stack(hs, axis=0)


class LSTM(Module):
    """A multi-layer LSTM.

    Input (L, N, input_size), or (N, L, input_size) with ``batch_first=True``, or unbatched
    (L, input_size). ``forward(x, hx=None)`` with ``hx = (h0, c0)``, each (num_layers, N, hidden_size)
    (or (num_layers, hidden_size) unbatched; zeros when None), returns ``(output, (h_n, c_n))``:
    output holds the last layer's h at every step, h_n and c_n the final states of every layer.

    Parameters per layer k: ``weight_ih_l{k}`` (4H, in), ``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}``
    and ``bias_hh_l{k}`` (4H), rows ordered as the gates i, f, g, o; all initialised
    U(-1/sqrt(H), 1/sqrt(H)). The input projection of all time steps is one matmul per layer; the
    recurrence is one graph node per layer (``LSTMScan``) doing one (N, H) x (H, 4H) matmul per step.
    ``dropout`` (between layers, training only) as PyTorch's.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, device=None, dtype=None) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"LSTM: num_layers must be at least 1, got {num_layers}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"LSTM: dropout must be in [0, 1], got {dropout}")
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        h4 = 4 * self.hidden_size
        for k in range(self.num_layers):
            n_in = self.input_size if k == 0 else self.hidden_size
            setattr(self, f"weight_ih_l{k}", Parameter(ag.empty(h4, n_in, dtype=dtype, device=device)))
            setattr(self, f"weight_hh_l{k}", Parameter(ag.empty(h4, self.hidden_size, dtype=dtype, device=device)))
            if self.bias:
                setattr(self, f"bias_ih_l{k}", Parameter(ag.empty(h4, dtype=dtype, device=device)))
                setattr(self, f"bias_hh_l{k}", Parameter(ag.empty(h4, dtype=dtype, device=device)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def _layer_params(self, k: int):
        w_ih = self._parameters[f"weight_ih_l{k}"]
        w_hh = self._parameters[f"weight_hh_l{k}"]
        if self.bias:
            return w_ih, w_hh, self._parameters[f"bias_ih_l{k}"] + self._parameters[f"bias_hh_l{k}"]
        return w_ih, w_hh, None

    def forward(self, x: Tensor, hx: tuple[Tensor, Tensor] | None = None):
        if x.ndim not in (2, 3):
            raise ValueError(f"LSTM expects a 3-D (batched) or 2-D (unbatched) input, got shape {x.shape}")
        batched = x.ndim == 3
        if x.shape[-1] != self.input_size:
            raise ValueError(f"LSTM: input has {x.shape[-1]} features, expected input_size={self.input_size}")
        if not batched:
            x = ag.expand_dims(x, 1)
        elif self.batch_first:
            x = ag.swapaxes(x, 0, 1)
        steps, n = x.shape[0], x.shape[1]
        if steps == 0:
            raise ValueError("LSTM: the input sequence is empty (length 0)")
        H = self.hidden_size
        state_shape = (self.num_layers, n, H)
        if hx is None:
            h0 = c0 = ag.zeros(state_shape, dtype=x.dtype, device=x.device)
        else:
            h0, c0 = hx
            for name, s in (("h0", h0), ("c0", c0)):
                want = state_shape if batched else (self.num_layers, H)
                if s.shape != want:
                    raise ValueError(f"LSTM: {name} has shape {s.shape}, expected {want}")
            if not batched:
                h0, c0 = ag.expand_dims(h0, 1), ag.expand_dims(c0, 1)
        layer_input = x
        h_last, c_last = [], []
        for k in range(self.num_layers):
            w_ih, w_hh, b = self._layer_params(k)
            projected = F.linear(layer_input, w_ih, b)  # (L, N, 4H): every time step in one matmul
            layer_input, c = _LSTMScan.apply(projected, h0[k], c0[k], w_hh)
            h_last.append(layer_input[-1])
            c_last.append(c)
            if self.dropout and self.training and k < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, True)
        out = layer_input
        h_n, c_n = ag.stack(h_last, axis=0), ag.stack(c_last, axis=0)
        if not batched:
            return ag.squeeze(out, 1), (ag.squeeze(h_n, 1), ag.squeeze(c_n, 1))
        if self.batch_first:
            out = ag.swapaxes(out, 0, 1)
        return out, (h_n, c_n)

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        if self.dropout:
            text += f", dropout={self.dropout}"
        return text
