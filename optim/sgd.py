"""Stochastic gradient descent, with PyTorch's momentum, dampening, weight decay and Nesterov rules."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .optimizer import CHUNK, Optimizer, ParamsT, _at_least_zero, _check_foreach, _l2_decayed, _real, run_chunked

__all__ = ["SGD", "sgd_update"]


def sgd_update(
    param, grad, momentum_buffer, scratch, *, xp, lr: float, momentum: float, dampening: float,
    weight_decay: float, nesterov: bool, first_step: bool,
) -> None:
    """One SGD step on arrays, in place (torch's ``_single_tensor_sgd``).

    ``momentum_buffer`` is None without momentum; ``first_step`` says it holds nothing yet (torch
    then starts it as a copy of the gradient, with no dampening). ``scratch`` is two work arrays
    shaped like ``param``; ``grad`` is only read.
    """
    s0, s1 = scratch
    d = grad if weight_decay == 0 else _l2_decayed(xp, grad, param, weight_decay, out=s0)
    if momentum != 0:
        buf = momentum_buffer
        if first_step:
            xp.copyto(buf, d)
        else:
            xp.multiply(buf, momentum, out=buf)
            if dampening != 0:
                xp.multiply(d, 1 - dampening, out=s0)  # d is grad or s0 itself, so s0 is free here
                xp.add(buf, s0, out=buf)
            else:
                xp.add(buf, d, out=buf)
        if nesterov:
            xp.multiply(buf, momentum, out=s1)
            xp.add(d, s1, out=s1)  # d + momentum * buf
            d = s1
        else:
            d = buf
    _descend(xp, param, d, d if (d is s0 or d is s1) else s1, lr)


def _descend(xp, param, direction, work, lr: float) -> None:
    """``param -= lr * direction`` in place, through ``work`` (which may be ``direction`` itself):
    grad and the momentum buffer are never scaled in place."""
    xp.multiply(direction, -lr, out=work)
    xp.add(param, work, out=param)


class SGD(Optimizer):
    """Stochastic gradient descent (optionally with momentum), exactly as ``torch.optim.SGD``."""

    _kernel = staticmethod(sgd_update)

    def __init__(
        self, params: ParamsT, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
        weight_decay: float = 0, nesterov: bool = False, *, foreach: bool | None = None,
    ) -> None:
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
                    "nesterov": nesterov, "foreach": foreach}
        super().__init__(params, defaults)

    def _check_options(self, options: Mapping[str, Any], where: str) -> None:
        _at_least_zero(options, "lr", "learning rate", where)
        momentum = _at_least_zero(options, "momentum", "momentum value", where)
        dampening = _real(options, "dampening", where)
        _at_least_zero(options, "weight_decay", "weight_decay value", where)
        if options["nesterov"] and (momentum <= 0 or dampening != 0):
            raise ValueError(
                f"Nesterov momentum requires a momentum and zero dampening{where} "
                f"(got momentum={options['momentum']!r}, dampening={options['dampening']!r})"
            )
        _check_foreach(options, where)

    def _update_group(self, group: dict[str, Any]) -> None:
        lr = float(group["lr"])
        momentum = float(group["momentum"])
        dampening = float(group["dampening"])
        weight_decay = float(group["weight_decay"])
        nesterov = bool(group["nesterov"])
        kernel = self._kernel
        if group.get("foreach") and self._foreach_sgd(group, kernel, lr, momentum, dampening, weight_decay, nesterov):
            return
        if momentum == 0 and weight_decay == 0 and kernel is sgd_update:
            # Plain SGD, the common case, without the general kernel's keyword-argument call.
            for p in group["params"]:
                g = p._grad
                if g is not None:
                    _descend(p.device.backend.xp, p.data, g.data, self._scratch_for(p)[1], lr)
            return
        # A backend's fused kernel needs a momentum buffer, and stands in only for the stock update.
        fusable = momentum != 0 and kernel is sgd_update
        fused_device = fused = None  # the device last asked for a kernel, and its answer
        looked_up: dict = {}
        for p in group["params"]:
            g = p._grad  # parameters are leaves: the .grad property adds nothing but a call
            if g is None:
                continue
            buf = None
            first = False
            if momentum != 0:
                state = self._state_of(p)
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = self._zeros_like(p)
                    first = True
            if fusable:
                device = p.device
                if device is not fused_device:
                    fused_device, fused = device, self._fused_on(device, "sgd_momentum", looked_up)
                if fused is not None and g.data.dtype == p.data.dtype:
                    # One kernel launch instead of up to 8 array ops; the buffer stays the same state tensor.
                    fused(p.data, g.data, buf.data, lr=lr, momentum=momentum, dampening=dampening,
                          weight_decay=weight_decay, nesterov=nesterov, first_step=first)
                    continue
            if p.data.size > CHUNK:  # large: in cache-sized pieces on NumPy
                run_chunked(kernel, p.device.backend.xp, (p.data, g.data, None if buf is None else buf.data),
                            self._scratch_for(p), dict(lr=lr, momentum=momentum, dampening=dampening,
                                                       weight_decay=weight_decay, nesterov=nesterov, first_step=first))
                continue
            kernel(p.data, g.data, None if buf is None else buf.data, self._scratch_for(p),
                   xp=p.device.backend.xp, lr=lr, momentum=momentum, dampening=dampening,
                   weight_decay=weight_decay, nesterov=nesterov, first_step=first)

    def _foreach_sgd(self, group, kernel, lr, momentum, dampening, weight_decay, nesterov) -> bool:
        """One flat step of the group (``foreach=True``); False when it must go per parameter."""
        params = group["params"]
        first = momentum != 0 and "momentum_buffer" not in self.state.get(params[0], {})

        def init(p, state):
            if momentum != 0 and "momentum_buffer" not in state:
                state["momentum_buffer"] = self._zeros_like(p)

        buckets = self._foreach_buckets(group, ("momentum_buffer",) if momentum != 0 else (), init)
        if buckets is None:
            return False
        looked_up: dict = {}
        for b in buckets:
            buf = b.state["momentum_buffer"] if momentum != 0 else None
            fused = None
            if momentum != 0 and kernel is sgd_update:
                fused = self._fused_on(b.params[0].device, "sgd_momentum", looked_up)
            if fused is not None:
                fused(b.param, b.grad, buf, lr=lr, momentum=momentum, dampening=dampening,
                      weight_decay=weight_decay, nesterov=nesterov, first_step=first)
            else:
                run_chunked(kernel, b.xp, (b.param, b.grad, buf), b.scratch, dict(
                    lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                    first_step=first))
        return True
