"""``Optimizer``: parameter groups, per-parameter state, state dicts; the base of every optimizer.

Subclasses implement ``_update_group(group)`` (one step for one group) and ``_check_options(options, where)``
(hyperparameter validation). The update math of each optimizer is a small function over arrays
(``sgd_update``, ``adam_update``...) so that a fused kernel can replace it without touching the
bookkeeping here; the in-place array steps those functions share are at the end of this module.
Fused kernels come from the parameters' backends (``Backend.fused(kind)``), asked through ``_fused_on``.
"""
from __future__ import annotations

import copy
import numbers
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Union

import numpy as np

from xpgrad import autograd as ag
from xpgrad.autograd import Tensor
from xpgrad.autograd.interop import foreign_name, foreign_to_tensor, is_foreign_array

__all__ = ["Optimizer", "ParamsT", "run_chunked"]

ParamsT = Union[Iterable[Tensor], Iterable[dict[str, Any]], Iterable[tuple[str, Tensor]]]

_UNSET = object()

#: Per-parameter state that optimizers keep as numbers, where torch keeps 0-d tensors (NAdam's ``mu_product``).
_SCALAR_STATE = frozenset({"step", "mu_product"})


class Optimizer:
    """Base class for optimizers (PyTorch's interface).

    ``params`` is an iterable of Tensors, of ``(name, Tensor)`` pairs (``module.named_parameters()``),
    or of dicts (param groups: ``{"params": [...], "lr": ...}``) whose missing options are taken
    from ``defaults``. ``state`` maps each parameter object to a dict of its optimizer state.
    """

    #: State keys that a non-empty per-parameter state must hold (checked by ``load_state_dict``).
    _required_state: tuple[str, ...] = ()

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        if isinstance(params, Tensor):
            raise TypeError(
                "params given to the optimizer should be an iterable of Tensors or dicts, but got a Tensor; "
                "wrap it in a list: [tensor]"
            )
        if isinstance(params, (set, frozenset)):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but the ordering of tensors "
                "in sets changes between runs; please use a list instead"
            )
        if isinstance(params, Mapping):
            raise TypeError("params should be an iterable of Tensors or of param-group dicts; wrap the dict in a list")
        self._check_options(defaults, "")
        self.defaults: dict[str, Any] = defaults
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        # Reusable work buffers per (device, dtype): updates run with out= into these instead of
        # allocating temporaries every step. Not part of the state (nothing to save).
        self._scratch: dict[tuple[Any, np.dtype], Any] = {}
        # Each parameter's views into its buffer, with the layout they were made for (see _scratch_for).
        self._scratch_views: dict[Tensor, tuple[tuple, tuple]] = {}
        # Multi-tensor (foreach) groups: id of the group's params list -> (that list, its flat buckets).
        self._flat: dict[int, tuple[list, list[_FlatBucket]]] = {}

        groups = list(params)
        if len(groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        is_dict = [isinstance(g, Mapping) for g in groups]
        if all(is_dict):
            for g in groups:
                self.add_param_group(g)
        elif not any(is_dict):
            self.add_param_group({"params": groups})
        else:
            raise TypeError("params mixes param-group dicts with tensors; give either only dicts or only tensors")

    # -- groups ----------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters (with its own options; missing ones come from ``defaults``)."""
        if not isinstance(param_group, Mapping):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError("a param group must have a 'params' entry (a list of tensors)")
        where = f" in param group {len(self.param_groups)}"
        group = dict(param_group)  # our own dict: the caller's is not mutated
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but the ordering of tensors "
                "in sets changes between runs; please use a list instead"
            )
        else:
            params = list(params)

        names = [p[0] for p in params if isinstance(p, tuple)]
        if names:
            if len(names) != len(params):
                raise ValueError("all optimizer params should be with or without names; some param names are missing")
            params = [p[1] for p in params]
            group["param_names"] = names
        group["params"] = params

        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but param {i}{where} is a {type(p).__name__}")
            if p.grad_fn is not None:
                raise ValueError(
                    f"can't optimize a non-leaf Tensor (param {i}{where} was computed by an op); "
                    "optimize the leaf it came from, or a detached copy made to require grad"
                )
            if np.dtype(p.dtype).kind != "f":
                raise TypeError(
                    f"optimizer can only optimize floating-point tensors, but param {i}{where} is {p.dtype}"
                )

        seen: set[int] = set()
        for p in params:
            if id(p) in seen:
                raise ValueError(f"a parameter of shape {p.shape} appears twice{where}")
            seen.add(id(p))
        for other in self.param_groups:
            if any(id(q) in seen for q in other["params"]):
                raise ValueError("some parameters appear in more than one parameter group")
            if ("param_names" in other) != ("param_names" in group):
                raise ValueError(
                    "all optimizer param groups should be with or without names; cannot add a group "
                    + ("with" if "param_names" in group else "without") + " names"
                )

        for name, default in self.defaults.items():
            group.setdefault(name, default)
        self._check_options(group, where)
        self._setup_group(group)
        self.param_groups.append(group)

    def _setup_group(self, group: dict[str, Any]) -> None:
        """Hook for subclasses: adjust a group once it is complete (AdamW pins its decay mode)."""

    def _check_options(self, options: Mapping[str, Any], where: str) -> None:
        """Raise ValueError/TypeError for invalid hyperparameters in ``options`` (defaults or a group)."""

    # -- gradients and steps ----------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients: to None (default), or to zeros in place (``set_to_none=False``)."""
        for group in self.param_groups:
            for p in group["params"]:
                g = p._grad  # parameters are leaves: the .grad property adds nothing but a call
                if g is None:
                    continue
                if set_to_none:
                    p._grad = None
                else:
                    if g.grad_fn is not None or g.requires_grad:
                        # A gradient built with create_graph=True: cut it from its graph before
                        # zeroing, as torch's detach_() does, so the next backward accumulates into
                        # a plain buffer.
                        g = g.detach()
                        p.grad = g
                    g.zero_()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient. ``closure`` re-evaluates the model and returns
        the loss; it runs with grad mode on and its value is returned."""
        loss = None
        if closure is not None:
            with ag.enable_grad():
                loss = closure()
        with ag.no_grad():  # the kernels work on arrays, but a swapped-in one must not record a graph
            for group in self.param_groups:
                self._update_group(group)
        return loss

    def _update_group(self, group: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- helpers for subclasses ---------------------------------------------------------------------
    def _state_of(self, p: Tensor) -> dict[str, Any]:
        """The state dict of ``p``, checked against where ``p`` lives now (it may have been moved)."""
        state = self.state[p]
        if state:
            data = p.data
            device, dtype, shape = p.device, data.dtype, data.shape
            for key, v in state.items():
                if isinstance(v, Tensor) and (v.device is not device or v.data.dtype != dtype or v.data.shape != shape):
                    raise RuntimeError(
                        f"optimizer state {key!r} is a {v.dtype} tensor of shape {v.shape} on {v.device}, but its "
                        f"parameter is now {p.dtype} of shape {p.shape} on {p.device}; create the optimizer after "
                        "moving or converting the model (or load_state_dict() again, which moves the state)"
                    )
        return state

    @staticmethod
    def _fused_on(device, kind: str, looked_up: dict) -> Any:
        """The fused kernel of ``kind`` that ``device``'s backend offers (``Backend.fused``), or None.

        ``looked_up`` remembers the answer per device for one ``_update_group`` call, so a group asks
        each backend once per step (once in all when, as usual, its parameters share a device).
        """
        kernel = looked_up.get(device, _UNSET)
        if kernel is _UNSET:
            kernel = looked_up[device] = device.backend.fused(kind)
        return kernel

    @staticmethod
    def _zeros_like(p: Tensor, fill: float = 0.0) -> Tensor:
        t = ag.zeros(p.shape, dtype=p.dtype, device=p.device)
        if fill != 0:
            t.data.fill(fill)
        return t

    def _scratch_for(self, p: Tensor, n: int = 2) -> tuple:
        """``n`` work arrays shaped like ``p`` (views into one flat buffer per device and dtype).

        The buffer is sized for the largest parameter of that device/dtype, so a step allocates
        nothing; the views are only valid until the next parameter is processed. They are made once
        per parameter and reused while its shape, dtype and device stay the same: building them
        every step cost more than a small parameter's whole update.
        """
        data = p.data
        layout = (data.shape, data.dtype, p.device, n)
        cached = self._scratch_views.get(p)
        if cached is not None and cached[0] == layout:
            return cached[1]
        key = (p.device, data.dtype)
        size = data.size
        flat = self._scratch.get(key)
        if flat is None or flat.size < n * size:
            largest = max(
                (q.data.size for g in self.param_groups for q in g["params"]
                 if q.device is p.device and q.data.dtype == data.dtype),
                default=0,
            )
            flat = p.device.backend.xp.empty(n * max(largest, size, 1), dtype=data.dtype)
            self._scratch[key] = flat
            self._scratch_views.clear()  # views into the old buffer would keep it alive
        views = tuple(flat[i * size:(i + 1) * size].reshape(data.shape) for i in range(n))
        self._scratch_views[p] = (layout, views)
        return views

    # -- multi-tensor (foreach) steps --------------------------------------------------------------------
    def _foreach_buckets(
        self, group: dict[str, Any], keys: tuple[str, ...], init: Callable[[Tensor, dict], None], n_scratch: int = 2,
    ) -> list[_FlatBucket] | None:
        """The flat buckets of a ``foreach=True`` group, ready for one step, or None when this step must
        run per parameter.

        Per (device, dtype) the group's parameters, their gradients and the state tensors named in
        ``keys`` are views into one flat buffer each, so an update is one array call per term for all
        of them. The parameters' ``.data`` become those views on the first such step (the Parameter
        objects stay the same); every step checks that they, and the state tensors, still are (a
        ``Module.to``, ``load_state_dict`` or ``p.data = ...`` rebuilds the buffers from the current
        arrays). ``init(p, state)`` fills a parameter's missing state. The per-parameter path runs
        instead (with the same state) when some parameter has no gradient, a gradient of another
        dtype or shape, or the parameters' state differs in kind or step count: the flat update needs
        one set of hyperparameters and step for all.
        """
        params = group["params"]
        signature = _UNSET
        state_map = self.state
        for p in params:
            g = p._grad
            if g is None or g.data.dtype != p.data.dtype or g.data.shape != p.data.shape or g.device is not p.device:
                return None
            st = state_map.get(p)
            sig = (st.get("step"), frozenset(st)) if st else None
            if signature is _UNSET:
                signature = sig
            elif sig != signature:
                return None
        entry = self._flat.get(id(params))
        buckets = entry[1] if entry is not None and entry[0] is params else None
        if buckets is None or not all(b.valid(state_map, keys, n_scratch) for b in buckets):
            for p in params:
                init(p, self._state_of(p))
            buckets = _build_buckets(params, state_map, keys, n_scratch)
            self._flat[id(params)] = (params, buckets)
        for b in buckets:
            b.gather_grads()
        return buckets

    # -- state dicts --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The optimizer state in PyTorch's format: ``{'state': {index: {name: value}},
        'param_groups': [{..options.., 'params': [indices]}]}``; indices number the parameters in
        group order. Tensors are copies, so later steps do not change a saved dict."""
        index: dict[int, int] = {}
        groups = []
        for g in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in g["params"]]
            groups.append(packed)
        state: dict[int, dict[str, Any]] = {}
        for g in self.param_groups:
            for p in g["params"]:
                st = self.state.get(p)
                if st:
                    state[index[id(p)]] = {
                        k: (ag.tensor(v) if isinstance(v, Tensor) else copy.deepcopy(v)) for k, v in st.items()
                    }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a dict made by ``state_dict()``.

        Everything is validated first (group and parameter counts, state shapes, options); on any
        problem a ValueError names it and the optimizer is left as it was. State tensors are copied
        onto their parameter's device and dtype.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        missing = [k for k in ("state", "param_groups") if k not in state_dict]
        if missing:
            raise ValueError(f"loaded state dict lacks {missing}: expected the keys 'state' and 'param_groups'")
        saved_groups = state_dict["param_groups"]
        saved_state = state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)):
            raise ValueError(f"loaded 'param_groups' must be a list, got {type(saved_groups).__name__}")
        if not isinstance(saved_state, Mapping):
            raise ValueError(f"loaded 'state' must be a dict, got {type(saved_state).__name__}")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(saved_groups)} parameter groups, but the optimizer has "
                f"{len(self.param_groups)}"
            )

        id_map: dict[Any, tuple[Tensor, int]] = {}
        new_groups = []
        for gi, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if not isinstance(saved, Mapping) or "params" not in saved:
                raise ValueError(f"loaded param group {gi} must be a dict with a 'params' list")
            indices = list(saved["params"])
            if len(indices) != len(group["params"]):
                raise ValueError(
                    f"loaded param group {gi} has {len(indices)} parameters, but the optimizer's group {gi} "
                    f"has {len(group['params'])}"
                )
            for idx, p in zip(indices, group["params"]):
                if idx in id_map:
                    raise ValueError(f"loaded state dict lists parameter index {idx!r} more than once")
                id_map[idx] = (p, gi)
            new = {k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}
            for k, v in self.defaults.items():
                new.setdefault(k, v)
            if "param_names" in group and "param_names" not in saved:
                new["param_names"] = list(group["param_names"])
            new["params"] = group["params"]
            try:
                self._check_options(new, f" in loaded param group {gi}")
            except TypeError as exc:  # a bad value in the dict is a bad dict: ValueError, as documented
                raise ValueError(str(exc)) from None
            self._setup_group(new)
            new_groups.append(new)

        new_state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        for idx, entry in saved_state.items():
            if idx not in id_map:
                raise ValueError(
                    f"loaded state dict has state for parameter index {idx!r}, which is in none of its param groups"
                )
            p, gi = id_map[idx]
            if not isinstance(entry, Mapping):
                raise ValueError(f"loaded state of parameter {idx!r} must be a dict, got {type(entry).__name__}")
            loaded = {name: self._load_value(p, idx, name, v) for name, v in entry.items()}
            if loaded:
                lacking = [k for k in self._required_state if k not in loaded]
                if lacking:
                    raise ValueError(
                        f"loaded state of parameter {idx!r} lacks {lacking} (it has {sorted(loaded)}); was it saved "
                        f"by a different optimizer than {type(self).__name__}?"
                    )
                new_state[p] = loaded

        # Everything checked and converted: commit.
        self.param_groups = new_groups
        self.state = new_state

    @staticmethod
    def _load_value(p: Tensor, idx: Any, name: str, v: Any) -> Any:
        if is_foreign_array(v):  # a torch/JAX/CuPy tensor: read through DLPack, then copied as a Tensor is
            try:
                v = foreign_to_tensor(v, f"loaded state {name!r} of parameter {idx!r}")
            except (TypeError, RuntimeError, BufferError) as exc:
                raise ValueError(str(exc)) from exc
        if isinstance(v, (Tensor, np.ndarray, p.device.backend.array_type)):
            shape = tuple(v.shape)
            if name in _SCALAR_STATE:  # torch keeps these in 0-d tensors; ours are numbers
                if int(np.prod(shape)) != 1:
                    raise ValueError(f"loaded state {name!r} of parameter {idx!r} has shape {shape}, expected a number")
                v = v.item() if isinstance(v, Tensor) else p.device.backend.to_numpy(v).item()
            else:
                if shape != p.shape:
                    raise ValueError(
                        f"loaded state {name!r} of parameter {idx!r} has shape {shape}, but the parameter has shape "
                        f"{p.shape}"
                    )
                if isinstance(v, Tensor):
                    v = v.to(p.device)
                return ag.tensor(v, dtype=p.dtype, device=p.device)  # always a copy
        if isinstance(v, np.generic):
            v = v.item()
        if name == "step" and (isinstance(v, bool) or not isinstance(v, numbers.Real) or not v >= 0):
            raise ValueError(f"loaded state 'step' of parameter {idx!r} must be a number >= 0, got {v!r}")
        if v is None or isinstance(v, (numbers.Number, str)):
            return v
        raise ValueError(
            f"loaded state {name!r} of parameter {idx!r} is a {foreign_name(v)}; "
            "expected a Tensor, an array or a number"
        )

    def __repr__(self) -> str:
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key not in ("params", "param_names"):
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


# -- flat buffers of the multi-tensor path ----------------------------------------------------------------

#: Elements per kernel call when a large update runs on NumPy in pieces (``run_chunked``): a piece's
#: work arrays stay in cache instead of streaming every intermediate through memory.
CHUNK = 1 << 17


class _FlatBucket:
    """One (device, dtype) share of a foreach group: flat parameter, gradient, state and scratch buffers."""

    __slots__ = ("params", "views", "param", "grad", "grad_views", "state", "state_views", "scratch", "xp")

    def valid(self, state_map, keys, n_scratch) -> bool:
        if tuple(self.state) != keys or len(self.scratch) < n_scratch:
            return False
        for p, view in zip(self.params, self.views):
            if p.data is not view:
                return False
        for key, views in self.state_views.items():
            for p, view in zip(self.params, views):
                t = state_map[p].get(key)
                if t is None or t.data is not view:
                    return False
        return True

    def gather_grads(self) -> None:
        copyto = self.xp.copyto
        for p, view in zip(self.params, self.grad_views):
            g = p._grad.data
            if g is not view:
                copyto(view, g)


def _build_buckets(params, state_map, keys, n_scratch) -> list[_FlatBucket]:
    by_kind: dict[tuple, list] = {}
    for p in params:
        by_kind.setdefault((p.device, p.data.dtype), []).append(p)
    buckets = []
    for (device, dtype), ps in by_kind.items():
        xp = device.backend.xp
        total = sum(p.data.size for p in ps)

        def flat_views(arrays, fill=True):
            flat = xp.empty(total, dtype=dtype)
            views, offset = [], 0
            for a in arrays:
                view = flat[offset:offset + a.size].reshape(a.shape)
                if fill:
                    xp.copyto(view, a)
                views.append(view)
                offset += a.size
            return flat, views

        b = _FlatBucket()
        b.params, b.xp = ps, xp
        b.param, b.views = flat_views([p.data for p in ps])
        for p, view in zip(ps, b.views):
            p.data = view  # same values: only where they live changes
        b.grad, b.grad_views = flat_views([p.data for p in ps], fill=False)
        b.state, b.state_views = {}, {}
        for key in keys:
            tensors = [state_map[p][key] for p in ps]
            b.state[key], b.state_views[key] = flat_views([t.data for t in tensors])
            for t, view in zip(tensors, b.state_views[key]):
                t.data = view
        b.scratch = tuple(xp.empty(total, dtype=dtype) for _ in range(n_scratch))
        buckets.append(b)
    return buckets


def run_chunked(kernel, xp, arrays, scratch, kwargs) -> Any:
    """``kernel(*arrays, scratch, xp=xp, **kwargs)``, on NumPy in pieces of ``CHUNK`` elements when the
    arrays are large and contiguous (elementwise updates: the same values, bit for bit). ``None``
    entries of ``arrays`` pass through; the last call's result is returned."""
    first = arrays[0]
    if xp is not np or first.size <= CHUNK or not all(a is None or a.flags.c_contiguous for a in arrays):
        return kernel(*arrays, scratch, xp=xp, **kwargs)
    flat = [None if a is None else a.reshape(-1) for a in arrays]
    flat_scratch = [s.reshape(-1) for s in scratch]
    result = None
    for start in range(0, first.size, CHUNK):
        end = start + CHUNK
        result = kernel(*[None if a is None else a[start:end] for a in flat],
                        tuple(s[start:end] for s in flat_scratch), xp=xp, **kwargs)
    return result


# -- hyperparameter checks shared by the optimizers ---------------------------------------------------

def _real(options: Mapping[str, Any], key: str, where: str) -> float:
    value = options[key]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{key} must be a real number{where}, got {type(value).__name__} {value!r}")
    return float(value)


def _at_least_zero(options: Mapping[str, Any], key: str, label: str, where: str) -> float:
    value = _real(options, key, where)
    if not 0.0 <= value:  # also rejects NaN
        raise ValueError(f"Invalid {label}: {options[key]!r}{where} ({key} must be >= 0)")
    return value


def _check_foreach(options: Mapping[str, Any], where: str) -> None:
    value = options.get("foreach")
    if value is not None and not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"foreach must be None, True or False{where}, got {type(value).__name__} {value!r}")


def _in_unit_interval(value: Any, label: str, where: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{label} must be a real number{where}, got {type(value).__name__} {value!r}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"Invalid {label}: {value!r}{where} (must be in [0, 1))")
    return float(value)


# -- in-place array steps shared by the update functions ----------------------------------------------
# Each keeps torch's order of operations, which the parity tests hold to bit-level agreement. The short
# blocks every step runs (moment updates, the final addcdiv) stay inline in each update function: one more
# Python call per parameter is measurable on small models.

def _l2_decayed(xp, grad, param, weight_decay: float, out):
    """``grad + weight_decay * param`` into ``out`` (L2 weight decay added to the gradient), returned."""
    xp.multiply(param, weight_decay, out=out)
    xp.add(grad, out, out=out)
    return out


def lerp_(start, end, weight: float, tmp, *, xp) -> None:
    """``start += weight * (end - start)`` in place, with torch's two-sided formula (it switches to
    ``end - (end - start) * (1 - weight)`` for weights >= 0.5, which rounds better there)."""
    xp.subtract(end, start, out=tmp)
    if abs(weight) < 0.5:
        xp.multiply(tmp, weight, out=tmp)
        xp.add(start, tmp, out=start)
    else:
        xp.multiply(tmp, 1 - weight, out=tmp)
        xp.subtract(end, tmp, out=start)
