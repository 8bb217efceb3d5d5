"""Handwritten digits with the MLP of ``digits_mlp``, trained data-parallel on several processes.

Each rank trains the same model on its own shard of every epoch (``DataLoader(rank=, world_size=)``),
``DistributedDataParallel`` averages the gradients over ranks during backward, and only rank 0
prints. The same file runs unchanged as one process (a world of one):

    mpiexec -n 2 python -m xpgrad.examples.digits_ddp [--epochs 20] [--checkpoint runs/digits_ddp.npz]
    python -m xpgrad.examples.digits_ddp

``--batch-size`` is per rank (the step's global batch is ``world_size`` times larger).
``--checkpoint PATH`` resumes from PATH when it exists and writes it after every epoch.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from xpgrad import autograd as ag, nn, optim
from xpgrad.examples.digits_mlp import MLP, load_digits
from xpgrad.nn import parallel as dp


def train(epochs: int = 20, batch_size: int = 32, lr: float = 1e-3, seed: int = 0, hidden: int = 128,
          limit: int | None = None, checkpoint: str | None = None, verbose: bool = True) -> dict:
    """Train on every rank; returns (on every rank) the per-epoch mean loss and the test accuracy."""
    dp.init()
    rank, world = dp.rank(), dp.world_size()
    say = print if verbose and rank == 0 else (lambda *a, **k: None)
    (x_train, y_train), (x_test, y_test) = load_digits(seed=seed)
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
    ag.manual_seed(seed)
    model = dp.DistributedDataParallel(MLP(x_train.shape[1], hidden))
    optimizer = optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    loader = nn.DataLoader((ag.tensor(x_train), ag.tensor(y_train)), batch_size=batch_size, shuffle=True,
                           seed=seed, rank=rank, world_size=world)
    if checkpoint and os.path.exists(checkpoint):
        loader.epoch = dp.load_checkpoint(checkpoint, model, optimizer)["epoch"]
        say(f"resumed from {checkpoint} after epoch {loader.epoch}")
    say(f"{world} process(es), {len(loader)} steps of {batch_size} x {world} samples per epoch")
    losses = []
    start = time.perf_counter()
    while loader.epoch < epochs:
        model.train()
        loss_sum = steps = 0.0
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            loss_sum, steps = loss_sum + loss.item(), steps + 1
        total = dp.all_reduce(ag.tensor([loss_sum, steps]), op="sum")  # over all ranks
        losses.append(float(total[0].item() / total[1].item()))
        if checkpoint:
            dp.save_checkpoint(checkpoint, model, optimizer, epoch=loader.epoch)
        say(f"epoch {loader.epoch:3d}  train loss {losses[-1]:.4f}")
    model.eval()
    with ag.no_grad():
        predicted = model(ag.tensor(x_test)).argmax(axis=-1).numpy()
    accuracy = float(np.mean(predicted == y_test))
    seconds = time.perf_counter() - start
    say(f"test accuracy {accuracy:.4f} after {seconds:.1f} s")
    return {"losses": losses, "test_accuracy": accuracy, "seconds": seconds, "world_size": world}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32, help="samples per rank and step")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--limit", type=int, default=None, help="train on the first LIMIT training samples only")
    parser.add_argument("--checkpoint", metavar="PATH", default=None)
    args = parser.parse_args(argv)
    train(args.epochs, args.batch_size, args.lr, args.seed, args.hidden, args.limit, args.checkpoint)


if __name__ == "__main__":
    main()
