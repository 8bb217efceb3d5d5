"""Collective checkpoints: ``save_checkpoint`` / ``load_checkpoint`` for data-parallel jobs.

The file is an ordinary ``nn.save`` archive (``.npz``, never pickle) with these keys:

- ``model/<name>``: the model's state dict (a ``DistributedDataParallel`` saves its wrapped
  module's names, without a ``module.`` prefix);
- ``optim/state/<i>/<key>``: each tensor of the optimizer's per-parameter state (``i`` numbers the
  parameters in group order, as in ``Optimizer.state_dict()``);
- ``extra/<name>``: each extra value that is a Tensor or a NumPy array;
- ``checkpoint/header``: UTF-8 JSON text stored as a ``uint8`` array, holding the format version,
  the optimizer's ``param_groups`` (tuples tagged so that they come back as tuples), its
  non-tensor state values (such as Adam's ``step``) and the extra values that are plain numbers,
  strings, booleans, ``None`` or lists/dicts of those.

Saving: rank 0 writes the file (atomically, through ``nn.save``); every rank returns once it is
in place. Loading: rank 0 reads the file and broadcasts its arrays, so the other ranks need not see
the same file system; every rank then loads the same values and ends bit-identical.
"""
from __future__ import annotations

import json
import os

import numpy as np

__all__ = ["FORMAT", "load_checkpoint", "save_checkpoint"]

#: The version written into ``checkpoint/header``.
FORMAT = 1
_HEADER = "checkpoint/header"


def _encode(value, where):
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, where) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"save_checkpoint: {where} is a dict with non-string keys")
        if "__tuple__" in value:
            raise ValueError(f"save_checkpoint: {where} uses the reserved key '__tuple__'")
        return {k: _encode(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"save_checkpoint: {where} is a {type(value).__name__}; only Tensors, NumPy arrays, numbers, strings, "
        "booleans, None and lists/tuples/dicts of those can be saved"
    )


def _decode(value):
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_decode(v) for v in value["__tuple__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _unwrap(model):
    from .distributed import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def _flatten(model, optimizer, extra) -> dict:
    from xpgrad.autograd import Tensor

    arrays: dict = {}
    header: dict = {"format": FORMAT, "model": model is not None, "optimizer": None, "extra": {}}
    if model is not None:
        for name, t in _unwrap(model).state_dict().items():
            arrays[f"model/{name}"] = t
    if optimizer is not None:
        sd = optimizer.state_dict()
        values: dict = {}
        for i, st in sd["state"].items():
            for k, v in st.items():
                if isinstance(v, Tensor):
                    arrays[f"optim/state/{i}/{k}"] = v
                else:
                    values.setdefault(str(i), {})[k] = _encode(v, f"optimizer state {i}/{k!r}")
        header["optimizer"] = {
            "param_groups": _encode(sd["param_groups"], "optimizer param_groups"),
            "state_values": values,
            "state_indices": [int(i) for i in sd["state"]],
        }
    for name, v in extra.items():
        if isinstance(v, (Tensor, np.ndarray)):
            arrays[f"extra/{name}"] = v
        else:
            header["extra"][name] = _encode(v, f"extra value {name!r}")
    arrays[_HEADER] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8).copy()
    return arrays


def save_checkpoint(path, model=None, optimizer=None, **extra) -> None:
    """Write ``model``'s and ``optimizer``'s state and ``extra`` values (epoch, step, ...) to
    ``path``. Collective: every rank must call it; rank 0 (whose state DDP keeps identical to every
    rank's) writes the file atomically, and every rank returns once the file is in place. An error
    while writing raises on every rank (none is left waiting)."""
    from . import communicator

    comm = communicator()
    problem = None
    if comm.rank == 0:
        try:
            from xpgrad import nn

            nn.save(_flatten(model, optimizer, extra), path)
        except Exception as exc:  # reported to every rank below, then raised here
            problem = exc
    failed = comm.broadcast_object(None if problem is None else f"{type(problem).__name__}: {problem}", 0)
    if problem is not None:
        raise problem
    if failed is not None:
        raise RuntimeError(f"save_checkpoint: rank 0 could not write {os.fspath(path)!r}: {failed}")


def _read_on_root(comm, path):
    """Rank 0's arrays of ``path`` (name -> host array) on every rank, sent with one broadcast per array."""
    arrays = None
    problem = None
    if comm.rank == 0:
        try:
            from xpgrad import nn

            arrays = {k: np.array(v.numpy(), order="C") for k, v in nn.load(path).items()}
            if _HEADER not in arrays:
                raise ValueError(f"load_checkpoint: {os.fspath(path)!r} has no {_HEADER!r} entry: it was not written "
                                 "by save_checkpoint (use nn.load for a plain state dict)")
        except Exception as exc:
            problem = exc
    layout = None if arrays is None else [(k, a.shape, a.dtype.str) for k, a in arrays.items()]
    layout, failed = comm.broadcast_object(
        (layout, None if problem is None else f"{type(problem).__name__}: {problem}"), 0)
    if problem is not None:
        raise problem
    if failed is not None:
        raise RuntimeError(f"load_checkpoint: rank 0 could not read {os.fspath(path)!r}: {failed}")
    if comm.size == 1:
        return arrays
    out = {}
    for name, shape, dtype in layout:
        a = arrays[name] if comm.rank == 0 else np.empty(shape, dtype=np.dtype(dtype))
        comm.broadcast_(a, 0)
        out[name] = a
    return out


def load_checkpoint(path, model=None, optimizer=None) -> dict:
    """Load a file written by ``save_checkpoint`` into ``model`` and ``optimizer`` (either may be
    left out) and return its extra values (Tensors for saved arrays). Collective: every rank must
    call it; rank 0 reads the file and broadcasts its contents, so only rank 0 needs to see it, and
    every rank ends with the same, bit-identical state. Asking for a model or optimizer the file
    does not hold raises ValueError (on every rank)."""
    from xpgrad import autograd as ag

    from . import communicator

    comm = communicator()
    arrays = _read_on_root(comm, path)
    header = json.loads(bytes(arrays.pop(_HEADER)).decode("utf-8"))
    if header.get("format") != FORMAT:
        raise ValueError(f"load_checkpoint: {os.fspath(path)!r} has checkpoint format {header.get('format')!r}; "
                         f"this version reads format {FORMAT}")
    if model is not None:
        if not header["model"]:
            raise ValueError(f"load_checkpoint: {os.fspath(path)!r} holds no model state (saved with model=None)")
        sd = {k[len("model/"):]: ag.tensor(v) for k, v in arrays.items() if k.startswith("model/")}
        _unwrap(model).load_state_dict(sd)
    if optimizer is not None:
        meta = header["optimizer"]
        if meta is None:
            raise ValueError(f"load_checkpoint: {os.fspath(path)!r} holds no optimizer state (saved with "
                             "optimizer=None)")
        state: dict = {i: {} for i in meta["state_indices"]}
        for k, v in arrays.items():
            if k.startswith("optim/state/"):
                i, key = k[len("optim/state/"):].split("/", 1)
                state[int(i)][key] = ag.tensor(v)
        for i, values in meta["state_values"].items():
            state[int(i)].update({k: _decode(v) for k, v in values.items()})
        optimizer.load_state_dict({"state": state, "param_groups": _decode(meta["param_groups"])})
    extra = {k: _decode(v) for k, v in header["extra"].items()}
    extra.update({k[len("extra/"):]: ag.tensor(v) for k, v in arrays.items() if k.startswith("extra/")})
    return extra
