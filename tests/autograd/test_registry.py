"""The op registry: one declaration per op makes its public function, its ``__all__`` entries and its
Tensor methods, all the very same function objects."""
from __future__ import annotations

import types

import pytest

from xpgrad import autograd as ag
from xpgrad.autograd import ops
from xpgrad.autograd.ops import _registry, compare, elementwise, indexing, linalg, reduction, shape

# The op names and Tensor members callers rely on: every one must stay (new ops only add names, so
# these are checked as subsets, not as the whole lists).
PUBLIC_OPS = {
    "equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
    "add", "sub", "mul", "div", "pow", "neg", "abs", "exp", "log", "log1p", "sqrt", "square", "sin", "cos",
    "tanh", "sigmoid", "relu", "erf", "maximum", "minimum", "clip", "where", "sign", "clone", "astype",
    "to_device", "getitem", "take_along_axis", "matmul",
    "sum", "mean", "var", "max", "min", "prod", "logsumexp", "argmax", "argmin",
    "reshape", "transpose", "swapaxes", "expand_dims", "squeeze", "broadcast_to", "flatten", "concatenate",
    "stack", "split", "pad", "repeat", "tile",
}
# Ops whose Tensor method has the op's name and is the op function itself.
SAME_NAME_METHODS = {
    "add", "sub", "mul", "div", "pow", "matmul", "neg", "abs", "exp", "log", "log1p", "sqrt", "square",
    "sin", "cos", "tanh", "sigmoid", "relu", "maximum", "minimum", "clip", "sign", "clone", "astype",
    "sum", "mean", "var", "max", "min", "prod", "logsumexp", "argmax", "argmin", "swapaxes",
    "expand_dims", "squeeze", "broadcast_to", "flatten", "repeat", "tile", "take_along_axis", "erf",
    "tril", "triu", "masked_fill", "topk", "sort", "argsort",
}
OPERATORS = {
    "__add__": "add", "__sub__": "sub", "__mul__": "mul", "__truediv__": "div", "__pow__": "pow",
    "__matmul__": "matmul", "__neg__": "neg", "__abs__": "abs", "__getitem__": "getitem",
    "__eq__": "equal", "__ne__": "not_equal", "__lt__": "less", "__le__": "less_equal",
    "__gt__": "greater", "__ge__": "greater_equal",
}
REFLECTED = {"__radd__", "__rsub__", "__rmul__", "__rtruediv__", "__rpow__", "__rmatmul__"}
OTHER_MEMBERS = {"reshape", "transpose", "T", "any", "all", "__pos__"}
MODULES = (compare, elementwise, indexing, linalg, reduction, shape)


def test_public_ops_are_the_registered_functions():
    public = _registry.exported()
    assert PUBLIC_OPS <= set(public)
    assert list(ops.__all__) == list(public)
    assert set(ops.__all__) <= set(ag.__all__)
    for name, fn in public.items():
        assert getattr(ops, name) is fn
        assert getattr(ag, name) is fn
        assert fn.__name__ == name


def test_each_module_exports_exactly_its_ops():
    public = _registry.exported()
    for module in MODULES:
        mine = [name for name, fn in public.items() if fn.__module__ == module.__name__]
        extra = ["normalize_index"] if module is indexing else []
        assert module.__all__ == extra + mine, module.__name__
        for name in module.__all__:
            assert hasattr(module, name)


def test_tensor_members_are_the_op_functions_themselves():
    members = _registry.methods()
    assert SAME_NAME_METHODS | set(OPERATORS) | REFLECTED | OTHER_MEMBERS <= set(members)
    assert not set(members) & {"where", "concatenate", "stack", "pad", "to_device", "getitem", "equal"}
    # t.split is PyTorch's method (chunk sizes), never NumPy's function ag.split (section count/indices)
    assert members["split"] is not ag.split and members["split"].__module__ == shape.__name__
    for name in SAME_NAME_METHODS:
        assert getattr(ag.Tensor, name) is getattr(ag, name), name  # no wrapper around the fast paths
    for name, op in OPERATORS.items():
        assert getattr(ag.Tensor, name) is getattr(ag, op), name
    for name, impl in members.items():
        assert ag.Tensor.__dict__[name] is impl, name
    assert isinstance(ag.Tensor.__dict__["T"], property)


def test_reflected_operators_swap_the_operands():
    x = ag.tensor([2.0, 4.0])
    for name, value in (("__radd__", [3.0, 5.0]), ("__rsub__", [-1.0, -3.0]), ("__rmul__", [2.0, 4.0]),
                        ("__rtruediv__", [0.5, 0.25]), ("__rpow__", [1.0, 1.0])):
        assert getattr(x, name)(1.0).tolist() == value, name
    assert (ag.tensor([1.0, 2.0]).__rmatmul__(ag.tensor([3.0, 4.0]))).item() == 11.0


def test_tan_is_an_op_a_method_and_twice_differentiable():
    assert "tan" in elementwise.__all__ and "tan" in ag.__all__
    x = ag.tensor([-1.0, 0.25, 1.0], dtype=ag.float64, requires_grad=True)
    assert ag.Tensor.tan is ag.tan
    assert x.tan().tolist() == ag.tan(x).tolist()
    assert ag.gradgradcheck(ag.tan, (x,))


def test_a_name_declared_by_two_modules_is_refused():
    other = types.ModuleType("xpgrad_registry_probe")

    def add(a, b):
        return a

    add.__module__ = other.__name__
    before = (_registry.exported(), _registry.methods())
    with pytest.raises(ValueError, match="'add' is declared by both"):
        _registry.register(add, method=False)

    def probe(a):
        return a

    probe.__module__ = other.__name__
    with pytest.raises(ValueError, match="Tensor.sum is declared by both"):
        _registry.tensor_method("sum", probe)
    assert (_registry.exported(), _registry.methods()) == before


def test_register_returns_the_function_itself():
    # As a call and as a decorator: the op modules rely on it to keep their names bound to the very
    # objects the registry installs.
    assert elementwise.tan is _registry.exported()["tan"]
    assert reduction.sum is _registry.exported()["sum"] is ag.Tensor.sum
