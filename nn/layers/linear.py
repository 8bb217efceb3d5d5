"""Linear, Identity and Flatten."""
from __future__ import annotations

import math

from xpgrad import autograd as ag
from xpgrad.autograd import Tensor
from xpgrad.autograd.ops._util import DefaultInt, from_dim

from .. import functional as F
from .. import init
from ..module import Module, Parameter

__all__ = ["Linear", "Identity", "Flatten"]


class Linear(Module):
    """``y = x @ weight.T + bias`` with ``weight`` of shape (out_features, in_features).

    Initialised as PyTorch does: weight from kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(in),
    1/sqrt(in)), and bias from U(-1/sqrt(in), 1/sqrt(in)).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.weight = Parameter(ag.empty(self.out_features, self.in_features, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(ag.empty(self.out_features, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Identity(Module):
    """Returns its input unchanged (a placeholder, e.g. to remove a layer)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return x


class Flatten(Module):
    """Merge axes ``start_axis``..``end_axis`` (by default all but the batch axis)."""

    def __init__(self, start_axis: int = DefaultInt(1), end_axis: int = DefaultInt(-1), *,
                 start_dim: int | None = None, end_dim: int | None = None) -> None:
        super().__init__()
        if start_dim is not None:
            start_axis = from_dim(start_axis, start_dim, "Flatten", "start_axis/start_dim")
        if end_dim is not None:
            end_axis = from_dim(end_axis, end_dim, "Flatten", "end_axis/end_dim")
        self.start_axis = int(start_axis)
        self.end_axis = int(end_axis)

    def forward(self, x: Tensor) -> Tensor:
        return ag.flatten(x, self.start_axis, self.end_axis)

    def extra_repr(self) -> str:
        return f"start_axis={self.start_axis}, end_axis={self.end_axis}"
