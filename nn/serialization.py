"""``nn.save`` / ``nn.load``: state dicts as ``.npz`` archives, never pickle.

The archive's keys are exactly the state-dict names. ``save`` writes to a temporary file next to
the target and renames it into place, so an interrupted save never leaves a truncated file.
"""
from __future__ import annotations

import os
import tempfile
import zipfile
from collections import OrderedDict
from typing import Mapping

import numpy as np

from xpgrad import autograd as ag
from xpgrad.autograd import Tensor

__all__ = ["save", "load"]


def _host_array(name, value) -> np.ndarray:
    if isinstance(value, Tensor):
        arr = value.numpy()
    elif isinstance(value, np.ndarray):
        arr = value
    elif isinstance(value, (int, float, bool, np.generic)):
        arr = np.asarray(value)
    else:
        raise TypeError(
            f"nn.save: entry {name!r} is a {type(value).__name__}; only Tensors and numeric arrays can be saved"
        )
    if arr.dtype.kind not in "biufc":
        raise ValueError(
            f"nn.save: entry {name!r} has dtype {arr.dtype}; only numeric arrays can be saved (no objects, no pickle)"
        )
    return arr


def save(state_dict: Mapping[str, Tensor], path: str | os.PathLike) -> None:
    """Write ``state_dict`` (name -> Tensor) to ``path`` as an uncompressed ``.npz`` archive.

    The file is written exactly at ``path`` (no suffix is added).
    """
    if not hasattr(state_dict, "items"):
        raise TypeError(
            f"nn.save expects a mapping name -> Tensor (e.g. model.state_dict()), got {type(state_dict).__name__}"
        )
    arrays = {}
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"nn.save: keys must be strings, got {type(name).__name__} {name!r}")
        arrays[name] = _host_array(name, value)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            # The archive np.savez writes (one .npy member per entry), built by hand so that any
            # key is allowed (np.savez's own keyword names would clash with "file" or "allow_pickle").
            with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                for name, arr in arrays.items():
                    with zf.open(name + ".npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, np.asarray(arr), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load(path: str | os.PathLike) -> "OrderedDict[str, Tensor]":
    """Read an archive written by ``save``: an ordered dict name -> CPU Tensor.

    A file that is not an ``.npz`` archive, is truncated or corrupt, or holds object (pickled)
    arrays raises ``ValueError`` naming the file and the problem.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(6)
    if head.startswith(b"\x93NUMPY"):
        raise ValueError(
            f"nn.load: cannot load {path!r}: it holds a single .npy array, not an .npz archive of named arrays"
        )
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise ValueError(f"nn.load: cannot load {path!r}: it is not an .npz archive (no zip signature at its start)")
    out: OrderedDict = OrderedDict()
    try:
        with np.load(path, allow_pickle=False) as archive:
            for name in archive.files:
                arr = archive[name]
                if arr.dtype.kind not in "biufc":
                    raise _Unloadable(f"entry {name!r} has non-numeric dtype {arr.dtype}")
                out[name] = ag.tensor(arr, device="cpu")
    except _Unloadable as exc:
        raise ValueError(f"nn.load: cannot load {path!r}: {exc}") from None
    except Exception as exc:
        text = str(exc)
        if "pickle" in text.lower() or "object arrays" in text.lower():
            problem = "it holds object (pickled) arrays, which are never loaded"
        else:
            problem = f"it is truncated or corrupt ({type(exc).__name__}: {text})"
        raise ValueError(f"nn.load: cannot load {path!r}: {problem}") from exc
    return out


class _Unloadable(Exception):
    pass
