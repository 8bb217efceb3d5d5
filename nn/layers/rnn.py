"""LSTM, GRU and RNN with PyTorch's parameter names, gate orders (LSTM i, f, g, o; GRU r, z, n) and shapes."""
from __future__ import annotations

import math

import numpy as np

from xpgrad import autograd as ag
from xpgrad.autograd import Function, Tensor

from .. import functional as F
from .. import init
from ..module import Module, Parameter

__all__ = ["GRU", "LSTM", "RNN"]


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


class _GRUScan(Function):
    """One GRU layer over all time steps as a single node.

    Inputs: the precomputed input projection ``gx`` (L, N, 3H) (``bias_ih`` included), ``h0``
    (N, H), ``w_hh`` (3H, H) and ``b_hh`` (3H,) or None, which stays inside the recurrence since
    the new gate scales it by r: n = tanh(gx_n + r * (W_hn h + b_hn)), h' = (1 - z) n + z h.
    Output: every step's h (L, N, H). As ``LSTMScan``: raw-array loops both ways, one
    (N, H) x (H, 3H) matmul per step, the recurrent weight's gradient one matmul over all steps,
    and under ``create_graph`` the same backward on Tensors from a recomputed forward.
    """

    raw_backward = True
    saves_output = True

    @staticmethod
    def forward(ctx, gx, h0, w_hh, b_hh):
        xp = ctx.xp
        g_all, h, w = gx.data, h0.data, w_hh.data
        b = None if b_hh is None else b_hh.data
        steps, n, h3 = g_all.shape
        H = h3 // 3
        dtype = np.result_type(g_all.dtype, h.dtype, w.dtype, *(() if b is None else (b.dtype,)))
        acts = xp.empty((steps, n, h3), dtype=dtype)
        hns = xp.empty((steps, n, H), dtype=dtype)
        hs = xp.empty((steps, n, H), dtype=dtype)
        w_t = w.T
        with np.errstate(over="ignore"):  # sigmoid of a very negative value: exp overflows, gives 0
            for t in range(steps):
                gh = h @ w_t
                if b is not None:
                    gh += b
                g = g_all[t]
                rz = 1.0 / (1.0 + xp.exp(-(g[:, :2 * H] + gh[:, :2 * H])))
                hn = gh[:, 2 * H:]
                nn_ = xp.tanh(g[:, 2 * H:] + rz[:, :H] * hn)
                h = nn_ + rz[:, H:] * (h - nn_)
                acts[t, :, :2 * H] = rz
                acts[t, :, 2 * H:] = nn_
                hns[t] = hn
                hs[t] = h
        ctx.save_for_backward(gx, h0, w_hh, b_hh, acts, hns)
        return hs

    @staticmethod
    def backward(ctx, g_hs):
        gx, h0, w_hh, b_hh, acts, hns = ctx.saved
        H = w_hh.shape[1]
        if isinstance(g_hs, Tensor):
            acts, hns, hs = _gru_recompute(gx, h0, w_hh, b_hh)
            ops = ag
        else:
            hs = ctx.output
            ops = ctx.xp
        steps = acts.shape[0]
        r, z, n = acts[:, :, :H], acts[:, :, H:2 * H], acts[:, :, 2 * H:]
        h_prev = ops.concatenate([ops.expand_dims(h0, 0), hs[:-1]], axis=0) if steps > 1 else ops.expand_dims(h0, 0)
        # Per step, with dh the gradient reaching h_t: the pre-activation gradients are
        # dh * (fr, fz, fn) on the input side and dh * (fr, fz, fn r) on the recurrent side.
        fn = (1.0 - z) * (1.0 - n * n)
        fz = (h_prev - n) * z * (1.0 - z)
        fr = fn * hns * r * (1.0 - r)
        factor_h = ops.concatenate([fr, fz, fn * r], axis=2)
        dh_next = None
        d_ghs = [None] * steps
        dhs = [None] * steps
        for t in range(steps - 1, -1, -1):
            dh = g_hs[t] if dh_next is None else g_hs[t] + dh_next
            dgh = ops.concatenate([dh, dh, dh], axis=1) * factor_h[t]
            d_ghs[t] = dgh
            dhs[t] = dh
            dh_next = dh * z[t] + dgh @ w_hh
        need = ctx.next_edges
        d_gh = ops.stack(d_ghs, axis=0)
        d_gx = d_w = d_b = None
        if need[0] is not None:
            d_gx = ops.concatenate([d_gh[:, :, :2 * H], ops.stack(dhs, axis=0) * fn], axis=2)
        if need[2] is not None:
            d_w = d_gh.reshape((-1, 3 * H)).T @ h_prev.reshape((-1, H))
        if b_hh is not None and need[3] is not None:
            d_b = d_gh.reshape((-1, 3 * H)).sum(axis=0)
        return d_gx, dh_next, d_w, d_b


_GRUScan.__name__ = _GRUScan.__qualname__ = "GRUScan"


def _gru_recompute(gx, h0, w_hh, b_hh):
    """GRUScan's forward with autograd ops: activations r, z, n (L, N, 3H), the recurrent new-gate
    term W_hn h + b_hn and the hidden states (L, N, H), as Tensors."""
    h = h0
    w_t = w_hh.T
    H = w_hh.shape[1]
    acts, hns, hs = [], [], []
    for t in range(gx.shape[0]):
        gh = h @ w_t
        if b_hh is not None:
            gh = gh + b_hh
        g = gx[t]
        rz = ag.sigmoid(g[:, :2 * H] + gh[:, :2 * H])
        hn = gh[:, 2 * H:]
        n = ag.tanh(g[:, 2 * H:] + rz[:, :H] * hn)
        h = n + rz[:, H:] * (h - n)
        acts.append(ag.concatenate([rz, n], axis=1))
        hns.append(hn)
        hs.append(h)
    return ag.stack(acts, axis=0), ag.stack(hns, axis=0), ag.stack(hs, axis=0)


class _RNNTanhScan(Function):
    """One Elman RNN layer over all time steps as a single node: h' = tanh(gx_t + W_hh h), with
    the input projection ``gx`` (L, N, H) (both biases included) computed outside. Output: every
    step's h (L, N, H). Loops and create_graph path as ``LSTMScan``."""

    raw_backward = True
    saves_output = True
    relu = False

    @classmethod
    def forward(cls, ctx, gx, h0, w_hh):
        xp = ctx.xp
        g_all, h, w = gx.data, h0.data, w_hh.data
        dtype = np.result_type(g_all.dtype, h.dtype, w.dtype)
        hs = xp.empty(g_all.shape, dtype=dtype)
        w_t = w.T
        for t in range(g_all.shape[0]):
            a = g_all[t] + h @ w_t
            h = xp.maximum(a, 0) if cls.relu else xp.tanh(a)
            hs[t] = h
        ctx.save_for_backward(gx, h0, w_hh)
        return hs

    @classmethod
    def backward(cls, ctx, g_hs):
        gx, h0, w_hh = ctx.saved
        if isinstance(g_hs, Tensor):
            hs = _rnn_recompute(gx, h0, w_hh, cls.relu)
            ops = ag
        else:
            hs = ctx.output
            ops = ctx.xp
        steps, H = hs.shape[0], hs.shape[2]
        factor = (hs > 0) if cls.relu else 1.0 - hs * hs  # relu'(0) = 0, as PyTorch
        dh_next = None
        das = [None] * steps
        for t in range(steps - 1, -1, -1):
            dh = g_hs[t] if dh_next is None else g_hs[t] + dh_next
            da = dh * factor[t]
            das[t] = da
            dh_next = da @ w_hh
        need = ctx.next_edges
        d_gx = ops.stack(das, axis=0)
        d_w = None
        if need[2] is not None:
            h_prev = ops.concatenate([ops.expand_dims(h0, 0), hs[:-1]], axis=0) if steps > 1 else ops.expand_dims(h0, 0)
            d_w = d_gx.reshape((-1, H)).T @ h_prev.reshape((-1, H))
        return (d_gx if need[0] is not None else None), dh_next, d_w


class _RNNReluScan(_RNNTanhScan):
    """``RNNTanhScan`` with h' = relu(gx_t + W_hh h)."""

    relu = True


_RNNTanhScan.__name__ = _RNNTanhScan.__qualname__ = "RNNTanhScan"
_RNNReluScan.__name__ = _RNNReluScan.__qualname__ = "RNNReluScan"


def _rnn_recompute(gx, h0, w_hh, relu):
    """The Elman recurrence with autograd ops: the hidden states (L, N, H) as a Tensor."""
    h = h0
    w_t = w_hh.T
    act = ag.relu if relu else ag.tanh
    hs = []
    for t in range(gx.shape[0]):
        h = act(gx[t] + h @ w_t)
        hs.append(h)
    return ag.stack(hs, axis=0)


class _RNNBase(Module):
    """What LSTM, GRU and RNN share: parameter creation and init, input and state checks,
    batch_first handling and the loop over layers. A subclass sets ``_name``, ``_gates`` (gate
    blocks per weight) and ``_n_states`` (1, or 2 for LSTM's (h, c)) and runs one layer in
    ``_layer(k, x, states)``, returning that layer's outputs (L, N, H) and its final states."""

    _name = "RNN"
    _gates = 1
    _n_states = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, device=None, dtype=None) -> None:
        super().__init__()
        name = self._name
        if num_layers < 1:
            raise ValueError(f"{name}: num_layers must be at least 1, got {num_layers}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"{name}: dropout must be in [0, 1], got {dropout}")
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        rows = self._gates * self.hidden_size
        for k in range(self.num_layers):
            n_in = self.input_size if k == 0 else self.hidden_size
            setattr(self, f"weight_ih_l{k}", Parameter(ag.empty(rows, n_in, dtype=dtype, device=device)))
            setattr(self, f"weight_hh_l{k}", Parameter(ag.empty(rows, self.hidden_size, dtype=dtype, device=device)))
            if self.bias:
                setattr(self, f"bias_ih_l{k}", Parameter(ag.empty(rows, dtype=dtype, device=device)))
                setattr(self, f"bias_hh_l{k}", Parameter(ag.empty(rows, dtype=dtype, device=device)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def _layer_params(self, k: int):
        """(weight_ih, weight_hh, bias_ih + bias_hh or None) of layer k."""
        w_ih = self._parameters[f"weight_ih_l{k}"]
        w_hh = self._parameters[f"weight_hh_l{k}"]
        if self.bias:
            return w_ih, w_hh, self._parameters[f"bias_ih_l{k}"] + self._parameters[f"bias_hh_l{k}"]
        return w_ih, w_hh, None

    def _states(self, hx):
        """The initial states as a tuple of ``_n_states`` Tensors (or None)."""
        return (hx,)

    def _result(self, finals):
        """The final states as forward returns them."""
        return finals[0]

    def _layer(self, k: int, x: Tensor, states: tuple):
        raise NotImplementedError

    def forward(self, x: Tensor, hx=None):
        name = self._name
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} expects a Tensor input, got {type(x).__name__}")
        if x.ndim not in (2, 3):
            raise ValueError(f"{name} expects a 3-D (batched) or 2-D (unbatched) input, got shape {x.shape}")
        batched = x.ndim == 3
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{name}: input has {x.shape[-1]} features, expected input_size={self.input_size}")
        if not batched:
            x = ag.expand_dims(x, 1)
        elif self.batch_first:
            x = ag.swapaxes(x, 0, 1)
        steps, n = x.shape[0], x.shape[1]
        if steps == 0:
            raise ValueError(f"{name}: the input sequence is empty (length 0)")
        H = self.hidden_size
        state_shape = (self.num_layers, n, H)
        if hx is None:
            states = (ag.zeros(state_shape, dtype=x.dtype, device=x.device),) * self._n_states
        else:
            states = self._states(hx)
            want = state_shape if batched else (self.num_layers, H)
            for i, s in enumerate(states):
                label = ("h0", "c0")[i]
                if not isinstance(s, Tensor):
                    raise TypeError(f"{name}: {label} must be a Tensor, got {type(s).__name__}")
                if s.shape != want:
                    raise ValueError(f"{name}: {label} has shape {s.shape}, expected {want}")
            if not batched:
                states = tuple(ag.expand_dims(s, 1) for s in states)
        layer_input = x
        finals = [[] for _ in states]
        for k in range(self.num_layers):
            layer_input, last = self._layer(k, layer_input, tuple(s[k] for s in states))
            for acc, s in zip(finals, last):
                acc.append(s)
            if self.dropout and self.training and k < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, True)
        out = layer_input
        finals = [ag.stack(f, axis=0) for f in finals]
        if not batched:
            return ag.squeeze(out, 1), self._result([ag.squeeze(f, 1) for f in finals])
        if self.batch_first:
            out = ag.swapaxes(out, 0, 1)
        return out, self._result(finals)

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


class LSTM(_RNNBase):
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

    _name = "LSTM"
    _gates = 4
    _n_states = 2

    def _states(self, hx):
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"LSTM: hx must be a pair (h0, c0), got {type(hx).__name__}")
        return tuple(hx)

    def _result(self, finals):
        return finals[0], finals[1]

    def _layer(self, k, x, states):
        w_ih, w_hh, b = self._layer_params(k)
        projected = F.linear(x, w_ih, b)  # (L, N, 4H): every time step in one matmul
        hs, c = _LSTMScan.apply(projected, states[0], states[1], w_hh)
        return hs, (hs[-1], c)


class GRU(_RNNBase):
    """A multi-layer GRU, as PyTorch's.

    Input and options as ``LSTM``; ``forward(x, hx=None)`` with ``hx`` the initial h
    (num_layers, N, hidden_size) (or (num_layers, hidden_size) unbatched; zeros when None) returns
    ``(output, h_n)``. Per step r = sigmoid(W_ir x + b_ir + W_hr h + b_hr), z likewise,
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) n + z h. Parameters per layer k:
    ``weight_ih_l{k}`` (3H, in), ``weight_hh_l{k}`` (3H, H), ``bias_ih_l{k}`` and ``bias_hh_l{k}``
    (3H), rows ordered r, z, n; all U(-1/sqrt(H), 1/sqrt(H)). One input-projection matmul and one
    graph node (``GRUScan``) per layer.
    """

    _name = "GRU"
    _gates = 3

    def _states(self, hx):
        if isinstance(hx, (tuple, list)):
            raise TypeError(f"{self._name}: hx is a single Tensor h0 (num_layers, N, hidden_size), not a tuple")
        return (hx,)

    def _layer(self, k, x, states):
        w_ih = self._parameters[f"weight_ih_l{k}"]
        w_hh = self._parameters[f"weight_hh_l{k}"]
        b_ih = self._parameters[f"bias_ih_l{k}"] if self.bias else None
        b_hh = self._parameters[f"bias_hh_l{k}"] if self.bias else None
        hs = _GRUScan.apply(F.linear(x, w_ih, b_ih), states[0], w_hh, b_hh)
        return hs, (hs[-1],)


class RNN(_RNNBase):
    """A multi-layer Elman RNN, as PyTorch's: h' = tanh(W_ih x + b_ih + W_hh h + b_hh), or relu with
    ``nonlinearity="relu"``.

    Input, options, ``hx`` and the ``(output, h_n)`` result as ``GRU``. Parameters per layer k:
    ``weight_ih_l{k}`` (H, in), ``weight_hh_l{k}`` (H, H), ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (H),
    all U(-1/sqrt(H), 1/sqrt(H)). One input-projection matmul and one graph node
    (``RNNTanhScan`` / ``RNNReluScan``) per layer.
    """

    _name = "RNN"
    _gates = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, device=None,
                 dtype=None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, device, dtype)
        self.nonlinearity = nonlinearity

    _states = GRU._states

    def _layer(self, k, x, states):
        w_ih, w_hh, b = self._layer_params(k)
        scan = _RNNReluScan if self.nonlinearity == "relu" else _RNNTanhScan
        hs = scan.apply(F.linear(x, w_ih, b), states[0], w_hh)
        return hs, (hs[-1],)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")
