"""NAdam (Adam with Nesterov momentum), with PyTorch's momentum decay schedule."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .adam import Adam, adam_moments
from .optimizer import Optimizer, ParamsT, _at_least_zero

__all__ = ["NAdam", "nadam_update"]


def nadam_update(
    param, grad, exp_avg, exp_avg_sq, scratch, *, xp, step: float, mu_product: float, lr: float, beta1: float,
    beta2: float, eps: float, weight_decay: float, momentum_decay: float, decoupled_weight_decay: bool,
) -> float:
    """One NAdam step on arrays, in place (torch's ``_single_tensor_nadam``); ``step`` is the count
    after this step and ``mu_product`` the product of the momentum coefficients before it. Returns
    the new product. ``scratch`` is three work arrays shaped like ``param``."""
    s0, s1, s2 = scratch
    bias_correction2 = 1 - beta2**step
    mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))
    mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * momentum_decay)))
    # torch keeps the product in a float32 0-d tensor: each factor is rounded to float32 first
    mu_product = float(np.float32(mu_product) * np.float32(mu))

    d = adam_moments(param, grad, exp_avg, exp_avg_sq, s0, s1, xp=xp, lr=lr, beta1=beta1, beta2=beta2,
                     weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay)
    denom = s1
    xp.divide(exp_avg_sq, bias_correction2, out=denom)
    xp.sqrt(denom, out=denom)
    xp.add(denom, eps, out=denom)

    mu_product_next = mu_product * mu_next
    xp.multiply(d, -lr * (1.0 - mu) / (1.0 - mu_product), out=s2)  # addcdiv: (value * g) / denom
    xp.divide(s2, denom, out=s2)
    xp.add(param, s2, out=param)
    xp.multiply(exp_avg, (-lr * mu_next) / (1.0 - mu_product_next), out=s2)
    xp.divide(s2, denom, out=s2)
    xp.add(param, s2, out=param)
    return mu_product


class NAdam(Optimizer):
    """NAdam (Dozat), exactly as ``torch.optim.NAdam``; ``decoupled_weight_decay=True`` is NAdamW.

    The state holds ``step`` and ``mu_product`` as numbers (torch: 0-d tensors), the latter rounded
    to float32 each step as torch's is.
    """

    _required_state = ("step", "mu_product", "exp_avg", "exp_avg_sq")

    def __init__(
        self, params: ParamsT, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
        weight_decay: float = 0, momentum_decay: float = 4e-3, decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "momentum_decay": momentum_decay, "decoupled_weight_decay": decoupled_weight_decay}
        super().__init__(params, defaults)

    def _check_options(self, options: Mapping[str, Any], where: str) -> None:
        Adam._check_options(self, options, where)  # lr, eps, betas, weight_decay: checked as Adam does
        _at_least_zero(options, "momentum_decay", "momentum_decay value", where)

    def _update_group(self, group: dict[str, Any]) -> None:
        lr = float(group["lr"])
        beta1, beta2 = (float(b) for b in group["betas"])
        eps = float(group["eps"])
        weight_decay = float(group["weight_decay"])
        momentum_decay = float(group["momentum_decay"])
        decoupled = bool(group["decoupled_weight_decay"])
        for p in group["params"]:
            g = p._grad  # parameters are leaves: the .grad property adds nothing but a call
            if g is None:
                continue
            state = self._state_of(p)
            if not state:
                state["step"] = 0.0
                state["mu_product"] = 1.0
                state["exp_avg"] = self._zeros_like(p)
                state["exp_avg_sq"] = self._zeros_like(p)
            state["step"] += 1
            state["mu_product"] = nadam_update(
                p.data, g.data, state["exp_avg"].data, state["exp_avg_sq"].data, self._scratch_for(p, 3),
                xp=p.device.backend.xp, step=float(state["step"]), mu_product=float(state["mu_product"]), lr=lr,
                beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay,
                decoupled_weight_decay=decoupled)
