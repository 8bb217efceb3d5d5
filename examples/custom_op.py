"""A user-defined op (``ag.Function``) and a hypothesis property test of its gradient.

``SmoothAbs(x) = sqrt(x**2 + eps)``: forward on arrays, backward in Tensor ops, so it is
differentiable twice. Run it to see the op used and its gradient checked on random shapes:

    python -m xpgrad.examples.custom_op
"""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings

from xpgrad import autograd as ag
from xpgrad.autograd.testing import gradcheck, gradgradcheck, tensors, shapes


class SmoothAbs(ag.Function):
    @staticmethod
    def forward(ctx, x, eps=1e-3):
        y = ctx.xp.sqrt(x.data * x.data + eps)
        ctx.save_for_backward(x)
        ctx.eps = eps
        return y

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        # Written with Tensor ops, so create_graph=True can differentiate it again.
        return grad * x / ag.sqrt(x * x + ctx.eps)


def smooth_abs(x, eps: float = 1e-3):
    return SmoothAbs.apply(x, eps)


@settings(max_examples=20, deadline=None)
@given(x=tensors(shapes(max_dims=3)))
def check_smooth_abs_gradients(x):
    assert gradcheck(smooth_abs, (x,))
    assert gradgradcheck(smooth_abs, (x,))


def main() -> None:
    x = ag.tensor([-2.0, -0.01, 0.0, 0.5], requires_grad=True)
    y = smooth_abs(x).sum()
    y.backward()
    print("smooth_abs(x) =", np.round(smooth_abs(x).detach().numpy(), 4))
    print("gradient      =", np.round(x.grad.numpy(), 4))
    check_smooth_abs_gradients()
    print("hypothesis: gradcheck and gradgradcheck passed on 20 random shapes")


if __name__ == "__main__":
    main()
