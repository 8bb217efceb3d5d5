"""Handwritten digits with an MLP softmax classifier: the project's main job.

Default data: scikit-learn's bundled 8x8 digits (1,797 images, no download) with a 64-128-10
MLP. ``--mnist DIR`` reads the real MNIST IDX files (raw or .gz) and trains 784-128-10.
Trains with Adam and a 10% validation split, evaluates on the held-out test set, predicts one
sample, and writes the training curve (PNG) and the weights (.npz) to ``--out``.

    python -m xpgrad.examples.digits_mlp [--epochs 40] [--mnist DIR] [--device cuda] [--out runs/digits]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from xpgrad import autograd as ag
from xpgrad import nn
from xpgrad import optim


class MLP(nn.Module):
    def __init__(self, n_in: int, n_hidden: int = 128, n_out: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_in, n_hidden)
        self.fc2 = nn.Linear(n_hidden, n_out)

    def forward(self, x):
        return self.fc2(nn.functional.relu(self.fc1(x)))


def load_digits(test_fraction: float = 0.2, seed: int = 0):
    """Scikit-learn's digits, scaled to [0, 1], split into train and test sets (stratified by shuffling)."""
    from sklearn.datasets import load_digits as sk_digits

    data = sk_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n_test = int(round(len(x) * test_fraction))
    return (x[n_test:], y[n_test:]), (x[:n_test], y[:n_test])


def train(epochs: int = 40, batch_size: int = 64, lr: float = 1e-3, seed: int = 0, mnist_dir: str | None = None,
          device: str = "cpu", out_dir: str | None = None, verbose: int = 1, target_accuracy: float | None = None):
    """Train and evaluate; returns a dict with the history, test metrics and wall time."""
    ag.manual_seed(seed)
    (x_train, y_train), (x_test, y_test) = load_mnist_or_digits(mnist_dir, seed)
    model = MLP(x_train.shape[1]).to(device)
    optimizer = optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    x_tr, y_tr = ag.tensor(x_train, device=device), ag.tensor(y_train, device=device)
    x_te, y_te = ag.tensor(x_test, device=device), ag.tensor(y_test, device=device)

    start = time.perf_counter()
    reached_at = reached_epoch = None

    def stop_watch(epoch, logs):
        nonlocal reached_at, reached_epoch
        if target_accuracy is not None and reached_at is None:
            if nn.evaluate(model, loss_fn, x_te, y_te, metrics=["accuracy"])["accuracy"] >= target_accuracy:
                reached_at, reached_epoch = time.perf_counter() - start, epoch

    history = nn.fit(model, loss_fn, optimizer, x_tr, y_tr, epochs=epochs, batch_size=batch_size,
                     validation_split=0.1, metrics=["accuracy"], seed=seed, verbose=verbose,
                     callbacks=[stop_watch])
    seconds = time.perf_counter() - start
    test = nn.evaluate(model, loss_fn, x_te, y_te, metrics=["accuracy"])
    logits = nn.predict(model, x_te[:1])
    result = {"history": history.history, "test": test, "seconds": seconds, "model": model,
              "first_prediction": int(logits.argmax(axis=-1).item()), "first_label": int(y_test[0]),
              "seconds_to_target": reached_at, "epochs_to_target": reached_epoch}
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        nn.save(model.state_dict(), os.path.join(out_dir, "weights.npz"))
        result["plot"] = plot_history(history.history, os.path.join(out_dir, "training_curve.png"))
    return result


def load_mnist_or_digits(mnist_dir, seed):
    if mnist_dir:
        from xpgrad.examples.idx import load_mnist

        return load_mnist(mnist_dir)
    return load_digits(seed=seed)


def plot_history(history: dict, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history["loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, history["loss"], label="train")
    ax_loss.plot(epochs, history["val_loss"], label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax_acc.plot(epochs, history["accuracy"], label="train")
    ax_acc.plot(epochs, history["val_accuracy"], label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mnist", metavar="DIR", help="directory with the four MNIST IDX files (raw or .gz)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=os.path.join("runs", "digits"))
    args = parser.parse_args(argv)
    r = train(args.epochs, args.batch_size, args.lr, args.seed, args.mnist, args.device, args.out)
    h = r["history"]
    print(f"trained {len(h['loss'])} epochs in {r['seconds']:.1f} s: "
          f"train loss {h['loss'][-1]:.4f}, val accuracy {h['val_accuracy'][-1]:.4f}")
    print(f"test accuracy {r['test']['accuracy']:.4f} (loss {r['test']['loss']:.4f})")
    print(f"predicted class of the first test image: {r['first_prediction']} (label {r['first_label']})")
    print(f"wrote {r['plot']} and {os.path.join(args.out, 'weights.npz')}")


if __name__ == "__main__":
    main()
