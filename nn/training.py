"""Keras-style ``fit``/``evaluate``/``predict`` on top of ``Module`` and ``optim``.

Explicit PyTorch-style loops stay first-class (see README); these helpers only package the
usual loop: mini-batches, train/eval switching, validation, metrics and a progress bar.
Per-step losses are summed on the device and read back once per epoch, so a GPU run does not
synchronise on every step.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable, Iterable

from xpgrad import autograd as ag

from .data import DataLoader, TensorDataset

__all__ = ["History", "fit", "evaluate", "predict", "accuracy"]


def accuracy(y_pred: ag.Tensor, y_true: ag.Tensor) -> ag.Tensor:
    """Fraction of rows whose arg-max (or, for one output column, ``> 0`` logit) matches ``y_true``."""
    if y_pred.ndim == 1 or y_pred.shape[-1] == 1:
        predicted = (y_pred.reshape(-1) > 0).astype(y_true.dtype)
        return (predicted == y_true.reshape(-1)).astype(ag.float64).mean()
    if y_true.ndim == y_pred.ndim:  # class probabilities / one-hot targets
        y_true = y_true.argmax(axis=-1)
    return (y_pred.argmax(axis=-1) == y_true).astype(ag.float64).mean()


_METRICS: dict[str, Callable] = {"accuracy": accuracy, "acc": accuracy}


@dataclass
class History:
    """Per-epoch records: ``history["loss"]``, ``history["val_loss"]``, ``history["accuracy"]``..."""

    history: dict[str, list[float]] = field(default_factory=dict)
    epoch: list[int] = field(default_factory=list)

    def _record(self, epoch: int, values: dict[str, float]) -> None:
        self.epoch.append(epoch)
        for k, v in values.items():
            self.history.setdefault(k, []).append(v)


def _metric_fns(metrics) -> list[tuple[str, Callable]]:
    out = []
    for m in metrics or ():
        if isinstance(m, str):
            if m not in _METRICS:
                raise ValueError(f"unknown metric {m!r}; known: {sorted(_METRICS)}, or pass a callable")
            out.append(("accuracy" if m == "acc" else m, _METRICS[m]))
        elif callable(m):
            out.append((getattr(m, "__name__", "metric"), m))
        else:
            raise TypeError(f"a metric is a name or a callable(y_pred, y_true), got {type(m).__name__}")
    return out


def _as_tensor(x):
    return x if isinstance(x, ag.Tensor) else ag.tensor(x)


def _split(x, y, validation_split: float):
    n = x.shape[0]
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split}")
    n_val = int(round(n * validation_split))
    if validation_split and n_val == 0:
        raise ValueError(f"validation_split={validation_split} leaves no validation sample out of {n}")
    cut = n - n_val
    return (x[:cut], y[:cut]), ((x[cut:], y[cut:]) if n_val else None)


def _progress(total: int, desc: str, verbose: int):
    quiet = verbose != 1 or not sys.stderr.isatty()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is an optional extra
        return None
    return tqdm(total=total, desc=desc, leave=False, disable=quiet, unit="batch")


def fit(model, loss_fn, optimizer, x, y, epochs: int = 1, batch_size: int = 32, validation_split: float = 0.0,
        validation_data=None, metrics: Iterable = (), shuffle: bool = True, seed: int | None = None,
        verbose: int = 1, callbacks: Iterable[Callable] = ()) -> History:
    """Train ``model`` on ``(x, y)`` and return the per-epoch History.

    ``validation_split`` holds out the *last* fraction of the samples (before shuffling, as
    Keras does); ``validation_data=(x_val, y_val)`` gives them explicitly. ``metrics`` are names
    (``"accuracy"``) or callables ``(y_pred, y_true) -> Tensor``. ``verbose``: 0 silent, 1 a
    progress bar on a terminal (quiet otherwise), 2 one line per epoch. Each ``callbacks`` entry is
    called as ``cb(epoch, logs)`` after every epoch.
    """
    x, y = _as_tensor(x), _as_tensor(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"fit: x has {x.shape[0]} samples but y has {y.shape[0]}")
    if validation_data is not None:
        if validation_split:
            raise ValueError("fit: pass validation_split or validation_data, not both")
        train, val = (x, y), tuple(_as_tensor(v) for v in validation_data)
    else:
        train, val = _split(x, y, validation_split)
    loader = DataLoader(TensorDataset(*train), batch_size=batch_size, shuffle=shuffle, seed=seed)
    named = _metric_fns(metrics)
    history = History()
    for epoch in range(1, epochs + 1):
        model.train()
        bar = _progress(len(loader), f"epoch {epoch}/{epochs}", verbose)
        total_loss = None
        metric_sums = [None] * len(named)
        seen = 0
        for xb, yb in loader:
            optimizer.zero_grad()
            out = model(xb)
            loss = loss_fn(out, yb)
            loss.backward()
            optimizer.step()
            n = xb.shape[0]
            seen += n
            with ag.no_grad():
                total_loss = loss.detach() * n if total_loss is None else total_loss + loss.detach() * n
                for i, (_, fn) in enumerate(named):
                    v = fn(out.detach(), yb) * n
                    metric_sums[i] = v if metric_sums[i] is None else metric_sums[i] + v
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        logs = {"loss": total_loss.item() / seen}
        for (name, _), s in zip(named, metric_sums):
            logs[name] = s.item() / seen
        if val is not None:
            val_logs = evaluate(model, loss_fn, val[0], val[1], batch_size=max(batch_size, 256), metrics=metrics)
            logs.update({f"val_{k}": v for k, v in val_logs.items()})
        history._record(epoch, logs)
        if verbose == 2 or (verbose == 1 and not sys.stderr.isatty()):
            print(f"epoch {epoch}/{epochs}: " + ", ".join(f"{k}={v:.4f}" for k, v in logs.items()), flush=True)
        for cb in callbacks:
            cb(epoch, logs)
    return history


def evaluate(model, loss_fn, x, y, batch_size: int = 256, metrics: Iterable = ()) -> dict[str, float]:
    """Mean loss (and metrics) over ``(x, y)`` in eval mode without recording a graph."""
    x, y = _as_tensor(x), _as_tensor(y)
    named = _metric_fns(metrics)
    was_training = model.training
    model.eval()
    try:
        with ag.no_grad():
            total, sums, seen = None, [None] * len(named), 0
            for xb, yb in DataLoader(TensorDataset(x, y), batch_size=batch_size):
                out = model(xb)
                n = xb.shape[0]
                seen += n
                v = loss_fn(out, yb) * n
                total = v if total is None else total + v
                for i, (_, fn) in enumerate(named):
                    m = fn(out, yb) * n
                    sums[i] = m if sums[i] is None else sums[i] + m
    finally:
        model.train(was_training)
    result = {"loss": total.item() / seen}
    for (name, _), s in zip(named, sums):
        result[name] = s.item() / seen
    return result


def predict(model, x, batch_size: int = 256) -> ag.Tensor:
    """Model outputs for every row of ``x`` (eval mode, no graph), concatenated."""
    x = _as_tensor(x)
    was_training = model.training
    model.eval()
    try:
        with ag.no_grad():
            outs = [model(xb) for (xb,) in DataLoader(TensorDataset(x), batch_size=batch_size)]
    finally:
        model.train(was_training)
    return ag.concatenate(outs, axis=0)
