"""Shape ops with NumPy signatures: reshape, transpose, broadcast_to, concatenate, split, pad, tile...

View-producing ops (reshape, transpose, expand_dims, squeeze, broadcast_to) share the input's
version counter, so an in-place change through a view is caught like one on the base.

Each op is one block: its Function class (if it has one of its own), its public function and
the ``register`` call (see ``_registry``). Their backwards read shapes, axes and slices only,
which stay on ``ctx``.
"""
from __future__ import annotations

import math

import numpy as np

from ..function import Function
from ..tensor import Tensor
from ..versioning import counter as _counter
from ._registry import register, tensor_method
from ._util import DefaultInt, as_tensor, from_dim, normalize_axis


def _share_version(out: Tensor, src: Tensor) -> Tensor:
    out._version = _counter(src)
    return out


def _shape_arg(shape) -> tuple:
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(int(s) for s in shape)


def _shape_args(args):
    """``t.reshape(2, 3)`` or ``t.reshape((2, 3))``: the method's arguments as one shape."""
    if len(args) == 1 and not isinstance(args[0], int):
        return args[0]
    return args


class Reshape(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.data.shape
        try:
            return a.data.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {tuple(a.data.shape)} into shape {tuple(shape)}") from None

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape)


@register(method=False)
def reshape(x, shape):
    """``reshape(t, shape)``; one entry may be -1."""
    x = as_tensor(x)
    shape = _shape_arg(shape)
    if shape == x.data.shape:
        return x
    return _share_version(Reshape.apply(x, shape), x)


def _reshape_method(self, *shape):
    return reshape(self, _shape_args(shape))


_reshape_method.__name__ = _reshape_method.__qualname__ = "reshape"
tensor_method("reshape", _reshape_method)  # t.reshape(*shape) or t.reshape(shape)


def _view_method(self, *shape):
    """PyTorch's ``t.view(*shape)``: ``t.reshape(*shape)`` (a view sharing memory where NumPy's
    reshape gives one, and the version counter always)."""
    return reshape(self, _shape_args(shape))


_view_method.__name__ = _view_method.__qualname__ = "view"
tensor_method("view", _view_method)


class Transpose(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a, axes):
        ctx.inverse = tuple(int(i) for i in np.argsort(axes))
        return a.data.transpose(axes)

    @staticmethod
    def backward(ctx, g):
        return g.transpose(ctx.inverse)


@register(method=False)
def transpose(x, axes=None):
    """Permute axes (``axes`` a full permutation; None reverses them, as NumPy)."""
    x = as_tensor(x)
    nd = x.data.ndim
    if axes is None:
        axes = tuple(range(nd - 1, -1, -1))
    else:
        axes = tuple(int(a) % nd if nd else int(a) for a in axes)
        if sorted(axes) != list(range(nd)):
            raise ValueError(f"transpose: axes {axes} are not a permutation of the {nd} axes of shape {x.shape}")
    if axes == tuple(range(nd)):
        return x
    return _share_version(Transpose.apply(x, axes), x)


def _transpose_method(self, *axes):
    """``t.transpose()`` reverses the axes; ``t.transpose(*axes)``/``t.transpose(axes)`` permutes
    them (NumPy); exactly two ints on a tensor that is not 2-D swap those two axes (PyTorch's
    ``transpose(dim0, dim1)``; on a 2-D tensor both readings agree)."""
    if len(axes) == 2 and self.data.ndim != 2 and all(isinstance(a, (int, np.integer)) for a in axes):
        return swapaxes(self, axes[0], axes[1])
    return transpose(self, _shape_args(axes) if axes else None)


def _permute_method(self, *dims):
    """PyTorch's ``t.permute(*dims)``: ``t.transpose(dims)`` with a full permutation."""
    dims = _shape_args(dims)
    if len(tuple(dims)) != self.data.ndim:
        raise ValueError(f"permute: {len(tuple(dims))} dims given for a tensor of dimension {self.data.ndim}")
    return transpose(self, dims)


def _reversed_axes(self):
    return transpose(self)


_transpose_method.__name__ = _transpose_method.__qualname__ = "transpose"
tensor_method("transpose", _transpose_method)  # t.transpose(*axes) or t.transpose(axes)
tensor_method("T", property(_reversed_axes))  # all axes reversed, as NumPy's .T
_permute_method.__name__ = _permute_method.__qualname__ = "permute"
tensor_method("permute", _permute_method)


def _numel(self) -> int:
    """PyTorch's ``t.numel()``: the number of elements (``t.size``)."""
    return int(self.data.size)


def _dim(self) -> int:
    """PyTorch's ``t.dim()``: the number of dimensions (``t.ndim``)."""
    return self.data.ndim


_numel.__name__ = _numel.__qualname__ = "numel"
_dim.__name__ = _dim.__qualname__ = "dim"
tensor_method("numel", _numel)
tensor_method("dim", _dim)


@register
def swapaxes(x, axis1, axis2):
    x = as_tensor(x)
    nd = x.data.ndim
    a1, a2 = normalize_axis(axis1, nd, "swapaxes")[0], normalize_axis(axis2, nd, "swapaxes")[0]
    perm = list(range(nd))
    perm[a1], perm[a2] = perm[a2], perm[a1]
    return transpose(x, perm)


@register
def expand_dims(x, axis=None, *, dim=None):
    if dim is not None:
        axis = from_dim(axis, dim, "expand_dims")
    if axis is None:
        raise TypeError("expand_dims: axis (or dim) is required")
    x = as_tensor(x)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    nd = x.data.ndim + len(axes)
    axes = normalize_axis(axes, nd, "expand_dims")
    shape = list(x.data.shape)
    for a in axes:
        shape.insert(a, 1)
    return reshape(x, shape)


@register
def squeeze(x, axis=None, *, dim=None):
    if dim is not None:
        axis = from_dim(axis, dim, "squeeze")
    x = as_tensor(x)
    shape = x.data.shape
    if axis is None:
        axes = tuple(i for i, n in enumerate(shape) if n == 1)
    else:
        axes = normalize_axis(axis, len(shape), "squeeze") if shape else ()  # 0-d: axis 0/-1 is a no-op
        for a in axes:
            if shape[a] != 1:
                raise ValueError(f"squeeze: axis {a} has size {shape[a]}, not 1 (shape {tuple(shape)})")
    return reshape(x, tuple(n for i, n in enumerate(shape) if i not in axes))


class BroadcastTo(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a, shape):
        try:
            return ctx.xp.broadcast_to(a.data, shape)
        except ValueError:
            raise ValueError(f"broadcast_to: shapes {tuple(a.data.shape)} and {tuple(shape)} cannot be broadcast together") from None

    @staticmethod
    def backward(ctx, g):
        return g  # the engine sums it back to the input's shape


@register
def broadcast_to(x, shape):
    x = as_tensor(x)
    shape = _shape_arg(shape)
    if shape == x.data.shape:
        return x
    return _share_version(BroadcastTo.apply(x, shape), x)


@register
def flatten(x, start_axis=DefaultInt(0), end_axis=DefaultInt(-1), *, start_dim=None, end_dim=None):
    """Merge axes start_axis..end_axis (inclusive) into one (PyTorch's start_dim/end_dim also accepted)."""
    if start_dim is not None:
        start_axis = from_dim(start_axis, start_dim, "flatten", "start_axis/start_dim")
    if end_dim is not None:
        end_axis = from_dim(end_axis, end_dim, "flatten", "end_axis/end_dim")
    x = as_tensor(x)
    shape = x.data.shape
    if not shape:
        return reshape(x, (1,))
    s = normalize_axis(start_axis, len(shape), "flatten")[0]
    e = normalize_axis(end_axis, len(shape), "flatten")[0]
    if s > e:
        raise ValueError(f"flatten: start_axis {start_axis} comes after end_axis {end_axis}")
    return reshape(x, shape[:s] + (math.prod(shape[s : e + 1]),) + shape[e + 1 :])


def _tensors(seq, op):
    seq = list(seq)
    if not seq:
        raise ValueError(f"{op} needs at least one tensor")
    like = next((t for t in seq if isinstance(t, Tensor)), None)
    return [as_tensor(t, like) for t in seq]


class Concatenate(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, axis, *parts):
        arrays = [p.data for p in parts]
        ctx.axis = axis
        ctx.offsets = tuple(int(n) for n in np.cumsum([a.shape[axis] for a in arrays])[:-1])
        try:
            return ctx.xp.concatenate(arrays, axis=axis)
        except ValueError:
            raise ValueError(
                "concatenate: shapes " + ", ".join(str(tuple(a.shape)) for a in arrays)
                + f" do not match outside axis {axis}"
            ) from None

    @staticmethod
    def backward(ctx, g):
        return (None, *ctx.ops.split(g, list(ctx.offsets), axis=ctx.axis))


@register(method=False)
def concatenate(seq, axis=DefaultInt(0), *, dim=None):
    if dim is not None:
        axis = from_dim(axis, dim, "concatenate")
    parts = _tensors(seq, "concatenate")
    nd = parts[0].data.ndim
    if nd == 0:
        raise ValueError("concatenate: zero-dimensional tensors cannot be concatenated")
    return Concatenate.apply(normalize_axis(axis, nd, "concatenate")[0], *parts)


@register(method=False)
def stack(seq, axis=DefaultInt(0), *, dim=None):
    if dim is not None:
        axis = from_dim(axis, dim, "stack")
    parts = _tensors(seq, "stack")
    shapes = {p.data.shape for p in parts}
    if len(shapes) != 1:
        raise ValueError("stack: all tensors must have the same shape, got " + ", ".join(str(p.shape) for p in parts))
    ax = normalize_axis(axis, parts[0].data.ndim + 1, "stack")[0]
    return concatenate([expand_dims(p, ax) for p in parts], axis=ax)


class Split(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a, indices_or_sections, axis):
        ctx.axis = axis
        try:
            return tuple(ctx.xp.split(a.data, indices_or_sections, axis=axis))
        except ValueError as exc:
            raise ValueError(f"split: {exc} (tensor of shape {tuple(a.data.shape)}, axis {axis})") from None

    @staticmethod
    def backward(ctx, *grads):
        return ctx.ops.concatenate(list(grads), axis=ctx.axis)


@register(method=False)
def split(x, indices_or_sections, axis=DefaultInt(0), *, dim=None) -> list:
    """NumPy's split: an int number of equal sections, or the indices to cut at; returns a list.
    (The method ``t.split`` is PyTorch's: chunk size or section sizes.)"""
    if dim is not None:
        axis = from_dim(axis, dim, "split")
    x = as_tensor(x)
    ax = normalize_axis(axis, x.data.ndim, "split")[0]
    if not isinstance(indices_or_sections, (int, np.integer)):
        indices_or_sections = [int(i) for i in indices_or_sections]
    out = Split.apply(x, indices_or_sections, ax)
    return list(out) if isinstance(out, tuple) else [out]


@register(method=False)
def cat(tensors, dim=DefaultInt(0), *, axis=None):
    """PyTorch's name for ``concatenate`` (``dim``, or NumPy's ``axis``)."""
    if axis is not None:
        dim = from_dim(dim, axis, "cat", "dim/axis")
    return concatenate(tensors, dim)


def _split_method(self, split_size_or_sections, dim=DefaultInt(0), *, axis=None):
    """PyTorch's ``t.split``: an int is the size of each chunk (the last may be smaller), a list
    the size of each piece; returns a tuple. The function ``ag.split`` keeps NumPy's meaning."""
    if axis is not None:
        dim = from_dim(dim, axis, "split", "dim/axis")
    x = self
    ax = normalize_axis(dim, x.data.ndim, "split")[0]
    n = x.data.shape[ax]
    if isinstance(split_size_or_sections, (int, np.integer)):
        size = int(split_size_or_sections)
        if size <= 0:
            raise ValueError(f"split: split_size must be a positive int, got {size}")
        cuts = list(range(size, n, size))
    else:
        sizes = [int(k) for k in split_size_or_sections]
        if sum(sizes) != n or any(k < 0 for k in sizes):
            raise ValueError(f"split: section sizes {sizes} do not add up to {n}, the size of axis {ax}")
        cuts = [int(c) for c in np.cumsum(sizes)[:-1]]
    return tuple(split(x, cuts, ax))


_split_method.__name__ = _split_method.__qualname__ = "split"
tensor_method("split", _split_method)


class Pad(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a, pad_width, value):
        ctx.window = tuple(slice(before, before + n) for (before, _), n in zip(pad_width, a.data.shape))
        return ctx.xp.pad(a.data, pad_width, mode="constant", constant_values=value)

    @staticmethod
    def backward(ctx, g):
        return g[ctx.window]


@register(method=False)
def pad(x, pad_width, value=0.0):
    """Constant padding with NumPy's ``pad_width`` (int, (before, after), or one pair per axis)."""
    x = as_tensor(x)
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64).reshape(-1, 2) if np.ndim(pad_width) else
                             np.full((1, 2), int(pad_width)), (x.data.ndim, 2))
    if (widths < 0).any():
        raise ValueError(f"pad: pad_width must be non-negative, got {pad_width!r}")
    return Pad.apply(x, tuple((int(b), int(a)) for b, a in widths), value)


@register
def repeat(x, repeats, axis=None):
    """Repeat elements (NumPy's ``repeat``); None flattens first. Its gradient sums the copies."""
    from .indexing import GetItem

    x = as_tensor(x)
    if axis is None or x.data.ndim == 0:  # a 0-d tensor repeats along axis 0/-1 as if flattened (NumPy)
        normalize_axis(axis, x.data.ndim, "repeat")
        x = reshape(x, (-1,))
        axis = 0
    ax = normalize_axis(axis, x.data.ndim, "repeat")[0]
    n = x.data.shape[ax]
    index = np.repeat(np.arange(n), np.asarray(repeats) if not isinstance(repeats, int) else repeats)
    index = x.device.backend.asarray(index)
    # A gather with a fresh index array that nothing else holds: no copy, no index tensors.
    return GetItem.apply(x, (slice(None),) * ax + (index,), ())


class Tile(Function):
    raw_backward = True

    @staticmethod
    def forward(ctx, a, reps):
        x = a.data
        d = max(len(reps), x.ndim)
        reps = (1,) * (d - len(reps)) + tuple(reps)
        xs = (1,) * (d - x.ndim) + x.shape
        ctx.interleaved = tuple(v for pair in zip(reps, xs) for v in pair)
        ctx.rep_axes = tuple(range(0, 2 * d, 2))
        ctx.shape = x.shape
        return ctx.xp.tile(x, reps)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.interleaved).sum(axis=ctx.rep_axes).reshape(ctx.shape)


@register
def tile(x, reps):
    """Tile with NumPy's ``reps``; its gradient sums the tiles."""
    x = as_tensor(x)
    return Tile.apply(x, _shape_arg(reps))
