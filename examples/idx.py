"""Reader for the IDX files MNIST ships in (raw or gzip-compressed)."""
from __future__ import annotations

import gzip
import os
import struct

import numpy as np

__all__ = ["read_idx", "load_mnist", "IDXError"]

# IDX type codes -> big-endian NumPy dtypes.
_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IDXError(ValueError):
    """The file is not a well-formed IDX file."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in an IDX file; ``.gz`` files are decompressed on the fly."""
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:  # gzip raises these for corrupt or truncated streams
        raise IDXError(f"{path}: cannot read: {exc}") from None
    if len(raw) < 4:
        raise IDXError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    zero, type_code, ndim = raw[0] << 8 | raw[1], raw[2], raw[3]
    if zero != 0 or type_code not in _TYPES:
        raise IDXError(f"{path}: bad magic number {raw[:4].hex()} (expected 0000 then a type code in "
                       f"{sorted(hex(t) for t in _TYPES)})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IDXError(f"{path}: truncated header: {ndim} dimensions need {header} bytes, file has {len(raw)}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_TYPES[type_code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    body = len(raw) - header
    if body != expected:
        raise IDXError(f"{path}: shape {shape} of {dtype} needs {expected} data bytes, file has {body}"
                       + (" (truncated)" if body < expected else " (trailing bytes)"))
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory: str, stem: str) -> str:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        candidate = os.path.join(directory, name)
        if os.path.exists(candidate):
            return candidate
    raise FileNotFoundError(f"{directory}: no {stem}[.gz] (expected the four MNIST IDX files)")


def load_mnist(directory: str):
    """``(x_train, y_train), (x_test, y_test)`` from the four MNIST IDX files in ``directory``;
    images flattened to 784 float32 values in [0, 1], labels int64."""
    out = []
    for images, labels in (("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                           ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")):
        x = read_idx(_find(directory, images))
        y = read_idx(_find(directory, labels))
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise IDXError(f"{directory}: images {x.shape} and labels {y.shape} do not pair up")
        out.append((x.reshape(len(x), -1).astype(np.float32) / 255.0, y.astype(np.int64)))
    return tuple(out)
