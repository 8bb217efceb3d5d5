"""xpgrad: a readable, fast autograd engine for people who live in NumPy.

The everyday names are here::

    import xpgrad as xg
    x = xg.tensor([1.0, 2.0], requires_grad=True)
    (dx,) = xg.grad((x ** 3).sum(), x)
    model = xg.nn.Linear(2, 1); opt = xg.optim.Adam(model.parameters())

and the subpackages keep their own names: ``from xpgrad import autograd as ag, nn, optim, backends``.
This file is the package's ``__init__``: the repository root is the ``xpgrad`` package (see
``[tool.setuptools]`` in pyproject.toml), so its folders install as ``xpgrad.autograd``,
``xpgrad.backends``, ``xpgrad.nn``, ``xpgrad.optim``, ``xpgrad.examples`` and ``xpgrad.benchmarks``.
"""
from . import autograd, backends
from .autograd import *  # noqa: F401,F403  (tensor, grad, no_grad, the ops, ...)
from .autograd import __all__ as _autograd_all
from .autograd import func  # noqa: E402  (xg.func.grad, xg.func.jacobian, ...)
from . import nn, optim  # noqa: E402  (they build on the engine above)

__version__ = autograd.__version__
__all__ = ["autograd", "backends", "nn", "optim", "func", *_autograd_all]
