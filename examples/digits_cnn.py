"""Handwritten digits with a small convolutional network.

Data: scikit-learn's bundled 8x8 digits (1,797 images, no download), loaded and split as in
``digits_mlp`` and reshaped to (N, 1, 8, 8). The network is two 3x3 convolutions (32 and 64
channels, each followed by ReLU and 2x2 max pooling: 8x8 -> 4x4 -> 2x2), flattened (with
dropout) into a 256-64-10 classifier. Trains with Adam, a cosine learning-rate schedule
stepped once per epoch and a 10% validation split, and prints the accuracy on the held-out
test set (98-99%).

    python -m xpgrad.examples.digits_cnn [--epochs 30] [--seed 0] [--device cuda]
"""
from __future__ import annotations

import argparse
import time

from xpgrad import autograd as ag
from xpgrad import nn
from xpgrad import optim
from xpgrad.examples.digits_mlp import load_digits


def make_model(width: int = 32, dropout: float = 0.25) -> nn.Module:
    """Conv-ReLU-Pool twice, then a two-layer classifier, for (N, 1, 8, 8) images."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),            # (N, w, 4, 4)
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),    # (N, 2w, 2, 2)
        nn.Flatten(), nn.Dropout(dropout),
        nn.Linear(2 * width * 4, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )


def train(epochs: int = 30, batch_size: int = 32, lr: float = 2e-3, seed: int = 0, width: int = 32,
          device: str = "cpu", verbose: int = 0):
    """Train and evaluate; returns a dict with the history, test metrics and wall time."""
    ag.manual_seed(seed)
    (x_train, y_train), (x_test, y_test) = load_digits(seed=seed)
    x_train, x_test = x_train.reshape(-1, 1, 8, 8), x_test.reshape(-1, 1, 8, 8)
    model = make_model(width).to(device)
    optimizer = optim.Adam(model.parameters(), lr=lr)
    schedule = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    history = nn.fit(model, loss_fn, optimizer, ag.tensor(x_train, device=device), ag.tensor(y_train, device=device),
                     epochs=epochs, batch_size=batch_size, validation_split=0.1, metrics=["accuracy"], seed=seed,
                     verbose=verbose, callbacks=[lambda epoch, logs: schedule.step()])
    seconds = time.perf_counter() - start
    test = nn.evaluate(model, loss_fn, ag.tensor(x_test, device=device), ag.tensor(y_test, device=device),
                       metrics=["accuracy"])
    return {"history": history.history, "test": test, "seconds": seconds, "model": model}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    r = train(args.epochs, seed=args.seed, device=args.device, verbose=0)
    h = r["history"]
    print(f"trained {len(h['loss'])} epochs in {r['seconds']:.1f} s: "
          f"train loss {h['loss'][-1]:.4f}, val accuracy {h['val_accuracy'][-1]:.4f}")
    print(f"test accuracy {r['test']['accuracy']:.4f} (loss {r['test']['loss']:.4f})")


if __name__ == "__main__":
    main()
