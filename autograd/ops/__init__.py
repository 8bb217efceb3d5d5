"""Built-in differentiable ops, grouped as NumPy groups them.

Each op module declares its ops through ``_registry.register`` (one block per op: Function
class, public function, Tensor methods), which also builds that module's ``__all__``; the
registry's list of every public op is this package's ``__all__``.
"""
from ._registry import exported as _exported
from .compare import *  # noqa: F401,F403  (each module's __all__ is built by the registry)
from .elementwise import *  # noqa: F401,F403
from .indexing import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from .reduction import *  # noqa: F401,F403
from .selection import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403

__all__ = list(_exported())
