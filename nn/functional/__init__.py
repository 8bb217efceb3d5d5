"""Stateless layer functions and losses (``nn.functional``, usually imported as ``F``).

Ops where composing simpler ops would be slow or numerically fragile are single ``Function`` s
whose backward is written once for raw arrays (the fast path) and Tensors (``create_graph=True``,
so every gradient here is differentiable again): ``linear``, ``softmax``, ``log_softmax``,
``cross_entropy``, ``layer_norm``, ``gelu``, ``embedding``, ``dropout``, and the binary
cross-entropies. softmax, log_softmax and cross_entropy shift by the row maximum, so logits of
magnitude 1e4 and ``-inf`` masks give finite values and gradients.

Whatever a backward reads reaches it through ``ctx.save_for_backward``: an input, index or weight
tensor changed in place between forward and backward makes backward raise, never gives a wrong
gradient.

Modules: ``dense`` (linear, flatten), ``activations``, ``regularization`` (dropout),
``normalization`` (layer_norm, batch_norm), ``embeddings`` (embedding, one_hot), ``classification``
(cross_entropy, nll_loss; their ops in ``cross_entropy_ops``), ``losses`` (mse, l1, binary),
``convolution`` (conv1d, conv2d), ``attention`` (scaled_dot_product_attention) and ``pooling`` (max, average and adaptive average pooling).
"""
from __future__ import annotations

# Two private names are read from outside, hence the explicit re-exports: nn.loss checks reductions with
# F._check_reduction, and cross_entropy reads F._plain_targets at each call (replacing it here, as tests
# do, sends every call the general way).
from ._common import _check_reduction as _check_reduction
from .activations import gelu, leaky_relu, log_softmax, relu, sigmoid, softmax, tanh
from .attention import scaled_dot_product_attention
from .classification import _plain_targets as _plain_targets
from .classification import cross_entropy, nll_loss
from .convolution import conv1d, conv2d
from .dense import flatten, linear
from .embeddings import embedding, one_hot
from .losses import binary_cross_entropy, binary_cross_entropy_with_logits, l1_loss, mse_loss
from .normalization import batch_norm, layer_norm
from .pooling import adaptive_avg_pool2d, avg_pool1d, avg_pool2d, max_pool1d, max_pool2d
from .regularization import dropout

__all__ = [
    "linear", "relu", "leaky_relu", "gelu", "sigmoid", "tanh", "softmax", "log_softmax", "dropout", "layer_norm",
    "batch_norm", "embedding", "one_hot", "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "flatten",
    "conv1d", "conv2d", "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool2d",
    "scaled_dot_product_attention",
]
