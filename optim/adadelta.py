"""Adadelta, with PyTorch's eps placement and L2 weight decay."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .optimizer import Optimizer, ParamsT, _at_least_zero, _l2_decayed, _real

__all__ = ["Adadelta", "adadelta_update"]


def adadelta_update(
    param, grad, square_avg, acc_delta, scratch, *, xp, lr: float, rho: float, eps: float, weight_decay: float,
) -> None:
    """One Adadelta step on arrays, in place (torch's ``_single_tensor_adadelta``). ``scratch`` is
    three work arrays shaped like ``param``; ``grad`` is only read."""
    s0, s1, s2 = scratch
    d = grad if weight_decay == 0 else _l2_decayed(xp, grad, param, weight_decay, out=s0)
    xp.multiply(square_avg, rho, out=square_avg)
    xp.multiply(d, 1 - rho, out=s1)  # torch's addcmul order: (value * g) * g
    xp.multiply(s1, d, out=s1)
    xp.add(square_avg, s1, out=square_avg)
    std = s1
    xp.add(square_avg, eps, out=std)
    xp.sqrt(std, out=std)
    delta = s2
    xp.add(acc_delta, eps, out=delta)
    xp.sqrt(delta, out=delta)
    xp.divide(delta, std, out=delta)
    xp.multiply(delta, d, out=delta)
    xp.multiply(acc_delta, rho, out=acc_delta)
    xp.multiply(delta, 1 - rho, out=s1)
    xp.multiply(s1, delta, out=s1)
    xp.add(acc_delta, s1, out=acc_delta)
    xp.multiply(delta, -lr, out=delta)
    xp.add(param, delta, out=param)


class Adadelta(Optimizer):
    """Adadelta (Zeiler), exactly as ``torch.optim.Adadelta``."""

    _kernel = staticmethod(adadelta_update)
    _required_state = ("step", "square_avg", "acc_delta")

    def __init__(
        self, params: ParamsT, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0,
    ) -> None:
        defaults = {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    def _check_options(self, options: Mapping[str, Any], where: str) -> None:
        _at_least_zero(options, "lr", "learning rate", where)
        rho = _real(options, "rho", where)
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {options['rho']!r}{where} (rho must be in [0, 1])")
        _at_least_zero(options, "eps", "epsilon value", where)
        _at_least_zero(options, "weight_decay", "weight_decay value", where)

    def _update_group(self, group: dict[str, Any]) -> None:
        lr = float(group["lr"])
        rho = float(group["rho"])
        eps = float(group["eps"])
        weight_decay = float(group["weight_decay"])
        kernel = self._kernel
        for p in group["params"]:
            g = p._grad  # parameters are leaves: the .grad property adds nothing but a call
            if g is None:
                continue
            state = self._state_of(p)
            if not state:
                state["step"] = 0.0
                state["square_avg"] = self._zeros_like(p)
                state["acc_delta"] = self._zeros_like(p)
            state["step"] += 1
            kernel(p.data, g.data, state["square_avg"].data, state["acc_delta"].data, self._scratch_for(p, 3),
                   xp=p.device.backend.xp, lr=lr, rho=rho, eps=eps, weight_decay=weight_decay)
