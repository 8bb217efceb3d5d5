"""MultiheadAttention and TransformerEncoderLayer, with PyTorch's parameter names and semantics."""
from __future__ import annotations

import math

from xpgrad import autograd as ag
from xpgrad.autograd import Tensor

from .. import functional as F
from .. import init
from ..module import Module, Parameter
from .dropout import Dropout
from .linear import Linear
from .normalization import LayerNorm

__all__ = ["MultiheadAttention", "TransformerEncoderLayer"]


def _additive(mask: Tensor, dtype, name: str) -> Tensor:
    """A MultiheadAttention mask as scores to add: bool True (masked out) becomes -inf, floats stay."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"MultiheadAttention: {name} must be a Tensor, got {type(mask).__name__}")
    kind = mask.data.dtype.kind
    if kind == "b":
        return ag.where(mask, -math.inf, ag.zeros((), dtype=dtype, device=mask.device))
    if kind == "f":
        return mask if mask.data.dtype == dtype else mask.astype(dtype)
    raise TypeError(f"MultiheadAttention: {name} must be bool or floating point, got {mask.data.dtype}")


class MultiheadAttention(Module):
    """Attention over ``num_heads`` heads of ``embed_dim // num_heads`` features each, as PyTorch's.

    Parameters ``in_proj_weight`` (3 E, E) (xavier_uniform_), ``in_proj_bias`` (3 E) (zeros),
    ``out_proj`` a Linear(E, E) whose bias starts at zero. Inputs are (L, N, E), or (N, L, E) with
    ``batch_first``, or unbatched (L, E). Masks use PyTorch's MultiheadAttention convention: a bool
    True marks a position that may NOT be attended to (the opposite of scaled_dot_product_attention);
    a float mask is added to the scores. ``key_padding_mask`` is (N, S); ``attn_mask`` is (L, S) or
    (N * num_heads, L, S). ``is_causal`` is only a hint that ``attn_mask`` is the causal mask, which
    must then be given. Only ``kdim == vdim == embed_dim`` is supported.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, device=None, dtype=None) -> None:
        super().__init__()
        embed_dim, num_heads = int(embed_dim), int(num_heads)
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError("MultiheadAttention: add_bias_kv and add_zero_attn are not supported")
        if kdim not in (None, embed_dim) or vdim not in (None, embed_dim):
            raise NotImplementedError(
                f"MultiheadAttention: only kdim == vdim == embed_dim is supported, got kdim={kdim}, vdim={vdim}; "
                "project key and value to embed_dim features first"
            )
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"MultiheadAttention: embed_dim and num_heads must be positive, got {embed_dim} and {num_heads}")
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultiheadAttention: dropout must be in [0, 1), got {dropout}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = float(dropout)
        self.batch_first = bool(batch_first)
        self.in_proj_weight = Parameter(ag.empty(3 * embed_dim, embed_dim, dtype=dtype, device=device))
        if bias:
            self.in_proj_bias = Parameter(ag.empty(3 * embed_dim, dtype=dtype, device=device))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                need_weights: bool = True, attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False):
        """(output, weights): output shaped as ``query``; weights (N, L, S) averaged over heads, or
        (N, num_heads, L, S) with ``average_attn_weights=False``, or None with ``need_weights=False``."""
        for name, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, Tensor):
                raise TypeError(f"MultiheadAttention: {name} must be a Tensor, got {type(t).__name__}")
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise ValueError(
                "MultiheadAttention: query, key and value must all be 3-D (batched) or all 2-D (unbatched), "
                f"got shapes {query.shape}, {key.shape} and {value.shape}"
            )
        if is_causal and attn_mask is None:
            raise RuntimeError(
                "MultiheadAttention: is_causal is a hint that attn_mask is the causal mask; pass that mask as attn_mask"
            )
        unbatched = query.ndim == 2
        if unbatched:
            query, key, value = (t.expand_dims(0) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.expand_dims(0)
        elif not self.batch_first:  # (L, N, E) -> (N, L, E)
            query, key, value = (t.swapaxes(0, 1) for t in (query, key, value))
        n, n_q, e = query.shape
        n_k = key.shape[1]
        if e != self.embed_dim or key.shape[2] != e or value.shape[2] != e:
            raise ValueError(
                f"MultiheadAttention: expected inputs with {self.embed_dim} features (embed_dim), got query, key, "
                f"value shapes {query.shape}, {key.shape}, {value.shape} (batch first)"
            )
        if key.shape[:2] != value.shape[:2] or key.shape[0] != n:
            raise ValueError(
                f"MultiheadAttention: key and value must share batch and length with query's batch, got {key.shape} "
                f"and {value.shape} for query {query.shape} (batch first)"
            )
        h, d = self.num_heads, self.head_dim
        w, b = self.in_proj_weight, self.in_proj_bias
        bq = bk = bv = None
        if b is not None:
            bq, bk, bv = b[:e], b[e:2 * e], b[2 * e:]
        q = F.linear(query, w[:e], bq)
        k = F.linear(key, w[e:2 * e], bk)
        v = F.linear(value, w[2 * e:], bv)
        # (N, L, E) -> (N, H, L, D)
        q, k, v = (t.reshape(n, t.shape[1], h, d).swapaxes(1, 2) for t in (q, k, v))

        dtype = q.data.dtype
        mask = None
        if attn_mask is not None:
            mask = _additive(attn_mask, dtype, "attn_mask")
            if mask.ndim == 2:
                if mask.shape != (n_q, n_k):
                    raise ValueError(f"MultiheadAttention: a 2-D attn_mask must be ({n_q}, {n_k}), got {mask.shape}")
            elif mask.ndim == 3:
                if mask.shape != (n * h, n_q, n_k):
                    raise ValueError(
                        f"MultiheadAttention: a 3-D attn_mask must be ({n * h}, {n_q}, {n_k}) (batch * num_heads, "
                        f"L, S), got {mask.shape}"
                    )
                mask = mask.reshape(n, h, n_q, n_k)
            else:
                raise ValueError(f"MultiheadAttention: attn_mask must be 2-D or 3-D, got shape {mask.shape}")
        if key_padding_mask is not None:
            pad = _additive(key_padding_mask, dtype, "key_padding_mask")
            if pad.shape != (n, n_k):
                raise ValueError(f"MultiheadAttention: key_padding_mask must be ({n}, {n_k}), got {pad.shape}")
            pad = pad.reshape(n, 1, 1, n_k)
            mask = pad if mask is None else mask + pad

        p = self.dropout if self.training else 0.0
        if need_weights:
            scores = (q @ k.swapaxes(-1, -2)) * (1.0 / math.sqrt(d))
            if mask is not None:
                scores = scores + mask
            weights = F.softmax(scores, -1)
            if p > 0.0:
                weights = F.dropout(weights, p)
            out = weights @ v
        else:
            weights = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        out = self.out_proj(out.swapaxes(1, 2).reshape(n, n_q, e))
        if weights is not None and average_attn_weights:
            weights = weights.mean(axis=1)
        if unbatched:
            out = out.squeeze(0)
            if weights is not None:
                weights = weights.squeeze(0)
        elif not self.batch_first:
            out = out.swapaxes(0, 1)
        return out, weights

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, batch_first={self.batch_first}"


class TransformerEncoderLayer(Module):
    """Self-attention and a feed-forward block, each with a residual connection and LayerNorm, as
    PyTorch's: post-norm ``x = norm1(x + sa(x)); x = norm2(x + ff(x))``, or with ``norm_first``
    ``x = x + sa(norm1(x)); x = x + ff(norm2(x))``. ``activation`` is "relu", "gelu" or a callable."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation="relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        if not bias:
            raise NotImplementedError("TransformerEncoderLayer: bias=False needs LayerNorm without bias; use bias=True")
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                            device=device, dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, device=device, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, device=device, dtype=dtype)
        self.norm_first = bool(norm_first)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, device=device, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, device=device, dtype=dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        if activation == "relu":
            self.activation = F.relu
        elif activation == "gelu":
            self.activation = F.gelu
        elif callable(activation):
            self.activation = activation
        else:
            raise ValueError(f"TransformerEncoderLayer: activation must be 'relu', 'gelu' or a callable, got {activation!r}")

    def forward(self, src: Tensor, src_mask: Tensor | None = None, src_key_padding_mask: Tensor | None = None,
                is_causal: bool = False) -> Tensor:
        x = src
        if self.norm_first:
            x = x + self._sa(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff(self.norm2(x))
        else:
            x = self.norm1(x + self._sa(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff(x))
        return x

    def _sa(self, x, attn_mask, key_padding_mask, is_causal):
        out = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                             is_causal=is_causal)[0]
        return self.dropout1(out)

    def _ff(self, x):
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))
