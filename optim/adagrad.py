"""Adagrad, with PyTorch's learning-rate decay and initial accumulator value."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .optimizer import Optimizer, ParamsT, _at_least_zero, _l2_decayed

__all__ = ["Adagrad", "adagrad_update"]


def adagrad_update(
    param, grad, state_sum, scratch, *, xp, step: float, lr: float, weight_decay: float, lr_decay: float, eps: float,
) -> None:
    """One Adagrad step on arrays, in place (torch's ``_single_tensor_adagrad``); ``step`` is the
    count after this step. ``scratch`` is two work arrays shaped like ``param``."""
    s0, s1 = scratch
    d = grad if weight_decay == 0 else _l2_decayed(xp, grad, param, weight_decay, out=s0)
    clr = lr / (1 + (step - 1) * lr_decay)
    xp.multiply(d, d, out=s1)
    xp.add(state_sum, s1, out=state_sum)
    std = s1
    xp.sqrt(state_sum, out=std)
    xp.add(std, eps, out=std)
    xp.multiply(d, -clr, out=s0)  # torch's addcdiv order: (value * g) / std; d is grad or s0 itself
    xp.divide(s0, std, out=s0)
    xp.add(param, s0, out=param)


class Adagrad(Optimizer):
    """Adagrad (Duchi et al.), exactly as ``torch.optim.Adagrad``.

    As in torch, the state (``step``, ``sum``) is created when the optimizer is built. Unlike torch,
    a group's own ``initial_accumulator_value`` is honoured (torch always uses the constructor's).
    """

    _kernel = staticmethod(adagrad_update)
    _required_state = ("step", "sum")

    def __init__(
        self, params: ParamsT, lr: float = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
        initial_accumulator_value: float = 0, eps: float = 1e-10,
    ) -> None:
        defaults = {"lr": lr, "lr_decay": lr_decay, "eps": eps, "weight_decay": weight_decay,
                    "initial_accumulator_value": initial_accumulator_value}
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, group)

    def _init_state(self, p, group: dict[str, Any]) -> dict[str, Any]:
        state = self.state[p]
        state["step"] = 0.0
        state["sum"] = self._zeros_like(p, float(group["initial_accumulator_value"]))
        return state

    def _check_options(self, options: Mapping[str, Any], where: str) -> None:
        _at_least_zero(options, "lr", "learning rate", where)
        _at_least_zero(options, "lr_decay", "lr_decay value", where)
        _at_least_zero(options, "weight_decay", "weight_decay value", where)
        _at_least_zero(options, "initial_accumulator_value", "initial_accumulator_value value", where)
        _at_least_zero(options, "eps", "epsilon value", where)

    def _update_group(self, group: dict[str, Any]) -> None:
        lr = float(group["lr"])
        weight_decay = float(group["weight_decay"])
        lr_decay = float(group["lr_decay"])
        eps = float(group["eps"])
        kernel = self._kernel
        for p in group["params"]:
            g = p._grad  # parameters are leaves: the .grad property adds nothing but a call
            if g is None:
                continue
            state = self._state_of(p)
            if not state:  # a group added later, or state cleared by load_state_dict
                state = self._init_state(p, group)
            state["step"] += 1
            kernel(p.data, g.data, state["sum"].data, self._scratch_for(p), xp=p.device.backend.xp,
                   step=float(state["step"]), lr=lr, weight_decay=weight_decay, lr_decay=lr_decay, eps=eps)
