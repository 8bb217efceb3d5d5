"""Numerical gradient checks in float64: first order (gradcheck) and second order (gradgradcheck)."""
from __future__ import annotations

import numpy as np

from ..grad_inputs import grad as _grad
from ..tensor import Tensor

__all__ = ["GradcheckError", "gradcheck", "gradgradcheck"]


class GradcheckError(AssertionError):
    """An analytical gradient disagrees with central finite differences."""


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _float64_copies(inputs):
    out = []
    for x in inputs:
        if isinstance(x, Tensor) and x.data.dtype.kind == "f":
            # Contiguous float64 copies: perturbing an expanded (overlapping) input would be wrong.
            c = Tensor(x.numpy().astype(np.float64, copy=True), device=x.device)
            c.requires_grad_(x.requires_grad)
            out.append(c)
        else:
            out.append(x)
    return out


def _outputs(fn, inputs):
    outs = _as_tuple(fn(*inputs))
    for i, o in enumerate(outs):
        if not isinstance(o, Tensor):
            raise TypeError(f"gradcheck: output {i} of the function is a {type(o).__name__}, not a Tensor")
    return outs


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3, seed: int = 0) -> bool:
    """Check ``fn``'s gradients against central differences; True, or raise GradcheckError.

    Works on float64 copies of ``inputs`` and checks those that require grad. The analytical
    side is one vector-Jacobian product with a random upstream gradient (never all ones, which
    hides bugs in ops whose outputs sum to a constant, like softmax); the numerical side
    perturbs each element by ``±eps``. The error names the input and flat element that differ.
    """
    inputs = _float64_copies(_as_tuple(inputs))
    wrt = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not wrt:
        raise ValueError("gradcheck: no input requires grad; call .requires_grad_() on the ones to check")
    outs = _outputs(fn, inputs)
    rng = np.random.default_rng(seed)
    upstream = [rng.standard_normal(o.shape) for o in outs]
    diff_outs = [(o, u) for o, u in zip(outs, upstream) if o.requires_grad]
    if diff_outs:
        analytic = _grad(
            [o for o, _ in diff_outs],
            [inputs[i] for i in wrt],
            [Tensor(u, dtype=o.dtype, device=o.device) for o, u in diff_outs],
            allow_unused=True,
        )
    else:
        analytic = (None,) * len(wrt)

    def objective():
        total = 0.0
        for o, u in zip(_outputs(fn, inputs), upstream):
            total += float(np.sum(o.numpy().astype(np.float64) * u))
        return total

    for k, i in enumerate(wrt):
        x = inputs[i]
        host = x.numpy() if x.device.type == "cpu" else None
        flat_values = x.numpy().reshape(-1).copy()
        numeric = np.empty(flat_values.size)
        for j in range(flat_values.size):
            numeric[j] = _central_difference(x, host, flat_values, j, eps, objective)
        g = analytic[k]
        got = np.zeros(flat_values.size) if g is None else g.numpy().astype(np.float64).reshape(-1)
        if g is not None and g.shape != x.shape:
            raise GradcheckError(f"gradcheck: gradient of input {i} has shape {g.shape}, but the input has shape {x.shape}")
        bad = ~np.isclose(got, numeric, rtol=rtol, atol=atol, equal_nan=False)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            index = tuple(int(n) for n in np.unravel_index(j, x.shape)) if x.shape else ()
            raise GradcheckError(
                f"gradcheck: gradient of input {i} disagrees with finite differences at flat element {j} "
                f"(index {index}): analytical {float(got[j])!r}, numerical {float(numeric[j])!r}; "
                f"{int(bad.sum())} of {bad.size} elements differ (atol={atol}, rtol={rtol})"
            )
    return True


def _central_difference(x, host, flat_values, j, eps, objective):
    original = flat_values[j]

    def set_value(v):
        values = flat_values.copy()
        values[j] = v
        arr = values.reshape(x.shape)
        if host is not None:
            host[...] = arr
        else:
            x.data[...] = x.device.backend.asarray(arr)

    set_value(original + eps)
    plus = objective()
    set_value(original - eps)
    minus = objective()
    set_value(original)
    return (plus - minus) / (2 * eps)


def gradgradcheck(fn, inputs, grad_outputs=None, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
                  seed: int = 0) -> bool:
    """Check second derivatives: gradcheck of ``x, u -> ag.grad(fn(x), x, u, create_graph=True)``.

    ``grad_outputs`` (random when None) are checked as inputs too, as PyTorch does.
    """
    inputs = _float64_copies(_as_tuple(inputs))
    wrt = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not wrt:
        raise ValueError("gradgradcheck: no input requires grad")
    outs = [o for o in _outputs(fn, inputs) if o.requires_grad]
    if grad_outputs is None:
        rng = np.random.default_rng(seed + 1)
        us = [Tensor(rng.standard_normal(o.shape), device=o.device, requires_grad=True) for o in outs]
    else:
        us = _float64_copies(_as_tuple(grad_outputs))
        for u in us:
            u.requires_grad_(True)
    n = len(inputs)

    def first_derivative(*args):
        xs, vs = list(args[:n]), list(args[n:])
        ys = [o for o in _outputs(fn, xs) if o.requires_grad]
        if not ys:
            return ()
        gs = _grad(ys, [xs[i] for i in wrt], vs, create_graph=True, allow_unused=True)
        return tuple(g for g in gs if g is not None)

    return gradcheck(first_derivative, tuple(inputs) + tuple(us), eps=eps, atol=atol, rtol=rtol, seed=seed + 2)
