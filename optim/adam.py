"""Adam and AdamW, with PyTorch's bias correction, eps placement and AMSGrad."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .optimizer import (
    CHUNK, Optimizer, ParamsT, _at_least_zero, _check_foreach, _in_unit_interval, _l2_decayed, lerp_, run_chunked,
)

__all__ = ["Adam", "AdamW", "adam_update", "lerp_"]


def adam_moments(param, grad, exp_avg, exp_avg_sq, s0, s1, *, xp, lr: float, beta1: float, beta2: float,
                 weight_decay: float, decoupled_weight_decay: bool):
    """The part every Adam-family step shares, in place: weight decay (decoupled into ``param``,
    or L2 into a copy of the gradient in ``s0``), then both moments (``s1`` is scratch). Returns
    the gradient the step goes on with."""
    d = grad
    if weight_decay != 0:
        if decoupled_weight_decay:
            xp.multiply(param, 1 - lr * weight_decay, out=param)
        else:
            d = _l2_decayed(xp, grad, param, weight_decay, out=s0)
    lerp_(exp_avg, d, 1 - beta1, s1, xp=xp)
    xp.multiply(exp_avg_sq, beta2, out=exp_avg_sq)
    xp.multiply(d, 1 - beta2, out=s1)  # torch's addcmul order: (value * g) * g
    xp.multiply(s1, d, out=s1)
    xp.add(exp_avg_sq, s1, out=exp_avg_sq)
    return d


def adam_update(
    param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, scratch, *, xp, step: float, lr: float, beta1: float,
    beta2: float, eps: float, weight_decay: float, amsgrad: bool, decoupled_weight_decay: bool,
) -> None:
    """One Adam/AdamW step on arrays, in place (torch's ``_single_tensor_adam``); ``step`` is the
    count after this step (1 on the first). ``scratch`` is two work arrays shaped like ``param``."""
    s0, s1 = scratch
    adam_moments(param, grad, exp_avg, exp_avg_sq, s0, s1, xp=xp, lr=lr, beta1=beta1, beta2=beta2,
                 weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay)

    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    step_size = lr / bias_correction1
    bias_correction2_sqrt = bias_correction2**0.5

    v = exp_avg_sq
    if amsgrad:
        xp.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        v = max_exp_avg_sq
    denom = s1
    xp.sqrt(v, out=denom)
    xp.divide(denom, bias_correction2_sqrt, out=denom)
    xp.add(denom, eps, out=denom)
    xp.multiply(exp_avg, -step_size, out=s0)  # torch's addcdiv order: (value * m) / denom
    xp.divide(s0, denom, out=s0)
    xp.add(param, s0, out=param)


class Adam(Optimizer):
    """Adam (Kingma & Ba), exactly as ``torch.optim.Adam``. ``decoupled_weight_decay=True`` is AdamW.

    ``foreach=True`` updates each group through flat buffers (see ``Optimizer._foreach_buckets``):
    a handful of array calls per step for all its parameters, with the same results bit for bit.
    """

    _kernel = staticmethod(adam_update)
    _required_state = ("step", "exp_avg", "exp_avg_sq")

    def __init__(
        self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
        weight_decay: float = 0, amsgrad: bool = False, *, foreach: bool | None = None,
        decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "amsgrad": amsgrad,
                    "foreach": foreach, "decoupled_weight_decay": decoupled_weight_decay}
        super().__init__(params, defaults)

    def _check_options(self, options: Mapping[str, Any], where: str) -> None:
        _at_least_zero(options, "lr", "learning rate", where)
        _at_least_zero(options, "eps", "epsilon value", where)
        betas = options["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2){where}, got {betas!r}")
        _in_unit_interval(betas[0], "beta parameter at index 0", where)
        _in_unit_interval(betas[1], "beta parameter at index 1", where)
        _at_least_zero(options, "weight_decay", "weight_decay value", where)
        _check_foreach(options, where)

    @staticmethod
    def _init_state(p, state: dict[str, Any], amsgrad: bool) -> None:
        if not state:
            state["step"] = 0.0
            state["exp_avg"] = Optimizer._zeros_like(p)
            state["exp_avg_sq"] = Optimizer._zeros_like(p)
        if amsgrad and "max_exp_avg_sq" not in state:
            # amsgrad switched on mid-training: max(0, v) == v, so zeros start it where torch would
            state["max_exp_avg_sq"] = Optimizer._zeros_like(p)

    def _update_group(self, group: dict[str, Any]) -> None:
        lr = float(group["lr"])
        beta1, beta2 = (float(b) for b in group["betas"])
        eps = float(group["eps"])
        weight_decay = float(group["weight_decay"])
        amsgrad = bool(group["amsgrad"])
        decoupled = bool(group["decoupled_weight_decay"])
        kernel = self._kernel
        # A backend's fused kernel stands in only for the stock update, never for one a subclass swapped in.
        fusable = kernel is adam_update
        fused_device = fused = None  # the device last asked for a kernel, and its answer
        looked_up: dict = {}
        if group.get("foreach"):
            keys = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if amsgrad else ("exp_avg", "exp_avg_sq")
            buckets = self._foreach_buckets(group, keys, lambda p, st: self._init_state(p, st, amsgrad))
            if buckets is not None:
                step = 0.0
                for p in group["params"]:
                    state = self.state[p]
                    state["step"] += 1
                    step = float(state["step"])
                for b in buckets:
                    m, v = b.state["exp_avg"], b.state["exp_avg_sq"]
                    maxv = b.state["max_exp_avg_sq"] if amsgrad else None
                    fused = self._fused_on(b.params[0].device, "adam", looked_up) if fusable else None
                    if fused is not None:
                        fused(b.param, b.grad, m, v, lr=lr, beta1=beta1, beta2=beta2, eps=eps, step=step,
                              weight_decay=weight_decay, decoupled_weight_decay=decoupled, max_exp_avg_sq=maxv)
                    else:
                        run_chunked(kernel, b.xp, (b.param, b.grad, m, v, maxv), b.scratch, dict(
                            step=step, lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                            amsgrad=amsgrad, decoupled_weight_decay=decoupled))
                return
        for p in group["params"]:
            g = p._grad  # parameters are leaves: the .grad property adds nothing but a call
            if g is None:
                continue
            state = self._state_of(p)
            if not state or (amsgrad and "max_exp_avg_sq" not in state):
                self._init_state(p, state, amsgrad)
            state["step"] += 1
            if fusable:
                device = p.device
                if device is not fused_device:
                    fused_device, fused = device, self._fused_on(device, "adam", looked_up)
                if fused is not None and g.data.dtype == p.data.dtype:
                    # One kernel launch instead of ~15 array ops; same state tensors, so state_dict is unchanged.
                    fused(p.data, g.data, state["exp_avg"].data, state["exp_avg_sq"].data, lr=lr, beta1=beta1,
                          beta2=beta2, eps=eps, step=float(state["step"]), weight_decay=weight_decay,
                          decoupled_weight_decay=decoupled,
                          max_exp_avg_sq=state["max_exp_avg_sq"].data if amsgrad else None)
                    continue
            arrays = (p.data, g.data, state["exp_avg"].data, state["exp_avg_sq"].data,
                      state["max_exp_avg_sq"].data if amsgrad else None)
            if p.data.size > CHUNK:  # large: in cache-sized pieces on NumPy
                run_chunked(kernel, p.device.backend.xp, arrays, self._scratch_for(p), dict(
                    step=float(state["step"]), lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                    amsgrad=amsgrad, decoupled_weight_decay=decoupled))
                continue
            kernel(*arrays, self._scratch_for(p),
                   xp=p.device.backend.xp, step=float(state["step"]), lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                   weight_decay=weight_decay, amsgrad=amsgrad, decoupled_weight_decay=decoupled)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), exactly as ``torch.optim.AdamW``."""

    def __init__(
        self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
        weight_decay: float = 1e-2, amsgrad: bool = False, *, foreach: bool | None = None,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, decoupled_weight_decay=True)

    def _setup_group(self, group: dict[str, Any]) -> None:
        # As torch: AdamW always decays decoupled, whatever a group or a loaded state dict says.
        group["decoupled_weight_decay"] = True
