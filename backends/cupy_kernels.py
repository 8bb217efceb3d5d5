"""Fused CuPy kernels for the hot loops of training: optimizer updates and a few backward formulas.

Each kernel reads and writes every element once instead of once per NumPy-style operation (Adam
is ~10 separate array ops otherwise). Kernel objects are built once per dtype by memoized
factories (``adam_kernel(dtype)``...) and never per call; CuPy compiles each on its first launch
and caches the binary. Building one does not touch the GPU, so the definitions can be checked
without one, and ``kernel_spec`` gives their source as plain data (a host C++ compiler can run it:
see tests/backends/test_cupy.py).

The call helpers (``adam_update``, ``sgd_momentum_update``, ``softmax_cross_entropy_backward``,
``relu_backward``, ``tanh_backward``, ``sigmoid_backward``) take cupy arrays. Callers get the first
three through the backend's hook, ``CupyBackend.fused(kind)`` (kinds "adam", "sgd_momentum",
"softmax_cross_entropy_backward"), and keep their array-module code path where it gives None. Arithmetic
runs in float32 for float16/float32 arrays and in float64 for float64 arrays; update rules follow
PyTorch's (``torch.optim.Adam``/``AdamW``/``SGD``).
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

__all__ = [
    "KernelSpec", "kernel_spec", "KINDS",
    "adam_kernel", "adam_amsgrad_kernel", "sgd_momentum_kernel", "softmax_xent_backward_kernel",
    "relu_backward_kernel", "relu_mask_backward_kernel", "tanh_backward_kernel", "sigmoid_backward_kernel",
    "adam_update", "sgd_momentum_update", "softmax_cross_entropy_backward", "relu_backward", "tanh_backward",
    "sigmoid_backward",
]

_FLOATS = ("float16", "float32", "float64")


class KernelSpec(NamedTuple):
    """What ``cupy.ElementwiseKernel(in_params, out_params, operation, name, preamble=...)`` is built from."""

    in_params: str
    out_params: str
    operation: str
    name: str
    preamble: str


# Bodies use ``acc_t`` for arithmetic (float for float16/float32, double for float64); ``T`` in the
# parameter lists is the array dtype, ``A`` the scalar dtype matching acc_t.
_SOURCES: dict[str, tuple[str, str, str]] = {
    "adam": (
        "T grad, A lr, A beta1, A beta2, A eps, A bias_correction1, A bias_correction2_sqrt, "
        "A weight_decay, bool decoupled",
        "T param, T exp_avg, T exp_avg_sq",
        """
        acc_t p = param;
        acc_t g = grad;
        if (decoupled) { p = p * (1 - lr * weight_decay); } else { g = g + weight_decay * p; }
        acc_t m = exp_avg;
        m = m + (1 - beta1) * (g - m);
        acc_t v = beta2 * (acc_t)exp_avg_sq + (1 - beta2) * g * g;
        acc_t denom = sqrt(v) / bias_correction2_sqrt + eps;
        exp_avg = m;
        exp_avg_sq = v;
        param = p - (lr / bias_correction1) * m / denom;
        """,
    ),
    "adam_amsgrad": (
        "T grad, A lr, A beta1, A beta2, A eps, A bias_correction1, A bias_correction2_sqrt, "
        "A weight_decay, bool decoupled",
        "T param, T exp_avg, T exp_avg_sq, T max_exp_avg_sq",
        """
        acc_t p = param;
        acc_t g = grad;
        if (decoupled) { p = p * (1 - lr * weight_decay); } else { g = g + weight_decay * p; }
        acc_t m = exp_avg;
        m = m + (1 - beta1) * (g - m);
        acc_t v = beta2 * (acc_t)exp_avg_sq + (1 - beta2) * g * g;
        acc_t vmax = max((acc_t)max_exp_avg_sq, v);
        acc_t denom = sqrt(vmax) / bias_correction2_sqrt + eps;
        exp_avg = m;
        exp_avg_sq = v;
        max_exp_avg_sq = vmax;
        param = p - (lr / bias_correction1) * m / denom;
        """,
    ),
    "sgd_momentum": (
        "T grad, A lr, A momentum, A dampening, A weight_decay, bool nesterov, bool first_step",
        "T param, T momentum_buffer",
        """
        acc_t p = param;
        acc_t d = (acc_t)grad + weight_decay * p;
        acc_t b = first_step ? d : momentum * (acc_t)momentum_buffer + (1 - dampening) * d;
        momentum_buffer = b;
        d = nesterov ? d + momentum * b : b;
        param = p - lr * d;
        """,
    ),
    # grad_logits = (softmax - q) * scale, q the (label-smoothed) target distribution; rows whose
    # target is ignore_index get 0. ``i`` is the flat index into the (N, C) output.
    "softmax_xent_backward": (
        "T probs, int64 target, A scale, A smoothing, int64 n_classes, int64 ignore_index",
        "T grad_logits",
        """
        long long col = i % n_classes;
        acc_t q = smoothing / (acc_t)n_classes + (col == target ? (acc_t)1 - smoothing : (acc_t)0);
        acc_t g = ((acc_t)probs - q) * scale;
        grad_logits = target == ignore_index ? (acc_t)0 : g;
        """,
    ),
    "relu_backward": (
        "T grad, T x",
        "T grad_x",
        "grad_x = (acc_t)x > 0 ? (acc_t)grad : (acc_t)0;",
    ),
    "relu_mask_backward": (
        "T grad, bool mask",
        "T grad_x",
        "grad_x = mask ? (acc_t)grad : (acc_t)0;",
    ),
    "tanh_backward": (
        "T grad, T y",
        "T grad_x",
        "acc_t t = y; grad_x = (acc_t)grad * (1 - t * t);",
    ),
    "sigmoid_backward": (
        "T grad, T y",
        "T grad_x",
        "acc_t s = y; grad_x = (acc_t)grad * (s * (1 - s));",
    ),
}

KINDS = tuple(_SOURCES)


def _dtype_name(dtype) -> str:
    name = np.dtype(dtype).name
    if name not in _FLOATS:
        raise TypeError(f"fused kernels take float16, float32 or float64 arrays, got {name}")
    return name


def kernel_spec(kind: str, dtype) -> KernelSpec:
    """The source of kernel ``kind`` for arrays of ``dtype`` (pure Python; needs no CuPy)."""
    if kind not in _SOURCES:
        raise KeyError(f"no fused kernel {kind!r}; known: {KINDS}")
    t = _dtype_name(dtype)
    acc = "float64" if t == "float64" else "float32"
    c_acc = "double" if acc == "float64" else "float"

    def concrete(params: str) -> str:
        out = []
        for p in params.split(","):
            type_, name = p.split()
            out.append(f"{ {'T': t, 'A': acc}.get(type_, type_)} {name}")
        return ", ".join(out)

    ins, outs, body = _SOURCES[kind]
    return KernelSpec(
        in_params=concrete(ins),
        out_params=concrete(outs),
        operation="\n".join(line.strip() for line in body.strip().splitlines()),
        name=f"xpgrad_{kind}_{t}",
        preamble=f"typedef {c_acc} acc_t;",
    )


def _cupy():
    import cupy  # only when a kernel is built or a helper called: CPU use never imports CuPy

    return cupy


@functools.cache
def _kernel(kind: str, dtype_name: str):
    cupy = _cupy()
    spec = kernel_spec(kind, dtype_name)
    return cupy.ElementwiseKernel(spec.in_params, spec.out_params, spec.operation, spec.name, preamble=spec.preamble)


def _factory(kind: str, doc: str):
    def factory(dtype):
        return _kernel(kind, _dtype_name(dtype))

    factory.__name__ = f"{kind}_kernel"
    factory.__doc__ = f"The cached ``cupy.ElementwiseKernel`` for {doc}, for arrays of ``dtype``."
    return factory


adam_kernel = _factory("adam", "one Adam/AdamW step")
adam_amsgrad_kernel = _factory("adam_amsgrad", "one Adam/AdamW step with amsgrad")
sgd_momentum_kernel = _factory("sgd_momentum", "one SGD step with momentum (optionally Nesterov)")
softmax_xent_backward_kernel = _factory("softmax_xent_backward", "the softmax-cross-entropy gradient")
relu_backward_kernel = _factory("relu_backward", "relu's backward from its input")
relu_mask_backward_kernel = _factory("relu_mask_backward", "relu's backward from a bool mask")
tanh_backward_kernel = _factory("tanh_backward", "tanh's backward from its output")
sigmoid_backward_kernel = _factory("sigmoid_backward", "sigmoid's backward from its output")


def _same_dtype(what: str, first, *others) -> str:
    name = _dtype_name(first.dtype)
    for o in others:
        if o is not None and o.dtype != first.dtype:
            raise TypeError(f"{what}: all arrays must have dtype {name}, got {o.dtype}")
    return name


# -- call helpers (all in place on the state arrays) -------------------------------------------------------

def adam_update(param, grad, exp_avg, exp_avg_sq, *, lr: float, beta1: float, beta2: float, eps: float,
                step: float, weight_decay: float = 0.0, decoupled_weight_decay: bool = False,
                max_exp_avg_sq=None) -> None:
    """One Adam (or AdamW with ``decoupled_weight_decay=True``) step, in place; ``step`` counts from 1.

    Pass ``max_exp_avg_sq`` for amsgrad. Bias corrections are computed here on the host, so the step
    never synchronises with the GPU.
    """
    if step < 1:
        raise ValueError(f"adam_update: step counts from 1, got {step}")
    dtype = _same_dtype("adam_update", param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq)
    bias_correction1 = 1 - float(beta1) ** step
    bias_correction2_sqrt = math.sqrt(1 - float(beta2) ** step)
    scalars = (float(lr), float(beta1), float(beta2), float(eps), bias_correction1, bias_correction2_sqrt,
               float(weight_decay), bool(decoupled_weight_decay))
    if max_exp_avg_sq is None:
        adam_kernel(dtype)(grad, *scalars, param, exp_avg, exp_avg_sq)
    else:
        adam_amsgrad_kernel(dtype)(grad, *scalars, param, exp_avg, exp_avg_sq, max_exp_avg_sq)


def sgd_momentum_update(param, grad, momentum_buffer, *, lr: float, momentum: float, dampening: float = 0.0,
                        weight_decay: float = 0.0, nesterov: bool = False, first_step: bool = False) -> None:
    """One SGD-with-momentum step, in place. On ``first_step`` the buffer is set to the gradient
    (PyTorch's rule), whatever it held."""
    dtype = _same_dtype("sgd_momentum_update", param, grad, momentum_buffer)
    sgd_momentum_kernel(dtype)(
        grad, float(lr), float(momentum), float(dampening), float(weight_decay), bool(nesterov), bool(first_step),
        param, momentum_buffer,
    )


def softmax_cross_entropy_backward(probs, target, scale, *, label_smoothing: float = 0.0, ignore_index: int = -100):
    """Gradient of cross entropy w.r.t. logits of shape (N, C): ``(probs - q) * scale``.

    ``probs`` is softmax(logits); ``target`` (N,) holds class indices; ``q`` is the one-hot target
    smoothed by ``label_smoothing``; ``scale`` is a number or an (N,) array (the upstream gradient,
    divided by the number of counted rows for reduction="mean"). Rows with ``ignore_index`` get 0.
    """
    cupy = _cupy()
    if probs.ndim != 2:
        raise ValueError(f"softmax_cross_entropy_backward: probs must be (N, C), got shape {probs.shape}")
    n, c = probs.shape
    if target.shape != (n,):
        raise ValueError(f"softmax_cross_entropy_backward: target must have shape ({n},), got {target.shape}")
    dtype = _dtype_name(probs.dtype)
    column = target.astype(cupy.int64, copy=False).reshape(n, 1)
    if isinstance(scale, cupy.ndarray):
        # Array arguments must match the kernel's parameter dtype exactly (CuPy casts only scalars).
        scale = scale.astype(np.float64 if dtype == "float64" else np.float32, copy=False)
        if scale.ndim == 1:
            scale = scale.reshape(n, 1)
    else:
        scale = float(scale)
    out = cupy.empty(probs.shape, dtype=probs.dtype)
    softmax_xent_backward_kernel(dtype)(probs, column, scale, float(label_smoothing), c, int(ignore_index), out)
    return out


def relu_backward(grad, x_or_mask):
    """``grad`` where the input was > 0 (relu'(0) = 0), from the input or a bool mask of it."""
    if x_or_mask.dtype == np.bool_:
        return relu_mask_backward_kernel(_dtype_name(grad.dtype))(grad, x_or_mask)
    return relu_backward_kernel(_same_dtype("relu_backward", grad, x_or_mask))(grad, x_or_mask)


def tanh_backward(grad, y):
    """``grad * (1 - y**2)`` with ``y = tanh(x)``, the forward output."""
    return tanh_backward_kernel(_same_dtype("tanh_backward", grad, y))(grad, y)


def sigmoid_backward(grad, y):
    """``grad * y * (1 - y)`` with ``y = sigmoid(x)``, the forward output."""
    return sigmoid_backward_kernel(_same_dtype("sigmoid_backward", grad, y))(grad, y)
