"""digits: the project's digits example end to end, seconds until the test accuracy reaches 96%.

xpgrad runs ``examples.digits_mlp.train`` (scikit-learn's 8x8 digits, MLP 64-128-10, Adam lr 1e-3,
batch 64, 10% validation split, test accuracy checked after every epoch) and reports its
``seconds_to_target``. ``LocalXpgradDigits`` replays the same schedule step by step against
nn/optim; the tests use it to check that the references train to the same weights.

The hand-written NumPy/CuPy reference and torch run the same schedule: the same split, the same
per-epoch shuffles (``numpy.random.default_rng(seed).permutation``, as ``nn.fit`` draws them), the
same initial weights (read from the example's model right after ``ag.manual_seed(seed)``), the
same bookkeeping (per-step loss and accuracy sums, validation loss/accuracy and test
loss/accuracy after each epoch), so the trajectories agree and the figure compares speed.
The clock starts once the data sit on the device, as in the example, and stops at the end of
the first epoch whose test accuracy reaches the target.
"""
from __future__ import annotations

import time

import numpy as np

from ..runner import Bench, Contender
from . import _mlp
from ._common import (
    Config, Impl, array_module, configure_torch_threads, construct, softmax_cross_entropy, to_device_array,
    torch_device, torch_sync, xp_sync,
)
from .adam_step import NumpyAdam

NAMES = ("digits",)
SIZES = {"full": {"epochs": 40, "target": 0.96}, "tiny": {"epochs": 2, "target": 0.5}}
BATCH, LR, HIDDEN, VAL_SPLIT, EVAL_BATCH = 64, 1e-3, 128, 0.1, 256


def load_data(seed: int):
    """((x_train, y_train), (x_test, y_test)) as the example loads them."""
    from xpgrad.examples.digits_mlp import load_digits

    return load_digits(seed=seed)


def initial_weights(n_in: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The example's model weights right after ``ag.manual_seed(seed)``, as (W, b) per layer."""
    from xpgrad import autograd as ag

    ag.manual_seed(seed)
    try:
        from xpgrad.examples.digits_mlp import MLP

        model = MLP(n_in)
        linears = [model.fc1, model.fc2]
    except Exception:
        try:
            from xpgrad import nn

            linears = [nn.Linear(n_in, HIDDEN), nn.Linear(HIDDEN, 10)]
        except Exception:  # no usable nn: same distribution, drawn here (xpgrad then fails on its own)
            return _mlp.init_weights([n_in, HIDDEN, 10], np.float32, np.random.default_rng(seed))
    return [(lin.weight.numpy().copy(), lin.bias.numpy().copy()) for lin in linears]


def _split(x, y):
    cut = len(x) - int(round(len(x) * VAL_SPLIT))
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def _batches(n: int, size: int):
    return [(start, min(start + size, n)) for start in range(0, n, size)]


# -- contenders: each returns seconds to target (None if never reached) ---------------------------
class _Loop(Impl):
    """The shared schedule; subclasses supply the array-level pieces."""

    def __init__(self, data, weights, cfg: Config) -> None:
        self.data, self.weights, self.cfg = data, weights, cfg
        self.epochs, self.target = SIZES[cfg.size]["epochs"], SIZES[cfg.size]["target"]
        self.reached_epoch: int | None = None

    def run(self) -> float | None:
        (x_all, y_all), (x_test, y_test) = self.data
        (x_tr, y_tr), (x_val, y_val) = _split(x_all, y_all)
        arrays = {"x_tr": x_tr, "y_tr": y_tr, "x_val": x_val, "y_val": y_val, "x_test": x_test, "y_test": y_test}
        state = self.state = self.prepare(arrays)
        rng = np.random.default_rng(self.cfg.seed)
        n = len(x_tr)
        start = time.perf_counter()
        for epoch in range(1, self.epochs + 1):
            order = rng.permutation(n)
            self.train_epoch(state, order)
            self.evaluate(state, "val")
            if self.evaluate(state, "test") >= self.target:
                self.reached_epoch = epoch
                return time.perf_counter() - start
        return None


class NumpyDigits(_Loop):
    def prepare(self, arrays: dict) -> dict:
        xp = self.xp = array_module(self.cfg.device)
        model = _mlp.NumpyMLP({"params": self.weights, "x": arrays["x_tr"][:1], "y": arrays["y_tr"][:1]}, self.cfg, LR)
        # the model's arrays must not alias the shared initial weights: Adam updates them in place
        model.weights = [xp.array(w, copy=True) for w in model.weights]
        model.biases = [xp.array(b, copy=True) for b in model.biases]
        params = model.weights + model.biases
        adam = NumpyAdam(None, xp=xp, params=params, grads=[None] * len(params), lr=LR)
        dev = {k: to_device_array(v, xp) for k, v in arrays.items()}
        self.sync = xp_sync(xp)
        return {"model": model, "adam": adam, **dev}

    def train_epoch(self, s, order) -> None:
        xp, model, adam = self.xp, s["model"], s["adam"]
        order = to_device_array(order, xp)
        total_loss = total_acc = 0.0
        for lo, hi in _batches(len(order), BATCH):
            idx = order[lo:hi]
            xb, yb = s["x_tr"][idx], s["y_tr"][idx]
            loss, gw, gb = model.forward_backward(xb, yb)
            adam.grads = gw + gb
            adam.step()
            n = hi - lo
            # the per-step bookkeeping nn.fit does: loss and accuracy sums, read once per epoch
            logits = model.logits
            total_loss = total_loss + loss * n
            total_acc = total_acc + (logits.argmax(axis=1) == yb).mean() * n
        float(total_loss), float(total_acc)

    def _logits(self, model, x):
        h = x
        last = len(model.weights) - 1
        for i, (w, b) in enumerate(zip(model.weights, model.biases)):
            h = h @ w.T + b
            if i < last:
                h = self.xp.maximum(h, 0)
        return h

    def evaluate(self, s, which: str) -> float:
        x, y = s[f"x_{which}"], s[f"y_{which}"]
        loss_sum = acc_sum = 0.0
        for lo, hi in _batches(len(x), EVAL_BATCH):
            logits = self._logits(s["model"], x[lo:hi])
            loss, _ = softmax_cross_entropy(self.xp, logits, y[lo:hi])
            loss_sum = loss_sum + loss * (hi - lo)
            acc_sum = acc_sum + (logits.argmax(axis=1) == y[lo:hi]).mean() * (hi - lo)
        float(loss_sum)
        return float(acc_sum) / len(x)


class _EngineLoop(_Loop):
    """Training and evaluation through an autograd engine (``lib``: ``torch`` or ``autograd``, same spelling);
    subclasses supply ``cross_entropy``, ``_index`` and ``_mean_correct``."""

    lib = None

    def train_epoch(self, s, order) -> None:
        model, opt = s["model"], s["opt"]
        order = self._index(order, s["dev"])
        total_loss = total_acc = None
        for lo, hi in _batches(len(order), BATCH):
            idx = order[lo:hi]
            xb, yb = s["x_tr"][idx], s["y_tr"][idx]
            opt.zero_grad(set_to_none=True)
            out = model(xb)
            loss = self.cross_entropy(out, yb)
            loss.backward()
            opt.step()
            n = hi - lo
            with self.lib.no_grad():
                step_loss = loss.detach() * n
                step_acc = self._mean_correct(out, yb) * n
                total_loss = step_loss if total_loss is None else total_loss + step_loss
                total_acc = step_acc if total_acc is None else total_acc + step_acc
        total_loss.item(), total_acc.item()

    def evaluate(self, s, which: str) -> float:
        x, y = s[f"x_{which}"], s[f"y_{which}"]
        with self.lib.no_grad():
            loss_sum = acc_sum = None
            for lo, hi in _batches(x.shape[0], EVAL_BATCH):
                out = s["model"](x[lo:hi])
                l_ = self.cross_entropy(out, y[lo:hi]) * (hi - lo)
                a_ = self._mean_correct(out, y[lo:hi]) * (hi - lo)
                loss_sum = l_ if loss_sum is None else loss_sum + l_
                acc_sum = a_ if acc_sum is None else acc_sum + a_
        loss_sum.item()
        return acc_sum.item() / x.shape[0]


class TorchDigits(_EngineLoop):
    def prepare(self, arrays: dict) -> dict:
        import torch

        configure_torch_threads()
        self.lib = torch
        self.cross_entropy = torch.nn.functional.cross_entropy
        dev = torch_device(self.cfg.device)
        model, _ = _mlp.torch_model(self.weights, self.cfg.device, np.float32)
        optimizer = torch.optim.Adam(model.parameters(), lr=LR)
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)).to(dev) for k, v in arrays.items()}
        self.sync = torch_sync(self.cfg.device)
        return {"model": model, "opt": optimizer, "dev": dev, **tensors}

    def _index(self, order: np.ndarray, dev):
        return self.lib.from_numpy(order).to(dev)

    @staticmethod
    def _mean_correct(out, y):
        return (out.argmax(dim=1) == y).double().mean()

    def evaluate(self, s, which: str) -> float:
        s["model"].eval()
        accuracy = super().evaluate(s, which)
        s["model"].train()
        return accuracy


class LocalXpgradDigits(_EngineLoop):
    """Stand-in for ``examples.digits_mlp.train`` written against nn/optim (same schedule)."""

    def prepare(self, arrays: dict) -> dict:
        from xpgrad import autograd as ag
        from xpgrad import nn
        from xpgrad import optim

        self.lib = ag
        self.cross_entropy = nn.functional.cross_entropy
        dev = self.cfg.device
        model, _ = _mlp.xpgrad_model(self.weights, dev, np.float32)
        optimizer = optim.Adam(model.parameters(), lr=LR)
        tensors = {k: ag.tensor(v, device=dev) for k, v in arrays.items()}
        return {"model": model, "opt": optimizer, "dev": dev, **tensors}

    def _index(self, order: np.ndarray, dev):
        return self.lib.tensor(order, device=dev)

    def _mean_correct(self, out, y):
        return (out.argmax(axis=-1) == y).astype(self.lib.float64).mean()


class ExampleXpgradDigits(Impl):
    """``examples.digits_mlp.train(...)["seconds_to_target"]``."""

    def __init__(self, train, cfg: Config) -> None:
        self.train, self.cfg = train, cfg
        self.last: dict | None = None
        self.reached_epoch: int | None = None

    def run(self) -> float | None:
        size = SIZES[self.cfg.size]
        self.last = self.train(epochs=size["epochs"], batch_size=BATCH, lr=LR, seed=self.cfg.seed,
                               device=self.cfg.device, verbose=0, target_accuracy=size["target"])
        self.reached_epoch = self.last["epochs_to_target"]
        return self.last.get("seconds_to_target")


def implementations(cfg: Config) -> dict:
    data = load_data(cfg.seed)
    weights = initial_weights(data[0][0].shape[1], cfg.seed)
    from xpgrad.examples.digits_mlp import train

    return construct({
        "xpgrad": lambda: ExampleXpgradDigits(train, cfg),
        "numpy": lambda: NumpyDigits(data, weights, cfg),
        "torch": lambda: TorchDigits(data, weights, cfg),
    }, cfg)


def build(cfg: Config) -> list[Bench]:
    try:
        import sklearn  # noqa: F401  (the example's data set ships with scikit-learn)
    except ImportError:
        return []
    impls = implementations(cfg)
    size = SIZES[cfg.size]
    info = {"epochs_max": size["epochs"], "target_accuracy": size["target"],
            "xpgrad_source": "xpgrad.examples.digits_mlp.train", "reached_epoch": {}, "note": ""}

    def wrap(name: str, impl):
        def run():
            seconds = impl.run()
            info["reached_epoch"].setdefault(name, []).append(getattr(impl, "reached_epoch", None))
            return seconds
        return run

    return [Bench(
        "digits", f"s to {size['target']:.0%}", 1.0, [Contender(n, wrap(n, i)) for n, i in impls.items()],
        kind="value", repeat=cfg.repeat_or(3), warmup=0, info=info,
    )]
