"""A GPU-free stand-in for a CUDA device, so the whole suite can run "on the GPU" without one.

Test infrastructure (``xpgrad.backends.testing.standin``): the engine never imports it; the test
suite's ``--device=standin`` and tests that need a strict second device do.

``install()`` makes the device type "cuda" run on :class:`StandinBackend`, whose arrays
(:class:`StandinArray`) hold NumPy memory but behave like CuPy's as far as the rest of the code can
tell, only stricter:

- they refuse implicit conversion to the host: ``numpy.asarray(a)``, ``float(a)``, ``int(a)``,
  ``a.item()``, ``a.tolist()`` raise ``TypeError`` (CuPy would silently synchronise and copy for
  some of these; a training step must not). ``a.get()`` and ``backend.to_numpy(a)`` copy explicitly.
  ``bool(a)`` of a one-element array is allowed, as on CuPy, for control flow;
- they refuse to be mixed with ``numpy.ndarray``: operators, ``xp`` functions, indexing and
  assignment raise ``TypeError`` naming the host array. ``numpy`` functions and ufuncs called on them
  raise too (only shape/ndim/size/result_type, which read metadata, are let through), so ``np.`` on
  device data is caught where real CuPy would quietly dispatch it;
- the array module ``xp`` offers only names that CuPy has as well (``xp.errstate``, ``xp.random``
  and the like are missing on purpose), so code that runs here also runs on CuPy;
- host -> device happens only in ``StandinBackend.asarray`` and device -> host only in
  ``to_numpy``/``get``, and both copy, so no memory is shared across the "devices".

Why not array-api-strict: its arrays lack the ndarray methods and NumPy extras the engine and
layers use (``ufunc.at``, ``einsum``, ``pad``, ``.sum(keepdims=)`` on methods, ``.base`` for the
engine's buffer-ownership check...). A thin strict wrapper around ndarray is simpler and keeps
NumPy's exact numerics, so results on the stand-in match the CPU bit for bit.
"""
from __future__ import annotations

import contextlib
import functools
import math
import threading
from typing import Any
from collections.abc import Callable, Iterator, Mapping

import numpy as np

from ..base import Backend, _draw_normal, _draw_uniform

__all__ = ["StandinArray", "StandinBackend", "xp", "install", "uninstall", "installed", "is_installed"]

_IMPLICIT = (
    "Implicit conversion to a NumPy array is not allowed: this array lives on the (stand-in) cuda device, "
    "as a CuPy array would; copy it to the host explicitly with .get() or backend.to_numpy(array) "
    "(for a Tensor: t.numpy(), t.item(), t.cpu())"
)


def _mixed(where: str) -> TypeError:
    return TypeError(
        f"{where}: a host numpy.ndarray was mixed with a device array (cuda stand-in); nothing is copied "
        "implicitly. Move it to the device first (backend.asarray(array), ag.tensor(array, device=...)), "
        "or compute with the device's array module (t.device.backend.xp, ctx.xp) instead of numpy"
    )


# -- wrapping and unwrapping --------------------------------------------------------------------------

def _unwrap(obj, seen: dict, where: str):
    """NumPy view of ``obj`` for the real numpy call; host arrays are refused."""
    t = type(obj)
    if t is StandinArray:
        a = obj._a
        seen[id(a)] = obj
        return a
    if t is tuple or t is list:
        return t(_unwrap(v, seen, where) for v in obj)
    if isinstance(obj, np.ndarray):
        raise _mixed(where)
    return obj


def _wrap(result, seen: dict):
    """Device view of a numpy result: arrays and numpy scalars become StandinArrays (0-d for scalars)."""
    t = type(result)
    if t is np.ndarray:
        same = seen.get(id(result))
        return same if same is not None else StandinArray(result)
    if isinstance(result, np.generic):
        return StandinArray(np.asarray(result))
    if t is tuple or t is list:
        return t(_wrap(v, seen) for v in result)
    if isinstance(result, np.ndarray):  # ndarray subclasses (matrix, memmap...) are plain arrays on a device
        return StandinArray(np.asarray(result))
    return result


def _wrap1(result):
    if type(result) is np.ndarray:
        return StandinArray(result)
    if isinstance(result, np.generic):
        return StandinArray(np.asarray(result))
    return _wrap(result, {})


def _operand(other):
    """The numpy-side operand of a binary operator, or NotImplemented for foreign types (Tensors...)."""
    t = type(other)
    if t is StandinArray:
        return other._a
    if t is float or t is int or t is bool or t is complex or isinstance(other, np.generic):
        return other
    if isinstance(other, np.ndarray):
        raise _mixed("operator")
    return NotImplemented


def _index(key, where: str):
    """An index for the wrapped array: device index arrays unwrapped, host index arrays refused."""
    if type(key) is tuple:
        return tuple(_index_item(k, where) for k in key)
    return _index_item(key, where)


def _index_item(k, where: str):
    t = type(k)
    if t is StandinArray:
        return k._a
    if t is int or t is slice or k is None or k is Ellipsis:
        return k
    if isinstance(k, np.ndarray):
        raise _mixed(where)
    if t is list:
        return _unwrap(k, {}, where)
    return k


# -- the array type --------------------------------------------------------------------------------------

# ndarray methods that CuPy's ndarray has too; they run on the wrapped array and return device arrays.
_METHODS = frozenset(
    "all any argmax argmin argpartition argsort astype choose clip compress conj conjugate copy cumprod cumsum "
    "diagonal dot fill flatten max mean min nonzero partition prod put ravel repeat reshape round searchsorted "
    "sort squeeze std sum swapaxes take trace transpose var view".split()
)


def _method(name: str):
    def method(self, *args, **kwargs):
        seen: dict = {}
        where = f"StandinArray.{name}"
        args = _unwrap(args, seen, where)
        kwargs = {k: _unwrap(v, seen, where) for k, v in kwargs.items()}
        return _wrap(getattr(self._a, name)(*args, **kwargs), seen)

    method.__name__ = name
    method.__doc__ = f"``numpy.ndarray.{name}`` on the device array."
    return method


def _refuse(name: str):
    def refused(self, *args, **kwargs):
        raise TypeError(f"{name}: {_IMPLICIT}")

    refused.__name__ = name
    return refused


class StandinArray:
    """A device array of the stand-in cuda backend: NumPy memory behind a strict CuPy-like face.

    Build them with the backend (``backend.asarray``) or ``xp`` functions, not directly.
    """

    __slots__ = ("_a", "__weakref__")
    # NumPy ufuncs refuse us, and NumPy scalars/arrays defer to our reflected operators.
    __array_ufunc__ = None

    def __init__(self, array: np.ndarray) -> None:
        if type(array) is not np.ndarray:
            raise TypeError(f"StandinArray wraps a numpy.ndarray, got {type(array).__name__}; use backend.asarray")
        self._a = array

    # -- metadata ------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self._a.shape

    @property
    def ndim(self) -> int:
        return self._a.ndim

    @property
    def size(self) -> int:
        return self._a.size

    @property
    def dtype(self) -> np.dtype:
        return self._a.dtype

    @property
    def itemsize(self) -> int:
        return self._a.itemsize

    @property
    def nbytes(self) -> int:
        return self._a.nbytes

    @property
    def strides(self) -> tuple:
        return self._a.strides

    @property
    def flags(self):
        return self._a.flags

    @property
    def base(self):
        """None for an array owning its memory; for a view, the array it views (the engine's ownership test)."""
        b = self._a.base
        if b is None:
            return None
        return StandinArray(b) if type(b) is np.ndarray else b

    @property
    def T(self) -> StandinArray:
        return StandinArray(self._a.T)

    @property
    def mT(self) -> StandinArray:
        return StandinArray(self._a.mT)

    @property
    def real(self) -> StandinArray:
        return _wrap1(self._a.real)

    @property
    def imag(self) -> StandinArray:
        return _wrap1(self._a.imag)

    @property
    def device(self) -> str:
        return "cuda (stand-in)"

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self) -> Iterator[StandinArray]:
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        for i in range(self._a.shape[0]):
            yield StandinArray(self._a[i : i + 1].reshape(self._a.shape[1:]))

    # -- explicit host copy; everything implicit raises ----------------------------------------------
    def get(self) -> np.ndarray:
        """A host copy (numpy.ndarray), as ``cupy.ndarray.get``."""
        return self._a.copy()

    def __array__(self, dtype=None, copy=None):
        raise TypeError(_IMPLICIT)

    def __dlpack_device__(self) -> tuple:
        return (2, 0)  # kDLCUDA, as a CuPy array reports

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        # The memory is host memory posing as cuda: no consumer could read a kDLCUDA capsule of it, and
        # exporting it as kDLCPU would be the implicit host conversion this array refuses.
        raise BufferError(
            "DLPack export is not available on the (stand-in) cuda device: its memory is not real device memory. "
            "Copy to the host explicitly first (for a Tensor: t.cpu(), t.numpy())"
        )

    def __array_function__(self, func, types, args, kwargs):
        if func in _METADATA_FUNCTIONS:
            return func(*_unwrap_any(args), **{k: _unwrap_any(v) for k, v in kwargs.items()})
        raise TypeError(
            f"numpy.{func.__name__} was called on a (stand-in) cuda device array; NumPy functions work on host "
            "memory. Use the device's array module (t.device.backend.xp, ctx.xp), or copy to the host explicitly"
        )

    __float__ = _refuse("float()")
    __int__ = _refuse("int()")
    __complex__ = _refuse("complex()")
    __index__ = _refuse("operator.index()")
    item = _refuse("item()")
    tolist = _refuse("tolist()")
    tobytes = _refuse("tobytes()")

    def __bool__(self) -> bool:
        # As on CuPy: a synchronising read, allowed for one element (the engine's finiteness checks).
        if self._a.size != 1:
            raise ValueError(
                f"the truth value of an array with {self._a.size} elements is ambiguous; use .any() or .all()"
            )
        return bool(self._a.reshape(()))

    def __repr__(self) -> str:
        return "standin_" + repr(self._a)

    def __str__(self) -> str:
        return str(self._a)

    def __copy__(self) -> StandinArray:
        return StandinArray(self._a.copy())

    def __deepcopy__(self, memo) -> StandinArray:
        return StandinArray(self._a.copy())

    def __reduce__(self):
        # Pickling copies to the host and back, as CuPy's does.
        return (_rebuild, (self._a.copy(),))

    # -- indexing -------------------------------------------------------------------------------------
    def __getitem__(self, key) -> StandinArray:
        return _wrap1(self._a[_index(key, "indexing")])

    def __setitem__(self, key, value) -> None:
        v = value
        if type(v) is StandinArray:
            v = v._a
        elif isinstance(v, np.ndarray):
            raise _mixed("item assignment")
        elif type(v) is list or type(v) is tuple:
            v = _unwrap(v, {}, "item assignment")
        self._a[_index(key, "item assignment")] = v

    # -- operators: defined below from ufuncs --------------------------------------------------------
    def __pos__(self) -> StandinArray:
        return StandinArray(self._a.copy())

    def __neg__(self) -> StandinArray:
        return _wrap1(np.negative(self._a))

    def __abs__(self) -> StandinArray:
        return _wrap1(np.absolute(self._a))

    def __invert__(self) -> StandinArray:
        return _wrap1(np.invert(self._a))

    # Comparisons return arrays, so instances are unhashable, as ndarrays are.
    __hash__ = None  # type: ignore[assignment]

    def __getattr__(self, name: str):
        raise AttributeError(
            f"'StandinArray' has no attribute {name!r} (the stand-in offers only what cupy.ndarray offers as well)"
        )


for _name in _METHODS:
    setattr(StandinArray, _name, _method(_name))


def _rebuild(host: np.ndarray) -> StandinArray:
    return StandinArray(host)


def _unwrap_any(obj):
    """Unwrap for metadata-only functions, where host arrays may take part."""
    t = type(obj)
    if t is StandinArray:
        return obj._a
    if t is tuple or t is list:
        return t(_unwrap_any(v) for v in obj)
    return obj


_METADATA_FUNCTIONS = frozenset({np.shape, np.ndim, np.size, np.result_type, np.may_share_memory, np.shares_memory})


def _binary(ufunc, name: str):
    def op(self, other):
        o = _operand(other)
        if o is NotImplemented:
            return NotImplemented
        return _wrap1(ufunc(self._a, o))

    def rop(self, other):
        o = _operand(other)
        if o is NotImplemented:
            return NotImplemented
        return _wrap1(ufunc(o, self._a))

    def iop(self, other):
        o = _operand(other)
        if o is NotImplemented:
            return NotImplemented
        ufunc(self._a, o, out=self._a)
        return self

    op.__name__, rop.__name__, iop.__name__ = f"__{name}__", f"__r{name}__", f"__i{name}__"
    return op, rop, iop


for _name, _ufunc in (
    ("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("truediv", np.true_divide),
    ("floordiv", np.floor_divide), ("mod", np.remainder), ("pow", np.power), ("matmul", np.matmul),
    ("and", np.bitwise_and), ("or", np.bitwise_or), ("xor", np.bitwise_xor),
    ("lshift", np.left_shift), ("rshift", np.right_shift),
):
    _op, _rop, _iop = _binary(_ufunc, _name)
    setattr(StandinArray, f"__{_name}__", _op)
    setattr(StandinArray, f"__r{_name}__", _rop)
    if _name != "matmul":  # CuPy has no in-place @=
        setattr(StandinArray, f"__i{_name}__", _iop)

for _name, _ufunc in (
    ("eq", np.equal), ("ne", np.not_equal), ("lt", np.less), ("le", np.less_equal),
    ("gt", np.greater), ("ge", np.greater_equal),
):
    setattr(StandinArray, f"__{_name}__", _binary(_ufunc, _name)[0])


def _divmod(self, other):
    o = _operand(other)
    return NotImplemented if o is NotImplemented else _wrap1(np.divmod(self._a, o))


StandinArray.__divmod__ = _divmod  # type: ignore[attr-defined]
del _name, _ufunc, _op, _rop, _iop


# -- the array module --------------------------------------------------------------------------------------

# Public names that NumPy and CuPy 14 both have (minus the host-only or unsafe ones), so code that
# works on the stand-in also works on CuPy. random: use the Backend's seeded methods instead.
_CUPY_NAMES = frozenset("""
abs absolute acos acosh add all allclose amax amin angle any append apply_along_axis apply_over_axes arange
arccos arccosh arcsin arcsinh arctan arctan2 arctanh argmax argmin argpartition argsort argwhere around array
array2string array_equal array_equiv array_repr array_split array_str asanyarray asarray asarray_chkfinite
ascontiguousarray asfortranarray asin asinh astype atan atan2 atanh atleast_1d atleast_2d atleast_3d average
bartlett base_repr binary_repr bincount bitwise_and bitwise_count bitwise_invert bitwise_left_shift
bitwise_not bitwise_or bitwise_right_shift bitwise_xor blackman bool bool_ broadcast_arrays
broadcast_shapes broadcast_to byte can_cast cbrt cdouble ceil choose clip column_stack common_type
complex128 complex64 complexfloating compress concat concatenate conj conjugate convolve copy copysign copyto
corrcoef correlate cos cosh count_nonzero cov cross csingle cumprod cumsum cumulative_prod cumulative_sum
deg2rad degrees delete diag diag_indices diag_indices_from diagflat diagonal diff digitize divide divmod dot
double dsplit dstack dtype e ediff1d einsum empty empty_like equal euler_gamma exp exp2 expand_dims expm1
extract eye fabs fill_diagonal finfo fix flatnonzero flip fliplr flipud float16 float32 float64
float_power floating floor floor_divide fmax fmin fmod format_float_positional format_float_scientific frexp
full full_like gcd generic get_printoptions gradient greater greater_equal half hamming hanning heaviside
histogram histogram2d histogramdd hsplit hstack hypot i0 identity iinfo imag index_exp indices inexact inf
inner int16 int32 int64 int8 int_ intc integer interp intersect1d intp invert isclose iscomplex iscomplexobj
isdtype isfinite isfortran isin isinf isnan isneginf isposinf isreal isrealobj isscalar issubdtype iterable
ix_ kaiser kron lcm ldexp left_shift less less_equal lexsort linspace log log10 log1p log2 logaddexp
logaddexp2 logical_and logical_not logical_or logical_xor logspace long longlong mask_indices matmul
matrix_transpose max maximum may_share_memory mean median meshgrid min min_scalar_type minimum mintypecode
mod modf moveaxis multiply nan nan_to_num nanargmax nanargmin nancumprod nancumsum nanmax nanmean nanmedian
nanmin nanprod nanstd nansum nanvar ndim ndindex negative newaxis nextafter nonzero not_equal number ones
ones_like outer
packbits pad partition percentile permute_dims pi place poly polyadd polyfit polymul polysub polyval
positive pow power printoptions prod promote_types ptp put put_along_axis putmask quantile rad2deg radians
ravel ravel_multi_index real real_if_close reciprocal remainder repeat require reshape resize result_type
right_shift rint roll rollaxis roots rot90 round row_stack s_ searchsorted select set_printoptions setdiff1d
setxor1d shape shares_memory short sign signbit signedinteger sin sinc single sinh size sort sort_complex
split sqrt square squeeze stack std subtract sum swapaxes take take_along_axis tan tanh tensordot tile trace
transpose trapezoid tri tril tril_indices tril_indices_from trim_zeros triu triu_indices triu_indices_from
true_divide trunc typename ubyte uint uint16 uint32 uint64 uint8 uintc uintp ulong ulonglong union1d unique
unique_all unique_counts unique_inverse unique_values unpackbits unravel_index unsignedinteger unwrap ushort
vander var vdot vsplit vstack where zeros zeros_like
""".split())

_CUPY_LINALG_NAMES = frozenset(
    "LinAlgError cholesky cond cross det eig eigh eigvals eigvalsh inv lstsq matmul matrix_power matrix_rank "
    "matrix_transpose norm pinv qr slogdet solve svd tensorinv tensorsolve".split()
)
_CUPY_FFT_NAMES = frozenset(
    "fft fft2 fftfreq fftn fftshift hfft ifft ifft2 ifftn ifftshift ihfft irfft irfft2 irfftn rfft rfft2 rfftfreq "
    "rfftn".split()
)


class _Ufunc:
    """A NumPy ufunc applied to device arrays: ``__call__`` (with ``out=``), ``at``, ``reduce``,
    ``accumulate``, ``outer``, ``reduceat``; other attributes (nin, nout, identity...) as NumPy's."""

    __slots__ = ("_u", "__name__")

    def __init__(self, ufunc: np.ufunc) -> None:
        self._u = ufunc
        self.__name__ = ufunc.__name__

    def _run(self, fn, what, args, kwargs):
        seen: dict = {}
        args = _unwrap(args, seen, what)
        kwargs = {k: _unwrap(v, seen, what) for k, v in kwargs.items()}
        return _wrap(fn(*args, **kwargs), seen)

    def __call__(self, *args, **kwargs):
        for a in args:
            if type(a) is list or type(a) is tuple:
                # CuPy's ufuncs take arrays and scalars only, never Python sequences.
                raise TypeError(f"xp.{self.__name__}: unsupported argument type {type(a).__name__}; make an array first")
        return self._run(self._u, f"xp.{self.__name__}", args, kwargs)

    def at(self, a, indices, b=None) -> None:
        if type(a) is not StandinArray:
            raise _mixed(f"xp.{self.__name__}.at") if isinstance(a, np.ndarray) else TypeError(
                f"xp.{self.__name__}.at needs a device array to update in place, got {type(a).__name__}"
            )
        where = f"xp.{self.__name__}.at"
        idx = _index(indices, where)
        if b is None:
            self._u.at(a._a, idx)
        else:
            self._u.at(a._a, idx, _unwrap(b, {}, where))

    def reduce(self, *args, **kwargs):
        return self._run(self._u.reduce, f"xp.{self.__name__}.reduce", args, kwargs)

    def accumulate(self, *args, **kwargs):
        return self._run(self._u.accumulate, f"xp.{self.__name__}.accumulate", args, kwargs)

    def outer(self, *args, **kwargs):
        return self._run(self._u.outer, f"xp.{self.__name__}.outer", args, kwargs)

    def reduceat(self, *args, **kwargs):
        return self._run(self._u.reduceat, f"xp.{self.__name__}.reduceat", args, kwargs)

    def __getattr__(self, name: str):
        return getattr(self._u, name)

    def __repr__(self) -> str:
        return f"<stand-in ufunc {self.__name__!r}>"


def _device_function(fn, qualname: str):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        seen: dict = {}
        args = _unwrap(args, seen, qualname)
        kwargs = {k: _unwrap(v, seen, qualname) for k, v in kwargs.items()}
        return _wrap(fn(*args, **kwargs), seen)

    return call


class _ArrayModule:
    """The stand-in's ``xp``: NumPy's functions, taking and returning device arrays, limited to names
    CuPy has too. Attributes are built on first use and cached on the instance."""

    ndarray = StandinArray
    ufunc = _Ufunc

    def __init__(self, module, prefix: str, names: frozenset) -> None:
        self._module = module
        self._prefix = prefix
        self._names = names
        self.__name__ = prefix

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if name == "random":
            raise AttributeError(
                "the stand-in's xp has no `random` on purpose: draw random numbers through the backend "
                "(backend.uniform/normal/permutation, or ag.rand/ag.randn), which ag.manual_seed seeds"
            )
        if name == "linalg" and self._prefix == "xp":
            value: Any = _ArrayModule(np.linalg, "xp.linalg", _CUPY_LINALG_NAMES)
        elif name == "fft" and self._prefix == "xp":
            value = _ArrayModule(np.fft, "xp.fft", _CUPY_FFT_NAMES)
        elif name == "asnumpy" and self._prefix == "xp":
            value = to_numpy_copy
        elif name not in self._names:
            raise AttributeError(
                f"{self._prefix}.{name} is not offered by the stand-in device: "
                + ("CuPy has no such function either" if hasattr(self._module, name) else "NumPy has no such name")
            )
        else:
            obj = getattr(self._module, name)
            if isinstance(obj, np.ufunc):
                value = _Ufunc(obj)
            elif isinstance(obj, type) or not callable(obj):
                value = obj  # dtypes, constants, errors: the same objects as NumPy's
            else:
                value = _device_function(obj, f"{self._prefix}.{name}")
        self.__dict__[name] = value
        return value

    def __repr__(self) -> str:
        return f"<stand-in array module {self._prefix!r} (NumPy behind CuPy's strictness)>"


def to_numpy_copy(array) -> np.ndarray:
    """Explicit device -> host copy (``xp.asnumpy``, as ``cupy.asnumpy``)."""
    if type(array) is StandinArray:
        return array._a.copy()
    if isinstance(array, np.ndarray):
        return array
    return np.asarray(array)


xp = _ArrayModule(np, "xp", _CUPY_NAMES)


# -- the backend ---------------------------------------------------------------------------------------------

class StandinBackend(Backend):
    """Serves device type "cuda" with :class:`StandinArray` (registered by :func:`install`).

    ``fused`` maps :meth:`Backend.fused` kinds to kernels, so that a test can register a backend whose
    hook offers kernels of its own (``backends.register(name, StandinBackend(fused={...}), device_type=...)``).
    The one :func:`install` registers has none: it runs the generic array code, as the CPU does.
    """

    name = "standin"
    device_type = "cuda"
    xp = xp
    array_type = StandinArray

    def __init__(self, fused: Mapping[str, Callable] | None = None) -> None:
        self._seed: int | None = None
        self._generators: dict[int, np.random.Generator] = {}
        self._fused: dict[str, Callable] = dict(fused or {})

    def availability(self) -> tuple[bool, str]:
        return True, "available"

    # -- the only host <-> device crossings ---------------------------------------------------------------
    def asarray(self, data, dtype=None, device=None) -> StandinArray:
        if type(data) is StandinArray:
            if dtype is None or np.dtype(dtype) == data.dtype:
                return data
            return StandinArray(data._a.astype(dtype))
        module = getattr(type(data), "__module__", "") or ""
        if module.startswith(("cupy", "xpgrad")):
            raise TypeError(
                f"cannot make a stand-in device array from a {module}.{type(data).__name__}; "
                "pass host data (a NumPy array, list or number), or move a Tensor with t.to(device)"
            )
        host = np.array(_unwrap_any(data), dtype=dtype, copy=True)  # a transfer never shares memory
        if host.dtype.kind == "O":
            raise TypeError(f"cannot put an object array on a device (from {type(data).__name__})")
        return StandinArray(host)

    def to_numpy(self, array) -> np.ndarray:
        if type(array) is not StandinArray:
            raise TypeError(f"to_numpy of the stand-in backend expects its device array, got {type(array).__name__}")
        return array._a.copy()

    def synchronize(self, device=None) -> None:
        """Nothing is queued: the stand-in runs synchronously."""

    # -- kernels ------------------------------------------------------------------------------------------
    def scatter_add(self, target, index, values) -> None:
        xp.add.at(target, index, values)

    def erf(self, x) -> StandinArray:
        # Computed in place on the wrapped memory (the "device"), so a step using erf (GELU) does not
        # show up as a host round trip; NumPy has no erf, the stdlib's is exact.
        a = x._a
        out = np.frompyfunc(math.erf, 1, 1)(a)
        return StandinArray(np.asarray(out, dtype=a.dtype if a.dtype.kind == "f" else np.float64))

    def fused(self, kind: str):
        """The kernel given for ``kind`` at construction, or None (then callers run the generic path)."""
        return self._fused.get(kind)

    # -- random numbers: one generator per device index, seeded by ag.manual_seed ----------------------
    def _generator(self, device) -> np.random.Generator:
        idx = 0 if device is None or device.index is None else device.index
        gen = self._generators.get(idx)
        if gen is None:
            # Device 0 draws the stream the CPU backend draws for the same seed, so seeded runs agree.
            gen = self._generators[idx] = np.random.default_rng(None if self._seed is None else self._seed + idx)
        return gen

    def seed(self, seed: int) -> None:
        self._seed = int(seed)
        self._generators.clear()

    def make_stream(self, seed: int, device=None) -> np.random.Generator:
        return np.random.default_rng(seed)

    def uniform(self, shape, low, high, dtype, device=None, stream=None) -> StandinArray:
        return StandinArray(_draw_uniform(stream or self._generator(device), shape, low, high, dtype))

    def normal(self, shape, mean, std, dtype, device=None, stream=None) -> StandinArray:
        return StandinArray(_draw_normal(stream or self._generator(device), shape, mean, std, dtype))

    def integers(self, shape, low, high, dtype, device=None, stream=None) -> StandinArray:
        return StandinArray((stream or self._generator(device)).integers(low, high, size=shape, dtype=dtype))

    def permutation(self, n: int, device=None, stream=None) -> StandinArray:
        return StandinArray((stream or self._generator(device)).permutation(n))


# -- registering it for "cuda" -----------------------------------------------------------------------------

_BACKEND = StandinBackend()
_install_lock = threading.Lock()


def is_installed(device_type: str = "cuda") -> bool:
    from .. import registry

    return registry._by_device_type.get(device_type) == StandinBackend.name


def install(device_type: str = "cuda") -> StandinBackend:
    """Make ``device_type`` (default "cuda") run on the stand-in; returns its backend. Idempotent."""
    from .. import registry

    with _install_lock:
        if not is_installed(device_type):
            registry.register(StandinBackend.name, _BACKEND, device_type=device_type)
    return _BACKEND


def uninstall() -> None:
    """Give the device type back to whatever served it before :func:`install` (CuPy, lazily)."""
    from .. import registry

    with _install_lock:
        try:
            registry.unregister(StandinBackend.name)  # the registry remembers the previous owner
        except KeyError:
            pass  # not installed: nothing to undo


@contextlib.contextmanager
def installed(device_type: str = "cuda") -> Iterator[StandinBackend]:
    """``with installed(): ...`` runs the block with the stand-in serving ``device_type``."""
    already = is_installed(device_type)
    backend = install(device_type)
    try:
        yield backend
    finally:
        if not already:
            uninstall()
