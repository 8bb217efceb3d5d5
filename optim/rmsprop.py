"""RMSprop, with PyTorch's centered variant and momentum."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .optimizer import CHUNK, Optimizer, ParamsT, _at_least_zero, _check_foreach, _l2_decayed, lerp_, run_chunked

__all__ = ["RMSprop", "rmsprop_update"]


def rmsprop_update(
    param, grad, square_avg, grad_avg, momentum_buffer, scratch, *, xp, lr: float, alpha: float, eps: float,
    weight_decay: float, momentum: float, centered: bool,
) -> None:
    """One RMSprop step on arrays, in place (torch's ``_single_tensor_rmsprop``). ``grad_avg`` is
    used when ``centered``, ``momentum_buffer`` when ``momentum > 0``; ``scratch`` is two work
    arrays shaped like ``param``."""
    s0, s1 = scratch
    d = grad if weight_decay == 0 else _l2_decayed(xp, grad, param, weight_decay, out=s0)
    xp.multiply(square_avg, alpha, out=square_avg)
    xp.multiply(d, 1 - alpha, out=s1)  # torch's addcmul order: (value * g) * g
    xp.multiply(s1, d, out=s1)
    xp.add(square_avg, s1, out=square_avg)

    avg = s1
    if centered:
        lerp_(grad_avg, d, 1 - alpha, s1, xp=xp)
        xp.negative(grad_avg, out=avg)  # square_avg + (-1 * grad_avg) * grad_avg
        xp.multiply(avg, grad_avg, out=avg)
        xp.add(square_avg, avg, out=avg)
        xp.sqrt(avg, out=avg)
    else:
        xp.sqrt(square_avg, out=avg)
    xp.add(avg, eps, out=avg)

    if momentum > 0:
        buf = momentum_buffer
        xp.multiply(buf, momentum, out=buf)
        xp.divide(d, avg, out=avg)
        xp.add(buf, avg, out=buf)
        xp.multiply(buf, -lr, out=s1)
        xp.add(param, s1, out=param)
    else:
        xp.multiply(d, -lr, out=s0)  # torch's addcdiv order: (value * g) / avg; d is grad or s0 itself
        xp.divide(s0, avg, out=s0)
        xp.add(param, s0, out=param)


class RMSprop(Optimizer):
    """RMSprop (Hinton), exactly as ``torch.optim.RMSprop``."""

    _kernel = staticmethod(rmsprop_update)
    _required_state = ("step", "square_avg")

    def __init__(
        self, params: ParamsT, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0,
        momentum: float = 0, centered: bool = False, *, foreach: bool | None = None,
    ) -> None:
        defaults = {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay, "momentum": momentum,
                    "centered": centered, "foreach": foreach}
        super().__init__(params, defaults)

    def _check_options(self, options: Mapping[str, Any], where: str) -> None:
        _at_least_zero(options, "lr", "learning rate", where)
        _at_least_zero(options, "eps", "epsilon value", where)
        _at_least_zero(options, "momentum", "momentum value", where)
        _at_least_zero(options, "weight_decay", "weight_decay value", where)
        _at_least_zero(options, "alpha", "alpha value", where)
        _check_foreach(options, where)

    def _update_group(self, group: dict[str, Any]) -> None:
        lr = float(group["lr"])
        alpha = float(group["alpha"])
        eps = float(group["eps"])
        weight_decay = float(group["weight_decay"])
        momentum = float(group["momentum"])
        centered = bool(group["centered"])
        kernel = self._kernel
        kw = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum, centered=centered)

        def init(p, state):
            if not state:
                state["step"] = 0.0
                state["square_avg"] = self._zeros_like(p)
            # Created on first need, so switching momentum/centered on later starts them as torch would.
            if momentum > 0 and "momentum_buffer" not in state:
                state["momentum_buffer"] = self._zeros_like(p)
            if centered and "grad_avg" not in state:
                state["grad_avg"] = self._zeros_like(p)

        if group.get("foreach"):
            keys = (("square_avg",) + (("grad_avg",) if centered else ())
                    + (("momentum_buffer",) if momentum > 0 else ()))
            buckets = self._foreach_buckets(group, keys, init)
            if buckets is not None:
                for p in group["params"]:
                    self.state[p]["step"] += 1
                for b in buckets:
                    run_chunked(kernel, b.xp, (b.param, b.grad, b.state["square_avg"], b.state.get("grad_avg"),
                                               b.state.get("momentum_buffer")), b.scratch, kw)
                return
        for p in group["params"]:
            g = p._grad  # parameters are leaves: the .grad property adds nothing but a call
            if g is None:
                continue
            state = self._state_of(p)
            if not state:
                state["step"] = 0.0
                state["square_avg"] = self._zeros_like(p)
            if momentum > 0 and "momentum_buffer" not in state:
                state["momentum_buffer"] = self._zeros_like(p)
            if centered and "grad_avg" not in state:
                state["grad_avg"] = self._zeros_like(p)
            state["step"] += 1
            if p.data.size > CHUNK:  # large: in cache-sized pieces on NumPy
                run_chunked(kernel, p.device.backend.xp, (p.data, g.data, state["square_avg"].data,
                                                          state["grad_avg"].data if centered else None,
                                                          state["momentum_buffer"].data if momentum > 0 else None),
                            self._scratch_for(p), kw)
                continue
            kernel(p.data, g.data, state["square_avg"].data, state["grad_avg"].data if centered else None,
                   state["momentum_buffer"].data if momentum > 0 else None, self._scratch_for(p),
                   xp=p.device.backend.xp, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                   momentum=momentum, centered=centered)
