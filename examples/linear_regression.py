"""Linear regression by gradient descent: recover y = 3x + 2 from noisy samples with MSE.

An explicit PyTorch-style loop: forward, loss, zero_grad, backward, step.

    python -m xpgrad.examples.linear_regression [--steps 300]
"""
from __future__ import annotations

import argparse

import numpy as np

from xpgrad import autograd as ag
from xpgrad import nn
from xpgrad import optim


def run(steps: int = 300, lr: float = 0.1, n: int = 200, seed: int = 0, device: str = "cpu"):
    rng = np.random.default_rng(seed)
    x_np = rng.uniform(-1, 1, size=(n, 1)).astype(np.float32)
    y_np = (3 * x_np + 2 + 0.1 * rng.standard_normal((n, 1))).astype(np.float32)
    x, y = ag.tensor(x_np, device=device), ag.tensor(y_np, device=device)

    ag.manual_seed(seed)
    model = nn.Linear(1, 1).to(device)
    optimizer = optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.MSELoss()
    for _ in range(steps):
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.weight.item(), model.bias.item(), loss.item()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Linear regression with MSE and gradient descent")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    w, b, loss = run(args.steps, device=args.device)
    print(f"recovered w = {w:.3f}, b = {b:.3f} (true 3, 2); final MSE {loss:.4f}")


if __name__ == "__main__":
    main()
