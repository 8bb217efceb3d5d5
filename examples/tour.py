"""A two-minute tour of the engine: gradients, higher order, a custom op."""
import numpy as np

from xpgrad import autograd as ag


def main() -> None:
    x = ag.tensor([0.5, 1.0, 2.0], requires_grad=True)
    y = (ag.tanh(x) * x).sum()
    (dx,) = ag.grad(y, x, create_graph=True)
    (ddx,) = ag.grad(dx.sum(), x)
    print("f(x)   =", y.item())
    print("f'(x)  =", np.round(dx.numpy(), 6))
    print("f''(x) =", np.round(ddx.numpy(), 6))


if __name__ == "__main__":
    main()
