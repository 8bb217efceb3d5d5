"""Helpers shared by the optim tests: optimizer configurations, parameters and gradient streams.

Nothing here imports torch, so the torch-free tests can use it too.
"""
from __future__ import annotations

import numpy as np

from xpgrad import autograd as ag
from xpgrad import optim

SHAPES = [(3, 4), ()]  # a matrix and a 0-d parameter

# (class name, keyword arguments): every optimizer over a grid of its options.
SGD_CONFIGS = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, weight_decay=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.5, nesterov=True)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.05)),
]
ADAM_CONFIGS = [
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    # beta1 < 0.5 takes the other branch of torch's lerp; a large eps moves the denominator
    ("Adam", dict(lr=0.02, betas=(0.3, 0.6), eps=1e-3)),
    ("Adam", dict(lr=0.02, betas=(0.3, 0.6), eps=1e-3, amsgrad=True, weight_decay=0.2)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.3)),
    ("AdamW", dict(lr=0.01, weight_decay=0.3, amsgrad=True)),
    ("AdamW", dict(lr=0.02, betas=(0.3, 0.6), weight_decay=0.0)),
]
RMSPROP_CONFIGS = [
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.1, eps=1e-4)),
    ("RMSprop", dict(lr=0.01, alpha=0.3, centered=True)),  # 1 - alpha >= 0.5: the other lerp branch
]
ADAGRAD_CONFIGS = [
    ("Adagrad", dict(lr=0.05)),
    ("Adagrad", dict(lr=0.05, lr_decay=0.1)),
    ("Adagrad", dict(lr=0.05, initial_accumulator_value=0.5)),
    ("Adagrad", dict(lr=0.05, weight_decay=0.1)),
    ("Adagrad", dict(lr=0.05, lr_decay=0.05, initial_accumulator_value=0.2, weight_decay=0.1, eps=1e-3)),
]
ADADELTA_CONFIGS = [
    ("Adadelta", dict(lr=1.0)),
    ("Adadelta", dict(lr=0.5, rho=0.3)),  # 1 - rho >= 0.5
    ("Adadelta", dict(lr=0.5, rho=0.95, eps=1e-3, weight_decay=0.1)),
]
NADAM_CONFIGS = [
    ("NAdam", dict(lr=0.01)),
    ("NAdam", dict(lr=0.01, weight_decay=0.1)),
    ("NAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("NAdam", dict(lr=0.02, betas=(0.3, 0.6), eps=1e-3, momentum_decay=0.05)),  # the other lerp branch
]
RADAM_CONFIGS = [
    ("RAdam", dict(lr=0.01)),  # rho_t > 5 from step 6 on: both branches run
    ("RAdam", dict(lr=0.01, weight_decay=0.1)),
    ("RAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("RAdam", dict(lr=0.02, betas=(0.3, 0.8), eps=1e-3)),  # rho_inf < 5: never rectified
    ("RAdam", dict(lr=0.02, betas=(0.3, 0.95))),
]
CONFIGS = (SGD_CONFIGS + ADAM_CONFIGS + RMSPROP_CONFIGS + ADAGRAD_CONFIGS + ADADELTA_CONFIGS + NADAM_CONFIGS
           + RADAM_CONFIGS)


def config_id(config) -> str:
    name, kwargs = config
    return name + "(" + ",".join(f"{k}={v}" for k, v in kwargs.items()) + ")"


def initial_values(seed: int = 0, shapes=SHAPES) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.asarray(rng.standard_normal(s), dtype=np.float64) for s in shapes]


def gradient_stream(n_steps: int, seed: int = 1, shapes=SHAPES, skip_every: int = 7) -> list[list]:
    """Random gradients per step; every ``skip_every``-th step the last parameter gets None (no grad)."""
    rng = np.random.default_rng(seed)
    steps = []
    for i in range(n_steps):
        gs = [np.asarray(rng.standard_normal(s), dtype=np.float64) for s in shapes]
        if skip_every and i % skip_every == skip_every - 1:
            gs[-1] = None
        steps.append(gs)
    return steps


def ag_params(values, dtype=np.float64) -> list[ag.Tensor]:
    """Leaf tensors on the suite's default device that require grad."""
    return [ag.tensor(np.asarray(v, dtype=dtype), requires_grad=True) for v in values]


def set_grads(params, grads, dtype=None) -> None:
    for p, g in zip(params, grads):
        p.grad = None if g is None else ag.tensor(np.asarray(g, dtype=dtype or p.dtype), device=p.device)


def make(name: str, params, **kwargs) -> optim.Optimizer:
    return getattr(optim, name)(params, **kwargs)


def host(t) -> np.ndarray:
    return t.numpy()
