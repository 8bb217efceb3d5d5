"""A sigmoid binary classifier on two Gaussian blobs with two features.

    python -m xpgrad.examples.logistic [--epochs 50]
"""
from __future__ import annotations

import argparse

import numpy as np

from xpgrad import autograd as ag
from xpgrad import nn
from xpgrad import optim


def make_blobs(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    half = n // 2
    pos = rng.normal(loc=(1.5, 1.0), scale=1.0, size=(half, 2))
    neg = rng.normal(loc=(-1.0, -1.5), scale=1.0, size=(n - half, 2))
    x = np.concatenate([pos, neg]).astype(np.float32)
    y = np.concatenate([np.ones(half), np.zeros(n - half)]).astype(np.float32)
    order = rng.permutation(n)
    return x[order], y[order]


def run(epochs: int = 50, seed: int = 0, device: str = "cpu"):
    x_np, y_np = make_blobs(seed=seed)
    cut = int(0.8 * len(x_np))
    x_train, y_train = ag.tensor(x_np[:cut], device=device), ag.tensor(y_np[:cut, None], device=device)
    x_test, y_test = ag.tensor(x_np[cut:], device=device), ag.tensor(y_np[cut:, None], device=device)

    ag.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, 1), nn.Sigmoid()).to(device)
    optimizer = optim.SGD(model.parameters(), lr=0.5)
    loss_fn = nn.BCELoss()
    for _ in range(epochs):
        for xb, yb in nn.DataLoader((x_train, y_train), batch_size=32, shuffle=True, seed=seed):
            optimizer.zero_grad()
            loss_fn(model(xb), yb).backward()
            optimizer.step()
    model.eval()
    with ag.no_grad():
        predicted = model(x_test) > 0.5
        accuracy = (predicted == (y_test > 0.5)).astype(ag.float32).mean().item()
    return accuracy


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Sigmoid binary classifier")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    print(f"test accuracy {run(args.epochs, device=args.device):.4f}")


if __name__ == "__main__":
    main()
