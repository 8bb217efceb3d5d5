"""Functional transforms: ``grad``, ``value_and_grad``, ``vjp``, ``jvp``, ``jacobian``,
``hessian`` and ``hvp``, which turn a function of Tensors into the function computing its
derivatives (the style of HIPS autograd, JAX and ``torch.func``).

>>> from xpgrad import autograd as ag, func
>>> df = func.grad(lambda x: (x ** 3).sum())
>>> df(ag.tensor([1.0, 2.0], dtype=ag.float64))
tensor([ 3., 12.], dtype=float64)
>>> func.grad(func.grad(lambda x: x ** 3))(ag.tensor(2.0, dtype=ag.float64))
tensor(12., dtype=float64)

Every transform composes with every other (``grad(grad(f))``, ``jacobian(grad(f))``, ...) and
with an ordinary graph around it: the arguments need not require grad, their
``requires_grad`` and ``.grad`` are never touched, and a result stays differentiable by the
caller exactly when it depends on something the caller differentiates (an argument, or a
closed-over Tensor, that requires grad outside the transform).

How: each call of a transform is a *level*. An argument being differentiated enters the level
as a fresh node of its own (a leaf marked with the level when the argument does not require
grad, an identity node on top of it when it does, so that it stays connected to the outer
graph), and derivatives are taken with ``ag.grad`` with respect to that node only: uses of the
same Tensor that reach ``f`` some other way (closures) are held constant, as the math says.
Before differentiating, the level looks at whether the output's graph reaches a leaf from
outside it (one not marked, or marked by a level that is still running around it); only then
is the graph of the derivative built (``create_graph=True``), and results that do not reach
outside are returned detached. Under ``no_grad`` the transforms still compute derivatives
(they enable grad inside) but return results outside any graph.

Arguments: Tensors; NumPy arrays (their dtype kept) and Python floats or ints (as 0-d
float64 tensors) are converted with ``ag.tensor``. Arguments that are not differentiated are
passed to ``f`` as given. Only floating-point arguments can be differentiated.
"""
from __future__ import annotations

import contextvars
import itertools

import numpy as np

from .creation import tensor as _tensor
from .creation import zeros as _zeros
from .creation import zeros_like as _zeros_like
from .dtypes import float64 as _float64
from .function import Context, Function
from .grad_inputs import grad as _ag_grad
from .grad_mode import enable_grad, is_grad_enabled
from .tensor import Tensor
from .versioning import counter as _counter

__all__ = ["grad", "hessian", "hvp", "jacobian", "jvp", "value_and_grad", "vjp"]

_MARK = "_func_level"  # attribute naming the level a private leaf belongs to
# ids of the levels now running, outermost first (per thread and asyncio task, as grad mode)
_active = contextvars.ContextVar("xpgrad_func_levels", default=())
_ids = itertools.count(1)


class _Alias(Function):
    """The identity as a node of its own: an argument that requires grad enters a level
    through it, so the level differentiates with respect to this node and not the argument."""

    raw_backward = True

    @staticmethod
    def forward(ctx, a):
        return a.data.view()

    @staticmethod
    def backward(ctx, g):
        return g


class _Level:
    """One call of a transform (see the module docstring)."""

    def __init__(self) -> None:
        self.id = next(_ids)

    def __enter__(self):
        self.outer_grad = is_grad_enabled()
        self._grad_on = enable_grad()
        self._grad_on.__enter__()
        self._token = _active.set(_active.get() + (self.id,))
        return self

    def __exit__(self, *exc) -> None:
        _active.reset(self._token)
        self._grad_on.__exit__(*exc)

    def enter(self, x: Tensor) -> Tensor:
        """The node of this level standing for argument ``x``."""
        if x._requires_grad:
            out = _Alias.apply(x)
            out._version = _counter(x)
            return out
        t = x.detach()
        t._requires_grad = True
        setattr(t, _MARK, self.id)
        return t

    def private_like(self, t: Tensor) -> Tensor:
        """A zero leaf of this level shaped like ``t`` (a dummy cotangent)."""
        z = _zeros_like(t)
        z._requires_grad = True
        setattr(z, _MARK, self.id)
        return z

    def reaches_outer(self, tensors) -> bool:
        return outer_reach(tensors, self.id)

    def finish(self, t):
        """``t`` as the caller gets it: detached unless it reaches outside this level."""
        if isinstance(t, Tensor):
            if t._requires_grad and not (self.outer_grad and self.reaches_outer([t])):
                return t.detach()
            return t
        if isinstance(t, tuple) and hasattr(t, "_fields"):  # namedtuple
            return type(t)(*[self.finish(v) for v in t])
        if isinstance(t, (tuple, list)):
            return type(t)(self.finish(v) for v in t)
        if isinstance(t, dict):
            return {k: self.finish(v) for k, v in t.items()}
        return t


def outer_reach(tensors, own: int) -> bool:
    """Whether the graph of any of ``tensors`` reaches a leaf from outside level ``own``: an
    unmarked leaf that requires grad, or one marked by another level that is still running."""
    live = set(_active.get())
    live.discard(own)
    stack = []
    for t in tensors:
        if isinstance(t, Tensor) and t._requires_grad:
            if t.grad_fn is None:
                if _outer_leaf(t, live):
                    return True
            else:
                stack.append(t.grad_fn)
    seen = set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        edges = node.next_edges
        if edges is None:  # released by an earlier backward: assume it reaches outside
            return True
        for e in edges:
            if e is None:
                continue
            kind = type(e)
            if kind is Context:
                stack.append(e)
            elif kind is tuple:
                stack.append(e[0])
            elif _outer_leaf(e, live):
                return True
    return False


def _outer_leaf(t: Tensor, live: set) -> bool:
    mark = t.__dict__.get(_MARK)
    return mark is None or mark in live


# -- argument handling ------------------------------------------------------------------


def _check_f(f, name: str) -> None:
    if not callable(f):
        raise TypeError(f"{name}: f must be callable, got {type(f).__name__}")


def _argnums(argnums, n: int, name: str):
    """The argument positions to differentiate (normalised) and whether one int was given."""
    single = isinstance(argnums, (int, np.integer)) and not isinstance(argnums, bool)
    if single:
        nums = (int(argnums),)
    elif isinstance(argnums, tuple) and argnums and all(
        isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in argnums
    ):
        nums = tuple(int(a) for a in argnums)
    else:
        raise TypeError(f"{name}: argnums must be an int or a non-empty tuple of ints, got {argnums!r}")
    out = []
    for a in nums:
        if not -n <= a < n:
            raise ValueError(
                f"{name}: argnums {a} is out of range for a function called with {n} positional "
                f"argument{'s' if n != 1 else ''}"
            )
        out.append(a % n)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}: argnums must be unique, got {argnums!r}")
    return tuple(out), single


def _as_input(x, what: str, name: str) -> Tensor:
    if isinstance(x, Tensor):
        t = x
    elif isinstance(x, (float, int)) and not isinstance(x, bool):
        t = _tensor(float(x), dtype=_float64)
    elif isinstance(x, (np.ndarray, np.generic)):
        t = _tensor(x)
    else:
        raise TypeError(
            f"{name}: {what} is a {type(x).__name__}; only Tensors, NumPy arrays and Python floats "
            "can be differentiated"
        )
    if t.data.dtype.kind != "f":
        raise TypeError(
            f"{name}: {what} has dtype {t.data.dtype}; only floating-point arguments can be "
            "differentiated (convert it first, e.g. t.astype(ag.float64))"
        )
    return t


def _enter_args(level: _Level, args, nums, name: str):
    args = list(args)
    ins = []
    for i in nums:
        x = level.enter(_as_input(args[i], f"argument {i}", name))
        args[i] = x
        ins.append(x)
    return args, ins


def _tuple_arg(x, what: str, name: str):
    """``primals``/``tangents``: a tuple or list of values, or one Tensor; and whether one was given."""
    if isinstance(x, (tuple, list)):
        if not x:
            raise ValueError(f"{name}: {what} must not be empty")
        return tuple(x), False
    if isinstance(x, Tensor):
        return (x,), True
    raise TypeError(f"{name}: {what} must be a tuple of Tensors (or one Tensor), got {type(x).__name__}")


def _split_aux(res, has_aux: bool, name: str):
    if has_aux:
        if not (isinstance(res, tuple) and len(res) == 2):
            raise TypeError(
                f"{name}(f, has_aux=True): f must return a pair (output, aux), got "
                f"{_describe(res)}"
            )
        return res
    if isinstance(res, tuple) and len(res) == 2 and isinstance(res[0], Tensor) and name in ("grad", "value_and_grad"):
        raise TypeError(
            f"{name}: f returned a tuple, not a Tensor; pass has_aux=True if its second element is "
            "auxiliary data to return alongside the gradient"
        )
    return res, None


def _describe(x) -> str:
    if isinstance(x, tuple):
        return f"a tuple of length {len(x)}"
    return f"a {type(x).__name__}"


def _scalar_output(out, name: str) -> Tensor:
    if not isinstance(out, Tensor):
        raise TypeError(f"{name}: f must return a Tensor, got {_describe(out)}")
    if out.shape != ():
        raise ValueError(
            f"{name}: f must return a scalar (0-d) Tensor, got shape {out.shape}; use jacobian or "
            "vjp for non-scalar outputs (or reduce it, e.g. with .sum())"
        )
    _floating_output(out, name)
    return out


def _floating_output(out: Tensor, name: str, k=None) -> None:
    if out.data.dtype.kind != "f":
        which = "the output" if k is None else f"output {k}"
        raise TypeError(f"{name}: {which} of f has dtype {out.data.dtype}; only floating-point outputs can be differentiated")


def _outputs(out, name: str):
    """f's output as a tuple of Tensors, and whether it was a single Tensor."""
    if isinstance(out, Tensor):
        _floating_output(out, name)
        return (out,), True
    if isinstance(out, (tuple, list)) and out:
        for k, o in enumerate(out):
            if not isinstance(o, Tensor):
                raise TypeError(f"{name}: f must return a Tensor or a tuple of Tensors, but output {k} is {_describe(o)}")
            _floating_output(o, name, k)
        return tuple(out), False
    raise TypeError(f"{name}: f must return a Tensor or a tuple of Tensors, got {_describe(out)}")


def _grads(outs, ins, gouts, create_graph: bool) -> list:
    """Gradients of ``outs`` (seeded with ``gouts``, or None for ones) w.r.t. ``ins``; zeros
    for an input the outputs do not depend on."""
    if gouts is None:
        gouts = [None] * len(outs)
    pairs = [(o, g) for o, g in zip(outs, gouts) if o._requires_grad]
    res = [None] * len(ins)
    if pairs:
        res = _ag_grad(
            [o for o, _ in pairs], ins, grad_outputs=[g for _, g in pairs], retain_graph=True,
            create_graph=create_graph, allow_unused=True,
        )
    return [_zeros_like(x) if g is None else g for x, g in zip(ins, res)]


# -- the transforms ---------------------------------------------------------------------


def value_and_grad(f, argnums=0, has_aux=False):
    """``value_and_grad(f)(*args)`` -> ``(f(*args), gradient)``; with ``has_aux=True`` f returns
    ``(output, aux)`` and the result is ``((output, aux), gradient)`` (as JAX).

    ``f`` must return a 0-d floating-point Tensor. The gradient is with respect to the
    positional argument ``argnums`` (an int: one Tensor) or each of them (a tuple: a tuple).
    """
    _check_f(f, "value_and_grad")
    return _value_and_grad(f, argnums, has_aux, "value_and_grad")


def _value_and_grad(f, argnums, has_aux, name):
    def transformed(*args, **kwargs):
        nums, single = _argnums(argnums, len(args), name)
        with _Level() as level:
            args2, ins = _enter_args(level, args, nums, name)
            out, aux = _split_aux(f(*args2, **kwargs), has_aux, name)
            out = _scalar_output(out, name)
            connected = level.outer_grad and level.reaches_outer([out])
            g = _grads([out], ins, None, create_graph=connected)
            value = out if connected else out.detach()
            aux = level.finish(aux)
        g = g[0] if single else tuple(g)
        return ((value, aux), g) if has_aux else (value, g)

    transformed.__name__ = f"{name}({getattr(f, '__name__', 'f')})"
    transformed.__doc__ = getattr(f, "__doc__", None)
    return transformed


def grad(f, argnums=0, has_aux=False):
    """``grad(f)(*args)``: the gradient of the scalar function ``f`` with respect to the
    positional argument(s) ``argnums``: one Tensor for an int, a tuple for a tuple of ints.
    With ``has_aux=True`` f returns ``(output, aux)`` and the result is ``(gradient, aux)``.
    As ``torch.func.grad`` / ``jax.grad``; ``f`` must return a 0-d floating-point Tensor.
    """
    _check_f(f, "grad")
    vg = _value_and_grad(f, argnums, has_aux, "grad")

    def transformed(*args, **kwargs):
        if has_aux:
            (_, aux), g = vg(*args, **kwargs)
            return g, aux
        return vg(*args, **kwargs)[1]

    transformed.__name__ = f"grad({getattr(f, '__name__', 'f')})"
    transformed.__doc__ = getattr(f, "__doc__", None)
    return transformed


def vjp(f, *primals, has_aux=False):
    """``vjp(f, *primals)`` -> ``(output, vjp_fn)`` (``(output, vjp_fn, aux)`` with ``has_aux``):
    ``vjp_fn(cotangent)`` returns a tuple with one gradient per primal, the vector-Jacobian
    product. ``f`` may return a Tensor or a tuple of Tensors; the cotangent has the same
    structure and shapes. ``vjp_fn`` may be called any number of times (as ``torch.func.vjp``).
    """
    _check_f(f, "vjp")
    if not primals:
        raise ValueError("vjp: needs at least one primal to differentiate with respect to")
    with _Level() as level:
        args, ins = _enter_args(level, primals, range(len(primals)), "vjp")
        out, aux = _split_aux(f(*args), has_aux, "vjp")
        outs, single = _outputs(out, "vjp")
        shown = [level.finish(o) for o in outs]
        aux = level.finish(aux)
    own = level.id

    def vjp_fn(cotangents):
        if single:
            if isinstance(cotangents, (tuple, list)) and len(cotangents) == 1:
                cotangents = cotangents[0]
            cts = (cotangents,)
        else:
            if not isinstance(cotangents, (tuple, list)) or len(cotangents) != len(outs):
                raise ValueError(f"vjp_fn: f returned {len(outs)} outputs, so pass a tuple of {len(outs)} cotangents")
            cts = tuple(cotangents)
        cts = [_cotangent(c, o, k) for k, (c, o) in enumerate(zip(cts, outs))]
        outer_grad = is_grad_enabled()
        with enable_grad():
            connected = outer_grad and outer_reach(list(outs) + cts, own)
            return tuple(_grads(outs, ins, cts, create_graph=connected))

    shown = shown[0] if single else tuple(shown)
    return (shown, vjp_fn, aux) if has_aux else (shown, vjp_fn)


def _cotangent(c, o: Tensor, k: int) -> Tensor:
    if not isinstance(c, Tensor):
        c = _as_input(c, f"cotangent {k}", "vjp_fn")
    if c.shape != o.shape:
        raise ValueError(f"vjp_fn: cotangent {k} has shape {c.shape}, but output {k} of f has shape {o.shape}")
    if c.device is not o.device:
        raise RuntimeError(f"vjp_fn: cotangent {k} is on {c.device}, but output {k} of f is on {o.device}")
    return c


def jvp(f, primals, tangents, has_aux=False):
    """``jvp(f, primals, tangents)`` -> ``(output, jvp_out)`` (``(output, jvp_out, aux)`` with
    ``has_aux``): the Jacobian-vector product of ``f`` at ``primals`` (a tuple of arguments)
    along ``tangents`` (a tuple of the same shapes), as ``torch.func.jvp``. ``jvp_out`` has the
    structure of the output. Computed in reverse mode, as the vjp of the (linear) vjp.
    """
    _check_f(f, "jvp")
    ps, _ = _tuple_arg(primals, "primals", "jvp")
    ts, _ = _tuple_arg(tangents, "tangents", "jvp")
    if len(ps) != len(ts):
        raise ValueError(f"jvp: got {len(ps)} primals but {len(ts)} tangents; give one tangent per primal")
    ps = [_as_input(p, f"primal {k}", "jvp") for k, p in enumerate(ps)]
    ts = [_as_input(t, f"tangent {k}", "jvp") for k, t in enumerate(ts)]
    for k, (p, t) in enumerate(zip(ps, ts)):
        if p.shape != t.shape:
            raise ValueError(f"jvp: tangent {k} has shape {t.shape}, but primal {k} has shape {p.shape}")
    with _Level() as level:
        res = vjp(f, *ps, has_aux=has_aux)
        out, vjp_fn = res[0], res[1]
        outs, single = _outputs(out, "jvp")
        dummies = [level.private_like(o) for o in outs]
        gs = vjp_fn(dummies[0] if single else tuple(dummies))
        connected = level.outer_grad and level.reaches_outer(list(outs) + ts)
        jv = _grads(list(gs), dummies, ts, create_graph=connected)
        jv = [level.finish(j) for j in jv]
        out = level.finish(out)
        aux = level.finish(res[2]) if has_aux else None
    jv = jv[0] if single else tuple(jv)
    return (out, jv, aux) if has_aux else (out, jv)


def jacobian(f, argnums=0):
    """``jacobian(f, argnums)(*args)``: the Jacobian of ``f`` by reverse mode (one backward per
    output element), as ``torch.func.jacrev``: shape ``output.shape + argument.shape``. A tuple
    ``argnums`` gives a tuple (one Jacobian per argument); a tuple output gives a tuple (one
    entry per output).
    """
    _check_f(f, "jacobian")

    def transformed(*args, **kwargs):
        nums, single_in = _argnums(argnums, len(args), "jacobian")
        with _Level() as level:
            args2, ins = _enter_args(level, args, nums, "jacobian")
            outs, single_out = _outputs(f(*args2, **kwargs), "jacobian")
            connected = level.outer_grad and level.reaches_outer(outs)
            result = [_jacobian_of(o, ins, connected) for o in outs]
        result = [r[0] if single_in else tuple(r) for r in result]
        return result[0] if single_out else tuple(result)

    transformed.__name__ = f"jacobian({getattr(f, '__name__', 'f')})"
    return transformed


def _jacobian_of(o: Tensor, ins, connected: bool) -> list:
    from . import ops  # the op functions (stack, reshape)

    n = o.data.size
    if n == 0 or not o._requires_grad:
        return [_zeros(o.shape + x.shape, dtype=x.dtype, device=x.device) for x in ins]
    xp = o.device.backend.xp
    rows = []
    for i in range(n):
        seed = xp.zeros(n, dtype=o.data.dtype)
        seed[i] = 1
        rows.append(_grads([o], ins, [Tensor(seed.reshape(o.shape), device=o.device)], create_graph=connected))
    return [ops.reshape(ops.stack([r[k] for r in rows]), o.shape + x.shape) for k, x in enumerate(ins)]


def hessian(f, argnums=0):
    """``hessian(f, argnums)(*args)``: the Jacobian of the Jacobian, shape
    ``output.shape + argument.shape + argument.shape`` (as ``torch.func.hessian``); a tuple
    ``argnums`` gives the nested tuple ``H[i][j]`` of second derivatives w.r.t. arguments i, j.
    """
    _check_f(f, "hessian")
    return jacobian(jacobian(f, argnums), argnums)


def hvp(f, primals, tangents):
    """``hvp(f, primals, tangents)`` -> ``(output, hvp_out)``: the Hessian of the scalar ``f``
    at ``primals`` times ``tangents``, as ``torch.autograd.functional.hvp``. ``primals`` and
    ``tangents`` are a tuple (then ``hvp_out`` is a tuple) or one Tensor (then a Tensor).
    """
    _check_f(f, "hvp")
    ps, single = _tuple_arg(primals, "primals", "hvp")
    ts, _ = _tuple_arg(tangents, "tangents", "hvp")
    if len(ps) != len(ts):
        raise ValueError(f"hvp: got {len(ps)} primals but {len(ts)} tangents; give one tangent per primal")
    ps = [_as_input(p, f"primal {k}", "hvp") for k, p in enumerate(ps)]
    ts = [_as_input(t, f"tangent {k}", "hvp") for k, t in enumerate(ts)]
    for k, (p, t) in enumerate(zip(ps, ts)):
        if p.shape != t.shape:
            raise ValueError(f"hvp: tangent {k} has shape {t.shape}, but primal {k} has shape {p.shape}")
    nums = tuple(range(len(ps)))

    def directional(*xs):
        value, gs = _value_and_grad(f, nums, False, "hvp")(*xs)
        total = None
        for g, t in zip(gs, ts):
            term = (g * t).sum()
            total = term if total is None else total + term
        return total, value

    hv, value = grad(directional, argnums=nums, has_aux=True)(*ps)
    return value, (hv[0] if single else tuple(hv))
