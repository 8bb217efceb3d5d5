"""xpgrad's engine: tensors, the dynamic graph and reverse-mode differentiation to any order.

>>> from xpgrad import autograd as ag
>>> x = ag.tensor([1.0, 2.0, 3.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
tensor([2., 4., 6.])
"""
from . import dtypes  # noqa: F401  (ag.dtypes)
from ._methods import install as _install
from .creation import (
    arange, empty, eye, get_default_device, set_default_device, from_numpy, full, full_like, manual_seed, ones, ones_like, rand, randn, tensor, zeros,
    zeros_like,
)
from .dtypes import bool_, float16, float32, float64, get_default_dtype, int32, int64, set_default_dtype
from .grad_inputs import grad
from .hooks import RemovableHandle, queue_callback
from .random import Generator, multinomial, rand_like, randint, randn_like
from .interop import from_dlpack
from .function import Context, Function
from .grad_mode import detect_anomaly, enable_grad, is_anomaly_enabled, is_grad_enabled, no_grad, set_grad_enabled
from .ops import *  # noqa: F401,F403  (the op functions: add, exp, sum, reshape, ...)
from .ops import __all__ as _ops_all  # type: ignore[attr-defined]
from .tensor import Tensor
from xpgrad.backends.device import Device

_install()

from .testing import GradcheckError, gradcheck, gradgradcheck  # noqa: E402  (needs the ops above)
from . import func  # noqa: E402,F401  (ag.func: grad, jacobian, hessian, ... as transforms)

__version__ = "0.1.0"

__all__ = [
    "Tensor", "Function", "Context", "Device", "grad", "queue_callback", "RemovableHandle", "GradcheckError", "gradcheck", "gradgradcheck",
    "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "detect_anomaly", "is_anomaly_enabled",
    "arange", "empty", "eye", "from_dlpack", "from_numpy", "full", "full_like", "get_default_device", "set_default_device",
    "manual_seed", "ones", "ones_like", "rand", "randn", "tensor", "zeros", "zeros_like",
    "Generator", "randint", "rand_like", "randn_like", "multinomial",
    "bool_", "float16", "float32", "float64", "int32", "int64", "get_default_dtype", "set_default_dtype",
    *_ops_all,
]
