"""RAdam (rectified Adam), with PyTorch's rectification threshold."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .adam import Adam, adam_moments
from .optimizer import Optimizer, ParamsT

__all__ = ["RAdam", "radam_update"]


def radam_update(
    param, grad, exp_avg, exp_avg_sq, scratch, *, xp, step: float, lr: float, beta1: float, beta2: float,
    eps: float, weight_decay: float, decoupled_weight_decay: bool,
) -> None:
    """One RAdam step on arrays, in place (torch's ``_single_tensor_radam``); ``step`` is the count
    after this step. ``scratch`` is three work arrays shaped like ``param``."""
    s0, s1, s2 = scratch
    adam_moments(param, grad, exp_avg, exp_avg_sq, s0, s1, xp=xp, lr=lr, beta1=beta1, beta2=beta2,
                 weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay)

    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * (beta2**step) / bias_correction2

    update = s2
    xp.divide(exp_avg, bias_correction1, out=update)
    xp.multiply(update, lr, out=update)
    if rho_t > 5.0:
        rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
        adaptive = s1
        xp.sqrt(exp_avg_sq, out=adaptive)
        xp.add(adaptive, eps, out=adaptive)
        xp.reciprocal(adaptive, out=adaptive)  # torch's number / tensor is reciprocal(tensor) * number
        xp.multiply(adaptive, bias_correction2**0.5, out=adaptive)
        xp.multiply(update, adaptive, out=update)
        xp.multiply(update, rect, out=update)
    xp.subtract(param, update, out=param)


class RAdam(Optimizer):
    """RAdam (Liu et al.), exactly as ``torch.optim.RAdam``; ``decoupled_weight_decay=True`` is RAdamW."""

    _required_state = ("step", "exp_avg", "exp_avg_sq")

    def __init__(
        self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
        weight_decay: float = 0, decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "decoupled_weight_decay": decoupled_weight_decay}
        super().__init__(params, defaults)

    def _check_options(self, options: Mapping[str, Any], where: str) -> None:
        Adam._check_options(self, options, where)  # lr, eps, betas, weight_decay: checked as Adam does

    def _update_group(self, group: dict[str, Any]) -> None:
        lr = float(group["lr"])
        beta1, beta2 = (float(b) for b in group["betas"])
        eps = float(group["eps"])
        weight_decay = float(group["weight_decay"])
        decoupled = bool(group["decoupled_weight_decay"])
        for p in group["params"]:
            g = p._grad  # parameters are leaves: the .grad property adds nothing but a call
            if g is None:
                continue
            state = self._state_of(p)
            if not state:
                state["step"] = 0.0
                state["exp_avg"] = self._zeros_like(p)
                state["exp_avg_sq"] = self._zeros_like(p)
            state["step"] += 1
            radam_update(p.data, g.data, state["exp_avg"].data, state["exp_avg_sq"].data, self._scratch_for(p, 3),
                         xp=p.device.backend.xp, step=float(state["step"]), lr=lr, beta1=beta1, beta2=beta2,
                         eps=eps, weight_decay=weight_decay, decoupled_weight_decay=decoupled)
